//! Witness keys in a PKI directory, and the deployment's keys as one step.
//!
//! # The cosignature key files of witness `<id>`
//! - `<id>.cosign.key`, mode 0600: one line
//!   `PRIVATE+KEY+<name>+<key id>+<base64(0x04 || seed)>`, the signed-note
//!   private-key layout with the `tlog-cosignature` v1 type byte 0x04:
//!   `<name>` is the witness's key name, `<key id>` the 8 hex digits of
//!   `SHA-256(name || "\n" || 0x04 || public key)[:4]`, and `seed` the
//!   32-byte Ed25519 private key.
//! - `<id>.cosign.pub`: its verifier key (C2SP vkey, type 0x04), for the
//!   witness policy of those who check the witness.
//!
//! [`load_signer`] refuses a key file its group or others may read, naming
//! it and `chmod 600`.
//!
//! # Names
//! A deployment's log origin is `isx/<8 random hex digits>/audit`
//! ([`new_origin`]), unique to it, so that checkpoints of two deployments
//! can never be taken for each other. Its witnesses' key names share the
//! prefix: `isx/<hex>/witness/<id>` ([`witness_name`]). An origin given
//! by hand that does not end in `/audit` is the prefix as it is.

use std::path::{Path, PathBuf};

use isx_audit::cosignature::{ALG_COSIGNATURE_V1, CosignatureKeyError, CosignatureSigner, CosignatureVerifier};
use isx_core::NodeId;
use isx_tls::pki::{self, DevCa, PkiError, WITNESS_ID, witness_cosign_paths, witness_tls_paths};
use rand_core::{OsRng, RngCore};

/// The port the standalone witness listens on by default (`isx witness`).
pub const DEFAULT_PORT: u16 = 7460;

/// Why witness keys could not be created or loaded.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// A key file could not be read or written.
    #[error("{path}: {source}. Witness keys are created with the PKI: `isx pki init --dir {}`", dir_of(.path))]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A private key file is open to its group or to others.
    #[error(transparent)]
    Exposed(isx_store::KeyError),
    /// A key file does not hold a valid key.
    #[error("{path}: not a valid {what}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What was expected.
        what: &'static str,
    },
    /// The key name is not a valid cosigner name.
    #[error("witness key name: {0}")]
    Name(#[from] CosignatureKeyError),
    /// The audit keys could not be created.
    #[error(transparent)]
    Audit(#[from] isx_audit::keys::KeyError),
    /// A certificate could not be issued or written.
    #[error(transparent)]
    Pki(#[from] PkiError),
}

fn dir_of(path: &Path) -> String {
    path.parent().filter(|p| !p.as_os_str().is_empty()).map_or_else(|| ".".into(), |p| p.display().to_string())
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> KeyError + '_ {
    move |source| KeyError::Io { path: path.to_owned(), source }
}

/// Creates witness `id`'s cosignature key, named `key_name`, in `dir`:
/// `<id>.cosign.key` (0600) and `<id>.cosign.pub`. Returns the files written.
pub fn create(dir: &Path, id: &str, key_name: &str) -> Result<Vec<PathBuf>, KeyError> {
    use base64::Engine;
    let mut seed = [0u8; 32];
    OsRng.fill_bytes(&mut seed);
    let signer = CosignatureSigner::new(key_name, &seed)?;
    let id_hex = format!("{:08x}", signed_note::Signer::key_id(&signer));
    let material = [&[ALG_COSIGNATURE_V1][..], &seed[..]].concat();
    let private =
        format!("PRIVATE+KEY+{key_name}+{id_hex}+{}\n", base64::engine::general_purpose::STANDARD.encode(material));
    let (key, public) = witness_cosign_paths(dir, id);
    isx_store::write_private(&key, private.as_bytes()).map_err(io(&key))?;
    pki::write_file(&public, &format!("{}\n", signer.verifier_key()), false)?;
    Ok(vec![key, public])
}

/// Loads witness `id`'s cosignature signer from `dir/<id>.cosign.key`;
/// refuses the file if its group or others may read it.
pub fn load_signer(dir: &Path, id: &str) -> Result<CosignatureSigner, KeyError> {
    use base64::Engine;
    let (path, _) = witness_cosign_paths(dir, id);
    isx_store::check_private(&path).map_err(|e| match e {
        isx_store::KeyError::Io { path, source } => KeyError::Io { path, source },
        other => KeyError::Exposed(other),
    })?;
    let text = std::fs::read_to_string(&path).map_err(io(&path))?;
    let invalid =
        || KeyError::Invalid { path: path.clone(), what: "witness cosignature key (PRIVATE+KEY+NAME+ID+KEY)" };
    let rest = text.trim().strip_prefix("PRIVATE+KEY+").ok_or_else(invalid)?;
    // The name holds no '+'; the base64 key may.
    let mut parts = rest.splitn(3, '+');
    let (Some(name), Some(id_hex), Some(material)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(invalid());
    };
    let material = base64::engine::general_purpose::STANDARD.decode(material).map_err(|_| invalid())?;
    let (&alg, seed) = material.split_first().ok_or_else(invalid)?;
    let seed: [u8; 32] = seed.try_into().map_err(|_| invalid())?;
    if alg != ALG_COSIGNATURE_V1 {
        return Err(invalid());
    }
    let signer = CosignatureSigner::new(name, &seed).map_err(|_| invalid())?;
    if format!("{:08x}", signed_note::Signer::key_id(&signer)) != id_hex {
        return Err(KeyError::Invalid { path, what: "witness cosignature key (its key ID does not match)" });
    }
    Ok(signer)
}

/// Loads witness `id`'s verifier key (C2SP vkey) from `dir/<id>.cosign.pub`.
pub fn load_vkey(dir: &Path, id: &str) -> Result<String, KeyError> {
    let (_, path) = witness_cosign_paths(dir, id);
    let text = std::fs::read_to_string(&path).map_err(io(&path))?;
    let vkey = text.trim().to_owned();
    CosignatureVerifier::new(&vkey).map_err(|_| KeyError::Invalid { path, what: "witness verifier key" })?;
    Ok(vkey)
}

/// A fresh origin for a new deployment: `isx/<8 random hex digits>/audit`.
pub fn new_origin() -> String {
    let mut bytes = [0u8; 4];
    OsRng.fill_bytes(&mut bytes);
    format!("isx/{}/audit", hex::encode(bytes))
}

/// The key name of witness `id` in the deployment whose log is `origin`:
/// `<prefix>/witness/<id>`, the prefix being `origin` without a final `/audit`.
pub fn witness_name(origin: &str, id: &str) -> String {
    format!("{}/witness/{id}", origin.strip_suffix("/audit").unwrap_or(origin))
}

/// What [`init_deployment`] made.
#[derive(Debug, Clone)]
pub struct Deployment {
    /// The log origin (the audit key's name).
    pub origin: String,
    /// Every file written, in order.
    pub files: Vec<PathBuf>,
    /// Each witness identity (`witness`, then the nodes) and its verifier key.
    pub witnesses: Vec<(String, String)>,
}

/// Makes a deployment's keys in the PKI directory `pki` (whose CA
/// `isx_tls::pki::init` made): the audit keys for `origin` (a fresh
/// [`new_origin`] if `None`), then for the standalone witness and for each
/// of `nodes` a cosignature key ([`create`], named [`witness_name`]) and a
/// server certificate ([`DevCa::issue_witness`], valid a year), and
/// `witness.policy`, a C2SP tlog-policy naming the log, the standalone
/// witness at `https://127.0.0.1:7460` as the quorum, and each node's
/// witness on a commented-out line.
pub fn init_deployment(pki: &Path, nodes: &[NodeId], origin: Option<&str>) -> Result<Deployment, KeyError> {
    init_deployment_with(pki, nodes, origin, time::Duration::days(365))
}

/// [`init_deployment`] with witness certificates valid for `validity`.
pub fn init_deployment_with(
    pki: &Path,
    nodes: &[NodeId],
    origin: Option<&str>,
    validity: time::Duration,
) -> Result<Deployment, KeyError> {
    let origin = origin.map_or_else(new_origin, str::to_owned);
    let mut files = isx_audit::keys::create(pki, &origin)?;
    let ca = DevCa::load(pki)?;
    let mut witnesses = Vec::new();
    let ids = std::iter::once(WITNESS_ID.to_owned()).chain(nodes.iter().map(|n| n.to_string()));
    for id in ids {
        files.extend(identity(pki, &ca, &id, &origin, validity)?);
        witnesses.push((id.clone(), load_vkey(pki, &id)?));
    }
    let log_key = std::fs::read_to_string(isx_audit::keys::paths(pki).1).map_err(io(&isx_audit::keys::paths(pki).1))?;
    let policy = pki.join(pki::WITNESS_POLICY_FILE);
    pki::write_file(&policy, &policy_text(&origin, log_key.trim(), &witnesses), false)?;
    files.push(policy);
    Ok(Deployment { origin, files, witnesses })
}

/// Witness `id`'s certificate and cosignature key, for the log `origin`.
fn identity(
    pki: &Path,
    ca: &DevCa,
    id: &str,
    origin: &str,
    validity: time::Duration,
) -> Result<Vec<PathBuf>, KeyError> {
    let (cert, key) = ca.issue_witness(id, &[], validity)?;
    let (cert_path, key_path) = witness_tls_paths(pki, id);
    pki::write_file(&cert_path, &cert, false)?;
    pki::write_file(&key_path, &key, true)?;
    let mut files = vec![cert_path, key_path];
    files.extend(create(pki, id, &witness_name(origin, id))?);
    Ok(files)
}

/// The witness identity of a node issued after `isx pki init` (`isx pki
/// issue`): its certificate and cosignature key, named for the deployment
/// whose log `<pki>/audit.pub` names. Nothing for a PKI without audit keys.
pub fn issue_node_witness(pki: &Path, node: &NodeId, validity: time::Duration) -> Result<Vec<PathBuf>, KeyError> {
    let public = isx_audit::keys::paths(pki).1;
    let Ok(vkey) = std::fs::read_to_string(&public) else { return Ok(vec![]) };
    let origin = isx_audit::keys::key_name(&vkey).to_owned();
    identity(pki, &DevCa::load(pki)?, node.as_str(), &origin, validity)
}

/// The text of `witness.policy`: the log, the standalone witness as the
/// quorum, and each node's witness commented out (first `witnesses` entry
/// is the standalone one).
fn policy_text(origin: &str, log_key: &str, witnesses: &[(String, String)]) -> String {
    let mut text = format!(
        "# Witness policy of the isx deployment whose log is {origin} (C2SP tlog-policy).\n\
         # Written by `isx pki init`. A checkpoint counts once the quorum has cosigned it.\n\
         # The standalone witness runs with `isx witness --pki DIR --data DIR`.\n\
         # To let an agency witness the gateway too, set `witness = true` and\n\
         # `witness_listen = \"127.0.0.1:PORT\"` in its node config (or run\n\
         # `isx witness --pki DIR --id NODE --data DIR --listen 127.0.0.1:PORT`),\n\
         # uncomment its line below, and make the quorum a group, for example\n\
         # `group witnesses 2 witness de-police` then `quorum witnesses`.\n\
         log {log_key}\n"
    );
    for (i, (id, vkey)) in witnesses.iter().enumerate() {
        if i == 0 {
            text.push_str(&format!("witness {id} {vkey} https://127.0.0.1:{DEFAULT_PORT}\n"));
        } else {
            text.push_str(&format!("# witness {id} {vkey} https://127.0.0.1:{}\n", DEFAULT_PORT as usize + i));
        }
    }
    text.push_str(&format!("quorum {}\n", witnesses.first().map_or("none", |(id, _)| id.as_str())));
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    fn set_mode(path: &Path, mode: u32) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn create_then_load_signs_what_the_vkey_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let files = create(dir.path(), "a-police", "isx/0badcafe/witness/a-police").unwrap();
        assert_eq!(files, vec![dir.path().join("a-police.cosign.key"), dir.path().join("a-police.cosign.pub")]);
        let text = std::fs::read_to_string(&files[0]).unwrap();
        assert!(text.starts_with("PRIVATE+KEY+isx/0badcafe/witness/a-police+"), "{text}");
        let signer = load_signer(dir.path(), "a-police").unwrap();
        let vkey = load_vkey(dir.path(), "a-police").unwrap();
        assert_eq!(signer.verifier_key(), vkey);
        let verifier = CosignatureVerifier::new(&vkey).unwrap();
        let sig = signed_note::Signer::sign(&signer, b"x\n1\nAAAA\n").unwrap();
        assert!(signed_note::Verifier::verify(&verifier, b"x\n1\nAAAA\n", &sig));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&files[0]).unwrap().permissions().mode() & 0o777, 0o600);
        }
    }

    #[test]
    fn a_tampered_key_file_is_refused_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        create(dir.path(), "witness", "isx/1/witness/witness").unwrap();
        let path = dir.path().join("witness.cosign.key");
        let text = std::fs::read_to_string(&path).unwrap();
        // Another name under the same key ID: the ID no longer matches.
        isx_store::write_private(&path, text.replace("isx/1/", "isx/2/").as_bytes()).unwrap();
        let err = load_signer(dir.path(), "witness").unwrap_err().to_string();
        assert!(err.contains("witness.cosign.key") && err.contains("key ID"), "{err}");
        isx_store::write_private(&path, b"garbage\n").unwrap();
        assert!(matches!(load_signer(dir.path(), "witness"), Err(KeyError::Invalid { .. })));
        let missing = load_signer(dir.path(), "nobody").unwrap_err().to_string();
        assert!(missing.contains("nobody.cosign.key") && missing.contains("isx pki init"), "{missing}");
    }

    #[cfg(unix)]
    #[test]
    fn a_key_others_may_read_is_refused_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        create(dir.path(), "witness", "isx/1/witness/witness").unwrap();
        let path = dir.path().join("witness.cosign.key");
        set_mode(&path, 0o640);
        let err = load_signer(dir.path(), "witness").unwrap_err();
        assert!(matches!(err, KeyError::Exposed(_)), "{err}");
        assert!(err.to_string().contains(&format!("chmod 600 {}", path.display())), "{err}");
    }

    #[test]
    fn names_share_the_deployment_prefix() {
        let origin = new_origin();
        assert!(origin.starts_with("isx/") && origin.ends_with("/audit") && origin.len() == 4 + 8 + 6, "{origin}");
        assert_ne!(origin, new_origin(), "unique per deployment");
        assert_eq!(witness_name("isx/0badcafe/audit", "de-police"), "isx/0badcafe/witness/de-police");
        assert_eq!(witness_name("example.org/log", "witness"), "example.org/log/witness/witness");
    }

    #[test]
    fn init_deployment_writes_every_witness_and_a_policy() {
        let dir = tempfile::tempdir().unwrap();
        let nodes: Vec<NodeId> = ["a-police", "b-police"].iter().map(|n| NodeId::new(*n).unwrap()).collect();
        pki::init(&pki::InitOptions { nodes: nodes.clone(), ..pki::InitOptions::new(dir.path()) }).unwrap();
        let d = init_deployment(dir.path(), &nodes, None).unwrap();
        assert!(d.origin.starts_with("isx/") && d.origin.ends_with("/audit"), "{}", d.origin);
        let names: Vec<String> =
            d.files.iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
        for want in [
            "audit.key",
            "audit.pub",
            "witness.crt",
            "witness.key",
            "witness.cosign.key",
            "witness.cosign.pub",
            "a-police.witness.crt",
            "a-police.witness.key",
            "a-police.cosign.key",
            "b-police.cosign.pub",
            "witness.policy",
        ] {
            assert!(names.iter().any(|n| n == want), "{want} in {names:?}");
        }
        // Every file is part of the PKI (`--force` moves them aside).
        let listed = pki::pki_files(dir.path()).unwrap();
        for f in &d.files {
            assert!(listed.contains(f), "{} not in pki_files", f.display());
        }
        let prefix = d.origin.strip_suffix("/audit").unwrap();
        assert_eq!(load_signer(dir.path(), "witness").unwrap().verifier_key(), d.witnesses[0].1);
        assert!(d.witnesses[1].1.starts_with(&format!("{prefix}/witness/a-police+")), "{:?}", d.witnesses);
        let policy = std::fs::read_to_string(dir.path().join("witness.policy")).unwrap();
        let audit_pub = std::fs::read_to_string(dir.path().join("audit.pub")).unwrap();
        let lines: Vec<&str> = policy.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            lines,
            vec![
                format!("log {}", audit_pub.trim()),
                format!("witness witness {} https://127.0.0.1:7460", d.witnesses[0].1),
                "quorum witness".to_owned(),
            ]
        );
        assert!(policy.contains(&format!("\n# witness a-police {} https://127.0.0.1:7461\n", d.witnesses[1].1)));
        assert!(policy.contains(&format!("\n# witness b-police {} https://127.0.0.1:7462\n", d.witnesses[2].1)));
        // An origin given by hand is kept.
        let other = tempfile::tempdir().unwrap();
        pki::init(&pki::InitOptions { nodes: vec![], ..pki::InitOptions::new(other.path()) }).unwrap();
        let d = init_deployment(other.path(), &[], Some("example.org/audit")).unwrap();
        assert_eq!(d.origin, "example.org/audit");
        assert!(d.witnesses[0].1.starts_with("example.org/witness/witness+"));
    }
}
