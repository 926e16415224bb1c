//! The development PKI behind `isx pki init`.
//!
//! One CA (`ca.crt`, `ca.key`) issues an ECDSA P-256 certificate and key for
//! the gateway and for each node. A node certificate carries its identity as
//! the SAN URI `spiffe://isx/node/<id>` and may only authenticate clients; the
//! gateway certificate is valid for `localhost`, `127.0.0.1` and any extra
//! names, and may only authenticate servers. This is a development tool: a
//! real deployment brings certificates from its own CA with the same SAN URI.

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

    /// Loads the CA key from `dir/ca.key`, to issue more certificates.
    pub fn load(dir: &Path) -> Result<Self, PkiError> {
        let path = dir.join("ca.key");
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

/// Writes `contents` to `path`; keys get mode 0600.
pub fn write_file(path: &Path, contents: &str, secret: bool) -> Result<(), PkiError> {
    let io = |source| PkiError::Io { path: path.to_owned(), source };
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(io)?;
    file.write_all(contents.as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)
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
    Ok(InitSummary { files })
}

/// The file the revocation list is written to (`crls = ["pki/crl.pem"]` in the gateway config).
pub const CRL_FILE: &str = "crl.pem";
const REVOKED_FILE: &str = "revoked.txt";

/// The serial number of the certificate in `path` (PEM).
fn serial_of(path: &Path) -> Result<Vec<u8>, PkiError> {
    let io = |source| PkiError::Io { path: path.to_owned(), source };
    let pem = fs::read(path).map_err(io)?;
    let bad = || io(std::io::Error::new(std::io::ErrorKind::InvalidData, "not a PEM certificate"));
    let (_, pem) = x509_parser::pem::parse_x509_pem(&pem).map_err(|_| bad())?;
    let cert = pem.parse_x509().map_err(|_| bad())?;
    Ok(cert.tbs_certificate.raw_serial().to_vec())
}

/// Revokes `nodes`' certificates in `dir`: adds their serial numbers to
/// `dir/revoked.txt` and writes a new `dir/crl.pem` signed by the CA. The
/// gateway reads its CRLs at start: restart it to apply.
pub fn revoke(dir: &Path, nodes: &[NodeId]) -> Result<PathBuf, PkiError> {
    let list_path = dir.join(REVOKED_FILE);
    let mut lines: Vec<String> = match fs::read_to_string(&list_path) {
        Ok(text) => text.lines().filter(|l| !l.trim().is_empty()).map(str::to_owned).collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => vec![],
        Err(source) => return Err(PkiError::Io { path: list_path, source }),
    };
    for node in nodes {
        let serial = hex::encode(serial_of(&dir.join(format!("{node}.crt")))?);
        if !lines.iter().any(|l| l.starts_with(&serial)) {
            lines.push(format!("{serial} {node}"));
        }
    }
    let ca = DevCa::load(dir)?;
    let now = OffsetDateTime::now_utc();
    let revoked = lines
        .iter()
        .filter_map(|l| l.split_whitespace().next().and_then(|h| hex::decode(h).ok()))
        .map(|serial| rcgen::RevokedCertParams {
            serial_number: rcgen::SerialNumber::from_slice(&serial),
            revocation_time: now,
            reason_code: Some(rcgen::RevocationReason::CessationOfOperation),
            invalidity_date: None,
        })
        .collect();
    let params = rcgen::CertificateRevocationListParams {
        this_update: now - Duration::minutes(5),
        next_update: now + Duration::days(30),
        crl_number: rcgen::SerialNumber::from(lines.len() as u64),
        issuing_distribution_point: None,
        revoked_certs: revoked,
        key_identifier_method: rcgen::KeyIdMethod::Sha256,
    };
    let issuer = Issuer::new(ca.params.clone(), &ca.key);
    let crl = params.signed_by(&issuer).map_err(rc("revocation list"))?;
    let crl_path = dir.join(CRL_FILE);
    write_file(&crl_path, &crl.pem().map_err(rc("revocation list"))?, false)?;
    write_file(&list_path, &format!("{}\n", lines.join("\n")), false)?;
    Ok(crl_path)
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
        assert_eq!(summary.files.len(), 2 + 2 + 2 * DEFAULT_NODES.len());
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

    #[test]
    fn gateway_certificate_has_no_node_identity() {
        let dir = tempfile::tempdir().unwrap();
        init(&InitOptions { nodes: vec![], ..InitOptions::new(dir.path()) }).unwrap();
        let cert = read_certs(&dir.path().join("gateway.crt")).unwrap().remove(0);
        assert!(peer_identity(&cert).is_err());
    }
}
