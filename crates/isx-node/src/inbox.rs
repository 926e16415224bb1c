//! The mock node's own store of what it received, in sled.
//!
//! Deliveries are at least once; the inbox keeps one record per `alert_id`,
//! so the effect is exactly once. A later copy of the same alert at a more
//! generous level (after an access grant) replaces the earlier view, and so
//! does a delivery of a newer version. A record is flushed before the node
//! acks.
//!
//! The origin's changes (`isx.v1.AlertChange`) are applied by
//! [`Inbox::apply`] with the rules of [`apply_change`]: an UPDATE replaces
//! the copy with the new view, a WITHDRAWAL or EXPIRY deletes its content
//! and keeps a tombstone (id, version, deletion time, last change), a
//! RESTRICTION marks it and a LIFT unmarks it. Each is idempotent: a change
//! applied again, or one older than the copy, changes nothing and is still
//! confirmed with the copy's state. A tombstone keeps a late delivery of the
//! version it deleted (or an older one) from bringing the copy back.
//!
//! The inbox also keeps the latest known state of every access request the
//! node made or was asked to decide, by request id.
//!
//! Every value is sealed with the node's store key (`<pki>/<node>.store.key`,
//! [`isx_store::SealedDb`]): a copied data directory discloses nothing.

use std::path::Path;
use std::time::Duration;

use isx_core::wire::{
    AccessRequest, AlertChange, ChangeConfirmation, ChangeKind, CopyState, Delivery, DisclosureLevel,
};
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

    /// The state the copy is in, as a confirmation names it: deleted,
    /// restricted (marked) or held.
    pub fn copy_state(&self) -> CopyState {
        if self.is_deleted() {
            CopyState::Deleted
        } else if self.restricted {
            CopyState::Restricted
        } else {
            CopyState::Held
        }
    }

    /// The confirmation that names this copy's version and state.
    pub fn confirmation(&self) -> ChangeConfirmation {
        ChangeConfirmation {
            alert_id: self.alert_id().to_owned(),
            version: self.version,
            state: self.copy_state() as i32,
        }
    }
}

/// The version an alert view carries: 1 when the gateway left it unset.
fn version_of(delivery: &Delivery) -> u32 {
    delivery.alert.as_ref().map(|a| a.version).unwrap_or_default().max(1)
}

/// What applying one change did to a copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeEffect {
    /// The copy changed (replaced, deleted, marked or unmarked, or a
    /// tombstone or mark was kept for an alert not held).
    Applied,
    /// The copy was already in the state the change asks for (a change
    /// delivered again, e.g. after a crash before its ack).
    Repeated,
    /// The copy is newer than the change (or already deleted), which
    /// therefore changes nothing.
    Stale,
}

/// A change that cannot be applied: it is acknowledged but not confirmed,
/// so the gateway shows the copy unconfirmed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChangeRefused {
    /// The change names no kind the node knows.
    #[error("change of alert {alert_id:?} has no known kind ({kind})")]
    UnknownKind {
        /// The alert.
        alert_id: String,
        /// The kind as sent.
        kind: i32,
    },
    /// An UPDATE without the new view, or with a view of another alert.
    #[error("update of alert {alert_id:?} carries no view of it")]
    NoView {
        /// The alert.
        alert_id: String,
    },
}

/// One change applied to a copy: the record as it now is, and what changed.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    /// The copy (or its tombstone) after the change.
    pub record: Received,
    /// Whether the change did anything.
    pub effect: ChangeEffect,
}

impl Applied {
    /// The confirmation to send once the record is flushed: the copy's
    /// version and the state it is in.
    pub fn confirmation(&self) -> ChangeConfirmation {
        self.record.confirmation()
    }
}

/// Applies `change` (arrived with `cursor` at `now_ms`) to `prior`, the
/// copy of its alert the node holds (`None`: never held, or lost in a
/// reset). Pure; [`Inbox::apply`] reads and writes the record around it.
///
/// | change | held at v < change | held at v = change | held at v > change | tombstone | not held |
/// |---|---|---|---|---|---|
/// | UPDATE | replaced by the new view | repeated | stale | replaced if newer, else stale | stored |
/// | WITHDRAWAL, EXPIRY | tombstone | tombstone | stale | newer version kept, else repeated | tombstone |
/// | RESTRICTION | marked | marked | stale | stale | a mark without content |
/// | LIFT | unmarked | unmarked | stale | stale | a mark without content, unmarked |
///
/// "Repeated" and "stale" leave the record as it was.
pub fn apply_change(
    prior: Option<Received>,
    change: &AlertChange,
    cursor: u64,
    now_ms: u64,
) -> Result<Applied, ChangeRefused> {
    let alert_id = change.alert_id.clone();
    let kind = ChangeKind::try_from(change.kind).unwrap_or(ChangeKind::Unspecified);
    let fresh = || Received { id: alert_id.clone(), received_ms: now_ms, cursor, ..Default::default() };
    let unchanged = |record: Received, effect| Ok(Applied { record, effect });
    match kind {
        ChangeKind::Unspecified => Err(ChangeRefused::UnknownKind { alert_id, kind: change.kind }),
        ChangeKind::Update => {
            let view = change
                .delivery
                .clone()
                .filter(|d| d.alert.as_ref().is_some_and(|a| a.alert_id == alert_id))
                .ok_or_else(|| ChangeRefused::NoView { alert_id: alert_id.clone() })?;
            let version = change.version.max(version_of(&view));
            let mut record = match prior {
                Some(r) if r.version > version || (r.version == version && r.is_deleted()) => {
                    return unchanged(r, ChangeEffect::Stale);
                }
                Some(r) if r.version == version && r.delivery.is_some() => {
                    return unchanged(r, ChangeEffect::Repeated);
                }
                // Older, a mark without content, or a tombstone of an older
                // version (the new version reaches the node again).
                Some(r) => Received { duplicates: r.duplicates, restricted: r.restricted, ..fresh() },
                None => fresh(),
            };
            record.delivery = Some(view);
            record.version = version;
            record.deleted_ms = 0;
            record.last_change = kind as i32;
            match change.state() {
                CopyState::Restricted => record.restricted = true,
                CopyState::Held => record.restricted = false,
                _ => {}
            }
            Ok(Applied { record, effect: ChangeEffect::Applied })
        }
        ChangeKind::Withdrawal | ChangeKind::Expiry => {
            let mut record = match prior {
                Some(r) if r.version > change.version && !r.is_deleted() => return unchanged(r, ChangeEffect::Stale),
                Some(r) if r.is_deleted() && r.version >= change.version => {
                    let effect = if r.version == change.version { ChangeEffect::Repeated } else { ChangeEffect::Stale };
                    return unchanged(r, effect);
                }
                Some(r) => r,
                None => fresh(),
            };
            if !record.is_deleted() {
                record.deleted_ms = now_ms.max(1);
            }
            record.delivery = None;
            record.version = record.version.max(change.version);
            record.restricted = false;
            record.last_change = kind as i32;
            record.cursor = cursor;
            Ok(Applied { record, effect: ChangeEffect::Applied })
        }
        ChangeKind::Restriction | ChangeKind::Lift => {
            let marked = kind == ChangeKind::Restriction;
            let mut record = match prior {
                Some(r) if r.is_deleted() || r.version > change.version => return unchanged(r, ChangeEffect::Stale),
                Some(r) if r.restricted == marked && r.last_change == kind as i32 => {
                    return unchanged(r, ChangeEffect::Repeated);
                }
                Some(r) => r,
                None => Received { version: change.version, ..fresh() },
            };
            record.restricted = marked;
            record.last_change = kind as i32;
            record.cursor = cursor;
            Ok(Applied { record, effect: ChangeEffect::Applied })
        }
    }
}

/// Merges a delivery into `prior`: returns the record to keep and whether
/// it is new to the node (first copy, a newer version, or a more generous
/// view). A delivery of a version a tombstone deleted (or older) is a
/// duplicate: a withdrawn copy does not come back.
pub fn merge_delivery(prior: Option<Received>, cursor: u64, delivery: Delivery, now_ms: u64) -> (Received, bool) {
    let id = delivery.alert.as_ref().map(|a| a.alert_id.clone()).unwrap_or_default();
    let version = version_of(&delivery);
    let take = |mut record: Received, delivery: Delivery| {
        record.delivery = Some(delivery);
        record.cursor = cursor;
        record.received_ms = now_ms;
        record.version = version;
        record.deleted_ms = 0;
        record.id.clone_from(&id);
        record
    };
    match prior {
        None => (take(Received::default(), delivery), true),
        Some(mut record) => {
            // A mark kept for an alert not held yet takes any version.
            let awaited = record.delivery.is_none() && !record.is_deleted();
            let have = if record.delivery.is_some() { record.version.max(1) } else { record.version };
            let newer = version > have;
            let same = version == have && !record.is_deleted();
            let generous = generosity(delivery.level()) < generosity(record.level());
            if awaited || newer || (same && generous) {
                (take(record, delivery), true)
            } else {
                record.duplicates += 1;
                (record, false)
            }
        }
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
        let prior = self.tree.get::<Received>("received alert", id.as_bytes())?;
        let (record, new) = merge_delivery(prior, cursor, delivery, now_ms);
        self.tree.insert(id.as_bytes(), &record)?;
        Ok(new)
    }

    /// Applies an origin's change to the copy of its alert ([`apply_change`])
    /// without flushing: not durable (and not counted) until
    /// [`Inbox::flush_stored`], after which the node confirms it. A change
    /// that changes nothing writes nothing. The outer `Err` is the store's;
    /// the inner one a change that cannot be applied.
    pub fn apply(
        &self,
        cursor: u64,
        change: &AlertChange,
        now_ms: u64,
    ) -> Result<Result<Applied, ChangeRefused>, InboxError> {
        let prior = self.get(&change.alert_id)?;
        let applied = match apply_change(prior, change, cursor, now_ms) {
            Ok(applied) => applied,
            Err(refused) => return Ok(Err(refused)),
        };
        if applied.effect == ChangeEffect::Applied {
            self.tree.insert(change.alert_id.as_bytes(), &applied.record)?;
        }
        Ok(Ok(applied))
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

#[cfg(test)]
mod tests {
    use isx_core::wire::{Alert, AlertChange, ChangeKind, CopyState, Delivery, DisclosureLevel};

    use super::*;

    use ChangeEffect::{Applied as A, Repeated as R, Stale as S};
    use ChangeKind::{Expiry, Lift, Restriction, Update, Withdrawal};
    use CopyState::{Deleted, Held, Restricted};
    use DisclosureLevel::{Full, HitOnly, Redacted};

    const ID: &str = "alert-1";

    fn view(version: u32, level: DisclosureLevel) -> Delivery {
        Delivery {
            alert: Some(Alert {
                alert_id: ID.into(),
                version,
                narrative: format!("version {version}"),
                ..Default::default()
            }),
            level: level as i32,
            ..Default::default()
        }
    }

    /// A copy as the node may hold it before a change.
    #[derive(Debug, Clone, Copy)]
    enum Prior {
        /// Never held (or lost in a reset).
        None,
        /// Held at a version and level.
        Held(u32, DisclosureLevel),
        /// Held and marked restricted.
        Marked(u32),
        /// Deleted at a version.
        Tombstone(u32),
        /// A mark kept for an alert not held yet.
        MarkOnly(u32),
    }

    fn prior(p: Prior) -> Option<Received> {
        let held = |v, level| Received {
            delivery: Some(view(v, level)),
            received_ms: 10,
            cursor: 1,
            version: v,
            id: ID.into(),
            ..Default::default()
        };
        match p {
            Prior::None => None,
            Prior::Held(v, level) => Some(held(v, level)),
            Prior::Marked(v) => Some(Received { restricted: true, last_change: Restriction as i32, ..held(v, Full) }),
            Prior::Tombstone(v) => Some(Received {
                version: v,
                deleted_ms: 20,
                id: ID.into(),
                last_change: Withdrawal as i32,
                ..Default::default()
            }),
            Prior::MarkOnly(v) => Some(Received {
                version: v,
                restricted: true,
                id: ID.into(),
                last_change: Restriction as i32,
                ..Default::default()
            }),
        }
    }

    fn change(kind: ChangeKind, version: u32, state: CopyState, level: Option<DisclosureLevel>) -> AlertChange {
        AlertChange {
            alert_id: ID.into(),
            kind: kind as i32,
            version,
            state: state as i32,
            delivery: level.map(|l| view(version, l)),
            ..Default::default()
        }
    }

    /// What a copy is: version, state, the level of the content it holds
    /// (`None`: no content), the last change.
    type Shape = (u32, CopyState, Option<DisclosureLevel>, i32);

    fn shape(r: &Received) -> Shape {
        (r.version, r.copy_state(), r.delivery.as_ref().map(|d| d.level()), r.last_change)
    }

    #[test]
    fn each_change_reaches_the_state_its_kind_asks_for_from_every_prior_copy() {
        let none = 0;
        let upd = Update as i32;
        let wd = Withdrawal as i32;
        let exp = Expiry as i32;
        let res = Restriction as i32;
        let lift = Lift as i32;
        #[rustfmt::skip]
        let cases: &[(Prior, AlertChange, Shape, ChangeEffect)] = &[
            // UPDATE: the new view replaces the copy.
            (Prior::None,              change(Update, 2, Held, Some(Redacted)),       (2, Held, Some(Redacted), upd), A),
            (Prior::Held(1, Full),     change(Update, 2, Held, Some(Redacted)),       (2, Held, Some(Redacted), upd), A),
            (Prior::Held(2, Redacted), change(Update, 2, Held, Some(Redacted)),       (2, Held, Some(Redacted), none), R),
            (Prior::Held(3, Full),     change(Update, 2, Held, Some(Redacted)),       (3, Held, Some(Full), none), S),
            (Prior::Marked(1),         change(Update, 2, Restricted, Some(HitOnly)),  (2, Restricted, Some(HitOnly), upd), A),
            (Prior::Marked(1),         change(Update, 2, Held, Some(Full)),           (2, Held, Some(Full), upd), A),
            (Prior::Tombstone(1),      change(Update, 2, Held, Some(Full)),           (2, Held, Some(Full), upd), A),
            (Prior::Tombstone(2),      change(Update, 2, Held, Some(Full)),           (2, Deleted, None, wd), S),
            (Prior::MarkOnly(1),       change(Update, 2, Restricted, Some(Full)),     (2, Restricted, Some(Full), upd), A),
            // WITHDRAWAL and EXPIRY: the content goes, a tombstone stays.
            (Prior::None,              change(Withdrawal, 1, Deleted, None),          (1, Deleted, None, wd), A),
            (Prior::Held(1, Full),     change(Withdrawal, 1, Deleted, None),          (1, Deleted, None, wd), A),
            (Prior::Held(1, Full),     change(Withdrawal, 2, Deleted, None),          (2, Deleted, None, wd), A),
            (Prior::Held(3, Full),     change(Withdrawal, 2, Deleted, None),          (3, Held, Some(Full), none), S),
            (Prior::Marked(1),         change(Withdrawal, 1, Deleted, None),          (1, Deleted, None, wd), A),
            (Prior::Tombstone(1),      change(Withdrawal, 1, Deleted, None),          (1, Deleted, None, wd), R),
            (Prior::Tombstone(2),      change(Withdrawal, 1, Deleted, None),          (2, Deleted, None, wd), S),
            (Prior::Tombstone(1),      change(Expiry, 2, Deleted, None),              (2, Deleted, None, exp), A),
            (Prior::MarkOnly(1),       change(Withdrawal, 1, Deleted, None),          (1, Deleted, None, wd), A),
            (Prior::None,              change(Expiry, 3, Deleted, None),              (3, Deleted, None, exp), A),
            (Prior::Held(1, Redacted), change(Expiry, 1, Deleted, None),              (1, Deleted, None, exp), A),
            // RESTRICTION marks, LIFT unmarks; a deleted copy stays deleted.
            (Prior::Held(1, Full),     change(Restriction, 1, Restricted, None),      (1, Restricted, Some(Full), res), A),
            (Prior::Marked(1),         change(Restriction, 1, Restricted, None),      (1, Restricted, Some(Full), res), R),
            (Prior::Held(2, Full),     change(Restriction, 1, Restricted, None),      (2, Held, Some(Full), none), S),
            (Prior::Tombstone(1),      change(Restriction, 1, Restricted, None),      (1, Deleted, None, wd), S),
            (Prior::None,              change(Restriction, 1, Restricted, None),      (1, Restricted, None, res), A),
            (Prior::Marked(1),         change(Lift, 1, Held, None),                   (1, Held, Some(Full), lift), A),
            (Prior::Held(1, Full),     change(Lift, 1, Held, None),                   (1, Held, Some(Full), lift), A),
            (Prior::Tombstone(1),      change(Lift, 1, Held, None),                   (1, Deleted, None, wd), S),
            (Prior::MarkOnly(1),       change(Lift, 1, Held, None),                   (1, Held, None, lift), A),
        ];
        for (i, (before, change, want, effect)) in cases.iter().enumerate() {
            let got = apply_change(prior(*before), change, 9, 1_000).unwrap();
            let what = format!("case {i}: {before:?} + {:?} v{}", change.kind(), change.version);
            assert_eq!(shape(&got.record), *want, "{what}");
            assert_eq!(got.effect, *effect, "{what}");
            // The confirmation names the copy's version and state, whatever the effect.
            let confirmation = got.confirmation();
            assert_eq!((confirmation.alert_id.as_str(), confirmation.version), (ID, want.0), "{what}");
            assert_eq!(confirmation.state(), want.1, "{what}");
            if got.record.copy_state() == Deleted {
                assert!(got.record.is_deleted() && got.record.delivery.is_none(), "{what}: a tombstone has no content");
                assert_eq!(got.record.alert_id(), ID, "{what}: a tombstone keeps the id");
            }
            // Applying the same change again changes nothing.
            let again = apply_change(Some(got.record.clone()), change, 10, 2_000).unwrap();
            assert_eq!(again.record, got.record, "{what}: again");
            assert_ne!(again.effect, A, "{what}: again");
        }
    }

    #[test]
    fn a_change_that_cannot_be_applied_is_refused_not_guessed() {
        let unknown = AlertChange { alert_id: ID.into(), version: 1, ..Default::default() };
        assert!(matches!(
            apply_change(prior(Prior::Held(1, Full)), &unknown, 1, 1),
            Err(ChangeRefused::UnknownKind { .. })
        ));
        let bare = change(Update, 2, Held, None);
        assert!(matches!(apply_change(prior(Prior::Held(1, Full)), &bare, 1, 1), Err(ChangeRefused::NoView { .. })));
        let mut other = change(Update, 2, Held, Some(Full));
        other.delivery.as_mut().unwrap().alert.as_mut().unwrap().alert_id = "alert-2".into();
        assert!(matches!(apply_change(None, &other, 1, 1), Err(ChangeRefused::NoView { .. })));
    }

    #[test]
    fn a_late_delivery_does_not_bring_a_deleted_copy_back() {
        #[rustfmt::skip]
        let cases: &[(Prior, Delivery, Shape, bool)] = &[
            (Prior::None,              view(1, Full),     (1, Held, Some(Full), 0), true),
            (Prior::Held(1, Redacted), view(1, Full),     (1, Held, Some(Full), 0), true),
            (Prior::Held(1, Full),     view(1, Redacted), (1, Held, Some(Full), 0), false),
            (Prior::Held(1, Full),     view(2, HitOnly),  (2, Held, Some(HitOnly), 0), true),
            (Prior::Held(2, Full),     view(1, Full),     (2, Held, Some(Full), 0), false),
            (Prior::Tombstone(1),      view(1, Full),     (1, Deleted, None, Withdrawal as i32), false),
            (Prior::Tombstone(2),      view(1, Full),     (2, Deleted, None, Withdrawal as i32), false),
            (Prior::Tombstone(1),      view(2, Full),     (2, Held, Some(Full), Withdrawal as i32), true),
            (Prior::Marked(1),         view(1, Full),     (1, Restricted, Some(Full), Restriction as i32), false),
            (Prior::MarkOnly(2),       view(1, Redacted), (1, Restricted, Some(Redacted), Restriction as i32), true),
        ];
        for (i, (before, delivery, want, new)) in cases.iter().enumerate() {
            let (record, got_new) = merge_delivery(prior(*before), 5, delivery.clone(), 3_000);
            assert_eq!((shape(&record), got_new), (*want, *new), "case {i}: {before:?}");
            assert_eq!(record.alert_id(), ID, "case {i}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_change_applied_and_flushed_survives_a_restart_and_applies_again_harmlessly() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("n.store.key");
        let withdrawal = change(Withdrawal, 1, Deleted, None);
        {
            let inbox = Inbox::open(dir.path(), &key).unwrap();
            assert!(inbox.store(1, view(1, Full), 100).await.unwrap());
            let applied = inbox.apply(2, &withdrawal, 200).unwrap().unwrap();
            assert_eq!(applied.effect, A);
            inbox.flush_stored(1).await.unwrap();
            // The node dies here, before its ack.
        }
        let inbox = Inbox::open(dir.path(), &key).unwrap();
        let kept = inbox.get(ID).unwrap().expect("a tombstone");
        assert_eq!(shape(&kept), (1, Deleted, None, Withdrawal as i32));
        assert_eq!(kept.deleted_ms, 200);
        // The gateway sends the delivery and the change again.
        assert!(!inbox.put(1, view(1, Full), 300).unwrap(), "not resurrected");
        let again = inbox.apply(2, &withdrawal, 400).unwrap().unwrap();
        assert_eq!(again.effect, R);
        assert_eq!(again.confirmation(), kept.confirmation());
        let now = inbox.get(ID).unwrap().unwrap();
        assert_eq!((now.deleted_ms, now.delivery), (200, None), "deleted once, at the first time");
        assert_eq!(inbox.list().unwrap().len(), 1);
    }
}
