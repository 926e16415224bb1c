//! Legal holds: what no prune removes until the hold is lifted.
//!
//! A hold names an alert, a node, a time range, or any combination of them.
//! It covers a record if every part it sets matches:
//! - the alert: the record names it ([`crate::retention::alerts_named`]: its
//!   own alert, a consultation's hits, related alerts);
//! - the node: it acted (the record's `node`) or received (a recipient);
//! - the range: the record's time is within `[from, to]` (either end may be
//!   open).
//!
//! Holds are stored beside the log, in the `audit.holds` tree of its
//! database ([`crate::AuditLog::put_hold`]), so that a prune finds them
//! wherever it runs: the gateway's (online, scheduled or asked for) and
//! `isx audit prune` (offline) stop alike at the first record a hold covers
//! ([`crate::retention::Kept::Held`]). What decides here is pure.

use isx_core::timestamp::to_unix_millis;
use isx_core::wire::AuditRecord;
pub use isx_core::wire::Hold;

use crate::retention::{Kept, alerts_named, date};

/// The id of the `n`-th hold: `hold-<n>`.
pub fn id(n: u64) -> String {
    format!("hold-{n}")
}

/// The number of a hold id (`hold-7` → 7), if it is one.
pub fn number(id: &str) -> Option<u64> {
    id.strip_prefix("hold-")
        .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) && !n.starts_with('0'))
        .and_then(|n| n.parse().ok())
}

/// The start of the hold's range, Unix ms (`None`: open).
pub fn from_ms(hold: &Hold) -> Option<u64> {
    hold.from.as_ref().map(to_unix_millis)
}

/// The end of the hold's range, Unix ms, inclusive (`None`: open).
pub fn to_ms(hold: &Hold) -> Option<u64> {
    hold.to.as_ref().map(to_unix_millis)
}

/// True if the hold sets nothing to match (it would cover every record).
pub fn is_unscoped(hold: &Hold) -> bool {
    hold.alert_id.is_empty() && hold.node.is_empty() && hold.from.is_none() && hold.to.is_none()
}

/// True if `hold` covers `r`: every part it sets matches. A hold that sets
/// nothing covers nothing (none is ever placed).
pub fn covers(hold: &Hold, r: &AuditRecord) -> bool {
    if is_unscoped(hold) {
        return false;
    }
    let time = crate::index::time_of(r);
    (hold.alert_id.is_empty() || alerts_named(r).contains(&hold.alert_id))
        && (hold.node.is_empty() || r.node == hold.node || r.recipients.iter().any(|x| x.node == hold.node))
        && from_ms(hold).is_none_or(|f| time >= f)
        && to_ms(hold).is_none_or(|t| time <= t)
}

/// Whether a hold among `holds` keeps record `seq`: the first that covers
/// it, as the reason a prune stops there. Asked for each record the
/// retention rule would let go ([`crate::retention::judge`]).
pub fn held(seq: u64, r: &AuditRecord, holds: &[Hold]) -> Option<Kept> {
    holds.iter().find(|h| covers(h, r)).map(|h| Kept::Held { seq, hold_id: h.id.clone() })
}

/// What the hold covers, in words: ids and dates only, never personal data
/// (`alert A, node fr-police, records from … to …`).
pub fn scope(hold: &Hold) -> String {
    let mut parts = Vec::new();
    if !hold.alert_id.is_empty() {
        parts.push(format!("alert {}", hold.alert_id));
    }
    if !hold.node.is_empty() {
        parts.push(format!("node {}", hold.node));
    }
    match (from_ms(hold), to_ms(hold)) {
        (Some(f), Some(t)) => parts.push(format!("records from {} to {}", date(f), date(t))),
        (Some(f), None) => parts.push(format!("records from {}", date(f))),
        (None, Some(t)) => parts.push(format!("records up to {}", date(t))),
        (None, None) => {}
    }
    if parts.is_empty() { "nothing".to_owned() } else { parts.join(", ") }
}

#[cfg(test)]
mod tests {
    use isx_core::timestamp::from_unix_millis;
    use isx_core::wire::{AuditHit, RecipientLevel};

    use super::*;

    fn hold(alert: &str, node: &str, from: Option<u64>, to: Option<u64>) -> Hold {
        Hold {
            id: id(1),
            alert_id: alert.into(),
            node: node.into(),
            from: from.map(from_unix_millis),
            to: to.map(from_unix_millis),
            ..Default::default()
        }
    }

    #[test]
    fn a_hold_covers_a_record_when_every_part_it_sets_matches() {
        let at = |t: u64, node: &str, alert: &str| AuditRecord {
            time: Some(from_unix_millis(t)),
            node: node.into(),
            alert_id: alert.into(),
            ..Default::default()
        };
        let received = AuditRecord {
            recipients: vec![RecipientLevel { node: "fr".into(), ..Default::default() }],
            ..at(50, "de", "")
        };
        let hit =
            AuditRecord { hits: vec![AuditHit { alert_id: "A".into(), ..Default::default() }], ..at(50, "it", "") };
        let related = AuditRecord { related_alert_ids: vec!["A".into()], ..at(50, "", "") };
        let cases: &[(Hold, &AuditRecord, bool)] = &[
            (hold("A", "", None, None), &at(50, "de", "A"), true),
            (hold("A", "", None, None), &at(50, "de", "B"), false),
            (hold("A", "", None, None), &hit, true),
            (hold("A", "", None, None), &related, true),
            (hold("", "fr", None, None), &received, true),
            (hold("", "de", None, None), &received, true),
            (hold("", "it", None, None), &received, false),
            (hold("", "", Some(50), Some(50)), &at(50, "", ""), true),
            (hold("", "", Some(51), None), &at(50, "", ""), false),
            (hold("", "", None, Some(49)), &at(50, "", ""), false),
            (hold("", "", None, Some(50)), &at(50, "", ""), true),
            // Every part set must match.
            (hold("A", "de", Some(0), Some(100)), &at(50, "de", "A"), true),
            (hold("A", "fr", Some(0), Some(100)), &at(50, "de", "A"), false),
            (hold("A", "de", Some(60), Some(100)), &at(50, "de", "A"), false),
            (hold("", "", None, None), &at(50, "de", "A"), false),
        ];
        for (h, r, want) in cases {
            assert_eq!(covers(h, r), *want, "{} over {r:?}", scope(h));
        }
    }

    #[test]
    fn the_first_hold_that_covers_a_record_keeps_it() {
        let r = AuditRecord { time: Some(from_unix_millis(10)), alert_id: "A".into(), ..Default::default() };
        let holds = [Hold { id: id(2), ..hold("B", "", None, None) }, Hold { id: id(3), ..hold("A", "", None, None) }];
        let kept = held(7, &r, &holds);
        assert_eq!(kept, Some(Kept::Held { seq: 7, hold_id: "hold-3".into() }));
        assert_eq!(kept.unwrap().to_string(), "seq 7 is kept: legal hold hold-3 covers it until it is lifted");
        assert_eq!(held(7, &r, &holds[..1]), None);
        assert_eq!(held(7, &r, &[]), None);
    }

    #[test]
    fn ids_and_scopes_read_back() {
        assert_eq!(id(7), "hold-7");
        for (text, n) in [("hold-7", Some(7)), ("hold-0", None), ("hold-07", None), ("hold-", None), ("7", None)] {
            assert_eq!(number(text), n, "{text}");
        }
        assert_eq!(scope(&hold("A", "fr-police", None, None)), "alert A, node fr-police");
        assert_eq!(
            scope(&hold("", "", Some(0), Some(86_400_000))),
            "records from 1970-01-01T00:00:00Z to 1970-01-02T00:00:00Z"
        );
        assert_eq!(scope(&hold("", "", None, Some(0))), "records up to 1970-01-01T00:00:00Z");
        assert_eq!(scope(&hold("", "", None, None)), "nothing");
    }
}
