//! Why the audit log is read: the four purposes of LED Art. 25(2) and a
//! case reference, required on every `Audit` call.
//!
//! The purposes have one lower-case name each (`lawfulness`,
//! `self_monitoring`, `integrity`, `criminal_proceedings`): the name a
//! LOG_READ record's `purpose` holds, and what [`parse`] reads back (it also
//! takes `self-monitoring` and the full `READ_PURPOSE_...` names).

use crate::wire::{ReadPurpose, ReadReason};

/// The longest case reference, in characters.
pub const MAX_CASE_CHARS: usize = 128;

/// The longest export recipient, in characters.
pub const MAX_RECIPIENT_CHARS: usize = 256;

/// Every purpose, in the order of LED Art. 25(2).
pub const PURPOSES: [ReadPurpose; 4] =
    [ReadPurpose::Lawfulness, ReadPurpose::SelfMonitoring, ReadPurpose::Integrity, ReadPurpose::CriminalProceedings];

/// Why a read's reason (or an export's recipient) is not usable: the
/// request field and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ReasonError {
    /// The request field, e.g. `reason.purpose`.
    pub field: &'static str,
    /// What is wrong, and what to give.
    pub message: String,
}

/// The purpose's lower-case name (`None` for `READ_PURPOSE_UNSPECIFIED`).
pub fn name(p: ReadPurpose) -> Option<&'static str> {
    match p {
        ReadPurpose::Unspecified => None,
        ReadPurpose::Lawfulness => Some("lawfulness"),
        ReadPurpose::SelfMonitoring => Some("self_monitoring"),
        ReadPurpose::Integrity => Some("integrity"),
        ReadPurpose::CriminalProceedings => Some("criminal_proceedings"),
    }
}

/// The names [`parse`] accepts, as a list for messages.
pub fn names() -> String {
    PURPOSES.iter().filter_map(|p| name(*p)).collect::<Vec<_>>().join(", ")
}

/// A purpose by its name: `lawfulness`, `self_monitoring` (or
/// `self-monitoring`), `integrity`, `criminal_proceedings`, or the full
/// `READ_PURPOSE_...` name; any case.
pub fn parse(text: &str) -> Result<ReadPurpose, ReasonError> {
    let t = text.trim().to_ascii_lowercase().replace('-', "_");
    let t = t.strip_prefix("read_purpose_").unwrap_or(&t);
    PURPOSES.into_iter().find(|p| name(*p) == Some(t)).ok_or_else(|| ReasonError {
        field: "reason.purpose",
        message: format!("{text:?} is not a purpose of LED Art. 25(2): use one of {} (or with '-')", names()),
    })
}

/// A reason for `purpose` in case `case_reference`.
pub fn reason(purpose: ReadPurpose, case_reference: &str) -> ReadReason {
    ReadReason { purpose: purpose as i32, case_reference: case_reference.to_owned() }
}

/// `text` trimmed, if it is 1 to `max` printable characters.
fn printable(field: &'static str, text: &str, max: usize, what: &str) -> Result<String, ReasonError> {
    let t = text.trim();
    let bad = |message: String| Err(ReasonError { field, message });
    if t.is_empty() {
        return bad(format!("is required: {what}"));
    }
    if t.chars().count() > max {
        return bad(format!("is longer than {max} characters"));
    }
    if t.chars().any(char::is_control) {
        return bad("holds a control character; give printable text".into());
    }
    Ok(t.to_owned())
}

/// The purpose and the trimmed case reference of a read, or the first
/// field that is missing or bad.
pub fn check(reason: Option<&ReadReason>) -> Result<(ReadPurpose, String), ReasonError> {
    let purpose = match reason.map(|r| ReadPurpose::try_from(r.purpose)) {
        Some(Ok(p)) if p != ReadPurpose::Unspecified => p,
        Some(Err(_)) => {
            return Err(ReasonError {
                field: "reason.purpose",
                message: format!("is not a known purpose: use one of {}", names()),
            });
        }
        _ => {
            return Err(ReasonError {
                field: "reason.purpose",
                message: format!(
                    "is required: every read of the audit log names its purpose (LED Art. 25(2)), one of {}",
                    names()
                ),
            });
        }
    };
    let case = printable(
        "reason.case_reference",
        reason.map(|r| r.case_reference.as_str()).unwrap_or_default(),
        MAX_CASE_CHARS,
        "the case, complaint or inspection this read belongs to, e.g. \"CNIL-2026-0113\" (1 to 128 characters, no personal data)",
    )?;
    Ok((purpose, case))
}

/// An export's recipient, trimmed, or why it is not usable.
pub fn check_recipient(recipient: &str) -> Result<String, ReasonError> {
    printable(
        "recipient",
        recipient,
        MAX_RECIPIENT_CHARS,
        "who receives the bundle, e.g. \"Tribunal judiciaire de Lyon\" (1 to 256 characters)",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back() {
        for p in PURPOSES {
            assert_eq!(parse(name(p).unwrap()), Ok(p));
            assert_eq!(parse(p.as_str_name()), Ok(p));
        }
        assert_eq!(parse("Self-Monitoring"), Ok(ReadPurpose::SelfMonitoring));
        assert_eq!(parse(" criminal-proceedings "), Ok(ReadPurpose::CriminalProceedings));
        let e = parse("curiosity").unwrap_err();
        assert_eq!(e.field, "reason.purpose");
        assert!(e.message.contains("lawfulness, self_monitoring, integrity, criminal_proceedings"), "{e}");
        assert!(parse("unspecified").is_err());
    }

    #[test]
    fn checks_name_the_field() {
        let ok = |p: ReadPurpose, case: &str| check(Some(&reason(p, case)));
        type Want = Result<(ReadPurpose, &'static str), &'static str>;
        let cases: &[(Option<ReadReason>, Want)] = &[
            (Some(reason(ReadPurpose::Integrity, " CNIL-2026-0113 ")), Ok((ReadPurpose::Integrity, "CNIL-2026-0113"))),
            (None, Err("reason.purpose: is required")),
            (Some(reason(ReadPurpose::Unspecified, "x")), Err("reason.purpose: is required")),
            (Some(ReadReason { purpose: 99, case_reference: "x".into() }), Err("reason.purpose: is not a known")),
            (Some(reason(ReadPurpose::Lawfulness, "")), Err("reason.case_reference: is required")),
            (Some(reason(ReadPurpose::Lawfulness, "   ")), Err("reason.case_reference: is required")),
            (Some(reason(ReadPurpose::Lawfulness, &"x".repeat(129))), Err("reason.case_reference: is longer than 128")),
            (Some(reason(ReadPurpose::Lawfulness, "a\nb")), Err("reason.case_reference: holds a control")),
        ];
        for (input, want) in cases {
            let got = check(input.as_ref());
            match (want, got) {
                (Ok((p, c)), Ok((gp, gc))) => assert_eq!((*p, *c), (gp, gc.as_str())),
                (Err(needle), Err(e)) => assert!(e.to_string().starts_with(needle), "{input:?}: {e}"),
                (w, g) => panic!("{input:?}: expected {w:?}, got {g:?}"),
            }
        }
        assert!(ok(ReadPurpose::Lawfulness, &"é".repeat(128)).is_ok(), "characters, not bytes");
        assert_eq!(check_recipient(" Tribunal judiciaire de Lyon "), Ok("Tribunal judiciaire de Lyon".into()));
        assert_eq!(check_recipient("").unwrap_err().field, "recipient");
        assert!(check_recipient(&"x".repeat(257)).is_err());
    }
}
