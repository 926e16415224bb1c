//! Whole-system tests of the relay: a real gateway and mock agencies on
//! 127.0.0.1:0 over mutual TLS 1.3, started by `isx-testkit`.

use std::time::Duration;

use isx_core::wire::{DisclosureLevel, subscribe_response::Event};
use isx_node::ClientOptions;
use isx_testkit::{Probe, Refusal, Topology, TopologySpec, bad_fields, probe, samples};
use rustls::AlertDescription;
use tonic::Code;

/// The bound on any wait for a delivery; reached only when a test fails.
const LIMIT: Duration = Duration::from_secs(20);

async fn topology() -> Topology {
    Topology::start(TopologySpec::default_agencies()).await.expect("topology starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_reaches_the_addressees_and_no_one_else() {
    let topo = topology().await;
    let de = topo.client("de-police").await.unwrap();
    let alert = samples::migrant_smuggling("de-police", &["fr-police", "europol"]);
    let resp = de.publish(alert.clone()).await.unwrap();
    let receipt = resp.receipt.unwrap();
    assert!(!resp.duplicate);
    let recipients: Vec<(&str, DisclosureLevel)> =
        receipt.recipients.iter().map(|r| (r.node.as_str(), r.level())).collect();
    assert_eq!(recipients, vec![("europol", DisclosureLevel::Full), ("fr-police", DisclosureLevel::Full)]);

    for node in ["fr-police", "europol"] {
        let got = topo
            .inbox(node)
            .wait_for(&alert.alert_id, LIMIT)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{node} got nothing"));
        assert_eq!(got.delivery.unwrap().alert.unwrap(), alert, "{node} gets the alert as sent");
    }
    // A later broadcast reaches it-police; by then the first alert would have arrived too.
    let marker = samples::foreign_fighter("de-police", &["it-police", "frontex"]);
    de.publish(marker.clone()).await.unwrap();
    for node in ["it-police", "frontex"] {
        assert!(topo.inbox(node).wait_for(&marker.alert_id, LIMIT).await.unwrap().is_some());
        assert!(topo.inbox(node).get(&alert.alert_id).unwrap().is_none(), "{node} was not addressed");
    }
    assert!(
        topo.inbox("de-police").get(&alert.alert_id).unwrap().is_none(),
        "the origin does not receive its own alert"
    );
    topo.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcast_reaches_every_subscriber_but_the_origin() {
    let topo = topology().await;
    let it = topo.client("it-police").await.unwrap();
    let alert = samples::migrant_smuggling("it-police", &[]);
    let receipt = it.publish(alert.clone()).await.unwrap().receipt.unwrap();
    let nodes: Vec<(&str, DisclosureLevel)> = receipt.recipients.iter().map(|r| (r.node.as_str(), r.level())).collect();
    // Every registered node but the origin is a candidate; the default policy decides each level.
    assert_eq!(
        nodes,
        vec![
            ("auditor", DisclosureLevel::Denied),
            ("de-police", DisclosureLevel::Full),
            ("europol", DisclosureLevel::Full),
            ("fr-police", DisclosureLevel::Full),
            ("frontex", DisclosureLevel::Redacted),
        ]
    );
    for node in ["de-police", "europol", "fr-police", "frontex"] {
        assert!(topo.inbox(node).wait_for(&alert.alert_id, LIMIT).await.unwrap().is_some(), "{node}");
    }
    topo.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offline_node_gets_its_backlog_in_order_on_reconnect() {
    let mut topo = topology().await;
    topo.stop_node("fr-police").await.unwrap();
    let de = topo.client("de-police").await.unwrap();
    let mut ids = Vec::new();
    for _ in 0..5 {
        let alert = samples::foreign_fighter("de-police", &["fr-police"]);
        de.publish(alert.clone()).await.unwrap();
        ids.push(alert.alert_id);
    }
    assert!(topo.inbox("fr-police").is_empty());
    topo.start_node("fr-police").await.unwrap();
    for id in &ids {
        assert!(topo.inbox("fr-police").wait_for(id, LIMIT).await.unwrap().is_some());
    }
    let order: Vec<String> = topo.inbox("fr-police").list().unwrap().iter().map(|r| r.alert_id().to_owned()).collect();
    assert_eq!(order, ids, "backlog arrives in publish order");
    topo.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_alerts_survive_a_gateway_restart() {
    let mut topo = topology().await;
    topo.stop_node("it-police").await.unwrap();
    let fr = topo.client("fr-police").await.unwrap();
    let alert = samples::trafficking_victim("fr-police", &["it-police"]);
    fr.publish(alert.clone()).await.unwrap();
    topo.restart_gateway().await.unwrap();
    topo.start_node("it-police").await.unwrap();
    let got = topo.inbox("it-police").wait_for(&alert.alert_id, LIMIT).await.unwrap().expect("delivered after restart");
    assert_eq!(got.delivery.unwrap().alert.unwrap(), alert);

    // Idempotency survives the restart as well.
    let fr = topo.client("fr-police").await.unwrap();
    assert!(fr.publish(alert).await.unwrap().duplicate);
    topo.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_is_at_least_once_until_acked() {
    let mut topo = topology().await;
    topo.stop_node("europol").await.unwrap();
    let de = topo.client("de-police").await.unwrap();
    let alert = samples::foreign_fighter("de-police", &["europol"]);
    de.publish(alert.clone()).await.unwrap();

    let europol = topo.client("europol").await.unwrap();
    let first = {
        let mut stream = europol.subscribe(0).await.unwrap();
        let msg = tokio::time::timeout(LIMIT, stream.message()).await.unwrap().unwrap().unwrap();
        msg.cursor
    };
    // Not acked: a new subscription gets it again, with the same cursor.
    let mut stream = europol.subscribe(0).await.unwrap();
    let again = tokio::time::timeout(LIMIT, stream.message()).await.unwrap().unwrap().unwrap();
    assert_eq!(again.cursor, first);
    let Some(Event::Delivery(d)) = again.event else { panic!("a delivery") };
    assert_eq!(d.alert.unwrap().alert_id, alert.alert_id);
    assert_eq!(europol.ack(first).await.unwrap().released, 1);
    // A cursor that was never delivered cannot be acked.
    let err = europol.ack(first + 1000).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    topo.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undelivered_alerts_expire() {
    let mut topo = topology().await;
    topo.stop_node("fr-police").await.unwrap();
    let de = topo.client("de-police").await.unwrap();
    let stale = samples::foreign_fighter("de-police", &["fr-police"]);
    de.publish(stale.clone()).await.unwrap();
    topo.advance_clock(Duration::from_secs(8 * 24 * 3600));
    let mut fresh = samples::foreign_fighter("de-police", &["fr-police"]);
    fresh.expires_at = Some(isx_core::timestamp::from_unix_millis(topo.now_ms() + 3_600_000));
    de.publish(fresh.clone()).await.unwrap();
    topo.start_node("fr-police").await.unwrap();
    assert!(topo.inbox("fr-police").wait_for(&fresh.alert_id, LIMIT).await.unwrap().is_some());
    // At most the tombstone its expiry leaves (so no late copy comes back); never its content.
    let kept = topo.inbox("fr-police").get(&stale.alert_id).unwrap();
    assert!(kept.as_ref().is_none_or(|r| r.delivery.is_none()), "the expired alert is never delivered: {kept:?}");
    topo.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_cannot_publish_as_another() {
    let topo = topology().await;
    let fr = topo.client("fr-police").await.unwrap();
    let err = fr.publish(samples::foreign_fighter("de-police", &["it-police"])).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(err.message().contains("origin-is-caller"), "{}", err.message());
    topo.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_alerts_name_each_bad_field() {
    let topo = topology().await;
    let de = topo.client("de-police").await.unwrap();
    let mut alert = samples::foreign_fighter("de-police", &["fr-police", "es-police"]);
    alert.purpose.clear();
    alert.subjects[0].date_of_birth = "17.03.1994".into();
    let err = de.publish(alert).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(bad_fields(&err), vec!["purpose", "subjects[0].date_of_birth"]);

    let alert = samples::foreign_fighter("de-police", &["fr-police", "es-police"]);
    let err = de.publish(alert).await.unwrap_err();
    assert_eq!(bad_fields(&err), vec!["addressees[1]"], "an unregistered addressee is refused");
    assert!(err.message().contains("not a registered node"));

    let err = de.without_officer().publish(samples::foreign_fighter("de-police", &[])).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(bad_fields(&err), vec!["x-isx-officer"]);
    let err = de.without_officer().subscribe(0).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    topo.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resending_an_alert_id_is_idempotent_or_a_conflict() {
    let topo = topology().await;
    let de = topo.client("de-police").await.unwrap();
    let alert = samples::foreign_fighter("de-police", &["fr-police"]);
    let first = de.publish(alert.clone()).await.unwrap();
    let second = de.publish(alert.clone()).await.unwrap();
    assert!(second.duplicate);
    assert_eq!(second.receipt, first.receipt, "the original receipt comes back");

    let mut changed = alert.clone();
    changed.narrative.push_str(" Update: seen in Graz.");
    let err = de.publish(changed).await.unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists);

    assert!(topo.inbox("fr-police").wait_for(&alert.alert_id, LIMIT).await.unwrap().is_some());
    let marker = samples::foreign_fighter("de-police", &["fr-police"]);
    de.publish(marker.clone()).await.unwrap();
    assert!(topo.inbox("fr-police").wait_for(&marker.alert_id, LIMIT).await.unwrap().is_some());
    let record = topo.inbox("fr-police").get(&alert.alert_id).unwrap().unwrap();
    assert_eq!(record.duplicates, 0, "a duplicate publish queues nothing new");
    assert_eq!(topo.inbox("fr-police").len(), 2);
    topo.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversize_alert_is_refused() {
    let mut spec = TopologySpec::default_agencies();
    spec.limits.max_alert_bytes = 4096;
    let topo = Topology::start(spec).await.unwrap();
    let de = topo.client("de-police").await.unwrap();
    let mut alert = samples::foreign_fighter("de-police", &["fr-police"]);
    alert.narrative = "x".repeat(5000);
    let err = de.publish(alert).await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert!(err.message().contains("max_alert_bytes"));
    topo.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_certificates_are_refused_at_the_handshake_and_unregistered_nodes_dropped() {
    let topo = topology().await;
    let tmp = tempfile::tempdir().unwrap();

    // A certificate from another CA, presented to our gateway.
    let other = tmp.path().join("other");
    isx_tls::pki::init(&isx_tls::pki::InitOptions::new(&other)).unwrap();
    let mixed = tmp.path().join("mixed");
    std::fs::create_dir_all(&mixed).unwrap();
    std::fs::copy(topo.pki_dir().join("ca.crt"), mixed.join("ca.crt")).unwrap();
    for ext in ["crt", "key"] {
        std::fs::copy(other.join(format!("de-police.{ext}")), mixed.join(format!("de-police.{ext}"))).unwrap();
    }
    let mut opts = topo.client_options("de-police").unwrap();
    opts.pki_dir = mixed;
    // Every development CA has the same name, so the chain leads to our CA by
    // name and its signature does not verify: rustls answers `decrypt_error`.
    assert_eq!(
        probe(&opts).await.unwrap(),
        Probe::Handshake(Refusal::Alert(AlertDescription::DecryptError)),
        "a foreign CA's certificate is refused at the handshake"
    );

    // A certificate from our CA for a node the gateway does not know: TLS
    // completes, then the gateway closes before any RPC.
    let es = isx_core::NodeId::new("es-police").unwrap();
    isx_tls::pki::issue_node(&topo.pki_dir(), &es, time::Duration::days(1)).unwrap();
    let opts = ClientOptions { node: es, ..topo.client_options("de-police").unwrap() };
    assert_eq!(probe(&opts).await.unwrap(), Probe::Dropped, "an unregistered node is dropped before any RPC");

    // An expired certificate from our CA.
    let mut expired = topo.client_options("fr-police").unwrap();
    let dir = tmp.path().join("expired");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(topo.pki_dir().join("ca.crt"), dir.join("ca.crt")).unwrap();
    std::fs::copy(topo.pki_dir().join("ca.key"), dir.join("ca.key")).unwrap();
    isx_tls::pki::issue_node(&dir, &expired.node, time::Duration::days(-1)).unwrap();
    expired.pki_dir = dir;
    assert_eq!(
        probe(&expired).await.unwrap(),
        Probe::Handshake(Refusal::Alert(AlertDescription::CertificateExpired)),
        "an expired certificate is refused at the handshake"
    );

    // A registered node without the roles the probe call needs is served, and
    // its call refused by status: not a connection refusal.
    assert_eq!(probe(&topo.client_options("auditor").unwrap()).await.unwrap(), Probe::Status(Code::PermissionDenied));
    // The real identity is served.
    assert_eq!(probe(&topo.client_options("de-police").unwrap()).await.unwrap(), Probe::Served);
    topo.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_reflection_are_served() {
    let topo = topology().await;
    let client = topo.client("de-police").await.unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(client.channel());
    let resp = health
        .check(tonic_health::pb::HealthCheckRequest { service: "isx.v1.Exchange".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.status(), tonic_health::pb::health_check_response::ServingStatus::Serving);

    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let mut reflection = ServerReflectionClient::new(client.channel());
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = reflection.server_reflection_info(tokio_stream::iter(vec![request])).await.unwrap().into_inner();
    let reply = stream.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = reply.message_response else { panic!("a service list") };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(names.contains(&"isx.v1.Exchange".to_owned()), "{names:?}");
    assert!(names.contains(&"grpc.health.v1.Health".to_owned()), "{names:?}");
    topo.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_connections_are_refused() {
    let topo = topology().await;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", topo.gateway_addr()))
        .unwrap()
        .connect_timeout(LIMIT)
        .timeout(LIMIT)
        .connect()
        .await;
    if let Ok(channel) = channel {
        let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
        let result = health.check(tonic_health::pb::HealthCheckRequest { service: String::new() }).await;
        assert!(result.is_err(), "plaintext must not be served");
    }
    topo.shutdown().await;
}
