//! `GET /metrics`: the counters the handlers record (`shared::metrics`), in Prometheus text
//! format. On AWS the same metrics are CloudWatch EMF documents in each function's log.
//!
//! The recorder is the process's one global `metrics` recorder, installed by the first local
//! stack to start; later stacks in the same process (tests under `cargo test`, the bench) share
//! it, so their counts add up. Should another recorder be installed already, `/metrics` says so
//! with a 503 and the stack runs on.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use shared::http::Problem;
use std::sync::OnceLock;
use std::time::Duration;
use tokio::sync::watch;

/// How often summaries roll their windows and idle metrics are dropped.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// The process's Prometheus recorder, installed on first use; `None` if another recorder was
/// installed first.
pub fn recorder() -> Option<PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| match PrometheusBuilder::new().install_recorder() {
            Ok(handle) => {
                shared::metrics::describe();
                Some(handle)
            }
            Err(e) => {
                tracing::warn!(error = %e, "another metrics recorder is installed: GET /metrics will answer 503");
                None
            }
        })
        .clone()
}

/// Runs the recorder's upkeep until `shutdown`.
pub fn spawn_upkeep(handle: PrometheusHandle, mut shutdown: watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = shutdown.wait_for(|stop| *stop) => return,
                _ = tokio::time::sleep(UPKEEP_EVERY) => handle.run_upkeep(),
            }
        }
    })
}

pub fn routes(handle: Option<PrometheusHandle>) -> Router {
    Router::new().route("/metrics", get(render)).with_state(handle)
}

async fn render(State(handle): State<Option<PrometheusHandle>>) -> Response {
    let Some(handle) = handle else {
        return Problem::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "Service Unavailable", "another metrics recorder is installed in this process")
            .into_response();
    };
    let mut response = handle.render().into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
    response
}
