//! `isx scenario run`: integration scenarios with a pass/fail line per expectation.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Subcommand;
use isx_testkit::Topology;
use isx_testkit::scenario::run::{Line, Options, Outcome, Report, Verdict};
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
        /// starting one. Its node certificates must be in --pki. Scenarios
        /// that restart the gateway or move its clock are skipped there.
        #[arg(long, value_name = "ADDR", requires = "pki")]
        against: Option<String>,
        /// The PKI directory of the running deployment (with --against).
        #[arg(long, value_name = "DIR")]
        pki: Option<PathBuf>,
        /// The directory holding the running agencies' data directories
        /// (DIR/<node>), e.g. D/data after `isx up --dir D` (with --against).
        /// A node whose agency answers on DIR/<node>/inspect.sock is read
        /// through that socket and gets no mock agency of this command; the
        /// others get one here. Without it, every agency runs here, so the
        /// deployment must run none (`isx up --no-agencies`).
        #[arg(long, value_name = "DIR", requires = "against")]
        agencies: Option<PathBuf>,
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

/// A running deployment to attach to.
pub struct Target<'a> {
    /// The gateway's host:port.
    pub addr: &'a str,
    /// Its PKI directory.
    pub pki: &'a std::path::Path,
    /// The directory of its agencies' data directories, if they run.
    pub agencies: Option<&'a std::path::Path>,
}

/// Runs one scenario in process or attached.
pub async fn run_one(
    scenario: &Scenario,
    against: Option<&Target<'_>>,
    options: &Options,
    emit: &mut dyn FnMut(Line),
) -> Result<Report> {
    let mut topo = match against {
        Some(t) => Topology::attach_with(scenario.spec.clone(), t.addr, t.pki, t.agencies).await,
        None => Topology::start(scenario.spec.clone()).await,
    }
    .with_context(|| format!("{}: starting the topology", scenario.path.display()))?;
    let remote = topo.remote_agencies();
    if !remote.is_empty() {
        let names: Vec<String> = remote.iter().map(|n| n.to_string()).collect();
        println!("  agencies already running (read through their inspect sockets): {}", names.join(", "));
    }
    let report = isx_testkit::scenario::run::run(scenario, &mut topo, &Disk, options, emit).await;
    topo.shutdown().await;
    Ok(report)
}

fn outcome_word(outcome: &Outcome) -> &'static str {
    match outcome {
        Outcome::Pass => "PASS",
        Outcome::Fail(_) => "FAIL",
        Outcome::Skipped(_) => "SKIPPED",
    }
}

pub async fn run(cmd: ScenarioCommand) -> Result<ExitCode> {
    let ScenarioCommand::Run { files, junit, against, pki, agencies, verbose, timeout } = cmd;
    // Load everything first: a malformed file fails before anything runs.
    let scenarios: Vec<Scenario> = files.iter().map(|f| Scenario::load(f)).collect::<Result<_, _>>()?;
    let options = Options { limit: std::time::Duration::from_secs(timeout.max(1)) };
    let target = match (&against, &pki) {
        (Some(addr), Some(pki)) => Some(Target { addr, pki, agencies: agencies.as_deref() }),
        _ => None,
    };
    let mut reports = Vec::new();
    for (i, scenario) in scenarios.iter().enumerate() {
        println!("[{}/{}] {}: {}", i + 1, scenarios.len(), scenario.path.display(), scenario.name);
        if against.is_some() && scenario.spec.policy_dir.is_some() {
            println!("  note: the running gateway's own policy applies, not the scenario's `policy`");
        }
        let report = run_one(scenario, target.as_ref(), &options, &mut |l| print_line(&l, verbose)).await?;
        let outcome = report.outcome();
        let tail = match &outcome {
            Outcome::Skipped(why) => format!(": {why}"),
            _ => String::new(),
        };
        println!(
            "{} {}: {} expectation(s), {} failed, {} skipped ({:.1} s){tail}\n",
            outcome_word(&outcome),
            scenario.path.display(),
            report.checks.len(),
            report.failed(),
            report.skipped(),
            report.elapsed.as_secs_f64()
        );
        reports.push(report);
    }
    let total: usize = reports.iter().map(|r| r.checks.len()).sum();
    let failed: usize = reports.iter().map(Report::failed).sum();
    let skipped: usize = reports.iter().map(Report::skipped).sum();
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
    // The table: one line per scenario, a skip with its reason.
    let width = reports.iter().map(|r| r.path.display().to_string().len()).max().unwrap_or(0);
    let outcomes: Vec<Outcome> = reports.iter().map(Report::outcome).collect();
    for (r, outcome) in reports.iter().zip(&outcomes) {
        let note = match outcome {
            Outcome::Pass => format!("{} expectation(s)", r.checks.len()),
            Outcome::Fail(n) => format!("{n} of {} expectation(s) failed", r.checks.len()),
            Outcome::Skipped(why) => why.clone(),
        };
        println!("{:<8} {:<width$}  {note}", outcome_word(outcome), r.path.display().to_string());
    }
    let count = |want: fn(&Outcome) -> bool| outcomes.iter().filter(|o| want(o)).count();
    println!(
        "{} scenario(s): {} passed, {} failed, {} skipped; {total} expectations, {} passed, {failed} failed, {skipped} skipped",
        reports.len(),
        count(|o| matches!(o, Outcome::Pass)),
        count(|o| matches!(o, Outcome::Fail(_))),
        count(|o| matches!(o, Outcome::Skipped(_))),
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
