//! The composition root: [`Gateway::open`] loads TLS material, the policy
//! and the data directory and checks the audit log; [`Gateway::serve`]
//! starts the group commit, the recorder's checkpointer and indexer, the
//! expiry sweep, the accept loop and the tonic router (Exchange, Audit,
//! Admin, health, reflection), and drains them on shutdown. A start is
//! recorded (`GATEWAY_START`, and what changed since the last run: see
//! `last_run`) before anything is served, and a graceful stop
//! (`GATEWAY_STOP`) is the last record before the last flush. No other
//! module imports this one.

use std::collections::BTreeSet;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use isx_audit::AuditLog;
use isx_core::wire::Outcome;
use isx_core::wire::admin_server::AdminServer;
use isx_core::wire::audit_server::AuditServer;
use isx_core::wire::exchange_server::ExchangeServer;
use isx_tls::config::IdentityFiles;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::accept::{Acceptor, accept_loop};
use crate::admin_service::AdminService;
use crate::admission::AdmissionLayer;
use crate::audit_service::AuditService;
use crate::clock::{Clock, system_clock};
use crate::commit::{CommitStats, Committer};
use crate::config::GatewayConfig;
use crate::conn::TlsConn;
use crate::disclosure::{Disclose, PolicyDisclosure};
use crate::exchange::ExchangeService;
use crate::faults::Faults;
use crate::hangup::{Hangups, ReloadHandle};
use crate::holds::prune_on_schedule;
use crate::recorder::Recorder;
use crate::records;
use crate::refusal::record_refusal_bursts;
use crate::revocation::Revocation;
use crate::state::{Parts, State};
use crate::store::{Store, StoreError};
use crate::sweeper::sweep_expired;
use crate::witnessing::Witnesses;

/// Why the gateway could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// TLS material is missing or invalid.
    #[error(transparent)]
    Tls(#[from] isx_tls::TlsError),
    /// The audit keys are missing or invalid.
    #[error("audit keys: {0}")]
    AuditKeys(#[from] isx_audit::keys::KeyError),
    /// The audit log failed its integrity check or cannot be read.
    #[error("{0}; the gateway refuses to start")]
    Audit(#[from] isx_audit::AuditError),
    /// The policy directory does not load or validate.
    #[error("policy: {0}")]
    Policy(#[from] isx_policy::PolicyError),
    /// The data directory could not be opened.
    #[error("data directory: {0}")]
    Store(#[from] StoreError),
    /// The reflection service could not be built.
    #[error("reflection: {0}")]
    Reflection(String),
    /// The witness policy is unusable, or the witnesses refuse the start.
    #[error(transparent)]
    Witness(#[from] crate::witnessing::WitnessError),
    /// The HTTP/2 server failed.
    #[error("transport: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// The start could not be recorded: no log, no service.
    #[error("the start could not be recorded in the audit log: {0}")]
    Record(String),
}

/// The largest message the Audit service sends (a search page or one export batch).
const MAX_AUDIT_MESSAGE: usize = 64 << 20;

/// The largest header block of one request (HTTP/2 `SETTINGS_MAX_HEADER_LIST_SIZE`).
const MAX_HEADER_LIST: u32 = 16 << 10;

/// How long a shutdown waits for open connections to finish before aborting them.
const DRAIN: Duration = Duration::from_secs(5);

/// An opened gateway, ready to serve.
pub struct Gateway {
    /// The validated config.
    config: GatewayConfig,
    /// The TLS server config (client certificates required) and the CRLs.
    revocation: Arc<Revocation>,
    /// The data directory.
    store: Store,
    /// The audit log, checked.
    audit: Arc<AuditLog>,
    /// sled's files, fsynced after each group-commit flush.
    fsync: Vec<std::fs::File>,
    /// The disclosure decision in force.
    disclose: Arc<dyn Disclose>,
    /// The reloadable policy.
    policy: Arc<PolicyDisclosure>,
    /// Now.
    clock: Clock,
    /// Group-commit counters.
    commit_stats: Arc<CommitStats>,
    /// Fault switches (inert without the `faults` feature).
    faults: Arc<Faults>,
    /// The witnesses of `witness.policy`, if set.
    witnesses: Option<Arc<Witnesses>>,
    /// What `SIGHUP` asks of the serve loop, answered there.
    hangups: Hangups,
    /// The handle whose asks `hangups` receives.
    reload: ReloadHandle,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway").field("listen", &self.config.listen).finish_non_exhaustive()
    }
}

impl Gateway {
    /// Loads TLS material and opens the data directory.
    pub fn open(config: GatewayConfig) -> Result<Self, StartError> {
        let revocation = Arc::new(Revocation::load(
            IdentityFiles::in_dir(&config.pki_dir, "gateway"),
            config.crls.clone(),
            config.revocation.clone(),
        )?);
        isx_store::private_dir(&config.data_dir).map_err(|e| StoreError::Sealed(e.into()))?;
        let policy = Arc::new(PolicyDisclosure::load(config.policy_dir.clone(), config.redaction.clone())?);
        let db_dir = config.data_dir.join("gateway.sled");
        let faults: Arc<Faults> = Arc::default();
        let nodes: Vec<_> = config.node_infos().into_iter().map(|n| n.id).collect();
        let store = Store::open(
            &db_dir,
            &isx_store::key_path(&config.pki_dir, "gateway"),
            &nodes,
            config.limits.max_queue_per_node,
        )?
        .with_faults(faults.clone());
        let keys = isx_audit::keys::load(&config.pki_dir)?;
        let (audit, report) = AuditLog::open(store.db(), keys, &|done, total| {
            if total > 100_000 && done % 262_144 == 0 {
                info!(done, total, "checking the audit log");
            }
        })?;
        info!(
            records = report.size,
            checkpoint = report.checkpoint_size,
            index_rows = report.index_rows,
            "audit log verified against its last signed checkpoint"
        );
        let witnesses = Witnesses::load(&config.witness, &config.pki_dir, &audit.keys().verifier_key)?.map(Arc::new);
        match &witnesses {
            Some(w) => info!(
                witnesses = w.policy().witnesses().len(),
                quorum = %w.policy().describe_quorum(),
                "checkpoints are published once the witnesses' quorum cosigned them"
            ),
            None => warn!(
                "no witness.policy: checkpoints carry the gateway's signature alone, and a rollback of the audit log \
                 (an older data directory restored) is seen only by an auditor who saved a checkpoint"
            ),
        }
        // sled's own files; fsynced after each group-commit flush when `audit.fsync` is on.
        let fsync = if config.audit.fsync {
            ["db", "conf"].iter().filter_map(|name| std::fs::File::open(db_dir.join(name)).ok()).collect()
        } else {
            vec![]
        };
        let (reload, hangups) = ReloadHandle::new();
        Ok(Self {
            hangups,
            reload,
            config,
            revocation,
            store,
            audit: Arc::new(audit),
            fsync,
            disclose: policy.clone(),
            policy,
            clock: system_clock(),
            commit_stats: Arc::default(),
            faults,
            witnesses,
        })
    }

    /// The storage fault switches (fault-injection tests).
    #[cfg(feature = "faults")]
    pub fn faults(&self) -> Arc<Faults> {
        self.faults.clone()
    }

    /// The revocation lists in force.
    pub fn revocation(&self) -> Arc<Revocation> {
        self.revocation.clone()
    }

    /// What `SIGHUP` does, for the binary's signal handler (and tests):
    /// the serving gateway reloads the policy if a request file names the
    /// officer and the reason, re-reads the CRLs, and records both.
    pub fn reload_handle(&self) -> ReloadHandle {
        self.reload.clone()
    }

    /// Group-commit counters.
    pub fn commit_stats(&self) -> Arc<CommitStats> {
        self.commit_stats.clone()
    }

    /// The audit log (read-only use: tests and tools).
    pub fn audit_log(&self) -> Arc<AuditLog> {
        self.audit.clone()
    }

    /// The policy in force, to explain decisions (reloads go through the
    /// `Admin` service or [`Gateway::reload_handle`], which record them).
    pub fn policy(&self) -> Arc<PolicyDisclosure> {
        self.policy.clone()
    }

    /// Replaces the disclosure decision (tests and fault injection).
    pub fn with_disclosure(mut self, disclose: Arc<dyn Disclose>) -> Self {
        self.disclose = disclose;
        self
    }

    /// Replaces the clock (tests).
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Serves on `listener` until `shutdown` is cancelled, then drains and closes the store.
    pub async fn serve(self, listener: TcpListener, shutdown: CancellationToken) -> Result<(), StartError> {
        let fsync = self.fsync.iter().filter_map(|f| f.try_clone().ok()).collect();
        let (committer, commit_task) =
            Committer::start(self.store.db().clone(), fsync, self.commit_stats.clone(), self.faults.clone());
        let mut recorder =
            Recorder::new(self.audit.clone(), committer.clone(), self.clock.clone(), self.config.audit.clone())
                .with_faults(self.faults.clone());
        let witness = &self.config.witness;
        if let Some(w) = &self.witnesses {
            recorder = recorder.with_witnesses(w.clone(), (witness.max_age / 4).max(Duration::from_secs(1)));
        }
        let recorder = Arc::new(recorder);
        // The rollback check, before anything is served.
        if let Err(e) = recorder.check_witnesses(witness.require_at_start).await {
            drop(recorder);
            drop(committer);
            let _ = commit_task.await;
            return Err(e.into());
        }
        let started = (self.clock)();
        let listen = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
        if let Err(e) = self.record_start(&recorder, &listen, started).await {
            drop(recorder);
            drop(committer);
            let _ = commit_task.await;
            return Err(e);
        }
        let checkpointer = tokio::spawn(recorder.clone().checkpointer(shutdown.clone()));
        let indexer = tokio::spawn(recorder.clone().indexer(shutdown.clone()));
        let state = Arc::new(State::new(
            &self.config,
            Parts {
                store: self.store.clone(),
                committer,
                disclose: self.disclose.clone(),
                shutdown: shutdown.clone(),
                clock: self.clock.clone(),
                recorder: recorder.clone(),
                faults: self.faults.clone(),
            },
        ));
        // A change recorded before a stop but not fanned out is finished
        // before anything is served (exactly once: the marker goes with it).
        match crate::lifecycle::resume(&state).await {
            Ok(0) => {}
            Ok(n) => tracing::warn!(changes = n, "fan-out of changes recorded before the last stop finished"),
            Err(e) => {
                tracing::warn!(error = %e, "pending fan-out not finished; retried at the next change of each alert")
            }
        }
        let sweeper =
            tokio::spawn(sweep_expired(state.clone(), Duration::from_millis(self.config.delivery.expiry_sweep_ms)));
        let refusals = tokio::spawn(record_refusal_bursts(state.clone()));
        let crls = tokio::spawn(reload_crls(state.clone(), self.revocation.clone()));
        let hangups = tokio::spawn(self.hangups.serve(crate::hangup::Context {
            state: state.clone(),
            policy: self.policy.clone(),
            revocation: self.revocation.clone(),
            request: self.config.admin.reload_request_path(&self.config.data_dir),
            max_age: self.config.admin.reload_request_max_age,
        }));
        let pruner = self.config.audit.prune_every.map(|every| tokio::spawn(prune_on_schedule(state.clone(), every)));

        let (health, health_service) = tonic_health::server::health_reporter();
        health.set_serving::<ExchangeServer<ExchangeService>>().await;
        let witnessed_health = self.witnesses.is_some().then(|| {
            tokio::spawn(watch_witnessed(
                recorder.clone(),
                health.clone(),
                self.clock.clone(),
                (started, witness.max_age),
                shutdown.clone(),
            ))
        });
        let reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(isx_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1()
            .map_err(|e| StartError::Reflection(e.to_string()))?;
        // Admission reads every body within its call's limit first; these
        // are the same limits, for tonic's own decoder.
        let limits = &self.config.limits;
        let exchange = ExchangeServer::new(ExchangeService::new(state.clone()))
            .max_decoding_message_size(limits.max_publish_bytes());
        let audit = AuditServer::new(AuditService::new(state.clone()))
            .max_decoding_message_size(limits.max_request_bytes)
            .max_encoding_message_size(MAX_AUDIT_MESSAGE);
        let admin = AdminServer::new(AdminService::new(state.clone(), self.policy.clone()))
            .max_decoding_message_size(limits.max_request_bytes);

        let local = listener.local_addr().ok();
        let kill = CancellationToken::new();
        let (conn_tx, conn_rx) = mpsc::channel::<Result<TlsConn, io::Error>>(64);
        let known: Arc<BTreeSet<isx_core::NodeId>> = Arc::new(state.nodes.keys().cloned().collect());
        let accept_task = tokio::spawn(accept_loop(Acceptor {
            listener,
            revocation: self.revocation.clone(),
            known,
            conns: conn_tx,
            shutdown: shutdown.clone(),
            kill: kill.clone(),
            state: state.clone(),
        }));
        info!(listen = ?local, nodes = state.nodes.len(), "gateway serving");

        // Graceful drain on shutdown, bounded: connections still open after
        // DRAIN (a peer that stopped reading holds its stream) are aborted.
        let killer = {
            let (shutdown, kill) = (shutdown.clone(), kill.clone());
            tokio::spawn(async move {
                shutdown.cancelled().await;
                tokio::select! {
                    _ = kill.cancelled() => {}
                    _ = tokio::time::sleep(DRAIN) => {
                        warn!("connections still open {DRAIN:?} after shutdown: aborting them");
                        kill.cancel();
                    }
                }
            })
        };
        let result = tonic::transport::Server::builder()
            .max_concurrent_streams(limits.max_streams_per_connection)
            .http2_keepalive_interval(Some(limits.keepalive_interval))
            .http2_keepalive_timeout(Some(limits.keepalive_timeout))
            .http2_max_pending_accept_reset_streams(Some(limits.max_pending_resets))
            .http2_max_local_error_reset_streams(Some(limits.max_error_resets))
            .http2_max_header_list_size(MAX_HEADER_LIST)
            .layer(AdmissionLayer { state: state.clone() })
            .add_service(health_service)
            .add_service(reflection)
            .add_service(exchange)
            .add_service(audit)
            .add_service(admin)
            .serve_with_incoming_shutdown(ReceiverStream::new(conn_rx), shutdown.clone().cancelled_owned())
            .await;
        kill.cancel();
        let _ = killer.await;

        // Drain: no new connections, every subscription ended, then the last flush.
        shutdown.cancel();
        let _ = accept_task.await;
        state.tracker.close();
        state.tracker.wait().await;
        let _ = sweeper.await;
        let _ = refusals.await;
        if let Some(task) = pruner {
            let _ = task.await;
        }
        let _ = crls.await;
        let _ = hangups.await;
        // The stop is the run's last record, and the last checkpoint covers it.
        let version = self.policy.current().engine().version().to_owned();
        if let Err(e) = crate::last_run::update(self.store.db(), |run| {
            run.running = false;
            run.policy_version = version.clone();
        }) {
            warn!(error = %e, "the stop was not remembered for the next start");
        }
        let (outcome, detail) = match &result {
            Ok(()) => (Outcome::Ok, format!("gateway stopped gracefully: policy version {version}")),
            Err(e) => (Outcome::Error, format!("gateway stopped on an error: {e}")),
        };
        if let Err(e) = recorder.durable(vec![records::gateway_stop(&version, outcome, detail)]).await {
            warn!(error = %e, "the stop was not recorded");
        }
        let _ = checkpointer.await;
        if let Err(e) = recorder.fresh_checkpoint().await {
            warn!(error = %e, "no checkpoint over the stop record");
        }
        let _ = indexer.await;
        if let Some(task) = witnessed_health {
            let _ = task.await;
        }
        drop(state);
        drop(recorder);
        let _ = commit_task.await;
        if let Err(e) = self.store.db().flush_async().await {
            warn!(error = %e, "final flush failed");
        }
        info!("gateway stopped");
        result.map_err(StartError::from)
    }
}

impl Gateway {
    /// Keeps the policy version in force, compares this run with the last
    /// one, and makes the start's records durable (see `last_run`).
    async fn record_start(&self, recorder: &Recorder, listen: &str, now_ms: u64) -> Result<(), StartError> {
        let db = self.store.db();
        let rules = self.policy.current();
        let engine = rules.engine();
        crate::admin_policy::keep(db, engine, now_ms)?;
        let last = crate::last_run::load(db)?;
        let revoked = self.revocation.revoked();
        let now =
            crate::last_run::LastRun::of(&self.config.node_infos(), &self.config.redaction, engine.version(), &revoked);
        let policy_changes = match &last {
            Some(l) if l.policy_version != engine.version() => {
                crate::admin_policy::changes_since(db, &l.policy_version, engine)
            }
            _ => Some(vec![]),
        };
        let start = crate::last_run::Start { policy_changes, listen, release: env!("CARGO_PKG_VERSION") };
        let records = crate::last_run::start_records(last.as_ref(), &now, &start);
        crate::last_run::save(db, &now)?;
        recorder.durable(records).await.map_err(|e| StartError::Record(e.to_string()))?;
        Ok(())
    }
}

/// Watches the age of the newest witnessed checkpoint (or, before the
/// first, the time since start) until shutdown: above `witness.max_age`
/// the gateway's health (service "") turns NOT_SERVING, and back.
async fn watch_witnessed(
    recorder: Arc<Recorder>,
    health: tonic_health::server::HealthReporter,
    clock: Clock,
    (started, max_age): (u64, Duration),
    shutdown: CancellationToken,
) {
    let max_ms = max_age.as_millis() as u64;
    let mut stale = false;
    loop {
        let since = match recorder.witnessed() {
            Ok(Some((_, at))) => at,
            _ => started,
        };
        let age = clock().saturating_sub(since);
        if (age > max_ms) != stale {
            stale = !stale;
            let status = if stale {
                warn!(
                    age_s = age / 1000,
                    max_age_s = max_ms / 1000,
                    "the newest witnessed audit checkpoint is older than witness.max_age: health NOT_SERVING \
                     (sharing continues)"
                );
                tonic_health::ServingStatus::NotServing
            } else {
                info!(age_s = age / 1000, "a recent audit checkpoint is witnessed again: health SERVING");
                tonic_health::ServingStatus::Serving
            };
            health.set_service_status("", status).await;
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
    }
}

/// Re-reads the revocation lists every `[revocation] reload_every` until
/// shutdown; a read that changed what they revoke is recorded (via `"timer"`).
async fn reload_crls(state: Arc<State>, revocation: Arc<Revocation>) {
    let every = revocation.reload_every();
    loop {
        tokio::select! {
            _ = state.shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        // A failure is logged by `reload`; the lists in force stay.
        let _ = crate::hangup::reload_crls(&state, &revocation, "timer").await;
    }
}
