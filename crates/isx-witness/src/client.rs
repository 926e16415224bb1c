//! The log's side of `tlog-witness`: ask a witness to cosign a checkpoint.
//!
//! [`Client::add_checkpoint`] posts `old N`, the consistency proof and the
//! signed checkpoint ([`body`]) to `<submission prefix>/add-checkpoint`
//! over HTTPS (TLS 1.3, trusting only the development CA given, checking
//! the server name from the URL's host) and returns the witness's
//! cosignature lines. It keeps one idle connection per witness for the
//! next call (HTTP keep-alive, as the spec recommends). Every call is
//! bounded by the client's timeout, connection and TLS handshake included.
//!
//! The answers a log must act on are typed ([`AddError`]): 409 is
//! [`AddError::Conflict`] with the witness's size (offer the checkpoint
//! again from it, or, at start, learn that the witness has seen more), any
//! other refusal [`AddError::Refused`] with its status and message.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;

use crate::server::{ADD_CHECKPOINT_PATH, SIZE_CONTENT_TYPE};

/// The largest answer read from a witness.
pub const MAX_REPLY: usize = 64 * 1024;

/// Why a client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The CA certificate does not read.
    #[error("witness client: {0}")]
    Tls(#[from] isx_tls::TlsError),
    /// rustls refused the CA certificate.
    #[error("witness client: CA certificate {path}: {source}")]
    Rustls {
        /// The CA file.
        path: std::path::PathBuf,
        /// The rustls error.
        source: rustls::Error,
    },
}

/// What a witness answered instead of a cosignature, or why it did not answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddError {
    /// 409: the witness's latest cosigned checkpoint has another size than the `old` sent.
    #[error(
        "the witness has cosigned this log up to size {size}, not the old size offered (409): offer the checkpoint again from size {size}"
    )]
    Conflict {
        /// The size of the witness's latest cosigned checkpoint.
        size: u64,
    },
    /// Another refusal (400, 403, 404, 422, …), with the witness's message.
    #[error("the witness refused the checkpoint ({status}): {message}")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// The witness's message, first line.
        message: String,
    },
    /// No connection: refused, not resolved, TLS failed, or the URL is not usable.
    #[error("cannot reach the witness: {0}")]
    Unreachable(String),
    /// No answer within the client's timeout.
    #[error("the witness did not answer within the timeout")]
    Timeout,
    /// An answer that is not what the protocol says.
    #[error("the witness's answer is not a tlog-witness reply: {0}")]
    BadReply(String),
}

/// The body of an `add-checkpoint` request: `old <old>`, one base64 line
/// per proof hash, an empty line, then the signed checkpoint `note`.
pub fn body(old: u64, proof: &[[u8; 32]], note: &str) -> Vec<u8> {
    use base64::Engine;
    let mut text = format!("old {old}\n");
    for hash in proof {
        text.push_str(&base64::engine::general_purpose::STANDARD.encode(hash));
        text.push('\n');
    }
    text.push('\n');
    text.push_str(note);
    text.into_bytes()
}

/// Checks that `text` is one or more note signature lines (`— NAME SIG\n`).
pub fn check_cosignatures(text: &str) -> Result<(), String> {
    if text.is_empty() || !text.ends_with('\n') {
        return Err("not newline-terminated signature lines".into());
    }
    for line in text.lines() {
        let rest = line.strip_prefix("\u{2014} ").ok_or_else(|| format!("{line:?} is not a signature line"))?;
        let (name, sig) = rest.split_once(' ').ok_or_else(|| format!("{line:?} has no signature"))?;
        use base64::Engine;
        let bytes =
            base64::engine::general_purpose::STANDARD.decode(sig).map_err(|_| format!("{line:?}: not base64"))?;
        if name.is_empty() || bytes.len() < 5 {
            return Err(format!("{line:?} is not a signature line"));
        }
    }
    Ok(())
}

/// A client for witnesses whose certificates the development CA issued.
pub struct Client {
    tls: tokio_rustls::TlsConnector,
    timeout: Duration,
    idle: Mutex<HashMap<String, SendRequest<Full<Bytes>>>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("timeout", &self.timeout).finish_non_exhaustive()
    }
}

/// The parts of a submission prefix.
struct Target {
    host: String,
    port: u16,
    path: String,
}

fn target(url: &str) -> Result<Target, AddError> {
    let bad = |why: &str| AddError::Unreachable(format!("{url:?} {why} (a witness URL is https://HOST[:PORT][/PATH])"));
    let uri: http::Uri = url.parse().map_err(|_| bad("is not a URL"))?;
    if uri.scheme_str() != Some("https") {
        return Err(bad("is not https"));
    }
    let authority = uri.authority().ok_or_else(|| bad("names no host"))?;
    let host = authority.host().trim_start_matches('[').trim_end_matches(']').to_owned();
    if host.is_empty() {
        return Err(bad("names no host"));
    }
    if uri.query().is_some() {
        return Err(bad("has a query"));
    }
    let path = format!("{}{ADD_CHECKPOINT_PATH}", uri.path().trim_end_matches('/'));
    Ok(Target { host, port: authority.port_u16().unwrap_or(443), path })
}

impl Client {
    /// A client trusting the CA certificate(s) in `ca_cert_pem_path`, each
    /// call bounded by `timeout`.
    pub fn new(ca_cert_pem_path: &Path, timeout: Duration) -> Result<Self, ClientError> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in isx_tls::config::read_certs(ca_cert_pem_path)? {
            roots.add(cert).map_err(|source| ClientError::Rustls { path: ca_cert_pem_path.to_owned(), source })?;
        }
        let mut config =
            rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_protocol_versions(&[&rustls::version::TLS13])
                .map_err(|source| ClientError::Rustls { path: ca_cert_pem_path.to_owned(), source })?
                .with_root_certificates(roots)
                .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self { tls: tokio_rustls::TlsConnector::from(Arc::new(config)), timeout, idle: Mutex::new(HashMap::new()) })
    }

    /// Asks the witness at submission prefix `url` (e.g.
    /// `https://127.0.0.1:7460`) to cosign `note`, a signed checkpoint,
    /// given the consistency `proof` from size `old`. Returns the
    /// witness's 200 body: its cosignature lines.
    pub async fn add_checkpoint(
        &self,
        url: &str,
        old: u64,
        proof: &[[u8; 32]],
        note: &str,
    ) -> Result<String, AddError> {
        let target = target(url)?;
        let request = body(old, proof, note);
        match tokio::time::timeout(self.timeout, self.post(&target, request)).await {
            Ok(r) => r,
            Err(_) => Err(AddError::Timeout),
        }
    }

    async fn connect(&self, target: &Target) -> Result<SendRequest<Full<Bytes>>, AddError> {
        let unreachable =
            |e: &dyn std::fmt::Display| AddError::Unreachable(format!("{}:{}: {e}", target.host, target.port));
        let name = ServerName::try_from(target.host.clone()).map_err(|e| unreachable(&e))?;
        let tcp =
            tokio::net::TcpStream::connect((target.host.as_str(), target.port)).await.map_err(|e| unreachable(&e))?;
        let _ = tcp.set_nodelay(true);
        let tls = self.tls.connect(name, tcp).await.map_err(|e| unreachable(&e))?;
        let (sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.map_err(|e| unreachable(&e))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(sender)
    }

    async fn post(&self, target: &Target, request: Vec<u8>) -> Result<String, AddError> {
        let key = format!("{}:{}", target.host, target.port);
        let pooled = self.idle.lock().unwrap_or_else(|p| p.into_inner()).remove(&key);
        let reusable = match pooled {
            Some(mut s) => s.ready().await.is_ok().then_some(s),
            None => None,
        };
        let mut sender = match reusable {
            Some(s) => s,
            None => self.connect(target).await?,
        };
        let host = if target.host.contains(':') { format!("[{}]", target.host) } else { target.host.clone() };
        let req = Request::post(target.path.as_str())
            .header(header::HOST, format!("{host}:{}", target.port))
            .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
            .body(Full::new(Bytes::from(request)))
            .map_err(|e| AddError::Unreachable(e.to_string()))?;
        let response = sender.send_request(req).await.map_err(|e| AddError::Unreachable(format!("{key}: {e}")))?;
        let status = response.status().as_u16();
        let content_type =
            response.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        let bytes = Limited::new(response.into_body(), MAX_REPLY)
            .collect()
            .await
            .map_err(|e| AddError::BadReply(format!("the body: {e}")))?
            .to_bytes();
        if !sender.is_closed() {
            self.idle.lock().unwrap_or_else(|p| p.into_inner()).insert(key, sender);
        }
        let text = String::from_utf8(bytes.to_vec()).map_err(|_| AddError::BadReply("the body is not UTF-8".into()))?;
        match status {
            200 => {
                check_cosignatures(&text).map_err(AddError::BadReply)?;
                Ok(text)
            }
            409 => {
                if content_type.split(';').next().map(str::trim) != Some(SIZE_CONTENT_TYPE) {
                    return Err(AddError::BadReply(format!("a 409 of type {content_type:?}, not {SIZE_CONTENT_TYPE}")));
                }
                let size = text
                    .strip_suffix('\n')
                    .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| AddError::BadReply(format!("a 409 whose body {text:?} is not a size")))?;
                Err(AddError::Conflict { size })
            }
            _ => {
                let message: String = text.lines().next().unwrap_or("").chars().take(300).collect();
                Err(AddError::Refused { status, message })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_submission_prefixes() {
        let t = target("https://127.0.0.1:7460").unwrap();
        assert_eq!((t.host.as_str(), t.port, t.path.as_str()), ("127.0.0.1", 7460, "/add-checkpoint"));
        let t = target("https://witness.example/w1/").unwrap();
        assert_eq!((t.host.as_str(), t.port, t.path.as_str()), ("witness.example", 443, "/w1/add-checkpoint"));
        let t = target("https://[::1]:8443/x").unwrap();
        assert_eq!((t.host.as_str(), t.path.as_str()), ("::1", "/x/add-checkpoint"));
        for bad in ["http://127.0.0.1:7460", "127.0.0.1:7460", "https://h/p?q=1", "not a url"] {
            assert!(matches!(target(bad), Err(AddError::Unreachable(_))), "{bad}");
        }
    }

    #[test]
    fn the_body_is_the_specs() {
        let b = body(3, &[[0u8; 32]], "o\n4\nAAAA\n\n\u{2014} o sig\n");
        assert_eq!(
            String::from_utf8(b).unwrap(),
            "old 3\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\no\n4\nAAAA\n\n\u{2014} o sig\n"
        );
        assert_eq!(body(0, &[], "n"), b"old 0\n\nn");
    }

    #[test]
    fn cosignature_lines_are_checked() {
        check_cosignatures("\u{2014} w/1 AAAAAAAA\n").unwrap();
        for bad in ["", "\u{2014} w/1 AAAAAAAA", "- w/1 AAAAAAAA\n", "\u{2014} w/1 !!\n", "\u{2014} w/1\n"] {
            assert!(check_cosignatures(bad).is_err(), "{bad:?}");
        }
    }
}
