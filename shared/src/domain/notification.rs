//! A notification: one event delivered (or not) over one channel, and its status.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use std::fmt;

use super::channel::{Channel, Priority};
use super::ids::{EventId, NotificationId, UserId};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Routed and queued for its channel's sender.
    Pending,
    /// Held until `deliver_after` (scheduled send, or the recipient's quiet hours).
    Scheduled,
    /// A sender has claimed it and is talking to the provider.
    Sending,
    Sent,
    Failed,
    /// Not attempted: opted out, no address for the channel, no live connection.
    Skipped,
    /// Called off by the producer (`DELETE /v1/events/{event_id}`) before it started sending.
    Canceled,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Scheduled => "scheduled",
            Status::Sending => "sending",
            Status::Sent => "sent",
            Status::Failed => "failed",
            Status::Skipped => "skipped",
            Status::Canceled => "canceled",
        }
    }

    pub fn is_final(self) -> bool {
        matches!(self, Status::Sent | Status::Failed | Status::Skipped | Status::Canceled)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a notification was skipped or failed, in words an operator can search for.
pub mod reason {
    pub const OPTED_OUT: &str = "opted_out";
    pub const OPTED_OUT_CATEGORY: &str = "opted_out_of_category";
    pub const NO_ADDRESS: &str = "no_address";
    pub const NO_LIVE_CONNECTION: &str = "no_live_connection";
    pub const TEMPLATE_ERROR: &str = "template_error";
    pub const PROVIDER_REJECTED: &str = "provider_rejected";
    pub const RETRIES_EXHAUSTED: &str = "retries_exhausted";
    /// The address is suppressed (a hard bounce, a complaint): not attempted.
    pub const SUPPRESSED: &str = "suppressed";
    /// The provider says the recipient cannot be reached there (bot blocked, not on WhatsApp,
    /// webhook gone): skipped, and the address suppressed.
    pub const UNREACHABLE: &str = "unreachable";
    /// Sent, then the e-mail bounced for good (SES feedback).
    pub const BOUNCED: &str = "bounced";
    /// Canceled before sending because its recipient was erased (`DELETE /v1/users/{user_id}`).
    pub const USER_ERASED: &str = "user_erased";
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Notification {
    pub notification_id: NotificationId,
    pub event_id: EventId,
    pub event_type: String,
    pub user_id: UserId,
    pub channel: Channel,
    pub priority: Priority,
    pub status: Status,
    /// Why it is skipped or failed (one of [`reason`]), absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Provider calls made so far.
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// The channel this one stands in for, when it was created as a fallback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback_for: Option<Channel>,
    /// Set when it failed for good and its event type names a channel to try instead: part of
    /// the state machine, so a handler that dies between recording the failure and queueing the
    /// fallback leaves a trace the next delivery of its job (or the dead-letter handler) finishes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<FallbackProgress>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub deliver_after: Option<Timestamp>,
    /// While `sending`: until when the claim holds; after that another sender may take it over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub lease_until: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_message_id: Option<String>,
    /// The provider that accepted the message (`ses`, `sns`, …; with several providers for a
    /// channel, the one that delivered).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// Title (push, websocket) or subject (email) for the in-app inbox; never logged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// The in-app message's body (WebSocket channel only: the user's inbox shows it); never logged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Inbox state, set by the user (`/v1/me/notifications/...`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub seen_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub read_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub archived_at: Option<Timestamp>,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub sent_at: Option<Timestamp>,
}

/// The fallback of a failed notification: which channel, and whether the request to route it is
/// on the events queue yet. `queued: false` means "owed": whoever handles the notification next
/// queues it (the request is deduplicated, and routing it twice creates nothing new).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FallbackProgress {
    pub channel: Channel,
    pub queued: bool,
}

impl Notification {
    /// A new notification of `event_id` on `channel`, `pending`, never attempted, created `now`:
    /// its id derived from (event, channel), so creating it twice creates it once.
    pub fn pending(event_id: &EventId, event_type: &str, user_id: &UserId, channel: Channel, priority: Priority, now: Timestamp) -> Self {
        Notification {
            notification_id: NotificationId::derive(event_id, channel),
            event_id: event_id.clone(),
            event_type: event_type.to_owned(),
            user_id: user_id.clone(),
            channel,
            priority,
            status: Status::Pending,
            reason: None,
            attempts: 0,
            last_error: None,
            fallback_for: None,
            fallback: None,
            deliver_after: None,
            lease_until: None,
            provider_message_id: None,
            provider: None,
            title: None,
            body: None,
            seen_at: None,
            read_at: None,
            archived_at: None,
            created_at: now,
            updated_at: now,
            sent_at: None,
        }
    }

    /// Failed for good with a fallback channel whose request is not yet queued.
    pub fn owes_fallback(&self) -> Option<Channel> {
        match self.fallback {
            Some(FallbackProgress { channel, queued: false }) if self.status == Status::Failed => Some(channel),
            _ => None,
        }
    }
}

/// How a transition changes the attempt counter.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AttemptChange {
    #[default]
    Keep,
    /// One more provider call (the claim counts it before the call, so a crash counts too).
    Count,
    /// Take back the attempt the claim counted: the provider asked us to slow down, which is
    /// not a failed attempt.
    Refund,
    /// Back to none: a fresh attempt budget (a dead letter replayed by an operator).
    Reset,
}

/// A change a user makes to a notification in their inbox; each has its undo.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum InboxMark {
    Seen,
    Unseen,
    /// Read implies seen.
    Read,
    Unread,
    Archived,
    Unarchived,
}

impl InboxMark {
    /// Applies the mark to a copy of `n` at `at` (a time already set is kept: marking twice
    /// changes nothing); stores call this so every adapter changes the same fields.
    pub fn apply(self, n: &Notification, at: Timestamp) -> Notification {
        let mut out = n.clone();
        match self {
            InboxMark::Seen => out.seen_at = out.seen_at.or(Some(at)),
            InboxMark::Unseen => {
                out.seen_at = None;
                out.read_at = None;
            }
            InboxMark::Read => {
                out.read_at = out.read_at.or(Some(at));
                out.seen_at = out.seen_at.or(Some(at));
            }
            InboxMark::Unread => out.read_at = None,
            InboxMark::Archived => out.archived_at = out.archived_at.or(Some(at)),
            InboxMark::Unarchived => out.archived_at = None,
        }
        out
    }
}

/// A change of state, applied by a store only when its [`Guard`] holds at the moment of writing.
#[derive(Clone, Debug, PartialEq)]
pub struct Transition {
    pub to: Status,
    pub at: Timestamp,
    /// `Some(None)` clears the field, `None` leaves it as it is.
    pub reason: Option<Option<String>>,
    pub last_error: Option<Option<String>>,
    pub lease_until: Option<Option<Timestamp>>,
    pub provider_message_id: Option<String>,
    pub provider: Option<String>,
    pub attempts: AttemptChange,
    pub sent_at: Option<Timestamp>,
    pub fallback: Option<Option<FallbackProgress>>,
}

impl Transition {
    pub fn to(status: Status, at: Timestamp) -> Self {
        Self {
            to: status,
            at,
            reason: None,
            last_error: None,
            lease_until: None,
            provider_message_id: None,
            provider: None,
            attempts: AttemptChange::Keep,
            sent_at: None,
            fallback: None,
        }
    }

    pub fn reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(Some(reason.into()));
        self
    }

    /// The error to store, redacted ([`crate::redact`]): the API shows it, and providers quote
    /// recipients in theirs.
    pub fn last_error(mut self, error: impl Into<String>) -> Self {
        self.last_error = Some(Some(crate::redact::redact(&error.into()).into_owned()));
        self
    }

    pub fn lease_until(mut self, until: Option<Timestamp>) -> Self {
        self.lease_until = Some(until);
        self
    }

    pub fn provider_message_id(mut self, id: impl Into<String>) -> Self {
        self.provider_message_id = Some(id.into());
        self
    }

    pub fn provider(mut self, provider: impl Into<String>) -> Self {
        self.provider = Some(provider.into());
        self
    }

    pub fn count_attempt(mut self) -> Self {
        self.attempts = AttemptChange::Count;
        self
    }

    pub fn refund_attempt(mut self) -> Self {
        self.attempts = AttemptChange::Refund;
        self
    }

    pub fn reset_attempts(mut self) -> Self {
        self.attempts = AttemptChange::Reset;
        self
    }

    pub fn fallback(mut self, fallback: Option<FallbackProgress>) -> Self {
        self.fallback = Some(fallback);
        self
    }

    pub fn sent_at(mut self, at: Timestamp) -> Self {
        self.sent_at = Some(at);
        self
    }

    /// Applies the change to a copy of `n`; stores call this so every adapter changes the same fields.
    pub fn apply(&self, n: &Notification) -> Notification {
        let mut out = n.clone();
        out.status = self.to;
        out.updated_at = self.at;
        if let Some(r) = &self.reason {
            out.reason = r.clone();
        }
        if let Some(e) = &self.last_error {
            out.last_error = e.clone();
        }
        if let Some(l) = self.lease_until {
            out.lease_until = l;
        }
        if let Some(p) = &self.provider_message_id {
            out.provider_message_id = Some(p.clone());
        }
        if let Some(p) = &self.provider {
            out.provider = Some(p.clone());
        }
        match self.attempts {
            AttemptChange::Keep => {}
            AttemptChange::Count => out.attempts += 1,
            AttemptChange::Refund => out.attempts = out.attempts.saturating_sub(1),
            AttemptChange::Reset => out.attempts = 0,
        }
        if let Some(f) = self.fallback {
            out.fallback = f;
        }
        if let Some(s) = self.sent_at {
            out.sent_at = Some(s);
        }
        out
    }

    /// What [`NotificationStore::upsert`](crate::ports::NotificationStore::upsert) writes:
    /// `record` with the change applied when there is no `current` notification; otherwise the
    /// change applied to `current`, where a field the change leaves alone and `current` lacks is
    /// taken from `record` (DynamoDB's `if_not_exists`). Stores call this so every adapter writes
    /// the same fields.
    pub fn apply_or_create(&self, current: Option<&Notification>, record: &Notification) -> Notification {
        let Some(current) = current else {
            return self.apply(record);
        };
        let applied = self.apply(current);
        // Fields the change sets are in both; fields it clears are in neither.
        let (Ok(serde_json::Value::Object(mut fields)), Ok(serde_json::Value::Object(fill))) =
            (serde_json::to_value(&applied), serde_json::to_value(self.apply(record)))
        else {
            return applied;
        };
        for (name, value) in fill {
            fields.entry(name).or_insert(value);
        }
        serde_json::from_value(serde_json::Value::Object(fields)).unwrap_or(applied)
    }
}

/// The condition a transition is written under (a DynamoDB `ConditionExpression` on AWS).
#[derive(Clone, Debug, PartialEq)]
pub enum Guard {
    /// The current status is one of these.
    StatusIn(Vec<Status>),
    /// A sender may claim it: `pending` or `scheduled`, or `sending` whose lease ran out before `now`
    /// (the sender that held it died mid-flight).
    Claimable { now: Timestamp },
    /// Still held by the claim that set this lease: `sending` with exactly this `lease_until`
    /// (to the millisecond). A sender records its outcome under it, so a sender whose lease ran
    /// out and was taken over cannot overwrite the new holder's claim.
    ClaimedUntil(Timestamp),
    /// `failed` for this reason (one of [`reason`]): only that failure may be undone.
    FailedBecause(String),
}

impl Guard {
    pub fn holds_for(&self, n: &Notification) -> bool {
        match self {
            Guard::StatusIn(statuses) => statuses.contains(&n.status),
            Guard::Claimable { now } => match n.status {
                Status::Pending | Status::Scheduled => true,
                Status::Sending => n.lease_until.is_none_or(|until| until < *now),
                _ => false,
            },
            Guard::ClaimedUntil(lease) => {
                n.status == Status::Sending && n.lease_until.is_some_and(|until| until.as_millisecond() == lease.as_millisecond())
            }
            Guard::FailedBecause(why) => n.status == Status::Failed && n.reason.as_deref() == Some(why.as_str()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(status: Status) -> Notification {
        let now = Timestamp::from_second(1_700_000_000).unwrap();
        let event_id = EventId::parse("evt-1").unwrap();
        let n = Notification::pending(&event_id, "user.registered", &UserId::parse("u-1").unwrap(), Channel::Email, Priority::High, now);
        Notification { status, ..n }
    }

    #[test]
    fn claimable_covers_pending_scheduled_and_stale_sending_only() {
        let now = Timestamp::from_second(1_700_000_100).unwrap();
        let guard = Guard::Claimable { now };
        assert!(guard.holds_for(&sample(Status::Pending)));
        assert!(guard.holds_for(&sample(Status::Scheduled)));
        let mut live = sample(Status::Sending);
        live.lease_until = Some(Timestamp::from_second(1_700_000_200).unwrap());
        assert!(!guard.holds_for(&live));
        let mut stale = sample(Status::Sending);
        stale.lease_until = Some(Timestamp::from_second(1_700_000_050).unwrap());
        assert!(guard.holds_for(&stale));
        for done in [Status::Sent, Status::Failed, Status::Skipped] {
            assert!(!guard.holds_for(&sample(done)));
        }
    }

    #[test]
    fn a_claim_holds_only_for_its_own_lease() {
        let lease = Timestamp::from_second(1_700_000_200).unwrap();
        let mut mine = sample(Status::Sending);
        mine.lease_until = Some(lease);
        assert!(Guard::ClaimedUntil(lease).holds_for(&mine));
        let mut taken_over = mine.clone();
        taken_over.lease_until = Some(Timestamp::from_second(1_700_000_300).unwrap());
        assert!(!Guard::ClaimedUntil(lease).holds_for(&taken_over));
        let mut done = mine.clone();
        done.status = Status::Sent;
        assert!(!Guard::ClaimedUntil(lease).holds_for(&done));
    }

    #[test]
    fn transitions_change_only_what_they_name() {
        let n = sample(Status::Pending);
        let at = Timestamp::from_second(1_700_000_100).unwrap();
        let t = Transition::to(Status::Sending, at).count_attempt().lease_until(Some(at));
        let out = t.apply(&n);
        assert_eq!(out.status, Status::Sending);
        assert_eq!(out.attempts, 1);
        assert_eq!(out.lease_until, Some(at));
        assert_eq!(out.reason, None);
        let cleared = Transition::to(Status::Sent, at).lease_until(None).apply(&out);
        assert_eq!(cleared.lease_until, None);
        assert_eq!(cleared.attempts, 1);
    }
}
