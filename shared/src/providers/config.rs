//! A channel's providers as data: which, in what order, at what rate, with which credentials —
//! `NOTIFY_PROVIDERS` of a send function, a JSON list, first provider first:
//!
//! ```json
//! [{"provider": "ses", "rate_per_second": 14},
//!  {"provider": "sendgrid", "rate_per_second": 100, "secret_arn": "arn:aws:secretsmanager:…:secret:notify/sendgrid-api-key-…"}]
//! ```
//!
//! `secret_arn` names the Secrets Manager secret holding the provider's credential (SendGrid's
//! API key; Twilio's `account_sid:auth_token`); `api_url` overrides the provider's base URL (a
//! sandbox, a fake); `from` is the sender (SendGrid's From address, Twilio's number or `MG…`
//! Messaging Service). Adding or reordering providers is a configuration change, not a build.

use serde::Deserialize;

use crate::domain::Channel;

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderSpec {
    pub provider: String,
    /// Messages per second across every instance (paced through the rate-limits table); none:
    /// unpaced.
    #[serde(default)]
    pub rate_per_second: Option<u32>,
    #[serde(default)]
    pub secret_arn: Option<String>,
    #[serde(default)]
    pub api_url: Option<String>,
    #[serde(default)]
    pub from: Option<String>,
}

/// The providers each channel can use, and whether they need a secret.
fn known(channel: Channel) -> &'static [(&'static str, bool)] {
    match channel {
        Channel::Email => &[("ses", false), ("sendgrid", true)],
        Channel::Sms => &[("sns", false), ("twilio", true)],
        _ => &[],
    }
}

/// The default: the channel's AWS provider alone, unpaced.
pub fn default_providers(channel: Channel) -> Vec<ProviderSpec> {
    known(channel)
        .iter()
        .take(1)
        .map(|(name, _)| ProviderSpec { provider: (*name).to_owned(), rate_per_second: None, secret_arn: None, api_url: None, from: None })
        .collect()
}

/// Parses and checks `NOTIFY_PROVIDERS` for `channel`; the error says what is wrong (never a
/// secret: there is none in it, only ARNs).
pub fn parse_providers(text: &str, channel: Channel) -> Result<Vec<ProviderSpec>, String> {
    let specs: Vec<ProviderSpec> = serde_json::from_str(text).map_err(|e| format!("not a JSON list of providers: {e}"))?;
    if specs.is_empty() {
        return Err("lists no provider".into());
    }
    let names: Vec<&str> = known(channel).iter().map(|(n, _)| *n).collect();
    for (i, spec) in specs.iter().enumerate() {
        let Some((_, needs_secret)) = known(channel).iter().find(|(n, _)| *n == spec.provider) else {
            return Err(format!("provider {i} ({:?}) is not one of {names:?} for {channel}", spec.provider));
        };
        if *needs_secret && spec.secret_arn.as_deref().is_none_or(str::is_empty) {
            return Err(format!("provider {i} ({}) needs secret_arn", spec.provider));
        }
        if spec.rate_per_second == Some(0) {
            return Err(format!("provider {i} ({}): rate_per_second must be at least 1", spec.provider));
        }
        if specs[..i].iter().any(|s| s.provider == spec.provider) {
            return Err(format!("provider {i} ({}) is listed twice", spec.provider));
        }
    }
    Ok(specs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_of_providers_parses_in_order() {
        let specs = parse_providers(
            r#"[{"provider": "ses", "rate_per_second": 14}, {"provider": "sendgrid", "secret_arn": "arn:aws:secretsmanager:eu-west-1:1:secret:k", "from": "a@b.c"}]"#,
            Channel::Email,
        )
        .unwrap();
        assert_eq!(specs.iter().map(|s| s.provider.as_str()).collect::<Vec<_>>(), ["ses", "sendgrid"]);
        assert_eq!(specs[0].rate_per_second, Some(14));
        assert_eq!(default_providers(Channel::Sms)[0].provider, "sns");
    }

    #[test]
    fn mistakes_are_named() {
        for (text, says) in [
            ("nope", "not a JSON list"),
            ("[]", "no provider"),
            (r#"[{"provider": "twilio", "secret_arn": "x"}]"#, "is not one of"),
            (r#"[{"provider": "sendgrid"}]"#, "needs secret_arn"),
            (r#"[{"provider": "ses", "rate_per_second": 0}]"#, "at least 1"),
            (r#"[{"provider": "ses"}, {"provider": "ses"}]"#, "listed twice"),
            (r#"[{"provider": "ses", "colour": "red"}]"#, "unknown field"),
        ] {
            let e = parse_providers(text, Channel::Email).unwrap_err();
            assert!(e.contains(says), "{text}: {e}");
        }
    }
}
