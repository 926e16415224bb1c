//! The mock node's configuration file (`deploy/local/nodes/<id>.toml`).
//!
//! Relative paths are resolved against the file's directory.

use std::path::{Path, PathBuf};

use isx_core::NodeId;
use serde::Deserialize;

/// Why a node configuration is not usable.
#[derive(Debug, thiserror::Error)]
pub enum NodeConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The TOML does not parse or match the schema; the message names line and key.
    #[error("{path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The TOML error.
        source: toml::de::Error,
    },
    /// A value is invalid.
    #[error("{key}: {message}")]
    Invalid {
        /// The key.
        key: String,
        /// What is wrong.
        message: String,
    },
}

/// A mock agency node.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// The node id; its certificate is `<pki_dir>/<id>.crt`.
    pub id: NodeId,
    /// The gateway's `host:port`.
    #[serde(default = "default_gateway")]
    pub gateway: String,
    /// The PKI directory.
    pub pki_dir: PathBuf,
    /// Where the node keeps what it receives.
    pub data_dir: PathBuf,
    /// The officer named on calls unless the CLI's `--officer` overrides it.
    pub officer: String,
    /// How the node answers access requests for its alerts, tried in order;
    /// the first rule that matches decides. Without a match the request
    /// waits for a person (`isx access decide`).
    #[serde(default)]
    pub access: Vec<AccessRule>,
    /// Witness the gateway's audit log (C2SP tlog-witness over HTTPS, with
    /// `<pki_dir>/<id>.witness.crt` and `<id>.cosign.key`): add this
    /// agency to the gateway's witness policy at `witness_listen`.
    #[serde(default)]
    pub witness: bool,
    /// Where the witness listens (`host:port`).
    #[serde(default = "default_witness_listen")]
    pub witness_listen: std::net::SocketAddr,
}

fn default_witness_listen() -> std::net::SocketAddr {
    std::net::SocketAddr::from(([127, 0, 0, 1], 7461))
}

/// What a mock agency does with a matching access request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleDecision {
    /// Grant it (policy still decides the level).
    Grant,
    /// Deny it.
    Deny,
    /// Leave it for a person to decide with the CLI.
    Manual,
}

/// One answering rule: every field given must match.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessRule {
    /// The alert's crime area, as policy names it (e.g. `terrorism`, `migrant_smuggling`).
    #[serde(default)]
    pub category: Option<String>,
    /// The requesting node.
    #[serde(default)]
    pub requester: Option<NodeId>,
    /// What to do.
    pub decision: RuleDecision,
    /// The reason given with the decision (logged and shown to the requester).
    #[serde(default)]
    pub reason: Option<String>,
}

impl AccessRule {
    /// True if the rule matches a request for an alert of `category` from `requester`.
    pub fn matches(&self, category: &str, requester: &str) -> bool {
        self.category.as_deref().is_none_or(|c| c == category)
            && self.requester.as_ref().is_none_or(|r| r.as_str() == requester)
    }

    /// Who decides when this rule (`access[index]` of the node config)
    /// answers: the rule, never a person, e.g. `standing rule access[0]:
    /// grant migrant_smuggling`. Sent as the officer, so the audit log and
    /// the request's `decided_by` name it.
    pub fn actor(&self, index: usize) -> String {
        let what = match self.decision {
            RuleDecision::Grant => "grant",
            RuleDecision::Deny => "deny",
            RuleDecision::Manual => "manual",
        };
        let mut actor = format!("standing rule access[{index}]: {what}");
        if let Some(c) = &self.category {
            actor.push_str(&format!(" {c}"));
        }
        if let Some(r) = &self.requester {
            actor.push_str(&format!(" from {r}"));
        }
        // The officer header holds at most 128 printable ASCII characters.
        actor.retain(|c| c.is_ascii_graphic() || c == ' ');
        actor.truncate(128);
        actor
    }

    /// The reason sent with the decision.
    pub fn reason(&self) -> String {
        self.reason.clone().unwrap_or_else(|| match (&self.category, &self.requester, self.decision) {
            (_, _, RuleDecision::Manual) => String::new(),
            (c, r, d) => format!(
                "{} by the agency's standing rule{}{}",
                if d == RuleDecision::Grant { "granted" } else { "denied" },
                c.as_ref().map(|c| format!(" for {c}")).unwrap_or_default(),
                r.as_ref().map(|r| format!(" for requests from {r}")).unwrap_or_default(),
            ),
        })
    }
}

/// The first rule that matches, if any, with its index.
pub fn first_match<'a>(rules: &'a [AccessRule], category: &str, requester: &str) -> Option<(usize, &'a AccessRule)> {
    rules.iter().enumerate().find(|(_, r)| r.matches(category, requester))
}

/// Checks each rule's category against the crime areas isx knows.
pub fn check_rules(rules: &[AccessRule]) -> Result<(), NodeConfigError> {
    use isx_core::wire::Category;
    let known: Vec<String> =
        (1..=40).filter_map(|n| Category::try_from(n).ok()).map(isx_core::display::category).collect();
    for (i, rule) in rules.iter().enumerate() {
        if let Some(c) = &rule.category
            && !known.contains(c)
        {
            return Err(NodeConfigError::Invalid {
                key: format!("access[{i}].category"),
                message: format!("{c:?} is not a crime area; use one of {}", known.join(", ")),
            });
        }
    }
    Ok(())
}

fn default_gateway() -> String {
    "localhost:7443".into()
}

impl NodeConfig {
    /// Reads, parses and validates `path`.
    pub fn load(path: &Path) -> Result<Self, NodeConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| NodeConfigError::Read { path: path.to_owned(), source })?;
        let mut config: Self =
            toml::from_str(&text).map_err(|source| NodeConfigError::Parse { path: path.to_owned(), source })?;
        let base = path.parent().unwrap_or(Path::new("."));
        for p in [&mut config.pki_dir, &mut config.data_dir] {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        if config.officer.trim().is_empty() {
            return Err(NodeConfigError::Invalid {
                key: "officer".into(),
                message: "is required: it names who acts for this node".into(),
            });
        }
        check_rules(&config.access)?;
        if !config.gateway.contains(':') {
            return Err(NodeConfigError::Invalid {
                key: "gateway".into(),
                message: format!("{:?} is not host:port", config.gateway),
            });
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<NodeConfig, String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("n.toml");
        std::fs::write(&path, text).unwrap();
        NodeConfig::load(&path).map_err(|e| e.to_string())
    }

    const BASE: &str = "id = \"de-police\"\npki_dir = \"pki\"\ndata_dir = \"data\"\nofficer = \"o\"\n";

    #[test]
    fn access_rules_match_in_order_and_bad_ones_name_the_key() {
        let config = load(&format!(
            "{BASE}[[access]]\ncategory = \"terrorism\"\nrequester = \"europol\"\ndecision = \"grant\"\n\
             [[access]]\nrequester = \"europol\"\ndecision = \"deny\"\nreason = \"no\"\n"
        ))
        .unwrap();
        let rules = &config.access;
        assert_eq!(first_match(rules, "terrorism", "europol").map(|(_, r)| r.decision), Some(RuleDecision::Grant));
        assert_eq!(first_match(rules, "cybercrime", "europol").map(|(_, r)| r.decision), Some(RuleDecision::Deny));
        assert!(first_match(rules, "terrorism", "fr-police").is_none());
        let (index, rule) = first_match(rules, "cybercrime", "europol").unwrap();
        assert_eq!(rule.actor(index), "standing rule access[1]: deny from europol");
        assert_eq!(rules[0].reason(), "granted by the agency's standing rule for terrorism for requests from europol");
        assert_eq!(rules[1].reason(), "no");

        let err = load(&format!("{BASE}[[access]]\ncategory = \"piracy\"\ndecision = \"grant\"\n")).unwrap_err();
        assert!(err.contains("access[0].category") && err.contains("migrant_smuggling"), "{err}");
        let err = load(&format!("{BASE}[[access]]\ndecision = \"maybe\"\n")).unwrap_err();
        assert!(err.contains("unknown variant `maybe`"), "{err}");
    }

    #[test]
    fn the_shipped_node_configs_load() {
        let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/local/nodes");
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            NodeConfig::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        }
    }
}
