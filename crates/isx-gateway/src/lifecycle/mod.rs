//! The alert lifecycle: `Exchange.Amend`, `Withdraw`, `Restrict`,
//! `LiftRestriction` and `GetAlertStatus`, the change events they queue for
//! every copy, the holders' confirmations, and expiry's fan-out.
//!
//! Every change runs under `State.lifecycle_lock`, as a plan ([`plan`],
//! pure), then: its record is appended and its marker staged
//! (`Store::stage_change`), both made durable by one group commit; then the
//! marker is applied (`Store::apply_change`, one transaction: the alert
//! row, status rows, index rows, the events, the marker's removal),
//! committed and settled. So a change's record is durable before any of its
//! events can stream, and a crash between the two is finished at the next
//! start ([`resume`]), exactly once.
//!
//! Only the origin changes an alert (`rule origin-only`); a change needs a
//! reason. A withdrawal or expiry follows the forward chain: every onward
//! copy is deleted too, its event naming the alert it follows
//! (`because_of`).

pub(crate) mod plan;

use std::collections::BTreeMap;

use isx_core::digest::content_digest;
use isx_core::wire::{
    AlertState, AlertStatus, AmendRequest, AmendResponse, AuditRecord, ChangeConfirmation, GetAlertStatusRequest,
    GetAlertStatusResponse, LiftRestrictionRequest, LiftRestrictionResponse, RestrictRequest, RestrictResponse,
    WithdrawRequest, WithdrawResponse,
};
use isx_core::{FieldViolation, Role, ValidationError};
use tonic::Request;
use tracing::{info, warn};

use crate::config::AuditScope;
use crate::error::RequestError;
use crate::records::{self, Actor};
use crate::state::{Caller, State};
use crate::store::keys::expiry_key;
use crate::store::{PendingChange, StoreError, expires_ms};
use crate::text::Fields;
use plan::{Context, Current, Op};

/// How far a withdrawal follows forwards, and how many it follows at most.
const MAX_CHAIN_DEPTH: usize = 16;
const MAX_CHAIN_ALERTS: usize = 256;

fn check_reason(reason: &str) -> Result<(), RequestError> {
    let mut f = Fields::default();
    f.required("reason", reason);
    f.finish()
}

fn context<'a>(st: &State, by: Actor<'a>, reason: &'a str, now_ms: u64) -> Context<'a> {
    Context { by, reason, now_ms, grace_s: st.lifecycle.confirm_grace.as_secs() }
}

/// The alert as it stands: its row, status and expiry row.
fn load(st: &State, alert_id: &str) -> Result<Option<Current>, RequestError> {
    let Some(stored) = st.store.alert(alert_id)? else { return Ok(None) };
    let alert = stored.alert.clone().unwrap_or_default();
    let head = plan::head_of(&stored, st.store.status_head(alert_id)?);
    let copies = st.store.copy_statuses(alert_id)?.into_iter().map(|c| (c.node.clone(), c)).collect();
    let key = expiry_key(expires_ms(&alert), alert_id);
    let expiry = st.store.expiry_row(&key)?.unwrap_or_default();
    Ok(Some(Current { stored, head, copies, expiry_key: key, expiry }))
}

/// The caller's own alert, or NOT_FOUND / PERMISSION_DENIED.
fn own(st: &State, caller: &Caller<'_>, alert_id: &str) -> Result<Current, RequestError> {
    let cur = load(st, alert_id)?.ok_or_else(|| RequestError::UnknownAlert(alert_id.to_owned()))?;
    let origin = cur.stored.alert.as_ref().map(|a| a.origin.as_str()).unwrap_or_default();
    if origin != caller.node().as_str() {
        return Err(RequestError::NotOrigin { node: caller.node().to_string(), alert_id: alert_id.to_owned() });
    }
    Ok(cur)
}

/// `root` and every live forward of it, breadth first, bounded.
fn chain(st: &State, root: Current) -> Result<Vec<Current>, RequestError> {
    let mut out = vec![root];
    let mut frontier = vec![out[0].stored.alert.clone().unwrap_or_default().alert_id];
    for _ in 0..MAX_CHAIN_DEPTH {
        let mut next = Vec::new();
        for id in &frontier {
            for f in st.store.forwards_of(id)? {
                if out.len() >= MAX_CHAIN_ALERTS {
                    warn!(alert_id = %id, "forward chain longer than {MAX_CHAIN_ALERTS} alerts: the rest is not followed");
                    return Ok(out);
                }
                if let Some(cur) = load(st, &f)?
                    && !matches!(plan::state_of(&cur.stored), AlertState::Withdrawn | AlertState::Expired)
                {
                    next.push(f);
                    out.push(cur);
                }
            }
        }
        if next.is_empty() {
            break;
        }
        frontier = next;
    }
    Ok(out)
}

/// Appends `records`, stages `change`, commits both, then fans out. Returns
/// the records' sequence numbers.
async fn run(st: &State, records: Vec<AuditRecord>, change: PendingChange) -> Result<Vec<u64>, RequestError> {
    let seqs = st.recorder.append(records)?;
    st.store.stage_change(&change)?;
    // The record and the marker are durable together before anything streams.
    st.committer.commit().await?;
    if st.faults.fanout_fails() {
        return Err(StoreError::Sled(sled::Error::Unsupported("injected fault: before the fan-out".into())).into());
    }
    fan_out(st, &change).await?;
    Ok(seqs)
}

/// Applies a staged change, commits, settles.
async fn fan_out(st: &State, change: &PendingChange) -> Result<(), RequestError> {
    let applied = st.store.apply_change(change)?;
    st.committer.commit().await?;
    let queued = applied.in_flight.queued().len();
    applied.in_flight.settle();
    info!(alert_id = %change.alert_id, queued, superseded = applied.dropped, "change fanned out");
    Ok(())
}

/// Applies every change whose record is durable but whose fan-out did not
/// happen (a crash between the two). Called at start, before serving.
pub(crate) async fn resume(st: &State) -> Result<usize, RequestError> {
    let _lock = st.lifecycle_lock.lock().await;
    let pending = st.store.pending_changes()?;
    for change in &pending {
        warn!(alert_id = %change.alert_id, "finishing the fan-out of a change recorded before a stop");
        fan_out(st, change).await?;
    }
    Ok(pending.len())
}

/// Finishes a staged change of `alert_id` left by a failed call, first.
async fn resume_alert(st: &State, alert_id: &str) -> Result<(), RequestError> {
    if let Some(change) = st.store.pending_change(alert_id)? {
        fan_out(st, &change).await?;
    }
    Ok(())
}

/// `Exchange.Amend`.
pub(crate) async fn amend(st: &State, req: Request<AmendRequest>) -> Result<AmendResponse, RequestError> {
    let caller = st.caller(&req, &[Role::Publish])?;
    let AmendRequest { alert, replaces_version, reason } = req.into_inner();
    let mut alert = alert.ok_or(RequestError::MissingAlert)?;
    check_reason(&reason)?;
    let _lock = st.lifecycle_lock.lock().await;
    resume_alert(st, &alert.alert_id).await?;
    let now = st.now_ms();
    let cur = own(st, &caller, &alert.alert_id)?;
    let state = plan::state_of(&cur.stored);
    if matches!(state, AlertState::Withdrawn | AlertState::Expired) {
        return Err(RequestError::WrongState {
            alert_id: alert.alert_id,
            state: plan::state_name(state),
            action: "amended",
        });
    }
    let old = cur.stored.alert.clone().unwrap_or_default();
    if now >= expires_ms(&old) {
        return Err(RequestError::WrongState { alert_id: alert.alert_id, state: "expired", action: "amended" });
    }
    alert.version = 0;
    alert.hops = old.hops;
    if alert.forwarded_from != old.forwarded_from {
        return Err(RequestError::InvalidRequest(ValidationError {
            violations: vec![FieldViolation {
                field: "alert.forwarded_from".into(),
                description: "an amendment cannot change what the alert relays".into(),
            }],
        }));
    }
    crate::publish::check_alert(&alert, caller.node(), &st.infos, &st.limits, now)?;
    let digest = content_digest(&alert);
    if digest.as_slice() == cur.stored.digest.as_slice() {
        return Ok(AmendResponse { receipt: cur.stored.receipt.clone(), duplicate: true });
    }
    let current = plan::version_of(&old);
    if replaces_version != current {
        return Err(RequestError::StaleVersion { alert_id: alert.alert_id, given: replaces_version, current });
    }
    let first_ms =
        cur.head.versions.first().and_then(|v| v.at.as_ref()).map(isx_core::timestamp::to_unix_millis).unwrap_or(now);
    crate::storage_limit::check(&st.storage, &alert, first_ms)?;
    alert.version = current + 1;

    let index = crate::publish::index_rows(&alert, st.pseudonyms());
    let except = [alert.alert_id.as_str(), alert.forwarded_from.as_str()];
    let overlaps =
        crate::onward::overlaps(&st.store, caller.node(), &except, &index, now, st.limits.max_lookup_matches)?;
    for o in &overlaps {
        crate::onward::raise(alert.labels.get_or_insert_default(), &o.labels);
    }
    let raised_by: Vec<String> = overlaps.into_iter().map(|o| o.alert_id).collect();
    let related = crate::onward::related(&st.store, &alert, &raised_by)?;
    let candidates = isx_policy::candidates(&alert, &st.infos);
    let decided = st.disclose.decide(&alert, Some(&caller.slot.info), &candidates, &caller.officer, &related);
    let mut planned = plan::amend(
        plan::AmendInput { current: &cur, alert, digest, candidates: &candidates, decided, index, raised_by },
        context(st, caller.actor(), &reason, now),
    );
    // The version's record is the one appended now: its number is known
    // before the marker is written, so the head names it.
    let next_seq = st.recorder.log().size();
    if let Some(v) = planned.change.parts[0].head.as_mut().and_then(|h| h.versions.last_mut()) {
        v.record_seq = next_seq;
    }
    let seqs = run(st, vec![planned.record], planned.change).await?;
    if seqs.first().is_some_and(|s| *s != next_seq) {
        warn!(expected = next_seq, got = ?seqs.first(), "the version names another record number");
    }
    info!(version = planned.receipt.version, recipients = planned.receipt.recipients.len(), "alert amended");
    planned.receipt.version = planned.receipt.version.max(1);
    Ok(AmendResponse { receipt: Some(planned.receipt), duplicate: false })
}

/// A withdrawal, restriction or lift by the origin.
async fn origin_change(
    st: &State,
    caller: &Caller<'_>,
    op: Op,
    alert_id: &str,
    reason: &str,
) -> Result<AlertStatus, RequestError> {
    check_reason(reason)?;
    let _lock = st.lifecycle_lock.lock().await;
    resume_alert(st, alert_id).await?;
    let now = st.now_ms();
    let cur = own(st, caller, alert_id)?;
    let state = plan::state_of(&cur.stored);
    let ended = matches!(state, AlertState::Withdrawn | AlertState::Expired)
        || now >= expires_ms(&cur.stored.alert.clone().unwrap_or_default());
    let refused = match op {
        Op::Withdraw => ended.then_some("withdrawn"),
        Op::Restrict => (ended || state == AlertState::Restricted).then_some("restricted"),
        Op::Lift => (state != AlertState::Restricted).then_some("lifted (it is not restricted)"),
        Op::Expire => None,
    };
    if let Some(action) = refused {
        let state = if ended && state == AlertState::Active { "expired" } else { plan::state_name(state) };
        return Err(RequestError::WrongState { alert_id: alert_id.to_owned(), state, action });
    }
    let chain = if op.follows_forwards() { chain(st, cur)? } else { vec![cur] };
    let planned = plan::change(op, &chain, context(st, caller.actor(), reason, now));
    run(st, vec![planned.record], planned.change).await?;
    if op == Op::Withdraw {
        for c in &chain {
            let id = c.stored.alert.as_ref().map(|a| a.alert_id.as_str()).unwrap_or_default();
            if let Err(e) = crate::open_hits::close_for_alert(st, id, now).await {
                warn!(alert_id = %id, error = %e, "open hits of a withdrawn alert not closed");
            }
        }
    }
    info!(change = ?op, onward = chain.len() - 1, "alert changed");
    read_status(st, alert_id, now)
}

/// `Exchange.Withdraw`.
pub(crate) async fn withdraw(st: &State, req: Request<WithdrawRequest>) -> Result<WithdrawResponse, RequestError> {
    let caller = st.caller(&req, &[Role::Publish])?;
    let r = req.get_ref();
    let status = origin_change(st, &caller, Op::Withdraw, &r.alert_id, &r.reason).await?;
    Ok(WithdrawResponse { status: Some(status) })
}

/// `Exchange.Restrict`.
pub(crate) async fn restrict(st: &State, req: Request<RestrictRequest>) -> Result<RestrictResponse, RequestError> {
    let caller = st.caller(&req, &[Role::Publish])?;
    let r = req.get_ref();
    let status = origin_change(st, &caller, Op::Restrict, &r.alert_id, &r.reason).await?;
    Ok(RestrictResponse { status: Some(status) })
}

/// `Exchange.LiftRestriction`.
pub(crate) async fn lift_restriction(
    st: &State,
    req: Request<LiftRestrictionRequest>,
) -> Result<LiftRestrictionResponse, RequestError> {
    let caller = st.caller(&req, &[Role::Publish])?;
    let r = req.get_ref();
    let status = origin_change(st, &caller, Op::Lift, &r.alert_id, &r.reason).await?;
    Ok(LiftRestrictionResponse { status: Some(status) })
}

/// The status of `alert_id` and its forwards, from the kept rows.
fn read_status(st: &State, alert_id: &str, now_ms: u64) -> Result<AlertStatus, RequestError> {
    let shown_of = |id: &str| -> Result<Option<plan::Shown>, RequestError> {
        let cur = load(st, id)?;
        let head = match (st.store.status_head(id)?, &cur) {
            (Some(h), _) => h,
            (None, Some(c)) => c.head.clone(),
            (None, None) => return Ok(None),
        };
        Ok(Some(plan::shown(head, st.store.copy_statuses(id)?, cur.as_ref())))
    };
    let root = shown_of(alert_id)?.ok_or_else(|| RequestError::UnknownAlert(alert_id.to_owned()))?;
    let mut forwards = Vec::new();
    let mut frontier = vec![alert_id.to_owned()];
    for _ in 0..MAX_CHAIN_DEPTH {
        let mut next = Vec::new();
        for id in &frontier {
            for f in st.store.forwards_of(id)? {
                if forwards.len() < MAX_CHAIN_ALERTS
                    && let Some(s) = shown_of(&f)?
                {
                    forwards.push(s);
                    next.push(f);
                }
            }
        }
        if next.is_empty() {
            break;
        }
        frontier = next;
    }
    Ok(plan::status(&root, &forwards, now_ms, st.lifecycle.confirm_grace.as_secs()))
}

/// `Exchange.GetAlertStatus`: for the origin, or an auditor whose scope covers it.
pub(crate) async fn get_alert_status(
    st: &State,
    req: Request<GetAlertStatusRequest>,
) -> Result<GetAlertStatusResponse, RequestError> {
    let caller = st.caller(&req, &[Role::Publish, Role::Audit, Role::Subscribe])?;
    let alert_id = req.get_ref().alert_id.clone();
    let now = st.now_ms();
    let status = read_status(st, &alert_id, now)?;
    let me = caller.node().as_str();
    let covers = caller.slot.info.has(Role::Audit)
        && match &caller.slot.audit_scope {
            Some(AuditScope::All) => true,
            Some(AuditScope::Own(n)) => n.as_str() == status.origin,
            Some(AuditScope::Nodes(ns)) => ns.iter().any(|n| n.as_str() == status.origin),
            None => false,
        };
    if status.origin != me && !covers {
        return Err(RequestError::NotStatusReader { node: me.to_owned(), alert_id });
    }
    Ok(GetAlertStatusResponse { status: Some(status) })
}

/// A holder's confirmations on `Ack`: each one that settles its copy's last
/// change is a CHANGE_CONFIRMED record, durable before the answer. Returns
/// `(confirmed, superseded)`.
pub(crate) async fn confirm(
    st: &State,
    caller: &Caller<'_>,
    confirmations: &[ChangeConfirmation],
) -> Result<(u32, u32), RequestError> {
    if confirmations.is_empty() {
        return Ok((0, 0));
    }
    if confirmations.len() > st.limits.max_list_len {
        return Err(RequestError::InvalidRequest(ValidationError {
            violations: vec![FieldViolation {
                field: "confirmations".into(),
                description: format!("at most {} per acknowledgement (limits.max_list_len)", st.limits.max_list_len),
            }],
        }));
    }
    let _lock = st.lifecycle_lock.lock().await;
    let now = st.now_ms();
    let node = caller.node().as_str();
    let (mut confirmed, mut superseded) = (0, 0);
    let mut rows = BTreeMap::new();
    let mut recs = Vec::new();
    for c in confirmations {
        let key = c.alert_id.clone();
        let row = match rows.get(&key) {
            Some(r) => Some(r),
            None => st.store.copy_status(&c.alert_id, node)?.map(|r| &*rows.entry(key.clone()).or_insert(r)),
        }
        .cloned();
        match plan::confirm(row.as_ref(), c.version, c.state(), now) {
            plan::Confirmed::Settles(new, record) => {
                confirmed += 1;
                if record {
                    recs.push(records::change_confirmed(
                        caller.actor(),
                        &c.alert_id,
                        new.last_change(),
                        c.version,
                        c.state(),
                    ));
                }
                rows.insert(key, new);
            }
            plan::Confirmed::Superseded => superseded += 1,
        }
    }
    if !recs.is_empty() {
        let changed: Vec<_> = rows.into_values().collect();
        st.recorder.append(recs)?;
        st.store.put_copy_statuses(&changed)?;
        st.committer.commit().await?;
    }
    info!(confirmed, superseded, "changes confirmed");
    Ok((confirmed, superseded))
}

/// Expires one alert due at `now_ms` (the sweeper): an EXPIRY to every
/// holder, along the forward chain, and its rows go. An alert withdrawn
/// before only loses its row (every holder was told at the withdrawal).
pub(crate) async fn expire(st: &State, expiry_key: &[u8], alert_id: &str, now_ms: u64) -> Result<usize, RequestError> {
    let _lock = st.lifecycle_lock.lock().await;
    resume_alert(st, alert_id).await?;
    let Some(cur) = load(st, alert_id)? else {
        st.store.remove_ended(expiry_key, alert_id)?;
        return Ok(0);
    };
    if cur.expiry_key != expiry_key {
        // A stale row (the alert's expiry moved): only the row goes.
        st.store.remove_expiry_row(expiry_key)?;
        return Ok(0);
    }
    if plan::state_of(&cur.stored) == AlertState::Withdrawn {
        st.store.remove_ended(expiry_key, alert_id)?;
        return Ok(0);
    }
    if let Err(e) = crate::open_hits::close_for_alert(st, alert_id, now_ms).await {
        warn!(alert_id = %alert_id, error = %e, "open hits not closed");
    }
    let chain = chain(st, cur)?;
    let planned = plan::change(Op::Expire, &chain, context(st, Actor::gateway(), "", now_ms));
    let told = planned.record.recipients.len();
    run(st, vec![planned.record], planned.change).await?;
    info!(alert_id = %alert_id, told, "alert expired");
    Ok(told)
}

/// Drops the status of alerts that ended `lifecycle.keep_status` ago and
/// whose every copy confirmed.
pub(crate) fn drop_ended_status(st: &State, now_ms: u64) -> Result<usize, RequestError> {
    let keep = st.lifecycle.keep_status.as_millis() as u64;
    let mut dropped = 0;
    for head in st.store.status_heads()? {
        if head.ended_ms == 0 || now_ms.saturating_sub(head.ended_ms) < keep {
            continue;
        }
        if st.store.copy_statuses(&head.alert_id)?.iter().all(|c| c.settled) {
            st.store.drop_status(&head.alert_id)?;
            dropped += 1;
        }
    }
    Ok(dropped)
}
