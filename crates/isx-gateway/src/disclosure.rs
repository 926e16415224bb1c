//! The one seam where the gateway decides what each recipient gets.
//!
//! Routing (`isx_policy::candidates`) picks the candidates: the addressees,
//! or every registered node but the origin. A [`Disclose`] implementation
//! decides each one's level and builds its view. The gateway's implementation
//! is [`PolicyDisclosure`]: the Cedar policy directory from the config, which
//! a reload (the `Admin.ReloadPolicy` call, or `SIGHUP` with a request file:
//! `admin_policy` records either) replaces only if the new one validates.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use isx_core::NodeInfo;
use isx_core::redaction::RedactionProfile;
use isx_core::wire::Alert;
use isx_policy::{Decision, Disclosure, LookupQuestion, PolicyEngine, PolicyError, Related};
use tracing::{error, info};

/// The decisions on one alert's candidates.
#[derive(Debug, Clone, PartialEq)]
pub struct Decided {
    /// The version of the policy set that decided.
    pub policy_version: String,
    /// One decision per candidate, in the candidates' order.
    pub decisions: Vec<Decision>,
}

/// The decision on one requester after the holder granted access.
#[derive(Debug, Clone, PartialEq)]
pub struct Granted {
    /// The version of the policy set that decided.
    pub policy_version: String,
    /// The requester's level and view.
    pub decision: Decision,
}

/// Whether a lookup shows a caller a hit on one alert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HitDecision {
    /// The version of the policy set that decided.
    pub policy_version: String,
    /// True if the caller sees the hit flag.
    pub shown: bool,
    /// The deciding policies.
    pub policy_ids: Vec<String>,
}

/// A candidate recipient of an alert, and whether the origin addressed it.
pub type Candidate<'a> = (&'a NodeInfo, bool);

/// Decides disclosure for the candidates of one alert. Implementations must
/// fail closed: any internal error is a `denied` decision.
pub trait Disclose: Send + Sync + 'static {
    /// One decision per candidate. `origin` is the publishing node;
    /// `officer` is the publisher's officer; `related` is what the alert
    /// relays or overlaps.
    fn decide(
        &self,
        alert: &Alert,
        origin: Option<&NodeInfo>,
        candidates: &[Candidate<'_>],
        officer: &str,
        related: &Related,
    ) -> Decided;

    /// The decision for a requester the holder granted access after a hit
    /// (`context.granted`).
    fn decide_granted(
        &self,
        alert: &Alert,
        origin: Option<&NodeInfo>,
        requester: &NodeInfo,
        officer: &str,
        related: &Related,
    ) -> Granted;

    /// May `caller` see a lookup hit on `alert`?
    fn lookup(
        &self,
        alert: &Alert,
        origin: Option<&NodeInfo>,
        caller: &NodeInfo,
        question: &LookupQuestion,
    ) -> HitDecision;
}

/// What a reload put in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reloaded {
    /// The version in force before.
    pub old_version: String,
    /// The version in force now (the same if nothing changed).
    pub new_version: String,
    /// The policies added (`+id`), removed (`-id`) or edited (`~id`).
    pub changed: Vec<String>,
    /// True if the schema's text changed.
    pub schema_changed: bool,
}

/// Disclosure by the Cedar policy directory, reloadable at run time.
#[derive(Debug)]
pub struct PolicyDisclosure {
    /// The policy directory.
    dir: PathBuf,
    /// The redaction profile.
    profile: RedactionProfile,
    /// The rules in force.
    current: RwLock<Arc<Disclosure>>,
    /// Held by one reload at a time, from reading the directory until its
    /// record is written, so that records follow one another in the order
    /// the versions did.
    reloading: tokio::sync::Mutex<()>,
}

impl PolicyDisclosure {
    /// Loads and validates `dir`; fails if any policy or the schema is invalid.
    pub fn load(dir: PathBuf, profile: RedactionProfile) -> Result<Self, PolicyError> {
        let engine = PolicyEngine::load(&dir)?;
        info!(dir = %dir.display(), version = engine.version(), policies = engine.policies().count(), "policy loaded");
        let current = RwLock::new(Arc::new(Disclosure::new(Arc::new(engine), profile.clone())));
        Ok(Self { dir, profile, current, reloading: tokio::sync::Mutex::new(()) })
    }

    /// The policy directory.
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// Waits until no other reload runs; the guard keeps others waiting.
    pub(crate) async fn reloading(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.reloading.lock().await
    }

    /// The rules in force.
    pub fn current(&self) -> Arc<Disclosure> {
        self.current.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Reads the directory again: the set it holds and how it differs from
    /// the one in force, or the error (naming the file and line) if it does
    /// not validate. Nothing changes until [`PolicyDisclosure::put_in_force`]:
    /// the gateway first makes the reload's record durable. Only the
    /// gateway calls these, under [`PolicyDisclosure::reloading`].
    pub(crate) fn read_again(&self) -> Result<Staged, PolicyError> {
        let old = self.current();
        let old_engine = old.engine();
        match PolicyEngine::load(&self.dir) {
            Ok(engine) => {
                let reloaded = Reloaded {
                    old_version: old_engine.version().to_owned(),
                    new_version: engine.version().to_owned(),
                    changed: policy_changes(old_engine, &engine),
                    schema_changed: old_engine.sources().schema != engine.sources().schema,
                };
                Ok(Staged { reloaded, engine })
            }
            Err(e) => {
                error!(error = %e, kept = old_engine.version(), "policy reload refused; the policy in force stays");
                Err(e)
            }
        }
    }

    /// Puts a set read by [`PolicyDisclosure::read_again`] in force.
    pub(crate) fn put_in_force(&self, staged: Staged) {
        let Staged { reloaded, engine } = staged;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) =
            Arc::new(Disclosure::new(Arc::new(engine), self.profile.clone()));
        info!(old = %reloaded.old_version, version = %reloaded.new_version, changed = ?reloaded.changed, "policy reloaded");
    }
}

/// A policy set read again, not yet in force.
#[derive(Debug)]
pub(crate) struct Staged {
    /// How it differs from the set in force.
    pub reloaded: Reloaded,
    /// The set.
    pub engine: PolicyEngine,
}

/// The policies that differ between two loaded sets (`+id`, `-id`, `~id`).
pub(crate) fn policy_changes(old: &PolicyEngine, new: &PolicyEngine) -> Vec<String> {
    // Both validated, so both parse.
    let texts = |e: &PolicyEngine| e.sources().policy_texts(e.dir()).unwrap_or_default();
    isx_policy::changes(&texts(old), &texts(new))
}

impl Disclose for PolicyDisclosure {
    fn decide(
        &self,
        alert: &Alert,
        origin: Option<&NodeInfo>,
        candidates: &[Candidate<'_>],
        officer: &str,
        related: &Related,
    ) -> Decided {
        let rules = self.current();
        let nodes: Vec<&NodeInfo> = candidates.iter().map(|(n, _)| *n).collect();
        let prepared = rules.prepare(alert, origin, &nodes);
        let decisions = candidates
            .iter()
            .map(|(node, addressed)| {
                let relation = related.relation(node.id.as_str(), *addressed, false);
                rules.decide(alert, &prepared, node, relation, officer)
            })
            .collect();
        Decided { policy_version: rules.engine().version().to_owned(), decisions }
    }

    fn decide_granted(
        &self,
        alert: &Alert,
        origin: Option<&NodeInfo>,
        requester: &NodeInfo,
        officer: &str,
        related: &Related,
    ) -> Granted {
        let rules = self.current();
        let decision = rules.granted(alert, origin, requester, officer, related);
        Granted { policy_version: rules.engine().version().to_owned(), decision }
    }

    fn lookup(
        &self,
        alert: &Alert,
        origin: Option<&NodeInfo>,
        caller: &NodeInfo,
        question: &LookupQuestion,
    ) -> HitDecision {
        let rules = self.current();
        let (shown, policy_ids) = rules.lookup(alert, origin, caller, question);
        HitDecision { policy_version: rules.engine().version().to_owned(), shown, policy_ids }
    }
}
