//! The scenario files in deploy/local/scenarios, run in process, one trial
//! per file so that a failure names the file in the runner's own output
//! (`scenario::05-hit-no-hit.toml`). A libtest-mimic harness
//! (`harness = false`) makes the trials from the directory listing; each
//! starts its own topology. One more trial checks that together the files
//! exercise every default policy, one that a wrong expectation fails naming
//! itself, and one that a `denied` delivery check cannot pass by racing a
//! delivery in flight.
//!
//! Each file runs at most once per process: its trial and the coverage trial
//! share the outcome, whichever asks first runs it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use isx_testkit::Topology;
use isx_testkit::scenario::run::{Options, Report, Verdict, run};
use isx_testkit::scenario::{Disk, Scenario};
use libtest_mimic::{Arguments, Failed, Trial};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/local/scenarios")
}

/// The shipped scenario files, sorted.
fn shipped() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir())
        .expect("deploy/local/scenarios is readable")
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    files
}

/// Loads `file` and plays it on a fresh topology in a runtime of its own.
fn play_file(file: &Path, options: &Options) -> Result<Report, String> {
    let scenario = Scenario::load(file).map_err(|e| e.to_string())?;
    play(&scenario, options)
}

fn play(scenario: &Scenario, options: &Options) -> Result<Report, String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    runtime.block_on(async {
        let mut topo = Topology::start(scenario.spec.clone())
            .await
            .map_err(|e| format!("{}: starting the topology: {e}", scenario.path.display()))?;
        let report = run(scenario, &mut topo, &Disk, options, &mut |_| {}).await;
        topo.shutdown().await;
        Ok(report)
    })
}

/// The outcome of each shipped file, run once on first use.
fn outcome(file: &Path) -> &'static Result<Report, String> {
    static OUTCOMES: OnceLock<BTreeMap<PathBuf, OnceLock<Result<Report, String>>>> = OnceLock::new();
    let all = OUTCOMES.get_or_init(|| shipped().into_iter().map(|f| (f, OnceLock::new())).collect());
    all[file].get_or_init(|| play_file(file, &Options::default()))
}

/// Every expectation of `file` holds, and it checks a fair number.
fn passes(file: &Path) -> Result<(), Failed> {
    let report = outcome(file).as_ref().map_err(|e| Failed::from(e.clone()))?;
    let failed: Vec<String> = report
        .checks
        .iter()
        .filter_map(|c| match &c.verdict {
            Verdict::Fail(why) => Some(format!("  step {} (line {}): {}: {why}", c.step, c.line, c.what)),
            _ => None,
        })
        .collect();
    if !failed.is_empty() {
        return Err(format!(
            "{}: {} of {} expectation(s) failed:\n{}",
            file.display(),
            failed.len(),
            report.checks.len(),
            failed.join("\n")
        )
        .into());
    }
    if report.checks.len() < 10 {
        return Err(format!("{} checks only {} expectation(s)", file.display(), report.checks.len()).into());
    }
    Ok(())
}

fn together_they_exercise_every_default_policy() -> Result<(), Failed> {
    let files = shipped();
    if files.len() < 8 {
        return Err(format!("at least eight scenarios, found {files:?}").into());
    }
    let mut exercised = BTreeSet::new();
    let mut unplayed = Vec::new();
    for file in &files {
        match outcome(file) {
            Ok(report) => exercised.extend(report.policies.iter().cloned()),
            Err(e) => unplayed.push(e.clone()),
        }
    }
    if !unplayed.is_empty() {
        return Err(format!("coverage unknown, these did not run:\n{}", unplayed.join("\n")).into());
    }
    let missing: Vec<String> =
        isx_policy::defaults::policy_ids().into_iter().filter(|id| !exercised.contains(id)).collect();
    if !missing.is_empty() {
        return Err(format!("no scenario exercises {missing:?}").into());
    }
    Ok(())
}

fn a_wrong_expectation_fails_and_names_itself() -> Result<(), Failed> {
    let text = std::fs::read_to_string(dir().join("06-offline-backlog.toml"))
        .map_err(|e| e.to_string())?
        .replace(
            "receipt = { fr-police = \"full\", frontex = \"redacted\" }",
            "receipt = { fr-police = \"full\", frontex = \"full\" }",
        )
        .replace("level = \"redacted\"", "level = \"full\"");
    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let copy = tmp.path().join("wrong.toml");
    // Keep the alert files reachable from the copy.
    let alerts = dir().join("../alerts");
    std::fs::write(&copy, text.replace("../alerts", &alerts.display().to_string())).map_err(|e| e.to_string())?;
    let scenario = Scenario::load(&copy).map_err(|e| e.to_string())?;
    // A short wait: the wrong level never arrives.
    let report = play(&scenario, &Options { limit: std::time::Duration::from_secs(1) })?;
    let failed: Vec<(&str, &Verdict)> =
        report.checks.iter().filter(|c| !c.ok()).map(|c| (c.what.as_str(), &c.verdict)).collect();
    if !failed.contains(&("receipt: frontex full", &Verdict::Fail("got redacted".into()))) {
        return Err(format!("the receipt check did not fail as expected: {failed:?}").into());
    }
    if !failed.iter().any(|(what, v)| {
        *what == "frontex receives smuggling-network full"
            && matches!(v, Verdict::Fail(why) if why.contains("it holds it redacted"))
    }) {
        return Err(format!("the delivery check did not fail as expected: {failed:?}").into());
    }
    if report.failed() != failed.len() {
        return Err(format!("failed() says {}, the checks {}", report.failed(), failed.len()).into());
    }
    // The JUnit report marks the same failures.
    let xml = isx_testkit::scenario::junit::render(&[report]);
    if !(xml.contains("receipt: frontex full") && xml.contains("<failure message=\"got redacted\"/>")) {
        return Err(format!("the JUnit report lacks the failure:\n{xml}").into());
    }
    Ok(())
}

/// `level = "denied"` for a node that does receive the alert fails, and
/// the inbox is read only after the delivery landed: the failure says what
/// the inbox holds, every time (the check waits for an ordering marker
/// published after the alert; reading at once would often find nothing yet).
fn a_denied_check_reads_the_inbox_after_deliveries_in_flight() -> Result<(), Failed> {
    let alert = dir().join("../alerts/smuggling-network.json");
    let text = format!(
        "name = \"denied, but delivered\"\n\n[[step]]\ndo = \"publish\"\nas = \"it-police\"\nfile = {:?}\npatch = {{ addressees = [\"fr-police\"] }}\n\n[[step]]\ndo = \"expect_delivery\"\nnode = \"fr-police\"\nalert = \"smuggling-network\"\nlevel = \"denied\"\n",
        alert.display().to_string()
    );
    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let file = tmp.path().join("denied.toml");
    std::fs::write(&file, text).map_err(|e| e.to_string())?;
    let report = play_file(&file, &Options::default())?;
    let failed: Vec<(&str, &Verdict)> =
        report.checks.iter().filter(|c| !c.ok()).map(|c| (c.what.as_str(), &c.verdict)).collect();
    let want = Verdict::Fail("the receipt gives it full; its agency holds it full".into());
    if failed != [("fr-police receives nothing of smuggling-network", &want)] {
        return Err(format!("expected only the denied check to fail, seeing the delivery: {failed:?}").into());
    }
    Ok(())
}

/// Writes `steps` (after a header) as a scenario file next to nothing and
/// plays it with `limit`; the alert files are named by absolute path.
fn play_text(name: &str, steps: &str, limit: std::time::Duration) -> Result<Report, String> {
    let alerts = dir().join("../alerts").display().to_string();
    let text = format!("name = {name:?}\n\n{}", steps.replace("ALERTS", &alerts));
    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let file = tmp.path().join("s.toml");
    std::fs::write(&file, text).map_err(|e| e.to_string())?;
    let scenario = Scenario::load(&file).map_err(|e| e.to_string())?;
    play(&scenario, &Options { limit })
}

/// The checks of `report` as (what, verdict) pairs.
fn verdicts(report: &Report) -> Vec<(String, Verdict)> {
    report.checks.iter().map(|c| (c.what.clone(), c.verdict.clone())).collect()
}

/// Italy sends a TLP:RED alert to France alone.
const RED_TO_FRANCE: &str = "[[step]]\ndo = \"publish\"\nas = \"it-police\"\nfile = \"ALERTS/smuggling-network.json\"\npatch = { addressees = [\"fr-police\"], labels = { tlp = \"TLP_RED\" } }\n\n";

/// `expect_nothing` reads the agency only after an ordering marker: France,
/// which does receive, fails it every time, naming what it holds (read at
/// once it would often find nothing yet); Germany, which receives nothing, passes.
fn expect_nothing_reads_the_agency_after_deliveries_in_flight() -> Result<(), Failed> {
    let steps = format!(
        "{RED_TO_FRANCE}[[step]]\ndo = \"expect_nothing\"\nnode = \"fr-police\"\nalert = \"smuggling-network\"\n\n[[step]]\ndo = \"expect_nothing\"\nnode = \"de-police\"\n\n[[step]]\ndo = \"expect_nothing\"\nnode = \"fr-police\"\n"
    );
    let report = play_text("nothing, but delivered", &steps, std::time::Duration::from_secs(10))?;
    let got: Vec<(String, Verdict)> = verdicts(&report).into_iter().skip(1).collect();
    let want = vec![
        (
            "fr-police holds nothing of smuggling-network".to_owned(),
            Verdict::Fail("its agency holds smuggling-network full".into()),
        ),
        ("de-police holds none of the scenario's alerts (1)".to_owned(), Verdict::Pass),
        (
            "fr-police holds none of the scenario's alerts (1)".to_owned(),
            Verdict::Fail("its agency holds smuggling-network full".into()),
        ),
    ];
    if got != want {
        return Err(format!("expected\n{want:?}\ngot\n{got:?}").into());
    }
    Ok(())
}

/// Every failure reads as a scenario file writes values (`full`, `OK`,
/// `["a"]`, `"text"`), never as Rust's debug output (`Some(..)`, `None`).
fn failures_read_as_a_scenario_file_writes_them() -> Result<(), Failed> {
    let steps = format!(
        "{}expect_message = \"no such text\"\nexpect_fields = [\"labels.tlp\"]\n\n[[step]]\ndo = \"expect_delivery\"\nnode = \"fr-police\"\nalert = \"smuggling-network\"\nlevel = \"full\"\npolicies = [\"no-such-policy\"]\n\n[[step]]\ndo = \"expect_delivery\"\nnode = \"fr-police\"\nalert = \"smuggling-network\"\nlevel = \"denied\"\n\n[[step]]\ndo = \"lookup\"\nas = \"frontex\"\nplate = [\"FG 512 ZT\"]\npurpose = \"p\"\njustification = \"j\"\nhits = [\"smuggling-network\"]\n\n[[step]]\ndo = \"publish\"\nas = \"de-police\"\nfile = \"ALERTS/foreign-fighter.json\"\nexpect_code = \"PERMISSION_DENIED\"\n",
        RED_TO_FRANCE
    );
    let report = play_text("every failure", &steps, std::time::Duration::from_secs(2))?;
    let failures: Vec<(String, String)> = report
        .checks
        .iter()
        .filter_map(|c| match &c.verdict {
            Verdict::Fail(why) => Some((c.what.clone(), why.clone())),
            _ => None,
        })
        .collect();
    let want: Vec<(String, String)> = [
        ("publish smuggling-network as it-police: message contains \"no such text\"", "there was no message"),
        ("publish smuggling-network as it-police: bad fields [\"labels.tlp\"]", "it named no field"),
        (
            "fr-police's copy of smuggling-network decided by [\"no-such-policy\"]",
            "deciding policies were [\"named-addressee\"]",
        ),
        ("fr-police receives nothing of smuggling-network", "the receipt gives it full; its agency holds it full"),
        ("frontex's lookup shows exactly [\"smuggling-network\"]", "it showed no hit of the scenario's alerts"),
        ("publish foreign-fighter as de-police: PERMISSION_DENIED", "OK"),
    ]
    .into_iter()
    .map(|(a, b)| (a.to_owned(), b.to_owned()))
    .collect();
    if failures != want {
        return Err(format!("expected\n{want:#?}\ngot\n{failures:#?}").into());
    }
    let debug: Vec<&(String, String)> = failures
        .iter()
        .filter(|(what, why)| [what, why].iter().any(|t| t.contains("Some(") || t.contains("None")))
        .collect();
    if !debug.is_empty() {
        return Err(format!("Rust debug text in {debug:?}").into());
    }
    Ok(())
}

/// `expect_audit` waits for a record the gateway writes after the step
/// before has returned: the erasure of an alert whose expiry a clock move
/// passed is written by the expiry sweep, a moment later.
fn expect_audit_waits_for_a_record_written_later() -> Result<(), Failed> {
    let steps = "[[step]]\ndo = \"publish\"\nas = \"it-police\"\nfile = \"ALERTS/smuggling-network.json\"\n\n[[step]]\ndo = \"advance_clock\"\nby = \"3650d\"\n\n[[step]]\ndo = \"expect_audit\"\noperation = \"erasure\"\nalert = \"smuggling-network\"\ncount = 1\n";
    let report = play_text("erasure after the clock moved", steps, std::time::Duration::from_secs(10))?;
    let audit: Vec<(String, Verdict)> =
        verdicts(&report).into_iter().filter(|(what, _)| what.starts_with("audit:")).collect();
    let want = vec![("audit: erasure alert=smuggling-network: 1 record(s)".to_owned(), Verdict::Pass)];
    if audit != want {
        return Err(format!("expected {want:?}, got {audit:?}").into());
    }
    Ok(())
}

/// Each lifecycle expectation can fail, and says what it found: a copy at
/// another version, held instead of deleted, deleted instead of restricted;
/// holders that are not the ones named; no open hit; no confirmation
/// record; a refusal where success was expected. Two pass beside them, so
/// the failures are not a broken topology.
fn lifecycle_expectations_fail_saying_what_they_found() -> Result<(), Failed> {
    let steps = "[[step]]\ndo = \"publish\"\nas = \"it-police\"\nfile = \"ALERTS/smuggling-network.json\"\npatch = { addressees = [\"fr-police\"] }\n\n\
        [[step]]\ndo = \"expect_copy\"\nnode = \"fr-police\"\nalert = \"smuggling-network\"\nversion = 1\nlevel = \"full\"\n\n\
        [[step]]\ndo = \"expect_copy\"\nnode = \"fr-police\"\nalert = \"smuggling-network\"\nversion = 3\n\n\
        [[step]]\ndo = \"expect_copy\"\nnode = \"fr-police\"\nalert = \"smuggling-network\"\ndeleted = true\n\n\
        [[step]]\ndo = \"expect_confirmed\"\nalert = \"smuggling-network\"\nholders = [\"fr-police\", \"europol\"]\n\n\
        [[step]]\ndo = \"expect_open_hits\"\nnode = \"de-police\"\nhits = [\"smuggling-network\"]\n\n\
        [[step]]\ndo = \"amend\"\nas = \"fr-police\"\nalert = \"smuggling-network\"\nreason = \"r\"\npatch = { narrative = \"x\" }\n\n\
        [[step]]\ndo = \"withdraw\"\nas = \"it-police\"\nalert = \"smuggling-network\"\nreason = \"wrong\"\n\n\
        [[step]]\ndo = \"expect_copy\"\nnode = \"fr-police\"\nalert = \"smuggling-network\"\nrestricted = true\n\n\
        [[step]]\ndo = \"expect_confirmed\"\nalert = \"smuggling-network\"\nholders = [\"fr-police\"]\n\n\
        [[step]]\ndo = \"expect_audit\"\noperation = \"change_confirmed\"\nnode = \"europol\"\ncount = 1\n";
    let report = play_text("lifecycle failures", steps, std::time::Duration::from_secs(1))?;
    let got: Vec<(String, Verdict)> = verdicts(&report)
        .into_iter()
        .filter(|(what, _)| !what.starts_with("publish") && !what.starts_with("it-police withdraws"))
        .collect();
    let fail = |why: &str| Verdict::Fail(why.to_owned());
    let want = vec![
        ("fr-police's copy of smuggling-network: version 1, full".to_owned(), Verdict::Pass),
        (
            "fr-police's copy of smuggling-network: version 3".into(),
            fail("it holds version 1, not restricted, full after waiting 1s"),
        ),
        (
            "fr-police's copy of smuggling-network: deleted".into(),
            fail("it holds version 1, not restricted, full after waiting 1s"),
        ),
        (
            "every copy of smuggling-network confirmed its last change, held by [\"fr-police\", \"europol\"]".into(),
            fail("after waiting 1s: its copies are held by [\"fr-police\"]"),
        ),
        (
            "de-police's open hits are exactly [\"smuggling-network\"]".into(),
            fail("it had no open hit on the scenario's alerts after waiting 1s"),
        ),
        ("amend smuggling-network (version 1) as fr-police: OK".into(), Verdict::Fail(String::new())),
        (
            "fr-police's copy of smuggling-network: restricted".into(),
            fail("it deleted its copy (version 1) after waiting 1s"),
        ),
        ("every copy of smuggling-network confirmed its last change, held by [\"fr-police\"]".into(), Verdict::Pass),
        ("audit: change_confirmed node=europol: 1 record(s)".into(), fail("found 0 after waiting 1s")),
    ];
    // The refusal's text is the gateway's; check its start and rule only.
    let refusal = got.iter().find(|(w, _)| w.starts_with("amend smuggling-network")).cloned();
    let Some((_, Verdict::Fail(why))) = &refusal else {
        return Err(format!("the amend by a recipient did not fail: {refusal:?}").into());
    };
    if !(why.starts_with("PERMISSION_DENIED: ") && why.contains("origin-only")) {
        return Err(format!("the refusal does not name the rule: {why}").into());
    }
    let got: Vec<(String, Verdict)> = got
        .into_iter()
        .map(|(w, v)| if w.starts_with("amend ") { (w, Verdict::Fail(String::new())) } else { (w, v) })
        .collect();
    if got != want {
        return Err(format!("expected\n{want:#?}\ngot\n{got:#?}").into());
    }
    Ok(())
}

/// `expires_in` counts from the gateway's clock: an alert kept for two hours
/// is held an hour later and deleted, by every holder, once the clock has
/// passed it; the HIT_CLOSED record names the officer who was shown the hit
/// and no other.
fn expires_in_follows_the_gateway_clock_and_hit_closed_names_the_officer() -> Result<(), Failed> {
    let steps = "[[step]]\ndo = \"publish\"\nas = \"it-police\"\nfile = \"ALERTS/smuggling-network.json\"\nexpires_in = \"2h\"\npatch = { addressees = [\"fr-police\"] }\n\n\
        [[step]]\ndo = \"lookup\"\nas = \"de-police\"\nofficer = \"KHK Anna Weber\"\nplate = [\"FG 512 ZT\"]\npurpose = \"p\"\njustification = \"j\"\nhits = [\"smuggling-network\"]\n\n\
        [[step]]\ndo = \"expect_copy\"\nnode = \"fr-police\"\nalert = \"smuggling-network\"\ndeleted = false\n\n\
        [[step]]\ndo = \"advance_clock\"\nby = \"1h\"\n\n\
        [[step]]\ndo = \"expect_audit\"\noperation = \"erasure\"\nalert = \"smuggling-network\"\ncount = 0\n\n\
        [[step]]\ndo = \"expect_copy\"\nnode = \"fr-police\"\nalert = \"smuggling-network\"\ndeleted = false\n\n\
        [[step]]\ndo = \"advance_clock\"\nby = \"90m\"\n\n\
        [[step]]\ndo = \"expect_copy\"\nnode = \"fr-police\"\nalert = \"smuggling-network\"\ndeleted = true\n\n\
        [[step]]\ndo = \"expect_audit\"\noperation = \"hit_closed\"\nofficer = \"KHK Anna Weber\"\ncount = 1\n\n\
        [[step]]\ndo = \"expect_audit\"\noperation = \"hit_closed\"\nalert = \"smuggling-network\"\nofficer = \"officer@de-police\"\ncount = 0\n";
    let report = play_text("expiry by the gateway clock", steps, std::time::Duration::from_secs(10))?;
    let failed: Vec<String> = report
        .checks
        .iter()
        .filter_map(|c| match &c.verdict {
            Verdict::Pass => None,
            other => Some(format!("step {}: {}: {other:?}", c.step, c.what)),
        })
        .collect();
    if !failed.is_empty() || report.checks.len() != 9 {
        return Err(format!("{} check(s), not passed: {failed:#?}", report.checks.len()).into());
    }
    Ok(())
}

fn main() {
    let args = Arguments::from_args();
    let mut trials: Vec<Trial> = shipped()
        .into_iter()
        .map(|file| {
            let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            Trial::test(format!("scenario::{name}"), move || passes(&file))
        })
        .collect();
    trials
        .push(Trial::test("together_they_exercise_every_default_policy", together_they_exercise_every_default_policy));
    trials.push(Trial::test("a_wrong_expectation_fails_and_names_itself", a_wrong_expectation_fails_and_names_itself));
    trials.push(Trial::test(
        "a_denied_check_reads_the_inbox_after_deliveries_in_flight",
        a_denied_check_reads_the_inbox_after_deliveries_in_flight,
    ));
    trials.push(Trial::test(
        "expect_nothing_reads_the_agency_after_deliveries_in_flight",
        expect_nothing_reads_the_agency_after_deliveries_in_flight,
    ));
    trials.push(Trial::test(
        "failures_read_as_a_scenario_file_writes_them",
        failures_read_as_a_scenario_file_writes_them,
    ));
    trials.push(Trial::test(
        "expect_audit_waits_for_a_record_written_later",
        expect_audit_waits_for_a_record_written_later,
    ));
    trials.push(Trial::test(
        "lifecycle_expectations_fail_saying_what_they_found",
        lifecycle_expectations_fail_saying_what_they_found,
    ));
    trials.push(Trial::test(
        "expires_in_follows_the_gateway_clock_and_hit_closed_names_the_officer",
        expires_in_follows_the_gateway_clock_and_hit_closed_names_the_officer,
    ));
    libtest_mimic::run(&args, trials).exit();
}
