//! `isx policy check|explain|test|coverage|fmt`: for policy officers.
//!
//! Every `test`, `coverage` and `explain` output names the policy directory
//! it decided with and that directory's policy-set version.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use isx_core::json::from_json;
use isx_core::wire::Alert;
use isx_gateway::GatewayConfig;
use isx_policy::disclosure::{PSEUDO_POLICIES, pseudo_reason};
use isx_policy::table::{CaseResult, TestTable};
use isx_policy::{Disclosure, PolicyEngine};

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
        #[arg(long)]
        policy: Option<PathBuf>,
        /// Print a JSON array of {policy_dir, policy_version, recipient, level,
        /// policies, reasons, removed_fields, year_only, lookup_hit,
        /// lookup_policies, after_grant, after_grant_policies}.
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

pub fn run(cmd: PolicyCommand) -> Result<ExitCode> {
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
        PolicyCommand::Explain { config, alert, to, policy, json } => {
            let config = GatewayConfig::load(&config)?;
            let dir = policy.unwrap_or_else(|| config.policy_dir.clone());
            let disclosure = load_disclosure(&config, &dir)?;
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
            println!("{}", policy_line(disclosure.engine()));
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
