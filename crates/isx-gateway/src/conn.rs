//! Who is calling: the identity of a connection, read once at the TLS
//! handshake, and what each request says about the person acting.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use isx_tls::PeerIdentity;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tonic::Request;
use tonic::transport::server::Connected;

use crate::error::{OFFICER_HEADER, RequestError};

/// Who is on the other end of a connection, attached to every request.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// The verified identity from the client certificate.
    pub identity: PeerIdentity,
    /// The peer's socket address.
    pub remote: SocketAddr,
    /// Set once the connection's first request arrives (the header-read
    /// watchdog closes a connection that sends none in time).
    pub requested: Arc<AtomicBool>,
}

impl ConnInfo {
    /// A connection of `identity` from `remote`, with no request yet.
    pub fn new(identity: PeerIdentity, remote: SocketAddr) -> Self {
        Self { identity, remote, requested: Arc::default() }
    }

    /// Records that a request arrived on this connection.
    pub fn mark_requested(&self) {
        self.requested.store(true, Ordering::Release);
    }

    /// True once a request arrived on this connection.
    pub fn has_requested(&self) -> bool {
        self.requested.load(Ordering::Acquire)
    }
}

/// What a request concerns, as the caller named it (at most 64 characters).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Subject {
    /// Nothing in particular.
    #[default]
    None,
    /// An alert, by id.
    Alert(String),
    /// A hit, by id.
    Hit(String),
    /// An access request, by id.
    Request(String),
}

impl Subject {
    /// An alert id, cut to 64 characters.
    pub fn alert(id: &str) -> Self {
        Self::Alert(short(id))
    }

    /// A hit id, cut to 64 characters.
    pub fn hit(id: &str) -> Self {
        Self::Hit(short(id))
    }

    /// An access request id, cut to 64 characters; `None` for text that is
    /// not shaped like one (`ar-…`), which a refusal record does not repeat.
    pub fn request(id: &str) -> Self {
        if id.starts_with("ar-") { Self::Request(short(id)) } else { Self::None }
    }

    /// The id, whatever it names, for spans.
    pub fn id(&self) -> &str {
        match self {
            Self::None => "",
            Self::Alert(id) | Self::Hit(id) | Self::Request(id) => id,
        }
    }
}

fn short(id: &str) -> String {
    id.chars().take(64).collect()
}

/// What a request says about who made it and what it concerns, as far as it
/// can be read before any check (for spans and refusal records).
#[derive(Debug, Clone, Default)]
pub struct RequestInfo {
    /// The connection's identity; `None` if the request did not come over a
    /// registered connection.
    pub conn: Option<ConnInfo>,
    /// The `x-isx-officer` value as sent (at most 128 characters), or empty.
    pub officer: String,
    /// What the call concerns.
    pub subject: Subject,
}

impl RequestInfo {
    /// Reads what `req` says about itself; `subject` names what it concerns.
    pub fn of<T>(req: &Request<T>, subject: Subject) -> Self {
        Self::from_parts(req.extensions().get::<ConnInfo>(), req.metadata().get(OFFICER_HEADER), subject)
    }

    /// Reads what an HTTP request says about itself, before any decoding.
    pub fn of_http<B>(req: &http::Request<B>) -> Self {
        Self::from_parts(req.extensions().get::<ConnInfo>(), req.headers().get(OFFICER_HEADER), Subject::None)
    }

    fn from_parts<V: AsRef<[u8]>>(conn: Option<&ConnInfo>, officer: Option<V>, subject: Subject) -> Self {
        let officer = officer
            .as_ref()
            .and_then(|v| std::str::from_utf8(v.as_ref()).ok())
            .unwrap_or("")
            .chars()
            .take(128)
            .collect();
        Self { conn: conn.cloned(), officer, subject }
    }

    /// The calling node's id, or empty.
    pub fn node(&self) -> String {
        self.conn.as_ref().map(|c| c.identity.node.to_string()).unwrap_or_default()
    }
}

/// Reads and checks the `x-isx-officer` metadata.
pub fn officer<T>(req: &Request<T>) -> Result<String, RequestError> {
    let value = req.metadata().get(OFFICER_HEADER).ok_or(RequestError::MissingOfficer)?;
    let text = value.to_str().map_err(|_| RequestError::BadOfficer("must be printable ASCII".into()))?.trim();
    if text.is_empty() {
        return Err(RequestError::MissingOfficer);
    }
    if text.len() > 128 {
        return Err(RequestError::BadOfficer("is longer than 128 characters".into()));
    }
    Ok(text.to_owned())
}

/// A TLS connection whose client certificate named a registered node.
///
/// It fails every read and write once `kill` is cancelled, so that a peer
/// that stopped reading cannot hold the gateway's shutdown forever.
pub struct TlsConn {
    /// The TLS stream.
    inner: tokio_rustls::server::TlsStream<TcpStream>,
    /// Who is on the other end.
    info: ConnInfo,
    /// Resolves when the gateway aborts its connections, or this one.
    kill: Pin<Box<tokio_util::sync::WaitForCancellationFutureOwned>>,
    /// What it holds while open, given back when it closes.
    _held: Held,
}

/// What an open connection holds: its places among `limits.max_connections`
/// and its node's `max_connections_per_node`, and its entry among the
/// connections a revocation may close.
#[derive(Debug)]
pub struct Held {
    /// The two permits (held, never read: dropping them gives the places back).
    pub _permits: [tokio::sync::OwnedSemaphorePermit; 2],
    /// The revocation registry's entry (none if its serial did not parse;
    /// held, never read: dropping it deregisters the connection).
    pub _registered: Option<crate::revocation::Registered>,
}

impl TlsConn {
    /// A connection of `info`'s node, aborted when `kill` is cancelled,
    /// holding `held` while it is open.
    pub fn new(
        inner: tokio_rustls::server::TlsStream<TcpStream>,
        info: ConnInfo,
        kill: tokio_util::sync::CancellationToken,
        held: Held,
    ) -> Self {
        Self { inner, info, kill: Box::pin(kill.cancelled_owned()), _held: held }
    }

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
