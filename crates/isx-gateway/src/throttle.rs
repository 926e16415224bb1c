//! A warning logged at most once a second, with the count of the others:
//! what a caller can provoke at will must not flood the process log.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A warning that is logged at most once a second, with how many were not.
#[derive(Debug, Default)]
pub(crate) struct Throttled {
    /// When it was last logged.
    last: std::sync::Mutex<Option<Instant>>,
    /// How many were not logged since.
    skipped: AtomicU64,
}

impl Throttled {
    /// Calls `log` with the number not logged since the last call, at most
    /// once a second; otherwise only counts.
    pub(crate) fn log(&self, log: impl FnOnce(u64)) {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if last.is_some_and(|t| now.duration_since(t) < Duration::from_secs(1)) {
            self.skipped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        *last = Some(now);
        log(self.skipped.swap(0, Ordering::Relaxed));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_throttled_warning_is_logged_once_a_second_with_a_count() {
        let t = Throttled::default();
        let mut logged = Vec::new();
        for _ in 0..5 {
            t.log(|skipped| logged.push(skipped));
        }
        assert_eq!(logged, vec![0], "the first is logged, the rest counted");
        assert_eq!(t.skipped.load(Ordering::Relaxed), 4);
    }
}
