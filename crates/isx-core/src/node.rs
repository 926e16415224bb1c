//! Node identities, kinds and roles.
//!
//! A node id is what a certificate carries in its SAN URI
//! (`spiffe://isx/node/<id>`) and what alerts name in `origin` and
//! `addressees`: lower-case letters, digits and `-`, 1 to 63 characters,
//! starting with a letter.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The SAN URI prefix under which a certificate carries its node id.
pub const NODE_URI_PREFIX: &str = "spiffe://isx/node/";

/// The SAN URI of the gateway's own certificate.
pub const GATEWAY_URI: &str = "spiffe://isx/gateway";

/// A validated node identifier such as `de-police`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct NodeId(String);

/// Why a string is not a node id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodeIdError {
    /// The string is empty.
    #[error("node id is empty")]
    Empty,
    /// The string is longer than 63 bytes.
    #[error("node id {0:?} is longer than 63 characters")]
    TooLong(String),
    /// The string holds a character outside `a-z`, `0-9` and `-`, or does not start with a letter.
    #[error("node id {0:?} must start with a-z and hold only a-z, 0-9 and '-'")]
    BadCharacter(String),
}

impl NodeId {
    /// Parses and validates a node id.
    pub fn new(s: impl Into<String>) -> Result<Self, NodeIdError> {
        let s = s.into();
        if s.is_empty() {
            return Err(NodeIdError::Empty);
        }
        if s.len() > 63 {
            return Err(NodeIdError::TooLong(s));
        }
        let mut bytes = s.bytes();
        let first_ok = bytes.next().is_some_and(|b| b.is_ascii_lowercase());
        if !first_ok || !s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
            return Err(NodeIdError::BadCharacter(s));
        }
        Ok(Self(s))
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The SAN URI that names this node in a certificate.
    pub fn san_uri(&self) -> String {
        format!("{NODE_URI_PREFIX}{}", self.0)
    }

    /// Extracts the node id from a certificate SAN URI, if it is one.
    pub fn from_san_uri(uri: &str) -> Option<Self> {
        uri.strip_prefix(NODE_URI_PREFIX).and_then(|id| Self::new(id).ok())
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for NodeId {
    type Err = NodeIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl TryFrom<String> for NodeId {
    type Error = NodeIdError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::new(s)
    }
}

impl From<NodeId> for String {
    fn from(id: NodeId) -> Self {
        id.0
    }
}

impl AsRef<str> for NodeId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// Maps keyed by [`NodeId`] can be read with a `&str` (the order and
/// equality are the string's).
impl std::borrow::Borrow<str> for NodeId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

/// What kind of agency a node is. Policy keys on this.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeKind {
    /// A Member State's police or other competent authority.
    National,
    /// Europol.
    Europol,
    /// Frontex, the European Border and Coast Guard Agency.
    Frontex,
    /// A supervisory body that reads only the audit log.
    Auditor,
}

impl NodeKind {
    /// The lower-case name used in config and policy.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::National => "national",
            Self::Europol => "europol",
            Self::Frontex => "frontex",
            Self::Auditor => "auditor",
        }
    }

    /// The roles a node of this kind has when its config lists none.
    pub fn default_roles(self) -> Vec<Role> {
        match self {
            Self::Auditor => vec![Role::Audit],
            _ => vec![Role::Publish, Role::Subscribe, Role::Lookup],
        }
    }
}

impl fmt::Display for NodeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a node may do at the gateway.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// May publish and forward alerts.
    Publish,
    /// May receive deliveries (and so be a recipient at all).
    Subscribe,
    /// May run hit/no-hit lookups.
    Lookup,
    /// May read the audit log.
    Audit,
    /// May change what governs disclosure and retention: reload the policy,
    /// place and lift legal holds, prune (the `Admin` service).
    Admin,
}

impl Role {
    /// The lower-case name used in config and errors.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Publish => "publish",
            Self::Subscribe => "subscribe",
            Self::Lookup => "lookup",
            Self::Audit => "audit",
            Self::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A registered node: who it is, what kind of agency, and what it may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    /// The node id.
    pub id: NodeId,
    /// Its kind.
    pub kind: NodeKind,
    /// Its country (ISO 3166-1 alpha-2, `EU` for Union agencies).
    pub country: String,
    /// Its roles.
    pub roles: Vec<Role>,
    /// Its display name.
    pub name: String,
}

impl NodeInfo {
    /// True if the node holds `role`.
    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_ids() {
        let cases: &[(&str, bool)] = &[
            ("de-police", true),
            ("europol", true),
            ("a", true),
            ("x9", true),
            ("", false),
            ("De-police", false),
            ("9lives", false),
            ("-lead", false),
            ("de_police", false),
            ("de police", false),
            (&"a".repeat(64), false),
        ];
        for (input, ok) in cases {
            assert_eq!(NodeId::new(*input).is_ok(), *ok, "{input:?}");
        }
    }

    #[test]
    fn san_round_trip() {
        let id = NodeId::new("fr-police").unwrap();
        assert_eq!(id.san_uri(), "spiffe://isx/node/fr-police");
        assert_eq!(NodeId::from_san_uri(&id.san_uri()), Some(id));
        assert_eq!(NodeId::from_san_uri("spiffe://isx/gateway"), None);
        assert_eq!(NodeId::from_san_uri("spiffe://other/node/x"), None);
    }
}
