//! The isx client library and the mock agency node.
//!
//! # Layout
//! - [`audit`]: the auditor's client: checkpoints, search, export, and
//!   verification of a running gateway's log.
//! - [`client`]: [`Client`], a typed mTLS client for `isx.v1.Exchange` that
//!   sets `x-isx-officer` on every call.
//! - [`config`]: the node TOML file (`deploy/local/nodes/<id>.toml`).
//! - [`diagnose`]: why a connection failed (a refused certificate, an
//!   unregistered node, nothing listening), with the fix, for the person at
//!   the client.
//! - [`inbox`]: the node's own sled store of received alerts, deduplicated by
//!   `alert_id`, the origins' changes applied to them (updates, tombstones,
//!   restriction marks; [`inbox::apply_change`]), and a way to wait for arrivals.
//! - [`mock`]: [`MockNode`], which subscribes, stores, applies changes,
//!   flushes, acknowledges with a confirmation per change, and reconnects
//!   with back-off.
//! - [`inspect`]: the agency's local, read-only inspect service on a Unix
//!   socket in its data directory, and its client ([`InspectClient`]).
//!
//! The gateway never depends on this crate.
#![forbid(unsafe_code)]

pub mod audit;
pub mod client;
pub mod config;
pub mod diagnose;
pub mod inbox;
pub mod inspect;
pub mod mock;
pub mod witness;

pub use client::{Client, ClientError, ClientOptions, code_name, error_chain};
pub use config::NodeConfig;
pub use inbox::{Inbox, Received};
pub use inspect::{InspectClient, InspectError};
pub use mock::{MockNode, NodeEvent};
