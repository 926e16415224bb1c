//! The mock node's own store of what it received, in sled.
//!
//! Deliveries are at least once; the inbox keeps one record per `alert_id`,
//! so the effect is exactly once. A later copy of the same alert at a more
//! generous level (after an access grant) replaces the earlier view. A record
//! is flushed before the node acks.
//!
//! The inbox also keeps the latest known state of every access request the
//! node made or was asked to decide, by request id.
//!
//! Every value is sealed with the node's store key (`<pki>/<node>.store.key`,
//! `isx_tls::at_rest`): a copied data directory discloses nothing.

use std::path::Path;
use std::time::Duration;

use isx_core::wire::{AccessRequest, Delivery, DisclosureLevel};
use prost::Message;
use tokio::sync::watch;

/// One received alert as the node keeps it.
#[derive(Clone, PartialEq, Message)]
pub struct Received {
    /// The delivery as it arrived.
    #[prost(message, optional, tag = "1")]
    pub delivery: Option<Delivery>,
    /// When it arrived, Unix milliseconds.
    #[prost(uint64, tag = "2")]
    pub received_ms: u64,
    /// The gateway cursor it came with.
    #[prost(uint64, tag = "3")]
    pub cursor: u64,
    /// How many more times the same alert arrived and was dropped as a duplicate.
    #[prost(uint32, tag = "4")]
    pub duplicates: u32,
}

impl Received {
    /// The alert id.
    pub fn alert_id(&self) -> &str {
        self.delivery.as_ref().and_then(|d| d.alert.as_ref()).map(|a| a.alert_id.as_str()).unwrap_or_default()
    }

    /// The disclosure level.
    pub fn level(&self) -> DisclosureLevel {
        self.delivery.as_ref().map(|d| d.level()).unwrap_or(DisclosureLevel::Unspecified)
    }
}

/// Why the inbox failed.
#[derive(Debug, thiserror::Error)]
pub enum InboxError {
    /// sled failed.
    #[error("node store: {0}")]
    Sled(#[from] sled::Error),
    /// A stored record does not decode.
    #[error("node store holds a damaged record: {0}")]
    Corrupt(#[from] prost::DecodeError),
    /// The store key is missing or wrong, or a value does not open.
    #[error("node store: {0}")]
    AtRest(#[from] isx_tls::at_rest::AtRestError),
    /// The data directory predates encryption at rest.
    #[error("node store {0} holds data written without encryption at rest; move it away to start empty")]
    Unsealed(String),
}

/// The node's received alerts and access requests. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Inbox {
    db: sled::Db,
    tree: sled::Tree,
    access: sled::Tree,
    /// Bumped on every change, to wake waiters.
    count: watch::Sender<u64>,
    key: std::sync::Arc<isx_tls::at_rest::StoreKey>,
}

/// Lower is more generous; unspecified counts as least.
fn generosity(level: DisclosureLevel) -> i32 {
    match level {
        DisclosureLevel::Unspecified => i32::MAX,
        l => l as i32,
    }
}

/// The page-cache budget of an agency's sled database, in bytes.
const CACHE_BYTES: u64 = 4 << 20;

impl Inbox {
    /// Opens (or creates) the inbox under `dir`, sealed under the key at
    /// `key_file` (created with a new inbox if missing).
    pub fn open(dir: &Path, key_file: &Path) -> Result<Self, InboxError> {
        let db = isx_audit::open_db_with_cache(&dir.join("node.sled"), CACHE_BYTES)?;
        let tree = db.open_tree("received")?;
        let access = db.open_tree("access")?;
        let meta = db.open_tree("meta")?;
        let canary = meta.get("canary")?;
        if canary.is_none() && (!tree.is_empty() || !access.is_empty()) {
            return Err(InboxError::Unsealed(dir.display().to_string()));
        }
        let (key, fresh) = isx_tls::at_rest::StoreKey::for_store(key_file, canary.as_deref())?;
        if let Some(fresh) = fresh {
            meta.insert("canary", fresh)?;
            db.flush()?;
        }
        let count = watch::channel(0).0;
        Ok(Self { db, tree, access, count, key: std::sync::Arc::new(key) })
    }

    fn seal(&self, tree: &str, key: &[u8], value: &[u8]) -> Vec<u8> {
        self.key.seal(&[tree.as_bytes(), b"/", key].concat(), value)
    }

    fn unseal<M: Message + Default>(&self, tree: &str, key: &[u8], sealed: &[u8]) -> Result<M, InboxError> {
        let plain = self.key.open(&[tree.as_bytes(), b"/", key].concat(), sealed)?;
        Ok(M::decode(plain.as_slice())?)
    }

    /// Stores a delivery unless its alert is already here at the same or a
    /// more generous level; flushes; returns true if new or upgraded.
    pub async fn store(&self, cursor: u64, delivery: Delivery, now_ms: u64) -> Result<bool, InboxError> {
        let new = self.put(cursor, delivery, now_ms)?;
        self.flush_stored(1).await?;
        Ok(new)
    }

    /// Makes the last `n` deliveries written by [`Inbox::put`] durable, and
    /// counts them.
    pub async fn flush_stored(&self, n: u64) -> Result<(), InboxError> {
        self.db.flush_async().await?;
        self.count.send_modify(|c| *c += n);
        Ok(())
    }

    /// [`Inbox::store`] without the flush: not durable (and not counted)
    /// until [`Inbox::flush_stored`]. A node writes a batch, flushes once,
    /// then acknowledges the batch.
    pub fn put(&self, cursor: u64, delivery: Delivery, now_ms: u64) -> Result<bool, InboxError> {
        let id = delivery.alert.as_ref().map(|a| a.alert_id.clone()).unwrap_or_default();
        let new = match self.tree.get(&id)? {
            Some(existing) => {
                let mut record: Received = self.unseal("received", id.as_bytes(), &existing)?;
                let upgrade = generosity(delivery.level()) < generosity(record.level());
                if upgrade {
                    record.delivery = Some(delivery);
                    record.cursor = cursor;
                    record.received_ms = now_ms;
                } else {
                    record.duplicates += 1;
                }
                self.tree.insert(&id, self.seal("received", id.as_bytes(), &record.encode_to_vec()))?;
                upgrade
            }
            None => {
                let record = Received { delivery: Some(delivery), received_ms: now_ms, cursor, duplicates: 0 };
                self.tree.insert(&id, self.seal("received", id.as_bytes(), &record.encode_to_vec()))?;
                true
            }
        };
        Ok(new)
    }

    /// Keeps the latest state of an access request; flushes.
    pub async fn store_access(&self, request: &AccessRequest) -> Result<(), InboxError> {
        let key = request.request_id.as_bytes();
        self.access.insert(key, self.seal("access", key, &request.encode_to_vec()))?;
        self.db.flush_async().await?;
        self.count.send_modify(|c| *c += 1);
        Ok(())
    }

    /// The latest known state of an access request.
    pub fn access_request(&self, request_id: &str) -> Result<Option<AccessRequest>, InboxError> {
        self.access.get(request_id)?.map(|v| self.unseal("access", request_id.as_bytes(), &v)).transpose()
    }

    /// Every access request the node knows of, by id.
    pub fn access_requests(&self) -> Result<Vec<AccessRequest>, InboxError> {
        self.access
            .iter()
            .map(|item| {
                let (k, v) = item?;
                self.unseal("access", &k, &v)
            })
            .collect()
    }

    /// Waits until the access request satisfies `done` or `limit` passes; returns its last state.
    pub async fn wait_for_access(
        &self,
        request_id: &str,
        done: impl Fn(&AccessRequest) -> bool,
        limit: Duration,
    ) -> Result<Option<AccessRequest>, InboxError> {
        let mut rx = self.count.subscribe();
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            rx.borrow_and_update();
            let current = self.access_request(request_id)?;
            if current.as_ref().is_some_and(&done) {
                return Ok(current);
            }
            if tokio::time::timeout_at(deadline, rx.changed()).await.is_err() {
                return Ok(current);
            }
        }
    }

    /// Every received alert, oldest first.
    pub fn list(&self) -> Result<Vec<Received>, InboxError> {
        let mut all = self
            .tree
            .iter()
            .map(|item| {
                let (k, v) = item?;
                self.unseal("received", &k, &v)
            })
            .collect::<Result<Vec<Received>, InboxError>>()?;
        all.sort_by_key(|r| (r.received_ms, r.cursor));
        Ok(all)
    }

    /// The record for one alert, if received.
    pub fn get(&self, alert_id: &str) -> Result<Option<Received>, InboxError> {
        self.tree.get(alert_id)?.map(|v| self.unseal("received", alert_id.as_bytes(), &v)).transpose()
    }

    /// How many distinct alerts were received.
    pub fn len(&self) -> usize {
        self.tree.len()
    }

    /// True if nothing was received.
    pub fn is_empty(&self) -> bool {
        self.tree.is_empty()
    }

    /// Waits until `alert_id` is here or `limit` passes; returns the record if it arrived.
    pub async fn wait_for(&self, alert_id: &str, limit: Duration) -> Result<Option<Received>, InboxError> {
        self.wait_until(alert_id, |_| true, limit).await
    }

    /// Waits until the record of `alert_id` satisfies `done` (e.g. a level)
    /// or `limit` passes; returns the record if it then satisfies `done`.
    pub async fn wait_until(
        &self,
        alert_id: &str,
        done: impl Fn(&Received) -> bool,
        limit: Duration,
    ) -> Result<Option<Received>, InboxError> {
        let mut rx = self.count.subscribe();
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            rx.borrow_and_update();
            if let Some(r) = self.get(alert_id)?.filter(&done) {
                return Ok(Some(r));
            }
            if tokio::time::timeout_at(deadline, rx.changed()).await.is_err() {
                return Ok(None);
            }
        }
    }
}
