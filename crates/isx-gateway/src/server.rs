//! The gateway server: TLS 1.3 accept loop, identity per connection, and the
//! tonic router with `Exchange`, health and reflection.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use isx_core::wire::exchange_server::ExchangeServer;
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
pub struct TlsConn {
    inner: tokio_rustls::server::TlsStream<TcpStream>,
    info: ConnInfo,
}

impl Connected for TlsConn {
    type ConnectInfo = ConnInfo;
    fn connect_info(&self) -> ConnInfo {
        self.info.clone()
    }
}

impl AsyncRead for TlsConn {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConn {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
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

/// An opened gateway, ready to serve.
pub struct Gateway {
    config: GatewayConfig,
    tls: Arc<rustls::ServerConfig>,
    store: Store,
    disclose: Arc<dyn Disclose>,
    policy: Arc<PolicyDisclosure>,
    clock: Clock,
    /// Group-commit counters.
    pub commit_stats: Arc<CommitStats>,
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
        let store = Store::open(&config.data_dir.join("gateway.sled"))?;
        Ok(Self {
            config,
            tls,
            store,
            disclose: policy.clone(),
            policy,
            clock: system_clock(),
            commit_stats: Arc::default(),
        })
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
        let (committer, commit_task) = Committer::start(self.store.db().clone(), self.commit_stats.clone());
        let state = Arc::new(State::new(
            &self.config,
            self.store.clone(),
            committer,
            self.disclose.clone(),
            shutdown.clone(),
            self.clock.clone(),
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

        let local = listener.local_addr().ok();
        let (conn_tx, conn_rx) = mpsc::channel::<Result<TlsConn, io::Error>>(64);
        let acceptor = TlsAcceptor::from(self.tls.clone());
        let known: Arc<Vec<isx_core::NodeId>> = Arc::new(state.nodes.keys().cloned().collect());
        let accept_task = tokio::spawn(accept_loop(listener, acceptor, known, conn_tx, shutdown.clone()));
        info!(listen = ?local, nodes = state.nodes.len(), "gateway serving");

        let result = tonic::transport::Server::builder()
            .add_service(health_service)
            .add_service(reflection)
            .add_service(exchange)
            .serve_with_incoming_shutdown(ReceiverStream::new(conn_rx), shutdown.clone().cancelled_owned())
            .await;

        // Drain: no new connections, every subscription ended, then the last flush.
        shutdown.cancel();
        let _ = accept_task.await;
        state.tracker.close();
        state.tracker.wait().await;
        let _ = sweeper.await;
        drop(state);
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
        let (acceptor, known, conns) = (acceptor.clone(), known.clone(), conns.clone());
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
                return;
            }
            debug!(%remote, node = %identity.node, "connection accepted");
            let _ = conns.send(Ok(TlsConn { inner: tls, info: ConnInfo { identity, remote } })).await;
        });
    }
}

/// Drops expired alerts and undelivered copies every `every`.
async fn sweep_expired(state: Arc<State>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = state.shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        match state.store.expire((state.clock)()) {
            Ok(expired) => {
                for e in expired {
                    info!(alert_id = %e.alert_id, undelivered = e.undelivered, "alert expired");
                }
            }
            Err(e) => warn!(error = %e, "expiry sweep failed"),
        }
    }
}
