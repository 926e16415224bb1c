//! Onward relay: a forwarded alert keeps the labels of the alert it relays,
//! or tightens them; it never loosens them.

use isx_core::timestamp::to_unix_millis;
use isx_core::wire::{Alert, HandlingCode, Labels};
use isx_core::{FieldViolation, ValidationError};

/// Rank for "tighter than": a higher rank may follow a lower one.
fn handling_rank(h: HandlingCode) -> Option<i32> {
    match h {
        HandlingCode::H0 => Some(0),
        HandlingCode::H1 => Some(1),
        HandlingCode::H2 => Some(2),
        _ => None,
    }
}

/// Checks `child` (the relay) against `parent` (the alert it relays).
pub fn check_labels(child: &Alert, parent: &Alert) -> Result<(), ValidationError> {
    let mut v = Vec::new();
    let mut fail = |field: &str, description: String| v.push(FieldViolation { field: field.into(), description });
    let (c, p) = (child.labels.clone().unwrap_or_default(), parent.labels.clone().unwrap_or_default());
    let name = |l: &Labels| l.tlp().as_str_name();
    // Tlp values are declared from CLEAR (1) to RED (5).
    if c.tlp < p.tlp {
        fail("labels.tlp", format!("{} would loosen the relayed alert's {}", name(&c), name(&p)));
    }
    let (ch, ph) = (c.handling_code(), p.handling_code());
    match (handling_rank(ch), handling_rank(ph)) {
        (Some(a), Some(b)) if a < b => fail(
            "labels.handling_code",
            format!("{} would loosen the relayed alert's {}", ch.as_str_name(), ph.as_str_name()),
        ),
        (Some(_), Some(_)) => {}
        _ if ch == HandlingCode::H3 && ph == HandlingCode::H3 => {
            if c.handling_note != p.handling_note {
                fail("labels.handling_note", "must repeat the relayed alert's H3 restriction unchanged".into());
            }
        }
        _ => fail(
            "labels.handling_code",
            format!(
                "{} cannot follow the relayed alert's {}: H3 restrictions are kept as they are",
                ch.as_str_name(),
                ph.as_str_name()
            ),
        ),
    }
    // Pap values are declared from CLEAR (1) to RED (4); 0 is unspecified.
    if p.pap != 0 && c.pap < p.pap {
        fail(
            "labels.pap",
            format!("{} would loosen the relayed alert's {}", c.pap().as_str_name(), p.pap().as_str_name()),
        );
    }
    if c.source_reliability != p.source_reliability {
        fail("labels.source_reliability", "must stay as the provider assessed it".into());
    }
    if c.info_reliability != p.info_reliability {
        fail("labels.info_reliability", "must stay as the provider assessed it".into());
    }
    for tag in &p.tags {
        if !c.tags.contains(tag) {
            fail("labels.tags", format!("drops the relayed alert's tag {tag:?}"));
        }
    }
    for (i, name) in c.onward.iter().enumerate() {
        if !p.onward.contains(name) {
            fail(
                &format!("labels.onward[{i}]"),
                format!("{name:?} is not allowed onward copies by the relayed alert's origin"),
            );
        }
    }
    if child.category != parent.category {
        fail("category", "must stay the relayed alert's category".into());
    }
    if child.action != parent.action {
        fail("action", "must stay the relayed alert's action".into());
    }
    if let (Some(ce), Some(pe)) = (&child.expires_at, &parent.expires_at)
        && to_unix_millis(ce) > to_unix_millis(pe)
    {
        fail("expires_at", "may not be later than the relayed alert's".into());
    }
    if v.is_empty() { Ok(()) } else { Err(ValidationError { violations: v }) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use isx_core::wire::{Pap, Tlp};

    fn parent() -> Alert {
        Alert {
            category: 3,
            action: 3,
            labels: Some(Labels {
                tlp: Tlp::Amber as i32,
                handling_code: HandlingCode::H1 as i32,
                pap: Pap::Green as i32,
                source_reliability: 2,
                info_reliability: 2,
                tags: vec!["op:x".into()],
                ..Default::default()
            }),
            expires_at: Some(isx_core::timestamp::from_unix_millis(10_000)),
            ..Default::default()
        }
    }

    fn check(edit: impl Fn(&mut Alert), fields: &[&str]) {
        let mut child = parent();
        edit(&mut child);
        let got: Vec<String> = check_labels(&child, &parent())
            .err()
            .map(|e| e.violations.into_iter().map(|v| v.field).collect())
            .unwrap_or_default();
        assert_eq!(got, fields);
    }

    #[test]
    fn table() {
        let labels = |a: &mut Alert| a.labels.as_mut().unwrap().clone();
        let _ = labels;
        check(|_| {}, &[]);
        check(|a| a.labels.as_mut().unwrap().tlp = Tlp::Red as i32, &[]);
        check(|a| a.labels.as_mut().unwrap().tlp = Tlp::Green as i32, &["labels.tlp"]);
        check(|a| a.labels.as_mut().unwrap().handling_code = HandlingCode::H2 as i32, &[]);
        check(|a| a.labels.as_mut().unwrap().handling_code = HandlingCode::H0 as i32, &["labels.handling_code"]);
        check(|a| a.labels.as_mut().unwrap().handling_code = HandlingCode::H3 as i32, &["labels.handling_code"]);
        check(|a| a.labels.as_mut().unwrap().pap = Pap::Clear as i32, &["labels.pap"]);
        check(|a| a.labels.as_mut().unwrap().pap = Pap::Red as i32, &[]);
        check(|a| a.labels.as_mut().unwrap().source_reliability = 1, &["labels.source_reliability"]);
        check(|a| a.labels.as_mut().unwrap().tags.clear(), &["labels.tags"]);
        check(|a| a.labels.as_mut().unwrap().tags.push("more".into()), &[]);
        check(|a| a.labels.as_mut().unwrap().onward.push("es-police".into()), &["labels.onward[0]"]);
        check(|a| a.category = 4, &["category"]);
        check(|a| a.expires_at = Some(isx_core::timestamp::from_unix_millis(20_000)), &["expires_at"]);
        check(|a| a.expires_at = Some(isx_core::timestamp::from_unix_millis(5_000)), &[]);
    }
}
