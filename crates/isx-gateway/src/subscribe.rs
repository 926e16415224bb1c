//! `Exchange.Subscribe`: a node's outbox, streamed in order.
//!
//! A subscription reads its node's outbox up to the visibility watermark (so
//! never a row whose writer has not committed), writes the disclosure record
//! of every delivery in a batch and waits until they are durable, and only
//! then sends the batch. It holds one of its node's stream permits while it
//! runs.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use isx_core::NodeId;
use isx_core::wire::{AuditRecord, SubscribeRequest, SubscribeResponse};
use tokio::sync::{OwnedSemaphorePermit, mpsc};
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Status};
use tracing::{Instrument, debug, info, info_span, warn};

use crate::conn::ConnInfo;
use crate::error::RequestError;
use crate::records::{self, Actor};
use crate::state::State;
use crate::store::Event;

/// The stream a subscription answers with.
pub(crate) type SubscribeStream = Pin<Box<dyn Stream<Item = Result<SubscribeResponse, Status>> + Send>>;

/// Who is subscribed on a stream, for its disclosure records.
#[derive(Debug, Clone)]
struct Subscriber {
    /// The node.
    node: NodeId,
    /// Its connection.
    conn: ConnInfo,
    /// The officer who opened the stream.
    officer: String,
}

/// Opens a subscription for the caller after `after_cursor`.
pub(crate) fn subscribe(st: &Arc<State>, req: Request<SubscribeRequest>) -> Result<SubscribeStream, RequestError> {
    let caller = st.caller(&req, &[isx_core::Role::Subscribe])?;
    let limit = st.limits.max_streams_per_node;
    let permit = caller
        .slot
        .streams
        .clone()
        .try_acquire_owned()
        .map_err(|_| RequestError::TooManyStreams { node: caller.node().to_string(), limit })?;
    let cursor = req.get_ref().after_cursor;
    let node = caller.node().clone();
    let span = info_span!("subscribe", node = %node, officer = %caller.officer);
    let backlog = st.store.queues().queued(node.as_str());
    span.in_scope(|| info!(after_cursor = cursor, backlog, "subscribed"));
    let (tx, rx) = mpsc::channel(16);
    let who = Subscriber { node, conn: caller.conn, officer: caller.officer };
    st.tracker.spawn(pump(st.clone(), who, cursor, tx, permit).instrument(span));
    Ok(Box::pin(ReceiverStream::new(rx)))
}

/// Streams `who.node`'s outbox after `cursor` into `tx` until shutdown or
/// disconnect. Each batch's disclosure records are made durable before any of
/// the batch leaves the gateway.
async fn pump(
    state: Arc<State>,
    who: Subscriber,
    mut cursor: u64,
    tx: mpsc::Sender<Result<SubscribeResponse, Status>>,
    _permit: OwnedSemaphorePermit,
) {
    let Some(slot) = state.nodes.get(&who.node) else { return };
    let mut visible = state.store.visibility().subscribe();
    loop {
        visible.borrow_and_update();
        let batch = match state.store.pending(&who.node, cursor, state.batch, state.now_ms()) {
            Ok(batch) => batch,
            Err(e) => {
                warn!(error = %e, "subscription ended by a storage error");
                let _ = tx.send(Err(Status::from(RequestError::from(e)))).await;
                return;
            }
        };
        if batch.is_empty() {
            tokio::select! {
                _ = state.shutdown.cancelled() => return,
                _ = tx.closed() => return,
                changed = visible.changed() => if changed.is_err() { return },
            }
            continue;
        }
        // No log, no share: the disclosure records are durable before the batch is sent.
        let by = Actor::new(&who.conn, &who.officer);
        let records: Vec<AuditRecord> = batch
            .iter()
            .filter_map(|(_, entry)| match &entry.event {
                Some(Event::Delivery(d)) => {
                    Some(records::disclosure(by, &who.node, d, &entry.audit.clone().unwrap_or_default()))
                }
                // An UPDATE carries the holder's view of a new version: a disclosure too.
                Some(Event::Change(c)) => c
                    .delivery
                    .as_ref()
                    .map(|d| records::disclosure(by, &who.node, d, &entry.audit.clone().unwrap_or_default())),
                _ => None,
            })
            .collect();
        if !records.is_empty()
            && let Err(e) = state.recorder.durable(records).await
        {
            warn!(error = %e, "audit log unavailable: nothing streamed");
            let _ = tx.send(Err(Status::from(e))).await;
            return;
        }
        for (seq, entry) in batch {
            let Some(event) = entry.event else { continue };
            let alert_id = event.alert_id().to_owned();
            let msg = SubscribeResponse { cursor: seq, event: Some(event.into()) };
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
