//! `GET /v1/dev/outbox`: what the local providers "sent" (local stack only).

use axum::extract::{Extension, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use shared::adapters::memory::Outbox;
use shared::domain::{Channel, FieldError, Tenant};
use shared::http::Problem;

#[derive(Deserialize)]
struct OutboxQuery {
    channel: Option<String>,
    user_id: Option<String>,
    event_id: Option<String>,
}

pub fn routes(outbox: Outbox) -> Router {
    Router::new().route("/v1/dev/outbox", get(read_outbox)).with_state(outbox)
}

/// What was sent to the caller's tenant's users, with ids as the caller knows them.
async fn read_outbox(State(outbox): State<Outbox>, Extension(tenant): Extension<Tenant>, Query(q): Query<OutboxQuery>) -> Response {
    let channel = match q.channel.as_deref().map(str::parse::<Channel>) {
        None => None,
        Some(Ok(c)) => Some(c),
        Some(Err(m)) => return Problem::invalid(vec![FieldError::new("/channel", m)]).into_response(),
    };
    let items: Vec<_> = outbox
        .entries(channel)
        .into_iter()
        .filter(|e| tenant.owns(&e.user_id))
        .filter(|e| q.user_id.as_deref().is_none_or(|u| tenant.local(&e.user_id) == u))
        .filter(|e| q.event_id.as_deref().is_none_or(|id| tenant.local(&e.event_id) == id))
        .collect();
    let mut answer = serde_json::json!({ "count": items.len(), "items": items });
    Tenant::unscope_json(&mut answer);
    Json(answer).into_response()
}
