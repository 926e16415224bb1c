//! `isx demo`: the showcase scenario (`deploy/local/scenarios/01-showcase.toml`,
//! compiled in), narrated step by step for a reader who does not read Rust.
//!
//! A gateway and five mock agencies start in this process over real mutual
//! TLS 1.3 on 127.0.0.1. For each alert the demo shows what each agency
//! received, at which level, and the policy's reason; then a hit/no-hit
//! lookup and a granted request; then the audit trail, verified as an
//! auditor would, and the commands to explore further.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use isx_core::display;
use isx_core::wire::{DisclosureLevel, SearchRequest};

use crate::scenario::run::{Line, Options, Verdict};
use crate::scenario::{Embedded, Scenario, ScenarioError};
use crate::topology::{Topology, TopologyError};

/// How long the demo waits for each expected delivery.
pub const DELIVERY_LIMIT: Duration = Duration::from_secs(15);

/// Where the showcase lives in the repository (and, compiled in, in the binary).
pub const SHOWCASE: &str = "deploy/local/scenarios/01-showcase.toml";

/// The showcase and the alert files it names, as compiled into the binary.
pub fn embedded() -> Embedded {
    let files: [(&str, &'static str); 4] = [
        (SHOWCASE, include_str!("../../../deploy/local/scenarios/01-showcase.toml")),
        ("deploy/local/alerts/foreign-fighter.json", include_str!("../../../deploy/local/alerts/foreign-fighter.json")),
        (
            "deploy/local/alerts/smuggling-network.json",
            include_str!("../../../deploy/local/alerts/smuggling-network.json"),
        ),
        (
            "deploy/local/alerts/trafficking-victim.json",
            include_str!("../../../deploy/local/alerts/trafficking-victim.json"),
        ),
    ];
    Embedded(files.into_iter().map(|(p, t)| (PathBuf::from(p), t)).collect())
}

/// What the demo saw.
#[derive(Debug, Default)]
pub struct DemoReport {
    /// Expectations checked.
    pub checked: usize,
    /// Expectations that failed, each with its step and reason.
    pub failures: Vec<String>,
    /// The audit log verified.
    pub audit_verified: bool,
}

impl DemoReport {
    /// True when every expectation held and the audit log verified.
    pub fn ok(&self) -> bool {
        self.failures.is_empty() && self.audit_verified
    }
}

/// Demo failure.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// The compiled-in showcase does not load.
    #[error(transparent)]
    Scenario(#[from] ScenarioError),
    /// The topology failed.
    #[error(transparent)]
    Topology(#[from] TopologyError),
    /// A node store failed.
    #[error("node store: {0}")]
    Inbox(#[from] isx_node::inbox::InboxError),
    /// Writing the output failed.
    #[error("output: {0}")]
    Io(#[from] std::io::Error),
}

/// Wraps `text` at `width` columns after `indent`.
fn wrap(text: &str, indent: &str, width: usize) -> String {
    let mut out = String::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && indent.len() + line.len() + 1 + word.len() > width {
            out.push_str(indent);
            out.push_str(&line);
            out.push('\n');
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        out.push_str(indent);
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// Runs the demo, writing the narrated account to `out`.
pub async fn run(out: &mut (dyn Write + Send)) -> Result<DemoReport, DemoError> {
    run_with(out, None).await
}

/// The officer name the console command that the demo prints reads the log as.
pub const CONSOLE_OFFICER: &str = "demo-auditor";

/// As [`run`]; with `hold`, the topology keeps running after the account,
/// for `isx console`, until `hold` resolves (`isx demo --keep`: Ctrl-C).
pub async fn run_with(
    out: &mut (dyn Write + Send),
    hold: Option<std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>>,
) -> Result<DemoReport, DemoError> {
    let started = Instant::now();
    let source = embedded();
    let scenario = Scenario::load_from(Path::new(SHOWCASE), &source)?;
    writeln!(out, "isx demo: {}\n", scenario.name)?;
    write!(out, "{}", wrap(&scenario.description, "  ", 88))?;
    // A witness beside the gateway, as a regulator would run one: the
    // gateway publishes only checkpoints it cosigned (#18).
    let mut spec = scenario.spec.clone();
    spec.witnesses = vec!["witness".into()];
    let mut topo = Topology::start(spec).await?;
    writeln!(
        out,
        "\n  The gateway listens on {} (mutual TLS 1.3; temporary PKI and data in {}).",
        topo.gateway_addr(),
        topo.root().display()
    )?;
    for n in topo.spec().nodes.iter() {
        let role = if n.run_mock { "agency" } else { "auditor" };
        writeln!(out, "  {:<10} {role:<8} {}", n.id.as_str(), n.name)?;
    }

    // Narrate: the story, what happened, and only the expectations that failed.
    let mut lines: Vec<Line> = Vec::new();
    let report =
        crate::scenario::run::run(&scenario, &mut topo, &source, &Options { limit: DELIVERY_LIMIT }, &mut |line| {
            lines.push(line)
        })
        .await;
    let mut held = 0usize;
    for line in &lines {
        match line {
            Line::Say(text) => {
                if held > 0 {
                    writeln!(out, "     ({held} expectations held)")?;
                    held = 0;
                }
                writeln!(out)?;
                let mut parts = text.splitn(2, ' ');
                let (number, rest) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
                let body = wrap(rest, "    ", 88);
                writeln!(out, "{number:<3} {}", body.trim_start())?;
            }
            Line::Step { summary, .. } if summary.starts_with("publish") || summary.contains("requests access") => {
                writeln!(out, "     → {summary}")?;
            }
            Line::Detail(text) => writeln!(out, "       {text}")?,
            Line::Check(c) => match &c.verdict {
                Verdict::Pass => held += 1,
                Verdict::Fail(why) => writeln!(out, "     ✗ FAILED: {} — {why}", c.what)?,
                Verdict::Skipped(why) => writeln!(out, "     - skipped: {} ({why})", c.what)?,
            },
            _ => {}
        }
    }
    if held > 0 {
        writeln!(out, "     ({held} expectations held)")?;
    }

    // Who received what, read back from each agency's own store.
    let agencies: Vec<String> = topo.spec().nodes.iter().filter(|n| n.run_mock).map(|n| n.id.to_string()).collect();
    writeln!(out, "\nWho holds what now (from each agency's own store):\n")?;
    write!(out, "  {:<20}", "alert")?;
    for node in &agencies {
        write!(out, " {node:<10}")?;
    }
    writeln!(out)?;
    for (name, alert) in &report.alerts {
        write!(out, "  {name:<20}")?;
        for node in &agencies {
            let cell = if *node == alert.origin {
                "(holder)".to_owned()
            } else {
                match topo.inbox(node).get(&alert.alert_id)? {
                    Some(r) if r.level() != DisclosureLevel::Unspecified => display::level(r.level()).to_owned(),
                    _ => "-".to_owned(),
                }
            };
            write!(out, " {cell:<10}")?;
        }
        writeln!(out)?;
    }
    writeln!(
        out,
        "\n  full = the alert as sent; redacted = names, document numbers, special categories and narrative\n  \
         removed, birth date reduced to the year; hit_only = reference, holder, category and action only;\n  \
         - = nothing. Frontex's redacted copy of the trafficking alert came after France granted its request."
    )?;

    // The auditor's view: what the log holds, and proof that it is complete and unaltered.
    let mut demo = DemoReport {
        checked: report.checks.len(),
        failures: report
            .checks
            .iter()
            .filter(|c| !c.ok())
            .map(|c| match &c.verdict {
                Verdict::Fail(why) => format!("step {} (line {}): {}: {why}", c.step, c.line, c.what),
                _ => String::new(),
            })
            .collect(),
        audit_verified: false,
    };
    let auditor = topo.client("auditor").await?;
    // Every read of the log names its purpose and case (LED Art. 25(2)).
    let integrity = isx_core::read_reason::reason(isx_core::wire::ReadPurpose::Integrity, "isx demo");
    let monitoring = isx_core::read_reason::reason(isx_core::wire::ReadPurpose::SelfMonitoring, "isx demo");
    match isx_node::audit::verify_live(&auditor, &integrity, None, None, &|_, _, _| {}).await {
        Ok(v) => {
            let covered = v.checkpoint.tree_size;
            let all = isx_node::audit::search(
                &auditor,
                &monitoring,
                SearchRequest { limit: 1000, justification: "isx demo summary".into(), ..Default::default() },
            )
            .await;
            let mut counts: BTreeMap<String, usize> = BTreeMap::new();
            if let Ok(page) = all {
                for e in page.entries.iter().filter(|e| e.seq < covered).filter_map(|e| e.record.as_ref()) {
                    let op = e.operation().as_str_name().trim_start_matches("OPERATION_").to_ascii_lowercase();
                    *counts.entry(op.replace('_', " ")).or_default() += 1;
                }
            }
            let summary: Vec<String> = counts.iter().map(|(op, n)| format!("{n} {op}")).collect();
            writeln!(out, "\nThe audit trail holds {covered} records: {}.", summary.join(", "))?;
            writeln!(
                out,
                "  Subjects appear only as keyed pseudonyms; the auditor's own reads are recorded too.\n  \
                 Verified as an auditor would: every record hashed again, the Merkle root recomputed and\n  \
                 matched to the signed checkpoint, {} index searches matched the records:\n",
                v.index_checks
            )?;
            for line in v.checkpoint.note.lines() {
                writeln!(out, "    {line}")?;
            }
            if v.checkpoint.witnessed {
                writeln!(
                    out,
                    "\n  Cosigned by {} (C2SP tlog-witness, a witness beside the gateway): the gateway publishes only\n  \
                     checkpoints its witnesses cosigned, so it cannot roll its log back or show two logs unseen.",
                    v.checkpoint.cosigners.join(", ")
                )?;
            }
            demo.audit_verified = true;
        }
        Err(e) => writeln!(out, "\nAUDIT LOG VERIFICATION FAILED: {e}")?,
    }

    writeln!(out, "\nExplore further:")?;
    for (cmd, what) in [
        ("isx policy explain --alert deploy/local/alerts/trafficking-victim.json", "each agency's level and why"),
        ("isx policy test deploy/local/policy/tests.toml", "the rule table"),
        ("isx scenario run deploy/local/scenarios/*.toml", "every scenario, pass/fail per expectation"),
        ("isx scenario run --verbose deploy/local/scenarios/05-hit-no-hit.toml", "lookups, grants, expiry"),
        ("isx scenario run --verbose deploy/local/scenarios/10-witnessed.toml", "witnessed checkpoints"),
        ("isx up", "the same agencies as separate processes"),
    ] {
        writeln!(out, "  {cmd:<72} {what}")?;
    }
    let pki = topo.pki_dir();
    let trust = match topo.witness_policy() {
        Some(policy) => format!("--witness-policy {}", policy.display()),
        None => format!("--key {}", pki.join("audit.pub").display()),
    };
    let console = format!(
        "isx console --as auditor --pki {} --gateway {} --officer {CONSOLE_OFFICER} {trust} --policy {}",
        pki.display(),
        topo.gateway_addr(),
        topo.root().join("policy").display()
    );
    if hold.is_none() {
        let keep = "isx demo --keep";
        writeln!(out, "  {keep:<72} keep this topology running and open it in the console (isx console)")?;
    }
    if demo.ok() {
        writeln!(
            out,
            "\nOK: {} expectations held and the audit log verified, in {:.1} s.",
            demo.checked,
            started.elapsed().as_secs_f64()
        )?;
    } else {
        writeln!(out, "\nFAILED: {} of {} expectations did not hold:", demo.failures.len(), demo.checked)?;
        for f in &demo.failures {
            writeln!(out, "  {f}")?;
        }
    }
    if let Some(hold) = hold {
        writeln!(
            out,
            "\nThe gateway and the agencies keep running. In another terminal, from the repository's root, open\n\
             the console on what this demo just did (who received data about the trafficked girl, and why:\n\
             Subject report, document RO RX771203):\n\n  {console}\n\nCtrl-C stops them."
        )?;
        out.flush()?;
        hold.await;
    }
    topo.shutdown().await;
    Ok(demo)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_compiled_in_showcase_is_the_file_in_the_repository() {
        let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
        for (path, text) in super::embedded().0 {
            assert_eq!(std::fs::read_to_string(root.join(&path)).unwrap(), text, "{}", path.display());
        }
    }

    #[test]
    fn wrapping_keeps_words_and_indent() {
        let w = super::wrap("one two three four", "  ", 12);
        assert_eq!(w, "  one two\n  three four\n");
    }
}
