//! The gateway's configuration file (`deploy/local/gateway.toml`).
//!
//! Relative paths in the file are resolved against the file's own directory,
//! so a config works from any working directory. [`GatewayConfig::validate`]
//! names the bad key.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use isx_core::redaction::RedactionProfile;
use isx_core::{NodeId, NodeKind, Role};
use serde::Deserialize;

/// Why a configuration is not usable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The TOML does not parse or does not match the schema; the message names line and key.
    #[error("{path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The TOML error, with line, column and key.
        source: toml::de::Error,
    },
    /// A value is out of range or inconsistent.
    #[error("{key}: {message}")]
    Invalid {
        /// The offending key, e.g. `nodes.de-police.country`.
        key: String,
        /// What is wrong.
        message: String,
    },
}

/// The whole gateway configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// Address to listen on, e.g. `127.0.0.1:7443`.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Directory with `ca.crt`, `gateway.crt` and `gateway.key`.
    pub pki_dir: PathBuf,
    /// Directory for the gateway's sled database.
    pub data_dir: PathBuf,
    /// The Cedar policy directory (schema plus `.cedar` files).
    pub policy_dir: PathBuf,
    /// What a `redacted` view removes or generalises.
    #[serde(default)]
    pub redaction: RedactionProfile,
    /// PEM certificate revocation lists checked on every client handshake.
    #[serde(default)]
    pub crls: Vec<PathBuf>,
    /// Size and count limits.
    #[serde(default)]
    pub limits: Limits,
    /// Store-and-forward tuning.
    #[serde(default)]
    pub delivery: DeliveryConfig,
    /// The audit log.
    #[serde(default)]
    pub audit: AuditConfig,
    /// Follow-up access after a lookup hit.
    #[serde(default)]
    pub access: AccessConfig,
    /// Lookup quotas.
    #[serde(default)]
    pub lookup: LookupConfig,
    /// What the gateway does with its revocation lists (`crls`).
    #[serde(default)]
    pub revocation: RevocationConfig,
    /// Who witnesses the audit log's checkpoints.
    #[serde(default)]
    pub witness: WitnessConfig,
    /// Administration: the reload request file that `SIGHUP` needs.
    #[serde(default)]
    pub admin: AdminConfig,
    /// The alert lifecycle: how long holders have to confirm a change.
    #[serde(default)]
    pub lifecycle: LifecycleConfig,
    /// How long alerts may be stored, per crime area (LED Art. 5).
    #[serde(default)]
    pub storage: StorageConfig,
    /// The registered nodes, by node id.
    #[serde(default)]
    pub nodes: BTreeMap<String, NodeConfig>,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 7443))
}

/// Limits answered with `RESOURCE_EXHAUSTED`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest encoded alert accepted by `Publish`, in bytes.
    pub max_alert_bytes: usize,
    /// Longest narrative, in bytes.
    pub max_narrative_bytes: usize,
    /// Most entries in any list of an alert (subjects, addressees, documents, ...).
    pub max_list_len: usize,
    /// Requests per second one node may make, sustained (token bucket).
    pub rate_per_node: f64,
    /// Requests one node may make in a burst above the sustained rate.
    pub burst_per_node: u32,
    /// Subscription streams one node may hold open at once.
    pub max_streams_per_node: usize,
    /// Undelivered events queued for one node; a publish that would exceed it is refused.
    pub max_queue_per_node: u64,
    /// Largest request of any call but `Publish`, in bytes on the wire.
    /// `Publish` may send `max_alert_bytes` plus a small margin. Both are
    /// checked from the message's length prefix, before it is read.
    pub max_request_bytes: usize,
    /// How long a request may take to send its body, after its headers.
    #[serde(deserialize_with = "duration")]
    pub request_body_timeout: std::time::Duration,
    /// How long a connection may take, after its TLS handshake, to send the
    /// headers of its first request.
    #[serde(deserialize_with = "duration")]
    pub header_read_timeout: std::time::Duration,
    /// How long a TLS handshake may take.
    #[serde(deserialize_with = "duration")]
    pub handshake_timeout: std::time::Duration,
    /// Concurrent requests (HTTP/2 streams) on one connection. 100 is what
    /// HTTP/2 clients assume before the gateway's settings arrive; fewer
    /// makes a client that opens many at once see some refused.
    pub max_streams_per_connection: u32,
    /// Open connections, in total.
    pub max_connections: usize,
    /// Open connections of one registered node.
    pub max_connections_per_node: usize,
    /// TLS handshakes in progress, in total.
    pub max_handshakes: usize,
    /// TLS handshakes in progress from one address, so that one peer that
    /// opens connections and says nothing cannot hold every handshake slot.
    pub max_handshakes_per_address: usize,
    /// HTTP/2 keepalive: a ping after this much silence on a connection.
    #[serde(deserialize_with = "duration")]
    pub keepalive_interval: std::time::Duration,
    /// HTTP/2 keepalive: the connection closes if a ping is not answered in time.
    #[serde(deserialize_with = "duration")]
    pub keepalive_timeout: std::time::Duration,
    /// Streams a peer may reset before they are accepted (HTTP/2 rapid reset).
    pub max_pending_resets: usize,
    /// Streams the gateway resets for a peer's errors before it closes the connection.
    pub max_error_resets: usize,
    /// Alerts one lookup may match; more is refused (narrow the lookup).
    pub max_lookup_matches: usize,
    /// Refusals of one source (a node, or the address of an unregistered
    /// peer) recorded one by one per second; the rest are counted and
    /// recorded as one aggregate.
    pub refusal_records_per_second: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_alert_bytes: 64 * 1024,
            max_narrative_bytes: 16 * 1024,
            max_list_len: 64,
            rate_per_node: 500.0,
            burst_per_node: 1000,
            max_streams_per_node: 4,
            max_queue_per_node: 200_000,
            max_request_bytes: 16 * 1024,
            request_body_timeout: std::time::Duration::from_secs(10),
            header_read_timeout: std::time::Duration::from_secs(10),
            handshake_timeout: std::time::Duration::from_secs(10),
            max_streams_per_connection: 100,
            max_connections: 1024,
            max_connections_per_node: 16,
            max_handshakes: 64,
            max_handshakes_per_address: 8,
            keepalive_interval: std::time::Duration::from_secs(30),
            keepalive_timeout: std::time::Duration::from_secs(10),
            max_pending_resets: 20,
            max_error_resets: 64,
            max_lookup_matches: 256,
            refusal_records_per_second: 10,
        }
    }
}

/// What `Publish` may send on top of `limits.max_alert_bytes`: the request's
/// own framing around the alert.
pub const PUBLISH_MARGIN: usize = 1024;

impl Limits {
    /// The largest `Publish` request, in bytes.
    pub fn max_publish_bytes(&self) -> usize {
        self.max_alert_bytes.saturating_add(PUBLISH_MARGIN)
    }
}

/// What to do with a revocation list past its next update.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StaleCrls {
    /// Refuse to start on it, and refuse every client while it runs.
    #[default]
    Refuse,
    /// Warn, and keep using it.
    Warn,
}

/// The revocation lists' life while the gateway runs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RevocationConfig {
    /// A list past its next update: `"refuse"` (the default) or `"warn"`.
    pub stale: StaleCrls,
    /// Warn this many days before a list falls due.
    pub warn_days: u32,
    /// How often the lists are read again (besides SIGHUP), e.g. `"5m"`.
    #[serde(deserialize_with = "duration")]
    pub reload_every: std::time::Duration,
}

impl Default for RevocationConfig {
    fn default() -> Self {
        Self { stale: StaleCrls::Refuse, warn_days: 7, reload_every: std::time::Duration::from_secs(300) }
    }
}

/// Lookup quotas, so that lookups cannot mine the alerts (`quota` in the gateway).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LookupConfig {
    /// Lookups one node may make per window.
    pub per_node: u32,
    /// Lookups one officer of a node may make per window.
    pub per_officer: u32,
    /// The window of `per_node` and `per_officer`, e.g. `"1h"`.
    #[serde(deserialize_with = "duration")]
    pub window: std::time::Duration,
    /// Distinct dates of birth one node may try for one name per UTC day.
    pub max_dates_per_name: u32,
    /// How long a hit shown to an officer stays open for follow-up (an
    /// access request or a recorded decline) before it closes "without
    /// follow-up" (CIR Art. 22(2)), e.g. `"14d"`. Zero is refused.
    #[serde(deserialize_with = "duration")]
    pub follow_up_deadline: std::time::Duration,
}

impl Default for LookupConfig {
    fn default() -> Self {
        Self {
            per_node: 10_000,
            per_officer: 600,
            window: std::time::Duration::from_secs(3600),
            max_dates_per_name: 5,
            follow_up_deadline: std::time::Duration::from_secs(14 * 86_400),
        }
    }
}

/// Follow-up access requests after a lookup hit.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccessConfig {
    /// How long a holder has to decide a request, e.g. `"48h"` (Prüm II), `"30m"`, `"90s"`, `"2d"`.
    #[serde(deserialize_with = "duration")]
    pub deadline: std::time::Duration,
}

impl Default for AccessConfig {
    fn default() -> Self {
        Self { deadline: std::time::Duration::from_secs(48 * 3600) }
    }
}

/// Parses a duration as people write it: `"90s"`, `"30m"`, `"48h"`, `"2d"`
/// or `"1h 30m"` (humantime). Zero is refused.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let d = humantime::parse_duration(text.trim())
        .map_err(|e| format!("{text:?} is not a duration ({e}): use e.g. 90s, 30m, 48h or 2d"))?;
    if d.is_zero() {
        return Err(format!("{text:?} must be longer than zero"));
    }
    Ok(d)
}

fn duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<std::time::Duration, D::Error> {
    let text = String::deserialize(d)?;
    parse_duration(&text).map_err(serde::de::Error::custom)
}

/// A duration, or `"0"` / `"off"` for none.
fn duration_or_off<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<std::time::Duration>, D::Error> {
    let text = String::deserialize(d)?;
    match text.trim() {
        "0" | "off" => Ok(None),
        _ => parse_duration(&text).map(Some).map_err(|e| serde::de::Error::custom(format!("{e}, or \"off\""))),
    }
}

/// Store-and-forward tuning.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliveryConfig {
    /// How often undelivered alerts past `expires_at` are dropped, in milliseconds.
    pub expiry_sweep_ms: u64,
    /// How many deliveries a subscription reads from disk at a time.
    pub batch: usize,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self { expiry_sweep_ms: 1000, batch: 64 }
    }
}

/// Audit log settings. The keys (`audit.key`, `audit.pub`, `audit-hmac.key`) live in `pki_dir`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// Largest audit record, in bytes. A record that would be larger is
    /// refused (the request fails); the gateway caps what it records so
    /// that no valid request comes near it.
    pub max_record_bytes: usize,
    /// Most entries in one message of an export stream.
    pub export_batch: usize,
    /// Sign a checkpoint once this many records were appended since the last one.
    pub checkpoint_every_records: u64,
    /// Sign a checkpoint at least this often while records arrive, in milliseconds.
    pub checkpoint_every_ms: u64,
    /// After each group-commit flush, fsync the database files, so that
    /// acknowledged records survive power loss, not only a process crash.
    pub fsync: bool,
    /// How long audit records are kept (`isx audit prune` without
    /// `--before` cuts at now minus this): from a record's time, or, for a
    /// record naming an alert, from that alert's end (expiry or erasure).
    /// Three years by default (SIS Art. 12).
    #[serde(deserialize_with = "duration")]
    pub retention: std::time::Duration,
    /// Nothing younger than this is ever pruned, whatever date is asked.
    #[serde(deserialize_with = "duration")]
    pub retention_floor: std::time::Duration,
    /// How often the gateway prunes, online, what the rule allows (`"0"` or
    /// `"off"`: never; `isx admin prune` still can). Daily by default, which
    /// is safe: it cuts at now minus `retention`, and nothing inside the
    /// retention or the floor, of a live alert or under a legal hold goes.
    #[serde(deserialize_with = "duration_or_off")]
    pub prune_every: Option<std::time::Duration>,
}

impl AuditConfig {
    /// The retention rule these keys set.
    pub fn retention_rule(&self) -> isx_audit::retention::Rule {
        let ms = |d: std::time::Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        isx_audit::retention::Rule { retention_ms: ms(self.retention), floor_ms: ms(self.retention_floor) }
    }
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            max_record_bytes: 64 * 1024,
            export_batch: 256,
            checkpoint_every_records: 1024,
            checkpoint_every_ms: 1000,
            fsync: true,
            retention: std::time::Duration::from_secs(1095 * 86_400),
            retention_floor: std::time::Duration::from_secs(30 * 86_400),
            prune_every: Some(std::time::Duration::from_secs(86_400)),
        }
    }
}

/// Witnessed checkpoints (C2SP `tlog-witness`): the witnesses the gateway
/// offers each checkpoint to, and what it does when they are away.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WitnessConfig {
    /// A C2SP `tlog-policy` file: the log (this gateway's `audit.pub`),
    /// each witness with its cosignature key and URL, and the quorum.
    /// Without it, checkpoints carry the gateway's signature alone.
    pub policy: Option<PathBuf>,
    /// The newest witnessed checkpoint may be at most this old, while
    /// records wait to be witnessed, before health turns NOT_SERVING.
    #[serde(deserialize_with = "duration")]
    pub max_age: std::time::Duration,
    /// How long one add-checkpoint call to a witness may take.
    #[serde(deserialize_with = "duration")]
    pub timeout: std::time::Duration,
    /// Refuse to start when no witness answers the start-up check (by
    /// default the gateway starts, warns, and reports it in health).
    pub require_at_start: bool,
}

impl Default for WitnessConfig {
    fn default() -> Self {
        Self {
            policy: None,
            max_age: std::time::Duration::from_secs(3600),
            timeout: std::time::Duration::from_secs(5),
            require_at_start: false,
        }
    }
}

/// Administration outside the `Admin` service: a policy reload on
/// `SIGHUP` needs a request file naming the officer and the reason
/// (`isx admin request-reload` writes it), which the reload consumes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// The request file; default `<data_dir>/reload-request.toml`.
    pub reload_request: Option<PathBuf>,
    /// A request file older than this is refused (and consumed): it was
    /// written for another reload.
    #[serde(deserialize_with = "duration")]
    pub reload_request_max_age: std::time::Duration,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self { reload_request: None, reload_request_max_age: std::time::Duration::from_secs(3600) }
    }
}

impl AdminConfig {
    /// Where the request file is, for a gateway whose data directory is `data_dir`.
    pub fn reload_request_path(&self, data_dir: &Path) -> PathBuf {
        self.reload_request.clone().unwrap_or_else(|| data_dir.join("reload-request.toml"))
    }
}

/// The alert lifecycle (`[lifecycle]`): amendments, withdrawals,
/// restrictions and expiry reach every copy, and each holder confirms.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LifecycleConfig {
    /// A holder that has not confirmed a change after this long is shown
    /// as overdue (`isx alert status`, the console), e.g. `"1h"`.
    #[serde(deserialize_with = "duration")]
    pub confirm_grace: std::time::Duration,
    /// How long an ended (withdrawn or expired) alert's status is kept once
    /// every copy has confirmed; the audit log keeps its history regardless.
    #[serde(deserialize_with = "duration")]
    pub keep_status: std::time::Duration,
}

impl Default for LifecycleConfig {
    fn default() -> Self {
        Self {
            confirm_grace: std::time::Duration::from_secs(3600),
            keep_status: std::time::Duration::from_secs(30 * 86_400),
        }
    }
}

/// Storage limits (`[storage]`, LED Art. 5): how far in the future an
/// alert's `expires_at` may be, counted from its first publication.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// The limit for every crime area not named in `by_category`, e.g. `"365d"`.
    #[serde(deserialize_with = "duration")]
    pub max_period: std::time::Duration,
    /// Per crime area, by the snake-case name policy uses
    /// (`terrorism = "1095d"`); checked against the known areas at load.
    #[serde(deserialize_with = "duration_map")]
    pub by_category: BTreeMap<String, std::time::Duration>,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self { max_period: std::time::Duration::from_secs(365 * 86_400), by_category: BTreeMap::new() }
    }
}

impl StorageConfig {
    /// The crime areas `by_category` may name: every category but
    /// `unspecified`, by the snake-case name policy uses.
    pub fn areas() -> Vec<String> {
        (1..=255).filter_map(|i| isx_core::wire::Category::try_from(i).ok()).map(isx_core::display::category).collect()
    }

    /// The limit for `area` and the config key it comes from:
    /// `storage.by_category.<area>`, else `storage.max_period`.
    pub fn limit_for(&self, area: &str) -> (std::time::Duration, String) {
        match self.by_category.get(area) {
            Some(d) => (*d, format!("storage.by_category.{area}")),
            None => (self.max_period, "storage.max_period".to_owned()),
        }
    }

    /// Every area named must be a known crime area.
    fn validate(&self) -> Result<(), ConfigError> {
        let areas = Self::areas();
        if let Some(unknown) = self.by_category.keys().find(|k| !areas.contains(k)) {
            return Err(ConfigError::Invalid {
                key: format!("storage.by_category.{unknown}"),
                message: format!("{unknown:?} is not a crime area; use one of {}", areas.join(", ")),
            });
        }
        Ok(())
    }
}

fn duration_map<'de, D: serde::Deserializer<'de>>(d: D) -> Result<BTreeMap<String, std::time::Duration>, D::Error> {
    let raw = BTreeMap::<String, String>::deserialize(d)?;
    raw.into_iter()
        .map(|(k, v)| {
            parse_duration(&v)
                .map(|d| (k.clone(), d))
                .map_err(|e| serde::de::Error::custom(format!("storage.by_category.{k}: {e}")))
        })
        .collect()
}

/// One registered node.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// What kind of agency it is.
    pub kind: NodeKind,
    /// ISO 3166-1 alpha-2 country, e.g. `DE`; `EU` for Union agencies.
    pub country: String,
    /// What it may do; defaults by kind (auditor: audit; others: publish, subscribe, lookup).
    pub roles: Option<Vec<Role>>,
    /// A human label for tables, e.g. "Bundeskriminalamt".
    #[serde(default)]
    pub name: String,
    /// For a node with the `audit` role: whose records it reads. `"all"`,
    /// `"own"` (the records it is party to) or a list of node ids (a
    /// national authority for its country's nodes). Default: `"all"` for an
    /// auditor, `"own"` for any other node with the audit role.
    #[serde(default)]
    pub audit_scope: Option<AuditScopeSetting>,
}

/// `audit_scope` as written in the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditScopeSetting {
    /// `"all"`: every record.
    All,
    /// `"own"`: the records the node itself is party to.
    Own,
    /// `["de-police", "fr-police"]`: the records those nodes are party to.
    Nodes(Vec<String>),
}

impl<'de> Deserialize<'de> for AuditScopeSetting {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = AuditScopeSetting;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("\"all\", \"own\" or a list of node ids such as [\"de-police\", \"fr-police\"]")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                match v {
                    "all" => Ok(AuditScopeSetting::All),
                    "own" => Ok(AuditScopeSetting::Own),
                    other => Err(E::custom(format!(
                        "audit_scope {other:?}: use \"all\", \"own\" or a list of node ids such as [\"de-police\"]"
                    ))),
                }
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut nodes = Vec::new();
                // Bounded by the config file's list.
                while let Some(n) = seq.next_element::<String>()? {
                    nodes.push(n);
                }
                Ok(AuditScopeSetting::Nodes(nodes))
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// Whose records an auditor reads, resolved from `audit_scope` and its defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditScope {
    /// Every record.
    All,
    /// The records the node is party to.
    Own(NodeId),
    /// The records these registered nodes are party to.
    Nodes(Vec<NodeId>),
}

impl AuditScope {
    /// The node set records must be in, or `None` for every record.
    pub fn scope(&self) -> Option<isx_audit::scope::Scope> {
        match self {
            Self::All => None,
            Self::Own(id) => Some(isx_audit::scope::Scope::of([id.to_string()])),
            Self::Nodes(ids) => Some(isx_audit::scope::Scope::of(ids.iter().map(NodeId::to_string))),
        }
    }

    /// The scope in words: `all nodes`, `own records (de-police)`,
    /// `nodes de-police, fr-police`.
    pub fn describe(&self) -> String {
        match self {
            Self::All => "all nodes".into(),
            Self::Own(id) => format!("own records ({id})"),
            Self::Nodes(_) => self.scope().map(|s| s.describe()).unwrap_or_default(),
        }
    }
}

pub use isx_core::NodeInfo;

impl GatewayConfig {
    /// Reads, parses and validates `path`, resolving relative paths against its directory.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        let mut config: Self =
            toml::from_str(&text).map_err(|source| ConfigError::Parse { path: path.to_owned(), source })?;
        let base = path.parent().unwrap_or(Path::new("."));
        config.resolve_paths(base);
        config.validate()?;
        Ok(config)
    }

    /// Makes relative paths relative to `base`.
    pub fn resolve_paths(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        fix(&mut self.pki_dir);
        fix(&mut self.data_dir);
        fix(&mut self.policy_dir);
        self.crls.iter_mut().for_each(fix);
        if let Some(p) = self.witness.policy.as_mut() {
            fix(p);
        }
        if let Some(p) = self.admin.reload_request.as_mut() {
            fix(p);
        }
    }

    /// Checks every value, naming the first bad key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key: String, message: String| Err(ConfigError::Invalid { key, message });
        if self.nodes.is_empty() {
            return bad("nodes".into(), "at least one node must be registered".into());
        }
        for (id, node) in &self.nodes {
            if let Err(e) = NodeId::new(id.clone()) {
                return bad(format!("nodes.{id}"), e.to_string());
            }
            let country_ok = isx_core::validate::is_country(&node.country);
            if !country_ok {
                return bad(
                    format!("nodes.{id}.country"),
                    format!("{:?} is not a two-letter upper-case code such as \"DE\" or \"EU\"", node.country),
                );
            }
            if node.roles.as_ref().is_some_and(|r| r.is_empty()) {
                return bad(
                    format!("nodes.{id}.roles"),
                    "is empty; omit it for the defaults of the node's kind".into(),
                );
            }
            let audits = node.roles.clone().unwrap_or_else(|| node.kind.default_roles()).contains(&Role::Audit);
            match &node.audit_scope {
                Some(_) if !audits => {
                    return bad(
                        format!("nodes.{id}.audit_scope"),
                        format!(
                            "node {id} does not hold the audit role, so it reads no audit log: add \"audit\" to its roles or remove audit_scope"
                        ),
                    );
                }
                Some(AuditScopeSetting::Nodes(list)) if list.is_empty() => {
                    return bad(
                        format!("nodes.{id}.audit_scope"),
                        "is an empty list: name the nodes whose records it reads, or use \"own\" or \"all\"".into(),
                    );
                }
                Some(AuditScopeSetting::Nodes(list)) => {
                    if let Some(unknown) = list.iter().find(|n| !self.nodes.contains_key(n.as_str())) {
                        return bad(
                            format!("nodes.{id}.audit_scope"),
                            format!("names {unknown:?}, which is not a registered node (no [nodes.{unknown}])"),
                        );
                    }
                }
                _ => {}
            }
        }
        if let Err(e) = self.redaction.validate() {
            return bad("redaction".into(), e.to_string());
        }
        if self.limits.rate_per_node.is_nan() || self.limits.rate_per_node <= 0.0 {
            return bad("limits.rate_per_node".into(), "must be more than 0 requests per second".into());
        }
        if self.limits.burst_per_node == 0
            || self.limits.max_streams_per_node == 0
            || self.limits.max_queue_per_node == 0
        {
            return bad(
                "limits".into(),
                "burst_per_node, max_streams_per_node and max_queue_per_node must be at least 1".into(),
            );
        }
        if self.limits.max_alert_bytes < 1024 {
            return bad("limits.max_alert_bytes".into(), "must be at least 1024".into());
        }
        if self.limits.max_request_bytes < 1024 {
            return bad("limits.max_request_bytes".into(), "must be at least 1024".into());
        }
        for (key, value) in [
            ("limits.max_streams_per_connection", self.limits.max_streams_per_connection as usize),
            ("limits.max_connections", self.limits.max_connections),
            ("limits.max_connections_per_node", self.limits.max_connections_per_node),
            ("limits.max_handshakes", self.limits.max_handshakes),
            ("limits.max_handshakes_per_address", self.limits.max_handshakes_per_address),
            ("limits.max_lookup_matches", self.limits.max_lookup_matches),
            ("limits.refusal_records_per_second", self.limits.refusal_records_per_second as usize),
        ] {
            if value == 0 {
                return bad(key.into(), "must be at least 1".into());
            }
        }
        if self.delivery.batch == 0 {
            return bad("delivery.batch".into(), "must be at least 1".into());
        }
        for (key, value) in [
            ("lookup.per_node", self.lookup.per_node),
            ("lookup.per_officer", self.lookup.per_officer),
            ("lookup.max_dates_per_name", self.lookup.max_dates_per_name),
        ] {
            if value == 0 {
                return bad(key.into(), "must be at least 1".into());
            }
        }
        if self.audit.max_record_bytes < 4096 {
            return bad("audit.max_record_bytes".into(), "must be at least 4096".into());
        }
        if self.audit.export_batch == 0 {
            return bad("audit.export_batch".into(), "must be at least 1".into());
        }
        if self.audit.checkpoint_every_records == 0 {
            return bad("audit.checkpoint_every_records".into(), "must be at least 1".into());
        }
        if self.audit.checkpoint_every_ms == 0 {
            return bad("audit.checkpoint_every_ms".into(), "must be at least 1".into());
        }
        if self.audit.retention_floor > self.audit.retention {
            return bad(
                "audit.retention_floor".into(),
                format!(
                    "{} is longer than audit.retention ({}): the floor must be at most the retention",
                    isx_audit::retention::span(self.audit.retention_rule().floor_ms),
                    isx_audit::retention::span(self.audit.retention_rule().retention_ms)
                ),
            );
        }
        if self.delivery.expiry_sweep_ms == 0 {
            return bad("delivery.expiry_sweep_ms".into(), "must be at least 1".into());
        }
        self.storage.validate()?;
        Ok(())
    }

    /// Whose records node `id` reads, if it holds the audit role: its
    /// `audit_scope`, or by default every record for an auditor and its own
    /// records for any other node.
    pub fn audit_scope(&self, id: &str) -> Option<AuditScope> {
        let node = self.nodes.get(id)?;
        let node_id = NodeId::new(id).ok()?;
        if !node.roles.clone().unwrap_or_else(|| node.kind.default_roles()).contains(&Role::Audit) {
            return None;
        }
        Some(match &node.audit_scope {
            Some(AuditScopeSetting::All) => AuditScope::All,
            Some(AuditScopeSetting::Own) => AuditScope::Own(node_id),
            Some(AuditScopeSetting::Nodes(list)) => {
                let mut ids: Vec<NodeId> = list.iter().filter_map(|n| NodeId::new(n.clone()).ok()).collect();
                ids.sort();
                ids.dedup();
                AuditScope::Nodes(ids)
            }
            None if node.kind == NodeKind::Auditor => AuditScope::All,
            None => AuditScope::Own(node_id),
        })
    }

    /// The registered nodes, resolved, in id order.
    pub fn node_infos(&self) -> Vec<NodeInfo> {
        self.nodes
            .iter()
            .map(|(id, n)| NodeInfo {
                id: NodeId::new(id.clone()).expect("validated"),
                kind: n.kind,
                country: n.country.clone(),
                roles: n.roles.clone().unwrap_or_else(|| n.kind.default_roles()),
                name: if n.name.is_empty() { id.clone() } else { n.name.clone() },
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<GatewayConfig, String> {
        let config: GatewayConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        config.validate().map_err(|e| e.to_string())?;
        Ok(config)
    }

    const BASE: &str = "pki_dir = \"pki\"\ndata_dir = \"data\"\npolicy_dir = \"policy\"\n";

    #[test]
    fn witness_settings_parse_and_resolve_next_to_the_file() {
        let mut c = parse(&format!(
            "{BASE}[witness]\npolicy = \"pki/witness.policy\"\nmax_age = \"10m\"\ntimeout = \"2s\"\nrequire_at_start = true\n[nodes.x]\nkind = \"national\"\ncountry = \"DE\"\n"
        ))
        .unwrap();
        c.resolve_paths(Path::new("/etc/isx"));
        assert_eq!(c.witness.policy.as_deref(), Some(Path::new("/etc/isx/pki/witness.policy")));
        assert_eq!(c.witness.max_age, std::time::Duration::from_secs(600));
        assert_eq!(c.witness.timeout, std::time::Duration::from_secs(2));
        assert!(c.witness.require_at_start);
        let d = WitnessConfig::default();
        assert_eq!(
            (d.policy, d.max_age, d.timeout, d.require_at_start),
            (None, std::time::Duration::from_secs(3600), std::time::Duration::from_secs(5), false)
        );
        let e = parse(&format!("{BASE}[witness]\nquorum = 2\n[nodes.x]\nkind = \"national\"\ncountry = \"DE\"\n"))
            .unwrap_err();
        assert!(e.contains("unknown field `quorum`"), "{e}");
    }

    #[test]
    fn table() {
        let cases: &[(&str, Result<(), &str>)] = &[
            ("[nodes.de-police]\nkind = \"national\"\ncountry = \"DE\"\n", Ok(())),
            ("", Err("nodes: at least one node")),
            ("[nodes.de-police]\nkind = \"national\"\ncountry = \"Germany\"\n", Err("nodes.de-police.country")),
            ("[nodes.de-police]\nkind = \"navy\"\ncountry = \"DE\"\n", Err("unknown variant `navy`")),
            ("[nodes.De]\nkind = \"national\"\ncountry = \"DE\"\n", Err("nodes.De")),
            ("[nodes.x]\nkind = \"national\"\ncountry = \"DE\"\nroles = []\n", Err("nodes.x.roles")),
            ("colour = 1\n[nodes.x]\nkind = \"national\"\ncountry = \"DE\"\n", Err("unknown field `colour`")),
            (
                "[redaction]\nremove = [\"narrative\"]\n[nodes.x]\nkind = \"national\"\ncountry = \"DE\"\n",
                Err("subjects.special_categories"),
            ),
            (
                "[redaction]\nremove = [\"subjects.shoe_size\"]\n[nodes.x]\nkind = \"national\"\ncountry = \"DE\"\n",
                Err("unknown variant"),
            ),
            (
                "[limits]\nmax_alert_bytes = 10\n[nodes.x]\nkind = \"national\"\ncountry = \"DE\"\n",
                Err("limits.max_alert_bytes"),
            ),
            ("[access]\ndeadline = \"30m\"\n[nodes.x]\nkind = \"national\"\ncountry = \"DE\"\n", Ok(())),
            (
                "[access]\ndeadline = \"48\"\n[nodes.x]\nkind = \"national\"\ncountry = \"DE\"\n",
                Err("is not a duration (time unit needed"),
            ),
            (
                "[audit]\nretention = \"365d\"\nretention_floor = \"7d\"\n[nodes.x]\nkind = \"national\"\ncountry = \"DE\"\n",
                Ok(()),
            ),
            (
                "[audit]\nretention = \"10d\"\nretention_floor = \"30d\"\n[nodes.x]\nkind = \"national\"\ncountry = \"DE\"\n",
                Err("audit.retention_floor: 30d is longer than audit.retention (10d)"),
            ),
            (
                "[audit]\nretention = \"0s\"\n[nodes.x]\nkind = \"national\"\ncountry = \"DE\"\n",
                Err("must be longer than zero"),
            ),
            (
                "[audit]\nretention_floor = \"0d\"\n[nodes.x]\nkind = \"national\"\ncountry = \"DE\"\n",
                Err("must be longer than zero"),
            ),
            ("[audit]\nretention = \"3y\"\n[nodes.x]\nkind = \"national\"\ncountry = \"DE\"\n", Ok(())),
            (
                "[admin]\nreload_request = \"req.toml\"\nreload_request_max_age = \"10m\"\n[nodes.x]\nkind = \"national\"\ncountry = \"DE\"\n",
                Ok(()),
            ),
            (
                "[admin]\nreload = true\n[nodes.x]\nkind = \"national\"\ncountry = \"DE\"\n",
                Err("unknown field `reload`"),
            ),
            ("[audit]\nprune_every = \"12h\"\n[nodes.x]\nkind = \"national\"\ncountry = \"DE\"\n", Ok(())),
            ("[audit]\nprune_every = \"off\"\n[nodes.x]\nkind = \"national\"\ncountry = \"DE\"\n", Ok(())),
            ("[audit]\nprune_every = \"0\"\n[nodes.x]\nkind = \"national\"\ncountry = \"DE\"\n", Ok(())),
            (
                "[audit]\nprune_every = \"daily\"\n[nodes.x]\nkind = \"national\"\ncountry = \"DE\"\n",
                Err("\"daily\" is not a duration"),
            ),
            (
                "[storage]\nmax_period = \"180d\"\n[storage.by_category]\nterrorism = \"1095d\"\n[nodes.x]\nkind = \"national\"\ncountry = \"DE\"\n",
                Ok(()),
            ),
            (
                "[storage]\nmax_period = \"0d\"\n[nodes.x]\nkind = \"national\"\ncountry = \"DE\"\n",
                Err("max_period = \"0d\""),
            ),
            (
                "[storage.by_category]\nterrorism = \"0s\"\n[nodes.x]\nkind = \"national\"\ncountry = \"DE\"\n",
                Err("storage.by_category.terrorism: \"0s\" must be longer than zero"),
            ),
            (
                "[storage.by_category]\nterror = \"30d\"\n[nodes.x]\nkind = \"national\"\ncountry = \"DE\"\n",
                Err("storage.by_category.terror: \"terror\" is not a crime area; use one of drug_trafficking,"),
            ),
            (
                "[storage]\nmax_age = \"30d\"\n[nodes.x]\nkind = \"national\"\ncountry = \"DE\"\n",
                Err("unknown field `max_age`"),
            ),
            ("[lookup]\nfollow_up_deadline = \"7d\"\n[nodes.x]\nkind = \"national\"\ncountry = \"DE\"\n", Ok(())),
            (
                "[lookup]\nfollow_up_deadline = \"0\"\n[nodes.x]\nkind = \"national\"\ncountry = \"DE\"\n",
                Err("follow_up_deadline = \"0\""),
            ),
            (
                "[lookup]\nfollow_up_deadline = \"0s\"\n[nodes.x]\nkind = \"national\"\ncountry = \"DE\"\n",
                Err("must be longer than zero"),
            ),
        ];
        for (text, expect) in cases {
            let got = parse(&format!("{BASE}{text}"));
            match (expect, got) {
                (Ok(()), Ok(_)) => {}
                (Err(needle), Err(msg)) => assert!(msg.contains(needle), "{text}: {msg}"),
                (e, g) => panic!("{text}: expected {e:?}, got {g:?}"),
            }
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("48h"), Ok(std::time::Duration::from_secs(172_800)));
        assert_eq!(parse_duration("2d"), parse_duration("48h"));
        assert_eq!(parse_duration(" 90s "), Ok(std::time::Duration::from_secs(90)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("h").is_err());
        assert!(parse_duration("5 fortnights").is_err());
        assert!(parse_duration("99999999999999999999d").is_err(), "overflow is an error, not a wrap");
        assert_eq!(parse_duration("1h 30m"), Ok(std::time::Duration::from_secs(5400)));
        assert_eq!(AccessConfig::default().deadline, std::time::Duration::from_secs(48 * 3600));
        assert_eq!(LookupConfig::default().follow_up_deadline, std::time::Duration::from_secs(14 * 86_400));
        assert_eq!(StorageConfig::default().max_period, std::time::Duration::from_secs(365 * 86_400), "LED Art. 5");
        let rule = AuditConfig::default().retention_rule();
        assert_eq!((rule.retention_ms, rule.floor_ms), (1095 * 86_400_000, 30 * 86_400_000), "SIS Art. 12: 3 years");
        assert_eq!(AuditConfig::default().prune_every, Some(std::time::Duration::from_secs(86_400)), "daily");
        let off: AuditConfig = toml::from_str("prune_every = \"off\"").unwrap();
        assert_eq!(off.prune_every, None);
    }

    #[test]
    fn default_roles_by_kind() {
        let c = parse(&format!("{BASE}[nodes.auditor]\nkind = \"auditor\"\ncountry = \"EU\"\n[nodes.europol]\nkind = \"europol\"\ncountry = \"EU\"\n")).unwrap();
        let infos = c.node_infos();
        assert_eq!(infos[0].roles, vec![Role::Audit]);
        assert!(infos[1].has(Role::Subscribe) && !infos[1].has(Role::Audit));
    }

    #[test]
    fn audit_scopes_parse_default_by_kind_and_name_their_key() {
        let nodes = "[nodes.de-police]\nkind = \"national\"\ncountry = \"DE\"\n[nodes.fr-police]\nkind = \"national\"\ncountry = \"FR\"\n";
        let with = |extra: &str| parse(&format!("{BASE}{nodes}{extra}"));
        let de = NodeId::new("de-police").unwrap();
        let fr = NodeId::new("fr-police").unwrap();
        let cases: &[(&str, Result<Option<AuditScope>, &str>)] = &[
            ("[nodes.a]\nkind = \"auditor\"\ncountry = \"EU\"\n", Ok(Some(AuditScope::All))),
            (
                "[nodes.a]\nkind = \"national\"\ncountry = \"DE\"\nroles = [\"audit\"]\n",
                Ok(Some(AuditScope::Own(NodeId::new("a").unwrap()))),
            ),
            ("[nodes.a]\nkind = \"national\"\ncountry = \"DE\"\n", Ok(None)),
            (
                "[nodes.a]\nkind = \"auditor\"\ncountry = \"EU\"\naudit_scope = \"own\"\n",
                Ok(Some(AuditScope::Own(NodeId::new("a").unwrap()))),
            ),
            (
                "[nodes.a]\nkind = \"national\"\ncountry = \"DE\"\nroles = [\"audit\", \"lookup\"]\naudit_scope = \"all\"\n",
                Ok(Some(AuditScope::All)),
            ),
            (
                "[nodes.a]\nkind = \"auditor\"\ncountry = \"FR\"\naudit_scope = [\"fr-police\", \"de-police\", \"fr-police\"]\n",
                Ok(Some(AuditScope::Nodes(vec![de.clone(), fr.clone()]))),
            ),
            (
                "[nodes.a]\nkind = \"national\"\ncountry = \"DE\"\naudit_scope = \"own\"\n",
                Err("nodes.a.audit_scope: node a does not hold the audit role"),
            ),
            (
                "[nodes.a]\nkind = \"auditor\"\ncountry = \"EU\"\naudit_scope = [\"nl-police\"]\n",
                Err("nodes.a.audit_scope: names \"nl-police\", which is not a registered node"),
            ),
            (
                "[nodes.a]\nkind = \"auditor\"\ncountry = \"EU\"\naudit_scope = []\n",
                Err("nodes.a.audit_scope: is an empty list"),
            ),
            (
                "[nodes.a]\nkind = \"auditor\"\ncountry = \"EU\"\naudit_scope = \"everyone\"\n",
                Err("audit_scope \"everyone\": use \"all\", \"own\" or a list"),
            ),
            (
                "[nodes.a]\nkind = \"auditor\"\ncountry = \"EU\"\naudit_scope = 3\n",
                Err("expected \"all\", \"own\" or a list of node ids"),
            ),
        ];
        for (text, want) in cases {
            match (want, with(text)) {
                (Ok(scope), Ok(c)) => assert_eq!(c.audit_scope("a"), *scope, "{text}"),
                (Err(needle), Err(msg)) => assert!(msg.contains(needle), "{text}: {msg}"),
                (w, g) => panic!("{text}: expected {w:?}, got {g:?}"),
            }
        }
        assert_eq!(AuditScope::Nodes(vec![de.clone(), fr]).describe(), "nodes de-police, fr-police");
        assert_eq!(AuditScope::Own(de).describe(), "own records (de-police)");
        assert_eq!(AuditScope::All.scope(), None);
    }

    #[test]
    fn relative_paths_follow_the_file() {
        let mut c = parse(&format!("{BASE}[nodes.x]\nkind = \"national\"\ncountry = \"DE\"\n")).unwrap();
        c.resolve_paths(Path::new("/etc/isx"));
        assert_eq!(c.pki_dir, PathBuf::from("/etc/isx/pki"));
        assert_eq!(c.admin.reload_request_path(&c.data_dir), PathBuf::from("/etc/isx/data/reload-request.toml"));
        let mut c = parse(&format!(
            "{BASE}[admin]\nreload_request = \"run/req.toml\"\n[nodes.x]\nkind = \"national\"\ncountry = \"DE\"\n"
        ))
        .unwrap();
        c.resolve_paths(Path::new("/etc/isx"));
        assert_eq!(c.admin.reload_request_path(&c.data_dir), PathBuf::from("/etc/isx/run/req.toml"));
        assert_eq!(c.admin.reload_request_max_age, std::time::Duration::from_secs(3600));
    }
}
