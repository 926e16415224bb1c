//! The gateway's side of the audit log: appending records (built in
//! `records`), making them durable with the group commit, indexing them for
//! search, and signing checkpoints.
//!
//! "No log, no share": every caller appends its records *before* it makes a
//! disclosure visible, then waits for the group commit that flushes the
//! records together with the state change. If the log cannot be written the
//! request fails with `UNAVAILABLE` and nothing is disclosed.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use isx_audit::AuditLog;
use isx_core::wire::{AuditRecord, Checkpoint};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::clock::Clock;
use crate::commit::Committer;
use crate::config::AuditConfig;
use crate::error::RequestError;
use crate::faults::Faults;

/// How often the background indexer looks for new audit records.
pub const INDEX_EVERY: Duration = Duration::from_millis(10);

/// Appends audit records and makes them durable.
pub struct Recorder {
    /// The log.
    log: Arc<AuditLog>,
    /// The gateway's group commit.
    committer: Committer,
    /// Record times.
    clock: Clock,
    /// Checkpoint cadence.
    config: AuditConfig,
    /// Wakes the checkpointer when enough records arrived.
    wake: Notify,
    /// The size of the latest signed checkpoint.
    signed: AtomicU64,
    /// Fault switches (inert without the `faults` feature).
    faults: Arc<Faults>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder").field("size", &self.log.size()).finish_non_exhaustive()
    }
}

impl Recorder {
    /// A recorder over `log`, sharing the gateway's group commit.
    pub fn new(log: Arc<AuditLog>, committer: Committer, clock: Clock, config: AuditConfig) -> Self {
        let signed = log.latest_checkpoint().ok().flatten().map(|(s, _)| s).unwrap_or(0);
        Self {
            log,
            committer,
            clock,
            config,
            wake: Notify::new(),
            signed: AtomicU64::new(signed),
            faults: Arc::default(),
        }
    }

    /// Shares the gateway's fault switches.
    pub fn with_faults(mut self, faults: Arc<Faults>) -> Self {
        self.faults = faults;
        self
    }

    /// The audit settings.
    pub fn config(&self) -> &AuditConfig {
        &self.config
    }

    /// The log.
    pub fn log(&self) -> &Arc<AuditLog> {
        &self.log
    }

    /// Appends records (not yet durable: the caller's group commit makes them so).
    pub fn append(&self, mut records: Vec<AuditRecord>) -> Result<Vec<u64>, RequestError> {
        if records.is_empty() {
            return Ok(vec![]);
        }
        // Free text is sealed before anything is written (isx_audit::text).
        for r in &mut records {
            isx_audit::text::seal(&self.log.keys().text, r);
        }
        // A record bigger than the bound is refused, never written: what the
        // gateway records is capped so that no valid request comes near it.
        if let Some(size) = records.iter().map(prost::Message::encoded_len).find(|n| *n > self.config.max_record_bytes)
        {
            return Err(RequestError::RecordTooLarge { size, limit: self.config.max_record_bytes });
        }
        if self.faults.audit_append_fails() {
            return Err(RequestError::Commit(crate::commit::CommitError::Injected("audit append")));
        }
        let seqs = self.log.append(records, (self.clock)()).map_err(RequestError::Audit)?;
        if self.log.size().saturating_sub(self.signed.load(Ordering::Acquire)) >= self.config.checkpoint_every_records {
            self.wake.notify_one();
        }
        Ok(seqs)
    }

    /// Appends records and waits until they are durable.
    pub async fn durable(&self, records: Vec<AuditRecord>) -> Result<Vec<u64>, RequestError> {
        let seqs = self.append(records)?;
        self.committer.commit().await?;
        Ok(seqs)
    }

    /// Makes everything appended so far durable, signs a checkpoint over it if
    /// the latest one is older, and returns the latest checkpoint.
    pub async fn fresh_checkpoint(&self) -> Result<Checkpoint, RequestError> {
        let size = self.log.size();
        self.committer.commit().await?;
        let latest = self.log.latest_checkpoint().map_err(RequestError::Audit)?;
        let (size, note) = match latest {
            Some((s, note)) if s >= size => (s, note),
            _ => {
                let note = self.log.sign_checkpoint(size).map_err(RequestError::Audit)?;
                self.committer.commit().await?;
                self.signed.fetch_max(size, Ordering::AcqRel);
                (size, note)
            }
        };
        Ok(Checkpoint {
            note,
            tree_size: size,
            root_hash: self.log.root(size).map_err(RequestError::Audit)?.to_vec(),
            origin: self.log.keys().origin.clone(),
            verifier_key: self.log.keys().verifier_key.clone(),
        })
    }

    /// Indexes new records for search (see
    /// [`AuditLog::index_pending`]) every [`INDEX_EVERY`] while records
    /// arrive, off the acknowledgment path, until `shutdown`. Searches index
    /// whatever is left first, so they never miss a record.
    ///
    /// It runs on a thread of its own. Small, frequent batches keep it from
    /// taking the cores in bursts, which delayed publishes and deliveries
    /// (BENCHMARKS.md). It keeps the normal priority: a lowered one (nice
    /// 10) did not lower the latency in the benchmark.
    pub async fn indexer(self: Arc<Self>, shutdown: CancellationToken) {
        let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
        // The thread holds the recorder only while it indexes: it ends when
        // the recorder is gone even if `shutdown` never comes (a runtime
        // dropped mid-run), instead of keeping the committer alive.
        let recorder = Arc::downgrade(&self);
        let spawned = std::thread::Builder::new().name("isx-audit-index".into()).spawn(move || {
            while !shutdown.is_cancelled() {
                std::thread::sleep(INDEX_EVERY);
                let Some(recorder) = recorder.upgrade() else { break };
                if recorder.log.unindexed().unwrap_or(1) == 0 {
                    continue;
                }
                if let Err(e) = recorder.log.index_pending() {
                    warn!(error = %e, "audit records not indexed for search (the next search retries)");
                }
            }
            let _ = done_tx.send(());
        });
        match spawned {
            Ok(_) => {
                let _ = done_rx.await;
            }
            Err(e) => warn!(error = %e, "no audit indexer thread: searches index new records themselves"),
        }
    }

    /// Signs checkpoints every `checkpoint_every_ms`, or sooner when
    /// `checkpoint_every_records` records arrived, until `shutdown`.
    pub async fn checkpointer(self: Arc<Self>, shutdown: CancellationToken) {
        let every = Duration::from_millis(self.config.checkpoint_every_ms);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(every) => {}
                _ = self.wake.notified() => {}
            }
            if self.log.size() > self.signed.load(Ordering::Acquire)
                && let Err(e) = self.fresh_checkpoint().await
            {
                warn!(error = %e, "checkpoint not signed");
            }
        }
        // A last checkpoint over everything flushed at shutdown.
        if let Ok(cp) = self.fresh_checkpoint().await {
            info!(size = cp.tree_size, "audit checkpoint signed at shutdown");
        }
    }
}
