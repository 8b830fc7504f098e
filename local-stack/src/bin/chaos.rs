//! `cargo run --release -p local-stack --bin chaos`: the delivery guarantees under faults.
//!
//! Starts the local stack in this process with faults injected into every provider, the store
//! and the queues, posts events for many users (a share of them two or three times at once),
//! lets everything settle and prints what became of each: lost, duplicated, out of order.
//! Exits with status 1 on any loss, duplicate or order violation.

use clap::Parser;
use local_stack::chaos::{ChaosOptions, ISSUE_FAULTS, run};
use local_stack::config::{Args, Backend, Config};
use local_stack::faults::parse_faults;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(name = "chaos", about = "Posts events through the local stack with faults injected and reports lost, duplicate and out-of-order messages.")]
struct ChaosArgs {
    /// Events to post.
    #[arg(long, default_value_t = 10_000)]
    events: usize,
    /// Users they are spread over.
    #[arg(long, default_value_t = 200)]
    users: usize,
    /// Faults, as NOTIFY_LOCAL_FAULTS takes them (`target:kind=rate`, comma-separated).
    #[arg(long, default_value = ISSUE_FAULTS)]
    faults: String,
    /// Seed of the fault draws and of which events are posted more than once.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Share of events posted two or three times at once.
    #[arg(long, default_value_t = 0.1)]
    duplicates: f64,
    /// Users posting at the same time.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Seconds everything may take to settle.
    #[arg(long, default_value_t = 600)]
    settle_seconds: u64,
    /// Report out-of-order messages without failing on them (for an emulator whose FIFO queues
    /// reorder retried messages, such as moto).
    #[arg(long)]
    no_order_check: bool,
    /// `memory` (in-process queues and store) or `aws` (an emulator at AWS_ENDPOINT_URL, its
    /// queues and tables created from template.yaml under a fresh stack name).
    #[arg(long, default_value = "memory")]
    backend: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "off".into()))
        .init();
    let args = ChaosArgs::parse();
    let mut options = ChaosOptions::new(args.events, args.users);
    options.faults = parse_faults(&args.faults).map_err(anyhow::Error::msg)?;
    options.seed = args.seed;
    options.duplicate_share = args.duplicates;
    options.concurrency = args.concurrency.max(1);
    options.settle_timeout = Duration::from_secs(args.settle_seconds);
    options.check_order = !args.no_order_check;
    if args.backend == "aws" {
        let stack_name = format!("chaos-{}", ulid::Ulid::new().to_string().to_lowercase());
        let stack_args = Args::parse_from(["local-stack", "--backend", "aws", "--provision", "--stack-name", &stack_name]);
        let config = Config::from_args(stack_args).await.map_err(anyhow::Error::msg)?;
        let Backend::Aws(aws) = config.backend else { unreachable!("asked for the aws backend") };
        options.config.backend = Backend::Aws(aws);
        // The template's queues: 180 s visibility, so a sender's lease of 60 s.
        options.config.visibility_timeout = Duration::from_secs(180);
        // Whole seconds on SQS.
        options.config.retry_base = Duration::from_secs(1);
        options.config.retry_max = Duration::from_secs(2);
        // One poller per queue: an emulator such as moto answers concurrent ReceiveMessage calls
        // on one FIFO queue without a lock (two pollers may get messages of one group).
        options.config.pollers_per_queue = 1;
    } else if args.backend != "memory" {
        anyhow::bail!("--backend is memory or aws, not {:?}", args.backend);
    }
    let report = run(options).await?;
    print!("{}", report.render());
    if !report.ok() {
        std::process::exit(1);
    }
    Ok(())
}
