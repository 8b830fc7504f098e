//! Builds the local stack: in-process adapters, the handlers of every function over them, the
//! event source mappings between queues and handlers, and the HTTP/WebSocket server.

use anyhow::Context;
use axum::Router;
use futures::FutureExt;
use shared::adapters::memory::queue::MemoryQueue;
use shared::adapters::memory::store::MemoryStore;
use shared::adapters::memory::{MemoryConnectionPoster, Outbox, OutboxSender};
use shared::auth::{ApiKeys, WsTokens};
use shared::catalog::Catalog;
use shared::domain::{Channel, Lane};
use shared::handlers::dead_letter::{DeadLetterDeps, handle_dead_letter_record};
use shared::handlers::deferred::{DeferredDeps, handle_deferred_record};
use shared::handlers::fallback::FallbackDeps;
use shared::handlers::ingest::{IngestDeps, IngestSettings};
use shared::handlers::queries::QueryDeps;
use shared::handlers::router::{RouterDeps, handle_route_record};
use shared::handlers::send::{SendDeps, handle_send_record};
use shared::handlers::sqs_batch::{RetryPolicy, process_batch};
use shared::handlers::ws::{WebSocketFanout, WsDeps};
use shared::ports::{ChannelSender, Clock, QueueReceiver, SystemClock};
use shared::topology::{DEFERRED_QUEUE, TopologySettings, all_queues, dead_letter_queue_of, events_queue, send_queue};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::event_source::{self, BatchHandler, Mapping};
use crate::websocket::{self, WsState};

/// A running local stack.
pub struct LocalStack {
    pub addr: SocketAddr,
    /// A key that `Authorization: Bearer` accepts.
    pub api_key: String,
    pub outbox: Outbox,
    /// The local providers; `set_failing` makes a channel fail.
    pub providers: OutboxSender,
    pub queues: Arc<MemoryQueue>,
    pub store: Arc<MemoryStore>,
    pub connections: MemoryConnectionPoster,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    server: JoinHandle<()>,
}

impl LocalStack {
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
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

fn batch_handler<D, F>(deps: Arc<D>, visibility: Arc<MemoryQueue>, handle: F) -> BatchHandler
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
        let visibility = visibility.clone();
        async move { process_batch(&event, visibility.as_ref(), |record| handle(&deps, record)).await }.boxed()
    })
}

pub async fn start(config: Config) -> anyhow::Result<LocalStack> {
    let catalog = Arc::new(Catalog::load(&config.catalog_dir).with_context(|| "loading the event catalog")?);
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let topology = TopologySettings { visibility_timeout: config.visibility_timeout, max_receive_count: config.max_receive_count };
    let queues = Arc::new(MemoryQueue::new(&all_queues(&topology)));
    let store = Arc::new(MemoryStore::new());
    let outbox = Outbox::new(config.outbox_dir.clone());
    let providers = OutboxSender::new(outbox.clone());
    for channel in &config.fail_channels {
        providers.set_failing(*channel, true);
    }
    let connections = MemoryConnectionPoster::default();
    let tokens = Arc::new(WsTokens::new(&config.ws_token_secret, config.ws_token_ttl).map_err(anyhow::Error::msg)?);
    let api_key = config.api_keys.first().cloned().unwrap_or_else(shared::auth::api_keys::generate_key);
    let mut keys = config.api_keys.clone();
    if keys.is_empty() {
        keys.push(api_key.clone());
    }
    let api_keys = Arc::new(ApiKeys::from_config(&keys.join(","), "").map_err(anyhow::Error::msg)?);
    let retry = RetryPolicy { base: config.retry_base, max: config.retry_max };

    let fallback = || FallbackDeps { catalog: catalog.clone(), events: store.clone(), queue: queues.clone() };
    let ingest = Arc::new(IngestDeps {
        catalog: catalog.clone(),
        idempotency: store.clone(),
        events: store.clone(),
        queue: queues.clone(),
        clock: clock.clone(),
        settings: IngestSettings::default(),
    });
    let query = Arc::new(QueryDeps {
        events: store.clone(),
        notifications: store.clone(),
        profiles: store.clone(),
        tokens: tokens.clone(),
        clock: clock.clone(),
    });
    let ws = Arc::new(WsDeps { connections: store.clone(), tokens: tokens.clone(), clock: clock.clone() });
    let router = Arc::new(RouterDeps {
        catalog: catalog.clone(),
        profiles: store.clone(),
        notifications: store.clone(),
        queue: queues.clone(),
        clock: clock.clone(),
        retry_after: config.retry_base,
    });
    let deferred = Arc::new(DeferredDeps { notifications: store.clone(), queue: queues.clone(), clock: clock.clone(), retry_after: config.retry_base });
    let dead_letter = Arc::new(DeadLetterDeps {
        notifications: store.clone(),
        queue: queues.clone(),
        fallback: fallback(),
        clock: clock.clone(),
        retry_after: config.retry_base,
    });
    let fanout: Arc<dyn ChannelSender> =
        Arc::new(WebSocketFanout { connections: store.clone(), poster: Arc::new(connections.clone()), clock: clock.clone() });
    let sender_deps = |sender: Arc<dyn ChannelSender>| {
        Arc::new(SendDeps {
            notifications: store.clone(),
            sender,
            fallback: fallback(),
            clock: clock.clone(),
            retry: retry.clone(),
            lease: Duration::from_secs(20).min(config.visibility_timeout),
        })
    };

    // The event source mappings: which function consumes which queue.
    let mut mappings = Vec::new();
    let n = config.pollers_per_queue;
    for lane in Lane::ALL {
        let handler = batch_handler(router.clone(), queues.clone(), |d, r| handle_route_record(d, r).boxed());
        mappings.push(Mapping { queue: events_queue(lane), handler, concurrency: n });
        for channel in Channel::ALL {
            let sender: Arc<dyn ChannelSender> = if channel == Channel::Websocket { fanout.clone() } else { Arc::new(providers.clone()) };
            let handler = batch_handler(sender_deps(sender), queues.clone(), |d, r| handle_send_record(d, r).boxed());
            mappings.push(Mapping { queue: send_queue(channel, lane), handler, concurrency: n });
            let handler = batch_handler(dead_letter.clone(), queues.clone(), |d, r| handle_dead_letter_record(d, r).boxed());
            mappings.push(Mapping { queue: dead_letter_queue_of(&send_queue(channel, lane)), handler, concurrency: 1 });
        }
    }
    let handler = batch_handler(deferred.clone(), queues.clone(), |d, r| handle_deferred_record(d, r).boxed());
    mappings.push(Mapping { queue: DEFERRED_QUEUE.to_owned(), handler, concurrency: 1 });

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let receiver: Arc<dyn QueueReceiver> = queues.clone();
    let tasks: Vec<JoinHandle<()>> = mappings.into_iter().flat_map(|m| event_source::spawn(m, receiver.clone(), shutdown_rx.clone())).collect();

    let app: Router = Router::new()
        .merge(shared::http::ingest_routes(ingest, api_keys.clone()))
        .merge(shared::http::api_routes(query, api_keys.clone()))
        .merge(crate::dev::routes(outbox.clone()).layer(axum::middleware::from_fn_with_state(api_keys.clone(), shared::http::require_api_key)))
        .merge(websocket::routes(WsState { deps: ws, poster: connections.clone() }))
        .merge(shared::http::common_routes());
    let listener = tokio::net::TcpListener::bind(config.addr).await.with_context(|| format!("binding {}", config.addr))?;
    let addr = listener.local_addr()?;
    let mut server_shutdown = shutdown_rx.clone();
    let server = tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = server_shutdown.wait_for(|stop| *stop).await;
            })
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "server stopped");
        }
    });
    tracing::info!(%addr, event_types = catalog.event_types().count(), "local stack up");
    Ok(LocalStack { addr, api_key, outbox, providers, queues, store, connections, shutdown: shutdown_tx, tasks, server })
}
