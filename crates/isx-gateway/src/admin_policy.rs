//! Policy reloads by a named officer with a reason, and the kept text of
//! every policy-set version.
//!
//! A reload ([`apply`]: the `Admin.ReloadPolicy` call, or `SIGHUP` with a
//! request file, see `hangup`) reads the policy directory again under the
//! policy's reload lock. A directory that validates is kept (its texts,
//! below), its `ADMINISTRATION` record (old and new version, the changed
//! policy ids, the officer, the sealed reason, how it was asked for) is made
//! durable, and only then is it put in force: no record, no change. One
//! that does not validate is recorded as refused, and the policy in force
//! stays.
//!
//! # Tree
//! - `policy.versions`: version → `PolicyVersion` (the schema and every
//!   `.cedar` file, and when this gateway first loaded it). Written at
//!   start for the version in force and by every reload, flushed with the
//!   record that names it. `Audit.GetPolicy` reads it, checking the texts
//!   against their digest, and an export carries every version kept.

use std::sync::Arc;

use isx_core::wire::{GetPolicyRequest, PolicyVersion, ReloadPolicyRequest, ReloadPolicyResponse};
use isx_policy::{PolicyEngine, PolicyError, Sources};
use prost::Message;
use tonic::Status;
use tonic_types::StatusExt;
use tracing::warn;

use crate::conn::{RequestInfo, Subject};
use crate::disclosure::{PolicyDisclosure, Reloaded};
use crate::error::RequestError;
use crate::records::{self, Actor};
use crate::state::{Caller, State};
use crate::store::StoreError;
use crate::text::Fields;

/// The tree of kept versions.
const TREE: &str = "policy.versions";

/// Keeps the texts of `engine`'s version, first loaded at `now_ms`, unless
/// they are kept already (flushed with the next group commit).
pub(crate) fn keep(db: &sled::Db, engine: &PolicyEngine, now_ms: u64) -> Result<(), StoreError> {
    let tree = db.open_tree(TREE)?;
    let version = engine.version();
    if tree.get(version)?.is_none() {
        tree.insert(version, engine.sources().to_kept(now_ms).encode_to_vec())?;
    }
    Ok(())
}

/// The kept texts of `version`, if this gateway ever loaded it.
pub(crate) fn kept(db: &sled::Db, version: &str) -> Result<Option<PolicyVersion>, StoreError> {
    let Some(bytes) = db.open_tree(TREE)?.get(version)? else { return Ok(None) };
    PolicyVersion::decode(bytes.as_ref()).map(Some).map_err(|e| StoreError::Corrupt(format!("{TREE} {version}: {e}")))
}

/// Every kept version, oldest first (what an export carries).
pub(crate) fn kept_all(state: &State) -> Result<Vec<PolicyVersion>, Status> {
    let unavailable = |e: StoreError| Status::from(RequestError::Storage(e));
    let tree = state.store.db().open_tree(TREE).map_err(|e| unavailable(e.into()))?;
    let mut all = Vec::new();
    for row in tree.iter() {
        let (key, bytes) = row.map_err(|e| unavailable(e.into()))?;
        let version = String::from_utf8_lossy(&key).into_owned();
        let kept = PolicyVersion::decode(bytes.as_ref())
            .map_err(|e| unavailable(StoreError::Corrupt(format!("{TREE} {version}: {e}"))))?;
        all.push(kept);
    }
    all.sort_by(|a, b| (a.first_loaded_ms, &a.version).cmp(&(b.first_loaded_ms, &b.version)));
    Ok(all)
}

/// The policies that differ from the kept `old` version to `new`, or
/// `None` if `old` is not kept (or its texts do not parse).
pub(crate) fn changes_since(db: &sled::Db, old: &str, new: &PolicyEngine) -> Option<Vec<String>> {
    let kept = kept(db, old).ok()??;
    let sources = Sources::from_kept(&kept).ok()?;
    let old_texts = sources.policy_texts(&isx_policy::kept_dir(old)).ok()?;
    let new_texts = new.sources().policy_texts(new.dir()).ok()?;
    Some(isx_policy::changes(&old_texts, &new_texts))
}

/// What a reload did.
#[derive(Debug)]
pub(crate) enum Applied {
    /// The directory is in force; its record is at `seq`.
    Reloaded {
        /// Old and new versions, changed policies.
        reloaded: Reloaded,
        /// The record's seq.
        seq: u64,
    },
    /// The directory did not validate and the policy in force stays; the
    /// refusal's record is at `seq`.
    Refused {
        /// Why.
        error: PolicyError,
        /// The version that stays.
        kept: String,
        /// The record's seq.
        seq: u64,
    },
}

/// Reloads the policy directory for `by` (`reason`, asked for `via`), as the
/// module docs say. Fails only if the record cannot be written, and then
/// nothing changed.
pub(crate) async fn apply(
    state: &State,
    policy: &Arc<PolicyDisclosure>,
    by: Actor<'_>,
    reason: &str,
    via: &str,
) -> Result<Applied, RequestError> {
    let _one_at_a_time = policy.reloading().await;
    let read = {
        let policy = policy.clone();
        tokio::task::spawn_blocking(move || policy.read_again()).await
    };
    let read = read.unwrap_or_else(|e| {
        Err(PolicyError::Io { path: policy.dir().to_owned(), source: std::io::Error::other(e.to_string()) })
    });
    match read {
        Ok(staged) => {
            keep(state.store.db(), &staged.engine, state.now_ms())?;
            let record = records::policy_reloaded(by, reason, via, &staged.reloaded);
            let version = staged.reloaded.new_version.clone();
            crate::last_run::update(state.store.db(), |run| run.policy_version = version)?;
            let seq = state.recorder.durable(vec![record]).await?[0];
            let reloaded = staged.reloaded.clone();
            policy.put_in_force(staged);
            Ok(Applied::Reloaded { reloaded, seq })
        }
        Err(error) => {
            let kept = policy.current().engine().version().to_owned();
            let record = records::policy_reload_refused(by, reason, via, &kept, &error.to_string());
            let seq = state.recorder.durable(vec![record]).await?[0];
            Ok(Applied::Refused { error, kept, seq })
        }
    }
}

/// Reloads the policy directory for `caller` (the `Admin.ReloadPolicy`
/// call): a reason is required (`INVALID_ARGUMENT` naming `reason`, recorded
/// as a refusal); a directory that does not validate is `FAILED_PRECONDITION`
/// naming the file and the error, recorded.
pub(crate) async fn reload(
    state: &State,
    policy: &Arc<PolicyDisclosure>,
    caller: &Caller<'_>,
    req: ReloadPolicyRequest,
) -> Result<ReloadPolicyResponse, Status> {
    let mut fields = Fields::default();
    fields.required("reason", &req.reason);
    if let Err(e) = fields.finish() {
        let info =
            RequestInfo { conn: Some(caller.conn.clone()), officer: caller.officer.clone(), subject: Subject::None };
        return Err(crate::refusal::refusal_status(state, &info, e).await);
    }
    match apply(state, policy, caller.actor(), req.reason.trim(), "admin call").await? {
        Applied::Reloaded { reloaded, seq } => Ok(ReloadPolicyResponse {
            old_version: reloaded.old_version,
            new_version: reloaded.new_version,
            changed: reloaded.changed,
            record_seq: seq,
        }),
        Applied::Refused { error, kept, seq } => {
            let message = format!(
                "the policy directory does not validate: {error}; version {kept} stays in force (recorded at seq {seq})"
            );
            let mut details = tonic_types::ErrorDetails::new();
            details.add_precondition_failure_violation(
                "POLICY_INVALID",
                policy.dir().display().to_string(),
                error.to_string(),
            );
            Err(Status::with_error_details(tonic::Code::FailedPrecondition, message, details))
        }
    }
}

/// The text of a kept policy-set version (the `Audit.GetPolicy` call, after
/// its caller, purpose and record were checked): `INVALID_ARGUMENT` without
/// a version, `NOT_FOUND` naming a version never loaded, `DATA_LOSS` if the
/// kept texts are not that version's.
pub(crate) async fn get_policy(state: &State, req: &GetPolicyRequest) -> Result<PolicyVersion, Status> {
    let version = req.version.trim();
    if version.is_empty() {
        let mut details = tonic_types::ErrorDetails::new();
        details.add_bad_request_violation("version", "is required: the policy-set version a record names");
        return Err(Status::with_error_details(tonic::Code::InvalidArgument, "version is required", details));
    }
    let kept = kept(state.store.db(), version).map_err(|e| Status::from(RequestError::Storage(e)))?;
    let Some(kept) = kept else {
        return Err(Status::not_found(format!("policy version {version} was never loaded by this gateway")));
    };
    if let Err(e) = Sources::from_kept(&kept) {
        warn!(version, error = %e, "a kept policy version does not match its digest");
        return Err(Status::data_loss(format!("the kept text of policy version {version} is damaged: {e}")));
    }
    Ok(kept)
}
