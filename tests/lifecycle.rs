//! The alert lifecycle end to end: a real gateway over mTLS on 127.0.0.1:0,
//! the origin's calls (amend, withdraw, restrict, lift, status), and raw
//! `isx_node::Client` subscribers in place of the mock agencies, which
//! read every change and confirm it on `Ack`.

use std::time::Duration;

use isx_core::wire::subscribe_response::Event;
use isx_core::wire::{
    AlertChange, AlertState, Category, ChangeConfirmation, ChangeKind, CopyState, DisclosureLevel, Operation,
    RecipientOutcome, SearchRequest, SpecialCategory, SpecialCategoryData, SubscribeResponse,
};
use isx_node::Client;
use isx_testkit::{Topology, TopologySpec, bad_fields, samples};
use tonic::{Code, Streaming};

/// The bound on any wait for an event; reached only when a test fails.
const LIMIT: Duration = Duration::from_secs(20);

/// A node read by the test instead of its mock agency.
struct Raw {
    node: String,
    client: Client,
    stream: Streaming<SubscribeResponse>,
    cursor: u64,
}

impl Raw {
    /// Stops `node`'s mock agency and subscribes as it.
    async fn open(topo: &mut Topology, node: &str) -> Self {
        topo.stop_node(node).await.unwrap();
        let client = topo.client(node).await.unwrap();
        let stream = client.subscribe(0).await.unwrap();
        Self { node: node.to_owned(), client, stream, cursor: 0 }
    }

    /// Subscribes again (after a gateway restart).
    async fn reopen(&mut self, topo: &Topology) {
        self.client = topo.client(&self.node).await.unwrap();
        self.stream = self.client.subscribe(0).await.unwrap();
    }

    /// The next event, acknowledged (without confirmations).
    async fn next(&mut self) -> Event {
        let msg = tokio::time::timeout(LIMIT, self.stream.message())
            .await
            .unwrap_or_else(|_| panic!("{}: no event within {LIMIT:?}", self.node))
            .unwrap()
            .unwrap_or_else(|| panic!("{}: the stream ended", self.node));
        self.cursor = msg.cursor;
        self.client.ack(msg.cursor).await.unwrap();
        msg.event.expect("an event")
    }

    /// Every event up to and including the delivery of `marker`.
    async fn until_delivery(&mut self, marker: &str) -> Vec<Event> {
        let mut seen = Vec::new();
        for _ in 0..1000 {
            let e = self.next().await;
            let done = matches!(&e, Event::Delivery(d) if d.alert.as_ref().is_some_and(|a| a.alert_id == marker));
            seen.push(e);
            if done {
                return seen;
            }
        }
        panic!("{}: no delivery of {marker}", self.node)
    }

    /// The next change of `alert_id`, skipping other events.
    async fn change(&mut self, alert_id: &str) -> AlertChange {
        for _ in 0..1000 {
            if let Event::Change(c) = self.next().await
                && c.alert_id == alert_id
            {
                return c;
            }
        }
        panic!("{}: no change of {alert_id}", self.node)
    }

    /// Confirms `c` as applied (the version and state it asks).
    async fn confirm(&self, c: &AlertChange) -> isx_core::wire::AckResponse {
        let conf = ChangeConfirmation { alert_id: c.alert_id.clone(), version: c.version, state: c.state };
        self.client.ack_with(self.cursor, vec![conf]).await.unwrap()
    }
}

fn changes_of<'a>(events: &'a [Event], alert_id: &str) -> Vec<&'a AlertChange> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Change(c) if c.alert_id == alert_id => Some(c),
            _ => None,
        })
        .collect()
}

fn deliveries_of(events: &[Event], alert_id: &str) -> usize {
    events
        .iter()
        .filter(|e| matches!(e, Event::Delivery(d) if d.alert.as_ref().is_some_and(|a| a.alert_id == alert_id)))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refusal_names_its_rule_or_field() {
    let topo = Topology::start(TopologySpec::default_agencies()).await.unwrap();
    let de = topo.client("de-police").await.unwrap();
    let fr = topo.client("fr-police").await.unwrap();
    let alert = samples::foreign_fighter("de-police", &["fr-police"]);
    de.publish(alert.clone()).await.unwrap();
    let mut v2 = alert.clone();
    v2.narrative = "corrected narrative".into();

    // Not the origin.
    let mut theirs = v2.clone();
    theirs.origin = "fr-police".into();
    let err = fr.amend(theirs, 1, "looks wrong").await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    assert!(err.message().contains("origin-only"), "{}", err.message());
    for e in [
        fr.withdraw(&alert.alert_id, "looks wrong").await.unwrap_err(),
        fr.restrict(&alert.alert_id, "looks wrong").await.unwrap_err(),
        fr.alert_status(&alert.alert_id).await.unwrap_err(),
    ] {
        assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    }
    // An unknown version, naming the current one.
    let err = de.amend(v2.clone(), 7, "corrected").await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert_eq!(bad_fields(&err), ["replaces_version"]);
    assert!(err.message().contains("which is 1"), "{}", err.message());
    // A missing reason.
    let err = de.amend(v2.clone(), 1, "  ").await.unwrap_err();
    assert_eq!((err.code(), bad_fields(&err)), (Code::InvalidArgument, vec!["reason".to_owned()]));
    let err = de.withdraw(&alert.alert_id, "").await.unwrap_err();
    assert_eq!((err.code(), bad_fields(&err)), (Code::InvalidArgument, vec!["reason".to_owned()]));
    // An unknown alert; a lift of an alert that is not restricted.
    let err = de.withdraw("no-such-alert", "wrong").await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    let err = de.lift_restriction(&alert.alert_id, "checked").await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");

    // The amendment itself, and its retry: a duplicate, nothing written.
    let receipt = de.amend(v2.clone(), 1, "corrected").await.unwrap();
    assert!(!receipt.duplicate);
    assert_eq!(receipt.receipt.as_ref().unwrap().version, 2);
    assert!(de.amend(v2.clone(), 1, "corrected").await.unwrap().duplicate);

    // Amending a withdrawn alert.
    de.withdraw(&alert.alert_id, "the suspect was misidentified").await.unwrap();
    let err = de.amend(alert.clone(), 2, "again").await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("withdrawn"), "{}", err.message());
    // Nor published again under its id.
    assert_eq!(de.publish(alert.clone()).await.unwrap_err().code(), Code::AlreadyExists);

    // Every refusal is a DENIAL record naming the rule or field, never the reason text.
    let denials = topo
        .audit_records(SearchRequest {
            alert_id: alert.alert_id.clone(),
            operation: Operation::Denial as i32,
            ..Default::default()
        })
        .await
        .unwrap();
    let details: Vec<&str> = denials.iter().map(|r| r.detail.as_str()).collect();
    for needle in ["origin-only", "replaces_version", "reason", "withdrawn"] {
        assert!(details.iter().any(|d| d.contains(needle)), "{needle} in {details:?}");
    }
    topo.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_amendment_lowers_one_level_withdraws_another_and_is_confirmed() {
    let mut topo = Topology::start(TopologySpec::default_agencies()).await.unwrap();
    let mut europol = Raw::open(&mut topo, "europol").await;
    let mut frontex = Raw::open(&mut topo, "frontex").await;
    let it = topo.client("it-police").await.unwrap();
    let alert = samples::migrant_smuggling("it-police", &[]);
    it.publish(alert.clone()).await.unwrap();
    europol.until_delivery(&alert.alert_id).await;
    frontex.until_delivery(&alert.alert_id).await;

    // Drug trafficking is outside Frontex's mandate; health data reaches a
    // broadcast recipient at most redacted.
    let mut v2 = alert.clone();
    v2.category = Category::DrugTrafficking as i32;
    v2.subjects[0].special_categories =
        vec![SpecialCategoryData { category: SpecialCategory::Health as i32, detail: "diabetic".into() }];
    let receipt = it.amend(v2.clone(), 1, "the crime area was wrong").await.unwrap().receipt.unwrap();
    let outcome = |n: &str| receipt.recipients.iter().find(|r| r.node == n).map(|r| (r.level(), r.outcome())).unwrap();
    assert_eq!(outcome("europol"), (DisclosureLevel::Redacted, RecipientOutcome::Updated));
    assert_eq!(outcome("frontex"), (DisclosureLevel::Denied, RecipientOutcome::Withdrawn));
    assert_eq!(receipt.version, 2);
    assert_eq!(receipt.replaces_digest, isx_core::digest::content_digest_hex(&alert));

    let update = europol.change(&alert.alert_id).await;
    assert_eq!((update.kind(), update.version, update.state()), (ChangeKind::Update, 2, CopyState::Held));
    let view = update.delivery.as_ref().unwrap();
    assert_eq!(view.level(), DisclosureLevel::Redacted, "the lower view");
    assert_eq!(view.alert.as_ref().unwrap().version, 2);
    let withdrawal = frontex.change(&alert.alert_id).await;
    assert_eq!((withdrawal.kind(), withdrawal.state()), (ChangeKind::Withdrawal, CopyState::Deleted));
    assert!(withdrawal.delivery.is_none());

    // Unconfirmed: visible, and overdue once the grace has passed.
    let status = it.alert_status(&alert.alert_id).await.unwrap();
    assert_eq!((status.version, status.versions.len()), (2, 2));
    let copy = |s: &isx_core::wire::AlertStatus, n: &str| s.copies.iter().find(|c| c.node == n).cloned().unwrap();
    assert!(!copy(&status, "europol").settled && !copy(&status, "europol").overdue);
    topo.advance_clock(Duration::from_secs(2 * 3600));
    let status = it.alert_status(&alert.alert_id).await.unwrap();
    assert!(copy(&status, "europol").overdue && copy(&status, "frontex").overdue, "{status:?}");

    // A confirmation of another version is superseded; the right one settles.
    let stale = ChangeConfirmation { alert_id: alert.alert_id.clone(), version: 1, state: CopyState::Held as i32 };
    let ack = europol.client.ack_with(europol.cursor, vec![stale]).await.unwrap();
    assert_eq!((ack.confirmed, ack.superseded), (0, 1));
    assert_eq!(europol.confirm(&update).await.confirmed, 1);
    assert_eq!(frontex.confirm(&withdrawal).await.confirmed, 1);
    let status = it.alert_status(&alert.alert_id).await.unwrap();
    for n in ["europol", "frontex"] {
        let c = copy(&status, n);
        assert!(c.settled && !c.overdue, "{c:?}");
    }
    assert_eq!(copy(&status, "frontex").confirmed(), CopyState::Deleted);
    assert_eq!(copy(&status, "europol").confirmed_version, 2);

    // The records: one ALTERATION (no content), its disclosure, two confirmations.
    let records =
        topo.audit_records(SearchRequest { alert_id: alert.alert_id.clone(), ..Default::default() }).await.unwrap();
    let alteration = records.iter().find(|r| r.operation() == Operation::Alteration).expect("an ALTERATION");
    let lc = alteration.lifecycle.as_ref().unwrap();
    assert_eq!((lc.kind(), lc.old_version, lc.new_version), (ChangeKind::Update, 1, 2));
    assert_eq!(lc.old_digest, isx_core::digest::content_digest_hex(&alert));
    assert_eq!(
        (alteration.node.as_str(), alteration.justification.as_str()),
        ("it-police", "the crime area was wrong")
    );
    assert!(!alteration.officer.is_empty());
    assert!(!format!("{alteration:?}").contains("Lampedusa"), "no content in the record");
    assert!(!format!("{alteration:?}").contains("Rinaldi"), "no content in the record");
    // The mock agencies (de-police, fr-police) apply and confirm their
    // UPDATE on their own; the raw europol and frontex confirmed once each.
    let confirmed: Vec<&str> = records
        .iter()
        .filter(|r| r.operation() == Operation::ChangeConfirmed)
        .map(|r| r.node.as_str())
        .filter(|n| ["europol", "frontex"].contains(n))
        .collect();
    assert_eq!(confirmed.len(), 2, "{confirmed:?}");
    assert!(confirmed.contains(&"europol") && confirmed.contains(&"frontex"));
    let update_disclosed = records.iter().any(|r| {
        r.operation() == Operation::Disclosure
            && r.recipients.first().is_some_and(|x| x.node == "europol" && x.level() == DisclosureLevel::Redacted)
    });
    assert!(update_disclosed, "the UPDATE's view is a DISCLOSURE record");
    topo.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_withdrawal_reaches_every_copy_along_a_two_hop_forward_chain() {
    let mut topo = Topology::start(TopologySpec::default_agencies()).await.unwrap();
    let mut fr = Raw::open(&mut topo, "fr-police").await;
    let mut it = Raw::open(&mut topo, "it-police").await;
    let mut europol = Raw::open(&mut topo, "europol").await;
    let de = topo.client("de-police").await.unwrap();
    let original = samples::foreign_fighter("de-police", &["fr-police"]);
    de.publish(original.clone()).await.unwrap();
    fr.until_delivery(&original.alert_id).await;
    // fr-police relays it to it-police, which relays that to europol.
    let mut hop1 = original.clone();
    hop1.alert_id = samples::new_alert_id();
    hop1.origin = "fr-police".into();
    hop1.addressees = vec!["it-police".into()];
    hop1.forwarded_from = original.alert_id.clone();
    fr.client.publish(hop1.clone()).await.unwrap();
    it.until_delivery(&hop1.alert_id).await;
    let mut hop2 = hop1.clone();
    hop2.alert_id = samples::new_alert_id();
    hop2.origin = "it-police".into();
    hop2.addressees = vec!["europol".into()];
    hop2.forwarded_from = hop1.alert_id.clone();
    it.client.publish(hop2.clone()).await.unwrap();
    europol.until_delivery(&hop2.alert_id).await;

    let status = de.withdraw(&original.alert_id, "the person was misidentified").await.unwrap();
    assert_eq!(status.state(), AlertState::Withdrawn);
    let c = fr.change(&original.alert_id).await;
    assert_eq!((c.kind(), c.because_of.as_str()), (ChangeKind::Withdrawal, ""));
    let c1 = it.change(&hop1.alert_id).await;
    assert_eq!((c1.kind(), c1.because_of.as_str()), (ChangeKind::Withdrawal, original.alert_id.as_str()));
    let c2 = europol.change(&hop2.alert_id).await;
    assert_eq!((c2.kind(), c2.because_of.as_str()), (ChangeKind::Withdrawal, original.alert_id.as_str()));
    // The origin sees every copy, onward ones by the forward they are of.
    let copies: Vec<(String, String)> = status.copies.iter().map(|c| (c.node.clone(), c.copy_of.clone())).collect();
    for (n, of) in [("fr-police", &original.alert_id), ("it-police", &hop1.alert_id), ("europol", &hop2.alert_id)] {
        assert!(copies.contains(&(n.to_owned(), of.clone())), "{n} of {of} in {copies:?}");
    }
    assert!(status.copies.iter().all(|c| !c.settled && c.expected() == CopyState::Deleted));
    for (raw, change) in [(&fr, &c), (&it, &c1), (&europol, &c2)] {
        assert_eq!(raw.confirm(change).await.confirmed, 1);
    }
    let status = de.alert_status(&original.alert_id).await.unwrap();
    assert!(status.copies.iter().all(|c| c.settled), "{status:?}");

    let erasure = topo
        .audit_records(SearchRequest {
            alert_id: original.alert_id.clone(),
            operation: Operation::Erasure as i32,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(erasure.len(), 1);
    let lc = erasure[0].lifecycle.as_ref().unwrap();
    assert_eq!(lc.follows, [hop1.alert_id.clone(), hop2.alert_id.clone()]);
    assert_eq!(erasure[0].recipients.len(), 3);
    topo.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restriction_holds_an_undelivered_copy_and_the_lift_releases_it() {
    let mut topo = Topology::start(TopologySpec::default_agencies()).await.unwrap();
    let mut it = Raw::open(&mut topo, "it-police").await;
    topo.stop_node("fr-police").await.unwrap(); // offline: its delivery waits
    let de = topo.client("de-police").await.unwrap();
    let alert = samples::foreign_fighter("de-police", &["fr-police", "it-police"]);
    de.publish(alert.clone()).await.unwrap();
    it.until_delivery(&alert.alert_id).await;

    let status = de.restrict(&alert.alert_id, "the source is being re-assessed").await.unwrap();
    assert_eq!(status.state(), AlertState::Restricted);
    let r = it.change(&alert.alert_id).await;
    assert_eq!((r.kind(), r.state()), (ChangeKind::Restriction, CopyState::Restricted));
    it.confirm(&r).await;

    // fr-police comes back: it gets the restriction, but not the held delivery.
    let marker = samples::migrant_smuggling("de-police", &["fr-police"]);
    de.publish(marker.clone()).await.unwrap();
    let mut fr = Raw::open(&mut topo, "fr-police").await;
    let seen = fr.until_delivery(&marker.alert_id).await;
    assert_eq!(deliveries_of(&seen, &alert.alert_id), 0, "held while restricted: {seen:?}");
    let kinds: Vec<ChangeKind> = changes_of(&seen, &alert.alert_id).iter().map(|c| c.kind()).collect();
    assert_eq!(kinds, [ChangeKind::Restriction]);

    let status = de.lift_restriction(&alert.alert_id, "the source is confirmed").await.unwrap();
    assert_eq!(status.state(), AlertState::Active);
    let l = it.change(&alert.alert_id).await;
    assert_eq!((l.kind(), l.state()), (ChangeKind::Lift, CopyState::Held));
    let marker2 = samples::trafficking_victim("de-police", &["fr-police"]);
    de.publish(marker2.clone()).await.unwrap();
    let seen = fr.until_delivery(&marker2.alert_id).await;
    assert_eq!(deliveries_of(&seen, &alert.alert_id), 1, "released by the lift: {seen:?}");
    let kinds: Vec<ChangeKind> = changes_of(&seen, &alert.alert_id).iter().map(|c| c.kind()).collect();
    assert_eq!(kinds, [ChangeKind::Lift]);

    let alterations = topo
        .audit_records(SearchRequest {
            alert_id: alert.alert_id.clone(),
            operation: Operation::Alteration as i32,
            ..Default::default()
        })
        .await
        .unwrap();
    let kinds: Vec<ChangeKind> = alterations.iter().map(|r| r.lifecycle.as_ref().unwrap().kind()).collect();
    assert_eq!(kinds, [ChangeKind::Restriction, ChangeKind::Lift]);
    assert_eq!(alterations[0].justification, "the source is being re-assessed");
    topo.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offline_recipient_catches_up_with_the_new_version_only() {
    let mut topo = Topology::start(TopologySpec::default_agencies()).await.unwrap();
    topo.stop_node("fr-police").await.unwrap();
    let de = topo.client("de-police").await.unwrap();
    let alert = samples::foreign_fighter("de-police", &["fr-police"]);
    de.publish(alert.clone()).await.unwrap();
    let mut v2 = alert.clone();
    v2.subjects[0].documents.clear(); // the passport was someone else's
    de.amend(v2.clone(), 1, "wrong passport").await.unwrap();

    let marker = samples::migrant_smuggling("de-police", &["fr-police"]);
    de.publish(marker.clone()).await.unwrap();
    let mut fr = Raw::open(&mut topo, "fr-police").await;
    let seen = fr.until_delivery(&marker.alert_id).await;
    assert_eq!(deliveries_of(&seen, &alert.alert_id), 0, "the old version is superseded, never streamed");
    let changes = changes_of(&seen, &alert.alert_id);
    assert_eq!(changes.len(), 1, "{seen:?}");
    assert_eq!((changes[0].kind(), changes[0].version), (ChangeKind::Update, 2));
    let view = changes[0].delivery.as_ref().unwrap().alert.as_ref().unwrap();
    assert!(view.subjects[0].documents.is_empty(), "the new version");
    let c = changes[0].clone();
    assert_eq!(fr.confirm(&c).await.confirmed, 1);
    topo.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_alert_tells_every_holder_to_delete_its_copy() {
    let mut topo = Topology::start(TopologySpec::default_agencies()).await.unwrap();
    let mut fr = Raw::open(&mut topo, "fr-police").await;
    let de = topo.client("de-police").await.unwrap();
    let alert = samples::foreign_fighter("de-police", &["fr-police"]);
    de.publish(alert.clone()).await.unwrap();
    fr.until_delivery(&alert.alert_id).await;
    topo.advance_clock(Duration::from_secs(8 * 86_400));
    let c = fr.change(&alert.alert_id).await;
    assert_eq!((c.kind(), c.state()), (ChangeKind::Expiry, CopyState::Deleted));
    assert_eq!(fr.confirm(&c).await.confirmed, 1);
    // The status outlives the alert row.
    let status = de.alert_status(&alert.alert_id).await.unwrap();
    assert_eq!(status.state(), AlertState::Expired);
    assert!(status.copies.iter().all(|c| c.settled && c.confirmed() == CopyState::Deleted), "{status:?}");
    topo.shutdown().await;
}

/// Crash safety: the gateway stops between a change's durable record (with
/// its pending fan-out marker) and the fan-out. After the restart every
/// holder gets the change exactly once, and the log holds one record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_interrupted_before_its_fan_out_reaches_every_holder_once_after_restart() {
    let mut topo = Topology::start(TopologySpec::default_agencies()).await.unwrap();
    let mut fr = Raw::open(&mut topo, "fr-police").await;
    let mut it = Raw::open(&mut topo, "it-police").await;
    let de = topo.client("de-police").await.unwrap();
    let alert = samples::foreign_fighter("de-police", &["fr-police", "it-police"]);
    de.publish(alert.clone()).await.unwrap();
    fr.until_delivery(&alert.alert_id).await;
    it.until_delivery(&alert.alert_id).await;

    topo.faults().set_fail_before_fanout(true);
    let err = de.withdraw(&alert.alert_id, "misidentified").await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    topo.faults().set_fail_before_fanout(false);

    topo.restart_gateway().await.unwrap();
    fr.reopen(&topo).await;
    it.reopen(&topo).await;
    let de = topo.client("de-police").await.unwrap();
    let marker = samples::migrant_smuggling("de-police", &["fr-police", "it-police"]);
    de.publish(marker.clone()).await.unwrap();
    for raw in [&mut fr, &mut it] {
        let seen = raw.until_delivery(&marker.alert_id).await;
        let changes = changes_of(&seen, &alert.alert_id);
        assert_eq!(changes.len(), 1, "{}: exactly one withdrawal: {seen:?}", raw.node);
        assert_eq!(changes[0].kind(), ChangeKind::Withdrawal);
    }
    // A retry after the restart is refused (already withdrawn), not fanned out again.
    let err = de.withdraw(&alert.alert_id, "misidentified").await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    let status = de.alert_status(&alert.alert_id).await.unwrap();
    assert_eq!(status.state(), AlertState::Withdrawn);
    let erasures = topo
        .audit_records(SearchRequest {
            alert_id: alert.alert_id.clone(),
            operation: Operation::Erasure as i32,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(erasures.len(), 1, "one record of the change");
    topo.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lookup_index_follows_the_current_version() {
    use isx_core::wire::lookup_identifier::Kind;
    use isx_core::wire::{DocumentNumber, LookupIdentifier};
    let topo = Topology::start(TopologySpec::default_agencies()).await.unwrap();
    let de = topo.client("de-police").await.unwrap();
    let it = topo.client("it-police").await.unwrap();
    let alert = samples::foreign_fighter("de-police", &[]);
    de.publish(alert.clone()).await.unwrap();
    let passport = || LookupIdentifier {
        kind: Some(Kind::Document(DocumentNumber { issuing_country: "DE".into(), number: "C4J9X1R27".into() })),
    };
    let plate = || LookupIdentifier { kind: Some(Kind::Plate("B-KL 4471".into())) };
    let hits = |r: isx_core::wire::LookupResponse| r.hits.iter().filter(|h| h.holder == "de-police").count();
    let (purpose, why) = ("prevention and detection of terrorist offences", "case DE-2026-4471: border check");
    assert_eq!(hits(it.lookup(vec![passport()], purpose, why).await.unwrap()), 1);

    let mut v2 = alert.clone();
    v2.subjects[0].documents.clear();
    de.amend(v2, 1, "the passport was someone else's").await.unwrap();
    assert_eq!(
        hits(it.lookup(vec![passport()], purpose, why).await.unwrap()),
        0,
        "a removed subject no longer matches"
    );
    assert_eq!(hits(it.lookup(vec![plate()], purpose, why).await.unwrap()), 1, "what stays still matches");

    de.withdraw(&alert.alert_id, "misidentified").await.unwrap();
    assert_eq!(hits(it.lookup(vec![plate()], purpose, why).await.unwrap()), 0, "a withdrawn alert never matches");
    topo.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_auditor_reads_the_status_and_a_recipient_does_not() {
    let topo = Topology::start(TopologySpec::default_agencies()).await.unwrap();
    let de = topo.client("de-police").await.unwrap();
    let alert = samples::foreign_fighter("de-police", &["fr-police"]);
    de.publish(alert.clone()).await.unwrap();
    let status = topo.client("auditor").await.unwrap().alert_status(&alert.alert_id).await.unwrap();
    assert_eq!((status.origin.as_str(), status.state(), status.version), ("de-police", AlertState::Active, 1));
    assert_eq!(status.copies.iter().map(|c| c.node.as_str()).collect::<Vec<_>>(), ["fr-police"]);
    let err = topo.client("fr-police").await.unwrap().alert_status(&alert.alert_id).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    assert!(err.message().contains("origin-or-auditor"), "{}", err.message());
    topo.shutdown().await;
}
