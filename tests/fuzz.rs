//! Hostile input, property-tested (proptest runs on stable, so CI runs every
//! target; cargo-fuzz would need nightly). Each target feeds random and
//! mutated input to a parser or verifier and checks that it answers with an
//! error, never a panic, and never accepts what it must refuse.
//!
//! CI runs `PROPTEST_CASES` cases per target (default 256). For a longer run:
//! `PROPTEST_CASES=20000 cargo test -p isx-system-tests --test fuzz --release`.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use isx_core::NodeInfo;
use isx_core::json::{from_json, to_json};
use isx_core::validate::{TextLimits, validate_alert};
use isx_core::wire::{Alert, AuditBundle, AuditEntry, AuditRecord, LookupIdentifier, SearchRequest};
use isx_policy::PolicyError;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
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
            let b = isx_node::audit::export(
                &auditor,
                &isx_testkit::testkit_reason(),
                "fuzz test",
                SearchRequest::default(),
            )
            .await
            .unwrap();
            topo.shutdown().await;
            b
        })
    })
}

/// The nodes of the default topology, as the gateway registers them.
fn policy_nodes() -> Vec<NodeInfo> {
    isx_testkit::TopologySpec::default_agencies()
        .nodes
        .iter()
        .map(|n| NodeInfo {
            id: n.id.clone(),
            kind: n.kind,
            country: n.country.clone(),
            roles: n.kind.default_roles(),
            name: n.name.clone(),
        })
        .collect()
}

/// Asks `engine` everything the gateway asks about the sample alerts (each
/// candidate's level, the level after a grant, the lookup answer) and checks
/// that every answer is well formed: one of the four levels, a view exactly
/// when something is disclosed, and at least one deciding policy with its reason.
fn policy_decides_every_sample(engine: isx_policy::PolicyEngine) -> Result<(), TestCaseError> {
    use isx_core::wire::DisclosureLevel::{Denied, Full, HitOnly, Redacted};
    let disclosure = isx_policy::Disclosure::new(std::sync::Arc::new(engine), Default::default());
    let nodes = policy_nodes();
    let well_formed = |d: &isx_policy::Decision, what: &str| -> Result<(), TestCaseError> {
        prop_assert!(matches!(d.level, Full | Redacted | HitOnly | Denied), "{}: level {:?}", what, d.level);
        prop_assert_eq!(d.view.is_some(), d.level != Denied, "{}: a view exactly when disclosed", what);
        prop_assert!(!d.policy_ids.is_empty(), "{}: no deciding policy", what);
        prop_assert_eq!(d.reasons.len(), d.policy_ids.len(), "{}: a reason per deciding policy", what);
        Ok(())
    };
    let officer = "officer@fuzz";
    for alert in [
        isx_testkit::samples::foreign_fighter("de-police", &[]),
        isx_testkit::samples::migrant_smuggling("it-police", &["fr-police", "frontex"]),
        isx_testkit::samples::trafficking_victim("fr-police", &[]),
    ] {
        let origin = nodes.iter().find(|n| n.id.as_str() == alert.origin);
        let candidates = isx_policy::candidates(&alert, &nodes);
        prop_assert!(!candidates.is_empty());
        let refs: Vec<&NodeInfo> = candidates.iter().map(|(n, _)| *n).collect();
        let prepared = disclosure.prepare(&alert, origin, &refs);
        for (node, addressed) in candidates {
            let what = format!("{} to {}", alert.origin, node.id);
            let relation = isx_policy::Relation::routed(addressed);
            well_formed(&disclosure.decide(&alert, &prepared, node, relation, officer), &what)?;
            well_formed(
                &disclosure.granted(&alert, origin, node, officer, &isx_policy::Related::default()),
                &format!("{what} after a grant"),
            )?;
            let question = isx_policy::LookupQuestion {
                purpose: alert.purpose.clone(),
                officer: officer.into(),
                data_types: vec!["document".into()],
            };
            let (_, ids) = disclosure.lookup(&alert, origin, node, &question);
            prop_assert!(!ids.is_empty(), "{}: a lookup answer without a deciding policy", what);
        }
    }
    Ok(())
}

/// Checks a load error of the directory `dir` whose file `mutated` was
/// mutated: the message starts with the file it names (and a line in it, for
/// the errors that carry one); that file is the mutated one, or for a
/// mutated schema a policy file that no longer validates against it, or for
/// a duplicate `@id` the other file holding it.
fn policy_error_names_the_file(e: &PolicyError, dir: &Path, mutated: &Path) -> Result<(), TestCaseError> {
    let message = e.to_string();
    let schema_mutated = mutated.extension().is_some_and(|x| x == "cedarschema");
    let (file, line) = match e {
        PolicyError::Io { path, .. } => (path, None),
        PolicyError::SchemaMismatch { file, .. } => (file, None),
        PolicyError::SchemaSyntax { file, line, .. }
        | PolicyError::Syntax { file, line, .. }
        | PolicyError::MissingAnnotation { file, line, .. }
        | PolicyError::Template { file, line }
        | PolicyError::Validation { file, line, .. } => (file, Some(*line)),
        PolicyError::DuplicateId { file, line, first, .. } => {
            let named = file == mutated || first.starts_with(&format!("{}:", mutated.display()));
            prop_assert!(named, "a duplicate @id names {}: {}", mutated.display(), message);
            (file, Some(*line))
        }
        other => return Err(TestCaseError::fail(format!("unexpected error for one mutated file: {other}"))),
    };
    let expected = file == mutated
        || matches!(e, PolicyError::DuplicateId { .. })
        || (schema_mutated && matches!(e, PolicyError::Validation { .. }) && file.parent() == Some(dir));
    prop_assert!(
        expected,
        "the error names {} instead of the mutated {}: {}",
        file.display(),
        mutated.display(),
        message
    );
    match line {
        None => prop_assert!(message.starts_with(&format!("{}: ", file.display())), "{}", message),
        Some(line) => {
            prop_assert!(message.starts_with(&format!("{}:{line}: ", file.display())), "{}", message);
            let lines = String::from_utf8_lossy(&std::fs::read(file).unwrap()).lines().count();
            prop_assert!((1..=lines + 1).contains(&line), "line {} of a {}-line file: {}", line, lines, message);
        }
    }
    Ok(())
}

#[test]
fn the_default_policy_directory_loads_and_decides_every_sample() {
    let dir = tempfile::tempdir().unwrap();
    isx_policy::defaults::write_to(dir.path()).unwrap();
    let engine = isx_policy::PolicyEngine::load(dir.path()).expect("the default policy loads");
    policy_decides_every_sample(engine).unwrap();
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
        let verified = isx_audit::verify::bundle(original, &isx_audit::verify::Trust::default(), &quiet).is_ok();
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
        let refused = isx_audit::verify::bundle(&b, &isx_audit::verify::Trust::default(), &quiet).is_err();
        prop_assert!(refused, "a tampered bundle verified");
    }

    /// Policy directories: a mutated policy file either fails to load with an
    /// error that names that file (and a line in it where Cedar gives one), or
    /// loads into an engine that decides every sample alert without panicking.
    #[test]
    fn policy_loading(
        edits in prop::collection::vec((any::<usize>(), any::<u8>()), 1..8),
        which in 0usize..isx_policy::defaults::FILES.len(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        isx_policy::defaults::write_to(dir.path()).unwrap();
        let path = dir.path().join(isx_policy::defaults::FILES[which].0);
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, mutate(&text, &edits)).unwrap();
        match isx_policy::PolicyEngine::load(dir.path()) {
            Ok(engine) => policy_decides_every_sample(engine)?,
            Err(e) => policy_error_names_the_file(&e, dir.path(), &path)?,
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
