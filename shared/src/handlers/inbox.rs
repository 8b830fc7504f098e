//! The end-user inbox (`/v1/me/...`), called from a browser with the user's own signed user
//! token (the one that opens the WebSocket), never with the server's API key: the user's in-app
//! feed, newest first, with unread and unseen counts; marking notifications seen, read or
//! archived (and undoing each), marking all read; every change pushed to the user's live
//! WebSockets so other tabs follow. A token names one user: nothing here can reach another's.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::queries::{QueryDeps, QueryError};
use crate::domain::notification::reason;
use crate::domain::{Channel, FieldError, InboxMark, Notification, NotificationId, Status, UserId};

/// The newest notifications the counts and "mark all read" look at.
pub const COUNT_WINDOW: usize = 1_000;
/// The most notifications one mark request names.
pub const MAX_MARK_IDS: usize = 100;

/// One notification as the inbox shows it: its content and inbox state, nothing internal.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct InboxItem {
    pub notification_id: NotificationId,
    pub event_id: crate::domain::EventId,
    pub event_type: String,
    pub priority: crate::domain::Priority,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub seen_at: Option<Timestamp>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub read_at: Option<Timestamp>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub archived_at: Option<Timestamp>,
}

impl From<&Notification> for InboxItem {
    fn from(n: &Notification) -> Self {
        InboxItem {
            notification_id: n.notification_id.clone(),
            event_id: n.event_id.clone(),
            event_type: n.event_type.clone(),
            priority: n.priority,
            title: n.title.clone(),
            body: n.body.clone(),
            created_at: n.created_at,
            seen_at: n.seen_at,
            read_at: n.read_at,
            archived_at: n.archived_at,
        }
    }
}

/// Whether a notification belongs in the in-app feed: the WebSocket channel's messages that were
/// delivered live, or rendered while the user had no tab open.
pub fn in_feed(n: &Notification) -> bool {
    n.channel == Channel::Websocket
        && (n.status == Status::Sent || (n.status == Status::Skipped && n.reason.as_deref() == Some(reason::NO_LIVE_CONNECTION)))
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Counts {
    /// Not archived and not read.
    pub unread: usize,
    /// Not archived and never seen.
    pub unseen: usize,
}

/// Which part of the feed to list.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FeedView {
    /// Everything not archived (the default).
    #[default]
    Inbox,
    Unread,
    Archived,
    All,
}

impl FeedView {
    fn shows(self, n: &Notification) -> bool {
        match self {
            FeedView::Inbox => n.archived_at.is_none(),
            FeedView::Unread => n.archived_at.is_none() && n.read_at.is_none(),
            FeedView::Archived => n.archived_at.is_some(),
            FeedView::All => true,
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Feed {
    pub items: Vec<InboxItem>,
    pub next_cursor: Option<String>,
    pub counts: Counts,
}

/// The user's feed, newest first, `limit` items a page (1..100, default 20).
pub async fn feed(deps: &QueryDeps, user: &UserId, view: FeedView, limit: Option<usize>, cursor: Option<&str>) -> Result<Feed, QueryError> {
    let limit = limit.unwrap_or(20).clamp(1, 100);
    let mut items = Vec::with_capacity(limit);
    let mut cursor = cursor.map(str::to_owned);
    // Each read asks for exactly what is missing, so the cursor after it never skips an item.
    loop {
        let page = deps.notifications.list_for_user(user, limit - items.len(), cursor.as_deref()).await?;
        items.extend(page.items.iter().filter(|n| in_feed(n) && view.shows(n)).map(InboxItem::from));
        cursor = page.next;
        if items.len() == limit || cursor.is_none() {
            break;
        }
    }
    Ok(Feed { items, next_cursor: cursor, counts: counts(deps, user).await? })
}

/// The newest [`COUNT_WINDOW`] notifications of the user, in the feed.
async fn recent_feed(deps: &QueryDeps, user: &UserId) -> Result<Vec<Notification>, QueryError> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    let mut scanned = 0;
    loop {
        let page = deps.notifications.list_for_user(user, 100, cursor.as_deref()).await?;
        scanned += page.items.len();
        out.extend(page.items.into_iter().filter(in_feed));
        cursor = page.next;
        if cursor.is_none() || scanned >= COUNT_WINDOW {
            return Ok(out);
        }
    }
}

pub async fn counts(deps: &QueryDeps, user: &UserId) -> Result<Counts, QueryError> {
    let recent = recent_feed(deps, user).await?;
    let live = recent.iter().filter(|n| n.archived_at.is_none());
    let (mut unread, mut unseen) = (0, 0);
    for n in live {
        unread += usize::from(n.read_at.is_none());
        unseen += usize::from(n.seen_at.is_none());
    }
    Ok(Counts { unread, unseen })
}

/// `POST /v1/me/notifications/mark`: `{"ids": [...], "mark": "read"}`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MarkRequest {
    pub ids: Vec<String>,
    pub mark: InboxMark,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Marked {
    pub mark: InboxMark,
    pub items: Vec<InboxItem>,
    /// Ids that name no notification of this user's feed.
    pub not_found: Vec<String>,
    pub counts: Counts,
}

pub async fn mark(deps: &QueryDeps, user: &UserId, body: &[u8]) -> Result<Marked, QueryError> {
    let request: MarkRequest = serde_json::from_slice(body).map_err(|e| QueryError::Invalid(vec![FieldError::new("", e.to_string())]))?;
    if request.ids.is_empty() || request.ids.len() > MAX_MARK_IDS {
        return Err(QueryError::Invalid(vec![FieldError::new("/ids", format!("must name 1 to {MAX_MARK_IDS} notifications"))]));
    }
    let now = deps.clock.now();
    let (mut items, mut not_found) = (Vec::new(), Vec::new());
    for raw in &request.ids {
        // Guarded by owner: another user's id is as absent as one that never existed.
        let id = NotificationId::from_stored(raw.clone());
        match deps.notifications.mark(&id, user, request.mark, now).await? {
            Some(n) if in_feed(&n) => items.push(InboxItem::from(&n)),
            _ => not_found.push(raw.clone()),
        }
    }
    let counts = counts(deps, user).await?;
    announce(deps, user, request.mark, &items, counts).await;
    Ok(Marked { mark: request.mark, items, not_found, counts })
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AllRead {
    pub marked: usize,
    pub counts: Counts,
}

/// `POST /v1/me/notifications/read-all`: every unread notification of the feed (within the
/// newest [`COUNT_WINDOW`]) becomes read.
pub async fn mark_all_read(deps: &QueryDeps, user: &UserId) -> Result<AllRead, QueryError> {
    let now = deps.clock.now();
    let mut items = Vec::new();
    for n in recent_feed(deps, user).await?.iter().filter(|n| n.read_at.is_none() && n.archived_at.is_none()) {
        if let Some(marked) = deps.notifications.mark(&n.notification_id, user, InboxMark::Read, now).await? {
            items.push(InboxItem::from(&marked));
        }
    }
    let counts = counts(deps, user).await?;
    announce(deps, user, InboxMark::Read, &items, counts).await;
    Ok(AllRead { marked: items.len(), counts })
}

/// Tells the user's open tabs: `{"type": "inbox.updated", "mark", "notification_ids", "counts"}`.
/// Best effort: the change is stored either way, and a tab that missed it reads it on its next
/// fetch.
async fn announce(deps: &QueryDeps, user: &UserId, mark: InboxMark, items: &[InboxItem], counts: Counts) {
    if items.is_empty() {
        return;
    }
    let frame = serde_json::json!({
        "type": "inbox.updated",
        "mark": mark,
        "notification_ids": items.iter().map(|i| &i.notification_id).collect::<Vec<_>>(),
        "counts": counts,
    })
    .to_string();
    if let Err(e) = deps.live.post_to_user(user, &frame).await {
        tracing::warn!(error = %e, "inbox change not pushed to the user's sockets");
    }
}
