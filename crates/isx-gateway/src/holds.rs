//! Legal holds and online pruning: the `Admin` calls `PlaceHold`,
//! `LiftHold`, `ListHolds` and `Prune`, and the scheduled prune
//! (`[audit] prune_every`).
//!
//! What may go is decided in `isx_audit` (`retention`, `hold`); this module
//! orders the writes so that the log always says what was done:
//! - **Placing**: the hold is stored (in force) first, then its
//!   ADMINISTRATION record (`HOLD_PLACED`) is appended and the hold updated
//!   with the record's seq; one group commit makes both durable before the
//!   answer. A crash in between leaves at worst a hold in force without its
//!   record: more is kept, nothing goes.
//! - **Lifting**: the `HOLD_LIFTED` record is durable (its own group
//!   commit) before the hold is removed, so a hold never stops holding
//!   without its record.
//! - **Pruning**: the ERASURE record (what goes, the rule, the cut-off, who
//!   ordered it, the sealed reason, what stops it) is durable before any
//!   body goes; then the bodies and search rows go
//!   ([`isx_audit::AuditLog::apply_prune`]) and another commit follows. A
//!   crash in between leaves bodies the record says are pruned; the next
//!   prune removes them and says so again. Only bodies go: every hash
//!   stays, so every earlier proof still verifies.
//!
//! Each of them holds `State::retention` throughout, so that no hold is
//! placed or lifted while a prune plans and applies, and two prunes never
//! overlap. Appends go on meanwhile: the recorder's appends take the log's
//! own size lock and write only beyond the log's size, and `apply_prune`
//! takes the indexer's lock, so the background indexer waits for it.

use std::sync::Arc;
use std::time::Duration;

use isx_audit::hold;
use isx_audit::retention::{PrunePlan, Rule, RuleError, date, span};
use isx_core::ValidationError;
use isx_core::timestamp::{from_unix_millis, to_unix_millis};
use isx_core::validate::FieldViolation;
use isx_core::wire::{
    AdminAction, AdminChange, AuditRecord, Hold, LiftHoldRequest, ListHoldsResponse, Operation, Outcome,
    PlaceHoldRequest, PruneRequest, PruneResponse,
};
use tonic::Status;
use tonic_types::{ErrorDetails, StatusExt};
use tracing::{debug, info, warn};

use crate::error::RequestError;
use crate::records::{self, Actor};
use crate::state::{Caller, State};

/// The longest case reference a hold takes, in bytes.
const MAX_CASE_REFERENCE: usize = 256;

/// The longest reason kept in a record, in characters (the rest is cut).
const MAX_REASON: usize = 512;

/// The first scheduled prune runs this long after start (or `prune_every`
/// after it, if that is sooner).
pub const FIRST_SCHEDULED_PRUNE: Duration = Duration::from_secs(10);

/// Why a hold or prune call was refused or failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HoldError {
    /// A field is missing or bad (`INVALID_ARGUMENT` naming it).
    #[error(transparent)]
    Invalid(RequestError),
    /// No hold in force has this id.
    #[error("no hold {0} is in force: `isx admin holds` lists those that are")]
    UnknownHold(String),
    /// The cut-off breaks the retention rule.
    #[error("{}", refusal(.error, .rule, .asked))]
    Rule {
        /// What the rule says.
        error: RuleError,
        /// The rule.
        rule: Rule,
        /// The cut-off was asked (`before`), not the rule's own.
        asked: bool,
    },
    /// The log or the group commit failed.
    #[error(transparent)]
    Request(#[from] RequestError),
}

/// A refused cut-off in words, naming the rule's config key.
fn refusal(error: &RuleError, rule: &Rule, asked: &bool) -> String {
    let (retention, floor) = (span(rule.retention_ms), span(rule.floor_ms));
    match error {
        RuleError::Future { before_ms, now_ms } => format!(
            "before {} is in the future: pruning keeps every record for audit.retention ({retention}) and never prunes inside audit.retention_floor ({floor}); give a time on or before {}, or leave before out to prune by the rule",
            date(*before_ms),
            date(now_ms.saturating_sub(rule.floor_ms))
        ),
        RuleError::InsideFloor { before_ms, latest_ms, .. } if *asked => format!(
            "before {} is inside audit.retention_floor ({floor}): records younger than {floor} are never pruned; give a time on or before {}",
            date(*before_ms),
            date(*latest_ms)
        ),
        RuleError::InsideFloor { .. } => {
            format!("audit.retention ({retention}) is shorter than audit.retention_floor ({floor}): fix the config")
        }
    }
}

impl From<HoldError> for Status {
    fn from(e: HoldError) -> Self {
        match e {
            HoldError::Invalid(e) | HoldError::Request(e) => Status::from(e),
            HoldError::UnknownHold(_) => Status::not_found(e.to_string()),
            HoldError::Rule { ref error, .. } => {
                let subject = match error {
                    RuleError::Future { .. } => "audit.retention",
                    RuleError::InsideFloor { .. } => "audit.retention_floor",
                };
                let mut details = ErrorDetails::new();
                details.add_precondition_failure_violation("RETENTION", subject, e.to_string());
                Status::with_error_details(tonic::Code::FailedPrecondition, e.to_string(), details)
            }
        }
    }
}

/// `INVALID_ARGUMENT` naming `field`.
fn invalid(field: &str, description: impl Into<String>) -> HoldError {
    HoldError::Invalid(RequestError::InvalidRequest(ValidationError {
        violations: vec![FieldViolation { field: field.to_owned(), description: description.into() }],
    }))
}

/// A reason as kept in a record: required, cut at [`MAX_REASON`] characters.
fn reason(text: &str) -> Result<String, HoldError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(invalid("reason", "is required: why (it is kept sealed in the audit record)"));
    }
    Ok(text.chars().take(MAX_REASON).collect())
}

/// Checks a `PlaceHold` request: its scope, case reference and reason.
fn check_place(state: &State, req: &PlaceHoldRequest) -> Result<(), HoldError> {
    let (alert, node) = (req.alert_id.trim(), req.node.trim());
    if alert.is_empty() && node.is_empty() && req.from.is_none() && req.to.is_none() {
        return Err(invalid("alert_id", "give what the hold covers: alert_id, node, or a time range (from, to)"));
    }
    if !alert.is_empty() && !isx_core::validate::is_alert_id(alert) {
        return Err(invalid("alert_id", "is not an alert id (a ULID or a UUID)"));
    }
    if !node.is_empty() && state.node_info(node).is_none() {
        return Err(invalid("node", format!("{node:?} is not a registered node")));
    }
    if let (Some(from), Some(to)) = (&req.from, &req.to)
        && to_unix_millis(from) > to_unix_millis(to)
    {
        return Err(invalid("to", "is before from"));
    }
    let case = req.case_reference.trim();
    if case.is_empty() {
        return Err(invalid("case_reference", "is required: the case or proceedings the hold serves"));
    }
    if case.len() > MAX_CASE_REFERENCE {
        return Err(invalid("case_reference", format!("is longer than {MAX_CASE_REFERENCE} bytes")));
    }
    reason(&req.reason).map(drop)
}

/// The ADMINISTRATION record of placing or lifting `hold`.
fn hold_record(by: Actor<'_>, action: AdminAction, hold: &Hold, reason: &str) -> AuditRecord {
    let change = AdminChange {
        action: action as i32,
        changed: vec![hold.id.clone()],
        via: "admin call".into(),
        ..Default::default()
    };
    let detail = match action {
        AdminAction::HoldLifted => format!(
            "legal hold {} lifted (placed at seq {}): it covered {}; case {}; what it kept is pruned by the rule again",
            hold.id,
            hold.placed_seq,
            hold::scope(hold),
            hold.case_reference
        ),
        _ => format!(
            "legal hold {} placed: it covers {}; case {}; no record it covers is pruned until it is lifted",
            hold.id,
            hold::scope(hold),
            hold.case_reference
        ),
    };
    AuditRecord {
        // The hold is part of the alert's history (a search by alert finds it).
        alert_id: hold.alert_id.clone(),
        case_reference: hold.case_reference.clone(),
        ..records::administration(by, change, reason, Outcome::Ok, detail)
    }
}

/// Places a hold (the `Admin.PlaceHold` call).
pub(crate) async fn place(state: &State, caller: &Caller<'_>, req: PlaceHoldRequest) -> Result<Hold, Status> {
    check_place(state, &req)?;
    let why = reason(&req.reason)?;
    let log = state.recorder.log();
    let _retention = state.retention.lock().await;
    let audit = |e| Status::from(RequestError::Audit(e));
    let mut hold = Hold {
        id: log.next_hold_id().map_err(audit)?,
        alert_id: req.alert_id.trim().to_owned(),
        node: req.node.trim().to_owned(),
        from: req.from,
        to: req.to,
        case_reference: req.case_reference.trim().to_owned(),
        placed_by: caller.officer.clone(),
        placed_at: Some(from_unix_millis(state.now_ms())),
        placed_seq: 0,
    };
    // In force first: from here no prune passes what it covers.
    log.put_hold(&hold).map_err(audit)?;
    let record = hold_record(caller.actor(), AdminAction::HoldPlaced, &hold, &why);
    let seq = match state.recorder.append(vec![record]) {
        Ok(seqs) => seqs[0],
        Err(e) => {
            // Not recorded: not placed.
            let _ = log.remove_hold(&hold.id);
            return Err(e.into());
        }
    };
    hold.placed_seq = seq;
    log.put_hold(&hold).map_err(audit)?;
    state.committer.commit().await.map_err(RequestError::from)?;
    info!(hold = %hold.id, seq, "legal hold placed");
    Ok(hold)
}

/// Lifts a hold (the `Admin.LiftHold` call).
pub(crate) async fn lift(state: &State, caller: &Caller<'_>, req: LiftHoldRequest) -> Result<Hold, Status> {
    let id = req.id.trim();
    if id.is_empty() {
        return Err(invalid("id", "is required: the hold's id (hold-N), from `isx admin holds`").into());
    }
    let why = reason(&req.reason)?;
    let log = state.recorder.log();
    let _retention = state.retention.lock().await;
    let audit = |e| Status::from(RequestError::Audit(e));
    let Some(hold) = log.hold(id).map_err(audit)? else {
        return Err(HoldError::UnknownHold(id.to_owned()).into());
    };
    // The record is durable before the hold stops holding.
    let seq = state.recorder.durable(vec![hold_record(caller.actor(), AdminAction::HoldLifted, &hold, &why)]).await?[0];
    log.remove_hold(id).map_err(audit)?;
    state.committer.commit().await.map_err(RequestError::from)?;
    info!(hold = %hold.id, seq, "legal hold lifted");
    Ok(hold)
}

/// The holds in force (the `Admin.ListHolds` call).
pub(crate) async fn list(state: &State, _caller: &Caller<'_>) -> Result<ListHoldsResponse, Status> {
    let holds = state.recorder.log().holds().map_err(RequestError::Audit)?;
    Ok(ListHoldsResponse { holds })
}

/// Prunes online (the `Admin.Prune` call).
pub(crate) async fn prune(state: &State, caller: &Caller<'_>, req: PruneRequest) -> Result<PruneResponse, Status> {
    let why = reason(&req.reason)?;
    let order = Order {
        by: caller.actor(),
        ordered_by: format!("{} of {} (via admin call)", caller.officer, caller.node()),
        reason: why,
        before_ms: req.before.as_ref().map(to_unix_millis),
        dry_run: req.dry_run,
    };
    let rule = state.recorder.config().retention_rule();
    let done = run(state, order).await?;
    Ok(PruneResponse {
        from: done.plan.from,
        upto: done.plan.upto,
        cutoff: Some(from_unix_millis(done.plan.cutoff.at_ms)),
        stopped_by: done.plan.stop(),
        record_seq: done.record_seq.unwrap_or(0),
        rule: rule.describe(),
    })
}

/// One prune, by whoever ordered it.
struct Order<'a> {
    /// Who acts (the caller, or the gateway itself).
    by: Actor<'a>,
    /// Who ordered it and how, for the ERASURE record's detail.
    ordered_by: String,
    /// Why (sealed in the record).
    reason: String,
    /// The cut-off asked; `None`: now minus the retention.
    before_ms: Option<u64>,
    /// Plan only.
    dry_run: bool,
}

/// What a prune did.
struct Done {
    /// The plan, carried out unless a dry run.
    plan: PrunePlan,
    /// The ERASURE record, if anything went.
    record_seq: Option<u64>,
}

/// Plans the prune `order` asks and, unless a dry run or nothing goes,
/// records it durably and carries it out (see the module doc for the order).
async fn run(state: &State, order: Order<'_>) -> Result<Done, HoldError> {
    let rule = state.recorder.config().retention_rule();
    let _retention = state.retention.lock().await;
    let now = state.now_ms();
    let cutoff = rule.cutoff(order.before_ms, now).map_err(|error| HoldError::Rule {
        error,
        rule,
        asked: order.before_ms.is_some(),
    })?;
    let log = state.recorder.log().clone();
    let plan = blocking(log.clone(), move |log| log.plan_prune(&cutoff)).await?;
    if order.dry_run || plan.count() == 0 {
        return Ok(Done { plan, record_seq: None });
    }
    let record = AuditRecord {
        justification: order.reason,
        detail: plan.detail(&rule, &order.ordered_by),
        ..records::about(order.by, Operation::Erasure, Outcome::Ok)
    };
    let seq = state.recorder.durable(vec![record]).await?[0];
    let applied = plan.clone();
    blocking(log, move |log| log.apply_prune(&applied)).await?;
    state.committer.commit().await.map_err(RequestError::from)?;
    info!(from = plan.from, upto = plan.upto, erasure = seq, "audit records pruned by the retention rule");
    Ok(Done { plan, record_seq: Some(seq) })
}

/// Runs `f` on the log on the blocking pool (plans and prunes read and
/// write many records).
async fn blocking<T: Send + 'static>(
    log: Arc<isx_audit::AuditLog>,
    f: impl FnOnce(&isx_audit::AuditLog) -> Result<T, isx_audit::AuditError> + Send + 'static,
) -> Result<T, HoldError> {
    match tokio::task::spawn_blocking(move || f(&log)).await {
        Ok(result) => result.map_err(|e| HoldError::Request(RequestError::Audit(e))),
        Err(_) => Err(HoldError::Request(RequestError::Commit(crate::commit::CommitError::Stopped))),
    }
}

/// Prunes what the retention rule allows every `every`, the first time
/// [`FIRST_SCHEDULED_PRUNE`] after start (or `every`, if sooner), until
/// shutdown. It acts as the gateway (no officer), via the timer, and
/// writes an ERASURE record only when something goes. It is safe on by
/// default: it cuts at now minus `audit.retention`, and no record inside
/// the retention, inside the floor, of a live alert or under a hold goes.
pub(crate) async fn prune_on_schedule(state: Arc<State>, every: Duration) {
    let rule = state.recorder.config().retention_rule();
    let every_ms = u64::try_from(every.as_millis()).unwrap_or(u64::MAX);
    let reason = format!(
        "scheduled retention (rule: audit.retention {}, audit.retention_floor {}, every {})",
        span(rule.retention_ms),
        span(rule.floor_ms),
        span(every_ms)
    );
    let mut wait = every.min(FIRST_SCHEDULED_PRUNE);
    loop {
        tokio::select! {
            _ = state.shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        wait = every;
        let order = Order {
            by: Actor::gateway(),
            ordered_by: format!("the gateway (via timer, audit.prune_every {})", span(every_ms)),
            reason: reason.clone(),
            before_ms: None,
            dry_run: false,
        };
        match run(&state, order).await {
            Ok(Done { plan, record_seq: Some(seq) }) => {
                info!(pruned = plan.count(), upto = plan.upto, erasure = seq, "scheduled prune: {}", plan.stop())
            }
            Ok(Done { plan, .. }) => debug!("scheduled prune: nothing to prune; {}", plan.stop()),
            Err(e) => warn!(error = %e, "scheduled prune failed (the next one retries)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: u64 = 86_400_000;

    #[test]
    fn a_refused_cutoff_names_the_rule_and_the_latest_time_allowed() {
        let rule = Rule { retention_ms: 1095 * DAY, floor_ms: 30 * DAY };
        let now = 20_000 * DAY;
        let cases = [
            (Some(now + DAY), "is in the future: pruning keeps every record for audit.retention (1095d)"),
            (Some(now - DAY), "is inside audit.retention_floor (30d): records younger than 30d are never pruned"),
        ];
        for (before, want) in cases {
            let error = rule.cutoff(before, now).unwrap_err();
            let status = Status::from(HoldError::Rule { error, rule, asked: true });
            assert_eq!(status.code(), tonic::Code::FailedPrecondition);
            assert!(status.message().contains(want), "{}", status.message());
            assert!(status.message().contains(&date(now - 30 * DAY)), "the latest allowed: {}", status.message());
        }
    }

    #[test]
    fn a_reason_is_required_and_kept_short() {
        assert!(matches!(reason("  "), Err(HoldError::Invalid(_))));
        assert_eq!(reason(&"x".repeat(2000)).unwrap().len(), MAX_REASON);
        let status = Status::from(reason("").unwrap_err());
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert!(status.message().contains("reason: is required"), "{}", status.message());
    }
}
