//! The decision cache key: what a cached ladder decision is keyed on, derived
//! from the policies' parsed form.
//!
//! A ladder decision ([`crate::Disclosure::decide`]) is a pure function of the
//! policy set and of one Cedar request per rung: the principal `Node` entity,
//! the resource `Alert` entity, the context, and the entity store (the alert,
//! the candidate nodes, the schema's action entities). The action is fixed per
//! rung and every rung is always asked, so it is not an input. A cache may
//! return an earlier answer only if the two requests agree on everything the
//! policies can observe; [`CacheKey`] is exactly that, typed (no formatted
//! strings that two different inputs could render alike).
//!
//! # What is keyed
//! - always: the recipient's node id (the principal's identity);
//! - the node's `kind`, `country` and `roles`, each when some policy reads it;
//! - each attribute of the `Alert` entity ([`crate::facts::ALERT_ATTRIBUTES`])
//!   that some policy reads, with the typed value the entity holds;
//! - each context field (`purpose`, `officer`, `addressed`, `broadcast`,
//!   `granted`, `new_recipient`, `onward_allowed`, `overlaps_restricted`:
//!   [`CONTEXT_FIELDS`]) that some policy reads. `officer` and
//!   `purpose` vary per request: keyed only when read, they do not spoil the
//!   hit rate of a policy set that ignores them (the default one does).
//!
//! # How it is derived
//! At load, [`CacheRules::from_policies`] walks each policy's JSON form (the
//! EST, [`cedar_policy::Policy::to_json`]) and records every attribute access
//! (`.` and `has`) whose receiver is directly `principal`, `resource` or
//! `context`. Policies whose action scope matches none of the three disclosure
//! actions (e.g. `action == Action::"lookup"`) are skipped: Cedar checks the
//! scope first, so they can never apply to a ladder question.
//!
//! # Why it cannot be wrong
//! The walk recognises every expression form of the EST and treats all others
//! conservatively, so whatever a policy can observe is in the key:
//! - a variable used other than as the receiver of `.` or `has` (`principal
//!   == Node::"x"`, `principal in ...`, `context` as a whole, a variable as
//!   the receiver of `getTag`, an argument of a function, ...) keys on every
//!   attribute of that variable; for `resource`, whose identity (the alert id)
//!   changes with every alert, the cache is turned off for the engine instead;
//! - a principal or resource scope other than `is <type>` likewise (the node
//!   id is always keyed; a resource scope turns the cache off);
//! - an attribute read through anything but a variable (an entity literal
//!   `Node::"x".kind`, an `if` that yields an entity, ...) reaches entities
//!   outside the key (other candidates in the store): the cache is off;
//! - an attribute that the schema does not declare for that variable, or that
//!   isx does not supply, keys on every attribute of the variable;
//! - a template slot, an unknown, an expression or scope shape this walk
//!   does not recognise, or a policy that cannot be turned into JSON: off.
//!
//! Only clean answers (no evaluation error) are cached, and the cache belongs
//! to one [`crate::Disclosure`], hence to one loaded policy set. The property
//! test `tests/cache.rs` compares cached and uncached decisions over random
//! valid policy sets and inputs.

use std::collections::BTreeSet;

use cedar_policy::{Entities, EntityUid, PolicySet};
use isx_core::{NodeId, NodeInfo, NodeKind, Role};
use serde_json::Value;

use crate::facts::{ALERT_ATTRIBUTES, AlertFacts, FactValue, Relation};

/// The attributes of the `Node` entity isx builds ([`crate::facts::node_entity`]).
pub const NODE_ATTRIBUTES: [&str; 3] = ["kind", "country", "roles"];

/// The fields of the disclosure context isx builds ([`crate::facts::disclosure_context`]).
pub const CONTEXT_FIELDS: [&str; 8] = [
    "purpose",
    "officer",
    "addressed",
    "broadcast",
    "granted",
    "new_recipient",
    "onward_allowed",
    "overlaps_restricted",
];

/// Cedar's extension functions (`decimal`, `ip`, `datetime`, ... and their
/// methods): pure functions of their arguments, which the walk visits.
const EXTENSION_FUNCTIONS: &[&str] = &[
    "decimal",
    "lessThan",
    "lessThanOrEqual",
    "greaterThan",
    "greaterThanOrEqual",
    "ip",
    "isIpv4",
    "isIpv6",
    "isLoopback",
    "isMulticast",
    "isInRange",
    "datetime",
    "duration",
    "offset",
    "durationSince",
    "toDate",
    "toTime",
    "toMilliseconds",
    "toSeconds",
    "toMinutes",
    "toHours",
    "toDays",
];

/// The attributes the schema declares for the principal (`Node`), the resource
/// (`Alert`) and the context of the disclosure actions. The walk only keys on
/// an attribute found here and among those isx supplies; any other sends it to
/// the conservative path.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SchemaAttributes {
    /// The `Node` entity's attributes.
    pub node: BTreeSet<String>,
    /// The `Alert` entity's attributes.
    pub alert: BTreeSet<String>,
    /// The context attributes of `disclose_full`, `disclose_redacted` and `disclose_hit_only`.
    pub context: BTreeSet<String>,
}

impl SchemaAttributes {
    /// Reads the declared attributes from a schema in Cedar syntax. Missing
    /// pieces (a shape this reader does not follow) leave a set empty, which
    /// only makes the key more conservative.
    /// `disclose` names the ladder's actions, whose contexts are read.
    pub fn from_cedarschema(text: &str, disclose: &[&str]) -> Self {
        let json = cedar_policy::SchemaFragment::from_cedarschema_str(text)
            .ok()
            .and_then(|(fragment, _warnings)| fragment.to_json_value().ok())
            .unwrap_or(Value::Null);
        let namespace = json.get("").unwrap_or(&Value::Null);
        let common = namespace.get("commonTypes");
        let entity = |name: &str| record_attributes(namespace.pointer(&format!("/entityTypes/{name}/shape")), common);
        let mut context = BTreeSet::new();
        for action in disclose {
            let shape = namespace.pointer(&format!("/actions/{action}/appliesTo/context"));
            context.extend(record_attributes(shape, common));
        }
        Self { node: entity("Node"), alert: entity("Alert"), context }
    }
}

/// The attribute names of a record type in the JSON schema format, following
/// one reference to a common type.
fn record_attributes(shape: Option<&Value>, common: Option<&Value>) -> BTreeSet<String> {
    let resolved = match shape.and_then(|s| s.get("type")).and_then(Value::as_str) {
        Some("Record") => shape,
        Some("EntityOrCommon") => {
            shape.and_then(|s| s.get("name")).and_then(Value::as_str).and_then(|n| common.and_then(|c| c.get(n)))
        }
        Some(name) => common.and_then(|c| c.get(name)),
        None => None,
    };
    resolved
        .and_then(|r| r.get("attributes"))
        .and_then(Value::as_object)
        .map(|attrs| attrs.keys().cloned().collect())
        .unwrap_or_default()
}

/// Which inputs a cached decision must be keyed on, derived from the
/// policies' parsed form by [`CacheRules::from_policies`] (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheRules {
    /// Decisions may be cached.
    pub enabled: bool,
    /// Some policy reads `context.officer`.
    pub officer: bool,
    /// Some policy reads `context.purpose`.
    pub purpose: bool,
    /// Some policy reads `context.addressed`.
    pub addressed: bool,
    /// Some policy reads `context.broadcast`.
    pub broadcast: bool,
    /// Some policy reads `context.granted`.
    pub granted: bool,
    /// Some policy reads `context.new_recipient`.
    pub new_recipient: bool,
    /// Some policy reads `context.onward_allowed`.
    pub onward_allowed: bool,
    /// Some policy reads `context.overlaps_restricted`.
    pub overlaps_restricted: bool,
    /// For each of [`crate::facts::ALERT_ATTRIBUTES`], whether some policy reads it.
    pub attributes: [bool; ALERT_ATTRIBUTES.len()],
    /// For each of [`NODE_ATTRIBUTES`], whether some policy reads it.
    pub node: [bool; NODE_ATTRIBUTES.len()],
    /// Each construct treated conservatively, naming its policy: what it made
    /// the key hold, or why the cache is off.
    pub notes: Vec<String>,
}

/// What one variable's uses require of the key.
#[derive(Debug, Default)]
struct VarReads {
    /// Attributes read by `.` or `has` directly on the variable.
    attrs: BTreeSet<String>,
    /// Key on every attribute.
    all: bool,
    /// The entity's identity matters (`==`, `in`, ...).
    identity: bool,
}

/// The walk over one policy set.
struct Walk<'a> {
    schema: &'a SchemaAttributes,
    principal: VarReads,
    resource: VarReads,
    context: VarReads,
    off: Vec<String>,
    notes: Vec<String>,
    /// The policy being walked, for notes.
    policy: String,
}

impl<'a> Walk<'a> {
    fn new(schema: &'a SchemaAttributes) -> Self {
        Self {
            schema,
            principal: VarReads::default(),
            resource: VarReads::default(),
            context: VarReads::default(),
            off: Vec::new(),
            notes: Vec::new(),
            policy: String::new(),
        }
    }

    fn off(&mut self, why: &str) {
        let note = format!("policy {}: {why}: decision cache off", self.policy);
        if !self.off.contains(&note) {
            self.off.push(note);
        }
    }

    fn note(&mut self, what: String) {
        let note = format!("policy {}: {what}", self.policy);
        if !self.notes.contains(&note) {
            self.notes.push(note);
        }
    }

    fn reads(&mut self, var: &str) -> Option<&mut VarReads> {
        match var {
            "principal" => Some(&mut self.principal),
            "resource" => Some(&mut self.resource),
            "context" => Some(&mut self.context),
            _ => None,
        }
    }

    /// `var` used as a whole: its identity and every attribute.
    fn whole(&mut self, var: &str, how: &str) {
        match var {
            // Fixed per rung, and every rung is asked: not an input.
            "action" => {}
            "principal" | "resource" | "context" => {
                self.note(format!("{how} uses `{var}` as a whole: keying on all of it"));
                if let Some(r) = self.reads(var) {
                    r.all = true;
                    r.identity = true;
                }
            }
            other => self.off(&format!("unknown variable `{other}`")),
        }
    }

    /// `var.attr` or `var has attr`.
    fn attribute(&mut self, var: &str, attr: &str) {
        let (declared, supplied) = match var {
            "action" => return,
            "principal" => (&self.schema.node, &NODE_ATTRIBUTES[..]),
            "resource" => (&self.schema.alert, &ALERT_ATTRIBUTES[..]),
            "context" => (&self.schema.context, &CONTEXT_FIELDS[..]),
            other => return self.off(&format!("unknown variable `{other}`")),
        };
        if declared.contains(attr) && supplied.contains(&attr) {
            if let Some(r) = self.reads(var) {
                r.attrs.insert(attr.to_owned());
            }
        } else {
            self.note(format!(
                "`{var}.{attr}` is not an attribute both the schema declares and isx supplies: keying on every attribute of `{var}`"
            ));
            if let Some(r) = self.reads(var) {
                r.all = true;
            }
        }
    }

    fn field<'v>(&mut self, body: &'v Value, name: &str, op: &str) -> Option<&'v Value> {
        let found = body.get(name);
        if found.is_none() {
            self.off(&format!("`{op}` without `{name}`"));
        }
        found
    }

    /// The receiver of `.` or `has`: a variable, or anything else (off).
    fn receiver(&mut self, left: &Value, attr: &str, op: &str) {
        match left.get("Var").and_then(Value::as_str) {
            Some(var) if left.as_object().is_some_and(|o| o.len() == 1) => self.attribute(var, attr),
            _ => self.off(&format!("`{op}{attr}` on something other than principal, resource or context")),
        }
    }

    fn expr(&mut self, e: &Value) {
        let Some((op, body)) = e.as_object().filter(|o| o.len() == 1).and_then(|o| o.iter().next()) else {
            return self.off("an expression of unrecognised shape");
        };
        match op.as_str() {
            "Value" => {}
            "Var" => match body.as_str() {
                Some(var) => self.whole(var, "an expression"),
                None => self.off("a variable of unrecognised shape"),
            },
            "!" | "neg" | "isEmpty" => {
                if let Some(arg) = self.field(body, "arg", op) {
                    self.expr(arg);
                }
            }
            "==" | "!=" | "in" | "<" | "<=" | ">" | ">=" | "&&" | "||" | "+" | "-" | "*" | "contains"
            | "containsAll" | "containsAny" | "getTag" | "hasTag" => {
                for side in ["left", "right"] {
                    if let Some(arg) = self.field(body, side, op) {
                        self.expr(arg);
                    }
                }
            }
            "." => match (body.get("left"), body.get("attr").and_then(Value::as_str)) {
                (Some(left), Some(attr)) => self.receiver(left, attr, "."),
                _ => self.off("`.` of unrecognised shape"),
            },
            "has" => {
                // `e has a` or, extended, `e has a.b.c`: the first name is an attribute of `e`.
                let attr = match body.get("attr") {
                    Some(Value::String(a)) => Some(a.as_str()),
                    Some(Value::Array(path)) => path.first().and_then(Value::as_str),
                    _ => None,
                };
                match (body.get("left"), attr) {
                    (Some(left), Some(attr)) => self.receiver(left, attr, "has "),
                    _ => self.off("`has` of unrecognised shape"),
                }
            }
            // The pattern is a literal.
            "like" => {
                if let Some(left) = self.field(body, "left", op) {
                    self.expr(left);
                }
            }
            "is" => {
                let left = self.field(body, "left", op);
                match body.get("in") {
                    Some(within) => {
                        if let Some(left) = left {
                            self.expr(left);
                        }
                        self.expr(within);
                    }
                    // `principal is Node`: the variables' types are fixed by the schema.
                    None => {
                        if let Some(left) = left.filter(|l| l.get("Var").is_none()) {
                            self.expr(left);
                        }
                    }
                }
            }
            "if-then-else" => {
                for part in ["if", "then", "else"] {
                    if let Some(arg) = self.field(body, part, op) {
                        self.expr(arg);
                    }
                }
            }
            "Set" => match body.as_array() {
                Some(items) => items.iter().for_each(|i| self.expr(i)),
                None => self.off("a set of unrecognised shape"),
            },
            "Record" => match body.as_object() {
                Some(fields) => fields.values().for_each(|v| self.expr(v)),
                None => self.off("a record of unrecognised shape"),
            },
            f if EXTENSION_FUNCTIONS.contains(&f) => match body.as_array() {
                Some(args) => args.iter().for_each(|a| self.expr(a)),
                None => self.off(&format!("extension call `{f}` of unrecognised shape")),
            },
            "Slot" => self.off("a template slot"),
            "Unknown" => self.off("an unknown (partial evaluation)"),
            other => self.off(&format!("an expression `{other}` this walk does not know")),
        }
    }

    /// A principal or resource scope: nothing for `All` or `is <type>`, the
    /// variable as a whole otherwise.
    fn scope(&mut self, var: &str, scope: Option<&Value>) {
        match scope.and_then(|s| s.get("op")).and_then(Value::as_str) {
            Some("All") => {}
            Some("is") if scope.and_then(|s| s.get("in")).is_none() => {}
            Some("==" | "in" | "is") => self.whole(var, "the scope"),
            _ => self.off(&format!("a {var} scope of unrecognised shape")),
        }
    }
}

/// Whether a policy's action scope can match a disclosure action; `true`
/// when unsure.
fn applies_to_disclosure(scope: Option<&Value>, actions: &Entities, disclose: &[EntityUid]) -> bool {
    let uid = |v: &Value| EntityUid::from_json(v.clone()).ok();
    let matches =
        |scope_uid: &EntityUid| disclose.iter().any(|a| a == scope_uid || actions.is_ancestor_of(scope_uid, a));
    let Some(scope) = scope else { return true };
    match scope.get("op").and_then(Value::as_str) {
        Some("==") => scope.get("entity").and_then(uid).is_none_or(|u| matches(&u)),
        Some("in") => match (scope.get("entity"), scope.get("entities").and_then(Value::as_array)) {
            (Some(one), None) => uid(one).is_none_or(|u| matches(&u)),
            (None, Some(many)) => many.iter().any(|v| uid(v).is_none_or(|u| matches(&u))),
            _ => true,
        },
        _ => true,
    }
}

impl CacheRules {
    /// Derives the key from `policies` (see the module docs). `actions` are
    /// the schema's action entities (for action groups), `disclose` the three
    /// ladder actions, `schema` the declared attributes.
    pub fn from_policies(
        policies: &PolicySet,
        actions: &Entities,
        disclose: &[EntityUid],
        schema: &SchemaAttributes,
    ) -> Self {
        let mut walk = Walk::new(schema);
        if policies.templates().next().is_some() {
            walk.off("templates");
        }
        for policy in policies.policies() {
            walk.policy = policy.id().to_string();
            let json = match policy.to_json() {
                Ok(json) => json,
                Err(_) => {
                    walk.off("no JSON form");
                    continue;
                }
            };
            let Some(fields) = json.as_object() else {
                walk.off("a policy of unrecognised shape");
                continue;
            };
            if let Some(other) = fields.keys().find(|k| {
                !["effect", "principal", "action", "resource", "conditions", "annotations"].contains(&k.as_str())
            }) {
                walk.off(&format!("a policy field `{other}` this walk does not know"));
                continue;
            }
            if !applies_to_disclosure(json.get("action"), actions, disclose) {
                continue;
            }
            walk.scope("principal", json.get("principal"));
            walk.scope("resource", json.get("resource"));
            let conditions = json.get("conditions").map(|c| c.as_array());
            match conditions {
                None => {}
                Some(None) => walk.off("conditions of unrecognised shape"),
                Some(Some(clauses)) => {
                    for clause in clauses {
                        match (clause.get("kind").and_then(Value::as_str), clause.get("body")) {
                            (Some("when" | "unless"), Some(body)) => walk.expr(body),
                            _ => walk.off("a condition of unrecognised shape"),
                        }
                    }
                }
            }
        }
        if walk.resource.identity {
            walk.off.push("some policy uses the resource's identity (the alert id): decision cache off".into());
        }
        let used = |reads: &VarReads, name: &str| reads.all || reads.attrs.contains(name);
        let context = |name: &str| used(&walk.context, name);
        let enabled = walk.off.is_empty();
        let mut notes = std::mem::take(&mut walk.notes);
        notes.append(&mut walk.off);
        Self {
            enabled,
            officer: context("officer"),
            purpose: context("purpose"),
            addressed: context("addressed"),
            broadcast: context("broadcast"),
            granted: context("granted"),
            new_recipient: context("new_recipient"),
            onward_allowed: context("onward_allowed"),
            overlaps_restricted: context("overlaps_restricted"),
            attributes: ALERT_ATTRIBUTES.map(|a| used(&walk.resource, a)),
            node: NODE_ATTRIBUTES.map(|a| used(&walk.principal, a)),
            notes,
        }
    }

    /// The key of one decision, or `None` when decisions are not cached.
    /// `relation` and `officer` are those the context is built from
    /// ([`crate::facts::disclosure_context`]).
    pub fn key(&self, facts: &AlertFacts, node: &NodeInfo, relation: Relation, officer: &str) -> Option<CacheKey> {
        self.enabled.then(|| CacheKey {
            node: node.id.clone(),
            kind: self.node[0].then_some(node.kind),
            country: self.node[1].then(|| node.country.clone()),
            roles: self.node[2].then(|| node.roles.clone()),
            alert: std::array::from_fn(|i| self.attributes[i].then(|| facts.values[i].1.clone())),
            purpose: self.purpose.then(|| facts.purpose.clone()),
            officer: self.officer.then(|| officer.to_owned()),
            addressed: self.addressed.then_some(relation.addressed),
            broadcast: self.broadcast.then(|| facts.broadcast()),
            granted: self.granted.then_some(relation.granted),
            new_recipient: self.new_recipient.then_some(relation.new_recipient),
            onward_allowed: self.onward_allowed.then_some(relation.onward_allowed),
            overlaps_restricted: self.overlaps_restricted.then_some(relation.overlaps_restricted),
        })
    }
}

/// The inputs of one ladder decision that the policies can observe; an input
/// no policy reads is `None`. See the module docs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    /// The recipient (the principal's identity), always keyed.
    node: NodeId,
    /// `principal.kind`.
    kind: Option<NodeKind>,
    /// `principal.country`.
    country: Option<String>,
    /// `principal.roles` (in registration order: a different order is a miss, never a wrong hit).
    roles: Option<Vec<Role>>,
    /// The `Alert` entity's attributes, in [`crate::facts::ALERT_ATTRIBUTES`] order.
    alert: [Option<FactValue>; ALERT_ATTRIBUTES.len()],
    /// `context.purpose`.
    purpose: Option<String>,
    /// `context.officer`.
    officer: Option<String>,
    /// `context.addressed`.
    addressed: Option<bool>,
    /// `context.broadcast`.
    broadcast: Option<bool>,
    /// `context.granted`.
    granted: Option<bool>,
    /// `context.new_recipient`.
    new_recipient: Option<bool>,
    /// `context.onward_allowed`.
    onward_allowed: Option<bool>,
    /// `context.overlaps_restricted`.
    overlaps_restricted: Option<bool>,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::PolicyEngine;

    const DISCLOSE: [&str; 3] = ["disclose_full", "disclose_redacted", "disclose_hit_only"];
    const SCHEMA: &str = include_str!("../../../deploy/local/policy/schema.cedarschema");

    /// What the key holds under `schema` and `policies` (each given an `@id`
    /// and `@reason`): `var.attr`, `var.*` for all of a variable, or `off`.
    fn keyed_with(schema: &str, policies: &[&str]) -> Vec<String> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("s.cedarschema"), schema).unwrap();
        let text: String =
            policies.iter().enumerate().map(|(i, p)| format!("@id(\"p{i}\")\n@reason(\"r\")\n{p}\n")).collect();
        std::fs::write(dir.path().join("p.cedar"), &text).unwrap();
        let engine = PolicyEngine::load(dir.path()).unwrap_or_else(|e| panic!("{text}: {e}"));
        keyed_by(engine.cache_rules())
    }

    fn keyed_by(rules: &CacheRules) -> Vec<String> {
        if !rules.enabled {
            return vec!["off".into()];
        }
        let context = [
            rules.purpose,
            rules.officer,
            rules.addressed,
            rules.broadcast,
            rules.granted,
            rules.new_recipient,
            rules.onward_allowed,
            rules.overlaps_restricted,
        ];
        let mut keyed = Vec::new();
        for (var, names, used) in [
            ("principal", &NODE_ATTRIBUTES[..], &rules.node[..]),
            ("resource", &ALERT_ATTRIBUTES[..], &rules.attributes[..]),
            ("context", &CONTEXT_FIELDS[..], &context[..]),
        ] {
            if used.iter().all(|u| *u) {
                keyed.push(format!("{var}.*"));
            } else {
                keyed.extend(names.iter().zip(used).filter(|(_, u)| **u).map(|(n, _)| format!("{var}.{n}")));
            }
        }
        keyed
    }

    fn keyed(policy: &str) -> Vec<String> {
        keyed_with(SCHEMA, &[policy])
    }

    #[test]
    fn the_default_schema_declares_exactly_what_the_key_can_hold() {
        let schema = SchemaAttributes::from_cedarschema(SCHEMA, &DISCLOSE);
        let set = |names: &[&str]| names.iter().map(|n| (*n).to_owned()).collect::<BTreeSet<_>>();
        assert_eq!(schema.node, set(&NODE_ATTRIBUTES));
        assert_eq!(schema.alert, set(&ALERT_ATTRIBUTES));
        assert_eq!(schema.context, set(&CONTEXT_FIELDS));
    }

    #[test]
    fn the_default_policy_keys_on_what_its_disclosure_rules_read() {
        let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/local/policy");
        let engine = PolicyEngine::load(&dir).unwrap();
        // `principal.roles` is read by `lookup-hit-flag` only, which never
        // applies to a disclosure; officer and purpose are read by none.
        assert_eq!(
            keyed_by(engine.cache_rules()),
            [
                "principal.kind",
                "resource.category",
                "resource.tlp",
                "resource.handling_code",
                "resource.has_special_categories",
                "resource.minor_not_victim_or_missing",
                "resource.forwarded",
                "context.addressed",
                "context.granted",
                "context.new_recipient",
                "context.onward_allowed",
                "context.overlaps_restricted",
            ]
        );
        assert!(engine.cache_rules().notes.is_empty(), "{:?}", engine.cache_rules().notes);
    }

    #[test]
    fn each_construct_keys_what_it_can_read() {
        let record = "{\"purpose\": \"p\", \"officer\": \"o\", \"addressed\": false, \"broadcast\": true, \"granted\": false, \"new_recipient\": false, \"onward_allowed\": false, \"overlaps_restricted\": false}";
        let cases: &[(&str, &[&str])] = &[
            ("permit (principal, action, resource);", &[]),
            ("permit (principal is Node, action, resource is Alert);", &[]),
            (
                "permit (principal, action, resource) when { principal.kind == NodeKind::\"national\" };",
                &["principal.kind"],
            ),
            ("permit (principal, action, resource) when { context.broadcast };", &["context.broadcast"]),
            ("permit (principal, action, resource) unless { context.addressed };", &["context.addressed"]),
            ("permit (principal, action, resource) when { context has officer };", &["context.officer"]),
            ("permit (principal, action, resource) when { context.purpose like \"inv*\" };", &["context.purpose"]),
            (
                "permit (principal, action, resource) when { resource has tlp && resource.tlp == Tlp::\"red\" };",
                &["resource.tlp"],
            ),
            (
                "forbid (principal, action, resource) when { [Category::\"terrorism\"].contains(resource.category) || resource.hops > 1 };",
                &["resource.category", "resource.hops"],
            ),
            (
                "forbid (principal, action, resource) when { if context.granted then resource.tags.contains(\"x\") else principal.roles.isEmpty() };",
                &["principal.roles", "resource.tags", "context.granted"],
            ),
            // A variable as a whole: all of it.
            ("permit (principal == Node::\"fr-police\", action, resource);", &["principal.*"]),
            ("permit (principal in Node::\"fr-police\", action, resource);", &["principal.*"]),
            ("permit (principal, action, resource) when { principal == Node::\"fr-police\" };", &["principal.*"]),
            ("permit (principal, action, resource) when { principal is Node in Node::\"x\" };", &["principal.*"]),
            (
                &format!(
                    "permit (principal, action in Action::\"disclose\", resource) when {{ context == {record} }};"
                ),
                &["context.*"],
            ),
            // The resource's identity, or entities reached other than through a variable: off.
            ("permit (principal, action, resource == Alert::\"a\");", &["off"]),
            ("permit (principal, action, resource in Alert::\"a\");", &["off"]),
            ("permit (principal, action, resource) when { resource == Alert::\"a\" };", &["off"]),
            (
                "permit (principal, action, resource) when { Node::\"fr-police\".kind == NodeKind::\"national\" };",
                &["off"],
            ),
            ("permit (principal, action, resource) when { Node::\"fr-police\" has kind };", &["off"]),
            (
                "permit (principal, action, resource) when { (if context.granted then principal else principal).kind == NodeKind::\"europol\" };",
                &["off"],
            ),
            // A policy that cannot apply to a disclosure adds nothing; one that can, all it reads.
            (
                "permit (principal, action == Action::\"lookup\", resource) when { context.officer == \"o\" && context.data_types.contains(\"name\") };",
                &[],
            ),
            (
                "forbid (principal, action in [Action::\"disclose\", Action::\"lookup\"], resource) when { context.officer == \"o\" };",
                &["context.officer"],
            ),
            (
                "forbid (principal, action == Action::\"disclose_hit_only\", resource) when { principal.country == \"FR\" };",
                &["principal.country"],
            ),
        ];
        for (policy, want) in cases {
            assert_eq!(keyed(policy), *want, "{policy}");
        }
    }

    #[test]
    fn an_attribute_isx_does_not_supply_keys_on_all_of_its_variable() {
        let schema = SCHEMA.replace("  hops: Long,\n", "  hops: Long,\n  extra?: String,\n");
        assert_eq!(
            keyed_with(&schema, &["forbid (principal, action, resource) when { resource has extra };"]),
            ["resource.*"]
        );
    }

    #[test]
    fn an_unrecognised_shape_turns_the_cache_off() {
        let schema = SchemaAttributes::from_cedarschema(SCHEMA, &DISCLOSE);
        for e in [
            json!({"frobnicate": {"left": {"Var": "context"}}}),
            json!({".": {"left": {"Var": "context"}}}),
            json!({".": {"left": {"Var": "context", "x": 1}, "attr": "officer"}}),
            json!({"Var": "context", "extra": 1}),
            json!({"Var": "other"}),
            json!({"Slot": "?principal"}),
            json!({"==": {"left": {"Value": 1}}}),
            json!([1]),
        ] {
            let mut walk = Walk::new(&schema);
            walk.expr(&e);
            assert!(!walk.off.is_empty(), "{e}");
        }
    }
}
