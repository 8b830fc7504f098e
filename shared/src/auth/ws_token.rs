//! Short-lived WebSocket tokens: JWT, HS256, `sub` = the user id, audience `notify-ws`.

use jiff::Timestamp;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use std::time::Duration;

use crate::domain::UserId;

const AUDIENCE: &str = "notify-ws";

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    aud: String,
    iat: i64,
    exp: i64,
}

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum WsTokenError {
    #[error("token missing")]
    Missing,
    #[error("token expired")]
    Expired,
    #[error("token invalid")]
    Invalid,
}

#[derive(Clone)]
pub struct WsTokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    ttl: Duration,
}

impl std::fmt::Debug for WsTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsTokens").field("ttl", &self.ttl).finish_non_exhaustive()
    }
}

impl WsTokens {
    /// `secret` must be at least 32 bytes: HS256 is only as strong as its key.
    pub fn new(secret: &[u8], ttl: Duration) -> Result<Self, String> {
        if secret.len() < 32 {
            return Err("the WebSocket token secret must be at least 32 bytes".into());
        }
        Ok(Self { encoding: EncodingKey::from_secret(secret), decoding: DecodingKey::from_secret(secret), ttl })
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// A token for `user`, and when it expires.
    pub fn mint(&self, user: &UserId, now: Timestamp) -> (String, Timestamp) {
        let exp = now.as_second() + self.ttl.as_secs() as i64;
        let claims = Claims { sub: user.as_str().to_owned(), aud: AUDIENCE.into(), iat: now.as_second(), exp };
        // HMAC signing of a small serializable struct does not fail.
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding).unwrap_or_default();
        (token, Timestamp::from_second(exp).unwrap_or(now))
    }

    /// The user the token was minted for, if it is ours, unexpired at `now` and for WebSockets.
    pub fn verify(&self, token: &str, now: Timestamp) -> Result<UserId, WsTokenError> {
        if token.is_empty() {
            return Err(WsTokenError::Missing);
        }
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_audience(&[AUDIENCE]);
        validation.validate_exp = false; // checked below against the injected clock
        validation.set_required_spec_claims(&["exp", "sub", "aud"]);
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation).map_err(|_| WsTokenError::Invalid)?;
        if data.claims.exp <= now.as_second() {
            return Err(WsTokenError::Expired);
        }
        UserId::parse_stored(&data.claims.sub).map_err(|_| WsTokenError::Invalid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> WsTokens {
        WsTokens::new(&[7u8; 32], Duration::from_secs(300)).unwrap()
    }

    #[test]
    fn a_minted_token_verifies_until_it_expires() {
        let now = Timestamp::from_second(1_800_000_000).unwrap();
        let user = UserId::parse("u-42").unwrap();
        let (token, exp) = tokens().mint(&user, now);
        assert_eq!(exp.as_second() - now.as_second(), 300);
        assert_eq!(tokens().verify(&token, now), Ok(user));
        assert_eq!(tokens().verify(&token, exp), Err(WsTokenError::Expired));
    }

    #[test]
    fn foreign_or_tampered_tokens_are_refused() {
        let now = Timestamp::from_second(1_800_000_000).unwrap();
        let (token, _) = tokens().mint(&UserId::parse("u-1").unwrap(), now);
        let other = WsTokens::new(&[8u8; 32], Duration::from_secs(300)).unwrap();
        assert_eq!(other.verify(&token, now), Err(WsTokenError::Invalid));
        let mut tampered = token.clone();
        tampered.push('x');
        assert_eq!(tokens().verify(&tampered, now), Err(WsTokenError::Invalid));
        assert_eq!(tokens().verify("", now), Err(WsTokenError::Missing));
        assert!(WsTokens::new(b"short", Duration::from_secs(1)).is_err());
    }
}
