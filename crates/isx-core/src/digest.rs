//! The content digest of an alert.
//!
//! prost encodes fields in tag order and repeated fields in list order, and the
//! alert has no map fields, so the encoding of a given alert value is
//! deterministic and its SHA-256 identifies the content.

use prost::Message;
use sha2::{Digest, Sha256};

use crate::wire::Alert;

/// SHA-256 of the protobuf encoding of `alert`.
pub fn content_digest(alert: &Alert) -> [u8; 32] {
    Sha256::digest(alert.encode_to_vec()).into()
}

/// [`content_digest`] as lower-case hex.
pub fn content_digest_hex(alert: &Alert) -> String {
    hex::encode(content_digest(alert))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_changes_with_content() {
        let a = Alert { alert_id: "x".into(), narrative: "one".into(), ..Default::default() };
        let mut b = a.clone();
        assert_eq!(content_digest(&a), content_digest(&b));
        b.narrative = "two".into();
        assert_ne!(content_digest(&a), content_digest(&b));
    }
}
