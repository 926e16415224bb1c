//! Whole-system tests of storage limits (LED Art. 5), open hits (CIR Art.
//! 22(2)) and lookups that respect an alert's restriction or withdrawal,
//! over mTLS on `127.0.0.1:0`.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, Instant};

use isx_core::timestamp::{from_unix_millis, to_unix_millis};
use isx_core::wire::lookup_identifier::Kind;
use isx_core::wire::{AuditRecord, DocumentNumber, LookupIdentifier, Operation, Outcome, SearchRequest};
use isx_gateway::store::Store;
use isx_testkit::{Topology, TopologySpec, bad_fields, samples};
use prost::Message;
use tonic::Code;

/// The bound on any wait; reached only when a test fails.
const LIMIT: Duration = Duration::from_secs(20);
const DAY: u64 = 86_400_000;
const PURPOSE: &str = "prevention and detection of terrorist offences";
const WHY: &str = "case IT-2026-0917: subject seen at the Brenner crossing";
const OFFICER: &str = "Isp. Conti";

fn brandt() -> LookupIdentifier {
    LookupIdentifier {
        kind: Some(Kind::Document(DocumentNumber { issuing_country: "DE".into(), number: "C4J9X1R27".into() })),
    }
}

/// Polls `probe` until it returns `Some`, at most [`LIMIT`].
async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(start.elapsed() < LIMIT, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn records(topo: &Topology, req: SearchRequest) -> Vec<AuditRecord> {
    topo.audit_records(req).await.unwrap()
}

/// Opens the stopped gateway's store (as the gateway does).
fn open_store(topo: &Topology) -> Store {
    let config = topo.gateway_config();
    let nodes: Vec<_> = config.node_infos().into_iter().map(|n| n.id).collect();
    Store::open(
        &config.data_dir.join("gateway.sled"),
        &isx_store::key_path(&config.pki_dir, "gateway"),
        &nodes,
        config.limits.max_queue_per_node,
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_past_its_storage_limit_is_refused_naming_the_limit_and_nothing_is_written_or_delivered() {
    let mut spec = TopologySpec::default_agencies();
    spec.storage.by_category = BTreeMap::from([("terrorism".to_owned(), Duration::from_secs(30 * 86_400))]);
    let mut topo = Topology::start(spec).await.unwrap();
    let de = topo.client("de-police").await.unwrap();
    let now = topo.now_ms();

    // Within the limit of its area (a week of 30 days): published.
    let kept = samples::foreign_fighter("de-police", &["fr-police"]);
    de.publish(kept.clone()).await.unwrap();
    // Past the area's own limit, and past the default for an area without one.
    let mut long = samples::foreign_fighter("de-police", &["fr-police"]);
    long.alert_id = samples::new_alert_id();
    long.expires_at = Some(from_unix_millis(now + 31 * DAY));
    let mut smuggling = samples::migrant_smuggling("de-police", &["fr-police"]);
    smuggling.expires_at = Some(from_unix_millis(now + 366 * DAY));
    let cases = [
        (&long, "storage.by_category.terrorism allows 30d from publication, so at most "),
        (&smuggling, "storage.max_period allows 365d from publication, so at most "),
    ];
    for (alert, words) in cases {
        let err = de.publish(alert.clone()).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{}", err.message());
        assert_eq!(bad_fields(&err), vec!["expires_at"]);
        assert!(err.message().contains(words), "{}", err.message());
        // The latest allowed time, to the second, is in the message.
        let latest = err.message().rsplit("at most ").next().unwrap().to_owned();
        let parsed = time::OffsetDateTime::parse(&latest, &time::format_description::well_known::Rfc3339).unwrap();
        let latest_ms = (parsed.unix_timestamp_nanos() / 1_000_000) as u64;
        let period = if alert.alert_id == long.alert_id { 30 * DAY } else { 365 * DAY };
        assert!(latest_ms.abs_diff(now + period) < 60_000, "{latest} is not publication + {period} ms");
    }

    // Nothing was delivered: a later alert to the same recipient arrives
    // after the refused ones would have.
    let later = samples::trafficking_victim("de-police", &["fr-police"]);
    de.publish(later.clone()).await.unwrap();
    let inbox = topo.inbox("fr-police");
    assert!(inbox.wait_for(&later.alert_id, LIMIT).await.unwrap().is_some());
    assert!(inbox.get(&kept.alert_id).unwrap().is_some());
    for refused in [&long, &smuggling] {
        assert!(inbox.get(&refused.alert_id).unwrap().is_none(), "{} was delivered", refused.alert_id);
        // The refusal is recorded naming the limit; no collection, no disclosure.
        let found = records(&topo, SearchRequest { alert_id: refused.alert_id.clone(), ..Default::default() }).await;
        let ops: Vec<Operation> = found.iter().map(|r| r.operation()).collect();
        assert_eq!(ops, vec![Operation::Denial], "{found:?}");
        assert_eq!(found[0].outcome(), Outcome::Refused);
        assert!(found[0].detail.contains("expires_at past storage."), "{}", found[0].detail);
    }
    // And nothing is stored: no alert row, so no lookup can match it either.
    let fr = topo.client("fr-police").await.unwrap();
    let plate = LookupIdentifier { kind: Some(Kind::Plate("FG 512 ZT".into())) };
    let hits = fr.lookup(vec![plate], "investigation", "van seen near Bolzano").await.unwrap().hits;
    assert!(hits.is_empty(), "the refused smuggling alert is not indexed: {hits:?}");
    topo.stop_gateway().await.unwrap();
    {
        let store = open_store(&topo);
        assert!(store.alert(&kept.alert_id).unwrap().is_some());
        assert!(store.alert(&long.alert_id).unwrap().is_none());
        assert!(store.alert(&smuggling.alert_id).unwrap().is_none());
    }
    topo.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_hit_stays_open_until_followed_up_and_closes_at_its_alerts_end_or_its_deadline() {
    let mut spec = TopologySpec::default_agencies();
    spec.lookup.follow_up_deadline = Duration::from_secs(3600);
    let topo = Topology::start(spec).await.unwrap();
    let de = topo.client("de-police").await.unwrap();
    let now = topo.now_ms();
    // Four alerts on one person, shared with FR only: IT sees hit flags.
    let mut alerts = Vec::new();
    for i in 0..4 {
        let mut a = samples::foreign_fighter("de-police", &["fr-police"]);
        if i == 2 {
            a.expires_at = Some(from_unix_millis(now + 30 * 60_000)); // ends before the deadline
        }
        de.publish(a.clone()).await.unwrap();
        alerts.push(a);
    }
    let (declined, requested, expiring, forgotten) = (&alerts[0], &alerts[1], &alerts[2], &alerts[3]);

    let it = topo.client("it-police").await.unwrap().with_officer(OFFICER).unwrap();
    let hits = it.lookup(vec![brandt()], PURPOSE, WHY).await.unwrap().hits;
    assert_eq!(hits.len(), 4, "{hits:?}");
    let hit_of = |alert_id: &str| hits.iter().find(|h| h.alert_id == alert_id).unwrap().hit_id.clone();
    // A second lookup by another officer keeps the first officer and time.
    let other = topo.client("it-police").await.unwrap().with_officer("Isp. Russo").unwrap();
    assert_eq!(other.lookup(vec![brandt()], PURPOSE, WHY).await.unwrap().hits.len(), 4);

    let open = it.open_hits().await.unwrap();
    assert_eq!(open.len(), 4, "{open:?}");
    for h in &open {
        assert_eq!((h.holder.as_str(), h.officer.as_str()), ("de-police", OFFICER));
        assert_eq!(h.category(), isx_core::wire::Category::Terrorism);
        let shown = to_unix_millis(h.shown_at.as_ref().unwrap());
        let closes = to_unix_millis(h.closes_at.as_ref().unwrap());
        let want = if h.alert_id == expiring.alert_id { now + 30 * 60_000 } else { shown + 3_600_000 };
        assert!(closes.abs_diff(want) < 1000, "{}: closes at {closes}, not {want}", h.alert_id);
        assert_eq!(h.hit_id, hit_of(&h.alert_id));
    }
    // Only the node that was shown them sees them.
    for node in ["fr-police", "de-police"] {
        let open = topo.client(node).await.unwrap().open_hits().await.unwrap();
        assert!(open.is_empty(), "{node} sees {open:?}");
    }

    // A decline and a request each close their hit, without a HIT_CLOSED record.
    it.decline_follow_up(&hit_of(&declined.alert_id), "not the person we stopped").await.unwrap();
    it.request_access(&hit_of(&requested.alert_id), PURPOSE, WHY).await.unwrap();
    let left: Vec<String> = it.open_hits().await.unwrap().into_iter().map(|h| h.alert_id).collect();
    assert_eq!(left.len(), 2);
    assert!(left.contains(&expiring.alert_id) && left.contains(&forgotten.alert_id), "{left:?}");

    // The expiring alert ends: its hit closes without follow-up, "expired".
    topo.advance_clock(Duration::from_secs(31 * 60));
    let closed =
        SearchRequest { officer: OFFICER.into(), operation: Operation::HitClosed as i32, ..Default::default() };
    let first = eventually("the expired alert's hit to close", || async {
        let found = records(&topo, closed.clone()).await;
        (!found.is_empty()).then_some(found)
    })
    .await;
    assert_eq!(first.len(), 1, "{first:?}");
    assert_eq!(first[0].alert_id, expiring.alert_id);
    assert!(first[0].detail.contains("closed without follow-up (expired)"), "{}", first[0].detail);
    // Past the deadline: the forgotten hit closes, "deadline".
    topo.advance_clock(Duration::from_secs(30 * 60));
    let both = eventually("the forgotten hit to close at its deadline", || async {
        let found = records(&topo, closed.clone()).await;
        (found.len() >= 2).then_some(found)
    })
    .await;
    assert_eq!(both.len(), 2, "{both:?}");
    let last = &both[1];
    assert_eq!(last.alert_id, forgotten.alert_id);
    assert!(last.detail.contains("closed without follow-up (deadline)"), "{}", last.detail);
    assert!(last.detail.contains(&hit_of(&forgotten.alert_id)), "{}", last.detail);
    for r in &both {
        assert_eq!((r.node.as_str(), r.officer.as_str(), r.outcome()), ("it-police", OFFICER, Outcome::Ok));
        assert_eq!(r.recipients.iter().map(|x| x.node.as_str()).collect::<Vec<_>>(), vec!["de-police"]);
        assert!(r.subject_pseudonyms.is_empty() && r.content_digest.is_empty(), "no content: {r:?}");
    }
    // The auditor finds them per node too; the followed-up hits never close.
    let by_node = records(
        &topo,
        SearchRequest { node: "it-police".into(), operation: Operation::HitClosed as i32, ..Default::default() },
    )
    .await;
    assert_eq!(by_node.len(), 2);
    assert!(it.open_hits().await.unwrap().is_empty());
    assert!(by_node.iter().all(|r| r.alert_id != declined.alert_id && r.alert_id != requested.alert_id));
    topo.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restricted_or_withdrawn_alert_is_never_shown_and_cannot_be_requested() {
    let topo = Topology::start(TopologySpec::default_agencies()).await.unwrap();
    let de = topo.client("de-police").await.unwrap();
    let restricted = samples::foreign_fighter("de-police", &["fr-police"]);
    let withdrawn = samples::foreign_fighter("de-police", &["fr-police"]);
    let active = samples::foreign_fighter("de-police", &["fr-police"]);
    for a in [&restricted, &withdrawn, &active] {
        de.publish(a.clone()).await.unwrap();
    }
    let it = topo.client("it-police").await.unwrap();
    let hits = it.lookup(vec![brandt()], PURPOSE, WHY).await.unwrap().hits;
    assert_eq!(hits.len(), 3);
    let hit_of = |alert_id: &str| hits.iter().find(|h| h.alert_id == alert_id).unwrap().hit_id.clone();

    // The origin restricts one alert and withdraws another.
    de.restrict(&restricted.alert_id, "accuracy contested").await.unwrap();
    de.withdraw(&withdrawn.alert_id, "wrong person").await.unwrap();

    let it = topo.client("it-police").await.unwrap();
    let answer = it.lookup(vec![brandt()], PURPOSE, WHY).await.unwrap();
    let shown: Vec<&str> = answer.hits.iter().map(|h| h.alert_id.as_str()).collect();
    assert_eq!(shown, vec![active.alert_id.as_str()], "only the active alert is shown");
    let bytes = answer.encode_to_vec();
    for hidden in [&restricted.alert_id, &withdrawn.alert_id] {
        assert!(!bytes.windows(hidden.len()).any(|w| w == hidden.as_bytes()), "{hidden} leaked");
    }
    // The restricted miss is recorded like a policy's, naming the state.
    let consultations = records(
        &topo,
        SearchRequest {
            alert_id: restricted.alert_id.clone(),
            operation: Operation::Consultation as i32,
            ..Default::default()
        },
    )
    .await;
    let last = consultations.last().unwrap();
    let withheld: BTreeMap<&str, (bool, Vec<String>)> =
        last.hits.iter().map(|h| (h.alert_id.as_str(), (h.shown, h.policy_ids.clone()))).collect();
    assert_eq!(withheld[restricted.alert_id.as_str()], (false, vec!["restricted".to_owned()]));
    // A withdrawal drops the alert's lookup rows: it never matches again.
    assert!(!withheld.contains_key(withdrawn.alert_id.as_str()), "{withheld:?}");
    assert!(withheld[active.alert_id.as_str()].0);

    // A request on either is refused, naming the state; on the active one it goes.
    for (alert_id, state) in [(&restricted.alert_id, "is restricted"), (&withdrawn.alert_id, "is withdrawn")] {
        let err = it.request_access(&hit_of(alert_id), PURPOSE, WHY).await.unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition, "{}", err.message());
        assert!(err.message().contains(&format!("alert {alert_id} {state}")), "{}", err.message());
    }
    it.request_access(&hit_of(&active.alert_id), PURPOSE, WHY).await.unwrap();
    let denials = records(&topo, SearchRequest { operation: Operation::Denial as i32, ..Default::default() }).await;
    assert!(denials.iter().any(|r| r.alert_id.is_empty() && r.detail.contains("is restricted")), "{denials:?}");
    topo.shutdown().await;
}
