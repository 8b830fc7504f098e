//! WhatsApp Cloud API: `WhatsAppSender` sends approved template messages with
//! `POST {base}/{phone_number_id}/messages` (`Authorization: Bearer {access token}`).
//!
//! # From a catalog template to a WhatsApp template message
//!
//! A business may start a WhatsApp conversation only with a template Meta approved beforehand
//! (free text is allowed only within 24 hours of the user's last message, which a notification
//! platform cannot count on). So the `whatsapp` channel does not send rendered prose; the data
//! flows like this:
//!
//! 1. The catalog author maps the event to an approved template in the event type's
//!    `templates/<locale>/whatsapp.text`, which renders a JSON object naming the template, its
//!    language and its body parameters, in order:
//!    `{"template": "order_confirmation", "language": "en", "parameters": ["A-17", "59.90 EUR"]}`.
//! 2. The router renders that part like every other (`RenderedMessage::parts["text"]`).
//! 3. The sender parses it ([`WhatsAppTemplate::from_part`]) and sends
//!    `{"messaging_product": "whatsapp", "to": …, "type": "template", "template": {"name": …,
//!    "language": {"code": …}, "components": [{"type": "body", "parameters": [{"type": "text",
//!    "text": …}, …]}]}}`. A part that is not that JSON fails the message permanently
//!    ("whatsapp template part is not the expected JSON"): retrying cannot fix a template.
//!
//! Parameters are strings (numbers and booleans are taken as their JSON text). Values with
//! quotes or backslashes must be JSON-escaped by the template (MiniJinja's `tojson` filter, or
//! JSON auto-escaping for `whatsapp.text`), or the part stops being JSON.
//!
//! The access token is sent only as a header; `Debug` hides it and no error names it.

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Value, json};

use super::client::{retry_after, status_error, transport_error};
use crate::ports::{Address, ChannelSender, Delivery, ProviderReceipt, SendError};

/// The provider name recorded on the notifications WhatsApp delivers.
pub const PROVIDER: &str = "whatsapp";

/// The message a rendered `whatsapp.text` part that is not a template object fails with.
pub const NOT_A_TEMPLATE: &str = "whatsapp template part is not the expected JSON";

/// One approved template message: its name, language code (`en`, `en_US`) and body parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WhatsAppTemplate {
    pub name: String,
    pub language: String,
    pub parameters: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TemplatePart {
    template: String,
    language: String,
    #[serde(default)]
    parameters: Vec<Value>,
}

impl WhatsAppTemplate {
    /// Reads the rendered `text` part: `{"template": …, "language": …, "parameters": [...]}`.
    /// Any other shape is a permanent error; the error never quotes the part (it holds the
    /// recipient's data), only where it went wrong.
    pub fn from_part(text: &str) -> Result<Self, SendError> {
        let refused = |detail: String| SendError::Permanent(format!("{NOT_A_TEMPLATE} ({detail})"));
        let part: TemplatePart = serde_json::from_str(text).map_err(|e| {
            let kind = match e.classify() {
                serde_json::error::Category::Syntax | serde_json::error::Category::Eof => "not JSON",
                _ => "not a template object",
            };
            refused(format!("{kind} at line {}, column {}", e.line(), e.column()))
        })?;
        // serde also reads a struct from an array (`["t", "en"]`): only the object form is meant.
        if !text.trim_start().starts_with('{') {
            return Err(refused("not a template object".into()));
        }
        if part.template.trim().is_empty() || part.language.trim().is_empty() {
            return Err(refused("empty template name or language".into()));
        }
        let parameters = part
            .parameters
            .into_iter()
            .enumerate()
            .map(|(i, value)| match value {
                Value::String(s) => Ok(s),
                Value::Number(n) => Ok(n.to_string()),
                Value::Bool(b) => Ok(b.to_string()),
                _ => Err(refused(format!("parameter {i} is not a string"))),
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { name: part.template, language: part.language, parameters })
    }

    /// The Cloud API request body sending this template to `to` (digits only, no `+`).
    pub fn message(&self, to: &str) -> Value {
        let parameters: Vec<Value> = self.parameters.iter().map(|p| json!({"type": "text", "text": p})).collect();
        let mut template = json!({"name": self.name, "language": {"code": self.language}});
        if !parameters.is_empty() {
            template["components"] = json!([{"type": "body", "parameters": parameters}]);
        }
        json!({"messaging_product": "whatsapp", "to": to, "type": "template", "template": template})
    }
}

/// An E.164 number as the Cloud API wants it: digits only, without the leading `+`.
fn recipient(number: &str) -> Result<String, SendError> {
    let digits = number.strip_prefix('+').unwrap_or(number);
    if digits.is_empty() || digits.len() > 15 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(SendError::Permanent("whatsapp: the recipient is not an E.164 number".into()));
    }
    Ok(digits.to_owned())
}

/// The error a Cloud API answer means, by Meta's error code first
/// (`{"error": {"code": 131026, "message": "…", …}}`), by HTTP status when the code says nothing
/// more specific.
fn classify(status: reqwest::StatusCode, headers: &reqwest::header::HeaderMap, body: Option<&Value>) -> SendError {
    let error = body.and_then(|b| b.get("error"));
    let code = error.and_then(|e| e.get("code")).and_then(Value::as_i64);
    // Meta's message names the problem ("(#131026) Message Undeliverable."); its `error_data`
    // details may quote the recipient, so they are left out.
    let said: String = error
        .and_then(|e| e.get("message"))
        .and_then(Value::as_str)
        .map(|m| m.chars().take(200).collect())
        .unwrap_or_default();
    let what = match code {
        Some(code) => format!("whatsapp: error {code} {said}").trim_end().to_owned(),
        None => format!("whatsapp: HTTP {}", status.as_u16()),
    };
    match code {
        // Message undeliverable: not a WhatsApp user, or one who cannot receive it.
        Some(131026) => SendError::Unreachable(what),
        // Cloud API throughput (130429), spam rate limit (131048), pair rate limit (131056),
        // application (4) and business account (80007) rate limits.
        Some(130429 | 131048 | 131056 | 4 | 80007) => SendError::Throttled { retry_after: retry_after(headers) },
        // Outside the 24-hour window (131047), template problems (132xxx: missing, paused,
        // wrong parameter count or format), invalid parameter (100): the same message fails again.
        Some(131047 | 132000..=132999 | 100) => SendError::Permanent(what),
        // Something went wrong (131000), service unavailable (131016), unknown or service error (1, 2).
        Some(131000 | 131016 | 1 | 2) => SendError::Transient(what),
        // An expired or revoked access token (190, HTTP 401) or missing permissions (10, 2xx) is
        // permanent for this message but fails every message alike until an operator fixes the
        // secret: transient, so messages wait for the fix (within their retry budget) instead
        // of all failing at once.
        Some(190 | 0 | 10 | 200..=299) => SendError::Transient(format!("{what} (check the access token)")),
        _ if status == reqwest::StatusCode::UNAUTHORIZED => SendError::Transient(format!("{what} (check the access token)")),
        _ => match status_error(status, headers, "whatsapp") {
            // Other 4xx, and an error object on a 2xx with a code we do not know: nothing says
            // retrying helps.
            SendError::Permanent(_) => SendError::Permanent(what),
            SendError::Transient(_) => SendError::Transient(what),
            throttled => throttled,
        },
    }
}

#[derive(Clone)]
pub struct WhatsAppSender {
    client: reqwest::Client,
    base_url: String,
    phone_number_id: String,
    access_token: String,
}

impl std::fmt::Debug for WhatsAppSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WhatsAppSender")
            .field("base_url", &self.base_url)
            .field("phone_number_id", &self.phone_number_id)
            .field("access_token", &"<redacted>")
            .finish()
    }
}

impl WhatsAppSender {
    /// `client`: [`super::client::client`]; `base_url`: the Graph API with its version
    /// (`https://graph.facebook.com/v21.0`, a fake in tests); `phone_number_id`: the sending
    /// business number's id; `access_token`: a system user's token.
    pub fn new(client: reqwest::Client, base_url: String, phone_number_id: String, access_token: String) -> Self {
        let base_url = base_url.trim_end_matches('/').to_owned();
        Self { client, base_url, phone_number_id, access_token }
    }

    /// Sends one template message to an E.164 number.
    pub async fn send_template(&self, number: &str, template: &WhatsAppTemplate) -> Result<ProviderReceipt, SendError> {
        let to = recipient(number)?;
        let url = format!("{}/{}/messages", self.base_url, self.phone_number_id);
        let response = self
            .client
            .post(url)
            .bearer_auth(&self.access_token)
            .json(&template.message(&to))
            .send()
            .await
            .map_err(|e| transport_error(&e, "whatsapp"))?;
        let status = response.status();
        let headers = response.headers().clone();
        let answer = response.bytes().await.ok().and_then(|b| serde_json::from_slice::<Value>(&b).ok());
        let has_error = answer.as_ref().is_some_and(|a| a.get("error").is_some());
        if status.is_success() && !has_error {
            let id = answer.as_ref().and_then(|a| a.pointer("/messages/0/id")).and_then(Value::as_str);
            return Ok(match id {
                Some(id) => ProviderReceipt::new(PROVIDER, id),
                None => {
                    // A 2xx means Meta took the message: sending it again would send it twice.
                    // Record it as sent, without the id we could not read.
                    tracing::warn!(provider = PROVIDER, "whatsapp accepted the message but its answer had no message id");
                    ProviderReceipt::new(PROVIDER, "")
                }
            });
        }
        Err(classify(status, &headers, answer.as_ref()))
    }
}

#[async_trait]
impl ChannelSender for WhatsAppSender {
    async fn send(&self, d: Delivery<'_>) -> Result<ProviderReceipt, SendError> {
        let Address::Whatsapp { number } = d.address else {
            return Err(SendError::Permanent("not a whatsapp number".into()));
        };
        let template = WhatsAppTemplate::from_part(d.message.part("text"))?;
        self.send_template(number, &template).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::http::test_fixture::{DeliveryFixture, fake_never_called, send_timing_out};
    use crate::domain::Channel;
    use std::time::Duration;
    use wiremock::matchers::{body_json, header, method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    const TOKEN: &str = "EAAG-secret-token";
    const PART: &str = r#"{"template": "order_confirmation", "language": "en", "parameters": ["A-17", "59.90 EUR"]}"#;

    fn whatsapp(address: Address, text: &str) -> DeliveryFixture {
        DeliveryFixture::text(Channel::Whatsapp, address, text)
    }

    fn number(text: &str) -> DeliveryFixture {
        whatsapp(Address::Whatsapp { number: "+4915112345678".into() }, text)
    }

    fn sender(server: &MockServer, timeout: Duration) -> WhatsAppSender {
        WhatsAppSender::new(super::super::client::client(timeout), format!("{}/v21.0/", server.uri()), "1055".into(), TOKEN.into())
    }

    async fn answer(template: ResponseTemplate) -> Result<ProviderReceipt, SendError> {
        let server = MockServer::start().await;
        Mock::given(method("POST")).and(path("/v21.0/1055/messages")).respond_with(template).expect(1).mount(&server).await;
        sender(&server, Duration::from_secs(5)).send(number(PART).delivery()).await
    }

    fn error(status: u16, code: i64) -> ResponseTemplate {
        ResponseTemplate::new(status).set_body_json(json!({
            "error": {"message": format!("(#{code}) Something"), "type": "OAuthException", "code": code,
                      "error_data": {"messaging_product": "whatsapp", "details": "+4915112345678 is not …"}, "fbtrace_id": "Az"}
        }))
    }

    #[test]
    fn reads_the_template_part() {
        let template = WhatsAppTemplate::from_part(PART).unwrap();
        assert_eq!(
            template,
            WhatsAppTemplate { name: "order_confirmation".into(), language: "en".into(), parameters: vec!["A-17".into(), "59.90 EUR".into()] }
        );
        let scalars = WhatsAppTemplate::from_part(r#"{"template": "t", "language": "en_US", "parameters": [17, 59.9, true]}"#).unwrap();
        assert_eq!(scalars.parameters, ["17", "59.9", "true"]);
        assert_eq!(WhatsAppTemplate::from_part(r#"{"template": "t", "language": "en"}"#).unwrap().parameters, Vec::<String>::new());
    }

    #[test]
    fn refuses_a_part_that_is_not_the_template_json_without_quoting_it() {
        for part in [
            "Your order A-17 is confirmed",
            "",
            r#"{"template": "t"}"#,
            r#"{"template": "t", "language": "en", "parameters": "A-17"}"#,
            r#"{"template": "t", "language": "en", "parameters": [{"x": "A-17"}]}"#,
            r#"{"template": "t", "language": "en", "paramters": ["A-17"]}"#,
            r#"{"template": "", "language": "en"}"#,
            r#"["t", "en"]"#,
        ] {
            let Err(SendError::Permanent(why)) = WhatsAppTemplate::from_part(part) else { panic!("{part}") };
            assert!(why.starts_with(NOT_A_TEMPLATE), "{why}");
            assert!(!why.contains("A-17"), "{why}");
        }
    }

    #[test]
    fn builds_the_cloud_api_body() {
        let template = WhatsAppTemplate::from_part(PART).unwrap();
        assert_eq!(
            template.message("4915112345678"),
            json!({
                "messaging_product": "whatsapp",
                "to": "4915112345678",
                "type": "template",
                "template": {
                    "name": "order_confirmation",
                    "language": {"code": "en"},
                    "components": [{"type": "body", "parameters": [{"type": "text", "text": "A-17"}, {"type": "text", "text": "59.90 EUR"}]}]
                }
            })
        );
        let bare = WhatsAppTemplate { name: "hello_world".into(), language: "en_US".into(), parameters: vec![] };
        assert_eq!(bare.message("1")["template"], json!({"name": "hello_world", "language": {"code": "en_US"}}));
    }

    #[tokio::test]
    async fn sends_the_template_with_the_token_and_reads_the_message_id() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/v21.0/1055/messages"))
            .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
            .and(body_json(WhatsAppTemplate::from_part(PART).unwrap().message("4915112345678")))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "messaging_product": "whatsapp",
                "contacts": [{"input": "4915112345678", "wa_id": "4915112345678"}],
                "messages": [{"id": "wamid.HBgLNDkxNTExMjM0NTY3OBUCABEYEjA=", "message_status": "accepted"}]
            })))
            .expect(1)
            .mount(&server)
            .await;
        let receipt = sender(&server, Duration::from_secs(5)).send(number(PART).delivery()).await.unwrap();
        assert_eq!(receipt, ProviderReceipt::new("whatsapp", "wamid.HBgLNDkxNTExMjM0NTY3OBUCABEYEjA="));
    }

    #[tokio::test]
    async fn error_codes_map_to_what_retrying_can_do() {
        assert!(matches!(answer(error(400, 131026)).await, Err(SendError::Unreachable(_))));
        for code in [131047, 132000, 132001, 132012, 100] {
            let result = answer(error(400, code)).await;
            assert_eq!(result, Err(SendError::Permanent(format!("whatsapp: error {code} (#{code}) Something"))));
        }
        for code in [130429, 131048, 131056] {
            assert_eq!(answer(error(400, code)).await, Err(SendError::Throttled { retry_after: None }), "{code}");
        }
        for code in [131000, 131016] {
            assert!(matches!(answer(error(500, code)).await, Err(SendError::Transient(_))), "{code}");
        }
        let result = answer(error(401, 190)).await;
        let Err(SendError::Transient(why)) = result else { panic!("{result:?}") };
        assert!(why.contains("access token") && !why.contains(TOKEN), "{why}");
        // A code we do not know: the status decides.
        assert!(matches!(answer(error(400, 131009)).await, Err(SendError::Permanent(_))));
        assert!(matches!(answer(error(503, 999)).await, Err(SendError::Transient(_))));
        // The details (which may quote the recipient) are never copied.
        let Err(SendError::Unreachable(why)) = answer(error(400, 131026)).await else { unreachable!() };
        assert!(!why.contains("4915112345678"), "{why}");
    }

    #[tokio::test]
    async fn statuses_decide_without_an_error_body() {
        assert_eq!(
            answer(ResponseTemplate::new(429).insert_header("retry-after", "9")).await,
            Err(SendError::Throttled { retry_after: Some(Duration::from_secs(9)) })
        );
        assert_eq!(answer(ResponseTemplate::new(502)).await, Err(SendError::Transient("whatsapp: HTTP 502".into())));
        assert_eq!(answer(ResponseTemplate::new(404)).await, Err(SendError::Permanent("whatsapp: HTTP 404".into())));
        assert!(matches!(answer(ResponseTemplate::new(401)).await, Err(SendError::Transient(_))));
    }

    #[tokio::test]
    async fn a_timeout_is_transient() {
        let late = ResponseTemplate::new(200).set_delay(Duration::from_secs(5));
        let (_server, result) = send_timing_out(sender, late, number(PART).delivery()).await;
        assert_eq!(result, Err(SendError::Transient("whatsapp: timed out".into())));
    }

    /// A 2xx means Meta took the message, so an unreadable answer is still a send (retrying
    /// would send it twice), recorded without an id; an error object on a 2xx is an error.
    #[tokio::test]
    async fn an_unexpected_answer_on_200_is_a_send_without_an_id() {
        assert_eq!(answer(ResponseTemplate::new(200).set_body_string("<html>")).await, Ok(ProviderReceipt::new("whatsapp", "")));
        assert_eq!(answer(ResponseTemplate::new(200).set_body_json(json!({"messages": []}))).await, Ok(ProviderReceipt::new("whatsapp", "")));
        assert!(matches!(answer(error(200, 131026)).await, Err(SendError::Unreachable(_))));
        assert!(matches!(answer(error(200, 4242)).await, Err(SendError::Permanent(_))));
    }

    #[tokio::test]
    async fn bad_parts_numbers_and_addresses_are_refused_without_a_call() {
        let server = fake_never_called().await;
        let sender = sender(&server, Duration::from_secs(5));
        let result = sender.send(number("Your order shipped").delivery()).await;
        assert!(matches!(result, Err(SendError::Permanent(why)) if why.starts_with(NOT_A_TEMPLATE)));
        let fixture = whatsapp(Address::Whatsapp { number: "+49 151 1234".into() }, PART);
        assert_eq!(
            sender.send(fixture.delivery()).await,
            Err(SendError::Permanent("whatsapp: the recipient is not an E.164 number".into()))
        );
        let fixture = whatsapp(Address::Telegram { chat_id: "1".into() }, PART);
        assert_eq!(sender.send(fixture.delivery()).await, Err(SendError::Permanent("not a whatsapp number".into())));
    }
}
