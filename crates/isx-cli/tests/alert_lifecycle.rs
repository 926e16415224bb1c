//! `isx alert withdraw|amend|status` as users run them, against an
//! in-process topology over mTLS: the refusals in plain words (a node that
//! is not the origin, an unknown alert, a stale version), and the status
//! table and JSON with each copy's confirmation, also while one holder is
//! offline.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use isx_core::NodeId;
use isx_core::wire::ChangeKind;
use isx_node::NodeEvent;
use tokio::sync::mpsc::UnboundedReceiver;

/// How long one `isx` run, or a wait for a confirmation, may take; reached
/// only when something hangs.
const LIMIT: Duration = Duration::from_secs(120);

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs `isx args` from the repository root to the end, within [`LIMIT`]
/// (a child still running then is killed and the test fails).
fn isx(args: &[String]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_isx"))
        .args(args)
        .current_dir(repo())
        .env_remove("ISX_GATEWAY")
        .env_remove("ISX_OFFICER")
        .env_remove("ISX_AS")
        .env_remove("ISX_PKI")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("isx starts");
    let read = |mut from: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = from.read_to_end(&mut buf);
            buf
        })
    };
    let stdout = read(Box::new(child.stdout.take().unwrap()));
    let stderr = read(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + LIMIT;
    // Bounded: polls until the deadline, then kills.
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("isx {args:?} still runs after {LIMIT:?} (killed)");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Output { status, stdout: stdout.join().unwrap(), stderr: stderr.join().unwrap() }
}

/// [`isx`] off the async runtime, so that the in-process gateway keeps serving.
async fn run(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || isx(&args)).await.unwrap()
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// `head`, then `--as NODE --pki P --gateway A --officer O` for the topology, then `tail`.
fn cmd(topo: &isx_testkit::Topology, head: &[&str], node: &str, tail: &[&str]) -> Vec<String> {
    let (pki, addr) = (topo.pki_dir().display().to_string(), topo.gateway_addr().to_string());
    let who = ["--as", node, "--pki", &pki, "--gateway", &addr, "--officer", "Cdt. L. Moreau"];
    head.iter().chain(who.iter()).chain(tail.iter()).map(|s| (*s).to_owned()).collect()
}

/// Waits until `node` reports that it applied and confirmed a change of `kind` to `alert_id`.
async fn confirmed(events: &mut UnboundedReceiver<(NodeId, NodeEvent)>, node: &str, alert_id: &str, kind: ChangeKind) {
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        let event = tokio::time::timeout_at(deadline, events.recv())
            .await
            .unwrap_or_else(|_| panic!("{node} did not confirm the {kind:?} of {alert_id}"))
            .expect("the event channel stays open");
        if let (n, NodeEvent::Changed { alert_id: id, kind: k, .. }) = event
            && n.as_str() == node
            && id == alert_id
            && k == kind
        {
            return;
        }
    }
}

/// The table line of `node` in `isx alert status` output.
fn line_of<'a>(out: &'a str, node: &str) -> &'a str {
    out.lines().find(|l| l.starts_with(&format!("{node} "))).unwrap_or_else(|| panic!("no line for {node}:\n{out}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_origin_may_withdraw_and_status_shows_who_confirmed() {
    let (tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    let mut topo = isx_testkit::Topology::start_with_events(isx_testkit::TopologySpec::default_agencies(), Some(tx))
        .await
        .unwrap();
    let alert = isx_testkit::samples::trafficking_victim("fr-police", &["de-police", "europol"]);
    let id = alert.alert_id.clone();
    topo.client("fr-police").await.unwrap().publish(alert).await.unwrap();
    for node in ["de-police", "europol"] {
        assert!(topo.inbox(node).wait_for(&id, LIMIT).await.unwrap().is_some(), "{node} received it");
    }

    // A recipient is not the origin: refused, in words, with the fix.
    let out = run(cmd(&topo, &["alert", "withdraw", &id], "de-police", &["--reason", "not mine"])).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with(&format!(
            "error: only the origin of alert {id} may withdraw it, and you act as de-police: run it as the node that published the alert"
        )),
        "{err}"
    );
    assert!(err.contains("PERMISSION_DENIED") && err.contains("rule origin-only"), "{err}");
    assert!(topo.inbox("de-police").get(&id).unwrap().unwrap().delivery.is_some(), "nothing changed");

    // An unknown alert, and a stale version.
    let out = run(cmd(&topo, &["alert", "status", "no-such-alert"], "fr-police", &[])).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("error: the gateway holds no alert no-such-alert"), "{}", text(&out));
    let status = run(cmd(&topo, &["alert", "status", &id], "de-police", &[])).await;
    assert_eq!(status.status.code(), Some(1), "{}", text(&status));
    assert!(text(&status).contains("or an auditor whose scope covers it, may see its status"), "{}", text(&status));

    // The origin withdraws while europol is offline: status shows it unconfirmed (exit 3).
    topo.stop_node("europol").await.unwrap();
    let out = run(cmd(&topo, &["alert", "withdraw", &id], "fr-police", &["--reason", "identity mix-up"])).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains(&format!("alert {id} withdrawn")), "{}", text(&out));
    confirmed(&mut events, "de-police", &id, ChangeKind::Withdrawal).await;
    let out = run(cmd(&topo, &["alert", "status", &id], "fr-police", &[])).await;
    let table = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(3), "some copies unconfirmed:\n{}", text(&out));
    assert!(table.starts_with(&format!("alert {id} from fr-police: withdrawn, version 1")), "{table}");
    let de = line_of(&table, "de-police");
    assert!(de.contains("withdrawal") && de.contains("deleted v1") && de.ends_with(" no"), "{de}");
    let europol = line_of(&table, "europol");
    assert!(europol.contains("withdrawal") && europol.contains(" - ") && europol.ends_with("not yet"), "{europol}");
    assert!(table.contains("1 of 2 copies confirmed; 0 overdue"), "{table}");

    // Back online, it deletes and confirms: every copy confirmed (exit 0), in JSON too.
    topo.start_node("europol").await.unwrap();
    confirmed(&mut events, "europol", &id, ChangeKind::Withdrawal).await;
    let out = run(cmd(&topo, &["alert", "status", &id], "fr-police", &["--json"])).await;
    assert!(out.status.success(), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["state"], "ALERT_STATE_WITHDRAWN", "{v}");
    let copies = v["copies"].as_array().unwrap();
    assert_eq!(copies.len(), 2, "{v}");
    for c in copies {
        assert_eq!((c["confirmed"].as_str(), c["settled"].as_bool()), (Some("COPY_STATE_DELETED"), Some(true)), "{c}");
    }

    // A withdrawn alert cannot be amended: told with the way to see why.
    let file = topo.root().join("corrected.json");
    let mut corrected = isx_testkit::samples::trafficking_victim("fr-police", &["de-police"]);
    corrected.alert_id = id.clone();
    std::fs::write(&file, isx_core::json::to_json(&corrected)).unwrap();
    let out = run(cmd(
        &topo,
        &["alert", "amend", &file.display().to_string()],
        "fr-police",
        &["--replaces-version", "1", "--reason", "too late"],
    ))
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("error: alert {id} cannot be amended as asked now: see its current version and state with `isx alert status {id}`")),
        "{}",
        text(&out)
    );
    topo.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_amendment_from_a_file_prints_its_receipt_and_a_stale_version_names_the_current_one() {
    let (tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    let topo = isx_testkit::Topology::start_with_events(isx_testkit::TopologySpec::default_agencies(), Some(tx))
        .await
        .unwrap();
    let alert = isx_testkit::samples::trafficking_victim("fr-police", &["de-police"]);
    let id = alert.alert_id.clone();
    topo.client("fr-police").await.unwrap().publish(alert.clone()).await.unwrap();
    assert!(topo.inbox("de-police").wait_for(&id, LIMIT).await.unwrap().is_some());

    let mut corrected = alert.clone();
    corrected.narrative = "Corrected: seen in Lyon on 2 December, not in Marseille.".into();
    let file = topo.root().join("corrected.json");
    std::fs::write(&file, isx_core::json::to_json(&corrected)).unwrap();
    let path = file.display().to_string();
    let amend = |version: &str| {
        cmd(
            &topo,
            &["alert", "amend", &path],
            "fr-police",
            &["--replaces-version", version, "--reason", "place corrected"],
        )
    };
    let out = run(amend("1")).await;
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(&format!("alert {id} accepted at")), "{stdout}");
    assert!(stdout.contains("version 2, replacing sha256:"), "{stdout}");
    assert!(stdout.contains(&format!("follow the confirmations with `isx alert status {id}`")), "{stdout}");
    confirmed(&mut events, "de-police", &id, ChangeKind::Update).await;
    let copy = topo.inbox("de-police").get(&id).unwrap().unwrap();
    assert_eq!(copy.version, 2);
    assert_eq!(copy.delivery.unwrap().alert.unwrap().narrative, corrected.narrative);

    // The same amendment again is a retry: its receipt.
    let out = run(amend("1")).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("(this amendment was already made: its receipt)"), "{}", text(&out));

    // Another one on version 1: refused, naming the current version.
    corrected.narrative = "Corrected again, on the old version.".into();
    std::fs::write(&file, isx_core::json::to_json(&corrected)).unwrap();
    let out = run(amend("1")).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with(&format!("error: alert {id} cannot be amended as asked now")), "{err}");
    assert!(err.contains("field replaces_version: the current version is 2"), "{err}");

    let out = run(cmd(&topo, &["alert", "status", &id], "fr-police", &[])).await;
    assert!(out.status.success(), "{}", text(&out));
    let table = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(table.contains("  version 1 sha256:") && table.contains("  version 2 sha256:"), "{table}");
    let de = line_of(&table, "de-police");
    assert!(de.contains("full") && de.contains("update") && de.contains("held v2"), "{de}");
    topo.shutdown().await;
}
