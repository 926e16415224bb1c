//! Whole-system tests of witnessed checkpoints (#18): the gateway publishes
//! checkpoints its witnesses cosigned, a restored (older) data directory is
//! refused at start naming the witness, a fork is refused by the witness,
//! sharing goes on while witnesses are away (and health says so), and the
//! quorum decides.

use std::path::Path;
use std::time::Duration;

use isx_audit::policy::WitnessPolicy;
use isx_core::wire::Checkpoint;
use isx_node::audit as client_audit;
use isx_testkit::{Topology, TopologySpec, samples};

/// Upper bound of every wait on an observable condition.
const LIMIT: Duration = Duration::from_secs(30);

fn spec(witnesses: &[&str], quorum: &str) -> TopologySpec {
    let mut spec = TopologySpec::default_agencies();
    spec.witnesses = witnesses.iter().map(|w| w.to_string()).collect();
    spec.witness_quorum = quorum.into();
    spec
}

async fn checkpoint(topo: &Topology) -> Checkpoint {
    client_audit::checkpoint(&topo.client("auditor").await.unwrap(), &isx_testkit::testkit_reason()).await.unwrap()
}

async fn publish(topo: &Topology, n: usize) {
    let de = topo.client("de-police").await.unwrap();
    for _ in 0..n {
        de.publish(samples::migrant_smuggling("de-police", &["fr-police"])).await.unwrap();
    }
}

fn policy(topo: &Topology) -> WitnessPolicy {
    WitnessPolicy::load(&topo.witness_policy().expect("the topology wrote a witness policy")).unwrap()
}

/// Polls the gateway's overall health until it is `want` (bounded by LIMIT).
async fn health_becomes(topo: &Topology, want: tonic_health::ServingStatus) {
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let client = topo.client("de-police").await.unwrap();
    let mut health = HealthClient::new(client.channel());
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        let status = health.check(HealthCheckRequest { service: String::new() }).await.unwrap().into_inner().status;
        if status == want as i32 {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "health stayed {status}, never {want:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_published_checkpoint_is_cosigned_by_the_witness_and_by_a_witnessing_agency() {
    let mut spec = spec(&["witness"], "all");
    spec.nodes = spec.nodes.into_iter().map(|n| if n.id.as_str() == "europol" { n.witnessing() } else { n }).collect();
    let topo = Topology::start(spec).await.unwrap();
    publish(&topo, 2).await;
    let cp = checkpoint(&topo).await;
    assert!(cp.witnessed, "{cp:?}");
    assert_eq!(cp.cosigners, vec!["witness".to_owned(), "europol".to_owned()]);
    assert_eq!(cp.tree_size, cp.signed_size, "nothing waits for the witnesses");
    assert!(cp.witnessed_at_ms > 0);
    // Three signature lines: the log's, the witness's, the agency's.
    assert_eq!(cp.note.lines().filter(|l| l.starts_with('—')).count(), 3, "{}", cp.note);
    let checked = policy(&topo).check(&cp.note).expect("the published checkpoint meets the policy");
    assert_eq!(checked.checkpoint.size, cp.tree_size);
    assert!(!cp.origin.starts_with("isx.local"), "the origin is the deployment's own: {}", cp.origin);
    topo.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restoring_an_older_data_directory_is_refused_at_start_naming_the_witness() {
    let mut topo = Topology::start(spec(&["witness"], "all")).await.unwrap();
    publish(&topo, 1).await;
    let before = checkpoint(&topo).await;
    assert!(before.witnessed);
    let data = topo.gateway_config().data_dir.clone();
    let saved = topo.root().join("saved-gateway-data");
    topo.stop_gateway().await.unwrap();
    copy_dir(&data, &saved);
    topo.start_gateway().await.unwrap();
    publish(&topo, 3).await;
    let after = checkpoint(&topo).await;
    assert!(after.witnessed && after.tree_size > before.tree_size, "{after:?}");
    topo.stop_gateway().await.unwrap();
    // The operator puts the older copy back.
    std::fs::remove_dir_all(&data).unwrap();
    copy_dir(&saved, &data);
    topo.start_gateway().await.unwrap();
    let error = topo.gateway_exit(LIMIT).await.expect("the start is refused");
    assert!(error.contains("witness witness has cosigned size"), "{error}");
    let cosigned = topo.witness("witness").unwrap().latest(&after.origin).unwrap().size;
    assert!(error.contains(&format!("size {cosigned}")), "names the witness's size: {error}");
    assert!(error.contains("the local audit log (size "), "names the local size: {error}");
    topo.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_witness_that_is_down_lets_checkpoints_lag_and_sharing_continue_and_health_says_so() {
    let mut spec = spec(&["witness"], "all");
    spec.witness.max_age = Duration::from_secs(1);
    spec.witness.timeout = Duration::from_millis(300);
    let mut topo = Topology::start(spec).await.unwrap();
    publish(&topo, 1).await;
    let witnessed = checkpoint(&topo).await;
    assert!(witnessed.witnessed);
    health_becomes(&topo, tonic_health::ServingStatus::Serving).await;

    topo.witness("witness").unwrap().stop().await;
    // Sharing continues: publishes succeed and are delivered.
    publish(&topo, 2).await;
    let lagging = checkpoint(&topo).await;
    assert_eq!(lagging.tree_size, witnessed.tree_size, "the published checkpoint stays the witnessed one");
    assert!(lagging.signed_size > lagging.tree_size, "newer records wait for the witness: {lagging:?}");
    health_becomes(&topo, tonic_health::ServingStatus::NotServing).await;

    topo.witness("witness").unwrap().start().unwrap();
    health_becomes(&topo, tonic_health::ServingStatus::Serving).await;
    let caught_up = checkpoint(&topo).await;
    assert!(caught_up.witnessed && caught_up.tree_size >= lagging.signed_size, "{caught_up:?}");
    topo.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_of_three_witnesses_make_the_quorum_and_one_does_not() {
    let mut spec = spec(&["w1", "w2", "w3"], "2");
    spec.witness.timeout = Duration::from_millis(300);
    let mut topo = Topology::start(spec).await.unwrap();
    publish(&topo, 1).await;
    assert_eq!(checkpoint(&topo).await.cosigners.len(), 3);

    topo.witness("w3").unwrap().stop().await;
    publish(&topo, 1).await;
    let two = checkpoint(&topo).await;
    assert!(two.witnessed && two.tree_size == two.signed_size, "{two:?}");
    assert_eq!(two.cosigners, vec!["w1".to_owned(), "w2".to_owned()]);
    policy(&topo).check(&two.note).unwrap();

    topo.witness("w2").unwrap().stop().await;
    publish(&topo, 1).await;
    let one = checkpoint(&topo).await;
    assert_eq!(one.tree_size, two.tree_size, "one cosignature of three is not a quorum: {one:?}");
    assert!(one.signed_size > one.tree_size);
    topo.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fork_at_the_same_size_is_refused_by_the_witness() {
    let mut topo = Topology::start(spec(&["witness"], "all")).await.unwrap();
    publish(&topo, 2).await;
    let honest = checkpoint(&topo).await;
    assert!(honest.witnessed);
    // A second log with the gateway's own key and another record at the
    // same size: what an operator holding the key could show someone.
    let keys = isx_audit::keys::load(&topo.pki_dir()).unwrap();
    let db = sled::Config::new().temporary(true).open().unwrap();
    let (fork, _) = isx_audit::AuditLog::open(&db, keys, &|_, _| {}).unwrap();
    let records = (0..honest.tree_size)
        .map(|i| isx_core::wire::AuditRecord {
            officer: format!("someone else {i}"),
            node: "de-police".into(),
            ..Default::default()
        })
        .collect();
    fork.append(records, 1).unwrap();
    let note = fork.sign_checkpoint(honest.tree_size).unwrap();
    assert_ne!(fork.root(honest.tree_size).unwrap().to_vec(), honest.root_hash);
    let url = topo.witness("witness").map(|w| w.url()).unwrap();
    let client = isx_witness::client::Client::new(&topo.pki_dir().join("ca.crt"), LIMIT).unwrap();
    let refused = client.add_checkpoint(&url, honest.tree_size, &[], &note).await.unwrap_err();
    match refused {
        isx_witness::client::AddError::Refused { status: 422, message } => {
            assert!(message.contains("fork"), "{message}")
        }
        other => panic!("the witness should refuse the fork with 422: {other}"),
    }
    // The verifier given both checkpoints names the fork.
    let a = isx_audit::verify::checkpoint(&honest, Some(&honest.verifier_key)).unwrap();
    let b = isx_audit::checkpoint::open(&note, &honest.verifier_key).unwrap();
    assert_eq!(
        isx_audit::verify::consistency(&a, &b, &[]),
        Err(isx_audit::verify::VerifyError::Fork { size: honest.tree_size })
    );
    topo.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_witnessing_agency_refuses_an_old_checkpoint_and_reports_it() {
    let mut spec = TopologySpec::default_agencies();
    spec.nodes =
        spec.nodes.into_iter().map(|n| if n.id.as_str() == "it-police" { n.witnessing() } else { n }).collect();
    let topo = Topology::start(spec).await.unwrap();
    publish(&topo, 1).await;
    let old = checkpoint(&topo).await;
    publish(&topo, 2).await;
    let new = checkpoint(&topo).await;
    assert_eq!(new.cosigners, vec!["it-police".to_owned()]);
    let policy = policy(&topo);
    let url = policy.witnesses()[0].url.clone().unwrap();
    let client = isx_witness::client::Client::new(&topo.pki_dir().join("ca.crt"), LIMIT).unwrap();
    // Offer the older checkpoint as if it were new: the agency has seen more.
    let refused = client.add_checkpoint(&url, old.tree_size, &[], &old.note).await.unwrap_err();
    assert!(matches!(refused, isx_witness::client::AddError::Conflict { size } if size == new.tree_size), "{refused}");
    topo.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_gateway_on_a_copy_forks_the_log_and_the_witness_and_the_verifier_catch_it() {
    let mut topo = Topology::start(spec(&["witness"], "all")).await.unwrap();
    publish(&topo, 1).await;
    topo.stop_gateway().await.unwrap();
    let copy = topo.root().join("forked-gateway-data");
    copy_dir(&topo.gateway_config().data_dir, &copy);
    topo.start_gateway().await.unwrap();
    publish(&topo, 2).await;
    let honest = checkpoint(&topo).await;
    assert!(honest.witnessed);

    // The operator, holding the keys, runs a second gateway on the copy
    // (without the witness policy, which would refuse it at start) and
    // records other things in it.
    let mut config = topo.gateway_config().clone();
    config.data_dir = copy;
    config.witness.policy = None;
    let second = isx_gateway::Gateway::open(config).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let stop = tokio_util::sync::CancellationToken::new();
    let serving = tokio::spawn(second.serve(listener, stop.clone()));
    let at_fork = |node: &str| {
        let mut o = topo.client_options(node).unwrap();
        o.gateway = format!("localhost:{port}");
        o
    };
    let fork_de = isx_node::Client::connect(&at_fork("de-police")).await.unwrap();
    let fork_auditor = isx_node::Client::connect(&at_fork("auditor")).await.unwrap();
    let mut forked = client_audit::checkpoint(&fork_auditor, &isx_testkit::testkit_reason()).await.unwrap();
    for _ in 0..50 {
        if forked.tree_size >= honest.tree_size {
            break;
        }
        fork_de.publish(samples::foreign_fighter("de-police", &[])).await.unwrap();
        forked = client_audit::checkpoint(&fork_auditor, &isx_testkit::testkit_reason()).await.unwrap();
    }
    assert!(forked.tree_size >= honest.tree_size, "{forked:?}");

    // Offered to the witness as an extension of what it cosigned, the
    // second log's checkpoint is refused: its tree at that size is another.
    let proof: Vec<[u8; 32]> = client_audit::consistency_proof(
        &fork_auditor,
        &isx_testkit::testkit_reason(),
        honest.tree_size,
        forked.tree_size,
    )
    .await
    .unwrap()
    .into_iter()
    .map(|h| h.try_into().unwrap())
    .collect();
    let url = topo.witness("witness").unwrap().url();
    let client = isx_witness::client::Client::new(&topo.pki_dir().join("ca.crt"), LIMIT).unwrap();
    let refused = client.add_checkpoint(&url, honest.tree_size, &proof, &forked.note).await.unwrap_err();
    assert!(matches!(refused, isx_witness::client::AddError::Refused { status: 422, .. }), "{refused}");

    // The verifier given the second log's whole export and the honest
    // checkpoint names the fork: the same origin and key, another root at
    // the honest size.
    let bundle = client_audit::export(
        &fork_auditor,
        &isx_testkit::testkit_reason(),
        "witness test",
        isx_core::wire::SearchRequest::default(),
    )
    .await
    .unwrap();
    let trust = isx_audit::verify::Trust::new(Some(honest.verifier_key.clone()), None).unwrap();
    let report = isx_audit::verify::bundle(&bundle, &trust, &|_, _| {}).expect("each log verifies on its own");
    let honest_v = trust.check(&honest).unwrap().checkpoint;
    let at_honest_size = isx_audit::checkpoint::Verified {
        root: isx_audit::verify::prefix_root(&bundle.entries, honest.tree_size).expect("a whole-log export"),
        size: honest.tree_size,
        origin: report.checkpoint.origin.clone(),
    };
    let fork = isx_audit::verify::compare(&honest_v, "the gateway", &at_honest_size, "the second gateway")
        .expect_err("two roots at one size");
    assert!(fork.to_string().contains("FORK"), "{fork}");
    stop.cancel();
    serving.await.unwrap().unwrap();
    topo.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_witness_answering_the_gateway_starts_unless_told_to_refuse() {
    // By default: it starts, and sharing works.
    let mut relaxed = spec(&["witness"], "all");
    relaxed.witness.timeout = Duration::from_millis(300);
    let mut topo = Topology::start(relaxed).await.unwrap();
    topo.stop_gateway().await.unwrap();
    topo.witness("witness").unwrap().stop().await;
    topo.start_gateway().await.unwrap();
    publish(&topo, 1).await;
    assert_eq!(topo.gateway_exit(Duration::from_millis(200)).await, None, "the gateway keeps running");
    topo.shutdown().await;

    // With witness.require_at_start: the start is refused, naming why.
    let mut strict = spec(&["witness"], "all");
    strict.witness.timeout = Duration::from_millis(300);
    strict.witness.require_at_start = true;
    let mut topo = Topology::start(strict).await.unwrap();
    publish(&topo, 1).await;
    topo.stop_gateway().await.unwrap();
    topo.witness("witness").unwrap().stop().await;
    topo.start_gateway().await.unwrap();
    let error = topo.gateway_exit(LIMIT).await.expect("the start is refused");
    assert!(error.contains("no witness answered the start-up check (witness: "), "{error}");
    assert!(error.contains("witness.require_at_start is true"), "{error}");
    topo.shutdown().await;
}
