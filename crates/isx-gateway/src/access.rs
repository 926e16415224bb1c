//! Hit/no-hit lookups and two-step access (Prüm, CIR hit-flag).
//!
//! 1. `Lookup`: the caller's identifiers are normalised and hashed with the
//!    gateway's pseudonym key and matched against the `lookup` index. For each
//!    matching alert, policy (action `lookup`) decides whether the caller sees
//!    a hit flag (reference, holder, category, action) or nothing at all. One
//!    CONSULTATION record names the identifier *types*, the query pseudonyms
//!    and every match, shown or withheld.
//! 2. `RequestAccess`: the caller asks the holder for the alert behind one of
//!    its hits, with a purpose and a justification. The holder is notified on
//!    its subscription stream; the request expires after
//!    `[access] deadline` (default 48 h).
//! 3. `DecideAccess`: only the holder decides. On a grant, the disclosure
//!    policy decides the requester's level with `context.granted`, and the
//!    view is queued for the requester like any delivery; the requester also
//!    gets the outcome on its stream.
//! 4. `DeclineFollowUp`: the caller records why it does not follow a hit up.
//!
//! Every step, and every refusal, is an audit record made durable before the
//! answer. State changes on requests are serialised by one lock, so a
//! decision and the expiry sweep never both close a request.

use isx_core::identifiers;
use isx_core::timestamp::{from_unix_millis, to_unix_millis};
use isx_core::wire::{
    AccessDecision, AccessRequest, AccessState, Alert, AuditHit, AuditRecord, DecideAccessRequest,
    DecideAccessResponse, DeclineFollowUpRequest, DeclineFollowUpResponse, Delivery, DisclosureLevel, Hit,
    ListAccessRequestsRequest, ListAccessRequestsResponse, LookupRequest, LookupResponse, Operation, Outcome,
    RecipientLevel, RequestAccessRequest, RequestAccessResponse,
};
use isx_core::{FieldViolation, NodeId, Role, ValidationError};
use isx_policy::LookupQuestion;
use tonic::Request;
use tracing::{info, warn};

use crate::audit::about;
use crate::error::RequestError;
use crate::server::ConnInfo;
use crate::service::{State, officer};
use crate::store::access::{HitRow, Queued};
use crate::store::{AuditFacts, OutboxEntry, StoredAlert};

/// Longest purpose, justification or reason, in bytes.
const MAX_TEXT: usize = 2048;

/// Collects bad fields of a request.
#[derive(Default)]
struct Fields(Vec<FieldViolation>);

impl Fields {
    fn required(&mut self, field: &str, value: &str) {
        if value.trim().is_empty() {
            self.0.push(FieldViolation { field: field.into(), description: "is required".into() });
        } else if value.len() > MAX_TEXT {
            self.0
                .push(FieldViolation { field: field.into(), description: format!("is longer than {MAX_TEXT} bytes") });
        }
    }

    fn finish(self) -> Result<(), RequestError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(RequestError::InvalidRequest(ValidationError { violations: self.0 }))
        }
    }
}

fn state_name(state: AccessState) -> &'static str {
    match state {
        AccessState::Pending => "pending",
        AccessState::Granted => "granted",
        AccessState::Denied => "denied",
        AccessState::Expired => "expired",
        AccessState::Unspecified => "unknown",
    }
}

fn rfc3339(ms: u64) -> String {
    isx_core::timestamp::rfc3339(&from_unix_millis(ms))
}

fn expires_ms(alert: &Alert) -> u64 {
    alert.expires_at.as_ref().map(to_unix_millis).unwrap_or(u64::MAX)
}

impl State {
    /// The stored alert, if it exists and has not expired.
    fn live_alert(&self, alert_id: &str, now: u64) -> Result<Option<(StoredAlert, Alert)>, RequestError> {
        Ok(self.store.alert(alert_id)?.and_then(|s| {
            let alert = s.alert.clone()?;
            (expires_ms(&alert) > now).then_some((s, alert))
        }))
    }

    /// The hit id for `caller` and `alert_id`: a keyed hash, stable across
    /// lookups, meaningless to anyone without the gateway's key.
    fn hit_id(&self, caller: &NodeId, alert_id: &str) -> String {
        let mac = self.recorder.log().keys().pseudonyms.pseudonym(&format!("hit:{caller}:{alert_id}"));
        format!("hit-{}", &mac[..20])
    }

    /// The caller's hit, checked to belong to it and to a live alert.
    fn own_hit(&self, caller: &NodeId, hit_id: &str, now: u64) -> Result<(HitRow, StoredAlert, Alert), RequestError> {
        let unknown = || RequestError::UnknownHit(hit_id.to_owned());
        let hit = self.store.hit(hit_id)?.filter(|h| h.requester == caller.as_str()).ok_or_else(unknown)?;
        let (stored, alert) = self.live_alert(&hit.alert_id, now)?.ok_or_else(unknown)?;
        Ok((hit, stored, alert))
    }

    /// Refuses if a request on this hit is pending or was granted.
    fn not_followed_up(&self, hit: &HitRow, hit_id: &str) -> Result<(), RequestError> {
        if hit.request_id.is_empty() {
            return Ok(());
        }
        match self.store.access_request(&hit.request_id)? {
            Some(open) if matches!(open.state(), AccessState::Pending | AccessState::Granted) => {
                Err(RequestError::AlreadyRequested {
                    hit_id: hit_id.to_owned(),
                    state: state_name(open.state()),
                    request_id: open.request_id,
                })
            }
            _ => Ok(()),
        }
    }

    /// A registered node by id.
    fn node_info(&self, id: &str) -> Option<&isx_core::NodeInfo> {
        self.infos.iter().find(|n| n.id.as_str() == id)
    }

    fn subject_pseudonyms(&self, alert: &Alert) -> Vec<String> {
        self.recorder.log().keys().pseudonyms.of_alert(alert)
    }

    /// Wakes `node`'s subscription after events were queued up to `seq`.
    pub(crate) fn wake_node(&self, node: &NodeId, seq: u64) {
        if let Some(slot) = self.nodes.get(node) {
            slot.wake.send_replace(seq);
        }
    }
}

/// `Exchange.Lookup`.
pub(crate) async fn lookup(st: &State, req: Request<LookupRequest>) -> Result<LookupResponse, RequestError> {
    let (slot, conn) = st.caller(&req, Role::Lookup)?;
    let officer = officer(&req)?;
    let body = req.into_inner();
    let mut fields = Fields::default();
    let ids = match identifiers::of_lookup(&body.identifiers, st.limits.max_list_len) {
        Ok(ids) => ids,
        Err(e) => {
            fields.0.extend(e.violations);
            vec![]
        }
    };
    fields.required("purpose", &body.purpose);
    fields.required("justification", &body.justification);
    fields.finish()?;

    let now = st.now_ms();
    let key = &st.recorder.log().keys().pseudonyms;
    let mut data_types: Vec<String> = ids.iter().map(|i| identifiers::kind_of(i).to_owned()).collect();
    data_types.dedup();
    data_types.sort();
    data_types.dedup();
    let pseudonyms: Vec<String> = ids.iter().map(|i| key.pseudonym(i)).collect();
    // alert id -> the identifier types that matched it
    let mut matched: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for p in &pseudonyms {
        for (alert_id, kind) in st.store.lookup(p)? {
            let kinds = matched.entry(alert_id).or_default();
            if !kinds.contains(&kind) {
                kinds.push(kind);
            }
        }
    }
    let question = LookupQuestion { purpose: body.purpose.clone(), officer: officer.clone(), data_types };
    let mut hits = Vec::new();
    let mut audit_hits = Vec::new();
    let mut rows = Vec::new();
    let mut policy_version = String::new();
    for (alert_id, kinds) in matched {
        let Some((_, alert)) = st.live_alert(&alert_id, now)? else { continue };
        if alert.origin == slot.info.id.as_str() {
            continue; // the caller's own alert is not a hit
        }
        let origin = st.node_info(&alert.origin);
        let (version, shown, policy_ids) = st.disclose.lookup(&alert, origin, &slot.info, &question);
        policy_version = version;
        audit_hits.push(AuditHit {
            alert_id: alert_id.clone(),
            holder: alert.origin.clone(),
            shown,
            policy_ids: policy_ids.clone(),
        });
        if !shown {
            continue;
        }
        let hit_id = st.hit_id(&slot.info.id, &alert_id);
        rows.push((
            hit_id.clone(),
            HitRow {
                requester: slot.info.id.to_string(),
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
            policy_ids,
        });
    }
    let withheld = audit_hits.len() - hits.len();
    let record = AuditRecord {
        purpose: body.purpose,
        justification: body.justification,
        data_types: question.data_types,
        subject_pseudonyms: pseudonyms,
        hits: audit_hits,
        policy_version: policy_version.clone(),
        detail: format!("{} hit(s) shown, {withheld} withheld by policy", hits.len()),
        ..about(Some(&conn), &officer, Operation::Consultation, Outcome::Ok)
    };
    st.recorder.append(vec![record])?;
    st.store.record_hits(&rows)?;
    st.committer.commit().await?;
    info!(hits = hits.len(), withheld, "lookup answered");
    Ok(LookupResponse { hits, policy_version })
}

/// The caller's hit, if it may still be followed up (requested or declined):
/// expires due requests first, then checks that the hit is the caller's, its
/// alert is live, it was not declined, and no request on it is open or
/// granted. Returns the time, the hit and the alert. Call under `access_lock`.
async fn followable_hit(st: &State, caller: &NodeId, hit_id: &str) -> Result<(u64, HitRow, Alert), RequestError> {
    expire_due_locked(st).await?;
    let now = st.now_ms();
    let (hit, _, alert) = st.own_hit(caller, hit_id, now)?;
    if hit.declined {
        return Err(RequestError::HitDeclined(hit_id.to_owned()));
    }
    st.not_followed_up(&hit, hit_id)?;
    Ok((now, hit, alert))
}

/// `Exchange.RequestAccess`.
pub(crate) async fn request_access(
    st: &State,
    req: Request<RequestAccessRequest>,
) -> Result<RequestAccessResponse, RequestError> {
    let (slot, conn) = st.caller(&req, Role::Lookup)?;
    let officer = officer(&req)?;
    let body = req.into_inner();
    let mut fields = Fields::default();
    fields.required("hit_id", &body.hit_id);
    fields.required("purpose", &body.purpose);
    fields.required("justification", &body.justification);
    fields.finish()?;

    let _guard = st.access_lock.lock().await;
    let (now, mut hit, alert) = followable_hit(st, &slot.info.id, &body.hit_id).await?;
    let request_id = st.store.next_request_id()?;
    let deadline = now.saturating_add(st.access.deadline.as_millis() as u64);
    let request = AccessRequest {
        request_id: request_id.clone(),
        hit_id: body.hit_id.clone(),
        alert_id: alert.alert_id.clone(),
        requester: slot.info.id.to_string(),
        officer: officer.clone(),
        holder: alert.origin.clone(),
        category: alert.category,
        purpose: body.purpose.clone(),
        justification: body.justification.clone(),
        requested_at: Some(from_unix_millis(now)),
        deadline: Some(from_unix_millis(deadline)),
        state: AccessState::Pending as i32,
        ..Default::default()
    };
    hit.request_id = request_id.clone();
    let holder = NodeId::new(&alert.origin).map_err(|_| RequestError::UnknownHit(body.hit_id.clone()))?;
    let notify = OutboxEntry { access_request: Some(request.clone()), expires_ms: deadline, ..Default::default() };
    let record = AuditRecord {
        purpose: body.purpose,
        justification: body.justification,
        alert_id: alert.alert_id.clone(),
        request_id: request_id.clone(),
        recipients: vec![RecipientLevel { node: alert.origin.clone(), ..Default::default() }],
        subject_pseudonyms: st.subject_pseudonyms(&alert),
        detail: format!(
            "asks holder {} for the alert behind hit {}; deadline {}",
            alert.origin,
            request.hit_id,
            rfc3339(deadline)
        ),
        ..about(Some(&conn), &officer, Operation::AccessRequest, Outcome::Ok)
    };
    st.check_queue(&holder)?;
    st.recorder.append(vec![record])?;
    let mut queued = (holder.clone(), 0, notify);
    st.store.open_request(&request, &hit, &mut queued)?;
    let seq = queued.1;
    st.committer.commit().await?;
    st.enqueued(&holder, 1);
    st.wake_node(&holder, seq);
    info!(request_id = %request_id, holder = %holder, "access requested");
    Ok(RequestAccessResponse { request: Some(request) })
}

/// `Exchange.DecideAccess`.
pub(crate) async fn decide_access(
    st: &State,
    req: Request<DecideAccessRequest>,
) -> Result<DecideAccessResponse, RequestError> {
    let (slot, conn) = st.caller(&req, Role::Publish)?;
    let officer = officer(&req)?;
    let body = req.into_inner();
    let mut fields = Fields::default();
    fields.required("request_id", &body.request_id);
    fields.required("reason", &body.reason);
    if !matches!(body.decision(), AccessDecision::Grant | AccessDecision::Deny) {
        fields.0.push(FieldViolation {
            field: "decision".into(),
            description: "must be ACCESS_DECISION_GRANT or ACCESS_DECISION_DENY".into(),
        });
    }
    fields.finish()?;

    let _guard = st.access_lock.lock().await;
    expire_due_locked(st).await?;
    let now = st.now_ms();
    let request =
        st.store.access_request(&body.request_id)?.ok_or(RequestError::UnknownRequest(body.request_id.clone()))?;
    if request.holder != slot.info.id.as_str() {
        return Err(RequestError::NotHolder {
            node: slot.info.id.to_string(),
            request_id: request.request_id,
            holder: request.holder,
        });
    }
    match request.state() {
        AccessState::Pending => {}
        AccessState::Expired => {
            return Err(RequestError::RequestExpired {
                deadline: rfc3339(request.deadline.as_ref().map(to_unix_millis).unwrap_or(0)),
                request_id: request.request_id,
            });
        }
        other => return Err(RequestError::AlreadyDecided { request_id: request.request_id, state: state_name(other) }),
    }
    let requester =
        NodeId::new(&request.requester).map_err(|_| RequestError::UnknownRequest(body.request_id.clone()))?;
    let grant = body.decision() == AccessDecision::Grant;
    let live = st.live_alert(&request.alert_id, now)?;
    if grant && live.is_none() {
        return Err(RequestError::AlertGone(request.alert_id));
    }
    let mut closed = AccessRequest {
        state: if grant { AccessState::Granted } else { AccessState::Denied } as i32,
        decided_by: officer.clone(),
        reason: body.reason.clone(),
        decided_at: Some(from_unix_millis(now)),
        ..request.clone()
    };
    let mut events: Vec<Queued> = Vec::new();
    let mut record = AuditRecord {
        justification: body.reason.clone(),
        alert_id: request.alert_id.clone(),
        request_id: request.request_id.clone(),
        purpose: request.purpose.clone(),
        ..about(Some(&conn), &officer, Operation::AccessDecision, if grant { Outcome::Ok } else { Outcome::Refused })
    };
    if let Some((stored, alert)) = live.as_ref().filter(|_| grant) {
        let requester_info =
            st.node_info(&request.requester).cloned().ok_or(RequestError::UnknownRequest(body.request_id.clone()))?;
        let origin = st.node_info(&alert.origin);
        let (version, decision) = st.disclose.decide_granted(alert, origin, &requester_info, &officer);
        closed.level = decision.level as i32;
        closed.policy_ids = decision.policy_ids.clone();
        let pseudonyms = st.subject_pseudonyms(alert);
        record.content_digest = hex::encode(&stored.digest);
        record.recipients = vec![RecipientLevel {
            node: request.requester.clone(),
            level: decision.level as i32,
            policy_ids: decision.policy_ids.clone(),
        }];
        record.policy_ids = decision.policy_ids.clone();
        record.policy_version = version.clone();
        record.withheld_fields = decision.removed_fields.clone();
        record.subject_pseudonyms = pseudonyms.clone();
        record.detail = match decision.level {
            DisclosureLevel::Denied => {
                format!("granted by the holder, but policy allows {} nothing", request.requester)
            }
            level => format!("granted: {} receives the alert {}", request.requester, isx_core::display::level(level)),
        };
        if let (Some(view), false) = (decision.view, decision.level == DisclosureLevel::Denied) {
            let delivery = Delivery {
                alert: Some(view),
                level: decision.level as i32,
                policy_ids: decision.policy_ids,
                removed_fields: decision.removed_fields,
                queued_at: Some(from_unix_millis(now)),
                policy_version: version,
                request_id: request.request_id.clone(),
            };
            let facts = AuditFacts {
                purpose: alert.purpose.clone(),
                legal_basis: alert.legal_basis.clone(),
                subject_pseudonyms: pseudonyms,
            };
            let entry = OutboxEntry {
                delivery: Some(delivery),
                expires_ms: expires_ms(alert),
                audit: Some(facts),
                ..Default::default()
            };
            events.push((requester.clone(), 0, entry));
        }
    } else {
        record.recipients = vec![RecipientLevel {
            node: request.requester.clone(),
            level: DisclosureLevel::Denied as i32,
            policy_ids: vec![],
        }];
        record.detail = format!("denied by the holder: {} receives nothing", request.requester);
    }
    let outcome_expiry =
        live.as_ref().map(|(_, a)| expires_ms(a)).unwrap_or(now + st.access.deadline.as_millis() as u64);
    events.push((
        requester.clone(),
        0,
        OutboxEntry { access_outcome: Some(closed.clone()), expires_ms: outcome_expiry, ..Default::default() },
    ));
    st.recorder.append(vec![record])?;
    if !st.store.close_request(&closed, &mut events)? {
        // Unreachable under the lock; refuse rather than double-decide.
        return Err(RequestError::AlreadyDecided { request_id: closed.request_id, state: "decided" });
    }
    st.committer.commit().await?;
    st.enqueued(&requester, events.len() as u64);
    if let Some((_, seq, _)) = events.last() {
        st.wake_node(&requester, *seq);
    }
    info!(request_id = %closed.request_id, granted = grant, level = closed.level, "access decided");
    Ok(DecideAccessResponse { request: Some(closed) })
}

/// `Exchange.DeclineFollowUp`.
pub(crate) async fn decline_follow_up(
    st: &State,
    req: Request<DeclineFollowUpRequest>,
) -> Result<DeclineFollowUpResponse, RequestError> {
    let (slot, conn) = st.caller(&req, Role::Lookup)?;
    let officer = officer(&req)?;
    let body = req.into_inner();
    let mut fields = Fields::default();
    fields.required("hit_id", &body.hit_id);
    fields.required("reason", &body.reason);
    fields.finish()?;

    let _guard = st.access_lock.lock().await;
    let (_, mut hit, alert) = followable_hit(st, &slot.info.id, &body.hit_id).await?;
    hit.declined = true;
    let record = AuditRecord {
        justification: body.reason,
        alert_id: alert.alert_id.clone(),
        recipients: vec![RecipientLevel { node: alert.origin.clone(), ..Default::default() }],
        subject_pseudonyms: st.subject_pseudonyms(&alert),
        detail: format!("hit {} held by {} not followed up", body.hit_id, alert.origin),
        ..about(Some(&conn), &officer, Operation::FollowUpDeclined, Outcome::Ok)
    };
    st.recorder.append(vec![record])?;
    st.store.update_hit(&body.hit_id, &hit)?;
    st.committer.commit().await?;
    info!(hit_id = %body.hit_id, "follow-up declined");
    Ok(DeclineFollowUpResponse {})
}

/// `Exchange.ListAccessRequests`.
pub(crate) async fn list_access_requests(
    st: &State,
    req: Request<ListAccessRequestsRequest>,
) -> Result<ListAccessRequestsResponse, RequestError> {
    let conn: ConnInfo = req.extensions().get::<ConnInfo>().cloned().ok_or(RequestError::Unauthenticated)?;
    let slot = st.nodes.get(&conn.identity.node).ok_or(RequestError::Unauthenticated)?;
    st.admit(slot)?;
    if !slot.info.has(Role::Lookup) && !slot.info.has(Role::Publish) {
        return Err(RequestError::MissingRole { node: slot.info.id.to_string(), role: Role::Lookup });
    }
    let _officer = officer(&req)?;
    let want = req.get_ref().state();
    {
        let _guard = st.access_lock.lock().await;
        expire_due_locked(st).await?;
    }
    let me = slot.info.id.as_str();
    let mut out = ListAccessRequestsResponse::default();
    for r in st.store.requests_of(me)? {
        if want != AccessState::Unspecified && r.state() != want {
            continue;
        }
        if r.requester == me {
            out.outgoing.push(r.clone());
        }
        if r.holder == me {
            out.incoming.push(r);
        }
    }
    Ok(out)
}

/// Expires every pending request past its deadline: records the expiry,
/// tells the requester, and closes the request. Returns how many.
pub(crate) async fn expire_due(st: &State) -> Result<usize, RequestError> {
    let _guard = st.access_lock.lock().await;
    expire_due_locked(st).await
}

async fn expire_due_locked(st: &State) -> Result<usize, RequestError> {
    let now = st.now_ms();
    let due = st.store.due_requests(now)?;
    if due.is_empty() {
        return Ok(0);
    }
    let mut n = 0;
    let mut wake = Vec::new();
    for request in due {
        let deadline = request.deadline.as_ref().map(to_unix_millis).unwrap_or(0);
        let closed = AccessRequest {
            state: AccessState::Expired as i32,
            decided_at: Some(from_unix_millis(now)),
            reason: format!("the holder did not decide by the deadline ({})", rfc3339(deadline)),
            ..request.clone()
        };
        let record = AuditRecord {
            alert_id: request.alert_id.clone(),
            request_id: request.request_id.clone(),
            purpose: request.purpose.clone(),
            recipients: vec![RecipientLevel {
                node: request.requester.clone(),
                level: DisclosureLevel::Denied as i32,
                policy_ids: vec![],
            }],
            detail: format!("expired: holder {} did not decide by {}", request.holder, rfc3339(deadline)),
            ..about(None, "", Operation::AccessDecision, Outcome::Refused)
        };
        let mut events = Vec::new();
        if let Ok(requester) = NodeId::new(&request.requester) {
            let entry = OutboxEntry {
                access_outcome: Some(closed.clone()),
                expires_ms: now.saturating_add(st.access.deadline.as_millis() as u64),
                ..Default::default()
            };
            events.push((requester, 0, entry));
        }
        st.recorder.append(vec![record])?;
        if st.store.close_request(&closed, &mut events)? {
            n += 1;
            wake.extend(events.into_iter().map(|(node, seq, _)| (node, seq)));
        }
        info!(request_id = %request.request_id, "access request expired");
    }
    // Wake after the commit: nothing is streamed before its record is durable.
    if let Err(e) = st.committer.commit().await {
        warn!(error = %e, "expired access requests not yet durable");
        return Err(e.into());
    }
    for (node, seq) in wake {
        st.enqueued(&node, 1);
        st.wake_node(&node, seq);
    }
    Ok(n)
}
