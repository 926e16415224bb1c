//! Open hits per node, derived from the log (pure, CIR Art. 22(2)): every
//! hit a lookup showed, minus those its node requested or declined, minus
//! those the gateway closed without follow-up (HIT_CLOSED), which are listed
//! with their reason. A hit is keyed by the node shown it and its alert, as
//! the records name them; a closed hit shown again opens again.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::text::RecordView;

/// A hit shown and not yet followed up.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct OpenItem {
    /// The node shown the hit.
    pub node: String,
    /// The alert it matched.
    pub alert_id: String,
    /// The alert's holder.
    pub holder: String,
    /// The officer first shown it.
    pub officer: String,
    /// When, RFC 3339.
    pub shown_at: String,
    /// The consultation's seq.
    pub seq: u64,
}

/// A hit closed without follow-up.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ClosedItem {
    /// The node shown the hit.
    pub node: String,
    /// The alert it matched.
    pub alert_id: String,
    /// The alert's holder.
    pub holder: String,
    /// The officer who was shown it.
    pub officer: String,
    /// When it closed, RFC 3339.
    pub closed_at: String,
    /// `expired`, `withdrawn` or `deadline`.
    pub reason: String,
    /// The record's detail.
    pub detail: String,
    /// The HIT_CLOSED record's seq.
    pub seq: u64,
}

/// One node's tally.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct NodeTally {
    /// The node.
    pub node: String,
    /// Hits open now.
    pub open: usize,
    /// Hits followed up (requested or declined).
    pub followed: usize,
    /// Hits closed without follow-up.
    pub closed: usize,
}

/// The open and closed hits of the nodes the records name.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Hits {
    /// Open now, oldest first.
    pub open: Vec<OpenItem>,
    /// Closed without follow-up, oldest first.
    pub closed: Vec<ClosedItem>,
    /// Per node, in node order.
    pub nodes: Vec<NodeTally>,
}

/// The reason word of a HIT_CLOSED detail: `... closed without follow-up (deadline): ...`.
pub fn reason(detail: &str) -> String {
    detail
        .split_once("without follow-up (")
        .and_then(|(_, rest)| rest.split_once(')'))
        .map(|(word, _)| word.to_owned())
        .unwrap_or_default()
}

/// Derives the hits from `rows` (consultations, access requests, declines
/// and HIT_CLOSED records, any order; others are ignored).
pub fn derive(rows: &[RecordView]) -> Hits {
    let mut rows: Vec<&RecordView> = rows.iter().collect();
    rows.sort_by_key(|r| r.seq);
    let mut open: BTreeMap<(String, String), OpenItem> = BTreeMap::new();
    let mut followed: BTreeSet<(String, String)> = BTreeSet::new();
    let mut out = Hits::default();
    let mut tally: BTreeMap<String, NodeTally> = BTreeMap::new();
    for r in rows {
        match r.operation.as_str() {
            "consultation" => {
                for h in r.hits.iter().filter(|h| h.shown) {
                    let key = (r.node.clone(), h.alert_id.clone());
                    if followed.contains(&key) || open.contains_key(&key) {
                        continue;
                    }
                    tally.entry(r.node.clone()).or_default();
                    open.insert(
                        key,
                        OpenItem {
                            node: r.node.clone(),
                            alert_id: h.alert_id.clone(),
                            holder: h.holder.clone(),
                            officer: r.officer.clone(),
                            shown_at: r.time.clone(),
                            seq: r.seq,
                        },
                    );
                }
            }
            "access_request" | "follow_up_declined" => {
                let key = (r.node.clone(), r.alert_id.clone());
                if open.remove(&key).is_some() || !followed.contains(&key) {
                    tally.entry(r.node.clone()).or_default().followed += 1;
                }
                followed.insert(key);
            }
            "hit_closed" => {
                let key = (r.node.clone(), r.alert_id.clone());
                let shown = open.remove(&key);
                tally.entry(r.node.clone()).or_default().closed += 1;
                out.closed.push(ClosedItem {
                    node: r.node.clone(),
                    alert_id: r.alert_id.clone(),
                    holder: r.recipients.first().map(|x| x.node.clone()).unwrap_or_default(),
                    officer: if r.officer.is_empty() {
                        shown.map(|s| s.officer).unwrap_or_default()
                    } else {
                        r.officer.clone()
                    },
                    closed_at: r.time.clone(),
                    reason: reason(&r.detail),
                    detail: r.detail.clone(),
                    seq: r.seq,
                });
            }
            _ => {}
        }
    }
    out.open = open.into_values().collect();
    out.open.sort_by_key(|o| o.seq);
    for o in &out.open {
        tally.entry(o.node.clone()).or_default().open += 1;
    }
    out.nodes = tally.into_iter().map(|(node, t)| NodeTally { node, ..t }).collect();
    out
}
