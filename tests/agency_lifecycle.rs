//! The alert lifecycle as the agencies live it: a real gateway and mock
//! agencies on 127.0.0.1:0 over mutual TLS 1.3. The origin amends,
//! withdraws, restricts and lifts; every holder's store ends in the state
//! the change asks for, each holder confirms once flushed, and the
//! gateway's `GetAlertStatus` shows every copy confirmed. An agency offline
//! during the change catches up; one that applied a change but died before
//! its ack applies it again harmlessly and confirms.

use std::collections::BTreeMap;
use std::time::Duration;

use isx_core::NodeId;
use isx_core::wire::{Alert, AlertChange, AlertStatus, Category, ChangeKind, CopyState, DisclosureLevel};
use isx_node::NodeEvent;
use isx_node::inbox::ChangeEffect;
use isx_testkit::{Topology, TopologySpec, samples};
use tokio::sync::mpsc::UnboundedReceiver;

/// The bound on any wait; reached only when a test fails.
const LIMIT: Duration = Duration::from_secs(20);

type Events = UnboundedReceiver<(NodeId, NodeEvent)>;

async fn topology() -> (Topology, Events) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let topo = Topology::start_with_events(TopologySpec::default_agencies(), Some(tx)).await.expect("topology starts");
    (topo, rx)
}

/// A change as one node confirmed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Confirmed {
    version: u32,
    state: CopyState,
    effect: ChangeEffect,
}

/// Waits until each of `nodes` reports that it applied and confirmed a
/// change of `kind` to `alert_id`; returns what each confirmed. Other
/// events are skipped. Bounded by [`LIMIT`].
async fn changed(events: &mut Events, alert_id: &str, kind: ChangeKind, nodes: &[&str]) -> BTreeMap<String, Confirmed> {
    let deadline = tokio::time::Instant::now() + LIMIT;
    let mut seen = BTreeMap::new();
    while seen.len() < nodes.len() {
        let event = tokio::time::timeout_at(deadline, events.recv())
            .await
            .unwrap_or_else(|_| panic!("{kind:?} of {alert_id}: only {seen:?} of {nodes:?} confirmed"))
            .expect("the event channel stays open");
        if let (node, NodeEvent::Changed { alert_id: id, kind: k, version, state, effect }) = event
            && id == alert_id
            && k == kind
            && nodes.contains(&node.as_str())
        {
            seen.insert(node.to_string(), Confirmed { version, state, effect });
        }
    }
    seen
}

/// Waits until each of `nodes` holds `alert_id`.
async fn delivered(topo: &Topology, alert_id: &str, nodes: &[&str]) {
    for node in nodes {
        let got = topo.inbox(node).wait_for(alert_id, LIMIT).await.unwrap();
        assert!(got.is_some(), "{node} received {alert_id}");
    }
}

/// The origin's view of the alert.
async fn status(topo: &Topology, origin: &str, alert_id: &str) -> AlertStatus {
    topo.client(origin).await.unwrap().alert_status(alert_id).await.expect("the origin sees the status")
}

/// Each copy's node with (confirmed version, confirmed state, settled).
fn confirmations(s: &AlertStatus) -> BTreeMap<String, (u32, CopyState, bool)> {
    s.copies.iter().map(|c| (c.node.clone(), (c.confirmed_version, c.confirmed(), c.settled))).collect()
}

fn all(nodes: &[&str], confirmed: Confirmed) -> BTreeMap<String, Confirmed> {
    nodes.iter().map(|n| ((*n).to_owned(), confirmed)).collect()
}

const HOLDERS: [&str; 3] = ["europol", "fr-police", "frontex"];

async fn published(topo: &Topology) -> Alert {
    let alert = samples::migrant_smuggling("de-police", &HOLDERS);
    let receipt = topo.client("de-police").await.unwrap().publish(alert.clone()).await.unwrap().receipt.unwrap();
    let levels: Vec<(&str, DisclosureLevel)> =
        receipt.recipients.iter().map(|r| (r.node.as_str(), r.level())).collect();
    assert_eq!(
        levels,
        [
            ("europol", DisclosureLevel::Full),
            ("fr-police", DisclosureLevel::Full),
            ("frontex", DisclosureLevel::Redacted)
        ]
    );
    delivered(topo, &alert.alert_id, &HOLDERS).await;
    alert
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_amendment_replaces_every_copy_and_a_recipient_no_longer_allowed_deletes_its_own() {
    let (topo, mut events) = topology().await;
    let alert = published(&topo).await;
    let id = alert.alert_id.clone();

    // Version 2: the narrative corrected. Every holder gets its view of it.
    let mut v2 = alert.clone();
    v2.narrative = "Corrected: the van crossed at Ventimiglia, not at Menton.".into();
    let de = topo.client("de-police").await.unwrap();
    let receipt = de.amend(v2.clone(), 1, "crossing point corrected").await.unwrap().receipt.unwrap();
    assert_eq!(receipt.version, 2);
    let held = Confirmed { version: 2, state: CopyState::Held, effect: ChangeEffect::Applied };
    assert_eq!(changed(&mut events, &id, ChangeKind::Update, &HOLDERS).await, all(&HOLDERS, held));
    for node in HOLDERS {
        let copy = topo.inbox(node).get(&id).unwrap().unwrap();
        let view = copy.delivery.as_ref().and_then(|d| d.alert.as_ref()).expect("a copy with content");
        assert_eq!((copy.version, copy.is_deleted(), copy.last_change()), (2, false, ChangeKind::Update), "{node}");
        assert_eq!(view.narrative, v2.narrative, "{node} holds the corrected narrative");
    }
    let frontex = topo.inbox("frontex").get(&id).unwrap().unwrap();
    assert_eq!(frontex.level(), DisclosureLevel::Redacted, "the new view is decided like a delivery");
    let s = status(&topo, "de-police", &id).await;
    assert_eq!(s.version, 2);
    for node in HOLDERS {
        assert_eq!(confirmations(&s)[node], (2, CopyState::Held, true), "{node}: {s:?}");
    }

    // Version 3 leaves Frontex's mandate: Frontex deletes its copy, the others update.
    let mut v3 = v2.clone();
    v3.category = Category::MoneyLaundering as i32;
    de.amend(v3, 2, "it is money laundering, not smuggling").await.unwrap();
    let stays = ["europol", "fr-police"];
    let updated = changed(&mut events, &id, ChangeKind::Update, &stays).await;
    assert_eq!(updated, all(&stays, Confirmed { version: 3, ..held }));
    let withdrawn = changed(&mut events, &id, ChangeKind::Withdrawal, &["frontex"]).await;
    assert_eq!(
        withdrawn["frontex"],
        Confirmed { version: 3, state: CopyState::Deleted, effect: ChangeEffect::Applied }
    );
    let tombstone = topo.inbox("frontex").get(&id).unwrap().unwrap();
    assert!(tombstone.is_deleted() && tombstone.delivery.is_none(), "a tombstone, no content: {tombstone:?}");
    assert_eq!(tombstone.alert_id(), id);
    let s = status(&topo, "de-police", &id).await;
    let c = confirmations(&s);
    assert_eq!(c["frontex"], (3, CopyState::Deleted, true), "{s:?}");
    assert_eq!(c["europol"], (3, CopyState::Held, true), "{s:?}");
    topo.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_withdrawal_deletes_every_copy_and_a_redelivery_does_not_bring_it_back() {
    let (topo, mut events) = topology().await;
    let alert = published(&topo).await;
    let id = alert.alert_id.clone();
    let de = topo.client("de-police").await.unwrap();
    de.withdraw(&id, "identity mix-up").await.unwrap();
    let deleted = Confirmed { version: 1, state: CopyState::Deleted, effect: ChangeEffect::Applied };
    assert_eq!(changed(&mut events, &id, ChangeKind::Withdrawal, &HOLDERS).await, all(&HOLDERS, deleted));
    for node in HOLDERS {
        let copy = topo.inbox(node).get(&id).unwrap().unwrap();
        assert!(copy.is_deleted() && copy.delivery.is_none(), "{node}: {copy:?}");
        assert_eq!((copy.version, copy.last_change()), (1, ChangeKind::Withdrawal), "{node}");
        // A late copy of the version it deleted stays out.
        let late = isx_core::wire::Delivery {
            alert: Some(alert.clone()),
            level: DisclosureLevel::Full as i32,
            ..Default::default()
        };
        assert!(!topo.inbox(node).put(999, late, 1).unwrap(), "{node}: not resurrected");
        assert!(topo.inbox(node).get(&id).unwrap().unwrap().delivery.is_none(), "{node}");
    }
    let s = status(&topo, "de-police", &id).await;
    for node in HOLDERS {
        assert_eq!(confirmations(&s)[node], (1, CopyState::Deleted, true), "{node}: {s:?}");
    }
    assert!(s.copies.iter().all(|c| !c.overdue), "{s:?}");
    topo.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restriction_marks_every_copy_and_a_lift_unmarks_it() {
    let (topo, mut events) = topology().await;
    let alert = published(&topo).await;
    let id = alert.alert_id.clone();
    let de = topo.client("de-police").await.unwrap();

    de.restrict(&id, "accuracy contested by the data subject").await.unwrap();
    let marked = Confirmed { version: 1, state: CopyState::Restricted, effect: ChangeEffect::Applied };
    assert_eq!(changed(&mut events, &id, ChangeKind::Restriction, &HOLDERS).await, all(&HOLDERS, marked));
    for node in HOLDERS {
        let copy = topo.inbox(node).get(&id).unwrap().unwrap();
        assert!(copy.restricted && copy.delivery.is_some() && !copy.is_deleted(), "{node}: marked, kept");
    }
    let s = status(&topo, "de-police", &id).await;
    for node in HOLDERS {
        assert_eq!(confirmations(&s)[node], (1, CopyState::Restricted, true), "{node}: {s:?}");
    }

    de.lift_restriction(&id, "accuracy confirmed").await.unwrap();
    let unmarked = Confirmed { version: 1, state: CopyState::Held, effect: ChangeEffect::Applied };
    assert_eq!(changed(&mut events, &id, ChangeKind::Lift, &HOLDERS).await, all(&HOLDERS, unmarked));
    for node in HOLDERS {
        let copy = topo.inbox(node).get(&id).unwrap().unwrap();
        assert!(!copy.restricted && copy.delivery.is_some(), "{node}: unmarked");
        assert_eq!(copy.last_change(), ChangeKind::Lift, "{node}");
    }
    let s = status(&topo, "de-police", &id).await;
    for node in HOLDERS {
        assert_eq!(confirmations(&s)[node], (1, CopyState::Held, true), "{node}: {s:?}");
    }
    topo.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agency_offline_during_the_change_is_shown_unconfirmed_and_catches_up() {
    let (mut topo, mut events) = topology().await;
    let alert = published(&topo).await;
    let id = alert.alert_id.clone();
    topo.stop_node("fr-police").await.unwrap();
    topo.client("de-police").await.unwrap().withdraw(&id, "identity mix-up").await.unwrap();
    let online = ["europol", "frontex"];
    changed(&mut events, &id, ChangeKind::Withdrawal, &online).await;
    let s = status(&topo, "de-police", &id).await;
    let c = confirmations(&s);
    assert!(!c["fr-police"].2, "fr-police has not confirmed: {s:?}");
    assert!(c["europol"].2 && c["frontex"].2, "{s:?}");
    assert!(topo.inbox("fr-police").get(&id).unwrap().unwrap().delivery.is_some(), "still held while offline");

    topo.start_node("fr-police").await.unwrap();
    let got = changed(&mut events, &id, ChangeKind::Withdrawal, &["fr-police"]).await;
    assert_eq!(got["fr-police"], Confirmed { version: 1, state: CopyState::Deleted, effect: ChangeEffect::Applied });
    assert!(topo.inbox("fr-police").get(&id).unwrap().unwrap().is_deleted());
    assert_eq!(confirmations(&status(&topo, "de-police", &id).await)["fr-police"], (1, CopyState::Deleted, true));
    topo.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_applied_before_a_crash_is_applied_again_harmlessly_and_confirmed() {
    let (mut topo, mut events) = topology().await;
    let alert = published(&topo).await;
    let id = alert.alert_id.clone();
    // fr-police applies the withdrawal and flushes, then dies before its
    // ack: here, its store gets the change while the agency is stopped.
    topo.stop_node("fr-police").await.unwrap();
    topo.client("de-police").await.unwrap().withdraw(&id, "identity mix-up").await.unwrap();
    let change = AlertChange {
        alert_id: id.clone(),
        kind: ChangeKind::Withdrawal as i32,
        version: 1,
        state: CopyState::Deleted as i32,
        ..Default::default()
    };
    let inbox = topo.inbox("fr-police");
    let first = inbox.apply(1, &change, 1_000).unwrap().unwrap();
    assert_eq!(first.effect, ChangeEffect::Applied);
    inbox.flush_stored(1).await.unwrap();
    let s = status(&topo, "de-police", &id).await;
    assert!(!confirmations(&s)["fr-police"].2, "not acknowledged, so not confirmed: {s:?}");

    // Back up: the gateway sends the change again; it changes nothing and is confirmed.
    topo.start_node("fr-police").await.unwrap();
    let got = changed(&mut events, &id, ChangeKind::Withdrawal, &["fr-police"]).await;
    assert_eq!(got["fr-police"], Confirmed { version: 1, state: CopyState::Deleted, effect: ChangeEffect::Repeated });
    let copy = inbox.get(&id).unwrap().unwrap();
    assert_eq!(copy.deleted_ms, 1_000, "deleted once, when first applied");
    assert_eq!(confirmations(&status(&topo, "de-police", &id).await)["fr-police"], (1, CopyState::Deleted, true));
    topo.shutdown().await;
}
