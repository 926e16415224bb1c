//! What every handler shares: the registered nodes with their admission
//! state (request rate, stream permits, refusal throttle), the store, the
//! group commit, the disclosure seam and the audit recorder.

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use governor::clock::DefaultClock;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use isx_core::identifiers::PseudonymKey;
use isx_core::{NodeId, NodeInfo, Role};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::Request;

use crate::clock::Clock;
use crate::commit::Committer;
use crate::config::{AccessConfig, AuditScope, GatewayConfig, Limits};
use crate::conn::{ConnInfo, officer};
use crate::disclosure::Disclose;
use crate::error::RequestError;
use crate::faults::Faults;
use crate::quota::Quotas;
use crate::recorder::Recorder;
use crate::records::Actor;
use crate::refusals::Refusals;
use crate::store::Store;
use crate::throttle::Throttled;

/// A registered node and its live admission state.
#[derive(Debug)]
pub(crate) struct NodeSlot {
    /// The node as configured.
    pub info: NodeInfo,
    /// The highest cursor streamed to this node since start.
    pub delivered: AtomicU64,
    /// One permit per subscription stream it may hold open.
    pub streams: Arc<Semaphore>,
    /// Its request rate (`limits.rate_per_node`, `burst_per_node`).
    limiter: DefaultDirectRateLimiter,
    /// Whose audit records it reads, if it holds the audit role.
    pub audit_scope: Option<AuditScope>,
}

/// The request rate of `limits` as a quota: a burst, refilled one request
/// every `1 / rate_per_node` seconds.
pub(crate) fn quota(limits: &Limits) -> Quota {
    let period = Duration::from_secs_f64(1.0 / limits.rate_per_node).max(Duration::from_nanos(1));
    let burst = NonZeroU32::new(limits.burst_per_node).unwrap_or(NonZeroU32::MIN);
    Quota::with_period(period).expect("a positive period").allow_burst(burst)
}

/// An admitted caller: its node, connection and officer.
#[derive(Debug)]
pub(crate) struct Caller<'a> {
    /// The registered node.
    pub slot: &'a NodeSlot,
    /// Its connection.
    pub conn: ConnInfo,
    /// The officer acting.
    pub officer: String,
}

impl Caller<'_> {
    /// The caller as the actor of its records.
    pub fn actor(&self) -> Actor<'_> {
        Actor::new(&self.conn, &self.officer)
    }

    /// The caller's node id.
    pub fn node(&self) -> &NodeId {
        &self.slot.info.id
    }
}

/// Everything the request handlers share.
pub(crate) struct State {
    /// Limits from config.
    pub limits: Limits,
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
    pub access: AccessConfig,
    /// The alert lifecycle (confirmation grace, status retention).
    pub lifecycle: crate::config::LifecycleConfig,
    /// Storage limits per crime area.
    pub storage: crate::config::StorageConfig,
    /// The follow-up deadline of an open hit (`lookup.follow_up_deadline`).
    pub lookup: crate::config::LookupConfig,
    /// Serialises lifecycle changes (amend, withdraw, restrict, lift,
    /// expiry fan-out), so that two changes of one alert never interleave.
    pub lifecycle_lock: tokio::sync::Mutex<()>,
    /// Serialises state changes of access requests.
    pub access_lock: tokio::sync::Mutex<()>,
    /// Held while a legal hold is placed or lifted and while a prune plans
    /// and applies (`holds`), so that a prune never runs on holds that change.
    pub retention: tokio::sync::Mutex<()>,
    /// Fault switches (inert without the `faults` feature).
    pub faults: Arc<Faults>,
    /// Refusal bursts, per source and kind.
    pub refusals: Refusals,
    /// Lookup quotas.
    pub quotas: Quotas,
    /// The process log's refusal warnings, at most one a second.
    pub refusal_warnings: Throttled,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("nodes", &self.nodes.keys().collect::<Vec<_>>())
            .field("lifecycle", &self.lifecycle)
            .field("storage", &self.storage)
            .field("lookup", &self.lookup)
            .field("lifecycle_lock", &self.lifecycle_lock)
            .finish_non_exhaustive()
    }
}

/// What [`State::new`] is built from, besides the config.
pub(crate) struct Parts {
    /// Durable state.
    pub store: Store,
    /// Group commit.
    pub committer: Committer,
    /// The disclosure decision.
    pub disclose: Arc<dyn Disclose>,
    /// Shutdown.
    pub shutdown: CancellationToken,
    /// The clock.
    pub clock: Clock,
    /// The audit recorder.
    pub recorder: Arc<Recorder>,
    /// Fault switches.
    pub faults: Arc<Faults>,
}

impl State {
    /// Builds the shared state from a validated config.
    pub fn new(config: &GatewayConfig, parts: Parts) -> Self {
        let infos = config.node_infos();
        let nodes = infos
            .iter()
            .cloned()
            .map(|info| {
                let slot = NodeSlot {
                    audit_scope: config.audit_scope(info.id.as_str()),
                    info,
                    delivered: AtomicU64::new(0),
                    streams: Arc::new(Semaphore::new(config.limits.max_streams_per_node)),
                    limiter: RateLimiter::direct(quota(&config.limits)),
                };
                (slot.info.id.clone(), slot)
            })
            .collect();
        Self {
            limits: config.limits.clone(),
            batch: config.delivery.batch,
            nodes,
            infos,
            store: parts.store,
            committer: parts.committer,
            disclose: parts.disclose,
            shutdown: parts.shutdown,
            tracker: TaskTracker::new(),
            clock: parts.clock,
            recorder: parts.recorder,
            access: config.access.clone(),
            lifecycle: config.lifecycle.clone(),
            storage: config.storage.clone(),
            lookup: config.lookup.clone(),
            lifecycle_lock: tokio::sync::Mutex::new(()),
            access_lock: tokio::sync::Mutex::new(()),
            retention: tokio::sync::Mutex::new(()),
            faults: parts.faults,
            refusals: Refusals::new(config.limits.refusal_records_per_second),
            quotas: Quotas::new(&config.lookup, config.node_infos().into_iter().map(|n| n.id)),
            refusal_warnings: Throttled::default(),
        }
    }

    /// Now, Unix milliseconds.
    pub fn now_ms(&self) -> u64 {
        (self.clock)()
    }

    /// Takes one token from `node`'s rate limiter (`limits.rate_per_node`,
    /// `burst_per_node`). Every request does, in `admission`, before its
    /// body is read.
    pub fn admit(&self, node: &NodeId) -> Result<(), RequestError> {
        let Some(slot) = self.nodes.get(node) else { return Err(RequestError::Unauthenticated) };
        slot.limiter.check().map_err(|not_until| {
            let retry_after = not_until.wait_time_from(governor::clock::Clock::now(&DefaultClock::default()));
            let (rate, burst) = (self.limits.rate_per_node, self.limits.burst_per_node);
            RequestError::RateLimited { node: node.to_string(), rate, burst, retry_after }
        })
    }

    /// The registered node behind this request's certificate, holding one
    /// of `roles`, with the officer it names. (Its rate was checked at
    /// admission.)
    pub fn caller<T>(&self, req: &Request<T>, roles: &[Role]) -> Result<Caller<'_>, RequestError> {
        let conn = req.extensions().get::<ConnInfo>().cloned().ok_or(RequestError::Unauthenticated)?;
        let slot = self.nodes.get(&conn.identity.node).ok_or(RequestError::Unauthenticated)?;
        if !roles.iter().any(|r| slot.info.has(*r)) {
            let role = roles.first().copied().unwrap_or(Role::Audit);
            return Err(RequestError::MissingRole { node: slot.info.id.to_string(), role });
        }
        let officer = officer(req)?;
        Ok(Caller { slot, conn, officer })
    }

    /// A registered node by id.
    pub fn node_info(&self, id: &str) -> Option<&NodeInfo> {
        self.nodes.get(id).map(|s| &s.info)
    }

    /// The key of subject pseudonyms.
    pub fn pseudonyms(&self) -> &PseudonymKey {
        &self.recorder.log().keys().pseudonyms
    }

    /// Refuses if queueing one more event for `node` would pass
    /// `limits.max_queue_per_node`.
    pub fn check_queue(&self, node: &NodeId) -> Result<(), RequestError> {
        let queues = self.store.queues();
        match queues.full(std::iter::once(node)) {
            Some((node, queued)) => {
                Err(RequestError::QueueFull { node: node.to_string(), queued, limit: queues.limit() })
            }
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_quota_is_the_configured_burst_and_rate() {
        let limits = Limits { rate_per_node: 0.001, burst_per_node: 3, ..Limits::default() };
        let limiter = RateLimiter::direct(quota(&limits));
        let served = (0..10).filter(|_| limiter.check().is_ok()).count();
        assert_eq!(served, 3, "the burst, and no refill within the test at 0.001/s");
        let q = quota(&Limits { rate_per_node: 500.0, burst_per_node: 1000, ..Limits::default() });
        assert_eq!(q.burst_size().get(), 1000);
        assert_eq!(q.replenish_interval(), Duration::from_millis(2));
    }
}
