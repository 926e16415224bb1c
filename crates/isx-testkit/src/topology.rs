//! An in-process topology: one gateway and its mock agencies.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use isx_core::redaction::RedactionProfile;
use isx_core::wire::{ReadPurpose, ReadReason};
use isx_core::{NodeId, NodeKind, Role};
use isx_gateway::config::{AuditScopeSetting, DeliveryConfig, Limits, NodeConfig};
use isx_gateway::{Gateway, GatewayConfig};
use isx_node::config::AccessRule;
use isx_node::{Client, ClientOptions, Inbox, InspectClient, MockNode, NodeEvent};

use crate::agency::Agency;
use tokio::net::TcpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Why a topology could not start or change.
#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    /// PKI generation failed.
    #[error(transparent)]
    Pki(#[from] isx_tls::pki::PkiError),
    /// The gateway did not start.
    #[error("gateway: {0}")]
    Gateway(#[from] isx_gateway::StartError),
    /// The gateway config is invalid.
    #[error("gateway config: {0}")]
    Config(#[from] isx_gateway::ConfigError),
    /// A node could not start.
    #[error("node {node}: {message}")]
    Node {
        /// Which node.
        node: String,
        /// What failed.
        message: String,
    },
    /// A client could not connect.
    #[error(transparent)]
    Client(#[from] isx_node::ClientError),
    /// Local I/O failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The node is not part of this topology.
    #[error("no node {0:?} in this topology")]
    UnknownNode(String),
    /// The operation needs the gateway in this process (see [`Topology::attach`]).
    #[error("{0} needs an in-process gateway; this topology is attached to a running one")]
    Attached(&'static str),
    /// No gateway answers at the address given to [`Topology::attach`].
    #[error(
        "no gateway answers at {addr}: {reason}. Start one (`isx up`, or `isx up --no-agencies`; its banner prints the address), or give the address it listens on"
    )]
    Unreachable {
        /// The address.
        addr: String,
        /// What the connection attempt met.
        reason: String,
    },
    /// The node's agency runs in another process ([`Topology::attach_with`]):
    /// this topology cannot stop or start it.
    #[error("{0}'s agency runs in another process; this topology cannot stop or start it")]
    Elsewhere(String),
}

/// One node of a topology.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    /// Node id.
    pub id: NodeId,
    /// Kind.
    pub kind: NodeKind,
    /// Country code.
    pub country: String,
    /// Roles; `None` for the kind's defaults.
    pub roles: Option<Vec<Role>>,
    /// Display name.
    pub name: String,
    /// Start a mock agency for this node (auditors usually have none).
    pub run_mock: bool,
    /// How the mock agency answers access requests for its alerts.
    pub access_rules: Vec<AccessRule>,
    /// The mock agency also witnesses the gateway's audit log (`witness = true`).
    pub witness: bool,
    /// Its `audit_scope` (a node with the audit role); `None` for the default.
    pub audit_scope: Option<AuditScopeSetting>,
}

impl NodeSpec {
    /// A node with the kind's default roles and a running mock agency.
    pub fn new(id: &str, kind: NodeKind, country: &str, name: &str) -> Self {
        Self {
            id: NodeId::new(id).expect("valid node id"),
            kind,
            country: country.into(),
            roles: None,
            name: name.into(),
            run_mock: kind != NodeKind::Auditor,
            access_rules: vec![],
            witness: false,
            audit_scope: None,
        }
    }

    /// An operations node: the `admin` role alone (the `Admin` service),
    /// no mock agency. Its kind is `auditor`, the kind no disclosure policy
    /// permits anything, so it never receives an alert.
    pub fn admin(id: &str) -> Self {
        Self {
            roles: Some(vec![Role::Admin]),
            run_mock: false,
            ..Self::new(id, NodeKind::Auditor, "EU", "Gateway operations")
        }
    }

    /// An auditor node without an agency: roles `roles` (`None` for the
    /// kind's, `audit` for an auditor) and audit scope `scope` (`None`
    /// for the default: all for an auditor, own for any other kind).
    pub fn auditor(
        id: &str,
        kind: NodeKind,
        country: &str,
        roles: Option<Vec<Role>>,
        scope: Option<AuditScopeSetting>,
    ) -> Self {
        Self { roles, audit_scope: scope, run_mock: false, ..Self::new(id, kind, country, id) }
    }

    /// The same node with roles `roles`.
    pub fn with_roles(mut self, roles: Vec<Role>) -> Self {
        self.roles = Some(roles);
        self
    }

    /// The same node with audit scope `scope`.
    pub fn with_audit_scope(mut self, scope: AuditScopeSetting) -> Self {
        self.audit_scope = Some(scope);
        self
    }

    /// The same node, its agency witnessing the gateway's audit log.
    pub fn witnessing(mut self) -> Self {
        self.witness = true;
        self
    }

    /// The same node answering access requests by `rules`.
    pub fn with_access_rules(mut self, rules: Vec<AccessRule>) -> Self {
        self.access_rules = rules;
        self
    }
}

/// What to start.
#[derive(Debug, Clone)]
pub struct TopologySpec {
    /// The nodes.
    pub nodes: Vec<NodeSpec>,
    /// Gateway limits.
    pub limits: Limits,
    /// Store-and-forward tuning.
    pub delivery: DeliveryConfig,
    /// The policy directory; `None` writes the default policy into the topology's directory.
    pub policy_dir: Option<PathBuf>,
    /// The redaction profile.
    pub redaction: RedactionProfile,
    /// Audit log settings.
    pub audit: isx_gateway::config::AuditConfig,
    /// Follow-up access settings (the holder's deadline).
    pub access: isx_gateway::config::AccessConfig,
    /// Lookup quotas.
    pub lookup: isx_gateway::config::LookupConfig,
    /// The alert lifecycle (confirmation grace).
    pub lifecycle: isx_gateway::config::LifecycleConfig,
    /// Storage limits per crime area.
    pub storage: isx_gateway::config::StorageConfig,
    /// What the gateway does with its revocation lists.
    pub revocation: isx_gateway::config::RevocationConfig,
    /// Nodes whose certificates are revoked (on the gateway's CRL) from the start.
    pub revoked: Vec<NodeId>,
    /// Standalone witnesses to run in this process (ids; `witness` is the
    /// one `isx pki init` makes keys for). With these or witnessing agencies
    /// the topology writes a witness policy and the gateway uses it.
    pub witnesses: Vec<String>,
    /// The policy's quorum over every witness (standalone, then agencies):
    /// `all`, `any` or a number.
    pub witness_quorum: String,
    /// The gateway's witness settings (`policy` is set by the topology).
    pub witness: isx_gateway::config::WitnessConfig,
}

impl TopologySpec {
    /// Three national police forces, Europol, Frontex and an auditor.
    pub fn default_agencies() -> Self {
        Self {
            nodes: vec![
                NodeSpec::new("de-police", NodeKind::National, "DE", "Bundeskriminalamt (DE)"),
                NodeSpec::new("fr-police", NodeKind::National, "FR", "Police nationale (FR)"),
                NodeSpec::new("it-police", NodeKind::National, "IT", "Polizia di Stato (IT)"),
                NodeSpec::new("europol", NodeKind::Europol, "EU", "Europol"),
                NodeSpec::new("frontex", NodeKind::Frontex, "EU", "Frontex"),
                NodeSpec::new("auditor", NodeKind::Auditor, "EU", "Fundamental Rights auditor"),
            ],
            limits: Limits::default(),
            delivery: DeliveryConfig { expiry_sweep_ms: 100, ..DeliveryConfig::default() },
            policy_dir: None,
            redaction: RedactionProfile::default(),
            audit: isx_gateway::config::AuditConfig { checkpoint_every_ms: 200, ..Default::default() },
            access: isx_gateway::config::AccessConfig::default(),
            lookup: isx_gateway::config::LookupConfig::default(),
            lifecycle: isx_gateway::config::LifecycleConfig::default(),
            storage: isx_gateway::config::StorageConfig::default(),
            revocation: isx_gateway::config::RevocationConfig::default(),
            revoked: vec![],
            witnesses: vec![],
            witness_quorum: "all".into(),
            witness: isx_gateway::config::WitnessConfig {
                timeout: std::time::Duration::from_secs(2),
                ..Default::default()
            },
        }
    }
}

impl TopologySpec {
    /// The same topology with an operations node `ops` ([`NodeSpec::admin`]).
    pub fn with_admin(mut self) -> Self {
        self.nodes.push(NodeSpec::admin("ops"));
        self
    }
}

fn read_trimmed(path: &Path) -> Result<String, TopologyError> {
    Ok(std::fs::read_to_string(path)?.trim().to_owned())
}

/// The case reference of the topology's own reads of the audit log.
pub const TESTKIT_CASE: &str = "isx testkit";

/// The case reference of a scenario's `expect_audit` reads, unless it names one.
pub const SCENARIO_CASE: &str = "scenario expectation";

/// Why the topology's helpers read the audit log when a request names no
/// reason of its own: self-monitoring, case [`TESTKIT_CASE`].
pub fn testkit_reason() -> ReadReason {
    isx_core::read_reason::reason(ReadPurpose::SelfMonitoring, TESTKIT_CASE)
}

/// Connections the gateway's socket queues while no gateway accepts.
const BACKLOG: u32 = 1024;

struct Running {
    shutdown: CancellationToken,
    task: JoinHandle<()>,
}

impl Running {
    async fn stop(self) {
        self.shutdown.cancel();
        let _ = self.task.await;
    }
}

/// A running topology. Dropping it without [`Topology::shutdown`] leaves the
/// tasks to end with the runtime.
///
/// The topology binds the gateway's listening socket once and keeps it for
/// its whole life; each gateway it starts serves a duplicate of it. So the
/// address never changes, no other process can take the port while the
/// gateway is stopped, and a connection made then waits in the socket's
/// backlog until the next gateway accepts it (instead of being refused).
pub struct Topology {
    dir: tempfile::TempDir,
    spec: TopologySpec,
    config: GatewayConfig,
    addr: SocketAddr,
    /// The gateway's listening socket, for the topology's whole life (`None` when attached).
    listener: Option<std::net::TcpListener>,
    gateway: Option<Running>,
    gateway_result: Option<mpsc::UnboundedReceiver<Result<(), String>>>,
    nodes: BTreeMap<NodeId, Running>,
    inboxes: BTreeMap<NodeId, Inbox>,
    /// Agencies that run in other processes, by their inspect service.
    remote: BTreeMap<NodeId, InspectClient>,
    events: Option<mpsc::UnboundedSender<(NodeId, NodeEvent)>>,
    skew_ms: Arc<AtomicI64>,
    policy: Option<Arc<isx_gateway::disclosure::PolicyDisclosure>>,
    /// The running gateway's revocation lists.
    revocation: Option<Arc<isx_gateway::revocation::Revocation>>,
    /// What `SIGHUP` does, for the running gateway.
    reload: Option<isx_gateway::hangup::ReloadHandle>,
    /// `host:port` the clients dial.
    target: String,
    /// The running gateway's fault switches.
    #[cfg(feature = "faults")]
    faults: Option<Arc<isx_gateway::faults::Faults>>,
    /// Attached to a gateway that runs elsewhere.
    attached: bool,
    /// The standalone witnesses, by id.
    witnesses: BTreeMap<String, crate::witness::TestWitness>,
    /// The sockets of the witnessing agencies, bound before the gateway starts.
    agency_witnesses: BTreeMap<NodeId, std::net::TcpListener>,
}

impl std::fmt::Debug for Topology {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Topology")
            .field("addr", &self.addr)
            .field("nodes", &self.nodes.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Topology {
    /// Creates a PKI, starts the gateway and every mock agency.
    pub async fn start(spec: TopologySpec) -> Result<Self, TopologyError> {
        Self::start_with_events(spec, None).await
    }

    /// As [`Topology::start`], reporting every node event to `events`.
    pub async fn start_with_events(
        spec: TopologySpec,
        events: Option<mpsc::UnboundedSender<(NodeId, NodeEvent)>>,
    ) -> Result<Self, TopologyError> {
        let dir = tempfile::Builder::new().prefix("isx-topology-").tempdir()?;
        let pki = dir.path().join("pki");
        let mut opts = isx_tls::pki::InitOptions::new(&pki);
        opts.nodes = spec.nodes.iter().map(|n| n.id.clone()).collect();
        isx_tls::pki::init(&opts)?;
        // A log origin of its own (isx/<random>/audit) and witness keys, as `isx pki init` makes them.
        let deployment = isx_witness::keys::init_deployment(&pki, &opts.nodes, None)
            .map_err(|e| TopologyError::Node { node: "audit keys".into(), message: e.to_string() })?;
        // `pki init` writes an empty CRL; the gateway reads it, as deploy/local's does.
        let crls = if spec.revoked.is_empty() {
            vec![pki.join("crl.pem")]
        } else {
            vec![isx_tls::pki::revoke(&pki, &spec.revoked)?]
        };
        let policy_dir = match &spec.policy_dir {
            Some(dir) => dir.clone(),
            None => {
                let dir = dir.path().join("policy");
                isx_policy::defaults::write_to(&dir)?;
                dir
            }
        };
        let config = GatewayConfig {
            policy_dir,
            redaction: spec.redaction.clone(),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            pki_dir: pki,
            data_dir: dir.path().join("gateway"),
            crls,
            revocation: spec.revocation.clone(),
            limits: spec.limits.clone(),
            delivery: spec.delivery.clone(),
            audit: spec.audit.clone(),
            access: spec.access.clone(),
            lookup: spec.lookup.clone(),
            witness: spec.witness.clone(),
            admin: isx_gateway::config::AdminConfig::default(),
            lifecycle: spec.lifecycle.clone(),
            storage: spec.storage.clone(),
            nodes: spec
                .nodes
                .iter()
                .map(|n| {
                    (
                        n.id.to_string(),
                        NodeConfig {
                            kind: n.kind,
                            country: n.country.clone(),
                            roles: n.roles.clone(),
                            name: n.name.clone(),
                            audit_scope: n.audit_scope.clone(),
                        },
                    )
                })
                .collect(),
        };
        let mut config = config;
        let mut witnesses = BTreeMap::new();
        let mut agency_witnesses = BTreeMap::new();
        let mut lines = vec![format!("log {}", read_trimmed(&isx_audit::keys::paths(&config.pki_dir).1)?)];
        for id in &spec.witnesses {
            let mut w = crate::witness::TestWitness::new(
                &config.pki_dir,
                id,
                &deployment.origin,
                dir.path().join("witnesses").join(id),
            )
            .map_err(|e| TopologyError::Node { node: id.clone(), message: e.to_string() })?;
            w.start().map_err(|e| TopologyError::Node { node: id.clone(), message: e.to_string() })?;
            lines.push(format!("witness {id} {} {}", w.vkey(), w.url()));
            witnesses.insert(id.clone(), w);
        }
        for node in spec.nodes.iter().filter(|n| n.witness && n.run_mock) {
            let socket = std::net::TcpListener::bind("127.0.0.1:0")?;
            let vkey = isx_witness::keys::load_vkey(&config.pki_dir, node.id.as_str())
                .map_err(|e| TopologyError::Node { node: node.id.to_string(), message: e.to_string() })?;
            lines.push(format!("witness {} {vkey} https://{}", node.id, socket.local_addr()?));
            agency_witnesses.insert(node.id.clone(), socket);
        }
        if lines.len() > 1 {
            let names: Vec<String> = lines[1..].iter().map(|l| l.split(' ').nth(1).unwrap_or("").to_owned()).collect();
            lines.push(format!("group witnesses {} {}", spec.witness_quorum, names.join(" ")));
            lines.push("quorum witnesses".into());
            let path = dir.path().join("witness.policy");
            std::fs::write(&path, lines.join("\n") + "\n")?;
            config.witness.policy = Some(path);
        }
        config.validate()?;
        let socket = if config.listen.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
        socket.bind(config.listen)?;
        // Deregistered from the runtime: the topology only holds it; the gateways accept on duplicates.
        let listener = socket.listen(BACKLOG)?.into_std()?;
        let addr = listener.local_addr()?;
        let target = format!("localhost:{}", addr.port());
        let mut topo = Self::assemble(dir, spec, config, addr, target, events, false);
        topo.listener = Some(listener);
        topo.witnesses = witnesses;
        topo.agency_witnesses = agency_witnesses;
        topo.launch_gateway()?;
        topo.start_mocks().await?;
        Ok(topo)
    }

    /// Runs the spec's mock agencies against a gateway that is already
    /// running at `gateway` (`host:port`), with certificates from `pki_dir`.
    /// The nodes must be registered there. Operations on the gateway itself
    /// (restart, clock, policy reload) return [`TopologyError::Attached`].
    pub async fn attach(spec: TopologySpec, gateway: &str, pki_dir: &Path) -> Result<Self, TopologyError> {
        Self::attach_with(spec, gateway, pki_dir, None).await
    }

    /// As [`Topology::attach`], for a deployment whose agencies may already
    /// run (e.g. `isx up`): `agencies` is the directory holding each
    /// agency's data directory as `<agencies>/<node id>`. A node whose agency
    /// answers on its inspect socket there (`<agencies>/<node>/inspect.sock`,
    /// naming that node) gets no mock agency of ours, which would compete
    /// for its deliveries; [`Topology::agency`] reads it through that socket.
    /// The other nodes get a mock agency in this process, as with `attach`.
    ///
    /// The gateway is probed first: if no gateway answers at `gateway`, this
    /// fails at once with [`TopologyError::Unreachable`].
    pub async fn attach_with(
        spec: TopologySpec,
        gateway: &str,
        pki_dir: &Path,
        agencies: Option<&Path>,
    ) -> Result<Self, TopologyError> {
        let dir = tempfile::Builder::new().prefix("isx-attached-").tempdir()?;
        let unreachable = |reason: String| TopologyError::Unreachable { addr: gateway.to_owned(), reason };
        let addr = tokio::net::lookup_host(gateway)
            .await
            .map_err(|e| unreachable(e.to_string()))?
            .next()
            .ok_or_else(|| unreachable("the name has no address".into()))?;
        let config = GatewayConfig {
            policy_dir: dir.path().join("policy"),
            redaction: spec.redaction.clone(),
            listen: addr,
            pki_dir: pki_dir.to_owned(),
            data_dir: dir.path().join("gateway"),
            crls: vec![],
            revocation: isx_gateway::config::RevocationConfig::default(),
            limits: spec.limits.clone(),
            delivery: spec.delivery.clone(),
            audit: spec.audit.clone(),
            access: spec.access.clone(),
            lookup: spec.lookup.clone(),
            witness: isx_gateway::config::WitnessConfig::default(),
            admin: isx_gateway::config::AdminConfig::default(),
            lifecycle: spec.lifecycle.clone(),
            storage: spec.storage.clone(),
            nodes: BTreeMap::new(),
        };
        let mut topo = Self::assemble(dir, spec, config, addr, gateway.to_owned(), None, true);
        topo.probe_gateway().await?;
        if let Some(agencies) = agencies {
            for node in topo.spec.nodes.iter().filter(|n| n.run_mock) {
                let socket = isx_node::inspect::socket_path(&agencies.join(node.id.as_str()));
                let Ok(client) = InspectClient::connect(&socket).await else { continue };
                let about = client
                    .describe()
                    .await
                    .map_err(|e| TopologyError::Node { node: node.id.to_string(), message: e.to_string() })?;
                if about.node != node.id.as_str() {
                    return Err(TopologyError::Node {
                        node: node.id.to_string(),
                        message: format!("the agency on {} is {}, not {}", socket.display(), about.node, node.id),
                    });
                }
                topo.remote.insert(node.id.clone(), client);
            }
        }
        topo.start_mocks().await?;
        Ok(topo)
    }

    /// Connects to the attached gateway as the first node and asks its
    /// health service: [`TopologyError::Unreachable`] unless it answers.
    async fn probe_gateway(&self) -> Result<(), TopologyError> {
        let Some(first) = self.spec.nodes.first() else { return Ok(()) };
        let limit = std::time::Duration::from_secs(10);
        let unreachable = |reason: String| TopologyError::Unreachable { addr: self.target.clone(), reason };
        let client = match tokio::time::timeout(limit, self.client(first.id.as_str())).await {
            Err(_) => return Err(unreachable(format!("no answer within {} s", limit.as_secs()))),
            Ok(Err(TopologyError::Client(isx_node::ClientError::Connect { source, .. }))) => {
                return Err(unreachable(isx_node::error_chain(&source)));
            }
            Ok(Err(e)) => return Err(e),
            Ok(Ok(c)) => c,
        };
        let mut health = tonic_health::pb::health_client::HealthClient::new(client.channel());
        let request = tonic_health::pb::HealthCheckRequest { service: String::new() };
        match tokio::time::timeout(limit, health.check(request)).await {
            Err(_) => Err(unreachable(format!("no answer within {} s", limit.as_secs()))),
            Ok(Ok(_)) => Ok(()),
            Ok(Err(status)) => Err(unreachable(format!(
                "it closed the connection of {} ({}): is {} registered there, and is {} the PKI it trusts?",
                first.id,
                status.message(),
                first.id,
                self.config.pki_dir.display()
            ))),
        }
    }

    fn assemble(
        dir: tempfile::TempDir,
        spec: TopologySpec,
        config: GatewayConfig,
        addr: SocketAddr,
        target: String,
        events: Option<mpsc::UnboundedSender<(NodeId, NodeEvent)>>,
        attached: bool,
    ) -> Self {
        Self {
            dir,
            spec,
            config,
            addr,
            listener: None,
            gateway: None,
            gateway_result: None,
            nodes: BTreeMap::new(),
            inboxes: BTreeMap::new(),
            remote: BTreeMap::new(),
            events,
            skew_ms: Arc::new(AtomicI64::new(0)),
            policy: None,
            revocation: None,
            reload: None,
            target,
            #[cfg(feature = "faults")]
            faults: None,
            attached,
            witnesses: BTreeMap::new(),
            agency_witnesses: BTreeMap::new(),
        }
    }

    /// Starts a mock agency for every node of the spec that runs one.
    async fn start_mocks(&mut self) -> Result<(), TopologyError> {
        let mocks: Vec<NodeId> = self
            .spec
            .nodes
            .iter()
            .filter(|n| n.run_mock && !self.remote.contains_key(&n.id))
            .map(|n| n.id.clone())
            .collect();
        for id in mocks {
            self.start_node(id.as_str()).await?;
        }
        Ok(())
    }

    /// True if the gateway runs elsewhere ([`Topology::attach`]).
    pub fn is_attached(&self) -> bool {
        self.attached
    }

    /// Opens the gateway and serves it on a duplicate of the topology's socket.
    fn launch_gateway(&mut self) -> Result<(), TopologyError> {
        let socket = self.listener.as_ref().ok_or(TopologyError::Attached("starting the gateway"))?.try_clone()?;
        // Shared with the original: it is one open socket, non-blocking for the runtime.
        socket.set_nonblocking(true)?;
        let listener = tokio::net::TcpListener::from_std(socket)?;
        let skew = self.skew_ms.clone();
        let system = isx_gateway::clock::system_clock();
        let clock: isx_gateway::clock::Clock =
            Arc::new(move || (system() as i64 + skew.load(Ordering::Relaxed)).max(0) as u64);
        let gateway = Gateway::open(self.config.clone())?.with_clock(clock);
        self.policy = Some(gateway.policy());
        self.revocation = Some(gateway.revocation());
        self.reload = Some(gateway.reload_handle());
        #[cfg(feature = "faults")]
        {
            self.faults = Some(gateway.faults());
        }
        let shutdown = CancellationToken::new();
        let (tx, rx) = mpsc::unbounded_channel();
        let token = shutdown.clone();
        let task = tokio::spawn(async move {
            let result = gateway.serve(listener, token).await.map_err(|e| e.to_string());
            let _ = tx.send(result);
        });
        self.gateway = Some(Running { shutdown, task });
        self.gateway_result = Some(rx);
        Ok(())
    }

    /// Moves the gateway's clock forward by `by` (expiry tests; no sleeping).
    /// Has no effect on an attached topology (see [`Topology::is_attached`]).
    pub fn advance_clock(&self, by: std::time::Duration) {
        self.skew_ms.fetch_add(by.as_millis() as i64, Ordering::Relaxed);
    }

    /// The gateway's idea of now, Unix milliseconds.
    pub fn now_ms(&self) -> u64 {
        (isx_gateway::clock::system_clock()() as i64 + self.skew_ms.load(Ordering::Relaxed)).max(0) as u64
    }

    /// Revokes `nodes`' certificates on the topology's CRL and has the
    /// running gateway read it again, as `SIGHUP` does (and records): their
    /// new handshakes are refused and their open connections closed.
    pub async fn revoke(&self, nodes: &[NodeId]) -> Result<isx_gateway::revocation::CrlReport, TopologyError> {
        if self.attached {
            return Err(TopologyError::Attached("revoking certificates"));
        }
        isx_tls::pki::revoke(&self.config.pki_dir, nodes)?;
        let reload = self.reload.as_ref().ok_or(TopologyError::Attached("revoking certificates"))?;
        let gateway = |message: String| TopologyError::Node { node: "gateway".into(), message };
        reload.reload_crls().await.map_err(|e| gateway(e.to_string()))?.map_err(gateway)
    }

    /// Writes the gateway's reload request file (`[admin] reload_request`)
    /// for `officer` and `reason`, as `isx admin request-reload` does.
    pub fn request_reload(&self, officer: &str, reason: &str) -> Result<PathBuf, TopologyError> {
        let path = self.config.admin.reload_request_path(&self.config.data_dir);
        let request = isx_gateway::reload_request::ReloadRequest { officer: officer.into(), reason: reason.into() };
        isx_gateway::reload_request::write(&path, &request)
            .map_err(|e| TopologyError::Node { node: "gateway".into(), message: e.to_string() })?;
        Ok(path)
    }

    /// What a `SIGHUP` does to the running gateway (without a signal): the
    /// policy reloaded if a request file names the officer and reason (see
    /// [`Topology::request_reload`]), the CRLs read again; both recorded.
    pub async fn hangup(&self) -> Result<isx_gateway::hangup::HangupReport, TopologyError> {
        let reload = self.reload.as_ref().ok_or(TopologyError::Attached("a reload"))?;
        reload.hangup().await.map_err(|e| TopologyError::Node { node: "gateway".into(), message: e.to_string() })
    }

    /// Reloads the gateway's policy directory as an operator does on
    /// `SIGHUP`: a request file for `officer@testkit` and a reason, then the
    /// hangup. Returns the version in force; a directory that does not
    /// validate is refused (the error names the file) and the policy in
    /// force stays. Either way it is recorded.
    pub async fn reload_policy(&self) -> Result<String, TopologyError> {
        self.request_reload("officer@testkit", "testkit: reload the policy directory")?;
        let gateway = |message: String| TopologyError::Node { node: "gateway".into(), message };
        match self.hangup().await?.policy {
            isx_gateway::hangup::PolicyReload::Reloaded { reloaded, .. } => Ok(reloaded.new_version),
            isx_gateway::hangup::PolicyReload::Refused { problem, .. } => Err(gateway(problem)),
            isx_gateway::hangup::PolicyReload::NotRecorded(e) => Err(gateway(e)),
        }
    }

    /// The `@reason` of a policy in force (or of a routing pseudo-policy).
    pub fn policy_reason(&self, id: &str) -> Option<String> {
        self.policy.as_ref()?.current().reason(id).map(str::to_owned)
    }

    /// The running gateway's storage fault switches (fault-injection tests;
    /// needs the `faults` feature).
    #[cfg(feature = "faults")]
    pub fn faults(&self) -> Arc<isx_gateway::faults::Faults> {
        self.faults.clone().expect("the gateway runs in this process")
    }

    /// The gateway's address.
    pub fn gateway_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The PKI directory (CA, gateway and node certificates).
    pub fn pki_dir(&self) -> PathBuf {
        self.config.pki_dir.clone()
    }

    /// The temporary root directory.
    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// The gateway configuration in force.
    pub fn gateway_config(&self) -> &GatewayConfig {
        &self.config
    }

    fn node_id(&self, node: &str) -> Result<NodeId, TopologyError> {
        self.spec
            .nodes
            .iter()
            .find(|n| n.id.as_str() == node)
            .map(|n| n.id.clone())
            .ok_or_else(|| TopologyError::UnknownNode(node.into()))
    }

    /// Options for a client acting as `node`.
    pub fn client_options(&self, node: &str) -> Result<ClientOptions, TopologyError> {
        let id = self.node_id(node)?;
        Ok(ClientOptions {
            officer: format!("officer@{id}"),
            node: id,
            pki_dir: self.config.pki_dir.clone(),
            gateway: self.target.clone(),
        })
    }

    /// A connected client acting as `node`.
    pub async fn client(&self, node: &str) -> Result<Client, TopologyError> {
        Ok(Client::connect(&self.client_options(node)?).await?)
    }

    /// True if `node`'s agency runs in another process ([`Topology::attach_with`]).
    pub fn runs_elsewhere(&self, node: &str) -> bool {
        NodeId::new(node).is_ok_and(|id| self.remote.contains_key(&id))
    }

    /// The nodes whose agencies run in other processes.
    pub fn remote_agencies(&self) -> Vec<NodeId> {
        self.remote.keys().cloned().collect()
    }

    /// What `node`'s agency holds, wherever it runs: its inbox here (also
    /// while it is stopped), or its inspect service in another process.
    pub fn agency(&self, node: &str) -> Agency {
        match NodeId::new(node).ok().and_then(|id| self.remote.get(&id)) {
            Some(client) => Agency::Remote(client.clone()),
            None => Agency::Local(self.inbox(node)),
        }
    }

    /// The inbox of `node`'s mock agency in this process (also while it is
    /// stopped). Panics for a node without one, such as an agency that runs
    /// elsewhere: see [`Topology::agency`].
    pub fn inbox(&self, node: &str) -> Inbox {
        self.inboxes
            .get(&NodeId::new(node).expect("valid node id"))
            .cloned()
            .unwrap_or_else(|| panic!("{node} has no mock agency"))
    }

    /// Starts (or restarts) `node`'s mock agency.
    pub async fn start_node(&mut self, node: &str) -> Result<(), TopologyError> {
        let id = self.node_id(node)?;
        if self.remote.contains_key(&id) {
            return Err(TopologyError::Elsewhere(node.into()));
        }
        if self.nodes.contains_key(&id) {
            return Ok(());
        }
        let data = self.dir.path().join("nodes").join(id.as_str());
        // Reuse the open inbox across restarts: sled allows one handle per directory.
        let mock = match self.inboxes.get(&id) {
            Some(inbox) => MockNode::with_inbox(self.client_options(node)?, inbox.clone()),
            None => MockNode::open(self.client_options(node)?, &data)
                .map_err(|e| TopologyError::Node { node: node.into(), message: e.to_string() })?,
        };
        let rules = self.spec.nodes.iter().find(|n| n.id == id).map(|n| n.access_rules.clone()).unwrap_or_default();
        let mut mock = mock.with_rules(rules);
        if let Some(socket) = self.agency_witnesses.get(&id) {
            let witness = isx_node::witness::AgencyWitness::load(&self.config.pki_dir, id.as_str(), &data)
                .map_err(|e| TopologyError::Node { node: node.into(), message: e.to_string() })?;
            mock = mock.with_witness(witness, socket.try_clone()?);
        }
        let mock = match &self.events {
            Some(events) => {
                let (tx, mut rx) = mpsc::unbounded_channel();
                let (events, id) = (events.clone(), id.clone());
                tokio::spawn(async move {
                    while let Some(e) = rx.recv().await {
                        let _ = events.send((id.clone(), e));
                    }
                });
                mock.with_events(tx)
            }
            None => mock,
        };
        self.inboxes.insert(id.clone(), mock.inbox());
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(mock.run(shutdown.clone()));
        self.nodes.insert(id, Running { shutdown, task });
        Ok(())
    }

    /// Stops `node`'s mock agency; its inbox stays readable.
    pub async fn stop_node(&mut self, node: &str) -> Result<(), TopologyError> {
        let id = self.node_id(node)?;
        if self.remote.contains_key(&id) {
            return Err(TopologyError::Elsewhere(node.into()));
        }
        if let Some(running) = self.nodes.remove(&id) {
            running.stop().await;
        }
        Ok(())
    }

    /// Stops the gateway and waits until its store is closed. The listening
    /// socket stays open: new connections wait in its backlog, unanswered,
    /// until [`Topology::start_gateway`].
    pub async fn stop_gateway(&mut self) -> Result<(), TopologyError> {
        if let Some(running) = self.gateway.take() {
            running.stop().await;
        }
        if let Some(mut rx) = self.gateway_result.take()
            && let Some(Err(e)) = rx.recv().await
        {
            return Err(TopologyError::Node { node: "gateway".into(), message: e });
        }
        Ok(())
    }

    /// Starts the gateway again on the same socket (so the same address) and
    /// data; connections made while it was stopped are accepted now.
    pub async fn start_gateway(&mut self) -> Result<(), TopologyError> {
        if self.attached {
            return Err(TopologyError::Attached("starting the gateway"));
        }
        if self.gateway.is_some() {
            return Ok(());
        }
        self.launch_gateway()
    }

    /// Waits up to `limit` for the gateway to stop by itself (a refused
    /// start): its error, or `None` if it is still running.
    pub async fn gateway_exit(&mut self, limit: std::time::Duration) -> Option<String> {
        let rx = self.gateway_result.as_mut()?;
        match tokio::time::timeout(limit, rx.recv()).await {
            Ok(Some(Err(e))) => {
                self.gateway = None;
                self.gateway_result = None;
                Some(e)
            }
            Ok(_) => {
                self.gateway = None;
                self.gateway_result = None;
                Some("the gateway stopped without an error".into())
            }
            Err(_) => None,
        }
    }

    /// A client as the first node with the `audit` role that reads every
    /// record (an auditor without `audit_scope`, or with `"all"`), or else
    /// the first node with the audit role.
    async fn auditor(&self) -> Result<Client, TopologyError> {
        let audits = |n: &&NodeSpec| n.roles.clone().unwrap_or_else(|| n.kind.default_roles()).contains(&Role::Audit);
        let reads_all = |n: &&NodeSpec| match &n.audit_scope {
            None => n.kind == NodeKind::Auditor,
            Some(scope) => *scope == AuditScopeSetting::All,
        };
        let nodes = &self.spec.nodes;
        let auditor = nodes
            .iter()
            .filter(audits)
            .find(reads_all)
            .or_else(|| nodes.iter().find(audits))
            .ok_or_else(|| TopologyError::UnknownNode("(a node with the audit role)".into()))?;
        self.client(auditor.id.as_str()).await
    }

    /// The published audit checkpoint, read as the topology's auditor (the
    /// first that reads every record), for [`testkit_reason`].
    pub async fn checkpoint(&self) -> Result<isx_core::wire::Checkpoint, TopologyError> {
        let client = self.auditor().await?;
        isx_node::audit::checkpoint(&client, &testkit_reason())
            .await
            .map_err(|e| TopologyError::Node { node: "audit".into(), message: e.to_string() })
    }

    /// The standalone witness `id` (see [`TopologySpec::witnesses`]).
    pub fn witness(&mut self, id: &str) -> Result<&mut crate::witness::TestWitness, TopologyError> {
        self.witnesses.get_mut(id).ok_or_else(|| TopologyError::UnknownNode(format!("witness {id}")))
    }

    /// The witness policy the gateway uses, if any.
    pub fn witness_policy(&self) -> Option<PathBuf> {
        self.config.witness.policy.clone()
    }

    /// Stops the gateway and starts it again on the same socket and data.
    pub async fn restart_gateway(&mut self) -> Result<(), TopologyError> {
        if self.attached {
            return Err(TopologyError::Attached("restarting the gateway"));
        }
        self.stop_gateway().await?;
        self.start_gateway().await
    }

    /// Stops the gateway, changes its config with `change` (its nodes, its
    /// redaction profile, ...), and starts it again on the same socket and
    /// data: what an operator does to change the config. The spec (and so
    /// the clients and agencies) stays as it was.
    pub async fn restart_gateway_with(&mut self, change: impl FnOnce(&mut GatewayConfig)) -> Result<(), TopologyError> {
        if self.attached {
            return Err(TopologyError::Attached("restarting the gateway"));
        }
        self.stop_gateway().await?;
        change(&mut self.config);
        self.config.validate()?;
        self.start_gateway().await
    }

    /// Stops every node and the gateway, and removes the temporary data.
    pub async fn shutdown(mut self) {
        let nodes = std::mem::take(&mut self.nodes);
        for (_, running) in nodes {
            running.stop().await;
        }
        let _ = self.stop_gateway().await;
        for w in self.witnesses.values_mut() {
            w.stop().await;
        }
    }

    /// Every audit record matching `filter`, oldest first (newest first if
    /// it says so), read page by page as the topology's auditor (the first
    /// node with the `audit` role that reads every record), each checked against its inclusion proof, with its sealed
    /// justification opened (`audit-text.key` of the topology's PKI). Each
    /// page is one audited read, for the filter's `reason` or else
    /// [`testkit_reason`].
    pub async fn audit_records(
        &self,
        filter: isx_core::wire::SearchRequest,
    ) -> Result<Vec<isx_core::wire::AuditRecord>, TopologyError> {
        let client = self.auditor().await?;
        self.records_as(&client, filter).await
    }

    /// As [`Topology::audit_records`], read as node `node` (which must hold
    /// the audit role): a scoped auditor finds only the records in its scope.
    pub async fn audit_records_as(
        &self,
        node: &str,
        filter: isx_core::wire::SearchRequest,
    ) -> Result<Vec<isx_core::wire::AuditRecord>, TopologyError> {
        let client = self.client(node).await?;
        self.records_as(&client, filter).await
    }

    async fn records_as(
        &self,
        client: &Client,
        filter: isx_core::wire::SearchRequest,
    ) -> Result<Vec<isx_core::wire::AuditRecord>, TopologyError> {
        let bad = |e: &dyn std::fmt::Display| TopologyError::Node { node: "audit".into(), message: e.to_string() };
        let reason = filter.reason.clone().unwrap_or_else(testkit_reason);
        let mut req = isx_core::wire::SearchRequest { limit: 1000, ..filter };
        let mut records = Vec::new();
        let mut bound = u64::MAX;
        // Bounded: every page but the last holds at least one record, so
        // there are at most as many pages as the log held records.
        loop {
            let page = isx_node::audit::search(client, &reason, req.clone()).await.map_err(|e| bad(&e))?;
            let checkpoint = page.checkpoint.as_ref().ok_or_else(|| bad(&"search answer without a checkpoint"))?;
            let checkpoint = isx_audit::verify::checkpoint(checkpoint, None).map_err(|e| bad(&e))?;
            for entry in &page.entries {
                isx_audit::verify::inclusion(entry, &checkpoint).map_err(|e| bad(&e))?;
            }
            bound = bound.min(checkpoint.size + 1);
            let last = page.entries.last().map(|e| e.seq);
            records.extend(page.entries.into_iter().filter_map(|e| e.record));
            match last {
                Some(seq) if page.more && bound > 0 => {
                    bound -= 1;
                    if req.newest_first {
                        req.before_seq = seq;
                    } else {
                        req.after_seq = seq;
                    }
                }
                _ => break,
            }
        }
        // Justifications are sealed in the log; the topology holds the key.
        let text = isx_audit::keys::load_text_key(&self.config.pki_dir).map_err(|e| bad(&e))?;
        Ok(records
            .into_iter()
            .map(|mut r| {
                if let Some(clear) = isx_audit::text::open(&text, &r) {
                    r.justification = clear;
                }
                r
            })
            .collect())
    }

    /// Shared handle to the spec this topology was started from.
    pub fn spec(&self) -> Arc<TopologySpec> {
        Arc::new(self.spec.clone())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::{Probe, probe};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn attaching_to_an_address_where_no_gateway_answers_fails_at_once_naming_it() {
        let pki = tempfile::tempdir().unwrap();
        let mut opts = isx_tls::pki::InitOptions::new(pki.path());
        opts.nodes = TopologySpec::default_agencies().nodes.iter().map(|n| n.id.clone()).collect();
        isx_tls::pki::init(&opts).unwrap();
        // A port nothing listens on: bound, then closed.
        let addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let target = format!("localhost:{}", addr.port());
        let err = Topology::attach(TopologySpec::default_agencies(), &target, pki.path()).await.unwrap_err();
        assert!(matches!(&err, TopologyError::Unreachable { addr, .. } if *addr == target), "{err}");
        let text = err.to_string();
        assert!(text.starts_with(&format!("no gateway answers at {target}: ")), "{text}");
        assert!(text.contains("Connection refused") && text.contains("isx up"), "{text}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stopped_gateway_keeps_its_socket_and_serves_what_waited_once_it_starts_again() {
        let mut topo = Topology::start(TopologySpec::default_agencies()).await.unwrap();
        let addr = topo.gateway_addr();
        let opts = topo.client_options("de-police").unwrap();
        topo.stop_gateway().await.unwrap();

        // The socket stays open: a connection is not refused, it waits in the backlog.
        let tcp = tokio::net::TcpStream::connect(addr).await.expect("the stopped gateway's socket is still open");
        drop(tcp);
        let waiting = tokio::spawn({
            let opts = opts.clone();
            async move { probe(&opts).await }
        });
        // Nothing answers it while the gateway is stopped. (This bounded wait
        // can only miss a stopped gateway that still accepts, on a very slow
        // machine; it cannot fail a correct topology.)
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(!waiting.is_finished(), "a stopped gateway answered: {:?}", waiting.await);

        topo.start_gateway().await.unwrap();
        assert_eq!(waiting.await.unwrap().unwrap(), Probe::Served, "the waiting connection is served");
        assert_eq!(topo.gateway_addr(), addr);

        // A restart works the same way, on the same socket.
        topo.restart_gateway().await.unwrap();
        assert_eq!(probe(&opts).await.unwrap(), Probe::Served);
        topo.shutdown().await;
    }
}
