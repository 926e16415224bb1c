//! The `isx.v1.Exchange` service: publish, subscribe, ack.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use isx_core::digest::content_digest;
use isx_core::timestamp::{from_unix_millis, to_unix_millis};
use isx_core::validate::{TextLimits, validate_alert};
use isx_core::wire::exchange_server::Exchange;
use isx_core::wire::{
    AckRequest, AckResponse, Alert, Delivery, DisclosureLevel, PublishRequest, PublishResponse, Receipt,
    RecipientDecision, SubscribeRequest, SubscribeResponse, subscribe_response,
};
use isx_core::{NodeId, Role};
use prost::Message;
use tokio::sync::{mpsc, watch};
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::{Request, Response, Status};
use tracing::{Instrument, debug, info, info_span, warn};

use crate::commit::Committer;
use crate::config::{GatewayConfig, NodeInfo};
use crate::disclosure::Disclose;
use crate::error::{OFFICER_HEADER, RequestError};
use crate::forward;
use crate::server::ConnInfo;
use crate::store::{PublishOutcome, Store, StoredAlert};

/// The source of "now", in Unix milliseconds. Tests may inject their own.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// The system clock.
pub fn system_clock() -> Clock {
    Arc::new(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
    })
}

/// A registered node and its live delivery state.
#[derive(Debug)]
pub struct NodeSlot {
    /// The node as configured.
    pub info: NodeInfo,
    /// Bumped with the newest sequence number whenever a delivery is queued.
    wake: watch::Sender<u64>,
    /// The highest cursor streamed to this node since start.
    delivered: AtomicU64,
}

/// Everything the request handlers share.
pub struct State {
    /// Limits from config.
    pub limits: crate::config::Limits,
    /// Subscription batch size.
    pub batch: usize,
    /// The registered nodes.
    pub nodes: BTreeMap<NodeId, NodeSlot>,
    /// Durable state.
    pub store: Store,
    /// Group commit.
    pub committer: Committer,
    /// The disclosure decision.
    pub disclose: Arc<dyn Disclose>,
    /// Cancelled when the gateway shuts down; ends every subscription.
    pub shutdown: CancellationToken,
    /// Tracks subscription tasks so that shutdown can wait for them.
    pub tracker: TaskTracker,
    /// The clock.
    pub clock: Clock,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State").field("nodes", &self.nodes.keys().collect::<Vec<_>>()).finish_non_exhaustive()
    }
}

impl State {
    /// Builds the shared state from a validated config.
    pub fn new(
        config: &GatewayConfig,
        store: Store,
        committer: Committer,
        disclose: Arc<dyn Disclose>,
        shutdown: CancellationToken,
        clock: Clock,
    ) -> Self {
        let nodes = config
            .node_infos()
            .into_iter()
            .map(|info| (info.id.clone(), NodeSlot { info, wake: watch::channel(0).0, delivered: AtomicU64::new(0) }))
            .collect();
        Self {
            limits: config.limits.clone(),
            batch: config.delivery.batch,
            nodes,
            store,
            committer,
            disclose,
            shutdown,
            tracker: TaskTracker::new(),
            clock,
        }
    }

    fn now_ms(&self) -> u64 {
        (self.clock)()
    }

    /// The registered node behind this request's certificate, holding `role`.
    fn caller<T>(&self, req: &Request<T>, role: Role) -> Result<(&NodeSlot, ConnInfo), RequestError> {
        let conn = req.extensions().get::<ConnInfo>().cloned().ok_or(RequestError::Unauthenticated)?;
        let slot = self.nodes.get(&conn.identity.node).ok_or(RequestError::Unauthenticated)?;
        if !slot.info.has(role) {
            return Err(RequestError::MissingRole { node: slot.info.id.to_string(), role });
        }
        Ok((slot, conn))
    }
}

/// Reads and checks the `x-isx-officer` metadata.
pub fn officer<T>(req: &Request<T>) -> Result<String, RequestError> {
    let value = req.metadata().get(OFFICER_HEADER).ok_or(RequestError::MissingOfficer)?;
    let text = value.to_str().map_err(|_| RequestError::BadOfficer("must be printable ASCII".into()))?.trim();
    if text.is_empty() {
        return Err(RequestError::MissingOfficer);
    }
    if text.len() > 128 {
        return Err(RequestError::BadOfficer("is longer than 128 characters".into()));
    }
    Ok(text.to_owned())
}

/// The `Exchange` service.
#[derive(Debug, Clone)]
pub struct ExchangeService {
    state: Arc<State>,
}

impl ExchangeService {
    /// A service over `state`.
    pub fn new(state: Arc<State>) -> Self {
        Self { state }
    }

    async fn publish(&self, req: Request<PublishRequest>) -> Result<PublishResponse, RequestError> {
        let st = &*self.state;
        let (slot, _conn) = st.caller(&req, Role::Publish)?;
        let officer = officer(&req)?;
        let alert = req.into_inner().alert.ok_or(RequestError::MissingAlert)?;
        let size = alert.encoded_len();
        if size > st.limits.max_alert_bytes {
            return Err(RequestError::TooLarge { size, limit: st.limits.max_alert_bytes });
        }
        let now = st.now_ms();
        let limits = TextLimits {
            narrative: st.limits.max_narrative_bytes,
            list: st.limits.max_list_len,
            ..TextLimits::default()
        };
        validate_alert(&alert, now, &limits)?;
        if alert.origin != slot.info.id.as_str() {
            return Err(RequestError::OriginMismatch {
                caller: slot.info.id.to_string(),
                origin: alert.origin.clone(),
            });
        }
        let mut unknown = Vec::new();
        for (i, a) in alert.addressees.iter().enumerate() {
            if !st.nodes.keys().any(|n| n.as_str() == a) {
                unknown.push(isx_core::FieldViolation {
                    field: format!("addressees[{i}]"),
                    description: format!("{a:?} is not a registered node"),
                });
            }
        }
        if !unknown.is_empty() {
            return Err(RequestError::Invalid(isx_core::ValidationError { violations: unknown }));
        }

        let digest = content_digest(&alert);
        if let Some(existing) = st.store.alert(&alert.alert_id)? {
            return duplicate_or_conflict(existing, &digest, &alert.alert_id);
        }
        let mut alert = alert;
        if !alert.forwarded_from.is_empty() {
            alert.hops = self.check_forward(&alert, &slot.info)?;
        }

        let infos: Vec<NodeInfo> = st.nodes.values().map(|n| n.info.clone()).collect();
        let candidates = isx_policy::candidates(&alert, &infos);
        let origin = st.nodes.get(&slot.info.id).map(|n| &n.info);
        let (policy_version, decided) = st.disclose.decide(&alert, origin, &candidates, &officer);
        let queued_at = from_unix_millis(now);
        let mut decisions = Vec::with_capacity(candidates.len());
        let mut deliveries = Vec::new();
        for ((node, _), d) in candidates.iter().zip(decided) {
            decisions.push(RecipientDecision {
                node: node.id.to_string(),
                level: d.level as i32,
                policy_ids: d.policy_ids.clone(),
                removed_fields: d.removed_fields.clone(),
            });
            if d.level != DisclosureLevel::Denied
                && let Some(view) = d.view
            {
                let delivery = Delivery {
                    alert: Some(view),
                    level: d.level as i32,
                    policy_ids: d.policy_ids,
                    removed_fields: d.removed_fields,
                    queued_at: Some(queued_at),
                    policy_version: policy_version.clone(),
                };
                deliveries.push((node.id.clone(), st.store.next_seq()?, delivery));
            }
        }
        let receipt = Receipt {
            alert_id: alert.alert_id.clone(),
            content_digest: hex::encode(digest),
            accepted_at: Some(queued_at),
            recipients: decisions,
            hops: alert.hops,
            policy_version,
        };
        let expires_ms = alert.expires_at.as_ref().map(to_unix_millis).unwrap_or(u64::MAX);
        let stored = StoredAlert { alert: Some(alert), digest: digest.to_vec(), receipt: Some(receipt.clone()) };
        match st.store.publish(&stored, &deliveries, expires_ms)? {
            PublishOutcome::Stored => {}
            PublishOutcome::Duplicate(existing) => return duplicate_or_conflict(*existing, &digest, &receipt.alert_id),
            PublishOutcome::Conflict => return Err(RequestError::Conflict(receipt.alert_id)),
        }
        // No log, no share: nothing is acknowledged or streamed before this flush.
        st.committer.commit().await?;
        for (node, seq, _) in &deliveries {
            if let Some(slot) = st.nodes.get(node) {
                slot.wake.send_replace(*seq);
            }
        }
        info!(recipients = receipt.recipients.len(), queued = deliveries.len(), "alert published");
        Ok(PublishResponse { receipt: Some(receipt), duplicate: false })
    }

    /// Checks an onward relay: the forwarder received the original, and the
    /// labels are kept or tightened. Returns the new hop count.
    fn check_forward(&self, alert: &Alert, forwarder: &NodeInfo) -> Result<u32, RequestError> {
        let parent = self.state.store.alert(&alert.forwarded_from)?;
        let received = parent.as_ref().and_then(|p| p.receipt.as_ref()).is_some_and(|r| {
            r.recipients.iter().any(|d| d.node == forwarder.id.as_str() && d.level() != DisclosureLevel::Denied)
        });
        let parent_alert = parent.and_then(|p| p.alert);
        match parent_alert {
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

    async fn ack(&self, req: Request<AckRequest>) -> Result<AckResponse, RequestError> {
        let st = &*self.state;
        let (slot, _) = st.caller(&req, Role::Subscribe)?;
        let _officer = officer(&req)?;
        let cursor = req.get_ref().cursor;
        let highest = slot.delivered.load(Ordering::Acquire);
        if cursor > highest {
            return Err(RequestError::CursorNotDelivered { cursor, highest });
        }
        let released = st.store.ack(&slot.info.id, cursor)?;
        debug!(cursor, released, "ack");
        Ok(AckResponse { released })
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

/// Streams `node`'s outbox after `cursor` into `tx` until shutdown or disconnect.
async fn pump(state: Arc<State>, node: NodeId, mut cursor: u64, tx: mpsc::Sender<Result<SubscribeResponse, Status>>) {
    let Some(slot) = state.nodes.get(&node) else { return };
    let mut wake = slot.wake.subscribe();
    loop {
        wake.borrow_and_update();
        let batch = match state.store.pending(&node, cursor, state.batch, state.now_ms()) {
            Ok(batch) => batch,
            Err(e) => {
                warn!(error = %e, "subscription ended by a storage error");
                let _ = tx.send(Err(Status::from(RequestError::Storage(e)))).await;
                return;
            }
        };
        if batch.is_empty() {
            tokio::select! {
                _ = state.shutdown.cancelled() => return,
                _ = tx.closed() => return,
                changed = wake.changed() => if changed.is_err() { return },
            }
            continue;
        }
        for (seq, delivery) in batch {
            let alert_id = delivery.alert.as_ref().map(|a| a.alert_id.clone()).unwrap_or_default();
            let msg = SubscribeResponse { cursor: seq, event: Some(subscribe_response::Event::Delivery(delivery)) };
            slot.delivered.fetch_max(seq, Ordering::AcqRel);
            tokio::select! {
                _ = state.shutdown.cancelled() => return,
                sent = tx.send(Ok(msg)) => if sent.is_err() { return },
            }
            debug!(cursor = seq, alert_id = %alert_id, "delivered");
            cursor = seq;
        }
    }
}

type SubscribeStream = Pin<Box<dyn Stream<Item = Result<SubscribeResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Exchange for ExchangeService {
    async fn publish(&self, req: Request<PublishRequest>) -> Result<Response<PublishResponse>, Status> {
        let node = req.extensions().get::<ConnInfo>().map(|c| c.identity.node.to_string()).unwrap_or_default();
        let officer = req.metadata().get(OFFICER_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        let alert_id = req.get_ref().alert.as_ref().map(|a| a.alert_id.clone()).unwrap_or_default();
        let span = info_span!("publish", node = %node, officer = %officer, alert_id = %alert_id);
        async move {
            self.publish(req).await.map(Response::new).map_err(|e| {
                warn!(error = %e, "publish refused");
                Status::from(e)
            })
        }
        .instrument(span)
        .await
    }

    type SubscribeStream = SubscribeStream;

    async fn subscribe(&self, req: Request<SubscribeRequest>) -> Result<Response<Self::SubscribeStream>, Status> {
        let st = &self.state;
        let (slot, _) = st.caller(&req, Role::Subscribe)?;
        let officer = officer(&req)?;
        let node = slot.info.id.clone();
        let cursor = req.get_ref().after_cursor;
        let span = info_span!("subscribe", node = %node, officer = %officer);
        span.in_scope(|| info!(after_cursor = cursor, backlog = st.store.backlog(&node), "subscribed"));
        let (tx, rx) = mpsc::channel(16);
        st.tracker.spawn(pump(st.clone(), node, cursor, tx).instrument(span));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn ack(&self, req: Request<AckRequest>) -> Result<Response<AckResponse>, Status> {
        let node = req.extensions().get::<ConnInfo>().map(|c| c.identity.node.to_string()).unwrap_or_default();
        let span = info_span!("ack", node = %node);
        async move { self.ack(req).await.map(Response::new).map_err(Status::from) }.instrument(span).await
    }
}
