//! The gateway's audit keys, created by `isx pki init` beside the certificates.
//!
//! - `audit.key`: the Ed25519 checkpoint signing key, in the signed-note
//!   private-key format (`PRIVATE+KEY+<origin>+<id>+<base64>`). Its name is the
//!   log's origin line.
//! - `audit.pub`: the matching verifier key (`<origin>+<id>+<base64>`), for auditors.
//! - `audit-hmac.key`: 32 random bytes, hex, that key the subject pseudonyms.

use std::path::{Path, PathBuf};

use isx_core::identifiers::PseudonymKey;
use rand_core::{OsRng, RngCore};
use signed_note::{StandardSigner, StandardVerifier};

/// The default origin (checkpoint first line and key name).
pub const DEFAULT_ORIGIN: &str = "isx.local/audit";

/// Why audit keys could not be created or loaded.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// A key file could not be read or written.
    #[error("{path}: {source}. Run `isx pki init` to create the audit keys")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A key file does not hold a valid key.
    #[error("{path}: not a valid {what}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What was expected.
        what: &'static str,
    },
}

/// The file names inside the PKI directory.
pub fn paths(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    (dir.join("audit.key"), dir.join("audit.pub"), dir.join("audit-hmac.key"))
}

fn write(path: &Path, text: &str, secret: bool) -> Result<(), KeyError> {
    use std::io::Write;
    let io = |source| KeyError::Io { path: path.to_owned(), source };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options.open(path).map_err(io)?;
    f.write_all(text.as_bytes()).map_err(io)?;
    f.sync_all().map_err(io)
}

/// Creates fresh audit keys in `dir` for a log named `origin`; returns the files written.
pub fn create(dir: &Path, origin: &str) -> Result<Vec<PathBuf>, KeyError> {
    let (key, public, hmac) = paths(dir);
    let (skey, vkey) = signed_note::generate_key(&mut OsRng, origin);
    write(&key, &format!("{skey}\n"), true)?;
    write(&public, &format!("{vkey}\n"), false)?;
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    write(&hmac, &format!("{}\n", hex::encode(bytes)), true)?;
    Ok(vec![key, public, hmac])
}

fn read(path: &Path) -> Result<String, KeyError> {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_owned())
        .map_err(|source| KeyError::Io { path: path.to_owned(), source })
}

/// The loaded audit keys.
pub struct AuditKeys {
    /// Signs checkpoints.
    pub signer: StandardSigner,
    /// The verifier key text (`<origin>+<id>+<base64>`).
    pub verifier_key: String,
    /// Keys subject pseudonyms.
    pub pseudonyms: PseudonymKey,
    /// The log's origin (the key name).
    pub origin: String,
}

impl std::fmt::Debug for AuditKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditKeys").field("origin", &self.origin).finish_non_exhaustive()
    }
}

/// Loads the audit keys from `dir`.
pub fn load(dir: &Path) -> Result<AuditKeys, KeyError> {
    let (key, public, hmac) = paths(dir);
    let skey = read(&key)?;
    let signer = StandardSigner::new(&skey)
        .map_err(|_| KeyError::Invalid { path: key.clone(), what: "signed-note private key" })?;
    let verifier_key = read(&public)?;
    let verifier = StandardVerifier::new(&verifier_key)
        .map_err(|_| KeyError::Invalid { path: public.clone(), what: "signed-note verifier key" })?;
    if signed_note::Verifier::key_id(&verifier) != signed_note::Signer::key_id(&signer) {
        return Err(KeyError::Invalid { path: public, what: "verifier key for audit.key" });
    }
    let hmac_hex = read(&hmac)?;
    let bytes: [u8; 32] = hex::decode(&hmac_hex)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or(KeyError::Invalid { path: hmac, what: "32-byte hex HMAC key" })?;
    let origin = signed_note::Signer::name(&signer).to_owned();
    Ok(AuditKeys { signer, verifier_key, pseudonyms: PseudonymKey::new(bytes), origin })
}

#[cfg(test)]
mod tests {
    #[test]
    fn create_then_load() {
        let dir = tempfile::tempdir().unwrap();
        super::create(dir.path(), "test.example/log").unwrap();
        let keys = super::load(dir.path()).unwrap();
        assert_eq!(keys.origin, "test.example/log");
        assert!(keys.verifier_key.starts_with("test.example/log+"));
        std::fs::write(dir.path().join("audit-hmac.key"), "zz").unwrap();
        assert!(super::load(dir.path()).unwrap_err().to_string().contains("audit-hmac.key"));
    }
}
