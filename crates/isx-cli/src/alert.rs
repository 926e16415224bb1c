//! `isx alert send|watch|allow-onward`: act as one node against a running
//! gateway; `isx alert amend|withdraw|restrict|lift|status`: the origin
//! changes an alert everywhere it went and sees who confirmed.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use isx_core::json::{from_json, to_json_value};
use isx_core::wire::subscribe_response::Event;
use isx_core::wire::{Alert, AlertStatus};
use isx_node::{ClientOptions, NodeConfig};

use crate::output;

#[derive(Subcommand, Debug)]
pub enum AlertCommand {
    /// Publish an alert read from a JSON file (canonical protobuf JSON) and print the receipt.
    ///
    /// Exits 0 when the gateway accepted the alert (also when it was a
    /// duplicate of an earlier publish), 1 when it refused it.
    Send {
        #[command(flatten)]
        who: Who,
        /// Print the receipt as JSON.
        #[arg(long)]
        json: bool,
        /// The alert file; `-` reads standard input.
        file: PathBuf,
    },
    /// Print deliveries (and access requests and outcomes) for a node as they arrive, acknowledging each one.
    ///
    /// Runs until Ctrl-C, or until --count deliveries have arrived.
    Watch {
        #[command(flatten)]
        who: Who,
        /// Print each delivery as one JSON line.
        #[arg(long)]
        json: bool,
        /// Do not acknowledge: the deliveries stay queued at the gateway.
        #[arg(long)]
        no_ack: bool,
        /// Start after this cursor (0: the oldest unacknowledged delivery).
        #[arg(long, default_value_t = 0)]
        after: u64,
        /// Stop after this many deliveries.
        #[arg(long)]
        count: Option<u64>,
    },
    /// As an alert's origin, let named organisations receive onward copies
    /// (relays) of it.
    ///
    /// TLP 2.0: a TLP:AMBER alert stays with its recipient organisations; a
    /// recipient's relay reaches a new organisation only if the origin allows
    /// it, here or with `labels.onward` at publish. H2, TLP:RED and
    /// TLP:AMBER+STRICT are never relayed to anyone new. Recorded as an
    /// ALTERATION with the officer and the reason.
    AllowOnward {
        #[command(flatten)]
        who: Who,
        /// The alert (one of the caller's own).
        alert_id: String,
        /// A registered node that may receive onward copies (repeatable).
        #[arg(long = "to", value_name = "NODE", required = true)]
        to: Vec<String>,
        /// Why (recorded).
        #[arg(long)]
        reason: String,
    },
    /// Publish a corrected version of one of your alerts, from a JSON file
    ///
    /// The file holds the whole corrected alert, with the same alert_id.
    /// Policy decides every earlier recipient's level again on the new
    /// version: each gets an update with its new view, or a withdrawal if it
    /// may no longer see the alert; a node the new version newly reaches
    /// gets a delivery. Recorded as an ALTERATION with the old and new
    /// digests, the officer and the reason. --replaces-version must be the
    /// current version (see `isx alert status ID`). Prints the new receipt;
    /// exits 1 when refused.
    ///
    /// Example:
    ///   isx alert amend corrected.json --replaces-version 1 \
    ///     --reason "plate corrected after the ANPR check" \
    ///     --node-config deploy/local/nodes/fr-police.toml
    #[command(verbatim_doc_comment)]
    Amend {
        #[command(flatten)]
        who: Who,
        /// The corrected alert (canonical protobuf JSON); `-` reads standard input.
        file: PathBuf,
        /// The version it replaces: the alert's current version.
        #[arg(long, value_name = "N")]
        replaces_version: u32,
        /// Why the alert is corrected (recorded, sealed).
        #[arg(long)]
        reason: String,
        /// Print the receipt as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Withdraw one of your alerts: every copy is to be deleted
    ///
    /// Onward copies along the forward chain are deleted too. The alert then never matches a lookup and cannot be amended or
    /// published again under its id. Recorded as an ERASURE with the
    /// officer and the reason. Prints every copy and whether its holder
    /// has confirmed the deletion yet (follow up with `isx alert status ID`).
    ///
    /// Example:
    ///   isx alert withdraw 01JDQ3C9V8W7X6Y5Z4A3B2C1D0 \
    ///     --reason "wrong person: identity mix-up" \
    ///     --node-config deploy/local/nodes/fr-police.toml
    #[command(verbatim_doc_comment)]
    Withdraw {
        #[command(flatten)]
        who: Who,
        /// The alert (one of the caller's own).
        alert_id: String,
        /// Why it is withdrawn (recorded, sealed).
        #[arg(long)]
        reason: String,
        /// Print the alert's status as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Restrict one of your alerts while it is checked (LED Art. 16(3))
    ///
    /// Undelivered copies are held, lookups stop showing it, access
    /// requests on it are refused, and every recipient marks its copy
    /// restricted. Lift it with `isx alert lift`. Recorded as an ALTERATION.
    ///
    /// Example:
    ///   isx alert restrict 01JDQ3C9V8W7X6Y5Z4A3B2C1D0 \
    ///     --reason "accuracy contested by the data subject" \
    ///     --node-config deploy/local/nodes/fr-police.toml
    #[command(verbatim_doc_comment)]
    Restrict {
        #[command(flatten)]
        who: Who,
        /// The alert (one of the caller's own).
        alert_id: String,
        /// Why processing is restricted (recorded, sealed).
        #[arg(long)]
        reason: String,
        /// Print the alert's status as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Lift the restriction of one of your alerts
    ///
    /// Held deliveries go out, lookups show it again, and every recipient
    /// unmarks its copy. Recorded as an ALTERATION.
    ///
    /// Example:
    ///   isx alert lift 01JDQ3C9V8W7X6Y5Z4A3B2C1D0 --reason "accuracy confirmed" \
    ///     --node-config deploy/local/nodes/fr-police.toml
    #[command(verbatim_doc_comment)]
    Lift {
        #[command(flatten)]
        who: Who,
        /// The alert (one of the caller's own).
        alert_id: String,
        /// Why the restriction is lifted (recorded, sealed).
        #[arg(long)]
        reason: String,
        /// Print the alert's status as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show one of your alerts' versions and who confirmed its last change
    ///
    /// One line per copy: the holder, its level, the last change sent, the
    /// version and state expected, what the holder confirmed and when, and
    /// whether it is overdue (not confirmed within the gateway's
    /// `lifecycle.confirm_grace`).
    ///
    /// Exits 0 when every copy confirmed its last change, 3 when some have
    /// not yet (none overdue), 4 when some are overdue, 1 when refused.
    ///
    /// Example:
    ///   isx alert status 01JDQ3C9V8W7X6Y5Z4A3B2C1D0 --json \
    ///     --node-config deploy/local/nodes/fr-police.toml
    #[command(verbatim_doc_comment)]
    Status {
        #[command(flatten)]
        who: Who,
        /// The alert (one of the caller's own).
        alert_id: String,
        /// Print the status as JSON (isx.v1.AlertStatus).
        #[arg(long)]
        json: bool,
    },
}

/// Exit status of `isx alert status` when some copies have not confirmed yet.
const EXIT_UNCONFIRMED: u8 = 3;
/// Exit status of `isx alert status` when some copies are overdue.
const EXIT_OVERDUE: u8 = 4;

/// Who acts, and where the gateway is.
///
/// `ISX_AS`, `ISX_PKI`, `ISX_GATEWAY` and `ISX_OFFICER` stand in for the
/// flags of the same names, so a tester can `export` them once. A flag on the
/// command line wins over its variable. With `--node-config` the node and its
/// PKI come from the file (`--as` and `--pki` are refused with it; `ISX_AS`
/// and `ISX_PKI` left in the environment are ignored, which is why those two
/// are read here rather than by clap, whose conflict check would count
/// them), and `--gateway`/`ISX_GATEWAY` and `--officer`/`ISX_OFFICER`
/// override the file's.
#[derive(Args, Debug)]
pub struct Who {
    /// Take --as, --pki, --gateway and --officer from a node config file.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["node", "pki"])]
    node_config: Option<PathBuf>,
    /// The node to act as (or ISX_AS); its certificate is PKI/NODE.crt.
    #[arg(long = "as", value_name = "NODE")]
    node: Option<String>,
    /// The PKI directory (or ISX_PKI).
    #[arg(long, value_name = "DIR")]
    pki: Option<PathBuf>,
    /// The gateway's host:port [default: the node config's, or localhost:7443].
    #[arg(long, value_name = "ADDR", env = "ISX_GATEWAY")]
    gateway: Option<String>,
    /// The officer acting (sent as x-isx-officer); defaults to the node config's officer.
    #[arg(long, env = "ISX_OFFICER")]
    officer: Option<String>,
}

/// The gateway address when neither `--gateway`, `ISX_GATEWAY` nor a node config gives one.
pub const DEFAULT_GATEWAY: &str = "localhost:7443";

/// A non-empty environment variable.
fn env(name: &str) -> Option<std::ffi::OsString> {
    std::env::var_os(name).filter(|v| !v.is_empty())
}

impl Who {
    /// True if an identity is given at all (--node-config, --as or ISX_AS).
    pub fn given(&self) -> bool {
        self.node_config.is_some() || self.node.is_some() || env("ISX_AS").is_some()
    }

    pub fn options(&self) -> Result<ClientOptions> {
        if let Some(path) = &self.node_config {
            let config = NodeConfig::load(path)?;
            return Ok(ClientOptions {
                node: config.id,
                pki_dir: config.pki_dir,
                gateway: self.gateway.clone().unwrap_or(config.gateway),
                officer: self.officer.clone().unwrap_or(config.officer),
            });
        }
        let node = match &self.node {
            Some(n) => n.clone(),
            None => env("ISX_AS")
                .context("--as NODE is required (or ISX_AS, or --node-config FILE)")?
                .into_string()
                .map_err(|_| anyhow::anyhow!("ISX_AS is not valid UTF-8"))?,
        };
        let node = isx_core::NodeId::new(node).context("--as")?;
        let pki = match &self.pki {
            Some(p) => p.clone(),
            None => env("ISX_PKI")
                .map(PathBuf::from)
                .context("--pki DIR is required (or ISX_PKI, or --node-config FILE)")?,
        };
        let officer = self.officer.clone().context("--officer is required (or ISX_OFFICER, or --node-config with an officer): it names the person acting, for the audit log")?;
        let gateway = self.gateway.clone().unwrap_or_else(|| DEFAULT_GATEWAY.to_owned());
        Ok(ClientOptions { node, pki_dir: pki, gateway, officer })
    }
}

fn read_alert(file: &PathBuf) -> Result<Alert> {
    let (text, name) = if file.as_os_str() == "-" {
        (std::io::read_to_string(std::io::stdin()).context("reading standard input")?, "<stdin>".to_owned())
    } else {
        (
            std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?,
            file.display().to_string(),
        )
    };
    Ok(from_json::<Alert>(&text, &name)?)
}

/// Prints what a withdraw, restrict or lift answered: the alert's status,
/// or the refusal in plain words.
fn changed(
    what: output::Lifecycle,
    alert_id: &str,
    node: &isx_core::NodeId,
    answer: Result<AlertStatus, tonic::Status>,
    json: bool,
) -> Result<ExitCode> {
    match answer {
        Ok(status) if json => {
            println!("{}", serde_json::to_string_pretty(&to_json_value(&status))?);
            Ok(ExitCode::SUCCESS)
        }
        Ok(status) => {
            println!("alert {alert_id} {}; every holder is told and confirms once applied", what.done());
            output::print_alert_status(&status);
            println!("follow the confirmations with `isx alert status {alert_id}`");
            Ok(ExitCode::SUCCESS)
        }
        Err(status) => {
            output::print_lifecycle_refusal(what, alert_id, node, &status);
            Ok(ExitCode::FAILURE)
        }
    }
}

pub async fn run(cmd: AlertCommand) -> Result<ExitCode> {
    match cmd {
        AlertCommand::Send { who, json, file } => {
            let alert = read_alert(&file)?;
            let client = isx_node::diagnose::connect(&who.options()?).await?;
            match client.publish(alert).await {
                Ok(resp) => {
                    let receipt = resp.receipt.unwrap_or_default();
                    if json {
                        let mut value = to_json_value(&receipt);
                        value["duplicate"] = serde_json::Value::Bool(resp.duplicate);
                        println!("{}", serde_json::to_string_pretty(&value)?);
                    } else {
                        output::print_receipt(&receipt, resp.duplicate);
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Err(status) => {
                    output::print_status("publish refused", &status);
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        AlertCommand::AllowOnward { who, alert_id, to, reason } => {
            let client = isx_node::diagnose::connect(&who.options()?).await?;
            match client.allow_onward(&alert_id, &to, &reason).await {
                Ok(allowed) => {
                    println!("onward copies of {alert_id} allowed to: {}", allowed.join(", "));
                    Ok(ExitCode::SUCCESS)
                }
                Err(status) => {
                    output::print_status("allow-onward refused", &status);
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        AlertCommand::Amend { who, file, replaces_version, reason, json } => {
            let alert = read_alert(&file)?;
            let alert_id = alert.alert_id.clone();
            let client = isx_node::diagnose::connect(&who.options()?).await?;
            match client.amend(alert, replaces_version, &reason).await {
                Ok(resp) => {
                    let receipt = resp.receipt.unwrap_or_default();
                    if json {
                        let mut value = to_json_value(&receipt);
                        value["duplicate"] = serde_json::Value::Bool(resp.duplicate);
                        println!("{}", serde_json::to_string_pretty(&value)?);
                    } else {
                        output::print_receipt(&receipt, resp.duplicate);
                        println!("follow the confirmations with `isx alert status {alert_id}`");
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Err(status) => {
                    output::print_lifecycle_refusal(output::Lifecycle::Amend, &alert_id, client.node(), &status);
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        AlertCommand::Withdraw { who, alert_id, reason, json } => {
            let client = isx_node::diagnose::connect(&who.options()?).await?;
            let answer = client.withdraw(&alert_id, &reason).await;
            changed(output::Lifecycle::Withdraw, &alert_id, client.node(), answer, json)
        }
        AlertCommand::Restrict { who, alert_id, reason, json } => {
            let client = isx_node::diagnose::connect(&who.options()?).await?;
            let answer = client.restrict(&alert_id, &reason).await;
            changed(output::Lifecycle::Restrict, &alert_id, client.node(), answer, json)
        }
        AlertCommand::Lift { who, alert_id, reason, json } => {
            let client = isx_node::diagnose::connect(&who.options()?).await?;
            let answer = client.lift_restriction(&alert_id, &reason).await;
            changed(output::Lifecycle::Lift, &alert_id, client.node(), answer, json)
        }
        AlertCommand::Status { who, alert_id, json } => {
            let client = isx_node::diagnose::connect(&who.options()?).await?;
            match client.alert_status(&alert_id).await {
                Ok(status) => {
                    if json {
                        println!("{}", serde_json::to_string_pretty(&to_json_value(&status))?);
                    } else {
                        output::print_alert_status(&status);
                    }
                    Ok(if status.copies.iter().any(|c| c.overdue) {
                        ExitCode::from(EXIT_OVERDUE)
                    } else if status.copies.iter().any(|c| !c.settled) {
                        ExitCode::from(EXIT_UNCONFIRMED)
                    } else {
                        ExitCode::SUCCESS
                    })
                }
                Err(status) => {
                    output::print_lifecycle_refusal(output::Lifecycle::Status, &alert_id, client.node(), &status);
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        AlertCommand::Watch { who, json, no_ack, after, count } => {
            let client = isx_node::diagnose::connect(&who.options()?).await?;
            let mut stream = client
                .subscribe(after)
                .await
                .map_err(|s| anyhow::anyhow!("subscribe refused: {} ({})", s.message(), output::code_name(s.code())))?;
            if !json {
                eprintln!("watching deliveries for {} (Ctrl-C to stop)", client.node());
            }
            let mut seen = 0u64;
            loop {
                let msg = tokio::select! {
                    _ = tokio::signal::ctrl_c() => break,
                    m = stream.message() => m,
                };
                let Some(msg) = msg
                    .map_err(|s| anyhow::anyhow!("stream ended: {} ({})", s.message(), output::code_name(s.code())))?
                else {
                    break;
                };
                let mut value = match msg.event {
                    Some(Event::Delivery(delivery)) => {
                        if !json {
                            output::print_delivery(msg.cursor, &delivery);
                        }
                        to_json_value(&delivery)
                    }
                    Some(Event::AccessRequest(r)) | Some(Event::AccessOutcome(r)) => {
                        if !json {
                            output::print_access(&r);
                        }
                        serde_json::json!({ "access_request": to_json_value(&r) })
                    }
                    Some(Event::Change(c)) => {
                        if !json {
                            println!(
                                "[{}] change: {} {} -> version {} {}",
                                msg.cursor,
                                c.alert_id,
                                c.kind().as_str_name(),
                                c.version,
                                c.state().as_str_name()
                            );
                        }
                        serde_json::json!({ "change": to_json_value(&c) })
                    }
                    None => continue,
                };
                if json {
                    value["cursor"] = serde_json::Value::String(msg.cursor.to_string());
                    println!("{}", serde_json::to_string(&value)?);
                }
                if !no_ack {
                    client.ack(msg.cursor).await.map_err(|s| anyhow::anyhow!("ack refused: {}", s.message()))?;
                }
                seen += 1;
                if count.is_some_and(|c| seen >= c) {
                    break;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
