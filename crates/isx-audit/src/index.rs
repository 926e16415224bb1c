//! The search index: posting lists.
//!
//! Key: `kind ‖ value ‖ 0x00 ‖ time_ms ‖ seq` (both big-endian), where
//! `time_ms` and `seq` are those of the first record listed. Value: the seqs
//! (u64 big-endian each, strictly ascending) of every record of one indexing
//! batch that has this value. Every record is listed once under each of its
//! values ([`values`]): its acting node (origin), each of its recipients,
//! officer, alert (and each alert a consultation matched), access request,
//! operation, purpose, each subject pseudonym, and a time key with an empty
//! value.
//!
//! One key per value and batch, instead of one per value and record: a
//! publish and its four disclosures share their alert and subjects, so the
//! index takes several times fewer sled writes. A value's keys follow one
//! another in log order, because record times never decrease along the log,
//! so a search scans one prefix from a time onwards (or backwards from a
//! time, newest first) and reads only the records it lists.

use isx_core::timestamp::to_unix_millis;
use isx_core::wire::{AuditRecord, IndexKind};

/// The kinds of index, by their key byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// Subject pseudonym (hex).
    Subject = b'S' as isize,
    /// The node that acted: the record's `node` (its origin).
    Node = b'N' as isize,
    /// A node among the record's recipients.
    Recipient = b'D' as isize,
    /// Officer.
    Officer = b'O' as isize,
    /// Alert id (the record's, and each alert a consultation matched).
    Alert = b'A' as isize,
    /// Access request id.
    Request = b'R' as isize,
    /// Operation name.
    Operation = b'P' as isize,
    /// Purpose.
    Purpose = b'U' as isize,
    /// Time only (empty value).
    Time = b'T' as isize,
}

impl Kind {
    /// Every kind.
    pub const ALL: [Kind; 9] = [
        Kind::Subject,
        Kind::Node,
        Kind::Recipient,
        Kind::Officer,
        Kind::Alert,
        Kind::Request,
        Kind::Operation,
        Kind::Purpose,
        Kind::Time,
    ];

    /// The kind whose key byte is `byte`.
    pub fn from_byte(byte: u8) -> Option<Kind> {
        Self::ALL.into_iter().find(|k| *k as u8 == byte)
    }

    /// The kind on the wire.
    pub fn wire(self) -> IndexKind {
        match self {
            Kind::Subject => IndexKind::Subject,
            Kind::Node => IndexKind::Origin,
            Kind::Recipient => IndexKind::Recipient,
            Kind::Officer => IndexKind::Officer,
            Kind::Alert => IndexKind::Alert,
            Kind::Request => IndexKind::Request,
            Kind::Operation => IndexKind::Operation,
            Kind::Purpose => IndexKind::Purpose,
            Kind::Time => IndexKind::Time,
        }
    }

    /// The kind of a wire kind (`None` for `INDEX_KIND_UNSPECIFIED`).
    pub fn from_wire(kind: IndexKind) -> Option<Kind> {
        Self::ALL.into_iter().find(|k| k.wire() == kind)
    }

    /// Its name, as a verifier reports it.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Subject => "subject",
            Kind::Node => "origin",
            Kind::Recipient => "recipient",
            Kind::Officer => "officer",
            Kind::Alert => "alert",
            Kind::Request => "request",
            Kind::Operation => "operation",
            Kind::Purpose => "purpose",
            Kind::Time => "time",
        }
    }
}

/// The prefix of every row of `kind` with `value`.
pub fn prefix(kind: Kind, value: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(value.len() + 2);
    key.push(kind as u8);
    key.extend(value.bytes().filter(|b| *b != 0));
    key.push(0);
    key
}

/// The key of a list under `prefix` whose first record is `seq`, at `time_ms`.
pub fn key(prefix: &[u8], time_ms: u64, seq: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(prefix.len() + 16);
    key.extend_from_slice(prefix);
    key.extend_from_slice(&time_ms.to_be_bytes());
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

/// The key of a list of `kind` with `value` whose first record is `seq`.
pub fn row(kind: Kind, value: &str, time_ms: u64, seq: u64) -> Vec<u8> {
    key(&prefix(kind, value), time_ms, seq)
}

/// The first seq named by a key.
pub fn seq_of(key: &[u8]) -> Option<u64> {
    key.len().checked_sub(8).and_then(|i| key.get(i..)).and_then(|b| b.try_into().ok()).map(u64::from_be_bytes)
}

/// The prefix (`kind ‖ value ‖ 0x00`) of a key.
pub fn prefix_of(key: &[u8]) -> Option<&[u8]> {
    key.len().checked_sub(16).and_then(|i| key.get(..i)).filter(|p| p.len() >= 2 && p.ends_with(&[0]))
}

/// A list's value: its seqs, ascending.
pub fn encode(seqs: &[u64]) -> Vec<u8> {
    seqs.iter().flat_map(|s| s.to_be_bytes()).collect()
}

/// The seqs of a list's value, or `None` if it is not a whole number of
/// strictly ascending seqs.
pub fn decode(value: &[u8]) -> Option<Vec<u64>> {
    if value.is_empty() || !value.len().is_multiple_of(8) {
        return None;
    }
    let seqs: Vec<u64> = value.chunks_exact(8).map(|c| u64::from_be_bytes(c.try_into().unwrap_or([0; 8]))).collect();
    seqs.windows(2).all(|w| w[0] < w[1]).then_some(seqs)
}

/// Every value a record is listed under, as its key holds it (NUL bytes
/// dropped), sorted, without repeats.
pub fn values(record: &AuditRecord) -> Vec<(Kind, String)> {
    let mut out = vec![(Kind::Time, String::new()), (Kind::Operation, record.operation().as_str_name().to_owned())];
    let mut add = |kind, value: &str| {
        let value: String = value.chars().filter(|c| *c != '\0').collect();
        if !value.is_empty() {
            out.push((kind, value));
        }
    };
    add(Kind::Node, &record.node);
    for r in &record.recipients {
        add(Kind::Recipient, &r.node);
    }
    add(Kind::Officer, &record.officer);
    add(Kind::Alert, &record.alert_id);
    for h in &record.hits {
        add(Kind::Alert, &h.alert_id);
    }
    add(Kind::Request, &record.request_id);
    add(Kind::Purpose, &record.purpose);
    for p in &record.subject_pseudonyms {
        add(Kind::Subject, p);
    }
    out.sort();
    out.dedup();
    out
}

/// The prefixes of every value of a record, sorted, without repeats.
pub fn prefixes(record: &AuditRecord) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = values(record).into_iter().map(|(kind, value)| prefix(kind, &value)).collect();
    out.sort();
    out.dedup();
    out
}

/// One posting list as stored, for a verifier: what its key and value say,
/// without judging them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    /// The kind its key names (`None` for an unknown key byte or a key that
    /// is not `kind ‖ value ‖ 0 ‖ time ‖ seq`).
    pub kind: Option<Kind>,
    /// The value its key names (lossy UTF-8; the whole key if malformed).
    pub value: String,
    /// The time its key names, Unix ms.
    pub time_ms: u64,
    /// The first seq its key names.
    pub first_seq: u64,
    /// The seqs its value holds, as stored (empty if not whole seqs).
    pub seqs: Vec<u64>,
}

impl Listing {
    /// Reads a stored list.
    pub fn of(key: &[u8], value: &[u8]) -> Listing {
        let seqs = if value.len().is_multiple_of(8) {
            value.chunks_exact(8).map(|c| u64::from_be_bytes(c.try_into().unwrap_or([0; 8]))).collect()
        } else {
            vec![]
        };
        let first_seq = seq_of(key).unwrap_or(0);
        match prefix_of(key) {
            Some(prefix) => Listing {
                kind: Kind::from_byte(prefix[0]),
                value: String::from_utf8_lossy(&prefix[1..prefix.len() - 1]).into_owned(),
                time_ms: key
                    .get(prefix.len()..prefix.len() + 8)
                    .and_then(|b| b.try_into().ok())
                    .map(u64::from_be_bytes)
                    .unwrap_or(0),
                first_seq,
                seqs,
            },
            None => {
                Listing { kind: None, value: String::from_utf8_lossy(key).into_owned(), time_ms: 0, first_seq, seqs }
            }
        }
    }
}

/// A record's time, Unix ms.
pub fn time_of(record: &AuditRecord) -> u64 {
    record.time.as_ref().map(to_unix_millis).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_round_trip_and_refuse_disorder() {
        assert_eq!(decode(&encode(&[1, 5, 9])), Some(vec![1, 5, 9]));
        assert_eq!(decode(&encode(&[5, 5])), None, "a repeat");
        assert_eq!(decode(&encode(&[9, 1])), None, "descending");
        assert_eq!(decode(&[0; 7]), None, "not whole seqs");
        assert_eq!(decode(&[]), None, "empty");
    }

    #[test]
    fn keys_split_into_prefix_time_and_seq() {
        let k = row(Kind::Node, "fr-police", 7, 42);
        assert_eq!(prefix_of(&k), Some(&prefix(Kind::Node, "fr-police")[..]));
        assert_eq!(seq_of(&k), Some(42));
        assert!(key(&prefix(Kind::Node, "fr-police"), 8, 0) > k, "later times sort after");
        assert_eq!(prefix_of(&[1, 2, 3]), None);
    }

    #[test]
    fn a_record_is_listed_under_its_origin_and_each_recipient() {
        let record = AuditRecord {
            node: "de-police".into(),
            recipients: vec![
                isx_core::wire::RecipientLevel { node: "fr-police".into(), ..Default::default() },
                isx_core::wire::RecipientLevel { node: "europol".into(), ..Default::default() },
            ],
            ..Default::default()
        };
        let values = values(&record);
        for want in [(Kind::Node, "de-police"), (Kind::Recipient, "fr-police"), (Kind::Recipient, "europol")] {
            assert!(values.contains(&(want.0, want.1.to_owned())), "{want:?} in {values:?}");
        }
        assert!(!values.contains(&(Kind::Recipient, "de-police".to_owned())), "the origin is not a recipient");
        assert_eq!(prefixes(&record).len(), values.len());
    }

    #[test]
    fn a_listing_reads_back_what_its_key_and_value_say() {
        let k = row(Kind::Recipient, "fr-police", 7, 42);
        let l = Listing::of(&k, &encode(&[42, 50]));
        assert_eq!(
            l,
            Listing {
                kind: Some(Kind::Recipient),
                value: "fr-police".into(),
                time_ms: 7,
                first_seq: 42,
                seqs: vec![42, 50]
            }
        );
        assert_eq!(Listing::of(&k, &[0; 7]).seqs, Vec::<u64>::new(), "not whole seqs");
        assert_eq!(Listing::of(&row(Kind::Time, "", 1, 2), &encode(&[2])).value, "");
        for kind in Kind::ALL {
            assert_eq!(Kind::from_wire(kind.wire()), Some(kind));
            assert_eq!(Kind::from_byte(kind as u8), Some(kind));
        }
    }
}
