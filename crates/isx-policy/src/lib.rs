//! Disclosure policy for isx: Cedar policies decide, for each recipient, the
//! most generous level it may get (`full`, `redacted`, `hit_only`, or
//! `denied`), and the decision can be explained and tested.
//!
//! # Layout
//! - [`engine`]: loads a policy directory (a `.cedarschema` file and `.cedar`
//!   files whose policies carry `@id` and `@reason`), validates it against the
//!   schema, and answers one authorization question at a time.
//! - [`error`]: why a policy set was refused, naming the file and line.
//! - [`sources`]: the texts of a policy set (read from a directory or
//!   kept by a gateway), its version digest, and the policies that differ
//!   between two sets.
//! - [`facts`]: the Cedar entities and context built from an alert and a
//!   recipient. Only labels and facts enter a decision, never personal data.
//! - [`cache`]: the decision-cache key, derived from the policies' parsed
//!   form so that a cached decision is always the one Cedar would give.
//! - [`disclosure`]: routing (who is a candidate), the level ladder, the
//!   recipient's view (via `isx_core::redaction`), explanations, and the
//!   lookup question (may a caller see a hit on an alert?).
//! - [`table`]: policy test tables (`isx policy test`) and the rules a table
//!   exercises (`isx policy coverage`).
//! - [`matrix`]: the policy console's data: every alert against every node
//!   (levels, deciding rules, withheld fields), a draft compared cell by cell,
//!   a draft's load errors by line, the rules and the cells they decide, and
//!   the shipped sample alerts, compiled in.
//! - [`format`]: Cedar's own formatter over a directory (`isx policy fmt`).
//! - [`defaults`]: the default policy directory, compiled in.
//!
//! # Fail closed
//! A policy directory that does not parse or validate is an error with file
//! and line (categories, TLP, handling codes and node kinds are enumerated
//! types in the schema, so a misspelt value such as `Category::"terorism"`
//! is such an error); an evaluation error during a decision makes it `denied`.
//!
//! This crate knows nothing of gRPC or storage.
#![forbid(unsafe_code)]

pub mod cache;
pub mod defaults;
pub mod disclosure;
pub mod engine;
pub mod error;
pub mod facts;
pub mod format;
pub mod matrix;
pub mod sources;
pub mod table;

pub use disclosure::{CacheStats, Decision, Disclosure, Explanation, candidates};
pub use engine::{PolicyEngine, PolicyError, PolicyMeta};
pub use facts::{LookupQuestion, Related, Relation};
pub use sources::{SourceFile, Sources, changes, kept_dir};
