//! Storage faults that tests switch on, to check that a failed write or
//! flush discloses nothing.
//!
//! Without the `faults` feature this is an empty type whose checks are
//! constant `false`: the production gateway carries no fault switches. The
//! testkit forwards the feature, and only the whole-system tests turn it on.

#[cfg(feature = "faults")]
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};

/// The fault switches of one gateway. Inert unless a test sets one.
#[derive(Debug, Default)]
pub struct Faults {
    /// Every flush fails.
    #[cfg(feature = "faults")]
    fail_flush: AtomicBool,
    /// Every audit append fails.
    #[cfg(feature = "faults")]
    fail_audit_append: AtomicBool,
    /// A publish's store writes fail after its outbox rows are written.
    #[cfg(feature = "faults")]
    fail_store_write: AtomicBool,
    /// The next publish stops after its store writes, before its commit,
    /// until released, then fails as a failed write does.
    #[cfg(feature = "faults")]
    hold: std::sync::Mutex<Option<HoldGate>>,
    /// The nodes whose subscriptions read their outbox while a publish was held.
    #[cfg(feature = "faults")]
    reads_while_held: std::sync::Mutex<Vec<String>>,
    /// Wakes [`Faults::read_while_held`].
    #[cfg(feature = "faults")]
    read: tokio::sync::Notify,
    /// True while a publish is held.
    #[cfg(feature = "faults")]
    holding: AtomicBool,
    /// A lifecycle change stops after its record and marker are durable,
    /// before its fan-out (what a crash there leaves).
    #[cfg(feature = "faults")]
    fail_before_fanout: AtomicBool,
}

/// The two ends of a held publish, as [`Faults::hold_next_publish`] hands them out.
#[cfg(feature = "faults")]
#[derive(Debug)]
struct HoldGate {
    /// Told once the publish is held.
    held: tokio::sync::oneshot::Sender<()>,
    /// The publish waits for this before it fails.
    release: tokio::sync::oneshot::Receiver<()>,
}

/// The test's side of a held publish.
#[cfg(feature = "faults")]
#[derive(Debug)]
pub struct Hold {
    /// Resolves once the publish's rows are written and it waits.
    pub held: tokio::sync::oneshot::Receiver<()>,
    /// Send (or drop) to let the held publish go on and fail.
    pub release: tokio::sync::oneshot::Sender<()>,
}

#[cfg(feature = "faults")]
impl Faults {
    /// Switches flush failures on or off.
    pub fn set_fail_flush(&self, on: bool) {
        self.fail_flush.store(on, SeqCst);
    }

    /// Switches audit-append failures on or off.
    pub fn set_fail_audit_append(&self, on: bool) {
        self.fail_audit_append.store(on, SeqCst);
    }

    /// Switches on or off a lifecycle change's stop between its durable
    /// record (with its pending fan-out marker) and its fan-out: the call
    /// fails UNAVAILABLE and nothing is queued until the marker is applied
    /// (at the next start, or the alert's next change).
    pub fn set_fail_before_fanout(&self, on: bool) {
        self.fail_before_fanout.store(on, SeqCst);
    }

    /// Switches failures of a publish's store writes on or off.
    pub fn set_fail_store_write(&self, on: bool) {
        self.fail_store_write.store(on, SeqCst);
    }

    /// The next publish writes its rows, then waits (before its commit)
    /// until the returned [`Hold`] releases it, then fails as a failed
    /// store write does: its rows are taken back.
    pub fn hold_next_publish(&self) -> Hold {
        let (held_tx, held_rx) = tokio::sync::oneshot::channel();
        let (release_tx, release_rx) = tokio::sync::oneshot::channel();
        *self.hold.lock().unwrap_or_else(|e| e.into_inner()) = Some(HoldGate { held: held_tx, release: release_rx });
        Hold { held: held_rx, release: release_tx }
    }

    /// Waits until `node`'s subscription has read its outbox while a
    /// publish was held.
    pub async fn read_while_held(&self, node: &str) {
        loop {
            let read = self.read.notified();
            if self.reads_while_held.lock().unwrap_or_else(|e| e.into_inner()).iter().any(|n| n == node) {
                return;
            }
            read.await;
        }
    }
}

impl Faults {
    /// True if flushes are to fail.
    pub(crate) fn flush_fails(&self) -> bool {
        #[cfg(feature = "faults")]
        return self.fail_flush.load(SeqCst);
        #[cfg(not(feature = "faults"))]
        false
    }

    /// True if audit appends are to fail.
    pub(crate) fn audit_append_fails(&self) -> bool {
        #[cfg(feature = "faults")]
        return self.fail_audit_append.load(SeqCst);
        #[cfg(not(feature = "faults"))]
        false
    }

    /// True if a lifecycle change is to stop before its fan-out.
    pub(crate) fn fanout_fails(&self) -> bool {
        #[cfg(feature = "faults")]
        return self.fail_before_fanout.load(SeqCst);
        #[cfg(not(feature = "faults"))]
        false
    }

    /// True if a publish's store writes are to fail after its outbox rows.
    pub(crate) fn store_write_fails(&self) -> bool {
        #[cfg(feature = "faults")]
        return self.fail_store_write.load(SeqCst);
        #[cfg(not(feature = "faults"))]
        false
    }

    /// Called by a publish after its writes and before its commit: if a hold
    /// is armed, waits until released and returns true (the publish then
    /// fails as a failed write does).
    pub(crate) async fn held_publish_fails(&self) -> bool {
        #[cfg(feature = "faults")]
        {
            let gate = self.hold.lock().unwrap_or_else(|e| e.into_inner()).take();
            if let Some(gate) = gate {
                self.holding.store(true, SeqCst);
                let _ = gate.held.send(());
                let _ = gate.release.await;
                self.holding.store(false, SeqCst);
                return true;
            }
        }
        false
    }

    /// Called by every subscription read of `node`'s outbox.
    pub(crate) fn outbox_read(&self, node: &str) {
        #[cfg(feature = "faults")]
        if self.holding.load(SeqCst) {
            self.reads_while_held.lock().unwrap_or_else(|e| e.into_inner()).push(node.to_owned());
            self.read.notify_waiters();
        }
        #[cfg(not(feature = "faults"))]
        let _ = node;
    }
}
