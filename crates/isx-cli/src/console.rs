//! `isx console`: the local web app for auditors and policy officers.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Args;
use isx_console::{ConsoleOptions, MatrixAlert, PolicySetup};
use isx_gateway::GatewayConfig;

use crate::alert::Who;

/// `isx console`'s arguments.
#[derive(Args, Debug)]
pub struct ConsoleArgs {
    /// The auditor's identity: the auditor's pages read the gateway's audit log as this node and officer.
    #[command(flatten)]
    who: Who,
    /// The gateway's audit verifier key (audit.pub): every checkpoint must be signed with it.
    #[arg(long, value_name = "FILE")]
    key: Option<PathBuf>,
    /// A C2SP witness policy (PKI/witness.policy): every checkpoint must be
    /// signed by its log and cosigned by its quorum of witnesses.
    #[arg(long, value_name = "FILE")]
    witness_policy: Option<PathBuf>,
    /// The policy directory for the policy officer's pages (no gateway or PKI needed).
    #[arg(long, value_name = "DIR")]
    policy: Option<PathBuf>,
    /// A draft policy directory to compare with --policy, cell by cell.
    #[arg(long, value_name = "DIR", requires = "policy")]
    draft: Option<PathBuf>,
    /// The gateway config that names the registered agencies (the matrix's columns) and the redaction profile.
    #[arg(long, short, value_name = "FILE", default_value = "deploy/local/gateway.toml")]
    config: PathBuf,
    /// More alerts for the matrix's rows (canonical JSON), after the shipped samples.
    #[arg(long = "alert", value_name = "FILE")]
    alerts: Vec<PathBuf>,
    /// The scenarios whose published alerts are rows too (a directory of *.toml).
    #[cfg(feature = "harness")]
    #[arg(long, value_name = "DIR", default_value = "deploy/local/scenarios")]
    scenarios: PathBuf,
    /// Where to listen. Loopback only unless you say otherwise; anything else is warned about.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Read the page templates from this directory on every page (to edit them; see crates/isx-console/templates).
    #[arg(long, value_name = "DIR")]
    templates: Option<PathBuf>,
    /// Why the auditor's pages read the log (recorded with every read): lawfulness, self-monitoring, integrity or criminal-proceedings.
    /// The overview's verification states integrity.
    #[arg(long, value_name = "PURPOSE", default_value = "self-monitoring", value_parser = parse_purpose)]
    purpose: isx_core::wire::ReadPurpose,
    /// The case, complaint or inspection the console's reads belong to (recorded with every read).
    #[arg(long = "case", value_name = "REF", default_value = "console")]
    case: String,
    /// Largest upload (a bundle or an alert), in MiB.
    #[arg(long, value_name = "MIB", default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=1024))]
    max_upload_mib: u32,
}

fn parse_purpose(text: &str) -> std::result::Result<isx_core::wire::ReadPurpose, String> {
    isx_core::read_reason::parse(text)
        .map_err(|_| "use lawfulness, self-monitoring, integrity or criminal-proceedings (LED Art. 25(2))".to_owned())
}

/// The policy officer's setup: the config's nodes and profile, the samples,
/// the scenarios' alerts and the extra files.
fn policy_setup(args: &ConsoleArgs, dir: PathBuf) -> Result<PolicySetup> {
    let config = GatewayConfig::load(&args.config).with_context(|| {
        format!(
            "--config {}: the policy pages need the registered agencies; give the gateway config",
            args.config.display()
        )
    })?;
    let mut alerts = isx_policy::matrix::sample_alerts();
    #[cfg(feature = "harness")]
    if args.scenarios.is_dir() {
        let from_scenarios = isx_testkit::scenario::scenario_alerts(&args.scenarios)
            .with_context(|| format!("--scenarios {}", args.scenarios.display()))?;
        // A scenario that publishes a sample as it is adds no row.
        for a in from_scenarios {
            if !alerts.iter().any(|b| b.alert == a.alert) {
                alerts.push(a);
            }
        }
    }
    for path in &args.alerts {
        let text = std::fs::read_to_string(path).with_context(|| format!("--alert {}", path.display()))?;
        let name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        let mut alert = MatrixAlert::from_json(&name, &text).with_context(|| format!("--alert {}", path.display()))?;
        alert.source = path.display().to_string();
        alerts.push(alert);
    }
    if let Some(d) = &args.draft
        && !d.is_dir()
    {
        bail!("--draft {}: not a directory; give a policy directory (*.cedar and one *.cedarschema)", d.display());
    }
    Ok(PolicySetup {
        nodes: config.node_infos(),
        profile: config.redaction.clone(),
        policy_dir: dir,
        draft_dir: args.draft.clone(),
        alerts,
    })
}

pub async fn run(args: ConsoleArgs) -> Result<ExitCode> {
    let auditor = if args.who.given() { Some(args.who.options()?) } else { None };
    let policy = args.policy.clone().map(|dir| policy_setup(&args, dir)).transpose()?;
    // With neither, `isx_console::start` says what to give.
    if !args.listen.ip().is_loopback() {
        eprintln!(
            "warning: --listen {} is not loopback: anyone who can reach it and learns the URL can read the audit log as {}; the connection is plain HTTP",
            args.listen,
            auditor.as_ref().map(|a| a.node.to_string()).unwrap_or_else(|| "the policy officer".into())
        );
    }
    let options = ConsoleOptions {
        listen: args.listen,
        trust: crate::audit::read_trust(&args.key, &args.witness_policy)?,
        auditor,
        policy,
        templates: args.templates.clone(),
        max_body: (args.max_upload_mib as usize) << 20,
        reason: isx_core::read_reason::reason(args.purpose, &args.case),
    };
    // The handlers first: a Ctrl-C right after the URL appears stops the
    // console cleanly instead of killing it.
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt()).context("installing the Ctrl-C handler")?;
    let mut terminate = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let console = isx_console::start(options).await?;
    println!("isx console: open {}", console.url());
    println!("(the URL carries this session's token; Ctrl-C stops the console)");
    tokio::select! {
        _ = interrupt.recv() => {}
        _ = terminate.recv() => {}
    }
    console.shutdown().await?;
    Ok(ExitCode::SUCCESS)
}
