//! The hit/no-hit index and the hit flags given to callers.
//!
//! - `lookup`: `pseudonym ‖ 0x00 ‖ alert_id` → identifier type. The
//!   pseudonym is the HMAC of a normalised identifier; no identifier is ever
//!   stored here.
//! - `hits`: `h ‖ hit_id` → [`HitRow`], and `a ‖ alert_id ‖ 0x00 ‖ hit_id`
//!   → empty, so that the hits of an expiring alert are dropped with it.

use prost::Message;
use sled::transaction::ConflictableTransactionError;

use super::error::{StoreError, finish};
use super::keys::{hit_by_alert_key, hit_key, lookup_key};

/// A hit flag given to one caller for one alert.
#[derive(Clone, PartialEq, Message)]
pub struct HitRow {
    /// The node that looked up and may follow the hit up.
    #[prost(string, tag = "1")]
    pub requester: String,
    /// The alert that matched.
    #[prost(string, tag = "2")]
    pub alert_id: String,
    /// The node that holds the alert.
    #[prost(string, tag = "3")]
    pub holder: String,
    /// When the hit was first given, Unix milliseconds.
    #[prost(uint64, tag = "4")]
    pub first_seen_ms: u64,
    /// The latest access request made on this hit, if any.
    #[prost(string, tag = "5")]
    pub request_id: String,
    /// The requester recorded that it will not follow the hit up.
    #[prost(bool, tag = "6")]
    pub declined: bool,
}

/// One row of the lookup index: an identifier's pseudonym (hex) and its type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexRow {
    /// HMAC-SHA256 of the normalised identifier, hex.
    pub pseudonym: String,
    /// `document`, `name`, `plate` or `firearm`.
    pub kind: String,
}

/// One alert that a pseudonym matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Match {
    /// The alert.
    pub alert_id: String,
    /// The type of identifier that matched.
    pub kind: String,
}

/// The `lookup` and `hits` trees.
#[derive(Debug, Clone)]
pub struct LookupIndex {
    /// Pseudonym → alert.
    pub(super) lookup: sled::Tree,
    /// Hit flags.
    pub(super) hits: sled::Tree,
}

impl LookupIndex {
    /// The alerts indexed under one identifier pseudonym, at most `limit`.
    pub fn matches(&self, pseudonym: &str, limit: usize) -> Result<Vec<Match>, StoreError> {
        let prefix = lookup_key(pseudonym, "");
        self.lookup
            .scan_prefix(&prefix)
            .take(limit)
            .map(|item| {
                let (key, kind) = item?;
                Ok(Match {
                    alert_id: String::from_utf8_lossy(&key[prefix.len()..]).into_owned(),
                    kind: String::from_utf8_lossy(&kind).into_owned(),
                })
            })
            .collect()
    }

    /// Every key of the lookup index (for tests and integrity checks).
    pub fn keys(&self) -> Result<Vec<Vec<u8>>, StoreError> {
        Ok(self.lookup.iter().keys().map(|k| k.map(|k| k.to_vec())).collect::<Result<_, _>>()?)
    }

    /// The hit flag with this id.
    pub fn hit(&self, hit_id: &str) -> Result<Option<HitRow>, StoreError> {
        self.hits.get(hit_key(hit_id))?.map(|v| isx_store::decode("hit", &v).map_err(Into::into)).transpose()
    }

    /// Records hit flags that are not yet recorded; known hits keep their state.
    pub fn record_hits(&self, hits: &[(String, HitRow)]) -> Result<(), StoreError> {
        let rows: Vec<(Vec<u8>, Vec<u8>, Vec<u8>)> = hits
            .iter()
            .map(|(id, row)| (hit_key(id), hit_by_alert_key(&row.alert_id, id), row.encode_to_vec()))
            .collect();
        finish(self.hits.transaction(|tx| {
            for (key, by_alert, value) in &rows {
                if tx.get(key.as_slice())?.is_none() {
                    tx.insert(key.as_slice(), value.as_slice())?;
                    tx.insert(by_alert.as_slice(), &[])?;
                }
            }
            Ok::<_, ConflictableTransactionError<StoreError>>(())
        }))
    }

    /// Replaces a hit flag's state.
    pub fn update_hit(&self, hit_id: &str, row: &HitRow) -> Result<(), StoreError> {
        self.hits.insert(hit_key(hit_id), row.encode_to_vec())?;
        Ok(())
    }

    /// Drops the index rows `keys` and every hit flag of `alert_id`; returns how many went.
    pub(super) fn drop_alert(&self, alert_id: &str, keys: &[Vec<u8>]) -> Result<usize, StoreError> {
        let mut dropped = 0;
        for key in keys {
            if self.lookup.remove(key.as_slice())?.is_some() {
                dropped += 1;
            }
        }
        let prefix = hit_by_alert_key(alert_id, "");
        let hit_keys: Vec<sled::IVec> = self.hits.scan_prefix(&prefix).keys().collect::<Result<_, _>>()?;
        for key in &hit_keys {
            let hit_id = String::from_utf8_lossy(&key[prefix.len()..]).into_owned();
            self.hits.remove(hit_key(&hit_id))?;
            self.hits.remove(key)?;
        }
        Ok(dropped + hit_keys.len())
    }
}
