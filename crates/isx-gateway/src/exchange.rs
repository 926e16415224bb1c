//! The `isx.v1.Exchange` service: publish and ack here; subscribe, lookups
//! and access in their own modules. Every call runs in a span naming the
//! node, the officer and what it concerns, and every refusal is recorded.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use isx_core::digest::content_digest;
use isx_core::wire::exchange_server::Exchange;
use isx_core::wire::{
    AckRequest, AckResponse, Alert, AllowOnwardRequest, AllowOnwardResponse, AmendRequest, AmendResponse,
    DecideAccessRequest, DecideAccessResponse, DeclineFollowUpRequest, DeclineFollowUpResponse, DisclosureLevel,
    GetAlertStatusRequest, GetAlertStatusResponse, LiftRestrictionRequest, LiftRestrictionResponse,
    ListAccessRequestsRequest, ListAccessRequestsResponse, ListOpenHitsRequest, ListOpenHitsResponse, LookupRequest,
    LookupResponse, PublishRequest, PublishResponse, RequestAccessRequest, RequestAccessResponse, RestrictRequest,
    RestrictResponse, SubscribeRequest, WithdrawRequest, WithdrawResponse,
};
use std::collections::BTreeMap;

use isx_core::{NodeId, NodeInfo, Role};
use tonic::{Request, Response, Status};
use tracing::{Instrument, debug, info, info_span, warn};

use crate::conn::{RequestInfo, Subject};
use crate::error::RequestError;
use crate::publish::{self, PublishInput};
use crate::records;
use crate::refusal::refuse;
use crate::state::State;
use crate::store::{PublishOutcome, StoreError, StoredAlert};
use crate::subscribe::SubscribeStream;
use crate::{access, forward, lifecycle, lookup, onward, open_hits, subscribe};

/// The `Exchange` service.
#[derive(Debug, Clone)]
pub(crate) struct ExchangeService {
    /// The gateway's shared state.
    state: Arc<State>,
}

impl ExchangeService {
    /// A service over `state`.
    pub(crate) fn new(state: Arc<State>) -> Self {
        Self { state }
    }

    /// Admits, plans, appends, persists, commits and settles one publish.
    async fn publish(&self, req: Request<PublishRequest>) -> Result<PublishResponse, RequestError> {
        let st = &*self.state;
        let caller = st.caller(&req, &[Role::Publish])?;
        let mut alert = req.into_inner().alert.ok_or(RequestError::MissingAlert)?;
        let now = st.now_ms();
        publish::check_alert(&alert, caller.node(), &st.infos, &st.limits, now)?;
        // The gateway sets the version: 1 as published (what the origin sends is ignored).
        alert.version = 0;
        let digest = content_digest(&alert);
        if let Some(existing) = st.store.alert(&alert.alert_id)? {
            return duplicate_or_conflict(existing, &digest, &alert.alert_id);
        }
        crate::storage_limit::check(&st.storage, &alert, now)?;
        if !alert.forwarded_from.is_empty() {
            alert.hops = self.check_forward(&alert, &caller.slot.info)?;
        }
        // Laundering: what shares a person, document or object with an alert
        // the publisher received under restricted labels takes those labels,
        // and reaches only that alert's holders (never refused for it).
        let index = publish::index_rows(&alert, st.pseudonyms());
        let except = [alert.alert_id.as_str(), alert.forwarded_from.as_str()];
        let overlaps = onward::overlaps(&st.store, caller.node(), &except, &index, now, st.limits.max_lookup_matches)?;
        for o in &overlaps {
            onward::raise(alert.labels.get_or_insert_default(), &o.labels);
        }
        let raised_by: Vec<String> = overlaps.into_iter().map(|o| o.alert_id).collect();
        if !raised_by.is_empty() {
            info!(overlaps = raised_by.len(), "labels raised to those of received restricted alerts");
        }
        let related = onward::related(&st.store, &alert, &raised_by)?;

        let candidates = isx_policy::candidates(&alert, &st.infos);
        let decided = st.disclose.decide(&alert, Some(&caller.slot.info), &candidates, &caller.officer, &related);
        // A full queue refuses only its own recipient (one node cannot block another).
        let queues = st.store.queues();
        let full: BTreeMap<NodeId, u64> = candidates
            .iter()
            .filter_map(|(n, _)| queues.full(std::iter::once(&n.id)).map(|(id, q)| (id.clone(), q)))
            .collect();
        let plan = publish::plan(PublishInput {
            alert,
            digest,
            by: caller.actor(),
            candidates: &candidates,
            decided,
            full: &full,
            queue_limit: queues.limit(),
            now_ms: now,
            index,
            raised_by,
        });
        st.recorder.append(plan.records)?;
        let in_flight = match st.store.publish(&plan.write)? {
            PublishOutcome::Stored(in_flight) => in_flight,
            PublishOutcome::Duplicate(existing) => {
                return duplicate_or_conflict(*existing, &digest, plan.write.alert_id());
            }
            PublishOutcome::Conflict => return Err(RequestError::Conflict(plan.write.alert_id().to_owned())),
        };
        // No log, no share: nothing is acknowledged or readable before this flush.
        let failed: Option<(String, RequestError)> = if st.faults.held_publish_fails().await {
            let e = StoreError::Sled(sled::Error::Unsupported("injected fault: held publish".into()));
            Some((e.to_string(), e.into()))
        } else {
            st.committer.commit().await.err().map(|e| (e.to_string(), e.into()))
        };
        if let Some((cause, e)) = failed {
            // Take the writes back so that a later flush does not disclose them,
            // and say so in the log next to the collection record.
            warn!(error = %e, "the publish is withdrawn");
            st.store.retract(&plan.write, in_flight)?;
            let _ = st.recorder.append(vec![records::withdrawn(caller.actor(), plan.write.alert_id(), &cause)]);
            return Err(e);
        }
        let queued = in_flight.queued().len();
        in_flight.settle();
        info!(recipients = plan.receipt.recipients.len(), queued, "alert published");
        Ok(PublishResponse { receipt: Some(plan.receipt), duplicate: false })
    }

    /// Checks an onward relay: the forwarder received the original, and the
    /// labels are kept or tightened. Returns the new hop count.
    fn check_forward(&self, alert: &Alert, forwarder: &NodeInfo) -> Result<u32, RequestError> {
        let parent = self.state.store.alert(&alert.forwarded_from)?;
        let received = parent.as_ref().and_then(|p| p.receipt.as_ref()).is_some_and(|r| {
            r.recipients.iter().any(|d| d.node == forwarder.id.as_str() && d.level() != DisclosureLevel::Denied)
        });
        match parent.and_then(|p| p.alert) {
            Some(parent) if received => {
                forward::check_labels(alert, &parent)?;
                Ok(parent.hops + 1)
            }
            _ => Err(RequestError::NotReceived {
                node: forwarder.id.to_string(),
                alert_id: alert.forwarded_from.clone(),
            }),
        }
    }

    /// Releases what the caller has received up to its cursor.
    async fn ack(&self, req: Request<AckRequest>) -> Result<AckResponse, RequestError> {
        let st = &*self.state;
        let caller = st.caller(&req, &[Role::Subscribe])?;
        let cursor = req.get_ref().cursor;
        let highest = caller.slot.delivered.load(Ordering::Acquire);
        if cursor > highest {
            return Err(RequestError::CursorNotDelivered { cursor, highest });
        }
        let released = st.store.ack(caller.node(), cursor)?;
        debug!(cursor, released, "ack");
        let (confirmed, superseded) = lifecycle::confirm(st, &caller, &req.get_ref().confirmations).await?;
        Ok(AckResponse { released, confirmed, superseded })
    }

    /// Runs one handler in a span that names the node, the officer and what
    /// the call concerns, and records a refusal.
    async fn answer<R, Fut>(&self, rpc: &'static str, info: RequestInfo, handler: Fut) -> Result<Response<R>, Status>
    where
        Fut: Future<Output = Result<R, RequestError>>,
    {
        let span =
            info_span!("exchange", rpc, node = %info.node(), officer = %info.officer, subject = %info.subject.id());
        async move {
            match handler.await {
                Ok(resp) => Ok(Response::new(resp)),
                Err(e) => refuse(&self.state, &info, e).await,
            }
        }
        .instrument(span)
        .await
    }
}

fn duplicate_or_conflict(
    existing: StoredAlert,
    digest: &[u8; 32],
    alert_id: &str,
) -> Result<PublishResponse, RequestError> {
    if existing.digest == digest {
        Ok(PublishResponse { receipt: existing.receipt, duplicate: true })
    } else {
        Err(RequestError::Conflict(alert_id.to_owned()))
    }
}

#[tonic::async_trait]
impl Exchange for ExchangeService {
    async fn publish(&self, req: Request<PublishRequest>) -> Result<Response<PublishResponse>, Status> {
        let alert_id = req.get_ref().alert.as_ref().map(|a| a.alert_id.as_str()).unwrap_or_default();
        let info = RequestInfo::of(&req, Subject::alert(alert_id));
        self.answer("publish", info, self.publish(req)).await
    }

    type SubscribeStream = SubscribeStream;

    async fn subscribe(&self, req: Request<SubscribeRequest>) -> Result<Response<Self::SubscribeStream>, Status> {
        let info = RequestInfo::of(&req, Subject::None);
        self.answer("subscribe", info, async { subscribe::subscribe(&self.state, req) }).await
    }

    async fn ack(&self, req: Request<AckRequest>) -> Result<Response<AckResponse>, Status> {
        let info = RequestInfo::of(&req, Subject::None);
        self.answer("ack", info, self.ack(req)).await
    }

    async fn lookup(&self, req: Request<LookupRequest>) -> Result<Response<LookupResponse>, Status> {
        let info = RequestInfo::of(&req, Subject::None);
        self.answer("lookup", info, lookup::lookup(&self.state, req)).await
    }

    async fn request_access(
        &self,
        req: Request<RequestAccessRequest>,
    ) -> Result<Response<RequestAccessResponse>, Status> {
        let info = RequestInfo::of(&req, Subject::hit(&req.get_ref().hit_id));
        self.answer("request_access", info, access::request_access(&self.state, req)).await
    }

    async fn decide_access(&self, req: Request<DecideAccessRequest>) -> Result<Response<DecideAccessResponse>, Status> {
        let info = RequestInfo::of(&req, Subject::request(&req.get_ref().request_id));
        self.answer("decide_access", info, access::decide_access(&self.state, req)).await
    }

    async fn decline_follow_up(
        &self,
        req: Request<DeclineFollowUpRequest>,
    ) -> Result<Response<DeclineFollowUpResponse>, Status> {
        let info = RequestInfo::of(&req, Subject::hit(&req.get_ref().hit_id));
        self.answer("decline_follow_up", info, access::decline_follow_up(&self.state, req)).await
    }

    async fn allow_onward(&self, req: Request<AllowOnwardRequest>) -> Result<Response<AllowOnwardResponse>, Status> {
        let info = RequestInfo::of(&req, Subject::alert(&req.get_ref().alert_id));
        self.answer("allow_onward", info, onward::allow_onward(&self.state, req)).await
    }

    async fn list_access_requests(
        &self,
        req: Request<ListAccessRequestsRequest>,
    ) -> Result<Response<ListAccessRequestsResponse>, Status> {
        let info = RequestInfo::of(&req, Subject::None);
        self.answer("list_access_requests", info, access::list_access_requests(&self.state, req)).await
    }

    async fn amend(&self, req: Request<AmendRequest>) -> Result<Response<AmendResponse>, Status> {
        let alert_id = req.get_ref().alert.as_ref().map(|a| a.alert_id.as_str()).unwrap_or_default();
        let info = RequestInfo::of(&req, Subject::alert(alert_id));
        self.answer("amend", info, lifecycle::amend(&self.state, req)).await
    }

    async fn withdraw(&self, req: Request<WithdrawRequest>) -> Result<Response<WithdrawResponse>, Status> {
        let info = RequestInfo::of(&req, Subject::alert(&req.get_ref().alert_id));
        self.answer("withdraw", info, lifecycle::withdraw(&self.state, req)).await
    }

    async fn restrict(&self, req: Request<RestrictRequest>) -> Result<Response<RestrictResponse>, Status> {
        let info = RequestInfo::of(&req, Subject::alert(&req.get_ref().alert_id));
        self.answer("restrict", info, lifecycle::restrict(&self.state, req)).await
    }

    async fn lift_restriction(
        &self,
        req: Request<LiftRestrictionRequest>,
    ) -> Result<Response<LiftRestrictionResponse>, Status> {
        let info = RequestInfo::of(&req, Subject::alert(&req.get_ref().alert_id));
        self.answer("lift_restriction", info, lifecycle::lift_restriction(&self.state, req)).await
    }

    async fn get_alert_status(
        &self,
        req: Request<GetAlertStatusRequest>,
    ) -> Result<Response<GetAlertStatusResponse>, Status> {
        let info = RequestInfo::of(&req, Subject::alert(&req.get_ref().alert_id));
        self.answer("get_alert_status", info, lifecycle::get_alert_status(&self.state, req)).await
    }

    async fn list_open_hits(
        &self,
        req: Request<ListOpenHitsRequest>,
    ) -> Result<Response<ListOpenHitsResponse>, Status> {
        let info = RequestInfo::of(&req, Subject::None);
        self.answer("list_open_hits", info, open_hits::list_open_hits(&self.state, req)).await
    }
}
