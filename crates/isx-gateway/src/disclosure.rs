//! The one seam where the gateway decides what each recipient gets.
//!
//! Routing (`isx_policy::candidates`) picks the candidates: the addressees,
//! or every registered node but the origin. A [`Disclose`] implementation
//! decides each one's level and builds its view. The gateway's implementation
//! is [`PolicyDisclosure`]: the Cedar policy directory from the config, which
//! `SIGHUP` (or [`PolicyDisclosure::reload`]) replaces only if the new one
//! validates.

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

/// Disclosure by the Cedar policy directory, reloadable at run time.
#[derive(Debug)]
pub struct PolicyDisclosure {
    dir: PathBuf,
    profile: RedactionProfile,
    current: RwLock<Arc<Disclosure>>,
}

impl PolicyDisclosure {
    /// Loads and validates `dir`; fails if any policy or the schema is invalid.
    pub fn load(dir: PathBuf, profile: RedactionProfile) -> Result<Self, PolicyError> {
        let engine = PolicyEngine::load(&dir)?;
        info!(dir = %dir.display(), version = engine.version(), policies = engine.policies().count(), "policy loaded");
        let current = RwLock::new(Arc::new(Disclosure::new(Arc::new(engine), profile.clone())));
        Ok(Self { dir, profile, current })
    }

    /// The rules in force.
    pub fn current(&self) -> Arc<Disclosure> {
        self.current.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Reloads the directory. A directory that does not validate is refused
    /// with a logged error, and the rules in force stay.
    pub fn reload(&self) -> Result<String, PolicyError> {
        match PolicyEngine::load(&self.dir) {
            Ok(engine) => {
                let version = engine.version().to_owned();
                *self.current.write().unwrap_or_else(|e| e.into_inner()) =
                    Arc::new(Disclosure::new(Arc::new(engine), self.profile.clone()));
                info!(version = %version, "policy reloaded");
                Ok(version)
            }
            Err(e) => {
                error!(error = %e, kept = self.current().engine().version(), "policy reload refused; the policy in force stays");
                Err(e)
            }
        }
    }
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
