//! What the Lambda entry points in `functions/` have in common: reading and checking their
//! configuration at cold start, building the AWS clients and adapters once, and translating
//! API Gateway WebSocket events to and from the `ws` handlers.
//!
//! A `main.rs` installs logs and metrics ([`telemetry::init_lambda`](crate::telemetry::init_lambda)),
//! reads everything it needs from the environment (so a missing variable fails the cold start
//! with its name before the runtime, or any AWS call, is reached), then loads the `SdkConfig`,
//! builds its adapters and handler dependencies, and lends references to them into the handler
//! it gives the telemetry's `run` (or `run_http`), which flushes the invocation's metrics once
//! the handler has answered. SQS functions hand each batch to
//! [`process_batch`](crate::handlers::sqs_batch::process_batch), which parses every record
//! itself and answers with the `SqsBatchResponse` of the records to retry.

use aws_config::SdkConfig;
use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use aws_lambda_events::encodings::Body;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::adapters::aws::{ApiGatewayConnectionPoster, DynamoStore, QueueDirectory, SqsQueue, TableNames};
use crate::auth::{ApiKeys, UnsubscribeLinks, UnsubscribeTokens, WsTokens};
use crate::catalog::{Catalog, CatalogError};
use crate::config::{ConfigError, Env, vars};
use crate::handlers::send::handle_send_record;
use crate::handlers::ingest::IngestSettings;
use crate::providers::config::{ProviderSpec, default_providers, parse_providers};
use crate::providers::ProviderLink;
use crate::wiring::{self, Ports, Settings};
use crate::handlers::sqs_batch::{RetryPolicy, process_batch};
use crate::ports::SystemClock;
use crate::domain::Channel;
use aws_lambda_events::event::sqs::SqsEvent;
use crate::handlers::ws::{self, ConnectError, WsDeps};

// ---------------------------------------------------------------------------------------------
// Cold start: configuration.

/// WebSocket token lifetime when `NOTIFY_WS_TOKEN_TTL_SECONDS` is unset.
pub const DEFAULT_WS_TOKEN_TTL: Duration = Duration::from_secs(900);

/// Why a function could not start. `main` returns it before `lambda_runtime::run`, so Lambda
/// reports an init error and the log's last line says which variable to fix.
#[derive(thiserror::Error)]
pub enum StartupError {
    /// A variable is unset, or set to something unusable; the message names it.
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot load the event catalog (from {dir} when set, else the embedded one): {0}", dir = vars::CATALOG_DIR)]
    Catalog(#[from] CatalogError),
    /// The reason never quotes the secret.
    #[error("environment variable {name} is not a usable secret: {reason}")]
    Secret { name: &'static str, reason: String },
    /// Another metrics recorder was installed first.
    #[error("cannot install the metrics recorder: {0}")]
    Metrics(String),
}

/// `main` returning `Err` prints the error's `Debug`: make that the sentence naming the variable
/// (`Error: environment variable NOTIFY_QUEUE_URL_PREFIX is not set`), not an enum dump.
impl std::fmt::Debug for StartupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

/// A variable the function cannot run without.
pub fn required(env: &Env, name: &'static str) -> Result<String, StartupError> {
    Ok(env.required(name)?)
}

/// A duration in milliseconds, `default` when unset.
pub fn millis(env: &Env, name: &'static str, default: Duration) -> Result<Duration, StartupError> {
    Ok(Duration::from_millis(env.number(name, default.as_millis() as u64)?))
}

/// `NOTIFY_QUEUE_URL_PREFIX` + logical name for every queue of the topology.
pub fn queue_directory(env: &Env) -> Result<QueueDirectory, StartupError> {
    Ok(QueueDirectory::from_prefix(&env.required(vars::QUEUE_URL_PREFIX)?))
}

/// `NOTIFY_CATALOG_DIR` when set, else the catalog compiled into the binary.
pub fn catalog(env: &Env) -> Result<Arc<Catalog>, StartupError> {
    Ok(Arc::new(Catalog::from_env(env)?))
}

/// A retry policy: `defaults`, with `NOTIFY_RETRY_BASE_MS` (the first delay),
/// `NOTIFY_RETRY_MAX_MS` (the longest) and `NOTIFY_RETRY_MAX_ATTEMPTS` (provider attempts, for
/// senders) overriding it where set. Each function has its own environment, so a send
/// function's values are its channel's.
pub fn retry_policy(env: &Env, defaults: RetryPolicy) -> Result<RetryPolicy, StartupError> {
    let base = millis(env, vars::RETRY_BASE_MS, defaults.base)?;
    let max = millis(env, vars::RETRY_MAX_MS, defaults.max)?;
    let max_attempts = env.number(vars::RETRY_MAX_ATTEMPTS, u64::from(defaults.max_attempts))?;
    if base.is_zero() {
        return Err(ConfigError::Invalid { name: vars::RETRY_BASE_MS, reason: "must be at least 1".into() }.into());
    }
    if max < base {
        return Err(ConfigError::Invalid { name: vars::RETRY_MAX_MS, reason: format!("must not be less than {} ({})", vars::RETRY_BASE_MS, base.as_millis()) }.into());
    }
    let max_attempts = u32::try_from(max_attempts).ok().filter(|n| *n >= 1).ok_or_else(|| ConfigError::Invalid {
        name: vars::RETRY_MAX_ATTEMPTS,
        reason: "must be a whole number from 1 to 4294967295".into(),
    })?;
    Ok(RetryPolicy { base, max, max_attempts })
}

/// The settings of the router, scheduler and dead-letter handler (and the senders' store and
/// queue hiccups): [`RetryPolicy::PIPELINE`] with the environment's overrides.
pub fn settings(env: &Env) -> Result<Settings, StartupError> {
    let pipeline_retry = retry_policy(env, RetryPolicy::PIPELINE)?;
    Ok(Settings {
        pipeline_retry: RetryPolicy { max_attempts: RetryPolicy::PIPELINE.max_attempts, ..pipeline_retry },
        status_callback_url: status_callback_url(env)?,
        ingest: IngestSettings { rate_per_key: ingest_rate_per_key(env)?, ..IngestSettings::default() },
        cors_origins: cors_origins(env)?,
        ..Settings::default()
    })
}

/// `NOTIFY_CORS_ORIGINS`: comma-separated origins (`https://app.example.com`) whose pages may
/// call `/v1/me/...`; none when unset. Each must be a scheme and host (and port), nothing more.
pub fn cors_origins(env: &Env) -> Result<Vec<String>, StartupError> {
    let raw = env.optional(vars::CORS_ORIGINS).unwrap_or_default();
    let origins: Vec<String> = raw.split(',').map(str::trim).filter(|o| !o.is_empty()).map(str::to_owned).collect();
    for origin in &origins {
        let ok = (origin.starts_with("https://") || origin.starts_with("http://"))
            && !origin.trim_start_matches("https://").trim_start_matches("http://").contains(['/', '*', ' '])
            && !origin.ends_with("://");
        if !ok {
            return Err(ConfigError::Invalid { name: vars::CORS_ORIGINS, reason: format!("{origin:?} is not an origin such as https://app.example.com") }.into());
        }
    }
    Ok(origins)
}

/// `NOTIFY_INGEST_RATE_PER_KEY`: events per second per API key; unset or 0: unlimited.
pub fn ingest_rate_per_key(env: &Env) -> Result<Option<u32>, StartupError> {
    let rate = env.number(vars::INGEST_RATE_PER_KEY, 0)?;
    let rate = u32::try_from(rate).map_err(|_| ConfigError::Invalid { name: vars::INGEST_RATE_PER_KEY, reason: "too large".into() })?;
    Ok((rate > 0).then_some(rate))
}

/// `NOTIFY_STATUS_CALLBACK_URL`, an http(s) URL, when set.
pub fn status_callback_url(env: &Env) -> Result<Option<String>, StartupError> {
    match env.optional(vars::STATUS_CALLBACK_URL) {
        Some(url) if !crate::domain::profile::is_webhook_url(&url) => {
            Err(ConfigError::Invalid { name: vars::STATUS_CALLBACK_URL, reason: "must be an http(s) URL".into() }.into())
        }
        url => Ok(url),
    }
}

/// The CloudWatch namespace of the function's metrics: `NOTIFY_METRICS_NAMESPACE`, default
/// `Notify`. CloudWatch's rules are checked here, so a typo fails the cold start instead of
/// every metric silently going nowhere: at most 255 of `0-9A-Za-z . - _ / # :` and space, not
/// beginning with `AWS/`.
pub fn metrics_namespace(env: &Env) -> Result<String, StartupError> {
    let Some(namespace) = env.optional(vars::METRICS_NAMESPACE) else {
        return Ok(crate::metrics::DEFAULT_NAMESPACE.to_owned());
    };
    let invalid = |reason: &str| StartupError::from(ConfigError::Invalid { name: vars::METRICS_NAMESPACE, reason: reason.to_owned() });
    if namespace.len() > 255 {
        return Err(invalid("a CloudWatch namespace is at most 255 characters"));
    }
    if !namespace.chars().all(|c| c.is_ascii_alphanumeric() || ".-_/#: ".contains(c)) {
        return Err(invalid("a CloudWatch namespace holds only 0-9A-Za-z, `.`, `-`, `_`, `/`, `#`, `:` and spaces"));
    }
    if namespace.starts_with("AWS/") {
        return Err(invalid("namespaces beginning with AWS/ are reserved for AWS services"));
    }
    Ok(namespace)
}

/// The DynamoDB tables, each named by its own variable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Table {
    Idempotency,
    Events,
    Notifications,
    Users,
    Connections,
    Suppressions,
    RateLimits,
    ApiKeys,
    DeadLetters,
}

impl Table {
    pub const fn var(self) -> &'static str {
        match self {
            Table::Idempotency => vars::IDEMPOTENCY_TABLE,
            Table::Events => vars::EVENTS_TABLE,
            Table::Notifications => vars::NOTIFICATIONS_TABLE,
            Table::Users => vars::USERS_TABLE,
            Table::Connections => vars::CONNECTIONS_TABLE,
            Table::Suppressions => vars::SUPPRESSIONS_TABLE,
            Table::RateLimits => vars::RATE_LIMITS_TABLE,
            Table::ApiKeys => vars::API_KEYS_TABLE,
            Table::DeadLetters => vars::DEAD_LETTERS_TABLE,
        }
    }
}

/// The physical names of the tables a function `uses`, each required.
///
/// The others are left as empty strings, on purpose: a function's role grants only its own
/// tables and its environment names only those. DynamoDB rejects an empty table name
/// (`ValidationException`), so a handler reaching a table its function was not wired for fails
/// loudly on the first call instead of touching anything.
pub fn table_names(env: &Env, uses: &[Table]) -> Result<TableNames, StartupError> {
    let name = |table: Table| if uses.contains(&table) { env.required(table.var()) } else { Ok(String::new()) };
    Ok(TableNames {
        idempotency: name(Table::Idempotency)?,
        events: name(Table::Events)?,
        notifications: name(Table::Notifications)?,
        users: name(Table::Users)?,
        connections: name(Table::Connections)?,
        suppressions: name(Table::Suppressions)?,
        rate_limits: name(Table::RateLimits)?,
        api_keys: name(Table::ApiKeys)?,
        dead_letters: name(Table::DeadLetters)?,
    })
}

/// The API's keys: the key directory table `NOTIFY_API_KEYS_TABLE` (as deployed: every tenant's
/// keys, managed with `notify-keys`), hashes from `NOTIFY_API_KEY_HASHES` and plain keys from
/// `NOTIFY_API_KEYS` (local use), each `tenant=`-prefixed or of tenant `default`. At least one
/// source is required: an API nobody can call is a deployment mistake, reported at cold start.
pub fn api_keys(env: &Env, aws: &AwsClients) -> Result<ApiKeys, StartupError> {
    let plain = env.optional(vars::API_KEYS).unwrap_or_default();
    let hashes = env.optional(vars::API_KEY_HASHES).unwrap_or_default();
    let mut keys = ApiKeys::from_config(&plain, &hashes).map_err(|reason| ConfigError::Invalid { name: vars::API_KEY_HASHES, reason })?;
    if let Some(table) = env.optional(vars::API_KEYS_TABLE) {
        keys = keys.with_directory(aws.store(TableNames { api_keys: table, ..TableNames::default() }));
    }
    if keys.is_empty() {
        return Err(ConfigError::Missing(vars::API_KEY_HASHES).into());
    }
    Ok(keys)
}

/// The secret whose ARN the variable `var` holds, read from Secrets Manager (cold start only).
pub async fn secret(aws: &AwsClients, env: &Env, var: &'static str) -> Result<String, StartupError> {
    let arn = env.required(var)?;
    crate::secrets::read_secret(&aws.secrets, &arn).await.map_err(|e| StartupError::Secret { name: var, reason: e.to_string() })
}

/// The user-token signing key: `NOTIFY_WS_TOKEN_SECRET` when set (local use), else the Secrets
/// Manager secret `NOTIFY_WS_TOKEN_SECRET_ARN` names (as deployed).
pub async fn ws_token_secret(aws: &AwsClients, env: &Env) -> Result<String, StartupError> {
    match env.optional(vars::WS_TOKEN_SECRET) {
        Some(secret) => Ok(secret),
        None => secret(aws, env, vars::WS_TOKEN_SECRET_ARN).await,
    }
}

/// User tokens signed with `secret` (at least 32 bytes), valid for
/// `NOTIFY_WS_TOKEN_TTL_SECONDS` (default 900).
pub fn ws_tokens(env: &Env, secret: &str) -> Result<WsTokens, StartupError> {
    let ttl = env.number(vars::WS_TOKEN_TTL_SECONDS, DEFAULT_WS_TOKEN_TTL.as_secs())?;
    if ttl == 0 {
        return Err(ConfigError::Invalid { name: vars::WS_TOKEN_TTL_SECONDS, reason: "must be at least 1".into() }.into());
    }
    WsTokens::new(secret.as_bytes(), Duration::from_secs(ttl)).map_err(|reason| StartupError::Secret { name: vars::WS_TOKEN_SECRET, reason })
}

/// `NOTIFY_PUBLIC_BASE_URL`: the API's public http(s) address, where unsubscribe links point.
pub fn public_base_url(env: &Env) -> Result<String, StartupError> {
    let url = env.required(vars::PUBLIC_BASE_URL)?;
    if !crate::domain::profile::is_webhook_url(&url) {
        return Err(ConfigError::Invalid { name: vars::PUBLIC_BASE_URL, reason: "must be an http(s) URL such as https://api.example.com".into() }.into());
    }
    Ok(url)
}

/// Unsubscribe tokens, signed with the key derived from the user-token `secret` (see
/// `auth::unsubscribe`): no secret of their own.
pub fn unsubscribe_tokens(secret: &str) -> Result<UnsubscribeTokens, StartupError> {
    UnsubscribeTokens::from_user_token_secret(secret.as_bytes(), crate::auth::unsubscribe::DEFAULT_UNSUBSCRIBE_TTL)
        .map_err(|reason| StartupError::Secret { name: vars::WS_TOKEN_SECRET, reason })
}

/// The router's unsubscribe links: `{base_url}/v1/unsubscribe/{token}`.
pub fn unsubscribe_links(base_url: &str, secret: &str) -> Result<UnsubscribeLinks, StartupError> {
    UnsubscribeLinks::new(unsubscribe_tokens(secret)?, base_url).map_err(|reason| ConfigError::Invalid { name: vars::PUBLIC_BASE_URL, reason }.into())
}

/// For `ws-disconnect`, which neither mints nor verifies tokens but shares [`WsDeps`] with
/// `ws-connect`: a random key nothing else knows, so it needs no secret in its environment.
pub fn unused_ws_tokens() -> WsTokens {
    use rand::Rng;
    let key: [u8; 32] = rand::rng().random();
    // A 32-byte key is always accepted.
    WsTokens::new(&key, DEFAULT_WS_TOKEN_TTL).expect("a 32-byte key")
}

/// The platform applications of `send-push`: `NOTIFY_PUSH_FCM_APPLICATION_ARN` and/or
/// `NOTIFY_PUSH_APNS_APPLICATION_ARN`. A deployment may have neither (no mobile apps yet): the
/// function still starts, and each push job fails permanently with "no platform application
/// configured", which tries the event type's fallback channel, instead of every job waiting
/// for a cold start that can never succeed.
pub fn push_application_arns(env: &Env) -> Result<(Option<String>, Option<String>), StartupError> {
    let fcm = env.optional(vars::PUSH_FCM_APPLICATION_ARN);
    let apns = env.optional(vars::PUSH_APNS_APPLICATION_ARN);
    if fcm.is_none() && apns.is_none() {
        tracing::warn!(
            fcm = vars::PUSH_FCM_APPLICATION_ARN,
            apns = vars::PUSH_APNS_APPLICATION_ARN,
            "no SNS platform application configured: push notifications will fail over to their fallback channel"
        );
    }
    Ok((fcm, apns))
}

/// The WebSocket API's management endpoint, `https://{api-id}.execute-api.{region}.amazonaws.com/{stage}`.
pub fn ws_management_endpoint(env: &Env) -> Result<String, StartupError> {
    let endpoint = env.required(vars::WS_MANAGEMENT_ENDPOINT)?;
    if !(endpoint.starts_with("https://") || endpoint.starts_with("http://")) {
        return Err(ConfigError::Invalid { name: vars::WS_MANAGEMENT_ENDPOINT, reason: "must be an http(s) URL".into() }.into());
    }
    Ok(endpoint)
}

// ---------------------------------------------------------------------------------------------
// Cold start: clients and adapters.

/// The AWS clients, built once per cold start from the one `SdkConfig` (which honours
/// `AWS_ENDPOINT_URL` and `AWS_ENDPOINT_URL_<SERVICE>`). Building a client makes no call, so a
/// function that never uses one pays nothing for it.
#[derive(Clone, Debug)]
pub struct AwsClients {
    pub secrets: aws_sdk_secretsmanager::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub sesv2: aws_sdk_sesv2::Client,
    pub sns: aws_sdk_sns::Client,
}

impl AwsClients {
    pub fn new(sdk: &SdkConfig) -> Self {
        Self {
            secrets: aws_sdk_secretsmanager::Client::new(sdk),
            sqs: aws_sdk_sqs::Client::new(sdk),
            dynamodb: aws_sdk_dynamodb::Client::new(sdk),
            sesv2: aws_sdk_sesv2::Client::new(sdk),
            sns: aws_sdk_sns::Client::new(sdk),
        }
    }

    /// Every queue port (send, visibility) over SQS.
    pub fn queue(&self, directory: QueueDirectory) -> Arc<SqsQueue> {
        Arc::new(SqsQueue::new(self.sqs.clone(), directory))
    }

    /// Every store port over DynamoDB.
    pub fn store(&self, tables: TableNames) -> Arc<DynamoStore> {
        Arc::new(DynamoStore::new(self.dynamodb.clone(), tables))
    }
}

/// A secret a send function needs: the key its provider looks it up by, and its ARN.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretRef {
    pub key: String,
    pub arn: String,
}

/// The secret whose ARN the variable `var` holds, looked up by the variable's name.
pub fn secret_from_env(env: &Env, var: &'static str) -> Result<SecretRef, StartupError> {
    Ok(SecretRef { key: var.to_owned(), arn: env.required(var)? })
}

/// What a send function's `main` builds its provider from: the SDK, the clients, the store, and
/// the secrets it named (read from Secrets Manager at cold start).
pub struct SenderContext<'a> {
    pub sdk: &'a SdkConfig,
    pub aws: &'a AwsClients,
    pub store: &'a Arc<DynamoStore>,
    secrets: HashMap<String, String>,
}

impl SenderContext<'_> {
    /// The value of the secret named `key` (one of the [`SecretRef`]s given to
    /// [`serve_send_queues`]).
    pub fn secret(&self, key: &str) -> &str {
        self.secrets.get(key).map(String::as_str).unwrap_or_default()
    }
}

/// The whole of a send function (send-email, send-sms, send-push, ws-push, send-whatsapp,
/// send-telegram, send-webhook) but its provider. Its `main` reads its own variables first; this
/// reads what every sender shares (queue URLs, the notifications and events tables plus
/// `extra_tables`, the catalog, the channel's retry policy), then builds the clients once, reads
/// the `secrets`,
/// asks `sender` for the channel's provider,
/// and serves the channel's send queues with the shared send handler (claim, send, status,
/// fallback).
pub async fn serve_send_queues<S>(
    telemetry: crate::telemetry::LambdaTelemetry,
    env: &Env,
    channel: Channel,
    extra_tables: &[Table],
    secrets: Vec<SecretRef>,
    sender: S,
) -> Result<(), lambda_runtime::Error>
where
    S: FnOnce(&SenderContext<'_>) -> Result<Arc<dyn crate::ports::ChannelSender>, StartupError>,
{
    let directory = queue_directory(env)?;
    let tables = table_names(env, &[&[Table::Notifications, Table::Events], extra_tables].concat())?;
    let catalog = catalog(env)?;
    let retry = retry_policy(env, RetryPolicy::for_channel(channel))?;
    // Store and queue hiccups back off on the pipeline's schedule, not the provider's.
    let settings = Settings { status_callback_url: status_callback_url(env)?, ..Settings::default() };

    let sdk = crate::adapters::aws::sdk_config().await;
    let aws = AwsClients::new(&sdk);
    let mut values = HashMap::new();
    for SecretRef { key, arn } in secrets {
        let value = crate::secrets::read_secret(&aws.secrets, &arn).await.map_err(|e| StartupError::Secret { name: "a provider secret", reason: format!("{key}: {e}") })?;
        values.insert(key, value);
    }
    let store = aws.store(tables);
    let queue = aws.queue(directory);
    let provider = sender(&SenderContext { sdk: &sdk, aws: &aws, store: &store, secrets: values })?;
    let ports = Ports::over(queue.clone(), store, Arc::new(SystemClock));
    let deps = wiring::sender(&ports, catalog, &settings, provider, retry);

    let (deps, queue) = (&deps, queue.as_ref());
    telemetry
        .run(|event: lambda_runtime::LambdaEvent<SqsEvent>| async move {
            Ok::<_, lambda_runtime::Error>(process_batch(&event.payload, queue, |record| handle_send_record(deps, record)).await)
        })
        .await
}

/// The ports of a function that queues nothing (api, ws-connect, ws-disconnect): a queue
/// directory that knows no queue, so a handler reaching for one fails loudly (like the tables it
/// was not given) instead of touching anything.
pub fn ports_without_queues(aws: &AwsClients, tables: TableNames) -> Ports {
    Ports::over(aws.queue(QueueDirectory::new(Default::default())), aws.store(tables), Arc::new(SystemClock))
}

/// A channel's providers: `NOTIFY_PROVIDERS` (checked here, at cold start), else its AWS
/// provider alone.
pub fn providers(env: &Env, channel: Channel) -> Result<Vec<ProviderSpec>, StartupError> {
    match env.optional(vars::PROVIDERS) {
        None => Ok(default_providers(channel)),
        Some(text) => parse_providers(&text, channel).map_err(|reason| ConfigError::Invalid { name: vars::PROVIDERS, reason }.into()),
    }
}

/// The secrets the providers name, each looked up by its provider's name.
pub fn provider_secrets(specs: &[ProviderSpec]) -> Vec<SecretRef> {
    specs.iter().filter_map(|s| s.secret_arn.clone().map(|arn| SecretRef { key: s.provider.clone(), arn })).collect()
}

/// The channel's sender from its providers: each built by `build`, paced to its
/// `rate_per_second` through the rate-limits table, behind a failover in order (with a circuit
/// breaker each) when there are several.
pub fn compose_providers<B>(cx: &SenderContext<'_>, specs: &[ProviderSpec], build: B) -> Result<Arc<dyn crate::ports::ChannelSender>, StartupError>
where
    B: Fn(&ProviderSpec, &SenderContext<'_>) -> Result<Arc<dyn crate::ports::ChannelSender>, StartupError>,
{
    let links = specs
        .iter()
        .map(|spec| Ok(ProviderLink { name: spec.provider.clone(), sender: build(spec, cx)?, rate_per_second: spec.rate_per_second }))
        .collect::<Result<Vec<_>, StartupError>>()?;
    Ok(crate::providers::chain(links, cx.store.clone(), Arc::new(SystemClock)))
}

/// Posts to WebSocket connections through the stage's management endpoint.
pub fn connection_poster(sdk: &SdkConfig, management_endpoint: &str) -> ApiGatewayConnectionPoster {
    let config = aws_sdk_apigatewaymanagement::config::Builder::from(sdk).endpoint_url(management_endpoint).build();
    ApiGatewayConnectionPoster::new(aws_sdk_apigatewaymanagement::Client::from_conf(config))
}

// ---------------------------------------------------------------------------------------------
// API Gateway WebSocket routes `$connect` and `$disconnect`.

/// The connection the route is about.
pub fn connection_id(request: &ApiGatewayWebsocketProxyRequest) -> Option<&str> {
    request.request_context.connection_id.as_deref().filter(|id| !id.is_empty())
}

/// The `token` query string parameter of `$connect` (`wss://…/prod?token=…`).
pub fn connect_token(request: &ApiGatewayWebsocketProxyRequest) -> Option<&str> {
    request.query_string_parameters.first("token")
}

/// A bare answer to API Gateway. On `$connect` anything but 2xx refuses the upgrade and the
/// client sees the status; on `$disconnect` API Gateway ignores it.
pub fn proxy_response(status: u16, body: &str) -> ApiGatewayProxyResponse {
    let mut response = ApiGatewayProxyResponse::default();
    response.status_code = i64::from(status);
    response.body = Some(Body::Text(body.to_owned()));
    response
}

/// `$connect`: 200 with a valid token (the connection is recorded), 401 without one (the
/// upgrade is refused), 500 when the store is down (the client may try again).
pub async fn handle_ws_connect(deps: &WsDeps, request: &ApiGatewayWebsocketProxyRequest) -> ApiGatewayProxyResponse {
    let Some(connection_id) = connection_id(request) else {
        tracing::error!("$connect event without a connection id: is this function behind a WebSocket API?");
        return proxy_response(400, "bad request");
    };
    match ws::connect(deps, connection_id, connect_token(request)).await {
        Ok(_) => proxy_response(200, "connected"),
        Err(ConnectError::Unauthorized(why)) => {
            // Why (missing, expired, invalid), never the token itself.
            tracing::info!(connection_id, reason = %why, "websocket refused");
            proxy_response(401, "unauthorized")
        }
        Err(ConnectError::TooManyConnections { limit }) => {
            tracing::info!(connection_id, limit, "websocket refused: too many connections");
            proxy_response(429, "too many connections")
        }
        Err(ConnectError::Store(e)) => {
            tracing::error!(connection_id, error = %e, "could not record the connection");
            proxy_response(500, "unavailable")
        }
    }
}

/// `$disconnect`: forgets the connection, 200. Should the store be down, the record still
/// expires (TTL) and the push sender drops it on its first `GoneException`; the 500 is only
/// for the logs and metrics, API Gateway ignores it.
pub async fn handle_ws_disconnect(deps: &WsDeps, request: &ApiGatewayWebsocketProxyRequest) -> ApiGatewayProxyResponse {
    let Some(connection_id) = connection_id(request) else {
        tracing::error!("$disconnect event without a connection id: is this function behind a WebSocket API?");
        return proxy_response(400, "bad request");
    };
    match ws::disconnect(deps, connection_id).await {
        Ok(()) => proxy_response(200, "disconnected"),
        Err(e) => {
            tracing::error!(connection_id, error = %e, "could not forget the connection");
            proxy_response(500, "unavailable")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::memory::store::MemoryStore;
    use crate::domain::UserId;
    use crate::ports::{Clock, Connection, ConnectionStore, StoreError, SystemClock};
    use jiff::Timestamp;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    /// A `$connect` event as API Gateway sends it (trimmed to the fields that matter).
    fn connect_event(query: &str) -> ApiGatewayWebsocketProxyRequest {
        let json = format!(
            r#"{{
                "headers": {{"Host": "abc123.execute-api.eu-west-1.amazonaws.com", "Sec-WebSocket-Version": "13"}},
                "multiValueHeaders": {{"Host": ["abc123.execute-api.eu-west-1.amazonaws.com"]}},
                {query}
                "requestContext": {{
                    "routeKey": "$connect",
                    "eventType": "CONNECT",
                    "extendedRequestId": "X1",
                    "requestTime": "09/Feb/2025:10:00:00 +0000",
                    "messageDirection": "IN",
                    "stage": "prod",
                    "connectedAt": 1739095200000,
                    "requestTimeEpoch": 1739095200000,
                    "identity": {{"sourceIp": "203.0.113.7"}},
                    "requestId": "X1",
                    "domainName": "abc123.execute-api.eu-west-1.amazonaws.com",
                    "connectionId": "L0SM9cOFvHcCIhw=",
                    "apiId": "abc123"
                }},
                "isBase64Encoded": false
            }}"#
        );
        serde_json::from_str(&json).expect("a $connect event")
    }

    fn disconnect_event(connection_id: &str) -> ApiGatewayWebsocketProxyRequest {
        let json = format!(
            r#"{{
                "headers": {{"Host": "abc123.execute-api.eu-west-1.amazonaws.com"}},
                "multiValueHeaders": {{"Host": ["abc123.execute-api.eu-west-1.amazonaws.com"]}},
                "requestContext": {{
                    "routeKey": "$disconnect",
                    "disconnectStatusCode": 1001,
                    "eventType": "DISCONNECT",
                    "stage": "prod",
                    "connectedAt": 1739095200000,
                    "requestTimeEpoch": 1739095260000,
                    "identity": {{"sourceIp": "203.0.113.7"}},
                    "requestId": "X2",
                    "domainName": "abc123.execute-api.eu-west-1.amazonaws.com",
                    "connectionId": "{connection_id}",
                    "apiId": "abc123"
                }},
                "isBase64Encoded": false
            }}"#
        );
        serde_json::from_str(&json).expect("a $disconnect event")
    }

    fn deps(connections: Arc<dyn ConnectionStore>) -> WsDeps {
        WsDeps { connections, tokens: Arc::new(WsTokens::new(SECRET.as_bytes(), DEFAULT_WS_TOKEN_TTL).unwrap()), clock: Arc::new(SystemClock) }
    }

    fn token_for(deps: &WsDeps, user: &str) -> String {
        deps.tokens.mint(&UserId::parse(user).unwrap(), SystemClock.now()).0
    }

    fn text(response: &ApiGatewayProxyResponse) -> &str {
        match &response.body {
            Some(Body::Text(t)) => t,
            _ => "",
        }
    }

    struct DownStore;

    #[async_trait::async_trait]
    impl ConnectionStore for DownStore {
        async fn put_connection(&self, _: &Connection) -> Result<Option<i64>, StoreError> {
            Err(StoreError::Unavailable("ProvisionedThroughputExceededException: slow down".into()))
        }
        async fn delete_connection(&self, _: &str) -> Result<Option<i64>, StoreError> {
            Err(StoreError::Unavailable("ProvisionedThroughputExceededException: slow down".into()))
        }
        async fn connections_of(&self, _: &UserId, _: Timestamp) -> Result<Vec<Connection>, StoreError> {
            Ok(Vec::new())
        }
        async fn active_connections(&self) -> Result<i64, StoreError> {
            Err(StoreError::Unavailable("ProvisionedThroughputExceededException: slow down".into()))
        }
    }

    #[test]
    fn connect_event_yields_connection_id_and_token() {
        let event = connect_event(r#""queryStringParameters": {"token": "abc.def.ghi"}, "multiValueQueryStringParameters": {"token": ["abc.def.ghi"]},"#);
        assert_eq!(connection_id(&event), Some("L0SM9cOFvHcCIhw="));
        assert_eq!(connect_token(&event), Some("abc.def.ghi"));
        assert_eq!(connect_token(&connect_event("")), None);
        assert_eq!(connect_token(&connect_event(r#""queryStringParameters": null,"#)), None);
        assert_eq!(connection_id(&ApiGatewayWebsocketProxyRequest::default()), None);
    }

    #[test]
    fn responses_carry_status_and_text() {
        let r = proxy_response(401, "unauthorized");
        assert_eq!(r.status_code, 401);
        assert_eq!(text(&r), "unauthorized");
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["statusCode"], 401);
        assert_eq!(json["body"], "unauthorized");
    }

    #[tokio::test]
    async fn connect_with_a_valid_token_records_the_connection() {
        let store = Arc::new(MemoryStore::new());
        let deps = deps(store.clone());
        let token = token_for(&deps, "user-1");
        let event = connect_event(&format!(r#""queryStringParameters": {{"token": "{token}"}},"#));
        let response = handle_ws_connect(&deps, &event).await;
        assert_eq!(response.status_code, 200);
        let live = store.connections_of(&UserId::parse("user-1").unwrap(), SystemClock.now()).await.unwrap();
        assert_eq!(live.iter().map(|c| c.connection_id.as_str()).collect::<Vec<_>>(), ["L0SM9cOFvHcCIhw="]);

        let response = handle_ws_disconnect(&deps, &disconnect_event("L0SM9cOFvHcCIhw=")).await;
        assert_eq!(response.status_code, 200);
        assert!(store.connections_of(&UserId::parse("user-1").unwrap(), SystemClock.now()).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn connect_without_a_good_token_is_refused_and_records_nothing() {
        let store = Arc::new(MemoryStore::new());
        let deps = deps(store.clone());
        let other = WsTokens::new(b"another-secret-of-at-least-32-bytes!", DEFAULT_WS_TOKEN_TTL).unwrap();
        let forged = other.mint(&UserId::parse("user-1").unwrap(), SystemClock.now()).0;
        for query in [String::new(), r#""queryStringParameters": {"token": "nonsense"},"#.to_owned(), format!(r#""queryStringParameters": {{"token": "{forged}"}},"#)] {
            let response = handle_ws_connect(&deps, &connect_event(&query)).await;
            assert_eq!(response.status_code, 401, "{query}");
            assert_eq!(text(&response), "unauthorized");
        }
        assert!(store.connections_of(&UserId::parse("user-1").unwrap(), SystemClock.now()).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn store_outage_answers_500_and_missing_connection_id_400() {
        let deps = deps(Arc::new(DownStore));
        let token = token_for(&deps, "user-1");
        let event = connect_event(&format!(r#""queryStringParameters": {{"token": "{token}"}},"#));
        assert_eq!(handle_ws_connect(&deps, &event).await.status_code, 500);
        assert_eq!(handle_ws_disconnect(&deps, &disconnect_event("gone=")).await.status_code, 500);
        assert_eq!(handle_ws_connect(&deps, &ApiGatewayWebsocketProxyRequest::default()).await.status_code, 400);
        assert_eq!(handle_ws_disconnect(&deps, &ApiGatewayWebsocketProxyRequest::default()).await.status_code, 400);
    }

    #[test]
    fn tables_are_required_only_when_used() {
        let env = Env::from_pairs([(vars::NOTIFICATIONS_TABLE, "notify-notifications"), (vars::USERS_TABLE, "notify-users")]);
        let tables = table_names(&env, &[Table::Users, Table::Notifications]).unwrap();
        assert_eq!((tables.users.as_str(), tables.notifications.as_str()), ("notify-users", "notify-notifications"));
        assert_eq!((tables.idempotency.as_str(), tables.events.as_str(), tables.connections.as_str()), ("", "", ""));
        let e = table_names(&env, &[Table::Notifications, Table::Events]).unwrap_err();
        assert_eq!(e.to_string(), "environment variable NOTIFY_EVENTS_TABLE is not set");
    }

    #[test]
    fn startup_errors_name_the_variable_in_debug_too() {
        let e = queue_directory(&Env::default()).unwrap_err();
        assert_eq!(format!("{e:?}"), "environment variable NOTIFY_QUEUE_URL_PREFIX is not set");
        // As `main` sees it after `?`.
        let boxed: Box<dyn std::error::Error + Send + Sync> = e.into();
        assert_eq!(format!("{boxed:?}"), "environment variable NOTIFY_QUEUE_URL_PREFIX is not set");
        let e = required(&Env::from_pairs([(vars::EMAIL_FROM, "  ")]), vars::EMAIL_FROM).unwrap_err();
        assert_eq!(e.to_string(), "environment variable NOTIFY_EMAIL_FROM is not set");
    }

    #[test]
    fn api_keys_need_at_least_one_key() {
        let aws = AwsClients::new(&SdkConfig::builder().build());
        let api_keys = |env: &Env| api_keys(env, &aws);
        assert!(!api_keys(&Env::from_pairs([(vars::API_KEYS_TABLE, "stack-api-keys")])).unwrap().is_empty(), "the key directory alone");
        let e = api_keys(&Env::default()).unwrap_err();
        assert_eq!(e.to_string(), "environment variable NOTIFY_API_KEY_HASHES is not set");
        let e = api_keys(&Env::from_pairs([(vars::API_KEY_HASHES, "zz")])).unwrap_err();
        assert!(e.to_string().starts_with("environment variable NOTIFY_API_KEY_HASHES is invalid"), "{e}");
        let hash = crate::auth::api_keys::hash_key_hex("k1");
        let keys = api_keys(&Env::from_pairs([(vars::API_KEY_HASHES, hash.as_str())])).unwrap();
        assert!(keys.authorize(Some("Bearer k1")));
        assert!(api_keys(&Env::from_pairs([(vars::API_KEYS, "local")])).unwrap().authorize(Some("Bearer local")));
    }

    #[test]
    fn ws_secret_is_checked_and_never_quoted() {
        let e = ws_tokens(&Env::default(), "short-secret").unwrap_err().to_string();
        assert!(e.starts_with("environment variable NOTIFY_WS_TOKEN_SECRET is not a usable secret"), "{e}");
        assert!(!e.contains("short-secret"));
        let ok = ws_tokens(&Env::default(), SECRET).unwrap();
        assert_eq!(ok.ttl(), Duration::from_secs(900));
        let e = ws_tokens(&Env::from_pairs([(vars::WS_TOKEN_TTL_SECONDS, "0")]), SECRET).unwrap_err();
        assert!(e.to_string().contains("NOTIFY_WS_TOKEN_TTL_SECONDS"));
        assert_eq!(unused_ws_tokens().ttl(), DEFAULT_WS_TOKEN_TTL);
    }

    #[test]
    fn retry_settings_default_and_validate() {
        let p = retry_policy(&Env::default(), RetryPolicy::DELIVERY).unwrap();
        assert_eq!(p, RetryPolicy::DELIVERY);
        let env = Env::from_pairs([(vars::RETRY_BASE_MS, "500"), (vars::RETRY_MAX_ATTEMPTS, "4")]);
        let p = retry_policy(&env, RetryPolicy::DELIVERY).unwrap();
        assert_eq!((p.base, p.max, p.max_attempts), (Duration::from_millis(500), RetryPolicy::DELIVERY.max, 4));
        let e = retry_policy(&Env::from_pairs([(vars::RETRY_BASE_MS, "5000"), (vars::RETRY_MAX_MS, "100")]), RetryPolicy::DELIVERY).unwrap_err();
        assert!(e.to_string().starts_with("environment variable NOTIFY_RETRY_MAX_MS is invalid"), "{e}");
        let e = retry_policy(&Env::from_pairs([(vars::RETRY_BASE_MS, "2s")]), RetryPolicy::DELIVERY).unwrap_err();
        assert!(e.to_string().starts_with("environment variable NOTIFY_RETRY_BASE_MS is invalid"), "{e}");
        let e = retry_policy(&Env::from_pairs([(vars::RETRY_MAX_ATTEMPTS, "0")]), RetryPolicy::DELIVERY).unwrap_err();
        assert!(e.to_string().starts_with("environment variable NOTIFY_RETRY_MAX_ATTEMPTS is invalid"), "{e}");
        let pipeline = settings(&Env::from_pairs([(vars::RETRY_BASE_MS, "250"), (vars::RETRY_MAX_ATTEMPTS, "3")])).unwrap().pipeline_retry;
        assert_eq!(pipeline.base, Duration::from_millis(250));
        assert_eq!(pipeline.max_attempts, RetryPolicy::PIPELINE.max_attempts, "the pipeline never gives up on an accepted event");
    }

    #[test]
    fn push_platforms_are_optional_and_ws_push_needs_an_endpoint() {
        assert_eq!(push_application_arns(&Env::default()).unwrap(), (None, None));
        let arn = "arn:aws:sns:eu-west-1:123456789012:app/GCM/notify";
        assert_eq!(push_application_arns(&Env::from_pairs([(vars::PUSH_FCM_APPLICATION_ARN, arn)])).unwrap(), (Some(arn.to_owned()), None));
        assert_eq!(ws_management_endpoint(&Env::default()).unwrap_err().to_string(), "environment variable NOTIFY_WS_MANAGEMENT_ENDPOINT is not set");
        assert!(ws_management_endpoint(&Env::from_pairs([(vars::WS_MANAGEMENT_ENDPOINT, "abc123.execute-api")])).is_err());
        let url = "https://abc123.execute-api.eu-west-1.amazonaws.com/prod";
        assert_eq!(ws_management_endpoint(&Env::from_pairs([(vars::WS_MANAGEMENT_ENDPOINT, url)])).unwrap(), url);
    }

    #[test]
    fn metrics_namespace_defaults_and_is_checked() {
        assert_eq!(metrics_namespace(&Env::default()).unwrap(), "Notify");
        assert_eq!(metrics_namespace(&Env::from_pairs([(vars::METRICS_NAMESPACE, " Notify/prod ")])).unwrap(), "Notify/prod");
        for bad in ["AWS/Lambda", "notify\u{e9}", "a|b", &"n".repeat(256)] {
            let e = metrics_namespace(&Env::from_pairs([(vars::METRICS_NAMESPACE, bad)])).unwrap_err().to_string();
            assert!(e.starts_with("environment variable NOTIFY_METRICS_NAMESPACE is invalid"), "{bad}: {e}");
        }
    }

    #[test]
    fn unsubscribe_links_need_a_public_url_and_a_usable_secret() {
        assert_eq!(public_base_url(&Env::default()).unwrap_err().to_string(), "environment variable NOTIFY_PUBLIC_BASE_URL is not set");
        let e = public_base_url(&Env::from_pairs([(vars::PUBLIC_BASE_URL, "abc123.execute-api")])).unwrap_err().to_string();
        assert!(e.starts_with("environment variable NOTIFY_PUBLIC_BASE_URL is invalid"), "{e}");
        let url = "https://abc123.execute-api.eu-west-1.amazonaws.com";
        assert_eq!(public_base_url(&Env::from_pairs([(vars::PUBLIC_BASE_URL, url)])).unwrap(), url);
        assert!(unsubscribe_links(url, SECRET).is_ok());
        let e = unsubscribe_links(url, "short-secret").unwrap_err().to_string();
        assert!(e.contains("not a usable secret") && !e.contains("short-secret"), "{e}");
    }

    #[test]
    fn a_bad_catalog_dir_is_named() {
        let e = catalog(&Env::from_pairs([(vars::CATALOG_DIR, "/nonexistent/catalog")])).unwrap_err().to_string();
        assert!(e.starts_with("cannot load the event catalog (from NOTIFY_CATALOG_DIR"), "{e}");
        assert!(catalog(&Env::default()).is_ok());
    }
}
