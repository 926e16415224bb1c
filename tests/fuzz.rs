//! Hostile input, property-tested (proptest runs on stable, so CI runs every
//! target; cargo-fuzz would need nightly). Each target feeds random and
//! mutated input to a parser or verifier and checks that it answers with an
//! error, never a panic, and never accepts what it must refuse.
//!
//! CI runs `PROPTEST_CASES` cases per target (default 256). For a longer run:
//! `PROPTEST_CASES=20000 cargo test -p isx-system-tests --test fuzz --release`.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use isx_core::json::{from_json, to_json};
use isx_core::validate::{TextLimits, validate_alert};
use isx_core::wire::{Alert, AuditBundle, AuditEntry, AuditRecord, LookupIdentifier, SearchRequest};
use proptest::prelude::*;
use prost::Message;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(256)
}

fn sample_json() -> &'static str {
    static TEXT: OnceLock<String> = OnceLock::new();
    TEXT.get_or_init(|| std::fs::read_to_string(repo().join("deploy/local/alerts/trafficking-victim.json")).unwrap())
}

/// Applies byte edits (position, byte) to `text`; positions wrap.
fn mutate(text: &str, edits: &[(usize, u8)]) -> Vec<u8> {
    let mut bytes = text.as_bytes().to_vec();
    for (pos, b) in edits {
        if bytes.is_empty() {
            break;
        }
        let i = pos % bytes.len();
        match b % 3 {
            0 => bytes[i] = *b,
            1 => {
                bytes.remove(i);
            }
            _ => bytes.insert(i, *b),
        }
    }
    bytes
}

/// A real audit bundle from a gateway, built once.
fn bundle() -> &'static AuditBundle {
    static BUNDLE: OnceLock<AuditBundle> = OnceLock::new();
    BUNDLE.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(async {
            let topo = isx_testkit::Topology::start(isx_testkit::TopologySpec::default_agencies()).await.unwrap();
            let de = topo.client("de-police").await.unwrap();
            for a in [
                isx_testkit::samples::foreign_fighter("de-police", &["fr-police"]),
                isx_testkit::samples::migrant_smuggling("de-police", &[]),
            ] {
                de.publish(a).await.unwrap();
            }
            let auditor = topo.client("auditor").await.unwrap();
            let b = isx_node::audit::export(&auditor, SearchRequest::default()).await.unwrap();
            topo.shutdown().await;
            b
        })
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    /// Alert JSON: arbitrary text and mutations of a real alert file never
    /// panic the parser; whatever parses never panics validation, and
    /// round-trips through the canonical JSON unchanged.
    #[test]
    fn alert_json(edits in prop::collection::vec((any::<usize>(), any::<u8>()), 0..12), noise in ".{0,200}") {
        for input in [mutate(sample_json(), &edits), noise.into_bytes()] {
            let Ok(text) = String::from_utf8(input) else { continue };
            if let Ok(alert) = from_json::<Alert>(&text, "fuzz") {
                let _ = validate_alert(&alert, 1_800_000_000_000, &TextLimits::default());
                let back: Alert = from_json(&to_json(&alert), "round trip").expect("canonical JSON parses");
                prop_assert_eq!(back, alert);
            }
        }
    }

    /// Alerts from arbitrary protobuf bytes: decoding and validation never panic.
    #[test]
    fn alert_protobuf(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(alert) = Alert::decode(bytes.as_slice()) {
            let _ = validate_alert(&alert, 1_800_000_000_000, &TextLimits::default());
            let _ = isx_core::identifiers::of_alert(&alert);
            let _ = isx_core::redaction::redact(&alert, &isx_core::redaction::RedactionProfile::default());
        }
    }

    /// Lookup identifiers: any combination is normalised or refused by field.
    #[test]
    fn lookup_identifiers(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        if let Ok(req) = isx_core::wire::LookupRequest::decode(bytes.as_slice()) {
            let ids: Vec<LookupIdentifier> = req.identifiers;
            if let Err(e) = isx_core::identifiers::of_lookup(&ids, 64) {
                prop_assert!(!e.violations.is_empty());
            }
        }
    }

    /// Audit entries: random bodies and hashes are refused, never accepted.
    #[test]
    fn audit_entries(body in prop::collection::vec(any::<u8>(), 0..300), hash in prop::collection::vec(any::<u8>(), 0..40)) {
        let _ = AuditRecord::decode(body.as_slice());
        let e = AuditEntry { seq: 0, body, leaf_hash: hash, ..Default::default() };
        prop_assert!(isx_audit::verify::entry(&e).is_err());
    }

    /// Bundles: one flipped bit anywhere (a body, a leaf hash, a proof, the
    /// decoded record, the checkpoint) makes verification fail.
    #[test]
    fn bundle_tampering(entry in any::<usize>(), at in any::<usize>(), bit in 0u8..8, what in 0u8..5) {
        let original = bundle();
        let quiet = |_: u64, _: u64| ();
        let verified = isx_audit::verify::bundle(original, None, &quiet).is_ok();
        prop_assert!(verified, "the untouched bundle verifies");
        let mut b = original.clone();
        let n = b.entries.len();
        let e = &mut b.entries[entry % n];
        let flip = |bytes: &mut Vec<u8>| {
            if !bytes.is_empty() {
                let i = at % bytes.len();
                bytes[i] ^= 1 << bit;
            }
        };
        match what {
            0 => flip(&mut e.body),
            1 => flip(&mut e.leaf_hash),
            2 => {
                if e.proof.is_empty() {
                    flip(&mut e.body)
                } else {
                    let k = at % e.proof.len();
                    flip(&mut e.proof[k])
                }
            }
            3 => {
                let r = e.record.as_mut().unwrap();
                r.officer.push('x');
            }
            _ => {
                let cp = b.checkpoint.as_mut().unwrap();
                let mut note = std::mem::take(&mut cp.note).into_bytes();
                flip(&mut note);
                cp.note = String::from_utf8_lossy(&note).into_owned();
            }
        }
        let refused = isx_audit::verify::bundle(&b, None, &quiet).is_err();
        prop_assert!(refused, "a tampered bundle verified");
    }

    /// Policy directories: mutated policy files load or fail with a message, never panic.
    #[test]
    fn policy_loading(edits in prop::collection::vec((any::<usize>(), any::<u8>()), 1..8), which in 0usize..4) {
        let dir = tempfile::tempdir().unwrap();
        isx_policy::defaults::write_to(dir.path()).unwrap();
        let names = ["schema.cedarschema", "labels.cedar", "agencies.cedar", "lookup.cedar"];
        let path = dir.path().join(names[which]);
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, mutate(&text, &edits)).unwrap();
        if let Err(e) = isx_policy::PolicyEngine::load(dir.path()) {
            prop_assert!(!e.to_string().is_empty());
        }
    }

    /// Scenario files: mutated scenarios load or fail naming a line, never panic.
    #[test]
    fn scenario_parsing(edits in prop::collection::vec((any::<usize>(), any::<u8>()), 1..8)) {
        let source = isx_testkit::demo::embedded();
        let path = Path::new(isx_testkit::demo::SHOWCASE);
        let text = isx_testkit::scenario::Source::read(&source, path).unwrap();
        let Ok(mutated) = String::from_utf8(mutate(&text, &edits)) else { return Ok(()) };
        let mut files = source.0.clone();
        let leaked: &'static str = Box::leak(mutated.into_boxed_str());
        files.insert(PathBuf::from(isx_testkit::demo::SHOWCASE), leaked);
        if let Err(e) = isx_testkit::scenario::Scenario::load_from(path, &isx_testkit::scenario::Embedded(files)) {
            let message = e.to_string();
            prop_assert!(message.contains("01-showcase.toml"), "{}", message);
        }
    }
}
