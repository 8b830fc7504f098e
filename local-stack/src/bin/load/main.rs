//! A small HTTP load generator for `POST /v1/events` (bench/peers/run.sh drives ours and the
//! peers with it): `--concurrency` connections, each posting the benchmarks' event mix
//! (tests/benches/mix.rs: the four shipped types, varied payloads and locales, every event id
//! unique) back to back for `--duration` after a `--warmup`; prints requests/s, latency
//! p50/p90/p99/max and errors, and a JSON line for scripts.
//!
//! `cargo run --release -p local-stack --bin load -- --url http://127.0.0.1:8080 --key KEY`
//!
//! With `--users N` it measures the whole pipeline instead (see `deliveries`): recipients with a
//! live WebSocket each, events for email and WebSocket, accepted and delivered events/s, POST →
//! frame latency and the stack's memory; `bench/load/run.sh` drives it.

#[path = "../../../../tests/benches/mix.rs"]
mod mix;
mod deliveries;

use clap::Parser;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

#[derive(Parser, Debug)]
struct Args {
    /// The API's base URL (POST {url}/v1/events).
    #[arg(long)]
    url: String,
    /// Bearer API key.
    #[arg(long, env = "NOTIFY_LOAD_KEY")]
    key: String,
    /// Concurrent connections, each with one request in flight.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Measured seconds.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds of load before measuring (not counted).
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// A label for the JSON line.
    #[arg(long, default_value = "target")]
    name: String,
    /// Delivery mode: this many recipients, each with a live WebSocket; events for email and
    /// WebSocket, measured until delivered.
    #[arg(long, default_value_t = 0)]
    users: usize,
    /// Delivery mode: an open loop at this many events per second (default: a closed loop).
    #[arg(long)]
    rate: Option<f64>,
    /// Delivery mode: the stack's process id, to sample its resident memory.
    #[arg(long)]
    pid: Option<u32>,
    /// Delivery mode: how long to wait for the backlog to drain after the last POST, seconds.
    #[arg(long, default_value_t = 120.0)]
    drain_timeout: f64,
}

#[derive(Default)]
struct Tally {
    latencies: Vec<Duration>,
    ok: usize,
    errors: usize,
    statuses: std::collections::BTreeMap<u16, usize>,
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize].as_secs_f64() * 1e3
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.users > 0 {
        let figures = deliveries::run(deliveries::Options {
            url: args.url,
            key: args.key,
            users: args.users,
            concurrency: args.concurrency,
            rate: args.rate,
            warmup: Duration::from_secs_f64(args.warmup),
            duration: Duration::from_secs_f64(args.duration),
            pid: args.pid,
            drain_timeout: Duration::from_secs_f64(args.drain_timeout),
            name: args.name,
        })
        .await?;
        println!("{figures}");
        return Ok(());
    }
    let client = reqwest::Client::builder().pool_max_idle_per_host(args.concurrency).tcp_nodelay(true).build()?;
    let url = format!("{}/v1/events", args.url.trim_end_matches('/'));
    let auth = format!("Bearer {}", args.key);
    let run = format!("{:x}", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis());
    let counter = Arc::new(AtomicUsize::new(0));
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));

    let mut tasks = Vec::new();
    for _ in 0..args.concurrency {
        let (client, url, auth, run) = (client.clone(), url.clone(), auth.clone(), run.clone());
        let (counter, measuring, stop) = (counter.clone(), measuring.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut tally = Tally::default();
            while !stop.load(Ordering::Relaxed) {
                let i = counter.fetch_add(1, Ordering::Relaxed);
                let mut event = mix::event(7, i % 10_000);
                event["event_id"] = serde_json::json!(format!("load-{run}-{i}"));
                let body = event.to_string();
                let started = Instant::now();
                let result = client
                    .post(&url)
                    .header("authorization", &auth)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await;
                let status = match result {
                    Ok(response) => {
                        let status = response.status().as_u16();
                        let _ = response.bytes().await;
                        Some(status)
                    }
                    Err(_) => None,
                };
                let elapsed = started.elapsed();
                if !measuring.load(Ordering::Relaxed) {
                    continue;
                }
                tally.latencies.push(elapsed);
                match status {
                    Some(s) if (200..300).contains(&s) => tally.ok += 1,
                    _ => tally.errors += 1,
                }
                *tally.statuses.entry(status.unwrap_or(0)).or_default() += 1;
            }
            tally
        }));
    }
    tokio::time::sleep(Duration::from_secs_f64(args.warmup)).await;
    measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(args.duration)).await;
    measuring.store(false, Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);

    let mut all = Tally::default();
    for task in tasks {
        let t = task.await?;
        all.latencies.extend(t.latencies);
        all.ok += t.ok;
        all.errors += t.errors;
        for (s, n) in t.statuses {
            *all.statuses.entry(s).or_default() += n;
        }
    }
    all.latencies.sort();
    let (p50, p90, p99) = (percentile(&all.latencies, 0.5), percentile(&all.latencies, 0.9), percentile(&all.latencies, 0.99));
    let max = all.latencies.last().map_or(0.0, |d| d.as_secs_f64() * 1e3);
    let rps = all.latencies.len() as f64 / elapsed;
    eprintln!(
        "{}: {} requests in {elapsed:.1} s with {} connections: {rps:.0} req/s; latency p50 {p50:.2} ms, p90 {p90:.2} ms, p99 {p99:.2} ms, max {max:.1} ms; {} errors; statuses {:?}",
        args.name,
        all.latencies.len(),
        args.concurrency,
        all.errors,
        all.statuses
    );
    println!(
        "{}",
        serde_json::json!({
            "name": args.name, "requests": all.latencies.len(), "seconds": elapsed, "concurrency": args.concurrency,
            "rps": rps, "ok": all.ok, "errors": all.errors, "p50_ms": p50, "p90_ms": p90, "p99_ms": p99, "max_ms": max,
            "statuses": all.statuses,
        })
    );
    Ok(())
}
