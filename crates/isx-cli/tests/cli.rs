//! The `isx` binary as users run it: exit codes and messages.

//!
//! Every run is bounded: output is read on threads and received with a
//! deadline ([`LIMIT`]); a child still running then is stopped and the test
//! fails with what it printed so far. A [`ChildGuard`] stops its child when
//! the test fails, so no failing test leaves a process behind.

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

/// How long one `isx` run, or one wait for its output, may take. Generous:
/// it is reached only when a child hangs.
const LIMIT: Duration = Duration::from_secs(120);

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A child process the test owns. Dropped before the child was reaped (the
/// test failed or a deadline passed), it stops the child with `SIGKILL` and
/// reaps it. A child that starts processes of its own (`isx up`) runs in a
/// process group of its own (`group`): it gets `SIGINT` first, to stop its
/// children itself, and if it still runs 30 s later the whole group gets
/// `SIGKILL`, so that a failing test leaves none of them behind.
struct ChildGuard {
    child: Child,
    group: bool,
    reaped: bool,
}

impl ChildGuard {
    fn spawn(cmd: &mut Command, group: bool) -> Self {
        if group {
            std::os::unix::process::CommandExt::process_group(cmd, 0);
        }
        Self { child: cmd.spawn().expect("isx starts"), group, reaped: false }
    }

    fn pid(&self) -> rustix::process::Pid {
        rustix::process::Pid::from_raw(self.child.id() as i32).expect("a child pid")
    }

    /// Sends `SIGINT` (Ctrl-C) to the child alone.
    fn interrupt(&self) {
        rustix::process::kill_process(self.pid(), rustix::process::Signal::INT).expect("SIGINT delivered");
    }

    /// The child's exit status, or `None` if it still runs at `deadline`.
    /// Polls: std offers no wait with a time limit.
    fn wait_until(&mut self, deadline: Instant) -> Option<ExitStatus> {
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                self.reaped = true;
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if self.reaped {
            return;
        }
        if self.group {
            // Still unreaped, so its pid (the group's id) is still ours.
            let _ = rustix::process::kill_process(self.pid(), rustix::process::Signal::INT);
            if self.wait_until(Instant::now() + Duration::from_secs(30)).is_some() {
                return;
            }
            let _ = rustix::process::kill_process_group(self.pid(), rustix::process::Signal::KILL);
        } else {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// Reads `from` on a thread and sends what it reads, chunk by chunk, tagged
/// with `tag`; `None` once it is closed.
fn pump(mut from: impl Read + Send + 'static, tag: usize, tx: mpsc::Sender<(usize, Option<Vec<u8>>)>) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => {
                    let _ = tx.send((tag, None));
                    return;
                }
                Ok(n) => {
                    if tx.send((tag, Some(buf[..n].to_vec()))).is_err() {
                        return;
                    }
                }
            }
        }
    });
}

/// Runs `isx args` to the end, within [`LIMIT`].
fn isx(args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_isx"));
    cmd.args(args).current_dir(repo()).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut guard = ChildGuard::spawn(&mut cmd, false);
    let (tx, rx) = mpsc::channel();
    pump(guard.child.stdout.take().expect("piped stdout"), 0, tx.clone());
    pump(guard.child.stderr.take().expect("piped stderr"), 1, tx);
    let deadline = Instant::now() + LIMIT;
    let mut out = [Vec::new(), Vec::new()];
    let mut open = 2;
    let so_far =
        |out: &[Vec<u8>; 2]| format!("{}{}", String::from_utf8_lossy(&out[0]), String::from_utf8_lossy(&out[1]));
    // Bounded: each turn receives before the deadline or ends the test.
    while open > 0 {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok((tag, Some(bytes))) => out[tag].extend(bytes),
            Ok((_, None)) => open -= 1,
            Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) => {
                panic!("isx {args:?} still runs after {LIMIT:?} (stopped); it printed:\n{}", so_far(&out))
            }
        }
    }
    let Some(status) = guard.wait_until(deadline) else {
        panic!("isx {args:?} closed its output but still runs after {LIMIT:?} (stopped); it printed:\n{}", so_far(&out))
    };
    let [stdout, stderr] = out;
    Output { status, stdout, stderr }
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[test]
fn the_default_policy_table_passes() {
    let out = isx(&["policy", "test", "deploy/local/policy/tests.toml"]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains(" passed, 0 failed"), "{t}");
}

#[test]
fn a_wrong_expectation_fails_and_names_the_case() {
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("t.toml");
    let gateway = repo().join("deploy/local/gateway.toml");
    let alert = repo().join("deploy/local/alerts/smuggling-network.json");
    std::fs::write(
        &table,
        format!(
            "gateway = {gateway:?}\npolicy_dir = {:?}\n[[case]]\nname = \"frontex gets it whole (wrong)\"\nalert = {alert:?}\nto = \"frontex\"\nexpect = \"full\"\n",
            repo().join("deploy/local/policy")
        ),
    )
    .unwrap();
    let out = isx(&["policy", "test", table.to_str().unwrap()]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains("FAIL") && t.contains("frontex gets it whole (wrong)"), "{t}");
    assert!(t.contains("level redacted instead of full"), "{t}");
    assert!(t.contains("0 passed, 1 failed"), "{t}");
}

#[test]
fn check_lists_policies_and_refuses_a_broken_one_with_file_and_line() {
    let out = isx(&["policy", "check", "deploy/local/policy"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("frontex-depersonalised"));

    let dir = tempfile::tempdir().unwrap();
    for name in ["schema.cedarschema", "agencies.cedar"] {
        std::fs::copy(repo().join("deploy/local/policy").join(name), dir.path().join(name)).unwrap();
    }
    std::fs::write(
        dir.path().join("extra.cedar"),
        "@id(\"x\")\n@reason(\"r\")\npermit (principal, action, resource)\nwhen { resource.tlp == 3 };\n",
    )
    .unwrap();
    let out = isx(&["policy", "check", dir.path().to_str().unwrap()]);
    let t = text(&out);
    assert!(!out.status.success());
    assert!(t.contains("extra.cedar:4"), "{t}");
}

#[test]
fn explain_json_has_the_documented_keys() {
    let out = isx(&["policy", "explain", "--alert", "deploy/local/alerts/smuggling-network.json", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = v.as_array().unwrap();
    assert_eq!(rows.len(), 6, "every registered node but the origin");
    for row in rows {
        let mut keys: Vec<&str> = row.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort();
        assert_eq!(
            keys,
            vec![
                "after_grant",
                "after_grant_policies",
                "level",
                "lookup_hit",
                "lookup_policies",
                "policies",
                "policy_dir",
                "policy_version",
                "reasons",
                "recipient",
                "removed_fields",
                "year_only"
            ]
        );
    }
    let frontex = rows.iter().find(|r| r["recipient"] == "frontex").unwrap();
    assert_eq!(frontex["level"], "redacted");
    let out = isx(&["policy", "explain", "--alert", "deploy/local/alerts/smuggling-network.json", "--to", "it-police"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("origin"), "{}", text(&out));
}

#[test]
fn bad_alert_files_name_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a.json");
    std::fs::write(&file, "{\"alert_id\": \"x\", \"labels\": {\"tlp\": \"TLP_PURPLE\"}}").unwrap();
    let out =
        isx(&["alert", "send", "--as", "de-police", "--pki", "/nonexistent", "--officer", "o", file.to_str().unwrap()]);
    let t = text(&out);
    assert!(!out.status.success());
    assert!(t.contains("TLP_PURPLE"), "{t}");
    assert_eq!(t.matches("TLP_PURPLE").count(), 1, "said once: {t}");
    std::fs::write(&file, "{}").unwrap();
    let out = isx(&["alert", "send", "--as", "de-police", "--pki", "/nonexistent", file.to_str().unwrap()]);
    assert!(text(&out).contains("--officer is required"), "{}", text(&out));
}

#[test]
fn pki_init_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    let p = pki.to_str().unwrap();
    assert!(isx(&["pki", "init", "--dir", p, "--nodes", "a-police,b-police"]).status.success());
    assert!(pki.join("a-police.crt").exists() && pki.join("gateway.key").exists());
    let again = isx(&["pki", "init", "--dir", p]);
    assert!(!again.status.success());
    assert!(text(&again).contains("--force"), "{}", text(&again));
}

#[cfg(unix)]
fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[cfg(unix)]
fn set_mode(path: &std::path::Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// The serials `isx pki crl` lists (its lines indented by four spaces), in order.
fn listed_serials(out: &Output) -> Vec<String> {
    let t = String::from_utf8_lossy(&out.stdout).into_owned();
    t.lines().filter(|l| l.starts_with("    ")).map(|l| l.split_whitespace().next().unwrap().to_owned()).collect()
}

#[test]
fn pki_init_writes_an_empty_crl_that_pki_crl_shows() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().to_str().unwrap();
    let out = isx(&["pki", "init", "--dir", p, "--nodes", "a-police"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("crl.pem"), "{}", text(&out));
    let out = isx(&["pki", "crl", "--dir", p]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("issuer") && t.contains("CN=isx development CA"), "{t}");
    assert!(t.contains("revoked      0"), "{t}");
    assert!(t.contains("next update") && t.contains("(in 29 days)"), "{t}");
}

#[test]
fn pki_revoke_adds_and_keeps_and_crl_refresh_moves_the_next_update() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().to_str().unwrap();
    assert!(isx(&["pki", "init", "--dir", p, "--nodes", "a-police,b-police,c-police"]).status.success());
    let out = isx(&["pki", "revoke", "--dir", p, "a-police"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("1 revoked"), "{}", text(&out));
    let first = isx(&["pki", "crl", "--dir", p]);
    assert!(text(&first).contains("a-police"), "{}", text(&first));
    let out = isx(&["pki", "revoke", "--dir", p, "b-police"]);
    assert!(out.status.success() && text(&out).contains("2 revoked"), "{}", text(&out));
    let second = isx(&["pki", "crl", "--dir", p]);
    let t = text(&second);
    assert!(t.contains("revoked      2") && t.contains("a-police") && t.contains("b-police"), "{t}");
    assert!(!t.contains("c-police"), "{t}");
    assert_eq!(listed_serials(&first).len(), 1, "{}", text(&first));
    assert_eq!(listed_serials(&second).len(), 2, "{t}");
    assert_eq!(listed_serials(&second)[0], listed_serials(&first)[0], "a-police is kept");

    let before = isx_tls::pki::read_crl(dir.path()).unwrap();
    let out = isx(&["pki", "crl", "--dir", p, "--refresh", "--days", "90"]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("re-signed") && t.contains("(in 89 days)"), "{t}");
    let after = isx_tls::pki::read_crl(dir.path()).unwrap();
    assert!(after.next_update >= before.next_update + time::Duration::days(59), "{t}");
    assert_eq!(after.revoked, before.revoked, "entries kept");
    assert_eq!(listed_serials(&out), listed_serials(&second));

    let out = isx(&["pki", "crl", "--dir", p, "--days", "5"]);
    assert_eq!(out.status.code(), Some(2), "--days needs --refresh: {}", text(&out));
}

#[test]
fn pki_crl_fails_on_a_stale_list_and_names_a_foreign_one() {
    let (dir, other) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let p = dir.path().to_str().unwrap();
    assert!(isx(&["pki", "init", "--dir", p, "--nodes", "a-police"]).status.success());
    isx_tls::pki::refresh_crl(dir.path(), time::Duration::days(-1)).unwrap();
    let out = isx(&["pki", "crl", "--dir", p]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains("STALE") && t.contains("--refresh"), "{t}");
    assert!(isx(&["pki", "crl", "--dir", p, "--refresh"]).status.success());
    assert!(isx(&["pki", "crl", "--dir", p]).status.success(), "fresh again");

    // A list signed by another CA (of the same name) is named, not shown.
    assert!(isx(&["pki", "init", "--dir", other.path().to_str().unwrap(), "--nodes", "a-police"]).status.success());
    std::fs::copy(other.path().join("crl.pem"), dir.path().join("crl.pem")).unwrap();
    let out = isx(&["pki", "crl", "--dir", p]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(2), "{t}");
    assert!(t.contains(&dir.path().join("crl.pem").display().to_string()) && t.contains("not signed"), "{t}");
    let out = isx(&["pki", "revoke", "--dir", p, "a-police"]);
    assert!(!out.status.success(), "revoke refuses to extend a foreign list: {}", text(&out));
}

#[cfg(unix)]
#[test]
fn pki_init_force_writes_every_key_0600_even_over_a_0644_one() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().to_str().unwrap();
    assert!(isx(&["pki", "init", "--dir", p, "--nodes", "a-police"]).status.success());
    let keys = ["ca.key", "gateway.key", "a-police.key", "audit.key", "audit-hmac.key"].map(|k| dir.path().join(k));
    for key in &keys {
        assert_eq!(mode(key), 0o600, "{}", key.display());
        set_mode(key, 0o644);
    }
    let out = isx(&["pki", "init", "--dir", p, "--nodes", "a-police", "--force"]);
    assert!(out.status.success(), "{}", text(&out));
    for key in &keys {
        assert_eq!(mode(key), 0o600, "{} after --force", key.display());
    }
}

#[cfg(unix)]
#[test]
fn a_gateway_on_a_key_others_may_read_refuses_to_start_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    assert!(isx(&["pki", "init", "--dir", pki.to_str().unwrap()]).status.success());
    let data = dir.path().join("data");
    let start = || gateway_once(&pki, &data);
    // In the order the gateway loads them: TLS, then the store (which creates its key), then the audit keys.
    for key in ["gateway.key", "audit.key", "audit-hmac.key", "gateway.store.key"] {
        let path = pki.join(key);
        set_mode(&path, 0o644);
        let out = start();
        let t = text(&out);
        assert!(!out.status.success(), "{key}: {t}");
        assert!(t.contains(&format!("chmod 600 {}", path.display())), "{key}: {t}");
        set_mode(&path, 0o600);
    }
}

/// A topology with one publish, and its whole log exported to `bundle.json`
/// in a temporary directory: the topology, the directory, the file, the bundle.
async fn exported_bundle() -> (isx_testkit::Topology, tempfile::TempDir, PathBuf, isx_core::wire::AuditBundle) {
    let topo = isx_testkit::Topology::start(isx_testkit::TopologySpec::default_agencies()).await.unwrap();
    topo.client("de-police")
        .await
        .unwrap()
        .publish(isx_testkit::samples::migrant_smuggling("de-police", &["fr-police"]))
        .await
        .unwrap();
    let auditor = topo.client("auditor").await.unwrap();
    let reason = isx_testkit::testkit_reason();
    let bundle =
        isx_node::audit::export(&auditor, &reason, "cli test", isx_core::wire::SearchRequest::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bundle.json");
    std::fs::write(&path, isx_core::json::to_json(&bundle)).unwrap();
    (topo, dir, path, bundle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_bundle_passes_and_a_corrupted_bundle_fails() {
    let (topo, dir, good, bundle) = exported_bundle().await;
    let key = topo.pki_dir().join("audit.pub");
    let out = isx(&["audit", "verify", "--bundle", good.to_str().unwrap(), "--key", key.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("OK: bundle verified offline"));

    let mut corrupt = bundle.clone();
    corrupt.entries[0].body[4] ^= 1;
    let bad = dir.path().join("corrupt.json");
    std::fs::write(&bad, isx_core::json::to_json(&corrupt)).unwrap();
    let out = isx(&["audit", "verify", "--bundle", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("VERIFICATION FAILED: entry 0"), "{}", text(&out));
    topo.shutdown().await;
}

/// Runs `isx` off the async runtime, so the in-process gateway keeps serving.
async fn isx_async(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        isx(&args)
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookup_request_list_and_decide_from_the_command_line() {
    let topo = isx_testkit::Topology::start(isx_testkit::TopologySpec::default_agencies()).await.unwrap();
    let alert = isx_testkit::samples::migrant_smuggling("de-police", &["it-police"]);
    topo.client("de-police").await.unwrap().publish(alert.clone()).await.unwrap();
    let pki = topo.pki_dir().display().to_string();
    let addr = topo.gateway_addr().to_string();
    let who = |node: &str| -> Vec<String> {
        ["--as", node, "--pki", &pki, "--gateway", &addr, "--officer", "cli officer"].map(str::to_owned).to_vec()
    };
    let cmd = |head: &[&str], node: &str, tail: &[&str]| -> Vec<String> {
        head.iter().map(|s| (*s).to_owned()).chain(who(node)).chain(tail.iter().map(|s| (*s).to_owned())).collect()
    };

    let out = isx_async(cmd(&["lookup"], "frontex", &["--purpose", "p", "--justification", "j"])).await;
    assert!(!out.status.success());
    assert!(text(&out).contains("give at least one identifier"), "{}", text(&out));

    let out = isx_async(cmd(
        &["lookup"],
        "frontex",
        &["--plate", "fg 512 zt", "--purpose", "border check", "--justification", "van at Ventimiglia", "--json"],
    ))
    .await;
    assert!(out.status.success(), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["hits"][0]["holder"], "de-police");
    assert_eq!(v["hits"][0]["alert_id"], alert.alert_id.as_str());
    let hit = v["hits"][0]["hit_id"].as_str().unwrap().to_owned();
    // The hit is an open item of frontex until it is followed up.
    let out = isx_async(cmd(&["lookup"], "frontex", &["--open"])).await;
    assert!(out.status.success(), "{}", text(&out));
    let t = text(&out);
    assert!(t.contains("1 open hit(s)") && t.contains("SHOWN TO"), "{t}");
    assert!(t.contains(&hit) && t.contains("cli officer") && t.contains("migrant_smuggling"), "{t}");
    let out = isx_async(cmd(&["lookup"], "frontex", &["--open", "--json"])).await;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (v["hits"][0]["hit_id"].as_str(), v["hits"][0]["holder"].as_str()),
        (Some(hit.as_str()), Some("de-police"))
    );
    let out = isx_async(cmd(&["lookup"], "frontex", &["--open", "--plate", "x"])).await;
    assert_eq!(out.status.code(), Some(2), "--open takes no identifier: {}", text(&out));

    let out = isx_async(cmd(
        &["access", "request"],
        "frontex",
        &[&hit, "--purpose", "border check", "--justification", "van at Ventimiglia", "--json"],
    ))
    .await;
    assert!(out.status.success(), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let request = v["request_id"].as_str().unwrap().to_owned();
    let out = isx_async(cmd(&["lookup"], "frontex", &["--open"])).await;
    assert!(text(&out).contains("no open hit"), "requested, so no longer open: {}", text(&out));

    let out = isx_async(cmd(&["access", "list"], "de-police", &["--state", "pending"])).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains(&request) && text(&out).contains("incoming (you decide): 1"), "{}", text(&out));

    let out = isx_async(cmd(&["access", "decide"], "it-police", &[&request, "--grant", "--reason", "r"])).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("NOT_FOUND") && text(&out).contains("does not exist"), "{}", text(&out));
    let out = isx_async(cmd(&["access", "decide"], "de-police", &[&request, "--grant", "--reason", "joint op"])).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("granted") && text(&out).contains("redacted"), "{}", text(&out));
    let out = isx_async(cmd(&["access", "decide"], "de-police", &[&request, "--deny", "--reason", "x"])).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("already granted"), "{}", text(&out));
    let out = isx_async(cmd(&["access", "decline"], "frontex", &[&hit, "--reason", "x"])).await;
    assert_eq!(out.status.code(), Some(1), "a granted hit cannot be declined");
    topo.shutdown().await;
}

/// Names as people write them: "FAMILY, Given", "Given Family" and "Given
/// FAMILY" find the same person, a guessed reading is told, and an
/// ambiguous name is refused asking for the comma form. Enum values are
/// taken by their full or short name, and a wrong one lists both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_and_enum_values_are_read_as_people_write_them() {
    let topo = isx_testkit::Topology::start(isx_testkit::TopologySpec::default_agencies()).await.unwrap();
    let alert = isx_testkit::samples::migrant_smuggling("de-police", &["it-police"]);
    assert_eq!((alert.subjects[0].family_name.as_str(), alert.subjects[0].given_names.as_str()), ("Rinaldi", "Marco"));
    topo.client("de-police").await.unwrap().publish(alert.clone()).await.unwrap();
    let pki = topo.pki_dir().display().to_string();
    let addr = topo.gateway_addr().to_string();
    let lookup = |name: &str| -> Vec<String> {
        [
            "lookup",
            "--as",
            "frontex",
            "--pki",
            &pki,
            "--gateway",
            &addr,
            "--officer",
            "o",
            "--name",
            name,
            "--dob",
            "1981-11-02",
            "--purpose",
            "border check",
            "--justification",
            "passenger list",
            "--json",
        ]
        .map(str::to_owned)
        .to_vec()
    };
    for (name, guessed) in [("Rinaldi, Marco", false), ("Marco Rinaldi", true), ("RINALDI Marco", true)] {
        let out = isx_async(lookup(name)).await;
        assert!(out.status.success(), "{name}: {}", text(&out));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["hits"][0]["alert_id"], alert.alert_id.as_str(), "{name} finds the person");
        let told = String::from_utf8_lossy(&out.stderr)
            .to_lowercase()
            .contains("read as family name \"rinaldi\", given names \"marco\"");
        assert_eq!(told, guessed, "{name}: {}", text(&out));
    }
    let out = isx_async(lookup("Marco Antonio Rinaldi")).await;
    assert!(!out.status.success());
    assert!(text(&out).contains("write the family name first with a comma"), "{}", text(&out));

    let search = |op: &str| -> Vec<String> {
        [
            "audit",
            "search",
            "--as",
            "auditor",
            "--pki",
            &pki,
            "--gateway",
            &addr,
            "--officer",
            "DPO",
            "--case",
            "CLI-TEST",
            "--operation",
            op,
        ]
        .map(str::to_owned)
        .to_vec()
    };
    for op in ["consultation", "OPERATION_CONSULTATION", "Consultation"] {
        let out = isx_async(search(op)).await;
        assert!(out.status.success(), "{op}: {}", text(&out));
        assert!(text(&out).contains("consultation"), "{op}: {}", text(&out));
    }
    let out = isx_async(search("consultations")).await;
    assert!(!out.status.success());
    assert!(text(&out).contains("OPERATION_CONSULTATION / consultation"), "{}", text(&out));
    topo.shutdown().await;
}

/// A refused connection is told at the client with its cause and fix,
/// not as a transport error: an unregistered node's certificate (the
/// gateway drops it after the handshake) and an address nothing listens on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_connection_names_its_cause_and_fix() {
    let topo = isx_testkit::Topology::start(isx_testkit::TopologySpec::default_agencies()).await.unwrap();
    let pki = topo.pki_dir().display().to_string();
    let addr = topo.gateway_addr().to_string();
    let out = isx_async(["pki", "issue", "--dir", &pki, "nl-police"].map(str::to_owned).to_vec()).await;
    assert!(out.status.success(), "{}", text(&out));
    let send = |node: &str, gateway: &str| -> Vec<String> {
        [
            "alert",
            "send",
            "--as",
            node,
            "--pki",
            &pki,
            "--gateway",
            gateway,
            "--officer",
            "o",
            "deploy/local/alerts/foreign-fighter.json",
        ]
        .map(str::to_owned)
        .to_vec()
    };
    let out = isx_async(send("nl-police", &addr)).await;
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(t.contains("nl-police is not registered there (add [nodes.nl-police] to its gateway.toml)"), "{t}");
    assert!(!t.contains("transport error") && !t.contains("Cancelled"), "{t}");
    let out = isx_async(send("de-police", "localhost:1")).await;
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(t.contains("cannot reach the gateway at localhost:1") && t.contains("is it running"), "{t}");
    assert_eq!(t.matches("localhost:1").count(), 1, "said once: {t}");
    topo.shutdown().await;
}

/// An alert file may give enum values by their short names; a wrong one is
/// named with its field and every valid value, once.
#[test]
fn alert_files_take_short_enum_names_and_list_the_valid_ones() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a.json");
    let file_arg = file.to_str().unwrap();
    let alert = |category: &str| {
        format!(
            "{{\"alert_id\": \"01JDQ3E1F2G3H4J5K6M7N8P9Q0\", \"origin\": \"de-police\", \"category\": \"{category}\", \"labels\": {{\"tlp\": \"amber\", \"handling_code\": \"h0\"}}}}"
        )
    };
    std::fs::write(&file, alert("terrorism")).unwrap();
    let out = isx(&["policy", "explain", "--alert", file_arg, "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    std::fs::write(&file, alert("terorism")).unwrap();
    let out = isx(&["policy", "explain", "--alert", file_arg]);
    let t = text(&out);
    assert!(!out.status.success());
    assert!(t.contains("category: \"terorism\" is not a valid Category; use one of"), "{t}");
    assert!(t.contains("CATEGORY_TERRORISM / terrorism"), "{t}");
    assert_eq!(t.matches("is not a valid").count(), 1, "said once: {t}");
}

#[test]
fn scenario_run_reports_each_expectation_and_a_malformed_file_names_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let alerts = repo().join("deploy/local/alerts");
    let good = format!(
        "name = \"t\"\n[[step]]\ndo = \"publish\"\nas = \"it-police\"\nfile = {:?}\nreceipt = {{ frontex = \"full\" }}\n",
        alerts.join("smuggling-network.json")
    );
    let file = dir.path().join("wrong.toml");
    std::fs::write(&file, &good).unwrap();
    let junit = dir.path().join("junit.xml");
    let out = isx(&["scenario", "run", file.to_str().unwrap(), "--junit", junit.to_str().unwrap()]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains("FAIL  receipt: frontex full — got redacted"), "{t}");
    assert!(t.contains("1 failed"), "{t}");
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.contains("<failure message=\"got redacted\"/>"), "{xml}");

    std::fs::write(&file, good.replace("as = \"it-police\"", "as = \"it-police\"\ncolour = \"red\"")).unwrap();
    let out = isx(&["scenario", "run", file.to_str().unwrap()]);
    let t = text(&out);
    assert!(!out.status.success());
    assert!(t.contains("wrong.toml:5: step 1: key `colour` does not apply"), "{t}");
}

#[test]
fn isx_up_starts_every_process_and_stops_them_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let mut up = ChildGuard::spawn(
        Command::new(env!("CARGO_BIN_EXE_isx"))
            .args(["up", "--dir", dir.path().to_str().unwrap(), "--listen", "127.0.0.1:0"])
            .current_dir(repo())
            .env("ISX_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null()),
        true,
    );
    // Lines arrive over a channel from a reader thread, so that every wait has a deadline.
    let (tx, lines) = mpsc::channel();
    let stdout = BufReader::new(up.child.stdout.take().expect("piped stdout"));
    std::thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let deadline = Instant::now() + LIMIT;
    let mut seen: Vec<String> = Vec::new();
    // Bounded: the summary ends with this line; each turn receives before the deadline or ends the test.
    loop {
        match lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) => {
                let done = line.starts_with("Ctrl-C stops everything");
                seen.push(line);
                if done {
                    break;
                }
            }
            Err(RecvTimeoutError::Timeout) => {
                panic!("isx up printed no summary within {LIMIT:?} (stopped); it printed:\n{}", seen.join("\n"))
            }
            Err(RecvTimeoutError::Disconnected) => panic!("isx up ended before its summary:\n{}", seen.join("\n")),
        }
    }
    let all = seen.join("\n");
    assert!(all.contains("created the development PKI"), "{all}");
    assert!(all.contains("isx up: the gateway listens on 127.0.0.1:"), "{all}");
    for agency in ["de-police", "fr-police", "it-police", "europol", "frontex"] {
        assert!(all.contains(&format!("agency {agency}")), "{all}");
    }
    assert!(dir.path().join("pki/ca.crt").exists() && dir.path().join("pki/audit.key").exists());
    // Ctrl-C: SIGINT to `isx up` alone; it stops the agencies, then the gateway.
    up.interrupt();
    let deadline = Instant::now() + LIMIT;
    let mut rest: Vec<String> = Vec::new();
    loop {
        match lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) => rest.push(line),
            Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) => {
                panic!("isx up still runs {LIMIT:?} after Ctrl-C (stopped); it printed:\n{}", rest.join("\n"))
            }
        }
    }
    let rest = rest.join("\n");
    let status = up.wait_until(deadline).unwrap_or_else(|| panic!("isx up closed its output but still runs:\n{rest}"));
    assert!(status.success(), "{rest}");
    assert!(rest.contains("gateway stopped") && rest.contains("frontex stopped"), "{rest}");
}

#[test]
fn bench_runs_the_chosen_phases_and_prints_the_documented_keys() {
    let out = isx(&["bench", "--quick", "--only", "audit", "--log-sizes", "300,600", "--json"]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).expect("one JSON object");
    assert_eq!(report["phases"], serde_json::json!(["audit"]), "{report}");
    for key in ["audit_append_rps", "sled_raw_rps", "audit_append_ratio", "verify_records_per_s", "search_growth"] {
        assert!(report[key].as_f64().is_some_and(|v| v > 0.0), "{key} missing or zero in {report}");
    }
    let sizes: Vec<u64> =
        report["log_sizes"].as_array().unwrap().iter().map(|s| s["records"].as_u64().unwrap()).collect();
    assert_eq!(sizes, [300, 600], "{report}");
    assert!(report["log_sizes"][1]["search_ms"].as_f64().is_some_and(|v| v > 0.0), "{report}");
    // Phases that did not run leave no keys behind.
    for key in ["baseline_rps", "publish_ratio", "e2e_p99_ms", "rss_mb_queued", "policy_decisions_per_s"] {
        assert!(report.get(key).is_none(), "{key} present in {report}");
    }
    assert!(t.contains("bench: audit append"), "progress goes to stderr: {t}");

    let out = isx(&["bench", "--only", "publish,speed"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(2), "{t}");
    assert!(t.contains("unknown phase \"speed\"") && t.contains("memory, baseline, publish, lookup"), "{t}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_measures_a_running_gateway_and_skips_memory() {
    let topo = isx_testkit::Topology::start(isx_testkit::TopologySpec::default_agencies()).await.unwrap();
    let pki = topo.pki_dir().display().to_string();
    let addr = topo.gateway_addr().to_string();
    let args = ["bench", "--quick", "--only", "memory,publish", "--json", "--gateway", &addr, "--pki", &pki];
    let out = isx_async(args.map(str::to_owned).to_vec()).await;
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    // The baseline comes with publish; memory needs the gateway in the bench's process.
    assert_eq!(report["phases"], serde_json::json!(["baseline", "publish"]), "{report}");
    assert!(t.contains("memory: skipped"), "{t}");
    assert!(report["publish_rps"].as_f64().is_some_and(|v| v > 0.0), "{report}");
    assert_eq!(report["errors"], 0, "{report}");
    // The running gateway's own agencies received the publishes.
    assert!(!topo.inbox("europol").is_empty(), "europol received nothing");
    topo.shutdown().await;
}

/// An `isx up` the test owns: every line it prints (stdout and stderr, with
/// each child's lines prefixed `[name]`) arrives over a channel, so that
/// every wait has a deadline.
struct Up {
    guard: ChildGuard,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
    dir: tempfile::TempDir,
}

impl Up {
    /// Starts `isx up --dir TMP --listen 127.0.0.1:0` plus `extra` and waits for its summary.
    fn start(extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_isx"));
        cmd.args(["up", "--dir", dir.path().to_str().unwrap(), "--listen", "127.0.0.1:0"])
            .args(extra)
            .current_dir(repo())
            // Quiet, but for the gateway's policy reloads.
            .env("ISX_LOG", "warn,isx_gateway::disclosure=info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut guard = ChildGuard::spawn(&mut cmd, true);
        let (tx, lines) = mpsc::channel();
        for out in [
            Box::new(guard.child.stdout.take().expect("piped stdout")) as Box<dyn Read + Send>,
            Box::new(guard.child.stderr.take().expect("piped stderr")),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    if tx.send(line).is_err() {
                        return;
                    }
                }
            });
        }
        let mut up = Self { guard, lines, seen: Vec::new(), dir };
        up.until("its summary", |l| l.starts_with("Ctrl-C stops everything"));
        up
    }

    /// Waits for the first line (from now on) that satisfies `done`; fails
    /// the test with everything seen if none comes within [`LIMIT`].
    fn until(&mut self, what: &str, done: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + LIMIT;
        // Bounded: each turn receives before the deadline or ends the test.
        loop {
            match self.lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if done(&line) {
                        return line;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    panic!("isx up printed no line with {what} within {LIMIT:?}; it printed:\n{}", self.seen.join("\n"))
                }
                Err(RecvTimeoutError::Disconnected) => {
                    panic!("isx up ended before a line with {what}; it printed:\n{}", self.seen.join("\n"))
                }
            }
        }
    }

    /// A line already seen that satisfies `done`, or else the next one (see [`Up::until`]).
    fn seen_or_until(&mut self, what: &str, done: impl Fn(&str) -> bool) -> String {
        match self.seen.iter().find(|l| done(l)) {
            Some(line) => line.clone(),
            None => self.until(what, done),
        }
    }

    /// The `host:port` to dial, from the summary.
    fn gateway(&self) -> String {
        let line =
            self.seen.iter().find_map(|l| l.strip_prefix("isx up: the gateway listens on ")).expect("the address");
        line.split_whitespace().next().unwrap().replace("127.0.0.1", "localhost")
    }

    /// The pid of an agency, from the summary or its latest restart.
    fn pid(&self, agency: &str) -> rustix::process::Pid {
        let restarted = format!("isx up: agency {agency} restarted (pid ");
        let pid = self
            .seen
            .iter()
            .rev()
            .find_map(|l| {
                l.strip_prefix(&restarted).map(|p| p.trim_end_matches(')').to_owned()).or_else(|| {
                    let mut words = l.split_whitespace();
                    (words.next() == Some("agency") && words.next() == Some(agency) && words.next() == Some("pid"))
                        .then(|| words.next().unwrap_or_default().to_owned())
                })
            })
            .unwrap_or_else(|| panic!("no pid for {agency} in:\n{}", self.seen.join("\n")));
        rustix::process::Pid::from_raw(pid.parse().unwrap()).expect("a pid")
    }

    fn pki(&self) -> String {
        self.dir.path().join("pki").display().to_string()
    }

    fn data(&self, agency: &str) -> String {
        self.dir.path().join("data").join(agency).display().to_string()
    }

    /// Runs an `isx` client command against this deployment, acting through
    /// the environment (ISX_GATEWAY, ISX_PKI, ISX_AS, ISX_OFFICER) as a tester would.
    fn isx_as(&self, node: &str, args: &[&str]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_isx"));
        cmd.args(args)
            .current_dir(repo())
            .env("ISX_GATEWAY", self.gateway())
            .env("ISX_PKI", self.pki())
            .env("ISX_AS", node)
            .env("ISX_OFFICER", "test officer")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut guard = ChildGuard::spawn(&mut cmd, false);
        let deadline = Instant::now() + LIMIT;
        let Some(status) = guard.wait_until(deadline) else { panic!("isx {args:?} still runs after {LIMIT:?}") };
        let mut out = Output { status, stdout: Vec::new(), stderr: Vec::new() };
        guard.child.stdout.take().unwrap().read_to_end(&mut out.stdout).unwrap();
        guard.child.stderr.take().unwrap().read_to_end(&mut out.stderr).unwrap();
        out
    }

    /// Ctrl-C; waits until it ends and returns its exit status and what it printed since.
    fn stop(mut self) -> (ExitStatus, String) {
        self.guard.interrupt();
        let deadline = Instant::now() + LIMIT;
        let mut rest: Vec<String> = Vec::new();
        // Bounded: each turn receives before the deadline or ends the test.
        loop {
            match self.lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) => rest.push(line),
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {
                    panic!("isx up still runs {LIMIT:?} after Ctrl-C; it printed:\n{}", rest.join("\n"))
                }
            }
        }
        let rest = rest.join("\n");
        let status = self
            .guard
            .wait_until(deadline)
            .unwrap_or_else(|| panic!("isx up closed its output but still runs:\n{rest}"));
        (status, rest)
    }
}

const FOREIGN_FIGHTER: &str = "01JDQ3A8Y7K2M4N6P8R0S2T4V6";
const SMUGGLING: &str = "01JDQ3B2C4D6E8F0G2H4J6K8M0";

/// A line an agency prints for a delivery of `alert_id`, e.g. `[europol] [3] 01JD... from de-police | ...`.
fn delivered(agency: &str, alert_id: &str) -> impl Fn(&str) -> bool {
    let prefix = format!("[{agency}] [");
    let alert = format!("] {alert_id} from ");
    move |l: &str| l.starts_with(&prefix) && l.contains(&alert)
}

#[test]
fn isx_up_reports_an_agency_that_exits_keeps_the_others_and_forwards_sighup() {
    let mut up = Up::start(&[]);
    let fr = up.pid("fr-police");
    rustix::process::kill_process(fr, rustix::process::Signal::KILL).unwrap();
    up.until("fr-police's exit", |l| {
        l == "isx up: agency fr-police exited (signal: 9 (SIGKILL)); the others keep running (`isx up --restart` restarts agencies)"
    });

    // The others still receive: de-police publishes (acting through ISX_* variables), Europol gets it.
    let out = up.isx_as("de-police", &["alert", "send", "deploy/local/alerts/foreign-fighter.json"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("europol"), "{}", text(&out));
    up.until("Europol's delivery", delivered("europol", FOREIGN_FIGHTER));

    // SIGHUP to `isx up` reaches the gateway: without a request file naming
    // the officer and the reason, the policy reload is refused (and recorded);
    // with one, the policy is reloaded.
    rustix::process::kill_process(up.guard.pid(), rustix::process::Signal::HUP).unwrap();
    up.until("the refusal", |l| l.starts_with("[gateway]") && l.contains("policy reload on SIGHUP refused"));
    let data = up.data("gateway");
    let request = [
        "admin",
        "request-reload",
        "--config",
        "deploy/local/gateway.toml",
        "--data",
        &data,
        "--officer",
        "Ops Lead",
        "--reason",
        "CR-1",
    ];
    let out = isx(&request);
    assert!(out.status.success(), "{}", text(&out));
    rustix::process::kill_process(up.guard.pid(), rustix::process::Signal::HUP).unwrap();
    up.until("the reload", |l| l.starts_with("[gateway]") && l.contains("policy reloaded"));

    let (status, rest) = up.stop();
    assert_eq!(status.code(), Some(1), "an agency was down at the end:\n{rest}");
    assert!(rest.contains("fr-police was down: signal: 9 (SIGKILL)"), "{rest}");
    assert!(rest.contains("europol stopped") && rest.contains("gateway stopped"), "{rest}");
}

#[test]
fn isx_up_restart_brings_a_killed_agency_back() {
    let mut up = Up::start(&["--restart"]);
    let first = up.pid("fr-police");
    rustix::process::kill_process(first, rustix::process::Signal::KILL).unwrap();
    up.until("the restart notice", |l| {
        l == "isx up: agency fr-police exited (signal: 9 (SIGKILL)); restarting it in 0.5 s (restart 1 of at most 5 a minute)"
    });
    up.until("the restart", |l| l.starts_with("isx up: agency fr-police restarted (pid "));
    assert_ne!(up.pid("fr-police"), first);
    // It is back: it receives what Italy sends it.
    let out = up.isx_as("it-police", &["alert", "send", "deploy/local/alerts/smuggling-network.json"]);
    assert!(out.status.success(), "{}", text(&out));
    up.until("fr-police's delivery", delivered("fr-police", SMUGGLING));
    let (status, rest) = up.stop();
    assert!(status.success(), "{rest}");
    assert!(rest.contains("fr-police stopped"), "{rest}");
}

#[test]
fn agency_show_reads_a_running_agency_a_stopped_one_and_refuses_otherwise() {
    let mut up = Up::start(&[]);
    let out = up.isx_as("de-police", &["alert", "send", "deploy/local/alerts/foreign-fighter.json"]);
    assert!(out.status.success(), "{}", text(&out));
    // The two deliveries may come in either order.
    up.seen_or_until("Europol's delivery", delivered("europol", FOREIGN_FIGHTER));
    up.seen_or_until("France's delivery", delivered("fr-police", FOREIGN_FIGHTER));
    let (pki, europol) = (up.pki(), up.data("europol"));

    // Running: its store is locked, so it answers through its socket.
    let out = isx(&["agency", "show", "europol", "--data", &europol, "--pki", &pki, "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["source"].as_str().unwrap().starts_with("its running agency"), "{v}");
    assert_eq!(v["received"][0]["alert_id"], FOREIGN_FIGHTER, "{v}");
    assert_eq!(v["received"][0]["level"], "redacted", "{v}");
    assert_eq!(v["received"][0]["delivery"]["alert"]["origin"], "de-police", "{v}");
    let out = isx(&["agency", "show", "europol", "--data", &europol, "--pki", &pki, "--alert", SMUGGLING]);
    assert!(out.status.success() && text(&out).contains("nothing of alert"), "{}", text(&out));

    // Stopped: read from its store.
    rustix::process::kill_process(up.pid("fr-police"), rustix::process::Signal::KILL).unwrap();
    up.until("fr-police's exit", |l| l.starts_with("isx up: agency fr-police exited"));
    let out = isx(&["agency", "show", "fr-police", "--data", &up.data("fr-police"), "--pki", &pki]);
    assert!(out.status.success(), "{}", text(&out));
    let t = text(&out);
    assert!(t.contains("fr-police holds 1 alert(s) (read from its store in"), "{t}");
    assert!(t.contains(FOREIGN_FIGHTER) && t.contains("level redacted"), "{t}");

    // Neither: no agency data there; a store locked by an agency that does not answer.
    let out = isx(&["agency", "show", "europol", "--data", &up.data("nobody"), "--pki", &pki]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("holds no agency store"), "{}", text(&out));
    std::fs::remove_file(std::path::Path::new(&europol).join("inspect.sock")).unwrap();
    let out = isx(&["agency", "show", "europol", "--data", &europol, "--pki", &pki]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("europol's agency is running (its store"), "{}", text(&out));
    up.stop();
}

#[test]
fn scenario_run_against_a_full_isx_up_uses_its_agencies() {
    let up = Up::start(&[]);
    let junit = up.dir.path().join("junit.xml");
    let data = up.dir.path().join("data").display().to_string();
    let out = isx(&[
        "scenario",
        "run",
        "--against",
        &up.gateway(),
        "--pki",
        &up.pki(),
        "--agencies",
        &data,
        "--junit",
        junit.to_str().unwrap(),
        "deploy/local/scenarios/01-showcase.toml",
        "deploy/local/scenarios/06-offline-backlog.toml",
    ]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(
        t.contains("agencies already running (read through their inspect sockets): de-police, europol, fr-police, frontex, it-police"),
        "{t}"
    );
    assert!(t.contains("PASS deploy/local/scenarios/01-showcase.toml: 64 expectation(s), 0 failed"), "{t}");
    // 06 stops agencies that run in isx up: skipped, with the reason, never a pass.
    assert!(t.contains("SKIPPED  deploy/local/scenarios/06-offline-backlog.toml  it stops or starts agencies that run in another process"), "{t}");
    assert!(t.contains("2 scenario(s): 1 passed, 0 failed, 1 skipped"), "{t}");
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.contains("<skipped message=\"it stops or starts agencies that run in another process"), "{xml}");
    up.stop();
}

#[test]
fn scenario_run_against_an_unreachable_gateway_is_one_connection_error() {
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki").display().to_string();
    assert!(isx(&["pki", "init", "--dir", &pki]).status.success());
    // A port nothing listens on: bound, then closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr = format!("127.0.0.1:{port}");
    let out = isx(&["scenario", "run", "--against", &addr, "--pki", &pki, "deploy/local/scenarios/01-showcase.toml"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(2), "{t}");
    assert_eq!(t.lines().filter(|l| l.starts_with("error:")).count(), 1, "one error: {t}");
    assert!(t.contains(&format!("no gateway answers at {addr}")) && t.contains("Start one (`isx up`"), "{t}");
    assert!(!t.contains("FAIL"), "no cascade of failed expectations: {t}");
}

#[test]
fn client_commands_take_isx_as_and_isx_pki_from_the_environment() {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_isx"));
    cmd.args(["alert", "send", "--officer", "o", "deploy/local/alerts/foreign-fighter.json"])
        .current_dir(repo())
        .env("ISX_AS", "de-police")
        .env("ISX_PKI", "/nonexistent-isx-pki")
        .env("ISX_GATEWAY", "localhost:1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut guard = ChildGuard::spawn(&mut cmd, false);
    let status = guard.wait_until(Instant::now() + LIMIT).expect("it ends");
    let mut err = String::new();
    guard.child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert!(!status.success());
    // Not "--as NODE is required": the node and PKI came from the environment.
    assert!(err.contains("/nonexistent-isx-pki/"), "{err}");
}

/// `--as auditor` with the topology's PKI and gateway, then `tail`.
fn as_auditor(topo: &isx_testkit::Topology, head: &[&str], tail: &[&str]) -> Vec<String> {
    let pki = topo.pki_dir().display().to_string();
    let addr = topo.gateway_addr().to_string();
    head.iter()
        .map(|s| (*s).to_owned())
        .chain(
            ["--as", "auditor", "--pki", &pki, "--gateway", &addr, "--officer", "DPO Martens", "--case", "CLI-TEST-1"]
                .map(str::to_owned),
        )
        .chain(tail.iter().map(|s| (*s).to_owned()))
        .collect()
}

/// The seqs of the table rows in `stdout` (lines that start with a number).
fn table_seqs(stdout: &[u8]) -> Vec<u64> {
    String::from_utf8_lossy(stdout).lines().filter_map(|l| l.split_whitespace().next()?.parse().ok()).collect()
}

/// The records of `--json` output.
fn json_records(stdout: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(stdout).lines().map(|l| serde_json::from_str(l).expect("one JSON object a line")).collect()
}

/// Publishes `n` migrant-smuggling alerts from de-police to fr-police and
/// waits until fr-police holds them.
async fn publish_some(topo: &isx_testkit::Topology, n: usize) -> Vec<String> {
    let de = topo.client("de-police").await.unwrap();
    let mut ids = Vec::new();
    for _ in 0..n {
        let alert = isx_testkit::samples::migrant_smuggling("de-police", &["fr-police"]);
        de.publish(alert.clone()).await.unwrap();
        let arrived = topo.inbox("fr-police").wait_for(&alert.alert_id, LIMIT).await.unwrap();
        assert!(arrived.is_some(), "fr-police received {}", alert.alert_id);
        ids.push(alert.alert_id);
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_reads_name_their_purpose_and_case_and_an_export_its_recipient() {
    let topo = isx_testkit::Topology::start(isx_testkit::TopologySpec::default_agencies()).await.unwrap();
    publish_some(&topo, 1).await;
    let pki = topo.pki_dir().display().to_string();
    let addr = topo.gateway_addr().to_string();
    let who = ["--as", "auditor", "--pki", &pki, "--gateway", &addr, "--officer", "DPO Martens"];
    let run = |args: &[&str]| {
        let args: Vec<String> = args.iter().chain(who.iter()).map(|s| (*s).to_owned()).collect();
        isx_async(args)
    };
    // A search without --case is refused before it reaches the gateway, saying what to give.
    let out = run(&["audit", "search"]).await;
    assert!(!out.status.success());
    assert!(text(&out).contains("--case REF is required"), "{}", text(&out));
    let out = run(&["audit", "search", "--case", "X", "--purpose", "curiosity"]).await;
    assert!(!out.status.success());
    assert!(
        text(&out).contains("use lawfulness, self-monitoring, integrity or criminal-proceedings"),
        "{}",
        text(&out)
    );
    // An export needs --to.
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("b.json");
    let out = run(&["audit", "export", "--case", "CNIL-2026-0113", "--out", bundle.to_str().unwrap()]).await;
    assert!(!out.status.success() && text(&out).contains("--for <RECIPIENT>"), "{}", text(&out));

    // Each read is recorded with its purpose and case; verify states integrity.
    let out = run(&["audit", "search", "--case", "CNIL-2026-0113", "--purpose", "criminal-proceedings"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let out = run(&["audit", "verify"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let to = "Tribunal judiciaire de Lyon";
    let args = ["audit", "export", "--case", "CNIL-2026-0113", "--for", to, "--out", bundle.to_str().unwrap()];
    let out = run(&args).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains(&format!("(for {to};")), "{}", text(&out));
    let reads = topo
        .audit_records(isx_core::wire::SearchRequest {
            operation: isx_core::wire::Operation::LogRead as i32,
            officer: "DPO Martens".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let said: Vec<(&str, &str, &str, &str)> = reads
        .iter()
        .map(|r| {
            let call = r.detail.split_whitespace().next().unwrap_or_default();
            (call, r.purpose.as_str(), r.case_reference.as_str(), r.export_recipient.as_str())
        })
        .collect();
    assert_eq!(
        said,
        [
            ("Search", "criminal_proceedings", "CNIL-2026-0113", ""),
            ("VerifyLog:", "integrity", "routine integrity check", ""),
            ("Export", "lawfulness", "CNIL-2026-0113", to),
        ],
        "{reads:?}"
    );
    // The listing shows why each read was made.
    let out = run(&["audit", "search", "--case", "CNIL-2026-0113", "--operation", "log_read", "--limit", "3"]).await;
    assert!(
        text(&out).contains(&format!("[lawfulness, case CNIL-2026-0113, to {to}] Export of everything")),
        "{}",
        text(&out)
    );
    topo.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_search_is_newest_first_says_when_more_match_and_pages_on() {
    let topo = isx_testkit::Topology::start(isx_testkit::TopologySpec::default_agencies()).await.unwrap();
    publish_some(&topo, 3).await;

    let out = isx_async(as_auditor(&topo, &["audit", "search"], &["--limit", "4"])).await;
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    let first = table_seqs(&out.stdout);
    assert_eq!(first.len(), 4, "{t}");
    assert!(first.windows(2).all(|w| w[0] > w[1]), "newest first: {first:?}\n{t}");
    let last = first[3];
    let hint =
        format!("more records match: show more with --limit 40, all with --all, or the next page with --before {last}");
    assert!(t.contains(&hint), "{t}");

    // The next page continues below the last seq shown, and says when it is the end.
    let out =
        isx_async(as_auditor(&topo, &["audit", "search"], &["--before", &last.to_string(), "--limit", "1000"])).await;
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    let rest = table_seqs(&out.stdout);
    assert_eq!(rest, (0..last).rev().collect::<Vec<_>>(), "{t}");
    assert!(!t.contains("more records match"), "{t}");

    // Oldest first pages with --after.
    let out = isx_async(as_auditor(&topo, &["audit", "search"], &["--oldest-first", "--limit", "2"])).await;
    let t = text(&out);
    assert_eq!(table_seqs(&out.stdout), vec![0, 1], "{t}");
    assert!(t.contains("or the next page with --after 1"), "{t}");

    // --all prints every record, in pages, and nothing is left.
    let out = isx_async(as_auditor(&topo, &["audit", "search"], &["--all", "--json"])).await;
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    // Canonical JSON: 64-bit integers as strings, seq 0 (a default) omitted.
    let all: Vec<u64> =
        json_records(&out.stdout).iter().map(|r| r["seq"].as_str().map_or(0, |s| s.parse().unwrap())).collect();
    assert!(all.len() > first.len() + rest.len(), "{t}");
    assert_eq!(all.iter().rev().take(rest.len()).copied().collect::<Vec<_>>(), (0..last).collect::<Vec<_>>());
    assert!(!t.contains("more records match"), "{t}");
    topo.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_search_takes_whole_days_and_both_sides_of_a_record() {
    let topo = isx_testkit::Topology::start(isx_testkit::TopologySpec::default_agencies()).await.unwrap();
    let ids = publish_some(&topo, 2).await;
    // The policy refuses Europol an alert outside its mandate: the denial is
    // de-police's (origin) and Europol's (recipient).
    let mut crisis = isx_testkit::samples::base(
        "de-police",
        &["europol"],
        isx_core::wire::Category::CrisesAndDisasters,
        isx_core::wire::Action::Inform,
    );
    crisis.narrative = "dam breach".into();
    topo.client("de-police").await.unwrap().publish(crisis.clone()).await.unwrap();
    let search =
        |tail: &[&str]| as_auditor(&topo, &["audit", "search"], &[tail, &["--json", "--limit", "1000"]].concat());
    let collections = |out: &Output| -> Vec<serde_json::Value> {
        assert!(out.status.success(), "{}", text(out));
        json_records(&out.stdout).into_iter().filter(|r| r["operation"] == "OPERATION_COLLECTION").collect()
    };

    // The day the records were written, from their own time: that whole day.
    let out = isx_async(search(&["--operation", "collection"])).await;
    let all = collections(&out);
    assert_eq!(all.len(), 3, "{}", text(&out));
    let day = all[0]["time"].as_str().unwrap()[..10].to_owned();
    let out = isx_async(search(&["--operation", "collection", "--from", &day, "--to", &day])).await;
    assert_eq!(collections(&out).len(), 3, "--from {day} --to {day} is that whole day: {}", text(&out));
    let out = isx_async(search(&["--operation", "collection", "--to", &day])).await;
    assert_eq!(collections(&out).len(), 3, "--to {day} includes the day: {}", text(&out));
    let exact = all[0]["time"].as_str().unwrap().to_owned();
    let out = isx_async(search(&["--operation", "collection", "--from", &exact, "--to", &exact])).await;
    assert!(collections(&out).iter().all(|r| r["time"] == exact.as_str()), "an RFC 3339 time is exact");

    // Sides: de-police published (origin), fr-police and Europol were candidates (recipients).
    let alerts = |out: &Output| -> Vec<String> {
        collections(out).iter().map(|r| r["alert_id"].as_str().unwrap_or_default().to_owned()).collect()
    };
    let to_fr: Vec<String> = ids.iter().rev().cloned().collect();
    let out = isx_async(search(&["--origin", "de-police", "--operation", "collection"])).await;
    assert_eq!(alerts(&out), [&[crisis.alert_id.clone()], &to_fr[..]].concat(), "{}", text(&out));
    let out = isx_async(search(&["--origin", "fr-police", "--operation", "collection"])).await;
    assert!(alerts(&out).is_empty(), "{}", text(&out));
    let out = isx_async(search(&["--recipient", "fr-police", "--operation", "collection"])).await;
    assert_eq!(alerts(&out), to_fr, "fr-police was a candidate of two: {}", text(&out));
    let out = isx_async(search(&["--recipient", "europol", "--operation", "collection"])).await;
    assert_eq!(alerts(&out), [crisis.alert_id.clone()], "{}", text(&out));
    let out = isx_async(search(&["--node", "fr-police", "--operation", "collection"])).await;
    assert_eq!(alerts(&out), to_fr, "--node is either side: {}", text(&out));
    let out = isx_async(search(&["--node", "de-police", "--operation", "collection"])).await;
    assert_eq!(alerts(&out).len(), 3, "{}", text(&out));

    let out = isx_async(search(&["--recipient", "europol", "--operation", "denial"])).await;
    let denials = json_records(&out.stdout);
    assert_eq!(denials.len(), 1, "{}", text(&out));
    assert_eq!((&denials[0]["node"], &denials[0]["recipients"][0]["node"]), (&"de-police".into(), &"europol".into()));
    assert_eq!(denials[0]["alert_id"], crisis.alert_id.as_str());
    let out = isx_async(search(&["--node", "europol", "--operation", "denial"])).await;
    assert_eq!(json_records(&out.stdout).len(), 1, "{}", text(&out));
    let out = isx_async(search(&["--origin", "europol", "--operation", "denial"])).await;
    assert!(json_records(&out.stdout).is_empty(), "{}", text(&out));
    let out = isx_async(search(&["--node", "de-police", "--operation", "denial"])).await;
    assert_eq!(json_records(&out.stdout).len(), 1, "{}", text(&out));
    topo.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_table_shows_the_deciding_policies() {
    let topo = isx_testkit::Topology::start(isx_testkit::TopologySpec::default_agencies()).await.unwrap();
    // To every node: each candidate decided by policies of its own.
    let broadcast = isx_testkit::samples::migrant_smuggling("de-police", &[]);
    topo.client("de-police").await.unwrap().publish(broadcast.clone()).await.unwrap();
    let out =
        isx_async(as_auditor(&topo, &["audit", "search"], &["--operation", "denial", "--recipient", "auditor"])).await;
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut lines = stdout.lines();
    assert!(lines.next().unwrap().contains(" policies "), "a policies column: {t}");
    let row = lines.next().expect("the denial");
    assert!(row.contains("auditor-never-receives"), "{t}");
    // A collection's candidates were decided by several policies: the column
    // holds them up to its width, and says when it cut.
    let out = isx_async(as_auditor(&topo, &["audit", "search"], &["--operation", "collection", "--json"])).await;
    let record = &json_records(&out.stdout)[0];
    let ids: Vec<String> = record["recipients"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["policy_ids"].as_array().cloned().unwrap_or_default())
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    assert!(ids.join(",").chars().count() > 36, "long enough to be cut: {ids:?}");
    let out = isx_async(as_auditor(&topo, &["audit", "search"], &["--operation", "collection"])).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let row = stdout.lines().nth(1).expect("the collection");
    assert!(row.contains(&ids[0]) && row.contains('…'), "{row}");
    let out = isx_async(as_auditor(&topo, &["audit", "search"], &["--operation", "collection", "--csv"])).await;
    let csv = String::from_utf8_lossy(&out.stdout);
    assert!(csv.lines().next().unwrap().contains(",policy_ids,"), "{csv}");
    let mut unique = Vec::new();
    for id in &ids {
        if !unique.contains(id) {
            unique.push(id.clone());
        }
    }
    assert!(csv.contains(&format!("\"{}\"", unique.join(","))), "CSV has them whole: {csv}");
    topo.shutdown().await;
}

/// Lines of a running child's stdout, received with a deadline.
struct Lines(mpsc::Receiver<String>);

impl Lines {
    fn of(child: &mut ChildGuard) -> Self {
        let (tx, rx) = mpsc::channel();
        let stdout = BufReader::new(child.child.stdout.take().expect("piped stdout"));
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Self(rx)
    }

    /// Lines until one satisfies `done` (included), within [`LIMIT`].
    fn until(&self, what: &str, done: impl Fn(&str) -> bool) -> Vec<String> {
        let deadline = Instant::now() + LIMIT;
        let mut seen = Vec::new();
        // Bounded: each turn receives before the deadline or ends the test.
        loop {
            match self.0.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) => {
                    let stop = done(&line);
                    seen.push(line);
                    if stop {
                        return seen;
                    }
                }
                Err(e) => panic!("no {what} ({e:?}); the child printed:\n{}", seen.join("\n")),
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_tail_prints_the_newest_records_and_follows_new_ones() {
    let topo = isx_testkit::Topology::start(isx_testkit::TopologySpec::default_agencies()).await.unwrap();
    publish_some(&topo, 2).await;
    let out = isx_async(as_auditor(&topo, &["audit", "tail"], &["-n", "3"])).await;
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    let seqs = table_seqs(&out.stdout);
    assert_eq!(seqs.len(), 3, "{t}");
    assert!(seqs.windows(2).all(|w| w[0] + 1 == w[1]), "the newest three, oldest of them first: {t}");
    assert!(
        t.contains(&format!("older records match: `isx audit search` with the same filters and --before {}", seqs[0]))
    );

    let args = as_auditor(&topo, &["audit", "tail"], &["--follow", "--interval", "1", "-n", "5"]);
    let mut tail = ChildGuard::spawn(
        Command::new(env!("CARGO_BIN_EXE_isx"))
            .args(&args)
            .current_dir(repo())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null()),
        false,
    );
    let lines = Lines::of(&mut tail);
    let rows = std::cell::Cell::new(0);
    let first = lines.until("the newest five", |l| {
        rows.set(rows.get() + table_seqs(l.as_bytes()).len());
        rows.get() == 5
    });
    let seqs = table_seqs(first.join("\n").as_bytes());
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{first:?}");
    assert!(
        first.last().unwrap().contains("Search by everything, newest first"),
        "its own read is the newest: {first:?}"
    );
    let new = publish_some(&topo, 1).await.remove(0);
    let mut followed = lines.until("the new collection", |l| l.contains(&new) && l.contains("collection"));
    // Another one, so that the polls that found the first are behind.
    let next = publish_some(&topo, 1).await.remove(0);
    followed.extend(lines.until("the next collection", |l| l.contains(&next) && l.contains("collection")));
    assert!(
        !followed.iter().any(|l| l.contains("log_read")),
        "the tail's own polls are recorded, not printed: {followed:?}"
    );
    tail.interrupt();
    let status = tail.wait_until(Instant::now() + LIMIT).expect("the tail stops on Ctrl-C");
    assert!(status.success(), "{status:?}");
    let polls = topo
        .audit_records(isx_core::wire::SearchRequest {
            operation: isx_core::wire::Operation::LogRead as i32,
            officer: "DPO Martens".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(
        polls.iter().filter(|r| r.justification == "isx audit tail").count() >= 2,
        "each poll is a read: {polls:?}"
    );
    topo.shutdown().await;
}

// --- policy officer tooling (#16 item 7): --policy, named versions, enums, fmt, coverage, built-in rules ---

/// The version `isx policy check DIR` reports.
fn policy_version(dir: &std::path::Path) -> String {
    let out = isx(&["policy", "check", dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let t = text(&out);
    let v = t.split("(version ").nth(1).and_then(|r| r.split(')').next()).expect("check names the version");
    v.to_owned()
}

/// A copy of the default policy directory, as `draft/` in a fresh directory.
fn draft_policy() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let draft = dir.path().join("draft");
    std::fs::create_dir(&draft).unwrap();
    for entry in std::fs::read_dir(repo().join("deploy/local/policy")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "cedar" || e == "cedarschema") {
            std::fs::copy(&path, draft.join(path.file_name().unwrap())).unwrap();
        }
    }
    (dir, draft)
}

#[test]
fn policy_test_against_another_directory_names_it_and_its_version() {
    let (_tmp, draft) = draft_policy();
    std::fs::write(
        draft.join("zz-extra.cedar"),
        "@id(\"extra\")\n@reason(\"draft\")\nforbid (principal, action, resource)\nwhen { principal.kind == NodeKind::\"europol\" };\n",
    )
    .unwrap();
    let version = policy_version(&draft);
    let shipped = repo().join("deploy/local/policy");
    assert_ne!(version, policy_version(&shipped));
    // The shipped table against the draft: its own relative paths (`../alerts/...`,
    // `../gateway.toml`) resolve against the table, not the working directory.
    let d = draft.to_str().unwrap();
    let out = isx(&["policy", "test", "--policy", d, "deploy/local/policy/tests.toml"]);
    let t = text(&out);
    assert!(t.starts_with(&format!("policy {d}, version {version}\n")), "{t}");
    assert!(t.contains("extra"), "the draft decided: {t}");
    assert!(!t.contains("cannot read"), "{t}");
    let out = isx(&["policy", "test", "--json", "--policy", d, "deploy/local/policy/tests.toml"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)));
    assert_eq!(v["policy_dir"], d);
    assert_eq!(v["policy_version"], version.as_str());
    let (passed, failed) = (v["passed"].as_u64().unwrap(), v["failed"].as_u64().unwrap());
    assert_eq!(v["cases"].as_array().unwrap().len() as u64, passed + failed);
    assert!(failed > 0, "the draft's forbid changes Europol's cases: {v}");

    // A copy of the table beside its alerts, elsewhere: it keeps working and
    // tests its own directory by default.
    std::fs::copy(shipped.join("tests.toml"), draft.join("tests.toml")).unwrap();
    let alerts = _tmp.path().join("alerts");
    std::fs::create_dir(&alerts).unwrap();
    for entry in std::fs::read_dir(repo().join("deploy/local/alerts")).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, alerts.join(path.file_name().unwrap())).unwrap();
    }
    std::fs::remove_file(draft.join("zz-extra.cedar")).unwrap();
    let gateway = repo().join("deploy/local/gateway.toml");
    let copy = draft.join("tests.toml");
    let out = isx(&["policy", "test", "--config", gateway.to_str().unwrap(), copy.to_str().unwrap()]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.starts_with(&format!("policy {d}, version {}\n", policy_version(&shipped))), "{t}");
}

#[test]
fn explain_names_the_policy_directory_and_version_in_text_and_json() {
    let (_tmp, draft) = draft_policy();
    let version = policy_version(&draft);
    let args =
        ["policy", "explain", "--alert", "deploy/local/alerts/foreign-fighter.json", "--to", "frontex", "--policy"];
    let mut with = args.to_vec();
    with.push(draft.to_str().unwrap());
    let out = isx(&with);
    let t = text(&out);
    assert!(t.starts_with(&format!("policy {}, version {version}\n", draft.display())), "{t}");
    with.push("--json");
    let out = isx(&with);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)));
    assert_eq!(v[0]["policy_dir"], draft.to_str().unwrap());
    assert_eq!(v[0]["policy_version"], version.as_str());
}

#[test]
fn explain_says_the_date_of_birth_is_kept_as_the_year_not_withheld() {
    let out = isx(&["policy", "explain", "--alert", "deploy/local/alerts/foreign-fighter.json", "--to", "frontex"]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    let withheld = t.lines().find(|l| l.trim_start().starts_with("withheld:")).expect("a withheld line");
    assert!(withheld.contains("family_name") && !withheld.contains("date_of_birth"), "{t}");
    assert!(t.contains("kept as the year only: subjects[0].date_of_birth"), "{t}");
}

#[test]
fn a_misspelt_category_fails_check_naming_file_and_line() {
    let (_tmp, draft) = draft_policy();
    std::fs::write(
        draft.join("zz-typo.cedar"),
        "@id(\"typo\")\n@reason(\"r\")\nforbid (principal, action, resource)\nwhen { resource.category == Category::\"terorism\" };\n",
    )
    .unwrap();
    let out = isx(&["policy", "check", draft.to_str().unwrap()]);
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(t.contains("zz-typo.cedar:4: policy typo does not validate"), "{t}");
    assert!(t.contains("\"terrorism\""), "the valid values are listed: {t}");
    assert!(t.contains("terorism"), "{t}");
}

#[test]
fn check_lists_the_built_in_rules_with_their_reasons() {
    let out = isx(&["policy", "check", "deploy/local/policy"]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    for id in ["routing-not-addressed", "no-subscribe-role", "default-deny", "evaluation-error"] {
        let line = t.lines().find(|l| l.starts_with(&format!("{id} "))).unwrap_or_else(|| panic!("{id} listed: {t}"));
        assert!(line.contains("(built in)") && line.trim_end().ends_with('.'), "{line}");
    }
}

#[test]
fn fmt_check_lists_unformatted_files_and_fmt_rewrites_them() {
    let (_tmp, draft) = draft_policy();
    let out = isx(&["policy", "fmt", "--check", draft.to_str().unwrap()]);
    assert!(out.status.success(), "the shipped files are formatted: {}", text(&out));
    let messy = draft.join("zz-messy.cedar");
    std::fs::write(
        &messy,
        "@id(\"m\")\n@reason(\"r\")\nforbid(principal,action,resource)when{principal.kind==NodeKind::\"auditor\"};\n",
    )
    .unwrap();
    let out = isx(&["policy", "fmt", "--check", draft.to_str().unwrap()]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains("zz-messy.cedar: not formatted"), "{t}");
    assert!(!t.contains("agencies.cedar"), "{t}");
    let out = isx(&["policy", "fmt", draft.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(std::fs::read_to_string(&messy).unwrap().contains("forbid (principal, action, resource)"));
    let out = isx(&["policy", "fmt", "--check", draft.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn coverage_lists_unexercised_rules_and_fails_below_the_minimum() {
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("t.toml");
    let alert = repo().join("deploy/local/alerts/smuggling-network.json");
    std::fs::write(
        &table,
        format!(
            "gateway = {:?}\npolicy_dir = {:?}\n[[case]]\nname = \"frontex redacted\"\nalert = {alert:?}\nto = \"frontex\"\nexpect = \"redacted\"\n",
            repo().join("deploy/local/gateway.toml"),
            repo().join("deploy/local/policy")
        ),
    )
    .unwrap();
    let out = isx(&["policy", "coverage", "--min", "50", table.to_str().unwrap()]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains("  tlp-red-addressees-only: ") && t.contains("  routing-not-addressed (built in): "), "{t}");
    assert!(!t.contains("  frontex-border-crime: "), "exercised by the case: {t}");
    assert!(t.contains("rules exercised") && t.contains("minimum 50%"), "{t}");
    let out = isx(&["policy", "coverage", "--min", "5", table.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    // The shipped table exercises every policy of the directory.
    let out = isx(&["policy", "coverage", "deploy/local/policy/tests.toml"]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    let listed: Vec<&str> = t.lines().filter(|l| l.starts_with("  ")).collect();
    assert!(listed.iter().all(|l| l.contains("(built in)")), "{t}");
}

// ---------------------------------------------------------------------------
// A PKI that cannot destroy itself, and errors that name the cause and the
// fix (issue #16, items 1 and 2).
// ---------------------------------------------------------------------------

/// Every file in `dir` (not in folders) by name, with its bytes.
fn files_in(dir: &std::path::Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(Result::unwrap)
        .filter(|e| e.file_type().unwrap().is_file())
        .map(|e| (e.file_name().to_string_lossy().into_owned(), std::fs::read(e.path()).unwrap()))
        .collect()
}

#[test]
fn pki_issue_and_init_refuse_reserved_names_and_leave_the_pki_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().to_str().unwrap();
    assert!(isx(&["pki", "init", "--dir", p, "--nodes", "a-police"]).status.success());
    let before = files_in(dir.path());
    for name in ["ca", "gateway", "audit", "audit-hmac", "audit-text", "crl", "revoked"] {
        for force in [&[][..], &["--force"][..]] {
            let out = isx(&[&["pki", "issue", "--dir", p, name][..], force].concat());
            let t = text(&out);
            assert_eq!(out.status.code(), Some(2), "{name} {force:?}: {t}");
            assert!(
                t.contains(&format!("node id `{name}` is reserved")) && t.contains("Choose another node id"),
                "{t}"
            );
            assert_eq!(files_in(dir.path()), before, "pki issue {name} {force:?} changed a file");
        }
    }
    let out = isx(&["pki", "init", "--dir", p, "--force", "--nodes", "b-police,ca,gateway,audit"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("node id `ca` is reserved"), "{}", text(&out));
    assert_eq!(files_in(dir.path()), before, "pki init --nodes ca changed a file");
}

#[test]
fn pki_issue_of_an_existing_node_needs_force() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().to_str().unwrap();
    assert!(isx(&["pki", "init", "--dir", p, "--nodes", "a-police"]).status.success());
    let before = files_in(dir.path());
    let out = isx(&["pki", "issue", "--dir", p, "a-police"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(2), "{t}");
    assert!(t.contains("a-police.crt, a-police.key") && t.contains("--force"), "names the files and the fix: {t}");
    assert_eq!(files_in(dir.path()), before, "nothing replaced");
    let out = isx(&["pki", "issue", "--dir", p, "--force", "a-police"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_ne!(files_in(dir.path())["a-police.crt"], before["a-police.crt"]);
    // A new node gets its witness identity too, named for this deployment.
    let out = isx(&["pki", "issue", "--dir", p, "b-police"]);
    assert!(out.status.success(), "{}", text(&out));
    let after = files_in(dir.path());
    for file in
        ["b-police.crt", "b-police.witness.crt", "b-police.witness.key", "b-police.cosign.key", "b-police.cosign.pub"]
    {
        assert!(after.contains_key(file), "{file} in {:?}", after.keys());
    }
    let origin = std::fs::read_to_string(dir.path().join("audit.pub")).unwrap();
    let prefix = origin.split('+').next().unwrap().trim_end_matches("/audit").to_owned();
    let vkey = std::fs::read_to_string(dir.path().join("b-police.cosign.pub")).unwrap();
    assert!(vkey.starts_with(&format!("{prefix}/witness/b-police+")), "{vkey}");
}

#[test]
fn pki_init_force_replaces_the_whole_pki_and_warns_what_it_breaks() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().to_str().unwrap();
    assert!(isx(&["pki", "init", "--dir", p, "--nodes", "a-police,b-police"]).status.success());
    assert!(isx(&["pki", "revoke", "--dir", p, "b-police"]).status.success());
    // The store keys a gateway and an agency create on first start.
    for owner in ["gateway", "a-police"] {
        std::fs::write(dir.path().join(format!("{owner}.store.key")), format!("{:064x}\n", 7)).unwrap();
    }
    let before = files_in(dir.path());
    assert!(before.contains_key("revoked.txt") && before.contains_key("audit-text.key"), "{:?}", before.keys());

    let out = isx(&["pki", "init", "--dir", p, "--nodes", "c-police"]);
    assert_eq!(out.status.code(), Some(2), "refused without --force: {}", text(&out));
    assert_eq!(files_in(dir.path()), before);

    let out = isx(&["pki", "init", "--dir", p, "--nodes", "c-police", "--force"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{}", text(&out));
    assert!(stderr.contains("replaced the whole PKI"), "{stderr}");
    assert!(stderr.contains("old audit.key no longer starts"), "{stderr}");
    assert!(stderr.contains("old store keys (a-police.store.key, gateway.store.key) cannot be read"), "{stderr}");

    let after = files_in(dir.path());
    let names: Vec<&str> = after.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "audit-hmac.key",
            "audit-text.key",
            "audit.key",
            "audit.pub",
            "c-police.cosign.key",
            "c-police.cosign.pub",
            "c-police.crt",
            "c-police.key",
            "c-police.witness.crt",
            "c-police.witness.key",
            "ca.crt",
            "ca.key",
            "crl.pem",
            "gateway.crt",
            "gateway.key",
            "witness.cosign.key",
            "witness.cosign.pub",
            "witness.crt",
            "witness.key",
            "witness.policy"
        ],
        "the new PKI only: no old node, no revoked.txt, no store key"
    );
    for (name, bytes) in &after {
        assert!(!before.values().any(|old| old == bytes), "{name} is the old one");
    }
    let out = isx(&["pki", "crl", "--dir", p]);
    assert!(out.status.success() && text(&out).contains("revoked      0"), "the new CA's list: {}", text(&out));
    // The old PKI is kept whole, beside it.
    let folder = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.is_dir() && p.file_name().unwrap().to_string_lossy().starts_with("replaced-"))
        .expect("a replaced-* folder");
    assert!(stderr.contains(&folder.display().to_string()), "{stderr}");
    assert_eq!(files_in(&folder), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_verify_refuses_a_private_key_and_never_prints_it() {
    let (topo, dir, path, _) = exported_bundle().await;
    let pki = topo.pki_dir().to_owned();
    for secret in ["audit.key", "ca.key", "de-police.key", "audit-hmac.key", "audit-text.key"] {
        let key = pki.join(secret);
        let args = vec![
            "audit".to_owned(),
            "verify".into(),
            "--bundle".into(),
            path.display().to_string(),
            "--key".into(),
            key.display().to_string(),
        ];
        let out = isx_async(args).await;
        let t = text(&out);
        assert_eq!(out.status.code(), Some(2), "{secret}: {t}");
        assert!(t.contains(&format!("--key {} is a private key", key.display())), "{secret}: {t}");
        assert!(t.contains("audit.pub"), "names the fix: {t}");
        let content = std::fs::read_to_string(&key).unwrap();
        for line in content.lines().filter(|l| l.len() > 8 && !l.starts_with("-----")) {
            assert!(!t.contains(line), "{secret}: a line of the key is printed: {t}");
        }
        if secret == "audit.key" {
            // PRIVATE+KEY+NAME+ID+KEY, where the base64 KEY may hold `+`.
            let material = content.trim().splitn(5, '+').nth(4).unwrap();
            assert!(material.len() > 16 && !t.contains(material), "{secret}: the key is printed: {t}");
        }
    }
    // Not a key at all: named, not quoted.
    let junk = dir.path().join("junk.txt");
    std::fs::write(&junk, "hunter2 is my password\n").unwrap();
    let args = ["audit", "verify", "--bundle", path.to_str().unwrap(), "--key", junk.to_str().unwrap()];
    let out = isx_async(args.iter().map(|a| a.to_string()).collect()).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("not an audit verifier key") && !text(&out).contains("hunter2"), "{}", text(&out));
    // The public key still verifies.
    let public = pki.join("audit.pub");
    let args = ["audit", "verify", "--bundle", path.to_str().unwrap(), "--key", public.to_str().unwrap()];
    let out = isx_async(args.iter().map(|a| a.to_string()).collect()).await;
    assert!(out.status.success(), "{}", text(&out));
    topo.shutdown().await;
}

/// Runs `isx args` with its stdout into a pipe whose reader is already
/// gone, as `isx … | head -1` is once head has its line; every write fails.
fn isx_into_a_closed_pipe(args: &[&str]) -> Output {
    let (reader, writer) = std::io::pipe().expect("a pipe");
    drop(reader);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_isx"));
    cmd.args(args).current_dir(repo()).stdin(Stdio::null()).stdout(writer).stderr(Stdio::piped());
    let mut guard = ChildGuard::spawn(&mut cmd, false);
    // Drops the parent's copy of the writer, which `cmd` holds.
    drop(cmd);
    let mut stderr = String::new();
    let (tx, rx) = mpsc::channel();
    pump(guard.child.stderr.take().expect("piped stderr"), 1, tx);
    let deadline = Instant::now() + LIMIT;
    // Bounded: each turn receives before the deadline or ends the test.
    loop {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok((_, Some(bytes))) => stderr.push_str(&String::from_utf8_lossy(&bytes)),
            Ok((_, None)) | Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) => panic!("isx {args:?} still runs after {LIMIT:?}: {stderr}"),
        }
    }
    let status = guard.wait_until(deadline).expect("isx ends");
    Output { status, stdout: vec![], stderr: stderr.into_bytes() }
}

#[test]
fn output_into_a_closed_pipe_ends_quietly_with_the_sigpipe_status() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().to_str().unwrap();
    for args in [
        &["policy", "test", "deploy/local/policy/tests.toml"][..],
        &["pki", "init", "--dir", p, "--nodes", "a-police"][..],
        &["pki", "crl", "--dir", p][..],
    ] {
        let out = isx_into_a_closed_pipe(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked") && !stderr.contains("RUST_BACKTRACE"), "{args:?}: {stderr}");
        assert!(!stderr.contains("Broken pipe"), "{args:?}: {stderr}");
        assert_eq!(out.status.code(), Some(141), "{args:?}: 128 + SIGPIPE, as a shell shows it: {stderr}");
    }
}

/// `isx up` into a closed pipe (`isx up | head`) neither panics nor dies:
/// it goes on without printing, and Ctrl-C still stops everything cleanly.
#[test]
fn isx_up_into_a_closed_pipe_keeps_running_and_stops_on_ctrl_c() {
    let dir = tempfile::tempdir().unwrap();
    let (reader, writer) = std::io::pipe().expect("a pipe");
    drop(reader);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_isx"));
    cmd.args(["up", "--dir", dir.path().to_str().unwrap(), "--listen", "127.0.0.1:0", "--no-agencies"])
        .current_dir(repo())
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(Stdio::piped());
    let mut guard = ChildGuard::spawn(&mut cmd, true);
    drop(cmd);
    let (tx, rx) = mpsc::channel();
    pump(guard.child.stderr.take().expect("piped stderr"), 1, tx);
    let deadline = Instant::now() + LIMIT;
    let mut stderr = String::new();
    let mut interrupted = false;
    // Bounded: each turn receives before the deadline or ends the test.
    loop {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok((_, Some(bytes))) => {
                stderr.push_str(&String::from_utf8_lossy(&bytes));
                // The gateway is up; its summary went (or goes) into the closed pipe.
                if !interrupted && stderr.contains("audit log verified") {
                    guard.interrupt();
                    interrupted = true;
                }
            }
            Ok((_, None)) | Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) => panic!("isx up still runs after {LIMIT:?}: {stderr}"),
        }
    }
    let status = guard.wait_until(deadline).expect("isx up ends");
    assert!(interrupted, "the gateway never came up: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(status.success(), "{status:?}: {stderr}");
}

/// Starts `isx gateway` on `pki` and `data`; returns it once it listens.
fn running_gateway(pki: &std::path::Path, data: &std::path::Path) -> ChildGuard {
    let mut gateway = ChildGuard::spawn(
        Command::new(env!("CARGO_BIN_EXE_isx"))
            .args(["gateway", "--config", "deploy/local/gateway.toml", "--listen", "127.0.0.1:0"])
            .args(["--pki", pki.to_str().unwrap(), "--data", data.to_str().unwrap()])
            .current_dir(repo())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null()),
        false,
    );
    Lines::of(&mut gateway).until("the listening line", |l| l.starts_with("isx gateway listening on"));
    gateway
}

fn gateway_once(pki: &std::path::Path, data: &std::path::Path) -> Output {
    isx(&[
        "gateway",
        "--config",
        "deploy/local/gateway.toml",
        "--pki",
        pki.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ])
}

/// The line `error: …` of a failed run.
fn error_line(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(errors.len(), 1, "one error, printed once: {stderr}");
    errors[0].to_owned()
}

/// No part of an error line says the same thing twice, and no Rust debug text.
fn assert_plain_once(line: &str) {
    let parts: Vec<&str> = line.trim_start_matches("error: ").split(": ").collect();
    for (i, a) in parts.iter().enumerate() {
        for b in &parts[i + 1..] {
            assert!(a.len() < 20 || !b.contains(a), "`{a}` repeated: {line}");
        }
    }
    for debug in ["Os {", "Some(", "Ok(", "Err(", "ExitStatus(", "kind: "] {
        assert!(!line.contains(debug), "debug text `{debug}`: {line}");
    }
}

#[test]
fn a_gateway_that_cannot_start_prints_each_cause_once_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    assert!(isx(&["pki", "init", "--dir", pki.to_str().unwrap()]).status.success());

    // Missing audit keys.
    std::fs::rename(pki.join("audit.key"), dir.path().join("audit.key")).unwrap();
    let out = gateway_once(&pki, &dir.path().join("data"));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let line = error_line(&out);
    assert_plain_once(&line);
    assert_eq!(line.matches("audit.key").count(), 1, "{line}");
    assert_eq!(line.matches("No such file or directory").count(), 1, "{line}");
    std::fs::rename(dir.path().join("audit.key"), pki.join("audit.key")).unwrap();

    // A missing CRL: the fix is to write one, not a new PKI.
    std::fs::rename(pki.join("crl.pem"), dir.path().join("crl.pem")).unwrap();
    let out = gateway_once(&pki, &dir.path().join("data"));
    let line = error_line(&out);
    assert_plain_once(&line);
    assert!(line.contains(&format!("isx pki crl --dir {} --refresh", pki.display())), "{line}");
    assert!(!line.contains("pki init"), "the wrong fix: {line}");
    std::fs::rename(dir.path().join("crl.pem"), pki.join("crl.pem")).unwrap();

    // A data directory in use by a running gateway.
    let data = dir.path().join("data");
    let mut first = running_gateway(&pki, &data);
    let out = gateway_once(&pki, &data);
    let line = error_line(&out);
    assert_plain_once(&line);
    assert!(line.contains("in use by another process"), "{line}");
    first.interrupt();
    assert!(first.wait_until(Instant::now() + LIMIT).is_some(), "the first gateway stops on Ctrl-C");
}

#[test]
fn a_missing_node_certificate_names_pki_issue() {
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    assert!(isx(&["pki", "init", "--dir", pki.to_str().unwrap(), "--nodes", "de-police"]).status.success());
    let out = isx(&[
        "alert",
        "watch",
        "--as",
        "fr-police",
        "--pki",
        pki.to_str().unwrap(),
        "--gateway",
        "localhost:1",
        "--officer",
        "Tester",
    ]);
    let line = error_line(&out);
    assert_plain_once(&line);
    assert!(line.contains(&format!("isx pki issue --dir {} fr-police", pki.display())), "{line}");
    assert!(!line.contains("pki init"), "the wrong fix: {line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_publish_names_the_grpc_code_as_grpc_writes_it() {
    let topo = isx_testkit::Topology::start(isx_testkit::TopologySpec::default_agencies()).await.unwrap();
    let mut alert = isx_testkit::samples::migrant_smuggling("de-police", &["fr-police"]);
    alert.purpose = String::new();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("no-purpose.json");
    std::fs::write(&file, isx_core::json::to_json(&alert)).unwrap();
    let (pki, addr) = (topo.pki_dir().display().to_string(), topo.gateway_addr().to_string());
    let args = [
        "alert",
        "send",
        "--as",
        "de-police",
        "--pki",
        &pki,
        "--gateway",
        &addr,
        "--officer",
        "KHK Weber",
        file.to_str().unwrap(),
    ];
    let out = isx_async(args.iter().map(|a| a.to_string()).collect()).await;
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(t.contains("publish refused: INVALID_ARGUMENT: invalid alert: purpose"), "{t}");
    assert!(!t.contains("InvalidArgument"), "no Rust debug name: {t}");
    topo.shutdown().await;
}

#[test]
fn isx_console_prints_its_url_warns_off_loopback_and_stops_on_ctrl_c() {
    let mut console = ChildGuard::spawn(
        Command::new(env!("CARGO_BIN_EXE_isx"))
            .args(["console", "--policy", "deploy/local/policy", "--listen", "0.0.0.0:0"])
            .current_dir(repo())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
        false,
    );
    let stderr = console.child.stderr.take().expect("piped stderr");
    let lines = Lines::of(&mut console);
    let url = lines.until("the URL", |l| l.starts_with("isx console: open http://"));
    let url = url.last().unwrap();
    assert!(url.contains("/?token=") && url.len() > 60, "{url}");
    console.interrupt();
    let status = console.wait_until(Instant::now() + LIMIT).expect("isx console ends on Ctrl-C");
    assert!(status.success(), "{status:?}");
    let mut warning = String::new();
    std::io::Read::read_to_string(&mut { stderr }, &mut warning).unwrap();
    assert!(warning.contains("warning: --listen 0.0.0.0:0 is not loopback"), "{warning}");
}

#[test]
fn isx_console_without_an_identity_or_a_policy_says_what_to_give() {
    let out = isx(&["console"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--as auditor") && err.contains("--policy DIR"), "{err}");
    let out = isx(&["console", "--policy", "deploy/local/policy", "--draft", "/no/such/draft"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--draft /no/such/draft: not a directory"));
    let out = isx(&["console", "--policy", "deploy/local/policy", "--config", "/no/such.toml"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("--config /no/such.toml"), "{out:?}");
}

#[test]
fn isx_demo_keep_prints_the_console_command_and_stops_on_ctrl_c() {
    let mut demo = ChildGuard::spawn(
        Command::new(env!("CARGO_BIN_EXE_isx"))
            .args(["demo", "--keep"])
            .current_dir(repo())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null()),
        true,
    );
    let lines = Lines::of(&mut demo);
    let seen = lines.until("the console command", |l| l.trim_start().starts_with("isx console --as auditor"));
    let command = seen.last().unwrap().trim();
    for flag in ["--pki ", "--gateway 127.0.0.1:", "--officer demo-auditor", "--witness-policy ", "--policy "] {
        assert!(command.contains(flag), "{flag} in {command}");
    }
    lines.until("the Ctrl-C line", |l| l == "Ctrl-C stops them.");
    // Still running: the auditor reads the kept gateway's checkpoint with
    // the command's own identity.
    let arg = |flag: &str| command.split_whitespace().skip_while(|w| *w != flag).nth(1).unwrap().to_owned();
    let (pki, gateway) = (arg("--pki"), arg("--gateway"));
    let read = isx(&["audit", "checkpoint", "--as", "auditor", "--pki", &pki, "--gateway", &gateway, "--officer", "t"]);
    assert!(read.status.success(), "{}", String::from_utf8_lossy(&read.stderr));
    assert!(demo.child.try_wait().unwrap().is_none(), "isx demo --keep ended by itself");
    demo.interrupt();
    let status = demo.wait_until(Instant::now() + LIMIT).expect("isx demo --keep ends on Ctrl-C");
    assert!(status.success(), "{status:?}");
}

/// `pki init` makes a deployment with a unique origin and its witnesses;
/// `isx witness` serves it, cosigns the log's checkpoint, and stops on Ctrl-C.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn isx_witness_cosigns_the_deployments_checkpoints_and_stops_on_ctrl_c() {
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    let p = pki.to_str().unwrap();
    let out = isx(&["pki", "init", "--dir", p, "--nodes", "a-police"]);
    assert!(out.status.success(), "{}", text(&out));
    let origin = text(&out).split("audit log origin ").nth(1).unwrap().trim().to_owned();
    assert!(origin.starts_with("isx/") && origin.ends_with("/audit") && origin.len() == 18, "{origin}");
    for f in ["witness.crt", "witness.cosign.pub", "a-police.witness.key", "a-police.cosign.key", "witness.policy"] {
        assert!(text(&out).contains(&format!("wrote {}", pki.join(f).display())), "{f}: {}", text(&out));
    }
    let other = tempfile::tempdir().unwrap();
    let again = isx(&["pki", "init", "--dir", other.path().to_str().unwrap(), "--nodes", "a-police"]);
    assert!(!text(&again).contains(&origin), "another deployment, another origin");

    let data = dir.path().join("witness-state");
    let mut witness = ChildGuard::spawn(
        Command::new(env!("CARGO_BIN_EXE_isx"))
            .args(["witness", "--pki", p, "--data", data.to_str().unwrap(), "--listen", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null()),
        false,
    );
    let lines = Lines::of(&mut witness);
    let serving = lines.until("the serving line", |l| l.starts_with("isx witness: serving "));
    let serving = serving.last().unwrap().clone();
    let vkey_line = lines.until("the key line", |l| l.starts_with("isx witness: verifier key "));
    let vkey = vkey_line.last().unwrap().strip_prefix("isx witness: verifier key ").unwrap().to_owned();
    assert_eq!(vkey, std::fs::read_to_string(pki.join("witness.cosign.pub")).unwrap().trim());
    let prefix = origin.strip_suffix("/audit").unwrap();
    assert!(serving.ends_with(&format!("/add-checkpoint for log {origin} as {prefix}/witness/witness")), "{serving}");
    let url =
        serving.strip_prefix("isx witness: serving ").unwrap().split("/add-checkpoint").next().unwrap().to_owned();

    // The gateway's checkpoint of an empty log, signed with the deployment's audit key.
    let keys = isx_audit::keys::load(&pki).unwrap();
    let empty: [u8; 32] = [
        0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24, 0x27, 0xae,
        0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55,
    ];
    let note = isx_audit::checkpoint::sign(&keys, 0, empty);
    let client = isx_witness::Client::new(&pki.join("ca.crt"), Duration::from_secs(10)).unwrap();
    let lines_back = client.add_checkpoint(&url, 0, &[], &note).await.unwrap();
    assert!(lines_back.starts_with(&format!("\u{2014} {prefix}/witness/witness ")), "{lines_back}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&data).unwrap().permissions().mode() & 0o777, 0o700);
    }
    witness.interrupt();
    let status = witness.wait_until(Instant::now() + LIMIT).expect("isx witness stops");
    assert!(status.success(), "{status:?}");
    let stopped = lines.until("the stop line", |l| l.starts_with("isx witness stopped"));
    assert!(stopped.last().unwrap().contains("0 refusals"), "{stopped:?}");

    // A witness identity without keys: one error naming the file and the fix.
    let out = isx(&["witness", "--pki", p, "--id", "b-police", "--data", data.to_str().unwrap()]);
    let line = error_line(&out);
    assert!(line.contains("b-police.cosign.key") && line.contains("isx pki init"), "{line}");
    let out = isx(&["witness", "--pki", p, "--log-key", "nonsense", "--data", data.to_str().unwrap()]);
    let line = error_line(&out);
    assert!(line.contains("--log-key nonsense") && line.contains("audit.pub"), "{line}");
}

/// `bundle` with its checkpoint note cosigned by `witnesses`, in the
/// checkpoint and in every tlog-proof (which ends with the note).
fn cosigned(
    bundle: &isx_core::wire::AuditBundle,
    witnesses: &[&isx_audit::cosignature::CosignatureSigner],
) -> isx_core::wire::AuditBundle {
    let mut b = bundle.clone();
    let old = b.checkpoint.as_ref().unwrap().note.clone();
    let mut n = signed_note::Note::from_bytes(old.as_bytes()).unwrap();
    let signers: Vec<&dyn signed_note::Signer> = witnesses.iter().map(|w| *w as &dyn signed_note::Signer).collect();
    n.add_sigs(&signers).unwrap();
    let note = String::from_utf8(n.to_bytes()).unwrap();
    b.checkpoint.as_mut().unwrap().note = note.clone();
    for e in &mut b.entries {
        e.tlog_proof = format!("{}{note}", e.tlog_proof.strip_suffix(old.as_str()).unwrap());
    }
    b
}

/// A case of `isx audit verify`: its name, the arguments after `audit
/// verify`, whether it succeeds, what the output holds, and what it must not.
type Case = (&'static str, Vec<String>, bool, Vec<String>, Option<&'static str>);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_with_a_witness_policy_names_cosigners_quorum_bad_cosignatures_key_mismatches_and_forks() {
    use base64::Engine;
    use isx_audit::cosignature::CosignatureSigner;
    let (topo, dir, plain, bundle) = exported_bundle().await;
    let d = dir.path();
    let key = topo.pki_dir().join("audit.pub");
    let vkey = std::fs::read_to_string(&key).unwrap().trim().to_owned();
    let w = |name: &str, seed: u8, t: u64| CosignatureSigner::new(name, &[seed; 32]).unwrap().at(t);
    let (a, b, c) =
        (w("w.example/a", 1, 1_767_225_600), w("w.example/b", 2, 1_767_225_660), w("w.example/c", 3, 1_767_225_720));
    let policy = d.join("witness.policy");
    std::fs::write(
        &policy,
        format!(
            "# test\nlog {vkey}\nwitness a {}\nwitness b {}\nwitness c {}\ngroup two 2 a b c\nquorum two\n",
            a.verifier_key(),
            b.verifier_key(),
            c.verifier_key()
        ),
    )
    .unwrap();
    // A log key of another deployment, and a policy that lists only it.
    let other = tempfile::tempdir().unwrap();
    isx_audit::keys::create(other.path(), "other.example/audit").unwrap();
    let stranger = other.path().join("audit.pub");
    let foreign = d.join("foreign.policy");
    std::fs::write(&foreign, format!("log {}\nquorum none\n", std::fs::read_to_string(&stranger).unwrap().trim()))
        .unwrap();
    let write = |name: &str, b: &isx_core::wire::AuditBundle| {
        let path = d.join(name);
        std::fs::write(&path, isx_core::json::to_json(b)).unwrap();
        path
    };
    let two = write("two.json", &cosigned(&bundle, &[&a, &c]));
    let one = write("one.json", &cosigned(&bundle, &[&b]));
    let bad = {
        let mut t = cosigned(&bundle, &[&a, &c]);
        let note = t.checkpoint.as_ref().unwrap().note.clone();
        let line = note.lines().find(|l| l.starts_with("\u{2014} w.example/c ")).unwrap();
        let sig = line.rsplit(' ').next().unwrap();
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut raw = b64.decode(sig).unwrap();
        raw[30] ^= 1;
        let forged = note.replace(sig, &b64.encode(raw));
        t = cosigned(&t, &[]);
        for e in &mut t.entries {
            e.tlog_proof = e.tlog_proof.replace(&note, &forged);
        }
        t.checkpoint.as_mut().unwrap().note = forged;
        write("bad.json", &t)
    };
    // The same keys, other records, the same size: a fork of the log.
    let fork_cp = {
        let keys = isx_audit::keys::load(&topo.pki_dir()).unwrap();
        let db = isx_store::open(&d.join("fork.sled"), 1 << 20).unwrap();
        let (log, _) = isx_audit::AuditLog::open(&db, keys, &|_, _| {}).unwrap();
        let size = bundle.checkpoint.as_ref().unwrap().tree_size;
        let records =
            (0..size).map(|i| isx_core::wire::AuditRecord { detail: format!("fork {i}"), ..Default::default() });
        log.append(records.collect(), 1_767_225_600_000).unwrap();
        let note = log.sign_checkpoint(size).unwrap();
        let cp = isx_core::wire::Checkpoint {
            note,
            tree_size: size,
            root_hash: log.root(size).unwrap().to_vec(),
            origin: log.keys().origin.clone(),
            verifier_key: vkey.clone(),
            ..Default::default()
        };
        let path = d.join("fork-checkpoint.json");
        std::fs::write(&path, isx_core::json::to_json(&cp)).unwrap();
        path
    };
    let p = |p: &std::path::Path| p.display().to_string();
    let warning = "warning: no log key is pinned";
    // (case, arguments after `audit verify`, success, wanted in the output, not wanted)
    let cases: Vec<Case> = vec![
        (
            "quorum met",
            vec!["--bundle".into(), p(&two), "--witness-policy".into(), p(&policy)],
            true,
            vec![
                "cosigned by a at 2026-01-01T00:00:00Z, c at 2026-01-01T00:02:00Z; the witness policy's quorum (2 of (a, b, c)) is met".into(),
                "each with its C2SP tlog-proof".into(),
            ],
            Some(warning),
        ),
        (
            "quorum met, the same key given twice",
            vec!["--bundle".into(), p(&two), "--witness-policy".into(), p(&policy), "--key".into(), p(&key)],
            true,
            vec!["quorum (2 of (a, b, c)) is met".into()],
            Some(warning),
        ),
        (
            "quorum not met",
            vec!["--bundle".into(), p(&one), "--witness-policy".into(), p(&policy)],
            false,
            vec!["is cosigned by b but the quorum needs 2 of (a, b, c)".into()],
            None,
        ),
        (
            "bad cosignature",
            vec!["--bundle".into(), p(&bad), "--witness-policy".into(), p(&policy)],
            false,
            vec!["the signature of witness c on the checkpoint does not verify".into()],
            None,
        ),
        (
            "key and policy disagree",
            vec!["--bundle".into(), p(&two), "--witness-policy".into(), p(&policy), "--key".into(), p(&stranger)],
            false,
            vec![format!("--key {} and --witness-policy {} disagree", p(&stranger), p(&policy)), vkey.clone()],
            None,
        ),
        (
            "log not in the policy",
            vec!["--bundle".into(), p(&two), "--witness-policy".into(), p(&foreign)],
            false,
            vec!["is not signed by a log the witness policy lists".into()],
            None,
        ),
        (
            "no key: a warning that says how to pin it",
            vec!["--bundle".into(), p(&plain)],
            true,
            vec![warning.into(), "--key PKI/audit.pub or --witness-policy PKI/witness.policy".into()],
            None,
        ),
        ("a pinned key: no warning", vec!["--bundle".into(), p(&plain), "--key".into(), p(&key)], true, vec![], Some(warning)),
        (
            "a fork at the same size",
            vec!["--bundle".into(), p(&plain), "--also-checkpoint".into(), p(&fork_cp), "--key".into(), p(&key)],
            false,
            vec!["FORK: ".into(), format!("in {}", p(&fork_cp)), format!("in {}", p(&plain))],
            None,
        ),
        (
            "the same checkpoint twice is no fork",
            vec!["--bundle".into(), p(&plain), "--bundle".into(), p(&two), "--key".into(), p(&key)],
            true,
            vec!["OK: the 2 checkpoints seen agree (no fork)".into()],
            None,
        ),
    ];
    // Against the gateway: its checkpoint carries the log's signature (and
    // no cosignature of these test witnesses).
    let log_only = d.join("log-only.policy");
    std::fs::write(&log_only, format!("log {vkey}\nquorum none\n")).unwrap();
    let live: Vec<String> =
        ["--as", "auditor", "--pki", &p(&topo.pki_dir()), "--gateway", &topo.gateway_addr().to_string()]
            .into_iter()
            .map(str::to_owned)
            .chain(["--officer".to_owned(), "cli officer".to_owned()])
            .collect();
    let with = |extra: &[String]| live.iter().cloned().chain(extra.iter().cloned()).collect::<Vec<String>>();
    let cases = cases
        .into_iter()
        .chain([
            (
                "live, log-only policy",
                with(&["--witness-policy".into(), p(&log_only)]),
                true,
                vec!["OK: the whole search index matches".into(), "the witness policy asks no cosignature".into()],
                Some(warning),
            ),
            (
                "live, quorum not met",
                with(&["--witness-policy".into(), p(&policy)]),
                false,
                vec![
                    "VERIFICATION FAILED: the checkpoint at size".into(),
                    "but the quorum needs 2 of (a, b, c)".into(),
                ],
                None,
            ),
            ("live, no key", with(&[]), true, vec![warning.into()], None),
            ("live, pinned key", with(&["--key".into(), p(&key)]), true, vec![], Some(warning)),
            (
                "live, key and policy disagree",
                with(&["--key".into(), p(&stranger), "--witness-policy".into(), p(&policy)]),
                false,
                vec!["disagree".into()],
                None,
            ),
        ])
        .collect::<Vec<_>>();
    for (case, args, ok, want, not) in cases {
        let args: Vec<String> = ["audit".to_owned(), "verify".to_owned()].into_iter().chain(args).collect();
        let out = isx_async(args).await;
        let t = text(&out);
        assert_eq!(out.status.success(), ok, "{case}: {t}");
        for w in &want {
            assert!(t.contains(w.as_str()), "{case}: wants {w:?} in\n{t}");
        }
        if let Some(n) = not {
            assert!(!t.contains(n), "{case}: does not want {n:?} in\n{t}");
        }
    }
    topo.shutdown().await;
}

/// A gateway config in `dir` (`[audit]` as given) whose log holds
/// `records`, each appended at its own time (Unix ms), with a signed
/// checkpoint. Returns the config's path.
fn offline_log(dir: &std::path::Path, audit: &str, records: Vec<(isx_core::wire::AuditRecord, u64)>) -> PathBuf {
    let pki = dir.join("pki");
    std::fs::create_dir_all(&pki).unwrap();
    isx_audit::keys::create(&pki, "isx.test/audit").unwrap();
    let config = dir.join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "pki_dir = \"pki\"\ndata_dir = \"data\"\npolicy_dir = \"policy\"\n[audit]\n{audit}\n[nodes.de-police]\nkind = \"national\"\ncountry = \"DE\"\n"
        ),
    )
    .unwrap();
    let db = isx_store::open(&dir.join("data/gateway.sled"), isx_store::GATEWAY_CACHE_BYTES).unwrap();
    let (log, _) = isx_audit::AuditLog::open(&db, isx_audit::keys::load(&pki).unwrap(), &|_, _| {}).unwrap();
    for (record, at) in records {
        log.append(vec![record], at).unwrap();
    }
    db.flush().unwrap();
    log.sign_checkpoint(log.size()).unwrap();
    db.flush().unwrap();
    config
}

/// The log of `offline_log`'s directory, as read back.
struct OfflineLog {
    size: u64,
    entries: Vec<isx_core::wire::AuditEntry>,
    latest: Option<(u64, String)>,
    /// The whole log verified against its latest checkpoint.
    verified: Result<(), isx_audit::verify::VerifyError>,
}

fn read_offline_log(dir: &std::path::Path) -> OfflineLog {
    let db = isx_store::open(&dir.join("data/gateway.sled"), isx_store::GATEWAY_CACHE_BYTES).unwrap();
    let keys = isx_audit::keys::load(&dir.join("pki")).unwrap();
    let (log, _) = isx_audit::AuditLog::open(&db, keys, &|_, _| {}).unwrap();
    let size = log.size();
    let entries = log.entries(0, size).unwrap();
    let latest = log.latest_checkpoint().unwrap();
    let verified = latest.as_ref().map(|(size, note)| {
        let cp = isx_core::wire::Checkpoint {
            note: note.clone(),
            tree_size: *size,
            root_hash: log.root(*size).unwrap().to_vec(),
            origin: log.keys().origin.clone(),
            verifier_key: log.keys().verifier_key.clone(),
            signed_size: *size,
            ..Default::default()
        };
        let cp = isx_audit::verify::checkpoint(&cp, None).unwrap();
        let mut v = isx_audit::verify::LogVerifier::default();
        entries[..*size as usize].iter().try_for_each(|e| v.push(e)).and_then(|_| v.finish(&cp))
    });
    OfflineLog { size, entries, latest, verified: verified.unwrap_or(Ok(())) }
}

#[test]
fn audit_prune_follows_the_retention_rule_keeps_a_live_alerts_history_and_refuses_outside_it() {
    use isx_core::wire::{AuditRecord, Operation, Outcome};
    const DAY: u64 = 86_400_000;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    let day = |ms: u64| isx_core::timestamp::rfc3339(&isx_core::timestamp::from_unix_millis(ms))[..10].to_owned();
    let r = |op: Operation, outcome: Outcome, alert: &str| AuditRecord {
        operation: op as i32,
        outcome: outcome as i32,
        alert_id: alert.into(),
        ..Default::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let config = offline_log(
        dir.path(),
        "retention = \"1095d\"\nretention_floor = \"30d\"",
        vec![
            (r(Operation::LogRead, Outcome::Ok, ""), now - 1461 * DAY), // 0: four years old
            (r(Operation::Collection, Outcome::Ok, "A"), now - 1461 * DAY), // 1
            (r(Operation::Disclosure, Outcome::Ok, "A"), now - 1461 * DAY), // 2
            (r(Operation::Collection, Outcome::Ok, "B"), now - 1461 * DAY), // 3: B stays live
            (r(Operation::Erasure, Outcome::Ok, "A"), now - 1000 * DAY), // 4: A expires
            (r(Operation::LogRead, Outcome::Ok, ""), now - 2 * DAY),    // 5
        ],
    );
    let config = config.to_str().unwrap();
    let prune = |extra: &[&str]| {
        let mut args = vec!["audit", "prune", "--config", config, "--officer", "dpo-1"];
        args.extend_from_slice(extra);
        isx(&args)
    };
    let before = read_offline_log(dir.path());

    // Refused, naming the rule, and nothing changes.
    let (future, inside) = (day(now + 2 * DAY), day(now - 10 * DAY));
    for (args, want) in [
        (vec!["--before", future.as_str()], format!("--before {future} is in the future: ")),
        (vec!["--before", inside.as_str()], format!("--before {inside} is inside audit.retention_floor (30d)")),
        (vec!["--before", inside.as_str(), "--dry-run"], "audit.retention_floor (30d)".to_owned()),
    ] {
        let out = prune(&args);
        assert!(!out.status.success(), "{args:?}: {}", text(&out));
        assert!(text(&out).contains(&want), "{args:?}: wants {want:?} in\n{}", text(&out));
    }
    assert_eq!(read_offline_log(dir.path()).entries, before.entries, "a refused prune changes nothing");

    // The dry run of the default rule (now − 1095d): A ended 1000 days ago,
    // inside the retention, so its history stays and the prune stops at it.
    let out = prune(&["--dry-run"]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    for want in [
        "would prune 1 record bodies: seq [0, 1), the last recorded ",
        "now minus audit.retention 1095d",
        "stops because seq 1 is kept: alert A ended ",
        "inside the retention",
        "dry run: nothing written, nothing signed",
    ] {
        assert!(t.contains(want), "wants {want:?} in\n{t}");
    }
    let after = read_offline_log(dir.path());
    assert_eq!(
        (after.size, &after.entries, &after.latest),
        (before.size, &before.entries, &before.latest),
        "a dry run changes nothing"
    );

    // The default rule.
    let out = prune(&[]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("pruned 1 record bodies: seq [0, 1)"), "{}", text(&out));
    // Earlier than the rule, after A's end: A's history goes, B's stays.
    let cut = day(now - 999 * DAY);
    let out = prune(&["--before", &cut]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("pruned 2 record bodies: seq [1, 3)"), "{t}");
    assert!(t.contains("stops because seq 3 is kept: alert B is still live"), "{t}");

    let OfflineLog { size, entries, verified, .. } = read_offline_log(dir.path());
    assert_eq!(size, 8, "two erasure records");
    assert_eq!(
        entries.iter().map(|e| e.pruned).collect::<Vec<_>>(),
        [true, true, true, false, false, false, false, false]
    );
    let erasure = entries[7].record.as_ref().unwrap();
    assert_eq!((erasure.operation(), erasure.officer.as_str()), (Operation::Erasure, "dpo-1"));
    for want in [
        "retention: audit record bodies [0, 3) are pruned ([1, 3) now",
        "rule: a record is kept 1095d from its time, a record naming an alert 1095d from the alert's end",
        &format!("cut-off {cut}T00:00:00Z (asked, before the rule's)"),
        "ordered by dpo-1",
        "stops because seq 3 is kept: alert B is still live",
    ] {
        assert!(erasure.detail.contains(want), "wants {want:?} in {}", erasure.detail);
    }
    verified.expect("the verifier accepts the pruned prefix [0, 3)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_holds_and_prunes_online_and_refuses_a_node_without_the_role() {
    let mut spec = isx_testkit::TopologySpec::default_agencies();
    let mut dpo = isx_testkit::NodeSpec::new("dpo", isx_core::NodeKind::Auditor, "EU", "Data protection officer");
    dpo.roles = Some(vec![isx_core::Role::Admin]);
    spec.nodes.push(dpo);
    spec.audit.prune_every = None;
    let topo = isx_testkit::Topology::start(spec).await.unwrap();
    let pki = topo.pki_dir().display().to_string();
    let addr = topo.gateway_addr().to_string();
    let cmd = |node: &str, args: &[&str]| -> Vec<String> {
        let (head, tail) = args.split_at(2);
        head.iter()
            .copied()
            .chain(["--as", node, "--pki", &pki, "--gateway", &addr, "--officer", "DPO Martens"])
            .chain(tail.iter().copied())
            .map(str::to_owned)
            .collect()
    };
    let cases: &[(&str, &[&str], bool, &[&str])] = &[
        (
            "dpo",
            &["admin", "hold", "--node", "fr-police", "--from", "2026-01-01", "--case", "EPPO-7", "--reason", "order"],
            true,
            &[
                "hold-1  node fr-police, records from 2026-01-01T00:00:00Z",
                "case EPPO-7; placed by DPO Martens",
                "placed (recorded at seq ",
            ],
        ),
        (
            "dpo",
            &["admin", "hold", "--case", "EPPO-7", "--reason", "order"],
            false,
            &["give what the hold covers: --alert"],
        ),
        (
            "dpo",
            &["admin", "hold", "--node", "nobody", "--case", "C", "--reason", "r"],
            false,
            &["INVALID_ARGUMENT", "field node: \"nobody\" is not a registered node"],
        ),
        ("dpo", &["admin", "holds", "--json"], true, &["\"id\": \"hold-1\"", "\"case_reference\": \"EPPO-7\""]),
        (
            "dpo",
            &["admin", "prune", "--dry-run", "--reason", "review"],
            true,
            &[
                "would prune 0 record bodies: seq [0, 0)",
                "stops because seq 0 is kept: recorded ",
                "dry run: nothing written",
            ],
        ),
        (
            "dpo",
            &["admin", "prune", "--before", "2999-01-01", "--reason", "review"],
            false,
            &["FAILED_PRECONDITION", "is in the future", "audit.retention_floor (30d)"],
        ),
        ("auditor", &["admin", "holds"], false, &["PERMISSION_DENIED", "'admin' role"]),
        ("dpo", &["admin", "lift", "hold-1", "--reason", "closed"], true, &["lifted (recorded)"]),
        (
            "dpo",
            &["admin", "lift", "hold-1", "--reason", "closed"],
            false,
            &["NOT_FOUND", "no hold hold-1 is in force"],
        ),
        ("dpo", &["admin", "holds"], true, &["legal holds in force: 0"]),
    ];
    for (node, args, ok, wants) in cases {
        let out = isx_async(cmd(node, args)).await;
        let t = text(&out);
        assert_eq!(out.status.success(), *ok, "{args:?}: {t}");
        for want in *wants {
            assert!(t.contains(want), "{args:?}: wants {want:?} in\n{t}");
        }
    }
    topo.shutdown().await;
}

#[test]
fn audit_prune_offline_stops_at_a_legal_hold() {
    use isx_core::wire::{AuditRecord, Operation, Outcome};
    const DAY: u64 = 86_400_000;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    let read = |node: &str| AuditRecord {
        operation: Operation::LogRead as i32,
        outcome: Outcome::Ok as i32,
        node: node.into(),
        ..Default::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let config = offline_log(
        dir.path(),
        "retention = \"1095d\"\nretention_floor = \"30d\"",
        vec![
            (read("auditor"), now - 1461 * DAY),
            (read("de-police"), now - 1461 * DAY),
            (read("auditor"), now - 2 * DAY),
        ],
    );
    {
        // A hold the gateway placed on de-police's records, stored beside the log.
        let db = isx_store::open(&dir.path().join("data/gateway.sled"), isx_store::GATEWAY_CACHE_BYTES).unwrap();
        let keys = isx_audit::keys::load(&dir.path().join("pki")).unwrap();
        let (log, _) = isx_audit::AuditLog::open(&db, keys, &|_, _| {}).unwrap();
        let id = log.next_hold_id().unwrap();
        log.put_hold(&isx_core::wire::Hold { id, node: "de-police".into(), ..Default::default() }).unwrap();
        db.flush().unwrap();
    }
    let out = isx(&["audit", "prune", "--config", config.to_str().unwrap(), "--officer", "dpo-1"]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("pruned 1 record bodies: seq [0, 1)"), "{t}");
    assert!(t.contains("stops because seq 1 is kept: legal hold hold-1 covers it until it is lifted"), "{t}");
    let OfflineLog { entries, verified, .. } = read_offline_log(dir.path());
    assert_eq!(entries.iter().map(|e| e.pruned).collect::<Vec<_>>(), [true, false, false, false]);
    verified.expect("the pruned prefix is covered");
}
