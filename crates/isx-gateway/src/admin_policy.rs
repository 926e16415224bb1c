//! Policy reloads by a named officer with a reason, and the stored text of
//! every policy-set version (to be built: see issue #19 item 1).

use isx_core::wire::{GetPolicyRequest, PolicyVersion, ReloadPolicyRequest, ReloadPolicyResponse};
use tonic::Status;

use crate::disclosure::PolicyDisclosure;
use crate::state::{Caller, State};

/// Reloads the policy directory for `caller` (the `Admin.ReloadPolicy` call).
pub(crate) async fn reload(
    _state: &State,
    _policy: &PolicyDisclosure,
    _caller: &Caller<'_>,
    _req: ReloadPolicyRequest,
) -> Result<ReloadPolicyResponse, Status> {
    Err(Status::unimplemented("ReloadPolicy is not built yet"))
}

/// The text of a stored policy-set version (the `Audit.GetPolicy` call,
/// after its caller, purpose and record were checked).
pub(crate) async fn get_policy(_state: &State, _req: &GetPolicyRequest) -> Result<PolicyVersion, Status> {
    Err(Status::unimplemented("GetPolicy is not built yet"))
}
