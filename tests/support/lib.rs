//! Test support: a fresh local stack per test on a free port, and a client that speaks its API
//! over real HTTP and a real WebSocket.

pub mod aws;
pub mod request_counter;

use futures::StreamExt;
use local_stack::{Config, LocalStack};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, tungstenite::Message};

pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub struct TestApp {
    pub stack: LocalStack,
    pub http: reqwest::Client,
    pub base: String,
}

/// Starts a local stack with fast retries (max 3 receives) on a free loopback port.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(Config::for_tests()).await
}

pub async fn spawn_app_with(config: Config) -> TestApp {
    let stack = local_stack::start(config).await.expect("local stack starts");
    let base = stack.base_url();
    TestApp { stack, http: reqwest::Client::new(), base }
}

/// A sample API body from `events/api/`.
pub fn sample(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join("events").join("api").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).expect("sample is JSON")
}

/// The sample API event `sample_name` from `events/api/` with a fresh `event_id`, for `user`.
pub fn event_for(sample_name: &str, user: &str) -> Value {
    let mut body = sample(sample_name);
    body["event_id"] = serde_json::json!(unique("evt"));
    body["user_id"] = serde_json::json!(user);
    body
}

/// A unique event id for one test.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", ulid::Ulid::new())
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn key(&self) -> String {
        format!("Bearer {}", self.stack.api_key)
    }

    /// The API as the holder of another key (another tenant's) sees it.
    pub fn with_key(&self, key: &str) -> Caller<'_> {
        Caller { app: self, authorization: format!("Bearer {key}") }
    }

    pub async fn post_event(&self, body: &Value) -> reqwest::Response {
        self.http.post(self.url("/v1/events")).header("authorization", self.key()).json(body).send().await.expect("request")
    }

    pub async fn post_raw(&self, body: impl Into<reqwest::Body>) -> reqwest::Response {
        self.http.post(self.url("/v1/events")).header("authorization", self.key()).body(body).send().await.expect("request")
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http.get(self.url(path)).header("authorization", self.key()).send().await.expect("request")
    }

    pub async fn put(&self, path: &str, body: &Value) -> reqwest::Response {
        self.http.put(self.url(path)).header("authorization", self.key()).json(body).send().await.expect("request")
    }

    /// Gives `user` an email, a phone and a push token.
    pub async fn create_user(&self, user: &str) {
        let profile = json!({
            "email": format!("{user}@example.com"),
            "phone": "+380501234567",
            "locale": "en",
            "timezone": "Europe/Kyiv",
            "push_tokens": [{"platform": "fcm", "token": format!("token-{user}")}]
        });
        let r = self.put(&format!("/v1/users/{user}"), &profile).await;
        assert_eq!(r.status(), 200, "profile stored: {}", r.text().await.unwrap_or_default());
    }

    pub async fn event_status(&self, event_id: &str) -> Value {
        let r = self.get(&format!("/v1/events/{event_id}")).await;
        assert_eq!(r.status(), 200);
        r.json().await.expect("json")
    }

    /// Polls the event's status until `channel`'s notification reaches `status`.
    pub async fn wait_for_notification(&self, event_id: &str, channel: &str, status: &str, timeout: Duration) -> Value {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let r = self.get(&format!("/v1/events/{event_id}")).await;
            if r.status() == 200 {
                let v: Value = r.json().await.expect("json");
                let found = v["notifications"].as_array().and_then(|ns| ns.iter().find(|n| n["channel"] == channel).cloned());
                if let Some(n) = found {
                    if n["status"] == status {
                        return n;
                    }
                    if tokio::time::Instant::now() >= deadline {
                        panic!("{event_id}/{channel} is {} not {status}: {n}", n["status"]);
                    }
                }
            }
            if tokio::time::Instant::now() >= deadline {
                panic!("{event_id} has no {channel} notification in {status} after {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub async fn outbox(&self, channel: &str) -> Vec<Value> {
        let r = self.get(&format!("/v1/dev/outbox?channel={channel}")).await;
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.expect("json");
        v["items"].as_array().cloned().unwrap_or_default()
    }

    /// Polls the outbox until it holds a `channel` message for `event_id`.
    pub async fn wait_for_outbox(&self, channel: &str, event_id: &str, timeout: Duration) -> Value {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(m) = self.outbox(channel).await.into_iter().find(|m| m["event_id"] == event_id) {
                return m;
            }
            if tokio::time::Instant::now() >= deadline {
                panic!("no {channel} message for {event_id} in the outbox after {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub async fn ws_token(&self, user: &str) -> String {
        let r = self.http.post(self.url(&format!("/v1/users/{user}/ws-token"))).header("authorization", self.key()).send().await.expect("request");
        assert_eq!(r.status(), 201);
        let v: Value = r.json().await.expect("json");
        v["token"].as_str().expect("token").to_owned()
    }

    /// Opens a WebSocket for `user` with a freshly minted token.
    pub async fn connect_ws(&self, user: &str) -> Socket {
        let token = self.ws_token(user).await;
        let url = format!("ws://{}/v1/ws?token={token}", self.stack.addr);
        let (socket, _) = tokio_tungstenite::connect_async(url).await.expect("websocket connects");
        // The connection is recorded before the upgrade answers, so it is live from here on.
        socket
    }
}

/// The next `notification` frame, or a panic after `timeout`.
pub async fn next_frame(socket: &mut Socket, timeout: Duration) -> Value {
    loop {
        let message = tokio::time::timeout(timeout, socket.next())
            .await
            .unwrap_or_else(|_| panic!("no frame within {timeout:?}"))
            .expect("socket open")
            .expect("frame");
        if let Message::Text(text) = message {
            let v: Value = serde_json::from_str(&text).expect("frame is JSON");
            if v["type"] == "notification" {
                return v;
            }
        }
    }
}

/// A caller of the local stack's API with a key of its own (a tenant's).
pub struct Caller<'a> {
    pub app: &'a TestApp,
    pub authorization: String,
}

impl Caller<'_> {
    pub async fn post_event(&self, body: &Value) -> reqwest::Response {
        let app = self.app;
        app.http.post(app.url("/v1/events")).header("authorization", &self.authorization).json(body).send().await.expect("request")
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        let app = self.app;
        app.http.get(app.url(path)).header("authorization", &self.authorization).send().await.expect("request")
    }

    pub async fn put(&self, path: &str, body: &Value) -> reqwest::Response {
        let app = self.app;
        app.http.put(app.url(path)).header("authorization", &self.authorization).json(body).send().await.expect("request")
    }

    pub async fn delete(&self, path: &str) -> reqwest::Response {
        let app = self.app;
        app.http.delete(app.url(path)).header("authorization", &self.authorization).send().await.expect("request")
    }

    pub async fn ws_token(&self, user: &str) -> String {
        let app = self.app;
        let r = app.http.post(app.url(&format!("/v1/users/{user}/ws-token"))).header("authorization", &self.authorization).send().await.expect("request");
        assert_eq!(r.status(), 201);
        let v: Value = r.json().await.expect("json");
        v["token"].as_str().expect("token").to_owned()
    }

    pub async fn connect_ws(&self, user: &str) -> Socket {
        let token = self.ws_token(user).await;
        let url = format!("ws://{}/v1/ws?token={token}", self.app.stack.addr);
        let (socket, _) = tokio_tungstenite::connect_async(url).await.expect("websocket connects");
        socket
    }
}
