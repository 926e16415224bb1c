//! The C2SP `tlog-witness` conformance suite, run against isx's own witness
//! (`isx_witness::serve`) over HTTPS on `127.0.0.1:0`.
//!
//! One trial per case file in `tests/data/witness/` (the step language is
//! in its README), each on a fresh state directory; plus the spec's own
//! example vectors (`tests/data/c2sp/`), the client the gateway calls, the
//! refusal counter, and the per-connection time bound.
//!
//! The log and the keys come from fixed seeds, so every run sends the same
//! checkpoints. Requests are written by hand over TLS (not with the isx
//! client), so that malformed, oversized and wrong-method requests can be
//! sent as they are.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use isx_audit::cosignature::{CosignatureSigner, CosignatureVerifier};
use isx_audit::witness::{KnownLog, MAX_BODY, Store};
use isx_witness::{AddError, Limits, Witness};
use libtest_mimic::{Arguments, Failed, Trial};
use signed_note::{Note, Signer, StandardSigner, VerifierList};
use tlog_tiles::checkpoint::Checkpoint as Body;
use tlog_tiles::tlog::{self, Hash};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

const ORIGIN: &str = "isx.test/audit";
const OTHER_ORIGIN: &str = "isx.test/other";
const WITNESS_NAME: &str = "isx.test/witness/w1";
/// How long one request may take in a test.
const LIMIT: Duration = Duration::from_secs(10);

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data")
}

// ---------------------------------------------------------------- the log

/// A deterministic generator for the test keys.
struct SeededRng(u8);
impl rand_core::RngCore for SeededRng {
    fn next_u32(&mut self) -> u32 {
        self.0 as u32
    }
    fn next_u64(&mut self) -> u64 {
        self.0 as u64
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        dest.fill(self.0);
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}
impl rand_core::CryptoRng for SeededRng {}

fn log_key(name: &str, seed: u8) -> (StandardSigner, String) {
    let (skey, vkey) = signed_note::generate_key(&mut SeededRng(seed), name);
    (StandardSigner::new(&skey).expect("a generated key"), vkey)
}

/// A tree of 32 leaves whose contents depend on `seed`.
struct Tree(Vec<Hash>);

impl tlog::HashReader for Tree {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog::Error> {
        Ok(indexes.iter().map(|&i| self.0[i as usize]).collect())
    }
}

impl Tree {
    fn new(seed: u8) -> Self {
        let mut t = Tree(vec![]);
        for i in 0..32u64 {
            let stored = tlog::stored_hashes(i, format!("record {i} of log {seed}").as_bytes(), &t).unwrap();
            t.0.extend(stored);
        }
        t
    }

    fn root(&self, n: u64) -> [u8; 32] {
        tlog::tree_hash(n, self).unwrap().0
    }

    fn proof(&self, old: u64, n: u64) -> Vec<[u8; 32]> {
        if old == 0 || old >= n {
            return vec![];
        }
        tlog::prove_tree(n, old, self).unwrap().iter().map(|h| h.0).collect()
    }
}

/// Everything a case signs with.
struct Keys {
    log: StandardSigner,
    log_vkey: String,
    stranger: StandardSigner,
    other: StandardSigner,
    other_vkey: String,
    unknown: StandardSigner,
    witness: CosignatureSigner,
    main: Tree,
    fork: Tree,
}

impl Keys {
    fn new() -> Self {
        let (log, log_vkey) = log_key(ORIGIN, 1);
        let (stranger, _) = log_key(ORIGIN, 2);
        let (other, other_vkey) = log_key(OTHER_ORIGIN, 3);
        let (unknown, _) = log_key("isx.test/some-other-cosigner", 4);
        let witness = CosignatureSigner::new(WITNESS_NAME, &[9u8; 32]).unwrap();
        Self { log, log_vkey, stranger, other, other_vkey, unknown, witness, main: Tree::new(1), fork: Tree::new(2) }
    }

    /// The logs the witness knows: the test log and, with another key, OTHER_ORIGIN is not one of them.
    fn known(&self) -> Vec<KnownLog> {
        let _ = &self.other_vkey;
        vec![KnownLog { origin: ORIGIN.into(), keys: vec![self.log_vkey.clone()] }]
    }
}

// ---------------------------------------------------------------- the witness

/// A PKI with the witness's certificate, a state directory, and the running server.
struct Env {
    _dir: tempfile::TempDir,
    ca: PathBuf,
    tls: Arc<rustls::ServerConfig>,
    client_tls: tokio_rustls::TlsConnector,
    data: PathBuf,
    limits: Limits,
}

struct Running {
    addr: std::net::SocketAddr,
    witness: Arc<Witness>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Env {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let pki = dir.path().join("pki");
        isx_tls::pki::init(&isx_tls::pki::InitOptions { nodes: vec![], ..isx_tls::pki::InitOptions::new(&pki) })
            .unwrap();
        let ca = isx_tls::pki::DevCa::load(&pki).unwrap();
        let (cert, key) = ca.issue_witness("witness", &[], time::Duration::days(1)).unwrap();
        let (cert_path, key_path) = isx_tls::pki::witness_tls_paths(&pki, "witness");
        isx_tls::pki::write_file(&cert_path, &cert, false).unwrap();
        isx_tls::pki::write_file(&key_path, &key, true).unwrap();
        let tls = isx_witness::server_tls(&cert_path, &key_path).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        for c in isx_tls::config::read_certs(&pki.join("ca.crt")).unwrap() {
            roots.add(c).unwrap();
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        Self {
            ca: pki.join("ca.crt"),
            tls,
            client_tls: tokio_rustls::TlsConnector::from(Arc::new(config)),
            data: dir.path().join("state"),
            _dir: dir,
            limits: Limits::default(),
        }
    }

    async fn start(&self, keys: &Keys) -> Running {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let witness = Arc::new(Witness::new(keys.witness.clone(), keys.known(), Store::open(&self.data).unwrap()));
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(isx_witness::serve_with(
            witness.clone(),
            self.tls.clone(),
            listener,
            shutdown.clone(),
            self.limits,
        ));
        Running { addr, witness, shutdown, task }
    }
}

impl Running {
    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(20), self.task).await.expect("the witness stops").unwrap().unwrap();
    }
}

// ---------------------------------------------------------------- raw HTTPS

enum Send {
    /// A body with its Content-Length.
    Whole(Vec<u8>),
    /// Only the headers, claiming this Content-Length; the body never follows.
    HeadersClaiming(usize),
    /// A chunked body, without a length.
    Chunked(Vec<u8>),
}

struct Answer {
    status: u16,
    content_type: String,
    body: Vec<u8>,
}

async fn connect(env: &Env, addr: std::net::SocketAddr) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
    env.client_tls.connect(name, tcp).await.unwrap()
}

/// Sends one request on its own connection and reads the answer.
async fn request(env: &Env, addr: std::net::SocketAddr, method: &str, path: &str, send: Send) -> Answer {
    tokio::time::timeout(LIMIT, async {
        let mut tls = connect(env, addr).await;
        let head = format!("{method} {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n");
        let bytes = match send {
            Send::Whole(body) => [format!("{head}content-length: {}\r\n\r\n", body.len()).into_bytes(), body].concat(),
            Send::HeadersClaiming(n) => format!("{head}content-length: {n}\r\n\r\n").into_bytes(),
            Send::Chunked(body) => {
                let mut b = format!("{head}transfer-encoding: chunked\r\n\r\n").into_bytes();
                for chunk in body.chunks(16 * 1024) {
                    b.extend(format!("{:x}\r\n", chunk.len()).as_bytes());
                    b.extend(chunk);
                    b.extend(b"\r\n");
                }
                // No final chunk: the witness must answer before the body ends.
                b
            }
        };
        // A witness that answers early may close while this is still written.
        let _ = tls.write_all(&bytes).await;
        let _ = tls.flush().await;
        let mut got = Vec::new();
        let mut buf = [0u8; 8192];
        // Bounded by LIMIT; ends when the witness closes the connection.
        loop {
            match tls.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
        parse_answer(&got)
    })
    .await
    .expect("the witness answers in time")
}

fn parse_answer(got: &[u8]) -> Answer {
    let split = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or_else(|| {
        panic!("no HTTP answer: {:?}", String::from_utf8_lossy(got));
    });
    let head = String::from_utf8_lossy(&got[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let mut content_type = String::new();
    let mut length = None;
    for line in lines {
        let (k, v) = line.split_once(':').unwrap();
        match k.to_ascii_lowercase().as_str() {
            "content-type" => content_type = v.trim().to_owned(),
            "content-length" => length = Some(v.trim().parse::<usize>().unwrap()),
            _ => {}
        }
    }
    let mut body = got[split + 4..].to_vec();
    if let Some(n) = length {
        body.truncate(n);
    }
    Answer { status, content_type, body }
}

// ---------------------------------------------------------------- cases

/// One `post` of a case.
#[derive(Debug, Clone)]
struct Post {
    old: u64,
    size: u64,
    tree: String,
    signer: String,
    origin: String,
    proof: String,
    root: String,
    extra_sig: bool,
    body: Option<String>,
    method: String,
    path: String,
}

impl Post {
    fn parse(words: &[&str]) -> Result<Self, String> {
        let mut p = Post {
            old: 0,
            size: 0,
            tree: "main".into(),
            signer: "log".into(),
            origin: "log".into(),
            proof: "auto".into(),
            root: "auto".into(),
            extra_sig: false,
            body: None,
            method: "POST".into(),
            path: "/add-checkpoint".into(),
        };
        for w in words {
            let (k, v) = w.split_once('=').ok_or_else(|| format!("{w:?} is not key=value"))?;
            let num = || v.parse::<u64>().map_err(|_| format!("{k}={v}: not a number"));
            match k {
                "old" => p.old = num()?,
                "size" => p.size = num()?,
                "tree" => p.tree = v.into(),
                "signer" => p.signer = v.into(),
                "origin" => p.origin = v.into(),
                "proof" => p.proof = v.into(),
                "root" => p.root = v.into(),
                "extra-sig" => p.extra_sig = v == "yes",
                "body" => p.body = Some(v.into()),
                "method" => p.method = v.into(),
                "path" => p.path = v.into(),
                _ => return Err(format!("unknown option {k}")),
            }
        }
        Ok(p)
    }

    /// The checkpoint's note body and the whole signed note.
    fn note(&self, keys: &Keys) -> Result<(Vec<u8>, Vec<u8>), String> {
        let tree = match self.tree.as_str() {
            "main" => &keys.main,
            "fork" => &keys.fork,
            t => return Err(format!("tree={t}?")),
        };
        let root = match self.root.as_str() {
            "auto" => tree.root(self.size),
            "empty" => ring::digest::digest(&ring::digest::SHA256, b"").as_ref().try_into().unwrap(),
            "ones" => [1u8; 32],
            r => return Err(format!("root={r}?")),
        };
        let (origin, log_signer) = match self.origin.as_str() {
            "log" => (ORIGIN, &keys.log),
            "other" => (OTHER_ORIGIN, &keys.other),
            o => return Err(format!("origin={o}?")),
        };
        let text = Body::new(origin, self.size, Hash(root), "").unwrap().to_bytes();
        let mut note = Note::new(&text, &[]).unwrap();
        let signer: &dyn Signer = match self.signer.as_str() {
            "log" | "broken" => log_signer,
            "stranger" => &keys.stranger,
            s => return Err(format!("signer={s}?")),
        };
        note.add_sigs(&[signer]).unwrap();
        if self.extra_sig {
            note.add_sigs(&[&keys.unknown as &dyn Signer]).unwrap();
        }
        let mut bytes = note.to_bytes();
        if self.signer == "broken" {
            bytes = break_signature(&bytes, signer.name());
        }
        Ok((text, bytes))
    }

    fn proof(&self, keys: &Keys) -> Result<Vec<[u8; 32]>, String> {
        let tree = if self.tree == "fork" { &keys.fork } else { &keys.main };
        Ok(match self.proof.as_str() {
            "auto" => tree.proof(self.old, self.size),
            "flipped" => {
                let mut p = tree.proof(self.old, self.size);
                p.first_mut().ok_or("proof=flipped needs a non-empty proof")?[0] ^= 1;
                p
            }
            "zero" => vec![[0u8; 32]],
            "junk64" => vec![[0u8; 32]; 64],
            p => return Err(format!("proof={p}?")),
        })
    }

    /// What to send, and the note body a 200 must cosign.
    fn build(&self, keys: &Keys) -> Result<(Send, Vec<u8>), String> {
        let (text, note) = self.note(keys)?;
        let note_str = String::from_utf8(note.clone()).unwrap();
        let with = |head: &str| [head.as_bytes(), &note].concat();
        let send = match self.body.as_deref() {
            None => Send::Whole(isx_witness::client::body(self.old, &self.proof(keys)?, &note_str)),
            Some("empty") => Send::Whole(vec![]),
            Some("no-old-line") => Send::Whole(with("\n")),
            Some("leading-zero") => Send::Whole(with("old 00\n\n")),
            Some("no-blank-line") => Send::Whole(b"old 0\n".to_vec()),
            Some("not-utf8") => Send::Whole(b"old 0\n\n\xff\xfe\n".to_vec()),
            Some("bad-base64") => Send::Whole(with("old 0\n!!!!\n\n")),
            Some("short-hash") => Send::Whole(with(&format!("old 0\n{}\n\n", b64(&[0u8; 16])))),
            Some("not-a-note") => Send::Whole(b"old 0\n\nhello\n".to_vec()),
            Some("oversize") => Send::HeadersClaiming(MAX_BODY + 1),
            Some("oversize-chunked") => Send::Chunked(vec![b'x'; MAX_BODY + 1]),
            Some(b) => return Err(format!("body={b}?")),
        };
        Ok((send, text))
    }
}

/// Flips a byte of the signature (not the key ID) on `name`'s signature line.
fn break_signature(note: &[u8], name: &str) -> Vec<u8> {
    let text = String::from_utf8(note.to_vec()).unwrap();
    let prefix = format!("\u{2014} {name} ");
    let out: Vec<String> = text
        .split('\n')
        .map(|line| match line.strip_prefix(&prefix) {
            Some(sig) => {
                let mut bytes = base64::engine::general_purpose::STANDARD.decode(sig).unwrap();
                *bytes.last_mut().unwrap() ^= 1;
                format!("{prefix}{}", b64(&bytes))
            }
            None => line.to_owned(),
        })
        .collect();
    out.join("\n").into_bytes()
}

/// Checks a 200: one cosignature line by the witness over `note_body`, recent.
fn check_cosignature(keys: &Keys, note_body: &[u8], answer: &Answer) -> Result<(), String> {
    let text = String::from_utf8(answer.body.clone()).map_err(|_| "a 200 body that is not UTF-8")?;
    if text.lines().count() != 1 || !text.ends_with('\n') {
        return Err(format!("a 200 body that is not one signature line: {text:?}"));
    }
    let prefix = format!("\u{2014} {WITNESS_NAME} ");
    let sig = text.trim_end().strip_prefix(&prefix).ok_or_else(|| format!("not the witness's line: {text:?}"))?;
    let sig = base64::engine::general_purpose::STANDARD.decode(sig).map_err(|_| "not base64")?;
    if sig.len() != 4 + 8 + 64 || u32::from_be_bytes(sig[..4].try_into().unwrap()) != keys.witness.key_id() {
        return Err(format!("not a cosignature/v1 of the witness's key: {} bytes", sig.len()));
    }
    // As the spec suggests a client does: append the lines to the checkpoint
    // and verify the note with the witness's key.
    let mut whole = note_body.to_vec();
    whole.push(b'\n');
    whole.extend(text.as_bytes());
    let note = Note::from_bytes(&whole).map_err(|e| format!("the cosigned note: {e}"))?;
    let verifier = CosignatureVerifier::new(&keys.witness.verifier_key()).unwrap();
    let (verified, _) =
        note.verify(&VerifierList::new(vec![Box::new(verifier)])).map_err(|e| format!("the cosignature: {e}"))?;
    let t = isx_audit::cosignature::timestamp(verified[0].signature()).ok_or("no timestamp")?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    if t == 0 || t.abs_diff(now) > 60 {
        return Err(format!("the cosignature's time {t} is not now ({now})"));
    }
    Ok(())
}

/// Checks an answer against `-> STATUS [size=N]`.
fn check(keys: &Keys, note_body: &[u8], answer: &Answer, want: &[&str]) -> Result<(), String> {
    let status: u16 = want.first().ok_or("no expected status")?.parse().map_err(|_| "a bad expected status")?;
    if answer.status != status {
        return Err(format!(
            "status {} ({:?}), expected {status}",
            answer.status,
            String::from_utf8_lossy(&answer.body).trim()
        ));
    }
    if status == 200 {
        check_cosignature(keys, note_body, answer)?;
    }
    if let Some(size) = want.get(1).and_then(|w| w.strip_prefix("size=")) {
        if answer.content_type != "text/x.tlog.size" {
            return Err(format!("content type {:?}, expected text/x.tlog.size", answer.content_type));
        }
        if answer.body != format!("{size}\n").as_bytes() {
            return Err(format!("body {:?}, expected {size:?} and a newline", String::from_utf8_lossy(&answer.body)));
        }
    }
    Ok(())
}

async fn post(env: &Env, keys: &Keys, running: &Running, step: &str) -> Result<(Answer, Vec<u8>), String> {
    let words: Vec<&str> = step.split_whitespace().collect();
    let p = Post::parse(&words)?;
    let (send, note_body) = p.build(keys)?;
    Ok((request(env, running.addr, &p.method, &p.path, send).await, note_body))
}

async fn run_case(text: &str) -> Result<(), String> {
    let keys = Keys::new();
    let env = Env::new();
    let mut running = Some(env.start(&keys).await);
    let mut steps = 0;
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap().trim();
        if line.is_empty() {
            continue;
        }
        steps += 1;
        let at = |e: String| format!("line {}: {line}: {e}", i + 1);
        let w = running.as_ref().expect("a running witness");
        if line == "restart" {
            running.take().unwrap().stop().await;
            running = Some(env.start(&keys).await);
            continue;
        }
        let (verb, rest) = line.split_once(' ').ok_or_else(|| at("no step".into()))?;
        let (req, want) = rest.split_once("->").ok_or_else(|| at("no -> expectation".into()))?;
        let want: Vec<&str> = want.split_whitespace().collect();
        match verb {
            "post" => {
                let (answer, note_body) = post(&env, &keys, w, req).await.map_err(at)?;
                check(&keys, &note_body, &answer, &want).map_err(at)?;
            }
            "concurrent" => {
                let (a, b) = req.split_once('|').ok_or_else(|| at("concurrent needs A | B".into()))?;
                let (ra, rb) = tokio::join!(post(&env, &keys, w, a), post(&env, &keys, w, b));
                let (ra, rb) = (ra.map_err(at)?, rb.map_err(at)?);
                let expected: Vec<u16> = want[0].split(',').map(|s| s.parse().unwrap()).collect();
                let mut got = vec![ra.0.status, rb.0.status];
                got.sort();
                let mut sorted = expected.clone();
                sorted.sort();
                if got != sorted {
                    return Err(at(format!("statuses {got:?}, expected one each of {expected:?}")));
                }
                for (answer, note_body) in [&ra, &rb] {
                    if answer.status == 200 {
                        check_cosignature(&keys, note_body, answer).map_err(at)?;
                    }
                }
            }
            v => return Err(at(format!("unknown step {v}"))),
        }
    }
    running.take().unwrap().stop().await;
    if steps == 0 {
        return Err("the case has no steps".into());
    }
    Ok(())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

// ---------------------------------------------------------------- other trials

/// The specs' example vectors: isx reads and writes them as the specs do.
fn c2sp_vectors() -> Result<(), String> {
    let dir = data_dir().join("c2sp");
    let read = |name: &str| std::fs::read(dir.join(name)).unwrap();
    // tlog-witness: the example request parses, and the client builds it byte for byte.
    let request = read("tlog-witness-request.txt");
    let parsed = isx_audit::witness::parse(&request).map_err(|e| e.to_string())?;
    if parsed.old != 20852014 || parsed.proof.len() != 4 {
        return Err(format!("the example request: old {} and {} proof lines", parsed.old, parsed.proof.len()));
    }
    let proof: Vec<[u8; 32]> = parsed.proof.iter().map(|h| h.as_slice().try_into().unwrap()).collect();
    let rebuilt = isx_witness::client::body(parsed.old, &proof, std::str::from_utf8(&parsed.note).unwrap());
    if rebuilt != request {
        return Err("the client does not build the spec's example request".into());
    }
    // Its checkpoint is a checkpoint whose log isx does not know: 404 from a witness.
    let body = Body::from_bytes(Note::from_bytes(&parsed.note).unwrap().text()).unwrap();
    if (body.origin(), body.size()) != ("example.com/behind-the-sofa", 20852163) {
        return Err("the example checkpoint".into());
    }
    // tlog-witness: the example response is signature lines the client accepts.
    let response = String::from_utf8(read("tlog-witness-response.txt")).unwrap();
    isx_witness::client::check_cosignatures(&response)?;
    // tlog-cosignature: the signed message for the example checkpoint at its time.
    let cosigned = String::from_utf8(read("tlog-cosignature-checkpoint.txt")).unwrap();
    let (note_body, sigs) = cosigned.split_once("\n\n").unwrap();
    let note_body = format!("{note_body}\n");
    let message = isx_audit::cosignature::message(1679315147, note_body.as_bytes());
    if message != read("tlog-cosignature-message.txt") {
        return Err("the cosignature/v1 signed message is not the spec's".into());
    }
    // The example cosignature carries that time: key ID, then the big-endian timestamp.
    let line = sigs.lines().find(|l| l.starts_with("\u{2014} witness.example.com/w1 ")).unwrap();
    let sig = base64::engine::general_purpose::STANDARD.decode(line.rsplit(' ').next().unwrap()).unwrap();
    if isx_audit::cosignature::timestamp(&sig[4..]) != Some(1679315147) {
        return Err(format!("the example cosignature's timestamp: {:?}", isx_audit::cosignature::timestamp(&sig[4..])));
    }
    // RFC 6962: the empty tree's root, which a size-0 checkpoint must carry.
    let empty = ring::digest::digest(&ring::digest::SHA256, b"");
    if hex(empty.as_ref()) != "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" {
        return Err("the empty tree hash".into());
    }
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The client the gateway calls: each answer as its typed result.
async fn client_trial() -> Result<(), String> {
    let keys = Keys::new();
    let env = Env::new();
    let running = env.start(&keys).await;
    let client = isx_witness::Client::new(&env.ca, Duration::from_secs(5)).map_err(|e| e.to_string())?;
    let url = format!("https://127.0.0.1:{}", running.addr.port());
    let note = |size: u64, tree: &str| {
        let p = Post::parse(&[&format!("size={size}"), &format!("tree={tree}")]).unwrap();
        let (text, note) = p.note(&keys).unwrap();
        (text, String::from_utf8(note).unwrap())
    };
    let (text8, note8) = note(8, "main");
    let lines = client.add_checkpoint(&url, 0, &[], &note8).await.map_err(|e| format!("first: {e}"))?;
    check_cosignature(&keys, &text8, &Answer { status: 200, content_type: String::new(), body: lines.into_bytes() })?;
    // Kept alive: the second call goes over the same connection, with a path prefix of "/".
    let (_, note13) = note(13, "main");
    client
        .add_checkpoint(&format!("{url}/"), 8, &keys.main.proof(8, 13), &note13)
        .await
        .map_err(|e| format!("extension: {e}"))?;
    match client.add_checkpoint(&url, 8, &keys.main.proof(8, 13), &note13).await {
        Err(AddError::Conflict { size: 13 }) => {}
        other => return Err(format!("a stale old: {other:?}")),
    }
    let (_, fork13) = note(13, "fork");
    match client.add_checkpoint(&url, 13, &[], &fork13).await {
        Err(AddError::Refused { status: 422, message }) if message.contains("fork") => {}
        other => return Err(format!("a fork: {other:?}")),
    }
    // Another prefix path is a 404 from this witness, reported as a refusal.
    match client.add_checkpoint(&format!("{url}/w1"), 13, &[], &note13).await {
        Err(AddError::Refused { status: 404, .. }) => {}
        other => return Err(format!("another path: {other:?}")),
    }
    // The name in the certificate is checked: "localhost" is in it, a stranger's name is not.
    let by_name = format!("https://localhost:{}", running.addr.port());
    client.add_checkpoint(&by_name, 13, &[], &note13).await.map_err(|e| format!("by localhost: {e}"))?;
    running.stop().await;
    // Nobody listening: unreachable, with the address.
    match client.add_checkpoint(&url, 13, &[], &note13).await {
        Err(e @ AddError::Unreachable(_)) if e.to_string().contains("cannot reach the witness") => {}
        other => return Err(format!("a witness that is down: {other:?}")),
    }
    // A listener that never answers: the timeout.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_url = format!("https://127.0.0.1:{}", silent.local_addr().unwrap().port());
    let quick = isx_witness::Client::new(&env.ca, Duration::from_millis(300)).unwrap();
    match quick.add_checkpoint(&silent_url, 0, &[], &note8).await {
        Err(AddError::Timeout) => {}
        other => return Err(format!("a silent witness: {other:?}")),
    }
    for bad in ["http://127.0.0.1:1", "127.0.0.1:7460"] {
        if !matches!(client.add_checkpoint(bad, 0, &[], &note8).await, Err(AddError::Unreachable(_))) {
            return Err(format!("{bad} is not a witness URL"));
        }
    }
    // Another CA's witness is refused: a client trusting a different CA.
    let other = Env::new();
    let stranger_client = isx_witness::Client::new(&other.ca, Duration::from_secs(5)).unwrap();
    let running = env.start(&keys).await;
    let url = format!("https://127.0.0.1:{}", running.addr.port());
    let refused = stranger_client.add_checkpoint(&url, 13, &[], &note13).await;
    running.stop().await;
    match refused {
        Err(AddError::Unreachable(m)) if m.to_lowercase().contains("certificate") => Ok(()),
        other => Err(format!("a witness whose certificate another CA issued: {other:?}")),
    }
}

/// Refusals are counted and the last one is readable, for an agency to show.
async fn refusals_trial() -> Result<(), String> {
    let keys = Keys::new();
    let env = Env::new();
    let running = env.start(&keys).await;
    let expect = |got: u64, want: u64, what: &str| {
        if got == want { Ok(()) } else { Err(format!("{what}: {got} refusals, expected {want}")) }
    };
    expect(running.witness.refusals(), 0, "at start")?;
    post(&env, &keys, &running, "old=0 size=8").await?;
    expect(running.witness.refusals(), 0, "after a cosignature")?;
    post(&env, &keys, &running, "old=0 size=13").await?;
    expect(running.witness.refusals(), 1, "after a 409")?;
    post(&env, &keys, &running, "old=8 size=8 tree=fork").await?;
    expect(running.witness.refusals(), 2, "after a fork")?;
    let last = running.witness.last_refusal().ok_or("no last refusal")?;
    if !(last.contains(ORIGIN) && last.contains("422") && last.contains("fork")) {
        return Err(format!("the last refusal names the origin, the status and the reason: {last}"));
    }
    // Not HTTP-level mistakes: they refuse no checkpoint.
    post(&env, &keys, &running, "method=GET").await?;
    expect(running.witness.refusals(), 2, "after a GET")?;
    running.stop().await;
    Ok(())
}

/// A client that sends part of its headers and stops is cut off.
async fn slow_client_trial() -> Result<(), String> {
    let keys = Keys::new();
    let mut env = Env::new();
    env.limits = Limits { read: Duration::from_millis(300), ..Limits::default() };
    let running = env.start(&keys).await;
    let mut tls = connect(&env, running.addr).await;
    tls.write_all(b"POST /add-checkpoint HTTP/1.1\r\nhost: 127.0.0.1\r\n").await.unwrap();
    tls.flush().await.unwrap();
    let mut buf = [0u8; 1024];
    let started = std::time::Instant::now();
    // The witness must close (or answer 408) well before LIMIT.
    let outcome = tokio::time::timeout(LIMIT, async {
        loop {
            match tls.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    if outcome.is_err() {
        return Err("a client that stops mid-headers holds the connection".into());
    }
    // And a body that never arrives.
    let mut tls = connect(&env, running.addr).await;
    tls.write_all(b"POST /add-checkpoint HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-length: 100\r\n\r\nold 0\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    let outcome = tokio::time::timeout(LIMIT, async {
        loop {
            match tls.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    if outcome.is_err() {
        return Err("a client whose body never arrives holds the connection".into());
    }
    if !got.is_empty() && parse_answer(&got).status != 408 {
        return Err(format!("a body that never arrives: {}", String::from_utf8_lossy(&got)));
    }
    let took = started.elapsed();
    running.stop().await;
    if took > Duration::from_secs(5) {
        return Err(format!("cut off only after {took:?}"));
    }
    Ok(())
}

fn main() {
    let args = Arguments::from_args();
    let dir = data_dir().join("witness");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "case"))
        .collect();
    files.sort();
    assert!(files.len() >= 20, "the conformance cases are in {}", dir.display());
    let mut trials: Vec<Trial> = files
        .into_iter()
        .map(|path: PathBuf| {
            let name = format!("case::{}", path.file_stem().unwrap().to_string_lossy());
            Trial::test(name, move || {
                let text = std::fs::read_to_string(&path).unwrap();
                runtime().block_on(run_case(&text)).map_err(|e| Failed::from(format!("{}: {e}", show(&path))))
            })
        })
        .collect();
    trials.push(Trial::test("c2sp-vectors", || c2sp_vectors().map_err(Failed::from)));
    trials.push(Trial::test("client", || runtime().block_on(client_trial()).map_err(Failed::from)));
    trials.push(Trial::test("refusals-are-reported", || runtime().block_on(refusals_trial()).map_err(Failed::from)));
    trials
        .push(Trial::test("slow-client-is-cut-off", || runtime().block_on(slow_client_trial()).map_err(Failed::from)));
    libtest_mimic::run(&args, trials).exit();
}

fn show(path: &Path) -> String {
    path.strip_prefix(env!("CARGO_MANIFEST_DIR")).unwrap_or(path).display().to_string()
}
