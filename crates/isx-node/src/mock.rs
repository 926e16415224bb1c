//! The mock agency node: subscribe, store, acknowledge, reconnect.
//!
//! Deliveries and the origins' changes (`AlertChange`) are written to the
//! [`Inbox`] as they arrive and made durable together: once the stream
//! would block (or a batch is full) the node flushes, then acknowledges the
//! batch's last cursor with a confirmation for each change, naming the
//! version and the state its copy reached. A node that dies between the
//! flush and the ack gets the batch again and applies it again, which
//! changes nothing ([`crate::inbox::apply_change`]) and is confirmed again.

use std::time::Duration;

use isx_core::wire::subscribe_response::Event;
use isx_core::wire::{AlertChange, ChangeConfirmation, ChangeKind, CopyState};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::client::{Client, ClientOptions};
use crate::config::{AccessRule, RuleDecision, first_match};
use crate::inbox::{ChangeEffect, Inbox, InboxError, Received};

/// What the node reports as it runs.
#[derive(Debug, Clone)]
pub enum NodeEvent {
    /// Subscribed to the gateway.
    Connected,
    /// An alert arrived. `new` is false for a duplicate that was dropped.
    Delivered {
        /// The stored record.
        record: Box<Received>,
        /// False if the alert had already been received.
        new: bool,
    },
    /// An access request or outcome arrived (and, for a request, any standing
    /// rule answered it).
    Access {
        /// The request as the node now knows it.
        request: Box<isx_core::wire::AccessRequest>,
    },
    /// A change to an alert was applied to the node's copy, flushed and
    /// confirmed to the gateway.
    Changed {
        /// The alert.
        alert_id: String,
        /// What the origin did.
        kind: ChangeKind,
        /// The version the copy now holds (or held, once deleted).
        version: u32,
        /// The state confirmed.
        state: CopyState,
        /// Whether the change did anything (false: repeated or stale).
        effect: ChangeEffect,
    },
    /// A change could not be applied (no known kind, or an update without
    /// the new view): it was acknowledged without a confirmation, so the
    /// gateway shows the copy unconfirmed.
    ChangeRefused {
        /// The alert.
        alert_id: String,
        /// Why.
        reason: String,
    },
    /// The connection or stream ended; the node will retry.
    Disconnected {
        /// Why.
        reason: String,
    },
}

/// A mock agency node.
#[derive(Debug)]
pub struct MockNode {
    options: ClientOptions,
    inbox: Inbox,
    events: Option<mpsc::UnboundedSender<NodeEvent>>,
    rules: Vec<AccessRule>,
    /// Where to serve the inspect service while running.
    inspect: Option<std::path::PathBuf>,
    /// The witness to serve while running, and its listening socket.
    witness: Option<(crate::witness::AgencyWitness, std::net::TcpListener)>,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

impl MockNode {
    /// Serves `witness` on `listener` while running (the agency witnesses
    /// the gateway it uses; see [`crate::witness`]).
    pub fn with_witness(mut self, witness: crate::witness::AgencyWitness, listener: std::net::TcpListener) -> Self {
        self.witness = Some((witness, listener));
        self
    }

    /// The agency's witness, if it is one (its refusals are counted there).
    pub fn witness(&self) -> Option<&crate::witness::AgencyWitness> {
        self.witness.as_ref().map(|(w, _)| w)
    }

    /// Opens the node's store under `data_dir`, sealed under
    /// `<pki_dir>/<node>.store.key` (created with a new store if missing).
    pub fn open(options: ClientOptions, data_dir: &std::path::Path) -> Result<Self, InboxError> {
        // Private to the agency's user: it holds the store and the inspect socket.
        isx_store::private_dir(data_dir)?;
        let key = isx_store::key_path(&options.pki_dir, options.node.as_str());
        Ok(Self {
            inbox: Inbox::open(data_dir, &key)?,
            options,
            events: None,
            rules: vec![],
            inspect: None,
            witness: None,
        })
    }

    /// Answers access requests for this node's alerts by `rules` (first match
    /// decides; none or `manual` leaves the request for a person).
    pub fn with_rules(mut self, rules: Vec<AccessRule>) -> Self {
        self.rules = rules;
        self
    }

    /// Serves the read-only inspect service ([`crate::inspect`]) on a Unix
    /// socket at `path` while [`MockNode::run`] runs, e.g.
    /// [`crate::inspect::socket_path`] of the data directory. A socket that
    /// cannot be bound is logged and the agency runs without it.
    pub fn with_inspect(mut self, path: std::path::PathBuf) -> Self {
        self.inspect = Some(path);
        self
    }

    /// Sends every [`NodeEvent`] to `tx`.
    pub fn with_events(mut self, tx: mpsc::UnboundedSender<NodeEvent>) -> Self {
        self.events = Some(tx);
        self
    }

    /// The node's store, to inspect or wait on while it runs.
    pub fn inbox(&self) -> Inbox {
        self.inbox.clone()
    }

    fn emit(&self, event: NodeEvent) {
        if let Some(tx) = &self.events {
            let _ = tx.send(event);
        }
    }

    /// Runs until `shutdown`: subscribes, stores each delivery, acks it, and
    /// reconnects with exponential back-off (100 ms up to 5 s) when the stream ends.
    pub async fn run(self, shutdown: CancellationToken) {
        // The witness first: a gateway's start-up check may be waiting for it.
        let witness = self.witness.as_ref().and_then(|(w, socket)| {
            let listener = socket
                .try_clone()
                .and_then(|s| {
                    s.set_nonblocking(true)?;
                    tokio::net::TcpListener::from_std(s)
                })
                .map_err(|e| warn!(node = %self.options.node, error = %e, "no witness service"))
                .ok()?;
            info!(
                node = %self.options.node,
                addr = ?socket.local_addr().ok(),
                key = %w.witness.verifier_key(),
                "witnessing the gateway's audit log (C2SP tlog-witness)"
            );
            Some(tokio::spawn(isx_witness::server::serve(w.witness.clone(), w.tls.clone(), listener, shutdown.clone())))
        });
        let inspect = self.inspect.clone().and_then(|path| match crate::inspect::bind(&path) {
            Ok(listener) => {
                info!(node = %self.options.node, socket = %path.display(), "inspect service listening");
                let service = crate::inspect::InspectService::new(self.options.node.clone(), self.inbox.clone());
                Some(tokio::spawn(crate::inspect::serve(listener, path, service, shutdown.clone())))
            }
            Err(e) => {
                warn!(node = %self.options.node, error = %e, "no inspect service");
                None
            }
        });
        self.subscribe_loop(&shutdown).await;
        if let Some(task) = witness
            && let Ok(Err(e)) = task.await
        {
            warn!(node = %self.options.node, error = %e, "witness service failed");
        }
        if let Some(task) = inspect
            && let Ok(Err(e)) = task.await
        {
            warn!(node = %self.options.node, error = %e, "inspect service failed");
        }
    }

    async fn subscribe_loop(&self, shutdown: &CancellationToken) {
        let mut backoff = Duration::from_millis(100);
        while !shutdown.is_cancelled() {
            let reason = tokio::select! {
                _ = shutdown.cancelled() => break,
                r = self.session(&mut backoff) => r,
            };
            debug!(node = %self.options.node, %reason, "disconnected");
            self.emit(NodeEvent::Disconnected { reason });
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }

    /// One connection: returns why it ended.
    async fn session(&self, backoff: &mut Duration) -> String {
        let client = match Client::connect(&self.options).await {
            Ok(c) => c,
            Err(e) => return e.to_string(),
        };
        let mut stream = match client.subscribe(0).await {
            Ok(s) => s,
            Err(e) => return format!("subscribe refused: {} ({})", e.message(), crate::code_name(e.code())),
        };
        *backoff = Duration::from_millis(100);
        debug!(node = %self.options.node, "subscribed");
        self.emit(NodeEvent::Connected);
        // Deliveries and changes written but not yet flushed and acknowledged.
        let mut unacked: Vec<Pending> = Vec::new();
        loop {
            // Group commit on the node's side: while more messages are already
            // waiting, keep writing; flush and acknowledge once the stream
            // would block (or the batch is full). An ack is cumulative, so
            // everything up to its cursor is durable first.
            let next = if unacked.is_empty() {
                stream.message().await
            } else if unacked.len() < MAX_UNACKED
                && let Ok(next) = tokio::time::timeout(Duration::ZERO, stream.message()).await
            {
                next
            } else {
                if let Err(reason) = self.commit(&client, &mut unacked).await {
                    return reason;
                }
                continue;
            };
            let msg = match next {
                Ok(Some(m)) => m,
                Ok(None) => return "stream closed by the gateway".into(),
                Err(e) => return format!("stream error: {} ({})", e.message(), crate::code_name(e.code())),
            };
            if !matches!(msg.event, Some(Event::Delivery(_)) | Some(Event::Change(_)))
                && let Err(reason) = self.commit(&client, &mut unacked).await
            {
                return reason;
            }
            let delivery = match msg.event {
                Some(Event::Delivery(d)) => d,
                Some(Event::AccessRequest(r)) => {
                    if let Err(reason) = self.answer(&client, r).await {
                        return reason;
                    }
                    if let Err(e) = client.ack(msg.cursor).await {
                        return format!("ack refused: {} ({})", e.message(), crate::code_name(e.code()));
                    }
                    continue;
                }
                Some(Event::AccessOutcome(r)) => {
                    if let Err(e) = self.inbox.store_access(&r).await {
                        return e.to_string();
                    }
                    self.emit(NodeEvent::Access { request: Box::new(r) });
                    if let Err(e) = client.ack(msg.cursor).await {
                        return format!("ack refused: {} ({})", e.message(), crate::code_name(e.code()));
                    }
                    continue;
                }
                Some(Event::Change(change)) => {
                    match self.apply(msg.cursor, change) {
                        Ok(pending) => unacked.push(pending),
                        Err(reason) => return reason,
                    }
                    continue;
                }
                None => continue,
            };
            let alert_id = delivery.alert.as_ref().map(|a| a.alert_id.clone()).unwrap_or_default();
            match self.inbox.put(msg.cursor, delivery, now_ms()) {
                Ok(new) => unacked.push(Pending::Delivered { cursor: msg.cursor, alert_id, new }),
                Err(e) => {
                    warn!(node = %self.options.node, error = %e, "cannot store a delivery; not acknowledging it");
                    return e.to_string();
                }
            }
        }
    }

    /// Writes one change to the inbox (not flushed yet). `Err` ends the
    /// session: the change is not acknowledged and comes again.
    fn apply(&self, cursor: u64, change: AlertChange) -> Result<Pending, String> {
        let kind = change.kind();
        match self.inbox.apply(cursor, &change, now_ms()) {
            Ok(Ok(applied)) => {
                Ok(Pending::Changed { cursor, kind, effect: applied.effect, confirmation: applied.confirmation() })
            }
            Ok(Err(refused)) => {
                warn!(
                    node = %self.options.node,
                    alert_id = %change.alert_id,
                    error = %refused,
                    "cannot apply a change; acknowledging it unconfirmed"
                );
                Ok(Pending::Refused { cursor, alert_id: change.alert_id, reason: refused.to_string() })
            }
            Err(e) => {
                warn!(
                    node = %self.options.node,
                    alert_id = %change.alert_id,
                    error = %e,
                    "cannot store a change; not acknowledging it"
                );
                Err(e.to_string())
            }
        }
    }

    /// Flushes what was written since the last commit, acknowledges the
    /// highest cursor with a confirmation for every change, and reports
    /// each one. `Err` ends the session.
    async fn commit(&self, client: &Client, unacked: &mut Vec<Pending>) -> Result<(), String> {
        let Some(cursor) = unacked.last().map(Pending::cursor) else { return Ok(()) };
        if let Err(e) = self.inbox.flush_stored(unacked.len() as u64).await {
            warn!(node = %self.options.node, error = %e, "cannot flush deliveries; not acknowledging them");
            return Err(e.to_string());
        }
        let confirmations: Vec<ChangeConfirmation> = unacked
            .iter()
            .filter_map(|p| match p {
                Pending::Changed { confirmation, .. } => Some(confirmation.clone()),
                _ => None,
            })
            .collect();
        let confirming = confirmations.len();
        match client.ack_with(cursor, confirmations).await {
            Ok(resp) if confirming > 0 => debug!(
                node = %self.options.node,
                cursor,
                confirmations = confirming,
                confirmed = resp.confirmed,
                superseded = resp.superseded,
                "changes confirmed"
            ),
            Ok(_) => {}
            Err(e) => return Err(format!("ack refused: {} ({})", e.message(), crate::code_name(e.code()))),
        }
        for pending in unacked.drain(..) {
            match pending {
                Pending::Delivered { alert_id, new, .. } => {
                    if let Ok(Some(record)) = self.inbox.get(&alert_id) {
                        self.emit(NodeEvent::Delivered { record: Box::new(record), new });
                    }
                }
                Pending::Changed { kind, effect, confirmation, .. } => {
                    let state = confirmation.state();
                    info!(
                        node = %self.options.node,
                        alert_id = %confirmation.alert_id,
                        kind = kind.as_str_name(),
                        version = confirmation.version,
                        state = state.as_str_name(),
                        ?effect,
                        "change applied and confirmed"
                    );
                    self.emit(NodeEvent::Changed {
                        alert_id: confirmation.alert_id,
                        kind,
                        version: confirmation.version,
                        state,
                        effect,
                    });
                }
                Pending::Refused { alert_id, reason, .. } => self.emit(NodeEvent::ChangeRefused { alert_id, reason }),
            }
        }
        Ok(())
    }
}

/// An event written to the inbox, waiting for the flush and the ack.
#[derive(Debug)]
enum Pending {
    /// A delivery.
    Delivered {
        /// Its cursor.
        cursor: u64,
        /// The alert.
        alert_id: String,
        /// False for a duplicate.
        new: bool,
    },
    /// A change applied (or found applied already), to confirm.
    Changed {
        /// Its cursor.
        cursor: u64,
        /// What the origin did.
        kind: ChangeKind,
        /// What applying it did.
        effect: ChangeEffect,
        /// The copy's version and state, to confirm.
        confirmation: ChangeConfirmation,
    },
    /// A change that cannot be applied: acknowledged, not confirmed.
    Refused {
        /// Its cursor.
        cursor: u64,
        /// The alert.
        alert_id: String,
        /// Why.
        reason: String,
    },
}

impl Pending {
    fn cursor(&self) -> u64 {
        match self {
            Self::Delivered { cursor, .. } | Self::Changed { cursor, .. } | Self::Refused { cursor, .. } => *cursor,
        }
    }
}

/// The most deliveries and changes a node writes before it flushes and acknowledges.
const MAX_UNACKED: usize = 256;

impl MockNode {
    /// Applies the standing rules to an access request for one of this
    /// node's alerts, and keeps the result. `Err` ends the session (the
    /// request is not acked and comes again).
    async fn answer(&self, client: &Client, request: isx_core::wire::AccessRequest) -> Result<(), String> {
        let category = isx_core::display::category(request.category());
        let rule = first_match(&self.rules, &category, &request.requester);
        let mut known = request.clone();
        if let Some((index, rule)) = rule.filter(|(_, r)| r.decision != RuleDecision::Manual) {
            let grant = rule.decision == RuleDecision::Grant;
            // Decided by the rule, not by the agency's officer: the log says so.
            match client.decide_access_as(&request.request_id, grant, &rule.reason(), &rule.actor(index)).await {
                Ok(decided) => known = decided,
                Err(e) if e.code() == tonic::Code::Unavailable => {
                    return Err(format!("decision not recorded: {}", e.message()));
                }
                // Already decided or expired: keep what we know, do not retry.
                Err(e) => {
                    warn!(node = %self.options.node, request_id = %request.request_id, error = %e.message(), "standing rule could not decide")
                }
            }
        }
        self.inbox.store_access(&known).await.map_err(|e| e.to_string())?;
        self.emit(NodeEvent::Access { request: Box::new(known) });
        Ok(())
    }

    /// A node over an inbox that is already open (to restart a node in the same process).
    pub fn with_inbox(options: ClientOptions, inbox: Inbox) -> Self {
        Self { options, inbox, events: None, rules: vec![], inspect: None, witness: None }
    }
}
