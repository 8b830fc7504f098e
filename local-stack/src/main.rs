//! `cargo run -p local-stack`: the whole platform on loopback.

use clap::Parser;
use local_stack::config::{Args, Config};

/// mimalloc: under load, glibc's malloc and free were a fifth of the stack's CPU and its
/// per-thread arenas held on to freed memory (bench/load/run.sh; README "Performance").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,tower_http=warn".into()))
        .init();
    let config = Config::from_args(Args::parse()).await.map_err(anyhow::Error::msg)?;
    let generated_key = config.api_keys.is_empty();
    if let Some(warning) = local_stack::management::exposure_warning(config.addr) {
        eprintln!("{warning}");
        tracing::warn!("{warning}");
    }
    let stack = local_stack::start(config).await?;
    let url = stack.base_url();
    println!();
    println!("  notification platform, local stack: {url}");
    if generated_key {
        println!("  API key (generated; set NOTIFY_API_KEYS to choose): {}", stack.api_key);
    } else {
        println!("  API key: from NOTIFY_API_KEYS");
    }
    println!("  try:  curl -s -X POST {url}/v1/events -H \"Authorization: Bearer $KEY\" -d @events/api/order.completed.json");
    println!("  outbox: {url}/v1/dev/outbox   websocket: ws://{}/v1/ws?token=…", stack.addr);
    println!("  metrics (Prometheus text): {url}/metrics");
    println!("  Ctrl-C stops it.");
    println!();
    tokio::signal::ctrl_c().await?;
    tracing::info!("shutting down");
    stack.stop().await;
    Ok(())
}
