//! The search index: posting lists.
//!
//! Key: `kind ‖ value ‖ 0x00 ‖ time_ms ‖ seq` (both big-endian), where
//! `time_ms` and `seq` are those of the first record listed. Value: the seqs
//! (u64 big-endian each, strictly ascending) of every record of one indexing
//! batch that has this value. Every record is listed once under each of its
//! values: its node, officer, alert (and each alert a consultation matched),
//! access request, operation, purpose, each subject pseudonym, and a time
//! key with an empty value.
//!
//! One key per value and batch, instead of one per value and record: a
//! publish and its four disclosures share their alert and subjects, so the
//! index takes several times fewer sled writes. A value's keys follow one
//! another in log order, because record times never decrease along the log,
//! so a search scans one prefix from a time onwards and reads only the
//! records it lists.

use isx_core::timestamp::to_unix_millis;
use isx_core::wire::AuditRecord;

/// The kinds of index, by their key byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Subject pseudonym (hex).
    Subject = b'S' as isize,
    /// Acting node.
    Node = b'N' as isize,
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

/// The prefixes of every value of a record, sorted, without repeats.
pub fn prefixes(record: &AuditRecord) -> Vec<Vec<u8>> {
    let mut out = vec![prefix(Kind::Time, ""), prefix(Kind::Operation, record.operation().as_str_name())];
    let mut add = |kind, value: &str| {
        if !value.is_empty() {
            out.push(prefix(kind, value));
        }
    };
    add(Kind::Node, &record.node);
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
}
