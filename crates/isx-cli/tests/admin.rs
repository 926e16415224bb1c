//! `isx admin` and `isx policy explain --version` as users run them, against
//! an in-process topology over mTLS: a reload by the admin call, found with
//! `isx audit search --operation administration`; a past decision explained
//! again with its version's text, from the gateway and from an export; the
//! request file that SIGHUP needs.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// How long one `isx` run may take; reached only when a child hangs.
const LIMIT: Duration = Duration::from_secs(120);

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs `isx args` from the repository root to the end, within [`LIMIT`]
/// (a child still running then is killed and the test fails).
fn isx(args: &[String]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_isx"))
        .args(args)
        .current_dir(repo())
        .env_remove("ISX_GATEWAY")
        .env_remove("ISX_OFFICER")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("isx starts");
    let read = |mut from: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = from.read_to_end(&mut buf);
            buf
        })
    };
    let stdout = read(Box::new(child.stdout.take().unwrap()));
    let stderr = read(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + LIMIT;
    // Bounded: polls until the deadline, then kills.
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("isx {args:?} still runs after {LIMIT:?} (killed)");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Output { status, stdout: stdout.join().unwrap(), stderr: stderr.join().unwrap() }
}

/// [`isx`] off the async runtime, so that the in-process gateway keeps serving.
async fn run(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || isx(&args)).await.unwrap()
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn args(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

/// `--as NODE --pki P --gateway A --officer O` for the topology.
fn who(topo: &isx_testkit::Topology, node: &str, officer: &str) -> Vec<String> {
    let (pki, addr) = (topo.pki_dir().display().to_string(), topo.gateway_addr().to_string());
    args(&["--as", node, "--pki", &pki, "--gateway", &addr, "--officer", officer])
}

/// A policy that takes migrant smuggling from Europol's full view.
const EUROPOL_NO_SMUGGLING: &str = "@id(\"europol-no-smuggling\")\n@reason(\"Europol does not see smuggling in full\")\nforbid (principal, action == Action::\"disclose_full\", resource)\nwhen { principal.kind == NodeKind::\"europol\" && resource.category == Category::\"migrant_smuggling\" };\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_by_the_admin_call_is_found_in_the_log_and_each_version_explains_its_decision() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("policy");
    isx_policy::defaults::write_to(&dir).unwrap();
    let spec =
        isx_testkit::TopologySpec { policy_dir: Some(dir.clone()), ..isx_testkit::TopologySpec::default_agencies() }
            .with_admin();
    let topo = isx_testkit::Topology::start(spec).await.unwrap();
    let v1 = isx_policy::PolicyEngine::load(&dir).unwrap().version().to_owned();

    // The admin call, from the command line.
    std::fs::write(dir.join("zz-extra.cedar"), EUROPOL_NO_SMUGGLING).unwrap();
    let reload = [args(&["admin", "reload-policy"]), who(&topo, "ops", "Ops Lead"), args(&["--reason", "CR-2026-042"])];
    let out = run(reload.concat()).await;
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let v2 = isx_policy::PolicyEngine::load(&dir).unwrap().version().to_owned();
    assert!(stdout.contains(&format!("policy reloaded: version {v1} -> {v2}")), "{stdout}");
    assert!(stdout.contains("changed: +europol-no-smuggling"), "{stdout}");
    let seq: String = stdout.lines().find_map(|l| l.strip_prefix("recorded at seq ")).unwrap().to_owned();

    // An auditor finds it, with the officer and the reason (opened with the PKI's audit-text.key).
    let search = [
        args(&["audit", "search"]),
        who(&topo, "auditor", "DPO Martens"),
        args(&["--operation", "administration", "--json", "--case", "CNIL-2026-0113"]),
    ];
    let out = run(search.concat()).await;
    assert!(out.status.success(), "{}", text(&out));
    let records: Vec<serde_json::Value> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let r = records.iter().find(|r| r["seq"] == seq.as_str()).unwrap_or_else(|| panic!("no record {seq}: {records:?}"));
    assert_eq!(r["operation"], "OPERATION_ADMINISTRATION");
    assert_eq!(
        (&r["node"], &r["officer"], &r["justification"]),
        (&"ops".into(), &"Ops Lead".into(), &"CR-2026-042".into())
    );
    assert_eq!(r["admin"]["action"], "ADMIN_ACTION_POLICY_RELOAD");
    assert_eq!((&r["admin"]["old_version"], &r["admin"]["new_version"]), (&v1.as_str().into(), &v2.as_str().into()));
    assert_eq!(r["admin"]["changed"][0], "+europol-no-smuggling");
    let table = [
        args(&["audit", "search"]),
        who(&topo, "auditor", "DPO Martens"),
        args(&["--operation", "administration", "--case", "CNIL-2026-0113"]),
    ];
    let out = run(table.concat()).await;
    assert!(text(&out).contains(&format!("policy reloaded (admin call): version {v1} -> {v2}")), "{}", text(&out));

    // A decision explained again by version: Europol got smuggling in full under v1, redacted under v2.
    let alert = tmp.path().join("alert.json");
    std::fs::write(&alert, isx_core::json::to_json(&isx_testkit::samples::migrant_smuggling("de-police", &[])))
        .unwrap();
    let alert = alert.display().to_string();
    let explain = |version: &str, tail: Vec<String>| {
        [args(&["policy", "explain", "--alert", &alert, "--to", "europol", "--version", version]), tail].concat()
    };
    let from_gateway = |version: &str| {
        explain(version, [who(&topo, "auditor", "DPO Martens"), args(&["--case", "CNIL-2026-0113"])].concat())
    };
    let out = run(from_gateway(&v1)).await;
    assert!(out.status.success(), "{}", text(&out));
    let old = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(old.starts_with(&format!("policy version {v1}, as kept by the gateway (first loaded ")), "{old}");
    assert!(old.contains("europol      FULL"), "{old}");
    let out = run(from_gateway(&v2)).await;
    let new = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        new.contains("europol      REDACTED") && new.contains("europol-no-smuggling: Europol does not see"),
        "{new}"
    );

    // The read needs a case reference, and a version never loaded is named.
    let out = run(explain(&v1, who(&topo, "auditor", "DPO Martens"))).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("--case REF is required"), "{}", text(&out));
    let out = run(from_gateway("0123456789abcdef")).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("policy version 0123456789abcdef was never loaded") && text(&out).contains("NOT_FOUND"),
        "{}",
        text(&out)
    );

    // From an export, with no gateway: the same answers.
    let auditor = topo.client("auditor").await.unwrap();
    let bundle = isx_node::audit::export(
        &auditor,
        &isx_testkit::testkit_reason(),
        "admin tests",
        isx_core::wire::SearchRequest::default(),
    )
    .await
    .unwrap();
    let file = tmp.path().join("bundle.json");
    std::fs::write(&file, isx_core::json::to_json(&bundle)).unwrap();
    topo.shutdown().await;
    let file = file.display().to_string();
    let out = run(explain(&v1, args(&["--bundle", &file]))).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("europol      FULL"), "{}", text(&out));
    assert!(text(&out).contains(&format!("from export {file}")), "{}", text(&out));
    let out = run(explain(&v2, args(&["--bundle", &file]))).await;
    assert!(String::from_utf8_lossy(&out.stdout).contains("europol      REDACTED"), "{}", text(&out));

    // An export whose texts were changed is refused: they are not the version.
    let mut forged = bundle.clone();
    let extra = forged.policies.iter_mut().find(|p| p.version == v2).unwrap();
    extra.files.iter_mut().find(|f| f.name == "zz-extra.cedar").unwrap().text = "// nothing\n".into();
    std::fs::write(tmp.path().join("forged.json"), isx_core::json::to_json(&forged)).unwrap();
    let forged = tmp.path().join("forged.json").display().to_string();
    let out = run(explain(&v2, args(&["--bundle", &forged]))).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("they are not that version"), "{}", text(&out));
}

#[test]
fn request_reload_writes_a_private_request_file_where_the_gateway_looks() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("gateway.toml");
    std::fs::write(
        &config,
        "pki_dir = \"pki\"\ndata_dir = \"data\"\npolicy_dir = \"policy\"\n[nodes.ops]\nkind = \"auditor\"\ncountry = \"EU\"\nroles = [\"admin\"]\n",
    )
    .unwrap();
    let config = config.display().to_string();
    let write = |tail: &[&str]| isx(&[args(&["admin", "request-reload", "--config", &config]), args(tail)].concat());
    let out = write(&["--officer", "A. Operator", "--reason", "CR-2026-043"]);
    assert!(out.status.success(), "{}", text(&out));
    let path = tmp.path().join("data/reload-request.toml");
    assert!(text(&out).contains(&format!("wrote {}", path.display())), "{}", text(&out));
    assert!(text(&out).contains("within 1h"), "{}", text(&out));
    let request: isx_gateway::reload_request::ReloadRequest =
        toml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!((request.officer.as_str(), request.reason.as_str()), ("A. Operator", "CR-2026-043"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }
    // --data follows the gateway's own override; an empty reason is refused.
    let other = tmp.path().join("elsewhere");
    let out = write(&["--data", &other.display().to_string(), "--officer", "A", "--reason", "R"]);
    assert!(out.status.success() && other.join("reload-request.toml").exists(), "{}", text(&out));
    let out = write(&["--officer", "A", "--reason", " "]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("reason is required"), "{}", text(&out));
}
