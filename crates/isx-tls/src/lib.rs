//! Mutual TLS for isx: the development PKI, rustls configurations, and node
//! identity read from certificates.
//!
//! # Layout
//! - [`pki`]: `isx pki init`: a development CA and PEM certificates for the
//!   gateway and each node, made with rcgen.
//!   `isx pki revoke` and `isx pki crl` keep its revocation list (`crl.pem`).
//! - [`crl`]: loading revocation lists for the gateway: each checked to be
//!   signed by the CA, with its next update and revoked serial numbers.
//! - [`config`]: rustls server and client configurations: TLS 1.3 only, the
//!   ring provider, mandatory client certificates, optional revocation lists;
//!   private keys that others may read are refused.
//! - [`identity`]: the node id (SAN URI `spiffe://isx/node/<id>`),
//!   fingerprint and serial number of a peer certificate.
//!
//! Both the gateway and the nodes depend on this crate; it knows nothing of
//! gRPC or storage (data at rest is `isx-store`'s).
#![forbid(unsafe_code)]

pub mod config;
pub mod crl;
pub mod identity;
pub mod pki;

pub use config::{CrlExpiration, TlsError, client_config, server_config, server_config_with};
pub use crl::{CrlError, LoadedCrls, Serial};
pub use identity::{PeerIdentity, peer_identity, peer_serial};

/// ALPN protocol id for HTTP/2, which gRPC runs on.
pub const ALPN_H2: &[u8] = b"h2";
