//! `Exchange.Lookup`: hit/no-hit (Prüm, CIR hit-flag).
//!
//! The caller's identifiers are normalised and hashed with the gateway's
//! pseudonym key and matched against the lookup index. For each matching
//! alert, policy (action `lookup`) decides whether the caller sees a hit
//! flag (reference, holder, category, action) or nothing at all. One
//! CONSULTATION record names the identifier *types*, the query pseudonyms
//! and every match, shown or withheld, and is durable before the answer.

use std::collections::BTreeMap;

use isx_core::identifiers;
use isx_core::wire::{AuditHit, Hit, LookupRequest, LookupResponse};
use isx_core::{NodeId, Role};
use isx_policy::LookupQuestion;
use tonic::Request;
use tracing::info;

use crate::error::RequestError;
use crate::open_hits::{self, OpenHitRow};
use crate::records::{self, Consultation};
use crate::state::State;
use crate::store::{HitRow, StoredAlert, expires_ms};
use crate::text::Fields;

/// Why a stored alert is hidden from lookups, as the policy id its withheld
/// match is recorded with: `restricted` or `withdrawn`.
pub(crate) fn hidden(stored: &StoredAlert) -> Option<&'static str> {
    if !stored.hidden_from_lookup() {
        return None;
    }
    Some(match stored.state() {
        isx_core::wire::AlertState::Withdrawn => "withdrawn",
        _ => "restricted",
    })
}

/// The hit id for `caller` and `alert_id`: a keyed hash, stable across
/// lookups, meaningless to anyone without the gateway's key.
pub(crate) fn hit_id(st: &State, caller: &NodeId, alert_id: &str) -> String {
    let mac = st.pseudonyms().pseudonym(&format!("hit:{caller}:{alert_id}"));
    format!("hit-{}", &mac[..20])
}

/// `Exchange.Lookup`.
pub(crate) async fn lookup(st: &State, req: Request<LookupRequest>) -> Result<LookupResponse, RequestError> {
    let caller = st.caller(&req, &[Role::Lookup])?;
    let body = req.into_inner();
    let mut fields = Fields::default();
    let ids = match identifiers::of_lookup(&body.identifiers, st.limits.max_list_len) {
        Ok(ids) => ids,
        Err(e) => {
            fields.extend(e.violations);
            vec![]
        }
    };
    fields.required("purpose", &body.purpose);
    fields.required("justification", &body.justification);
    fields.finish()?;

    let now = st.now_ms();
    st.quotas.take(caller.node(), &caller.officer, &ids, now)?;
    let mut data_types: Vec<String> = ids.iter().map(|i| identifiers::kind_of(i).to_owned()).collect();
    data_types.sort();
    data_types.dedup();
    let pseudonyms: Vec<String> = ids.iter().map(|i| st.pseudonyms().pseudonym(i)).collect();
    // alert id -> the identifier types that matched it
    let mut matched: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for p in &pseudonyms {
        for m in st.store.index().matches(p, st.limits.max_lookup_matches + 1)? {
            let kinds = matched.entry(m.alert_id).or_default();
            if !kinds.contains(&m.kind) {
                kinds.push(m.kind);
            }
        }
        if matched.len() > st.limits.max_lookup_matches {
            return Err(RequestError::TooManyMatches { limit: st.limits.max_lookup_matches });
        }
    }
    let question = LookupQuestion { purpose: body.purpose.clone(), officer: caller.officer.clone(), data_types };
    let mut hits = Vec::new();
    let mut audit_hits = Vec::new();
    let mut rows = Vec::new();
    let mut shown = Vec::new();
    let mut policy_version = String::new();
    for (alert_id, kinds) in matched {
        let Some((stored, alert)) = st.store.live_alert(&alert_id, now)? else { continue };
        if alert.origin == caller.node().as_str() {
            continue; // the caller's own alert is not a hit
        }
        if let Some(state) = hidden(&stored) {
            // Withheld like a policy miss: the caller cannot tell it exists.
            audit_hits.push(AuditHit {
                alert_id: alert_id.clone(),
                holder: alert.origin.clone(),
                shown: false,
                policy_ids: vec![state.to_owned()],
            });
            continue;
        }
        let decision = st.disclose.lookup(&alert, st.node_info(&alert.origin), &caller.slot.info, &question);
        policy_version = decision.policy_version;
        audit_hits.push(AuditHit {
            alert_id: alert_id.clone(),
            holder: alert.origin.clone(),
            shown: decision.shown,
            policy_ids: decision.policy_ids.clone(),
        });
        if !decision.shown {
            continue;
        }
        let hit_id = hit_id(st, caller.node(), &alert_id);
        shown.push(OpenHitRow {
            hit_id: hit_id.clone(),
            alert_id: alert_id.clone(),
            node: caller.node().to_string(),
            holder: alert.origin.clone(),
            officer: caller.officer.clone(),
            category: alert.category,
            action: alert.action,
            shown_ms: now,
            deadline_ms: now.saturating_add(st.lookup.follow_up_deadline.as_millis() as u64),
            alert_ends_ms: expires_ms(&alert),
        });
        rows.push((
            hit_id.clone(),
            HitRow {
                requester: caller.node().to_string(),
                alert_id: alert_id.clone(),
                holder: alert.origin.clone(),
                first_seen_ms: now,
                ..Default::default()
            },
        ));
        hits.push(Hit {
            hit_id,
            alert_id,
            holder: alert.origin.clone(),
            category: alert.category,
            action: alert.action,
            matched: kinds,
            expires_at: alert.expires_at,
            policy_ids: decision.policy_ids,
        });
    }
    let record = records::consultation(
        caller.actor(),
        &Consultation {
            purpose: &body.purpose,
            justification: &body.justification,
            data_types: &question.data_types,
            pseudonyms: &pseudonyms,
            hits: &audit_hits,
            policy_version: &policy_version,
        },
    );
    st.recorder.append(vec![record])?;
    // Open items first: they look at the hit flags as they were before this
    // lookup (a known hit that was followed up opens nothing).
    open_hits::open(st, &shown)?;
    st.store.index().record_hits(&rows)?;
    st.committer.commit().await?;
    info!(hits = hits.len(), withheld = audit_hits.len() - hits.len(), "lookup answered");
    Ok(LookupResponse { hits, policy_version })
}
