//! `isx up`: the gateway and each agency of a local deployment as separate
//! processes, started in order and stopped together.
//!
//! Integration testers stop and kill agencies on purpose, so an agency that
//! exits is reported (its name and exit status) and the rest keep running;
//! with `--restart` it is started again after a short back-off, at most
//! [`RESTARTS_PER_MINUTE`] times a minute. Each agency has a supervising task
//! of its own ([`supervise`]). The gateway is the one process everything
//! needs: if it exits, everything stops. SIGHUP to `isx up` is forwarded to
//! the gateway, which reloads its policy.

/// `println!` that ignores a closed stdout: `isx up | head` must not panic
/// (the panic hook that ends other commands quietly would orphan the
/// children here), so once the reader is gone `isx up` goes on without
/// printing until Ctrl-C stops everything.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// `eprintln!` that ignores a closed stderr (see [`say!`]).
macro_rules! say_err {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Start the gateway and every agency of deploy/local as separate processes.
///
/// Reads TOPOLOGY (default deploy/local/topology.toml): the gateway config and
/// the agencies' node configs. Creates the development PKI on first use,
/// starts the gateway, waits until it listens, starts each agency against
/// it, prints where everything is and how to talk to it, and stops them all
/// on Ctrl-C (or SIGTERM), agencies first.
///
/// An agency that exits is reported with its exit status and the others keep
/// running; with --restart it is started again after a short back-off (0.5 s,
/// doubling up to 8 s), at most 5 times a minute. If the gateway exits,
/// everything stops. SIGHUP is forwarded to the gateway, which reloads its
/// policy. Exits 1 if the gateway ended on its own, or an agency was down at
/// the end, or a process did not stop cleanly.
#[derive(Args, Debug)]
pub struct UpArgs {
    /// The topology file.
    #[arg(default_value = "deploy/local/topology.toml")]
    topology: PathBuf,
    /// Keep the PKI (DIR/pki) and data (DIR/data) here instead of where the configs say.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Listen here instead of the gateway config's address (port 0 picks a free one).
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// Start only the gateway (e.g. for `isx scenario run --against`).
    #[arg(long)]
    no_agencies: bool,
    /// Start an agency again when it exits (short back-off, at most 5 restarts a minute each).
    #[arg(long, conflicts_with = "no_agencies")]
    restart: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TopologyFile {
    /// The gateway config, relative to the topology file.
    gateway: PathBuf,
    /// The agencies' node configs, relative to the topology file.
    #[serde(default)]
    agencies: Vec<PathBuf>,
}

/// How many times a minute `--restart` starts one agency again.
pub const RESTARTS_PER_MINUTE: usize = 5;

/// The back-off before the first restart; it doubles with each restart within a minute.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);

/// The longest back-off.
const MAX_BACKOFF: Duration = Duration::from_secs(8);

/// How long a child's exit waits for a Ctrl-C (or SIGTERM) of `isx up`
/// itself before it is reported as an exit of its own.
const SIGNAL_GRACE: Duration = Duration::from_millis(200);

/// How long a process may take to stop after SIGTERM before it is killed.
const STOP_LIMIT: Duration = Duration::from_secs(10);

fn signal(child: &Child, signal: rustix::process::Signal) {
    if let Some(pid) = child.id().and_then(|id| rustix::process::Pid::from_raw(id as i32)) {
        let _ = rustix::process::kill_process(pid, signal);
    }
}

/// Forwards a child's output lines to ours, prefixed with its name.
fn relay(name: &str, out: impl tokio::io::AsyncRead + Unpin + Send + 'static, to_stderr: bool) {
    let name = name.to_owned();
    tokio::spawn(async move {
        let mut lines = BufReader::new(out).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if to_stderr {
                say_err!("[{name}] {line}");
            } else {
                say!("[{name}] {line}");
            }
        }
    });
}

fn spawn(name: &str, args: &[String]) -> Result<Child> {
    let exe = std::env::current_exe().context("cannot find the isx executable")?;
    Command::new(exe)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start {name}"))
}

/// Starts an agency and waits for its first line, which says it is up (and
/// handles signals); its output is relayed from then on.
async fn start_agency(id: &str, args: &[String]) -> Result<Child> {
    let mut child = spawn(id, args)?;
    relay(id, child.stderr.take().context("node stderr")?, true);
    let mut lines = BufReader::new(child.stdout.take().context("node stdout")?).lines();
    match tokio::time::timeout(Duration::from_secs(30), lines.next_line()).await {
        Ok(Ok(Some(line))) => say!("[{id}] {line}"),
        _ => {
            let _ = child.start_kill();
            let status = child.wait().await.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string());
            bail!("agency {id} did not start ({status}); its messages are above");
        }
    }
    relay(id, lines.into_inner(), false);
    Ok(child)
}

/// Stops a child with SIGTERM, killing it if it has not ended within
/// [`STOP_LIMIT`]; prints how it ended and returns true if it stopped cleanly.
async fn stop(name: &str, mut child: Child) -> bool {
    signal(&child, rustix::process::Signal::TERM);
    match tokio::time::timeout(STOP_LIMIT, child.wait()).await {
        Ok(Ok(status)) if status.success() => {
            say!("  {name} stopped");
            true
        }
        Ok(Ok(status)) => {
            say!("  {name} ended: {status}");
            false
        }
        _ => {
            let _ = child.kill().await;
            say!("  {name} did not stop within {} s; killed", STOP_LIMIT.as_secs());
            false
        }
    }
}

/// The back-off before a restart when `recent` restarts happened within the last minute.
fn backoff(recent: usize) -> Duration {
    FIRST_BACKOFF.saturating_mul(1 << recent.min(16)).min(MAX_BACKOFF)
}

/// Runs one agency until `shutdown`: reports each exit and, with `restart`,
/// starts it again (bounded by [`RESTARTS_PER_MINUTE`]). Returns true if it
/// was running at the end and stopped cleanly.
async fn supervise(id: String, args: Vec<String>, child: Child, restart: bool, shutdown: CancellationToken) -> bool {
    let mut child = Some(child);
    let mut why = String::new();
    let mut restarts: VecDeque<Instant> = VecDeque::new();
    loop {
        if let Some(mut running) = child.take() {
            tokio::select! {
                status = running.wait() => {
                    // Ctrl-C in a terminal reaches the agencies too: one that
                    // exits just before `isx up` handles its own signal is
                    // stopping with the rest, not exiting on its own.
                    if tokio::time::timeout(SIGNAL_GRACE, shutdown.cancelled()).await.is_ok() {
                        return match status {
                            Ok(status) if status.success() => {
                                say!("  {id} stopped");
                                true
                            }
                            Ok(status) => {
                                say!("  {id} ended: {status}");
                                false
                            }
                            Err(e) => {
                                say!("  {id}: cannot wait for it: {e}");
                                false
                            }
                        };
                    }
                    why = match status {
                        Ok(status) => status.to_string(),
                        Err(e) => format!("cannot wait for it: {e}"),
                    };
                }
                _ = shutdown.cancelled() => return stop(&id, running).await,
            }
        }
        if !restart {
            say!("isx up: agency {id} exited ({why}); the others keep running (`isx up --restart` restarts agencies)");
            break;
        }
        let now = Instant::now();
        while restarts.front().is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(60)) {
            restarts.pop_front();
        }
        if restarts.len() >= RESTARTS_PER_MINUTE {
            say!(
                "isx up: agency {id} exited ({why}); it was restarted {} times within a minute, so it stays down",
                restarts.len()
            );
            break;
        }
        let delay = backoff(restarts.len());
        say!(
            "isx up: agency {id} exited ({why}); restarting it in {:.1} s (restart {} of at most {RESTARTS_PER_MINUTE} a minute)",
            delay.as_secs_f64(),
            restarts.len() + 1
        );
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.cancelled() => break,
        }
        restarts.push_back(Instant::now());
        match start_agency(&id, &args).await {
            Ok(started) => {
                say!("isx up: agency {id} restarted (pid {})", started.id().unwrap_or(0));
                child = Some(started);
            }
            Err(e) => why = crate::output::error_chain(&e),
        }
    }
    shutdown.cancelled().await;
    say!("  {id} was down: {why}");
    false
}

/// Creates the development PKI and audit keys if `pki` has none.
fn ensure_pki(pki: &Path, nodes: Vec<isx_core::NodeId>) -> Result<bool> {
    if pki.join("ca.crt").exists() {
        return Ok(false);
    }
    let opts = isx_tls::pki::InitOptions {
        dir: pki.to_owned(),
        nodes,
        gateway_names: vec![],
        force: false,
        validity: time::Duration::days(365),
    };
    isx_tls::pki::init(&opts)?;
    isx_witness::keys::init_deployment(pki, &opts.nodes, None)?;
    Ok(true)
}

/// The directory that holds every agency's data directory as `<dir>/<node id>`, if there is one.
fn agencies_dir(agencies: &[(String, PathBuf)]) -> Option<PathBuf> {
    let (_, first) = agencies.first()?;
    let parent = first.parent()?.to_owned();
    agencies
        .iter()
        .all(|(id, d)| d.parent() == Some(parent.as_path()) && d.file_name() == Some(id.as_ref()))
        .then_some(parent)
}

pub async fn run(args: UpArgs) -> Result<ExitCode> {
    // Handle Ctrl-C, SIGTERM and SIGHUP from the start, so that a signal
    // during start-up stops the children instead of orphaning them.
    use tokio::signal::unix::{SignalKind, signal as on};
    let mut sigint = on(SignalKind::interrupt())?;
    let mut sigterm = on(SignalKind::terminate())?;
    let mut sighup = on(SignalKind::hangup())?;
    let text = std::fs::read_to_string(&args.topology)
        .with_context(|| format!("cannot read {} (give a topology file)", args.topology.display()))?;
    let topology: TopologyFile = toml::from_str(&text).with_context(|| format!("{}", args.topology.display()))?;
    let base = args.topology.parent().unwrap_or(Path::new("")).to_owned();
    let gateway_path = base.join(&topology.gateway);
    let config = isx_gateway::GatewayConfig::load(&gateway_path)?;
    let pki = args.dir.as_ref().map(|d| d.join("pki")).unwrap_or_else(|| config.pki_dir.clone());
    let data = args.dir.as_ref().map(|d| d.join("data"));
    let agencies: Vec<(PathBuf, isx_node::NodeConfig)> = if args.no_agencies {
        vec![]
    } else {
        topology
            .agencies
            .iter()
            .map(|p| {
                let path = base.join(p);
                isx_node::NodeConfig::load(&path).map(|c| (path, c)).map_err(anyhow::Error::from)
            })
            .collect::<Result<_>>()?
    };
    for (path, agency) in &agencies {
        if !config.nodes.contains_key(agency.id.as_str()) {
            bail!("{}: node {} is not registered in {}", path.display(), agency.id, gateway_path.display());
        }
    }
    let ids = config.node_infos().into_iter().map(|n| n.id).collect();
    if ensure_pki(&pki, ids)? {
        say!("created the development PKI in {} (first use)", pki.display());
    }

    // The gateway first; its first stdout line says where it listens.
    let mut gw_args = vec!["gateway".to_owned(), "--config".into(), gateway_path.display().to_string()];
    gw_args.extend(["--pki".into(), pki.display().to_string()]);
    if let Some(d) = &data {
        gw_args.extend(["--data".into(), d.join("gateway").display().to_string()]);
    }
    if let Some(l) = &args.listen {
        gw_args.extend(["--listen".into(), l.clone()]);
    }
    let mut gateway = spawn("gateway", &gw_args)?;
    let stdout = gateway.stdout.take().context("gateway stdout")?;
    relay("gateway", gateway.stderr.take().context("gateway stderr")?, true);
    let mut lines = BufReader::new(stdout).lines();
    let addr = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await? {
            if let Some(addr) = line.strip_prefix("isx gateway listening on ") {
                return Ok::<_, std::io::Error>(Some(addr.trim().to_owned()));
            }
            say!("[gateway] {line}");
        }
        Ok(None)
    })
    .await;
    let addr = match addr {
        Ok(Ok(Some(addr))) => addr,
        _ => {
            let status = gateway.wait().await.map_or_else(|e| format!("cannot wait for it: {e}"), |s| s.to_string());
            bail!("the gateway did not start ({status}); its messages are above");
        }
    };
    relay("gateway", lines.into_inner(), false);
    let dial = addr.replace("127.0.0.1", "localhost");

    // Then each agency, one after the other: each says when it is up.
    let mut started: Vec<(String, Vec<String>, Child, PathBuf)> = Vec::new();
    for (path, agency) in &agencies {
        let id = agency.id.to_string();
        let data_dir = data.as_ref().map(|d| d.join(&id)).unwrap_or_else(|| agency.data_dir.clone());
        let mut a =
            vec!["node".to_owned(), "--config".into(), path.display().to_string(), "--gateway".into(), dial.clone()];
        a.extend(["--pki".into(), pki.display().to_string()]);
        a.extend(["--data".into(), data_dir.display().to_string()]);
        match start_agency(&id, &a).await {
            Ok(child) => started.push((id, a, child, data_dir)),
            Err(e) => {
                for (name, _, child, _) in started {
                    stop(&name, child).await;
                }
                stop("gateway", gateway).await;
                return Err(e);
            }
        }
    }

    let pki_s = pki.display();
    say!("\nisx up: the gateway listens on {addr} (pid {})", gateway.id().unwrap_or(0));
    for (name, _, child, _) in &started {
        say!("  agency {:<10} pid {}", name, child.id().unwrap_or(0));
    }
    say!("\nTalk to it (certificates in {pki_s}; or export ISX_PKI={pki_s} ISX_GATEWAY={dial}):");
    say!(
        "  isx alert send --as de-police --pki {pki_s} --gateway {dial} --officer you deploy/local/alerts/foreign-fighter.json"
    );
    say!(
        "  isx lookup --as frontex --pki {pki_s} --gateway {dial} --officer you --plate \"FG 512 ZT\" --purpose check --justification why"
    );
    say!("  isx access list --as it-police --pki {pki_s} --gateway {dial} --officer you");
    say!(
        "  isx audit search --as auditor --pki {pki_s} --gateway {dial} --officer you --case CASE-1 --operation collection"
    );
    let data_dirs: Vec<(String, PathBuf)> = started.iter().map(|(n, _, _, d)| (n.clone(), d.clone())).collect();
    if let Some((name, dir)) = data_dirs.first() {
        say!("  isx agency show {name} --data {} --pki {pki_s}", dir.display());
    }
    match (args.no_agencies, agencies_dir(&data_dirs)) {
        (true, _) => {
            say!("  isx scenario run --against {dial} --pki {pki_s} deploy/local/scenarios/01-showcase.toml")
        }
        (false, Some(dir)) => say!(
            "  isx scenario run --against {dial} --pki {pki_s} --agencies {} deploy/local/scenarios/01-showcase.toml",
            dir.display()
        ),
        (false, None) => {}
    }
    say!(
        "\nAn agency that exits is reported{}; `kill -HUP {}` reloads the gateway's policy.",
        if args.restart { " and started again" } else { " (--restart starts it again)" },
        std::process::id()
    );
    say!("Ctrl-C stops everything.\n");

    let shutdown = CancellationToken::new();
    let supervisors: Vec<_> = started
        .into_iter()
        .map(|(id, a, child, _)| tokio::spawn(supervise(id, a, child, args.restart, shutdown.clone())))
        .collect();

    // Run until a signal, or until the gateway ends on its own.
    let mut ok = true;
    let ended = loop {
        tokio::select! {
            _ = sigint.recv() => break None,
            _ = sigterm.recv() => break None,
            _ = sighup.recv() => {
                signal(&gateway, rustix::process::Signal::HUP);
                say!("isx up: SIGHUP forwarded to the gateway (it reloads its policy)");
            }
            status = gateway.wait() => {
                // As for agencies: a terminal's Ctrl-C may reach the gateway first.
                let signalled = tokio::time::timeout(SIGNAL_GRACE, async {
                    tokio::select! {
                        _ = sigint.recv() => {}
                        _ = sigterm.recv() => {}
                    }
                })
                .await
                .is_ok();
                break if signalled { None } else { Some(status) };
            }
        }
    };
    if let Some(status) = &ended {
        let status = status.as_ref().map(|s| s.to_string()).unwrap_or_else(|e| e.to_string());
        say_err!("isx up: the gateway exited on its own ({status}); stopping the agencies");
        ok = false;
    }
    say!("isx up: stopping agencies, then the gateway");
    shutdown.cancel();
    // Agencies first (each stops its own), then the gateway.
    for task in supervisors {
        ok &= task.await.unwrap_or(false);
    }
    if ended.is_none() {
        ok &= stop("gateway", gateway).await;
    }
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
