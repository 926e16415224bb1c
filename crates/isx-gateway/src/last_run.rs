//! What the gateway ran with last time, so that a start records what changed
//! while it was stopped: nodes registered, changed or removed in the config,
//! another redaction profile, another policy, other revocation lists.
//!
//! # Tree
//! - `admin.last_run`: one row, [`LastRun`]: the nodes (kind, country, roles,
//!   name), the redaction profile, the policy version and the revoked
//!   serials in force, and whether the run is still going. Written at start
//!   with the start's records, by every policy or CRL change, and at a
//!   graceful stop; each write is flushed with the record beside it.
//!
//! [`start_records`] is the plan of a start: a pure function of the last
//! run and this one, unit-tested below.

use std::collections::BTreeMap;

use isx_core::NodeInfo;
use isx_core::redaction::RedactionProfile;
use isx_core::wire::{AdminAction, AuditRecord};
use prost::Message;

use crate::records;

/// The tree.
const TREE: &str = "admin.last_run";
/// Its one key.
const KEY: &[u8] = b"last_run";

/// A registered node as a run saw it.
#[derive(Clone, PartialEq, Eq, Message)]
pub(crate) struct RememberedNode {
    /// The node id.
    #[prost(string, tag = "1")]
    pub id: String,
    /// Its kind (`national`, ...).
    #[prost(string, tag = "2")]
    pub kind: String,
    /// Its country.
    #[prost(string, tag = "3")]
    pub country: String,
    /// Its roles, in order.
    #[prost(string, repeated, tag = "4")]
    pub roles: Vec<String>,
    /// Its display name.
    #[prost(string, tag = "5")]
    pub name: String,
}

impl RememberedNode {
    /// `node` as remembered.
    pub fn of(node: &NodeInfo) -> Self {
        let mut roles: Vec<String> = node.roles.iter().map(|r| r.as_str().to_owned()).collect();
        roles.sort();
        roles.dedup();
        Self {
            id: node.id.to_string(),
            kind: node.kind.as_str().to_owned(),
            country: node.country.clone(),
            roles,
            name: node.name.clone(),
        }
    }

    /// What a record says of it: `kind=national country=FR roles=lookup,publish name="..."`.
    fn describe(&self) -> String {
        format!("kind={} country={} roles={} name={:?}", self.kind, self.country, self.roles.join(","), self.name)
    }

    /// What differs from `old`, in words.
    fn differences(&self, old: &Self) -> Vec<String> {
        let mut d = Vec::new();
        if self.kind != old.kind {
            d.push(format!("kind {} -> {}", old.kind, self.kind));
        }
        if self.country != old.country {
            d.push(format!("country {} -> {}", old.country, self.country));
        }
        if self.roles != old.roles {
            d.push(format!("roles {} -> {}", old.roles.join(","), self.roles.join(",")));
        }
        if self.name != old.name {
            d.push(format!("name {:?} -> {:?}", old.name, self.name));
        }
        d
    }
}

/// What one run ran with.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct LastRun {
    /// The registered nodes, in id order.
    #[prost(message, repeated, tag = "1")]
    pub nodes: Vec<RememberedNode>,
    /// The redaction profile, as [`profile_text`] writes it.
    #[prost(string, tag = "2")]
    pub redaction: String,
    /// The policy version in force.
    #[prost(string, tag = "3")]
    pub policy_version: String,
    /// The serials the revocation lists revoke, in order.
    #[prost(string, repeated, tag = "4")]
    pub revoked: Vec<String>,
    /// True from start until a graceful stop.
    #[prost(bool, tag = "5")]
    pub running: bool,
}

impl LastRun {
    /// A run with these nodes, profile, policy version and revoked serials.
    pub fn of<'a>(
        nodes: &[NodeInfo],
        profile: &RedactionProfile,
        policy_version: &str,
        revoked: impl IntoIterator<Item = &'a String>,
    ) -> Self {
        let mut nodes: Vec<RememberedNode> = nodes.iter().map(RememberedNode::of).collect();
        nodes.sort_by(|a, b| a.id.cmp(&b.id));
        Self {
            nodes,
            redaction: profile_text(profile),
            policy_version: policy_version.to_owned(),
            revoked: revoked.into_iter().cloned().collect(),
            running: true,
        }
    }
}

/// A redaction profile as one line, each list sorted:
/// `remove=a,b year_only=c`.
pub(crate) fn profile_text(profile: &RedactionProfile) -> String {
    let names = |fields: &[isx_core::redaction::Field]| {
        let mut names: Vec<&str> = fields.iter().map(|f| f.name()).collect();
        names.sort();
        names.dedup();
        names.join(",")
    };
    format!("remove={} year_only={}", names(&profile.remove), names(&profile.year_only))
}

/// A short digest of a profile line (16 hex digits), as records name it.
pub(crate) fn profile_digest(text: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(text.as_bytes()))[..16].to_owned()
}

/// The fields of a profile line, as `remove:field` and `year_only:field`.
fn profile_fields(text: &str) -> std::collections::BTreeSet<String> {
    text.split(' ')
        .filter_map(|part| part.split_once('='))
        .flat_map(|(list, names)| names.split(',').filter(|n| !n.is_empty()).map(move |n| format!("{list}:{n}")))
        .collect()
}

/// Reads the last run, if the data directory had one.
pub(crate) fn load(db: &sled::Db) -> Result<Option<LastRun>, crate::store::StoreError> {
    let Some(bytes) = db.open_tree(TREE)?.get(KEY)? else { return Ok(None) };
    LastRun::decode(bytes.as_ref()).map(Some).map_err(|e| crate::store::StoreError::Corrupt(format!("{TREE}: {e}")))
}

/// Writes the run (flushed with the next group commit).
pub(crate) fn save(db: &sled::Db, run: &LastRun) -> Result<(), crate::store::StoreError> {
    db.open_tree(TREE)?.insert(KEY, run.encode_to_vec())?;
    Ok(())
}

/// Changes the saved run with `f` (a reload, a stop); without one saved, nothing.
pub(crate) fn update(db: &sled::Db, f: impl FnOnce(&mut LastRun)) -> Result<(), crate::store::StoreError> {
    if let Some(mut run) = load(db)? {
        f(&mut run);
        save(db, &run)?;
    }
    Ok(())
}

/// What a start knows besides the two runs.
#[derive(Debug, Clone)]
pub(crate) struct Start<'a> {
    /// The policies that differ from the last run's version (`+id`, ...),
    /// or `None` if its text is not kept.
    pub policy_changes: Option<Vec<String>>,
    /// Where it listens, and the isx version.
    pub listen: &'a str,
    /// The isx release.
    pub release: &'a str,
}

/// The records of a start, in order: the start itself; a policy changed
/// while stopped; every node registered, changed or removed; a redaction
/// profile that differs; revocation lists that revoke other serials. On a
/// first run (`last` is `None`) every node is registered and the profile
/// and lists are recorded as they are.
pub(crate) fn start_records(last: Option<&LastRun>, now: &LastRun, start: &Start<'_>) -> Vec<AuditRecord> {
    let empty = LastRun::default();
    let before = last.unwrap_or(&empty);
    let mut detail = format!(
        "gateway started: isx {}, policy version {}, {} nodes registered, listening on {}",
        start.release,
        now.policy_version,
        now.nodes.len(),
        start.listen
    );
    match last {
        None => detail.push_str("; first run on this data directory"),
        Some(l) if l.running => detail.push_str("; the last run ended without a recorded stop"),
        Some(_) => {}
    }
    let mut out = vec![records::gateway_start(&before.policy_version, &now.policy_version, detail)];

    if let Some(l) = last
        && l.policy_version != now.policy_version
    {
        let (changed, what) = match &start.policy_changes {
            Some(c) if c.is_empty() => (vec![], "no policy changed (the schema or a file's layout did)".to_owned()),
            Some(c) => (c.clone(), format!("{} policies changed: {}", c.len(), c.join(", "))),
            None => {
                (vec![], format!("the text of version {} is not kept, so the changes are unknown", l.policy_version))
            }
        };
        let detail = format!(
            "policy changed while the gateway was stopped: version {} -> {}; {what}; no officer or reason was given (reload with `isx admin reload-policy` instead)",
            l.policy_version, now.policy_version
        );
        let mut r =
            records::at_start(AdminAction::PolicyReload, (&l.policy_version, &now.policy_version), changed, detail);
        r.policy_version = now.policy_version.clone();
        out.push(r);
    }

    let old: BTreeMap<&str, &RememberedNode> = before.nodes.iter().map(|n| (n.id.as_str(), n)).collect();
    let new: BTreeMap<&str, &RememberedNode> = now.nodes.iter().map(|n| (n.id.as_str(), n)).collect();
    for (id, node) in &new {
        match old.get(id) {
            None => out.push(records::at_start(
                AdminAction::NodeRegistered,
                ("", &node.describe()),
                vec![(*id).to_owned()],
                format!("node {id} registered: {}", node.describe()),
            )),
            Some(was) if was != node => out.push(records::at_start(
                AdminAction::NodeChanged,
                (&was.describe(), &node.describe()),
                vec![(*id).to_owned()],
                format!("node {id} changed: {}", node.differences(was).join("; ")),
            )),
            Some(_) => {}
        }
    }
    for (id, was) in old.iter().filter(|(id, _)| !new.contains_key(*id)) {
        out.push(records::at_start(
            AdminAction::NodeRemoved,
            (&was.describe(), ""),
            vec![(*id).to_owned()],
            format!("node {id} removed: its certificate can no longer connect"),
        ));
    }

    if before.redaction != now.redaction {
        let (o, n) = (profile_fields(&before.redaction), profile_fields(&now.redaction));
        let changed: Vec<String> =
            n.difference(&o).map(|f| format!("+{f}")).chain(o.difference(&n).map(|f| format!("-{f}"))).collect();
        let old_digest = if before.redaction.is_empty() { String::new() } else { profile_digest(&before.redaction) };
        let detail = if last.is_none() {
            format!("redaction profile in force: {}", now.redaction)
        } else {
            format!("redaction profile changed: {} -> {}", before.redaction, now.redaction)
        };
        out.push(records::at_start(
            AdminAction::RedactionChanged,
            (&old_digest, &profile_digest(&now.redaction)),
            changed,
            detail,
        ));
    }

    if before.revoked != now.revoked {
        let (o, n): (std::collections::BTreeSet<&String>, std::collections::BTreeSet<&String>) =
            (before.revoked.iter().collect(), now.revoked.iter().collect());
        let added: Vec<String> = n.difference(&o).map(|s| format!("+{s}")).collect();
        let removed: Vec<String> = o.difference(&n).map(|s| format!("-{s}")).collect();
        let digest = |r: &[String]| crate::revocation::revoked_digest(r.iter().map(String::as_str));
        let detail = format!(
            "revocation lists read at start: {} certificate(s) newly revoked, {} no longer revoked since the last run; {} revoked",
            added.len(),
            removed.len(),
            now.revoked.len()
        );
        let old_digest = if last.is_none() { String::new() } else { digest(&before.revoked) };
        out.push(records::at_start(
            AdminAction::CrlReload,
            (&old_digest, &digest(&now.revoked)),
            added.into_iter().chain(removed).collect(),
            detail,
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use isx_core::wire::Operation;
    use isx_core::{NodeId, NodeKind, Role};

    use super::*;

    fn node(id: &str, kind: NodeKind, roles: &[Role], name: &str) -> NodeInfo {
        NodeInfo { id: NodeId::new(id).unwrap(), kind, country: "FR".into(), roles: roles.to_vec(), name: name.into() }
    }

    fn run(nodes: &[NodeInfo], profile: &RedactionProfile, version: &str, revoked: &[&str]) -> LastRun {
        let revoked: Vec<String> = revoked.iter().map(|s| s.to_string()).collect();
        LastRun::of(nodes, profile, version, &revoked)
    }

    const START: Start<'static> = Start { policy_changes: None, listen: "127.0.0.1:7443", release: "0.1.0" };

    /// Each record as `action changed old|new`.
    fn summary(records: &[AuditRecord]) -> Vec<String> {
        records
            .iter()
            .map(|r| {
                assert_eq!(r.operation(), Operation::Administration);
                let a = r.admin.as_ref().unwrap();
                assert_eq!(a.via, "start");
                let action = a.action().as_str_name().trim_start_matches("ADMIN_ACTION_").to_ascii_lowercase();
                format!("{action} {} {}|{}", a.changed.join(","), a.old_version, a.new_version)
            })
            .collect()
    }

    #[test]
    fn a_first_run_registers_every_node_and_records_the_profile() {
        let nodes = [node("fr-police", NodeKind::National, &[Role::Publish], "Police nationale")];
        let now = run(&nodes, &RedactionProfile::default(), "v1", &[]);
        let got = start_records(None, &now, &START);
        let s = summary(&got);
        assert_eq!(s.len(), 3, "{s:?}");
        assert_eq!(s[0], "gateway_start  |v1");
        assert!(got[0].detail.contains("first run"), "{}", got[0].detail);
        assert_eq!(s[1], "node_registered fr-police |kind=national country=FR roles=publish name=\"Police nationale\"");
        assert!(s[2].starts_with("redaction_changed +remove:narrative,"), "{}", s[2]);
        assert!(s[2].contains(&format!(" |{}", profile_digest(&now.redaction))), "{}", s[2]);
    }

    #[test]
    fn a_restart_records_only_what_changed_while_stopped() {
        let fr = node("fr-police", NodeKind::National, &[Role::Publish, Role::Subscribe], "Police nationale");
        let de = node("de-police", NodeKind::National, &[Role::Publish], "BKA");
        let ops = node("ops", NodeKind::Auditor, &[Role::Admin], "Gateway operations");
        let profile = RedactionProfile::default();
        let mut last = run(&[fr.clone(), de.clone()], &profile, "v1", &["01"]);
        last.running = false;

        // Nothing changed: the start alone.
        let same = run(&[de.clone(), fr.clone()], &profile, "v1", &["01"]);
        assert_eq!(summary(&start_records(Some(&last), &same, &START)), vec!["gateway_start  v1|v1"]);

        // fr-police loses a role, de-police goes, ops comes; the profile keeps the
        // narrative; 02 is revoked too; the policy changed.
        let fr2 = node("fr-police", NodeKind::National, &[Role::Publish], "Police nationale");
        let mut kept = profile.clone();
        kept.remove.retain(|f| *f != isx_core::redaction::Field::Narrative);
        let now = run(&[fr2, ops], &kept, "v2", &["01", "02"]);
        let start = Start { policy_changes: Some(vec!["~a".into()]), ..START };
        let got = start_records(Some(&last), &now, &start);
        let s = summary(&got);
        assert_eq!(s[0], "gateway_start  v1|v2");
        assert_eq!(s[1], "policy_reload ~a v1|v2");
        assert!(got[1].detail.contains("no officer or reason"), "{}", got[1].detail);
        assert!(
            s[2].starts_with("node_changed fr-police kind=national country=FR roles=publish,subscribe "),
            "{}",
            s[2]
        );
        assert_eq!(got[2].detail, "node fr-police changed: roles publish,subscribe -> publish");
        assert!(s[3].starts_with("node_registered ops |kind=auditor country=FR roles=admin"), "{}", s[3]);
        assert!(s[4].starts_with("node_removed de-police kind=national"), "{}", s[4]);
        assert!(s[5].starts_with("redaction_changed -remove:narrative "), "{}", s[5]);
        assert!(s[6].starts_with("crl_reload +02 "), "{}", s[6]);
        assert_eq!(s.len(), 7, "{s:?}");
    }

    #[test]
    fn a_run_that_did_not_stop_is_noted_and_an_unkept_version_said() {
        let nodes = [node("fr-police", NodeKind::National, &[Role::Publish], "P")];
        let last = run(&nodes, &RedactionProfile::default(), "v1", &[]);
        let now = run(&nodes, &RedactionProfile::default(), "v2", &[]);
        let got = start_records(Some(&last), &now, &START);
        assert!(got[0].detail.contains("ended without a recorded stop"), "{}", got[0].detail);
        assert!(got[1].detail.contains("the text of version v1 is not kept"), "{}", got[1].detail);
    }
}
