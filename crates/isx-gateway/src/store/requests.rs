//! Access requests after a hit, in the sealed `access` tree.
//!
//! - `r ‖ request_id` → `isx.v1.AccessRequest` (sealed);
//! - `n ‖ node ‖ 0x00 ‖ request_id` → empty, for the requester and the holder;
//! - `d ‖ deadline_ms ‖ request_id` → empty while the request is pending.
//!
//! Opening and closing a request also queue events and take sequence
//! numbers, so they live in the store itself (`Store::open_request`,
//! `Store::close_request`), in one transaction with the outbox rows.

use isx_core::wire::AccessRequest;

use super::error::StoreError;
use super::keys::{node_key, request_key};

/// The `access` tree.
#[derive(Debug, Clone)]
pub struct Requests {
    /// The sealed tree.
    pub(super) tree: isx_store::SealedTree,
}

/// The deadline of a request, Unix milliseconds.
pub(crate) fn deadline_ms(request: &AccessRequest) -> u64 {
    request.deadline.as_ref().map(isx_core::timestamp::to_unix_millis).unwrap_or(0)
}

impl Requests {
    /// The access request with this id.
    pub fn get(&self, request_id: &str) -> Result<Option<AccessRequest>, StoreError> {
        Ok(self.tree.get("access request", &request_key(request_id))?)
    }

    /// Pending requests whose deadline is at or before `now_ms`.
    pub fn due(&self, now_ms: u64) -> Result<Vec<AccessRequest>, StoreError> {
        let end = [b"d".as_slice(), &now_ms.saturating_add(1).to_be_bytes()].concat();
        let mut out = Vec::new();
        for key in self.tree.raw().range(b"d".to_vec()..end).keys() {
            let key = key?;
            let id = String::from_utf8_lossy(&key[9..]).into_owned();
            if let Some(r) = self.get(&id)? {
                out.push(r);
            }
        }
        Ok(out)
    }

    /// Every request `node` made or holds, oldest first.
    pub fn of_node(&self, node: &str) -> Result<Vec<AccessRequest>, StoreError> {
        let prefix = node_key(node, "");
        let mut out = Vec::new();
        for key in self.tree.raw().scan_prefix(&prefix).keys() {
            let key = key?;
            let id = String::from_utf8_lossy(&key[prefix.len()..]).into_owned();
            if let Some(r) = self.get(&id)? {
                out.push(r);
            }
        }
        out.sort_by_key(|r| (r.requested_at.map(|t| (t.seconds, t.nanos)), r.request_id.clone()));
        Ok(out)
    }
}
