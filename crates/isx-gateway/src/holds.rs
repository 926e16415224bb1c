//! Legal holds and online pruning (to be built: see issue #19 item 3).

use isx_core::wire::{Hold, LiftHoldRequest, ListHoldsResponse, PlaceHoldRequest, PruneRequest, PruneResponse};
use tonic::Status;

use crate::state::{Caller, State};

/// Places a hold (the `Admin.PlaceHold` call).
pub(crate) async fn place(_state: &State, _caller: &Caller<'_>, _req: PlaceHoldRequest) -> Result<Hold, Status> {
    Err(Status::unimplemented("PlaceHold is not built yet"))
}

/// Lifts a hold (the `Admin.LiftHold` call).
pub(crate) async fn lift(_state: &State, _caller: &Caller<'_>, _req: LiftHoldRequest) -> Result<Hold, Status> {
    Err(Status::unimplemented("LiftHold is not built yet"))
}

/// The holds in force (the `Admin.ListHolds` call).
pub(crate) async fn list(_state: &State, _caller: &Caller<'_>) -> Result<ListHoldsResponse, Status> {
    Err(Status::unimplemented("ListHolds is not built yet"))
}

/// Prunes online (the `Admin.Prune` call).
pub(crate) async fn prune(_state: &State, _caller: &Caller<'_>, _req: PruneRequest) -> Result<PruneResponse, Status> {
    Err(Status::unimplemented("Prune is not built yet"))
}
