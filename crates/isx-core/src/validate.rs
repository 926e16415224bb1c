//! Field-by-field validation of a published alert.
//!
//! [`validate_alert`] reports *every* bad field at once, each as a
//! [`FieldViolation`] whose `field` is a path such as `subjects[0].date_of_birth`,
//! so the gateway can answer with one `google.rpc.BadRequest`.

use std::collections::HashSet;
use std::fmt;

use crate::node::NodeId;
use crate::timestamp::to_unix_millis;
use crate::wire::{
    Action, Alert, Category, DocumentKind, HandlingCode, InfoReliability, ObjectKind, Pap, SourceReliability,
    SpecialCategory, SubjectRole, Tlp,
};

/// One bad field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    /// The field path, e.g. `labels.tlp` or `subjects[1].documents[0].number`.
    pub field: String,
    /// What is wrong, in words a user can act on.
    pub description: String,
}

/// A message (an alert, a lookup) failed validation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ValidationError {
    /// Every bad field, in field order.
    pub violations: Vec<FieldViolation>,
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, v) in self.violations.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{}: {}", v.field, v.description)?;
        }
        Ok(())
    }
}

/// Bounds on free text, so that one alert cannot exhaust a recipient.
#[derive(Debug, Clone, Copy)]
pub struct TextLimits {
    /// Longest narrative, in bytes.
    pub narrative: usize,
    /// Longest short field (names, purpose, legal basis, tags), in bytes.
    pub short: usize,
    /// Most subjects, objects, addressees or tags in one list.
    pub list: usize,
}

impl Default for TextLimits {
    fn default() -> Self {
        Self { narrative: 16 * 1024, short: 256, list: 64 }
    }
}

/// Most violations one error lists; the rest are counted (see [`capped`]).
pub const MAX_VIOLATIONS: usize = 32;

/// `violations` with at most [`MAX_VIOLATIONS`] entries: the rest become
/// one last entry saying how many more there were, so that an error built
/// from hostile input stays small.
pub fn capped(mut violations: Vec<FieldViolation>, more: usize) -> ValidationError {
    let more = more + violations.len().saturating_sub(MAX_VIOLATIONS);
    violations.truncate(MAX_VIOLATIONS);
    if more > 0 {
        violations.push(FieldViolation { field: "(more)".into(), description: format!("{more} more not listed") });
    }
    ValidationError { violations }
}

struct Check {
    violations: Vec<FieldViolation>,
    /// Violations found beyond [`MAX_VIOLATIONS`].
    more: usize,
}

impl Check {
    fn fail(&mut self, field: impl Into<String>, description: impl Into<String>) {
        if self.violations.len() >= MAX_VIOLATIONS {
            self.more += 1;
            return;
        }
        self.violations.push(FieldViolation { field: field.into(), description: description.into() });
    }

    fn finish(self) -> Result<(), ValidationError> {
        if self.violations.is_empty() { Ok(()) } else { Err(capped(self.violations, self.more)) }
    }

    fn required_text(&mut self, field: &str, value: &str, max: usize) {
        if value.trim().is_empty() {
            self.fail(field, "is required");
        } else {
            self.text(field, value, max);
        }
    }

    fn text(&mut self, field: &str, value: &str, max: usize) {
        if value.len() > max {
            self.fail(field, format!("is {} bytes long; the limit is {max}", value.len()));
        } else if value.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
            self.fail(field, "contains control characters");
        }
    }

    fn enum_set<E: Copy + PartialEq + fmt::Debug>(
        &mut self,
        field: &str,
        raw: i32,
        parsed: Option<E>,
        unspecified: E,
        names: &str,
    ) {
        match parsed {
            None => self.fail(field, format!("{raw} is not a known value; use one of {names}")),
            Some(v) if v == unspecified => self.fail(field, format!("is required; use one of {names}")),
            Some(_) => {}
        }
    }

    fn list_len(&mut self, field: &str, len: usize, max: usize) {
        if len > max {
            self.fail(field, format!("has {len} entries; the limit is {max}"));
        }
    }

    fn country(&mut self, field: &str, value: &str, required: bool) {
        if value.is_empty() {
            if required {
                self.fail(field, "is required (ISO 3166-1 alpha-2, e.g. \"DE\")");
            }
        } else if !is_country(value) {
            self.fail(field, format!("{value:?} is not an ISO 3166-1 alpha-2 code such as \"DE\""));
        }
    }
}

fn names_of<E>(all: &[E], name: impl Fn(&E) -> &'static str) -> String {
    let names: Vec<&str> = all.iter().map(name).collect();
    names.join(", ")
}

/// True for two upper-case ASCII letters.
pub fn is_country(s: &str) -> bool {
    s.len() == 2 && s.bytes().all(|b| b.is_ascii_uppercase())
}

/// True for a ULID (26 Crockford base-32 characters) or a UUID (8-4-4-4-12 hex).
pub fn is_alert_id(s: &str) -> bool {
    const CROCKFORD: &[u8] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    let ulid =
        s.len() == 26 && s.bytes().all(|b| CROCKFORD.contains(&b.to_ascii_uppercase())) && s.as_bytes()[0] <= b'7';
    let uuid = s.len() == 36
        && s.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_hexdigit(),
        });
    ulid || uuid
}

/// True for a real calendar date `YYYY-MM-DD` (no 31 February) from 1850 to 2200.
pub fn is_date(s: &str) -> bool {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    s.len() == 10 && time::Date::parse(s, format).is_ok_and(|d| (1850..=2200).contains(&d.year()))
}

/// Validates an alert as published by `origin`'s node at `now_ms` (Unix milliseconds).
///
/// `hops` must be zero: the gateway sets it. `origin` is checked against the
/// caller elsewhere; here it must only be a well-formed node id.
pub fn validate_alert(alert: &Alert, now_ms: u64, limits: &TextLimits) -> Result<(), ValidationError> {
    let mut c = Check { violations: Vec::new(), more: 0 };

    // Lists are counted before any is walked: an alert of a million empty
    // subjects costs one comparison, not a million checks.
    let tags = alert.labels.as_ref().map_or(0, |l| l.tags.len());
    c.list_len("labels.tags", tags, limits.list);
    c.list_len("addressees", alert.addressees.len(), limits.list);
    c.list_len("subjects", alert.subjects.len(), limits.list);
    c.list_len("objects", alert.objects.len(), limits.list);
    if c.violations.is_empty() {
        for (i, s) in alert.subjects.iter().enumerate() {
            c.list_len(&format!("subjects[{i}].documents"), s.documents.len(), limits.list);
            c.list_len(&format!("subjects[{i}].special_categories"), s.special_categories.len(), limits.list);
        }
    }
    if !c.violations.is_empty() {
        return c.finish();
    }

    if alert.alert_id.is_empty() {
        c.fail("alert_id", "is required (a ULID or UUID)");
    } else if !is_alert_id(&alert.alert_id) {
        c.fail("alert_id", format!("{:?} is neither a ULID nor a UUID", alert.alert_id));
    }
    if let Err(e) = NodeId::new(alert.origin.clone()) {
        c.fail("origin", e.to_string());
    }

    match (&alert.created_at, &alert.expires_at) {
        (None, _) => c.fail("created_at", "is required"),
        (Some(created), _) if to_unix_millis(created) > now_ms + 5 * 60 * 1000 => {
            c.fail("created_at", "is more than 5 minutes in the future")
        }
        _ => {}
    }
    match &alert.expires_at {
        None => c.fail("expires_at", "is required"),
        Some(exp) => {
            if let Some(created) = &alert.created_at
                && to_unix_millis(exp) <= to_unix_millis(created)
            {
                c.fail("expires_at", "must be after created_at");
            } else if to_unix_millis(exp) <= now_ms {
                c.fail("expires_at", "is in the past");
            }
        }
    }

    c.enum_set(
        "category",
        alert.category,
        Category::try_from(alert.category).ok(),
        Category::Unspecified,
        "CATEGORY_TERRORISM, CATEGORY_MIGRANT_SMUGGLING, ...",
    );
    c.enum_set(
        "action",
        alert.action,
        Action::try_from(alert.action).ok(),
        Action::Unspecified,
        &names_of(&[Action::Arrest, Action::Missing, Action::Check, Action::Seize, Action::Inform], |a| {
            a.as_str_name()
        }),
    );

    match &alert.labels {
        None => c.fail("labels", "is required (at least tlp, handling_code and the two reliability codes)"),
        Some(l) => {
            c.enum_set(
                "labels.tlp",
                l.tlp,
                Tlp::try_from(l.tlp).ok(),
                Tlp::Unspecified,
                &names_of(&[Tlp::Clear, Tlp::Green, Tlp::Amber, Tlp::AmberStrict, Tlp::Red], |t| t.as_str_name()),
            );
            c.enum_set(
                "labels.handling_code",
                l.handling_code,
                HandlingCode::try_from(l.handling_code).ok(),
                HandlingCode::Unspecified,
                &names_of(&[HandlingCode::H0, HandlingCode::H1, HandlingCode::H2, HandlingCode::H3], |h| {
                    h.as_str_name()
                }),
            );
            if l.handling_code == HandlingCode::H3 as i32 && l.handling_note.trim().is_empty() {
                c.fail("labels.handling_note", "is required with HANDLING_CODE_H3");
            }
            c.text("labels.handling_note", &l.handling_note, limits.short);
            c.enum_set(
                "labels.source_reliability",
                l.source_reliability,
                SourceReliability::try_from(l.source_reliability).ok(),
                SourceReliability::Unspecified,
                "SOURCE_RELIABILITY_A, _B, _C, _X",
            );
            c.enum_set(
                "labels.info_reliability",
                l.info_reliability,
                InfoReliability::try_from(l.info_reliability).ok(),
                InfoReliability::Unspecified,
                "INFO_RELIABILITY_1, _2, _3, _4",
            );
            if Pap::try_from(l.pap).is_err() {
                c.fail("labels.pap", format!("{} is not a known value", l.pap));
            }
            for (i, tag) in l.tags.iter().enumerate() {
                c.required_text(&format!("labels.tags[{i}]"), tag, limits.short);
            }
        }
    }

    let mut seen = HashSet::new();
    for (i, a) in alert.addressees.iter().enumerate() {
        let field = format!("addressees[{i}]");
        match NodeId::new(a.clone()) {
            Err(e) => c.fail(field, e.to_string()),
            Ok(_) if *a == alert.origin => c.fail(field, "the origin cannot address itself"),
            Ok(_) if !seen.insert(a) => c.fail(field, format!("{a:?} is listed twice")),
            Ok(_) => {}
        }
    }

    c.required_text("purpose", &alert.purpose, limits.short);
    c.required_text("legal_basis", &alert.legal_basis, limits.short);

    for (i, s) in alert.subjects.iter().enumerate() {
        let p = format!("subjects[{i}]");
        c.enum_set(
            &format!("{p}.role"),
            s.role,
            SubjectRole::try_from(s.role).ok(),
            SubjectRole::Unspecified,
            "SUBJECT_ROLE_SUSPECT, _VICTIM, _WITNESS, _MISSING_PERSON, _CONTACT",
        );
        if s.family_name.trim().is_empty() && s.documents.is_empty() {
            c.fail(format!("{p}.family_name"), "is required unless the subject has a document");
        }
        c.text(&format!("{p}.family_name"), &s.family_name, limits.short);
        c.text(&format!("{p}.given_names"), &s.given_names, limits.short);
        if !s.date_of_birth.is_empty() && !is_date(&s.date_of_birth) {
            c.fail(format!("{p}.date_of_birth"), format!("{:?} is not a date YYYY-MM-DD", s.date_of_birth));
        }
        c.country(&format!("{p}.nationality"), &s.nationality, false);
        for (j, d) in s.documents.iter().enumerate() {
            let q = format!("{p}.documents[{j}]");
            c.enum_set(
                &format!("{q}.kind"),
                d.kind,
                DocumentKind::try_from(d.kind).ok(),
                DocumentKind::Unspecified,
                "DOCUMENT_KIND_PASSPORT, _ID_CARD, _RESIDENCE_PERMIT, ...",
            );
            c.required_text(&format!("{q}.number"), &d.number, limits.short);
            c.country(&format!("{q}.issuing_country"), &d.issuing_country, true);
        }
        for (j, sc) in s.special_categories.iter().enumerate() {
            let q = format!("{p}.special_categories[{j}]");
            c.enum_set(
                &format!("{q}.category"),
                sc.category,
                SpecialCategory::try_from(sc.category).ok(),
                SpecialCategory::Unspecified,
                "SPECIAL_CATEGORY_HEALTH, _BIOMETRIC, ...",
            );
            c.text(&format!("{q}.detail"), &sc.detail, limits.short);
        }
    }

    for (i, o) in alert.objects.iter().enumerate() {
        let p = format!("objects[{i}]");
        c.enum_set(
            &format!("{p}.kind"),
            o.kind,
            ObjectKind::try_from(o.kind).ok(),
            ObjectKind::Unspecified,
            "OBJECT_KIND_VEHICLE, _FIREARM, _DOCUMENT, ...",
        );
        c.required_text(&format!("{p}.identifier"), &o.identifier, limits.short);
        c.text(&format!("{p}.description"), &o.description, limits.short);
        c.country(&format!("{p}.country"), &o.country, false);
    }

    c.text("narrative", &alert.narrative, limits.narrative);
    if !alert.forwarded_from.is_empty() {
        if !is_alert_id(&alert.forwarded_from) {
            c.fail("forwarded_from", format!("{:?} is neither a ULID nor a UUID", alert.forwarded_from));
        } else if alert.forwarded_from == alert.alert_id {
            c.fail("forwarded_from", "cannot name the alert itself");
        }
    }
    if alert.hops != 0 {
        c.fail("hops", "is set by the gateway; leave it 0");
    }

    c.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{Document, Labels, Subject};

    const NOW: u64 = 1_764_324_000_000;

    fn good() -> Alert {
        Alert {
            alert_id: "01JDQ2ZK6M8V7T1W3X5Y9A0BCD".into(),
            origin: "de-police".into(),
            created_at: Some(crate::timestamp::from_unix_millis(NOW - 1000)),
            expires_at: Some(crate::timestamp::from_unix_millis(NOW + 86_400_000)),
            category: Category::Terrorism as i32,
            action: Action::Check as i32,
            labels: Some(Labels {
                tlp: Tlp::Amber as i32,
                handling_code: HandlingCode::H0 as i32,
                source_reliability: SourceReliability::B as i32,
                info_reliability: InfoReliability::InfoReliability2 as i32,
                ..Default::default()
            }),
            addressees: vec!["fr-police".into()],
            purpose: "prevention of terrorist offences".into(),
            legal_basis: "Directive (EU) 2016/680 Art. 8".into(),
            subjects: vec![Subject {
                role: SubjectRole::Suspect as i32,
                family_name: "Muster".into(),
                date_of_birth: "1990-04-01".into(),
                documents: vec![Document {
                    kind: DocumentKind::Passport as i32,
                    number: "C01X00T47".into(),
                    issuing_country: "DE".into(),
                }],
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    /// Applies `edit` to a good alert and checks which fields are reported.
    fn check(edit: impl Fn(&mut Alert), expect_fields: &[&str]) {
        let mut alert = good();
        edit(&mut alert);
        let got: Vec<String> = match validate_alert(&alert, NOW, &TextLimits::default()) {
            Ok(()) => vec![],
            Err(e) => e.violations.into_iter().map(|v| v.field).collect(),
        };
        assert_eq!(got, expect_fields);
    }

    #[test]
    fn table() {
        check(|_| {}, &[]);
        check(|a| a.alert_id.clear(), &["alert_id"]);
        check(|a| a.alert_id = "not-an-id".into(), &["alert_id"]);
        check(|a| a.alert_id = "6f1c2a3b-0000-4000-8000-00000000abcd".into(), &[]);
        check(|a| a.origin = "DE".into(), &["origin"]);
        check(|a| a.created_at = None, &["created_at"]);
        check(|a| a.expires_at = Some(crate::timestamp::from_unix_millis(NOW - 10)), &["expires_at"]);
        check(|a| a.expires_at = a.created_at, &["expires_at"]);
        check(|a| a.category = 0, &["category"]);
        check(|a| a.category = 999, &["category"]);
        check(|a| a.action = 0, &["action"]);
        check(|a| a.labels = None, &["labels"]);
        check(|a| a.labels.as_mut().unwrap().tlp = 0, &["labels.tlp"]);
        check(|a| a.labels.as_mut().unwrap().handling_code = HandlingCode::H3 as i32, &["labels.handling_note"]);
        check(|a| a.addressees.push("fr-police".into()), &["addressees[1]"]);
        check(|a| a.addressees.push("de-police".into()), &["addressees[1]"]);
        check(|a| a.addressees.push("Bad Node".into()), &["addressees[1]"]);
        check(|a| a.purpose = " ".into(), &["purpose"]);
        check(|a| a.legal_basis.clear(), &["legal_basis"]);
        check(|a| a.subjects[0].date_of_birth = "01.04.1990".into(), &["subjects[0].date_of_birth"]);
        check(|a| a.subjects[0].role = 0, &["subjects[0].role"]);
        check(|a| a.subjects[0].nationality = "deu".into(), &["subjects[0].nationality"]);
        check(|a| a.subjects[0].documents[0].number.clear(), &["subjects[0].documents[0].number"]);
        check(|a| a.subjects[0].documents[0].issuing_country.clear(), &["subjects[0].documents[0].issuing_country"]);
        check(|a| a.narrative = "x".repeat(20_000), &["narrative"]);
        check(|a| a.forwarded_from = a.alert_id.clone(), &["forwarded_from"]);
        check(|a| a.hops = 2, &["hops"]);
        check(
            |a| {
                a.purpose.clear();
                a.category = 0;
            },
            &["category", "purpose"],
        );
    }

    #[test]
    fn message_lists_every_field() {
        let mut a = good();
        a.purpose.clear();
        a.legal_basis.clear();
        let msg = validate_alert(&a, NOW, &TextLimits::default()).unwrap_err().to_string();
        assert!(msg.contains("purpose: is required") && msg.contains("legal_basis: is required"), "{msg}");
    }

    #[test]
    fn lists_are_counted_before_they_are_walked_and_errors_are_capped() {
        // A million bad subjects: one violation, for the count, and no walk.
        let mut a = good();
        a.subjects = vec![Subject::default(); 1_000_000];
        let e = validate_alert(&a, NOW, &TextLimits::default()).unwrap_err();
        assert_eq!(e.violations.len(), 1, "{:?}", &e.violations[..2.min(e.violations.len())]);
        assert_eq!(e.violations[0].field, "subjects");
        assert!(e.violations[0].description.contains("1000000 entries; the limit is 64"));

        // Within the count but every entry bad: the list stops at the cap and says how many more.
        let mut a = good();
        a.subjects = vec![Subject::default(); 64];
        let e = validate_alert(&a, NOW, &TextLimits::default()).unwrap_err();
        assert_eq!(e.violations.len(), MAX_VIOLATIONS + 1);
        let last = e.violations.last().unwrap();
        assert_eq!((last.field.as_str(), last.description.as_str()), ("(more)", "96 more not listed"));
        assert!(e.to_string().len() < 4096, "the message stays small");
    }

    #[test]
    fn id_and_date_shapes() {
        assert!(is_alert_id("01JDQ2ZK6M8V7T1W3X5Y9A0BCD"));
        assert!(!is_alert_id("81JDQ2ZK6M8V7T1W3X5Y9A0BCD"));
        assert!(!is_alert_id("01JDQ2ZK6M8V7T1W3X5Y9A0BCU"));
        assert!(is_date("2001-12-31"));
        assert!(!is_date("2001-13-01"));
        assert!(!is_date("2001"));
        assert!(!is_date("2001-02-31"), "31 February is not a date");
        assert!(!is_date("2001-02-29"), "2001 is no leap year");
        assert!(is_date("2000-02-29"));
        assert!(!is_date("1849-12-31") && !is_date("2201-01-01"));
        assert!(!is_date("+2001-01-01") && !is_date("2001-1-01"));
    }
}
