//! An auditor's scope: the nodes whose records it may read.
//!
//! A record is in the scope of a set of nodes if the node that acted (its
//! `node`) is one of them, or one of its recipients (`recipients[].node`),
//! or the holder of one of a consultation's matches (`hits[].holder`). The
//! log's own retention ERASURE records (which name no one and say which
//! prefix was pruned) are in every scope, so that a scoped verification can
//! account for pruned records. An entry outside the scope is served
//! [`withheld`](Scope::withhold): its leaf hash stays, so proofs and the
//! root still check, and its body and record go.

use std::collections::BTreeSet;

use isx_core::wire::{AuditEntry, AuditRecord};

/// A set of node ids whose records are in scope.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope {
    /// The node ids.
    nodes: BTreeSet<String>,
}

impl Scope {
    /// The scope of `nodes`.
    pub fn of<I, S>(nodes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self { nodes: nodes.into_iter().map(Into::into).collect() }
    }

    /// The node ids, in order.
    pub fn nodes(&self) -> impl Iterator<Item = &str> {
        self.nodes.iter().map(String::as_str)
    }

    /// True if `node` is in the scope.
    pub fn contains(&self, node: &str) -> bool {
        self.nodes.contains(node)
    }

    /// True if `r` is in the scope (see the module docs).
    pub fn holds(&self, r: &AuditRecord) -> bool {
        self.nodes.contains(&r.node)
            || r.recipients.iter().any(|x| self.nodes.contains(&x.node))
            || r.hits.iter().any(|h| self.nodes.contains(&h.holder))
            || crate::verify::pruned_range(r).is_some()
    }

    /// `e` as a caller of this scope may see it: unchanged if it is in
    /// scope (or pruned: it has no body to withhold), else withheld (body
    /// and record removed, leaf hash kept, `withheld` set). An entry whose
    /// body does not decode is withheld too: no one can tell it is in scope.
    pub fn withhold(&self, mut e: AuditEntry) -> AuditEntry {
        if e.pruned || e.record.as_ref().is_some_and(|r| self.holds(r)) {
            return e;
        }
        e.body.clear();
        e.record = None;
        e.withheld = true;
        e
    }

    /// The scope in words: `nodes de-police, fr-police`.
    pub fn describe(&self) -> String {
        format!("nodes {}", self.nodes.iter().cloned().collect::<Vec<_>>().join(", "))
    }
}

#[cfg(test)]
mod tests {
    use isx_core::wire::{AuditHit, Operation, RecipientLevel};

    use super::*;

    #[test]
    fn a_record_is_in_scope_by_its_node_a_recipient_or_a_hit_holder() {
        let scope = Scope::of(["de-police"]);
        let by = |node: &str| AuditRecord { node: node.into(), ..Default::default() };
        let to = |node: &str| AuditRecord {
            node: "fr-police".into(),
            recipients: vec![RecipientLevel { node: node.into(), ..Default::default() }],
            ..Default::default()
        };
        let hit = |holder: &str| AuditRecord {
            node: "fr-police".into(),
            hits: vec![AuditHit { holder: holder.into(), ..Default::default() }],
            ..Default::default()
        };
        let pruned = AuditRecord {
            operation: Operation::Erasure as i32,
            detail: crate::verify::pruned_prefix(3),
            ..Default::default()
        };
        let cases = [
            (by("de-police"), true),
            (by("fr-police"), false),
            (by(""), false),
            (to("de-police"), true),
            (to("it-police"), false),
            (hit("de-police"), true),
            (hit("it-police"), false),
            (pruned.clone(), true),
            (AuditRecord { node: "fr-police".into(), ..pruned.clone() }, true),
            (AuditRecord { detail: "expired: the alert and 0 undelivered copies erased".into(), ..pruned }, false),
        ];
        for (r, want) in cases {
            assert_eq!(scope.holds(&r), want, "{r:?}");
        }
        assert_eq!(Scope::of(["fr-police", "de-police"]).describe(), "nodes de-police, fr-police");
    }

    #[test]
    fn withheld_entries_keep_only_their_leaf_hash() {
        let scope = Scope::of(["de-police"]);
        let entry = |node: &str| AuditEntry {
            seq: 4,
            body: vec![1, 2, 3],
            leaf_hash: vec![9; 32],
            record: Some(AuditRecord { node: node.into(), ..Default::default() }),
            ..Default::default()
        };
        assert_eq!(scope.withhold(entry("de-police")), entry("de-police"));
        let w = scope.withhold(entry("fr-police"));
        assert!(w.withheld && w.body.is_empty() && w.record.is_none());
        assert_eq!((w.seq, w.leaf_hash), (4, vec![9; 32]));
        let pruned = AuditEntry { seq: 1, leaf_hash: vec![9; 32], pruned: true, ..Default::default() };
        assert_eq!(scope.withhold(pruned.clone()), pruned);
        let undecodable = AuditEntry { record: None, ..entry("de-police") };
        assert!(scope.withhold(undecodable).withheld);
    }
}
