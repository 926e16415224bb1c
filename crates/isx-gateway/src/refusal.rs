//! Refused requests: every refusal becomes a DENIAL record (durable before
//! the answer), then a gRPC status.

use tonic::Status;
use tracing::{debug, warn};

use crate::conn::RequestInfo;
use crate::error::RequestError;
use crate::records;
use crate::state::State;

/// Records a refused request and turns the error into a status. If even the
/// refusal cannot be recorded, the answer is `UNAVAILABLE`.
pub(crate) async fn refuse<T>(st: &State, info: &RequestInfo, e: RequestError) -> Result<T, Status> {
    if matches!(e, RequestError::RateLimited { .. }) {
        // A flood must not become a flood of records: at most one a second
        // per node, counting the ones in between, and no wait for a flush
        // (a refusal discloses nothing).
        let slot = info.conn.as_ref().and_then(|c| st.nodes.get(&c.identity.node));
        let Some(skipped) = slot.and_then(|s| s.refusals.record_now()) else {
            debug!(error = %e, "request refused (rate limit; counted in the next record)");
            return Err(Status::from(e));
        };
        warn!(error = %e, "request refused");
        return match st.recorder.append(vec![records::refusal(info, &e, skipped)]) {
            Ok(_) => Err(Status::from(e)),
            Err(audit) => Err(Status::from(audit)),
        };
    }
    let remote = info.conn.as_ref().map(|c| c.remote.to_string()).unwrap_or_default();
    warn!(%remote, error = %e, "request refused");
    match st.recorder.durable(vec![records::refusal(info, &e, 0)]).await {
        Ok(_) => Err(Status::from(e)),
        Err(audit) => Err(Status::from(audit)),
    }
}
