//! Every sample Lambda event under `events/lambda/<function>/` goes through the handler that
//! function's `main.rs` runs (the same routers, the same `process_batch` + record handler
//! pairing), over the in-process adapters, so the samples cannot rot.
//!
//! The SQS samples carry real job bodies: `write_samples` (ignored; run it with
//! `cargo nextest run -p notify-tests --test lambda_samples --run-ignored only`) makes them by
//! pushing the API samples in `events/api/` through ingest and the router and wrapping what
//! lands on each queue in an SQS event.

use aws_lambda_events::event::apigw::ApiGatewayWebsocketProxyRequest;
use aws_lambda_events::event::sns::SnsEvent;
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use axum::Router;
use futures::FutureExt;
use serde_json::{Value, json};
use shared::adapters::memory::queue::MemoryQueue;
use shared::adapters::memory::store::MemoryStore;
use shared::adapters::memory::{MemoryConnectionPoster, Outbox, OutboxSender};
use shared::auth::{ApiKeys, WsTokens};
use shared::catalog::Catalog;
use shared::domain::{Channel, UserId};
use shared::handlers::dead_letter::handle_dead_letter_record;
use shared::handlers::deferred::handle_deferred_record;
use shared::handlers::router::handle_route_record;
use shared::handlers::send::{SendDeps, handle_send_record};
use shared::wiring::{self, Ports, Settings};
use shared::handlers::sqs_batch::{RetryPolicy, process_batch};
use shared::handlers::ws::{WebSocketFanout, WsDeps};
use shared::ports::{ChannelSender, Clock, ConnectionStore, QueueReceiver, SystemClock};
use shared::topology::{TopologySettings, all_queues};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt;

/// The API key the HTTP samples carry (its SHA-256 goes in NOTIFY_API_KEY_HASHES).
const SAMPLE_API_KEY: &str = "sample-api-key-0123456789";
/// The secret the ws-connect sample's token is signed with (NOTIFY_WS_TOKEN_SECRET).
const SAMPLE_WS_SECRET: &str = "sample-ws-token-secret-0123456789abcdef";
const ACCOUNT: &str = "123456789012";
const REGION: &str = "eu-west-1";
const STACK: &str = "notify";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn samples_dir() -> PathBuf {
    root().join("events/lambda")
}

/// One function's dependencies over the in-process adapters, as its main wires the AWS ones.
struct Platform {
    queues: Arc<MemoryQueue>,
    store: Arc<MemoryStore>,
    outbox: Outbox,
    poster: MemoryConnectionPoster,
    clock: Arc<dyn Clock>,
    catalog: Arc<Catalog>,
    tokens: Arc<WsTokens>,
    keys: Arc<ApiKeys>,
    callback_poster: Arc<RecordingPoster>,
}

/// Records the status callbacks `status-callbacks` would POST.
#[derive(Default)]
struct RecordingPoster(std::sync::Mutex<Vec<(String, String, Value)>>);

#[async_trait::async_trait]
impl shared::handlers::callbacks::CallbackPoster for RecordingPoster {
    async fn post_callback(&self, url: &str, id: &str, body: &Value) -> Result<(), shared::ports::SendError> {
        self.0.lock().unwrap().push((url.to_owned(), id.to_owned(), body.clone()));
        Ok(())
    }
}

impl Platform {
    fn new() -> Self {
        let queues = Arc::new(MemoryQueue::new(&all_queues(&TopologySettings::default())));
        Platform {
            queues,
            store: Arc::new(MemoryStore::new()),
            outbox: Outbox::new(None),
            poster: MemoryConnectionPoster::default(),
            clock: Arc::new(SystemClock),
            catalog: Arc::new(Catalog::embedded().expect("catalog")),
            tokens: Arc::new(WsTokens::new(SAMPLE_WS_SECRET.as_bytes(), Duration::from_secs(900)).unwrap()),
            keys: Arc::new(ApiKeys::from_config(SAMPLE_API_KEY, "").unwrap()),
            callback_poster: Arc::new(RecordingPoster::default()),
        }
    }

    /// The ports over the in-process adapters, as a main builds them over the AWS ones.
    fn ports(&self) -> Ports {
        Ports::over(self.queues.clone(), self.store.clone(), self.clock.clone())
    }

    /// `ingest`'s app (functions/ingest/src/main.rs).
    fn ingest_app(&self) -> Router {
        let deps = Arc::new(wiring::ingest(&self.ports(), self.catalog.clone(), &Settings::default()));
        shared::http::ingest_routes(deps, self.keys.clone()).merge(shared::http::common_routes())
    }

    /// `api`'s app (functions/api/src/main.rs).
    fn api_app(&self) -> Router {
        let deps = Arc::new(wiring::queries(&self.ports(), self.catalog.clone(), self.tokens.clone(), Arc::new(shared::adapters::memory::MemoryConnectionPoster::default()), &Settings::default()));
        shared::http::api_routes(deps, self.keys.clone()).merge(shared::http::common_routes())
    }

    /// A send function's dependencies, as `lambda::serve_send_queues` builds them.
    fn send_deps(&self, channel: Channel, sender: Arc<dyn ChannelSender>) -> SendDeps {
        wiring::sender(&self.ports(), self.catalog.clone(), &Settings::default(), sender, RetryPolicy::for_channel(channel))
    }

    fn ws_deps(&self) -> WsDeps {
        wiring::ws(&self.ports(), self.tokens.clone())
    }

    /// Runs one SQS batch through `function`'s handler.
    async fn sqs(&self, function: &str, event: &SqsEvent) -> SqsBatchResponse {
        let queue = self.queues.as_ref();
        let outbox_sender = || -> Arc<dyn ChannelSender> { Arc::new(OutboxSender::new(self.outbox.clone())) };
        let settings = Settings::default();
        match function {
            "router" => {
                let deps = wiring::router(&self.ports(), self.catalog.clone(), &settings);
                process_batch(event, queue, |r| handle_route_record(&deps, r).boxed()).await
            }
            "scheduler" => {
                let deps = wiring::scheduler(&self.ports(), &settings);
                process_batch(event, queue, |r| handle_deferred_record(&deps, r).boxed()).await
            }
            "send-email" | "send-sms" | "send-push" | "send-whatsapp" | "send-telegram" | "send-webhook" => {
                let channel = channel_of(function);
                let deps = self.send_deps(channel, outbox_sender());
                process_batch(event, queue, |r| handle_send_record(&deps, r).boxed()).await
            }
            "ws-push" => {
                let fanout = WebSocketFanout { connections: self.store.clone(), poster: Arc::new(self.poster.clone()), clock: self.clock.clone() };
                let deps = self.send_deps(Channel::Websocket, Arc::new(fanout));
                process_batch(event, queue, |r| handle_send_record(&deps, r).boxed()).await
            }
            "status-callbacks" => {
                let deps = shared::handlers::callbacks::CallbackDeps { poster: self.callback_poster.clone(), retry: RetryPolicy::for_channel(Channel::Webhook) };
                process_batch(event, queue, |r| shared::handlers::callbacks::handle_callback_record(&deps, r).boxed()).await
            }
            "dead-letter" => {
                let deps = wiring::dead_letter(&self.ports(), self.catalog.clone(), &settings);
                process_batch(event, queue, |r| handle_dead_letter_record(&deps, r).boxed()).await
            }
            other => panic!("no SQS handler for function {other}"),
        }
    }

    /// Runs an API Gateway HTTP API (payload 2.0) event through `function`'s app, as lambda_http does.
    async fn http(&self, function: &str, event: &Value) -> (u16, String) {
        let request: lambda_http::request::LambdaRequest = serde_json::from_value(event.clone()).expect("an HTTP API v2 event");
        let request: lambda_http::Request = request.into();
        let app = match function {
            "ingest" => self.ingest_app(),
            "api" => self.api_app(),
            other => panic!("no HTTP app for function {other}"),
        };
        let response = app.oneshot(request).await.unwrap();
        let status = response.status().as_u16();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    async fn post_api_sample(&self, name: &str) {
        let body = std::fs::read_to_string(root().join("events/api").join(name)).unwrap();
        let (status, answer) = self.http("ingest", &http_event("POST", "/v1/events", "POST /v1/events", json!({}), Some(&body))).await;
        assert!(status == 202, "{name}: {status} {answer}");
    }

    async fn put_profile(&self) {
        let body = std::fs::read_to_string(root().join("events/api/user.profile.json")).unwrap();
        let (status, answer) =
            self.http("api", &http_event("PUT", "/v1/users/u-42", "PUT /v1/users/{user_id}", json!({"user_id": "u-42"}), Some(&body))).await;
        assert!((200..300).contains(&status), "{status} {answer}");
    }

    /// What waits on `queue`, as the SQS event Lambda would hand its consumer.
    async fn take(&self, queue: &str) -> SqsEvent {
        let messages = self.queues.receive(queue, 10, Duration::from_millis(10)).await.unwrap();
        let records: Vec<Value> = messages
            .iter()
            .enumerate()
            .map(|(i, m)| {
                json!({
                    "messageId": format!("0b6c3a1e-5a1f-4c7e-9d51-{:012}", i + 1),
                    "receiptHandle": format!("AQEB{}sample-receipt-{}", queue.replace('.', "-"), i + 1),
                    "body": m.body,
                    "attributes": {
                        "ApproximateReceiveCount": "1",
                        "SentTimestamp": m.sent_at_millis.to_string(),
                        "SenderId": "AROAEXAMPLE:notify-sample",
                        "ApproximateFirstReceiveTimestamp": (m.sent_at_millis + 40).to_string(),
                        "MessageGroupId": m.group_id,
                        "MessageDeduplicationId": m.dedup_id,
                        "SequenceNumber": format!("1886592{:013}", i + 1)
                    },
                    "messageAttributes": {},
                    "md5OfBody": "",
                    "eventSource": "aws:sqs",
                    "eventSourceARN": format!("arn:aws:sqs:{REGION}:{ACCOUNT}:{STACK}-{queue}"),
                    "awsRegion": REGION
                })
            })
            .collect();
        assert!(!records.is_empty(), "nothing on {queue}");
        // Taken off the queue (a FIFO group stays blocked while a message of it is in flight).
        for m in &messages {
            self.queues.delete(queue, &m.receipt_handle).await.unwrap();
        }
        serde_json::from_value(json!({ "Records": records })).unwrap()
    }

    /// Makes the state every sample expects: the recipient u-42, and the built-in sample events
    /// accepted and routed (their send jobs queued: their senders' claims write their
    /// notifications), one live connection for u-42.
    async fn seed(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<String>> {
        self.put_profile().await;
        for name in ["order.completed.json", "payment.failed.json", "user.registered.json", "payment.failed.chat.json"] {
            self.post_api_sample(name).await;
        }
        for queue in ["events-fast.fifo", "events-bulk.fifo"] {
            while let Ok(batch) = self.queues.receive(queue, 10, Duration::from_millis(10)).await {
                if batch.is_empty() {
                    break;
                }
                for m in batch {
                    let event = sqs_event_of(queue, &m.body, m.group_id.as_deref());
                    let response = self.sqs("router", &event).await;
                    assert!(response.batch_item_failures.is_empty(), "routing the seed failed");
                    self.queues.delete(queue, &m.receipt_handle).await.unwrap();
                }
            }
        }
        let (frames_tx, frames) = tokio::sync::mpsc::unbounded_channel();
        self.poster.register("Sample-Connection-Id=", frames_tx);
        let (token, _) = self.tokens.mint(&UserId::parse("u-42").unwrap(), jiff::Timestamp::now());
        shared::handlers::ws::connect(&self.ws_deps(), "Sample-Connection-Id=", Some(&token)).await.unwrap();
        Some(frames)
    }
}

/// The channel a send function delivers.
fn channel_of(function: &str) -> Channel {
    match function {
        "send-email" => Channel::Email,
        "send-sms" => Channel::Sms,
        "send-push" => Channel::Push,
        "send-whatsapp" => Channel::Whatsapp,
        "send-telegram" => Channel::Telegram,
        "send-webhook" => Channel::Webhook,
        other => panic!("{other} is not a send function"),
    }
}

fn sqs_event_of(queue: &str, body: &str, group: Option<&str>) -> SqsEvent {
    serde_json::from_value(json!({"Records": [{
        "messageId": "seed", "receiptHandle": "seed", "body": body,
        "attributes": {"ApproximateReceiveCount": "1", "MessageGroupId": group},
        "eventSource": "aws:sqs", "eventSourceARN": format!("arn:aws:sqs:{REGION}:{ACCOUNT}:{STACK}-{queue}"), "awsRegion": REGION
    }]}))
    .unwrap()
}

/// An API Gateway HTTP API event, payload format 2.0, `$default` stage.
fn http_event(method: &str, path: &str, route: &str, path_parameters: Value, body: Option<&str>) -> Value {
    let mut event = json!({
        "version": "2.0",
        "routeKey": route,
        "rawPath": path,
        "rawQueryString": "",
        "headers": {
            "authorization": format!("Bearer {SAMPLE_API_KEY}"),
            "content-type": "application/json",
            "host": "abc123def4.execute-api.eu-west-1.amazonaws.com",
            "user-agent": "curl/8.5.0",
            "x-forwarded-for": "203.0.113.10",
            "x-forwarded-proto": "https"
        },
        "requestContext": {
            "accountId": ACCOUNT,
            "apiId": "abc123def4",
            "domainName": "abc123def4.execute-api.eu-west-1.amazonaws.com",
            "domainPrefix": "abc123def4",
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "203.0.113.10", "userAgent": "curl/8.5.0"},
            "requestId": "Jz0qHgS2liAEMmA=",
            "routeKey": route,
            "stage": "$default",
            "time": "22/Nov/2026:10:00:00 +0000",
            "timeEpoch": 1795341600000_u64
        },
        "isBase64Encoded": false
    });
    if path_parameters.as_object().is_some_and(|m| !m.is_empty()) {
        event["pathParameters"] = path_parameters;
    }
    if let Some(body) = body {
        event["body"] = Value::String(body.to_owned());
    }
    event
}

/// An API Gateway WebSocket event for `route` ($connect, $disconnect).
fn websocket_event(route: &str, token: Option<&str>) -> Value {
    let mut event = json!({
        "headers": {"Host": "ws123abc45.execute-api.eu-west-1.amazonaws.com", "Sec-WebSocket-Version": "13"},
        "isBase64Encoded": false,
        "requestContext": {
            "routeKey": route,
            "eventType": if route == "$connect" { "CONNECT" } else { "DISCONNECT" },
            "extendedRequestId": "Jz0qHgS2liAEMmB=",
            "requestTime": "22/Nov/2026:10:00:00 +0000",
            "messageDirection": "IN",
            "stage": "live",
            "connectedAt": 1795341600000_u64,
            "requestTimeEpoch": 1795341600000_u64,
            "identity": {"sourceIp": "203.0.113.10", "userAgent": "Mozilla/5.0"},
            "requestId": "Jz0qHgS2liAEMmB=",
            "domainName": "ws123abc45.execute-api.eu-west-1.amazonaws.com",
            "connectionId": "Sample-Connection-Id=",
            "apiId": "ws123abc45"
        }
    });
    if let Some(token) = token {
        event["queryStringParameters"] = json!({ "token": token });
    }
    event
}

fn write(function: &str, case: &str, value: &Value) {
    let dir = samples_dir().join(function);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("{case}.json")), serde_json::to_string_pretty(value).unwrap() + "\n").unwrap();
}

#[tokio::test]
#[ignore = "writes events/lambda/; run it to regenerate the samples"]
async fn write_samples() {
    let p = Platform::new();
    // HTTP samples.
    let profile = std::fs::read_to_string(root().join("events/api/user.profile.json")).unwrap();
    let preferences = std::fs::read_to_string(root().join("events/api/user.preferences.json")).unwrap();
    let order = std::fs::read_to_string(root().join("events/api/order.completed.json")).unwrap();
    let u = json!({"user_id": "u-42"});
    write("ingest", "post-event", &http_event("POST", "/v1/events", "POST /v1/events", json!({}), Some(&order)));
    write("ingest", "health", &http_event("GET", "/health", "GET /health", json!({}), None));
    write("api", "put-user", &http_event("PUT", "/v1/users/u-42", "PUT /v1/users/{user_id}", u.clone(), Some(&profile)));
    write("api", "get-user", &http_event("GET", "/v1/users/u-42", "GET /v1/users/{user_id}", u.clone(), None));
    write(
        "api",
        "put-preferences",
        &http_event("PUT", "/v1/users/u-42/preferences", "PUT /v1/users/{user_id}/preferences", u.clone(), Some(&preferences)),
    );
    write("api", "get-preferences", &http_event("GET", "/v1/users/u-42/preferences", "GET /v1/users/{user_id}/preferences", u.clone(), None));
    write(
        "api",
        "get-notifications",
        &http_event("GET", "/v1/users/u-42/notifications", "GET /v1/users/{user_id}/notifications", u.clone(), None),
    );
    write("api", "post-ws-token", &http_event("POST", "/v1/users/u-42/ws-token", "POST /v1/users/{user_id}/ws-token", u, None));
    write("api", "get-suppressions", &http_event("GET", "/v1/suppressions", "GET /v1/suppressions", json!({}), None));
    write(
        "api",
        "get-event",
        &http_event("GET", "/v1/events/evt-order-A-17", "GET /v1/events/{event_id}", json!({"event_id": "evt-order-A-17"}), None),
    );

    // WebSocket samples: a token valid for ten years, signed with the sample secret.
    let long_lived = WsTokens::new(SAMPLE_WS_SECRET.as_bytes(), Duration::from_secs(10 * 365 * 86_400)).unwrap();
    let (token, _) = long_lived.mint(&UserId::parse("u-42").unwrap(), jiff::Timestamp::now());
    write("ws-connect", "connect", &websocket_event("$connect", Some(&token)));
    write("ws-disconnect", "disconnect", &websocket_event("$disconnect", None));

    // SQS samples: what ingest and the router really put on the queues.
    p.put_profile().await;
    p.post_api_sample("order.completed.json").await;
    let route = p.take("events-fast.fifo").await;
    write("router", "events-fast-batch", &serde_json::to_value(&route).unwrap());
    assert!(p.sqs("router", &route).await.batch_item_failures.is_empty());
    p.post_api_sample("payment.failed.json").await;
    let route = p.take("events-fast.fifo").await;
    assert!(p.sqs("router", &route).await.batch_item_failures.is_empty());
    p.post_api_sample("payment.failed.chat.json").await;
    let route = p.take("events-fast.fifo").await;
    assert!(p.sqs("router", &route).await.batch_item_failures.is_empty());
    for (function, queue) in [
        ("send-email", "send-email-fast.fifo"),
        ("send-push", "send-push-fast.fifo"),
        ("send-sms", "send-sms-fast.fifo"),
        ("ws-push", "send-websocket-fast.fifo"),
        ("send-whatsapp", "send-whatsapp-fast.fifo"),
        ("send-telegram", "send-telegram-fast.fifo"),
        ("send-webhook", "send-webhook-fast.fifo"),
    ] {
        let batch = p.take(queue).await;
        let mut value = serde_json::to_value(&batch).unwrap();
        value["Records"].as_array_mut().unwrap().truncate(1);
        write(function, &format!("{}-batch", queue.trim_end_matches(".fifo")), &value);
        if function == "send-email" {
            // The same job after its last receive, as the redrive policy moves it.
            let record = &mut value["Records"][0];
            record["eventSourceARN"] = json!(format!("arn:aws:sqs:{REGION}:{ACCOUNT}:{STACK}-send-email-fast-dlq.fifo"));
            record["attributes"]["ApproximateReceiveCount"] = json!("1");
            write("dead-letter", "send-email-fast-dlq-batch", &value);
        }
    }

    // A status callback: the final status of the order's email, as a send function queues it
    // (its record as its job carries it: the router queued it at once, writing nothing).
    let email: Value = serde_json::from_str(&std::fs::read_to_string(samples_dir().join("send-email/send-email-fast-batch.json")).unwrap()).unwrap();
    let email_job: shared::jobs::SendJob = serde_json::from_str(email["Records"][0]["body"].as_str().unwrap()).unwrap();
    let mut sent = email_job.record().expect("the job carries its record");
    sent.status = shared::domain::Status::Sent;
    sent.provider = Some("ses".into());
    let callbacks = shared::handlers::callbacks::StatusCallbacks { url: Some("https://hooks.example.com/notify-status".into()), queue: p.queues.clone() };
    callbacks.emit(&sent).await.unwrap();
    let batch = p.take(shared::topology::CALLBACKS_QUEUE).await;
    write("status-callbacks", "status-callbacks-batch", &serde_json::to_value(&batch).unwrap());
    // A send job held for later (scheduled send, quiet hours), as the router parks it on
    // `deferred` (with a message delay, so it is built here rather than taken off the queue):
    // the email job above, due since 10:15.
    let email: Value = serde_json::from_str(&std::fs::read_to_string(samples_dir().join("send-email/send-email-fast-batch.json")).unwrap()).unwrap();
    let job: Value = serde_json::from_str(email["Records"][0]["body"].as_str().unwrap()).unwrap();
    let mut value = email.clone();
    let record = &mut value["Records"][0];
    record["body"] = json!(json!({"queue": "send-email-fast.fifo", "deliver_after": "2026-11-22T10:15:00Z", "job": job}).to_string());
    record["eventSourceARN"] = json!(format!("arn:aws:sqs:{REGION}:{ACCOUNT}:{STACK}-deferred"));
    let attributes = record["attributes"].as_object_mut().unwrap();
    for fifo_only in ["MessageGroupId", "MessageDeduplicationId", "SequenceNumber"] {
        attributes.remove(fifo_only);
    }
    write("scheduler", "deferred-batch", &value);
}

/// Which kind of event each function's main receives.
enum Kind {
    Http,
    Sqs,
    WebSocket,
    /// SES feedback through SNS (`feedback`); its samples are the SES docs' event records,
    /// written by hand rather than by `write_samples`.
    Sns,
}

fn kind_of(function: &str) -> Option<Kind> {
    Some(match function {
        "ingest" | "api" => Kind::Http,
        "router" | "scheduler" | "send-email" | "send-sms" | "send-push" | "send-whatsapp" | "send-telegram" | "send-webhook" | "ws-push"
        | "dead-letter" | "status-callbacks" => Kind::Sqs,
        "ws-connect" | "ws-disconnect" => Kind::WebSocket,
        "feedback" => Kind::Sns,
        _ => return None,
    })
}

#[tokio::test]
async fn every_function_has_a_sample() {
    let functions: Vec<String> = std::fs::read_dir(root().join("functions"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("Cargo.toml").exists())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    for function in functions {
        let dir = samples_dir().join(&function);
        let count = std::fs::read_dir(&dir).map(|d| d.count()).unwrap_or(0);
        assert!(count > 0, "functions/{function} has no sample under events/lambda/{function}/");
    }
}

#[tokio::test]
async fn every_sample_runs_through_its_handler() {
    let mut ran = 0;
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(samples_dir()).unwrap().map(|e| e.unwrap().path()).filter(|p| p.is_dir()).collect();
    dirs.sort();
    for dir in dirs {
        let function = dir.file_name().unwrap().to_string_lossy().into_owned();
        let kind = kind_of(&function).unwrap_or_else(|| panic!("events/lambda/{function}: no such function"));
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
        files.sort();
        for file in files {
            let name = format!("{function}/{}", file.file_name().unwrap().to_string_lossy());
            let sample: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap_or_else(|e| panic!("{name}: {e}"));
            // A fresh platform per sample, in the state the samples assume.
            let p = Platform::new();
            let mut frames = p.seed().await.unwrap();
            let outbox_before = p.outbox.len();
            match kind {
                Kind::Http => {
                    let (status, body) = p.http(&function, &sample).await;
                    assert!((200..300).contains(&status), "{name}: {status} {body}");
                }
                Kind::WebSocket => {
                    let request: ApiGatewayWebsocketProxyRequest = serde_json::from_value(sample).unwrap_or_else(|e| panic!("{name}: {e}"));
                    let deps = p.ws_deps();
                    let before = p.store.active_connections().await.unwrap();
                    let response = match function.as_str() {
                        "ws-connect" => shared::lambda::handle_ws_connect(&deps, &request).await,
                        _ => shared::lambda::handle_ws_disconnect(&deps, &request).await,
                    };
                    assert_eq!(response.status_code, 200, "{name}: {:?}", response.body);
                    let after = p.store.active_connections().await.unwrap();
                    match function.as_str() {
                        // The sample's connection id is the seeded one: connecting it again changes nothing.
                        "ws-connect" => assert_eq!(after, before, "{name}"),
                        _ => assert_eq!(after, before - 1, "{name}: the connection is forgotten"),
                    }
                }
                Kind::Sns => {
                    use shared::handlers::feedback::{FeedbackOutcome, handle_feedback};
                    use shared::ports::SuppressionStore;
                    let event: SnsEvent = serde_json::from_value(sample).unwrap_or_else(|e| panic!("{name}: {e}"));
                    let outcomes = handle_feedback(&wiring::feedback(&p.ports(), &Settings::default()), &event).await.unwrap_or_else(|e| panic!("{name}: {e}"));
                    assert_eq!(outcomes.len(), event.records.len(), "{name}");
                    let suppressed = outcomes.iter().any(|o| matches!(o, FeedbackOutcome::Suppressed { recipients: 1.., .. }));
                    // The samples bounce (or complain about) the seeded recipient's address.
                    assert_eq!(p.store.is_suppressed(&shared::domain::Tenant::default_tenant(), Channel::Email, "olena@example.com").await.unwrap(), suppressed, "{name}: {outcomes:?}");
                }
                Kind::Sqs => {
                    let event: SqsEvent = serde_json::from_value(sample).unwrap_or_else(|e| panic!("{name}: {e}"));
                    if function == "scheduler" {
                        // What the router writes for a job it holds: its notification, scheduled.
                        for record in &event.records {
                            let held: shared::jobs::DeferredJob = serde_json::from_str(record.body.as_deref().unwrap_or_default()).unwrap_or_else(|e| panic!("{name}: {e}"));
                            let mut n = held.job.record().unwrap_or_else(|| panic!("{name}: the job carries its record"));
                            (n.status, n.deliver_after) = (shared::domain::Status::Scheduled, Some(held.deliver_after));
                            assert!(shared::ports::NotificationStore::create(p.store.as_ref(), &n).await.unwrap(), "{name}");
                        }
                    }
                    let response = p.sqs(&function, &event).await;
                    assert!(response.batch_item_failures.is_empty(), "{name}: {:?}", response.batch_item_failures);
                    match function.as_str() {
                        "send-email" | "send-sms" | "send-push" | "send-whatsapp" | "send-telegram" | "send-webhook" => {
                            let channel = channel_of(&function);
                            assert_eq!(p.outbox.len(), outbox_before + 1, "{name}: one message sent");
                            assert_eq!(p.outbox.entries(Some(channel)).len(), 1, "{name}");
                        }
                        "ws-push" => {
                            let frame = frames.try_recv().unwrap_or_else(|_| panic!("{name}: no frame on the live connection"));
                            assert!(frame.contains("\"notification\""), "{name}: {frame}");
                        }
                        "router" => assert!(p.queues.depth("send-email-fast.fifo").await.unwrap() > 0, "{name}: send jobs queued"),
                        "status-callbacks" => {
                            let posted = p.callback_poster.0.lock().unwrap().clone();
                            assert_eq!(posted.len(), 1, "{name}: one callback posted");
                            assert_eq!(posted[0].2["type"], "notification.sent", "{name}");
                        }
                        _ => {}
                    }
                }
            }
            ran += 1;
        }
    }
    assert!(ran >= 13, "only {ran} samples ran");
}
