//! The isx witness: C2SP `tlog-witness` over HTTPS, so that no operator can
//! roll the audit log back or fork it unseen.
//!
//! A witness keeps, per log origin, the last tree size and root it cosigned,
//! and cosigns (C2SP `tlog-cosignature` v1, Ed25519) only a checkpoint that
//! extends it consistently. `isx witness` runs one as its own process (a
//! regulator's); an agency can run one for the gateway it uses.
//!
//! # Layout
//! - [`keys`]: witness cosignature key files in a PKI directory, and
//!   [`keys::init_deployment`], the one step that makes a deployment's
//!   keys: its unique log origin, the audit keys, every witness's
//!   cosignature key and server certificate, and `witness.policy`.
//! - [`server`]: [`server::Witness`], the whole `add-checkpoint` decision
//!   in process (parse, check, persist fsynced, cosign; refusals counted
//!   and logged), and [`server::serve`], its HTTPS server.
//! - [`client`]: [`client::Client`], what a log (the gateway) calls to ask
//!   a witness for a cosignature.
//!
//! The decision itself (the spec's 400/403/404/409/422) and the fsynced
//! state are `isx_audit::witness`'s; the cosignature format is
//! `isx_audit::cosignature`'s. This crate adds the network, the files and
//! the operator's view.
//!
//! # Files in a PKI directory
//! A witness identity `<id>` is the standalone witness (`witness`) or a
//! node id. Its cosignature key is `<id>.cosign.key` (0600) and
//! `<id>.cosign.pub` (its C2SP vkey); its server certificate is
//! `witness.crt`/`witness.key` for the standalone witness (like the
//! gateway's `gateway.crt`) and `<node>.witness.crt`/`<node>.witness.key`
//! for a node, whose `<node>.crt` is already its client identity
//! ([`isx_tls::pki::witness_tls_paths`]).
#![forbid(unsafe_code)]

pub mod client;
pub mod keys;
pub mod server;

pub use client::{AddError, Client, ClientError};
pub use keys::{Deployment, KeyError};
pub use server::{Limits, Reply, Witness, serve, serve_with, server_tls};
