//! The gateway as a real process, killed with SIGKILL at random moments:
//! every publish it acknowledged is in the audit log after the restart, and
//! every checkpoint seen before a crash is consistent with the tree after it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use isx_core::wire::{Checkpoint, Operation, SearchRequest};
use isx_node::{Client, ClientOptions};

const ROUNDS: u64 = 8;

fn isx() -> Command {
    Command::new(env!("CARGO_BIN_EXE_isx"))
}

/// Starts the gateway and waits (bounded) for the line that names its address.
fn start(config: &Path) -> (Child, String) {
    let log = config.with_extension("log");
    let stderr = std::fs::OpenOptions::new().create(true).append(true).open(&log).unwrap();
    let mut child = isx()
        .args(["gateway", "--config", config.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(addr) = line.strip_prefix("isx gateway listening on ") {
                let _ = tx.send(addr.to_owned());
            }
        }
    });
    let addr = rx.recv_timeout(Duration::from_secs(60)).unwrap_or_else(|_| {
        panic!("the gateway did not start:\n{}", std::fs::read_to_string(&log).unwrap_or_default())
    });
    (child, addr)
}

fn options(pki: &Path, node: &str, addr: &str) -> ClientOptions {
    ClientOptions {
        node: isx_core::NodeId::new(node).unwrap(),
        pki_dir: pki.to_owned(),
        gateway: format!("localhost:{}", addr.rsplit_once(':').unwrap().1),
        officer: format!("officer@{node}"),
    }
}

async fn collected_ids(auditor: &Client, size_hint: u64) -> std::collections::BTreeSet<String> {
    let mut ids = std::collections::BTreeSet::new();
    let mut req = SearchRequest {
        operation: Operation::Collection as i32,
        node: "de-police".into(),
        limit: 1000,
        ..Default::default()
    };
    for _ in 0..=size_hint / 1000 + 1 {
        let page = isx_node::audit::search(auditor, req.clone()).await.unwrap();
        ids.extend(page.entries.iter().filter_map(|e| e.record.as_ref()).map(|r| r.alert_id.clone()));
        match page.entries.last() {
            Some(last) if page.more => req.after_seq = last.seq,
            _ => break,
        }
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_loses_no_acknowledged_record_and_keeps_checkpoints_consistent() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = tmp.path().join("pki");
    let out = isx()
        .args(["pki", "init", "--dir", pki.to_str().unwrap(), "--nodes", "de-police,fr-police,auditor"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let policy = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/local/policy");
    let config = tmp.path().join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\npki_dir = {pki:?}\ndata_dir = {:?}\npolicy_dir = {policy:?}\n[audit]\ncheckpoint_every_ms = 20\n\
             [nodes.de-police]\nkind = \"national\"\ncountry = \"DE\"\n[nodes.fr-police]\nkind = \"national\"\ncountry = \"FR\"\n\
             [nodes.auditor]\nkind = \"auditor\"\ncountry = \"EU\"\n",
            tmp.path().join("data")
        ),
    )
    .unwrap();
    let key = std::fs::read_to_string(pki.join("audit.pub")).unwrap();

    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut saved: Option<Checkpoint> = None;
    for round in 0..=ROUNDS {
        let (mut child, addr) = start(&config);
        let auditor = Client::connect(&options(&pki, "auditor", &addr)).await.unwrap();
        // Everything from before the crash verifies and extends what was seen then.
        let report = isx_node::audit::verify_live(&auditor, Some(&key), saved.as_ref(), &|_, _, _| {}).await.unwrap();
        let ids = collected_ids(&auditor, report.checkpoint.tree_size).await;
        let missing: Vec<String> = acked.lock().unwrap().iter().filter(|id| !ids.contains(*id)).cloned().collect();
        assert!(missing.is_empty(), "round {round}: acknowledged publishes without a collection record: {missing:?}");
        saved = Some(report.checkpoint);
        if round == ROUNDS {
            child.kill().unwrap();
            let _ = child.wait();
            break;
        }

        // Publish as fast as possible, then SIGKILL at a moment that varies by round.
        let de = Client::connect(&options(&pki, "de-police", &addr)).await.unwrap();
        let acked_here = acked.clone();
        let publisher = tokio::spawn(async move {
            for _ in 0..100_000 {
                let alert = isx_testkit::samples::migrant_smuggling("de-police", &["fr-police"]);
                match de.publish(alert.clone()).await {
                    Ok(_) => acked_here.lock().unwrap().push(alert.alert_id),
                    Err(_) => break,
                }
            }
        });
        tokio::time::sleep(Duration::from_millis(30 + (round * 37) % 150)).await;
        child.kill().unwrap();
        let _ = child.wait();
        let _ = tokio::time::timeout(Duration::from_secs(30), publisher).await;
    }
    assert!(acked.lock().unwrap().len() > ROUNDS as usize, "publishes were acknowledged between crashes");
}
