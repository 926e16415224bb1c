//! The mock node's own store of what it received, in sled.
//!
//! Deliveries are at least once; the inbox keeps one record per `alert_id`,
//! so the effect is exactly once. A record is flushed before the node acks.

use std::path::Path;
use std::time::Duration;

use isx_core::wire::{Delivery, DisclosureLevel};
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
}

/// The node's received alerts. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Inbox {
    db: sled::Db,
    tree: sled::Tree,
    count: watch::Sender<u64>,
}

impl Inbox {
    /// Opens (or creates) the inbox under `dir`.
    pub fn open(dir: &Path) -> Result<Self, InboxError> {
        let db = sled::Config::new().path(dir.join("node.sled")).open()?;
        let tree = db.open_tree("received")?;
        let count = watch::channel(tree.len() as u64).0;
        Ok(Self { db, tree, count })
    }

    /// Stores a delivery unless its alert is already here; flushes; returns true if new.
    pub async fn store(&self, cursor: u64, delivery: Delivery, now_ms: u64) -> Result<bool, InboxError> {
        let id = delivery.alert.as_ref().map(|a| a.alert_id.clone()).unwrap_or_default();
        let new = match self.tree.get(&id)? {
            Some(existing) => {
                let mut record = Received::decode(&*existing)?;
                record.duplicates += 1;
                self.tree.insert(&id, record.encode_to_vec())?;
                false
            }
            None => {
                let record = Received { delivery: Some(delivery), received_ms: now_ms, cursor, duplicates: 0 };
                self.tree.insert(&id, record.encode_to_vec())?;
                true
            }
        };
        self.db.flush_async().await?;
        if new {
            self.count.send_modify(|c| *c += 1);
        }
        Ok(new)
    }

    /// Every received alert, oldest first.
    pub fn list(&self) -> Result<Vec<Received>, InboxError> {
        let mut all =
            self.tree.iter().values().map(|v| Ok(Received::decode(&*v?)?)).collect::<Result<Vec<_>, InboxError>>()?;
        all.sort_by_key(|r| (r.received_ms, r.cursor));
        Ok(all)
    }

    /// The record for one alert, if received.
    pub fn get(&self, alert_id: &str) -> Result<Option<Received>, InboxError> {
        Ok(self.tree.get(alert_id)?.map(|v| Received::decode(&*v)).transpose()?)
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
        let mut rx = self.count.subscribe();
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            rx.borrow_and_update();
            if let Some(r) = self.get(alert_id)? {
                return Ok(Some(r));
            }
            if tokio::time::timeout_at(deadline, rx.changed()).await.is_err() {
                return Ok(None);
            }
        }
    }
}
