//! `isx demo`: five mock agencies exchange three realistic alerts through one
//! gateway over real mutual TLS, and a table shows who received what.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, Instant};

use isx_core::display;
use isx_core::wire::{Alert, DisclosureLevel, Receipt};

use crate::samples;
use crate::topology::{Topology, TopologyError, TopologySpec};

/// How long the demo waits for each expected delivery.
pub const DELIVERY_LIMIT: Duration = Duration::from_secs(15);

/// The outcome of one expected or unexpected delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// The alert's short title.
    pub alert: String,
    /// The node.
    pub node: String,
    /// What the receipt promised.
    pub expected: String,
    /// What arrived.
    pub got: String,
}

/// What the demo saw.
#[derive(Debug, Default)]
pub struct DemoReport {
    /// Deliveries checked.
    pub checked: usize,
    /// Where the node's inbox disagrees with the receipt.
    pub mismatches: Vec<Mismatch>,
}

impl DemoReport {
    /// True when every alert arrived where, and only where, the receipt said.
    pub fn ok(&self) -> bool {
        self.mismatches.is_empty()
    }
}

/// Demo failure.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// The topology failed.
    #[error(transparent)]
    Topology(#[from] TopologyError),
    /// An audit call failed.
    #[error("audit: {0}")]
    Audit(#[from] isx_node::audit::AuditClientError),
    /// A publish was refused.
    #[error("publish of {alert} refused: {status}")]
    Publish {
        /// Which alert.
        alert: String,
        /// The gRPC status.
        status: tonic::Status,
    },
    /// A node store failed.
    #[error("node store: {0}")]
    Inbox(#[from] isx_node::inbox::InboxError),
    /// Writing the output failed.
    #[error("output: {0}")]
    Io(#[from] std::io::Error),
}

/// Runs the demo, writing a readable account to `out`.
pub async fn run(out: &mut (dyn Write + Send)) -> Result<DemoReport, DemoError> {
    let started = Instant::now();
    writeln!(out, "isx demo: one gateway, five agencies, mutual TLS 1.3 on 127.0.0.1\n")?;
    let topo = Topology::start(TopologySpec::default_agencies()).await?;
    writeln!(
        out,
        "  gateway      listening on {} (temporary PKI and data in {})",
        topo.gateway_addr(),
        topo.root().display()
    )?;
    let agencies: Vec<(String, String)> =
        topo.spec().nodes.iter().filter(|n| n.run_mock).map(|n| (n.id.to_string(), n.name.clone())).collect();
    for (id, name) in &agencies {
        writeln!(out, "  {id:<12} {name}")?;
    }
    writeln!(out)?;

    let stories: Vec<(&str, Alert)> = vec![
        ("foreign fighter", samples::foreign_fighter("de-police", &[])),
        ("smuggling network", samples::migrant_smuggling("it-police", &["fr-police", "europol", "frontex"])),
        ("trafficking victim", samples::trafficking_victim("fr-police", &["de-police", "it-police", "europol"])),
    ];
    let mut receipts: Vec<(&str, Alert, Receipt)> = Vec::new();
    for (title, alert) in stories {
        let client = topo.client(&alert.origin).await?;
        let resp =
            client.publish(alert.clone()).await.map_err(|status| DemoError::Publish { alert: title.into(), status })?;
        let receipt = resp.receipt.unwrap_or_default();
        let labels = alert.labels.clone().unwrap_or_default();
        let to = if alert.addressees.is_empty() { "every agency".to_owned() } else { alert.addressees.join(", ") };
        writeln!(
            out,
            "  {:<12} published {title} ({}, {}, {}) to {to}",
            alert.origin,
            display::category(alert.category()),
            display::tlp(labels.tlp()),
            display::handling(labels.handling_code()),
        )?;
        receipts.push((title, alert, receipt));
    }

    let mut report = DemoReport::default();
    let mut table: Vec<(String, String, BTreeMap<String, String>)> = Vec::new();
    for (title, alert, receipt) in &receipts {
        let mut row = BTreeMap::new();
        let promised: BTreeMap<&str, DisclosureLevel> =
            receipt.recipients.iter().map(|r| (r.node.as_str(), r.level())).collect();
        for (node, _) in &agencies {
            let inbox = topo.inbox(node);
            let expected = promised.get(node.as_str()).copied().filter(|l| *l != DisclosureLevel::Denied);
            let got = match expected {
                Some(_) => inbox.wait_for(&alert.alert_id, DELIVERY_LIMIT).await?,
                None => inbox.get(&alert.alert_id)?,
            };
            let cell = if *node == alert.origin {
                "(origin)".to_owned()
            } else {
                match (&expected, &got) {
                    (_, Some(r)) => display::level(r.level()).to_owned(),
                    (Some(_), None) => "MISSING".to_owned(),
                    (None, None) => "-".to_owned(),
                }
            };
            let got_level = got.as_ref().map(|r| r.level());
            if *node != alert.origin && expected != got_level {
                report.mismatches.push(Mismatch {
                    alert: (*title).to_owned(),
                    node: node.clone(),
                    expected: expected.map(|l| display::level(l).to_owned()).unwrap_or_else(|| "nothing".into()),
                    got: got_level.map(|l| display::level(l).to_owned()).unwrap_or_else(|| "nothing".into()),
                });
            }
            report.checked += 1;
            row.insert(node.clone(), cell);
        }
        table.push(((*title).to_owned(), alert.origin.clone(), row));
    }

    writeln!(out, "\nWho received what:\n")?;
    write!(out, "  {:<20}", "alert")?;
    for (node, _) in &agencies {
        write!(out, " {node:<10}")?;
    }
    writeln!(out)?;
    for (title, _, row) in &table {
        write!(out, "  {title:<20}")?;
        for (node, _) in &agencies {
            write!(out, " {:<10}", row.get(node).map(String::as_str).unwrap_or("?"))?;
        }
        writeln!(out)?;
    }
    writeln!(
        out,
        "\n  full = the alert as sent; redacted = names, document numbers, special categories removed, birth date \
         reduced to the year;\n  hit_only = only the reference, holder, category and action; denied = nothing; \
         - = not a recipient; MISSING = promised but not delivered"
    )?;

    writeln!(out, "\nWhy (every level below full, with the deciding policy):\n")?;
    for (title, _, receipt) in &receipts {
        for r in receipt.recipients.iter().filter(|r| r.level() != DisclosureLevel::Full) {
            let id = r.policy_ids.iter().find(|p| topo.policy_reason(p).is_some()).cloned().unwrap_or_default();
            let reason = topo.policy_reason(&id).unwrap_or_default();
            writeln!(out, "  {title:<20} {:<10} {:<9} {id}: {reason}", r.node, display::level(r.level()))?;
        }
    }

    // The auditor's view: what the log holds, and proof that it is complete and unaltered.
    let auditor = topo.client("auditor").await?;
    match isx_node::audit::verify_live(&auditor, None, None, &|_, _, _| {}).await {
        Ok(v) => {
            let all =
                isx_node::audit::search(&auditor, isx_core::wire::SearchRequest { limit: 1000, ..Default::default() })
                    .await;
            let mut counts: BTreeMap<String, usize> = BTreeMap::new();
            if let Ok(page) = all {
                let covered = v.checkpoint.tree_size;
                for e in page.entries.iter().filter(|e| e.seq < covered).filter_map(|e| e.record.as_ref()) {
                    *counts
                        .entry(e.operation().as_str_name().trim_start_matches("OPERATION_").to_ascii_lowercase())
                        .or_default() += 1;
                }
            }
            let summary: Vec<String> = counts.iter().map(|(op, n)| format!("{n} {op}")).collect();
            writeln!(out, "\nAudit trail: {} (the auditor's own reads are recorded too).", summary.join(", "))?;
            writeln!(
                out,
                "Verified as the auditor would: {} records hashed again, the Merkle root recomputed and matched to the signed checkpoint, {} index searches matched the records:\n",
                v.checkpoint.tree_size, v.index_checks
            )?;
            for line in v.checkpoint.note.lines() {
                writeln!(out, "  {line}")?;
            }
        }
        Err(e) => {
            writeln!(out, "\nAUDIT LOG VERIFICATION FAILED: {e}")?;
            report.mismatches.push(Mismatch {
                alert: "audit log".into(),
                node: "gateway".into(),
                expected: "verified".into(),
                got: e.to_string(),
            });
        }
    }

    topo.shutdown().await;
    if report.ok() {
        writeln!(
            out,
            "\nOK: {} deliveries checked against the receipts in {:.1} s.",
            report.checked,
            started.elapsed().as_secs_f64()
        )?;
    } else {
        writeln!(
            out,
            "\nFAILED: {} of {} checks disagree with the receipts:",
            report.mismatches.len(),
            report.checked
        )?;
        for m in &report.mismatches {
            writeln!(out, "  {} at {}: expected {}, got {}", m.alert, m.node, m.expected, m.got)?;
        }
    }
    Ok(report)
}
