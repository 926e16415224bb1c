//! `isx policy check|explain|matrix|test|coverage|fmt`: for policy officers.
//!
//! Every `test`, `coverage`, `explain` and `matrix` output names the policy
//! directory it decided with and that directory's policy-set version.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use isx_core::json::from_json;
use isx_core::wire::audit_client::AuditClient;
use isx_core::wire::{Alert, AuditBundle, GetPolicyRequest, PolicyVersion, ReadReason};
use isx_gateway::GatewayConfig;
use isx_policy::disclosure::{PSEUDO_POLICIES, pseudo_reason};
use isx_policy::matrix::{ChangeKind, Comparison, Matrix, MatrixAlert, RuleTable, load_draft, sample_alerts};
use isx_policy::table::{CaseResult, TestTable};
use isx_policy::{Disclosure, PolicyEngine};

use crate::alert::Who;

// Parsed once per run; the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
pub enum PolicyCommand {
    /// Validate a policy directory against its schema and list every rule
    /// that can decide: its policies, then the rules built into isx.
    ///
    /// Exits 2, naming the file and line, if the schema or any policy is
    /// invalid (a misspelt Category::, Tlp::, HandlingCode:: or NodeKind::
    /// value included), lacks @id or @reason, or reuses an @id.
    Check {
        /// The policy directory (one *.cedarschema and *.cedar files).
        dir: PathBuf,
    },
    /// Show what each node would receive for an alert, and why.
    ///
    /// For every registered node but the origin (or only --to), prints the
    /// level, the deciding policies with their @reason, and the fields the
    /// node would not see; then whether a matching lookup would show the node
    /// a hit, and what it would receive if the holder granted its request.
    ///
    /// With --version V, a past decision is explained again with the text of
    /// the policy-set version a record names (its `policy_version`): read
    /// from a running gateway (--gateway ADDR --as AUDITOR --pki DIR
    /// --officer NAME --case REF; an audited read, Audit.GetPolicy) or from
    /// an export (--bundle FILE, no gateway needed). Either way the texts
    /// are checked against the version's digest. The nodes and the redaction
    /// profile still come from --config.
    #[command(disable_version_flag = true)]
    Explain {
        /// The gateway config: registered nodes, redaction profile and policy directory.
        #[arg(long, short, default_value = "deploy/local/gateway.toml")]
        config: PathBuf,
        /// The alert (canonical protobuf JSON).
        #[arg(long)]
        alert: PathBuf,
        /// Only this recipient.
        #[arg(long)]
        to: Option<String>,
        /// Use this policy directory instead of the config's (to try a draft).
        #[arg(long, conflicts_with = "policy_version")]
        policy: Option<PathBuf>,
        /// Explain with the text of this policy-set version (as records name
        /// it), from the gateway or from --bundle.
        #[arg(long = "version", value_name = "V")]
        policy_version: Option<String>,
        /// With --version: an export (`isx audit export --out FILE`) that
        /// holds the version's text, instead of asking a gateway.
        #[arg(long, value_name = "FILE", requires = "policy_version")]
        bundle: Option<PathBuf>,
        /// With --version from a gateway: who reads the log.
        #[command(flatten)]
        who: Who,
        /// With --version from a gateway: why the log is read (LED Art.
        /// 25(2)): lawfulness, self_monitoring, integrity or
        /// criminal_proceedings (recorded).
        #[arg(long, default_value = "lawfulness", requires = "policy_version")]
        purpose: String,
        /// With --version from a gateway: the case, complaint or inspection
        /// the read belongs to, e.g. CNIL-2026-0113 (recorded).
        #[arg(long = "case", value_name = "REF", requires = "policy_version")]
        case: Option<String>,
        /// Print a JSON array of {policy_dir, policy_version, recipient, level,
        /// policies, reasons, removed_fields, year_only, lookup_hit,
        /// lookup_policies, after_grant, after_grant_policies}.
        #[arg(long)]
        json: bool,
    },
    /// Show every alert against every registered node: the level each node
    /// would receive, as `explain` decides it.
    ///
    /// Rows are the alerts (default: the shipped samples, deploy/local/alerts),
    /// columns the config's nodes; the origin's cell reads `origin`. With
    /// --draft, cells show the draft's level, a changed cell reads
    /// `old>new` (`*` after a level whose withheld fields change), and each
    /// change is listed with the rules that make the difference. Then the
    /// rules that decide no cell and no lookup. A draft that does not load
    /// is an error naming the file and line.
    Matrix {
        /// The gateway config: registered nodes, redaction profile and policy directory.
        #[arg(long, short, default_value = "deploy/local/gateway.toml")]
        config: PathBuf,
        /// Use this policy directory instead of the config's.
        #[arg(long)]
        policy: Option<PathBuf>,
        /// A draft policy directory to compare with the current one.
        #[arg(long)]
        draft: Option<PathBuf>,
        /// An alert file (canonical protobuf JSON); repeat for more rows.
        #[arg(long, value_name = "FILE")]
        alert: Vec<PathBuf>,
        /// Print a JSON object {matrix, draft, comparison, rules} (draft and
        /// comparison null without --draft; rules of the draft if given).
        #[arg(long)]
        json: bool,
    },
    /// Run a table of policy test cases and exit 1 on any mismatch.
    ///
    /// See deploy/local/policy/tests.toml for the format.
    ///
    /// Paths in the table (`gateway`, `policy_dir`, each `alert`) are relative
    /// to the table file.
    Test {
        /// The test table (TOML).
        file: PathBuf,
        /// The gateway config for nodes and the redaction profile (default: the table's `gateway`).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Test this policy directory instead of the table's `policy_dir` (to try a draft).
        #[arg(long)]
        policy: Option<PathBuf>,
        /// Print a JSON object {policy_dir, policy_version, table, passed, failed, cases}.
        #[arg(long)]
        json: bool,
    },
    /// List the rules that no case of a test table exercises.
    ///
    /// A case exercises a rule when the rule is among the deciding policies of
    /// its answer. Rules are every policy of the directory and the built-in
    /// routing-not-addressed, no-subscribe-role and default-deny. Prints
    /// covered/total; exits 1 below --min.
    Coverage {
        /// The test table (TOML).
        file: PathBuf,
        /// The gateway config for nodes and the redaction profile (default: the table's `gateway`).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Measure this policy directory instead of the table's `policy_dir`.
        #[arg(long)]
        policy: Option<PathBuf>,
        /// Exit 1 when fewer than this percentage of the rules are exercised.
        #[arg(long, value_name = "PERCENT", default_value_t = 0.0)]
        min: f64,
    },
    /// Format the *.cedar files of a policy directory with Cedar's formatter.
    ///
    /// With --check, writes nothing and exits 1 listing the files that would change.
    Fmt {
        /// The policy directory.
        dir: PathBuf,
        /// Only check: list the files that are not formatted.
        #[arg(long)]
        check: bool,
    },
}

fn load_disclosure(config: &GatewayConfig, dir: &Path) -> Result<Disclosure> {
    let engine = PolicyEngine::load(dir)?;
    Ok(Disclosure::new(Arc::new(engine), config.redaction.clone()))
}

/// The line that names what decided: `policy DIR, version V`.
fn policy_line(engine: &PolicyEngine) -> String {
    format!("policy {}, version {}", engine.dir().display(), engine.version())
}

/// Loads a table (its paths relative to the table file), its gateway config
/// and the policy directory (`policy`, else the table's `policy_dir`), and
/// runs every case.
fn run_table(file: &Path, config: Option<PathBuf>, policy: Option<PathBuf>) -> Result<(Disclosure, Vec<CaseResult>)> {
    let mut table = TestTable::load(file)?;
    if let Some(dir) = policy {
        table = table.with_policy_dir(dir);
    }
    let config_path = config
        .or_else(|| table.gateway.clone())
        .context("no gateway config: pass --config GATEWAY.toml or set `gateway = \"...\"` in the table")?;
    let config = GatewayConfig::load(&config_path)?;
    let dir = table.policy_dir.clone().unwrap_or_else(|| config.policy_dir.clone());
    let disclosure = load_disclosure(&config, &dir)?;
    let results = isx_policy::table::run(&table, &disclosure, &config.node_infos());
    Ok((disclosure, results))
}

/// The text of `version` as an export holds it (`AuditBundle.policies`).
fn kept_in_bundle(file: &Path, version: &str) -> Result<PolicyVersion> {
    let text = std::fs::read_to_string(file).with_context(|| format!("--bundle {}", file.display()))?;
    let bundle: AuditBundle = from_json(&text, &file.display().to_string())?;
    let found = bundle.policies.iter().find(|p| p.version == version).cloned();
    found.with_context(|| {
        let held: Vec<&str> = bundle.policies.iter().map(|p| p.version.as_str()).collect();
        let held = if held.is_empty() { "none (an export from an older gateway)".to_owned() } else { held.join(", ") };
        format!("--bundle {} holds no text of policy version {version}; it holds {held}", file.display())
    })
}

/// The text of `version` from the gateway (`Audit.GetPolicy`), an audited
/// read for `purpose` and the case `case`.
async fn kept_by_gateway(
    who: &Who,
    version: &str,
    purpose: &str,
    case: Option<&str>,
) -> Result<(PolicyVersion, String)> {
    let purpose = isx_core::enums::parse(&isx_core::enums::descriptor("ReadPurpose"), purpose)
        .map_err(|e| anyhow::anyhow!("--purpose {e}"))?;
    let case = case.context(
        "--case REF is required to read a policy version from the gateway: the read is recorded with its purpose and case (or give --bundle FILE)",
    )?;
    let options = who.options()?;
    let client = isx_node::diagnose::connect(&options).await?;
    let reason = ReadReason { purpose, case_reference: case.to_owned() };
    let req = GetPolicyRequest { reason: Some(reason), version: version.to_owned() };
    let kept = AuditClient::new(client.channel())
        .get_policy(client.request(req))
        .await
        .map_err(|s| anyhow::anyhow!("{} ({})", s.message(), crate::output::code_name(s.code())))
        .with_context(|| format!("policy version {version} from the gateway {}", options.gateway))?
        .into_inner();
    Ok((kept, format!("the gateway {}", options.gateway)))
}

/// A Unix-millisecond time as RFC 3339, for the explain heading.
fn first_loaded(ms: u64) -> String {
    isx_core::timestamp::rfc3339(&isx_core::timestamp::from_unix_millis(ms))
}

pub async fn run(cmd: PolicyCommand) -> Result<ExitCode> {
    match cmd {
        PolicyCommand::Check { dir } => {
            let engine = PolicyEngine::load(&dir)?;
            println!(
                "{}: {} policies, valid against the schema (version {})\n",
                dir.display(),
                engine.policies().count(),
                engine.version()
            );
            println!("{:<36} {:<7} {:<22} reason", "id", "effect", "where");
            let mut policies: Vec<_> = engine.policies().collect();
            policies.sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
            for p in policies {
                let file = p.file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                println!("{:<36} {:<7} {:<22} {}", p.id, p.effect.to_string(), format!("{file}:{}", p.line), p.reason);
            }
            for id in PSEUDO_POLICIES {
                println!("{:<36} {:<7} {:<22} {}", id, "deny", "(built in)", pseudo_reason(id).unwrap_or_default());
            }
            Ok(ExitCode::SUCCESS)
        }
        PolicyCommand::Explain { config, alert, to, policy, policy_version, bundle, who, purpose, case, json } => {
            let config = GatewayConfig::load(&config)?;
            let (disclosure, heading) = match policy_version {
                Some(version) => {
                    let (kept, source) = match &bundle {
                        Some(file) => (kept_in_bundle(file, &version)?, format!("export {}", file.display())),
                        None => kept_by_gateway(&who, &version, &purpose, case.as_deref()).await?,
                    };
                    let sources = isx_policy::Sources::from_kept(&kept)
                        .with_context(|| format!("policy version {version} from {source}"))?;
                    let engine = PolicyEngine::from_sources(&isx_policy::kept_dir(&version), sources)
                        .with_context(|| format!("policy version {version} from {source} does not load"))?;
                    let heading = format!(
                        "policy version {version}, as kept by the gateway (first loaded {}), from {source}",
                        first_loaded(kept.first_loaded_ms)
                    );
                    (Disclosure::new(Arc::new(engine), config.redaction.clone()), heading)
                }
                None => {
                    let dir = policy.unwrap_or_else(|| config.policy_dir.clone());
                    let disclosure = load_disclosure(&config, &dir)?;
                    let heading = policy_line(disclosure.engine());
                    (disclosure, heading)
                }
            };
            let text = std::fs::read_to_string(&alert).with_context(|| format!("cannot read {}", alert.display()))?;
            let mut alert: Alert = from_json(&text, &alert.display().to_string())?;
            if !alert.forwarded_from.is_empty() && alert.hops == 0 {
                alert.hops = 1;
            }
            let nodes = config.node_infos();
            let to = match to {
                Some(t) => {
                    let id = isx_core::NodeId::new(t).context("--to")?;
                    if !nodes.iter().any(|n| n.id == id) {
                        bail!("--to {id}: not a registered node in the config");
                    }
                    if id.as_str() == alert.origin {
                        bail!("--to {id}: that is the alert's origin, which is never a recipient");
                    }
                    Some(id)
                }
                None => None,
            };
            let lines =
                disclosure.explain(&alert, &nodes, to.as_ref(), "policy-explain", &isx_policy::Related::default());
            if json {
                println!("{}", serde_json::to_string_pretty(&lines)?);
                return Ok(ExitCode::SUCCESS);
            }
            println!("{heading}");
            println!("alert {} from {}\n", alert.alert_id, alert.origin);
            for line in &lines {
                println!("{:<12} {}", line.recipient, line.level.to_uppercase());
                for (id, reason) in line.policies.iter().zip(&line.reasons) {
                    println!("{:<12}   {id}: {reason}", "");
                }
                let withheld: Vec<&str> =
                    line.removed_fields.iter().filter(|f| !line.year_only.contains(f)).map(String::as_str).collect();
                if !withheld.is_empty() {
                    println!("{:<12}   withheld: {}", "", withheld.join(", "));
                }
                if !line.year_only.is_empty() {
                    println!("{:<12}   kept as the year only: {}", "", line.year_only.join(", "));
                }
                println!(
                    "{:<12}   on a lookup: {} ({}); after a granted request: {} ({})",
                    "",
                    if line.lookup_hit { "hit" } else { "no hit" },
                    line.lookup_policies.join(", "),
                    line.after_grant.to_uppercase(),
                    line.after_grant_policies.join(", ")
                );
                println!();
            }
            Ok(ExitCode::SUCCESS)
        }
        PolicyCommand::Matrix { config, policy, draft, alert, json } => {
            let config = GatewayConfig::load(&config)?;
            let dir = policy.unwrap_or_else(|| config.policy_dir.clone());
            let current = load_disclosure(&config, &dir)?;
            let alerts = if alert.is_empty() {
                sample_alerts()
            } else {
                let mut alerts = Vec::with_capacity(alert.len());
                for path in &alert {
                    let text =
                        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
                    let name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
                    let parsed: Alert = from_json(&text, &path.display().to_string())?;
                    alerts.push(MatrixAlert::new(name, path.display().to_string(), parsed));
                }
                alerts
            };
            let nodes = config.node_infos();
            let now = Matrix::build(&current, &nodes, &alerts);
            let (then, rules) = match &draft {
                Some(draft_dir) => {
                    let d = load_draft(draft_dir, config.redaction.clone()).map_err(|e| {
                        anyhow::anyhow!("draft {} does not load:\n  {}", draft_dir.display(), e.lines.join("\n  "))
                    })?;
                    let then = Matrix::build(&d, &nodes, &alerts);
                    let rules = RuleTable::build(d.engine(), &then);
                    (Some(then), rules)
                }
                None => {
                    let rules = RuleTable::build(current.engine(), &now);
                    (None, rules)
                }
            };
            let comparison = then.as_ref().map(|t| Comparison::build(&now, t));
            if json {
                let report = serde_json::json!({
                    "matrix": now,
                    "draft": then,
                    "comparison": comparison,
                    "rules": rules,
                });
                println!("{}", serde_json::to_string_pretty(&report)?);
                return Ok(ExitCode::SUCCESS);
            }
            print!("{}", matrix_text(&now, then.as_ref().zip(comparison.as_ref()), &rules));
            Ok(ExitCode::SUCCESS)
        }
        PolicyCommand::Test { file, config, policy, json } => {
            let (disclosure, results) = run_table(&file, config, policy)?;
            let failed = results.iter().filter(|r| !r.pass).count();
            if json {
                let report = serde_json::json!({
                    "policy_dir": disclosure.engine().dir().display().to_string(),
                    "policy_version": disclosure.engine().version(),
                    "table": file.display().to_string(),
                    "passed": results.len() - failed,
                    "failed": failed,
                    "cases": results,
                });
                println!("{}", serde_json::to_string_pretty(&report)?);
                return Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE });
            }
            println!("{}", policy_line(disclosure.engine()));
            println!("table {}\n", file.display());
            let width = results.iter().map(|r| r.name.len()).max().unwrap_or(4).min(72);
            println!("{:<4} {:<width$} {:<12} {:<9} {:<9} deciding policies", "", "case", "to", "expected", "got");
            for r in &results {
                let mark = if r.pass { "ok" } else { "FAIL" };
                println!(
                    "{mark:<4} {:<width$} {:<12} {:<9} {:<9} {}",
                    r.name,
                    r.to,
                    r.expected,
                    r.got,
                    r.policies.join(", ")
                );
                if !r.pass {
                    println!("{:<4} {:<width$} ↳ {}", "", "", r.detail);
                }
            }
            println!("\n{} passed, {failed} failed", results.len() - failed);
            Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        PolicyCommand::Coverage { file, config, policy, min } => {
            if !(0.0..=100.0).contains(&min) {
                bail!("--min {min}: give a percentage from 0 to 100");
            }
            let (disclosure, results) = run_table(&file, config, policy)?;
            let coverage = isx_policy::table::coverage(&results, disclosure.engine());
            println!("{}", policy_line(disclosure.engine()));
            println!("table {}\n", file.display());
            let uncovered: Vec<_> = coverage.uncovered().collect();
            if uncovered.is_empty() {
                println!("every rule is exercised by some case");
            } else {
                println!("rules no case exercises:");
                for r in &uncovered {
                    let reason = if r.built_in { pseudo_reason(&r.id) } else { disclosure.engine().reason(&r.id) };
                    let kind = if r.built_in { " (built in)" } else { "" };
                    println!("  {}{kind}: {}", r.id, reason.unwrap_or_default());
                }
            }
            let failed = results.iter().filter(|r| !r.pass).count();
            if failed > 0 {
                println!("\n{failed} case(s) fail; `isx policy test {}` shows them", file.display());
            }
            println!(
                "\n{}/{} rules exercised ({:.1}%), minimum {min}%",
                coverage.covered(),
                coverage.total(),
                coverage.percent()
            );
            if coverage.percent() < min {
                println!("below the minimum: add cases that these rules decide");
                return Ok(ExitCode::FAILURE);
            }
            Ok(ExitCode::SUCCESS)
        }
        PolicyCommand::Fmt { dir, check } => {
            let changed = isx_policy::format::format_dir(&dir, !check)?;
            for path in &changed {
                if check {
                    println!("{}: not formatted (run `isx policy fmt {}`)", path.display(), dir.display());
                } else {
                    println!("{}: formatted", path.display());
                }
            }
            if check && !changed.is_empty() {
                return Ok(ExitCode::FAILURE);
            }
            if changed.is_empty() {
                println!("{}: every policy file is formatted", dir.display());
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The text of `isx policy matrix`: the policy line(s), the table, the
/// changes a draft makes, and the rules that decide nothing.
fn matrix_text(now: &Matrix, draft: Option<(&Matrix, &Comparison)>, rules: &RuleTable) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(out, "policy {}, version {}", now.policy_dir, now.policy_version);
    if let Some((then, _)) = draft {
        let _ = writeln!(out, "draft {}, version {}", then.policy_dir, then.policy_version);
    }
    out.push('\n');
    let shown = draft.map(|(then, _)| then).unwrap_or(now);
    let text = |r: usize, c: usize| -> String {
        let level = shown.cell(r, c).map(|cell| cell.level.clone()).unwrap_or_default();
        match draft.and_then(|(_, cmp)| cmp.changed(r, c)) {
            Some(ch) if ch.kind == ChangeKind::Level => format!("{}>{}", ch.old_level, ch.new_level),
            Some(_) => format!("{level}*"),
            None => level,
        }
    };
    let name_width = now.rows.iter().map(|r| r.name.len()).max().unwrap_or(5).max(5);
    let widths: Vec<usize> = now
        .columns
        .iter()
        .enumerate()
        .map(|(c, col)| (0..now.rows.len()).map(|r| text(r, c).len()).max().unwrap_or(0).max(col.id.len()))
        .collect();
    let _ = write!(out, "{:<name_width$}", "alert");
    for (col, width) in now.columns.iter().zip(&widths) {
        let _ = write!(out, "  {:<width$}", col.id);
    }
    out.push('\n');
    for (r, row) in now.rows.iter().enumerate() {
        let _ = write!(out, "{:<name_width$}", row.name);
        for (c, width) in widths.iter().enumerate() {
            let _ = write!(out, "  {:<width$}", text(r, c));
        }
        let _ = writeln!(out, "  {} {} {}, {}", row.tlp, row.handling, row.category, row.source);
    }
    if let Some((_, cmp)) = draft {
        out.push('\n');
        if cmp.changes.is_empty() {
            let _ = writeln!(out, "the draft changes no cell");
        }
        for ch in &cmp.changes {
            match ch.kind {
                ChangeKind::Level => {
                    let _ = writeln!(out, "{} to {}: {} > {}", ch.alert, ch.node, ch.old_level, ch.new_level);
                }
                ChangeKind::Withheld => {
                    let _ = writeln!(
                        out,
                        "{} to {}: still {}, withheld [{}] > [{}]",
                        ch.alert,
                        ch.node,
                        ch.new_level,
                        ch.old_withheld.join(", "),
                        ch.new_withheld.join(", ")
                    );
                }
            }
            for p in &ch.only_new {
                let _ = writeln!(out, "    now decided by {}: {}", p.id, p.reason);
            }
            for p in &ch.only_old {
                let _ = writeln!(out, "    no longer by {}: {}", p.id, p.reason);
            }
        }
    }
    let never: Vec<_> = rules.never_fires().collect();
    out.push('\n');
    if never.is_empty() {
        let _ = writeln!(out, "every rule decides some cell or lookup");
    } else {
        let _ = writeln!(out, "rules that decide no cell and no lookup here:");
        for r in never {
            let place = match (&r.file, r.line) {
                (Some(file), Some(line)) => format!("{file}:{line}"),
                _ => "built in".to_owned(),
            };
            let _ = writeln!(out, "  {} ({place}): {}", r.id, r.reason);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn repo() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
    }

    #[test]
    fn the_matrix_text_shows_levels_changes_and_idle_rules() {
        let config = GatewayConfig::load(&repo().join("deploy/local/gateway.toml")).unwrap();
        let nodes = config.node_infos();
        let current = load_disclosure(&config, &config.policy_dir).unwrap();
        let now = Matrix::build(&current, &nodes, &sample_alerts());
        let rules = RuleTable::build(current.engine(), &now);
        let text = matrix_text(&now, None, &rules);
        let line = |t: &str, name: &str| t.lines().find(|l| l.starts_with(name)).unwrap_or_default().to_owned();
        let header = line(&text, "alert");
        let frontex = header.find("frontex").unwrap();
        let smuggling = line(&text, "smuggling-network");
        assert_eq!(smuggling.get(frontex..frontex + 8), Some("redacted"), "{text}");
        assert!(smuggling.contains("origin") && smuggling.contains("TLP:AMBER H2 migrant_smuggling"), "{text}");
        assert!(text.contains("  restricted-reaches-no-one-new (labels.cedar:"), "{text}");

        // A draft without frontex-depersonalised, Frontex's full view permitted on smuggling.
        let dir = tempfile::tempdir().unwrap();
        isx_policy::defaults::write_to(dir.path()).unwrap();
        let agencies = dir.path().join("agencies.cedar");
        let policy = std::fs::read_to_string(&agencies).unwrap().replace(
            "action == Action::\"disclose_full\",\n  resource\n)\nwhen { principal.kind == NodeKind::\"frontex\" };",
            "action == Action::\"disclose_full\",\n  resource\n)\nwhen { false };\n\n@id(\"frontex-full-smuggling\")\n@reason(\"smuggling in full\")\npermit (principal, action == Action::\"disclose_full\", resource)\nwhen { principal.kind == NodeKind::\"frontex\" && resource.category == Category::\"migrant_smuggling\" };",
        );
        std::fs::write(&agencies, policy).unwrap();
        let draft = load_draft(dir.path(), config.redaction.clone()).unwrap();
        let then = Matrix::build(&draft, &nodes, &sample_alerts());
        let cmp = Comparison::build(&now, &then);
        let text = matrix_text(&now, Some((&then, &cmp)), &RuleTable::build(draft.engine(), &then));
        let smuggling = line(&text, "smuggling-network");
        let frontex = line(&text, "alert").find("frontex").unwrap();
        assert_eq!(smuggling.get(frontex..frontex + 13), Some("redacted>full"), "{text}");
        assert!(text.contains("smuggling-network to frontex: redacted > full\n    now decided by frontex-full-smuggling: smuggling in full\n"), "{text}");
        assert!(text.contains("  frontex-depersonalised (agencies.cedar:"), "{text}");
    }
}
