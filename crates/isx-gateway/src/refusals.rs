//! Refusal bursts: a caller can provoke refusals at will (a flood of bad
//! requests, of handshakes with an unregistered certificate, of refused
//! Audit calls), so they are aggregated per source (the node, or the address
//! of an unregistered peer) and second. The first `per_second` refusals of a
//! source in a second are recorded one by one, at once; the others are
//! counted by kind (the rule or limit that refused), and [`Refusals::due`]
//! turns the counts into one aggregate record per source once its second
//! has passed. Ordinary mistakes are therefore each on record, and a flood
//! costs at most `per_second + 1` records a second per source.
//!
//! This is an aggregator, not a rate limiter: it must remember what it did
//! not record and say so afterwards, which a token bucket does not.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use isx_core::wire::AuditRecord;

/// How long one burst of a source lasts.
const BURST: Duration = Duration::from_secs(1);

/// Sources tracked at once; past it, new ones share one bucket.
const MAX_TRACKED: usize = 4096;

/// The refusals of one source within the current burst.
#[derive(Debug)]
struct Burst {
    /// When the burst's first refusal came.
    started: Instant,
    /// Refusals recorded one by one in it.
    recorded: u32,
    /// Refusals counted, not recorded, by kind.
    skipped: BTreeMap<&'static str, u64>,
    /// The latest of them, as it would have been recorded.
    latest: Option<AuditRecord>,
}

/// The refusal bursts of every source.
#[derive(Debug)]
pub(crate) struct Refusals {
    /// Refusals of one source recorded one by one per second.
    per_second: u32,
    /// By source.
    bursts: std::sync::Mutex<HashMap<String, Burst>>,
}

impl Refusals {
    /// Records at most `per_second` refusals a second of each source one by one.
    pub(crate) fn new(per_second: u32) -> Self {
        Self { per_second: per_second.max(1), bursts: Default::default() }
    }

    /// `Some(record)` to record now; `None` if the refusal is only counted.
    pub(crate) fn note(
        &self,
        source: String,
        kind: &'static str,
        record: AuditRecord,
        now: Instant,
    ) -> Option<AuditRecord> {
        let mut bursts = self.bursts.lock().unwrap_or_else(|e| e.into_inner());
        let source = if bursts.len() >= MAX_TRACKED && !bursts.contains_key(&source) {
            "(other sources)".to_owned()
        } else {
            source
        };
        let burst =
            bursts.entry(source).or_insert(Burst { started: now, recorded: 0, skipped: BTreeMap::new(), latest: None });
        if now.duration_since(burst.started) >= BURST && burst.skipped.is_empty() {
            // A new second, nothing left to aggregate from the last one.
            burst.started = now;
            burst.recorded = 0;
        }
        if burst.recorded < self.per_second && burst.skipped.is_empty() {
            burst.recorded += 1;
            return Some(record);
        }
        *burst.skipped.entry(kind).or_default() += 1;
        burst.latest = Some(record);
        None
    }

    /// One aggregate record per source whose second has passed with
    /// refusals counted in it; forgets bursts that are over.
    pub(crate) fn due(&self, now: Instant) -> Vec<AuditRecord> {
        let mut bursts = self.bursts.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = Vec::new();
        bursts.retain(|source, b| {
            if now.duration_since(b.started) < BURST {
                return true;
            }
            if let Some(latest) = b.latest.take() {
                let total: u64 = b.skipped.values().sum();
                let kinds: Vec<String> = b.skipped.iter().map(|(k, n)| format!("{n} × {k}")).collect();
                out.push(AuditRecord {
                    detail: format!(
                        "{total} more refusals from {source} within a second, not recorded one by one ({}); the latest: {}",
                        kinds.join(", "),
                        latest.detail
                    ),
                    ..latest
                });
            }
            false
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn denial(detail: &str) -> AuditRecord {
        AuditRecord { detail: detail.into(), ..Default::default() }
    }

    #[test]
    fn the_first_of_a_second_are_recorded_and_the_rest_aggregated() {
        let r = Refusals::new(3);
        let t0 = Instant::now();
        for i in 0..3 {
            assert!(r.note("de-police".into(), "invalid alert", denial(&format!("a{i}")), t0).is_some(), "{i}");
        }
        for i in 0..5 {
            assert!(r.note("de-police".into(), "limits.rate_per_node", denial(&format!("b{i}")), t0).is_none());
        }
        assert!(r.note("de-police".into(), "invalid alert", denial("c"), t0).is_none());
        assert!(r.note("fr-police".into(), "limits.rate_per_node", denial("d"), t0).is_some(), "per source");
        assert!(r.due(t0).is_empty(), "nothing is due within the second");
        let due = r.due(t0 + BURST);
        assert_eq!(due.len(), 1, "one aggregate: de-police's");
        assert!(
            due[0].detail.starts_with("6 more refusals from de-police within a second, not recorded one by one (1 × invalid alert, 5 × limits.rate_per_node)"),
            "{}",
            due[0].detail
        );
        assert!(due[0].detail.ends_with("the latest: c"));
        assert!(r.due(t0 + 2 * BURST).is_empty(), "an aggregate is written once");
        assert!(r.note("de-police".into(), "invalid alert", denial("e"), t0 + 2 * BURST).is_some(), "a new second");
    }

    #[test]
    fn tracking_is_bounded() {
        let r = Refusals::new(1);
        let t0 = Instant::now();
        for i in 0..MAX_TRACKED + 10 {
            r.note(format!("10.0.0.{i}"), "unregistered", denial("x"), t0);
        }
        assert!(r.bursts.lock().unwrap().len() <= MAX_TRACKED + 1);
        assert!(r.note("10.9.9.9".into(), "unregistered", denial("y"), t0).is_none(), "new sources share one bucket");
    }
}
