//! The accept loop: TCP connections, TLS handshakes, and the registration
//! check that keeps an unregistered certificate from reaching any RPC.
//!
//! Bounded in every direction: at most `limits.max_connections` open and
//! `limits.max_handshakes` in progress (more wait in the kernel's backlog),
//! at most `limits.max_handshakes_per_address` of those from one address
//! (more are closed at once),
//! and at most `limits.max_connections_per_node` of one node (more are refused);
//! a handshake gets `limits.handshake_timeout`, and a connection that sends
//! no request within `limits.header_read_timeout` of it is closed. When the
//! process runs out of file descriptors, the loop backs off instead of
//! spinning, and warns at most once a second with a count.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use std::time::Duration;

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
use crate::throttle::Throttled;

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

/// Handshakes in progress per address.
#[derive(Debug, Default)]
struct PerAddress {
    /// By address.
    counts: std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>,
}

/// One handshake slot of an address, given back when dropped.
struct AddressSlot {
    /// The registry.
    of: Arc<PerAddress>,
    /// The address.
    ip: std::net::IpAddr,
}

impl PerAddress {
    /// A slot for `ip`, unless it already holds `max`.
    fn take(self: &Arc<Self>, ip: std::net::IpAddr, max: usize) -> Option<AddressSlot> {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let n = counts.entry(ip).or_default();
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(AddressSlot { of: self.clone(), ip })
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut counts = self.of.counts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = counts.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.ip);
            }
        }
    }
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
    let per_address = Arc::new(PerAddress::default());
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
        // One address may hold only a few handshake slots: more of its
        // connections are closed at once, so it cannot starve the others.
        let Some(address_slot) = per_address.take(remote.ip(), limits.max_handshakes_per_address) else {
            warnings.handshake.log(|skipped| {
                warn!(%remote, skipped, "connection closed: limits.max_handshakes_per_address handshakes from it in progress")
            });
            continue;
        };
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
            drop(address_slot);
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
    fn one_address_holds_at_most_its_handshake_slots() {
        let per = Arc::new(PerAddress::default());
        let (a, b) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let first = per.take(a, 2).unwrap();
        let _second = per.take(a, 2).unwrap();
        assert!(per.take(a, 2).is_none(), "the third from one address waits for a slot");
        assert!(per.take(b, 2).is_some(), "another address has its own");
        drop(first);
        assert!(per.take(a, 2).is_some(), "a finished handshake gives its slot back");
    }

    #[test]
    fn out_of_descriptors_is_a_resource_error() {
        assert!(is_resource_error(&io::Error::from_raw_os_error(rustix::io::Errno::MFILE.raw_os_error())));
        assert!(is_resource_error(&io::Error::from_raw_os_error(rustix::io::Errno::NFILE.raw_os_error())));
        assert!(!is_resource_error(&io::Error::from_raw_os_error(rustix::io::Errno::CONNABORTED.raw_os_error())));
    }
}
