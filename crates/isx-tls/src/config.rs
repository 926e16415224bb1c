//! rustls configurations for the gateway (server) and the nodes (clients).
//!
//! Both sides speak TLS 1.3 only, with the ring provider, and offer ALPN `h2`.
//! The server requires a client certificate issued by the isx CA and, when
//! given, checks it against certificate revocation lists, each first checked
//! by [`crate::crl::load`] to be signed by that CA.
//!
//! A private key (`IdentityFiles::key`) that its group or others may read is
//! refused ([`TlsError::Key`]), naming the file and `chmod 600 FILE`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::ALPN_H2;
use crate::crl::{CrlError, LoadedCrls};

/// Why a TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file is missing or unreadable. The message names the fix for
    /// that file ([`read_fix`]).
    #[error("cannot read {path}: {source}. {}", read_fix(.path))]
    Read {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: rustls_pki_types::pem::Error,
    },
    /// A PEM file holds no certificate or key.
    #[error("{0} holds no PEM certificate")]
    Empty(PathBuf),
    /// rustls refused the material.
    #[error("TLS configuration for {what}: {source}")]
    Rustls {
        /// Which configuration.
        what: String,
        /// The rustls error.
        source: rustls::Error,
    },
    /// The client verifier could not be built (e.g. a bad CRL).
    #[error("client certificate verifier: {0}")]
    Verifier(String),
    /// A revocation list is unreadable, not from the CA, or stale.
    #[error(transparent)]
    Crl(#[from] CrlError),
    /// A private key file is open to its group or to others.
    #[error(transparent)]
    Key(#[from] isx_store::KeyError),
}

/// The fix for a PEM file of a PKI directory that cannot be read: the CA's
/// and the gateway's come with a new PKI (`isx pki init`), a node's
/// certificate and key from the CA (`isx pki issue`).
fn read_fix(path: &Path) -> String {
    let dir =
        path.parent().filter(|p| !p.as_os_str().is_empty()).map_or_else(|| ".".into(), |p| p.display().to_string());
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let stem = name.strip_suffix(".crt").or_else(|| name.strip_suffix(".key"));
    match stem {
        Some("ca" | "gateway" | "witness") | None => {
            format!("Run `isx pki init --dir {dir}` to create a development PKI")
        }
        Some(witness) if witness.ends_with(".witness") => {
            format!("A witness's certificate and key come with the PKI: run `isx pki init --dir {dir}`")
        }
        Some(node) => format!(
            "Issue {node}'s certificate and key from the CA there: `isx pki issue --dir {dir} {node}` (add --force to replace one of them)"
        ),
    }
}

/// What the client verifier does with a CRL that is past its `nextUpdate`
/// (rustls' `ExpirationPolicy`; rustls itself ignores `nextUpdate` unless
/// told otherwise).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CrlExpiration {
    /// Every client certificate checked against a CRL past its next update
    /// fails the handshake (`ExpiredRevocationList`): a deployment that
    /// refuses stale CRLs (the default) keeps refusing once a list falls
    /// due while it runs, until a fresh list is loaded.
    #[default]
    Enforce,
    /// A stale CRL is still used as it is: for a deployment that only warns
    /// about stale lists.
    Ignore,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads every certificate in a PEM file.
pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|source| TlsError::Read { path: path.to_owned(), source })?;
    if certs.is_empty() {
        return Err(TlsError::Empty(path.to_owned()));
    }
    Ok(certs)
}

/// Reads a PEM private key, refusing one that its group or others may read
/// ([`TlsError::Key`]).
pub fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    // A missing or unreadable file is reported by the read below, with its hint.
    if let Err(e @ isx_store::KeyError::Exposed { .. }) = isx_store::check_private(path) {
        return Err(TlsError::Key(e));
    }
    PrivateKeyDer::from_pem_file(path).map_err(|source| TlsError::Read { path: path.to_owned(), source })
}

fn roots(ca: &Path) -> Result<RootCertStore, TlsError> {
    let mut store = RootCertStore::empty();
    for cert in read_certs(ca)? {
        store.add(cert).map_err(|source| TlsError::Rustls { what: format!("CA {}", ca.display()), source })?;
    }
    Ok(store)
}

/// The PEM files of one identity inside a PKI directory.
#[derive(Debug, Clone)]
pub struct IdentityFiles {
    /// `DIR/ca.crt`.
    pub ca: PathBuf,
    /// `DIR/NAME.crt`.
    pub cert: PathBuf,
    /// `DIR/NAME.key`.
    pub key: PathBuf,
}

impl IdentityFiles {
    /// The files of `name` (a node id or `gateway`) in `dir`.
    pub fn in_dir(dir: &Path, name: &str) -> Self {
        Self { ca: dir.join("ca.crt"), cert: dir.join(format!("{name}.crt")), key: dir.join(format!("{name}.key")) }
    }
}

/// The gateway's TLS server configuration: TLS 1.3, client certificate required.
///
/// `crls` are PEM files of revocation lists issued by the CA; a revoked client
/// certificate fails the handshake. Each is loaded with [`crate::crl::load`]
/// (a CRL not signed by `files.ca` is refused, naming the file) and must be
/// fresh ([`CrlError::Stale`] otherwise); the verifier enforces `nextUpdate`
/// ([`CrlExpiration::Enforce`]). For another policy, or to keep the loaded
/// CRLs (their serials, their next update), use [`server_config_with`].
pub fn server_config(files: &IdentityFiles, crls: &[PathBuf]) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let loaded = crate::crl::load(crls, &files.ca)?;
    loaded.check_fresh(time::OffsetDateTime::now_utc())?;
    server_config_with(files, &loaded, CrlExpiration::Enforce)
}

/// The gateway's TLS server configuration with CRLs already loaded by
/// [`crate::crl::load`] (not checked for freshness here: the caller decides
/// with [`LoadedCrls::check_fresh`]), and `expiration` saying what the
/// verifier does with a CRL that falls due while this configuration is in
/// use. Every certificate of a client's chain below the trust anchor is
/// checked; a certificate that no CRL covers (another issuer) is refused
/// while CRLs are configured (rustls' default `UnknownStatusPolicy::Deny`).
pub fn server_config_with(
    files: &IdentityFiles,
    crls: &LoadedCrls,
    expiration: CrlExpiration,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let mut builder =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots(&files.ca)?), provider()).with_crls(crls.ders());
    if expiration == CrlExpiration::Enforce {
        builder = builder.enforce_revocation_expiration();
    }
    let verifier = builder.build().map_err(|e| TlsError::Verifier(e.to_string()))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|source| TlsError::Rustls { what: "gateway".into(), source })?
        .with_client_cert_verifier(verifier)
        .with_single_cert(read_certs(&files.cert)?, read_key(&files.key)?)
        .map_err(|source| TlsError::Rustls { what: format!("gateway certificate {}", files.cert.display()), source })?;
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    Ok(Arc::new(config))
}

/// A node's TLS client configuration: TLS 1.3, trusting only the isx CA,
/// presenting the node's certificate.
pub fn client_config(files: &IdentityFiles) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|source| TlsError::Rustls { what: "client".into(), source })?
        .with_root_certificates(roots(&files.ca)?)
        .with_client_auth_cert(read_certs(&files.cert)?, read_key(&files.key)?)
        .map_err(|source| TlsError::Rustls { what: format!("client certificate {}", files.cert.display()), source })?;
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    Ok(Arc::new(config))
}
