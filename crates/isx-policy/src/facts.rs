//! Cedar entities and context built from an alert and a recipient.
//!
//! The attribute names and types here must match `schema.cedarschema`; the
//! unit tests build every entity against the default schema.
//!
//! Categories, TLP, handling codes and node kinds are enumerated entity types
//! in the schema ([`ENUMS`]): their attributes hold entity references such as
//! `Tlp::"red"`. Enumerated entities have no attributes nor parents, so the
//! entity store needs none of them; Cedar compares the references alone.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;

use cedar_policy::{Context, Entity, EntityId, EntityTypeName, EntityUid, RestrictedExpression};
use isx_core::display;
use isx_core::wire::{Alert, SubjectRole};
use isx_core::{NodeInfo, Role};

/// The Cedar view of one alert, built once and reused for every recipient.
#[derive(Debug, Clone)]
pub struct AlertFacts {
    /// `Alert::"<alert_id>"`.
    pub uid: EntityUid,
    /// The resource entity.
    pub entity: Entity,
    /// The alert's purpose, for the context.
    pub purpose: String,
    /// The named addressees.
    pub addressees: Vec<String>,
    /// Every attribute of the entity by name, in [`ALERT_ATTRIBUTES`] order,
    /// for the decision-cache key.
    pub values: [(&'static str, FactValue); ALERT_ATTRIBUTES.len()],
}

impl AlertFacts {
    /// `context.broadcast`: the alert names no addressees.
    pub fn broadcast(&self) -> bool {
        self.addressees.is_empty()
    }
}

fn uid(type_name: &str, id: &str) -> EntityUid {
    EntityUid::from_type_name_and_id(
        EntityTypeName::from_str(type_name).expect("static type names parse"),
        EntityId::new(id),
    )
}

fn string(s: impl Into<String>) -> RestrictedExpression {
    RestrictedExpression::new_string(s.into())
}

fn strings<'a>(items: impl IntoIterator<Item = &'a str>) -> RestrictedExpression {
    RestrictedExpression::new_set(items.into_iter().map(|s| string(s.to_owned())))
}

fn suffix(name: &str, prefix: &str) -> String {
    name.trim_start_matches(prefix).to_ascii_lowercase()
}

/// The lower-case TLP name used in policy: `red`, `amber_strict`, ...
pub fn tlp_name(alert: &Alert) -> String {
    let tlp = alert.labels.as_ref().map(|l| l.tlp()).unwrap_or_default();
    suffix(tlp.as_str_name(), "TLP_")
}

/// The enumerated entity types of the schema and, for each, every value isx
/// supplies: the engine refuses a schema whose list differs.
pub fn enums() -> [(&'static str, Vec<String>); 4] {
    use isx_core::wire::{HandlingCode, Tlp};
    fn all<E: TryFrom<i32>>(name: impl Fn(E) -> String) -> Vec<String> {
        (0..=255).filter_map(|i| E::try_from(i).ok()).map(name).collect()
    }
    [
        (CATEGORY, all(display::category)),
        (TLP, all(|t: Tlp| suffix(t.as_str_name(), "TLP_"))),
        (HANDLING_CODE, all(|h: HandlingCode| suffix(h.as_str_name(), "HANDLING_CODE_"))),
        (
            NODE_KIND,
            [
                isx_core::NodeKind::National,
                isx_core::NodeKind::Europol,
                isx_core::NodeKind::Frontex,
                isx_core::NodeKind::Auditor,
            ]
            .map(|k| k.as_str().to_owned())
            .to_vec(),
        ),
    ]
}

/// The enumerated entity type of `resource.category`.
pub const CATEGORY: &str = "Category";
/// The enumerated entity type of `resource.tlp`.
pub const TLP: &str = "Tlp";
/// The enumerated entity type of `resource.handling_code`.
pub const HANDLING_CODE: &str = "HandlingCode";
/// The enumerated entity type of `principal.kind` and `resource.origin_kind`.
pub const NODE_KIND: &str = "NodeKind";

/// The names of the enumerated entity types, as [`enums`] lists them.
pub const ENUMS: [&str; 4] = [CATEGORY, TLP, HANDLING_CODE, NODE_KIND];

/// A reference to the enumerated entity `type_name::"value"`.
pub fn enum_value(type_name: &str, value: &str) -> EntityUid {
    uid(type_name, value)
}

/// One attribute value of the `Alert` entity.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum FactValue {
    /// A string.
    Str(String),
    /// A value of an enumerated entity type, e.g. `Tlp::"red"`.
    Enum(EntityUid),
    /// An optional attribute that is absent (`resource has x` is false).
    Absent,
    /// A number.
    Long(i64),
    /// A flag.
    Bool(bool),
    /// A set of strings.
    Set(Vec<String>),
}

/// The names of the `Alert` entity's attributes.
pub const ALERT_ATTRIBUTES: [&str; 19] = [
    "category",
    "action",
    "tlp",
    "handling_code",
    "pap",
    "source_reliability",
    "info_reliability",
    "origin",
    "origin_kind",
    "origin_country",
    "addressees",
    "tags",
    "has_special_categories",
    "has_minor",
    "minor_not_victim_or_missing",
    "subject_count",
    "object_count",
    "forwarded",
    "hops",
];

impl FactValue {
    /// The Cedar value, or `None` for an absent attribute.
    fn expr(&self) -> Option<RestrictedExpression> {
        Some(match self {
            Self::Str(s) => string(s.clone()),
            Self::Enum(uid) => RestrictedExpression::new_entity_uid(uid.clone()),
            Self::Absent => return None,
            Self::Long(n) => RestrictedExpression::new_long(*n),
            Self::Bool(b) => RestrictedExpression::new_bool(*b),
            Self::Set(items) => strings(items.iter().map(String::as_str)),
        })
    }
}

/// Builds the Cedar facts of `alert`; `origin` is the publishing node, when registered.
pub fn alert_facts(alert: &Alert, origin: Option<&NodeInfo>) -> AlertFacts {
    let labels = alert.labels.clone().unwrap_or_default();
    let has_special = alert.subjects.iter().any(|s| !s.special_categories.is_empty());
    let has_minor = alert.subjects.iter().any(|s| s.minor);
    let protected_minor =
        alert.subjects.iter().any(|s| s.minor && !matches!(s.role(), SubjectRole::Victim | SubjectRole::MissingPerson));
    let info_reliability = match labels.info_reliability {
        n @ 1..=4 => i64::from(n),
        _ => 4,
    };
    let pap = if labels.pap == 0 { String::new() } else { suffix(labels.pap().as_str_name(), "PAP_") };
    let values: [(&'static str, FactValue); ALERT_ATTRIBUTES.len()] = [
        ("category", FactValue::Enum(enum_value(CATEGORY, &display::category(alert.category())))),
        ("action", FactValue::Str(suffix(alert.action().as_str_name(), "ACTION_"))),
        ("tlp", FactValue::Enum(enum_value(TLP, &tlp_name(alert)))),
        (
            "handling_code",
            FactValue::Enum(enum_value(HANDLING_CODE, &suffix(labels.handling_code().as_str_name(), "HANDLING_CODE_"))),
        ),
        ("pap", FactValue::Str(pap)),
        (
            "source_reliability",
            FactValue::Str(suffix(labels.source_reliability().as_str_name(), "SOURCE_RELIABILITY_")),
        ),
        ("info_reliability", FactValue::Long(info_reliability)),
        ("origin", FactValue::Str(alert.origin.clone())),
        ("origin_kind", origin.map_or(FactValue::Absent, |o| FactValue::Enum(enum_value(NODE_KIND, o.kind.as_str())))),
        ("origin_country", FactValue::Str(origin.map(|o| o.country.clone()).unwrap_or_default())),
        ("addressees", FactValue::Set(alert.addressees.clone())),
        ("tags", FactValue::Set(labels.tags.clone())),
        ("has_special_categories", FactValue::Bool(has_special)),
        ("has_minor", FactValue::Bool(has_minor)),
        ("minor_not_victim_or_missing", FactValue::Bool(protected_minor)),
        ("subject_count", FactValue::Long(alert.subjects.len() as i64)),
        ("object_count", FactValue::Long(alert.objects.len() as i64)),
        ("forwarded", FactValue::Bool(!alert.forwarded_from.is_empty())),
        ("hops", FactValue::Long(i64::from(alert.hops))),
    ];
    debug_assert!(values.iter().map(|(k, _)| *k).eq(ALERT_ATTRIBUTES), "values follow ALERT_ATTRIBUTES");
    let attrs: HashMap<String, RestrictedExpression> =
        values.iter().filter_map(|(k, f)| Some(((*k).to_owned(), f.expr()?))).collect();
    let uid = uid("Alert", &alert.alert_id);
    let entity = Entity::new(uid.clone(), attrs, HashSet::new()).expect("literal attributes always evaluate");
    AlertFacts { uid, entity, purpose: alert.purpose.clone(), addressees: alert.addressees.clone(), values }
}

/// `Node::"<id>"`.
pub fn node_uid(node: &NodeInfo) -> EntityUid {
    uid("Node", node.id.as_str())
}

/// The principal entity for a node.
pub fn node_entity(node: &NodeInfo) -> Entity {
    let attrs: HashMap<String, RestrictedExpression> = [
        ("kind", RestrictedExpression::new_entity_uid(enum_value(NODE_KIND, node.kind.as_str()))),
        ("country", string(node.country.clone())),
        ("roles", strings(node.roles.iter().map(|r: &Role| r.as_str()))),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    Entity::new(node_uid(node), attrs, HashSet::new()).expect("literal attributes always evaluate")
}

/// How a recipient stands to an alert: the context flags of a decision.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Relation {
    /// The recipient is one of the alert's named addressees.
    pub addressed: bool,
    /// The recipient asked after a hit and the holder granted access.
    pub granted: bool,
    /// `context.new_recipient`: the alert relays another, or overlaps one its
    /// publisher received under restricted labels, and the recipient does not
    /// hold that alert (see [`Related`]).
    pub new_recipient: bool,
    /// `context.onward_allowed`: the relayed alert's origin allows this
    /// recipient onward copies (`labels.onward` or `Exchange.AllowOnward`).
    pub onward_allowed: bool,
    /// `context.overlaps_restricted`: the alert shares a person, document or
    /// object with an alert its publisher received under H2, TLP:RED or
    /// TLP:AMBER+STRICT (and took that alert's stricter labels).
    pub overlaps_restricted: bool,
}

impl Relation {
    /// A recipient reached by routing: addressed or not, never granted,
    /// related to no other alert.
    pub fn routed(addressed: bool) -> Self {
        Self { addressed, ..Self::default() }
    }
}

/// What an alert relays or overlaps, as the gateway found it: where
/// [`Relation::new_recipient`], [`Relation::onward_allowed`] and
/// [`Relation::overlaps_restricted`] come from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Related {
    /// The nodes that hold every related alert (its origin, its recipients,
    /// those granted it): the relayed alert, and each restricted alert the
    /// new one overlaps. `None` when the alert relates to no other.
    pub holders: Option<std::collections::BTreeSet<String>>,
    /// The nodes the relayed alert's origin allows onward copies to.
    pub onward: std::collections::BTreeSet<String>,
    /// The alert overlaps one its publisher received under restricted labels.
    pub overlaps_restricted: bool,
}

impl Related {
    /// How `node` stands to the alert, given whether it is addressed and granted.
    pub fn relation(&self, node: &str, addressed: bool, granted: bool) -> Relation {
        Relation {
            addressed,
            granted,
            new_recipient: self.holders.as_ref().is_some_and(|h| !h.contains(node)),
            onward_allowed: self.onward.contains(node),
            overlaps_restricted: self.overlaps_restricted,
        }
    }
}

/// The disclosure context for one recipient.
pub fn disclosure_context(facts: &AlertFacts, officer: &str, relation: Relation) -> Context {
    Context::from_pairs([
        ("purpose".to_owned(), string(facts.purpose.clone())),
        ("officer".to_owned(), string(officer.to_owned())),
        ("addressed".to_owned(), RestrictedExpression::new_bool(relation.addressed)),
        ("broadcast".to_owned(), RestrictedExpression::new_bool(facts.broadcast())),
        ("granted".to_owned(), RestrictedExpression::new_bool(relation.granted)),
        ("new_recipient".to_owned(), RestrictedExpression::new_bool(relation.new_recipient)),
        ("onward_allowed".to_owned(), RestrictedExpression::new_bool(relation.onward_allowed)),
        ("overlaps_restricted".to_owned(), RestrictedExpression::new_bool(relation.overlaps_restricted)),
    ])
    .expect("distinct literal keys")
}

/// What a lookup's context says about the caller and its question.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LookupQuestion {
    /// The purpose the caller states.
    pub purpose: String,
    /// The caller's officer.
    pub officer: String,
    /// The types of identifier used (`document`, `name`, ...).
    pub data_types: Vec<String>,
}

/// The lookup context for one caller and one matching alert.
pub fn lookup_context(facts: &AlertFacts, question: &LookupQuestion, addressed: bool) -> Context {
    Context::from_pairs([
        ("purpose".to_owned(), string(question.purpose.clone())),
        ("officer".to_owned(), string(question.officer.clone())),
        ("addressed".to_owned(), RestrictedExpression::new_bool(addressed)),
        ("broadcast".to_owned(), RestrictedExpression::new_bool(facts.broadcast())),
        ("granted".to_owned(), RestrictedExpression::new_bool(false)),
        ("data_types".to_owned(), strings(question.data_types.iter().map(String::as_str))),
    ])
    .expect("distinct literal keys")
}
