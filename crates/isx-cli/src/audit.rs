//! `isx audit search|checkpoint|verify|export|prune`: for auditors.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use isx_core::json::{from_json, to_json};
use isx_core::timestamp::{from_datetime, rfc3339};
use isx_core::wire::{AuditBundle, AuditEntry, Checkpoint, Operation, SearchRequest};
use isx_node::Client;
use isx_node::audit as client_audit;

use crate::alert::Who;

#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// Search the audit log (auditor role). Each result is checked against its inclusion proof.
    Search {
        #[command(flatten)]
        who: Who,
        #[command(flatten)]
        filter: FilterArgs,
        /// Print one JSON object per line.
        #[arg(long, conflicts_with = "csv")]
        json: bool,
        /// Print CSV with a header line.
        #[arg(long)]
        csv: bool,
        /// Most results to print.
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Print the gateway's latest signed checkpoint; --out saves it for a later `verify --since-checkpoint`.
    Checkpoint {
        #[command(flatten)]
        who: Who,
        /// Save the checkpoint (JSON) to this file.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Verify the log: of a running gateway, or of an exported bundle (--bundle, no gateway needed).
    ///
    /// Against a gateway: every record is hashed again, the tree is recomputed
    /// and compared with the signed checkpoint, the checkpoint is shown to
    /// extend the one saved with --since-checkpoint, and every index is
    /// compared with the records. Exits 1 on any mismatch.
    Verify {
        #[command(flatten)]
        who: Who,
        /// Verify this exported bundle offline instead.
        #[arg(long)]
        bundle: Option<PathBuf>,
        /// A checkpoint saved earlier (`isx audit checkpoint --out`); the log must extend it.
        #[arg(long)]
        since_checkpoint: Option<PathBuf>,
        /// The gateway's audit verifier key (audit.pub): the checkpoint must be signed with it.
        #[arg(long)]
        key: Option<PathBuf>,
    },
    /// Export records with their inclusion proofs and the checkpoint: a self-contained bundle.
    Export {
        #[command(flatten)]
        who: Who,
        #[command(flatten)]
        filter: FilterArgs,
        /// Where to write the bundle (JSON).
        #[arg(long)]
        out: PathBuf,
    },
    /// Retention: remove record bodies and index rows before DATE, keeping every hash (gateway stopped).
    ///
    /// Works on the gateway's data directory, so the gateway must not be
    /// running. Every earlier proof still verifies; one erasure record is
    /// appended and a new checkpoint is signed.
    Prune {
        /// The gateway config (data and PKI directories).
        #[arg(long, short, default_value = "deploy/local/gateway.toml")]
        config: PathBuf,
        /// Remove records created before this date (YYYY-MM-DD, UTC).
        #[arg(long)]
        before: String,
        /// The officer ordering the erasure (recorded).
        #[arg(long, env = "ISX_OFFICER")]
        officer: String,
    },
}

/// Search filters; all given must match.
#[derive(Args, Debug, Clone, Default)]
pub struct FilterArgs {
    /// A subject's document: COUNTRY:NUMBER, e.g. DE:C4J9X1R27 (hashed by the gateway).
    #[arg(long)]
    document: Option<String>,
    /// A subject's name as "FAMILY, GIVEN" (with --dob).
    #[arg(long, requires = "dob")]
    name: Option<String>,
    /// The subject's date of birth, YYYY-MM-DD (with --name).
    #[arg(long, requires = "name")]
    dob: Option<String>,
    /// A vehicle plate.
    #[arg(long)]
    plate: Option<String>,
    /// A subject pseudonym (64 hex digits) as found in records.
    #[arg(long)]
    pseudonym: Option<String>,
    /// The acting node.
    #[arg(long = "node")]
    by_node: Option<String>,
    /// The officer (as named in x-isx-officer).
    #[arg(long = "by-officer")]
    by_officer: Option<String>,
    /// An alert id (also finds the lookups that matched it).
    #[arg(long)]
    alert: Option<String>,
    /// An access request id (ar-...): its request, decision and disclosure.
    #[arg(long)]
    request: Option<String>,
    /// collection, disclosure, denial, consultation, access_request, access_decision, follow_up_declined, alteration, erasure, log_read.
    #[arg(long)]
    operation: Option<String>,
    /// The stated purpose.
    #[arg(long)]
    purpose: Option<String>,
    /// From this time (RFC 3339 or YYYY-MM-DD).
    #[arg(long)]
    from: Option<String>,
    /// Up to this time (RFC 3339 or YYYY-MM-DD).
    #[arg(long)]
    to: Option<String>,
    /// Why you search (recorded with the read).
    #[arg(long, default_value = "")]
    justification: String,
}

fn parse_time(s: &str, flag: &str) -> Result<prost_types::Timestamp> {
    use time::format_description::well_known::Rfc3339;
    let dt = time::OffsetDateTime::parse(s, &Rfc3339)
        .or_else(|_| time::OffsetDateTime::parse(&format!("{s}T00:00:00Z"), &Rfc3339))
        .with_context(|| format!("{flag} {s:?}: use RFC 3339 (2026-11-28T10:00:00Z) or YYYY-MM-DD"))?;
    Ok(from_datetime(dt))
}

impl FilterArgs {
    fn request(&self) -> Result<SearchRequest> {
        let identifier = match (&self.document, &self.name, &self.plate) {
            (Some(d), None, None) => {
                let (c, n) = d.split_once(':').context("--document: use COUNTRY:NUMBER, e.g. DE:C4J9X1R27")?;
                format!("document:{c}:{n}")
            }
            (None, Some(n), None) => {
                let (family, given) = n.split_once(',').unwrap_or((n, ""));
                format!("name:{}|{}|{}", family.trim(), given.trim(), self.dob.clone().unwrap_or_default())
            }
            (None, None, Some(p)) => format!("plate:{p}"),
            (None, None, None) => String::new(),
            _ => bail!("give one of --document, --name with --dob, or --plate"),
        };
        let operation = match &self.operation {
            Some(op) => Operation::from_str_name(&format!("OPERATION_{}", op.to_ascii_uppercase()))
                .with_context(|| format!("--operation {op:?}: use collection, disclosure, denial, consultation, access_request, access_decision, follow_up_declined, alteration, erasure or log_read"))?
                as i32,
            None => 0,
        };
        Ok(SearchRequest {
            subject_identifier: identifier,
            subject_pseudonym: self.pseudonym.clone().unwrap_or_default(),
            node: self.by_node.clone().unwrap_or_default(),
            officer: self.by_officer.clone().unwrap_or_default(),
            alert_id: self.alert.clone().unwrap_or_default(),
            request_id: self.request.clone().unwrap_or_default(),
            operation,
            purpose: self.purpose.clone().unwrap_or_default(),
            from: self.from.as_deref().map(|s| parse_time(s, "--from")).transpose()?,
            to: self.to.as_deref().map(|s| parse_time(s, "--to")).transpose()?,
            justification: self.justification.clone(),
            ..Default::default()
        })
    }
}

fn progress(what: &str, done: u64, total: u64) {
    if total >= 2000 || done == total && total > 0 {
        eprint!("\r  {what}: {done}/{total} ({:.0}%)   ", done as f64 * 100.0 / total.max(1) as f64);
        if done == total {
            eprintln!();
        }
    }
}

fn read_key(key: &Option<PathBuf>) -> Result<Option<String>> {
    key.as_ref()
        .map(|p| {
            std::fs::read_to_string(p).map(|s| s.trim().to_owned()).with_context(|| format!("--key {}", p.display()))
        })
        .transpose()
}

fn print_entries(entries: &[AuditEntry], json: bool, csv: bool) -> Result<()> {
    let mut out = std::io::stdout().lock();
    if csv {
        writeln!(out, "seq,time,operation,node,officer,alert_id,recipients,outcome,purpose,detail")?;
    } else if !json {
        writeln!(
            out,
            "{:>6}  {:<24} {:<17} {:<10} {:<22} {:<38} {:<28} {:<8} detail",
            "seq", "time", "operation", "node", "officer", "alert", "recipients", "outcome"
        )?;
    }
    for e in entries {
        let Some(r) = &e.record else {
            if !json && !csv {
                writeln!(out, "{:>6}  (pruned: body removed by retention; leaf hash kept)", e.seq)?;
            }
            continue;
        };
        let recipients = r
            .recipients
            .iter()
            .map(|x| format!("{}:{}", x.node, isx_core::display::level(x.level())))
            .collect::<Vec<_>>()
            .join(" ");
        let op = r.operation().as_str_name().trim_start_matches("OPERATION_").to_ascii_lowercase();
        let outcome = r.outcome().as_str_name().trim_start_matches("OUTCOME_").to_ascii_lowercase();
        let time = r.time.as_ref().map(rfc3339).unwrap_or_default();
        if json {
            let mut v = isx_core::json::to_json_value(r);
            v["leaf_hash"] = serde_json::Value::String(hex::encode(&e.leaf_hash));
            writeln!(out, "{}", serde_json::to_string(&v)?)?;
        } else if csv {
            let q = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
            writeln!(
                out,
                "{},{},{},{},{},{},{},{},{},{}",
                r.seq,
                time,
                op,
                q(&r.node),
                q(&r.officer),
                q(&r.alert_id),
                q(&recipients),
                outcome,
                q(&r.purpose),
                q(&r.detail)
            )?;
        } else {
            writeln!(
                out,
                "{:>6}  {:<24} {:<17} {:<10} {:<22} {:<38} {:<28} {:<8} {}",
                r.seq, time, op, r.node, r.officer, r.alert_id, recipients, outcome, r.detail
            )?;
        }
    }
    Ok(())
}

pub async fn run(cmd: AuditCommand) -> Result<ExitCode> {
    match cmd {
        AuditCommand::Search { who, filter, json, csv, limit } => {
            let client = Client::connect(&who.options()?).await?;
            let mut req = filter.request()?;
            let mut all = Vec::new();
            let mut remaining = limit.max(1);
            loop {
                req.limit = remaining.min(1000);
                let page = client_audit::search(&client, req.clone()).await?;
                let cp = isx_audit::verify::checkpoint(
                    page.checkpoint.as_ref().context("search without checkpoint")?,
                    None,
                )?;
                for e in &page.entries {
                    isx_audit::verify::inclusion(e, &cp)
                        .with_context(|| format!("result {} does not verify", e.seq))?;
                }
                remaining -= page.entries.len().min(remaining as usize) as u32;
                let last = page.entries.last().map(|e| e.seq);
                all.extend(page.entries);
                match last {
                    Some(seq) if page.more && remaining > 0 => req.after_seq = seq,
                    _ => break,
                }
            }
            print_entries(&all, json, csv)?;
            if !json && !csv {
                eprintln!("{} record(s), each verified against its inclusion proof", all.len());
            }
        }
        AuditCommand::Checkpoint { who, out } => {
            let client = Client::connect(&who.options()?).await?;
            let cp = client_audit::checkpoint(&client).await?;
            isx_audit::verify::checkpoint(&cp, None)?;
            print!("{}", cp.note);
            if let Some(path) = out {
                std::fs::write(&path, to_json(&cp)).with_context(|| format!("--out {}", path.display()))?;
                eprintln!("saved to {}", path.display());
            }
        }
        AuditCommand::Verify { who, bundle, since_checkpoint, key } => {
            let trusted = read_key(&key)?;
            if let Some(path) = bundle {
                let text = std::fs::read_to_string(&path).with_context(|| format!("--bundle {}", path.display()))?;
                let b: AuditBundle = from_json(&text, &path.display().to_string())?;
                match isx_audit::verify::bundle(&b, trusted.as_deref(), &|d, t| progress("entries", d, t)) {
                    Ok(r) => {
                        println!(
                            "OK: bundle verified offline: {} entries included in the signed tree of {} records ({})",
                            r.entries, r.checkpoint.size, r.checkpoint.origin
                        );
                        if trusted.is_none() {
                            println!(
                                "note: the checkpoint was checked with the key inside the bundle; pass --key audit.pub to pin the gateway's key"
                            );
                        }
                    }
                    Err(e) => {
                        println!("VERIFICATION FAILED: {e}");
                        return Ok(ExitCode::FAILURE);
                    }
                }
                return Ok(ExitCode::SUCCESS);
            }
            let since = since_checkpoint
                .map(|p| {
                    std::fs::read_to_string(&p)
                        .with_context(|| format!("--since-checkpoint {}", p.display()))
                        .and_then(|t| Ok(from_json::<Checkpoint>(&t, &p.display().to_string())?))
                })
                .transpose()?;
            let client = Client::connect(&who.options()?).await?;
            match client_audit::verify_live(&client, trusted.as_deref(), since.as_ref(), &progress).await {
                Ok(r) => {
                    println!(
                        "OK: {} records verified against the signed checkpoint of size {} ({} hashed, {} pruned); {} index searches match the records",
                        r.checkpoint.tree_size, r.checkpoint.tree_size, r.bodies, r.pruned, r.index_checks
                    );
                    if let Some(old) = r.consistent_with {
                        println!("OK: the log extends the saved checkpoint of size {old} (consistency proof verified)");
                    }
                    print!("{}", r.checkpoint.note);
                }
                Err(e) => {
                    println!("{e}");
                    return Ok(ExitCode::FAILURE);
                }
            }
        }
        AuditCommand::Export { who, filter, out } => {
            let client = Client::connect(&who.options()?).await?;
            let bundle = client_audit::export(&client, filter.request()?).await?;
            let report = isx_audit::verify::bundle(&bundle, None, &|d, t| progress("entries", d, t))?;
            std::fs::write(&out, to_json(&bundle)).with_context(|| format!("--out {}", out.display()))?;
            println!(
                "wrote {} entries with proofs in the tree of {} to {}",
                report.entries,
                report.checkpoint.size,
                out.display()
            );
        }
        AuditCommand::Prune { config, before, officer } => {
            let config = isx_gateway::GatewayConfig::load(&config)?;
            let before_ms = isx_core::timestamp::to_unix_millis(&parse_time(&before, "--before")?);
            let db = isx_store::open(&config.data_dir.join("gateway.sled"), isx_store::GATEWAY_CACHE_BYTES)?;
            let keys = isx_audit::keys::load(&config.pki_dir)?;
            let (log, _) = isx_audit::AuditLog::open(&db, keys, &|d, t| progress("checking", d, t))?;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0);
            let removed = log.prune_before(before_ms, now, &officer)?;
            db.flush()?;
            let note = log.sign_checkpoint(log.size())?;
            db.flush()?;
            println!("pruned {removed} record bodies created before {before}; hashes kept; erasure recorded");
            print!("{note}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
