//! The chaos run: the local stack in process with faults injected everywhere, a crowd of users
//! posting events (some of them two or three times at once, as retrying clients do), and a
//! report of what became of every accepted event: lost, duplicated or out of order.
//!
//! `cargo run --release -p local-stack --bin chaos -- --help` runs it from the command line; the
//! test suite runs a small one on each backend.

use anyhow::Context;
use futures::StreamExt;
use futures::future::join_all;
use serde_json::{Value, json};
use shared::domain::{Channel, EventId, Lane, Notification, Priority, Status};
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

use crate::config::{Backend, Config};
use crate::faults::{FaultKind, FaultSpec, FaultTarget, parse_faults};
use crate::ledger::SentMessage;
use crate::wiring::LocalStack;

/// The built-in event types the crowd posts, from `events/api/`.
const SAMPLES: [&str; 3] = ["user.registered.json", "order.completed.json", "payment.failed.json"];

/// What to run.
#[derive(Clone)]
pub struct ChaosOptions {
    pub events: usize,
    pub users: usize,
    /// Share of events posted two or three times at once.
    pub duplicate_share: f64,
    /// Share of users with a live WebSocket during the run.
    pub live_share: f64,
    pub faults: Vec<FaultSpec>,
    pub seed: u64,
    /// Users posting at the same time (each posts its own events one after another).
    pub concurrency: usize,
    /// How long everything may take to settle after the last event was accepted.
    pub settle_timeout: Duration,
    /// Whether out-of-order messages fail the run. Off only against an emulator whose FIFO
    /// queues reorder retried messages (moto: see localstack/README.md); they are still counted.
    pub check_order: bool,
    /// The stack to run it on; `faults`, `seed` and the retry settings are set by the run.
    pub config: Config,
}

/// The fault mix the README's figures are measured with: 20 % transient and 1 % permanent
/// provider failures on every channel, 2 % store and queue faults.
pub const ISSUE_FAULTS: &str = "email:transient=0.2,email:permanent=0.01,sms:transient=0.2,sms:permanent=0.01,\
push:transient=0.2,push:permanent=0.01,websocket:transient=0.2,websocket:permanent=0.01,store:transient=0.02,queue:transient=0.02";

impl ChaosOptions {
    /// `events` events for `users` users on the in-process backend, with the README's fault mix.
    pub fn new(events: usize, users: usize) -> Self {
        let mut config = Config::for_tests();
        // Compressed time: the first retry after 20 ms, doubling to 1 s, 10 attempts; a sender's
        // lease of 2 s (two thirds of the visibility timeout).
        config.retry_base = Duration::from_millis(20);
        config.retry_max = Duration::from_secs(1);
        config.retry_max_attempts = 10;
        config.visibility_timeout = Duration::from_secs(3);
        config.max_receive_count = shared::topology::DEFAULT_MAX_RECEIVE_COUNT;
        config.pollers_per_queue = 4;
        ChaosOptions {
            events,
            users,
            duplicate_share: 0.1,
            live_share: 0.25,
            faults: parse_faults(ISSUE_FAULTS).expect("the built-in fault mix parses"),
            seed: 1,
            concurrency: 64,
            settle_timeout: Duration::from_secs(600),
            check_order: true,
            config,
        }
    }
}

/// What became of the run.
#[derive(Debug, Default)]
pub struct ChaosReport {
    pub backend: String,
    /// Whether order violations fail the run (see [`ChaosOptions::check_order`]).
    pub order_checked: bool,
    pub events: usize,
    pub users: usize,
    /// HTTP requests made to post the events (duplicates and retries included).
    pub posts: u64,
    /// Posts answered 503 or 409 (in progress) and tried again, as a client should.
    pub post_retries: u64,
    pub accepted: usize,
    /// Events not accepted in the end (answered 4xx): should be none.
    pub rejected: Vec<String>,
    pub notifications: usize,
    /// (status, reason) → count.
    pub by_outcome: BTreeMap<(String, String), u64>,
    /// Accepted events with a notification that never reached a final status, or reached one
    /// without its outcome (sent but nothing sent; failed owing a fallback never routed).
    pub lost: Vec<String>,
    /// Notifications whose message providers accepted more than once.
    pub duplicates: Vec<String>,
    /// Messages of one user on one channel and lane that left in another order than their
    /// events were accepted (fallbacks excluded: they are new messages, sent later on purpose).
    pub order_violations: Vec<String>,
    pub messages_sent: usize,
    /// Records handed back to their queue for a retry, and messages that reached a DLQ.
    pub retries: u64,
    pub dead_letter_arrivals: u64,
    /// Fallback notifications created.
    pub fallbacks: u64,
    pub faults_injected: BTreeMap<String, u64>,
    pub faulty_writes_applied: u64,
    pub settled: bool,
    pub wall: Duration,
}

impl ChaosReport {
    /// No loss, no duplicate, no order violation, everything accepted and settled.
    pub fn ok(&self) -> bool {
        self.settled
            && self.lost.is_empty()
            && self.duplicates.is_empty()
            && (self.order_violations.is_empty() || !self.order_checked)
            && self.rejected.is_empty()
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "chaos run ({} backend): {} events for {} users", self.backend, self.events, self.users);
        let faults: Vec<String> = self.faults_injected.iter().map(|(k, v)| format!("{k} {v}")).collect();
        let _ = writeln!(out, "  faults injected      {} ({} store/queue writes applied before failing)", faults.join(", "), self.faulty_writes_applied);
        let _ = writeln!(out, "  posts                {} ({} retried after 503 / in progress)", self.posts, self.post_retries);
        let _ = writeln!(out, "  events accepted      {} (rejected: {})", self.accepted, self.rejected.len());
        let _ = writeln!(out, "  notifications        {}", self.notifications);
        for ((status, reason), n) in &self.by_outcome {
            let what = if reason.is_empty() { status.clone() } else { format!("{status} / {reason}") };
            let _ = writeln!(out, "    {what:<36} {n}");
        }
        let _ = writeln!(out, "  messages sent        {}", self.messages_sent);
        let _ = writeln!(out, "  retries              {}", self.retries);
        let _ = writeln!(out, "  DLQ arrivals         {}", self.dead_letter_arrivals);
        let _ = writeln!(out, "  fallbacks            {}", self.fallbacks);
        let _ = writeln!(out, "  lost                 {}", self.lost.len());
        let _ = writeln!(out, "  duplicate sends      {}", self.duplicates.len());
        let unchecked = if self.order_checked { "" } else { " (not checked: the queue emulator reorders retried FIFO messages)" };
        let _ = writeln!(out, "  order violations     {}{unchecked}", self.order_violations.len());
        let _ = writeln!(out, "  settled              {}", if self.settled { "yes" } else { "NO (timed out)" });
        let _ = writeln!(out, "  wall time            {:.1} s", self.wall.as_secs_f64());
        for (title, items) in [("lost", &self.lost), ("duplicate", &self.duplicates), ("order violation", &self.order_violations), ("rejected", &self.rejected)] {
            for item in items.iter().take(10) {
                let _ = writeln!(out, "  {title}: {item}");
            }
        }
        let verdict = match (self.ok(), self.order_checked) {
            (true, true) => "OK: nothing lost, nothing sent twice, order kept",
            (true, false) => "OK: nothing lost, nothing sent twice",
            (false, _) => "FAILED",
        };
        let _ = writeln!(out, "  verdict              {verdict}");
        out
    }
}

/// One accepted event: whose, which, and its place in its user's sequence.
#[derive(Clone, Debug)]
struct Accepted {
    event_id: String,
    user: String,
    seq: usize,
    lane: Lane,
    /// The channels it is routed to: each must end with a notification of its own (one queued
    /// at once is written only by its sender's claim, so a lost job would leave none).
    channels: Vec<Channel>,
}

/// The channels an event's body asks for, else its type's in the catalog.
fn channels_of(catalog: &shared::catalog::Catalog, body: &Value) -> Vec<Channel> {
    match body.get("channels").map(|c| serde_json::from_value::<Vec<Channel>>(c.clone())) {
        Some(Ok(channels)) => channels,
        _ => body["event_type"].as_str().and_then(|t| catalog.event_type(t)).map(|t| t.channels.clone()).unwrap_or_default(),
    }
}

fn repository_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn samples() -> anyhow::Result<Vec<Value>> {
    SAMPLES
        .iter()
        .map(|name| {
            let path = repository_dir().join("events/api").join(name);
            let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
            Ok(serde_json::from_str(&text)?)
        })
        .collect()
}

fn lane_of(body: &Value) -> Lane {
    let priority = match body["event_type"].as_str() {
        Some("payment.failed") => Priority::Critical,
        Some("order.completed") => Priority::High,
        _ => Priority::Normal,
    };
    body["priority"].as_str().and_then(|p| serde_json::from_value::<Priority>(json!(p)).ok()).unwrap_or(priority).lane()
}

struct Client {
    http: reqwest::Client,
    base: String,
    key: String,
    posts: std::sync::atomic::AtomicU64,
    retries: std::sync::atomic::AtomicU64,
}

/// The longest a client waits before trying a request again.
const CLIENT_MAX_WAIT: Duration = Duration::from_secs(2);

impl Client {
    /// Sends until the answer is neither a 503, nor a 409 "in progress", nor a connection error:
    /// what a well-behaved client does, honouring `Retry-After` (capped).
    async fn until_settled(&self, make: impl Fn() -> reqwest::RequestBuilder) -> anyhow::Result<(u16, Value)> {
        use std::sync::atomic::Ordering::Relaxed;
        for _ in 0..10_000 {
            self.posts.fetch_add(1, Relaxed);
            let response = make().header("authorization", format!("Bearer {}", self.key)).send().await;
            let (status, wait, body) = match response {
                Ok(r) => {
                    let status = r.status().as_u16();
                    let wait = r
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<u64>().ok())
                        .map(Duration::from_secs)
                        .unwrap_or(Duration::from_millis(100));
                    let body: Value = r.json().await.unwrap_or(Value::Null);
                    (status, wait, body)
                }
                Err(_) => (0, Duration::from_millis(100), Value::Null),
            };
            let in_progress = status == 409 && body["type"].as_str().is_some_and(|t| t.ends_with("in-progress"));
            if status == 0 || status == 503 || in_progress {
                self.retries.fetch_add(1, Relaxed);
                tokio::time::sleep(wait.min(CLIENT_MAX_WAIT)).await;
                continue;
            }
            return Ok((status, body));
        }
        anyhow::bail!("a request kept failing")
    }
}

/// Runs the crowd against a fresh local stack and reports.
pub async fn run(options: ChaosOptions) -> anyhow::Result<ChaosReport> {
    let started = Instant::now();
    let mut config = options.config.clone();
    config.faults = options.faults.clone();
    config.faults_seed = options.seed;
    config.outbox_dir = None;
    let backend = match &config.backend {
        Backend::Memory => "memory",
        Backend::Aws(_) => "aws",
    };
    let stack = crate::start(config).await?;
    let client = Arc::new(Client {
        http: reqwest::Client::builder().pool_max_idle_per_host(options.concurrency).build()?,
        base: stack.base_url(),
        key: stack.api_key.clone(),
        posts: Default::default(),
        retries: Default::default(),
    });
    let users: Vec<String> = (0..options.users.max(1)).map(|i| format!("chaos-{}-u{i}", options.seed)).collect();
    let catalog = shared::catalog::Catalog::load(&options.config.catalog_dir).context("loading the event catalog")?;
    let result = crowd(&stack, &client, &users, &options, &catalog).await;
    let report = match result {
        Ok(accepted) => report(&stack, &client, accepted, &users, &options, backend, started).await,
        Err(e) => Err(e),
    };
    stack.stop().await;
    report
}

async fn crowd(
    stack: &LocalStack,
    client: &Arc<Client>,
    users: &[String],
    options: &ChaosOptions,
    catalog: &shared::catalog::Catalog,
) -> anyhow::Result<(Vec<Accepted>, Vec<String>, Vec<tokio::task::JoinHandle<()>>)> {
    // Every user: an email, a phone, a push token; a quarter of them with a live WebSocket.
    let locales = ["en", "uk"];
    futures::stream::iter(users.iter().enumerate())
        .map(|(i, user)| {
            let client = client.clone();
            async move {
                let profile = json!({
                    "email": format!("{user}@example.com"),
                    "phone": "+380501234567",
                    "locale": locales[i % locales.len()],
                    "timezone": "Europe/Kyiv",
                    "push_tokens": [{"platform": "fcm", "token": format!("token-{user}")}]
                });
                let url = format!("{}/v1/users/{user}", client.base);
                let (status, body) = client.until_settled(|| client.http.put(&url).json(&profile)).await?;
                anyhow::ensure!(status == 200, "profile of {user}: {status} {body}");
                Ok(())
            }
        })
        .buffer_unordered(options.concurrency)
        .collect::<Vec<anyhow::Result<()>>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<Vec<()>>>()?;

    let live_users = ((users.len() as f64) * options.live_share).round() as usize;
    let mut sockets = Vec::new();
    for user in users.iter().take(live_users) {
        sockets.push(open_socket(stack, client, user).await?);
    }

    // Events, spread over users and types; a share posted two or three times at once.
    let samples = samples()?;
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(options.seed.wrapping_mul(31).wrapping_add(7));
    let mut per_user: Vec<Vec<(Value, usize)>> = vec![Vec::new(); users.len()];
    for i in 0..options.events {
        let u = i % users.len();
        let mut body = samples[(i / users.len() + u) % samples.len()].clone();
        body["event_id"] = json!(format!("chaos-{}-e{i}", options.seed));
        body["user_id"] = json!(users[u]);
        let copies = if rng.random::<f64>() < options.duplicate_share { rng.random_range(2..=3) } else { 1 };
        per_user[u].push((body, copies));
    }
    let rejected = Arc::new(Mutex::new(Vec::new()));
    let accepted: Vec<Vec<Accepted>> = futures::stream::iter(per_user.into_iter().enumerate())
        .map(|(u, events)| {
            let client = client.clone();
            let rejected = rejected.clone();
            let user = users[u].clone();
            async move {
                let mut mine = Vec::new();
                for (body, copies) in events {
                    let url = format!("{}/v1/events", client.base);
                    let answers = join_all((0..copies).map(|_| client.until_settled(|| client.http.post(&url).json(&body)))).await;
                    let event_id = body["event_id"].as_str().unwrap_or_default().to_owned();
                    let statuses: Vec<u16> = answers.iter().map(|a| a.as_ref().map(|(s, _)| *s).unwrap_or(0)).collect();
                    if statuses.contains(&202) {
                        mine.push(Accepted { event_id, user: user.clone(), seq: mine.len(), lane: lane_of(&body), channels: channels_of(catalog, &body) });
                    } else {
                        rejected.lock().await.push(format!("{event_id}: {statuses:?}"));
                    }
                }
                mine
            }
        })
        .buffer_unordered(options.concurrency)
        .collect()
        .await;
    let rejected = std::mem::take(&mut *rejected.lock().await);
    Ok((accepted.into_iter().flatten().collect(), rejected, sockets))
}

/// A WebSocket for `user` whose frames are read (and dropped) until the stack stops.
async fn open_socket(stack: &LocalStack, client: &Client, user: &str) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let url = format!("{}/v1/users/{user}/ws-token", client.base);
    for _ in 0..100 {
        let (status, body) = client.until_settled(|| client.http.post(&url)).await?;
        anyhow::ensure!(status == 201, "ws-token for {user}: {status} {body}");
        let token = body["token"].as_str().unwrap_or_default();
        match tokio_tungstenite::connect_async(format!("ws://{}/v1/ws?token={token}", stack.addr)).await {
            Ok((mut socket, _)) => {
                return Ok(tokio::spawn(async move { while let Some(Ok(_)) = socket.next().await {} }));
            }
            // A store fault on $connect answers 503: connect again, as a browser would.
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    anyhow::bail!("the WebSocket of {user} never opened")
}

/// Whether every channel of the event has its notification, and every notification is final and
/// owes nothing.
fn event_done(accepted: &Accepted, notifications: &[Notification]) -> bool {
    !notifications.is_empty()
        && accepted.channels.iter().all(|c| notifications.iter().any(|n| n.channel == *c))
        && notifications.iter().all(|n| n.status.is_final() && n.owes_fallback().is_none())
}

async fn notifications_of(stack: &LocalStack, event_id: &str) -> Vec<Notification> {
    let Ok(id) = EventId::parse(event_id) else { return Vec::new() };
    // The inspection view has no injected faults; a real outage would retry here.
    stack.inspect.notifications.list_for_event(&id).await.unwrap_or_default()
}

async fn report(
    stack: &LocalStack,
    client: &Client,
    (accepted, rejected, sockets): (Vec<Accepted>, Vec<String>, Vec<tokio::task::JoinHandle<()>>),
    users: &[String],
    options: &ChaosOptions,
    backend: &str,
    started: Instant,
) -> anyhow::Result<ChaosReport> {
    // Settle: every accepted event's notifications final (fallbacks included), then quiet: no
    // message sent and no batch handled for twice the visibility timeout.
    let deadline = Instant::now() + options.settle_timeout;
    let mut pending: Vec<&Accepted> = accepted.iter().collect();
    let mut settled = false;
    while Instant::now() < deadline {
        let mut still = Vec::new();
        for a in pending {
            if !event_done(a, &notifications_of(stack, &a.event_id).await) {
                still.push(a);
            }
        }
        pending = still;
        if pending.is_empty() {
            // Long enough for any straggler: a retry's longest backoff twice over, or a lease.
            let settings = options.config.settings();
            let window = (options.config.retry_max * 2).max(settings.lease()) + Duration::from_secs(1);
            settled = quiet(stack, window, deadline).await;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for socket in sockets {
        socket.abort();
    }

    let ledger = stack.ledger.entries();
    let mut sent_per_notification: HashMap<&str, usize> = HashMap::new();
    for m in &ledger {
        *sent_per_notification.entry(m.notification_id.as_str()).or_default() += 1;
    }
    let mut report = ChaosReport {
        backend: backend.to_owned(),
        order_checked: options.check_order,
        events: options.events,
        users: users.len(),
        posts: client.posts.load(std::sync::atomic::Ordering::Relaxed),
        post_retries: client.retries.load(std::sync::atomic::Ordering::Relaxed),
        accepted: accepted.len(),
        rejected,
        messages_sent: ledger.len(),
        retries: stack.inspect.poll_stats.retries(),
        dead_letter_arrivals: stack.inspect.poll_stats.dead_letter_arrivals(),
        faulty_writes_applied: stack.faults.applied_then_failed(),
        settled,
        ..ChaosReport::default()
    };
    for ((target, kind), n) in stack.faults.injected() {
        let name = match (target, kind) {
            (FaultTarget::Channel(c), FaultKind::Permanent) => format!("{c}:permanent"),
            (t, k) => format!("{}:{}", t.name(), k.name()),
        };
        report.faults_injected.insert(name, n);
    }

    // Per event: every notification final, with its outcome.
    let mut fallback_of: HashMap<String, Notification> = HashMap::new();
    let mut by_event: HashMap<&str, Vec<Notification>> = HashMap::new();
    for a in &accepted {
        let notifications = notifications_of(stack, &a.event_id).await;
        for n in &notifications {
            if n.fallback_for.is_some() {
                report.fallbacks += 1;
                fallback_of.insert(format!("{}:{}", n.event_id, n.channel), n.clone());
            }
        }
        by_event.insert(a.event_id.as_str(), notifications);
    }
    for a in &accepted {
        let notifications = &by_event[a.event_id.as_str()];
        if notifications.is_empty() {
            report.lost.push(format!("{}: no notification at all", a.event_id));
        }
        for channel in a.channels.iter().filter(|c| !notifications.is_empty() && !notifications.iter().any(|n| n.channel == **c)) {
            report.lost.push(format!("{}/{channel}: no notification (its job never claimed)", a.event_id));
        }
        for n in notifications {
            report.notifications += 1;
            let key = (n.status.as_str().to_owned(), n.reason.clone().unwrap_or_default());
            *report.by_outcome.entry(key).or_default() += 1;
            let id = n.notification_id.as_str();
            let sent = sent_per_notification.get(id).copied().unwrap_or(0);
            match n.status {
                s if !s.is_final() => report.lost.push(format!("{}/{}: still {}", a.event_id, n.channel, s)),
                Status::Sent if sent == 0 => report.lost.push(format!("{}/{}: sent, but no provider accepted it", a.event_id, n.channel)),
                Status::Failed => {
                    if let Some(f) = n.fallback {
                        let routed = fallback_of.get(&format!("{}:{}", n.event_id, f.channel)).is_some_and(|fb| fb.status.is_final())
                            || notifications.iter().any(|o| o.channel == f.channel && o.status.is_final());
                        if !f.queued || !routed {
                            report.lost.push(format!("{}/{}: failed, fallback to {} never delivered", a.event_id, n.channel, f.channel));
                        }
                    }
                }
                _ => {}
            }
            if n.status != Status::Sent && sent > 0 {
                report.lost.push(format!("{}/{}: {} but a provider accepted it", a.event_id, n.channel, n.status));
            }
        }
    }
    for (id, n) in &sent_per_notification {
        if *n > 1 {
            report.duplicates.push(format!("{id}: accepted {n} times"));
        }
    }
    report.order_violations = order_violations(&ledger, &accepted, &by_event);
    report.wall = started.elapsed();
    Ok(report)
}

/// Waits until no message is sent and no batch handled for `quiet`, or `deadline`.
async fn quiet(stack: &LocalStack, quiet: Duration, deadline: Instant) -> bool {
    let mut last = (stack.ledger.len(), stack.inspect.poll_stats.batches());
    let mut since = Instant::now();
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = (stack.ledger.len(), stack.inspect.poll_stats.batches());
        if now != last {
            last = now;
            since = Instant::now();
        } else if since.elapsed() >= quiet {
            return true;
        }
    }
    false
}

/// Per user, channel and lane, the order messages left in must be the order their events were
/// accepted in. Fallback notifications are left out: a fallback is a new message, sent after its
/// channel failed, on purpose behind what came later.
fn order_violations(ledger: &[SentMessage], accepted: &[Accepted], by_event: &HashMap<&str, Vec<Notification>>) -> Vec<String> {
    let place: HashMap<&str, &Accepted> = accepted.iter().map(|a| (a.event_id.as_str(), a)).collect();
    let fallback: std::collections::HashSet<&str> =
        by_event.values().flatten().filter(|n| n.fallback_for.is_some()).map(|n| n.notification_id.as_str()).collect();
    let mut last: HashMap<(&str, Channel, Lane), (usize, &str)> = HashMap::new();
    let mut violations = Vec::new();
    for m in ledger {
        if fallback.contains(m.notification_id.as_str()) {
            continue;
        }
        let Some(a) = place.get(m.event_id.as_str()) else { continue };
        let key = (a.user.as_str(), m.channel, a.lane);
        if let Some((seq, previous)) = last.get(&key)
            && *seq > a.seq
        {
            violations.push(format!("{} on {}: {} (#{}) left after {} (#{})", a.user, m.channel, a.event_id, a.seq, previous, seq));
        }
        if last.get(&key).is_none_or(|(seq, _)| *seq < a.seq) {
            last.insert(key, (a.seq, m.event_id.as_str()));
        }
    }
    violations
}
