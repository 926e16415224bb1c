//! C2SP checkpoints (`tlog-checkpoint`) as signed notes.

use signed_note::{Note, Signer, StandardVerifier, VerifierList};
use tlog_tiles::checkpoint::Checkpoint as Body;
use tlog_tiles::tlog::Hash;

use crate::keys::AuditKeys;

/// Why a checkpoint is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    /// The note or its body does not parse.
    #[error("checkpoint is malformed: {0}")]
    Malformed(String),
    /// The signature does not verify with the given key.
    #[error("checkpoint signature does not verify with key {0}")]
    BadSignature(String),
    /// The verifier key does not parse.
    #[error("verifier key {0:?} is not a signed-note Ed25519 key")]
    BadKey(String),
}

/// A checkpoint whose signature has been verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The origin line.
    pub origin: String,
    /// The tree size.
    pub size: u64,
    /// The root hash.
    pub root: [u8; 32],
}

/// Signs a checkpoint for a tree of `size` with `root`; returns the note text.
pub fn sign(keys: &AuditKeys, size: u64, root: [u8; 32]) -> String {
    let body = Body::new(&keys.origin, size, Hash(root), "").expect("origin is a valid key name");
    let mut note = Note::new(&body.to_bytes(), &[]).expect("a checkpoint body is valid note text");
    note.add_sigs(&[&keys.signer as &dyn Signer]).expect("the signer name is valid");
    String::from_utf8(note.to_bytes()).expect("notes are UTF-8")
}

/// Verifies a signed checkpoint note with `verifier_key` and parses it.
pub fn open(note: &str, verifier_key: &str) -> Result<Verified, CheckpointError> {
    let verifier = StandardVerifier::new(verifier_key).map_err(|_| CheckpointError::BadKey(verifier_key.to_owned()))?;
    let list = VerifierList::new(vec![Box::new(verifier)]);
    let parsed = Note::from_bytes(note.as_bytes()).map_err(|e| CheckpointError::Malformed(e.to_string()))?;
    parsed
        .verify(&list)
        .map_err(|_| CheckpointError::BadSignature(verifier_key.split('+').take(2).collect::<Vec<_>>().join("+")))?;
    let body = Body::from_bytes(parsed.text()).map_err(|e| CheckpointError::Malformed(e.to_string()))?;
    Ok(Verified { origin: body.origin().to_owned(), size: body.size(), root: body.hash().0 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_open_and_tamper() {
        let dir = tempfile::tempdir().unwrap();
        crate::keys::create(dir.path(), "isx.test/audit").unwrap();
        let keys = crate::keys::load(dir.path()).unwrap();
        let note = sign(&keys, 7, [9; 32]);
        assert!(note.starts_with("isx.test/audit\n7\n"), "{note}");
        let v = open(&note, &keys.verifier_key).unwrap();
        assert_eq!((v.size, v.root), (7, [9; 32]));
        let forged = note.replacen("\n7\n", "\n8\n", 1);
        assert!(matches!(open(&forged, &keys.verifier_key), Err(CheckpointError::BadSignature(_))));
        let other = tempfile::tempdir().unwrap();
        crate::keys::create(other.path(), "isx.test/audit").unwrap();
        let stranger = crate::keys::load(other.path()).unwrap();
        assert!(open(&note, &stranger.verifier_key).is_err());
    }
}
