//! The witness as an HTTPS service: C2SP `tlog-witness` `POST /add-checkpoint`.
//!
//! [`Witness::add_checkpoint`] is the whole answer to one request, in
//! process: parse the body, decide it against the known logs and the last
//! cosigned head of the origin, persist the new head (fsynced, under one
//! lock with the check: `isx_audit::witness::Store::add`), then cosign the
//! checkpoint's note body at the current time and return the signature
//! line. A refusal gets the spec's status (400, 403, 404, 409 with the
//! witness's size as `text/x.tlog.size`, 422) and is reported: a `warn`
//! log line with the origin, the status and the reason, and a counter and
//! the last refusal ([`Witness::refusals`], [`Witness::last_refusal`]) that
//! an agency can show. The request holds no personal data (a checkpoint is
//! an origin, a size and a hash). A state that cannot be read or written
//! is a 500, logged as an error: the witness cosigns nothing it has not
//! persisted.
//!
//! [`serve`] runs it over HTTP/1.1 on TLS 1.3 (rustls, ring). Only
//! `POST /add-checkpoint` exists: another method is 405, another path 404.
//! A body larger than `isx_audit::witness::MAX_BODY` is refused with 413
//! without reading on (by its `Content-Length`, or as soon as it passes
//! the limit), and the connection is closed. A client is bounded in time:
//! [`HANDSHAKE_TIMEOUT`] for TLS, [`READ_TIMEOUT`] for request headers and
//! again for a body, and [`CONNECTION_LIFETIME`] for a kept-alive
//! connection, after which it is closed gracefully; at most
//! [`MAX_CONNECTIONS`] are served at once. No client certificate is asked
//! for: the protocol is public and the checkpoint's signature is its only
//! authentication.

use std::convert::Infallible;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use isx_audit::cosignature::CosignatureSigner;
use isx_audit::witness::{self, KnownLog, MAX_BODY, Refusal, Store};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// The content type of a 409's body: the witness's size and a newline.
pub const SIZE_CONTENT_TYPE: &str = "text/x.tlog.size";

/// The content type of every other answer.
pub const TEXT_CONTENT_TYPE: &str = "text/plain; charset=utf-8";

/// The path of the one endpoint.
pub const ADD_CHECKPOINT_PATH: &str = "/add-checkpoint";

/// How long a TLS handshake may take.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a client may take to send a request's headers, and then its body.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// How long one kept-alive connection is served before it is closed.
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(300);

/// How many connections are served at once; more wait in the listen queue.
pub const MAX_CONNECTIONS: usize = 256;

/// How long [`serve`] waits for open connections after `shutdown`.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// One answer: an HTTP status, its content type and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The HTTP status.
    pub status: u16,
    /// The `Content-Type`.
    pub content_type: &'static str,
    /// The body.
    pub body: Vec<u8>,
}

impl Reply {
    fn text(status: u16, body: impl Into<String>) -> Self {
        Self { status, content_type: TEXT_CONTENT_TYPE, body: body.into().into_bytes() }
    }
}

/// A witness: its cosignature key, the logs it knows, and its state.
pub struct Witness {
    signer: CosignatureSigner,
    logs: Vec<KnownLog>,
    store: Store,
    refusals: AtomicU64,
    last_refusal: Mutex<Option<String>>,
}

impl std::fmt::Debug for Witness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Witness").field("signer", &self.signer).field("logs", &self.logs).finish_non_exhaustive()
    }
}

impl Witness {
    /// A witness that cosigns as `signer` (at the current time, whatever
    /// time the signer was given), for `logs`, keeping its state in `store`.
    pub fn new(signer: CosignatureSigner, logs: Vec<KnownLog>, store: Store) -> Self {
        Self { signer, logs, store, refusals: AtomicU64::new(0), last_refusal: Mutex::new(None) }
    }

    /// The witness's key name.
    pub fn name(&self) -> &str {
        signed_note::Signer::name(&self.signer)
    }

    /// Its verifier key (C2SP vkey), for the policies of those who check it.
    pub fn verifier_key(&self) -> String {
        self.signer.verifier_key()
    }

    /// The logs it knows.
    pub fn logs(&self) -> &[KnownLog] {
        &self.logs
    }

    /// How many requests it has refused since it started (every 4xx answer
    /// of [`Witness::add_checkpoint`]).
    pub fn refusals(&self) -> u64 {
        self.refusals.load(Ordering::Relaxed)
    }

    /// The last refusal: `origin ORIGIN: STATUS REASON`.
    pub fn last_refusal(&self) -> Option<String> {
        self.last_refusal.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Answers one `add-checkpoint` request body (see the module docs).
    pub fn add_checkpoint(&self, body: &[u8]) -> Reply {
        let req = match witness::parse(body) {
            Ok(req) => req,
            Err(refusal) => return self.refuse(origin_of(body), &refusal),
        };
        let origin = origin_of(&req.note);
        match self.store.add(&req, &self.logs) {
            Err(e) => {
                tracing::error!(origin = %origin, error = %e, "witness state failed; nothing cosigned");
                Reply::text(500, "the witness cannot read or write its state\n")
            }
            Ok(Err(refusal)) => self.refuse(origin, &refusal),
            Ok(Ok((checkpoint, note_body))) => match self.cosign(&note_body) {
                Ok(lines) => {
                    tracing::debug!(origin = %checkpoint.origin, size = checkpoint.size, "cosigned");
                    Reply { status: 200, content_type: TEXT_CONTENT_TYPE, body: lines }
                }
                Err(e) => {
                    tracing::error!(origin = %origin, error = %e, "cosigning failed");
                    Reply::text(500, "the witness cannot sign\n")
                }
            },
        }
    }

    /// The cosignature line(s) over `note_body`: `— <name> <base64>\n`.
    fn cosign(&self, note_body: &[u8]) -> Result<Vec<u8>, String> {
        let signer: &CosignatureSigner = &self.signer;
        // The witness always signs at the current time.
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let signer = signer.clone().at(now);
        let mut note = signed_note::Note::new(note_body, &[]).map_err(|e| e.to_string())?;
        note.add_sigs(&[&signer as &dyn signed_note::Signer]).map_err(|e| e.to_string())?;
        let whole = note.to_bytes();
        let sigs = whole.get(note_body.len() + 1..).ok_or("no signature line")?;
        Ok(sigs.to_vec())
    }

    fn refuse(&self, origin: String, refusal: &Refusal) -> Reply {
        let status = refusal.status();
        tracing::warn!(origin = %origin, status, reason = %refusal, "witness refused a checkpoint");
        self.refusals.fetch_add(1, Ordering::Relaxed);
        *self.last_refusal.lock().unwrap_or_else(|p| p.into_inner()) =
            Some(format!("origin {origin}: {status} {refusal}"));
        let content_type = if status == 409 { SIZE_CONTENT_TYPE } else { TEXT_CONTENT_TYPE };
        Reply { status, content_type, body: refusal.body().into_bytes() }
    }
}

/// The origin line of a request (the first line of its note), for the log;
/// `-` if it has none that reads.
fn origin_of(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    // A whole request: the note follows the first empty line.
    let note = if text.starts_with("old ") { text.split_once("\n\n").map_or("", |(_, n)| n) } else { &text };
    let line = note.lines().next().unwrap_or("");
    if line.is_empty() || line.len() > 256 || line.chars().any(char::is_control) {
        "-".to_owned()
    } else {
        line.to_owned()
    }
}

/// Why the witness's TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ServerTlsError {
    /// The certificate or key does not read.
    #[error(transparent)]
    Files(#[from] isx_tls::TlsError),
    /// rustls refused them.
    #[error("witness certificate {path}: {source}")]
    Rustls {
        /// The certificate file.
        path: std::path::PathBuf,
        /// The rustls error.
        source: rustls::Error,
    },
}

/// The witness's TLS server configuration: TLS 1.3, the ring provider,
/// ALPN `http/1.1`, the certificate `cert` with the key `key` (refused if
/// its group or others may read it). No client certificate is asked for:
/// `tlog-witness` is a public protocol.
pub fn server_tls(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, ServerTlsError> {
    let certs = isx_tls::config::read_certs(cert)?;
    let key_der = isx_tls::config::read_key(key)?;
    let rustls_err = |source| ServerTlsError::Rustls { path: cert.to_owned(), source };
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(rustls_err)?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .map_err(rustls_err)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The time and connection bounds of [`serve_with`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// How long a TLS handshake may take.
    pub handshake: Duration,
    /// How long a client may take to send a request's headers, and then its body.
    pub read: Duration,
    /// How long one kept-alive connection is served.
    pub lifetime: Duration,
    /// How many connections are served at once.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            handshake: HANDSHAKE_TIMEOUT,
            read: READ_TIMEOUT,
            lifetime: CONNECTION_LIFETIME,
            max_connections: MAX_CONNECTIONS,
        }
    }
}

/// Serves `witness` over HTTPS on `listener` until `shutdown`, then lets
/// open connections finish (at most [`SHUTDOWN_GRACE`]), with the default
/// [`Limits`].
pub async fn serve(
    witness: Arc<Witness>,
    tls: Arc<rustls::ServerConfig>,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    serve_with(witness, tls, listener, shutdown, Limits::default()).await
}

/// [`serve`] with other [`Limits`] (tests use short ones).
pub async fn serve_with(
    witness: Arc<Witness>,
    tls: Arc<rustls::ServerConfig>,
    listener: TcpListener,
    shutdown: CancellationToken,
    limits: Limits,
) -> std::io::Result<()> {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections.max(1)));
    let tracker = tokio_util::task::TaskTracker::new();
    loop {
        let permit = tokio::select! {
            _ = shutdown.cancelled() => break,
            permit = slots.clone().acquire_owned() => permit.map_err(std::io::Error::other)?,
        };
        let (tcp, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait, do not spin.
                    tracing::warn!(error = %e, "witness: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let (acceptor, witness, shutdown) = (acceptor.clone(), witness.clone(), shutdown.clone());
        tracker.spawn(async move {
            let _permit = permit;
            connection(acceptor, tcp, peer, witness, shutdown, limits).await;
        });
    }
    tracker.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, tracker.wait()).await.is_err() {
        tracing::warn!("witness: connections still open after the shutdown grace; dropped");
    }
    Ok(())
}

async fn connection(
    acceptor: tokio_rustls::TlsAcceptor,
    tcp: tokio::net::TcpStream,
    peer: std::net::SocketAddr,
    witness: Arc<Witness>,
    shutdown: CancellationToken,
    limits: Limits,
) {
    let tls = match tokio::time::timeout(limits.handshake, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "witness: TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "witness: TLS handshake timed out");
            return;
        }
    };
    let service = hyper::service::service_fn(move |req| {
        let witness = witness.clone();
        async move { Ok::<_, Infallible>(handle(&witness, req, limits.read).await) }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(limits.read).keep_alive(true);
    let conn = builder.serve_connection(TokioIo::new(tls), service);
    tokio::pin!(conn);
    let lifetime = tokio::time::sleep(limits.lifetime);
    tokio::pin!(lifetime);
    let ended = tokio::select! {
        r = conn.as_mut() => Some(r),
        _ = shutdown.cancelled() => None,
        _ = &mut lifetime => None,
    };
    let result = match ended {
        Some(r) => r,
        None => {
            conn.as_mut().graceful_shutdown();
            match tokio::time::timeout(limits.read, conn.as_mut()).await {
                Ok(r) => r,
                Err(_) => return,
            }
        }
    };
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "witness: connection ended");
    }
}

fn response(reply: Reply, close: bool) -> Response<Full<Bytes>> {
    let mut builder = Response::builder()
        .status(StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header(header::CONTENT_TYPE, reply.content_type);
    if close {
        builder = builder.header(header::CONNECTION, "close");
    }
    builder.body(Full::new(Bytes::from(reply.body))).expect("a valid response")
}

async fn handle(witness: &Arc<Witness>, req: Request<Incoming>, read: Duration) -> Response<Full<Bytes>> {
    if req.uri().path() != ADD_CHECKPOINT_PATH {
        return response(Reply::text(404, "not found: the witness serves POST /add-checkpoint only\n"), false);
    }
    if req.method() != Method::POST {
        let mut r = response(Reply::text(405, "method not allowed: use POST\n"), false);
        r.headers_mut().insert(header::ALLOW, http::HeaderValue::from_static("POST"));
        return r;
    }
    let too_large = || response(Reply::text(413, format!("the body is larger than {MAX_BODY} bytes\n")), true);
    let declared = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        return too_large();
    }
    let body = match tokio::time::timeout(read, Limited::new(req.into_body(), MAX_BODY).collect()).await {
        Err(_) => return response(Reply::text(408, "the body did not arrive in time\n"), true),
        Ok(Err(e)) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => return too_large(),
        Ok(Err(_)) => return response(Reply::text(400, "the body could not be read\n"), true),
        Ok(Ok(collected)) => collected.to_bytes(),
    };
    let witness = witness.clone();
    // The store fsyncs: off the async threads.
    match tokio::task::spawn_blocking(move || witness.add_checkpoint(&body)).await {
        Ok(reply) => response(reply, false),
        Err(e) => {
            tracing::error!(error = %e, "witness: the request's task failed");
            response(Reply::text(500, "internal error\n"), true)
        }
    }
}
