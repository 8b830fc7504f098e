//! `GET /metrics` of the local stack: what the handlers counted, in Prometheus text format, after
//! real traffic through the API, the queues and a WebSocket.
//!
//! A test binary of its own with one test: the Prometheus recorder is global to the process, so
//! other tests' traffic would add to these counts if they shared it (nextest runs every test in
//! its own process anyway; `cargo test` runs a binary's tests in one).

use notify_tests::{TestApp, event_for, next_frame, spawn_app, unique};
use serde_json::json;
use std::collections::BTreeMap;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);

/// One sample line: name, labels, value.
type Sample = (String, BTreeMap<String, String>, f64);

fn parse(text: &str) -> Vec<Sample> {
    let mut samples = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("not a sample line: {line}"));
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("not a value: {line}"));
        let (name, labels) = match series.split_once('{') {
            None => (series, BTreeMap::new()),
            Some((name, rest)) => {
                let labels = rest
                    .strip_suffix('}')
                    .unwrap_or_else(|| panic!("unclosed labels: {line}"))
                    .split(',')
                    .map(|pair| {
                        let (k, v) = pair.split_once('=').unwrap_or_else(|| panic!("not a label: {line}"));
                        (k.to_owned(), v.trim_matches('"').to_owned())
                    })
                    .collect();
                (name, labels)
            }
        };
        samples.push((name.to_owned(), labels, value));
    }
    samples
}

/// The value of `name` with exactly `labels`, if present.
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let wanted: BTreeMap<String, String> = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    samples.iter().find(|(n, l, _)| n == name && *l == wanted).map(|(_, _, v)| *v)
}

async fn scrape(app: &TestApp) -> (String, Vec<Sample>) {
    // No API key: /metrics is open on loopback, like /health.
    let r = app.http.get(app.url("/metrics")).send().await.expect("request");
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
    let text = r.text().await.expect("body");
    let samples = parse(&text);
    (text, samples)
}

/// Scrapes until `name{labels}` reads `expected` (the counters move just after the status the
/// tests wait for is written).
async fn wait_for(app: &TestApp, name: &str, labels: &[(&str, &str)], expected: f64) -> Vec<Sample> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (text, samples) = scrape(app).await;
        if value(&samples, name, labels) == Some(expected) {
            return samples;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("{name}{labels:?} is {:?}, not {expected}, after {WAIT:?}:\n{text}", value(&samples, name, labels));
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn metrics_count_what_the_platform_did() {
    let app = spawn_app().await;

    // A live WebSocket is one active connection.
    let user = unique("u");
    app.create_user(&user).await;
    let mut socket = app.connect_ws(&user).await;
    wait_for(&app, "ActiveWebSocketConnections", &[], 1.0).await;

    // order.completed (priority high: the fast lane) to email, push and the open WebSocket.
    let body = event_for("order.completed.json", &user);
    let event_id = body["event_id"].as_str().unwrap().to_owned();
    assert_eq!(app.post_event(&body).await.status(), 202);
    assert_eq!(next_frame(&mut socket, WAIT).await["event_id"], event_id.as_str());
    for channel in ["email", "push", "websocket"] {
        app.wait_for_notification(&event_id, channel, "sent", WAIT).await;
    }
    // A user without a socket: their WebSocket notification is skipped.
    let offline = unique("u");
    app.create_user(&offline).await;
    let skipped = event_for("order.completed.json", &offline);
    assert_eq!(app.post_event(&skipped).await.status(), 202);
    app.wait_for_notification(skipped["event_id"].as_str().unwrap(), "websocket", "skipped", WAIT).await;

    // Rejections, one per reason.
    let mut bad_schema = event_for("order.completed.json", &user);
    bad_schema["payload"]["total"] = json!("59.999");
    assert_eq!(app.post_event(&bad_schema).await.status(), 422);
    let mut unknown_type = event_for("order.completed.json", &user);
    unknown_type["event_type"] = json!("order.teleported");
    assert_eq!(app.post_event(&unknown_type).await.status(), 422);
    let mut bad_envelope = event_for("order.completed.json", &user);
    bad_envelope["event_id"] = json!("spaces are not allowed");
    assert_eq!(app.post_event(&bad_envelope).await.status(), 422);
    assert_eq!(app.post_raw("{\"event_id\": ").await.status(), 400);
    assert_eq!(app.post_raw(vec![b' '; 300 * 1024]).await.status(), 413);
    let r = app.http.post(app.url("/v1/events")).header("authorization", "Bearer not-a-key").json(&event_for("order.completed.json", &user)).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let mut replay = body.clone();
    replay["payload"]["total"] = json!("1.00");
    assert_eq!(app.post_event(&replay).await.status(), 409);
    assert_eq!(app.post_event(&body).await.status(), 202, "an idempotent replay is answered, not counted again");

    let samples = wait_for(&app, "NotificationsSkipped", &[("Channel", "websocket"), ("Lane", "fast")], 1.0).await;
    let samples = if value(&samples, "NotificationsSent", &[("Channel", "websocket"), ("Lane", "fast")]) == Some(1.0) {
        samples
    } else {
        wait_for(&app, "NotificationsSent", &[("Channel", "websocket"), ("Lane", "fast")], 1.0).await
    };
    let counted = |name: &str, labels: &[(&str, &str)]| value(&samples, name, labels);

    assert_eq!(counted("EventsAccepted", &[("Lane", "fast")]), Some(2.0));
    assert_eq!(counted("EventsAccepted", &[("Lane", "bulk")]), None);
    for reason in ["schema_violation", "unknown_event_type", "invalid_event", "malformed_json", "payload_too_large", "unauthorized", "idempotency_conflict"] {
        assert_eq!(counted("EventsRejected", &[("Reason", reason)]), Some(1.0), "{reason}");
    }
    for channel in ["email", "push", "websocket"] {
        assert_eq!(counted("NotificationsRouted", &[("Channel", channel), ("Lane", "fast")]), Some(2.0), "{channel}");
    }
    assert_eq!(counted("NotificationsSent", &[("Channel", "email"), ("Lane", "fast")]), Some(2.0));
    assert_eq!(counted("NotificationsSent", &[("Channel", "push"), ("Lane", "fast")]), Some(2.0));
    assert_eq!(counted("NotificationsSent", &[("Channel", "websocket"), ("Lane", "fast")]), Some(1.0));
    assert_eq!(counted("NotificationsFailed", &[("Channel", "email"), ("Lane", "fast")]), None);
    // Distributions: a summary per label set, with a count of observations.
    assert_eq!(counted("ProviderLatency_count", &[("Channel", "email")]), Some(2.0));
    assert_eq!(counted("ProviderLatency_count", &[("Channel", "websocket")]), Some(2.0), "a fan-out to nobody is a provider call too");
    assert!(counted("ProviderLatency", &[("Channel", "email"), ("quantile", "0.99")]).is_some_and(|ms| (0.0..WAIT.as_millis() as f64).contains(&ms)));
    assert_eq!(counted("IngestToSentLatency_count", &[("Channel", "email"), ("Lane", "fast")]), Some(2.0));
    let sum = counted("IngestToSentLatency_sum", &[("Channel", "email"), ("Lane", "fast")]).unwrap();
    assert!(sum > 0.0 && sum < 2.0 * WAIT.as_millis() as f64, "{sum} ms");
    assert_eq!(counted("ActiveWebSocketConnections", &[]), Some(1.0));

    // Only the contract's names and label keys (quantile is Prometheus's own), and no ids,
    // addresses or message text.
    let (text, _) = scrape(&app).await;
    for (name, labels, _) in &samples {
        let base = name.trim_end_matches("_count").trim_end_matches("_sum");
        assert!(shared::metrics::spec(base).is_some(), "{name} is not in the contract");
        for key in labels.keys() {
            assert!(shared::metrics::LABEL_KEYS.contains(&key.as_str()) || key == "quantile", "{name} has label {key}");
        }
    }
    for private in [user.as_str(), offline.as_str(), event_id.as_str(), "example.com", "+380", "A-17"] {
        assert!(!text.contains(private), "/metrics mentions {private}");
    }

    // A failing provider: retried on its queue until its attempts run out, failed, and its
    // fallback (SMS) routed and sent; nothing reaches the dead-letter queue.
    app.stack.faults.set_failing(shared::domain::Channel::Push, true);
    let failing = event_for("order.completed.json", &offline);
    let failing_id = failing["event_id"].as_str().unwrap().to_owned();
    assert_eq!(app.post_event(&failing).await.status(), 202);
    app.wait_for_notification(&failing_id, "push", "failed", Duration::from_secs(20)).await;
    app.wait_for_notification(&failing_id, "sms", "sent", Duration::from_secs(20)).await;
    let samples = wait_for(&app, "NotificationsSent", &[("Channel", "sms"), ("Lane", "fast")], 1.0).await;
    let counted = |name: &str, labels: &[(&str, &str)]| value(&samples, name, labels);
    let attempts = local_stack::Config::for_tests().retry_max_attempts;
    assert_eq!(counted("Retries", &[("Queue", "send-push-fast")]), Some(f64::from(attempts - 1)), "one retry per failed attempt but the last");
    assert_eq!(counted("DeadLetterArrivals", &[("Queue", "send-push-fast")]), None);
    assert_eq!(counted("NotificationsFailed", &[("Channel", "push"), ("Lane", "fast")]), Some(1.0));
    assert_eq!(counted("NotificationsRouted", &[("Channel", "sms"), ("Lane", "fast")]), Some(1.0), "the fallback is routed");
    assert_eq!(counted("NotificationsSent", &[("Channel", "push"), ("Lane", "fast")]), Some(2.0));

    // Closing the socket forgets the connection.
    socket.close(None).await.expect("close");
    wait_for(&app, "ActiveWebSocketConnections", &[], 0.0).await;
    app.stack.stop().await;
}
