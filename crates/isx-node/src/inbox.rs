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
//! [`isx_store::SealedDb`]): a copied data directory discloses nothing.

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
    /// The alert's version this copy holds (or held, once deleted).
    #[prost(uint32, tag = "5")]
    pub version: u32,
    /// The origin restricted the alert's processing: the copy is marked.
    #[prost(bool, tag = "6")]
    pub restricted: bool,
    /// When the copy was deleted (withdrawn, expired, or no longer allowed
    /// by policy after an amendment), Unix milliseconds; 0 while held. A
    /// deleted copy keeps only this record (`delivery` is `None`), so that a
    /// late delivery of an older version cannot bring it back.
    #[prost(uint64, tag = "7")]
    pub deleted_ms: u64,
    /// The alert id (kept after deletion, when `delivery` is gone).
    #[prost(string, tag = "8")]
    pub id: String,
    /// The last change applied, as `isx.v1.ChangeKind` (0: none).
    #[prost(enumeration = "isx_core::wire::ChangeKind", tag = "9")]
    pub last_change: i32,
}

impl Received {
    /// The alert id.
    pub fn alert_id(&self) -> &str {
        if !self.id.is_empty() {
            return &self.id;
        }
        self.delivery.as_ref().and_then(|d| d.alert.as_ref()).map(|a| a.alert_id.as_str()).unwrap_or_default()
    }

    /// True once the copy was deleted (only the record that says so is kept).
    pub fn is_deleted(&self) -> bool {
        self.deleted_ms != 0
    }

    /// The disclosure level.
    pub fn level(&self) -> DisclosureLevel {
        self.delivery.as_ref().map(|d| d.level()).unwrap_or(DisclosureLevel::Unspecified)
    }
}

/// Why the inbox failed: its sealed store (see [`isx_store::StoreError`]).
pub type InboxError = isx_store::StoreError;

/// The node's received alerts and access requests. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Inbox {
    /// The sealed database.
    db: isx_store::SealedDb,
    /// `alert_id` → [`Received`].
    tree: isx_store::SealedTree,
    /// `request_id` → the latest known `isx.v1.AccessRequest`.
    access: isx_store::SealedTree,
    /// Bumped on every change, to wake waiters.
    count: watch::Sender<u64>,
}

/// Lower is more generous; unspecified counts as least.
fn generosity(level: DisclosureLevel) -> i32 {
    match level {
        DisclosureLevel::Unspecified => i32::MAX,
        l => l as i32,
    }
}

impl Inbox {
    /// Opens (or creates) the inbox under `dir`, sealed under the key at
    /// `key_file` (created with a new inbox if missing).
    pub fn open(dir: &Path, key_file: &Path) -> Result<Self, InboxError> {
        let db = isx_store::SealedDb::open(
            &dir.join("node.sled"),
            key_file,
            isx_store::AGENCY_CACHE_BYTES,
            &["received", "access"],
        )?;
        let tree = db.sealed("received")?;
        let access = db.sealed("access")?;
        let count = watch::channel(0).0;
        Ok(Self { db, tree, access, count })
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
        self.db.db().flush_async().await?;
        self.count.send_modify(|c| *c += n);
        Ok(())
    }

    /// [`Inbox::store`] without the flush: not durable (and not counted)
    /// until [`Inbox::flush_stored`]. A node writes a batch, flushes once,
    /// then acknowledges the batch.
    pub fn put(&self, cursor: u64, delivery: Delivery, now_ms: u64) -> Result<bool, InboxError> {
        let id = delivery.alert.as_ref().map(|a| a.alert_id.clone()).unwrap_or_default();
        let new = match self.tree.get::<Received>("received alert", id.as_bytes())? {
            Some(mut record) => {
                let upgrade = generosity(delivery.level()) < generosity(record.level());
                if upgrade {
                    record.delivery = Some(delivery);
                    record.cursor = cursor;
                    record.received_ms = now_ms;
                } else {
                    record.duplicates += 1;
                }
                self.tree.insert(id.as_bytes(), &record)?;
                upgrade
            }
            None => {
                let version = delivery.alert.as_ref().map(|a| a.version).unwrap_or_default();
                let record = Received {
                    delivery: Some(delivery),
                    received_ms: now_ms,
                    cursor,
                    version,
                    id: id.clone(),
                    ..Default::default()
                };
                self.tree.insert(id.as_bytes(), &record)?;
                true
            }
        };
        Ok(new)
    }

    /// Keeps the latest state of an access request; flushes.
    pub async fn store_access(&self, request: &AccessRequest) -> Result<(), InboxError> {
        self.access.insert(request.request_id.as_bytes(), request)?;
        self.db.db().flush_async().await?;
        self.count.send_modify(|c| *c += 1);
        Ok(())
    }

    /// The latest known state of an access request.
    pub fn access_request(&self, request_id: &str) -> Result<Option<AccessRequest>, InboxError> {
        self.access.get("access request", request_id.as_bytes())
    }

    /// Every access request the node knows of, by id.
    pub fn access_requests(&self) -> Result<Vec<AccessRequest>, InboxError> {
        self.access.iter("access request").map(|item| item.map(|(_, r)| r)).collect()
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
        let mut all =
            self.tree.iter("received alert").map(|item| item.map(|(_, r)| r)).collect::<Result<Vec<Received>, _>>()?;
        all.sort_by_key(|r| (r.received_ms, r.cursor));
        Ok(all)
    }

    /// The record for one alert, if received.
    pub fn get(&self, alert_id: &str) -> Result<Option<Received>, InboxError> {
        self.tree.get("received alert", alert_id.as_bytes())
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
