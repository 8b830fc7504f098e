//! SendGrid v3 Mail Send: `SendGridEmailSender` sends a notification's email (subject, text and
//! HTML parts) as the second email provider next to SES.
//!
//! Why SendGrid: it is the most widely used transactional email API, so the one a team is most
//! likely to hold an account with already, and its v3 Mail Send endpoint is a single JSON
//! `POST` with a bearer key (no SDK needed).
//!
//! What its answers mean here:
//!
//! | answer | [`SendError`] | why |
//! |---|---|---|
//! | 2xx (202; 200 in sandbox mode) | — receipt `sendgrid`, id = `X-Message-Id` | accepted; without the header the notification id stands in (the message was taken: sending again would duplicate it) |
//! | 400, 403, 413 (and other 4xx) | `Permanent` | the request is wrong for this message (bad address, unverified sender, too large) |
//! | 401 | `Transient` | a bad or revoked key: every message fails alike, they wait for an operator |
//! | 429 | `Throttled` | `Retry-After`, else `X-RateLimit-Reset` (epoch seconds) |
//! | 408, 5xx, timeout, no connection | `Transient` | worth retrying |
//!
//! Error strings carry the status and, for a 400, the names of the request fields SendGrid
//! objected to (`personalizations.0.to.0.email`), never an address or a message body.

use async_trait::async_trait;
use reqwest::header::HeaderMap;
use reqwest::{Client, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};
use std::time::Duration;

use super::client::{MAX_RETRY_AFTER, retry_after, status_error, transport_error};
use crate::ports::{Address, ChannelSender, Delivery, ProviderReceipt, SendError};

/// The provider name recorded on the notifications SendGrid delivers.
pub const PROVIDER: &str = "sendgrid";
/// SendGrid's API, for `base_url`.
pub const DEFAULT_BASE_URL: &str = "https://api.sendgrid.com";

/// The header SendGrid answers a Mail Send with: its id for the message.
const MESSAGE_ID: &str = "x-message-id";
/// When the rate limit window resets, as Unix seconds.
const RATE_LIMIT_RESET: &str = "x-ratelimit-reset";

#[derive(Clone, Debug)]
pub struct SendGridEmailSender {
    client: Client,
    endpoint: String,
    api_key: String,
    from: String,
}

impl SendGridEmailSender {
    /// `client`: [`super::client::client`] (timeouts, no redirects). `base_url`:
    /// [`DEFAULT_BASE_URL`], or a local fake. `from`: a verified sender identity, as an address
    /// or `Display Name <address>`.
    pub fn new(client: Client, base_url: &str, api_key: String, from: String) -> Self {
        let endpoint = format!("{}/v3/mail/send", base_url.trim_end_matches('/'));
        Self { client, endpoint, api_key, from }
    }

    /// The Mail Send request body for one message.
    fn body(&self, to: &str, d: &Delivery<'_>) -> Value {
        let m = d.message;
        // SendGrid wants text/plain before text/html and refuses empty content values.
        let mut content = Vec::new();
        if !m.part("text").is_empty() {
            content.push(json!({"type": "text/plain", "value": m.part("text")}));
        }
        if !m.part("html").is_empty() {
            content.push(json!({"type": "text/html", "value": m.part("html")}));
        }
        let mut body = json!({
            "personalizations": [{"to": [{"email": to}]}],
            "from": mailbox(&self.from),
            "subject": m.part("subject"),
            "content": content,
            // Comes back on SendGrid's event webhook: ties bounces and opens to the notification.
            "custom_args": {"notification_id": d.notification_id.as_str()},
        });
        // Extra headers (one-click unsubscribe), only when there are any.
        let headers: serde_json::Map<String, Value> = m.headers().map(|(k, v)| (k.to_owned(), Value::from(v))).collect();
        if !headers.is_empty() {
            body["headers"] = Value::Object(headers);
        }
        body
    }
}

/// `Name <address>` → `{"email", "name"}`; a bare address → `{"email"}`.
fn mailbox(from: &str) -> Value {
    let from = from.trim();
    if let (Some(open), true) = (from.rfind('<'), from.ends_with('>')) {
        let email = from[open + 1..from.len() - 1].trim();
        let name = from[..open].trim().trim_matches('"').trim();
        if !name.is_empty() {
            return json!({"email": email, "name": name});
        }
        return json!({"email": email});
    }
    json!({"email": from})
}

/// SendGrid's error body: `{"errors": [{"message", "field", "help"}]}`.
#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    errors: Vec<ErrorItem>,
}

#[derive(Deserialize)]
struct ErrorItem {
    #[serde(default)]
    field: Option<String>,
}

/// The request fields a 4xx names (never their values, which may be addresses).
fn fields(body: &[u8]) -> Vec<String> {
    serde_json::from_slice::<ErrorBody>(body)
        .map(|b| b.errors.into_iter().filter_map(|e| e.field).filter(|f| !f.is_empty()).collect())
        .unwrap_or_default()
}

/// `X-RateLimit-Reset` (Unix seconds) as a wait from now, capped like `Retry-After`.
fn rate_limit_reset(headers: &HeaderMap) -> Option<Duration> {
    let reset: i64 = headers.get(RATE_LIMIT_RESET)?.to_str().ok()?.trim().parse().ok()?;
    let now = jiff::Timestamp::now().as_second();
    Some(Duration::from_secs(reset.saturating_sub(now).max(0) as u64).min(MAX_RETRY_AFTER))
}

/// What a non-2xx answer means.
fn classify(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> SendError {
    match status.as_u16() {
        429 => SendError::Throttled { retry_after: retry_after(headers).or_else(|| rate_limit_reset(headers)) },
        // A missing, wrong or revoked API key fails every message alike: failing each
        // notification (and requesting its fallback) would turn one configuration mistake into
        // a flood of failures. Retrying keeps the messages waiting for an operator to fix the
        // key, within the retry budget; the failures show on the dashboard meanwhile.
        401 => SendError::Transient(format!("{PROVIDER}: HTTP {status} (API key rejected)")),
        400 | 403 | 413 => {
            let fields = fields(body);
            if fields.is_empty() {
                SendError::Permanent(format!("{PROVIDER}: HTTP {status}"))
            } else {
                SendError::Permanent(format!("{PROVIDER}: HTTP {status} ({})", fields.join(", ")))
            }
        }
        _ => status_error(status, headers, PROVIDER),
    }
}

#[async_trait]
impl ChannelSender for SendGridEmailSender {
    async fn send(&self, d: Delivery<'_>) -> Result<ProviderReceipt, SendError> {
        let Address::Email { to } = d.address else {
            return Err(SendError::Permanent("not an email address".into()));
        };
        let response = self
            .client
            .post(&self.endpoint)
            .bearer_auth(&self.api_key)
            .json(&self.body(to, &d))
            .send()
            .await
            .map_err(|e| transport_error(&e, PROVIDER))?;
        let status = response.status();
        if status.is_success() {
            let id = response.headers().get(MESSAGE_ID).and_then(|v| v.to_str().ok()).map(str::trim).filter(|v| !v.is_empty());
            return Ok(match id {
                Some(id) => ProviderReceipt::new(PROVIDER, id),
                None => {
                    // Accepted all the same: recorded under our own id rather than sent twice.
                    tracing::warn!(notification_id = %d.notification_id, %status, "sendgrid accepted the message without an X-Message-Id");
                    ProviderReceipt::new(PROVIDER, d.notification_id.as_str())
                }
            });
        }
        let headers = response.headers().clone();
        // The body only names the fields at fault; an unreadable one just leaves them out.
        let body = response.bytes().await.unwrap_or_default();
        Err(classify(status, &headers, &body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::http::client::client;
    use crate::adapters::http::test_fixture::{DeliveryFixture, fake_never_called, send_timing_out};
    use crate::domain::Channel;
    use wiremock::matchers::{bearer_token, body_json, header, method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    const KEY: &str = "SG.test-key";
    const TO: &str = "olena@example.com";

    fn email() -> DeliveryFixture {
        let parts = [("subject", "Your order"), ("text", "Thanks!"), ("html", "<p>Thanks!</p>")];
        DeliveryFixture::new(Channel::Email, Address::Email { to: TO.into() }, &parts)
    }

    fn sender(server: &MockServer, timeout: Duration) -> SendGridEmailSender {
        SendGridEmailSender::new(client(timeout), &server.uri(), KEY.into(), "Acme <no-reply@acme.example>".into())
    }

    async fn answer(template: ResponseTemplate) -> (MockServer, Result<ProviderReceipt, SendError>) {
        let server = MockServer::start().await;
        Mock::given(method("POST")).and(path("/v3/mail/send")).respond_with(template).mount(&server).await;
        let f = email();
        let result = sender(&server, Duration::from_secs(5)).send(f.delivery()).await;
        (server, result)
    }

    #[tokio::test]
    async fn accepted_mail_answers_the_message_id_and_sends_the_v3_body() {
        let server = MockServer::start().await;
        let f = email();
        let expected = json!({
            "personalizations": [{"to": [{"email": TO}]}],
            "from": {"email": "no-reply@acme.example", "name": "Acme"},
            "subject": "Your order",
            "content": [{"type": "text/plain", "value": "Thanks!"}, {"type": "text/html", "value": "<p>Thanks!</p>"}],
            "custom_args": {"notification_id": f.id.as_str()},
        });
        Mock::given(method("POST"))
            .and(path("/v3/mail/send"))
            .and(bearer_token(KEY))
            .and(header("content-type", "application/json"))
            .and(body_json(expected))
            .respond_with(ResponseTemplate::new(202).insert_header("X-Message-Id", "sg-msg-1"))
            .expect(1)
            .mount(&server)
            .await;

        let receipt = sender(&server, Duration::from_secs(5)).send(f.delivery()).await;

        assert_eq!(receipt, Ok(ProviderReceipt::new(PROVIDER, "sg-msg-1")));
    }

    #[tokio::test]
    async fn extra_headers_such_as_one_click_unsubscribe_are_sent_as_headers_not_content() {
        let server = MockServer::start().await;
        let parts = [
            ("subject", "News"),
            ("text", "Hi"),
            ("header:List-Unsubscribe", "<https://api.example.com/v1/unsubscribe/t>"),
            ("header:List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
        ];
        let f = DeliveryFixture::new(Channel::Email, Address::Email { to: TO.into() }, &parts);
        let expected = json!({
            "personalizations": [{"to": [{"email": TO}]}],
            "from": {"email": "no-reply@acme.example", "name": "Acme"},
            "subject": "News",
            "content": [{"type": "text/plain", "value": "Hi"}],
            "custom_args": {"notification_id": f.id.as_str()},
            "headers": {"List-Unsubscribe": "<https://api.example.com/v1/unsubscribe/t>", "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"},
        });
        Mock::given(method("POST")).and(path("/v3/mail/send")).and(body_json(expected)).respond_with(ResponseTemplate::new(202)).expect(1).mount(&server).await;
        assert!(sender(&server, Duration::from_secs(5)).send(f.delivery()).await.is_ok());
    }

    #[tokio::test]
    async fn accepted_without_a_message_id_or_with_a_stray_body_is_still_sent() {
        let (_server, result) = answer(ResponseTemplate::new(202).set_body_string("{not json")).await;
        let f = email();
        assert_eq!(result, Ok(ProviderReceipt::new(PROVIDER, f.id.as_str())), "the notification id stands in");
    }

    #[tokio::test]
    async fn a_bad_request_is_permanent_and_names_fields_not_values() {
        let body = json!({"errors": [{"message": format!("{TO} is not valid"), "field": "personalizations.0.to.0.email", "help": null}]});
        let (_server, result) = answer(ResponseTemplate::new(400).set_body_json(body)).await;
        let Err(SendError::Permanent(why)) = result else { panic!("permanent: {result:?}") };
        assert_eq!(why, "sendgrid: HTTP 400 Bad Request (personalizations.0.to.0.email)");
        assert!(!why.contains(TO));
    }

    #[tokio::test]
    async fn forbidden_and_too_large_are_permanent() {
        for status in [403, 413] {
            let (_server, result) = answer(ResponseTemplate::new(status).set_body_string("<html>nope</html>")).await;
            assert!(matches!(result, Err(SendError::Permanent(ref why)) if why.starts_with(&format!("sendgrid: HTTP {status}"))), "{status}: {result:?}");
        }
    }

    #[tokio::test]
    async fn a_rejected_key_is_transient() {
        let (_server, result) = answer(ResponseTemplate::new(401)).await;
        assert_eq!(result, Err(SendError::Transient("sendgrid: HTTP 401 Unauthorized (API key rejected)".into())));
    }

    #[tokio::test]
    async fn too_many_requests_waits_as_retry_after_says() {
        let (_server, result) = answer(ResponseTemplate::new(429).insert_header("Retry-After", "12")).await;
        assert_eq!(result, Err(SendError::Throttled { retry_after: Some(Duration::from_secs(12)) }));
    }

    #[tokio::test]
    async fn too_many_requests_falls_back_to_the_rate_limit_reset() {
        let reset = jiff::Timestamp::now().as_second() + 30;
        let (_server, result) = answer(ResponseTemplate::new(429).insert_header("X-RateLimit-Reset", reset.to_string().as_str())).await;
        let Err(SendError::Throttled { retry_after: Some(wait) }) = result else { panic!("throttled with a wait: {result:?}") };
        assert!((Duration::from_secs(28)..=Duration::from_secs(30)).contains(&wait), "{wait:?}");

        let (_server, result) = answer(ResponseTemplate::new(429)).await;
        assert_eq!(result, Err(SendError::Throttled { retry_after: None }));
    }

    #[tokio::test]
    async fn server_errors_are_transient() {
        for status in [500, 502, 503] {
            let (_server, result) = answer(ResponseTemplate::new(status)).await;
            assert!(matches!(result, Err(SendError::Transient(ref why)) if why.starts_with(&format!("sendgrid: HTTP {status}"))), "{status}: {result:?}");
        }
    }

    #[tokio::test]
    async fn a_timeout_is_transient() {
        let late = ResponseTemplate::new(202).set_delay(Duration::from_secs(10));
        let (_server, result) = send_timing_out(sender, late, email().delivery()).await;
        assert_eq!(result, Err(SendError::Transient("sendgrid: timed out".into())));
    }

    #[tokio::test]
    async fn a_non_email_address_is_permanent_without_a_call() {
        let server = fake_never_called().await;
        let mut f = email();
        f.address = Address::Phone { number: "+380501234567".into() };
        let result = sender(&server, Duration::from_secs(5)).send(f.delivery()).await;
        assert_eq!(result, Err(SendError::Permanent("not an email address".into())));
    }

    #[test]
    fn from_is_split_into_name_and_address() {
        assert_eq!(mailbox("no-reply@acme.example"), json!({"email": "no-reply@acme.example"}));
        assert_eq!(mailbox("\"Acme Shop\" <shop@acme.example>"), json!({"email": "shop@acme.example", "name": "Acme Shop"}));
        assert_eq!(mailbox("<shop@acme.example>"), json!({"email": "shop@acme.example"}));
    }
}
