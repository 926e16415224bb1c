//! The isx gateway: mutual-TLS identity, the `isx.v1.Exchange` and
//! `isx.v1.Audit` services, routing, and the durable store-and-forward
//! outbox.
//!
//! # Layout
//! Leaves, which import no other module of this crate but those above them:
//! - [`config`]: the gateway TOML file, validated with the bad key named.
//! - [`clock`]: the injectable clock.
//! - [`faults`]: storage fault switches, compiled in only with the `faults`
//!   feature.
//! - `commit`: group commit, so that many writers share one flush.
//! - [`store`]: sled trees for alerts, per-node outboxes with their
//!   visibility watermark and queue counts, expiry, the lookup index
//!   (pseudonyms only), hit flags and access requests.
//! - `error`: request errors and their gRPC status codes.
//! - `conn`: the connection identity (`ConnInfo`, `TlsConn`), the request's
//!   officer and subject (`RequestInfo`).
//! - [`disclosure`]: the single seam that decides what each recipient gets:
//!   the Cedar policy directory, reloadable (by `admin_policy`, recorded).
//! - [`reload_request`]: the request file (officer, reason) that a policy
//!   reload on `SIGHUP` needs, checked and consumed.
//! - `last_run`: what the last run ran with (nodes, redaction profile,
//!   policy version, revoked serials), so that a start records what changed.
//! - `forward`: onward relay keeps or tightens the labels.
//! - `records`: every audit record the gateway writes, as pure builders.
//! - `recorder`: appending records, group commit, indexing, checkpoints.
//! - `witnessing`: the witness policy, offering checkpoints to the
//!   witnesses, the start-up rollback check.
//! - `text`: checks of free-text request fields.
//! - `refusals`: refusal bursts, aggregated per source and kind.
//! - `throttle`: warnings logged at most once a second, with a count.
//!
//! Shared state and handlers:
//! - `state`: the registered nodes with their admission (rate, stream
//!   permits, refusal throttle) and everything handlers share.
//! - `refusal`: a refused request becomes a DENIAL record, then a status.
//! - `admission`: before decoding, every request takes its node's rate
//!   token and has its body read within its call's size and time limits.
//! - `publish`: a publish as a pure plan (receipt, records, rows).
//! - `lifecycle`: amend, withdraw, restrict, lift, the per-copy status and
//!   the holders' confirmations; each change a pure plan (`lifecycle::plan`),
//!   its record and fan-out marker durable before the fan-out.
//! - `exchange`: the Exchange service: publish, ack, and the tonic methods.
//! - `subscribe`: streaming a node's outbox below the watermark.
//! - `lookup`: hit/no-hit lookups, within the `quota`s of each node, officer
//!   and person. `access`: two-step access after a hit.
//! - `onward`: onward reach: `AllowOnward`, and alerts that overlap a
//!   restricted alert their publisher received (laundering).
//! - `audit_service`: the Audit service for auditors.
//! - `admin_service`: the Admin service for operators; `admin_policy`
//!   (policy reloads, recorded before they take effect, and the kept text of
//!   every policy version) and `holds` (legal holds, pruning online, and the
//!   scheduled prune of `audit.prune_every`) do its work.
//! - [`hangup`]: what `SIGHUP` does, answered by the serve loop so that it
//!   is recorded: a policy reload with a request file, the CRLs re-read.
//! - `sweeper`: expiry. `accept`: the TLS accept loop.
//! - [`revocation`]: the CRLs, read at start, on SIGHUP and on a timer; a
//!   reload closes the connections of revoked certificates, and one that
//!   changed what they revoke is recorded.
//! - [`server`]: the composition root, [`Gateway`]; no module imports it.
//!
//! # Invariants
//! - A node's identity comes from its certificate, never from the request.
//! - Nothing is acknowledged to a publisher, and no delivery is streamed,
//!   before the publish's writes and their audit records are flushed (and
//!   fsynced) together: no log, no share. A subscription reads only below
//!   the visibility watermark, so nothing refused, failed or withdrawn is
//!   ever streamed.
//! - The gateway does not start on an audit log that fails its integrity check.
//! - A lookup never returns more than a hit flag, and a match that policy
//!   hides is not returned at all. The lookup index holds HMAC pseudonyms,
//!   never identifiers.
//! - Every change to what governs disclosure is a record: a policy reload
//!   (with its officer and reason, durable before the new policy decides
//!   anything), a refused one, a start with another policy, nodes or
//!   redaction profile than the last run, a change of the revocation lists.
//! - A change to an alert reaches every copy, onward copies included, and
//!   its record is durable before any of its events can stream; a copy
//!   stays unsettled, and visible in its status, until its holder confirms.
//! - Only the holder decides an access request, and only while it is pending
//!   and before its deadline; policy still decides the level of a grant.
#![forbid(unsafe_code)]

mod accept;
mod access;
mod admin_policy;
mod admin_service;
mod admission;
mod audit_service;
pub mod clock;
mod commit;
pub mod config;
mod conn;
pub mod disclosure;
mod error;
mod exchange;
pub mod faults;
mod forward;
pub mod hangup;
mod holds;
mod last_run;
mod lifecycle;
mod lookup;
mod onward;
mod open_hits;
mod publish;
mod quota;
mod recorder;
mod records;
mod refusal;
mod refusals;
pub mod reload_request;
pub mod revocation;
pub mod server;
mod state;
mod storage_limit;
pub mod store;
mod subscribe;
mod sweeper;
mod text;
mod throttle;
pub mod witnessing;

pub use commit::{CommitError, CommitStats};
pub use config::{ConfigError, GatewayConfig};
pub use error::{OFFICER_HEADER, RequestError};
pub use server::{Gateway, StartError};
