//! The alert lifecycle's rows: per-copy status, the alert's versions, held
//! deliveries, forward links, and the pending fan-out of a change.
//!
//! # Trees
//! - `status` (sealed): `h ‖ alert_id` → [`StatusHead`] (state, versions,
//!   when the alert ended) and `c ‖ alert_id ‖ 0x00 ‖ node` →
//!   [`CopyStatus`]: what the holder was last asked to do and what it
//!   confirmed. Kept `lifecycle.keep_status` after the alert ends, so it
//!   outlives the alert row.
//! - `held` (sealed): `alert_id ‖ 0x00 ‖ node ‖ 0x00 ‖ seq` → an
//!   [`OutboxEntry`] held back while the alert is restricted.
//! - `forwards`: `alert_id ‖ 0x00 ‖ forward_id` → empty: the relays
//!   published of an alert, so that a withdrawal follows the chain.
//! - `fanout` (sealed): `alert_id` → [`PendingChange`]: a change whose
//!   record is durable and whose effects are not applied yet.
//!
//! # Crash safety
//! A change is staged ([`Store::stage_change`]: its marker alone), then
//! committed together with its audit record, then applied
//! ([`Store::apply_change`]: one sled transaction that writes every effect
//! and removes the marker). A crash between the two leaves the marker,
//! which the next start applies ([`Store::pending_changes`]). A crash
//! during the apply leaves the marker too (the transaction is atomic), so
//! every effect happens exactly once.

use isx_core::wire::{AlertState, AlertVersion, CopyStatus};
use prost::Message;
use sled::Transactional;
use sled::transaction::ConflictableTransactionError;

use super::error::{StoreError, finish};
use super::keys::{hit_by_alert_key, hit_key, outbox_key};
use super::{ExpiryRow, InFlight, Outgoing, Queued, Store, StoredAlert};

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
    pub entry: Option<super::OutboxEntry>,
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
            stored: Option<Vec<u8>>,
            head: Option<Vec<u8>>,
            copies: Vec<(Vec<u8>, Vec<u8>)>,
            hits: Vec<Vec<u8>>,
            held: Vec<(Vec<u8>, super::OutboxEntry)>,
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
                stored: part.stored.as_ref().map(|s| self.alerts.seal_message(id.as_bytes(), s)),
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
                    let node = String::from_utf8_lossy(super::keys::node_of(okey)).into_owned();
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
            row.outbox_keys.retain(|k| !part.drop_outbox.contains(k) && !part.hold_outbox.contains(k));
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
            for (i, part) in change.parts.iter().enumerate() {
                let p = &prepared[i];
                let id = part.alert_id.as_bytes();
                if part.remove_alert {
                    alerts.remove(id)?;
                } else if let Some(s) = &p.stored {
                    alerts.insert(id, s.as_slice())?;
                }
                if let Some(h) = &p.head {
                    status.insert(head_key(&part.alert_id), h.as_slice())?;
                }
                for (k, v) in &p.copies {
                    status.insert(k.as_slice(), v.as_slice())?;
                }
                for k in &part.drop_outbox {
                    if outbox.remove(k.as_slice())?.is_some() {
                        removed.push(k.clone());
                    }
                }
                for k in &part.hold_outbox {
                    if let Some(v) = outbox.remove(k.as_slice())? {
                        let entry: super::OutboxEntry = self
                            .outbox
                            .unseal("outbox entry", k, &v)
                            .map_err(|e| ConflictableTransactionError::Abort(StoreError::from(e)))?;
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
                    self.queues.sub(&String::from_utf8_lossy(super::keys::node_of(k)), 1);
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
