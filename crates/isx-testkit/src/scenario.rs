//! Scenario files: a topology, a story told in steps, and expectations, in
//! TOML. `isx scenario run` runs them; the format is documented in
//! `docs/scenarios.md`.
//!
//! Loading checks everything it can before anything runs: unknown keys, keys
//! that do not apply to a step's `do`, missing required keys, bad levels,
//! codes, states, durations and operations. Every error names the file, the
//! line and the key.
//!
//! - [`run`]: runs a loaded scenario against a [`crate::Topology`] and
//!   reports one [`run::Check`] per expectation.
//! - [`junit`]: the JUnit XML report.

pub mod junit;
pub mod run;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use isx_core::{NodeId, NodeKind, Role};
use isx_node::config::AccessRule;
use serde::Deserialize;

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

/// A disclosure level as scenarios spell it.
pub const LEVELS: [&str; 4] = ["full", "redacted", "hit_only", "denied"];
/// Access request states as scenarios spell them.
pub const STATES: [&str; 4] = ["pending", "granted", "denied", "expired"];

/// What one step does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Publish an alert as a node.
    Publish,
    /// Relay an alert a node received, with `forwarded_from` set.
    Forward,
    /// Wait until a node has an alert at a level (or check it never gets it).
    ExpectDelivery,
    /// Hit/no-hit lookup.
    Lookup,
    /// Ask the holder of a hit for the alert.
    RequestAccess,
    /// The holder grants or denies.
    Decide,
    /// Record why a hit is not followed up.
    Decline,
    /// Wait until an access request reaches a state, as the requester sees it.
    ExpectAccess,
    /// Stop a mock agency.
    StopNode,
    /// Start a mock agency again.
    StartNode,
    /// Stop and start the gateway on the same address and data.
    RestartGateway,
    /// Move the gateway's clock forward.
    AdvanceClock,
    /// Count audit records.
    ExpectAudit,
}

impl Action {
    fn name(self) -> &'static str {
        match self {
            Self::Publish => "publish",
            Self::Forward => "forward",
            Self::ExpectDelivery => "expect_delivery",
            Self::Lookup => "lookup",
            Self::RequestAccess => "request_access",
            Self::Decide => "decide",
            Self::Decline => "decline",
            Self::ExpectAccess => "expect_access",
            Self::StopNode => "stop_node",
            Self::StartNode => "start_node",
            Self::RestartGateway => "restart_gateway",
            Self::AdvanceClock => "advance_clock",
            Self::ExpectAudit => "expect_audit",
        }
    }

    /// The keys a step of this kind accepts (besides `do` and `say`).
    fn keys(self) -> &'static [&'static str] {
        match self {
            Self::Publish => &[
                "as",
                "officer",
                "file",
                "inline",
                "patch",
                "name",
                "keep_id",
                "receipt",
                "receipt_policies",
                "expect_code",
                "expect_message",
                "expect_fields",
            ],
            Self::Forward => &[
                "as",
                "officer",
                "of",
                "patch",
                "name",
                "receipt",
                "receipt_policies",
                "expect_code",
                "expect_message",
                "expect_fields",
            ],
            Self::ExpectDelivery => &["node", "alert", "level", "present", "absent", "policies", "request"],
            Self::Lookup => &[
                "as",
                "officer",
                "document",
                "person",
                "dob",
                "plate",
                "firearm",
                "purpose",
                "justification",
                "hits",
                "expect_code",
                "expect_message",
                "expect_fields",
            ],
            Self::RequestAccess => &[
                "as",
                "officer",
                "alert",
                "purpose",
                "justification",
                "name",
                "expect_code",
                "expect_message",
                "expect_fields",
            ],
            Self::Decide => &[
                "as",
                "officer",
                "request",
                "grant",
                "reason",
                "expect_level",
                "expect_code",
                "expect_message",
                "expect_fields",
            ],
            Self::Decline => &["as", "officer", "alert", "reason", "expect_code", "expect_message", "expect_fields"],
            Self::ExpectAccess => &["node", "request", "state"],
            Self::StopNode | Self::StartNode => &["node"],
            Self::RestartGateway => &[],
            Self::AdvanceClock => &["by"],
            Self::ExpectAudit => &["operation", "node", "alert", "request", "outcome", "count", "at_least"],
        }
    }

    /// The keys a step of this kind needs.
    fn required(self) -> &'static [&'static str] {
        match self {
            Self::Publish => &["as"],
            Self::Forward => &["as", "of"],
            Self::ExpectDelivery => &["node", "alert", "level"],
            Self::Lookup => &["as", "purpose", "justification"],
            Self::RequestAccess => &["as", "alert", "purpose", "justification"],
            Self::Decide => &["as", "request", "grant", "reason"],
            Self::Decline => &["as", "alert", "reason"],
            Self::ExpectAccess => &["node", "request", "state"],
            Self::StopNode | Self::StartNode => &["node"],
            Self::RestartGateway => &[],
            Self::AdvanceClock => &["by"],
            Self::ExpectAudit => &["operation"],
        }
    }
}

/// One step, with every key its `do` accepts. Keys a step does not use are `None`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepFields {
    /// Narration printed before the step.
    pub say: Option<String>,
    /// The acting node.
    #[serde(rename = "as")]
    pub actor: Option<String>,
    /// The officer named on the call (default `officer@<node>`).
    pub officer: Option<String>,
    /// An alert file (canonical protobuf JSON), relative to the scenario.
    pub file: Option<PathBuf>,
    /// An inline alert, in the JSON shape.
    pub inline: Option<toml::Value>,
    /// Deep-merged over the alert before publishing.
    pub patch: Option<toml::Value>,
    /// The name later steps use for this alert or request.
    pub name: Option<String>,
    /// Keep the file's `alert_id` instead of a fresh one.
    pub keep_id: Option<bool>,
    /// Expected receipt levels by node.
    pub receipt: Option<BTreeMap<String, String>>,
    /// Policy ids that must be among those deciding each node's level.
    pub receipt_policies: Option<BTreeMap<String, Vec<String>>>,
    /// The alert to forward, by name.
    pub of: Option<String>,
    /// A node (the one to check, stop or start).
    pub node: Option<String>,
    /// An alert, by name.
    pub alert: Option<String>,
    /// The expected disclosure level.
    pub level: Option<String>,
    /// Field paths that must have a value in the delivered alert.
    pub present: Option<Vec<String>>,
    /// Field paths that must be empty in the delivered alert.
    pub absent: Option<Vec<String>>,
    /// Policy ids that must be among the deciding ones.
    pub policies: Option<Vec<String>>,
    /// An access request, by name.
    pub request: Option<String>,
    /// Lookup identifiers.
    pub document: Option<Vec<String>>,
    /// A person to look up: "FAMILY, GIVEN".
    pub person: Option<String>,
    /// The person's date of birth.
    pub dob: Option<String>,
    /// Plates to look up.
    pub plate: Option<Vec<String>>,
    /// Firearm serials to look up.
    pub firearm: Option<Vec<String>>,
    /// Stated purpose.
    pub purpose: Option<String>,
    /// Stated justification.
    pub justification: Option<String>,
    /// The reason for a decision or decline.
    pub reason: Option<String>,
    /// The alerts a lookup must show as hits, by name (exactly these).
    pub hits: Option<Vec<String>>,
    /// Grant (true) or deny.
    pub grant: Option<bool>,
    /// The level a grant must give the requester.
    pub expect_level: Option<String>,
    /// The expected access request state.
    pub state: Option<String>,
    /// A duration, e.g. `49h`.
    pub by: Option<String>,
    /// An audit operation, e.g. `disclosure`.
    pub operation: Option<String>,
    /// An audit outcome: `ok`, `refused`, `error`.
    pub outcome: Option<String>,
    /// Exactly this many records.
    pub count: Option<u64>,
    /// At least this many records.
    pub at_least: Option<u64>,
    /// The gRPC code the call must end with (default `OK`).
    pub expect_code: Option<String>,
    /// A text the error message must contain.
    pub expect_message: Option<String>,
    /// The field paths the error's `BadRequest` must name, exactly.
    pub expect_fields: Option<Vec<String>>,
}

/// One step of a scenario.
#[derive(Debug, Clone)]
pub struct Step {
    /// 1-based position.
    pub number: usize,
    /// 1-based line of the step in the file.
    pub line: usize,
    /// What it does.
    pub action: Action,
    /// Its keys.
    pub fields: StepFields,
    /// Parsed `by` of `advance_clock`.
    pub duration: Option<Duration>,
    /// Parsed `expect_code`.
    pub code: tonic::Code,
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
    pub steps: Vec<Step>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileShape {
    name: String,
    #[serde(default)]
    description: String,
    policy: Option<PathBuf>,
    access_deadline: Option<String>,
    #[serde(default, rename = "node")]
    nodes: Vec<toml::Spanned<NodeShape>>,
    #[serde(default, rename = "step")]
    steps: Vec<toml::Spanned<toml::Table>>,
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
}

fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset.min(text.len())).map(|t| t.matches('\n').count() + 1).unwrap_or(1)
}

/// The line of `key = ...` in the table that starts at `span` (up to the
/// next table header), or the table's first line.
fn key_line(text: &str, span: std::ops::Range<usize>, key: &str) -> usize {
    let start = span.start.min(text.len());
    let body = text.get(start..).unwrap_or_default();
    let mut offset = start;
    for (i, line) in body.split_inclusive('\n').enumerate() {
        let t = line.trim_start();
        if i > 0 && t.starts_with('[') {
            break;
        }
        if t.strip_prefix(key).is_some_and(|rest| rest.trim_start().starts_with('=')) {
            return line_of(text, offset);
        }
        offset += line.len();
    }
    line_of(text, start)
}

/// Parses a gRPC code name as scenarios spell it: `OK`, `PERMISSION_DENIED`, ...
pub fn parse_code(name: &str) -> Option<tonic::Code> {
    use tonic::Code::*;
    let codes = [
        ("OK", Ok),
        ("CANCELLED", Cancelled),
        ("UNKNOWN", Unknown),
        ("INVALID_ARGUMENT", InvalidArgument),
        ("DEADLINE_EXCEEDED", DeadlineExceeded),
        ("NOT_FOUND", NotFound),
        ("ALREADY_EXISTS", AlreadyExists),
        ("PERMISSION_DENIED", PermissionDenied),
        ("RESOURCE_EXHAUSTED", ResourceExhausted),
        ("FAILED_PRECONDITION", FailedPrecondition),
        ("ABORTED", Aborted),
        ("OUT_OF_RANGE", OutOfRange),
        ("UNIMPLEMENTED", Unimplemented),
        ("INTERNAL", Internal),
        ("UNAVAILABLE", Unavailable),
        ("DATA_LOSS", DataLoss),
        ("UNAUTHENTICATED", Unauthenticated),
    ];
    codes.iter().find(|(n, _)| n.eq_ignore_ascii_case(name.trim())).map(|(_, c)| *c)
}

/// The scenario spelling of a gRPC code.
pub fn code_name(code: tonic::Code) -> String {
    format!("{code:?}")
        .chars()
        .enumerate()
        .flat_map(|(i, c)| {
            let sep = (i > 0 && c.is_ascii_uppercase()).then_some('_');
            sep.into_iter().chain(std::iter::once(c.to_ascii_uppercase()))
        })
        .collect()
}

impl Scenario {
    /// Loads and checks a scenario file from disk.
    pub fn load(path: &Path) -> Result<Self, ScenarioError> {
        Self::load_from(path, &Disk)
    }

    /// Loads and checks a scenario from `source`.
    pub fn load_from(path: &Path, source: &dyn Source) -> Result<Self, ScenarioError> {
        let text = source.read(path).map_err(|e| ScenarioError::Read { path: path.to_owned(), source: e })?;
        let invalid = |line: usize, message: String| ScenarioError::Invalid { path: path.to_owned(), line, message };
        let shape: FileShape = toml::from_str(&text).map_err(|e| {
            let line = e.span().map(|s| line_of(&text, s.start)).unwrap_or(1);
            invalid(line, e.message().trim().to_owned())
        })?;
        let base = path.parent().unwrap_or(Path::new("")).to_owned();

        let mut spec = TopologySpec::default_agencies();
        spec.policy_dir = shape.policy.map(|p| base.join(p));
        if let Some(d) = &shape.access_deadline {
            spec.access.deadline = isx_gateway::config::parse_duration(d).map_err(|m| {
                invalid(key_line(&text, 0..text.len(), "access_deadline"), format!("access_deadline: {m}"))
            })?;
        }
        if !shape.nodes.is_empty() {
            spec.nodes.clear();
            for node in shape.nodes {
                let line = line_of(&text, node.span().start);
                let n = node.into_inner();
                if spec.nodes.iter().any(|s| s.id == n.id) {
                    return Err(invalid(line, format!("node {}: defined twice", n.id)));
                }
                isx_node::config::check_rules(&n.access).map_err(|e| invalid(line, format!("node {}: {e}", n.id)))?;
                let mut s = NodeSpec::new(n.id.as_str(), n.kind, &n.country, &n.name).with_access_rules(n.access);
                s.roles = n.roles;
                if let Some(mock) = n.mock {
                    s.run_mock = mock;
                }
                spec.nodes.push(s);
            }
        }
        let known = |node: &str| spec.nodes.iter().any(|n| n.id.as_str() == node);

        let mut steps = Vec::new();
        for (i, table) in shape.steps.into_iter().enumerate() {
            let number = i + 1;
            let span = table.span();
            let line = line_of(&text, span.start);
            let table = table.into_inner();
            let at = |key: &str| key_line(&text, span.clone(), key);
            let what = |message: String| format!("step {number}: {message}");
            let action_name = table
                .get("do")
                .and_then(toml::Value::as_str)
                .ok_or_else(|| invalid(line, what("`do` is required, e.g. do = \"publish\"".into())))?;
            let action: Action = toml::Value::String(action_name.to_owned()).try_into().map_err(|_| {
                invalid(
                    at("do"),
                    what(format!(
                        "do = {action_name:?} is not a step; use publish, forward, expect_delivery, lookup, request_access, decide, decline, expect_access, stop_node, start_node, restart_gateway, advance_clock or expect_audit"
                    )),
                )
            })?;
            for key in table.keys() {
                if key != "do" && key != "say" && !action.keys().contains(&key.as_str()) {
                    return Err(invalid(
                        at(key),
                        what(format!(
                            "key `{key}` does not apply to do = \"{}\" (it takes: {})",
                            action.name(),
                            action.keys().join(", ")
                        )),
                    ));
                }
            }
            for key in action.required() {
                if !table.contains_key(*key) {
                    return Err(invalid(line, what(format!("do = \"{}\" needs `{key}`", action.name()))));
                }
            }
            let mut fields_table = table.clone();
            fields_table.remove("do");
            let fields: StepFields = toml::Value::Table(fields_table)
                .try_into()
                .map_err(|e: toml::de::Error| invalid(line, what(e.message().trim().to_owned())))?;
            let check_level = |key: &str, value: &Option<String>| -> Result<(), ScenarioError> {
                match value {
                    Some(l) if !LEVELS.contains(&l.as_str()) => {
                        Err(invalid(at(key), what(format!("{key} = {l:?}: use one of {}", LEVELS.join(", ")))))
                    }
                    _ => Ok(()),
                }
            };
            check_level("level", &fields.level)?;
            check_level("expect_level", &fields.expect_level)?;
            for (node, level) in fields.receipt.iter().flatten() {
                check_level("receipt", &Some(level.clone()))?;
                if !known(node) {
                    return Err(invalid(at("receipt"), what(format!("receipt names {node:?}, which is not a node"))));
                }
            }
            for (key, node) in [("as", &fields.actor), ("node", &fields.node)] {
                if let Some(n) = node
                    && !known(n)
                {
                    return Err(invalid(at(key), what(format!("{key} = {n:?} is not a node of this scenario"))));
                }
            }
            if let Some(st) = &fields.state
                && !STATES.contains(&st.as_str())
            {
                return Err(invalid(at("state"), what(format!("state = {st:?}: use one of {}", STATES.join(", ")))));
            }
            if let Some(op) = &fields.operation
                && isx_core::wire::Operation::from_str_name(&format!("OPERATION_{}", op.to_ascii_uppercase())).is_none()
            {
                return Err(invalid(
                    at("operation"),
                    what(format!(
                        "operation = {op:?}: use collection, disclosure, denial, consultation, access_request, access_decision, follow_up_declined, erasure or log_read"
                    )),
                ));
            }
            if let Some(o) = &fields.outcome
                && !["ok", "refused", "error"].contains(&o.as_str())
            {
                return Err(invalid(at("outcome"), what(format!("outcome = {o:?}: use ok, refused or error"))));
            }
            if action == Action::Publish && fields.file.is_some() == fields.inline.is_some() {
                return Err(invalid(line, what("publish needs either `file` or `inline`, not both".into())));
            }
            if action == Action::Publish && fields.inline.is_some() && fields.name.is_none() {
                return Err(invalid(line, what("an inline alert needs a `name` for later steps".into())));
            }
            if action == Action::Lookup
                && fields.document.is_none()
                && fields.person.is_none()
                && fields.plate.is_none()
                && fields.firearm.is_none()
                && fields.expect_code.is_none()
            {
                return Err(invalid(line, what("a lookup needs document, person (with dob), plate or firearm".into())));
            }
            if fields.person.is_some() != fields.dob.is_some() {
                return Err(invalid(line, what("`person` and `dob` go together".into())));
            }
            if action == Action::ExpectAudit && fields.count.is_some() == fields.at_least.is_some() {
                return Err(invalid(line, what("expect_audit needs either `count` or `at_least`".into())));
            }
            let code = match &fields.expect_code {
                Some(c) => parse_code(c).ok_or_else(|| {
                    invalid(
                        at("expect_code"),
                        what(format!("expect_code = {c:?} is not a gRPC code name, e.g. PERMISSION_DENIED")),
                    )
                })?,
                None => tonic::Code::Ok,
            };
            let duration = match &fields.by {
                Some(b) => Some(
                    isx_gateway::config::parse_duration(b).map_err(|m| invalid(at("by"), what(format!("by: {m}"))))?,
                ),
                None => None,
            };
            if let Some(file) = &fields.file {
                let file = base.join(file);
                source.read(&file).map_err(|e| invalid(at("file"), what(format!("file {}: {e}", file.display()))))?;
            }
            steps.push(Step { number, line, action, fields, duration, code });
        }
        if steps.is_empty() {
            return Err(invalid(1, "no [[step]] entries".into()));
        }
        Ok(Self { path: path.to_owned(), name: shape.name, description: shape.description, spec, steps })
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

    #[test]
    fn errors_name_the_line_and_key() {
        let cases = [
            ("[[step]]\ndo = \"publish\"\nas = \"de-police\"\nfile = \"a.json\"\n", "ok"),
            (
                "[[step]]\ndo = \"publish\"\nas = \"de-police\"\nfile = \"a.json\"\ncolour = 1\n",
                "DIR/s.toml:7: step 1: key `colour` does not apply",
            ),
            ("[[step]]\ndo = \"dance\"\n", "DIR/s.toml:4: step 1: do = \"dance\" is not a step"),
            ("[[step]]\ndo = \"publish\"\nfile = \"a.json\"\n", "DIR/s.toml:3: step 1: do = \"publish\" needs `as`"),
            (
                "[[step]]\ndo = \"expect_delivery\"\nnode = \"frontex\"\nalert = \"x\"\nlevel = \"most\"\n",
                "DIR/s.toml:7: step 1: level = \"most\"",
            ),
            (
                "[[step]]\ndo = \"stop_node\"\nnode = \"xx-police\"\n",
                "DIR/s.toml:5: step 1: node = \"xx-police\" is not a node",
            ),
            (
                "[[step]]\ndo = \"publish\"\nas = \"de-police\"\nfile = \"missing.json\"\n",
                "DIR/s.toml:6: step 1: file DIR/missing.json",
            ),
            ("[[step]]\ndo = \"advance_clock\"\nby = \"soon\"\n", "DIR/s.toml:5: step 1: by:"),
            (
                "[[step]]\ndo = \"publish\"\nas = \"de-police\"\nfile = \"a.json\"\nexpect_code = \"NOPE\"\n",
                "DIR/s.toml:7: step 1: expect_code = \"NOPE\"",
            ),
            (
                "[[step]]\ndo = \"expect_audit\"\noperation = \"gossip\"\ncount = 1\n",
                "DIR/s.toml:5: step 1: operation = \"gossip\"",
            ),
            ("[[step]]\ndo = \"publish\"\nas = \"de-police\"\nfile = 3\n", "DIR/s.toml:3: step 1: invalid type"),
            (
                "[[node]]\nid = \"x-police\"\nkind = \"navy\"\ncountry = \"XX\"\n",
                "DIR/s.toml:5: unknown variant `navy`",
            ),
            ("", "no [[step]] entries"),
        ];
        for (body, want) in cases {
            let got = match load(&format!("{HEAD}{body}")) {
                Ok(_) => "ok".to_owned(),
                Err(e) => e,
            };
            assert!(got.contains(want), "{body}\n  got: {got}\n want: {want}");
        }
        assert!(load("nme = \"t\"\n").unwrap_err().contains("DIR/s.toml:1: unknown field `nme`"));
    }

    #[test]
    fn code_names_round_trip() {
        for name in ["OK", "PERMISSION_DENIED", "INVALID_ARGUMENT", "FAILED_PRECONDITION", "RESOURCE_EXHAUSTED"] {
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
