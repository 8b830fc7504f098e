//! Logging for the Lambda functions: one JSON object per line on stdout, which CloudWatch Logs
//! stores as is and Logs Insights queries by field.
//!
//! No timestamps (CloudWatch stamps every line) and no ANSI colours (they would land in the log
//! as escape codes). Each line carries its target and the current span (the SQS record's
//! `message_id`, `queue`, `receive_count`) plus the span list, whose outermost entry is the
//! runtime's invocation span with the `requestId`. The level comes from `RUST_LOG`
//! (`info` when unset or unreadable).
//!
//! What the handlers log is chosen by them: ids, statuses, error codes, never message bodies or
//! contact details. Nothing here adds request or response payloads.

use tracing_subscriber::EnvFilter;

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
