//! The `isx.v1.Admin` service, for nodes with the `admin` role only.
//!
//! Every call first checks the caller's role and officer, before it parses
//! anything; a refusal is recorded (`DENIAL`, aggregated per source) and
//! answered `PERMISSION_DENIED`. Each change is then made and its record
//! (`ADMINISTRATION`, or `ERASURE` for a pruning) is durable before the
//! call is answered. The work itself lives beside what it changes:
//! `admin_policy` (policy reloads) and `holds` (legal holds and pruning).

use std::sync::Arc;

use isx_core::Role;
use isx_core::wire::admin_server::Admin;
use isx_core::wire::{
    Hold, LiftHoldRequest, ListHoldsRequest, ListHoldsResponse, PlaceHoldRequest, PruneRequest, PruneResponse,
    ReloadPolicyRequest, ReloadPolicyResponse,
};
use tonic::{Code, Request, Response, Status};
use tracing::{Instrument, info_span};

use crate::conn::{RequestInfo, Subject};
use crate::disclosure::PolicyDisclosure;
use crate::records;
use crate::refusal;
use crate::state::{Caller, State};

/// The `Admin` service.
#[derive(Debug, Clone)]
pub(crate) struct AdminService {
    /// The gateway's shared state.
    state: Arc<State>,
    /// The reloadable policy.
    policy: Arc<PolicyDisclosure>,
}

impl AdminService {
    /// A service over `state`, reloading `policy`.
    pub(crate) fn new(state: Arc<State>, policy: Arc<PolicyDisclosure>) -> Self {
        Self { state, policy }
    }

    /// Checks the caller's role and officer, before anything of the request
    /// is parsed; records and answers a refusal. `what` names the call.
    async fn caller<'a, T>(&'a self, req: &Request<T>, what: &str) -> Result<Caller<'a>, Status> {
        let st = &self.state;
        match st.caller(req, &[Role::Admin]) {
            Ok(caller) => Ok(caller),
            Err(e) => {
                let info = RequestInfo::of(req, Subject::None);
                let record = records::admin_refused(&info, &e, what);
                let source = info.node();
                if let Err(audit) = refusal::record(st, source, e.rule(), record).await {
                    return Err(Status::from(audit));
                }
                Err(Status::from(e))
            }
        }
    }

    /// Records (aggregated per source, as every refusal) a request the
    /// caller may make but made badly or against the rule: a field missing,
    /// a hold that is not in force, a cut-off the retention rule refuses.
    async fn answered<T>(&self, caller: &Caller<'_>, what: &str, result: Result<T, Status>) -> Result<T, Status> {
        if let Err(status) = &result
            && matches!(status.code(), Code::InvalidArgument | Code::FailedPrecondition | Code::NotFound)
        {
            let record = records::admin_request_refused(caller.actor(), what, status.code(), status.message());
            refusal::record(&self.state, caller.node().to_string(), "admin request", record)
                .await
                .map_err(Status::from)?;
        }
        result
    }
}

#[tonic::async_trait]
impl Admin for AdminService {
    async fn reload_policy(&self, req: Request<ReloadPolicyRequest>) -> Result<Response<ReloadPolicyResponse>, Status> {
        let span = info_span!("admin.reload_policy");
        async move {
            let caller = self.caller(&req, "ReloadPolicy").await?;
            crate::admin_policy::reload(&self.state, &self.policy, &caller, req.into_inner()).await.map(Response::new)
        }
        .instrument(span)
        .await
    }

    async fn place_hold(&self, req: Request<PlaceHoldRequest>) -> Result<Response<Hold>, Status> {
        let span = info_span!("admin.place_hold");
        async move {
            let caller = self.caller(&req, "PlaceHold").await?;
            self.answered(&caller, "PlaceHold", crate::holds::place(&self.state, &caller, req.into_inner()).await)
                .await
                .map(Response::new)
        }
        .instrument(span)
        .await
    }

    async fn lift_hold(&self, req: Request<LiftHoldRequest>) -> Result<Response<Hold>, Status> {
        let span = info_span!("admin.lift_hold");
        async move {
            let caller = self.caller(&req, "LiftHold").await?;
            self.answered(&caller, "LiftHold", crate::holds::lift(&self.state, &caller, req.into_inner()).await)
                .await
                .map(Response::new)
        }
        .instrument(span)
        .await
    }

    async fn list_holds(&self, req: Request<ListHoldsRequest>) -> Result<Response<ListHoldsResponse>, Status> {
        let span = info_span!("admin.list_holds");
        async move {
            let caller = self.caller(&req, "ListHolds").await?;
            crate::holds::list(&self.state, &caller).await.map(Response::new)
        }
        .instrument(span)
        .await
    }

    async fn prune(&self, req: Request<PruneRequest>) -> Result<Response<PruneResponse>, Status> {
        let span = info_span!("admin.prune");
        async move {
            let caller = self.caller(&req, "Prune").await?;
            self.answered(&caller, "Prune", crate::holds::prune(&self.state, &caller, req.into_inner()).await)
                .await
                .map(Response::new)
        }
        .instrument(span)
        .await
    }
}
