use super::*;
use isx_core::timestamp::from_unix_millis;
use isx_core::wire::Delivery;

fn node(id: &str) -> NodeId {
    NodeId::new(id).unwrap()
}

fn open(dir: &std::path::Path) -> Store {
    let nodes = [node("fr-police"), node("it-police"), node("de-police")];
    Store::open(&dir.join("db"), &dir.join("k.store.key"), &nodes, 1000).unwrap()
}

fn delivery_to(to: &str, id: &str) -> Outgoing {
    let delivery = Delivery { alert: Some(Alert { alert_id: id.into(), ..Default::default() }), ..Default::default() };
    Outgoing { node: node(to), entry: OutboxEntry { event: Some(Event::Delivery(delivery)), ..Default::default() } }
}

fn write(id: &str, narrative: &str, to: &[&str], expires_ms: u64, index: &[(&str, &str)]) -> PublishWrite {
    let alert = Alert { alert_id: id.into(), narrative: narrative.into(), ..Default::default() };
    let outgoing = to
        .iter()
        .map(|n| {
            let mut o = delivery_to(n, id);
            o.entry.expires_ms = expires_ms;
            o
        })
        .collect();
    PublishWrite {
        stored: StoredAlert {
            digest: isx_core::digest::content_digest(&alert).to_vec(),
            alert: Some(alert),
            receipt: Some(Receipt::default()),
            ..Default::default()
        },
        outgoing,
        expires_ms,
        index: index.iter().map(|(p, k)| IndexRow { pseudonym: (*p).into(), kind: (*k).into() }).collect(),
    }
}

fn stored(store: &Store, w: &PublishWrite) -> Vec<Queued> {
    match store.publish(w).unwrap() {
        PublishOutcome::Stored(in_flight) => {
            let queued = in_flight.queued().to_vec();
            in_flight.settle();
            queued
        }
        other => panic!("not stored: {other:?}"),
    }
}

#[test]
fn publish_pending_ack_expire() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let (fr, it) = (node("fr-police"), node("it-police"));
    let first = stored(&store, &write("a1", "x", &["fr-police", "it-police"], 1000, &[("p1", "plate")]));
    let (s1, s2) = (first[0].seq, first[1].seq);
    assert!(s2 > s1 && s1 >= 1, "the store assigns increasing sequence numbers");
    assert_eq!(first[0].node, fr);
    assert!(matches!(store.publish(&write("a1", "x", &[], 1000, &[])).unwrap(), PublishOutcome::Duplicate(_)));
    assert!(matches!(store.publish(&write("a1", "y", &[], 1000, &[])).unwrap(), PublishOutcome::Conflict));

    let s3 = stored(&store, &write("a2", "z", &["fr-police"], 5000, &[]))[0].seq;
    let got: Vec<u64> = store.pending(&fr, 0, 10, 0).unwrap().into_iter().map(|(s, _)| s).collect();
    assert_eq!(got, vec![s1, s3]);
    assert_eq!(store.pending(&fr, s1, 10, 0).unwrap().len(), 1);
    assert_eq!(store.pending(&fr, 0, 1, 0).unwrap().len(), 1, "limit");
    assert_eq!(store.pending(&fr, 0, 10, 1000).unwrap().len(), 1, "expired entries are skipped");
    assert_eq!((store.queues().queued("fr-police"), store.queues().queued("it-police")), (2, 1));

    assert_eq!(store.ack(&fr, s1).unwrap(), 1);
    assert_eq!(store.ack(&fr, s1).unwrap(), 0, "acking twice releases nothing");
    assert_eq!(store.backlog(&fr), 1);
    assert_eq!(store.queues().queued("fr-police"), 1, "the count follows the ack");
    assert_eq!(store.backlog(&it), 1);

    assert_eq!(store.index().matches("p1", 10).unwrap(), vec![Match { alert_id: "a1".into(), kind: "plate".into() }]);
    let expired = store.expire(1000).unwrap();
    assert_eq!(expired, vec![Expired { alert_id: "a1".into(), undelivered: 1, index_rows: 1 }]);
    assert!(store.index().matches("p1", 10).unwrap().is_empty(), "the lookup rows expire with the alert");
    assert_eq!(store.backlog(&it), 0);
    assert_eq!(store.queues().queued("it-police"), 0, "the count follows the expiry");
    assert!(store.alert("a1").unwrap().is_none());
    assert!(store.alert("a2").unwrap().is_some());
}

#[test]
fn unsettled_rows_are_not_read_and_retracted_rows_never() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let fr = node("fr-police");
    let held = write("a1", "x", &["fr-police"], u64::MAX, &[]);
    let PublishOutcome::Stored(in_flight) = store.publish(&held).unwrap() else { panic!() };
    let later = stored(&store, &write("a2", "y", &["fr-police"], u64::MAX, &[]));
    assert!(store.pending(&fr, 0, 10, 0).unwrap().is_empty(), "nothing at or above an unsettled row is read");
    store.retract(&held, in_flight).unwrap();
    let got: Vec<u64> = store.pending(&fr, 0, 10, 0).unwrap().into_iter().map(|(s, _)| s).collect();
    assert_eq!(got, vec![later[0].seq], "the retracted row is gone, the later one readable");
    assert_eq!(store.queues().queued("fr-police"), 1);
    assert!(store.alert("a1").unwrap().is_none());
}

#[test]
fn a_row_dropped_unsettled_becomes_readable() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let PublishOutcome::Stored(in_flight) = store.publish(&write("a1", "x", &["fr-police"], u64::MAX, &[])).unwrap()
    else {
        panic!()
    };
    drop(in_flight); // no runtime here: settled at once, after a flush
    assert_eq!(store.pending(&node("fr-police"), 0, 10, 0).unwrap().len(), 1);
}

#[test]
fn state_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let fr = node("fr-police");
    let seq = {
        let store = open(dir.path());
        let seq = stored(&store, &write("a1", "x", &["fr-police"], 9000, &[]))[0].seq;
        store.db().flush().unwrap();
        seq
    };
    let store = open(dir.path());
    assert_eq!(store.pending(&fr, 0, 10, 0).unwrap()[0].0, seq);
    assert_eq!(store.queues().queued("fr-police"), 1, "counts start from the outbox");
}

fn request(id: &str, deadline: u64) -> AccessRequest {
    AccessRequest {
        request_id: id.into(),
        hit_id: "h1".into(),
        alert_id: "a1".into(),
        requester: "it-police".into(),
        holder: "de-police".into(),
        deadline: Some(from_unix_millis(deadline)),
        requested_at: Some(from_unix_millis(1)),
        state: AccessState::Pending as i32,
        ..Default::default()
    }
}

#[test]
fn requests_open_list_fall_due_and_close_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let (de, it) = (node("de-police"), node("it-police"));
    let hit = HitRow { requester: "it-police".into(), alert_id: "a1".into(), ..Default::default() };
    store.index().record_hits(&[("h1".into(), hit.clone())]).unwrap();
    let r = request("ar-1", 5000);
    let note = Outgoing {
        node: de.clone(),
        entry: OutboxEntry { event: Some(Event::AccessRequest(r.clone())), expires_ms: 5000, ..Default::default() },
    };
    store.open_request(&r, &HitRow { request_id: "ar-1".into(), ..hit }, note).unwrap().settle();
    assert_eq!(store.index().hit("h1").unwrap().unwrap().request_id, "ar-1");
    assert_eq!(store.requests().of_node("it-police").unwrap(), vec![r.clone()]);
    assert_eq!(store.requests().of_node("de-police").unwrap().len(), 1);
    assert!(store.requests().of_node("fr-police").unwrap().is_empty());
    assert_eq!(store.pending(&de, 0, 10, 0).unwrap().len(), 1, "the holder is notified");
    assert_eq!(store.queues().queued("de-police"), 1);
    assert!(store.requests().due(4999).unwrap().is_empty());
    assert_eq!(store.requests().due(5000).unwrap(), vec![r.clone()]);

    let closed = AccessRequest { state: AccessState::Denied as i32, ..r.clone() };
    let outcome = Outgoing {
        node: it.clone(),
        entry: OutboxEntry {
            event: Some(Event::AccessOutcome(closed.clone())),
            expires_ms: 9000,
            ..Default::default()
        },
    };
    store.close_request(&closed, &[outcome]).unwrap().expect("pending").settle();
    assert!(store.close_request(&closed, &[]).unwrap().is_none(), "a request closes once");
    assert!(store.requests().due(u64::MAX - 1).unwrap().is_empty());
    assert_eq!(store.pending(&it, 0, 10, 0).unwrap().len(), 1);
    assert_eq!(store.requests().get("ar-1").unwrap().unwrap().state(), AccessState::Denied);
}

#[test]
fn hits_are_recorded_once_and_dropped_with_their_alert() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let row = HitRow { requester: "it-police".into(), alert_id: "a1".into(), ..Default::default() };
    store.index().record_hits(&[("h1".into(), row.clone())]).unwrap();
    store.index().update_hit("h1", &HitRow { declined: true, ..row.clone() }).unwrap();
    store.index().record_hits(&[("h1".into(), row)]).unwrap();
    assert!(store.index().hit("h1").unwrap().unwrap().declined, "a later lookup keeps the hit's state");
    assert_eq!(store.index().drop_alert("a1", &[]).unwrap(), 1);
    assert!(store.index().hit("h1").unwrap().is_none());
}
