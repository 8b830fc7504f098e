//! One-click unsubscribe links (RFC 8058): `{public base URL}/v1/unsubscribe/{token}`, where the
//! token is a JWT (HS256) binding the user id and the category, audience `notify-unsubscribe`,
//! valid for [`DEFAULT_UNSUBSCRIBE_TTL`] (90 days: a newsletter is read, and unsubscribed from,
//! long after it was sent).
//!
//! ## The signing key
//!
//! No secret of its own: the key is derived from the user-token secret (`WsTokenSecret` in
//! Secrets Manager, the key of the WebSocket tokens) with HMAC-SHA256 under a purpose label,
//!
//! ```text
//! unsubscribe key = HMAC-SHA256(key = user-token secret, message = "notify/unsubscribe-link/v1")
//! ```
//!
//! so one secret serves both, and neither kind of token verifies as the other (different keys,
//! and different audiences besides). Rotating the user-token secret invalidates the unsubscribe
//! links of every email already sent (they then answer "invalid or expired"); the label's `v1`
//! is where a second key could be introduced without that.

use jiff::Timestamp;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use std::time::Duration;

use crate::catalog::EventType;
use crate::domain::UserId;

/// The purpose label the unsubscribe key is derived under.
pub const PURPOSE: &[u8] = b"notify/unsubscribe-link/v1";
const AUDIENCE: &str = "notify-unsubscribe";
/// How long an unsubscribe link works.
pub const DEFAULT_UNSUBSCRIBE_TTL: Duration = Duration::from_secs(90 * 24 * 60 * 60);
/// The path the links point at, before the token.
pub const PATH_PREFIX: &str = "/v1/unsubscribe/";

/// RFC 8058: the header naming the link, and the one saying a `POST` to it unsubscribes.
pub const LIST_UNSUBSCRIBE: &str = "List-Unsubscribe";
pub const LIST_UNSUBSCRIBE_POST: &str = "List-Unsubscribe-Post";
pub const ONE_CLICK: &str = "List-Unsubscribe=One-Click";

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    /// The category the link opts out of.
    cat: String,
    aud: String,
    iat: i64,
    exp: i64,
}

/// What a valid link stands for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unsubscribe {
    pub user_id: UserId,
    pub category: String,
}

#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
pub enum UnsubscribeTokenError {
    #[error("unsubscribe link expired")]
    Expired,
    /// Not ours, tampered with, or not an unsubscribe token.
    #[error("unsubscribe link invalid")]
    Invalid,
}

/// Mints and verifies unsubscribe tokens.
#[derive(Clone)]
pub struct UnsubscribeTokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    ttl: Duration,
}

impl std::fmt::Debug for UnsubscribeTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UnsubscribeTokens").field("ttl", &self.ttl).finish_non_exhaustive()
    }
}

/// The unsubscribe key derived from the user-token secret (see the module's documentation).
pub fn derive_key(user_token_secret: &[u8]) -> [u8; 32] {
    crate::adapters::http::webhook::hmac_sha256(user_token_secret, PURPOSE)
}

impl UnsubscribeTokens {
    /// Tokens signed with the key derived from `user_token_secret` (at least 32 bytes, as for
    /// the WebSocket tokens).
    pub fn from_user_token_secret(user_token_secret: &[u8], ttl: Duration) -> Result<Self, String> {
        if user_token_secret.len() < 32 {
            return Err("the user-token secret must be at least 32 bytes".into());
        }
        let key = derive_key(user_token_secret);
        Ok(Self { encoding: EncodingKey::from_secret(&key), decoding: DecodingKey::from_secret(&key), ttl })
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// A token opting `user` out of `category`. The user id is signed as the notification
    /// carries it, whatever its shape.
    pub fn mint(&self, user: &UserId, category: &str, now: Timestamp) -> String {
        let claims = Claims {
            sub: user.as_str().to_owned(),
            cat: category.to_owned(),
            aud: AUDIENCE.into(),
            iat: now.as_second(),
            exp: now.as_second() + self.ttl.as_secs() as i64,
        };
        // HMAC signing of a small serializable struct does not fail.
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding).unwrap_or_default()
    }

    /// What the token stands for, if it is ours, an unsubscribe token and unexpired at `now`.
    pub fn verify(&self, token: &str, now: Timestamp) -> Result<Unsubscribe, UnsubscribeTokenError> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_audience(&[AUDIENCE]);
        validation.validate_exp = false; // checked below against the injected clock
        validation.set_required_spec_claims(&["exp", "sub", "aud"]);
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation).map_err(|_| UnsubscribeTokenError::Invalid)?;
        if data.claims.exp <= now.as_second() {
            return Err(UnsubscribeTokenError::Expired);
        }
        if data.claims.cat.is_empty() {
            return Err(UnsubscribeTokenError::Invalid);
        }
        // The stored form, tenant prefix and all.
        let user_id = UserId::parse_stored(&data.claims.sub).map_err(|_| UnsubscribeTokenError::Invalid)?;
        Ok(Unsubscribe { user_id, category: data.claims.cat })
    }
}

/// Builds the links the router puts on every non-transactional email.
#[derive(Clone, Debug)]
pub struct UnsubscribeLinks {
    tokens: UnsubscribeTokens,
    base_url: String,
}

impl UnsubscribeLinks {
    /// `base_url`: the public HTTPS address of the API (`http` is accepted for local use).
    pub fn new(tokens: UnsubscribeTokens, base_url: &str) -> Result<Self, String> {
        let base_url = base_url.trim().trim_end_matches('/');
        let ok = reqwest::Url::parse(base_url).is_ok_and(|u| matches!(u.scheme(), "https" | "http") && u.host_str().is_some_and(|h| !h.is_empty()));
        if !ok {
            return Err("must be an http(s) URL such as https://api.example.com".into());
        }
        Ok(Self { tokens, base_url: base_url.to_owned() })
    }

    pub fn link(&self, user: &UserId, category: &str, now: Timestamp) -> String {
        format!("{}{PATH_PREFIX}{}", self.base_url, self.tokens.mint(user, category, now))
    }

    /// The two RFC 8058 headers: `List-Unsubscribe: <link>` and `List-Unsubscribe-Post:
    /// List-Unsubscribe=One-Click`.
    pub fn headers(&self, user: &UserId, category: &str, now: Timestamp) -> [(&'static str, String); 2] {
        [(LIST_UNSUBSCRIBE, format!("<{}>", self.link(user, category, now))), (LIST_UNSUBSCRIBE_POST, ONE_CLICK.to_owned())]
    }
}

/// The category a recipient may unsubscribe from by email link: an event type's category,
/// unless the type is transactional (or has no category).
pub fn unsubscribe_category(event_type: &EventType) -> Option<&str> {
    if event_type.transactional { None } else { event_type.category.as_deref() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::WsTokens;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn now() -> Timestamp {
        Timestamp::from_second(1_800_000_000).unwrap()
    }

    fn tokens() -> UnsubscribeTokens {
        UnsubscribeTokens::from_user_token_secret(SECRET, DEFAULT_UNSUBSCRIBE_TTL).unwrap()
    }

    #[test]
    fn a_token_round_trips_user_and_category_whatever_the_user_ids_shape() {
        // A tenant-scoped id comes back as sent.
        for raw in ["u-42", "acme#u1"] {
            let user = UserId::parse_stored(raw).unwrap();
            let token = tokens().mint(&user, "marketing", now());
            assert_eq!(tokens().verify(&token, now()), Ok(Unsubscribe { user_id: user, category: "marketing".into() }));
            assert!(token.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)), "path-safe: {token}");
        }
    }

    #[test]
    fn a_token_expires_after_ninety_days() {
        let user = UserId::parse("u-1").unwrap();
        let token = tokens().mint(&user, "marketing", now());
        let almost = Timestamp::from_second(now().as_second() + DEFAULT_UNSUBSCRIBE_TTL.as_secs() as i64 - 1).unwrap();
        assert!(tokens().verify(&token, almost).is_ok());
        let expired = Timestamp::from_second(now().as_second() + DEFAULT_UNSUBSCRIBE_TTL.as_secs() as i64).unwrap();
        assert_eq!(tokens().verify(&token, expired), Err(UnsubscribeTokenError::Expired));
    }

    #[test]
    fn tampered_foreign_and_garbage_tokens_are_invalid() {
        let user = UserId::parse("u-1").unwrap();
        let token = tokens().mint(&user, "marketing", now());
        // Another category in the claims, same signature.
        let (head, rest) = token.split_once('.').unwrap();
        let (_, signature) = rest.split_once('.').unwrap();
        use base64::Engine as _;
        let forged_claims = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(r#"{"sub":"u-1","cat":"orders","aud":"notify-unsubscribe","iat":1800000000,"exp":1900000000}"#);
        assert_eq!(tokens().verify(&format!("{head}.{forged_claims}.{signature}"), now()), Err(UnsubscribeTokenError::Invalid));
        let mut flipped = token.clone();
        flipped.push('x');
        assert_eq!(tokens().verify(&flipped, now()), Err(UnsubscribeTokenError::Invalid));
        let other = UnsubscribeTokens::from_user_token_secret(b"another-secret-of-at-least-32-bytes!", DEFAULT_UNSUBSCRIBE_TTL).unwrap();
        assert_eq!(other.verify(&token, now()), Err(UnsubscribeTokenError::Invalid));
        for garbage in ["", "abc", "a.b.c"] {
            assert_eq!(tokens().verify(garbage, now()), Err(UnsubscribeTokenError::Invalid), "{garbage:?}");
        }
        assert!(UnsubscribeTokens::from_user_token_secret(b"short", DEFAULT_UNSUBSCRIBE_TTL).is_err());
    }

    #[test]
    fn tokens_of_the_other_purpose_never_verify() {
        let user = UserId::parse("u-1").unwrap();
        let ws = WsTokens::new(SECRET, Duration::from_secs(900)).unwrap();
        let (ws_token, _) = ws.mint(&user, now());
        assert_eq!(tokens().verify(&ws_token, now()), Err(UnsubscribeTokenError::Invalid), "a WebSocket token is no unsubscribe link");
        let unsubscribe_token = tokens().mint(&user, "marketing", now());
        assert!(ws.verify(&unsubscribe_token, now()).is_err(), "an unsubscribe link opens no WebSocket");
        assert_ne!(derive_key(SECRET).as_slice(), SECRET, "a derived key, not the secret itself");
    }

    #[test]
    fn links_and_headers_follow_rfc_8058() {
        let links = UnsubscribeLinks::new(tokens(), "https://api.example.com/").unwrap();
        let user = UserId::parse("u-1").unwrap();
        let [(name, value), (post_name, post_value)] = links.headers(&user, "marketing", now());
        assert_eq!((name, post_name, post_value.as_str()), ("List-Unsubscribe", "List-Unsubscribe-Post", "List-Unsubscribe=One-Click"));
        let url = value.strip_prefix('<').and_then(|v| v.strip_suffix('>')).expect("<url>");
        let token = url.strip_prefix("https://api.example.com/v1/unsubscribe/").expect("the base URL, then the path");
        assert_eq!(tokens().verify(token, now()).unwrap().category, "marketing");
        assert!(UnsubscribeLinks::new(tokens(), "api.example.com").is_err());
    }
}
