//! The gateway's durable state in sled: published alerts, per-node
//! outboxes, expiry, the lookup index, hit flags and access requests.
//!
//! # Layout
//! - [`outbox`]: outbox entries, the visibility watermark that keeps
//!   subscriptions from reading uncommitted rows, and the queue counts.
//! - [`lookup`]: the hit/no-hit index (pseudonyms only) and hit flags.
//! - [`requests`]: access requests.
//! - [`keys`]: the key layouts of every tree.
//! - [`error`]: why a store operation failed.
//!
//! # Trees
//! - `alerts`: `alert_id` → [`StoredAlert`] (sealed): the alert as
//!   published, its content digest and the receipt, kept until `expires_at`
//!   for idempotency and onward-relay checks.
//! - `outbox`: `node ‖ 0x00 ‖ seq` → [`OutboxEntry`] (sealed).
//! - `expiry`: `expires_at_ms ‖ alert_id` → [`ExpiryRow`]: the outbox and
//!   lookup keys to drop when the alert expires.
//! - `lookup` and `hits`: see [`lookup`]; `access`: see [`requests`].
//!
//! Every value that carries alert content or free text is sealed with the
//! gateway's store key ([`isx_store::SealedDb`]); keys and the other trees
//! hold only ids, pseudonyms and times.
//!
//! # Writing
//! A publish writes its outbox entries, its lookup rows, its expiry row and,
//! last, the alert ([`Store::publish`]), as plain inserts under the ordering
//! lock; the caller then waits for a group commit and settles the
//! [`InFlight`] sequence numbers, and only then may a subscription read the
//! rows. Access-request changes, which are rare, are sled transactions.

pub mod error;
pub(crate) mod keys;
pub mod lifecycle;
pub mod lookup;
pub mod outbox;
pub mod requests;

use std::collections::BTreeMap;
use std::sync::Arc;

use isx_core::NodeId;
use isx_core::wire::{AccessRequest, AccessState, Alert, Receipt};
use prost::Message;
use sled::Transactional;
use sled::transaction::ConflictableTransactionError;

pub use error::StoreError;
use error::finish;
use keys::{due_key, expiry_key, hit_key, lookup_key, node_key, node_of, outbox_key, request_key, seq_of};
pub use lifecycle::{AlertPart, Applied, PendingChange, PendingEvent, StatusHead};
pub use lookup::{HitRow, IndexRow, LookupIndex, Match};
pub use outbox::{AuditFacts, Event, InFlight, OutboxEntry, Outgoing, Queued, Queues, Visibility};
pub use requests::Requests;
use requests::deadline_ms;

use crate::faults::Faults;

/// A published alert as the gateway keeps it.
#[derive(Clone, PartialEq, Message)]
pub struct StoredAlert {
    /// The alert as published, with `hops` set by the gateway.
    #[prost(message, optional, tag = "1")]
    pub alert: Option<Alert>,
    /// SHA-256 of the alert as the publisher sent it.
    #[prost(bytes = "vec", tag = "2")]
    pub digest: Vec<u8>,
    /// The receipt given to the publisher, returned again for a duplicate.
    #[prost(message, optional, tag = "3")]
    pub receipt: Option<Receipt>,
    /// Organisations the origin allowed onward copies to after publishing
    /// (`Exchange.AllowOnward`), besides `labels.onward`.
    #[prost(string, repeated, tag = "4")]
    pub onward_allowed: Vec<String>,
    /// Nodes that received the alert through a granted access request.
    #[prost(string, repeated, tag = "5")]
    pub granted_to: Vec<String>,
    /// The alert's lifecycle state (`isx.v1.AlertState`); 0 (unspecified)
    /// is read as active, for rows written before the lifecycle existed.
    #[prost(enumeration = "isx_core::wire::AlertState", tag = "6")]
    pub state: i32,
}

impl StoredAlert {
    /// Every node that holds a copy of the alert: its origin, every
    /// recipient of a delivery (not denied), and every node granted access.
    pub fn holders(&self) -> std::collections::BTreeSet<String> {
        let mut holders: std::collections::BTreeSet<String> = self.granted_to.iter().cloned().collect();
        if let Some(a) = &self.alert {
            holders.insert(a.origin.clone());
        }
        if let Some(r) = &self.receipt {
            holders.extend(
                r.recipients
                    .iter()
                    .filter(|d| {
                        d.level() != isx_core::wire::DisclosureLevel::Denied
                            && !matches!(
                                d.outcome(),
                                isx_core::wire::RecipientOutcome::QueueFull
                                    | isx_core::wire::RecipientOutcome::NoSubscribeRole
                            )
                    })
                    .map(|d| d.node.clone()),
            );
        }
        holders
    }

    /// True when lookups must not show the alert, nor access requests reach
    /// it: it is restricted (LED Art. 16(3)) or withdrawn.
    pub fn hidden_from_lookup(&self) -> bool {
        matches!(self.state(), isx_core::wire::AlertState::Restricted | isx_core::wire::AlertState::Withdrawn)
    }

    /// Organisations the origin allows onward copies to.
    pub fn onward(&self) -> std::collections::BTreeSet<String> {
        let labelled =
            self.alert.as_ref().and_then(|a| a.labels.as_ref()).map(|l| l.onward.clone()).unwrap_or_default();
        labelled.into_iter().chain(self.onward_allowed.iter().cloned()).collect()
    }
}

/// The keys that expire with one alert.
#[derive(Clone, PartialEq, Message)]
pub struct ExpiryRow {
    /// Keys in the `outbox` tree.
    #[prost(bytes = "vec", repeated, tag = "1")]
    pub outbox_keys: Vec<Vec<u8>>,
    /// Keys in the `lookup` tree.
    #[prost(bytes = "vec", repeated, tag = "2")]
    pub lookup_keys: Vec<Vec<u8>>,
}

/// Everything one publish writes.
#[derive(Debug, Clone, PartialEq)]
pub struct PublishWrite {
    /// The alert, its digest and receipt.
    pub stored: StoredAlert,
    /// One delivery per recipient that gets one.
    pub outgoing: Vec<Outgoing>,
    /// When the alert expires, Unix milliseconds.
    pub expires_ms: u64,
    /// The alert's rows in the lookup index.
    pub index: Vec<IndexRow>,
}

impl PublishWrite {
    /// The alert's id.
    pub fn alert_id(&self) -> &str {
        self.stored.alert.as_ref().map(|a| a.alert_id.as_str()).unwrap_or_default()
    }
}

/// The result of [`Store::publish`].
#[derive(Debug)]
pub enum PublishOutcome {
    /// The alert was new; its rows are written and wait for a commit.
    Stored(InFlight),
    /// The same `alert_id` was published before with the same content.
    Duplicate(Box<StoredAlert>),
    /// The same `alert_id` was published before with different content.
    Conflict,
}

/// What an expiry sweep removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expired {
    /// The alert that expired.
    pub alert_id: String,
    /// How many undelivered copies were dropped.
    pub undelivered: usize,
    /// How many lookup index rows and hit flags were dropped.
    pub index_rows: usize,
}

/// Handle to the gateway's sled trees. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    /// The sealed database.
    sealed: isx_store::SealedDb,
    /// Published alerts.
    alerts: isx_store::SealedTree,
    /// Per-node outboxes.
    outbox: isx_store::SealedTree,
    /// Expiry rows.
    expiry: sled::Tree,
    /// The lookup index and hit flags.
    index: LookupIndex,
    /// Access requests.
    requests: Requests,
    /// Lifecycle status heads and copy rows (`lifecycle`).
    status: isx_store::SealedTree,
    /// Deliveries held while their alert is restricted.
    held: isx_store::SealedTree,
    /// Staged changes awaiting fan-out.
    fanout: isx_store::SealedTree,
    /// Forward links: `alert_id ‖ 0 ‖ forward_id`.
    forwards: sled::Tree,
    /// Which outbox rows subscriptions may read.
    visibility: Arc<Visibility>,
    /// Each node's count of undelivered events.
    queues: Arc<Queues>,
    /// Held while outbox sequence numbers are taken and their rows written,
    /// and while a publish checks for a duplicate and writes its alert row.
    order: Arc<std::sync::Mutex<()>>,
    /// Fault switches (inert without the `faults` feature).
    faults: Arc<Faults>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

/// A row to write: key and (sealed) value.
type Row = (Vec<u8>, Vec<u8>);

/// The trees whose values are sealed.
const SEALED_TREES: [&str; 6] = ["alerts", "outbox", "access", "status", "held", "fanout"];

impl Store {
    /// Opens (or creates) the store in `dir`, sealed under the key at
    /// `key_file` (created with a new store if missing). Queue counts start
    /// from what each of `nodes` has waiting; `max_queue` is
    /// `limits.max_queue_per_node`.
    pub fn open(
        dir: &std::path::Path,
        key_file: &std::path::Path,
        nodes: &[NodeId],
        max_queue: u64,
    ) -> Result<Self, StoreError> {
        let sealed = isx_store::SealedDb::open(dir, key_file, isx_store::GATEWAY_CACHE_BYTES, &SEALED_TREES)?;
        let db = sealed.db();
        let index = LookupIndex { lookup: db.open_tree("lookup")?, hits: db.open_tree("hits")? };
        let outbox = sealed.sealed("outbox")?;
        let counts = nodes
            .iter()
            .map(|n| {
                let mut prefix = n.as_str().as_bytes().to_vec();
                prefix.push(0);
                (n.clone(), outbox.raw().scan_prefix(prefix).count() as u64)
            })
            .collect::<BTreeMap<_, _>>();
        Ok(Self {
            alerts: sealed.sealed("alerts")?,
            expiry: db.open_tree("expiry")?,
            requests: Requests { tree: sealed.sealed("access")? },
            status: sealed.sealed("status")?,
            held: sealed.sealed("held")?,
            fanout: sealed.sealed("fanout")?,
            forwards: db.open_tree("forwards")?,
            index,
            outbox,
            visibility: Arc::default(),
            queues: Arc::new(Queues::new(max_queue, counts)),
            order: Default::default(),
            faults: Default::default(),
            sealed,
        })
    }

    /// The store with `faults` as its fault switches.
    pub fn with_faults(mut self, faults: Arc<Faults>) -> Self {
        self.faults = faults;
        self
    }

    /// The underlying database, for the group committer.
    pub fn db(&self) -> &sled::Db {
        self.sealed.db()
    }

    /// The lookup index and hit flags.
    pub fn index(&self) -> &LookupIndex {
        &self.index
    }

    /// Access requests.
    pub fn requests(&self) -> &Requests {
        &self.requests
    }

    /// Each node's count of undelivered events.
    pub fn queues(&self) -> &Queues {
        &self.queues
    }

    /// Which outbox rows subscriptions may read.
    pub fn visibility(&self) -> &Visibility {
        &self.visibility
    }

    fn ordered(&self) -> std::sync::MutexGuard<'_, ()> {
        self.order.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A fresh sequence number, larger than every earlier one, taken (not yet
    /// readable). Call under [`Store::ordered`].
    fn take_seq(&self) -> Result<u64, StoreError> {
        // generate_id starts at 0; cursors start at 1 so that 0 means "from the start".
        let seq = self.db().generate_id()? + 1;
        self.visibility.take(seq);
        Ok(seq)
    }

    /// Takes a sequence number for each of `outgoing`, seals each entry to
    /// its key, and counts it on its node's queue. Call under [`Store::ordered`].
    fn queue(&self, outgoing: &[Outgoing]) -> Result<(Vec<Queued>, Vec<Row>), StoreError> {
        let mut queued = Vec::with_capacity(outgoing.len());
        let mut rows = Vec::with_capacity(outgoing.len());
        for o in outgoing {
            let seq = match self.take_seq() {
                Ok(seq) => seq,
                Err(e) => {
                    self.visibility.settle(&queued.iter().map(|q: &Queued| q.seq).collect::<Vec<_>>());
                    return Err(e);
                }
            };
            let key = outbox_key(o.node.as_str(), seq);
            rows.push((key.clone(), self.outbox.seal_message(&key, &o.entry)));
            queued.push(Queued { node: o.node.clone(), seq });
        }
        Ok((queued, rows))
    }

    fn in_flight(&self, queued: Vec<Queued>) -> InFlight {
        for q in &queued {
            self.queues.add(q.node.as_str(), 1);
        }
        InFlight::new(self.visibility.clone(), self.db().clone(), queued)
    }

    /// The stored alert with this id, if any.
    pub fn alert(&self, alert_id: &str) -> Result<Option<StoredAlert>, StoreError> {
        Ok(self.alerts.get("alert", alert_id.as_bytes())?)
    }

    /// Replaces a stored alert's row (its permissions and grants change;
    /// its content never does). Durable with the caller's next commit.
    pub fn update_alert(&self, stored: &StoredAlert) -> Result<(), StoreError> {
        let id = stored.alert.as_ref().map(|a| a.alert_id.as_str()).unwrap_or_default();
        let _order = self.ordered();
        if self.alerts.raw().get(id.as_bytes())?.is_none() {
            return Ok(()); // expired meanwhile: nothing to update
        }
        Ok(self.alerts.insert(id.as_bytes(), stored)?)
    }

    /// The stored alert, if it exists and has not expired at `now_ms`.
    pub fn live_alert(&self, alert_id: &str, now_ms: u64) -> Result<Option<(StoredAlert, Alert)>, StoreError> {
        Ok(self.alert(alert_id)?.and_then(|s| {
            let alert = s.alert.clone()?;
            (expires_ms(&alert) > now_ms).then_some((s, alert))
        }))
    }

    /// Stores a new alert, its deliveries and its lookup index rows, unless
    /// its id exists. The rows are written one by one, the alert row last; if
    /// a write fails, those already written are removed again.
    ///
    /// Nothing is readable or durable until the caller's group commit
    /// completes and it settles the returned [`InFlight`].
    pub fn publish(&self, write: &PublishWrite) -> Result<PublishOutcome, StoreError> {
        // Everything that does not depend on a sequence number is prepared
        // before `ordered` is taken, so that publishes wait on each other
        // only for the checks, the seal of each outbox entry and the writes.
        let alert_id = write.alert_id();
        let stored_bytes = self.alerts.seal_message(alert_id.as_bytes(), &write.stored);
        let lookup_rows: Vec<(Vec<u8>, &str)> =
            write.index.iter().map(|r| (lookup_key(&r.pseudonym, alert_id), r.kind.as_str())).collect();
        let ekey = expiry_key(write.expires_ms, alert_id);

        let _order = self.ordered();
        // Plain inserts, not a sled transaction: a transaction takes sled's
        // process-wide write lock and stalls every other sled write in the
        // process. Only `publish` adds alerts, under `ordered`, so two
        // publishes of one id cannot both pass this check.
        if let Some(existing) = self.alert(alert_id)? {
            return Ok(if existing.digest == write.stored.digest {
                PublishOutcome::Duplicate(Box::new(existing))
            } else {
                PublishOutcome::Conflict
            });
        }
        let (queued, entries) = self.queue(&write.outgoing)?;
        let in_flight = self.in_flight(queued);
        let row = ExpiryRow {
            outbox_keys: entries.iter().map(|(k, _)| k.clone()).collect(),
            lookup_keys: lookup_rows.iter().map(|(k, _)| k.clone()).collect(),
        }
        .encode_to_vec();
        // The alert row goes last: a crash that keeps only some of these rows
        // (sled recovers a prefix of its log) leaves no alert row, so a retry
        // stores the alert again instead of answering "duplicate" for an
        // alert whose deliveries were lost.
        let written = (|| -> Result<(), sled::Error> {
            for (key, value) in &entries {
                self.outbox.raw().insert(key.as_slice(), value.as_slice())?;
            }
            if self.faults.store_write_fails() {
                return Err(sled::Error::Unsupported("injected fault: store write".into()));
            }
            for (key, kind) in &lookup_rows {
                self.index.lookup.insert(key.as_slice(), kind.as_bytes())?;
            }
            self.expiry.insert(ekey.as_slice(), row.as_slice())?;
            if let Some(parent) =
                write.stored.alert.as_ref().map(|a| a.forwarded_from.as_str()).filter(|p| !p.is_empty())
            {
                self.forwards.insert(lifecycle::forward_key(parent, alert_id), &[])?;
            }
            self.alerts.raw().insert(alert_id.as_bytes(), stored_bytes.as_slice())?;
            Ok(())
        })();
        if let Err(e) = written {
            // Take back what was written, so that the alert is not kept. No
            // subscription read the rows: they were above the watermark.
            drop(_order);
            let _ = self.retract(write, in_flight);
            return Err(e.into());
        }
        Ok(PublishOutcome::Stored(in_flight))
    }

    /// Undoes a [`Store::publish`] whose writes or flush failed: removes the
    /// alert, its outbox entries, its lookup rows and its expiry row, so that
    /// a later flush makes none of it visible, then settles the numbers it took.
    pub fn retract(&self, write: &PublishWrite, in_flight: InFlight) -> Result<(), StoreError> {
        let alert_id = write.alert_id();
        let trees = (self.alerts.raw(), self.outbox.raw(), &self.expiry, &self.index.lookup);
        let queued = in_flight.queued().to_vec();
        let result = finish(trees.transaction(|(alerts, outbox, expiry, lookup)| {
            alerts.remove(alert_id.as_bytes())?;
            for q in &queued {
                outbox.remove(outbox_key(q.node.as_str(), q.seq))?;
            }
            for row in &write.index {
                lookup.remove(lookup_key(&row.pseudonym, alert_id))?;
            }
            expiry.remove(expiry_key(write.expires_ms, alert_id))?;
            Ok::<_, ConflictableTransactionError<StoreError>>(())
        }));
        if result.is_ok() {
            for q in &queued {
                self.queues.sub(q.node.as_str(), 1);
            }
        }
        in_flight.settle();
        result
    }

    /// Up to `limit` events for `node` after `cursor` and at or below the
    /// visibility watermark, skipping expired ones.
    pub fn pending(
        &self,
        node: &NodeId,
        cursor: u64,
        limit: usize,
        now_ms: u64,
    ) -> Result<Vec<(u64, OutboxEntry)>, StoreError> {
        self.faults.outbox_read(node.as_str());
        let watermark = self.visibility.watermark();
        if cursor >= watermark {
            return Ok(vec![]);
        }
        let start = outbox_key(node.as_str(), cursor.saturating_add(1));
        let end = outbox_key(node.as_str(), watermark);
        let mut out = Vec::new();
        for item in self.outbox.raw().range(start..=end) {
            let (key, value) = item?;
            let entry: OutboxEntry = self.outbox.unseal("outbox entry", &key, &value)?;
            if entry.expires_ms <= now_ms {
                continue;
            }
            if entry.event.is_some() {
                out.push((seq_of(&key), entry));
            }
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// How many rows wait in `node`'s outbox (a scan; see [`Queues`] for the count kept).
    pub fn backlog(&self, node: &NodeId) -> usize {
        let mut prefix = node.as_str().as_bytes().to_vec();
        prefix.push(0);
        self.outbox.raw().scan_prefix(prefix).count()
    }

    /// Releases every event for `node` up to and including `cursor`; returns how many.
    pub fn ack(&self, node: &NodeId, cursor: u64) -> Result<u64, StoreError> {
        let start = outbox_key(node.as_str(), 0);
        let end = outbox_key(node.as_str(), cursor);
        let mut released = 0;
        let keys: Vec<sled::IVec> = self.outbox.raw().range(start..=end).keys().collect::<Result<_, _>>()?;
        for key in keys {
            if self.outbox.raw().remove(key)?.is_some() {
                released += 1;
            }
        }
        self.queues.sub(node.as_str(), released);
        Ok(released)
    }

    /// Drops every alert and undelivered copy whose `expires_at` is at or before `now_ms`.
    pub fn expire(&self, now_ms: u64) -> Result<Vec<Expired>, StoreError> {
        let end = (now_ms.saturating_add(1)).to_be_bytes();
        let mut expired = Vec::new();
        let rows: Vec<(sled::IVec, sled::IVec)> = self.expiry.range(..end.as_slice()).collect::<Result<_, _>>()?;
        for (key, value) in rows {
            let row: ExpiryRow = isx_store::decode("expiry row", &value)?;
            let mut undelivered = 0;
            for okey in &row.outbox_keys {
                if self.outbox.raw().remove(okey.as_slice())?.is_some() {
                    undelivered += 1;
                    self.queues.sub(&String::from_utf8_lossy(node_of(okey)), 1);
                }
            }
            let alert_id = String::from_utf8_lossy(&key[8..]).into_owned();
            let index_rows = self.index.drop_alert(&alert_id, &row.lookup_keys)?;
            self.alerts.raw().remove(alert_id.as_bytes())?;
            self.expiry.remove(key)?;
            expired.push(Expired { alert_id, undelivered, index_rows });
        }
        Ok(expired)
    }

    /// A fresh access request id: `ar-` and 128 random bits, so that
    /// nobody can guess another node's request ids.
    pub fn new_request_id(&self) -> String {
        format!("ar-{}", uuid::Uuid::new_v4().simple())
    }

    /// Stores a new pending request, links it to its hit, and queues the
    /// notification for the holder, in one transaction.
    pub fn open_request(
        &self,
        request: &AccessRequest,
        hit: &HitRow,
        notify: Outgoing,
    ) -> Result<InFlight, StoreError> {
        let id = request.request_id.as_str();
        let body = self.requests.tree.seal_message(&request_key(id), request);
        let hit_body = hit.encode_to_vec();
        let _order = self.ordered();
        let (queued, rows) = self.queue(std::slice::from_ref(&notify))?;
        let in_flight = self.in_flight(queued);
        let trees = (self.requests.tree.raw(), &self.index.hits, self.outbox.raw());
        finish(trees.transaction(|(access, hits, outbox)| {
            access.insert(request_key(id), body.as_slice())?;
            access.insert(node_key(&request.requester, id), &[])?;
            access.insert(node_key(&request.holder, id), &[])?;
            access.insert(due_key(deadline_ms(request), id), &[])?;
            hits.insert(hit_key(&request.hit_id), hit_body.as_slice())?;
            for (k, v) in &rows {
                outbox.insert(k.as_slice(), v.as_slice())?;
            }
            Ok::<_, ConflictableTransactionError<StoreError>>(())
        }))?;
        Ok(in_flight)
    }

    /// Stores a decided (granted, denied or expired) request and queues its
    /// events for the requester, in one transaction. Returns `None` if the
    /// stored request is no longer pending (nothing is written then).
    pub fn close_request(&self, request: &AccessRequest, events: &[Outgoing]) -> Result<Option<InFlight>, StoreError> {
        let id = request.request_id.as_str();
        let key = request_key(id);
        let body = self.requests.tree.seal_message(&key, request);
        let _order = self.ordered();
        let (queued, rows) = self.queue(events)?;
        let tree = &self.requests.tree;
        let closed = finish((tree.raw(), self.outbox.raw()).transaction(|(access, outbox)| {
            let current = access.get(&key)?;
            let pending = current
                .as_deref()
                .and_then(|v| tree.unseal::<AccessRequest>("access request", &key, v).ok())
                .is_some_and(|r| r.state() == AccessState::Pending);
            if !pending {
                return Ok(false);
            }
            access.insert(key.as_slice(), body.as_slice())?;
            access.remove(due_key(deadline_ms(request), id))?;
            for (k, v) in &rows {
                outbox.insert(k.as_slice(), v.as_slice())?;
            }
            Ok::<_, ConflictableTransactionError<StoreError>>(true)
        }));
        match closed {
            Ok(true) => Ok(Some(self.in_flight(queued))),
            other => {
                // Nothing was written: the numbers taken are settled at once.
                self.visibility.settle(&queued.iter().map(|q| q.seq).collect::<Vec<_>>());
                other.map(|_| None)
            }
        }
    }
}

/// When an alert expires, Unix milliseconds (never, without `expires_at`).
pub fn expires_ms(alert: &Alert) -> u64 {
    alert.expires_at.as_ref().map(isx_core::timestamp::to_unix_millis).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests;
