//! Enum values as people write them.
//!
//! The canonical JSON keeps the protobuf names (`CATEGORY_TERRORISM`), while
//! policies, tables and the CLI speak the short names (`terrorism`). Both are
//! accepted wherever a user types an enum value, case-insensitively, and every
//! error lists the valid values with both names side by side.

use prost_reflect::EnumDescriptor;

/// A value that is not one of an enum's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not a valid {what}; use one of {}", .valid.join(", "))]
pub struct EnumError {
    /// What was given.
    pub value: String,
    /// The enum, as a user knows it (e.g. `Category`).
    pub what: String,
    /// Every valid value, `FULL_NAME / short`, without the unspecified one.
    pub valid: Vec<String>,
}

/// The enum `isx.v1.<name>` of the wire API.
///
/// # Panics
/// If the enum is not in the descriptor pool (a programming error).
pub fn descriptor(name: &str) -> EnumDescriptor {
    isx_proto::descriptor_pool()
        .get_enum_by_name(&format!("isx.v1.{name}"))
        .unwrap_or_else(|| panic!("isx.v1.{name} is compiled into the descriptor pool"))
}

/// The prefix of an enum's value names: `CATEGORY_` for `Category`,
/// `HANDLING_CODE_` for `HandlingCode`.
fn prefix(e: &EnumDescriptor) -> String {
    let mut out = String::new();
    for (i, c) in e.name().chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out.push('_');
    out
}

/// The short name of a value: `terrorism` for `CATEGORY_TERRORISM`.
pub fn short_name(e: &EnumDescriptor, full: &str) -> String {
    full.strip_prefix(&prefix(e)).unwrap_or(full).to_ascii_lowercase()
}

/// Every valid value of `e` as `FULL / short`, the unspecified one left out.
pub fn valid_values(e: &EnumDescriptor) -> Vec<String> {
    e.values().filter(|v| v.number() != 0).map(|v| format!("{} / {}", v.name(), short_name(e, v.name()))).collect()
}

/// The number of `text`, given by its full or its short name in any case.
pub fn parse(e: &EnumDescriptor, text: &str) -> Result<i32, EnumError> {
    let wanted = text.trim();
    e.values()
        .filter(|v| v.number() != 0)
        .find(|v| v.name().eq_ignore_ascii_case(wanted) || short_name(e, v.name()).eq_ignore_ascii_case(wanted))
        .map(|v| v.number())
        .ok_or_else(|| EnumError { value: text.to_owned(), what: e.name().to_owned(), valid: valid_values(e) })
}

/// The full name of `text` (full or short, any case), for the canonical JSON.
pub fn full_name(e: &EnumDescriptor, text: &str) -> Result<String, EnumError> {
    let number = parse(e, text)?;
    Ok(e.get_value(number).map(|v| v.name().to_owned()).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_and_short_names_are_both_accepted() {
        let category = descriptor("Category");
        let terrorism = crate::wire::Category::Terrorism as i32;
        for text in ["CATEGORY_TERRORISM", "terrorism", "Terrorism", " category_terrorism "] {
            assert_eq!(parse(&category, text), Ok(terrorism), "{text}");
        }
        let handling = descriptor("HandlingCode");
        assert_eq!(parse(&handling, "h2"), Ok(crate::wire::HandlingCode::H2 as i32));
        assert_eq!(full_name(&descriptor("Tlp"), "amber_strict").unwrap(), "TLP_AMBER_STRICT");
    }

    #[test]
    fn an_unknown_value_lists_both_names_of_every_valid_one() {
        let err = parse(&descriptor("Tlp"), "purple").unwrap_err();
        assert_eq!(err.what, "Tlp");
        assert!(err.valid.contains(&"TLP_AMBER_STRICT / amber_strict".to_owned()), "{err}");
        assert!(!err.to_string().contains("UNSPECIFIED"), "{err}");
        assert!(err.to_string().starts_with("\"purple\" is not a valid Tlp; use one of TLP_CLEAR / clear,"), "{err}");
        assert!(parse(&descriptor("Category"), "unspecified").is_err(), "the unspecified value is not a choice");
    }
}
