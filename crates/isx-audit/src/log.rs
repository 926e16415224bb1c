//! The append-only audit log in sled.
//!
//! # Trees (all prefixed `audit.`)
//! - `entries`: `seq` (u64 BE) → the Merkle hashes that record `seq`
//!   completes, 32 bytes each (its leaf hash, then the hash of each subtree
//!   it closes, level by level: the Go `tlog` stored hashes of that record,
//!   whose number follows from `seq`), then the record's exact protobuf
//!   bytes. Pruning keeps the hashes and drops the bytes. One key per
//!   record, so that an append writes one key per record.
//! - `index`: the search index, posting lists (see [`crate::index`]).
//! - `meta`: `size` (records in the tree), `indexed` (records whose search
//!   rows are written), `pruned_below` (bodies before this seq were removed
//!   by retention) and `format`.
//! - `checkpoints`: tree size (u64 BE) → signed checkpoint note.
//! - `holds`: the legal holds in force ([`crate::hold`]): hold number (u64
//!   BE) → the `Hold` message's bytes. `meta`'s `holds_issued` is the last
//!   number given, so that an id is never given twice.
//!
//! `size` is written after an append's records and hashes; entries found beyond
//! it at open were never flushed with it and so never acknowledged, and are
//! removed.
//!
//! # Deferred indexing
//!
//! [`AuditLog::append`] writes what makes a record durable and verifiable:
//! its body and its hashes. The search index is derived data; it is written
//! by [`AuditLog::index_pending`], which the gateway runs in the background
//! and which every search, prune and integrity check runs first, so a search
//! always sees every appended record. `indexed` says where to resume: after a
//! crash, the interrupted batch is indexed again from its start, and its
//! posting lists are written again under the same keys.

use std::sync::Mutex;

use isx_core::timestamp::{from_unix_millis, to_unix_millis};
use isx_core::wire::{AuditEntry, AuditRecord, Operation, Outcome};
use prost::Message;
use tlog_tiles::tlog::{self, Hash, HashReader};
use tracing::warn;

use crate::checkpoint::{self, CheckpointError};
use crate::hold::{self, Hold};
use crate::index::{self, Kind};
use crate::keys::AuditKeys;
use crate::retention::{self, AlertState, Cutoff, PrunePlan, Rule, RuleError};
use crate::scope::Scope;

/// The record encoding version written by this code.
pub const RECORD_VERSION: u32 = 1;

/// Why the audit log refused an operation.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// sled failed.
    #[error("audit storage: {0}")]
    Sled(#[from] sled::Error),
    /// The stored log is inconsistent: tampering or corruption.
    #[error("audit log integrity: first bad sequence number {seq}: {message}")]
    Integrity {
        /// The first bad sequence number.
        seq: u64,
        /// What is wrong.
        message: String,
    },
    /// The log is shorter than a checkpoint it signed.
    #[error(
        "audit log integrity: the log holds {size} records but checkpoint {checkpoint} was signed; the log was truncated (first missing sequence number {size})"
    )]
    Truncated {
        /// Records present.
        size: u64,
        /// The checkpoint size.
        checkpoint: u64,
    },
    /// A stored checkpoint does not verify.
    #[error("audit checkpoint at size {size}: {source}")]
    Checkpoint {
        /// Its size.
        size: u64,
        /// Why.
        source: CheckpointError,
    },
    /// A request names sizes or positions outside the tree.
    #[error("{0}")]
    Range(String),
    /// The Merkle computation failed.
    #[error("merkle tree: {0}")]
    Tree(String),
    /// A prune's cut-off breaks the retention rule.
    #[error("retention: {0}")]
    Retention(RuleError),
    /// The log was written in an older storage layout.
    #[error(
        "this audit log was written in storage format {found}, and this version reads format {FORMAT}; export it with the version that wrote it (`isx audit export`), then move the data directory away"
    )]
    Format {
        /// The format found (1 if unmarked).
        found: u64,
    },
}

/// The storage layout written by this code (1: one `hashes` key per hash,
/// search rows written with each append; 2: one `hashes` key and one
/// `entries` key per record, one search row per value and record; 3: one key
/// per record holding its hashes and its bytes, one posting list per value
/// and indexing batch, record times never decrease; 4: as 3, and each
/// recipient indexed too, [`Kind::Recipient`]).
pub const FORMAT: u64 = 4;

impl From<tlog::Error> for AuditError {
    fn from(e: tlog::Error) -> Self {
        Self::Tree(e.to_string())
    }
}

/// A search filter; empty fields match everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Subject pseudonym (hex).
    pub pseudonym: Option<String>,
    /// A node on either side: the acting node or one of the recipients.
    pub node: Option<String>,
    /// The acting node (the record's `node`).
    pub origin: Option<String>,
    /// A node among the record's recipients.
    pub recipient: Option<String>,
    /// Officer.
    pub officer: Option<String>,
    /// Alert id: the record's own, or one of a consultation's matches.
    pub alert_id: Option<String>,
    /// Access request id.
    pub request_id: Option<String>,
    /// Operation.
    pub operation: Option<Operation>,
    /// Purpose.
    pub purpose: Option<String>,
    /// From this time (Unix ms, inclusive).
    pub from_ms: Option<u64>,
    /// To this time (Unix ms, inclusive).
    pub to_ms: Option<u64>,
    /// Only records in this scope (a scoped auditor's, see [`Scope`]);
    /// `None`: every record.
    pub scope: Option<Scope>,
}

impl Filter {
    /// The lists to scan: those of the most selective field given (both
    /// sides' for `node`), as key prefixes.
    fn primary(&self) -> Vec<Vec<u8>> {
        let one = |kind, value: &str| vec![index::prefix(kind, value)];
        if let Some(p) = &self.pseudonym {
            one(Kind::Subject, p)
        } else if let Some(r) = &self.request_id {
            one(Kind::Request, r)
        } else if let Some(a) = &self.alert_id {
            one(Kind::Alert, a)
        } else if let Some(o) = &self.officer {
            one(Kind::Officer, o)
        } else if let Some(n) = &self.origin {
            one(Kind::Node, n)
        } else if let Some(n) = &self.recipient {
            one(Kind::Recipient, n)
        } else if let Some(n) = &self.node {
            vec![index::prefix(Kind::Node, n), index::prefix(Kind::Recipient, n)]
        } else if let Some(p) = &self.purpose {
            one(Kind::Purpose, p)
        } else if let Some(op) = self.operation {
            one(Kind::Operation, op.as_str_name())
        } else {
            one(Kind::Time, "")
        }
    }

    /// True if `r` matches every field.
    pub fn matches(&self, r: &AuditRecord) -> bool {
        let t = r.time.as_ref().map(to_unix_millis).unwrap_or(0);
        let received = |n: &String| r.recipients.iter().any(|x| x.node == *n);
        self.pseudonym.as_ref().is_none_or(|p| r.subject_pseudonyms.contains(p))
            && self.node.as_ref().is_none_or(|n| *n == r.node || received(n))
            && self.origin.as_ref().is_none_or(|n| *n == r.node)
            && self.recipient.as_ref().is_none_or(received)
            && self.officer.as_ref().is_none_or(|o| *o == r.officer)
            && self.alert_id.as_ref().is_none_or(|a| *a == r.alert_id || r.hits.iter().any(|h| h.alert_id == *a))
            && self.request_id.as_ref().is_none_or(|q| *q == r.request_id)
            && self.operation.is_none_or(|op| op == r.operation())
            && self.purpose.as_ref().is_none_or(|p| *p == r.purpose)
            && self.from_ms.is_none_or(|f| t >= f)
            && self.to_ms.is_none_or(|to| t <= to)
            && self.scope.as_ref().is_none_or(|s| s.holds(r))
    }
}

/// Which of a search's matches to read, and in which order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// At most this many entries.
    pub limit: usize,
    /// Only seqs after this one (exclusive).
    pub after_seq: Option<u64>,
    /// Only seqs before this one (exclusive).
    pub before_seq: Option<u64>,
    /// Descending seqs (newest first) instead of ascending.
    pub newest_first: bool,
}

impl Window {
    /// The first `limit` matches, oldest first.
    pub fn oldest(limit: usize) -> Self {
        Self { limit, after_seq: None, before_seq: None, newest_first: false }
    }

    /// The first `limit` matches, newest first.
    pub fn newest(limit: usize) -> Self {
        Self { newest_first: true, ..Self::oldest(limit) }
    }

    /// True if `seq` is inside the seq bounds.
    fn holds(&self, seq: u64) -> bool {
        self.after_seq.is_none_or(|a| seq > a) && self.before_seq.is_none_or(|b| seq < b)
    }
}

/// A page of the search index (see [`AuditLog::index_page`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IndexPage {
    /// The lists, in key order.
    pub listings: Vec<index::Listing>,
    /// The key of the last list read, to continue after; `None` at the end.
    pub resume: Option<Vec<u8>>,
}

/// The seqs of one value's lists, in log order or backwards.
struct Postings<'a> {
    /// The lists still to read.
    lists: Box<dyn Iterator<Item = sled::Result<(sled::IVec, sled::IVec)>> + 'a>,
    /// The seqs of the list being read, in the order they are given.
    pending: std::vec::IntoIter<u64>,
    /// Backwards.
    reverse: bool,
}

impl Postings<'_> {
    fn next(&mut self) -> Result<Option<u64>, AuditError> {
        loop {
            if let Some(seq) = self.pending.next() {
                return Ok(Some(seq));
            }
            let Some(item) = self.lists.next() else { return Ok(None) };
            let (_, value) = item?;
            let mut seqs = index::decode(&value).unwrap_or_default();
            if self.reverse {
                seqs.reverse();
            }
            self.pending = seqs.into_iter();
        }
    }
}

/// Index entries that pruning takes out of the lists at a time.
const PRUNE_CHUNK: usize = 65_536;

/// From this many records, an append writes sled batches instead of plain
/// inserts (see [`AuditLog::append`]).
const BULK_APPEND: usize = 32;

/// The most records [`AuditLog::index_pending`] indexes as one batch (one
/// list per value of the batch) before it moves `indexed` on. The gateway's
/// indexer runs often enough that its batches are smaller; this bounds a
/// catch-up batch (about 12 list entries of 8 bytes a record in memory).
const INDEX_CHUNK: u64 = 512;

/// Where stored hash `index` lives: (the record that completes it, its
/// offset in that record's value).
///
/// The hash at `level` and position `k` is computed when record
/// `(k + 1) · 2^level − 1` is appended, as that record's `level`-th stored hash.
pub(crate) fn locate(index: u64) -> (u64, usize) {
    let (level, k) = tlog::split_stored_hash_index(index);
    (((k + 1) << level) - 1, level as usize * 32)
}

/// The length of the hashes at the head of record `seq`'s value.
pub(crate) fn hashes_len(seq: u64) -> usize {
    32 * (tlog::stored_hash_count(seq + 1) - tlog::stored_hash_count(seq)) as usize
}

/// The record bytes in record `seq`'s value (empty once pruned), or `None`
/// if the value is too short to hold its hashes.
fn body_of(seq: u64, value: &[u8]) -> Option<&[u8]> {
    value.get(hashes_len(seq)..)
}

/// Reads stored hashes from the `entries` tree.
struct Stored<'a>(&'a sled::Tree);

impl HashReader for Stored<'_> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog::Error> {
        indexes
            .iter()
            .map(|i| {
                let (seq, at) = locate(*i);
                match self.0.get(be(seq)) {
                    Ok(Some(v)) if at + 32 <= hashes_len(seq) => v
                        .get(at..at + 32)
                        .map(|h| Hash(h.try_into().expect("32 bytes")))
                        .ok_or(tlog::Error::IndexesNotInTree),
                    _ => Err(tlog::Error::IndexesNotInTree),
                }
            })
            .collect()
    }
}

/// Stored hashes, looking first at the in-memory right frontier of the tree.
struct Frontier<'a> {
    cache: &'a std::collections::HashMap<u64, Hash>,
    stored: Stored<'a>,
}

impl HashReader for Frontier<'_> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog::Error> {
        indexes
            .iter()
            .map(|i| match self.cache.get(i) {
                Some(h) => Ok(*h),
                None => self.stored.read_hashes(&[*i]).map(|v| v[0]),
            })
            .collect()
    }
}

/// The append state: the size, and the left-sibling hashes that the next
/// appends will read (at most one per level).
#[derive(Debug, Default)]
struct AppendState {
    size: u64,
    /// The time of the last record: an append never goes back before it.
    last_time: u64,
    frontier: std::collections::HashMap<u64, Hash>,
}

/// What an integrity check covered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IntegrityReport {
    /// Records in the tree.
    pub size: u64,
    /// Records whose body was checked against its leaf hash.
    pub bodies_checked: u64,
    /// Index rows checked.
    pub index_rows: u64,
    /// The last signed checkpoint's size (0 if none).
    pub checkpoint_size: u64,
    /// Unacknowledged entries removed beyond `size` (left by a crash).
    pub leftovers_removed: u64,
}

/// The sled-backed audit log.
pub struct AuditLog {
    db: sled::Db,
    entries: sled::Tree,
    index: sled::Tree,
    meta: sled::Tree,
    checkpoints: sled::Tree,
    /// Checkpoints a witness quorum cosigned: size → time (ms, 8 bytes) and note.
    witnessed: sled::Tree,
    /// The legal holds in force.
    holds: sled::Tree,
    keys: AuditKeys,
    /// The size and frontier; held while appending so that seqs and hashes are assigned in order.
    size: Mutex<AppendState>,
    /// Held while search rows are written (see [`AuditLog::index_pending`]).
    indexer: Mutex<()>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog").field("size", &self.size()).finish_non_exhaustive()
    }
}

fn be(n: u64) -> [u8; 8] {
    n.to_be_bytes()
}

fn read_u64(tree: &sled::Tree, key: &str) -> Result<u64, AuditError> {
    Ok(tree.get(key)?.and_then(|v| v.as_ref().try_into().ok()).map(u64::from_be_bytes).unwrap_or(0))
}

/// The leaf hash of a record body: SHA-256(0x00 ‖ body).
pub fn leaf_hash(body: &[u8]) -> [u8; 32] {
    tlog::record_hash(body).0
}

impl AuditLog {
    /// Opens the log in `db`, removes unacknowledged leftovers, and checks its
    /// integrity against the last signed checkpoint. `progress` is called
    /// with (records checked, total) during the check.
    pub fn open(
        db: &sled::Db,
        keys: AuditKeys,
        progress: &dyn Fn(u64, u64),
    ) -> Result<(Self, IntegrityReport), AuditError> {
        let log = Self {
            entries: db.open_tree("audit.entries")?,
            index: db.open_tree("audit.index")?,
            meta: db.open_tree("audit.meta")?,
            checkpoints: db.open_tree("audit.checkpoints")?,
            witnessed: db.open_tree("audit.witnessed")?,
            holds: db.open_tree("audit.holds")?,
            db: db.clone(),
            keys,
            size: Mutex::new(AppendState::default()),
            indexer: Mutex::new(()),
        };
        let size = read_u64(&log.meta, "size")?;
        match read_u64(&log.meta, "format")? {
            FORMAT => {}
            0 if size == 0 && log.entries.is_empty() => log.meta.insert("format", &be(FORMAT)[..]).map(drop)?,
            found => return Err(AuditError::Format { found: found.max(1) }),
        }
        let leftovers = log.remove_leftovers(size)?;
        let last_time = match size.checked_sub(1) {
            Some(last) => log.record(last)?,
            None => None,
        };
        {
            let mut state = log.size.lock().unwrap_or_else(|e| e.into_inner());
            state.size = size;
            state.last_time = last_time.as_ref().map(index::time_of).unwrap_or(0);
        }
        let mut report = log.check_integrity(progress)?;
        report.leftovers_removed = leftovers;
        Ok((log, report))
    }

    /// The database the log lives in (the caller flushes it).
    pub fn db(&self) -> &sled::Db {
        &self.db
    }

    /// The keys (origin, verifier key, pseudonym key).
    pub fn keys(&self) -> &AuditKeys {
        &self.keys
    }

    /// Records in the tree.
    pub fn size(&self) -> u64 {
        self.size.lock().unwrap_or_else(|e| e.into_inner()).size
    }

    /// Appends records, assigning `seq`, `version` and `time` (Unix ms `now_ms`).
    /// Not durable until the database is flushed. Their search rows are
    /// written later, by [`AuditLog::index_pending`].
    pub fn append(&self, records: Vec<AuditRecord>, now_ms: u64) -> Result<Vec<u64>, AuditError> {
        let mut state = self.size.lock().unwrap_or_else(|e| e.into_inner());
        // Restored if a write fails, so that the next append hashes from the
        // same tree as the records that did land.
        let frontier = state.frontier.clone();
        let appended = self.append_locked(&mut state, records, now_ms);
        if appended.is_err() {
            state.frontier = frontier;
        }
        appended
    }

    fn append_locked(
        &self,
        state: &mut AppendState,
        records: Vec<AuditRecord>,
        now_ms: u64,
    ) -> Result<Vec<u64>, AuditError> {
        let mut seqs = Vec::with_capacity(records.len());
        let mut rows = Vec::with_capacity(records.len());
        let mut n = state.size;
        // Record times never decrease along the log, even if the clock steps
        // back: searches rely on it (see `index`).
        let time = now_ms.max(state.last_time);
        for mut record in records {
            record.version = RECORD_VERSION;
            record.seq = n;
            record.time = Some(from_unix_millis(time));
            let body = record.encode_to_vec();
            let stored =
                tlog::stored_hashes(n, &body, &Frontier { cache: &state.frontier, stored: Stored(&self.entries) })?;
            // The left siblings just read are never read again; the new left
            // children will be read once, when their subtree completes.
            for i in 0..stored.len().saturating_sub(1) {
                state.frontier.remove(&tlog::stored_hash_index(i as u8, (n >> i) - 1));
            }
            let base = tlog::stored_hash_index(0, n);
            let mut value = Vec::with_capacity(stored.len() * 32 + body.len());
            for (i, h) in stored.iter().enumerate() {
                value.extend_from_slice(&h.0);
                if (n >> i).is_multiple_of(2) {
                    state.frontier.insert(base + i as u64, *h);
                }
            }
            value.extend_from_slice(&body);
            rows.push((be(n), value));
            seqs.push(n);
            n += 1;
        }
        // Atomicity comes from the size, which goes last: anything beyond it
        // at open was never flushed with it and is removed. A few records
        // (the gateway's appends) are plain inserts: a sled batch takes a
        // write lock shared by every sled database in the process and parks
        // every other writer. Many records (bulk appends) are one batch,
        // which cost less per record.
        if rows.len() >= BULK_APPEND {
            let mut entries = sled::Batch::default();
            for (key, value) in rows {
                entries.insert(&key, value);
            }
            self.entries.apply_batch(entries)?;
        } else {
            for (key, value) in rows {
                self.entries.insert(key, value)?;
            }
        }
        self.meta.insert("size", &be(n)[..])?;
        state.size = n;
        state.last_time = time;
        Ok(seqs)
    }

    /// Writes the search rows of every record appended since the last call,
    /// up to the current size; returns how many records were indexed.
    /// Searches, pruning and integrity checks call it first; the gateway
    /// also runs it in the background, off the acknowledgment path.
    pub fn index_pending(&self) -> Result<u64, AuditError> {
        let _indexer = self.indexer.lock().unwrap_or_else(|e| e.into_inner());
        self.index_locked()
    }

    /// [`AuditLog::index_pending`], under the indexer lock.
    fn index_locked(&self) -> Result<u64, AuditError> {
        let size = self.size();
        let start = read_u64(&self.meta, "indexed")?.max(read_u64(&self.meta, "pruned_below")?);
        let mut from = start;
        while from < size {
            let to = size.min(from + INDEX_CHUNK);
            // One list per value: (time and seq of its first record, seqs).
            let mut lists: std::collections::BTreeMap<Vec<u8>, (u64, Vec<u64>)> = Default::default();
            for item in self.entries.range(be(from)..be(to)) {
                let (key, value) = item?;
                let seq = u64::from_be_bytes(key.as_ref().try_into().unwrap_or([0; 8]));
                let record = AuditRecord::decode(body_of(seq, &value).unwrap_or_default())
                    .map_err(|e| AuditError::Integrity { seq, message: format!("record does not decode: {e}") })?;
                let time = index::time_of(&record);
                for prefix in index::prefixes(&record) {
                    lists.entry(prefix).or_insert_with(|| (time, Vec::new())).1.push(seq);
                }
            }
            // In key order, so that consecutive inserts land in the same leaf;
            // plain inserts (see `append`). After a crash the batch starts at
            // the same `indexed`, so each list is written again under the same
            // key, with at least the same seqs.
            for (prefix, (time, seqs)) in lists {
                self.index.insert(index::key(&prefix, time, seqs[0]), index::encode(&seqs))?;
            }
            self.meta.insert("indexed", &be(to)[..])?;
            from = to;
        }
        Ok(from - start)
    }

    /// The list under `prefix` that would hold record `seq` at `time_ms`:
    /// the last key at or before that position. Returns it with its seqs.
    fn containing(&self, prefix: &[u8], time_ms: u64, seq: u64) -> Result<Option<(sled::IVec, Vec<u64>)>, AuditError> {
        let Some((key, value)) =
            self.index.range(prefix.to_vec()..=index::key(prefix, time_ms, seq)).next_back().transpose()?
        else {
            return Ok(None);
        };
        Ok(Some((key, index::decode(&value).unwrap_or_default())))
    }

    /// Takes records out of the search index: each `(prefix, time, seq)` is
    /// removed from the list that holds it; a list left empty is removed, and
    /// one whose first record went is stored again under its new first.
    fn unlist(&self, listed: Vec<(Vec<u8>, u64, u64)>) -> Result<(), AuditError> {
        let mut changed: std::collections::BTreeMap<sled::IVec, (Vec<u8>, Vec<u64>)> = Default::default();
        for (prefix, time, seq) in listed {
            if let Some((key, seqs)) = self.containing(&prefix, time, seq)? {
                let (_, left) = changed.entry(key).or_insert((prefix, seqs));
                left.retain(|s| *s != seq);
            }
        }
        for (key, (prefix, left)) in changed {
            match left.first() {
                None => {
                    self.index.remove(key)?;
                }
                Some(&first) if index::seq_of(&key) == Some(first) => {
                    self.index.insert(key, index::encode(&left))?;
                }
                Some(&first) => {
                    let time = self.record(first)?.as_ref().map(index::time_of).unwrap_or(0);
                    self.index.remove(key)?;
                    self.index.insert(index::key(&prefix, time, first), index::encode(&left))?;
                }
            }
        }
        Ok(())
    }

    #[cfg(test)]
    pub(crate) fn meta_for_tests(&self) -> &sled::Tree {
        &self.meta
    }

    /// Records appended whose search rows are not written yet.
    pub fn unindexed(&self) -> Result<u64, AuditError> {
        Ok(self.size().saturating_sub(read_u64(&self.meta, "indexed")?))
    }

    fn remove_leftovers(&self, size: u64) -> Result<u64, AuditError> {
        let mut removed = 0;
        let leftovers: Vec<(sled::IVec, sled::IVec)> = self.entries.range(be(size)..).collect::<Result<_, _>>()?;
        let mut listed = Vec::new();
        for (key, value) in leftovers {
            let seq = u64::from_be_bytes(key.as_ref().try_into().unwrap_or([0; 8]));
            if let Some(record) = body_of(seq, &value).and_then(|b| AuditRecord::decode(b).ok()) {
                let time = index::time_of(&record);
                listed.extend(index::prefixes(&record).into_iter().map(|p| (p, time, seq)));
            }
            self.entries.remove(key)?;
            removed += 1;
        }
        self.unlist(listed)?;
        if read_u64(&self.meta, "indexed")? > size {
            self.meta.insert("indexed", &be(size)[..])?;
        }
        if removed > 0 {
            warn!(removed, size, "removed audit entries beyond the recorded size (never flushed, never acknowledged)");
        }
        Ok(removed)
    }

    /// The root hash of the tree of the first `size` records.
    pub fn root(&self, size: u64) -> Result<[u8; 32], AuditError> {
        if size > self.size() {
            return Err(AuditError::Range(format!("tree size {size} is beyond the log's {}", self.size())));
        }
        Ok(tlog::tree_hash(size, &Stored(&self.entries))?.0)
    }

    /// The stored leaf hash of record `seq`.
    pub fn leaf(&self, seq: u64) -> Result<[u8; 32], AuditError> {
        let value = self.entries.get(be(seq))?;
        value
            .as_ref()
            .and_then(|v| v.get(..32))
            .and_then(|h| h.try_into().ok())
            .ok_or_else(|| AuditError::Integrity { seq, message: "leaf hash missing".into() })
    }

    /// Record `seq` as served: body, leaf hash, pruned flag, decoded record.
    pub fn entry(&self, seq: u64) -> Result<AuditEntry, AuditError> {
        if seq >= self.size() {
            return Err(AuditError::Range(format!("no record {seq}: the log holds {}", self.size())));
        }
        let value = self.entries.get(be(seq))?.unwrap_or_default();
        let leaf = value.get(..32).ok_or_else(|| AuditError::Integrity { seq, message: "leaf hash missing".into() })?;
        Ok(match body_of(seq, &value) {
            Some(body) if !body.is_empty() => AuditEntry {
                seq,
                record: AuditRecord::decode(body).ok(),
                body: body.to_vec(),
                leaf_hash: leaf.to_vec(),
                ..Default::default()
            },
            _ => AuditEntry { seq, leaf_hash: leaf.to_vec(), pruned: true, ..Default::default() },
        })
    }

    /// The decoded record `seq`, unless pruned (or undecodable).
    fn record(&self, seq: u64) -> Result<Option<AuditRecord>, AuditError> {
        let value = self.entries.get(be(seq))?.unwrap_or_default();
        Ok(body_of(seq, &value).filter(|b| !b.is_empty()).and_then(|b| AuditRecord::decode(b).ok()))
    }

    /// Records `start..end`.
    pub fn entries(&self, start: u64, end: u64) -> Result<Vec<AuditEntry>, AuditError> {
        (start..end.min(self.size())).map(|s| self.entry(s)).collect()
    }

    /// An inclusion proof for `seq` in the tree of `size` records.
    pub fn inclusion_proof(&self, seq: u64, size: u64) -> Result<Vec<[u8; 32]>, AuditError> {
        if seq >= size || size > self.size() {
            return Err(AuditError::Range(format!(
                "record {seq} is not in a tree of {size} (log size {})",
                self.size()
            )));
        }
        Ok(tlog::prove_record(size, seq, &Stored(&self.entries))?.into_iter().map(|h| h.0).collect())
    }

    /// A consistency proof from the tree of `first` records to that of `second`.
    pub fn consistency_proof(&self, first: u64, second: u64) -> Result<Vec<[u8; 32]>, AuditError> {
        if first > second || second > self.size() {
            return Err(AuditError::Range(format!(
                "no consistency proof from {first} to {second} (log size {})",
                self.size()
            )));
        }
        if first == 0 || first == second {
            // Every tree extends the empty tree and itself: nothing to prove.
            return Ok(vec![]);
        }
        Ok(tlog::prove_tree(second, first, &Stored(&self.entries))?.into_iter().map(|h| h.0).collect())
    }

    /// Signs and stores a checkpoint for the first `size` records, which the
    /// caller must already have flushed. Returns the note.
    pub fn sign_checkpoint(&self, size: u64) -> Result<String, AuditError> {
        let root = self.root(size)?;
        let note = checkpoint::sign(&self.keys, size, root);
        self.checkpoints.insert(be(size), note.as_bytes())?;
        Ok(note)
    }

    /// The latest signed checkpoint: (size, note).
    pub fn latest_checkpoint(&self) -> Result<Option<(u64, String)>, AuditError> {
        Ok(self.checkpoints.last()?.map(|(k, v)| {
            (u64::from_be_bytes(k.as_ref().try_into().unwrap_or([0; 8])), String::from_utf8_lossy(&v).into_owned())
        }))
    }

    /// Stores `note`, the checkpoint of size `size` with the cosignatures
    /// that made a witness quorum, witnessed at `at_ms` (the caller's
    /// group commit makes it durable).
    pub fn store_witnessed(&self, size: u64, note: &str, at_ms: u64) -> Result<(), AuditError> {
        let mut value = be(at_ms).to_vec();
        value.extend_from_slice(note.as_bytes());
        self.witnessed.insert(be(size), value)?;
        Ok(())
    }

    /// The newest witnessed checkpoint: (size, cosigned note, witnessed at ms).
    pub fn latest_witnessed(&self) -> Result<Option<(u64, String, u64)>, AuditError> {
        Ok(self.witnessed.last()?.and_then(|(k, v)| {
            let size = u64::from_be_bytes(k.as_ref().try_into().ok()?);
            let at = u64::from_be_bytes(v.get(..8)?.try_into().ok()?);
            Some((size, String::from_utf8_lossy(&v[8..]).into_owned(), at))
        }))
    }

    /// Every stored checkpoint, oldest first.
    pub fn checkpoints(&self) -> Result<Vec<(u64, String)>, AuditError> {
        self.checkpoints
            .iter()
            .map(|r| {
                let (k, v) = r?;
                Ok((
                    u64::from_be_bytes(k.as_ref().try_into().unwrap_or([0; 8])),
                    String::from_utf8_lossy(&v).into_owned(),
                ))
            })
            .collect()
    }

    /// Up to `limit` records matching `filter` after `after_seq` (exclusive;
    /// `None` from the start), oldest first, and whether more match.
    pub fn search(
        &self,
        filter: &Filter,
        limit: usize,
        after_seq: Option<u64>,
    ) -> Result<(Vec<AuditEntry>, bool), AuditError> {
        self.search_window(filter, &Window { after_seq, ..Window::oldest(limit) })
    }

    /// The records matching `filter` inside `window`, in its order, and
    /// whether more match beyond the last one returned.
    ///
    /// It reads the lists of the most selective field (for `node`, the
    /// origin's and the recipient's lists, merged), from the window's end
    /// nearest to where it starts: a seq bound or time bound is first turned
    /// into a key to seek to, because record times never decrease along the
    /// log. It reads only the records those lists name until it has `limit`
    /// matches and one more, never counting the rest. A scope narrows what
    /// matches but never chooses the lists (a hit's holder is not indexed),
    /// so a scoped search without another filter reads the time lists until
    /// its page is full: at most the window's records.
    pub fn search_window(&self, filter: &Filter, window: &Window) -> Result<(Vec<AuditEntry>, bool), AuditError> {
        self.index_pending()?;
        let reverse = window.newest_first;
        // The time bounds, narrowed by the seq bounds: a record after seq
        // `a` is no older than `a`, one before seq `b` no newer than `b`.
        let time_at = |seq: Option<u64>| -> Result<Option<u64>, AuditError> {
            Ok(match seq {
                Some(s) if s < self.size() => self.record(s)?.as_ref().map(index::time_of),
                _ => None,
            })
        };
        let from_ms = filter.from_ms.unwrap_or(0).max(time_at(window.after_seq)?.unwrap_or(0));
        let to_ms = filter.to_ms.unwrap_or(u64::MAX).min(time_at(window.before_seq)?.unwrap_or(u64::MAX));
        let mut sources: Vec<(Postings<'_>, Option<u64>)> = Vec::new();
        for prefix in filter.primary() {
            let lists: Box<dyn Iterator<Item = _>> = if reverse {
                // Every list whose first record is at or before `to_ms`;
                // a later list holds only later records.
                Box::new(self.index.range(prefix.clone()..=index::key(&prefix, to_ms, u64::MAX)).rev())
            } else {
                // The list just before `from_ms` may still hold records at
                // or after it; every later list starts at or after it.
                let start = index::key(&prefix, from_ms, 0);
                let mut end = prefix.clone();
                end.push(0xff);
                let before = self.index.range(prefix.clone()..start.clone()).next_back();
                Box::new(before.into_iter().chain(self.index.range(start..end)))
            };
            let mut postings = Postings { lists, pending: Vec::new().into_iter(), reverse };
            let head = postings.next()?;
            sources.push((postings, head));
        }
        let mut out = Vec::new();
        // Bounded: each turn takes one seq off a source's lists.
        loop {
            // The next seq in the window's order over every source, once
            // even if several list it.
            let next = sources.iter().filter_map(|(_, head)| *head);
            let Some(seq) = (if reverse { next.max() } else { next.min() }) else { break };
            for (postings, head) in sources.iter_mut() {
                if *head == Some(seq) {
                    *head = postings.next()?;
                }
            }
            let past = if reverse {
                window.after_seq.is_some_and(|a| seq <= a)
            } else {
                window.before_seq.is_some_and(|b| seq >= b)
            };
            if past {
                break;
            }
            if !window.holds(seq) {
                continue;
            }
            let entry = self.entry(seq)?;
            let Some(record) = entry.record.as_ref() else { continue };
            let time = index::time_of(record);
            // Times never decrease along the log: nothing further matches.
            if (!reverse && filter.to_ms.is_some_and(|to| time > to)) || (reverse && time < from_ms) {
                break;
            }
            if filter.matches(record) {
                if out.len() == window.limit {
                    return Ok((out, true));
                }
                out.push(entry);
            }
        }
        Ok((out, false))
    }

    /// Up to about `max_seqs` seqs' worth of the search index's lists, in
    /// key order, after the key `after` (from the first list if `None`),
    /// each with only its seqs below `below` (a list with none is left out).
    /// Indexes what is pending first. A verifier reads the whole index page
    /// by page with it and checks every list against the records.
    pub fn index_page(&self, after: Option<&[u8]>, below: u64, max_seqs: usize) -> Result<IndexPage, AuditError> {
        self.index_pending()?;
        let range = match after {
            Some(key) => self.index.range::<&[u8], _>((std::ops::Bound::Excluded(key), std::ops::Bound::Unbounded)),
            None => self.index.iter(),
        };
        let mut page = IndexPage::default();
        let mut seqs = 0;
        for item in range {
            let (key, value) = item?;
            let mut listing = index::Listing::of(&key, &value);
            listing.seqs.retain(|s| *s < below);
            page.resume = Some(key.to_vec());
            if listing.seqs.is_empty() && !value.is_empty() && value.len().is_multiple_of(8) {
                // Only records beyond the verified tree: not this verifier's.
                continue;
            }
            seqs += listing.seqs.len().max(1);
            page.listings.push(listing);
            if seqs >= max_seqs {
                return Ok(page);
            }
        }
        page.resume = None;
        Ok(page)
    }

    /// What [`AuditLog::prune`] would remove at `cutoff`, changing nothing
    /// (but for indexing what is pending, which is derived data). It stops
    /// at the first record the rule keeps, or a legal hold in force covers.
    pub fn plan_prune(&self, cutoff: &Cutoff) -> Result<PrunePlan, AuditError> {
        let _indexer = self.indexer.lock().unwrap_or_else(|e| e.into_inner());
        self.index_locked()?;
        self.plan_locked(cutoff)
    }

    /// Removes the bodies and index rows of the longest prefix the
    /// retention rule and the legal holds allow at `cutoff` (see
    /// [`crate::retention`]), keeping every hash so that every earlier proof
    /// still verifies, and appends one ERASURE record (at `now_ms`, by
    /// `officer`) that says what went and why. Refuses a cut-off the rule
    /// refuses (future, inside the floor) whoever computed it. Returns the
    /// plan carried out and the seq of the ERASURE record.
    ///
    /// For an offline log (`isx audit prune`). Online, the gateway appends
    /// the ERASURE record through its own recorder first, then calls
    /// [`AuditLog::apply_prune`].
    pub fn prune(
        &self,
        rule: &Rule,
        cutoff: &Cutoff,
        now_ms: u64,
        officer: &str,
    ) -> Result<(PrunePlan, u64), AuditError> {
        rule.cutoff(Some(cutoff.at_ms), now_ms).map_err(AuditError::Retention)?;
        let plan = {
            let _indexer = self.indexer.lock().unwrap_or_else(|e| e.into_inner());
            self.index_locked()?;
            let plan = self.plan_locked(cutoff)?;
            self.remove_locked(&plan)?;
            plan
        };
        let erasure = AuditRecord {
            operation: Operation::Erasure as i32,
            officer: officer.to_owned(),
            outcome: Outcome::Ok as i32,
            detail: plan.detail(rule, officer),
            ..Default::default()
        };
        let seq = self.append(vec![erasure], now_ms)?[0];
        Ok((plan, seq))
    }

    /// Removes the bodies and index rows of `plan`'s records `[from, upto)`,
    /// keeping their hashes: a prune planned with [`AuditLog::plan_prune`]
    /// whose ERASURE record the caller has already appended (and made
    /// durable), so that no body goes without the record that says why.
    /// The caller keeps the plan valid meanwhile: nothing else prunes, and
    /// no hold is lifted. Refuses a plan whose prefix no longer starts
    /// where the log's does (another prune ran since).
    ///
    /// Safe beside appends: they write only beyond the log's size, and a
    /// pruned record keeps the hashes they read. It holds the indexer lock,
    /// so that the search rows are not rewritten under it.
    pub fn apply_prune(&self, plan: &PrunePlan) -> Result<(), AuditError> {
        let _indexer = self.indexer.lock().unwrap_or_else(|e| e.into_inner());
        let from = read_u64(&self.meta, "pruned_below")?;
        if from != plan.from || plan.upto > self.size() || plan.upto < plan.from {
            return Err(AuditError::Range(format!(
                "the prune planned for [{}, {}) no longer applies: the pruned prefix is now [0, {from}) of {} records",
                plan.from,
                plan.upto,
                self.size()
            )));
        }
        self.index_locked()?;
        self.remove_locked(plan)
    }

    /// Removes `plan`'s bodies and index rows and moves `pruned_below`, under
    /// the indexer lock (the index is up to date).
    fn remove_locked(&self, plan: &PrunePlan) -> Result<(), AuditError> {
        let mut listed = Vec::new();
        for seq in plan.from..plan.upto {
            let Some(value) = self.entries.get(be(seq))? else { break };
            let body = body_of(seq, &value).unwrap_or_default();
            let record =
                AuditRecord::decode(body).map_err(|e| AuditError::Integrity { seq, message: e.to_string() })?;
            let time = index::time_of(&record);
            listed.extend(index::prefixes(&record).into_iter().map(|p| (p, time, seq)));
            if listed.len() >= PRUNE_CHUNK {
                self.unlist(std::mem::take(&mut listed))?;
            }
            // Keep the hashes, drop the record.
            self.entries.insert(be(seq), &value[..hashes_len(seq)])?;
        }
        self.unlist(listed)?;
        if plan.upto > plan.from {
            self.meta.insert("pruned_below", &be(plan.upto)[..])?;
        }
        Ok(())
    }

    /// Gives the next hold id (`hold-1`, `hold-2`, …): never one given
    /// before, even if that hold was lifted. Not durable until the database
    /// is flushed.
    pub fn next_hold_id(&self) -> Result<String, AuditError> {
        let issued = self.meta.update_and_fetch("holds_issued", |old| {
            let n = old.and_then(|v| v.try_into().ok()).map(u64::from_be_bytes).unwrap_or(0);
            Some(be(n + 1).to_vec())
        })?;
        let n = issued.and_then(|v| v.as_ref().try_into().ok()).map(u64::from_be_bytes).unwrap_or(1);
        Ok(hold::id(n))
    }

    /// Stores `hold` (a new one, or one whose record seq is now known), in
    /// force from now on: every prune stops at the first record it covers.
    /// Not durable until the database is flushed.
    pub fn put_hold(&self, hold: &Hold) -> Result<(), AuditError> {
        let n = hold::number(&hold.id).ok_or_else(|| AuditError::Range(format!("{:?} is not a hold id", hold.id)))?;
        self.holds.insert(be(n), hold.encode_to_vec())?;
        Ok(())
    }

    /// Removes hold `id`, returning it (`None` if no such hold is in force).
    /// Not durable until the database is flushed.
    pub fn remove_hold(&self, id: &str) -> Result<Option<Hold>, AuditError> {
        let Some(n) = hold::number(id) else { return Ok(None) };
        Ok(self.holds.remove(be(n))?.and_then(|v| Hold::decode(v.as_ref()).ok()))
    }

    /// Hold `id`, if in force.
    pub fn hold(&self, id: &str) -> Result<Option<Hold>, AuditError> {
        let Some(n) = hold::number(id) else { return Ok(None) };
        Ok(self.holds.get(be(n))?.and_then(|v| Hold::decode(v.as_ref()).ok()))
    }

    /// Every hold in force, oldest first.
    pub fn holds(&self) -> Result<Vec<Hold>, AuditError> {
        self.holds
            .iter()
            .map(|item| {
                let (key, value) = item?;
                let n = u64::from_be_bytes(key.as_ref().try_into().unwrap_or([0; 8]));
                Hold::decode(value.as_ref()).map_err(|e| AuditError::Range(format!("stored hold {n}: {e}")))
            })
            .collect()
    }

    /// The plan, under the indexer lock (the index is up to date).
    ///
    /// Cost: one read and decode per record of the prefix, plus, per
    /// distinct alert those records name (memoised), one backwards scan of
    /// that alert's posting lists to its newest lifecycle record
    /// ([`AuditLog::alert_state`]): for an ended alert that is usually its
    /// ERASURE, the last record naming it, so one more read; for a live
    /// alert it reads back to its COLLECTION, and the prune stops there. So
    /// about O(prefix + alerts named) record reads, never the whole log.
    fn plan_locked(&self, cutoff: &Cutoff) -> Result<PrunePlan, AuditError> {
        let holds = self.holds()?;
        let from = read_u64(&self.meta, "pruned_below")?;
        let size = self.size();
        let mut states: std::collections::HashMap<String, AlertState> = Default::default();
        let mut plan = PrunePlan { from, upto: from, last_ms: None, kept: None, cutoff: *cutoff, size };
        while plan.upto < size {
            let seq = plan.upto;
            let Some(value) = self.entries.get(be(seq))? else { break };
            let record = AuditRecord::decode(body_of(seq, &value).unwrap_or_default())
                .map_err(|e| AuditError::Integrity { seq, message: e.to_string() })?;
            let mut state = |alert: &str| -> Result<AlertState, AuditError> {
                if let Some(s) = states.get(alert) {
                    return Ok(*s);
                }
                let s = self.alert_state(alert)?;
                states.insert(alert.to_owned(), s);
                Ok(s)
            };
            let kept = retention::judge(seq, &record, cutoff, &mut state)?.or_else(|| hold::held(seq, &record, &holds));
            if let Some(kept) = kept {
                plan.kept = Some(kept);
                break;
            }
            plan.last_ms = Some(index::time_of(&record));
            plan.upto += 1;
        }
        Ok(plan)
    }

    /// What the log says of `alert_id`: its newest lifecycle record (a
    /// COLLECTION OK, an ERASURE OK or a withdrawn publish whose own
    /// `alert_id` it is; [`retention::lifecycle`]), found by reading the
    /// alert's posting lists backwards. Pruned records are out of the index.
    fn alert_state(&self, alert_id: &str) -> Result<AlertState, AuditError> {
        let prefix = index::prefix(Kind::Alert, alert_id);
        let mut end = prefix.clone();
        end.push(0xff);
        let lists = Box::new(self.index.range(prefix..end).rev());
        let mut postings = Postings { lists, pending: Vec::new().into_iter(), reverse: true };
        // Bounded: each turn takes one seq off the alert's lists.
        while let Some(seq) = postings.next()? {
            let Some(record) = self.record(seq)? else { continue };
            if record.alert_id != alert_id {
                continue;
            }
            if let Some(state) = retention::lifecycle(&record) {
                return Ok(state);
            }
        }
        Ok(AlertState::Unknown)
    }

    /// Recomputes the tree from the records and compares it, hash by hash,
    /// with what is stored, then with every signed checkpoint; checks every
    /// index row. Names the first bad sequence number.
    pub fn check_integrity(&self, progress: &dyn Fn(u64, u64)) -> Result<IntegrityReport, AuditError> {
        self.index_pending()?;
        let size = self.size();
        let pruned_below = read_u64(&self.meta, "pruned_below")?;
        let stored = Stored(&self.entries);
        let mut report = IntegrityReport { size, ..Default::default() };
        let mut expected_rows = 0u64;
        let mut last_time = 0;
        for seq in 0..size {
            if seq % 4096 == 0 {
                progress(seq, size);
            }
            let value = match self.entries.get(be(seq))? {
                Some(value) => value,
                None if seq < pruned_below => {
                    return Err(AuditError::Integrity { seq, message: "stored hashes missing".into() });
                }
                None => return Err(AuditError::Integrity { seq, message: "record body missing (not pruned)".into() }),
            };
            let Some(body) = body_of(seq, &value) else {
                return Err(AuditError::Integrity { seq, message: "stored hashes missing".into() });
            };
            let have = &value[..hashes_len(seq)];
            let leaf = if !body.is_empty() {
                let record = AuditRecord::decode(body)
                    .map_err(|e| AuditError::Integrity { seq, message: format!("record does not decode: {e}") })?;
                if record.seq != seq {
                    return Err(AuditError::Integrity { seq, message: format!("record claims seq {}", record.seq) });
                }
                let time = index::time_of(&record);
                if time < last_time {
                    return Err(AuditError::Integrity { seq, message: "record time goes back".into() });
                }
                last_time = time;
                for prefix in index::prefixes(&record) {
                    let listed = self.containing(&prefix, time, seq)?;
                    if listed.is_none_or(|(_, seqs)| seqs.binary_search(&seq).is_err()) {
                        return Err(AuditError::Integrity {
                            seq,
                            message: "an index row of this record is missing".into(),
                        });
                    }
                    expected_rows += 1;
                }
                report.bodies_checked += 1;
                tlog::record_hash(body)
            } else if seq < pruned_below {
                Hash(have[..32].try_into().unwrap_or([0; 32]))
            } else {
                return Err(AuditError::Integrity { seq, message: "record body missing (not pruned)".into() });
            };
            let recomputed = tlog::stored_hashes_for_record_hash(seq, leaf, &stored)
                .map_err(|_| AuditError::Integrity { seq, message: "stored hashes missing".into() })?;
            if have.len() != recomputed.len() * 32 {
                return Err(AuditError::Integrity { seq, message: "stored hashes missing".into() });
            }
            if let Some(i) = recomputed.iter().zip(have.chunks(32)).position(|(a, b)| a.0[..] != *b) {
                let what = if i == 0 {
                    "leaf hash differs from the record"
                } else {
                    "a stored tree hash differs from the recomputed one"
                };
                return Err(AuditError::Integrity { seq, message: what.into() });
            }
        }
        progress(size, size);
        if self.entries.range(be(size)..).next().is_some() {
            return Err(AuditError::Integrity { seq: size, message: "records beyond the log's size".into() });
        }
        // Every list is well formed, names its first record, lists only
        // records in the log, and follows the previous list of its value.
        // With the lookups above, equal counts mean every entry is one of a
        // record's own values, listed once.
        let mut previous: Option<(Vec<u8>, u64)> = None;
        for item in self.index.iter() {
            let (key, value) = item?;
            let bad = |seq: u64, message: &str| AuditError::Integrity { seq: seq.min(size), message: message.into() };
            let (Some(prefix), Some(first), Some(seqs)) =
                (index::prefix_of(&key), index::seq_of(&key), index::decode(&value))
            else {
                return Err(bad(index::seq_of(&key).unwrap_or(0), "an index row is malformed"));
            };
            let last = seqs[seqs.len() - 1];
            if seqs[0] != first {
                return Err(bad(first.min(seqs[0]), "an index row does not match its record"));
            }
            if let Some(s) = seqs.iter().find(|s| **s >= size || **s < pruned_below) {
                return Err(bad(*s, "an index row points at no record"));
            }
            if let Some((p, prev_last)) = &previous
                && p.as_slice() == prefix
                && first <= *prev_last
            {
                return Err(bad(first, "an index row does not match its record"));
            }
            report.index_rows += seqs.len() as u64;
            previous = Some((prefix.to_vec(), last));
        }
        if report.index_rows != expected_rows {
            let seq = self.first_bad_row()?.unwrap_or(size);
            return Err(AuditError::Integrity { seq, message: "an index row does not match its record".into() });
        }
        // Every signed checkpoint must verify and match the recomputed tree.
        for (cp_size, note) in self.checkpoints()? {
            let cp = checkpoint::open(&note, &self.keys.verifier_key)
                .map_err(|source| AuditError::Checkpoint { size: cp_size, source })?;
            if cp.size != cp_size {
                return Err(AuditError::Checkpoint {
                    size: cp_size,
                    source: CheckpointError::Malformed(format!("stored under size {cp_size} but says {}", cp.size)),
                });
            }
            if cp.size > size {
                return Err(AuditError::Truncated { size, checkpoint: cp.size });
            }
            if tlog::tree_hash(cp.size, &stored)?.0 != cp.root {
                return Err(AuditError::Integrity {
                    seq: cp.size.saturating_sub(1),
                    message: format!("the tree of {} records differs from its signed checkpoint", cp.size),
                });
            }
            report.checkpoint_size = cp.size;
        }
        Ok(report)
    }

    /// The lowest record listed under a value it does not have.
    fn first_bad_row(&self) -> Result<Option<u64>, AuditError> {
        let mut first_bad: Option<u64> = None;
        for item in self.index.iter() {
            let (key, value) = item?;
            let prefix = index::prefix_of(&key).unwrap_or_default();
            for seq in index::decode(&value).unwrap_or_default() {
                let derived = self.record(seq)?.map(|r| index::prefixes(&r)).unwrap_or_default();
                if !derived.iter().any(|p| p.as_slice() == prefix) {
                    first_bad = Some(first_bad.map_or(seq, |b| b.min(seq)));
                }
            }
        }
        Ok(first_bad)
    }
}
