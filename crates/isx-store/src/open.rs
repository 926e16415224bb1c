//! Opening a sled database: a capped page cache, and a named error when
//! another process holds it.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// The page-cache budget of the gateway's sled database, in bytes.
pub const GATEWAY_CACHE_BYTES: u64 = 16 << 20;

/// The page-cache budget of an agency's sled database, in bytes.
pub const AGENCY_CACHE_BYTES: u64 = 4 << 20;

/// How long [`open`] waits for a lock that this process may still hold.
const LOCK_WAIT: Duration = Duration::from_secs(5);

/// Why a database did not open.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// Another process has the database open.
    #[error(
        "{0} is in use by another process (a gateway or agency already running on this data directory); stop it, or use another data directory"
    )]
    Locked(PathBuf),
    /// sled failed.
    #[error("{path}: {source}")]
    Sled {
        /// The database directory.
        path: PathBuf,
        /// sled's error.
        source: sled::Error,
    },
}

fn is_lock_error(e: &sled::Error) -> bool {
    matches!(e, sled::Error::Io(io) if io.to_string().contains("could not acquire lock"))
}

/// Opens (or creates) the sled database at `path` with a page cache of at
/// most `cache_bytes`.
///
/// sled's own default cache is 1 GiB, which a gateway with a large backlog
/// or log would fill: everything written stays cached.
///
/// sled 0.34 releases its file lock from a background thread shortly after
/// the last handle of a database is dropped, so a database closed and
/// reopened in the same process (a gateway restart in a test) may find the
/// lock still held for a moment: `open` waits up to five seconds for it.
/// A lock still held after that belongs to another process, and the error
/// says so.
pub fn open(path: &Path, cache_bytes: u64) -> Result<sled::Db, OpenError> {
    open_waiting(path, cache_bytes, LOCK_WAIT)
}

/// [`open`], waiting at most `wait` for the lock.
pub(crate) fn open_waiting(path: &Path, cache_bytes: u64, wait: Duration) -> Result<sled::Db, OpenError> {
    let deadline = std::time::Instant::now() + wait;
    loop {
        match sled::Config::new().path(path).cache_capacity(cache_bytes).open() {
            Err(e) if is_lock_error(&e) => {
                if std::time::Instant::now() >= deadline {
                    return Err(OpenError::Locked(path.to_owned()));
                }
                std::thread::sleep(Duration::from_millis(25));
            }
            Err(source) => return Err(OpenError::Sled { path: path.to_owned(), source }),
            Ok(db) => return Ok(db),
        }
    }
}
