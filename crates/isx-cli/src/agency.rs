//! `isx agency show`: what a mock agency holds.
//!
//! A running agency holds its store's lock, so it is asked through its
//! inspect socket (`<data_dir>/inspect.sock`, [`isx_node::inspect`]); a
//! stopped one is read from its store directly, unsealed with the node's
//! store key from the PKI directory. Nothing is written either way.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use isx_core::display;
use isx_core::json::to_json_value;
use isx_core::timestamp::rfc3339;
use isx_core::wire::{AccessRequest, ReceivedAlert};
use isx_node::inspect::{self, InspectClient, InspectError};
use isx_node::{Inbox, NodeConfig};

use crate::output;

#[derive(Subcommand, Debug)]
pub enum AgencyCommand {
    /// Show what a mock agency holds: every alert it received (level,
    /// cursor, when, duplicates, the copy it holds) and its access requests.
    ///
    /// Each copy shows the alert's version it holds, whether the origin
    /// restricted it, and the last change applied (update, withdrawal,
    /// restriction, lift, expiry). A deleted copy (withdrawn, expired, or no
    /// longer allowed after an amendment) is a tombstone: its id, version,
    /// deletion time and last change, and no content.
    ///
    /// Asks the running agency through its inspect socket in its data
    /// directory; if the agency is stopped, reads its store directly (with
    /// the node's store key, PKI/NODE.store.key). Exits 1 if neither works.
    Show(ShowArgs),
}

#[derive(Args, Debug)]
pub struct ShowArgs {
    /// The node (e.g. fr-police); optional with --node-config.
    node: Option<String>,
    /// Take the node, its data directory and PKI from its node config file.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["data", "pki"])]
    node_config: Option<PathBuf>,
    /// The agency's data directory (e.g. DIR/data/fr-police after `isx up --dir DIR`).
    #[arg(long, value_name = "DIR", requires = "pki")]
    data: Option<PathBuf>,
    /// The PKI directory with the node's store key.
    #[arg(long, value_name = "DIR", env = "ISX_PKI")]
    pki: Option<PathBuf>,
    /// Only this alert, with the copy the agency holds in full.
    #[arg(long, value_name = "ID")]
    alert: Option<String>,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

/// Where the agency's data is.
struct Place {
    node: isx_core::NodeId,
    data: PathBuf,
    pki: PathBuf,
}

impl ShowArgs {
    fn place(&self) -> Result<Place> {
        if let Some(path) = &self.node_config {
            let config = NodeConfig::load(path)?;
            if let Some(node) = &self.node
                && node != config.id.as_str()
            {
                bail!("{} is the config of {}, not of {node}", path.display(), config.id);
            }
            return Ok(Place { node: config.id, data: config.data_dir, pki: config.pki_dir });
        }
        let node = self.node.clone().context("give NODE with --data DIR --pki DIR, or --node-config FILE")?;
        let node = isx_core::NodeId::new(node).context("NODE")?;
        let data = self.data.clone().context("--data DIR is required (or --node-config FILE)")?;
        let pki = self.pki.clone().context("--pki DIR is required (or ISX_PKI, or --node-config FILE)")?;
        Ok(Place { node, data, pki })
    }
}

/// What the agency holds, and where it was read from.
struct Holdings {
    source: String,
    received: Vec<ReceivedAlert>,
    requests: Vec<AccessRequest>,
}

async fn from_socket(client: &InspectClient, place: &Place, alert: Option<&str>) -> Result<Holdings> {
    let about = client.describe().await?;
    if about.node != place.node.as_str() {
        bail!("the agency on {} is {}, not {}", client.path().display(), about.node, place.node);
    }
    let received = match alert {
        Some(id) => client.get(id).await?.into_iter().map(inspect::to_wire).collect(),
        None => client.list().await?,
    };
    Ok(Holdings {
        source: format!("its running agency, through {}", client.path().display()),
        received,
        requests: client.access_requests().await?,
    })
}

fn from_store(place: &Place, alert: Option<&str>, socket: &InspectError) -> Result<Holdings> {
    let store = place.data.join("node.sled");
    if !store.exists() {
        bail!(
            "{} holds no agency store ({} does not exist) and {socket}: is --data the agency's own data directory?",
            place.data.display(),
            store.display()
        );
    }
    let key = isx_store::key_path(&place.pki, place.node.as_str());
    if !key.exists() {
        bail!(
            "{} is stopped and its store key {} does not exist: give the PKI directory it runs with",
            place.node,
            key.display()
        );
    }
    let inbox = match Inbox::open(&place.data, &key) {
        Ok(inbox) => inbox,
        Err(isx_store::StoreError::Open(isx_store::OpenError::Locked(_))) => bail!(
            "{}'s agency is running (its store {} is locked) but its inspect service does not answer ({socket}); restart the agency with this version of isx",
            place.node,
            store.display()
        ),
        Err(e) => return Err(e).with_context(|| format!("reading {}'s store", place.node)),
    };
    let received = match alert {
        Some(id) => inbox.get(id)?.into_iter().map(inspect::to_wire).collect(),
        None => inbox.list()?.into_iter().map(inspect::to_wire).collect(),
    };
    Ok(Holdings {
        source: format!("its store in {} (the agency is not running)", place.data.display()),
        received,
        requests: inbox.access_requests()?,
    })
}

/// A copy's state as `held`, `restricted` or `deleted`.
fn copy_state(r: &ReceivedAlert) -> &'static str {
    if r.deleted_at.is_some() {
        "deleted"
    } else if r.restricted {
        "restricted"
    } else {
        "held"
    }
}

fn json(place: &Place, h: &Holdings) -> serde_json::Value {
    let received: Vec<serde_json::Value> = h
        .received
        .iter()
        .map(|r| {
            let mut value = serde_json::json!({
                "alert_id": r.alert_id,
                "level": display::level(r.level()),
                "cursor": r.cursor,
                "received_at": r.received_at.as_ref().map(rfc3339).unwrap_or_default(),
                "duplicates": r.duplicates,
                "version": r.version,
                "state": copy_state(r),
                "restricted": r.restricted,
                "last_change": output::change_kind(r.last_change()),
            });
            if let Some(at) = &r.deleted_at {
                value["deleted_at"] = rfc3339(at).into();
            }
            if let Some(delivery) = &r.delivery {
                value["delivery"] = to_json_value(delivery);
            }
            value
        })
        .collect();
    let requests: Vec<serde_json::Value> = h.requests.iter().map(to_json_value).collect();
    serde_json::json!({
        "node": place.node.as_str(),
        "source": h.source,
        "received": received,
        "access_requests": requests,
    })
}

fn print(place: &Place, h: &Holdings, alert: Option<&str>) {
    println!("{} holds {} alert(s) (read from {})", place.node, h.received.len(), h.source);
    if let (Some(id), true) = (alert, h.received.is_empty()) {
        println!("  nothing of alert {id}");
    }
    for r in &h.received {
        let delivery = r.delivery.clone().unwrap_or_default();
        if delivery.alert.is_some() {
            print!("  ");
            output::print_delivery(r.cursor, &delivery);
        } else if let Some(at) = &r.deleted_at {
            println!("  [{}] {} deleted at {} (tombstone: no content)", r.cursor, r.alert_id, rfc3339(at));
        } else {
            println!("  [{}] {} not received yet (only the origin's mark is kept)", r.cursor, r.alert_id);
        }
        let mut copy = format!("version {}", r.version.max(1));
        if r.restricted {
            copy.push_str(", restricted (processing held by the origin)");
        }
        if r.last_change() != isx_core::wire::ChangeKind::Unspecified {
            copy.push_str(&format!(", last change {}", output::change_kind(r.last_change())));
        }
        println!("      {copy}");
        let mut facts = vec![format!("received {}", r.received_at.as_ref().map(rfc3339).unwrap_or_default())];
        if !delivery.policy_ids.is_empty() {
            facts.push(format!("decided by {}", delivery.policy_ids.join(", ")));
        }
        if !delivery.request_id.is_empty() {
            facts.push(format!("after access request {}", delivery.request_id));
        }
        if r.duplicates > 0 {
            facts.push(format!("{} duplicate(s) dropped", r.duplicates));
        }
        println!("      {}", facts.join("; "));
        if alert.is_some()
            && let Some(view) = &delivery.alert
        {
            println!("{}", isx_core::json::to_json(view));
        }
    }
    if alert.is_none() {
        println!("{} access request(s)", h.requests.len());
        for r in &h.requests {
            output::print_access(r);
        }
    }
}

pub async fn run(cmd: AgencyCommand) -> Result<ExitCode> {
    let AgencyCommand::Show(args) = cmd;
    let place = args.place()?;
    let socket = inspect::socket_path(&place.data);
    let alert = args.alert.as_deref();
    let holdings = match InspectClient::connect(&socket).await {
        Ok(client) => from_socket(&client, &place, alert).await?,
        Err(e) => match from_store(&place, alert, &e) {
            Ok(h) => h,
            Err(e) => {
                eprintln!("error: cannot show {}: {}", place.node, crate::output::error_chain(&e));
                return Ok(ExitCode::FAILURE);
            }
        },
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&json(&place, &holdings))?);
    } else {
        print(&place, &holdings, alert);
    }
    Ok(ExitCode::SUCCESS)
}
