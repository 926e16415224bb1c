//! Records as the pages show them: short names, times, levels, rules, and
//! each entry's proof with its verdict.

use isx_audit::checkpoint::Verified;
use isx_audit::verify;
use isx_core::wire::{AuditEntry, AuditRecord, DisclosureLevel, Operation, Outcome};
use serde::Serialize;

/// The short name of an operation: `disclosure`.
pub fn operation(op: Operation) -> String {
    isx_core::enums::short_name(&isx_core::enums::descriptor("Operation"), op.as_str_name())
}

/// The short name of a level: `redacted` (empty when the record sets none).
pub fn level(l: i32) -> String {
    match DisclosureLevel::try_from(l) {
        Ok(DisclosureLevel::Unspecified) | Err(_) => String::new(),
        Ok(l) => isx_core::display::level(l).to_owned(),
    }
}

/// A record's time, RFC 3339 to the second, or `-`.
pub fn time(r: &AuditRecord) -> String {
    r.time.as_ref().map(isx_core::timestamp::rfc3339).unwrap_or_else(|| "-".into())
}

/// One recipient of a record.
#[derive(Debug, Clone, Serialize)]
pub struct Recipient {
    /// The node.
    pub node: String,
    /// Its level (short name).
    pub level: String,
    /// The deciding rules.
    pub policies: Vec<String>,
    /// What became of it, for a collection's candidates.
    pub outcome: String,
}

/// One hit of a consultation.
#[derive(Debug, Clone, Serialize)]
pub struct Hit {
    /// The alert matched.
    pub alert_id: String,
    /// Its holder.
    pub holder: String,
    /// Shown to the caller, or withheld by policy.
    pub shown: bool,
}

/// What a lifecycle record says: an alert's change, or a holder's
/// confirmation of one (`AuditRecord.lifecycle`). No content.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Lifecycle {
    /// The change: `update`, `withdrawal`, `restriction`, `lift`, `expiry`.
    pub kind: String,
    /// The version before the change.
    pub old_version: u32,
    /// The version after it (the version confirmed, for a confirmation).
    pub new_version: u32,
    /// A confirmation: the state the holder reached (`held`, `restricted`,
    /// `deleted`); empty for a change.
    pub confirmed: String,
    /// A change: the gateway's `lifecycle.confirm_grace` then, seconds.
    pub confirm_grace_seconds: u64,
    /// The forwards (onward copies) the change also reaches.
    pub follows: Vec<String>,
}

impl Lifecycle {
    fn of(l: &isx_core::wire::LifecycleChange) -> Self {
        let short = |e: &str, name: &str| isx_core::enums::short_name(&isx_core::enums::descriptor(e), name);
        Self {
            kind: if l.kind == 0 { String::new() } else { short("ChangeKind", l.kind().as_str_name()) },
            old_version: l.old_version,
            new_version: l.new_version,
            confirmed: if l.confirmed == 0 { String::new() } else { short("CopyState", l.confirmed().as_str_name()) },
            confirm_grace_seconds: l.confirm_grace_seconds,
            follows: l.follows.clone(),
        }
    }
}

/// An entry's proof and the console's verdict on it.
#[derive(Debug, Clone, Serialize)]
pub struct Proof {
    /// The tree the proof is for.
    pub tree_size: u64,
    /// The leaf hash, hex.
    pub leaf_hash: String,
    /// The proof's hashes, hex, leaf to root.
    pub hashes: Vec<String>,
    /// True if the console verified it against the checkpoint.
    pub ok: bool,
    /// What the verification said.
    pub verdict: String,
}

impl Proof {
    /// `e`'s inclusion proof and its verdict against `cp`, if `e` carries one.
    pub fn of(e: &AuditEntry, cp: &Verified) -> Option<Self> {
        (!e.proof.is_empty() || e.proof_tree_size > 0).then(|| {
            let result = verify::inclusion(e, cp);
            Self::verdict(
                e,
                result.is_ok(),
                match result {
                    Ok(()) => format!("included in the signed tree of {} records", cp.size),
                    Err(err) => err.to_string(),
                },
            )
        })
    }

    /// `e`'s proof with a verdict given (`ok`, and why).
    pub fn verdict(e: &AuditEntry, ok: bool, verdict: String) -> Self {
        Self {
            tree_size: e.proof_tree_size,
            leaf_hash: hex::encode(&e.leaf_hash),
            hashes: e.proof.iter().map(hex::encode).collect(),
            ok,
            verdict,
        }
    }
}

/// A record as a row and its expansion.
#[derive(Debug, Clone, Serialize)]
pub struct RecordView {
    /// Its seq.
    pub seq: u64,
    /// Pruned by retention (only the hash is left).
    pub pruned: bool,
    /// Its time.
    pub time: String,
    /// Its time, Unix milliseconds (0 when pruned or unset).
    pub at_ms: u64,
    /// Its operation (short name).
    pub operation: String,
    /// Its outcome: ok, refused, error.
    pub outcome: String,
    /// The node that acted.
    pub node: String,
    /// The officer.
    pub officer: String,
    /// The alert concerned.
    pub alert_id: String,
    /// The access request concerned.
    pub request_id: String,
    /// The stated purpose.
    pub purpose: String,
    /// The justification (opened when the console holds the text key; `sealed` otherwise).
    pub justification: String,
    /// The recipients and their levels.
    pub recipients: Vec<Recipient>,
    /// The level, when the record has one recipient (a disclosure, a denial).
    pub level: String,
    /// The deciding rules (the record's, else its recipients').
    pub policies: Vec<String>,
    /// The fields withheld.
    pub withheld: Vec<String>,
    /// Detail without personal data.
    pub detail: String,
    /// A consultation's hits.
    pub hits: Vec<Hit>,
    /// The types of data a consultation used.
    pub data_types: Vec<String>,
    /// Related alerts.
    pub related: Vec<String>,
    /// The subjects' pseudonyms (keyed hashes, never the identifiers).
    pub pseudonyms: Vec<String>,
    /// The whole record, as canonical JSON.
    pub json: String,
    /// The inclusion proof, when the entry carries one.
    pub proof: Option<Proof>,
    /// An alert's change or a holder's confirmation of one.
    pub lifecycle: Option<Lifecycle>,
}

impl RecordView {
    /// The view of `e`; its proof is checked against `cp` when both are given.
    pub fn of(e: &AuditEntry, cp: Option<&Verified>) -> Self {
        Self::with_proof(e, cp.and_then(|cp| Proof::of(e, cp)))
    }

    /// The view of `e` with a proof verdict reached before (see [`Proof::of`]).
    pub fn with_proof(e: &AuditEntry, proof: Option<Proof>) -> Self {
        let empty = AuditRecord::default();
        let r = e.record.as_ref().unwrap_or(&empty);
        Self { proof, ..Self::record(e.seq, e.pruned, r) }
    }

    /// The view of a record without a proof.
    pub fn record(seq: u64, pruned: bool, r: &AuditRecord) -> Self {
        let recipients: Vec<Recipient> = r
            .recipients
            .iter()
            .map(|x| Recipient {
                node: x.node.clone(),
                level: level(x.level),
                policies: x.policy_ids.clone(),
                outcome: match x.outcome() {
                    isx_core::wire::RecipientOutcome::Unspecified => String::new(),
                    o => isx_core::enums::short_name(&isx_core::enums::descriptor("RecipientOutcome"), o.as_str_name()),
                },
            })
            .collect();
        let policies = if r.policy_ids.is_empty() && recipients.len() == 1 {
            recipients[0].policies.clone()
        } else {
            r.policy_ids.clone()
        };
        let justification = if !r.justification.is_empty() {
            r.justification.clone()
        } else if !r.justification_sealed.is_empty() {
            "(sealed: the console holds no audit-text.key)".into()
        } else {
            String::new()
        };
        Self {
            seq,
            pruned,
            time: if pruned { "(pruned)".into() } else { time(r) },
            at_ms: if pruned { 0 } else { r.time.as_ref().map(isx_core::timestamp::to_unix_millis).unwrap_or(0) },
            operation: if pruned { "(pruned)".into() } else { operation(r.operation()) },
            outcome: match r.outcome() {
                Outcome::Unspecified => String::new(),
                o => isx_core::enums::short_name(&isx_core::enums::descriptor("Outcome"), o.as_str_name()),
            },
            node: r.node.clone(),
            officer: r.officer.clone(),
            alert_id: r.alert_id.clone(),
            request_id: r.request_id.clone(),
            purpose: r.purpose.clone(),
            justification,
            level: if recipients.len() == 1 { recipients[0].level.clone() } else { String::new() },
            recipients,
            policies,
            withheld: r.withheld_fields.clone(),
            detail: r.detail.clone(),
            hits: r
                .hits
                .iter()
                .map(|h| Hit { alert_id: h.alert_id.clone(), holder: h.holder.clone(), shown: h.shown })
                .collect(),
            data_types: r.data_types.clone(),
            related: r.related_alert_ids.clone(),
            pseudonyms: r.subject_pseudonyms.clone(),
            json: if pruned { String::new() } else { isx_core::json::to_json(r) },
            proof: None,
            lifecycle: r.lifecycle.as_ref().map(Lifecycle::of),
        }
    }
}

/// Quotes a CSV field when it must be.
pub fn csv_field(s: &str) -> String {
    // A leading =, +, - or @ would be a formula in a spreadsheet.
    let s = if s.starts_with(['=', '+', '-', '@']) { format!("'{s}") } else { s.to_owned() };
    if s.contains([',', '"', '\n', '\r']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_and_formulas_defused() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"x\""), "\"say \"\"x\"\"\"");
        assert_eq!(csv_field("=HYPERLINK(1)"), "'=HYPERLINK(1)");
    }

    #[test]
    fn a_record_shows_its_one_recipients_level_and_rules() {
        let r = AuditRecord {
            operation: Operation::Disclosure as i32,
            node: "frontex".into(),
            recipients: vec![isx_core::wire::RecipientLevel {
                node: "frontex".into(),
                level: DisclosureLevel::Redacted as i32,
                policy_ids: vec!["frontex-border-crime".into()],
                outcome: 0,
            }],
            justification_sealed: vec![1, 2, 3],
            ..Default::default()
        };
        let v = RecordView::record(4, false, &r);
        assert_eq!(v.operation, "disclosure");
        assert_eq!(v.level, "redacted");
        assert_eq!(v.policies, vec!["frontex-border-crime".to_owned()]);
        assert!(v.justification.contains("sealed"));
    }
}
