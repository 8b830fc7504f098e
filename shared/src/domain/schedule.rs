//! When a notification may go out: not before the event's `send_after`, and not inside the
//! recipient's quiet hours (critical priority excepted).

use jiff::{Timestamp, ToSpan, tz::TimeZone};

use super::channel::Priority;
use super::profile::{QuietHours, parse_hh_mm};

/// The end of the quiet window containing `at`, or `None` when `at` is outside quiet hours
/// (or the quiet hours cannot be read: validated input never gets here malformed).
pub fn quiet_hours_end(at: Timestamp, quiet: &QuietHours, fallback_tz: Option<&str>) -> Option<Timestamp> {
    let tz_name = quiet.timezone.as_deref().or(fallback_tz).unwrap_or("UTC");
    let tz = TimeZone::get(tz_name).ok()?;
    let start = parse_hh_mm(&quiet.start)?;
    let end = parse_hh_mm(&quiet.end)?;
    let local = at.to_zoned(tz.clone());
    let now = local.time();
    let today = local.date();
    let end_date = if start < end {
        // Same-day window, e.g. 13:00–15:00.
        if now >= start && now < end { today } else { return None }
    } else if now >= start {
        // Overnight window, e.g. 22:00–07:00, evening side: it ends tomorrow.
        today.checked_add(1.day()).ok()?
    } else if now < end {
        today
    } else {
        return None;
    };
    end_date.to_datetime(end).to_zoned(tz).ok().map(|z| z.timestamp())
}

/// The moment delivery may start, or `None` to deliver now.
pub fn deliver_after(
    now: Timestamp,
    send_after: Option<Timestamp>,
    priority: Priority,
    quiet: Option<&QuietHours>,
    profile_tz: Option<&str>,
) -> Option<Timestamp> {
    let earliest = send_after.filter(|t| *t > now).unwrap_or(now);
    let earliest = match quiet {
        Some(q) if !priority.bypasses_quiet_hours() => quiet_hours_end(earliest, q, profile_tz).unwrap_or(earliest),
        _ => earliest,
    };
    (earliest > now).then_some(earliest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn quiet(start: &str, end: &str, tz: Option<&str>) -> QuietHours {
        QuietHours { start: start.into(), end: end.into(), timezone: tz.map(Into::into) }
    }

    #[test]
    fn overnight_quiet_hours_in_the_users_zone() {
        let q = quiet("22:00", "07:00", Some("Europe/Kyiv"));
        // 21:30 UTC = 23:30 in Kyiv (UTC+2 in November): quiet until 07:00 Kyiv = 05:00 UTC.
        assert_eq!(quiet_hours_end(ts("2026-11-22T21:30:00Z"), &q, None), Some(ts("2026-11-23T05:00:00Z")));
        // 03:00 UTC = 05:00 Kyiv: still quiet, same morning.
        assert_eq!(quiet_hours_end(ts("2026-11-23T03:00:00Z"), &q, None), Some(ts("2026-11-23T05:00:00Z")));
        // 10:00 UTC = 12:00 Kyiv: not quiet.
        assert_eq!(quiet_hours_end(ts("2026-11-23T10:00:00Z"), &q, None), None);
    }

    #[test]
    fn same_day_window_and_profile_zone_fallback() {
        let q = quiet("13:00", "15:00", None);
        assert_eq!(
            quiet_hours_end(ts("2026-07-01T11:30:00Z"), &q, Some("Europe/Kyiv")),
            Some(ts("2026-07-01T12:00:00Z"))
        );
        assert_eq!(quiet_hours_end(ts("2026-07-01T11:30:00Z"), &q, None), None);
    }

    #[test]
    fn critical_ignores_quiet_hours_but_not_send_after() {
        let q = quiet("00:00", "23:59", None);
        let now = ts("2026-11-22T10:00:00Z");
        assert_eq!(deliver_after(now, None, Priority::Critical, Some(&q), None), None);
        assert_eq!(deliver_after(now, None, Priority::Normal, Some(&q), None), Some(ts("2026-11-22T23:59:00Z")));
        let later = ts("2026-11-22T12:00:00Z");
        assert_eq!(deliver_after(now, Some(later), Priority::Critical, Some(&q), None), Some(later));
    }

    #[test]
    fn send_after_in_the_past_means_now() {
        let now = ts("2026-11-22T10:00:00Z");
        assert_eq!(deliver_after(now, Some(ts("2026-11-01T00:00:00Z")), Priority::Low, None, None), None);
    }

    #[test]
    fn a_send_after_landing_in_quiet_hours_waits_for_their_end() {
        let q = quiet("22:00", "07:00", Some("UTC"));
        let now = ts("2026-11-22T10:00:00Z");
        assert_eq!(
            deliver_after(now, Some(ts("2026-11-22T23:00:00Z")), Priority::High, Some(&q), None),
            Some(ts("2026-11-23T07:00:00Z"))
        );
    }
}
