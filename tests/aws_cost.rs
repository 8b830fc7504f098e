//! The AWS requests a delivered notification costs, measured on the emulator (moto) with the
//! AWS backend: the local stack runs the very handlers Lambda runs, over the real SDK clients,
//! and an interceptor counts every request by service and operation.
//!
//! A measurement, not a check (`#[ignore]`d; the figures are printed and written to
//! `target/aws-requests.json`, which `infra/cost.py` turns into dollars):
//!
//! ```sh
//! NOTIFY_FUZZ=0 bash tests/run.sh -E 'binary(aws_cost)' --run-ignored ignored-only --no-capture
//! ```
//!
//! Each scenario is run stage by stage so that every queue is consumed in full batches of ten,
//! as under load: every poller is held while the events are posted (ingest), then the routers
//! run while the send queues are held (route), then the senders drain them (send). A stage's
//! requests are the requests of one function, and its batches are that function's invocations.
//! `ReceiveMessage` is shown apart: the mappings' long polls of idle queues depend on time, not
//! on notifications; the receives that returned messages are the stage's batches.
//! `GetQueueAttributes` is this measurement's own look at queue depths, never the pipeline's.
//!
//! `NOTIFY_COST_EVENTS` (default 200) sets the events per scenario.

use futures::StreamExt;
use local_stack::config::{AwsBackend, AwsResources, Backend};
use notify_tests::aws::emulator_sdk_config;
use notify_tests::request_counter::RequestCounter;
use notify_tests::{TestApp, event_for, spawn_app_with, unique};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(300);
const USERS: usize = 20;
/// The template's `IngestRatePerKey`.
const INGEST_RATE: u32 = 100;

type Counts = BTreeMap<(String, String), usize>;

async fn spawn(counter: RequestCounter) -> TestApp {
    let sdk = emulator_sdk_config().await;
    let mut config = local_stack::Config::for_tests();
    config.retry_base = Duration::from_secs(1);
    config.retry_max = Duration::from_secs(1);
    // The template's default per-key rate (IngestRatePerKey 100), leased in blocks of 10: its
    // writes are counted as they are paid at that rate. An event refused with 429 is posted
    // again after its Retry-After (a refusal costs no AWS request).
    config.ingest_rate_per_key = Some(INGEST_RATE);
    config.backend = Backend::Aws(Box::new(AwsBackend {
        sdk,
        resources: AwsResources::Provision {
            template: local_stack::provision::repository_template(),
            stack_name: unique("c").to_lowercase(),
            parameters: [("MaxReceiveCount".to_owned(), "3".to_owned())].into(),
        },
        email_from: "notifications@example.com".into(),
        sms_sender_id: None,
        push_fcm_application_arn: None,
        interceptor: Some(aws_smithy_runtime_api::client::interceptors::SharedInterceptor::new(counter)),
    }));
    spawn_app_with(config).await
}

fn op(counts: &Counts, name: &str) -> usize {
    counts.iter().filter(|((_, o), _)| o == name).map(|(_, n)| *n).sum()
}

/// What a stage cost: its requests (polling and the measurement's own reads left out) and its
/// batches (the function's invocations).
struct Stage {
    name: &'static str,
    requests: Counts,
    batches: u64,
    records: usize,
}

fn billable(counts: &Counts) -> Counts {
    counts.iter().filter(|((_, o), _)| o != "ReceiveMessage" && o != "GetQueueAttributes").map(|(k, v)| (k.clone(), *v)).collect()
}

async fn depth(app: &TestApp, prefix: &str) -> usize {
    let mut total = 0;
    for spec in shared::topology::all_queues(&Default::default()) {
        let queue = spec.name;
        if queue.starts_with(prefix) && !shared::topology::is_dead_letter_queue(&queue) {
            total += app.stack.inspect.receiver.depth(&queue).await.unwrap();
        }
    }
    total
}

/// Runs one scenario: `events` events for `users`, each to `channels`, posted alone or in
/// batches of `batch` (1: `POST /v1/events`), and returns its stages.
async fn scenario(app: &TestApp, counter: &RequestCounter, users: &[String], events: usize, channels: &[&str], batch: usize) -> Vec<Stage> {
    let stats = &app.stack.inspect.poll_stats;
    assert!(app.stack.wait_idle(Duration::from_millis(500), WAIT).await);
    stats.hold(&[""]);
    // Long polls already under way (1 s) end before the first event is posted.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    counter.reset();
    let bodies: Vec<Value> = (0..events)
        .map(|i| {
            let mut body = event_for("user.registered.json", &users[i % users.len()]);
            body["channels"] = json!(channels);
            body
        })
        .collect();
    let posts: Vec<Vec<Value>> = bodies.chunks(batch).map(<[Value]>::to_vec).collect();
    let refused = &std::sync::atomic::AtomicUsize::new(0);
    let started = std::time::Instant::now();
    futures::stream::iter(posts)
        .for_each_concurrent(8, |chunk| async move {
            let mut pending = chunk;
            while !pending.is_empty() {
                if batch == 1 {
                    let r = app.post_event(&pending[0]).await;
                    if r.status() != 429 {
                        assert_eq!(r.status(), 202);
                        pending.clear();
                    }
                } else {
                    let r = app.http.post(app.url("/v1/events/batch")).header("authorization", app.key()).json(&pending).send().await.unwrap();
                    assert_eq!(r.status(), 200);
                    let answer: Value = r.json().await.unwrap();
                    let results = answer["results"].as_array().unwrap();
                    assert!(results.iter().all(|r| r["status"] == 202 || r["status"] == 429), "{answer}");
                    pending = pending.iter().zip(results).filter(|(_, r)| r["status"] == 429).map(|(e, _)| e.clone()).collect();
                }
                if !pending.is_empty() {
                    refused.fetch_add(pending.len(), std::sync::atomic::Ordering::Relaxed);
                    // Over the rate: posted again in the next second (Retry-After is at most 1 s).
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        })
        .await;
    let refused = refused.load(std::sync::atomic::Ordering::Relaxed);
    let seconds = started.elapsed().as_secs_f64();
    eprintln!("ingest: {events} events posted in {seconds:.1} s ({:.0}/s, rate {INGEST_RATE}/s), {refused} refused with 429 and posted again, {} requests", events as f64 / seconds, counter.total());
    let ingest = Stage { name: "ingest", requests: counter.snapshot(), batches: 0, records: events };

    // Route: the routers take the whole backlog in batches of ten; the send queues wait.
    let jobs = events * channels.len();
    counter.reset();
    let before = stats.batches();
    stats.hold(&["send-"]);
    let deadline = tokio::time::Instant::now() + WAIT;
    // Every event's router sends one batch per send queue it uses.
    let mut shown = tokio::time::Instant::now();
    while op(&counter.snapshot(), "SendMessageBatch") < jobs {
        if shown.elapsed() > Duration::from_secs(10) {
            eprintln!("route: {} batches, {:?}", stats.batches() - before, counter.snapshot());
            shown = tokio::time::Instant::now();
        }
        assert!(tokio::time::Instant::now() < deadline, "the routers never queued every send job: {:?}", counter.snapshot());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(app.stack.wait_idle(Duration::from_millis(500), WAIT).await);
    let route = Stage { name: "route", requests: counter.snapshot(), batches: stats.batches() - before, records: events };

    // Send: every sender drains its queue, in batches of ten.
    counter.reset();
    let before = stats.batches();
    stats.hold(&[]);
    let delivered = |c: &Counts| op(c, "SendEmail") + op(c, "Publish") + op(c, "PostToConnection");
    let deadline = tokio::time::Instant::now() + WAIT;
    while delivered(&counter.snapshot()) < jobs {
        assert!(tokio::time::Instant::now() < deadline, "not every notification was delivered: {:?}", counter.snapshot());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(app.stack.wait_idle(Duration::from_millis(1500), WAIT).await);
    let send = Stage { name: "send", requests: counter.snapshot(), batches: stats.batches() - before, records: jobs };
    assert_eq!(depth(app, "").await, 0, "every queue drained");
    vec![ingest, route, send]
}

fn report(title: &str, stages: &[Stage], per: usize, notifications: usize) -> Value {
    println!("\n{title}: requests per {} ({per} measured)", if notifications == per { "notification" } else { "event" });
    println!("  {:<7} {:<10} {:<24} {:>8}", "stage", "service", "operation", "per");
    let mut total = 0.0;
    let mut dynamo_writes = 0.0;
    let mut json_stages = serde_json::Map::new();
    for stage in stages {
        let mut ops = serde_json::Map::new();
        for ((service, operation), n) in billable(&stage.requests) {
            let each = n as f64 / per as f64;
            println!("  {:<7} {:<10} {:<24} {:>8.3}", stage.name, service, operation, each);
            total += each;
            if service == "DynamoDB" && ["PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"].contains(&operation.as_str()) {
                dynamo_writes += each;
            }
            ops.insert(format!("{service}:{operation}"), json!(n));
        }
        let receives = op(&stage.requests, "ReceiveMessage");
        if stage.batches > 0 {
            println!(
                "  {:<7} {:<10} {:<24} {:>8.3}   ({} batches of {:.1} records on average; {} ReceiveMessage calls in all, idle long polls included)",
                stage.name,
                "SQS",
                "ReceiveMessage (batches)",
                stage.batches as f64 / per as f64,
                stage.batches,
                stage.records as f64 / stage.batches as f64,
                receives
            );
        }
        json_stages.insert(
            stage.name.to_owned(),
            json!({"requests": ops, "batches": stage.batches, "records": stage.records, "receive_calls": receives}),
        );
    }
    println!("  total (without receives): {total:.3}; DynamoDB writes: {dynamo_writes:.3}");
    json!({"events": per, "notifications": notifications, "stages": json_stages, "dynamodb_writes_per_unit": dynamo_writes, "requests_per_unit": total})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "a measurement: NOTIFY_FUZZ=0 bash tests/run.sh -E 'binary(aws_cost)' --run-ignored ignored-only --no-capture"]
async fn aws_requests_per_delivered_notification() {
    let events: usize = std::env::var("NOTIFY_COST_EVENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(200);
    let counter = RequestCounter::default();
    let app = spawn(counter.clone()).await;
    let users: Vec<String> = (0..USERS).map(|_| unique("u")).collect();
    let mut sockets = Vec::new();
    for user in &users {
        let profile = json!({"email": format!("{}@example.com", user.to_lowercase()), "phone": "+14155550100", "locale": "en"});
        assert_eq!(app.put(&format!("/v1/users/{user}"), &profile).await.status(), 200);
        sockets.push(app.connect_ws(user).await);
    }
    let mut results = serde_json::Map::new();
    let single = scenario(&app, &counter, &users, events, &["email"], 1).await;
    results.insert("single_channel".into(), report("Single-channel (email), POST /v1/events", &single, events, events));
    let batched = scenario(&app, &counter, &users, events, &["email"], 10).await;
    results.insert("single_channel_batch10".into(), report("Single-channel (email), POST /v1/events/batch of 10", &batched, events, events));
    let three = scenario(&app, &counter, &users, events, &["email", "sms", "websocket"], 1).await;
    results.insert("three_channels".into(), report("Three channels (email, SMS, WebSocket), POST /v1/events", &three, events, events * 3));
    results.insert("item_bytes".into(), item_sizes(&app).await);
    app.stack.stop().await;
    drop(sockets);

    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/aws-requests.json");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, serde_json::to_string_pretty(&Value::Object(results)).unwrap()).unwrap();
    println!("\nwritten to {}", path.display());
}

/// An attribute value's size as DynamoDB bills it (names and values in UTF-8 bytes, numbers about
/// one byte per two digits plus one, three bytes of overhead per map or list and one per element).
fn value_bytes(v: &aws_sdk_dynamodb::types::AttributeValue) -> usize {
    use aws_sdk_dynamodb::types::AttributeValue as A;
    match v {
        A::S(s) => s.len(),
        A::N(n) => n.trim_start_matches('-').replace('.', "").len().div_ceil(2) + 1,
        A::B(b) => b.as_ref().len(),
        A::Bool(_) | A::Null(_) => 1,
        A::M(m) => 3 + m.iter().map(|(k, v)| k.len() + value_bytes(v) + 1).sum::<usize>(),
        A::L(l) => 3 + l.iter().map(|v| value_bytes(v) + 1).sum::<usize>(),
        A::Ss(ss) => ss.iter().map(String::len).sum(),
        A::Ns(ns) => ns.iter().map(|n| n.len().div_ceil(2) + 1).sum(),
        _ => 0,
    }
}

/// The average and largest item of the tables a notification writes, as stored: write request
/// units are billed per 1 KB of the item (the larger of before and after for an update), read
/// request units per 4 KB.
async fn item_sizes(app: &TestApp) -> Value {
    let tables = app.stack.aws.as_ref().unwrap().tables.clone();
    let client = aws_sdk_dynamodb::Client::new(&emulator_sdk_config().await);
    let mut sizes = serde_json::Map::new();
    println!("\nDynamoDB items as stored (bytes):");
    for (name, table) in [("events", &tables.events), ("notifications", &tables.notifications), ("users", &tables.users), ("idempotency", &tables.idempotency), ("rate_limits", &tables.rate_limits)] {
        let items = client.scan().table_name(table).send().await.unwrap().items.unwrap_or_default();
        let each: Vec<usize> = items.iter().map(|i| i.iter().map(|(k, v)| k.len() + value_bytes(v)).sum()).collect();
        let (avg, max) = (each.iter().sum::<usize>() as f64 / each.len().max(1) as f64, each.iter().copied().max().unwrap_or(0));
        println!("  {name:<14} {:>5} items, average {avg:>6.0}, largest {max:>6}", each.len());
        sizes.insert(name.into(), json!({"items": each.len(), "average": avg, "largest": max}));
    }
    Value::Object(sizes)
}
