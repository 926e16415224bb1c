//! Retention by rule: which prefix of the log pruning may remove.
//!
//! # The rule
//! - An audit record is kept for the retention `R` (three years by default,
//!   SIS Art. 12) from its own time.
//! - A record that names an alert (its `alert_id`, a consultation's hits, or
//!   `related_alert_ids`) is kept for `R` from that alert's *end*, not its
//!   creation: while the alert is live its history is never pruned. An
//!   alert ends with its ERASURE record (expiry or erasure), or with the
//!   DENIAL (outcome ERROR) of a publish withdrawn before it was shared.
//! - Nothing younger than the floor is pruned, whatever cut-off is asked,
//!   and no cut-off in the future is accepted.
//!
//! Pruning removes only a prefix of the log (a verifier accepts nothing
//! else, see [`crate::verify::LogVerifier`]), so it stops at the first record
//! the rule keeps, and says which one and why ([`Kept`]).
//!
//! What decides ([`Rule`], [`Cutoff`], [`AlertState`], [`judge`]) is pure;
//! [`crate::AuditLog::plan_prune`] and [`crate::AuditLog::prune`] apply it to
//! the stored log. A legal hold ([`crate::hold`]) is one more reason a
//! record is kept ([`Kept::Held`]), until it is lifted.

use isx_core::timestamp::{from_unix_millis, rfc3339};
use isx_core::wire::{AuditRecord, Operation, Outcome};

/// The retention rule, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// How long a record is kept from its time, or from its alert's end.
    pub retention_ms: u64,
    /// Nothing younger than this is ever pruned.
    pub floor_ms: u64,
}

/// The time before which records may go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cutoff {
    /// Unix ms: records (and alert ends) strictly before it may be pruned.
    pub at_ms: u64,
    /// Asked for explicitly (an earlier date than the rule's), rather than
    /// `now − retention`.
    pub asked: bool,
}

/// Why a cut-off was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    /// The cut-off is after now.
    #[error("the cut-off {} is in the future (now is {})", date(*before_ms), date(*now_ms))]
    Future {
        /// The cut-off asked, Unix ms.
        before_ms: u64,
        /// Now, Unix ms.
        now_ms: u64,
    },
    /// The cut-off is inside the floor.
    #[error(
        "the cut-off {} is inside the retention floor of {}: nothing after {} is pruned",
        date(*before_ms),
        span(*floor_ms),
        date(*latest_ms)
    )]
    InsideFloor {
        /// The cut-off asked, Unix ms.
        before_ms: u64,
        /// The floor, ms.
        floor_ms: u64,
        /// The latest cut-off allowed now (now − floor), Unix ms.
        latest_ms: u64,
    },
}

impl Rule {
    /// The cut-off: `before_ms` if given, else `now − retention`. Refuses a
    /// cut-off in the future or after `now − floor`.
    pub fn cutoff(&self, before_ms: Option<u64>, now_ms: u64) -> Result<Cutoff, RuleError> {
        let latest_ms = now_ms.saturating_sub(self.floor_ms);
        let cutoff = match before_ms {
            Some(b) if b > now_ms => return Err(RuleError::Future { before_ms: b, now_ms }),
            Some(b) => Cutoff { at_ms: b, asked: true },
            None => Cutoff { at_ms: now_ms.saturating_sub(self.retention_ms), asked: false },
        };
        if cutoff.at_ms > latest_ms {
            return Err(RuleError::InsideFloor { before_ms: cutoff.at_ms, floor_ms: self.floor_ms, latest_ms });
        }
        Ok(cutoff)
    }

    /// The rule in words, for the ERASURE record.
    pub fn describe(&self) -> String {
        format!(
            "a record is kept {r} from its time, a record naming an alert {r} from the alert's end (expiry or erasure) and never while it is live, nothing younger than the floor of {f}",
            r = span(self.retention_ms),
            f = span(self.floor_ms)
        )
    }
}

/// What the log says of an alert, from its newest lifecycle record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertState {
    /// Collected, and not ended since.
    Live,
    /// Ended at this time (Unix ms).
    Ended(u64),
    /// No lifecycle record left: never stored here (a refused publish), or
    /// ended long ago and its records pruned. Its records follow their own time.
    Unknown,
}

/// The lifecycle meaning of `r` for the alert it is about (its own
/// `alert_id`): `Some(Live)` for a COLLECTION OK, `Some(Ended(time))` for an
/// ERASURE OK or a withdrawn publish (DENIAL, outcome ERROR), else `None`.
pub fn lifecycle(r: &AuditRecord) -> Option<AlertState> {
    match (r.operation(), r.outcome()) {
        (Operation::Collection, Outcome::Ok) => Some(AlertState::Live),
        (Operation::Erasure, Outcome::Ok) | (Operation::Denial, Outcome::Error) => {
            Some(AlertState::Ended(crate::index::time_of(r)))
        }
        _ => None,
    }
}

/// Every alert a record names, sorted, without repeats.
pub fn alerts_named(r: &AuditRecord) -> Vec<String> {
    let mut out: Vec<String> = std::iter::once(r.alert_id.clone())
        .chain(r.hits.iter().map(|h| h.alert_id.clone()))
        .chain(r.related_alert_ids.iter().cloned())
        .filter(|a| !a.is_empty())
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Why the first record the rule keeps is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kept {
    /// Recorded at or after the cut-off.
    Recent {
        /// The record.
        seq: u64,
        /// Its time, Unix ms.
        time_ms: u64,
    },
    /// It names an alert still live.
    Live {
        /// The record.
        seq: u64,
        /// The alert.
        alert_id: String,
    },
    /// It names an alert that ended at or after the cut-off.
    EndedInside {
        /// The record.
        seq: u64,
        /// The alert.
        alert_id: String,
        /// When it ended, Unix ms.
        ended_ms: u64,
    },
    /// A legal hold covers it.
    Held {
        /// The record.
        seq: u64,
        /// The hold (`hold-<n>`).
        hold_id: String,
    },
}

impl Kept {
    /// The record kept.
    pub fn seq(&self) -> u64 {
        match self {
            Kept::Recent { seq, .. }
            | Kept::Live { seq, .. }
            | Kept::EndedInside { seq, .. }
            | Kept::Held { seq, .. } => *seq,
        }
    }
}

impl std::fmt::Display for Kept {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Kept::Recent { seq, time_ms } => {
                write!(f, "seq {seq} is kept: recorded {}, inside the retention", date(*time_ms))
            }
            Kept::Live { seq, alert_id } => write!(f, "seq {seq} is kept: alert {alert_id} is still live"),
            Kept::EndedInside { seq, alert_id, ended_ms } => {
                write!(f, "seq {seq} is kept: alert {alert_id} ended {}, inside the retention", date(*ended_ms))
            }
            Kept::Held { seq, hold_id } => {
                write!(f, "seq {seq} is kept: legal hold {hold_id} covers it until it is lifted")
            }
        }
    }
}

/// Whether record `seq` may be pruned at `cutoff` by the rule: `None` if
/// it may, else why not. `state` tells what the log says of each alert it
/// names. (The legal holds are asked next: `crate::hold::held`.)
pub fn judge(
    seq: u64,
    r: &AuditRecord,
    cutoff: &Cutoff,
    state: &mut dyn FnMut(&str) -> Result<AlertState, crate::AuditError>,
) -> Result<Option<Kept>, crate::AuditError> {
    let time_ms = crate::index::time_of(r);
    if time_ms >= cutoff.at_ms {
        return Ok(Some(Kept::Recent { seq, time_ms }));
    }
    for alert_id in alerts_named(r) {
        match state(&alert_id)? {
            AlertState::Live => return Ok(Some(Kept::Live { seq, alert_id })),
            AlertState::Ended(ended_ms) if ended_ms >= cutoff.at_ms => {
                return Ok(Some(Kept::EndedInside { seq, alert_id, ended_ms }));
            }
            AlertState::Ended(_) | AlertState::Unknown => {}
        }
    }
    Ok(None)
}

/// What a prune removes, or would remove.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrunePlan {
    /// The pruned prefix before: `[0, from)`.
    pub from: u64,
    /// The pruned prefix after: `[0, upto)`; `[from, upto)` goes now.
    pub upto: u64,
    /// The time of the last record that goes (`None` if none goes).
    pub last_ms: Option<u64>,
    /// The first record kept and why; `None` if the prune reaches the end of the log.
    pub kept: Option<Kept>,
    /// The cut-off applied.
    pub cutoff: Cutoff,
    /// Records in the log when planned.
    pub size: u64,
}

impl PrunePlan {
    /// Record bodies that go.
    pub fn count(&self) -> u64 {
        self.upto - self.from
    }

    /// Why the prune stops where it does.
    pub fn stop(&self) -> String {
        match &self.kept {
            Some(k) => k.to_string(),
            None => format!("it reaches the end of the log ({} records)", self.size),
        }
    }

    /// The ERASURE record's detail. It starts with the prefix that
    /// [`crate::verify::pruned_range`] reads (`retention: audit record bodies
    /// [0, N) are pruned`), then says what went and why.
    pub fn detail(&self, rule: &Rule, officer: &str) -> String {
        let last = self.last_ms.map(|t| format!(", the last recorded {}", date(t))).unwrap_or_default();
        format!(
            "{} ([{}, {}) now{last}); rule: {}; cut-off {} ({}); ordered by {officer}; stops because {}; their hashes stay",
            crate::verify::pruned_prefix(self.upto),
            self.from,
            self.upto,
            rule.describe(),
            date(self.cutoff.at_ms),
            if self.cutoff.asked { "asked, before the rule's" } else { "now minus the retention" },
            self.stop(),
        )
    }
}

/// A Unix-ms time as RFC 3339.
pub fn date(ms: u64) -> String {
    rfc3339(&from_unix_millis(ms))
}

/// A span in the units the config takes: `1095d`, `36h`, `90s`, `250ms`.
pub fn span(ms: u64) -> String {
    const UNITS: [(u64, &str); 4] = [(86_400_000, "d"), (3_600_000, "h"), (60_000, "m"), (1000, "s")];
    UNITS
        .iter()
        .find(|(unit, _)| ms > 0 && ms.is_multiple_of(*unit))
        .map(|(unit, name)| format!("{}{name}", ms / unit))
        .unwrap_or_else(|| format!("{ms}ms"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: u64 = 86_400_000;

    #[test]
    fn the_cutoff_is_the_rule_unless_an_earlier_date_is_asked() {
        let rule = Rule { retention_ms: 1095 * DAY, floor_ms: 30 * DAY };
        let now = 2000 * DAY;
        assert_eq!(rule.cutoff(None, now), Ok(Cutoff { at_ms: 905 * DAY, asked: false }), "now − retention");
        assert_eq!(rule.cutoff(Some(100 * DAY), now), Ok(Cutoff { at_ms: 100 * DAY, asked: true }));
        assert_eq!(rule.cutoff(Some(now - 30 * DAY), now).map(|c| c.at_ms), Ok(now - 30 * DAY), "the floor itself");
        assert_eq!(
            rule.cutoff(Some(now + 1), now),
            Err(RuleError::Future { before_ms: now + 1, now_ms: now }),
            "the future"
        );
        let inside = rule.cutoff(Some(now - 30 * DAY + 1), now).unwrap_err();
        assert_eq!(
            inside,
            RuleError::InsideFloor { before_ms: now - 30 * DAY + 1, floor_ms: 30 * DAY, latest_ms: now - 30 * DAY }
        );
        assert!(inside.to_string().contains("retention floor of 30d"), "{inside}");
        // A rule whose retention is shorter than its floor still never cuts inside it.
        let odd = Rule { retention_ms: DAY, floor_ms: 30 * DAY };
        assert!(matches!(odd.cutoff(None, now), Err(RuleError::InsideFloor { .. })));
    }

    #[test]
    fn spans_read_as_the_config_writes_them() {
        for (ms, text) in [(1095 * DAY, "1095d"), (36 * 3_600_000, "36h"), (90_000, "90s"), (250, "250ms"), (0, "0ms")]
        {
            assert_eq!(span(ms), text);
        }
    }

    #[test]
    fn a_record_is_judged_by_its_time_and_by_each_alert_it_names() {
        let cutoff = Cutoff { at_ms: 1000, asked: false };
        let at = |t: u64, alert: &str, related: &[&str]| AuditRecord {
            time: Some(from_unix_millis(t)),
            alert_id: alert.into(),
            related_alert_ids: related.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        };
        let mut states = |a: &str| {
            Ok(match a {
                "live" => AlertState::Live,
                "ended-late" => AlertState::Ended(1000),
                "ended" => AlertState::Ended(999),
                _ => AlertState::Unknown,
            })
        };
        let cases: &[(AuditRecord, Option<Kept>)] = &[
            (at(999, "", &[]), None),
            (at(1000, "", &[]), Some(Kept::Recent { seq: 7, time_ms: 1000 })),
            (at(10, "live", &[]), Some(Kept::Live { seq: 7, alert_id: "live".into() })),
            (at(10, "ended", &["live"]), Some(Kept::Live { seq: 7, alert_id: "live".into() })),
            (
                at(10, "ended-late", &[]),
                Some(Kept::EndedInside { seq: 7, alert_id: "ended-late".into(), ended_ms: 1000 }),
            ),
            (at(10, "ended", &["never-stored"]), None),
        ];
        for (record, want) in cases {
            assert_eq!(&judge(7, record, &cutoff, &mut states).unwrap(), want, "{record:?}");
        }
        let kept = Kept::EndedInside { seq: 42, alert_id: "X".into(), ended_ms: 0 };
        assert_eq!(kept.to_string(), "seq 42 is kept: alert X ended 1970-01-01T00:00:00Z, inside the retention");
    }

    #[test]
    fn only_a_collection_starts_and_only_an_erasure_or_a_withdrawal_ends_an_alert() {
        let r = |op: Operation, outcome: Outcome| AuditRecord {
            operation: op as i32,
            outcome: outcome as i32,
            time: Some(from_unix_millis(5)),
            ..Default::default()
        };
        assert_eq!(lifecycle(&r(Operation::Collection, Outcome::Ok)), Some(AlertState::Live));
        assert_eq!(lifecycle(&r(Operation::Erasure, Outcome::Ok)), Some(AlertState::Ended(5)));
        assert_eq!(lifecycle(&r(Operation::Denial, Outcome::Error)), Some(AlertState::Ended(5)));
        assert_eq!(lifecycle(&r(Operation::Denial, Outcome::Refused)), None);
        assert_eq!(lifecycle(&r(Operation::Disclosure, Outcome::Ok)), None);
        assert_eq!(lifecycle(&r(Operation::Collection, Outcome::Refused)), None);
    }
}
