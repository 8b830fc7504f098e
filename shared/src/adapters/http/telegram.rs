//! Telegram Bot API: `TelegramSender` sends a notification's `text` part to a chat with
//! `POST {base}/bot{token}/sendMessage`, in HTML parse mode (the plain text of the template is
//! escaped, see [`escape_html`]) and without link previews.
//!
//! The bot token is part of the URL, so no error string or log line is ever built from the URL
//! or from a `reqwest::Error` (whose `Display` names the URL); `Debug` hides the token too.

use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};

use super::client::{MAX_RETRY_AFTER, retry_after, transport_error};
use crate::ports::{Address, ChannelSender, Delivery, ProviderReceipt, SendError};

/// The provider name recorded on the notifications Telegram delivers.
pub const PROVIDER: &str = "telegram";

/// What Telegram's `description` says when the chat cannot receive messages from the bot,
/// whatever the status: the user blocked the bot, deleted their account, never started it.
const UNREACHABLE_DESCRIPTIONS: [&str; 5] =
    ["bot was blocked by the user", "user is deactivated", "chat not found", "user not found", "bot was kicked"];

#[derive(Clone)]
pub struct TelegramSender {
    client: reqwest::Client,
    base_url: String,
    bot_token: String,
}

impl std::fmt::Debug for TelegramSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TelegramSender").field("base_url", &self.base_url).field("bot_token", &"<redacted>").finish()
    }
}

impl TelegramSender {
    /// `client`: [`super::client::client`]; `base_url`: `https://api.telegram.org` (a fake in
    /// tests); `bot_token`: the token BotFather gave (`123456:ABC-…`).
    pub fn new(client: reqwest::Client, base_url: String, bot_token: String) -> Self {
        let base_url = base_url.trim_end_matches('/').to_owned();
        Self { client, base_url, bot_token }
    }

    /// Anything Telegram says, kept short and without the token (should it ever echo it).
    fn sanitize(&self, text: &str) -> String {
        let text: String = text.chars().take(200).collect();
        if self.bot_token.is_empty() { text } else { text.replace(&self.bot_token, "<token>") }
    }

    /// The error one of Telegram's answers means. Telegram puts the reason in the body
    /// (`{"ok":false,"error_code":403,"description":"Forbidden: …","parameters":{"retry_after":5}}`);
    /// without a readable body the HTTP status decides.
    fn classify(&self, status: reqwest::StatusCode, headers: &reqwest::header::HeaderMap, body: Option<&Value>) -> SendError {
        let code = body
            .and_then(|b| b.get("error_code"))
            .and_then(Value::as_u64)
            .and_then(|c| u16::try_from(c).ok())
            .unwrap_or(status.as_u16());
        let said = body
            .and_then(|b| b.get("description"))
            .and_then(Value::as_str)
            .map(|d| self.sanitize(d))
            .unwrap_or_else(|| format!("HTTP {}", status.as_u16()));
        let lowered = said.to_ascii_lowercase();
        if code == 429 {
            // Telegram says how long in the body; the header is the fallback.
            let asked = body
                .and_then(|b| b.pointer("/parameters/retry_after"))
                .and_then(Value::as_u64)
                .map(|s| Duration::from_secs(s).min(MAX_RETRY_AFTER));
            return SendError::Throttled { retry_after: asked.or_else(|| retry_after(headers)) };
        }
        // 403 is always about the recipient (blocked, deactivated, kicked, bots cannot write to
        // bots); "chat not found" / "user not found" come as 400.
        if code == 403 || UNREACHABLE_DESCRIPTIONS.iter().any(|d| lowered.contains(d)) {
            return SendError::Unreachable(format!("telegram: {said}"));
        }
        match code {
            // A revoked (401) or malformed (404) bot token fails every message alike: retried as
            // transient, so messages wait (within their retry budget) for an operator to fix the
            // secret rather than all failing at once.
            401 | 404 => SendError::Transient(format!("telegram: the bot token was refused ({said})")),
            408 | 500..=599 => SendError::Transient(format!("telegram: {said}")),
            // Other 4xx, and anything else that is not a success (a 3xx: redirects are not followed).
            _ => SendError::Permanent(format!("telegram: {said}")),
        }
    }
}

/// Escapes plain text for Telegram's HTML parse mode: `&`, `<` and `>` are the only characters
/// it requires as entities (quotes matter only inside attributes, which plain text has none of).
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

/// A numeric chat id is sent as a number, a `@channelusername` as a string.
fn chat_id_value(chat_id: &str) -> Value {
    match chat_id.parse::<i64>() {
        Ok(id) => json!(id),
        Err(_) => json!(chat_id),
    }
}

#[async_trait]
impl ChannelSender for TelegramSender {
    async fn send(&self, d: Delivery<'_>) -> Result<ProviderReceipt, SendError> {
        let Address::Telegram { chat_id } = d.address else {
            return Err(SendError::Permanent("not a telegram chat".into()));
        };
        let text = d.message.part("text");
        if text.trim().is_empty() {
            return Err(SendError::Permanent("telegram: the text part is empty".into()));
        }
        let body = json!({
            "chat_id": chat_id_value(chat_id),
            "text": escape_html(text),
            "parse_mode": "HTML",
            "disable_web_page_preview": true,
        });
        let url = format!("{}/bot{}/sendMessage", self.base_url, self.bot_token);
        // `transport_error` names the kind of failure only, never the URL (it holds the token).
        let response = self.client.post(url).json(&body).send().await.map_err(|e| transport_error(&e, "telegram"))?;
        let status = response.status();
        let headers = response.headers().clone();
        let answer = response.bytes().await.ok().and_then(|b| serde_json::from_slice::<Value>(&b).ok());
        let ok = answer.as_ref().and_then(|a| a.get("ok")).and_then(Value::as_bool);
        if status.is_success() && ok != Some(false) {
            let message_id = answer.as_ref().and_then(|a| a.pointer("/result/message_id")).and_then(Value::as_i64);
            return Ok(match message_id {
                Some(id) => ProviderReceipt::new(PROVIDER, id.to_string()),
                None => {
                    // A 200 means Telegram took the message: sending it again would send it twice.
                    // Record it as sent, without the id we could not read.
                    tracing::warn!(provider = PROVIDER, "telegram accepted the message but its answer had no message_id");
                    ProviderReceipt::new(PROVIDER, "")
                }
            });
        }
        Err(self.classify(status, &headers, answer.as_ref()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::http::test_fixture::{DeliveryFixture, fake_never_called, send_timing_out};
    use crate::domain::Channel;
    use wiremock::matchers::{body_json, method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    const TOKEN: &str = "123456:SECRET-token";

    fn telegram(address: Address, text: &str) -> DeliveryFixture {
        DeliveryFixture::text(Channel::Telegram, address, text)
    }

    fn chat(text: &str) -> DeliveryFixture {
        telegram(Address::Telegram { chat_id: "4242".into() }, text)
    }

    fn sender(server: &MockServer, timeout: Duration) -> TelegramSender {
        TelegramSender::new(super::super::client::client(timeout), format!("{}/", server.uri()), TOKEN.into())
    }

    async fn answer(template: ResponseTemplate) -> (MockServer, Result<ProviderReceipt, SendError>) {
        let server = MockServer::start().await;
        Mock::given(method("POST")).and(path(format!("/bot{TOKEN}/sendMessage"))).respond_with(template).expect(1).mount(&server).await;
        let result = sender(&server, Duration::from_secs(5)).send(chat("hi").delivery()).await;
        (server, result)
    }

    fn error(code: u16, description: &str) -> ResponseTemplate {
        ResponseTemplate::new(code).set_body_json(json!({"ok": false, "error_code": code, "description": description}))
    }

    #[test]
    fn escapes_what_html_parse_mode_requires() {
        assert_eq!(escape_html("Total < 5 & > 2 <b>\"x\"</b> — ок"), "Total &lt; 5 &amp; &gt; 2 &lt;b&gt;\"x\"&lt;/b&gt; — ок");
        assert_eq!(escape_html("&amp;"), "&amp;amp;", "already escaped text is plain text too");
        assert_eq!(escape_html(""), "");
    }

    #[tokio::test]
    async fn sends_the_escaped_text_in_html_mode_and_reads_the_message_id() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path(format!("/bot{TOKEN}/sendMessage")))
            .and(body_json(json!({
                "chat_id": 4242,
                "text": "Order A-17 &lt;paid&gt; &amp; shipped",
                "parse_mode": "HTML",
                "disable_web_page_preview": true,
            })))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "ok": true,
                "result": {"message_id": 123, "date": 1700000000, "chat": {"id": 4242, "type": "private"}, "text": "…"}
            })))
            .expect(1)
            .mount(&server)
            .await;
        let fixture = chat("Order A-17 <paid> & shipped");
        let receipt = sender(&server, Duration::from_secs(5)).send(fixture.delivery()).await.unwrap();
        assert_eq!(receipt, ProviderReceipt::new("telegram", "123"));
    }

    #[tokio::test]
    async fn a_channel_username_is_sent_as_a_string() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(wiremock::matchers::body_partial_json(json!({"chat_id": "@acme_news"})))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({"ok": true, "result": {"message_id": 7}})))
            .expect(1)
            .mount(&server)
            .await;
        let fixture = telegram(Address::Telegram { chat_id: "@acme_news".into() }, "hi");
        assert_eq!(sender(&server, Duration::from_secs(5)).send(fixture.delivery()).await.unwrap().message_id, "7");
    }

    #[tokio::test]
    async fn recipients_who_cannot_be_reached_are_unreachable() {
        for (code, description) in [
            (403, "Forbidden: bot was blocked by the user"),
            (403, "Forbidden: user is deactivated"),
            (403, "Forbidden: bot can't initiate conversation with a user"),
            (400, "Bad Request: chat not found"),
        ] {
            let (_server, result) = answer(error(code, description)).await;
            assert_eq!(result, Err(SendError::Unreachable(format!("telegram: {description}"))), "{code} {description}");
        }
    }

    #[tokio::test]
    async fn other_client_errors_are_permanent() {
        let (_server, result) = answer(error(400, "Bad Request: message is too long")).await;
        assert_eq!(result, Err(SendError::Permanent("telegram: Bad Request: message is too long".into())));
    }

    #[tokio::test]
    async fn too_many_requests_waits_as_the_body_asks() {
        let body = json!({"ok": false, "error_code": 429, "description": "Too Many Requests: retry after 17", "parameters": {"retry_after": 17}});
        let (_server, result) = answer(ResponseTemplate::new(429).set_body_json(body)).await;
        assert_eq!(result, Err(SendError::Throttled { retry_after: Some(Duration::from_secs(17)) }));
        // No body parameter: the Retry-After header, then nothing.
        let (_server, result) = answer(ResponseTemplate::new(429).insert_header("retry-after", "3")).await;
        assert_eq!(result, Err(SendError::Throttled { retry_after: Some(Duration::from_secs(3)) }));
        let (_server, result) = answer(ResponseTemplate::new(429)).await;
        assert_eq!(result, Err(SendError::Throttled { retry_after: None }));
    }

    #[tokio::test]
    async fn server_errors_are_transient() {
        let (_server, result) = answer(ResponseTemplate::new(502).set_body_string("<html>Bad Gateway</html>")).await;
        assert_eq!(result, Err(SendError::Transient("telegram: HTTP 502".into())));
        let (_server, result) = answer(error(500, "Internal Server Error")).await;
        assert_eq!(result, Err(SendError::Transient("telegram: Internal Server Error".into())));
    }

    #[tokio::test]
    async fn a_refused_token_is_transient_and_never_named() {
        let (_server, result) = answer(error(401, "Unauthorized")).await;
        let Err(SendError::Transient(why)) = result else { panic!("{result:?}") };
        assert!(!why.contains(TOKEN), "{why}");
        // Even should Telegram echo it.
        let (_server, result) = answer(error(400, &format!("Bad Request: bot{TOKEN} is odd"))).await;
        assert_eq!(result, Err(SendError::Permanent("telegram: Bad Request: bot<token> is odd".into())));
    }

    #[tokio::test]
    async fn a_timeout_is_transient_and_does_not_name_the_url() {
        let late = ResponseTemplate::new(200).set_delay(Duration::from_secs(5));
        let (server, result) = send_timing_out(sender, late, chat("hi").delivery()).await;
        assert_eq!(result, Err(SendError::Transient("telegram: timed out".into())));
        assert!(!format!("{:?}", sender(&server, Duration::from_secs(1))).contains(TOKEN));
    }

    /// A 200 means Telegram took the message, so an unreadable answer is still a send (retrying
    /// would send it twice), recorded without an id; a 200 that says `ok:false` is an error.
    #[tokio::test]
    async fn an_unexpected_answer_on_200_is_a_send_without_an_id() {
        let (_server, result) = answer(ResponseTemplate::new(200).set_body_string("not json")).await;
        assert_eq!(result, Ok(ProviderReceipt::new("telegram", "")));
        let (_server, result) = answer(ResponseTemplate::new(200).set_body_json(json!({"ok": true, "result": true}))).await;
        assert_eq!(result, Ok(ProviderReceipt::new("telegram", "")));
        let body = json!({"ok": false, "error_code": 403, "description": "Forbidden: bot was blocked by the user"});
        let (_server, result) = answer(ResponseTemplate::new(200).set_body_json(body)).await;
        assert!(matches!(result, Err(SendError::Unreachable(_))), "{result:?}");
    }

    #[tokio::test]
    async fn other_addresses_and_empty_text_are_refused_without_a_call() {
        let server = fake_never_called().await;
        let sender = sender(&server, Duration::from_secs(5));
        let fixture = telegram(Address::Email { to: "a@example.com".into() }, "hi");
        assert_eq!(sender.send(fixture.delivery()).await, Err(SendError::Permanent("not a telegram chat".into())));
        let fixture = chat("  ");
        assert!(matches!(sender.send(fixture.delivery()).await, Err(SendError::Permanent(_))));
    }
}
