//! The gateway as a real process, killed with SIGKILL at random moments while
//! two publishers and two subscribers work: after every restart each publish
//! it acknowledged is in the audit log and every checkpoint seen before a
//! crash is consistent with the tree after it; at the end every acknowledged
//! alert reached each of its recipients (duplicates dropped by alert id), and
//! every alert a subscriber received has a disclosure record.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use std::collections::{BTreeMap, BTreeSet};

use isx_core::wire::subscribe_response::Event;
use isx_core::wire::{Checkpoint, Operation, SearchRequest};
use isx_node::{Client, ClientOptions};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

const ROUNDS: u64 = 20;

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

/// Why this test reads the log: the integrity of the data across crashes.
fn integrity() -> isx_core::wire::ReadReason {
    isx_core::read_reason::reason(isx_core::wire::ReadPurpose::Integrity, "crash test")
}

/// Alert ids of every record of `operation` by or to `node` (paginated).
async fn ids_of(auditor: &Client, operation: Operation, node: &str) -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    let mut req = SearchRequest { operation: operation as i32, node: node.into(), limit: 1000, ..Default::default() };
    for _ in 0..10_000 {
        let page = isx_node::audit::search(auditor, &integrity(), req.clone()).await.unwrap();
        ids.extend(page.entries.iter().filter_map(|e| e.record.as_ref()).map(|r| r.alert_id.clone()));
        match page.entries.last() {
            Some(last) if page.more => req.after_seq = last.seq,
            _ => break,
        }
    }
    ids
}

/// What a subscriber received: alert ids (deduplicated) and how many copies came in all.
#[derive(Default)]
struct Received {
    ids: BTreeSet<String>,
    copies: u64,
}

/// Subscribes as `node` to whatever gateway `addr` names, storing and acking
/// each delivery, reconnecting after every crash, until `stop`.
async fn subscriber(
    pki: PathBuf,
    node: &'static str,
    mut addr: watch::Receiver<String>,
    got: Arc<Mutex<Received>>,
    stop: CancellationToken,
) {
    while !stop.is_cancelled() {
        let current = addr.borrow_and_update().clone();
        if current.is_empty() {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = addr.changed() => continue,
            }
        }
        let session = async {
            let client = Client::connect(&options(&pki, node, &current)).await.ok()?;
            let mut stream = client.subscribe(0).await.ok()?;
            while let Ok(Some(msg)) = stream.message().await {
                if let Some(Event::Delivery(d)) = msg.event {
                    let id = d.alert.map(|a| a.alert_id).unwrap_or_default();
                    let mut g = got.lock().unwrap();
                    g.copies += 1;
                    g.ids.insert(id);
                }
                client.ack(msg.cursor).await.ok()?;
            }
            Some(())
        };
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = session => {}
        }
        // The gateway is down: wait for the next address (bounded by `stop`).
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = addr.changed() => {}
        }
    }
}

/// A small deterministic generator for the kill moments (seed printed for reruns).
fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_loses_no_acknowledged_record_and_keeps_checkpoints_consistent() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = tmp.path().join("pki");
    let out = isx()
        .args([
            "pki",
            "init",
            "--dir",
            pki.to_str().unwrap(),
            "--nodes",
            "de-police,it-police,fr-police,europol,auditor",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let policy = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/local/policy");
    let config = tmp.path().join("gateway.toml");
    let mut nodes = String::new();
    for (id, kind, country) in [
        ("de-police", "national", "DE"),
        ("it-police", "national", "IT"),
        ("fr-police", "national", "FR"),
        ("europol", "europol", "EU"),
        ("auditor", "auditor", "EU"),
    ] {
        nodes.push_str(&format!("[nodes.{id}]\nkind = \"{kind}\"\ncountry = \"{country}\"\n"));
    }
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\npki_dir = {pki:?}\ndata_dir = {:?}\npolicy_dir = {policy:?}\n[audit]\ncheckpoint_every_ms = 20\n{nodes}",
            tmp.path().join("data")
        ),
    )
    .unwrap();
    let key = std::fs::read_to_string(pki.join("audit.pub")).unwrap();
    let mut seed: u64 = std::env::var("ISX_CRASH_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1
    });
    eprintln!("crash test seed: {seed} (rerun with ISX_CRASH_SEED={seed})");

    // (publisher, its recipients) and what each publisher had acknowledged.
    let routes: [(&str, &[&str]); 2] = [("de-police", &["fr-police", "europol"]), ("it-police", &["fr-police"])];
    let acked: Arc<Mutex<BTreeMap<&str, Vec<String>>>> = Arc::default();
    let received: BTreeMap<&str, Arc<Mutex<Received>>> =
        [("fr-police", Arc::default()), ("europol", Arc::default())].into_iter().collect();
    let stop = CancellationToken::new();
    let (addr_tx, addr_rx) = watch::channel(String::new());
    let mut subscribers = Vec::new();
    for (node, got) in &received {
        subscribers.push(tokio::spawn(subscriber(pki.clone(), node, addr_rx.clone(), got.clone(), stop.clone())));
    }

    let mut saved: Option<Checkpoint> = None;
    let mut records_checked = 0;
    for round in 0..=ROUNDS {
        let (mut child, addr) = start(&config);
        addr_tx.send_replace(addr.clone());
        let auditor = Client::connect(&options(&pki, "auditor", &addr)).await.unwrap();
        // Every few lives, and in the last: everything verifies (every record
        // hashed again, every index compared) and extends the checkpoint seen
        // before. In between, the signed checkpoint must extend it.
        if round % 5 == 0 || round == ROUNDS {
            let report =
                isx_node::audit::verify_live(&auditor, &integrity(), Some(&key), saved.as_ref(), &|_, _, _| {})
                    .await
                    .unwrap();
            records_checked += report.checkpoint.tree_size;
            saved = Some(report.checkpoint);
        } else {
            let cp = isx_node::audit::checkpoint(&auditor, &integrity()).await.unwrap();
            let verified = isx_audit::verify::checkpoint(&cp, Some(&key)).unwrap();
            if let Some(old) = &saved {
                let old = isx_audit::verify::checkpoint(old, Some(&key)).unwrap();
                let proof =
                    isx_node::audit::consistency_proof(&auditor, &integrity(), old.size, verified.size).await.unwrap();
                isx_audit::verify::consistency(&old, &verified, &proof).unwrap();
            }
            saved = Some(cp);
        }
        for (publisher, _) in routes {
            let ids = ids_of(&auditor, Operation::Collection, publisher).await;
            let acked = acked.lock().unwrap().get(publisher).cloned().unwrap_or_default();
            let missing: Vec<&String> = acked.iter().filter(|id| !ids.contains(*id)).collect();
            assert!(
                missing.is_empty(),
                "round {round}: {publisher}'s acknowledged publishes without a record: {missing:?}"
            );
        }
        if round == ROUNDS {
            // The last life: let the subscribers catch up, then check delivery and disclosure.
            let everything_arrived = || {
                let acked = acked.lock().unwrap();
                routes.iter().all(|(publisher, to)| {
                    let sent = acked.get(publisher).cloned().unwrap_or_default();
                    to.iter().all(|node| {
                        let got = received[node].lock().unwrap();
                        sent.iter().all(|id| got.ids.contains(id))
                    })
                })
            };
            let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
            while !everything_arrived() {
                assert!(tokio::time::Instant::now() < deadline, "some acknowledged alerts never reached a recipient");
                let _ = tokio::time::timeout(Duration::from_millis(100), stop.cancelled()).await;
            }
            for (node, got) in &received {
                let disclosed = ids_of(&auditor, Operation::Disclosure, node).await;
                let got = got.lock().unwrap();
                let unrecorded: Vec<&String> = got.ids.iter().filter(|id| !disclosed.contains(*id)).collect();
                assert!(unrecorded.is_empty(), "{node} received alerts without a disclosure record: {unrecorded:?}");
                eprintln!("{node}: {} alerts, {} copies (duplicates dropped)", got.ids.len(), got.copies);
            }
            stop.cancel();
            child.kill().unwrap();
            let _ = child.wait();
            break;
        }

        // Publish as fast as possible from two nodes, then SIGKILL at a random moment.
        let mut publishers = Vec::new();
        for (publisher, to) in routes {
            let client = Client::connect(&options(&pki, publisher, &addr)).await.unwrap();
            let acked = acked.clone();
            publishers.push(tokio::spawn(async move {
                for _ in 0..100_000 {
                    let alert = isx_testkit::samples::migrant_smuggling(publisher, to);
                    match client.publish(alert.clone()).await {
                        Ok(_) => acked.lock().unwrap().entry(publisher).or_default().push(alert.alert_id),
                        Err(_) => break,
                    }
                }
            }));
        }
        tokio::time::sleep(Duration::from_millis(20 + next(&mut seed) % 250)).await;
        child.kill().unwrap();
        let _ = child.wait();
        for p in publishers {
            let _ = tokio::time::timeout(Duration::from_secs(30), p).await;
        }
    }
    for s in subscribers {
        let _ = tokio::time::timeout(Duration::from_secs(30), s).await;
    }
    let total: usize = acked.lock().unwrap().values().map(Vec::len).sum();
    eprintln!("{ROUNDS} SIGKILLs survived; {total} acknowledged publishes; {records_checked} audit records verified");
    assert!(total > ROUNDS as usize, "publishes were acknowledged between crashes");
}
