//! Human-readable printing of receipts, deliveries, node events, audit
//! records and errors.

use std::io::Write;

use isx_core::display;
use isx_core::timestamp::rfc3339;
use isx_core::wire::{AuditEntry, AuditRecord, Delivery, Receipt};
use isx_node::NodeEvent;
use tonic_types::StatusExt;

pub fn print_receipt(receipt: &Receipt, duplicate: bool) {
    print_receipt_noted(receipt, if duplicate { " (already published: original receipt)" } else { "" });
}

/// A receipt whose first line ends with `note`.
pub fn print_receipt_noted(receipt: &Receipt, note: &str) {
    let when = receipt.accepted_at.as_ref().map(rfc3339).unwrap_or_default();
    println!("alert {} accepted at {when}{note}", receipt.alert_id);
    println!("content digest sha256:{}  hops {}", receipt.content_digest, receipt.hops);
    if !receipt.replaces_digest.is_empty() {
        println!("version {}, replacing sha256:{}", receipt.version, receipt.replaces_digest);
    }
    if !receipt.raised_by.is_empty() {
        let labels = receipt.labels.clone().unwrap_or_default();
        println!(
            "labels raised to {} {}: it shares a person, document or object with {}, received under restricted labels; it reaches only that alert's holders",
            display::tlp(labels.tlp()),
            display::handling(labels.handling_code()),
            receipt.raised_by.join(", ")
        );
    }
    println!("{:<14} {:<10} {:<18} policies", "recipient", "level", "outcome");
    for r in &receipt.recipients {
        let outcome = r.outcome().as_str_name().trim_start_matches("RECIPIENT_OUTCOME_").to_ascii_lowercase();
        println!("{:<14} {:<10} {:<18} {}", r.node, display::level(r.level()), outcome, r.policy_ids.join(", "));
        if !r.removed_fields.is_empty() {
            println!("{:<14} {:<10} {:<18} withheld: {}", "", "", "", r.removed_fields.join(", "));
        }
    }
}

pub fn print_delivery(cursor: u64, d: &Delivery) {
    let Some(alert) = &d.alert else { return };
    let labels = alert.labels.clone().unwrap_or_default();
    println!(
        "[{cursor}] {} from {} | {} | {} {} | {} | level {} | {} subject(s), {} object(s)",
        alert.alert_id,
        alert.origin,
        display::category(alert.category()),
        display::tlp(labels.tlp()),
        display::handling(labels.handling_code()),
        alert.action().as_str_name().trim_start_matches("ACTION_").to_ascii_lowercase(),
        display::level(d.level()),
        alert.subjects.len(),
        alert.objects.len(),
    );
    if !d.removed_fields.is_empty() {
        println!("      withheld: {}", d.removed_fields.join(", "));
    }
}

/// The answer to a lookup, one hit per line.
pub fn print_hits(resp: &isx_core::wire::LookupResponse) {
    if resp.hits.is_empty() {
        println!("no hit");
        return;
    }
    println!(
        "{} hit(s); request the data with `isx access request HIT_ID`, or record `isx access decline HIT_ID`:",
        resp.hits.len()
    );
    for h in &resp.hits {
        println!(
            "  {}  alert {}  held by {}  {}  action {}  matched on {}",
            h.hit_id,
            h.alert_id,
            h.holder,
            display::category(h.category()),
            h.action().as_str_name().trim_start_matches("ACTION_").to_ascii_lowercase(),
            h.matched.join(", "),
        );
    }
}

/// One access request, as a node sees it.
pub fn print_access(r: &isx_core::wire::AccessRequest) {
    let state = r.state().as_str_name().trim_start_matches("ACCESS_STATE_").to_ascii_lowercase();
    let deadline = r.deadline.as_ref().map(isx_core::timestamp::rfc3339).unwrap_or_default();
    println!(
        "  {}  {state:<8} alert {}  {} asks {}  ({})",
        r.request_id,
        r.alert_id,
        r.requester,
        r.holder,
        display::category(r.category()),
    );
    println!("      purpose: {}; justification: {}", r.purpose, r.justification);
    match r.state() {
        isx_core::wire::AccessState::Pending => println!("      decide before {deadline}"),
        isx_core::wire::AccessState::Granted => println!(
            "      granted by {}: {}; the requester receives it {}",
            r.decided_by,
            r.reason,
            display::level(r.level())
        ),
        _ => println!(
            "      {}{}",
            if r.decided_by.is_empty() { String::new() } else { format!("{}: ", r.decided_by) },
            r.reason
        ),
    }
}

pub fn print_node_event(event: &NodeEvent) {
    match event {
        NodeEvent::Access { request } => print_access(request),
        NodeEvent::Connected => println!("subscribed to the gateway"),
        NodeEvent::Disconnected { reason } => println!("disconnected: {reason}; retrying"),
        NodeEvent::Delivered { record, new } => {
            if let Some(d) = &record.delivery {
                print_delivery(record.cursor, d);
            }
            if !new {
                println!("      (duplicate of an alert already stored; dropped)");
            }
        }
        NodeEvent::Changed { alert_id, kind, version, state, effect } => {
            let note = match effect {
                isx_node::inbox::ChangeEffect::Applied => "",
                isx_node::inbox::ChangeEffect::Repeated => " (already applied)",
                isx_node::inbox::ChangeEffect::Stale => " (older than the copy; nothing to do)",
            };
            println!(
                "change: {alert_id} {} -> version {version} {}, confirmed{note}",
                change_kind(*kind),
                copy_state(*state)
            );
        }
        NodeEvent::ChangeRefused { alert_id, reason } => {
            println!("change of {alert_id} not applied: {reason}; acknowledged unconfirmed")
        }
    }
}

/// A change kind in lower case (`withdrawal`).
pub fn change_kind(kind: isx_core::wire::ChangeKind) -> String {
    kind.as_str_name().trim_start_matches("CHANGE_KIND_").to_ascii_lowercase()
}

/// A copy state in lower case (`deleted`).
pub fn copy_state(state: isx_core::wire::CopyState) -> String {
    state.as_str_name().trim_start_matches("COPY_STATE_").to_ascii_lowercase()
}

/// A call of the alert lifecycle, for its messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifecycle {
    /// `isx alert amend`.
    Amend,
    /// `isx alert withdraw`.
    Withdraw,
    /// `isx alert restrict`.
    Restrict,
    /// `isx alert lift`.
    Lift,
    /// `isx alert status`.
    Status,
}

impl Lifecycle {
    /// The verb, as in "may amend".
    pub fn verb(self) -> &'static str {
        match self {
            Self::Amend => "amend",
            Self::Withdraw => "withdraw",
            Self::Restrict => "restrict",
            Self::Lift => "lift the restriction of",
            Self::Status => "see the status of",
        }
    }

    /// What the alert now is, as in "alert X withdrawn".
    pub fn done(self) -> &'static str {
        match self {
            Self::Amend => "amended",
            Self::Withdraw => "withdrawn",
            Self::Restrict => "restricted",
            Self::Lift => "no longer restricted",
            Self::Status => "unchanged",
        }
    }

    /// The command, as in "isx alert withdraw".
    fn command(self) -> &'static str {
        match self {
            Self::Amend => "amend",
            Self::Withdraw => "withdraw",
            Self::Restrict => "restrict",
            Self::Lift => "lift",
            Self::Status => "status",
        }
    }
}

/// A refused lifecycle call as one plain sentence with its fix, then the
/// gateway's own words and each field it named.
pub fn print_lifecycle_refusal(what: Lifecycle, alert_id: &str, node: &isx_core::NodeId, status: &tonic::Status) {
    use tonic::Code;
    let verb = what.verb();
    let sentence = match status.code() {
        Code::PermissionDenied if what == Lifecycle::Status => format!(
            "only the origin of alert {alert_id}, or an auditor whose scope covers it, may see its status, and you act as {node}: run it as the node that published the alert (--as ORIGIN, or its --node-config)"
        ),
        Code::PermissionDenied => format!(
            "only the origin of alert {alert_id} may {verb} it, and you act as {node}: run it as the node that published the alert (--as ORIGIN, or its --node-config)"
        ),
        Code::NotFound => format!(
            "the gateway holds no alert {alert_id} (unknown id, or it has expired): check the id against your publish receipt"
        ),
        Code::FailedPrecondition | Code::Aborted if what == Lifecycle::Amend => format!(
            "alert {alert_id} cannot be amended as asked now: see its current version and state with `isx alert status {alert_id}`, and give that version as --replaces-version (a withdrawn or expired alert cannot be amended)"
        ),
        Code::FailedPrecondition | Code::Aborted => format!(
            "alert {alert_id} is not in a state that lets you {verb} it: see its state with `isx alert status {alert_id}`"
        ),
        Code::InvalidArgument if what == Lifecycle::Amend => format!(
            "the amendment of alert {alert_id} is invalid: correct the field(s) named below in the file and run `isx alert amend` again"
        ),
        Code::InvalidArgument => format!(
            "the request to {verb} alert {alert_id} is invalid: correct the field(s) named below and run `isx alert {}` again",
            what.command()
        ),
        Code::Unavailable => format!(
            "the gateway could not {verb} alert {alert_id} now (nothing was changed): try again when it is back"
        ),
        _ => format!("the gateway refused to {verb} alert {alert_id}"),
    };
    eprintln!("error: {sentence}");
    print_status(&format!("  gateway said ({})", what.command()), status);
}

/// A timestamp, or `-` when unset.
fn when(ts: &Option<prost_types::Timestamp>) -> String {
    ts.as_ref().map(rfc3339).unwrap_or_else(|| "-".into())
}

/// An alert's versions and every copy, with who confirmed the last change.
pub fn print_alert_status(s: &isx_core::wire::AlertStatus) {
    let state = s.state().as_str_name().trim_start_matches("ALERT_STATE_").to_ascii_lowercase();
    println!(
        "alert {} from {}: {state}, version {} (sha256:{}), expires {}",
        s.alert_id,
        s.origin,
        s.version,
        s.content_digest,
        when(&s.expires_at)
    );
    for v in &s.versions {
        let replaces = if v.replaces_digest.is_empty() {
            String::new()
        } else {
            format!(", replaces sha256:{}", v.replaces_digest)
        };
        println!(
            "  version {} sha256:{} at {} (record {}){replaces}",
            v.version,
            v.content_digest,
            when(&v.at),
            v.record_seq
        );
    }
    if s.copies.is_empty() {
        println!("no copies: nobody received the alert");
        return;
    }
    println!(
        "{:<14} {:<10} {:<12} {:>7}  {:<11} {:<16} {:<24} overdue",
        "node", "level", "last change", "version", "expected", "confirmed", "confirmed at"
    );
    for c in &s.copies {
        let confirmed = if c.confirmed() == isx_core::wire::CopyState::Unspecified {
            "-".to_owned()
        } else {
            format!("{} v{}", copy_state(c.confirmed()), c.confirmed_version)
        };
        let last = if c.last_change() == isx_core::wire::ChangeKind::Unspecified {
            "-".to_owned()
        } else {
            change_kind(c.last_change())
        };
        let expected = if c.expected() == isx_core::wire::CopyState::Unspecified {
            "-".to_owned()
        } else {
            copy_state(c.expected())
        };
        let overdue = if c.overdue {
            "OVERDUE"
        } else if c.settled {
            "no"
        } else {
            "not yet"
        };
        let node = if c.copy_of.is_empty() || c.copy_of == s.alert_id {
            c.node.clone()
        } else {
            format!("{} (forward {})", c.node, c.copy_of)
        };
        println!(
            "{node:<14} {:<10} {last:<12} {:>7}  {expected:<11} {confirmed:<16} {:<24} {overdue}",
            display::level(c.level()),
            c.version,
            when(&c.confirmed_at)
        );
    }
    let settled = s.copies.iter().filter(|c| c.settled).count();
    let overdue = s.copies.iter().filter(|c| c.overdue).count();
    println!(
        "{settled} of {} copies confirmed; {overdue} overdue (unconfirmed after the grace of {} s)",
        s.copies.len(),
        s.confirm_grace_seconds
    );
}

/// How audit records are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditFormat {
    /// One aligned line per record, under a header.
    Table,
    /// One JSON object per line.
    Json,
    /// CSV with a header line.
    Csv,
}

/// The widest the table's policies column gets; longer lists end in `…`
/// (`--json` and `--csv` carry them whole).
const POLICIES_WIDTH: usize = 36;

/// The deciding policies of a record: its own, or else those of each
/// recipient and each hit, in order, once each.
pub fn audit_policies(r: &AuditRecord) -> Vec<String> {
    let mut ids: Vec<String> = Vec::new();
    let all = r
        .policy_ids
        .iter()
        .chain(r.recipients.iter().flat_map(|x| &x.policy_ids))
        .chain(r.hits.iter().flat_map(|h| &h.policy_ids));
    for id in all {
        if !ids.contains(id) {
            ids.push(id.clone());
        }
    }
    ids
}

/// `text` cut to `width` characters, the last one `…` if anything was cut.
pub fn truncate(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(width.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// The header of an audit listing (nothing for JSON).
pub fn print_audit_header(out: &mut impl Write, format: AuditFormat) -> std::io::Result<()> {
    match format {
        AuditFormat::Csv => {
            writeln!(out, "seq,time,operation,node,officer,alert_id,recipients,outcome,policy_ids,purpose,detail")
        }
        AuditFormat::Table => writeln!(
            out,
            "{:>6}  {:<24} {:<17} {:<10} {:<22} {:<38} {:<28} {:<8} {:<POLICIES_WIDTH$} detail",
            "seq", "time", "operation", "node", "officer", "alert", "recipients", "outcome", "policies"
        ),
        AuditFormat::Json => Ok(()),
    }
}

/// One audit entry: a line of the table, a CSV row or a JSON object.
pub fn print_audit_entry(out: &mut impl Write, e: &AuditEntry, format: AuditFormat) -> std::io::Result<()> {
    let Some(r) = &e.record else {
        return match format {
            AuditFormat::Table if e.withheld => {
                writeln!(out, "{:>6}  (withheld: outside your audit scope; leaf hash kept)", e.seq)
            }
            AuditFormat::Table => writeln!(out, "{:>6}  (pruned: body removed by retention; leaf hash kept)", e.seq),
            _ => Ok(()),
        };
    };
    let detail = audit_detail(r);
    let recipients =
        r.recipients.iter().map(|x| format!("{}:{}", x.node, display::level(x.level()))).collect::<Vec<_>>().join(" ");
    let op = r.operation().as_str_name().trim_start_matches("OPERATION_").to_ascii_lowercase();
    let outcome = r.outcome().as_str_name().trim_start_matches("OUTCOME_").to_ascii_lowercase();
    let time = r.time.as_ref().map(rfc3339).unwrap_or_default();
    let policies = audit_policies(r).join(",");
    match format {
        AuditFormat::Json => {
            let mut v = isx_core::json::to_json_value(r);
            v["leaf_hash"] = serde_json::Value::String(hex::encode(&e.leaf_hash));
            writeln!(out, "{}", serde_json::to_string(&v).map_err(std::io::Error::other)?)
        }
        AuditFormat::Csv => {
            let q = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
            writeln!(
                out,
                "{},{},{},{},{},{},{},{},{},{},{}",
                r.seq,
                time,
                op,
                q(&r.node),
                q(&r.officer),
                q(&r.alert_id),
                q(&recipients),
                outcome,
                q(&policies),
                q(&r.purpose),
                q(&detail)
            )
        }
        AuditFormat::Table => writeln!(
            out,
            "{:>6}  {:<24} {:<17} {:<10} {:<22} {:<38} {:<28} {:<8} {:<POLICIES_WIDTH$} {}",
            r.seq,
            time,
            op,
            r.node,
            r.officer,
            r.alert_id,
            recipients,
            outcome,
            truncate(&policies, POLICIES_WIDTH),
            detail
        ),
    }
}

/// A record's detail as listings show it: a LOG_READ's purpose, case and
/// export recipient first (`[lawfulness, case CNIL-2026-0113, to Tribunal
/// judiciaire de Lyon] Export of ...`).
pub fn audit_detail(r: &isx_core::wire::AuditRecord) -> String {
    if r.operation() != isx_core::wire::Operation::LogRead || r.purpose.is_empty() && r.case_reference.is_empty() {
        return r.detail.clone();
    }
    let mut why = vec![r.purpose.clone()];
    if !r.case_reference.is_empty() {
        why.push(format!("case {}", r.case_reference));
    }
    if !r.export_recipient.is_empty() {
        why.push(format!("to {}", r.export_recipient));
    }
    format!("[{}] {}", why.join(", "), r.detail)
}

/// The canonical name of a gRPC status code (`PERMISSION_DENIED`).
pub fn code_name(code: tonic::Code) -> &'static str {
    isx_node::code_name(code)
}

/// An error and its causes on one line, each cause once: a cause whose
/// text the line already holds (an error that prints its source, and also
/// returns it as its `source()`) is left out, and so is an empty one.
pub fn error_chain(e: &anyhow::Error) -> String {
    isx_node::error_chain(e.as_ref())
}

pub fn print_status(what: &str, status: &tonic::Status) {
    eprintln!("{what}: {}: {}", code_name(status.code()), status.message());
    let details = status.get_error_details();
    if let Some(bad) = details.bad_request() {
        for v in &bad.field_violations {
            eprintln!("  field {}: {}", v.field, v.description);
        }
    }
    if let Some(quota) = details.quota_failure() {
        for v in &quota.violations {
            eprintln!("  limit {}: {}", v.subject, v.description);
        }
    }
}

#[cfg(feature = "harness")]
pub fn print_bench(r: &isx_testkit::bench::BenchReport) {
    let names: Vec<&str> = r.phases.iter().map(|p| p.name()).collect();
    println!("phases: {}", names.join(", "));
    println!("{:<34} {:>14}  against", "figure", "value");
    let row = |name: &str, value: String, note: &str| println!("{name:<34} {value:>14}  {note}");
    if let Some(t) = &r.throughput {
        row("baseline_rps", format!("{:.0}", t.baseline_rps), "transport limit (no-op RPC, same mTLS channels)");
        if let (Some(rps), Some(ratio)) = (t.publish_rps, t.publish_ratio) {
            row("publish_rps", format!("{rps:.0}"), "durable, default policy, 4 recipients");
            row("publish_ratio", format!("{ratio:.3}"), "publish_rps / baseline_rps (target >= 0.25)");
        }
        if let (Some(rps), Some(ratio)) = (t.lookup_rps, t.lookup_ratio) {
            row("lookup_rps", format!("{rps:.0}"), "audited hit/no-hit by document, 1 match");
            row("lookup_ratio", format!("{ratio:.3}"), "lookup_rps / baseline_rps");
        }
        row("errors", t.errors.to_string(), "non-OK statuses");
    }
    if let Some(l) = &r.latency {
        let note = format!(
            "publish to delivery, {:.0}/s offered, {} delivered, {} shed, {} refused",
            l.e2e_offered_rps, l.e2e_delivered, l.e2e_shed, l.e2e_errors
        );
        row("e2e_p50_ms", format!("{:.2}", l.e2e_p50_ms), &note);
        row("e2e_p99_ms", format!("{:.2}", l.e2e_p99_ms), "(target <= 10 at 1000/s)");
        row("e2e_p999_ms", format!("{:.2}", l.e2e_p999_ms), "");
    }
    if let Some(m) = &r.memory {
        let note = format!(
            "process RSS with {} alerts queued for an offline node (before: {:.1} MB; target <= 150 at 100k)",
            m.rss_queued, m.rss_mb_before_queue
        );
        row("rss_mb_queued", format!("{:.1}", m.rss_mb_queued), &note);
    }
    if let Some(p) = &r.policy {
        row(
            "policy_decisions_per_s",
            format!("{:.0}", p.policy_decisions_per_s),
            "one recipient each, with redaction, cache warm",
        );
        row("policy_us_per_alert", format!("{:.1}", p.policy_us_per_alert), "five candidates per alert, cache warm");
        row(
            "policy_decisions_per_s_uncached",
            format!("{:.0}", p.policy_decisions_per_s_uncached),
            "decision cache off",
        );
        row("policy_us_per_alert_uncached", format!("{:.1}", p.policy_us_per_alert_uncached), "decision cache off");
        if let (Some(per), Some(share), Some(uncached)) =
            (p.publish_us_per_alert, p.policy_share_of_publish, p.policy_share_of_publish_uncached)
        {
            row("publish_us_per_alert", format!("{per:.1}"), "CPU time per publish at publish_rps");
            row("policy_share_of_publish", format!("{share:.3}"), "policy_us_per_alert / publish_us_per_alert");
            row("policy_share_of_publish_uncached", format!("{uncached:.3}"), "decision cache off");
        }
    }
    if let Some(w) = &r.witness {
        row("publish_rps_unwitnessed", format!("{:.0}", w.publish_rps_unwitnessed), "no witness policy");
        row("publish_rps_witnessed", format!("{:.0}", w.publish_rps_witnessed), "two witnesses, quorum both");
        row("witness_publish_ratio", format!("{:.3}", w.witness_publish_ratio), "witnessed / unwitnessed, same run");
        row("e2e_p99_ms_unwitnessed", format!("{:.2}", w.e2e_p99_ms_unwitnessed), "no witness policy");
        row("e2e_p99_ms_witnessed", format!("{:.2}", w.e2e_p99_ms_witnessed), "two witnesses, quorum both");
    }
    if let Some(a) = &r.amend {
        let direct = format!("Amend reply to all 4 direct recipients confirmed ({} amends)", a.amend_direct_samples);
        row("amend_direct_p50_ms", format!("{:.2}", a.amend_direct_p50_ms), &direct);
        row("amend_direct_p99_ms", format!("{:.2}", a.amend_direct_p99_ms), "");
        row(
            "amend_direct_per_s",
            format!("{:.0}", a.amend_direct_per_s),
            "amends confirmed by every recipient, per second",
        );
        let chain = format!(
            "Amend reply to every copy of a two-hop forward chain confirmed ({} copies, {} amends)",
            a.amend_chain_copies, a.amend_chain_samples
        );
        row("amend_chain_p50_ms", format!("{:.2}", a.amend_chain_p50_ms), &chain);
        row("amend_chain_p99_ms", format!("{:.2}", a.amend_chain_p99_ms), "");
        row("amend_chain_per_s", format!("{:.0}", a.amend_chain_per_s), "amends confirmed by every holder, per second");
        let withdraw = format!(
            "Withdraw reply to all 3 holders of the chain confirmed the deletion ({} withdrawals)",
            a.withdraw_chain_samples
        );
        row("withdraw_chain_p50_ms", format!("{:.2}", a.withdraw_chain_p50_ms), &withdraw);
        row("withdraw_chain_p99_ms", format!("{:.2}", a.withdraw_chain_p99_ms), "");
        row("amend_errors", a.amend_errors.to_string(), "refused, or not confirmed by every holder within 10 s");
    }
    if let Some(a) = &r.audit {
        row("audit_append_rps", format!("{:.0}", a.audit_append_rps), "group commit: flush + fsync per 64 records");
        row("sled_raw_rps", format!("{:.0}", a.sled_raw_rps), "same bytes, same flush policy");
        row(
            "audit_append_ratio",
            format!("{:.3}", a.audit_append_ratio),
            "audit_append_rps / sled_raw_rps (target >= 0.5)",
        );
        row(
            "audit_index_records_per_s",
            format!("{:.0}", a.audit_index_records_per_s),
            "records indexed for search, off the append path",
        );
        row("verify_records_per_s", format!("{:.0}", a.verify_records_per_s), "hash every record, recompute the root");
        for s in &a.log_sizes {
            row(&format!("proof_ms@{}", s.records), format!("{:.3}", s.proof_ms), "one inclusion proof");
            row(&format!("search_ms@{}", s.records), format!("{:.3}", s.search_ms), "one search, 20 results");
        }
        row(
            "search_growth",
            format!("{:.2}", a.search_growth),
            "search_ms at the largest size / at the smallest (target <= 2)",
        );
    }
}

/// Reads a typed person name (`flag` names the option in messages), and
/// tells on stderr how it was read when the text did not say it.
pub fn read_name(flag: &str, text: &str) -> anyhow::Result<isx_core::identifiers::NameReading> {
    let reading = isx_core::identifiers::read_name(text).map_err(|e| anyhow::anyhow!("{flag}: {e}"))?;
    if let Some(how) = reading.guessed {
        eprintln!(
            "{flag} {text:?} read as family name {:?}, given names {:?} ({how}); write \"FAMILY, Given\" to choose",
            reading.family, reading.given
        );
    }
    Ok(reading)
}

#[cfg(test)]
mod tests {
    /// An error that prints its source and also returns it, as a thiserror
    /// variant `#[error("audit keys: {0}")] X(#[from] E)` does.
    #[derive(Debug)]
    struct Wraps(std::io::Error);

    impl std::fmt::Display for Wraps {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "audit keys: /pki/audit.key: {}", self.0)
        }
    }

    impl std::error::Error for Wraps {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn an_error_chain_says_each_cause_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file or directory");
        let e = anyhow::Error::new(Wraps(io)).context("cannot start the gateway");
        assert_eq!(
            super::error_chain(&e),
            "cannot start the gateway: audit keys: /pki/audit.key: No such file or directory"
        );
        let e = anyhow::anyhow!("inner").context("outer");
        assert_eq!(super::error_chain(&e), "outer: inner", "distinct causes are all kept");
    }

    #[test]
    fn grpc_codes_have_their_canonical_names() {
        assert_eq!(super::code_name(tonic::Code::PermissionDenied), "PERMISSION_DENIED");
        assert_eq!(super::code_name(tonic::Code::InvalidArgument), "INVALID_ARGUMENT");
        assert_eq!(super::code_name(tonic::Code::Unauthenticated), "UNAUTHENTICATED");
        // Every code from 0 to 16: upper snake case of its Rust name.
        for n in 0..=16 {
            let code = tonic::Code::from_i32(n);
            let debug = format!("{code:?}");
            let mut snake = String::new();
            for (i, c) in debug.chars().enumerate() {
                if c.is_uppercase() && i > 0 {
                    snake.push('_');
                }
                snake.push(c.to_ascii_uppercase());
            }
            assert_eq!(super::code_name(code), snake, "{n}");
        }
    }
}
