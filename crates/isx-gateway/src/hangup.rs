//! What `SIGHUP` does, done by the serving gateway so that it is recorded.
//!
//! The binary turns each `SIGHUP` into [`ReloadHandle::hangup`]. A task of
//! the serve loop answers it:
//! - the policy directory is reloaded only with a request file naming the
//!   officer and the reason (`reload_request`); it is consumed, and the
//!   reload is recorded as any other (`admin_policy`, via `"SIGHUP"`).
//!   Without a valid file the reload is refused, logged and recorded
//!   (`ADMINISTRATION`, outcome `REFUSED`, the detail saying why);
//! - the revocation lists are read again, and a read that changed what they
//!   revoke is recorded (`ADMINISTRATION` `CRL_RELOAD`), as is one by the
//!   `[revocation] reload_every` timer.
//!
//! A handle taken before `serve` waits for it; once the gateway stopped,
//! it answers [`HangupError::NotServing`].

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};

use crate::admin_policy::{self, Applied};
use crate::disclosure::{PolicyDisclosure, Reloaded};
use crate::records::{self, Actor};
use crate::revocation::{CrlReport, Revocation};
use crate::state::State;

/// What the gateway did with one `SIGHUP`.
#[derive(Debug)]
pub struct HangupReport {
    /// The policy reload, or why it was refused.
    pub policy: PolicyReload,
    /// The revocation lists' read, or why they were not read.
    pub crls: Result<CrlReport, String>,
}

/// What became of a policy reload on `SIGHUP`.
#[derive(Debug)]
pub enum PolicyReload {
    /// Reloaded for the officer of the request file.
    Reloaded {
        /// Old and new versions and the changed policies.
        reloaded: Reloaded,
        /// The officer named in the request file.
        officer: String,
        /// The seq of its record.
        record_seq: u64,
    },
    /// Refused: no valid request file, or a directory that does not validate.
    Refused {
        /// Why, in words (names the file and the fix).
        problem: String,
        /// The seq of its record.
        record_seq: u64,
    },
    /// The refusal or the reload could not be recorded, so nothing changed.
    NotRecorded(String),
}

/// Why a handle got no answer.
#[derive(Debug, thiserror::Error)]
pub enum HangupError {
    /// The gateway is not serving (it stopped, or never started).
    #[error("the gateway is not serving: nothing was reloaded")]
    NotServing,
}

/// What a handle asks.
enum Ask {
    /// What `SIGHUP` does.
    Hangup(oneshot::Sender<HangupReport>),
    /// Only the revocation lists, as `SIGHUP` reads them.
    Crls(oneshot::Sender<Result<CrlReport, String>>),
}

/// Asks the serving gateway to do what `SIGHUP` does. Cheap to clone.
#[derive(Clone)]
pub struct ReloadHandle {
    /// To the serve loop's task.
    tx: mpsc::Sender<Ask>,
}

impl std::fmt::Debug for ReloadHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReloadHandle").finish_non_exhaustive()
    }
}

/// How many asks wait for the task at most.
const WAITING: usize = 16;

impl ReloadHandle {
    /// A handle and the receiver the serve loop takes.
    pub(crate) fn new() -> (Self, Hangups) {
        let (tx, rx) = mpsc::channel(WAITING);
        (Self { tx }, Hangups { rx })
    }

    /// What `SIGHUP` does (see the module docs), once the gateway serves.
    pub async fn hangup(&self) -> Result<HangupReport, HangupError> {
        let (reply, answer) = oneshot::channel();
        self.tx.send(Ask::Hangup(reply)).await.map_err(|_| HangupError::NotServing)?;
        answer.await.map_err(|_| HangupError::NotServing)
    }

    /// Reads the revocation lists again, recorded as on `SIGHUP`, and
    /// leaves the policy alone.
    pub async fn reload_crls(&self) -> Result<Result<CrlReport, String>, HangupError> {
        let (reply, answer) = oneshot::channel();
        self.tx.send(Ask::Crls(reply)).await.map_err(|_| HangupError::NotServing)?;
        answer.await.map_err(|_| HangupError::NotServing)
    }
}

/// The receiving end, for the serve loop.
pub(crate) struct Hangups {
    /// Asks from every handle.
    rx: mpsc::Receiver<Ask>,
}

/// What answering needs.
pub(crate) struct Context {
    /// The shared state (the recorder, the store).
    pub state: Arc<State>,
    /// The reloadable policy.
    pub policy: Arc<PolicyDisclosure>,
    /// The revocation lists.
    pub revocation: Arc<Revocation>,
    /// The request file.
    pub request: PathBuf,
    /// Its `[admin] reload_request_max_age`.
    pub max_age: Duration,
}

impl Hangups {
    /// Answers asks until shutdown.
    pub(crate) async fn serve(mut self, cx: Context) {
        loop {
            let ask = tokio::select! {
                _ = cx.state.shutdown.cancelled() => return,
                ask = self.rx.recv() => ask,
            };
            match ask {
                None => return,
                Some(Ask::Hangup(reply)) => {
                    let policy = policy_on_hangup(&cx).await;
                    let crls = reload_crls(&cx.state, &cx.revocation, "SIGHUP").await;
                    let _ = reply.send(HangupReport { policy, crls });
                }
                Some(Ask::Crls(reply)) => {
                    let _ = reply.send(reload_crls(&cx.state, &cx.revocation, "SIGHUP").await);
                }
            }
        }
    }
}

/// The policy half of a `SIGHUP`: the request file, then the reload.
async fn policy_on_hangup(cx: &Context) -> PolicyReload {
    let request = crate::reload_request::take(&cx.request, cx.max_age, SystemTime::now());
    let request = match request {
        Ok(request) => request,
        Err(e) => {
            let problem = e.to_string();
            warn!(error = %problem, "policy reload on SIGHUP refused (recorded); the policy in force stays");
            let kept = cx.policy.current().engine().version().to_owned();
            let record = records::policy_reload_refused(Actor::gateway(), "", "SIGHUP", &kept, &problem);
            return match cx.state.recorder.durable(vec![record]).await {
                Ok(seqs) => PolicyReload::Refused { problem, record_seq: seqs[0] },
                Err(audit) => PolicyReload::NotRecorded(audit.to_string()),
            };
        }
    };
    let by = Actor { conn: None, officer: &request.officer };
    match admin_policy::apply(&cx.state, &cx.policy, by, &request.reason, "SIGHUP").await {
        Ok(Applied::Reloaded { reloaded, seq }) => {
            info!(
                old = %reloaded.old_version,
                version = %reloaded.new_version,
                record_seq = seq,
                "policy reloaded on SIGHUP for the officer of the request file (recorded)"
            );
            PolicyReload::Reloaded { reloaded, officer: request.officer, record_seq: seq }
        }
        Ok(Applied::Refused { error, kept, seq }) => {
            warn!(error = %error, kept, record_seq = seq, "policy reload on SIGHUP refused (recorded); the policy in force stays");
            PolicyReload::Refused { problem: error.to_string(), record_seq: seq }
        }
        Err(audit) => {
            warn!(error = %audit, "policy reload on SIGHUP not recorded, so not made");
            PolicyReload::NotRecorded(audit.to_string())
        }
    }
}

/// Reads the revocation lists again (asked for `via`: `"SIGHUP"` or
/// `"timer"`); a read that changed what they revoke is recorded, and the
/// last run remembers the serials.
pub(crate) async fn reload_crls(state: &State, revocation: &Arc<Revocation>, via: &str) -> Result<CrlReport, String> {
    let read = {
        let revocation = revocation.clone();
        tokio::task::spawn_blocking(move || revocation.reload()).await
    };
    let report = match read {
        Ok(Ok(report)) => report,
        Ok(Err(e)) => return Err(e.to_string()),
        Err(e) => return Err(e.to_string()),
    };
    if report.changed() {
        let revoked: Vec<String> = revocation.revoked().into_iter().collect();
        if let Err(e) = crate::last_run::update(state.store.db(), |run| run.revoked = revoked) {
            warn!(error = %e, "the revoked serials were not remembered for the next start");
        }
        if let Err(e) = state.recorder.durable(vec![records::crl_reload(&report, via)]).await {
            warn!(error = %e, "a change of the revocation lists was not recorded");
        }
    }
    Ok(report)
}
