//! Storage limits by rule (LED Art. 5): an alert may be kept until its
//! `expires_at`, which may lie at most the configured period of its crime
//! area (`[storage] by_category`, else `max_period`) after its first
//! publication. A publish or an amendment past it is refused, naming the limit.

use isx_core::wire::Alert;

use crate::config::StorageConfig;
use crate::error::RequestError;
use crate::store::expires_ms;
use crate::text::rfc3339;

/// Checks `alert.expires_at` against the limit of its crime area, counted
/// from `from_ms` (the first publication, Unix ms: now for a publish, the
/// first version's time for an amendment).
pub(crate) fn check(limits: &StorageConfig, alert: &Alert, from_ms: u64) -> Result<(), RequestError> {
    let area = isx_core::display::category(alert.category());
    let (period, key) = limits.limit_for(&area);
    let period_ms = u64::try_from(period.as_millis()).unwrap_or(u64::MAX);
    let latest_ms = from_ms.saturating_add(period_ms);
    let expires = expires_ms(alert);
    if expires <= latest_ms {
        return Ok(());
    }
    let asked = if expires == u64::MAX { "no end".to_owned() } else { rfc3339(expires) };
    Err(RequestError::StorageLimit {
        key,
        period: isx_audit::retention::span(period_ms),
        asked,
        latest: rfc3339(latest_ms),
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use isx_core::timestamp::from_unix_millis;
    use isx_core::wire::Category;

    use super::*;

    const DAY: u64 = 86_400_000;
    /// 2026-12-01T00:00:00Z.
    const NOW: u64 = 1_796_083_200_000;

    fn limits() -> StorageConfig {
        StorageConfig {
            max_period: Duration::from_secs(365 * 86_400),
            by_category: BTreeMap::from([
                ("terrorism".to_owned(), Duration::from_secs(1095 * 86_400)),
                ("cybercrime".to_owned(), Duration::from_secs(30 * 86_400)),
            ]),
        }
    }

    /// `(category, expires_at - from, expect)`: `Ok` or the text the
    /// refusal must hold (the key and the latest allowed time).
    #[test]
    fn table() {
        let cases: &[(Category, Option<u64>, Result<(), &str>)] = &[
            (Category::DrugTrafficking, Some(7 * DAY), Ok(())),
            (Category::DrugTrafficking, Some(365 * DAY), Ok(())),
            (
                Category::DrugTrafficking,
                Some(365 * DAY + 1),
                Err("storage.max_period allows 365d from publication, so at most 2027-12-01T00:00:00Z"),
            ),
            (Category::Terrorism, Some(1000 * DAY), Ok(())),
            (Category::Terrorism, Some(1095 * DAY), Ok(())),
            (
                Category::Terrorism,
                Some(1096 * DAY),
                Err("storage.by_category.terrorism allows 1095d from publication, so at most 2029-11-30T00:00:00Z"),
            ),
            (Category::Cybercrime, Some(30 * DAY), Ok(())),
            (Category::Cybercrime, Some(31 * DAY), Err("storage.by_category.cybercrime allows 30d")),
            (Category::Unspecified, Some(366 * DAY), Err("storage.max_period")),
            (Category::MigrantSmuggling, None, Err("expires_at no end is past the storage limit")),
        ];
        for (category, after, expect) in cases {
            let alert = Alert {
                category: *category as i32,
                expires_at: after.map(|a| from_unix_millis(NOW + a)),
                ..Default::default()
            };
            let got = check(&limits(), &alert, NOW);
            match (expect, got) {
                (Ok(()), Ok(())) => {}
                (Err(needle), Err(e)) => {
                    let text = e.to_string();
                    assert!(text.contains(needle), "{category:?} +{after:?}: {text}");
                    let status = tonic::Status::from(e);
                    assert_eq!(status.code(), tonic::Code::InvalidArgument);
                    let fields: Vec<String> = tonic_types::StatusExt::get_details_bad_request(&status)
                        .map(|b| b.field_violations.into_iter().map(|v| v.field).collect())
                        .unwrap_or_default();
                    assert_eq!(fields, vec!["expires_at"], "{category:?}");
                }
                (e, g) => panic!("{category:?} +{after:?}: expected {e:?}, got {g:?}"),
            }
        }
    }

    #[test]
    fn the_limit_counts_from_the_first_publication() {
        let alert = Alert {
            category: Category::DrugTrafficking as i32,
            expires_at: Some(from_unix_millis(NOW + 300 * DAY)),
            ..Default::default()
        };
        assert!(check(&limits(), &alert, NOW).is_ok());
        // Amended 100 days later: still counted from the first version.
        assert!(check(&limits(), &alert, NOW - 100 * DAY).is_err());
    }
}
