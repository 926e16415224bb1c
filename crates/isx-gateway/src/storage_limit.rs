//! Storage limits by rule (LED Art. 5): an alert may be kept until its
//! `expires_at`, which may lie at most the configured period of its crime
//! area (`[storage] by_category`, else `max_period`) after its first
//! publication. A publish or an amendment past it is refused, naming the limit.
//!
//! (Skeleton: built on branch `h-hits`.)

use isx_core::wire::Alert;

use crate::config::StorageConfig;
use crate::error::RequestError;

/// Checks `alert.expires_at` against the limit of its crime area, counted
/// from `from_ms` (the first publication, Unix ms: now for a publish, the
/// first version's time for an amendment).
pub(crate) fn check(_limits: &StorageConfig, _alert: &Alert, _from_ms: u64) -> Result<(), RequestError> {
    Ok(())
}
