//! The accept loop: TCP connections, TLS handshakes, and the registration
//! check that keeps an unregistered certificate from reaching any RPC.

use std::collections::BTreeSet;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use isx_core::NodeId;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::conn::{ConnInfo, TlsConn};
use crate::recorder::Recorder;
use crate::records;

/// How long a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What the accept loop needs.
pub(crate) struct Acceptor {
    /// The listening socket.
    pub listener: TcpListener,
    /// TLS with the gateway's certificate and client verification.
    pub tls: TlsAcceptor,
    /// The registered nodes.
    pub known: Arc<BTreeSet<NodeId>>,
    /// Where accepted connections go (the tonic server).
    pub conns: mpsc::Sender<Result<TlsConn, io::Error>>,
    /// Stops accepting.
    pub shutdown: CancellationToken,
    /// Aborts the accepted connections.
    pub kill: CancellationToken,
    /// Records refused connections.
    pub recorder: Arc<Recorder>,
}

/// Accepts TCP connections, completes TLS handshakes concurrently, and passes
/// on those whose certificate names a registered node.
pub(crate) async fn accept_loop(a: Acceptor) {
    loop {
        let (tcp, remote) = tokio::select! {
            _ = a.shutdown.cancelled() => return,
            accepted = a.listener.accept() => match accepted {
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
        let (tls, known, conns, recorder) = (a.tls.clone(), a.known.clone(), a.conns.clone(), a.recorder.clone());
        let kill = a.kill.clone();
        tokio::spawn(async move {
            let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.accept(tcp)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => {
                    warn!(%remote, error = %e, "TLS handshake refused");
                    return;
                }
                Err(_) => {
                    warn!(%remote, "TLS handshake timed out");
                    return;
                }
            };
            let cert = stream.get_ref().1.peer_certificates().and_then(|c| c.first().cloned());
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
                if let Err(e) = recorder.durable(vec![records::unregistered(&identity)]).await {
                    warn!(error = %e, "refused connection not recorded");
                }
                return;
            }
            debug!(%remote, node = %identity.node, "connection accepted");
            let _ = conns.send(Ok(TlsConn::new(stream, ConnInfo { identity, remote }, kill))).await;
        });
    }
}
