//! The request file that a policy reload on `SIGHUP` needs: who asks for it
//! and why, written by the operator (`isx admin request-reload`) before the
//! signal, because a signal carries neither.
//!
//! The file (`[admin] reload_request`, default `<data_dir>/reload-request.toml`)
//! is TOML with exactly two keys, `officer` and `reason`. The gateway trusts
//! it only if it is a regular file (not a link), owned by the gateway's own
//! user, that its group and others can neither read nor write, and no older
//! than `[admin] reload_request_max_age`. One that passes those checks is
//! consumed (removed) as it is read, valid or not, so that every reload
//! needs a request of its own; one that fails them stays, untrusted, for
//! the operator to see. Errors name the file and the fix, never its content.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

/// Longest officer name, as for `x-isx-officer`.
const MAX_OFFICER: usize = 128;

/// Who asks for a reload, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReloadRequest {
    /// The officer, as `x-isx-officer` would name them.
    pub officer: String,
    /// Why the policy changes, e.g. a change request's reference.
    pub reason: String,
}

/// Why a request file was not taken.
#[derive(Debug, thiserror::Error)]
pub enum RequestFileError {
    /// There is none.
    #[error(
        "no request file at {0}: a policy reload on SIGHUP needs one naming the officer and the reason; write it with `isx admin request-reload --config GATEWAY.toml --officer NAME --reason WHY`, then send SIGHUP again"
    )]
    Missing(PathBuf),
    /// It is a link, a directory or another special file.
    #[error(
        "{0} is not a regular file (a link or a directory is never trusted); remove it and write the request again"
    )]
    NotRegular(PathBuf),
    /// Another user owns it.
    #[error(
        "{path} is owned by uid {owner}, not by the gateway's user (uid {gateway}); remove it and write the request as that user"
    )]
    WrongOwner {
        /// The file.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// The gateway's effective uid.
        gateway: u32,
    },
    /// Its group or others may read or write it.
    #[error(
        "{path} has mode {mode:04o}: its group or others may read or change it; remove it and write the request again (`isx admin request-reload` writes it 0600)"
    )]
    Exposed {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// It was written longer ago than `[admin] reload_request_max_age`.
    #[error(
        "{path} was written {age} ago, longer than [admin] reload_request_max_age ({max}): it was meant for another reload; it is consumed, write a new one"
    )]
    Stale {
        /// The file.
        path: PathBuf,
        /// Its age.
        age: String,
        /// The limit.
        max: String,
    },
    /// It does not say who and why (it is consumed).
    #[error("{path}: {problem}; it is consumed, write a new one with `isx admin request-reload`")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong, naming the key, never quoting the file.
        problem: String,
    },
    /// It could not be read or removed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

impl ReloadRequest {
    /// Checks both fields: an officer of 1 to 128 printable ASCII
    /// characters (what `x-isx-officer` accepts) and a reason of 1 to 2048
    /// bytes. The problem names the key.
    pub fn check(&self) -> Result<(), String> {
        let officer = self.officer.trim();
        if officer.is_empty() {
            return Err("officer is required".into());
        }
        if officer.len() > MAX_OFFICER || !officer.bytes().all(|b| (0x20..0x7f).contains(&b)) {
            return Err(format!("officer must be 1 to {MAX_OFFICER} printable ASCII characters"));
        }
        if self.reason.trim().is_empty() {
            return Err("reason is required".into());
        }
        if self.reason.len() > crate::text::MAX_TEXT {
            return Err(format!("reason is longer than {} bytes", crate::text::MAX_TEXT));
        }
        Ok(())
    }

    /// The file's text.
    pub fn to_toml(&self) -> String {
        let body = toml::to_string(self).unwrap_or_default();
        format!("# A policy reload request: the gateway's next SIGHUP consumes it.\n{body}")
    }
}

/// Writes `request` to `path`, mode 0600, replacing any file there (a
/// request not yet consumed). The fields are checked first.
pub fn write(path: &Path, request: &ReloadRequest) -> Result<(), RequestFileError> {
    request.check().map_err(|problem| RequestFileError::Invalid { path: path.to_owned(), problem })?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| RequestFileError::Io { path: dir.to_owned(), source })?;
    }
    isx_store::write_private(path, request.to_toml().as_bytes())
        .map_err(|source| RequestFileError::Io { path: path.to_owned(), source })
}

/// Checks, reads and consumes the request file at `path` (see the module
/// docs); `now` is the time to measure its age against `max_age`.
pub(crate) fn take(path: &Path, max_age: Duration, now: SystemTime) -> Result<ReloadRequest, RequestFileError> {
    let io = |source| RequestFileError::Io { path: path.to_owned(), source };
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(RequestFileError::Missing(path.to_owned())),
        Err(e) => return Err(io(e)),
    };
    if !meta.file_type().is_file() {
        return Err(RequestFileError::NotRegular(path.to_owned()));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let gateway = rustix::process::geteuid().as_raw();
        if meta.uid() != gateway {
            return Err(RequestFileError::WrongOwner { path: path.to_owned(), owner: meta.uid(), gateway });
        }
        let mode = meta.mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(RequestFileError::Exposed { path: path.to_owned(), mode });
        }
    }
    let text = std::fs::read(path).map_err(io)?;
    // Consumed before it is acted on: a request is used once, or not at all.
    std::fs::remove_file(path).map_err(io)?;
    let age = meta.modified().ok().and_then(|m| now.duration_since(m).ok()).unwrap_or_default();
    if age > max_age {
        let secs = |d: Duration| humantime::format_duration(Duration::from_secs(d.as_secs())).to_string();
        return Err(RequestFileError::Stale { path: path.to_owned(), age: secs(age), max: secs(max_age) });
    }
    let invalid = |problem: String| RequestFileError::Invalid { path: path.to_owned(), problem };
    let text = String::from_utf8(text).map_err(|_| invalid("is not UTF-8 text".into()))?;
    // toml's message alone: its snippet would quote the file.
    let request: ReloadRequest = toml::from_str(&text).map_err(|e| {
        invalid(format!("is not a request (officer = \"...\", reason = \"...\"): {}", e.message().trim()))
    })?;
    request.check().map_err(invalid)?;
    Ok(ReloadRequest { officer: request.officer.trim().to_owned(), reason: request.reason.trim().to_owned() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> ReloadRequest {
        ReloadRequest { officer: "A. Operator".into(), reason: "CR-2026-042: \"quoted\" reason".into() }
    }

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn a_written_request_is_taken_once_and_then_missing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/reload-request.toml");
        write(&path, &request()).unwrap();
        assert_eq!(take(&path, HOUR, SystemTime::now()).unwrap(), request());
        assert!(!path.exists(), "consumed");
        let again = take(&path, HOUR, SystemTime::now()).unwrap_err();
        assert!(matches!(again, RequestFileError::Missing(_)), "{again}");
        assert!(again.to_string().contains("isx admin request-reload"), "{again}");
    }

    #[test]
    fn bad_requests_are_refused_naming_the_problem_never_the_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.toml");
        let cases: &[(&str, &str)] = &[
            ("officer = \"A\"\n", "missing field `reason`"),
            ("officer = \"\"\nreason = \"secret why\"\n", "officer is required"),
            ("officer = \"A\"\nreason = \" \"\n", "reason is required"),
            ("officer = \"Ä\"\nreason = \"secret why\"\n", "printable ASCII"),
            ("officer = \"A\"\nreason = \"secret why\"\nextra = 1\n", "unknown field `extra`"),
            ("officer = secret why\n", "is not a request"),
        ];
        for (text, needle) in cases {
            isx_store::write_private(&path, text.as_bytes()).unwrap();
            let e = take(&path, HOUR, SystemTime::now()).unwrap_err().to_string();
            assert!(e.contains(needle), "{text}: {e}");
            assert!(!e.contains("secret"), "{text}: the message quotes the file: {e}");
            assert!(!path.exists(), "{text}: consumed");
        }
        assert!(write(&path, &ReloadRequest { officer: "A".into(), reason: String::new() }).is_err());
    }

    #[test]
    fn a_stale_request_is_consumed_and_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.toml");
        write(&path, &request()).unwrap();
        let later = SystemTime::now() + 2 * HOUR;
        let e = take(&path, HOUR, later).unwrap_err();
        assert!(matches!(e, RequestFileError::Stale { .. }), "{e}");
        assert!(e.to_string().contains("reload_request_max_age (1h)"), "{e}");
        assert!(!path.exists());
    }

    #[cfg(unix)]
    #[test]
    fn an_exposed_file_or_a_link_is_not_trusted_and_stays() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.toml");
        write(&path, &request()).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = take(&path, HOUR, SystemTime::now()).unwrap_err();
        assert!(matches!(e, RequestFileError::Exposed { mode: 0o644, .. }), "{e}");
        assert!(path.exists(), "an untrusted file stays");

        let real = dir.path().join("real.toml");
        write(&real, &request()).unwrap();
        let link = dir.path().join("link.toml");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let e = take(&link, HOUR, SystemTime::now()).unwrap_err();
        assert!(matches!(e, RequestFileError::NotRegular(_)), "{e}");
        assert!(real.exists());
    }
}
