//! The lifecycle steps of a scenario: the origin amends, withdraws,
//! restricts or lifts an alert; and their expectations: what a holder's copy
//! is, that every copy confirmed the last change, and a node's open hits.
//!
//! Every wait is bounded by the run's limit (`--timeout`). A holder's copy
//! is read from its agency (which wakes waiters on every change in process);
//! the alert's status and the open hits are asked of the gateway again every
//! [`AUDIT_POLL`](super::AUDIT_POLL), as it has no notification for them.

use std::collections::BTreeSet;
use std::time::Instant;

use isx_core::json::{from_json, to_json_value};
use isx_core::wire::{Alert, AlertStatus, CopyState, CopyStatus, OpenHit, Receipt};
use isx_node::Received;

use super::{AUDIT_POLL, Expected, Runner, Verdict, duration_text, level_name, list, quoted};
use crate::scenario::step::{
    AlertSource, AmendStep, ChangeStep, ExpectConfirmedStep, ExpectCopyStep, ExpectOpenHitsStep, WithCall, outcome_name,
};

/// Which change a `withdraw`, `restrict` or `lift` step asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Change {
    Withdraw,
    Restrict,
    Lift,
}

impl Change {
    fn verb(self) -> &'static str {
        match self {
            Self::Withdraw => "withdraws",
            Self::Restrict => "restricts",
            Self::Lift => "lifts the restriction of",
        }
    }
}

/// What an `expect_copy` step wants, in words: `version 2, restricted, full`.
pub(super) fn copy_wanted(s: &ExpectCopyStep) -> String {
    let mut parts = Vec::new();
    if s.deleted == Some(true) {
        parts.push("deleted".to_owned());
    }
    if let Some(v) = s.version {
        parts.push(format!("version {v}"));
    }
    if s.deleted == Some(false) {
        parts.push("held".to_owned());
    }
    match s.restricted {
        Some(true) => parts.push("restricted".to_owned()),
        Some(false) => parts.push("not restricted".to_owned()),
        None => {}
    }
    if let Some(l) = s.level {
        parts.push(l.name().to_owned());
    }
    parts.join(", ")
}

/// True if `r` is in every state `s` names.
fn copy_matches(s: &ExpectCopyStep, r: &Received) -> bool {
    s.version.is_none_or(|v| r.version == v)
        && s.deleted.is_none_or(|d| r.is_deleted() == d)
        && s.restricted.is_none_or(|x| r.restricted == x)
        && s.level.is_none_or(|l| !r.is_deleted() && r.level() == l.wire())
}

/// A holder's copy in words, as `copy_wanted` writes what is wanted.
fn copy_held(r: &Received) -> String {
    if r.is_deleted() {
        return format!("it deleted its copy (version {})", r.version);
    }
    let restricted = if r.restricted { "restricted" } else { "not restricted" };
    format!("it holds version {}, {restricted}, {}", r.version, level_name(r.level()))
}

/// A copy state as scenarios write it: `held`, `restricted`, `deleted`.
fn state_name(state: CopyState) -> String {
    state.as_str_name().trim_start_matches("COPY_STATE_").to_ascii_lowercase()
}

/// What a copy was asked and what its holder confirmed, in words.
fn copy_status(c: &CopyStatus, names: &dyn Fn(&str) -> String) -> String {
    let of = names(&c.copy_of);
    let confirmed = match c.confirmed() {
        CopyState::Unspecified => "confirmed nothing".to_owned(),
        state => format!("confirmed {} at version {}", state_name(state), c.confirmed_version),
    };
    format!(
        "{} ({of}): asked {} at version {}, {confirmed}{}",
        c.node,
        state_name(c.expected()),
        c.version,
        if c.overdue { ", overdue" } else { "" }
    )
}

impl Runner<'_> {
    /// The scenario's name of an alert id (`the alert <id>` if it is none of its own).
    fn alert_name(&self, id: &str) -> String {
        self.alerts.iter().find(|(_, a)| a.alert_id == id).map(|(n, _)| n.clone()).unwrap_or_else(|| id.to_owned())
    }

    /// The new version an `amend` step sends: the alert's current version, or
    /// its `file` or `inline` table with the alert's id, origin and
    /// forward; with `patch` merged over it.
    fn amended(&self, step: &AmendStep, current: &Alert) -> Result<Alert, String> {
        let mut value = match &step.source {
            None => to_json_value(current),
            Some(AlertSource::File(file)) => {
                let path = self.base.join(file);
                let text = self.source.read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
                let mut v: serde_json::Value =
                    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
                keep_identity(&mut v, current);
                v
            }
            Some(AlertSource::Inline(inline)) => {
                let mut v = serde_json::to_value(inline).map_err(|e| format!("inline: {e}"))?;
                keep_identity(&mut v, current);
                v
            }
        };
        if let Some(patch) = &step.patch {
            isx_policy::table::merge(&mut value, &serde_json::to_value(patch).map_err(|e| format!("patch: {e}"))?);
        }
        from_json::<Alert>(&value.to_string(), "the amended alert").map_err(|e| e.to_string())
    }

    pub(super) async fn amend(&mut self, s: &WithCall<AmendStep>) {
        let (actor, step) = (&s.call.actor, &s.step);
        let name = &step.alert;
        let Some(current) = self.alerts.get(name).cloned() else {
            self.check(format!("alert {name:?} is known"), Verdict::Fail("no earlier step published it".into()));
            return;
        };
        let alert = match self.amended(step, &current) {
            Ok(a) => a,
            Err(e) => {
                self.check("build the new version", Verdict::Fail(e));
                return;
            }
        };
        let replaces = step.replaces_version.unwrap_or_else(|| self.versions.get(name).copied().unwrap_or(1));
        let Some(client) = self.client(&s.call).await else { return };
        let result = client.amend(alert.clone(), replaces, &step.reason).await;
        if !self.call(&s.call, &format!("amend {name} (version {replaces}) as {actor}"), &result) {
            return;
        }
        let Ok(resp) = result else { return };
        let receipt = resp.receipt.unwrap_or_default();
        if resp.duplicate {
            self.detail(format!("{name}: this amendment was already made; its receipt came back"));
        }
        self.detail(format!(
            "{name} is now version {} (replaces digest {})",
            receipt.version,
            short(&receipt.replaces_digest)
        ));
        for r in &receipt.recipients {
            self.detail(format!("{:<10} {}", r.node, outcome_name(r.outcome())));
        }
        let no_policies = std::collections::BTreeMap::new();
        self.check_receipt(&receipt, &Expected { receipt: &step.receipt, policies: &no_policies });
        self.check_outcomes(&receipt, step);
        let version = receipt.version.max(replaces + 1);
        self.versions.insert(name.clone(), version);
        self.alerts.insert(name.clone(), Alert { version, ..alert });
        self.receipts.insert(name.clone(), receipt);
    }

    fn check_outcomes(&mut self, receipt: &Receipt, step: &AmendStep) {
        for (node, want) in &step.outcomes {
            let got = receipt.recipients.iter().find(|r| r.node == node.as_str()).map(|r| r.outcome());
            let ok = got == Some(want.wire());
            let got = got.map(outcome_name).unwrap_or_else(|| "not on the receipt".into());
            self.expect(format!("receipt: {node} {}", want.name()), ok, || format!("got {got}"));
        }
    }

    pub(super) async fn change(&mut self, s: &WithCall<ChangeStep>, change: Change) {
        let (actor, name) = (&s.call.actor, &s.step.alert);
        let Some(id) = self.alert_id(name) else { return };
        let Some(client) = self.client(&s.call).await else { return };
        let reason = &s.step.reason;
        let result: Result<AlertStatus, tonic::Status> = match change {
            Change::Withdraw => client.withdraw(&id, reason).await,
            Change::Restrict => client.restrict(&id, reason).await,
            Change::Lift => client.lift_restriction(&id, reason).await,
        };
        if !self.call(&s.call, &format!("{actor} {} {name}", change.verb()), &result) {
            return;
        }
        let Ok(status) = result else { return };
        let names = |id: &str| self.alert_name(id);
        let copies: Vec<String> = status.copies.iter().map(|c| format!("{} ({})", c.node, names(&c.copy_of))).collect();
        self.detail(format!(
            "{name} is {} at version {}; copies to change: {}",
            status.state().as_str_name().trim_start_matches("ALERT_STATE_").to_ascii_lowercase(),
            status.version,
            if copies.is_empty() { "none".to_owned() } else { copies.join(", ") }
        ));
    }

    pub(super) async fn expect_copy(&mut self, s: &ExpectCopyStep) {
        let (node, name) = (&s.node, &s.alert);
        let Some(id) = self.alert_id(name) else { return };
        let what = format!("{node}'s copy of {name}: {}", copy_wanted(s));
        let agency = self.topo.agency(node.as_str());
        let verdict = match agency.wait_until(&id, |r| copy_matches(s, r), self.options.limit).await {
            Ok(Some(_)) => Verdict::Pass,
            Ok(None) => Verdict::Fail(match agency.get(&id).await {
                Ok(Some(r)) => format!("{} after waiting {}", copy_held(&r), duration_text(self.options.limit)),
                Ok(None) => "its agency never held it".into(),
                Err(e) => e.to_string(),
            }),
            Err(e) => Verdict::Fail(e.to_string()),
        };
        self.check(what, verdict);
    }

    pub(super) async fn expect_confirmed(&mut self, s: &ExpectConfirmedStep) {
        let name = &s.alert;
        let Some(alert) = self.alerts.get(name).cloned() else {
            self.check(format!("alert {name:?} is known"), Verdict::Fail("no earlier step published it".into()));
            return;
        };
        let mut what = format!("every copy of {name} confirmed its last change");
        if let Some(v) = s.version {
            what.push_str(&format!(" (version {v})"));
        }
        if let Some(h) = &s.holders {
            let holders: Vec<String> = h.iter().map(|n| n.to_string()).collect();
            what.push_str(&format!(", held by {}", list(&holders)));
        }
        let client = match self.topo.client(&alert.origin).await {
            Ok(c) => c,
            Err(e) => return self.check(what, Verdict::Fail(format!("connect as {}: {e}", alert.origin))),
        };
        let want_holders: Option<BTreeSet<String>> =
            s.holders.as_ref().map(|h| h.iter().map(|n| n.to_string()).collect());
        let deadline = Instant::now() + self.options.limit;
        // The gateway has no notification for confirmations: ask again
        // every AUDIT_POLL until every copy is settled or the limit passes.
        let (status, problem) = loop {
            let status = match client.alert_status(&alert.alert_id).await {
                Ok(st) => st,
                Err(e) => {
                    let why = format!("{}: {}", super::code_name(e.code()), e.message());
                    return self.check(what, Verdict::Fail(format!("the alert's status was refused: {why}")));
                }
            };
            let problem = self.unconfirmed(&status, s.version, want_holders.as_ref());
            if problem.is_none() || Instant::now() >= deadline {
                break (status, problem);
            }
            tokio::time::sleep(AUDIT_POLL).await;
        };
        match problem {
            None => {
                for c in &status.copies {
                    let line = copy_status(c, &|id| self.alert_name(id));
                    self.detail(line);
                }
                self.check(what, Verdict::Pass);
            }
            Some(why) => {
                let limit = duration_text(self.options.limit);
                self.check(what, Verdict::Fail(format!("after waiting {limit}: {why}")));
            }
        }
    }

    /// Why `status` is not yet what an `expect_confirmed` step wants, if it is not.
    fn unconfirmed(
        &self,
        status: &AlertStatus,
        version: Option<u32>,
        holders: Option<&BTreeSet<String>>,
    ) -> Option<String> {
        if let Some(v) = version
            && status.version != v
        {
            return Some(format!("the alert is at version {}", status.version));
        }
        if let Some(want) = holders {
            let got: BTreeSet<String> = status.copies.iter().map(|c| c.node.clone()).collect();
            if got != *want {
                let got: Vec<String> = got.into_iter().collect();
                return Some(format!("its copies are held by {}", list(&got)));
            }
        }
        let open: Vec<String> =
            status.copies.iter().filter(|c| !c.settled).map(|c| copy_status(c, &|id| self.alert_name(id))).collect();
        (!open.is_empty()).then(|| format!("not confirmed: {}", open.join("; ")))
    }

    pub(super) async fn expect_open_hits(&mut self, s: &ExpectOpenHitsStep) {
        let node = &s.node;
        let mut want = s.hits.clone();
        want.sort();
        let mut what = format!("{node}'s open hits are exactly {}", list(&want));
        if let Some(o) = &s.officer {
            what.push_str(&format!(", each shown to {}", quoted(o)));
        }
        let client = match self.topo.client(node.as_str()).await {
            Ok(c) => c,
            Err(e) => return self.check(what, Verdict::Fail(format!("connect as {node}: {e}"))),
        };
        let ours = |hits: &[OpenHit]| -> Vec<(String, String)> {
            let mut got: Vec<(String, String)> = hits
                .iter()
                .filter_map(|h| {
                    self.alerts
                        .iter()
                        .find(|(_, a)| a.alert_id == h.alert_id)
                        .map(|(n, _)| (n.clone(), h.officer.clone()))
                })
                .collect();
            got.sort();
            got
        };
        let matches = |got: &[(String, String)]| {
            let names: Vec<&String> = got.iter().map(|(n, _)| n).collect();
            names == want.iter().collect::<Vec<_>>()
                && s.officer.as_ref().is_none_or(|o| got.iter().all(|(_, g)| g == o))
        };
        let deadline = Instant::now() + self.options.limit;
        // Bounded like every wait; the gateway has no notification for hits.
        let got = loop {
            let hits = match client.open_hits().await {
                Ok(h) => h,
                Err(e) => {
                    let why = format!("{}: {}", super::code_name(e.code()), e.message());
                    return self.check(what, Verdict::Fail(format!("the open hits were refused: {why}")));
                }
            };
            let got = ours(&hits);
            if matches(&got) || Instant::now() >= deadline {
                break got;
            }
            tokio::time::sleep(AUDIT_POLL).await;
        };
        if matches(&got) {
            for (name, officer) in &got {
                self.detail(format!("open hit on {name}, shown to {officer}"));
            }
            self.check(what, Verdict::Pass);
        } else {
            let shown: Vec<String> = got.iter().map(|(n, o)| format!("{n} (shown to {})", quoted(o))).collect();
            let limit = duration_text(self.options.limit);
            self.check(
                what,
                Verdict::Fail(if shown.is_empty() {
                    format!("it had no open hit on the scenario's alerts after waiting {limit}")
                } else {
                    format!("after waiting {limit} it had {}", shown.join(", "))
                }),
            );
        }
    }
}

/// Gives a new version read from a file or table the identity of the alert
/// it amends: its id, origin and the alert it was forwarded from.
fn keep_identity(value: &mut serde_json::Value, current: &Alert) {
    if let Some(map) = value.as_object_mut() {
        map.insert("alert_id".into(), current.alert_id.clone().into());
        map.insert("origin".into(), current.origin.clone().into());
        if !current.forwarded_from.is_empty() {
            map.insert("forwarded_from".into(), current.forwarded_from.clone().into());
        }
    }
}

/// The first 12 hex digits of a digest, or `none`.
fn short(digest: &str) -> &str {
    if digest.is_empty() { "none" } else { digest.get(..12).unwrap_or(digest) }
}

#[cfg(test)]
mod tests {
    use isx_core::wire::{Delivery, DisclosureLevel};

    use super::*;
    use crate::scenario::step::Level;

    fn step(
        version: Option<u32>,
        deleted: Option<bool>,
        restricted: Option<bool>,
        level: Option<Level>,
    ) -> ExpectCopyStep {
        ExpectCopyStep {
            node: isx_core::NodeId::new("fr-police").unwrap(),
            alert: "a".into(),
            version,
            deleted,
            restricted,
            level,
        }
    }

    fn held(version: u32, restricted: bool) -> Received {
        Received {
            delivery: Some(Delivery { level: DisclosureLevel::Full as i32, ..Default::default() }),
            version,
            restricted,
            ..Default::default()
        }
    }

    #[test]
    fn a_copy_matches_only_every_state_named() {
        let deleted = Received { version: 2, deleted_ms: 1, ..Default::default() };
        let cases = [
            (step(Some(2), None, None, None), held(2, false), true),
            (step(Some(3), None, None, None), held(2, false), false),
            (step(None, Some(true), None, None), deleted.clone(), true),
            (step(None, Some(true), None, None), held(2, false), false),
            (step(None, Some(false), None, None), deleted.clone(), false),
            (step(None, None, Some(true), None), held(1, true), true),
            (step(None, None, Some(false), None), held(1, true), false),
            (step(Some(1), None, Some(true), Some(Level::Full)), held(1, true), true),
            (step(None, None, None, Some(Level::Redacted)), held(1, false), false),
            (step(None, None, None, Some(Level::Full)), deleted, false),
        ];
        for (i, (s, r, want)) in cases.iter().enumerate() {
            assert_eq!(copy_matches(s, r), *want, "case {i}: {} against {}", copy_wanted(s), copy_held(r));
        }
    }

    #[test]
    fn copies_read_in_words() {
        assert_eq!(copy_wanted(&step(Some(2), None, Some(true), Some(Level::Full))), "version 2, restricted, full");
        assert_eq!(copy_wanted(&step(None, Some(true), None, None)), "deleted");
        assert_eq!(copy_held(&held(1, false)), "it holds version 1, not restricted, full");
        assert_eq!(
            copy_held(&Received { version: 2, deleted_ms: 5, ..Default::default() }),
            "it deleted its copy (version 2)"
        );
        let c = CopyStatus {
            node: "fr-police".into(),
            copy_of: "X".into(),
            version: 2,
            expected: CopyState::Deleted as i32,
            confirmed_version: 1,
            confirmed: CopyState::Held as i32,
            ..Default::default()
        };
        assert_eq!(
            copy_status(&c, &|id| format!("alert {id}")),
            "fr-police (alert X): asked deleted at version 2, confirmed held at version 1"
        );
        assert_eq!(short(""), "none");
        assert_eq!(short("0123456789abcdef"), "0123456789ab");
    }
}
