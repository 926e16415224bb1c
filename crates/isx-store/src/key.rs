//! Store keys: a 32-byte ChaCha20-Poly1305 key (ring) in a key file of its
//! own, `<owner>.store.key` in the key directory.
//!
//! A sealed value is `0x01 ‖ nonce (12 random bytes) ‖ ciphertext ‖ tag`; the
//! associated data names where the value lives (see [`crate::SealedTree`]),
//! so a value moved to another row does not open. A store records a sealed
//! canary when it is created ([`StoreKey::for_store`]); opening it with
//! another key, or without the key, fails at start with an error that names
//! the key file: never silent data loss.
//!
//! Random 96-bit nonces keep the chance of a repeat negligible below about
//! 2^32 values per key; rotate the key (a new store) long before that.
//!
//! # Private key files
//! Every private key isx writes (store keys, the TLS keys of `isx pki`, the
//! audit keys) is written with [`write_private`]: mode 0600 from its first
//! byte, also when it replaces an existing file. Every private key isx loads
//! is first checked with [`check_private`], which refuses a file that its
//! group or others may read, write or execute, naming the file and the fix
//! (`chmod 600 FILE`). Both are for Unix permissions; elsewhere
//! [`check_private`] accepts every file.

use std::path::{Path, PathBuf};

use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};

const VERSION: u8 = 1;
const CANARY: &[u8] = b"isx store key check";

/// Why a store key or a sealed value is unusable.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The key file cannot be read or written.
    #[error("store key {path}: {source}")]
    Io {
        /// The key file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The key file is not 64 hex digits.
    #[error("store key {0}: not a 32-byte key in hex (64 hex digits)")]
    Malformed(PathBuf),
    /// The store holds encrypted data but its key file is gone.
    #[error(
        "store key {0} is missing, but the data directory holds data sealed under it; restore the key file (without it the data cannot be read), or move the data directory away to start empty"
    )]
    Missing(PathBuf),
    /// The store was sealed under another key.
    #[error(
        "store key {0} does not open this data directory: it was sealed under another key; use the key it was created with"
    )]
    WrongKey(PathBuf),
    /// A stored value does not open: damaged, moved, or sealed under another key.
    #[error("a stored value does not open ({0}): the data directory is damaged or was tampered with")]
    Corrupt(&'static str),
    /// A private key file may be read (or written) by its group or by others.
    #[error(
        "private key {path} is accessible to its group or to others (mode {mode:04o}); a key must be readable by its owner only: run `chmod 600 {path}`"
    )]
    Exposed {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
}

/// Refuses a private key file whose permissions let its group or others in
/// (any of the bits 0o077), naming the file and the fix. A missing or
/// unreadable file is [`KeyError::Io`] (with `NotFound` for a missing one);
/// the caller reads the file next and may report that its own way.
///
/// On platforms without Unix permissions every file is accepted.
pub fn check_private(path: &Path) -> Result<(), KeyError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(path).map_err(|source| KeyError::Io { path: path.to_owned(), source })?;
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(KeyError::Exposed { path: path.to_owned(), mode });
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// Writes `contents` to the private file `path`, mode 0600, replacing any
/// file there: the bytes go to a new temporary file (mode 0600 from its
/// creation) in the same directory, which is synced and then renamed over
/// `path`, so a replaced key never keeps the old file's permissions and a
/// crash leaves either the old file or the new one.
pub fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    let name = path.file_name().ok_or_else(|| std::io::Error::other("a private file needs a file name"))?;
    let mut suffix = [0u8; 8];
    SystemRandom::new()
        .fill(&mut suffix)
        .map_err(|_| std::io::Error::other("the system random number generator failed"))?;
    let tmp = dir.join(format!(".{}.{}.tmp", name.to_string_lossy(), hex::encode(suffix)));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let result = (|| {
        let mut file = options.open(&tmp)?;
        file.write_all(contents)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&tmp, path)?;
        // The rename is durable once the directory is synced (Unix only).
        #[cfg(unix)]
        std::fs::File::open(&dir)?.sync_all()?;
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// A store's key.
pub struct StoreKey {
    key: LessSafeKey,
    path: PathBuf,
    rng: SystemRandom,
}

impl std::fmt::Debug for StoreKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreKey").field("path", &self.path).finish_non_exhaustive()
    }
}

/// The key file of a store owner (`gateway`, or a node id) in `dir`.
pub fn key_path(dir: &Path, owner: &str) -> PathBuf {
    dir.join(format!("{owner}.store.key"))
}

fn write_new(path: &Path) -> Result<(), KeyError> {
    let io = |source| KeyError::Io { path: path.to_owned(), source };
    let mut bytes = [0u8; 32];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| io(std::io::Error::other("the system random number generator failed")))?;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(io)?;
    std::io::Write::write_all(&mut file, format!("{}\n", hex::encode(bytes)).as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)
}

/// Creates a new key file at `path` unless one exists; returns true if it wrote one.
pub fn create(path: &Path) -> Result<bool, KeyError> {
    if path.exists() {
        return Ok(false);
    }
    write_new(path)?;
    Ok(true)
}

impl StoreKey {
    /// Reads the key at `path`, refusing one that its group or others may
    /// read ([`check_private`]).
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        check_private(path).map_err(|e| match e {
            KeyError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                KeyError::Missing(path.to_owned())
            }
            other => other,
        })?;
        let text = std::fs::read_to_string(path).map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => KeyError::Missing(path.to_owned()),
            _ => KeyError::Io { path: path.to_owned(), source },
        })?;
        let bytes = hex::decode(text.trim()).map_err(|_| KeyError::Malformed(path.to_owned()))?;
        let unbound = UnboundKey::new(&CHACHA20_POLY1305, &bytes).map_err(|_| KeyError::Malformed(path.to_owned()))?;
        Ok(Self { key: LessSafeKey::new(unbound), path: path.to_owned(), rng: SystemRandom::new() })
    }

    /// The key for a store: if the store is new (`canary` is `None`), the
    /// key file is created when missing and the canary to record is returned;
    /// otherwise the key must exist and open `canary`.
    pub fn for_store(path: &Path, canary: Option<&[u8]>) -> Result<(Self, Option<Vec<u8>>), KeyError> {
        match canary {
            None => {
                create(path)?;
                let key = Self::load(path)?;
                let sealed = key.seal(b"canary", CANARY);
                Ok((key, Some(sealed)))
            }
            Some(sealed) => {
                let key = Self::load(path)?;
                match key.open(b"canary", sealed) {
                    Ok(plain) if plain == CANARY => Ok((key, None)),
                    _ => Err(KeyError::WrongKey(path.to_owned())),
                }
            }
        }
    }

    /// The key file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Seals `plaintext`, bound to `aad` (where the value lives).
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).expect("the system random number generator works");
        let mut out = Vec::with_capacity(1 + NONCE_LEN + plaintext.len() + CHACHA20_POLY1305.tag_len());
        out.push(VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plaintext);
        let mut tail = out.split_off(1 + NONCE_LEN);
        self.key
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad), &mut tail)
            .expect("sealing fails only for absurd lengths");
        out.extend_from_slice(&tail);
        out
    }

    /// Opens a value sealed with [`StoreKey::seal`] under the same `aad`.
    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, KeyError> {
        let corrupt = || KeyError::Corrupt("sealed value");
        if sealed.len() < 1 + NONCE_LEN + CHACHA20_POLY1305.tag_len() || sealed[0] != VERSION {
            return Err(corrupt());
        }
        let nonce: [u8; NONCE_LEN] = sealed[1..1 + NONCE_LEN].try_into().map_err(|_| corrupt())?;
        let mut buf = sealed[1 + NONCE_LEN..].to_vec();
        let plain = self
            .key
            .open_in_place(Nonce::assume_unique_for_key(nonce), Aad::from(aad), &mut buf)
            .map_err(|_| corrupt())?;
        Ok(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_and_every_way_to_fail() {
        let dir = tempfile::tempdir().unwrap();
        let path = key_path(dir.path(), "gateway");
        let (key, canary) = StoreKey::for_store(&path, None).unwrap();
        let canary = canary.unwrap();
        let sealed = key.seal(b"alerts/a1", b"Brandt C4J9X1R27");
        assert!(!sealed.windows(6).any(|w| w == b"Brandt"));
        assert_eq!(key.open(b"alerts/a1", &sealed).unwrap(), b"Brandt C4J9X1R27");
        assert_ne!(key.seal(b"x", b"same"), key.seal(b"x", b"same"), "fresh nonce each time");
        assert!(matches!(key.open(b"alerts/a2", &sealed), Err(KeyError::Corrupt(_))), "bound to its row");
        let mut flipped = sealed.clone();
        flipped[20] ^= 1;
        assert!(key.open(b"alerts/a1", &flipped).is_err());
        assert!(key.open(b"alerts/a1", &sealed[..10]).is_err());

        // The same key reopens the store; another key or none is refused by name.
        assert!(StoreKey::for_store(&path, Some(&canary)).is_ok());
        let other = key_path(dir.path(), "other");
        create(&other).unwrap();
        let err = StoreKey::for_store(&other, Some(&canary)).unwrap_err();
        assert!(matches!(err, KeyError::WrongKey(_)) && err.to_string().contains("other.store.key"), "{err}");
        std::fs::remove_file(&path).unwrap();
        let err = StoreKey::for_store(&path, Some(&canary)).unwrap_err();
        assert!(matches!(err, KeyError::Missing(_)) && err.to_string().contains("gateway.store.key"), "{err}");
        write_private(&path, b"not hex").unwrap();
        assert!(matches!(StoreKey::load(&path), Err(KeyError::Malformed(_))));
    }

    #[cfg(unix)]
    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[cfg(unix)]
    fn set_mode(path: &Path, mode: u32) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    /// A new store key is 0600; one that its group or others may read is
    /// refused by `load` (and so by `for_store`), naming the file and the fix.
    #[cfg(unix)]
    #[test]
    fn a_store_key_others_may_read_is_refused_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = key_path(dir.path(), "gateway");
        let (_, canary) = StoreKey::for_store(&path, None).unwrap();
        assert_eq!(mode(&path), 0o600);
        for loose in [0o644, 0o640, 0o604, 0o610] {
            set_mode(&path, loose);
            let err = StoreKey::for_store(&path, canary.as_deref()).unwrap_err();
            let text = err.to_string();
            assert!(matches!(err, KeyError::Exposed { mode, .. } if mode == loose), "{loose:o}: {text}");
            assert!(text.contains(&format!("chmod 600 {}", path.display())), "{text}");
        }
        set_mode(&path, 0o400);
        StoreKey::load(&path).expect("owner-only read is enough");
    }

    /// `write_private` leaves a 0600 file also where it replaces a 0644 one,
    /// and no temporary file behind.
    #[cfg(unix)]
    #[test]
    fn write_private_replaces_a_0644_file_with_a_0600_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("some.key");
        std::fs::write(&path, "old").unwrap();
        set_mode(&path, 0o644);
        write_private(&path, b"new").unwrap();
        assert_eq!(mode(&path), 0o600);
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        check_private(&path).unwrap();
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("some.key")], "no temporary file left");
    }
}
