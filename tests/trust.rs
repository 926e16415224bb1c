//! Trust rules: each promise isx makes holds against a registered node that
//! does not play by the rules (ARCHITECTURE.md, "Threat model").
//!
//! - lookups are not an oracle: quotas per node, officer and person;
//! - one node cannot block another: a full queue, or a node that cannot
//!   receive, refuses only that recipient;
//! - access request ids are unguessable and a non-holder learns nothing.

use std::time::Duration;

use isx_core::wire::lookup_identifier::Kind;
use isx_core::wire::{
    DisclosureLevel, LookupIdentifier, Operation, Outcome, PersonName, RecipientOutcome, SearchRequest,
};
use isx_core::{NodeKind, Role};
use isx_testkit::{NodeSpec, Topology, TopologySpec, samples};
use tonic::Code;
use tonic_types::StatusExt;

const LIMIT: Duration = Duration::from_secs(20);

fn person(family: &str, given: &str, dob: &str) -> LookupIdentifier {
    LookupIdentifier {
        kind: Some(Kind::Person(PersonName {
            family_name: family.into(),
            given_names: given.into(),
            date_of_birth: dob.into(),
        })),
    }
}

/// A date of birth cannot be found by trying them: after
/// `lookup.max_dates_per_name` distinct dates for one name, the lookup is
/// refused with RetryInfo and a searchable record that names the quota and
/// holds no value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_date_of_birth_cannot_be_brute_forced_through_lookups() {
    let mut spec = TopologySpec::default_agencies();
    spec.lookup.max_dates_per_name = 3;
    let topo = Topology::start(spec).await.unwrap();
    let de = topo.client("de-police").await.unwrap();
    // The alert's subject is Lukas Emil Brandt, born 1994-03-17 (samples::foreign_fighter).
    let alert = samples::foreign_fighter("de-police", &[]);
    de.publish(alert.clone()).await.unwrap();

    let it = topo.client("it-police").await.unwrap();
    let mut answers = Vec::new();
    for day in 10..=20 {
        let dob = format!("1994-03-{day}");
        answers.push(it.lookup(vec![person("Brandt", "Lukas Emil", &dob)], "investigation", "brute force").await);
    }
    let served = answers.iter().filter(|a| a.is_ok()).count();
    assert_eq!(served, 3, "three distinct dates are served, every later one refused");
    let err = answers[3].as_ref().unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert!(err.message().contains("lookup.max_dates_per_name"), "{}", err.message());
    let retry = err.get_details_retry_info().and_then(|r| r.retry_delay).expect("RetryInfo");
    assert!(retry > Duration::ZERO && retry <= Duration::from_secs(86_400), "{retry:?}");
    assert!(
        answers.iter().all(|a| a.as_ref().map(|r| r.hits.is_empty()).unwrap_or(true)),
        "the right date (17) was never reached"
    );
    // A date already tried stays answerable; another name is counted on its own.
    it.lookup(vec![person("Brandt", "Lukas Emil", "1994-03-10")], "investigation", "again").await.unwrap();
    it.lookup(vec![person("Brandt", "Anna", "1994-03-17")], "investigation", "other person").await.unwrap();
    // Another node has its own count.
    let hits = topo
        .client("fr-police")
        .await
        .unwrap()
        .lookup(vec![person("Brandt", "Lukas Emil", "1994-03-17")], "investigation", "own case")
        .await
        .unwrap()
        .hits;
    assert_eq!(hits.len(), 1);

    let denials = topo
        .audit_records(SearchRequest {
            node: "it-police".into(),
            operation: Operation::Denial as i32,
            ..Default::default()
        })
        .await
        .unwrap();
    let quota: Vec<_> = denials.iter().filter(|r| r.detail.contains("quota exceeded")).collect();
    assert!(!quota.is_empty(), "an auditor finds the quota refusals: {denials:?}");
    for r in &quota {
        assert!(r.detail.contains("lookup.max_dates_per_name (3 per 1day)"), "{}", r.detail);
        assert_eq!(r.outcome(), Outcome::Refused);
        for value in ["Brandt", "BRANDT", "Lukas", "LUKAS", "1994-03"] {
            assert!(!r.detail.contains(value) && r.subject_pseudonyms.is_empty(), "{value} in {r:?}");
        }
    }
    topo.shutdown().await;
}

/// Per node and per officer, per window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookups_are_limited_per_officer_and_per_node() {
    let mut spec = TopologySpec::default_agencies();
    spec.lookup.per_officer = 2;
    spec.lookup.per_node = 3;
    let topo = Topology::start(spec).await.unwrap();
    let plate = || vec![LookupIdentifier { kind: Some(Kind::Plate("FG 512 ZT".into())) }];
    let as_officer = |officer: &str| {
        let mut opts = topo.client_options("it-police").unwrap();
        opts.officer = officer.into();
        opts
    };
    let conti = isx_node::Client::connect(&as_officer("Isp. Conti")).await.unwrap();
    let rossi = isx_node::Client::connect(&as_officer("Isp. Rossi")).await.unwrap();
    conti.lookup(plate(), "check", "1").await.unwrap();
    conti.lookup(plate(), "check", "2").await.unwrap();
    let err = conti.lookup(plate(), "check", "3").await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted);
    assert!(err.message().contains("lookup.per_officer"), "{}", err.message());
    rossi.lookup(plate(), "check", "4").await.expect("another officer has its own quota");
    let err = rossi.lookup(plate(), "check", "5").await.unwrap_err();
    assert!(
        err.message().contains("lookup.per_node"),
        "the node's quota holds for all its officers: {}",
        err.message()
    );
    topo.client("fr-police").await.unwrap().lookup(plate(), "check", "6").await.expect("other nodes are not affected");
    topo.shutdown().await;
}

/// One node's full queue refuses only that recipient; the others receive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_refuses_only_its_own_recipient() {
    let mut spec = TopologySpec::default_agencies();
    spec.limits.max_queue_per_node = 2;
    let mut topo = Topology::start(spec).await.unwrap();
    topo.stop_node("it-police").await.unwrap();
    let de = topo.client("de-police").await.unwrap();
    for _ in 0..2 {
        de.publish(samples::foreign_fighter("de-police", &["it-police"])).await.unwrap();
    }
    // A broadcast now: it-police's queue is full, everyone else is served.
    let broadcast = samples::migrant_smuggling("de-police", &[]);
    let receipt = de.publish(broadcast.clone()).await.expect("the publish is not refused whole").receipt.unwrap();
    let it = receipt.recipients.iter().find(|r| r.node == "it-police").unwrap();
    assert_eq!(it.outcome(), RecipientOutcome::QueueFull, "{receipt:?}");
    assert_eq!(it.level(), DisclosureLevel::Full, "policy's level is kept; it is just not served");
    let fr = receipt.recipients.iter().find(|r| r.node == "fr-police").unwrap();
    assert_eq!(fr.outcome(), RecipientOutcome::Queued);
    assert!(topo.inbox("fr-police").wait_for(&broadcast.alert_id, LIMIT).await.unwrap().is_some());
    assert!(topo.inbox("europol").wait_for(&broadcast.alert_id, LIMIT).await.unwrap().is_some());
    // On record: a denial for it-police, naming the limit; the collection lists the outcome.
    let about =
        topo.audit_records(SearchRequest { alert_id: broadcast.alert_id.clone(), ..Default::default() }).await.unwrap();
    let denial = about
        .iter()
        .find(|r| r.operation() == Operation::Denial && r.recipients.iter().any(|x| x.node == "it-police"))
        .expect("a denial for the full recipient");
    assert!(denial.detail.contains("limits.max_queue_per_node"), "{}", denial.detail);
    let collection = about.iter().find(|r| r.operation() == Operation::Collection).unwrap();
    let listed = collection.recipients.iter().find(|x| x.node == "it-police").unwrap();
    assert_eq!(listed.outcome(), RecipientOutcome::QueueFull);
    // Once it-police is back, it gets its backlog and never the refused
    // broadcast: a marker queued after its backlog drained arrives, and
    // deliveries come in order. (The marker is refused too while the queue
    // is still full; the agency acknowledges soon after it stored its backlog.)
    topo.start_node("it-police").await.unwrap();
    let deadline = tokio::time::Instant::now() + LIMIT;
    let marker = loop {
        let marker = samples::trafficking_victim("de-police", &["it-police"]);
        let r = de.publish(marker.clone()).await.unwrap().receipt.unwrap();
        if r.recipients[0].outcome() == RecipientOutcome::Queued {
            break marker;
        }
        assert!(tokio::time::Instant::now() < deadline, "it-police's queue never drained");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(topo.inbox("it-police").wait_for(&marker.alert_id, LIMIT).await.unwrap().is_some());
    assert!(topo.inbox("it-police").get(&broadcast.alert_id).unwrap().is_none());
    topo.shutdown().await;
}

/// A node without the subscribe role stays a candidate, so policy still
/// decides and explains, but whatever it would be allowed becomes a denial
/// by `no-subscribe-role`: nothing queued it could never drain, and nothing
/// recorded as disclosed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_cannot_receive_is_denied_not_queued() {
    let mut spec = TopologySpec::default_agencies();
    let mut watcher = NodeSpec::new("nl-police", NodeKind::National, "NL", "Politie (NL)");
    watcher.roles = Some(vec![Role::Lookup, Role::Publish]);
    watcher.run_mock = false;
    spec.nodes.push(watcher);
    let topo = Topology::start(spec).await.unwrap();
    let de = topo.client("de-police").await.unwrap();
    let alert = samples::migrant_smuggling("de-police", &[]);
    let receipt = de.publish(alert.clone()).await.unwrap().receipt.unwrap();
    let nl = receipt.recipients.iter().find(|r| r.node == "nl-police").expect("still a candidate");
    assert_eq!(
        (nl.level(), nl.outcome(), nl.policy_ids.as_slice()),
        (DisclosureLevel::Denied, RecipientOutcome::NoSubscribeRole, ["no-subscribe-role".to_owned()].as_slice())
    );
    let auditor = receipt.recipients.iter().find(|r| r.node == "auditor").unwrap();
    assert_eq!(auditor.outcome(), RecipientOutcome::Denied);
    assert!(auditor.policy_ids.iter().any(|p| p == "auditor-never-receives"), "policy still explains: {auditor:?}");
    assert_eq!(topo.policy_reason("no-subscribe-role").as_deref().map(|r| r.contains("no subscribe role")), Some(true));

    let marker = samples::trafficking_victim("de-police", &["fr-police"]);
    de.publish(marker.clone()).await.unwrap();
    assert!(topo.inbox("fr-police").wait_for(&marker.alert_id, LIMIT).await.unwrap().is_some());
    let about =
        topo.audit_records(SearchRequest { alert_id: alert.alert_id.clone(), ..Default::default() }).await.unwrap();
    let for_nl: Vec<Operation> = about
        .iter()
        .filter(|r| r.recipients.len() == 1 && r.recipients[0].node == "nl-police")
        .map(|r| r.operation())
        .collect();
    assert_eq!(for_nl, [Operation::Denial], "a denial, never a disclosure: {about:?}");
    topo.shutdown().await;
}

/// A certificate revoked while the gateway runs: the reload (as SIGHUP does)
/// closes that node's open connections and refuses its new handshakes;
/// other nodes go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_revoked_at_runtime_is_cut_off_at_the_reload() {
    let topo = Topology::start(TopologySpec::default_agencies()).await.unwrap();
    let it = topo.client("it-police").await.unwrap();
    let plate = || vec![LookupIdentifier { kind: Some(Kind::Plate("FG 512 ZT".into())) }];
    it.lookup(plate(), "check", "before").await.expect("served before the revocation");
    assert_eq!(
        isx_testkit::probe(&topo.client_options("it-police").unwrap()).await.unwrap(),
        isx_testkit::Probe::Served
    );

    let report = topo.revoke(&[isx_core::NodeId::new("it-police").unwrap()]).unwrap();
    assert_eq!(report.revoked, 1);
    assert!(report.closed >= 1, "it-police's open connections are closed: {report:?}");
    // The open channel is gone: its next call fails at the transport.
    let err = it.lookup(plate(), "check", "after").await.unwrap_err();
    assert!(matches!(err.code(), Code::Unavailable | Code::Unknown | Code::Cancelled), "{err:?}");
    // A new connection is refused at the handshake, as revoked.
    let probe = isx_testkit::probe(&topo.client_options("it-police").unwrap()).await.unwrap();
    assert_eq!(
        probe,
        isx_testkit::Probe::Handshake(isx_testkit::Refusal::Alert(rustls::AlertDescription::CertificateRevoked))
    );
    // Others are served.
    let de = topo.client("de-police").await.unwrap();
    let a = samples::foreign_fighter("de-police", &["fr-police"]);
    de.publish(a.clone()).await.unwrap();
    assert!(topo.inbox("fr-police").wait_for(&a.alert_id, LIMIT).await.unwrap().is_some());
    topo.shutdown().await;
}

/// A revocation list past its next update: by default the gateway refuses
/// to start on it, naming the file and the fix; `stale = "warn"` starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_revocation_list_is_refused_by_default() {
    let mut topo = Topology::start(TopologySpec::default_agencies()).await.unwrap();
    topo.stop_gateway().await.unwrap();
    isx_tls::pki::refresh_crl(&topo.pki_dir(), time::Duration::hours(-1)).unwrap();
    let err = topo.start_gateway().await.unwrap_err().to_string();
    assert!(err.contains("crl.pem") && err.contains("stale") && err.contains("--refresh"), "{err}");
    topo.shutdown().await;

    let mut spec = TopologySpec::default_agencies();
    spec.revocation.stale = isx_gateway::config::StaleCrls::Warn;
    let mut topo = Topology::start(spec).await.unwrap();
    topo.stop_gateway().await.unwrap();
    isx_tls::pki::refresh_crl(&topo.pki_dir(), time::Duration::hours(-1)).unwrap();
    topo.start_gateway().await.expect("warn: a stale list is used as it is");
    let de = topo.client("de-police").await.unwrap();
    de.publish(samples::foreign_fighter("de-police", &["fr-police"])).await.expect("and clients are served");
    topo.shutdown().await;
}
