//! Hit flags and access requests: the state of the hit/no-hit workflow.
//!
//! # Keys
//! - `lookup` tree: `pseudonym ‖ 0x00 ‖ alert_id` → identifier type.
//! - `hits` tree: `h ‖ hit_id` → [`HitRow`], and `a ‖ alert_id ‖ 0x00 ‖ hit_id`
//!   → empty, so that the hits of an expiring alert can be dropped with it.
//! - `access` tree: `r ‖ request_id` → `isx.v1.AccessRequest`;
//!   `n ‖ node ‖ 0x00 ‖ request_id` → empty for the requester and the holder;
//!   `d ‖ deadline_ms ‖ request_id` → empty while the request is pending.
//!
//! Every change that also queues an event (a request to the holder, an
//! outcome or a delivery to the requester) is one sled transaction with the
//! outbox rows, so a crash never leaves a request without its notification.

use isx_core::NodeId;
use isx_core::wire::{AccessRequest, AccessState};
use prost::Message;
use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};

use super::{OutboxEntry, Store, StoreError, decode, outbox_key};

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

/// The lookup index key of one identifier pseudonym (hex) and alert.
pub fn lookup_key(pseudonym: &str, alert_id: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(pseudonym.len() + 1 + alert_id.len());
    key.extend_from_slice(pseudonym.as_bytes());
    key.push(0);
    key.extend_from_slice(alert_id.as_bytes());
    key
}

fn hit_key(hit_id: &str) -> Vec<u8> {
    [b"h", hit_id.as_bytes()].concat()
}

fn hit_by_alert_key(alert_id: &str, hit_id: &str) -> Vec<u8> {
    [b"a", alert_id.as_bytes(), b"\0", hit_id.as_bytes()].concat()
}

fn request_key(request_id: &str) -> Vec<u8> {
    [b"r", request_id.as_bytes()].concat()
}

fn node_key(node: &str, request_id: &str) -> Vec<u8> {
    [b"n", node.as_bytes(), b"\0", request_id.as_bytes()].concat()
}

fn due_key(deadline_ms: u64, request_id: &str) -> Vec<u8> {
    [b"d".as_slice(), &deadline_ms.to_be_bytes(), request_id.as_bytes()].concat()
}

fn deadline_ms(request: &AccessRequest) -> u64 {
    request.deadline.as_ref().map(isx_core::timestamp::to_unix_millis).unwrap_or(0)
}

fn finish<T>(result: Result<T, TransactionError<StoreError>>) -> Result<T, StoreError> {
    match result {
        Ok(v) => Ok(v),
        Err(TransactionError::Abort(e)) => Err(e),
        Err(TransactionError::Storage(e)) => Err(e.into()),
    }
}

/// An event for one node's outbox, with its sequence number.
pub type Queued = (NodeId, u64, OutboxEntry);

impl Store {
    /// The alerts indexed under one identifier pseudonym, with the type of identifier.
    pub fn lookup(&self, pseudonym: &str) -> Result<Vec<(String, String)>, StoreError> {
        let prefix = lookup_key(pseudonym, "");
        self.lookup
            .scan_prefix(&prefix)
            .map(|item| {
                let (key, kind) = item?;
                let alert = String::from_utf8_lossy(&key[prefix.len()..]).into_owned();
                Ok((alert, String::from_utf8_lossy(&kind).into_owned()))
            })
            .collect()
    }

    /// Every key of the lookup index (for tests and integrity checks).
    pub fn lookup_keys(&self) -> Result<Vec<Vec<u8>>, StoreError> {
        Ok(self.lookup.iter().keys().map(|k| k.map(|k| k.to_vec())).collect::<Result<_, _>>()?)
    }

    /// The hit flag with this id.
    pub fn hit(&self, hit_id: &str) -> Result<Option<HitRow>, StoreError> {
        self.hits.get(hit_key(hit_id))?.map(|v| decode("hit", &v)).transpose()
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

    /// Drops the hit flags of an expired alert; returns how many.
    pub(super) fn drop_hits(&self, alert_id: &str) -> Result<usize, StoreError> {
        let prefix = hit_by_alert_key(alert_id, "");
        let keys: Vec<sled::IVec> = self.hits.scan_prefix(&prefix).keys().collect::<Result<_, _>>()?;
        for key in &keys {
            let hit_id = String::from_utf8_lossy(&key[prefix.len()..]).into_owned();
            self.hits.remove(hit_key(&hit_id))?;
            self.hits.remove(key)?;
        }
        Ok(keys.len())
    }

    /// A fresh access request id, `ar-` and a number that grows across restarts.
    pub fn next_request_id(&self) -> Result<String, StoreError> {
        Ok(format!("ar-{:06}", self.db.generate_id()? + 1))
    }

    /// The access request with this id.
    pub fn access_request(&self, request_id: &str) -> Result<Option<AccessRequest>, StoreError> {
        let key = request_key(request_id);
        self.access.get(&key)?.map(|v| self.unseal("access request", "access", &key, &v)).transpose()
    }

    /// Stores a new pending request, links it to its hit, and queues the
    /// notification for the holder (its sequence number is assigned here), in
    /// one transaction.
    pub fn open_request(&self, request: &AccessRequest, hit: &HitRow, notify: &mut Queued) -> Result<(), StoreError> {
        let _order = self.ordered();
        notify.1 = self.next_seq()?;
        let id = request.request_id.as_str();
        let body = self.seal("access", &request_key(id), &request.encode_to_vec());
        let hit_body = hit.encode_to_vec();
        let (node, seq, entry) = notify;
        let okey = outbox_key(node.as_str(), *seq);
        let oval = self.seal("outbox", &okey, &entry.encode_to_vec());
        finish((&self.access, &self.hits, &self.outbox).transaction(|(access, hits, outbox)| {
            access.insert(request_key(id), body.as_slice())?;
            access.insert(node_key(&request.requester, id), &[])?;
            access.insert(node_key(&request.holder, id), &[])?;
            access.insert(due_key(deadline_ms(request), id), &[])?;
            hits.insert(hit_key(&request.hit_id), hit_body.as_slice())?;
            outbox.insert(okey.as_slice(), oval.as_slice())?;
            Ok::<_, ConflictableTransactionError<StoreError>>(())
        }))
    }

    /// Stores a decided (granted, denied or expired) request and queues its
    /// events for the requester (sequence numbers assigned here, in order), in
    /// one transaction. Returns `false` if the stored request is no longer pending.
    pub fn close_request(&self, request: &AccessRequest, events: &mut [Queued]) -> Result<bool, StoreError> {
        let _order = self.ordered();
        for e in events.iter_mut() {
            e.1 = self.next_seq()?;
        }
        let id = request.request_id.as_str();
        let body = self.seal("access", &request_key(id), &request.encode_to_vec());
        let rows: Vec<(Vec<u8>, Vec<u8>)> = events
            .iter()
            .map(|(n, seq, e)| {
                let key = outbox_key(n.as_str(), *seq);
                let value = self.seal("outbox", &key, &e.encode_to_vec());
                (key, value)
            })
            .collect();
        finish((&self.access, &self.outbox).transaction(|(access, outbox)| {
            let current = access.get(request_key(id))?;
            let pending = current
                .as_deref()
                .and_then(|v| self.unseal::<AccessRequest>("access request", "access", &request_key(id), v).ok())
                .is_some_and(|r| r.state() == AccessState::Pending);
            if !pending {
                return Ok(false);
            }
            access.insert(request_key(id), body.as_slice())?;
            access.remove(due_key(deadline_ms(request), id))?;
            for (k, v) in &rows {
                outbox.insert(k.as_slice(), v.as_slice())?;
            }
            Ok::<_, ConflictableTransactionError<StoreError>>(true)
        }))
    }

    /// Pending requests whose deadline is at or before `now_ms`.
    pub fn due_requests(&self, now_ms: u64) -> Result<Vec<AccessRequest>, StoreError> {
        let end = [b"d".as_slice(), &now_ms.saturating_add(1).to_be_bytes()].concat();
        let mut out = Vec::new();
        for key in self.access.range(b"d".to_vec()..end).keys() {
            let key = key?;
            let id = String::from_utf8_lossy(&key[9..]).into_owned();
            if let Some(r) = self.access_request(&id)? {
                out.push(r);
            }
        }
        Ok(out)
    }

    /// Every request `node` made or holds, oldest first.
    pub fn requests_of(&self, node: &str) -> Result<Vec<AccessRequest>, StoreError> {
        let prefix = node_key(node, "");
        let mut out = Vec::new();
        for key in self.access.scan_prefix(&prefix).keys() {
            let key = key?;
            let id = String::from_utf8_lossy(&key[prefix.len()..]).into_owned();
            if let Some(r) = self.access_request(&id)? {
                out.push(r);
            }
        }
        out.sort_by_key(|r| (r.requested_at.map(|t| (t.seconds, t.nanos)), r.request_id.clone()));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use isx_core::timestamp::from_unix_millis;

    fn request(id: &str, deadline: u64) -> AccessRequest {
        AccessRequest {
            request_id: id.into(),
            hit_id: "h1".into(),
            alert_id: "a1".into(),
            requester: "it-police".into(),
            holder: "de-police".into(),
            deadline: Some(from_unix_millis(deadline)),
            requested_at: Some(from_unix_millis(1)),
            state: AccessState::Pending as i32,
            ..Default::default()
        }
    }

    #[test]
    fn requests_open_list_fall_due_and_close_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db"), &dir.path().join("k.store.key")).unwrap();
        let de = NodeId::new("de-police").unwrap();
        let it = NodeId::new("it-police").unwrap();
        let hit = HitRow { requester: "it-police".into(), alert_id: "a1".into(), ..Default::default() };
        store.record_hits(&[("h1".into(), hit.clone())]).unwrap();
        let r = request("ar-1", 5000);
        let note = OutboxEntry { access_request: Some(r.clone()), expires_ms: 5000, ..Default::default() };
        store.open_request(&r, &HitRow { request_id: "ar-1".into(), ..hit }, &mut (de.clone(), 0, note)).unwrap();
        assert_eq!(store.hit("h1").unwrap().unwrap().request_id, "ar-1");
        assert_eq!(store.requests_of("it-police").unwrap(), vec![r.clone()]);
        assert_eq!(store.requests_of("de-police").unwrap().len(), 1);
        assert!(store.requests_of("fr-police").unwrap().is_empty());
        assert_eq!(store.pending(&de, 0, 10, 0).unwrap().len(), 1, "the holder is notified");
        assert!(store.due_requests(4999).unwrap().is_empty());
        assert_eq!(store.due_requests(5000).unwrap(), vec![r.clone()]);

        let closed = AccessRequest { state: AccessState::Denied as i32, ..r.clone() };
        let outcome = OutboxEntry { access_outcome: Some(closed.clone()), expires_ms: 9000, ..Default::default() };
        assert!(store.close_request(&closed, &mut [(it.clone(), 0, outcome)]).unwrap());
        assert!(!store.close_request(&closed, &mut []).unwrap(), "a request closes once");
        assert!(store.due_requests(u64::MAX - 1).unwrap().is_empty());
        assert_eq!(store.pending(&it, 0, 10, 0).unwrap().len(), 1);
        assert_eq!(store.access_request("ar-1").unwrap().unwrap().state(), AccessState::Denied);
    }

    #[test]
    fn hits_are_recorded_once_and_dropped_with_their_alert() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db"), &dir.path().join("k.store.key")).unwrap();
        let row = HitRow { requester: "it-police".into(), alert_id: "a1".into(), ..Default::default() };
        store.record_hits(&[("h1".into(), row.clone())]).unwrap();
        store.update_hit("h1", &HitRow { declined: true, ..row.clone() }).unwrap();
        store.record_hits(&[("h1".into(), row)]).unwrap();
        assert!(store.hit("h1").unwrap().unwrap().declined, "a later lookup keeps the hit's state");
        assert_eq!(store.drop_hits("a1").unwrap(), 1);
        assert!(store.hit("h1").unwrap().is_none());
    }
}
