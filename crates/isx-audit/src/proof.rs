//! C2SP `tlog-proof@v1`: one record's offline proof of logging, as text.
//!
//! ```text
//! c2sp.org/tlog-proof@v1
//! extra <base64 of the record's stored bytes>
//! index <seq>
//! <base64 hash>            (the inclusion proof, leaf's sibling first)
//! ...
//!
//! <the checkpoint note, verbatim, with its cosignatures>
//! ```
//!
//! In isx the `extra` data is the record's exact stored `AuditRecord` bytes,
//! so the proof alone lets anyone recompute the leaf hash
//! (SHA-256(0x00 ‖ extra)) and check it against the signed root: the extra
//! data is not trusted, it is what the proof authenticates. A pruned record
//! has no bytes and no `extra` line; its leaf hash is only in the entry.
//! So has a record withheld from a scoped reader.
//! Every export bundle (version 2) carries one per entry
//! ([`AuditEntry::tlog_proof`]); the format is in `docs/bundle-format.md`.

use base64::Engine;
use isx_core::wire::AuditEntry;

/// The first line of every proof.
pub const HEADER: &str = "c2sp.org/tlog-proof@v1";

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Why a proof text does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// A line is not what the format says.
    #[error("tlog-proof line {line}: {message}")]
    Line {
        /// 1-based line number.
        line: usize,
        /// What was expected.
        message: String,
    },
}

/// A parsed `tlog-proof@v1`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlogProof {
    /// The opaque extra data (in isx: the record's bytes), if any.
    pub extra: Option<Vec<u8>>,
    /// The entry's index (its seq).
    pub index: u64,
    /// The inclusion proof, from the leaf's sibling up to the root's child.
    pub hashes: Vec<[u8; 32]>,
    /// The checkpoint note, verbatim (ends with a newline).
    pub checkpoint: String,
}

impl TlogProof {
    /// The proof of an entry in the tree of `note`: its body as extra data
    /// (none if pruned or withheld), its seq and its proof hashes.
    pub fn of_entry(e: &AuditEntry, note: &str) -> Self {
        Self {
            extra: (!e.pruned && !e.withheld).then(|| e.body.clone()),
            index: e.seq,
            hashes: e.proof.iter().map(|h| h.as_slice().try_into().unwrap_or([0; 32])).collect(),
            checkpoint: note.to_owned(),
        }
    }

    /// The proof as text.
    pub fn to_text(&self) -> String {
        let mut out = format!("{HEADER}\n");
        if let Some(extra) = &self.extra {
            out.push_str(&format!("extra {}\n", B64.encode(extra)));
        }
        out.push_str(&format!("index {}\n", self.index));
        for h in &self.hashes {
            out.push_str(&B64.encode(h));
            out.push('\n');
        }
        out.push('\n');
        out.push_str(&self.checkpoint);
        out
    }

    /// Parses a proof text. Only the syntax is checked here; the signature,
    /// cosignatures and inclusion are [`crate::verify`]'s.
    pub fn parse(text: &str) -> Result<Self, ProofError> {
        let err = |line: usize, message: &str| ProofError::Line { line, message: message.to_owned() };
        // Lines up to the blank one, each newline-terminated; then the note.
        let mut offset = 0;
        let mut lines = Vec::new();
        loop {
            let line = lines.len() + 1;
            let Some(len) = text[offset..].find('\n') else {
                return Err(err(line, if line == 1 { "empty" } else { "expected a blank line before the checkpoint" }));
            };
            let content = &text[offset..offset + len];
            offset += len + 1;
            if content.is_empty() {
                break;
            }
            lines.push(content);
        }
        let blank = lines.len() + 1;
        let mut it = lines.into_iter().zip(1..);
        match it.next() {
            Some((HEADER, _)) => {}
            _ => return Err(err(1, &format!("expected {HEADER:?}"))),
        }
        let (mut line, mut l) = it.next().ok_or_else(|| err(2, "expected `index N`"))?;
        let mut extra = None;
        if let Some(b64) = line.strip_prefix("extra ") {
            extra = Some(B64.decode(b64).map_err(|_| err(l, "the extra data is not standard base64"))?);
            (line, l) = it.next().ok_or_else(|| err(l + 1, "expected `index N`"))?;
        }
        let index = line
            .strip_prefix("index ")
            .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()) && (*d == "0" || !d.starts_with('0')))
            .and_then(|d| d.parse().ok())
            .ok_or_else(|| err(l, "expected `index N` (decimal, no leading zeroes)"))?;
        let hashes = it
            .map(|(line, l)| {
                B64.decode(line)
                    .ok()
                    .and_then(|h| <[u8; 32]>::try_from(h).ok())
                    .ok_or_else(|| err(l, "a proof hash is not 32 bytes in standard base64"))
            })
            .collect::<Result<_, _>>()?;
        if offset == text.len() {
            return Err(err(blank + 1, "no checkpoint after the blank line"));
        }
        Ok(Self { extra, index, hashes, checkpoint: text[offset..].to_owned() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_errors() {
        let p = TlogProof {
            extra: Some(b"record".to_vec()),
            index: 5,
            hashes: vec![[1; 32], [2; 32]],
            checkpoint: "o\n6\nAAAA\n\n\u{2014} o sig\n".into(),
        };
        let text = p.to_text();
        assert!(text.starts_with("c2sp.org/tlog-proof@v1\nextra cmVjb3Jk\nindex 5\n"), "{text}");
        assert_eq!(TlogProof::parse(&text).unwrap(), p);
        let bare = TlogProof { extra: None, hashes: vec![], ..p.clone() };
        assert_eq!(TlogProof::parse(&bare.to_text()).unwrap(), bare);
        let cases = [
            ("", "line 1"),
            ("c2sp.org/tlog-proof@v2\n\nx\n", "line 1"),
            ("c2sp.org/tlog-proof@v1\nindex 05\n\nx\n", "line 2"),
            ("c2sp.org/tlog-proof@v1\nextra !!\nindex 5\n\nx\n", "line 2"),
            ("c2sp.org/tlog-proof@v1\nindex 5\nAAAA\n\nx\n", "line 3"),
            ("c2sp.org/tlog-proof@v1\nindex 5\n", "line 3"),
            ("c2sp.org/tlog-proof@v1\nindex 5\n\n", "line 4"),
        ];
        for (text, want) in cases {
            let e = TlogProof::parse(text).unwrap_err().to_string();
            assert!(e.contains(want), "{text:?}: {e}");
        }
    }
}
