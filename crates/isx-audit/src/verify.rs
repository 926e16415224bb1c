//! Offline verification: checkpoints, entries, proofs, whole logs and bundles.
//!
//! Nothing here trusts the gateway: every hash is recomputed from the record
//! bytes, every checkpoint signature is checked with the verifier key, and
//! the root is recomputed independently of the gateway's stored hashes with
//! [`RootBuilder`] (RFC 6962 §2.1, streaming, O(log n) memory).
//!
//! Whom a verification trusts is a [`Trust`]: the log key pinned with
//! `--key`, a C2SP witness policy (the log's key and the witnesses' keys and
//! quorum), both (they must agree), or neither (the key the checkpoint
//! presents, which [`Trust::pinned`] reports so that callers can warn).
//! [`Trust::check`] is the one check of a checkpoint for every path: live
//! verification, bundles, and offline fork detection ([`compare`]).

use isx_core::wire::{AuditBundle, AuditEntry, AuditRecord, Checkpoint};
use prost::Message;
use sha2::Digest as _;
use tlog_tiles::tlog::{self, Hash};

use crate::checkpoint::{self, CheckpointError, Verified};
use crate::policy::{PolicyError, WitnessPolicy};
use crate::proof::TlogProof;

/// The newest bundle version this verifier reads: 2 carries a C2SP
/// `tlog-proof` per entry; 1 does not.
pub const BUNDLE_VERSION: u32 = 2;

/// Why verification failed. Each variant names what to look at.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The checkpoint does not verify or parse.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// The checkpoint is signed by a key other than the one trusted.
    #[error("checkpoint verifier key {got} is not the trusted key {want}")]
    UntrustedKey {
        /// The key in the checkpoint.
        got: String,
        /// The trusted key.
        want: String,
    },
    /// An entry's body does not hash to its leaf hash, or its record is wrong.
    #[error("entry {seq}: {message}")]
    Entry {
        /// The entry.
        seq: u64,
        /// What is wrong.
        message: String,
    },
    /// The recomputed root differs from the checkpoint's.
    #[error("the {size} records do not hash to the checkpoint's root")]
    Root {
        /// The tree size.
        size: u64,
    },
    /// Two checkpoints of the same size name different roots: the log forked.
    #[error("two different checkpoints for tree size {size}: the log was rewritten or forked")]
    Fork {
        /// The size.
        size: u64,
    },
    /// A newer checkpoint is smaller than an older one.
    #[error("checkpoint of size {new} is older than the saved one of size {old}: the log shrank")]
    Shrunk {
        /// The saved size.
        old: u64,
        /// The new size.
        new: u64,
    },
    /// A consistency proof does not verify.
    #[error("the tree of {new} records is not an extension of the saved tree of {old}: consistency proof fails")]
    Inconsistent {
        /// The saved size.
        old: u64,
        /// The new size.
        new: u64,
    },
    /// The checkpoint does not satisfy the witness policy: not signed by a
    /// listed log, a bad cosignature, or too few witnesses.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// The pinned key and the witness policy name different log keys.
    #[error(
        "the pinned log key {key} is not the witness policy's log key for {origin} ({policy}): give one, or make them agree"
    )]
    KeyMismatch {
        /// The pinned key.
        key: String,
        /// Its origin (the key's name).
        origin: String,
        /// What the policy lists for that origin.
        policy: String,
    },
    /// Two checkpoints signed by the log for the same size with different
    /// roots: the log showed two different histories (a fork, a split view).
    #[error("{0}")]
    Forked(Box<Fork>),
    /// Two checkpoints of different logs cannot be compared.
    #[error("{first_source} is a checkpoint of {first}, {second_source} of {second}: not the same log")]
    DifferentLogs {
        /// The first origin.
        first: String,
        /// Where it was read.
        first_source: String,
        /// The second origin.
        second: String,
        /// Where it was read.
        second_source: String,
    },
    /// Entries are missing or out of order.
    #[error("{0}")]
    Shape(String),
    /// A pruned entry follows a record that was not pruned: retention
    /// removes only a prefix of the log.
    #[error("entry {seq} is pruned, but entry {after} before it is not: retention prunes only a prefix of the log")]
    PrunedGap {
        /// The pruned entry.
        seq: u64,
        /// An earlier entry that kept its body.
        after: u64,
    },
    /// Pruned entries that no retention ERASURE record accounts for.
    #[error(
        "entries [0, {pruned}) are pruned, but the log's retention erasure records account only for [0, {covered})"
    )]
    PrunedUncovered {
        /// The pruned prefix.
        pruned: u64,
        /// What the erasure records cover from 0.
        covered: u64,
    },
}

/// Two checkpoints of one log at one size with different roots.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "FORK: {origin} signed two different trees of size {size}: root {first} in {first_source} and root {second} in {second_source}"
)]
pub struct Fork {
    /// The log.
    pub origin: String,
    /// The size both claim.
    pub size: u64,
    /// One root (hex).
    pub first: String,
    /// Where it was read.
    pub first_source: String,
    /// The other root (hex).
    pub second: String,
    /// Where it was read.
    pub second_source: String,
}

/// The start of a retention ERASURE record's detail: the pruned prefix
/// `[0, upto)`, as [`pruned_range`] reads it back. The one place that
/// writes it ([`crate::retention::PrunePlan::detail`] appends what went and why).
pub fn pruned_prefix(upto: u64) -> String {
    format!("retention: audit record bodies [0, {upto}) are pruned")
}

/// The range of seqs `[from, upto)` a retention ERASURE record says it
/// pruned (`retention: audit record bodies [0, N) are pruned, ...`, or the
/// older `retention: pruned audit record bodies [A, B) ...`).
pub fn pruned_range(record: &AuditRecord) -> Option<(u64, u64)> {
    if record.operation() != isx_core::wire::Operation::Erasure || !record.detail.starts_with("retention:") {
        return None;
    }
    let open = record.detail.find('[')?;
    let close = open + record.detail[open..].find(')')?;
    let (from, upto) = record.detail[open + 1..close].split_once(", ")?;
    Some((from.trim().parse().ok()?, upto.trim().parse().ok()?))
}

/// Builds an RFC 6962 root from leaf hashes in order, keeping only the
/// perfect subtrees of the compact range (O(log n) memory).
#[derive(Debug, Default, Clone)]
pub struct RootBuilder {
    /// (height, hash) of complete subtrees, largest first.
    stack: Vec<(u32, [u8; 32])>,
    count: u64,
}

impl RootBuilder {
    /// Adds the next leaf hash.
    pub fn push(&mut self, leaf: [u8; 32]) {
        let mut node = (0u32, leaf);
        while let Some(&(h, left)) = self.stack.last() {
            if h != node.0 {
                break;
            }
            self.stack.pop();
            node = (h + 1, tlog::node_hash(Hash(left), Hash(node.1)).0);
        }
        self.stack.push(node);
        self.count += 1;
    }

    /// Leaves added.
    pub fn len(&self) -> u64 {
        self.count
    }

    /// True if no leaf was added.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The root of the leaves so far (the SHA-256 of the empty string if none).
    pub fn root(&self) -> [u8; 32] {
        let mut iter = self.stack.iter().rev();
        let Some(&(_, mut h)) = iter.next() else { return tlog::EMPTY_HASH.0 };
        for &(_, left) in iter {
            h = tlog::node_hash(Hash(left), Hash(h)).0;
        }
        h
    }
}

/// Verifies a checkpoint message; if `trusted_key` is given, it must be the key used.
pub fn checkpoint(cp: &Checkpoint, trusted_key: Option<&str>) -> Result<Verified, VerifyError> {
    if let Some(want) = trusted_key
        && want.trim() != cp.verifier_key.trim()
    {
        return Err(VerifyError::UntrustedKey { got: cp.verifier_key.clone(), want: want.trim().to_owned() });
    }
    let v = checkpoint::open(&cp.note, &cp.verifier_key)?;
    if v.size != cp.tree_size || v.root.as_slice() != cp.root_hash.as_slice() {
        return Err(VerifyError::Checkpoint(CheckpointError::Malformed(
            "the fields differ from the signed note".into(),
        )));
    }
    Ok(v)
}

/// Whom a verification trusts for the log's key and its witnesses.
#[derive(Debug, Clone, Default)]
pub struct Trust {
    key: Option<String>,
    policy: Option<WitnessPolicy>,
}

/// A checkpoint that passed [`Trust::check`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attested {
    /// The checkpoint, its log signature verified.
    pub checkpoint: Verified,
    /// The policy's witnesses whose cosignatures verified, with their
    /// timestamps (Unix seconds); empty without a policy.
    pub cosigners: Vec<(String, u64)>,
    /// The policy's quorum in words (`None` without a policy).
    pub quorum: Option<String>,
    /// True if the log key came from `--key` or the policy, not from the
    /// checkpoint itself.
    pub pinned: bool,
}

impl Trust {
    /// Trusts `key` (a pinned log verifier key), `policy`, both or neither.
    /// Both must name the same key for the key's origin, unless the policy
    /// lists no log at all (then the key is the log's and the policy only
    /// names the witnesses).
    pub fn new(key: Option<String>, policy: Option<WitnessPolicy>) -> Result<Self, VerifyError> {
        let key = key.map(|k| k.trim().to_owned());
        if let (Some(key), Some(policy)) = (&key, &policy)
            && !policy.logs().is_empty()
        {
            let origin = crate::keys::key_name(key).to_owned();
            match policy.log_key(&origin) {
                Some(listed) if listed == key => {}
                listed => {
                    return Err(VerifyError::KeyMismatch {
                        key: key.clone(),
                        policy: match listed {
                            Some(listed) => format!("the policy lists {listed}"),
                            None => format!(
                                "the policy lists no log of that origin, only {}",
                                policy.logs().iter().map(|l| l.vkey.as_str()).collect::<Vec<_>>().join(", ")
                            ),
                        },
                        origin,
                    });
                }
            }
        }
        Ok(Self { key, policy })
    }

    /// True if the log key is pinned (by a key or a policy): without it a
    /// verification only shows that the log agrees with itself.
    pub fn pinned(&self) -> bool {
        self.key.is_some() || self.policy.as_ref().is_some_and(|p| !p.logs().is_empty())
    }

    /// The witness policy, if any.
    pub fn policy(&self) -> Option<&WitnessPolicy> {
        self.policy.as_ref()
    }

    /// The log key to hand a live verification before the origin is known:
    /// the pinned key, or the policy's only log.
    pub fn live_key(&self) -> Option<String> {
        self.key.clone().or_else(|| match self.policy.as_ref().map(WitnessPolicy::logs) {
            Some([one]) => Some(one.vkey.clone()),
            _ => None,
        })
    }

    /// The log key to verify a checkpoint of `origin` with, if pinned.
    pub fn log_key(&self, origin: &str) -> Option<&str> {
        self.key.as_deref().or_else(|| self.policy.as_ref().and_then(|p| p.log_key(origin)))
    }

    /// Checks a checkpoint's log signature only: with the pinned key (or
    /// the one it presents, if none is pinned); a policy that lists logs
    /// but none of this origin refuses it, naming what it lists.
    pub fn check_signature(&self, cp: &Checkpoint) -> Result<Verified, VerifyError> {
        // The origin of the note itself, not of the unsigned field.
        let origin = signed_note::Note::from_bytes(cp.note.as_bytes())
            .ok()
            .and_then(|n| tlog_tiles::checkpoint::Checkpoint::from_bytes(n.text()).ok())
            .map(|b| b.origin().to_owned())
            .unwrap_or_default();
        let key = self.log_key(&origin);
        if key.is_none()
            && let Some(p) = &self.policy
            && !p.logs().is_empty()
        {
            // No listed log has this origin: this fails, naming them.
            p.check(&cp.note)?;
        }
        checkpoint(cp, key)
    }

    /// Checks a checkpoint: its log signature ([`Trust::check_signature`]),
    /// and with a policy, that the policy's log signed it, every listed
    /// witness's cosignature verifies, and the quorum is met.
    pub fn check(&self, cp: &Checkpoint) -> Result<Attested, VerifyError> {
        let verified = self.check_signature(cp)?;
        let cosigners = match &self.policy {
            None => vec![],
            Some(p) if p.logs().is_empty() => {
                let note = signed_note::Note::from_bytes(cp.note.as_bytes())
                    .map_err(|e| PolicyError::Malformed(e.to_string()))?;
                p.quorum_of(&note, verified.size)?
            }
            Some(p) => p.check(&cp.note)?.cosigners,
        };
        Ok(Attested {
            checkpoint: verified,
            cosigners,
            quorum: self.policy.as_ref().map(WitnessPolicy::describe_quorum),
            pinned: self.pinned(),
        })
    }
}

/// Compares two checkpoints of one log offline (each already checked with
/// [`Trust::check`]): the same size with different roots is a fork.
/// Different sizes cannot be compared without a consistency proof or the
/// leaves ([`prefix_root`]); that is not an error here.
pub fn compare(a: &Verified, a_source: &str, b: &Verified, b_source: &str) -> Result<(), VerifyError> {
    if a.origin != b.origin {
        return Err(VerifyError::DifferentLogs {
            first: a.origin.clone(),
            first_source: a_source.to_owned(),
            second: b.origin.clone(),
            second_source: b_source.to_owned(),
        });
    }
    if a.size == b.size && a.root != b.root {
        return Err(VerifyError::Forked(Box::new(Fork {
            origin: a.origin.clone(),
            size: a.size,
            first: hex::encode(a.root),
            first_source: a_source.to_owned(),
            second: hex::encode(b.root),
            second_source: b_source.to_owned(),
        })));
    }
    Ok(())
}

/// The root of the first `size` leaves, if `entries` (checked ones, in seq
/// order) hold every one of them: a bundle of the whole log then shows
/// what the log's tree of `size` was, to compare with a smaller checkpoint.
pub fn prefix_root(entries: &[AuditEntry], size: u64) -> Option<[u8; 32]> {
    let mut root = RootBuilder::default();
    for (i, e) in entries.iter().take(size as usize).enumerate() {
        if e.seq != i as u64 {
            return None;
        }
        root.push(e.leaf_hash.as_slice().try_into().ok()?);
    }
    (root.len() == size).then(|| root.root())
}

/// Checks one entry on its own: its body hashes to its leaf hash, its record
/// sits at its seq, and the decoded copy (if any) is the body's.
/// Returns the leaf hash.
pub fn entry(e: &AuditEntry) -> Result<[u8; 32], VerifyError> {
    entry_record(e).map(|(leaf, _)| leaf)
}

/// As [`entry`], also returning the record decoded from the hashed body
/// (`None` for a pruned or withheld entry: its leaf hash is all there is).
fn entry_record(e: &AuditEntry) -> Result<([u8; 32], Option<AuditRecord>), VerifyError> {
    let bad = |message: &str| VerifyError::Entry { seq: e.seq, message: message.to_owned() };
    let leaf: [u8; 32] = e.leaf_hash.as_slice().try_into().map_err(|_| bad("leaf hash is not 32 bytes"))?;
    if e.pruned && e.withheld {
        return Err(bad("an entry is either pruned or withheld, not both"));
    }
    if e.pruned || e.withheld {
        let what = if e.pruned { "pruned" } else { "withheld" };
        return if !e.body.is_empty() {
            Err(bad(&format!("{what} entry carries a body")))
        } else if e.record.is_some() {
            Err(bad(&format!("{what} entry carries a record")))
        } else {
            Ok((leaf, None))
        };
    }
    if tlog::record_hash(&e.body).0 != leaf {
        return Err(bad("body does not hash to its leaf hash (record altered)"));
    }
    let record = AuditRecord::decode(e.body.as_slice()).map_err(|_| bad("body is not an AuditRecord"))?;
    if record.seq != e.seq {
        return Err(bad(&format!("record says seq {}", record.seq)));
    }
    // The decoded copy is a convenience; it must say what the hashed bytes say.
    if e.record.as_ref().is_some_and(|shown| *shown != record) {
        return Err(bad("the decoded record differs from the hashed body (record altered)"));
    }
    Ok((leaf, Some(record)))
}

/// Checks an entry's inclusion proof against a verified checkpoint.
pub fn inclusion(e: &AuditEntry, cp: &Verified) -> Result<(), VerifyError> {
    let leaf = entry(e)?;
    if e.proof_tree_size != cp.size {
        return Err(VerifyError::Entry {
            seq: e.seq,
            message: format!("proof is for tree size {}, checkpoint is {}", e.proof_tree_size, cp.size),
        });
    }
    let proof: Vec<Hash> = e
        .proof
        .iter()
        .map(|h| h.as_slice().try_into().map(Hash))
        .collect::<Result<_, _>>()
        .map_err(|_| VerifyError::Entry { seq: e.seq, message: "proof hash is not 32 bytes".into() })?;
    tlog::check_record(&proof, cp.size, Hash(cp.root), e.seq, Hash(leaf)).map_err(|_| VerifyError::Entry {
        seq: e.seq,
        message: "inclusion proof does not verify against the checkpoint".into(),
    })
}

/// Checks that `new` extends `old` with `proof`; refuses a fork or a shrink.
pub fn consistency(old: &Verified, new: &Verified, proof: &[Vec<u8>]) -> Result<(), VerifyError> {
    if new.size < old.size {
        return Err(VerifyError::Shrunk { old: old.size, new: new.size });
    }
    if new.size == old.size {
        return if new.root == old.root { Ok(()) } else { Err(VerifyError::Fork { size: new.size }) };
    }
    if old.size == 0 {
        // Every tree extends the empty one, whose root is SHA-256 of nothing.
        let empty: [u8; 32] = sha2::Sha256::digest([]).into();
        return if old.root == empty { Ok(()) } else { Err(VerifyError::Fork { size: 0 }) };
    }
    let proof: Vec<Hash> = proof
        .iter()
        .map(|h| h.as_slice().try_into().map(Hash))
        .collect::<Result<_, _>>()
        .map_err(|_| VerifyError::Inconsistent { old: old.size, new: new.size })?;
    tlog::check_tree(&proof, new.size, Hash(new.root), old.size, Hash(old.root))
        .map_err(|_| VerifyError::Inconsistent { old: old.size, new: new.size })
}

/// Streams a whole log (entries 0, 1, 2, ... in order) against a checkpoint.
#[derive(Debug, Default)]
pub struct LogVerifier {
    root: RootBuilder,
    /// Entries whose body was checked (not pruned).
    pub bodies: u64,
    /// Entries that were pruned (leaf hash only).
    pub pruned: u64,
    /// Entries withheld as outside the reader's scope (leaf hash only; the
    /// record exists, so they count as kept for the pruned-prefix rule).
    pub withheld: u64,
    /// The first entry that kept its body.
    first_body: Option<u64>,
    /// The ranges retention erasure records say they pruned.
    pruned_ranges: Vec<(u64, u64)>,
}

impl LogVerifier {
    /// Checks and adds the next entry.
    pub fn push(&mut self, e: &AuditEntry) -> Result<(), VerifyError> {
        if e.seq != self.root.len() {
            return Err(VerifyError::Shape(format!("expected entry {}, got {}", self.root.len(), e.seq)));
        }
        let (leaf, record) = entry_record(e)?;
        if e.pruned {
            if let Some(after) = self.first_body {
                return Err(VerifyError::PrunedGap { seq: e.seq, after });
            }
            self.pruned += 1;
        } else if e.withheld {
            self.first_body.get_or_insert(e.seq);
            self.withheld += 1;
        } else {
            self.first_body.get_or_insert(e.seq);
            self.bodies += 1;
            if let Some(range) = record.as_ref().and_then(pruned_range) {
                self.pruned_ranges.push(range);
            }
        }
        self.root.push(leaf);
        Ok(())
    }

    /// How far from 0 the retention erasure records' ranges reach, joined.
    fn covered(&self) -> u64 {
        let mut ranges = self.pruned_ranges.clone();
        ranges.sort();
        let mut reach = 0;
        for (from, upto) in ranges {
            if from <= reach {
                reach = reach.max(upto);
            }
        }
        reach
    }

    /// Entries added.
    pub fn len(&self) -> u64 {
        self.root.len()
    }

    /// True if no entry was added.
    pub fn is_empty(&self) -> bool {
        self.root.is_empty()
    }

    /// Compares the recomputed root with the checkpoint.
    pub fn finish(&self, cp: &Verified) -> Result<(), VerifyError> {
        if self.root.len() != cp.size {
            return Err(VerifyError::Shape(format!("{} entries for a checkpoint of {}", self.root.len(), cp.size)));
        }
        if self.root.root() != cp.root {
            return Err(VerifyError::Root { size: cp.size });
        }
        let covered = self.covered();
        if self.pruned > covered {
            return Err(VerifyError::PrunedUncovered { pruned: self.pruned, covered });
        }
        Ok(())
    }
}

/// What a bundle verification covered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleReport {
    /// The checkpoint.
    pub checkpoint: Verified,
    /// Its cosigners, quorum and whether its key was pinned.
    pub attested: Attested,
    /// Entries with a verified inclusion proof.
    pub entries: u64,
    /// Of them, entries withheld as outside the exporter's scope (their
    /// leaf hash is what the proof checks).
    pub withheld: u64,
    /// Entries whose C2SP tlog-proof was checked (all of them from version 2).
    pub tlog_proofs: u64,
}

/// Checks entry `e`'s C2SP tlog-proof in a bundle of `version` whose
/// checkpoint is `note`: it must be exactly its proof in that checkpoint.
/// Returns whether there was one to check (always from version 2).
pub fn tlog_proof(version: u32, e: &AuditEntry, note: &str) -> Result<bool, VerifyError> {
    if version < 2 && e.tlog_proof.is_empty() {
        return Ok(false);
    }
    if e.tlog_proof != TlogProof::of_entry(e, note).to_text() {
        return Err(VerifyError::Entry {
            seq: e.seq,
            message: "its tlog-proof is not its proof in the bundle's checkpoint (missing or altered)".into(),
        });
    }
    Ok(true)
}

/// Verifies an export bundle offline: the checkpoint with `trust`, each
/// entry's body and inclusion proof, and each entry's tlog-proof, which
/// must be exactly that proof in the bundle's checkpoint note.
pub fn bundle(b: &AuditBundle, trust: &Trust, progress: &dyn Fn(u64, u64)) -> Result<BundleReport, VerifyError> {
    if b.version > BUNDLE_VERSION {
        return Err(VerifyError::Shape(format!(
            "bundle version {} is newer than this verifier reads ({BUNDLE_VERSION}): update isx",
            b.version
        )));
    }
    let cp = b.checkpoint.as_ref().ok_or_else(|| VerifyError::Shape("bundle has no checkpoint".into()))?;
    let attested = trust.check(cp)?;
    let verified = attested.checkpoint.clone();
    let mut seen = std::collections::HashSet::new();
    let total = b.entries.len() as u64;
    let mut tlog_proofs = 0;
    for (i, e) in b.entries.iter().enumerate() {
        if i % 1024 == 0 {
            progress(i as u64, total);
        }
        if !seen.insert(e.seq) {
            return Err(VerifyError::Shape(format!("entry {} appears twice", e.seq)));
        }
        inclusion(e, &verified)?;
        if tlog_proof(b.version, e, &cp.note)? {
            tlog_proofs += 1;
        }
    }
    progress(total, total);
    let withheld = b.entries.iter().filter(|e| e.withheld).count() as u64;
    Ok(BundleReport { checkpoint: verified, attested, entries: total, withheld, tlog_proofs })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6962 §2.1 MTH, written from the RFC text: the reference implementation.
    fn mth(leaves: &[Vec<u8>]) -> [u8; 32] {
        use sha2::{Digest, Sha256};
        match leaves.len() {
            0 => Sha256::digest(b"").into(),
            1 => Sha256::digest([&[0u8][..], &leaves[0]].concat()).into(),
            n => {
                // k is the largest power of two smaller than n.
                let k = (n - 1).next_power_of_two() / if (n - 1).is_power_of_two() { 1 } else { 2 };
                let k = if (n - 1).is_power_of_two() { n - 1 } else { k };
                let (l, r) = (mth(&leaves[..k]), mth(&leaves[k..]));
                Sha256::digest([&[1u8][..], &l, &r].concat()).into()
            }
        }
    }

    /// The leaves of the Certificate Transparency reference test vectors.
    fn ct_leaves() -> Vec<Vec<u8>> {
        vec![
            vec![],
            vec![0x00],
            vec![0x10],
            vec![0x20, 0x21],
            vec![0x30, 0x31],
            vec![0x40, 0x41, 0x42, 0x43],
            vec![0x50, 0x51, 0x52, 0x53, 0x54, 0x55, 0x56, 0x57],
            (0x60..=0x6f).collect(),
        ]
    }

    #[test]
    fn known_answer_roots() {
        // Roots of the first n CT test-vector leaves (RFC 6962 tree hashing).
        let roots = [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
            "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
            "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
            "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
            "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
        ];
        let leaves = ct_leaves();
        let mut b = RootBuilder::default();
        assert_eq!(hex::encode(b.root()), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        for (n, want) in roots.iter().enumerate() {
            b.push(tlog::record_hash(&leaves[n]).0);
            assert_eq!(hex::encode(b.root()), *want, "root of {} leaves", n + 1);
            assert_eq!(hex::encode(mth(&leaves[..=n])), *want, "reference MTH of {} leaves", n + 1);
        }
    }

    #[test]
    fn rfc6962_seven_leaf_example_proof_shapes() {
        // RFC 6962 §2.1.3: in the 7-leaf tree the audit path of d0 is [b, h, l],
        // of d3 is [c, g, l], of d4 is [f, j, k], of d6 is [i, k]; the
        // consistency proofs from the 3-, 4- and 6-leaf trees are [c, d, g, l],
        // [l] and [i, j, k].
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path().join("db")).unwrap();
        crate::keys::create(dir.path(), "t/audit").unwrap();
        let (log, _) = crate::AuditLog::open(&db, crate::keys::load(dir.path()).unwrap(), &|_, _| {}).unwrap();
        log.append((0..7).map(|i| AuditRecord { detail: format!("d{i}"), ..Default::default() }).collect(), 1000)
            .unwrap();
        let lens: Vec<usize> = [0, 3, 4, 6].iter().map(|s| log.inclusion_proof(*s, 7).unwrap().len()).collect();
        assert_eq!(lens, vec![3, 3, 3, 2]);
        assert_eq!(log.consistency_proof(3, 7).unwrap().len(), 4);
        assert_eq!(log.consistency_proof(4, 7).unwrap().len(), 1);
        assert_eq!(log.consistency_proof(6, 7).unwrap().len(), 3);
    }
}
