//! Delivery mode (`--users N`): the whole pipeline under load, measured from outside the stack's
//! process. It creates `N` recipients (an e-mail address each), opens one WebSocket per recipient
//! (a user token each, as a browser would), then posts `order.completed` events for email and
//! WebSocket round-robin over the recipients and measures:
//!
//! - accepted events/s and the HTTP latency of `POST /v1/events` (the measured window only);
//! - POST → outbox events/s: every accepted event (warm-up included) over the time from the first
//!   POST until the stack's `NotificationsSent{channel="email"}` counter (`GET /metrics`) has
//!   counted all of them and every WebSocket frame has arrived;
//! - POST → WebSocket frame latency p50/p90/p99/max, from the moment the event was due (its
//!   request's start in a closed loop; its slot in the schedule with `--rate`, so a server
//!   falling behind shows as latency, not as fewer requests);
//! - with `--pid`, the stack's resident memory (VmRSS) sampled every 250 ms: peak and at the end.
//!
//! Closed loop by default (`--concurrency` producers, each posting back to back); `--rate R` is an
//! open loop: event `k` is due at `k / R` seconds, sent by whichever producer is free.

use futures::StreamExt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

pub struct Options {
    pub url: String,
    pub key: String,
    pub users: usize,
    pub concurrency: usize,
    /// Events per second, open loop; `None`: closed loop.
    pub rate: Option<f64>,
    pub warmup: Duration,
    pub duration: Duration,
    /// The stack's process id, to sample its memory.
    pub pid: Option<u32>,
    pub drain_timeout: Duration,
    pub name: String,
}

/// One POST: which event, when it was due, how it ended.
struct Posted {
    index: u64,
    due: Instant,
    latency: Duration,
    accepted: bool,
}

#[derive(serde::Deserialize)]
struct Frame {
    #[serde(default)]
    event_id: Option<String>,
}

fn percentile_ms(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize].as_secs_f64() * 1e3
}

/// The event index in an event id `L<run>-<index>`.
fn index_of(event_id: &str) -> Option<u64> {
    event_id.rsplit('-').next()?.parse().ok()
}

/// The sum of the `NotificationsSent` counters of `channel` in a Prometheus text page.
pub fn sent_count(page: &str, channel: &str) -> u64 {
    // The label is `Channel` (CloudWatch's dimension name); matched in any case.
    let label = format!("channel=\"{channel}\"");
    page.lines()
        .filter(|line| line.starts_with("NotificationsSent{") && line.to_ascii_lowercase().contains(&label))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}

/// VmRSS of `pid` in MiB, from /proc (Linux).
fn rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: f64 = status.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

async fn emails_sent(client: &reqwest::Client, base: &str) -> anyhow::Result<u64> {
    let page = client.get(format!("{base}/metrics")).send().await?.error_for_status()?.text().await?;
    Ok(sent_count(&page, "email"))
}

pub async fn run(opts: Options) -> anyhow::Result<serde_json::Value> {
    let base = opts.url.trim_end_matches('/').to_owned();
    let client = reqwest::Client::builder().pool_max_idle_per_host(opts.concurrency + 16).tcp_nodelay(true).build()?;
    let auth = format!("Bearer {}", opts.key);
    let run = format!("{:x}", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis());

    // Memory, sampled for the whole run.
    let rss_samples: Arc<Mutex<Vec<(Duration, f64)>>> = Default::default();
    let run_started = Instant::now();
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = opts.pid.map(|pid| {
        let (samples, sampling) = (rss_samples.clone(), sampling.clone());
        tokio::spawn(async move {
            while sampling.load(Ordering::Relaxed) {
                if let Some(mib) = rss_mib(pid) {
                    samples.lock().unwrap_or_else(|e| e.into_inner()).push((run_started.elapsed(), mib));
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })
    });

    // Recipients, and a live socket for each.
    let users: Vec<String> = (0..opts.users).map(|u| format!("L{run}-u{u}")).collect();
    let arrivals: Arc<Mutex<Vec<(u64, Instant)>>> = Default::default();
    let frames = Arc::new(AtomicU64::new(0));
    let ws_base = base.replacen("http", "ws", 1);
    let sockets: Vec<_> = futures::stream::iter(users.iter().cloned())
        .map(|user| {
            let (client, base, auth, ws_base) = (client.clone(), base.clone(), auth.clone(), ws_base.clone());
            async move {
                let profile = serde_json::json!({"email": format!("{}@example.com", user.to_lowercase()), "locale": "en"});
                client.put(format!("{base}/v1/users/{user}")).header("authorization", &auth).json(&profile).send().await?.error_for_status()?;
                let token: serde_json::Value =
                    client.post(format!("{base}/v1/users/{user}/ws-token")).header("authorization", &auth).send().await?.error_for_status()?.json().await?;
                let token = token["token"].as_str().unwrap_or_default().to_owned();
                let (socket, _) = tokio_tungstenite::connect_async(format!("{ws_base}/v1/ws?token={token}")).await?;
                anyhow::Ok(socket)
            }
        })
        .buffer_unordered(64)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    let readers: Vec<_> = sockets
        .into_iter()
        .map(|mut socket| {
            let (arrivals, frames) = (arrivals.clone(), frames.clone());
            tokio::spawn(async move {
                while let Some(Ok(message)) = socket.next().await {
                    if let Message::Text(text) = message {
                        let at = Instant::now();
                        if let Ok(Frame { event_id: Some(id) }) = serde_json::from_str::<Frame>(&text)
                            && let Some(index) = index_of(&id)
                        {
                            arrivals.lock().unwrap_or_else(|e| e.into_inner()).push((index, at));
                            frames.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
        })
        .collect();
    eprintln!("{}: {} recipients created, {} sockets open", opts.name, users.len(), readers.len());

    // Producers.
    let emails_before = emails_sent(&client, &base).await?;
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let window_start = started + opts.warmup;
    let end = window_start + opts.duration;
    let users = Arc::new(users);
    let producers: Vec<_> = (0..opts.concurrency)
        .map(|_| {
            let (client, auth, base, run, next, users) = (client.clone(), auth.clone(), base.clone(), run.clone(), next.clone(), users.clone());
            let rate = opts.rate;
            tokio::spawn(async move {
                let mut posted = Vec::new();
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    let due = match rate {
                        Some(r) => started + Duration::from_secs_f64(index as f64 / r),
                        None => Instant::now(),
                    };
                    if due >= end {
                        break;
                    }
                    tokio::time::sleep_until(due.into()).await;
                    let user = &users[(index as usize) % users.len()];
                    let body = serde_json::json!({
                        "event_id": format!("L{run}-{index}"), "event_type": "order.completed", "user_id": user,
                        "channels": ["email", "websocket"],
                        "payload": {"order_id": format!("A-{index}"), "total": "59.90", "currency": "EUR"}
                    });
                    let result = client.post(format!("{base}/v1/events")).header("authorization", &auth).json(&body).send().await;
                    let accepted = match result {
                        Ok(response) => {
                            let ok = response.status().as_u16() == 202;
                            let _ = response.bytes().await;
                            ok
                        }
                        Err(_) => false,
                    };
                    posted.push(Posted { index, due, latency: due.elapsed(), accepted });
                }
                posted
            })
        })
        .collect();
    let mut posted = Vec::new();
    for p in producers {
        posted.extend(p.await?);
    }
    let posting_ended = Instant::now();
    let accepted_total = posted.iter().filter(|p| p.accepted).count() as u64;

    // Drain: every accepted event's email counted and its frame arrived.
    let drained_at = loop {
        let emails = emails_sent(&client, &base).await?.saturating_sub(emails_before);
        if emails >= accepted_total && frames.load(Ordering::Relaxed) >= accepted_total {
            break Some(Instant::now());
        }
        if posting_ended.elapsed() > opts.drain_timeout {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let emails = emails_sent(&client, &base).await?.saturating_sub(emails_before);
    sampling.store(false, Ordering::Relaxed);
    if let Some(s) = sampler {
        let _ = s.await;
    }
    for r in readers {
        r.abort();
    }

    // Figures over the measured window.
    let in_window: Vec<&Posted> = posted.iter().filter(|p| p.due >= window_start && p.due < end).collect();
    let accepted_in_window = in_window.iter().filter(|p| p.accepted).count();
    let mut http: Vec<Duration> = in_window.iter().map(|p| p.latency).collect();
    http.sort();
    let due_of: std::collections::HashMap<u64, Instant> = in_window.iter().filter(|p| p.accepted).map(|p| (p.index, p.due)).collect();
    let arrivals = arrivals.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let mut to_frame: Vec<Duration> = arrivals.iter().filter_map(|(i, at)| due_of.get(i).map(|due| at.saturating_duration_since(*due))).collect();
    to_frame.sort();
    let seconds = opts.duration.as_secs_f64();
    let accepted_per_s = accepted_in_window as f64 / seconds;
    let delivered_per_s = drained_at.map(|at| accepted_total as f64 / at.duration_since(started).as_secs_f64());
    let rss = rss_samples.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let rss_peak = rss.iter().map(|(_, mib)| *mib).fold(0.0_f64, f64::max);
    let rss_end = rss.last().map_or(0.0, |(_, mib)| *mib);
    // Every tenth of the run, to see whether memory levels off.
    let step = (rss.len() / 10).max(1);
    let rss_timeline: Vec<(f64, f64)> = rss.iter().step_by(step).map(|(at, mib)| (at.as_secs_f64().round(), mib.round())).collect();

    let mode = opts.rate.map_or_else(|| "closed loop".to_owned(), |r| format!("open loop at {r:.0} events/s"));
    eprintln!(
        "{}: {} recipients, {} producers, {mode}, {seconds:.0} s measured after {:.0} s warm-up, email + websocket per event",
        opts.name,
        opts.users,
        opts.concurrency,
        opts.warmup.as_secs_f64()
    );
    eprintln!(
        "  accepted        {accepted_per_s:>8.0} events/s   HTTP p50 {:.1} ms  p90 {:.1} ms  p99 {:.1} ms  ({} of {} in the window accepted)",
        percentile_ms(&http, 0.5),
        percentile_ms(&http, 0.9),
        percentile_ms(&http, 0.99),
        accepted_in_window,
        in_window.len()
    );
    match delivered_per_s {
        Some(d) => eprintln!("  POST -> outbox  {d:>8.0} events/s   ({accepted_total} accepted, {emails} emails sent, drained)"),
        None => eprintln!("  POST -> outbox  not drained within {:?}: {emails} of {accepted_total} emails sent", opts.drain_timeout),
    }
    eprintln!(
        "  POST -> frame   p50 {:.1} ms  p90 {:.1} ms  p99 {:.1} ms  max {:.1} ms  ({} frames of {} window events)",
        percentile_ms(&to_frame, 0.5),
        percentile_ms(&to_frame, 0.9),
        percentile_ms(&to_frame, 0.99),
        to_frame.last().map_or(0.0, |d| d.as_secs_f64() * 1e3),
        to_frame.len(),
        due_of.len()
    );
    if opts.pid.is_some() {
        eprintln!("  stack memory    peak {rss_peak:.0} MiB, at the end {rss_end:.0} MiB (VmRSS)");
        let timeline: Vec<String> = rss_timeline.iter().map(|(at, mib)| format!("{at:.0} s {mib:.0}")).collect();
        eprintln!("  memory by time  {} (MiB, from the first recipient created)", timeline.join(", "));
    }
    Ok(serde_json::json!({
        "name": opts.name, "users": opts.users, "concurrency": opts.concurrency, "rate": opts.rate, "seconds": seconds,
        "accepted_per_s": accepted_per_s, "accepted_total": accepted_total, "emails_sent": emails,
        "delivered_per_s": delivered_per_s,
        "http_p50_ms": percentile_ms(&http, 0.5), "http_p90_ms": percentile_ms(&http, 0.9), "http_p99_ms": percentile_ms(&http, 0.99),
        "frame_p50_ms": percentile_ms(&to_frame, 0.5), "frame_p90_ms": percentile_ms(&to_frame, 0.9),
        "frame_p99_ms": percentile_ms(&to_frame, 0.99), "frames": to_frame.len(), "window_events": due_of.len(),
        "rss_peak_mib": rss_peak, "rss_end_mib": rss_end, "rss_timeline": rss_timeline,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_the_email_sends_of_every_lane() {
        let page = "# TYPE NotificationsSent counter\nNotificationsSent{Channel=\"email\",Lane=\"high\"} 7\nNotificationsSent{channel=\"email\",lane=\"normal\"} 3\nNotificationsSent{channel=\"websocket\",lane=\"high\"} 9\n";
        assert_eq!(sent_count(page, "email"), 10);
        assert_eq!(sent_count(page, "sms"), 0);
    }

    #[test]
    fn reads_the_index_of_an_event_id() {
        assert_eq!(index_of("L18c2f-42"), Some(42));
        assert_eq!(index_of("other"), None);
    }
}
