//! Log tests: model-based, tamper detection, pruning, cross-checks.

use std::path::Path;

use isx_core::wire::{AuditBundle, AuditRecord, Checkpoint, Operation};
use proptest::prelude::*;
use tlog_tiles::tlog::{self, Hash};

use crate::verify::{self, LogVerifier, RootBuilder, VerifyError};
use crate::{AuditError, AuditLog, Filter};

fn keys(dir: &Path) -> crate::keys::AuditKeys {
    if !dir.join("audit.key").exists() {
        crate::keys::create(dir, "isx.test/audit").unwrap();
    }
    crate::keys::load(dir).unwrap()
}

fn open(dir: &Path) -> Result<AuditLog, AuditError> {
    let db = isx_store::open(&dir.join("db"), isx_store::GATEWAY_CACHE_BYTES).unwrap();
    AuditLog::open(&db, keys(dir), &|_, _| {}).map(|(log, _)| log)
}

fn record(i: u64) -> AuditRecord {
    AuditRecord {
        operation: if i.is_multiple_of(3) { Operation::Collection } else { Operation::Disclosure } as i32,
        node: format!("node-{}", i % 4),
        officer: format!("officer-{}", i % 5),
        alert_id: format!("alert-{}", i / 2),
        purpose: "p".into(),
        subject_pseudonyms: vec![format!("{:064x}", i % 7)],
        ..Default::default()
    }
}

/// Prunes what the rule allows before `before_ms`, at `now_ms`, with a
/// floor of 1 ms.
fn prune_at(log: &AuditLog, before_ms: u64, now_ms: u64) -> crate::retention::PrunePlan {
    let rule = crate::retention::Rule { retention_ms: 1, floor_ms: 1 };
    let cutoff = rule.cutoff(Some(before_ms), now_ms).unwrap();
    log.prune(&rule, &cutoff, now_ms, "dpo").unwrap().0
}

fn checkpoint_msg(log: &AuditLog, size: u64) -> Checkpoint {
    let note = log.sign_checkpoint(size).unwrap();
    Checkpoint {
        note,
        tree_size: size,
        root_hash: log.root(size).unwrap().to_vec(),
        origin: log.keys().origin.clone(),
        verifier_key: log.keys().verifier_key.clone(),
        signed_size: size,
        ..Default::default()
    }
}

/// RFC 9162 §2.1.3.2, written from the RFC text: a second implementation to check inclusion proofs.
fn rfc_inclusion(index: u64, size: u64, leaf: [u8; 32], proof: &[[u8; 32]], root: [u8; 32]) -> bool {
    if index >= size {
        return false;
    }
    let (mut fnode, mut snode, mut r) = (index, size - 1, leaf);
    for p in proof {
        if snode == 0 {
            return false;
        }
        if fnode & 1 == 1 || fnode == snode {
            r = tlog::node_hash(Hash(*p), Hash(r)).0;
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            r = tlog::node_hash(Hash(r), Hash(*p)).0;
        }
        fnode >>= 1;
        snode >>= 1;
    }
    snode == 0 && r == root
}

/// RFC 9162 §2.1.4.2, written from the RFC text: a second implementation to check consistency proofs.
fn rfc_consistency(first: u64, second: u64, first_root: [u8; 32], second_root: [u8; 32], proof: &[[u8; 32]]) -> bool {
    if first == second {
        return proof.is_empty() && first_root == second_root;
    }
    let mut path: Vec<[u8; 32]> = proof.to_vec();
    if first.is_power_of_two() {
        path.insert(0, first_root);
    }
    let (mut fnode, mut snode) = (first - 1, second - 1);
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    let Some(&start) = path.first() else { return false };
    let (mut fr, mut sr) = (start, start);
    for c in &path[1..] {
        if snode == 0 {
            return false;
        }
        if fnode & 1 == 1 || fnode == snode {
            fr = tlog::node_hash(Hash(*c), Hash(fr)).0;
            sr = tlog::node_hash(Hash(*c), Hash(sr)).0;
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            sr = tlog::node_hash(Hash(sr), Hash(*c)).0;
        }
        fnode >>= 1;
        snode >>= 1;
    }
    snode == 0 && fr == first_root && sr == second_root
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Random appends in random batches, with reopens between them: the tree
    /// matches a plain Vec of leaves, and every proof verifies both with
    /// `tlog_tiles` and with the RFC 9162 algorithms written out above.
    #[test]
    fn model(batches in prop::collection::vec(1usize..9, 1..8), reopen in prop::collection::vec(any::<bool>(), 8)) {
        let dir = tempfile::tempdir().unwrap();
        let mut model: Vec<[u8; 32]> = Vec::new();
        let mut log = open(dir.path()).unwrap();
        for (b, n) in batches.iter().enumerate() {
            let base = model.len() as u64;
            let seqs = log.append((0..*n as u64).map(|i| record(base + i)).collect(), 1000 + base).unwrap();
            prop_assert_eq!(seqs, (base..base + *n as u64).collect::<Vec<_>>());
            for s in base..base + *n as u64 {
                model.push(verify::entry(&log.entry(s).unwrap()).unwrap());
            }
            if reopen[b] {
                log.db().flush().unwrap();
                drop(log);
                log = open(dir.path()).unwrap();
            }
        }
        let size = model.len() as u64;
        prop_assert_eq!(log.size(), size);
        for t in 1..=size {
            let mut rb = RootBuilder::default();
            model[..t as usize].iter().for_each(|l| rb.push(*l));
            let root = log.root(t).unwrap();
            prop_assert_eq!(root, rb.root());
            for s in 0..t {
                let raw = log.inclusion_proof(s, t).unwrap();
                prop_assert!(rfc_inclusion(s, t, model[s as usize], &raw, root), "RFC 9162 check of proof {} in {}", s, t);
                let proof: Vec<Hash> = raw.into_iter().map(Hash).collect();
                prop_assert!(tlog::check_record(&proof, t, Hash(root), s, Hash(model[s as usize])).is_ok());
            }
            for m in 1..t {
                let raw = log.consistency_proof(m, t).unwrap();
                let first_root = log.root(m).unwrap();
                prop_assert!(rfc_consistency(m, t, first_root, root, &raw), "RFC 9162 check of consistency {} -> {}", m, t);
                let proof: Vec<Hash> = raw.into_iter().map(Hash).collect();
                prop_assert!(tlog::check_tree(&proof, t, Hash(root), m, Hash(first_root)).is_ok());
            }
        }
    }
}

/// A log of `n` records with a checkpoint at `n`, flushed and closed.
fn closed_log(n: u64) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path()).unwrap();
    log.append((0..n).map(record).collect(), 5000).unwrap();
    log.sign_checkpoint(n).unwrap();
    assert_eq!(log.index_pending().unwrap(), n);
    log.db().flush().unwrap();
    dir
}

fn tamper(dir: &Path, edit: impl FnOnce(&sled::Db)) {
    let db = isx_store::open(&dir.join("db"), isx_store::GATEWAY_CACHE_BYTES).unwrap();
    edit(&db);
    db.flush().unwrap();
}

#[test]
fn tampering_is_detected_at_open_naming_the_first_bad_seq() {
    type Edit = Box<dyn Fn(&sled::Db)>;
    let cases: Vec<(&str, Edit, &str)> = vec![
        (
            "a record",
            Box::new(|db| {
                let t = db.open_tree("audit.entries").unwrap();
                let mut v = t.get(5u64.to_be_bytes()).unwrap().unwrap().to_vec();
                let at = crate::log::hashes_len(5);
                let mut r: AuditRecord = prost::Message::decode(&v[at..]).unwrap();
                r.officer = "someone else".into();
                v.truncate(at);
                v.extend(prost::Message::encode_to_vec(&r));
                t.insert(5u64.to_be_bytes(), v).unwrap();
            }),
            "first bad sequence number 5",
        ),
        (
            "a stored hash",
            Box::new(|db| {
                // Record 7's leaf hash: the first 32 bytes of its value.
                let t = db.open_tree("audit.entries").unwrap();
                let mut v = t.get(7u64.to_be_bytes()).unwrap().unwrap().to_vec();
                v[..32].copy_from_slice(&[7u8; 32]);
                t.insert(7u64.to_be_bytes(), v).unwrap();
            }),
            "first bad sequence number 7",
        ),
        (
            "an interior hash",
            Box::new(|db| {
                // The level-1 hash over records 4 and 5, stored with record 5.
                let t = db.open_tree("audit.entries").unwrap();
                let mut v = t.get(5u64.to_be_bytes()).unwrap().unwrap().to_vec();
                assert_eq!(crate::log::hashes_len(5), 64, "record 5 closes one subtree");
                v[32..64].copy_from_slice(&[7u8; 32]);
                t.insert(5u64.to_be_bytes(), v).unwrap();
            }),
            "first bad sequence number 5",
        ),
        (
            "a record taken out of an index list",
            Box::new(|db| {
                let t = db.open_tree("audit.index").unwrap();
                let (key, value) = t
                    .iter()
                    .map(|kv| kv.unwrap())
                    .find(|(_, v)| {
                        let seqs = crate::index::decode(v).unwrap();
                        seqs.len() > 1 && seqs[1..].contains(&4)
                    })
                    .unwrap();
                let left: Vec<u64> = crate::index::decode(&value).unwrap().into_iter().filter(|s| *s != 4).collect();
                t.insert(key, crate::index::encode(&left)).unwrap();
            }),
            "first bad sequence number 4",
        ),
        (
            "an added index row",
            Box::new(|db| {
                let t = db.open_tree("audit.index").unwrap();
                t.insert(crate::index::row(crate::index::Kind::Officer, "ghost", 5000, 3), crate::index::encode(&[3]))
                    .unwrap();
            }),
            "first bad sequence number 3",
        ),
        (
            "the size",
            Box::new(|db| {
                db.open_tree("audit.meta").unwrap().insert("size", &10u64.to_be_bytes()[..]).unwrap();
            }),
            "truncated (first missing sequence number 10",
        ),
        (
            "a truncated tree",
            Box::new(|db| {
                let e = db.open_tree("audit.entries").unwrap();
                e.remove(11u64.to_be_bytes()).unwrap();
                e.remove(10u64.to_be_bytes()).unwrap();
            }),
            "first bad sequence number 10",
        ),
        (
            "a forged checkpoint",
            Box::new(|db| {
                let t = db.open_tree("audit.checkpoints").unwrap();
                let (k, v) = t.last().unwrap().unwrap();
                t.insert(k, String::from_utf8_lossy(&v).replacen("\n12\n", "\n12 \n", 1).as_bytes()).unwrap();
            }),
            "checkpoint at size 12",
        ),
    ];
    for (what, edit, needle) in cases {
        let dir = closed_log(12);
        tamper(dir.path(), edit);
        let err = open(dir.path()).expect_err(what).to_string();
        assert!(err.contains(needle), "{what}: {err}");
    }
    // Untouched, it opens.
    let dir = closed_log(12);
    assert_eq!(open(dir.path()).unwrap().size(), 12);
}

#[test]
fn unacknowledged_leftovers_beyond_the_size_are_removed() {
    let dir = closed_log(6);
    tamper(dir.path(), |db| {
        // As if a crash hit after the records of an append but before its size.
        db.open_tree("audit.entries")
            .unwrap()
            .insert(6u64.to_be_bytes(), prost::Message::encode_to_vec(&record(6)))
            .unwrap();
    });
    let db = isx_store::open(&dir.path().join("db"), isx_store::GATEWAY_CACHE_BYTES).unwrap();
    let (log, report) = AuditLog::open(&db, keys(dir.path()), &|_, _| {}).unwrap();
    assert_eq!((log.size(), report.leftovers_removed), (6, 1));
}

#[test]
fn pruning_keeps_every_earlier_proof_valid() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path()).unwrap();
    log.append((0..5).map(record).collect(), 1000).unwrap();
    log.append((5..10).map(record).collect(), 2000).unwrap();
    let cp = checkpoint_msg(&log, 10);
    let before: Vec<_> = (0..10).map(|s| log.inclusion_proof(s, 10).unwrap()).collect();
    let entries_before = log.entries(0, 10).unwrap();

    assert_eq!(prune_at(&log, 1500, 3000).count(), 5);
    assert_eq!(log.size(), 11, "one erasure record");
    let erasure = log.entry(10).unwrap().record.unwrap();
    assert_eq!(erasure.operation(), Operation::Erasure);
    assert!(erasure.detail.contains("[0, 5)"), "{}", erasure.detail);
    let verified = verify::checkpoint(&cp, None).unwrap();
    for s in 0..10 {
        assert_eq!(log.inclusion_proof(s, 10).unwrap(), before[s as usize]);
        let mut e = log.entry(s).unwrap();
        assert_eq!(e.pruned, s < 5);
        e.proof = before[s as usize].iter().map(|h| h.to_vec()).collect();
        e.proof_tree_size = 10;
        verify::inclusion(&e, &verified).unwrap();
        assert_eq!(e.leaf_hash, entries_before[s as usize].leaf_hash);
    }
    let (found, _) = log.search(&Filter { node: Some("node-1".into()), ..Default::default() }, 100, None).unwrap();
    assert_eq!(found.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![5, 9], "pruned records leave the indexes");
    log.db().flush().unwrap();
    drop(log);
    let log = open(dir.path()).expect("a pruned log passes the integrity check");
    assert_eq!(log.size(), 11);
}

#[test]
fn a_verifier_accepts_pruned_entries_only_as_a_prefix_that_an_erasure_covers() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path()).unwrap();
    log.append((0..5).map(record).collect(), 1000).unwrap();
    log.append((5..10).map(record).collect(), 2000).unwrap();
    prune_at(&log, 1500, 3000);
    log.append(vec![record(11)], 4000).unwrap();
    let size = log.size();
    let cp = verify::checkpoint(&checkpoint_msg(&log, size), None).unwrap();
    let entries = log.entries(0, size).unwrap();
    let run = |entries: &[isx_core::wire::AuditEntry]| {
        let mut v = verify::LogVerifier::default();
        for e in entries {
            v.push(e)?;
        }
        v.finish(&cp)
    };
    run(&entries).expect("the pruned prefix [0, 5) is covered by the erasure record");
    assert!(verify::pruned_range(entries[10].record.as_ref().unwrap()) == Some((0, 5)));

    // A server that withholds a record in the middle, calling it pruned.
    let mut gap = entries.clone();
    gap[7] = isx_core::wire::AuditEntry { body: vec![], record: None, pruned: true, ..gap[7].clone() };
    // (its leaf hash is kept, so the root still matches: only the rule catches it)
    assert_eq!(run(&gap), Err(verify::VerifyError::PrunedGap { seq: 7, after: 5 }));

    // A prefix pruned without the erasure record that says so.
    let mut unrecorded = entries.clone();
    let mut erasure = unrecorded[10].record.clone().unwrap();
    erasure.detail = "retention: audit record bodies [0, 3) are pruned".into();
    unrecorded[10].body = prost::Message::encode_to_vec(&erasure);
    unrecorded[10].record = Some(erasure);
    // The body no longer hashes to the leaf: that is caught first.
    assert!(matches!(run(&unrecorded), Err(verify::VerifyError::Entry { seq: 10, .. })));
    let mut v = verify::LogVerifier::default();
    for e in &entries[..5] {
        v.push(e).unwrap();
    }
    for e in &entries[5..10] {
        v.push(e).unwrap();
    }
    // Only the prefix, no erasure record: not accounted for.
    let head = verify::checkpoint(&checkpoint_msg(&log, 10), None).unwrap();
    assert_eq!(v.finish(&head), Err(verify::VerifyError::PrunedUncovered { pruned: 5, covered: 0 }));
}

/// A record at the time its append gives it, about `alert` (if any).
fn about(op: Operation, outcome: isx_core::wire::Outcome, alert: &str) -> AuditRecord {
    AuditRecord { operation: op as i32, outcome: outcome as i32, alert_id: alert.into(), ..Default::default() }
}

fn verify_all(log: &AuditLog) -> Result<(), VerifyError> {
    let size = log.size();
    let cp = verify::checkpoint(&checkpoint_msg(log, size), None).unwrap();
    let mut v = LogVerifier::default();
    for e in log.entries(0, size).unwrap() {
        v.push(&e)?;
    }
    v.finish(&cp)
}

#[test]
fn a_live_alerts_history_is_kept_and_pruned_once_it_ended_and_the_retention_passed() {
    use crate::retention::{Kept, Rule};
    use isx_core::wire::{AuditHit, Outcome};
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path()).unwrap();
    let rule = Rule { retention_ms: 10_000, floor_ms: 1000 };
    log.append(vec![about(Operation::LogRead, Outcome::Ok, "")], 1000).unwrap(); // 0
    log.append(vec![about(Operation::Collection, Outcome::Ok, "A")], 2000).unwrap(); // 1
    log.append(vec![about(Operation::Disclosure, Outcome::Ok, "A")], 2000).unwrap(); // 2
    let hit = AuditHit { alert_id: "A".into(), ..Default::default() };
    log.append(vec![AuditRecord { hits: vec![hit], ..about(Operation::Consultation, Outcome::Ok, "") }], 3000).unwrap(); // 3
    let cp = checkpoint_msg(&log, 4);
    let proofs: Vec<_> = (0..4).map(|s| log.inclusion_proof(s, 4).unwrap()).collect();

    // A is live: the prune stops before its collection, whatever its age.
    let prune = |now: u64| {
        let cutoff = rule.cutoff(None, now).unwrap();
        log.prune(&rule, &cutoff, now, "dpo").unwrap()
    };
    let (plan, erasure) = prune(20_000);
    assert_eq!((plan.from, plan.upto, erasure), (0, 1, 4));
    assert_eq!(plan.kept, Some(Kept::Live { seq: 1, alert_id: "A".into() }));
    let detail = log.entry(erasure).unwrap().record.unwrap().detail;
    assert!(detail.contains("stops because seq 1 is kept: alert A is still live"), "{detail}");

    // A expires at 20 000: its history now counts from then.
    log.append(vec![about(Operation::Erasure, Outcome::Ok, "A")], 20_000).unwrap(); // 5
    let (plan, _) = prune(25_000); // cut-off 15 000, A ended after it
    assert_eq!((plan.from, plan.upto), (1, 1));
    assert_eq!(plan.kept, Some(Kept::EndedInside { seq: 1, alert_id: "A".into(), ended_ms: 20_000 }));

    // Once the retention passed since A's end, A's history goes, up to the
    // first record inside the retention.
    let (plan, erasure) = prune(31_000); // cut-off 21 000
    assert_eq!((plan.from, plan.upto, plan.last_ms), (1, 6, Some(20_000)));
    assert_eq!(plan.kept, Some(Kept::Recent { seq: 6, time_ms: 25_000 }));
    let record = log.entry(erasure).unwrap().record.unwrap();
    assert_eq!(verify::pruned_range(&record), Some((0, 6)), "{}", record.detail);
    for s in 0..log.size() {
        assert_eq!(log.entry(s).unwrap().pruned, s < 6, "seq {s}");
    }

    // Every earlier proof still holds, the verifier accepts the pruned
    // prefix, and still refuses a gap after it.
    let verified = verify::checkpoint(&cp, None).unwrap();
    for s in 0..4u64 {
        let mut e = log.entry(s).unwrap();
        e.proof = proofs[s as usize].iter().map(|h| h.to_vec()).collect();
        e.proof_tree_size = 4;
        verify::inclusion(&e, &verified).unwrap();
    }
    verify_all(&log).expect("the pruned prefix [0, 6) is covered");
    let mut v = LogVerifier::default();
    let gap = log.entries(0, log.size()).unwrap().into_iter().try_for_each(|e| match e.seq {
        7 => v.push(&isx_core::wire::AuditEntry { body: vec![], record: None, pruned: true, ..e }),
        _ => v.push(&e),
    });
    assert_eq!(gap, Err(VerifyError::PrunedGap { seq: 7, after: 6 }), "a record withheld after the prefix");
    drop(log);
    open(dir.path()).expect("a pruned log passes the integrity check");
}

#[test]
fn a_withdrawn_publish_ends_its_alert_and_an_alert_never_stored_follows_its_records_time() {
    use crate::retention::{Kept, Rule};
    use isx_core::wire::Outcome;
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path()).unwrap();
    let rule = Rule { retention_ms: 10_000, floor_ms: 1000 };
    log.append(vec![about(Operation::Collection, Outcome::Ok, "W")], 1000).unwrap(); // 0
    log.append(vec![about(Operation::Denial, Outcome::Error, "W")], 1000).unwrap(); // 1: withdrawn
    log.append(vec![about(Operation::Denial, Outcome::Refused, "never")], 2000).unwrap(); // 2
    log.append(vec![about(Operation::Collection, Outcome::Ok, "L")], 3000).unwrap(); // 3
    let cutoff = rule.cutoff(None, 20_000).unwrap();
    let plan = log.plan_prune(&cutoff).unwrap();
    assert_eq!((plan.upto, plan.kept), (3, Some(Kept::Live { seq: 3, alert_id: "L".into() })));
}

#[test]
fn a_dry_run_changes_nothing_and_a_cutoff_the_rule_refuses_prunes_nothing() {
    use crate::retention::{Cutoff, Rule};
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path()).unwrap();
    log.append((0..6).map(record).collect(), 1000).unwrap();
    checkpoint_msg(&log, 6);
    let rule = Rule { retention_ms: 10_000, floor_ms: 5000 };
    let snapshot = |log: &AuditLog| (log.size(), log.entries(0, log.size()).unwrap(), log.latest_checkpoint().unwrap());
    let before = snapshot(&log);
    let plan = log.plan_prune(&rule.cutoff(None, 20_000).unwrap()).unwrap();
    assert_eq!((plan.from, plan.upto, plan.count(), plan.kept), (0, 6, 6, None));
    assert_eq!(snapshot(&log), before, "a dry run writes nothing");

    // Inside the floor (now − 5000 = 15 000), however the cut-off was made.
    let inside = Cutoff { at_ms: 15_001, asked: true };
    let err = log.prune(&rule, &inside, 20_000, "dpo").unwrap_err();
    assert!(matches!(err, AuditError::Retention(crate::retention::RuleError::InsideFloor { .. })), "{err}");
    let future = Cutoff { at_ms: 20_001, asked: true };
    assert!(matches!(
        log.prune(&rule, &future, 20_000, "dpo"),
        Err(AuditError::Retention(crate::retention::RuleError::Future { .. }))
    ));
    assert_eq!(snapshot(&log), before, "a refused prune writes nothing");
}

#[test]
fn the_erasure_record_says_what_went_and_why_and_the_verifier_reads_its_range() {
    use crate::retention::Rule;
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path()).unwrap();
    log.append((0..3).map(record).collect(), 86_400_000).unwrap();
    log.append(vec![record(3)], 40 * 86_400_000).unwrap();
    let rule = Rule { retention_ms: 30 * 86_400_000, floor_ms: 86_400_000 };
    let now = 45 * 86_400_000;
    let (_, seq) = log.prune(&rule, &rule.cutoff(None, now).unwrap(), now, "dpo-1").unwrap();
    let r = log.entry(seq).unwrap().record.unwrap();
    assert_eq!(r.officer, "dpo-1");
    assert_eq!(
        r.detail,
        "retention: audit record bodies [0, 3) are pruned ([0, 3) now, the last recorded 1970-01-02T00:00:00Z); \
         rule: a record is kept 30d from its time, a record naming an alert 30d from the alert's end (expiry or erasure) \
         and never while it is live, nothing younger than the floor of 1d; cut-off 1970-01-16T00:00:00Z (now minus the \
         retention); ordered by dpo-1; stops because seq 3 is kept: recorded 1970-02-10T00:00:00Z, inside the \
         retention; their hashes stay"
    );
    assert_eq!(verify::pruned_range(&r), Some((0, 3)));
    verify_all(&log).unwrap();
}

#[test]
fn search_reads_by_index_and_pages() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path()).unwrap();
    for i in 0..40 {
        log.append(vec![record(i)], 1000 + i * 10).unwrap();
    }
    let f = Filter { officer: Some("officer-2".into()), ..Default::default() };
    let (page, more) = log.search(&f, 3, None).unwrap();
    assert!(more);
    assert_eq!(page.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![2, 7, 12]);
    let (rest, more) = log.search(&f, 100, Some(12)).unwrap();
    assert!(!more);
    assert_eq!(rest.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![17, 22, 27, 32, 37]);
    let f = Filter {
        officer: Some("officer-2".into()),
        operation: Some(Operation::Collection),
        from_ms: Some(1100),
        to_ms: Some(1300),
        ..Default::default()
    };
    let (hits, _) = log.search(&f, 100, None).unwrap();
    assert_eq!(hits.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![12, 27]);
    let (by_subject, _) =
        log.search(&Filter { pseudonym: Some(format!("{:064x}", 3)), ..Default::default() }, 100, None).unwrap();
    assert_eq!(by_subject.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![3, 10, 17, 24, 31, 38]);
}

#[test]
fn whole_log_and_bundle_verification() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path()).unwrap();
    log.append((0..9).map(record).collect(), 1000).unwrap();
    let cp = checkpoint_msg(&log, 9);
    let verified = verify::checkpoint(&cp, Some(&log.keys().verifier_key)).unwrap();
    let mut v = LogVerifier::default();
    for e in log.entries(0, 9).unwrap() {
        v.push(&e).unwrap();
    }
    v.finish(&verified).unwrap();

    let entries: Vec<_> = log
        .entries(0, 9)
        .unwrap()
        .into_iter()
        .map(|mut e| {
            e.proof = log.inclusion_proof(e.seq, 9).unwrap().iter().map(|h| h.to_vec()).collect();
            e.proof_tree_size = 9;
            e
        })
        .collect();
    let bundle = AuditBundle { version: 1, checkpoint: Some(cp.clone()), entries, ..Default::default() };
    let presented = verify::Trust::default();
    assert_eq!(verify::bundle(&bundle, &presented, &|_, _| {}).unwrap().entries, 9);

    // A corrupted bundle fails: an altered body, a swapped proof, a foreign key.
    let mut altered = bundle.clone();
    altered.entries[4].body[3] ^= 1;
    assert!(matches!(verify::bundle(&altered, &presented, &|_, _| {}), Err(VerifyError::Entry { seq: 4, .. })));
    let mut swapped = bundle.clone();
    swapped.entries[2].proof = swapped.entries[3].proof.clone();
    assert!(matches!(verify::bundle(&swapped, &presented, &|_, _| {}), Err(VerifyError::Entry { seq: 2, .. })));
    let other = tempfile::tempdir().unwrap();
    crate::keys::create(other.path(), "isx.test/audit").unwrap();
    let stranger = crate::keys::load(other.path()).unwrap().verifier_key;
    let pinned = verify::Trust::new(Some(stranger), None).unwrap();
    assert!(matches!(verify::bundle(&bundle, &pinned, &|_, _| {}), Err(VerifyError::UntrustedKey { .. })));

    // Two different checkpoints at the same size are a fork.
    let other_log_dir = tempfile::tempdir().unwrap();
    std::fs::copy(dir.path().join("audit.key"), other_log_dir.path().join("audit.key")).unwrap();
    std::fs::copy(dir.path().join("audit.pub"), other_log_dir.path().join("audit.pub")).unwrap();
    std::fs::copy(dir.path().join("audit-hmac.key"), other_log_dir.path().join("audit-hmac.key")).unwrap();
    let fork = open(other_log_dir.path()).unwrap();
    fork.append((0..9).map(|i| record(i + 100)).collect(), 1000).unwrap();
    let forked = verify::checkpoint(&checkpoint_msg(&fork, 9), None).unwrap();
    assert_eq!(verify::consistency(&verified, &forked, &[]), Err(VerifyError::Fork { size: 9 }));

    assert_eq!(verify::consistency(&forked, &verified, &[]), Err(VerifyError::Fork { size: 9 }));

    // A later checkpoint of the same log is consistent with its real proof; the forked one is not.
    log.append((9..14).map(record).collect(), 2000).unwrap();
    let later = verify::checkpoint(&checkpoint_msg(&log, 14), None).unwrap();
    let proof: Vec<Vec<u8>> = log.consistency_proof(9, 14).unwrap().iter().map(|h| h.to_vec()).collect();
    assert!(!proof.is_empty());
    assert_eq!(verify::consistency(&verified, &later, &proof), Ok(()));
    let inconsistent = Err(VerifyError::Inconsistent { old: 9, new: 14 });
    assert_eq!(verify::consistency(&forked, &later, &proof), inconsistent);
    // The fork grown to 14 with a real proof of its own: that proof holds for
    // the fork and not from the honest checkpoint; at 14 the two are a fork again.
    fork.append((9..14).map(record).collect(), 2000).unwrap();
    let forked_later = verify::checkpoint(&checkpoint_msg(&fork, 14), None).unwrap();
    let fork_proof: Vec<Vec<u8>> = fork.consistency_proof(9, 14).unwrap().iter().map(|h| h.to_vec()).collect();
    assert!(!fork_proof.is_empty());
    assert_eq!(verify::consistency(&forked, &forked_later, &fork_proof), Ok(()));
    assert_eq!(verify::consistency(&verified, &forked_later, &fork_proof), inconsistent);
    assert_eq!(verify::consistency(&verified, &forked_later, &proof), inconsistent);
    assert_eq!(verify::consistency(&later, &forked_later, &[]), Err(VerifyError::Fork { size: 14 }));
    assert!(matches!(verify::consistency(&later, &verified, &[]), Err(VerifyError::Shrunk { .. })));
}

#[test]
fn every_stored_hash_is_found_with_the_record_that_completes_it() {
    for n in 0..300u64 {
        let count = tlog::stored_hash_count(n + 1) - tlog::stored_hash_count(n);
        let base = tlog::stored_hash_index(0, n);
        assert_eq!(base, tlog::stored_hash_count(n));
        for i in 0..count {
            assert_eq!(crate::log::locate(base + i), (n, 32 * i as usize), "stored hash {} of record {n}", i);
        }
    }
}

#[test]
fn search_rows_are_written_after_the_append_and_before_any_search() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path()).unwrap();
    log.append((0..40).map(record).collect(), 5000).unwrap();
    assert_eq!(log.unindexed().unwrap(), 40, "append writes no search rows");
    let filter = Filter { officer: Some(record(3).officer), ..Default::default() };
    let (found, _) = log.search(&filter, 100, None).unwrap();
    assert!(!found.is_empty() && found.iter().all(|e| filter.matches(e.record.as_ref().unwrap())));
    assert_eq!(log.unindexed().unwrap(), 0, "the search indexed first");
    assert_eq!(log.index_pending().unwrap(), 0);

    // As after a crash between a batch's lists and `indexed`: the batch is
    // indexed again from its start, with more records by then, and its lists
    // are written again under the same keys.
    log.append((40..50).map(record).collect(), 6000).unwrap();
    assert_eq!(log.index_pending().unwrap(), 10);
    log.meta_for_tests().insert("indexed", &40u64.to_be_bytes()[..]).unwrap();
    log.append((50..60).map(record).collect(), 7000).unwrap();
    assert_eq!(log.index_pending().unwrap(), 20);
    log.db().flush().unwrap();
    drop(log);
    let log = open(dir.path()).unwrap();
    let report = log.check_integrity(&|_, _| {}).unwrap();
    assert_eq!(report.bodies_checked, 60);
    let (all, more) = log.search(&Filter::default(), 100, None).unwrap();
    assert!(!more);
    assert_eq!(all.iter().map(|e| e.seq).collect::<Vec<_>>(), (0..60).collect::<Vec<_>>(), "each record once");
}

#[test]
fn record_times_never_go_back_and_searches_by_time_stay_exact() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path()).unwrap();
    log.append((0..10).map(record).collect(), 5000).unwrap();
    // The clock steps back: the records keep the log's last time.
    log.append((10..20).map(record).collect(), 4000).unwrap();
    log.append((20..30).map(record).collect(), 6000).unwrap();
    let times: Vec<u64> =
        log.entries(0, 30).unwrap().iter().map(|e| crate::index::time_of(e.record.as_ref().unwrap())).collect();
    assert_eq!(&times[9..11], &[5000, 5000]);
    assert!(times.windows(2).all(|w| w[0] <= w[1]));
    // Many small batches, so a value spans many lists.
    for i in 30..200u64 {
        log.append(vec![record(i)], 6000 + i).unwrap();
        if i % 7 == 0 {
            log.index_pending().unwrap();
        }
    }
    let officer = record(3).officer;
    let window =
        Filter { officer: Some(officer.clone()), from_ms: Some(6050), to_ms: Some(6120), ..Default::default() };
    let (found, more) = log.search(&window, 1000, None).unwrap();
    let expected: Vec<u64> = (0..200u64)
        .filter(|i| record(*i).officer == officer)
        .filter(|i| (6050..=6120).contains(&(6000 + i)) && *i >= 30)
        .collect();
    assert!(!more);
    assert_eq!(found.iter().map(|e| e.seq).collect::<Vec<_>>(), expected);
    // Paging with `after_seq` gives the same records.
    let (page, more) = log.search(&window, 3, None).unwrap();
    assert!(more);
    let (rest, _) = log.search(&window, 1000, Some(page[2].seq)).unwrap();
    let paged: Vec<u64> = page.iter().chain(&rest).map(|e| e.seq).collect();
    assert_eq!(paged, expected);
    assert_eq!(log.check_integrity(&|_, _| {}).unwrap().index_rows, {
        (0..200u64).map(|i| crate::index::prefixes(&log.entry(i).unwrap().record.unwrap()).len() as u64).sum::<u64>()
    });
}

#[test]
fn a_log_in_the_older_storage_format_is_refused_by_name() {
    let dir = closed_log(5);
    tamper(dir.path(), |db| {
        db.open_tree("audit.meta").unwrap().remove("format").unwrap();
    });
    let err = open(dir.path()).unwrap_err().to_string();
    assert!(err.contains("storage format 1") && err.contains("isx audit export"), "{err}");
}

#[test]
fn a_log_in_format_3_without_the_recipient_index_is_refused_by_name() {
    let dir = closed_log(5);
    tamper(dir.path(), |db| {
        db.open_tree("audit.meta").unwrap().insert("format", &3u64.to_be_bytes()[..]).unwrap();
    });
    let err = open(dir.path()).unwrap_err().to_string();
    assert!(err.contains("storage format 3") && err.contains("reads format 4"), "{err}");
}

/// A record acted by `node`, received by `recipients`.
fn between(node: &str, recipients: &[&str]) -> AuditRecord {
    AuditRecord {
        operation: Operation::Disclosure as i32,
        node: node.into(),
        officer: "o".into(),
        recipients: recipients
            .iter()
            .map(|n| isx_core::wire::RecipientLevel { node: (*n).into(), ..Default::default() })
            .collect(),
        ..Default::default()
    }
}

fn seqs(found: &[isx_core::wire::AuditEntry]) -> Vec<u64> {
    found.iter().map(|e| e.seq).collect()
}

#[test]
fn origin_recipient_and_node_on_either_side_are_read_from_the_index() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path()).unwrap();
    let records = vec![
        between("de-police", &["fr-police", "europol"]), // 0: de publishes to fr and europol
        between("fr-police", &["fr-police"]),            // 1: a disclosure to fr
        between("it-police", &["de-police"]),            // 2: it publishes to de
        between("europol", &[]),                         // 3: europol acts alone
        between("fr-police", &["it-police"]),            // 4
    ];
    for (i, r) in records.into_iter().enumerate() {
        log.append(vec![r], 1000 + i as u64).unwrap();
    }
    let check = |filter: Filter, want: &[u64]| {
        let (found, more) = log.search(&filter, 100, None).unwrap();
        assert_eq!(seqs(&found), want, "{filter:?}");
        assert!(!more);
        // Newest first: the same records, backwards.
        let (found, _) = log.search_window(&filter, &crate::log::Window::newest(100)).unwrap();
        let mut backwards = want.to_vec();
        backwards.reverse();
        assert_eq!(seqs(&found), backwards, "newest first: {filter:?}");
    };
    let f = |origin: Option<&str>, recipient: Option<&str>, node: Option<&str>| Filter {
        origin: origin.map(Into::into),
        recipient: recipient.map(Into::into),
        node: node.map(Into::into),
        ..Default::default()
    };
    check(f(Some("fr-police"), None, None), &[1, 4]);
    check(f(None, Some("fr-police"), None), &[0, 1]);
    check(f(None, None, Some("fr-police")), &[0, 1, 4]);
    check(f(None, None, Some("de-police")), &[0, 2]);
    check(f(None, None, Some("europol")), &[0, 3]);
    check(f(Some("de-police"), Some("europol"), None), &[0]);
    check(f(None, Some("de-police"), Some("it-police")), &[2]);
    // The fields not read from the index still filter.
    check(f(Some("fr-police"), Some("it-police"), None), &[4]);
    check(f(Some("fr-police"), None, Some("it-police")), &[4]);
    check(f(Some("fr-police"), None, Some("europol")), &[]);
    check(Filter { officer: Some("o".into()), ..f(Some("fr-police"), None, None) }, &[1, 4]);
    check(
        Filter { node: Some("it-police".into()), operation: Some(Operation::Disclosure), ..Default::default() },
        &[2, 4],
    );
    // Paging through the merged lists of both sides gives each record once.
    let either = f(None, None, Some("fr-police"));
    let (first, more) = log.search(&either, 2, None).unwrap();
    assert!(more);
    let (rest, more) = log.search(&either, 2, Some(first[1].seq)).unwrap();
    assert!(!more);
    assert_eq!(seqs(&first).into_iter().chain(seqs(&rest)).collect::<Vec<_>>(), vec![0, 1, 4]);
    log.db().flush().unwrap();
    drop(log);
    open(dir.path()).expect("the recipient lists pass the integrity check");
}

#[test]
fn newest_first_reads_backwards_and_pages_with_before_seq() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path()).unwrap();
    // Many small indexing batches, so that a value spans many lists.
    for i in 0..120u64 {
        log.append(vec![record(i)], 1000 + i * 10).unwrap();
        if i % 9 == 0 {
            log.index_pending().unwrap();
        }
    }
    let officer = record(3).officer;
    let all: Vec<u64> = (0..120u64).filter(|i| record(*i).officer == officer).collect();
    let filter = Filter { officer: Some(officer.clone()), ..Default::default() };
    let newest = |window: crate::log::Window| log.search_window(&filter, &window).unwrap();
    let (page, more) = newest(crate::log::Window::newest(4));
    assert!(more, "more match beyond the four newest");
    assert_eq!(seqs(&page), all.iter().rev().take(4).copied().collect::<Vec<_>>());
    // Page on with before_seq until no more: every record once, newest first.
    let mut paged = seqs(&page);
    let mut before = page.last().unwrap().seq;
    for _ in 0..all.len() {
        let (page, more) = newest(crate::log::Window { before_seq: Some(before), ..crate::log::Window::newest(4) });
        paged.extend(seqs(&page));
        if !more {
            break;
        }
        before = page.last().unwrap().seq;
    }
    assert_eq!(paged, all.iter().rev().copied().collect::<Vec<_>>());
    // With a time window and both seq bounds.
    let window = Filter { from_ms: Some(1300), to_ms: Some(1800), ..filter.clone() };
    let expected: Vec<u64> =
        all.iter().rev().copied().filter(|i| (1300..=1800).contains(&(1000 + i * 10)) && *i > 40 && *i < 75).collect();
    let (found, more) = log
        .search_window(
            &window,
            &crate::log::Window { after_seq: Some(40), before_seq: Some(75), ..crate::log::Window::newest(100) },
        )
        .unwrap();
    assert!(!more);
    assert_eq!(seqs(&found), expected);
    // Oldest first honours before_seq too.
    let (found, _) = log
        .search_window(&filter, &crate::log::Window { before_seq: Some(20), ..crate::log::Window::oldest(100) })
        .unwrap();
    assert_eq!(seqs(&found), all.iter().copied().filter(|s| *s < 20).collect::<Vec<_>>());
    // Everything, newest first, from the time index.
    let (found, more) = log.search_window(&Filter::default(), &crate::log::Window::newest(3)).unwrap();
    assert!(more);
    assert_eq!(seqs(&found), vec![119, 118, 117]);
}

#[test]
fn the_index_pages_out_whole_every_entry_once_below_a_size() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path()).unwrap();
    for i in 0..60u64 {
        let mut r = record(i);
        r.recipients =
            vec![isx_core::wire::RecipientLevel { node: format!("node-{}", (i + 1) % 4), ..Default::default() }];
        log.append(vec![r], 1000 + i).unwrap();
        if i % 11 == 0 {
            log.index_pending().unwrap();
        }
    }
    let below = 50;
    let mut listed: std::collections::BTreeMap<(crate::index::Kind, String), Vec<u64>> = Default::default();
    let mut after: Option<Vec<u8>> = None;
    let mut pages = 0;
    for _ in 0..10_000 {
        let page = log.index_page(after.as_deref(), below, 7).unwrap();
        pages += 1;
        for l in page.listings {
            assert!(!l.seqs.is_empty() && l.seqs.iter().all(|s| *s < below), "{l:?}");
            assert_eq!(l.first_seq, l.seqs[0]);
            let first = log.entry(l.first_seq).unwrap().record.unwrap();
            assert_eq!(l.time_ms, crate::index::time_of(&first), "the key's time is its first record's");
            listed.entry((l.kind.expect("a known kind"), l.value)).or_default().extend(l.seqs);
        }
        match page.resume {
            Some(key) => after = Some(key),
            None => break,
        }
    }
    assert!(pages > 10, "small pages: {pages}");
    let mut expected: std::collections::BTreeMap<(crate::index::Kind, String), Vec<u64>> = Default::default();
    for seq in 0..below {
        for v in crate::index::values(&log.entry(seq).unwrap().record.unwrap()) {
            expected.entry(v).or_default().push(seq);
        }
    }
    assert!(expected.keys().any(|(k, _)| *k == crate::index::Kind::Recipient));
    assert_eq!(listed, expected, "every record under each of its values, once, and nothing else");
}

/// `note` with the cosignatures of `witnesses` added after its signatures.
fn cosign(note: &str, witnesses: &[&crate::cosignature::CosignatureSigner]) -> String {
    let mut n = signed_note::Note::from_bytes(note.as_bytes()).unwrap();
    let signers: Vec<&dyn signed_note::Signer> = witnesses.iter().map(|w| *w as &dyn signed_note::Signer).collect();
    n.add_sigs(&signers).unwrap();
    String::from_utf8(n.to_bytes()).unwrap()
}

/// A version-2 bundle of the first `size` records of `log`, with `note` as
/// its checkpoint and the tlog-proofs the gateway's Export writes.
fn bundle_v2(log: &AuditLog, size: u64, note: &str) -> AuditBundle {
    let cp = Checkpoint { note: note.to_owned(), ..checkpoint_msg(log, size) };
    let entries = log
        .entries(0, size)
        .unwrap()
        .into_iter()
        .map(|mut e| {
            e.proof = log.inclusion_proof(e.seq, size).unwrap().iter().map(|h| h.to_vec()).collect();
            e.proof_tree_size = size;
            e.tlog_proof = crate::proof::TlogProof::of_entry(&e, note).to_text();
            e
        })
        .collect();
    AuditBundle { version: 2, checkpoint: Some(cp), entries, ..Default::default() }
}

#[test]
fn bundles_against_a_witness_policy_and_their_tlog_proofs() {
    use crate::cosignature::CosignatureSigner;
    use crate::policy::{PolicyError, WitnessPolicy};
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path()).unwrap();
    log.append((0..5).map(record).collect(), 1000).unwrap();
    let note = log.sign_checkpoint(5).unwrap();
    let (a, b, c) = (
        CosignatureSigner::new("w.example/a", &[1; 32]).unwrap().at(1_700_000_000),
        CosignatureSigner::new("w.example/b", &[2; 32]).unwrap().at(1_700_000_060),
        CosignatureSigner::new("w.example/c", &[3; 32]).unwrap().at(1_700_000_120),
    );
    let vkey = log.keys().verifier_key.clone();
    let policy_text = format!(
        "log {vkey}\nwitness a {}\nwitness b {}\nwitness c {}\ngroup two 2 a b c\nquorum two\n",
        a.verifier_key(),
        b.verifier_key(),
        c.verifier_key()
    );
    let policy = WitnessPolicy::parse(policy_text.as_bytes()).unwrap();
    let trust = verify::Trust::new(None, Some(policy.clone())).unwrap();
    assert!(trust.pinned());

    // Quorum met: two of three cosigned; the report names them with their times.
    let good = bundle_v2(&log, 5, &cosign(&note, &[&a, &c]));
    let r = verify::bundle(&good, &trust, &|_, _| {}).unwrap();
    assert_eq!(r.attested.cosigners, vec![("a".to_owned(), 1_700_000_000), ("c".to_owned(), 1_700_000_120)]);
    assert_eq!(r.attested.quorum.as_deref(), Some("2 of (a, b, c)"));
    assert_eq!((r.entries, r.tlog_proofs), (5, 5));
    // The same key given with --key as well agrees with the policy.
    let both = verify::Trust::new(Some(vkey.clone()), Some(policy.clone())).unwrap();
    assert!(verify::bundle(&good, &both, &|_, _| {}).is_ok());

    // Quorum not met: one cosignature.
    let one = bundle_v2(&log, 5, &cosign(&note, &[&b]));
    match verify::bundle(&one, &trust, &|_, _| {}) {
        Err(VerifyError::Policy(PolicyError::Quorum { got, needed, .. })) => {
            assert_eq!((got.as_str(), needed.as_str()), ("b", "2 of (a, b, c)"));
        }
        other => panic!("{other:?}"),
    }
    // Without a policy the same bundle verifies, its key unpinned.
    let r = verify::bundle(&one, &verify::Trust::default(), &|_, _| {}).unwrap();
    assert!(!r.attested.pinned && r.attested.cosigners.is_empty());

    // A bad cosignature of a listed witness: its signature bytes altered.
    let cosigned = cosign(&note, &[&a, &c]);
    let line = cosigned.lines().find(|l| l.starts_with("\u{2014} w.example/c ")).unwrap();
    let sig = line.rsplit(' ').next().unwrap();
    let mut raw = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, sig).unwrap();
    raw[20] ^= 1;
    let bad = cosigned.replace(sig, &base64::Engine::encode(&base64::engine::general_purpose::STANDARD, raw));
    let err = verify::bundle(&bundle_v2(&log, 5, &bad), &trust, &|_, _| {}).unwrap_err();
    assert_eq!(err, VerifyError::Policy(PolicyError::BadSignature("witness c".into())));

    // A pinned key that is not the policy's log key is refused by name.
    let other = tempfile::tempdir().unwrap();
    crate::keys::create(other.path(), "isx.test/audit").unwrap();
    let stranger = crate::keys::load(other.path()).unwrap().verifier_key;
    let e = verify::Trust::new(Some(stranger.clone()), Some(policy.clone())).unwrap_err();
    assert!(matches!(&e, VerifyError::KeyMismatch { key, .. } if *key == stranger), "{e}");
    assert!(e.to_string().contains(&vkey), "{e}");
    // A policy that lists another log refuses this one, naming its origin.
    let foreign = WitnessPolicy::parse(format!("log {stranger}\nquorum none\n").as_bytes()).unwrap();
    let foreign = verify::Trust::new(None, Some(foreign)).unwrap();
    let e = verify::bundle(&good, &foreign, &|_, _| {}).unwrap_err();
    assert!(matches!(e, VerifyError::Policy(PolicyError::UnknownLog { .. }) | VerifyError::UntrustedKey { .. }), "{e}");

    // A version-2 bundle whose tlog-proof is missing or altered fails at that entry.
    let mut missing = good.clone();
    missing.entries[3].tlog_proof.clear();
    assert!(matches!(verify::bundle(&missing, &trust, &|_, _| {}), Err(VerifyError::Entry { seq: 3, .. })));
    let mut altered = good.clone();
    altered.entries[1].tlog_proof = altered.entries[1].tlog_proof.replace("index 1\n", "index 2\n");
    assert!(matches!(verify::bundle(&altered, &trust, &|_, _| {}), Err(VerifyError::Entry { seq: 1, .. })));
    let mut newer = good.clone();
    newer.version = 3;
    assert!(matches!(verify::bundle(&newer, &trust, &|_, _| {}), Err(VerifyError::Shape(_))));
}

#[test]
fn fork_detection_offline() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path()).unwrap();
    log.append((0..9).map(record).collect(), 1000).unwrap();
    // A second log with the same keys and other records: the fork.
    let fork_dir = tempfile::tempdir().unwrap();
    for f in ["audit.key", "audit.pub", "audit-hmac.key"] {
        std::fs::copy(dir.path().join(f), fork_dir.path().join(f)).unwrap();
    }
    let fork = open(fork_dir.path()).unwrap();
    fork.append((0..9).map(|i| record(i + 100)).collect(), 1000).unwrap();
    let trust = verify::Trust::new(Some(log.keys().verifier_key.clone()), None).unwrap();
    let honest = trust.check(&checkpoint_msg(&log, 9)).unwrap().checkpoint;
    let forked = trust.check(&checkpoint_msg(&fork, 9)).unwrap().checkpoint;

    // Same size, different roots, both signed by the trusted key: the fork, named.
    match verify::compare(&honest, "a.json", &forked, "b.json") {
        Err(VerifyError::Forked(fork)) => {
            let verify::Fork { origin, size, first_source, second_source, first, second } = *fork;
            assert_eq!((origin.as_str(), size), ("isx.test/audit", 9));
            assert_eq!((first_source.as_str(), second_source.as_str()), ("a.json", "b.json"));
            assert_eq!(first, hex::encode(honest.root));
            assert_ne!(first, second);
        }
        other => panic!("{other:?}"),
    }
    // The same checkpoint twice, or two sizes, is no fork by itself.
    assert_eq!(verify::compare(&honest, "a", &honest.clone(), "b"), Ok(()));
    let smaller = trust.check(&checkpoint_msg(&fork, 5)).unwrap().checkpoint;
    assert_eq!(verify::compare(&honest, "a", &smaller, "b"), Ok(()));
    // ... but the honest log's leaves give its tree of 5, which the fork's differs from.
    let entries = log.entries(0, 9).unwrap();
    assert_eq!(verify::prefix_root(&entries, 9), Some(honest.root));
    let honest5 = crate::checkpoint::Verified { root: verify::prefix_root(&entries, 5).unwrap(), ..smaller.clone() };
    assert!(matches!(verify::compare(&honest5, "a", &smaller, "b"), Err(VerifyError::Forked(f)) if f.size == 5));
    assert_eq!(verify::prefix_root(&entries[1..], 5), None);
    // Another log's checkpoint is not comparable.
    let other = crate::checkpoint::Verified { origin: "other/audit".into(), ..honest.clone() };
    assert!(matches!(verify::compare(&honest, "a", &other, "b"), Err(VerifyError::DifferentLogs { .. })));
}

#[test]
fn a_scoped_search_returns_only_records_in_scope_and_fills_its_pages() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path()).unwrap();
    // 0..30: a third acted by de-police, a third sent to it, a third neither;
    // and one consultation by fr-police that matched a de-police alert.
    for i in 0..30u64 {
        let r = match i % 3 {
            0 => between("de-police", &["fr-police"]),
            1 => between("fr-police", &["de-police"]),
            _ => between("it-police", &["fr-police"]),
        };
        log.append(vec![r], 1000 + i).unwrap();
    }
    let hit = AuditRecord {
        operation: Operation::Consultation as i32,
        node: "fr-police".into(),
        hits: vec![isx_core::wire::AuditHit { holder: "de-police".into(), ..Default::default() }],
        ..Default::default()
    };
    log.append(vec![hit], 2000).unwrap();
    let scoped = |f: Filter| Filter { scope: Some(crate::scope::Scope::of(["de-police"])), ..f };
    let want: Vec<u64> = (0..30).filter(|i| i % 3 != 2).chain([30]).collect();
    let (all, more) = log.search(&scoped(Filter::default()), 100, None).unwrap();
    assert_eq!((seqs(&all), more), (want.clone(), false));
    // Pages are filled to the limit with what is in scope, and `more` is right.
    let (first, more) = log.search(&scoped(Filter::default()), 5, None).unwrap();
    assert_eq!((seqs(&first), more), (want[..5].to_vec(), true));
    let (last, more) = log.search(&scoped(Filter::default()), 3, Some(want[want.len() - 4])).unwrap();
    assert_eq!((seqs(&last), more), (want[want.len() - 3..].to_vec(), false));
    let (newest, more) = log.search_window(&scoped(Filter::default()), &crate::log::Window::newest(2)).unwrap();
    assert_eq!((seqs(&newest), more), (vec![30, 28], true));
    // A filter naming a node outside the scope finds only what is also in it.
    let it = scoped(Filter { origin: Some("it-police".into()), ..Default::default() });
    assert_eq!(log.search(&it, 100, None).unwrap(), (vec![], false));
    let fr = scoped(Filter { origin: Some("fr-police".into()), ..Default::default() });
    let want_fr: Vec<u64> = (0..30).filter(|i| i % 3 == 1).chain([30]).collect();
    assert_eq!(seqs(&log.search(&fr, 100, None).unwrap().0), want_fr);
}

#[test]
fn withheld_entries_verify_from_their_leaf_hashes_alone() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path()).unwrap();
    log.append((0..5).map(record).collect(), 1000).unwrap();
    log.append((5..10).map(record).collect(), 2000).unwrap();
    prune_at(&log, 1500, 3000);
    log.append((11..14).map(record).collect(), 4000).unwrap();
    let size = log.size();
    let cp = checkpoint_msg(&log, size);
    let verified = verify::checkpoint(&cp, None).unwrap();
    // In scope: node-1's records, and the erasure record (in every scope).
    let scope = crate::scope::Scope::of(["node-1"]);
    let entries: Vec<_> = log.entries(0, size).unwrap().into_iter().map(|e| scope.withhold(e)).collect();
    let withheld = entries.iter().filter(|e| e.withheld).count() as u64;
    assert!(withheld > 0 && entries.iter().any(|e| !e.withheld && !e.pruned));
    assert!(!entries[10].withheld, "the erasure record is in every scope");
    let mut v = LogVerifier::default();
    for e in &entries {
        v.push(e).unwrap();
    }
    v.finish(&verified).expect("the root from leaf hashes, the pruned prefix covered");
    assert_eq!((v.pruned, v.withheld, v.bodies), (5, withheld, size - 5 - withheld));

    // A withheld entry that still carries its body or record is refused.
    let w = entries.iter().position(|e| e.withheld).unwrap();
    let mut bad = entries[w].clone();
    bad.body = log.entry(w as u64).unwrap().body;
    assert!(
        matches!(verify::entry(&bad), Err(VerifyError::Entry { message, .. }) if message.contains("withheld entry carries a body"))
    );
    let bad = isx_core::wire::AuditEntry { pruned: true, ..entries[w].clone() };
    assert!(verify::entry(&bad).is_err());
    // A different leaf hash for a withheld entry breaks the root.
    let mut forged = entries.clone();
    forged[w].leaf_hash = vec![7; 32];
    let mut v = LogVerifier::default();
    forged.iter().for_each(|e| v.push(e).unwrap());
    assert_eq!(v.finish(&verified), Err(VerifyError::Root { size }));

    // A bundle with withheld entries verifies offline, each with its tlog-proof.
    let mut bundle = bundle_v2(&log, size, &cp.note);
    for e in bundle.entries.iter_mut() {
        *e = scope.withhold(e.clone());
        e.tlog_proof = crate::proof::TlogProof::of_entry(e, &cp.note).to_text();
    }
    let report = verify::bundle(&bundle, &verify::Trust::default(), &|_, _| {}).unwrap();
    assert_eq!((report.entries, report.withheld, report.tlog_proofs), (size, withheld, size));
    assert!(!bundle.entries[w].tlog_proof.contains("extra "), "no bytes for a withheld record");
}
