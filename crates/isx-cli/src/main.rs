//! `isx`: the command-line tool. Each subcommand parses its arguments and
//! calls into the library crates; no logic lives here.
//!
//! # Layout
//! - this file: the command tree, `pki`, `gateway` and `node`, logging.
//! - `alert`: `isx alert send|watch|allow-onward` and the lifecycle
//!   `amend|withdraw|restrict|lift|status`. `access`: `isx lookup` and `isx access`.
//! - `policy`: `isx policy check|explain|test|coverage|fmt`. `audit`: `isx audit`.
//! - `admin`: `isx admin reload-policy|request-reload`, recorded administration.
//! - `holds`: `isx admin hold|lift|holds|prune`, legal holds and online pruning.
//! - `console`: `isx console`, the web app of `isx-console`.
//! - `up`: `isx up`, the local deployment as separate processes.
//! - `witness`: `isx witness`, the standalone tlog-witness of `isx-witness`.
//! - `agency`: `isx agency show`, what a mock agency holds.
//! - `scenario`, `bench` and `isx demo` (feature `harness`, on by default):
//!   the integration-testing harness of `isx-testkit`.
//! - `output`: tables and JSON.
//!
//! # The harness in the binary
//! Integration testing is a product feature here: testers run `isx demo`,
//! `isx scenario run` and `isx bench` from the same binary as the gateway.
//! They come with the default `harness` feature, which links `isx-testkit`.
//! A production build without them, and without the testkit, is
//! `cargo build --release -p isx-cli --no-default-features`. Neither build
//! has the gateway's fault switches (`isx-gateway/faults`).

mod access;
mod admin;
mod agency;
mod alert;
mod audit;
#[cfg(feature = "harness")]
mod bench;
mod console;
mod holds;
mod output;
mod policy;
#[cfg(feature = "harness")]
mod scenario;
mod up;
mod witness;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

/// isx: an mTLS gateway that relays tagged law-enforcement alerts between
/// agency nodes, decides each disclosure by policy, and keeps a
/// tamper-evident audit log.
///
/// Start with `isx demo`. A local deployment lives in deploy/local/:
/// `isx pki init --dir deploy/local/pki`, then
/// `isx gateway --config deploy/local/gateway.toml` and
/// `isx node --config deploy/local/nodes/fr-police.toml`.
#[derive(Parser, Debug)]
#[command(name = "isx", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once per run; the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
enum Command {
    /// Run a gateway and five mock agencies in this process and show who receives what.
    ///
    /// Needs no files or arguments: it creates a temporary PKI and data directory,
    /// starts everything on 127.0.0.1 over mutual TLS 1.3, publishes three
    /// realistic alerts, and checks that each arrived exactly where its receipt
    /// said. Exits 0 when everything arrived as expected.
    #[cfg(feature = "harness")]
    Demo {
        /// Keep the gateway and agencies running afterwards, and print the
        /// `isx console` command that opens the console on them; Ctrl-C stops.
        #[arg(long)]
        keep: bool,
    },
    /// Manage the development PKI.
    #[command(subcommand)]
    Pki(PkiCommand),
    /// Run the gateway.
    Gateway(GatewayArgs),
    /// Run a mock agency node that subscribes, stores and prints what it receives.
    Node(NodeArgs),
    /// Send, watch, correct, withdraw and restrict alerts as a node, and see who confirmed.
    #[command(subcommand)]
    Alert(alert::AlertCommand),
    /// Hit/no-hit: ask whether any alert matches a document, name, plate or firearm.
    Lookup(access::LookupArgs),
    /// Follow a hit up: request the data, decide a request, decline, list.
    #[command(subcommand)]
    Access(access::AccessCommand),
    /// Start the gateway and every agency of deploy/local as separate processes.
    Up(up::UpArgs),
    /// Show what a mock agency holds (running or stopped).
    #[command(subcommand)]
    Agency(agency::AgencyCommand),
    /// Run integration scenarios: a topology, a story and expectations in TOML.
    #[cfg(feature = "harness")]
    #[command(subcommand)]
    Scenario(scenario::ScenarioCommand),
    /// Check, explain, test, format and measure the coverage of the disclosure policy.
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
    /// Search, verify and export the audit log (auditors).
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Change what governs disclosure, as a named officer with a reason (recorded).
    ///
    /// Every change is an ADMINISTRATION record in the audit log: who, why
    /// (sealed), what changed. `reload-policy` calls the gateway's Admin
    /// service with a node certificate holding the `admin` role (e.g. `--as
    /// ops` in deploy/local); `request-reload` writes the request file an
    /// operator needs before a SIGHUP reloads the policy.
    #[command(subcommand)]
    Admin(admin::AdminCommand),
    /// Run a witness: cosign the audit log's checkpoints that extend what it has seen (C2SP tlog-witness).
    Witness(witness::WitnessArgs),
    /// Open the console: a local web page for auditors and policy officers.
    ///
    /// Auditors (--as auditor --pki DIR --gateway ADDR --officer NAME, or
    /// --node-config FILE): the log's overview with "verify now", search with
    /// facets, subject reports, alert histories and evidence bundles, every
    /// record verified against its inclusion proof in the console. Every page
    /// is an audited read under your officer name.
    ///
    /// Policy officers (--policy DIR, no gateway needed): the proportionality
    /// matrix (alerts by agencies), a draft compared cell by cell (--draft
    /// DIR) and the rule table.
    ///
    /// Serves http://127.0.0.1:PORT (a free port) and prints the URL with a
    /// session token: only a browser that opened that URL can use it, and
    /// only the console's own pages can submit its forms.
    Console(console::ConsoleArgs),
    /// Measure throughput over real mTLS on loopback, next to same-run baselines.
    ///
    /// Starts its own gateway and agencies in this process (or uses a running
    /// gateway with --gateway). Prints a table, or one JSON object with --json.
    /// Figures are measurements, not pass/fail; build with --release for
    /// meaningful numbers. BENCHMARKS.md explains each figure and its target.
    #[cfg(feature = "harness")]
    Bench(bench::BenchArgs),
}

#[derive(Subcommand, Debug)]
enum PkiCommand {
    /// Create a development CA and certificates for the gateway and each node.
    ///
    /// Writes DIR/ca.crt and DIR/ca.key, DIR/gateway.crt and .key (valid for
    /// localhost, 127.0.0.1 and --gateway-names), and DIR/NAME.crt and .key for
    /// each node, whose identity is the SAN URI spiffe://isx/node/NAME, and
    /// DIR/crl.pem, the CA's revocation list (empty, fresh for 30 days: see
    /// `isx pki crl`). Also the gateway's audit keys: DIR/audit.key (Ed25519,
    /// signs checkpoints), DIR/audit.pub (give it to auditors) and
    /// DIR/audit-hmac.key (keys the subject pseudonyms). The log's origin is
    /// unique to the deployment: isx/<8 random hex digits>/audit unless
    /// --audit-origin says otherwise.
    ///
    /// Witnesses (`isx witness`): the standalone witness's server
    /// certificate DIR/witness.crt and .key and its cosignature key
    /// DIR/witness.cosign.key (.pub: its verifier key); for each node, so
    /// that an agency can witness the gateway it uses, DIR/NODE.witness.crt
    /// and .key and DIR/NODE.cosign.key and .pub. Witness key names are
    /// isx/<hex>/witness/<id>. DIR/witness.policy is a C2SP tlog-policy: the
    /// log's key, the standalone witness at https://127.0.0.1:7460 as the
    /// quorum, and each node's witness on a line to uncomment.
    ///
    /// Every private key is written mode 0600, also one that --force replaces.
    ///
    /// Node ids that name isx's own files are refused: ca, gateway, audit,
    /// audit-hmac, audit-text, crl, revoked, witness.
    Init {
        /// Directory to write into (created if missing).
        #[arg(long)]
        dir: PathBuf,
        /// Node identities to issue, comma-separated.
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "de-police,fr-police,it-police,europol,frontex,auditor,ops"
        )]
        nodes: Vec<String>,
        /// Extra DNS names or IP addresses for the gateway certificate, comma-separated.
        #[arg(long, value_delimiter = ',')]
        gateway_names: Vec<String>,
        /// Days the certificates stay valid.
        #[arg(long, default_value_t = 365)]
        days: i64,
        /// Replace a PKI that already exists in DIR, all of it: every file of
        /// the old one (CA, gateway, every node, crl.pem, revoked.txt, the audit
        /// keys and the store keys) is moved into DIR/replaced-TIME first. A
        /// gateway's audit log signed with the old audit.key then no longer
        /// starts, and data sealed with the old store keys cannot be read.
        #[arg(long)]
        force: bool,
        /// The audit log's name: the first line of its checkpoints and the
        /// name of its signing key [default: isx/<8 random hex digits>/audit,
        /// unique to this deployment].
        #[arg(long, value_name = "ORIGIN")]
        audit_origin: Option<String>,
    },
    /// Revoke node certificates: add them to DIR/crl.pem and re-sign it with the CA.
    ///
    /// Keeps every earlier revocation (recorded with its node in
    /// DIR/revoked.txt). The gateway config lists the file (`crls =
    /// ["pki/crl.pem"]`); a gateway applies it when it loads its CRLs again,
    /// and a revoked certificate can no longer connect.
    Revoke {
        /// The PKI directory holding ca.key and the node certificates.
        #[arg(long)]
        dir: PathBuf,
        /// The node ids to revoke.
        #[arg(required = true)]
        nodes: Vec<String>,
        /// Days until the new list's next update.
        #[arg(long, default_value_t = isx_tls::pki::DEFAULT_CRL_DAYS, value_parser = clap::value_parser!(i64).range(1..))]
        days: i64,
    },
    /// Show the revocation list DIR/crl.pem, or re-sign it with --refresh.
    ///
    /// Without --refresh: prints its issuer, this and next update, and every
    /// revoked certificate (serial, node, time); checks that the CA in
    /// DIR/ca.crt signed it. Exits 1 if it is past its next update (a
    /// gateway refuses it by default), 2 if it cannot be read or is not
    /// from the CA. With --refresh: signs it again with a new this update,
    /// a next update --days from now and the next CRL number, keeping every
    /// entry; run it before the next update is due (from cron, say).
    Crl {
        /// The PKI directory holding ca.crt, ca.key and crl.pem.
        #[arg(long)]
        dir: PathBuf,
        /// Re-sign the list with a new validity, keeping its entries.
        #[arg(long)]
        refresh: bool,
        /// With --refresh: days until the next update.
        #[arg(long, requires = "refresh", default_value_t = isx_tls::pki::DEFAULT_CRL_DAYS, value_parser = clap::value_parser!(i64).range(1..))]
        days: i64,
    },
    /// Issue a certificate for one more node from the CA in DIR.
    ///
    /// Writes DIR/NODE.crt and DIR/NODE.key. Refuses the names of isx's own
    /// files (ca, gateway, audit, audit-hmac, audit-text, crl, revoked, witness), and a
    /// node that already has a certificate or key unless --force is given.
    Issue {
        /// The PKI directory holding ca.key.
        #[arg(long)]
        dir: PathBuf,
        /// The node id, e.g. es-police.
        node: String,
        /// Days the certificate stays valid.
        #[arg(long, default_value_t = 365)]
        days: i64,
        /// Replace the node's certificate and key. The certificate replaced
        /// stays valid until it expires unless revoked first (`isx pki revoke`).
        #[arg(long)]
        force: bool,
    },
}

#[derive(clap::Args, Debug)]
struct GatewayArgs {
    /// The gateway configuration file (see deploy/local/gateway.toml).
    #[arg(long, short)]
    config: PathBuf,
    /// Override the PKI directory from the file; CRLs the file lists inside
    /// its PKI directory are read from this one.
    #[arg(long)]
    pki: Option<PathBuf>,
    /// Override the data directory from the file.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Override the listen address from the file, e.g. 127.0.0.1:7443.
    #[arg(long)]
    listen: Option<SocketAddr>,
}

#[derive(clap::Args, Debug)]
struct NodeArgs {
    /// The node configuration file (see deploy/local/nodes/).
    #[arg(long, short)]
    config: PathBuf,
    /// Override the officer named on the node's calls.
    #[arg(long)]
    officer: Option<String>,
    /// Override the gateway address from the file.
    #[arg(long)]
    gateway: Option<String>,
    /// Override the PKI directory from the file.
    #[arg(long)]
    pki: Option<PathBuf>,
    /// Override the data directory from the file.
    #[arg(long)]
    data: Option<PathBuf>,
}

fn init_logging(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("ISX_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
}

/// Cancels the token on Ctrl-C or SIGTERM.
fn cancel_on_signal(token: CancellationToken) {
    // The handlers are installed here, before the caller says it is up, so a
    // signal that arrives right after is never the default (fatal) action.
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
        tokio::spawn(async move {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            token.cancel();
        });
    }
    #[cfg(not(unix))]
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        token.cancel();
    });
}

/// On SIGHUP, asks the serving gateway to do what SIGHUP does: reload the
/// policy directory if a request file names the officer and the reason
/// (`isx admin request-reload`), else refuse; re-read the revocation lists.
/// The gateway records and logs both; this only reports what it answered.
fn reload_on_hangup(reload: isx_gateway::hangup::ReloadHandle) {
    #[cfg(unix)]
    tokio::spawn(async move {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else { return };
        while hup.recv().await.is_some() {
            if let Err(e) = reload.hangup().await {
                tracing::warn!(error = %e, "SIGHUP");
                return;
            }
        }
    });
    #[cfg(not(unix))]
    let _ = reload;
}

async fn gateway(args: GatewayArgs) -> Result<()> {
    let mut config = isx_gateway::GatewayConfig::load(&args.config)?;
    if let Some(pki) = args.pki {
        // CRLs kept in the file's PKI directory (`crls = ["pki/crl.pem"]`) come
        // from the new one, whose CA signed them.
        config.crls = isx_tls::crl::rebase(&config.crls, &config.pki_dir, &pki);
        config.pki_dir = pki;
    }
    if let Some(data) = args.data {
        config.data_dir = data;
    }
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let gateway = isx_gateway::Gateway::open(config)?;
    let shutdown = CancellationToken::new();
    cancel_on_signal(shutdown.clone());
    reload_on_hangup(gateway.reload_handle());
    // Tools and tests that start the gateway on port 0 read this line.
    println!("isx gateway listening on {}", listener.local_addr()?);
    gateway.serve(listener, shutdown).await?;
    Ok(())
}

async fn node(args: NodeArgs) -> Result<()> {
    let mut config = isx_node::NodeConfig::load(&args.config)?;
    if let Some(officer) = args.officer {
        config.officer = officer;
    }
    if let Some(gateway) = args.gateway {
        config.gateway = gateway;
    }
    if let Some(pki) = args.pki {
        config.pki_dir = pki;
    }
    if let Some(data) = args.data {
        config.data_dir = data;
    }
    let options = isx_node::ClientOptions {
        node: config.id.clone(),
        pki_dir: config.pki_dir.clone(),
        gateway: config.gateway.clone(),
        officer: config.officer.clone(),
    };
    // Handle SIGTERM and Ctrl-C before saying we are up (`isx up` waits for that line).
    let shutdown = CancellationToken::new();
    cancel_on_signal(shutdown.clone());
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut node = isx_node::MockNode::open(options, &config.data_dir)?
        .with_rules(config.access.clone())
        .with_events(tx)
        .with_inspect(isx_node::inspect::socket_path(&config.data_dir));
    if config.witness {
        let witness = isx_node::witness::AgencyWitness::load(&config.pki_dir, config.id.as_str(), &config.data_dir)?;
        let listener = std::net::TcpListener::bind(config.witness_listen).with_context(|| {
            format!("witness_listen {}: cannot listen there (is another witness using it?)", config.witness_listen)
        })?;
        println!(
            "{} witness: https://{}/add-checkpoint, key {}",
            config.id,
            listener.local_addr()?,
            witness.witness.verifier_key()
        );
        node = node.with_witness(witness, listener);
    }
    println!("{} node: {} alerts in its store; connecting to {}", config.id, node.inbox().len(), config.gateway);
    let task = tokio::spawn(node.run(shutdown.clone()));
    let printer = tokio::spawn(async move {
        while let Some(event) = rx.recv().await {
            output::print_node_event(&event);
        }
    });
    task.await?;
    printer.abort();
    println!("{} node stopped", config.id);
    Ok(())
}

/// Prints a revocation list: issuer, updates, entries (with the node from
/// revoked.txt where known).
fn print_crl(crl: &isx_tls::crl::LoadedCrl, entries: &[isx_tls::pki::RevokedEntry], now: time::OffsetDateTime) {
    let at = |t: time::OffsetDateTime| {
        t.format(&time::format_description::well_known::Rfc3339).unwrap_or_else(|_| t.to_string())
    };
    println!("{}", crl.path.display());
    println!("  issuer       {}", crl.issuer);
    if let Some(number) = crl.number {
        println!("  CRL number   {number}");
    }
    println!("  this update  {}", at(crl.this_update));
    let days = crl.days_until_next_update(now);
    let due = if crl.is_stale(now) { "PAST".to_owned() } else { format!("in {days} days") };
    println!("  next update  {} ({due})", at(crl.next_update));
    println!("  revoked      {}", crl.revoked.len());
    for r in &crl.revoked {
        let node = entries.iter().find(|e| e.serial == r.serial).map_or("-", |e| e.node.as_str());
        let reason = r.reason.as_deref().unwrap_or("no reason");
        println!("    {}  {node}  revoked {}  ({reason})", r.serial, at(r.revoked_at));
    }
}

/// Tells, on stderr, what replacing a PKI did and what it breaks.
fn warn_replaced(dir: &std::path::Path, replaced: &isx_tls::pki::Replaced) {
    eprintln!(
        "warning: replaced the whole PKI in {}; its {} old files are in {} (put them back to undo; delete the folder once nothing needs them)",
        dir.display(),
        replaced.files.len(),
        replaced.folder.display()
    );
    eprintln!(
        "  - every certificate of the old CA is refused by a gateway that trusts the new ca.crt: give each agency its new certificate and key"
    );
    if !replaced.named("audit.key").is_empty() {
        eprintln!(
            "  - a gateway whose audit log was signed with the old audit.key no longer starts (\"checkpoint signature does not verify\"): start it on a new data directory, or put the old audit keys back"
        );
    }
    let stores = replaced.named(".store.key");
    if !stores.is_empty() {
        let names: Vec<String> =
            stores.iter().filter_map(|p| p.file_name()).map(|n| n.to_string_lossy().into_owned()).collect();
        eprintln!(
            "  - data sealed with the old store keys ({}) cannot be read without them: use new data directories, or put the old keys back",
            names.join(", ")
        );
    }
}

fn pki(cmd: PkiCommand) -> Result<ExitCode> {
    match cmd {
        PkiCommand::Init { dir, nodes, gateway_names, days, force, audit_origin } => {
            let nodes =
                nodes.into_iter().map(isx_core::NodeId::new).collect::<Result<Vec<_>, _>>().context("--nodes")?;
            let opts =
                isx_tls::pki::InitOptions { dir, nodes, gateway_names, force, validity: time::Duration::days(days) };
            let summary = isx_tls::pki::init(&opts)?;
            for file in &summary.files {
                println!("wrote {}", file.display());
            }
            let deployment = isx_witness::keys::init_deployment_with(
                &opts.dir,
                &opts.nodes,
                audit_origin.as_deref(),
                opts.validity,
            )?;
            for file in &deployment.files {
                println!("wrote {}", file.display());
            }
            println!(
                "development PKI ready in {} ({} node identities, valid {days} days); audit log origin {}",
                opts.dir.display(),
                opts.nodes.len(),
                deployment.origin
            );
            if let Some(replaced) = &summary.replaced {
                warn_replaced(&opts.dir, replaced);
            }
        }
        PkiCommand::Revoke { dir, nodes, days } => {
            let nodes = nodes.into_iter().map(isx_core::NodeId::new).collect::<Result<Vec<_>, _>>().context("NODES")?;
            let path = isx_tls::pki::revoke_with(&dir, &nodes, time::Duration::days(days))?;
            let crl = isx_tls::pki::read_crl(&dir)?;
            println!(
                "wrote {} ({} revoked, next update in {days} days); a gateway that lists it under `crls` applies it when it loads its CRLs again (at start, on SIGHUP)",
                path.display(),
                crl.revoked.len()
            );
        }
        PkiCommand::Crl { dir, refresh, days } => {
            if refresh {
                let path = isx_tls::pki::refresh_crl(&dir, time::Duration::days(days))?;
                println!("re-signed {}", path.display());
            }
            let crl = isx_tls::pki::read_crl(&dir)?;
            let now = time::OffsetDateTime::now_utc();
            print_crl(&crl, &isx_tls::pki::revoked_entries(&dir)?, now);
            if crl.is_stale(now) {
                println!(
                    "STALE: {} is past its next update; a gateway refuses it. Re-sign it: isx pki crl --dir {} --refresh",
                    crl.path.display(),
                    dir.display()
                );
                return Ok(ExitCode::from(1));
            }
        }
        PkiCommand::Issue { dir, node, days, force } => {
            let node = isx_core::NodeId::new(node).context("NODE")?;
            let validity = time::Duration::days(days);
            let mut files = isx_tls::pki::issue_node_with(&dir, &node, validity, force)?;
            // Its witness identity too, so that its agency can witness the gateway.
            files.extend(isx_witness::keys::issue_node_witness(&dir, &node, validity)?);
            for file in files {
                println!("wrote {}", file.display());
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        #[cfg(feature = "harness")]
        Command::Demo { keep } => {
            // Installed now, so that Ctrl-C at any time after the demo
            // starts stops it cleanly.
            let interrupt = if keep {
                Some(tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?)
            } else {
                None
            };
            let hold: Option<std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>> =
                interrupt.map(|mut interrupt| {
                    Box::pin(async move {
                        interrupt.recv().await;
                    }) as _
                });
            let report = isx_testkit::demo::run_with(&mut std::io::stdout(), hold).await?;
            return Ok(if report.ok() { ExitCode::SUCCESS } else { ExitCode::FAILURE });
        }
        Command::Pki(cmd) => return pki(cmd),
        Command::Gateway(args) => gateway(args).await?,
        Command::Node(args) => node(args).await?,
        Command::Alert(cmd) => return alert::run(cmd).await,
        Command::Lookup(args) => return access::lookup(args).await,
        Command::Access(cmd) => return access::run(cmd).await,
        #[cfg(feature = "harness")]
        Command::Scenario(cmd) => return scenario::run(cmd).await,
        Command::Up(args) => return up::run(args).await,
        Command::Agency(cmd) => return agency::run(cmd).await,
        Command::Policy(cmd) => return policy::run(cmd).await,
        Command::Audit(cmd) => return audit::run(cmd).await,
        Command::Admin(cmd) => return admin::run(cmd).await,
        Command::Console(args) => return console::run(args).await,
        Command::Witness(args) => {
            // Handled before the witness says it is up.
            let shutdown = CancellationToken::new();
            cancel_on_signal(shutdown.clone());
            witness::run(args, shutdown).await?
        }
        #[cfg(feature = "harness")]
        Command::Bench(args) => bench::run(args).await?,
    }
    Ok(ExitCode::SUCCESS)
}

/// The exit status of a command whose output went into a pipe that closed:
/// 128 + SIGPIPE, what a shell reports for a program that SIGPIPE stopped.
const BROKEN_PIPE_EXIT: u8 = 141;

/// Ends the process quietly, with [`BROKEN_PIPE_EXIT`], when printing to
/// stdout or stderr fails because the reader went away (`isx … | head -1`).
///
/// The Unix convention is to die of SIGPIPE. Rust sets SIGPIPE to ignored
/// before `main` (tokio leaves it so), so a write to a closed pipe returns
/// `EPIPE` and `println!` panics with a backtrace; putting the default back
/// needs `signal(2)`, which is unsafe code (forbidden in this workspace), and
/// would also let SIGPIPE kill a process writing to a Unix socket (`isx
/// agency show`) or a child's pipe. So the panic hook recognises the
/// `println!` failure and exits with the status a SIGPIPE death shows in
/// the shell, printing nothing; every other panic keeps the default hook.
/// `isx up` is left out: exiting there would orphan its children.
fn quiet_on_broken_pipe() {
    #[cfg(unix)]
    {
        let epipe = std::io::Error::from_raw_os_error(rustix::io::Errno::PIPE.raw_os_error()).to_string();
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let payload = info.payload();
            let message = payload
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| payload.downcast_ref::<&str>().copied())
                .unwrap_or_default();
            if message.starts_with("failed printing to std") && message.ends_with(&epipe) {
                std::process::exit(BROKEN_PIPE_EXIT.into());
            }
            default(info)
        }));
    }
}

/// True if `e` is a failed write to a pipe whose reader went away, as a
/// `writeln!(stdout)?` returns it (no context around it: a broken
/// connection to the gateway comes wrapped, and is reported).
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Up(_)) {
        quiet_on_broken_pipe();
    }
    let default_log = match cli.command {
        Command::Gateway(_) | Command::Node(_) | Command::Up(_) | Command::Witness(_) => "info",
        // The refusals these provoke on purpose are expectations, not news.
        #[cfg(feature = "harness")]
        Command::Scenario(_) | Command::Demo { .. } => "error",
        _ => "warn",
    };
    init_logging(default_log);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) if is_broken_pipe(&e) => ExitCode::from(BROKEN_PIPE_EXIT),
        Err(e) => {
            eprintln!("error: {}", output::error_chain(&e));
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// clap checks every subcommand's arguments (unique names, valid references).
    #[test]
    fn the_command_line_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
