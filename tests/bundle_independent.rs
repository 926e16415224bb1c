//! Bundles checked by a second verifier written from the C2SP specs
//! (`support/independent.rs`, no isx crate), side by side with isx's own
//! `isx_audit::verify::bundle`, on a bundle exported from a real gateway
//! over mTLS: as the gateway signed it, and cosigned here by test
//! witnesses. And the test vectors of `docs/bundle-format.md`, kept in
//! `tests/data/bundle/`, recomputed by both implementations and compared
//! with the files and the document (`ISX_BLESS=1` rewrites the files).

#[path = "support/independent.rs"]
mod independent;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use isx_audit::cosignature::CosignatureSigner;
use isx_audit::verify::{self, Trust};
use isx_core::wire::{AuditBundle, AuditRecord, Operation};

fn repo() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn the_independent_verifier_uses_no_isx_crate() {
    let src = std::fs::read_to_string(repo().join("tests/support/independent.rs")).unwrap();
    for (n, line) in src.lines().enumerate() {
        let code = line.split("//").next().unwrap_or_default();
        for banned in ["isx", "tlog_tiles", "signed_note", "crate::", "super::"] {
            assert!(!code.contains(banned), "independent.rs:{}: uses {banned}: {line}", n + 1);
        }
    }
}

/// `note` with cosignatures of `witnesses` added after its signatures.
fn cosign(note: &str, witnesses: &[&CosignatureSigner]) -> String {
    let mut n = signed_note::Note::from_bytes(note.as_bytes()).unwrap();
    let signers: Vec<&dyn signed_note::Signer> = witnesses.iter().map(|w| *w as &dyn signed_note::Signer).collect();
    n.add_sigs(&signers).unwrap();
    String::from_utf8(n.to_bytes()).unwrap()
}

/// `bundle` with its checkpoint note replaced, in the checkpoint and in
/// every tlog-proof (which ends with the note).
fn with_note(bundle: &AuditBundle, note: &str) -> AuditBundle {
    let mut b = bundle.clone();
    let old = b.checkpoint.as_ref().unwrap().note.clone();
    b.checkpoint.as_mut().unwrap().note = note.to_owned();
    for e in &mut b.entries {
        let head = e.tlog_proof.strip_suffix(old.as_str()).expect("a tlog-proof ends with the checkpoint note");
        e.tlog_proof = format!("{head}{note}");
    }
    b
}

/// What both verifiers say of `bundle`: isx's verdict, and the
/// independent one over the tlog-proof texts alone (the first error).
fn both(
    bundle: &AuditBundle,
    policy_text: &str,
) -> (Result<verify::BundleReport, verify::VerifyError>, Result<Vec<independent::Checked>, String>) {
    let policy = isx_audit::policy::WitnessPolicy::parse(policy_text.as_bytes()).unwrap();
    let ours = verify::bundle(bundle, &Trust::new(None, Some(policy)).unwrap(), &|_, _| {});
    let theirs_policy = independent::Policy::parse(policy_text).unwrap();
    // The independent side reads the bundle file as JSON (the format on disk).
    let json = isx_core::json::to_json_value(bundle);
    let theirs = json["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| independent::verify(e["tlog_proof"].as_str().unwrap_or_default(), &theirs_policy, None))
        .collect();
    (ours, theirs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_bundle_verifies_with_both_verifiers_and_both_catch_every_tampering() {
    let topo = isx_testkit::Topology::start(isx_testkit::TopologySpec::default_agencies()).await.unwrap();
    let alert = isx_testkit::samples::migrant_smuggling("de-police", &["fr-police"]);
    topo.client("de-police").await.unwrap().publish(alert).await.unwrap();
    let auditor = topo.client("auditor").await.unwrap();
    let bundle = isx_node::audit::export(
        &auditor,
        &isx_testkit::testkit_reason(),
        "bundle test",
        isx_core::wire::SearchRequest::default(),
    )
    .await
    .unwrap();
    topo.shutdown().await;
    let vkey = bundle.checkpoint.as_ref().unwrap().verifier_key.clone();
    assert_eq!(bundle.version, 2);
    assert!(bundle.entries.len() >= 2, "a publish and its records");

    // As the gateway signed it: the log's signature is all a `quorum none` policy asks.
    let log_only = format!("log {vkey}\nquorum none\n");
    let (ours, theirs) = both(&bundle, &log_only);
    let ours = ours.unwrap();
    let theirs = theirs.unwrap();
    assert_eq!(ours.tlog_proofs, bundle.entries.len() as u64);
    for (e, t) in bundle.entries.iter().zip(&theirs) {
        assert_eq!(t.index, e.seq);
        assert_eq!(t.record, e.body, "the proof's extra data is the record's stored bytes");
        assert_eq!((t.size, t.root), (ours.checkpoint.size, ours.checkpoint.root));
        let record: AuditRecord = prost::Message::decode(t.record.as_slice()).unwrap();
        assert_eq!(record.seq, t.index);
    }

    // Cosigned here by two of three test witnesses, at known times.
    let w = |name: &str, seed: u8, t: u64| CosignatureSigner::new(name, &[seed; 32]).unwrap().at(t);
    let (a, b, c) = (w("w.example/a", 1, 1_767_225_600), w("w.example/b", 2, 1_767_225_660), w("w.example/c", 3, 0));
    let policy = format!(
        "log {vkey}\nwitness a {}\nwitness b {}\nwitness c {}\ngroup two 2 a b c\nquorum two\n",
        a.verifier_key(),
        b.verifier_key(),
        c.verifier_key()
    );
    let note = &bundle.checkpoint.as_ref().unwrap().note;
    let cosigned = with_note(&bundle, &cosign(note, &[&a, &b]));
    let (ours, theirs) = both(&cosigned, &policy);
    let want = vec![("a".to_owned(), 1_767_225_600), ("b".to_owned(), 1_767_225_660)];
    assert_eq!(ours.unwrap().attested.cosigners, want);
    for t in theirs.unwrap() {
        assert_eq!(t.cosigners, want);
    }

    // Every tampering fails both verifiers.
    let flip_sig = |note: &str, name: &str| {
        let line = note.lines().find(|l| l.starts_with(&format!("\u{2014} {name} "))).unwrap();
        let sig = line.rsplit(' ').next().unwrap();
        let mut raw = B64.decode(sig).unwrap();
        raw[40] ^= 1;
        note.replace(sig, &B64.encode(raw))
    };
    let cases: Vec<(&str, AuditBundle, &str)> = vec![
        ("quorum not met", with_note(&bundle, &cosign(note, &[&a])), "quorum"),
        ("no cosignature", bundle.clone(), "quorum"),
        ("bad cosignature", with_note(&bundle, &flip_sig(&cosign(note, &[&a, &b]), "w.example/b")), "cosignature of b"),
        ("bad log signature", with_note(&bundle, &flip_sig(&cosign(note, &[&a, &b]), &ours_origin(&vkey))), "log"),
        (
            "altered record",
            {
                let mut t = cosigned.clone();
                let e = &mut t.entries[1];
                e.body[3] ^= 1;
                e.tlog_proof = e.tlog_proof.replace(&B64.encode(&cosigned.entries[1].body), &B64.encode(&e.body));
                t
            },
            "inclusion proof of 1",
        ),
        (
            "swapped proof",
            {
                let mut t = cosigned.clone();
                let (p0, p1) = (t.entries[0].proof.clone(), t.entries[1].proof.clone());
                t.entries[0].proof = p1.clone();
                let (h0, h1) = (B64.encode(&p0[0]), B64.encode(&p1[0]));
                t.entries[0].tlog_proof =
                    t.entries[0].tlog_proof.replacen(&format!("\n{h0}\n"), &format!("\n{h1}\n"), 1);
                t
            },
            "inclusion proof of 0",
        ),
    ];
    for (what, tampered, theirs_says) in cases {
        let (ours, theirs) = both(&tampered, &policy);
        assert!(ours.is_err(), "{what}: isx accepted it");
        let e = theirs.expect_err(what);
        assert!(e.contains(theirs_says), "{what}: the independent verifier says {e}");
    }
}

/// The log's origin: the vkey's name.
fn ours_origin(vkey: &str) -> String {
    vkey.split('+').next().unwrap().to_owned()
}

/// The hashing vectors: three records appended by isx at a fixed time to a
/// log with a fixed key, their hashes, proofs and a cosigned tlog-proof.
fn vectors() -> Vec<(String, String)> {
    use ed25519_dalek::SigningKey;
    use sha2::{Digest, Sha256};
    let dir = tempfile::tempdir().unwrap();
    // A fixed log key, written as `isx pki init` writes audit.key and audit.pub.
    let origin = "example.org/isx/audit";
    let seed = [7u8; 32];
    let public = SigningKey::from_bytes(&seed).verifying_key().to_bytes();
    let typed = |b: &[u8]| [&[1u8][..], b].concat();
    let id = &Sha256::digest([origin.as_bytes(), b"\n", &typed(&public)].concat())[..4];
    let vkey = format!("{origin}+{}+{}", hex::encode(id), B64.encode(typed(&public)));
    let skey = format!("PRIVATE+KEY+{origin}+{}+{}", hex::encode(id), B64.encode(typed(&seed)));
    isx_store::write_private(&dir.path().join("audit.key"), format!("{skey}\n").as_bytes()).unwrap();
    std::fs::write(dir.path().join("audit.pub"), format!("{vkey}\n")).unwrap();
    isx_store::write_private(&dir.path().join("audit-hmac.key"), format!("{}\n", "11".repeat(32)).as_bytes()).unwrap();
    let keys = isx_audit::keys::load(dir.path()).unwrap();
    assert_eq!(keys.verifier_key, vkey);
    let db = sled::Config::new().temporary(true).open().unwrap();
    let (log, _) = isx_audit::AuditLog::open(&db, keys, &|_, _| {}).unwrap();
    let records = (0..3)
        .map(|i| AuditRecord {
            operation: Operation::LogRead as i32,
            node: "auditor".into(),
            detail: format!("test vector {i}"),
            ..Default::default()
        })
        .collect();
    // 2026-01-01T00:00:00Z
    log.append(records, 1_767_225_600_000).unwrap();
    let entries = log.entries(0, 3).unwrap();
    let note = log.sign_checkpoint(3).unwrap();
    let witness = CosignatureSigner::new("witness.example.org/w1", &[8; 32]).unwrap().at(1_767_225_660);
    let note = cosign(&note, &[&witness]);
    let mut e1 = entries[1].clone();
    e1.proof = log.inclusion_proof(1, 3).unwrap().iter().map(|h| h.to_vec()).collect();
    e1.proof_tree_size = 3;
    let proof = isx_audit::proof::TlogProof::of_entry(&e1, &note).to_text();
    let leaf: Vec<[u8; 32]> = entries.iter().map(|e| e.leaf_hash.as_slice().try_into().unwrap()).collect();
    let mut root = verify::RootBuilder::default();
    leaf.iter().for_each(|l| root.push(*l));
    let root = root.root();

    // The independent implementation agrees on every hash and the proof.
    for (e, l) in entries.iter().zip(&leaf) {
        assert_eq!(independent::leaf_hash(&e.body), *l);
    }
    assert_eq!(independent::tree_root(&leaf), root);
    assert_eq!(log.root(3).unwrap(), root);
    let policy = format!("log {vkey}\nwitness w1 {}\nquorum w1\n", witness.verifier_key());
    let checked = independent::verify(&proof, &independent::Policy::parse(&policy).unwrap(), None).unwrap();
    assert_eq!((checked.index, checked.record.as_slice()), (1, entries[1].body.as_slice()));
    assert_eq!(checked.cosigners, vec![("w1".to_owned(), 1_767_225_660)]);

    let node01 = independent::node_hash(&leaf[0], &leaf[1]);
    let proof0: Vec<String> = log.inclusion_proof(0, 3).unwrap().iter().map(hex::encode).collect();
    let proof2: Vec<String> = log.inclusion_proof(2, 3).unwrap().iter().map(hex::encode).collect();
    assert_eq!(proof0, vec![hex::encode(leaf[1]), hex::encode(leaf[2])]);
    assert_eq!(proof2, vec![hex::encode(node01)]);
    let mut files: Vec<(String, String)> = vec![];
    for (i, e) in entries.iter().enumerate() {
        files.push((format!("record{i}.hex"), format!("{}\n", hex::encode(&e.body))));
        files.push((format!("leaf{i}.hex"), format!("{}\n", hex::encode(leaf[i]))));
    }
    files.push(("node01.hex".into(), format!("{}\n", hex::encode(node01))));
    files.push(("root3.hex".into(), format!("{}\n", hex::encode(root))));
    files.push(("inclusion0.hex".into(), format!("{}\n", proof0.join("\n"))));
    files.push(("inclusion2.hex".into(), format!("{}\n", proof2.join("\n"))));
    files.push(("audit.pub".into(), format!("{vkey}\n")));
    files.push(("witness.policy".into(), policy));
    files.push(("record1.tlog-proof".into(), proof));
    files
}

#[test]
fn the_test_vectors_match_both_implementations_and_the_docs() {
    let data = repo().join("tests/data/bundle");
    let doc = std::fs::read_to_string(repo().join("docs/bundle-format.md")).unwrap();
    let bless = std::env::var_os("ISX_BLESS").is_some();
    for (name, want) in vectors() {
        let path = data.join(&name);
        if bless {
            std::fs::create_dir_all(&data).unwrap();
            std::fs::write(&path, &want).unwrap();
        }
        let have = std::fs::read_to_string(&path).unwrap_or_default();
        assert_eq!(have, want, "{} differs from the implementation (ISX_BLESS=1 rewrites it)", path.display());
        // Every vector is quoted in the document, line by line.
        for line in want.lines().filter(|l| !l.is_empty() && !bless) {
            assert!(doc.contains(line), "docs/bundle-format.md does not quote {name}: {line}");
        }
    }
}
