//! The expiry sweep: drops expired alerts with their undelivered copies and
//! lookup rows, and expires access requests past their deadline.

use std::sync::Arc;
use std::time::Duration;

use tracing::{info, warn};

use crate::records;
use crate::state::State;

/// Sweeps every `every` until shutdown. Each expired alert is an ERASURE record.
pub(crate) async fn sweep_expired(state: Arc<State>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = state.shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        match state.store.expire(state.now_ms()) {
            Ok(expired) if !expired.is_empty() => {
                for e in &expired {
                    info!(alert_id = %e.alert_id, undelivered = e.undelivered, "alert expired");
                    if let Err(err) = crate::open_hits::close_for_alert(&state, &e.alert_id, state.now_ms()).await {
                        warn!(alert_id = %e.alert_id, error = %err, "open hits not closed");
                    }
                }
                if let Err(e) = state.recorder.durable(expired.iter().map(records::expired).collect()).await {
                    warn!(error = %e, "expiry not recorded");
                }
            }
            Ok(_) => {}
            Err(e) => warn!(error = %e, "expiry sweep failed"),
        }
        if let Err(e) = crate::open_hits::sweep(&state, state.now_ms()).await {
            warn!(error = %e, "open hits past their deadline not closed");
        }
        if let Err(e) = crate::access::expire_due(&state).await {
            warn!(error = %e, "access request expiry failed");
        }
    }
}
