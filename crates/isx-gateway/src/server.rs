//! The gateway server: TLS 1.3 accept loop, identity per connection, and the
//! tonic router with `Exchange`, health and reflection.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use isx_audit::AuditLog;
use isx_core::wire::audit_server::AuditServer;
use isx_core::wire::exchange_server::ExchangeServer;
use isx_core::wire::{AuditRecord, Operation, Outcome};
use isx_tls::PeerIdentity;
use isx_tls::config::IdentityFiles;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::Connected;
use tracing::{debug, info, warn};

use crate::audit::{Recorder, about};
use crate::audit_service::AuditService;
use crate::commit::{CommitStats, Committer};
use crate::config::GatewayConfig;
use crate::disclosure::{Disclose, PolicyDisclosure};
use crate::service::{Clock, ExchangeService, State, system_clock};
use crate::store::{Store, StoreError};

/// Who is on the other end of a connection, attached to every request.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// The verified identity from the client certificate.
    pub identity: PeerIdentity,
    /// The peer's socket address.
    pub remote: SocketAddr,
}

/// A TLS connection whose client certificate named a registered node.
///
/// It fails every read and write once `kill` is cancelled, so that a peer
/// that stopped reading cannot hold the gateway's shutdown forever.
pub struct TlsConn {
    inner: tokio_rustls::server::TlsStream<TcpStream>,
    info: ConnInfo,
    kill: Pin<Box<tokio_util::sync::WaitForCancellationFutureOwned>>,
}

impl TlsConn {
    /// An error if the connection was killed (and registers the waker for it).
    fn killed(&mut self, cx: &mut Context<'_>) -> Option<io::Error> {
        self.kill
            .as_mut()
            .poll(cx)
            .is_ready()
            .then(|| io::Error::new(io::ErrorKind::ConnectionAborted, "gateway shutting down"))
    }
}

impl Connected for TlsConn {
    type ConnectInfo = ConnInfo;
    fn connect_info(&self) -> ConnInfo {
        self.info.clone()
    }
}

impl AsyncRead for TlsConn {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(e) = this.killed(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConn {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Some(e) = this.killed(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Why the gateway could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// TLS material is missing or invalid.
    #[error(transparent)]
    Tls(#[from] isx_tls::TlsError),
    /// The audit keys are missing or invalid.
    #[error("audit keys: {0}")]
    AuditKeys(#[from] isx_audit::keys::KeyError),
    /// The audit log failed its integrity check or cannot be read.
    #[error("{0}; the gateway refuses to start")]
    Audit(#[from] isx_audit::AuditError),
    /// The policy directory does not load or validate.
    #[error("policy: {0}")]
    Policy(#[from] isx_policy::PolicyError),
    /// The data directory could not be opened.
    #[error("data directory: {0}")]
    Store(#[from] StoreError),
    /// The reflection service could not be built.
    #[error("reflection: {0}")]
    Reflection(String),
    /// The HTTP/2 server failed.
    #[error("transport: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// How long a shutdown waits for open connections to finish before aborting them.
const DRAIN: Duration = Duration::from_secs(5);

/// An opened gateway, ready to serve.
pub struct Gateway {
    config: GatewayConfig,
    tls: Arc<rustls::ServerConfig>,
    store: Store,
    audit: Arc<AuditLog>,
    fsync: Vec<std::fs::File>,
    disclose: Arc<dyn Disclose>,
    policy: Arc<PolicyDisclosure>,
    clock: Clock,
    /// Group-commit counters.
    pub commit_stats: Arc<CommitStats>,
    faults: Arc<crate::commit::Faults>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway").field("listen", &self.config.listen).finish_non_exhaustive()
    }
}

impl Gateway {
    /// Loads TLS material and opens the data directory.
    pub fn open(config: GatewayConfig) -> Result<Self, StartError> {
        let tls = isx_tls::server_config(&IdentityFiles::in_dir(&config.pki_dir, "gateway"), &config.crls)?;
        std::fs::create_dir_all(&config.data_dir).map_err(|e| StoreError::Sled(e.into()))?;
        let policy = Arc::new(PolicyDisclosure::load(config.policy_dir.clone(), config.redaction.clone())?);
        let db_dir = config.data_dir.join("gateway.sled");
        let faults: Arc<crate::commit::Faults> = Arc::default();
        let store =
            Store::open(&db_dir, &isx_tls::at_rest::key_path(&config.pki_dir, "gateway"))?.with_faults(faults.clone());
        let keys = isx_audit::keys::load(&config.pki_dir)?;
        let (audit, report) = AuditLog::open(store.db(), keys, &|done, total| {
            if total > 100_000 && done % 262_144 == 0 {
                info!(done, total, "checking the audit log");
            }
        })?;
        info!(
            records = report.size,
            checkpoint = report.checkpoint_size,
            index_rows = report.index_rows,
            "audit log verified against its last signed checkpoint"
        );
        // sled's own files; fsynced after each group-commit flush when `audit.fsync` is on.
        let fsync = if config.audit.fsync {
            ["db", "conf"].iter().filter_map(|name| std::fs::File::open(db_dir.join(name)).ok()).collect()
        } else {
            vec![]
        };
        Ok(Self {
            config,
            tls,
            store,
            audit: Arc::new(audit),
            fsync,
            disclose: policy.clone(),
            policy,
            clock: system_clock(),
            commit_stats: Arc::default(),
            faults,
        })
    }

    /// The storage fault switches (fault-injection tests).
    pub fn faults(&self) -> Arc<crate::commit::Faults> {
        self.faults.clone()
    }

    /// The audit log (read-only use: tests and tools).
    pub fn audit_log(&self) -> Arc<AuditLog> {
        self.audit.clone()
    }

    /// The policy in force, to reload it (`SIGHUP`) or explain decisions.
    pub fn policy(&self) -> Arc<PolicyDisclosure> {
        self.policy.clone()
    }

    /// Replaces the disclosure decision (tests and fault injection).
    pub fn with_disclosure(mut self, disclose: Arc<dyn Disclose>) -> Self {
        self.disclose = disclose;
        self
    }

    /// Replaces the clock (tests).
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Serves on `listener` until `shutdown` is cancelled, then drains and closes the store.
    pub async fn serve(self, listener: TcpListener, shutdown: CancellationToken) -> Result<(), StartError> {
        let fsync = self.fsync.iter().filter_map(|f| f.try_clone().ok()).collect();
        let (committer, commit_task) =
            Committer::start(self.store.db().clone(), fsync, self.commit_stats.clone(), self.faults.clone());
        let recorder = Arc::new(
            Recorder::new(self.audit.clone(), committer.clone(), self.clock.clone(), self.config.audit.clone())
                .with_faults(self.faults.clone()),
        );
        let checkpointer = tokio::spawn(recorder.clone().checkpointer(shutdown.clone()));
        let indexer = tokio::spawn(recorder.clone().indexer(shutdown.clone()));
        let state = Arc::new(State::new(
            &self.config,
            self.store.clone(),
            committer,
            self.disclose.clone(),
            shutdown.clone(),
            self.clock.clone(),
            recorder.clone(),
        ));
        let sweeper =
            tokio::spawn(sweep_expired(state.clone(), Duration::from_millis(self.config.delivery.expiry_sweep_ms)));

        let (health, health_service) = tonic_health::server::health_reporter();
        health.set_serving::<ExchangeServer<ExchangeService>>().await;
        let reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(isx_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1()
            .map_err(|e| StartError::Reflection(e.to_string()))?;
        let exchange =
            ExchangeServer::new(ExchangeService::new(state.clone())).max_decoding_message_size(16 * 1024 * 1024);
        let audit = AuditServer::new(AuditService::new(state.clone())).max_encoding_message_size(usize::MAX);

        let local = listener.local_addr().ok();
        let kill = CancellationToken::new();
        let (conn_tx, conn_rx) = mpsc::channel::<Result<TlsConn, io::Error>>(64);
        let acceptor = TlsAcceptor::from(self.tls.clone());
        let known: Arc<Vec<isx_core::NodeId>> = Arc::new(state.nodes.keys().cloned().collect());
        let accept_task = tokio::spawn(accept_loop(
            listener,
            acceptor,
            known,
            conn_tx,
            shutdown.clone(),
            kill.clone(),
            recorder.clone(),
        ));
        info!(listen = ?local, nodes = state.nodes.len(), "gateway serving");

        // Graceful drain on shutdown, bounded: connections still open after
        // DRAIN (a peer that stopped reading holds its stream) are aborted.
        let killer = {
            let (shutdown, kill) = (shutdown.clone(), kill.clone());
            tokio::spawn(async move {
                shutdown.cancelled().await;
                tokio::select! {
                    _ = kill.cancelled() => {}
                    _ = tokio::time::sleep(DRAIN) => {
                        warn!("connections still open {DRAIN:?} after shutdown: aborting them");
                        kill.cancel();
                    }
                }
            })
        };
        let result = tonic::transport::Server::builder()
            .add_service(health_service)
            .add_service(reflection)
            .add_service(exchange)
            .add_service(audit)
            .serve_with_incoming_shutdown(ReceiverStream::new(conn_rx), shutdown.clone().cancelled_owned())
            .await;
        kill.cancel();
        let _ = killer.await;

        // Drain: no new connections, every subscription ended, then the last flush.
        shutdown.cancel();
        let _ = accept_task.await;
        state.tracker.close();
        state.tracker.wait().await;
        let _ = sweeper.await;
        let _ = checkpointer.await;
        let _ = indexer.await;
        drop(state);
        drop(recorder);
        let _ = commit_task.await;
        if let Err(e) = self.store.db().flush_async().await {
            warn!(error = %e, "final flush failed");
        }
        info!("gateway stopped");
        result.map_err(StartError::from)
    }
}

/// Accepts TCP connections, completes TLS handshakes concurrently, and passes
/// on those whose certificate names a registered node.
async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    known: Arc<Vec<isx_core::NodeId>>,
    conns: mpsc::Sender<Result<TlsConn, io::Error>>,
    shutdown: CancellationToken,
    kill: CancellationToken,
    recorder: Arc<Recorder>,
) {
    loop {
        let (tcp, remote) = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    warn!(error = %e, "accept failed");
                    continue;
                }
            },
        };
        if let Err(e) = tcp.set_nodelay(true) {
            debug!(error = %e, "TCP_NODELAY");
        }
        let (acceptor, known, conns, recorder) = (acceptor.clone(), known.clone(), conns.clone(), recorder.clone());
        let kill = kill.clone();
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    warn!(%remote, error = %e, "TLS handshake refused");
                    return;
                }
                Err(_) => {
                    warn!(%remote, "TLS handshake timed out");
                    return;
                }
            };
            let cert = tls.get_ref().1.peer_certificates().and_then(|c| c.first().cloned());
            let identity = match cert.as_ref().map(isx_tls::peer_identity) {
                Some(Ok(identity)) => identity,
                Some(Err(e)) => {
                    warn!(%remote, error = %e, "connection refused: no node identity");
                    return;
                }
                None => {
                    warn!(%remote, "connection refused: no client certificate");
                    return;
                }
            };
            if !known.contains(&identity.node) {
                warn!(%remote, node = %identity.node, "connection refused: node is not registered");
                let record = AuditRecord {
                    node: identity.node.to_string(),
                    cert_fingerprint: identity.fingerprint.clone(),
                    detail: "connection refused: the certificate names a node that is not registered".into(),
                    ..about(None, "", Operation::Denial, Outcome::Refused)
                };
                if let Err(e) = recorder.durable(vec![record]).await {
                    warn!(error = %e, "refused connection not recorded");
                }
                return;
            }
            debug!(%remote, node = %identity.node, "connection accepted");
            let conn =
                TlsConn { inner: tls, info: ConnInfo { identity, remote }, kill: Box::pin(kill.cancelled_owned()) };
            let _ = conns.send(Ok(conn)).await;
        });
    }
}

/// Drops expired alerts, their undelivered copies and lookup rows, and
/// expires access requests past their deadline, every `every`.
async fn sweep_expired(state: Arc<State>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = state.shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        match state.store.expire((state.clock)()) {
            Ok(expired) if !expired.is_empty() => {
                let records = expired
                    .iter()
                    .map(|e| {
                        info!(alert_id = %e.alert_id, undelivered = e.undelivered, "alert expired");
                        for node in &e.undelivered_to {
                            state.dequeued(node, 1);
                        }
                        AuditRecord {
                            alert_id: e.alert_id.clone(),
                            detail: format!("expired: the alert and {} undelivered copies erased", e.undelivered),
                            ..about(None, "", Operation::Erasure, Outcome::Ok)
                        }
                    })
                    .collect();
                if let Err(e) = state.recorder.durable(records).await {
                    warn!(error = %e, "expiry not recorded");
                }
            }
            Ok(_) => {}
            Err(e) => warn!(error = %e, "expiry sweep failed"),
        }
        if let Err(e) = crate::access::expire_due(&state).await {
            warn!(error = %e, "access request expiry failed");
        }
    }
}
