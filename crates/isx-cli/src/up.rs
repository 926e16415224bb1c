//! `isx up`: the gateway and each agency of a local deployment as separate
//! processes, started in order and stopped together.

use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Start the gateway and every agency of deploy/local as separate processes.
///
/// Reads TOPOLOGY (default deploy/local/topology.toml): the gateway config and
/// the agencies' node configs. Creates the development PKI on first use,
/// starts the gateway, waits until it listens, starts each agency against
/// it, prints where everything is and how to talk to it, and stops them all
/// on Ctrl-C (or SIGTERM), agencies first. Exits 1 if any process fails.
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

/// A child process and its name.
struct Proc {
    name: String,
    child: Child,
}

fn terminate(proc: &Proc) {
    if let Some(pid) = proc.child.id().and_then(|id| rustix::process::Pid::from_raw(id as i32)) {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    }
}

/// Forwards a child's output lines to ours, prefixed with its name.
fn relay(name: &str, out: impl tokio::io::AsyncRead + Unpin + Send + 'static, to_stderr: bool) {
    let name = name.to_owned();
    tokio::spawn(async move {
        let mut lines = BufReader::new(out).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if to_stderr {
                eprintln!("[{name}] {line}");
            } else {
                println!("[{name}] {line}");
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
    isx_audit::keys::create(pki, isx_audit::keys::DEFAULT_ORIGIN)?;
    Ok(true)
}

pub async fn run(args: UpArgs) -> Result<ExitCode> {
    // Handle Ctrl-C and SIGTERM from the start, so that a signal during
    // start-up stops the children instead of orphaning them.
    let mut sigint = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
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
        println!("created the development PKI in {} (first use)", pki.display());
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
            println!("[gateway] {line}");
        }
        Ok(None)
    })
    .await;
    let addr = match addr {
        Ok(Ok(Some(addr))) => addr,
        _ => {
            let status = gateway.wait().await.ok();
            bail!("the gateway did not start (exit {status:?}); its messages are above");
        }
    };
    relay("gateway", lines.into_inner(), false);
    let dial = addr.replace("127.0.0.1", "localhost");
    let mut procs = vec![Proc { name: "gateway".into(), child: gateway }];

    for (path, agency) in &agencies {
        let id = agency.id.to_string();
        let mut a =
            vec!["node".to_owned(), "--config".into(), path.display().to_string(), "--gateway".into(), dial.clone()];
        a.extend(["--pki".into(), pki.display().to_string()]);
        if let Some(d) = &data {
            a.extend(["--data".into(), d.join(&id).display().to_string()]);
        }
        let mut child = spawn(&id, &a)?;
        relay(&id, child.stderr.take().context("node stderr")?, true);
        // Its first line says it is up (and handles signals).
        let mut lines = BufReader::new(child.stdout.take().context("node stdout")?).lines();
        match tokio::time::timeout(Duration::from_secs(30), lines.next_line()).await {
            Ok(Ok(Some(line))) => println!("[{id}] {line}"),
            _ => {
                procs.push(Proc { name: id.clone(), child });
                for p in &procs {
                    terminate(p);
                }
                bail!("agency {id} did not start; its messages are above");
            }
        }
        relay(&id, lines.into_inner(), false);
        procs.push(Proc { name: id, child });
    }

    let pki_s = pki.display();
    println!("\nisx up: the gateway listens on {addr} (pid {})", procs[0].child.id().unwrap_or(0));
    for p in &procs[1..] {
        println!("  agency {:<10} pid {}", p.name, p.child.id().unwrap_or(0));
    }
    println!("\nTalk to it (certificates in {pki_s}):");
    println!(
        "  isx alert send --as de-police --pki {pki_s} --gateway {dial} --officer you deploy/local/alerts/foreign-fighter.json"
    );
    println!(
        "  isx lookup --as frontex --pki {pki_s} --gateway {dial} --officer you --plate \"FG 512 ZT\" --purpose check --justification why"
    );
    println!("  isx access list --as it-police --pki {pki_s} --gateway {dial} --officer you");
    println!("  isx audit search --as auditor --pki {pki_s} --gateway {dial} --officer you --operation collection");
    if args.no_agencies {
        println!("  isx scenario run --against {dial} --pki {pki_s} deploy/local/scenarios/01-showcase.toml");
    }
    println!("Ctrl-C stops everything.\n");

    // Run until a signal, or until any process ends on its own.
    let early = {
        let waits = procs.iter_mut().map(|p| Box::pin(p.child.wait()));
        tokio::select! {
            _ = sigint.recv() => None,
            _ = sigterm.recv() => None,
            (status, i, _) = futures_select_all(waits) => Some((i, status)),
        }
    };
    let mut ok = true;
    let ended_early = early.is_some();
    if let Some((i, status)) = early {
        eprintln!("isx up: {} exited on its own ({status:?}); stopping the rest", procs[i].name);
        ok = false;
    }
    println!("isx up: stopping agencies, then the gateway");
    // Agencies first, then the gateway, each given 10 s to finish cleanly.
    procs.rotate_left(1);
    for p in procs.iter_mut() {
        terminate(p);
        match tokio::time::timeout(Duration::from_secs(10), p.child.wait()).await {
            Ok(Ok(status)) if status.success() => println!("  {} stopped", p.name),
            Ok(Ok(status)) if ended_early => println!("  {} ended: {status}", p.name),
            Ok(Ok(status)) => {
                println!("  {} ended: {status}", p.name);
                ok = false;
            }
            _ => {
                let _ = p.child.kill().await;
                println!("  {} did not stop within 10 s; killed", p.name);
                ok = false;
            }
        }
    }
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// Waits for the first of several futures; returns its output and index.
async fn futures_select_all<F, T>(futures: impl Iterator<Item = F>) -> (T, usize, ())
where
    F: std::future::Future<Output = T> + Unpin,
{
    let mut futures: Vec<F> = futures.collect();
    std::future::poll_fn(move |cx| {
        for (i, f) in futures.iter_mut().enumerate() {
            if let std::task::Poll::Ready(out) = std::pin::Pin::new(f).poll(cx) {
                return std::task::Poll::Ready((out, i, ()));
            }
        }
        std::task::Poll::Pending
    })
    .await
}
