//! One-click unsubscribe (RFC 8058): the link in a non-transactional email's `List-Unsubscribe`
//! header. Its `POST` (what Gmail and Yahoo send, body `List-Unsubscribe=One-Click`) opts the
//! recipient out of the link's category **for email** (`{"categories": {"<category>": {"email":
//! false}}}`: the link arrived by email, and the other channels of the category keep their own
//! settings, which `PUT /v1/users/{user_id}/preferences` changes); its `GET` only shows what the
//! `POST` would do, since mail scanners fetch links. No login: the signed link is the
//! authorization.

use std::sync::Arc;

use crate::auth::UnsubscribeTokens;
use crate::auth::unsubscribe::{Unsubscribe, UnsubscribeTokenError};
use crate::domain::Channel;
use crate::ports::{Clock, ProfileStore, StoreError};

pub struct UnsubscribeDeps {
    pub profiles: Arc<dyn ProfileStore>,
    pub tokens: Arc<UnsubscribeTokens>,
    pub clock: Arc<dyn Clock>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum UnsubscribeError {
    #[error(transparent)]
    Token(#[from] UnsubscribeTokenError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What the link stands for, changing nothing (`GET`).
pub fn inspect(deps: &UnsubscribeDeps, token: &str) -> Result<Unsubscribe, UnsubscribeError> {
    Ok(deps.tokens.verify(token, deps.clock.now())?)
}

/// Opts the link's user out of its category's email (`POST`). Idempotent: opted out already,
/// nothing is written. A user with neither profile nor preferences (never known, or erased) gets
/// none written either: there is no address to send to, and an erased user stays erased.
pub async fn unsubscribe(deps: &UnsubscribeDeps, token: &str) -> Result<Unsubscribe, UnsubscribeError> {
    let request = inspect(deps, token)?;
    let (profile, preferences) = deps.profiles.get_recipient(&request.user_id).await?;
    if profile.is_none() && preferences.is_none() {
        tracing::info!(category = %request.category, "unsubscribe of an unknown user: nothing to change");
        return Ok(request);
    }
    let mut preferences = preferences.unwrap_or_default();
    let channels = preferences.categories.entry(request.category.clone()).or_default();
    if channels.get(Channel::Email.as_str()) == Some(&false) {
        return Ok(request);
    }
    channels.insert(Channel::Email.as_str().to_owned(), false);
    deps.profiles.put_preferences(&request.user_id, &preferences).await?;
    tracing::info!(category = %request.category, "unsubscribed from a category's email");
    Ok(request)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::memory::store::MemoryStore;
    use crate::auth::unsubscribe::DEFAULT_UNSUBSCRIBE_TTL;
    use crate::domain::{Preferences, Profile, UserId};
    use crate::ports::SystemClock;

    fn deps(store: Arc<MemoryStore>) -> UnsubscribeDeps {
        let tokens = UnsubscribeTokens::from_user_token_secret(&[9u8; 32], DEFAULT_UNSUBSCRIBE_TTL).unwrap();
        UnsubscribeDeps { profiles: store, tokens: Arc::new(tokens), clock: Arc::new(SystemClock) }
    }

    #[tokio::test]
    async fn post_opts_out_of_the_categorys_email_once_and_get_changes_nothing() {
        let store = Arc::new(MemoryStore::new());
        let deps = deps(store.clone());
        let user = UserId::parse("u-1").unwrap();
        store.put_profile(&user, &Profile { email: Some("u1@example.com".into()), ..Profile::default() }).await.unwrap();
        let keep: Preferences = serde_json::from_value(serde_json::json!({"channels": {"sms": false}, "categories": {"marketing": {"push": false}}})).unwrap();
        store.put_preferences(&user, &keep).await.unwrap();
        let token = deps.tokens.mint(&user, "marketing", deps.clock.now());

        assert_eq!(inspect(&deps, &token).unwrap().category, "marketing");
        assert_eq!(store.get_preferences(&user).await.unwrap(), Some(keep.clone()), "GET changes nothing");

        for _ in 0..2 {
            unsubscribe(&deps, &token).await.unwrap();
            let now = store.get_preferences(&user).await.unwrap().unwrap();
            assert_eq!(now.opt_out(Channel::Email, Some("marketing")), Some(crate::domain::profile::OptOut::Category));
            assert_eq!(now.opt_out(Channel::Push, Some("marketing")), Some(crate::domain::profile::OptOut::Category), "the rest is kept");
            assert_eq!(now.opt_out(Channel::Email, Some("orders")), None, "other categories untouched");
            assert_eq!(now.channels, keep.channels);
        }
    }

    #[tokio::test]
    async fn an_unknown_user_gets_nothing_written_and_a_bad_token_is_refused() {
        let store = Arc::new(MemoryStore::new());
        let deps = deps(store.clone());
        let ghost = UserId::parse("ghost").unwrap();
        unsubscribe(&deps, &deps.tokens.mint(&ghost, "marketing", deps.clock.now())).await.unwrap();
        assert_eq!(store.get_recipient(&ghost).await.unwrap(), (None, None));
        assert_eq!(unsubscribe(&deps, "not-a-token").await, Err(UnsubscribeError::Token(UnsubscribeTokenError::Invalid)));
    }
}
