//! Load run through the local stack: events per second from POST to the email outbox, and the
//! latency from POST to the WebSocket frame (p50 / p99). Prints figures; asserts nothing.
//!
//! `cargo bench -p notify-tests --bench pipeline` (env: BENCH_EVENTS, BENCH_USERS, BENCH_CONCURRENCY)

use futures::StreamExt;
use notify_tests::{spawn_app_with, unique};
use serde_json::json;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx]
}

#[tokio::main]
async fn main() {
    let events = env_usize("BENCH_EVENTS", 2000);
    let users = env_usize("BENCH_USERS", 50);
    let concurrency = env_usize("BENCH_CONCURRENCY", 32);
    let mut config = local_stack::Config::for_tests();
    config.pollers_per_queue = 4;
    let app = Arc::new(spawn_app_with(config).await);

    let user_ids: Vec<String> = (0..users).map(|_| unique("bench-u")).collect();
    for u in &user_ids {
        app.create_user(u).await;
    }
    // One live socket per user, each recording when a frame arrives for which event.
    let arrivals: Arc<Mutex<HashMap<String, Instant>>> = Default::default();
    let mut readers = Vec::new();
    for u in &user_ids {
        let mut socket = app.connect_ws(u).await;
        let arrivals = arrivals.clone();
        readers.push(tokio::spawn(async move {
            while let Some(Ok(message)) = socket.next().await {
                if let Message::Text(text) = message {
                    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
                    if let Some(id) = v["event_id"].as_str() {
                        arrivals.lock().unwrap().insert(id.to_owned(), Instant::now());
                    }
                }
            }
        }));
    }

    let posted: Arc<Mutex<HashMap<String, Instant>>> = Default::default();
    let started = Instant::now();
    futures::stream::iter(0..events)
        .for_each_concurrent(concurrency, |i| {
            let app = app.clone();
            let posted = posted.clone();
            let user = user_ids[i % users].clone();
            async move {
                let event_id = format!("bench-{i}-{}", unique("e"));
                let body = json!({
                    "event_id": event_id, "event_type": "order.completed", "user_id": user,
                    "channels": ["email", "websocket"],
                    "payload": {"order_id": format!("A-{i}"), "total": "59.90", "currency": "EUR"}
                });
                let t0 = Instant::now();
                let r = app.post_event(&body).await;
                assert_eq!(r.status(), 202);
                posted.lock().unwrap().insert(event_id, t0);
            }
        })
        .await;
    let accepted_in = started.elapsed();
    let delivered = app.stack.outbox.wait_for(events, Duration::from_secs(300)).await;
    let drained_in = started.elapsed();
    // Let the last frames land.
    let deadline = Instant::now() + Duration::from_secs(30);
    while arrivals.lock().unwrap().len() < events && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let posted = posted.lock().unwrap().clone();
    let arrivals = arrivals.lock().unwrap().clone();
    let mut latencies: Vec<Duration> = posted.iter().filter_map(|(id, t0)| arrivals.get(id).map(|t| t.saturating_duration_since(*t0))).collect();
    latencies.sort();
    println!("pipeline load run: {events} events, {users} users, {concurrency} concurrent posters, channels email+websocket");
    println!("  accepted (202) in        {:>8.2} s  = {:>7.0} events/s", accepted_in.as_secs_f64(), events as f64 / accepted_in.as_secs_f64());
    println!("  POST -> email outbox     {:>8.2} s  = {:>7.0} events/s  ({delivered}/{events} emails)", drained_in.as_secs_f64(), delivered as f64 / drained_in.as_secs_f64());
    println!("  POST -> websocket frame  p50 {:>7.1} ms   p99 {:>7.1} ms   max {:>7.1} ms  ({} frames)",
        percentile(&latencies, 0.50).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        latencies.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
        latencies.len());
    for r in readers {
        r.abort();
    }
}
