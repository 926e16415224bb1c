//! `isx policy fmt`: Cedar's own formatter over a policy directory.
//!
//! Every `*.cedar` file is formatted with `cedar-policy-formatter` (the
//! formatter of the `cedar format` command, with its defaults: 80 columns, an
//! indent of two), which keeps comments. The schema is left as it is: Cedar
//! has no formatter for the schema syntax.

use std::path::{Path, PathBuf};

use cedar_policy_formatter::{Config, policies_str_to_pretty};

/// Why a directory could not be formatted.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    /// A file or the directory could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The directory has no `.cedar` files.
    #[error("{0}: no *.cedar policy files")]
    NoPolicies(PathBuf),
    /// A file does not parse, so it cannot be formatted.
    #[error("{path}: cannot be formatted: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The formatter's message.
        message: String,
    },
}

/// The formatter settings: those of `cedar format`.
fn config() -> Config {
    Config::default()
}

/// `text` as Cedar's formatter writes it.
pub fn format_text(text: &str) -> Result<String, String> {
    policies_str_to_pretty(text, &config())
        .map(|mut t| {
            if !t.ends_with('\n') {
                t.push('\n');
            }
            t
        })
        .map_err(|e| format!("{e:#}").lines().next().unwrap_or_default().to_owned())
}

/// The `*.cedar` files of `dir`, sorted.
pub fn policy_files(dir: &Path) -> Result<Vec<PathBuf>, FormatError> {
    let io = |source| FormatError::Io { path: dir.to_owned(), source };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        if path.extension().is_some_and(|e| e == "cedar") {
            files.push(path);
        }
    }
    files.sort();
    if files.is_empty() {
        return Err(FormatError::NoPolicies(dir.to_owned()));
    }
    Ok(files)
}

/// Formats every `*.cedar` file in `dir`. Returns the files whose text the
/// formatter changes; with `write`, they are rewritten, otherwise (`--check`)
/// nothing is written. A file that does not parse is an error and nothing is
/// written.
pub fn format_dir(dir: &Path, write: bool) -> Result<Vec<PathBuf>, FormatError> {
    let mut changed = Vec::new();
    for path in policy_files(dir)? {
        let text = std::fs::read_to_string(&path).map_err(|source| FormatError::Io { path: path.clone(), source })?;
        let formatted = format_text(&text).map_err(|message| FormatError::Parse { path: path.clone(), message })?;
        if formatted != text {
            changed.push((path, formatted));
        }
    }
    if write {
        for (path, formatted) in &changed {
            std::fs::write(path, formatted).map_err(|source| FormatError::Io { path: path.clone(), source })?;
        }
    }
    Ok(changed.into_iter().map(|(p, _)| p).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn default_dir() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/local/policy")
    }

    #[test]
    fn the_shipped_policy_files_are_formatted() {
        assert_eq!(format_dir(&default_dir(), false).unwrap(), Vec::<PathBuf>::new());
    }

    #[test]
    fn check_names_an_unformatted_file_and_writes_nothing_until_asked() {
        let dir = tempfile::tempdir().unwrap();
        crate::defaults::write_to(dir.path()).unwrap();
        let messy = dir.path().join("messy.cedar");
        let text = "// kept\n@id(\"x\")\n@reason(\"r\")\nforbid(principal,action,resource)when{principal.kind==NodeKind::\"auditor\"};\n";
        std::fs::write(&messy, text).unwrap();
        assert_eq!(format_dir(dir.path(), false).unwrap(), vec![messy.clone()]);
        assert_eq!(std::fs::read_to_string(&messy).unwrap(), text, "--check writes nothing");
        assert_eq!(format_dir(dir.path(), true).unwrap(), vec![messy.clone()]);
        let formatted = std::fs::read_to_string(&messy).unwrap();
        assert!(formatted.starts_with("// kept\n"), "comments are kept: {formatted}");
        assert!(formatted.contains("forbid (principal, action, resource)"), "{formatted}");
        assert_eq!(format_dir(dir.path(), false).unwrap(), Vec::<PathBuf>::new(), "formatting is stable");
        // The formatted directory still loads, with the same policies.
        crate::PolicyEngine::load(dir.path()).unwrap();
    }

    #[test]
    fn a_file_that_does_not_parse_is_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("bad.cedar"), "permit (principal, action, resource) when {").unwrap();
        let err = format_dir(dir.path(), true).unwrap_err().to_string();
        assert!(err.contains("bad.cedar: cannot be formatted"), "{err}");
    }
}
