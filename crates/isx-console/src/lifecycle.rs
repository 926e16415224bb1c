//! An alert's lifecycle as the log tells it (pure): each change (amended,
//! withdrawn, restricted, lifted, expired) with its version, reason, officer
//! and what each recipient was asked to do, and each recipient's
//! confirmation. A copy not confirmed after the grace its change record
//! names is overdue; one whose change a later change replaced is superseded.

use serde::Serialize;

use crate::text::RecordView;

/// One recipient's copy, as one change asked for it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CopyView {
    /// The holder.
    pub node: String,
    /// Its level at the new version (short name; empty for a deletion).
    pub level: String,
    /// What the change did to it: `updated`, `withdrawn`, `restricted`, ...
    pub outcome: String,
    /// The state its holder must confirm: `held`, `restricted`, `deleted`.
    pub expects: String,
    /// When it confirmed, RFC 3339; empty while unconfirmed.
    pub confirmed_at: String,
    /// The holder confirmed this change.
    pub confirmed: bool,
    /// A later change to the same copy replaced this one before it was confirmed.
    pub superseded: bool,
    /// Unconfirmed for longer than the change's grace.
    pub overdue: bool,
}

/// One change of the alert.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ChangeView {
    /// The record's seq.
    pub seq: u64,
    /// Its time, RFC 3339.
    pub time: String,
    /// `alteration` or `erasure`.
    pub operation: String,
    /// `update`, `withdrawal`, `restriction`, `lift` or `expiry`.
    pub kind: String,
    /// The version before and after.
    pub old_version: u32,
    /// The version after.
    pub new_version: u32,
    /// The reason given (opened when the console holds the text key).
    pub reason: String,
    /// The officer who made it (empty for the gateway: expiry).
    pub officer: String,
    /// The node that made it (the origin; empty for the gateway).
    pub node: String,
    /// The forwards the change also reached.
    pub follows: Vec<String>,
    /// The grace the holders had, seconds (0: the record names none).
    pub grace_seconds: u64,
    /// Every copy the change reached.
    pub copies: Vec<CopyView>,
}

/// The lifecycle of one alert.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct History {
    /// Every change, oldest first.
    pub changes: Vec<ChangeView>,
    /// Copies of the latest change to each holder that are not confirmed.
    pub unconfirmed: usize,
    /// Of those, how many are overdue.
    pub overdue: usize,
    /// Confirmations that answer no change the log shows (seqs).
    pub unmatched: Vec<u64>,
}

/// The state a holder must confirm for a change of `kind` that did
/// `outcome` to its copy; `None` when nothing was sent to it.
pub fn expects(kind: &str, outcome: &str) -> Option<&'static str> {
    match outcome {
        "withdrawn" => Some("deleted"),
        "restricted" => Some("restricted"),
        "lifted" | "updated" | "queued" => Some("held"),
        "denied" | "queue_full" | "no_subscribe_role" => None,
        _ => match kind {
            "withdrawal" | "expiry" => Some("deleted"),
            "restriction" => Some("restricted"),
            "lift" | "update" => Some("held"),
            _ => None,
        },
    }
}

/// The alert's changes and confirmations among `rows` (any order; other
/// records are ignored), judged at `now_ms`.
pub fn history(rows: &[RecordView], now_ms: u64) -> History {
    let mut rows: Vec<&RecordView> = rows.iter().filter(|r| r.lifecycle.is_some()).collect();
    rows.sort_by_key(|r| r.seq);
    let mut out = History::default();
    // holder -> (change index, copy index) of the latest change sent to it.
    let mut latest: std::collections::BTreeMap<String, (usize, usize)> = Default::default();
    let mut at_ms: Vec<u64> = Vec::new();
    for r in rows {
        let Some(l) = &r.lifecycle else { continue };
        if r.operation == "change_confirmed" {
            let answered = latest.get(&r.node).copied().filter(|(c, i)| {
                let change = &out.changes[*c];
                change.new_version == l.new_version && change.copies[*i].expects == l.confirmed
            });
            match answered {
                Some((c, i)) => {
                    let copy = &mut out.changes[c].copies[i];
                    copy.confirmed = true;
                    copy.confirmed_at = r.time.clone();
                }
                None => out.unmatched.push(r.seq),
            }
            continue;
        }
        let index = out.changes.len();
        let mut copies = Vec::new();
        for x in &r.recipients {
            let Some(state) = expects(&l.kind, &x.outcome) else { continue };
            if let Some((c, i)) = latest.insert(x.node.clone(), (index, copies.len())) {
                let older = &mut out.changes[c].copies[i];
                older.superseded = !older.confirmed;
            }
            copies.push(CopyView {
                node: x.node.clone(),
                level: x.level.clone(),
                outcome: x.outcome.clone(),
                expects: state.to_owned(),
                confirmed_at: String::new(),
                confirmed: false,
                superseded: false,
                overdue: false,
            });
        }
        at_ms.push(r.at_ms);
        out.changes.push(ChangeView {
            seq: r.seq,
            time: r.time.clone(),
            operation: r.operation.clone(),
            kind: l.kind.clone(),
            old_version: l.old_version,
            new_version: l.new_version,
            reason: r.justification.clone(),
            officer: r.officer.clone(),
            node: r.node.clone(),
            follows: l.follows.clone(),
            grace_seconds: l.confirm_grace_seconds,
            copies,
        });
    }
    for (c, i) in latest.values() {
        let change = &mut out.changes[*c];
        let late =
            change.grace_seconds > 0 && now_ms.saturating_sub(at_ms[*c]) > change.grace_seconds.saturating_mul(1000);
        let copy = &mut change.copies[*i];
        if !copy.confirmed {
            out.unconfirmed += 1;
            copy.overdue = late;
            out.overdue += usize::from(late);
        }
    }
    out
}
