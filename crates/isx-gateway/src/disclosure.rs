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
use isx_policy::{Decision, Disclosure, LookupQuestion, PolicyEngine, PolicyError, Relation};
use tracing::{error, info};

/// Decides disclosure for the candidates of one alert. Implementations must
/// fail closed: any internal error is a `denied` decision.
pub trait Disclose: Send + Sync + 'static {
    /// One decision per candidate, in the same order, and the version of the
    /// rules that made them. `origin` is the publishing node; `officer` is the
    /// publisher's officer.
    fn decide(
        &self,
        alert: &Alert,
        origin: Option<&NodeInfo>,
        candidates: &[(&NodeInfo, bool)],
        officer: &str,
    ) -> (String, Vec<Decision>);

    /// The decision for a requester the holder granted access after a hit
    /// (`context.granted`), and the version of the rules.
    fn decide_granted(
        &self,
        alert: &Alert,
        origin: Option<&NodeInfo>,
        requester: &NodeInfo,
        officer: &str,
    ) -> (String, Decision);

    /// May `caller` see a lookup hit on `alert`? Returns the version of the
    /// rules, the answer, and the deciding policies.
    fn lookup(
        &self,
        alert: &Alert,
        origin: Option<&NodeInfo>,
        caller: &NodeInfo,
        question: &LookupQuestion,
    ) -> (String, bool, Vec<String>);
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
        candidates: &[(&NodeInfo, bool)],
        officer: &str,
    ) -> (String, Vec<Decision>) {
        let rules = self.current();
        let nodes: Vec<&NodeInfo> = candidates.iter().map(|(n, _)| *n).collect();
        let prepared = rules.prepare(alert, origin, &nodes);
        let decisions = candidates
            .iter()
            .map(|(node, addressed)| rules.decide(alert, &prepared, node, Relation::routed(*addressed), officer))
            .collect();
        (rules.engine().version().to_owned(), decisions)
    }

    fn decide_granted(
        &self,
        alert: &Alert,
        origin: Option<&NodeInfo>,
        requester: &NodeInfo,
        officer: &str,
    ) -> (String, Decision) {
        let rules = self.current();
        let decision = rules.granted(alert, origin, requester, officer);
        (rules.engine().version().to_owned(), decision)
    }

    fn lookup(
        &self,
        alert: &Alert,
        origin: Option<&NodeInfo>,
        caller: &NodeInfo,
        question: &LookupQuestion,
    ) -> (String, bool, Vec<String>) {
        let rules = self.current();
        let (shown, ids) = rules.lookup(alert, origin, caller, question);
        (rules.engine().version().to_owned(), shown, ids)
    }
}
