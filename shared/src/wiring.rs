//! Each function's dependencies, built in one place. A Lambda `main.rs` calls these over the AWS
//! adapters, the local stack over its in-process (or AWS) adapters, and the tests over whatever
//! they substitute: the leases, retry policies and fallback wiring cannot drift apart.

use std::sync::Arc;
use std::time::Duration;

use crate::auth::WsTokens;
use crate::catalog::Catalog;
use crate::handlers::dead_letter::{DEFAULT_MAX_REDRIVES, DeadLetterDeps};
use crate::handlers::dead_letters::DeadLetterApiDeps;
use crate::handlers::deferred::DeferredDeps;
use crate::handlers::fallback::FallbackDeps;
use crate::handlers::ingest::{IngestDeps, IngestSettings};
use crate::handlers::queries::QueryDeps;
use crate::handlers::router::RouterDeps;
use crate::handlers::send::SendDeps;
use crate::handlers::sqs_batch::RetryPolicy;
use crate::handlers::callbacks::StatusCallbacks;
use crate::handlers::ws::WsDeps;
use crate::handlers::feedback::FeedbackDeps;
use crate::ports::{BatchQueue, ChannelSender, Clock, ConnectionStore, EventStore, IdempotencyStore, NotificationStore, ProfileStore};
use crate::ports::{DeadLetterStore, RateLimiter, SuppressionStore};

/// The longest a sender's claim on a notification holds: well beyond one provider call.
pub const SEND_LEASE: Duration = Duration::from_secs(60);

/// The ports the handlers are built over, from one backend.
#[derive(Clone)]
pub struct Ports {
    pub queue: Arc<dyn BatchQueue>,
    pub idempotency: Arc<dyn IdempotencyStore>,
    pub events: Arc<dyn EventStore>,
    pub notifications: Arc<dyn NotificationStore>,
    pub profiles: Arc<dyn ProfileStore>,
    pub connections: Arc<dyn ConnectionStore>,
    pub suppressions: Arc<dyn SuppressionStore>,
    /// Sending rates shared by every instance of a function: the shared counts, one write per
    /// call; ingest and the paced providers lease blocks of them through a `LeasedLimiter`.
    pub rate_limits: Arc<dyn RateLimiter>,
    /// Tenants' API keys and settings.
    pub keys: Arc<dyn crate::ports::KeyDirectory>,
    /// Jobs given up on, for the API to list and replay.
    pub dead_letters: Arc<dyn DeadLetterStore>,
    pub clock: Arc<dyn Clock>,
}

impl Ports {
    /// Every port from one adapter of each kind (a queue, and a store that holds every table).
    pub fn over<S>(queue: Arc<dyn BatchQueue>, store: Arc<S>, clock: Arc<dyn Clock>) -> Self
    where
        S: IdempotencyStore + EventStore + NotificationStore + ProfileStore + ConnectionStore + SuppressionStore + RateLimiter + crate::ports::KeyDirectory + DeadLetterStore + 'static,
    {
        Ports {
            queue,
            idempotency: store.clone(),
            events: store.clone(),
            notifications: store.clone(),
            profiles: store.clone(),
            connections: store.clone(),
            suppressions: store.clone(),
            rate_limits: store.clone(),
            keys: store.clone(),
            dead_letters: store,
            clock,
        }
    }
}

/// The tunables every deployment sets (on Lambda from the environment, see `lambda.rs`).
#[derive(Clone, Debug)]
pub struct Settings {
    /// Backoff of the router, scheduler and dead-letter handler, and of the senders' store and
    /// queue hiccups.
    pub pipeline_retry: RetryPolicy,
    /// The send queues' visibility timeout: a sender's lease must end well within it.
    pub visibility_timeout: Duration,
    pub max_redrives: u32,
    pub ingest: IngestSettings,
    /// The producer's status callback URL (`NOTIFY_STATUS_CALLBACK_URL`); none: no callbacks.
    pub status_callback_url: Option<String>,
    /// The router's one-click unsubscribe links (`NOTIFY_PUBLIC_BASE_URL` and the key derived
    /// from the user-token secret); none: email goes out without them.
    pub unsubscribe: Option<Arc<crate::auth::UnsubscribeLinks>>,
    /// The browser origins allowed to call `/v1/me/...` (`NOTIFY_CORS_ORIGINS`): an explicit
    /// allow-list, none by default.
    pub cors_origins: Vec<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            pipeline_retry: RetryPolicy::PIPELINE,
            visibility_timeout: Duration::from_secs(180),
            max_redrives: DEFAULT_MAX_REDRIVES,
            ingest: IngestSettings::default(),
            status_callback_url: None,
            unsubscribe: None,
            cors_origins: Vec::new(),
        }
    }
}

impl Settings {
    /// Where final statuses go: the callback queue, when a URL is registered.
    pub fn callbacks(&self, ports: &Ports) -> StatusCallbacks {
        StatusCallbacks { url: self.status_callback_url.clone(), queue: ports.queue.clone() }
    }

    /// A sender's claim: [`SEND_LEASE`], or two thirds of the visibility timeout if that is
    /// shorter, so the claim lapses before the job is seen again.
    pub fn lease(&self) -> Duration {
        SEND_LEASE.min(self.visibility_timeout * 2 / 3)
    }
}

pub fn ingest(ports: &Ports, catalog: Arc<Catalog>, settings: &Settings) -> IngestDeps {
    IngestDeps {
        catalog,
        events: ports.events.clone(),
        queue: ports.queue.clone(),
        clock: ports.clock.clone(),
        // Leased in blocks: about one shared write per tenth of the key's rate, not per event.
        rate_limits: Arc::new(crate::ports::LeasedLimiter::new(ports.rate_limits.clone())),
        settings: settings.ingest.clone(),
    }
}

pub fn queries(ports: &Ports, catalog: Arc<Catalog>, tokens: Arc<WsTokens>, poster: Arc<dyn crate::ports::ConnectionPoster>, settings: &Settings) -> QueryDeps {
    QueryDeps {
        cors_origins: Arc::new(settings.cors_origins.clone()),
        live: Arc::new(crate::handlers::ws::WebSocketFanout { connections: ports.connections.clone(), poster, clock: ports.clock.clone() }),
        catalog,
        callbacks: settings.callbacks(ports),
        events: ports.events.clone(),
        notifications: ports.notifications.clone(),
        profiles: ports.profiles.clone(),
        suppressions: ports.suppressions.clone(),
        tokens,
        clock: ports.clock.clone(),
        dead_letters: dead_letter_api(ports),
    }
}

/// The API's dead-letter routes: list what was given up on, replay it to its queue.
pub fn dead_letter_api(ports: &Ports) -> DeadLetterApiDeps {
    DeadLetterApiDeps {
        dead_letters: ports.dead_letters.clone(),
        notifications: ports.notifications.clone(),
        queue: ports.queue.clone(),
        clock: ports.clock.clone(),
    }
}

pub fn ws(ports: &Ports, tokens: Arc<WsTokens>) -> WsDeps {
    WsDeps { connections: ports.connections.clone(), tokens, clock: ports.clock.clone() }
}

pub fn router(ports: &Ports, catalog: Arc<Catalog>, settings: &Settings) -> RouterDeps {
    RouterDeps {
        catalog,
        profiles: ports.profiles.clone(),
        notifications: ports.notifications.clone(),
        suppressions: ports.suppressions.clone(),
        queue: ports.queue.clone(),
        clock: ports.clock.clone(),
        retry: settings.pipeline_retry.clone(),
        callbacks: settings.callbacks(ports),
        tenants: Arc::new(crate::ports::TenantSettingsCache::new(ports.keys.clone())),
        dead_letters: ports.dead_letters.clone(),
        unsubscribe: settings.unsubscribe.clone(),
    }
}

/// The one-click unsubscribe routes (`/v1/unsubscribe/{token}`), served by the api function.
pub fn unsubscribe(ports: &Ports, tokens: Arc<crate::auth::UnsubscribeTokens>) -> crate::handlers::unsubscribe::UnsubscribeDeps {
    crate::handlers::unsubscribe::UnsubscribeDeps { profiles: ports.profiles.clone(), tokens, clock: ports.clock.clone() }
}

/// `DELETE /v1/users/{user_id}`, served by the api function.
pub fn erasure(ports: &Ports, catalog: Arc<Catalog>, settings: &Settings) -> crate::handlers::erasure::ErasureDeps {
    crate::handlers::erasure::ErasureDeps {
        catalog,
        events: ports.events.clone(),
        notifications: ports.notifications.clone(),
        profiles: ports.profiles.clone(),
        connections: ports.connections.clone(),
        suppressions: ports.suppressions.clone(),
        callbacks: settings.callbacks(ports),
        clock: ports.clock.clone(),
    }
}

/// The feedback function: SES bounces and complaints suppress addresses and mark notifications.
pub fn feedback(ports: &Ports, settings: &Settings) -> FeedbackDeps {
    FeedbackDeps {
        suppressions: ports.suppressions.clone(),
        notifications: ports.notifications.clone(),
        clock: ports.clock.clone(),
        callbacks: settings.callbacks(ports),
    }
}

pub fn scheduler(ports: &Ports, settings: &Settings) -> DeferredDeps {
    DeferredDeps {
        notifications: ports.notifications.clone(),
        queue: ports.queue.clone(),
        clock: ports.clock.clone(),
        retry: settings.pipeline_retry.clone(),
        dead_letters: ports.dead_letters.clone(),
    }
}

pub fn fallback(ports: &Ports, catalog: Arc<Catalog>) -> FallbackDeps {
    FallbackDeps {
        catalog,
        events: ports.events.clone(),
        notifications: ports.notifications.clone(),
        queue: ports.queue.clone(),
        clock: ports.clock.clone(),
    }
}

pub fn dead_letter(ports: &Ports, catalog: Arc<Catalog>, settings: &Settings) -> DeadLetterDeps {
    DeadLetterDeps {
        notifications: ports.notifications.clone(),
        queue: ports.queue.clone(),
        fallback: fallback(ports, catalog),
        clock: ports.clock.clone(),
        retry: settings.pipeline_retry.clone(),
        max_redrives: settings.max_redrives,
        callbacks: settings.callbacks(ports),
        dead_letters: ports.dead_letters.clone(),
    }
}

/// A channel's sender over `provider`, retrying it on `retry`.
pub fn sender(ports: &Ports, catalog: Arc<Catalog>, settings: &Settings, provider: Arc<dyn ChannelSender>, retry: RetryPolicy) -> SendDeps {
    SendDeps {
        notifications: ports.notifications.clone(),
        sender: provider,
        callbacks: settings.callbacks(ports),
        suppressions: ports.suppressions.clone(),
        fallback: fallback(ports, catalog),
        clock: ports.clock.clone(),
        retry,
        hiccup_retry: settings.pipeline_retry.clone(),
        lease: settings.lease(),
    }
}
