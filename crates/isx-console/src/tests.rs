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

/// A synthetic record as the console reads it: `seq`, `at_ms`, and the
/// record built by `f` from the defaults.
fn view(seq: u64, at_ms: u64, f: impl FnOnce(&mut isx_core::wire::AuditRecord)) -> crate::text::RecordView {
    let mut r = isx_core::wire::AuditRecord {
        time: Some(isx_core::timestamp::from_unix_millis(at_ms)),
        alert_id: "A1".into(),
        ..Default::default()
    };
    f(&mut r);
    crate::text::RecordView::record(seq, false, &r)
}

fn change(
    kind: isx_core::wire::ChangeKind,
    versions: (u32, u32),
    grace_seconds: u64,
    recipients: &[(&str, isx_core::wire::DisclosureLevel, isx_core::wire::RecipientOutcome)],
) -> impl FnOnce(&mut isx_core::wire::AuditRecord) {
    let recipients: Vec<isx_core::wire::RecipientLevel> = recipients
        .iter()
        .map(|(node, level, outcome)| isx_core::wire::RecipientLevel {
            node: (*node).into(),
            level: *level as i32,
            outcome: *outcome as i32,
            ..Default::default()
        })
        .collect();
    move |r| {
        let erases = matches!(kind, isx_core::wire::ChangeKind::Withdrawal | isx_core::wire::ChangeKind::Expiry);
        r.operation = if erases { Operation::Erasure } else { Operation::Alteration } as i32;
        r.node = "fr-police".into();
        r.officer = "Cdt. Martin".into();
        r.justification = "the date of birth was wrong".into();
        r.recipients = recipients;
        r.lifecycle = Some(isx_core::wire::LifecycleChange {
            kind: kind as i32,
            old_version: versions.0,
            new_version: versions.1,
            confirm_grace_seconds: grace_seconds,
            ..Default::default()
        });
    }
}

fn confirmed(
    node: &'static str,
    version: u32,
    state: isx_core::wire::CopyState,
) -> impl FnOnce(&mut isx_core::wire::AuditRecord) {
    move |r| {
        r.operation = Operation::ChangeConfirmed as i32;
        r.node = node.into();
        r.lifecycle = Some(isx_core::wire::LifecycleChange {
            new_version: version,
            confirmed: state as i32,
            ..Default::default()
        });
    }
}

/// Each change with its version, reason, officer and per-recipient level or
/// withdrawal; each confirmation matched to its holder; an unconfirmed copy
/// past the change's grace is overdue, one replaced by a later change is not.
#[test]
fn an_alerts_history_shows_each_change_and_who_confirmed_it_and_who_is_overdue() {
    use isx_core::wire::{ChangeKind, CopyState, DisclosureLevel as L, RecipientOutcome as O};
    const H: u64 = 3_600_000;
    let rows = vec![
        view(1, 0, |r| r.operation = Operation::Collection as i32),
        view(
            2,
            H,
            change(
                ChangeKind::Update,
                (1, 2),
                3600,
                &[
                    ("de-police", L::Full, O::Updated),
                    ("it-police", L::Denied, O::Withdrawn),
                    ("europol", L::Redacted, O::Updated),
                    ("frontex", L::Denied, O::Denied),
                ],
            ),
        ),
        view(3, H + 5_000, confirmed("de-police", 2, CopyState::Held)),
        view(4, H + 6_000, confirmed("it-police", 2, CopyState::Deleted)),
        // A confirmation of a version never asked for matches nothing.
        view(5, H + 7_000, confirmed("de-police", 7, CopyState::Held)),
        view(6, 2 * H, change(ChangeKind::Restriction, (2, 2), 600, &[("de-police", L::Full, O::Restricted)])),
    ];
    // At 2 h 30 min: europol has not confirmed the update for 1.5 h (grace
    // 1 h): overdue; de-police's restriction is 30 min old (grace 10 min): overdue too.
    let h = crate::lifecycle::history(&rows, 2 * H + H / 2);
    assert_eq!(h.changes.len(), 2);
    let update = &h.changes[0];
    assert_eq!((update.kind.as_str(), update.old_version, update.new_version), ("update", 1, 2));
    assert_eq!((update.officer.as_str(), update.reason.as_str()), ("Cdt. Martin", "the date of birth was wrong"));
    assert_eq!(update.operation, "alteration");
    let copies: Vec<(&str, &str, &str, bool, bool, bool)> = update
        .copies
        .iter()
        .map(|c| (c.node.as_str(), c.level.as_str(), c.expects.as_str(), c.confirmed, c.superseded, c.overdue))
        .collect();
    assert_eq!(
        copies,
        vec![
            ("de-police", "full", "held", true, false, false),
            ("it-police", "denied", "deleted", true, false, false),
            ("europol", "redacted", "held", false, false, true),
        ],
        "frontex was denied before and after: nothing was sent to it"
    );
    let restriction = &h.changes[1];
    assert_eq!(restriction.copies[0].expects, "restricted");
    assert!(!restriction.copies[0].confirmed && restriction.copies[0].overdue);
    assert_eq!((h.unconfirmed, h.overdue, h.unmatched.clone()), (2, 2, vec![5]));
    // A minute after the restriction: within its own grace (10 min), while
    // europol is past the update's (1 h): each change's grace counts.
    let early = crate::lifecycle::history(&rows, 2 * H + 60_000);
    assert_eq!((early.unconfirmed, early.overdue), (2, 1));
    assert!(early.changes[0].copies[2].overdue && !early.changes[1].copies[0].overdue);
    // Within both graces, nobody is overdue yet.
    let earlier = crate::lifecycle::history(&rows, H + 60_000);
    assert_eq!(earlier.overdue, 0);

    // A later change replaces an unconfirmed one: superseded, not overdue.
    let mut more = rows.clone();
    more.push(view(
        7,
        3 * H,
        change(
            ChangeKind::Withdrawal,
            (2, 2),
            3600,
            &[("de-police", L::Denied, O::Withdrawn), ("europol", L::Denied, O::Withdrawn)],
        ),
    ));
    more.push(view(8, 3 * H + 1000, confirmed("europol", 2, CopyState::Deleted)));
    let h = crate::lifecycle::history(&more, 3 * H + 2000);
    assert!(h.changes[0].copies[2].superseded && !h.changes[0].copies[2].overdue);
    assert!(h.changes[1].copies[0].superseded, "de-police's restriction, never confirmed, is replaced");
    let withdrawal = &h.changes[2];
    assert_eq!((withdrawal.kind.as_str(), withdrawal.operation.as_str()), ("withdrawal", "erasure"));
    assert_eq!(withdrawal.copies.iter().map(|c| c.confirmed).collect::<Vec<_>>(), vec![false, true]);
    assert_eq!((h.unconfirmed, h.overdue), (1, 0));
}

/// Open hits per node from the log: shown, minus requested, declined and
/// closed; a closed hit shows its reason, and a hit shown again reopens.
#[test]
fn open_hits_are_the_hits_shown_minus_those_followed_up_or_closed() {
    let consultation = |node: &'static str, officer: &'static str, alerts: &'static [(&'static str, bool)]| {
        move |r: &mut isx_core::wire::AuditRecord| {
            r.operation = Operation::Consultation as i32;
            r.alert_id.clear();
            r.node = node.into();
            r.officer = officer.into();
            r.hits = alerts
                .iter()
                .map(|(id, shown)| isx_core::wire::AuditHit {
                    alert_id: (*id).into(),
                    holder: "de-police".into(),
                    shown: *shown,
                    ..Default::default()
                })
                .collect();
        }
    };
    let on = |op: Operation, node: &'static str, alert: &'static str, detail: &'static str| {
        move |r: &mut isx_core::wire::AuditRecord| {
            r.operation = op as i32;
            r.node = node.into();
            r.alert_id = alert.into();
            r.detail = detail.into();
            r.recipients = vec![isx_core::wire::RecipientLevel { node: "de-police".into(), ..Default::default() }];
            if op == Operation::HitClosed {
                r.officer = "Isp. Conti".into();
            }
        }
    };
    let rows = vec![
        view(
            1,
            1000,
            consultation(
                "it-police",
                "Isp. Conti",
                &[("A1", true), ("A2", true), ("A3", true), ("A4", true), ("R", false)],
            ),
        ),
        // Another officer's later lookup keeps the first officer.
        view(2, 2000, consultation("it-police", "Isp. Russo", &[("A1", true)])),
        view(3, 2500, consultation("fr-police", "Lt. Bernard", &[("A1", true)])),
        view(4, 3000, on(Operation::AccessRequest, "it-police", "A1", "asks holder de-police")),
        view(5, 4000, on(Operation::FollowUpDeclined, "it-police", "A2", "hit not followed up")),
        view(
            6,
            5000,
            on(
                Operation::HitClosed,
                "it-police",
                "A3",
                "hit hit-3 held by de-police shown 1970-01-01T00:00:01Z closed without follow-up (expired): its alert expired",
            ),
        ),
        view(
            7,
            6000,
            on(
                Operation::HitClosed,
                "it-police",
                "A4",
                "hit hit-4 held by de-police shown 1970-01-01T00:00:01Z closed without follow-up (deadline): not followed up",
            ),
        ),
        // A requested hit shown again stays followed up; a closed one reopens.
        view(8, 7000, consultation("it-police", "Isp. Russo", &[("A1", true), ("A4", true)])),
    ];
    let hits = crate::open_hits::derive(&rows);
    let open: Vec<(&str, &str, &str)> =
        hits.open.iter().map(|o| (o.node.as_str(), o.alert_id.as_str(), o.officer.as_str())).collect();
    assert_eq!(open, vec![("fr-police", "A1", "Lt. Bernard"), ("it-police", "A4", "Isp. Russo")]);
    let closed: Vec<(&str, &str, &str, &str)> = hits
        .closed
        .iter()
        .map(|c| (c.alert_id.as_str(), c.reason.as_str(), c.officer.as_str(), c.holder.as_str()))
        .collect();
    assert_eq!(
        closed,
        vec![("A3", "expired", "Isp. Conti", "de-police"), ("A4", "deadline", "Isp. Conti", "de-police")]
    );
    let tally: Vec<(&str, usize, usize, usize)> =
        hits.nodes.iter().map(|t| (t.node.as_str(), t.open, t.followed, t.closed)).collect();
    assert_eq!(tally, vec![("fr-police", 1, 0, 0), ("it-police", 1, 2, 2)]);
    assert_eq!(crate::open_hits::reason("no reason here"), "");
}

/// The open-hits page over a real gateway: a hit shown to IT is open until
/// declined; the page names the node, the alert and the officer.
#[tokio::test]
async fn the_open_hits_page_lists_a_nodes_open_hits_from_the_log() {
    let (topo, b, _) = auditor_console().await;
    let alert = samples::foreign_fighter("de-police", &["fr-police"]);
    topo.client("de-police").await.unwrap().publish(alert.clone()).await.unwrap();
    let passport = isx_core::wire::LookupIdentifier {
        kind: Some(isx_core::wire::lookup_identifier::Kind::Document(isx_core::wire::DocumentNumber {
            issuing_country: "DE".into(),
            number: "C4J9X1R27".into(),
        })),
    };
    let it = topo.client("it-police").await.unwrap().with_officer("Off. Lindqvist").unwrap();
    let hits = it.lookup(vec![passport], "border check", "passenger list").await.unwrap().hits;
    assert_eq!(hits.len(), 1, "{hits:?}");
    let page = b.get("/hits?node=it-police").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains(&format!("data-node=\"it-police\" data-alert=\"{}\"", alert.alert_id)), "{}", page.body);
    assert!(page.body.contains("Off. Lindqvist"), "{}", page.body);
    it.decline_follow_up(&hits[0].hit_id, "not our border").await.unwrap();
    let page = b.get("/hits?node=it-police").await;
    assert!(page.body.contains("Open (0)"), "{}", page.body);
    let page = b.get("/hits?node=%3Cx%3E").await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    topo.shutdown().await;
}
