//! Settings of the local stack, from flags or environment variables.

use clap::Parser;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser, Debug, Clone)]
#[command(name = "local-stack", about = "The notification platform on one machine: no cloud, no Docker.")]
pub struct Args {
    /// Address to serve the API and WebSocket on.
    #[arg(long, env = "NOTIFY_ADDR", default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,
    /// Comma-separated API keys; when unset a key is generated and printed at start.
    #[arg(long, env = "NOTIFY_API_KEYS", hide_env_values = true)]
    pub api_keys: Option<String>,
    /// Secret (≥ 32 bytes) that signs WebSocket tokens; random per start when unset.
    #[arg(long, env = "NOTIFY_WS_TOKEN_SECRET", hide_env_values = true)]
    pub ws_token_secret: Option<String>,
    /// Event catalog folder (event types, schemas, templates).
    #[arg(long, env = "NOTIFY_CATALOG_DIR")]
    pub catalog_dir: Option<PathBuf>,
    /// Folder where the local providers also write each message as a JSON file; `none` to disable.
    #[arg(long, env = "NOTIFY_OUTBOX_DIR", default_value = "outbox")]
    pub outbox_dir: String,
    /// Comma-separated channels whose local provider fails (to watch retries and the DLQ).
    #[arg(long, env = "NOTIFY_LOCAL_FAIL_CHANNELS", default_value = "")]
    pub fail_channels: String,
    /// Faults to inject: comma-separated `target:kind=rate`, target a channel, `store` or
    /// `queue`, kind `transient` or `permanent` (channels only), rate 0.0-1.0.
    #[arg(long, env = "NOTIFY_LOCAL_FAULTS", default_value = "")]
    pub faults: String,
    /// Seed of the injected faults' random draws (a run with the same seed draws the same faults).
    #[arg(long, env = "NOTIFY_LOCAL_FAULTS_SEED", default_value_t = 1)]
    pub faults_seed: u64,
    /// Receives before a message moves to its dead-letter queue: a safety net far above the
    /// retry budget (a FIFO queue also counts the receives of records held behind a failing one).
    #[arg(long, env = "NOTIFY_MAX_RECEIVE_COUNT", default_value_t = shared::topology::DEFAULT_MAX_RECEIVE_COUNT)]
    pub max_receive_count: u32,
    /// First retry delay in milliseconds; later ones double (with jitter) up to NOTIFY_RETRY_MAX_MS.
    #[arg(long, env = "NOTIFY_RETRY_BASE_MS", default_value_t = 1000)]
    pub retry_base_ms: u64,
    /// Longest retry delay in milliseconds.
    #[arg(long, env = "NOTIFY_RETRY_MAX_MS", default_value_t = 60_000)]
    pub retry_max_ms: u64,
    /// Provider attempts before a notification fails as `retries_exhausted` (then its fallback).
    #[arg(long, env = "NOTIFY_RETRY_MAX_ATTEMPTS", default_value_t = 10)]
    pub retry_max_attempts: u32,
    /// Events per second each API key may submit (0: unlimited); over it, 429 with Retry-After.
    #[arg(long, env = "NOTIFY_INGEST_RATE_PER_KEY", default_value_t = 0)]
    pub ingest_rate_per_key: u32,
    /// Browser origins allowed to call the inbox routes (`/v1/me/...`), comma-separated, e.g.
    /// http://localhost:3000 (none by default: an explicit allow-list).
    #[arg(long, env = "NOTIFY_CORS_ORIGINS", default_value = "")]
    pub cors_origins: String,
    /// The producer's status callback URL: every final status of a notification is POSTed there,
    /// signed with NOTIFY_WEBHOOK_SECRET (a random key when unset).
    #[arg(long, env = "NOTIFY_STATUS_CALLBACK_URL")]
    pub status_callback_url: Option<String>,
    /// Sending rates of each channel's first provider, messages per second, shared by every
    /// poller (e.g. `email=14,sms=2`): a send beyond it waits instead of failing.
    #[arg(long, env = "NOTIFY_PROVIDER_RATES", default_value = "")]
    pub provider_rates: String,
    /// Telegram Bot API token: with it, telegram notifications go to the real Bot API at
    /// NOTIFY_TELEGRAM_API_URL (a fake or a test bot) instead of the outbox.
    #[arg(long, env = "NOTIFY_TELEGRAM_BOT_TOKEN", hide_env_values = true)]
    pub telegram_bot_token: Option<String>,
    #[arg(long, env = "NOTIFY_TELEGRAM_API_URL", default_value = "https://api.telegram.org")]
    pub telegram_api_url: String,
    /// WhatsApp Cloud API access token: with it (and NOTIFY_WHATSAPP_PHONE_NUMBER_ID), WhatsApp
    /// notifications go to NOTIFY_WHATSAPP_API_URL instead of the outbox.
    #[arg(long, env = "NOTIFY_WHATSAPP_ACCESS_TOKEN", hide_env_values = true)]
    pub whatsapp_access_token: Option<String>,
    #[arg(long, env = "NOTIFY_WHATSAPP_PHONE_NUMBER_ID")]
    pub whatsapp_phone_number_id: Option<String>,
    #[arg(long, env = "NOTIFY_WHATSAPP_API_URL", default_value = "https://graph.facebook.com/v21.0")]
    pub whatsapp_api_url: String,
    /// Webhook signing secret (`whsec_…`): with it, webhook notifications are POSTed, signed, to
    /// the profile's `webhook_url` (loopback and plain http allowed locally) instead of the outbox.
    #[arg(long, env = "NOTIFY_WEBHOOK_SECRET", hide_env_values = true)]
    pub webhook_secret: Option<String>,
    /// SendGrid API key: with it, email fails over from the first provider (the outbox, or SES on
    /// the AWS backend) to SendGrid at NOTIFY_SENDGRID_API_URL.
    #[arg(long, env = "NOTIFY_SENDGRID_API_KEY", hide_env_values = true)]
    pub sendgrid_api_key: Option<String>,
    #[arg(long, env = "NOTIFY_SENDGRID_API_URL", default_value = "https://api.sendgrid.com")]
    pub sendgrid_api_url: String,
    /// Twilio account SID and auth token: with both (and NOTIFY_TWILIO_FROM), SMS fails over
    /// from the first provider to Twilio's Messages API at NOTIFY_TWILIO_API_URL.
    #[arg(long, env = "NOTIFY_TWILIO_ACCOUNT_SID")]
    pub twilio_account_sid: Option<String>,
    #[arg(long, env = "NOTIFY_TWILIO_AUTH_TOKEN", hide_env_values = true)]
    pub twilio_auth_token: Option<String>,
    #[arg(long, env = "NOTIFY_TWILIO_FROM")]
    pub twilio_from: Option<String>,
    #[arg(long, env = "NOTIFY_TWILIO_API_URL", default_value = "https://api.twilio.com")]
    pub twilio_api_url: String,
    /// `memory`: in-process queues and store. `aws`: SQS, DynamoDB, SES v2 and SNS at
    /// `AWS_ENDPOINT_URL` (an emulator such as moto) or in the account the credentials name.
    #[arg(long, env = "NOTIFY_BACKEND", default_value = "memory")]
    pub backend: String,
    /// With `--backend aws`: create the queues and tables of template.yaml at start.
    #[arg(long, env = "NOTIFY_PROVISION", default_value_t = false)]
    pub provision: bool,
    /// The in-memory backend keeps the newest this many events and their notifications (older
    /// ones are forgotten, as DynamoDB's TTL forgets them on AWS, and a FIFO queue remembers at
    /// most this many deduplication ids): memory stays bounded under sustained load. 0: keep all.
    #[arg(long, env = "NOTIFY_LOCAL_RETAIN_EVENTS", default_value_t = 50_000)]
    pub retain_events: usize,
    /// The outbox (`GET /v1/dev/outbox`) lists the newest this many messages. 0: all.
    #[arg(long, env = "NOTIFY_LOCAL_RETAIN_OUTBOX", default_value_t = 2_000)]
    pub retain_outbox: usize,
    /// With `--backend aws --provision`: the stack name that prefixes resource names.
    #[arg(long, env = "NOTIFY_STACK_NAME", default_value = "notify-local")]
    pub stack_name: String,
}

/// How much of what was delivered the local stack keeps in memory (0: everything).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Retention {
    /// Events kept, with their notifications; also the deduplication ids a FIFO queue remembers.
    pub events: usize,
    /// Outbox messages listed (and send-ledger entries kept).
    pub outbox: usize,
}

/// Where queues, tables and providers live.
#[derive(Clone)]
pub enum Backend {
    /// In-process adapters; providers write to the outbox.
    Memory,
    /// The AWS adapters over `sdk` (emulator or cloud).
    Aws(Box<AwsBackend>),
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Backend::Memory => f.write_str("Memory"),
            Backend::Aws(a) => write!(f, "Aws({:?})", a.resources),
        }
    }
}

#[derive(Clone)]
pub struct AwsBackend {
    pub sdk: aws_config::SdkConfig,
    pub resources: AwsResources,
    /// Verified SES sender identity.
    pub email_from: String,
    pub sms_sender_id: Option<String>,
    pub push_fcm_application_arn: Option<String>,
    /// Added to every AWS client (tests count requests with it).
    pub interceptor: Option<aws_smithy_runtime_api::client::interceptors::SharedInterceptor>,
}

#[derive(Clone, Debug)]
pub enum AwsResources {
    /// Create the queues and tables of `template` under `stack_name` (plus an SES identity for
    /// `email_from` and an FCM platform application), as a fresh emulator needs.
    Provision { template: PathBuf, stack_name: String, parameters: std::collections::HashMap<String, String> },
    /// Use what a deployment made: queue URL prefix and table names from the environment.
    Existing { queue_url_prefix: String, tables: shared::adapters::aws::TableNames },
}

/// Everything `start` needs; tests build one directly.
#[derive(Debug, Clone)]
pub struct Config {
    pub addr: SocketAddr,
    pub api_keys: Vec<String>,
    pub ws_token_secret: Vec<u8>,
    pub ws_token_ttl: Duration,
    pub catalog_dir: PathBuf,
    pub outbox_dir: Option<PathBuf>,
    pub fail_channels: Vec<shared::domain::Channel>,
    /// `NOTIFY_LOCAL_FAULTS`, parsed.
    pub faults: Vec<crate::faults::FaultSpec>,
    pub faults_seed: u64,
    pub max_receive_count: u32,
    pub visibility_timeout: Duration,
    pub retry_base: Duration,
    pub retry_max: Duration,
    /// Provider attempts per notification.
    pub retry_max_attempts: u32,
    /// Pollers per queue (Lambda's concurrency per event source mapping).
    pub pollers_per_queue: usize,
    pub backend: Backend,
    /// Real HTTP providers, where their settings were given (else the outbox).
    pub providers: HttpProviders,
    /// `NOTIFY_STATUS_CALLBACK_URL`.
    pub status_callback_url: Option<String>,
    /// `NOTIFY_INGEST_RATE_PER_KEY` (none: unlimited).
    pub ingest_rate_per_key: Option<u32>,
    /// `NOTIFY_CORS_ORIGINS`, parsed.
    pub cors_origins: Vec<String>,
    /// `NOTIFY_PROVIDER_RATES`, parsed: messages per second of each channel's first provider.
    pub provider_rates: std::collections::HashMap<shared::domain::Channel, u32>,
    /// `NOTIFY_LOCAL_RETAIN_EVENTS`, `NOTIFY_LOCAL_RETAIN_OUTBOX`: what the in-memory backend and
    /// the outbox keep.
    pub retention: Retention,
}

/// `email=14,sms=2`: messages per second per channel.
pub fn parse_rates(text: &str) -> Result<std::collections::HashMap<shared::domain::Channel, u32>, String> {
    let mut rates = std::collections::HashMap::new();
    for item in text.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let bad = || format!("NOTIFY_PROVIDER_RATES item {item:?}: expected channel=messages-per-second, e.g. email=14");
        let (channel, rate) = item.split_once('=').ok_or_else(bad)?;
        let channel: shared::domain::Channel = channel.trim().parse().map_err(|_| bad())?;
        let rate: u32 = rate.trim().parse().ok().filter(|r| *r > 0).ok_or_else(bad)?;
        rates.insert(channel, rate);
    }
    Ok(rates)
}

/// The HTTP providers the local stack uses instead of the outbox, each when configured.
#[derive(Clone, Debug, Default)]
pub struct HttpProviders {
    pub telegram: Option<TelegramSettings>,
    pub whatsapp: Option<WhatsAppSettings>,
    /// The webhook signing secret.
    pub webhook_secret: Option<String>,
    pub sendgrid: Option<SendGridSettings>,
    pub twilio: Option<TwilioSettings>,
}

#[derive(Clone, Debug)]
pub struct TelegramSettings {
    pub api_url: String,
    pub bot_token: String,
}

#[derive(Clone, Debug)]
pub struct WhatsAppSettings {
    pub api_url: String,
    pub phone_number_id: String,
    pub access_token: String,
}

#[derive(Clone, Debug)]
pub struct SendGridSettings {
    pub api_url: String,
    pub api_key: String,
    pub from: String,
}

#[derive(Clone, Debug)]
pub struct TwilioSettings {
    pub api_url: String,
    pub account_sid: String,
    pub auth_token: String,
    pub from: String,
}

impl HttpProviders {
    fn from_args(args: &Args) -> Result<Self, String> {
        let whatsapp = match (&args.whatsapp_access_token, &args.whatsapp_phone_number_id) {
            (Some(token), Some(id)) => Some(WhatsAppSettings { api_url: args.whatsapp_api_url.clone(), phone_number_id: id.clone(), access_token: token.clone() }),
            (Some(_), None) => return Err("NOTIFY_WHATSAPP_ACCESS_TOKEN needs NOTIFY_WHATSAPP_PHONE_NUMBER_ID".into()),
            _ => None,
        };
        let twilio = match (&args.twilio_account_sid, &args.twilio_auth_token, &args.twilio_from) {
            (Some(sid), Some(token), Some(from)) => Some(TwilioSettings {
                api_url: args.twilio_api_url.clone(),
                account_sid: sid.clone(),
                auth_token: token.clone(),
                from: from.clone(),
            }),
            (None, None, _) => None,
            _ => return Err("Twilio needs NOTIFY_TWILIO_ACCOUNT_SID, NOTIFY_TWILIO_AUTH_TOKEN and NOTIFY_TWILIO_FROM".into()),
        };
        Ok(HttpProviders {
            telegram: args.telegram_bot_token.clone().map(|bot_token| TelegramSettings { api_url: args.telegram_api_url.clone(), bot_token }),
            whatsapp,
            webhook_secret: args.webhook_secret.clone(),
            sendgrid: args.sendgrid_api_key.clone().map(|api_key| SendGridSettings {
                api_url: args.sendgrid_api_url.clone(),
                api_key,
                from: std::env::var(shared::config::vars::EMAIL_FROM).unwrap_or_else(|_| "notifications@example.com".into()),
            }),
            twilio,
        })
    }
}

fn random_secret() -> Vec<u8> {
    use rand::Rng;
    let bytes: [u8; 32] = rand::rng().random();
    bytes.to_vec()
}

fn default_catalog_dir() -> PathBuf {
    let here = PathBuf::from("catalog");
    if here.is_dir() { here } else { shared::catalog::repository_catalog_dir() }
}

impl Config {
    /// Defaults for an in-process stack on a free port (tests, benchmarks): fast retries.
    pub fn for_tests() -> Self {
        Self {
            addr: "127.0.0.1:0".parse().expect("literal address"),
            api_keys: vec!["test-key".into()],
            ws_token_secret: random_secret(),
            ws_token_ttl: Duration::from_secs(300),
            catalog_dir: shared::catalog::repository_catalog_dir(),
            outbox_dir: None,
            fail_channels: Vec::new(),
            faults: Vec::new(),
            faults_seed: 1,
            max_receive_count: 10,
            visibility_timeout: Duration::from_secs(10),
            retry_base: Duration::from_millis(50),
            retry_max: Duration::from_millis(400),
            retry_max_attempts: 3,
            pollers_per_queue: 2,
            backend: Backend::Memory,
            providers: HttpProviders::default(),
            provider_rates: Default::default(),
            status_callback_url: None,
            ingest_rate_per_key: None,
            cors_origins: Vec::new(),
            // Tests read everything back.
            retention: Retention::default(),
        }
    }

    /// The handlers' settings, as `shared::wiring` takes them: the pipeline backs off from
    /// `retry_base` up to `retry_max` and never gives up on an accepted event.
    pub fn settings(&self) -> shared::wiring::Settings {
        use shared::handlers::sqs_batch::RetryPolicy;
        shared::wiring::Settings {
            pipeline_retry: RetryPolicy { base: self.retry_base, max: self.retry_max.max(self.retry_base), max_attempts: RetryPolicy::PIPELINE.max_attempts },
            visibility_timeout: self.visibility_timeout,
            ingest: shared::handlers::ingest::IngestSettings {
                rate_per_key: self.ingest_rate_per_key,
                ..Default::default()
            },
            status_callback_url: self.status_callback_url.clone(),
            cors_origins: self.cors_origins.clone(),
            ..shared::wiring::Settings::default()
        }
    }

    /// Every channel's provider budget: `retry_max_attempts` attempts, backing off from
    /// `retry_base` up to `retry_max`.
    pub fn delivery_retry(&self) -> shared::handlers::sqs_batch::RetryPolicy {
        shared::handlers::sqs_batch::RetryPolicy { base: self.retry_base, max: self.retry_max.max(self.retry_base), max_attempts: self.retry_max_attempts }
    }

    pub async fn from_args(args: Args) -> Result<Self, String> {
        let api_keys: Vec<String> = args
            .api_keys
            .clone()
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .map(str::to_owned)
            .collect();
        let ws_token_secret = match args.ws_token_secret.clone() {
            Some(s) if s.len() >= 32 => s.into_bytes(),
            Some(_) => return Err("NOTIFY_WS_TOKEN_SECRET must be at least 32 bytes".into()),
            None => random_secret(),
        };
        let fail_channels = args
            .fail_channels
            .split(',')
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(|c| c.parse().map_err(|e: String| format!("NOTIFY_LOCAL_FAIL_CHANNELS: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        if args.max_receive_count == 0 {
            return Err("NOTIFY_MAX_RECEIVE_COUNT must be at least 1".into());
        }
        if args.retry_base_ms == 0 || args.retry_max_ms < args.retry_base_ms {
            return Err("NOTIFY_RETRY_BASE_MS must be at least 1 and NOTIFY_RETRY_MAX_MS at least as much".into());
        }
        if args.retry_max_attempts == 0 {
            return Err("NOTIFY_RETRY_MAX_ATTEMPTS must be at least 1".into());
        }
        let faults = crate::faults::parse_faults(&args.faults)?;
        let providers = HttpProviders::from_args(&args)?;
        let provider_rates = parse_rates(&args.provider_rates)?;
        let backend = match args.backend.as_str() {
            "memory" => Backend::Memory,
            "aws" => Backend::Aws(Box::new(aws_backend(&args).await?)),
            other => return Err(format!("NOTIFY_BACKEND must be memory or aws, not {other:?}")),
        };
        Ok(Self {
            backend,
            addr: args.addr,
            api_keys,
            ws_token_secret,
            ws_token_ttl: Duration::from_secs(15 * 60),
            catalog_dir: args.catalog_dir.unwrap_or_else(default_catalog_dir),
            outbox_dir: (args.outbox_dir != "none" && !args.outbox_dir.is_empty()).then(|| PathBuf::from(args.outbox_dir)),
            fail_channels,
            faults,
            faults_seed: args.faults_seed,
            max_receive_count: args.max_receive_count,
            visibility_timeout: Duration::from_secs(30),
            retry_base: Duration::from_millis(args.retry_base_ms),
            retry_max: Duration::from_millis(args.retry_max_ms),
            retry_max_attempts: args.retry_max_attempts,
            pollers_per_queue: 2,
            providers,
            provider_rates,
            status_callback_url: args.status_callback_url.clone(),
            ingest_rate_per_key: (args.ingest_rate_per_key > 0).then_some(args.ingest_rate_per_key),
            cors_origins: shared::lambda::cors_origins(&shared::config::Env::from_pairs([(shared::config::vars::CORS_ORIGINS, args.cors_origins.as_str())]))
                .map_err(|e| e.to_string())?,
            retention: Retention { events: args.retain_events, outbox: args.retain_outbox },
        })
    }
}

async fn aws_backend(args: &Args) -> Result<AwsBackend, String> {
    use shared::config::{Env, vars};
    let env = Env::from_process();
    let sdk = shared::adapters::aws::sdk_config().await;
    if sdk.region().is_none() {
        return Err("the AWS backend needs a region: set AWS_REGION".into());
    }
    let resources = if args.provision {
        AwsResources::Provision {
            template: crate::provision::repository_template(),
            stack_name: args.stack_name.clone(),
            parameters: [("MaxReceiveCount".to_owned(), args.max_receive_count.to_string())].into(),
        }
    } else {
        let table = |name| env.required(name).map_err(|e| e.to_string());
        AwsResources::Existing {
            queue_url_prefix: env.required(vars::QUEUE_URL_PREFIX).map_err(|e| e.to_string())?,
            tables: shared::adapters::aws::TableNames {
                idempotency: table(vars::IDEMPOTENCY_TABLE)?,
                events: table(vars::EVENTS_TABLE)?,
                notifications: table(vars::NOTIFICATIONS_TABLE)?,
                users: table(vars::USERS_TABLE)?,
                connections: table(vars::CONNECTIONS_TABLE)?,
                suppressions: table(vars::SUPPRESSIONS_TABLE)?,
                rate_limits: table(vars::RATE_LIMITS_TABLE)?,
                api_keys: table(vars::API_KEYS_TABLE)?,
                dead_letters: table(vars::DEAD_LETTERS_TABLE)?,
            },
        }
    };
    Ok(AwsBackend {
        sdk,
        resources,
        email_from: env.optional(vars::EMAIL_FROM).unwrap_or_else(|| "notifications@example.com".into()),
        sms_sender_id: env.optional(vars::SMS_SENDER_ID),
        push_fcm_application_arn: env.optional(vars::PUSH_FCM_APPLICATION_ARN),
        interceptor: None,
    })
}
