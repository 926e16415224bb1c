//! Why a connection to the gateway failed, told to the person at the client.
//!
//! A refused certificate reaches a gRPC client only as `Unavailable:
//! transport error` or `Cancelled`: the TLS alert that says why is lost on
//! the way. [`connection`] opens a raw connection the way the node client
//! does, reads the gateway's first answer, and says what happened; [`own_certificate`]
//! checks the client's own certificate locally (expiry, issuer, the SAN
//! form); [`explain`] turns both into one sentence with the fix.
//!
//! In TLS 1.3 the client sends its certificate last, so its handshake
//! completes before the gateway has checked that certificate; the gateway's
//! refusal (a TLS alert) arrives on the first read, which is why
//! [`connection`] sends the HTTP/2 preface and reads once.

use std::path::Path;
use std::time::Duration;

use isx_core::NodeId;
use isx_tls::config::IdentityFiles;
use rustls::AlertDescription;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::client::{Client, ClientError, ClientOptions};

/// How long each step of [`connection`] may take.
pub const STEP_LIMIT: Duration = Duration::from_secs(10);

/// What the gateway did with a connection from this client.
#[derive(Debug, Clone, PartialEq)]
pub enum Diagnosis {
    /// Nothing accepts TCP connections at the address.
    Unreachable(String),
    /// The gateway sent this fatal TLS alert: it refused the client's certificate.
    Alert(AlertDescription),
    /// The client's own TLS files are missing or invalid.
    BadTlsFiles(String),
    /// The client's own TLS stack refused the gateway (e.g. its certificate
    /// is not from the client's CA, or does not name the host dialled).
    ClientRefused(rustls::Error),
    /// The gateway closed the TCP connection during the handshake without an alert.
    ClosedInHandshake(std::io::ErrorKind),
    /// TLS completed, but the gateway closed the connection before answering
    /// anything: how it turns away a node that is not registered (or one
    /// past its `limits.max_connections_per_node`).
    Dropped,
    /// The gateway answered HTTP/2: the connection itself is fine.
    Served,
    /// No answer within [`STEP_LIMIT`].
    Timeout,
    /// Something that is not an isx gateway answered.
    Unexpected(String),
}

/// A problem the client can see in its own certificate, without asking the gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwnProblem {
    /// The certificate or key file is missing or unreadable.
    Missing(String),
    /// It has expired, or is not valid yet.
    NotValidNow {
        /// Its validity, as printed.
        not_before: String,
        /// Its end.
        not_after: String,
    },
    /// It was not issued by the CA in the client's PKI directory.
    OtherIssuer {
        /// Who issued it.
        issuer: String,
    },
    /// It does not name the node as `spiffe://isx/node/<id>`.
    WrongName {
        /// What its SAN names, if anything.
        found: String,
    },
}

/// Connects as `opts` says and reports what the gateway did with the connection.
pub async fn connection(opts: &ClientOptions) -> Diagnosis {
    let files = IdentityFiles::in_dir(&opts.pki_dir, opts.node.as_str());
    let config = match isx_tls::client_config(&files) {
        Ok(c) => c,
        Err(e) => return Diagnosis::BadTlsFiles(e.to_string()),
    };
    let Some((host, _)) = opts.gateway.rsplit_once(':') else {
        return Diagnosis::Unexpected(format!("{:?} is not host:port", opts.gateway));
    };
    let Ok(name) = ServerName::try_from(host.trim_start_matches('[').trim_end_matches(']').to_owned()) else {
        return Diagnosis::Unexpected(format!("{host:?} is not a host name or address"));
    };
    let step = |f| tokio::time::timeout(STEP_LIMIT, f);
    let tcp = match step(Box::pin(tokio::net::TcpStream::connect(opts.gateway.clone()))).await {
        Err(_) => return Diagnosis::Timeout,
        Ok(Err(e)) => return Diagnosis::Unreachable(e.to_string()),
        Ok(Ok(tcp)) => tcp,
    };
    let connect = tokio_rustls::TlsConnector::from(config).connect(name, tcp);
    let mut tls = match tokio::time::timeout(STEP_LIMIT, connect).await {
        Err(_) => return Diagnosis::Timeout,
        Ok(Err(e)) => {
            return match rustls_error(&e) {
                Some(rustls::Error::AlertReceived(alert)) => Diagnosis::Alert(*alert),
                Some(other) => Diagnosis::ClientRefused(other.clone()),
                None => Diagnosis::ClosedInHandshake(e.kind()),
            };
        }
        Ok(Ok(tls)) => tls,
    };
    // The client preface and an empty SETTINGS frame (RFC 9113 §3.4). A write
    // that fails because the gateway already closed is not the answer: the
    // alert it sent before closing, if any, is still there to read.
    let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0";
    let _ = tokio::time::timeout(STEP_LIMIT, async { tls.write_all(preface).await.and(tls.flush().await) }).await;
    let mut header = [0u8; 9];
    match tokio::time::timeout(STEP_LIMIT, tls.read_exact(&mut header)).await {
        Err(_) => Diagnosis::Timeout,
        Ok(Ok(_)) if header[3] == 0x04 => Diagnosis::Served,
        Ok(Ok(_)) => Diagnosis::Unexpected(format!("the first frame {header:02x?} is not HTTP/2 SETTINGS")),
        Ok(Err(e)) => match rustls_error(&e) {
            Some(rustls::Error::AlertReceived(alert)) => Diagnosis::Alert(*alert),
            Some(other) => Diagnosis::Unexpected(format!("TLS error after the handshake: {other}")),
            None if closed(e.kind()) => Diagnosis::Dropped,
            None => Diagnosis::Unexpected(format!("reading the first frame: {e}")),
        },
    }
}

/// The rustls error inside an I/O error from tokio-rustls, if any.
fn rustls_error(e: &std::io::Error) -> Option<&rustls::Error> {
    e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>())
}

/// True for the ways a read or write sees the peer close the connection.
fn closed(kind: std::io::ErrorKind) -> bool {
    use std::io::ErrorKind::*;
    matches!(kind, UnexpectedEof | ConnectionReset | ConnectionAborted | BrokenPipe)
}

/// What is wrong with `node`'s own certificate in `pki_dir`, as far as the
/// client can tell at `now` (Unix seconds).
pub fn own_certificate(pki_dir: &Path, node: &NodeId, now: i64) -> Vec<OwnProblem> {
    let files = IdentityFiles::in_dir(pki_dir, node.as_str());
    let read = |p: &Path| std::fs::read(p).map_err(|e| OwnProblem::Missing(format!("{}: {e}", p.display())));
    let (cert_pem, ca_pem) = match (read(&files.cert), read(&files.ca)) {
        (Ok(c), Ok(a)) => (c, a),
        (Err(e), _) | (_, Err(e)) => return vec![e],
    };
    if let Err(e) = read(&files.key) {
        return vec![e];
    }
    let parse =
        |pem: &[u8]| x509_parser::pem::parse_x509_pem(pem).ok().map(|(_, p)| p.contents).filter(|der| !der.is_empty());
    let (Some(cert_der), Some(ca_der)) = (parse(&cert_pem), parse(&ca_pem)) else {
        return vec![OwnProblem::Missing(format!(
            "{} or {} is not a PEM certificate",
            files.cert.display(),
            files.ca.display()
        ))];
    };
    let (Ok((_, cert)), Ok((_, ca))) =
        (x509_parser::parse_x509_certificate(&cert_der), x509_parser::parse_x509_certificate(&ca_der))
    else {
        return vec![OwnProblem::Missing(format!("{} does not parse as X.509", files.cert.display()))];
    };
    let mut problems = Vec::new();
    let validity = cert.validity();
    if now < validity.not_before.timestamp() || now > validity.not_after.timestamp() {
        problems.push(OwnProblem::NotValidNow {
            not_before: validity.not_before.to_string(),
            not_after: validity.not_after.to_string(),
        });
    }
    let signed_by_ca = cert.issuer() == ca.subject() && cert.verify_signature(Some(ca.public_key())).is_ok();
    if !signed_by_ca {
        problems.push(OwnProblem::OtherIssuer { issuer: cert.issuer().to_string() });
    }
    let wanted = node.san_uri();
    let uris: Vec<String> = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    x509_parser::extensions::GeneralName::URI(u) => Some((*u).to_owned()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    if !uris.contains(&wanted) {
        problems
            .push(OwnProblem::WrongName { found: if uris.is_empty() { "no SAN URI".into() } else { uris.join(", ") } });
    }
    problems
}

/// One sentence: what went wrong with the connection and what to do.
pub fn explain(d: &Diagnosis, opts: &ClientOptions, own: &[OwnProblem]) -> String {
    let node = &opts.node;
    let pki = opts.pki_dir.display();
    let addr = &opts.gateway;
    let own_text = own.iter().map(|p| explain_own(p, opts)).collect::<Vec<_>>().join("; ");
    let base = match d {
        Diagnosis::Unreachable(e) => format!(
            "cannot reach the gateway at {addr} ({e}): is it running (`isx gateway`, `isx up`), and is the address right (--gateway, ISX_GATEWAY)?"
        ),
        Diagnosis::Alert(AlertDescription::CertificateExpired) => format!(
            "the gateway refused {node}'s certificate: it has expired. Issue a new one from the gateway's CA: `isx pki issue --dir {pki} --force {node}`"
        ),
        Diagnosis::Alert(AlertDescription::CertificateRevoked) => format!(
            "the gateway refused {node}'s certificate: it is revoked (on the gateway's CRL). A new certificate needs the gateway operator: `isx pki issue --dir PKI --force {node}`"
        ),
        Diagnosis::Alert(AlertDescription::CertificateRequired) => {
            format!(
                "the gateway asked for a client certificate and got none: check {pki}/{node}.crt and {pki}/{node}.key"
            )
        }
        Diagnosis::Alert(
            AlertDescription::UnknownCA | AlertDescription::DecryptError | AlertDescription::BadCertificate,
        ) => {
            format!(
                "the gateway does not trust {node}'s certificate: it was not issued by the gateway's CA. Use the certificate and ca.crt of the gateway's PKI (see {pki})"
            )
        }
        Diagnosis::Alert(other) => {
            format!("the gateway refused the TLS handshake with TLS alert {} (RFC 8446, section 6)", u8::from(*other))
        }
        Diagnosis::BadTlsFiles(e) => format!("this client's TLS files are not usable: {e}"),
        Diagnosis::ClientRefused(e) => format!(
            "this client refused the gateway's certificate ({e}): check that {pki}/ca.crt is the gateway's CA, and that the name dialled ({addr}) is in the gateway's certificate (`isx pki init --gateway-names`)"
        ),
        Diagnosis::ClosedInHandshake(_) => format!(
            "the gateway at {addr} closed the connection during the TLS handshake: it may be at its limits.max_handshakes or limits.max_connections, or not an isx gateway; retry, or ask its operator"
        ),
        Diagnosis::Dropped => format!(
            "the gateway accepted {node}'s certificate but closed the connection: {node} is not registered there (add [nodes.{node}] to its gateway.toml), or already holds limits.max_connections_per_node connections"
        ),
        Diagnosis::Served => "the connection itself is fine; the call failed on the way (retry)".to_owned(),
        Diagnosis::Timeout => format!("the gateway at {addr} did not answer within {} s", STEP_LIMIT.as_secs()),
        Diagnosis::Unexpected(what) => format!("something at {addr} that is not an isx gateway answered: {what}"),
    };
    if own_text.is_empty() { base } else { format!("{base}. Also, locally: {own_text}") }
}

fn explain_own(p: &OwnProblem, opts: &ClientOptions) -> String {
    let node = &opts.node;
    match p {
        OwnProblem::Missing(what) => format!("{what} (create it with `isx pki issue --dir PKI {node}`)"),
        OwnProblem::NotValidNow { not_before, not_after } => {
            format!("{node}'s certificate is valid only from {not_before} to {not_after}")
        }
        OwnProblem::OtherIssuer { issuer } => {
            format!("{node}'s certificate was issued by {issuer}, not by the CA beside it")
        }
        OwnProblem::WrongName { found } => {
            format!("{node}'s certificate names {found}, not {}", node.san_uri())
        }
    }
}

/// Connects as `opts` says, then makes one health call, so that a refused
/// certificate (which TLS 1.3 reports only at the first read) or an
/// unreachable gateway is told at once with its cause and fix ([`why`])
/// instead of as a transport error of the first real call. For
/// command-line tools.
pub async fn connect(opts: &ClientOptions) -> Result<Client, ClientError> {
    let client = match Client::connect(opts).await {
        Ok(client) => client,
        Err(ClientError::Connect { .. }) => return Err(ClientError::Refused(why(opts).await)),
        Err(e) => return Err(e),
    };
    let mut health = tonic_health::pb::health_client::HealthClient::new(client.channel());
    let check = health.check(tonic_health::pb::HealthCheckRequest { service: String::new() });
    match tokio::time::timeout(STEP_LIMIT, check).await {
        Ok(Ok(_)) => Ok(client),
        // Answered over HTTP/2 (any gRPC status but a transport failure): the connection is fine.
        Ok(Err(status))
            if !matches!(status.code(), tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Cancelled) =>
        {
            Ok(client)
        }
        _ => Err(ClientError::Refused(why(opts).await)),
    }
}

/// Connects as `opts` says and returns [`explain`]'s sentence, with the
/// client's own certificate checked too.
pub async fn why(opts: &ClientOptions) -> String {
    let d = connection(opts).await;
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
    let own =
        if matches!(d, Diagnosis::Unreachable(_)) { vec![] } else { own_certificate(&opts.pki_dir, &opts.node, now) };
    explain(&d, opts, &own)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(dir: &Path, node: &str) -> ClientOptions {
        ClientOptions {
            node: NodeId::new(node).unwrap(),
            pki_dir: dir.to_owned(),
            gateway: "localhost:1".into(),
            officer: "o".into(),
        }
    }

    #[test]
    fn a_good_certificate_has_no_local_problem_and_a_foreign_one_names_its_issuer() {
        let dir = tempfile::tempdir().unwrap();
        let mut init = isx_tls::pki::InitOptions::new(dir.path());
        init.nodes = vec![NodeId::new("fr-police").unwrap()];
        isx_tls::pki::init(&init).unwrap();
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        assert_eq!(own_certificate(dir.path(), &NodeId::new("fr-police").unwrap(), now), vec![]);
        let later = now + 400 * 86_400 * 10;
        assert!(matches!(
            own_certificate(dir.path(), &NodeId::new("fr-police").unwrap(), later).as_slice(),
            [OwnProblem::NotValidNow { .. }]
        ));
        // Another CA beside it: the issuer is not that CA.
        let other = tempfile::tempdir().unwrap();
        let mut init = isx_tls::pki::InitOptions::new(other.path());
        init.nodes = vec![];
        isx_tls::pki::init(&init).unwrap();
        std::fs::copy(other.path().join("ca.crt"), dir.path().join("ca.crt")).unwrap();
        let problems = own_certificate(dir.path(), &NodeId::new("fr-police").unwrap(), now);
        assert!(matches!(problems.as_slice(), [OwnProblem::OtherIssuer { .. }]), "{problems:?}");
        let text =
            explain(&Diagnosis::Alert(AlertDescription::DecryptError), &opts(dir.path(), "fr-police"), &problems);
        assert!(text.contains("not issued by the gateway's CA") && text.contains("issued by"), "{text}");
        // A missing certificate says how to make one.
        let missing = own_certificate(dir.path(), &NodeId::new("es-police").unwrap(), now);
        let text =
            explain(&Diagnosis::Alert(AlertDescription::CertificateRequired), &opts(dir.path(), "es-police"), &missing);
        assert!(text.contains("isx pki issue"), "{text}");
    }

    #[test]
    fn every_refusal_names_a_fix() {
        let o = opts(Path::new("/pki"), "it-police");
        for (d, needle) in [
            (Diagnosis::Alert(AlertDescription::CertificateExpired), "has expired"),
            (Diagnosis::Alert(AlertDescription::CertificateRevoked), "revoked"),
            (Diagnosis::Dropped, "not registered"),
            (Diagnosis::Unreachable("refused".into()), "is it running"),
            (Diagnosis::ClientRefused(rustls::Error::General("bad".into())), "gateway-names"),
        ] {
            let text = explain(&d, &o, &[]);
            assert!(text.contains(needle), "{d:?}: {text}");
            assert!(!text.contains("Some(") && !text.contains("Os {"), "no debug text: {text}");
        }
    }
}
