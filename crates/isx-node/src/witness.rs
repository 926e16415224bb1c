//! The mock agency as a witness of the gateway it uses (`witness = true`).
//!
//! Every agency connected to isx is a natural witness: it cosigns (C2SP
//! `tlog-cosignature`) only checkpoints of the gateway's audit log that
//! consistently extend what it cosigned before, so the gateway cannot show
//! one participant a log the others did not also see. It serves the C2SP
//! `tlog-witness` `add-checkpoint` call over HTTPS (`isx_witness::server`)
//! with its witness identity from the PKI (`<id>.witness.crt`/`.key`,
//! `<id>.cosign.key`), keeps its state (the last size and root it
//! cosigned, fsynced before it answers) in `<data_dir>/witness`, and knows
//! one log: the one `<pki_dir>/audit.pub` names. Whatever it refuses is
//! logged as a warning and counted ([`Witness::refusals`]).

use std::path::Path;
use std::sync::Arc;

use isx_audit::witness::{KnownLog, Store};
use isx_witness::server::{Witness, server_tls};

/// Why the agency cannot witness.
#[derive(Debug, thiserror::Error)]
pub enum WitnessSetupError {
    /// A key or certificate is missing or unusable.
    #[error("witness of node {node}: {message} (create the deployment's witness keys with `isx pki init`)")]
    Keys {
        /// The node.
        node: String,
        /// What failed.
        message: String,
    },
    /// The state directory could not be opened.
    #[error("witness state: {0}")]
    State(#[from] isx_audit::witness::StateError),
}

/// What an agency needs to witness: the witness and its TLS identity.
#[derive(Clone)]
pub struct AgencyWitness {
    /// The decision and its state.
    pub witness: Arc<Witness>,
    /// Its HTTPS server configuration.
    pub tls: Arc<rustls::ServerConfig>,
}

impl std::fmt::Debug for AgencyWitness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgencyWitness").field("witness", &self.witness).finish_non_exhaustive()
    }
}

impl AgencyWitness {
    /// Loads node `id`'s witness identity from `pki_dir` and its state from `data_dir/witness`.
    pub fn load(pki_dir: &Path, id: &str, data_dir: &Path) -> Result<Self, WitnessSetupError> {
        let keys = |message: String| WitnessSetupError::Keys { node: id.to_owned(), message };
        let signer = isx_witness::keys::load_signer(pki_dir, id).map_err(|e| keys(e.to_string()))?;
        let (cert, key) = isx_tls::pki::witness_tls_paths(pki_dir, id);
        let tls = server_tls(&cert, &key).map_err(|e| keys(e.to_string()))?;
        let public = isx_audit::keys::paths(pki_dir).1;
        let vkey = std::fs::read_to_string(&public).map_err(|e| keys(format!("{}: {e}", public.display())))?;
        let vkey = vkey.trim().to_owned();
        let origin = isx_audit::keys::key_name(&vkey).to_owned();
        let store = Store::open(&data_dir.join("witness"))?;
        let witness = Witness::new(signer, vec![KnownLog { origin, keys: vec![vkey] }], store);
        Ok(Self { witness: Arc::new(witness), tls })
    }
}
