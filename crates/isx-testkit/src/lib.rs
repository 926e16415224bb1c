//! Start a whole isx topology (a gateway and any number of mock agencies) in
//! one process, on `127.0.0.1:0`, over real mutual TLS, with a fresh PKI and
//! temporary data.
//!
//! # Layout
//! - [`topology`]: [`Topology`] and [`TopologySpec`]: start, stop and restart
//!   the gateway and nodes; get clients and inboxes.
//! - [`samples`]: realistic alerts (a foreign-fighter check, a
//!   migrant-smuggling network, a trafficking victim) for tests and the demo.
//! - [`scenario`]: scenario files (a topology, steps and expectations in
//!   TOML), their runner and JUnit report: `isx scenario run`.
//! - [`demo`]: the `isx demo` run.
//! - [`bench`]: `isx bench`, each figure next to a same-run baseline.
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
//! // The auditor sees one collection record per alert (checked against inclusion proofs).
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

pub mod bench;
pub mod demo;
pub mod samples;
pub mod scenario;
pub mod topology;

pub use topology::{NodeSpec, Topology, TopologyError, TopologySpec};

/// The field paths a status's `google.rpc.BadRequest` names, in order.
pub fn bad_fields(status: &tonic::Status) -> Vec<String> {
    use tonic_types::StatusExt;
    status
        .get_error_details()
        .bad_request()
        .map(|b| b.field_violations.iter().map(|v| v.field.clone()).collect())
        .unwrap_or_default()
}

/// True if a client with `opts` cannot connect, or its first publish fails:
/// the client's view of a refused identity.
pub async fn connection_refused(opts: &isx_node::ClientOptions) -> bool {
    match isx_node::Client::connect(opts).await {
        Err(_) => true,
        Ok(client) => client.publish(samples::foreign_fighter(opts.node.as_str(), &[])).await.is_err(),
    }
}
