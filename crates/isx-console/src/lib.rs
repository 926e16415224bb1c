//! `isx console`: a local web app over the gateway, for auditors and policy officers.
//!
//! The console is a client. With a node's certificate (the auditor's) it
//! calls the gateway's `Audit` service over mutual TLS, so every page an
//! auditor reads is an ordinary audited call under the auditor's officer
//! name, and the log records the reading. With a policy directory it needs
//! no gateway and no PKI: the policy officer's pages decide locally.
//!
//! Trust: the console verifies what it shows. Each search result's
//! inclusion proof is checked in this process against the signed
//! checkpoint (pinned to `audit.pub` when given), "verify now" recomputes
//! every leaf and the root here, and an uploaded bundle is verified entry
//! by entry, so a changed record shows ✗ on its own row.
//!
//! Who may drive it: see [`session`]. It listens on `127.0.0.1:0` unless
//! told otherwise; the printed URL carries the session token.
//!
//! # Layout
//! - [`session`]: the token, Host and Origin checks (pure);
//! - [`facets`]: the search form read into a `SearchRequest` (pure);
//! - [`text`]: records as rows, with their proofs' verdicts;
//! - [`charts`]: the overview's tallies and SVG charts;
//! - [`lifecycle`]: an alert's changes and each holder's confirmation, with
//!   the overdue ones, from its records (pure);
//! - [`open_hits`]: the open hits per node and those closed without
//!   follow-up, from the log (pure);
//! - `views`: the templates (files under `templates/`, compiled in;
//!   `--templates DIR` reads them from disk on every page instead);
//! - `auditor`: the auditor's pages (overview, verify, search, subject
//!   report, alert history with its lifecycle, open hits, evidence);
//! - `policy`: the policy officer's pages (matrix, draft comparison, rules);
//! - `error`: why the console could not start;
//! - `app`: the handlers' shared state and page rendering;
//! - `server`: the options, the router, the guard and the server.

#![forbid(unsafe_code)]
// Handlers answer a refusal early with the page that explains it; an
// axum Response is that page, and boxing it would buy nothing.
#![allow(clippy::result_large_err)]

pub mod charts;
pub mod facets;
pub mod lifecycle;
pub mod open_hits;
pub mod session;
pub mod text;

mod app;
mod auditor;
mod error;
mod policy;
mod server;
mod views;

pub use error::ConsoleError;
pub use policy::{MatrixAlert, PolicySetup};
pub use server::{Console, ConsoleOptions, DEFAULT_MAX_BODY, start};

#[cfg(test)]
mod tests;
