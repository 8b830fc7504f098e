//! Logs and metrics for the Lambda functions.
//!
//! **Logs**: one JSON object per line on stdout, which CloudWatch Logs stores as is and Logs
//! Insights queries by field.
//!
//! No timestamps (CloudWatch stamps every line) and no ANSI colours (they would land in the log
//! as escape codes). Each line carries its target and the current span (the SQS record's
//! `message_id`, `queue`, `receive_count`) plus the span list, whose outermost entry is the
//! runtime's invocation span with the `requestId`. The level comes from `RUST_LOG`
//! (`info` when unset or unreadable).
//!
//! What the handlers log is chosen by them: ids, statuses, error codes, never message bodies or
//! contact details. Nothing here adds request or response payloads.
//!
//! **Metrics** ([`init_lambda`]): what the handlers record through [`crate::metrics`] is collected
//! in process and written to stdout as CloudWatch Embedded Metric Format documents after every
//! invocation, one line per label set, which CloudWatch Logs turns into metrics: no API call on
//! the hot path. The namespace is `NOTIFY_METRICS_NAMESPACE` (default `Notify`); the only
//! dimensions are the labels [`crate::metrics`] defines. Each document also carries the
//! invocation's `RequestId` and the `Function` as properties (searchable in Logs Insights, not
//! dimensions).

use metrics_cloudwatch_embedded::Collector;
use metrics_cloudwatch_embedded::lambda::service;
use std::future::Future;
use std::sync::OnceLock;
use tracing_subscriber::EnvFilter;

use crate::config::Env;
use crate::lambda::StartupError;

/// Installs the subscriber; call it first in `main`. A second call does nothing.
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_writer(std::io::stdout)
        .with_ansi(false)
        .without_time()
        .with_target(true)
        .with_current_span(true)
        .with_span_list(true)
        // `message`, `error`, `notification_id` … at the top level of the object, not under `fields`.
        .flatten_event(true)
        .try_init();
}

/// What a Lambda `main` needs to run its handler with metrics: [`LambdaTelemetry::run`] for an
/// event handler (SQS batches, WebSocket routes), [`LambdaTelemetry::run_http`] for an axum
/// router behind the HTTP API. Both flush the invocation's metrics to stdout once the handler
/// has answered.
#[derive(Clone, Copy)]
pub struct LambdaTelemetry {
    collector: &'static Collector,
}

/// Logs ([`init`]) and metrics for the function `function_name`; call it first in `main`. Fails,
/// naming the variable, when `NOTIFY_METRICS_NAMESPACE` is not a usable CloudWatch namespace.
pub fn init_lambda(function_name: &'static str) -> Result<LambdaTelemetry, StartupError> {
    init();
    let namespace = crate::lambda::metrics_namespace(&Env::from_process())?;
    install_emf(namespace, function_name)
}

/// Installs the EMF collector as the process's metrics recorder (once: later calls return the
/// first collector, whatever their arguments). [`init_lambda`] without the environment.
pub fn install_emf(namespace: String, function_name: &'static str) -> Result<LambdaTelemetry, StartupError> {
    static INSTALLED: OnceLock<Result<&'static Collector, String>> = OnceLock::new();
    let installed = INSTALLED.get_or_init(|| {
        // Gauges as samples before `describe`, which registers each metric under its kind.
        crate::metrics::record_gauges_as_samples(true);
        let collector = metrics_cloudwatch_embedded::Builder::new()
            .cloudwatch_namespace(namespace)
            .with_lambda_request_id("RequestId")
            .init()
            .map_err(|e| e.to_string())?;
        collector.set_property("Function", function_name);
        crate::metrics::describe();
        Ok(collector)
    });
    match installed {
        Ok(collector) => Ok(LambdaTelemetry { collector }),
        Err(e) => Err(StartupError::Metrics(e.clone())),
    }
}

impl LambdaTelemetry {
    /// `lambda_runtime::run(service_fn(handler))`, flushing metrics after every invocation.
    pub async fn run<T, F, Request, Response>(self, handler: T) -> Result<(), lambda_runtime::Error>
    where
        T: FnMut(lambda_runtime::LambdaEvent<Request>) -> F,
        F: Future<Output = Result<Response, lambda_runtime::Error>>,
        Request: for<'de> serde::Deserialize<'de>,
        Response: serde::Serialize,
    {
        service::run(self.collector, lambda_runtime::service_fn(handler)).await
    }

    /// `lambda_http::run(app)`, flushing metrics after every request.
    pub async fn run_http<'a, S, R, E>(self, app: S) -> Result<(), lambda_runtime::Error>
    where
        S: lambda_runtime::Service<lambda_http::Request, Response = R, Error = E>,
        S::Future: Send + 'a,
        R: lambda_http::IntoResponse,
        E: std::fmt::Debug + Into<lambda_runtime::Diagnostic>,
    {
        service::run_http(self.collector, app).await
    }

    /// Writes what was recorded since the last flush, one EMF document per line (what the
    /// runtime integration does to stdout after each invocation).
    pub fn flush(&self, writer: impl std::io::Write) -> std::io::Result<()> {
        self.collector.flush(writer)
    }
}
