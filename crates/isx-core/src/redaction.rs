//! Reduced views of an alert: `redacted` (by a profile) and `hit_only`.
//!
//! A [`RedactionProfile`] lists which personal-data fields a redacted view
//! removes and which it generalises. Special-category data (LED Art. 10) is
//! always removed from a redacted view: a profile that does not say so is
//! refused. Each function returns the view and the concrete field paths
//! (e.g. `subjects[0].documents[1].number`) that the recipient does not see.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::wire::Alert;

/// A field that a redaction profile may remove or generalise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Field {
    /// Each subject's family name.
    #[serde(rename = "subjects.family_name")]
    FamilyName,
    /// Each subject's given names.
    #[serde(rename = "subjects.given_names")]
    GivenNames,
    /// Each subject's date of birth.
    #[serde(rename = "subjects.date_of_birth")]
    DateOfBirth,
    /// Each subject's nationality.
    #[serde(rename = "subjects.nationality")]
    Nationality,
    /// Each subject's documents, whole.
    #[serde(rename = "subjects.documents")]
    Documents,
    /// The number of each subject's documents (kind and issuing country stay).
    #[serde(rename = "subjects.documents.number")]
    DocumentNumbers,
    /// Each subject's special-category data.
    #[serde(rename = "subjects.special_categories")]
    SpecialCategories,
    /// The identifier (plate, serial, number) of each object.
    #[serde(rename = "objects.identifier")]
    ObjectIdentifiers,
    /// The description of each object.
    #[serde(rename = "objects.description")]
    ObjectDescriptions,
    /// The free-text narrative.
    #[serde(rename = "narrative")]
    Narrative,
    /// The H3 handling note.
    #[serde(rename = "labels.handling_note")]
    HandlingNote,
}

impl Field {
    /// The dotted name used in config.
    pub fn name(self) -> &'static str {
        match self {
            Self::FamilyName => "subjects.family_name",
            Self::GivenNames => "subjects.given_names",
            Self::DateOfBirth => "subjects.date_of_birth",
            Self::Nationality => "subjects.nationality",
            Self::Documents => "subjects.documents",
            Self::DocumentNumbers => "subjects.documents.number",
            Self::SpecialCategories => "subjects.special_categories",
            Self::ObjectIdentifiers => "objects.identifier",
            Self::ObjectDescriptions => "objects.description",
            Self::Narrative => "narrative",
            Self::HandlingNote => "labels.handling_note",
        }
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which fields a `redacted` view removes or generalises.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedactionProfile {
    /// Fields removed entirely.
    pub remove: Vec<Field>,
    /// Dates reduced to the year ("1994-03-17" becomes "1994"); only `subjects.date_of_birth`.
    #[serde(default)]
    pub year_only: Vec<Field>,
}

impl Default for RedactionProfile {
    /// Names and document numbers removed, date of birth reduced to the year,
    /// special categories and the narrative dropped.
    fn default() -> Self {
        Self {
            remove: vec![
                Field::FamilyName,
                Field::GivenNames,
                Field::DocumentNumbers,
                Field::SpecialCategories,
                Field::Narrative,
            ],
            year_only: vec![Field::DateOfBirth],
        }
    }
}

/// Why a redaction profile is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProfileError {
    /// Special-category data must always be removed.
    #[error(
        "redaction.remove must include \"subjects.special_categories\" (LED Art. 10 data never reaches a redacted view)"
    )]
    KeepsSpecialCategories,
    /// Only dates can be reduced to a year.
    #[error("redaction.year_only: {0} is not a date; only \"subjects.date_of_birth\" can be reduced to the year")]
    NotADate(Field),
    /// A field is both removed and generalised.
    #[error("redaction: {0} is listed in both remove and year_only")]
    Both(Field),
}

impl RedactionProfile {
    /// Checks the profile's rules.
    pub fn validate(&self) -> Result<(), ProfileError> {
        if !self.remove.contains(&Field::SpecialCategories) {
            return Err(ProfileError::KeepsSpecialCategories);
        }
        for f in &self.year_only {
            if *f != Field::DateOfBirth {
                return Err(ProfileError::NotADate(*f));
            }
            if self.remove.contains(f) {
                return Err(ProfileError::Both(*f));
            }
        }
        Ok(())
    }

    fn removes(&self, f: Field) -> bool {
        self.remove.contains(&f)
    }
}

/// The redacted view of `alert` under `profile`, and the field paths withheld.
pub fn redact(alert: &Alert, profile: &RedactionProfile) -> (Alert, Vec<String>) {
    let mut view = alert.clone();
    let mut removed = Vec::new();
    for (i, s) in view.subjects.iter_mut().enumerate() {
        let p = format!("subjects[{i}]");
        let mut take = |field: Field, value: &mut String, name: &str| {
            if profile.removes(field) && !value.is_empty() {
                value.clear();
                removed.push(format!("{p}.{name}"));
            }
        };
        take(Field::FamilyName, &mut s.family_name, "family_name");
        take(Field::GivenNames, &mut s.given_names, "given_names");
        take(Field::DateOfBirth, &mut s.date_of_birth, "date_of_birth");
        take(Field::Nationality, &mut s.nationality, "nationality");
        if profile.year_only.contains(&Field::DateOfBirth) && s.date_of_birth.len() > 4 {
            s.date_of_birth.truncate(4);
            removed.push(format!("{p}.date_of_birth"));
        }
        if profile.removes(Field::Documents) {
            for j in 0..s.documents.len() {
                removed.push(format!("{p}.documents[{j}]"));
            }
            s.documents.clear();
        } else if profile.removes(Field::DocumentNumbers) {
            for (j, d) in s.documents.iter_mut().enumerate() {
                if !d.number.is_empty() {
                    d.number.clear();
                    removed.push(format!("{p}.documents[{j}].number"));
                }
            }
        }
        if profile.removes(Field::SpecialCategories) {
            for j in 0..s.special_categories.len() {
                removed.push(format!("{p}.special_categories[{j}]"));
            }
            s.special_categories.clear();
        }
    }
    for (i, o) in view.objects.iter_mut().enumerate() {
        if profile.removes(Field::ObjectIdentifiers) && !o.identifier.is_empty() {
            o.identifier.clear();
            removed.push(format!("objects[{i}].identifier"));
        }
        if profile.removes(Field::ObjectDescriptions) && !o.description.is_empty() {
            o.description.clear();
            removed.push(format!("objects[{i}].description"));
        }
    }
    if profile.removes(Field::Narrative) && !view.narrative.is_empty() {
        view.narrative.clear();
        removed.push("narrative".into());
    }
    if profile.removes(Field::HandlingNote)
        && let Some(l) = view.labels.as_mut()
        && !l.handling_note.is_empty()
    {
        l.handling_note.clear();
        removed.push("labels.handling_note".into());
    }
    (view, removed)
}

/// The hit-only view: the alert reference, its holder, category and action.
pub fn hit_only(alert: &Alert) -> (Alert, Vec<String>) {
    let view = Alert {
        alert_id: alert.alert_id.clone(),
        origin: alert.origin.clone(),
        category: alert.category,
        action: alert.action,
        ..Default::default()
    };
    let mut removed = Vec::new();
    let mut note = |present: bool, name: &str| {
        if present {
            removed.push(name.to_owned());
        }
    };
    note(alert.created_at.is_some(), "created_at");
    note(alert.expires_at.is_some(), "expires_at");
    note(alert.labels.is_some(), "labels");
    note(!alert.addressees.is_empty(), "addressees");
    note(!alert.purpose.is_empty(), "purpose");
    note(!alert.legal_basis.is_empty(), "legal_basis");
    note(!alert.subjects.is_empty(), "subjects");
    note(!alert.objects.is_empty(), "objects");
    note(!alert.narrative.is_empty(), "narrative");
    note(!alert.forwarded_from.is_empty(), "forwarded_from");
    note(alert.hops != 0, "hops");
    (view, removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{AlertObject, Document, SpecialCategoryData, Subject};

    fn alert() -> Alert {
        Alert {
            alert_id: "a".into(),
            origin: "de-police".into(),
            category: 3,
            action: 1,
            purpose: "p".into(),
            narrative: "seen with X".into(),
            subjects: vec![Subject {
                role: 1,
                family_name: "Brandt".into(),
                given_names: "Lukas".into(),
                date_of_birth: "1994-03-17".into(),
                nationality: "DE".into(),
                documents: vec![Document { kind: 1, number: "C4J9".into(), issuing_country: "DE".into() }],
                special_categories: vec![SpecialCategoryData { category: 7, detail: "diabetic".into() }],
                minor: false,
            }],
            objects: vec![AlertObject {
                kind: 1,
                identifier: "B-KL 1".into(),
                description: "grey".into(),
                country: "DE".into(),
            }],
            ..Default::default()
        }
    }

    #[test]
    fn default_profile() {
        let (view, removed) = redact(&alert(), &RedactionProfile::default());
        let s = &view.subjects[0];
        assert_eq!((s.family_name.as_str(), s.given_names.as_str(), s.date_of_birth.as_str()), ("", "", "1994"));
        assert_eq!(s.nationality, "DE");
        assert_eq!(s.documents[0].number, "");
        assert_eq!(s.documents[0].issuing_country, "DE");
        assert!(s.special_categories.is_empty());
        assert!(view.narrative.is_empty());
        assert_eq!(view.objects[0].identifier, "B-KL 1");
        assert_eq!(
            removed,
            vec![
                "subjects[0].family_name",
                "subjects[0].given_names",
                "subjects[0].date_of_birth",
                "subjects[0].documents[0].number",
                "subjects[0].special_categories[0]",
                "narrative"
            ]
        );
    }

    #[test]
    fn hit_only_keeps_four_fields() {
        let (view, removed) = hit_only(&alert());
        assert_eq!(
            view,
            Alert { alert_id: "a".into(), origin: "de-police".into(), category: 3, action: 1, ..Default::default() }
        );
        assert_eq!(removed, vec!["purpose", "subjects", "objects", "narrative"]);
    }

    #[test]
    fn profile_rules() {
        let cases: &[(&str, Result<(), &str>)] = &[
            (r#"remove = ["subjects.special_categories"]"#, Ok(())),
            (r#"remove = ["narrative"]"#, Err("must include")),
            (
                r#"remove = ["subjects.special_categories"]
year_only = ["narrative"]"#,
                Err("not a date"),
            ),
            (
                r#"remove = ["subjects.special_categories", "subjects.date_of_birth"]
year_only = ["subjects.date_of_birth"]"#,
                Err("both"),
            ),
        ];
        for (text, expect) in cases {
            let profile: RedactionProfile = serde_json::from_value(toml_like(text)).unwrap();
            match (profile.validate(), expect) {
                (Ok(()), Ok(())) => {}
                (Err(e), Err(needle)) => assert!(e.to_string().contains(needle), "{e}"),
                (got, want) => panic!("{text}: {got:?} vs {want:?}"),
            }
        }
    }

    /// Parses the two-key TOML subset used above into JSON.
    fn toml_like(text: &str) -> serde_json::Value {
        let mut map = serde_json::Map::new();
        for line in text.lines() {
            let (k, v) = line.split_once(" = ").unwrap();
            map.insert(k.into(), serde_json::from_str(v).unwrap());
        }
        serde_json::Value::Object(map)
    }
}
