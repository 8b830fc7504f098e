//! Providers reached over HTTP APIs (reqwest): chat (Telegram Bot API, WhatsApp Cloud API),
//! webhooks (Standard Webhooks), and the second providers of email (SendGrid) and SMS (Twilio).
//! Each is tested against a local fake (wiremock).

pub mod client;
pub mod sendgrid;
pub mod telegram;
#[cfg(test)]
pub(crate) mod test_fixture;
pub mod twilio;
pub mod webhook;
pub mod whatsapp;
