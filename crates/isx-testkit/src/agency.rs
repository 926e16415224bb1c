//! What a node's mock agency holds, wherever the agency runs: in this
//! process (its [`Inbox`]), or in another process that serves its inspect
//! socket ([`InspectClient`], e.g. an agency of `isx up`).
//!
//! An inbox wakes its waiters on every change; the inspect service has no
//! notification, so waits on a remote agency ask again every [`POLL`] until
//! their limit.

use std::time::Duration;

use isx_core::wire::AccessRequest;
use isx_node::{Inbox, InspectClient, InspectError, Received};

/// How often a wait on a remote agency asks again.
pub const POLL: Duration = Duration::from_millis(50);

/// Why an agency could not be read.
#[derive(Debug, thiserror::Error)]
pub enum AgencyError {
    /// The in-process agency's store failed.
    #[error(transparent)]
    Store(#[from] isx_node::inbox::InboxError),
    /// The remote agency's inspect service failed or stopped answering.
    #[error(transparent)]
    Inspect(#[from] InspectError),
}

/// A handle on one node's agency. Cheap to clone.
#[derive(Debug, Clone)]
pub enum Agency {
    /// Runs in this process.
    Local(Inbox),
    /// Runs in another process; read through its inspect socket.
    Remote(InspectClient),
}

/// Polls `read` until it gives `Some` or `limit` passes; the last reading.
async fn poll<T, F, Fut>(limit: Duration, mut read: F) -> Result<Option<T>, AgencyError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>, AgencyError>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    // Bounded by the deadline.
    loop {
        if let Some(found) = read().await? {
            return Ok(Some(found));
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return Ok(None);
        }
        tokio::time::sleep(POLL.min(deadline - now)).await;
    }
}

impl Agency {
    /// True if the agency runs in another process.
    pub fn is_remote(&self) -> bool {
        matches!(self, Self::Remote(_))
    }

    /// The record of `alert_id`, if the agency holds it.
    pub async fn get(&self, alert_id: &str) -> Result<Option<Received>, AgencyError> {
        match self {
            Self::Local(inbox) => Ok(inbox.get(alert_id)?),
            Self::Remote(client) => Ok(client.get(alert_id).await?),
        }
    }

    /// Waits until the agency holds `alert_id` or `limit` passes.
    pub async fn wait_for(&self, alert_id: &str, limit: Duration) -> Result<Option<Received>, AgencyError> {
        self.wait_until(alert_id, |_| true, limit).await
    }

    /// Waits until the record of `alert_id` satisfies `done` or `limit`
    /// passes; the record if it then satisfies `done`.
    pub async fn wait_until(
        &self,
        alert_id: &str,
        done: impl Fn(&Received) -> bool,
        limit: Duration,
    ) -> Result<Option<Received>, AgencyError> {
        match self {
            Self::Local(inbox) => Ok(inbox.wait_until(alert_id, done, limit).await?),
            Self::Remote(_) => {
                let done = &done;
                poll(limit, || async move { Ok(self.get(alert_id).await?.filter(done)) }).await
            }
        }
    }

    /// The latest known state of an access request.
    pub async fn access_request(&self, request_id: &str) -> Result<Option<AccessRequest>, AgencyError> {
        match self {
            Self::Local(inbox) => Ok(inbox.access_request(request_id)?),
            Self::Remote(client) => Ok(client.access_request(request_id).await?),
        }
    }

    /// Waits until the access request satisfies `done` or `limit` passes;
    /// its last known state.
    pub async fn wait_for_access(
        &self,
        request_id: &str,
        done: impl Fn(&AccessRequest) -> bool,
        limit: Duration,
    ) -> Result<Option<AccessRequest>, AgencyError> {
        match self {
            Self::Local(inbox) => Ok(inbox.wait_for_access(request_id, done, limit).await?),
            Self::Remote(_) => {
                let done = &done;
                let reached =
                    poll(limit, || async move { Ok(self.access_request(request_id).await?.filter(done)) }).await?;
                match reached {
                    Some(r) => Ok(Some(r)),
                    None => self.access_request(request_id).await,
                }
            }
        }
    }
}
