//! Who may call the API (API keys) and who a WebSocket belongs to (signed user tokens).

pub mod api_keys;
pub mod key_admin;
pub mod unsubscribe;
pub mod ws_token;

pub use api_keys::ApiKeys;
pub use unsubscribe::{UnsubscribeLinks, UnsubscribeTokens};
pub use ws_token::{WsTokenError, WsTokens};
