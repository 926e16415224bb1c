//! In-process witnesses for whole-system tests: the same server as `isx
//! witness` (`isx_witness::server`), each on a socket the test kit binds
//! once and keeps, so that its URL in the gateway's witness policy stays
//! the same across a stop and a start, and a stopped witness lets calls
//! wait unanswered (as one that is down) until the gateway's timeout.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use isx_witness::server::Witness;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Why a test witness could not be made or started.
#[derive(Debug, thiserror::Error)]
#[error("witness {id}: {message}")]
pub struct TestWitnessError {
    /// The witness.
    pub id: String,
    /// What failed.
    pub message: String,
}

/// A witness run by the test kit.
pub struct TestWitness {
    id: String,
    pki: PathBuf,
    dir: PathBuf,
    listener: std::net::TcpListener,
    vkey: String,
    running: Option<(CancellationToken, JoinHandle<std::io::Result<()>>, Arc<Witness>)>,
}

impl std::fmt::Debug for TestWitness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestWitness").field("id", &self.id).field("url", &self.url()).finish_non_exhaustive()
    }
}

impl TestWitness {
    /// Witness `id` of the deployment in `pki` (whose log is `origin`),
    /// keeping its state in `dir`. Keys and a certificate are made for an
    /// id that `isx pki init` did not make (it makes `witness` and one per node).
    pub fn new(pki: &Path, id: &str, origin: &str, dir: PathBuf) -> Result<Self, TestWitnessError> {
        let err = |e: &dyn std::fmt::Display| TestWitnessError { id: id.to_owned(), message: e.to_string() };
        let (cert, key) = isx_tls::pki::witness_tls_paths(pki, id);
        if !cert.exists() {
            let ca = isx_tls::pki::DevCa::load(pki).map_err(|e| err(&e))?;
            let (c, k) = ca.issue_witness(id, &[], time::Duration::days(2)).map_err(|e| err(&e))?;
            isx_tls::pki::write_file(&cert, &c, false).map_err(|e| err(&e))?;
            isx_tls::pki::write_file(&key, &k, true).map_err(|e| err(&e))?;
            isx_witness::keys::create(pki, id, &isx_witness::keys::witness_name(origin, id)).map_err(|e| err(&e))?;
        }
        let vkey = isx_witness::keys::load_vkey(pki, id).map_err(|e| err(&e))?;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| err(&e))?;
        Ok(Self { id: id.to_owned(), pki: pki.to_owned(), dir, listener, vkey, running: None })
    }

    /// Its id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Its submission prefix, `https://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("https://{}", self.listener.local_addr().map(|a| a.to_string()).unwrap_or_default())
    }

    /// Its cosignature verifier key.
    pub fn vkey(&self) -> &str {
        &self.vkey
    }

    /// Starts serving (a no-op if it serves), reading its state from its directory.
    pub fn start(&mut self) -> Result<(), TestWitnessError> {
        if self.running.is_some() {
            return Ok(());
        }
        let err = |e: &dyn std::fmt::Display| TestWitnessError { id: self.id.clone(), message: e.to_string() };
        let parts = isx_node::witness::AgencyWitness::load(&self.pki, &self.id, &self.dir).map_err(|e| err(&e))?;
        let socket = self.listener.try_clone().map_err(|e| err(&e))?;
        socket.set_nonblocking(true).map_err(|e| err(&e))?;
        let listener = tokio::net::TcpListener::from_std(socket).map_err(|e| err(&e))?;
        let shutdown = CancellationToken::new();
        let task =
            tokio::spawn(isx_witness::server::serve(parts.witness.clone(), parts.tls, listener, shutdown.clone()));
        self.running = Some((shutdown, task, parts.witness));
        Ok(())
    }

    /// Stops serving; calls then wait unanswered until their timeout.
    pub async fn stop(&mut self) {
        if let Some((shutdown, task, _)) = self.running.take() {
            shutdown.cancel();
            let _ = task.await;
        }
    }

    /// How many requests it refused while running this time (0 when stopped).
    pub fn refusals(&self) -> u64 {
        self.running.as_ref().map_or(0, |(_, _, w)| w.refusals())
    }

    /// Its last refusal, while running.
    pub fn last_refusal(&self) -> Option<String> {
        self.running.as_ref().and_then(|(_, _, w)| w.last_refusal())
    }

    /// The size and root it last cosigned for `origin`.
    pub fn latest(&self, origin: &str) -> Option<isx_audit::witness::Head> {
        isx_audit::witness::Store::open(&self.dir.join("witness")).ok()?.latest(origin).ok().flatten()
    }
}
