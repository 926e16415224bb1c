//! The `isx.v1.Audit` service, for nodes with the `audit` role only.
//!
//! Every call first checks the caller's role and officer, before it parses
//! anything; a refusal is recorded (`DENIAL`, aggregated per source) and
//! answered `PERMISSION_DENIED`. Then its reason (a purpose of LED Art.
//! 25(2) and a case reference; an export's recipient too), its filter and
//! its range are checked (a bad one is a recorded `INVALID_ARGUMENT` naming
//! the field, or `OUT_OF_RANGE`), and its `LOG_READ` record, with the
//! purpose, the case and the caller's scope, is made durable before any data
//! is returned.
//!
//! A caller whose `audit_scope` is not every node sees only the records in
//! its scope ([`isx_audit::scope`]): `Search` and `Export` return only those
//! (the scope is part of the search filter, so pages are still full),
//! `GetEntries` and `VerifyLog` serve the others withheld (leaf hash only),
//! and `VerifyLog` sends no index. Proofs and checkpoints carry hashes only
//! and are served whole. Scans run
//! on the blocking pool, off the async workers. `Export` streams its entries
//! in messages of at most `audit.export_batch` entries, so neither side
//! holds a whole export in memory. `VerifyLog` streams a checkpoint, every
//! entry of its tree and the whole search index the same way, as one read
//! (one `LOG_READ` record for a whole verification).

use std::pin::Pin;
use std::sync::Arc;

use isx_audit::log::Window;
use isx_audit::{AuditLog, Filter};
use isx_core::Role;
use isx_core::timestamp::to_unix_millis;
use isx_core::wire::audit_server::Audit;
use isx_core::wire::{
    AuditBundle, AuditEntry, Checkpoint, ConsistencyProof, ExportRequest, GetCheckpointRequest,
    GetConsistencyProofRequest, GetEntriesRequest, GetEntriesResponse, GetInclusionProofRequest, GetPolicyRequest,
    InclusionProof, IndexListing, Operation, PolicyVersion, ReadReason, SearchRequest, SearchResponse, VerifyLogPart,
    VerifyLogRequest,
};
use prost::Message;
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use tracing::{Instrument, info_span, warn};

use crate::config::AuditScope;
use crate::conn::{RequestInfo, Subject};
use crate::error::RequestError;
use crate::records::{self, ReadWhy};
use crate::refusal;
use crate::state::{Caller, State};

/// Most entries one call returns.
pub const MAX_PAGE: u64 = 1000;

/// Most bytes of entries one search page holds; a page stops early (with
/// `more`) rather than pass it.
const MAX_PAGE_BYTES: usize = 8 << 20;

/// The `Audit` service.
#[derive(Debug, Clone)]
pub(crate) struct AuditService {
    /// The gateway's shared state.
    state: Arc<State>,
}

/// Most index seqs one `VerifyLog` part holds (8 bytes each); a part holds
/// at least one list.
const INDEX_SEQS_PER_PART: usize = 16_384;

/// The stream `Export` answers with.
type ExportStream = Pin<Box<dyn Stream<Item = Result<AuditBundle, Status>> + Send>>;

/// The stream `VerifyLog` answers with.
type VerifyLogStream = Pin<Box<dyn Stream<Item = Result<VerifyLogPart, Status>> + Send>>;

/// Runs a scan of the log on the blocking pool.
async fn scan<T: Send + 'static>(
    log: &Arc<AuditLog>,
    f: impl FnOnce(&AuditLog) -> Result<T, isx_audit::AuditError> + Send + 'static,
) -> Result<T, Status> {
    let log = log.clone();
    match tokio::task::spawn_blocking(move || f(&log)).await {
        Ok(result) => result.map_err(audit_err),
        Err(e) => Err(Status::internal(format!("audit scan failed: {e}"))),
    }
}

/// Attaches inclusion proofs in the tree of `size` to `entries`, dropping
/// those beyond it; with the checkpoint `note` of that tree (an export),
/// also each entry's C2SP tlog-proof in it.
fn with_proofs(
    log: &AuditLog,
    mut entries: Vec<AuditEntry>,
    size: u64,
    note: Option<&str>,
) -> Result<Vec<AuditEntry>, isx_audit::AuditError> {
    entries.retain(|e| e.seq < size);
    for e in entries.iter_mut() {
        e.proof = log.inclusion_proof(e.seq, size)?.iter().map(|h| h.to_vec()).collect();
        e.proof_tree_size = size;
        if let Some(note) = note {
            e.tlog_proof = isx_audit::proof::TlogProof::of_entry(e, note).to_text();
        }
    }
    Ok(entries)
}

impl AuditService {
    /// A service over `state`.
    pub(crate) fn new(state: Arc<State>) -> Self {
        Self { state }
    }

    /// Checks the caller's role and officer, before anything of the request
    /// is parsed; records and answers a refusal. `what` names the call.
    async fn caller<'a, T>(&'a self, req: &Request<T>, what: &str) -> Result<Caller<'a>, Status> {
        let st = &self.state;
        match st.caller(req, &[Role::Audit]) {
            Ok(caller) => Ok(caller),
            Err(e) => {
                let info = RequestInfo::of(req, Subject::None);
                let record = records::log_read_refused(&info, &e, what);
                let source = info.node();
                if let Err(audit) = refusal::record(st, source, e.rule(), record).await {
                    return Err(Status::from(audit));
                }
                Err(Status::from(e))
            }
        }
    }

    /// Records (aggregated) and answers a request the caller may make but
    /// made badly: a bad filter or range.
    async fn bad_request(&self, caller: &Caller<'_>, e: RequestError) -> Status {
        let info =
            RequestInfo { conn: Some(caller.conn.clone()), officer: caller.officer.clone(), subject: Subject::None };
        refusal::refusal_status(&self.state, &info, e).await
    }

    /// The call's purpose and case reference (and, for an export, its
    /// `recipient`), checked after the caller's role; a missing or bad one
    /// is refused, recorded, naming the field.
    async fn why(
        &self,
        caller: &Caller<'_>,
        reason: Option<&ReadReason>,
        recipient: Option<&str>,
    ) -> Result<ReadWhy, Status> {
        let checked = isx_core::read_reason::check(reason).and_then(|(purpose, case_reference)| {
            let recipient = recipient.map(isx_core::read_reason::check_recipient).transpose()?;
            Ok(ReadWhy { purpose, case_reference, recipient })
        });
        match checked {
            Ok(why) => Ok(why),
            Err(e) => Err(self.bad_request(caller, RequestError::BadReason(e)).await),
        }
    }

    /// Records the read, durably, before anything is returned; `describe`
    /// says what is read (never an identifier value), `why` its purpose.
    async fn log_read(
        &self,
        caller: &Caller<'_>,
        describe: String,
        pseudonym: Option<String>,
        justification: &str,
        why: &ReadWhy,
    ) -> Result<(), Status> {
        let record = records::log_read(caller.actor(), describe, pseudonym, justification, why);
        self.state.recorder.durable(vec![record]).await.map(|_| ()).map_err(Status::from)
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
                origin: text(&req.origin),
                recipient: text(&req.recipient),
                officer: text(&req.officer),
                alert_id: text(&req.alert_id),
                request_id: text(&req.request_id),
                operation,
                purpose: text(&req.purpose),
                from_ms: req.from.as_ref().map(to_unix_millis),
                to_ms: req.to.as_ref().map(to_unix_millis),
                scope: None,
            },
            pseudonym,
        ))
    }
}

/// The caller's scope, if it is not every node.
fn scope_of<'a>(caller: &'a Caller<'_>) -> Option<&'a AuditScope> {
    caller.slot.audit_scope.as_ref().filter(|s| **s != AuditScope::All)
}

/// What a scoped caller's LOG_READ adds: its scope and, when the filter
/// names nodes outside it, that only records in scope were returned.
fn scope_note(scope: Option<&AuditScope>, f: &Filter) -> String {
    let (Some(scope), Some(nodes)) = (scope, scope.and_then(AuditScope::scope)) else { return String::new() };
    let mut named: Vec<&str> = [&f.node, &f.origin, &f.recipient]
        .into_iter()
        .flatten()
        .map(String::as_str)
        .filter(|n| !nodes.contains(n))
        .collect();
    named.sort();
    named.dedup();
    let mut note = format!("; scope: {}", scope.describe());
    if !named.is_empty() {
        note.push_str(&format!("; outside scope: {}; only records in scope returned", named.join(", ")));
    }
    note
}

/// A description of the filter kinds used (values stay out of the log).
fn describe(f: &Filter) -> String {
    let mut kinds = Vec::new();
    if f.pseudonym.is_some() {
        kinds.push("subject".to_owned());
    }
    for (name, v) in [
        ("node", &f.node),
        ("origin", &f.origin),
        ("recipient", &f.recipient),
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

/// Checks a range request against the log's size, so that a bad range is
/// `OUT_OF_RANGE`, never a storage error.
fn check_range(ok: bool, message: impl FnOnce() -> String) -> Result<(), RequestError> {
    if ok { Ok(()) } else { Err(RequestError::AuditRange(message())) }
}

#[tonic::async_trait]
impl Audit for AuditService {
    async fn get_checkpoint(&self, req: Request<GetCheckpointRequest>) -> Result<Response<Checkpoint>, Status> {
        let span = info_span!("audit.get_checkpoint");
        async move {
            let caller = self.caller(&req, "GetCheckpoint").await?;
            let why = self.why(&caller, req.get_ref().reason.as_ref(), None).await?;
            self.log_read(&caller, "GetCheckpoint".into(), None, "", &why).await?;
            Ok(Response::new(self.state.recorder.fresh_checkpoint().await?))
        }
        .instrument(span)
        .await
    }

    async fn get_entries(&self, req: Request<GetEntriesRequest>) -> Result<Response<GetEntriesResponse>, Status> {
        let caller = self.caller(&req, "GetEntries").await?;
        let why = self.why(&caller, req.get_ref().reason.as_ref(), None).await?;
        let (start, end) = (req.get_ref().start, req.get_ref().end);
        if let Err(e) = check_range(start <= end, || format!("start {start} is after end {end}")) {
            return Err(self.bad_request(&caller, e).await);
        }
        let end = end.min(start.saturating_add(MAX_PAGE));
        let scope = scope_of(&caller);
        let withheld = match scope {
            Some(s) => format!("; scope: {}; records outside it withheld", s.describe()),
            None => String::new(),
        };
        self.log_read(&caller, format!("GetEntries [{start}, {end}){withheld}"), None, "", &why).await?;
        let nodes = scope.and_then(AuditScope::scope);
        let entries = scan(self.state.recorder.log(), move |log| {
            let entries = log.entries(start, end)?;
            Ok(match nodes {
                Some(nodes) => entries.into_iter().map(|e| nodes.withhold(e)).collect(),
                None => entries,
            })
        })
        .await?;
        Ok(Response::new(GetEntriesResponse { entries }))
    }

    async fn search(&self, req: Request<SearchRequest>) -> Result<Response<SearchResponse>, Status> {
        let caller = self.caller(&req, "Search").await?;
        let why = self.why(&caller, req.get_ref().reason.as_ref(), None).await?;
        let (mut filter, pseudonym) = match self.filter(req.get_ref()) {
            Ok(f) => f,
            Err(e) => return Err(self.bad_request(&caller, e).await),
        };
        let r = req.get_ref();
        let limit = match r.limit {
            0 => 100,
            n => u64::from(n).min(MAX_PAGE),
        } as usize;
        let order = if r.newest_first { ", newest first" } else { "" };
        let scope = scope_of(&caller);
        let what = format!("Search by {}{order}{}", describe(&filter), scope_note(scope, &filter));
        filter.scope = scope.and_then(AuditScope::scope);
        self.log_read(&caller, what, pseudonym, &r.justification, &why).await?;
        let checkpoint = self.state.recorder.fresh_checkpoint().await?;
        let size = checkpoint.tree_size;
        // As of the checkpoint: later records are left to a later search.
        let window = Window {
            limit,
            after_seq: (r.after_seq > 0).then_some(r.after_seq),
            before_seq: Some(if r.before_seq > 0 { r.before_seq.min(size) } else { size }),
            newest_first: r.newest_first,
        };
        let (entries, more) = scan(self.state.recorder.log(), move |log| {
            let (mut entries, mut more) = log.search_window(&filter, &window)?;
            let mut bytes = 0;
            if let Some(cut) = entries.iter().position(|e| {
                bytes += e.encoded_len();
                bytes > MAX_PAGE_BYTES
            }) {
                entries.truncate(cut.max(1));
                more = true;
            }
            Ok((with_proofs(log, entries, size, None)?, more))
        })
        .await?;
        Ok(Response::new(SearchResponse { entries, checkpoint: Some(checkpoint), more }))
    }

    async fn get_inclusion_proof(
        &self,
        req: Request<GetInclusionProofRequest>,
    ) -> Result<Response<InclusionProof>, Status> {
        let caller = self.caller(&req, "GetInclusionProof").await?;
        let why = self.why(&caller, req.get_ref().reason.as_ref(), None).await?;
        let (seq, size) = (req.get_ref().seq, req.get_ref().tree_size);
        let log_size = self.state.recorder.log().size();
        let valid = check_range(size <= log_size && (size == 0 || seq < size), || {
            format!("record {seq} is not in a tree of {size} (log size {log_size})")
        });
        if let Err(e) = valid {
            return Err(self.bad_request(&caller, e).await);
        }
        self.log_read(&caller, format!("GetInclusionProof {seq}"), None, "", &why).await?;
        let size = if size == 0 { self.state.recorder.fresh_checkpoint().await?.tree_size } else { size };
        let (hashes, leaf) =
            scan(self.state.recorder.log(), move |log| Ok((log.inclusion_proof(seq, size)?, log.leaf(seq)?))).await?;
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
        let caller = self.caller(&req, "GetConsistencyProof").await?;
        let why = self.why(&caller, req.get_ref().reason.as_ref(), None).await?;
        let (first, second) = (req.get_ref().first, req.get_ref().second);
        let log_size = self.state.recorder.log().size();
        let valid = check_range(second <= log_size && (second == 0 || first <= second), || {
            format!("no consistency proof from {first} to {second} (log size {log_size})")
        });
        if let Err(e) = valid {
            return Err(self.bad_request(&caller, e).await);
        }
        self.log_read(&caller, format!("GetConsistencyProof {first}..{second}"), None, "", &why).await?;
        let second = if second == 0 { self.state.recorder.fresh_checkpoint().await?.tree_size } else { second };
        if first > second {
            return Err(self
                .bad_request(
                    &caller,
                    RequestError::AuditRange(format!("no consistency proof from {first} to {second}")),
                )
                .await);
        }
        let hashes = scan(self.state.recorder.log(), move |log| log.consistency_proof(first, second)).await?;
        Ok(Response::new(ConsistencyProof { first, second, hashes: hashes.iter().map(|h| h.to_vec()).collect() }))
    }

    type ExportStream = ExportStream;

    async fn export(&self, req: Request<ExportRequest>) -> Result<Response<Self::ExportStream>, Status> {
        let caller = self.caller(&req, "Export").await?;
        let why = self.why(&caller, req.get_ref().reason.as_ref(), Some(&req.get_ref().recipient)).await?;
        let search = req.get_ref().filter.clone().unwrap_or_default();
        let (mut filter, pseudonym) = match self.filter(&search) {
            Ok(f) => f,
            Err(e) => return Err(self.bad_request(&caller, e).await),
        };
        let scope = scope_of(&caller);
        let description = match scope {
            Some(s) => format!("{} in scope {}", describe(&filter), s.describe()),
            None => describe(&filter),
        };
        let what = format!("Export of {}{}", describe(&filter), scope_note(scope, &filter));
        filter.scope = scope.and_then(AuditScope::scope);
        self.log_read(&caller, what, pseudonym, &search.justification, &why).await?;
        let checkpoint = self.state.recorder.fresh_checkpoint().await?;
        let size = checkpoint.tree_size;
        let note = checkpoint.note.clone();
        let header = AuditBundle {
            version: isx_audit::verify::BUNDLE_VERSION,
            exported_at: Some(isx_core::timestamp::from_unix_millis(self.state.now_ms())),
            description: format!("{description} (log of {size} records)"),
            checkpoint: Some(checkpoint),
            entries: vec![],
            policies: vec![],
        };
        let batch = self.state.recorder.config().export_batch;
        let (tx, rx) = mpsc::channel::<Result<AuditBundle, Status>>(2);
        let log = self.state.recorder.log().clone();
        let shutdown = self.state.shutdown.clone();
        // One batch at a time on the blocking pool; the channel holds two, so
        // a slow reader costs at most three batches of memory.
        tokio::spawn(async move {
            if tx.send(Ok(header)).await.is_err() {
                return;
            }
            let everything = filter == Filter::default();
            let mut next = 0u64;
            loop {
                let (log, filter, note) = (log.clone(), filter.clone(), note.clone());
                let page = scan(&log, move |log| {
                    if everything {
                        let end = next.saturating_add(batch as u64).min(size);
                        Ok((with_proofs(log, log.entries(next, end)?, size, Some(&note))?, end < size, end))
                    } else {
                        let after = next.checked_sub(1);
                        let (entries, more) = log.search(&filter, batch, after)?;
                        let last = entries.last().map(|e| e.seq + 1).unwrap_or(size);
                        let more = more && last < size;
                        Ok((with_proofs(log, entries, size, Some(&note))?, more, last))
                    }
                })
                .await;
                let (entries, more, last) = match page {
                    Ok(page) => page,
                    Err(e) => {
                        warn!(error = %e, "export stopped");
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                };
                next = last;
                let chunk = AuditBundle { entries, ..Default::default() };
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    sent = tx.send(Ok(chunk)) => if sent.is_err() { return },
                }
                if !more {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    type VerifyLogStream = VerifyLogStream;

    async fn verify_log(&self, req: Request<VerifyLogRequest>) -> Result<Response<Self::VerifyLogStream>, Status> {
        let caller = self.caller(&req, "VerifyLog").await?;
        let why = self.why(&caller, req.get_ref().reason.as_ref(), None).await?;
        let since = req.get_ref().since_size;
        let justification = req.get_ref().justification.clone();
        // The checkpoint first, so that the one record of this read says
        // exactly what it covers; nothing is returned before it is durable.
        let checkpoint = self.state.recorder.fresh_checkpoint().await?;
        let size = checkpoint.tree_size;
        let from = if since > 0 { format!(", consistency from {since}") } else { String::new() };
        let scope = scope_of(&caller);
        let what = match scope {
            Some(s) => format!(
                "VerifyLog: {size} records, those outside scope withheld, no search index{from}; scope: {}",
                s.describe()
            ),
            None => format!("VerifyLog: {size} records and the whole search index{from}"),
        };
        self.log_read(&caller, what, None, &justification, &why).await?;
        let scope_text = scope.map(AuditScope::describe).unwrap_or_default();
        let nodes = scope.and_then(AuditScope::scope);
        // A saved checkpoint larger than this one gets no proof: the client
        // finds that the log shrank.
        let proof = if since > 0 && since < size {
            scan(self.state.recorder.log(), move |log| log.consistency_proof(since, size)).await?
        } else {
            vec![]
        };
        let first = VerifyLogPart {
            checkpoint: Some(checkpoint),
            consistency: Some(ConsistencyProof {
                first: since.min(size),
                second: size,
                hashes: proof.iter().map(|h| h.to_vec()).collect(),
            }),
            scope: scope_text,
            ..Default::default()
        };
        let batch = self.state.recorder.config().export_batch as u64;
        let (tx, rx) = mpsc::channel::<Result<VerifyLogPart, Status>>(2);
        let log = self.state.recorder.log().clone();
        let shutdown = self.state.shutdown.clone();
        // One part at a time on the blocking pool, as for `Export`: the
        // entries of the tree, then the index lists.
        tokio::spawn(async move {
            let send = |part: Result<VerifyLogPart, Status>| {
                let tx = tx.clone();
                let shutdown = shutdown.clone();
                async move {
                    tokio::select! {
                        _ = shutdown.cancelled() => false,
                        sent = tx.send(part) => sent.is_ok(),
                    }
                }
            };
            if !send(Ok(first)).await {
                return;
            }
            let mut next = 0u64;
            while next < size {
                let end = next.saturating_add(batch.max(1)).min(size);
                let nodes = nodes.clone();
                let page = scan(&log, move |log| {
                    let entries = log.entries(next, end)?;
                    Ok(match nodes {
                        Some(nodes) => entries.into_iter().map(|e| nodes.withhold(e)).collect(),
                        None => entries,
                    })
                });
                match page.await {
                    Ok(entries) => {
                        if !send(Ok(VerifyLogPart { entries, ..Default::default() })).await {
                            return;
                        }
                    }
                    Err(e) => {
                        warn!(error = %e, "verify stream stopped");
                        send(Err(e)).await;
                        return;
                    }
                }
                next = end;
            }
            if nodes.is_some() {
                // A scoped caller gets no index: it would list records it may not read.
                return;
            }
            let mut after: Option<Vec<u8>> = None;
            // Bounded: each page moves past at least one key of the index.
            loop {
                let resume = after.clone();
                let page = scan(&log, move |log| log.index_page(resume.as_deref(), size, INDEX_SEQS_PER_PART)).await;
                let page = match page {
                    Ok(page) => page,
                    Err(e) => {
                        warn!(error = %e, "verify stream stopped");
                        send(Err(e)).await;
                        return;
                    }
                };
                let index = page
                    .listings
                    .into_iter()
                    .map(|l| IndexListing {
                        kind: l.kind.map(|k| k.wire()).unwrap_or_default() as i32,
                        value: l.value,
                        time_ms: l.time_ms,
                        first_seq: l.first_seq,
                        seqs: l.seqs,
                    })
                    .collect::<Vec<_>>();
                if !index.is_empty() && !send(Ok(VerifyLogPart { index, ..Default::default() })).await {
                    return;
                }
                match page.resume {
                    Some(key) => after = Some(key),
                    None => return,
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn get_policy(&self, req: Request<GetPolicyRequest>) -> Result<Response<PolicyVersion>, Status> {
        let caller = self.caller(&req, "GetPolicy").await?;
        let why = self.why(&caller, req.get_ref().reason.as_ref(), None).await?;
        let version = req.get_ref().version.trim().to_owned();
        self.log_read(&caller, format!("GetPolicy {version}"), None, "", &why).await?;
        crate::admin_policy::get_policy(&self.state, req.get_ref()).await.map(Response::new)
    }
}
