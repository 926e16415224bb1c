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
