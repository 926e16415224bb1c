//! Every audit record the gateway writes is built here, by a pure function
//! of what happened: who acted, on what, with which decision.
//!
//! What a record must hold (LED Art. 25, SIS Art. 12, CIR Art. 24): the
//! node and officer, the certificate fingerprint, the purpose, legal basis
//! and justification, the alert and its content digest, the recipients and
//! levels, the deciding policies and policy-set version, the withheld fields,
//! the data types used, and subjects as HMAC pseudonyms — never identifiers,
//! and never values a caller sent in a refused request.

use isx_core::NodeId;
use isx_core::display;
use isx_core::wire::{
    AccessRequest, Alert, AuditHit, AuditRecord, Delivery, DisclosureLevel, Operation, Outcome, RecipientDecision,
    RecipientLevel, RecipientOutcome,
};
use isx_tls::PeerIdentity;

use crate::conn::{ConnInfo, RequestInfo, Subject};
use crate::error::RequestError;
use crate::store::AuditFacts;

/// Who acted: the connection (absent for the gateway's own actions, such as
/// expiry) and the officer named in the request.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Actor<'a> {
    /// The caller's connection.
    pub conn: Option<&'a ConnInfo>,
    /// The officer, as sent.
    pub officer: &'a str,
}

impl<'a> Actor<'a> {
    /// A caller on `conn`, acting as `officer`.
    pub fn new(conn: &'a ConnInfo, officer: &'a str) -> Self {
        Self { conn: Some(conn), officer }
    }

    /// The gateway itself (sweeps, expiry).
    pub fn gateway() -> Self {
        Self { conn: None, officer: "" }
    }
}

/// A record about `by`, with the identity fields filled in.
pub(crate) fn about(by: Actor<'_>, operation: Operation, outcome: Outcome) -> AuditRecord {
    AuditRecord {
        operation: operation as i32,
        node: by.conn.map(|c| c.identity.node.to_string()).unwrap_or_default(),
        cert_fingerprint: by.conn.map(|c| c.identity.fingerprint.clone()).unwrap_or_default(),
        officer: by.officer.to_owned(),
        outcome: outcome as i32,
        ..Default::default()
    }
}

/// One recipient's level and deciding policies.
pub(crate) fn recipient(node: &str, level: DisclosureLevel, policy_ids: &[String]) -> RecipientLevel {
    RecipientLevel { node: node.to_owned(), level: level as i32, policy_ids: policy_ids.to_vec(), ..Default::default() }
}

/// One candidate of a publish: its level, deciding policies and what became of it.
fn candidate(r: &RecipientDecision) -> RecipientLevel {
    RecipientLevel { outcome: r.outcome, ..recipient(&r.node, r.level(), &r.policy_ids) }
}

/// The COLLECTION record of a publish: the alert's identity, every
/// candidate's level, and the subjects.
pub(crate) fn collection(
    by: Actor<'_>,
    alert: &Alert,
    digest_hex: &str,
    decisions: &[RecipientDecision],
    policy_version: &str,
    pseudonyms: &[String],
    raised_by: &[String],
) -> AuditRecord {
    let relays =
        (!alert.forwarded_from.is_empty()).then(|| format!("relays {} (hop {})", alert.forwarded_from, alert.hops));
    let raised = (!raised_by.is_empty()).then(|| {
        format!(
            "labels raised to {}: shares a person, document or object with {} received under restricted labels; reaches only its holders",
            labels_text(alert),
            raised_by.join(", ")
        )
    });
    AuditRecord {
        purpose: alert.purpose.clone(),
        legal_basis: alert.legal_basis.clone(),
        alert_id: alert.alert_id.clone(),
        content_digest: digest_hex.to_owned(),
        recipients: decisions.iter().map(candidate).collect(),
        policy_version: policy_version.to_owned(),
        subject_pseudonyms: pseudonyms.to_vec(),
        detail: relays.into_iter().chain(raised).collect::<Vec<_>>().join("; "),
        related_alert_ids: raised_by.to_vec(),
        ..about(by, Operation::Collection, Outcome::Ok)
    }
}

/// `TLP:AMBER+STRICT H2`, and the PAP if set.
fn labels_text(alert: &Alert) -> String {
    let l = alert.labels.clone().unwrap_or_default();
    let mut text = format!("{} {}", display::tlp(l.tlp()), display::handling(l.handling_code()));
    if l.pap != 0 {
        text.push_str(&format!(" {}", l.pap().as_str_name().replace('_', ":")));
    }
    text
}

/// The DENIAL of one candidate that policy refused, next to its publish's
/// collection record (whose alert identity it repeats).
pub(crate) fn policy_denial(by: Actor<'_>, collection: &AuditRecord, decision: &RecipientDecision) -> AuditRecord {
    AuditRecord {
        purpose: collection.purpose.clone(),
        legal_basis: collection.legal_basis.clone(),
        alert_id: collection.alert_id.clone(),
        content_digest: collection.content_digest.clone(),
        policy_version: collection.policy_version.clone(),
        subject_pseudonyms: collection.subject_pseudonyms.clone(),
        recipients: vec![candidate(decision)],
        policy_ids: decision.policy_ids.clone(),
        detail: match decision.outcome() {
            RecipientOutcome::NoSubscribeRole => {
                format!("recipient {} holds no subscribe role: it cannot receive, nothing was queued", decision.node)
            }
            _ => format!("recipient {} refused by policy", decision.node),
        },
        ..about(by, Operation::Denial, Outcome::Refused)
    }
}

/// The DENIAL of one candidate whose queue is full: policy allowed it its
/// level, but nothing was queued for it.
pub(crate) fn queue_full(
    by: Actor<'_>,
    collection: &AuditRecord,
    decision: &RecipientDecision,
    queued: u64,
    limit: u64,
) -> AuditRecord {
    AuditRecord {
        detail: format!(
            "recipient {} not served: {queued} undelivered events wait for it (limits.max_queue_per_node is {limit}); nothing was queued for it",
            decision.node
        ),
        ..policy_denial(by, collection, decision)
    }
}

/// A publish taken back after its writes or flush failed.
pub(crate) fn withdrawn(by: Actor<'_>, alert_id: &str, cause: &dyn std::fmt::Display) -> AuditRecord {
    AuditRecord {
        alert_id: alert_id.to_owned(),
        detail: format!("publish withdrawn, nothing disclosed: {cause}"),
        ..about(by, Operation::Denial, Outcome::Error)
    }
}

/// The DISCLOSURE record of one delivery to `node`'s subscription.
pub(crate) fn disclosure(by: Actor<'_>, node: &NodeId, delivery: &Delivery, facts: &AuditFacts) -> AuditRecord {
    let view = delivery.alert.clone().unwrap_or_default();
    AuditRecord {
        purpose: facts.purpose.clone(),
        legal_basis: facts.legal_basis.clone(),
        alert_id: view.alert_id.clone(),
        content_digest: isx_core::digest::content_digest_hex(&view),
        recipients: vec![recipient(node.as_str(), delivery.level(), &delivery.policy_ids)],
        policy_ids: delivery.policy_ids.clone(),
        policy_version: delivery.policy_version.clone(),
        withheld_fields: delivery.removed_fields.clone(),
        request_id: delivery.request_id.clone(),
        subject_pseudonyms: facts.subject_pseudonyms.clone(),
        ..about(by, Operation::Disclosure, Outcome::Ok)
    }
}

/// The DENIAL of a refused request: the code and the rule or field names,
/// never what the caller sent.
pub(crate) fn refusal(info: &RequestInfo, e: &RequestError) -> AuditRecord {
    let detail = e.audit_detail();
    let (alert_id, request_id) = match (e, &info.subject) {
        // A rate-limit refusal is about the caller, not about what it named.
        (RequestError::RateLimited { .. }, _) => (String::new(), String::new()),
        (_, Subject::Alert(id)) => (id.clone(), String::new()),
        (_, Subject::Request(id)) => (String::new(), id.clone()),
        (_, Subject::Hit(_) | Subject::None) => (String::new(), String::new()),
    };
    AuditRecord {
        alert_id,
        request_id,
        detail,
        ..about(Actor { conn: info.conn.as_ref(), officer: &info.officer }, Operation::Denial, Outcome::Refused)
    }
}

/// The DENIAL of a connection whose certificate names an unregistered node.
pub(crate) fn unregistered(identity: &PeerIdentity) -> AuditRecord {
    AuditRecord {
        node: identity.node.to_string(),
        cert_fingerprint: identity.fingerprint.clone(),
        detail: "connection refused: the certificate names a node that is not registered".into(),
        ..about(Actor::gateway(), Operation::Denial, Outcome::Refused)
    }
}

/// The DENIAL of a connection past its node's `limits.max_connections_per_node`.
pub(crate) fn too_many_connections(identity: &PeerIdentity, limit: usize) -> AuditRecord {
    AuditRecord {
        node: identity.node.to_string(),
        cert_fingerprint: identity.fingerprint.clone(),
        detail: format!(
            "connection refused: the node already holds {limit} connections (limits.max_connections_per_node)"
        ),
        ..about(Actor::gateway(), Operation::Denial, Outcome::Refused)
    }
}

/// What one lookup asked and what it was shown.
#[derive(Debug, Clone)]
pub(crate) struct Consultation<'a> {
    /// The stated purpose.
    pub purpose: &'a str,
    /// The stated justification.
    pub justification: &'a str,
    /// The identifier types used, sorted, once each.
    pub data_types: &'a [String],
    /// The pseudonyms of the identifiers asked for.
    pub pseudonyms: &'a [String],
    /// Every matching alert, shown or withheld.
    pub hits: &'a [AuditHit],
    /// The policy-set version that decided.
    pub policy_version: &'a str,
}

/// The CONSULTATION record of a lookup.
pub(crate) fn consultation(by: Actor<'_>, c: &Consultation<'_>) -> AuditRecord {
    let shown = c.hits.iter().filter(|h| h.shown).count();
    AuditRecord {
        purpose: c.purpose.to_owned(),
        justification: c.justification.to_owned(),
        data_types: c.data_types.to_vec(),
        subject_pseudonyms: c.pseudonyms.to_vec(),
        hits: c.hits.to_vec(),
        policy_version: c.policy_version.to_owned(),
        detail: format!("{shown} hit(s) shown, {} withheld by policy", c.hits.len() - shown),
        ..about(by, Operation::Consultation, Outcome::Ok)
    }
}

/// The ACCESS_REQUEST record of a request to a holder.
pub(crate) fn access_request(
    by: Actor<'_>,
    request: &AccessRequest,
    pseudonyms: &[String],
    deadline: &str,
) -> AuditRecord {
    AuditRecord {
        purpose: request.purpose.clone(),
        justification: request.justification.clone(),
        alert_id: request.alert_id.clone(),
        request_id: request.request_id.clone(),
        recipients: vec![RecipientLevel { node: request.holder.clone(), ..Default::default() }],
        subject_pseudonyms: pseudonyms.to_vec(),
        detail: format!(
            "asks holder {} for the alert behind hit {}; deadline {deadline}",
            request.holder, request.hit_id
        ),
        ..about(by, Operation::AccessRequest, Outcome::Ok)
    }
}

/// What a grant disclosed.
#[derive(Debug, Clone)]
pub(crate) struct Grant<'a> {
    /// The content digest of the alert, hex.
    pub digest_hex: String,
    /// The requester's level.
    pub level: DisclosureLevel,
    /// The deciding policies.
    pub policy_ids: &'a [String],
    /// The policy-set version.
    pub policy_version: &'a str,
    /// Fields the requester does not see.
    pub withheld: &'a [String],
    /// The alert's subjects.
    pub pseudonyms: &'a [String],
}

/// The ACCESS_DECISION record of a holder's decision: a grant (with what it
/// disclosed) or a denial.
pub(crate) fn access_decision(
    by: Actor<'_>,
    request: &AccessRequest,
    reason: &str,
    grant: Option<&Grant<'_>>,
) -> AuditRecord {
    let base = AuditRecord {
        justification: reason.to_owned(),
        alert_id: request.alert_id.clone(),
        request_id: request.request_id.clone(),
        purpose: request.purpose.clone(),
        ..about(by, Operation::AccessDecision, if grant.is_some() { Outcome::Ok } else { Outcome::Refused })
    };
    match grant {
        Some(g) => AuditRecord {
            content_digest: g.digest_hex.clone(),
            recipients: vec![recipient(&request.requester, g.level, g.policy_ids)],
            policy_ids: g.policy_ids.to_vec(),
            policy_version: g.policy_version.to_owned(),
            withheld_fields: g.withheld.to_vec(),
            subject_pseudonyms: g.pseudonyms.to_vec(),
            detail: match g.level {
                DisclosureLevel::Denied => {
                    format!("granted by the holder, but policy allows {} nothing", request.requester)
                }
                level => {
                    format!("granted: {} receives the alert {}", request.requester, isx_core::display::level(level))
                }
            },
            ..base
        },
        None => AuditRecord {
            recipients: vec![recipient(&request.requester, DisclosureLevel::Denied, &[])],
            detail: format!("denied by the holder: {} receives nothing", request.requester),
            ..base
        },
    }
}

/// The ACCESS_DECISION record of a request that passed its deadline.
pub(crate) fn access_expired(request: &AccessRequest, deadline: &str) -> AuditRecord {
    AuditRecord {
        alert_id: request.alert_id.clone(),
        request_id: request.request_id.clone(),
        purpose: request.purpose.clone(),
        recipients: vec![recipient(&request.requester, DisclosureLevel::Denied, &[])],
        detail: format!("expired: holder {} did not decide by {deadline}", request.holder),
        ..about(Actor::gateway(), Operation::AccessDecision, Outcome::Refused)
    }
}

/// The FOLLOW_UP_DECLINED record of a hit the caller will not follow up.
pub(crate) fn follow_up_declined(
    by: Actor<'_>,
    hit_id: &str,
    alert: &Alert,
    reason: &str,
    pseudonyms: &[String],
) -> AuditRecord {
    AuditRecord {
        justification: reason.to_owned(),
        alert_id: alert.alert_id.clone(),
        recipients: vec![RecipientLevel { node: alert.origin.clone(), ..Default::default() }],
        subject_pseudonyms: pseudonyms.to_vec(),
        detail: format!("hit {hit_id} held by {} not followed up", alert.origin),
        ..about(by, Operation::FollowUpDeclined, Outcome::Ok)
    }
}

/// The ALTERATION record of an origin allowing onward copies of its alert.
pub(crate) fn onward_allowed(by: Actor<'_>, alert: &Alert, recipients: &[String], reason: &str) -> AuditRecord {
    AuditRecord {
        alert_id: alert.alert_id.clone(),
        justification: reason.to_owned(),
        recipients: recipients.iter().map(|n| RecipientLevel { node: n.clone(), ..Default::default() }).collect(),
        detail: format!("the origin allows onward copies to {}", recipients.join(", ")),
        ..about(by, Operation::Alteration, Outcome::Ok)
    }
}

/// What a lifecycle change record says, besides who made it.
#[derive(Debug, Clone)]
pub(crate) struct ChangeFacts<'a> {
    /// ALTERATION (amend, restrict, lift) or ERASURE (withdraw, expiry).
    pub operation: Operation,
    /// The alert changed.
    pub alert_id: &'a str,
    /// Why (sealed on append); empty for an expiry.
    pub reason: &'a str,
    /// Versions, digests, the forwards it follows, the confirmation grace.
    pub change: isx_core::wire::LifecycleChange,
    /// Each recipient's new level with its outcome (UPDATED, WITHDRAWN, ...).
    pub recipients: Vec<RecipientLevel>,
    /// The policy-set version that decided (an amendment).
    pub policy_version: &'a str,
    /// The new version's subjects, as pseudonyms (an amendment).
    pub pseudonyms: &'a [String],
    /// The alert's purpose and legal basis.
    pub purpose: &'a str,
    /// The legal basis.
    pub legal_basis: &'a str,
    /// In words, without content.
    pub detail: String,
}

/// The ALTERATION or ERASURE record of a lifecycle change. No content:
/// versions, digests, levels and the reason.
pub(crate) fn lifecycle_change(by: Actor<'_>, f: ChangeFacts<'_>) -> AuditRecord {
    AuditRecord {
        alert_id: f.alert_id.to_owned(),
        justification: f.reason.chars().take(512).collect(),
        content_digest: f.change.new_digest.clone(),
        recipients: f.recipients,
        policy_version: f.policy_version.to_owned(),
        subject_pseudonyms: f.pseudonyms.to_vec(),
        purpose: f.purpose.to_owned(),
        legal_basis: f.legal_basis.to_owned(),
        detail: f.detail,
        lifecycle: Some(f.change),
        ..about(by, f.operation, Outcome::Ok)
    }
}

/// The CHANGE_CONFIRMED record of a holder's confirmation: the holder (the
/// caller), the alert, the version and the state reached.
pub(crate) fn change_confirmed(
    by: Actor<'_>,
    alert_id: &str,
    kind: isx_core::wire::ChangeKind,
    version: u32,
    state: isx_core::wire::CopyState,
) -> AuditRecord {
    AuditRecord {
        alert_id: alert_id.to_owned(),
        detail: format!(
            "the holder confirms its copy is {} at version {version}",
            state.as_str_name().trim_start_matches("COPY_STATE_").to_lowercase()
        ),
        lifecycle: Some(isx_core::wire::LifecycleChange {
            kind: kind as i32,
            old_version: version,
            new_version: version,
            confirmed: state as i32,
            ..Default::default()
        }),
        ..about(by, Operation::ChangeConfirmed, Outcome::Ok)
    }
}

/// Why the log is read, as checked: the purpose (LED Art. 25(2)), the case
/// reference, and for an export who receives it.
#[derive(Debug, Clone)]
pub(crate) struct ReadWhy {
    /// The purpose.
    pub purpose: isx_core::wire::ReadPurpose,
    /// The case reference, trimmed.
    pub case_reference: String,
    /// An export's recipient, trimmed.
    pub recipient: Option<String>,
}

/// The LOG_READ record of an auditor's call; `describe` says what was read
/// (filter kinds and values that are not identifiers, and the caller's
/// scope), `why` its purpose, case and (export) recipient.
pub(crate) fn log_read(
    by: Actor<'_>,
    describe: String,
    pseudonym: Option<String>,
    justification: &str,
    why: &ReadWhy,
) -> AuditRecord {
    AuditRecord {
        justification: justification.chars().take(512).collect(),
        detail: describe,
        subject_pseudonyms: pseudonym.into_iter().collect(),
        purpose: isx_core::read_reason::name(why.purpose).unwrap_or_default().to_owned(),
        case_reference: why.case_reference.clone(),
        export_recipient: why.recipient.clone().unwrap_or_default(),
        ..about(by, Operation::LogRead, Outcome::Ok)
    }
}

/// The DENIAL of a refused Audit call.
pub(crate) fn log_read_refused(info: &RequestInfo, e: &RequestError, describe: &str) -> AuditRecord {
    AuditRecord {
        detail: format!("{} (audit log: {describe})", e.audit_detail()),
        ..about(Actor { conn: info.conn.as_ref(), officer: &info.officer }, Operation::Denial, Outcome::Refused)
    }
}

/// The DENIAL of a refused Admin call.
pub(crate) fn admin_refused(info: &RequestInfo, e: &RequestError, describe: &str) -> AuditRecord {
    AuditRecord {
        detail: format!("{} (admin: {describe})", e.audit_detail()),
        ..about(Actor { conn: info.conn.as_ref(), officer: &info.officer }, Operation::Denial, Outcome::Refused)
    }
}

/// The ADMINISTRATION record of a change: what changed (`change`), by whom
/// (`by`, the gateway itself for start, stop and timers), why (`reason`,
/// sealed on append), and in words (`detail`, no personal data).
pub(crate) fn administration(
    by: Actor<'_>,
    change: isx_core::wire::AdminChange,
    reason: &str,
    outcome: Outcome,
    detail: String,
) -> AuditRecord {
    AuditRecord {
        justification: reason.chars().take(512).collect(),
        detail,
        admin: Some(change),
        ..about(by, Operation::Administration, outcome)
    }
}

/// An [`AdminChange`](isx_core::wire::AdminChange) of `action`, asked for `via`.
pub(crate) fn change(
    action: isx_core::wire::AdminAction,
    old_version: &str,
    new_version: &str,
    changed: Vec<String>,
    via: &str,
) -> isx_core::wire::AdminChange {
    isx_core::wire::AdminChange {
        action: action as i32,
        old_version: old_version.to_owned(),
        new_version: new_version.to_owned(),
        changed,
        via: via.to_owned(),
    }
}

/// The ADMINISTRATION record of a policy reload that put `new` in force
/// (`old` if nothing changed), with the policies it changed.
pub(crate) fn policy_reloaded(
    by: Actor<'_>,
    reason: &str,
    via: &str,
    reloaded: &crate::disclosure::Reloaded,
) -> AuditRecord {
    let (old, new) = (&reloaded.old_version, &reloaded.new_version);
    let mut what = if reloaded.changed.is_empty() {
        "no policy changed".to_owned()
    } else {
        format!("{} policies changed: {}", reloaded.changed.len(), reloaded.changed.join(", "))
    };
    if reloaded.schema_changed {
        what.push_str("; the schema changed");
    }
    let detail = if old == new {
        format!("policy reloaded ({via}): version {new} unchanged, nothing changed")
    } else {
        format!("policy reloaded ({via}): version {old} -> {new}; {what}")
    };
    let change = change(isx_core::wire::AdminAction::PolicyReload, old, new, reloaded.changed.clone(), via);
    AuditRecord { policy_version: new.clone(), ..administration(by, change, reason, Outcome::Ok, detail) }
}

/// The ADMINISTRATION record of a refused policy reload: `problem` (the
/// directory's error, or what was wrong with the request), and the version
/// that stays in force.
pub(crate) fn policy_reload_refused(by: Actor<'_>, reason: &str, via: &str, kept: &str, problem: &str) -> AuditRecord {
    let detail = format!("policy reload refused ({via}): {problem}; version {kept} stays in force");
    let change = change(isx_core::wire::AdminAction::PolicyReload, kept, "", vec![], via);
    AuditRecord { policy_version: kept.to_owned(), ..administration(by, change, reason, Outcome::Refused, detail) }
}

/// The ADMINISTRATION record of the gateway's start: the policy version in
/// force (and the one it last ran with, if it knows one) and `detail`.
pub(crate) fn gateway_start(last_version: &str, version: &str, detail: String) -> AuditRecord {
    let change = change(isx_core::wire::AdminAction::GatewayStart, last_version, version, vec![], "start");
    AuditRecord {
        policy_version: version.to_owned(),
        ..administration(Actor::gateway(), change, "", Outcome::Ok, detail)
    }
}

/// The ADMINISTRATION record of a graceful stop, the last record of a run.
pub(crate) fn gateway_stop(version: &str, outcome: Outcome, detail: String) -> AuditRecord {
    let change = change(isx_core::wire::AdminAction::GatewayStop, version, "", vec![], "shutdown");
    AuditRecord { policy_version: version.to_owned(), ..administration(Actor::gateway(), change, "", outcome, detail) }
}

/// An ADMINISTRATION record the gateway writes itself at start (`via`
/// "start"): a node registered, changed or removed since the last run, the
/// redaction profile or the policy changed while it was stopped. `old` and
/// `new` describe what was and what is (a node's kind, country, roles and
/// name; a profile's digest).
pub(crate) fn at_start(
    action: isx_core::wire::AdminAction,
    (old, new): (&str, &str),
    changed: Vec<String>,
    detail: String,
) -> AuditRecord {
    administration(Actor::gateway(), change(action, old, new, changed, "start"), "", Outcome::Ok, detail)
}

/// The ADMINISTRATION record of a read of the revocation lists that changed
/// what they revoke: serials newly revoked (`+serial`) and no longer
/// revoked (`-serial`), and the digests of the set before and after.
pub(crate) fn crl_reload(report: &crate::revocation::CrlReport, via: &str) -> AuditRecord {
    let changed: Vec<String> =
        report.added.iter().map(|s| format!("+{s}")).chain(report.removed.iter().map(|s| format!("-{s}"))).collect();
    let detail = format!(
        "revocation lists read ({via}): {} certificate(s) newly revoked, {} no longer revoked; {} revoked by {} list(s); {} open connection(s) closed",
        report.added.len(),
        report.removed.len(),
        report.revoked,
        report.lists,
        report.closed
    );
    let (old, new) = &report.digests;
    let change = change(isx_core::wire::AdminAction::CrlReload, old, new, changed, via);
    administration(Actor::gateway(), change, "", Outcome::Ok, detail)
}

/// The DENIAL of an Admin request refused for what it asked (a field
/// missing, no such hold, a cut-off against the retention rule): the call,
/// the gRPC code and the gateway's message (field names, rule names, ids
/// and dates; the request's free text is never in it).
pub(crate) fn admin_request_refused(by: Actor<'_>, what: &str, code: tonic::Code, message: &str) -> AuditRecord {
    let message: String = message.chars().take(512).collect();
    AuditRecord {
        detail: format!("{code:?} (admin: {what}): {message}"),
        ..about(by, Operation::Denial, Outcome::Refused)
    }
}
