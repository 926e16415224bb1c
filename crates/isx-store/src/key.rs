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
    /// Reads the key at `path`.
    pub fn load(path: &Path) -> Result<Self, KeyError> {
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
        std::fs::write(&path, "not hex").unwrap();
        assert!(matches!(StoreKey::load(&path), Err(KeyError::Malformed(_))));
    }
}
