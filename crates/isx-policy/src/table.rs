//! Policy test tables: `isx policy test FILE`.
//!
//! A table is a TOML file of `[[case]]`s. Each case takes an alert (a JSON
//! file, or an inline TOML table in the same shape), optionally deep-merges a
//! `patch` over it (so one file serves many cases), names a recipient and the
//! expected level, and may also name the fields that must be withheld and the
//! policies that must be among the deciding ones. `ask` chooses the question:
//! `disclose` (the default: what the node receives when the alert is
//! published), `after_grant` (what it receives if it asks after a hit and the
//! holder grants; `expect` is a level) or `lookup` (whether a matching lookup
//! shows it a hit; `expect` is `hit` or `no_hit`):
//!
//! ```toml
//! gateway = "../gateway.toml"      # nodes and redaction profile (the CLI reads it)
//!
//! [[case]]
//! name = "TLP:RED with no addressees reaches no one"
//! alert = "../alerts/foreign-fighter.json"
//! patch = { labels = { tlp = "TLP_RED" }, addressees = [] }
//! to = "fr-police"
//! expect = "denied"
//! policies = ["tlp-red-addressees-only"]
//!
//! [[case]]
//! name = "a non-addressee still sees a hit on TLP:AMBER+STRICT"
//! alert = "../alerts/trafficking-victim.json"
//! ask = "lookup"
//! to = "it-police"
//! expect = "hit"
//! ```

use std::path::{Path, PathBuf};

use isx_core::NodeInfo;
use isx_core::json::from_json;
use isx_core::wire::Alert;
use serde::{Deserialize, Serialize};

use crate::PolicyEngine;
use crate::disclosure::{DEFAULT_DENY, Disclosure, NO_SUBSCRIBE_ROLE, NOT_ADDRESSED};
use crate::facts::Related;

/// Why a table could not be read.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The TOML does not parse or has unknown keys; the message names line and key.
    #[error("{path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The error.
        source: toml::de::Error,
    },
    /// A case is malformed.
    #[error("{path}: case {index} ({name:?}): {message}")]
    Case {
        /// The file.
        path: PathBuf,
        /// 1-based case number.
        index: usize,
        /// Its name.
        name: String,
        /// What is wrong.
        message: String,
    },
}

/// A whole table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestTable {
    /// The gateway config that supplies nodes and the redaction profile, relative to the table.
    pub gateway: Option<PathBuf>,
    /// The policy directory under test; defaults to the table's own directory.
    pub policy_dir: Option<PathBuf>,
    /// The cases.
    #[serde(rename = "case", default)]
    pub cases: Vec<Case>,
}

/// One case.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    /// A short description, shown in the report.
    pub name: String,
    /// An alert file (canonical protobuf JSON), relative to the table.
    pub alert: Option<PathBuf>,
    /// An inline alert, as a TOML table in the JSON shape.
    pub inline: Option<toml::Value>,
    /// Deep-merged over the alert before deciding.
    pub patch: Option<toml::Value>,
    /// The recipient node.
    pub to: String,
    /// `disclose` (default), `after_grant` or `lookup`.
    #[serde(default)]
    pub ask: Ask,
    /// `full`, `redacted`, `hit_only` or `denied`; for `ask = "lookup"`, `hit` or `no_hit`.
    pub expect: String,
    /// If given, exactly these fields must be withheld.
    pub removed_fields: Option<Vec<String>>,
    /// If given, these policy ids must be among the deciding ones.
    pub policies: Option<Vec<String>>,
    /// The officer in the decision context.
    #[serde(default = "default_officer")]
    pub officer: String,
    /// `context.new_recipient`: the alert relays (or overlaps) one that `to`
    /// does not hold. The gateway finds this; a case states it.
    #[serde(default)]
    pub new_recipient: bool,
    /// `context.onward_allowed`: the relayed alert's origin allows `to` onward copies.
    #[serde(default)]
    pub onward_allowed: bool,
    /// `context.overlaps_restricted`: the alert shares a person, document or
    /// object with one its publisher received under H2, TLP:RED or TLP:AMBER+STRICT.
    #[serde(default)]
    pub overlaps_restricted: bool,
}

impl Case {
    /// What the case says the alert relays or overlaps.
    fn related(&self) -> Related {
        let to = || std::iter::once(self.to.clone()).collect();
        Related {
            holders: self.new_recipient.then(Default::default),
            onward: if self.onward_allowed { to() } else { Default::default() },
            overlaps_restricted: self.overlaps_restricted,
        }
    }
}

/// The question a case asks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ask {
    /// What the node receives when the alert is published.
    #[default]
    Disclose,
    /// What it receives if it asks after a hit and the holder grants.
    AfterGrant,
    /// Whether a matching lookup shows it a hit.
    Lookup,
}

fn default_officer() -> String {
    "policy-test".into()
}

/// The outcome of one case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CaseResult {
    /// The case name.
    pub name: String,
    /// The recipient.
    pub to: String,
    /// The expected level.
    pub expected: String,
    /// The level decided (or `error`).
    pub got: String,
    /// The deciding policies of the case's answer (the rules it exercises).
    pub policies: Vec<String>,
    /// Whether everything matched.
    pub pass: bool,
    /// What did not match, empty on a pass.
    pub detail: String,
}

const LEVELS: [&str; 4] = ["full", "redacted", "hit_only", "denied"];
const LOOKUPS: [&str; 2] = ["hit", "no_hit"];

impl TestTable {
    /// Tests the table against `dir` instead of its `policy_dir` (`isx policy
    /// test --policy DIR`); `dir` is taken as given (relative to the working
    /// directory), the table's own paths stay relative to the table.
    pub fn with_policy_dir(mut self, dir: PathBuf) -> Self {
        self.policy_dir = Some(dir);
        self
    }

    /// Reads a table and resolves its paths (`gateway`, `policy_dir`, each
    /// case's `alert`) against the table's directory, so that the table runs
    /// from any working directory.
    pub fn load(path: &Path) -> Result<Self, TableError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| TableError::Read { path: path.to_owned(), source })?;
        let mut table: Self =
            toml::from_str(&text).map_err(|source| TableError::Parse { path: path.to_owned(), source })?;
        let base = path.parent().unwrap_or(Path::new(".")).to_owned();
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        table.gateway.as_mut().map(fix);
        table.policy_dir = Some(
            table
                .policy_dir
                .take()
                .map(|p| if p.is_relative() { base.join(p) } else { p })
                .unwrap_or_else(|| base.clone()),
        );
        for (i, case) in table.cases.iter_mut().enumerate() {
            let bad = |message: String| TableError::Case {
                path: path.to_owned(),
                index: i + 1,
                name: case.name.clone(),
                message,
            };
            let allowed: &[&str] = if case.ask == Ask::Lookup { &LOOKUPS } else { &LEVELS };
            if !allowed.contains(&case.expect.as_str()) {
                return Err(bad(format!("expect = {:?}: use one of {}", case.expect, allowed.join(", "))));
            }
            if case.ask != Ask::Disclose && case.removed_fields.is_some() {
                return Err(bad("removed_fields applies only to ask = \"disclose\"".into()));
            }
            match (&case.alert, &case.inline) {
                (Some(_), Some(_)) => return Err(bad("give either alert or inline, not both".into())),
                (None, None) => return Err(bad("needs alert = \"FILE.json\" or an [case.inline] table".into())),
                _ => {}
            }
            case.alert.as_mut().map(fix);
        }
        if table.cases.is_empty() {
            return Err(TableError::Case {
                path: path.to_owned(),
                index: 0,
                name: String::new(),
                message: "no [[case]] entries".into(),
            });
        }
        Ok(table)
    }
}

/// Deep-merges `patch` into `base`: objects merge key by key, anything else replaces.
pub fn merge(base: &mut serde_json::Value, patch: &serde_json::Value) {
    match (base, patch) {
        (serde_json::Value::Object(b), serde_json::Value::Object(p)) => {
            for (k, v) in p {
                merge(b.entry(k.clone()).or_insert(serde_json::Value::Null), v);
            }
        }
        (b, p) => *b = p.clone(),
    }
}

fn case_alert(case: &Case) -> Result<Alert, String> {
    let mut value: serde_json::Value = match (&case.alert, &case.inline) {
        (Some(path), _) => {
            let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?
        }
        (None, Some(inline)) => serde_json::to_value(inline).map_err(|e| format!("inline: {e}"))?,
        (None, None) => return Err("no alert".into()),
    };
    if let Some(patch) = &case.patch {
        merge(&mut value, &serde_json::to_value(patch).map_err(|e| format!("patch: {e}"))?);
    }
    from_json::<Alert>(&value.to_string(), "the case's alert").map_err(|e| e.to_string())
}

/// Runs every case against `disclosure` with the registered `nodes`.
pub fn run(table: &TestTable, disclosure: &Disclosure, nodes: &[NodeInfo]) -> Vec<CaseResult> {
    table
        .cases
        .iter()
        .map(|case| {
            let mut result = CaseResult {
                name: case.name.clone(),
                to: case.to.clone(),
                expected: case.expect.clone(),
                got: "error".into(),
                policies: vec![],
                pass: false,
                detail: String::new(),
            };
            let alert = match case_alert(case) {
                Ok(a) => a,
                Err(e) => {
                    result.detail = e;
                    return result;
                }
            };
            let Some(to) = nodes.iter().find(|n| n.id.as_str() == case.to) else {
                result.detail = format!("to = {:?} is not a registered node", case.to);
                return result;
            };
            let mut lines = disclosure.explain(&alert, nodes, Some(&to.id), &case.officer, &case.related());
            let Some(e) = lines.pop() else {
                result.detail = format!("{} is the alert's origin; it is never a recipient", case.to);
                return result;
            };
            let (got, policies) = match case.ask {
                Ask::Disclose => (e.level.clone(), e.policies.clone()),
                Ask::AfterGrant => (e.after_grant.clone(), e.after_grant_policies.clone()),
                Ask::Lookup => (if e.lookup_hit { "hit" } else { "no_hit" }.to_owned(), e.lookup_policies.clone()),
            };
            let mut problems = Vec::new();
            if got != case.expect {
                let what = if case.ask == Ask::Lookup { "lookup" } else { "level" };
                problems.push(format!("{what} {got} instead of {}", case.expect));
            }
            if let Some(want) = &case.removed_fields
                && *want != e.removed_fields
            {
                problems.push(format!("withheld {:?} instead of {:?}", e.removed_fields, want));
            }
            if let Some(want) = &case.policies {
                let missing: Vec<&String> = want.iter().filter(|p| !policies.contains(p)).collect();
                if !missing.is_empty() {
                    problems.push(format!("deciding policies {policies:?} lack {missing:?}"));
                }
            }
            result.got = got;
            result.policies = policies;
            result.pass = problems.is_empty();
            result.detail = problems.join("; ");
            result
        })
        .collect()
}

/// How one rule fares in a table: the cases whose answer it decided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleCoverage {
    /// The policy id, or a pseudo-policy (`routing-not-addressed`, ...).
    pub id: String,
    /// True for a pseudo-policy, built into isx.
    pub built_in: bool,
    /// The names of the cases among whose deciding ids it is.
    pub cases: Vec<String>,
}

/// Which rules a table exercises (`isx policy coverage`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Coverage {
    /// Every rule that can decide: the policies in file order, then the
    /// pseudo-policies `routing-not-addressed`, `no-subscribe-role` and
    /// `default-deny`. `evaluation-error` is left out: it marks a policy set
    /// that failed, not a rule a case should exercise.
    pub rules: Vec<RuleCoverage>,
}

impl Coverage {
    /// The rules no case exercises.
    pub fn uncovered(&self) -> impl Iterator<Item = &RuleCoverage> {
        self.rules.iter().filter(|r| r.cases.is_empty())
    }

    /// How many rules some case exercises.
    pub fn covered(&self) -> usize {
        self.rules.iter().filter(|r| !r.cases.is_empty()).count()
    }

    /// How many rules there are.
    pub fn total(&self) -> usize {
        self.rules.len()
    }

    /// `covered` as a percentage of `total` (100 for no rules).
    pub fn percent(&self) -> f64 {
        if self.rules.is_empty() { 100.0 } else { self.covered() as f64 * 100.0 / self.total() as f64 }
    }
}

/// Which of `engine`'s rules the `results` of a table exercise: a case
/// exercises a rule when the rule is among the deciding ids of its answer
/// ([`CaseResult::policies`]), whether or not the case passed.
pub fn coverage(results: &[CaseResult], engine: &PolicyEngine) -> Coverage {
    let mut policies: Vec<_> = engine.policies().collect();
    policies.sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
    let ids = policies
        .iter()
        .map(|p| (p.id.clone(), false))
        .chain([NOT_ADDRESSED, NO_SUBSCRIBE_ROLE, DEFAULT_DENY].map(|id| (id.to_owned(), true)));
    let rules = ids
        .map(|(id, built_in)| RuleCoverage {
            cases: results.iter().filter(|r| r.policies.contains(&id)).map(|r| r.name.clone()).collect(),
            id,
            built_in,
        })
        .collect();
    Coverage { rules }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use isx_core::redaction::RedactionProfile;
    use isx_core::{NodeId, NodeKind};

    use super::*;
    use crate::PolicyEngine;

    fn write(dir: &Path, table: &str) -> PathBuf {
        let path = dir.join("tests.toml");
        std::fs::write(&path, table).unwrap();
        path
    }

    const CASE: &str = r#"
[[case]]
name = "fr gets it"
to = "fr-police"
expect = "EXPECT"
[case.inline]
alert_id = "01JDQ3E1F2G3H4J5K6M7N8P9Q0"
origin = "de-police"
category = "CATEGORY_TERRORISM"
action = "ACTION_CHECK"
labels = { tlp = "TLP_AMBER", handling_code = "HANDLING_CODE_H0" }
"#;

    /// National police nodes with the default roles.
    fn national(ids: &[&str]) -> Vec<NodeInfo> {
        ids.iter()
            .map(|id| NodeInfo {
                id: NodeId::new(*id).unwrap(),
                kind: NodeKind::National,
                country: "XX".into(),
                roles: NodeKind::National.default_roles(),
                name: String::new(),
            })
            .collect()
    }

    fn run_case(expect: &str) -> Vec<CaseResult> {
        let dir = tempfile::tempdir().unwrap();
        let table = TestTable::load(&write(dir.path(), &CASE.replace("EXPECT", expect))).unwrap();
        let engine =
            PolicyEngine::load(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/local/policy")).unwrap();
        let d = Disclosure::new(Arc::new(engine), RedactionProfile::default());
        let nodes = national(&["de-police", "fr-police"]);
        run(&table, &d, &nodes)
    }

    #[test]
    fn lookup_and_after_grant_cases() {
        let dir = tempfile::tempdir().unwrap();
        let engine =
            PolicyEngine::load(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/local/policy")).unwrap();
        let d = Disclosure::new(Arc::new(engine), RedactionProfile::default());
        let nodes = national(&["de-police", "fr-police", "it-police"]);
        let red = CASE.replace("TLP_AMBER", "TLP_RED").replace("\"fr-police\"", "\"it-police\"");
        let table = format!(
            "{}\naddressees = [\"fr-police\"]\n{}\naddressees = [\"fr-police\"]\n",
            red.replace("expect = \"EXPECT\"", "ask = \"lookup\"\nexpect = \"no_hit\""),
            red.replace("expect = \"EXPECT\"", "ask = \"after_grant\"\nexpect = \"full\""),
        );
        let results = run(&TestTable::load(&write(dir.path(), &table)).unwrap(), &d, &nodes);
        assert!(results.iter().all(|r| r.pass), "{results:?}");
        assert_eq!(results[0].policies, vec!["tlp-red-addressees-only"]);
        let wrong = table.replacen("expect = \"no_hit\"", "expect = \"hit\"", 1);
        let results = run(&TestTable::load(&write(dir.path(), &wrong)).unwrap(), &d, &nodes);
        assert_eq!(results[0].detail, "lookup no_hit instead of hit");
        let bad = table.replacen("expect = \"no_hit\"", "expect = \"full\"", 1);
        let err = TestTable::load(&write(dir.path(), &bad)).unwrap_err().to_string();
        assert!(err.contains("use one of hit, no_hit"), "{err}");
    }

    #[test]
    fn a_right_expectation_passes_and_a_wrong_one_fails_naming_it() {
        assert!(run_case("full")[0].pass);
        let wrong = &run_case("redacted")[0];
        assert!(!wrong.pass);
        assert_eq!(wrong.detail, "level full instead of redacted");
    }

    #[test]
    fn coverage_lists_the_rules_no_case_exercises() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Arc::new(
            PolicyEngine::load(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/local/policy")).unwrap(),
        );
        let d = Disclosure::new(engine.clone(), RedactionProfile::default());
        let nodes = national(&["de-police", "fr-police", "it-police"]);
        // One case decided by national-police-full, one by routing-not-addressed.
        let table = format!(
            "{}\n{}\naddressees = [\"it-police\"]\n",
            CASE.replace("EXPECT", "full"),
            CASE.replace("EXPECT", "denied").replace("fr gets it", "fr is not addressed"),
        );
        let results = run(&TestTable::load(&write(dir.path(), &table)).unwrap(), &d, &nodes);
        assert!(results.iter().all(|r| r.pass), "{results:?}");
        let c = coverage(&results, &engine);
        assert_eq!(c.total(), engine.policies().count() + 3, "every policy and the three pseudo-policies");
        let covered: Vec<(&str, &[String])> =
            c.rules.iter().filter(|r| !r.cases.is_empty()).map(|r| (r.id.as_str(), r.cases.as_slice())).collect();
        assert_eq!(
            covered,
            [
                ("national-police-full", &["fr gets it".to_owned()][..]),
                ("routing-not-addressed", &["fr is not addressed".to_owned()][..]),
            ]
        );
        let uncovered: Vec<&str> = c.uncovered().map(|r| r.id.as_str()).collect();
        assert!(uncovered.contains(&"tlp-red-addressees-only") && uncovered.contains(&"default-deny"), "{uncovered:?}");
        assert!(!uncovered.contains(&"national-police-full"));
        assert_eq!(c.covered(), 2);
        assert!((c.percent() - 200.0 / c.total() as f64).abs() < 1e-9);
    }

    #[test]
    fn paths_resolve_against_the_table_and_policy_dir_can_be_replaced() {
        // A table and its alert in one directory, run from another working
        // directory against a policy directory elsewhere.
        let tables = tempfile::tempdir().unwrap();
        let policies = tempfile::tempdir().unwrap();
        crate::defaults::write_to(policies.path()).unwrap();
        std::fs::create_dir(tables.path().join("alerts")).unwrap();
        let inline = CASE.split("[case.inline]\n").nth(1).unwrap();
        let alert: toml::Value = toml::from_str(inline).unwrap();
        std::fs::write(tables.path().join("alerts/a.json"), serde_json::to_string(&alert).unwrap()).unwrap();
        let text = "policy_dir = \"policy\"\n[[case]]\nname = \"fr gets it\"\nalert = \"alerts/a.json\"\nto = \"fr-police\"\nexpect = \"full\"\n";
        let table = TestTable::load(&write(tables.path(), text)).unwrap();
        assert_eq!(table.policy_dir.as_deref(), Some(tables.path().join("policy").as_path()));
        assert_eq!(table.cases[0].alert.as_deref(), Some(tables.path().join("alerts/a.json").as_path()));
        let table = table.with_policy_dir(policies.path().to_owned());
        let engine = PolicyEngine::load(table.policy_dir.as_deref().unwrap()).unwrap();
        let d = Disclosure::new(Arc::new(engine), RedactionProfile::default());
        let results = run(&table, &d, &national(&["de-police", "fr-police"]));
        assert!(results[0].pass, "{results:?}");
        assert_eq!(results[0].policies, ["national-police-full"]);
    }

    #[test]
    fn malformed_tables_name_the_case_or_key() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            (CASE.replace("EXPECT", "everything"), "case 1 (\"fr gets it\"): expect = \"everything\""),
            (CASE.replace("EXPECT", "full").replace("to = ", "recipient = "), "unknown field `recipient`"),
            ("[[case]]\nname = \"x\"\nto = \"a\"\nexpect = \"full\"\n".to_owned(), "needs alert"),
            ("gateway = \"g.toml\"\n".to_owned(), "no [[case]] entries"),
        ];
        for (text, needle) in cases {
            let err = TestTable::load(&write(dir.path(), &text)).unwrap_err().to_string();
            assert!(err.contains(needle), "{err}");
        }
    }
}
