//! C2SP `tlog-cosignature` v1 (Ed25519): a witness's statement that a
//! checkpoint is the largest consistent tree head it has seen for the log.
//!
//! A cosignature is a note signature on the checkpoint whose signed message
//! is `cosignature/v1\n`, `time <T>\n`, then the checkpoint's whole note
//! body; the signature bytes are the big-endian u64 timestamp followed by the
//! 64-byte Ed25519 signature. The key ID is
//! `SHA-256(name || "\n" || 0x04 || public key)[:4]`, and a verifier key is
//! `name+id+base64(0x04 || public key)` (a C2SP vkey with type 0x04).
//!
//! [`CosignatureSigner`] and [`CosignatureVerifier`] implement
//! `signed_note`'s [`Signer`] and [`Verifier`], so a cosigned checkpoint is
//! an ordinary signed note: the log's own signature and any number of
//! cosignatures, each checked by the verifier whose name and key ID it names.
//! The timestamp a cosignature carries is read with [`timestamp`].

use std::time::{SystemTime, UNIX_EPOCH};

use ed25519_dalek::{Signature, SigningKey, VerifyingKey};
use signed_note::{Signer, Verifier};

/// The signature-type byte of an Ed25519 cosignature key.
pub const ALG_COSIGNATURE_V1: u8 = 0x04;

/// The header line of the signed message.
const HEADER: &[u8] = b"cosignature/v1\n";

/// Why a cosigner key does not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CosignatureKeyError {
    /// Not `name+id+base64key`.
    #[error("a cosigner verifier key is NAME+ID+KEY on one line (KEY base64 of 0x04 and 32 bytes)")]
    Format,
    /// The key's type byte is not 0x04.
    #[error("the key is of type {0:#04x}, not a cosignature/v1 Ed25519 key (0x04)")]
    Alg(u8),
    /// The key ID does not match the name and key.
    #[error("the key ID does not match the name and the key")]
    Id,
    /// The name is empty or holds spaces or `+`.
    #[error("the key name {0:?} is empty or holds a space or a '+'")]
    Name(String),
}

/// The key ID of cosigner `name` with Ed25519 public key `key`.
pub fn key_id(name: &str, key: &VerifyingKey) -> u32 {
    signed_note::key_id(name, &[&[ALG_COSIGNATURE_V1][..], key.as_bytes()].concat())
}

/// The verifier key (vkey) of cosigner `name` with public key `key`.
pub fn verifier_key(name: &str, key: &VerifyingKey) -> String {
    use base64::Engine;
    let material = [&[ALG_COSIGNATURE_V1][..], key.as_bytes()].concat();
    format!("{name}+{:08x}+{}", key_id(name, key), base64::engine::general_purpose::STANDARD.encode(material))
}

/// The message a v1 cosignature at `timestamp` signs over `body` (the
/// checkpoint's note text, ending in a newline, without signature lines).
pub fn message(timestamp: u64, body: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(HEADER.len() + 32 + body.len());
    m.extend_from_slice(HEADER);
    m.extend_from_slice(format!("time {timestamp}\n").as_bytes());
    m.extend_from_slice(body);
    m
}

/// The timestamp a cosignature's signature bytes carry (`None` if they are
/// not a timestamp and a 64-byte signature).
pub fn timestamp(sig: &[u8]) -> Option<u64> {
    (sig.len() == 8 + 64).then(|| u64::from_be_bytes(sig[..8].try_into().expect("8 bytes")))
}

/// Signs cosignatures as witness `name`.
#[derive(Clone)]
pub struct CosignatureSigner {
    name: String,
    id: u32,
    key: SigningKey,
    /// The time to sign with; `None`: now.
    fixed_time: Option<u64>,
}

impl std::fmt::Debug for CosignatureSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CosignatureSigner").field("name", &self.name).field("id", &format!("{:08x}", self.id)).finish()
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && !name.chars().any(|c| c.is_whitespace() || c == '+')
}

impl CosignatureSigner {
    /// A signer named `name` with the Ed25519 private key `seed`.
    pub fn new(name: &str, seed: &[u8; 32]) -> Result<Self, CosignatureKeyError> {
        if !valid_name(name) {
            return Err(CosignatureKeyError::Name(name.to_owned()));
        }
        let key = SigningKey::from_bytes(seed);
        Ok(Self { name: name.to_owned(), id: key_id(name, &key.verifying_key()), key, fixed_time: None })
    }

    /// The same signer, signing at `timestamp` instead of the clock (for tests and vectors).
    pub fn at(mut self, timestamp: u64) -> Self {
        self.fixed_time = Some(timestamp);
        self
    }

    /// Its verifier key, for the witness policy of those who check it.
    pub fn verifier_key(&self) -> String {
        verifier_key(&self.name, &self.key.verifying_key())
    }
}

impl Signer for CosignatureSigner {
    fn name(&self) -> &str {
        &self.name
    }

    fn key_id(&self) -> u32 {
        self.id
    }

    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, signature::Error> {
        let t = self
            .fixed_time
            .unwrap_or_else(|| SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0));
        if t > i64::MAX as u64 {
            return Err(signature::Error::new());
        }
        use ed25519_dalek::Signer as _;
        let sig: Signature = self.key.sign(&message(t, msg));
        Ok([&t.to_be_bytes()[..], &sig.to_bytes()[..]].concat())
    }
}

/// Checks cosignatures of one witness.
#[derive(Debug, Clone)]
pub struct CosignatureVerifier {
    name: String,
    id: u32,
    key: VerifyingKey,
}

impl CosignatureVerifier {
    /// Reads a verifier key `name+id+base64(0x04 || key)`.
    pub fn new(vkey: &str) -> Result<Self, CosignatureKeyError> {
        use base64::Engine;
        let mut parts = vkey.trim().splitn(3, '+');
        let (Some(name), Some(id), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(CosignatureKeyError::Format);
        };
        if !valid_name(name) {
            return Err(CosignatureKeyError::Name(name.to_owned()));
        }
        let id =
            (id.len() == 8).then(|| u32::from_str_radix(id, 16).ok()).flatten().ok_or(CosignatureKeyError::Format)?;
        let material =
            base64::engine::general_purpose::STANDARD.decode(key).map_err(|_| CosignatureKeyError::Format)?;
        let (&alg, public) = material.split_first().ok_or(CosignatureKeyError::Format)?;
        if alg != ALG_COSIGNATURE_V1 {
            return Err(CosignatureKeyError::Alg(alg));
        }
        let public: [u8; 32] = public.try_into().map_err(|_| CosignatureKeyError::Format)?;
        let key = VerifyingKey::from_bytes(&public).map_err(|_| CosignatureKeyError::Format)?;
        if key_id(name, &key) != id {
            return Err(CosignatureKeyError::Id);
        }
        Ok(Self { name: name.to_owned(), id, key })
    }
}

impl Verifier for CosignatureVerifier {
    fn name(&self) -> &str {
        &self.name
    }

    fn key_id(&self) -> u32 {
        self.id
    }

    fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        let Some(t) = timestamp(sig) else { return false };
        if t > i64::MAX as u64 {
            return false;
        }
        let Ok(sig) = Signature::from_slice(&sig[8..]) else { return false };
        self.key.verify_strict(&message(t, msg), &sig).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use signed_note::{Note, VerifierList};

    use super::*;

    /// The checkpoint body of the spec's example.
    const BODY: &str = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";

    fn witness() -> CosignatureSigner {
        CosignatureSigner::new("witness.example.com/w1", &[7u8; 32]).unwrap().at(1679315147)
    }

    #[test]
    fn the_signed_message_is_the_specs() {
        // tlog-cosignature, "Ed25519 signed message": the example message.
        let want = "cosignature/v1\ntime 1679315147\nexample.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";
        assert_eq!(String::from_utf8(message(1679315147, BODY.as_bytes())).unwrap(), want);
    }

    #[test]
    fn the_key_id_commits_to_the_name_the_type_byte_and_the_key() {
        let w = witness();
        let key = SigningKey::from_bytes(&[7u8; 32]).verifying_key();
        use sha2::Digest;
        let h = sha2::Sha256::digest([b"witness.example.com/w1\n".as_slice(), &[0x04], key.as_bytes()].concat());
        assert_eq!(w.key_id(), u32::from_be_bytes(h[..4].try_into().unwrap()));
        // Not the log's own key-ID rule (type byte 0x01).
        assert_ne!(w.key_id(), signed_note::key_id("witness.example.com/w1", &[&[1u8][..], key.as_bytes()].concat()));
    }

    #[test]
    fn a_cosigned_note_verifies_and_carries_its_time() {
        let w = witness();
        let mut note = Note::new(BODY.as_bytes(), &[]).unwrap();
        note.add_sigs(&[&w]).unwrap();
        let text = note.to_bytes();
        let line = String::from_utf8(text.clone()).unwrap();
        assert!(line.contains("\n— witness.example.com/w1 "), "{line}");

        let v = CosignatureVerifier::new(&w.verifier_key()).unwrap();
        let parsed = Note::from_bytes(&text).unwrap();
        let (verified, _) = parsed.verify(&VerifierList::new(vec![Box::new(v.clone())])).unwrap();
        assert_eq!(verified.len(), 1);
        assert_eq!(timestamp(verified[0].signature()), Some(1679315147));
        // Direct checks: another body, another time, another key all fail.
        let sig = w.sign(BODY.as_bytes()).unwrap();
        assert!(v.verify(BODY.as_bytes(), &sig));
        assert!(!v.verify(BODY.replace("20852163", "20852164").as_bytes(), &sig));
        let mut later = sig.clone();
        later[7] ^= 1;
        assert!(!v.verify(BODY.as_bytes(), &later));
        let other = CosignatureSigner::new("witness.example.com/w1", &[8u8; 32]).unwrap();
        assert!(!CosignatureVerifier::new(&other.verifier_key()).unwrap().verify(BODY.as_bytes(), &sig));
        assert!(!v.verify(BODY.as_bytes(), &sig[..70]));
    }

    #[test]
    fn timestamps_past_2_63_minus_1_are_neither_signed_nor_accepted() {
        let top = i64::MAX as u64;
        let w = CosignatureSigner::new("w", &[7u8; 32]).unwrap();
        let v = CosignatureVerifier::new(&w.verifier_key()).unwrap();
        let at_top = w.clone().at(top).sign(BODY.as_bytes()).unwrap();
        assert!(v.verify(BODY.as_bytes(), &at_top));
        assert!(w.clone().at(top + 1).sign(BODY.as_bytes()).is_err());
        // A signature over a time past the bound, made by hand, is refused.
        use ed25519_dalek::Signer as _;
        let key = SigningKey::from_bytes(&[7u8; 32]);
        let sig = key.sign(&message(top + 1, BODY.as_bytes()));
        let forged = [&(top + 1).to_be_bytes()[..], &sig.to_bytes()[..]].concat();
        assert!(!v.verify(BODY.as_bytes(), &forged));
    }

    #[test]
    fn verifier_keys_are_checked() {
        let vkey = witness().verifier_key();
        assert!(vkey.starts_with("witness.example.com/w1+"));
        let (head, key) = vkey.rsplit_once('+').unwrap();
        let (name, _) = head.split_once('+').unwrap();
        assert_eq!(CosignatureVerifier::new(&format!("{name}+00000000+{key}")).unwrap_err(), CosignatureKeyError::Id);
        assert_eq!(CosignatureVerifier::new("just-a-name").unwrap_err(), CosignatureKeyError::Format);
        // The log's own (type 0x01) key is not a cosigner key.
        let log_key = signed_note::new_ed25519_verifier_key("log", &SigningKey::from_bytes(&[1u8; 32]).verifying_key());
        assert_eq!(CosignatureVerifier::new(&log_key).unwrap_err(), CosignatureKeyError::Alg(0x01));
        assert!(matches!(CosignatureSigner::new("a b", &[0u8; 32]), Err(CosignatureKeyError::Name(_))));
    }
}
