//! From policy answers to what a recipient actually gets.
//!
//! For each candidate the gateway asks for `disclose_full`, then
//! `disclose_redacted`, then `disclose_hit_only`, and takes the first one
//! permitted; if none is, the recipient is `denied`. The deciding policies are
//! the forbids that ruled out the more generous levels plus the permits of the
//! chosen one. An evaluation error denies.
//!
//! # The decision cache
//! A ladder decision (level and deciding ids) is cached by a typed
//! [`CacheKey`] holding every input the loaded policies can read: the node id
//! always, and the node's attributes, the alert's attributes and the context
//! fields that some policy reads. Which ones is derived at load from the
//! policies' parsed form (their EST), never from their text; any construct the
//! derivation cannot follow keys on more, or turns the cache off. Only clean
//! answers (no evaluation error) are cached. See [`crate::cache`] for the
//! rules and why the key cannot be wrong.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use isx_core::redaction::{RedactionProfile, hit_only, redact};
use isx_core::wire::{Alert, DisclosureLevel};
use isx_core::{NodeId, NodeInfo, Role};
use serde::Serialize;

use crate::cache::CacheKey;
use crate::engine::PolicyEngine;
use crate::engine::{Action, Prepared};
use crate::facts::{LookupQuestion, Related, Relation, alert_facts};

/// The pseudo-policy that explains a denial when nothing permitted anything.
pub const DEFAULT_DENY: &str = "default-deny";
/// The pseudo-policy that explains a denial after an evaluation error.
pub const EVALUATION_ERROR: &str = "evaluation-error";
/// The pseudo-policy for nodes that routing leaves out (the alert names other addressees).
pub const NOT_ADDRESSED: &str = "routing-not-addressed";
/// The pseudo-policy that denies a recipient holding no `subscribe` role:
/// whatever policy allows it, it cannot receive.
pub const NO_SUBSCRIBE_ROLE: &str = "no-subscribe-role";

/// Every pseudo-policy: the built-in rules that can decide besides the
/// policies of a directory, in the order `isx policy check` lists them.
pub const PSEUDO_POLICIES: [&str; 4] = [NOT_ADDRESSED, NO_SUBSCRIBE_ROLE, DEFAULT_DENY, EVALUATION_ERROR];

/// The sentence that explains a pseudo-policy, or `None` for any other id.
pub fn pseudo_reason(id: &str) -> Option<&'static str> {
    match id {
        DEFAULT_DENY => Some("No policy permits this recipient anything: deny by default."),
        EVALUATION_ERROR => Some("A policy could not be evaluated: the gateway fails closed."),
        NO_SUBSCRIBE_ROLE => Some(
            "The node holds no subscribe role, so it cannot receive: nothing is queued for it, and that is a denial.",
        ),
        NOT_ADDRESSED => Some("The alert names other addressees only."),
        _ => None,
    }
}

/// What one recipient gets, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// The level.
    pub level: DisclosureLevel,
    /// The ids of the deciding policies.
    pub policy_ids: Vec<String>,
    /// Their `@reason`s, in the same order.
    pub reasons: Vec<String>,
    /// Field paths the recipient does not see.
    pub removed_fields: Vec<String>,
    /// The recipient's view; `None` when denied.
    pub view: Option<Alert>,
}

/// One line of `isx policy explain`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Explanation {
    /// The policy directory that decided.
    pub policy_dir: String,
    /// Its policy-set version ([`PolicyEngine::version`]).
    pub policy_version: String,
    /// The node.
    pub recipient: String,
    /// `full`, `redacted`, `hit_only` or `denied`.
    pub level: String,
    /// The deciding policy ids.
    pub policies: Vec<String>,
    /// Their reasons.
    pub reasons: Vec<String>,
    /// The fields withheld or generalised, as the receipt lists them.
    pub removed_fields: Vec<String>,
    /// Those of `removed_fields` the recipient sees reduced to the year (the
    /// profile's `year_only`), not removed: `subjects[0].date_of_birth`.
    pub year_only: Vec<String>,
    /// Whether a lookup by this node that matches the alert shows it a hit.
    pub lookup_hit: bool,
    /// The policies that decided the lookup.
    pub lookup_policies: Vec<String>,
    /// The level this node would get if it asked after a hit and the holder granted.
    pub after_grant: String,
    /// The policies that decided that level.
    pub after_grant_policies: Vec<String>,
}

/// The candidates for an alert: its addressees, or every registered node but
/// the origin when it names none. Each comes with whether it is addressed.
pub fn candidates<'a>(alert: &Alert, nodes: &'a [NodeInfo]) -> Vec<(&'a NodeInfo, bool)> {
    nodes
        .iter()
        .filter(|n| n.id.as_str() != alert.origin)
        .filter_map(|n| {
            let addressed = alert.addressees.iter().any(|a| a == n.id.as_str());
            (alert.addressees.is_empty() || addressed).then_some((n, addressed))
        })
        .collect()
}

const LADDER: [(DisclosureLevel, Action); 3] = [
    (DisclosureLevel::Full, Action::DiscloseFull),
    (DisclosureLevel::Redacted, Action::DiscloseRedacted),
    (DisclosureLevel::HitOnly, Action::DiscloseHitOnly),
];

/// The policy engine plus the redaction profile: everything needed to decide.
#[derive(Debug, Clone)]
pub struct Disclosure {
    engine: Arc<PolicyEngine>,
    profile: RedactionProfile,
    /// Level and deciding ids by [`CacheKey`]; see [`crate::cache`].
    cache: Arc<Mutex<DecisionCache>>,
    /// Lookups answered from the cache, and those that were not.
    stats: Arc<[AtomicU64; 2]>,
    /// Never use the cache.
    cache_off: bool,
}

/// Level and deciding policy ids, by cache key.
type DecisionCache = HashMap<CacheKey, (DisclosureLevel, Vec<String>)>;

/// How often [`Disclosure::decide`] found its answer in the decision cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Decisions answered from the cache.
    pub hits: u64,
    /// Cacheable decisions that were not in the cache (evaluated by Cedar).
    pub misses: u64,
}

/// Cached decisions kept before the cache starts over.
const CACHE_ENTRIES: usize = 4096;

impl Disclosure {
    /// Combines an engine with a (validated) redaction profile.
    pub fn new(engine: Arc<PolicyEngine>, profile: RedactionProfile) -> Self {
        Self { engine, profile, cache: Arc::default(), stats: Arc::default(), cache_off: false }
    }

    /// Hits and misses of the decision cache so far (shared by clones), for
    /// tests and diagnostics. Decisions that are not cacheable count as neither.
    pub fn cache_stats(&self) -> CacheStats {
        CacheStats { hits: self.stats[0].load(Ordering::Relaxed), misses: self.stats[1].load(Ordering::Relaxed) }
    }

    /// The same rules without the decision cache (to measure the uncached path).
    pub fn without_cache(mut self) -> Self {
        self.cache_off = true;
        self
    }

    /// The policy engine.
    pub fn engine(&self) -> &Arc<PolicyEngine> {
        &self.engine
    }

    /// The redaction profile.
    pub fn profile(&self) -> &RedactionProfile {
        &self.profile
    }

    /// The Cedar entities of `alert` (from `origin`) and its candidate
    /// recipients, built once for all of their decisions.
    pub fn prepare(&self, alert: &Alert, origin: Option<&NodeInfo>, nodes: &[&NodeInfo]) -> Prepared {
        self.engine.prepare(alert_facts(alert, origin), nodes)
    }

    /// The reason of a deciding id: a policy's `@reason`, or the sentence of a
    /// pseudo-policy (`default-deny`, `evaluation-error`, `routing-not-addressed`).
    pub fn reason(&self, id: &str) -> Option<&str> {
        pseudo_reason(id).or_else(|| self.engine.reason(id))
    }

    fn reasons(&self, ids: &[String]) -> Vec<String> {
        ids.iter().map(|id| self.reason(id).unwrap_or("(no reason given)").to_owned()).collect()
    }

    /// Decides the level for one candidate and builds its view.
    pub fn decide(
        &self,
        alert: &Alert,
        prepared: &Prepared,
        node: &NodeInfo,
        relation: Relation,
        officer: &str,
    ) -> Decision {
        let key = self.cache_key(prepared, node, relation, officer);
        let cached = key.as_ref().and_then(|k| self.cache.lock().unwrap_or_else(|e| e.into_inner()).get(k).cloned());
        if key.is_some() {
            self.stats[usize::from(cached.is_none())].fetch_add(1, Ordering::Relaxed);
        }
        let (level, ids) = match cached {
            Some(hit) => hit,
            None => {
                let (level, ids, clean) = self.ladder(prepared, node, relation, officer);
                if let Some(k) = key.filter(|_| clean) {
                    let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
                    if cache.len() >= CACHE_ENTRIES {
                        cache.clear();
                    }
                    cache.insert(k, (level, ids.clone()));
                }
                (level, ids)
            }
        };
        let (view, removed_fields) = match level {
            DisclosureLevel::Full => (Some(alert.clone()), vec![]),
            DisclosureLevel::Redacted => {
                let (v, r) = redact(alert, &self.profile);
                (Some(v), r)
            }
            DisclosureLevel::HitOnly => {
                let (v, r) = hit_only(alert);
                (Some(v), r)
            }
            _ => (None, vec![]),
        };
        Decision { level, reasons: self.reasons(&ids), policy_ids: ids, removed_fields, view }
    }

    /// The decision for `node` after it asked following a hit and the holder
    /// granted access (`context.granted`).
    /// `related` is what the alert relays or overlaps.
    pub fn granted(
        &self,
        alert: &Alert,
        origin: Option<&NodeInfo>,
        node: &NodeInfo,
        officer: &str,
        related: &Related,
    ) -> Decision {
        let prepared = self.prepare(alert, origin, &[node]);
        let addressed = alert.addressees.iter().any(|a| a == node.id.as_str());
        self.decide(alert, &prepared, node, related.relation(node.id.as_str(), addressed, true), officer)
    }

    /// May `node` see a hit on `alert` in a lookup? Returns the answer and the
    /// deciding policies: the permits when shown, the forbids (or
    /// `default-deny`, `evaluation-error`) when withheld. Never cached:
    /// lookups are rare next to deliveries, and their context varies.
    pub fn lookup(
        &self,
        alert: &Alert,
        origin: Option<&NodeInfo>,
        node: &NodeInfo,
        question: &LookupQuestion,
    ) -> (bool, Vec<String>) {
        let prepared = self.prepare(alert, origin, &[node]);
        let answer = self.engine.ask_lookup(&prepared, node, question);
        if !answer.errors.is_empty() {
            tracing::error!(node = %node.id, errors = ?answer.errors, "policy evaluation error on lookup: no hit");
            return (false, vec![EVALUATION_ERROR.to_owned()]);
        }
        let mut ids = answer.policies;
        if ids.is_empty() {
            ids.push(DEFAULT_DENY.to_owned());
        }
        (answer.allowed, ids)
    }

    /// The cache key of one decision, or `None` when decisions are not cached.
    fn cache_key(&self, prepared: &Prepared, node: &NodeInfo, relation: Relation, officer: &str) -> Option<CacheKey> {
        if self.cache_off {
            return None;
        }
        self.engine.cache_rules().key(&prepared.facts, node, relation, officer)
    }

    /// Walks the level ladder. Returns the level, the deciding policy ids, and
    /// whether the answer is clean (no evaluation error) and may be cached.
    fn ladder(
        &self,
        prepared: &Prepared,
        node: &NodeInfo,
        relation: Relation,
        officer: &str,
    ) -> (DisclosureLevel, Vec<String>, bool) {
        let mut blocking: Vec<String> = Vec::new();
        let mut last_rung: Vec<String> = Vec::new();
        for (level, action) in LADDER {
            let answer = self.engine.ask(action, prepared, node, officer, relation);
            if !answer.errors.is_empty() {
                tracing::error!(node = %node.id, action = action.name(), errors = ?answer.errors, "policy evaluation error: denying");
                return (DisclosureLevel::Denied, vec![EVALUATION_ERROR.to_owned()], false);
            }
            if answer.allowed {
                let mut ids = blocking;
                ids.extend(answer.policies);
                dedup(&mut ids);
                return (level, ids, true);
            }
            last_rung.clone_from(&answer.policies);
            blocking.extend(answer.policies);
        }
        // Denied: the forbids that refused even a hit decided it; without any,
        // nothing permitted the last rung, so it is deny-by-default.
        let mut ids = if last_rung.is_empty() {
            blocking.push(DEFAULT_DENY.to_owned());
            blocking
        } else {
            last_rung
        };
        dedup(&mut ids);
        (DisclosureLevel::Denied, ids, true)
    }

    /// Explains what each node (or only `to`) would get for `alert`.
    ///
    /// Nodes that routing leaves out (the alert names other addressees) are
    /// shown as denied by `routing-not-addressed`, and a node without the
    /// `subscribe` role that policy allows something as denied by
    /// `no-subscribe-role`, as the gateway decides; the origin is never listed.
    /// `related` is what the alert relays or overlaps ([`Related::default`] for none).
    pub fn explain(
        &self,
        alert: &Alert,
        nodes: &[NodeInfo],
        to: Option<&NodeId>,
        officer: &str,
        related: &Related,
    ) -> Vec<Explanation> {
        let origin = nodes.iter().find(|n| n.id.as_str() == alert.origin);
        let candidates = candidates(alert, nodes);
        let prepared = self.prepare(alert, origin, &candidates.iter().map(|(n, _)| *n).collect::<Vec<_>>());
        nodes
            .iter()
            .filter(|n| n.id.as_str() != alert.origin)
            .filter(|n| to.is_none_or(|t| *t == n.id))
            .map(|n| {
                let denied_by = |id: &str| {
                    let ids = vec![id.to_owned()];
                    Decision {
                        level: DisclosureLevel::Denied,
                        reasons: self.reasons(&ids),
                        policy_ids: ids,
                        removed_fields: vec![],
                        view: None,
                    }
                };
                let decision = match candidates.iter().find(|(c, _)| c.id == n.id) {
                    Some((_, addressed)) => {
                        let d = self.decide(
                            alert,
                            &prepared,
                            n,
                            related.relation(n.id.as_str(), *addressed, false),
                            officer,
                        );
                        // As the gateway does: whatever policy allows, a node
                        // without the subscribe role cannot receive.
                        if d.level != DisclosureLevel::Denied && !n.has(Role::Subscribe) {
                            denied_by(NO_SUBSCRIBE_ROLE)
                        } else {
                            d
                        }
                    }
                    None => denied_by(NOT_ADDRESSED),
                };
                let question = LookupQuestion {
                    purpose: alert.purpose.clone(),
                    officer: officer.to_owned(),
                    data_types: vec!["document".into()],
                };
                let (lookup_hit, lookup_policies) = self.lookup(alert, origin, n, &question);
                let granted = self.granted(alert, origin, n, officer, related);
                Explanation {
                    policy_dir: self.engine.dir().display().to_string(),
                    policy_version: self.engine.version().to_owned(),
                    recipient: n.id.to_string(),
                    level: isx_core::display::level(decision.level).to_owned(),
                    policies: decision.policy_ids,
                    reasons: decision.reasons,
                    year_only: year_only(&self.profile, &decision.removed_fields),
                    removed_fields: decision.removed_fields,
                    lookup_hit,
                    lookup_policies,
                    after_grant: isx_core::display::level(granted.level).to_owned(),
                    after_grant_policies: granted.policy_ids,
                }
            })
            .collect()
    }
}

/// The entries of `removed` that `profile` reduces to the year rather than
/// removes: `subjects[0].date_of_birth` for `year_only = ["subjects.date_of_birth"]`.
pub fn year_only(profile: &RedactionProfile, removed: &[String]) -> Vec<String> {
    removed
        .iter()
        .filter(|path| {
            let mut generic = String::with_capacity(path.len());
            let mut in_index = false;
            for c in path.chars() {
                match c {
                    '[' => in_index = true,
                    ']' => in_index = false,
                    c if !in_index => generic.push(c),
                    _ => {}
                }
            }
            profile.year_only.iter().any(|f| f.name() == generic)
        })
        .cloned()
        .collect()
}

fn dedup(ids: &mut Vec<String>) {
    let mut seen = std::collections::HashSet::new();
    ids.retain(|id| seen.insert(id.clone()));
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use isx_core::NodeKind;
    use isx_core::wire::{Category, HandlingCode, Labels, SpecialCategoryData, Subject, SubjectRole, Tlp};

    use super::*;

    fn default_dir() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/local/policy")
    }

    fn nodes() -> Vec<NodeInfo> {
        [
            ("de-police", NodeKind::National, "DE"),
            ("fr-police", NodeKind::National, "FR"),
            ("it-police", NodeKind::National, "IT"),
            ("europol", NodeKind::Europol, "EU"),
            ("frontex", NodeKind::Frontex, "EU"),
            ("auditor", NodeKind::Auditor, "EU"),
        ]
        .into_iter()
        .map(|(id, kind, country)| NodeInfo {
            id: NodeId::new(id).unwrap(),
            kind,
            country: country.into(),
            roles: kind.default_roles(),
            name: id.into(),
        })
        .collect()
    }

    fn disclosure() -> Disclosure {
        let engine = PolicyEngine::load(&default_dir()).expect("the default policy loads");
        Disclosure::new(Arc::new(engine), RedactionProfile::default())
    }

    /// An adult suspect, TLP:AMBER, H0, migrant smuggling, broadcast from de-police.
    fn base() -> Alert {
        Alert {
            alert_id: "01JDQ3B2C4D6E8F0G2H4J6K8M0".into(),
            origin: "de-police".into(),
            category: Category::MigrantSmuggling as i32,
            action: 3,
            labels: Some(Labels {
                tlp: Tlp::Amber as i32,
                handling_code: HandlingCode::H0 as i32,
                source_reliability: 2,
                info_reliability: 2,
                ..Default::default()
            }),
            purpose: "investigation".into(),
            subjects: vec![Subject {
                role: SubjectRole::Suspect as i32,
                family_name: "Rinaldi".into(),
                date_of_birth: "1981-11-02".into(),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    fn tlp(t: Tlp) -> impl Fn(&mut Alert) {
        move |a| a.labels.as_mut().unwrap().tlp = t as i32
    }

    fn to(list: &'static [&'static str]) -> impl Fn(&mut Alert) {
        move |a| a.addressees = list.iter().map(|s| (*s).to_owned()).collect()
    }

    fn category(c: Category) -> impl Fn(&mut Alert) {
        move |a| a.category = c as i32
    }

    fn forwarded(a: &mut Alert) {
        a.forwarded_from = "01JDQ3A8Y7K2M4N6P8R0S2T4V6".into();
        a.hops = 1;
    }

    fn special(a: &mut Alert) {
        a.subjects[0].special_categories = vec![SpecialCategoryData { category: 7, detail: "diabetic".into() }];
    }

    fn minor(role: SubjectRole) -> impl Fn(&mut Alert) {
        move |a| {
            a.subjects[0].minor = true;
            a.subjects[0].role = role as i32;
        }
    }

    /// Applies `edits` to the base alert and checks the level `node` gets and
    /// that `policy` is among the deciding ones.
    fn check(edits: &[&dyn Fn(&mut Alert)], node: &str, level: &str, policy: &str) {
        let mut alert = base();
        for edit in edits {
            edit(&mut alert);
        }
        let d = disclosure();
        let nodes = nodes();
        let got =
            d.explain(&alert, &nodes, Some(&NodeId::new(node).unwrap()), "test", &Related::default()).pop().unwrap();
        assert_eq!(got.level, level, "{node}: {got:?}");
        assert!(got.policies.iter().any(|p| p == policy), "{node}: {policy} not in {:?}", got.policies);
        assert_eq!(got.policies.len(), got.reasons.len());
    }

    #[test]
    fn each_rule_and_their_combinations() {
        let red = tlp(Tlp::Red);
        let strict = tlp(Tlp::AmberStrict);
        let green = tlp(Tlp::Green);
        let clear = tlp(Tlp::Clear);
        let h2 = |a: &mut Alert| a.labels.as_mut().unwrap().handling_code = HandlingCode::H2 as i32;
        let to_fr = to(&["fr-police"]);
        let to_fr_europol = to(&["fr-police", "europol"]);
        let to_frontex = to(&["frontex"]);
        let to_auditor = to(&["auditor", "fr-police"]);
        let crisis = category(Category::CrisesAndDisasters);
        let terrorism = category(Category::Terrorism);
        let drugs = category(Category::DrugTrafficking);
        let docs = category(Category::DocumentFraud);
        let suspect_minor = minor(SubjectRole::Suspect);
        let victim_minor = minor(SubjectRole::Victim);
        let missing_minor = minor(SubjectRole::MissingPerson);

        // The auditor never receives, broadcast or addressed.
        check(&[], "auditor", "denied", "auditor-never-receives");
        check(&[&to_auditor], "auditor", "denied", "auditor-never-receives");
        // National police: full for AMBER, GREEN, CLEAR.
        check(&[], "fr-police", "full", "national-police-full");
        check(&[&green], "it-police", "full", "national-police-full");
        check(&[&clear], "it-police", "full", "national-police-full");
        // TLP:RED: named addressees only; an empty addressee list reaches no one (MISP#4200).
        check(&[&red, &to_fr], "fr-police", "full", "named-addressee");
        check(&[&red, &to_fr], "it-police", "denied", NOT_ADDRESSED);
        check(&[&red], "fr-police", "denied", "tlp-red-addressees-only");
        check(&[&red], "europol", "denied", "tlp-red-addressees-only");
        check(&[&red, &to_fr_europol], "europol", "full", "europol-mandate");
        // TLP:AMBER+STRICT: named addressees only.
        check(&[&strict, &to_fr], "fr-police", "full", "named-addressee");
        check(&[&strict], "it-police", "denied", "tlp-amber-strict-addressees-only");
        // Forwarded H2, RED, AMBER+STRICT: no new recipient.
        check(&[&forwarded, &h2], "fr-police", "denied", "no-onward-relay");
        check(&[&forwarded, &h2, &to_fr], "fr-police", "denied", "no-onward-relay");
        check(&[&forwarded, &strict, &to_fr], "fr-police", "denied", "no-onward-relay");
        check(&[&forwarded, &red, &to_fr], "fr-police", "denied", "no-onward-relay");
        check(&[&forwarded], "fr-police", "full", "national-police-full");
        // Europol: its mandate in full, nothing outside it.
        check(&[&terrorism], "europol", "full", "europol-mandate");
        check(&[&drugs], "europol", "full", "europol-mandate");
        check(&[&crisis], "europol", "denied", "europol-outside-mandate");
        check(&[&crisis, &to_fr_europol], "europol", "denied", "europol-outside-mandate");
        check(&[&crisis], "fr-police", "full", "national-police-full");
        // Frontex: border crime areas, always redacted; nothing else.
        check(&[], "frontex", "redacted", "frontex-depersonalised");
        check(&[&to_frontex], "frontex", "redacted", "frontex-border-crime");
        check(&[&terrorism], "frontex", "redacted", "frontex-border-crime");
        check(&[&docs], "frontex", "redacted", "frontex-border-crime");
        check(&[&drugs], "frontex", "denied", "frontex-outside-mandate");
        check(&[&crisis, &to_frontex], "frontex", "denied", "frontex-outside-mandate");
        // Special categories: full only for named addressees.
        check(&[&special], "fr-police", "redacted", "special-categories-addressees-only");
        check(&[&special], "europol", "redacted", "special-categories-addressees-only");
        check(&[&special, &to_fr], "fr-police", "full", "named-addressee");
        check(&[&special], "frontex", "redacted", "frontex-border-crime");
        // Minors who are not victims or missing: hit only for non-addressees.
        check(&[&suspect_minor], "fr-police", "hit_only", "minor-protection");
        check(&[&suspect_minor], "frontex", "hit_only", "minor-protection");
        check(&[&suspect_minor, &to_fr], "fr-police", "full", "named-addressee");
        check(&[&victim_minor], "fr-police", "full", "national-police-full");
        check(&[&missing_minor], "fr-police", "full", "national-police-full");
        // Combinations: the most restrictive rule wins.
        check(&[&suspect_minor, &special], "europol", "hit_only", "minor-protection");
        check(&[&suspect_minor, &red], "fr-police", "denied", "tlp-red-addressees-only");
        check(&[&special, &crisis], "frontex", "denied", "frontex-outside-mandate");
    }

    #[test]
    fn redacted_views_lack_the_profile_fields() {
        let mut alert = base();
        special(&mut alert);
        let d = disclosure();
        let nodes = nodes();
        let frontex = nodes.iter().find(|n| n.kind == NodeKind::Frontex).unwrap();
        let prepared = d.prepare(&alert, None, &[frontex]);
        let decision = d.decide(&alert, &prepared, frontex, Relation::default(), "t");
        assert_eq!(decision.level, DisclosureLevel::Redacted);
        let view = decision.view.unwrap();
        assert!(view.subjects[0].family_name.is_empty());
        assert_eq!(view.subjects[0].date_of_birth, "1981");
        assert!(view.subjects[0].special_categories.is_empty());
        assert_eq!(
            decision.removed_fields,
            vec!["subjects[0].family_name", "subjects[0].date_of_birth", "subjects[0].special_categories[0]"]
        );
    }

    /// Decides for fr-police (broadcast) under the default policy plus `extra`.
    fn decide_with(extra: &str, alert: &Alert, officer: &str, d: Option<&Disclosure>) -> (Disclosure, DisclosureLevel) {
        let d = d.cloned().unwrap_or_else(|| {
            let dir = tempfile::tempdir().unwrap();
            crate::defaults::write_to(dir.path()).unwrap();
            std::fs::write(dir.path().join("extra.cedar"), extra).unwrap();
            Disclosure::new(Arc::new(PolicyEngine::load(dir.path()).unwrap()), RedactionProfile::default())
        });
        let nodes = nodes();
        let fr = &nodes[1];
        let prepared = d.prepare(alert, None, &[fr]);
        let level = d.decide(alert, &prepared, fr, Relation::default(), officer).level;
        (d, level)
    }

    #[test]
    fn the_decision_cache_keys_on_everything_a_policy_can_see() {
        // The officer matters once a policy mentions it.
        let by_officer =
            "@id(\"x\")\n@reason(\"r\")\nforbid (principal, action, resource) when { context.officer == \"rogue\" };\n";
        let (d, first) = decide_with(by_officer, &base(), "ok", None);
        let (_, second) = decide_with(by_officer, &base(), "rogue", Some(&d));
        assert_eq!((first, second), (DisclosureLevel::Full, DisclosureLevel::Denied));
        assert!(d.engine().cache_rules().officer);

        // A policy that names an alert by id turns the cache off.
        let by_id = "@id(\"x\")\n@reason(\"r\")\nforbid (principal, action, resource) when { resource == Alert::\"01JDQ3B2C4D6E8F0G2H4J6K8M0\" };\n";
        let (d, first) = decide_with(by_id, &base(), "ok", None);
        let mut other = base();
        other.alert_id = "01JDQ3B2C4D6E8F0G2H4J6K8M9".into();
        let (_, second) = decide_with(by_id, &other, "ok", Some(&d));
        assert_eq!((first, second), (DisclosureLevel::Denied, DisclosureLevel::Full));
        assert!(!d.engine().cache_rules().enabled);

        // Facts are part of the key: the same node, a different TLP, another answer.
        let (d, first) = decide_with("", &base(), "ok", None);
        let mut red = base();
        tlp(Tlp::Red)(&mut red);
        let (_, second) = decide_with("", &red, "ok", Some(&d));
        assert_eq!((first, second), (DisclosureLevel::Full, DisclosureLevel::Denied));
        let rules = d.engine().cache_rules();
        assert!(rules.enabled && !rules.officer);
        let used: Vec<&str> =
            crate::facts::ALERT_ATTRIBUTES.iter().zip(rules.attributes).filter(|(_, u)| *u).map(|(n, _)| *n).collect();
        assert!(used.contains(&"tlp") && used.contains(&"category") && !used.contains(&"subject_count"), "{used:?}");

        // An attribute enters the key once a policy uses it: two subjects are not one.
        let by_count =
            "@id(\"x\")\n@reason(\"r\")\nforbid (principal, action, resource) when { resource.subject_count > 1 };\n";
        let (d, first) = decide_with(by_count, &base(), "ok", None);
        let mut two = base();
        two.subjects.push(two.subjects[0].clone());
        let (_, second) = decide_with(by_count, &two, "ok", Some(&d));
        assert_eq!((first, second), (DisclosureLevel::Full, DisclosureLevel::Denied));
    }

    /// A directory with the default schema and only `policies`.
    fn only(policies: &str) -> Disclosure {
        let dir = tempfile::tempdir().unwrap();
        let (name, schema) = crate::defaults::FILES.iter().find(|(n, _)| n.ends_with(".cedarschema")).unwrap();
        std::fs::write(dir.path().join(name), schema).unwrap();
        std::fs::write(dir.path().join("custom.cedar"), policies).unwrap();
        Disclosure::new(Arc::new(PolicyEngine::load(dir.path()).unwrap()), RedactionProfile::default())
    }

    #[test]
    fn a_policy_on_context_broadcast_keys_the_cache_on_it() {
        // The security review's case: a granted requester gets the alert in
        // full unless it was broadcast, when it gets a hit only.
        let d = only(concat!(
            "@id(\"granted-full\")\n@reason(\"r\")\n",
            "permit (principal, action == Action::\"disclose_full\", resource) when { context.granted && !context.broadcast };\n",
            "@id(\"hit\")\n@reason(\"r\")\n",
            "permit (principal, action == Action::\"disclose_hit_only\", resource);\n",
        ));
        let nodes = nodes();
        let fr = &nodes[1];
        let mut addressed = base();
        to(&["it-police"])(&mut addressed);
        let broadcast = base();
        assert_eq!(d.granted(&addressed, None, fr, "o", &Related::default()).level, DisclosureLevel::Full);
        assert_eq!(d.granted(&broadcast, None, fr, "o", &Related::default()).level, DisclosureLevel::HitOnly);
        assert_eq!(d.granted(&addressed, None, fr, "o", &Related::default()).level, DisclosureLevel::Full);
        assert_eq!(d.cache_stats(), CacheStats { hits: 1, misses: 2 });
    }

    #[test]
    fn the_default_policy_serves_repeated_decisions_from_the_cache() {
        let d = disclosure();
        let rules = d.engine().cache_rules();
        assert!(rules.enabled && !rules.officer && !rules.purpose, "{rules:?}");
        let nodes = nodes();
        // Ten alerts with the same labels but their own ids, purposes,
        // subjects' names and officers, each decided for its five candidates:
        // one evaluation per recipient, then hits.
        for i in 0..10 {
            let mut alert = base();
            alert.alert_id = format!("01JDQ3B2C4D6E8F0G2H4J6K8M{i}");
            alert.purpose = ["investigation", "prevention"][i % 2].into();
            alert.subjects[0].family_name = format!("Name{i}");
            let candidates = candidates(&alert, &nodes);
            let refs: Vec<&NodeInfo> = candidates.iter().map(|(n, _)| *n).collect();
            let prepared = d.prepare(&alert, Some(&nodes[0]), &refs);
            for (n, addressed) in &candidates {
                d.decide(&alert, &prepared, n, Relation::routed(*addressed), &format!("officer-{i}"));
            }
        }
        assert_eq!(d.cache_stats(), CacheStats { hits: 45, misses: 5 });
        // Another TLP is another key.
        let mut red = base();
        tlp(Tlp::Red)(&mut red);
        let prepared = d.prepare(&red, Some(&nodes[0]), &[&nodes[1]]);
        d.decide(&red, &prepared, &nodes[1], Relation::default(), "o");
        assert_eq!(d.cache_stats(), CacheStats { hits: 45, misses: 6 });
    }

    #[test]
    fn routing_candidates() {
        let nodes = nodes();
        let mut alert = base();
        let ids = |a: &Alert| {
            candidates(a, &nodes)
                .iter()
                .map(|(n, addr)| format!("{}{}", n.id, if *addr { "*" } else { "" }))
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(&alert), vec!["fr-police", "it-police", "europol", "frontex", "auditor"]);
        alert.addressees = vec!["europol".into()];
        assert_eq!(ids(&alert), vec!["europol*"]);
        let _ = Role::Publish;
    }
}
