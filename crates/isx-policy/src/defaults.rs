//! The default policy directory (`deploy/local/policy/`), compiled in, so that
//! `isx demo` and the testkit need no files.

use std::path::Path;

/// Every file of the default policy directory: name and contents.
pub const FILES: &[(&str, &str)] = &[
    ("schema.cedarschema", include_str!("../../../deploy/local/policy/schema.cedarschema")),
    ("labels.cedar", include_str!("../../../deploy/local/policy/labels.cedar")),
    ("agencies.cedar", include_str!("../../../deploy/local/policy/agencies.cedar")),
    ("persons.cedar", include_str!("../../../deploy/local/policy/persons.cedar")),
    ("lookup.cedar", include_str!("../../../deploy/local/policy/lookup.cedar")),
];

/// The `@id` of every default policy, in file order.
pub fn policy_ids() -> Vec<String> {
    FILES
        .iter()
        .filter(|(name, _)| name.ends_with(".cedar"))
        .flat_map(|(_, text)| text.split("@id(\"").skip(1).filter_map(|rest| rest.split('"').next().map(str::to_owned)))
        .collect()
}

/// Writes the default policy files into `dir` (created if missing).
pub fn write_to(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for (name, text) in FILES {
        std::fs::write(dir.join(name), text)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_compiled_in_files_are_the_whole_directory() {
        let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/local/policy");
        let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".cedar") || n.ends_with(".cedarschema"))
            .collect();
        on_disk.sort();
        let mut compiled: Vec<String> = super::FILES.iter().map(|(n, _)| (*n).to_owned()).collect();
        compiled.sort();
        assert_eq!(on_disk, compiled, "add new policy files to defaults::FILES");
    }

    #[test]
    fn policy_ids_are_those_the_engine_loads() {
        let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/local/policy");
        let engine = crate::PolicyEngine::load(&dir).unwrap();
        let mut loaded: Vec<String> = engine.policies().map(|p| p.id.clone()).collect();
        let mut ids = super::policy_ids();
        loaded.sort();
        ids.sort();
        assert_eq!(ids, loaded);
    }
}
