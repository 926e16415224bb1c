//! The development PKI behind `isx pki init`.
//!
//! One CA (`ca.crt`, `ca.key`) issues an ECDSA P-256 certificate and key for
//! the gateway and for each node. A node certificate carries its identity as
//! the SAN URI `spiffe://isx/node/<id>` and may only authenticate clients; the
//! gateway certificate is valid for `localhost`, `127.0.0.1` and any extra
//! names, and may only authenticate servers. This is a development tool: a
//! real deployment brings certificates from its own CA with the same SAN URI.
//!
//! The CA keeps a revocation list, `crl.pem`: [`init`] writes an empty one,
//! [`revoke`] adds certificates to it (recorded with their node in
//! `revoked.txt`) and [`refresh_crl`] re-signs it before its `nextUpdate`
//! ([`DEFAULT_CRL_DAYS`] unless told otherwise); each keeps every earlier
//! entry. Private keys are written mode 0600, also when `--force` replaces
//! them.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use isx_core::NodeId;
use isx_core::node::GATEWAY_URI;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use time::{Duration, OffsetDateTime};

use crate::crl::{self, CrlError, LoadedCrl, Serial};

/// The identities `isx pki init` creates when `--nodes` is not given.
pub const DEFAULT_NODES: &[&str] = &["de-police", "fr-police", "it-police", "europol", "frontex", "auditor"];

/// Why the PKI could not be created or extended.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// The directory already holds a CA and `force` was not set.
    #[error("{0} already holds a PKI (ca.crt); pass --force to replace it, or choose another --dir")]
    Exists(PathBuf),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// rcgen refused to build a certificate or key.
    #[error("certificate generation for {what}: {source}")]
    Rcgen {
        /// Which identity.
        what: String,
        /// The rcgen error.
        source: rcgen::Error,
    },
    /// A name given for a node is not a valid node id.
    #[error("--nodes: {0}")]
    BadNode(#[from] isx_core::NodeIdError),
    /// The current revocation list is unreadable or not from this CA.
    #[error(transparent)]
    Crl(#[from] CrlError),
    /// A line of `revoked.txt` does not parse.
    #[error("{path}:{line}: {reason}")]
    Bookkeeping {
        /// The file.
        path: PathBuf,
        /// The line number, from 1.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// A private key file is open to its group or to others.
    #[error(transparent)]
    Key(isx_store::KeyError),
}

/// What to create.
#[derive(Debug, Clone)]
pub struct InitOptions {
    /// The directory to write into; created if missing.
    pub dir: PathBuf,
    /// The node identities to issue.
    pub nodes: Vec<NodeId>,
    /// Extra DNS names or IP addresses for the gateway certificate.
    pub gateway_names: Vec<String>,
    /// Replace an existing PKI in `dir`.
    pub force: bool,
    /// How long certificates stay valid.
    pub validity: Duration,
}

impl InitOptions {
    /// The defaults: the six standard identities, valid for a year.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            nodes: DEFAULT_NODES.iter().map(|n| NodeId::new(*n).expect("default ids are valid")).collect(),
            gateway_names: Vec::new(),
            force: false,
            validity: Duration::days(365),
        }
    }
}

/// The files that were written.
#[derive(Debug, Clone)]
pub struct InitSummary {
    /// Every file, in the order written.
    pub files: Vec<PathBuf>,
}

/// The development CA: its key and the parameters it signs with.
pub struct DevCa {
    key: KeyPair,
    params: CertificateParams,
}

impl std::fmt::Debug for DevCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevCa").finish_non_exhaustive()
    }
}

fn rc(what: &str) -> impl FnOnce(rcgen::Error) -> PkiError + '_ {
    move |source| PkiError::Rcgen { what: what.to_owned(), source }
}

fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "isx development PKI");
    dn.push(DnType::CommonName, "isx development CA");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    params
}

impl DevCa {
    /// A new CA with a fresh key, valid for `validity` from now.
    pub fn generate(validity: Duration) -> Result<(Self, String), PkiError> {
        let key = KeyPair::generate().map_err(rc("CA key"))?;
        let mut params = ca_params();
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::minutes(5);
        params.not_after = now + validity;
        let cert = params.self_signed(&key).map_err(rc("CA"))?;
        Ok((Self { key, params }, cert.pem()))
    }

    /// Loads the CA key from `dir/ca.key`, to issue more certificates;
    /// refuses a key file that its group or others may read.
    pub fn load(dir: &Path) -> Result<Self, PkiError> {
        let path = dir.join("ca.key");
        if let Err(e @ isx_store::KeyError::Exposed { .. }) = isx_store::check_private(&path) {
            return Err(PkiError::Key(e));
        }
        let pem = fs::read_to_string(&path).map_err(|source| PkiError::Io { path: path.clone(), source })?;
        let key = KeyPair::from_pem(&pem).map_err(rc("CA key"))?;
        Ok(Self { key, params: ca_params() })
    }

    fn issue(
        &self,
        what: &str,
        mut params: CertificateParams,
        validity: Duration,
    ) -> Result<(String, String), PkiError> {
        let key = KeyPair::generate().map_err(rc(what))?;
        let now = OffsetDateTime::now_utc();
        // A negative validity yields a certificate that has already expired (for tests).
        params.not_before =
            if validity.is_negative() { now + validity - Duration::days(1) } else { now - Duration::minutes(5) };
        params.not_after = now + validity;
        params.use_authority_key_identifier_extension = true;
        let issuer = Issuer::new(self.params.clone(), &self.key);
        let cert = params.signed_by(&key, &issuer).map_err(rc(what))?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    /// A client certificate for `node`: SAN URI `spiffe://isx/node/<id>`, clientAuth only.
    ///
    /// A negative `validity` makes a certificate that has already expired, for tests.
    pub fn issue_node(&self, node: &NodeId, validity: Duration) -> Result<(String, String), PkiError> {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "isx development PKI");
        dn.push(DnType::CommonName, node.as_str());
        params.distinguished_name = dn;
        let uri = node.san_uri().try_into().map_err(rc(node.as_str()))?;
        params.subject_alt_names = vec![SanType::URI(uri)];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.issue(node.as_str(), params, validity)
    }

    /// The gateway's server certificate for `localhost`, `127.0.0.1` and `extra_names`.
    pub fn issue_gateway(&self, extra_names: &[String], validity: Duration) -> Result<(String, String), PkiError> {
        let mut names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
        names.extend(extra_names.iter().cloned());
        let mut params = CertificateParams::new(names).map_err(rc("gateway"))?;
        params.subject_alt_names.push(SanType::URI(GATEWAY_URI.try_into().map_err(rc("gateway"))?));
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "isx development PKI");
        dn.push(DnType::CommonName, "isx gateway");
        params.distinguished_name = dn;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.issue("gateway", params, validity)
    }
}

/// Writes `contents` to `path`, replacing any file there atomically: a
/// reader (a gateway reloading `crl.pem`) sees the old file or the new one,
/// never half of one. Keys (`secret`) are mode 0600, also when they replace
/// a file ([`isx_store::write_private`]); other files get the umask's mode.
pub fn write_file(path: &Path, contents: &str, secret: bool) -> Result<(), PkiError> {
    let io = |source| PkiError::Io { path: path.to_owned(), source };
    if secret {
        return isx_store::write_private(path, contents.as_bytes()).map_err(io);
    }
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let written = (|| {
        let mut file = fs::OpenOptions::new().write(true).create(true).truncate(true).open(&tmp)?;
        file.write_all(contents.as_bytes())?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written.map_err(io)
}

/// Creates the CA, the gateway identity and every node identity in `opts.dir`.
pub fn init(opts: &InitOptions) -> Result<InitSummary, PkiError> {
    let dir = &opts.dir;
    if dir.join("ca.crt").exists() && !opts.force {
        return Err(PkiError::Exists(dir.clone()));
    }
    fs::create_dir_all(dir).map_err(|source| PkiError::Io { path: dir.clone(), source })?;
    let mut files = Vec::new();
    let mut put = |name: String, contents: &str, secret: bool| -> Result<(), PkiError> {
        let path = dir.join(name);
        write_file(&path, contents, secret)?;
        files.push(path);
        Ok(())
    };
    let (ca, ca_pem) = DevCa::generate(opts.validity + Duration::days(1))?;
    put("ca.crt".into(), &ca_pem, false)?;
    put("ca.key".into(), &ca.key.serialize_pem(), true)?;
    let (cert, key) = ca.issue_gateway(&opts.gateway_names, opts.validity)?;
    put("gateway.crt".into(), &cert, false)?;
    put("gateway.key".into(), &key, true)?;
    for node in &opts.nodes {
        let (cert, key) = ca.issue_node(node, opts.validity)?;
        put(format!("{node}.crt"), &cert, false)?;
        put(format!("{node}.key"), &key, true)?;
    }
    // A new CA has revoked nothing: an empty list, so that a deployment
    // always has one, and no bookkeeping left from a replaced CA.
    let revoked = dir.join(REVOKED_FILE);
    if let Err(e) = fs::remove_file(&revoked)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        return Err(PkiError::Io { path: revoked, source: e });
    }
    files.push(write_crl(dir, &ca, &[], 1, Duration::days(DEFAULT_CRL_DAYS))?);
    Ok(InitSummary { files })
}

/// The file the revocation list is written to (`crls = ["pki/crl.pem"]` in the gateway config).
pub const CRL_FILE: &str = "crl.pem";
/// The bookkeeping of `isx pki revoke`: one line per revoked certificate,
/// `SERIAL NODE REVOKED-AT` (hex serial, node id, RFC 3339 time).
pub const REVOKED_FILE: &str = "revoked.txt";
/// How many days a revocation list written by [`init`], [`revoke`] or
/// [`refresh_crl`] stays fresh unless told otherwise (its `nextUpdate`).
pub const DEFAULT_CRL_DAYS: i64 = 30;

/// The serial number of the certificate in `path` (PEM).
fn serial_of(path: &Path) -> Result<Serial, PkiError> {
    let io = |source| PkiError::Io { path: path.to_owned(), source };
    let pem = fs::read(path).map_err(io)?;
    let bad = || io(std::io::Error::new(std::io::ErrorKind::InvalidData, "not a PEM certificate"));
    let (_, pem) = x509_parser::pem::parse_x509_pem(&pem).map_err(|_| bad())?;
    let cert = pem.parse_x509().map_err(|_| bad())?;
    Ok(Serial::from_bytes(cert.tbs_certificate.raw_serial()))
}

/// One line of `revoked.txt`: a certificate that `isx pki revoke` revoked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokedEntry {
    /// The certificate's serial number.
    pub serial: Serial,
    /// The node it was issued to (`-` when only the CRL knew the serial).
    pub node: String,
    /// When it was revoked; `None` on lines written before isx recorded it.
    pub revoked_at: Option<OffsetDateTime>,
}

/// Reads `dir/revoked.txt` (no file: nothing revoked).
pub fn revoked_entries(dir: &Path) -> Result<Vec<RevokedEntry>, PkiError> {
    let path = dir.join(REVOKED_FILE);
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
        Err(source) => return Err(PkiError::Io { path, source }),
    };
    let mut entries = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let bad = |reason: String| PkiError::Bookkeeping { path: path.clone(), line: i + 1, reason };
        let mut words = line.split_whitespace();
        let Some(serial) = words.next() else { continue };
        let serial = serial.parse::<Serial>().map_err(|e| bad(format!("serial {serial:?}: {e}")))?;
        let node = words.next().unwrap_or("-").to_owned();
        let revoked_at = match words.next() {
            None => None,
            Some(t) => Some(
                OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
                    .map_err(|e| bad(format!("time {t:?}: {e}")))?,
            ),
        };
        entries.push(RevokedEntry { serial, node, revoked_at });
    }
    Ok(entries)
}

fn write_revoked(dir: &Path, entries: &[RevokedEntry]) -> Result<(), PkiError> {
    let path = dir.join(REVOKED_FILE);
    let mut text = String::new();
    for e in entries {
        let at = e.revoked_at.unwrap_or_else(OffsetDateTime::now_utc);
        let at = at
            .format(&time::format_description::well_known::Rfc3339)
            .map_err(|e| PkiError::Io { path: path.clone(), source: std::io::Error::other(e) })?;
        text.push_str(&format!("{} {} {at}\n", e.serial, e.node));
    }
    write_file(&path, &text, false)
}

/// Signs a CRL over `revoked` with the CA and writes it to `dir/crl.pem`.
fn write_crl(
    dir: &Path,
    ca: &DevCa,
    revoked: &[RevokedEntry],
    number: u64,
    validity: Duration,
) -> Result<PathBuf, PkiError> {
    let now = OffsetDateTime::now_utc();
    // A negative validity yields a list that is already stale (for tests).
    let this_update =
        if validity.is_negative() { now + validity - Duration::days(1) } else { now - Duration::minutes(5) };
    let revoked_certs = revoked
        .iter()
        .map(|e| rcgen::RevokedCertParams {
            serial_number: rcgen::SerialNumber::from_slice(e.serial.as_bytes()),
            revocation_time: e.revoked_at.unwrap_or(now),
            reason_code: Some(rcgen::RevocationReason::CessationOfOperation),
            invalidity_date: None,
        })
        .collect();
    let params = rcgen::CertificateRevocationListParams {
        this_update,
        next_update: now + validity,
        crl_number: rcgen::SerialNumber::from(number),
        issuing_distribution_point: None,
        revoked_certs,
        key_identifier_method: rcgen::KeyIdMethod::Sha256,
    };
    let issuer = Issuer::new(ca.params.clone(), &ca.key);
    let crl = params.signed_by(&issuer).map_err(rc("revocation list"))?;
    let path = dir.join(CRL_FILE);
    write_file(&path, &crl.pem().map_err(rc("revocation list"))?, false)?;
    Ok(path)
}

/// Reads `dir/crl.pem` and checks it against `dir/ca.crt` ([`crl::load`]):
/// signed by the CA, with a next update. Staleness is the caller's to judge
/// ([`LoadedCrl::is_stale`]).
pub fn read_crl(dir: &Path) -> Result<LoadedCrl, PkiError> {
    let path = dir.join(CRL_FILE);
    let loaded = crl::load(std::slice::from_ref(&path), &dir.join("ca.crt"))?;
    Ok(loaded.crls().first().cloned().expect("load returns at least one CRL per file"))
}

/// Re-signs `dir/crl.pem` with the CA in `dir`, revoking what it and
/// `revoked.txt` already revoke plus `nodes`' certificates, valid for
/// `validity` from now, with the next CRL number.
fn resign(dir: &Path, nodes: &[NodeId], validity: Duration) -> Result<PathBuf, PkiError> {
    let mut entries = revoked_entries(dir)?;
    let current = match read_crl(dir) {
        Ok(current) => Some(current),
        Err(PkiError::Crl(CrlError::Read { source, .. })) if source.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    // Whole seconds: what a CRL records (UTCTime), so revoked.txt says the same.
    let now = OffsetDateTime::now_utc().replace_nanosecond(0).expect("0 ns is valid");
    for node in nodes {
        let serial = serial_of(&dir.join(format!("{node}.crt")))?;
        if !entries.iter().any(|e| e.serial == serial) {
            entries.push(RevokedEntry { serial, node: node.to_string(), revoked_at: Some(now) });
        }
    }
    // The list keeps what it revoked even if the bookkeeping lost it.
    if let Some(current) = &current {
        for listed in &current.revoked {
            match entries.iter_mut().find(|e| e.serial == listed.serial) {
                Some(e) => {
                    e.revoked_at.get_or_insert(listed.revoked_at);
                }
                None => entries.push(RevokedEntry {
                    serial: listed.serial.clone(),
                    node: "-".into(),
                    revoked_at: Some(listed.revoked_at),
                }),
            }
        }
    }
    for e in &mut entries {
        e.revoked_at.get_or_insert(now);
    }
    let number = current.and_then(|c| c.number).map_or(1, |n| n.saturating_add(1));
    let ca = DevCa::load(dir)?;
    let path = write_crl(dir, &ca, &entries, number, validity)?;
    write_revoked(dir, &entries)?;
    Ok(path)
}

/// Revokes `nodes`' certificates in `dir`: adds their serial numbers to
/// `dir/revoked.txt` and re-signs `dir/crl.pem` with the CA, keeping every
/// earlier revocation, fresh for [`DEFAULT_CRL_DAYS`]. A gateway applies it
/// when it loads its CRLs again.
pub fn revoke(dir: &Path, nodes: &[NodeId]) -> Result<PathBuf, PkiError> {
    revoke_with(dir, nodes, Duration::days(DEFAULT_CRL_DAYS))
}

/// [`revoke`], with the new list fresh for `validity`.
pub fn revoke_with(dir: &Path, nodes: &[NodeId], validity: Duration) -> Result<PathBuf, PkiError> {
    resign(dir, nodes, validity)
}

/// Re-signs `dir/crl.pem` with a new `thisUpdate`, a `nextUpdate` of now +
/// `validity` and the next CRL number, keeping every entry (those of the
/// current list and of `revoked.txt`). Writes one if the PKI has none yet
/// (a PKI made before `init` wrote an empty list). A negative `validity`
/// writes a list that is already stale (for tests).
pub fn refresh_crl(dir: &Path, validity: Duration) -> Result<PathBuf, PkiError> {
    resign(dir, &[], validity)
}

/// Issues one more node identity from the CA already in `dir`.
pub fn issue_node(dir: &Path, node: &NodeId, validity: Duration) -> Result<Vec<PathBuf>, PkiError> {
    let ca = DevCa::load(dir)?;
    let (cert, key) = ca.issue_node(node, validity)?;
    let (crt_path, key_path) = (dir.join(format!("{node}.crt")), dir.join(format!("{node}.key")));
    write_file(&crt_path, &cert, false)?;
    write_file(&key_path, &key, true)?;
    Ok(vec![crt_path, key_path])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{IdentityFiles, client_config, read_certs, server_config};
    use crate::identity::peer_identity;

    #[test]
    fn init_writes_every_identity_and_refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let opts = InitOptions::new(dir.path());
        let summary = init(&opts).unwrap();
        assert_eq!(summary.files.len(), 2 + 2 + 2 * DEFAULT_NODES.len() + 1, "and crl.pem");
        for node in DEFAULT_NODES {
            let files = IdentityFiles::in_dir(dir.path(), node);
            client_config(&files).unwrap();
            let cert = read_certs(&files.cert).unwrap().remove(0);
            assert_eq!(peer_identity(&cert).unwrap().node.as_str(), *node);
        }
        server_config(&IdentityFiles::in_dir(dir.path(), "gateway"), &[]).unwrap();
        assert!(matches!(init(&opts), Err(PkiError::Exists(_))));
        let forced = InitOptions { force: true, ..opts };
        init(&forced).unwrap();
    }

    #[test]
    fn issue_adds_a_node_to_an_existing_ca() {
        let dir = tempfile::tempdir().unwrap();
        init(&InitOptions { nodes: vec![], ..InitOptions::new(dir.path()) }).unwrap();
        let node = NodeId::new("es-police").unwrap();
        issue_node(dir.path(), &node, Duration::days(1)).unwrap();
        let cert = read_certs(&dir.path().join("es-police.crt")).unwrap().remove(0);
        assert_eq!(peer_identity(&cert).unwrap().node, node);
    }

    #[test]
    fn revoke_writes_a_crl_that_rustls_loads() {
        let dir = tempfile::tempdir().unwrap();
        let mut opts = InitOptions::new(dir.path());
        opts.nodes = vec![NodeId::new("a-police").unwrap(), NodeId::new("b-police").unwrap()];
        init(&opts).unwrap();
        let crl = revoke(dir.path(), &[NodeId::new("a-police").unwrap()]).unwrap();
        revoke(dir.path(), &[NodeId::new("a-police").unwrap()]).unwrap();
        let listed = std::fs::read_to_string(dir.path().join(REVOKED_FILE)).unwrap();
        assert_eq!(listed.lines().count(), 1, "revoking twice lists once: {listed}");
        assert!(listed.contains("a-police"));
        let files = IdentityFiles::in_dir(dir.path(), "gateway");
        server_config(&files, &[crl]).expect("the CRL parses and the server accepts it");
        assert!(revoke(dir.path(), &[NodeId::new("c-police").unwrap()]).is_err(), "no certificate, no revocation");
    }

    fn nodes(names: &[&str]) -> Vec<NodeId> {
        names.iter().map(|n| NodeId::new(*n).unwrap()).collect()
    }

    fn serial_in(dir: &Path, node: &str) -> Serial {
        crate::identity::peer_serial(&read_certs(&dir.join(format!("{node}.crt"))).unwrap().remove(0)).unwrap()
    }

    #[test]
    fn init_writes_an_empty_crl_signed_by_the_ca() {
        let dir = tempfile::tempdir().unwrap();
        let summary = init(&InitOptions { nodes: nodes(&["a-police"]), ..InitOptions::new(dir.path()) }).unwrap();
        let path = dir.path().join(CRL_FILE);
        assert!(summary.files.contains(&path), "{:?}", summary.files);
        // read_crl checks the signature against ca.crt.
        let crl = read_crl(dir.path()).unwrap();
        assert!(crl.revoked.is_empty());
        assert_eq!(crl.number, Some(1));
        let now = OffsetDateTime::now_utc();
        assert!(!crl.is_stale(now));
        assert!(crl.days_until_next_update(now) >= DEFAULT_CRL_DAYS - 1, "{}", crl.next_update);
        assert!(crl.this_update <= now);
        server_config(&IdentityFiles::in_dir(dir.path(), "gateway"), &[path]).expect("the gateway takes it");
        assert!(!dir.path().join(REVOKED_FILE).exists());
    }

    #[test]
    fn revoke_adds_to_the_crl_and_keeps_earlier_revocations() {
        let dir = tempfile::tempdir().unwrap();
        init(&InitOptions { nodes: nodes(&["a-police", "b-police", "c-police"]), ..InitOptions::new(dir.path()) })
            .unwrap();
        let (a, b) = (serial_in(dir.path(), "a-police"), serial_in(dir.path(), "b-police"));
        revoke(dir.path(), &nodes(&["a-police"])).unwrap();
        let first = read_crl(dir.path()).unwrap();
        assert_eq!(first.revoked.iter().map(|r| r.serial.clone()).collect::<Vec<_>>(), vec![a.clone()]);
        assert_eq!(first.number, Some(2), "after the empty list of init");

        // An earlier revocation keeps its time: say a-police was revoked in 2020
        // (revoking twice in the same second would not tell).
        let book = dir.path().join(REVOKED_FILE);
        let line = std::fs::read_to_string(&book).unwrap();
        let (head, _) = line.trim().rsplit_once(' ').unwrap();
        std::fs::write(&book, format!("{head} 2020-01-01T00:00:00Z\n")).unwrap();
        revoke(dir.path(), &nodes(&["b-police"])).unwrap();
        let second = read_crl(dir.path()).unwrap();
        let serials: Vec<Serial> = second.revoked.iter().map(|r| r.serial.clone()).collect();
        assert_eq!(serials, vec![a.clone(), b.clone()], "b added, a kept");
        let in_2020 = time::macros::datetime!(2020-01-01 00:00:00 UTC);
        assert_eq!(second.revoked[0].revoked_at, in_2020, "a keeps its revocation time");
        assert!(second.revoked[1].revoked_at > in_2020);
        assert_eq!(second.number, Some(3));
        let entries = revoked_entries(dir.path()).unwrap();
        assert_eq!(
            entries.iter().map(|e| (e.serial.clone(), e.node.as_str())).collect::<Vec<_>>(),
            vec![(a, "a-police"), (b, "b-police")]
        );
        assert!(entries.iter().all(|e| e.revoked_at.is_some()));
        assert!(!second.revoked.iter().any(|r| r.serial == serial_in(dir.path(), "c-police")));
    }

    #[test]
    fn refresh_moves_the_next_update_and_keeps_the_entries() {
        let dir = tempfile::tempdir().unwrap();
        init(&InitOptions { nodes: nodes(&["a-police", "b-police"]), ..InitOptions::new(dir.path()) }).unwrap();
        revoke(dir.path(), &nodes(&["a-police", "b-police"])).unwrap();
        let before = read_crl(dir.path()).unwrap();
        refresh_crl(dir.path(), Duration::days(90)).unwrap();
        let after = read_crl(dir.path()).unwrap();
        assert!(
            after.next_update >= before.next_update + Duration::days(59),
            "{} -> {}",
            before.next_update,
            after.next_update
        );
        assert!(after.this_update >= before.this_update);
        assert_eq!(after.revoked, before.revoked, "same serials, same revocation times");
        assert_eq!(after.number, before.number.map(|n| n + 1));

        // The list keeps its entries even if the bookkeeping is lost.
        std::fs::remove_file(dir.path().join(REVOKED_FILE)).unwrap();
        refresh_crl(dir.path(), Duration::days(30)).unwrap();
        let kept = read_crl(dir.path()).unwrap();
        assert_eq!(kept.revoked, before.revoked);

        // A PKI made before init wrote a list gets one.
        std::fs::remove_file(dir.path().join(CRL_FILE)).unwrap();
        refresh_crl(dir.path(), Duration::days(30)).unwrap();
        assert_eq!(read_crl(dir.path()).unwrap().revoked.len(), 2, "from revoked.txt");
    }

    #[test]
    fn revoked_serials_round_trip_from_certificate_to_crl_to_peer() {
        let dir = tempfile::tempdir().unwrap();
        init(&InitOptions { nodes: nodes(&["a-police", "b-police"]), ..InitOptions::new(dir.path()) }).unwrap();
        let crl = revoke(dir.path(), &nodes(&["a-police"])).unwrap();
        let loaded = crl::load(&[crl], &dir.path().join("ca.crt")).unwrap();
        let (a, b) = (serial_in(dir.path(), "a-police"), serial_in(dir.path(), "b-police"));
        assert_eq!(loaded.revoked_serials().into_iter().collect::<Vec<_>>(), vec![a.clone()]);
        assert!(loaded.is_revoked(&a) && !loaded.is_revoked(&b));
        // revoked.txt writes the same serial as hex.
        assert_eq!(revoked_entries(dir.path()).unwrap()[0].serial.to_string().parse::<Serial>().unwrap(), a);
    }

    #[cfg(unix)]
    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[cfg(unix)]
    fn set_mode(path: &Path, mode: u32) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    /// Every key is 0600, also one that `force` replaces while it was 0644.
    #[cfg(unix)]
    #[test]
    fn keys_are_0600_also_when_force_overwrites_a_0644_key() {
        let dir = tempfile::tempdir().unwrap();
        let opts = InitOptions { nodes: nodes(&["a-police"]), ..InitOptions::new(dir.path()) };
        init(&opts).unwrap();
        let keys = ["ca.key", "gateway.key", "a-police.key"].map(|k| dir.path().join(k));
        for key in &keys {
            assert_eq!(mode(key), 0o600, "{}", key.display());
            set_mode(key, 0o644);
        }
        init(&InitOptions { force: true, ..opts }).unwrap();
        for key in &keys {
            assert_eq!(mode(key), 0o600, "{} after --force", key.display());
        }
        issue_node(dir.path(), &NodeId::new("a-police").unwrap(), Duration::days(1)).unwrap();
        assert_eq!(mode(&keys[2]), 0o600, "re-issued");
    }

    /// A key its group or others may read is refused where it is loaded, naming it.
    #[cfg(unix)]
    #[test]
    fn a_key_others_may_read_is_refused_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        init(&InitOptions { nodes: nodes(&["a-police"]), ..InitOptions::new(dir.path()) }).unwrap();
        let check = |err: String, path: &Path| {
            assert!(err.contains(&format!("chmod 600 {}", path.display())), "names the file and the fix: {err}");
        };
        let gateway = IdentityFiles::in_dir(dir.path(), "gateway");
        set_mode(&gateway.key, 0o644);
        check(server_config(&gateway, &[]).unwrap_err().to_string(), &gateway.key);
        set_mode(&gateway.key, 0o600);
        server_config(&gateway, &[]).unwrap();

        let node = IdentityFiles::in_dir(dir.path(), "a-police");
        set_mode(&node.key, 0o640);
        check(client_config(&node).unwrap_err().to_string(), &node.key);
        set_mode(&node.key, 0o600);
        client_config(&node).unwrap();

        let ca_key = dir.path().join("ca.key");
        set_mode(&ca_key, 0o604);
        check(
            issue_node(dir.path(), &NodeId::new("b-police").unwrap(), Duration::days(1)).unwrap_err().to_string(),
            &ca_key,
        );
        check(revoke(dir.path(), &nodes(&["a-police"])).unwrap_err().to_string(), &ca_key);
    }

    #[test]
    fn gateway_certificate_has_no_node_identity() {
        let dir = tempfile::tempdir().unwrap();
        init(&InitOptions { nodes: vec![], ..InitOptions::new(dir.path()) }).unwrap();
        let cert = read_certs(&dir.path().join("gateway.crt")).unwrap().remove(0);
        assert!(peer_identity(&cert).is_err());
    }
}
