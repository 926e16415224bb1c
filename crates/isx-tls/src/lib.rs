//! Mutual TLS for isx: the development PKI, rustls configurations, and node
//! identity read from certificates.
//!
//! # Layout
//! - [`pki`]: `isx pki init`: a development CA and PEM certificates for the
//!   gateway and each node, made with rcgen.
//! - [`config`]: rustls server and client configurations: TLS 1.3 only, the
//!   ring provider, mandatory client certificates, optional revocation lists.
//! - [`identity`]: the node id (SAN URI `spiffe://isx/node/<id>`) and
//!   fingerprint of a peer certificate.
//!
//! Both the gateway and the nodes depend on this crate; it knows nothing of
//! gRPC or storage (data at rest is `isx-store`'s).
#![forbid(unsafe_code)]

pub mod config;
pub mod identity;
pub mod pki;

pub use config::{TlsError, client_config, server_config};
pub use identity::{PeerIdentity, peer_identity};

/// ALPN protocol id for HTTP/2, which gRPC runs on.
pub const ALPN_H2: &[u8] = b"h2";
