//! Opening a sled database: a capped page cache, a named error when
//! another process holds it, and permissions that keep it to its owner.
//!
//! # Permissions (Unix)
//! The database directory is created with mode 0700 (its missing parents
//! too), and an existing one is tightened to 0700 before sled opens it. Once
//! sled has opened it, every file under it (`conf`, `db`, `snap.*`,
//! `blobs/*`) is set to 0600 and every directory (`blobs/`) to 0700. Files
//! sled creates later (a new snapshot, a blob) get the process umask's mode,
//! but inside a 0700 directory no one else can reach them, and the next open
//! tightens them too.

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
    /// The directory or one of its files could not be created or restricted to its owner.
    #[error("{path}: cannot restrict to its owner (0700 directories, 0600 files): {source}")]
    Permissions {
        /// The directory or file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
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
///
/// The directory is kept to its owner: see the [module docs](self).
pub fn open(path: &Path, cache_bytes: u64) -> Result<sled::Db, OpenError> {
    open_waiting(path, cache_bytes, LOCK_WAIT)
}

/// [`open`], waiting at most `wait` for the lock.
pub(crate) fn open_waiting(path: &Path, cache_bytes: u64, wait: Duration) -> Result<sled::Db, OpenError> {
    private_dir(path)?;
    let db = open_sled(path, cache_bytes, wait)?;
    restrict_tree(path)?;
    Ok(db)
}

fn perm_error(path: &Path) -> impl FnOnce(std::io::Error) -> OpenError + '_ {
    move |source| OpenError::Permissions { path: path.to_owned(), source }
}

/// Creates `path` (and its missing parents) with mode 0700, or sets an
/// existing directory to 0700: a data directory only its owner can list.
pub fn private_dir(path: &Path) -> Result<(), OpenError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        if path.is_dir() {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700)).map_err(perm_error(path))?;
        } else {
            std::fs::DirBuilder::new().recursive(true).mode(0o700).create(path).map_err(perm_error(path))?;
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// Sets every file under the directory `dir` to 0600 and every directory
/// to 0700, following no symbolic link. sled's layout is two levels deep
/// (`blobs/`); the walk goes at most [`MAX_DEPTH`] levels.
fn restrict_tree(dir: &Path) -> Result<(), OpenError> {
    #[cfg(unix)]
    restrict_dir(dir, 0)?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// How deep [`restrict_tree`] descends.
#[cfg(unix)]
const MAX_DEPTH: usize = 4;

#[cfg(unix)]
fn restrict_dir(dir: &Path, depth: usize) -> Result<(), OpenError> {
    use std::os::unix::fs::PermissionsExt;
    for entry in std::fs::read_dir(dir).map_err(perm_error(dir))? {
        let entry = entry.map_err(perm_error(dir))?;
        let path = entry.path();
        let kind = entry.file_type().map_err(perm_error(&path))?;
        let mode = if kind.is_dir() {
            0o700
        } else if kind.is_file() {
            0o600
        } else {
            continue;
        };
        match std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)) {
            Ok(()) => {}
            // sled renames and removes files of its own (snapshots being generated) meanwhile.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(perm_error(&path)(e)),
        }
        if kind.is_dir() && depth < MAX_DEPTH {
            restrict_dir(&path, depth + 1)?;
        }
    }
    Ok(())
}

fn open_sled(path: &Path, cache_bytes: u64, wait: Duration) -> Result<sled::Db, OpenError> {
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

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::path::{Path, PathBuf};

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    /// Every file and directory under `dir`, depth first.
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            out.push(path.clone());
            if path.is_dir() {
                walk(&path, out);
            }
        }
    }

    fn assert_private(db_dir: &Path) -> Vec<PathBuf> {
        assert_eq!(mode(db_dir), 0o700, "{}", db_dir.display());
        let mut all = Vec::new();
        walk(db_dir, &mut all);
        for path in &all {
            let want = if path.is_dir() { 0o700 } else { 0o600 };
            assert_eq!(mode(path), want, "{} is {:04o}", path.display(), mode(path));
        }
        all
    }

    #[test]
    fn a_store_directory_is_0700_and_its_files_0600() {
        let root = tempfile::tempdir().unwrap();
        let db_dir = root.path().join("data/gateway.sled");
        {
            let db = super::open(&db_dir, 1 << 20).unwrap();
            // A value this large goes to a blob file of its own (blobs/).
            db.insert("big", vec![7u8; 1 << 20]).unwrap();
            db.insert("small", b"x".to_vec()).unwrap();
            db.flush().unwrap();
        }
        assert_eq!(mode(&root.path().join("data")), 0o700, "a missing parent is created 0700 too");
        // What sled wrote after the open (the blob, a snapshot) is inside a 0700
        // directory; the next open tightens it as well.
        let db = super::open(&db_dir, 1 << 20).unwrap();
        let all = assert_private(&db_dir);
        let names: Vec<String> = all.iter().map(|p| p.strip_prefix(&db_dir).unwrap().display().to_string()).collect();
        for expected in ["conf", "db", "blobs"] {
            assert!(names.iter().any(|n| n == expected), "sled wrote {expected}: {names:?}");
        }
        assert!(names.iter().any(|n| n.starts_with("blobs/")), "a blob was written: {names:?}");
        drop(db);

        // An existing directory and files left open to others are tightened.
        std::fs::set_permissions(&db_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        for path in &all {
            let loose = if path.is_dir() { 0o755 } else { 0o644 };
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(loose)).unwrap();
        }
        let _db = super::open(&db_dir, 1 << 20).unwrap();
        assert_private(&db_dir);
    }
}
