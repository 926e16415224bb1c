//! The append-only audit log in sled.
//!
//! # Trees (all prefixed `audit.`)
//! - `entries`: `seq` (u64 BE) → the record's exact protobuf bytes.
//! - `hashes`: stored-hash index (u64 BE, Go `tlog` layout) → 32-byte hash.
//!   Level 0 at `stored_hash_index(0, n)` is record n's leaf hash.
//! - `index`: search rows (see [`crate::index`]).
//! - `meta`: `size` (records in the tree) and `pruned_below` (bodies before
//!   this seq were removed by retention).
//! - `checkpoints`: tree size (u64 BE) → signed checkpoint note.
//!
//! `size` is written after a batch's records, hashes and rows; entries found
//! beyond it at open were never flushed with it and so never acknowledged,
//! and are removed.

use std::sync::Mutex;

use isx_core::timestamp::{from_unix_millis, to_unix_millis};
use isx_core::wire::{AuditEntry, AuditRecord, Operation, Outcome};
use prost::Message;
use tlog_tiles::tlog::{self, Hash, HashReader};
use tracing::warn;

use crate::checkpoint::{self, CheckpointError};
use crate::index::{self, Kind};
use crate::keys::AuditKeys;

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
}

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
    /// Acting node.
    pub node: Option<String>,
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
}

impl Filter {
    /// The index to scan: the most selective field given.
    fn primary(&self) -> (Kind, String) {
        if let Some(p) = &self.pseudonym {
            (Kind::Subject, p.clone())
        } else if let Some(r) = &self.request_id {
            (Kind::Request, r.clone())
        } else if let Some(a) = &self.alert_id {
            (Kind::Alert, a.clone())
        } else if let Some(o) = &self.officer {
            (Kind::Officer, o.clone())
        } else if let Some(n) = &self.node {
            (Kind::Node, n.clone())
        } else if let Some(p) = &self.purpose {
            (Kind::Purpose, p.clone())
        } else if let Some(op) = self.operation {
            (Kind::Operation, op.as_str_name().to_owned())
        } else {
            (Kind::Time, String::new())
        }
    }

    /// True if `r` matches every field.
    pub fn matches(&self, r: &AuditRecord) -> bool {
        let t = r.time.as_ref().map(to_unix_millis).unwrap_or(0);
        self.pseudonym.as_ref().is_none_or(|p| r.subject_pseudonyms.contains(p))
            && self.node.as_ref().is_none_or(|n| *n == r.node)
            && self.officer.as_ref().is_none_or(|o| *o == r.officer)
            && self.alert_id.as_ref().is_none_or(|a| *a == r.alert_id || r.hits.iter().any(|h| h.alert_id == *a))
            && self.request_id.as_ref().is_none_or(|q| *q == r.request_id)
            && self.operation.is_none_or(|op| op == r.operation())
            && self.purpose.as_ref().is_none_or(|p| *p == r.purpose)
            && self.from_ms.is_none_or(|f| t >= f)
            && self.to_ms.is_none_or(|to| t <= to)
    }
}

/// Reads stored hashes from the `hashes` tree.
struct Stored<'a>(&'a sled::Tree);

impl HashReader for Stored<'_> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog::Error> {
        indexes
            .iter()
            .map(|i| match self.0.get(i.to_be_bytes()) {
                Ok(Some(v)) if v.len() == 32 => Ok(Hash(v.as_ref().try_into().expect("32 bytes"))),
                _ => Err(tlog::Error::IndexesNotInTree),
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
    hashes: sled::Tree,
    index: sled::Tree,
    meta: sled::Tree,
    checkpoints: sled::Tree,
    keys: AuditKeys,
    /// The size and frontier; held while appending so that seqs and hashes are assigned in order.
    size: Mutex<AppendState>,
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
            hashes: db.open_tree("audit.hashes")?,
            index: db.open_tree("audit.index")?,
            meta: db.open_tree("audit.meta")?,
            checkpoints: db.open_tree("audit.checkpoints")?,
            db: db.clone(),
            keys,
            size: Mutex::new(AppendState::default()),
        };
        let size = read_u64(&log.meta, "size")?;
        let leftovers = log.remove_leftovers(size)?;
        log.size.lock().unwrap_or_else(|e| e.into_inner()).size = size;
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
    /// Not durable until the database is flushed.
    pub fn append(&self, records: Vec<AuditRecord>, now_ms: u64) -> Result<Vec<u64>, AuditError> {
        let mut state = self.size.lock().unwrap_or_else(|e| e.into_inner());
        let mut seqs = Vec::with_capacity(records.len());
        let mut n = state.size;
        let (mut entries, mut hashes, mut rows) =
            (sled::Batch::default(), sled::Batch::default(), sled::Batch::default());
        for mut record in records {
            record.version = RECORD_VERSION;
            record.seq = n;
            record.time = Some(from_unix_millis(now_ms));
            let body = record.encode_to_vec();
            let stored =
                tlog::stored_hashes(n, &body, &Frontier { cache: &state.frontier, stored: Stored(&self.hashes) })?;
            // The left siblings just read are never read again; the new left
            // children will be read once, when their subtree completes.
            for i in 0..stored.len().saturating_sub(1) {
                state.frontier.remove(&tlog::stored_hash_index(i as u8, (n >> i) - 1));
            }
            let base = tlog::stored_hash_index(0, n);
            for (i, h) in stored.iter().enumerate() {
                hashes.insert(&be(base + i as u64), &h.0[..]);
                if (n >> i).is_multiple_of(2) {
                    state.frontier.insert(base + i as u64, *h);
                }
            }
            for row in index::rows(&record) {
                rows.insert(row, &[][..]);
            }
            entries.insert(&be(n), body);
            seqs.push(n);
            n += 1;
        }
        // The size goes last: anything beyond it at open was never flushed with it.
        self.entries.apply_batch(entries)?;
        self.hashes.apply_batch(hashes)?;
        self.index.apply_batch(rows)?;
        self.meta.insert("size", &be(n)[..])?;
        state.size = n;
        Ok(seqs)
    }

    fn remove_leftovers(&self, size: u64) -> Result<u64, AuditError> {
        let mut removed = 0;
        let leftovers: Vec<(sled::IVec, sled::IVec)> = self.entries.range(be(size)..).collect::<Result<_, _>>()?;
        for (key, body) in leftovers {
            if let Ok(record) = AuditRecord::decode(&*body) {
                for row in index::rows(&record) {
                    self.index.remove(row)?;
                }
            }
            self.entries.remove(key)?;
            removed += 1;
        }
        let first_hash = tlog::stored_hash_count(size);
        let stale: Vec<sled::IVec> = self.hashes.range(be(first_hash)..).keys().collect::<Result<_, _>>()?;
        for key in stale {
            self.hashes.remove(key)?;
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
        Ok(tlog::tree_hash(size, &Stored(&self.hashes))?.0)
    }

    /// The stored leaf hash of record `seq`.
    pub fn leaf(&self, seq: u64) -> Result<[u8; 32], AuditError> {
        let h = Stored(&self.hashes).read_hashes(&[tlog::stored_hash_index(0, seq)])?;
        Ok(h[0].0)
    }

    /// Record `seq` as served: body, leaf hash, pruned flag, decoded record.
    pub fn entry(&self, seq: u64) -> Result<AuditEntry, AuditError> {
        if seq >= self.size() {
            return Err(AuditError::Range(format!("no record {seq}: the log holds {}", self.size())));
        }
        let leaf = self.leaf(seq)?;
        Ok(match self.entries.get(be(seq))? {
            Some(body) => AuditEntry {
                seq,
                record: AuditRecord::decode(&*body).ok(),
                body: body.to_vec(),
                leaf_hash: leaf.to_vec(),
                ..Default::default()
            },
            None => AuditEntry { seq, leaf_hash: leaf.to_vec(), pruned: true, ..Default::default() },
        })
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
        Ok(tlog::prove_record(size, seq, &Stored(&self.hashes))?.into_iter().map(|h| h.0).collect())
    }

    /// A consistency proof from the tree of `first` records to that of `second`.
    pub fn consistency_proof(&self, first: u64, second: u64) -> Result<Vec<[u8; 32]>, AuditError> {
        if first > second || second > self.size() {
            return Err(AuditError::Range(format!(
                "no consistency proof from {first} to {second} (log size {})",
                self.size()
            )));
        }
        Ok(tlog::prove_tree(second, first, &Stored(&self.hashes))?.into_iter().map(|h| h.0).collect())
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
    /// `None` from the start), and whether more match.
    pub fn search(
        &self,
        filter: &Filter,
        limit: usize,
        after_seq: Option<u64>,
    ) -> Result<(Vec<AuditEntry>, bool), AuditError> {
        let (kind, value) = filter.primary();
        let prefix = index::prefix(kind, &value);
        let mut start = prefix.clone();
        start.extend_from_slice(&filter.from_ms.unwrap_or(0).to_be_bytes());
        let mut end = prefix;
        end.extend_from_slice(&filter.to_ms.unwrap_or(u64::MAX).to_be_bytes());
        end.extend_from_slice(&u64::MAX.to_be_bytes());
        let mut out = Vec::new();
        for row in self.index.range(start..=end).keys() {
            let row = row?;
            let Some(seq) = index::seq_of(&row) else { continue };
            if after_seq.is_some_and(|a| seq <= a) {
                continue;
            }
            let entry = self.entry(seq)?;
            if entry.record.as_ref().is_some_and(|r| filter.matches(r)) {
                if out.len() == limit {
                    return Ok((out, true));
                }
                out.push(entry);
            }
        }
        Ok((out, false))
    }

    /// Removes the bodies and index rows of every record before `before_ms`
    /// (keeping all hashes, so every proof still verifies), and appends one
    /// erasure record. Returns how many bodies were removed.
    pub fn prune_before(&self, before_ms: u64, now_ms: u64, officer: &str) -> Result<u64, AuditError> {
        let from = read_u64(&self.meta, "pruned_below")?;
        let mut upto = from;
        let size = self.size();
        while upto < size {
            let Some(body) = self.entries.get(be(upto))? else { break };
            let record =
                AuditRecord::decode(&*body).map_err(|e| AuditError::Integrity { seq: upto, message: e.to_string() })?;
            if record.time.as_ref().map(to_unix_millis).unwrap_or(0) >= before_ms {
                break;
            }
            for row in index::rows(&record) {
                self.index.remove(row)?;
            }
            self.entries.remove(be(upto))?;
            upto += 1;
        }
        self.meta.insert("pruned_below", &be(upto)[..])?;
        let erasure = AuditRecord {
            operation: Operation::Erasure as i32,
            officer: officer.to_owned(),
            outcome: Outcome::Ok as i32,
            detail: format!(
                "retention: pruned audit record bodies [{from}, {upto}) created before {before_ms} ms; their hashes stay"
            ),
            ..Default::default()
        };
        self.append(vec![erasure], now_ms)?;
        Ok(upto - from)
    }

    /// Recomputes the tree from the records and compares it, hash by hash,
    /// with what is stored, then with every signed checkpoint; checks every
    /// index row. Names the first bad sequence number.
    pub fn check_integrity(&self, progress: &dyn Fn(u64, u64)) -> Result<IntegrityReport, AuditError> {
        let size = self.size();
        let pruned_below = read_u64(&self.meta, "pruned_below")?;
        let stored = Stored(&self.hashes);
        let mut report = IntegrityReport { size, ..Default::default() };
        let mut expected_rows = 0u64;
        for seq in 0..size {
            if seq % 4096 == 0 {
                progress(seq, size);
            }
            let base = tlog::stored_hash_index(0, seq);
            let leaf = match self.entries.get(be(seq))? {
                Some(body) => {
                    let record = AuditRecord::decode(&*body)
                        .map_err(|e| AuditError::Integrity { seq, message: format!("record does not decode: {e}") })?;
                    if record.seq != seq {
                        return Err(AuditError::Integrity {
                            seq,
                            message: format!("record claims seq {}", record.seq),
                        });
                    }
                    for row in index::rows(&record) {
                        if !self.index.contains_key(&row)? {
                            return Err(AuditError::Integrity {
                                seq,
                                message: "an index row of this record is missing".into(),
                            });
                        }
                        expected_rows += 1;
                    }
                    report.bodies_checked += 1;
                    tlog::record_hash(&body)
                }
                None if seq < pruned_below => stored
                    .read_hashes(&[base])
                    .map_err(|_| AuditError::Integrity { seq, message: "leaf hash missing".into() })?[0],
                None => return Err(AuditError::Integrity { seq, message: "record body missing (not pruned)".into() }),
            };
            let recomputed = tlog::stored_hashes_for_record_hash(seq, leaf, &stored)
                .map_err(|_| AuditError::Integrity { seq, message: "stored hashes missing".into() })?;
            let have = stored
                .read_hashes(&(base..base + recomputed.len() as u64).collect::<Vec<_>>())
                .map_err(|_| AuditError::Integrity { seq, message: "stored hashes missing".into() })?;
            if let Some(i) = recomputed.iter().zip(&have).position(|(a, b)| a != b) {
                let what = if i == 0 {
                    "leaf hash differs from the record"
                } else {
                    "a stored tree hash differs from the recomputed one"
                };
                return Err(AuditError::Integrity { seq, message: what.into() });
            }
        }
        progress(size, size);
        if self.hashes.range(be(tlog::stored_hash_count(size))..).next().is_some() {
            return Err(AuditError::Integrity { seq: size, message: "stored hashes beyond the log's size".into() });
        }
        // Every index row must belong to a record that derives it.
        for row in self.index.iter().keys() {
            let row = row?;
            report.index_rows += 1;
            let seq = index::seq_of(&row).unwrap_or(u64::MAX);
            if seq >= size || seq < pruned_below {
                return Err(AuditError::Integrity {
                    seq: seq.min(size),
                    message: "an index row points at no record".into(),
                });
            }
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

    /// The first record one of whose index rows is not derived from it.
    fn first_bad_row(&self) -> Result<Option<u64>, AuditError> {
        for row in self.index.iter().keys() {
            let row = row?;
            let seq = index::seq_of(&row).unwrap_or(0);
            let derived = match self.entries.get(be(seq))? {
                Some(body) => AuditRecord::decode(&*body).map(|r| index::rows(&r)).unwrap_or_default(),
                None => vec![],
            };
            if !derived.iter().any(|r| *r == *row) {
                return Ok(Some(seq));
            }
        }
        Ok(None)
    }
}
