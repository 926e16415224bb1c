//! Whole-system tests of administration over mTLS: every change to what
//! governs disclosure is an audit record with its person and reason (policy
//! reloads by the Admin call or SIGHUP, refused ones too), every policy
//! version's text is kept and served, and starts, stops, node and redaction
//! changes and CRL changes are recorded.

use isx_core::wire::admin_client::AdminClient;
use isx_core::wire::audit_client::AuditClient;
use isx_core::wire::{
    AdminAction, AuditRecord, DisclosureLevel, GetPolicyRequest, Operation, Outcome, ReadPurpose, ReadReason,
    ReloadPolicyRequest, ReloadPolicyResponse, SearchRequest,
};
use isx_gateway::hangup::PolicyReload;
use isx_testkit::{Topology, TopologySpec, samples};
use tonic::Code;

/// A topology with the operations node `ops`, on a policy directory of its own.
async fn topology() -> (Topology, tempfile::TempDir) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("policy");
    isx_policy::defaults::write_to(&dir).unwrap();
    let spec = TopologySpec { policy_dir: Some(dir), ..TopologySpec::default_agencies() }.with_admin();
    (Topology::start(spec).await.expect("topology starts"), tmp)
}

/// A policy that takes migrant smuggling from Europol's full view.
const EUROPOL_NO_SMUGGLING: &str = "@id(\"europol-no-smuggling\")\n@reason(\"test\")\nforbid (principal, action == Action::\"disclose_full\", resource)\nwhen { principal.kind == NodeKind::\"europol\" && resource.category == Category::\"migrant_smuggling\" };\n";

/// A policy that does not validate (no such attribute).
const BROKEN: &str =
    "@id(\"broken\")\n@reason(\"typo\")\nforbid (principal, action, resource)\nwhen { resource.colour == \"red\" };\n";

async fn reload_as(topo: &Topology, node: &str, reason: &str) -> Result<ReloadPolicyResponse, tonic::Status> {
    let client = topo.client(node).await.unwrap();
    AdminClient::new(client.channel())
        .reload_policy(client.request(ReloadPolicyRequest { reason: reason.into() }))
        .await
        .map(|r| r.into_inner())
}

/// Every ADMINISTRATION record, oldest first, justifications opened.
async fn administration(topo: &Topology) -> Vec<AuditRecord> {
    let filter = SearchRequest { operation: Operation::Administration as i32, ..Default::default() };
    topo.audit_records(filter).await.unwrap()
}

/// The records of `action`, oldest first.
fn of(records: &[AuditRecord], action: AdminAction) -> Vec<&AuditRecord> {
    records.iter().filter(|r| r.admin.as_ref().is_some_and(|a| a.action() == action)).collect()
}

fn at(records: &[AuditRecord], seq: u64) -> &AuditRecord {
    records.iter().find(|r| r.seq == seq).unwrap_or_else(|| panic!("no administration record at seq {seq}"))
}

async fn get_policy(topo: &Topology, version: &str) -> Result<isx_core::wire::PolicyVersion, tonic::Status> {
    let auditor = topo.client("auditor").await.unwrap();
    let reason = ReadReason { purpose: ReadPurpose::Lawfulness as i32, case_reference: "CASE-1".into() };
    AuditClient::new(auditor.channel())
        .get_policy(auditor.request(GetPolicyRequest { reason: Some(reason), version: version.into() }))
        .await
        .map(|r| r.into_inner())
}

async fn level_for_europol(topo: &Topology) -> (DisclosureLevel, String) {
    let de = topo.client("de-police").await.unwrap();
    let receipt = de.publish(samples::migrant_smuggling("de-police", &["europol"])).await.unwrap().receipt.unwrap();
    (receipt.recipients[0].level(), receipt.policy_version)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_reload_is_recorded_with_both_versions_the_changes_the_officer_and_the_reason() {
    let (topo, tmp) = topology().await;
    let dir = tmp.path().join("policy");
    let (before, v1) = level_for_europol(&topo).await;
    assert_eq!(before, DisclosureLevel::Full);

    // One policy added, one edited (its @reason), one file's layout untouched.
    std::fs::write(dir.join("zz-extra.cedar"), EUROPOL_NO_SMUGGLING).unwrap();
    let agencies = dir.join("agencies.cedar");
    let text = std::fs::read_to_string(&agencies).unwrap();
    let edited = text.replacen("@reason(\"", "@reason(\"Edited: ", 1);
    std::fs::write(&agencies, &edited).unwrap();
    let first_id = isx_policy::PolicyEngine::load(&dir).unwrap().sources().policy_texts(&dir).unwrap();
    let edited_id =
        first_id.iter().find(|(_, t)| t.contains("Edited: ")).map(|(id, _)| id.clone()).expect("the edited policy");

    let r = reload_as(&topo, "ops", "CR-2026-042: Europol's mandate on smuggling").await.unwrap();
    assert_eq!(r.old_version, v1);
    assert_ne!(r.new_version, v1);
    let mut want = vec!["+europol-no-smuggling".to_owned(), format!("~{edited_id}")];
    want.sort_by(|a, b| a[1..].cmp(&b[1..]));
    assert_eq!(r.changed, want);

    // The record, durable before the answer, names both versions, the changes, who and why.
    let records = administration(&topo).await;
    let record = at(&records, r.record_seq);
    let change = record.admin.as_ref().unwrap();
    assert_eq!(change.action(), AdminAction::PolicyReload);
    assert_eq!((change.old_version.as_str(), change.new_version.as_str()), (v1.as_str(), r.new_version.as_str()));
    assert_eq!(change.changed, want);
    assert_eq!(change.via, "admin call");
    assert_eq!(record.outcome(), Outcome::Ok);
    assert_eq!(record.node, "ops");
    assert_eq!(record.officer, "officer@ops");
    assert!(!record.cert_fingerprint.is_empty());
    assert_eq!(record.justification, "CR-2026-042: Europol's mandate on smuggling", "opened with audit-text.key");
    assert!(!record.justification_sealed.is_empty(), "the reason is sealed in the log");
    assert!(record.detail.contains(&format!("version {v1} -> {}", r.new_version)), "{}", record.detail);

    // The new policy decides from now on.
    let (after, v2) = level_for_europol(&topo).await;
    assert_eq!((after, v2.as_str()), (DisclosureLevel::Redacted, r.new_version.as_str()));

    // Both versions' texts are kept and served, each exactly as loaded.
    let old = get_policy(&topo, &v1).await.unwrap();
    let new = get_policy(&topo, &r.new_version).await.unwrap();
    assert_eq!(old.version, v1);
    let file = |v: &isx_core::wire::PolicyVersion, name: &str| {
        v.files.iter().find(|f| f.name == name).map(|f| f.text.clone()).unwrap_or_default()
    };
    assert_eq!(file(&old, "agencies.cedar"), text);
    assert_eq!(file(&new, "agencies.cedar"), edited);
    assert_eq!(file(&new, "zz-extra.cedar"), EUROPOL_NO_SMUGGLING);
    assert!(old.files.iter().all(|f| f.name != "zz-extra.cedar"));
    assert!(new.first_loaded_ms >= old.first_loaded_ms && old.first_loaded_ms > 0);
    assert_eq!(isx_policy::Sources::from_kept(&new).unwrap().version(), r.new_version, "the texts are the version");
    let unknown = get_policy(&topo, "0123456789abcdef").await.unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
    assert!(unknown.message().contains("0123456789abcdef"), "{}", unknown.message());
    let none = get_policy(&topo, " ").await.unwrap_err();
    assert_eq!(none.code(), Code::InvalidArgument);

    // An export carries every kept version's text.
    let auditor = topo.client("auditor").await.unwrap();
    let bundle =
        isx_node::audit::export(&auditor, &isx_testkit::testkit_reason(), "admin tests", SearchRequest::default())
            .await
            .unwrap();
    let versions: Vec<&str> = bundle.policies.iter().map(|p| p.version.as_str()).collect();
    assert_eq!(versions, vec![v1.as_str(), r.new_version.as_str()]);

    // The reads of policy text are recorded.
    let reads =
        topo.audit_records(SearchRequest { operation: Operation::LogRead as i32, ..Default::default() }).await.unwrap();
    assert!(reads.iter().any(|x| x.detail == format!("GetPolicy {v1}")), "{reads:?}");
    topo.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_does_not_validate_or_has_no_reason_is_refused_recorded_and_changes_nothing() {
    let (topo, tmp) = topology().await;
    let dir = tmp.path().join("policy");
    let (_, v1) = level_for_europol(&topo).await;

    std::fs::write(dir.join("zz-broken.cedar"), BROKEN).unwrap();
    let e = reload_as(&topo, "ops", "CR-7").await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert!(e.message().contains("zz-broken.cedar:4") && e.message().contains(&v1), "{}", e.message());
    let (level, version) = level_for_europol(&topo).await;
    assert_eq!((level, version.as_str()), (DisclosureLevel::Full, v1.as_str()), "the policy in force stays");

    let records = administration(&topo).await;
    let refused = of(&records, AdminAction::PolicyReload);
    assert_eq!(refused.len(), 1, "{refused:?}");
    let r = refused[0];
    assert_eq!(r.outcome(), Outcome::Refused);
    assert_eq!((r.officer.as_str(), r.justification.as_str()), ("officer@ops", "CR-7"));
    let change = r.admin.as_ref().unwrap();
    assert_eq!((change.old_version.as_str(), change.new_version.as_str()), (v1.as_str(), ""));
    assert!(r.detail.contains("zz-broken.cedar:4") && r.detail.contains("stays in force"), "{}", r.detail);

    // Without a reason: INVALID_ARGUMENT naming the field, recorded, nothing read.
    std::fs::remove_file(dir.join("zz-broken.cedar")).unwrap();
    std::fs::write(dir.join("zz-extra.cedar"), EUROPOL_NO_SMUGGLING).unwrap();
    let e = reload_as(&topo, "ops", "  ").await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let details = tonic_types::StatusExt::get_error_details(&e);
    let fields: Vec<&str> = details.bad_request().unwrap().field_violations.iter().map(|v| v.field.as_str()).collect();
    assert_eq!(fields, vec!["reason"]);
    assert_eq!(level_for_europol(&topo).await.0, DisclosureLevel::Full, "not reloaded");
    let denials =
        topo.audit_records(SearchRequest { operation: Operation::Denial as i32, ..Default::default() }).await.unwrap();
    assert!(denials.iter().any(|d| d.node == "ops" && d.detail.contains("reason")), "{denials:?}");
    topo.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_without_the_admin_role_is_refused_and_the_attempt_recorded() {
    let (topo, tmp) = topology().await;
    std::fs::write(tmp.path().join("policy/zz-extra.cedar"), EUROPOL_NO_SMUGGLING).unwrap();
    for node in ["auditor", "de-police"] {
        let e = reload_as(&topo, node, "I would like to").await.unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied, "{node}");
        assert!(e.message().contains("admin"), "{node}: {}", e.message());
    }
    assert_eq!(level_for_europol(&topo).await.0, DisclosureLevel::Full, "not reloaded");
    let denials =
        topo.audit_records(SearchRequest { operation: Operation::Denial as i32, ..Default::default() }).await.unwrap();
    for node in ["auditor", "de-police"] {
        let d = denials.iter().find(|d| d.node == node && d.detail.contains("admin: ReloadPolicy"));
        let d = d.unwrap_or_else(|| panic!("no denial of {node}: {denials:?}"));
        assert!(d.detail.contains("rule role-admin"), "{}", d.detail);
    }
    assert!(of(&administration(&topo).await, AdminAction::PolicyReload).is_empty());
    topo.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_only_with_a_request_file_and_consumes_it() {
    let (topo, tmp) = topology().await;
    let (_, v1) = level_for_europol(&topo).await;
    std::fs::write(tmp.path().join("policy/zz-extra.cedar"), EUROPOL_NO_SMUGGLING).unwrap();

    // No request file: refused, logged, recorded; the CRLs are still read.
    let report = topo.hangup().await.unwrap();
    let PolicyReload::Refused { problem, record_seq } = &report.policy else { panic!("{report:?}") };
    assert!(problem.contains("no request file") && problem.contains("isx admin request-reload"), "{problem}");
    assert!(report.crls.is_ok(), "{report:?}");
    assert_eq!(level_for_europol(&topo).await.0, DisclosureLevel::Full, "not reloaded");
    let records = administration(&topo).await;
    let r = at(&records, *record_seq);
    let change = r.admin.as_ref().unwrap();
    assert_eq!((change.action(), change.via.as_str()), (AdminAction::PolicyReload, "SIGHUP"));
    assert_eq!(r.outcome(), Outcome::Refused);
    assert!(r.detail.contains("no request file at ") && r.detail.contains(&v1), "{}", r.detail);
    assert_eq!((r.node.as_str(), r.officer.as_str()), ("", ""));

    // With one: reloaded for its officer and reason, recorded, and the file is gone.
    let path = topo.request_reload("A. Operator", "CR-2026-043: SIGHUP after a deploy").unwrap();
    let report = topo.hangup().await.unwrap();
    let PolicyReload::Reloaded { reloaded, officer, record_seq } = &report.policy else { panic!("{report:?}") };
    assert_eq!(officer, "A. Operator");
    assert_eq!(reloaded.changed, vec!["+europol-no-smuggling".to_owned()]);
    assert!(!path.exists(), "the request is consumed");
    assert_eq!(level_for_europol(&topo).await.0, DisclosureLevel::Redacted);
    let records = administration(&topo).await;
    let r = at(&records, *record_seq);
    let change = r.admin.as_ref().unwrap();
    assert_eq!((change.via.as_str(), change.old_version.as_str()), ("SIGHUP", v1.as_str()));
    assert_eq!(change.new_version, reloaded.new_version);
    assert_eq!((r.officer.as_str(), r.justification.as_str()), ("A. Operator", "CR-2026-043: SIGHUP after a deploy"));
    assert_eq!(r.outcome(), Outcome::Ok);

    // A second SIGHUP without a new request is refused again.
    let report = topo.hangup().await.unwrap();
    assert!(matches!(&report.policy, PolicyReload::Refused { problem, .. } if problem.contains("no request file")));
    topo.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_stop_and_what_changed_while_stopped_are_recorded_across_a_restart() {
    let (mut topo, tmp) = topology().await;
    let first = administration(&topo).await;
    let starts = of(&first, AdminAction::GatewayStart);
    assert_eq!(starts.len(), 1, "{first:?}");
    let v1 = starts[0].admin.as_ref().unwrap().new_version.clone();
    assert!(starts[0].detail.contains("first run") && starts[0].detail.contains(&v1), "{}", starts[0].detail);
    let registered: Vec<&str> =
        of(&first, AdminAction::NodeRegistered).iter().map(|r| r.admin.as_ref().unwrap().changed[0].as_str()).collect();
    assert_eq!(registered, vec!["auditor", "de-police", "europol", "fr-police", "frontex", "it-police", "ops"]);
    assert_eq!(of(&first, AdminAction::RedactionChanged).len(), 1);
    assert!(first.iter().all(|r| r.officer.is_empty() && r.node.is_empty()), "the gateway's own records");

    // While stopped: fr-police loses lookup, it-police goes, the profile keeps
    // the narrative, and a policy is added.
    std::fs::write(tmp.path().join("policy/zz-extra.cedar"), EUROPOL_NO_SMUGGLING).unwrap();
    topo.restart_gateway_with(|c| {
        c.nodes.get_mut("fr-police").unwrap().roles = Some(vec![isx_core::Role::Publish, isx_core::Role::Subscribe]);
        c.nodes.remove("it-police");
        c.redaction.remove.retain(|f| *f != isx_core::redaction::Field::Narrative);
    })
    .await
    .unwrap();
    let all = administration(&topo).await;
    let new: Vec<&AuditRecord> = all.iter().filter(|r| r.seq > first.last().unwrap().seq).collect();
    let actions: Vec<AdminAction> = new.iter().map(|r| r.admin.as_ref().unwrap().action()).collect();
    assert_eq!(
        actions,
        vec![
            AdminAction::GatewayStop,
            AdminAction::GatewayStart,
            AdminAction::PolicyReload,
            AdminAction::NodeChanged,
            AdminAction::NodeRemoved,
            AdminAction::RedactionChanged,
        ],
        "{new:?}"
    );
    let stop = new[0];
    assert!(stop.detail.contains("stopped gracefully"), "{}", stop.detail);
    let log = topo.checkpoint().await.unwrap();
    assert!(log.tree_size > stop.seq, "the stop is in the log");
    let start = new[1].admin.as_ref().unwrap();
    assert_eq!(start.old_version, v1, "the start names the version the last run stopped with");
    assert!(!new[1].detail.contains("without a recorded stop"), "{}", new[1].detail);
    let policy = new[2].admin.as_ref().unwrap();
    assert_eq!((policy.via.as_str(), policy.old_version.as_str()), ("start", v1.as_str()));
    assert_eq!(policy.changed, vec!["+europol-no-smuggling".to_owned()]);
    assert!(new[2].detail.contains("no officer or reason"), "{}", new[2].detail);
    assert_eq!(new[3].admin.as_ref().unwrap().changed, vec!["fr-police".to_owned()]);
    assert!(new[3].detail.contains("roles lookup,publish,subscribe -> publish,subscribe"), "{}", new[3].detail);
    assert_eq!(new[4].admin.as_ref().unwrap().changed, vec!["it-police".to_owned()]);
    assert_eq!(new[5].admin.as_ref().unwrap().changed, vec!["-remove:narrative".to_owned()]);

    // A restart with nothing changed records the stop and start only.
    topo.restart_gateway().await.unwrap();
    let again = administration(&topo).await;
    let newest: Vec<AdminAction> =
        again.iter().filter(|r| r.seq > new.last().unwrap().seq).map(|r| r.admin.as_ref().unwrap().action()).collect();
    assert_eq!(newest, vec![AdminAction::GatewayStop, AdminAction::GatewayStart]);
    topo.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crl_reload_that_changes_what_is_revoked_is_recorded_and_one_that_does_not_is_not() {
    let (topo, _tmp) = topology().await;
    let report = topo.revoke(&[isx_core::NodeId::new("it-police").unwrap()]).await.unwrap();
    assert_eq!(report.added.len(), 1);
    let records = administration(&topo).await;
    let crl = of(&records, AdminAction::CrlReload);
    assert_eq!(crl.len(), 1, "{records:?}");
    let change = crl[0].admin.as_ref().unwrap();
    assert_eq!(change.via, "SIGHUP");
    assert_eq!(change.changed, vec![format!("+{}", report.added[0])]);
    assert_ne!(change.old_version, change.new_version);
    assert!(crl[0].detail.contains("1 certificate(s) newly revoked"), "{}", crl[0].detail);

    // Read again with nothing new: no record.
    let report = topo.hangup().await.unwrap();
    assert!(!report.crls.unwrap().changed());
    assert_eq!(of(&administration(&topo).await, AdminAction::CrlReload).len(), 1);
    topo.shutdown().await;
}
