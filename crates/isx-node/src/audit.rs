//! The auditor's client: checkpoints, search, export, and verification of a
//! running gateway's log.
//!
//! Verification trusts nothing the gateway says without checking it: the
//! checkpoint signature (against a pinned key if given), every record's leaf
//! hash recomputed from its bytes, the root recomputed independently, the
//! consistency with a checkpoint saved earlier, and the indexes compared with
//! what the records say.

use std::collections::{BTreeMap, BTreeSet};

use isx_audit::verify::{self, LogVerifier, VerifyError};
use isx_core::wire::audit_client::AuditClient;
use isx_core::wire::{
    AuditBundle, AuditEntry, AuditRecord, Checkpoint, ExportRequest, GetCheckpointRequest, GetConsistencyProofRequest,
    GetEntriesRequest, Operation, SearchRequest, SearchResponse,
};
use tonic::Status;
use tonic::transport::Channel;

use crate::client::Client;

/// Why an audit call or verification failed.
#[derive(Debug, thiserror::Error)]
pub enum AuditClientError {
    /// The gateway refused or failed.
    #[error("gateway: {} ({:?})", .0.message(), .0.code())]
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
    /// Index searches compared with the records.
    pub index_checks: u64,
    /// The size of the saved checkpoint the log was shown to extend, if any.
    pub consistent_with: Option<u64>,
}

/// The audit service over a client's channel.
pub fn audit(client: &Client) -> AuditClient<Channel> {
    AuditClient::new(client.channel()).max_decoding_message_size(usize::MAX)
}

/// The gateway's latest checkpoint.
pub async fn checkpoint(client: &Client) -> Result<Checkpoint, AuditClientError> {
    Ok(audit(client).get_checkpoint(client.request(GetCheckpointRequest {})).await?.into_inner())
}

/// One page of search results.
pub async fn search(client: &Client, req: SearchRequest) -> Result<SearchResponse, AuditClientError> {
    Ok(audit(client).search(client.request(req)).await?.into_inner())
}

/// The consistency proof from tree size `first` to `second` (empty when equal).
pub async fn consistency_proof(client: &Client, first: u64, second: u64) -> Result<Vec<Vec<u8>>, AuditClientError> {
    if first >= second {
        return Ok(vec![]);
    }
    let req = GetConsistencyProofRequest { first, second };
    Ok(audit(client).get_consistency_proof(client.request(req)).await?.into_inner().hashes)
}

/// An export bundle, joined from the gateway's stream of parts (the first
/// part carries the header, every part some entries). `progress` is told
/// how many entries have arrived after each part.
pub async fn export_with_progress(
    client: &Client,
    filter: SearchRequest,
    progress: &dyn Fn(usize),
) -> Result<AuditBundle, AuditClientError> {
    let mut stream = audit(client).export(client.request(ExportRequest { filter: Some(filter) })).await?.into_inner();
    let mut bundle = stream.message().await?.ok_or_else(|| VerifyError::Shape("an empty export stream".into()))?;
    while let Some(part) = stream.message().await? {
        bundle.entries.extend(part.entries);
        progress(bundle.entries.len());
    }
    Ok(bundle)
}

/// An export bundle (see [`export_with_progress`]).
pub async fn export(client: &Client, filter: SearchRequest) -> Result<AuditBundle, AuditClientError> {
    export_with_progress(client, filter, &|_| {}).await
}

async fn all_matching(client: &Client, mut req: SearchRequest, size: u64) -> Result<BTreeSet<u64>, AuditClientError> {
    let mut seqs = BTreeSet::new();
    // Bounded: each page advances after_seq, and at most `size` entries can match.
    for _ in 0..=size + 1 {
        req.limit = 1000;
        let page = search(client, req.clone()).await?;
        let cp = verify::checkpoint(
            page.checkpoint.as_ref().ok_or_else(|| VerifyError::Shape("search without checkpoint".into()))?,
            None,
        )?;
        for e in &page.entries {
            verify::inclusion(e, &cp)?;
        }
        seqs.extend(page.entries.iter().map(|e| e.seq).filter(|s| *s < size));
        match page.entries.last() {
            Some(last) if page.more => req.after_seq = last.seq,
            _ => break,
        }
    }
    Ok(seqs)
}

/// Verifies a running gateway's log: the whole tree against its signed
/// checkpoint (with `trusted_key` pinned if given), consistency with `since`,
/// and the indexes against the records. `progress(done, total)` reports long runs.
pub async fn verify_live(
    client: &Client,
    trusted_key: Option<&str>,
    since: Option<&Checkpoint>,
    progress: &(dyn Fn(&str, u64, u64) + Send + Sync),
) -> Result<LiveReport, AuditClientError> {
    let cp = checkpoint(client).await?;
    let verified = verify::checkpoint(&cp, trusted_key)?;
    let mut consistent_with = None;
    if let Some(old) = since {
        let old_v = verify::checkpoint(old, trusted_key.or(Some(&cp.verifier_key)))?;
        let proof = consistency_proof(client, old_v.size, verified.size).await?;
        verify::consistency(&old_v, &verified, &proof)?;
        consistent_with = Some(old_v.size);
    }

    let mut log = LogVerifier::default();
    let mut records: Vec<AuditRecord> = Vec::new();
    let mut start = 0;
    while start < verified.size {
        progress("records", start, verified.size);
        let end = (start + 1000).min(verified.size);
        let page: Vec<AuditEntry> =
            audit(client).get_entries(client.request(GetEntriesRequest { start, end })).await?.into_inner().entries;
        if page.is_empty() {
            return Err(VerifyError::Shape(format!("the gateway returned no entries from {start}")).into());
        }
        for e in &page {
            log.push(e)?;
            if let Some(r) = &e.record {
                records.push(r.clone());
            }
        }
        start += page.len() as u64;
    }
    progress("records", verified.size, verified.size);
    log.finish(&verified)?;

    // Indexes: what each search returns must be exactly what the records say.
    let mut expected: BTreeMap<(String, String), BTreeSet<u64>> = BTreeMap::new();
    for r in &records {
        let mut add = |kind: &str, value: &str| {
            if !value.is_empty() {
                expected.entry((kind.to_owned(), value.to_owned())).or_default().insert(r.seq);
            }
        };
        add("node", &r.node);
        add("officer", &r.officer);
        add("alert", &r.alert_id);
        for h in &r.hits {
            add("alert", &h.alert_id);
        }
        add("request", &r.request_id);
        add("operation", r.operation().as_str_name());
        add("purpose", &r.purpose);
        for p in &r.subject_pseudonyms {
            add("subject", p);
        }
    }
    // Every node, officer, operation and purpose; up to 50 alerts, requests and subjects.
    let mut per_kind: BTreeMap<String, u64> = BTreeMap::new();
    let checks: Vec<_> = expected
        .iter()
        .filter(|((kind, _), _)| {
            let n = per_kind.entry(kind.clone()).or_default();
            *n += 1;
            !matches!(kind.as_str(), "alert" | "subject" | "request") || *n <= 50
        })
        .collect();
    let total = checks.len() as u64;
    let mut index_checks = 0;
    for (i, ((kind, value), want)) in checks.into_iter().enumerate() {
        progress("indexes", i as u64, total);
        let mut req = SearchRequest { justification: "isx audit verify: index check".into(), ..Default::default() };
        match kind.as_str() {
            "node" => req.node = value.clone(),
            "officer" => req.officer = value.clone(),
            "alert" => req.alert_id = value.clone(),
            "request" => req.request_id = value.clone(),
            "purpose" => req.purpose = value.clone(),
            "subject" => req.subject_pseudonym = value.clone(),
            _ => req.operation = Operation::from_str_name(value).unwrap_or_default() as i32,
        }
        let got = all_matching(client, req, verified.size).await?;
        if got != *want {
            let missing: Vec<_> = want.difference(&got).take(5).collect();
            let extra: Vec<_> = got.difference(want).take(5).collect();
            return Err(AuditClientError::Index {
                what: format!("{kind} {value}"),
                detail: format!("missing seqs {missing:?}, unexpected seqs {extra:?}"),
            });
        }
        index_checks += 1;
    }
    progress("indexes", total, total);
    Ok(LiveReport { checkpoint: cp, bodies: log.bodies, pruned: log.pruned, index_checks, consistent_with })
}
