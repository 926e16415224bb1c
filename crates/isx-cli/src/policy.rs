//! `isx policy check|explain|test`: for policy officers.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use isx_core::json::from_json;
use isx_core::wire::Alert;
use isx_gateway::GatewayConfig;
use isx_policy::table::TestTable;
use isx_policy::{Disclosure, PolicyEngine};

#[derive(Subcommand, Debug)]
pub enum PolicyCommand {
    /// Validate a policy directory against its schema and list its policies.
    ///
    /// Exits 1, naming the file and line, if the schema or any policy is
    /// invalid, lacks @id or @reason, or reuses an @id.
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
        /// Print a JSON array of {recipient, level, policies, reasons, removed_fields,
        /// lookup_hit, lookup_policies, after_grant, after_grant_policies}.
        #[arg(long)]
        json: bool,
    },
    /// Run a table of policy test cases and exit 1 on any mismatch.
    ///
    /// See deploy/local/policy/tests.toml for the format.
    Test {
        /// The test table (TOML).
        file: PathBuf,
        /// The gateway config for nodes and the redaction profile (default: the table's `gateway`).
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
}

fn load_disclosure(config: &GatewayConfig, dir: &std::path::Path) -> Result<Disclosure> {
    let engine = PolicyEngine::load(dir)?;
    Ok(Disclosure::new(Arc::new(engine), config.redaction.clone()))
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
            println!(
                "alert {} from {} (policy {} version {})\n",
                alert.alert_id,
                alert.origin,
                dir.display(),
                disclosure.engine().version()
            );
            for line in &lines {
                println!("{:<12} {}", line.recipient, line.level.to_uppercase());
                for (id, reason) in line.policies.iter().zip(&line.reasons) {
                    println!("{:<12}   {id}: {reason}", "");
                }
                if !line.removed_fields.is_empty() {
                    println!("{:<12}   withheld: {}", "", line.removed_fields.join(", "));
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
        PolicyCommand::Test { file, config } => {
            let table = TestTable::load(&file)?;
            let config_path = config
                .or_else(|| table.gateway.clone())
                .context("no gateway config: pass --config GATEWAY.toml or set `gateway = \"...\"` in the table")?;
            let config = GatewayConfig::load(&config_path)?;
            let dir = table.policy_dir.clone().unwrap_or_else(|| config.policy_dir.clone());
            let disclosure = load_disclosure(&config, &dir)?;
            let results = isx_policy::table::run(&table, &disclosure, &config.node_infos());
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
            let failed = results.iter().filter(|r| !r.pass).count();
            println!("\n{} passed, {failed} failed", results.len() - failed);
            Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
    }
}
