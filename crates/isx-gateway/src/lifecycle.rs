//! The alert lifecycle: `Exchange.Amend`, `Withdraw`, `Restrict`,
//! `LiftRestriction` and `GetAlertStatus`, the change events they queue for
//! every copy, and the holders' confirmations.
//!
//! (Skeleton: the handlers are built on branch `h-life`.)

use isx_core::wire::{
    AmendRequest, AmendResponse, GetAlertStatusRequest, GetAlertStatusResponse, LiftRestrictionRequest,
    LiftRestrictionResponse, RestrictRequest, RestrictResponse, WithdrawRequest, WithdrawResponse,
};
use tonic::Request;

use crate::error::RequestError;
use crate::state::State;

/// `Exchange.Amend`.
pub(crate) async fn amend(_st: &State, req: Request<AmendRequest>) -> Result<AmendResponse, RequestError> {
    Err(RequestError::UnknownAlert(req.into_inner().alert.unwrap_or_default().alert_id))
}

/// `Exchange.Withdraw`.
pub(crate) async fn withdraw(_st: &State, req: Request<WithdrawRequest>) -> Result<WithdrawResponse, RequestError> {
    Err(RequestError::UnknownAlert(req.into_inner().alert_id))
}

/// `Exchange.Restrict`.
pub(crate) async fn restrict(_st: &State, req: Request<RestrictRequest>) -> Result<RestrictResponse, RequestError> {
    Err(RequestError::UnknownAlert(req.into_inner().alert_id))
}

/// `Exchange.LiftRestriction`.
pub(crate) async fn lift_restriction(
    _st: &State,
    req: Request<LiftRestrictionRequest>,
) -> Result<LiftRestrictionResponse, RequestError> {
    Err(RequestError::UnknownAlert(req.into_inner().alert_id))
}

/// `Exchange.GetAlertStatus`.
pub(crate) async fn get_alert_status(
    _st: &State,
    req: Request<GetAlertStatusRequest>,
) -> Result<GetAlertStatusResponse, RequestError> {
    Err(RequestError::UnknownAlert(req.into_inner().alert_id))
}
