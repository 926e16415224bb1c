//! A sled database whose values are sealed under a store key.

use std::path::Path;
use std::sync::Arc;

use prost::Message;

use crate::key::{KeyError, StoreKey};
use crate::open::{OpenError, open};

/// Why a sealed store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database did not open.
    #[error(transparent)]
    Open(#[from] OpenError),
    /// sled failed.
    #[error("storage: {0}")]
    Sled(#[from] sled::Error),
    /// The store key is missing or wrong, or a sealed value does not open.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The data directory was written before encryption at rest.
    #[error(
        "{0}: this data directory holds data written without encryption at rest; move it away (the store then starts empty)"
    )]
    Unsealed(String),
    /// A stored value does not decode: the data directory is damaged.
    #[error("stored {what} does not decode: {source}")]
    Corrupt {
        /// Which kind of value.
        what: &'static str,
        /// The decode error.
        source: prost::DecodeError,
    },
}

/// Decodes a stored (unsealed) protobuf value, naming what it is if it is damaged.
pub fn decode<M: Message + Default>(what: &'static str, bytes: &[u8]) -> Result<M, StoreError> {
    M::decode(bytes).map_err(|source| StoreError::Corrupt { what, source })
}

/// A sled database with a store key whose canary it holds.
///
/// The canary (in the `meta` tree) is sealed when the store is created; a
/// store opened with another key, or without its key file, is refused at
/// once, naming the key file.
#[derive(Clone)]
pub struct SealedDb {
    /// The database.
    db: sled::Db,
    /// The key every sealed tree seals under.
    key: Arc<StoreKey>,
}

impl std::fmt::Debug for SealedDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedDb").field("key", &self.key.path()).finish_non_exhaustive()
    }
}

impl SealedDb {
    /// Opens (or creates) the database at `dir` with at most `cache_bytes`
    /// of page cache, sealed under the key at `key_file` (created with a new
    /// store if missing).
    ///
    /// `sealed_trees` names the trees that hold sealed values: a database
    /// with data in one of them but no canary predates encryption at rest
    /// and is refused ([`StoreError::Unsealed`]).
    pub fn open(dir: &Path, key_file: &Path, cache_bytes: u64, sealed_trees: &[&str]) -> Result<Self, StoreError> {
        let db = open(dir, cache_bytes)?;
        let meta = db.open_tree("meta")?;
        let canary = meta.get("canary")?;
        if canary.is_none() {
            for name in sealed_trees {
                if !db.open_tree(name)?.is_empty() {
                    return Err(StoreError::Unsealed(dir.display().to_string()));
                }
            }
        }
        let (key, fresh) = StoreKey::for_store(key_file, canary.as_deref())?;
        if let Some(fresh) = fresh {
            meta.insert("canary", fresh)?;
            db.flush()?;
        }
        Ok(Self { db, key: Arc::new(key) })
    }

    /// The database, for plain trees, flushes and id generation.
    pub fn db(&self) -> &sled::Db {
        &self.db
    }

    /// The tree `name`, whose values this store seals.
    pub fn sealed(&self, name: &'static str) -> Result<SealedTree, StoreError> {
        Ok(SealedTree { tree: self.db.open_tree(name)?, name, key: self.key.clone() })
    }
}

/// A tree whose values are sealed under the store key, each bound to the
/// tree's name and its own key: a value copied to another row or tree does
/// not open.
#[derive(Clone)]
pub struct SealedTree {
    /// The sled tree.
    tree: sled::Tree,
    /// Its name, part of every value's associated data.
    name: &'static str,
    /// The store key.
    key: Arc<StoreKey>,
}

impl std::fmt::Debug for SealedTree {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedTree").field("name", &self.name).finish_non_exhaustive()
    }
}

impl SealedTree {
    /// The associated data of the value at `key`.
    fn aad(&self, key: &[u8]) -> Vec<u8> {
        [self.name.as_bytes(), b"/", key].concat()
    }

    /// The underlying tree: for range scans, removals and transactions.
    /// Values written through it must come from [`SealedTree::seal`].
    pub fn raw(&self) -> &sled::Tree {
        &self.tree
    }

    /// `plaintext` sealed for the row `key` of this tree.
    pub fn seal(&self, key: &[u8], plaintext: &[u8]) -> Vec<u8> {
        self.key.seal(&self.aad(key), plaintext)
    }

    /// `message` encoded and sealed for the row `key`.
    pub fn seal_message<M: Message>(&self, key: &[u8], message: &M) -> Vec<u8> {
        self.seal(key, &message.encode_to_vec())
    }

    /// Opens a value read from the row `key` and decodes it as `M`; `what`
    /// names the kind of value in errors.
    pub fn unseal<M: Message + Default>(&self, what: &'static str, key: &[u8], sealed: &[u8]) -> Result<M, StoreError> {
        let plain = self.key.open(&self.aad(key), sealed)?;
        decode(what, &plain)
    }

    /// The value at `key`, opened and decoded.
    pub fn get<M: Message + Default>(&self, what: &'static str, key: &[u8]) -> Result<Option<M>, StoreError> {
        self.tree.get(key)?.map(|v| self.unseal(what, key, &v)).transpose()
    }

    /// Seals `message` and stores it at `key`.
    pub fn insert<M: Message>(&self, key: &[u8], message: &M) -> Result<(), StoreError> {
        self.tree.insert(key, self.seal_message(key, message))?;
        Ok(())
    }

    /// Every row, opened and decoded, in key order.
    pub fn iter<M: Message + Default>(
        &self,
        what: &'static str,
    ) -> impl Iterator<Item = Result<(sled::IVec, M), StoreError>> + '_ {
        self.tree.iter().map(move |item| {
            let (k, v) = item?;
            let m = self.unseal(what, &k, &v)?;
            Ok((k, m))
        })
    }

    /// True if the tree holds nothing.
    pub fn is_empty(&self) -> bool {
        self.tree.is_empty()
    }

    /// How many rows the tree holds.
    pub fn len(&self) -> usize {
        self.tree.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, PartialEq, Message)]
    struct Note {
        #[prost(string, tag = "1")]
        text: String,
    }

    #[test]
    fn sealed_rows_open_only_where_they_were_written() {
        let dir = tempfile::tempdir().unwrap();
        let key_file = dir.path().join("k.store.key");
        let store = SealedDb::open(&dir.path().join("db"), &key_file, 1 << 20, &["notes"]).unwrap();
        let notes = store.sealed("notes").unwrap();
        let other = store.sealed("other").unwrap();
        let note = Note { text: "Brandt C4J9X1R27".into() };
        notes.insert(b"n1", &note).unwrap();
        assert_eq!(notes.get::<Note>("note", b"n1").unwrap(), Some(note.clone()));
        let raw = notes.raw().get(b"n1").unwrap().unwrap();
        assert!(!raw.windows(6).any(|w| w == b"Brandt"), "the value is not in the clear");
        // Copied to another row or another tree, the value does not open.
        notes.raw().insert(b"n2", raw.clone()).unwrap();
        other.raw().insert(b"n1", raw).unwrap();
        assert!(matches!(notes.get::<Note>("note", b"n2"), Err(StoreError::Key(KeyError::Corrupt(_)))));
        assert!(matches!(other.get::<Note>("note", b"n1"), Err(StoreError::Key(KeyError::Corrupt(_)))));
        drop((notes, other));
        drop(store);

        // Reopened with its key it opens; with another key it is refused by name.
        let again = SealedDb::open(&dir.path().join("db"), &key_file, 1 << 20, &["notes"]).unwrap();
        assert_eq!(again.sealed("notes").unwrap().get::<Note>("note", b"n1").unwrap(), Some(note));
        drop(again);
        let wrong = dir.path().join("wrong.store.key");
        let err = SealedDb::open(&dir.path().join("db"), &wrong, 1 << 20, &["notes"]).unwrap_err();
        assert!(matches!(err, StoreError::Key(KeyError::Missing(_))), "{err}");
        crate::key::create(&wrong).unwrap();
        let err = SealedDb::open(&dir.path().join("db"), &wrong, 1 << 20, &["notes"]).unwrap_err();
        assert!(matches!(err, StoreError::Key(KeyError::WrongKey(_))), "{err}");
        assert!(err.to_string().contains("wrong.store.key"), "{err}");
    }

    #[test]
    fn data_without_a_canary_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = sled::open(dir.path().join("db")).unwrap();
            db.open_tree("notes").unwrap().insert(b"n1", b"clear text").unwrap();
            db.flush().unwrap();
        }
        let err =
            SealedDb::open(&dir.path().join("db"), &dir.path().join("k.store.key"), 1 << 20, &["notes"]).unwrap_err();
        assert!(matches!(err, StoreError::Unsealed(_)), "{err}");
    }

    #[test]
    fn a_database_held_by_another_handle_is_named_in_use() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let _held = open(&path, 1 << 20).unwrap();
        // sled's lock is per process file descriptor: a second open in this
        // process fails like one from another process would.
        let err = crate::open::open_waiting(&path, 1 << 20, std::time::Duration::from_millis(100)).unwrap_err();
        assert!(matches!(err, OpenError::Locked(_)), "{err}");
        assert!(err.to_string().contains("in use by another process"), "{err}");
    }
}
