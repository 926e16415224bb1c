//! The search form, read into a gateway `SearchRequest`.
//!
//! Forms arrive as name/value pairs. Every name must be a known facet; an
//! unknown one is refused by name, with the list of facets, rather than
//! ignored (a misspelt facet would silently widen the search). Subject
//! identifiers come only from POST bodies and go into
//! `subject_identifier`, which the gateway turns into a pseudonym with its
//! key; they never reach a URL, a link or a log line.

use isx_core::timestamp::Bound;
use isx_core::wire::{Operation, SearchRequest};

/// The facets and other fields a search form may carry.
pub const FIELDS: &[&str] = &[
    "operation",
    "node",
    "origin",
    "recipient",
    "officer",
    "purpose",
    "alert",
    "request",
    "from",
    "to",
    "document_country",
    "document_number",
    "family_name",
    "given_names",
    "date_of_birth",
    "plate",
    "firearm",
    "pseudonym",
    "justification",
    "order",
    "limit",
];

/// Fields every POST may carry besides its own.
const COMMON: &[&str] = &["_token", "cursor", "report"];

/// A form field that does not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    /// The field, as named in the form.
    pub field: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

fn bad(field: &str, message: impl Into<String>) -> FieldError {
    FieldError { field: field.to_owned(), message: message.into() }
}

/// The form's pairs, checked against `allowed` (and the common fields).
#[derive(Debug, Clone, Default)]
pub struct Form(Vec<(String, String)>);

impl Form {
    /// Reads a urlencoded body; refuses a field not in `allowed`.
    pub fn parse(pairs: Vec<(String, String)>, allowed: &[&str]) -> Result<Self, FieldError> {
        for (k, _) in &pairs {
            if !allowed.contains(&k.as_str()) && !COMMON.contains(&k.as_str()) {
                return Err(bad(k, format!("is not a field of this form (the fields are: {})", allowed.join(", "))));
            }
        }
        Ok(Self(pairs))
    }

    /// A field's value, trimmed; `None` when absent or empty.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.trim()).filter(|v| !v.is_empty())
    }
}

/// A time as an auditor types it ([`isx_core::timestamp::parse_bound`]).
pub fn parse_time(field: &str, s: &str, bound: Bound) -> Result<prost_types::Timestamp, FieldError> {
    isx_core::timestamp::parse_bound(s, bound).ok_or_else(|| {
        bad(field, format!("{s:?} is not a time: use YYYY-MM-DD or YYYY-MM-DDTHH:MM (UTC), or RFC 3339"))
    })
}

/// The subject identifier the form names, as the gateway reads it
/// (`document:DE:X`, `name:FAMILY|GIVEN|DOB`, `plate:P`, `firearm:S`), or
/// empty when it names none. More than one kind is refused.
pub fn identifier(form: &Form) -> Result<String, FieldError> {
    let document = match (form.get("document_country"), form.get("document_number")) {
        (Some(c), Some(n)) => {
            if c.len() != 2 || !c.chars().all(|ch| ch.is_ascii_alphabetic()) {
                return Err(bad(
                    "document_country",
                    format!("{c:?}: give the issuing country's two-letter code, e.g. RO"),
                ));
            }
            Some(isx_core::identifiers::document(c, n))
        }
        (None, Some(_)) => return Err(bad("document_country", "give the document's issuing country with its number")),
        (Some(_), None) => return Err(bad("document_number", "give the document number with its country")),
        (None, None) => None,
    };
    let name = match (form.get("family_name"), form.get("given_names"), form.get("date_of_birth")) {
        (None, None, None) => None,
        (Some(f), g, Some(d)) => {
            parse_date("date_of_birth", d)?;
            Some(isx_core::identifiers::name(f, g.unwrap_or_default(), d))
        }
        (None, _, _) => return Err(bad("family_name", "a name search needs the family name and the date of birth")),
        (Some(_), _, None) => {
            return Err(bad("date_of_birth", "a name search needs the date of birth (YYYY-MM-DD) with the name"));
        }
    };
    let plate = form.get("plate").map(isx_core::identifiers::plate);
    let firearm = form.get("firearm").map(isx_core::identifiers::firearm);
    let given: Vec<String> = [document, name, plate, firearm].into_iter().flatten().collect();
    match given.len() {
        0 => Ok(String::new()),
        1 => Ok(given.into_iter().next().unwrap_or_default()),
        _ => Err(bad(
            "document_number",
            "give one identifier at a time: a document, a name with date of birth, a plate or a firearm",
        )),
    }
}

fn parse_date(field: &str, d: &str) -> Result<(), FieldError> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(d, &format).map(|_| ()).map_err(|_| bad(field, format!("{d:?} is not a date: use YYYY-MM-DD")))
}

/// The operation a form names, by its short name (`disclosure`) or full one.
pub fn operation(form: &Form) -> Result<i32, FieldError> {
    match form.get("operation") {
        None => Ok(0),
        Some(op) => isx_core::enums::parse(&isx_core::enums::descriptor("Operation"), op)
            .map_err(|e| bad("operation", e.to_string())),
    }
}

/// The short names of the operations, for the form's choices.
pub fn operation_names() -> Vec<String> {
    let e = isx_core::enums::descriptor("Operation");
    e.values().filter(|v| v.number() != 0).map(|v| isx_core::enums::short_name(&e, v.name())).collect()
}

/// A search request from the form: every facet, the identifier, the time
/// range, the order and the page size (1 to 1000, default 50).
pub fn search_request(form: &Form) -> Result<SearchRequest, FieldError> {
    let text = |name: &str| form.get(name).unwrap_or_default().to_owned();
    let from = form.get("from").map(|s| parse_time("from", s, Bound::Start)).transpose()?;
    let to = form.get("to").map(|s| parse_time("to", s, Bound::End)).transpose()?;
    if let (Some(f), Some(t)) = (&from, &to)
        && (f.seconds, f.nanos) > (t.seconds, t.nanos)
    {
        return Err(bad("to", "is before `from`: swap them"));
    }
    let limit = match form.get("limit") {
        None => 50,
        Some(l) => match l.parse::<u32>() {
            Ok(n @ 1..=1000) => n,
            _ => return Err(bad("limit", format!("{l:?}: give a page size from 1 to 1000"))),
        },
    };
    let newest_first = match form.get("order") {
        None | Some("newest") => true,
        Some("oldest") => false,
        Some(o) => return Err(bad("order", format!("{o:?}: use newest or oldest"))),
    };
    let pseudonym = text("pseudonym");
    if !pseudonym.is_empty() && (pseudonym.len() != 64 || !pseudonym.bytes().all(|b| b.is_ascii_hexdigit())) {
        return Err(bad("pseudonym", "a subject pseudonym is 64 hex digits, as records show it"));
    }
    Ok(SearchRequest {
        subject_identifier: identifier(form)?,
        subject_pseudonym: pseudonym,
        node: text("node"),
        origin: text("origin"),
        recipient: text("recipient"),
        officer: text("officer"),
        alert_id: text("alert"),
        request_id: text("request"),
        operation: operation(form)?,
        purpose: text("purpose"),
        from,
        to,
        limit,
        newest_first,
        justification: text("justification"),
        ..Default::default()
    })
}

/// The facets a search used, in words, without the identifier's value (for
/// the page's heading and the bundle's description).
pub fn describe(req: &SearchRequest) -> String {
    let mut parts = Vec::new();
    if !req.subject_identifier.is_empty() {
        let kind = req.subject_identifier.split(':').next().unwrap_or("subject");
        parts.push(format!("a subject by {kind}"));
    }
    if !req.subject_pseudonym.is_empty() {
        parts.push(format!("pseudonym {}…", &req.subject_pseudonym[..12.min(req.subject_pseudonym.len())]));
    }
    for (name, v) in [
        ("node", &req.node),
        ("origin", &req.origin),
        ("recipient", &req.recipient),
        ("officer", &req.officer),
        ("alert", &req.alert_id),
        ("request", &req.request_id),
        ("purpose", &req.purpose),
    ] {
        if !v.is_empty() {
            parts.push(format!("{name} {v}"));
        }
    }
    if let Ok(op) = Operation::try_from(req.operation)
        && op != Operation::Unspecified
    {
        parts.push(format!("operation {}", crate::text::operation(op)));
    }
    if let Some(f) = &req.from {
        parts.push(format!("from {}", isx_core::timestamp::rfc3339(f)));
    }
    if let Some(t) = &req.to {
        parts.push(format!("to {}", isx_core::timestamp::rfc3339(t)));
    }
    if parts.is_empty() { "every record".to_owned() } else { parts.join(", ") }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(pairs: &[(&str, &str)]) -> Result<Form, FieldError> {
        Form::parse(pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(), FIELDS)
    }

    #[test]
    fn an_unknown_facet_is_refused_by_name() {
        let e = form(&[("colour", "red")]).unwrap_err();
        assert_eq!(e.field, "colour");
        assert!(e.message.contains("operation, node"), "{e}");
        assert!(form(&[("_token", "x"), ("node", "frontex")]).is_ok());
    }

    #[test]
    fn facets_become_the_request() {
        let f = form(&[
            ("operation", "disclosure"),
            ("node", "frontex"),
            ("from", "2026-11-28"),
            ("to", "2026-11-28T10:30"),
            ("order", "oldest"),
            ("limit", "10"),
        ])
        .unwrap();
        let r = search_request(&f).unwrap();
        assert_eq!(r.operation, Operation::Disclosure as i32);
        assert_eq!(r.node, "frontex");
        assert!(!r.newest_first);
        assert_eq!(r.limit, 10);
        assert_eq!(isx_core::timestamp::rfc3339(r.from.as_ref().unwrap()), "2026-11-28T00:00:00Z");
        // The end of the minute given, to the millisecond.
        assert_eq!(r.to.as_ref().unwrap().nanos, 999_000_000);
        assert_eq!(r.to.as_ref().unwrap().seconds % 60, 59);
    }

    #[test]
    fn bad_values_name_their_field() {
        for (pairs, field) in [
            (vec![("from", "yesterday")], "from"),
            (vec![("to", "2026-13-01")], "to"),
            (vec![("from", "2026-11-29"), ("to", "2026-11-28")], "to"),
            (vec![("operation", "peeking")], "operation"),
            (vec![("limit", "0")], "limit"),
            (vec![("limit", "5000")], "limit"),
            (vec![("order", "random")], "order"),
            (vec![("pseudonym", "abc")], "pseudonym"),
            (vec![("family_name", "Popescu")], "date_of_birth"),
            (vec![("family_name", "Popescu"), ("date_of_birth", "9 Aug 2010")], "date_of_birth"),
            (vec![("document_number", "RX771203")], "document_country"),
            (vec![("document_country", "Romania"), ("document_number", "RX771203")], "document_country"),
            (vec![("plate", "B-1"), ("firearm", "S1")], "document_number"),
        ] {
            let e = search_request(&form(&pairs).unwrap()).unwrap_err();
            assert_eq!(e.field, field, "{pairs:?}: {e}");
        }
    }

    #[test]
    fn identifiers_take_the_gateways_form_and_stay_out_of_the_description() {
        let f = form(&[("document_country", "ro"), ("document_number", "RX771203")]).unwrap();
        let r = search_request(&f).unwrap();
        assert_eq!(r.subject_identifier, "document:RO:RX771203");
        assert!(!describe(&r).contains("RX771203"), "{}", describe(&r));
        let f =
            form(&[("family_name", "Popescu"), ("given_names", "Ana Maria"), ("date_of_birth", "2010-08-09")]).unwrap();
        let r = search_request(&f).unwrap();
        assert_eq!(r.subject_identifier, "name:POPESCU|ANA MARIA|2010-08-09");
        assert!(!describe(&r).contains("Popescu"));
        assert_eq!(describe(&SearchRequest::default()), "every record");
    }
}
