//! What every HTTP provider shares: one client (timeouts, no redirects), and the mapping of an
//! HTTP answer to a [`SendError`].

use std::time::Duration;

use crate::ports::SendError;

/// How long one provider call may take, connect included.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest `Retry-After` taken as asked; a longer one is capped (the job's visibility can be
/// changed for 12 h at most, and a provider asking for more is as good as down).
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(15 * 60);

/// A client that never follows redirects (a provider answering 3xx is misconfigured, and a
/// webhook target must not bounce us elsewhere) and gives up after `timeout`.
pub fn client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(5)))
        .build()
        // Building fails only when the TLS backend cannot initialise, at cold start.
        .expect("the HTTP client builds")
}

/// `Retry-After` as seconds (`120`) or an HTTP date, capped at [`MAX_RETRY_AFTER`].
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim();
    let wait = match value.parse::<u64>() {
        Ok(seconds) => Duration::from_secs(seconds),
        Err(_) => {
            let at = httpdate_to_timestamp(value)?;
            Duration::try_from(at.duration_since(jiff::Timestamp::now())).unwrap_or_default()
        }
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

/// `Sun, 06 Nov 1994 08:49:37 GMT` (RFC 9110's preferred form).
fn httpdate_to_timestamp(value: &str) -> Option<jiff::Timestamp> {
    jiff::fmt::rfc2822::parse(value).ok().map(|z| z.timestamp())
}

/// The error an HTTP status means, for a provider with no finer rule: 429 → slow down (with the
/// answer's `Retry-After`), 408 and 5xx → transient, other 4xx → permanent. `what` says who
/// answered and is kept short: never a message body or an address.
pub fn status_error(status: reqwest::StatusCode, headers: &reqwest::header::HeaderMap, what: &str) -> SendError {
    match status.as_u16() {
        429 => SendError::Throttled { retry_after: retry_after(headers) },
        408 | 500..=599 => SendError::Transient(format!("{what}: HTTP {status}")),
        _ => SendError::Permanent(format!("{what}: HTTP {status}")),
    }
}

/// A call that got no answer (timeout, refused connection, TLS failure): worth retrying.
pub fn transport_error(e: &reqwest::Error, what: &str) -> SendError {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "request failed"
    };
    SendError::Transient(format!("{what}: {kind}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::StatusCode;
    use reqwest::header::{HeaderMap, HeaderValue, RETRY_AFTER};

    #[test]
    fn statuses_map_to_what_retrying_can_do() {
        let none = HeaderMap::new();
        assert!(matches!(status_error(StatusCode::BAD_REQUEST, &none, "x"), SendError::Permanent(_)));
        assert!(matches!(status_error(StatusCode::NOT_FOUND, &none, "x"), SendError::Permanent(_)));
        assert!(matches!(status_error(StatusCode::REQUEST_TIMEOUT, &none, "x"), SendError::Transient(_)));
        assert!(matches!(status_error(StatusCode::BAD_GATEWAY, &none, "x"), SendError::Transient(_)));
        assert_eq!(status_error(StatusCode::TOO_MANY_REQUESTS, &none, "x"), SendError::Throttled { retry_after: None });
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(status_error(StatusCode::TOO_MANY_REQUESTS, &headers, "x"), SendError::Throttled { retry_after: Some(Duration::from_secs(7)) });
    }

    #[test]
    fn retry_after_reads_seconds_and_dates_and_is_capped() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static("86400"));
        assert_eq!(retry_after(&headers), Some(MAX_RETRY_AFTER));
        headers.insert(RETRY_AFTER, HeaderValue::from_static("Sun, 06 Nov 1994 08:49:37 GMT"));
        assert_eq!(retry_after(&headers), Some(Duration::ZERO), "a date in the past: no wait");
        headers.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&headers), None);
    }
}
