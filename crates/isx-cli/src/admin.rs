//! `isx admin`: changes to what governs disclosure, each by a named
//! officer with a reason, and each recorded in the audit log.
//!
//! - `reload-policy`: the `Admin.ReloadPolicy` call, as a node with the
//!   `admin` role.
//! - `request-reload`: the request file a policy reload on `SIGHUP` needs
//!   (for an operator on the gateway's host, without an admin certificate).
//! - `hold`, `lift`, `holds`, `prune` (from `holds`): legal holds and
//!   online pruning by the retention rule.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Subcommand;
use isx_core::wire::ReloadPolicyRequest;
use isx_core::wire::admin_client::AdminClient;

use crate::alert::Who;
use crate::output;

#[derive(Subcommand, Debug)]
pub enum AdminCommand {
    /// Reload the gateway's policy directory (admin role), with your reason.
    ///
    /// The gateway reads its policy directory again. If it validates, its
    /// ADMINISTRATION record (old and new policy-set version, the policies
    /// added +id, removed -id or edited ~id, you as the officer, your reason
    /// sealed) is made durable, and then the new policy decides. If it does
    /// not, the refusal is recorded, the command prints the file and the
    /// error and exits 1, and the policy in force stays. Find the records
    /// with `isx audit search --operation administration`.
    ReloadPolicy {
        #[command(flatten)]
        who: Who,
        /// Why the policy changes, e.g. a change request's reference (recorded, sealed).
        #[arg(long)]
        reason: String,
    },
    /// Write the request file that a policy reload on SIGHUP needs, then send SIGHUP.
    ///
    /// A signal names no one, so the gateway reloads its policy on SIGHUP
    /// only if this file names the officer and the reason; it consumes the
    /// file, so every reload needs a new one, and without one the reload is
    /// refused and recorded. The file is `[admin] reload_request` of the
    /// gateway config (default DATA_DIR/reload-request.toml), written mode
    /// 0600; the gateway refuses one its group or others may read, one
    /// another user owns, a link, and one older than `[admin]
    /// reload_request_max_age` (1h). Run this as the gateway's user, then
    /// `kill -HUP <gateway pid>`. The revocation lists are re-read on every
    /// SIGHUP, with or without a request.
    RequestReload {
        /// The gateway config (its data directory and `[admin]` section).
        #[arg(long, short, default_value = "deploy/local/gateway.toml")]
        config: PathBuf,
        /// The data directory, if the gateway runs with `--data DIR`.
        #[arg(long)]
        data: Option<PathBuf>,
        /// The officer asking for the reload (recorded).
        #[arg(long, env = "ISX_OFFICER")]
        officer: String,
        /// Why the policy changes (recorded, sealed).
        #[arg(long)]
        reason: String,
    },
    /// Legal holds and online pruning: hold, lift, holds, prune.
    #[command(flatten)]
    Retention(crate::holds::RetentionCommand),
}

pub async fn run(cmd: AdminCommand) -> Result<ExitCode> {
    match cmd {
        AdminCommand::Retention(cmd) => crate::holds::run(cmd).await,
        AdminCommand::ReloadPolicy { who, reason } => {
            let client = isx_node::diagnose::connect(&who.options()?).await?;
            let mut admin = AdminClient::new(client.channel());
            match admin.reload_policy(client.request(ReloadPolicyRequest { reason })).await {
                Ok(answer) => {
                    let r = answer.into_inner();
                    if r.old_version == r.new_version {
                        println!("policy reloaded: version {} unchanged", r.new_version);
                    } else {
                        println!("policy reloaded: version {} -> {}", r.old_version, r.new_version);
                    }
                    if r.changed.is_empty() {
                        println!("no policy changed");
                    } else {
                        println!("changed: {} (+ added, - removed, ~ edited)", r.changed.join(" "));
                    }
                    println!("recorded at seq {}", r.record_seq);
                    Ok(ExitCode::SUCCESS)
                }
                Err(status) => {
                    output::print_status("policy reload refused", &status);
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        AdminCommand::RequestReload { config, data, officer, reason } => {
            let config = isx_gateway::GatewayConfig::load(&config)?;
            let data = data.unwrap_or_else(|| config.data_dir.clone());
            let path = config.admin.reload_request_path(&data);
            let request = isx_gateway::reload_request::ReloadRequest { officer, reason };
            isx_gateway::reload_request::write(&path, &request).context("the reload request was not written")?;
            println!("wrote {} (mode 0600) for {}", path.display(), request.officer);
            println!(
                "now send the gateway SIGHUP (kill -HUP <pid>) within {}: it consumes the file, reloads and records the reload",
                isx_audit::retention::span(
                    u64::try_from(config.admin.reload_request_max_age.as_millis()).unwrap_or(u64::MAX)
                )
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
