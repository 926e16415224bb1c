//! Lookup quotas: a lookup is not an oracle.
//!
//! - Per node and per officer, per window (`[lookup] per_node`,
//!   `per_officer`, `window`): GCRA quotas (governor), refilled evenly over
//!   the window.
//! - Per person: at most `[lookup] max_dates_per_name` distinct dates of
//!   birth tried for one name, per node and UTC day, so that a date of birth
//!   cannot be found by trying them all. The name and the dates are counted
//!   by keyed hashes under a key made at start and held only in memory; no
//!   name or date is ever stored or logged.
//!
//! Going over a quota is `RESOURCE_EXHAUSTED` with `RetryInfo`, and a
//! refusal record (aggregated like every refusal) that names the quota and
//! counts, never values.

use std::collections::{HashMap, HashSet};
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::DefaultClock;
use governor::state::keyed::HashMapStateStore;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use isx_core::NodeId;
use isx_core::identifiers::PseudonymKey;

use crate::config::LookupConfig;
use crate::error::RequestError;

/// Most (node, officer) or (node, name) entries kept before old ones go.
const MAX_TRACKED: usize = 100_000;

const DAY_MS: u64 = 86_400_000;

/// The UTC day, and the keyed dates of birth tried for one name that day.
type DatesTried = (u64, HashSet<String>);

/// The quotas of every node and officer.
pub(crate) struct Quotas {
    /// The settings.
    config: LookupConfig,
    /// Per node.
    nodes: HashMap<NodeId, DefaultDirectRateLimiter>,
    /// Per node and officer.
    officers: RateLimiter<(NodeId, String), HashMapStateStore<(NodeId, String)>, DefaultClock>,
    /// Keys the names and dates counted per person; made at start, never stored.
    key: PseudonymKey,
    /// (node, keyed name) → (UTC day, keyed dates of birth tried that day).
    names: std::sync::Mutex<HashMap<(NodeId, String), DatesTried>>,
}

impl std::fmt::Debug for Quotas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Quotas").field("config", &self.config).finish_non_exhaustive()
    }
}

/// `per` calls per `window`, refilled evenly.
fn quota(per: u32, window: Duration) -> Quota {
    let per = NonZeroU32::new(per).unwrap_or(NonZeroU32::MIN);
    let period = (window / per.get()).max(Duration::from_nanos(1));
    Quota::with_period(period).expect("a positive period").allow_burst(per)
}

fn random_key() -> PseudonymKey {
    let mut bytes = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .expect("the system random number generator works");
    PseudonymKey::new(bytes)
}

impl Quotas {
    /// Quotas for `nodes` under `config`.
    pub(crate) fn new(config: &LookupConfig, nodes: impl Iterator<Item = NodeId>) -> Self {
        let per_node = quota(config.per_node, config.window);
        Self {
            nodes: nodes.map(|n| (n, RateLimiter::direct(per_node))).collect(),
            officers: RateLimiter::hashmap(quota(config.per_officer, config.window)),
            key: random_key(),
            names: Default::default(),
            config: config.clone(),
        }
    }

    fn exceeded(
        &self,
        key: &'static str,
        limit: u32,
        not_until: governor::NotUntil<<DefaultClock as governor::clock::Clock>::Instant>,
    ) -> RequestError {
        let retry_after = not_until.wait_time_from(governor::clock::Clock::now(&DefaultClock::default()));
        RequestError::QuotaExceeded { key, limit, window: self.config.window, retry_after }
    }

    /// Takes one lookup from `node`'s and `officer`'s quotas, and checks the
    /// dates of birth tried for each person of `identifiers` (normalised) at
    /// `now_ms`.
    pub(crate) fn take(
        &self,
        node: &NodeId,
        officer: &str,
        identifiers: &[String],
        now_ms: u64,
    ) -> Result<(), RequestError> {
        // The officer's quota first: a lookup it refuses takes nothing of the
        // node's, so one officer cannot use up the node's quota for the others.
        if self.officers.len() > MAX_TRACKED {
            self.officers.retain_recent();
        }
        self.officers
            .check_key(&(node.clone(), officer.to_owned()))
            .map_err(|n| self.exceeded("lookup.per_officer", self.config.per_officer, n))?;
        if let Some(limiter) = self.nodes.get(node) {
            limiter.check().map_err(|n| self.exceeded("lookup.per_node", self.config.per_node, n))?;
        }
        self.check_dates(node, identifiers, now_ms)
    }

    /// At most `max_dates_per_name` distinct dates of birth per name, node and day.
    fn check_dates(&self, node: &NodeId, identifiers: &[String], now_ms: u64) -> Result<(), RequestError> {
        let day = now_ms / DAY_MS;
        let max = self.config.max_dates_per_name as usize;
        let people: Vec<(String, String)> = identifiers
            .iter()
            .filter_map(|i| i.strip_prefix("name:"))
            .filter_map(|n| n.rsplit_once('|'))
            .map(|(name, dob)| (self.key.pseudonym(name), self.key.pseudonym(dob)))
            .collect();
        if people.is_empty() {
            return Ok(());
        }
        let mut names = self.names.lock().unwrap_or_else(|e| e.into_inner());
        if names.len() > MAX_TRACKED {
            names.retain(|_, (d, _)| *d == day);
        }
        // Check every person first, so that a refused lookup counts nothing.
        for (name, dob) in &people {
            let tried = names.get(&(node.clone(), name.clone())).filter(|(d, _)| *d == day).map(|(_, t)| t);
            let new = tried.is_none_or(|t| !t.contains(dob));
            if new && tried.map_or(0, HashSet::len) >= max {
                let until_tomorrow = (day + 1) * DAY_MS - now_ms;
                return Err(RequestError::QuotaExceeded {
                    key: "lookup.max_dates_per_name",
                    limit: self.config.max_dates_per_name,
                    window: Duration::from_millis(DAY_MS),
                    retry_after: Duration::from_millis(until_tomorrow),
                });
            }
        }
        for (name, dob) in people {
            let entry = names.entry((node.clone(), name)).or_insert((day, HashSet::new()));
            if entry.0 != day {
                *entry = (day, HashSet::new());
            }
            entry.1.insert(dob);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quotas(per_node: u32, per_officer: u32, dates: u32) -> (Quotas, NodeId) {
        let config = LookupConfig {
            per_node,
            per_officer,
            window: Duration::from_secs(3600),
            max_dates_per_name: dates,
            ..LookupConfig::default()
        };
        let it = NodeId::new("it-police").unwrap();
        (Quotas::new(&config, [it.clone()].into_iter()), it)
    }

    fn person(dob: &str) -> Vec<String> {
        vec![isx_core::identifiers::name("Rinaldi", "Marco", dob)]
    }

    #[test]
    fn node_and_officer_quotas_hold() {
        let (q, it) = quotas(5, 3, 100);
        for _ in 0..3 {
            q.take(&it, "Conti", &[], 0).unwrap();
        }
        let e = q.take(&it, "Conti", &[], 0).unwrap_err();
        assert!(matches!(e, RequestError::QuotaExceeded { key: "lookup.per_officer", .. }), "{e}");
        q.take(&it, "Rossi", &[], 0).unwrap();
        q.take(&it, "Rossi", &[], 0).expect("an officer's refusal took nothing of the node's quota");
        let e = q.take(&it, "Bianchi", &[], 0).unwrap_err();
        assert!(matches!(e, RequestError::QuotaExceeded { key: "lookup.per_node", .. }), "{e}");
        let RequestError::QuotaExceeded { retry_after, .. } = e else { unreachable!() };
        assert!(retry_after > Duration::ZERO && retry_after <= Duration::from_secs(720), "{retry_after:?}");
    }

    #[test]
    fn a_date_of_birth_cannot_be_brute_forced() {
        let (q, it) = quotas(1000, 1000, 3);
        let day = 20_000 * DAY_MS;
        for dob in ["1981-11-01", "1981-11-02", "1981-11-03"] {
            q.take(&it, "o", &person(dob), day).unwrap();
        }
        q.take(&it, "o", &person("1981-11-02"), day).expect("a date already tried is not a new one");
        let e = q.take(&it, "o", &person("1981-11-04"), day).unwrap_err();
        assert!(matches!(e, RequestError::QuotaExceeded { key: "lookup.max_dates_per_name", limit: 3, .. }), "{e}");
        assert!(!e.to_string().contains("Rinaldi") && !e.to_string().contains("1981"), "no values: {e}");
        let other = vec![isx_core::identifiers::name("Rinaldi", "Anna", "1981-11-04")];
        q.take(&it, "o", &other, day).expect("another name counts on its own");
        q.take(&it, "o", &person("1981-11-04"), day + DAY_MS).expect("a new day starts over");
    }
}
