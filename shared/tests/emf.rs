//! The CloudWatch Embedded Metric Format documents the Lambda functions print: what
//! `shared::metrics` records, as `telemetry::install_emf` writes it after an invocation.
//!
//! Its own test binary: the EMF collector is the process's global metrics recorder, which the
//! unit tests of `shared` (recording from the handlers they run) must not share.

use serde_json::{Value, json};
use shared::domain::{Channel, Lane};
use shared::metrics::{self, RejectReason};
use shared::telemetry::LambdaTelemetry;
use std::sync::Mutex;
use std::time::Duration;

/// The collector is global: one test at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn telemetry() -> LambdaTelemetry {
    shared::telemetry::install_emf("NotifyTest".into(), "send-email").expect("the EMF recorder installs")
}

fn flush(telemetry: &LambdaTelemetry) -> (String, Vec<Value>) {
    let mut out = Vec::new();
    telemetry.flush(&mut out).expect("flush into a Vec");
    let text = String::from_utf8(out).expect("UTF-8");
    let docs = text.lines().map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"))).collect();
    (text, docs)
}

/// The document whose dimension set is `dimensions` (key, value pairs, in order).
fn document<'a>(docs: &'a [Value], dimensions: &[(&str, &str)]) -> &'a Value {
    let keys: Vec<&str> = dimensions.iter().map(|(k, _)| *k).collect();
    docs.iter()
        .find(|d| {
            d["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == json!([keys]) && dimensions.iter().all(|(k, v)| d[*k] == json!(v))
        })
        .unwrap_or_else(|| panic!("no document with dimensions {dimensions:?} in {docs:#?}"))
}

/// `{"Name": …, "Unit": …}` of each metric the document declares.
fn declared(doc: &Value) -> Vec<(String, String)> {
    doc["_aws"]["CloudWatchMetrics"][0]["Metrics"]
        .as_array()
        .expect("Metrics")
        .iter()
        .map(|m| (m["Name"].as_str().unwrap().to_owned(), m["Unit"].as_str().unwrap_or("").to_owned()))
        .collect()
}

#[test]
fn documents_carry_the_namespace_the_contract_dimensions_units_and_values() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let telemetry = telemetry();
    flush(&telemetry); // whatever an earlier test left

    metrics::event_accepted(Lane::Fast);
    metrics::event_accepted(Lane::Fast);
    metrics::event_rejected(RejectReason::SchemaViolation);
    metrics::notification_sent(Channel::Email, Lane::Fast);
    metrics::ingest_to_sent_latency(Channel::Email, Lane::Fast, Duration::from_millis(1500));
    metrics::provider_latency(Channel::Email, Duration::from_millis(12));
    metrics::provider_latency(Channel::Email, Duration::from_millis(30));
    metrics::retry("notify-prod-send-email-fast.fifo");
    metrics::dead_letter_arrival("notify-prod-send-email-fast-dlq.fifo");
    metrics::active_websocket_connections(2);

    let (text, docs) = flush(&telemetry);
    println!("{text}");
    assert_eq!(text.lines().count(), docs.len());
    assert!(text.ends_with('\n'), "every document is a line of its own");
    assert_eq!(docs.len(), 6, "one document per label set (Retries and DeadLetterArrivals share one): {text}");

    for doc in &docs {
        let aws = &doc["_aws"];
        assert!(aws["Timestamp"].as_u64().is_some_and(|t| t > 1_700_000_000_000), "Timestamp in ms: {doc}");
        let directive = &aws["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "NotifyTest");
        assert_eq!(aws["CloudWatchMetrics"].as_array().unwrap().len(), 1);
        // Dimensions: only the contract's label keys, each with its value at the top level.
        let dimension_sets = directive["Dimensions"].as_array().unwrap();
        assert_eq!(dimension_sets.len(), 1);
        for key in dimension_sets[0].as_array().unwrap() {
            let key = key.as_str().unwrap();
            assert!(metrics::LABEL_KEYS.contains(&key), "{key} is not a contract dimension");
            assert!(doc[key].is_string(), "{key} has a value: {doc}");
        }
        // Every declared metric is ours, with the contract's unit and dimensions, and has a value.
        for (name, unit) in declared(doc) {
            let spec = metrics::spec(&name).unwrap_or_else(|| panic!("{name} is not in the contract"));
            assert_eq!(unit, spec.unit, "{name}");
            assert_eq!(dimension_sets[0], json!(spec.dimensions), "{name}");
            assert!(!doc[&name].is_null(), "{name} has a value");
        }
        // The function is a property, not a dimension.
        assert_eq!(doc["Function"], "send-email");
    }

    let doc = document(&docs, &[("Lane", "fast")]);
    assert_eq!(declared(doc), [("EventsAccepted".to_owned(), "Count".to_owned())]);
    assert_eq!(doc["EventsAccepted"], 2);
    assert_eq!(document(&docs, &[("Reason", "schema_violation")])["EventsRejected"], 1);
    let doc = document(&docs, &[("Channel", "email"), ("Lane", "fast")]);
    assert_eq!(doc["NotificationsSent"], 1);
    assert_eq!(doc["IngestToSentLatency"], json!([1500.0]));
    assert!(declared(doc).contains(&("IngestToSentLatency".to_owned(), "Milliseconds".to_owned())));
    assert_eq!(document(&docs, &[("Channel", "email")])["ProviderLatency"], json!([12.0, 30.0]));
    assert_eq!(document(&docs, &[("Queue", "send-email-fast")])["Retries"], 1);
    assert_eq!(document(&docs, &[("Queue", "send-email-fast")])["DeadLetterArrivals"], 1);
    let doc = document(&docs, &[]);
    assert_eq!(doc["ActiveWebSocketConnections"], json!([2.0]));
    assert_eq!(declared(doc), [("ActiveWebSocketConnections".to_owned(), "Count".to_owned())]);

    // The next invocation writes only what it recorded: counters restart, and the connection
    // count is not repeated from an earlier invocation.
    let (text, docs) = flush(&telemetry);
    assert_eq!(text, "", "nothing recorded, nothing written");
    assert!(docs.is_empty());
    metrics::active_websocket_connections(5);
    metrics::notification_sent(Channel::Email, Lane::Fast);
    let (_, docs) = flush(&telemetry);
    assert_eq!(docs.len(), 2);
    assert_eq!(document(&docs, &[])["ActiveWebSocketConnections"], json!([5.0]));
    let doc = document(&docs, &[("Channel", "email"), ("Lane", "fast")]);
    assert_eq!(doc["NotificationsSent"], 1);
    assert!(doc.get("IngestToSentLatency").is_none());

    // Installing again keeps the first recorder.
    let again = shared::telemetry::install_emf("Other".into(), "router").expect("a second install is harmless");
    metrics::event_accepted(Lane::Bulk);
    let (_, docs) = flush(&again);
    assert_eq!(docs[0]["_aws"]["CloudWatchMetrics"][0]["Namespace"], "NotifyTest");
    assert_eq!(document(&docs, &[("Lane", "bulk")])["EventsAccepted"], 1);
}

/// A stand-in for the Lambda Runtime API on loopback: hands out one invocation, takes its
/// response, then reports the runtime's next poll (which only comes once the invocation,
/// flush included, is over) and never answers it.
mod runtime_api {
    use axum::Router;
    use axum::extract::State;
    use axum::http::HeaderMap;
    use axum::response::IntoResponse;
    use axum::routing::{get, post};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::sync::mpsc;

    pub enum Seen {
        Response(String),
        NextPoll(usize),
    }

    #[derive(Clone)]
    struct Api {
        polls: Arc<AtomicUsize>,
        seen: mpsc::UnboundedSender<Seen>,
    }

    pub async fn start() -> (String, mpsc::UnboundedReceiver<Seen>) {
        let (seen, events) = mpsc::unbounded_channel();
        let api = Api { polls: Arc::new(AtomicUsize::new(0)), seen };
        let app = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route("/2018-06-01/runtime/invocation/{id}/response", post(response))
            .with_state(api);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
        (addr.to_string(), events)
    }

    async fn next(State(api): State<Api>) -> impl IntoResponse {
        let poll = api.polls.fetch_add(1, Ordering::SeqCst);
        if poll > 0 {
            let _ = api.seen.send(Seen::NextPoll(poll));
            std::future::pending::<()>().await;
        }
        let deadline = jiff::Timestamp::now().as_millisecond() + 60_000;
        let mut headers = HeaderMap::new();
        headers.insert("lambda-runtime-aws-request-id", "req-1".parse().unwrap());
        headers.insert("lambda-runtime-deadline-ms", deadline.to_string().parse().unwrap());
        headers.insert("lambda-runtime-invoked-function-arn", "arn:aws:lambda:us-east-1:123456789012:function:test".parse().unwrap());
        (headers, r#"{"hello": "world"}"#)
    }

    async fn response(State(api): State<Api>, body: String) -> impl IntoResponse {
        let _ = api.seen.send(Seen::Response(body));
        axum::http::StatusCode::ACCEPTED
    }
}

#[test]
fn the_runtime_integration_flushes_after_every_invocation() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let telemetry = telemetry();
    flush(&telemetry); // whatever an earlier test left
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    runtime.block_on(async {
        let (addr, mut seen) = runtime_api::start().await;
        // SAFETY: no other thread of this test binary reads or writes the environment (the
        // tests here run one at a time, and nothing else reads these variables).
        unsafe {
            std::env::set_var("AWS_LAMBDA_RUNTIME_API", &addr);
            std::env::set_var("AWS_LAMBDA_FUNCTION_NAME", "send-email");
            std::env::set_var("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128");
            std::env::set_var("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST");
        }
        let function = telemetry.run(|event: lambda_runtime::LambdaEvent<Value>| async move {
            assert_eq!(event.payload, json!({"hello": "world"}));
            metrics::notification_sent(Channel::Sms, Lane::Bulk);
            Ok::<_, lambda_runtime::Error>(json!({"handled": true}))
        });
        let checks = async {
            let patience = Duration::from_secs(10);
            match tokio::time::timeout(patience, seen.recv()).await.expect("the invocation is answered") {
                Some(runtime_api::Seen::Response(body)) => assert_eq!(serde_json::from_str::<Value>(&body).unwrap(), json!({"handled": true})),
                _ => panic!("expected the invocation's response first"),
            }
            let next = tokio::time::timeout(patience, seen.recv()).await.expect("the runtime polls again");
            assert!(matches!(next, Some(runtime_api::Seen::NextPoll(1))));
        };
        // The runtime polls forever; the checks end the test.
        tokio::select! {
            stopped = function => panic!("the runtime stopped: {stopped:?}"),
            () = checks => {}
        }
    });

    // The invocation's metrics went to stdout when it ended: nothing is left to flush.
    let (text, _) = flush(&telemetry);
    assert_eq!(text, "", "the runtime integration flushed the invocation's metrics");
    // And documents written since carry the last invocation's request id.
    metrics::notification_sent(Channel::Sms, Lane::Bulk);
    let (_, docs) = flush(&telemetry);
    let doc = document(&docs, &[("Channel", "sms"), ("Lane", "bulk")]);
    assert_eq!((doc["NotificationsSent"].clone(), doc["RequestId"].clone()), (json!(1), json!("req-1")));
}
