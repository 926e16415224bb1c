//! isx sealed storage: sled databases whose values about alerts are sealed
//! at rest, so that a copied data directory discloses no personal data.
//!
//! # Layout
//! - [`open`](mod@open): opening a sled database with a capped page cache; a
//!   database held by another process is named as such; its directory is
//!   kept 0700 and its files 0600.
//! - [`key`]: store keys (`<owner>.store.key`) and their ChaCha20-Poly1305
//!   AEAD; writing private key files 0600 ([`write_private`]) and refusing
//!   ones that others may read ([`check_private`]), for every isx crate.
//! - [`sealed`]: [`SealedDb`], a database that proves its key with a sealed
//!   canary, and [`SealedTree`], whose values are sealed bound to the tree
//!   and the row they live in.
//!
//! The gateway (alerts, outboxes, access requests), the mock agencies (what
//! they received) and the audit log's database all open through this crate.
//! Keys, ids, pseudonyms and the audit log stay in the clear: the audit log
//! must verify without the store key.
#![forbid(unsafe_code)]

pub mod key;
pub mod open;
pub mod sealed;

pub use key::{KeyError, StoreKey, check_private, key_path, write_private};
pub use open::{AGENCY_CACHE_BYTES, GATEWAY_CACHE_BYTES, OpenError, open, private_dir};
pub use sealed::{SealedDb, SealedTree, StoreError, decode};
