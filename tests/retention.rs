//! Whole-system tests of retention by rule, online: the `Admin` service's
//! `Prune`, legal holds (`PlaceHold`, `LiftHold`, `ListHolds`) and the
//! scheduled prune (`[audit] prune_every`), against a real gateway over
//! mTLS, the gateway's clock moved forward instead of waiting.

use std::time::Duration;

use isx_audit::verify::{self, LogVerifier};
use isx_core::timestamp::from_unix_millis;
use isx_core::wire::admin_client::AdminClient;
use isx_core::wire::audit_client::AuditClient;
use isx_core::wire::{
    AdminAction, AuditEntry, AuditRecord, Checkpoint, GetCheckpointRequest, GetConsistencyProofRequest,
    GetEntriesRequest, GetInclusionProofRequest, Hold, LiftHoldRequest, ListHoldsRequest, Operation, PlaceHoldRequest,
    PruneRequest, PruneResponse, ReadPurpose, ReadReason, SearchRequest,
};
use isx_core::{NodeKind, Role};
use isx_node::Client;
use isx_testkit::{NodeSpec, Topology, TopologySpec, samples};
use tonic::Code;
use tonic::transport::Channel;

const LIMIT: Duration = Duration::from_secs(20);
const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(86_400);

/// The default agencies and `dpo`, a node with the `admin` role; records
/// are kept 3 days (floor 1 hour), pruned on schedule every `prune_every`.
async fn topology(prune_every: Option<Duration>) -> Topology {
    let mut spec = TopologySpec::default_agencies();
    let mut dpo = NodeSpec::new("dpo", NodeKind::Auditor, "EU", "Data protection officer");
    dpo.roles = Some(vec![Role::Admin]);
    spec.nodes.push(dpo);
    spec.audit.retention = 3 * DAY;
    spec.audit.retention_floor = HOUR;
    spec.audit.prune_every = prune_every;
    Topology::start(spec).await.expect("topology starts")
}

/// The `Admin` service as `node`, and the client whose requests carry its officer.
async fn admin(topo: &Topology, node: &str) -> (AdminClient<Channel>, Client) {
    let client = topo.client(node).await.unwrap();
    (AdminClient::new(client.channel()), client)
}

/// The auditor's reads: integrity checks of the log.
fn why() -> Option<ReadReason> {
    Some(ReadReason { purpose: ReadPurpose::Integrity as i32, case_reference: "RET-TEST-1".into() })
}

/// The auditor's `Audit` service.
async fn auditor(topo: &Topology) -> (AuditClient<Channel>, Client) {
    let client = topo.client("auditor").await.unwrap();
    (AuditClient::new(client.channel()).max_decoding_message_size(usize::MAX), client)
}

/// A checkpoint over every record so far (the read is one more LOG_READ record).
async fn checkpoint(topo: &Topology) -> Checkpoint {
    let (mut audit, client) = auditor(topo).await;
    audit.get_checkpoint(client.request(GetCheckpointRequest { reason: why() })).await.unwrap().into_inner()
}

/// Entries `[0, size)` as the gateway serves them now.
async fn entries(topo: &Topology, size: u64) -> Vec<AuditEntry> {
    let (mut audit, client) = auditor(topo).await;
    let mut out = Vec::new();
    // Bounded: every page holds at least one entry.
    while (out.len() as u64) < size {
        let req = GetEntriesRequest { start: out.len() as u64, end: size, reason: why() };
        let page = audit.get_entries(client.request(req)).await.unwrap().into_inner().entries;
        assert!(!page.is_empty(), "entries from {} of {size}", out.len());
        out.extend(page);
    }
    out
}

/// Every record of `operation`, justifications opened.
async fn of(topo: &Topology, operation: Operation) -> Vec<AuditRecord> {
    topo.audit_records(SearchRequest { operation: operation as i32, reason: why(), ..Default::default() })
        .await
        .unwrap()
}

async fn prune(topo: &Topology, req: PruneRequest) -> Result<PruneResponse, tonic::Status> {
    let (mut admin, client) = admin(topo, "dpo").await;
    admin.prune(client.request(req)).await.map(|r| r.into_inner())
}

fn asking(reason: &str, before: Option<u64>, dry_run: bool) -> PruneRequest {
    PruneRequest { reason: reason.into(), before: before.map(from_unix_millis), dry_run }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_online_prune_removes_only_what_the_rule_allows_and_every_earlier_proof_still_verifies() {
    let mut topo = topology(None).await;
    // Records that name no alert, then a live alert's history, then more.
    checkpoint(&topo).await;
    checkpoint(&topo).await;
    let alert = samples::foreign_fighter("de-police", &["fr-police"]);
    topo.client("de-police").await.unwrap().publish(alert.clone()).await.unwrap();
    assert!(topo.inbox("fr-police").wait_for(&alert.alert_id, LIMIT).await.unwrap().is_some());
    topo.stop_node("fr-police").await.unwrap();
    let cp1 = checkpoint(&topo).await;
    let size1 = cp1.tree_size;
    let before = entries(&topo, size1).await;
    let collection = before
        .iter()
        .find(|e| e.record.as_ref().is_some_and(|r| r.operation() == Operation::Collection))
        .map(|e| e.seq)
        .expect("the alert's collection");
    assert!(collection >= 2, "two reads before it");
    let (mut audit, reader) = auditor(&topo).await;
    let mut proofs = Vec::new();
    for seq in 0..size1 {
        let req = GetInclusionProofRequest { seq, tree_size: size1, reason: why() };
        proofs.push(audit.get_inclusion_proof(reader.request(req)).await.unwrap().into_inner());
    }

    // Four days later: the first reads are past the retention (3 days);
    // the alert (7 days) is still live.
    topo.advance_clock(4 * DAY);
    let now = topo.now_ms();

    // Only the admin role may prune or hold; each refusal names the role.
    for node in ["auditor", "de-police"] {
        let (mut a, c) = admin(&topo, node).await;
        let refused = [
            a.prune(c.request(asking("r", None, true))).await.map(drop),
            a.list_holds(c.request(ListHoldsRequest {})).await.map(drop),
            a.place_hold(c.request(PlaceHoldRequest { node: "de-police".into(), ..Default::default() }))
                .await
                .map(drop),
            a.lift_hold(c.request(LiftHoldRequest { id: "hold-1".into(), reason: "r".into() })).await.map(drop),
        ];
        for status in refused {
            let status = status.unwrap_err();
            assert_eq!(status.code(), Code::PermissionDenied, "{node}: {status:?}");
            assert!(status.message().contains("admin"), "{node}: {}", status.message());
        }
    }

    // Refused, naming the field or the rule, and nothing changes.
    let cases: [(PruneRequest, Code, &[&str]); 4] = [
        (asking(" ", None, false), Code::InvalidArgument, &["reason: is required"]),
        (
            asking("r", Some(now + DAY.as_millis() as u64), false),
            Code::FailedPrecondition,
            &["is in the future", "audit.retention_floor (1h)"],
        ),
        (
            asking("r", Some(now - 30 * 60_000), false),
            Code::FailedPrecondition,
            &["is inside audit.retention_floor (1h)"],
        ),
        (asking("r", Some(now - 30 * 60_000), true), Code::FailedPrecondition, &["audit.retention_floor (1h)"]),
    ];
    for (req, code, wants) in cases {
        let status = prune(&topo, req.clone()).await.unwrap_err();
        assert_eq!(status.code(), code, "{req:?}: {status:?}");
        for want in wants {
            assert!(status.message().contains(want), "{req:?}: wants {want:?} in {}", status.message());
        }
    }

    // The refusal is in the log (the first of a burst at once, the rest counted).
    let refused = of(&topo, Operation::Denial).await;
    assert!(
        refused.iter().any(|r| r.detail.starts_with("InvalidArgument (admin: Prune): ") && r.detail.contains("reason")),
        "a refused prune is recorded: {refused:#?}"
    );

    // A dry run says what would go, and writes nothing.
    let dry = prune(&topo, asking("retention review", None, true)).await.unwrap();
    assert_eq!((dry.from, dry.upto, dry.record_seq), (0, collection, 0), "{dry:?}");
    let live = format!("seq {collection} is kept: alert {} is still live", alert.alert_id);
    assert_eq!(dry.stopped_by, live);
    assert!(dry.rule.contains("a record is kept 3d from its time"), "{}", dry.rule);
    assert_eq!(entries(&topo, size1).await, before, "refusals and a dry run change nothing");
    assert!(of(&topo, Operation::Erasure).await.is_empty(), "and record nothing");

    // The prune: the prefix before the live alert's history goes.
    let done = prune(&topo, asking("retention review 2026-Q4", None, false)).await.unwrap();
    assert_eq!((done.from, done.upto, done.stopped_by.as_str()), (0, collection, live.as_str()));
    assert!(done.record_seq >= size1);
    let after = entries(&topo, size1).await;
    for (old, new) in before.iter().zip(&after) {
        assert_eq!(new.pruned, new.seq < collection, "seq {}", new.seq);
        assert_eq!(new.leaf_hash, old.leaf_hash, "seq {}: the hash stays", new.seq);
        if !new.pruned {
            assert_eq!(new.body, old.body, "seq {}", new.seq);
        }
    }
    let erasures = of(&topo, Operation::Erasure).await;
    assert_eq!(erasures.len(), 1, "{erasures:?}");
    let e = &erasures[0];
    assert_eq!((e.seq, e.node.as_str(), e.officer.as_str()), (done.record_seq, "dpo", "officer@dpo"));
    assert_eq!(e.justification, "retention review 2026-Q4", "the reason, sealed in the log");
    for want in [
        format!("retention: audit record bodies [0, {collection}) are pruned ([0, {collection}) now").as_str(),
        "rule: a record is kept 3d from its time",
        "(now minus the retention)",
        "ordered by officer@dpo of dpo (via admin call)",
        format!("stops because {live}").as_str(),
        "their hashes stay",
    ] {
        assert!(e.detail.contains(want), "wants {want:?} in {}", e.detail);
    }

    // Every earlier proof still verifies: the same proofs, against the same
    // root, which the new tree extends.
    let cp2 = checkpoint(&topo).await;
    let (old, new) = (verify::checkpoint(&cp1, None).unwrap(), verify::checkpoint(&cp2, None).unwrap());
    for (seq, saved) in proofs.iter().enumerate() {
        let req = GetInclusionProofRequest { seq: seq as u64, tree_size: size1, reason: why() };
        let now = audit.get_inclusion_proof(reader.request(req)).await.unwrap().into_inner();
        assert_eq!(&now, saved, "seq {seq}");
        let entry = AuditEntry { proof: saved.hashes.clone(), proof_tree_size: size1, ..after[seq].clone() };
        verify::inclusion(&entry, &old).unwrap_or_else(|e| panic!("seq {seq}: {e}"));
    }
    let req = GetConsistencyProofRequest { first: size1, second: cp2.tree_size, reason: why() };
    let proof = audit.get_consistency_proof(reader.request(req)).await.unwrap().into_inner().hashes;
    verify::consistency(&old, &new, &proof).expect("the pruned log extends the earlier one");
    // And the whole log verifies against the new checkpoint, the pruned
    // prefix covered by the ERASURE record.
    let mut verifier = LogVerifier::default();
    for entry in entries(&topo, cp2.tree_size).await {
        verifier.push(&entry).unwrap();
    }
    verifier.finish(&new).expect("the pruned log verifies");
    assert_eq!(verifier.pruned, collection);
    topo.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hold_keeps_what_it_covers_until_it_is_lifted_and_both_are_recorded() {
    let topo = topology(None).await;
    checkpoint(&topo).await;
    checkpoint(&topo).await;
    topo.advance_clock(DAY);
    // The day to hold: the auditor's reads of it.
    let start = topo.now_ms();
    // Its first record: this read's LOG_READ, the last of the tree it returns.
    let held_from = checkpoint(&topo).await.tree_size - 1;
    checkpoint(&topo).await;

    let (mut dpo, client) = admin(&topo, "dpo").await;
    let place = |node: &str, from: Option<u64>, to: Option<u64>, case: &str, reason: &str| PlaceHoldRequest {
        node: node.into(),
        from: from.map(from_unix_millis),
        to: to.map(from_unix_millis),
        case_reference: case.into(),
        reason: reason.into(),
        ..Default::default()
    };
    let (from, to) = (start - 60_000, start + HOUR.as_millis() as u64);
    for (req, field) in [
        (place("", None, None, "C-1", "r"), "alert_id"),
        (PlaceHoldRequest { alert_id: "not an id".into(), ..place("", None, None, "C-1", "r") }, "alert_id"),
        (place("nobody", None, None, "C-1", "r"), "node"),
        (place("", Some(to), Some(from), "C-1", "r"), "to"),
        (place("auditor", None, None, " ", "r"), "case_reference"),
        (place("auditor", None, None, "C-1", ""), "reason"),
    ] {
        let status = dpo.place_hold(client.request(req.clone())).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{req:?}");
        assert!(status.message().contains(&format!("{field}: ")), "{req:?}: {}", status.message());
    }
    assert!(dpo.list_holds(client.request(ListHoldsRequest {})).await.unwrap().into_inner().holds.is_empty());

    // The auditor's reads of that day are held.
    let reason = "preservation order of the investigating judge";
    let hold: Hold = dpo
        .place_hold(client.request(place("auditor", Some(from), Some(to), "EPPO-2026-0042", reason)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((hold.id.as_str(), hold.placed_by.as_str()), ("hold-1", "officer@dpo"));
    let listed = dpo.list_holds(client.request(ListHoldsRequest {})).await.unwrap().into_inner().holds;
    assert_eq!(listed, vec![hold.clone()]);

    // Four days on, a prune stops at the first record the hold covers.
    topo.advance_clock(4 * DAY);
    let stopped = prune(&topo, asking("retention", None, false)).await.unwrap();
    assert_eq!((stopped.from, stopped.upto), (0, held_from), "{stopped:?}");
    assert_eq!(stopped.stopped_by, format!("seq {held_from} is kept: legal hold hold-1 covers it until it is lifted"));

    let placed = of(&topo, Operation::Administration).await;
    let placed = placed.iter().find(|r| r.seq == hold.placed_seq).expect("the HOLD_PLACED record");
    let change = placed.admin.as_ref().unwrap();
    assert_eq!(
        (change.action(), change.changed.as_slice(), change.via.as_str()),
        (AdminAction::HoldPlaced, &["hold-1".to_owned()][..], "admin call")
    );
    assert_eq!(
        (placed.node.as_str(), placed.officer.as_str(), placed.justification.as_str()),
        ("dpo", "officer@dpo", reason)
    );
    assert_eq!(placed.case_reference, "EPPO-2026-0042");
    assert!(
        placed.detail.contains("legal hold hold-1 placed: it covers node auditor, records from "),
        "{}",
        placed.detail
    );
    assert!(!placed.detail.contains("judge"), "the reason is sealed, not in the detail: {}", placed.detail);

    // Lifting: refused without a reason or for a hold not in force.
    for (req, code) in [
        (LiftHoldRequest { id: "hold-1".into(), reason: "".into() }, Code::InvalidArgument),
        (LiftHoldRequest { id: "hold-9".into(), reason: "r".into() }, Code::NotFound),
    ] {
        assert_eq!(dpo.lift_hold(client.request(req.clone())).await.unwrap_err().code(), code, "{req:?}");
    }
    let lift = LiftHoldRequest { id: "hold-1".into(), reason: "proceedings closed".into() };
    let lifted = dpo.lift_hold(client.request(lift.clone())).await.unwrap().into_inner();
    assert_eq!(lifted, hold);
    assert!(dpo.list_holds(client.request(ListHoldsRequest {})).await.unwrap().into_inner().holds.is_empty());
    assert_eq!(dpo.lift_hold(client.request(lift)).await.unwrap_err().code(), Code::NotFound, "lifted once");
    let records = of(&topo, Operation::Administration).await;
    let lifted = records
        .iter()
        .find(|r| r.admin.as_ref().is_some_and(|a| a.action() == AdminAction::HoldLifted))
        .expect("the HOLD_LIFTED record");
    assert_eq!((lifted.officer.as_str(), lifted.justification.as_str()), ("officer@dpo", "proceedings closed"));
    assert_eq!(lifted.admin.as_ref().unwrap().changed, ["hold-1"]);
    assert!(
        lifted.detail.contains(&format!("legal hold hold-1 lifted (placed at seq {})", hold.placed_seq)),
        "{}",
        lifted.detail
    );

    // Lifted, what it kept goes by the rule, the record of placing it too.
    let done = prune(&topo, asking("retention", None, false)).await.unwrap();
    assert_eq!(done.from, held_from);
    assert!(done.upto > hold.placed_seq, "{done:?}");
    assert!(done.stopped_by.contains("inside the retention"), "{done:?}");
    let now = entries(&topo, done.upto).await;
    assert!(now.iter().all(|e| e.pruned), "[0, {}) pruned", done.upto);
    topo.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_schedule_prunes_by_the_rule_as_the_gateway() {
    let topo = topology(Some(Duration::from_millis(200))).await;
    checkpoint(&topo).await;
    checkpoint(&topo).await;
    topo.advance_clock(4 * DAY);
    // Bounded: until the schedule's ERASURE record is there, or LIMIT.
    let deadline = tokio::time::Instant::now() + LIMIT;
    let erasure = loop {
        let found = of(&topo, Operation::Erasure).await.into_iter().find(|r| r.detail.contains("(via timer"));
        if let Some(r) = found {
            break r;
        }
        assert!(tokio::time::Instant::now() < deadline, "no scheduled prune within {LIMIT:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!((erasure.node.as_str(), erasure.officer.as_str()), ("", ""), "the gateway itself");
    assert!(
        erasure.justification.starts_with("scheduled retention (rule: audit.retention 3d, audit.retention_floor 1h"),
        "{}",
        erasure.justification
    );
    assert!(
        erasure.detail.contains("ordered by the gateway (via timer, audit.prune_every 200ms)"),
        "{}",
        erasure.detail
    );
    let (from, upto) = verify::pruned_range(&erasure).unwrap();
    assert_eq!(from, 0);
    assert!(upto >= 2, "the two reads of four days ago: {}", erasure.detail);
    assert!(entries(&topo, upto).await.iter().all(|e| e.pruned));
    // Only one: the next runs find nothing more to prune, and record nothing.
    assert_eq!(of(&topo, Operation::Erasure).await, vec![erasure]);
    topo.shutdown().await;
}
