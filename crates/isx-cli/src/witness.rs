//! `isx witness`: the standalone witness (C2SP tlog-witness) as its own process.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::Args;
use isx_audit::witness::KnownLog;
use tokio_util::sync::CancellationToken;

/// Run a witness: cosign the audit log's checkpoints that extend what it has seen.
///
/// Serves C2SP tlog-witness `POST /add-checkpoint` over HTTPS on --listen.
/// For each log it knows (--log-key; its origin is the key's name) it keeps
/// the last tree size and root it cosigned in --data (one file per origin,
/// fsynced before it answers; the directory is made mode 0700), and
/// cosigns (tlog-cosignature v1, Ed25519) only a checkpoint signed by the
/// log's key that extends that one consistently. Anything else is refused
/// with the spec's status (409 with its size for a stale old size, 422 for
/// a fork or a bad proof, 403 for a bad signature, 404 for an unknown log)
/// and logged as a warning.
///
/// Its files come from `isx pki init` in --pki: the standalone witness
/// (--id witness) uses witness.crt and witness.key (its TLS server
/// certificate) and witness.cosign.key (its cosignature key; give
/// witness.cosign.pub, or the witness line of witness.policy, to those
/// who check it). A node acting as a witness (--id NODE) uses
/// NODE.witness.crt, NODE.witness.key and NODE.cosign.key. Clients need
/// no certificate: the protocol is public.
///
/// Prints `isx witness: serving https://ADDR/add-checkpoint for log ORIGIN
/// as NAME` and its verifier key once it listens, then runs until Ctrl-C
/// or SIGTERM.
#[derive(Args, Debug)]
pub struct WitnessArgs {
    /// The PKI directory holding the witness's certificate and keys (`isx pki init`).
    #[arg(long, value_name = "DIR")]
    pki: PathBuf,
    /// Which witness identity: `witness` (the standalone one) or a node id.
    #[arg(long, default_value = isx_tls::pki::WITNESS_ID)]
    id: String,
    /// Where the witness keeps the last size and root it cosigned per log.
    #[arg(long, value_name = "DIR")]
    data: PathBuf,
    /// The address to listen on (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:7460")]
    listen: SocketAddr,
    /// A log's verifier key, or a file holding one per line; repeat for
    /// more keys or logs [default: the PKI's audit.pub].
    #[arg(long = "log-key", value_name = "FILE_OR_VKEY")]
    log_keys: Vec<String>,
}

/// The known logs of `--log-key` values: each a file of vkeys or a vkey,
/// grouped by origin (the key's name).
fn known_logs(args: &WitnessArgs) -> Result<Vec<KnownLog>> {
    let given = if args.log_keys.is_empty() {
        vec![isx_audit::keys::paths(&args.pki).1.display().to_string()]
    } else {
        args.log_keys.clone()
    };
    let mut logs: Vec<KnownLog> = Vec::new();
    for value in given {
        let path = std::path::Path::new(&value);
        let keys: Vec<String> = if path.exists() {
            let text = std::fs::read_to_string(path).with_context(|| format!("--log-key {value}: cannot read it"))?;
            text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(str::to_owned).collect()
        } else if value.contains('+') {
            vec![value.clone()]
        } else {
            bail!(
                "--log-key {value}: no such file, and not a verifier key (NAME+ID+KEY). The log's key is audit.pub in the PKI directory; create a PKI with `isx pki init --dir DIR`"
            );
        };
        if keys.is_empty() {
            bail!("--log-key {value}: the file holds no verifier key");
        }
        for key in keys {
            signed_note::StandardVerifier::new(&key).map_err(|_| {
                anyhow::anyhow!("--log-key {value}: {key:?} is not a signed-note Ed25519 verifier key (NAME+ID+KEY)")
            })?;
            let origin = isx_audit::keys::key_name(&key).to_owned();
            match logs.iter_mut().find(|l| l.origin == origin) {
                Some(log) if !log.keys.contains(&key) => log.keys.push(key),
                Some(_) => {}
                None => logs.push(KnownLog { origin, keys: vec![key] }),
            }
        }
    }
    Ok(logs)
}

/// Runs the witness until `shutdown` (which the caller cancels on Ctrl-C or SIGTERM).
pub async fn run(args: WitnessArgs, shutdown: CancellationToken) -> Result<()> {
    if args.id != isx_tls::pki::WITNESS_ID {
        isx_core::NodeId::new(args.id.as_str())
            .with_context(|| format!("--id {}: neither `witness` nor a node id", args.id))?;
    }
    let logs = known_logs(&args)?;
    let signer = isx_witness::keys::load_signer(&args.pki, &args.id)?;
    let (cert, key) = isx_tls::pki::witness_tls_paths(&args.pki, &args.id);
    let tls = isx_witness::server_tls(&cert, &key)?;
    let store = isx_audit::witness::Store::open(&args.data)?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr()?;
    let witness = Arc::new(isx_witness::Witness::new(signer, logs, store));
    let origins: Vec<&str> = witness.logs().iter().map(|l| l.origin.as_str()).collect();
    let which = if origins.len() == 1 { "log" } else { "logs" };
    // Tools and tests that start a witness on port 0 read this line.
    println!(
        "isx witness: serving https://{addr}/add-checkpoint for {which} {} as {}",
        origins.join(", "),
        witness.name()
    );
    println!("isx witness: verifier key {}", witness.verifier_key());
    isx_witness::serve(witness.clone(), tls, listener, shutdown).await?;
    println!("isx witness stopped ({} refusals)", witness.refusals());
    Ok(())
}
