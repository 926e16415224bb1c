//! Resource attacks against a real gateway: the `isx` binary as a child
//! process, over mutual TLS on 127.0.0.1:0, with a PKI made by `isx pki
//! init`. Each test runs one attack of the security review (numbered as
//! there), bounded in time and count, and asserts the bound its defence
//! promises:
//!
//! 1. a Lookup of a million empty identifiers is refused by its length
//!    prefix; one of 64 bad identifiers names at most 33;
//! 2. requests whose bodies never finish are answered when
//!    `limits.request_body_timeout` passes; streams past
//!    `limits.max_streams_per_connection` are refused; a connection that
//!    sends no request is closed;
//! 3. four concurrent 14 MB publishes are refused before they are decoded;
//! 4. out of file descriptors, the accept loop backs off; handshakes in
//!    progress are capped and time out;
//! 5. floods of unregistered handshakes and of refused Audit calls leave a
//!    bounded number of records whose counts add up;
//! 6. the Audit service's edges: role before filter, Export in batches,
//!    consistency proofs from 0 and out of range.
//!
//! What is measured is the gateway's, not the test's: its peak memory
//! (`VmHWM` of the child), its CPU time and open descriptors (`/proc`), the
//! bytes it logged (its stderr goes to a file), the size of its answers
//! (`Status::message` plus `details`) and of the largest audit record (read
//! as the auditor through the Audit service). Every figure is printed as a
//! `hostile #N: ...` line before it is asserted; `scripts/hostile-figures`
//! collects them from a release build.
//!
//! Every wait is bounded ([`LIMIT`]); a failing test kills its gateway.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use isx_core::wire::exchange_client::ExchangeClient;
use isx_core::wire::lookup_identifier::Kind;
use isx_core::wire::{
    AuditRecord, ExportRequest, GetCheckpointRequest, GetConsistencyProofRequest, LookupIdentifier, LookupRequest,
    Operation, SearchRequest,
};
use isx_node::{Client, ClientOptions};
use isx_testkit::Probe;
use prost::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tonic::Code;
use tonic_types::StatusExt;

/// How long any one wait may take. Generous: it is reached only when the
/// gateway does not answer at all.
const LIMIT: Duration = Duration::from_secs(60);

/// The gateway's documented memory budget, in MB (peak resident set).
const MEMORY_BUDGET_MB: u64 = 256;

/// The registered nodes of every test gateway: (id, kind, country).
const NODES: [(&str, &str, &str); 3] =
    [("de-police", "national", "DE"), ("fr-police", "national", "FR"), ("auditor", "auditor", "EU")];

/// `step`, or a panic naming `what` after [`LIMIT`].
async fn bounded<F: std::future::Future>(what: &str, step: F) -> F::Output {
    tokio::time::timeout(LIMIT, step).await.unwrap_or_else(|_| panic!("{what}: nothing within {LIMIT:?}"))
}

fn isx() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_isx"));
    cmd.env_remove("ISX_LOG").stdin(Stdio::null());
    cmd
}

/// Runs `isx args` to the end and panics with its output if it fails.
fn run(args: &[&str]) {
    let out = isx().args(args).output().expect("isx runs");
    assert!(
        out.status.success(),
        "isx {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// What a test gateway differs in from the defaults.
#[derive(Default)]
struct Spec {
    /// Lines of `[limits]`, as `key = value` (TOML values).
    limits: Vec<(&'static str, &'static str)>,
    /// Lines of `[audit]`.
    audit: Vec<(&'static str, &'static str)>,
    /// Lines of `[lookup]`.
    lookup: Vec<(&'static str, &'static str)>,
    /// Run under `prlimit --nofile=N:N`.
    nofile: Option<u32>,
}

impl Spec {
    fn limits(limits: &[(&'static str, &'static str)]) -> Self {
        Self { limits: limits.to_vec(), ..Self::default() }
    }
}

/// A gateway child process with its own PKI and data directory. Dropped, it
/// kills the child.
struct Gateway {
    child: Child,
    /// `127.0.0.1:port`.
    addr: String,
    /// Its stderr.
    log: PathBuf,
    pki: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Gateway {
    /// Makes a PKI, writes the config and starts the gateway; waits
    /// (bounded) for the line that names its address.
    fn start(spec: Spec) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let pki = dir.path().join("pki");
        let nodes: Vec<&str> = NODES.iter().map(|(id, _, _)| *id).collect();
        run(&["pki", "init", "--dir", pki.to_str().unwrap(), "--nodes", &nodes.join(",")]);
        let policy = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/local/policy");
        let mut toml = format!(
            "listen = \"127.0.0.1:0\"\npki_dir = {pki:?}\ndata_dir = {:?}\npolicy_dir = {policy:?}\n",
            dir.path().join("data")
        );
        for (table, lines) in [("limits", &spec.limits), ("audit", &spec.audit), ("lookup", &spec.lookup)] {
            toml.push_str(&format!("[{table}]\n"));
            for (key, value) in lines {
                toml.push_str(&format!("{key} = {value}\n"));
            }
        }
        for (id, kind, country) in NODES {
            toml.push_str(&format!("[nodes.{id}]\nkind = \"{kind}\"\ncountry = \"{country}\"\n"));
        }
        let config = dir.path().join("gateway.toml");
        std::fs::write(&config, toml).unwrap();
        let log = dir.path().join("gateway.log");
        let stderr = std::fs::File::create(&log).unwrap();
        let mut cmd = match spec.nofile {
            Some(n) => {
                let mut cmd = Command::new("/usr/bin/prlimit");
                cmd.arg(format!("--nofile={n}:{n}")).arg(env!("CARGO_BIN_EXE_isx")).env_remove("ISX_LOG");
                cmd
            }
            None => isx(),
        };
        let mut child = cmd
            .args(["gateway", "--config", config.to_str().unwrap()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("isx gateway listening on ") {
                    let _ = tx.send(addr.to_owned());
                }
            }
        });
        let gateway = |addr| Self { child, addr, log: log.clone(), pki, _dir: dir };
        match rx.recv_timeout(LIMIT) {
            Ok(addr) => gateway(addr),
            Err(_) => {
                drop(gateway(String::new()));
                panic!("the gateway did not start:\n{}", std::fs::read_to_string(&log).unwrap_or_default())
            }
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A certificate from the same CA for a node the gateway does not know.
    fn issue(&self, node: &str) {
        run(&["pki", "issue", "--dir", self.pki.to_str().unwrap(), node]);
    }

    fn options(&self, node: &str) -> ClientOptions {
        ClientOptions {
            node: isx_core::NodeId::new(node).unwrap(),
            pki_dir: self.pki.clone(),
            gateway: format!("localhost:{}", self.addr.rsplit_once(':').unwrap().1),
            officer: format!("officer@{node}"),
        }
    }

    async fn client(&self, node: &str) -> Client {
        bounded("connect", Client::connect(&self.options(node))).await.unwrap()
    }

    /// The child's peak resident set (`VmHWM`), in MB.
    fn peak_rss_mb(&self) -> u64 {
        proc_status_kb(self.pid(), "VmHWM:") / 1024
    }

    /// The child's CPU time so far (user + system), in clock ticks.
    fn cpu_ticks(&self) -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap();
        // Fields after the command name in parentheses: state is field 3,
        // utime field 14, stime field 15.
        let rest: Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
        rest[11].parse::<u64>().unwrap() + rest[12].parse::<u64>().unwrap()
    }

    /// Bytes the gateway has logged so far.
    fn log_bytes(&self) -> u64 {
        std::fs::metadata(&self.log).map(|m| m.len()).unwrap_or(0)
    }

    /// The last few KiB of the log, for failure messages.
    fn log_tail(&self) -> String {
        let text = std::fs::read(&self.log).unwrap_or_default();
        String::from_utf8_lossy(&text[text.len().saturating_sub(4096)..]).into_owned()
    }

    /// A TLS connection as `node`, without HTTP/2 yet.
    async fn tls(&self, node: &str) -> tokio_rustls::client::TlsStream<TcpStream> {
        let files = isx_tls::config::IdentityFiles::in_dir(&self.pki, node);
        let config = isx_tls::client_config(&files).unwrap();
        let tcp = TcpStream::connect(&self.addr).await.unwrap();
        let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
        bounded("TLS handshake", tokio_rustls::TlsConnector::from(config).connect(name, tcp)).await.unwrap()
    }

    /// An HTTP/2 connection as `node`, driven by a task of its own; the
    /// task ends (with the connection's outcome) when the gateway closes it.
    async fn h2(&self, node: &str) -> (h2::client::SendRequest<Bytes>, tokio::task::JoinHandle<Result<(), h2::Error>>) {
        let tls = self.tls(node).await;
        let (send, conn) = bounded("HTTP/2 handshake", h2::client::handshake(tls)).await.unwrap();
        (send, tokio::spawn(conn))
    }
}

/// A `kB` line of `/proc/<pid>/status`.
fn proc_status_kb(pid: u32, key: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with(key)).unwrap_or_else(|| panic!("{key} in {status}"));
    line[key.len()..].trim().trim_end_matches("kB").trim().parse().unwrap()
}

/// The process's open file descriptors.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0)
}

/// Clock ticks a second (`getconf CLK_TCK`; 100 if it cannot be asked).
fn clock_ticks_per_second() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

/// One lookup by `client`: another node being served.
async fn lookup(client: &Client) -> Result<(), tonic::Status> {
    let plate = LookupIdentifier { kind: Some(Kind::Plate("HB 1234".into())) };
    bounded("lookup", client.lookup(vec![plate], "investigation", "hostile test: still served")).await.map(|_| ())
}

/// Every record matching `filter`, page by page, read as the auditor.
async fn records(auditor: &Client, mut filter: SearchRequest) -> Vec<(usize, AuditRecord)> {
    let mut out = Vec::new();
    filter.limit = 1000;
    for _ in 0..1000 {
        let page = bounded("search", isx_node::audit::search(auditor, &isx_testkit::testkit_reason(), filter.clone()))
            .await
            .unwrap();
        out.extend(page.entries.iter().filter_map(|e| Some((e.body.len(), e.record.clone()?))));
        match page.entries.last() {
            // `after_seq = 0` means "from the start", so a page that ends at
            // record 0 cannot be continued: stop rather than read it again.
            Some(last) if page.more && last.seq > filter.after_seq => filter.after_seq = last.seq,
            _ => break,
        }
    }
    out
}

/// The size of the largest audit record, in bytes, and how many there are.
async fn largest_record(gw: &Gateway) -> (usize, usize) {
    let auditor = gw.client("auditor").await;
    let all = records(&auditor, SearchRequest::default()).await;
    (all.iter().map(|(size, _)| *size).max().unwrap_or(0), all.len())
}

/// The refusals an aggregate record counts ("N more refusals from …"); 0
/// for a record of one refusal.
fn more_refused(detail: &str) -> u64 {
    detail
        .split_once(" more refusals from ")
        .map(|(n, _)| n.parse().unwrap_or_else(|_| panic!("a count in {detail:?}")))
        .unwrap_or(0)
}

/// DENIAL records about `node`: how many, how many stand for one refusal,
/// and how many refusals the aggregates count.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Tally {
    records: u64,
    singles: u64,
    counted: u64,
}

/// The DENIAL records about `node` whose detail contains `kind`, read now.
async fn count(auditor: &Client, node: &str, kind: &str) -> Tally {
    let filter = SearchRequest { node: node.into(), operation: Operation::Denial as i32, ..Default::default() };
    let denials = records(auditor, filter).await;
    let matching: Vec<&AuditRecord> = denials.iter().map(|(_, r)| r).filter(|r| r.detail.contains(kind)).collect();
    let counted: u64 = matching.iter().map(|r| more_refused(&r.detail)).sum();
    let singles = matching.iter().filter(|r| more_refused(&r.detail) == 0).count() as u64;
    Tally { records: matching.len() as u64, singles, counted }
}

/// [`count`], once the records account for `attempts` refusals (or after
/// [`LIMIT`]): aggregates are written by a ticker once a second.
async fn tally(gw: &Gateway, node: &str, kind: &str, attempts: u64) -> Tally {
    let auditor = gw.client("auditor").await;
    let deadline = Instant::now() + LIMIT;
    loop {
        let t = count(&auditor, node, kind).await;
        if t.singles + t.counted >= attempts || Instant::now() > deadline {
            return t;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The most records `limits.refusal_records_per_second` (10 by default)
/// allows for a flood of one source lasting `elapsed`: each burst lasts at
/// least a second and holds at most 10 records one by one plus one aggregate.
fn refusal_record_bound(elapsed: Duration) -> u64 {
    (elapsed.as_secs() + 2) * (10 + 1)
}

/// A gRPC request's head for `path` on a raw HTTP/2 connection.
fn grpc_request(path: &str, officer: &str) -> http::Request<()> {
    http::Request::builder()
        .method("POST")
        .uri(format!("http://localhost{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("x-isx-officer", officer)
        .body(())
        .unwrap()
}

/// The 5-byte gRPC message prefix announcing `len` bytes.
fn grpc_prefix(len: usize) -> Vec<u8> {
    let mut prefix = vec![0u8];
    prefix.extend_from_slice(&u32::try_from(len).unwrap().to_be_bytes());
    prefix
}

/// The gRPC status of a raw HTTP/2 response: from its headers (a
/// trailers-only answer) or its trailers.
async fn grpc_status(response: h2::client::ResponseFuture) -> Result<tonic::Status, String> {
    let response = response.await.map_err(|e| format!("response: {e}"))?;
    if let Some(status) = tonic::Status::from_header_map(response.headers()) {
        return Ok(status);
    }
    let mut body = response.into_body();
    let mut read = 0usize;
    while let Some(chunk) = body.data().await {
        let chunk = chunk.map_err(|e| format!("body: {e}"))?;
        read += chunk.len();
        let _ = body.flow_control().release_capacity(chunk.len());
        if read > 1 << 20 {
            return Err(format!("{read} bytes of body, no status"));
        }
    }
    let trailers = body.trailers().await.map_err(|e| format!("trailers: {e}"))?.unwrap_or_default();
    tonic::Status::from_header_map(&trailers).ok_or_else(|| "no grpc-status".to_owned())
}

/// Bytes a client receives of a refusal: its message and its details.
fn answer_bytes(status: &tonic::Status) -> usize {
    status.message().len() + status.details().len()
}

// ---------------------------------------------------------------------------
// #1: a Lookup of a million empty identifiers.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_1_a_lookup_of_a_million_empty_identifiers_is_refused_by_its_length_prefix() {
    let gw = Gateway::start(Spec::default());
    let de = gw.client("de-police").await;
    let fr = gw.client("fr-police").await;
    let request = LookupRequest {
        identifiers: vec![LookupIdentifier { kind: None }; 1_000_000],
        purpose: "investigation".into(),
        justification: "hostile #1".into(),
    };
    let wire = request.encoded_len();
    // The node client keeps tonic's encoding limit; this one sends anything.
    let mut exchange = ExchangeClient::new(de.channel()).max_encoding_message_size(usize::MAX);
    let log_before = gw.log_bytes();
    let refused = bounded("the lookup", exchange.lookup(de.request(request))).await.expect_err("refused");
    let logged = gw.log_bytes() - log_before;
    let served = lookup(&fr).await;
    let (largest, count) = largest_record(&gw).await;
    let peak = gw.peak_rss_mb();
    eprintln!(
        "hostile #1: a lookup of 1000000 empty identifiers ({wire} bytes): {:?} {:?}, answer {} bytes, \
         largest audit record {largest} bytes (of {count}), log +{logged} bytes, gateway peak RSS {peak} MB",
        refused.code(),
        refused.message().chars().take(200).collect::<String>(),
        answer_bytes(&refused),
    );
    assert_eq!(refused.code(), Code::ResourceExhausted, "{}", refused.message());
    assert!(refused.message().contains("limits.max_request_bytes"), "{}", refused.message());
    assert!(answer_bytes(&refused) <= 1024, "the answer is small");
    assert!(largest <= 4096, "no audit record grows with the request");
    assert!(logged <= 16 << 10, "the log does not grow with the request:\n{}", gw.log_tail());
    assert!(peak < MEMORY_BUDGET_MB, "peak RSS {peak} MB");
    served.expect("another node is served");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_1_a_lookup_of_64_bad_identifiers_names_at_most_33() {
    let gw = Gateway::start(Spec::default());
    let de = gw.client("de-police").await;
    let refused = lookup_of_empty(&de, 64).await;
    let violations = refused.get_details_bad_request().map(|b| b.field_violations).unwrap_or_default();
    let (largest, count) = largest_record(&gw).await;
    eprintln!(
        "hostile #1: a lookup of 64 empty identifiers: {:?}, {} violations listed (last: {:?}), answer {} bytes, \
         largest audit record {largest} bytes (of {count})",
        refused.code(),
        violations.len(),
        violations.last().map(|v| format!("{}: {}", v.field, v.description)),
        answer_bytes(&refused),
    );
    assert_eq!(refused.code(), Code::InvalidArgument, "{}", refused.message());
    assert!(violations.len() <= 33, "at most 32 violations and one '(more)'");
    assert_eq!(violations.last().map(|v| v.field.as_str()), Some("(more)"));
    assert!(answer_bytes(&refused) <= 8 << 10, "the answer is small");
    assert!(largest <= 4096, "no audit record grows with the request");
}

/// A lookup of `n` identifiers with nothing set, which must be refused.
async fn lookup_of_empty(client: &Client, n: usize) -> tonic::Status {
    let ids = vec![LookupIdentifier { kind: None }; n];
    bounded("lookup", client.lookup(ids, "investigation", "hostile #1")).await.expect_err("refused")
}

// ---------------------------------------------------------------------------
// #2: requests whose bodies never finish.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_2_requests_whose_bodies_never_finish_are_answered_by_the_body_timeout() {
    const STREAMS: usize = 100;
    let gw = Gateway::start(Spec::limits(&[("request_body_timeout", "\"3s\"")]));
    let fr = gw.client("fr-police").await;
    let (mut h2, conn) = gw.h2("de-police").await;
    let log_before = gw.log_bytes();
    let mut answers = JoinSet::new();
    let answered = Arc::new(AtomicUsize::new(0));
    let mut bodies = Vec::new();
    for _ in 0..STREAMS {
        h2 = bounded("a stream", h2.ready()).await.unwrap();
        let (response, mut body) = h2.send_request(grpc_request("/isx.v1.Exchange/Publish", "officer"), false).unwrap();
        // A prefix announcing 60 KiB (within limits.max_alert_bytes), then
        // three bytes, and never the rest.
        let mut start = grpc_prefix(60 << 10);
        start.extend_from_slice(b"\x0a\x80\x80");
        body.send_data(Bytes::from(start), false).unwrap();
        bodies.push(body);
        let answered = answered.clone();
        answers.spawn(async move {
            let status = grpc_status(response).await;
            answered.fetch_add(1, Ordering::AcqRel);
            status
        });
    }
    // Another node is served while the streams wait.
    let served = lookup(&fr).await;
    let waiting = STREAMS - answered.load(Ordering::Acquire);
    // Bounded: 30 s is ten times limits.request_body_timeout; what is not
    // answered by then never is.
    let mut statuses = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(answer) = answers.join_next().await {
            statuses.push(answer.unwrap());
        }
    })
    .await;
    // Read now: the gateway's SETTINGS may have come after the 100 were sent.
    let advertised = h2.current_max_send_streams();
    let logged = gw.log_bytes() - log_before;
    let peak = gw.peak_rss_mb();
    let (largest, count) = largest_record(&gw).await;
    let timed_out = statuses
        .iter()
        .filter(|s| {
            matches!(s, Ok(s) if s.code() == Code::DeadlineExceeded && s.message().contains("limits.request_body_timeout"))
        })
        .count();
    let largest_answer = statuses.iter().flatten().map(answer_bytes).max().unwrap_or(0);
    eprintln!(
        "hostile #2: {STREAMS} unfinished publishes on one connection (it allows {advertised} streams): {timed_out} \
         answered DEADLINE_EXCEEDED, largest answer {largest_answer} bytes, largest audit record {largest} bytes \
         (of {count}), log +{logged} bytes, gateway peak RSS {peak} MB; another node was served while {waiting} \
         were unanswered"
    );
    let others: Vec<_> =
        statuses.iter().filter(|s| !matches!(s, Ok(s) if s.code() == Code::DeadlineExceeded)).collect();
    assert_eq!(timed_out, STREAMS, "every stream is answered: {others:?}");
    assert_eq!(advertised, 100, "limits.max_streams_per_connection is advertised");
    assert!(largest_answer <= 1024);
    assert!(largest <= 4096);
    // One warning line per refused request, of bounded size.
    assert!(logged <= STREAMS as u64 * 512, "{}", gw.log_tail());
    assert!(peak < MEMORY_BUDGET_MB, "peak RSS {peak} MB");
    served.expect("another node is served meanwhile");
    drop(bodies);
    conn.abort();
}

/// An HTTP/2 frame.
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut f = u32::try_from(payload.len()).unwrap().to_be_bytes()[1..].to_vec();
    f.extend_from_slice(&[kind, flags]);
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// The HPACK block of a Publish request's headers, with literals only (no
/// Huffman coding, nothing added to the dynamic table), so that every
/// stream can send the same bytes.
fn publish_header_block() -> Vec<u8> {
    fn string(block: &mut Vec<u8>, s: &str) {
        block.push(u8::try_from(s.len()).unwrap());
        block.extend_from_slice(s.as_bytes());
    }
    // :method POST and :scheme http from the static table (3 and 6).
    let mut block = vec![0x83, 0x86];
    // Literals without indexing, by static name index: :path (4),
    // :authority (1), content-type (31 = 15 + 16).
    block.push(0x04);
    string(&mut block, "/isx.v1.Exchange/Publish");
    block.push(0x01);
    string(&mut block, "localhost");
    block.extend_from_slice(&[0x0f, 0x10]);
    string(&mut block, "application/grpc");
    // A literal with a new name.
    block.push(0x00);
    string(&mut block, "te");
    string(&mut block, "trailers");
    block
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_2_streams_past_max_streams_per_connection_are_refused() {
    const OPENED: u32 = 105;
    let gw = Gateway::start(Spec::limits(&[("request_body_timeout", "\"3s\"")]));
    let fr = gw.client("fr-police").await;
    let tls = gw.tls("de-police").await;
    let (mut rd, mut wr) = tokio::io::split(tls);
    // The client preface, empty SETTINGS, and OPENED requests at once,
    // without waiting for the gateway's SETTINGS: a raw client is not
    // bound by them, so only the gateway can hold the limit.
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend(frame(0x4, 0, 0, &[]));
    let block = publish_header_block();
    for i in 0..OPENED {
        out.extend(frame(0x1, 0x4, 2 * i + 1, &block)); // HEADERS, END_HEADERS, no END_STREAM
    }
    wr.write_all(&out).await.unwrap();
    let mut advertised = None;
    let mut refused = Vec::new();
    let mut answered = 0;
    let mut frames = 0;
    let read = async {
        // Until every stream is refused or answered (limits.request_body_timeout
        // answers the accepted ones); bounded by 10,000 frames and LIMIT.
        while frames < 10_000 && refused.len() + answered < OPENED as usize {
            let mut head = [0u8; 9];
            rd.read_exact(&mut head).await?;
            let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
            assert!(len <= 1 << 20, "a frame of {len} bytes");
            let mut payload = vec![0u8; len];
            rd.read_exact(&mut payload).await?;
            frames += 1;
            let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
            match head[3] {
                // SETTINGS (not an ACK): note MAX_CONCURRENT_STREAMS (3), acknowledge.
                0x4 if head[4] & 1 == 0 => {
                    for setting in payload.chunks_exact(6) {
                        if setting[..2] == [0, 3] {
                            advertised = Some(u32::from_be_bytes([setting[2], setting[3], setting[4], setting[5]]));
                        }
                    }
                    wr.write_all(&frame(0x4, 1, 0, &[])).await?;
                }
                // PING: answer it.
                0x6 if head[4] & 1 == 0 => wr.write_all(&frame(0x6, 1, 0, &payload)).await?,
                // HEADERS with END_STREAM: an answer (trailers-only).
                0x1 if head[4] & 1 == 1 => answered += 1,
                // RST_STREAM: REFUSED_STREAM is 7.
                0x3 if payload.len() == 4 && payload == [0, 0, 0, 7] => refused.push(stream),
                0x7 => panic!("GOAWAY: {payload:02x?}"),
                _ => {}
            }
        }
        Ok::<_, std::io::Error>(())
    };
    let outcome = tokio::time::timeout(LIMIT, read).await;
    let served = lookup(&fr).await;
    let peak = gw.peak_rss_mb();
    eprintln!(
        "hostile #2: {OPENED} streams opened at once on one connection: MAX_CONCURRENT_STREAMS {advertised:?}, \
         streams refused {refused:?}, {answered} answered ({frames} frames read), gateway peak RSS {peak} MB"
    );
    outcome.expect("every stream is refused or answered in time").expect("the connection stays up");
    assert_eq!(advertised, Some(100), "limits.max_streams_per_connection (100) is advertised");
    let past: Vec<u32> = (100..OPENED).map(|i| 2 * i + 1).collect();
    assert_eq!(refused, past, "the streams past limits.max_streams_per_connection are refused");
    assert_eq!(answered, 100, "the others are answered when limits.request_body_timeout passes");
    assert!(peak < MEMORY_BUDGET_MB, "peak RSS {peak} MB");
    served.expect("another node is served");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_2_a_connection_that_sends_no_request_is_closed_after_the_header_read_timeout() {
    let gw = Gateway::start(Spec::limits(&[("header_read_timeout", "\"2s\"")]));
    // TLS and the HTTP/2 preface, then nothing: the h2 client answers the
    // gateway's pings, so only the gateway's watchdog can close it.
    let (h2, conn) = gw.h2("de-police").await;
    let started = Instant::now();
    let closed = tokio::time::timeout(Duration::from_secs(30), conn).await;
    eprintln!(
        "hostile #2: a connection without a request: {} after {:?}",
        if closed.is_ok() { "closed by the gateway" } else { "still open" },
        started.elapsed()
    );
    assert!(closed.is_ok(), "closed by limits.header_read_timeout (2s)");
    drop(h2);
    lookup(&gw.client("de-police").await).await.expect("a connection that makes requests is served");
}

// ---------------------------------------------------------------------------
// #3: four concurrent 14 MB publishes.

/// An encoded `PublishRequest` whose alert is a valid one plus `n` empty
/// subjects (two bytes each on the wire, ~80 times that decoded).
fn publish_of_empty_subjects(n: usize) -> Vec<u8> {
    let mut alert = isx_testkit::samples::foreign_fighter("de-police", &["fr-police"]).encode_to_vec();
    alert.reserve(2 * n);
    for _ in 0..n {
        alert.extend_from_slice(&[0x5a, 0x00]); // field 11 (subjects), length 0
    }
    let mut request = vec![0x0a]; // field 1 (alert)
    prost::encoding::encode_varint(alert.len() as u64, &mut request);
    request.extend(alert);
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_3_four_fourteen_megabyte_publishes_are_refused_before_they_are_decoded() {
    const PUBLISHES: usize = 4;
    let gw = Gateway::start(Spec::default());
    let fr = gw.client("fr-police").await;
    let message = publish_of_empty_subjects(7_000_000);
    let wire = message.len();
    let mut body = grpc_prefix(wire);
    body.extend(message);
    let body = Bytes::from(body);
    let mut connections = Vec::new();
    for _ in 0..PUBLISHES {
        connections.push(gw.h2("de-police").await);
    }
    let log_before = gw.log_bytes();
    let mut answers = JoinSet::new();
    for (h2, _) in &connections {
        let (h2, body) = (h2.clone(), body.clone());
        answers.spawn(async move {
            let mut h2 = h2.ready().await.map_err(|e| e.to_string())?;
            let (response, mut stream) = h2
                .send_request(grpc_request("/isx.v1.Exchange/Publish", "officer"), false)
                .map_err(|e| e.to_string())?;
            stream.send_data(body, true).map_err(|e| e.to_string())?;
            let status = grpc_status(response).await;
            drop(stream);
            status
        });
    }
    // Bounded; what is not answered by then counts as not refused.
    let started = Instant::now();
    let mut statuses = Vec::new();
    let _ = tokio::time::timeout(LIMIT, async {
        while let Some(answer) = answers.join_next().await {
            statuses.push(answer.unwrap());
        }
    })
    .await;
    let answered_in = started.elapsed();
    let served = lookup(&fr).await;
    let logged = gw.log_bytes() - log_before;
    let peak = gw.peak_rss_mb();
    let (largest, count) = largest_record(&gw).await;
    let refused = statuses
        .iter()
        .filter(|s| {
            matches!(s, Ok(s) if s.code() == Code::ResourceExhausted && s.message().contains("limits.max_alert_bytes"))
        })
        .count();
    let largest_answer = statuses.iter().flatten().map(answer_bytes).max().unwrap_or(0);
    eprintln!(
        "hostile #3: {PUBLISHES} concurrent publishes of {wire} bytes (7000000 empty subjects): {refused} refused \
         RESOURCE_EXHAUSTED naming limits.max_alert_bytes ({} answered in {answered_in:?}), largest answer \
         {largest_answer} bytes, largest audit record {largest} bytes (of {count}), log +{logged} bytes, gateway peak \
         RSS {peak} MB",
        statuses.len()
    );
    assert_eq!(refused, PUBLISHES, "{statuses:?}");
    assert!(largest_answer <= 1024);
    assert!(largest <= 4096);
    assert!(logged <= 16 << 10, "{}", gw.log_tail());
    assert!(peak < MEMORY_BUDGET_MB, "peak RSS {peak} MB");
    served.expect("another node is served");
    for (_, conn) in connections {
        conn.abort();
    }
}

// ---------------------------------------------------------------------------
// #4: out of file descriptors; handshakes never started.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_4_out_of_file_descriptors_the_accept_loop_backs_off() {
    const NOFILE: u32 = 128;
    const CONNECTIONS: usize = 200;
    const WINDOW: Duration = Duration::from_secs(3);
    if !Path::new("/usr/bin/prlimit").exists() {
        eprintln!("hostile #4: skipped: /usr/bin/prlimit (util-linux) is missing");
        return;
    }
    // Handshakes are capped at 64 by default, which keeps plain TCP
    // connections from taking more than 64 descriptors; the cap is raised
    // here so that they exhaust the 128, and the handshake timeout is
    // longer than the test so that none is closed meanwhile.
    let gw = Gateway::start(Spec {
        limits: vec![
            ("max_handshakes", "1000"),
            ("max_handshakes_per_address", "1000"),
            ("handshake_timeout", "\"120s\""),
        ],
        nofile: Some(NOFILE),
        ..Spec::default()
    });
    let idle = open_fds(gw.pid());
    let mut conns = Vec::new();
    for _ in 0..CONNECTIONS {
        conns.push(bounded("connect", TcpStream::connect(&gw.addr)).await.unwrap());
    }
    // Bounded: until the gateway says it is out of descriptors.
    let deadline = Instant::now() + LIMIT;
    while !gw.log_tail().contains("accept failed") {
        assert!(Instant::now() < deadline, "the gateway never ran out of descriptors:\n{}", gw.log_tail());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let held = open_fds(gw.pid());
    let (cpu_before, log_before) = (gw.cpu_ticks(), gw.log_bytes());
    tokio::time::sleep(WINDOW).await;
    let (cpu, logged) = (gw.cpu_ticks() - cpu_before, gw.log_bytes() - log_before);
    drop(conns);
    // Bounded: a registered node is served again once the descriptors are back.
    let started = Instant::now();
    let mut served = Err("never tried".to_owned());
    while started.elapsed() < LIMIT {
        let attempt = tokio::time::timeout(Duration::from_secs(5), async {
            let client = Client::connect(&gw.options("de-police")).await.map_err(|e| e.to_string())?;
            lookup(&client).await.map_err(|e| e.to_string())
        })
        .await;
        served = attempt.unwrap_or_else(|_| Err("no answer in 5s".to_owned()));
        if served.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let busy_core = clock_ticks_per_second() * WINDOW.as_secs();
    eprintln!(
        "hostile #4: out of descriptors (nofile {NOFILE}, {idle} open when idle, {held} with {CONNECTIONS} plain TCP \
         connections): over {WINDOW:?} the gateway used {cpu} clock ticks of CPU (a busy core: {busy_core}) and \
         logged {logged} bytes; served again after {:?}: {served:?}",
        started.elapsed()
    );
    assert!(cpu < busy_core / 4, "the accept loop backs off instead of spinning");
    assert!(logged <= 8 << 10, "warnings are throttled:\n{}", gw.log_tail());
    served.expect("a registered node is served again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_4_handshakes_in_progress_are_capped_and_idle_connections_time_out() {
    const CONNECTIONS: usize = 100;
    const MAX_HANDSHAKES: usize = 64;
    // Every connection here comes from 127.0.0.1: the cap per address is
    // raised so that the total cap is what this test sees (the next test
    // shows the cap per address).
    let gw = Gateway::start(Spec::limits(&[("handshake_timeout", "\"2s\""), ("max_handshakes_per_address", "1000")]));
    let pid = gw.pid();
    let idle = open_fds(pid);
    // Sample the gateway's descriptors until every connection is closed.
    let most = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = std::thread::spawn({
        let (most, done) = (most.clone(), done.clone());
        move || {
            while !done.load(Ordering::Acquire) {
                most.fetch_max(open_fds(pid), Ordering::AcqRel);
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    });
    let log_before = gw.log_bytes();
    let mut idlers = JoinSet::new();
    for _ in 0..CONNECTIONS {
        let mut tcp = bounded("connect", TcpStream::connect(&gw.addr)).await.unwrap();
        // Each sends nothing and waits (bounded) for the gateway to close it.
        idlers.spawn(async move {
            let mut buf = [0u8; 64];
            matches!(tokio::time::timeout(Duration::from_secs(30), tcp.read(&mut buf)).await, Ok(Ok(0) | Err(_)))
        });
    }
    // A registered node meanwhile: it waits behind the idle handshakes.
    let started = Instant::now();
    let registered = async {
        let client = Client::connect(&gw.options("de-police")).await.map_err(|e| e.to_string())?;
        lookup(&client).await.map_err(|e| e.to_string())
    };
    let served = tokio::time::timeout(Duration::from_secs(30), registered)
        .await
        .unwrap_or_else(|_| Err("not served within 30s".to_owned()));
    let waited = started.elapsed();
    let mut closed = 0;
    bounded("the idle connections", async {
        while let Some(was_closed) = idlers.join_next().await {
            closed += usize::from(was_closed.unwrap());
        }
    })
    .await;
    done.store(true, Ordering::Release);
    sampler.join().unwrap();
    let extra = most.load(Ordering::Acquire).saturating_sub(idle);
    let logged = gw.log_bytes() - log_before;
    eprintln!(
        "hostile #4: {CONNECTIONS} TCP connections without a handshake: at most {extra} descriptors above idle \
         ({idle}), {closed} closed by limits.handshake_timeout (2s), log +{logged} bytes; a registered node \
         connecting meanwhile was served after {waited:?}: {served:?}"
    );
    assert_eq!(closed, CONNECTIONS, "every idle connection is closed");
    // Slack: the registered node's connection, and descriptors of timed-out
    // handshakes closed just after their permits went back.
    assert!(extra <= MAX_HANDSHAKES + 4, "limits.max_handshakes ({MAX_HANDSHAKES}) caps handshakes in progress");
    assert!(logged <= 8 << 10, "warnings are throttled:\n{}", gw.log_tail());
    served.expect("a registered node is served");
}

/// One address that opens connections and says nothing holds at most
/// `limits.max_handshakes_per_address` handshake slots: a registered node
/// from another address is served at once, not after the handshake timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_4_one_address_cannot_hold_every_handshake_slot() {
    const CONNECTIONS: usize = 64;
    let gw = Gateway::start(Spec::limits(&[("handshake_timeout", "\"10s\"")]));
    let port: u16 = gw.addr.rsplit_once(':').unwrap().1.parse().unwrap();
    // The attacker connects from 127.0.0.2 (all of 127/8 is loopback); the
    // registered node from 127.0.0.1.
    let mut idle = Vec::new();
    for _ in 0..CONNECTIONS {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
        idle.push(bounded("connect", socket.connect(([127, 0, 0, 1], port).into())).await.unwrap());
    }
    let started = Instant::now();
    let served = bounded("a registered node", async {
        let client = Client::connect(&gw.options("de-police")).await.map_err(|e| e.to_string())?;
        lookup(&client).await.map_err(|e| e.to_string())
    })
    .await;
    let waited = started.elapsed();
    eprintln!(
        "hostile #4: {CONNECTIONS} silent connections from one address: a registered node from another was served after {waited:?}"
    );
    served.expect("a registered node is served");
    assert!(waited < Duration::from_secs(5), "not held behind the silent address's handshakes: {waited:?}");
    drop(idle);
}

// ---------------------------------------------------------------------------
// #5: floods of unregistered handshakes and refused Audit calls.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_5_unregistered_handshakes_leave_a_bounded_number_of_records_that_add_up() {
    const ATTEMPTS: u64 = 300;
    // Waves of ten concurrent handshakes from one address.
    let gw = Gateway::start(Spec::limits(&[("max_handshakes_per_address", "16")]));
    gw.issue("es-police");
    let options = gw.options("es-police");
    let log_before = gw.log_bytes();
    let started = Instant::now();
    let mut outcomes = Vec::new();
    for _ in 0..ATTEMPTS / 10 {
        let mut wave = JoinSet::new();
        for _ in 0..10 {
            let options = options.clone();
            wave.spawn(async move { isx_testkit::probe(&options).await.map_err(|e| e.to_string()) });
        }
        while let Some(outcome) = wave.join_next().await {
            outcomes.push(outcome.unwrap());
        }
    }
    let elapsed = started.elapsed();
    let dropped = outcomes.iter().filter(|o| matches!(o, Ok(Probe::Dropped))).count() as u64;
    let t = tally(&gw, "es-police", "not registered", ATTEMPTS).await;
    let logged = gw.log_bytes() - log_before;
    let served = lookup(&gw.client("fr-police").await).await;
    let bound = refusal_record_bound(elapsed);
    eprintln!(
        "hostile #5: {ATTEMPTS} handshakes with an unregistered certificate in {elapsed:?}: {dropped} dropped; \
         {} denial records ({} one by one + aggregates counting {}; at most {bound} allowed), log +{logged} bytes",
        t.records, t.singles, t.counted
    );
    let others: Vec<_> = outcomes.iter().filter(|o| !matches!(o, Ok(Probe::Dropped))).collect();
    assert_eq!(dropped, ATTEMPTS, "every attempt is refused at the connection: {others:?}");
    assert_eq!(t.singles + t.counted, ATTEMPTS, "every attempt is accounted for: {t:?}");
    assert!(t.counted > 0 && t.records <= bound, "refusals are aggregated: {t:?}");
    assert!(logged <= 16 << 10, "warnings are throttled:\n{}", gw.log_tail());
    served.expect("a registered node is served");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_5_refused_audit_calls_leave_a_bounded_number_of_records_that_add_up() {
    const ATTEMPTS: u64 = 2500;
    // A rate no flood of this test reaches, so that every call is refused
    // for its role, not its rate.
    let gw = Gateway::start(Spec::limits(&[("rate_per_node", "1000000.0"), ("burst_per_node", "1000000")]));
    let de = gw.client("de-police").await;
    let log_before = gw.log_bytes();
    let started = Instant::now();
    let mut codes = Vec::new();
    for _ in 0..ATTEMPTS / 25 {
        let mut wave = JoinSet::new();
        for _ in 0..25 {
            let de = de.clone();
            wave.spawn(async move {
                isx_node::audit::search(&de, &isx_testkit::testkit_reason(), SearchRequest::default()).await.err().map(
                    |e| match e {
                        isx_node::audit::AuditClientError::Status(s) => s.code(),
                        other => panic!("{other}"),
                    },
                )
            });
        }
        while let Some(code) = wave.join_next().await {
            codes.push(code.unwrap());
        }
    }
    let elapsed = started.elapsed();
    let denied = codes.iter().filter(|c| **c == Some(Code::PermissionDenied)).count() as u64;
    let t = tally(&gw, "de-police", "(audit log: Search)", ATTEMPTS).await;
    let logged = gw.log_bytes() - log_before;
    let served = lookup(&gw.client("fr-police").await).await;
    let bound = refusal_record_bound(elapsed);
    eprintln!(
        "hostile #5: {ATTEMPTS} Audit searches by a non-auditor in {elapsed:?}: {denied} PERMISSION_DENIED; {} denial \
         records ({} one by one + aggregates counting {}; at most {bound} allowed), log +{logged} bytes",
        t.records, t.singles, t.counted
    );
    assert_eq!(denied, ATTEMPTS, "every search is refused for its role");
    assert_eq!(t.singles + t.counted, ATTEMPTS, "every refusal is accounted for: {t:?}");
    assert!(t.counted > 0 && t.records <= bound, "refusals are aggregated: {t:?}");
    served.expect("another node is served");
}

// ---------------------------------------------------------------------------
// #6: the Audit service's edges.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_6_a_non_auditor_with_a_bad_filter_is_refused_for_its_role_and_recorded() {
    let gw = Gateway::start(Spec::default());
    let de = gw.client("de-police").await;
    let bad = SearchRequest { subject_pseudonym: "zz".into(), ..Default::default() };
    let refused = match bounded("search", isx_node::audit::search(&de, &isx_testkit::testkit_reason(), bad)).await {
        Err(isx_node::audit::AuditClientError::Status(s)) => s,
        other => panic!("refused, not {other:?}"),
    };
    // Recorded durably before the answer: no wait.
    let t = count(&gw.client("auditor").await, "de-police", "(audit log: Search)").await;
    eprintln!(
        "hostile #6: a non-auditor's search with a bad filter: {:?} ({}), {} denial record(s)",
        refused.code(),
        refused.message(),
        t.records
    );
    assert_eq!(refused.code(), Code::PermissionDenied, "the role is checked before the filter is parsed");
    assert_eq!(t, Tally { records: 1, singles: 1, counted: 0 }, "the refusal is on record");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_6_an_export_of_everything_arrives_in_batches() {
    const LOOKUPS: usize = 2500;
    const EXPORT_BATCH: usize = 256;
    // A rate and quotas no flood of this test reaches: every lookup is one record.
    let gw = Gateway::start(Spec {
        limits: vec![("rate_per_node", "1000000.0"), ("burst_per_node", "1000000")],
        lookup: vec![("per_node", "1000000"), ("per_officer", "1000000")],
        ..Spec::default()
    });
    let fr = gw.client("fr-police").await;
    for _ in 0..LOOKUPS / 25 {
        let mut wave = JoinSet::new();
        for _ in 0..25 {
            let fr = fr.clone();
            wave.spawn(async move { lookup(&fr).await });
        }
        while let Some(done) = wave.join_next().await {
            done.unwrap().expect("a lookup");
        }
    }
    let auditor = gw.client("auditor").await;
    let request = auditor.request(ExportRequest {
        reason: Some(isx_testkit::testkit_reason()),
        recipient: "hostile test".into(),
        ..Default::default()
    });
    let mut stream = bounded("export", isx_node::audit::audit(&auditor).export(request)).await.unwrap().into_inner();
    let mut batches = Vec::new();
    let header = bounded("export header", stream.message()).await.unwrap().expect("a header");
    let size = header.checkpoint.as_ref().map(|c| c.tree_size).unwrap_or(0);
    // Bounded: a log of `size` records in batches of at least one.
    for _ in 0..=size {
        match bounded("export batch", stream.message()).await.unwrap() {
            Some(part) => batches.push((part.entries.len(), part.encoded_len())),
            None => break,
        }
    }
    let entries: usize = batches.iter().map(|(n, _)| n).sum();
    let largest = batches.iter().map(|(n, _)| *n).max().unwrap_or(0);
    let largest_bytes = batches.iter().map(|(_, b)| *b).max().unwrap_or(0);
    let peak = gw.peak_rss_mb();
    eprintln!(
        "hostile #6: an export of everything (a log of {size} records): {} messages after the header, at most \
         {largest} entries ({largest_bytes} bytes) each, {entries} entries in all; gateway peak RSS {peak} MB",
        batches.len()
    );
    assert!(size as usize >= LOOKUPS, "a log of a few thousand records");
    assert_eq!(header.entries.len(), 0, "the header carries no entries");
    assert_eq!(entries as u64, size, "every record of the checkpoint's tree");
    assert!(largest <= EXPORT_BATCH, "at most audit.export_batch entries a message");
    assert!(batches.len() >= (size as usize).div_ceil(EXPORT_BATCH), "in several messages");
    assert!(peak < MEMORY_BUDGET_MB, "peak RSS {peak} MB");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_6_consistency_proofs_from_zero_are_empty_and_bad_ranges_are_out_of_range() {
    let gw = Gateway::start(Spec::default());
    let fr = gw.client("fr-police").await;
    for _ in 0..3 {
        lookup(&fr).await.expect("a lookup, one record");
    }
    let auditor = gw.client("auditor").await;
    let audit = isx_node::audit::audit(&auditor);
    let mut client = audit.clone();
    let checkpoint =
        client.get_checkpoint(auditor.request(GetCheckpointRequest { reason: Some(isx_testkit::testkit_reason()) }));
    let size = bounded("checkpoint", checkpoint).await.unwrap().into_inner().tree_size;
    let proof = |first: u64, second: u64| {
        let request =
            auditor.request(GetConsistencyProofRequest { first, second, reason: Some(isx_testkit::testkit_reason()) });
        let mut audit = audit.clone();
        async move { bounded("consistency proof", audit.get_consistency_proof(request)).await.map(|r| r.into_inner()) }
    };
    let from_zero = proof(0, size).await;
    let backwards = proof(size, size - 1).await;
    let beyond = proof(1, size + 1000).await;
    let code = |r: &Result<_, tonic::Status>| r.as_ref().err().map(|s| s.code());
    eprintln!(
        "hostile #6: consistency proofs in a log of {size}: 0..{size} {:?}, {size}..{} {:?}, 1..{} {:?}",
        from_zero.as_ref().map(|p| p.hashes.len()).map_err(|s| s.code()),
        size - 1,
        code(&backwards),
        size + 1000,
        code(&beyond),
    );
    // (A `second` of 0 means the latest size, so `first > second` needs a log of 2.)
    assert!(size >= 2, "three lookups and the checkpoint call are on record");
    assert_eq!(from_zero.expect("every tree extends the empty one").hashes.len(), 0, "nothing to prove");
    assert_eq!(code(&backwards), Some(Code::OutOfRange), "first > second");
    assert_eq!(code(&beyond), Some(Code::OutOfRange), "second beyond the log");
}
