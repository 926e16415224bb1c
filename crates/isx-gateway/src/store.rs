//! The gateway's durable state in sled: published alerts and per-recipient outboxes.
//!
//! # Trees
//! - `alerts`: `alert_id` → [`StoredAlert`]: the alert as published, its
//!   content digest and the receipt, kept until `expires_at` for idempotency
//!   and onward-relay checks.
//! - `outbox`: `node ‖ 0x00 ‖ seq` (seq big-endian) → [`OutboxEntry`]: one
//!   delivery waiting for one recipient. `seq` comes from sled's persistent id
//!   generator, so it grows across restarts and is the delivery cursor.
//! - `expiry`: `expires_at_ms ‖ alert_id` → [`ExpiryRow`]: the outbox and
//!   lookup keys to drop when the alert expires.
//! - `lookup`: `pseudonym ‖ 0x00 ‖ alert_id` → identifier type: the hit/no-hit
//!   index. The pseudonym is the HMAC of a normalised identifier; no
//!   identifier is ever stored here.
//! - `hits` and `access`: hit flags given to callers and access requests (see
//!   [`access`]).
//!
//! Every value that carries alert content or free text (`alerts`, `outbox`,
//! access requests) is sealed with the gateway's store key
//! (`isx_tls::at_rest`), bound to its tree and key; the `meta` tree holds the
//! key's canary. Keys and the other trees hold only ids, pseudonyms and times.
//!
//! A publish writes its outbox entries, its lookup rows, its expiry row and,
//! last, the alert (plain inserts under `Store::ordered`, see
//! [`Store::publish`]); the caller then waits for a group commit (see
//! `commit`) before it acknowledges anything.

pub mod access;

use isx_core::NodeId;
use isx_core::wire::{AccessRequest, Alert, Delivery, Receipt};
use prost::Message;
use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};

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
}

/// One event queued for one node: a delivery, or an access request or outcome.
#[derive(Clone, PartialEq, Message)]
pub struct OutboxEntry {
    /// The recipient's view and its level.
    #[prost(message, optional, tag = "1")]
    pub delivery: Option<Delivery>,
    /// When the entry stops being deliverable, Unix milliseconds.
    #[prost(uint64, tag = "2")]
    pub expires_ms: u64,
    /// What the disclosure record needs that a reduced view may lack.
    #[prost(message, optional, tag = "3")]
    pub audit: Option<AuditFacts>,
    /// To a holder: an access request to decide.
    #[prost(message, optional, tag = "4")]
    pub access_request: Option<AccessRequest>,
    /// To a requester: the outcome of its access request.
    #[prost(message, optional, tag = "5")]
    pub access_outcome: Option<AccessRequest>,
}

impl OutboxEntry {
    /// True if the entry carries an event.
    pub fn has_event(&self) -> bool {
        self.delivery.is_some() || self.access_request.is_some() || self.access_outcome.is_some()
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

/// One row of the lookup index: an identifier's pseudonym (hex) and its type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexRow {
    /// HMAC-SHA256 of the normalised identifier, hex.
    pub pseudonym: String,
    /// `document`, `name`, `plate` or `firearm`.
    pub kind: String,
}

/// A storage failure. The gateway answers `UNAVAILABLE` and discloses nothing.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// sled failed.
    #[error("storage: {0}")]
    Sled(#[from] sled::Error),
    /// The store key is missing or wrong, or a sealed value does not open.
    #[error(transparent)]
    AtRest(#[from] isx_tls::at_rest::AtRestError),
    /// The data directory was written before encryption at rest.
    #[error(
        "{0}: this data directory holds data written without encryption at rest; move it away (the gateway then starts empty)"
    )]
    Unsealed(String),
    /// A stored value does not decode: the data directory is damaged.
    #[error("stored {what} does not decode: {source}")]
    Corrupt {
        /// Which kind of value.
        what: &'static str,
        /// The decode error.
        source: prost::DecodeError,
    },
}

/// The result of [`Store::publish`].
#[derive(Debug)]
pub enum PublishOutcome {
    /// The alert was new and is now stored with its deliveries.
    Stored,
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
    /// The recipient of each dropped copy.
    pub undelivered_to: Vec<String>,
    /// How many lookup index rows and hit flags were dropped.
    pub index_rows: usize,
}

/// Handle to the gateway's sled trees. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    alerts: sled::Tree,
    outbox: sled::Tree,
    expiry: sled::Tree,
    lookup: sled::Tree,
    hits: sled::Tree,
    access: sled::Tree,
    key: std::sync::Arc<isx_tls::at_rest::StoreKey>,
    /// Held while outbox sequence numbers are taken and their rows written,
    /// so that rows become visible in sequence order: a subscription never
    /// reads seq N+1 before seq N exists.
    order: std::sync::Arc<std::sync::Mutex<()>>,
    /// Fault switches for tests; inert unless a test sets one.
    faults: std::sync::Arc<crate::commit::Faults>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

fn outbox_key(node: &str, seq: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(node.len() + 9);
    key.extend_from_slice(node.as_bytes());
    key.push(0);
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

fn seq_of(key: &[u8]) -> u64 {
    let tail: [u8; 8] = key[key.len() - 8..].try_into().expect("outbox keys end in 8 bytes");
    u64::from_be_bytes(tail)
}

fn expiry_key(expires_ms: u64, alert_id: &str) -> Vec<u8> {
    let mut key = expires_ms.to_be_bytes().to_vec();
    key.extend_from_slice(alert_id.as_bytes());
    key
}

fn decode<M: Message + Default>(what: &'static str, bytes: &[u8]) -> Result<M, StoreError> {
    M::decode(bytes).map_err(|source| StoreError::Corrupt { what, source })
}

/// The associated data of a sealed value: its tree and key.
fn aad(tree: &str, key: &[u8]) -> Vec<u8> {
    [tree.as_bytes(), b"/", key].concat()
}

impl Store {
    /// Opens (or creates) the store in `dir`, sealed under the key at
    /// `key_file` (created with a new store if missing).
    pub fn open(dir: &std::path::Path, key_file: &std::path::Path) -> Result<Self, StoreError> {
        let db = isx_audit::open_db(dir)?;
        let meta = db.open_tree("meta")?;
        let alerts = db.open_tree("alerts")?;
        let outbox = db.open_tree("outbox")?;
        let canary = meta.get("canary")?;
        if canary.is_none() && (!alerts.is_empty() || !outbox.is_empty()) {
            return Err(StoreError::Unsealed(dir.display().to_string()));
        }
        let (key, fresh) = isx_tls::at_rest::StoreKey::for_store(key_file, canary.as_deref())?;
        if let Some(fresh) = fresh {
            meta.insert("canary", fresh)?;
            db.flush()?;
        }
        Ok(Self {
            alerts,
            outbox,
            expiry: db.open_tree("expiry")?,
            lookup: db.open_tree("lookup")?,
            hits: db.open_tree("hits")?,
            access: db.open_tree("access")?,
            key: std::sync::Arc::new(key),
            order: Default::default(),
            faults: Default::default(),
            db,
        })
    }

    /// The store with `faults` as its fault switches (see [`crate::commit::Faults`]).
    pub fn with_faults(mut self, faults: std::sync::Arc<crate::commit::Faults>) -> Self {
        self.faults = faults;
        self
    }

    /// Seals `value` for `tree` at `key`.
    fn seal(&self, tree: &str, key: &[u8], value: &[u8]) -> Vec<u8> {
        self.key.seal(&aad(tree, key), value)
    }

    /// Opens and decodes a sealed value of `tree` at `key`.
    fn unseal<M: Message + Default>(
        &self,
        what: &'static str,
        tree: &str,
        key: &[u8],
        sealed: &[u8],
    ) -> Result<M, StoreError> {
        let plain = self.key.open(&aad(tree, key), sealed)?;
        decode(what, &plain)
    }

    /// The underlying database, for the group committer.
    pub fn db(&self) -> &sled::Db {
        &self.db
    }

    /// Holds the ordering lock (see `order`) for the caller's outbox writes.
    pub(crate) fn ordered(&self) -> std::sync::MutexGuard<'_, ()> {
        self.order.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A fresh delivery sequence number, larger than every earlier one.
    /// Outbox writers take it under [`Store::ordered`]; [`Store::publish`]
    /// and the access-request writers do so themselves.
    pub fn next_seq(&self) -> Result<u64, StoreError> {
        // generate_id starts at 0; cursors start at 1 so that 0 means "from the start".
        Ok(self.db.generate_id()? + 1)
    }

    /// The stored alert with this id, if any.
    pub fn alert(&self, alert_id: &str) -> Result<Option<StoredAlert>, StoreError> {
        self.alerts.get(alert_id)?.map(|v| self.unseal("alert", "alerts", alert_id.as_bytes(), &v)).transpose()
    }

    /// Stores a new alert, its deliveries and its lookup index rows, unless
    /// its id exists. The rows become visible one by one, the alert row
    /// last; if a write fails, those already written are removed again.
    ///
    /// `deliveries` pairs each recipient with its delivery; their sequence
    /// numbers are assigned here, in the order the rows become visible.
    /// Nothing is durable until the caller's group commit completes.
    pub fn publish(
        &self,
        stored: &StoredAlert,
        deliveries: &mut [(NodeId, u64, Delivery)],
        expires_ms: u64,
        audit: &AuditFacts,
        index: &[IndexRow],
    ) -> Result<PublishOutcome, StoreError> {
        // Everything that does not depend on a sequence number is prepared
        // before `ordered` is taken, so that publishes wait on each other
        // only for the checks, the seal of each outbox entry and the writes.
        let alert_id = stored.alert.as_ref().map(|a| a.alert_id.as_str()).unwrap_or_default();
        let stored_bytes = self.seal("alerts", alert_id.as_bytes(), &stored.encode_to_vec());
        let encoded: Vec<Vec<u8>> = deliveries
            .iter()
            .map(|(_, _, delivery)| {
                OutboxEntry {
                    delivery: Some(delivery.clone()),
                    expires_ms,
                    audit: Some(audit.clone()),
                    ..Default::default()
                }
                .encode_to_vec()
            })
            .collect();
        let lookup_rows: Vec<(Vec<u8>, &str)> =
            index.iter().map(|r| (access::lookup_key(&r.pseudonym, alert_id), r.kind.as_str())).collect();
        let ekey = expiry_key(expires_ms, alert_id);

        let _order = self.ordered();
        // Plain inserts, not a sled transaction: a transaction takes sled's
        // process-wide write lock and stalls every other sled write in the
        // process. Only `publish` adds alerts, under `ordered`, so two
        // publishes of one id cannot both pass this check.
        if let Some(existing) = self.alerts.get(alert_id)? {
            let existing: StoredAlert = self.unseal("alert", "alerts", alert_id.as_bytes(), &existing)?;
            return Ok(if existing.digest == stored.digest {
                PublishOutcome::Duplicate(Box::new(existing))
            } else {
                PublishOutcome::Conflict
            });
        }
        for d in deliveries.iter_mut() {
            d.1 = self.next_seq()?;
        }
        // Each entry is sealed to its key, which holds its sequence number.
        let entries: Vec<(Vec<u8>, Vec<u8>)> = deliveries
            .iter()
            .zip(&encoded)
            .map(|((node, seq, _), bytes)| {
                let key = outbox_key(node.as_str(), *seq);
                let value = self.seal("outbox", &key, bytes);
                (key, value)
            })
            .collect();
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
                self.outbox.insert(key.as_slice(), value.as_slice())?;
            }
            if self.faults.fail_store_write.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(sled::Error::Unsupported("injected fault: store write".into()));
            }
            for (key, kind) in &lookup_rows {
                self.lookup.insert(key.as_slice(), kind.as_bytes())?;
            }
            self.expiry.insert(ekey.as_slice(), row.as_slice())?;
            self.alerts.insert(alert_id.as_bytes(), stored_bytes.as_slice())?;
            Ok(())
        })();
        if let Err(e) = written {
            // Take back what was written, so that the alert is not kept. A
            // subscription that read its outbox in between may still stream
            // the row, as between any publish's writes and its flush; its
            // disclosure record is written first, as always.
            let _ = self.retract(alert_id, deliveries, expires_ms, index);
            return Err(e.into());
        }
        Ok(PublishOutcome::Stored)
    }

    /// Undoes a [`Store::publish`] whose writes or flush failed: removes the
    /// alert, its outbox entries, its lookup rows and its expiry row, so that
    /// a later flush makes none of it visible.
    pub fn retract(
        &self,
        alert_id: &str,
        deliveries: &[(NodeId, u64, Delivery)],
        expires_ms: u64,
        index: &[IndexRow],
    ) -> Result<(), StoreError> {
        let trees = (&self.alerts, &self.outbox, &self.expiry, &self.lookup);
        let result = trees.transaction(|(alerts, outbox, expiry, lookup)| {
            alerts.remove(alert_id.as_bytes())?;
            for (node, seq, _) in deliveries {
                outbox.remove(outbox_key(node.as_str(), *seq))?;
            }
            for row in index {
                lookup.remove(access::lookup_key(&row.pseudonym, alert_id))?;
            }
            expiry.remove(expiry_key(expires_ms, alert_id))?;
            Ok::<_, ConflictableTransactionError<StoreError>>(())
        });
        match result {
            Ok(()) => Ok(()),
            Err(TransactionError::Abort(e)) => Err(e),
            Err(TransactionError::Storage(e)) => Err(e.into()),
        }
    }

    /// Up to `limit` events for `node` after `cursor`, skipping expired ones.
    pub fn pending(
        &self,
        node: &NodeId,
        cursor: u64,
        limit: usize,
        now_ms: u64,
    ) -> Result<Vec<(u64, OutboxEntry)>, StoreError> {
        let start = outbox_key(node.as_str(), cursor.saturating_add(1));
        let end = outbox_key(node.as_str(), u64::MAX);
        let mut out = Vec::new();
        for item in self.outbox.range(start..=end) {
            let (key, value) = item?;
            let entry: OutboxEntry = self.unseal("outbox entry", "outbox", &key, &value)?;
            if entry.expires_ms <= now_ms {
                continue;
            }
            if entry.has_event() {
                out.push((seq_of(&key), entry));
            }
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// How many deliveries wait for `node`.
    pub fn backlog(&self, node: &NodeId) -> usize {
        let mut prefix = node.as_str().as_bytes().to_vec();
        prefix.push(0);
        self.outbox.scan_prefix(prefix).count()
    }

    /// Releases every delivery for `node` up to and including `cursor`; returns how many.
    pub fn ack(&self, node: &NodeId, cursor: u64) -> Result<u64, StoreError> {
        let start = outbox_key(node.as_str(), 0);
        let end = outbox_key(node.as_str(), cursor);
        let mut released = 0;
        let keys: Vec<sled::IVec> = self.outbox.range(start..=end).keys().collect::<Result<_, _>>()?;
        for key in keys {
            if self.outbox.remove(key)?.is_some() {
                released += 1;
            }
        }
        Ok(released)
    }

    /// Drops every alert and undelivered copy whose `expires_at` is at or before `now_ms`.
    pub fn expire(&self, now_ms: u64) -> Result<Vec<Expired>, StoreError> {
        let end = (now_ms.saturating_add(1)).to_be_bytes();
        let mut expired = Vec::new();
        let rows: Vec<(sled::IVec, sled::IVec)> = self.expiry.range(..end.as_slice()).collect::<Result<_, _>>()?;
        for (key, value) in rows {
            let row: ExpiryRow = decode("expiry row", &value)?;
            let mut undelivered = 0;
            let mut undelivered_to = Vec::new();
            for okey in &row.outbox_keys {
                if self.outbox.remove(okey.as_slice())?.is_some() {
                    undelivered += 1;
                    let node = okey.split(|b| *b == 0).next().unwrap_or_default();
                    undelivered_to.push(String::from_utf8_lossy(node).into_owned());
                }
            }
            let alert_id = String::from_utf8_lossy(&key[8..]).into_owned();
            let mut index_rows = 0;
            for lkey in &row.lookup_keys {
                if self.lookup.remove(lkey.as_slice())?.is_some() {
                    index_rows += 1;
                }
            }
            index_rows += self.drop_hits(&alert_id)?;
            self.alerts.remove(alert_id.as_bytes())?;
            self.expiry.remove(key)?;
            expired.push(Expired { alert_id, undelivered, undelivered_to, index_rows });
        }
        Ok(expired)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(id: &str, narrative: &str) -> StoredAlert {
        let alert = Alert { alert_id: id.into(), narrative: narrative.into(), ..Default::default() };
        StoredAlert {
            digest: isx_core::digest::content_digest(&alert).to_vec(),
            alert: Some(alert),
            receipt: Some(Receipt::default()),
        }
    }

    fn delivery(id: &str) -> Delivery {
        Delivery { alert: Some(Alert { alert_id: id.into(), ..Default::default() }), ..Default::default() }
    }

    #[test]
    fn publish_pending_ack_expire() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db"), &dir.path().join("k.store.key")).unwrap();
        let fr = NodeId::new("fr-police").unwrap();
        let it = NodeId::new("it-police").unwrap();
        let mut first = [(fr.clone(), 0, delivery("a1")), (it.clone(), 0, delivery("a1"))];
        let out = store
            .publish(
                &stored("a1", "x"),
                &mut first,
                1000,
                &AuditFacts::default(),
                &[IndexRow { pseudonym: "p1".into(), kind: "plate".into() }],
            )
            .unwrap();
        assert!(matches!(out, PublishOutcome::Stored));
        let (s1, s2) = (first[0].1, first[1].1);
        assert!(s2 > s1 && s1 >= 1, "the store assigns increasing sequence numbers");
        assert!(matches!(
            store.publish(&stored("a1", "x"), &mut [], 1000, &AuditFacts::default(), &[]).unwrap(),
            PublishOutcome::Duplicate(_)
        ));
        assert!(matches!(
            store.publish(&stored("a1", "y"), &mut [], 1000, &AuditFacts::default(), &[]).unwrap(),
            PublishOutcome::Conflict
        ));

        let mut second = [(fr.clone(), 0, delivery("a2"))];
        store.publish(&stored("a2", "z"), &mut second, 5000, &AuditFacts::default(), &[]).unwrap();
        let s3 = second[0].1;
        let got: Vec<u64> = store.pending(&fr, 0, 10, 0).unwrap().into_iter().map(|(s, _)| s).collect();
        assert_eq!(got, vec![s1, s3]);
        assert_eq!(store.pending(&fr, s1, 10, 0).unwrap().len(), 1);
        assert_eq!(store.pending(&fr, 0, 1, 0).unwrap().len(), 1, "limit");
        assert_eq!(store.pending(&fr, 0, 10, 1000).unwrap().len(), 1, "expired entries are skipped");

        assert_eq!(store.ack(&fr, s1).unwrap(), 1);
        assert_eq!(store.ack(&fr, s1).unwrap(), 0, "acking twice releases nothing");
        assert_eq!(store.backlog(&fr), 1);
        assert_eq!(store.backlog(&it), 1);

        assert_eq!(store.lookup("p1").unwrap(), vec![("a1".to_owned(), "plate".to_owned())]);
        let expired = store.expire(1000).unwrap();
        assert_eq!(
            expired,
            vec![Expired {
                alert_id: "a1".into(),
                undelivered: 1,
                undelivered_to: vec!["it-police".into()],
                index_rows: 1
            }]
        );
        assert!(store.lookup("p1").unwrap().is_empty(), "the lookup rows expire with the alert");
        assert_eq!(store.backlog(&it), 0);
        assert!(store.alert("a1").unwrap().is_none());
        assert!(store.alert("a2").unwrap().is_some());
    }

    #[test]
    fn state_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let fr = NodeId::new("fr-police").unwrap();
        let seq = {
            let store = Store::open(&dir.path().join("db"), &dir.path().join("k.store.key")).unwrap();
            let mut one = [(fr.clone(), 0, delivery("a1"))];
            store.publish(&stored("a1", "x"), &mut one, 9000, &AuditFacts::default(), &[]).unwrap();
            store.db().flush().unwrap();
            one[0].1
        };
        let store = Store::open(&dir.path().join("db"), &dir.path().join("k.store.key")).unwrap();
        assert_eq!(store.pending(&fr, 0, 10, 0).unwrap()[0].0, seq);
        assert!(store.next_seq().unwrap() > seq);
    }
}
