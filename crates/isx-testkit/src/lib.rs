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
//! # Example
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use isx_testkit::{Topology, TopologySpec, samples};
//! let topo = Topology::start(TopologySpec::default_agencies()).await?;
//! let de = topo.client("de-police").await?;
//! let alert = samples::foreign_fighter("de-police", &["fr-police"]);
//! let receipt = de.publish(alert.clone()).await?;
//! assert!(receipt.receipt.is_some());
//! let got = topo.inbox("fr-police").wait_for(&alert.alert_id, std::time::Duration::from_secs(10)).await?;
//! assert!(got.is_some());
//! topo.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! Production code never depends on this crate.
#![forbid(unsafe_code)]

pub mod bench;
pub mod demo;
pub mod samples;
pub mod scenario;
pub mod topology;

pub use topology::{NodeSpec, Topology, TopologyError, TopologySpec};
