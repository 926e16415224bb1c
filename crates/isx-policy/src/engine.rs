//! Loading, validating and querying a Cedar policy directory.
//!
//! A directory holds exactly one `*.cedarschema` file and one or more
//! `*.cedar` files. Every policy must carry `@id("...")` (unique across the
//! directory) and `@reason("...")`, the sentence shown to policy officers and
//! written to the audit log. Policies are validated against the schema in
//! strict mode at load; any problem is reported with its file and line.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::OnceLock;

use cedar_policy::{
    Authorizer, Decision as CedarDecision, Entities, EntityUid, PolicyId, PolicySet, Request, Schema, ValidationMode,
    Validator,
};
use isx_core::NodeInfo;
use miette::Diagnostic;

use crate::cache::{CacheRules, SchemaAttributes};
pub use crate::error::PolicyError;
use crate::facts::{AlertFacts, LookupQuestion, Relation, disclosure_context, lookup_context, node_entity, node_uid};
use crate::sources::Sources;

/// Whether a policy permits or forbids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// `permit`.
    Permit,
    /// `forbid`.
    Forbid,
}

impl fmt::Display for Effect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Permit => "permit",
            Self::Forbid => "forbid",
        })
    }
}

/// What the directory says about one policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyMeta {
    /// The `@id`.
    pub id: String,
    /// The `@reason`.
    pub reason: String,
    /// Permit or forbid.
    pub effect: Effect,
    /// The file it is in.
    pub file: PathBuf,
    /// The 1-based line where it starts.
    pub line: usize,
}

/// The answer to one authorization question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// True if permitted.
    pub allowed: bool,
    /// The policies that decided it: the satisfied permits when allowed, the
    /// satisfied forbids when denied by one (empty when nothing permitted).
    pub policies: Vec<String>,
    /// Evaluation errors, each naming its policy. Non-empty means "deny".
    pub errors: Vec<String>,
}

/// A loaded, validated policy directory.
pub struct PolicyEngine {
    dir: PathBuf,
    policies: PolicySet,
    meta: BTreeMap<String, PolicyMeta>,
    version: String,
    sources: Sources,
    authorizer: Authorizer,
    actions: [EntityUid; 3],
    lookup: EntityUid,
    action_entities: Vec<cedar_policy::Entity>,
    cache_rules: CacheRules,
}

impl fmt::Debug for PolicyEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PolicyEngine").field("dir", &self.dir).field("version", &self.version).finish_non_exhaustive()
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset.min(text.len())).map(|t| t.matches('\n').count() + 1).unwrap_or(1)
}

fn first_label(d: &dyn Diagnostic) -> Option<usize> {
    d.labels().and_then(|mut l| l.next()).map(|l| l.offset())
}

fn message(d: &dyn Diagnostic, fallback: &dyn fmt::Display) -> String {
    let mut text = fallback.to_string();
    if let Some(help) = d.help() {
        text.push_str(&format!(" (help: {help})"));
    }
    text
}

impl PolicyEngine {
    /// Loads and validates every file in `dir`.
    pub fn load(dir: &Path) -> Result<Self, PolicyError> {
        Self::from_sources(dir, Sources::read(dir)?)
    }

    /// Validates the texts of a policy set, as if read from `dir` (which
    /// names its files in errors and in [`PolicyEngine::dir`]): a version
    /// kept by a gateway, say, loads as it did then.
    pub fn from_sources(dir: &Path, sources: Sources) -> Result<Self, PolicyError> {
        let version = sources.version();
        let schema_path = dir.join(&sources.schema.name);
        let schema_text = sources.schema.text.as_str();
        let (schema, _warnings) = Schema::from_cedarschema_str(schema_text).map_err(|e| PolicyError::SchemaSyntax {
            line: first_label(&e).map(|o| line_of(schema_text, o)).unwrap_or(1),
            message: message(&e, &e),
            file: schema_path.clone(),
        })?;
        check_enums(schema_text, &schema_path)?;
        check_fact_shapes(&schema, &schema_path)?;
        let action_store = schema
            .action_entities()
            .map_err(|e| PolicyError::SchemaMismatch { file: schema_path.clone(), message: e.to_string() })?;
        let action_entities: Vec<cedar_policy::Entity> = action_store.iter().cloned().collect();
        let schema_attributes = SchemaAttributes::from_cedarschema(schema_text, &Action::ALL.map(Action::name));

        let mut policies = PolicySet::new();
        let mut meta: BTreeMap<String, PolicyMeta> = BTreeMap::new();
        let mut texts: BTreeMap<PathBuf, String> = BTreeMap::new();
        for file in &sources.policies {
            let path = &dir.join(&file.name);
            let text = file.text.clone();
            let parsed = PolicySet::from_str(&text).map_err(|e| PolicyError::Syntax {
                file: path.clone(),
                line: first_label(&e).map(|o| line_of(&text, o)).unwrap_or(1),
                message: message(&e, &e),
            })?;
            if parsed.templates().next().is_some() {
                let line = text.find("?principal").or_else(|| text.find("?resource")).map(|o| line_of(&text, o));
                return Err(PolicyError::Template { file: path.clone(), line: line.unwrap_or(1) });
            }
            // Policies come back in an unspecified order; number the ones without @id by position.
            for policy in parsed.policies() {
                let id = policy.annotation("id").map(str::to_owned);
                let line = id
                    .as_ref()
                    .and_then(|id| text.find(&format!("@id(\"{id}\")")))
                    .or_else(|| text.find(policy.to_string().lines().next().unwrap_or_default()))
                    .map(|o| line_of(&text, o))
                    .unwrap_or(1);
                let missing = |annotation| PolicyError::MissingAnnotation { file: path.clone(), line, annotation };
                let id = id.ok_or_else(|| missing("id"))?;
                let reason = policy.annotation("reason").ok_or_else(|| missing("reason"))?.to_owned();
                if let Some(first) = meta.get(&id) {
                    return Err(PolicyError::DuplicateId {
                        id,
                        file: path.clone(),
                        line,
                        first: format!("{}:{}", first.file.display(), first.line),
                    });
                }
                let effect = match policy.effect() {
                    cedar_policy::Effect::Permit => Effect::Permit,
                    cedar_policy::Effect::Forbid => Effect::Forbid,
                };
                policies.add(policy.new_id(PolicyId::new(&id))).map_err(|e| PolicyError::Syntax {
                    file: path.clone(),
                    line,
                    message: e.to_string(),
                })?;
                meta.insert(id.clone(), PolicyMeta { id, reason, effect, file: path.clone(), line });
            }
            texts.insert(path.clone(), text);
        }

        let result = Validator::new(schema.clone()).validate(&policies, ValidationMode::Strict);
        if let Some(e) = result.validation_errors().next() {
            let id = e.policy_id().to_string();
            let m = meta.get(&id);
            let file = m.map(|m| m.file.clone()).unwrap_or_else(|| dir.to_owned());
            let line = match (first_label(e), texts.get(&file)) {
                (Some(offset), Some(text)) => line_of(text, offset),
                _ => m.map(|m| m.line).unwrap_or(1),
            };
            return Err(PolicyError::Validation { file, line, id, message: message(e, e) });
        }
        let actions = Action::ALL.map(|a| action_uid(a.name()));
        let cache_rules = CacheRules::from_policies(&policies, &action_store, &actions, &schema_attributes);
        for note in &cache_rules.notes {
            tracing::info!(dir = %dir.display(), "{note}");
        }
        Ok(Self {
            dir: dir.to_owned(),
            policies,
            meta,
            version,
            sources,
            authorizer: Authorizer::new(),
            actions,
            lookup: action_uid(LOOKUP),
            action_entities,
            cache_rules,
        })
    }

    /// The directory this engine was loaded from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A short digest of the schema and every policy file: the policy-set version.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The texts it was loaded from.
    pub fn sources(&self) -> &Sources {
        &self.sources
    }

    /// Every policy, by id.
    pub fn policies(&self) -> impl Iterator<Item = &PolicyMeta> {
        self.meta.values()
    }

    /// The `@reason` of a policy.
    pub fn reason(&self, id: &str) -> Option<&str> {
        self.meta.get(id).map(|m| m.reason.as_str())
    }

    /// Builds the entities of one alert and its candidate recipients, once,
    /// for every question about that alert.
    pub fn prepare(&self, facts: AlertFacts, nodes: &[&NodeInfo]) -> Prepared {
        Prepared { facts, nodes: nodes.iter().map(|n| (*n).clone()).collect(), entities: OnceLock::new() }
    }

    fn entities<'a>(&self, prepared: &'a Prepared) -> &'a Result<Entities, String> {
        prepared.entities.get_or_init(|| {
            let mut list = Vec::with_capacity(prepared.nodes.len() + 1 + self.action_entities.len());
            list.push(prepared.facts.entity.clone());
            list.extend(self.action_entities.iter().cloned());
            list.extend(prepared.nodes.iter().map(node_entity));
            // Shapes were checked against the schema at load (`check_fact_shapes`);
            // skipping the per-request schema pass keeps the hot path cheap.
            Entities::from_entities(list, None).map_err(|e| e.to_string())
        })
    }

    /// What a cached decision must be keyed on, derived from the policies' parsed form.
    pub fn cache_rules(&self) -> &CacheRules {
        &self.cache_rules
    }

    /// May `node` have `action` on the prepared alert? Evaluation errors deny.
    pub fn ask(
        &self,
        action: Action,
        prepared: &Prepared,
        node: &NodeInfo,
        officer: &str,
        relation: Relation,
    ) -> Answer {
        let context = disclosure_context(&prepared.facts, officer, relation);
        self.authorize(self.actions[action as usize].clone(), prepared, node, context)
    }

    /// May `node` learn, on a lookup, that the prepared alert exists? `node`
    /// must be among the prepared nodes. Evaluation errors deny.
    pub fn ask_lookup(&self, prepared: &Prepared, node: &NodeInfo, question: &LookupQuestion) -> Answer {
        let addressed = prepared.facts.addressees.iter().any(|a| a == node.id.as_str());
        let context = lookup_context(&prepared.facts, question, addressed);
        self.authorize(self.lookup.clone(), prepared, node, context)
    }

    fn authorize(
        &self,
        action: EntityUid,
        prepared: &Prepared,
        node: &NodeInfo,
        context: cedar_policy::Context,
    ) -> Answer {
        let fail = |e: String| Answer { allowed: false, policies: vec![], errors: vec![e] };
        let entities = match self.entities(prepared) {
            Ok(e) => e,
            Err(e) => return fail(format!("entities: {e}")),
        };
        let principal = node_uid(node);
        let request = match Request::new(principal, action, prepared.facts.uid.clone(), context, None) {
            Ok(r) => r,
            Err(e) => return fail(format!("request: {e}")),
        };
        let response = self.authorizer.is_authorized(&request, &self.policies, entities);
        let mut policies: Vec<String> = response.diagnostics().reason().map(|p| p.to_string()).collect();
        policies.sort();
        let errors: Vec<String> = response.diagnostics().errors().map(|e| e.to_string()).collect();
        Answer { allowed: response.decision() == CedarDecision::Allow && errors.is_empty(), policies, errors }
    }
}

/// The Cedar action asked for each alert a lookup matches.
pub const LOOKUP: &str = "lookup";

/// The Cedar disclosure actions, from most to least generous.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// `Action::"disclose_full"`.
    DiscloseFull = 0,
    /// `Action::"disclose_redacted"`.
    DiscloseRedacted = 1,
    /// `Action::"disclose_hit_only"`.
    DiscloseHitOnly = 2,
}

impl Action {
    /// Every action, in ladder order.
    pub const ALL: [Action; 3] = [Action::DiscloseFull, Action::DiscloseRedacted, Action::DiscloseHitOnly];

    /// The Cedar action id.
    pub fn name(self) -> &'static str {
        match self {
            Self::DiscloseFull => "disclose_full",
            Self::DiscloseRedacted => "disclose_redacted",
            Self::DiscloseHitOnly => "disclose_hit_only",
        }
    }
}

/// One alert's entities, ready for questions about any of its candidates.
/// The Cedar entity store is built on the first question, so an alert whose
/// decisions all come from the cache never builds it.
#[derive(Debug)]
pub struct Prepared {
    /// The alert's facts.
    pub facts: AlertFacts,
    nodes: Vec<NodeInfo>,
    entities: OnceLock<Result<Entities, String>>,
}

fn action_uid(name: &str) -> EntityUid {
    EntityUid::from_str(&format!("Action::\"{name}\"")).expect("static action ids parse")
}

/// Checks that the entities and contexts isx builds conform to `schema`, so
/// that a schema edited out of step with the code fails at load, not as
/// evaluation errors (which would deny everything) at run time.
fn check_fact_shapes(schema: &Schema, schema_path: &Path) -> Result<(), PolicyError> {
    use isx_core::wire::{Labels, SpecialCategoryData, Subject};
    let probe = isx_core::wire::Alert {
        alert_id: "probe".into(),
        origin: "probe-origin".into(),
        category: 1,
        action: 1,
        labels: Some(Labels {
            tlp: 1,
            handling_code: 1,
            pap: 1,
            source_reliability: 1,
            info_reliability: 1,
            tags: vec!["t".into()],
            ..Default::default()
        }),
        addressees: vec!["probe".into()],
        subjects: vec![Subject {
            minor: true,
            special_categories: vec![SpecialCategoryData::default()],
            ..Default::default()
        }],
        ..Default::default()
    };
    let node = NodeInfo {
        id: isx_core::NodeId::new("probe").expect("valid"),
        kind: isx_core::NodeKind::National,
        country: "XX".into(),
        roles: vec![isx_core::Role::Subscribe],
        name: String::new(),
    };
    let facts = crate::facts::alert_facts(&probe, Some(&node));
    let mismatch = |what: &str, e: &dyn fmt::Display| PolicyError::SchemaMismatch {
        file: schema_path.to_owned(),
        message: format!("{what}: {e}"),
    };
    Entities::from_entities([facts.entity.clone(), node_entity(&node)], Some(schema))
        .map_err(|e| mismatch("entities", &e))?;
    // An origin that is not registered has no `origin_kind`.
    Entities::from_entities([crate::facts::alert_facts(&probe, None).entity], Some(schema))
        .map_err(|e| mismatch("entities (unregistered origin)", &e))?;
    for action in Action::ALL {
        let context =
            disclosure_context(&facts, "probe", Relation { addressed: true, granted: true, ..Relation::default() });
        Request::new(node_uid(&node), action_uid(action.name()), facts.uid.clone(), context, Some(schema))
            .map_err(|e| mismatch(action.name(), &e))?;
    }
    let question = LookupQuestion { purpose: "p".into(), officer: "o".into(), data_types: vec!["document".into()] };
    Request::new(
        node_uid(&node),
        action_uid(LOOKUP),
        facts.uid.clone(),
        lookup_context(&facts, &question, true),
        Some(schema),
    )
    .map_err(|e| mismatch(LOOKUP, &e))?;
    Ok(())
}

/// Checks that each enumerated entity type of the schema
/// ([`crate::facts::ENUMS`]) lists exactly the values isx supplies: a value
/// missing from the schema could never be named by a policy, and an extra one
/// (a typo in the schema) would validate a policy that never matches.
fn check_enums(schema_text: &str, schema_path: &Path) -> Result<(), PolicyError> {
    let json = cedar_policy::SchemaFragment::from_cedarschema_str(schema_text)
        .ok()
        .and_then(|(fragment, _warnings)| fragment.to_json_value().ok())
        .unwrap_or(serde_json::Value::Null);
    let mismatch = |message: String| PolicyError::SchemaMismatch { file: schema_path.to_owned(), message };
    for (name, supplied) in crate::facts::enums() {
        let declared = json.get("").and_then(|ns| ns.pointer(&format!("/entityTypes/{name}/enum")));
        let Some(declared) = declared.and_then(|v| v.as_array()) else {
            return Err(mismatch(format!(
                "`{name}` must be an enumerated entity type: entity {name} enum [\"{}\", ...]",
                supplied.join("\", \"")
            )));
        };
        let declared: Vec<&str> = declared.iter().filter_map(|v| v.as_str()).collect();
        let missing: Vec<&str> = supplied.iter().map(String::as_str).filter(|v| !declared.contains(v)).collect();
        let extra: Vec<&str> = declared.iter().copied().filter(|v| !supplied.iter().any(|s| s == v)).collect();
        if !missing.is_empty() || !extra.is_empty() {
            let quote = |v: &[&str]| v.iter().map(|v| format!("\"{v}\"")).collect::<Vec<_>>().join(", ");
            let mut parts = Vec::new();
            if !missing.is_empty() {
                parts.push(format!("lacks {} which isx supplies", quote(&missing)));
            }
            if !extra.is_empty() {
                parts.push(format!("lists {} which isx never supplies", quote(&extra)));
            }
            return Err(mismatch(format!("enum {name} {}", parts.join(" and "))));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCHEMA: &str = include_str!("../../../deploy/local/policy/schema.cedarschema");
    const GOOD: &str = "@id(\"p\")\n@reason(\"r\")\npermit (principal, action in Action::\"disclose\", resource);\n";

    /// Loads a directory made of `files` and returns the error text, or "ok".
    fn load(files: &[(&str, &str)]) -> String {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        match PolicyEngine::load(dir.path()) {
            Ok(_) => "ok".into(),
            Err(e) => e.to_string().replace(&dir.path().display().to_string(), "DIR"),
        }
    }

    #[test]
    fn load_errors_name_file_and_line() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("s.cedarschema", SCHEMA), ("a.cedar", GOOD)], "ok"),
            (&[("a.cedar", GOOD)], "exactly one *.cedarschema"),
            (&[("s.cedarschema", SCHEMA)], "no *.cedar policy files"),
            (
                &[("s.cedarschema", &SCHEMA.replace("  hops: Long,\n", "")), ("a.cedar", GOOD)],
                "DIR/s.cedarschema: the schema does not match the entities",
            ),
            (&[("s.cedarschema", "entity Node = {"), ("a.cedar", GOOD)], "DIR/s.cedarschema:1: schema error"),
            (
                &[
                    ("s.cedarschema", SCHEMA),
                    ("a.cedar", "// one\n// two\npermit (principal, action, resource) when { ;\n"),
                ],
                "DIR/a.cedar:3:",
            ),
            (
                &[("s.cedarschema", SCHEMA), ("a.cedar", "@reason(\"r\")\npermit (principal, action, resource);\n")],
                "lacks @id",
            ),
            (
                &[("s.cedarschema", SCHEMA), ("a.cedar", "@id(\"x\")\npermit (principal, action, resource);\n")],
                "DIR/a.cedar:1: policy lacks @reason",
            ),
            (
                &[("s.cedarschema", SCHEMA), ("a.cedar", GOOD), ("b.cedar", GOOD)],
                "DIR/b.cedar:1: @id(\"p\") is already used at DIR/a.cedar:1",
            ),
            (
                &[
                    ("s.cedarschema", SCHEMA),
                    (
                        "a.cedar",
                        &format!(
                            "{GOOD}\n@id(\"bad\")\n@reason(\"r\")\nforbid (principal, action, resource)\nwhen {{ principal.colour == \"red\" }};\n"
                        ),
                    ),
                ],
                "DIR/a.cedar:8: policy bad does not validate",
            ),
            (
                &[
                    ("s.cedarschema", SCHEMA),
                    ("a.cedar", "@id(\"t\")\n@reason(\"r\")\npermit (principal == ?principal, action, resource);\n"),
                ],
                "templates",
            ),
        ];
        for (files, needle) in cases {
            let got = load(files);
            assert!(got.contains(needle), "{files:?}\n  got: {got}\n want: {needle}");
        }
    }

    #[test]
    fn a_misspelt_enumerated_value_fails_validation_naming_file_and_line() {
        for (condition, typo) in [
            ("[Category::\"terrorism\", Category::\"terorism\"].contains(resource.category)", "terorism"),
            ("resource.tlp == Tlp::\"amber-strict\"", "amber-strict"),
            ("resource.handling_code == HandlingCode::\"H2\"", "H2"),
            ("principal.kind == NodeKind::\"europool\"", "europool"),
            ("resource has origin_kind && resource.origin_kind == NodeKind::\"frontexx\"", "frontexx"),
        ] {
            let policy = format!(
                "{GOOD}\n@id(\"typo\")\n@reason(\"r\")\nforbid (principal, action, resource)\nwhen {{\n  {condition}\n}};\n"
            );
            let got = load(&[("s.cedarschema", SCHEMA), ("a.cedar", &policy)]);
            assert!(got.starts_with("DIR/a.cedar:9: policy typo does not validate"), "{condition}: {got}");
            assert!(got.contains(typo), "{condition}: {got}");
            // The correct spelling validates.
            let fixed = policy
                .replace("terorism", "terrorism")
                .replace("amber-strict", "amber_strict")
                .replace("\"H2\"", "\"h2\"")
                .replace("europool", "europol")
                .replace("frontexx", "frontex");
            assert_eq!(load(&[("s.cedarschema", SCHEMA), ("a.cedar", &fixed)]), "ok", "{condition}");
        }
        // A plain string where the schema has an enumerated type is a type error too.
        let string = format!(
            "{GOOD}\n@id(\"s\")\n@reason(\"r\")\nforbid (principal, action, resource)\nwhen {{ resource.category == \"terrorism\" }};\n"
        );
        let got = load(&[("s.cedarschema", SCHEMA), ("a.cedar", &string)]);
        assert!(got.starts_with("DIR/a.cedar:8: policy s does not validate"), "{got}");
    }

    #[test]
    fn a_schema_enum_must_list_exactly_what_isx_supplies() {
        let missing = SCHEMA.replace("\"amber_strict\", ", "");
        let got = load(&[("s.cedarschema", &missing), ("a.cedar", GOOD)]);
        assert!(
            got.contains("DIR/s.cedarschema: the schema does not match")
                && got.contains("enum Tlp lacks \"amber_strict\""),
            "{got}"
        );
        let extra = SCHEMA.replace("\"terrorism\",", "\"terrorism\", \"terorism\",");
        let got = load(&[("s.cedarschema", &extra), ("a.cedar", GOOD)]);
        assert!(got.contains("enum Category lists \"terorism\" which isx never supplies"), "{got}");
        let plain = SCHEMA
            .replace("  kind: NodeKind,", "  kind: String,")
            .replace("origin_kind?: NodeKind", "origin_kind?: String")
            .replace("entity NodeKind enum [\"national\", \"europol\", \"frontex\", \"auditor\"];", "");
        let got = load(&[("s.cedarschema", &plain), ("a.cedar", GOOD)]);
        assert!(got.contains("`NodeKind` must be an enumerated entity type"), "{got}");
    }

    #[test]
    fn version_changes_with_any_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("s.cedarschema"), SCHEMA).unwrap();
        std::fs::write(dir.path().join("a.cedar"), GOOD).unwrap();
        let v1 = PolicyEngine::load(dir.path()).unwrap().version().to_owned();
        std::fs::write(dir.path().join("a.cedar"), GOOD.replace("\"r\"", "\"r2\"")).unwrap();
        let v2 = PolicyEngine::load(dir.path()).unwrap().version().to_owned();
        assert_ne!(v1, v2);
        assert_eq!(v1.len(), 16);
    }
}
