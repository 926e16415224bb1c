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
use tracing::{debug, info, warn};

use crate::clock::Clock;
use crate::commit::Committer;
use crate::config::AuditConfig;
use crate::error::RequestError;
use crate::faults::Faults;
use crate::witnessing::Witnesses;

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
    /// The witnesses, with a policy (`witness.policy`).
    witnesses: Option<Arc<Witnesses>>,
    /// The size of the last checkpoint offered to the witnesses.
    offered: AtomicU64,
    /// Held while a checkpoint is offered, so that rounds do not overlap.
    round: tokio::sync::Mutex<()>,
    /// Witnessed checkpoints are offered again after this long without a new one.
    refresh_ms: u64,
    /// The last round did not reach the quorum: audit reads then do not
    /// wait for a round of their own (the checkpointer keeps offering).
    lagging: std::sync::atomic::AtomicBool,
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
            witnesses: None,
            offered: AtomicU64::new(0),
            round: tokio::sync::Mutex::new(()),
            refresh_ms: u64::MAX,
            lagging: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Offers checkpoints to `witnesses` and publishes only those their
    /// quorum cosigned; a witnessed checkpoint is offered again every
    /// `refresh`, so that its age tells whether the witnesses still agree.
    pub fn with_witnesses(mut self, witnesses: Arc<Witnesses>, refresh: Duration) -> Self {
        self.witnesses = Some(witnesses);
        self.refresh_ms = refresh.as_millis().max(1) as u64;
        self
    }

    /// The newest witnessed checkpoint's size and time (ms), if any.
    pub fn witnessed(&self) -> Result<Option<(u64, u64)>, RequestError> {
        Ok(self.log.latest_witnessed().map_err(RequestError::Audit)?.map(|(size, _, at)| (size, at)))
    }

    /// Offers the checkpoint of `size` (`note`) to the witnesses unless one
    /// at least as large was witnessed within the refresh interval, and
    /// stores it once the quorum cosigned.
    async fn offer(&self, size: u64, note: &str) -> Result<(), RequestError> {
        let Some(witnesses) = &self.witnesses else { return Ok(()) };
        let _round = self.round.lock().await;
        let now = (self.clock)();
        if let Some((witnessed, at)) = self.witnessed()?
            && witnessed >= size
            && now.saturating_sub(at) < self.refresh_ms
        {
            return Ok(());
        }
        self.offered.fetch_max(size, Ordering::AcqRel);
        let round = witnesses.round(&self.log, size, note).await;
        if round.quorum {
            self.log.store_witnessed(size, &round.note, (self.clock)()).map_err(RequestError::Audit)?;
            self.committer.commit().await?;
            if self.lagging.swap(false, Ordering::AcqRel) {
                info!(size, cosigners = ?round.cosigners, "audit checkpoints are witnessed again");
            }
            debug!(size, cosigners = ?round.cosigners, "audit checkpoint witnessed");
        } else if !self.lagging.swap(true, Ordering::AcqRel) {
            warn!(
                size,
                cosigners = ?round.cosigners,
                quorum = %witnesses.policy().describe_quorum(),
                "audit checkpoint not witnessed: too few cosignatures (sharing continues; checkpoints lag)"
            );
        }
        Ok(())
    }

    /// The start-up check against the witnesses (see [`Witnesses::startup`]).
    pub async fn check_witnesses(&self, require_answer: bool) -> Result<(), crate::witnessing::WitnessError> {
        let Some(witnesses) = &self.witnesses else { return Ok(()) };
        let size = self.log.size();
        let note = match self.log.latest_checkpoint() {
            Ok(Some((s, note))) if s == size => note,
            _ => match self.log.sign_checkpoint(size) {
                Ok(note) => {
                    self.signed.fetch_max(size, Ordering::AcqRel);
                    note
                }
                Err(e) => {
                    warn!(error = %e, "no checkpoint to offer the witnesses at start");
                    return Ok(());
                }
            },
        };
        let _round = self.round.lock().await;
        self.offered.fetch_max(size, Ordering::AcqRel);
        let round = witnesses.startup(&self.log, size, &note, require_answer).await?;
        if round.quorum {
            let stored = self.log.store_witnessed(size, &round.note, (self.clock)()).map_err(RequestError::Audit);
            if let Err(e) = match stored {
                Ok(()) => self.committer.commit().await.map_err(RequestError::from),
                Err(e) => Err(e),
            } {
                warn!(error = %e, "the witnessed start-up checkpoint was not stored");
            }
        }
        Ok(())
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
    /// the latest one is older, and returns the checkpoint to publish: with
    /// a witness policy, the newest one the quorum cosigned (a checkpoint
    /// not yet offered is offered first, bounded by `witness.timeout`).
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
        let checkpoint = |note: String, size: u64| -> Result<Checkpoint, RequestError> {
            Ok(Checkpoint {
                note,
                tree_size: size,
                root_hash: self.log.root(size).map_err(RequestError::Audit)?.to_vec(),
                origin: self.log.keys().origin.clone(),
                verifier_key: self.log.keys().verifier_key.clone(),
                signed_size: size,
                ..Default::default()
            })
        };
        let Some(witnesses) = &self.witnesses else { return checkpoint(note, size) };
        if self.lagging.load(Ordering::Acquire) {
            // The witnesses are away: the checkpointer keeps offering; an
            // audit read is not held up by a round of its own.
        } else if self.offered.load(Ordering::Acquire) < size {
            self.offer(size, &note).await?;
        } else {
            // Offered already: wait for a round still under way.
            drop(self.round.lock().await);
        }
        let Some((witnessed, cosigned, at)) = self.log.latest_witnessed().map_err(RequestError::Audit)? else {
            return checkpoint(note, size);
        };
        let cosigners = signed_note::Note::from_bytes(cosigned.as_bytes())
            .ok()
            .and_then(|n| witnesses.policy().cosigners(&n).ok())
            .unwrap_or_default();
        let mut published = checkpoint(cosigned, witnessed)?;
        published.cosigners = cosigners.into_iter().map(|(name, _)| name).collect();
        published.witnessed = true;
        published.witnessed_at_ms = at;
        published.signed_size = size;
        Ok(published)
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
    /// `checkpoint_every_records` records arrived, until `shutdown`; with
    /// witnesses, offers each one (again) until the quorum cosigned it.
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
            if self.witnesses.is_some()
                && let Ok(Some((size, note))) = self.log.latest_checkpoint()
                && let Err(e) = self.offer(size, &note).await
            {
                warn!(error = %e, "checkpoint not offered to the witnesses");
            }
        }
        // A last checkpoint over everything flushed at shutdown.
        if let Ok(cp) = self.fresh_checkpoint().await {
            info!(size = cp.tree_size, "audit checkpoint signed at shutdown");
        }
    }
}
