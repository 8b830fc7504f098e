//! `cargo run -p local-stack --bin ws-watch -- --user u-42`: mint a WebSocket token for a user
//! and print every frame the platform pushes to them, one JSON object per line.

use clap::Parser;
use futures::StreamExt;
use tokio_tungstenite::tungstenite::Message;

#[derive(Parser)]
#[command(about = "Watch a user's live notifications over the WebSocket API.")]
struct Args {
    /// The user whose notifications to watch.
    #[arg(long)]
    user: String,
    /// Base URL of the API.
    #[arg(long, env = "NOTIFY_URL", default_value = "http://127.0.0.1:8080")]
    url: String,
    /// An API key (to mint the WebSocket token).
    #[arg(long, env = "NOTIFY_API_KEY", hide_env_values = true)]
    key: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let base = args.url.trim_end_matches('/');
    let response = reqwest::Client::new()
        .post(format!("{base}/v1/users/{}/ws-token", args.user))
        .header("authorization", format!("Bearer {}", args.key))
        .send()
        .await?;
    if !response.status().is_success() {
        anyhow::bail!("minting a token failed: {} {}", response.status(), response.text().await.unwrap_or_default());
    }
    let token: serde_json::Value = response.json().await?;
    let token = token["token"].as_str().unwrap_or_default();
    let ws_base = base.replacen("http", "ws", 1);
    let (mut socket, _) = tokio_tungstenite::connect_async(format!("{ws_base}/v1/ws?token={token}")).await?;
    eprintln!("connected as {}; waiting for notifications (Ctrl-C to stop)", args.user);
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            message = socket.next() => match message {
                Some(Ok(Message::Text(text))) => println!("{text}"),
                Some(Ok(Message::Close(_))) | None => break,
                Some(Ok(_)) => {}
                Some(Err(e)) => anyhow::bail!("websocket error: {e}"),
            },
        }
    }
    Ok(())
}
