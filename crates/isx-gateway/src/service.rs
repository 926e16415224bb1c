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
    AckRequest, AckResponse, Alert, AuditRecord, DecideAccessRequest, DecideAccessResponse, DeclineFollowUpRequest,
    DeclineFollowUpResponse, Delivery, DisclosureLevel, ListAccessRequestsRequest, ListAccessRequestsResponse,
    LookupRequest, LookupResponse, Operation, Outcome, PublishRequest, PublishResponse, Receipt, RecipientDecision,
    RecipientLevel, RequestAccessRequest, RequestAccessResponse, SubscribeRequest, SubscribeResponse,
    subscribe_response,
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

use crate::audit::{Recorder, about};
use crate::commit::Committer;
use crate::config::{GatewayConfig, NodeInfo};
use crate::disclosure::Disclose;
use crate::error::{OFFICER_HEADER, RequestError};
use crate::forward;
use crate::server::ConnInfo;
use crate::store::{IndexRow, OutboxEntry, PublishOutcome, Store, StoredAlert};

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
    pub(crate) wake: watch::Sender<u64>,
    /// The highest cursor streamed to this node since start.
    delivered: AtomicU64,
    /// Undelivered events in its outbox (kept in step with the store).
    pub(crate) queued: AtomicU64,
    /// Open subscription streams.
    streams: std::sync::atomic::AtomicUsize,
    /// Its request-rate token bucket: (tokens, last refill).
    bucket: std::sync::Mutex<(f64, std::time::Instant)>,
    /// Rate-limit refusals: when the last was recorded, and how many since were not.
    refusals: std::sync::Mutex<(Option<std::time::Instant>, u64)>,
}

/// Everything the request handlers share.
pub struct State {
    /// Limits from config.
    pub limits: crate::config::Limits,
    /// Subscription batch size.
    pub batch: usize,
    /// The registered nodes.
    pub nodes: BTreeMap<NodeId, NodeSlot>,
    /// The same nodes as a list, in id order, for routing.
    pub infos: Vec<NodeInfo>,
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
    /// The audit log.
    pub recorder: Arc<Recorder>,
    /// Follow-up access settings.
    pub access: crate::config::AccessConfig,
    /// Serialises state changes of access requests.
    pub(crate) access_lock: tokio::sync::Mutex<()>,
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
        recorder: Arc<Recorder>,
    ) -> Self {
        let infos = config.node_infos();
        let burst = f64::from(config.limits.burst_per_node);
        let nodes = infos
            .iter()
            .cloned()
            .map(|info| {
                let queued = AtomicU64::new(store.backlog(&info.id) as u64);
                let slot = NodeSlot {
                    info,
                    wake: watch::channel(0).0,
                    delivered: AtomicU64::new(0),
                    queued,
                    streams: Default::default(),
                    bucket: std::sync::Mutex::new((burst, std::time::Instant::now())),
                    refusals: Default::default(),
                };
                (slot.info.id.clone(), slot)
            })
            .collect();
        Self {
            limits: config.limits.clone(),
            batch: config.delivery.batch,
            nodes,
            infos,
            store,
            committer,
            disclose,
            shutdown,
            tracker: TaskTracker::new(),
            clock,
            recorder,
            access: config.access.clone(),
            access_lock: tokio::sync::Mutex::new(()),
        }
    }

    pub(crate) fn now_ms(&self) -> u64 {
        (self.clock)()
    }

    /// The registered node behind this request's certificate, holding `role`,
    /// within its request rate.
    pub(crate) fn caller<T>(&self, req: &Request<T>, role: Role) -> Result<(&NodeSlot, ConnInfo), RequestError> {
        let conn = req.extensions().get::<ConnInfo>().cloned().ok_or(RequestError::Unauthenticated)?;
        let slot = self.nodes.get(&conn.identity.node).ok_or(RequestError::Unauthenticated)?;
        self.admit(slot)?;
        if !slot.info.has(role) {
            return Err(RequestError::MissingRole { node: slot.info.id.to_string(), role });
        }
        Ok((slot, conn))
    }

    /// Takes one token from the node's bucket (refilled at `rate_per_node`).
    pub(crate) fn admit(&self, slot: &NodeSlot) -> Result<(), RequestError> {
        let (rate, burst) = (self.limits.rate_per_node, self.limits.burst_per_node);
        let mut bucket = slot.bucket.lock().unwrap_or_else(|e| e.into_inner());
        let now = std::time::Instant::now();
        let refill = now.duration_since(bucket.1).as_secs_f64() * rate;
        *bucket = ((bucket.0 + refill).min(f64::from(burst)), now);
        if bucket.0 < 1.0 {
            return Err(RequestError::RateLimited { node: slot.info.id.to_string(), rate, burst });
        }
        bucket.0 -= 1.0;
        Ok(())
    }

    /// Refuses if queueing one more event for `node` would pass `max_queue_per_node`.
    pub(crate) fn check_queue(&self, node: &NodeId) -> Result<(), RequestError> {
        let limit = self.limits.max_queue_per_node;
        match self.nodes.get(node).map(|s| s.queued.load(Ordering::Acquire)) {
            Some(queued) if queued >= limit => Err(RequestError::QueueFull { node: node.to_string(), queued, limit }),
            _ => Ok(()),
        }
    }

    /// Counts events queued for `node`.
    pub(crate) fn enqueued(&self, node: &NodeId, n: u64) {
        if let Some(slot) = self.nodes.get(node) {
            slot.queued.fetch_add(n, Ordering::AcqRel);
        }
    }

    /// Counts events that left `node`'s queue (acknowledged or expired).
    pub(crate) fn dequeued(&self, node: &str, n: u64) {
        if let Some(slot) = self.nodes.iter().find(|(id, _)| id.as_str() == node).map(|(_, s)| s) {
            let _ = slot.queued.fetch_update(Ordering::AcqRel, Ordering::Acquire, |q| Some(q.saturating_sub(n)));
        }
    }

    /// Whether a rate-limit refusal of `node` should be recorded now (at most
    /// one record per node per second), and how many were not recorded since.
    fn record_refusal(&self, node: &NodeId) -> Option<u64> {
        let slot = self.nodes.get(node)?;
        let mut log = slot.refusals.lock().unwrap_or_else(|e| e.into_inner());
        let now = std::time::Instant::now();
        match log.0 {
            Some(last) if now.duration_since(last) < std::time::Duration::from_secs(1) => {
                log.1 += 1;
                None
            }
            _ => {
                let skipped = log.1;
                *log = (Some(now), 0);
                Some(skipped)
            }
        }
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
        let (slot, conn) = st.caller(&req, Role::Publish)?;
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

        let candidates = isx_policy::candidates(&alert, &st.infos);
        let origin = st.nodes.get(&slot.info.id).map(|n| &n.info);
        let (policy_version, decided) = st.disclose.decide(&alert, origin, &candidates, &officer);
        let queued_at = from_unix_millis(now);
        let digest_hex = hex::encode(digest);
        let key = &st.recorder.log().keys().pseudonyms;
        let identifiers = isx_core::identifiers::of_alert(&alert);
        let pseudonyms: Vec<String> = identifiers.iter().map(|i| key.pseudonym(i)).collect();
        let index: Vec<IndexRow> = identifiers
            .iter()
            .zip(&pseudonyms)
            .map(|(i, p)| IndexRow { pseudonym: p.clone(), kind: isx_core::identifiers::kind_of(i).to_owned() })
            .collect();
        let mut decisions = Vec::with_capacity(candidates.len());
        let mut deliveries = Vec::new();
        let mut denials = Vec::new();
        for ((node, _), d) in candidates.iter().zip(decided) {
            decisions.push(RecipientDecision {
                node: node.id.to_string(),
                level: d.level as i32,
                policy_ids: d.policy_ids.clone(),
                removed_fields: d.removed_fields.clone(),
            });
            match d.view {
                Some(view) if d.level != DisclosureLevel::Denied => {
                    let delivery = Delivery {
                        alert: Some(view),
                        level: d.level as i32,
                        policy_ids: d.policy_ids,
                        removed_fields: d.removed_fields,
                        queued_at: Some(queued_at),
                        policy_version: policy_version.clone(),
                        request_id: String::new(),
                    };
                    deliveries.push((node.id.clone(), 0, delivery)); // seq assigned by the store
                }
                _ => denials.push(AuditRecord {
                    recipients: vec![RecipientLevel {
                        node: node.id.to_string(),
                        level: d.level as i32,
                        policy_ids: d.policy_ids.clone(),
                    }],
                    policy_ids: d.policy_ids,
                    detail: format!("recipient {} refused by policy", node.id),
                    ..about(Some(&conn), &officer, Operation::Denial, Outcome::Refused)
                }),
            }
        }
        let receipt = Receipt {
            alert_id: alert.alert_id.clone(),
            content_digest: digest_hex.clone(),
            accepted_at: Some(queued_at),
            recipients: decisions,
            hops: alert.hops,
            policy_version: policy_version.clone(),
        };
        let expires_ms = alert.expires_at.as_ref().map(to_unix_millis).unwrap_or(u64::MAX);
        // The collection record, then one denial per refused recipient; all
        // share the alert's identity fields.
        let collection = AuditRecord {
            purpose: alert.purpose.clone(),
            legal_basis: alert.legal_basis.clone(),
            alert_id: alert.alert_id.clone(),
            content_digest: digest_hex,
            recipients: receipt
                .recipients
                .iter()
                .map(|r| RecipientLevel { node: r.node.clone(), level: r.level, policy_ids: r.policy_ids.clone() })
                .collect(),
            policy_version: policy_version.clone(),
            subject_pseudonyms: pseudonyms.clone(),
            detail: if alert.forwarded_from.is_empty() {
                String::new()
            } else {
                format!("relays {} (hop {})", alert.forwarded_from, alert.hops)
            },
            ..about(Some(&conn), &officer, Operation::Collection, Outcome::Ok)
        };
        let mut records = vec![collection.clone()];
        records.extend(denials.into_iter().map(|d| AuditRecord {
            purpose: collection.purpose.clone(),
            legal_basis: collection.legal_basis.clone(),
            alert_id: collection.alert_id.clone(),
            content_digest: collection.content_digest.clone(),
            policy_version: policy_version.clone(),
            subject_pseudonyms: pseudonyms.clone(),
            ..d
        }));
        let audit = crate::store::AuditFacts {
            purpose: alert.purpose.clone(),
            legal_basis: alert.legal_basis.clone(),
            subject_pseudonyms: pseudonyms,
        };
        for (node, _, _) in &deliveries {
            st.check_queue(node)?;
        }
        let stored = StoredAlert { alert: Some(alert), digest: digest.to_vec(), receipt: Some(receipt.clone()) };
        st.recorder.append(records)?;
        match st.store.publish(&stored, &mut deliveries, expires_ms, &audit, &index)? {
            PublishOutcome::Stored => {}
            PublishOutcome::Duplicate(existing) => return duplicate_or_conflict(*existing, &digest, &receipt.alert_id),
            PublishOutcome::Conflict => return Err(RequestError::Conflict(receipt.alert_id)),
        }
        // No log, no share: nothing is acknowledged or streamed before this flush.
        if let Err(e) = st.committer.commit().await {
            // Take the writes back so that a later flush does not disclose them,
            // and say so in the log next to the collection record.
            warn!(error = %e, "flush failed: the publish is withdrawn");
            st.store.retract(&receipt.alert_id, &deliveries, expires_ms, &index)?;
            let _ = st.recorder.append(vec![AuditRecord {
                alert_id: receipt.alert_id.clone(),
                detail: format!("publish withdrawn, nothing disclosed: {e}"),
                ..about(Some(&conn), &officer, Operation::Denial, Outcome::Error)
            }]);
            return Err(e.into());
        }
        for (node, seq, _) in &deliveries {
            st.enqueued(node, 1);
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
        let _ = slot.queued.fetch_update(Ordering::AcqRel, Ordering::Acquire, |q| Some(q.saturating_sub(released)));
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

/// Counts one open subscription stream until dropped.
struct StreamGuard {
    state: Arc<State>,
    node: NodeId,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        if let Some(slot) = self.state.nodes.get(&self.node) {
            slot.streams.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// Who is subscribed on a stream, for its disclosure records.
#[derive(Debug, Clone)]
struct Subscriber {
    node: NodeId,
    conn: ConnInfo,
    officer: String,
}

/// Streams `node`'s outbox after `cursor` into `tx` until shutdown or
/// disconnect. Each batch's disclosure records are made durable before any of
/// the batch leaves the gateway.
async fn pump(
    state: Arc<State>,
    who: Subscriber,
    mut cursor: u64,
    tx: mpsc::Sender<Result<SubscribeResponse, Status>>,
) {
    let node = who.node.clone();
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
        // No log, no share: the disclosure records are durable before the batch is sent.
        let records: Vec<AuditRecord> = batch
            .iter()
            .filter(|(_, e)| e.delivery.is_some())
            .map(|(_, entry)| disclosure_record(&who, entry))
            .collect();
        if !records.is_empty()
            && let Err(e) = state.recorder.durable(records).await
        {
            warn!(error = %e, "audit log unavailable: nothing streamed");
            let _ = tx.send(Err(Status::from(e))).await;
            return;
        }
        for (seq, entry) in batch {
            let Some((alert_id, event)) = event_of(entry) else { continue };
            let msg = SubscribeResponse { cursor: seq, event: Some(event) };
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

/// The stream event of an outbox entry, and the alert it concerns.
fn event_of(entry: OutboxEntry) -> Option<(String, subscribe_response::Event)> {
    use subscribe_response::Event;
    if let Some(d) = entry.delivery {
        let alert_id = d.alert.as_ref().map(|a| a.alert_id.clone()).unwrap_or_default();
        Some((alert_id, Event::Delivery(d)))
    } else if let Some(r) = entry.access_request {
        Some((r.alert_id.clone(), Event::AccessRequest(r)))
    } else {
        entry.access_outcome.map(|r| (r.alert_id.clone(), Event::AccessOutcome(r)))
    }
}

/// The disclosure record of one delivery to `who`.
fn disclosure_record(who: &Subscriber, entry: &crate::store::OutboxEntry) -> AuditRecord {
    let d = entry.delivery.clone().unwrap_or_default();
    let view = d.alert.clone().unwrap_or_default();
    let facts = entry.audit.clone().unwrap_or_default();
    AuditRecord {
        purpose: facts.purpose,
        legal_basis: facts.legal_basis,
        alert_id: view.alert_id.clone(),
        content_digest: isx_core::digest::content_digest_hex(&view),
        recipients: vec![RecipientLevel {
            node: who.node.to_string(),
            level: d.level,
            policy_ids: d.policy_ids.clone(),
        }],
        policy_ids: d.policy_ids,
        policy_version: d.policy_version,
        withheld_fields: d.removed_fields,
        request_id: d.request_id,
        subject_pseudonyms: facts.subject_pseudonyms,
        ..about(Some(&who.conn), &who.officer, Operation::Disclosure, Outcome::Ok)
    }
}

type SubscribeStream = Pin<Box<dyn Stream<Item = Result<SubscribeResponse, Status>> + Send>>;

impl ExchangeService {
    /// Records a refused request (durably) and turns the error into a status.
    /// If even the refusal cannot be recorded, the answer is `UNAVAILABLE`.
    async fn refuse<T>(&self, req_info: (Option<ConnInfo>, String, String), e: RequestError) -> Result<T, Status> {
        self.refuse_about(req_info, String::new(), e).await
    }

    /// [`Self::refuse`] for a request that names an access request or hit.
    async fn refuse_about<T>(
        &self,
        req_info: (Option<ConnInfo>, String, String),
        request_id: String,
        e: RequestError,
    ) -> Result<T, Status> {
        let (conn, officer, alert_id) = req_info;
        let mut detail = e.audit_detail();
        if matches!(e, RequestError::RateLimited { .. }) {
            // A flood must not become a flood of records: at most one a second
            // per node, counting the ones in between, and no wait for a flush
            // (a refusal discloses nothing).
            let node = conn.as_ref().map(|c| c.identity.node.clone());
            let Some(skipped) = node.as_ref().and_then(|n| self.state.record_refusal(n)) else {
                debug!(error = %e, "request refused (rate limit; recorded in the next record)");
                return Err(Status::from(e));
            };
            warn!(error = %e, "request refused");
            if skipped > 0 {
                detail.push_str(&format!("; {skipped} more refused since the last record"));
            }
            let record = AuditRecord { detail, ..about(conn.as_ref(), &officer, Operation::Denial, Outcome::Refused) };
            return match self.state.recorder.append(vec![record]) {
                Ok(_) => Err(Status::from(e)),
                Err(audit) => Err(Status::from(audit)),
            };
        }
        warn!(error = %e, "request refused");
        let record = AuditRecord {
            alert_id,
            request_id,
            detail,
            ..about(conn.as_ref(), &officer, Operation::Denial, Outcome::Refused)
        };
        match self.state.recorder.durable(vec![record]).await {
            Ok(_) => Err(Status::from(e)),
            Err(audit) => Err(Status::from(audit)),
        }
    }

    /// Runs one hit/access handler in a span that names the node, the officer
    /// and the request or hit, and records a refusal.
    async fn access_rpc<Req, Resp, Fut>(
        &self,
        rpc: &'static str,
        req: Request<Req>,
        subject: String,
        handler: impl FnOnce(Request<Req>) -> Fut,
    ) -> Result<Response<Resp>, Status>
    where
        Fut: std::future::Future<Output = Result<Resp, RequestError>>,
    {
        let info = request_info(&req, String::new());
        let node = info.0.as_ref().map(|c| c.identity.node.to_string()).unwrap_or_default();
        let span = info_span!("exchange", rpc, node = %node, officer = %info.1, subject = %subject);
        async move {
            match handler(req).await {
                Ok(resp) => Ok(Response::new(resp)),
                Err(e) => {
                    let request_id = if subject.starts_with("ar-") { subject.clone() } else { String::new() };
                    self.refuse_about(info, request_id, e).await
                }
            }
        }
        .instrument(span)
        .await
    }
}

fn request_info<T>(req: &Request<T>, alert_id: String) -> (Option<ConnInfo>, String, String) {
    let conn = req.extensions().get::<ConnInfo>().cloned();
    let officer =
        req.metadata().get(OFFICER_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("").chars().take(128).collect();
    (conn, officer, alert_id)
}

fn short(id: &str) -> String {
    id.chars().take(64).collect()
}

#[tonic::async_trait]
impl Exchange for ExchangeService {
    async fn publish(&self, req: Request<PublishRequest>) -> Result<Response<PublishResponse>, Status> {
        let alert_id = req.get_ref().alert.as_ref().map(|a| a.alert_id.chars().take(64).collect()).unwrap_or_default();
        let info = request_info(&req, alert_id);
        let node = info.0.as_ref().map(|c| c.identity.node.to_string()).unwrap_or_default();
        let span = info_span!("publish", node = %node, officer = %info.1, alert_id = %info.2);
        async move {
            match self.publish(req).await {
                Ok(resp) => Ok(Response::new(resp)),
                Err(e) => self.refuse(info, e).await,
            }
        }
        .instrument(span)
        .await
    }

    type SubscribeStream = SubscribeStream;

    async fn subscribe(&self, req: Request<SubscribeRequest>) -> Result<Response<Self::SubscribeStream>, Status> {
        let st = &self.state;
        let info = request_info(&req, String::new());
        let (slot, conn) = match st.caller(&req, Role::Subscribe) {
            Ok(c) => c,
            Err(e) => return self.refuse(info, e).await,
        };
        let officer = match officer(&req) {
            Ok(o) => o,
            Err(e) => return self.refuse(info, e).await,
        };
        let limit = st.limits.max_streams_per_node;
        if slot.streams.fetch_add(1, Ordering::AcqRel) >= limit {
            slot.streams.fetch_sub(1, Ordering::AcqRel);
            let e = RequestError::TooManyStreams { node: slot.info.id.to_string(), limit };
            return self.refuse(info, e).await;
        }
        let guard = StreamGuard { state: st.clone(), node: slot.info.id.clone() };
        let node = slot.info.id.clone();
        let cursor = req.get_ref().after_cursor;
        let span = info_span!("subscribe", node = %node, officer = %officer);
        let backlog = slot.queued.load(Ordering::Acquire);
        span.in_scope(|| info!(after_cursor = cursor, backlog, "subscribed"));
        let (tx, rx) = mpsc::channel(16);
        let who = Subscriber { node, conn, officer };
        st.tracker.spawn(
            async move {
                pump(guard.state.clone(), who, cursor, tx).await;
                drop(guard);
            }
            .instrument(span),
        );
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn ack(&self, req: Request<AckRequest>) -> Result<Response<AckResponse>, Status> {
        let info = request_info(&req, String::new());
        let span = info_span!("ack", node = %info.0.as_ref().map(|c| c.identity.node.to_string()).unwrap_or_default());
        async move {
            match self.ack(req).await {
                Ok(resp) => Ok(Response::new(resp)),
                Err(e) => self.refuse(info, e).await,
            }
        }
        .instrument(span)
        .await
    }

    async fn lookup(&self, req: Request<LookupRequest>) -> Result<Response<LookupResponse>, Status> {
        self.access_rpc("lookup", req, String::new(), |r| crate::access::lookup(&self.state, r)).await
    }

    async fn request_access(
        &self,
        req: Request<RequestAccessRequest>,
    ) -> Result<Response<RequestAccessResponse>, Status> {
        let hit = short(&req.get_ref().hit_id);
        self.access_rpc("request_access", req, hit, |r| crate::access::request_access(&self.state, r)).await
    }

    async fn decide_access(&self, req: Request<DecideAccessRequest>) -> Result<Response<DecideAccessResponse>, Status> {
        let id = short(&req.get_ref().request_id);
        self.access_rpc("decide_access", req, id, |r| crate::access::decide_access(&self.state, r)).await
    }

    async fn decline_follow_up(
        &self,
        req: Request<DeclineFollowUpRequest>,
    ) -> Result<Response<DeclineFollowUpResponse>, Status> {
        let hit = short(&req.get_ref().hit_id);
        self.access_rpc("decline_follow_up", req, hit, |r| crate::access::decline_follow_up(&self.state, r)).await
    }

    async fn list_access_requests(
        &self,
        req: Request<ListAccessRequestsRequest>,
    ) -> Result<Response<ListAccessRequestsResponse>, Status> {
        self.access_rpc("list_access_requests", req, String::new(), |r| {
            crate::access::list_access_requests(&self.state, r)
        })
        .await
    }
}
