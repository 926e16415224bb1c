//! Why a policy set was refused: every variant names the file and, where
//! known, the line.

use std::path::PathBuf;

/// Why a policy directory was refused. Each variant names the file and, where known, the line.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// A file or the directory could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The directory has no schema, or more than one.
    #[error("{dir}: expected exactly one *.cedarschema file, found {found}")]
    Schema {
        /// The directory.
        dir: PathBuf,
        /// How many were found.
        found: usize,
    },
    /// A policy set names a file that is no policy file of a directory
    /// (a path, another ending, a name given twice).
    #[error("{dir}: {name:?} is not a *.cedar file name, or is given twice")]
    FileName {
        /// The set.
        dir: PathBuf,
        /// The name.
        name: String,
    },
    /// A kept policy set's texts are not those of the version it names.
    #[error("the texts given as policy version {claimed} have the digest {actual}: they are not that version")]
    VersionMismatch {
        /// The version claimed.
        claimed: String,
        /// The digest of the texts.
        actual: String,
    },
    /// The directory has no `.cedar` files.
    #[error("{0}: no *.cedar policy files")]
    NoPolicies(PathBuf),
    /// The schema does not parse.
    #[error("{file}:{line}: schema error: {message}")]
    SchemaSyntax {
        /// The schema file.
        file: PathBuf,
        /// 1-based line.
        line: usize,
        /// Cedar's message.
        message: String,
    },
    /// A policy file does not parse.
    #[error("{file}:{line}: {message}")]
    Syntax {
        /// The policy file.
        file: PathBuf,
        /// 1-based line.
        line: usize,
        /// Cedar's message.
        message: String,
    },
    /// A policy lacks `@id` or `@reason`.
    #[error("{file}:{line}: policy lacks @{annotation}(\"...\"); every policy needs @id and @reason")]
    MissingAnnotation {
        /// The file.
        file: PathBuf,
        /// 1-based line where the policy starts.
        line: usize,
        /// `id` or `reason`.
        annotation: &'static str,
    },
    /// Two policies share an `@id`.
    #[error("{file}:{line}: @id(\"{id}\") is already used at {first}")]
    DuplicateId {
        /// The id.
        id: String,
        /// The second file.
        file: PathBuf,
        /// Its line.
        line: usize,
        /// Where the first one is (`file:line`).
        first: String,
    },
    /// Templates are not supported.
    #[error("{file}:{line}: policy templates (?principal, ?resource) are not supported")]
    Template {
        /// The file.
        file: PathBuf,
        /// The line.
        line: usize,
    },
    /// The schema does not describe the facts isx supplies.
    #[error(
        "{file}: the schema does not match the entities and context isx builds ({message}); keep the attribute names and types of the default schema"
    )]
    SchemaMismatch {
        /// The schema file.
        file: PathBuf,
        /// Cedar's message.
        message: String,
    },
    /// A policy does not validate against the schema.
    #[error("{file}:{line}: policy {id} does not validate against the schema: {message}")]
    Validation {
        /// The file.
        file: PathBuf,
        /// 1-based line.
        line: usize,
        /// The policy id.
        id: String,
        /// Cedar's message.
        message: String,
    },
}
