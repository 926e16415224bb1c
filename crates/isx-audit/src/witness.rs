//! The decision of a C2SP `tlog-witness` `add-checkpoint` call, without HTTP
//! or storage: read the request body, check it against the logs the witness
//! knows and the latest tree head it cosigned for the origin, and say either
//! the new head to persist (then cosign) or the answer the spec prescribes.
//!
//! [`Store`] keeps the latest cosigned head per origin, checked and
//! persisted (fsynced) under one lock. The HTTP server around them (`isx
//! witness`, and the agencies as witnesses) is to be built on these; the
//! spec's conformance cases are the tests here.
//!
//! | case | answer |
//! |---|---|
//! | body does not parse, more than 63 proof lines, `old` above the size | 400 |
//! | no signature of a key trusted for the origin, or one that fails | 403 |
//! | origin unknown | 404 |
//! | `old` is not the size last cosigned (0 if none) | 409, that size |
//! | size 0 with another root, proof with `old 0`, proof fails, same size with another root | 422 |

use signed_note::{Note, NoteError, StandardVerifier, Verifier, VerifierList};
use tlog_tiles::checkpoint::Checkpoint as Body;

use crate::checkpoint::Verified;
use crate::verify::{self, VerifyError};

/// Most consistency proof lines a request may carry (the spec's limit).
pub const MAX_PROOF_LINES: usize = 63;

/// Largest request body read.
pub const MAX_BODY: usize = 64 * 1024;

/// A log the witness knows: its origin and the keys that sign its checkpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownLog {
    /// The checkpoint origin line.
    pub origin: String,
    /// Its signed-note verifier keys.
    pub keys: Vec<String>,
}

/// The tree head last cosigned for an origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    /// Tree size.
    pub size: u64,
    /// Root hash.
    pub root: [u8; 32],
}

/// A parsed `add-checkpoint` body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddCheckpoint {
    /// The size of the previous checkpoint the client names.
    pub old: u64,
    /// The consistency proof from `old` to the checkpoint.
    pub proof: Vec<Vec<u8>>,
    /// The signed checkpoint note.
    pub note: Vec<u8>,
}

/// What the witness answers instead of a cosignature.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// 400: the request is malformed.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// 403: no trusted signature, or a trusted key's signature fails.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// 404: the origin is not a log this witness knows.
    #[error("unknown log origin {0:?}")]
    UnknownLog(String),
    /// 409: `old` is not the size the witness last cosigned.
    #[error("conflict: the witness last cosigned size {size}")]
    Conflict {
        /// The size of the latest cosigned checkpoint.
        size: u64,
    },
    /// 422: the checkpoint is not consistent with what the witness cosigned.
    #[error("unprocessable: {0}")]
    Unprocessable(String),
}

impl Refusal {
    /// The HTTP status the spec gives this answer.
    pub fn status(&self) -> u16 {
        match self {
            Self::BadRequest(_) => 400,
            Self::Forbidden(_) => 403,
            Self::UnknownLog(_) => 404,
            Self::Conflict { .. } => 409,
            Self::Unprocessable(_) => 422,
        }
    }

    /// The response body: for 409 the size and a newline (`text/x.tlog.size`).
    pub fn body(&self) -> String {
        match self {
            Self::Conflict { size } => format!("{size}\n"),
            other => format!("{other}\n"),
        }
    }
}

/// Reads an `add-checkpoint` body: `old N`, proof lines, an empty line, the note.
pub fn parse(body: &[u8]) -> Result<AddCheckpoint, Refusal> {
    use base64::Engine;
    let bad = |m: &str| Refusal::BadRequest(m.to_owned());
    if body.len() > MAX_BODY {
        return Err(bad("the body is larger than the witness reads"));
    }
    let text = std::str::from_utf8(body).map_err(|_| bad("the body is not UTF-8"))?;
    let (first, mut rest) = text.split_once('\n').ok_or_else(|| bad("no old size line"))?;
    let old = first.strip_prefix("old ").ok_or_else(|| bad("the first line is not `old N`"))?;
    if old.is_empty() || (old.len() > 1 && old.starts_with('0')) || !old.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad("the old size is not a decimal without leading zeroes"));
    }
    let old: u64 = old.parse().map_err(|_| bad("the old size is out of range"))?;
    let mut proof = Vec::new();
    loop {
        let (line, after) = rest.split_once('\n').ok_or_else(|| bad("no empty line before the checkpoint"))?;
        rest = after;
        if line.is_empty() {
            break;
        }
        if proof.len() == MAX_PROOF_LINES {
            return Err(bad("more than 63 consistency proof lines"));
        }
        let hash =
            base64::engine::general_purpose::STANDARD.decode(line).map_err(|_| bad("a proof line is not base64"))?;
        if hash.len() != 32 {
            return Err(bad("a proof line is not a 32-byte hash"));
        }
        proof.push(hash);
    }
    Ok(AddCheckpoint { old, proof, note: rest.as_bytes().to_vec() })
}

/// Decides a request for a witness that knows `logs`, whose latest cosigned
/// head for each origin `latest` gives. On success returns the verified
/// checkpoint and its note body: persist the head, then cosign the body.
pub fn decide(
    req: &AddCheckpoint,
    logs: &[KnownLog],
    latest: impl FnOnce(&str) -> Option<Head>,
) -> Result<(Verified, Vec<u8>), Refusal> {
    let note =
        Note::from_bytes(&req.note).map_err(|_| Refusal::BadRequest("the checkpoint is not a signed note".into()))?;
    let body = Body::from_bytes(note.text()).map_err(|e| Refusal::BadRequest(format!("the checkpoint body: {e}")))?;
    let origin = body.origin().to_owned();
    let log = logs.iter().find(|l| l.origin == origin).ok_or_else(|| Refusal::UnknownLog(origin.clone()))?;
    let verifiers: Vec<Box<dyn Verifier>> = log
        .keys
        .iter()
        .filter_map(|k| StandardVerifier::new(k).ok())
        .map(|v| Box::new(v) as Box<dyn Verifier>)
        .collect();
    match note.verify(&VerifierList::new(verifiers)) {
        Ok(_) => {}
        Err(NoteError::UnverifiedNote) => {
            return Err(Refusal::Forbidden(format!("no signature of a key trusted for {origin}")));
        }
        Err(e) => return Err(Refusal::Forbidden(e.to_string())),
    }
    let new = Verified { origin: origin.clone(), size: body.size(), root: body.hash().0 };
    if req.old > new.size {
        return Err(Refusal::BadRequest(format!("old size {} is above the checkpoint's {}", req.old, new.size)));
    }
    let last = latest(&origin);
    let last_size = last.map_or(0, |h| h.size);
    if req.old != last_size {
        return Err(Refusal::Conflict { size: last_size });
    }
    let empty: [u8; 32] = <sha2::Sha256 as sha2::Digest>::digest([]).into();
    if new.size == 0 && new.root != empty {
        return Err(Refusal::Unprocessable("a tree of size 0 must have the empty tree's root".into()));
    }
    if req.old == 0 && !req.proof.is_empty() {
        return Err(Refusal::Unprocessable("a proof from size 0 must be empty".into()));
    }
    let old = Verified { origin: origin.clone(), size: req.old, root: last.map_or(empty, |h| h.root) };
    verify::consistency(&old, &new, &req.proof).map_err(|e| {
        Refusal::Unprocessable(match e {
            VerifyError::Fork { size } => format!("fork: another root at size {size}"),
            other => other.to_string(),
        })
    })?;
    Ok((new, note.text().to_vec()))
}

/// Why the witness's state could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The state directory or a head file failed.
    #[error("witness state {path}: {source}")]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A head file does not read as `size` and a hex root.
    #[error("witness state {0}: not a tree head (a size line and a 64-digit hex root)")]
    Corrupt(std::path::PathBuf),
}

/// The latest cosigned head per origin, one small file each, written
/// (temporary file, fsync, rename, fsync of the directory) before the
/// cosignature is returned. [`Store::add`] checks and persists under one
/// lock, so two requests cannot roll each other back (the spec's race).
#[derive(Debug)]
pub struct Store {
    dir: std::path::PathBuf,
    lock: std::sync::Mutex<()>,
}

impl Store {
    /// Opens (creating) the state directory `dir`, mode 0700.
    pub fn open(dir: &std::path::Path) -> Result<Self, StateError> {
        let io = |source| StateError::Io { path: dir.to_path_buf(), source };
        std::fs::create_dir_all(dir).map_err(io)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io)?;
        }
        Ok(Self { dir: dir.to_path_buf(), lock: std::sync::Mutex::new(()) })
    }

    fn path(&self, origin: &str) -> std::path::PathBuf {
        // The origin is the log's name, not a file name: hash it.
        let digest = <sha2::Sha256 as sha2::Digest>::digest(origin.as_bytes());
        self.dir.join(format!("{}.head", hex::encode(&digest[..16])))
    }

    /// The latest head cosigned for `origin`, if any.
    pub fn latest(&self, origin: &str) -> Result<Option<Head>, StateError> {
        let path = self.path(origin);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(StateError::Io { path, source }),
        };
        let mut lines = text.lines();
        let (Some(o), Some(size), Some(root)) = (lines.next(), lines.next(), lines.next()) else {
            return Err(StateError::Corrupt(path));
        };
        let size: u64 = size.parse().map_err(|_| StateError::Corrupt(path.clone()))?;
        let root: [u8; 32] = hex::decode(root)
            .ok()
            .and_then(|r| r.try_into().ok())
            .filter(|_| o == origin)
            .ok_or_else(|| StateError::Corrupt(path.clone()))?;
        Ok(Some(Head { size, root }))
    }

    fn persist(&self, origin: &str, head: Head) -> Result<(), StateError> {
        use std::io::Write;
        let path = self.path(origin);
        let tmp = path.with_extension("tmp");
        let io = |path: &std::path::Path| {
            let path = path.to_path_buf();
            move |source| StateError::Io { path, source }
        };
        let mut f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
        f.write_all(format!("{origin}\n{}\n{}\n", head.size, hex::encode(head.root)).as_bytes()).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io(&path))?;
        std::fs::File::open(&self.dir).and_then(|d| d.sync_all()).map_err(io(&self.dir))?;
        Ok(())
    }

    /// Decides `req` for `logs` against the stored heads and, if it is
    /// accepted, persists the new head (durably) before returning the
    /// checkpoint and its note body to cosign.
    pub fn add(
        &self,
        req: &AddCheckpoint,
        logs: &[KnownLog],
    ) -> Result<Result<(Verified, Vec<u8>), Refusal>, StateError> {
        let _held = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut failed = None;
        let decided = decide(req, logs, |origin| match self.latest(origin) {
            Ok(h) => h,
            Err(e) => {
                failed = Some(e);
                None
            }
        });
        if let Some(e) = failed {
            return Err(e);
        }
        if let Ok((v, _)) = &decided {
            self.persist(&v.origin, Head { size: v.size, root: v.root })?;
        }
        Ok(decided)
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine;
    use signed_note::{Signer, StandardSigner};
    use tlog_tiles::tlog::{self, Hash};

    use super::*;

    const ORIGIN: &str = "isx.test/audit";

    /// The log: leaves 0..n, its key, and checkpoints and proofs over it.
    struct Log {
        signer: StandardSigner,
        vkey: String,
        hashes: Vec<Hash>,
    }

    impl tlog::HashReader for Log {
        fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog::Error> {
            Ok(indexes.iter().map(|&i| self.hashes[i as usize]).collect())
        }
    }

    impl Log {
        fn new(leaves: u64, seed: u8) -> Self {
            let mut rng = SeededRng(seed);
            let (skey, vkey) = signed_note::generate_key(&mut rng, ORIGIN);
            let mut log = Self { signer: StandardSigner::new(&skey).unwrap(), vkey, hashes: vec![] };
            for i in 0..leaves {
                let stored = tlog::stored_hashes(i, format!("leaf {i} {seed}").as_bytes(), &log).unwrap();
                log.hashes.extend(stored);
            }
            log
        }

        fn root(&self, n: u64) -> [u8; 32] {
            tlog::tree_hash(n, self).unwrap().0
        }

        fn note(&self, n: u64, root: [u8; 32], signer: &dyn Signer) -> Vec<u8> {
            let body = Body::new(ORIGIN, n, Hash(root), "").unwrap();
            let mut note = Note::new(&body.to_bytes(), &[]).unwrap();
            note.add_sigs(&[signer]).unwrap();
            note.to_bytes()
        }

        fn request(&self, old: u64, n: u64) -> Vec<u8> {
            let proof: Vec<String> = if old == 0 || old == n {
                vec![]
            } else {
                tlog::prove_tree(n, old, self)
                    .unwrap()
                    .iter()
                    .map(|h| base64::engine::general_purpose::STANDARD.encode(h.0))
                    .collect()
            };
            let mut body = format!("old {old}\n");
            for p in proof {
                body.push_str(&p);
                body.push('\n');
            }
            body.push('\n');
            [body.into_bytes(), self.note(n, self.root(n), &self.signer)].concat()
        }

        fn known(&self) -> Vec<KnownLog> {
            vec![KnownLog { origin: ORIGIN.into(), keys: vec![self.vkey.clone()] }]
        }
    }

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

    fn ask(log: &Log, body: &[u8], latest: Option<Head>) -> Result<Verified, Refusal> {
        let req = parse(body)?;
        decide(&req, &log.known(), |o| (o == ORIGIN).then_some(latest).flatten()).map(|(v, _)| v)
    }

    fn head(log: &Log, n: u64) -> Option<Head> {
        Some(Head { size: n, root: log.root(n) })
    }

    #[test]
    fn the_conformance_cases() {
        let log = Log::new(20, 1);
        let fork = Log::new(20, 2);
        let stranger = Log::new(20, 3);
        let first = ask(&log, &log.request(0, 8), None).unwrap();
        assert_eq!((first.size, first.root), (8, log.root(8)));
        let cases: Vec<(&str, Vec<u8>, Option<Head>, u16)> = vec![
            ("a good extension", log.request(8, 13), head(&log, 8), 200),
            ("the same checkpoint again", log.request(13, 13), head(&log, 13), 200),
            ("a stale old size", log.request(8, 13), head(&log, 10), 409),
            ("an old size where the witness has none", log.request(8, 13), None, 409),
            ("a fresh witness asked from 0", log.request(0, 13), head(&log, 8), 409),
            (
                "old above the size",
                {
                    let mut b = log.request(8, 8);
                    b.splice(0..5, b"old 9".iter().copied());
                    b
                },
                head(&log, 9),
                400,
            ),
            (
                "a fork at the same size",
                fork.request(8, 8).pipe(|b| {
                    // The fork's checkpoint, signed with the log's key.
                    let mut b = b;
                    let cut = b.windows(2).position(|w| w == b"\n\n").unwrap() + 2;
                    b.truncate(cut);
                    b.extend(log.note(8, fork.root(8), &log.signer));
                    b
                }),
                head(&log, 8),
                422,
            ),
            (
                "a proof that does not verify",
                log.request(8, 13).pipe(|mut b| {
                    b[6] = if b[6] == b'A' { b'B' } else { b'A' };
                    b
                }),
                head(&log, 8),
                422,
            ),
            (
                "a proof with old 0",
                {
                    let mut b = log.request(8, 13);
                    let proof_start = b.iter().position(|c| *c == b'\n').unwrap();
                    b.splice(0..proof_start, b"old 0".iter().copied());
                    b
                },
                None,
                422,
            ),
            ("a key the witness does not trust", stranger.request(0, 4), None, 403),
            (
                "a trusted key's signature that fails",
                log.request(0, 4).pipe(|b| {
                    let text = String::from_utf8(b).unwrap();
                    text.replacen("\n4\n", "\n5\n", 1).into_bytes()
                }),
                None,
                403,
            ),
            (
                "a size-0 checkpoint with another root",
                {
                    let mut b = b"old 0\n\n".to_vec();
                    b.extend(log.note(0, [1; 32], &log.signer));
                    b
                },
                None,
                422,
            ),
            (
                "a size-0 checkpoint with the empty tree's root",
                {
                    let mut b = b"old 0\n\n".to_vec();
                    b.extend(log.note(0, <sha2::Sha256 as sha2::Digest>::digest([]).into(), &log.signer));
                    b
                },
                None,
                200,
            ),
            ("no empty line", b"old 0\n".to_vec(), None, 400),
            (
                "a leading zero",
                log.request(8, 13).pipe(|mut b| {
                    b.splice(0..5, b"old 08".iter().copied());
                    b
                }),
                head(&log, 8),
                400,
            ),
        ];
        for (what, body, latest, want) in cases {
            let got = ask(&log, &body, latest).map(|_| 200).unwrap_or_else(|r| r.status());
            assert_eq!(got, want, "{what}: {:?}", ask(&log, &body, latest));
        }
        let other_origin = vec![KnownLog { origin: "isx.other/audit".into(), keys: vec![log.vkey.clone()] }];
        let unknown = decide(&parse(&log.request(0, 4)).unwrap(), &other_origin, |_| None).unwrap_err();
        assert_eq!((unknown.status(), unknown), (404, Refusal::UnknownLog(ORIGIN.into())));
        let conflict = ask(&log, &log.request(8, 13), head(&log, 10)).unwrap_err();
        assert_eq!(conflict.body(), "10\n");
    }

    #[test]
    fn a_body_past_the_limit_is_refused_before_it_is_read() {
        let big = parse(&vec![b'x'; MAX_BODY + 1]).unwrap_err();
        assert!(big.to_string().contains("larger"), "{big}");
        let at_limit = parse(&vec![b'x'; MAX_BODY]).unwrap_err();
        assert!(!at_limit.to_string().contains("larger"), "{at_limit}");
    }

    #[test]
    fn a_state_file_that_cannot_be_read_is_an_error_not_a_fresh_log() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        std::fs::create_dir(store.path(ORIGIN)).unwrap();
        assert!(matches!(store.latest(ORIGIN), Err(StateError::Io { .. })));
    }

    #[test]
    fn more_than_63_proof_lines_are_refused() {
        let line = base64::engine::general_purpose::STANDARD.encode([0u8; 32]);
        let body = format!("old 1\n{}\n", format!("{line}\n").repeat(64));
        assert_eq!(parse(body.as_bytes()).unwrap_err().status(), 400);
        let body = format!("old 1\n{}\n", format!("{line}\n").repeat(63));
        assert_eq!(parse(body.as_bytes()).unwrap().proof.len(), 63);
    }

    #[test]
    fn the_store_keeps_the_latest_head_across_opens_and_refuses_a_rollback() {
        let log = Log::new(20, 1);
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("state")).unwrap();
        let add = |s: &Store, body: Vec<u8>| s.add(&parse(&body).unwrap(), &log.known()).unwrap().map(|(v, _)| v.size);
        assert_eq!(add(&store, log.request(0, 8)), Ok(8));
        assert_eq!(add(&store, log.request(8, 13)), Ok(13));
        drop(store);
        let store = Store::open(&dir.path().join("state")).unwrap();
        assert_eq!(store.latest(ORIGIN).unwrap(), head(&log, 13));
        // A log restored to size 8 is told what the witness has seen.
        assert_eq!(add(&store, log.request(0, 8)), Err(Refusal::Conflict { size: 13 }));
        // A refused request changes nothing.
        assert_eq!(store.latest(ORIGIN).unwrap(), head(&log, 13));
        std::fs::write(store.path(ORIGIN), "garbage").unwrap();
        assert!(matches!(store.latest(ORIGIN), Err(StateError::Corrupt(_))));
    }

    trait Pipe: Sized {
        fn pipe<T>(self, f: impl FnOnce(Self) -> T) -> T {
            f(self)
        }
    }
    impl<T> Pipe for T {}
}
