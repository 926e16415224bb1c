//! C2SP `tlog-policy`: which logs and witnesses a checkpoint is checked
//! against, and the quorum of cosignatures that makes it count.
//!
//! A policy file is line based:
//!
//! ```text
//! log <vkey> [<url>]
//! witness <name> <vkey> [<url>]
//! group <name> all|any|<k> <member>...
//! quorum <name>|none
//! ```
//!
//! Comments start with `#`; names are defined before they are used, each
//! member counts once per group, and exactly one `quorum` line is given.
//! [`WitnessPolicy::check`] verifies a cosigned checkpoint: the signature of
//! a listed log whose key name is the checkpoint's origin, every cosignature
//! of a listed witness (a bad one is an error, not an absence), and the
//! quorum over those that verified. The gateway reads the same file to know
//! whom to ask (the witnesses' URLs) and when a checkpoint counts.

use std::collections::BTreeSet;
use std::path::Path;

use base64::Engine;
use signed_note::{Note, NoteError, StandardVerifier, Verifier, VerifierList};
use tlog_tiles::checkpoint::Checkpoint as Body;

use crate::checkpoint::Verified;
use crate::cosignature::{self, CosignatureVerifier};

/// Most logs, witnesses or groups one policy may define (the spec asks for at least 32).
pub const MAX_ENTRIES: usize = 256;

/// Why a policy file is not usable, or a checkpoint does not satisfy it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// The file could not be read.
    #[error("cannot read the witness policy {path}: {message}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        message: String,
    },
    /// A line does not follow the format.
    #[error("witness policy line {line}: {message}")]
    Line {
        /// 1-based line number.
        line: usize,
        /// What is wrong, and the fix.
        message: String,
    },
    /// No `quorum` line.
    #[error("the witness policy has no `quorum` line (add `quorum <witness or group>`, or `quorum none`)")]
    NoQuorum,
    /// The checkpoint does not parse.
    #[error("the checkpoint is malformed: {0}")]
    Malformed(String),
    /// No listed log signed the checkpoint for its origin.
    #[error(
        "the checkpoint for {origin} is not signed by a log the witness policy lists (its `log` lines name {listed})"
    )]
    UnknownLog {
        /// The checkpoint's origin.
        origin: String,
        /// The origins the policy lists.
        listed: String,
    },
    /// A listed key's signature does not verify.
    #[error("the signature of {0} on the checkpoint does not verify")]
    BadSignature(String),
    /// Too few witnesses cosigned.
    #[error("the checkpoint at size {size} is cosigned by {got} but the quorum needs {needed}")]
    Quorum {
        /// The tree size.
        size: u64,
        /// Who cosigned (names), or "no listed witness".
        got: String,
        /// The quorum, described.
        needed: String,
    },
}

/// A log the policy lists.
#[derive(Debug, Clone)]
pub struct PolicyLog {
    /// Its signed-note verifier key; the key name is the origin.
    pub vkey: String,
    /// Its origin (the key's name).
    pub origin: String,
    /// Where to reach it, if given.
    pub url: Option<String>,
}

/// A witness the policy lists.
#[derive(Debug, Clone)]
pub struct PolicyWitness {
    /// Its name in the policy (not the key name).
    pub name: String,
    /// Its cosignature verifier key.
    pub vkey: String,
    /// Its submission prefix, if given.
    pub url: Option<String>,
    verifier: CosignatureVerifier,
}

impl PolicyWitness {
    /// The timestamp of this witness's cosignature on `note`, `None` if it
    /// has none; an error if it has one that does not verify.
    pub fn cosigned(&self, note: &Note) -> Result<Option<u64>, PolicyError> {
        let list = VerifierList::new(vec![Box::new(self.verifier.clone()) as Box<dyn Verifier>]);
        match note.verify(&list) {
            Ok((verified, _)) => Ok(verified.first().and_then(|s| cosignature::timestamp(s.signature()))),
            Err(NoteError::UnverifiedNote) => Ok(None),
            Err(_) => Err(PolicyError::BadSignature(format!("witness {}", self.name))),
        }
    }
}

#[derive(Debug, Clone)]
enum Member {
    Witness(usize),
    Group(usize),
}

#[derive(Debug, Clone)]
struct Group {
    name: String,
    k: usize,
    members: Vec<Member>,
}

/// A parsed policy.
#[derive(Debug, Clone)]
pub struct WitnessPolicy {
    logs: Vec<PolicyLog>,
    witnesses: Vec<PolicyWitness>,
    groups: Vec<Group>,
    /// `None`: `quorum none`.
    quorum: Option<Member>,
}

/// What a checked checkpoint carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Witnessed {
    /// The checkpoint, its log signature verified.
    pub checkpoint: Verified,
    /// The policy's witnesses whose cosignature verified, with its timestamp.
    pub cosigners: Vec<(String, u64)>,
}

/// The key material of a vkey (after the type byte's position is kept: the
/// whole decoded part), to find duplicates that differ only in name or id.
fn key_material(vkey: &str) -> Option<Vec<u8>> {
    let b64 = vkey.splitn(3, '+').nth(2)?;
    base64::engine::general_purpose::STANDARD.decode(b64).ok()
}

fn words(line: &str) -> Vec<&str> {
    line.split([' ', '\t']).filter(|w| !w.is_empty()).collect()
}

impl WitnessPolicy {
    /// Reads a policy file.
    pub fn load(path: &Path) -> Result<Self, PolicyError> {
        let text = std::fs::read(path)
            .map_err(|e| PolicyError::Read { path: path.display().to_string(), message: e.to_string() })?;
        Self::parse(&text)
    }

    /// Parses a policy.
    pub fn parse(text: &[u8]) -> Result<Self, PolicyError> {
        let mut policy = Self { logs: vec![], witnesses: vec![], groups: vec![], quorum: None };
        let mut quorum_seen = false;
        let mut names: BTreeSet<String> = BTreeSet::new();
        let mut keys: BTreeSet<Vec<u8>> = BTreeSet::new();
        for (i, raw) in text.split(|&b| b == b'\n').enumerate() {
            let line = i + 1;
            let err = |message: String| PolicyError::Line { line, message };
            if let Some(b) = raw.iter().find(|&&b| b < 0x20 && b != b'\t' || b == 0x7f) {
                return Err(err(format!("control character {b:#04x} (only tab and newline are allowed)")));
            }
            let raw = String::from_utf8_lossy(raw);
            let trimmed = raw.trim_matches([' ', '\t']);
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let w = words(trimmed);
            match w[0] {
                "log" => {
                    let (vkey, url) = match w.len() {
                        2 => (w[1], None),
                        3 => (w[1], Some(w[2].to_owned())),
                        _ => return Err(err("`log <vkey> [<url>]` takes a key and at most a URL".into())),
                    };
                    StandardVerifier::new(vkey)
                        .map_err(|_| err(format!("{vkey:?} is not a signed-note Ed25519 verifier key")))?;
                    if !keys.insert(key_material(vkey).unwrap_or_default()) {
                        return Err(err("this key is listed twice (duplicate log or witness)".into()));
                    }
                    if policy.logs.len() == MAX_ENTRIES {
                        return Err(err(format!("more than {MAX_ENTRIES} logs")));
                    }
                    let origin = crate::keys::key_name(vkey).to_owned();
                    policy.logs.push(PolicyLog { vkey: vkey.to_owned(), origin, url });
                }
                "witness" => {
                    let (name, vkey, url) = match w.len() {
                        3 => (w[1], w[2], None),
                        4 => (w[1], w[2], Some(w[3].to_owned())),
                        _ => {
                            return Err(err("`witness <name> <vkey> [<url>]` takes a name, a key and a URL".into()));
                        }
                    };
                    if name == "none" || !names.insert(name.to_owned()) {
                        return Err(err(format!("the name {name:?} is already defined (or is `none`)")));
                    }
                    let verifier = CosignatureVerifier::new(vkey).map_err(|e| err(format!("witness {name}: {e}")))?;
                    if !keys.insert(key_material(vkey).unwrap_or_default()) {
                        return Err(err("this key is listed twice (duplicate log or witness)".into()));
                    }
                    if policy.witnesses.len() == MAX_ENTRIES {
                        return Err(err(format!("more than {MAX_ENTRIES} witnesses")));
                    }
                    policy.witnesses.push(PolicyWitness {
                        name: name.to_owned(),
                        vkey: vkey.to_owned(),
                        url,
                        verifier,
                    });
                }
                "group" => {
                    if w.len() < 4 {
                        return Err(err("`group <name> all|any|<k> <member>...` needs at least one member".into()));
                    }
                    let name = w[1];
                    let mut members = Vec::new();
                    let mut listed = BTreeSet::new();
                    for m in &w[3..] {
                        if !listed.insert(*m) {
                            return Err(err(format!("{m:?} is a member twice")));
                        }
                        members.push(policy.member(m).ok_or_else(|| {
                            err(format!("{m:?} is not a witness or group defined on an earlier line"))
                        })?);
                    }
                    let n = members.len();
                    let k = match w[2] {
                        "all" => n,
                        "any" => 1,
                        k if k.bytes().all(|b| b.is_ascii_digit()) => k
                            .parse::<usize>()
                            .ok()
                            .filter(|k| (1..=n).contains(k))
                            .ok_or_else(|| err(format!("threshold {k} is not between 1 and {n}")))?,
                        k => return Err(err(format!("threshold {k:?} is not `all`, `any` or a decimal number"))),
                    };
                    if name == "none" || !names.insert(name.to_owned()) {
                        return Err(err(format!("the name {name:?} is already defined (or is `none`)")));
                    }
                    if policy.groups.len() == MAX_ENTRIES {
                        return Err(err(format!("more than {MAX_ENTRIES} groups")));
                    }
                    policy.groups.push(Group { name: name.to_owned(), k, members });
                }
                "quorum" => {
                    if w.len() != 2 {
                        return Err(err("`quorum <name>` takes one name".into()));
                    }
                    if quorum_seen {
                        return Err(err("a second `quorum` line (a policy has exactly one)".into()));
                    }
                    quorum_seen = true;
                    policy.quorum = match w[1] {
                        "none" => None,
                        name => Some(policy.member(name).ok_or_else(|| {
                            err(format!("{name:?} is not a witness or group defined on an earlier line"))
                        })?),
                    };
                }
                other => {
                    return Err(err(format!("unknown keyword {other:?} (expected log, witness, group or quorum)")));
                }
            }
        }
        if !quorum_seen {
            return Err(PolicyError::NoQuorum);
        }
        Ok(policy)
    }

    fn member(&self, name: &str) -> Option<Member> {
        if let Some(i) = self.witnesses.iter().position(|w| w.name == name) {
            return Some(Member::Witness(i));
        }
        self.groups.iter().position(|g| g.name == name).map(Member::Group)
    }

    /// The logs it lists.
    pub fn logs(&self) -> &[PolicyLog] {
        &self.logs
    }

    /// The witnesses it lists.
    pub fn witnesses(&self) -> &[PolicyWitness] {
        &self.witnesses
    }

    /// True for `quorum none`: no cosignature is needed.
    pub fn needs_none(&self) -> bool {
        self.quorum.is_none()
    }

    fn holds(&self, member: &Member, cosigned: &BTreeSet<&str>) -> bool {
        match member {
            Member::Witness(i) => cosigned.contains(self.witnesses[*i].name.as_str()),
            Member::Group(g) => {
                let g = &self.groups[*g];
                g.members.iter().filter(|m| self.holds(m, cosigned)).count() >= g.k
            }
        }
    }

    /// Whether the witnesses named in `cosigned` (policy names) make the quorum.
    pub fn satisfied<'a>(&self, cosigned: impl IntoIterator<Item = &'a str>) -> bool {
        let set: BTreeSet<&str> = cosigned.into_iter().collect();
        self.quorum.as_ref().is_none_or(|q| self.holds(q, &set))
    }

    fn describe_member(&self, member: &Member) -> String {
        match member {
            Member::Witness(i) => self.witnesses[*i].name.clone(),
            Member::Group(g) => {
                let g = &self.groups[*g];
                let list: Vec<String> = g.members.iter().map(|m| self.describe_member(m)).collect();
                let n = list.len();
                let k = if g.k == n && n > 1 {
                    "all of".to_owned()
                } else if g.k == 1 && n > 1 {
                    "one of".to_owned()
                } else if n == 1 {
                    return list.join("");
                } else {
                    format!("{} of", g.k)
                };
                format!("{k} ({})", list.join(", "))
            }
        }
    }

    /// The quorum in words: `none`, `witness`, `2 of (a, b, c)`.
    pub fn describe_quorum(&self) -> String {
        self.quorum.as_ref().map_or_else(|| "none".to_owned(), |q| self.describe_member(q))
    }

    /// The verifier key of the log with `origin`, if the policy lists one.
    pub fn log_key(&self, origin: &str) -> Option<&str> {
        self.logs.iter().find(|l| l.origin == origin).map(|l| l.vkey.as_str())
    }

    /// The cosignatures on `note` that verify, by policy witness name with
    /// their timestamps; a listed witness's cosignature that does not
    /// verify is an error.
    pub fn cosigners(&self, note: &Note) -> Result<Vec<(String, u64)>, PolicyError> {
        let mut out = Vec::new();
        for w in &self.witnesses {
            if let Some(t) = w.cosigned(note)? {
                out.push((w.name.clone(), t));
            }
        }
        Ok(out)
    }

    /// Checks a cosigned checkpoint note: signed by a listed log for its
    /// origin, each listed witness's cosignature valid, the quorum met.
    pub fn check(&self, note: &str) -> Result<Witnessed, PolicyError> {
        let parsed = Note::from_bytes(note.as_bytes()).map_err(|e| PolicyError::Malformed(e.to_string()))?;
        let body = Body::from_bytes(parsed.text()).map_err(|e| PolicyError::Malformed(e.to_string()))?;
        let origin = body.origin().to_owned();
        let log = self.logs.iter().find(|l| l.origin == origin).ok_or_else(|| PolicyError::UnknownLog {
            origin: origin.clone(),
            listed: if self.logs.is_empty() {
                "none".into()
            } else {
                self.logs.iter().map(|l| l.origin.as_str()).collect::<Vec<_>>().join(", ")
            },
        })?;
        let verifier = StandardVerifier::new(&log.vkey).expect("checked when parsed");
        match parsed.verify(&VerifierList::new(vec![Box::new(verifier)])) {
            Ok(_) => {}
            Err(NoteError::UnverifiedNote) => {
                return Err(PolicyError::UnknownLog { origin: origin.clone(), listed: log.origin.clone() });
            }
            Err(_) => return Err(PolicyError::BadSignature(format!("log {origin}"))),
        }
        let cosigners = self.quorum_of(&parsed, body.size())?;
        Ok(Witnessed { checkpoint: Verified { origin, size: body.size(), root: body.hash().0 }, cosigners })
    }

    /// The cosignatures on `note` (a checkpoint of `size`) when they meet
    /// the quorum; the log's own signature is not looked at.
    pub fn quorum_of(&self, note: &Note, size: u64) -> Result<Vec<(String, u64)>, PolicyError> {
        let cosigners = self.cosigners(note)?;
        if !self.satisfied(cosigners.iter().map(|(n, _)| n.as_str())) {
            return Err(PolicyError::Quorum {
                size,
                got: if cosigners.is_empty() {
                    "no listed witness".into()
                } else {
                    cosigners.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(", ")
                },
                needed: self.describe_quorum(),
            });
        }
        Ok(cosigners)
    }
}

#[cfg(test)]
mod tests {
    use signed_note::{Signer, StandardSigner};
    use tlog_tiles::tlog::Hash;

    use super::*;
    use crate::cosignature::CosignatureSigner;

    struct Rng(u8);
    impl rand_core::RngCore for Rng {
        fn next_u32(&mut self) -> u32 {
            self.next_u64() as u32
        }
        fn next_u64(&mut self) -> u64 {
            let mut b = [0; 8];
            self.fill_bytes(&mut b);
            u64::from_le_bytes(b)
        }
        fn fill_bytes(&mut self, dest: &mut [u8]) {
            for d in dest {
                self.0 = self.0.wrapping_mul(31).wrapping_add(7);
                *d = self.0;
            }
        }
        fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
            self.fill_bytes(dest);
            Ok(())
        }
    }
    impl rand_core::CryptoRng for Rng {}

    fn log() -> (StandardSigner, String) {
        let (skey, vkey) = signed_note::generate_key(&mut Rng(1), "isx/test/audit");
        (StandardSigner::new(&skey).unwrap(), vkey)
    }

    fn witness(name: &str, seed: u8) -> CosignatureSigner {
        CosignatureSigner::new(name, &[seed; 32]).unwrap().at(1_700_000_000)
    }

    fn note(log: &StandardSigner, cosigners: &[&CosignatureSigner]) -> String {
        let body = Body::new("isx/test/audit", 5, Hash([3; 32]), "").unwrap();
        let mut n = Note::new(&body.to_bytes(), &[]).unwrap();
        let mut signers: Vec<&dyn Signer> = vec![log];
        signers.extend(cosigners.iter().map(|c| *c as &dyn Signer));
        n.add_sigs(&signers).unwrap();
        String::from_utf8(n.to_bytes()).unwrap()
    }

    fn policy(vkey: &str, quorum: &str) -> WitnessPolicy {
        let text = format!(
            "# test\nlog {vkey}\nwitness a {}\n  witness b {} https://b.example\nwitness c {}\ngroup two 2 a b c\ngroup one-of-ab any a b\n{quorum}\n",
            witness("wa", 1).verifier_key(),
            witness("wb", 2).verifier_key(),
            witness("wc", 3).verifier_key()
        );
        WitnessPolicy::parse(text.as_bytes()).unwrap()
    }

    #[test]
    fn quorum_of_groups() {
        let (signer, vkey) = log();
        let (a, b, c) = (witness("wa", 1), witness("wb", 2), witness("wc", 3));
        let p = policy(&vkey, "quorum two");
        assert_eq!(p.describe_quorum(), "2 of (a, b, c)");
        assert_eq!(p.witnesses()[1].url.as_deref(), Some("https://b.example"));
        assert!(matches!(p.check(&note(&signer, &[&a])), Err(PolicyError::Quorum { .. })));
        let ok = p.check(&note(&signer, &[&a, &c])).unwrap();
        assert_eq!(ok.cosigners, vec![("a".to_owned(), 1_700_000_000), ("c".to_owned(), 1_700_000_000)]);
        assert_eq!(ok.checkpoint.size, 5);
        let any = policy(&vkey, "quorum one-of-ab");
        assert!(any.check(&note(&signer, &[&b])).is_ok());
        assert!(any.check(&note(&signer, &[&c])).is_err());
        assert_eq!(any.describe_quorum(), "one of (a, b)");
        assert!(!any.needs_none() && !p.needs_none());
        let (ka, kb) = (witness("wa", 1).verifier_key(), witness("wb", 2).verifier_key());
        for (groups, quorum) in [
            ("group g all w1 w2", "all of (w1, w2)"),
            ("group g 2 w1 w2", "all of (w1, w2)"),
            ("group g 1 w1 w2", "one of (w1, w2)"),
            ("group g all w1", "w1"),
            ("group g any w1", "w1"),
            ("group h any w1 w2\ngroup g all h w1", "all of (one of (w1, w2), w1)"),
        ] {
            let text = format!("witness w1 {ka}\nwitness w2 {kb}\n{groups}\nquorum g\n");
            assert_eq!(WitnessPolicy::parse(text.as_bytes()).unwrap().describe_quorum(), quorum, "{groups}");
        }
        let none = policy(&vkey, "quorum none");
        assert!(none.needs_none());
        assert!(none.check(&note(&signer, &[])).is_ok());
        let single = policy(&vkey, "quorum c");
        assert!(single.check(&note(&signer, &[&c])).is_ok());
        assert!(single.check(&note(&signer, &[&a, &b])).is_err());
    }

    #[test]
    fn a_bad_cosignature_or_log_signature_is_an_error() {
        let (signer, vkey) = log();
        let p = policy(&vkey, "quorum two");
        let good = note(&signer, &[&witness("wa", 1), &witness("wb", 2)]);
        // Change the body: every signature fails.
        let forged = good.replacen("\n5\n", "\n6\n", 1);
        assert_eq!(p.check(&forged), Err(PolicyError::BadSignature("log isx/test/audit".into())));
        // A cosigner with the right name and id but another key.
        let impostor = CosignatureSigner::new("wa", &[9; 32]).unwrap();
        let n = note(&signer, &[&impostor]);
        // Another key has another id: it is simply not a's cosignature.
        assert!(matches!(p.check(&n), Err(PolicyError::Quorum { .. })));
        // A log the policy does not list.
        let (other, _) = {
            let (s, v) = signed_note::generate_key(&mut Rng(9), "isx/test/audit");
            (StandardSigner::new(&s).unwrap(), v)
        };
        assert!(matches!(p.check(&note(&other, &[])), Err(PolicyError::UnknownLog { .. })));
    }

    #[test]
    fn parse_errors_name_the_line() {
        let (_, vkey) = log();
        let a = witness("wa", 1).verifier_key();
        let cases: &[(&str, &str)] = &[
            ("quorum a\n", "line 1"),
            (&format!("witness a {a}\nwitness b {a}\nquorum a\n"), "listed twice"),
            (&format!("witness a {a}\nwitness a {}\nquorum a\n", witness("wb", 2).verifier_key()), "already defined"),
            (&format!("witness a {a}\ngroup g 2 a\nquorum g\n"), "threshold 2"),
            (&format!("witness a {a}\ngroup g 0 a\nquorum g\n"), "threshold 0 is not between 1 and 1"),
            (&format!("witness a {a}\ngroup g +1 a\nquorum g\n"), "threshold \"+1\" is not `all`, `any` or a decimal"),
            (&format!("witness a {a}\ngroup none any a\nquorum none\n"), "the name \"none\" is already defined"),
            (&format!("witness a {a}\ngroup a any a\nquorum a\n"), "the name \"a\" is already defined"),
            (&format!("witness a {a}\ngroup g any a a\nquorum g\n"), "member twice"),
            (&format!("witness a {a}\ngroup g any b\nquorum g\n"), "earlier line"),
            (&format!("witness a {a}\nquorum a\nquorum a\n"), "second"),
            (&format!("witness none {a}\nquorum none\n"), "already defined"),
            (&format!("log {a}\nquorum none\n"), "Ed25519 verifier key"),
            (&format!("witness a {vkey}\nquorum a\n"), "witness a"),
            ("frobnicate x\nquorum none\n", "unknown keyword"),
            ("quorum none\x0b\n", "control character"),
        ];
        for (text, want) in cases {
            let e = WitnessPolicy::parse(text.as_bytes()).unwrap_err().to_string();
            assert!(e.contains(want), "{text:?}: {e}");
        }
        assert_eq!(WitnessPolicy::parse(format!("log {vkey}\n").as_bytes()).unwrap_err(), PolicyError::NoQuorum);
        let ok = WitnessPolicy::parse(format!("\t# c\n\nlog {vkey} https://l\nquorum none\n").as_bytes()).unwrap();
        assert_eq!(ok.log_key("isx/test/audit"), Some(vkey.as_str()));
        assert_eq!(ok.logs()[0].url.as_deref(), Some("https://l"));
    }
}
