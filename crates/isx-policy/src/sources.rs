//! The texts of a policy set, as read: the schema and each `.cedar` file.
//!
//! [`Sources`] is what [`PolicyEngine`](crate::PolicyEngine) is built
//! from, what its version is a digest of, and what a gateway keeps of every
//! version it loaded, so that a past decision can be explained again with
//! the very text that made it. [`changes`] says which policies differ
//! between two sets: `+id` added, `-id` removed, `~id` text edited.

use std::collections::BTreeMap;
use std::path::Path;
use std::str::FromStr;

use cedar_policy::PolicySet;
use sha2::{Digest, Sha256};

use crate::error::PolicyError;

/// One file of a policy directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFile {
    /// The file name in the directory, e.g. `agencies.cedar`.
    pub name: String,
    /// Its text.
    pub text: String,
}

/// The texts of a policy set: exactly one schema and the policy files in
/// name order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sources {
    /// The `*.cedarschema` file.
    pub schema: SourceFile,
    /// The `*.cedar` files, sorted by name.
    pub policies: Vec<SourceFile>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PolicyError + '_ {
    move |source| PolicyError::Io { path: path.to_owned(), source }
}

impl Sources {
    /// Reads every `*.cedarschema` and `*.cedar` file of `dir` (other files
    /// are ignored). Exactly one schema and at least one policy file.
    pub fn read(dir: &Path) -> Result<Self, PolicyError> {
        let mut schemas = Vec::new();
        let mut cedar = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(io(dir))? {
            let path = entry.map_err(io(dir))?.path();
            match path.extension().and_then(|e| e.to_str()) {
                Some("cedarschema") => schemas.push(path),
                Some("cedar") => cedar.push(path),
                _ => {}
            }
        }
        cedar.sort();
        if schemas.len() != 1 {
            return Err(PolicyError::Schema { dir: dir.to_owned(), found: schemas.len() });
        }
        let file = |path: &Path| -> Result<SourceFile, PolicyError> {
            Ok(SourceFile {
                name: path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
                text: std::fs::read_to_string(path).map_err(io(path))?,
            })
        };
        let schema = file(&schemas[0])?;
        let policies = cedar.iter().map(|p| file(p)).collect::<Result<Vec<_>, _>>()?;
        Self::new(dir, schema, policies)
    }

    /// The set of `schema` and `policies` (any order; sorted by name here).
    /// `dir` names the set in errors: at least one policy file, each name
    /// once, the schema's ending in `.cedarschema` and the others' in `.cedar`.
    pub fn new(dir: &Path, schema: SourceFile, mut policies: Vec<SourceFile>) -> Result<Self, PolicyError> {
        policies.sort_by(|a, b| a.name.cmp(&b.name));
        if policies.is_empty() {
            return Err(PolicyError::NoPolicies(dir.to_owned()));
        }
        let bad_name = |name: &str, ending: &str| {
            name.contains(['/', '\\']) || name.starts_with('.') || !name.ends_with(ending) || name.len() == ending.len()
        };
        if bad_name(&schema.name, ".cedarschema") {
            return Err(PolicyError::Schema { dir: dir.to_owned(), found: 0 });
        }
        for (i, p) in policies.iter().enumerate() {
            if bad_name(&p.name, ".cedar") || policies[..i].iter().any(|q| q.name == p.name) {
                return Err(PolicyError::FileName { dir: dir.to_owned(), name: p.name.clone() });
            }
        }
        Ok(Self { schema, policies })
    }

    /// The policy-set version: a short digest of the schema's text and each
    /// policy file's name and text, in name order. It is what records name,
    /// and what [`PolicyEngine::version`](crate::PolicyEngine::version) says.
    pub fn version(&self) -> String {
        let mut hasher = Sha256::new();
        hasher.update(self.schema.text.as_bytes());
        for p in &self.policies {
            hasher.update(p.name.as_bytes());
            hasher.update(p.text.as_bytes());
        }
        hex::encode(hasher.finalize())[..16].to_owned()
    }

    /// Every file: the schema first, then the policy files.
    pub fn files(&self) -> impl Iterator<Item = &SourceFile> {
        std::iter::once(&self.schema).chain(&self.policies)
    }

    /// Each policy's text (as written, annotations included) by its `@id`.
    /// Only parses: a policy without `@id` is an error naming its file.
    pub fn policy_texts(&self, dir: &Path) -> Result<BTreeMap<String, String>, PolicyError> {
        let mut texts = BTreeMap::new();
        for file in &self.policies {
            let path = dir.join(&file.name);
            let parsed = PolicySet::from_str(&file.text).map_err(|e| PolicyError::Syntax {
                file: path.clone(),
                line: 1,
                message: e.to_string(),
            })?;
            for policy in parsed.policies() {
                let id = policy.annotation("id").ok_or_else(|| PolicyError::MissingAnnotation {
                    file: path.clone(),
                    line: 1,
                    annotation: "id",
                })?;
                texts.insert(id.to_owned(), policy.to_string());
            }
        }
        Ok(texts)
    }
}

impl Sources {
    /// The set as a gateway keeps it (`Audit.GetPolicy`, an export's
    /// `policies`): every file, the schema first, and when it was first loaded.
    pub fn to_kept(&self, first_loaded_ms: u64) -> isx_core::wire::PolicyVersion {
        isx_core::wire::PolicyVersion {
            version: self.version(),
            files: self
                .files()
                .map(|f| isx_core::wire::PolicyFile { name: f.name.clone(), text: f.text.clone() })
                .collect(),
            first_loaded_ms,
        }
    }

    /// The set a gateway kept, checked: one schema, policy files, and texts
    /// whose digest is the version it claims (else
    /// [`PolicyError::VersionMismatch`]). Errors name it as the directory
    /// `policy version V`.
    pub fn from_kept(kept: &isx_core::wire::PolicyVersion) -> Result<Self, PolicyError> {
        let dir = kept_dir(&kept.version);
        let (schemas, policies): (Vec<_>, Vec<_>) = kept
            .files
            .iter()
            .map(|f| SourceFile { name: f.name.clone(), text: f.text.clone() })
            .partition(|f| f.name.ends_with(".cedarschema"));
        let [schema] = <[SourceFile; 1]>::try_from(schemas)
            .map_err(|s| PolicyError::Schema { dir: dir.clone(), found: s.len() })?;
        let sources = Self::new(&dir, schema, policies)?;
        let actual = sources.version();
        if actual != kept.version {
            return Err(PolicyError::VersionMismatch { claimed: kept.version.clone(), actual });
        }
        Ok(sources)
    }
}

/// The name a kept version's files carry in errors and explanations.
pub fn kept_dir(version: &str) -> std::path::PathBuf {
    std::path::PathBuf::from(format!("policy version {version}"))
}

/// The policies that differ from `old` to `new`, by id in id order: `+id`
/// added, `-id` removed, `~id` whose text (annotations included) changed.
/// Empty if only whitespace between policies or the schema changed.
pub fn changes(old: &BTreeMap<String, String>, new: &BTreeMap<String, String>) -> Vec<String> {
    let mut ids: Vec<&String> = old.keys().chain(new.keys()).collect();
    ids.sort();
    ids.dedup();
    ids.into_iter()
        .filter_map(|id| match (old.get(id), new.get(id)) {
            (None, Some(_)) => Some(format!("+{id}")),
            (Some(_), None) => Some(format!("-{id}")),
            (Some(a), Some(b)) if a != b => Some(format!("~{id}")),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(policies: &[(&str, &str)]) -> Sources {
        let schema = SourceFile { name: "s.cedarschema".into(), text: "entity N;".into() };
        let policies = policies.iter().map(|(n, t)| SourceFile { name: (*n).into(), text: (*t).into() }).collect();
        Sources::new(Path::new("DIR"), schema, policies).unwrap()
    }

    const A: &str = "@id(\"a\")\n@reason(\"r\")\npermit (principal, action, resource);\n";
    const B: &str = "@id(\"b\")\n@reason(\"r\")\nforbid (principal, action, resource);\n";

    #[test]
    fn changes_name_added_removed_and_edited_policies() {
        type Files<'a> = &'a [(&'a str, &'a str)];
        let cases: &[(Files, Files, &[&str])] = &[
            (&[("x.cedar", A)], &[("x.cedar", A)], &[]),
            (&[("x.cedar", A)], &[("x.cedar", &format!("{A}\n{B}"))], &["+b"]),
            (&[("x.cedar", A), ("y.cedar", B)], &[("x.cedar", A)], &["-b"]),
            (&[("x.cedar", A)], &[("x.cedar", &A.replace("\"r\"", "\"r2\""))], &["~a"]),
            // A policy moved to another file is the same policy.
            (&[("x.cedar", &format!("{A}{B}"))], &[("x.cedar", A), ("y.cedar", B)], &[]),
            (&[("x.cedar", A)], &[("x.cedar", B)], &["-a", "+b"]),
        ];
        for (old, new, want) in cases {
            let (o, n) = (set(old), set(new));
            let got = changes(&o.policy_texts(Path::new("DIR")).unwrap(), &n.policy_texts(Path::new("DIR")).unwrap());
            let mut want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
            want.sort_by(|a, b| a[1..].cmp(&b[1..]));
            assert_eq!(got, want, "{old:?} -> {new:?}");
        }
    }

    #[test]
    fn the_version_covers_every_name_and_text_in_name_order() {
        let v = set(&[("x.cedar", A), ("y.cedar", B)]).version();
        assert_eq!(v, set(&[("y.cedar", B), ("x.cedar", A)]).version(), "order given does not matter");
        assert_ne!(v, set(&[("x.cedar", A), ("z.cedar", B)]).version(), "a rename changes it");
        assert_ne!(v, set(&[("x.cedar", A), ("y.cedar", A)]).version());
        assert_eq!(v.len(), 16);
    }

    #[test]
    fn a_kept_set_round_trips_and_a_wrong_digest_is_refused() {
        let set = set(&[("x.cedar", A), ("y.cedar", B)]);
        let kept = set.to_kept(7);
        assert_eq!((kept.files.len(), kept.files[0].name.as_str(), kept.first_loaded_ms), (3, "s.cedarschema", 7));
        assert_eq!(Sources::from_kept(&kept).unwrap(), set);
        let mut edited = kept.clone();
        edited.files[1].text.push('\n');
        let e = Sources::from_kept(&edited).unwrap_err();
        assert!(matches!(e, PolicyError::VersionMismatch { .. }), "{e}");
        let mut no_schema = kept;
        no_schema.files.remove(0);
        assert!(matches!(Sources::from_kept(&no_schema), Err(PolicyError::Schema { found: 0, .. })));
    }

    #[test]
    fn a_set_refuses_names_that_are_no_policy_files() {
        let schema = || SourceFile { name: "s.cedarschema".into(), text: String::new() };
        let file = |name: &str| SourceFile { name: name.into(), text: A.into() };
        for names in [&["../x.cedar"][..], &["x.txt"], &["x.cedar", "x.cedar"], &[".cedar"]] {
            let got = Sources::new(Path::new("DIR"), schema(), names.iter().map(|n| file(n)).collect());
            assert!(matches!(got, Err(PolicyError::FileName { .. })), "{names:?}: {got:?}");
        }
        assert!(matches!(Sources::new(Path::new("DIR"), schema(), vec![]), Err(PolicyError::NoPolicies(_))));
    }
}
