//! Whole-system tests of the audit log over mTLS: what is recorded, who may
//! read it, and that it verifies (and that tampering does not).

use std::time::Duration;

use isx_audit::AuditLog;
use isx_audit::verify::{self, VerifyError};
use isx_core::wire::audit_client::AuditClient;
use isx_core::wire::{
    AuditBundle, AuditEntry, AuditRecord, Checkpoint, GetCheckpointRequest, Operation, Outcome, ReadPurpose,
    ReadReason, SearchRequest,
};
use isx_node::audit::{self as client_audit, AuditClientError};
use isx_testkit::{Topology, TopologySpec, samples};
use tonic::Code;

const LIMIT: Duration = Duration::from_secs(20);

/// Why these tests read the log: self-monitoring.
fn why() -> ReadReason {
    isx_core::read_reason::reason(ReadPurpose::SelfMonitoring, "audit tests")
}

/// Why these tests verify the log: its integrity.
fn integrity() -> ReadReason {
    isx_core::read_reason::reason(ReadPurpose::Integrity, "audit tests")
}

async fn topology() -> Topology {
    Topology::start(TopologySpec::default_agencies()).await.expect("topology starts")
}

async fn records(topo: &Topology, req: SearchRequest) -> Vec<isx_core::wire::AuditRecord> {
    let auditor = topo.client("auditor").await.unwrap();
    let page = client_audit::search(&auditor, &why(), SearchRequest { limit: 1000, ..req }).await.unwrap();
    let cp = isx_audit::verify::checkpoint(page.checkpoint.as_ref().unwrap(), None).unwrap();
    for e in &page.entries {
        isx_audit::verify::inclusion(e, &cp).expect("every search result verifies");
    }
    // Justifications are sealed in the log; the topology's PKI holds the key.
    let text = isx_audit::keys::load_text_key(&topo.pki_dir()).unwrap();
    page.entries
        .into_iter()
        .filter_map(|e| e.record)
        .map(|mut r| {
            if let Some(clear) = isx_audit::text::open(&text, &r) {
                r.justification = clear;
            }
            r
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_and_delivery_are_recorded_and_searchable_by_subject() {
    let topo = topology().await;
    let alert = samples::foreign_fighter("de-police", &["fr-police", "europol"]);
    topo.client("de-police").await.unwrap().publish(alert.clone()).await.unwrap();
    for node in ["fr-police", "europol"] {
        assert!(topo.inbox(node).wait_for(&alert.alert_id, LIMIT).await.unwrap().is_some());
    }
    // By subject: the auditor gives the document number; the gateway hashes it.
    let found =
        records(&topo, SearchRequest { subject_identifier: "document:de:c4j9x1r27".into(), ..Default::default() })
            .await;
    let ops: Vec<Operation> = found.iter().map(|r| r.operation()).collect();
    assert_eq!(ops.iter().filter(|o| **o == Operation::Collection).count(), 1, "{ops:?}");
    assert_eq!(ops.iter().filter(|o| **o == Operation::Disclosure).count(), 2, "{ops:?}");
    let collection = found.iter().find(|r| r.operation() == Operation::Collection).unwrap();
    assert_eq!(collection.node, "de-police");
    assert_eq!(collection.officer, "officer@de-police");
    assert_eq!(collection.alert_id, alert.alert_id);
    assert_eq!(collection.purpose, alert.purpose);
    assert_eq!(collection.legal_basis, alert.legal_basis);
    assert_eq!(collection.cert_fingerprint.len(), 64);
    assert!(!collection.policy_version.is_empty());
    assert_eq!(collection.recipients.len(), 2);
    let disclosure = found.iter().find(|r| r.operation() == Operation::Disclosure && r.node == "fr-police").unwrap();
    assert_eq!(disclosure.officer, "officer@fr-police");
    assert_eq!(disclosure.recipients[0].node, "fr-police");
    // By name and date of birth, the same person.
    let by_name = records(
        &topo,
        SearchRequest { subject_identifier: "name:Brandt|Lukas Emil|1994-03-17".into(), ..Default::default() },
    )
    .await;
    assert_eq!(by_name.len(), found.len());

    // No identifier value is stored in any record.
    let auditor = topo.client("auditor").await.unwrap();
    let bundle = client_audit::export(&auditor, &why(), "audit tests", SearchRequest::default()).await.unwrap();
    let bytes: Vec<u8> = bundle.entries.iter().flat_map(|e| e.body.clone()).collect();
    for needle in ["C4J9X1R27", "Brandt", "Lukas", "1994-03-17", "B-KL 4471", "AFIS"] {
        assert!(!bytes.windows(needle.len()).any(|w| w == needle.as_bytes()), "{needle} is in the audit log");
    }
    topo.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denials_and_refused_requests_are_recorded() {
    let topo = topology().await;
    let de = topo.client("de-police").await.unwrap();
    // A spoofed origin.
    let err = de.publish(samples::foreign_fighter("fr-police", &[])).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    // A recipient refused by policy.
    let mut crisis = samples::base(
        "de-police",
        &["europol"],
        isx_core::wire::Category::CrisesAndDisasters,
        isx_core::wire::Action::Inform,
    );
    crisis.narrative = "dam breach".into();
    de.publish(crisis.clone()).await.unwrap();

    let denials = records(
        &topo,
        SearchRequest { operation: Operation::Denial as i32, node: "de-police".into(), ..Default::default() },
    )
    .await;
    assert!(
        denials.iter().any(|r| r.detail.contains("origin-is-caller") && r.outcome() == Outcome::Refused),
        "{denials:?}"
    );
    let refused = denials.iter().find(|r| r.alert_id == crisis.alert_id).expect("the policy denial");
    assert_eq!(refused.recipients[0].node, "europol");
    assert_eq!(refused.policy_ids, vec!["europol-outside-mandate"]);
    topo.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_auditors_read_the_log_and_every_attempt_is_recorded() {
    let topo = topology().await;
    let de = topo.client("de-police").await.unwrap();
    let err = AuditClient::new(de.channel())
        .get_checkpoint(de.request(GetCheckpointRequest { reason: Some(why()) }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(err.message().contains("role-audit"), "{}", err.message());
    let auditor = topo.client("auditor").await.unwrap();
    let err = AuditClient::new(auditor.channel())
        .get_checkpoint(auditor.without_officer().request(GetCheckpointRequest { reason: Some(why()) }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "the auditor's officer is required too");

    let attempts = records(
        &topo,
        SearchRequest { node: "de-police".into(), operation: Operation::Denial as i32, ..Default::default() },
    )
    .await;
    assert!(attempts.iter().any(|r| r.detail.contains("audit log")), "{attempts:?}");
    let reads = records(&topo, SearchRequest { operation: Operation::LogRead as i32, ..Default::default() }).await;
    assert!(reads.iter().all(|r| r.node == "auditor"));
    assert!(!reads.is_empty());
    topo.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_verifies_live_and_as_an_offline_bundle_and_detects_a_fork() {
    let topo = topology().await;
    let de = topo.client("de-police").await.unwrap();
    for _ in 0..3 {
        de.publish(samples::migrant_smuggling("de-police", &["fr-police"])).await.unwrap();
    }
    let auditor = topo.client("auditor").await.unwrap();
    let key = std::fs::read_to_string(topo.pki_dir().join("audit.pub")).unwrap();
    let first = client_audit::verify_live(&auditor, &integrity(), Some(&key), None, &|_, _, _| {}).await.unwrap();
    assert!(first.index_checks > 5);
    de.publish(samples::migrant_smuggling("de-police", &["it-police"])).await.unwrap();
    let second = client_audit::verify_live(&auditor, &integrity(), Some(&key), Some(&first.checkpoint), &|_, _, _| {})
        .await
        .unwrap();
    assert_eq!(second.consistent_with, Some(first.checkpoint.tree_size));
    assert!(second.checkpoint.tree_size > first.checkpoint.tree_size);

    let (n1, n2) = (first.checkpoint.tree_size, second.checkpoint.tree_size);
    let first_v = verify::checkpoint(&first.checkpoint, Some(&key)).unwrap();
    let second_v = verify::checkpoint(&second.checkpoint, Some(&key)).unwrap();

    // The honest extension: the gateway's own proof from the first checkpoint to the second verifies.
    let proof = client_audit::consistency_proof(&auditor, &integrity(), n1, n2).await.unwrap();
    assert!(!proof.is_empty(), "a proof from {n1} to {n2} has hashes");
    assert_eq!(verify::consistency(&first_v, &second_v, &proof), Ok(()));

    // A fork: a second log under the same signing key, holding the same
    // records as the gateway's except the last one of the first checkpoint.
    let honest: Vec<AuditEntry> = client_audit::entries(&auditor, &integrity(), 0, n2).await.unwrap();
    assert_eq!(honest.len() as u64, n2);
    let fork_dir = tempfile::tempdir().unwrap();
    let db = isx_store::open(&fork_dir.path().join("fork.sled"), isx_store::GATEWAY_CACHE_BYTES).unwrap();
    let keys = isx_audit::keys::load(&topo.pki_dir()).unwrap();
    let (fork, _) = AuditLog::open(&db, keys, &|_, _| {}).unwrap();
    let append = |record: AuditRecord| {
        let time = record.time.expect("a record time");
        let ms = time.seconds as u64 * 1000 + time.nanos as u64 / 1_000_000;
        fork.append(vec![record], ms).unwrap();
    };
    for (i, e) in honest[..n1 as usize].iter().enumerate() {
        let mut record = e.record.clone().expect("a record body");
        if i as u64 == n1 - 1 {
            record.officer = "someone else".into();
        }
        append(record);
    }
    for e in &honest[..n1 as usize - 1] {
        assert_eq!(fork.leaf(e.seq).unwrap().as_slice(), e.leaf_hash.as_slice(), "the fork shares record {}", e.seq);
    }
    let signed = |size: u64| Checkpoint {
        note: fork.sign_checkpoint(size).unwrap(),
        tree_size: size,
        root_hash: fork.root(size).unwrap().to_vec(),
        origin: fork.keys().origin.clone(),
        verifier_key: fork.keys().verifier_key.clone(),
        signed_size: size,
        ..Default::default()
    };
    let fork_small = signed(n1);
    let fork_v = verify::checkpoint(&fork_small, Some(&key)).expect("the fork is signed with the trusted key");
    assert_ne!(fork_v.root, first_v.root);
    // Same size, another root: a fork, whichever of the two was seen first.
    assert_eq!(verify::consistency(&first_v, &fork_v, &[]), Err(VerifyError::Fork { size: n1 }));
    assert_eq!(verify::consistency(&fork_v, &first_v, &[]), Err(VerifyError::Fork { size: n1 }));
    // Saved by an auditor, the fork's checkpoint does not extend to the live log.
    let err = client_audit::verify_live(&auditor, &integrity(), Some(&key), Some(&fork_small), &|_, _, _| {})
        .await
        .unwrap_err();
    assert!(matches!(err, AuditClientError::Verify(VerifyError::Inconsistent { old, .. }) if old == n1), "{err}");

    // The fork grows to the second checkpoint's size, with a real proof of
    // its own: the proof holds for the fork, and not from the honest checkpoint.
    for e in &honest[n1 as usize..] {
        append(e.record.clone().expect("a record body"));
    }
    let fork_big = verify::checkpoint(&signed(n2), Some(&key)).unwrap();
    let fork_proof: Vec<Vec<u8>> = fork.consistency_proof(n1, n2).unwrap().iter().map(|h| h.to_vec()).collect();
    assert!(!fork_proof.is_empty());
    assert_eq!(verify::consistency(&fork_v, &fork_big, &fork_proof), Ok(()), "the fork extends itself");
    let inconsistent = Err(VerifyError::Inconsistent { old: n1, new: n2 });
    assert_eq!(verify::consistency(&first_v, &fork_big, &fork_proof), inconsistent);
    assert_eq!(verify::consistency(&first_v, &fork_big, &proof), inconsistent);
    assert_eq!(verify::consistency(&fork_v, &second_v, &fork_proof), inconsistent);
    assert_eq!(verify::consistency(&second_v, &fork_big, &[]), Err(VerifyError::Fork { size: n2 }));

    // Export and verify offline; a corrupted copy fails.
    let bundle: AuditBundle = client_audit::export(
        &auditor,
        &why(),
        "audit tests",
        SearchRequest { node: "de-police".into(), ..Default::default() },
    )
    .await
    .unwrap();
    let report = isx_audit::verify::bundle(
        &bundle,
        &isx_audit::verify::Trust::new(Some(key.clone()), None).unwrap(),
        &|_, _| {},
    )
    .unwrap();
    assert!(report.entries >= 4);
    let mut corrupt = bundle.clone();
    let last = corrupt.entries.len() - 1;
    corrupt.entries[last].body[5] ^= 0x20;
    assert!(
        isx_audit::verify::bundle(
            &corrupt,
            &isx_audit::verify::Trust::new(Some(key.clone()), None).unwrap(),
            &|_, _| {}
        )
        .is_err()
    );
    topo.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_log_keeps_the_gateway_from_starting() {
    let mut topo = topology().await;
    let alert = samples::migrant_smuggling("de-police", &["fr-police"]);
    topo.client("de-police").await.unwrap().publish(alert.clone()).await.unwrap();
    assert!(topo.inbox("fr-police").wait_for(&alert.alert_id, LIMIT).await.unwrap().is_some());
    topo.stop_gateway().await.unwrap();

    // Change who published the alert in the first record.
    let db =
        isx_store::open(&topo.gateway_config().data_dir.join("gateway.sled"), isx_store::GATEWAY_CACHE_BYTES).unwrap();
    let entries = db.open_tree("audit.entries").unwrap();
    // Record 0's value: its leaf hash (the one hash it completes), then the record.
    let mut value = entries.get(0u64.to_be_bytes()).unwrap().unwrap().to_vec();
    let mut record: isx_core::wire::AuditRecord = prost::Message::decode(&value[32..]).unwrap();
    assert_eq!(record.operation(), Operation::Collection);
    record.officer = "nobody".into();
    value.truncate(32);
    value.extend(prost::Message::encode_to_vec(&record));
    entries.insert(0u64.to_be_bytes(), value).unwrap();
    db.flush().unwrap();
    drop(entries);
    drop(db);

    let err = topo.start_gateway().await.expect_err("the gateway refuses a tampered log").to_string();
    assert!(err.contains("first bad sequence number 0"), "{err}");
}

/// LOG_READ records whose detail starts with `what`.
async fn reads(topo: &Topology, what: &str) -> Vec<AuditRecord> {
    let all = records(topo, SearchRequest { operation: Operation::LogRead as i32, ..Default::default() }).await;
    all.into_iter().filter(|r| r.detail.starts_with(what)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_verify_is_one_read_and_checks_every_index_entry_of_a_running_gateway() {
    let mut topo = topology().await;
    let de = topo.client("de-police").await.unwrap();
    for _ in 0..3 {
        let alert = samples::migrant_smuggling("de-police", &["fr-police"]);
        de.publish(alert.clone()).await.unwrap();
        assert!(topo.inbox("fr-police").wait_for(&alert.alert_id, LIMIT).await.unwrap().is_some());
    }
    let key = std::fs::read_to_string(topo.pki_dir().join("audit.pub")).unwrap();
    let auditor = topo.client("auditor").await.unwrap();
    let report = client_audit::verify_live(&auditor, &integrity(), Some(&key), None, &|_, _, _| {}).await.unwrap();
    let verifies = reads(&topo, "VerifyLog").await;
    assert_eq!(verifies.len(), 1, "one record for the whole run: {verifies:?}");
    let size = report.checkpoint.tree_size;
    assert_eq!(verifies[0].detail, format!("VerifyLog: {size} records and the whole search index"));
    assert_eq!(verifies[0].justification, "isx audit verify");
    let all_reads = reads(&topo, "").await;
    let of_verify: Vec<_> = all_reads.iter().filter(|r| r.justification.contains("verify")).collect();
    assert_eq!(of_verify.len(), 1, "no page or index search of its own: {of_verify:?}");
    assert!(!all_reads.iter().any(|r| r.detail.starts_with("GetEntries")), "{all_reads:?}");
    // Every index entry: each record under each of its values.
    let entries =
        client_audit::export(&auditor, &why(), "audit tests", SearchRequest::default()).await.unwrap().entries;
    let expected: u64 = entries
        .iter()
        .filter(|e| e.seq < size)
        .filter_map(|e| e.record.as_ref())
        .map(|r| isx_audit::index::values(r).len() as u64)
        .sum();
    assert_eq!(report.index_entries, expected);

    // The same data served by a gateway of the test's own, whose index is
    // changed while it runs (its start-up check would refuse a changed
    // index; a live verify must find what changes after the start).
    topo.stop_gateway().await.unwrap();
    let gateway = isx_gateway::Gateway::open(topo.gateway_config().clone()).unwrap();
    let log = gateway.audit_log();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    // The gateway's shutdown token, by inference (the tests crate does not name tokio-util).
    let shutdown = Default::default();
    let serving = tokio::spawn(gateway.serve(listener, Clone::clone(&shutdown)));
    let options =
        isx_node::ClientOptions { gateway: format!("localhost:{port}"), ..topo.client_options("auditor").unwrap() };
    let auditor = isx_node::Client::connect(&options).await.unwrap();
    let reason = integrity();
    let verify = || client_audit::verify_live(&auditor, &reason, Some(&key), None, &|_, _, _| {});
    verify().await.expect("untouched, it verifies");

    let index = log.db().open_tree("audit.index").unwrap();
    let recipient = isx_audit::index::prefix(isx_audit::index::Kind::Recipient, "fr-police");
    let (list_key, list) = index.scan_prefix(&recipient).map(|kv| kv.unwrap()).last().expect("fr-police's list");
    let seqs = isx_audit::index::decode(&list).unwrap();
    // Take the list's last record out: the index no longer finds it.
    let dropped = *seqs.last().unwrap();
    if seqs.len() > 1 {
        index.insert(&list_key, isx_audit::index::encode(&seqs[..seqs.len() - 1])).unwrap();
    } else {
        index.remove(&list_key).unwrap();
    }
    let err = verify().await.unwrap_err();
    match &err {
        AuditClientError::Index { what, detail } => {
            assert_eq!(what, "recipient \"fr-police\"", "{err}");
            assert!(detail.contains(&format!("missing seqs [{dropped}]")), "{err}");
        }
        other => panic!("expected an index mismatch, got {other}"),
    }
    index.insert(&list_key, list.clone()).unwrap();
    verify().await.expect("restored, it verifies");

    // List a record under a value it does not have: found too.
    let time = isx_audit::index::time_of(&entries[0].record.clone().unwrap());
    let ghost = isx_audit::index::row(isx_audit::index::Kind::Officer, "ghost", time, 0);
    index.insert(&ghost, isx_audit::index::encode(&[0])).unwrap();
    let err = verify().await.unwrap_err();
    assert!(
        matches!(&err, AuditClientError::Index { what, detail } if what == "officer \"ghost\"" && detail.contains("unexpected seqs [0]")),
        "{err}"
    );
    index.remove(&ghost).unwrap();
    verify().await.expect("restored again, it verifies");
    shutdown.cancel();
    serving.await.unwrap().unwrap();
    topo.shutdown().await;
}
