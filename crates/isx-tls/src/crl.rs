//! Certificate revocation lists: loading and checking the CRLs the gateway
//! enforces.
//!
//! [`load`] reads every configured CRL file (PEM, one or more CRLs each),
//! parses each CRL, and checks that it was issued **and signed** by the
//! configured CA: its issuer is the CA certificate's subject, the CA may sign
//! CRLs (`cRLSign`, when it restricts its key usage), and the signature
//! verifies with the CA's key. A CRL of another CA is refused, naming the
//! file, instead of being handed to rustls, which would accept it and then
//! refuse every client with `BadSignature` (two development CAs share a
//! name). A CRL without `nextUpdate` is refused too.
//!
//! The result, [`LoadedCrls`], carries what [`crate::config::server_config_with`]
//! needs (the DER of each CRL), the revoked serial numbers (to close the
//! connections of a node revoked at a reload: compare them with
//! [`crate::identity::peer_serial`] of each open connection's certificate),
//! and each CRL's `nextUpdate`:
//!
//! - [`LoadedCrls::check_fresh`] fails with [`CrlError::Stale`] for the first
//!   CRL past its next update (a deployment that refuses stale CRLs, the
//!   default, stops there);
//! - [`LoadedCrls::days_until_next_update`] says how many whole days are left
//!   before the first CRL falls due (negative once past), to warn ahead.
//!
//! A gateway calls, at start, on SIGHUP and on a timer:
//!
//! ```no_run
//! # fn demo(crl_paths: &[std::path::PathBuf], pki: &std::path::Path) -> Result<(), Box<dyn std::error::Error>> {
//! use isx_tls::config::{CrlExpiration, IdentityFiles, server_config_with};
//! let files = IdentityFiles::in_dir(pki, "gateway");
//! let crls = isx_tls::crl::load(crl_paths, &files.ca)?; // refuses a foreign or malformed CRL, naming it
//! let now = time::OffsetDateTime::now_utc();
//! crls.check_fresh(now)?; // "refuse" (the default); "warn" logs the error instead
//! if crls.days_until_next_update(now).is_some_and(|days| days < 7) {
//!     // warn: re-sign with `isx pki crl --dir DIR --refresh`
//! }
//! let tls = server_config_with(&files, &crls, CrlExpiration::Enforce)?;
//! // swap `tls` into the acceptor; close connections whose
//! // `isx_tls::peer_serial(cert)` is in `crls.revoked_serials()`.
//! # let _ = tls; Ok(()) }
//! ```

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer};
use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::revocation_list::CertificateRevocationList;

/// A certificate serial number: the big-endian magnitude of its DER
/// INTEGER, without leading zero bytes, so that the serial read from a
/// certificate and the one listed in a CRL compare equal whatever padding
/// each encoding used. Displayed and parsed as lower-case hex.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Serial(Vec<u8>);

impl Serial {
    /// The serial whose DER INTEGER content (or plain big-endian bytes) is `bytes`.
    pub fn from_bytes(bytes: &[u8]) -> Self {
        let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len().saturating_sub(1));
        Self(bytes[start..].to_vec())
    }

    /// The big-endian bytes, without leading zeros (one zero byte for serial 0).
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Display for Serial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(&self.0))
    }
}

impl std::str::FromStr for Serial {
    type Err = hex::FromHexError;

    /// Parses hex digits (either case, even length), as [`Serial`]'s `Display` writes them.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        hex::decode(s).map(|b| Self::from_bytes(&b))
    }
}

/// Why the CRLs could not be loaded or are not fit to use.
#[derive(Debug, thiserror::Error)]
pub enum CrlError {
    /// A CRL file is missing or unreadable.
    #[error(
        "revocation list {path}: {source}. Write one signed by the CA in {dir} with `isx pki crl --dir {dir} --refresh`, or remove it from `crls` in the gateway config",
        dir = .path.parent().filter(|p| !p.as_os_str().is_empty()).map_or_else(|| ".".into(), |p| p.display().to_string())
    )]
    Read {
        /// The CRL file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A CRL file is not valid PEM.
    #[error("revocation list {path}: not valid PEM: {source}")]
    Pem {
        /// The CRL file.
        path: PathBuf,
        /// The PEM error.
        source: rustls_pki_types::pem::Error,
    },
    /// A CRL file holds no `X509 CRL` PEM block.
    #[error("revocation list {0}: holds no PEM block `-----BEGIN X509 CRL-----`")]
    Empty(PathBuf),
    /// A CRL does not parse.
    #[error("revocation list {path}: does not parse as an X.509 CRL: {reason}")]
    Parse {
        /// The CRL file.
        path: PathBuf,
        /// What the parser said.
        reason: String,
    },
    /// The CA file is missing, unreadable or not PEM.
    #[error("CA certificate {path}: {source}")]
    CaRead {
        /// The CA file.
        path: PathBuf,
        /// The PEM or I/O error.
        source: rustls_pki_types::pem::Error,
    },
    /// The CA file holds no certificate, or one that does not parse.
    #[error("CA certificate {path}: {reason}")]
    CaInvalid {
        /// The CA file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The CRL was issued by another CA (its issuer is not the CA's subject).
    #[error(
        "revocation list {path} was issued by {issuer}, not by the CA in {ca_file} ({ca}); list only CRLs of the gateway's CA under `crls`"
    )]
    WrongIssuer {
        /// The CRL file.
        path: PathBuf,
        /// The CRL's issuer name.
        issuer: String,
        /// The CA file.
        ca_file: PathBuf,
        /// The CA's subject name.
        ca: String,
    },
    /// The CRL names the CA as its issuer but is not signed by the CA's key.
    #[error(
        "revocation list {path} names {issuer} as its issuer but is not signed by the key of the CA in {ca_file} ({reason}): it comes from another CA of the same name (a PKI created again?). List this CA's CRL instead; in a development PKI, delete the file and run `isx pki crl --dir DIR --refresh` to sign a new one from DIR/revoked.txt"
    )]
    BadSignature {
        /// The CRL file.
        path: PathBuf,
        /// The CRL's issuer name.
        issuer: String,
        /// The CA file.
        ca_file: PathBuf,
        /// Why the signature does not verify.
        reason: String,
    },
    /// The CA certificate restricts its key usage and does not allow signing CRLs.
    #[error("revocation list {path}: the CA in {ca_file} may not sign CRLs (its key usage lacks cRLSign)")]
    CaMayNotSignCrls {
        /// The CRL file.
        path: PathBuf,
        /// The CA file.
        ca_file: PathBuf,
    },
    /// The CRL has no `nextUpdate`: its freshness cannot be judged.
    #[error("revocation list {0} has no nextUpdate; isx needs one to tell a stale list")]
    NoNextUpdate(PathBuf),
    /// The CRL is past its next update.
    #[error(
        "revocation list {path} is stale: its next update was due {next_update}; re-sign it (`isx pki crl --dir DIR --refresh`, or with your CA) and reload"
    )]
    Stale {
        /// The CRL file.
        path: PathBuf,
        /// When it fell due.
        next_update: OffsetDateTime,
    },
}

/// One certificate a CRL revokes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokedCert {
    /// The certificate's serial number.
    pub serial: Serial,
    /// When it was revoked.
    pub revoked_at: OffsetDateTime,
    /// The reason code, if the CRL gives one (e.g. `CessationOfOperation`).
    pub reason: Option<String>,
}

/// One CRL, parsed and checked against the CA.
#[derive(Debug, Clone)]
pub struct LoadedCrl {
    /// The file it was read from.
    pub path: PathBuf,
    /// Its DER encoding, for rustls.
    pub der: CertificateRevocationListDer<'static>,
    /// The issuer's distinguished name, as text.
    pub issuer: String,
    /// `thisUpdate`: when it was signed.
    pub this_update: OffsetDateTime,
    /// `nextUpdate`: when a newer list is due; past it, the list is stale.
    pub next_update: OffsetDateTime,
    /// The CRL number extension; `None` when absent or wider than 64 bits.
    pub number: Option<u64>,
    /// Every certificate it revokes, in the list's order.
    pub revoked: Vec<RevokedCert>,
}

impl LoadedCrl {
    /// Whether `now` is past the next update.
    pub fn is_stale(&self, now: OffsetDateTime) -> bool {
        now > self.next_update
    }

    /// Whole days from `now` to the next update, rounded down: 0 on its
    /// last day, negative once it is past.
    pub fn days_until_next_update(&self, now: OffsetDateTime) -> i64 {
        (self.next_update - now).whole_seconds().div_euclid(86_400)
    }
}

/// The CRLs a gateway enforces, each checked against its CA; see [`load`].
#[derive(Debug, Clone, Default)]
pub struct LoadedCrls {
    crls: Vec<LoadedCrl>,
}

impl LoadedCrls {
    /// Every CRL, in the order of the files (and within a file).
    pub fn crls(&self) -> &[LoadedCrl] {
        &self.crls
    }

    /// True when no CRL is configured (revocation is then not checked).
    pub fn is_empty(&self) -> bool {
        self.crls.is_empty()
    }

    /// The DER of every CRL, for `WebPkiClientVerifier::with_crls`.
    pub fn ders(&self) -> Vec<CertificateRevocationListDer<'static>> {
        self.crls.iter().map(|c| c.der.clone()).collect()
    }

    /// Every revoked serial number, over all CRLs.
    pub fn revoked_serials(&self) -> BTreeSet<Serial> {
        self.crls.iter().flat_map(|c| c.revoked.iter().map(|r| r.serial.clone())).collect()
    }

    /// Whether any CRL revokes `serial`.
    pub fn is_revoked(&self, serial: &Serial) -> bool {
        self.crls.iter().any(|c| c.revoked.iter().any(|r| &r.serial == serial))
    }

    /// The CRL that falls due first, if any.
    pub fn first_due(&self) -> Option<&LoadedCrl> {
        self.crls.iter().min_by_key(|c| c.next_update)
    }

    /// Whole days until the first CRL falls due (see
    /// [`LoadedCrl::days_until_next_update`]); `None` without CRLs.
    pub fn days_until_next_update(&self, now: OffsetDateTime) -> Option<i64> {
        self.first_due().map(|c| c.days_until_next_update(now))
    }

    /// Fails with [`CrlError::Stale`] for the first CRL that is past its
    /// next update at `now`.
    pub fn check_fresh(&self, now: OffsetDateTime) -> Result<(), CrlError> {
        match self.crls.iter().find(|c| c.is_stale(now)) {
            Some(stale) => Err(CrlError::Stale { path: stale.path.clone(), next_update: stale.next_update }),
            None => Ok(()),
        }
    }
}

/// The CRL paths of a configuration whose PKI directory is moved from
/// `from` to `to` (`isx gateway --pki DIR`): a path inside `from` (the
/// `crls = ["pki/crl.pem"]` of a deployment) is taken at the same place
/// inside `to`, so that the CRL and the CA it is checked against come from
/// the same PKI; any other path stays. The comparison is by path
/// components, without touching the file system.
pub fn rebase(paths: &[PathBuf], from: &Path, to: &Path) -> Vec<PathBuf> {
    paths
        .iter()
        .map(|p| match p.strip_prefix(from) {
            Ok(rest) => to.join(rest),
            Err(_) => p.clone(),
        })
        .collect()
}

/// The CA certificates in the PEM file `ca`, each checked to parse.
fn read_ca(ca: &Path) -> Result<Vec<CertificateDer<'static>>, CrlError> {
    let certs = CertificateDer::pem_file_iter(ca)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|source| CrlError::CaRead { path: ca.to_owned(), source })?;
    if certs.is_empty() {
        return Err(CrlError::CaInvalid { path: ca.to_owned(), reason: "holds no PEM certificate".into() });
    }
    for der in &certs {
        X509Certificate::from_der(der.as_ref())
            .map_err(|e| CrlError::CaInvalid { path: ca.to_owned(), reason: format!("does not parse: {e}") })?;
    }
    Ok(certs)
}

/// Reads every CRL in `paths` and checks each against the CA certificate(s)
/// in the PEM file `ca`: issued by it, signed by its key, with a
/// `nextUpdate`. Refuses the first that fails, naming its file. An empty
/// `paths` gives empty [`LoadedCrls`].
///
/// Freshness is not checked here: call [`LoadedCrls::check_fresh`] (refuse)
/// or [`LoadedCrls::days_until_next_update`] (warn) as the deployment wants.
pub fn load(paths: &[PathBuf], ca: &Path) -> Result<LoadedCrls, CrlError> {
    if paths.is_empty() {
        return Ok(LoadedCrls::default());
    }
    let cas = read_ca(ca)?;
    let mut crls = Vec::new();
    for path in paths {
        let bytes = std::fs::read(path).map_err(|source| CrlError::Read { path: path.clone(), source })?;
        let ders = CertificateRevocationListDer::pem_slice_iter(&bytes)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|source| CrlError::Pem { path: path.clone(), source })?;
        if ders.is_empty() {
            return Err(CrlError::Empty(path.clone()));
        }
        for der in ders {
            crls.push(check(path, der, ca, &cas)?);
        }
    }
    Ok(LoadedCrls { crls })
}

/// Parses one CRL and checks it against the CA certificates.
fn check(
    path: &Path,
    der: CertificateRevocationListDer<'static>,
    ca_file: &Path,
    cas: &[CertificateDer<'static>],
) -> Result<LoadedCrl, CrlError> {
    let (rest, crl) = CertificateRevocationList::from_der(der.as_ref())
        .map_err(|e| CrlError::Parse { path: path.to_owned(), reason: e.to_string() })?;
    if !rest.is_empty() {
        return Err(CrlError::Parse { path: path.to_owned(), reason: format!("{} bytes after the CRL", rest.len()) });
    }
    let issuer = crl.issuer().to_string();
    let parsed: Vec<X509Certificate<'_>> =
        cas.iter().filter_map(|ca| X509Certificate::from_der(ca.as_ref()).ok().map(|(_, c)| c)).collect();
    let same_name: Vec<&X509Certificate<'_>> =
        parsed.iter().filter(|c| c.subject().as_raw() == crl.issuer().as_raw()).collect();
    if same_name.is_empty() {
        let ca = parsed.iter().map(|c| c.subject().to_string()).collect::<Vec<_>>().join("; ");
        return Err(CrlError::WrongIssuer { path: path.to_owned(), issuer, ca_file: ca_file.to_owned(), ca });
    }
    let mut failure = String::new();
    let mut signer = None;
    for ca in same_name {
        match crl.verify_signature(ca.public_key()) {
            Ok(()) => {
                signer = Some(ca);
                break;
            }
            Err(e) => failure = e.to_string(),
        }
    }
    let Some(signer) = signer else {
        return Err(CrlError::BadSignature {
            path: path.to_owned(),
            issuer,
            ca_file: ca_file.to_owned(),
            reason: failure,
        });
    };
    if let Ok(Some(usage)) = signer.key_usage()
        && !usage.value.crl_sign()
    {
        return Err(CrlError::CaMayNotSignCrls { path: path.to_owned(), ca_file: ca_file.to_owned() });
    }
    let next_update = crl.next_update().ok_or_else(|| CrlError::NoNextUpdate(path.to_owned()))?.to_datetime();
    let number = crl.crl_number().and_then(|n| match n.to_u64_digits().as_slice() {
        [] => Some(0),
        [one] => Some(*one),
        _ => None,
    });
    let revoked = crl
        .iter_revoked_certificates()
        .map(|r| RevokedCert {
            serial: Serial::from_bytes(r.raw_serial()),
            revoked_at: r.revocation_date.to_datetime(),
            reason: r.reason_code().map(|(_, code)| code.to_string()),
        })
        .collect();
    let this_update = crl.last_update().to_datetime();
    Ok(LoadedCrl { path: path.to_owned(), der, issuer, this_update, next_update, number, revoked })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{CrlExpiration, IdentityFiles, client_config, server_config, server_config_with};
    use crate::pki::{self, InitOptions};
    use isx_core::NodeId;
    use std::sync::Arc;

    fn pki_with(dir: &Path, names: &[&str]) {
        let nodes = names.iter().map(|n| NodeId::new(*n).unwrap()).collect();
        pki::init(&InitOptions { nodes, ..InitOptions::new(dir) }).unwrap();
    }

    fn gateway(dir: &Path) -> IdentityFiles {
        IdentityFiles::in_dir(dir, "gateway")
    }

    /// Runs a TLS handshake between the two configurations in memory; the
    /// error is the first either side raises.
    fn handshake(server: Arc<rustls::ServerConfig>, client: Arc<rustls::ClientConfig>) -> Result<(), rustls::Error> {
        let mut c = rustls::ClientConnection::new(client, "localhost".try_into().unwrap())?;
        let mut s = rustls::ServerConnection::new(server)?;
        // Bounded: a TLS 1.3 handshake with a client certificate takes two flights each way.
        for _ in 0..10 {
            let mut wire = Vec::new();
            while c.wants_write() {
                c.write_tls(&mut wire).unwrap();
            }
            let mut rest = &wire[..];
            while !rest.is_empty() {
                s.read_tls(&mut rest).unwrap();
                s.process_new_packets()?;
            }
            let mut wire = Vec::new();
            while s.wants_write() {
                s.write_tls(&mut wire).unwrap();
            }
            let mut rest = &wire[..];
            while !rest.is_empty() {
                c.read_tls(&mut rest).unwrap();
                c.process_new_packets()?;
            }
            if !c.is_handshaking() && !s.is_handshaking() {
                return Ok(());
            }
        }
        panic!("the handshake did not finish in 10 rounds");
    }

    #[test]
    fn rebase_moves_only_the_crls_inside_the_old_pki_directory() {
        let paths = [PathBuf::from("deploy/local/pki/crl.pem"), PathBuf::from("/etc/isx/extra.pem")];
        assert_eq!(
            rebase(&paths, Path::new("deploy/local/pki"), Path::new("/tmp/isx/pki")),
            vec![PathBuf::from("/tmp/isx/pki/crl.pem"), PathBuf::from("/etc/isx/extra.pem")]
        );
        assert_eq!(rebase(&paths, Path::new("deploy/local/pk"), Path::new("/x")), paths.to_vec(), "whole components");
    }

    #[test]
    fn a_crl_of_another_ca_is_refused_naming_the_file() {
        let (ours, theirs) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        pki_with(ours.path(), &["a-police"]);
        // Another development CA: the same name, another key.
        pki_with(theirs.path(), &["a-police"]);
        let foreign = theirs.path().join(pki::CRL_FILE);
        let ca = ours.path().join("ca.crt");
        let err = load(&[ours.path().join(pki::CRL_FILE), foreign.clone()], &ca).unwrap_err();
        assert!(matches!(err, CrlError::BadSignature { ref path, .. } if path == &foreign), "{err}");
        assert!(err.to_string().contains(&foreign.display().to_string()), "{err}");
        let err = server_config(&gateway(ours.path()), std::slice::from_ref(&foreign)).unwrap_err();
        assert!(err.to_string().contains(&foreign.display().to_string()), "the gateway refuses it at start: {err}");

        // A CA of another name.
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name.push(rcgen::DnType::CommonName, "some other CA");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let now = OffsetDateTime::now_utc();
        let crl = rcgen::CertificateRevocationListParams {
            this_update: now,
            next_update: now + time::Duration::days(1),
            crl_number: rcgen::SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: vec![],
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        }
        .signed_by(&rcgen::Issuer::new(params, &key))
        .unwrap();
        let other = theirs.path().join("other.pem");
        std::fs::write(&other, crl.pem().unwrap()).unwrap();
        let err = load(std::slice::from_ref(&other), &ca).unwrap_err();
        assert!(matches!(err, CrlError::WrongIssuer { ref path, .. } if path == &other), "{err}");
        assert!(err.to_string().contains("some other CA"), "{err}");

        // Not a CRL at all, and a missing file.
        std::fs::write(&other, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n").unwrap();
        assert!(matches!(load(std::slice::from_ref(&other), &ca), Err(CrlError::Empty(p)) if p == other));
        let missing = theirs.path().join("missing.pem");
        assert!(
            matches!(load(std::slice::from_ref(&missing), &ca), Err(CrlError::Read { path, .. }) if path == missing)
        );
    }

    #[test]
    fn a_crl_past_its_next_update_is_reported_stale() {
        let dir = tempfile::tempdir().unwrap();
        pki_with(dir.path(), &["a-police"]);
        let path = dir.path().join(pki::CRL_FILE);
        let ca = dir.path().join("ca.crt");
        let now = OffsetDateTime::now_utc();
        let fresh = load(std::slice::from_ref(&path), &ca).unwrap();
        fresh.check_fresh(now).unwrap();
        assert!(fresh.days_until_next_update(now).unwrap() >= pki::DEFAULT_CRL_DAYS - 1);

        pki::refresh_crl(dir.path(), time::Duration::days(-1)).unwrap();
        let stale = load(std::slice::from_ref(&path), &ca).expect("a stale list still loads");
        let err = stale.check_fresh(OffsetDateTime::now_utc()).unwrap_err();
        assert!(matches!(err, CrlError::Stale { path: ref p, .. } if p == &path), "{err}");
        assert!(err.to_string().contains("--refresh"), "says the fix: {err}");
        assert!(stale.days_until_next_update(OffsetDateTime::now_utc()).unwrap() < 0);
        let err = server_config(&gateway(dir.path()), std::slice::from_ref(&path)).unwrap_err();
        assert!(matches!(err, crate::TlsError::Crl(CrlError::Stale { .. })), "refused by default: {err}");

        // Whole days, rounded down.
        let crl = &stale.crls()[0];
        assert_eq!(crl.days_until_next_update(crl.next_update - time::Duration::hours(36)), 1);
        assert_eq!(crl.days_until_next_update(crl.next_update - time::Duration::seconds(1)), 0);
        assert_eq!(crl.days_until_next_update(crl.next_update + time::Duration::seconds(1)), -1);
        assert!(!crl.is_stale(crl.next_update) && crl.is_stale(crl.next_update + time::Duration::seconds(1)));
        assert!(LoadedCrls::default().days_until_next_update(now).is_none());
    }

    #[test]
    fn the_verifier_refuses_revoked_clients_and_enforces_next_update_when_told() {
        let dir = tempfile::tempdir().unwrap();
        pki_with(dir.path(), &["a-police", "b-police"]);
        let path = dir.path().join(pki::CRL_FILE);
        let ca = dir.path().join("ca.crt");
        let client = |node: &str| client_config(&IdentityFiles::in_dir(dir.path(), node)).unwrap();
        pki::revoke(dir.path(), &[NodeId::new("a-police").unwrap()]).unwrap();
        let crls = load(std::slice::from_ref(&path), &ca).unwrap();
        let server = server_config_with(&gateway(dir.path()), &crls, CrlExpiration::Enforce).unwrap();
        handshake(server.clone(), client("b-police")).expect("b-police is not revoked");
        let err = handshake(server, client("a-police")).unwrap_err();
        assert!(
            matches!(err, rustls::Error::InvalidCertificate(rustls::CertificateError::Revoked)),
            "a-police is revoked: {err:?}"
        );

        pki::refresh_crl(dir.path(), time::Duration::days(-1)).unwrap();
        let stale = load(std::slice::from_ref(&path), &ca).unwrap();
        let enforce = server_config_with(&gateway(dir.path()), &stale, CrlExpiration::Enforce).unwrap();
        let err = handshake(enforce, client("b-police")).unwrap_err();
        assert!(
            matches!(
                err,
                rustls::Error::InvalidCertificate(
                    rustls::CertificateError::ExpiredRevocationList
                        | rustls::CertificateError::ExpiredRevocationListContext { .. }
                )
            ),
            "Enforce: a stale list refuses everyone: {err:?}"
        );
        let ignore = server_config_with(&gateway(dir.path()), &stale, CrlExpiration::Ignore).unwrap();
        handshake(ignore.clone(), client("b-police")).expect("Ignore: the stale list is still used");
        assert!(handshake(ignore, client("a-police")).is_err(), "and still revokes");
    }

    #[test]
    fn serials_compare_without_padding_and_round_trip_as_hex() {
        let padded = Serial::from_bytes(&[0, 0x8f, 0x01]);
        assert_eq!(padded, Serial::from_bytes(&[0x8f, 0x01]));
        assert_eq!(padded.to_string(), "8f01");
        assert_eq!("008F01".parse::<Serial>().unwrap(), padded);
        assert_eq!(Serial::from_bytes(&[0, 0]).as_bytes(), &[0]);
        assert!("xyz".parse::<Serial>().is_err());
    }
}
