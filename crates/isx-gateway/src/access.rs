//! Two-step access after a hit: request, decide, decline, list, expiry.
//!
//! 1. `RequestAccess`: the caller asks the holder for the alert behind one of
//!    its hits, with a purpose and a justification. The holder is notified on
//!    its subscription stream; the request expires after `[access] deadline`
//!    (default 48 h).
//! 2. `DecideAccess`: only the holder decides. On a grant, the disclosure
//!    policy decides the requester's level with `context.granted`, and the
//!    view is queued for the requester like any delivery; the requester also
//!    gets the outcome on its stream.
//! 3. `DeclineFollowUp`: the caller records why it does not follow a hit up.
//!
//! A request, or a grant, on an alert whose processing is restricted or that
//! its origin withdrew is refused (FAILED_PRECONDITION naming the state); a
//! decline is not. A request or a decline closes the hit's open item
//! (`open_hits`) without a record of its own.
//!
//! Every step, and every refusal, is an audit record made durable before the
//! answer. State changes on requests are serialised by one lock, so a
//! decision and the expiry sweep never both close a request.

use isx_core::timestamp::{from_unix_millis, to_unix_millis};
use isx_core::wire::{
    AccessDecision, AccessRequest, AccessState, Alert, DecideAccessRequest, DecideAccessResponse,
    DeclineFollowUpRequest, DeclineFollowUpResponse, Delivery, DisclosureLevel, ListAccessRequestsRequest,
    ListAccessRequestsResponse, RequestAccessRequest, RequestAccessResponse,
};
use isx_core::{NodeId, Role};
use tonic::Request;
use tracing::{info, warn};

use crate::error::RequestError;
use crate::records::{self, Grant};
use crate::state::State;
use crate::store::{AuditFacts, Event, HitRow, InFlight, OutboxEntry, Outgoing, expires_ms};
use crate::text::{Fields, rfc3339};
use crate::{onward, open_hits};

fn state_name(state: AccessState) -> &'static str {
    match state {
        AccessState::Pending => "pending",
        AccessState::Granted => "granted",
        AccessState::Denied => "denied",
        AccessState::Expired => "expired",
        AccessState::Unspecified => "unknown",
    }
}

/// The caller's hit, if it may still be followed up (requested or declined):
/// expires due requests first, then checks that the hit is the caller's, its
/// alert is live, it was not declined, and no request on it is open or
/// granted. Returns the time, the hit and the alert. Call under `access_lock`.
async fn followable_hit(st: &State, caller: &NodeId, hit_id: &str) -> Result<(u64, HitRow, Alert), RequestError> {
    expire_due_locked(st).await?;
    let now = st.now_ms();
    let unknown = || RequestError::UnknownHit(hit_id.to_owned());
    let hit = st.store.index().hit(hit_id)?.filter(|h| h.requester == caller.as_str()).ok_or_else(unknown)?;
    let (_, alert) = st.store.live_alert(&hit.alert_id, now)?.ok_or_else(unknown)?;
    if hit.declined {
        return Err(RequestError::HitDeclined(hit_id.to_owned()));
    }
    if !hit.request_id.is_empty()
        && let Some(open) = st.store.requests().get(&hit.request_id)?
        && matches!(open.state(), AccessState::Pending | AccessState::Granted)
    {
        return Err(RequestError::AlreadyRequested {
            hit_id: hit_id.to_owned(),
            state: state_name(open.state()),
            request_id: open.request_id,
        });
    }
    Ok((now, hit, alert))
}

/// Refuses access to an alert whose processing is restricted or that its
/// origin withdrew (FAILED_PRECONDITION naming the state).
fn refuse_hidden(st: &State, alert_id: &str) -> Result<(), RequestError> {
    match st.store.alert(alert_id)?.as_ref().and_then(crate::lookup::hidden) {
        Some(state) => Err(RequestError::AlertUnavailable { alert_id: alert_id.to_owned(), state }),
        None => Ok(()),
    }
}

/// Commits, then makes the queued events readable.
async fn commit(st: &State, in_flight: InFlight) -> Result<(), RequestError> {
    st.committer.commit().await?;
    in_flight.settle();
    Ok(())
}

/// `Exchange.RequestAccess`.
pub(crate) async fn request_access(
    st: &State,
    req: Request<RequestAccessRequest>,
) -> Result<RequestAccessResponse, RequestError> {
    let caller = st.caller(&req, &[Role::Lookup])?;
    let body = req.into_inner();
    let mut fields = Fields::default();
    fields.required("hit_id", &body.hit_id);
    fields.required("purpose", &body.purpose);
    fields.required("justification", &body.justification);
    fields.finish()?;

    let _guard = st.access_lock.lock().await;
    let (now, mut hit, alert) = followable_hit(st, caller.node(), &body.hit_id).await?;
    refuse_hidden(st, &alert.alert_id)?;
    let request_id = st.store.new_request_id();
    let deadline = now.saturating_add(st.access.deadline.as_millis() as u64);
    let request = AccessRequest {
        request_id: request_id.clone(),
        hit_id: body.hit_id.clone(),
        alert_id: alert.alert_id.clone(),
        requester: caller.node().to_string(),
        officer: caller.officer.clone(),
        holder: alert.origin.clone(),
        category: alert.category,
        purpose: body.purpose,
        justification: body.justification,
        requested_at: Some(from_unix_millis(now)),
        deadline: Some(from_unix_millis(deadline)),
        state: AccessState::Pending as i32,
        ..Default::default()
    };
    hit.request_id = request_id.clone();
    let holder = NodeId::new(&alert.origin).map_err(|_| RequestError::UnknownHit(body.hit_id.clone()))?;
    let notify = Outgoing {
        node: holder.clone(),
        entry: OutboxEntry {
            event: Some(Event::AccessRequest(request.clone())),
            expires_ms: deadline,
            ..Default::default()
        },
    };
    let record =
        records::access_request(caller.actor(), &request, &st.pseudonyms().of_alert(&alert), &rfc3339(deadline));
    st.check_queue(&holder)?;
    st.recorder.append(vec![record])?;
    let in_flight = st.store.open_request(&request, &hit, notify)?;
    open_hits::followed(st, &body.hit_id)?;
    commit(st, in_flight).await?;
    info!(request_id = %request_id, holder = %holder, "access requested");
    Ok(RequestAccessResponse { request: Some(request) })
}

/// `Exchange.DecideAccess`.
pub(crate) async fn decide_access(
    st: &State,
    req: Request<DecideAccessRequest>,
) -> Result<DecideAccessResponse, RequestError> {
    let caller = st.caller(&req, &[Role::Publish])?;
    let body = req.into_inner();
    let mut fields = Fields::default();
    fields.required("request_id", &body.request_id);
    fields.required("reason", &body.reason);
    if !matches!(body.decision(), AccessDecision::Grant | AccessDecision::Deny) {
        fields.push("decision", "must be ACCESS_DECISION_GRANT or ACCESS_DECISION_DENY");
    }
    fields.finish()?;

    let _guard = st.access_lock.lock().await;
    expire_due_locked(st).await?;
    let now = st.now_ms();
    let request =
        st.store.requests().get(&body.request_id)?.ok_or(RequestError::UnknownRequest(body.request_id.clone()))?;
    if request.holder != caller.node().as_str() {
        return Err(RequestError::NotHolder {
            node: caller.node().to_string(),
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
    let live = st.store.live_alert(&request.alert_id, now)?;
    if grant && live.is_none() {
        return Err(RequestError::AlertGone(request.alert_id));
    }
    if grant {
        refuse_hidden(st, &request.alert_id)?;
    }
    let mut closed = AccessRequest {
        state: if grant { AccessState::Granted } else { AccessState::Denied } as i32,
        decided_by: caller.officer.clone(),
        reason: body.reason.clone(),
        decided_at: Some(from_unix_millis(now)),
        ..request.clone()
    };
    let mut events: Vec<Outgoing> = Vec::new();
    let record = match live.as_ref().filter(|_| grant) {
        Some((stored, alert)) => {
            let requester_info =
                st.node_info(&request.requester).ok_or(RequestError::UnknownRequest(body.request_id.clone()))?;
            let raised_by = stored.receipt.as_ref().map(|r| r.raised_by.as_slice()).unwrap_or_default();
            let related = onward::related(&st.store, alert, raised_by)?;
            let granted = st.disclose.decide_granted(
                alert,
                st.node_info(&alert.origin),
                requester_info,
                &caller.officer,
                &related,
            );
            let decision = granted.decision;
            closed.level = decision.level as i32;
            closed.policy_ids = decision.policy_ids.clone();
            let pseudonyms = st.pseudonyms().of_alert(alert);
            let record = records::access_decision(
                caller.actor(),
                &request,
                &body.reason,
                Some(&Grant {
                    digest_hex: hex::encode(&stored.digest),
                    level: decision.level,
                    policy_ids: &decision.policy_ids,
                    policy_version: &granted.policy_version,
                    withheld: &decision.removed_fields,
                    pseudonyms: &pseudonyms,
                }),
            );
            if let (Some(view), false) = (decision.view, decision.level == DisclosureLevel::Denied) {
                let delivery = Delivery {
                    alert: Some(view),
                    level: decision.level as i32,
                    policy_ids: decision.policy_ids,
                    removed_fields: decision.removed_fields,
                    queued_at: Some(from_unix_millis(now)),
                    policy_version: granted.policy_version,
                    request_id: request.request_id.clone(),
                };
                let facts = AuditFacts {
                    purpose: alert.purpose.clone(),
                    legal_basis: alert.legal_basis.clone(),
                    subject_pseudonyms: pseudonyms,
                };
                let entry = OutboxEntry {
                    event: Some(Event::Delivery(delivery)),
                    expires_ms: expires_ms(alert),
                    audit: Some(facts),
                };
                events.push(Outgoing { node: requester.clone(), entry });
            }
            record
        }
        None => records::access_decision(caller.actor(), &request, &body.reason, None),
    };
    let outcome_expiry =
        live.as_ref().map(|(_, a)| expires_ms(a)).unwrap_or(now + st.access.deadline.as_millis() as u64);
    events.push(Outgoing {
        node: requester,
        entry: OutboxEntry {
            event: Some(Event::AccessOutcome(closed.clone())),
            expires_ms: outcome_expiry,
            ..Default::default()
        },
    });
    st.recorder.append(vec![record])?;
    if let Some((stored, _)) = live.as_ref().filter(|_| grant && closed.level != DisclosureLevel::Denied as i32) {
        // The requester now holds a copy: its own look-alikes are checked
        // against this alert's labels (onward::overlaps).
        let mut stored = stored.clone();
        if !stored.granted_to.contains(&request.requester) {
            stored.granted_to.push(request.requester.clone());
            st.store.update_alert(&stored)?;
        }
    }
    let Some(in_flight) = st.store.close_request(&closed, &events)? else {
        // Unreachable under the lock; refuse rather than double-decide.
        return Err(RequestError::AlreadyDecided { request_id: closed.request_id, state: "decided" });
    };
    commit(st, in_flight).await?;
    info!(request_id = %closed.request_id, granted = grant, level = closed.level, "access decided");
    Ok(DecideAccessResponse { request: Some(closed) })
}

/// `Exchange.DeclineFollowUp`.
pub(crate) async fn decline_follow_up(
    st: &State,
    req: Request<DeclineFollowUpRequest>,
) -> Result<DeclineFollowUpResponse, RequestError> {
    let caller = st.caller(&req, &[Role::Lookup])?;
    let body = req.into_inner();
    let mut fields = Fields::default();
    fields.required("hit_id", &body.hit_id);
    fields.required("reason", &body.reason);
    fields.finish()?;

    let _guard = st.access_lock.lock().await;
    let (_, mut hit, alert) = followable_hit(st, caller.node(), &body.hit_id).await?;
    hit.declined = true;
    let record = records::follow_up_declined(
        caller.actor(),
        &body.hit_id,
        &alert,
        &body.reason,
        &st.pseudonyms().of_alert(&alert),
    );
    st.recorder.append(vec![record])?;
    st.store.index().update_hit(&body.hit_id, &hit)?;
    open_hits::followed(st, &body.hit_id)?;
    st.committer.commit().await?;
    info!(hit_id = %body.hit_id, "follow-up declined");
    Ok(DeclineFollowUpResponse {})
}

/// `Exchange.ListAccessRequests`.
pub(crate) async fn list_access_requests(
    st: &State,
    req: Request<ListAccessRequestsRequest>,
) -> Result<ListAccessRequestsResponse, RequestError> {
    let caller = st.caller(&req, &[Role::Lookup, Role::Publish])?;
    let want = req.get_ref().state();
    {
        let _guard = st.access_lock.lock().await;
        expire_due_locked(st).await?;
    }
    let me = caller.node().as_str();
    let mut out = ListAccessRequestsResponse::default();
    for r in st.store.requests().of_node(me)? {
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
    let due = st.store.requests().due(now)?;
    if due.is_empty() {
        return Ok(0);
    }
    let mut closed_now = Vec::new();
    for request in due {
        let deadline = rfc3339(request.deadline.as_ref().map(to_unix_millis).unwrap_or(0));
        let closed = AccessRequest {
            state: AccessState::Expired as i32,
            decided_at: Some(from_unix_millis(now)),
            reason: format!("the holder did not decide by the deadline ({deadline})"),
            ..request.clone()
        };
        let mut events = Vec::new();
        if let Ok(requester) = NodeId::new(&request.requester) {
            let entry = OutboxEntry {
                event: Some(Event::AccessOutcome(closed.clone())),
                expires_ms: now.saturating_add(st.access.deadline.as_millis() as u64),
                ..Default::default()
            };
            events.push(Outgoing { node: requester, entry });
        }
        st.recorder.append(vec![records::access_expired(&request, &deadline)])?;
        if let Some(in_flight) = st.store.close_request(&closed, &events)? {
            closed_now.push(in_flight);
        }
        info!(request_id = %request.request_id, "access request expired");
    }
    // Settle after the commit: nothing is streamed before its record is durable.
    let n = closed_now.len();
    if let Err(e) = st.committer.commit().await {
        warn!(error = %e, "expired access requests not yet durable");
        return Err(e.into());
    }
    closed_now.into_iter().for_each(InFlight::settle);
    Ok(n)
}
