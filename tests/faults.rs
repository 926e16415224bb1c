//! Fault injection: a failed audit write, store write or flush refuses with
//! UNAVAILABLE and discloses nothing; a subscriber that disconnects gets its undelivered
//! alerts again; a subscriber that does not read leaves its backlog on disk.

use std::time::Duration;

use isx_core::wire::subscribe_response::Event;
use isx_core::wire::{Operation, Outcome, SearchRequest};
use isx_testkit::{Topology, TopologySpec, samples};
use tonic::Code;

const LIMIT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_audit_write_or_flush_refuses_and_discloses_nothing() {
    let topo = Topology::start(TopologySpec::default_agencies()).await.unwrap();
    let de = topo.client("de-police").await.unwrap();
    let faults = topo.faults();

    faults.set_fail_audit_append(true);
    let first = samples::foreign_fighter("de-police", &["fr-police"]);
    let err = de.publish(first.clone()).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert!(err.message().contains("nothing was disclosed"), "{}", err.message());
    faults.set_fail_audit_append(false);

    faults.set_fail_flush(true);
    let second = samples::migrant_smuggling("de-police", &["fr-police"]);
    let err = de.publish(second.clone()).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    faults.set_fail_flush(false);

    // A store write fails after the outbox rows are written: they are taken
    // back, so no subscription streams them.
    faults.set_fail_store_write(true);
    let fourth = samples::foreign_fighter("de-police", &["fr-police"]);
    let err = de.publish(fourth.clone()).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert!(err.message().contains("injected fault: store write"), "{}", err.message());
    faults.set_fail_store_write(false);

    // After the faults: a third alert is delivered. Deliveries stream in
    // publish order, so by then the failed ones would have arrived too; they
    // never do, and all can be published again as new (nothing was kept).
    let third = samples::trafficking_victim("de-police", &["fr-police"]);
    de.publish(third.clone()).await.unwrap();
    let inbox = topo.inbox("fr-police");
    assert!(inbox.wait_for(&third.alert_id, LIMIT).await.unwrap().is_some());
    assert!(inbox.get(&first.alert_id).unwrap().is_none());
    assert!(inbox.get(&second.alert_id).unwrap().is_none(), "the withdrawn publish was not delivered");
    assert!(inbox.get(&fourth.alert_id).unwrap().is_none(), "the rows of the failed write were taken back");
    assert!(!de.publish(fourth.clone()).await.unwrap().duplicate, "the failed alert was not kept");
    assert!(!de.publish(second.clone()).await.unwrap().duplicate, "the withdrawn alert was not kept");
    assert!(!de.publish(first.clone()).await.unwrap().duplicate);
    assert!(inbox.wait_for(&second.alert_id, LIMIT).await.unwrap().is_some());

    // The withdrawal is on record next to its collection record.
    let about_second =
        topo.audit_records(SearchRequest { alert_id: second.alert_id.clone(), ..Default::default() }).await.unwrap();
    assert!(
        about_second.iter().any(|r| r.operation() == Operation::Denial
            && r.outcome() == Outcome::Error
            && r.detail.contains("publish withdrawn")),
        "{about_second:?}"
    );
    topo.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_disconnects_gets_its_undelivered_alerts_again() {
    let mut topo = Topology::start(TopologySpec::default_agencies()).await.unwrap();
    topo.stop_node("fr-police").await.unwrap();
    let de = topo.client("de-police").await.unwrap();
    let mut ids = Vec::new();
    for _ in 0..3 {
        let a = samples::foreign_fighter("de-police", &["fr-police"]);
        de.publish(a.clone()).await.unwrap();
        ids.push(a.alert_id);
    }
    let fr = topo.client("fr-police").await.unwrap();
    let mut stream = fr.subscribe(0).await.unwrap();
    let first = tokio::time::timeout(LIMIT, stream.message()).await.unwrap().unwrap().unwrap();
    let Some(Event::Delivery(d)) = first.event else { panic!("a delivery") };
    assert_eq!(d.alert.unwrap().alert_id, ids[0]);
    drop(stream); // gone mid-stream, nothing acknowledged

    let mut stream = fr.subscribe(0).await.unwrap();
    let mut again = Vec::new();
    while again.len() < 3 {
        let msg = tokio::time::timeout(LIMIT, stream.message()).await.unwrap().unwrap().unwrap();
        if let Some(Event::Delivery(d)) = msg.event {
            again.push(d.alert.unwrap().alert_id);
        }
        fr.ack(msg.cursor).await.unwrap();
    }
    assert_eq!(again, ids, "every undelivered alert again, in order");
    topo.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_does_not_read_leaves_its_backlog_on_disk() {
    let mut topo = Topology::start(TopologySpec::default_agencies()).await.unwrap();
    topo.stop_node("fr-police").await.unwrap();
    // A node that reads nothing, with a 64 KiB HTTP/2 window (the defaults let
    // a client buffer megabytes itself).
    let opts = topo.client_options("fr-police").unwrap();
    let fr = isx_node::Client::connect_with_window(&opts, Some(65_535)).await.unwrap();
    let _stalled = fr.subscribe(0).await.unwrap(); // opened, never read
    let de = topo.client("de-police").await.unwrap();
    const QUEUED: u64 = 400; // a multiple of the 8 publishing tasks
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let de = de.clone();
        tasks.spawn(async move {
            for _ in 0..QUEUED / 8 {
                de.publish(samples::foreign_fighter("de-police", &["fr-police", "it-police"])).await.unwrap();
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    // The other recipient keeps up: the stalled one costs the gateway nothing in memory.
    let it_count = topo.inbox("it-police");
    tokio::time::timeout(Duration::from_secs(120), async {
        while (it_count.len() as u64) < QUEUED {
            let _ = it_count.wait_for("never", Duration::from_millis(200)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("it-police received {} of {QUEUED}", it_count.len()));
    // How far did the gateway read ahead for the stalled stream? An ack past
    // the end answers with the highest cursor it handed to the stream.
    let err = fr.ack(u64::MAX).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    let highest: u64 = err
        .message()
        .split("highest delivered: ")
        .nth(1)
        .and_then(|t| t.split(')').next())
        .and_then(|n| n.trim().parse().ok())
        .expect("the message names the highest cursor");
    // Cursors are shared by every node's queue; count how many of fr-police's were read ahead.
    let read_ahead = topo
        .audit_records(SearchRequest {
            node: "fr-police".into(),
            operation: Operation::Disclosure as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .len() as u64;
    assert!(highest > 0);
    eprintln!("read ahead for the stalled stream: {read_ahead} of {QUEUED}");
    assert!(read_ahead <= 300, "{read_ahead} of {QUEUED} read into memory for a stream that reads nothing");
    topo.shutdown().await;
}

/// A subscription never streams a row whose publish has not committed. One
/// publish is held after its store writes, before its commit; meanwhile a
/// second publish to the same recipient commits and wakes the recipient's
/// subscription, which reads its outbox while the first is held. The first
/// then fails and is taken back. The publisher was told nothing was
/// disclosed, so the recipient must never have it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_publish_that_fails_after_its_writes_is_never_streamed() {
    let topo = Topology::start(TopologySpec::default_agencies()).await.unwrap();
    let de = topo.client("de-police").await.unwrap();
    let faults = topo.faults();
    let inbox = topo.inbox("fr-police");

    let hold = faults.hold_next_publish();
    let held = samples::foreign_fighter("de-police", &["fr-police"]);
    let publishing = tokio::spawn({
        let (de, held) = (de.clone(), held.clone());
        async move { de.publish(held).await }
    });
    tokio::time::timeout(LIMIT, hold.held).await.expect("the publish reaches the hold").unwrap();

    // A later publish commits while the first is held, and wakes fr-police.
    let later = samples::migrant_smuggling("de-police", &["fr-police"]);
    de.publish(later.clone()).await.unwrap();
    tokio::time::timeout(LIMIT, faults.read_while_held("fr-police"))
        .await
        .expect("fr-police's subscription reads its outbox while the first publish is held");

    // Released, the held publish fails and is taken back.
    drop(hold.release);
    let err = publishing.await.unwrap().unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert!(err.message().contains("nothing was disclosed"), "{}", err.message());

    // An ordering marker: deliveries stream in order, so once it is here,
    // anything before it would be too.
    let marker = samples::trafficking_victim("de-police", &["fr-police"]);
    de.publish(marker.clone()).await.unwrap();
    assert!(inbox.wait_for(&marker.alert_id, LIMIT).await.unwrap().is_some());
    assert!(inbox.get(&later.alert_id).unwrap().is_some(), "the committed publish is delivered");
    assert!(inbox.get(&held.alert_id).unwrap().is_none(), "the failed publish was streamed before its commit");
    let disclosed = topo
        .audit_records(SearchRequest {
            alert_id: held.alert_id.clone(),
            operation: Operation::Disclosure as i32,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(disclosed.is_empty(), "no disclosure of the failed publish is recorded: {disclosed:?}");
    topo.shutdown().await;
}
