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
//!
//! # A PKI that cannot destroy itself
//! - A node's files are `<id>.crt` and `<id>.key` beside the CA's own, so the
//!   names of isx's own files ([`RESERVED_NAMES`]: `ca`, `gateway`, `audit`,
//!   `audit-hmac`, `audit-text`, `crl`, `revoked`, `witness`) are refused as node ids
//!   ([`PkiError::Reserved`]) by [`init`], [`issue_node`] and [`revoke`].
//!   Store keys (`<owner>.store.key`) and witness files
//!   (`<id>.witness.crt`, `<id>.cosign.key`, …: [`witness_tls_paths`],
//!   [`witness_cosign_paths`]) cannot collide: a node id holds no `.`.
//! - [`issue_node`] of a node that already has a certificate or key
//!   replaces them only when told to ([`PkiError::NodeExists`]).
//! - [`init`] over an existing PKI ([`pki_files`]: every file isx writes in
//!   a PKI directory) refuses ([`PkiError::Exists`]) unless `force` is set;
//!   then it moves every one of those files, old node identities and store
//!   keys included, into a new `replaced-<UTC time>` folder inside the
//!   directory before it writes the new ones, so the directory never holds a
//!   mix of the old PKI and the new, and nothing is lost
//!   ([`InitSummary::replaced`]).

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
pub const DEFAULT_NODES: &[&str] = &["de-police", "fr-police", "it-police", "europol", "frontex", "auditor", "ops"];

/// Why the PKI could not be created or extended.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// The directory already holds (part of) a PKI and `force` was not set.
    #[error(
        "{} already holds a PKI ({}); replace all of it with `isx pki init --dir {} --force` (the old files are moved into a replaced-* folder inside it), or choose another directory",
        .dir.display(), names(.found), .dir.display()
    )]
    Exists {
        /// The directory.
        dir: PathBuf,
        /// The PKI files found in it.
        found: Vec<PathBuf>,
    },
    /// A node id is the name of one of isx's own files in a PKI directory.
    #[error(
        "node id `{node}` is reserved: in a PKI directory it names {owner}, which a node's {node}.crt and {node}.key would overwrite or be taken for. Choose another node id (reserved: {})",
        RESERVED_NAMES.join(", ")
    )]
    Reserved {
        /// The node id refused.
        node: String,
        /// Whose files the name stands for.
        owner: &'static str,
    },
    /// The node already has a certificate or key and `force` was not set.
    #[error(
        "node {node} already has {} in {}; pass --force to replace them (the certificate replaced stays valid until it expires: revoke it first with `isx pki revoke --dir {} {node}`)",
        names(.files), .dir.display(), .dir.display()
    )]
    NodeExists {
        /// The node.
        node: String,
        /// The PKI directory.
        dir: PathBuf,
        /// Its files found there.
        files: Vec<PathBuf>,
    },
    /// The directory holds no CA key to issue or sign with.
    #[error("{} holds no CA ({} is missing); create a PKI there with `isx pki init --dir {}`", .0.display(), .0.join("ca.key").display(), .0.display())]
    NoCa(PathBuf),
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

/// The file names, without extension, of isx's own files in a PKI
/// directory: no node may take one as its id ([`check_node_id`]).
pub const RESERVED_NAMES: &[&str] =
    &["ca", "gateway", "audit", "audit-hmac", "audit-text", "crl", "revoked", WITNESS_ID];

/// The id of the standalone witness (`isx witness`): its server certificate
/// is `witness.crt`/`witness.key` and its cosignature key
/// `witness.cosign.key`/`.pub`, so no node may take the name.
pub const WITNESS_ID: &str = "witness";

/// The C2SP tlog-policy file `isx pki init` writes beside the keys.
pub const WITNESS_POLICY_FILE: &str = "witness.policy";

/// The SAN URI prefix of a witness's server certificate: `spiffe://isx/witness/<id>`.
pub const WITNESS_URI_PREFIX: &str = "spiffe://isx/witness/";

/// The server certificate and key of witness `id` in `dir`: the
/// standalone witness ([`WITNESS_ID`]) has `witness.crt`/`witness.key`,
/// like the gateway's; a node acting as a witness has
/// `<node>.witness.crt`/`<node>.witness.key`, since `<node>.crt` is its
/// client identity.
pub fn witness_tls_paths(dir: &Path, id: &str) -> (PathBuf, PathBuf) {
    if id == WITNESS_ID {
        (dir.join("witness.crt"), dir.join("witness.key"))
    } else {
        (dir.join(format!("{id}.witness.crt")), dir.join(format!("{id}.witness.key")))
    }
}

/// The cosignature key files of witness `id` in `dir`: `<id>.cosign.key`
/// (private, 0600) and `<id>.cosign.pub` (its C2SP vkey).
pub fn witness_cosign_paths(dir: &Path, id: &str) -> (PathBuf, PathBuf) {
    (dir.join(format!("{id}.cosign.key")), dir.join(format!("{id}.cosign.pub")))
}

/// The files isx writes in a PKI directory under fixed names: the CA, the
/// gateway, the revocation list and its bookkeeping, and the audit keys of
/// `isx_audit::keys`.
const FIXED_FILES: &[&str] = &[
    "ca.crt",
    "ca.key",
    "gateway.crt",
    "gateway.key",
    CRL_FILE,
    REVOKED_FILE,
    "audit.key",
    "audit.pub",
    "audit-hmac.key",
    "audit-text.key",
    WITNESS_POLICY_FILE,
];

/// The suffixes of the witness files of an identity `<id>` (a node id or
/// [`WITNESS_ID`]): its server certificate as a witness and its cosignature key.
const WITNESS_SUFFIXES: &[&str] = &[".witness.crt", ".witness.key", ".cosign.key", ".cosign.pub"];

/// The file names of `paths`, comma-separated, for messages.
fn names(paths: &[PathBuf]) -> String {
    let names: Vec<String> = paths
        .iter()
        .map(|p| p.file_name().map_or_else(|| p.display().to_string(), |n| n.to_string_lossy().into_owned()))
        .collect();
    names.join(", ")
}

/// Refuses a node id that is one of [`RESERVED_NAMES`]: its `<id>.crt` and
/// `<id>.key` would overwrite, or be taken for, isx's own files.
pub fn check_node_id(node: &NodeId) -> Result<(), PkiError> {
    let owner = match node.as_str() {
        "ca" => "the CA's certificate and key (ca.crt, ca.key)",
        "gateway" => "the gateway's certificate and key (gateway.crt, gateway.key)",
        "audit" => "the audit log's checkpoint signing key (audit.key, audit.pub)",
        "audit-hmac" => "the audit log's pseudonym key (audit-hmac.key)",
        "audit-text" => "the audit log's text key (audit-text.key)",
        "crl" => "the CA's revocation list (crl.pem)",
        "revoked" => "the revocation bookkeeping (revoked.txt)",
        "witness" => "the standalone witness's certificate and keys (witness.crt, witness.key, witness.cosign.key)",
        _ => return Ok(()),
    };
    debug_assert!(RESERVED_NAMES.contains(&node.as_str()));
    Err(PkiError::Reserved { node: node.to_string(), owner })
}

/// Every file of the PKI in `dir`, sorted: the files isx writes under fixed
/// names (the CA, the gateway, `crl.pem`, `revoked.txt`, the audit keys,
/// `witness.policy`), every store key (`*.store.key`), every node identity
/// (`<id>.crt`, `<id>.key` for a valid node id, which covers the standalone
/// witness's `witness.crt`/`.key`) and every witness file
/// (`<id>.witness.crt`, `<id>.witness.key`, `<id>.cosign.key`,
/// `<id>.cosign.pub`). Other files and folders are not part of it. A
/// missing directory holds none.
pub fn pki_files(dir: &Path) -> Result<Vec<PathBuf>, PkiError> {
    let io = |source| PkiError::Io { path: dir.to_owned(), source };
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
        Err(e) => return Err(io(e)),
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io)?;
        if !entry.file_type().map_err(io)?.is_file() {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        let node_file = name
            .strip_suffix(".crt")
            .or_else(|| name.strip_suffix(".key"))
            .is_some_and(|stem| NodeId::new(stem).is_ok());
        let witness_file = WITNESS_SUFFIXES
            .iter()
            .any(|suffix| name.strip_suffix(suffix).is_some_and(|stem| NodeId::new(stem).is_ok()));
        if FIXED_FILES.contains(&name.as_str()) || name.ends_with(".store.key") || node_file || witness_file {
            files.push(entry.path());
        }
    }
    files.sort();
    Ok(files)
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
    /// The defaults: the standard identities (five agencies, the auditor and
    /// the operations node `ops`), valid for a year.
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
    /// The PKI that `force` replaced, if there was one.
    pub replaced: Option<Replaced>,
}

/// A PKI that [`init`] replaced: its files, moved out of the way.
#[derive(Debug, Clone)]
pub struct Replaced {
    /// The folder they were moved into, `<dir>/replaced-<UTC time>`.
    pub folder: PathBuf,
    /// Each file at its new place in `folder`.
    pub files: Vec<PathBuf>,
}

impl Replaced {
    /// The moved files whose name ends with `suffix` (e.g. `.store.key`).
    pub fn named(&self, suffix: &str) -> Vec<&Path> {
        self.files
            .iter()
            .filter(|f| f.file_name().is_some_and(|n| n.to_string_lossy().ends_with(suffix)))
            .map(PathBuf::as_path)
            .collect()
    }
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
        if !path.exists() {
            return Err(PkiError::NoCa(dir.to_owned()));
        }
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

    /// A witness's server certificate for `localhost`, `127.0.0.1` and
    /// `extra_names`, with the SAN URI `spiffe://isx/witness/<id>`;
    /// serverAuth only. Its clients (logs) need no certificate: the
    /// `tlog-witness` protocol is public, a checkpoint's signature is its
    /// only authentication.
    pub fn issue_witness(
        &self,
        id: &str,
        extra_names: &[String],
        validity: Duration,
    ) -> Result<(String, String), PkiError> {
        let what = format!("witness {id}");
        let mut names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
        names.extend(extra_names.iter().cloned());
        let mut params = CertificateParams::new(names).map_err(rc(&what))?;
        let uri = format!("{WITNESS_URI_PREFIX}{id}").try_into().map_err(rc(&what))?;
        params.subject_alt_names.push(SanType::URI(uri));
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "isx development PKI");
        dn.push(DnType::CommonName, format!("isx witness {id}"));
        params.distinguished_name = dn;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.issue(&what, params, validity)
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

/// Creates the CA, the gateway identity and every node identity in `opts.dir`,
/// and an empty revocation list.
///
/// Refuses a reserved node id ([`check_node_id`]) before it writes anything.
/// A directory that holds any file of a PKI ([`pki_files`]) is refused
/// ([`PkiError::Exists`]) unless `opts.force` is set; then, once the new PKI
/// is generated, every one of those files (the audit keys and store keys
/// too) is moved into a new folder `replaced-<UTC time>` inside the
/// directory, and only then are the new files written: the directory holds
/// the new PKI only, and the old one can be put back. The caller creates the
/// new audit keys (`isx_audit::keys::create`).
pub fn init(opts: &InitOptions) -> Result<InitSummary, PkiError> {
    let dir = &opts.dir;
    for node in &opts.nodes {
        check_node_id(node)?;
    }
    let existing = pki_files(dir)?;
    if !existing.is_empty() && !opts.force {
        return Err(PkiError::Exists { dir: dir.clone(), found: existing });
    }
    // Everything is generated before a file is touched.
    let mut new: Vec<(String, String, bool)> = Vec::new();
    let (ca, ca_pem) = DevCa::generate(opts.validity + Duration::days(1))?;
    new.push(("ca.crt".into(), ca_pem, false));
    new.push(("ca.key".into(), ca.key.serialize_pem(), true));
    let (cert, key) = ca.issue_gateway(&opts.gateway_names, opts.validity)?;
    new.push(("gateway.crt".into(), cert, false));
    new.push(("gateway.key".into(), key, true));
    for node in &opts.nodes {
        let (cert, key) = ca.issue_node(node, opts.validity)?;
        new.push((format!("{node}.crt"), cert, false));
        new.push((format!("{node}.key"), key, true));
    }
    // A new CA has revoked nothing: an empty list, so that a deployment
    // always has one (and no revoked.txt).
    new.push((CRL_FILE.into(), sign_crl(&ca, &[], 1, Duration::days(DEFAULT_CRL_DAYS))?, false));

    fs::create_dir_all(dir).map_err(|source| PkiError::Io { path: dir.clone(), source })?;
    let replaced = if existing.is_empty() { None } else { Some(move_aside(dir, &existing)?) };
    let mut files = Vec::new();
    for (name, contents, secret) in new {
        let path = dir.join(name);
        write_file(&path, &contents, secret)?;
        files.push(path);
    }
    Ok(InitSummary { files, replaced })
}

/// Moves `files` (in `dir`) into a new folder `dir/replaced-<UTC time>`
/// (mode 0700); if one cannot be moved, moves back those that were.
fn move_aside(dir: &Path, files: &[PathBuf]) -> Result<Replaced, PkiError> {
    let now = OffsetDateTime::now_utc();
    let stamp = format!(
        "replaced-{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second()
    );
    let mut builder = fs::DirBuilder::new();
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    // Bounded: a hundred inits within one second is not a use.
    let folder = (0..100)
        .map(|i| if i == 0 { dir.join(&stamp) } else { dir.join(format!("{stamp}-{i}")) })
        .find_map(|folder| match builder.create(&folder) {
            Ok(()) => Some(Ok(folder)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => None,
            Err(source) => Some(Err(PkiError::Io { path: folder, source })),
        })
        .unwrap_or_else(|| {
            Err(PkiError::Io { path: dir.join(&stamp), source: std::io::ErrorKind::AlreadyExists.into() })
        })?;
    let mut moved: Vec<(PathBuf, PathBuf)> = Vec::new();
    for file in files {
        let to = folder.join(file.file_name().expect("pki_files lists files"));
        if let Err(source) = fs::rename(file, &to) {
            for (from, to) in moved.iter().rev() {
                let _ = fs::rename(to, from);
            }
            let _ = fs::remove_dir(&folder);
            return Err(PkiError::Io { path: file.clone(), source });
        }
        moved.push((file.clone(), to));
    }
    Ok(Replaced { folder, files: moved.into_iter().map(|(_, to)| to).collect() })
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
    let path = dir.join(CRL_FILE);
    write_file(&path, &sign_crl(ca, revoked, number, validity)?, false)?;
    Ok(path)
}

/// A CRL over `revoked`, signed by the CA, in PEM.
fn sign_crl(ca: &DevCa, revoked: &[RevokedEntry], number: u64, validity: Duration) -> Result<String, PkiError> {
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
    crl.pem().map_err(rc("revocation list"))
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
    for node in nodes {
        check_node_id(node)?;
    }
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

/// Issues one more node identity from the CA already in `dir`: writes
/// `<node>.crt` and `<node>.key`. Refuses a reserved node id
/// ([`check_node_id`]) and a node that already has either file
/// ([`PkiError::NodeExists`]; [`issue_node_with`] can replace them).
pub fn issue_node(dir: &Path, node: &NodeId, validity: Duration) -> Result<Vec<PathBuf>, PkiError> {
    issue_node_with(dir, node, validity, false)
}

/// [`issue_node`], replacing the node's certificate and key if `force` is
/// set; the certificate replaced stays valid until it expires unless it is
/// revoked first.
pub fn issue_node_with(dir: &Path, node: &NodeId, validity: Duration, force: bool) -> Result<Vec<PathBuf>, PkiError> {
    check_node_id(node)?;
    let (crt_path, key_path) = (dir.join(format!("{node}.crt")), dir.join(format!("{node}.key")));
    let existing: Vec<PathBuf> = [&crt_path, &key_path].into_iter().filter(|p| p.exists()).cloned().collect();
    if !existing.is_empty() && !force {
        return Err(PkiError::NodeExists { node: node.to_string(), dir: dir.to_owned(), files: existing });
    }
    let ca = DevCa::load(dir)?;
    let (cert, key) = ca.issue_node(node, validity)?;
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
        assert!(matches!(init(&opts), Err(PkiError::Exists { .. })));
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
        issue_node_with(dir.path(), &NodeId::new("a-police").unwrap(), Duration::days(1), true).unwrap();
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

    /// Every file in `dir` (not in folders) by name, with its bytes.
    fn snapshot(dir: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(Result::unwrap)
            .filter(|e| e.file_type().unwrap().is_file())
            .map(|e| (e.file_name().to_string_lossy().into_owned(), std::fs::read(e.path()).unwrap()))
            .collect()
    }

    /// Writes stand-ins for the files other crates keep in a PKI directory:
    /// the audit keys and two store keys.
    fn add_audit_and_store_keys(dir: &Path) {
        for name in
            ["audit.key", "audit.pub", "audit-hmac.key", "audit-text.key", "gateway.store.key", "a-police.store.key"]
        {
            write_file(&dir.join(name), &format!("old {name}\n"), true).unwrap();
        }
    }

    #[test]
    fn reserved_names_are_refused_as_node_ids_and_nothing_changes() {
        let dir = tempfile::tempdir().unwrap();
        init(&InitOptions { nodes: nodes(&["a-police"]), ..InitOptions::new(dir.path()) }).unwrap();
        add_audit_and_store_keys(dir.path());
        let before = snapshot(dir.path());
        for name in RESERVED_NAMES {
            let node = NodeId::new(*name).unwrap();
            for force in [false, true] {
                let err = issue_node_with(dir.path(), &node, Duration::days(1), force).unwrap_err();
                assert!(matches!(err, PkiError::Reserved { .. }), "{name}: {err}");
                let text = err.to_string();
                assert!(text.contains(&format!("node id `{name}` is reserved")), "{text}");
                assert!(text.contains("Choose another node id"), "names the fix: {text}");
            }
            let err = revoke(dir.path(), std::slice::from_ref(&node)).unwrap_err();
            assert!(matches!(err, PkiError::Reserved { .. }), "revoke {name}: {err}");
            let opts = InitOptions { nodes: nodes(&["b-police", name]), force: true, ..InitOptions::new(dir.path()) };
            let err = init(&opts).unwrap_err();
            assert!(matches!(err, PkiError::Reserved { .. }), "init --force --nodes {name}: {err}");
            assert_eq!(snapshot(dir.path()), before, "{name}: no file changed");
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), before.len(), "no replaced-* folder either");

        let fresh = tempfile::tempdir().unwrap();
        let err = init(&InitOptions { nodes: nodes(&["gateway"]), ..InitOptions::new(fresh.path().join("pki")) });
        assert!(matches!(err, Err(PkiError::Reserved { .. })), "{err:?}");
        assert!(!fresh.path().join("pki").exists(), "nothing written");
    }

    #[test]
    fn issuing_a_node_that_exists_needs_force() {
        let dir = tempfile::tempdir().unwrap();
        init(&InitOptions { nodes: nodes(&["a-police"]), ..InitOptions::new(dir.path()) }).unwrap();
        let before = snapshot(dir.path());
        let node = NodeId::new("a-police").unwrap();
        let err = issue_node(dir.path(), &node, Duration::days(1)).unwrap_err();
        assert!(matches!(err, PkiError::NodeExists { .. }), "{err}");
        let text = err.to_string();
        assert!(text.contains("a-police.crt, a-police.key") && text.contains("--force"), "{text}");
        assert_eq!(snapshot(dir.path()), before, "nothing replaced");

        // Either file is enough to refuse.
        std::fs::remove_file(dir.path().join("a-police.crt")).unwrap();
        let text = issue_node(dir.path(), &node, Duration::days(1)).unwrap_err().to_string();
        assert!(text.contains("has a-police.key in"), "{text}");

        issue_node_with(dir.path(), &node, Duration::days(1), true).unwrap();
        let after = snapshot(dir.path());
        assert_ne!(after["a-police.key"], before["a-police.key"], "--force replaces the key");
        assert!(after.contains_key("a-police.crt"));
    }

    #[test]
    fn issuing_without_a_ca_names_pki_init() {
        let dir = tempfile::tempdir().unwrap();
        let err = issue_node(dir.path(), &NodeId::new("a-police").unwrap(), Duration::days(1)).unwrap_err();
        assert!(err.to_string().contains(&format!("isx pki init --dir {}", dir.path().display())), "{err}");
    }

    #[test]
    fn init_force_replaces_every_file_of_the_pki_and_keeps_the_old_ones_aside() {
        let dir = tempfile::tempdir().unwrap();
        init(&InitOptions { nodes: nodes(&["a-police", "b-police"]), ..InitOptions::new(dir.path()) }).unwrap();
        revoke(dir.path(), &nodes(&["b-police"])).unwrap();
        add_audit_and_store_keys(dir.path());
        std::fs::write(dir.path().join("NOTES.md"), "not isx's").unwrap();
        let before = snapshot(dir.path());
        assert!(before.contains_key(REVOKED_FILE) && before.contains_key("a-police.store.key"));

        // Without force, any file of a PKI is enough to refuse, naming it.
        let partial = tempfile::tempdir().unwrap();
        write_file(&partial.path().join("audit.key"), "k", true).unwrap();
        let err = init(&InitOptions::new(partial.path())).unwrap_err();
        assert!(matches!(&err, PkiError::Exists { found, .. } if found.len() == 1), "{err}");
        assert!(err.to_string().contains("(audit.key)") && err.to_string().contains("--force"), "{err}");

        let opts = InitOptions { nodes: nodes(&["c-police"]), force: true, ..InitOptions::new(dir.path()) };
        let summary = init(&opts).unwrap();
        let after = snapshot(dir.path());
        let expected: Vec<&str> = vec![
            "NOTES.md",
            "c-police.crt",
            "c-police.key",
            "ca.crt",
            "ca.key",
            CRL_FILE,
            "gateway.crt",
            "gateway.key",
        ];
        assert_eq!(
            after.keys().map(String::as_str).collect::<Vec<_>>(),
            expected,
            "only the new PKI (and the stranger)"
        );
        for (name, bytes) in &after {
            if name != "NOTES.md" {
                assert!(!before.values().any(|old| old == bytes), "{name} is new");
            }
        }
        assert!(read_crl(dir.path()).unwrap().revoked.is_empty(), "the new CA's list, signed by it");
        assert!(revoked_entries(dir.path()).unwrap().is_empty());

        let replaced = summary.replaced.expect("a PKI was replaced");
        assert_eq!(replaced.folder.parent(), Some(dir.path()));
        assert!(replaced.folder.file_name().unwrap().to_string_lossy().starts_with("replaced-"));
        let kept = snapshot(&replaced.folder);
        let mut old = before.clone();
        old.remove("NOTES.md");
        assert_eq!(kept, old, "every old file is kept, byte for byte");
        assert_eq!(replaced.named(".store.key").len(), 2);
        #[cfg(unix)]
        assert_eq!(mode(&replaced.folder), 0o700);

        // Twice in the same second: another folder.
        let again = init(&opts).unwrap().replaced.unwrap();
        assert_ne!(again.folder, replaced.folder);
        assert_eq!(snapshot(&replaced.folder), old, "the first one untouched");
    }

    #[test]
    fn pki_files_lists_the_witness_files_and_the_policy_but_not_strangers() {
        let dir = tempfile::tempdir().unwrap();
        let ours = [
            "witness.crt",
            "witness.key",
            "witness.cosign.key",
            "witness.cosign.pub",
            "a-police.witness.crt",
            "a-police.witness.key",
            "a-police.cosign.key",
            "a-police.cosign.pub",
            WITNESS_POLICY_FILE,
        ];
        let strangers = ["notes.cosign.txt", "A B.cosign.key", "x.y.witness.crt", "witness.policy.bak"];
        for name in ours.iter().chain(&strangers) {
            write_file(&dir.path().join(name), "x", false).unwrap();
        }
        let listed: Vec<String> = pki_files(dir.path())
            .unwrap()
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        let mut want: Vec<String> = ours.iter().map(|s| s.to_string()).collect();
        want.sort();
        assert_eq!(listed, want);
        assert_eq!(witness_tls_paths(dir.path(), WITNESS_ID).0, dir.path().join("witness.crt"));
        assert_eq!(witness_tls_paths(dir.path(), "a-police").1, dir.path().join("a-police.witness.key"));
        assert_eq!(witness_cosign_paths(dir.path(), "a-police").1, dir.path().join("a-police.cosign.pub"));
    }

    #[test]
    fn a_witness_certificate_serves_tls_for_its_names_only_and_is_no_node() {
        let dir = tempfile::tempdir().unwrap();
        init(&InitOptions { nodes: vec![], ..InitOptions::new(dir.path()) }).unwrap();
        let ca = DevCa::load(dir.path()).unwrap();
        let (cert, key) = ca.issue_witness("a-police", &["witness.example.test".into()], Duration::days(1)).unwrap();
        let (_, pem) = x509_parser::pem::parse_x509_pem(cert.as_bytes()).unwrap();
        let parsed = pem.parse_x509().unwrap();
        let san = parsed.subject_alternative_name().unwrap().unwrap();
        let names: Vec<String> = san.value.general_names.iter().map(|n| n.to_string()).collect();
        assert!(names.iter().any(|n| n.contains("spiffe://isx/witness/a-police")), "{names:?}");
        assert!(names.iter().any(|n| n.contains("witness.example.test")), "{names:?}");
        assert!(names.iter().any(|n| n.contains("localhost")), "{names:?}");
        let eku = parsed.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.server_auth && !eku.client_auth, "{eku:?}");
        // Not a node: its SAN URI is no node identity.
        let (crt_path, key_path) = witness_tls_paths(dir.path(), "a-police");
        write_file(&crt_path, &cert, false).unwrap();
        write_file(&key_path, &key, true).unwrap();
        let der = read_certs(&crt_path).unwrap().remove(0);
        assert!(peer_identity(&der).is_err());
    }

    #[test]
    fn gateway_certificate_has_no_node_identity() {
        let dir = tempfile::tempdir().unwrap();
        init(&InitOptions { nodes: vec![], ..InitOptions::new(dir.path()) }).unwrap();
        let cert = read_certs(&dir.path().join("gateway.crt")).unwrap().remove(0);
        assert!(peer_identity(&cert).is_err());
    }
}
