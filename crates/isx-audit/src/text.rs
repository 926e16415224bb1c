//! The free text of records, sealed.
//!
//! Justifications and reasons (of lookups, access requests, decisions,
//! declines, log reads) are what LED Art. 25 asks a log to establish, and
//! they are typed by people: they may name a person. The gateway seals each
//! under `audit-text.key` (ChaCha20-Poly1305, [`isx_store::StoreKey`])
//! before it appends the record: `justification` stays empty and
//! `justification_sealed` holds the sealed text. Auditors who hold the key
//! read it back with [`open`]; everyone else sees that a justification was
//! given, not what it says.
//!
//! The log still verifies without the key: a leaf hash covers the record's
//! bytes, ciphertext included, so a changed or moved ciphertext breaks the
//! tree like any other change.

use isx_core::wire::AuditRecord;

/// The associated data of every sealed justification.
const AAD: &[u8] = b"isx audit record: justification";

/// Seals `record`'s justification, if any, in place.
pub fn seal(key: &isx_store::StoreKey, record: &mut AuditRecord) {
    if !record.justification.is_empty() {
        record.justification_sealed = key.seal(AAD, record.justification.as_bytes());
        record.justification.clear();
    }
}

/// The justification of `record`: the sealed text opened with `key`, or the
/// text of a record written before sealing. `None` if it is sealed and does
/// not open with this key.
pub fn open(key: &isx_store::StoreKey, record: &AuditRecord) -> Option<String> {
    if record.justification_sealed.is_empty() {
        return Some(record.justification.clone());
    }
    key.open(AAD, &record.justification_sealed).ok().and_then(|b| String::from_utf8(b).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_justification_is_sealed_and_opens_only_with_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit-text.key");
        isx_store::key::create(&path).unwrap();
        let key = isx_store::StoreKey::load(&path).unwrap();
        let mut r = AuditRecord { justification: "driver Marco Rinaldi matches".into(), ..Default::default() };
        seal(&key, &mut r);
        assert!(r.justification.is_empty());
        assert!(!r.justification_sealed.windows(6).any(|w| w == b"Marco "), "not in the clear");
        assert_eq!(open(&key, &r).as_deref(), Some("driver Marco Rinaldi matches"));
        let other = dir.path().join("other.key");
        isx_store::key::create(&other).unwrap();
        assert_eq!(open(&isx_store::StoreKey::load(&other).unwrap(), &r), None);
        let mut empty = AuditRecord::default();
        seal(&key, &mut empty);
        assert!(empty.justification_sealed.is_empty(), "nothing to seal");
    }
}
