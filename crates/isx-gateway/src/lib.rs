//! The isx gateway: mutual-TLS identity, the `isx.v1.Exchange` service,
//! routing, and the durable store-and-forward outbox.
//!
//! # Layout
//! - [`config`]: the gateway TOML file, validated with the bad key named.
//! - [`server`]: the TLS 1.3 accept loop, per-connection identity, and the
//!   tonic router (Exchange, health, reflection). [`Gateway::serve`] is the
//!   entry point.
//! - [`service`]: the Exchange handlers: publish, subscribe, ack.
//! - [`access`]: hit/no-hit lookups and two-step access (request, decide,
//!   decline, expiry).
//! - [`audit`]: audit records made durable with the group commit, and the
//!   checkpointer.
//! - [`audit_service`]: the `isx.v1.Audit` service for auditors.
//! - [`disclosure`]: the single seam that decides what each recipient gets:
//!   the Cedar policy directory, reloadable on `SIGHUP`.
//! - [`forward`]: onward relay keeps or tightens the labels.
//! - [`store`]: sled trees for alerts, per-node outboxes, expiry, the
//!   lookup index (pseudonyms only), hit flags and access requests.
//! - [`commit`]: group commit, so that many publishes share one flush.
//! - [`error`]: request errors and their gRPC status codes.
//!
//! # Invariants
//! - A node's identity comes from its certificate, never from the request.
//! - Nothing is acknowledged to a publisher, and no delivery is streamed,
//!   before the publish's writes and their audit records are flushed (and
//!   fsynced) together: no log, no share.
//! - The gateway does not start on an audit log that fails its integrity check.
//! - A lookup never returns more than a hit flag, and a match that policy
//!   hides is not returned at all. The lookup index holds HMAC pseudonyms,
//!   never identifiers.
//! - Only the holder decides an access request, and only while it is pending
//!   and before its deadline; policy still decides the level of a grant.
#![forbid(unsafe_code)]

pub mod access;
pub mod audit;
pub mod audit_service;
pub mod commit;
pub mod config;
pub mod disclosure;
pub mod error;
pub mod forward;
pub mod server;
pub mod service;
pub mod store;

pub use config::{ConfigError, GatewayConfig};
pub use error::OFFICER_HEADER;
pub use server::{Gateway, StartError};
