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
}
