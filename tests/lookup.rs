//! Whole-system tests of hit/no-hit lookups and two-step access over mTLS:
//! what a lookup reveals, who may decide, what a grant delivers, expiry,
//! decline, and the audit trail (with no identifier stored anywhere).

use std::time::Duration;

use isx_core::wire::lookup_identifier::Kind;
use isx_core::wire::{
    AccessState, AuditRecord, Category, DisclosureLevel, DocumentNumber, LookupIdentifier, Operation, Outcome,
    PersonName, SearchRequest, Tlp,
};
use isx_node::audit as client_audit;
use isx_node::config::{AccessRule, RuleDecision};
use isx_testkit::{NodeSpec, Topology, TopologySpec, bad_fields, samples};
use prost::Message;
use tonic::Code;

/// The bound on any wait; reached only when a test fails.
const LIMIT: Duration = Duration::from_secs(20);
const PURPOSE: &str = "prevention and detection of terrorist offences";
const WHY: &str = "case DE-2026-4471: subject seen at the border crossing";

fn document(country: &str, number: &str) -> LookupIdentifier {
    LookupIdentifier {
        kind: Some(Kind::Document(DocumentNumber { issuing_country: country.into(), number: number.into() })),
    }
}

fn plate(p: &str) -> LookupIdentifier {
    LookupIdentifier { kind: Some(Kind::Plate(p.into())) }
}

async fn records(topo: &Topology, req: SearchRequest) -> Vec<AuditRecord> {
    topo.audit_records(req).await.unwrap()
}

/// True if `needle` occurs anywhere in `haystack`.
fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lookup_shows_a_hit_flag_only_and_nothing_that_policy_hides() {
    let topo = Topology::start(TopologySpec::default_agencies()).await.unwrap();
    let de = topo.client("de-police").await.unwrap();
    // Addressed to FR only: IT never received it.
    let shared = samples::foreign_fighter("de-police", &["fr-police"]);
    de.publish(shared.clone()).await.unwrap();
    // The same person in a TLP:RED alert for FR only: no one else may even see a hit.
    let mut red = samples::foreign_fighter("de-police", &["fr-police"]);
    red.alert_id = samples::new_alert_id();
    red.labels.as_mut().unwrap().tlp = Tlp::Red as i32;
    de.publish(red.clone()).await.unwrap();

    let it = topo.client("it-police").await.unwrap();
    let resp = it.lookup(vec![document("de", "c4j9-x1r27"), plate("b kl 4471")], PURPOSE, WHY).await.unwrap();
    assert_eq!(resp.hits.len(), 1, "only the alert policy lets it-police see: {:?}", resp.hits);
    let hit = &resp.hits[0];
    assert_eq!(hit.alert_id, shared.alert_id);
    assert_eq!(hit.holder, "de-police");
    assert_eq!(hit.category(), Category::Terrorism);
    assert_eq!(hit.matched, vec!["document", "plate"]);
    assert_eq!(hit.policy_ids, vec!["lookup-hit-flag"]);
    assert!(hit.hit_id.starts_with("hit-"));
    let bytes = resp.encode_to_vec();
    for needle in ["Brandt", "Lukas", "1994", "C4J9X1R27", "BKL4471", "B-KL", "Istanbul", "AFIS", &red.alert_id] {
        assert!(!contains(&bytes, needle), "{needle} leaked into a lookup answer");
    }
    assert!(topo.inbox("it-police").get(&shared.alert_id).unwrap().is_none(), "a lookup delivers nothing");

    // The same question again gives the same hit id.
    let again = it.lookup(vec![document("DE", "C4J9X1R27")], PURPOSE, WHY).await.unwrap();
    assert_eq!(again.hits[0].hit_id, hit.hit_id);
    // The addressee of the RED alert sees both; the holder sees neither of its own.
    let fr = topo.client("fr-police").await.unwrap();
    assert_eq!(fr.lookup(vec![document("DE", "C4J9X1R27")], PURPOSE, WHY).await.unwrap().hits.len(), 2);
    assert!(de.lookup(vec![document("DE", "C4J9X1R27")], PURPOSE, WHY).await.unwrap().hits.is_empty());
    // Nothing matches an unknown person.
    let person = LookupIdentifier {
        kind: Some(Kind::Person(PersonName {
            family_name: "Nobody".into(),
            given_names: "At All".into(),
            date_of_birth: "1990-01-01".into(),
        })),
    };
    assert!(it.lookup(vec![person], PURPOSE, WHY).await.unwrap().hits.is_empty());

    // Bad input: each refusal names the problem.
    let err = it.lookup(vec![], PURPOSE, "").await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(bad_fields(&err), vec!["identifiers", "justification"]);
    let err = it.lookup(vec![document("Germany", "1")], PURPOSE, WHY).await.unwrap_err();
    assert_eq!(bad_fields(&err), vec!["identifiers[0].document.issuing_country"]);
    let auditor = topo.client("auditor").await.unwrap();
    let err = auditor.lookup(vec![document("DE", "C4J9X1R27")], PURPOSE, WHY).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(err.message().contains("role-lookup"), "{}", err.message());

    // The consultation is logged with the identifier types, the hit returned
    // and the one withheld, searchable by either alert.
    let found = records(&topo, SearchRequest { alert_id: red.alert_id.clone(), ..Default::default() }).await;
    let consultation = found
        .iter()
        .find(|r| r.operation() == Operation::Consultation && r.node == "it-police" && r.hits.len() == 2)
        .expect("it-police's first lookup is found by the withheld alert's id");
    assert_eq!(consultation.data_types, vec!["document", "plate"]);
    assert_eq!(consultation.justification, WHY);
    assert_eq!(consultation.subject_pseudonyms.len(), 2);
    let shown: Vec<(&str, bool)> = consultation.hits.iter().map(|h| (h.alert_id.as_str(), h.shown)).collect();
    assert!(shown.contains(&(shared.alert_id.as_str(), true)) && shown.contains(&(red.alert_id.as_str(), false)));
    let withheld = consultation.hits.iter().find(|h| !h.shown).unwrap();
    assert_eq!(withheld.policy_ids, vec!["tlp-red-addressees-only"]);
    // An auditor finds every lookup on this person by the document number.
    let by_subject =
        records(&topo, SearchRequest { subject_identifier: "document:DE:C4J9X1R27".into(), ..Default::default() })
            .await;
    assert!(by_subject.iter().filter(|r| r.operation() == Operation::Consultation).count() >= 4);
    let denials = records(&topo, SearchRequest { operation: Operation::Denial as i32, ..Default::default() }).await;
    let details: Vec<&str> = denials.iter().map(|r| r.detail.as_str()).collect();
    assert!(details.iter().any(|d| d.contains("identifiers, justification")), "{details:?}");
    assert!(details.iter().any(|d| d.contains("rule role-lookup")), "{details:?}");
    topo.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_granted_request_delivers_at_the_level_policy_allows() {
    let topo = Topology::start(TopologySpec::default_agencies()).await.unwrap();
    let de = topo.client("de-police").await.unwrap();
    let alert = samples::migrant_smuggling("de-police", &["it-police"]);
    de.publish(alert.clone()).await.unwrap();

    let frontex = topo.client("frontex").await.unwrap();
    let hits = frontex.lookup(vec![plate("fg-512-zt")], "border check", "van stopped at Ventimiglia").await.unwrap();
    let hit = hits.hits.first().expect("frontex sees a hit on migrant smuggling").clone();
    let request = frontex.request_access(&hit.hit_id, "border check", "van stopped at Ventimiglia").await.unwrap();
    assert_eq!(request.state(), AccessState::Pending);
    assert_eq!(request.holder, "de-police");
    assert_eq!(request.category(), Category::MigrantSmuggling);
    let deadline = request.deadline.unwrap().seconds - request.requested_at.unwrap().seconds;
    assert_eq!(deadline, 48 * 3600, "the default deadline is 48 hours");

    // The holder's agency receives the request on its stream (no standing rule: it waits).
    let seen = topo
        .inbox("de-police")
        .wait_for_access(&request.request_id, |_| true, LIMIT)
        .await
        .unwrap()
        .expect("the holder is notified");
    assert_eq!(seen.justification, "van stopped at Ventimiglia");
    assert_eq!(seen.state(), AccessState::Pending);

    // A second request on the same hit, and bad references, are refused.
    let err = frontex.request_access(&hit.hit_id, "border check", "again").await.unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists);
    assert!(err.message().contains(&request.request_id));
    let err = frontex.request_access("hit-0000", "border check", "x").await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let it = topo.client("it-police").await.unwrap();
    let err = it.request_access(&hit.hit_id, "p", "j").await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "a hit belongs to the node that looked up");
    // Only the holder decides; to anyone else a request id is the same as an
    // unknown one: same code, same message shape, nothing about the holder.
    let err = it.decide_access(&request.request_id, true, "we hold it too").await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert_eq!(err.message(), format!("access request {} does not exist", request.request_id));
    let unknown = "ar-0123456789abcdef0123456789abcdef";
    let err = de.decide_access(unknown, true, "x").await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert_eq!(err.message(), format!("access request {unknown} does not exist"));
    // Request ids are unguessable: 128 random bits, not a counter.
    let id = request.request_id.strip_prefix("ar-").expect("ar- prefix");
    assert_eq!(id.len(), 32, "{id}");
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
    let err = de.decide_access(&request.request_id, true, "").await.unwrap_err();
    assert_eq!(bad_fields(&err), vec!["reason"]);

    let decided = de.decide_access(&request.request_id, true, "joint operation TIDEWATER").await.unwrap();
    assert_eq!(decided.state(), AccessState::Granted);
    assert_eq!(decided.level(), DisclosureLevel::Redacted, "Frontex only ever gets de-personalised data");
    assert!(decided.policy_ids.contains(&"frontex-depersonalised".to_owned()), "{:?}", decided.policy_ids);
    let got = topo
        .inbox("frontex")
        .wait_for(&alert.alert_id, LIMIT)
        .await
        .unwrap()
        .expect("the requester receives the alert");
    let delivery = got.delivery.unwrap();
    assert_eq!(delivery.level(), DisclosureLevel::Redacted);
    assert_eq!(delivery.request_id, request.request_id);
    let view = delivery.alert.unwrap();
    assert!(view.subjects.iter().all(|s| s.family_name.is_empty() && s.documents.iter().all(|d| d.number.is_empty())));
    assert_eq!(view.objects.len(), alert.objects.len());
    let outcome = topo
        .inbox("frontex")
        .wait_for_access(&request.request_id, |r| r.state() == AccessState::Granted, LIMIT)
        .await
        .unwrap()
        .expect("the requester learns the outcome");
    assert_eq!(outcome.reason, "joint operation TIDEWATER");
    let err = de.decide_access(&request.request_id, false, "changed my mind").await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("already granted"), "{}", err.message());

    // Both sides list it.
    let mine = frontex.list_access_requests(None).await.unwrap();
    assert_eq!((mine.outgoing.len(), mine.incoming.len()), (1, 0));
    let theirs = de.list_access_requests(Some(AccessState::Granted)).await.unwrap();
    assert_eq!((theirs.outgoing.len(), theirs.incoming.len()), (0, 1));
    assert!(de.list_access_requests(Some(AccessState::Pending)).await.unwrap().incoming.is_empty());

    // The trail: request, decision, disclosure, all under the request id.
    let trail = records(&topo, SearchRequest { request_id: request.request_id.clone(), ..Default::default() }).await;
    let ops: Vec<(Operation, &str, Outcome)> =
        trail.iter().map(|r| (r.operation(), r.node.as_str(), r.outcome())).collect();
    assert!(ops.contains(&(Operation::AccessRequest, "frontex", Outcome::Ok)), "{ops:?}");
    assert!(ops.contains(&(Operation::AccessDecision, "de-police", Outcome::Ok)), "{ops:?}");
    assert!(ops.contains(&(Operation::Disclosure, "frontex", Outcome::Ok)), "{ops:?}");
    let decision = trail.iter().find(|r| r.operation() == Operation::AccessDecision).unwrap();
    assert_eq!(decision.justification, "joint operation TIDEWATER");
    assert_eq!(decision.recipients[0].level(), DisclosureLevel::Redacted);
    assert!(!decision.withheld_fields.is_empty());
    assert!(trail.iter().any(|r| r.operation() == Operation::Denial && r.detail.contains("holder-decides")));
    topo.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standing_rules_deny_requests_expire_and_declines_are_recorded() {
    let mut spec = TopologySpec::default_agencies();
    spec.access.deadline = Duration::from_secs(3600);
    let rule = AccessRule {
        category: None,
        requester: Some(isx_core::NodeId::new("europol").unwrap()),
        decision: RuleDecision::Deny,
        reason: Some("no Europol involvement in this case".into()),
    };
    spec.nodes = spec
        .nodes
        .into_iter()
        .map(|n: NodeSpec| if n.id.as_str() == "de-police" { n.with_access_rules(vec![rule.clone()]) } else { n })
        .collect();
    let mut topo = Topology::start(spec).await.unwrap();
    let de = topo.client("de-police").await.unwrap();
    let alert = samples::foreign_fighter("de-police", &["fr-police"]);
    de.publish(alert.clone()).await.unwrap();
    let ids = || vec![document("DE", "C4J9X1R27")];

    // Europol: the standing rule denies at once.
    let europol = topo.client("europol").await.unwrap();
    let hit = europol.lookup(ids(), PURPOSE, WHY).await.unwrap().hits.remove(0);
    let request = europol.request_access(&hit.hit_id, PURPOSE, WHY).await.unwrap();
    let denied = topo
        .inbox("europol")
        .wait_for_access(&request.request_id, |r| r.state() == AccessState::Denied, LIMIT)
        .await
        .unwrap()
        .expect("the standing rule denies");
    assert_eq!(denied.reason, "no Europol involvement in this case");
    // Decided by the rule, not by a person: the request and the log name the rule.
    assert_eq!(denied.decided_by, "standing rule access[0]: deny from europol");
    let decisions = records(
        &topo,
        SearchRequest {
            request_id: request.request_id.clone(),
            operation: Operation::AccessDecision as i32,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(decisions.len(), 1, "{decisions:?}");
    assert_eq!(
        (decisions[0].node.as_str(), decisions[0].officer.as_str()),
        ("de-police", "standing rule access[0]: deny from europol")
    );
    assert!(topo.inbox("europol").get(&alert.alert_id).unwrap().is_none(), "a denial delivers nothing");

    // IT: no rule matches, so the request waits for a person, who never comes.
    let it = topo.client("it-police").await.unwrap();
    let hit = it.lookup(ids(), PURPOSE, WHY).await.unwrap().hits.remove(0);
    let request = it.request_access(&hit.hit_id, PURPOSE, WHY).await.unwrap();
    assert!(topo.inbox("de-police").wait_for_access(&request.request_id, |_| true, LIMIT).await.unwrap().is_some());
    topo.advance_clock(Duration::from_secs(3601));
    let err = de.decide_access(&request.request_id, true, "too late").await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("expired"), "{}", err.message());
    let expired = topo
        .inbox("it-police")
        .wait_for_access(&request.request_id, |r| r.state() == AccessState::Expired, LIMIT)
        .await
        .unwrap()
        .expect("the requester learns of the expiry");
    assert!(expired.reason.contains("did not decide"), "{}", expired.reason);
    assert!(topo.inbox("it-police").get(&alert.alert_id).unwrap().is_none());

    // FR declines to follow its hit up, with a reason; it cannot then request.
    let fr = topo.client("fr-police").await.unwrap();
    let hit = fr.lookup(ids(), PURPOSE, WHY).await.unwrap().hits.remove(0);
    fr.decline_follow_up(&hit.hit_id, "already known from our own investigation").await.unwrap();
    let err = fr.decline_follow_up(&hit.hit_id, "again").await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    let err = fr.request_access(&hit.hit_id, PURPOSE, WHY).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);

    // The audit trail holds every step.
    let on_alert = records(&topo, SearchRequest { alert_id: alert.alert_id.clone(), ..Default::default() }).await;
    let count = |op: Operation, outcome: Outcome| {
        on_alert.iter().filter(|r| r.operation() == op && r.outcome() == outcome).count()
    };
    assert_eq!(count(Operation::Consultation, Outcome::Ok), 3);
    assert_eq!(count(Operation::AccessRequest, Outcome::Ok), 2);
    assert_eq!(count(Operation::AccessDecision, Outcome::Refused), 2, "the denial and the expiry");
    assert_eq!(count(Operation::FollowUpDeclined, Outcome::Ok), 1);
    let expiry = on_alert
        .iter()
        .find(|r| r.operation() == Operation::AccessDecision && r.request_id == request.request_id)
        .unwrap();
    assert!(expiry.node.is_empty() && expiry.detail.starts_with("expired"), "{expiry:?}");
    let decline = on_alert.iter().find(|r| r.operation() == Operation::FollowUpDeclined).unwrap();
    assert_eq!(decline.justification, "already known from our own investigation");
    assert_eq!(decline.node, "fr-police");

    // No identifier value anywhere in the audit log or the lookup index, and
    // no free text either: justifications and reasons are sealed.
    let auditor = topo.client("auditor").await.unwrap();
    let bundle =
        client_audit::export(&auditor, &isx_testkit::testkit_reason(), "lookup test", SearchRequest::default())
            .await
            .unwrap();
    let log: Vec<u8> = bundle.entries.iter().flat_map(|e| e.body.clone()).collect();
    for text in ["already known from our own investigation", "our own", WHY] {
        assert!(!contains(&log, text), "{text:?} is in the clear in the audit log");
    }
    let sealed = bundle.entries.iter().filter_map(|e| e.record.as_ref()).filter(|r| !r.justification_sealed.is_empty());
    assert!(sealed.count() >= 3, "the decline and the lookups' justifications are sealed");
    topo.stop_gateway().await.unwrap();
    let config = topo.gateway_config();
    let store = isx_gateway::store::Store::open(
        &config.data_dir.join("gateway.sled"),
        &isx_store::key_path(&config.pki_dir, "gateway"),
        &[],
        1,
    )
    .unwrap();
    let keys: Vec<u8> = store.index().keys().unwrap().concat();
    assert_eq!(store.index().keys().unwrap().len(), 3, "a document, a name and a plate");
    for needle in ["C4J9X1R27", "Brandt", "Lukas", "1994-03-17", "B-KL 4471", "BKL4471", "BRANDT"] {
        assert!(!contains(&log, needle), "{needle} is in the audit log");
        assert!(!contains(&keys, needle), "{needle} is in the lookup index");
    }
    drop(store);
    topo.shutdown().await;
}
