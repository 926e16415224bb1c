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
//! - [`hold`]: legal holds (by alert, node or time range) that stop any
//!   prune at the first record they cover until they are lifted.
//! - [`cosignature`]: C2SP `tlog-cosignature` v1 (Ed25519) signers and
//!   verifiers, for witnesses and those who check them.
//! - [`witness`]: the decision of a `tlog-witness` `add-checkpoint` call
//!   (400/403/404/409/422 or the head to persist and cosign), without HTTP.
//! - [`policy`]: C2SP `tlog-policy` files: logs, witnesses, quorum.
//! - [`proof`]: C2SP `tlog-proof@v1` texts, one per exported record.
//! - [`retention`]: the retention rule: which prefix pruning may remove
//!   (retention from a record's time or its alert's end, never a live
//!   alert's history, never inside the floor).
//! - [`scope`]: a scoped auditor's node set, which records are in it, and
//!   entries withheld outside it (leaf hash only).
//! - [`text`]: records' free text (justifications, reasons), sealed under
//!   `audit-text.key`.
//! - [`verify`]: offline verification of entries, proofs, checkpoints and
//!   export bundles; needs no gateway and no key but the public one.
//!
//! # Guarantees
//! - Records are stored as their exact protobuf bytes; leaf hash =
//!   SHA-256(0x00 ‖ bytes). The tree never changes once a record is in it;
//!   pruning removes bodies and their index entries but keeps every hash.
//! - Pruning follows the retention rule and the legal holds: never a live
//!   alert's history, never a held record, never inside the floor, only a
//!   prefix, and an ERASURE record says why.
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
pub mod cosignature;
pub mod hold;
pub mod index;
pub mod keys;
pub mod log;
pub mod policy;
pub mod proof;
pub mod retention;
pub mod scope;
pub mod text;
pub mod verify;
pub mod witness;

pub use isx_core::wire::{AuditEntry, AuditRecord, Operation, Outcome};
pub use log::{AuditError, AuditLog, Filter};

#[cfg(test)]
mod tests;
