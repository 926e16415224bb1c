//! The disclosure matrix for the policy console: every alert against every
//! registered node, what each node would receive and which rules decided it;
//! a draft policy compared cell by cell with the current one; and the rules
//! with the cells each of them decides.
//!
//! Pure data, no web: the console loads the policy (and a draft), picks the
//! alerts and hands these values (all `Serialize`) to its templates.
//!
//! - [`Matrix`]: rows are [`MatrixAlert`]s, columns the registered nodes in
//!   the order given, each [`Cell`] what [`Disclosure::explain`] answers, as
//!   `isx policy explain` asks it (officer [`CONSOLE_OFFICER`], nothing
//!   related, a forwarded alert with `hops = 0` taken as one hop).
//! - [`Comparison`]: the cells a draft changes, with the rules that make the
//!   difference ([`ChangeKind::Level`]), and the cells whose level stays but
//!   whose withheld or year-only fields change ([`ChangeKind::Withheld`]).
//! - [`load_draft`]: a draft directory, or its `file:line` errors as lines.
//! - [`RuleTable`]: every policy and built-in rule, the cells it decides, and
//!   those that decide none ([`RuleTable::never_fires`]).
//! - [`sample_alerts`]: the shipped sample alerts (`deploy/local/alerts/`),
//!   compiled in.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use isx_core::json::{JsonError, from_json};
use isx_core::redaction::RedactionProfile;
use isx_core::wire::{Alert, Category, HandlingCode, Tlp};
use isx_core::{NodeInfo, NodeKind, display};
use serde::Serialize;

use crate::disclosure::{Disclosure, EVALUATION_ERROR, Explanation, PSEUDO_POLICIES, pseudo_reason};
use crate::engine::{PolicyEngine, PolicyError};
use crate::facts::Related;

/// The officer named in the decision context of every matrix cell.
pub const CONSOLE_OFFICER: &str = "policy-console";

/// The level shown in the origin's own cell: it publishes, nothing is decided.
pub const ORIGIN: &str = "origin";

/// Where an uploaded alert comes from ([`MatrixAlert::from_json`]).
pub const UPLOAD: &str = "upload";

/// One row of the matrix: an alert, its name and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct MatrixAlert {
    /// A short name: a file stem, a scenario step's alert name, an upload's name.
    pub name: String,
    /// Where it came from: `deploy/local/alerts/foreign-fighter.json`, or
    /// `scenario 02-labels.toml step red-broadcast`, or [`UPLOAD`].
    pub source: String,
    /// The alert.
    pub alert: Alert,
}

impl MatrixAlert {
    /// An alert with its name and source.
    pub fn new(name: impl Into<String>, source: impl Into<String>, alert: Alert) -> Self {
        Self { name: name.into(), source: source.into(), alert }
    }

    /// An uploaded alert in canonical protobuf JSON (short enum names such as
    /// `"terrorism"` accepted). The error names `name` and the field at fault.
    /// The source is [`UPLOAD`].
    pub fn from_json(name: &str, text: &str) -> Result<Self, JsonError> {
        Ok(Self::new(name, UPLOAD, from_json::<Alert>(text, name)?))
    }
}

/// The shipped sample alerts, compiled in: repository path and JSON text.
pub const SAMPLE_ALERTS: [(&str, &str); 3] = [
    ("deploy/local/alerts/foreign-fighter.json", include_str!("../../../deploy/local/alerts/foreign-fighter.json")),
    ("deploy/local/alerts/smuggling-network.json", include_str!("../../../deploy/local/alerts/smuggling-network.json")),
    (
        "deploy/local/alerts/trafficking-victim.json",
        include_str!("../../../deploy/local/alerts/trafficking-victim.json"),
    ),
];

/// The shipped sample alerts ([`SAMPLE_ALERTS`]), each named by its file stem
/// with its repository path as the source.
pub fn sample_alerts() -> Vec<MatrixAlert> {
    SAMPLE_ALERTS
        .iter()
        .map(|(path, text)| {
            let name = Path::new(path).file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            let alert = from_json::<Alert>(text, path).expect("the compiled-in sample alerts parse (tested)");
            MatrixAlert::new(name, *path, alert)
        })
        .collect()
}

/// A deciding rule and its reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicyRef {
    /// The policy `@id`, or a built-in rule (`routing-not-addressed`, ...).
    pub id: String,
    /// Its `@reason`, or the built-in rule's sentence.
    pub reason: String,
}

/// A column: one registered node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Column {
    /// The node id.
    pub id: String,
    /// Its kind (`national`, `europol`, `frontex`, `auditor`).
    pub kind: NodeKind,
    /// Its country (`EU` for Union agencies).
    pub country: String,
    /// Its display name.
    pub name: String,
}

/// What one node would receive for one alert, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Cell {
    /// `full`, `redacted`, `hit_only`, `denied`, or [`ORIGIN`] for the alert's origin.
    pub level: String,
    /// The column is the alert's origin: nothing is decided, nothing listed.
    pub origin: bool,
    /// The deciding rules, in the order the decision gives them.
    pub policies: Vec<PolicyRef>,
    /// Fields the node does not see (removed, not kept as the year only).
    pub withheld: Vec<String>,
    /// Fields the node sees reduced to the year: `subjects[0].date_of_birth`.
    pub year_only: Vec<String>,
    /// Whether a lookup by this node that matches the alert shows it a hit.
    pub lookup_hit: bool,
    /// The rules that decided the lookup.
    pub lookup_policies: Vec<PolicyRef>,
}

impl Cell {
    /// The origin's own cell.
    fn origin() -> Self {
        Self {
            level: ORIGIN.to_owned(),
            origin: true,
            policies: vec![],
            withheld: vec![],
            year_only: vec![],
            lookup_hit: false,
            lookup_policies: vec![],
        }
    }

    fn of(e: Explanation, disclosure: &Disclosure) -> Self {
        let withheld = e.removed_fields.iter().filter(|f| !e.year_only.contains(f)).cloned().collect();
        let policies = e.policies.into_iter().zip(e.reasons).map(|(id, reason)| PolicyRef { id, reason }).collect();
        let lookup_policies = e
            .lookup_policies
            .into_iter()
            .map(|id| PolicyRef { reason: disclosure.reason(&id).unwrap_or("(no reason given)").to_owned(), id })
            .collect();
        Self {
            level: e.level,
            origin: false,
            policies,
            withheld,
            year_only: e.year_only,
            lookup_hit: e.lookup_hit,
            lookup_policies,
        }
    }

    /// Whether `id` is among the deciding rules.
    pub fn decided_by(&self, id: &str) -> bool {
        self.policies.iter().any(|p| p.id == id)
    }
}

/// A row: one alert, with what each column's node would receive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Row {
    /// [`MatrixAlert::name`].
    pub name: String,
    /// [`MatrixAlert::source`].
    pub source: String,
    /// The alert id.
    pub alert_id: String,
    /// The publishing node.
    pub origin: String,
    /// The crime area, e.g. `migrant_smuggling`.
    pub category: String,
    /// `TLP:AMBER+STRICT` style.
    pub tlp: String,
    /// `H2` style.
    pub handling: String,
    /// The named addressees (empty: a broadcast).
    pub addressees: Vec<String>,
    /// A relayed copy (`forwarded_from` set).
    pub forwarded: bool,
    /// One cell per column, in column order.
    pub cells: Vec<Cell>,
}

/// Every alert against every registered node, decided by one policy directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Matrix {
    /// The policy directory that decided.
    pub policy_dir: String,
    /// Its policy-set version ([`PolicyEngine::version`]).
    pub policy_version: String,
    /// The registered nodes, in the order given.
    pub columns: Vec<Column>,
    /// The alerts, in the order given.
    pub rows: Vec<Row>,
}

impl Matrix {
    /// Decides every alert for every node with [`Disclosure::explain`], as
    /// `isx policy explain` does: officer [`CONSOLE_OFFICER`],
    /// [`Related::default`], and a forwarded alert (`forwarded_from` set)
    /// with `hops = 0` taken as one hop. The origin's column holds an
    /// [`ORIGIN`] cell.
    pub fn build(disclosure: &Disclosure, nodes: &[NodeInfo], alerts: &[MatrixAlert]) -> Self {
        let engine = disclosure.engine();
        let columns = nodes
            .iter()
            .map(|n| Column { id: n.id.to_string(), kind: n.kind, country: n.country.clone(), name: n.name.clone() })
            .collect();
        let rows = alerts
            .iter()
            .map(|a| {
                let mut alert = a.alert.clone();
                if !alert.forwarded_from.is_empty() && alert.hops == 0 {
                    alert.hops = 1;
                }
                let mut lines: HashMap<String, Explanation> = disclosure
                    .explain(&alert, nodes, None, CONSOLE_OFFICER, &Related::default())
                    .into_iter()
                    .map(|e| (e.recipient.clone(), e))
                    .collect();
                // `explain` answers for every node but the origin.
                let cells = nodes
                    .iter()
                    .map(|n| match lines.remove(n.id.as_str()) {
                        Some(e) => Cell::of(e, disclosure),
                        None => Cell::origin(),
                    })
                    .collect();
                let labels = alert.labels.clone().unwrap_or_default();
                Row {
                    name: a.name.clone(),
                    source: a.source.clone(),
                    category: Category::try_from(alert.category).map(display::category).unwrap_or_default(),
                    tlp: display::tlp(Tlp::try_from(labels.tlp).unwrap_or(Tlp::Unspecified)).to_owned(),
                    handling: display::handling(
                        HandlingCode::try_from(labels.handling_code).unwrap_or(HandlingCode::Unspecified),
                    )
                    .to_owned(),
                    forwarded: !alert.forwarded_from.is_empty(),
                    alert_id: alert.alert_id,
                    origin: alert.origin,
                    addressees: alert.addressees,
                    cells,
                }
            })
            .collect();
        Self {
            policy_dir: engine.dir().display().to_string(),
            policy_version: engine.version().to_owned(),
            columns,
            rows,
        }
    }

    /// The cell of row `row` (an index into [`Matrix::rows`]) and column `col`.
    pub fn cell(&self, row: usize, col: usize) -> Option<&Cell> {
        self.rows.get(row).and_then(|r| r.cells.get(col))
    }

    /// The index of the column of node `id`.
    pub fn column(&self, id: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.id == id)
    }

    /// The index of the first row named `name`.
    pub fn row(&self, name: &str) -> Option<usize> {
        self.rows.iter().position(|r| r.name == name)
    }
}

/// What a draft changes in a cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// The level changes.
    Level,
    /// The level stays, but the fields withheld or kept as the year only change.
    Withheld,
}

/// One cell that a draft decides differently.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    /// The row index (in both matrices).
    pub row: usize,
    /// The column index of the current matrix.
    pub col: usize,
    /// The row's alert name.
    pub alert: String,
    /// The column's node id.
    pub node: String,
    /// A level change, or only the withheld fields.
    pub kind: ChangeKind,
    /// The level now.
    pub old_level: String,
    /// The level under the draft.
    pub new_level: String,
    /// The deciding rules now.
    pub old_policies: Vec<PolicyRef>,
    /// The deciding rules under the draft.
    pub new_policies: Vec<PolicyRef>,
    /// The rules that make the difference on the draft's side: deciding under
    /// the draft, not now (with the draft's reasons).
    pub only_new: Vec<PolicyRef>,
    /// The rules that make the difference on the current side: deciding now,
    /// not under the draft (with the current reasons).
    pub only_old: Vec<PolicyRef>,
    /// The fields withheld now.
    pub old_withheld: Vec<String>,
    /// The fields withheld under the draft.
    pub new_withheld: Vec<String>,
    /// The fields kept as the year only now.
    pub old_year_only: Vec<String>,
    /// The fields kept as the year only under the draft.
    pub new_year_only: Vec<String>,
}

/// The cells a draft policy decides differently from the current one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Comparison {
    /// The current policy directory.
    pub current_dir: String,
    /// Its version.
    pub current_version: String,
    /// The draft directory.
    pub draft_dir: String,
    /// Its version.
    pub draft_version: String,
    /// Every changed cell, by row then column.
    pub changes: Vec<Change>,
}

impl Comparison {
    /// Compares two matrices built from the same alerts and nodes (rows are
    /// matched by position, columns by node id; a row whose name or source
    /// differs, and a node missing from either, is not compared). A cell
    /// changes when its level does ([`ChangeKind::Level`]), or, with the same
    /// level, when its withheld or year-only fields do ([`ChangeKind::Withheld`]).
    /// A change of deciding rules alone, with the same outcome, is no change.
    pub fn build(current: &Matrix, draft: &Matrix) -> Self {
        let mut changes = Vec::new();
        for (r, (old_row, new_row)) in current.rows.iter().zip(&draft.rows).enumerate() {
            if old_row.name != new_row.name || old_row.source != new_row.source {
                continue;
            }
            for (c, column) in current.columns.iter().enumerate() {
                let (Some(old), Some(new)) =
                    (old_row.cells.get(c), draft.column(&column.id).and_then(|d| new_row.cells.get(d)))
                else {
                    continue;
                };
                let kind = if old.level != new.level {
                    ChangeKind::Level
                } else if old.withheld != new.withheld || old.year_only != new.year_only {
                    ChangeKind::Withheld
                } else {
                    continue;
                };
                let only = |a: &Cell, b: &Cell| a.policies.iter().filter(|p| !b.decided_by(&p.id)).cloned().collect();
                changes.push(Change {
                    row: r,
                    col: c,
                    alert: old_row.name.clone(),
                    node: column.id.clone(),
                    kind,
                    old_level: old.level.clone(),
                    new_level: new.level.clone(),
                    old_policies: old.policies.clone(),
                    new_policies: new.policies.clone(),
                    only_new: only(new, old),
                    only_old: only(old, new),
                    old_withheld: old.withheld.clone(),
                    new_withheld: new.withheld.clone(),
                    old_year_only: old.year_only.clone(),
                    new_year_only: new.year_only.clone(),
                });
            }
        }
        Self {
            current_dir: current.policy_dir.clone(),
            current_version: current.policy_version.clone(),
            draft_dir: draft.policy_dir.clone(),
            draft_version: draft.policy_version.clone(),
            changes,
        }
    }

    /// The change of row `row`, column `col` (indices of the current matrix), if any.
    pub fn changed(&self, row: usize, col: usize) -> Option<&Change> {
        self.changes.iter().find(|c| c.row == row && c.col == col)
    }

    /// The changes of one kind.
    pub fn of_kind(&self, kind: ChangeKind) -> impl Iterator<Item = &Change> {
        self.changes.iter().filter(move |c| c.kind == kind)
    }
}

/// A draft policy directory that does not load.
#[derive(Debug, thiserror::Error)]
#[error("{error}")]
pub struct DraftError {
    /// The engine's error.
    pub error: PolicyError,
    /// Its text as lines a page can list, each `file:line: message` where the
    /// engine knows the place ([`error_lines`]).
    pub lines: Vec<String>,
}

/// Loads a draft policy directory with the redaction profile in force; on
/// failure, the `file:line` error as lines ([`error_lines`]).
pub fn load_draft(dir: &Path, profile: RedactionProfile) -> Result<Disclosure, DraftError> {
    match PolicyEngine::load(dir) {
        Ok(engine) => Ok(Disclosure::new(Arc::new(engine), profile)),
        Err(error) => Err(DraftError { lines: error_lines(&error, dir), error }),
    }
}

/// The text of a load error as non-empty lines, with paths inside `dir`
/// written relative to it: `agencies.cedar:12: policy x does not validate
/// against the schema: ...`. The engine reports the first problem it finds;
/// Cedar's message may run over several lines.
pub fn error_lines(error: &PolicyError, dir: &Path) -> Vec<String> {
    let prefix = format!("{}/", dir.display());
    error
        .to_string()
        .replace(&prefix, "")
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect()
}

/// A cell of the matrix, by index and by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CellRef {
    /// The row index.
    pub row: usize,
    /// The column index.
    pub col: usize,
    /// The row's alert name.
    pub alert: String,
    /// The column's node id.
    pub node: String,
}

/// One rule and the matrix cells it decides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleUse {
    /// The policy `@id`, or the built-in rule.
    pub id: String,
    /// `permit` or `forbid`; `deny` for a built-in rule.
    pub effect: String,
    /// Its `@reason`, or the built-in rule's sentence.
    pub reason: String,
    /// The file, relative to the policy directory; `None` for a built-in rule.
    pub file: Option<String>,
    /// The 1-based line where the policy starts; `None` for a built-in rule.
    pub line: Option<usize>,
    /// Built into isx ([`PSEUDO_POLICIES`]), not a policy of the directory.
    pub built_in: bool,
    /// The cells whose level it decides (it is among their deciding rules).
    pub cells: Vec<CellRef>,
    /// The cells whose lookup answer it decides.
    pub lookups: Vec<CellRef>,
}

impl RuleUse {
    /// Decides neither a level nor a lookup anywhere in the matrix.
    pub fn fires(&self) -> bool {
        !self.cells.is_empty() || !self.lookups.is_empty()
    }
}

/// Every rule that can decide, with the cells of one matrix it decides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleTable {
    /// The policy directory.
    pub policy_dir: String,
    /// Its version.
    pub policy_version: String,
    /// The engine's policies in file order, then the built-in rules in
    /// [`PSEUDO_POLICIES`] order.
    pub rules: Vec<RuleUse>,
}

impl RuleTable {
    /// The rules of `engine` (the one `matrix` was built with) and the cells
    /// of `matrix` each decides.
    pub fn build(engine: &PolicyEngine, matrix: &Matrix) -> Self {
        let mut policies: Vec<_> = engine.policies().collect();
        policies.sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
        let uses = |id: &str, lookup: bool| -> Vec<CellRef> {
            let mut found = Vec::new();
            for (r, row) in matrix.rows.iter().enumerate() {
                for (c, cell) in row.cells.iter().enumerate() {
                    let list = if lookup { &cell.lookup_policies } else { &cell.policies };
                    if list.iter().any(|p| p.id == id) {
                        let node = matrix.columns.get(c).map(|col| col.id.clone()).unwrap_or_default();
                        found.push(CellRef { row: r, col: c, alert: row.name.clone(), node });
                    }
                }
            }
            found
        };
        let mut rules: Vec<RuleUse> = policies
            .into_iter()
            .map(|p| RuleUse {
                id: p.id.clone(),
                effect: p.effect.to_string(),
                reason: p.reason.clone(),
                file: Some(p.file.strip_prefix(engine.dir()).unwrap_or(&p.file).display().to_string()),
                line: Some(p.line),
                built_in: false,
                cells: uses(&p.id, false),
                lookups: uses(&p.id, true),
            })
            .collect();
        rules.extend(PSEUDO_POLICIES.iter().map(|id| RuleUse {
            id: (*id).to_owned(),
            effect: "deny".to_owned(),
            reason: pseudo_reason(id).unwrap_or_default().to_owned(),
            file: None,
            line: None,
            built_in: true,
            cells: uses(id, false),
            lookups: uses(id, true),
        }));
        Self { policy_dir: engine.dir().display().to_string(), policy_version: engine.version().to_owned(), rules }
    }

    /// The rules that decide no cell's level and no lookup. `evaluation-error`
    /// is left out: it marks a policy set that failed, not a rule that should fire.
    pub fn never_fires(&self) -> impl Iterator<Item = &RuleUse> {
        self.rules.iter().filter(|r| !r.fires() && r.id != EVALUATION_ERROR)
    }

    /// The rule `id`.
    pub fn rule(&self, id: &str) -> Option<&RuleUse> {
        self.rules.iter().find(|r| r.id == id)
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use isx_core::NodeId;

    use super::*;
    use crate::disclosure::{DEFAULT_DENY, NOT_ADDRESSED};

    fn shipped() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/local")
    }

    /// The `[redaction]` profile of deploy/local/gateway.toml.
    fn profile() -> RedactionProfile {
        let text = std::fs::read_to_string(shipped().join("gateway.toml")).unwrap();
        let config: toml::Table = toml::from_str(&text).unwrap();
        config["redaction"].clone().try_into().unwrap()
    }

    /// The nodes of deploy/local/gateway.toml, by hand (isx-policy cannot read
    /// a gateway config), checked against the file.
    fn nodes() -> Vec<NodeInfo> {
        let nodes: Vec<NodeInfo> = [
            ("de-police", NodeKind::National, "DE", "Bundeskriminalamt (DE)"),
            ("fr-police", NodeKind::National, "FR", "Police nationale (FR)"),
            ("it-police", NodeKind::National, "IT", "Polizia di Stato (IT)"),
            ("europol", NodeKind::Europol, "EU", "Europol"),
            ("frontex", NodeKind::Frontex, "EU", "Frontex"),
            ("auditor", NodeKind::Auditor, "EU", "Fundamental Rights auditor"),
            ("ops", NodeKind::Auditor, "EU", "Gateway operations"),
        ]
        .into_iter()
        .map(|(id, kind, country, name)| NodeInfo {
            id: NodeId::new(id).unwrap(),
            kind,
            country: country.into(),
            // The operations node holds the admin role alone.
            roles: if id == "ops" { vec![isx_core::Role::Admin] } else { kind.default_roles() },
            name: name.into(),
        })
        .collect();
        let text = std::fs::read_to_string(shipped().join("gateway.toml")).unwrap();
        let config: toml::Table = toml::from_str(&text).unwrap();
        let file = config["nodes"].as_table().unwrap();
        assert_eq!(file.len(), nodes.len(), "the nodes of gateway.toml");
        for n in &nodes {
            let entry = &file[n.id.as_str()];
            assert_eq!(entry["kind"].as_str(), Some(n.kind.as_str()), "{}", n.id);
            assert_eq!(entry["country"].as_str(), Some(n.country.as_str()), "{}", n.id);
            let roles: Option<Vec<&str>> =
                entry.get("roles").map(|r| r.as_array().unwrap().iter().map(|r| r.as_str().unwrap()).collect());
            let want = (n.roles != n.kind.default_roles()).then(|| n.roles.iter().map(|r| r.as_str()).collect());
            assert_eq!(roles, want, "{}: roles", n.id);
        }
        nodes
    }

    fn current() -> Disclosure {
        load_draft(&shipped().join("policy"), profile()).unwrap()
    }

    /// A copy of the shipped policy directory with `edit` applied to `file`.
    fn draft(file: &str, edit: impl Fn(&str) -> String) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for entry in std::fs::read_dir(shipped().join("policy")).unwrap() {
            let path = entry.unwrap().path();
            std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
        }
        let path = dir.path().join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        let edited = edit(&text);
        assert_ne!(edited, text, "the edit changes {file}");
        std::fs::write(&path, edited).unwrap();
        dir
    }

    fn ids(policies: &[PolicyRef]) -> Vec<&str> {
        policies.iter().map(|p| p.id.as_str()).collect()
    }

    /// The cell of alert `row` for node `col`.
    fn at<'m>(m: &'m Matrix, row: &str, col: &str) -> &'m Cell {
        m.cell(m.row(row).unwrap(), m.column(col).unwrap()).unwrap()
    }

    #[test]
    fn the_matrix_shows_the_documented_cells() {
        let d = current();
        let m = Matrix::build(&d, &nodes(), &sample_alerts());
        assert_eq!(m.policy_version, d.engine().version());
        assert!(m.policy_dir.ends_with("deploy/local/policy"), "{}", m.policy_dir);
        let columns: Vec<&str> = m.columns.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(columns, ["de-police", "fr-police", "it-police", "europol", "frontex", "auditor", "ops"]);
        let rows: Vec<(&str, &str)> = m.rows.iter().map(|r| (r.name.as_str(), r.source.as_str())).collect();
        assert_eq!(
            rows,
            [
                ("foreign-fighter", "deploy/local/alerts/foreign-fighter.json"),
                ("smuggling-network", "deploy/local/alerts/smuggling-network.json"),
                ("trafficking-victim", "deploy/local/alerts/trafficking-victim.json"),
            ]
        );
        assert!(m.rows.iter().all(|r| r.cells.len() == m.columns.len()));

        // tests.toml: "Frontex gets migrant smuggling redacted".
        let frontex = at(&m, "smuggling-network", "frontex");
        assert_eq!(frontex.level, "redacted");
        assert!(!frontex.origin);
        assert_eq!(ids(&frontex.policies), ["frontex-depersonalised", "frontex-border-crime"]);
        assert_eq!(frontex.policies[1].reason, d.engine().reason("frontex-border-crime").unwrap());
        assert_eq!(
            frontex.withheld,
            ["subjects[0].family_name", "subjects[0].given_names", "subjects[0].documents[0].number", "narrative"]
        );
        assert_eq!(frontex.year_only, ["subjects[0].date_of_birth"]);
        assert!(frontex.lookup_hit);

        // "special categories: a broadcast recipient gets at most redacted".
        let fr = at(&m, "foreign-fighter", "fr-police");
        assert_eq!(fr.level, "redacted");
        assert!(fr.decided_by("special-categories-addressees-only"), "{fr:?}");
        assert!(fr.withheld.contains(&"subjects[0].special_categories[0]".to_owned()), "{fr:?}");

        // "MISP#1720: an organisation outside the addressees gets nothing".
        let outside = at(&m, "trafficking-victim", "frontex");
        assert_eq!((outside.level.as_str(), ids(&outside.policies)), ("denied", vec![NOT_ADDRESSED]));
        assert_eq!(outside.policies[0].reason, pseudo_reason(NOT_ADDRESSED).unwrap());

        // "TLP:AMBER+STRICT reaches a named addressee".
        let de = at(&m, "trafficking-victim", "de-police");
        assert_eq!(de.level, "full");
        assert!(de.decided_by("named-addressee"), "{de:?}");
        assert!(de.withheld.is_empty() && de.year_only.is_empty());

        // The origin decides nothing.
        let it = at(&m, "smuggling-network", "it-police");
        assert_eq!((it.level.as_str(), it.origin, it.policies.len()), (ORIGIN, true, 0));
        let origins: Vec<usize> = m.rows.iter().map(|r| r.cells.iter().filter(|c| c.origin).count()).collect();
        assert_eq!(origins, [1, 1, 1]);

        let smuggling = &m.rows[m.row("smuggling-network").unwrap()];
        assert_eq!(
            (smuggling.category.as_str(), smuggling.tlp.as_str(), smuggling.handling.as_str()),
            ("migrant_smuggling", "TLP:AMBER", "H2")
        );
        assert_eq!(smuggling.addressees, ["fr-police", "europol", "frontex"]);
        let json = serde_json::to_value(&m).unwrap();
        assert_eq!(json["rows"][1]["cells"][4]["policies"][1]["id"], "frontex-border-crime");
        assert_eq!(json["columns"][4]["kind"], "frontex");
    }

    #[test]
    fn a_forwarded_alert_is_decided_as_one_hop_as_the_cli_does() {
        let mut alert = sample_alerts().remove(1).alert;
        alert.origin = "fr-police".into();
        alert.forwarded_from = "01JDQ3B2C4D6E8F0G2H4J6K8M1".into();
        alert.addressees = vec!["de-police".into()];
        let relay = MatrixAlert::new("relay", "test", alert.clone());
        let m = Matrix::build(&current(), &nodes(), std::slice::from_ref(&relay));
        assert!(m.rows[0].forwarded);
        let de = at(&m, "relay", "de-police");
        // tests.toml: "a forwarded H2 alert reaches no new recipient".
        assert_eq!((de.level.as_str(), ids(&de.policies)), ("denied", vec!["no-onward-relay"]));

        // A policy that reads resource.hops sees one hop, not zero.
        let dir = draft("lookup.cedar", |text| {
            format!(
                "{text}\n@id(\"one-hop\")\n@reason(\"r\")\nforbid (principal, action in Action::\"disclose\", resource)\nwhen {{ resource.hops == 1 }};\n"
            )
        });
        alert.labels.as_mut().unwrap().handling_code = HandlingCode::H0 as i32;
        let m = Matrix::build(
            &load_draft(dir.path(), profile()).unwrap(),
            &nodes(),
            &[MatrixAlert::new("relay", "test", alert)],
        );
        let de = at(&m, "relay", "de-police");
        assert_eq!((de.level.as_str(), ids(&de.policies)), ("denied", vec!["one-hop"]));
    }

    #[test]
    fn a_draft_giving_frontex_one_category_in_full_changes_exactly_that_cell() {
        // One rule changed: Frontex's blanket ban on full views becomes a
        // permit of full views on migrant smuggling.
        let start = "@id(\"frontex-depersonalised\")";
        let dir = draft("agencies.cedar", |text| {
            let from = text.find(start).unwrap();
            let to = from + text[from..].find("};").unwrap() + 2;
            let rule = concat!(
                "@id(\"frontex-full-smuggling\")\n",
                "@reason(\"Frontex receives migrant smuggling in full.\")\n",
                "permit (principal, action == Action::\"disclose_full\", resource)\n",
                "when { principal.kind == NodeKind::\"frontex\" && resource.category == Category::\"migrant_smuggling\" };",
            );
            format!("{}{rule}{}", &text[..from], &text[to..])
        });
        let nodes = nodes();
        let now = Matrix::build(&current(), &nodes, &sample_alerts());
        let draft = load_draft(dir.path(), profile()).unwrap();
        let then = Matrix::build(&draft, &nodes, &sample_alerts());
        assert_ne!(now.policy_version, then.policy_version);
        let c = Comparison::build(&now, &then);
        assert_eq!(
            (c.current_version.as_str(), c.draft_version.as_str()),
            (now.policy_version.as_str(), then.policy_version.as_str())
        );
        let changed: Vec<(&str, &str, ChangeKind)> =
            c.changes.iter().map(|ch| (ch.alert.as_str(), ch.node.as_str(), ch.kind)).collect();
        assert_eq!(changed, [("smuggling-network", "frontex", ChangeKind::Level)]);
        let (row, col) = (now.row("smuggling-network").unwrap(), now.column("frontex").unwrap());
        let change = c.changed(row, col).unwrap();
        assert_eq!((change.old_level.as_str(), change.new_level.as_str()), ("redacted", "full"));
        assert_eq!(ids(&change.only_new), ["frontex-full-smuggling"]);
        assert_eq!(change.only_new[0].reason, "Frontex receives migrant smuggling in full.");
        assert_eq!(ids(&change.only_old), ["frontex-depersonalised", "frontex-border-crime"]);
        assert_eq!(ids(&change.old_policies), ["frontex-depersonalised", "frontex-border-crime"]);
        assert_eq!(ids(&change.new_policies), ["frontex-full-smuggling"]);
        assert!(change.new_withheld.is_empty() && !change.old_withheld.is_empty());
        // Frontex's other cells keep their level (foreign-fighter stays redacted by special categories).
        assert_eq!(at(&then, "foreign-fighter", "frontex").level, "redacted");
        assert!(c.changed(row, now.column("fr-police").unwrap()).is_none());
        assert!(c.changed(now.row("foreign-fighter").unwrap(), col).is_none());
        assert_eq!(c.of_kind(ChangeKind::Withheld).count(), 0);
        assert_eq!(serde_json::to_value(&c).unwrap()["changes"][0]["kind"], "level");
        // The current policy against itself changes nothing.
        assert!(Comparison::build(&now, &now).changes.is_empty());
    }

    #[test]
    fn a_profile_that_keeps_the_narrative_changes_only_withheld_fields() {
        let mut keeps = profile();
        keeps.remove.retain(|f| f.name() != "narrative");
        assert_eq!(keeps.remove.len() + 1, profile().remove.len());
        let nodes = nodes();
        let now = Matrix::build(&current(), &nodes, &sample_alerts());
        let draft = load_draft(&shipped().join("policy"), keeps).unwrap();
        let c = Comparison::build(&now, &Matrix::build(&draft, &nodes, &sample_alerts()));
        let redacted = now.rows.iter().flat_map(|r| &r.cells).filter(|c| c.level == "redacted").count();
        assert!(redacted >= 3, "{redacted}");
        assert_eq!(c.changes.len(), redacted);
        assert_eq!(c.of_kind(ChangeKind::Withheld).count(), redacted);
        let change = c.changed(now.row("smuggling-network").unwrap(), now.column("frontex").unwrap()).unwrap();
        assert_eq!(change.kind, ChangeKind::Withheld);
        assert!(change.old_withheld.contains(&"narrative".to_owned()));
        assert!(!change.new_withheld.contains(&"narrative".to_owned()));
        assert!(change.only_new.is_empty() && change.only_old.is_empty());
    }

    #[test]
    fn an_invalid_draft_gives_its_errors_with_file_and_line() {
        let dir = draft("agencies.cedar", |text| text.replacen("NodeKind::\"frontex\"", "NodeKind::\"frontexx\"", 1));
        let text = std::fs::read_to_string(dir.path().join("agencies.cedar")).unwrap();
        let line = text.lines().position(|l| l.contains("frontexx")).unwrap() + 1;
        let err = load_draft(dir.path(), profile()).unwrap_err();
        assert!(!err.lines.is_empty());
        let want = format!("agencies.cedar:{line}: policy frontex-border-crime does not validate against the schema");
        assert!(err.lines[0].starts_with(&want), "{:?}\nwant {want}", err.lines);
        assert!(err.lines.iter().any(|l| l.contains("frontexx")), "{:?}", err.lines);
        assert!(err.to_string().contains(&dir.path().display().to_string()), "{err}");

        // Two policies with one @id: the second names the first's place.
        let dup = draft("lookup.cedar", |text| text.replace("lookup-hit-flag", "national-police-full"));
        let err = load_draft(dup.path(), profile()).unwrap_err();
        assert_eq!(err.lines.len(), 1, "{:?}", err.lines);
        assert!(err.lines[0].starts_with("lookup.cedar:"), "{:?}", err.lines);
        assert!(err.lines[0].contains("is already used at agencies.cedar:"), "{:?}", err.lines);
    }

    #[test]
    fn the_rule_table_lists_the_cells_each_rule_decides_and_flags_those_that_decide_none() {
        let d = current();
        let m = Matrix::build(&d, &nodes(), &sample_alerts());
        let t = RuleTable::build(d.engine(), &m);
        assert_eq!(t.rules.len(), d.engine().policies().count() + PSEUDO_POLICIES.len());
        let border = t.rule("frontex-border-crime").unwrap();
        assert_eq!(
            (border.effect.as_str(), border.file.as_deref(), border.built_in),
            ("permit", Some("agencies.cedar"), false)
        );
        let text = std::fs::read_to_string(shipped().join("policy/agencies.cedar")).unwrap();
        let line = text.lines().position(|l| l.contains("@id(\"frontex-border-crime\")")).unwrap() + 1;
        assert_eq!(border.line, Some(line));
        let cells: Vec<(&str, &str)> = border.cells.iter().map(|c| (c.alert.as_str(), c.node.as_str())).collect();
        assert_eq!(cells, [("foreign-fighter", "frontex"), ("smuggling-network", "frontex")]);
        assert_eq!((border.cells[1].row, border.cells[1].col), (1, 4));

        let never: Vec<&str> = t.never_fires().map(|r| r.id.as_str()).collect();
        // Nothing in the samples is related to another alert, nor relayed.
        for id in ["restricted-reaches-no-one-new", "amber-stays-with-its-recipients", "no-onward-relay"] {
            assert!(never.contains(&id), "{id} not in {never:?}");
        }
        for id in ["frontex-border-crime", "national-police-full", "auditor-never-receives", NOT_ADDRESSED] {
            assert!(!never.contains(&id), "{id} in {never:?}");
        }
        // A lookup-only rule fires on lookups; evaluation-error is never flagged.
        let hit = t.rule("lookup-hit-flag").unwrap();
        assert!(hit.cells.is_empty() && !hit.lookups.is_empty() && !never.contains(&"lookup-hit-flag"));
        assert!(t.rule(EVALUATION_ERROR).unwrap().built_in && !never.contains(&EVALUATION_ERROR));
        let deny = t.rule(DEFAULT_DENY).unwrap();
        assert_eq!((deny.effect.as_str(), deny.file.as_ref()), ("deny", None));
        assert_eq!(serde_json::to_value(&t).unwrap()["rules"][0]["file"], t.rules[0].file.clone().unwrap());
    }

    #[test]
    fn uploaded_json_is_parsed_or_the_problem_named() {
        let (_, text) = SAMPLE_ALERTS[0];
        let a = MatrixAlert::from_json("mine.json", text).unwrap();
        assert_eq!((a.name.as_str(), a.source.as_str(), a.alert.origin.as_str()), ("mine.json", UPLOAD, "de-police"));
        let short = text.replace("CATEGORY_TERRORISM", "terrorism");
        assert_eq!(MatrixAlert::from_json("short.json", &short).unwrap().alert.category, Category::Terrorism as i32);
        let bad = MatrixAlert::from_json("bad.json", &text.replace("CATEGORY_TERRORISM", "CATEGORY_PIRACY"))
            .unwrap_err()
            .to_string();
        assert!(bad.contains("bad.json") && bad.contains("category"), "{bad}");
        let broken = MatrixAlert::from_json("broken.json", "{\"origin\": 3}").unwrap_err().to_string();
        // Where the text does not match, the message gives line and column.
        assert!(broken.contains("broken.json") && broken.contains("line 1 column"), "{broken}");
    }

    #[test]
    fn the_compiled_in_samples_are_the_alert_directory() {
        let mut on_disk: Vec<String> = std::fs::read_dir(shipped().join("alerts"))
            .unwrap()
            .map(|e| format!("deploy/local/alerts/{}", e.unwrap().file_name().to_string_lossy()))
            .filter(|n| n.ends_with(".json"))
            .collect();
        on_disk.sort();
        let compiled: Vec<String> = SAMPLE_ALERTS.iter().map(|(p, _)| (*p).to_owned()).collect();
        assert_eq!(on_disk, compiled, "add new sample alerts to SAMPLE_ALERTS");
        for (path, text) in SAMPLE_ALERTS {
            assert_eq!(std::fs::read_to_string(shipped().join("..").join("..").join(path)).unwrap(), text);
        }
        assert_eq!(sample_alerts().len(), SAMPLE_ALERTS.len());
    }
}
