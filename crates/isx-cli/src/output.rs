//! Human-readable printing of receipts, deliveries, node events and errors.

use isx_core::display;
use isx_core::timestamp::rfc3339;
use isx_core::wire::{Delivery, Receipt};
use isx_node::NodeEvent;
use tonic_types::StatusExt;

pub fn print_receipt(receipt: &Receipt, duplicate: bool) {
    let when = receipt.accepted_at.as_ref().map(rfc3339).unwrap_or_default();
    let note = if duplicate { " (already published: original receipt)" } else { "" };
    println!("alert {} accepted at {when}{note}", receipt.alert_id);
    println!("content digest sha256:{}  hops {}", receipt.content_digest, receipt.hops);
    println!("{:<14} {:<10} policies", "recipient", "level");
    for r in &receipt.recipients {
        println!("{:<14} {:<10} {}", r.node, display::level(r.level()), r.policy_ids.join(", "));
        if !r.removed_fields.is_empty() {
            println!("{:<14} {:<10} withheld: {}", "", "", r.removed_fields.join(", "));
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
    }
}

pub fn print_status(what: &str, status: &tonic::Status) {
    eprintln!("{what}: {:?}: {}", status.code(), status.message());
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

pub fn print_bench(r: &isx_testkit::bench::BenchReport) {
    println!("{:<34} {:>14}  against", "figure", "value");
    println!("{:<34} {:>14.0}  transport limit (no-op RPC, same mTLS channels)", "baseline_rps", r.baseline_rps);
    println!("{:<34} {:>14.0}  durable, default policy, 4 recipients", "publish_rps", r.publish_rps);
    println!("{:<34} {:>14.3}  publish_rps / baseline_rps", "publish_ratio", r.publish_ratio);
    println!("{:<34} {:>14.0}  audited hit/no-hit by document, 1 match", "lookup_rps", r.lookup_rps);
    println!("{:<34} {:>14.3}  lookup_rps / baseline_rps", "lookup_ratio", r.lookup_ratio);
    println!(
        "{:<34} {:>14.2}  publish to delivery, {:.0}/s offered, {} delivered, {} shed",
        "e2e_p50_ms", r.e2e_p50_ms, r.e2e_offered_rps, r.e2e_delivered, r.e2e_shed
    );
    println!("{:<34} {:>14.2}", "e2e_p99_ms", r.e2e_p99_ms);
    println!("{:<34} {:>14.2}", "e2e_p999_ms", r.e2e_p999_ms);
    println!(
        "{:<34} {:>14.1}  process RSS with {} alerts queued for an offline node (before: {:.1} MB)",
        "rss_mb_queued", r.rss_mb_queued, r.rss_queued, r.rss_mb_before_queue
    );
    println!(
        "{:<34} {:>14.0}  one recipient each, with redaction, cache warm",
        "policy_decisions_per_s", r.policy_decisions_per_s
    );
    println!("{:<34} {:>14.1}  five candidates per alert, cache warm", "policy_us_per_alert", r.policy_us_per_alert);
    println!("{:<34} {:>14.1}  CPU time per publish at publish_rps", "publish_us_per_alert", r.publish_us_per_alert);
    println!(
        "{:<34} {:>14.3}  policy_us_per_alert / publish_us_per_alert",
        "policy_share_of_publish", r.policy_share_of_publish
    );
    println!(
        "{:<34} {:>14.0}  decision cache off",
        "policy_decisions_per_s_uncached", r.policy_decisions_per_s_uncached
    );
    println!("{:<34} {:>14.1}  decision cache off", "policy_us_per_alert_uncached", r.policy_us_per_alert_uncached);
    println!(
        "{:<34} {:>14.3}  decision cache off",
        "policy_share_of_publish_uncached", r.policy_share_of_publish_uncached
    );
    println!("{:<34} {:>14}  non-OK statuses", "errors", r.errors);
    let a = &r.audit;
    println!("{:<34} {:>14.0}  group commit: flush + fsync per 64 records", "audit_append_rps", a.audit_append_rps);
    println!("{:<34} {:>14.0}  same bytes, same flush policy", "sled_raw_rps", a.sled_raw_rps);
    println!("{:<34} {:>14.3}  audit_append_rps / sled_raw_rps", "audit_append_ratio", a.audit_append_ratio);
    println!("{:<34} {:>14.0}  hash every record, recompute the root", "verify_records_per_s", a.verify_records_per_s);
    for (size, proof, search) in &a.sizes {
        println!("{:<34} {:>14.3}  inclusion proof at {size} records", format!("proof_ms@{size}"), proof);
        println!("{:<34} {:>14.3}  search, 20 results, at {size} records", format!("search_ms@{size}"), search);
    }
}
