//! A publish as a plan: pure functions that check an alert and turn it,
//! with the policy's decisions, into everything the publish writes — the
//! receipt, the audit records, one delivery per recipient that gets one, and
//! the lookup index rows. The handler (`exchange`) then only admits, plans,
//! appends, persists, commits and settles.

use std::collections::BTreeMap;

use isx_core::identifiers::{self, PseudonymKey};
use isx_core::timestamp::from_unix_millis;
use isx_core::validate::{TextLimits, validate_alert};
use isx_core::wire::RecipientOutcome;
use isx_core::wire::{Alert, AuditRecord, Delivery, DisclosureLevel, Receipt, RecipientDecision};
use isx_core::{FieldViolation, NodeId, NodeInfo, Role};
use isx_policy::Decision;
use isx_policy::disclosure::NO_SUBSCRIBE_ROLE;
use prost::Message;

use crate::config::Limits;
use crate::disclosure::{Candidate, Decided};
use crate::error::RequestError;
use crate::records::{self, Actor};
use crate::store::{AuditFacts, Event, IndexRow, OutboxEntry, Outgoing, PublishWrite, StoredAlert, expires_ms};

/// Checks an alert as `caller` sent it at `now_ms`: its size, every field,
/// that its origin is the caller, and that its addressees are registered.
pub(crate) fn check_alert(
    alert: &Alert,
    caller: &NodeId,
    nodes: &[NodeInfo],
    limits: &Limits,
    now_ms: u64,
) -> Result<(), RequestError> {
    let size = alert.encoded_len();
    if size > limits.max_alert_bytes {
        return Err(RequestError::TooLarge { size, limit: limits.max_alert_bytes });
    }
    let text = TextLimits { narrative: limits.max_narrative_bytes, list: limits.max_list_len, ..TextLimits::default() };
    validate_alert(alert, now_ms, &text)?;
    check_parties(alert, caller, nodes)
}

/// The origin is the caller, and every addressee is registered.
fn check_parties(alert: &Alert, caller: &NodeId, nodes: &[NodeInfo]) -> Result<(), RequestError> {
    if alert.origin != caller.as_str() {
        return Err(RequestError::OriginMismatch { caller: caller.to_string(), origin: alert.origin.clone() });
    }
    let unknown: Vec<FieldViolation> = alert
        .addressees
        .iter()
        .enumerate()
        .filter(|(_, a)| !nodes.iter().any(|n| n.id.as_str() == *a))
        .map(|(i, a)| FieldViolation {
            field: format!("addressees[{i}]"),
            description: format!("{a:?} is not a registered node"),
        })
        .collect();
    let onward = alert.labels.as_ref().map(|l| l.onward.as_slice()).unwrap_or_default();
    let unknown_onward =
        onward.iter().enumerate().filter(|(_, a)| !nodes.iter().any(|n| n.id.as_str() == *a)).map(|(i, a)| {
            FieldViolation {
                field: format!("labels.onward[{i}]"),
                description: format!("{a:?} is not a registered node"),
            }
        });
    let unknown: Vec<FieldViolation> = unknown.into_iter().chain(unknown_onward).collect();
    if !unknown.is_empty() {
        return Err(RequestError::Invalid(isx_core::validate::capped(unknown, 0)));
    }
    Ok(())
}

/// The lookup index rows of `alert`: one pseudonym per person, document
/// and object identifier, with its kind.
pub(crate) fn index_rows(alert: &Alert, pseudonyms: &PseudonymKey) -> Vec<IndexRow> {
    identifiers::of_alert(alert)
        .iter()
        .map(|i| IndexRow { pseudonym: pseudonyms.pseudonym(i), kind: identifiers::kind_of(i).to_owned() })
        .collect()
}

/// What a publish is planned from.
pub(crate) struct PublishInput<'a> {
    /// The checked alert, `hops` set by the gateway.
    pub alert: Alert,
    /// SHA-256 of the alert as the publisher sent it.
    pub digest: [u8; 32],
    /// Who publishes.
    pub by: Actor<'a>,
    /// The routed candidates, in the decisions' order.
    pub candidates: &'a [Candidate<'a>],
    /// The policy's decision on each candidate.
    pub decided: Decided,
    /// Candidates whose queue is full, with how many events wait for each,
    /// and the limit.
    pub full: &'a BTreeMap<NodeId, u64>,
    /// `limits.max_queue_per_node`.
    pub queue_limit: u64,
    /// Now, Unix milliseconds.
    pub now_ms: u64,
    /// The alert's lookup index rows ([`index_rows`]), computed once per
    /// publish (the overlap check reads them before the plan).
    pub index: Vec<IndexRow>,
    /// Received restricted alerts whose labels this one took ([`crate::onward::overlaps`]).
    pub raised_by: Vec<String>,
}

/// Everything one publish writes, decided before anything is written.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PublishPlan {
    /// What the publisher is answered.
    pub receipt: Receipt,
    /// The collection record, then one denial per refused recipient.
    pub records: Vec<AuditRecord>,
    /// The rows of the store.
    pub write: PublishWrite,
}

/// Plans a publish. Pure: no I/O, no clock, no randomness.
pub(crate) fn plan(input: PublishInput<'_>) -> PublishPlan {
    let PublishInput { alert, digest, by, candidates, decided, full, queue_limit, now_ms, index, raised_by } = input;
    let queued_at = from_unix_millis(now_ms);
    let digest_hex = hex::encode(digest);
    let subjects: Vec<String> = index.iter().map(|r| r.pseudonym.clone()).collect();
    let expires_ms = expires_ms(&alert);
    let facts = AuditFacts {
        purpose: alert.purpose.clone(),
        legal_basis: alert.legal_basis.clone(),
        subject_pseudonyms: subjects.clone(),
    };
    let policy_version = decided.policy_version;

    let mut receipt_rows = Vec::with_capacity(candidates.len());
    let mut outgoing = Vec::new();
    let mut refused = Vec::new();
    for ((node, _), mut d) in candidates.iter().zip(decided.decisions) {
        let outcome = if d.level == DisclosureLevel::Denied || d.view.is_none() {
            RecipientOutcome::Denied
        } else if !node.has(Role::Subscribe) {
            // Policy may allow it something, but it cannot receive: a denial.
            d = Decision {
                level: DisclosureLevel::Denied,
                policy_ids: vec![NO_SUBSCRIBE_ROLE.to_owned()],
                reasons: vec![],
                removed_fields: vec![],
                view: None,
            };
            RecipientOutcome::NoSubscribeRole
        } else if full.contains_key(&node.id) {
            RecipientOutcome::QueueFull
        } else {
            RecipientOutcome::Queued
        };
        let row = RecipientDecision {
            node: node.id.to_string(),
            level: d.level as i32,
            policy_ids: d.policy_ids.clone(),
            removed_fields: d.removed_fields.clone(),
            outcome: outcome as i32,
        };
        match (outcome, d.view) {
            (RecipientOutcome::Queued, Some(view)) => {
                let delivery = Delivery {
                    alert: Some(view),
                    level: d.level as i32,
                    policy_ids: d.policy_ids,
                    removed_fields: d.removed_fields,
                    queued_at: Some(queued_at),
                    policy_version: policy_version.clone(),
                    request_id: String::new(),
                };
                let entry =
                    OutboxEntry { event: Some(Event::Delivery(delivery)), expires_ms, audit: Some(facts.clone()) };
                outgoing.push(Outgoing { node: node.id.clone(), entry });
            }
            (RecipientOutcome::QueueFull, _) => {
                refused.push((row.clone(), full.get(&node.id).copied().unwrap_or(queue_limit)));
            }
            _ => refused.push((row.clone(), 0)),
        }
        receipt_rows.push(row);
    }
    let receipt = Receipt {
        alert_id: alert.alert_id.clone(),
        content_digest: digest_hex.clone(),
        accepted_at: Some(queued_at),
        recipients: receipt_rows,
        hops: alert.hops,
        policy_version: policy_version.clone(),
        labels: if raised_by.is_empty() { None } else { alert.labels.clone() },
        raised_by,
        version: alert.version.max(1),
        replaces_digest: String::new(),
    };
    let collection = records::collection(
        by,
        &alert,
        &digest_hex,
        &receipt.recipients,
        &policy_version,
        &subjects,
        &receipt.raised_by,
    );
    let mut records = Vec::with_capacity(1 + refused.len());
    records.extend(refused.iter().map(|(r, queued)| match r.outcome() {
        RecipientOutcome::QueueFull => records::queue_full(by, &collection, r, *queued, queue_limit),
        _ => records::policy_denial(by, &collection, r),
    }));
    records.insert(0, collection);
    let stored = StoredAlert {
        alert: Some(alert),
        digest: digest.to_vec(),
        receipt: Some(receipt.clone()),
        ..Default::default()
    };
    PublishPlan { receipt, records, write: PublishWrite { stored, outgoing, expires_ms, index } }
}

#[cfg(test)]
mod tests {
    use super::*;
    use isx_core::NodeKind;
    use isx_core::wire::{Operation, Outcome, Subject, SubjectRole};

    fn node(id: &str) -> NodeInfo {
        NodeInfo {
            id: NodeId::new(id).unwrap(),
            kind: NodeKind::National,
            country: "FR".into(),
            roles: NodeKind::National.default_roles(),
            name: id.into(),
        }
    }

    fn decision(level: DisclosureLevel, view: Option<Alert>, policy: &str) -> Decision {
        Decision {
            level,
            policy_ids: vec![policy.into()],
            reasons: vec![format!("because {policy}")],
            removed_fields: if level == DisclosureLevel::Redacted {
                vec!["subjects[0].family_name".into()]
            } else {
                vec![]
            },
            view,
        }
    }

    fn alert() -> Alert {
        Alert {
            alert_id: "a1".into(),
            origin: "de-police".into(),
            purpose: "prevention of terrorism".into(),
            legal_basis: "LED Art. 8".into(),
            expires_at: Some(from_unix_millis(9_000)),
            subjects: vec![Subject {
                family_name: "Brandt".into(),
                given_names: "Kai".into(),
                date_of_birth: "1990-01-02".into(),
                role: SubjectRole::Suspect as i32,
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    /// One full, one redacted, one denied recipient.
    fn planned() -> (PublishPlan, Alert, PseudonymKey) {
        let (fr, it, eu) = (node("fr-police"), node("it-police"), node("europol"));
        let candidates = [(&fr, true), (&it, false), (&eu, false)];
        let alert = alert();
        let key = PseudonymKey::new([7; 32]);
        let conn = crate::conn::ConnInfo::new(
            isx_tls::PeerIdentity { node: NodeId::new("de-police").unwrap(), fingerprint: "ab12".into() },
            "127.0.0.1:1".parse().unwrap(),
        );
        let decided = Decided {
            policy_version: "v1".into(),
            decisions: vec![
                decision(DisclosureLevel::Full, Some(alert.clone()), "national-full"),
                decision(
                    DisclosureLevel::Redacted,
                    Some(Alert { narrative: String::new(), ..alert.clone() }),
                    "redact",
                ),
                decision(DisclosureLevel::Denied, None, "mandate"),
            ],
        };
        let digest = isx_core::digest::content_digest(&alert);
        let plan = plan(PublishInput {
            index: index_rows(&alert, &key),
            alert: alert.clone(),
            digest,
            by: Actor::new(&conn, "KHK Weber"),
            candidates: &candidates,
            decided,
            full: &BTreeMap::new(),
            queue_limit: 10,
            now_ms: 1_000,
            raised_by: vec![],
        });
        (plan, alert, key)
    }

    #[test]
    fn the_receipt_lists_every_candidate_with_its_level_and_rules() {
        let (plan, alert, _) = planned();
        let r = &plan.receipt;
        assert_eq!(r.alert_id, "a1");
        assert_eq!(r.content_digest, isx_core::digest::content_digest_hex(&alert));
        assert_eq!(r.policy_version, "v1");
        let rows: Vec<(&str, DisclosureLevel, &str)> =
            r.recipients.iter().map(|d| (d.node.as_str(), d.level(), d.policy_ids[0].as_str())).collect();
        assert_eq!(
            rows,
            [
                ("fr-police", DisclosureLevel::Full, "national-full"),
                ("it-police", DisclosureLevel::Redacted, "redact"),
                ("europol", DisclosureLevel::Denied, "mandate")
            ]
        );
        assert_eq!(r.recipients[1].removed_fields, ["subjects[0].family_name"]);
    }

    #[test]
    fn only_permitted_recipients_get_a_delivery_with_their_view() {
        let (plan, alert, key) = planned();
        let to: Vec<&str> = plan.write.outgoing.iter().map(|o| o.node.as_str()).collect();
        assert_eq!(to, ["fr-police", "it-police"], "the denied recipient gets nothing");
        let Some(Event::Delivery(d)) = &plan.write.outgoing[1].entry.event else { panic!("a delivery") };
        assert_eq!(d.level(), DisclosureLevel::Redacted);
        assert_eq!(d.alert.as_ref().unwrap().narrative, "", "the redacted view, not the alert");
        assert_eq!(d.policy_version, "v1");
        assert_eq!(d.removed_fields, ["subjects[0].family_name"]);
        let facts = plan.write.outgoing[1].entry.audit.clone().unwrap();
        assert_eq!(facts.purpose, alert.purpose);
        assert_eq!(facts.legal_basis, alert.legal_basis);
        assert_eq!(facts.subject_pseudonyms, key.of_alert(&alert));
        assert_eq!(plan.write.outgoing[0].entry.expires_ms, 9_000);
        assert_eq!(plan.write.expires_ms, 9_000);
        assert_eq!(plan.write.stored.digest, isx_core::digest::content_digest(&alert).to_vec());
        let kinds: Vec<&str> = plan.write.index.iter().map(|r| r.kind.as_str()).collect();
        assert_eq!(kinds, ["name"]);
        assert_eq!(plan.write.index[0].pseudonym, key.of_alert(&alert)[0]);
    }

    #[test]
    fn the_records_are_one_collection_and_one_denial_per_refused_recipient() {
        let (plan, alert, key) = planned();
        let ops: Vec<(Operation, Outcome)> = plan.records.iter().map(|r| (r.operation(), r.outcome())).collect();
        assert_eq!(ops, [(Operation::Collection, Outcome::Ok), (Operation::Denial, Outcome::Refused)]);
        let (c, d) = (&plan.records[0], &plan.records[1]);
        for r in [c, d] {
            assert_eq!(
                (r.node.as_str(), r.officer.as_str(), r.cert_fingerprint.as_str()),
                ("de-police", "KHK Weber", "ab12")
            );
            assert_eq!(
                (r.purpose.as_str(), r.legal_basis.as_str()),
                (alert.purpose.as_str(), alert.legal_basis.as_str())
            );
            assert_eq!(r.alert_id, "a1");
            assert_eq!(r.content_digest, isx_core::digest::content_digest_hex(&alert));
            assert_eq!(r.policy_version, "v1");
            assert_eq!(r.subject_pseudonyms, key.of_alert(&alert));
        }
        assert_eq!(c.recipients.len(), 3);
        assert_eq!(c.recipients[1].level(), DisclosureLevel::Redacted);
        assert_eq!(d.recipients.len(), 1);
        assert_eq!((d.recipients[0].node.as_str(), d.recipients[0].level()), ("europol", DisclosureLevel::Denied));
        assert_eq!(d.policy_ids, ["mandate"]);
    }

    #[test]
    fn a_relay_says_what_it_relays() {
        let (fr, it) = (node("fr-police"), node("it-police"));
        let candidates = [(&fr, true)];
        let _ = it;
        let alert = Alert { forwarded_from: "a0".into(), hops: 2, ..alert() };
        let key = PseudonymKey::new([7; 32]);
        let plan = plan(PublishInput {
            digest: isx_core::digest::content_digest(&alert),
            index: index_rows(&alert, &key),
            alert,
            by: Actor::gateway(),
            candidates: &candidates,
            decided: Decided {
                policy_version: "v1".into(),
                decisions: vec![decision(DisclosureLevel::Full, Some(self::alert()), "x")],
            },
            full: &BTreeMap::new(),
            queue_limit: 10,
            now_ms: 0,
            raised_by: vec![],
        });
        assert_eq!(plan.records[0].detail, "relays a0 (hop 2)");
        assert_eq!(plan.receipt.hops, 2);
    }

    #[test]
    fn the_origin_is_the_caller_and_addressees_are_registered() {
        let nodes = [node("de-police"), node("fr-police")];
        let (de, fr) = (NodeId::new("de-police").unwrap(), NodeId::new("fr-police").unwrap());
        let to = |a: &[&str]| Alert { addressees: a.iter().map(|s| s.to_string()).collect(), ..alert() };
        assert!(check_parties(&to(&["fr-police"]), &de, &nodes).is_ok());
        assert!(matches!(
            check_parties(&to(&["fr-police"]), &fr, &nodes),
            Err(RequestError::OriginMismatch { caller, origin }) if caller == "fr-police" && origin == "de-police"
        ));
        let Err(RequestError::Invalid(v)) = check_parties(&to(&["fr-police", "nl-police"]), &de, &nodes) else {
            panic!("an unregistered addressee is refused")
        };
        assert_eq!(v.violations.len(), 1);
        assert_eq!(v.violations[0].field, "addressees[1]");
    }
}
