//! The auditor's pages. Every gateway call here is an ordinary `Audit` call
//! under the auditor's certificate and officer name, so each page read is
//! itself a LOG_READ record; every result is verified in this process.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Extension;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use http::{StatusCode, header};
use isx_audit::checkpoint::Verified;
use isx_audit::verify;
use isx_core::wire::{AuditBundle, AuditEntry, Checkpoint, ReadPurpose, ReadReason, SearchRequest};
use isx_node::audit as client_audit;
use isx_node::{Client, ClientOptions};
use minijinja::context;
use serde::Serialize;
use tonic::Code;

use crate::app::{FormPairs, Pages};
use crate::charts::{self, Tally};
use crate::error::ConsoleError;
use crate::facets::{self, FieldError, Form};
use crate::text::{Proof, RecordView, csv_field};

/// Most stored cursors and reports; the oldest goes first.
const STASH: usize = 64;

/// Alerts of a subject report whose erasures it asks for.
const ERASURE_LOOKUPS: usize = 25;

/// Most entries one search page asks for, and pages a report reads.
const PAGE: u32 = 1000;

/// Values kept under random ids (so that no URL or page carries what they
/// hold), the newest [`STASH`] of them.
struct Stash<T> {
    items: VecDeque<(String, T)>,
}

impl<T: Clone> Stash<T> {
    fn new() -> Self {
        Self { items: VecDeque::new() }
    }

    fn put(&mut self, value: T) -> String {
        let id = crate::session::Session::random_token()[..24].to_owned();
        if self.items.len() >= STASH {
            self.items.pop_front();
        }
        self.items.push_back((id.clone(), value));
        id
    }

    fn get(&self, id: &str) -> Option<T> {
        self.items.iter().find(|(k, _)| k == id).map(|(_, v)| v.clone())
    }
}

/// A search to continue or export: the request and its description.
#[derive(Clone)]
struct Stored {
    req: SearchRequest,
    what: String,
}

/// A subject report, kept for its CSV and its bundle.
#[derive(Clone)]
struct Report {
    req: SearchRequest,
    rows: Vec<RecordView>,
}

/// The state of the latest verification.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct Scan {
    running: bool,
    what: String,
    done: u64,
    total: u64,
    /// The last finished run's result.
    result: Option<ScanResult>,
    #[serde(skip)]
    tally: Option<Tally>,
}

#[derive(Debug, Clone, Serialize)]
struct ScanResult {
    ok: bool,
    message: String,
    finished_at: String,
    elapsed_ms: u128,
}

/// The auditor's connection and the console's memory of its work.
pub(crate) struct Auditor {
    client: Client,
    options: ClientOptions,
    trust: verify::Trust,
    /// Why its pages read the log (recorded with every read).
    reason: ReadReason,
    text_key: Option<isx_store::StoreKey>,
    cursors: Mutex<Stash<Stored>>,
    reports: Mutex<Stash<Report>>,
    scan: Arc<Mutex<Scan>>,
    /// How many verifications have finished (tests wait on it).
    finished: tokio::sync::watch::Sender<u64>,
}

/// A failure a page shows: a field, the gateway, or the log's verification.
enum Failure {
    Field(FieldError),
    Gateway(tonic::Status),
    Verify(String),
    Gone(&'static str),
}

impl From<FieldError> for Failure {
    fn from(e: FieldError) -> Self {
        Self::Field(e)
    }
}

impl From<client_audit::AuditClientError> for Failure {
    fn from(e: client_audit::AuditClientError) -> Self {
        match e {
            client_audit::AuditClientError::Status(s) => Self::Gateway(s),
            other => Self::Verify(other.to_string()),
        }
    }
}

impl From<verify::VerifyError> for Failure {
    fn from(e: verify::VerifyError) -> Self {
        Self::Verify(format!("VERIFICATION FAILED: {e}"))
    }
}

/// The state of the auditor's pages.
pub(crate) struct Ctx {
    pub(crate) pages: Arc<Pages>,
    pub(crate) auditor: Option<Auditor>,
}

impl Ctx {
    fn page(&self, template: &str, ctx: minijinja::Value) -> Response {
        self.pages.page(template, ctx)
    }

    fn error(&self, status: StatusCode, title: &str, message: &str) -> Response {
        self.pages.error(status, title, message)
    }

    fn failure(&self, f: Failure) -> Response {
        match f {
            Failure::Field(e) => self.error(StatusCode::BAD_REQUEST, "Check the form", &e.to_string()),
            Failure::Gateway(s) => {
                let status = match s.code() {
                    Code::PermissionDenied | Code::Unauthenticated => StatusCode::FORBIDDEN,
                    Code::InvalidArgument => StatusCode::BAD_REQUEST,
                    Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
                    _ => StatusCode::BAD_GATEWAY,
                };
                let message = format!("{} ({})", s.message(), isx_node::code_name(s.code()));
                self.error(status, "The gateway refused", &message)
            }
            Failure::Verify(m) => self.error(StatusCode::BAD_GATEWAY, "The log does not verify", &m),
            Failure::Gone(what) => self.error(StatusCode::NOT_FOUND, "Start again", what),
        }
    }

    fn auditor(&self) -> Result<&Auditor, Response> {
        self.auditor.as_ref().ok_or_else(|| {
            self.error(
                StatusCode::NOT_FOUND,
                "No gateway",
                "the auditor's pages need a gateway: start the console with --as auditor --pki DIR --gateway ADDR --officer NAME (or --node-config FILE)",
            )
        })
    }
}

impl Auditor {
    /// Connects as `options` (explaining a refused connection as the CLI does).
    pub(crate) async fn connect(
        options: &ClientOptions,
        trust: verify::Trust,
        reason: ReadReason,
    ) -> Result<Self, ConsoleError> {
        if let Err(e) = isx_core::read_reason::check(Some(&reason)) {
            return Err(ConsoleError::Reason(e));
        }
        let client =
            isx_node::diagnose::connect(options).await.map_err(|e| ConsoleError::Gateway(isx_node::error_chain(&e)))?;
        Ok(Self {
            client,
            options: options.clone(),
            trust,
            reason,
            text_key: isx_audit::keys::load_text_key(&options.pki_dir).ok(),
            cursors: Mutex::new(Stash::new()),
            reports: Mutex::new(Stash::new()),
            scan: Arc::new(Mutex::new(Scan::default())),
            finished: tokio::sync::watch::channel(0).0,
        })
    }

    /// Who receives an export unless the form says otherwise: the console's
    /// own auditor, downloading it.
    fn export_to(&self) -> String {
        format!("{} ({}), downloaded from the console", self.options.node, self.options.officer)
    }

    /// Waits until `n` verifications have finished.
    #[cfg(test)]
    pub(crate) async fn finished(&self, n: u64) {
        let mut rx = self.finished.subscribe();
        let _ = rx.wait_for(|done| *done >= n).await;
    }

    /// The first subject pseudonym of the first collection among `rows`.
    fn first_pseudonym(&self, rows: &[RecordView]) -> Option<String> {
        rows.iter().find(|r| r.operation == "collection").and_then(|r| r.pseudonyms.first().cloned())
    }

    /// A stored search (`cursor`) or report (`report`).
    fn stored(&self, cursor: Option<&str>, report: Option<&str>) -> Option<Stored> {
        if let Some(id) = cursor {
            return self.cursors.lock().expect("cursor lock").get(id);
        }
        let r = self.reports.lock().expect("report lock").get(report?)?;
        Some(Stored { what: facets::describe(&r.req), req: r.req })
    }

    fn checkpoint(&self, cp: Option<&Checkpoint>) -> Result<Verified, Failure> {
        let cp = cp.ok_or_else(|| Failure::Verify("the gateway sent no checkpoint".into()))?;
        Ok(self.trust.check(cp)?.checkpoint)
    }

    /// Opens sealed justifications when the console holds `audit-text.key`.
    fn open(&self, entries: &mut [AuditEntry]) {
        let Some(key) = &self.text_key else { return };
        for r in entries.iter_mut().filter_map(|e| e.record.as_mut()) {
            if let Some(clear) = isx_audit::text::open(key, r) {
                r.justification = clear;
                r.justification_sealed.clear();
            }
        }
    }

    /// Rows of `entries`, each proof checked against `cp`. The sealed text
    /// is opened after the check (the proof covers the sealed bytes).
    fn rows(&self, mut entries: Vec<AuditEntry>, cp: &Verified) -> Vec<RecordView> {
        let proofs: Vec<Option<Proof>> = entries.iter().map(|e| Proof::of(e, cp)).collect();
        self.open(&mut entries);
        entries.iter().zip(proofs).map(|(e, p)| RecordView::with_proof(e, p)).collect()
    }

    /// Every record matching `req`, oldest first, page by page (bounded by
    /// the log's size at the first page). Each page's proofs are checked
    /// against that page's own checkpoint: the log grows between pages (each
    /// page read is itself recorded). Returns the rows and the last
    /// checkpoint.
    async fn all(&self, mut req: SearchRequest) -> Result<(Vec<RecordView>, Verified), Failure> {
        req.newest_first = false;
        req.limit = PAGE;
        let mut rows = Vec::new();
        let mut bound = u64::MAX;
        let mut pages = 0u64;
        loop {
            let page = client_audit::search(&self.client, &self.reason, req.clone()).await?;
            let cp = self.checkpoint(page.checkpoint.as_ref())?;
            bound = bound.min(cp.size / u64::from(PAGE) + 2);
            pages += 1;
            let last = page.entries.last().map(|e| e.seq);
            rows.extend(self.rows(page.entries, &cp));
            match last {
                Some(seq) if page.more && pages < bound => req.after_seq = seq,
                _ => return Ok((rows, cp)),
            }
        }
    }
}

/// `GET /`: the overview.
pub(crate) async fn overview(State(app): State<Arc<Ctx>>) -> Response {
    let a = match app.auditor() {
        Ok(a) => a,
        Err(_) if app.pages.has_policy => return Redirect::to("/policy").into_response(),
        Err(r) => return r,
    };
    let cp = match client_audit::checkpoint(&a.client, &a.reason).await {
        Ok(cp) => cp,
        Err(e) => return app.failure(e.into()),
    };
    let attested = match a.trust.check(&cp) {
        Ok(v) => v,
        Err(e) => return app.failure(e.into()),
    };
    let verified = attested.checkpoint.clone();
    // The newest record the checkpoint covers tells its age.
    let newest = if verified.size > 0 {
        match client_audit::entries(&a.client, &a.reason, verified.size - 1, verified.size).await {
            Ok(entries) => entries.into_iter().next().and_then(|e| e.record).and_then(|r| r.time),
            Err(e) => return app.failure(e.into()),
        }
    } else {
        None
    };
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64);
    let age_of = |ms: u64| {
        let secs = now.as_ref().map_or(0, |now| now.saturating_sub(ms)) / 1000;
        match secs {
            0..=119 => format!("{secs} s"),
            120..=7199 => format!("{} min", secs / 60),
            _ => format!("{} h", secs / 3600),
        }
    };
    let age = newest.as_ref().map(|t| age_of(isx_core::timestamp::to_unix_millis(t)));
    let witnessed_age = cp.witnessed.then(|| age_of(cp.witnessed_at_ms));
    let witnessed_at = cp.witnessed.then(|| {
        isx_core::timestamp::rfc3339(&prost_types::Timestamp {
            seconds: (cp.witnessed_at_ms / 1000) as i64,
            nanos: ((cp.witnessed_at_ms % 1000) * 1_000_000) as i32,
        })
    });
    let first = {
        let s = a.scan.lock().expect("scan lock");
        s.result.is_none() && !s.running
    };
    if first {
        start_scan(a, "console overview: charts from a full verification");
    }
    let scan = a.scan.lock().expect("scan lock").clone();
    let (ops, denials) = match &scan.tally {
        Some(t) => {
            let series = t.by_operation(24);
            let denials = t.denials();
            (
                Some((charts::stacked_columns(&series, "Records by operation over time"), series)),
                Some((charts::bars(&denials, "Denials and refusals by rule"), denials)),
            )
        }
        None => (None, None),
    };
    app.page(
        "overview.html",
        context! {
            size => verified.size,
            origin => &verified.origin,
            root => hex::encode(verified.root),
            key => &cp.verifier_key,
            pinned => attested.pinned,
            quorum => &attested.quorum,
            note => &cp.note,
            witnessed => cp.witnessed,
            cosigners => &cp.cosigners,
            witnessed_at,
            witnessed_age,
            signed_size => cp.signed_size,
            newest => newest.as_ref().map(isx_core::timestamp::rfc3339),
            age,
            scan => &scan,
            ops_svg => ops.as_ref().map(|(svg, _)| minijinja::Value::from_safe_string(svg.clone())),
            ops_series => ops.as_ref().map(|(_, s)| s),
            denials_svg => denials.as_ref().map(|(svg, _)| minijinja::Value::from_safe_string(svg.clone())),
            denials => denials.as_ref().map(|(_, d)| d),
            records => scan.tally.as_ref().map(|t| t.records),
            node => a.options.node.as_str(),
        },
    )
}

/// Starts a verification in the background unless one runs.
fn start_scan(a: &Auditor, justification: &str) -> bool {
    {
        let mut s = a.scan.lock().expect("scan lock");
        if s.running {
            return false;
        }
        s.running = true;
        s.done = 0;
        s.total = 0;
        s.what = "starting".into();
    }
    let (client, key, scan, justification, finished) =
        (a.client.clone(), a.trust.live_key(), a.scan.clone(), justification.to_owned(), a.finished.clone());
    // A verification is read for the integrity of the log, in the console's case.
    let reason = isx_core::read_reason::reason(ReadPurpose::Integrity, &a.reason.case_reference);
    tokio::spawn(async move {
        let started = Instant::now();
        let mut tally = Tally::default();
        let progress_scan = scan.clone();
        let progress = move |what: &str, done: u64, total: u64| {
            let mut s = progress_scan.lock().expect("scan lock");
            s.what = what.to_owned();
            s.done = done;
            s.total = total;
        };
        let result = client_audit::verify_live_visit(
            &client,
            &reason,
            key.as_deref(),
            None,
            &justification,
            &progress,
            &mut |r| tally.add(r),
        )
        .await;
        let (ok, message) = match result {
            Ok(r) => (
                true,
                format!(
                    "OK: {} records ({} with their bodies hashed again, {} pruned{}) make the root of the checkpoint signed for {} records; {}{}",
                    r.bodies + r.pruned + r.withheld,
                    r.bodies,
                    r.pruned,
                    match r.withheld {
                        0 => String::new(),
                        n => format!(", {n} withheld as outside your scope"),
                    },
                    r.checkpoint.tree_size,
                    match &r.scope {
                        Some(scope) => format!("index not checked (scoped: {scope})"),
                        None => format!("{} index entries match the records", r.index_entries),
                    },
                    if key.is_some() { "; the checkpoint is signed with the pinned key" } else { "" }
                ),
            ),
            Err(e) => (false, e.to_string()),
        };
        let mut s = scan.lock().expect("scan lock");
        s.running = false;
        s.what = "done".into();
        s.result = Some(ScanResult {
            ok,
            message,
            finished_at: isx_core::timestamp::rfc3339(&isx_core::timestamp::from_unix_millis(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_millis() as u64)
                    .unwrap_or(0),
            )),
            elapsed_ms: started.elapsed().as_millis(),
        });
        s.tally = ok.then_some(tally);
        drop(s);
        finished.send_modify(|n| *n += 1);
    });
    true
}

/// `POST /verify`: "verify now".
pub(crate) async fn verify_now(State(app): State<Arc<Ctx>>) -> Response {
    let a = match app.auditor() {
        Ok(a) => a,
        Err(r) => return r,
    };
    start_scan(a, "console: verify now");
    Redirect::to("/#verify").into_response()
}

/// `GET /verify/status`: the running verification, as JSON, for the progress bar.
pub(crate) async fn verify_status(State(app): State<Arc<Ctx>>) -> Response {
    let a = match app.auditor() {
        Ok(a) => a,
        Err(r) => return r,
    };
    let scan = a.scan.lock().expect("scan lock").clone();
    ([(header::CONTENT_TYPE, "application/json")], serde_json::to_string(&scan).unwrap_or_default()).into_response()
}

/// Suggestions for the search form's facets, from the last verification.
fn suggestions(a: &Auditor) -> minijinja::Value {
    let scan = a.scan.lock().expect("scan lock");
    let t = scan.tally.clone().unwrap_or_default();
    context! { nodes => t.nodes, purposes => t.purposes, officers => t.officers }
}

/// `GET /search`: the form.
pub(crate) async fn search_form(State(app): State<Arc<Ctx>>) -> Response {
    let a = match app.auditor() {
        Ok(a) => a,
        Err(r) => return r,
    };
    app.page("search.html", context! { operations => facets::operation_names(), suggest => suggestions(a) })
}

/// `POST /search`: a page of results, or the next page of a stored search (`cursor`).
pub(crate) async fn search(State(app): State<Arc<Ctx>>, Extension(FormPairs(pairs)): Extension<FormPairs>) -> Response {
    let a = match app.auditor() {
        Ok(a) => a,
        Err(r) => return r,
    };
    match run_search(a, pairs).await {
        Ok(ctx) => app.page(
            "search.html",
            context! { ..ctx, ..context! { operations => facets::operation_names(), suggest => suggestions(a) } },
        ),
        Err(f) => app.failure(f),
    }
}

async fn run_search(a: &Auditor, pairs: Vec<(String, String)>) -> Result<minijinja::Value, Failure> {
    let form = Form::parse(pairs, facets::FIELDS)?;
    let stored = match form.get("cursor") {
        Some(id) => a.cursors.lock().expect("cursor lock").get(id).ok_or(Failure::Gone(
            "that page's cursor has expired (the console keeps the latest 64): run the search again",
        ))?,
        None => {
            let mut req = facets::search_request(&form)?;
            if req.justification.is_empty() {
                req.justification = "isx console search".into();
            }
            Stored { what: facets::describe(&req), req }
        }
    };
    let page = client_audit::search(&a.client, &a.reason, stored.req.clone()).await?;
    let cp = a.checkpoint(page.checkpoint.as_ref())?;
    let next = match page.entries.last() {
        Some(last) if page.more => {
            let mut req = stored.req.clone();
            if req.newest_first {
                req.before_seq = last.seq;
            } else {
                req.after_seq = last.seq;
            }
            Some(a.cursors.lock().expect("cursor lock").put(Stored { req, what: stored.what.clone() }))
        }
        _ => None,
    };
    // The export covers the whole search, not only this page.
    let whole = SearchRequest { after_seq: 0, before_seq: 0, ..stored.req.clone() };
    let export = a.cursors.lock().expect("cursor lock").put(Stored { req: whole, what: stored.what.clone() });
    let rows = a.rows(page.entries, &cp);
    let verified = rows.iter().filter(|r| r.proof.as_ref().is_some_and(|p| p.ok)).count();
    Ok(context! {
        searched => true,
        what => stored.what,
        rows => &rows,
        verified,
        tree_size => cp.size,
        next,
        export,
        pki => a.options.pki_dir.display().to_string(),
        export_to => a.export_to(),
    })
}

/// `POST /export`: the bundle of a stored search or report, as a download.
pub(crate) async fn export(State(app): State<Arc<Ctx>>, Extension(FormPairs(pairs)): Extension<FormPairs>) -> Response {
    let a = match app.auditor() {
        Ok(a) => a,
        Err(r) => return r,
    };
    let form = match Form::parse(pairs, &["export_to"]) {
        Ok(f) => f,
        Err(e) => return app.failure(e.into()),
    };
    let Some(to) = form.get("export_to").map(str::to_owned) else {
        return app.failure(Failure::Field(FieldError {
            field: "export_to".into(),
            message: "say who receives the bundle, e.g. \"Tribunal judiciaire de Lyon\" (recorded with the export)"
                .into(),
        }));
    };
    let stored = a.stored(form.get("cursor"), form.get("report"));
    let Some(stored) = stored else {
        return app.failure(Failure::Gone("that search or report has expired: run it again, then export"));
    };
    let mut filter = stored.req;
    filter.justification = "isx console export".into();
    let bundle = match client_audit::export(&a.client, &a.reason, &to, filter).await {
        Ok(b) => b,
        Err(e) => return app.failure(e.into()),
    };
    let name = format!("isx-bundle-{}.json", bundle.checkpoint.as_ref().map(|c| c.tree_size).unwrap_or(0));
    (
        [
            (header::CONTENT_TYPE, "application/json".to_owned()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{name}\"")),
        ],
        isx_core::json::to_json(&bundle),
    )
        .into_response()
}

/// `GET /subject`: the report's form.
pub(crate) async fn subject_form(State(app): State<Arc<Ctx>>) -> Response {
    if let Err(r) = app.auditor() {
        return r;
    }
    app.page("subject.html", context! {})
}

/// What a subject report's row says happened, in words.
fn happened(r: &RecordView) -> String {
    let recipients = |rs: &[crate::text::Recipient]| {
        rs.iter().map(|x| format!("{} {}", x.node, x.level)).collect::<Vec<_>>().join(", ")
    };
    match r.operation.as_str() {
        "collection" if r.detail.starts_with("relays ") => {
            format!("relayed by {} as {}; to {}", r.node, r.alert_id, recipients(&r.recipients))
        }
        "collection" => format!("published by {}; to {}", r.node, recipients(&r.recipients)),
        "disclosure" => format!("delivered to {} ({})", r.node, r.level),
        "denial" => {
            let who = if r.recipients.is_empty() { r.node.clone() } else { recipients(&r.recipients) };
            format!("refused: {who}")
        }
        "consultation" => {
            let shown = r.hits.iter().filter(|h| h.shown).count();
            format!("lookup by {}: {shown} hit(s) shown, {} withheld", r.node, r.hits.len() - shown)
        }
        "access_request" => {
            let holders: Vec<&str> = r.recipients.iter().map(|x| x.node.as_str()).collect();
            format!("{} asked {} for follow-up", r.node, holders.join(", "))
        }
        "log_read" if !r.officer.is_empty() => format!("audit log read by {} ({})", r.node, r.officer),
        "change_confirmed" => format!(
            "{} confirmed its copy: {} at version {}",
            r.node,
            r.lifecycle.as_ref().map(|l| l.confirmed.as_str()).unwrap_or_default(),
            r.lifecycle.as_ref().map(|l| l.new_version).unwrap_or_default()
        ),
        "hit_closed" => {
            format!("hit shown to {} closed without follow-up ({})", r.node, crate::open_hits::reason(&r.detail))
        }
        "access_decision" => format!("{}: {}", r.node, r.detail),
        "erasure" => format!("erased: {}", r.detail),
        "log_read" => format!("audit log read by {}", r.node),
        _ => r.detail.clone(),
    }
}

/// `POST /subject`: every record that touched a person.
pub(crate) async fn subject(
    State(app): State<Arc<Ctx>>,
    Extension(FormPairs(pairs)): Extension<FormPairs>,
) -> Response {
    let a = match app.auditor() {
        Ok(a) => a,
        Err(r) => return r,
    };
    let started = Instant::now();
    let result = async {
        let form = Form::parse(pairs, facets::FIELDS)?;
        let mut req = facets::search_request(&form)?;
        if req.subject_identifier.is_empty() && req.subject_pseudonym.is_empty() {
            return Err(Failure::Field(FieldError {
                field: "document_number".into(),
                message: "a subject report needs an identifier: a document, a name with date of birth, a plate, a firearm or a pseudonym".into(),
            }));
        }
        if req.justification.is_empty() {
            req.justification = "isx console subject report".into();
        }
        let (mut rows, mut cp) = a.all(req.clone()).await?;
        // An expired alert's erasure names the alert, not its subjects: ask
        // for the erasures of the alerts this person is in (a bounded number
        // of audited reads; the rest are in each alert's history).
        let mut alerts: Vec<String> = rows
            .iter()
            .filter(|r| r.operation == "collection")
            .map(|r| r.alert_id.clone())
            .collect();
        alerts.sort();
        alerts.dedup();
        let unasked = alerts.len().saturating_sub(ERASURE_LOOKUPS);
        for alert_id in alerts.into_iter().take(ERASURE_LOOKUPS) {
            let erasures = SearchRequest {
                alert_id,
                operation: isx_core::wire::Operation::Erasure as i32,
                justification: req.justification.clone(),
                ..Default::default()
            };
            let (found, last) = a.all(erasures).await?;
            rows.extend(found);
            cp = last;
        }
        rows.sort_by_key(|r| r.seq);
        rows.dedup_by_key(|r| r.seq);
        Ok::<_, Failure>((req, rows, cp, unasked))
    }
    .await;
    let (req, rows, cp, unasked) = match result {
        Ok(x) => x,
        Err(f) => return app.failure(f),
    };
    let said: Vec<String> = rows.iter().map(happened).collect();
    let id = a.reports.lock().expect("report lock").put(Report { req: req.clone(), rows: rows.clone() });
    app.page(
        "subject.html",
        context! {
            reported => true,
            unasked,
            reads => rows.iter().filter(|r| r.operation == "log_read").count(),
            what => facets::describe(&req),
            rows => &rows,
            said,
            report => id,
            tree_size => cp.size,
            verified => rows.iter().filter(|r| r.proof.as_ref().is_some_and(|p| p.ok)).count(),
            elapsed_ms => started.elapsed().as_millis() as u64,
            pki => a.options.pki_dir.display().to_string(),
            export_to => a.export_to(),
        },
    )
}

/// `POST /subject/csv`: a stored report as CSV.
pub(crate) async fn subject_csv(
    State(app): State<Arc<Ctx>>,
    Extension(FormPairs(pairs)): Extension<FormPairs>,
) -> Response {
    let a = match app.auditor() {
        Ok(a) => a,
        Err(r) => return r,
    };
    let report = Form::parse(pairs, &[])
        .ok()
        .and_then(|f| f.get("report").and_then(|id| a.reports.lock().expect("report lock").get(id)));
    let Some(report) = report else {
        return app.failure(Failure::Gone("that report has expired: run it again, then download"));
    };
    let mut csv =
        String::from("seq,time,operation,node,officer,alert_id,level,recipients,rules,withheld,purpose,detail,proof\n");
    for r in &report.rows {
        let recipients = r.recipients.iter().map(|x| format!("{}:{}", x.node, x.level)).collect::<Vec<_>>().join(" ");
        let fields = [
            r.seq.to_string(),
            r.time.clone(),
            r.operation.clone(),
            r.node.clone(),
            r.officer.clone(),
            r.alert_id.clone(),
            r.level.clone(),
            recipients,
            r.policies.join(" "),
            r.withheld.join(" "),
            r.purpose.clone(),
            r.detail.clone(),
            r.proof.as_ref().map(|p| if p.ok { "verified" } else { "FAILED" }).unwrap_or("-").to_owned(),
        ];
        csv.push_str(&fields.iter().map(|f| csv_field(f)).collect::<Vec<_>>().join(","));
        csv.push('\n');
    }
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (header::CONTENT_DISPOSITION, "attachment; filename=\"isx-subject-report.csv\""),
        ],
        csv,
    )
        .into_response()
}

/// The query of `GET /alert`.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct AlertQuery {
    id: Option<String>,
}

/// `GET /alert?id=ID`: one alert's life as a timeline.
pub(crate) async fn alert_history(State(app): State<Arc<Ctx>>, Query(q): Query<AlertQuery>) -> Response {
    let a = match app.auditor() {
        Ok(a) => a,
        Err(r) => return r,
    };
    let Some(id) = q.id.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()) else {
        return app.page("alert.html", context! {});
    };
    if id.len() > 128 || !id.chars().all(|c| c.is_ascii_alphanumeric() || "-_.:/".contains(c)) {
        return app.failure(Failure::Field(FieldError {
            field: "id".into(),
            message: "an alert id is letters, digits and - _ . : / (at most 128)".into(),
        }));
    }
    let req =
        SearchRequest { alert_id: id.clone(), justification: "isx console alert history".into(), ..Default::default() };
    let (rows, cp) = match a.all(req).await {
        Ok(x) => x,
        Err(f) => return app.failure(f),
    };
    // Relayed copies are alerts of their own: their collections name this
    // one ("relays ID") and share its subjects, so one more search by the
    // first subject's pseudonym finds them.
    let mut rows = rows;
    let pseudonym = a.first_pseudonym(&rows);
    if let Some(p) = pseudonym {
        let req = SearchRequest {
            subject_pseudonym: p,
            operation: isx_core::wire::Operation::Collection as i32,
            justification: "isx console alert history: relayed copies".into(),
            ..Default::default()
        };
        match a.all(req).await {
            Ok((copies, _)) => {
                let relays = format!("relays {id} ");
                rows.extend(copies.into_iter().filter(|r| r.alert_id != id && r.detail.contains(&relays)));
                rows.sort_by_key(|r| r.seq);
            }
            Err(f) => return app.failure(f),
        }
    }
    // Auditors' own reads of this alert are not its life; they are counted apart.
    let reads = rows.iter().filter(|r| r.operation == "log_read").count();
    let life: Vec<&RecordView> = rows.iter().filter(|r| r.operation != "log_read").collect();
    let said: Vec<String> = life.iter().map(|r| happened(r)).collect();
    let expired = life.iter().any(|r| r.operation == "erasure");
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default();
    let own: Vec<RecordView> = life.iter().filter(|r| r.alert_id == id).map(|r| (*r).clone()).collect();
    let lifecycle = crate::lifecycle::history(&own, now_ms);
    app.page(
        "alert.html",
        context! {
            id,
            rows => &life,
            said,
            reads,
            expired,
            lifecycle,
            tree_size => cp.size,
            collected => life.iter().any(|r| r.operation == "collection"),
        },
    )
}

/// The query of `GET /hits`.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct HitsQuery {
    node: Option<String>,
}

/// `GET /hits?node=ID`: the open hits of one node (or of every node), from
/// the log: hits shown, minus those requested, declined or closed, and the
/// hits closed without follow-up with their reason.
pub(crate) async fn open_hits(State(app): State<Arc<Ctx>>, Query(q): Query<HitsQuery>) -> Response {
    let a = match app.auditor() {
        Ok(a) => a,
        Err(r) => return r,
    };
    let node = q.node.map(|s| s.trim().to_owned()).unwrap_or_default();
    if node.len() > 64 || !node.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
        return app.failure(Failure::Field(FieldError {
            field: "node".into(),
            message: "a node id is letters, digits and - _ . (at most 64)".into(),
        }));
    }
    use isx_core::wire::Operation;
    let mut rows = Vec::new();
    let mut size = 0;
    for op in [Operation::Consultation, Operation::AccessRequest, Operation::FollowUpDeclined, Operation::HitClosed] {
        let req = SearchRequest {
            node: node.clone(),
            operation: op as i32,
            justification: "isx console open hits".into(),
            ..Default::default()
        };
        match a.all(req).await {
            Ok((found, cp)) => {
                rows.extend(found);
                size = cp.size;
            }
            Err(f) => return app.failure(f),
        }
    }
    let hits = crate::open_hits::derive(&rows);
    app.page(
        "hits.html",
        context! {
            node,
            hits,
            read => rows.len(),
            verified => rows.iter().filter(|r| r.proof.as_ref().is_some_and(|p| p.ok)).count(),
            tree_size => size,
        },
    )
}

/// `GET /bundle`: the upload form.
pub(crate) async fn bundle_form(State(app): State<Arc<Ctx>>) -> Response {
    app.page("bundle.html", context! {})
}

/// `POST /bundle`: verifies an uploaded bundle entry by entry.
pub(crate) async fn bundle_open(
    State(app): State<Arc<Ctx>>,
    Extension(FormPairs(pairs)): Extension<FormPairs>,
) -> Response {
    let form = match Form::parse(pairs, &["bundle", "name"]) {
        Ok(f) => f,
        Err(e) => return app.failure(e.into()),
    };
    let Some(text) = form.get("bundle") else {
        return app.failure(Failure::Field(FieldError {
            field: "bundle".into(),
            message: "choose a bundle file (isx audit export --out, or the console's export) or paste its JSON".into(),
        }));
    };
    let name = form.get("name").unwrap_or("the bundle").to_owned();
    let bundle: AuditBundle = match isx_core::json::from_json(text, &name) {
        Ok(b) => b,
        Err(e) => {
            return app.failure(Failure::Field(FieldError {
                field: "bundle".into(),
                message: format!("not an audit bundle: {e}"),
            }));
        }
    };
    let trust = app.auditor.as_ref().map(|a| a.trust.clone()).unwrap_or_default();
    let checkpoint = bundle.checkpoint.as_ref().map(|cp| trust.check(cp));
    let (cp, cp_message) = match checkpoint {
        None => (None, "the bundle has no checkpoint: no entry can be verified".to_owned()),
        Some(Err(e)) => (None, format!("the checkpoint does not verify: {e}")),
        Some(Ok(a)) => {
            let how = if a.pinned {
                "signed with the pinned key"
            } else {
                "signed with the key inside the bundle; start the console with --key audit.pub to pin the gateway's key"
            };
            let witnessed = match &a.quorum {
                Some(q) => format!(
                    "; cosigned by {} (the witness policy's quorum, {q}, is met)",
                    if a.cosigners.is_empty() {
                        "no witness".to_owned()
                    } else {
                        a.cosigners.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(", ")
                    }
                ),
                None => String::new(),
            };
            let m = format!("checkpoint of {} records ({}), {how}{witnessed}", a.checkpoint.size, a.checkpoint.origin);
            (Some(a.checkpoint), m)
        }
    };
    let note = bundle.checkpoint.as_ref().map(|cp| cp.note.clone()).unwrap_or_default();
    let mut seen = std::collections::HashSet::new();
    let rows: Vec<RecordView> = bundle
        .entries
        .iter()
        .map(|e| {
            let mut v = RecordView::of(e, cp.as_ref());
            if !seen.insert(e.seq)
                && let Some(p) = v.proof.as_mut()
            {
                p.ok = false;
                p.verdict = format!("entry {} appears twice", e.seq);
            }
            // From version 2 each entry carries its C2SP tlog-proof: it must be
            // exactly its proof in the bundle's checkpoint (isx_audit::proof).
            // (After the entry's own checks: a row shows its first failure.)
            if let Some(p) = v.proof.as_mut().filter(|p| p.ok)
                && let Err(err) = verify::tlog_proof(bundle.version, e, &note)
            {
                p.ok = false;
                p.verdict = err.to_string();
            }
            if cp.is_none() {
                v.proof = Some(Proof::verdict(e, false, cp_message.clone()));
            }
            v
        })
        .collect();
    let failed = rows.iter().filter(|r| !r.proof.as_ref().is_some_and(|p| p.ok)).count();
    app.page(
        "bundle.html",
        context! {
            opened => true,
            name,
            description => &bundle.description,
            exported_at => bundle.exported_at.as_ref().map(isx_core::timestamp::rfc3339),
            checkpoint_ok => cp.is_some(),
            cp_message,
            rows => &rows,
            failed,
            ok => cp.is_some() && failed == 0,
        },
    )
}
