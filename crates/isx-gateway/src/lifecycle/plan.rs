//! A lifecycle change as a plan: pure functions from the alert as it
//! stands, the caller and (for an amendment) the policy's decisions, to the
//! record, the receipt or status, and the [`PendingChange`] the store stages
//! and applies. No I/O, no clock.

use std::collections::{BTreeMap, BTreeSet};

#[cfg(test)]
use isx_core::NodeInfo;
use isx_core::Role;
use isx_core::timestamp::{from_unix_millis, to_unix_millis};
use isx_core::wire::{
    Alert, AlertChange, AlertState, AlertStatus, AlertVersion, AuditRecord, ChangeKind, CopyState, CopyStatus,
    Delivery, DisclosureLevel, LifecycleChange, Operation, Receipt, RecipientDecision, RecipientLevel,
    RecipientOutcome,
};
use isx_policy::disclosure::NO_SUBSCRIBE_ROLE;

use crate::disclosure::{Candidate, Decided};
use crate::records::{self, Actor, ChangeFacts};
use crate::store::keys::{expiry_key, lookup_key};
use crate::store::{
    AlertPart, AuditFacts, Event, ExpiryRow, IndexRow, OutboxEntry, PendingChange, PendingEvent, StatusHead,
    StoredAlert, expires_ms,
};

/// Who changes, why, when.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Context<'a> {
    /// The origin's caller (the gateway itself for an expiry).
    pub by: Actor<'a>,
    /// Why (sealed in the record); empty for an expiry.
    pub reason: &'a str,
    /// Now, Unix milliseconds.
    pub now_ms: u64,
    /// `lifecycle.confirm_grace`, seconds.
    pub grace_s: u64,
}

/// One alert as it stands before a change.
#[derive(Debug, Clone)]
pub(crate) struct Current {
    /// Its row.
    pub stored: StoredAlert,
    /// Its status head (kept, or built from the row by [`head_of`]).
    pub head: StatusHead,
    /// Its copies' status rows, by node.
    pub copies: BTreeMap<String, CopyStatus>,
    /// Its expiry row's key.
    pub expiry_key: Vec<u8>,
    /// Its expiry row: the outbox rows and lookup keys that go with it.
    pub expiry: ExpiryRow,
}

impl Current {
    fn alert(&self) -> Alert {
        self.stored.alert.clone().unwrap_or_default()
    }

    fn id(&self) -> String {
        self.alert().alert_id
    }

    /// Every node that holds a copy, but the origin, with its level.
    pub fn holders(&self) -> BTreeMap<String, DisclosureLevel> {
        let origin = self.alert().origin;
        let levels: BTreeMap<&str, DisclosureLevel> = self
            .stored
            .receipt
            .iter()
            .flat_map(|r| r.recipients.iter().map(|d| (d.node.as_str(), d.level())))
            .collect();
        self.stored
            .holders()
            .into_iter()
            .filter(|n| *n != origin)
            .map(|n| {
                let level = levels.get(n.as_str()).copied().unwrap_or(DisclosureLevel::Full);
                (n, level)
            })
            .collect()
    }
}

/// The alert's version: 1 as published (stored as 0 or 1), one more per amendment.
pub(crate) fn version_of(alert: &Alert) -> u32 {
    alert.version.max(1)
}

/// The kept head, or one built from the alert row (no change yet).
pub(crate) fn head_of(stored: &StoredAlert, kept: Option<StatusHead>) -> StatusHead {
    if let Some(h) = kept {
        return h;
    }
    let alert = stored.alert.clone().unwrap_or_default();
    let receipt = stored.receipt.clone().unwrap_or_default();
    StatusHead {
        alert_id: alert.alert_id.clone(),
        origin: alert.origin.clone(),
        state: state_of(stored) as i32,
        versions: vec![AlertVersion {
            version: 1,
            content_digest: hex::encode(&stored.digest),
            replaces_digest: String::new(),
            at: receipt.accepted_at,
            record_seq: 0,
        }],
        expires_ms: expires_ms(&alert),
        ended_ms: 0,
    }
}

/// The row's state, unspecified read as active.
pub(crate) fn state_of(stored: &StoredAlert) -> AlertState {
    match stored.state() {
        AlertState::Unspecified => AlertState::Active,
        s => s,
    }
}

/// A state in words, for errors.
pub(crate) fn state_name(s: AlertState) -> &'static str {
    match s {
        AlertState::Restricted => "restricted",
        AlertState::Withdrawn => "withdrawn",
        AlertState::Expired => "expired",
        _ => "active",
    }
}

/// The status row of a copy after a change: what it is asked now, what it confirmed before.
#[allow(clippy::too_many_arguments)]
fn copy_after(
    prev: Option<&CopyStatus>,
    node: &str,
    copy_of: &str,
    level: DisclosureLevel,
    kind: ChangeKind,
    version: u32,
    expected: CopyState,
    now_ms: u64,
) -> CopyStatus {
    let prev = prev.cloned().unwrap_or_default();
    CopyStatus {
        node: node.to_owned(),
        copy_of: copy_of.to_owned(),
        level: level as i32,
        last_change: kind as i32,
        version,
        expected: expected as i32,
        changed_at: Some(from_unix_millis(now_ms)),
        settled: kind == ChangeKind::Unspecified,
        overdue: false,
        ..prev
    }
}

fn change_entry(change: AlertChange, expires: u64, facts: Option<AuditFacts>) -> OutboxEntry {
    OutboxEntry { event: Some(Event::Change(change)), expires_ms: expires, audit: facts }
}

/// What a change kind asks of a copy.
fn asks(kind: ChangeKind) -> CopyState {
    match kind {
        ChangeKind::Withdrawal | ChangeKind::Expiry => CopyState::Deleted,
        ChangeKind::Restriction => CopyState::Restricted,
        _ => CopyState::Held,
    }
}

fn outcome_of(kind: ChangeKind) -> RecipientOutcome {
    match kind {
        ChangeKind::Withdrawal | ChangeKind::Expiry => RecipientOutcome::Withdrawn,
        ChangeKind::Restriction => RecipientOutcome::Restricted,
        ChangeKind::Lift => RecipientOutcome::Lifted,
        _ => RecipientOutcome::Updated,
    }
}

/// What an amendment is planned from.
pub(crate) struct AmendInput<'a> {
    /// The alert as it stands.
    pub current: &'a Current,
    /// The new version, checked, `version` and `hops` set.
    pub alert: Alert,
    /// Its content digest (taken with `version` 0).
    pub digest: [u8; 32],
    /// The routed candidates of the new version.
    pub candidates: &'a [Candidate<'a>],
    /// The policy's decision on each.
    pub decided: Decided,
    /// The new version's lookup index rows.
    pub index: Vec<IndexRow>,
    /// Received restricted alerts whose labels it took.
    pub raised_by: Vec<String>,
}

/// Everything an amendment writes.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct AmendPlan {
    /// What the origin is answered.
    pub receipt: Receipt,
    /// The ALTERATION record.
    pub record: AuditRecord,
    /// The change to stage and apply.
    pub change: PendingChange,
}

fn no_subscribe(d: &mut isx_policy::Decision) {
    *d = isx_policy::Decision {
        level: DisclosureLevel::Denied,
        policy_ids: vec![NO_SUBSCRIBE_ROLE.to_owned()],
        reasons: vec![],
        removed_fields: vec![],
        view: None,
    };
}

/// Plans an amendment: each earlier holder gets an UPDATE with its view of
/// the new version, or a WITHDRAWAL if policy now denies it; a node newly
/// allowed gets a delivery; undelivered rows of the old version are
/// superseded; the lookup index follows the new version. While the alert is
/// restricted, what carries content is held until the lift.
pub(crate) fn amend(input: AmendInput<'_>, cx: Context<'_>) -> AmendPlan {
    let AmendInput { current, alert, digest, candidates, decided, index, raised_by } = input;
    let id = alert.alert_id.clone();
    let old = current.alert();
    let (old_version, new_version) = (version_of(&old), version_of(&alert));
    let (old_digest, new_digest) = (hex::encode(&current.stored.digest), hex::encode(digest));
    let restricted = state_of(&current.stored) == AlertState::Restricted;
    let expires = expires_ms(&alert);
    let now = from_unix_millis(cx.now_ms);
    let subjects: Vec<String> = index.iter().map(|r| r.pseudonym.clone()).collect();
    let facts = AuditFacts {
        purpose: alert.purpose.clone(),
        legal_basis: alert.legal_basis.clone(),
        subject_pseudonyms: subjects.clone(),
    };
    // A held UPDATE goes out only after the lift: it asks an unmarked copy.
    let held_state = CopyState::Held;
    let holders = current.holders();
    let policy_version = decided.policy_version.clone();

    let mut rows = Vec::new();
    let mut events = Vec::new();
    let mut copies = Vec::new();
    let mut seen = BTreeSet::new();
    for ((node, _), mut d) in candidates.iter().zip(decided.decisions) {
        let node_id = node.id.to_string();
        seen.insert(node_id.clone());
        let mut outcome = RecipientOutcome::Denied;
        if d.level != DisclosureLevel::Denied && d.view.is_some() && !node.has(Role::Subscribe) {
            no_subscribe(&mut d);
            outcome = RecipientOutcome::NoSubscribeRole;
        }
        let allowed = d.level != DisclosureLevel::Denied && d.view.is_some();
        let was = holders.contains_key(&node_id);
        let delivery = |d: &isx_policy::Decision| Delivery {
            alert: d.view.clone(),
            level: d.level as i32,
            policy_ids: d.policy_ids.clone(),
            removed_fields: d.removed_fields.clone(),
            queued_at: Some(now),
            policy_version: policy_version.clone(),
            request_id: String::new(),
        };
        let prev = current.copies.get(&node_id);
        let mut level = d.level;
        match (was, allowed) {
            (true, true) => {
                outcome = RecipientOutcome::Updated;
                let change = AlertChange {
                    alert_id: id.clone(),
                    kind: ChangeKind::Update as i32,
                    version: new_version,
                    state: held_state as i32,
                    delivery: Some(delivery(&d)),
                    because_of: String::new(),
                    changed_at: Some(now),
                };
                events.push(PendingEvent {
                    node: node_id.clone(),
                    entry: Some(change_entry(change, expires, Some(facts.clone()))),
                    hold: restricted,
                    expires_with_alert: true,
                });
                copies.push(copy_after(
                    prev,
                    &node_id,
                    &id,
                    d.level,
                    ChangeKind::Update,
                    new_version,
                    held_state,
                    cx.now_ms,
                ));
            }
            (true, false) => {
                outcome = RecipientOutcome::Withdrawn;
                level = DisclosureLevel::Denied;
                events.push(deletion(&node_id, &id, ChangeKind::Withdrawal, new_version, "", cx.now_ms));
                copies.push(copy_after(
                    prev,
                    &node_id,
                    &id,
                    DisclosureLevel::Denied,
                    ChangeKind::Withdrawal,
                    new_version,
                    CopyState::Deleted,
                    cx.now_ms,
                ));
            }
            (false, true) => {
                outcome = RecipientOutcome::Queued;
                let entry = OutboxEntry {
                    event: Some(Event::Delivery(delivery(&d))),
                    expires_ms: expires,
                    audit: Some(facts.clone()),
                };
                events.push(PendingEvent {
                    node: node_id.clone(),
                    entry: Some(entry),
                    hold: restricted,
                    expires_with_alert: true,
                });
                copies.push(copy_after(
                    prev,
                    &node_id,
                    &id,
                    d.level,
                    ChangeKind::Unspecified,
                    new_version,
                    CopyState::Held,
                    cx.now_ms,
                ));
            }
            (false, false) => {}
        }
        rows.push(RecipientDecision {
            node: node_id,
            level: level as i32,
            policy_ids: d.policy_ids.clone(),
            removed_fields: d.removed_fields.clone(),
            outcome: outcome as i32,
        });
    }
    // Earlier holders the new version no longer routes to (an addressee
    // removed): a withdrawal. Nodes granted access keep their grant.
    for node in holders.keys() {
        if seen.contains(node) || current.stored.granted_to.contains(node) {
            continue;
        }
        events.push(deletion(node, &id, ChangeKind::Withdrawal, new_version, "", cx.now_ms));
        copies.push(copy_after(
            current.copies.get(node),
            node,
            &id,
            DisclosureLevel::Denied,
            ChangeKind::Withdrawal,
            new_version,
            CopyState::Deleted,
            cx.now_ms,
        ));
        rows.push(RecipientDecision {
            node: node.clone(),
            level: DisclosureLevel::Denied as i32,
            policy_ids: vec!["not-routed".into()],
            removed_fields: vec![],
            outcome: RecipientOutcome::Withdrawn as i32,
        });
    }
    rows.sort_by(|a, b| a.node.cmp(&b.node));

    let receipt = Receipt {
        alert_id: id.clone(),
        content_digest: new_digest.clone(),
        accepted_at: Some(now),
        recipients: rows.clone(),
        hops: alert.hops,
        policy_version: policy_version.clone(),
        labels: if raised_by.is_empty() { None } else { alert.labels.clone() },
        raised_by,
        version: new_version,
        replaces_digest: old_digest.clone(),
    };
    let change = LifecycleChange {
        kind: ChangeKind::Update as i32,
        old_version,
        new_version,
        old_digest: old_digest.clone(),
        new_digest: new_digest.clone(),
        follows: vec![],
        confirmed: 0,
        confirm_grace_seconds: cx.grace_s,
    };
    let updated = rows.iter().filter(|r| r.outcome() == RecipientOutcome::Updated).count();
    let withdrawn = rows.iter().filter(|r| r.outcome() == RecipientOutcome::Withdrawn).count();
    let record = records::lifecycle_change(
        cx.by,
        ChangeFacts {
            operation: Operation::Alteration,
            alert_id: &id,
            reason: cx.reason,
            change,
            recipients: rows
                .iter()
                .map(|r| RecipientLevel {
                    node: r.node.clone(),
                    level: r.level,
                    policy_ids: r.policy_ids.clone(),
                    outcome: r.outcome,
                })
                .collect(),
            policy_version: &policy_version,
            pseudonyms: &subjects,
            purpose: &alert.purpose,
            legal_basis: &alert.legal_basis,
            detail: format!(
                "amended to version {new_version} (replaces {old_version}): {updated} updated, {withdrawn} withdrawn{}",
                if restricted { "; held while restricted" } else { "" }
            ),
        },
    );

    let mut head = current.head.clone();
    head.versions.push(AlertVersion {
        version: new_version,
        content_digest: new_digest,
        replaces_digest: old_digest,
        at: Some(now),
        record_seq: 0,
    });
    head.expires_ms = expires;
    let old_keys: BTreeSet<&Vec<u8>> = current.expiry.lookup_keys.iter().collect();
    let new_rows: Vec<(Vec<u8>, String)> =
        index.iter().map(|r| (lookup_key(&r.pseudonym, &id), r.kind.clone())).collect();
    let new_keys: BTreeSet<&Vec<u8>> = new_rows.iter().map(|(k, _)| k).collect();
    let (lookup_add, lookup_kinds): (Vec<Vec<u8>>, Vec<String>) =
        new_rows.iter().filter(|(k, _)| !old_keys.contains(k)).cloned().unzip();
    let stored = StoredAlert {
        alert: Some(alert),
        digest: digest.to_vec(),
        receipt: Some(receipt.clone()),
        ..current.stored.clone()
    };
    let part = AlertPart {
        alert_id: id.clone(),
        stored: Some(stored),
        head: Some(head),
        copies,
        events,
        // Every queued row of the old version is superseded.
        drop_outbox: current.expiry.outbox_keys.clone(),
        drop_held: true,
        lookup_remove: current.expiry.lookup_keys.iter().filter(|k| !new_keys.contains(k)).cloned().collect(),
        lookup_add,
        lookup_kinds,
        expiry_old: current.expiry_key.clone(),
        expiry_new: expiry_key(expires, &id),
        ..Default::default()
    };
    AmendPlan { receipt, record, change: PendingChange { alert_id: id, parts: vec![part] } }
}

fn deletion(node: &str, id: &str, kind: ChangeKind, version: u32, because_of: &str, now_ms: u64) -> PendingEvent {
    let change = AlertChange {
        alert_id: id.to_owned(),
        kind: kind as i32,
        version,
        state: CopyState::Deleted as i32,
        delivery: None,
        because_of: because_of.to_owned(),
        changed_at: Some(from_unix_millis(now_ms)),
    };
    // A deletion outlives the alert: an offline holder gets it when it returns.
    PendingEvent {
        node: node.to_owned(),
        entry: Some(change_entry(change, u64::MAX, None)),
        hold: false,
        expires_with_alert: false,
    }
}

/// The changes other than an amendment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    /// `Exchange.Withdraw`: every copy, along the forward chain, is deleted.
    Withdraw,
    /// `Exchange.Restrict`: copies are marked, undelivered ones held.
    Restrict,
    /// `Exchange.LiftRestriction`: copies unmarked, held ones released.
    Lift,
    /// The sweeper: the alert reached `expires_at`; every copy is deleted.
    Expire,
}

impl Op {
    fn kind(self) -> ChangeKind {
        match self {
            Op::Withdraw => ChangeKind::Withdrawal,
            Op::Restrict => ChangeKind::Restriction,
            Op::Lift => ChangeKind::Lift,
            Op::Expire => ChangeKind::Expiry,
        }
    }

    /// True if the change follows the forward chain.
    pub fn follows_forwards(self) -> bool {
        matches!(self, Op::Withdraw | Op::Expire)
    }
}

/// Everything a withdrawal, restriction, lift or expiry writes.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ChangePlan {
    /// The ALTERATION or ERASURE record.
    pub record: AuditRecord,
    /// The change to stage and apply.
    pub change: PendingChange,
}

/// Plans a withdrawal, restriction, lift or expiry of `chain[0]` and (a
/// deletion) of every forward of it in `chain[1..]`.
pub(crate) fn change(op: Op, chain: &[Current], cx: Context<'_>) -> ChangePlan {
    let kind = op.kind();
    let root = &chain[0];
    let root_id = root.id();
    let mut parts = Vec::new();
    let mut recipients = Vec::new();
    for (i, cur) in chain.iter().enumerate() {
        let id = cur.id();
        let alert = cur.alert();
        let version = version_of(&alert);
        let expires = expires_ms(&alert);
        let because_of = if i == 0 { "" } else { root_id.as_str() };
        let mut events = Vec::new();
        let mut copies = Vec::new();
        for (node, level) in cur.holders() {
            let prev = cur.copies.get(&node);
            let new_level = if asks(kind) == CopyState::Deleted { DisclosureLevel::Denied } else { level };
            if asks(kind) == CopyState::Deleted {
                events.push(deletion(&node, &id, kind, version, because_of, cx.now_ms));
            } else {
                let change = AlertChange {
                    alert_id: id.clone(),
                    kind: kind as i32,
                    version,
                    state: asks(kind) as i32,
                    delivery: None,
                    because_of: String::new(),
                    changed_at: Some(from_unix_millis(cx.now_ms)),
                };
                events.push(PendingEvent {
                    node: node.clone(),
                    entry: Some(change_entry(change, expires, None)),
                    hold: false,
                    expires_with_alert: true,
                });
            }
            // A held UPDATE asks the version it carries; a lift asks the same.
            copies.push(copy_after(prev, &node, &id, new_level, kind, version, asks(kind), cx.now_ms));
            recipients.push(RecipientLevel {
                node: node.clone(),
                level: new_level as i32,
                outcome: outcome_of(kind) as i32,
                ..Default::default()
            });
        }
        let mut head = cur.head.clone();
        let mut stored = cur.stored.clone();
        let mut part = AlertPart {
            alert_id: id.clone(),
            events,
            copies,
            expiry_old: cur.expiry_key.clone(),
            expiry_new: cur.expiry_key.clone(),
            ..Default::default()
        };
        match op {
            Op::Withdraw => {
                stored.state = AlertState::Withdrawn as i32;
                head.state = AlertState::Withdrawn as i32;
                head.ended_ms = cx.now_ms;
                part.drop_outbox = cur.expiry.outbox_keys.clone();
                part.drop_held = true;
                part.lookup_remove = cur.expiry.lookup_keys.clone();
            }
            Op::Expire => {
                head.state = AlertState::Expired as i32;
                head.ended_ms = cx.now_ms;
                part.remove_alert = true;
                part.drop_outbox = cur.expiry.outbox_keys.clone();
                part.drop_held = true;
                part.lookup_remove = cur.expiry.lookup_keys.clone();
                part.drop_hits = true;
                part.expiry_new = vec![];
            }
            Op::Restrict => {
                stored.state = AlertState::Restricted as i32;
                head.state = AlertState::Restricted as i32;
                part.hold_outbox = cur.expiry.outbox_keys.clone();
            }
            Op::Lift => {
                stored.state = AlertState::Active as i32;
                head.state = AlertState::Active as i32;
                part.release_held = true;
            }
        }
        if !part.remove_alert {
            part.stored = Some(stored);
        }
        part.head = Some(head);
        parts.push(part);
    }
    let alert = root.alert();
    let version = version_of(&alert);
    let digest = hex::encode(&root.stored.digest);
    let follows: Vec<String> = chain[1..].iter().map(Current::id).collect();
    let operation = if asks(kind) == CopyState::Deleted { Operation::Erasure } else { Operation::Alteration };
    let what = match op {
        Op::Withdraw => "withdrawn by its origin",
        Op::Expire => "expired",
        Op::Restrict => "restricted while it is checked",
        Op::Lift => "restriction lifted",
    };
    let detail = format!(
        "{what}: {} cop{} told{}",
        recipients.len(),
        if recipients.len() == 1 { "y" } else { "ies" },
        if follows.is_empty() { String::new() } else { format!(", onward copies of {}", follows.join(", ")) }
    );
    let record = records::lifecycle_change(
        cx.by,
        ChangeFacts {
            operation,
            alert_id: &root_id,
            reason: cx.reason,
            change: LifecycleChange {
                kind: kind as i32,
                old_version: version,
                new_version: version,
                old_digest: digest.clone(),
                new_digest: digest,
                follows,
                confirmed: 0,
                confirm_grace_seconds: cx.grace_s,
            },
            recipients,
            policy_version: "",
            pseudonyms: &[],
            purpose: &alert.purpose,
            legal_basis: &alert.legal_basis,
            detail,
        },
    );
    ChangePlan { record, change: PendingChange { alert_id: root_id, parts } }
}

/// The status of one alert (the changed one or a forward) to show.
#[derive(Debug, Clone)]
pub(crate) struct Shown {
    /// Its head.
    pub head: StatusHead,
    /// Its copies: kept rows, and holders without one yet (nothing to confirm).
    pub copies: Vec<CopyStatus>,
}

/// Builds a [`Shown`] from the kept rows and, while the row exists, the holders.
pub(crate) fn shown(head: StatusHead, rows: Vec<CopyStatus>, current: Option<&Current>) -> Shown {
    let mut by_node: BTreeMap<String, CopyStatus> = rows.into_iter().map(|c| (c.node.clone(), c)).collect();
    if let Some(cur) = current {
        let version = version_of(&cur.alert());
        for (node, level) in cur.holders() {
            by_node.entry(node.clone()).or_insert_with(|| CopyStatus {
                node,
                copy_of: head.alert_id.clone(),
                level: level as i32,
                version,
                expected: CopyState::Held as i32,
                settled: true,
                ..Default::default()
            });
        }
    }
    Shown { head, copies: by_node.into_values().collect() }
}

/// The `AlertStatus` of `root` and its forwards: overdue is an unconfirmed
/// change older than the grace.
pub(crate) fn status(root: &Shown, forwards: &[Shown], now_ms: u64, grace_s: u64) -> AlertStatus {
    let h = &root.head;
    let last = h.versions.last().cloned().unwrap_or_default();
    let copies = std::iter::once(root)
        .chain(forwards)
        .flat_map(|s| s.copies.iter().cloned())
        .map(|mut c| {
            let since = c.changed_at.as_ref().map(to_unix_millis).unwrap_or(now_ms);
            c.overdue = !c.settled && now_ms.saturating_sub(since) > grace_s.saturating_mul(1000);
            c
        })
        .collect();
    AlertStatus {
        alert_id: h.alert_id.clone(),
        origin: h.origin.clone(),
        state: h.state,
        version: last.version,
        content_digest: last.content_digest,
        expires_at: (h.expires_ms != u64::MAX).then(|| from_unix_millis(h.expires_ms)),
        versions: h.versions.clone(),
        copies,
        confirm_grace_seconds: grace_s,
    }
}

/// What a confirmation does to the copy it names.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Confirmed {
    /// It settles the last change: the new row, and whether to record it
    /// (not again for a repeated confirmation).
    Settles(CopyStatus, bool),
    /// A later change replaced the one confirmed, or there is none.
    Superseded,
}

/// Checks a holder's confirmation against its copy's last change.
pub(crate) fn confirm(row: Option<&CopyStatus>, version: u32, state: CopyState, now_ms: u64) -> Confirmed {
    let Some(row) = row else { return Confirmed::Superseded };
    if row.last_change == ChangeKind::Unspecified as i32 || row.version != version || row.expected != state as i32 {
        return Confirmed::Superseded;
    }
    let again = row.settled && row.confirmed_version == version && row.confirmed == state as i32;
    let mut row = row.clone();
    row.confirmed_version = version;
    row.confirmed = state as i32;
    if !again {
        row.confirmed_at = Some(from_unix_millis(now_ms));
    }
    row.settled = true;
    Confirmed::Settles(row, !again)
}

/// Candidates of a node set, for the unit tests.
#[cfg(test)]
fn cands(nodes: &[NodeInfo]) -> Vec<Candidate<'_>> {
    nodes.iter().map(|n| (n, false)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use isx_core::{NodeId, NodeKind};
    use isx_policy::Decision;

    fn node(id: &str) -> NodeInfo {
        NodeInfo {
            id: NodeId::new(id).unwrap(),
            kind: NodeKind::National,
            country: "FR".into(),
            roles: NodeKind::National.default_roles(),
            name: id.into(),
        }
    }

    fn alert(version: u32) -> Alert {
        Alert {
            alert_id: "a1".into(),
            origin: "de-police".into(),
            version,
            purpose: "p".into(),
            expires_at: Some(from_unix_millis(90_000)),
            ..Default::default()
        }
    }

    fn row(node: &str, level: DisclosureLevel, outcome: RecipientOutcome) -> RecipientDecision {
        RecipientDecision { node: node.into(), level: level as i32, outcome: outcome as i32, ..Default::default() }
    }

    /// fr-police full, it-police redacted, europol denied; two queued rows, one index key.
    fn current() -> Current {
        let stored = StoredAlert {
            alert: Some(alert(0)),
            digest: vec![1; 32],
            receipt: Some(Receipt {
                recipients: vec![
                    row("europol", DisclosureLevel::Denied, RecipientOutcome::Denied),
                    row("fr-police", DisclosureLevel::Full, RecipientOutcome::Queued),
                    row("it-police", DisclosureLevel::Redacted, RecipientOutcome::Queued),
                ],
                ..Default::default()
            }),
            ..Default::default()
        };
        Current {
            head: head_of(&stored, None),
            stored,
            copies: BTreeMap::new(),
            expiry_key: expiry_key(90_000, "a1"),
            expiry: ExpiryRow { outbox_keys: vec![b"fr-police\0k1".to_vec()], lookup_keys: vec![b"p1\0a1".to_vec()] },
        }
    }

    fn decision(level: DisclosureLevel) -> Decision {
        Decision {
            level,
            policy_ids: vec!["rule".into()],
            reasons: vec![],
            removed_fields: vec![],
            view: (level != DisclosureLevel::Denied).then(|| alert(2)),
        }
    }

    fn cx() -> Context<'static> {
        Context { by: Actor::gateway(), reason: "corrected", now_ms: 5_000, grace_s: 60 }
    }

    fn kinds(part: &AlertPart) -> Vec<(String, String)> {
        part.events
            .iter()
            .map(|e| {
                let what = match &e.entry.as_ref().unwrap().event {
                    Some(Event::Change(c)) => c.kind().as_str_name().to_owned(),
                    Some(Event::Delivery(_)) => "DELIVERY".to_owned(),
                    _ => "?".to_owned(),
                };
                (e.node.clone(), what)
            })
            .collect()
    }

    #[test]
    fn an_amendment_updates_withdraws_and_newly_delivers_by_the_new_decisions() {
        let nodes = [node("europol"), node("fr-police"), node("it-police")];
        let candidates = cands(&nodes);
        let cur = current();
        let decided = Decided {
            policy_version: "v2".into(),
            decisions: vec![
                decision(DisclosureLevel::Full),     // europol: newly allowed
                decision(DisclosureLevel::Redacted), // fr-police: lowered
                decision(DisclosureLevel::Denied),   // it-police: falls to denied
            ],
        };
        let plan = amend(
            AmendInput {
                current: &cur,
                alert: alert(2),
                digest: [2; 32],
                candidates: &candidates,
                decided,
                index: vec![IndexRow { pseudonym: "p2".into(), kind: "name".into() }],
                raised_by: vec![],
            },
            cx(),
        );
        let part = &plan.change.parts[0];
        assert_eq!(
            kinds(part),
            [
                ("europol".into(), "DELIVERY".into()),
                ("fr-police".into(), "CHANGE_KIND_UPDATE".into()),
                ("it-police".into(), "CHANGE_KIND_WITHDRAWAL".into())
            ]
        );
        let Some(Event::Change(update)) = &part.events[1].entry.as_ref().unwrap().event else { panic!() };
        assert_eq!(update.delivery.as_ref().unwrap().level(), DisclosureLevel::Redacted, "the lower view");
        assert_eq!((update.version, update.state()), (2, CopyState::Held));
        let outcomes: Vec<RecipientOutcome> = plan.receipt.recipients.iter().map(|r| r.outcome()).collect();
        assert_eq!(outcomes, [RecipientOutcome::Queued, RecipientOutcome::Updated, RecipientOutcome::Withdrawn]);
        assert_eq!((plan.receipt.version, plan.receipt.replaces_digest.as_str()), (2, hex::encode([1; 32]).as_str()));
        assert_eq!(part.drop_outbox, [b"fr-police\0k1".to_vec()], "the undelivered old version is superseded");
        assert_eq!(part.lookup_remove, [b"p1\0a1".to_vec()], "a subject removed no longer matches");
        assert_eq!(part.lookup_add, [lookup_key("p2", "a1")]);
        assert_eq!(part.head.as_ref().unwrap().versions.len(), 2);
        let r = &plan.record;
        assert_eq!(r.operation(), Operation::Alteration);
        assert_eq!(r.justification, "corrected");
        let lc = r.lifecycle.as_ref().unwrap();
        assert_eq!((lc.old_version, lc.new_version, lc.confirm_grace_seconds), (1, 2, 60));
        assert_eq!(lc.old_digest, hex::encode([1; 32]));
        assert_eq!(r.recipients.len(), 3);
        assert!(!r.detail.contains('p') || !r.detail.contains("narrative"), "no content in the record");
    }

    #[test]
    fn a_withdrawal_follows_the_chain_and_deletes_every_copy() {
        let root = current();
        let mut fwd = current();
        let mut fa = alert(0);
        fa.alert_id = "f1".into();
        fa.origin = "fr-police".into();
        fa.forwarded_from = "a1".into();
        fwd.stored.alert = Some(fa);
        fwd.stored.receipt = Some(Receipt {
            recipients: vec![row("nl-police", DisclosureLevel::Full, RecipientOutcome::Queued)],
            ..Default::default()
        });
        let plan = change(Op::Withdraw, &[root, fwd], cx());
        assert_eq!(plan.record.operation(), Operation::Erasure);
        assert_eq!(plan.record.lifecycle.as_ref().unwrap().follows, ["f1"]);
        let told: Vec<&str> = plan.record.recipients.iter().map(|r| r.node.as_str()).collect();
        assert_eq!(told, ["fr-police", "it-police", "nl-police"]);
        let Some(Event::Change(c)) = &plan.change.parts[1].events[0].entry.as_ref().unwrap().event else { panic!() };
        assert_eq!((c.alert_id.as_str(), c.because_of.as_str(), c.kind()), ("f1", "a1", ChangeKind::Withdrawal));
        assert_eq!(plan.change.parts[1].events[0].entry.as_ref().unwrap().expires_ms, u64::MAX);
        for p in &plan.change.parts {
            assert_eq!(p.stored.as_ref().unwrap().state(), AlertState::Withdrawn);
            assert!(p.drop_held);
        }
    }

    #[test]
    fn a_restriction_holds_queued_rows_and_a_lift_releases_them() {
        let plan = change(Op::Restrict, &[current()], cx());
        assert_eq!(plan.change.parts[0].hold_outbox, [b"fr-police\0k1".to_vec()]);
        assert_eq!(plan.record.operation(), Operation::Alteration);
        let lift = change(Op::Lift, &[current()], cx());
        assert!(lift.change.parts[0].release_held);
        assert_eq!(lift.change.parts[0].stored.as_ref().unwrap().state(), AlertState::Active);
    }

    #[test]
    fn a_confirmation_settles_only_the_last_change() {
        let cur = current();
        let plan = change(Op::Restrict, std::slice::from_ref(&cur), cx());
        let row = plan.change.parts[0].copies.iter().find(|c| c.node == "fr-police").unwrap().clone();
        assert!(!row.settled);
        assert_eq!(confirm(Some(&row), 1, CopyState::Held, 6_000), Confirmed::Superseded, "another state");
        assert_eq!(confirm(Some(&row), 2, CopyState::Restricted, 6_000), Confirmed::Superseded, "another version");
        let Confirmed::Settles(done, record) = confirm(Some(&row), 1, CopyState::Restricted, 6_000) else { panic!() };
        assert!(done.settled && record);
        let Confirmed::Settles(_, again) = confirm(Some(&done), 1, CopyState::Restricted, 7_000) else { panic!() };
        assert!(!again, "a repeated confirmation is not recorded twice");
        let s = status(&shown(cur.head.clone(), vec![row.clone()], Some(&cur)), &[], 5_000 + 61_000, 60);
        let fr = s.copies.iter().find(|c| c.node == "fr-police").unwrap();
        assert!(fr.overdue, "unconfirmed past the grace");
        let it = s.copies.iter().find(|c| c.node == "it-police").unwrap();
        assert!(it.settled && !it.overdue, "nothing asked of it");
    }
}
