//! Redaction of free text that came from outside (provider error messages, SDK errors, parse
//! errors) before it is logged or stored: providers quote the recipient (SES `MessageRejected`
//! names the address, Twilio the number, chat APIs the chat id), and a parse error may quote a
//! field's value. Every e-mail address, phone number, URL and token-like string is replaced by
//! `<redacted:xxxxxxxx>`, the first 8 hex digits of its SHA-256: stable, so the same address is
//! recognisable across lines without being readable.
//!
//! The choke points that use it: [`crate::ports::SendError`]'s `Display` (every log of a provider
//! error), [`crate::domain::Transition::last_error`] (every stored error, which the API shows),
//! store and queue errors, and unreadable-message errors.

use regex::Regex;
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::sync::LazyLock;

/// What is redacted, in one pass (alternatives tried left to right at each position).
static SENSITIVE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(concat!(
        // URLs (webhook targets, links with tokens).
        r"(?i)\b(?:https?|wss?)://[^\s<>\x22']+",
        // E-mail addresses.
        r"|[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)+",
        // Phone numbers: an optional +, then 7 or more digits, possibly grouped.
        r"|\+?\d(?:[\s().\-]?\d){6,}",
        // Token-like runs (push tokens, API keys, bot tokens, chat ids of 20+ characters).
        r"|[A-Za-z0-9_\-:]{24,}",
    ))
    .expect("a valid pattern")
});

/// `text` with every sensitive-looking part replaced by `<redacted:xxxxxxxx>`.
pub fn redact(text: &str) -> Cow<'_, str> {
    SENSITIVE.replace_all(text, |caps: &regex::Captures<'_>| {
        let digest = Sha256::digest(caps[0].as_bytes());
        format!("<redacted:{}>", &hex::encode(digest)[..8])
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_numbers_urls_and_tokens_are_replaced_by_a_stable_hash() {
        let ses = "MessageRejected: Email address is not verified. The following identities failed the check in region US-EAST-1: Olena.K+news@example.co.uk";
        let redacted = redact(ses);
        assert!(!redacted.contains("Olena") && !redacted.contains("example.co.uk"), "{redacted}");
        assert!(redacted.starts_with("MessageRejected: Email address is not verified."), "the provider's words stay: {redacted}");
        assert_eq!(redact(ses), redacted, "stable");
        for secret in ["+380 50 123 45 67", "+380501234567", "(050) 123-4567", "https://hooks.example.com/x?token=abc", "fcm:APA91bHun4MxP5egoKMwt2KZFBaFUH-1RYqx", "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"] {
            let text = format!("twilio error 21211: invalid 'To' number {secret}, see docs");
            let out = redact(&text);
            assert!(!out.contains(secret), "{secret}: {out}");
            assert!(out.contains("<redacted:"), "{out}");
        }
    }

    #[test]
    fn ordinary_error_text_is_left_alone() {
        for text in ["HTTP 503 Service Unavailable", "timeout after 10 s", "Throttling: Rate exceeded", "twilio error 21211: HTTP 400 Bad Request"] {
            assert_eq!(redact(text), text);
        }
    }
}
