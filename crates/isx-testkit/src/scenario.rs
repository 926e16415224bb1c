//! Scenario files: a topology, a story told in steps, and expectations, in
//! TOML. `isx scenario run` runs them; the format is documented in
//! `docs/scenarios.md`.
//!
//! Each `[[step]]` is read into a [`Step`], tagged by its `do`: one variant
//! per kind of step, each holding exactly the keys that kind accepts, with
//! typed values ([`step`]). Loading checks everything it can before anything
//! runs: unknown keys, keys that belong to another kind of step, missing
//! required keys, bad levels, codes, states, durations and operations, keys
//! that go together or exclude each other, alert files that cannot be read,
//! and references to nodes, alerts and requests that the scenario does not
//! define. Every error names the file and the line; a step's error names the
//! step (its number and kind) and the key, and lists the keys it accepts.
//!
//! - [`step`]: the step kinds and their keys.
//! - [`run`]: runs a loaded scenario against a [`crate::Topology`] and
//!   reports one [`run::Check`] per expectation.
//! - [`junit`]: the JUnit XML report.
//! - [`published`]: the alerts the publish steps send, built as the runner
//!   builds them, for the policy console's matrix ([`scenario_alerts`]).

pub mod junit;
pub mod published;
pub mod run;
pub mod step;

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use isx_core::{NodeId, NodeKind, Role};
use isx_node::config::AccessRule;
use serde::Deserialize;
use toml::de::{DeTable, DeValue, ValueDeserializer};

pub use published::{publish_alert, scenario_alerts};
pub use step::{CODE_NAMES, Kind, Step, code_name, parse_code};

use crate::topology::{NodeSpec, TopologySpec};

/// Why a scenario file cannot be used. The message names file, line and key.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The TOML does not parse, or a value has the wrong type.
    #[error("{path}:{line}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What is wrong, naming the key.
        message: String,
    },
}

/// Where scenario files and the files they name come from: the disk, or a
/// fixed set compiled into the binary (for `isx demo`).
pub trait Source {
    /// The text of `path`.
    fn read(&self, path: &Path) -> std::io::Result<String>;
}

/// Reads from the file system.
#[derive(Debug, Clone, Copy, Default)]
pub struct Disk;

impl Source for Disk {
    fn read(&self, path: &Path) -> std::io::Result<String> {
        std::fs::read_to_string(path)
    }
}

/// A fixed set of files by path.
#[derive(Debug, Clone, Default)]
pub struct Embedded(pub BTreeMap<PathBuf, &'static str>);

impl Source for Embedded {
    fn read(&self, path: &Path) -> std::io::Result<String> {
        let normal: PathBuf = normalise(path);
        self.0.iter().find(|(p, _)| normalise(p) == normal).map(|(_, t)| (*t).to_owned()).ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::NotFound, format!("{} is not embedded", path.display()))
        })
    }
}

/// Resolves `..` and `.` without touching the disk.
fn normalise(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            std::path::Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// One step of a scenario, where it is and what it does.
#[derive(Debug, Clone)]
pub struct StepEntry {
    /// 1-based position.
    pub number: usize,
    /// 1-based line of the step (its `[[step]]` header) in the file.
    pub line: usize,
    /// Narration printed before the step (`say`).
    pub say: Option<String>,
    /// What it does, with its keys.
    pub step: Step,
}

/// A loaded, checked scenario.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// The file.
    pub path: PathBuf,
    /// Its title.
    pub name: String,
    /// What it shows.
    pub description: String,
    /// The topology to start (or to attach to).
    pub spec: TopologySpec,
    /// The steps.
    pub steps: Vec<StepEntry>,
}

/// The keys above the nodes and steps (the `node` and `step` arrays are
/// taken off the document and read one table at a time).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileShape {
    name: String,
    #[serde(default)]
    description: String,
    policy: Option<PathBuf>,
    #[serde(default, deserialize_with = "step::optional_duration")]
    access_deadline: Option<Duration>,
    /// Standalone witnesses run in process (ids).
    #[serde(default)]
    witnesses: Vec<String>,
    /// The quorum over every witness: `all`, `any` or a number.
    witness_quorum: Option<String>,
    // Read separately; named here so that an unknown key's message lists them.
    #[serde(default, rename = "node")]
    _nodes: serde::de::IgnoredAny,
    #[serde(default, rename = "step")]
    _steps: serde::de::IgnoredAny,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NodeShape {
    id: NodeId,
    kind: NodeKind,
    country: String,
    #[serde(default)]
    name: String,
    roles: Option<Vec<Role>>,
    mock: Option<bool>,
    #[serde(default)]
    access: Vec<AccessRule>,
    /// Its mock agency witnesses the gateway's audit log.
    #[serde(default)]
    witness: bool,
}

fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset.min(text.len())).map(|t| t.matches('\n').count() + 1).unwrap_or(1)
}

/// A step's keys as written: name, the key's span and the value's span.
struct KeySpans(Vec<(String, Range<usize>, Range<usize>)>);

impl KeySpans {
    fn of(table: &DeTable<'_>) -> Self {
        let mut keys: Vec<_> = table.iter().map(|(k, v)| (k.get_ref().to_string(), k.span(), v.span())).collect();
        keys.sort_by_key(|(_, k, _)| k.start);
        Self(keys)
    }

    /// Where `key = ...` starts.
    fn offset(&self, key: &str) -> Option<usize> {
        self.0.iter().find(|(k, ..)| k == key).map(|(_, span, _)| span.start)
    }

    /// The key whose value holds `offset`.
    fn value_at(&self, offset: usize) -> Option<&str> {
        self.0.iter().find(|(_, _, v)| v.contains(&offset) || v.start == offset).map(|(k, ..)| k.as_str())
    }
}

/// The names a step may refer to: the nodes, and the alerts and requests of earlier steps.
struct Names<'a> {
    spec: &'a TopologySpec,
    alerts: Vec<String>,
    requests: Vec<String>,
}

/// A problem found in a step after its keys were read: the key (if one is
/// to blame) and what is wrong.
type Problem = (Option<&'static str>, String);

impl Names<'_> {
    /// `None` if `node` is a node of the scenario, else why not.
    fn unknown_node(&self, node: &NodeId) -> Option<String> {
        if self.spec.nodes.iter().any(|n| n.id == *node) {
            return None;
        }
        let nodes: Vec<&str> = self.spec.nodes.iter().map(|n| n.id.as_str()).collect();
        Some(format!("is not a node of this scenario (its nodes: {})", nodes.join(", ")))
    }

    fn node(&self, key: &'static str, node: &NodeId) -> Result<(), Problem> {
        match self.unknown_node(node) {
            None => Ok(()),
            Some(why) => Err((Some(key), format!("{key} = \"{node}\" {why}"))),
        }
    }

    /// A node whose mock agency the step watches or stops.
    fn agency(&self, key: &'static str, node: &NodeId) -> Result<(), Problem> {
        self.node(key, node)?;
        if self.spec.nodes.iter().any(|n| n.id == *node && n.run_mock) {
            Ok(())
        } else {
            Err((Some(key), format!("{key} = \"{node}\" runs no mock agency (mock = false)")))
        }
    }

    /// The nodes a receipt expectation names.
    fn receipt<V>(&self, key: &'static str, receipt: &BTreeMap<NodeId, V>) -> Result<(), Problem> {
        for node in receipt.keys() {
            if let Some(why) = self.unknown_node(node) {
                return Err((Some(key), format!("{key} names \"{node}\", which {why}")));
            }
        }
        Ok(())
    }

    /// `None` if an earlier step publishes `name`, else why not.
    fn unknown_alert(&self, name: &str) -> Option<String> {
        if self.alerts.iter().any(|a| a == name) {
            None
        } else {
            Some(format!("is no alert an earlier step publishes (known: {})", list_or_none(&self.alerts)))
        }
    }

    fn alert(&self, key: &'static str, name: &str) -> Result<(), Problem> {
        match self.unknown_alert(name) {
            None => Ok(()),
            Some(why) => Err((Some(key), format!("{key} = \"{name}\" {why}"))),
        }
    }

    /// The alerts a list names.
    fn alerts(&self, key: &'static str, names: &[String]) -> Result<(), Problem> {
        for name in names {
            if let Some(why) = self.unknown_alert(name) {
                return Err((Some(key), format!("{key} names \"{name}\", which {why}")));
            }
        }
        Ok(())
    }

    fn request(&self, key: &'static str, name: &str) -> Result<(), Problem> {
        if self.requests.iter().any(|r| r == name) {
            return Ok(());
        }
        let known = list_or_none(&self.requests);
        Err((Some(key), format!("{key} = \"{name}\" is no request an earlier step makes (known: {known})")))
    }

    fn remember(list: &mut Vec<String>, name: String) {
        if !list.contains(&name) {
            list.push(name);
        }
    }
}

fn list_or_none(names: &[String]) -> String {
    if names.is_empty() { "none".into() } else { names.join(", ") }
}

/// Reads one scenario text.
struct Loader<'a> {
    path: &'a Path,
    text: &'a str,
    source: &'a dyn Source,
    base: PathBuf,
}

impl Loader<'_> {
    fn invalid(&self, offset: usize, message: String) -> ScenarioError {
        ScenarioError::Invalid { path: self.path.to_owned(), line: line_of(self.text, offset), message }
    }

    /// A TOML syntax error.
    fn toml(&self, e: &toml::de::Error) -> ScenarioError {
        self.invalid(e.span().map(|s| s.start).unwrap_or(0), e.message().trim().to_owned())
    }

    /// A serde error reading a table with `keys`, about `what` (a step or
    /// node, or nothing for the file's own keys): names the key whose value
    /// is wrong, at the value's line (`fallback` if the error has no place).
    fn value_error(&self, e: &toml::de::Error, keys: &KeySpans, fallback: usize, what: &str) -> ScenarioError {
        let at = e.span().map(|s| s.start).unwrap_or(fallback);
        let message = e.message().trim();
        // An unknown key's message names the key already.
        let key = keys.value_at(at).filter(|k| !message.contains(&format!("`{k}`")));
        let text = match (key, what) {
            (Some(key), "") => format!("`{key}`: {message}"),
            (Some(key), what) => format!("{what}, `{key}`: {message}"),
            (None, "") => message.to_owned(),
            (None, what) => format!("{what}: {message}"),
        };
        self.invalid(at, text)
    }

    /// `[[step]]` or `[[node]]` entries, one value each.
    fn array<'t>(
        &self,
        value: Option<toml::Spanned<DeValue<'t>>>,
        key: &str,
    ) -> Result<Vec<toml::Spanned<DeValue<'t>>>, ScenarioError> {
        let Some(value) = value else { return Ok(vec![]) };
        let at = value.span().start;
        match value.into_inner() {
            DeValue::Array(items) => Ok(items.into_iter().collect()),
            _ => Err(self.invalid(at, format!("`{key}` must be [[{key}]] tables"))),
        }
    }

    fn load(&self) -> Result<Scenario, ScenarioError> {
        let mut doc = DeTable::parse(self.text).map_err(|e| self.toml(&e))?;
        let root = KeySpans::of(doc.get_ref());
        let steps = doc.get_mut().remove("step");
        let nodes = doc.get_mut().remove("node");
        let shape = FileShape::deserialize(toml::de::Deserializer::from(doc))
            .map_err(|e| self.value_error(&e, &root, 0, ""))?;

        let mut spec = TopologySpec::default_agencies();
        spec.policy_dir = shape.policy.map(|p| self.base.join(p));
        if let Some(deadline) = shape.access_deadline {
            spec.access.deadline = deadline;
        }
        for id in &shape.witnesses {
            if isx_core::NodeId::new(id.clone()).is_err() {
                return Err(self.invalid(
                    root.offset("witnesses").unwrap_or(0),
                    format!("witnesses: {id:?} is not a valid witness id (lowercase letters, digits and dashes)"),
                ));
            }
        }
        spec.witnesses = shape.witnesses;
        if let Some(q) = shape.witness_quorum {
            if q != "all" && q != "any" && q.parse::<u32>().map_or(true, |k| k == 0) {
                return Err(self.invalid(
                    root.offset("witness_quorum").unwrap_or(0),
                    format!("witness_quorum: {q:?} is not `all`, `any` or a number of witnesses"),
                ));
            }
            spec.witness_quorum = q;
        }
        let nodes = self.array(nodes, "node")?;
        if !nodes.is_empty() {
            spec.nodes.clear();
        }
        for (i, node) in nodes.into_iter().enumerate() {
            let at = node.span().start;
            let keys = match node.get_ref() {
                DeValue::Table(t) => KeySpans::of(t),
                _ => KeySpans(vec![]),
            };
            let n = NodeShape::deserialize(ValueDeserializer::from(node))
                .map_err(|e| self.value_error(&e, &keys, at, &format!("node {}", i + 1)))?;
            if spec.nodes.iter().any(|s| s.id == n.id) {
                return Err(self.invalid(at, format!("node {}: defined twice", n.id)));
            }
            isx_node::config::check_rules(&n.access).map_err(|e| self.invalid(at, format!("node {}: {e}", n.id)))?;
            let mut s = NodeSpec::new(n.id.as_str(), n.kind, &n.country, &n.name).with_access_rules(n.access);
            s.roles = n.roles;
            if let Some(mock) = n.mock {
                s.run_mock = mock;
            }
            if n.witness {
                if !s.run_mock {
                    return Err(
                        self.invalid(at, format!("node {}: witness = true needs its mock agency (mock = true)", n.id))
                    );
                }
                s = s.witnessing();
            }
            spec.nodes.push(s);
        }

        let tables = self.array(steps, "step")?;
        let mut names = Names { spec: &spec, alerts: vec![], requests: vec![] };
        let mut steps = Vec::new();
        for (i, table) in tables.into_iter().enumerate() {
            steps.push(self.step(i + 1, table, &mut names)?);
        }
        if steps.is_empty() {
            return Err(self.invalid(0, "no [[step]] entries".into()));
        }
        Ok(Scenario { path: self.path.to_owned(), name: shape.name, description: shape.description, spec, steps })
    }

    fn step(
        &self,
        number: usize,
        value: toml::Spanned<DeValue<'_>>,
        names: &mut Names<'_>,
    ) -> Result<StepEntry, ScenarioError> {
        let span = value.span();
        let kinds = || Kind::ALL.iter().map(|k| k.name()).collect::<Vec<_>>().join(", ");
        let DeValue::Table(mut table) = value.into_inner() else {
            return Err(self.invalid(span.start, format!("step {number}: a step is a table of keys")));
        };
        let keys = KeySpans::of(&table);
        let Some(tag) = table.remove("do") else {
            return Err(self.invalid(
                span.start,
                format!("step {number}: `do` is required, e.g. do = \"publish\" (one of {})", kinds()),
            ));
        };
        let tag_at = tag.span().start;
        let kind = tag.get_ref().as_str().and_then(Kind::from_name).ok_or_else(|| {
            let written = match tag.get_ref().as_str() {
                Some(s) => format!("{s:?}"),
                None => tag.get_ref().type_str().to_owned(),
            };
            self.invalid(tag_at, format!("step {number}: do = {written} is not a step; use one of {}", kinds()))
        })?;
        let accepted = kind.keys();
        for (key, key_span, _) in &keys.0 {
            if accepted.contains(&key.as_str()) {
                continue;
            }
            let owners: Vec<&str> = Kind::ALL
                .iter()
                .filter(|k| **k != kind && k.keys().contains(&key.as_str()))
                .map(|k| k.name())
                .collect();
            let whose = if owners.is_empty() {
                "it".to_owned()
            } else {
                format!("`{key}` belongs to {}; {kind}", owners.join(", "))
            };
            return Err(self.invalid(
                key_span.start,
                format!(
                    "step {number}: key `{key}` does not apply to do = \"{kind}\" ({whose} accepts: {})",
                    accepted.join(", ")
                ),
            ));
        }
        let say = match table.remove("say") {
            Some(v) => Some(String::deserialize(ValueDeserializer::from(v)).map_err(|e| {
                self.invalid(
                    e.span().map(|s| s.start).unwrap_or(span.start),
                    format!("step {number}: `say`: {}", e.message()),
                )
            })?),
            None => None,
        };
        let step = kind.parse(table, span.clone()).map_err(|e| {
            let message = e.message().trim();
            if let Some(field) = message.strip_prefix("missing field `").and_then(|m| m.strip_suffix('`')) {
                return self.invalid(
                    span.start,
                    format!("step {number}: do = \"{kind}\" needs `{field}` (it accepts: {})", accepted.join(", ")),
                );
            }
            self.value_error(&e, &keys, span.start, &format!("step {number}: do = \"{kind}\""))
        })?;
        self.check(&step, names).map_err(|(key, message)| {
            let at = key.and_then(|k| keys.offset(k)).unwrap_or(span.start);
            self.invalid(at, format!("step {number}: do = \"{kind}\": {message}"))
        })?;
        Ok(StepEntry { number, line: line_of(self.text, span.start), say, step })
    }

    /// The checks that need more than one key: nodes, names of earlier
    /// alerts and requests, alert files.
    fn check(&self, step: &Step, names: &mut Names<'_>) -> Result<(), Problem> {
        match step {
            Step::Publish(s) => {
                names.node("as", &s.call.actor)?;
                names.receipt("receipt", &s.step.receipt)?;
                names.receipt("receipt_policies", &s.step.receipt_policies)?;
                if let step::AlertSource::File(file) = &s.step.alert {
                    let file = self.base.join(file);
                    self.source.read(&file).map_err(|e| (Some("file"), format!("file {}: {e}", file.display())))?;
                }
                Names::remember(&mut names.alerts, s.step.name.clone());
            }
            Step::Forward(s) => {
                names.node("as", &s.call.actor)?;
                names.alert("of", &s.step.of)?;
                names.receipt("receipt", &s.step.receipt)?;
                names.receipt("receipt_policies", &s.step.receipt_policies)?;
                Names::remember(&mut names.alerts, s.step.name());
            }
            Step::ExpectDelivery(s) => {
                names.agency("node", &s.node)?;
                names.alert("alert", &s.alert)?;
                if let Some(r) = &s.request {
                    names.request("request", r)?;
                }
            }
            Step::ExpectNothing(s) => {
                names.agency("node", &s.node)?;
                if let Some(a) = &s.alert {
                    names.alert("alert", a)?;
                }
            }
            Step::Lookup(s) => {
                names.node("as", &s.call.actor)?;
                if !s.step.has_identifiers() && s.call.expect_code == step::Code::default() {
                    return Err((
                        None,
                        "a lookup needs document, person (with dob), plate or firearm (or an expect_code)".into(),
                    ));
                }
                names.alerts("hits", s.step.hits.as_deref().unwrap_or_default())?;
            }
            Step::RequestAccess(s) => {
                names.node("as", &s.call.actor)?;
                names.alert("alert", &s.step.alert)?;
                Names::remember(&mut names.requests, s.step.name(&s.call.actor));
            }
            Step::Decide(s) => {
                names.node("as", &s.call.actor)?;
                names.request("request", &s.step.request)?;
            }
            Step::Decline(s) => {
                names.node("as", &s.call.actor)?;
                names.alert("alert", &s.step.alert)?;
            }
            Step::ExpectAccess(s) => {
                names.agency("node", &s.node)?;
                names.request("request", &s.request)?;
            }
            Step::StopNode(s) | Step::StartNode(s) => names.agency("node", &s.node)?,
            Step::RestartGateway(_) | Step::AdvanceClock(_) => {}
            Step::ExpectWitnessed(s) => {
                let known: Vec<String> = names
                    .spec
                    .witnesses
                    .iter()
                    .cloned()
                    .chain(names.spec.nodes.iter().filter(|n| n.witness).map(|n| n.id.to_string()))
                    .collect();
                if known.is_empty() {
                    return Err((
                        None,
                        "the scenario has no witness: give `witnesses = [...]`, or `witness = true` on a node".into(),
                    ));
                }
                if let Some(w) = s.cosigners.iter().find(|w| !known.contains(w)) {
                    return Err((
                        Some("cosigners"),
                        format!("{w:?} is no witness of the scenario (known: {})", known.join(", ")),
                    ));
                }
            }
            Step::Amend(s) => {
                names.node("as", &s.call.actor)?;
                names.alert("alert", &s.step.alert)?;
                names.receipt("receipt", &s.step.receipt)?;
                names.receipt("outcomes", &s.step.outcomes)?;
                if let Some(step::AlertSource::File(file)) = &s.step.source {
                    let file = self.base.join(file);
                    self.source.read(&file).map_err(|e| (Some("file"), format!("file {}: {e}", file.display())))?;
                }
            }
            Step::Withdraw(s) | Step::Restrict(s) | Step::Lift(s) => {
                names.node("as", &s.call.actor)?;
                names.alert("alert", &s.step.alert)?;
            }
            Step::ExpectCopy(s) => {
                names.agency("node", &s.node)?;
                names.alert("alert", &s.alert)?;
            }
            Step::ExpectConfirmed(s) => {
                names.alert("alert", &s.alert)?;
                for node in s.holders.iter().flatten() {
                    if let Some(why) = names.unknown_node(node) {
                        return Err((Some("holders"), format!("holders names \"{node}\", which {why}")));
                    }
                }
            }
            Step::ExpectOpenHits(s) => {
                names.node("node", &s.node)?;
                names.alerts("hits", &s.hits)?;
            }
            Step::ExpectAudit(s) => {
                if let Some(node) = &s.node {
                    names.node("node", node)?;
                }
                if let Some(a) = &s.alert {
                    names.alert("alert", a)?;
                }
                if let Some(r) = &s.request {
                    names.request("request", r)?;
                }
            }
        }
        Ok(())
    }
}

impl Scenario {
    /// Loads and checks a scenario file from disk.
    pub fn load(path: &Path) -> Result<Self, ScenarioError> {
        Self::load_from(path, &Disk)
    }

    /// Loads and checks a scenario from `source`.
    pub fn load_from(path: &Path, source: &dyn Source) -> Result<Self, ScenarioError> {
        let text = source.read(path).map_err(|e| ScenarioError::Read { path: path.to_owned(), source: e })?;
        let base = path.parent().unwrap_or(Path::new("")).to_owned();
        Loader { path, text: &text, source, base }.load()
    }

    /// The directory the scenario's relative paths start from.
    pub fn base(&self) -> PathBuf {
        self.path.parent().unwrap_or(Path::new("")).to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Scenario, String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.toml");
        std::fs::write(&path, text).unwrap();
        std::fs::write(dir.path().join("a.json"), "{}").unwrap();
        Scenario::load(&path).map_err(|e| e.to_string().replace(&dir.path().display().to_string(), "DIR"))
    }

    const HEAD: &str = "name = \"t\"\n\n";
    /// Lines 3 to 6: a publish of alert `a` as de-police.
    const PUBLISH: &str = "[[step]]\ndo = \"publish\"\nas = \"de-police\"\nfile = \"a.json\"\n";

    /// Loads `HEAD` + each body and checks that the error contains the
    /// expected text ("ok": it loads); reports every case that does not.
    fn check(cases: &[(&str, &str)]) {
        let wrong: Vec<String> = cases
            .iter()
            .filter_map(|(body, want)| {
                let got = match load(&format!("{HEAD}{body}")) {
                    Ok(_) => "ok".to_owned(),
                    Err(e) => e,
                };
                (!got.contains(want)).then(|| format!("{body}\n  got: {got}\n want: {want}"))
            })
            .collect();
        assert!(wrong.is_empty(), "{} case(s) wrong:\n{}", wrong.len(), wrong.join("\n\n"));
    }

    #[test]
    fn a_key_the_step_does_not_take_is_named_with_the_keys_it_takes() {
        let publish_keys = "do, say, as, officer, expect_code, expect_message, expect_fields, file, inline, patch, name, keep_id, receipt, receipt_policies, expires_in";
        check(&[
            (PUBLISH, "ok"),
            (
                &format!("{PUBLISH}colour = 1\n"),
                &format!(
                    "DIR/s.toml:7: step 1: key `colour` does not apply to do = \"publish\" (it accepts: {publish_keys})"
                ),
            ),
            (
                &format!("{PUBLISH}level = \"full\"\n"),
                &format!(
                    "DIR/s.toml:7: step 1: key `level` does not apply to do = \"publish\" (`level` belongs to expect_delivery, expect_copy; publish accepts: {publish_keys})"
                ),
            ),
            (
                &format!("{PUBLISH}\n[[step]]\ndo = \"stop_node\"\nnode = \"fr-police\"\nalert = \"a\"\n"),
                "DIR/s.toml:11: step 2: key `alert` does not apply to do = \"stop_node\" (`alert` belongs to expect_delivery, expect_nothing, request_access, decline, expect_audit, amend, withdraw, restrict, lift, expect_copy, expect_confirmed; stop_node accepts: do, say, node)",
            ),
            (
                "[[step]]\ndo = \"restart_gateway\"\nas = \"de-police\"\n",
                "DIR/s.toml:5: step 1: key `as` does not apply to do = \"restart_gateway\" (`as` belongs to publish, forward, lookup, request_access, decide, decline, amend, withdraw, restrict, lift; restart_gateway accepts: do, say)",
            ),
            (
                "[[step]]\ndo = \"expect_audit\"\noperation = \"collection\"\ncount = 1\nexpect_code = \"OK\"\n",
                "DIR/s.toml:7: step 1: key `expect_code` does not apply to do = \"expect_audit\" (`expect_code` belongs to publish,",
            ),
        ]);
    }

    #[test]
    fn a_missing_key_names_the_step_kind_and_what_it_takes() {
        check(&[
            (
                "[[step]]\ndo = \"publish\"\nfile = \"a.json\"\n",
                "DIR/s.toml:3: step 1: do = \"publish\" needs `as` (it accepts: do, say, as, officer,",
            ),
            (
                &format!("{PUBLISH}\n[[step]]\ndo = \"expect_delivery\"\nnode = \"fr-police\"\nalert = \"a\"\n"),
                "DIR/s.toml:8: step 2: do = \"expect_delivery\" needs `level` (it accepts: do, say, node, alert, level, present, absent, policies, request)",
            ),
            (
                "[[step]]\ndo = \"advance_clock\"\n",
                "DIR/s.toml:3: step 1: do = \"advance_clock\" needs `by` (it accepts: do, say, by)",
            ),
            (
                "[[step]]\ndo = \"lookup\"\nas = \"frontex\"\nplate = [\"X\"]\npurpose = \"p\"\n",
                "DIR/s.toml:3: step 1: do = \"lookup\" needs `justification`",
            ),
            ("[[step]]\nsay = \"hello\"\n", "DIR/s.toml:3: step 1: `do` is required, e.g. do = \"publish\""),
            (
                "[[step]]\ndo = \"dance\"\n",
                "DIR/s.toml:4: step 1: do = \"dance\" is not a step; use one of publish, forward, expect_delivery, expect_nothing, lookup, request_access, decide, decline, expect_access, stop_node, start_node, restart_gateway, advance_clock, expect_audit, expect_witnessed, amend, withdraw, restrict, lift, expect_copy, expect_confirmed, expect_open_hits",
            ),
            ("[[step]]\ndo = 3\n", "DIR/s.toml:4: step 1: do = integer is not a step"),
        ]);
    }

    #[test]
    fn a_bad_value_names_its_key_and_line_and_lists_the_valid_values() {
        let request = "[[step]]\ndo = \"lookup\"\nas = \"it-police\"\nplate = [\"X\"]\npurpose = \"p\"\njustification = \"j\"\n\n[[step]]\ndo = \"request_access\"\nas = \"it-police\"\nalert = \"a\"\npurpose = \"p\"\njustification = \"j\"\n\n";
        check(&[
            (
                &format!(
                    "{PUBLISH}\n[[step]]\ndo = \"expect_delivery\"\nnode = \"frontex\"\nalert = \"a\"\nlevel = \"most\"\n"
                ),
                "DIR/s.toml:12: step 2: do = \"expect_delivery\", `level`: unknown variant `most`, expected one of `full`, `redacted`, `hit_only`, `denied`",
            ),
            (
                &format!("{PUBLISH}receipt = {{ frontex = \"redacted\", europol = \"most\" }}\n"),
                "DIR/s.toml:7: step 1: do = \"publish\", `receipt`: unknown variant `most`, expected one of `full`,",
            ),
            (
                &format!(
                    "{PUBLISH}\n{request}[[step]]\ndo = \"expect_access\"\nnode = \"it-police\"\nrequest = \"it-police/a\"\nstate = \"done\"\n"
                ),
                "DIR/s.toml:26: step 4: do = \"expect_access\", `state`: unknown variant `done`, expected one of `pending`, `granted`, `denied`, `expired`",
            ),
            (
                "[[step]]\ndo = \"expect_audit\"\noperation = \"gossip\"\ncount = 1\n",
                "DIR/s.toml:5: step 1: do = \"expect_audit\", `operation`: unknown variant `gossip`, expected one of `collection`, `disclosure`, `denial`, `consultation`, `access_request`, `access_decision`, `alteration`, `erasure`, `log_read`, `follow_up_declined`, `change_confirmed`, `hit_closed`",
            ),
            (
                "[[step]]\ndo = \"expect_audit\"\noperation = \"denial\"\noutcome = \"maybe\"\ncount = 1\n",
                "DIR/s.toml:6: step 1: do = \"expect_audit\", `outcome`: unknown variant `maybe`, expected one of `ok`, `refused`, `error`",
            ),
            (
                &format!("{PUBLISH}expect_code = \"NOPE\"\n"),
                "DIR/s.toml:7: step 1: do = \"publish\", `expect_code`: unknown variant `NOPE`, expected one of `OK`, `CANCELLED`,",
            ),
            (&format!("{PUBLISH}expect_code = \"permission_denied\"\n"), "ok"),
            (
                "[[step]]\ndo = \"advance_clock\"\nby = \"soon\"\n",
                "DIR/s.toml:5: step 1: do = \"advance_clock\", `by`: \"soon\" is not a duration",
            ),
            ("[[step]]\ndo = \"advance_clock\"\nby = \"3\"\n", "`by`: \"3\" is not a duration (time unit needed"),
            (
                "[[step]]\ndo = \"advance_clock\"\nby = \"999999999999999999d\"\n",
                "DIR/s.toml:5: step 1: do = \"advance_clock\", `by`: \"999999999999999999d\" is too long",
            ),
            (
                "[[step]]\ndo = \"publish\"\nas = \"de-police\"\nfile = 3\n",
                "DIR/s.toml:6: step 1: do = \"publish\", `file`: invalid type: integer `3`",
            ),
            (
                "[[step]]\ndo = \"stop_node\"\nsay = 1\nnode = \"fr-police\"\n",
                "DIR/s.toml:5: step 1: `say`: invalid type",
            ),
            (
                "[[step]]\ndo = \"stop_node\"\nnode = \"FR\"\n",
                "DIR/s.toml:5: step 1: do = \"stop_node\", `node`: node id \"FR\"",
            ),
        ]);
    }

    #[test]
    fn keys_that_go_together_or_exclude_each_other() {
        let inline = "inline = { alert_id = \"x\" }\n";
        check(&[
            (
                &format!("{PUBLISH}{inline}"),
                "DIR/s.toml:3: step 1: do = \"publish\": publish needs either `file` or `inline`, not both",
            ),
            (
                "[[step]]\ndo = \"publish\"\nas = \"de-police\"\n",
                "DIR/s.toml:3: step 1: do = \"publish\": publish needs either",
            ),
            (
                &format!("[[step]]\ndo = \"publish\"\nas = \"de-police\"\n{inline}"),
                "DIR/s.toml:3: step 1: do = \"publish\": an inline alert needs a `name`",
            ),
            (&format!("[[step]]\ndo = \"publish\"\nas = \"de-police\"\nname = \"x\"\n{inline}"), "ok"),
            (
                "[[step]]\ndo = \"lookup\"\nas = \"frontex\"\nperson = \"Doe, J\"\npurpose = \"p\"\njustification = \"j\"\n",
                "DIR/s.toml:3: step 1: do = \"lookup\": `person` and `dob` go together",
            ),
            (
                "[[step]]\ndo = \"lookup\"\nas = \"frontex\"\npurpose = \"p\"\njustification = \"j\"\n",
                "DIR/s.toml:3: step 1: do = \"lookup\": a lookup needs document, person (with dob), plate or firearm",
            ),
            (
                "[[step]]\ndo = \"lookup\"\nas = \"frontex\"\npurpose = \"p\"\njustification = \"j\"\nexpect_code = \"INVALID_ARGUMENT\"\n",
                "ok",
            ),
            (
                "[[step]]\ndo = \"expect_audit\"\noperation = \"denial\"\ncount = 1\nat_least = 1\n",
                "DIR/s.toml:3: step 1: do = \"expect_audit\": expect_audit needs either `count` or `at_least`",
            ),
            (
                "[[step]]\ndo = \"expect_audit\"\noperation = \"denial\"\n",
                "DIR/s.toml:3: step 1: do = \"expect_audit\": expect_audit needs either `count` or `at_least`",
            ),
        ]);
    }

    #[test]
    fn references_to_nodes_alerts_requests_and_files_are_checked() {
        check(&[
            (
                "[[step]]\ndo = \"stop_node\"\nnode = \"xx-police\"\n",
                "DIR/s.toml:5: step 1: do = \"stop_node\": node = \"xx-police\" is not a node of this scenario (its nodes: de-police, fr-police, it-police, europol, frontex, auditor)",
            ),
            (
                "[[step]]\ndo = \"publish\"\nas = \"es-police\"\nfile = \"a.json\"\n",
                "DIR/s.toml:5: step 1: do = \"publish\": as = \"es-police\" is not a node",
            ),
            (
                &format!("{PUBLISH}receipt = {{ es-police = \"full\" }}\n"),
                "DIR/s.toml:7: step 1: do = \"publish\": receipt names \"es-police\", which is not a node of this scenario",
            ),
            (
                "[[step]]\ndo = \"publish\"\nas = \"de-police\"\nfile = \"missing.json\"\n",
                "DIR/s.toml:6: step 1: do = \"publish\": file DIR/missing.json",
            ),
            (
                &format!(
                    "{PUBLISH}\n[[step]]\ndo = \"expect_delivery\"\nnode = \"auditor\"\nalert = \"a\"\nlevel = \"denied\"\n"
                ),
                "DIR/s.toml:10: step 2: do = \"expect_delivery\": node = \"auditor\" runs no mock agency",
            ),
            (
                &format!(
                    "{PUBLISH}\n[[step]]\ndo = \"expect_delivery\"\nnode = \"fr-police\"\nalert = \"b\"\nlevel = \"full\"\n"
                ),
                "DIR/s.toml:11: step 2: do = \"expect_delivery\": alert = \"b\" is no alert an earlier step publishes (known: a)",
            ),
            (
                "[[step]]\ndo = \"expect_audit\"\noperation = \"denial\"\nalert = \"a\"\ncount = 1\n",
                "DIR/s.toml:6: step 1: do = \"expect_audit\": alert = \"a\" is no alert an earlier step publishes (known: none)",
            ),
            (
                &format!(
                    "{PUBLISH}\n[[step]]\ndo = \"forward\"\nas = \"fr-police\"\nof = \"a\"\n\n[[step]]\ndo = \"expect_delivery\"\nnode = \"it-police\"\nalert = \"a-forwarded\"\nlevel = \"full\"\n"
                ),
                "ok",
            ),
            (
                &format!(
                    "{PUBLISH}\n[[step]]\ndo = \"decide\"\nas = \"de-police\"\nrequest = \"x\"\ngrant = true\nreason = \"r\"\n"
                ),
                "DIR/s.toml:11: step 2: do = \"decide\": request = \"x\" is no request an earlier step makes (known: none)",
            ),
            (
                &format!(
                    "{PUBLISH}\n[[step]]\ndo = \"lookup\"\nas = \"fr-police\"\nplate = [\"X\"]\npurpose = \"p\"\njustification = \"j\"\nhits = [\"a\", \"c\"]\n"
                ),
                "DIR/s.toml:14: step 2: do = \"lookup\": hits names \"c\", which is no alert an earlier step publishes (known: a)",
            ),
        ]);
    }

    #[test]
    fn the_header_and_the_toml_itself_are_checked_with_lines() {
        check(&[
            (
                "[[node]]\nid = \"x-police\"\nkind = \"navy\"\ncountry = \"XX\"\n",
                "DIR/s.toml:5: node 1, `kind`: unknown variant `navy`, expected one of `national`, `europol`, `frontex`, `auditor`",
            ),
            ("[[node]]\nid = \"x-police\"\nkind = \"national\"\n", "DIR/s.toml:3: node 1: missing field `country`"),
            (
                "[[node]]\nid = \"x-police\"\nkind = \"national\"\ncountry = \"XX\"\nflag = 1\n",
                "DIR/s.toml:7: node 1: unknown field `flag`, expected one of `id`, `kind`, `country`, `name`, `roles`, `mock`, `access`, `witness`",
            ),
            (
                "access_deadline = \"soon\"\n[[step]]\ndo = \"restart_gateway\"\n",
                "DIR/s.toml:3: `access_deadline`: \"soon\" is not a duration",
            ),
            ("node = 1\n", "DIR/s.toml:3: `node` must be [[node]] tables"),
            (
                "[[steps]]\ndo = \"restart_gateway\"\n",
                "DIR/s.toml:3: unknown field `steps`, expected one of `name`, `description`, `policy`, `access_deadline`, `witnesses`, `witness_quorum`, `node`, `step`",
            ),
            ("access_deadline = \"2h\"\n[[step]]\ndo = \"restart_gateway\"\n", "ok"),
            (
                "[[node]]\nid = \"x-police\"\nkind = \"national\"\ncountry = \"XX\"\n\n[[step]]\ndo = \"stop_node\"\nnode = \"de-police\"\n",
                "DIR/s.toml:10: step 1: do = \"stop_node\": node = \"de-police\" is not a node of this scenario (its nodes: x-police)",
            ),
            ("", "DIR/s.toml:1: no [[step]] entries"),
            ("step = [1]\n", "DIR/s.toml:3: step 1: a step is a table of keys"),
            ("step = 1\n", "DIR/s.toml:3: `step` must be [[step]] tables"),
            ("[[step]\n", "DIR/s.toml:3:"),
            (
                "witness_quorum = \"most\"\n[[step]]\ndo = \"restart_gateway\"\n",
                "DIR/s.toml:3: witness_quorum: \"most\" is not `all`, `any` or a number of witnesses",
            ),
            (
                "witnesses = [\"Bad Id\"]\n[[step]]\ndo = \"restart_gateway\"\n",
                "DIR/s.toml:3: witnesses: \"Bad Id\" is not a valid witness id",
            ),
            (
                "[[step]]\ndo = \"expect_witnessed\"\ncosigners = [\"witness\"]\n",
                "DIR/s.toml:3: step 1: do = \"expect_witnessed\": the scenario has no witness",
            ),
            (
                "witnesses = [\"witness\"]\n[[step]]\ndo = \"expect_witnessed\"\ncosigners = [\"europol\"]\n",
                "DIR/s.toml:6: step 1: do = \"expect_witnessed\": \"europol\" is no witness of the scenario (known: witness)",
            ),
            (
                "[[node]]\nid = \"x-police\"\nkind = \"national\"\ncountry = \"XX\"\nmock = false\nwitness = true\n[[step]]\ndo = \"restart_gateway\"\n",
                "DIR/s.toml:3: node x-police: witness = true needs its mock agency (mock = true)",
            ),
            (
                "witnesses = [\"witness\"]\nwitness_quorum = \"1\"\n[[step]]\ndo = \"expect_witnessed\"\ncosigners = [\"witness\"]\n",
                "ok",
            ),
        ]);
        assert!(
            load("nme = \"t\"\n").unwrap_err().contains(
                "DIR/s.toml:1: unknown field `nme`, expected one of `name`, `description`, `policy`, `access_deadline`, `witnesses`, `witness_quorum`, `node`, `step`"
            )
        );
    }

    #[test]
    fn expect_nothing_takes_a_node_and_an_optional_alert() {
        let nothing = "\n[[step]]\ndo = \"expect_nothing\"\nnode = \"frontex\"\n";
        check(&[
            (&format!("{PUBLISH}{nothing}"), "ok"),
            (&format!("{PUBLISH}{nothing}alert = \"a\"\n"), "ok"),
            (
                &format!("{PUBLISH}{nothing}alert = \"b\"\n"),
                "DIR/s.toml:11: step 2: do = \"expect_nothing\": alert = \"b\" is no alert an earlier step publishes (known: a)",
            ),
            (
                &format!("{PUBLISH}{nothing}level = \"full\"\n"),
                "DIR/s.toml:11: step 2: key `level` does not apply to do = \"expect_nothing\" (`level` belongs to expect_delivery, expect_copy; expect_nothing accepts: do, say, node, alert)",
            ),
            (
                "[[step]]\ndo = \"expect_nothing\"\nnode = \"auditor\"\n",
                "DIR/s.toml:5: step 1: do = \"expect_nothing\": node = \"auditor\" runs no mock agency",
            ),
            ("[[step]]\ndo = \"expect_nothing\"\n", "DIR/s.toml:3: step 1: do = \"expect_nothing\" needs `node`"),
        ]);
    }

    #[test]
    fn lifecycle_steps_name_a_typo_a_missing_key_and_a_bad_value() {
        // Lines 8 to ...: the step after PUBLISH.
        let amend = "\n[[step]]\ndo = \"amend\"\nas = \"de-police\"\nalert = \"a\"\nreason = \"r\"\n";
        let amend_keys = "do, say, as, officer, expect_code, expect_message, expect_fields, alert, file, inline, patch, replaces_version, reason, receipt, outcomes";
        check(&[
            (&format!("{PUBLISH}{amend}patch = {{ narrative = \"corrected\" }}\n"), "ok"),
            (
                &format!(
                    "{PUBLISH}{amend}file = \"a.json\"\nreplaces_version = 1\nreceipt = {{ fr-police = \"full\" }}\noutcomes = {{ frontex = \"withdrawn\" }}\n"
                ),
                "ok",
            ),
            (
                &format!("{PUBLISH}{amend}reasn = \"typo\"\n"),
                &format!(
                    "DIR/s.toml:13: step 2: key `reasn` does not apply to do = \"amend\" (it accepts: {amend_keys})"
                ),
            ),
            (
                &format!("{PUBLISH}{amend}"),
                "DIR/s.toml:8: step 2: do = \"amend\": amend needs the change: `patch` (over the current version), `file` or `inline`",
            ),
            (
                &format!("{PUBLISH}{amend}file = \"a.json\"\ninline = {{ narrative = \"x\" }}\n"),
                "DIR/s.toml:8: step 2: do = \"amend\": amend takes `file` or `inline`, not both",
            ),
            (
                &format!("{PUBLISH}{amend}patch = {{ narrative = \"x\" }}\nreplaces_version = 0\n"),
                "step 2: do = \"amend\": `replaces_version`: versions start at 1",
            ),
            (
                &format!("{PUBLISH}{amend}patch = {{ narrative = \"x\" }}\nreplaces_version = \"2\"\n"),
                "DIR/s.toml:14: step 2: do = \"amend\", `replaces_version`: invalid type: string \"2\"",
            ),
            (
                &format!("{PUBLISH}{amend}patch = {{ narrative = \"x\" }}\noutcomes = {{ frontex = \"gone\" }}\n"),
                "DIR/s.toml:14: step 2: do = \"amend\", `outcomes`: unknown variant `gone`, expected one of `queued`, `denied`, `queue_full`, `no_subscribe_role`, `updated`, `withdrawn`, `restricted`, `lifted`",
            ),
            (
                &format!("{PUBLISH}{amend}patch = {{ narrative = \"x\" }}\noutcomes = {{ es-police = \"updated\" }}\n"),
                "DIR/s.toml:14: step 2: do = \"amend\": outcomes names \"es-police\", which is not a node of this scenario",
            ),
            (
                "[[step]]\ndo = \"amend\"\nas = \"de-police\"\nalert = \"a\"\nreason = \"r\"\npatch = { narrative = \"x\" }\n",
                "DIR/s.toml:6: step 1: do = \"amend\": alert = \"a\" is no alert an earlier step publishes (known: none)",
            ),
            (
                &format!("{PUBLISH}{amend}file = \"missing.json\"\n"),
                "DIR/s.toml:13: step 2: do = \"amend\": file DIR/missing.json",
            ),
        ]);
        let change = |kind: &str| format!("{PUBLISH}\n[[step]]\ndo = \"{kind}\"\nas = \"de-police\"\nalert = \"a\"\n");
        check(&[
            (&format!("{}reason = \"wrong alert\"\n", change("withdraw")), "ok"),
            (&format!("{}reason = \"being checked\"\n", change("restrict")), "ok"),
            (&format!("{}reason = \"checked\"\n", change("lift")), "ok"),
            (
                &change("withdraw"),
                "DIR/s.toml:8: step 2: do = \"withdraw\" needs `reason` (it accepts: do, say, as, officer, expect_code, expect_message, expect_fields, alert, reason)",
            ),
            (
                &format!("{}reason = \"r\"\npatch = {{ narrative = \"x\" }}\n", change("restrict")),
                "DIR/s.toml:13: step 2: key `patch` does not apply to do = \"restrict\" (`patch` belongs to publish, forward, amend; restrict accepts: do, say, as, officer, expect_code, expect_message, expect_fields, alert, reason)",
            ),
            (
                "[[step]]\ndo = \"lift\"\nas = \"de-police\"\nalert = \"b\"\nreason = \"r\"\n",
                "DIR/s.toml:6: step 1: do = \"lift\": alert = \"b\" is no alert an earlier step publishes",
            ),
        ]);
        let copy = format!("{PUBLISH}\n[[step]]\ndo = \"expect_copy\"\nnode = \"fr-police\"\nalert = \"a\"\n");
        check(&[
            (&format!("{copy}version = 2\nrestricted = true\nlevel = \"full\"\n"), "ok"),
            (&format!("{copy}deleted = true\n"), "ok"),
            (&format!("{copy}deleted = false\nrestricted = false\n"), "ok"),
            (
                &format!("{copy}versoin = 2\n"),
                "DIR/s.toml:12: step 2: key `versoin` does not apply to do = \"expect_copy\" (it accepts: do, say, node, alert, version, deleted, restricted, level)",
            ),
            (
                &copy,
                "DIR/s.toml:8: step 2: do = \"expect_copy\": expect_copy needs at least one of `version`, `deleted`, `restricted`, `level`",
            ),
            (&format!("{copy}level = \"denied\"\n"), "`level`: a copy is never held `denied`; use `deleted = true`"),
            (
                &format!("{copy}deleted = true\nlevel = \"full\"\n"),
                "a deleted copy has no `level` and is not `restricted`",
            ),
            (
                &format!("{copy}deleted = \"yes\"\n"),
                "DIR/s.toml:12: step 2: do = \"expect_copy\", `deleted`: invalid type: string \"yes\", expected a boolean",
            ),
            (
                "[[step]]\ndo = \"expect_copy\"\nnode = \"auditor\"\nalert = \"a\"\nversion = 1\n",
                "DIR/s.toml:5: step 1: do = \"expect_copy\": node = \"auditor\" runs no mock agency",
            ),
        ]);
        let confirmed = format!("{PUBLISH}\n[[step]]\ndo = \"expect_confirmed\"\nalert = \"a\"\n");
        let open = format!("{PUBLISH}\n[[step]]\ndo = \"expect_open_hits\"\nnode = \"fr-police\"\n");
        check(&[
            (&confirmed, "ok"),
            (&format!("{confirmed}version = 2\nholders = [\"fr-police\", \"europol\"]\n"), "ok"),
            (
                &format!("{confirmed}holders = [\"es-police\"]\n"),
                "DIR/s.toml:11: step 2: do = \"expect_confirmed\": holders names \"es-police\", which is not a node of this scenario",
            ),
            (
                &format!("{confirmed}holder = [\"fr-police\"]\n"),
                "DIR/s.toml:11: step 2: key `holder` does not apply to do = \"expect_confirmed\" (it accepts: do, say, alert, version, holders)",
            ),
            (&format!("{open}hits = [\"a\"]\nofficer = \"Insp. Moreau\"\n"), "ok"),
            (&format!("{open}hits = []\n"), "ok"),
            (
                &format!("{open}hits = [\"b\"]\n"),
                "DIR/s.toml:11: step 2: do = \"expect_open_hits\": hits names \"b\", which is no alert an earlier step publishes (known: a)",
            ),
            (&open, "DIR/s.toml:8: step 2: do = \"expect_open_hits\" needs `hits`"),
        ]);
        check(&[
            (
                "[[step]]\ndo = \"expect_audit\"\noperation = \"hit_closed\"\nnode = \"fr-police\"\nofficer = \"Insp. Moreau\"\ncount = 1\n",
                "ok",
            ),
            ("[[step]]\ndo = \"expect_audit\"\noperation = \"change_confirmed\"\nat_least = 3\n", "ok"),
            (&format!("{PUBLISH}expires_in = \"2h\"\n"), "ok"),
            (
                &format!("{PUBLISH}expires_in = \"soon\"\n"),
                "DIR/s.toml:7: step 1: do = \"publish\", `expires_in`: \"soon\" is not a duration",
            ),
        ]);
    }

    #[test]
    fn code_names_round_trip() {
        for name in CODE_NAMES {
            assert_eq!(code_name(parse_code(name).unwrap()), name);
        }
        assert!(parse_code("permission_denied").is_some());
        assert!(parse_code("DENIED").is_none());
    }

    #[test]
    fn embedded_sources_resolve_relative_paths() {
        let e = Embedded([(PathBuf::from("deploy/local/alerts/a.json"), "{}")].into_iter().collect());
        assert_eq!(e.read(Path::new("deploy/local/scenarios/../alerts/a.json")).unwrap(), "{}");
        assert!(e.read(Path::new("deploy/local/b.json")).is_err());
    }
}
