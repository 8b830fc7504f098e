//! Twilio Programmable Messaging: `TwilioSmsSender` sends a notification's SMS (its `text` part)
//! through the Messages API, as the second SMS provider next to SNS.
//!
//! What its answers mean here (Twilio's error `code` from the JSON error body decides before the
//! HTTP status does):
//!
//! | answer | [`SendError`] | why |
//! |---|---|---|
//! | 2xx (201 `{"sid": "SM…"}`) | — receipt `twilio`, id = `sid` | accepted; an unreadable body still means accepted, and the notification id stands in |
//! | HTTP 429, or code 20429 | `Throttled` | with `Retry-After` when given |
//! | code 21610 | `Unreachable("opted_out")` | the recipient replied STOP: skipped, and the caller suppresses the number |
//! | code 20003, or HTTP 401 | `Transient` | the credentials are wrong for every message alike: they wait for an operator |
//! | code 21211 (invalid `To`), 21408 (region not enabled), 21612 (no route between `From` and `To`), other 4xx | `Permanent` | retrying cannot help |
//! | 408, 5xx, timeout, no connection | `Transient` | worth retrying |
//!
//! Twilio's error messages repeat the phone number, so they are never logged nor kept: error
//! strings carry the HTTP status and Twilio's error code only, and nothing here logs the number
//! or the body.

use async_trait::async_trait;
use reqwest::header::HeaderMap;
use reqwest::{Client, StatusCode};
use serde::Deserialize;

use super::client::{retry_after, status_error, transport_error};
use crate::ports::{Address, ChannelSender, Delivery, ProviderReceipt, SendError, SuppressionReason};

/// The provider name recorded on the notifications Twilio delivers.
pub const PROVIDER: &str = "twilio";
/// Twilio's API, for `base_url`.
pub const DEFAULT_BASE_URL: &str = "https://api.twilio.com";

/// Twilio error codes this adapter treats apart from their HTTP status.
pub mod code {
    /// Authentication failed (wrong account SID or auth token).
    pub const AUTHENTICATION: u32 = 20003;
    /// Too many requests.
    pub const TOO_MANY_REQUESTS: u32 = 20429;
    /// The `To` number is not a valid phone number.
    pub const INVALID_TO: u32 = 21211;
    /// The account may not send to the `To` number's region (geo permissions).
    pub const REGION_NOT_ENABLED: u32 = 21408;
    /// The `To` number cannot be reached from the `From` number.
    pub const UNREACHABLE_ROUTE: u32 = 21612;
    /// The recipient unsubscribed by replying STOP.
    pub const UNSUBSCRIBED: u32 = 21610;
}

/// Who the message comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TwilioFrom {
    /// A Twilio phone number (E.164) or alphanumeric sender id: the `From` parameter.
    Number(String),
    /// A Messaging Service (`MG…`), which picks the number itself: `MessagingServiceSid`.
    MessagingService(String),
}

#[derive(Clone, Debug)]
pub struct TwilioSmsSender {
    client: Client,
    endpoint: String,
    account_sid: String,
    auth_token: String,
    sender: TwilioFrom,
}

impl TwilioSmsSender {
    /// `client`: [`super::client::client`] (timeouts, no redirects). `base_url`:
    /// [`DEFAULT_BASE_URL`], or a local fake.
    pub fn new(client: Client, base_url: &str, account_sid: String, auth_token: String, sender: TwilioFrom) -> Self {
        let endpoint = format!("{}/2010-04-01/Accounts/{account_sid}/Messages.json", base_url.trim_end_matches('/'));
        Self { client, endpoint, account_sid, auth_token, sender }
    }
}

/// A created message: `{"sid": "SM…", …}`.
#[derive(Deserialize)]
struct Created {
    sid: String,
}

/// Twilio's error body: `{"code": 21211, "message": …, "more_info": …, "status": 400}`. Only the
/// code is read; the message names the phone number.
#[derive(Deserialize)]
struct ErrorBody {
    code: Option<u32>,
}

/// What a non-2xx answer means.
fn classify(status: StatusCode, headers: &HeaderMap, error_code: Option<u32>) -> SendError {
    let what = match error_code {
        Some(c) => format!("{PROVIDER} error {c}"),
        None => PROVIDER.to_owned(),
    };
    match (status.as_u16(), error_code) {
        (429, _) | (_, Some(code::TOO_MANY_REQUESTS)) => SendError::Throttled { retry_after: retry_after(headers) },
        // Not a failure to send: the recipient opted out of this sender. Skipped, and the caller
        // records the suppression so later messages are not even tried.
        (_, Some(code::UNSUBSCRIBED)) => SendError::Unreachable(SuppressionReason::OptedOut.as_str().into()),
        // Wrong credentials fail every message alike: failing each notification (and requesting
        // its fallback) would turn one configuration mistake into a flood of failures. Retrying
        // keeps the messages waiting for an operator, within the retry budget.
        (401, _) | (_, Some(code::AUTHENTICATION)) => SendError::Transient(format!("{what}: HTTP {status} (credentials rejected)")),
        // Explicitly permanent whatever the status; other 4xx are too, by `status_error`.
        (_, Some(code::INVALID_TO | code::REGION_NOT_ENABLED | code::UNREACHABLE_ROUTE)) => {
            SendError::Permanent(format!("{what}: HTTP {status}"))
        }
        _ => status_error(status, headers, &what),
    }
}

#[async_trait]
impl ChannelSender for TwilioSmsSender {
    async fn send(&self, d: Delivery<'_>) -> Result<ProviderReceipt, SendError> {
        let Address::Phone { number } = d.address else {
            return Err(SendError::Permanent("not a phone number".into()));
        };
        let from = match &self.sender {
            TwilioFrom::Number(n) => ("From", n.as_str()),
            TwilioFrom::MessagingService(sid) => ("MessagingServiceSid", sid.as_str()),
        };
        let form = [("To", number.as_str()), from, ("Body", d.message.part("text"))];
        let response = self
            .client
            .post(&self.endpoint)
            .basic_auth(&self.account_sid, Some(&self.auth_token))
            .form(&form)
            .send()
            .await
            .map_err(|e| transport_error(&e, PROVIDER))?;
        let status = response.status();
        if status.is_success() {
            let sid = match response.bytes().await {
                Ok(body) => serde_json::from_slice::<Created>(&body).ok().map(|c| c.sid).filter(|s| !s.is_empty()),
                Err(_) => None,
            };
            return Ok(match sid {
                Some(sid) => ProviderReceipt::new(PROVIDER, sid),
                None => {
                    // Twilio created the message; sending again would send it twice.
                    tracing::warn!(notification_id = %d.notification_id, %status, "twilio accepted the message but its answer had no readable sid");
                    ProviderReceipt::new(PROVIDER, d.notification_id.as_str())
                }
            });
        }
        let headers = response.headers().clone();
        let error_code = match response.bytes().await {
            Ok(body) => serde_json::from_slice::<ErrorBody>(&body).ok().and_then(|b| b.code),
            Err(_) => None,
        };
        Err(classify(status, &headers, error_code))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::http::client::client;
    use crate::adapters::http::test_fixture::{DeliveryFixture, fake_never_called, send_timing_out};
    use crate::domain::Channel;
    use serde_json::json;
    use std::collections::BTreeMap;
    use std::time::Duration;
    use wiremock::matchers::{basic_auth, header, method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    const SID: &str = "AC0123456789abcdef0123456789abcdef";
    const TOKEN: &str = "auth-token";
    const TO: &str = "+380501234567";
    const FROM: &str = "+15005550006";
    const MESSAGES: &str = "/2010-04-01/Accounts/AC0123456789abcdef0123456789abcdef/Messages.json";

    fn sms() -> DeliveryFixture {
        DeliveryFixture::text(Channel::Sms, Address::Phone { number: TO.into() }, "Your code: 1234 & thanks")
    }

    fn sender(server: &MockServer, timeout: Duration, from: TwilioFrom) -> TwilioSmsSender {
        TwilioSmsSender::new(client(timeout), &server.uri(), SID.into(), TOKEN.into(), from)
    }

    async fn answer(template: ResponseTemplate) -> (MockServer, Result<ProviderReceipt, SendError>) {
        let server = MockServer::start().await;
        Mock::given(method("POST")).and(path(MESSAGES)).respond_with(template).mount(&server).await;
        let f = sms();
        let result = sender(&server, Duration::from_secs(5), TwilioFrom::Number(FROM.into())).send(f.delivery()).await;
        (server, result)
    }

    fn twilio_error(status: u16, code: u32) -> ResponseTemplate {
        ResponseTemplate::new(status).set_body_json(json!({
            "code": code,
            "message": format!("The 'To' number {TO} is not a valid phone number."),
            "more_info": format!("https://www.twilio.com/docs/errors/{code}"),
            "status": status,
        }))
    }

    /// The form the fake received, decoded.
    async fn form(server: &MockServer) -> BTreeMap<String, String> {
        let requests = server.received_requests().await.expect("requests are recorded");
        assert_eq!(requests.len(), 1);
        let body = String::from_utf8(requests[0].body.clone()).unwrap();
        let url = reqwest::Url::parse(&format!("http://form.invalid/?{body}")).unwrap();
        url.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect()
    }

    #[tokio::test]
    async fn a_created_message_answers_its_sid_and_posts_the_form() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path(MESSAGES))
            .and(basic_auth(SID, TOKEN))
            .and(header("content-type", "application/x-www-form-urlencoded"))
            .respond_with(ResponseTemplate::new(201).set_body_json(json!({"sid": "SM0123", "status": "queued"})))
            .expect(1)
            .mount(&server)
            .await;
        let f = sms();

        let receipt = sender(&server, Duration::from_secs(5), TwilioFrom::Number(FROM.into())).send(f.delivery()).await;

        assert_eq!(receipt, Ok(ProviderReceipt::new(PROVIDER, "SM0123")));
        let sent = form(&server).await;
        let expected: BTreeMap<String, String> =
            [("To", TO), ("From", FROM), ("Body", "Your code: 1234 & thanks")].into_iter().map(|(k, v)| (k.into(), v.into())).collect();
        assert_eq!(sent, expected);
    }

    #[tokio::test]
    async fn a_messaging_service_replaces_from() {
        let server = MockServer::start().await;
        Mock::given(method("POST")).and(path(MESSAGES)).respond_with(ResponseTemplate::new(201).set_body_json(json!({"sid": "SM1"}))).mount(&server).await;
        let f = sms();

        let receipt = sender(&server, Duration::from_secs(5), TwilioFrom::MessagingService("MG42".into())).send(f.delivery()).await;

        assert_eq!(receipt, Ok(ProviderReceipt::new(PROVIDER, "SM1")));
        let sent = form(&server).await;
        assert_eq!(sent.get("MessagingServiceSid").map(String::as_str), Some("MG42"));
        assert!(!sent.contains_key("From"));
    }

    #[tokio::test]
    async fn a_created_message_with_an_unreadable_body_is_still_sent() {
        let f = sms();
        for template in [ResponseTemplate::new(201).set_body_string("<html>"), ResponseTemplate::new(201).set_body_json(json!({"status": "queued"}))] {
            let (_server, result) = answer(template).await;
            assert_eq!(result, Ok(ProviderReceipt::new(PROVIDER, f.id.as_str())), "the notification id stands in");
        }
    }

    #[tokio::test]
    async fn an_invalid_number_is_permanent_with_its_code_only() {
        let (_server, result) = answer(twilio_error(400, code::INVALID_TO)).await;
        let Err(SendError::Permanent(why)) = result else { panic!("permanent: {result:?}") };
        assert_eq!(why, "twilio error 21211: HTTP 400 Bad Request");
        assert!(!why.contains(TO), "no phone number in errors");
    }

    #[tokio::test]
    async fn region_and_route_errors_are_permanent() {
        for c in [code::REGION_NOT_ENABLED, code::UNREACHABLE_ROUTE, 21614] {
            let (_server, result) = answer(twilio_error(400, c)).await;
            assert_eq!(result, Err(SendError::Permanent(format!("twilio error {c}: HTTP 400 Bad Request"))));
        }
        let (_server, result) = answer(ResponseTemplate::new(404)).await;
        assert_eq!(result, Err(SendError::Permanent("twilio: HTTP 404 Not Found".into())));
    }

    #[tokio::test]
    async fn an_unsubscribed_recipient_is_unreachable() {
        let (_server, result) = answer(twilio_error(400, code::UNSUBSCRIBED)).await;
        assert_eq!(result, Err(SendError::Unreachable("opted_out".into())));
    }

    #[tokio::test]
    async fn rejected_credentials_are_transient() {
        let (_server, result) = answer(twilio_error(401, code::AUTHENTICATION)).await;
        assert_eq!(result, Err(SendError::Transient("twilio error 20003: HTTP 401 Unauthorized (credentials rejected)".into())));
        let (_server, result) = answer(ResponseTemplate::new(401)).await;
        assert!(matches!(result, Err(SendError::Transient(_))), "{result:?}");
    }

    #[tokio::test]
    async fn too_many_requests_is_throttled() {
        let (_server, result) = answer(twilio_error(429, code::TOO_MANY_REQUESTS).insert_header("Retry-After", "3")).await;
        assert_eq!(result, Err(SendError::Throttled { retry_after: Some(Duration::from_secs(3)) }));
        let (_server, result) = answer(ResponseTemplate::new(429)).await;
        assert_eq!(result, Err(SendError::Throttled { retry_after: None }));
        // Twilio's code says so even when the status does not.
        let (_server, result) = answer(twilio_error(400, code::TOO_MANY_REQUESTS)).await;
        assert_eq!(result, Err(SendError::Throttled { retry_after: None }));
    }

    #[tokio::test]
    async fn server_errors_are_transient() {
        let (_server, result) = answer(ResponseTemplate::new(503).set_body_string("upstream down")).await;
        assert_eq!(result, Err(SendError::Transient("twilio: HTTP 503 Service Unavailable".into())));
        let (_server, result) = answer(twilio_error(500, 20500)).await;
        assert_eq!(result, Err(SendError::Transient("twilio error 20500: HTTP 500 Internal Server Error".into())));
    }

    #[tokio::test]
    async fn a_timeout_is_transient() {
        let late = ResponseTemplate::new(201).set_body_json(json!({"sid": "SM1"})).set_delay(Duration::from_secs(10));
        let from_number = |server: &MockServer, timeout| sender(server, timeout, TwilioFrom::Number(FROM.into()));
        let (_server, result) = send_timing_out(from_number, late, sms().delivery()).await;
        assert_eq!(result, Err(SendError::Transient("twilio: timed out".into())));
    }

    #[tokio::test]
    async fn a_non_phone_address_is_permanent_without_a_call() {
        let server = fake_never_called().await;
        let mut f = sms();
        f.address = Address::Email { to: "olena@example.com".into() };
        let result = sender(&server, Duration::from_secs(5), TwilioFrom::Number(FROM.into())).send(f.delivery()).await;
        assert_eq!(result, Err(SendError::Permanent("not a phone number".into())));
    }
}
