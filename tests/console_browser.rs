//! The console in a real browser: headless Chromium over WebDriver
//! (`isx_system_tests::browser`), against a console started on 127.0.0.1:0
//! over a real gateway and agencies (the showcase played through), or over
//! the shipped policy alone.
//!
//! Without Chromium and chromedriver on the machine each test prints a
//! `skipped:` line and passes; `.ci/run` sets ISX_REQUIRE_BROWSER=1, so there
//! a skip fails. Each test saves a screenshot under
//! `target/browser-screenshots/` when it fails. With
//! ISX_UPDATE_SCREENSHOTS=1 the two README screenshots are written to `docs/`
//! (otherwise to `target/browser-screenshots/`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use isx_console::{Console, ConsoleOptions, PolicySetup};
use isx_core::wire::SearchRequest;
use isx_system_tests::browser::{Browser, BrowserError};
use isx_testkit::Topology;
use isx_testkit::scenario::Scenario;
use isx_testkit::scenario::run::Options;
use prost::Message;

const LIMIT: Duration = Duration::from_secs(15);

fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").canonicalize().unwrap().join(path)
}

/// Where a README screenshot goes: `docs/` when asked, else `target/`.
fn screenshot(name: &str) -> PathBuf {
    if std::env::var_os("ISX_UPDATE_SCREENSHOTS").is_some_and(|v| v == "1") {
        repo("docs").join(name)
    } else {
        isx_system_tests::browser::screenshot_dir().join(name)
    }
}

/// A topology on which the showcase has been played, as `isx demo` plays it.
async fn showcase() -> Topology {
    let source = isx_testkit::demo::embedded();
    let scenario = Scenario::load_from(Path::new(isx_testkit::demo::SHOWCASE), &source).unwrap();
    let mut topo = Topology::start(scenario.spec.clone()).await.unwrap();
    let report =
        isx_testkit::scenario::run::run(&scenario, &mut topo, &source, &Options { limit: LIMIT }, &mut |_| {}).await;
    assert!(report.checks.iter().all(|c| c.ok()), "the showcase holds");
    topo
}

/// A console over `topo` as the auditor, the checkpoint key pinned.
async fn auditor_console(topo: &Topology) -> Console {
    let mut who = topo.client_options("auditor").unwrap();
    who.officer = "browser-auditor".into();
    let key = std::fs::read_to_string(topo.pki_dir().join("audit.pub")).unwrap();
    isx_console::start(ConsoleOptions {
        auditor: Some(who),
        trust: isx_audit::verify::Trust::new(Some(key.trim().to_owned()), None).unwrap(),
        ..Default::default()
    })
    .await
    .unwrap()
}

fn policy_setup() -> PolicySetup {
    let config = isx_gateway::GatewayConfig::load(&repo("deploy/local/gateway.toml")).unwrap();
    PolicySetup {
        nodes: config.node_infos(),
        profile: config.redaction.clone(),
        policy_dir: repo("deploy/local/policy"),
        draft_dir: None,
        alerts: isx_policy::matrix::sample_alerts(),
    }
}

/// The shipped policy with one rule changed: Frontex's ban on full views
/// becomes a permit of full views on migrant smuggling.
fn frontex_full_draft() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(repo("deploy/local/policy")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dir.path().join(e.file_name())).unwrap();
    }
    let path = dir.path().join("agencies.cedar");
    let text = std::fs::read_to_string(&path).unwrap();
    let from = text.find("@id(\"frontex-depersonalised\")").unwrap();
    let to = from + text[from..].find("};").unwrap() + 2;
    let rule = "@id(\"frontex-full-smuggling\")\n@reason(\"Frontex receives migrant smuggling in full.\")\n\
                permit (principal, action == Action::\"disclose_full\", resource)\n\
                when { principal.kind == NodeKind::\"frontex\" && resource.category == Category::\"migrant_smuggling\" };";
    std::fs::write(&path, format!("{}{rule}{}", &text[..from], &text[to..])).unwrap();
    dir
}

/// The console's base URL (no token).
fn base(console: &Console) -> String {
    format!("http://{}", console.addr())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_auditor_finds_who_received_data_about_the_trafficked_girl() -> Result<(), BrowserError> {
    let Some(browser) = Browser::start("console_subject_search").await? else { return Ok(()) };
    let topo = showcase().await;
    let console = auditor_console(&topo).await;
    // The printed URL: its token becomes the cookie and leaves the address bar.
    browser.goto(&console.url()).await?;
    browser.wait_for_text("h1", "Audit log overview").await?;
    assert!(!browser.current_url().await?.contains("token="));
    // "Verify now": the script posts the form, follows the progress, and the
    // page comes back with the verdict and the charts of the verified records.
    browser.wait_for_text("#verify-result", "OK:").await?;
    let first = browser.text("#verify-result .when").await?;
    browser.click("#verify-now").await?;
    // Bounded: 100 looks, 100 ms apart.
    let mut again = String::new();
    for _ in 0..100 {
        again = browser.text("#verify-result .when").await.unwrap_or_default();
        if !again.is_empty() && again != first {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_ne!(again, first, "verify now ran a second verification");
    assert!(browser.text("#verify-result").await?.contains("OK:"));
    browser.wait_for("#ops-title ~ svg.chart").await?;

    // Search by her identity card: the document goes only in the POST body.
    browser.goto(&format!("{}/search", base(&console))).await?;
    browser.fill("input[name=document_country]", "RO").await?;
    browser.fill("input[name=document_number]", "RX771203").await?;
    browser.fill("input[name=justification]", "data-subject request 2026/31").await?;
    browser.submit("#search-form").await?;
    browser.wait_for("#results-summary").await?;
    let url = browser.current_url().await?;
    assert!(!url.contains("RX771203") && !url.contains("RO"), "{url}");
    let links: Vec<String> = browser
        .execute("return Array.from(document.querySelectorAll('a[href]')).map(a => a.href)", vec![])
        .await?
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap_or_default().to_owned())
        .collect();
    assert!(links.iter().all(|l| !l.contains("RX771203")), "{links:?}");

    // Every delivery of her alert, at the level each agency got.
    let ops = browser.texts("tbody.record > tr:first-child > td:nth-child(4)").await?;
    let nodes = browser.texts("tbody.record > tr:first-child > td:nth-child(5)").await?;
    let levels = browser.texts("tbody.record > tr:first-child > td:nth-child(8)").await?;
    let delivered: Vec<(String, String)> = ops
        .iter()
        .zip(&nodes)
        .zip(&levels)
        .filter(|((op, _), _)| op.as_str() == "disclosure")
        .map(|((_, n), l)| (n.clone(), l.clone()))
        .collect();
    for expected in [("de-police", "full"), ("it-police", "full"), ("europol", "full"), ("frontex", "redacted")] {
        assert!(delivered.iter().any(|(n, l)| n == expected.0 && l == expected.1), "{expected:?} in {delivered:?}");
    }
    assert_eq!(browser.count("[data-verdict=bad]").await?, 0);

    // Open the newest disclosure: its record and its proof, verified here.
    let row = browser
        .execute(
            "const r = Array.from(document.querySelectorAll('tbody.record')).find(t => t.dataset.operation === 'disclosure'); \
             return r.id;",
            vec![],
        )
        .await?;
    let row = row.as_str().unwrap().to_owned();
    browser.click(&format!("#{row} details > summary")).await?;
    let verdict = browser.wait_for_text(&format!("#{row} .proof-verdict"), "included in the signed tree").await?;
    assert!(verdict.contains('✓'), "{verdict}");
    browser.execute("document.getElementById('results-title').scrollIntoView()", vec![]).await?;
    browser.save_screenshot_to(screenshot("console-search.png")).await?;

    // The subject report answers the question in one table.
    browser.goto(&format!("{}/subject", base(&console))).await?;
    browser.fill("input[name=document_country]", "RO").await?;
    browser.fill("input[name=document_number]", "RX771203").await?;
    browser.submit("#subject-form").await?;
    let table = browser.wait_for_text("#report-table", "delivered to frontex (redacted)").await?;
    assert!(table.contains("granted: frontex receives the alert redacted"), "{table}");
    assert!(table.contains("frontex-border-crime"), "{table}");

    // The console's reads are in the log under the auditor's officer name.
    let reads =
        topo.audit_records(SearchRequest { officer: "browser-auditor".into(), ..Default::default() }).await.unwrap();
    assert!(reads.len() >= 3, "{reads:?}");
    browser.close().await?;
    console.shutdown().await.unwrap();
    topo.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_bundle_shows_a_cross_on_the_changed_record() -> Result<(), BrowserError> {
    let Some(browser) = Browser::start("console_tampered_bundle").await? else { return Ok(()) };
    let topo = showcase().await;
    let console = auditor_console(&topo).await;
    let auditor = topo.client("auditor").await.unwrap();
    let filter = SearchRequest { operation: isx_core::wire::Operation::Disclosure as i32, ..Default::default() };
    let mut bundle =
        isx_node::audit::export(&auditor, &isx_testkit::testkit_reason(), "browser test", filter).await.unwrap();
    assert!(bundle.entries.len() >= 4);
    // An operator rewrites one record, body and all: who received it.
    let changed = &mut bundle.entries[2];
    let mut record = changed.record.clone().unwrap();
    // (Deliveries to different agencies are recorded in either order.)
    record.node = if record.node == "it-police" { "de-police" } else { "it-police" }.into();
    changed.body = record.encode_to_vec();
    changed.record = Some(record);
    let seq = changed.seq;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tampered-bundle.json");
    std::fs::write(&file, isx_core::json::to_json(&bundle)).unwrap();

    browser.goto(&console.url()).await?;
    browser.goto(&format!("{}/bundle", base(&console))).await?;
    browser.find("#bundle-file").await?.send_keys(file.to_str().unwrap()).await.unwrap();
    browser.wait_for("#bundle-name[value='tampered-bundle.json']").await?;
    browser.submit("#bundle-form").await?;
    let verdict = browser.wait_for_text("#bundle-verdict", "do not verify").await?;
    assert!(verdict.contains(&format!("1 of {} entries", bundle.entries.len())), "{verdict}");
    // Each row's first line carries its mark.
    assert_eq!(browser.count(&format!("#record-{seq} > tr:first-child .mark.bad")).await?, 1);
    assert_eq!(browser.count("tbody.record > tr:first-child .mark.bad").await?, 1, "only the changed record fails");
    assert_eq!(browser.count("tbody.record > tr:first-child .mark.ok").await?, bundle.entries.len() - 1);
    let why = browser.attr(&format!("#record-{seq} > tr:first-child .mark.bad"), "title").await?.unwrap_or_default();
    assert!(why.contains("does not hash to its leaf hash"), "{why}");
    browser.close().await?;
    console.shutdown().await.unwrap();
    topo.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_matrix_shows_the_documented_levels_and_exactly_what_a_draft_changes() -> Result<(), BrowserError> {
    let Some(browser) = Browser::start("console_matrix").await? else { return Ok(()) };
    let console =
        isx_console::start(ConsoleOptions { policy: Some(policy_setup()), ..Default::default() }).await.unwrap();
    browser.goto(&console.url()).await?;
    browser.wait_for("#matrix").await?;
    let cell = |alert: &str, node: &str| format!("tr[data-alert='{alert}'] td[data-node='{node}']");
    // The levels deploy/local/policy/tests.toml documents.
    for (alert, node, level) in [
        ("smuggling-network", "frontex", "redacted"),
        ("trafficking-victim", "frontex", "denied"),
        ("foreign-fighter", "europol", "redacted"),
    ] {
        assert_eq!(browser.attr(&cell(alert, node), "data-level").await?.as_deref(), Some(level), "{alert} {node}");
        assert_eq!(browser.text(&format!("{} button.level", cell(alert, node))).await?, level);
    }
    // Keyboard focus shows the deciding rule and its reason.
    browser.click(&format!("{} button.level", cell("smuggling-network", "frontex"))).await?;
    let why = browser.text(&format!("{} .why", cell("smuggling-network", "frontex"))).await?;
    assert!(why.contains("@id(\"frontex-border-crime\")") && why.contains("Withheld:"), "{why}");

    // A draft that fails to validate shows where.
    let broken = frontex_full_draft();
    std::fs::write(broken.path().join("labels.cedar"), "permit (principal, action, resource) when { nope };\n")
        .unwrap();
    browser.fill("#draft-dir", broken.path().to_str().unwrap()).await?;
    browser.submit("#draft-form").await?;
    browser.wait_for_text("#draft-errors", "labels.cedar:").await?;

    // The draft that lets Frontex receive migrant smuggling in full: one cell changes.
    let draft = frontex_full_draft();
    browser.fill("#draft-dir", draft.path().to_str().unwrap()).await?;
    browser.submit("#draft-form").await?;
    browser.wait_for_text("#draft-summary", "cell(s) change").await?;
    assert_eq!(browser.count("td.changed").await?, 1);
    let changed = cell("smuggling-network", "frontex") + ".changed";
    assert_eq!(browser.attr(&changed, "data-changed").await?.as_deref(), Some("redacted->full"));
    let text = browser.text(&changed).await?;
    assert!(text.contains("redacted → full") && text.contains("frontex-full-smuggling"), "{text}");
    browser.save_screenshot_to(screenshot("console-matrix.png")).await?;

    // The rule table flags the rules that decide no cell.
    browser.goto(&format!("{}/policy/rules", base(&console))).await?;
    assert_eq!(browser.attr("tr[data-rule='frontex-border-crime']", "data-fires").await?.as_deref(), Some("true"));
    assert_eq!(browser.attr("tr[data-rule='tlp-red-addressees-only']", "data-fires").await?.as_deref(), Some("false"));
    browser.close().await?;
    console.shutdown().await.unwrap();
    Ok(())
}
