//! The `isx.v1.Audit` service, for nodes with the `audit` role only.
//!
//! Every call is recorded (`LOG_READ`) and the record is durable before any
//! data is returned; a caller without the role is refused with
//! `PERMISSION_DENIED` and the attempt is recorded (`DENIAL`).

use std::sync::Arc;

use isx_audit::Filter;
use isx_core::Role;
use isx_core::timestamp::to_unix_millis;
use isx_core::wire::audit_server::Audit;
use isx_core::wire::{
    AuditBundle, AuditEntry, Checkpoint, ConsistencyProof, ExportRequest, GetCheckpointRequest,
    GetConsistencyProofRequest, GetEntriesRequest, GetEntriesResponse, GetInclusionProofRequest, InclusionProof,
    Operation, SearchRequest, SearchResponse,
};
use tonic::{Request, Response, Status};
use tracing::{Instrument, info_span};

use crate::conn::{ConnInfo, RequestInfo, Subject};
use crate::error::RequestError;
use crate::records;
use crate::state::State;

/// Most entries one call returns.
pub const MAX_PAGE: u64 = 1000;
/// Most entries one export holds.
pub const MAX_EXPORT: usize = 1_000_000;

/// The `Audit` service.
#[derive(Debug, Clone)]
pub(crate) struct AuditService {
    /// The gateway's shared state.
    state: Arc<State>,
}

impl AuditService {
    /// A service over `state`.
    pub(crate) fn new(state: Arc<State>) -> Self {
        Self { state }
    }

    /// Checks the caller and records the read; `describe` says what is read
    /// (never an identifier value). Returns the caller.
    async fn admit<T>(
        &self,
        req: &Request<T>,
        describe: String,
        pseudonym: Option<String>,
        justification: &str,
    ) -> Result<ConnInfo, Status> {
        let st = &self.state;
        match st.caller(req, &[Role::Audit]) {
            Ok(caller) => {
                let record = records::log_read(caller.actor(), describe, pseudonym, justification);
                st.recorder.durable(vec![record]).await.map_err(Status::from)?;
                Ok(caller.conn)
            }
            Err(e) => {
                let info = RequestInfo::of(req, Subject::None);
                st.recorder
                    .durable(vec![records::log_read_refused(&info, &e, &describe)])
                    .await
                    .map_err(Status::from)?;
                Err(Status::from(e))
            }
        }
    }

    fn filter(&self, req: &SearchRequest) -> Result<(Filter, Option<String>), RequestError> {
        let keys = self.state.pseudonyms();
        let pseudonym = match (req.subject_identifier.trim(), req.subject_pseudonym.trim()) {
            ("", "") => None,
            (id, "") => Some(
                keys.pseudonym(
                    &isx_core::identifiers::parse(id)
                        .map_err(|e| RequestError::BadFilter { field: "subject_identifier", message: e.to_string() })?,
                ),
            ),
            ("", p) if p.len() == 64 && p.bytes().all(|b| b.is_ascii_hexdigit()) => Some(p.to_ascii_lowercase()),
            ("", _) => {
                return Err(RequestError::BadFilter {
                    field: "subject_pseudonym",
                    message: "must be 64 hex digits".into(),
                });
            }
            _ => {
                return Err(RequestError::BadFilter {
                    field: "subject_identifier",
                    message: "give an identifier or a pseudonym, not both".into(),
                });
            }
        };
        let text = |s: &str| (!s.trim().is_empty()).then(|| s.trim().to_owned());
        let operation = match req.operation() {
            Operation::Unspecified => None,
            op => Some(op),
        };
        Ok((
            Filter {
                pseudonym: pseudonym.clone(),
                node: text(&req.node),
                officer: text(&req.officer),
                alert_id: text(&req.alert_id),
                request_id: text(&req.request_id),
                operation,
                purpose: text(&req.purpose),
                from_ms: req.from.as_ref().map(to_unix_millis),
                to_ms: req.to.as_ref().map(to_unix_millis),
            },
            pseudonym,
        ))
    }

    fn with_proofs(&self, mut entries: Vec<AuditEntry>, size: u64) -> Result<Vec<AuditEntry>, Status> {
        let log = self.state.recorder.log();
        for e in entries.iter_mut().filter(|e| e.seq < size) {
            e.proof = log
                .inclusion_proof(e.seq, size)
                .map_err(|x| Status::from(RequestError::Audit(x)))?
                .iter()
                .map(|h| h.to_vec())
                .collect();
            e.proof_tree_size = size;
        }
        entries.retain(|e| e.seq < size);
        Ok(entries)
    }
}

/// A description of the filter kinds used (values stay out of the log).
fn describe(f: &Filter) -> String {
    let mut kinds = Vec::new();
    if f.pseudonym.is_some() {
        kinds.push("subject".to_owned());
    }
    for (name, v) in [
        ("node", &f.node),
        ("officer", &f.officer),
        ("alert", &f.alert_id),
        ("request", &f.request_id),
        ("purpose", &f.purpose),
    ] {
        if let Some(v) = v {
            kinds.push(format!("{name}={v}"));
        }
    }
    if let Some(op) = f.operation {
        kinds.push(format!("operation={}", op.as_str_name()));
    }
    if f.from_ms.is_some() || f.to_ms.is_some() {
        kinds.push("time range".to_owned());
    }
    if kinds.is_empty() { "everything".to_owned() } else { kinds.join(", ") }
}

fn audit_err(e: isx_audit::AuditError) -> Status {
    match e {
        isx_audit::AuditError::Range(m) => Status::from(RequestError::AuditRange(m)),
        other => Status::from(RequestError::Audit(other)),
    }
}

#[tonic::async_trait]
impl Audit for AuditService {
    async fn get_checkpoint(&self, req: Request<GetCheckpointRequest>) -> Result<Response<Checkpoint>, Status> {
        let span = info_span!("audit.get_checkpoint");
        async move {
            self.admit(&req, "GetCheckpoint".into(), None, "").await?;
            Ok(Response::new(self.state.recorder.fresh_checkpoint().await?))
        }
        .instrument(span)
        .await
    }

    async fn get_entries(&self, req: Request<GetEntriesRequest>) -> Result<Response<GetEntriesResponse>, Status> {
        let (start, end) = (req.get_ref().start, req.get_ref().end);
        let end = end.min(start.saturating_add(MAX_PAGE));
        self.admit(&req, format!("GetEntries [{start}, {end})"), None, "").await?;
        let entries = self.state.recorder.log().entries(start, end).map_err(audit_err)?;
        Ok(Response::new(GetEntriesResponse { entries }))
    }

    async fn search(&self, req: Request<SearchRequest>) -> Result<Response<SearchResponse>, Status> {
        let (filter, pseudonym) = self.filter(req.get_ref()).map_err(Status::from)?;
        let r = req.get_ref();
        let limit = match r.limit {
            0 => 100,
            n => u64::from(n).min(MAX_PAGE),
        } as usize;
        let after = (r.after_seq > 0).then_some(r.after_seq);
        self.admit(&req, format!("Search by {}", describe(&filter)), pseudonym, &r.justification).await?;
        let checkpoint = self.state.recorder.fresh_checkpoint().await?;
        let (entries, more) = self.state.recorder.log().search(&filter, limit, after).map_err(audit_err)?;
        let entries = self.with_proofs(entries, checkpoint.tree_size)?;
        Ok(Response::new(SearchResponse { entries, checkpoint: Some(checkpoint), more }))
    }

    async fn get_inclusion_proof(
        &self,
        req: Request<GetInclusionProofRequest>,
    ) -> Result<Response<InclusionProof>, Status> {
        let (seq, size) = (req.get_ref().seq, req.get_ref().tree_size);
        self.admit(&req, format!("GetInclusionProof {seq}"), None, "").await?;
        let size = if size == 0 { self.state.recorder.fresh_checkpoint().await?.tree_size } else { size };
        let log = self.state.recorder.log();
        let hashes = log.inclusion_proof(seq, size).map_err(audit_err)?;
        let leaf = log.leaf(seq).map_err(audit_err)?;
        Ok(Response::new(InclusionProof {
            seq,
            tree_size: size,
            leaf_hash: leaf.to_vec(),
            hashes: hashes.iter().map(|h| h.to_vec()).collect(),
        }))
    }

    async fn get_consistency_proof(
        &self,
        req: Request<GetConsistencyProofRequest>,
    ) -> Result<Response<ConsistencyProof>, Status> {
        let (first, second) = (req.get_ref().first, req.get_ref().second);
        self.admit(&req, format!("GetConsistencyProof {first}..{second}"), None, "").await?;
        let second = if second == 0 { self.state.recorder.fresh_checkpoint().await?.tree_size } else { second };
        let hashes = self.state.recorder.log().consistency_proof(first, second).map_err(audit_err)?;
        Ok(Response::new(ConsistencyProof { first, second, hashes: hashes.iter().map(|h| h.to_vec()).collect() }))
    }

    async fn export(&self, req: Request<ExportRequest>) -> Result<Response<AuditBundle>, Status> {
        let search = req.get_ref().filter.clone().unwrap_or_default();
        let (filter, pseudonym) = self.filter(&search).map_err(Status::from)?;
        self.admit(&req, format!("Export of {}", describe(&filter)), pseudonym, &search.justification).await?;
        let checkpoint = self.state.recorder.fresh_checkpoint().await?;
        let log = self.state.recorder.log();
        let entries = if filter == Filter::default() {
            log.entries(0, checkpoint.tree_size).map_err(audit_err)?
        } else {
            log.search(&filter, MAX_EXPORT, None).map_err(audit_err)?.0
        };
        let entries = self.with_proofs(entries, checkpoint.tree_size)?;
        Ok(Response::new(AuditBundle {
            version: 1,
            exported_at: Some(isx_core::timestamp::from_unix_millis(self.state.now_ms())),
            description: format!("{} entries: {}", entries.len(), describe(&filter)),
            checkpoint: Some(checkpoint),
            entries,
        }))
    }
}
