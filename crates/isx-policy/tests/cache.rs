//! The decision cache never changes a decision: over random valid policy sets
//! (the default schema, policies from a grammar over its attributes) and
//! random alerts, nodes and contexts, [`Disclosure::decide`] with the cache
//! (asked twice, and across inputs that differ in one field, so that they
//! share a key whenever that field is not keyed) equals the uncached decision.
//!
//! Each case loads one policy set and decides a base input and variants of it
//! that each take one field from another random input. A key that leaves out a
//! field some policy reads serves the base's answer to a variant that differs
//! only in that field, and the comparison fails.
//!
//! `PROPTEST_CASES` sets the number of policy sets (default 64).

use std::sync::Arc;

use isx_core::redaction::RedactionProfile;
use isx_core::wire::{Alert, AlertObject, Labels, SpecialCategoryData, Subject};
use isx_core::{NodeId, NodeInfo, NodeKind, Role};
use isx_policy::{Disclosure, PolicyEngine, Relation};
use proptest::prelude::*;
use proptest::sample::{select, subsequence};
use proptest::test_runner::TestCaseError;

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(64)
}

const NODE_IDS: &[&str] = &["de-police", "fr-police", "it-police", "europol", "frontex", "auditor"];
const KINDS: &[NodeKind] = &[NodeKind::National, NodeKind::Europol, NodeKind::Frontex, NodeKind::Auditor];
const COUNTRIES: &[&str] = &["DE", "FR", "EU"];
const ROLES: &[Role] = &[Role::Publish, Role::Subscribe, Role::Lookup, Role::Audit];
const TAGS: &[&str] = &["t1", "t2"];
const PURPOSES: &[&str] = &["investigation", "intelligence", "prevention"];
const OFFICERS: &[&str] = &["ok", "rogue", "other"];
/// The alert ids the inputs use (one of them named by some policies).
const ALERT_IDS: &[&str] = &["01JDQ3B2C4D6E8F0G2H4J6K8M0", "01JDQ3B2C4D6E8F0G2H4J6K8M1"];

/// `Alert` string attributes and the values policies compare them with
/// (those the inputs produce, and one they never do).
const ALERT_STRINGS: &[(&str, &[&str])] = &[
    ("action", &["arrest", "missing", "inform"]),
    ("pap", &["", "clear", "red"]),
    ("source_reliability", &["a", "b", "x"]),
    ("origin", &["de-police", "fr-police", "europol"]),
    ("origin_country", &["", "DE", "EU"]),
];
/// `Alert` attributes of an enumerated entity type, the type, and the values
/// policies compare them with (`Tlp::"red"`, ...).
const ALERT_ENUMS: &[(&str, &str, &[&str])] = &[
    ("category", "Category", &["drug_trafficking", "migrant_smuggling", "terrorism", "document_fraud"]),
    ("tlp", "Tlp", &["clear", "amber", "red"]),
    ("handling_code", "HandlingCode", &["h0", "h2", "h3"]),
];
const ALERT_BOOLS: &[&str] = &["has_special_categories", "has_minor", "minor_not_victim_or_missing", "forwarded"];
const ALERT_LONGS: &[&str] = &["info_reliability", "hops", "subject_count", "object_count"];
const COMPARISONS: &[&str] = &["<", "<=", "==", ">", ">="];

fn quoted(values: &'static [&'static str]) -> impl Strategy<Value = String> {
    select(values).prop_map(|v| format!("\"{v}\""))
}

/// `context` compared as a whole; it validates only where the context is a `DisclosureContext`.
const CONTEXT_RECORD: &str = "context == {\"purpose\": \"investigation\", \"officer\": \"ok\", \"addressed\": false, \"broadcast\": true, \"granted\": false, \"new_recipient\": false, \"onward_allowed\": false, \"overlaps_restricted\": false}";

/// For each attribute and context field isx supplies, a condition on it
/// alone (30 in all; 27 outside the disclosure actions), as Cedar text.
fn field_atoms(disclosure: bool) -> Vec<BoxedStrategy<String>> {
    let mut atoms = vec![
        select(KINDS).prop_map(|k| format!("principal.kind == NodeKind::\"{}\"", k.as_str())).boxed(),
        quoted(COUNTRIES).prop_map(|c| format!("principal.country == {c}")).boxed(),
        select(ROLES).prop_map(|r| format!("principal.roles.contains(\"{}\")", r.as_str())).boxed(),
    ];
    for (name, values) in ALERT_STRINGS {
        atoms.push(quoted(values).prop_map(move |v| format!("resource.{name} == {v}")).boxed());
    }
    for (name, type_name, values) in ALERT_ENUMS {
        atoms.push(quoted(values).prop_map(move |v| format!("resource.{name} == {type_name}::{v}")).boxed());
    }
    // Optional: absent when the origin is not registered.
    atoms.push(
        select(KINDS)
            .prop_map(|k| format!("(resource has origin_kind && resource.origin_kind == NodeKind::\"{}\")", k.as_str()))
            .boxed(),
    );
    for name in ALERT_BOOLS {
        atoms.push(Just(format!("resource.{name}")).boxed());
    }
    for name in ALERT_LONGS {
        atoms.push((select(COMPARISONS), 0i64..4).prop_map(move |(op, n)| format!("resource.{name} {op} {n}")).boxed());
    }
    atoms.push(quoted(NODE_IDS).prop_map(|n| format!("resource.addressees.contains({n})")).boxed());
    atoms.push(quoted(TAGS).prop_map(|t| format!("resource.tags.contains({t})")).boxed());
    for name in ["addressed", "broadcast", "granted"] {
        atoms.push(Just(format!("context.{name}")).boxed());
    }
    // Only the disclosure actions' context has these.
    if disclosure {
        for name in ["new_recipient", "onward_allowed", "overlaps_restricted"] {
            atoms.push(Just(format!("context.{name}")).boxed());
        }
    }
    atoms.push(quoted(OFFICERS).prop_map(|o| format!("context.officer == {o}")).boxed());
    atoms.push(select(&["inv", "int", "pre", "x"][..]).prop_map(|p| format!("context.purpose like \"{p}*\"")).boxed());
    atoms
}

/// One condition, as Cedar text: on one field, or (rarely) a construct the
/// key derivation treats conservatively. `disclosure`: the policy applies to
/// the disclosure actions only.
fn atom(disclosure: bool) -> impl Strategy<Value = String> {
    let record = if disclosure { CONTEXT_RECORD } else { "context has broadcast" };
    prop_oneof![
        60 => proptest::strategy::Union::new(field_atoms(disclosure)),
        // Keyed on all of a variable ...
        2 => quoted(NODE_IDS).prop_map(|n| format!("principal == Node::{n}")),
        2 => Just("context has officer".to_owned()),
        2 => Just(record.to_owned()),
        // ... or the cache off.
        1 => Just("(if context.granted then context else context).officer == \"rogue\"".to_owned()),
        1 => quoted(ALERT_IDS).prop_map(|a| format!("resource == Alert::{a}")),
        1 => quoted(NODE_IDS).prop_map(|n| format!("Node::{n}.kind == NodeKind::\"national\"")),
    ]
}

fn condition(disclosure: bool) -> impl Strategy<Value = String> {
    atom(disclosure).prop_recursive(1, 4, 2, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a} && {b})")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a} || {b})")),
            inner.prop_map(|a| format!("!({a})")),
        ]
    })
}

const ACTION_SCOPES: &[&str] = &[
    "action == Action::\"disclose_full\"",
    "action == Action::\"disclose_redacted\"",
    "action == Action::\"disclose_hit_only\"",
    "action in Action::\"disclose\"",
    "action in [Action::\"disclose_redacted\", Action::\"disclose_hit_only\"]",
    // Never asked on the ladder: its conditions must not enter the key, nor may it be skipped wrongly.
    // Also asked on lookups, whose context differs.
    "action",
    "action == Action::\"lookup\"",
];

/// One policy: effect, scope, and an optional `when` or `unless` clause.
fn policy() -> impl Strategy<Value = String> {
    select(ACTION_SCOPES)
        .prop_flat_map(|action| {
            let disclosure = action.contains("disclose");
            (
                prop_oneof![3 => Just("permit"), 2 => Just("forbid")],
                prop_oneof![6 => Just("principal"), 1 => Just("principal is Node")],
                Just(action),
                prop_oneof![6 => Just("resource"), 1 => Just("resource is Alert")],
                proptest::option::weighted(
                    0.95,
                    (prop_oneof![4 => Just("when"), 1 => Just("unless")], condition(disclosure)),
                ),
            )
        })
        .prop_map(|(effect, principal, action, resource, clause)| {
            let clause = clause.map(|(kind, c)| format!(" {kind} {{ {c} }}")).unwrap_or_default();
            format!("{effect} ({principal}, {action}, {resource}){clause};")
        })
}

/// One to four random policies, half of the time after a permit-all (so that
/// forbids bite), then witnesses: for about half of the fields, a permit on
/// every rung whose condition is on that field alone. A satisfied permit is
/// among the deciding ids of the level it grants, so a witness makes every
/// change of its field visible in the decision.
fn policy_set() -> impl Strategy<Value = Vec<String>> {
    (
        any::<bool>(),
        proptest::collection::vec(policy(), 1..=4),
        field_atoms(true),
        proptest::collection::vec(any::<bool>(), 30),
    )
        .prop_map(|(permit_all, mut policies, atoms, witnessed)| {
            if permit_all {
                policies.insert(0, "permit (principal, action, resource);".to_owned());
            }
            for (atom, _) in atoms.into_iter().zip(witnessed).filter(|(_, w)| *w) {
                policies
                    .push(format!("permit (principal, action in Action::\"disclose\", resource) when {{ {atom} }};"));
            }
            policies
        })
}

/// Everything one decision depends on.
#[derive(Debug, Clone)]
struct Input {
    node: NodeInfo,
    origin: Option<NodeInfo>,
    alert: Alert,
    relation: Relation,
    officer: String,
}

fn node() -> impl Strategy<Value = NodeInfo> {
    (select(NODE_IDS), select(KINDS), select(COUNTRIES), subsequence(ROLES.to_vec(), 0..=ROLES.len())).prop_map(
        |(id, kind, country, roles)| NodeInfo {
            id: NodeId::new(id).expect("valid id"),
            kind,
            country: country.to_owned(),
            roles,
            name: id.to_owned(),
        },
    )
}

fn subject() -> impl Strategy<Value = Subject> {
    (any::<bool>(), 1i32..=5, any::<bool>()).prop_map(|(minor, role, special)| Subject {
        role,
        minor,
        special_categories: if special {
            vec![SpecialCategoryData { category: 7, detail: "d".into() }]
        } else {
            vec![]
        },
        ..Default::default()
    })
}

fn alert() -> impl Strategy<Value = Alert> {
    (
        (
            select(ALERT_IDS),
            select(&NODE_IDS[..3]),
            prop_oneof![Just(1), Just(3), Just(10), Just(16)],
            prop_oneof![Just(1), Just(2), Just(5)],
        ),
        (
            prop_oneof![Just(1), Just(3), Just(5)],
            prop_oneof![Just(1), Just(3), Just(4)],
            prop_oneof![Just(0), Just(1), Just(4)],
            prop_oneof![Just(1), Just(2), Just(4)],
            0i32..=5,
            subsequence(TAGS.to_vec(), 0..=2),
        ),
        (subsequence(NODE_IDS.to_vec(), 0..=2), proptest::collection::vec(subject(), 0..=3), 0usize..=2),
        (any::<bool>(), 0u32..=3, select(PURPOSES)),
    )
        .prop_map(
            |(
                (alert_id, origin, category, action),
                (tlp, handling_code, pap, source_reliability, info_reliability, tags),
                (addressees, subjects, objects),
                (forwarded, hops, purpose),
            )| Alert {
                alert_id: alert_id.to_owned(),
                origin: origin.to_owned(),
                category,
                action,
                labels: Some(Labels {
                    tlp,
                    handling_code,
                    pap,
                    source_reliability,
                    info_reliability,
                    tags: tags.into_iter().map(str::to_owned).collect(),
                    ..Default::default()
                }),
                purpose: purpose.to_owned(),
                addressees: addressees.into_iter().map(str::to_owned).collect(),
                subjects,
                objects: vec![AlertObject::default(); objects],
                forwarded_from: if forwarded { "01JDQ3A8Y7K2M4N6P8R0S2T4V6".into() } else { String::new() },
                hops,
                ..Default::default()
            },
        )
}

fn input() -> impl Strategy<Value = Input> {
    (node(), proptest::option::of(node()), alert(), any::<[bool; 5]>(), select(OFFICERS)).prop_map(
        |(node, origin, alert, [addressed, granted, new_recipient, onward_allowed, overlaps_restricted], officer)| {
            Input {
                node,
                origin,
                alert,
                relation: Relation { addressed, granted, new_recipient, onward_allowed, overlaps_restricted },
                officer: officer.to_owned(),
            }
        },
    )
}

/// The fields a variant takes from another input, one at a time.
const FIELDS: usize = 27;

/// `base` with field number `field` (mod [`FIELDS`]) taken from `other`.
fn splice(base: &Input, field: usize, other: &Input) -> Input {
    let mut v = base.clone();
    let (labels, from) =
        (v.alert.labels.get_or_insert_with(Labels::default), other.alert.labels.clone().unwrap_or_default());
    match field % FIELDS {
        0 => v.node.id = other.node.id.clone(),
        1 => v.node.kind = other.node.kind,
        2 => v.node.country = other.node.country.clone(),
        3 => v.node.roles = other.node.roles.clone(),
        4 => v.origin = other.origin.clone(),
        5 => v.alert.alert_id = other.alert.alert_id.clone(),
        6 => v.alert.origin = other.alert.origin.clone(),
        7 => v.alert.category = other.alert.category,
        8 => v.alert.action = other.alert.action,
        9 => labels.tlp = from.tlp,
        10 => labels.handling_code = from.handling_code,
        11 => labels.pap = from.pap,
        12 => labels.source_reliability = from.source_reliability,
        13 => labels.info_reliability = from.info_reliability,
        14 => labels.tags = from.tags,
        15 => v.alert.addressees = other.alert.addressees.clone(),
        16 => v.alert.subjects = other.alert.subjects.clone(),
        17 => v.alert.objects = other.alert.objects.clone(),
        18 => v.alert.forwarded_from = other.alert.forwarded_from.clone(),
        19 => v.alert.hops = other.alert.hops,
        20 => v.alert.purpose = other.alert.purpose.clone(),
        21 => v.officer = other.officer.clone(),
        22 => v.relation.addressed = other.relation.addressed,
        23 => v.relation.granted = other.relation.granted,
        24 => v.relation.new_recipient = other.relation.new_recipient,
        25 => v.relation.onward_allowed = other.relation.onward_allowed,
        _ => v.relation.overlaps_restricted = other.relation.overlaps_restricted,
    }
    v
}

/// Loads the default schema with `policies` (each given an `@id` and `@reason`).
fn engine(policies: &[String]) -> Result<(tempfile::TempDir, Arc<PolicyEngine>), TestCaseError> {
    let dir = tempfile::tempdir().map_err(|e| TestCaseError::fail(e.to_string()))?;
    let (_, schema) = isx_policy::defaults::FILES
        .iter()
        .find(|(name, _)| name.ends_with(".cedarschema"))
        .ok_or_else(|| TestCaseError::fail("no default schema"))?;
    std::fs::write(dir.path().join("schema.cedarschema"), schema).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let text: String =
        policies.iter().enumerate().map(|(i, p)| format!("@id(\"p{i}\")\n@reason(\"r{i}\")\n{p}\n\n")).collect();
    std::fs::write(dir.path().join("generated.cedar"), &text).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let engine = PolicyEngine::load(dir.path())
        .map_err(|e| TestCaseError::fail(format!("a generated policy set must load: {e}\n{text}")))?;
    Ok((dir, Arc::new(engine)))
}

fn decide(d: &Disclosure, input: &Input) -> isx_policy::Decision {
    let prepared = d.prepare(&input.alert, input.origin.as_ref(), &[&input.node]);
    d.decide(&input.alert, &prepared, &input.node, input.relation, &input.officer)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn cached_decisions_equal_uncached_ones(
        policies in policy_set(),
        bases in proptest::collection::vec(input(), 1..=2),
        others in proptest::collection::vec(input(), 3),
    ) {
        let (_dir, engine) = engine(&policies)?;
        let cached = Disclosure::new(engine.clone(), RedactionProfile::default());
        let uncached = Disclosure::new(engine.clone(), RedactionProfile::default()).without_cache();
        let enabled = engine.cache_rules().enabled;
        // Each base, then each base with one field from another input: a
        // variant shares the base's key unless that field is keyed.
        let inputs: Vec<(String, Input)> = bases
            .iter()
            .enumerate()
            .flat_map(|(b, base)| {
                std::iter::once((format!("base {b}"), base.clone()))
                    .chain((0..FIELDS).flat_map(|f| {
                        others.iter().enumerate().map(move |(o, other)| {
                            (format!("base {b} with field {f} of other {o}"), splice(base, f, other))
                        })
                    }))
                    .collect::<Vec<_>>()
            })
            .collect();
        for (label, input) in &inputs {
            let want = decide(&uncached, input);
            let before = cached.cache_stats();
            let first = decide(&cached, input);
            let second = decide(&cached, input);
            let show = |d: &isx_policy::Decision| format!("{:?} {:?}", d.level, d.policy_ids);
            for (call, got) in [("first", &first), ("second", &second)] {
                prop_assert!(
                    *got == want,
                    "{}: the {} cached call gives {} where Cedar gives {}\nrules {:?}\ninput {:?}",
                    label, call, show(got), show(&want), engine.cache_rules(), input
                );
            }
            let after = cached.cache_stats();
            let clean = want.policy_ids != [isx_policy::disclosure::EVALUATION_ERROR];
            if enabled && clean {
                prop_assert!(after.hits > before.hits, "a clean decision asked twice is served from the cache");
            } else {
                prop_assert_eq!(after.hits, before.hits, "nothing is served when the cache is off or on error");
            }
        }
        prop_assert_eq!(uncached.cache_stats(), isx_policy::CacheStats::default());
    }
}
