//! Revocation that works while the gateway runs.
//!
//! The CRLs (`crls` in the config) are read at start, on SIGHUP (through
//! the gateway's `hangup` task) and every `[revocation] reload_every`. Each
//! read checks that every CRL was signed by the configured CA (a foreign one
//! is refused, naming the file) and whether one is past its next update:
//! `[revocation] stale = "refuse"` (the default) refuses to start on it, and
//! keeps refusing every client while it runs (rustls enforces the next
//! update); `"warn"` warns and keeps using it. `warn_days` before a CRL falls
//! due, every read warns. A reload swaps the TLS configuration new
//! handshakes use, and closes the open connections whose certificate it
//! revokes; its [`CrlReport`] says which serials it added and removed, and
//! the gateway records a read that changed them.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use isx_core::NodeId;
use isx_tls::config::{CrlExpiration, IdentityFiles, server_config_with};
use isx_tls::crl::{LoadedCrls, Serial};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::{RevocationConfig, StaleCrls};

/// What one read of the CRLs found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrlReport {
    /// CRL files read.
    pub lists: usize,
    /// Certificates they revoke.
    pub revoked: usize,
    /// Whole days until the first falls due (negative once past), if any.
    pub days_left: Option<i64>,
    /// Open connections closed because their certificate is revoked.
    pub closed: usize,
    /// Serials revoked now that were not before this read (at start: every
    /// one), in order.
    pub added: Vec<String>,
    /// Serials no longer revoked (a list removed from the config), in order.
    pub removed: Vec<String>,
    /// A digest of the revoked serials before and after this read (empty at
    /// start for before): what an audit record names.
    pub digests: (String, String),
}

impl CrlReport {
    /// True if what the lists revoke changed with this read.
    pub fn changed(&self) -> bool {
        !self.added.is_empty() || !self.removed.is_empty()
    }
}

/// A short digest of a set of revoked serials (16 hex digits; that of no
/// serial for an empty set).
pub fn revoked_digest<'a>(serials: impl IntoIterator<Item = &'a str>) -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    for s in serials {
        hasher.update(s.as_bytes());
        hasher.update(b"\n");
    }
    hex::encode(hasher.finalize())[..16].to_owned()
}

/// An open connection, for closing it if its certificate is revoked.
#[derive(Debug)]
struct Open {
    /// Its certificate's serial.
    serial: Serial,
    /// Its node.
    node: NodeId,
    /// Cancelling it closes the connection.
    kill: CancellationToken,
}

/// The CRLs in force, the TLS configuration built from them, and the open
/// connections they may close.
#[derive(Debug)]
pub struct Revocation {
    /// The gateway's certificate, key and CA.
    files: IdentityFiles,
    /// The CRL files.
    paths: Vec<PathBuf>,
    /// What to do about stale lists, and when to warn.
    config: RevocationConfig,
    /// What new handshakes use.
    tls: RwLock<Arc<rustls::ServerConfig>>,
    /// The serials the lists in force revoke; also serialises reloads.
    revoked: Mutex<BTreeSet<String>>,
    /// Open connections by id.
    open: Mutex<HashMap<u64, Open>>,
    /// The next connection id.
    next: AtomicU64,
}

/// Deregisters a connection when it closes.
#[derive(Debug)]
pub(crate) struct Registered {
    /// The registry.
    revocation: Arc<Revocation>,
    /// The connection's id.
    id: u64,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.revocation.open.lock().unwrap_or_else(|e| e.into_inner()).remove(&self.id);
    }
}

impl Revocation {
    /// Reads the CRLs and builds the TLS configuration; a foreign, malformed
    /// or (with `stale = "refuse"`) stale CRL is an error naming the file.
    pub fn load(
        files: IdentityFiles,
        paths: Vec<PathBuf>,
        config: RevocationConfig,
    ) -> Result<Self, isx_tls::TlsError> {
        let (tls, report, revoked) = Self::read(&files, &paths, &config)?;
        if report.lists > 0 {
            info!(lists = report.lists, revoked = report.revoked, days_left = ?report.days_left, "revocation lists loaded");
        }
        let revoked = Mutex::new(revoked.iter().map(Serial::to_string).collect());
        Ok(Self {
            files,
            paths,
            config,
            tls: RwLock::new(tls),
            revoked,
            open: Mutex::default(),
            next: AtomicU64::new(0),
        })
    }

    /// The serials the lists in force revoke, in order.
    pub fn revoked(&self) -> BTreeSet<String> {
        self.revoked.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn read(
        files: &IdentityFiles,
        paths: &[PathBuf],
        config: &RevocationConfig,
    ) -> Result<(Arc<rustls::ServerConfig>, CrlReport, BTreeSet<Serial>), isx_tls::TlsError> {
        let crls: LoadedCrls = isx_tls::crl::load(paths, &files.ca)?;
        let now = time::OffsetDateTime::now_utc();
        let expiration = match config.stale {
            StaleCrls::Refuse => {
                crls.check_fresh(now)?;
                CrlExpiration::Enforce
            }
            StaleCrls::Warn => {
                if let Err(e) = crls.check_fresh(now) {
                    warn!(error = %e, "a revocation list is past its next update; [revocation] stale = \"warn\" keeps using it");
                }
                CrlExpiration::Ignore
            }
        };
        let days_left = crls.days_until_next_update(now);
        if let Some(days) = days_left.filter(|d| *d <= i64::from(config.warn_days)) {
            warn!(days, "a revocation list falls due soon: re-sign it with `isx pki crl --dir PKI --refresh`");
        }
        let revoked = crls.revoked_serials();
        let report = CrlReport {
            lists: crls.crls().len(),
            revoked: revoked.len(),
            days_left,
            closed: 0,
            added: vec![],
            removed: vec![],
            digests: (String::new(), String::new()),
        };
        Ok((server_config_with(files, &crls, expiration)?, report, revoked))
    }

    /// What new handshakes use.
    pub(crate) fn tls(&self) -> Arc<rustls::ServerConfig> {
        self.tls.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// How often to re-read the CRLs.
    pub(crate) fn reload_every(&self) -> std::time::Duration {
        self.config.reload_every
    }

    /// Registers an open connection of `node` with certificate `serial`,
    /// closed by cancelling `kill`, until the returned guard drops.
    pub(crate) fn register(self: &Arc<Self>, serial: Serial, node: NodeId, kill: CancellationToken) -> Registered {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.open.lock().unwrap_or_else(|e| e.into_inner()).insert(id, Open { serial, node, kill });
        Registered { revocation: self.clone(), id }
    }

    /// Re-reads the CRLs: new handshakes use them at once, and every open
    /// connection whose certificate they revoke is closed. A CRL that does
    /// not load is refused with the error, and the lists in force stay. The
    /// report says what changed; the gateway records it (`hangup`, and the
    /// timer in `server`).
    pub(crate) fn reload(&self) -> Result<CrlReport, isx_tls::TlsError> {
        let mut before = self.revoked.lock().unwrap_or_else(|e| e.into_inner());
        let (tls, mut report, revoked) = match Self::read(&self.files, &self.paths, &self.config) {
            Ok(read) => read,
            Err(e) => {
                warn!(error = %e, "revocation lists not reloaded; the ones in force stay");
                return Err(e);
            }
        };
        let now: BTreeSet<String> = revoked.iter().map(Serial::to_string).collect();
        report.added = now.difference(&before).cloned().collect();
        report.removed = before.difference(&now).cloned().collect();
        report.digests =
            (revoked_digest(before.iter().map(String::as_str)), revoked_digest(now.iter().map(String::as_str)));
        *before = now;
        drop(before);
        *self.tls.write().unwrap_or_else(|e| e.into_inner()) = tls;
        let open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        for o in open.values().filter(|o| revoked.contains(&o.serial)) {
            warn!(node = %o.node, serial = %o.serial, "closing a connection whose certificate was revoked");
            o.kill.cancel();
            report.closed += 1;
        }
        info!(
            lists = report.lists,
            revoked = report.revoked,
            newly = report.added.len(),
            no_longer = report.removed.len(),
            closed = report.closed,
            "revocation lists reloaded"
        );
        Ok(report)
    }
}
