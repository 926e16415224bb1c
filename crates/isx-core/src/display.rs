//! Short human names for labels, codes and levels, as printed in tables.

use crate::wire::{Category, DisclosureLevel, HandlingCode, Tlp};

/// `TLP:AMBER+STRICT` style text for a TLP value.
pub fn tlp(t: Tlp) -> &'static str {
    match t {
        Tlp::Unspecified => "TLP:?",
        Tlp::Clear => "TLP:CLEAR",
        Tlp::Green => "TLP:GREEN",
        Tlp::Amber => "TLP:AMBER",
        Tlp::AmberStrict => "TLP:AMBER+STRICT",
        Tlp::Red => "TLP:RED",
    }
}

/// `H2` style text for a handling code.
pub fn handling(h: HandlingCode) -> &'static str {
    match h {
        HandlingCode::Unspecified => "H?",
        HandlingCode::H0 => "H0",
        HandlingCode::H1 => "H1",
        HandlingCode::H2 => "H2",
        HandlingCode::H3 => "H3",
    }
}

/// The lower-case level name used in policy, config and tables.
pub fn level(l: DisclosureLevel) -> &'static str {
    match l {
        DisclosureLevel::Unspecified => "unspecified",
        DisclosureLevel::Full => "full",
        DisclosureLevel::Redacted => "redacted",
        DisclosureLevel::HitOnly => "hit_only",
        DisclosureLevel::Denied => "denied",
    }
}

/// The snake-case crime area, e.g. `migrant_smuggling`.
pub fn category(c: Category) -> String {
    c.as_str_name().trim_start_matches("CATEGORY_").to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(tlp(Tlp::AmberStrict), "TLP:AMBER+STRICT");
        assert_eq!(level(DisclosureLevel::HitOnly), "hit_only");
        assert_eq!(category(Category::MigrantSmuggling), "migrant_smuggling");
        assert_eq!(handling(HandlingCode::H2), "H2");
    }
}
