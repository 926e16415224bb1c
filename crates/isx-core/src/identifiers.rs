//! Normalised identifiers and their keyed pseudonyms.
//!
//! The audit log and the lookup index never hold an identifier itself, only
//! HMAC-SHA256 of its normalised form under a gateway key. Normalising first
//! (upper case, spaces and hyphens dropped where they carry no meaning) makes
//! "b-kl 4471" and "B-KL 4471" the same plate. A normalised identifier is a
//! typed string:
//!
//! | type | form | example |
//! |---|---|---|
//! | document | `document:CC:NUMBER` | `document:DE:C4J9X1R27` |
//! | name | `name:FAMILY|GIVEN NAMES|YYYY-MM-DD` | `name:BRANDT|LUKAS EMIL|1994-03-17` |
//! | plate | `plate:PLATE` | `plate:BKL4471` |
//! | firearm | `firearm:SERIAL` | `firearm:AB12345` |

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::validate::{FieldViolation, ValidationError, is_country, is_date};
use crate::wire::lookup_identifier::Kind;
use crate::wire::{Alert, LookupIdentifier, ObjectKind};

/// The types of identifier, as recorded in consultation logs (never the values).
pub const TYPES: [&str; 4] = ["document", "name", "plate", "firearm"];

fn squash(s: &str) -> String {
    s.chars().filter(|c| !c.is_whitespace() && *c != '-' && *c != '.').flat_map(char::to_uppercase).collect()
}

fn words(s: &str) -> String {
    s.split_whitespace().map(str::to_uppercase).collect::<Vec<_>>().join(" ")
}

/// `document:CC:NUMBER`.
pub fn document(issuing_country: &str, number: &str) -> String {
    format!("document:{}:{}", issuing_country.trim().to_uppercase(), squash(number))
}

/// `name:FAMILY|GIVEN NAMES|YYYY-MM-DD`.
pub fn name(family: &str, given: &str, date_of_birth: &str) -> String {
    format!("name:{}|{}|{}", words(family), words(given), date_of_birth.trim())
}

/// A person's name as typed, read into family and given names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameReading {
    /// The family name.
    pub family: String,
    /// The given names (may be empty).
    pub given: String,
    /// How the text was read, for telling the user: `None` when the text
    /// said it itself (`FAMILY, Given`).
    pub guessed: Option<&'static str>,
}

/// Why a typed name cannot be read without a guess.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Nothing but blanks or commas.
    #[error("the name is empty: write \"FAMILY, Given names\"")]
    Empty,
    /// Three or more words, none in capitals, no comma.
    #[error(
        "{0:?} could be read more than one way: write the family name first with a comma (\"FAMILY, Given names\"), or the family name in capitals"
    )]
    Ambiguous(String),
}

/// Reads a name as people write it: `"Rinaldi, Marco"` or `"RINALDI, Marco"`
/// (family first, with a comma), `"Marco RINALDI"` or `"RINALDI Marco"` (the
/// family name in capitals), or `"Marco Rinaldi"` (two words: given, then
/// family). One word is a family name. Three or more words with neither a
/// comma nor capitals are refused as ambiguous. Lookups and searches
/// normalise every reading the same way ([`name`]).
pub fn read_name(text: &str) -> Result<NameReading, NameError> {
    if let Some((family, given)) = text.split_once(',') {
        let (family, given) = (family.trim(), given.trim());
        if family.is_empty() {
            return Err(NameError::Empty);
        }
        return Ok(NameReading { family: family.to_owned(), given: given.to_owned(), guessed: None });
    }
    let parts: Vec<&str> = text.split_whitespace().collect();
    let capital = |w: &&str| w.chars().any(char::is_alphabetic) && !w.chars().any(char::is_lowercase);
    let join = |ws: &[&str]| ws.join(" ");
    match parts.as_slice() {
        [] => Err(NameError::Empty),
        [one] => Ok(NameReading {
            family: (*one).to_owned(),
            given: String::new(),
            guessed: Some("one word, read as the family name"),
        }),
        _ if parts.iter().filter(|w| capital(w)).count() > 0 && !parts.iter().all(capital) => {
            let (family, given): (Vec<&str>, Vec<&str>) = parts.iter().partition(|w| capital(w));
            Ok(NameReading {
                family: join(&family),
                given: join(&given),
                guessed: Some("the words in capitals read as the family name"),
            })
        }
        [given, family] => Ok(NameReading {
            family: (*family).to_owned(),
            given: (*given).to_owned(),
            guessed: Some("two words, read as \"Given Family\""),
        }),
        _ => Err(NameError::Ambiguous(text.trim().to_owned())),
    }
}

/// `plate:PLATE`.
pub fn plate(p: &str) -> String {
    format!("plate:{}", squash(p))
}

/// `firearm:SERIAL`.
pub fn firearm(serial: &str) -> String {
    format!("firearm:{}", squash(serial))
}

/// Why a typed identifier does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("identifier {0:?}: use document:CC:NUMBER, name:FAMILY|GIVEN|YYYY-MM-DD, plate:PLATE or firearm:SERIAL")]
pub struct IdentifierError(pub String);

/// Normalises a typed identifier as users write it (e.g. `plate:b-kl 4471`).
pub fn parse(typed: &str) -> Result<String, IdentifierError> {
    let bad = || IdentifierError(typed.to_owned());
    let (kind, rest) = typed.split_once(':').ok_or_else(bad)?;
    let out = match kind.trim().to_ascii_lowercase().as_str() {
        "document" => {
            let (country, number) = rest.split_once(':').ok_or_else(bad)?;
            if country.trim().len() != 2 || number.trim().is_empty() {
                return Err(bad());
            }
            document(country, number)
        }
        "name" => {
            let mut parts = rest.split('|');
            let (f, g, d) =
                (parts.next().ok_or_else(bad)?, parts.next().ok_or_else(bad)?, parts.next().ok_or_else(bad)?);
            if f.trim().is_empty() || !crate::validate::is_date(d.trim()) || parts.next().is_some() {
                return Err(bad());
            }
            name(f, g, d)
        }
        "plate" if !rest.trim().is_empty() => plate(rest),
        "firearm" if !rest.trim().is_empty() => firearm(rest),
        _ => return Err(bad()),
    };
    Ok(out)
}

/// The type of a normalised identifier (`document`, `name`, ...).
pub fn kind_of(normalised: &str) -> &str {
    normalised.split_once(':').map(|(k, _)| k).unwrap_or("unknown")
}

/// Every identifier an alert carries, normalised, deduplicated, in order.
pub fn of_alert(alert: &Alert) -> Vec<String> {
    let mut out = Vec::new();
    for s in &alert.subjects {
        for d in &s.documents {
            if !d.number.is_empty() && !d.issuing_country.is_empty() {
                out.push(document(&d.issuing_country, &d.number));
            }
        }
        if !s.family_name.is_empty() && crate::validate::is_date(&s.date_of_birth) {
            out.push(name(&s.family_name, &s.given_names, &s.date_of_birth));
        }
    }
    for o in &alert.objects {
        if o.identifier.is_empty() {
            continue;
        }
        match o.kind() {
            ObjectKind::Vehicle => out.push(plate(&o.identifier)),
            ObjectKind::Firearm => out.push(firearm(&o.identifier)),
            ObjectKind::Document if o.country.len() == 2 => out.push(document(&o.country, &o.identifier)),
            _ => {}
        }
    }
    let mut seen = std::collections::HashSet::new();
    out.retain(|x| seen.insert(x.clone()));
    out
}

/// The identifiers of a lookup, normalised, with the index of the request
/// entry each came from. Every bad entry is named by its field path, e.g.
/// `identifiers[1].person.date_of_birth`; an empty list names `identifiers`.
pub fn of_lookup(ids: &[LookupIdentifier], max: usize) -> Result<Vec<String>, ValidationError> {
    let mut bad = Vec::new();
    let mut violation = |field: String, description: &str| {
        bad.push(FieldViolation { field, description: description.to_owned() });
    };
    if ids.is_empty() {
        violation("identifiers".into(), "give at least one identifier: a document, a person, a plate or a firearm");
    }
    if ids.len() > max {
        // Counted before any entry is looked at.
        let description = format!("{} given; at most {max} identifiers per lookup (limits.max_list_len)", ids.len());
        return Err(ValidationError { violations: vec![FieldViolation { field: "identifiers".into(), description }] });
    }
    let mut out = Vec::with_capacity(ids.len());
    for (i, id) in ids.iter().enumerate() {
        let at = |f: &str| format!("identifiers[{i}]{f}");
        match &id.kind {
            None => violation(at(""), "is empty: set document, person, plate or firearm_serial"),
            Some(Kind::Document(d)) => {
                let country = d.issuing_country.trim().to_uppercase();
                if !is_country(&country) {
                    violation(at(".document.issuing_country"), "must be an ISO 3166-1 alpha-2 code, e.g. DE");
                }
                if squash(&d.number).is_empty() {
                    violation(at(".document.number"), "is required");
                }
                out.push(document(&country, &d.number));
            }
            Some(Kind::Person(p)) => {
                if words(&p.family_name).is_empty() {
                    violation(at(".person.family_name"), "is required");
                }
                if !is_date(p.date_of_birth.trim()) {
                    violation(at(".person.date_of_birth"), "must be a date YYYY-MM-DD");
                }
                out.push(name(&p.family_name, &p.given_names, &p.date_of_birth));
            }
            Some(Kind::Plate(p)) => {
                if squash(p).is_empty() {
                    violation(at(".plate"), "is empty");
                }
                out.push(plate(p));
            }
            Some(Kind::FirearmSerial(f)) => {
                if squash(f).is_empty() {
                    violation(at(".firearm_serial"), "is empty");
                }
                out.push(firearm(f));
            }
        }
    }
    if !bad.is_empty() {
        return Err(crate::validate::capped(bad, 0));
    }
    let mut seen = std::collections::HashSet::new();
    out.retain(|x| seen.insert(x.clone()));
    Ok(out)
}

/// The gateway's key for pseudonyms (HMAC-SHA256).
#[derive(Clone)]
pub struct PseudonymKey([u8; 32]);

impl std::fmt::Debug for PseudonymKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PseudonymKey(..)")
    }
}

impl PseudonymKey {
    /// A key from 32 bytes.
    pub fn new(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The pseudonym of a normalised identifier: HMAC-SHA256, lower-case hex.
    pub fn pseudonym(&self, normalised: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(normalised.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// The pseudonyms of every identifier in `alert`.
    pub fn of_alert(&self, alert: &Alert) -> Vec<String> {
        of_alert(alert).iter().map(|i| self.pseudonym(i)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_read_as_people_write_them() {
        let read = |t: &str| read_name(t).map(|r| name(&r.family, &r.given, "1981-11-02"));
        let want = Ok("name:RINALDI|MARCO|1981-11-02".to_owned());
        for text in
            ["Rinaldi, Marco", "RINALDI, Marco", "Marco Rinaldi", "Marco RINALDI", "RINALDI Marco", " rinaldi ,marco "]
        {
            assert_eq!(read(text), want, "{text}");
        }
        assert_eq!(read_name("Rinaldi, Marco").unwrap().guessed, None, "a comma says it");
        assert!(read_name("Marco Rinaldi").unwrap().guessed.is_some(), "a guess is told");
        assert_eq!(read("Lukas Emil BRANDT"), Ok("name:BRANDT|LUKAS EMIL|1981-11-02".to_owned()));
        assert_eq!(read_name("Lukas Emil Brandt"), Err(NameError::Ambiguous("Lukas Emil Brandt".into())));
        assert_eq!(read_name(" , "), Err(NameError::Empty));
        assert_eq!(read_name("Brandt").unwrap().family, "Brandt");
    }

    #[test]
    fn normalisation_table() {
        let cases = [
            ("document:de:c4j9 x1r27", Ok("document:DE:C4J9X1R27")),
            ("name: brandt |lukas  emil|1994-03-17", Ok("name:BRANDT|LUKAS EMIL|1994-03-17")),
            ("plate:b-kl 4471", Ok("plate:BKL4471")),
            ("firearm:ab-12.345", Ok("firearm:AB12345")),
            ("document:DEU:1", Err(())),
            ("name:X|Y|17.03.1994", Err(())),
            ("passport:1", Err(())),
            ("plate:", Err(())),
        ];
        for (input, want) in cases {
            assert_eq!(parse(input).map_err(|_| ()), want.map(str::to_owned), "{input}");
        }
    }

    #[test]
    fn lookup_identifiers_name_each_bad_field() {
        use crate::wire::{DocumentNumber, PersonName};
        let ok = [
            LookupIdentifier {
                kind: Some(Kind::Document(DocumentNumber {
                    issuing_country: "de".into(),
                    number: "c4j9 x1r27".into(),
                })),
            },
            LookupIdentifier { kind: Some(Kind::Plate("b-kl 4471".into())) },
            LookupIdentifier { kind: Some(Kind::Plate("BKL4471".into())) },
        ];
        assert_eq!(of_lookup(&ok, 8).unwrap(), vec!["document:DE:C4J9X1R27", "plate:BKL4471"]);
        let bad = [
            LookupIdentifier { kind: None },
            LookupIdentifier {
                kind: Some(Kind::Person(PersonName {
                    family_name: " ".into(),
                    given_names: "Lukas".into(),
                    date_of_birth: "17.03.1994".into(),
                })),
            },
            LookupIdentifier {
                kind: Some(Kind::Document(DocumentNumber { issuing_country: "DEU".into(), number: "1".into() })),
            },
            LookupIdentifier { kind: Some(Kind::FirearmSerial("-".into())) },
        ];
        let fields: Vec<String> = of_lookup(&bad, 8).unwrap_err().violations.into_iter().map(|v| v.field).collect();
        assert_eq!(
            fields,
            [
                "identifiers[0]",
                "identifiers[1].person.family_name",
                "identifiers[1].person.date_of_birth",
                "identifiers[2].document.issuing_country",
                "identifiers[3].firearm_serial"
            ]
        );
        assert_eq!(of_lookup(&[], 8).unwrap_err().violations[0].field, "identifiers");
        assert_eq!(of_lookup(&ok, 2).unwrap_err().violations[0].field, "identifiers");

        // A million empty entries: one violation, for the count, nothing walked.
        let flood = vec![LookupIdentifier { kind: None }; 1_000_000];
        let e = of_lookup(&flood, 64).unwrap_err();
        assert_eq!(e.violations.len(), 1);
        assert!(e.violations[0].description.starts_with("1000000 given"), "{e}");
        // Within the count, every entry bad: capped with a count of the rest.
        let e = of_lookup(&vec![LookupIdentifier { kind: None }; 64], 64).unwrap_err();
        assert_eq!(e.violations.len(), crate::validate::MAX_VIOLATIONS + 1);
        assert_eq!(e.violations.last().unwrap().description, "32 more not listed");
    }

    #[test]
    fn pseudonyms_are_keyed_and_stable() {
        let a = PseudonymKey::new([1; 32]);
        let b = PseudonymKey::new([2; 32]);
        let id = document("DE", "C4J9X1R27");
        assert_eq!(a.pseudonym(&id), a.pseudonym(&parse("document:de:c4j9x1r27").unwrap()));
        assert_ne!(a.pseudonym(&id), b.pseudonym(&id));
        assert_eq!(a.pseudonym(&id).len(), 64);
        assert!(!a.pseudonym(&id).contains("C4J9"));
    }
}
