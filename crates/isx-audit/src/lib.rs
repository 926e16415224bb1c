//! The isx fundamental-rights audit log.
//!
//! # Layout
//! - [`log`]: [`AuditLog`], the sled-backed append-only log: records, the
//!   RFC 6962 Merkle tree (the Go `tlog` stored hashes, via `tlog_tiles`,
//!   kept as one key per record), indexes written off the append path,
//!   search, proofs, pruning, and the start-up integrity check.
//! - [`index`]: the search index's posting lists (one per value and indexing
//!   batch), so that a search reads only the records it lists.
//! - [`keys`]: the gateway's audit keys: the Ed25519 checkpoint key (C2SP
//!   signed-note format) and the HMAC key for subject pseudonyms.
//! - [`checkpoint`]: signing and checking C2SP checkpoints.
//! - [`verify`]: offline verification of entries, proofs, checkpoints and
//!   export bundles; needs no gateway and no key but the public one.
//!
//! # Guarantees
//! - Records are stored as their exact protobuf bytes; leaf hash =
//!   SHA-256(0x00 ‖ bytes). The tree never changes once a record is in it;
//!   pruning removes bodies and their index entries but keeps every hash.
//! - [`AuditLog::open`] refuses a log whose records, hashes, search index or
//!   size disagree with each other or with the last signed checkpoint, naming
//!   the first bad sequence number.
//! - Appends are not durable until the caller flushes the database (the
//!   gateway's group commit); a checkpoint is only signed over flushed records.
//! - A search sees every appended record: it first indexes the records that
//!   the background indexer has not indexed yet.
//! - Record times never decrease along the log.
//!
//! This crate knows nothing of gRPC.
#![forbid(unsafe_code)]

pub mod checkpoint;
pub mod index;
pub mod keys;
pub mod log;
pub mod verify;

pub use isx_core::wire::{AuditEntry, AuditRecord, Operation, Outcome};
pub use log::{AuditError, AuditLog, Filter};

#[cfg(test)]
mod tests;

/// The page-cache budget of the gateway's sled database, in bytes.
pub const CACHE_BYTES: u64 = 16 << 20;

/// Opens a sled database with a page cache of [`CACHE_BYTES`], waiting up to
/// five seconds for its file lock (see [`open_db_with_cache`]).
pub fn open_db(path: &std::path::Path) -> sled::Result<sled::Db> {
    open_db_with_cache(path, CACHE_BYTES)
}

/// Opens a sled database whose page cache holds at most `cache_bytes`,
/// waiting up to five seconds for its file lock.
///
/// sled's own default cache is 1 GiB, which a gateway with a large backlog
/// or log would fill: everything written stays cached.
///
/// sled 0.34 releases the lock from a background thread shortly after the
/// last handle of a database is dropped, so a database closed and reopened in
/// the same process (a gateway restart in a test) may find it still held.
pub fn open_db_with_cache(path: &std::path::Path, cache_bytes: u64) -> sled::Result<sled::Db> {
    let mut attempt = 0;
    loop {
        match sled::Config::new().path(path).cache_capacity(cache_bytes).open() {
            Err(sled::Error::Io(e)) if e.to_string().contains("could not acquire lock") && attempt < 200 => {
                attempt += 1;
                std::thread::sleep(std::time::Duration::from_millis(25));
            }
            other => return other,
        }
    }
}
