//! The gateway's audit keys, created by `isx pki init` beside the certificates.
//!
//! - `audit.key`: the Ed25519 checkpoint signing key, in the signed-note
//!   private-key format (`PRIVATE+KEY+<origin>+<id>+<base64>`). Its name is the
//!   log's origin line.
//! - `audit.pub`: the matching verifier key (`<origin>+<id>+<base64>`), for auditors.
//! - `audit-hmac.key`: 32 random bytes, hex, that key the subject pseudonyms.
//! - `audit-text.key`: a ChaCha20-Poly1305 key (an `isx_store` key file)
//!   that seals the free text of records (justifications and reasons, which
//!   may name people): give it to the auditors who must read them. Created
//!   with the other keys, or by [`load`] when it is missing (a PKI from
//!   before it existed).
//!
//! The two private keys are written mode 0600, also when `isx pki init
//! --force` replaces them, and [`load`] refuses either one if its group or
//! others may read it (`isx_store::check_private`), naming the file and the
//! fix (`chmod 600 FILE`).

use std::path::{Path, PathBuf};

use isx_core::identifiers::PseudonymKey;
use rand_core::{OsRng, RngCore};
use signed_note::{StandardSigner, StandardVerifier};

/// The name of a signed-note verifier key (`NAME+ID+KEY`): for a log's
/// key, its origin.
pub fn key_name(vkey: &str) -> &str {
    vkey.trim().split('+').next().unwrap_or_default()
}

/// The default origin (checkpoint first line and key name).
pub const DEFAULT_ORIGIN: &str = "isx.local/audit";

/// Why audit keys could not be created or loaded.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// A key file could not be read or written.
    #[error(
        "{path}: {source}. The audit keys are created with a new PKI (`isx pki init`); for an existing log, restore this file from its backup (a new key would not verify the log's checkpoints)"
    )]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A private key file is open to its group or to others.
    #[error(transparent)]
    Exposed(isx_store::KeyError),
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

/// The key file that seals records' free text, inside the PKI directory.
pub fn text_key_path(dir: &Path) -> PathBuf {
    dir.join("audit-text.key")
}

/// Writes a key file; a private one (`secret`) goes through
/// `isx_store::write_private`: mode 0600 even when it replaces a file.
fn write(path: &Path, text: &str, secret: bool) -> Result<(), KeyError> {
    use std::io::Write;
    let io = |source| KeyError::Io { path: path.to_owned(), source };
    if secret {
        return isx_store::write_private(path, text.as_bytes()).map_err(io);
    }
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).open(path).map_err(io)?;
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
    let text = text_key_path(dir);
    OsRng.fill_bytes(&mut bytes);
    write(&text, &format!("{}\n", hex::encode(bytes)), true)?;
    Ok(vec![key, public, hmac, text])
}

fn read(path: &Path) -> Result<String, KeyError> {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_owned())
        .map_err(|source| KeyError::Io { path: path.to_owned(), source })
}

/// Reads a private key file, refusing one that its group or others may read.
fn read_private(path: &Path) -> Result<String, KeyError> {
    isx_store::check_private(path).map_err(|e| match e {
        isx_store::KeyError::Io { path, source } => KeyError::Io { path, source },
        other => KeyError::Exposed(other),
    })?;
    read(path)
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
    /// Seals records' free text (see [`crate::text`]).
    pub text: isx_store::StoreKey,
}

impl std::fmt::Debug for AuditKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditKeys").field("origin", &self.origin).finish_non_exhaustive()
    }
}

/// Loads the audit keys from `dir`; refuses `audit.key` or
/// `audit-hmac.key` if its group or others may read it
/// ([`KeyError::Exposed`]).
pub fn load(dir: &Path) -> Result<AuditKeys, KeyError> {
    let (key, public, hmac) = paths(dir);
    let skey = read_private(&key)?;
    let signer = StandardSigner::new(&skey)
        .map_err(|_| KeyError::Invalid { path: key.clone(), what: "signed-note private key" })?;
    let verifier_key = read(&public)?;
    let verifier = StandardVerifier::new(&verifier_key)
        .map_err(|_| KeyError::Invalid { path: public.clone(), what: "signed-note verifier key" })?;
    if signed_note::Verifier::key_id(&verifier) != signed_note::Signer::key_id(&signer) {
        return Err(KeyError::Invalid { path: public, what: "verifier key for audit.key" });
    }
    let hmac_hex = read_private(&hmac)?;
    let bytes: [u8; 32] = hex::decode(&hmac_hex)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or(KeyError::Invalid { path: hmac, what: "32-byte hex HMAC key" })?;
    let origin = signed_note::Signer::name(&signer).to_owned();
    let text = load_text_key(dir)?;
    Ok(AuditKeys { signer, verifier_key, pseudonyms: PseudonymKey::new(bytes), origin, text })
}

/// Loads `audit-text.key` from `dir`, creating it (mode 0600) if missing.
/// Auditors call it to read records' sealed free text.
pub fn load_text_key(dir: &Path) -> Result<isx_store::StoreKey, KeyError> {
    let path = text_key_path(dir);
    let key_error = |e: isx_store::KeyError| match e {
        isx_store::KeyError::Io { path, source } => KeyError::Io { path, source },
        other => KeyError::Exposed(other),
    };
    isx_store::key::create(&path).map_err(key_error)?;
    isx_store::StoreKey::load(&path).map_err(key_error)
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

    #[cfg(unix)]
    fn mode(path: &std::path::Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[cfg(unix)]
    fn set_mode(path: &std::path::Path, mode: u32) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    /// Private keys are 0600, also when `create` replaces keys that were 0644.
    #[cfg(unix)]
    #[test]
    fn private_keys_are_written_0600_even_over_a_0644_file() {
        let dir = tempfile::tempdir().unwrap();
        let (key, _, hmac) = super::paths(dir.path());
        super::create(dir.path(), "test.example/log").unwrap();
        assert_eq!((mode(&key), mode(&hmac)), (0o600, 0o600));
        set_mode(&key, 0o644);
        set_mode(&hmac, 0o644);
        super::create(dir.path(), "test.example/log").unwrap();
        assert_eq!(mode(&key), 0o600, "a replaced audit.key is 0600");
        assert_eq!(mode(&hmac), 0o600, "a replaced audit-hmac.key is 0600");
        super::load(dir.path()).unwrap();
    }

    /// `load` refuses each private key that its group or others may read, naming it.
    #[cfg(unix)]
    #[test]
    fn load_refuses_a_key_others_may_read_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let (key, _, hmac) = super::paths(dir.path());
        super::create(dir.path(), "test.example/log").unwrap();
        for (path, loose) in [(&key, 0o644), (&hmac, 0o640)] {
            set_mode(path, loose);
            let err = super::load(dir.path()).unwrap_err();
            let text = err.to_string();
            assert!(matches!(err, super::KeyError::Exposed(_)), "{text}");
            assert!(text.contains(&path.display().to_string()), "names the file: {text}");
            assert!(text.contains(&format!("chmod 600 {}", path.display())), "says the fix: {text}");
            set_mode(path, 0o600);
        }
        super::load(dir.path()).unwrap();
    }
}
