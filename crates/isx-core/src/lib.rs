//! isx domain types and rules that need no I/O.
//!
//! # Layout
//! - [`node`]: node identifiers, node kinds and roles.
//! - [`validate`]: checks a published alert field by field and names every bad field.
//! - [`json`]: the canonical protobuf JSON mapping for alerts and other wire messages.
//! - [`redaction`]: the redacted and hit-only views of an alert, and the
//!   redaction profile that says which fields go.
//! - [`identifiers`]: normalised identifiers and their HMAC pseudonyms.
//! - [`digest`]: the content digest that makes publishing idempotent.
//! - [`timestamp`]: conversions between `prost_types::Timestamp` and `time`.
//! - [`display`]: short human names for labels and levels, for tables.
//! - [`enums`]: enum values by their full (`CATEGORY_TERRORISM`) or short
//!   (`terrorism`) names, and errors that list both.
//! - [`read_reason`]: why the audit log is read: the four purposes of LED
//!   Art. 25(2), a case reference, and an export's recipient, checked.
//!
//! Everything here is pure: callers pass the current time in, and nothing reads
//! files, sockets or clocks.
#![forbid(unsafe_code)]

pub mod digest;
pub mod display;
pub mod enums;
pub mod identifiers;
pub mod json;
pub mod node;
pub mod read_reason;
pub mod redaction;
pub mod timestamp;
pub mod validate;

pub use isx_proto::v1 as wire;
pub use node::{NodeId, NodeIdError, NodeInfo, NodeKind, Role};
pub use validate::{FieldViolation, ValidationError, validate_alert};
