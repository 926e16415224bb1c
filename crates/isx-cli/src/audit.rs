//! `isx audit search|tail|checkpoint|verify|export|prune`: for auditors.
//!
//! Every read names why (`--purpose`, one of the four of LED Art. 25(2),
//! and `--case`); the gateway records both with the read and refuses a read
//! without them. `export` also names who receives the bundle (`--for`).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use isx_core::json::{from_json, to_json};
use isx_core::timestamp::Bound;
use isx_core::wire::{
    AuditBundle, AuditEntry, AuditRecord, Checkpoint, Operation, ReadPurpose, ReadReason, SearchRequest,
};
use isx_node::Client;
use isx_node::audit as client_audit;

use crate::alert::Who;
use crate::output::{AuditFormat, print_audit_entry, print_audit_header};

/// Most entries the gateway returns in one search page.
const PAGE: u64 = 1000;

/// The case of a verification or checkpoint read when `--case` is not given.
const ROUTINE_CASE: &str = "routine integrity check";

/// Why the log is read: recorded with every read (LED Art. 25(2)).
#[derive(Args, Debug, Clone, Default)]
pub struct ReadArgs {
    /// Why you read the log (recorded): lawfulness, self-monitoring, integrity or criminal-proceedings (LED Art. 25(2)).
    /// Default: integrity for verify and checkpoint, lawfulness for search, tail and export.
    #[arg(long, value_name = "PURPOSE", value_parser = parse_purpose)]
    purpose: Option<ReadPurpose>,
    /// The case, complaint or inspection this read belongs to, e.g. CNIL-2026-0113 (recorded; no personal data).
    /// Required for search, tail and export (or ISX_CASE); verify and checkpoint default to "routine integrity check".
    #[arg(long = "case", value_name = "REF", env = "ISX_CASE")]
    case: Option<String>,
}

fn parse_purpose(text: &str) -> std::result::Result<ReadPurpose, String> {
    isx_core::read_reason::parse(text)
        .map_err(|_| "use lawfulness, self-monitoring, integrity or criminal-proceedings (LED Art. 25(2))".to_owned())
}

impl ReadArgs {
    /// The reason of a read whose purpose defaults to `purpose`; `case`
    /// is the default case, if the command has one.
    fn reason(&self, purpose: ReadPurpose, case: Option<&str>) -> Result<ReadReason> {
        let purpose = self.purpose.unwrap_or(purpose);
        let Some(case) = self.case.as_deref().or(case) else {
            bail!(
                "--case REF is required: name the case, complaint or inspection this read belongs to, e.g. --case CNIL-2026-0113 (recorded with the read, with --purpose {}); or set ISX_CASE",
                isx_core::read_reason::name(purpose).unwrap_or_default().replace('_', "-")
            );
        };
        let reason = isx_core::read_reason::reason(purpose, case);
        if let Err(e) = isx_core::read_reason::check(Some(&reason)) {
            bail!("--case {case:?}: {}", e.message);
        }
        Ok(reason)
    }
}

#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// Search the audit log (auditor role), newest first. Each result is checked against its inclusion proof.
    ///
    /// Prints up to --limit records (100), newest first (--oldest-first for
    /// the other order), and says when more match and how to get them:
    /// a larger --limit, --all, or the next page with --before SEQ (newest
    /// first) or --after SEQ (oldest first). Nothing is counted beyond what
    /// is printed. Every page read is recorded in the log (LOG_READ), with
    /// its purpose (--purpose, default lawfulness) and case (--case,
    /// required). An auditor whose scope at the gateway is not every node
    /// finds only the records in its scope.
    Search {
        #[command(flatten)]
        who: Who,
        #[command(flatten)]
        why: ReadArgs,
        #[command(flatten)]
        filter: FilterArgs,
        /// Print one JSON object per line.
        #[arg(long, conflicts_with = "csv")]
        json: bool,
        /// Print CSV with a header line.
        #[arg(long)]
        csv: bool,
        /// Most results to print.
        #[arg(long, default_value_t = 100, conflicts_with = "all")]
        limit: u32,
        /// Print every matching record, page by page (at most as many pages as the log has records).
        #[arg(long)]
        all: bool,
        /// Oldest first instead of newest first.
        #[arg(long)]
        oldest_first: bool,
        /// Only records after this seq: continues an oldest-first listing.
        #[arg(long, value_name = "SEQ")]
        after: Option<u64>,
        /// Only records before this seq: continues a newest-first listing.
        #[arg(long, value_name = "SEQ")]
        before: Option<u64>,
    },
    /// The newest records as the search table, oldest of them first; --follow keeps printing new ones.
    ///
    /// With --follow it searches again every --interval seconds (at least 1,
    /// default 2) for records after the last one printed, until Ctrl-C. Each
    /// search is an audited read: it writes a LOG_READ record naming you, so
    /// keep the interval modest. Those records of this tail's own polls are
    /// not printed; everything else that matches the filters is.
    Tail {
        #[command(flatten)]
        who: Who,
        #[command(flatten)]
        why: ReadArgs,
        #[command(flatten)]
        filter: FilterArgs,
        /// How many of the newest records to print first.
        #[arg(long, short = 'n', default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=1000))]
        lines: u32,
        /// Keep printing new records as they arrive, until Ctrl-C.
        #[arg(long, short)]
        follow: bool,
        /// Seconds between searches with --follow (each one is recorded).
        #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=3600))]
        interval: u64,
        /// Print one JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Print the gateway's latest signed checkpoint; --out saves it for a later `verify --since-checkpoint`.
    Checkpoint {
        #[command(flatten)]
        who: Who,
        #[command(flatten)]
        why: ReadArgs,
        /// Save the checkpoint (JSON) to this file.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Verify the log: of a running gateway, or of exported bundles (--bundle, no gateway needed).
    ///
    /// Against a gateway, in one audited read (one LOG_READ record): every
    /// record is hashed again, the tree is recomputed and compared with the
    /// signed checkpoint, the checkpoint is shown to extend the one saved with
    /// --since-checkpoint, and every entry of the search index is compared
    /// with the records, both ways. Exits 1 on any mismatch. The read is
    /// recorded with purpose integrity (--purpose) and the case "routine
    /// integrity check" (--case). An auditor whose scope at the gateway is
    /// not every node gets the records outside it withheld (leaf hashes
    /// only): the root and the consistency are checked from those and the
    /// records in scope, and the index is not checked.
    ///
    /// Whom to trust: --key pins the log's key, --witness-policy (a C2SP
    /// tlog-policy file, as `isx pki init` writes to PKI/witness.policy)
    /// pins it and also requires the witnesses' cosignatures to meet the
    /// policy's quorum; given both, they must name the same key. With
    /// neither, the key the gateway or bundle presents is used, with a
    /// warning: that shows the log agrees with itself, not that it is yours.
    ///
    /// Fork detection, offline: every checkpoint seen (each --bundle, each
    /// --also-checkpoint, and the gateway's) is compared with the others;
    /// two of the same log and size with different roots are a fork, named
    /// with both files. A bundle of the whole log also shows its tree at a
    /// smaller checkpoint's size, so such a pair is compared too.
    Verify {
        #[command(flatten)]
        who: Who,
        #[command(flatten)]
        why: ReadArgs,
        /// Verify this exported bundle offline instead; repeat to verify several and compare their checkpoints.
        #[arg(long, value_name = "FILE")]
        bundle: Vec<PathBuf>,
        /// A checkpoint saved earlier (`isx audit checkpoint --out`); the log must extend it.
        #[arg(long, conflicts_with = "bundle")]
        since_checkpoint: Option<PathBuf>,
        /// A checkpoint from elsewhere (`isx audit checkpoint --out`, another auditor's) to compare for a fork; repeatable.
        #[arg(long, value_name = "FILE")]
        also_checkpoint: Vec<PathBuf>,
        /// The gateway's audit verifier key (audit.pub): the checkpoint must be signed with it.
        #[arg(long)]
        key: Option<PathBuf>,
        /// A C2SP witness policy (PKI/witness.policy): the log's key, the witnesses' keys and the quorum of cosignatures required.
        #[arg(long, value_name = "FILE")]
        witness_policy: Option<PathBuf>,
    },
    /// Export records with their inclusion proofs and the checkpoint: a self-contained bundle.
    ///
    /// The read is recorded with its purpose, its case and who receives the
    /// bundle (--for). An auditor whose scope at the gateway is not every
    /// node exports only the records in its scope.
    Export {
        #[command(flatten)]
        who: Who,
        #[command(flatten)]
        why: ReadArgs,
        #[command(flatten)]
        filter: FilterArgs,
        /// Who receives the bundle, e.g. "Tribunal judiciaire de Lyon" (required; recorded with the read).
        /// (`--to` is the filters' time bound.)
        #[arg(long = "for", value_name = "RECIPIENT")]
        bundle_for: String,
        /// Where to write the bundle (JSON).
        #[arg(long)]
        out: PathBuf,
    },
    /// Retention: remove the record bodies and index rows the retention rule allows, keeping every hash (gateway stopped).
    ///
    /// The rule comes from the config: `[audit] retention` (3 years by
    /// default) counts from a record's time or, for a record naming an
    /// alert, from the alert's end (expiry or erasure): a live alert's
    /// history is never pruned. Nothing younger than `[audit]
    /// retention_floor` is pruned. Pruning removes only a prefix of the log,
    /// so it stops at the first record the rule keeps and says why.
    ///
    /// Works on the gateway's data directory, so the gateway must not be
    /// running. Every earlier proof still verifies; one erasure record is
    /// appended and a new checkpoint is signed.
    Prune {
        /// The gateway config (data and PKI directories, `[audit]` retention).
        #[arg(long, short, default_value = "deploy/local/gateway.toml")]
        config: PathBuf,
        /// Cut earlier than the rule: only records (and alert ends) before
        /// this date (YYYY-MM-DD or RFC 3339, UTC). Without it, the cut-off
        /// is now minus `audit.retention`.
        #[arg(long)]
        before: Option<String>,
        /// Print what would go and change nothing.
        #[arg(long)]
        dry_run: bool,
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
    /// A subject's name as "FAMILY, Given", "Given FAMILY" or "Given Family" (with --dob; see `isx lookup --help`).
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
    /// A node on either side: the one that acted (--origin) or one that received (--recipient).
    #[arg(long = "node")]
    by_node: Option<String>,
    /// The node that acted: the publisher, the subscriber a disclosure went to, the requester, the auditor.
    #[arg(long)]
    origin: Option<String>,
    /// A node among the recipients: of a disclosure, a collection's candidates, a denial's refused node, an access request's holder.
    #[arg(long)]
    recipient: Option<String>,
    /// The officer (as named in x-isx-officer).
    #[arg(long = "by-officer")]
    by_officer: Option<String>,
    /// An alert id (also finds the lookups that matched it).
    #[arg(long)]
    alert: Option<String>,
    /// An access request id (ar-...): its request, decision and disclosure.
    #[arg(long)]
    request: Option<String>,
    /// The operation, by its short or full name: collection, disclosure, denial, consultation, access_request, access_decision, follow_up_declined, alteration, erasure, log_read (or OPERATION_CONSULTATION, ...).
    #[arg(long)]
    operation: Option<String>,
    /// A record's stated purpose (of a publish, a lookup, a read of the log: e.g. "border check", lawfulness).
    #[arg(long = "record-purpose", value_name = "PURPOSE")]
    record_purpose: Option<String>,
    /// From this time (RFC 3339), or from the start of this day (YYYY-MM-DD, UTC).
    #[arg(long)]
    from: Option<String>,
    /// Up to this time (RFC 3339), or to the end of this day (YYYY-MM-DD, UTC): inclusive.
    #[arg(long)]
    to: Option<String>,
    /// Why you search (recorded with the read).
    #[arg(long, default_value = "")]
    justification: String,
}

/// A time bound as given on the command line ([`isx_core::timestamp::parse_bound`]).
fn parse_time(s: &str, flag: &str, bound: Bound) -> Result<prost_types::Timestamp> {
    isx_core::timestamp::parse_bound(s, bound)
        .with_context(|| format!("{flag} {s:?}: use RFC 3339 (2026-11-28T10:00:00Z) or YYYY-MM-DD"))
}

impl FilterArgs {
    fn request(&self) -> Result<SearchRequest> {
        let identifier = match (&self.document, &self.name, &self.plate) {
            (Some(d), None, None) => {
                let (c, n) = d.split_once(':').context("--document: use COUNTRY:NUMBER, e.g. DE:C4J9X1R27")?;
                isx_core::identifiers::document(c, n)
            }
            (None, Some(n), None) => {
                let reading = crate::output::read_name("--name", n)?;
                isx_core::identifiers::name(&reading.family, &reading.given, self.dob.as_deref().unwrap_or_default())
            }
            (None, None, Some(p)) => isx_core::identifiers::plate(p),
            (None, None, None) => String::new(),
            _ => bail!("give one of --document, --name with --dob, or --plate"),
        };
        let operation = match &self.operation {
            Some(op) => isx_core::enums::parse(&isx_core::enums::descriptor("Operation"), op)
                .map_err(|e| anyhow::anyhow!("--operation {e}"))?,
            None => 0,
        };
        Ok(SearchRequest {
            subject_identifier: identifier,
            subject_pseudonym: self.pseudonym.clone().unwrap_or_default(),
            node: self.by_node.clone().unwrap_or_default(),
            origin: self.origin.clone().unwrap_or_default(),
            recipient: self.recipient.clone().unwrap_or_default(),
            officer: self.by_officer.clone().unwrap_or_default(),
            alert_id: self.alert.clone().unwrap_or_default(),
            request_id: self.request.clone().unwrap_or_default(),
            operation,
            purpose: self.record_purpose.clone().unwrap_or_default(),
            from: self.from.as_deref().map(|s| parse_time(s, "--from", Bound::Start)).transpose()?,
            to: self.to.as_deref().map(|s| parse_time(s, "--to", Bound::End)).transpose()?,
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

/// Reads the verifier key that `--key` names. A private key given by
/// mistake (`audit.key`, a TLS key, an HMAC or store key) is refused as
/// such, and so is a file that is not a verifier key; the messages name the
/// file and the fix, never what the file holds.
pub(crate) fn read_key(key: &Option<PathBuf>) -> Result<Option<String>> {
    let Some(path) = key else { return Ok(None) };
    // The error of a read (not found, not UTF-8) never quotes the file.
    let text = std::fs::read_to_string(path).with_context(|| format!("--key {}", path.display()))?;
    let key = text.trim();
    if is_private_key(key) {
        let public = match path.file_name() {
            Some(name) if name == "audit.key" => path.with_file_name("audit.pub").display().to_string(),
            _ => "audit.pub from the gateway's PKI directory".to_owned(),
        };
        bail!(
            "--key {} is a private key, not the audit verifier key; keep it secret and give the public key: --key {public}",
            path.display()
        );
    }
    if !is_verifier_key(key) {
        bail!(
            "--key {}: not an audit verifier key (one line NAME+ID+KEY, as `isx pki init` writes to audit.pub); give the gateway's audit.pub",
            path.display()
        );
    }
    Ok(Some(key.to_owned()))
}

/// True for the private keys isx writes: a signed-note signing key
/// (`audit.key`), a PEM private key (TLS keys) or 32 bytes in hex
/// (`audit-hmac.key`, `audit-text.key`, store keys).
fn is_private_key(text: &str) -> bool {
    text.starts_with("PRIVATE+KEY+")
        || text.contains("PRIVATE KEY-----")
        || text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// True for a signed-note verifier key: `NAME+ID+KEY` on one line, with an
/// 8-digit hex key id and a base64 key.
fn is_verifier_key(text: &str) -> bool {
    // The name holds no `+`; the base64 key may.
    let parts: Vec<&str> = text.splitn(3, '+').collect();
    let [name, id, key] = parts[..] else { return false };
    !name.is_empty()
        && !text.contains(char::is_whitespace)
        && id.len() == 8
        && id.bytes().all(|b| b.is_ascii_hexdigit())
        && !key.is_empty()
        && key.bytes().all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b))
}

/// Reads `--key` and `--witness-policy` into whom a verification trusts;
/// the two must agree on the log's key.
pub(crate) fn read_trust(key: &Option<PathBuf>, policy: &Option<PathBuf>) -> Result<isx_audit::verify::Trust> {
    let pinned = read_key(key)?;
    let parsed = policy
        .as_ref()
        .map(|p| {
            isx_audit::policy::WitnessPolicy::load(p)
                .map_err(|e| anyhow::anyhow!("--witness-policy {}: {e}", p.display()))
        })
        .transpose()?;
    isx_audit::verify::Trust::new(pinned, parsed).map_err(|e| match (key, policy) {
        (Some(k), Some(p)) => {
            anyhow::anyhow!("--key {} and --witness-policy {} disagree: {e}", k.display(), p.display())
        }
        _ => e.into(),
    })
}

/// Reads a checkpoint saved with `isx audit checkpoint --out`.
fn read_checkpoint(path: &std::path::Path, flag: &str) -> Result<Checkpoint> {
    let text = std::fs::read_to_string(path).with_context(|| format!("{flag} {}", path.display()))?;
    Ok(from_json::<Checkpoint>(&text, &path.display().to_string())?)
}

/// Warns that no log key is pinned, on stderr, and says how to pin it.
fn warn_unpinned(what: &str) {
    eprintln!(
        "warning: no log key is pinned: the checkpoint is checked only with the key the {what} presents, which shows that the log agrees with itself, not that it is the log you trust; pin it with --key PKI/audit.pub or --witness-policy PKI/witness.policy"
    );
}

/// A Unix time in seconds as RFC 3339 UTC.
fn utc(seconds: u64) -> String {
    i64::try_from(seconds)
        .ok()
        .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| format!("{seconds} (Unix seconds)"))
}

/// Prints who cosigned a checkpoint and when, and the quorum it met.
fn print_attested(a: &isx_audit::verify::Attested) {
    let Some(quorum) = &a.quorum else { return };
    if a.cosigners.is_empty() {
        println!("OK: the witness policy asks no cosignature (quorum {quorum}); none verified");
        return;
    }
    let who: Vec<String> = a.cosigners.iter().map(|(name, t)| format!("{name} at {}", utc(*t))).collect();
    println!("OK: cosigned by {}; the witness policy's quorum ({quorum}) is met", who.join(", "));
}

/// The checkpoints one verification has seen, compared for a fork.
#[derive(Default)]
struct Sightings {
    /// Where it was read, the key it presented, the checkpoint, and a bundle's entries.
    seen: Vec<(String, String, isx_audit::checkpoint::Verified, Option<Vec<AuditEntry>>)>,
}

impl Sightings {
    fn add(&mut self, source: &str, key: &str, v: isx_audit::checkpoint::Verified, entries: Option<Vec<AuditEntry>>) {
        self.seen.push((source.to_owned(), key.trim().to_owned(), v, entries));
    }

    /// Compares every pair; prints a fork (or checkpoints signed by
    /// different keys, when no key is pinned) and returns the exit code.
    fn finish(&self, pinned: bool) -> ExitCode {
        use isx_audit::verify;
        for (i, (sa, ka, a, ea)) in self.seen.iter().enumerate() {
            for (sb, kb, b, eb) in &self.seen[i + 1..] {
                if !pinned && ka != kb {
                    println!(
                        "VERIFICATION FAILED: {sa} and {sb} are signed by different keys ({ka} and {kb}): pin the log key with --key or --witness-policy to tell which is the log's"
                    );
                    return ExitCode::FAILURE;
                }
                // A bundle of the whole log shows its tree at the other's size.
                let (a2, b2) = match (a.size.cmp(&b.size), ea, eb) {
                    (std::cmp::Ordering::Less, _, Some(eb)) => (a.clone(), prefix(b, eb, a.size)),
                    (std::cmp::Ordering::Greater, Some(ea), _) => (prefix(a, ea, b.size), b.clone()),
                    _ => (a.clone(), b.clone()),
                };
                if let Err(e) = verify::compare(&a2, sa, &b2, sb) {
                    println!("VERIFICATION FAILED: {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
        if self.seen.len() > 1 {
            println!("OK: the {} checkpoints seen agree (no fork)", self.seen.len());
        }
        ExitCode::SUCCESS
    }
}

/// `v` as its tree of `size` when `entries` hold its first `size` leaves.
fn prefix(v: &isx_audit::checkpoint::Verified, entries: &[AuditEntry], size: u64) -> isx_audit::checkpoint::Verified {
    match isx_audit::verify::prefix_root(entries, size) {
        Some(root) => isx_audit::checkpoint::Verified { origin: v.origin.clone(), size, root },
        None => v.clone(),
    }
}

/// One page of a search, each entry checked against its inclusion proof in
/// the page's checkpoint. Returns the page and the checkpoint's size.
async fn page(client: &Client, reason: &ReadReason, req: &SearchRequest) -> Result<(Vec<AuditEntry>, bool, u64)> {
    let page = client_audit::search(client, reason, req.clone()).await?;
    let cp = isx_audit::verify::checkpoint(page.checkpoint.as_ref().context("search without checkpoint")?, None)?;
    for e in &page.entries {
        isx_audit::verify::inclusion(e, &cp).with_context(|| format!("result {} does not verify", e.seq))?;
    }
    Ok((page.entries, page.more, cp.size))
}

/// Up to `want` matching entries (every one if `None`), page after page in
/// `req`'s order, and whether more match beyond them.
async fn search_pages(
    client: &Client,
    reason: &ReadReason,
    mut req: SearchRequest,
    want: Option<u64>,
) -> Result<(Vec<AuditEntry>, bool)> {
    let mut all: Vec<AuditEntry> = Vec::new();
    let mut pages = 0u64;
    let mut bound = u64::MAX;
    // Bounded: every page but the last returns at least one entry, so there
    // are at most as many pages as the log held records at the first.
    loop {
        let left = want.map_or(PAGE, |w| w.saturating_sub(all.len() as u64));
        req.limit = left.clamp(1, PAGE) as u32;
        let (entries, more, size) = page(client, reason, &req).await?;
        bound = bound.min(size + 1);
        pages += 1;
        let last = entries.last().map(|e| e.seq);
        all.extend(entries);
        let Some(last) = last else { return Ok((all, false)) };
        let done = want.is_some_and(|w| all.len() as u64 >= w);
        if !more || done || pages >= bound {
            return Ok((all, more));
        }
        if req.newest_first {
            req.before_seq = last;
        } else {
            req.after_seq = last;
        }
    }
}

/// Prints `entries` in `format`, with the header.
fn print_entries(entries: &[AuditEntry], format: AuditFormat) -> Result<()> {
    let mut out = std::io::stdout().lock();
    print_audit_header(&mut out, format)?;
    for e in entries {
        print_audit_entry(&mut out, e, format)?;
    }
    out.flush()?;
    Ok(())
}

/// Opens the sealed justifications of `entries` with `<pki>/audit-text.key`
/// when this auditor holds it (auditors read the text; the log verifies
/// without it). Without the key they stay sealed and show empty.
fn open_texts(entries: &mut [AuditEntry], pki: &std::path::Path) {
    let Ok(key) = isx_audit::keys::load_text_key(pki) else { return };
    for r in entries.iter_mut().filter_map(|e| e.record.as_mut()) {
        if let Some(clear) = isx_audit::text::open(&key, r) {
            r.justification = clear;
        }
    }
}

/// True if `r` is the record of one of this tail's own polls.
fn own_poll(r: &AuditRecord, node: &str, officer: &str, justification: &str) -> bool {
    r.operation() == Operation::LogRead
        && r.node == node
        && r.officer == officer
        // Sealed when this auditor does not hold the text key.
        && (r.justification == justification || r.justification.is_empty() && !r.justification_sealed.is_empty())
        && r.detail.starts_with("Search by ")
}

/// Resolves when the process gets Ctrl-C (SIGINT) or SIGTERM; the handlers
/// are installed before this returns.
fn interrupted() -> Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
    })
}

pub async fn run(cmd: AuditCommand) -> Result<ExitCode> {
    match cmd {
        AuditCommand::Search { who, why, filter, json, csv, limit, all, oldest_first, after, before } => {
            let reason = why.reason(ReadPurpose::Lawfulness, None)?;
            let format = if json {
                AuditFormat::Json
            } else if csv {
                AuditFormat::Csv
            } else {
                AuditFormat::Table
            };
            let options = who.options()?;
            let client = isx_node::diagnose::connect(&options).await?;
            let req = SearchRequest {
                newest_first: !oldest_first,
                after_seq: after.unwrap_or(0),
                before_seq: before.unwrap_or(0),
                ..filter.request()?
            };
            let want = if all { None } else { Some(u64::from(limit.max(1))) };
            let (mut entries, more) = search_pages(&client, &reason, req, want).await?;
            open_texts(&mut entries, &options.pki_dir);
            print_entries(&entries, format)?;
            let order = if oldest_first { "oldest first" } else { "newest first" };
            if format == AuditFormat::Table {
                eprintln!("{} record(s), {order}, each verified against its inclusion proof", entries.len());
            }
            if more && let Some(last) = entries.last() {
                let next =
                    if oldest_first { format!("--after {}", last.seq) } else { format!("--before {}", last.seq) };
                eprintln!(
                    "more records match: show more with --limit {}, all with --all, or the next page with {next}",
                    u64::from(limit.max(1)).saturating_mul(10)
                );
            }
        }
        AuditCommand::Tail { who, why, filter, lines, follow, interval, json } => {
            let reason = why.reason(ReadPurpose::Lawfulness, None)?;
            let format = if json { AuditFormat::Json } else { AuditFormat::Table };
            let stop = interrupted()?;
            tokio::pin!(stop);
            let options = who.options()?;
            let client = isx_node::diagnose::connect(&options).await?;
            let mut req = filter.request()?;
            if req.justification.is_empty() {
                req.justification = "isx audit tail".into();
            }
            let first = SearchRequest { newest_first: true, limit: lines, ..req.clone() };
            let (mut newest, more, size) = tokio::select! {
                _ = &mut stop => return Ok(ExitCode::SUCCESS),
                page = page(&client, &reason, &first) => page?,
            };
            newest.reverse();
            open_texts(&mut newest, &options.pki_dir);
            print_entries(&newest, format)?;
            if more && let Some(oldest) = newest.first() {
                eprintln!("older records match: `isx audit search` with the same filters and --before {}", oldest.seq);
            }
            if !follow {
                return Ok(ExitCode::SUCCESS);
            }
            let (node, officer) = (client.node().to_string(), options.officer.clone());
            eprintln!(
                "following: a search every {interval}s, each recorded as a LOG_READ by {node} ({officer}), not printed here; Ctrl-C stops"
            );
            // After the last record printed, or else after the log as it was.
            let mut last = newest.last().map(|e| e.seq).unwrap_or(size.saturating_sub(1));
            let poll = SearchRequest { newest_first: false, before_seq: 0, limit: PAGE as u32, ..req };
            loop {
                tokio::select! {
                    _ = &mut stop => break,
                    _ = tokio::time::sleep(Duration::from_secs(interval)) => {}
                }
                let next = SearchRequest { after_seq: last, ..poll.clone() };
                let (mut entries, _) = tokio::select! {
                    _ = &mut stop => break,
                    found = search_pages(&client, &reason, next, None) => found?,
                };
                open_texts(&mut entries, &options.pki_dir);
                let mut out = std::io::stdout().lock();
                for e in &entries {
                    last = last.max(e.seq);
                    if e.record.as_ref().is_some_and(|r| own_poll(r, &node, &officer, &poll.justification)) {
                        continue;
                    }
                    print_audit_entry(&mut out, e, format)?;
                }
                out.flush()?;
            }
        }
        AuditCommand::Checkpoint { who, why, out } => {
            let reason = why.reason(ReadPurpose::Integrity, Some(ROUTINE_CASE))?;
            let client = isx_node::diagnose::connect(&who.options()?).await?;
            let cp = client_audit::checkpoint(&client, &reason).await?;
            isx_audit::verify::checkpoint(&cp, None)?;
            print!("{}", cp.note);
            if let Some(path) = out {
                std::fs::write(&path, to_json(&cp)).with_context(|| format!("--out {}", path.display()))?;
                eprintln!("saved to {}", path.display());
            }
        }
        AuditCommand::Verify { who, why, bundle, since_checkpoint, also_checkpoint, key, witness_policy } => {
            let trust = read_trust(&key, &witness_policy)?;
            let mut seen = Sightings::default();
            for path in &also_checkpoint {
                let cp = read_checkpoint(path, "--also-checkpoint")?;
                let source = path.display().to_string();
                match trust.check_signature(&cp) {
                    Ok(v) => seen.add(&source, &cp.verifier_key, v, None),
                    Err(e) => {
                        println!("VERIFICATION FAILED: --also-checkpoint {source}: {e}");
                        return Ok(ExitCode::FAILURE);
                    }
                }
            }
            if !bundle.is_empty() {
                if !trust.pinned() {
                    warn_unpinned("bundle");
                }
                for path in &bundle {
                    let text = std::fs::read_to_string(path).with_context(|| format!("--bundle {}", path.display()))?;
                    let b: AuditBundle = from_json(&text, &path.display().to_string())?;
                    let source = path.display().to_string();
                    match isx_audit::verify::bundle(&b, &trust, &|d, t| progress("entries", d, t)) {
                        Ok(r) => {
                            println!(
                                "OK: bundle verified offline: {} entries included in the signed tree of {} records ({}){}{} ({source})",
                                r.entries,
                                r.checkpoint.size,
                                r.checkpoint.origin,
                                if r.tlog_proofs > 0 { ", each with its C2SP tlog-proof" } else { "" },
                                match r.withheld {
                                    0 => String::new(),
                                    n => format!(", {n} of them withheld (leaf hash only)"),
                                }
                            );
                            print_attested(&r.attested);
                            let key = b.checkpoint.as_ref().map(|c| c.verifier_key.clone()).unwrap_or_default();
                            seen.add(&source, &key, r.checkpoint, Some(b.entries));
                        }
                        Err(e) => {
                            println!("VERIFICATION FAILED: {e} ({source})");
                            return Ok(ExitCode::FAILURE);
                        }
                    }
                }
                return Ok(seen.finish(trust.pinned()));
            }
            let reason = why.reason(ReadPurpose::Integrity, Some(ROUTINE_CASE))?;
            let since = since_checkpoint.map(|p| read_checkpoint(&p, "--since-checkpoint")).transpose()?;
            if !trust.pinned() {
                warn_unpinned("gateway");
            }
            let client = isx_node::diagnose::connect(&who.options()?).await?;
            // The pinned key, when it does not depend on the origin: the
            // checkpoint is then checked as it arrives; either way it is
            // checked whole (key, cosignatures, quorum) once verified.
            let early = trust.live_key();
            let verified =
                client_audit::verify_live(&client, &reason, early.as_deref(), since.as_ref(), &progress).await;
            let checked = match verified {
                Ok(r) => trust.check(&r.checkpoint).map(|a| (r, a)).map_err(|e| format!("VERIFICATION FAILED: {e}")),
                Err(e) => Err(e.to_string()),
            };
            match checked {
                Ok((r, attested)) => {
                    let withheld = match r.withheld {
                        0 => String::new(),
                        n => format!(", {n} withheld as outside your scope: leaf hash only"),
                    };
                    println!(
                        "OK: {} records verified against the signed checkpoint of size {} ({} hashed, {} pruned{withheld})",
                        r.checkpoint.tree_size, r.checkpoint.tree_size, r.bodies, r.pruned
                    );
                    match &r.scope {
                        Some(scope) => println!(
                            "note: index not checked (scoped): your audit scope is {scope}, so the gateway sends the records outside it withheld and no search index"
                        ),
                        None => println!(
                            "OK: the whole search index matches the records: {} entries under {} values, each record in every list it belongs to and in no other",
                            r.index_entries, r.index_checks
                        ),
                    }
                    if let Some(old) = r.consistent_with {
                        println!("OK: the log extends the saved checkpoint of size {old} (consistency proof verified)");
                    }
                    print_attested(&attested);
                    print!("{}", r.checkpoint.note);
                    seen.add("the gateway", &r.checkpoint.verifier_key, attested.checkpoint, None);
                    return Ok(seen.finish(trust.pinned()));
                }
                Err(e) => {
                    println!("{e}");
                    return Ok(ExitCode::FAILURE);
                }
            }
        }
        AuditCommand::Export { who, why, filter, bundle_for: to, out } => {
            let reason = why.reason(ReadPurpose::Lawfulness, None)?;
            if let Err(e) = isx_core::read_reason::check_recipient(&to) {
                bail!("--for {to:?}: {}", e.message);
            }
            let client = isx_node::diagnose::connect(&who.options()?).await?;
            let bundle = client_audit::export(&client, &reason, &to, filter.request()?).await?;
            let presented = isx_audit::verify::Trust::default();
            let report = isx_audit::verify::bundle(&bundle, &presented, &|d, t| progress("entries", d, t))?;
            std::fs::write(&out, to_json(&bundle)).with_context(|| format!("--out {}", out.display()))?;
            println!(
                "wrote {} entries with proofs in the tree of {} to {} (for {}; the read is recorded with its purpose and case)",
                report.entries,
                report.checkpoint.size,
                out.display(),
                to.trim()
            );
        }
        AuditCommand::Prune { config, before, dry_run, officer } => {
            prune(&config, before.as_deref(), dry_run, &officer)?
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `isx audit prune`: the cut-off from the rule (or `--before`, refused in
/// the future or inside the floor), then the plan, printed, and carried out
/// unless `dry_run`.
fn prune(config: &std::path::Path, before: Option<&str>, dry_run: bool, officer: &str) -> Result<()> {
    use isx_audit::retention::{RuleError, date, span};
    let config = isx_gateway::GatewayConfig::load(config)?;
    let rule = config.audit.retention_rule();
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
    let before_ms = before
        .map(|b| parse_time(b, "--before", Bound::Start).map(|t| isx_core::timestamp::to_unix_millis(&t)))
        .transpose()?;
    let (retention, floor) = (span(rule.retention_ms), span(rule.floor_ms));
    let cutoff = rule.cutoff(before_ms, now).map_err(|e| match e {
        RuleError::Future { .. } => anyhow::anyhow!(
            "--before {} is in the future: pruning keeps every record for audit.retention ({retention}) and never prunes inside audit.retention_floor ({floor}); give a date on or before {}, or leave --before out to prune by the rule",
            before.unwrap_or_default(),
            date(now.saturating_sub(rule.floor_ms))
        ),
        RuleError::InsideFloor { latest_ms, .. } => match before {
            Some(b) => anyhow::anyhow!(
                "--before {b} is inside audit.retention_floor ({floor}): records younger than {floor} are never pruned; give a date on or before {}",
                date(latest_ms)
            ),
            None => anyhow::anyhow!(
                "audit.retention ({retention}) is shorter than audit.retention_floor ({floor}): fix the config"
            ),
        },
    })?;
    let db = isx_store::open(&config.data_dir.join("gateway.sled"), isx_store::GATEWAY_CACHE_BYTES)?;
    let keys = isx_audit::keys::load(&config.pki_dir)?;
    let (log, _) = isx_audit::AuditLog::open(&db, keys, &|d, t| progress("checking", d, t))?;
    let source = match before {
        Some(b) => format!("--before {b}"),
        None => format!("now minus audit.retention {retention}"),
    };
    let describe = |plan: &isx_audit::retention::PrunePlan, verb: &str| {
        let last = plan.last_ms.map(|t| format!(", the last recorded {}", date(t))).unwrap_or_default();
        println!(
            "{verb} {} record bodies: seq [{}, {}){last}; the pruned prefix {} [0, {})",
            plan.count(),
            plan.from,
            plan.upto,
            if verb == "pruned" { "is now" } else { "would be" },
            plan.upto
        );
        println!("cut-off {} ({source}; nothing inside audit.retention_floor {floor})", date(plan.cutoff.at_ms));
        println!("stops because {}", plan.stop());
    };
    if dry_run {
        let plan = log.plan_prune(&cutoff)?;
        describe(&plan, "would prune");
        println!("dry run: nothing written, nothing signed");
        return Ok(());
    }
    let (plan, erasure) = log.prune(&rule, &cutoff, now, officer)?;
    db.flush()?;
    let note = log.sign_checkpoint(log.size())?;
    db.flush()?;
    describe(&plan, "pruned");
    println!("hashes kept; erasure recorded at seq {erasure} (ordered by {officer})");
    print!("{note}");
    Ok(())
}
