//! A second bundle verifier, written from the C2SP specs alone
//! (signed-note, tlog-checkpoint, tlog-cosignature, tlog-policy,
//! tlog-proof) and RFC 6962/9162: it uses NO isx crate, nor `tlog_tiles` or
//! `signed_note`; only `sha2`, `ed25519-dalek` and `base64`. It reads what
//! an outside auditor has: the `tlog_proof` texts of a bundle and a policy
//! file (and, optionally, the log's vkey), and shares no code with
//! `isx_audit::verify`, so a bug in one is caught by the other.
//! (`bundle_independent.rs` checks that this file names no isx crate.)

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signature, Verifier as _, VerifyingKey};
use sha2::{Digest, Sha256};

/// What a verified proof says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    /// The entry's index.
    pub index: u64,
    /// The record bytes (the `extra` data), now authenticated.
    pub record: Vec<u8>,
    /// The checkpoint's origin, size and root.
    pub origin: String,
    pub size: u64,
    pub root: [u8; 32],
    /// The policy witnesses whose cosignatures verified, with their time.
    pub cosigners: Vec<(String, u64)>,
}

type Res<T> = Result<T, String>;

fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// A vkey: `<name>+<hex key id>+<base64(type || public key)>`.
#[derive(Debug, Clone)]
struct VKey {
    name: String,
    id: [u8; 4],
    kind: u8,
    key: VerifyingKey,
}

fn vkey(text: &str, kind: u8) -> Res<VKey> {
    let mut parts = text.splitn(3, '+');
    let (Some(name), Some(id), Some(b64)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(format!("{text:?} is not a vkey"));
    };
    let raw = B64.decode(b64).map_err(|_| format!("{text:?}: bad base64"))?;
    if raw.len() != 33 || raw[0] != kind {
        return Err(format!("{text:?}: not a type {kind:#04x} Ed25519 key"));
    }
    let key = VerifyingKey::from_bytes(raw[1..].try_into().unwrap()).map_err(|_| format!("{text:?}: bad key"))?;
    // signed-note: key ID = SHA-256(name || 0x0A || type || public key)[:4].
    let want: [u8; 4] = sha256(&[name.as_bytes(), b"\n", &raw])[..4].try_into().unwrap();
    let id: [u8; 4] = u32::from_str_radix(id, 16).map_err(|_| format!("{text:?}: bad key id"))?.to_be_bytes();
    if id != want {
        return Err(format!("{text:?}: the key id is not the key's"));
    }
    Ok(VKey { name: name.to_owned(), id, kind, key })
}

/// A C2SP tlog-policy: logs, witnesses, groups, quorum.
#[derive(Debug, Clone)]
pub struct Policy {
    logs: Vec<VKey>,
    witnesses: Vec<(String, VKey)>,
    /// name -> (k, members)
    groups: Vec<(String, usize, Vec<String>)>,
    quorum: Option<String>,
}

impl Policy {
    /// Parses a policy file (comments, blank lines, `log`, `witness`, `group`, `quorum`).
    pub fn parse(text: &str) -> Res<Self> {
        let mut p = Self { logs: vec![], witnesses: vec![], groups: vec![], quorum: None };
        let mut quorum = None;
        for line in text.lines() {
            let w: Vec<&str> = line.split([' ', '\t']).filter(|w| !w.is_empty()).collect();
            match w.as_slice() {
                [] => {}
                [c, ..] if c.starts_with('#') => {}
                ["log", key, ..] => p.logs.push(vkey(key, 0x01)?),
                ["witness", name, key, ..] => p.witnesses.push(((*name).to_owned(), vkey(key, 0x04)?)),
                ["group", name, k, members @ ..] if !members.is_empty() => {
                    let k = match *k {
                        "all" => members.len(),
                        "any" => 1,
                        k => k.parse().map_err(|_| format!("bad threshold {k}"))?,
                    };
                    p.groups.push(((*name).to_owned(), k, members.iter().map(|m| (*m).to_owned()).collect()));
                }
                ["quorum", name] => quorum = Some((*name).to_owned()),
                _ => return Err(format!("bad policy line {line:?}")),
            }
        }
        let quorum = quorum.ok_or("no quorum line")?;
        p.quorum = (quorum != "none").then_some(quorum);
        Ok(p)
    }

    fn holds(&self, name: &str, cosigned: &[String]) -> bool {
        if self.witnesses.iter().any(|(n, _)| n == name) {
            return cosigned.iter().any(|c| c == name);
        }
        self.groups
            .iter()
            .find(|(n, _, _)| n == name)
            .is_some_and(|(_, k, members)| members.iter().filter(|m| self.holds(m, cosigned)).count() >= *k)
    }
}

/// One signature line of a note: the key name and the decoded bytes.
fn signatures(block: &str) -> Res<Vec<(String, Vec<u8>)>> {
    block
        .lines()
        .map(|l| {
            let rest = l.strip_prefix("\u{2014} ").ok_or_else(|| format!("bad signature line {l:?}"))?;
            let (name, b64) = rest.rsplit_once(' ').ok_or_else(|| format!("bad signature line {l:?}"))?;
            let raw = B64.decode(b64).map_err(|_| format!("bad signature base64 in {l:?}"))?;
            Ok((name.to_owned(), raw))
        })
        .collect()
}

/// RFC 6962 §2.1.1 / RFC 9162 §2.1.3.2: the root an inclusion proof leads to.
fn root_from_inclusion(index: u64, size: u64, leaf: [u8; 32], proof: &[[u8; 32]]) -> Option<[u8; 32]> {
    if index >= size {
        return None;
    }
    let (mut fnode, mut snode, mut r) = (index, size - 1, leaf);
    for p in proof {
        if snode == 0 {
            return None;
        }
        if fnode & 1 == 1 || fnode == snode {
            r = sha256(&[&[1], p, &r]);
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            r = sha256(&[&[1], &r, p]);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    (snode == 0).then_some(r)
}

/// Verifies one `c2sp.org/tlog-proof@v1` text against `policy` (and the
/// log key `log`, if given; else the policy's log for the origin): the log
/// signature, every listed witness's cosignature, the quorum, and the
/// inclusion of SHA-256(0x00 || extra) in the signed root.
pub fn verify(proof: &str, policy: &Policy, log: Option<&str>) -> Res<Checked> {
    // tlog-proof: header, optional extra, index, hashes, blank line, note.
    let (head, note) = proof.split_once("\n\n").ok_or("no blank line before the checkpoint")?;
    let mut lines = head.lines();
    if lines.next() != Some("c2sp.org/tlog-proof@v1") {
        return Err("not a c2sp.org/tlog-proof@v1".into());
    }
    let mut line = lines.next().ok_or("no index line")?;
    let record = match line.strip_prefix("extra ") {
        Some(b64) => {
            let r = B64.decode(b64).map_err(|_| "bad extra base64")?;
            line = lines.next().ok_or("no index line")?;
            r
        }
        None => return Err("no extra line: the record bytes are needed to compute its leaf hash".into()),
    };
    let index: u64 = line.strip_prefix("index ").and_then(|i| i.parse().ok()).ok_or("bad index line")?;
    let hashes: Vec<[u8; 32]> = lines
        .map(|l| B64.decode(l).ok().and_then(|h| h.try_into().ok()).ok_or_else(|| format!("bad hash line {l:?}")))
        .collect::<Res<_>>()?;

    // signed-note: the text (ending in a newline), a blank line, signature lines.
    let (text, sigs) = note.split_once("\n\n").ok_or("the checkpoint has no signatures")?;
    let text = format!("{text}\n");
    let sigs = signatures(sigs)?;
    // tlog-checkpoint: origin, size, base64 root, then extension lines.
    let body: Vec<&str> = text.lines().collect();
    let [origin, size, root, ..] = body.as_slice() else { return Err("the checkpoint has < 3 lines".into()) };
    let size: u64 = size.parse().map_err(|_| "bad tree size")?;
    let root: [u8; 32] =
        B64.decode(root).ok().and_then(|r| r.try_into().ok()).ok_or("bad root hash in the checkpoint")?;

    // The log's signature: by the pinned key, or the policy's for this origin.
    let logkey = match log {
        Some(k) => vkey(k, 0x01)?,
        None => {
            policy.logs.iter().find(|k| k.name == *origin).cloned().ok_or("no log in the policy for this origin")?
        }
    };
    let logsig = sigs
        .iter()
        .find(|(name, raw)| *name == logkey.name && raw.len() == 68 && raw[..4] == logkey.id)
        .ok_or("no signature of the log's key")?;
    let sig = Signature::from_bytes(logsig.1[4..].try_into().unwrap());
    logkey.key.verify(text.as_bytes(), &sig).map_err(|_| "the log's signature does not verify")?;

    // Cosignatures: `cosignature/v1\ntime <t>\n` || text, key id with type 0x04.
    let mut cosigners = Vec::new();
    for (wname, wkey) in &policy.witnesses {
        debug_assert_eq!(wkey.kind, 0x04);
        let Some((_, raw)) =
            sigs.iter().find(|(name, raw)| *name == wkey.name && raw.len() == 76 && raw[..4] == wkey.id)
        else {
            continue;
        };
        let t = u64::from_be_bytes(raw[4..12].try_into().unwrap());
        let msg = format!("cosignature/v1\ntime {t}\n{text}");
        let sig = Signature::from_bytes(raw[12..].try_into().unwrap());
        wkey.key.verify(msg.as_bytes(), &sig).map_err(|_| format!("the cosignature of {wname} does not verify"))?;
        cosigners.push((wname.clone(), t));
    }
    if let Some(q) = &policy.quorum {
        let names: Vec<String> = cosigners.iter().map(|(n, _)| n.clone()).collect();
        if !policy.holds(q, &names) {
            return Err(format!("quorum {q} not met: cosigned by {names:?}"));
        }
    }

    // RFC 6962: leaf hash = SHA-256(0x00 || record bytes); the proof leads to the root.
    let leaf = sha256(&[&[0], &record]);
    if root_from_inclusion(index, size, leaf, &hashes) != Some(root) {
        return Err(format!("the inclusion proof of {index} does not lead to the signed root"));
    }
    Ok(Checked { index, record, origin: (*origin).to_owned(), size, root, cosigners })
}

/// The RFC 6962 root of leaf hashes, for the test vectors (MTH, §2.1).
pub fn tree_root(leaves: &[[u8; 32]]) -> [u8; 32] {
    match leaves.len() {
        0 => sha256(&[]),
        1 => leaves[0],
        n => {
            let k = (n - 1).checked_ilog2().map_or(1, |e| 1usize << e);
            sha256(&[&[1], &tree_root(&leaves[..k]), &tree_root(&leaves[k..])])
        }
    }
}

/// The leaf hash of record bytes.
pub fn leaf_hash(record: &[u8]) -> [u8; 32] {
    sha256(&[&[0], record])
}

/// An interior node's hash.
pub fn node_hash(left: &[u8; 32], right: &[u8; 32]) -> [u8; 32] {
    sha256(&[&[1], left, right])
}
