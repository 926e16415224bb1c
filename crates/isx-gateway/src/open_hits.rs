//! Open hits (CIR Art. 22(2)): a hit shown to an officer stays an open item
//! of the officer's node until it is followed up or declined; at its
//! alert's end, or at the follow-up deadline, it closes "without follow-up"
//! as a HIT_CLOSED record naming the node and the officer.
//!
//! (Skeleton: built on branch `h-hits`.)

use isx_core::wire::{ListOpenHitsRequest, ListOpenHitsResponse};
use tonic::Request;

use crate::error::RequestError;
use crate::state::State;

/// `Exchange.ListOpenHits`.
pub(crate) async fn list_open_hits(
    _st: &State,
    _req: Request<ListOpenHitsRequest>,
) -> Result<ListOpenHitsResponse, RequestError> {
    Ok(ListOpenHitsResponse::default())
}

/// Closes every open hit on `alert_id` "without follow-up" (its alert
/// withdrawn or expired): one HIT_CLOSED record per hit, naming the node and
/// the officer who saw it. Returns how many closed. Called by the lifecycle
/// (withdrawal) and the sweeper (expiry).
pub(crate) async fn close_for_alert(_st: &State, _alert_id: &str, _now_ms: u64) -> Result<usize, RequestError> {
    Ok(0)
}

/// Closes every open hit past `lookup.follow_up_deadline` "without
/// follow-up". Returns how many closed. Called on every sweep.
pub(crate) async fn sweep(_st: &State, _now_ms: u64) -> Result<usize, RequestError> {
    Ok(0)
}
