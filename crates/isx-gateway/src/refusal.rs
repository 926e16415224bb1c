//! Refused requests: every refusal is a DENIAL record (aggregated per
//! source and kind, see `refusals`), then a gRPC status.

use std::time::Instant;

use isx_core::wire::AuditRecord;
use tonic::Status;
use tracing::{debug, warn};

use crate::conn::RequestInfo;
use crate::error::RequestError;
use crate::records;
use crate::state::State;

/// Where a refusal comes from, for aggregation: the caller's node, or the
/// address of a connection without one.
fn source(info: &RequestInfo) -> String {
    match &info.conn {
        Some(conn) => conn.identity.node.to_string(),
        None => "(no connection)".to_owned(),
    }
}

/// Records `record` for a refusal of `source` and `kind` if it is the first
/// of its burst (durably), or counts it. If even that cannot be written, the
/// error says so.
pub(crate) async fn record(
    st: &State,
    source: String,
    kind: &'static str,
    record: AuditRecord,
) -> Result<(), RequestError> {
    match st.refusals.note(source, kind, record, Instant::now()) {
        Some(record) => st.recorder.durable(vec![record]).await.map(|_| ()),
        None => Ok(()),
    }
}

/// Records a refused request (see the module docs) and turns the error into
/// a status. If the refusal cannot be recorded, the answer is `UNAVAILABLE`.
pub(crate) async fn refusal_status(st: &State, info: &RequestInfo, e: RequestError) -> Status {
    let remote = info.conn.as_ref().map(|c| c.remote.to_string()).unwrap_or_default();
    // The process log is throttled like the audit log's refusal records: one
    // warning a second, with the count of the others (each one is at debug).
    debug!(%remote, error = %e, "request refused");
    st.refusal_warnings.log(|skipped| warn!(%remote, error = %e, skipped, "request refused"));
    match record(st, source(info), e.rule(), records::refusal(info, &e)).await {
        Ok(()) => Status::from(e),
        Err(audit) => Status::from(audit),
    }
}

/// [`refusal_status`] as the `Err` of a handler's result.
pub(crate) async fn refuse<T>(st: &State, info: &RequestInfo, e: RequestError) -> Result<T, Status> {
    Err(refusal_status(st, info, e).await)
}

/// Writes the aggregate record of every refusal burst once its second has
/// passed, every second until shutdown (and once more then).
pub(crate) async fn record_refusal_bursts(st: std::sync::Arc<State>) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let stop = tokio::select! {
            _ = st.shutdown.cancelled() => true,
            _ = tick.tick() => false,
        };
        // At shutdown every burst is over: its aggregate is written now.
        let now = if stop { Instant::now() + std::time::Duration::from_secs(1) } else { Instant::now() };
        let due: Vec<AuditRecord> = st.refusals.due(now);
        if !due.is_empty()
            && let Err(e) = st.recorder.durable(due).await
        {
            warn!(error = %e, "aggregated refusals not recorded");
        }
        if stop {
            return;
        }
    }
}
