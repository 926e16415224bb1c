//! Per-node outboxes: what waits for each node, which of it may be read, and
//! how much of it there is.
//!
//! - The rows: `node ‖ 0 ‖ seq` → a sealed [`OutboxEntry`]. `seq` comes from
//!   sled's persistent id generator, so it grows across restarts and is the
//!   delivery cursor.
//! - [`Visibility`]: sequence numbers are taken by writers that have not yet
//!   committed. A subscription reads only up to the *watermark*, the highest
//!   sequence number below which every row is committed or taken back, so
//!   nothing uncommitted, refused or withdrawn is ever streamed.
//! - [`Queues`]: each node's count of undelivered events, kept here and only
//!   here, in step with every write and removal.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use isx_core::NodeId;
use isx_core::wire::{AccessRequest, AlertChange, Delivery, subscribe_response};
use prost::Message;
use tokio::sync::watch;

/// One event queued for one node.
#[derive(Clone, PartialEq, Message)]
pub struct OutboxEntry {
    /// What the node is told.
    #[prost(oneof = "Event", tags = "1, 4, 5, 6")]
    pub event: Option<Event>,
    /// When the entry stops being deliverable, Unix milliseconds.
    #[prost(uint64, tag = "2")]
    pub expires_ms: u64,
    /// What the disclosure record of a delivery needs that a reduced view may lack.
    #[prost(message, optional, tag = "3")]
    pub audit: Option<AuditFacts>,
}

/// The event of an [`OutboxEntry`].
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Event {
    /// The recipient's view of an alert and its level.
    #[prost(message, tag = "1")]
    Delivery(Delivery),
    /// To a holder: an access request to decide.
    #[prost(message, tag = "4")]
    AccessRequest(AccessRequest),
    /// To a requester: the outcome of its access request.
    #[prost(message, tag = "5")]
    AccessOutcome(AccessRequest),
    /// To a holder of a copy: a change to the alert (amended, withdrawn,
    /// restricted, lifted, expired), to apply and confirm.
    #[prost(message, tag = "6")]
    Change(AlertChange),
}

impl Event {
    /// The alert the event concerns.
    pub fn alert_id(&self) -> &str {
        match self {
            Self::Delivery(d) => d.alert.as_ref().map(|a| a.alert_id.as_str()).unwrap_or_default(),
            Self::AccessRequest(r) | Self::AccessOutcome(r) => &r.alert_id,
            Self::Change(c) => &c.alert_id,
        }
    }
}

impl From<Event> for subscribe_response::Event {
    fn from(e: Event) -> Self {
        match e {
            Event::Delivery(d) => Self::Delivery(d),
            Event::AccessRequest(r) => Self::AccessRequest(r),
            Event::AccessOutcome(r) => Self::AccessOutcome(r),
            Event::Change(c) => Self::Change(c),
        }
    }
}

/// Facts of the original alert kept with each delivery for its disclosure
/// record: a `redacted` or `hit_only` view lacks them.
#[derive(Clone, PartialEq, Message)]
pub struct AuditFacts {
    /// The alert's purpose.
    #[prost(string, tag = "1")]
    pub purpose: String,
    /// The alert's legal basis.
    #[prost(string, tag = "2")]
    pub legal_basis: String,
    /// HMAC pseudonyms of the subjects' identifiers.
    #[prost(string, repeated, tag = "3")]
    pub subject_pseudonyms: Vec<String>,
}

/// An event to queue for a node.
#[derive(Debug, Clone, PartialEq)]
pub struct Outgoing {
    /// The recipient.
    pub node: NodeId,
    /// What it is told.
    pub entry: OutboxEntry,
}

/// Where the store queued an event: its recipient and sequence number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queued {
    /// The recipient.
    pub node: NodeId,
    /// The sequence number (the delivery cursor) the store assigned.
    pub seq: u64,
}

/// Which outbox rows a subscription may read.
#[derive(Debug)]
pub struct Visibility {
    /// Sequence numbers taken and not yet settled, and the highest taken.
    state: std::sync::Mutex<Taken>,
    /// The watermark; every settle notifies (see [`Visibility::subscribe`]).
    watermark: watch::Sender<u64>,
}

#[derive(Debug, Default)]
struct Taken {
    /// Taken by writers that have not committed or taken them back.
    in_flight: BTreeSet<u64>,
    /// The highest sequence number taken since start; `None` before the first.
    highest: Option<u64>,
}

impl Taken {
    fn watermark(&self) -> u64 {
        match (self.in_flight.first(), self.highest) {
            (Some(lowest), _) => lowest - 1,
            (None, Some(highest)) => highest,
            // Nothing taken since start: every row on disk was committed before.
            (None, None) => u64::MAX,
        }
    }
}

impl Default for Visibility {
    fn default() -> Self {
        Self { state: Default::default(), watermark: watch::channel(u64::MAX).0 }
    }
}

impl Visibility {
    fn lock(&self) -> std::sync::MutexGuard<'_, Taken> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records `seq` as taken and not yet settled. Call in sequence order
    /// (under the store's ordering lock).
    pub(crate) fn take(&self, seq: u64) {
        let mut t = self.lock();
        t.in_flight.insert(seq);
        t.highest = Some(t.highest.map_or(seq, |h| h.max(seq)));
    }

    /// Marks `seqs` committed or taken back, and wakes every subscription.
    pub(crate) fn settle(&self, seqs: &[u64]) {
        let mark = {
            let mut t = self.lock();
            for s in seqs {
                t.in_flight.remove(s);
            }
            t.watermark()
        };
        self.watermark.send_modify(|w| *w = mark);
    }

    /// The highest sequence number a subscription may read.
    pub fn watermark(&self) -> u64 {
        self.lock().watermark()
    }

    /// Changes whenever writes settle.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.watermark.subscribe()
    }
}

/// Sequence numbers a writer took, to settle once its writes are committed
/// or taken back.
///
/// Dropped unsettled (a handler cancelled between its writes and its
/// commit), it flushes the database on the blocking pool, then settles: the
/// rows were written and will be durable, so they may then be read, and the
/// watermark never stays behind.
#[must_use = "settle once committed, or take the writes back"]
#[derive(Debug)]
pub struct InFlight {
    /// The visibility the numbers were taken from.
    visibility: Arc<Visibility>,
    /// The database, for the flush of an unsettled drop.
    db: sled::Db,
    /// Where each event went.
    queued: Vec<Queued>,
}

impl InFlight {
    pub(crate) fn new(visibility: Arc<Visibility>, db: sled::Db, queued: Vec<Queued>) -> Self {
        Self { visibility, db, queued }
    }

    /// Where each event was queued.
    pub fn queued(&self) -> &[Queued] {
        &self.queued
    }

    /// Makes the rows readable: call once they are committed, or once they
    /// were taken back.
    pub fn settle(mut self) {
        let seqs: Vec<u64> = self.queued.drain(..).map(|q| q.seq).collect();
        self.visibility.settle(&seqs);
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.queued.is_empty() {
            return;
        }
        let seqs: Vec<u64> = self.queued.drain(..).map(|q| q.seq).collect();
        let (visibility, db) = (self.visibility.clone(), self.db.clone());
        let settle = move || {
            let _ = db.flush();
            visibility.settle(&seqs);
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn_blocking(settle);
            }
            Err(_) => settle(),
        }
    }
}

/// Each node's count of undelivered events, against `limits.max_queue_per_node`.
#[derive(Debug)]
pub struct Queues {
    /// The limit.
    limit: u64,
    /// Per registered node.
    counts: BTreeMap<NodeId, AtomicU64>,
}

impl Queues {
    /// Counts start from what each node's outbox holds.
    pub(crate) fn new(limit: u64, counts: BTreeMap<NodeId, u64>) -> Self {
        Self { limit, counts: counts.into_iter().map(|(n, c)| (n, AtomicU64::new(c))).collect() }
    }

    /// The limit.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// How many events wait for `node`.
    pub fn queued(&self, node: &str) -> u64 {
        self.counts.get(node).map(|c| c.load(Ordering::Acquire)).unwrap_or(0)
    }

    /// The first of `nodes` whose queue is full, with its count.
    pub(crate) fn full<'a>(&self, mut nodes: impl Iterator<Item = &'a NodeId>) -> Option<(&'a NodeId, u64)> {
        nodes.find_map(|n| {
            let q = self.queued(n.as_str());
            (q >= self.limit).then_some((n, q))
        })
    }

    pub(crate) fn add(&self, node: &str, n: u64) {
        if let Some(c) = self.counts.get(node) {
            c.fetch_add(n, Ordering::AcqRel);
        }
    }

    pub(crate) fn sub(&self, node: &str, n: u64) {
        if let Some(c) = self.counts.get(node) {
            let _ = c.fetch_update(Ordering::AcqRel, Ordering::Acquire, |q| Some(q.saturating_sub(n)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watermark_stops_below_the_lowest_unsettled_number() {
        let v = Visibility::default();
        assert_eq!(v.watermark(), u64::MAX, "before anything is taken, everything on disk is readable");
        v.take(5);
        v.take(6);
        v.take(7);
        assert_eq!(v.watermark(), 4);
        v.settle(&[6]);
        assert_eq!(v.watermark(), 4, "6 is settled but 5 is not");
        v.settle(&[5]);
        assert_eq!(v.watermark(), 6);
        v.settle(&[7]);
        assert_eq!(v.watermark(), 7);
    }

    #[test]
    fn every_settle_wakes_subscriptions() {
        let v = Visibility::default();
        let mut rx = v.subscribe();
        rx.borrow_and_update();
        v.take(3);
        v.take(4);
        v.settle(&[4]);
        assert!(rx.has_changed().unwrap(), "a settle that does not move the watermark still wakes readers");
        assert_eq!(*rx.borrow_and_update(), 2);
    }
}
