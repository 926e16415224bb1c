//! The expiry sweep: expires alerts through the lifecycle (an EXPIRY change
//! to every holder, the alert's rows dropped), drops the status of ended
//! alerts after `lifecycle.keep_status`, closes open hits, and expires
//! access requests past their deadline.

use std::sync::Arc;
use std::time::Duration;

use tracing::{info, warn};

use crate::state::State;

/// Sweeps every `every` until shutdown. Each expired alert is an ERASURE record with its change.
pub(crate) async fn sweep_expired(state: Arc<State>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = state.shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        // Each expired alert reaches its holders like a withdrawal (an
        // EXPIRY change, recorded as an ERASURE); its open hits close first.
        let now = state.now_ms();
        match state.store.due(now) {
            Ok(due) => {
                for (key, alert_id) in due {
                    if let Err(e) = crate::lifecycle::expire(&state, &key, &alert_id, now).await {
                        warn!(alert_id = %alert_id, error = %e, "expiry failed; retried on the next sweep");
                    }
                }
            }
            Err(e) => warn!(error = %e, "expiry sweep failed"),
        }
        match crate::lifecycle::drop_ended_status(&state, now) {
            Ok(n) if n > 0 => info!(alerts = n, "status of ended alerts dropped after lifecycle.keep_status"),
            Ok(_) => {}
            Err(e) => warn!(error = %e, "status sweep failed"),
        }
        if let Err(e) = crate::open_hits::sweep(&state, state.now_ms()).await {
            warn!(error = %e, "open hits past their deadline not closed");
        }
        if let Err(e) = crate::access::expire_due(&state).await {
            warn!(error = %e, "access request expiry failed");
        }
    }
}
