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
        if !config.gateway.contains(':') {
            return Err(NodeConfigError::Invalid {
                key: "gateway".into(),
                message: format!("{:?} is not host:port", config.gateway),
            });
        }
        Ok(config)
    }
}
