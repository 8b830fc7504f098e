//! Micro-benchmarks of the hot paths (issue 11 §1), each over the built-in catalog and the event
//! mix of `mix.rs` (the four shipped event types, varied ids, payloads and locales):
//!
//! - `parse_validate`: JSON bytes → envelope (`Event::parse`) → payload schema (`check_payload`);
//! - `validate_render`: that, then every requested channel's templates rendered in the event's
//!   locale with the router's fallback rule: the work the peers in `bench/peers/` do per event;
//! - `route`: the router handler (`route_event`: profile and preferences, quiet hours, locale,
//!   every channel rendered, held or skipped notifications written, send jobs queued) over the in-process store
//!   and queue, 1,000 recipients with profiles;
//! - `send`: one email send (`send::deliver`: the claim that creates the notification, the
//!   in-process outbox provider, status write);
//! - `ingest`: `submit_event` as a whole (parse, validate, idempotency claim, event record,
//!   route job queued, response stored) over the in-process store and queue.
//!
//! Prints figures, asserts nothing (tests never time anything). Modes, by environment:
//!
//! ```sh
//! cargo bench -p notify-tests --bench hot_paths                 # criterion, then p50/p99 per call
//! NOTIFY_BENCH_QUICK=1 cargo bench -p notify-tests --bench hot_paths   # short criterion runs
//! NOTIFY_BENCH_LATENCY=1 cargo bench -p notify-tests --bench hot_paths # p50/p90/p99 per call only
//! NOTIFY_BENCH_WRITE_MIX=events.jsonl NOTIFY_BENCH_EVENTS=10000 cargo bench ... # the mix, as JSON lines
//! NOTIFY_BENCH_INPROC=events.jsonl cargo bench ...             # validate+render events/s (peers' run)
//! ```

#[path = "mix.rs"]
mod mix;

use criterion::{Criterion, Throughput};
use serde_json::{Value, json};
use shared::adapters::memory::queue::MemoryQueue;
use shared::adapters::memory::store::MemoryStore;
use shared::adapters::memory::{Outbox, OutboxSender};
use shared::catalog::{Catalog, RenderContext};
use shared::domain::profile::PushToken;
use shared::domain::{Channel, Event, NotificationId, Preferences, Profile, Tenant, UserId};
use shared::handlers::ingest::{IngestDeps, submit_event};
use shared::handlers::router::{RouterDeps, route_event};
use shared::handlers::send::{SendDeps, deliver};
use shared::handlers::sqs_batch::{RecordOutcome, RetryPolicy};
use shared::jobs::{RouteJob, SendJob};
use shared::ports::{Address, ChannelSender, Clock, RenderedMessage, SystemClock};
use shared::topology::{TopologySettings, all_queues};
use shared::wiring::{self, Ports, Settings};
use std::sync::Arc;
use std::time::{Duration, Instant};

const MIX_SEED: u64 = 11;
const USERS: usize = 1000;

// ---------------------------------------------------------------------------------------------
// The work, as the handlers do it.

/// Parse + validate one event: envelope and payload schema.
fn parse_validate(catalog: &Catalog, body: &[u8]) -> Event {
    let value: Value = serde_json::from_slice(body).expect("the mix is JSON");
    let event = Event::parse(&value).expect("the mix's envelopes are valid");
    let event_type = catalog.event_type(&event.event_type).expect("a shipped type");
    event_type.check_payload(&event.payload).expect("the mix's payloads are valid");
    event
}

/// Parse, validate, then render every requested channel in the event's locale (falling back
/// as the router does: the locale whole, its language, the type's fallback locale).
fn validate_render(catalog: &Catalog, body: &[u8]) -> Vec<RenderedMessage> {
    let event = parse_validate(catalog, body);
    let event_type = catalog.event_type(&event.event_type).expect("a shipped type");
    let channels = shared::routing::requested_channels(&event, event_type);
    let locales: Vec<&str> = event.locale.as_deref().into_iter().collect();
    let ctx = RenderContext {
        payload: &event.payload,
        user: json!({"id": event.user_id.as_str(), "locale": null, "timezone": null}),
        event: json!({"event_id": event.event_id.as_str(), "event_type": event.event_type, "occurred_at": event.occurred_at}),
    };
    let prepared = ctx.prepare();
    let templates = catalog.templates();
    channels
        .into_iter()
        .map(|channel| {
            let locale = templates.resolve_locale(&event.event_type, channel, &locales, &event_type.fallback_locale).expect("templates exist");
            templates.render_prepared(&event.event_type, &locale, channel, &prepared).expect("the mix renders")
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The handlers' dependencies over the in-process adapters (as the local stack wires them).

struct World {
    router: RouterDeps,
    ingest: IngestDeps,
    sender: SendDeps,
}

fn user(i: usize) -> UserId {
    UserId::parse(&format!("u-{i}")).unwrap()
}

async fn world(catalog: &Arc<Catalog>) -> World {
    let queue = Arc::new(MemoryQueue::new(&all_queues(&TopologySettings::default())));
    let store = Arc::new(MemoryStore::new());
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let ports = Ports::over(queue, store, clock);
    let settings = Settings::default();
    // 1,000 recipients: every address, a third read Ukrainian, one in ten has quiet hours
    // (its notifications are held and go to the deferred queue), one in seven opted out of
    // order push notifications.
    for i in 0..USERS {
        let profile = Profile {
            email: Some(format!("user{i}@example.com")),
            phone: Some(format!("+38050{i:07}")),
            locale: Some(if i % 3 == 0 { "uk" } else { "en" }.into()),
            timezone: Some("Europe/Kyiv".into()),
            push_tokens: vec![PushToken { platform: "fcm".into(), token: format!("push-token-{i}") }],
            ..Profile::default()
        };
        ports.profiles.put_profile(&user(i), &profile).await.unwrap();
        let mut preferences: Preferences = Preferences::default();
        if i % 10 == 0 {
            preferences.quiet_hours = serde_json::from_value(json!({"start": "00:00", "end": "23:59"})).ok();
        }
        if i % 7 == 0 {
            preferences.categories.insert("orders".into(), [("push".to_owned(), false)].into());
        }
        if preferences != Preferences::default() {
            ports.profiles.put_preferences(&user(i), &preferences).await.unwrap();
        }
    }
    let provider: Arc<dyn ChannelSender> = Arc::new(OutboxSender::new(Outbox::new(None)));
    World {
        router: wiring::router(&ports, catalog.clone(), &settings),
        ingest: wiring::ingest(&ports, catalog.clone(), &settings),
        sender: wiring::sender(&ports, catalog.clone(), &settings, provider, RetryPolicy::DELIVERY),
    }
}

/// The route jobs ingest would queue for the mix.
fn route_jobs(catalog: &Catalog, bodies: &[String]) -> Vec<RouteJob> {
    bodies
        .iter()
        .map(|b| {
            let event = parse_validate(catalog, b.as_bytes());
            let priority = event.priority.unwrap_or(catalog.event_type(&event.event_type).unwrap().priority);
            RouteJob { event, priority, accepted_at: SystemClock.now(), fallback: None }
        })
        .collect()
}

/// An email send job for event `i`, queued as the router queues it: carrying its notification's
/// record, which the sender's claim creates.
fn send_job(i: usize, message: &RenderedMessage) -> SendJob {
    let event_id = shared::domain::EventId::parse(&format!("evt-send-{i}")).unwrap();
    let user_id = user(i % USERS);
    let now = SystemClock.now();
    SendJob {
        notification_id: NotificationId::derive(&event_id, Channel::Email),
        event_id,
        event_type: "order.completed".into(),
        user_id,
        channel: Channel::Email,
        priority: shared::domain::Priority::High,
        address: Address::Email { to: format!("user{i}@example.com") },
        message: message.clone(),
        accepted_at: now,
        redrives: 0,
        created_at: Some(now),
        fallback_for: None,
    }
}

// ---------------------------------------------------------------------------------------------
// One measured call of each path; `Bench` keeps the state between calls (a fresh world every
// pass over the mix, so ids stay unique and nothing grows without bound).

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Path {
    ParseValidate,
    ValidateRender,
    Route,
    Send,
    Ingest,
}

impl Path {
    const ALL: [Path; 5] = [Path::ParseValidate, Path::ValidateRender, Path::Route, Path::Send, Path::Ingest];
    fn name(self) -> &'static str {
        match self {
            Path::ParseValidate => "parse_validate",
            Path::ValidateRender => "validate_render",
            Path::Route => "route",
            Path::Send => "send",
            Path::Ingest => "ingest",
        }
    }
}

struct Bench {
    rt: tokio::runtime::Runtime,
    catalog: Arc<Catalog>,
    bodies: Vec<String>,
    jobs: Vec<RouteJob>,
    email: RenderedMessage,
    world: Option<World>,
    cursor: usize,
    passes: usize,
}

impl Bench {
    fn new(n: usize) -> Self {
        let catalog = Arc::new(Catalog::embedded().expect("the embedded catalog loads"));
        let bodies = mix::bodies(n, MIX_SEED);
        let jobs = route_jobs(&catalog, &bodies);
        let order = serde_json::to_vec(&mix::event(MIX_SEED, 0)).unwrap();
        let email = validate_render(&catalog, &order).into_iter().next().expect("an email");
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        Bench { rt, catalog, bodies, jobs, email, world: None, cursor: 0, passes: 0 }
    }

    /// `iters` calls of `path`; the time spent in the calls alone (setup excluded), and each
    /// call's duration when `each` is given.
    fn run(&mut self, path: Path, iters: u64, mut each: Option<&mut Vec<Duration>>) -> Duration {
        let mut total = Duration::ZERO;
        for _ in 0..iters {
            if self.cursor == 0 || self.world.is_none() {
                self.world = Some(self.rt.block_on(world(&self.catalog)));
                self.passes += 1;
            }
            let i = self.cursor;
            self.cursor = (self.cursor + 1) % self.bodies.len();
            let elapsed = match path {
                Path::ParseValidate => {
                    let started = Instant::now();
                    std::hint::black_box(parse_validate(&self.catalog, self.bodies[i].as_bytes()));
                    started.elapsed()
                }
                Path::ValidateRender => {
                    let started = Instant::now();
                    std::hint::black_box(validate_render(&self.catalog, self.bodies[i].as_bytes()));
                    started.elapsed()
                }
                Path::Route => {
                    let (world, job) = (self.world.as_ref().unwrap(), &self.jobs[i]);
                    self.rt.block_on(async {
                        let started = Instant::now();
                        let routed = route_event(&world.router, job).await.expect("routed");
                        let elapsed = started.elapsed();
                        std::hint::black_box(routed);
                        elapsed
                    })
                }
                Path::Send => {
                    let world = self.world.as_ref().unwrap();
                    let job = send_job(self.passes * self.bodies.len() + i, &self.email);
                    self.rt.block_on(async {
                        let started = Instant::now();
                        let outcome = deliver(&world.sender, &job, 1).await;
                        let elapsed = started.elapsed();
                        assert_eq!(outcome, RecordOutcome::Done);
                        elapsed
                    })
                }
                Path::Ingest => {
                    let (world, body) = (self.world.as_ref().unwrap(), self.bodies[i].as_bytes());
                    self.rt.block_on(async {
                        let started = Instant::now();
                        let accepted = submit_event(&world.ingest, &Tenant::default_tenant(), body).await;
                        let elapsed = started.elapsed();
                        assert!(accepted.is_ok_and(|a| a.status == 202 && !a.replayed), "accepted once");
                        elapsed
                    })
                }
            };
            total += elapsed;
            if let Some(each) = each.as_deref_mut() {
                each.push(elapsed);
            }
        }
        total
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn micros(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

/// Every path called one by one for about `seconds` each: mean, p50, p90, p99 and max per call.
fn latency_table(seconds: f64) {
    println!("\nper call, each path alone on one thread (setup excluded):");
    println!("| path | calls | calls/s | mean | p50 | p90 | p99 | max |");
    println!("|---|---|---|---|---|---|---|---|");
    for path in Path::ALL {
        let mut bench = Bench::new(10_000);
        bench.run(path, 2_000, None); // warm-up
        let mut each = Vec::new();
        let deadline = Instant::now() + Duration::from_secs_f64(seconds);
        while Instant::now() < deadline {
            bench.run(path, 500, Some(&mut each));
        }
        each.sort();
        let total: Duration = each.iter().sum();
        let mean = total / each.len() as u32;
        println!(
            "| {} | {} | {:.0} | {} | {} | {} | {} | {} |",
            path.name(),
            each.len(),
            each.len() as f64 / total.as_secs_f64(),
            micros(mean),
            micros(percentile(&each, 0.50)),
            micros(percentile(&each, 0.90)),
            micros(percentile(&each, 0.99)),
            micros(*each.last().unwrap())
        );
    }
}

/// Validate + render over every event of a JSON-lines file, the way the peers measure it: one
/// warm-up pass, then passes until `NOTIFY_BENCH_SECONDS` (3) have gone by; events per second.
fn in_process(path: &str) {
    let catalog = Catalog::embedded().expect("the embedded catalog loads");
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let bodies: Vec<&[u8]> = text.lines().filter(|l| !l.is_empty()).map(str::as_bytes).collect();
    let seconds: f64 = std::env::var("NOTIFY_BENCH_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(3.0);
    let mut messages = 0usize;
    for body in &bodies {
        messages += validate_render(&catalog, body).len();
    }
    let started = Instant::now();
    let mut events = 0usize;
    while started.elapsed().as_secs_f64() < seconds {
        for body in &bodies {
            std::hint::black_box(validate_render(&catalog, body));
        }
        events += bodies.len();
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "{}",
        json!({"impl": "rust", "events": bodies.len(), "messages_per_pass": messages, "processed": events, "seconds": elapsed, "events_per_s": events as f64 / elapsed})
    );
}

fn main() {
    if let Ok(out) = std::env::var("NOTIFY_BENCH_WRITE_MIX") {
        let n: usize = std::env::var("NOTIFY_BENCH_EVENTS").ok().and_then(|s| s.parse().ok()).unwrap_or(10_000);
        let mut text = mix::bodies(n, MIX_SEED).join("\n");
        text.push('\n');
        std::fs::write(&out, text).unwrap_or_else(|e| panic!("{out}: {e}"));
        eprintln!("wrote {n} events to {out}");
        return;
    }
    if let Ok(path) = std::env::var("NOTIFY_BENCH_INPROC") {
        in_process(&path);
        return;
    }
    let quick = std::env::var_os("NOTIFY_BENCH_QUICK").is_some();
    if std::env::var_os("NOTIFY_BENCH_LATENCY").is_none() {
        let (warm, measure) = if quick { (Duration::from_millis(300), Duration::from_secs(1)) } else { (Duration::from_secs(1), Duration::from_secs(4)) };
        let mut c = Criterion::default().warm_up_time(warm).measurement_time(measure).sample_size(20).configure_from_args();
        let mut group = c.benchmark_group("hot_paths");
        group.throughput(Throughput::Elements(1));
        for path in Path::ALL {
            let mut bench = Bench::new(10_000);
            group.bench_function(path.name(), |b| b.iter_custom(|iters| bench.run(path, iters, None)));
        }
        group.finish();
        c.final_summary();
    }
    latency_table(if quick { 1.0 } else { 3.0 });
}
