//! Group commit: many writers, one flush.
//!
//! A writer finishes its sled writes, then calls [`Committer::commit`] and
//! waits. One thread of the blocking pool takes every waiter queued so far,
//! flushes the database once, and wakes them all with the result. Writers that arrive
//! while a flush runs join the next one, so under load one flush covers many
//! publishes, and nothing is acknowledged before it is on disk.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::faults::Faults;

/// Why a commit failed. Every waiter of the failed flush gets the same error.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CommitError {
    /// sled's flush failed.
    #[error("flush failed: {0}")]
    Flush(Arc<sled::Error>),
    /// The committer has stopped (the gateway is shutting down).
    #[error("the committer has stopped")]
    Stopped,
    /// A fault switched on through [`crate::faults::Faults`].
    #[error("injected fault: {0}")]
    Injected(&'static str),
}

type Waiter = oneshot::Sender<Result<(), CommitError>>;

/// Handle to the group-commit task. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Committer {
    tx: mpsc::UnboundedSender<Waiter>,
}

/// Counters a benchmark or test can read.
#[derive(Debug, Default)]
pub struct CommitStats {
    /// Flushes performed.
    pub flushes: std::sync::atomic::AtomicU64,
    /// Commits served.
    pub commits: std::sync::atomic::AtomicU64,
}

impl Committer {
    /// Starts the committer for `db`. The task ends when every handle is dropped.
    ///
    /// sled's `flush` writes its log and calls `sync_file_range`, which
    /// survives a process crash but not a power loss on Linux (sled#1452).
    /// Each file in `fsync` is therefore `fsync`ed after every flush.
    pub fn start(
        db: sled::Db,
        fsync: Vec<std::fs::File>,
        stats: Arc<CommitStats>,
        faults: Arc<Faults>,
    ) -> (Self, JoinHandle<()>) {
        let (tx, mut rx) = mpsc::unbounded_channel::<Waiter>();
        // A thread of its own: it reacts to the first waiter and to the end
        // of each flush at once, instead of waiting for a runtime worker that
        // is busy with requests.
        let task = tokio::task::spawn_blocking(move || {
            while let Some(first) = rx.blocking_recv() {
                let mut batch = vec![first];
                while let Ok(w) = rx.try_recv() {
                    batch.push(w);
                }
                let fail = faults.flush_fails();
                let flushed = db.flush().and_then(|_| {
                    for f in &fsync {
                        f.sync_all()?;
                    }
                    Ok(())
                });
                let result = match flushed {
                    Ok(()) if fail => Err(CommitError::Injected("flush")),
                    Ok(()) => Ok(()),
                    Err(e) => Err(CommitError::Flush(Arc::new(e))),
                };
                use std::sync::atomic::Ordering::Relaxed;
                stats.flushes.fetch_add(1, Relaxed);
                stats.commits.fetch_add(batch.len() as u64, Relaxed);
                for waiter in batch {
                    let _ = waiter.send(result.clone());
                }
            }
        });
        (Self { tx }, task)
    }

    /// Waits until everything written before this call is flushed.
    pub async fn commit(&self) -> Result<(), CommitError> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(tx).map_err(|_| CommitError::Stopped)?;
        rx.await.map_err(|_| CommitError::Stopped)?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering::Relaxed;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_commits_share_flushes() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let stats = Arc::new(CommitStats::default());
        let (committer, task) = Committer::start(db.clone(), vec![], stats.clone(), Arc::default());
        let mut handles = Vec::new();
        for i in 0..200u32 {
            let (db, committer) = (db.clone(), committer.clone());
            handles.push(tokio::spawn(async move {
                db.insert(i.to_be_bytes(), &b"v"[..]).unwrap();
                committer.commit().await.unwrap();
            }));
        }
        for h in handles {
            h.await.unwrap();
        }
        assert_eq!(stats.commits.load(Relaxed), 200);
        assert!(stats.flushes.load(Relaxed) <= 200);
        drop(committer);
        task.await.unwrap();
        assert_eq!(db.len(), 200);
    }
}
