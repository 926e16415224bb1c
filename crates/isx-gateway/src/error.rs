//! Request errors and their mapping to gRPC status codes.

use isx_core::{Role, ValidationError};
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::commit::CommitError;
use crate::store::StoreError;

/// The metadata key that names the acting officer.
pub const OFFICER_HEADER: &str = "x-isx-officer";

/// Why a request was refused. Converted to [`Status`] at the RPC edge.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// The connection carries no verified node identity.
    #[error("no verified client certificate on this connection")]
    Unauthenticated,
    /// The caller lacks a role.
    #[error("rule role-{role}: node {node} does not hold the '{role}' role")]
    MissingRole {
        /// The caller.
        node: String,
        /// The role needed.
        role: Role,
    },
    /// The `x-isx-officer` metadata is missing.
    #[error("x-isx-officer request metadata is required: it names the officer acting (LED Art. 25)")]
    MissingOfficer,
    /// The `x-isx-officer` metadata is malformed.
    #[error("x-isx-officer: {0}")]
    BadOfficer(String),
    /// The request is missing its alert.
    #[error("alert: is required")]
    MissingAlert,
    /// The alert is larger than the configured limit.
    #[error("alert is {size} bytes; the limit (limits.max_alert_bytes) is {limit}")]
    TooLarge {
        /// Encoded size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// One or more fields of an alert are invalid.
    #[error("invalid alert: {0}")]
    Invalid(#[from] ValidationError),
    /// One or more fields of another request are invalid.
    #[error("invalid request: {0}")]
    InvalidRequest(ValidationError),
    /// The alert claims another origin than the caller's certificate.
    #[error("rule origin-is-caller: origin {origin:?} does not match the caller's certificate ({caller})")]
    OriginMismatch {
        /// The certificate identity.
        caller: String,
        /// The claimed origin.
        origin: String,
    },
    /// A forwarded alert names an original the forwarder never received.
    #[error(
        "rule forwarder-received: {node} has not received alert {alert_id} (or it has expired), so it cannot relay it"
    )]
    NotReceived {
        /// The forwarder.
        node: String,
        /// The `forwarded_from` id.
        alert_id: String,
    },
    /// No live alert has this id.
    #[error("alert {0} does not exist or has expired")]
    UnknownAlert(String),
    /// Someone other than the origin tried to change an alert.
    #[error("rule origin-only: only the origin of alert {alert_id} may change it; {node} is not")]
    NotOrigin {
        /// The caller.
        node: String,
        /// The alert.
        alert_id: String,
    },
    /// An amendment names another version than the current one.
    #[error(
        "replaces_version {given} is not the current version of alert {alert_id}, which is {current}: read its status and amend that"
    )]
    StaleVersion {
        /// The alert.
        alert_id: String,
        /// The version named.
        given: u32,
        /// The current version.
        current: u32,
    },
    /// The alert's state does not allow the change.
    #[error("alert {alert_id} is {state}: it cannot be {action}")]
    WrongState {
        /// The alert.
        alert_id: String,
        /// Its state, in words.
        state: &'static str,
        /// What was asked, in words.
        action: &'static str,
    },
    /// Someone other than the origin or an auditor covering it asked for an alert's status.
    #[error(
        "rule origin-or-auditor: only the origin of alert {alert_id}, or an auditor whose scope covers it, may read its status; {node} may not"
    )]
    NotStatusReader {
        /// The caller.
        node: String,
        /// The alert.
        alert_id: String,
    },
    /// The alert id was published before with different content.
    #[error("alert_id {0} was already published with different content")]
    Conflict(String),
    /// An ack names a cursor that this node was never sent.
    #[error(
        "cursor {cursor} was never delivered to this node (highest delivered: {highest}); resubscribe and ack what you receive"
    )]
    CursorNotDelivered {
        /// The cursor acked.
        cursor: u64,
        /// The highest cursor streamed to the node since the gateway started.
        highest: u64,
    },
    /// Storage failed: no log, no share.
    #[error("storage unavailable, nothing was disclosed: {0}")]
    Storage(StoreError),
    /// The audit log could not be written or read: no log, no share.
    #[error("audit log unavailable, nothing was disclosed: {0}")]
    Audit(#[from] isx_audit::AuditError),
    /// An audit query names records or sizes outside the log.
    #[error("{0}")]
    AuditRange(String),
    /// An audit search names no usable filter value.
    #[error("{field}: {message}")]
    BadFilter {
        /// The request field.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
    /// An audit call without a usable purpose or case reference, or an
    /// export without its recipient (LED Art. 25(2)).
    #[error("{0}")]
    BadReason(isx_core::read_reason::ReasonError),
    /// A hit id that is not the caller's, or whose alert has expired.
    #[error(
        "hit {0} is not one of your hits: it is unknown, was given to another node, or its alert has expired; run a lookup again"
    )]
    UnknownHit(String),
    /// The caller already declined to follow this hit up.
    #[error("hit {0}: you recorded that you will not follow it up; look it up again after new facts")]
    HitDeclined(String),
    /// A request on this hit is already pending or granted.
    #[error("hit {hit_id} is already followed up by access request {request_id} ({state})")]
    AlreadyRequested {
        /// The hit.
        hit_id: String,
        /// The open request.
        request_id: String,
        /// Its state.
        state: &'static str,
    },
    /// No access request has this id.
    #[error("access request {0} does not exist")]
    UnknownRequest(String),
    /// Someone other than the holder tried to decide. The caller is told
    /// exactly what an unknown id gets, so that request ids and holders do
    /// not leak; the audit record names the rule.
    #[error("access request {request_id} does not exist")]
    NotHolder {
        /// The caller.
        node: String,
        /// The request.
        request_id: String,
        /// The holder.
        holder: String,
    },
    /// The request passed its deadline.
    #[error("access request {request_id} expired at {deadline}: the holder can no longer decide it")]
    RequestExpired {
        /// The request.
        request_id: String,
        /// Its deadline, RFC 3339.
        deadline: String,
    },
    /// The request was already decided.
    #[error("access request {request_id} was already {state}")]
    AlreadyDecided {
        /// The request.
        request_id: String,
        /// `granted` or `denied`.
        state: &'static str,
    },
    /// The alert behind a request expired before the decision.
    #[error("alert {0} has expired and was erased; access can no longer be granted")]
    AlertGone(String),
    /// The node exceeded its request rate.
    #[error(
        "node {node} exceeds limits.rate_per_node ({rate}/s, burst {burst}); retry in {} ms",
        retry_after.as_millis().max(1)
    )]
    RateLimited {
        /// The caller.
        node: String,
        /// The sustained rate.
        rate: f64,
        /// The burst.
        burst: u32,
        /// When the next request would be admitted.
        retry_after: std::time::Duration,
    },
    /// A request is larger than its call's limit.
    #[error("the request is {size} bytes; {key} allows {limit}")]
    RequestTooLarge {
        /// The size the request declared or sent.
        size: usize,
        /// The limit.
        limit: usize,
        /// The config key of the limit.
        key: &'static str,
    },
    /// A request did not send its body in time.
    #[error("the request body did not arrive within limits.request_body_timeout ({timeout:?})")]
    BodyTimeout {
        /// The limit.
        timeout: std::time::Duration,
    },
    /// An audit record would pass `audit.max_record_bytes`; nothing was written.
    #[error("the audit record would be {size} bytes; audit.max_record_bytes allows {limit}, so nothing was done")]
    RecordTooLarge {
        /// The record's size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// A lookup quota is used up.
    #[error("quota exceeded: {key} allows {limit} per {}; retry in {} s", humantime::format_duration(*window), retry_after.as_secs().max(1))]
    QuotaExceeded {
        /// The quota's config key.
        key: &'static str,
        /// Its limit.
        limit: u32,
        /// Its window.
        window: std::time::Duration,
        /// When the next lookup would be admitted.
        retry_after: std::time::Duration,
    },
    /// A lookup matches more alerts than one lookup may.
    #[error(
        "the lookup matches more than {limit} alerts (limits.max_lookup_matches); narrow it with more identifiers or a person's date of birth"
    )]
    TooManyMatches {
        /// The limit.
        limit: usize,
    },
    /// The node holds too many subscription streams.
    #[error("node {node} already holds {limit} subscription streams (limits.max_streams_per_node); close one first")]
    TooManyStreams {
        /// The caller.
        node: String,
        /// The limit.
        limit: usize,
    },
    /// A recipient's queue is full.
    #[error(
        "{node} has {queued} undelivered events queued (limits.max_queue_per_node is {limit}); nothing was published, retry when it has caught up"
    )]
    QueueFull {
        /// The recipient.
        node: String,
        /// How many wait.
        queued: u64,
        /// The limit.
        limit: u64,
    },
    /// The group commit failed: no log, no share.
    #[error("storage unavailable, nothing was disclosed: {0}")]
    Commit(#[from] CommitError),
    /// `expires_at` lies past the storage limit of the alert's crime area
    /// (LED Art. 5).
    #[error(
        "expires_at {asked} is past the storage limit: {key} allows {period} from publication, so at most {latest}"
    )]
    StorageLimit {
        /// The config key of the limit (`storage.max_period` or `storage.by_category.<area>`).
        key: String,
        /// The limit, e.g. `365d`.
        period: String,
        /// The `expires_at` asked for, RFC 3339.
        asked: String,
        /// The latest `expires_at` allowed, RFC 3339.
        latest: String,
    },
    /// An access request on an alert whose processing is restricted (LED
    /// Art. 16(3)) or that its origin withdrew.
    #[error("alert {alert_id} is {state}: no access request can reach it{}", if *state == "restricted" { " while it is checked; ask again once the restriction is lifted" } else { "" })]
    AlertUnavailable {
        /// The alert.
        alert_id: String,
        /// `restricted` or `withdrawn`.
        state: &'static str,
    },
}

impl From<StoreError> for RequestError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::QueueFull { node, queued, limit } => Self::QueueFull { node, queued, limit },
            other => Self::Storage(other),
        }
    }
}

impl RequestError {
    /// The gRPC code for this error.
    pub fn code(&self) -> Code {
        match self {
            Self::Unauthenticated => Code::Unauthenticated,
            Self::MissingRole { .. }
            | Self::OriginMismatch { .. }
            | Self::NotReceived { .. }
            | Self::NotOrigin { .. }
            | Self::NotStatusReader { .. } => Code::PermissionDenied,
            Self::MissingOfficer
            | Self::BadOfficer(_)
            | Self::MissingAlert
            | Self::Invalid(_)
            | Self::InvalidRequest(_) => Code::InvalidArgument,
            Self::UnknownHit(_) | Self::UnknownRequest(_) | Self::NotHolder { .. } | Self::UnknownAlert(_) => {
                Code::NotFound
            }
            Self::HitDeclined(_)
            | Self::RequestExpired { .. }
            | Self::AlreadyDecided { .. }
            | Self::AlertGone(_)
            | Self::StaleVersion { .. }
            | Self::WrongState { .. }
            | Self::AlertUnavailable { .. } => Code::FailedPrecondition,
            Self::StorageLimit { .. } => Code::InvalidArgument,
            Self::AlreadyRequested { .. } => Code::AlreadyExists,
            Self::TooLarge { .. }
            | Self::RateLimited { .. }
            | Self::TooManyStreams { .. }
            | Self::QueueFull { .. }
            | Self::RequestTooLarge { .. }
            | Self::TooManyMatches { .. }
            | Self::RecordTooLarge { .. }
            | Self::QuotaExceeded { .. } => Code::ResourceExhausted,
            Self::BodyTimeout { .. } => Code::DeadlineExceeded,
            Self::Conflict(_) => Code::AlreadyExists,
            Self::CursorNotDelivered { .. } => Code::FailedPrecondition,
            Self::Storage(_) | Self::Commit(_) | Self::Audit(_) => Code::Unavailable,
            Self::AuditRange(_) => Code::OutOfRange,
            Self::BadFilter { .. } | Self::BadReason(_) => Code::InvalidArgument,
        }
    }
}

impl RequestError {
    /// The rule, limit or field kind that refused, for aggregating refusals
    /// (never a value the caller sent).
    pub fn rule(&self) -> &'static str {
        match self {
            Self::Unauthenticated => "unauthenticated",
            Self::MissingRole { .. } => "rule role",
            Self::MissingOfficer | Self::BadOfficer(_) => OFFICER_HEADER,
            Self::MissingAlert | Self::Invalid(_) => "invalid alert",
            Self::InvalidRequest(_) => "invalid request",
            Self::TooLarge { .. } => "limits.max_alert_bytes",
            Self::OriginMismatch { .. } => "rule origin-is-caller",
            Self::NotReceived { .. } => "rule forwarder-received",
            Self::Conflict(_) => "alert_id reused",
            Self::CursorNotDelivered { .. } => "cursor not delivered",
            Self::Storage(_) | Self::Commit(_) | Self::Audit(_) => "unavailable",
            Self::AuditRange(_) => "audit range",
            Self::BadFilter { .. } => "audit filter",
            Self::BadReason(_) => "audit reason",
            Self::UnknownHit(_) => "unknown hit",
            Self::UnknownAlert(_) => "unknown alert",
            Self::NotOrigin { .. } => "rule origin-only",
            Self::NotStatusReader { .. } => "rule origin-or-auditor",
            Self::StaleVersion { .. } => "replaces_version",
            Self::WrongState { .. } => "alert state",
            Self::HitDeclined(_) => "hit declined",
            Self::AlreadyRequested { .. } => "already requested",
            Self::UnknownRequest(_) => "unknown request",
            Self::NotHolder { .. } => "rule holder-decides",
            Self::RequestExpired { .. } => "request expired",
            Self::AlreadyDecided { .. } => "already decided",
            Self::AlertGone(_) => "alert gone",
            Self::RateLimited { .. } => "limits.rate_per_node",
            Self::RequestTooLarge { key, .. } => key,
            Self::BodyTimeout { .. } => "limits.request_body_timeout",
            Self::TooManyMatches { .. } => "limits.max_lookup_matches",
            Self::RecordTooLarge { .. } => "audit.max_record_bytes",
            Self::QuotaExceeded { key, .. } => key,
            Self::TooManyStreams { .. } => "limits.max_streams_per_node",
            Self::QueueFull { .. } => "limits.max_queue_per_node",
            Self::StorageLimit { .. } => "storage limit",
            Self::AlertUnavailable { .. } => "alert unavailable",
        }
    }

    /// What the audit log records about a refusal: the code and the rule or
    /// field names, never the values a caller sent (they may be personal data).
    pub fn audit_detail(&self) -> String {
        let code = format!("{:?}", self.code());
        let what = match self {
            Self::Invalid(v) | Self::InvalidRequest(v) => {
                v.violations.iter().map(|v| v.field.as_str()).collect::<Vec<_>>().join(", ")
            }
            Self::NotHolder { request_id, .. } => format!("rule holder-decides (request {request_id})"),
            Self::MissingRole { role, .. } => format!("rule role-{role}"),
            Self::OriginMismatch { origin, .. } => format!("rule origin-is-caller (claimed origin {origin})"),
            Self::NotReceived { alert_id, .. } => format!("rule forwarder-received (forwarded_from {alert_id})"),
            Self::NotOrigin { alert_id, .. } => format!("rule origin-only (alert {alert_id})"),
            Self::NotStatusReader { alert_id, .. } => format!("rule origin-or-auditor (alert {alert_id})"),
            Self::StaleVersion { given, current, .. } => format!("replaces_version ({given}, current {current})"),
            Self::MissingOfficer | Self::BadOfficer(_) => OFFICER_HEADER.to_owned(),
            Self::TooLarge { size, limit } => format!("limits.max_alert_bytes ({size} > {limit})"),
            Self::RateLimited { rate, burst, .. } => format!("limits.rate_per_node ({rate}/s, burst {burst})"),
            Self::RequestTooLarge { size, limit, key } => format!("{key} ({size} > {limit})"),
            Self::BodyTimeout { .. } => "limits.request_body_timeout".to_owned(),
            Self::TooManyMatches { limit } => format!("limits.max_lookup_matches ({limit})"),
            Self::RecordTooLarge { size, limit } => format!("audit.max_record_bytes ({size} > {limit})"),
            Self::QuotaExceeded { key, limit, window, .. } => {
                format!("quota exceeded: {key} ({limit} per {})", humantime::format_duration(*window))
            }
            Self::TooManyStreams { limit, .. } => format!("limits.max_streams_per_node ({limit})"),
            Self::QueueFull { node, queued, limit } => {
                format!("limits.max_queue_per_node (recipient {node}: {queued} of {limit})")
            }
            Self::BadFilter { field, .. } => (*field).to_owned(),
            Self::BadReason(r) => r.field.to_owned(),
            Self::Conflict(_) => "alert_id reused with different content".to_owned(),
            Self::CursorNotDelivered { cursor, .. } => format!("cursor {cursor} not delivered"),
            Self::StorageLimit { key, period, latest, .. } => {
                format!("expires_at past {key} ({period}, at most {latest})")
            }
            other => other.to_string(),
        };
        format!("{code}: {what}")
    }
}

impl From<RequestError> for Status {
    fn from(e: RequestError) -> Self {
        let code = e.code();
        let message = e.to_string();
        let mut details = ErrorDetails::new();
        match &e {
            RequestError::Invalid(v) | RequestError::InvalidRequest(v) => {
                for violation in &v.violations {
                    details.add_bad_request_violation(violation.field.clone(), violation.description.clone());
                }
            }
            RequestError::MissingOfficer | RequestError::BadOfficer(_) => {
                details.add_bad_request_violation(OFFICER_HEADER, message.clone());
            }
            RequestError::BadFilter { field, message } => {
                details.add_bad_request_violation(*field, message.clone());
            }
            RequestError::BadReason(r) => {
                details.add_bad_request_violation(r.field, r.message.clone());
            }
            RequestError::StaleVersion { current, .. } => {
                details.add_bad_request_violation("replaces_version", format!("the current version is {current}"));
            }
            RequestError::MissingAlert => {
                details.add_bad_request_violation("alert", "is required");
            }
            RequestError::StorageLimit { key, period, latest, .. } => {
                details.add_bad_request_violation(
                    "expires_at",
                    format!("is past the storage limit: {key} allows {period} from publication, so at most {latest}"),
                );
            }
            RequestError::TooLarge { size, limit } => {
                details.set_quota_failure(vec![tonic_types::QuotaViolation::new(
                    "limits.max_alert_bytes",
                    format!("alert is {size} bytes; the limit is {limit}"),
                )]);
            }
            RequestError::RateLimited { retry_after, .. } => {
                details
                    .set_quota_failure(vec![tonic_types::QuotaViolation::new("limits.rate_per_node", message.clone())]);
                details.set_retry_info(Some(*retry_after));
            }
            RequestError::QuotaExceeded { key, retry_after, .. } => {
                details.set_quota_failure(vec![tonic_types::QuotaViolation::new(*key, message.clone())]);
                details.set_retry_info(Some(*retry_after));
            }
            RequestError::RequestTooLarge { key, .. } => {
                details.set_quota_failure(vec![tonic_types::QuotaViolation::new(*key, message.clone())]);
            }
            RequestError::TooManyMatches { .. } => {
                details.set_quota_failure(vec![tonic_types::QuotaViolation::new(
                    "limits.max_lookup_matches",
                    message.clone(),
                )]);
            }
            RequestError::TooManyStreams { .. } => {
                details.set_quota_failure(vec![tonic_types::QuotaViolation::new(
                    "limits.max_streams_per_node",
                    message.clone(),
                )]);
            }
            RequestError::QueueFull { .. } => {
                details.set_quota_failure(vec![tonic_types::QuotaViolation::new(
                    "limits.max_queue_per_node",
                    message.clone(),
                )]);
            }
            _ => return Status::new(code, message),
        }
        Status::with_error_details(code, message, details)
    }
}
