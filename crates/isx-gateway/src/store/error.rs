//! Why a store operation failed.

use sled::transaction::TransactionError;

/// A storage failure or a full queue. A failure is answered `UNAVAILABLE`
/// and discloses nothing.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The sealed store (open, key, sealed values) failed.
    #[error(transparent)]
    Sealed(#[from] isx_store::StoreError),
    /// sled failed.
    #[error("storage: {0}")]
    Sled(#[from] sled::Error),
    /// A stored value does not decode.
    #[error("storage: {0} does not decode")]
    Corrupt(String),
    /// A recipient's queue is full; nothing was written.
    #[error("{node} has {queued} undelivered events queued (limits.max_queue_per_node is {limit})")]
    QueueFull {
        /// The recipient.
        node: String,
        /// How many wait.
        queued: u64,
        /// The limit.
        limit: u64,
    },
}

/// Turns a sled transaction's result into the store's.
pub(crate) fn finish<T>(result: Result<T, TransactionError<StoreError>>) -> Result<T, StoreError> {
    match result {
        Ok(v) => Ok(v),
        Err(TransactionError::Abort(e)) => Err(e),
        Err(TransactionError::Storage(e)) => Err(e.into()),
    }
}
