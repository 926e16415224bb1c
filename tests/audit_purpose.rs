//! Whole-system tests of purpose-bound, scoped audit access (#19): every
//! read of the log names one of the four purposes of LED Art. 25(2) and a
//! case, both recorded; a scoped auditor (`audit_scope` "own" or a list of
//! nodes) finds only the records in its scope, gets the others withheld,
//! and still verifies the log.

use std::time::Duration;

use isx_audit::scope::Scope;
use isx_core::wire::audit_client::AuditClient;
use isx_core::wire::lookup_identifier::Kind;
use isx_core::wire::{
    AuditEntry, AuditRecord, DocumentNumber, GetPolicyRequest, LookupIdentifier, Operation, ReadPurpose, ReadReason,
    SearchRequest, VerifyLogRequest,
};
use isx_core::{NodeKind, Role};
use isx_gateway::config::AuditScopeSetting;
use isx_node::Client;
use isx_node::audit::{self as client_audit, AuditClientError};
use isx_testkit::{NodeSpec, Topology, TopologySpec, samples};
use tonic::Code;

const LIMIT: Duration = Duration::from_secs(20);

fn reason(purpose: ReadPurpose, case: &str) -> ReadReason {
    isx_core::read_reason::reason(purpose, case)
}

/// The default agencies and auditor; de-police also holds the audit role
/// (its data-protection officer: by default its own records), and
/// fr-regulator, a national authority, reads fr-police's records.
async fn scoped_topology() -> Topology {
    let mut spec = TopologySpec::default_agencies();
    let de = spec.nodes.iter_mut().find(|n| n.id.as_str() == "de-police").unwrap();
    de.roles = Some(vec![Role::Publish, Role::Subscribe, Role::Lookup, Role::Audit]);
    spec.nodes.push(NodeSpec::auditor(
        "fr-regulator",
        NodeKind::Auditor,
        "FR",
        None,
        Some(AuditScopeSetting::Nodes(vec!["fr-police".into()])),
    ));
    Topology::start(spec).await.expect("topology starts")
}

/// de-police publishes to fr-police, it-police to europol, and fr-police
/// looks up de-police's person (a hit held by de-police).
async fn traffic(topo: &Topology) -> (String, String) {
    let de_alert = samples::foreign_fighter("de-police", &["fr-police"]);
    topo.client("de-police").await.unwrap().publish(de_alert.clone()).await.unwrap();
    let it_alert = samples::migrant_smuggling("it-police", &["europol"]);
    topo.client("it-police").await.unwrap().publish(it_alert.clone()).await.unwrap();
    assert!(topo.inbox("fr-police").wait_for(&de_alert.alert_id, LIMIT).await.unwrap().is_some());
    assert!(topo.inbox("europol").wait_for(&it_alert.alert_id, LIMIT).await.unwrap().is_some());
    let document = LookupIdentifier {
        kind: Some(Kind::Document(DocumentNumber { issuing_country: "DE".into(), number: "C4J9X1R27".into() })),
    };
    let hits = topo
        .client("fr-police")
        .await
        .unwrap()
        .lookup(vec![document], "investigation", "scoped audit test")
        .await
        .unwrap()
        .hits;
    assert!(!hits.is_empty() && hits.iter().all(|h| h.holder == "de-police"), "fr-police sees de-police's alerts");
    (de_alert.alert_id, it_alert.alert_id)
}

/// Every entry matching `filter` that `client` may search, oldest first,
/// page by page (pages of 2 so that paging crosses records out of scope),
/// each checked against its inclusion proof; and the size of the last
/// page's checkpoint.
async fn search_all(client: &Client, why: &ReadReason, filter: SearchRequest) -> (Vec<AuditEntry>, u64) {
    let mut req = SearchRequest { limit: 2, ..filter };
    let mut out: Vec<AuditEntry> = Vec::new();
    for _ in 0..10_000 {
        let page = client_audit::search(client, why, req.clone()).await.unwrap();
        let cp = isx_audit::verify::checkpoint(page.checkpoint.as_ref().unwrap(), None).unwrap();
        let size = cp.size;
        for e in &page.entries {
            isx_audit::verify::inclusion(e, &cp).expect("every result verifies");
        }
        assert!(page.entries.len() == 2 || !page.more, "a page is full unless it is the last");
        let last = page.entries.last().map(|e| e.seq);
        out.extend(page.entries);
        match last {
            Some(seq) if page.more => req.after_seq = seq,
            _ => return (out, size),
        }
    }
    panic!("the search did not end");
}

/// Every record of the log below `size`, read as the global auditor.
async fn whole_log(topo: &Topology, size: u64) -> Vec<AuditRecord> {
    let auditor = topo.client("auditor").await.unwrap();
    let why = reason(ReadPurpose::Integrity, "scope test: the whole log");
    let mut all = Vec::new();
    let mut start = 0;
    while start < size {
        let entries = client_audit::entries(&auditor, &why, start, size).await.unwrap();
        assert!(!entries.is_empty() && entries.iter().all(|e| !e.withheld), "the global auditor sees everything");
        start += entries.len() as u64;
        all.extend(entries.into_iter().filter_map(|e| e.record));
    }
    all
}

fn seqs<'a>(records: impl IntoIterator<Item = &'a AuditRecord>) -> Vec<u64> {
    records.into_iter().map(|r| r.seq).collect()
}

/// The LOG_READ records of `node`.
async fn reads_of(topo: &Topology, node: &str) -> Vec<AuditRecord> {
    let filter = SearchRequest { origin: node.into(), operation: Operation::LogRead as i32, ..Default::default() };
    topo.audit_records(filter).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_without_its_purpose_or_case_is_refused_naming_the_field_and_recorded() {
    let topo = Topology::start(TopologySpec::default_agencies()).await.unwrap();
    let auditor = topo.client("auditor").await.unwrap();
    let mut audit = AuditClient::new(auditor.channel());
    let named = |s: &tonic::Status| -> Vec<String> {
        tonic_types::StatusExt::get_error_details(s)
            .bad_request()
            .map(|b| b.field_violations.iter().map(|v| v.field.clone()).collect())
            .unwrap_or_default()
    };
    // No reason at all, a purpose without a case, a case without a purpose.
    let search = |reason: Option<ReadReason>| auditor.request(SearchRequest { reason, ..Default::default() });
    let err = audit.search(search(None)).await.unwrap_err();
    assert_eq!((err.code(), named(&err)), (Code::InvalidArgument, vec!["reason.purpose".to_owned()]), "{err:?}");
    assert!(err.message().contains("LED Art. 25(2)"), "{}", err.message());
    let err = audit.search(search(Some(reason(ReadPurpose::Lawfulness, "")))).await.unwrap_err();
    assert_eq!((err.code(), named(&err)), (Code::InvalidArgument, vec!["reason.case_reference".to_owned()]));
    let verify = VerifyLogRequest { reason: Some(reason(ReadPurpose::Unspecified, "X-1")), ..Default::default() };
    let err = audit.verify_log(auditor.request(verify)).await.unwrap_err();
    assert_eq!((err.code(), named(&err)), (Code::InvalidArgument, vec!["reason.purpose".to_owned()]));
    let policy = GetPolicyRequest { reason: None, version: "v".into() };
    let err = audit.get_policy(auditor.request(policy)).await.unwrap_err();
    assert_eq!((err.code(), named(&err)), (Code::InvalidArgument, vec!["reason.purpose".to_owned()]));
    // The role comes first: a node without it is refused for its role, whatever its reason.
    let de = topo.client("de-police").await.unwrap();
    let err = AuditClient::new(de.channel()).search(de.request(SearchRequest::default())).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);

    // Each refusal is a denial naming the field, and no read was recorded.
    let denials = topo
        .audit_records(SearchRequest {
            origin: "auditor".into(),
            operation: Operation::Denial as i32,
            ..Default::default()
        })
        .await
        .unwrap();
    let details: Vec<&str> = denials.iter().map(|r| r.detail.as_str()).collect();
    assert_eq!(
        details,
        [
            "InvalidArgument: reason.purpose",
            "InvalidArgument: reason.case_reference",
            "InvalidArgument: reason.purpose",
            "InvalidArgument: reason.purpose"
        ],
        "{denials:?}"
    );
    let reads = reads_of(&topo, "auditor").await;
    assert!(reads.iter().all(|r| r.case_reference == isx_testkit::topology::TESTKIT_CASE), "{reads:?}");
    topo.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_read_records_its_purpose_and_case_and_an_export_its_recipient() {
    let topo = Topology::start(TopologySpec::default_agencies()).await.unwrap();
    traffic(&topo).await;
    let auditor = topo.client("auditor").await.unwrap();
    let cnil = reason(ReadPurpose::Lawfulness, "  CNIL-2026-0113 ");
    client_audit::search(&auditor, &cnil, SearchRequest { node: "de-police".into(), ..Default::default() })
        .await
        .unwrap();
    let court = reason(ReadPurpose::CriminalProceedings, "TJ-Lyon-26/0042");
    client_audit::export(&auditor, &court, " Tribunal judiciaire de Lyon ", SearchRequest::default()).await.unwrap();
    let checked = reason(ReadPurpose::Integrity, "weekly check");
    let report = client_audit::verify_live(&auditor, &checked, None, None, &|_, _, _| {}).await.unwrap();
    assert_eq!((report.scope, report.withheld), (None, 0), "the auditor's scope is every node");
    let err = client_audit::export(&auditor, &court, "", SearchRequest::default()).await.unwrap_err();
    assert!(
        matches!(&err, AuditClientError::Status(s) if s.code() == Code::InvalidArgument && s.message().starts_with("recipient: ")),
        "{err}"
    );

    let reads = reads_of(&topo, "auditor").await;
    let said: Vec<(&str, &str, &str, &str)> = reads
        .iter()
        .filter(|r| r.case_reference != isx_testkit::topology::TESTKIT_CASE)
        .map(|r| (r.detail.as_str(), r.purpose.as_str(), r.case_reference.as_str(), r.export_recipient.as_str()))
        .collect();
    let size = report.checkpoint.tree_size;
    let verify = format!("VerifyLog: {size} records and the whole search index");
    assert_eq!(
        said,
        [
            ("Search by node=de-police", "lawfulness", "CNIL-2026-0113", ""),
            ("Export of everything", "criminal_proceedings", "TJ-Lyon-26/0042", "Tribunal judiciaire de Lyon"),
            (verify.as_str(), "integrity", "weekly check", ""),
        ],
        "{reads:?}"
    );
    // The read's purpose is a search filter like any other.
    let by_purpose = topo
        .audit_records(SearchRequest { purpose: "criminal_proceedings".into(), ..Default::default() })
        .await
        .unwrap();
    assert_eq!(by_purpose.len(), 1, "{by_purpose:?}");
    topo.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_own_scope_finds_only_its_records_in_search_and_export() {
    let topo = scoped_topology().await;
    let (de_alert, it_alert) = traffic(&topo).await;
    let dpo = topo.client("de-police").await.unwrap();
    let why = reason(ReadPurpose::SelfMonitoring, "DE-DPO-2026-7");
    let (found, size) = search_all(&dpo, &why, SearchRequest::default()).await;
    let mine = Scope::of(["de-police"]);
    let all = whole_log(&topo, size).await;
    let want: Vec<&AuditRecord> = all.iter().filter(|r| mine.holds(r)).collect();
    let got: Vec<&AuditRecord> = found.iter().filter_map(|e| e.record.as_ref()).collect();
    assert_eq!(seqs(got.iter().copied()), seqs(want.iter().copied()), "exactly the records in scope");
    assert!(got.len() < all.len(), "not the whole log");
    // Its collection, fr-police's lookup that hit its alert, and its own read.
    let has = |op: Operation, node: &str| got.iter().any(|r| r.operation() == op && r.node == node);
    assert!(has(Operation::Collection, "de-police") && has(Operation::Consultation, "fr-police"), "{got:?}");
    assert!(has(Operation::LogRead, "de-police"));
    assert!(!got.iter().any(|r| r.alert_id == it_alert), "nothing of it-police's alert to europol");
    assert!(got.iter().any(|r| r.alert_id == de_alert));

    // An export holds the same, newest-first searches too.
    let bundle =
        client_audit::export(&dpo, &why, "Der Bundesbeauftragte für den Datenschutz", SearchRequest::default())
            .await
            .unwrap();
    assert!(bundle.description.contains("in scope own records (de-police)"), "{}", bundle.description);
    let exported: Vec<u64> = bundle.entries.iter().filter(|e| e.seq < size).map(|e| e.seq).collect();
    assert_eq!(exported, seqs(want.iter().copied()));
    assert!(bundle.entries.iter().all(|e| e.record.as_ref().is_some_and(|r| mine.holds(r))));
    let report = isx_audit::verify::bundle(&bundle, &Default::default(), &|_, _| {}).unwrap();
    assert_eq!(report.entries as usize, bundle.entries.len(), "it verifies offline");
    let newest = client_audit::search(&dpo, &why, SearchRequest { newest_first: true, limit: 3, ..Default::default() })
        .await
        .unwrap();
    assert!(newest.entries.iter().all(|e| e.record.as_ref().is_some_and(|r| mine.holds(r))));
    assert_eq!(newest.entries.len(), 3);

    // Its reads say its scope.
    let reads = reads_of(&topo, "de-police").await;
    assert!(reads.iter().any(|r| r.detail == "Search by everything; scope: own records (de-police)"), "{reads:?}");
    assert!(reads.iter().any(|r| r.detail == "Export of everything; scope: own records (de-police)"), "{reads:?}");
    topo.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listed_scope_finds_its_nodes_records_and_a_search_outside_it_finds_nothing_and_says_so() {
    let topo = scoped_topology().await;
    traffic(&topo).await;
    let regulator = topo.client("fr-regulator").await.unwrap();
    let why = reason(ReadPurpose::Lawfulness, "CNIL-2026-0113");
    let (found, size) = search_all(&regulator, &why, SearchRequest::default()).await;
    let fr = Scope::of(["fr-police"]);
    let all = whole_log(&topo, size).await;
    let want: Vec<&AuditRecord> = all.iter().filter(|r| fr.holds(r)).collect();
    assert_eq!(seqs(found.iter().filter_map(|e| e.record.as_ref())), seqs(want.iter().copied()));
    assert!(!want.is_empty() && want.len() < all.len());

    // it-police's dealings with europol do not concern fr-police: nothing.
    let outside = SearchRequest { origin: "it-police".into(), ..Default::default() };
    let (none, _) = search_all(&regulator, &why, outside.clone()).await;
    assert!(none.is_empty(), "{none:?}");
    let bundle = client_audit::export(&regulator, &why, "CNIL", outside).await.unwrap();
    assert!(bundle.entries.is_empty());
    // Naming the node of its scope finds its records.
    let (inside, _) =
        search_all(&regulator, &why, SearchRequest { node: "fr-police".into(), ..Default::default() }).await;
    assert!(!inside.is_empty());

    let reads = reads_of(&topo, "fr-regulator").await;
    let said = |d: &str| reads.iter().filter(|r| r.detail == d).count();
    let scope = "scope: nodes fr-police";
    assert_eq!(
        said(&format!("Search by origin=it-police; {scope}; outside scope: it-police; only records in scope returned")),
        1,
        "{reads:?}"
    );
    assert_eq!(
        said(&format!("Export of origin=it-police; {scope}; outside scope: it-police; only records in scope returned")),
        1,
        "{reads:?}"
    );
    assert!(said(&format!("Search by node=fr-police; {scope}")) >= 1, "{reads:?}");
    assert!(reads.iter().all(|r| r.purpose == "lawfulness" && r.case_reference == "CNIL-2026-0113"));
    topo.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scoped_auditor_gets_the_rest_withheld_and_still_verifies_the_log() {
    let topo = scoped_topology().await;
    traffic(&topo).await;
    let key = std::fs::read_to_string(topo.pki_dir().join("audit.pub")).unwrap();
    let regulator = topo.client("fr-regulator").await.unwrap();
    let integrity = reason(ReadPurpose::Integrity, "CNIL inspection 2026-12");
    let saved = client_audit::checkpoint(&regulator, &integrity).await.unwrap();
    traffic(&topo).await;

    // GetEntries: every entry, those out of scope with their leaf hash only.
    let size = client_audit::checkpoint(&regulator, &integrity).await.unwrap().tree_size;
    let entries = client_audit::entries(&regulator, &integrity, 0, size).await.unwrap();
    assert_eq!(entries.len() as u64, size);
    let all = whole_log(&topo, size).await;
    let fr = Scope::of(["fr-police"]);
    for (e, r) in entries.iter().zip(&all) {
        assert_eq!(e.seq, r.seq);
        if fr.holds(r) {
            assert!(!e.withheld && e.record.as_ref() == Some(r), "seq {} is in scope", e.seq);
        } else {
            assert!(e.withheld && e.body.is_empty() && e.record.is_none(), "seq {} is withheld", e.seq);
            assert_eq!(e.leaf_hash.len(), 32, "its leaf hash stays");
        }
        isx_audit::verify::entry(e).unwrap();
    }
    let withheld = entries.iter().filter(|e| e.withheld).count();
    assert!(withheld > 0 && withheld < entries.len());

    // VerifyLog: the root and the consistency from leaf hashes and the
    // records in scope; no index.
    let report = client_audit::verify_live(&regulator, &integrity, Some(&key), Some(&saved), &|_, _, _| {})
        .await
        .expect("a scoped verification verifies");
    assert_eq!(report.scope.as_deref(), Some("nodes fr-police"));
    assert_eq!(report.consistent_with, Some(saved.tree_size));
    assert!(report.withheld > 0, "{report:?}");
    assert_eq!(report.bodies + report.withheld + report.pruned, report.checkpoint.tree_size);
    assert_eq!((report.index_checks, report.index_entries), (0, 0), "the index is not checked");
    let reads = reads_of(&topo, "fr-regulator").await;
    let verify = reads.iter().find(|r| r.detail.starts_with("VerifyLog")).expect("the verification is a read");
    assert!(verify.detail.contains("those outside scope withheld, no search index"), "{}", verify.detail);
    assert!(verify.detail.ends_with("; scope: nodes fr-police"), "{}", verify.detail);
    assert!(reads.iter().any(|r| r.detail.starts_with("GetEntries [0, ") && r.detail.contains("withheld")));
    assert_eq!(verify.purpose, "integrity");

    // The global auditor's verification still checks the whole index.
    let auditor = topo.client("auditor").await.unwrap();
    let whole = client_audit::verify_live(&auditor, &integrity, Some(&key), None, &|_, _, _| {}).await.unwrap();
    assert!(whole.scope.is_none() && whole.index_entries > 0 && whole.withheld == 0);
    topo.shutdown().await;
}
