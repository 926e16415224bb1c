//! Conversions between wire timestamps and `time::OffsetDateTime`.

use prost_types::Timestamp;
use time::OffsetDateTime;

/// Converts a wire timestamp to a date-time; `None` if it is out of range.
pub fn to_datetime(ts: &Timestamp) -> Option<OffsetDateTime> {
    let nanos = i128::from(ts.seconds) * 1_000_000_000 + i128::from(ts.nanos);
    OffsetDateTime::from_unix_timestamp_nanos(nanos).ok()
}

/// Converts a date-time to a wire timestamp.
pub fn from_datetime(dt: OffsetDateTime) -> Timestamp {
    Timestamp { seconds: dt.unix_timestamp(), nanos: dt.nanosecond() as i32 }
}

/// Milliseconds since the Unix epoch, saturating at 0 for earlier times.
pub fn to_unix_millis(ts: &Timestamp) -> u64 {
    let ms = i128::from(ts.seconds) * 1000 + i128::from(ts.nanos) / 1_000_000;
    u64::try_from(ms.max(0)).unwrap_or(u64::MAX)
}

/// A wire timestamp from milliseconds since the Unix epoch.
pub fn from_unix_millis(ms: u64) -> Timestamp {
    Timestamp { seconds: (ms / 1000) as i64, nanos: ((ms % 1000) * 1_000_000) as i32 }
}

/// Which end of the span a date or minute without seconds means, when it
/// bounds a search or a retention cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    /// Its first millisecond (a date: 00:00:00.000 UTC).
    Start,
    /// Its last millisecond (a date: 23:59:59.999 UTC; the log's times are milliseconds).
    End,
}

/// A time as people type it: RFC 3339, or `YYYY-MM-DD`, `YYYY-MM-DDTHH:MM`
/// (as a `datetime-local` input sends it) or `YYYY-MM-DDTHH:MM:SS`, in UTC,
/// taken as the start or the end of that day, minute or second. `None`
/// when it is none of these.
pub fn parse_bound(s: &str, bound: Bound) -> Option<Timestamp> {
    use time::format_description::well_known::Rfc3339;
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
        return Some(from_datetime(t));
    }
    let (text, span) = match s.len() {
        10 => (format!("{s}T00:00:00Z"), time::Duration::days(1)),
        16 => (format!("{s}:00Z"), time::Duration::minutes(1)),
        19 => (format!("{s}Z"), time::Duration::seconds(1)),
        _ => return None,
    };
    let start = OffsetDateTime::parse(&text, &Rfc3339).ok()?;
    Some(from_datetime(match bound {
        Bound::Start => start,
        Bound::End => start + span - time::Duration::milliseconds(1),
    }))
}

/// RFC 3339 text for a wire timestamp, or `"-"` if it is out of range.
pub fn rfc3339(ts: &Timestamp) -> String {
    to_datetime(ts)
        .and_then(|dt| dt.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| "-".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn millis_round_trip() {
        for ms in [0u64, 1, 999, 1_000, 1_764_000_000_123] {
            assert_eq!(to_unix_millis(&from_unix_millis(ms)), ms);
        }
        assert_eq!(to_unix_millis(&Timestamp { seconds: -5, nanos: 0 }), 0);
    }

    #[test]
    fn rfc3339_text() {
        assert_eq!(rfc3339(&Timestamp { seconds: 0, nanos: 0 }), "1970-01-01T00:00:00Z");
    }

    #[test]
    fn bounds_read_dates_minutes_and_rfc3339() {
        let at = |s, b| parse_bound(s, b).map(|t| rfc3339(&t));
        assert_eq!(at("2026-11-28", Bound::Start).as_deref(), Some("2026-11-28T00:00:00Z"));
        assert_eq!(at("2026-11-28", Bound::End).as_deref(), Some("2026-11-28T23:59:59.999Z"));
        assert_eq!(at("2026-11-28T10:30", Bound::End).as_deref(), Some("2026-11-28T10:30:59.999Z"));
        assert_eq!(at("2026-11-28T10:30:05", Bound::Start).as_deref(), Some("2026-11-28T10:30:05Z"));
        assert_eq!(at("2026-11-28T10:00:00+01:00", Bound::End).as_deref(), Some("2026-11-28T09:00:00Z"));
        assert_eq!(at("yesterday", Bound::Start), None);
        assert_eq!(at("2026-13-01", Bound::Start), None);
    }
}
