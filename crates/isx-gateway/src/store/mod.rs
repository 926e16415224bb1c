//! The gateway's durable state in sled: published alerts, per-node
//! outboxes, expiry, the lookup index, hit flags and access requests.
//!
//! # Layout
//! - [`outbox`]: outbox entries, the visibility watermark that keeps
//!   subscriptions from reading uncommitted rows, and the queue counts.
//! - [`lookup`]: the hit/no-hit index (pseudonyms only) and hit flags.
//! - [`requests`]: access requests.
//! - [`lifecycle`]: per-copy status, versions, held deliveries, forward
//!   links and pending fan-outs of changes.
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
//! - `status`, `held`, `forwards`, `fanout`: see [`lifecycle`].
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
pub mod lookup;
pub mod outbox;
pub mod requests;

use isx_core::wire::{AlertState, AlertVersion, CopyStatus};
use prost::Message;
use sled::Transactional;
use sled::transaction::ConflictableTransactionError;
use std::collections::BTreeMap;
use std::sync::Arc;

use isx_core::NodeId;
use isx_core::wire::{AccessRequest, AccessState, Alert, Receipt};

pub use error::StoreError;
use error::finish;
use keys::{
    due_key, expiry_key, hit_by_alert_key, hit_key, lookup_key, node_key, node_of, outbox_key, request_key, seq_of,
};
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

    /// Sets a stored alert's onward permissions and grants from `stored`
    /// (its content and lifecycle state, which only the lifecycle changes,
    /// stay as they are now). Durable with the caller's next commit.
    pub fn update_alert(&self, stored: &StoredAlert) -> Result<(), StoreError> {
        let id = stored.alert.as_ref().map(|a| a.alert_id.as_str()).unwrap_or_default();
        let _order = self.ordered();
        let Some(mut current) = self.alert(id)? else {
            return Ok(()); // expired meanwhile: nothing to update
        };
        current.onward_allowed = stored.onward_allowed.clone();
        current.granted_to = stored.granted_to.clone();
        Ok(self.alerts.insert(id.as_bytes(), &current)?)
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
                self.forwards.insert(forward_key(parent, alert_id), &[])?;
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

// ---- The lifecycle: its rows, keys and writes ----
// The alert lifecycle's rows: per-copy status, the alert's versions, held
// deliveries, forward links, and the pending fan-out of a change.
//
// # Trees
// - `status` (sealed): `h ‖ alert_id` → [`StatusHead`] (state, versions,
//   when the alert ended) and `c ‖ alert_id ‖ 0x00 ‖ node` →
//   [`CopyStatus`]: what the holder was last asked to do and what it
//   confirmed. Kept `lifecycle.keep_status` after the alert ends, so it
//   outlives the alert row.
// - `held` (sealed): `alert_id ‖ 0x00 ‖ node ‖ 0x00 ‖ seq` → an
//   [`OutboxEntry`] held back while the alert is restricted.
// - `forwards`: `alert_id ‖ 0x00 ‖ forward_id` → empty: the relays
//   published of an alert, so that a withdrawal follows the chain.
// - `fanout` (sealed): `alert_id` → [`PendingChange`]: a change whose
//   record is durable and whose effects are not applied yet.
//
// # Crash safety
// A change is staged ([`Store::stage_change`]: its marker alone), then
// committed together with its audit record, then applied
// ([`Store::apply_change`]: one sled transaction that writes every effect
// and removes the marker). A crash between the two leaves the marker,
// which the next start applies ([`Store::pending_changes`]). A crash
// during the apply leaves the marker too (the transaction is atomic), so
// every effect happens exactly once.

/// An alert's lifecycle, kept beside (and after) its alert row.
#[derive(Clone, PartialEq, Message)]
pub struct StatusHead {
    /// The alert.
    #[prost(string, tag = "1")]
    pub alert_id: String,
    /// Its origin.
    #[prost(string, tag = "2")]
    pub origin: String,
    /// Its state.
    #[prost(enumeration = "AlertState", tag = "3")]
    pub state: i32,
    /// Every version, oldest first.
    #[prost(message, repeated, tag = "4")]
    pub versions: Vec<AlertVersion>,
    /// When the alert expires (or expired), Unix milliseconds.
    #[prost(uint64, tag = "5")]
    pub expires_ms: u64,
    /// When it was withdrawn or expired, Unix milliseconds; 0 while live.
    #[prost(uint64, tag = "6")]
    pub ended_ms: u64,
}

/// One event a change queues.
#[derive(Clone, PartialEq, Message)]
pub struct PendingEvent {
    /// The recipient.
    #[prost(string, tag = "1")]
    pub node: String,
    /// The event.
    #[prost(message, optional, tag = "2")]
    pub entry: Option<OutboxEntry>,
    /// Held back (the alert is restricted) instead of queued.
    #[prost(bool, tag = "3")]
    pub hold: bool,
    /// Dropped with the alert's other undelivered rows when it expires
    /// (false for a deletion, which must outlive the alert).
    #[prost(bool, tag = "4")]
    pub expires_with_alert: bool,
}

/// What a change does to one alert (the changed one, or a forward of it).
#[derive(Clone, PartialEq, Message)]
pub struct AlertPart {
    /// The alert.
    #[prost(string, tag = "1")]
    pub alert_id: String,
    /// Its row after the change; absent with `remove_alert`.
    #[prost(message, optional, tag = "2")]
    pub stored: Option<StoredAlert>,
    /// The alert row goes (expiry).
    #[prost(bool, tag = "3")]
    pub remove_alert: bool,
    /// Its status head after the change.
    #[prost(message, optional, tag = "4")]
    pub head: Option<StatusHead>,
    /// The copies' status rows after the change.
    #[prost(message, repeated, tag = "5")]
    pub copies: Vec<CopyStatus>,
    /// The events to queue (or hold), in order.
    #[prost(message, repeated, tag = "6")]
    pub events: Vec<PendingEvent>,
    /// Outbox rows of the alert to remove (superseded or undelivered).
    #[prost(bytes = "vec", repeated, tag = "7")]
    pub drop_outbox: Vec<Vec<u8>>,
    /// Outbox rows of the alert to move to `held` (a restriction).
    #[prost(bytes = "vec", repeated, tag = "8")]
    pub hold_outbox: Vec<Vec<u8>>,
    /// Every held row of the alert goes back to the outbox (a lift), after `events`.
    #[prost(bool, tag = "9")]
    pub release_held: bool,
    /// Every held row of the alert is dropped (a deletion).
    #[prost(bool, tag = "10")]
    pub drop_held: bool,
    /// Lookup index keys to remove.
    #[prost(bytes = "vec", repeated, tag = "11")]
    pub lookup_remove: Vec<Vec<u8>>,
    /// Lookup index keys to add, with `lookup_kinds`.
    #[prost(bytes = "vec", repeated, tag = "12")]
    pub lookup_add: Vec<Vec<u8>>,
    /// The identifier kind of each of `lookup_add`.
    #[prost(string, repeated, tag = "13")]
    pub lookup_kinds: Vec<String>,
    /// Hit flags of the alert are dropped.
    #[prost(bool, tag = "14")]
    pub drop_hits: bool,
    /// The alert's expiry row key before the change.
    #[prost(bytes = "vec", tag = "15")]
    pub expiry_old: Vec<u8>,
    /// Its expiry row key after the change (empty: removed).
    #[prost(bytes = "vec", tag = "16")]
    pub expiry_new: Vec<u8>,
    /// `drop_outbox` and `hold_outbox` touch only rows that carry content
    /// (deliveries and UPDATEs): a queued RESTRICTION or LIFT stays.
    #[prost(bool, tag = "17")]
    pub content_only: bool,
}

/// A change staged for fan-out: its record is durable, its effects wait.
#[derive(Clone, PartialEq, Message)]
pub struct PendingChange {
    /// The alert changed (the marker's key).
    #[prost(string, tag = "1")]
    pub alert_id: String,
    /// What it does to each alert, the changed one first.
    #[prost(message, repeated, tag = "2")]
    pub parts: Vec<AlertPart>,
}

/// What an applied change queued.
#[derive(Debug)]
pub struct Applied {
    /// The queued events' numbers, to settle after the commit.
    pub in_flight: InFlight,
    /// How many undelivered rows were removed or held.
    pub dropped: u64,
}

pub(crate) fn head_key(alert_id: &str) -> Vec<u8> {
    [b"h", alert_id.as_bytes()].concat()
}

pub(crate) fn copy_key(alert_id: &str, node: &str) -> Vec<u8> {
    [b"c", alert_id.as_bytes(), b"\0", node.as_bytes()].concat()
}

fn copies_prefix(alert_id: &str) -> Vec<u8> {
    [b"c", alert_id.as_bytes(), b"\0"].concat()
}

fn held_prefix(alert_id: &str) -> Vec<u8> {
    [alert_id.as_bytes(), b"\0"].concat()
}

/// `alert_id ‖ 0 ‖ node ‖ 0 ‖ seq`: a held event, in its original order.
fn held_key(alert_id: &str, outbox_key: &[u8]) -> Vec<u8> {
    [held_prefix(alert_id).as_slice(), outbox_key].concat()
}

pub(crate) fn forward_key(parent: &str, child: &str) -> Vec<u8> {
    [parent.as_bytes(), b"\0", child.as_bytes()].concat()
}

impl Store {
    /// The alert's status head, if a change or expiry wrote one.
    pub fn status_head(&self, alert_id: &str) -> Result<Option<StatusHead>, StoreError> {
        Ok(self.status.get("status head", &head_key(alert_id))?)
    }

    /// The status row of `node`'s copy of `alert_id`.
    pub fn copy_status(&self, alert_id: &str, node: &str) -> Result<Option<CopyStatus>, StoreError> {
        Ok(self.status.get("copy status", &copy_key(alert_id, node))?)
    }

    /// Every copy status row of `alert_id`, by node.
    pub fn copy_statuses(&self, alert_id: &str) -> Result<Vec<CopyStatus>, StoreError> {
        let mut out = Vec::new();
        for item in self.status.raw().scan_prefix(copies_prefix(alert_id)) {
            let (k, v) = item?;
            out.push(self.status.unseal("copy status", &k, &v)?);
        }
        Ok(out)
    }

    /// Replaces copy status rows (a confirmation). Durable with the next commit.
    pub fn put_copy_statuses(&self, rows: &[CopyStatus]) -> Result<(), StoreError> {
        for row in rows {
            self.status.insert(&copy_key(&row.copy_of, &row.node), row)?;
        }
        Ok(())
    }

    /// Every status head, for the sweep that drops ended ones.
    pub fn status_heads(&self) -> Result<Vec<StatusHead>, StoreError> {
        let mut out = Vec::new();
        for item in self.status.raw().scan_prefix(b"h") {
            let (k, v) = item?;
            out.push(self.status.unseal("status head", &k, &v)?);
        }
        Ok(out)
    }

    /// Drops an ended alert's status (its head and every copy row).
    pub fn drop_status(&self, alert_id: &str) -> Result<(), StoreError> {
        let keys: Vec<sled::IVec> =
            self.status.raw().scan_prefix(copies_prefix(alert_id)).keys().collect::<Result<_, _>>()?;
        for k in keys {
            self.status.raw().remove(k)?;
        }
        self.status.raw().remove(head_key(alert_id))?;
        Ok(())
    }

    /// The relays published of `alert_id` (direct ones).
    pub fn forwards_of(&self, alert_id: &str) -> Result<Vec<String>, StoreError> {
        let prefix = forward_key(alert_id, "");
        self.forwards
            .scan_prefix(&prefix)
            .keys()
            .map(|k| Ok(String::from_utf8_lossy(&k?[prefix.len()..]).into_owned()))
            .collect()
    }

    /// The expiry row of an alert, by its key.
    pub fn expiry_row(&self, key: &[u8]) -> Result<Option<ExpiryRow>, StoreError> {
        self.expiry.get(key)?.map(|v| isx_store::decode("expiry row", &v).map_err(Into::into)).transpose()
    }

    /// Expiry rows due at `now_ms`: `(key, alert_id)`.
    pub fn due(&self, now_ms: u64) -> Result<Vec<(Vec<u8>, String)>, StoreError> {
        let end = (now_ms.saturating_add(1)).to_be_bytes();
        self.expiry
            .range(..end.as_slice())
            .keys()
            .map(|k| {
                let k = k?;
                Ok((k.to_vec(), String::from_utf8_lossy(&k[8..]).into_owned()))
            })
            .collect()
    }

    /// Removes an alert row and its expiry row (an alert that ended before
    /// its expiry: a withdrawal already told every holder).
    pub fn remove_ended(&self, expiry_key: &[u8], alert_id: &str) -> Result<(), StoreError> {
        self.index.drop_alert(alert_id, &[])?;
        self.alerts.raw().remove(alert_id.as_bytes())?;
        self.expiry.remove(expiry_key)?;
        Ok(())
    }

    /// Removes an expiry row alone.
    pub fn remove_expiry_row(&self, expiry_key: &[u8]) -> Result<(), StoreError> {
        self.expiry.remove(expiry_key)?;
        Ok(())
    }

    /// The hit flag keys of an alert (both rows of each).
    fn hit_keys(&self, alert_id: &str) -> Result<Vec<Vec<u8>>, StoreError> {
        let prefix = hit_by_alert_key(alert_id, "");
        let mut keys = Vec::new();
        for k in self.index.hits.scan_prefix(&prefix).keys() {
            let k = k?;
            let hit_id = String::from_utf8_lossy(&k[prefix.len()..]).into_owned();
            keys.push(hit_key(&hit_id));
            keys.push(k.to_vec());
        }
        Ok(keys)
    }

    /// The outbox rows of `node` that carry `alert_id` and are still queued.
    pub fn queued_rows_of(&self, keys: &[Vec<u8>]) -> Result<Vec<Vec<u8>>, StoreError> {
        let mut out = Vec::new();
        for k in keys {
            if self.outbox.raw().contains_key(k)? {
                out.push(k.clone());
            }
        }
        Ok(out)
    }

    /// Writes the marker of a change: durable with the caller's next commit,
    /// together with the change's audit record.
    pub fn stage_change(&self, change: &PendingChange) -> Result<(), StoreError> {
        self.fanout.insert(change.alert_id.as_bytes(), change)?;
        Ok(())
    }

    /// Every staged change not yet applied (a crash between record and fan-out).
    pub fn pending_changes(&self) -> Result<Vec<PendingChange>, StoreError> {
        let mut out = Vec::new();
        for item in self.fanout.raw().iter() {
            let (k, v) = item?;
            out.push(self.fanout.unseal("pending change", &k, &v)?);
        }
        Ok(out)
    }

    /// The staged change of `alert_id`, if any.
    pub fn pending_change(&self, alert_id: &str) -> Result<Option<PendingChange>, StoreError> {
        Ok(self.fanout.get("pending change", alert_id.as_bytes())?)
    }

    /// Applies a staged change in one transaction: every alert row, status
    /// row, index row, outbox and held row it names, and the marker's
    /// removal. Nothing is readable until the caller commits and settles.
    pub fn apply_change(&self, change: &PendingChange) -> Result<Applied, StoreError> {
        // What does not depend on the transaction is read and sealed first.
        struct Prepared {
            head: Option<Vec<u8>>,
            copies: Vec<(Vec<u8>, Vec<u8>)>,
            hits: Vec<Vec<u8>>,
            held: Vec<(Vec<u8>, OutboxEntry)>,
            expiry_row: Option<ExpiryRow>,
        }
        let mut prepared = Vec::with_capacity(change.parts.len());
        for part in &change.parts {
            let id = part.alert_id.as_str();
            let held = if part.release_held || part.drop_held {
                let mut rows = Vec::new();
                for item in self.held.raw().scan_prefix(held_prefix(id)) {
                    let (k, v) = item?;
                    rows.push((k.to_vec(), self.held.unseal("held event", &k, &v)?));
                }
                rows
            } else {
                vec![]
            };
            prepared.push(Prepared {
                head: part.head.as_ref().map(|h| self.status.seal_message(&head_key(id), h)),
                copies: part
                    .copies
                    .iter()
                    .map(|c| {
                        let k = copy_key(&c.copy_of, &c.node);
                        let v = self.status.seal_message(&k, c);
                        (k, v)
                    })
                    .collect(),
                hits: if part.drop_hits { self.hit_keys(id)? } else { vec![] },
                held,
                expiry_row: if part.expiry_old.is_empty() { None } else { self.expiry_row(&part.expiry_old)? },
            });
        }

        let _order = self.ordered();
        // Events to queue: each part's events, then (a lift) its held rows.
        let mut outgoing: Vec<(usize, Outgoing, bool)> = Vec::new();
        let mut to_hold: Vec<(usize, Vec<u8>, Vec<u8>)> = Vec::new();
        for (i, part) in change.parts.iter().enumerate() {
            for e in &part.events {
                let Ok(node) = isx_core::NodeId::new(&e.node) else { continue };
                let entry = e.entry.clone().unwrap_or_default();
                if e.hold {
                    // Held rows take a sequence number only when released.
                    let fake = outbox_key(&e.node, self.db().generate_id()? + 1);
                    let k = held_key(&part.alert_id, &fake);
                    let v = self.held.seal_message(&k, &entry);
                    to_hold.push((i, k, v));
                } else {
                    outgoing.push((i, Outgoing { node, entry }, e.expires_with_alert));
                }
            }
            if part.release_held {
                for (k, entry) in &prepared[i].held {
                    let okey = &k[held_prefix(&part.alert_id).len()..];
                    let node = String::from_utf8_lossy(keys::node_of(okey)).into_owned();
                    let Ok(node) = isx_core::NodeId::new(&node) else { continue };
                    outgoing.push((i, Outgoing { node, entry: entry.clone() }, true));
                }
            }
        }
        let plain: Vec<Outgoing> = outgoing.iter().map(|(_, o, _)| o.clone()).collect();
        let (queued, rows) = self.queue(&plain)?;
        // The expiry rows after the change: old keys, minus what goes, plus
        // the new rows that expire with the alert.
        let mut expiry_rows: Vec<Option<Vec<u8>>> = Vec::with_capacity(change.parts.len());
        for (i, part) in change.parts.iter().enumerate() {
            if part.expiry_new.is_empty() {
                expiry_rows.push(None);
                continue;
            }
            let mut row = prepared[i].expiry_row.clone().unwrap_or_default();
            // Keys that stay (a RESTRICTION kept by `content_only`) are
            // harmless to keep; those that went are dropped.
            if !part.content_only {
                row.outbox_keys.retain(|k| !part.drop_outbox.contains(k) && !part.hold_outbox.contains(k));
            }
            for ((j, _, with_alert), (k, _)) in outgoing.iter().zip(&rows) {
                if *j == i && *with_alert {
                    row.outbox_keys.push(k.clone());
                }
            }
            row.lookup_keys.retain(|k| !part.lookup_remove.contains(k));
            row.lookup_keys.extend(part.lookup_add.iter().cloned());
            expiry_rows.push(Some(row.encode_to_vec()));
        }

        let trees = (
            self.alerts.raw(),
            self.outbox.raw(),
            self.held.raw(),
            self.status.raw(),
            self.fanout.raw(),
            &self.index.lookup,
            &self.index.hits,
            &self.expiry,
        );
        let result = finish(trees.transaction(|(alerts, outbox, held, status, fanout, lookup, hits, expiry)| {
            let mut removed: Vec<Vec<u8>> = Vec::new();
            let abort = |e: StoreError| ConflictableTransactionError::Abort(e);
            for (i, part) in change.parts.iter().enumerate() {
                let p = &prepared[i];
                let id = part.alert_id.as_bytes();
                if part.remove_alert {
                    alerts.remove(id)?;
                } else if let Some(s) = &part.stored {
                    // Grants and onward permissions written since the plan
                    // (under other locks) are kept.
                    let mut s = s.clone();
                    if let Some(v) = alerts.get(id)? {
                        let now: StoredAlert = self.alerts.unseal("alert", id, &v).map_err(|e| abort(e.into()))?;
                        for n in now.granted_to {
                            if !s.granted_to.contains(&n) {
                                s.granted_to.push(n);
                            }
                        }
                        for n in now.onward_allowed {
                            if !s.onward_allowed.contains(&n) {
                                s.onward_allowed.push(n);
                            }
                        }
                    }
                    alerts.insert(id, self.alerts.seal_message(id, &s))?;
                }
                if let Some(h) = &p.head {
                    status.insert(head_key(&part.alert_id), h.as_slice())?;
                }
                for (k, v) in &p.copies {
                    status.insert(k.as_slice(), v.as_slice())?;
                }
                let content = |k: &[u8], v: &[u8]| -> Result<Option<OutboxEntry>, StoreError> {
                    let entry: OutboxEntry = self.outbox.unseal("outbox entry", k, v)?;
                    let carries = match &entry.event {
                        Some(Event::Delivery(_)) => true,
                        Some(Event::Change(c)) => c.delivery.is_some(),
                        _ => false,
                    };
                    Ok((carries || !part.content_only).then_some(entry))
                };
                for k in &part.drop_outbox {
                    let Some(v) = outbox.get(k.as_slice())? else { continue };
                    if content(k, &v).map_err(abort)?.is_some() {
                        outbox.remove(k.as_slice())?;
                        removed.push(k.clone());
                    }
                }
                for k in &part.hold_outbox {
                    let Some(v) = outbox.get(k.as_slice())? else { continue };
                    if let Some(entry) = content(k, &v).map_err(abort)? {
                        outbox.remove(k.as_slice())?;
                        let hk = held_key(&part.alert_id, k);
                        held.insert(hk.as_slice(), self.held.seal_message(&hk, &entry))?;
                        removed.push(k.clone());
                    }
                }
                for (k, _) in &p.held {
                    held.remove(k.as_slice())?;
                }
                for k in &part.lookup_remove {
                    lookup.remove(k.as_slice())?;
                }
                for (k, kind) in part.lookup_add.iter().zip(&part.lookup_kinds) {
                    lookup.insert(k.as_slice(), kind.as_bytes())?;
                }
                for k in &p.hits {
                    hits.remove(k.as_slice())?;
                }
                if !part.expiry_old.is_empty() && part.expiry_old != part.expiry_new {
                    expiry.remove(part.expiry_old.as_slice())?;
                }
                if let Some(row) = &expiry_rows[i] {
                    expiry.insert(part.expiry_new.as_slice(), row.as_slice())?;
                }
            }
            for (_, k, v) in &to_hold {
                held.insert(k.as_slice(), v.as_slice())?;
            }
            for (k, v) in &rows {
                outbox.insert(k.as_slice(), v.as_slice())?;
            }
            fanout.remove(change.alert_id.as_bytes())?;
            Ok::<_, ConflictableTransactionError<StoreError>>(removed)
        }));
        match result {
            Ok(removed) => {
                for k in &removed {
                    self.queues.sub(&String::from_utf8_lossy(keys::node_of(k)), 1);
                }
                Ok(Applied { in_flight: self.in_flight(queued), dropped: removed.len() as u64 })
            }
            Err(e) => {
                self.visibility.settle(&queued.iter().map(|q: &Queued| q.seq).collect::<Vec<_>>());
                Err(e)
            }
        }
    }
}
