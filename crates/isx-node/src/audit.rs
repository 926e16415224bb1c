//! The auditor's client: checkpoints, search, export, and verification of a
//! running gateway's log.
//!
//! Verification trusts nothing the gateway says without checking it: the
//! checkpoint signature (against a pinned key if given), every record's leaf
//! hash recomputed from its bytes, the root recomputed independently, the
//! consistency with a checkpoint saved earlier, and every entry of the
//! search index compared with what the records say. It is one call
//! (`VerifyLog`), so one `LOG_READ` record, however large the log.
//!
//! Every call names why the log is read (a [`ReadReason`]: one of the four
//! purposes of LED Art. 25(2) and a case reference); the gateway refuses a
//! call without one and records both with the read. An auditor whose
//! gateway scope is not every node gets the records outside it withheld
//! (leaf hash only): its verification checks the root and the consistency
//! from the leaf hashes and the records it may read, and cannot check the
//! index, which the gateway does not send it.

use std::collections::BTreeMap;

use isx_audit::index::Kind;
use isx_audit::verify::{self, LogVerifier, VerifyError};
use isx_core::wire::audit_client::AuditClient;
use isx_core::wire::{
    AuditBundle, AuditEntry, AuditRecord, Checkpoint, ExportRequest, GetCheckpointRequest, GetConsistencyProofRequest,
    GetEntriesRequest, IndexListing, ReadReason, SearchRequest, SearchResponse, VerifyLogRequest,
};
use prost::Message;
use tonic::Status;
use tonic::transport::Channel;

use crate::client::Client;

/// Why an audit call or verification failed.
#[derive(Debug, thiserror::Error)]
pub enum AuditClientError {
    /// The gateway refused or failed.
    #[error("gateway: {} ({})", .0.message(), crate::code_name(.0.code()))]
    Status(#[from] Status),
    /// The log does not verify.
    #[error("VERIFICATION FAILED: {0}")]
    Verify(#[from] VerifyError),
    /// The gateway's indexes disagree with its records.
    #[error("VERIFICATION FAILED: the index for {what} disagrees with the records: {detail}")]
    Index {
        /// Which index and value.
        what: String,
        /// The difference.
        detail: String,
    },
}

/// What a live verification covered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveReport {
    /// The checkpoint verified.
    pub checkpoint: Checkpoint,
    /// Records whose bytes were hashed.
    pub bodies: u64,
    /// Pruned records (leaf hash only).
    pub pruned: u64,
    /// Records withheld as outside the caller's scope (leaf hash only).
    pub withheld: u64,
    /// The caller's scope as the gateway states it, when it is not every
    /// node: records outside it came withheld and the index was not sent,
    /// so it was not checked (`index_checks` and `index_entries` are 0).
    pub scope: Option<String>,
    /// Index values (kind and value) compared, whole, with the records.
    pub index_checks: u64,
    /// Index entries (a value and a seq) compared with the records: every
    /// entry of the index.
    pub index_entries: u64,
    /// The size of the saved checkpoint the log was shown to extend, if any.
    pub consistent_with: Option<u64>,
}

/// The audit service over a client's channel.
pub fn audit(client: &Client) -> AuditClient<Channel> {
    AuditClient::new(client.channel()).max_decoding_message_size(usize::MAX)
}

/// The gateway's latest checkpoint, read for `reason`.
pub async fn checkpoint(client: &Client, reason: &ReadReason) -> Result<Checkpoint, AuditClientError> {
    let req = GetCheckpointRequest { reason: Some(reason.clone()) };
    Ok(audit(client).get_checkpoint(client.request(req)).await?.into_inner())
}

/// One page of search results, read for `reason` (it replaces `req`'s own).
pub async fn search(
    client: &Client,
    reason: &ReadReason,
    req: SearchRequest,
) -> Result<SearchResponse, AuditClientError> {
    let req = SearchRequest { reason: Some(reason.clone()), ..req };
    Ok(audit(client).search(client.request(req)).await?.into_inner())
}

/// Entries `start..end` (at most 1000), read for `reason`; those outside the
/// caller's scope come withheld.
pub async fn entries(
    client: &Client,
    reason: &ReadReason,
    start: u64,
    end: u64,
) -> Result<Vec<AuditEntry>, AuditClientError> {
    let req = GetEntriesRequest { start, end, reason: Some(reason.clone()) };
    Ok(audit(client).get_entries(client.request(req)).await?.into_inner().entries)
}

/// The consistency proof from tree size `first` to `second` (empty when
/// equal, without asking), read for `reason`.
pub async fn consistency_proof(
    client: &Client,
    reason: &ReadReason,
    first: u64,
    second: u64,
) -> Result<Vec<Vec<u8>>, AuditClientError> {
    if first >= second {
        return Ok(vec![]);
    }
    let req = GetConsistencyProofRequest { first, second, reason: Some(reason.clone()) };
    Ok(audit(client).get_consistency_proof(client.request(req)).await?.into_inner().hashes)
}

/// An export bundle for `recipient` (who receives it, recorded), read for
/// `reason`, joined from the gateway's stream of parts (the first part
/// carries the header, every part some entries). `progress` is told how
/// many entries have arrived after each part.
pub async fn export_with_progress(
    client: &Client,
    reason: &ReadReason,
    recipient: &str,
    filter: SearchRequest,
    progress: &(dyn Fn(usize) + Send + Sync),
) -> Result<AuditBundle, AuditClientError> {
    let req = ExportRequest { filter: Some(filter), reason: Some(reason.clone()), recipient: recipient.to_owned() };
    let mut stream = audit(client).export(client.request(req)).await?.into_inner();
    let mut bundle = stream.message().await?.ok_or_else(|| VerifyError::Shape("an empty export stream".into()))?;
    while let Some(part) = stream.message().await? {
        bundle.entries.extend(part.entries);
        progress(bundle.entries.len());
    }
    Ok(bundle)
}

/// An export bundle (see [`export_with_progress`]).
pub async fn export(
    client: &Client,
    reason: &ReadReason,
    recipient: &str,
    filter: SearchRequest,
) -> Result<AuditBundle, AuditClientError> {
    export_with_progress(client, reason, recipient, filter, &|_| {}).await
}

/// What the records say the index must hold: for each (kind, value), the
/// seqs in log order, and how many of them the lists have shown so far.
#[derive(Debug, Default)]
struct ExpectedIndex {
    lists: BTreeMap<(Kind, String), (Vec<u64>, usize)>,
    /// The time of each record, by seq (`None` once pruned).
    times: Vec<Option<u64>>,
    entries: u64,
}

impl ExpectedIndex {
    /// Adds record `seq` (in log order), or a pruned one.
    fn push(&mut self, seq: u64, record: Option<&AuditRecord>) {
        self.times.push(record.map(isx_audit::index::time_of));
        for (kind, value) in record.map(isx_audit::index::values).unwrap_or_default() {
            self.lists.entry((kind, value)).or_default().0.push(seq);
            self.entries += 1;
        }
    }

    /// Checks one stored list against the records: its key names a known
    /// kind, its first seq and that record's time; its seqs ascend, and they
    /// are the next seqs of its value that the records say, no more, no fewer.
    fn check(&mut self, l: &IndexListing, size: u64) -> Result<u64, AuditClientError> {
        let kind = Kind::from_wire(l.kind());
        let what = format!("{} {:?}", kind.map(Kind::name).unwrap_or("(unknown kind)"), l.value);
        let bad = |detail: String| AuditClientError::Index { what: what.clone(), detail };
        let Some(kind) = kind else { return Err(bad("an index row of no known kind".into())) };
        if l.seqs.is_empty() {
            return Err(bad(format!("a malformed list at seq {}", l.first_seq)));
        }
        if !l.seqs.windows(2).all(|w| w[0] < w[1]) {
            return Err(bad(format!("the list at seq {} is not in ascending order: {:?}", l.first_seq, l.seqs)));
        }
        if l.seqs[0] != l.first_seq {
            return Err(bad(format!("the list keyed at seq {} starts at seq {}", l.first_seq, l.seqs[0])));
        }
        if let Some(s) = l.seqs.iter().find(|s| **s >= size) {
            return Err(bad(format!("seq {s} is beyond the checkpoint's {size} records")));
        }
        let first_time = self.times.get(l.first_seq as usize).copied().flatten();
        if first_time.is_some_and(|t| t != l.time_ms) {
            return Err(bad(format!(
                "the list keyed at time {} starts with record {} of time {}",
                l.time_ms,
                l.first_seq,
                first_time.unwrap_or_default()
            )));
        }
        let (want, shown) = self.lists.entry((kind, l.value.clone())).or_default();
        let next = want.get(*shown..*shown + l.seqs.len());
        if next != Some(l.seqs.as_slice()) {
            let last = l.seqs[l.seqs.len() - 1];
            let span: Vec<u64> = want[*shown..].iter().copied().take_while(|s| *s <= last).collect();
            let missing: Vec<u64> = span.iter().filter(|s| !l.seqs.contains(s)).take(5).copied().collect();
            let extra: Vec<u64> = l.seqs.iter().filter(|s| !span.contains(s)).take(5).copied().collect();
            return Err(bad(if missing.is_empty() && extra.is_empty() {
                format!("seqs listed twice or out of order: {:?}", l.seqs)
            } else {
                format!("missing seqs {missing:?}, unexpected seqs {extra:?}")
            }));
        }
        *shown += l.seqs.len();
        Ok(l.seqs.len() as u64)
    }

    /// Checks that every list was shown whole; returns the values checked.
    fn finish(&self) -> Result<u64, AuditClientError> {
        for ((kind, value), (want, shown)) in &self.lists {
            if *shown < want.len() {
                let missing: Vec<u64> = want[*shown..].iter().take(5).copied().collect();
                return Err(AuditClientError::Index {
                    what: format!("{} {value:?}", kind.name()),
                    detail: format!("missing seqs {missing:?}, unexpected seqs []"),
                });
            }
        }
        Ok(self.lists.len() as u64)
    }
}

/// Verifies a running gateway's log in one audited read (`VerifyLog`, for
/// `reason`: usually integrity): the whole tree against its signed
/// checkpoint (with `trusted_key` pinned if given), consistency with
/// `since`, and every entry of the search index against the records, both
/// ways. For a scoped caller, the root and consistency from the leaf hashes
/// and the records in scope, without the index ([`LiveReport::scope`]).
/// `progress(what, done, total)` reports long runs.
pub async fn verify_live(
    client: &Client,
    reason: &ReadReason,
    trusted_key: Option<&str>,
    since: Option<&Checkpoint>,
    progress: &(dyn Fn(&str, u64, u64) + Send + Sync),
) -> Result<LiveReport, AuditClientError> {
    verify_live_visit(client, reason, trusted_key, since, "isx audit verify", progress, &mut |_| {}).await
}

/// As [`verify_live`], with `justification` recorded for the read, and
/// `visit` shown every record whose body was hashed, in log order (the
/// console tallies its charts from them, so the charts count only records
/// that were verified).
#[allow(clippy::too_many_arguments)]
pub async fn verify_live_visit(
    client: &Client,
    reason: &ReadReason,
    trusted_key: Option<&str>,
    since: Option<&Checkpoint>,
    justification: &str,
    progress: &(dyn Fn(&str, u64, u64) + Send + Sync),
    visit: &mut (dyn FnMut(&AuditRecord) + Send),
) -> Result<LiveReport, AuditClientError> {
    let req = VerifyLogRequest {
        since_size: since.map(|c| c.tree_size).unwrap_or(0),
        justification: justification.to_owned(),
        reason: Some(reason.clone()),
    };
    let mut stream = audit(client).verify_log(client.request(req)).await?.into_inner();
    let head = stream.message().await?.ok_or_else(|| VerifyError::Shape("an empty verify stream".into()))?;
    let scope = (!head.scope.is_empty()).then(|| head.scope.clone());
    let cp = head.checkpoint.ok_or_else(|| VerifyError::Shape("a verify stream without a checkpoint".into()))?;
    let verified = verify::checkpoint(&cp, trusted_key)?;
    let mut consistent_with = None;
    if let Some(old) = since {
        let old_v = verify::checkpoint(old, trusted_key.or(Some(&cp.verifier_key)))?;
        let proof = head.consistency.map(|c| c.hashes).unwrap_or_default();
        verify::consistency(&old_v, &verified, &proof)?;
        consistent_with = Some(old_v.size);
    }

    let mut log = LogVerifier::default();
    let mut expected = ExpectedIndex::default();
    let mut index_entries = 0;
    let mut index_seen = false;
    // Bounded by the gateway's stream: each part is checked as it comes.
    while let Some(part) = stream.message().await? {
        if !part.entries.is_empty() && index_seen {
            return Err(VerifyError::Shape("entries after the index in the verify stream".into()).into());
        }
        for e in &part.entries {
            if log.len() >= verified.size {
                return Err(VerifyError::Shape(format!("entry {} is beyond the checkpoint", e.seq)).into());
            }
            if e.withheld && scope.is_none() {
                return Err(VerifyError::Shape(format!(
                    "entry {} is withheld, but the gateway states no scope for this caller",
                    e.seq
                ))
                .into());
            }
            log.push(e)?;
            let record = if e.pruned || e.withheld { None } else { AuditRecord::decode(e.body.as_slice()).ok() };
            if let Some(r) = &record {
                visit(r);
            }
            expected.push(e.seq, record.as_ref());
        }
        if !part.entries.is_empty() {
            progress("records", log.len(), verified.size);
        }
        if !part.index.is_empty() {
            if let Some(scope) = &scope {
                return Err(VerifyError::Shape(format!(
                    "an index in the verify stream of a scoped caller ({scope}), whose records outside it are withheld"
                ))
                .into());
            }
            if !index_seen {
                log.finish(&verified)?;
                index_seen = true;
            }
            for l in &part.index {
                index_entries += expected.check(l, verified.size)?;
            }
            progress("index", index_entries, expected.entries);
        }
    }
    if !index_seen {
        log.finish(&verified)?;
    }
    let index_checks = if scope.is_some() { 0 } else { expected.finish()? };
    Ok(LiveReport {
        checkpoint: cp,
        bodies: log.bodies,
        pruned: log.pruned,
        withheld: log.withheld,
        scope,
        index_checks,
        index_entries,
        consistent_with,
    })
}
