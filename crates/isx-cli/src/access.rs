//! `isx lookup` (and `isx lookup --open`, the node's open hits) and `isx
//! access request|decide|decline|list`: the hit/no-hit workflow, acting as
//! one node against a running gateway.

use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand, ValueEnum};
use isx_core::json::to_json_value;
use isx_core::wire::lookup_identifier::Kind;
use isx_core::wire::{AccessState, DocumentNumber, LookupIdentifier, PersonName};

use crate::alert::Who;
use crate::output;

/// Ask whether any alert matches an identifier: hit flags only, never data.
///
/// Give one or more identifiers. Each hit names the alert, the holder, the
/// crime area and the action, and a hit id to follow up with
/// `isx access request HIT_ID` or to close with `isx access decline HIT_ID`.
/// Matches that policy hides from you are not shown at all. The lookup is
/// logged with the types of identifier used, never their values.
///
/// With `--open`: your node's open hits instead, the hits shown to its
/// officers that nobody has requested or declined yet (CIR Art. 22(2)). Each
/// closes "without follow-up" at its alert's end or at the gateway's
/// `lookup.follow_up_deadline`, and that is recorded with the officer's name.
#[derive(Args, Debug)]
pub struct LookupArgs {
    #[command(flatten)]
    who: Who,
    /// List your node's open hits (no identifiers, purpose or justification needed).
    #[arg(long, conflicts_with_all = ["document", "name", "dob", "plate", "firearm", "purpose", "justification"])]
    open: bool,
    /// A document: ISSUING_COUNTRY:NUMBER, e.g. DE:C4J9X1R27 (repeatable).
    #[arg(long, value_name = "CC:NUMBER")]
    document: Vec<String>,
    /// A person: "FAMILY, Given names", "Given FAMILY" or "Given Family"; needs --dob.
    ///
    /// Without a comma, words in capitals are the family name, and two words
    /// are read as "Given Family"; the reading is printed. Three or more words
    /// with neither are refused: write the comma form.
    #[arg(long, value_name = "FAMILY, GIVEN", requires = "dob")]
    name: Option<String>,
    /// The person's date of birth, YYYY-MM-DD.
    #[arg(long, value_name = "YYYY-MM-DD", requires = "name")]
    dob: Option<String>,
    /// A vehicle registration plate (repeatable).
    #[arg(long)]
    plate: Vec<String>,
    /// A firearm serial number (repeatable).
    #[arg(long)]
    firearm: Vec<String>,
    /// Why you look up (logged).
    #[arg(long, required_unless_present = "open")]
    purpose: Option<String>,
    /// The case or reason that justifies it (logged).
    #[arg(long, required_unless_present = "open")]
    justification: Option<String>,
    /// Print the answer as JSON.
    #[arg(long)]
    json: bool,
}

impl LookupArgs {
    fn identifiers(&self) -> Result<Vec<LookupIdentifier>> {
        let mut ids = Vec::new();
        for d in &self.document {
            let (country, number) = d
                .split_once(':')
                .with_context(|| format!("--document {d:?}: use COUNTRY:NUMBER, e.g. DE:C4J9X1R27"))?;
            ids.push(Kind::Document(DocumentNumber { issuing_country: country.into(), number: number.into() }));
        }
        if let (Some(name), Some(dob)) = (&self.name, &self.dob) {
            let reading = crate::output::read_name("--name", name)?;
            ids.push(Kind::Person(PersonName {
                family_name: reading.family,
                given_names: reading.given,
                date_of_birth: dob.trim().into(),
            }));
        }
        ids.extend(self.plate.iter().map(|p| Kind::Plate(p.clone())));
        ids.extend(self.firearm.iter().map(|f| Kind::FirearmSerial(f.clone())));
        if ids.is_empty() {
            bail!(
                "give at least one identifier: --document CC:NUMBER, --name \"FAMILY, GIVEN\" --dob YYYY-MM-DD, --plate or --firearm"
            );
        }
        Ok(ids.into_iter().map(|k| LookupIdentifier { kind: Some(k) }).collect())
    }
}

#[derive(Subcommand, Debug)]
pub enum AccessCommand {
    /// Ask the holder of a hit for the alert, with a justification.
    ///
    /// The holder must decide before the gateway's deadline (48 hours by
    /// default). If it grants, the alert arrives on your subscription at the
    /// level policy allows you (`isx alert watch` or `isx node`).
    Request {
        #[command(flatten)]
        who: Who,
        /// The hit id from `isx lookup`.
        hit: String,
        /// Why you need the data (logged).
        #[arg(long)]
        purpose: String,
        /// The case or reason that justifies it (logged, shown to the holder).
        #[arg(long)]
        justification: String,
        /// Print the request as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Grant or deny a request for one of your alerts (holders only).
    Decide {
        #[command(flatten)]
        who: Who,
        /// The request id (ar-...), from `isx access list`.
        request: String,
        /// Grant: the requester receives the alert at the level policy allows.
        #[arg(long, conflicts_with = "deny", required_unless_present = "deny")]
        grant: bool,
        /// Deny: the requester receives nothing.
        #[arg(long)]
        deny: bool,
        /// Why (logged, shown to the requester).
        #[arg(long)]
        reason: String,
        /// Print the decided request as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Record why you do not follow a hit up (CIR Art. 22).
    Decline {
        #[command(flatten)]
        who: Who,
        /// The hit id from `isx lookup`.
        hit: String,
        /// Why the hit is not followed up (logged).
        #[arg(long)]
        reason: String,
    },
    /// List the requests you made (outgoing) and those you must decide (incoming).
    List {
        #[command(flatten)]
        who: Who,
        /// Only requests in this state.
        #[arg(long, value_enum)]
        state: Option<StateArg>,
        /// Print the list as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// An access request state, as the CLI spells it.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum StateArg {
    /// Waiting for the holder.
    Pending,
    /// Granted by the holder.
    Granted,
    /// Denied by the holder.
    Denied,
    /// Not decided before the deadline.
    Expired,
}

impl From<StateArg> for AccessState {
    fn from(s: StateArg) -> Self {
        match s {
            StateArg::Pending => AccessState::Pending,
            StateArg::Granted => AccessState::Granted,
            StateArg::Denied => AccessState::Denied,
            StateArg::Expired => AccessState::Expired,
        }
    }
}

fn refused(what: &str, status: &tonic::Status) -> Result<ExitCode> {
    output::print_status(what, status);
    Ok(ExitCode::FAILURE)
}

/// The open hits as a table: one row per hit, soonest to close first.
fn print_open_hits(hits: &[isx_core::wire::OpenHit]) {
    if hits.is_empty() {
        println!("no open hit: every hit shown to your officers was requested, declined or closed");
        return;
    }
    let time = |t: &Option<prost_types::Timestamp>| t.as_ref().map(isx_core::timestamp::rfc3339).unwrap_or_default();
    let rows: Vec<[String; 7]> = hits
        .iter()
        .map(|h| {
            [
                h.hit_id.clone(),
                h.alert_id.clone(),
                h.holder.clone(),
                isx_core::display::category(h.category()),
                h.officer.clone(),
                time(&h.shown_at),
                time(&h.closes_at),
            ]
        })
        .collect();
    let head = ["HIT", "ALERT", "HOLDER", "CATEGORY", "SHOWN TO", "SHOWN AT", "CLOSES AT"];
    let widths: Vec<usize> = (0..head.len())
        .map(|i| rows.iter().map(|r| r[i].chars().count()).chain([head[i].len()]).max().unwrap_or(0))
        .collect();
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        println!("{}", padded.join("  ").trim_end());
    };
    println!(
        "{} open hit(s); follow up with `isx access request HIT_ID`, or record `isx access decline HIT_ID`:",
        hits.len()
    );
    line(head.to_vec());
    for r in &rows {
        line(r.iter().map(String::as_str).collect());
    }
}

/// `isx lookup`.
pub async fn lookup(args: LookupArgs) -> Result<ExitCode> {
    if args.open {
        let client = isx_node::diagnose::connect(&args.who.options()?).await?;
        return match client.open_hits().await {
            Ok(hits) if args.json => {
                let hits: Vec<serde_json::Value> = hits.iter().map(to_json_value).collect();
                println!("{}", serde_json::to_string_pretty(&serde_json::json!({ "hits": hits }))?);
                Ok(ExitCode::SUCCESS)
            }
            Ok(hits) => {
                print_open_hits(&hits);
                Ok(ExitCode::SUCCESS)
            }
            Err(status) => refused("open hits refused", &status),
        };
    }
    let ids = args.identifiers()?;
    let (purpose, justification) = (args.purpose.unwrap_or_default(), args.justification.unwrap_or_default());
    let client = isx_node::diagnose::connect(&args.who.options()?).await?;
    match client.lookup(ids, &purpose, &justification).await {
        Ok(resp) if args.json => {
            println!("{}", serde_json::to_string_pretty(&to_json_value(&resp))?);
            Ok(ExitCode::SUCCESS)
        }
        Ok(resp) => {
            output::print_hits(&resp);
            Ok(ExitCode::SUCCESS)
        }
        Err(status) => refused("lookup refused", &status),
    }
}

/// `isx access ...`.
pub async fn run(cmd: AccessCommand) -> Result<ExitCode> {
    match cmd {
        AccessCommand::Request { who, hit, purpose, justification, json } => {
            let client = isx_node::diagnose::connect(&who.options()?).await?;
            match client.request_access(&hit, &purpose, &justification).await {
                Ok(r) => {
                    if json {
                        println!("{}", serde_json::to_string_pretty(&to_json_value(&r))?);
                    } else {
                        output::print_access(&r);
                        println!("the holder is notified; the alert arrives on your subscription if granted");
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Err(status) => refused("access request refused", &status),
            }
        }
        AccessCommand::Decide { who, request, grant, deny: _, reason, json } => {
            let client = isx_node::diagnose::connect(&who.options()?).await?;
            match client.decide_access(&request, grant, &reason).await {
                Ok(r) => {
                    if json {
                        println!("{}", serde_json::to_string_pretty(&to_json_value(&r))?);
                    } else {
                        output::print_access(&r);
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Err(status) => refused("decision refused", &status),
            }
        }
        AccessCommand::Decline { who, hit, reason } => {
            let client = isx_node::diagnose::connect(&who.options()?).await?;
            match client.decline_follow_up(&hit, &reason).await {
                Ok(()) => {
                    println!("recorded: hit {hit} is not followed up");
                    Ok(ExitCode::SUCCESS)
                }
                Err(status) => refused("decline refused", &status),
            }
        }
        AccessCommand::List { who, state, json } => {
            let client = isx_node::diagnose::connect(&who.options()?).await?;
            match client.list_access_requests(state.map(AccessState::from)).await {
                Ok(list) if json => {
                    println!("{}", serde_json::to_string_pretty(&to_json_value(&list))?);
                    Ok(ExitCode::SUCCESS)
                }
                Ok(list) => {
                    for (title, items) in
                        [("incoming (you decide)", &list.incoming), ("outgoing (you asked)", &list.outgoing)]
                    {
                        println!("{title}: {}", items.len());
                        for r in items {
                            output::print_access(r);
                        }
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Err(status) => refused("list refused", &status),
            }
        }
    }
}
