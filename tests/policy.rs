//! Whole-system tests of proportionate disclosure: the default Cedar policy
//! decides every recipient's level, over real mTLS.

use std::time::Duration;

use isx_core::wire::{Alert, Category, DisclosureLevel, HandlingCode, Tlp};
use isx_testkit::{Topology, TopologySpec, samples};
use tonic::Code;
use tonic_types::StatusExt;

const LIMIT: Duration = Duration::from_secs(20);

async fn topology() -> Topology {
    Topology::start(TopologySpec::default_agencies()).await.expect("topology starts")
}

fn levels(receipt: &isx_core::wire::Receipt) -> Vec<(String, DisclosureLevel)> {
    receipt.recipients.iter().map(|r| (r.node.clone(), r.level())).collect()
}

/// Publishes `marker` to `node` and waits for it; afterwards anything queued
/// for `node` before the marker has been delivered too (outboxes are ordered).
async fn settle(topo: &Topology, from: &str, node: &str) {
    let marker = samples::migrant_smuggling(from, &[node]);
    topo.client(from).await.unwrap().publish(marker.clone()).await.unwrap();
    assert!(topo.inbox(node).wait_for(&marker.alert_id, LIMIT).await.unwrap().is_some(), "{node} settles");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redacted_recipient_really_lacks_the_removed_fields() {
    let topo = topology().await;
    let it = topo.client("it-police").await.unwrap();
    let alert = samples::trafficking_victim("it-police", &["frontex", "europol"]);
    let receipt = it.publish(alert.clone()).await.unwrap().receipt.unwrap();
    let frontex = receipt.recipients.iter().find(|r| r.node == "frontex").unwrap();
    assert_eq!(frontex.level(), DisclosureLevel::Redacted);
    assert!(frontex.policy_ids.contains(&"frontex-depersonalised".to_owned()), "{:?}", frontex.policy_ids);
    assert!(!receipt.policy_version.is_empty());

    let got = topo.inbox("frontex").wait_for(&alert.alert_id, LIMIT).await.unwrap().expect("frontex receives");
    let delivery = got.delivery.unwrap();
    assert_eq!(delivery.level(), DisclosureLevel::Redacted);
    assert_eq!(delivery.removed_fields, frontex.removed_fields);
    let view = delivery.alert.unwrap();
    for (sent, seen) in alert.subjects.iter().zip(&view.subjects) {
        assert!(seen.family_name.is_empty() && seen.given_names.is_empty(), "names removed");
        assert_eq!(seen.date_of_birth, sent.date_of_birth[..4], "date of birth reduced to the year");
        assert!(seen.documents.iter().all(|d| d.number.is_empty()), "document numbers removed");
        assert!(seen.special_categories.is_empty(), "special categories dropped");
        assert_eq!(seen.role, sent.role);
    }
    assert!(view.narrative.is_empty());
    // No personal identifier of the sent alert appears anywhere in the delivered bytes.
    let bytes = prost::Message::encode_to_vec(&view);
    for needle in ["Popescu", "Ana Maria", "RX771203", "19FV55021", "Dumont", "insulin", "2010-08-09"] {
        assert!(!bytes.windows(needle.len()).any(|w| w == needle.as_bytes()), "{needle} leaked to frontex");
    }

    let europol = topo.inbox("europol").wait_for(&alert.alert_id, LIMIT).await.unwrap().unwrap();
    assert_eq!(europol.delivery.unwrap().alert.unwrap(), alert, "an addressed europol gets it whole");
    topo.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_node_gets_nothing() {
    let topo = topology().await;
    let de = topo.client("de-police").await.unwrap();
    let mut crisis = samples::base("de-police", &[], Category::CrisesAndDisasters, isx_core::wire::Action::Inform);
    crisis.narrative = "Flooding in the Ahr valley: missing persons list attached.".into();
    let receipt = de.publish(crisis.clone()).await.unwrap().receipt.unwrap();
    let got = levels(&receipt);
    assert!(got.contains(&("europol".into(), DisclosureLevel::Denied)), "{got:?}");
    assert!(got.contains(&("frontex".into(), DisclosureLevel::Denied)), "{got:?}");
    assert!(got.contains(&("auditor".into(), DisclosureLevel::Denied)), "{got:?}");
    assert!(got.contains(&("fr-police".into(), DisclosureLevel::Full)), "{got:?}");

    assert!(topo.inbox("fr-police").wait_for(&crisis.alert_id, LIMIT).await.unwrap().is_some());
    for node in ["europol", "frontex"] {
        settle(&topo, "de-police", node).await;
        assert!(topo.inbox(node).get(&crisis.alert_id).unwrap().is_none(), "{node} must get nothing");
    }
    topo.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tlp_red_with_no_addressees_reaches_no_one() {
    let topo = topology().await;
    let fr = topo.client("fr-police").await.unwrap();
    let mut alert = samples::migrant_smuggling("fr-police", &[]);
    alert.labels.as_mut().unwrap().tlp = Tlp::Red as i32;
    let receipt = fr.publish(alert).await.unwrap().receipt.unwrap();
    assert!(receipt.recipients.iter().all(|r| r.level() == DisclosureLevel::Denied), "{:?}", levels(&receipt));
    assert_eq!(receipt.recipients.len(), 5, "every registered node was a candidate and each was refused");
    topo.shutdown().await;
}

async fn relay(topo: &Topology, tlp: Tlp, handling: HandlingCode) -> (Alert, Alert, isx_core::wire::Receipt) {
    let it = topo.client("it-police").await.unwrap();
    let mut original = samples::migrant_smuggling("it-police", &["fr-police"]);
    let labels = original.labels.as_mut().unwrap();
    labels.tlp = tlp as i32;
    labels.handling_code = handling as i32;
    it.publish(original.clone()).await.unwrap();
    let received =
        topo.inbox("fr-police").wait_for(&original.alert_id, LIMIT).await.unwrap().expect("fr-police receives");
    let mut onward = received.delivery.unwrap().alert.unwrap();
    onward.forwarded_from = onward.alert_id.clone();
    onward.alert_id = samples::new_alert_id();
    onward.origin = "fr-police".into();
    onward.addressees = vec!["de-police".into(), "europol".into()];
    onward.hops = 0;
    let receipt = topo.client("fr-police").await.unwrap().publish(onward.clone()).await.unwrap().receipt.unwrap();
    (original, onward, receipt)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forwarded_h2_alert_reaches_nobody_new() {
    let topo = topology().await;
    let (_, onward, receipt) = relay(&topo, Tlp::Amber, HandlingCode::H2).await;
    assert_eq!(receipt.hops, 1);
    for r in &receipt.recipients {
        assert_eq!(r.level(), DisclosureLevel::Denied, "{}", r.node);
        // TLP:AMBER also stays with its recipients (amber-stays-with-its-recipients).
        assert!(r.policy_ids.contains(&"no-onward-relay".to_owned()), "{:?}", r.policy_ids);
    }
    settle(&topo, "it-police", "de-police").await;
    assert!(topo.inbox("de-police").get(&onward.alert_id).unwrap().is_none());

    let (_, _, receipt) = relay(&topo, Tlp::AmberStrict, HandlingCode::H0).await;
    assert!(receipt.recipients.iter().all(|r| r.level() == DisclosureLevel::Denied), "AMBER+STRICT is never relayed");
    topo.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forwarded_h0_alert_reaches_new_recipients_with_its_hop_count() {
    // TLP:GREEN may go to new organisations; TLP:AMBER may not without the
    // origin's permission (tests/trust.rs).
    let topo = topology().await;
    let (_, onward, receipt) = relay(&topo, Tlp::Green, HandlingCode::H0).await;
    assert_eq!(
        levels(&receipt),
        vec![("de-police".into(), DisclosureLevel::Full), ("europol".into(), DisclosureLevel::Full)]
    );
    let got = topo.inbox("de-police").wait_for(&onward.alert_id, LIMIT).await.unwrap().unwrap();
    let view = got.delivery.unwrap().alert.unwrap();
    assert_eq!(view.hops, 1);
    assert_eq!(view.forwarded_from, onward.forwarded_from);
    topo.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_recipient_may_forward_and_never_loosen_the_labels() {
    let topo = topology().await;
    let it = topo.client("it-police").await.unwrap();
    let original = samples::migrant_smuggling("it-police", &["fr-police"]);
    it.publish(original.clone()).await.unwrap();

    // de-police never received it.
    let mut onward = original.clone();
    onward.forwarded_from = original.alert_id.clone();
    onward.alert_id = samples::new_alert_id();
    onward.origin = "de-police".into();
    onward.addressees = vec!["europol".into()];
    let err = topo.client("de-police").await.unwrap().publish(onward.clone()).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    assert!(err.message().contains("forwarder-received"));

    // fr-police did, but may not loosen TLP:AMBER to TLP:GREEN nor drop a tag.
    onward.origin = "fr-police".into();
    let labels = onward.labels.as_mut().unwrap();
    labels.tlp = Tlp::Green as i32;
    labels.tags.clear();
    let err = topo.client("fr-police").await.unwrap().publish(onward).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let fields: Vec<String> =
        err.get_error_details().bad_request().unwrap().field_violations.iter().map(|v| v.field.clone()).collect();
    assert_eq!(fields, vec!["labels.tlp", "labels.tags"]);
    topo.shutdown().await;
}

fn broken_policy_dir(root: &std::path::Path) -> std::path::PathBuf {
    let dir = root.join("policy");
    isx_policy::defaults::write_to(&dir).unwrap();
    std::fs::write(dir.join("zz-broken.cedar"), "@id(\"broken\")\n@reason(\"typo\")\nforbid (principal, action, resource)\nwhen { resource.colour == \"red\" };\n").unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_policy_keeps_the_gateway_from_starting() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = TopologySpec { policy_dir: Some(broken_policy_dir(tmp.path())), ..TopologySpec::default_agencies() };
    let err = Topology::start(spec).await.expect_err("the gateway must not start").to_string();
    assert!(err.contains("zz-broken.cedar:4"), "{err}");
    assert!(err.contains("broken"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_reload_that_does_not_validate_keeps_the_old_policy() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("policy");
    isx_policy::defaults::write_to(&dir).unwrap();
    let topo = Topology::start(TopologySpec { policy_dir: Some(dir.clone()), ..TopologySpec::default_agencies() })
        .await
        .unwrap();
    let de = topo.client("de-police").await.unwrap();
    let first = de.publish(samples::migrant_smuggling("de-police", &["europol"])).await.unwrap().receipt.unwrap();
    assert_eq!(first.recipients[0].level(), DisclosureLevel::Full);

    broken_policy_dir(tmp.path());
    let err = topo.reload_policy().await.expect_err("a broken directory is refused");
    assert!(err.to_string().contains("zz-broken.cedar"));
    let kept = de.publish(samples::migrant_smuggling("de-police", &["europol"])).await.unwrap().receipt.unwrap();
    assert_eq!(kept.policy_version, first.policy_version);
    assert_eq!(kept.recipients[0].level(), DisclosureLevel::Full);

    // A valid change takes effect: Europol loses migrant smuggling from its view.
    std::fs::remove_file(dir.join("zz-broken.cedar")).unwrap();
    std::fs::write(
        dir.join("zz-extra.cedar"),
        "@id(\"europol-no-smuggling\")\n@reason(\"test\")\nforbid (principal, action == Action::\"disclose_full\", resource)\nwhen { principal.kind == NodeKind::\"europol\" && resource.category == Category::\"migrant_smuggling\" };\n",
    )
    .unwrap();
    let version = topo.reload_policy().await.unwrap();
    let after = de.publish(samples::migrant_smuggling("de-police", &["europol"])).await.unwrap().receipt.unwrap();
    assert_eq!(after.policy_version, version);
    assert_ne!(after.policy_version, first.policy_version);
    assert_eq!(after.recipients[0].level(), DisclosureLevel::Redacted);
    assert!(after.recipients[0].policy_ids.contains(&"europol-no-smuggling".to_owned()));
    topo.shutdown().await;
}
