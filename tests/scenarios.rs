//! The scenario files in deploy/local/scenarios, run in process: every
//! expectation holds, together they exercise every default policy, and a
//! wrong expectation fails naming itself.

use std::collections::BTreeSet;
use std::path::PathBuf;

use isx_testkit::Topology;
use isx_testkit::scenario::run::{Options, Verdict, run};
use isx_testkit::scenario::{Disk, Scenario};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/local/scenarios")
}

async fn play(scenario: &Scenario, options: &Options) -> isx_testkit::scenario::run::Report {
    let mut topo = Topology::start(scenario.spec.clone()).await.expect("topology starts");
    let report = run(scenario, &mut topo, &Disk, options, &mut |_| {}).await;
    topo.shutdown().await;
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_shipped_scenario_passes_and_together_they_cover_every_default_policy() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(files.len() >= 8, "at least eight scenarios: {files:?}");
    let mut exercised = BTreeSet::new();
    for file in &files {
        let scenario = Scenario::load(file).unwrap_or_else(|e| panic!("{e}"));
        let report = play(&scenario, &Options::default()).await;
        let failed: Vec<String> = report
            .checks
            .iter()
            .filter_map(|c| match &c.verdict {
                Verdict::Fail(why) => Some(format!("step {} (line {}): {}: {why}", c.step, c.line, c.what)),
                _ => None,
            })
            .collect();
        assert!(failed.is_empty(), "{}:\n{}", file.display(), failed.join("\n"));
        assert!(report.checks.len() >= 10, "{} checks little", file.display());
        exercised.extend(report.policies);
    }
    let missing: Vec<String> =
        isx_policy::defaults::policy_ids().into_iter().filter(|id| !exercised.contains(id)).collect();
    assert!(missing.is_empty(), "no scenario exercises {missing:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_expectation_fails_and_names_itself() {
    let text = std::fs::read_to_string(dir().join("06-offline-backlog.toml"))
        .unwrap()
        .replace(
            "receipt = { fr-police = \"full\", frontex = \"redacted\" }",
            "receipt = { fr-police = \"full\", frontex = \"full\" }",
        )
        .replace("level = \"redacted\"", "level = \"full\"");
    let tmp = tempfile::tempdir().unwrap();
    let copy = tmp.path().join("wrong.toml");
    // Keep the alert files reachable from the copy.
    let alerts = dir().join("../alerts");
    std::fs::write(&copy, text.replace("../alerts", alerts.to_str().unwrap())).unwrap();
    let scenario = Scenario::load(&copy).unwrap();
    // A short wait: the wrong level never arrives.
    let report = play(&scenario, &Options { limit: std::time::Duration::from_secs(1) }).await;
    let failed: Vec<(&str, &Verdict)> =
        report.checks.iter().filter(|c| !c.ok()).map(|c| (c.what.as_str(), &c.verdict)).collect();
    assert!(failed.contains(&("receipt: frontex full", &Verdict::Fail("got redacted".into()))), "{failed:?}");
    assert!(
        failed.iter().any(|(what, v)| *what == "frontex receives smuggling-network full"
            && matches!(v, Verdict::Fail(why) if why.contains("it holds it redacted"))),
        "{failed:?}"
    );
    assert_eq!(report.failed(), failed.len());
    // The JUnit report marks the same failures.
    let xml = isx_testkit::scenario::junit::render(&[report]);
    assert!(xml.contains("receipt: frontex full") && xml.contains("<failure message=\"got redacted\"/>"), "{xml}");
}
