//! The gateway's idea of now, in Unix milliseconds, injectable for tests.

use std::sync::Arc;

/// The source of "now", in Unix milliseconds. Tests may inject their own.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// The system clock.
pub fn system_clock() -> Clock {
    Arc::new(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
    })
}
