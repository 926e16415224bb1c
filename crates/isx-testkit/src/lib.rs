//! Start a whole isx topology (a gateway and any number of mock agencies) in
//! one process, on `127.0.0.1:0`, over real mutual TLS, with a fresh PKI and
//! temporary data.
//!
//! # Layout
//! - [`topology`]: [`Topology`] and [`TopologySpec`]: start, stop and restart
//!   the gateway and nodes; get clients and inboxes.
//! - [`agency`]: [`Agency`], what a node's agency holds, in this process or
//!   read through the inspect socket of an agency that runs elsewhere.
//! - [`samples`]: realistic alerts (a foreign-fighter check, a
//!   migrant-smuggling network, a trafficking victim) for tests and the demo.
//! - [`scenario`]: scenario files (a topology, steps and expectations in
//!   TOML), their runner and JUnit report: `isx scenario run`.
//! - [`demo`]: the `isx demo` run.
//! - [`bench`]: `isx bench`, each figure next to a same-run baseline.
//! - [`probe`]: what the gateway does with one identity's connection (refused
//!   at the handshake, dropped, answered with a status, served).
//!
//! # Example: your own integration test
//!
//! Start a topology, publish, check what each agency received and what the
//! audit log holds, take an agency offline, restart the gateway. Everything
//! runs on `127.0.0.1` with random ports over real mutual TLS, and every
//! wait is bounded.
//!
//! ```
//! use std::time::Duration;
//! use isx_core::wire::{DisclosureLevel, LookupIdentifier, Operation, SearchRequest, lookup_identifier::Kind};
//! use isx_testkit::{Topology, TopologySpec, samples};
//!
//! # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let limit = Duration::from_secs(10);
//! let mut topo = Topology::start(TopologySpec::default_agencies()).await?;
//!
//! // Germany sends a smuggling alert to France and Frontex.
//! let de = topo.client("de-police").await?;
//! let alert = samples::migrant_smuggling("de-police", &["fr-police", "frontex"]);
//! let receipt = de.publish(alert.clone()).await?.receipt.unwrap();
//! assert_eq!(receipt.recipients.len(), 2);
//!
//! // Frontex gets it de-personalised, France in full.
//! let got = topo.inbox("frontex").wait_for(&alert.alert_id, limit).await?.expect("delivered");
//! assert_eq!(got.level(), DisclosureLevel::Redacted);
//! assert!(topo.inbox("fr-police").wait_for(&alert.alert_id, limit).await?.is_some());
//!
//! // Italy was not addressed: a lookup shows it only that Germany holds something.
//! let it = topo.client("it-police").await?;
//! let plate = LookupIdentifier { kind: Some(Kind::Plate("FG 512 ZT".into())) };
//! let hits = it.lookup(vec![plate], "investigation", "van seen in Bolzano").await?.hits;
//! assert_eq!(hits[0].holder, "de-police");
//!
//! // An agency offline across a gateway restart still gets its backlog.
//! topo.stop_node("fr-police").await?;
//! let second = samples::foreign_fighter("de-police", &["fr-police"]);
//! de.publish(second.clone()).await?;
//! topo.restart_gateway().await?;
//! topo.start_node("fr-police").await?;
//! assert!(topo.inbox("fr-police").wait_for(&second.alert_id, limit).await?.is_some());
//!
//! // The auditor sees one collection record per alert (checked against inclusion
//! // proofs; each page is a LOG_READ for the filter's reason, or self-monitoring).
//! let filter = SearchRequest { operation: Operation::Collection as i32, ..Default::default() };
//! assert_eq!(topo.audit_records(filter).await?.len(), 2);
//! topo.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! Scenario files (`isx scenario run`, `docs/scenarios.md`) drive the same
//! topology from TOML instead of Rust.
//!
//! Production code never depends on this crate.
#![forbid(unsafe_code)]

pub mod agency;
pub mod bench;
pub mod demo;
pub mod samples;
pub mod scenario;
pub mod topology;
pub mod witness;

pub use agency::{Agency, AgencyError};
pub use topology::{NodeSpec, Topology, TopologyError, TopologySpec, testkit_reason};

/// The field paths a status's `google.rpc.BadRequest` names, in order.
pub fn bad_fields(status: &tonic::Status) -> Vec<String> {
    use tonic_types::StatusExt;
    status
        .get_error_details()
        .bad_request()
        .map(|b| b.field_violations.iter().map(|v| v.field.clone()).collect())
        .unwrap_or_default()
}

/// What the gateway did with a connection from one identity, as seen by a
/// client: see [`probe`].
#[derive(Debug, Clone, PartialEq)]
pub enum Probe {
    /// The TLS handshake was refused: the gateway rejected the client's
    /// certificate (or the client rejected the gateway's).
    Handshake(Refusal),
    /// TLS completed, but the gateway closed the connection before it
    /// answered anything at all (how it turns away a certificate that names
    /// an unregistered node).
    Dropped,
    /// The connection was served and the probe call was answered with this
    /// gRPC status (e.g. `PermissionDenied` for a node without the role).
    Status(tonic::Code),
    /// The connection was served and the probe call succeeded.
    Served,
}

/// How a TLS handshake was refused.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    /// The gateway sent this fatal TLS alert: it refused the client's
    /// certificate (`CertificateExpired`, `CertificateRevoked`,
    /// `CertificateRequired`; `UnknownCA` for an unknown issuer, and
    /// `DecryptError` for a certificate that names our CA as its issuer but
    /// is not signed by it).
    Alert(tokio_rustls::rustls::AlertDescription),
    /// The client's own TLS stack refused the handshake (e.g. the gateway's
    /// certificate is not trusted).
    Client(tokio_rustls::rustls::Error),
    /// The gateway closed the TCP connection during the handshake without an
    /// alert.
    Closed(std::io::ErrorKind),
}

/// Why a [`probe`] could not tell what the gateway did.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The client's TLS material is missing or invalid.
    #[error(transparent)]
    Tls(#[from] isx_tls::TlsError),
    /// The gateway address is not `host:port`.
    #[error("gateway address {0:?} is not host:port")]
    Address(String),
    /// Nothing accepts TCP connections at the address.
    #[error("cannot reach {addr}: {source}")]
    Unreachable {
        /// The address.
        addr: String,
        /// The connect error.
        source: std::io::Error,
    },
    /// The gateway neither answered nor closed the connection in time.
    #[error("no answer from the gateway within {0:?}")]
    Timeout(std::time::Duration),
    /// The gateway answered with something a probe does not expect.
    #[error("unexpected answer from the gateway: {0}")]
    Unexpected(String),
    /// TLS and HTTP/2 were served, but the client for the probe call could not connect.
    #[error(transparent)]
    Client(#[from] isx_node::ClientError),
}

/// How long one step of a [`probe`] may take: a handshake, the first read, the probe call.
pub const PROBE_LIMIT: std::time::Duration = std::time::Duration::from_secs(20);

/// Connects to the gateway as `opts` says and reports what happened: the
/// client's view of a refused identity, told apart from a refused call.
///
/// The probe first opens a raw connection with the TLS client configuration
/// the node client uses ([`isx_tls::client_config`]), completes the handshake,
/// sends the HTTP/2 connection preface and reads the first frame. In TLS 1.3
/// the client sends its certificate last, so its handshake completes before
/// the gateway has checked that certificate; a refusal (a TLS alert) arrives
/// on that first read, and is reported as [`Probe::Handshake`] all the same.
/// A close without an alert before any HTTP/2 frame is [`Probe::Dropped`].
/// If the gateway answers with its HTTP/2 `SETTINGS`, the probe connects a
/// [`isx_node::Client`] and calls `ListAccessRequests` (read-only; it takes a
/// rate-limit token and needs the `publish` or `lookup` role and an officer):
/// [`Probe::Served`] if it succeeds, [`Probe::Status`] with the code if not.
///
/// Every step is bounded by [`PROBE_LIMIT`]; anything else (nothing
/// listening, no answer, an answer that is not HTTP/2) is a [`ProbeError`].
pub async fn probe(opts: &isx_node::ClientOptions) -> Result<Probe, ProbeError> {
    if let Some(refused) = probe_connection(opts).await? {
        return Ok(refused);
    }
    let client = bounded(isx_node::Client::connect(opts)).await??;
    match bounded(client.list_access_requests(None)).await? {
        Ok(_) => Ok(Probe::Served),
        Err(status) => Ok(Probe::Status(status.code())),
    }
}

/// The raw half of [`probe`]: `Some` with how the connection was refused or
/// dropped, `None` if the gateway answered the HTTP/2 preface. The client
/// library's own diagnosis ([`isx_node::diagnose::connection`]) does the work.
async fn probe_connection(opts: &isx_node::ClientOptions) -> Result<Option<Probe>, ProbeError> {
    use isx_node::diagnose::Diagnosis;
    match isx_node::diagnose::connection(opts).await {
        Diagnosis::Served => Ok(None),
        Diagnosis::Alert(alert) => Ok(Some(Probe::Handshake(Refusal::Alert(alert)))),
        Diagnosis::ClientRefused(e) => Ok(Some(Probe::Handshake(Refusal::Client(e)))),
        Diagnosis::ClosedInHandshake(kind) => Ok(Some(Probe::Handshake(Refusal::Closed(kind)))),
        Diagnosis::Dropped => Ok(Some(Probe::Dropped)),
        Diagnosis::Unreachable(e) => {
            Err(ProbeError::Unreachable { addr: opts.gateway.clone(), source: std::io::Error::other(e) })
        }
        Diagnosis::Timeout => Err(ProbeError::Timeout(isx_node::diagnose::STEP_LIMIT)),
        Diagnosis::BadTlsFiles(e) | Diagnosis::Unexpected(e) => Err(ProbeError::Unexpected(e)),
    }
}

/// `step`, or [`ProbeError::Timeout`] after [`PROBE_LIMIT`].
async fn bounded<F: std::future::Future>(step: F) -> Result<F::Output, ProbeError> {
    tokio::time::timeout(PROBE_LIMIT, step).await.map_err(|_| ProbeError::Timeout(PROBE_LIMIT))
}
