//! `isx scenario run`: integration scenarios with a pass/fail line per expectation.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Subcommand;
use isx_testkit::Topology;
use isx_testkit::scenario::run::{Line, Options, Report, Verdict};
use isx_testkit::scenario::{Disk, Scenario};

#[derive(Subcommand, Debug)]
pub enum ScenarioCommand {
    /// Run scenario files: start each topology in this process (or attach to a
    /// running gateway), play the steps, check every expectation.
    ///
    /// Prints one line per expectation and a summary; exits 1 if any failed.
    /// The format is described in docs/scenarios.md; examples are in
    /// deploy/local/scenarios/.
    Run {
        /// Scenario files (TOML).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Also write a JUnit XML report here.
        #[arg(long, value_name = "FILE")]
        junit: Option<PathBuf>,
        /// Run against a gateway already running at host:port instead of
        /// starting one. Its node certificates must be in --pki, and the
        /// scenario's nodes must not run their own agencies (`isx up --no-agencies`):
        /// this command runs them. Restart and clock steps are skipped.
        #[arg(long, value_name = "ADDR", requires = "pki")]
        against: Option<String>,
        /// The PKI directory of the running deployment (with --against).
        #[arg(long, value_name = "DIR")]
        pki: Option<PathBuf>,
        /// Also print the narration and what each step did.
        #[arg(long, short)]
        verbose: bool,
        /// Seconds to wait for any delivery or access outcome before failing.
        #[arg(long, default_value_t = 10)]
        timeout: u64,
    },
}

fn print_line(line: &Line, verbose: bool) {
    match line {
        Line::Say(text) if verbose => println!("\n  {}", text.replace('\n', "\n  ")),
        Line::Step { number, line, summary } => println!("  step {number} (line {line}): {summary}"),
        Line::Detail(text) if verbose => println!("          {text}"),
        Line::Check(c) => match &c.verdict {
            Verdict::Pass => println!("    ok    {}", c.what),
            Verdict::Fail(why) => println!("    FAIL  {} — {why}", c.what),
            Verdict::Skipped(why) => println!("    skip  {} ({why})", c.what),
        },
        _ => {}
    }
}

/// Runs one scenario in process or attached.
pub async fn run_one(
    scenario: &Scenario,
    against: Option<(&str, &std::path::Path)>,
    options: &Options,
    emit: &mut dyn FnMut(Line),
) -> Result<Report> {
    let mut topo = match against {
        Some((addr, pki)) => Topology::attach(scenario.spec.clone(), addr, pki).await,
        None => Topology::start(scenario.spec.clone()).await,
    }
    .with_context(|| format!("{}: starting the topology", scenario.path.display()))?;
    let report = isx_testkit::scenario::run::run(scenario, &mut topo, &Disk, options, emit).await;
    topo.shutdown().await;
    Ok(report)
}

pub async fn run(cmd: ScenarioCommand) -> Result<ExitCode> {
    let ScenarioCommand::Run { files, junit, against, pki, verbose, timeout } = cmd;
    // Load everything first: a malformed file fails before anything runs.
    let scenarios: Vec<Scenario> = files.iter().map(|f| Scenario::load(f)).collect::<Result<_, _>>()?;
    let options = Options { limit: std::time::Duration::from_secs(timeout.max(1)) };
    let mut reports = Vec::new();
    for (i, scenario) in scenarios.iter().enumerate() {
        println!("[{}/{}] {}: {}", i + 1, scenarios.len(), scenario.path.display(), scenario.name);
        if against.is_some() && scenario.spec.policy_dir.is_some() {
            println!("  note: the running gateway's own policy applies, not the scenario's `policy`");
        }
        let target = against.as_deref().zip(pki.as_deref());
        let report = run_one(scenario, target, &options, &mut |l| print_line(&l, verbose)).await?;
        let failed = report.failed();
        println!(
            "{} {}: {} expectation(s), {failed} failed ({:.1} s)\n",
            if failed == 0 { "PASS" } else { "FAIL" },
            scenario.path.display(),
            report.checks.len(),
            report.elapsed.as_secs_f64()
        );
        reports.push(report);
    }
    let total: usize = reports.iter().map(|r| r.checks.len()).sum();
    let failed: usize = reports.iter().map(Report::failed).sum();
    let skipped = reports.iter().flat_map(|r| &r.checks).filter(|c| matches!(c.verdict, Verdict::Skipped(_))).count();
    if reports.iter().all(|r| scenarios.iter().any(|s| s.path == r.path && s.spec.policy_dir.is_none())) {
        let exercised: BTreeSet<&String> = reports.iter().flat_map(|r| &r.policies).collect();
        let defaults = isx_policy::defaults::policy_ids();
        let missing: Vec<&String> = defaults.iter().filter(|id| !exercised.contains(id)).collect();
        println!(
            "default policies that decided something: {} of {}{}",
            defaults.len() - missing.len(),
            defaults.len(),
            if missing.is_empty() { String::new() } else { format!(" (never: {})", join(&missing)) }
        );
    }
    println!(
        "{} scenario(s): {total} expectations, {} passed, {failed} failed, {skipped} skipped",
        reports.len(),
        total - failed - skipped
    );
    if let Some(path) = junit {
        std::fs::write(&path, isx_testkit::scenario::junit::render(&reports))
            .with_context(|| format!("--junit {}", path.display()))?;
        println!("JUnit report: {}", path.display());
    }
    Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn join(items: &[&String]) -> String {
    items.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
}
