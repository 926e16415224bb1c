//! Every handler against a real gateway over mTLS (a testkit topology on
//! 127.0.0.1:0), driven through the router as a browser would: the session
//! checks, bad input named on the page, the gateway's refusals shown, and
//! what each page finds.

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use http::{HeaderMap, Request, StatusCode, header};
use isx_core::wire::{Operation, SearchRequest};
use isx_testkit::{Topology, TopologySpec, samples};
use tower::ServiceExt;

use std::path::PathBuf;

use crate::server::{Built, build};
use crate::{ConsoleOptions, PolicySetup, auditor};

const LIMIT: Duration = Duration::from_secs(15);
const ADDR: &str = "127.0.0.1:4000";
const ORIGIN: &str = "http://127.0.0.1:4000";

fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").join(path)
}

/// The shipped policy and agencies, for the policy pages.
fn policy_setup(draft: Option<PathBuf>) -> PolicySetup {
    let config = isx_gateway::GatewayConfig::load(&repo("deploy/local/gateway.toml")).unwrap();
    PolicySetup {
        nodes: config.node_infos(),
        profile: config.redaction.clone(),
        policy_dir: repo("deploy/local/policy"),
        draft_dir: draft,
        alerts: isx_policy::matrix::sample_alerts(),
    }
}

struct Page {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

/// A console's router, held as a browser holding its session cookie.
struct Browser {
    built: Built,
}

impl Browser {
    async fn new(options: ConsoleOptions) -> Self {
        Self { built: build(&options, ADDR.parse::<SocketAddr>().unwrap()).await.expect("the console starts") }
    }

    fn token(&self) -> String {
        self.built.token.clone()
    }

    fn cookie(&self) -> String {
        format!("isx_console_4000={}", self.token())
    }

    async fn send(&self, req: Request<Body>) -> Page {
        let response = self.built.router.clone().oneshot(req).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
        // Entities back to characters, so that checks read as the page does
        // (minijinja escapes `/` and quotes too).
        let body = String::from_utf8_lossy(&bytes)
            .replace("&#x2f;", "/")
            .replace("&#x27;", "'")
            .replace("&quot;", "\"")
            .replace("&amp;", "&");
        Page { status, headers, body }
    }

    async fn get(&self, path: &str) -> Page {
        let req = Request::get(path).header("host", ADDR).header("cookie", self.cookie()).body(Body::empty()).unwrap();
        self.send(req).await
    }

    /// A POST of the console's own form: cookie, Origin and the form token.
    async fn post(&self, path: &str, fields: &[(&str, &str)]) -> Page {
        let mut form = form_urlencoded::Serializer::new(String::new());
        form.append_pair("_token", &self.token());
        for (k, v) in fields {
            form.append_pair(k, v);
        }
        let req = Request::post(path)
            .header("host", ADDR)
            .header("cookie", self.cookie())
            .header("origin", ORIGIN)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(form.finish()))
            .unwrap();
        self.send(req).await
    }

    fn auditor(&self) -> &auditor::Auditor {
        self.built.auditor.auditor.as_ref().unwrap()
    }
}

/// A topology with the trafficking alert delivered, and a console as the auditor.
async fn auditor_console() -> (Topology, Browser, isx_core::wire::Alert) {
    let topo = Topology::start(TopologySpec::default_agencies()).await.unwrap();
    let alert = samples::trafficking_victim("fr-police", &["de-police", "it-police", "europol"]);
    topo.client("fr-police").await.unwrap().publish(alert.clone()).await.unwrap();
    for node in ["de-police", "it-police", "europol"] {
        assert!(topo.inbox(node).wait_for(&alert.alert_id, LIMIT).await.unwrap().is_some());
    }
    let mut who = topo.client_options("auditor").unwrap();
    who.officer = "console-auditor".into();
    let console = Browser::new(ConsoleOptions { auditor: Some(who), ..Default::default() }).await;
    (topo, console, alert)
}

/// The value of the hidden field `name` in the first form that has one.
fn hidden(body: &str, name: &str) -> String {
    let at = body.find(&format!("name=\"{name}\" value=\"")).unwrap_or_else(|| panic!("no {name} in {body}"));
    let rest = &body[at + name.len() + 15..];
    rest[..rest.find('"').unwrap()].to_owned()
}

#[tokio::test]
async fn a_page_needs_the_session_and_the_printed_url_enters_it() {
    let b = Browser::new(ConsoleOptions { policy: Some(policy_setup(None)), ..Default::default() }).await;
    let bare = Request::get("/policy").header("host", ADDR).body(Body::empty()).unwrap();
    let page = b.send(bare).await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert!(page.body.contains("open the URL that `isx console` printed"), "{}", page.body);

    let enter = Request::get(format!("/policy?token={}", b.token())).header("host", ADDR).body(Body::empty()).unwrap();
    let page = b.send(enter).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(page.headers[header::LOCATION], "/policy");
    assert!(page.headers[header::SET_COOKIE].to_str().unwrap().starts_with(&b.cookie()));

    let page = b.get("/policy").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap().contains("default-src 'none'"));

    // Another site's page naming the console by a name of its own (DNS rebinding).
    let rebound = Request::get("/policy").header("host", "evil.example:4000").header("cookie", b.cookie());
    let page = b.send(rebound.body(Body::empty()).unwrap()).await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert!(page.body.contains("evil.example"), "{}", page.body);
}

#[tokio::test]
async fn a_post_needs_the_consoles_origin_and_its_form_token() {
    let b = Browser::new(ConsoleOptions { policy: Some(policy_setup(None)), ..Default::default() }).await;
    let post = |origin: Option<&str>, body: String| {
        let mut r = Request::post("/policy/draft")
            .header("host", ADDR)
            .header("cookie", b.cookie())
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        if let Some(o) = origin {
            r = r.header("origin", o);
        }
        r.body(Body::from(body)).unwrap()
    };
    let good = format!("_token={}&dir=", b.token());
    for (req, why) in [
        (post(None, good.clone()), "no Origin header"),
        (post(Some("http://evil.example"), good.clone()), "evil.example"),
        (post(Some(ORIGIN), "dir=".into()), "_token"),
        (post(Some(ORIGIN), "_token=guess&dir=".into()), "_token"),
    ] {
        let page = b.send(req).await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{why}");
        assert!(page.body.contains(why), "{why}: {}", page.body);
    }
    assert_eq!(b.send(post(Some(ORIGIN), good)).await.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn the_auditors_pages_find_verify_and_name_bad_input() {
    let (topo, b, alert) = auditor_console().await;
    let alert_id = alert.alert_id.clone();

    // The overview: the checkpoint, and a verification it starts for its charts.
    let page = b.get("/").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("records</dd>"), "{}", page.body);
    b.auditor().finished(1).await;
    let page = b.get("/").await;
    assert!(page.body.contains("data-ok=\"true\""), "{}", page.body);
    assert!(page.body.contains("Records by operation over time</title>"), "{}", page.body);
    assert!(page.body.contains("<th scope=\"row\">auditor-never-receives</th>") || page.body.contains("No denial"));

    // "Verify now" runs a second one.
    let page = b.post("/verify", &[]).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    b.auditor().finished(2).await;
    let status: serde_json::Value = serde_json::from_str(&b.get("/verify/status").await.body).unwrap();
    assert_eq!(status["running"], false);
    assert_eq!(status["result"]["ok"], true, "{status}");

    // A search by facets: every row's proof verified.
    let page = b.post("/search", &[("operation", "disclosure"), ("order", "oldest"), ("limit", "2")]).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert_eq!(page.body.matches("class=\"record\"").count(), 2, "{}", page.body);
    assert!(page.body.contains("data-verdict=\"ok\"") && !page.body.contains("data-verdict=\"bad\""));
    // The next page continues from a cursor.
    let next = hidden(&page.body, "cursor");
    let page2 = b.post("/search", &[("cursor", &next)]).await;
    assert_eq!(page2.status, StatusCode::OK);
    assert_eq!(page2.body.matches("class=\"record\"").count(), 1, "three disclosures in all: {}", page2.body);

    // Bad input is named on the page.
    for (fields, status, named) in [
        (vec![("colour", "red")], StatusCode::BAD_REQUEST, "colour: is not a field"),
        (vec![("from", "last tuesday")], StatusCode::BAD_REQUEST, "from: \"last tuesday\" is not a time"),
        (vec![("operation", "peek")], StatusCode::BAD_REQUEST, "operation"),
        (vec![("cursor", "nope")], StatusCode::NOT_FOUND, "cursor has expired"),
    ] {
        let page = b.post("/search", &fields).await;
        assert_eq!(page.status, status, "{fields:?}: {}", page.body);
        assert!(page.body.contains(named), "{fields:?}: {}", page.body);
    }

    // The subject report finds every record that touched the girl, and the
    // page never repeats her document number.
    let page = b.post("/subject", &[("document_country", "RO"), ("document_number", "RX771203")]).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    for said in ["published by fr-police", "delivered to de-police (full)", "delivered to europol (full)"] {
        assert!(page.body.contains(said), "{said}: {}", page.body);
    }
    assert!(!page.body.contains("RX771203"));
    let report = hidden(&page.body, "report");
    let csv = b.post("/subject/csv", &[("report", &report)]).await;
    assert_eq!(csv.headers[header::CONTENT_TYPE], "text/csv; charset=utf-8");
    assert!(csv.body.lines().any(|l| l.contains(",disclosure,de-police,") && l.ends_with(",verified")), "{}", csv.body);
    let page = b.post("/subject", &[("plate", "NO-SUCH-1")]).await;
    // Only the report's own read: the log records that the auditor looked.
    assert!(page.body.contains("1 record(s) touched this person (1 of them auditors' reads"), "{}", page.body);
    let page = b.post("/subject", &[("operation", "disclosure")]).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(page.body.contains("needs an identifier"));

    // Germany relays it (a copy of its own, which policy keeps from anyone new).
    let relay = isx_core::wire::Alert {
        alert_id: samples::new_alert_id(),
        origin: "de-police".into(),
        forwarded_from: alert_id.clone(),
        hops: 0,
        addressees: vec!["it-police".into(), "europol".into()],
        ..alert
    };
    topo.client("de-police").await.unwrap().publish(relay.clone()).await.unwrap();

    // The alert's history: its collection, each delivery, and the relay.
    let page = b.get(&format!("/alert?id={alert_id}")).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("data-operation=\"collection\""));
    assert_eq!(page.body.matches("<li class=\"event event-disclosure\"").count(), 3, "{}", page.body);
    assert!(page.body.contains(&format!("relayed by de-police as {}", relay.alert_id)), "{}", page.body);
    let page = b.get("/alert?id=%3Cscript%3E").await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);

    // Each of those reads is in the log under the auditor's officer name.
    let reads = topo
        .audit_records(SearchRequest {
            operation: Operation::LogRead as i32,
            officer: "console-auditor".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(reads.len() >= 8, "{} reads: {reads:?}", reads.len());
    topo.shutdown().await;
}

#[tokio::test]
async fn a_subject_report_shows_the_erasure_of_her_expired_alert() {
    let (topo, b, alert) = auditor_console().await;
    topo.advance_clock(Duration::from_secs(8 * 24 * 3600));
    let erased =
        SearchRequest { alert_id: alert.alert_id.clone(), operation: Operation::Erasure as i32, ..Default::default() };
    // Bounded: the sweeper runs every 100 ms; 300 looks are 30 s at most.
    let mut found = false;
    for _ in 0..300 {
        if !topo.audit_records(erased.clone()).await.unwrap().is_empty() {
            found = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(found, "the alert expired and was erased");
    let page = b.post("/subject", &[("document_country", "RO"), ("document_number", "RX771203")]).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("erased: expired: the alert and"), "{}", page.body);
    topo.shutdown().await;
}

#[tokio::test]
async fn an_exported_bundle_verifies_and_a_tampered_one_shows_the_changed_record() {
    let (topo, b, _) = auditor_console().await;
    let page = b.post("/search", &[("operation", "disclosure")]).await;
    let export = hidden(&page.body[page.body.find("action=\"/export\"").unwrap()..], "cursor");
    assert!(page.body.contains("name=\"export_to\""), "the form asks who receives the bundle");
    let refused = b.post("/export", &[("cursor", &export), ("export_to", " ")]).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert!(refused.body.contains("export_to: say who receives the bundle"), "{}", refused.body);
    let bundle = b.post("/export", &[("cursor", &export), ("export_to", "console test")]).await;
    assert_eq!(bundle.status, StatusCode::OK);
    assert!(bundle.headers[header::CONTENT_DISPOSITION].to_str().unwrap().starts_with("attachment"));
    // The console's reads name its purpose and case; the export its recipient.
    let reads = topo
        .audit_records(SearchRequest {
            officer: "console-auditor".into(),
            operation: Operation::LogRead as i32,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(reads.iter().all(|r| r.purpose == "self_monitoring" && r.case_reference == "console"), "{reads:?}");
    let exports: Vec<&str> =
        reads.iter().filter(|r| r.detail.starts_with("Export")).map(|r| r.export_recipient.as_str()).collect();
    assert_eq!(exports, ["console test"], "{reads:?}");

    let page = b.post("/bundle", &[("bundle", &bundle.body), ("name", "good.json")]).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("id=\"bundle-verdict\" data-ok=\"true\""), "{}", page.body);

    // One record's officer rewritten: that row, and only that row, fails.
    let mut json: serde_json::Value = serde_json::from_str(&bundle.body).unwrap();
    let seq = json["entries"][1]["seq"].as_str().unwrap().to_owned();
    json["entries"][1]["record"]["officer"] = "someone-else".into();
    let page = b.post("/bundle", &[("bundle", &json.to_string())]).await;
    assert!(page.body.contains("data-ok=\"false\""), "{}", page.body);
    assert!(page.body.contains("1 of 3 entries do not verify"), "{}", page.body);
    let row = &page.body[page.body.find(&format!("id=\"record-{seq}\"")).unwrap()..];
    let row = &row[..row.find("</tbody>").unwrap()];
    assert!(row.contains("data-verdict=\"bad\"") && row.contains("decoded record differs"), "{row}");

    for (text, named) in [("", "bundle: choose a bundle file"), ("{\"nope\": 1}", "bundle: not an audit bundle")] {
        let page = b.post("/bundle", &[("bundle", text)]).await;
        assert_eq!(page.status, StatusCode::BAD_REQUEST);
        assert!(page.body.contains(named), "{}", page.body);
    }
    topo.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_witness_policy_the_overview_and_bundles_show_the_cosigners_and_each_tlog_proof() {
    let mut spec = TopologySpec::default_agencies();
    spec.witnesses = vec!["witness".into()];
    let topo = Topology::start(spec).await.unwrap();
    let alert = samples::trafficking_victim("fr-police", &["de-police"]);
    topo.client("fr-police").await.unwrap().publish(alert.clone()).await.unwrap();
    assert!(topo.inbox("de-police").wait_for(&alert.alert_id, LIMIT).await.unwrap().is_some());
    let policy = isx_audit::policy::WitnessPolicy::load(&topo.witness_policy().unwrap()).unwrap();
    let mut who = topo.client_options("auditor").unwrap();
    who.officer = "console-auditor".into();
    let trust = isx_audit::verify::Trust::new(None, Some(policy)).unwrap();
    let b = Browser::new(ConsoleOptions { auditor: Some(who), trust, ..Default::default() }).await;

    let page = b.get("/").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("cosigned by witness"), "{}", page.body);
    assert!(page.body.contains("the witness policy's quorum (witness) is met"), "{}", page.body);
    assert!(page.body.contains("pinned (--key or --witness-policy)"), "{}", page.body);

    let found = b.post("/search", &[("operation", "disclosure")]).await;
    let export = hidden(&found.body[found.body.find("action=\"/export\"").unwrap()..], "cursor");
    let bundle = b.post("/export", &[("cursor", &export), ("export_to", "console test")]).await;
    let page = b.post("/bundle", &[("bundle", &bundle.body), ("name", "good.json")]).await;
    assert!(page.body.contains("id=\"bundle-verdict\" data-ok=\"true\""), "{}", page.body);
    assert!(page.body.contains("cosigned by witness (the witness policy's quorum, witness, is met)"), "{}", page.body);

    // The entry's tlog-proof names another index: that row fails.
    let mut json: serde_json::Value = serde_json::from_str(&bundle.body).unwrap();
    let entry = &mut json["entries"][0];
    let proof = entry["tlog_proof"].as_str().expect("each entry carries its tlog-proof").to_owned();
    let index = proof.lines().find(|l| l.starts_with("index ")).unwrap().to_owned();
    entry["tlog_proof"] = proof.replace(&index, "index 999").into();
    let page = b.post("/bundle", &[("bundle", &json.to_string())]).await;
    assert!(page.body.contains("data-ok=\"false\""), "{}", page.body);
    assert!(page.body.contains("its tlog-proof is not its proof in the bundle's checkpoint"), "{}", page.body);
    topo.shutdown().await;
}

#[tokio::test]
async fn a_non_auditor_certificate_is_shown_the_gateways_refusal() {
    let topo = Topology::start(TopologySpec::default_agencies()).await.unwrap();
    let who = topo.client_options("de-police").unwrap();
    let b = Browser::new(ConsoleOptions { auditor: Some(who), ..Default::default() }).await;
    for page in [b.get("/").await, b.post("/search", &[("node", "frontex")]).await] {
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{}", page.body);
        assert!(page.body.contains("The gateway refused") && page.body.contains("PERMISSION_DENIED"), "{}", page.body);
    }
    topo.shutdown().await;
}

#[tokio::test]
async fn the_policy_pages_show_levels_drafts_and_rules_that_never_fire() {
    let b = Browser::new(ConsoleOptions { policy: Some(policy_setup(None)), ..Default::default() }).await;
    // No gateway: the auditor's pages say how to get one, the root goes to the matrix.
    assert_eq!(b.get("/").await.status, StatusCode::SEE_OTHER);
    assert!(b.get("/search").await.body.contains("need a gateway"));

    let page = b.get("/policy").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let row = |body: &str, alert: &str| {
        let at = body.find(&format!("<tr data-alert=\"{alert}\">")).unwrap_or_else(|| panic!("{alert}"));
        body[at..at + body[at..].find("</tr>").unwrap()].to_owned()
    };
    assert!(row(&page.body, "smuggling-network").contains("data-node=\"frontex\" data-level=\"redacted\""));
    assert!(row(&page.body, "smuggling-network").contains("frontex-border-crime"));

    // A draft that does not validate shows its file:line errors.
    let broken = tempfile::tempdir().unwrap();
    copy_dir(&repo("deploy/local/policy"), broken.path());
    std::fs::write(broken.path().join("agencies.cedar"), "permit(principal, action, resource) when { nope };\n")
        .unwrap();
    let page = b.post("/policy/draft", &[("dir", broken.path().to_str().unwrap())]).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    let page = b.get("/policy").await;
    assert!(page.body.contains("id=\"draft-errors\"") && page.body.contains("agencies.cedar:"), "{}", page.body);

    for (fields, named) in [
        (vec![("dir", "/no/such/dir")], "dir: /no/such/dir is not a directory"),
        (vec![("dir", "x"), ("colour", "red")], "colour: is not a field"),
    ] {
        let page = b.post("/policy/draft", &fields).await;
        assert_eq!(page.status, StatusCode::BAD_REQUEST);
        assert!(page.body.contains(named), "{}", page.body);
    }
    let page = b.post("/policy/alert", &[("alert", "{\"category\": \"knitting\"}"), ("name", "mine.json")]).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(page.body.contains("knitting"), "{}", page.body);

    let alert = std::fs::read_to_string(repo("deploy/local/alerts/foreign-fighter.json")).unwrap();
    assert_eq!(
        b.post("/policy/alert", &[("alert", &alert), ("name", "uploaded-fighter")]).await.status,
        StatusCode::SEE_OTHER
    );
    assert!(b.get("/policy").await.body.contains("<tr data-alert=\"uploaded-fighter\">"));

    let page = b.get("/policy/rules").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("data-rule=\"frontex-border-crime\" data-fires=\"true\""), "{}", page.body);
    assert!(page.body.contains("never fires on these alerts"), "{}", page.body);
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

/// The figure the console's note gives: a subject report over a log of
/// ISX_CONSOLE_RECORDS records (100,000 by default) next to the raw Search
/// call that finds the same records. Run by `scripts/console-figures`; it
/// measures, it asserts only that both found the same records.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement (scripts/console-figures), minutes long"]
async fn subject_report_over_a_large_log() {
    let want: u64 = std::env::var("ISX_CONSOLE_RECORDS").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000);
    let mut spec = TopologySpec::default_agencies();
    spec.limits.rate_per_node = 1e9;
    spec.limits.burst_per_node = u32::MAX;
    spec.limits.max_queue_per_node = u64::MAX;
    let topo = Topology::start(spec).await.unwrap();
    let auditor = topo.client("auditor").await.unwrap();
    let size = |c: isx_node::Client| async move {
        isx_node::audit::checkpoint(&c, &isx_testkit::testkit_reason()).await.unwrap().tree_size
    };
    // One alert in fifty is about the girl; the rest are about others.
    let started = std::time::Instant::now();
    let mut published = 0u64;
    let mut girl = 0u64;
    while size(auditor.clone()).await < want {
        let mut tasks = Vec::new();
        for i in 0..8u64 {
            let client = topo.client("de-police").await.unwrap();
            // One task in eight, one batch in six: about one alert in fifty.
            let about_her = i == 0 && (published / 800).is_multiple_of(6);
            girl += u64::from(about_her);
            tasks.push(tokio::spawn(async move {
                for _ in 0..100 {
                    let alert = if about_her {
                        samples::trafficking_victim("de-police", &["fr-police", "it-police"])
                    } else {
                        samples::migrant_smuggling("de-police", &[])
                    };
                    client.publish(alert).await.unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        published += 800;
        eprintln!("  {published} alerts published, log {} records", size(auditor.clone()).await);
    }
    let records = size(auditor.clone()).await;
    eprintln!(
        "log of {records} records built in {:.1} s ({girl} batches of 100 about the girl)",
        started.elapsed().as_secs_f64()
    );

    let req = SearchRequest {
        subject_identifier: "document:RO:RX771203".into(),
        limit: 1000,
        justification: "measure".into(),
        ..Default::default()
    };
    let t = std::time::Instant::now();
    let mut raw = 0usize;
    let mut page = isx_node::audit::search(&auditor, &isx_testkit::testkit_reason(), req.clone()).await.unwrap();
    loop {
        raw += page.entries.len();
        let Some(last) = page.entries.last().map(|e| e.seq) else { break };
        if !page.more {
            break;
        }
        page = isx_node::audit::search(
            &auditor,
            &isx_testkit::testkit_reason(),
            SearchRequest { after_seq: last, ..req.clone() },
        )
        .await
        .unwrap();
    }
    let raw_ms = t.elapsed().as_secs_f64() * 1e3;

    let mut who = topo.client_options("auditor").unwrap();
    who.officer = "measure".into();
    let b = Browser::new(ConsoleOptions { auditor: Some(who), ..Default::default() }).await;
    let t = std::time::Instant::now();
    let page = b.post("/subject", &[("document_country", "RO"), ("document_number", "RX771203")]).await;
    let console_ms = t.elapsed().as_secs_f64() * 1e3;
    assert_eq!(page.status, StatusCode::OK);
    let rows = page.body.matches("class=\"record\"").count();
    println!(
        "console figures: log {records} records; raw Search (pages of 1000, no proof check): {raw} records in {raw_ms:.0} ms; \
         console subject report (the same search, every proof verified, the page rendered): {rows} records in {console_ms:.0} ms"
    );
    assert!(rows >= raw, "{rows} rows, {raw} raw");
    topo.shutdown().await;
}
