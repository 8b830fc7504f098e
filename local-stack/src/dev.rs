//! `GET /v1/dev/outbox`: what the local providers "sent" (local stack only).

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use shared::adapters::memory::Outbox;
use shared::domain::{Channel, FieldError};
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

async fn read_outbox(State(outbox): State<Outbox>, Query(q): Query<OutboxQuery>) -> Response {
    let channel = match q.channel.as_deref().map(str::parse::<Channel>) {
        None => None,
        Some(Ok(c)) => Some(c),
        Some(Err(m)) => return Problem::invalid(vec![FieldError::new("/channel", m)]).into_response(),
    };
    let items: Vec<_> = outbox
        .entries(channel)
        .into_iter()
        .filter(|e| q.user_id.as_deref().is_none_or(|u| e.user_id == u))
        .filter(|e| q.event_id.as_deref().is_none_or(|id| e.event_id == id))
        .collect();
    Json(serde_json::json!({ "count": items.len(), "items": items })).into_response()
}
