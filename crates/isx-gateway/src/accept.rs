//! The accept loop: TCP connections, TLS handshakes, and the registration
//! check that keeps an unregistered certificate from reaching any RPC.
//!
//! Bounded in every direction: at most `limits.max_connections` open and
//! `limits.max_handshakes` in progress (more wait in the kernel's backlog),
//! and at most `limits.max_connections_per_node` of one node (more are refused);
//! a handshake gets `limits.handshake_timeout`, and a connection that sends
//! no request within `limits.header_read_timeout` of it is closed. When the
//! process runs out of file descriptors, the loop backs off instead of
//! spinning, and warns at most once a second with a count.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use isx_core::NodeId;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::conn::{ConnInfo, Held, TlsConn};
use crate::records;
use crate::refusal;
use crate::revocation::Revocation;
use crate::state::State;

/// A warning that is logged at most once a second, with how many were not.
#[derive(Debug, Default)]
pub(crate) struct Throttled {
    /// When it was last logged.
    last: std::sync::Mutex<Option<Instant>>,
    /// How many were not logged since.
    skipped: AtomicU64,
}

impl Throttled {
    /// Calls `log` with the number not logged since the last call, at most
    /// once a second; otherwise only counts.
    pub(crate) fn log(&self, log: impl FnOnce(u64)) {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if last.is_some_and(|t| now.duration_since(t) < Duration::from_secs(1)) {
            self.skipped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        *last = Some(now);
        log(self.skipped.swap(0, Ordering::Relaxed));
    }
}

/// The warnings of the accept loop, each throttled.
#[derive(Debug, Default)]
struct Warnings {
    /// `accept` failed (out of file descriptors, ...).
    accept: Throttled,
    /// A TLS handshake was refused or timed out.
    handshake: Throttled,
    /// A certificate named no node, or an unregistered one.
    identity: Throttled,
}

/// What the accept loop needs.
pub(crate) struct Acceptor {
    /// The listening socket.
    pub listener: TcpListener,
    /// TLS with the gateway's certificate and client verification, and the
    /// open connections its revocation lists may close.
    pub revocation: Arc<Revocation>,
    /// The registered nodes.
    pub known: Arc<BTreeSet<NodeId>>,
    /// Where accepted connections go (the tonic server).
    pub conns: mpsc::Sender<Result<TlsConn, io::Error>>,
    /// Stops accepting.
    pub shutdown: CancellationToken,
    /// Aborts every accepted connection.
    pub kill: CancellationToken,
    /// Limits, the recorder and the refusal bursts.
    pub state: Arc<State>,
}

/// True for the errors of a process or system out of file descriptors or
/// memory, which a retry right away only repeats.
fn is_resource_error(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(code) if code == rustix::io::Errno::MFILE.raw_os_error()
        || code == rustix::io::Errno::NFILE.raw_os_error()
        || code == rustix::io::Errno::NOBUFS.raw_os_error()
        || code == rustix::io::Errno::NOMEM.raw_os_error())
}

/// Accepts TCP connections, completes TLS handshakes concurrently, and passes
/// on those whose certificate names a registered node.
pub(crate) async fn accept_loop(a: Acceptor) {
    let limits = a.state.limits.clone();
    let connections = Arc::new(Semaphore::new(limits.max_connections));
    let per_node: Arc<BTreeMap<NodeId, Arc<Semaphore>>> = Arc::new(
        a.known.iter().map(|n| (n.clone(), Arc::new(Semaphore::new(limits.max_connections_per_node)))).collect(),
    );
    let handshakes = Arc::new(Semaphore::new(limits.max_handshakes));
    let warnings = Arc::new(Warnings::default());
    let mut backoff = Duration::from_millis(10);
    loop {
        // Take the permits first: past the caps, connections wait in the backlog.
        let permits = tokio::select! {
            _ = a.shutdown.cancelled() => return,
            permits = async {
                let conn = connections.clone().acquire_owned().await;
                let handshake = handshakes.clone().acquire_owned().await;
                conn.ok().zip(handshake.ok())
            } => permits,
        };
        let Some((conn_permit, handshake_permit)) = permits else { return };
        let (tcp, remote) = tokio::select! {
            _ = a.shutdown.cancelled() => return,
            accepted = a.listener.accept() => match accepted {
                Ok(pair) => {
                    backoff = Duration::from_millis(10);
                    pair
                }
                Err(e) => {
                    let resource = is_resource_error(&e);
                    warnings.accept.log(|skipped| warn!(error = %e, skipped, "accept failed"));
                    if resource {
                        // Out of descriptors: retrying at once only spins.
                        tokio::select! {
                            _ = a.shutdown.cancelled() => return,
                            _ = tokio::time::sleep(backoff) => {}
                        }
                        backoff = (backoff * 2).min(Duration::from_secs(1));
                    }
                    continue;
                }
            },
        };
        if let Err(e) = tcp.set_nodelay(true) {
            debug!(error = %e, "TCP_NODELAY");
        }
        let tls = TlsAcceptor::from(a.revocation.tls());
        let (revocation, known, conns, state) =
            (a.revocation.clone(), a.known.clone(), a.conns.clone(), a.state.clone());
        let (warnings, kill, limits, per_node) =
            (warnings.clone(), a.kill.child_token(), limits.clone(), per_node.clone());
        tokio::spawn(async move {
            let stream = match tokio::time::timeout(limits.handshake_timeout, tls.accept(tcp)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => {
                    warnings.handshake.log(|skipped| warn!(%remote, error = %e, skipped, "TLS handshake refused"));
                    return;
                }
                Err(_) => {
                    warnings.handshake.log(|skipped| warn!(%remote, skipped, "TLS handshake timed out"));
                    return;
                }
            };
            drop(handshake_permit);
            let cert = stream.get_ref().1.peer_certificates().and_then(|c| c.first().cloned());
            let serial = cert.as_ref().and_then(|c| isx_tls::peer_serial(c).ok());
            let identity = match cert.as_ref().map(isx_tls::peer_identity) {
                Some(Ok(identity)) => identity,
                Some(Err(e)) => {
                    warnings
                        .identity
                        .log(|skipped| warn!(%remote, error = %e, skipped, "connection refused: no node identity"));
                    return;
                }
                None => {
                    warnings
                        .identity
                        .log(|skipped| warn!(%remote, skipped, "connection refused: no client certificate"));
                    return;
                }
            };
            if !known.contains(&identity.node) {
                warnings.identity.log(|skipped| {
                    warn!(%remote, node = %identity.node, skipped, "connection refused: node is not registered")
                });
                let record = records::unregistered(&identity);
                if let Err(e) = refusal::record(&state, source(remote), "unregistered certificate", record).await {
                    warn!(error = %e, "refused connection not recorded");
                }
                return;
            }
            let Some(node_permit) = per_node.get(&identity.node).and_then(|s| s.clone().try_acquire_owned().ok())
            else {
                warnings.identity.log(|skipped| {
                    warn!(%remote, node = %identity.node, skipped, "connection refused: limits.max_connections_per_node")
                });
                let record = records::too_many_connections(&identity, limits.max_connections_per_node);
                if let Err(e) =
                    refusal::record(&state, identity.node.to_string(), "limits.max_connections_per_node", record).await
                {
                    warn!(error = %e, "refused connection not recorded");
                }
                return;
            };
            debug!(%remote, node = %identity.node, "connection accepted");
            let registered = serial.map(|s| revocation.register(s, identity.node.clone(), kill.clone()));
            let info = ConnInfo::new(identity, remote);
            tokio::spawn(watch_first_request(info.clone(), kill.clone(), limits.header_read_timeout));
            let held = Held { _permits: [conn_permit, node_permit], _registered: registered };
            let _ = conns.send(Ok(TlsConn::new(stream, info, kill, held))).await;
        });
    }
}

/// The source of an unregistered peer's refusals: its address, without the port.
fn source(remote: SocketAddr) -> String {
    remote.ip().to_string()
}

/// Closes `conn` if it sends no request within `timeout` of its handshake.
async fn watch_first_request(conn: ConnInfo, kill: CancellationToken, timeout: Duration) {
    tokio::select! {
        _ = kill.cancelled() => {}
        _ = tokio::time::sleep(timeout) => {
            if !conn.has_requested() {
                debug!(remote = %conn.remote, node = %conn.identity.node, "no request within limits.header_read_timeout: closing");
                kill.cancel();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_throttled_warning_is_logged_once_a_second_with_a_count() {
        let t = Throttled::default();
        let mut logged = Vec::new();
        for _ in 0..5 {
            t.log(|skipped| logged.push(skipped));
        }
        assert_eq!(logged, vec![0], "the first is logged, the rest counted");
        assert_eq!(t.skipped.load(Ordering::Relaxed), 4);
    }

    #[test]
    fn out_of_descriptors_is_a_resource_error() {
        assert!(is_resource_error(&io::Error::from_raw_os_error(rustix::io::Errno::MFILE.raw_os_error())));
        assert!(is_resource_error(&io::Error::from_raw_os_error(rustix::io::Errno::NFILE.raw_os_error())));
        assert!(!is_resource_error(&io::Error::from_raw_os_error(rustix::io::Errno::CONNABORTED.raw_os_error())));
    }
}
