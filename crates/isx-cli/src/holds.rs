//! `isx admin hold|lift|holds|prune`: legal holds and online pruning,
//! acting as a node with the `admin` role against a running gateway
//! (the `Admin` service). Each change is recorded by the gateway, with the
//! officer and the reason, before it answers.

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Subcommand;
use isx_core::json::to_json_value;
use isx_core::timestamp::{Bound, parse_bound, rfc3339};
use isx_core::wire::admin_client::AdminClient;
use isx_core::wire::{Hold, LiftHoldRequest, ListHoldsRequest, PlaceHoldRequest, PruneRequest};

use crate::alert::Who;
use crate::output;

/// Legal holds and retention pruning (nodes with the `admin` role).
#[derive(Subcommand, Debug)]
pub enum RetentionCommand {
    /// Place a legal hold: no record it covers is pruned until it is lifted.
    ///
    /// Give an alert, a node, a time range, or any combination: a record is
    /// held if it matches every one given (it names the alert; the node
    /// acted or received; its time is within --from and --to). Placing it
    /// is recorded (ADMINISTRATION, HOLD_PLACED) with your officer name and
    /// the reason, sealed.
    Hold {
        #[command(flatten)]
        who: Who,
        /// Records naming this alert (as a collection, a disclosure, a hit...).
        #[arg(long, value_name = "ALERT_ID")]
        alert: Option<String>,
        /// Records of this node: it acted or received.
        #[arg(long = "node", id = "hold_node", value_name = "NODE")]
        hold_node: Option<String>,
        /// Records from this time: RFC 3339 or YYYY-MM-DD (the day's start).
        #[arg(long, value_name = "TIME")]
        from: Option<String>,
        /// Records up to this time: RFC 3339 or YYYY-MM-DD (the day's end).
        #[arg(long, value_name = "TIME")]
        to: Option<String>,
        /// The case or proceedings the hold serves (no personal data).
        #[arg(long = "case", value_name = "REF")]
        case_reference: String,
        /// Why (kept sealed in the record).
        #[arg(long)]
        reason: String,
        /// Print the hold as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Lift a legal hold: what it kept is pruned by the rule again.
    Lift {
        #[command(flatten)]
        who: Who,
        /// The hold's id (hold-N), from `isx admin holds`.
        id: String,
        /// Why (kept sealed in the record).
        #[arg(long)]
        reason: String,
    },
    /// List the legal holds in force.
    Holds {
        #[command(flatten)]
        who: Who,
        /// Print the holds as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Prune what the retention rule allows now, online.
    ///
    /// Without --before it cuts at now minus `[audit] retention`; a date in
    /// the future or inside `retention_floor` is refused naming the rule. It
    /// stops at the first record kept (recent, of a live alert, or under a
    /// hold) and says which. Only record bodies go: every hash stays, so
    /// every earlier proof still verifies. The ERASURE record says what
    /// went, the rule, the cut-off, who ordered it and why (sealed).
    Prune {
        #[command(flatten)]
        who: Who,
        /// Prune only records before this time: RFC 3339 or YYYY-MM-DD.
        #[arg(long, value_name = "TIME")]
        before: Option<String>,
        /// Say what would go; change nothing, record nothing.
        #[arg(long)]
        dry_run: bool,
        /// Why (kept sealed in the ERASURE record).
        #[arg(long)]
        reason: String,
        /// Print the answer as JSON.
        #[arg(long)]
        json: bool,
    },
}

fn time(s: Option<&str>, flag: &str, bound: Bound) -> Result<Option<prost_types::Timestamp>> {
    s.map(|s| {
        parse_bound(s, bound)
            .with_context(|| format!("{flag} {s:?}: use RFC 3339 (2026-11-28T10:00:00Z) or YYYY-MM-DD"))
    })
    .transpose()
}

fn print_hold(h: &Hold) {
    println!("{}  {}", h.id, isx_audit::hold::scope(h));
    let at = h.placed_at.as_ref().map(rfc3339).unwrap_or_default();
    println!("  case {}; placed by {} at {at} (seq {})", h.case_reference, h.placed_by, h.placed_seq);
}

fn refused(what: &str, status: &tonic::Status) -> Result<ExitCode> {
    output::print_status(what, status);
    Ok(ExitCode::FAILURE)
}

/// `isx admin hold|lift|holds|prune`.
pub async fn run(cmd: RetentionCommand) -> Result<ExitCode> {
    let who = match &cmd {
        RetentionCommand::Hold { who, .. }
        | RetentionCommand::Lift { who, .. }
        | RetentionCommand::Holds { who, .. }
        | RetentionCommand::Prune { who, .. } => who,
    };
    let client = isx_node::diagnose::connect(&who.options()?).await?;
    let mut admin = AdminClient::new(client.channel());
    match cmd {
        RetentionCommand::Hold { who: _, alert, hold_node, from, to, case_reference, reason, json } => {
            let req = PlaceHoldRequest {
                alert_id: alert.unwrap_or_default(),
                node: hold_node.unwrap_or_default(),
                from: time(from.as_deref(), "--from", Bound::Start)?,
                to: time(to.as_deref(), "--to", Bound::End)?,
                case_reference,
                reason,
            };
            if req.alert_id.is_empty() && req.node.is_empty() && req.from.is_none() && req.to.is_none() {
                anyhow::bail!("give what the hold covers: --alert ALERT_ID, --node NODE, or --from/--to TIME");
            }
            match admin.place_hold(client.request(req)).await {
                Ok(h) if json => println!("{}", serde_json::to_string_pretty(&to_json_value(h.get_ref()))?),
                Ok(h) => {
                    print_hold(h.get_ref());
                    println!(
                        "placed (recorded at seq {}): no record it covers is pruned until it is lifted",
                        h.get_ref().placed_seq
                    );
                }
                Err(status) => return refused("hold refused", &status),
            }
        }
        RetentionCommand::Lift { who: _, id, reason } => {
            match admin.lift_hold(client.request(LiftHoldRequest { id, reason })).await {
                Ok(h) => {
                    print_hold(h.get_ref());
                    println!("lifted (recorded): what it kept is pruned by the retention rule again");
                }
                Err(status) => return refused("lift refused", &status),
            }
        }
        RetentionCommand::Holds { who: _, json } => match admin.list_holds(client.request(ListHoldsRequest {})).await {
            Ok(list) if json => println!("{}", serde_json::to_string_pretty(&to_json_value(list.get_ref()))?),
            Ok(list) => {
                let holds = &list.get_ref().holds;
                println!("legal holds in force: {}", holds.len());
                holds.iter().for_each(print_hold);
            }
            Err(status) => return refused("holds refused", &status),
        },
        RetentionCommand::Prune { who: _, before, dry_run, reason, json } => {
            let req = PruneRequest { reason, before: time(before.as_deref(), "--before", Bound::Start)?, dry_run };
            match admin.prune(client.request(req)).await {
                Ok(r) if json => println!("{}", serde_json::to_string_pretty(&to_json_value(r.get_ref()))?),
                Ok(r) => {
                    let r = r.get_ref();
                    let verb = if dry_run { "would prune" } else { "pruned" };
                    println!("{verb} {} record bodies: seq [{}, {})", r.upto - r.from, r.from, r.upto);
                    println!("cut-off {}", r.cutoff.as_ref().map(rfc3339).unwrap_or_default());
                    println!("stops because {}", r.stopped_by);
                    println!("rule: {}", r.rule);
                    if dry_run {
                        println!("dry run: nothing written");
                    } else if r.record_seq > 0 {
                        println!("hashes kept; erasure recorded at seq {}", r.record_seq);
                    } else {
                        println!("nothing to prune: nothing recorded");
                    }
                }
                Err(status) => return refused("prune refused", &status),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
