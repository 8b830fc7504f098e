//! Builds the local stack: in-process adapters, the handlers of every function over them, the
//! event source mappings between queues and handlers, and the HTTP/WebSocket server.

use anyhow::Context;
use axum::Router;
use futures::FutureExt;
use shared::adapters::aws::{ApiGatewayConnectionPoster, DynamoStore, QueueDirectory, SesEmailSender, SnsPushSender, SnsSmsSender, SqsQueue};
use shared::adapters::memory::queue::MemoryQueue;
use shared::adapters::memory::store::MemoryStore;
use shared::adapters::aws::{ses, sns};
use shared::adapters::memory::{MemoryConnectionPoster, Outbox, OutboxSender, outbox};
use shared::auth::{ApiKeys, WsTokens};
use shared::catalog::Catalog;
use shared::domain::{Channel, Lane};
use shared::handlers::dead_letter::handle_dead_letter_record;
use shared::handlers::deferred::handle_deferred_record;
use shared::handlers::router::handle_route_record;
use shared::handlers::send::handle_send_record;
use shared::handlers::sqs_batch::process_batch;
use shared::handlers::ws::WebSocketFanout;
use shared::ports::{
    BatchQueue, ChannelSender, Clock, ConnectionPoster, ConnectionStore, EventStore, IdempotencyStore, NotificationStore, ProfileStore,
    QueueReceiver, QueueSender, SystemClock, VisibilityControl,
};
use shared::ports::{DeadLetterStore, RateLimiter, SuppressionStore};
use shared::adapters::http::webhook::{TargetPolicy, WebhookSender, WebhookSigner};
use shared::handlers::callbacks::{CallbackDeps, StatusCallbacks, handle_callback_record};
use shared::topology::{CALLBACKS_QUEUE, DEFERRED_QUEUE, TopologySettings, all_queues, dead_letter_queue_of, events_queue, send_queue};
use shared::wiring::{self, Ports};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::{AwsBackend, AwsResources, Backend, Config};
use crate::faults::{FaultTarget, Faults, FaultyQueue, FaultyStore};
use crate::ledger::SendLedger;
use crate::event_source::{self, BatchHandler, Mapping, PollStats};
use crate::websocket::{self, WsState};

/// A running local stack.
pub struct LocalStack {
    pub addr: SocketAddr,
    /// A key that `Authorization: Bearer` accepts.
    pub api_key: String,
    /// What the local providers sent (every channel on the memory backend; WhatsApp and
    /// Telegram on the AWS backend).
    pub outbox: Outbox,
    /// Every message a provider accepted, whatever the backend (duplicates show here).
    pub ledger: SendLedger,
    /// `set_failing` makes a channel's provider fail (transiently), whatever the backend; the
    /// faults of `NOTIFY_LOCAL_FAULTS` and what was injected.
    pub faults: Faults,
    /// The live WebSocket connections this stack serves.
    pub connections: MemoryConnectionPoster,
    /// On the AWS backend: the queues and tables in use.
    pub aws: Option<AwsResourcesInUse>,
    /// Read-only views for tests and the chaos run.
    pub inspect: Inspect,
    /// Where final statuses are announced (for a test that plays another function, such as the
    /// feedback function).
    pub callbacks: StatusCallbacks,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    server: JoinHandle<()>,
}

#[derive(Clone, Debug)]
pub struct AwsResourcesInUse {
    pub queues: QueueDirectory,
    pub tables: shared::adapters::aws::TableNames,
}

/// The ports every function's handlers need, from one backend, and the providers.
struct Adapters {
    ports: Ports,
    /// The notifications as stored, without injected faults (for inspection).
    unfaulted_notifications: Arc<dyn NotificationStore>,
    /// The suppressions as stored, without injected faults (for inspection).
    unfaulted_suppressions: Arc<dyn SuppressionStore>,
    receiver: Arc<dyn QueueReceiver>,
    /// Each channel's first provider, with the name it records (websocket: the fan-out, built later).
    senders: Vec<(Channel, &'static str, Arc<dyn ChannelSender>)>,
    poster: Arc<dyn ConnectionPoster>,
    aws: Option<AwsResourcesInUse>,
}

/// The store's notifications and suppressions, without injected faults.
type Unfaulted = (Arc<dyn NotificationStore>, Arc<dyn SuppressionStore>);

/// `queue` and `store` as ports, behind the fault injection when `faults` asks for it.
fn ports_over<Q, S>(queue: Arc<Q>, store: Arc<S>, faults: &Faults, clock: Arc<dyn Clock>) -> (Ports, Arc<dyn QueueReceiver>, Unfaulted)
where
    Q: QueueSender + VisibilityControl + QueueReceiver + 'static,
    S: IdempotencyStore + EventStore + NotificationStore + ProfileStore + ConnectionStore + SuppressionStore + RateLimiter + shared::ports::KeyDirectory + DeadLetterStore + 'static,
{
    let (queue, receiver): (Arc<dyn BatchQueue>, Arc<dyn QueueReceiver>) = if faults.touches(FaultTarget::Queue) {
        let faulty = Arc::new(FaultyQueue::new(queue, faults.clone()));
        (faulty.clone(), faulty)
    } else {
        (queue.clone(), queue)
    };
    let unfaulted: Unfaulted = (store.clone(), store.clone());
    let ports = if faults.touches(FaultTarget::Store) {
        Ports::over(queue, Arc::new(FaultyStore::new(store, faults.clone())), clock)
    } else {
        Ports::over(queue, store, clock)
    };
    (ports, receiver, unfaulted)
}

fn memory_adapters(config: &Config, outbox: &Outbox, connections: &MemoryConnectionPoster, faults: &Faults, clock: Arc<dyn Clock>) -> Adapters {
    let topology = TopologySettings { visibility_timeout: config.visibility_timeout, max_receive_count: config.max_receive_count };
    let queues = Arc::new(MemoryQueue::new(&all_queues(&topology)).remembering(config.retention.events));
    let store = Arc::new(MemoryStore::with_retention(config.retention.events));
    let (ports, receiver, (unfaulted_notifications, unfaulted_suppressions)) = ports_over(queues, store, faults, clock);
    let provider: Arc<dyn ChannelSender> = Arc::new(OutboxSender::new(outbox.clone()));
    Adapters {
        ports,
        unfaulted_notifications,
        unfaulted_suppressions,
        receiver,
        senders: Channel::ALL.iter().filter(|c| **c != Channel::Websocket).map(|c| (*c, outbox::PROVIDER, provider.clone())).collect(),
        poster: Arc::new(connections.clone()),
        aws: None,
    }
}

async fn aws_adapters(aws: &AwsBackend, outbox: &Outbox, management_endpoint: &str, faults: &Faults, clock: Arc<dyn Clock>) -> anyhow::Result<Adapters> {
    let sdk = &aws.sdk;
    let with_interceptor = |mut b: aws_sdk_sqs::config::Builder| {
        if let Some(i) = &aws.interceptor {
            b = b.interceptor(i.clone());
        }
        b
    };
    let sqs = aws_sdk_sqs::Client::from_conf(with_interceptor(aws_sdk_sqs::config::Builder::from(sdk)).build());
    let mut dynamo_conf = aws_sdk_dynamodb::config::Builder::from(sdk);
    let mut ses_conf = aws_sdk_sesv2::config::Builder::from(sdk);
    let mut sns_conf = aws_sdk_sns::config::Builder::from(sdk);
    let mut apigw_conf = aws_sdk_apigatewaymanagement::config::Builder::from(sdk).endpoint_url(management_endpoint);
    if let Some(i) = &aws.interceptor {
        dynamo_conf = dynamo_conf.interceptor(i.clone());
        ses_conf = ses_conf.interceptor(i.clone());
        sns_conf = sns_conf.interceptor(i.clone());
        apigw_conf = apigw_conf.interceptor(i.clone());
    }
    let dynamodb = aws_sdk_dynamodb::Client::from_conf(dynamo_conf.build());
    let ses = aws_sdk_sesv2::Client::from_conf(ses_conf.build());
    let sns = aws_sdk_sns::Client::from_conf(sns_conf.build());
    let apigw = aws_sdk_apigatewaymanagement::Client::from_conf(apigw_conf.build());

    let mut push_application = aws.push_fcm_application_arn.clone();
    let (queues, tables) = match &aws.resources {
        AwsResources::Existing { queue_url_prefix, tables } => (QueueDirectory::from_prefix(queue_url_prefix), tables.clone()),
        AwsResources::Provision { template, stack_name, parameters } => {
            let options = crate::provision::ProvisionOptions { stack_name: stack_name.clone(), parameters: parameters.clone() };
            let provisioned = crate::provision::provision(sdk, template, &options).await.context("provisioning from template.yaml")?;
            // A fresh emulator knows no sender identity and no push platform application.
            aws_sdk_sesv2::Client::new(sdk).create_email_identity().email_identity(&aws.email_from).send().await.context("creating the SES identity")?;
            if push_application.is_none() {
                let created = aws_sdk_sns::Client::new(sdk)
                    .create_platform_application()
                    .name(format!("{stack_name}-fcm"))
                    .platform("GCM")
                    .attributes("PlatformCredential", "local-stack-placeholder")
                    .send()
                    .await
                    .context("creating the FCM platform application")?;
                push_application = created.platform_application_arn;
            }
            (provisioned.queues, provisioned.tables)
        }
    };
    let queue = Arc::new(SqsQueue::new(sqs, queues.clone()));
    let store = Arc::new(DynamoStore::new(dynamodb, tables.clone()));
    let outbox_provider: Arc<dyn ChannelSender> = Arc::new(OutboxSender::new(outbox.clone()));
    let (ports, receiver, (unfaulted_notifications, unfaulted_suppressions)) = ports_over(queue, store, faults, clock);
    Ok(Adapters {
        ports,
        unfaulted_notifications,
        unfaulted_suppressions,
        receiver,
        senders: vec![
            (Channel::Email, ses::PROVIDER, Arc::new(SesEmailSender::new(ses, aws.email_from.clone(), None))),
            (Channel::Sms, sns::SMS_PROVIDER, Arc::new(SnsSmsSender::new(sns.clone(), aws.sms_sender_id.clone()))),
            (Channel::Push, sns::PUSH_PROVIDER, Arc::new(SnsPushSender::new(sns, push_application, None))),
            // Chat and webhooks are HTTP APIs, not AWS: the outbox, unless their settings are given.
            (Channel::Whatsapp, outbox::PROVIDER, outbox_provider.clone()),
            (Channel::Telegram, outbox::PROVIDER, outbox_provider.clone()),
            (Channel::Webhook, outbox::PROVIDER, outbox_provider),
        ],
        poster: Arc::new(ApiGatewayConnectionPoster::new(apigw)),
        aws: Some(AwsResourcesInUse { queues, tables }),
    })
}

/// What tests and the chaos run may look at directly, without the API and without injected faults.
#[derive(Clone)]
pub struct Inspect {
    pub receiver: Arc<dyn QueueReceiver>,
    pub notifications: Arc<dyn NotificationStore>,
    /// Suppressed addresses (a test suppresses one here, as the feedback function would).
    pub suppressions: Arc<dyn SuppressionStore>,
    pub poll_stats: PollStats,
}

impl LocalStack {
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Waits until no handler has been given a record for `quiet` (every queue drained, nothing
    /// coming back from a retry in that time), or `timeout` passes; answers whether it went quiet.
    /// Tests wait on this instead of sleeping before they count what was sent.
    pub async fn wait_idle(&self, quiet: std::time::Duration, timeout: std::time::Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut last = self.inspect.poll_stats.batches();
        let mut since = tokio::time::Instant::now();
        while tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            let now = self.inspect.poll_stats.batches();
            if now != last {
                (last, since) = (now, tokio::time::Instant::now());
            } else if since.elapsed() >= quiet {
                return true;
            }
        }
        false
    }

    /// Stops accepting requests, lets the pollers finish their batches, and returns.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        let _ = self.server.await;
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

fn batch_handler<D, F>(deps: Arc<D>, queue: Arc<dyn BatchQueue>, handle: F) -> BatchHandler
where
    D: Send + Sync + 'static,
    F: for<'a> Fn(&'a D, shared::handlers::sqs_batch::Record<'a>) -> futures::future::BoxFuture<'a, shared::handlers::sqs_batch::RecordOutcome>
        + Send
        + Sync
        + Copy
        + 'static,
{
    Arc::new(move |event| {
        let deps = deps.clone();
        let queue = queue.clone();
        async move { process_batch(&event, queue.as_ref(), |record| handle(&deps, record)).await }.boxed()
    })
}

pub async fn start(config: Config) -> anyhow::Result<LocalStack> {
    // First, so that everything the handlers record from here on is counted.
    let metrics = crate::metrics::recorder();
    let catalog = Arc::new(Catalog::load(&config.catalog_dir).with_context(|| "loading the event catalog")?);
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let outbox = Outbox::new(config.outbox_dir.clone()).keeping(config.retention.outbox);
    let ledger = SendLedger::keeping(config.retention.outbox);
    let connections = MemoryConnectionPoster::default();
    let faults = Faults::new(config.faults.clone(), config.faults_seed);
    for channel in &config.fail_channels {
        faults.set_failing(*channel, true);
    }
    // Bind first: on the AWS backend the push sender calls this server's @connections API.
    let listener = tokio::net::TcpListener::bind(config.addr).await.with_context(|| format!("binding {}", config.addr))?;
    let addr = listener.local_addr()?;
    let a = match &config.backend {
        Backend::Memory => memory_adapters(&config, &outbox, &connections, &faults, clock.clone()),
        Backend::Aws(aws) => aws_adapters(aws, &outbox, &format!("http://{addr}"), &faults, clock.clone()).await?,
    };

    let tokens = Arc::new(WsTokens::new(&config.ws_token_secret, config.ws_token_ttl).map_err(anyhow::Error::msg)?);
    // The key printed at start (and used by tests): the first configured key, without its tenant.
    let api_key = config.api_keys.first().map(|k| k.split_once('=').map_or(k.as_str(), |(_, key)| key).to_owned()).unwrap_or_else(shared::auth::api_keys::generate_key);
    let mut keys = config.api_keys.clone();
    if keys.is_empty() {
        keys.push(api_key.clone());
    }
    // Configured keys, and (as deployed) the key directory of the backend's store.
    let api_keys = Arc::new(ApiKeys::from_config(&keys.join(","), "").map_err(anyhow::Error::msg)?.with_directory(a.ports.keys.clone()));
    let mut settings = config.settings();
    // One-click unsubscribe links point at this server, signed with the key derived from the
    // user-token secret, as on Lambda.
    let unsubscribe_tokens = Arc::new(
        shared::auth::UnsubscribeTokens::from_user_token_secret(&config.ws_token_secret, shared::auth::unsubscribe::DEFAULT_UNSUBSCRIBE_TTL)
            .map_err(anyhow::Error::msg)?,
    );
    settings.unsubscribe = Some(Arc::new(
        shared::auth::UnsubscribeLinks::new(unsubscribe_tokens.as_ref().clone(), &format!("http://{addr}")).map_err(anyhow::Error::msg)?,
    ));
    let delivery_retry = config.delivery_retry();

    // Every function's dependencies, built as its Lambda main builds them.
    let ports = &a.ports;
    let ingest = Arc::new(wiring::ingest(ports, catalog.clone(), &settings));
    let query = Arc::new(wiring::queries(ports, catalog.clone(), tokens.clone(), a.poster.clone(), &settings));
    let unsubscribe = Arc::new(wiring::unsubscribe(ports, unsubscribe_tokens));
    let erasure = Arc::new(wiring::erasure(ports, catalog.clone(), &settings));
    let ws = Arc::new(wiring::ws(ports, tokens.clone()));
    let router = Arc::new(wiring::router(ports, catalog.clone(), &settings));
    let deferred = Arc::new(wiring::scheduler(ports, &settings));
    let dead_letter = Arc::new(wiring::dead_letter(ports, catalog.clone(), &settings));
    let fanout: Arc<dyn ChannelSender> = Arc::new(WebSocketFanout { connections: ports.connections.clone(), poster: a.poster.clone(), clock: clock.clone() });

    // The event source mappings: which function consumes which queue.
    let mut mappings = Vec::new();
    let n = config.pollers_per_queue;
    let queue = || ports.queue.clone();
    // Each channel's provider, composed once (one circuit breaker per provider for both lanes).
    let composition = crate::providers::Composition {
        http: &config.providers,
        faults: &faults,
        ledger: &ledger,
        limiter: ports.rate_limits.clone(),
        rates: &config.provider_rates,
        clock: clock.clone(),
    };
    let mut channel_senders = std::collections::HashMap::new();
    for channel in Channel::ALL {
        let (name, default) = match channel {
            Channel::Websocket => (shared::handlers::ws::PROVIDER, fanout.clone()),
            _ => a.senders.iter().find(|(c, _, _)| *c == channel).map(|(_, n, s)| (*n, s.clone())).context("a provider per channel")?,
        };
        channel_senders.insert(channel, crate::providers::compose(channel, default, name, &composition)?);
    }
    for lane in Lane::ALL {
        // The router consumes its dead-letter queue too: an accepted event is never left there.
        for events in [events_queue(lane), dead_letter_queue_of(&events_queue(lane))] {
            let handler = batch_handler(router.clone(), queue(), |d, r| handle_route_record(d, r).boxed());
            mappings.push(Mapping { queue: events, handler, concurrency: n });
        }
        for channel in Channel::ALL {
            let provider = channel_senders[&channel].clone();
            let deps = Arc::new(wiring::sender(ports, catalog.clone(), &settings, provider, delivery_retry.clone()));
            let handler = batch_handler(deps, queue(), |d, r| handle_send_record(d, r).boxed());
            mappings.push(Mapping { queue: send_queue(channel, lane), handler, concurrency: n });
            let handler = batch_handler(dead_letter.clone(), queue(), |d, r| handle_dead_letter_record(d, r).boxed());
            mappings.push(Mapping { queue: dead_letter_queue_of(&send_queue(channel, lane)), handler, concurrency: 1 });
        }
    }
    // Status callbacks, POSTed signed like webhooks (the local policy: loopback allowed).
    let callback_secret = config.providers.webhook_secret.clone().unwrap_or_else(WebhookSigner::generate_secret);
    let signer = WebhookSigner::from_stored(&callback_secret).map_err(|e| anyhow::anyhow!("NOTIFY_WEBHOOK_SECRET: {e}"))?;
    let callback_deps = Arc::new(CallbackDeps {
        poster: Arc::new(WebhookSender::new(signer, TargetPolicy::local(), shared::adapters::http::client::DEFAULT_TIMEOUT)),
        retry: delivery_retry.clone(),
    });
    for callbacks_queue in [CALLBACKS_QUEUE.to_owned(), dead_letter_queue_of(CALLBACKS_QUEUE)] {
        let handler = batch_handler(callback_deps.clone(), queue(), |d, r| handle_callback_record(d, r).boxed());
        mappings.push(Mapping { queue: callbacks_queue, handler, concurrency: 1 });
    }
    for deferred_queue in [DEFERRED_QUEUE.to_owned(), dead_letter_queue_of(DEFERRED_QUEUE)] {
        let handler = batch_handler(deferred.clone(), queue(), |d, r| handle_deferred_record(d, r).boxed());
        mappings.push(Mapping { queue: deferred_queue, handler, concurrency: 1 });
    }

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let poll_stats = PollStats::default();
    let mut tasks: Vec<JoinHandle<()>> =
        mappings.into_iter().flat_map(|m| event_source::spawn(m, a.receiver.clone(), poll_stats.clone(), shutdown_rx.clone())).collect();
    if let Some(handle) = &metrics {
        tasks.push(crate::metrics::spawn_upkeep(handle.clone(), shutdown_rx.clone()));
    }

    let app: Router = Router::new()
        .merge(shared::http::ingest_routes(ingest, api_keys.clone()))
        .merge(shared::http::api_routes(query, api_keys.clone()))
        .merge(shared::http::erasure_routes(erasure, api_keys.clone()))
        .merge(shared::http::unsubscribe_routes(unsubscribe))
        .merge(crate::dev::routes(outbox.clone()).layer(axum::middleware::from_fn_with_state(api_keys.clone(), shared::http::require_api_key)))
        .merge(websocket::routes(WsState { deps: ws, poster: connections.clone() }))
        // What only this machine (or a holder of an API key) may reach: posting to or closing any
        // socket, and the counters.
        .merge(
            crate::management::routes(connections.clone())
                .merge(crate::metrics::routes(metrics))
                .layer(axum::middleware::from_fn_with_state(api_keys.clone(), crate::management::loopback_or_api_key)),
        )
        .merge(shared::http::common_routes());
    let mut server_shutdown = shutdown_rx.clone();
    let server = tokio::spawn(async move {
        let served = axum::serve(listener, app.into_make_service_with_connect_info::<std::net::SocketAddr>())
            .with_graceful_shutdown(async move {
                let _ = server_shutdown.wait_for(|stop| *stop).await;
            })
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "server stopped");
        }
    });
    tracing::info!(%addr, backend = ?config.backend, event_types = catalog.event_types().count(), "local stack up");
    let inspect = Inspect {
        receiver: a.receiver.clone(),
        notifications: a.unfaulted_notifications.clone(),
        suppressions: a.unfaulted_suppressions.clone(),
        poll_stats,
    };
    let callbacks = settings.callbacks(&a.ports);
    Ok(LocalStack { addr, api_key, outbox, ledger, faults, connections, aws: a.aws, inspect, callbacks, shutdown: shutdown_tx, tasks, server })
}
