//! Configuration read once at start-up from the environment, failing with the variable's name.

use std::collections::HashMap;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("environment variable {0} is not set")]
    Missing(&'static str),
    #[error("environment variable {name} is invalid: {reason}")]
    Invalid { name: &'static str, reason: String },
}

/// The variables every deployment uses; `template.yaml` sets the same names.
pub mod vars {
    /// Queue URL = prefix + logical queue name (`send-email-fast.fifo`).
    pub const QUEUE_URL_PREFIX: &str = "NOTIFY_QUEUE_URL_PREFIX";
    pub const IDEMPOTENCY_TABLE: &str = "NOTIFY_IDEMPOTENCY_TABLE";
    pub const EVENTS_TABLE: &str = "NOTIFY_EVENTS_TABLE";
    pub const NOTIFICATIONS_TABLE: &str = "NOTIFY_NOTIFICATIONS_TABLE";
    pub const USERS_TABLE: &str = "NOTIFY_USERS_TABLE";
    pub const CONNECTIONS_TABLE: &str = "NOTIFY_CONNECTIONS_TABLE";
    /// Addresses not to send to any more (hard bounces, complaints).
    pub const SUPPRESSIONS_TABLE: &str = "NOTIFY_SUPPRESSIONS_TABLE";
    /// Sending rates shared by every instance of a function (one item per key and second).
    pub const RATE_LIMITS_TABLE: &str = "NOTIFY_RATE_LIMITS_TABLE";
    /// Jobs the pipeline gave up on, listed and replayed through the API.
    pub const DEAD_LETTERS_TABLE: &str = "NOTIFY_DEAD_LETTERS_TABLE";
    /// Comma-separated hex SHA-256 of the accepted API keys (never the keys themselves).
    pub const API_KEY_HASHES: &str = "NOTIFY_API_KEY_HASHES";
    /// Comma-separated plain API keys (local use only).
    pub const API_KEYS: &str = "NOTIFY_API_KEYS";
    /// The key directory table: every tenant's API keys, hashed, and each tenant's settings.
    pub const API_KEYS_TABLE: &str = "NOTIFY_API_KEYS_TABLE";
    /// Browser origins allowed to call `/v1/me/...` (CORS), comma-separated.
    pub const CORS_ORIGINS: &str = "NOTIFY_CORS_ORIGINS";
    /// The user-token signing key itself (local use; on AWS it comes from Secrets Manager).
    pub const WS_TOKEN_SECRET: &str = "NOTIFY_WS_TOKEN_SECRET";
    /// The Secrets Manager secret holding the user-token signing key (at least 32 bytes).
    pub const WS_TOKEN_SECRET_ARN: &str = "NOTIFY_WS_TOKEN_SECRET_ARN";
    pub const WS_TOKEN_TTL_SECONDS: &str = "NOTIFY_WS_TOKEN_TTL_SECONDS";
    /// Overrides the catalog compiled into the functions.
    pub const CATALOG_DIR: &str = "NOTIFY_CATALOG_DIR";
    pub const EMAIL_FROM: &str = "NOTIFY_EMAIL_FROM";
    pub const SES_CONFIGURATION_SET: &str = "NOTIFY_SES_CONFIGURATION_SET";
    pub const SMS_SENDER_ID: &str = "NOTIFY_SMS_SENDER_ID";
    pub const PUSH_FCM_APPLICATION_ARN: &str = "NOTIFY_PUSH_FCM_APPLICATION_ARN";
    pub const PUSH_APNS_APPLICATION_ARN: &str = "NOTIFY_PUSH_APNS_APPLICATION_ARN";
    /// `https://{api-id}.execute-api.{region}.amazonaws.com/{stage}`.
    pub const WS_MANAGEMENT_ENDPOINT: &str = "NOTIFY_WS_MANAGEMENT_ENDPOINT";
    pub const RETRY_BASE_MS: &str = "NOTIFY_RETRY_BASE_MS";
    pub const RETRY_MAX_MS: &str = "NOTIFY_RETRY_MAX_MS";
    /// A sender's provider attempts before a notification fails as `retries_exhausted`.
    pub const RETRY_MAX_ATTEMPTS: &str = "NOTIFY_RETRY_MAX_ATTEMPTS";
    /// The CloudWatch namespace of the functions' metrics (`Notify` when unset).
    pub const METRICS_NAMESPACE: &str = "NOTIFY_METRICS_NAMESPACE";
    /// Events per second each API key may submit (unset or 0: unlimited).
    pub const INGEST_RATE_PER_KEY: &str = "NOTIFY_INGEST_RATE_PER_KEY";
    /// The producer's status callback URL: every final status is POSTed there, signed.
    pub const STATUS_CALLBACK_URL: &str = "NOTIFY_STATUS_CALLBACK_URL";
    /// A send function's providers, in order, as JSON (see `providers::config`).
    pub const PROVIDERS: &str = "NOTIFY_PROVIDERS";
    /// Base URL of the Telegram Bot API.
    pub const TELEGRAM_API_URL: &str = "NOTIFY_TELEGRAM_API_URL";
    /// The Secrets Manager secret holding the Telegram bot token.
    pub const TELEGRAM_TOKEN_SECRET_ARN: &str = "NOTIFY_TELEGRAM_TOKEN_SECRET_ARN";
    /// Base URL of the WhatsApp Cloud API, with its version.
    pub const WHATSAPP_API_URL: &str = "NOTIFY_WHATSAPP_API_URL";
    pub const WHATSAPP_PHONE_NUMBER_ID: &str = "NOTIFY_WHATSAPP_PHONE_NUMBER_ID";
    /// The Secrets Manager secret holding the WhatsApp access token.
    pub const WHATSAPP_TOKEN_SECRET_ARN: &str = "NOTIFY_WHATSAPP_TOKEN_SECRET_ARN";
    /// The Secrets Manager secret holding the webhook signing key.
    pub const WEBHOOK_SECRET_ARN: &str = "NOTIFY_WEBHOOK_SECRET_ARN";
    /// The API's public address (`https://{api-id}.execute-api.{region}.amazonaws.com`): the
    /// router puts `{it}/v1/unsubscribe/{token}` in every non-transactional email.
    pub const PUBLIC_BASE_URL: &str = "NOTIFY_PUBLIC_BASE_URL";

    /// Every variable above as (constant name, variable name), so tooling and tests can check
    /// that a deployment (template.yaml) sets only names the code reads.
    pub const ALL: &[(&str, &str)] = &[
        ("QUEUE_URL_PREFIX", QUEUE_URL_PREFIX),
        ("IDEMPOTENCY_TABLE", IDEMPOTENCY_TABLE),
        ("EVENTS_TABLE", EVENTS_TABLE),
        ("NOTIFICATIONS_TABLE", NOTIFICATIONS_TABLE),
        ("USERS_TABLE", USERS_TABLE),
        ("CONNECTIONS_TABLE", CONNECTIONS_TABLE),
        ("SUPPRESSIONS_TABLE", SUPPRESSIONS_TABLE),
        ("RATE_LIMITS_TABLE", RATE_LIMITS_TABLE),
        ("DEAD_LETTERS_TABLE", DEAD_LETTERS_TABLE),
        ("API_KEY_HASHES", API_KEY_HASHES),
        ("API_KEYS", API_KEYS),
        ("API_KEYS_TABLE", API_KEYS_TABLE),
        ("CORS_ORIGINS", CORS_ORIGINS),
        ("WS_TOKEN_SECRET", WS_TOKEN_SECRET),
        ("WS_TOKEN_SECRET_ARN", WS_TOKEN_SECRET_ARN),
        ("WS_TOKEN_TTL_SECONDS", WS_TOKEN_TTL_SECONDS),
        ("CATALOG_DIR", CATALOG_DIR),
        ("EMAIL_FROM", EMAIL_FROM),
        ("SES_CONFIGURATION_SET", SES_CONFIGURATION_SET),
        ("SMS_SENDER_ID", SMS_SENDER_ID),
        ("PUSH_FCM_APPLICATION_ARN", PUSH_FCM_APPLICATION_ARN),
        ("PUSH_APNS_APPLICATION_ARN", PUSH_APNS_APPLICATION_ARN),
        ("WS_MANAGEMENT_ENDPOINT", WS_MANAGEMENT_ENDPOINT),
        ("RETRY_BASE_MS", RETRY_BASE_MS),
        ("RETRY_MAX_MS", RETRY_MAX_MS),
        ("RETRY_MAX_ATTEMPTS", RETRY_MAX_ATTEMPTS),
        ("METRICS_NAMESPACE", METRICS_NAMESPACE),
        ("INGEST_RATE_PER_KEY", INGEST_RATE_PER_KEY),
        ("STATUS_CALLBACK_URL", STATUS_CALLBACK_URL),
        ("PROVIDERS", PROVIDERS),
        ("TELEGRAM_API_URL", TELEGRAM_API_URL),
        ("TELEGRAM_TOKEN_SECRET_ARN", TELEGRAM_TOKEN_SECRET_ARN),
        ("WHATSAPP_API_URL", WHATSAPP_API_URL),
        ("WHATSAPP_PHONE_NUMBER_ID", WHATSAPP_PHONE_NUMBER_ID),
        ("WHATSAPP_TOKEN_SECRET_ARN", WHATSAPP_TOKEN_SECRET_ARN),
        ("WEBHOOK_SECRET_ARN", WEBHOOK_SECRET_ARN),
        ("PUBLIC_BASE_URL", PUBLIC_BASE_URL),
    ];

    #[cfg(test)]
    mod tests {
        #[test]
        fn all_lists_every_constant_once_under_its_own_name() {
            let source = include_str!("config.rs");
            let module = &source[source.find("pub mod vars").unwrap()..source.find("pub const ALL").unwrap()];
            let declared: Vec<&str> =
                module.lines().filter_map(|l| l.trim().strip_prefix("pub const ")).map(|l| l.split(':').next().unwrap()).collect();
            let listed: Vec<&str> = super::ALL.iter().map(|(name, _)| *name).collect();
            assert_eq!(declared, listed, "vars::ALL must list every constant, in order");
            for (name, value) in super::ALL {
                assert_eq!(*value, format!("NOTIFY_{name}"), "{name}");
            }
        }
    }
}

/// A snapshot of the environment (or a map in tests).
#[derive(Clone, Debug, Default)]
pub struct Env {
    values: HashMap<String, String>,
}

impl Env {
    pub fn from_process() -> Self {
        Self { values: std::env::vars().collect() }
    }

    pub fn from_pairs<I: IntoIterator<Item = (K, V)>, K: Into<String>, V: Into<String>>(pairs: I) -> Self {
        Self { values: pairs.into_iter().map(|(k, v)| (k.into(), v.into())).collect() }
    }

    pub fn optional(&self, name: &'static str) -> Option<String> {
        self.values.get(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
    }

    pub fn required(&self, name: &'static str) -> Result<String, ConfigError> {
        self.optional(name).ok_or(ConfigError::Missing(name))
    }

    pub fn number(&self, name: &'static str, default: u64) -> Result<u64, ConfigError> {
        match self.optional(name) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|_| ConfigError::Invalid { name, reason: format!("{v:?} is not a whole number") }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_and_invalid_variables_are_named() {
        let env = Env::from_pairs([("A", "1"), ("B", "x"), ("C", "  ")]);
        assert_eq!(env.required(vars::EVENTS_TABLE), Err(ConfigError::Missing("NOTIFY_EVENTS_TABLE")));
        assert!(env.required(vars::EVENTS_TABLE).unwrap_err().to_string().contains("NOTIFY_EVENTS_TABLE"));
        assert_eq!(env.optional("C"), None);
        assert_eq!(Env::from_pairs([(vars::RETRY_BASE_MS, "x")]).number(vars::RETRY_BASE_MS, 5).unwrap_err().to_string(),
            "environment variable NOTIFY_RETRY_BASE_MS is invalid: \"x\" is not a whole number");
        assert_eq!(env.number(vars::RETRY_BASE_MS, 5), Ok(5));
    }
}
