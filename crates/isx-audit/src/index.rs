//! Index rows: `kind ‖ value ‖ 0x00 ‖ time_ms ‖ seq` (both big-endian), empty value.
//!
//! Every record gets one row per indexed value: its node, officer, alert (and
//! each alert a consultation matched), access request, operation, purpose,
//! each subject pseudonym, and a time row. A search scans
//! one prefix between two times and reads only the rows it returns.

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

/// One row.
pub fn row(kind: Kind, value: &str, time_ms: u64, seq: u64) -> Vec<u8> {
    let mut key = prefix(kind, value);
    key.extend_from_slice(&time_ms.to_be_bytes());
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

/// The seq at the end of a row.
pub fn seq_of(row: &[u8]) -> Option<u64> {
    row.len().checked_sub(8).and_then(|i| row.get(i..)).and_then(|b| b.try_into().ok()).map(u64::from_be_bytes)
}

/// Every index row of a record.
pub fn rows(record: &AuditRecord) -> Vec<Vec<u8>> {
    let t = record.time.as_ref().map(to_unix_millis).unwrap_or(0);
    let s = record.seq;
    let mut out = vec![row(Kind::Time, "", t, s), row(Kind::Operation, record.operation().as_str_name(), t, s)];
    let mut add = |kind, value: &str| {
        if !value.is_empty() {
            out.push(row(kind, value, t, s));
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
