//! Open hits (CIR Art. 22(2)): a hit shown to an officer stays an open item
//! of the officer's node until it is followed up or declined; at its
//! alert's end, or at the follow-up deadline, it closes "without follow-up"
//! as a HIT_CLOSED record naming the node and the officer.
//!
//! # Tree `open_hits`
//! Plain (ids, node and officer names, times; no content), like `hits`:
//! - `h ‖ hit_id` → [`OpenHitRow`];
//! - `n ‖ node ‖ 0x00 ‖ hit_id` → empty: a node's open hits;
//! - `a ‖ alert_id ‖ 0x00 ‖ hit_id` → empty: an alert's open hits;
//! - `d ‖ closes_at_ms (big-endian) ‖ hit_id` → empty: what the sweep closes.
//!
//! It is kept apart from the hit flags (`hits`), which the expiry sweep drops
//! with their alert before [`close_for_alert`] runs: the open item outlives
//! its alert just long enough to be closed with a record.
//!
//! A lookup opens an item for each hit it shows that is not followed up yet
//! (a later lookup of the same hit keeps the first officer and time); an
//! access request or a decline removes it silently (their own records say
//! it); [`close_for_alert`] and [`sweep`] close the rest with a record. Every
//! close runs under `access_lock`, so a request and a close never both win.

use isx_core::Role;
use isx_core::timestamp::from_unix_millis;
use isx_core::wire::{
    AuditRecord, ListOpenHitsRequest, ListOpenHitsResponse, OpenHit, Operation, Outcome, RecipientLevel,
};
use prost::Message;
use tonic::Request;
use tracing::{info, warn};

use crate::error::RequestError;
use crate::records::{Actor, about};
use crate::state::State;
use crate::store::{StoreError, expires_ms};
use crate::text::rfc3339;

/// The tree's name.
const TREE: &str = "open_hits";

/// Most hits one sweep closes; the rest wait for the next sweep.
const SWEEP_BATCH: usize = 512;

/// One open hit, as the gateway keeps it.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct OpenHitRow {
    /// The hit.
    #[prost(string, tag = "1")]
    pub hit_id: String,
    /// The alert that matched.
    #[prost(string, tag = "2")]
    pub alert_id: String,
    /// The node whose officer was shown the hit.
    #[prost(string, tag = "3")]
    pub node: String,
    /// The node that holds the alert.
    #[prost(string, tag = "4")]
    pub holder: String,
    /// The officer first shown the hit.
    #[prost(string, tag = "5")]
    pub officer: String,
    /// The alert's crime area (`isx.v1.Category`).
    #[prost(int32, tag = "6")]
    pub category: i32,
    /// What the holder asks for on a hit (`isx.v1.Action`).
    #[prost(int32, tag = "7")]
    pub action: i32,
    /// When it was first shown, Unix milliseconds.
    #[prost(uint64, tag = "8")]
    pub shown_ms: u64,
    /// `shown_ms` plus `lookup.follow_up_deadline`.
    #[prost(uint64, tag = "9")]
    pub deadline_ms: u64,
    /// The alert's end as last known (its `expires_at`).
    #[prost(uint64, tag = "10")]
    pub alert_ends_ms: u64,
}

impl OpenHitRow {
    /// When it closes if nobody acts: the deadline or the alert's end.
    pub fn closes_ms(&self) -> u64 {
        self.deadline_ms.min(self.alert_ends_ms)
    }
}

/// Why an open hit closed without follow-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reason {
    /// Its alert reached its `expires_at`.
    Expired,
    /// Its origin withdrew the alert.
    Withdrawn,
    /// `lookup.follow_up_deadline` passed.
    Deadline,
}

impl Reason {
    /// The word in the record's detail.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Expired => "expired",
            Self::Withdrawn => "withdrawn",
            Self::Deadline => "deadline",
        }
    }
}

fn tree(st: &State) -> Result<sled::Tree, StoreError> {
    Ok(st.store.db().open_tree(TREE)?)
}

fn join(prefix: u8, parts: &[&[u8]]) -> Vec<u8> {
    let mut key = vec![prefix];
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            key.push(0);
        }
        key.extend_from_slice(p);
    }
    key
}

fn row_key(hit_id: &str) -> Vec<u8> {
    join(b'h', &[hit_id.as_bytes()])
}

fn node_key(node: &str, hit_id: &str) -> Vec<u8> {
    join(b'n', &[node.as_bytes(), hit_id.as_bytes()])
}

fn alert_key(alert_id: &str, hit_id: &str) -> Vec<u8> {
    join(b'a', &[alert_id.as_bytes(), hit_id.as_bytes()])
}

fn due_key(closes_ms: u64, hit_id: &str) -> Vec<u8> {
    let mut key = vec![b'd'];
    key.extend_from_slice(&closes_ms.to_be_bytes());
    key.extend_from_slice(hit_id.as_bytes());
    key
}

fn get(tree: &sled::Tree, hit_id: &str) -> Result<Option<OpenHitRow>, StoreError> {
    tree.get(row_key(hit_id))?.map(|v| isx_store::decode("open hit", &v).map_err(Into::into)).transpose()
}

fn insert(tree: &sled::Tree, row: &OpenHitRow) -> Result<(), StoreError> {
    tree.insert(row_key(&row.hit_id), row.encode_to_vec())?;
    tree.insert(node_key(&row.node, &row.hit_id), &[])?;
    tree.insert(alert_key(&row.alert_id, &row.hit_id), &[])?;
    tree.insert(due_key(row.closes_ms(), &row.hit_id), &[])?;
    Ok(())
}

fn remove(tree: &sled::Tree, row: &OpenHitRow) -> Result<(), StoreError> {
    tree.remove(due_key(row.closes_ms(), &row.hit_id))?;
    tree.remove(alert_key(&row.alert_id, &row.hit_id))?;
    tree.remove(node_key(&row.node, &row.hit_id))?;
    tree.remove(row_key(&row.hit_id))?;
    Ok(())
}

/// The hit ids under `prefix` (a key ending in the 0x00 before the id).
fn ids_under(tree: &sled::Tree, prefix: &[u8]) -> Result<Vec<String>, StoreError> {
    tree.scan_prefix(prefix).keys().map(|k| Ok(String::from_utf8_lossy(&k?[prefix.len()..]).into_owned())).collect()
}

/// True when the hit flag says the hit was followed up: declined, or an
/// access request made on it.
fn followed_up(st: &State, hit_id: &str) -> Result<bool, StoreError> {
    Ok(st.store.index().hit(hit_id)?.is_some_and(|h| h.declined || !h.request_id.is_empty()))
}

/// Opens an item for each of `shown` (hits a lookup just showed) that is
/// neither open nor followed up. Durable with the caller's commit.
pub(crate) fn open(st: &State, shown: &[OpenHitRow]) -> Result<usize, StoreError> {
    if shown.is_empty() {
        return Ok(0);
    }
    let tree = tree(st)?;
    let mut opened = 0;
    for row in shown {
        if get(&tree, &row.hit_id)?.is_some() || followed_up(st, &row.hit_id)? {
            continue;
        }
        insert(&tree, row)?;
        opened += 1;
    }
    Ok(opened)
}

/// The hit was requested or declined: its item closes without a record of
/// its own (the request's or the decline's says it). Call under
/// `access_lock`; durable with the caller's commit.
pub(crate) fn followed(st: &State, hit_id: &str) -> Result<bool, StoreError> {
    let tree = tree(st)?;
    match get(&tree, hit_id)? {
        Some(row) => {
            remove(&tree, &row)?;
            Ok(true)
        }
        None => Ok(false),
    }
}

/// The HIT_CLOSED record of an open hit that closed without follow-up: the
/// node and officer who were shown it, its alert and holder, and why. No
/// content.
pub(crate) fn closed_record(row: &OpenHitRow, reason: Reason, now_ms: u64, deadline: &str) -> AuditRecord {
    let why = match reason {
        Reason::Expired => format!("its alert expired ({})", rfc3339(row.alert_ends_ms.min(now_ms))),
        Reason::Withdrawn => "its alert was withdrawn by its origin".to_owned(),
        Reason::Deadline => {
            format!("not followed up within lookup.follow_up_deadline ({deadline}, by {})", rfc3339(row.deadline_ms))
        }
    };
    AuditRecord {
        node: row.node.clone(),
        officer: row.officer.clone(),
        alert_id: row.alert_id.clone(),
        recipients: vec![RecipientLevel { node: row.holder.clone(), ..Default::default() }],
        detail: format!(
            "hit {} held by {} shown {} closed without follow-up ({}): {why}",
            row.hit_id,
            row.holder,
            rfc3339(row.shown_ms),
            reason.as_str()
        ),
        ..about(Actor::gateway(), Operation::HitClosed, Outcome::Ok)
    }
}

/// Records and removes `closing`, then commits. Call under `access_lock`.
async fn close(
    st: &State,
    tree: &sled::Tree,
    closing: Vec<(OpenHitRow, Reason)>,
    now_ms: u64,
) -> Result<usize, RequestError> {
    if closing.is_empty() {
        return Ok(0);
    }
    let deadline = isx_audit::retention::span(st.lookup.follow_up_deadline.as_millis() as u64);
    let records = closing.iter().map(|(row, reason)| closed_record(row, *reason, now_ms, &deadline)).collect();
    // The records first: a crash between them and the removal closes the
    // hits again at the next sweep, never loses a close.
    st.recorder.append(records)?;
    for (row, reason) in &closing {
        remove(tree, row)?;
        info!(hit_id = %row.hit_id, alert_id = %row.alert_id, node = %row.node, reason = reason.as_str(), "open hit closed without follow-up");
    }
    st.committer.commit().await?;
    Ok(closing.len())
}

/// Why an ended alert's hits close: withdrawn if its row says so or it
/// ended before its `expires_at`, else expired.
fn end_reason(st: &State, row: &OpenHitRow, now_ms: u64) -> Result<Reason, StoreError> {
    let stored = st.store.alert(&row.alert_id)?;
    let withdrawn = stored.as_ref().is_some_and(|s| s.state() == isx_core::wire::AlertState::Withdrawn);
    let ends = stored.as_ref().and_then(|s| s.alert.as_ref()).map(expires_ms).unwrap_or(row.alert_ends_ms);
    Ok(if withdrawn || ends > now_ms { Reason::Withdrawn } else { Reason::Expired })
}

/// `Exchange.ListOpenHits`.
pub(crate) async fn list_open_hits(
    st: &State,
    req: Request<ListOpenHitsRequest>,
) -> Result<ListOpenHitsResponse, RequestError> {
    let caller = st.caller(&req, &[Role::Lookup])?;
    let tree = tree(st)?;
    let me = caller.node().as_str();
    let mut hits = Vec::new();
    for hit_id in ids_under(&tree, &join(b'n', &[me.as_bytes(), b""]))? {
        let Some(row) = get(&tree, &hit_id)? else { continue };
        if row.node != me || followed_up(st, &hit_id)? {
            continue;
        }
        // The alert's end as it stands now (an amendment may move it).
        let ends =
            st.store.alert(&row.alert_id)?.and_then(|s| s.alert).map(|a| expires_ms(&a)).unwrap_or(row.alert_ends_ms);
        hits.push(OpenHit {
            hit_id: row.hit_id,
            alert_id: row.alert_id,
            holder: row.holder,
            officer: row.officer,
            category: row.category,
            action: row.action,
            shown_at: Some(from_unix_millis(row.shown_ms)),
            closes_at: Some(from_unix_millis(row.deadline_ms.min(ends))),
        });
    }
    hits.sort_by(|a, b| {
        (a.closes_at.as_ref().map(|t| (t.seconds, t.nanos)), &a.hit_id)
            .cmp(&(b.closes_at.as_ref().map(|t| (t.seconds, t.nanos)), &b.hit_id))
    });
    info!(open = hits.len(), "open hits listed");
    Ok(ListOpenHitsResponse { hits })
}

/// Closes every open hit on `alert_id` "without follow-up" (its alert
/// withdrawn or expired): one HIT_CLOSED record per hit, naming the node and
/// the officer who saw it. Returns how many closed. Called by the lifecycle
/// (withdrawal) and the sweeper (expiry).
pub(crate) async fn close_for_alert(st: &State, alert_id: &str, now_ms: u64) -> Result<usize, RequestError> {
    let _guard = st.access_lock.lock().await;
    let tree = tree(st)?;
    let mut closing = Vec::new();
    for hit_id in ids_under(&tree, &join(b'a', &[alert_id.as_bytes(), b""]))? {
        let Some(row) = get(&tree, &hit_id)? else { continue };
        if followed_up(st, &hit_id)? {
            remove(&tree, &row)?; // a request raced the lookup: no record
            continue;
        }
        let reason = end_reason(st, &row, now_ms)?;
        closing.push((row, reason));
    }
    close(st, &tree, closing, now_ms).await
}

/// Closes every open hit past `lookup.follow_up_deadline` "without
/// follow-up", and any whose alert ended unseen (a crash between the
/// alert's expiry and its hits' close). Returns how many closed. Called on
/// every sweep.
pub(crate) async fn sweep(st: &State, now_ms: u64) -> Result<usize, RequestError> {
    let _guard = st.access_lock.lock().await;
    let tree = tree(st)?;
    let end = due_key(now_ms.saturating_add(1), "");
    let due: Vec<sled::IVec> =
        tree.range(vec![b'd']..end).keys().take(SWEEP_BATCH).collect::<Result<_, _>>().map_err(StoreError::from)?;
    let mut closing = Vec::new();
    for key in due {
        let hit_id = String::from_utf8_lossy(&key[9..]).into_owned();
        let Some(row) = get(&tree, &hit_id)? else {
            tree.remove(&key).map_err(StoreError::from)?;
            continue;
        };
        if followed_up(st, &hit_id)? {
            remove(&tree, &row)?;
            continue;
        }
        if row.deadline_ms <= now_ms {
            closing.push((row, Reason::Deadline));
            continue;
        }
        // Due by its alert's end: the alert may live on (amended to a later
        // end), or have ended without its hits being closed.
        let live = st.store.live_alert(&row.alert_id, now_ms)?;
        match live {
            Some((stored, alert)) if stored.state() != isx_core::wire::AlertState::Withdrawn => {
                let moved = OpenHitRow { alert_ends_ms: expires_ms(&alert), ..row.clone() };
                remove(&tree, &row)?;
                insert(&tree, &moved)?;
            }
            _ => {
                let reason = end_reason(st, &row, now_ms)?;
                closing.push((row, reason));
            }
        }
    }
    let n = close(st, &tree, closing, now_ms).await;
    if let Err(e) = &n {
        warn!(error = %e, "open hits not closed");
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row() -> OpenHitRow {
        OpenHitRow {
            hit_id: "hit-abc".into(),
            alert_id: "A1".into(),
            node: "it-police".into(),
            holder: "de-police".into(),
            officer: "Isp. Conti".into(),
            category: isx_core::wire::Category::Terrorism as i32,
            action: isx_core::wire::Action::Check as i32,
            shown_ms: 1_000,
            deadline_ms: 1_000 + 14 * 86_400_000,
            alert_ends_ms: 5_000,
        }
    }

    /// `(reason, words the detail must hold)`.
    #[test]
    fn a_closed_hit_names_the_node_the_officer_the_holder_and_why() {
        let cases = [
            (Reason::Expired, "closed without follow-up (expired): its alert expired (1970-01-01T00:00:05Z)"),
            (Reason::Withdrawn, "closed without follow-up (withdrawn): its alert was withdrawn by its origin"),
            (
                Reason::Deadline,
                "closed without follow-up (deadline): not followed up within lookup.follow_up_deadline (14d, by 1970-01-15T00:00:01Z)",
            ),
        ];
        for (reason, words) in cases {
            let r = closed_record(&row(), reason, 9_000, "14d");
            assert_eq!(r.operation(), Operation::HitClosed);
            assert_eq!(r.outcome(), Outcome::Ok);
            assert_eq!((r.node.as_str(), r.officer.as_str(), r.alert_id.as_str()), ("it-police", "Isp. Conti", "A1"));
            assert_eq!(r.recipients.iter().map(|x| x.node.as_str()).collect::<Vec<_>>(), vec!["de-police"]);
            assert!(r.detail.starts_with("hit hit-abc held by de-police shown 1970-01-01T00:00:01Z"), "{}", r.detail);
            assert!(r.detail.contains(words), "{reason:?}: {}", r.detail);
            assert!(r.cert_fingerprint.is_empty() && r.subject_pseudonyms.is_empty() && r.justification.is_empty());
        }
    }

    #[test]
    fn keys_sort_by_what_they_index() {
        assert!(due_key(5, "b") < due_key(6, "a"), "due keys sort by time");
        assert!(due_key(u64::MAX, "z") < vec![b'e'], "due keys stay under their prefix");
        assert_eq!(node_key("it", "h1"), b"nit\0h1".to_vec());
        assert!(!node_key("it", "h").starts_with(&join(b'n', &[b"it-police", b""])));
        assert_eq!(row().closes_ms(), 5_000, "the alert ends before the deadline");
    }
}
