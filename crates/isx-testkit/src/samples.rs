//! Realistic alerts for tests and the demo. All names, numbers and places are invented.

use isx_core::timestamp::from_datetime;
use isx_core::wire::{
    Action, Alert, AlertObject, Category, Document, DocumentKind, HandlingCode, InfoReliability, Labels, ObjectKind,
    Pap, SourceReliability, SpecialCategory, SpecialCategoryData, Subject, SubjectRole, Tlp,
};
use time::{Duration, OffsetDateTime};

/// A new random alert id (UUID v4).
pub fn new_alert_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// A valid alert skeleton: created now, expiring in 7 days, TLP:AMBER, H0, B2.
pub fn base(origin: &str, addressees: &[&str], category: Category, action: Action) -> Alert {
    let now = OffsetDateTime::now_utc();
    Alert {
        alert_id: new_alert_id(),
        origin: origin.into(),
        created_at: Some(from_datetime(now)),
        expires_at: Some(from_datetime(now + Duration::days(7))),
        category: category as i32,
        action: action as i32,
        labels: Some(Labels {
            tlp: Tlp::Amber as i32,
            handling_code: HandlingCode::H0 as i32,
            handling_note: String::new(),
            source_reliability: SourceReliability::B as i32,
            info_reliability: InfoReliability::InfoReliability2 as i32,
            pap: Pap::Green as i32,
            tags: vec![],
            onward: vec![],
        }),
        addressees: addressees.iter().map(|a| (*a).to_owned()).collect(),
        purpose: "prevention, investigation and detection of serious crime".into(),
        legal_basis: "Directive (EU) 2016/680 Art. 8; Council Framework Decision 2006/960/JHA".into(),
        ..Default::default()
    }
}

fn passport(number: &str, country: &str) -> Document {
    Document { kind: DocumentKind::Passport as i32, number: number.into(), issuing_country: country.into() }
}

/// A returning foreign terrorist fighter, for a discreet check at the border.
pub fn foreign_fighter(origin: &str, addressees: &[&str]) -> Alert {
    let mut a = base(origin, addressees, Category::Terrorism, Action::Check);
    let labels = a.labels.as_mut().expect("base sets labels");
    labels.tlp = Tlp::Green as i32;
    labels.source_reliability = SourceReliability::A as i32;
    labels.tags = vec!["foreign-terrorist-fighter".into(), "operation:kestrel".into()];
    a.purpose = "prevention and detection of terrorist offences".into();
    a.subjects = vec![Subject {
        role: SubjectRole::Suspect as i32,
        family_name: "Brandt".into(),
        given_names: "Lukas Emil".into(),
        date_of_birth: "1994-03-17".into(),
        nationality: "DE".into(),
        documents: vec![passport("C4J9X1R27", "DE")],
        special_categories: vec![SpecialCategoryData {
            category: SpecialCategory::Biometric as i32,
            detail: "fingerprints held under AFIS reference DE-AFIS-2026-118834".into(),
        }],
        minor: false,
    }];
    a.objects = vec![AlertObject {
        kind: ObjectKind::Vehicle as i32,
        identifier: "B-KL 4471".into(),
        description: "grey Volkswagen Passat estate".into(),
        country: "DE".into(),
    }];
    a.narrative = "Subject is believed to have returned from a conflict zone via Istanbul. Discreet check requested; do not alert the subject. Report travel companions and route.".into();
    a
}

/// A migrant-smuggling network moving people by van and boat.
pub fn migrant_smuggling(origin: &str, addressees: &[&str]) -> Alert {
    let mut a = base(origin, addressees, Category::MigrantSmuggling, Action::Check);
    let labels = a.labels.as_mut().expect("base sets labels");
    labels.handling_code = HandlingCode::H2 as i32;
    labels.info_reliability = InfoReliability::InfoReliability3 as i32;
    labels.tags = vec!["operation:tidewater".into()];
    a.subjects = vec![
        Subject {
            role: SubjectRole::Suspect as i32,
            family_name: "Rinaldi".into(),
            given_names: "Marco".into(),
            date_of_birth: "1981-11-02".into(),
            nationality: "IT".into(),
            documents: vec![Document {
                kind: DocumentKind::IdCard as i32,
                number: "CA48213KX".into(),
                issuing_country: "IT".into(),
            }],
            ..Default::default()
        },
        Subject {
            role: SubjectRole::Suspect as i32,
            family_name: "Hadzic".into(),
            given_names: "Emir".into(),
            date_of_birth: "1988-06-21".into(),
            nationality: "BA".into(),
            documents: vec![passport("B0931177", "BA")],
            ..Default::default()
        },
    ];
    a.objects = vec![
        AlertObject {
            kind: ObjectKind::Vehicle as i32,
            identifier: "FG 512 ZT".into(),
            description: "white Fiat Ducato van, false floor".into(),
            country: "IT".into(),
        },
        AlertObject {
            kind: ObjectKind::Vessel as i32,
            identifier: "LI-7731".into(),
            description: "12 m rigid inflatable boat".into(),
            country: "IT".into(),
        },
    ];
    a.narrative = "Network organises crossings from the Libyan coast to Lampedusa and onward transport by van to Ventimiglia. Next run expected within ten days.".into();
    a
}

/// A trafficked minor reported missing, with health data that helps identify her.
pub fn trafficking_victim(origin: &str, addressees: &[&str]) -> Alert {
    let mut a = base(origin, addressees, Category::TraffickingInHumanBeings, Action::Missing);
    let labels = a.labels.as_mut().expect("base sets labels");
    labels.tlp = Tlp::AmberStrict as i32;
    labels.handling_code = HandlingCode::H1 as i32;
    a.purpose = "protection of a vulnerable person (SIS Art. 32)".into();
    a.subjects = vec![
        Subject {
            role: SubjectRole::Victim as i32,
            family_name: "Popescu".into(),
            given_names: "Ana Maria".into(),
            date_of_birth: "2010-08-09".into(),
            nationality: "RO".into(),
            documents: vec![Document {
                kind: DocumentKind::IdCard as i32,
                number: "RX771203".into(),
                issuing_country: "RO".into(),
            }],
            special_categories: vec![SpecialCategoryData {
                category: SpecialCategory::Health as i32,
                detail: "insulin-dependent diabetic; needs medication within 48 hours".into(),
            }],
            minor: true,
        },
        Subject {
            role: SubjectRole::Suspect as i32,
            family_name: "Dumont".into(),
            given_names: "Cyril".into(),
            date_of_birth: "1979-01-30".into(),
            nationality: "FR".into(),
            documents: vec![passport("19FV55021", "FR")],
            ..Default::default()
        },
    ];
    a.narrative =
        "Victim last seen at Lyon Part-Dieu with the suspect, believed to be heading for Munich or Milan.".into();
    a
}
