//! `isx bench`: throughput measured next to a baseline from the same run.
//!
//! Every figure comes with the limit it is measured against, on the same
//! machine, in the same process, at the same time:
//! - `baseline_rps`: a no-op unary RPC (the health check) over the same mTLS
//!   channels, the transport limit;
//! - `publish_rps`: durable publishes with the default policy, fan-out to four
//!   subscribed recipients;
//! - `lookup_rps`: hit/no-hit lookups by document number (one match among
//!   every alert published so far, a Cedar `lookup` decision, a durable
//!   consultation record each);
//! - `policy_decisions_per_s`: the Cedar decision path alone (one alert, five
//!   recipients, with redaction), and its share of a publish's cost;
//! - `amend_*`: amend fan-out, the time from `Amend`'s reply until every
//!   holder of a copy has applied, flushed and confirmed the new version,
//!   for four direct recipients and for a forward chain of two hops.
//!
//! Each group of figures is a [`Phase`]; `--only` runs some of them (the
//! baseline always runs with `publish` or `lookup`, which are reported
//! against it). With a [`Target::Remote`] gateway the throughput and latency
//! phases run against it over the network; the memory phase needs the
//! gateway in this process and is skipped.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use isx_core::NodeInfo;
use isx_core::redaction::RedactionProfile;
use isx_node::Client;
use isx_policy::{Disclosure, PolicyEngine};
use serde::Serialize;

use crate::samples;
use crate::topology::{Topology, TopologyError, TopologySpec};

/// One group of figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// `rss_mb_*`: resident memory with alerts queued for an offline node.
    /// Runs first, so that no earlier phase's allocations are counted.
    Memory,
    /// `baseline_rps`: the no-op RPC.
    Baseline,
    /// `publish_rps`, `publish_ratio`.
    Publish,
    /// `lookup_rps`, `lookup_ratio`.
    Lookup,
    /// `e2e_p50_ms`, `e2e_p99_ms`, `e2e_p999_ms` at the offered rate.
    Latency,
    /// The Cedar decision path alone.
    Policy,
    /// Audit append, verification, proofs and search.
    Audit,
    /// `publish_rps` and `e2e_p99_ms` without and with two witnesses.
    Witness,
    /// `amend_*`: amend fan-out until every holder confirmed.
    Amend,
}

impl Phase {
    /// Every phase, in the order they run.
    pub const ALL: [Phase; 9] = [
        Phase::Memory,
        Phase::Baseline,
        Phase::Publish,
        Phase::Lookup,
        Phase::Latency,
        Phase::Policy,
        Phase::Audit,
        Phase::Witness,
        Phase::Amend,
    ];

    /// The name used on the command line and in the JSON `phases` list.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Baseline => "baseline",
            Phase::Publish => "publish",
            Phase::Lookup => "lookup",
            Phase::Latency => "latency",
            Phase::Memory => "memory",
            Phase::Policy => "policy",
            Phase::Audit => "audit",
            Phase::Witness => "witness",
            Phase::Amend => "amend",
        }
    }
}

impl std::str::FromStr for Phase {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Phase::ALL.into_iter().find(|p| p.name() == s).ok_or_else(|| {
            let names: Vec<&str> = Phase::ALL.iter().map(|p| p.name()).collect();
            format!("unknown phase {s:?}; expected one of {}", names.join(", "))
        })
    }
}

/// Where the gateway under test runs.
#[derive(Debug, Clone, Default)]
pub enum Target {
    /// A gateway and five agencies started in this process (the default).
    #[default]
    InProcess,
    /// A gateway already running at `addr` (`host:port`), reached with the
    /// node certificates in `pki_dir`. It must know the default agencies
    /// (`deploy/local`, as `isx up` starts them); its own agencies receive
    /// the publishes.
    Remote {
        /// `host:port`.
        addr: String,
        /// The deployment's PKI directory.
        pki_dir: std::path::PathBuf,
    },
}

/// How long and how hard to run.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// How long each throughput phase runs.
    pub phase: Duration,
    /// Concurrent request tasks.
    pub concurrency: usize,
    /// Channels (HTTP/2 connections) the tasks share.
    pub channels: usize,
    /// Audit records appended for the append benchmark.
    pub audit_records: u64,
    /// Log sizes for the proof and search figures.
    pub log_sizes: Vec<u64>,
    /// Offered publish rate for the end-to-end latency phase, per second.
    pub rate: u64,
    /// Alerts queued for an offline node before reading the resident memory.
    pub queued: u64,
    /// The phases to run.
    pub phases: Vec<Phase>,
    /// Where the gateway runs.
    pub target: Target,
}

impl BenchOptions {
    /// About 30 seconds in all on a 2-core machine.
    pub fn quick() -> Self {
        Self {
            phase: Duration::from_secs(3),
            concurrency: 32,
            channels: 4,
            audit_records: 5_000,
            log_sizes: vec![1_000, 10_000, 50_000],
            rate: 1000,
            queued: 5_000,
            phases: Phase::ALL.to_vec(),
            target: Target::InProcess,
        }
    }

    /// Longer phases for steadier figures.
    pub fn full() -> Self {
        Self {
            phase: Duration::from_secs(10),
            concurrency: 64,
            channels: 4,
            audit_records: 50_000,
            log_sizes: vec![10_000, 100_000, 1_000_000],
            rate: 1000,
            queued: 100_000,
            phases: Phase::ALL.to_vec(),
            target: Target::InProcess,
        }
    }

    /// True if `phase` is to run.
    pub fn runs(&self, phase: Phase) -> bool {
        self.phases.contains(&phase)
    }
}

/// The figures of one run. Each group is present only if its phase ran; in
/// JSON every figure is a top-level key.
#[derive(Debug, Clone, Default, Serialize)]
pub struct BenchReport {
    /// The phases that ran.
    pub phases: Vec<Phase>,
    /// Transport baseline, publish and lookup throughput.
    #[serde(flatten)]
    pub throughput: Option<Throughput>,
    /// Publish-to-delivery latency at a fixed offered rate.
    #[serde(flatten)]
    pub latency: Option<Latency>,
    /// Resident memory with alerts queued.
    #[serde(flatten)]
    pub memory: Option<Memory>,
    /// The policy decision path.
    #[serde(flatten)]
    pub policy: Option<PolicyReport>,
    /// The audit-log figures.
    #[serde(flatten)]
    pub audit: Option<AuditFigures>,
    /// The cost of witnessing.
    #[serde(flatten)]
    pub witness: Option<WitnessCost>,
    /// Amend fan-out until every holder confirmed.
    #[serde(flatten)]
    pub amend: Option<AmendFanout>,
}

/// The cost of witnessed checkpoints: the same publish and latency phases
/// run back to back in one run, without witnesses and with two (in this
/// process, quorum both), each on a fresh topology.
#[derive(Debug, Clone, Default, Serialize)]
pub struct WitnessCost {
    /// Durable publishes per second, no witness policy.
    pub publish_rps_unwitnessed: f64,
    /// Durable publishes per second, two witnesses cosigning every checkpoint.
    pub publish_rps_witnessed: f64,
    /// `publish_rps_witnessed / publish_rps_unwitnessed`.
    pub witness_publish_ratio: f64,
    /// Publish-to-delivery p99 at the offered rate, no witness policy, ms.
    pub e2e_p99_ms_unwitnessed: f64,
    /// The same with two witnesses, ms.
    pub e2e_p99_ms_witnessed: f64,
}

/// Throughput over the same mTLS channels.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Throughput {
    /// No-op unary RPCs per second over the same mTLS channels.
    pub baseline_rps: f64,
    /// Durable publishes per second (default policy, four recipients, flushed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub publish_rps: Option<f64>,
    /// `publish_rps / baseline_rps`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub publish_ratio: Option<f64>,
    /// Audited hit/no-hit lookups per second (one match among the published alerts).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lookup_rps: Option<f64>,
    /// `lookup_rps / baseline_rps`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lookup_ratio: Option<f64>,
    /// Requests that ended in a non-OK status.
    pub errors: u64,
}

/// Publish-to-delivery latency.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Latency {
    /// Median, ms.
    pub e2e_p50_ms: f64,
    /// 99th percentile, ms.
    pub e2e_p99_ms: f64,
    /// 99.9th percentile, ms.
    pub e2e_p999_ms: f64,
    /// The offered rate, per second.
    pub e2e_offered_rps: f64,
    /// Publishes accepted and delivered.
    pub e2e_delivered: u64,
    /// Offered publishes not sent because 1024 were already in flight (the gateway fell behind).
    pub e2e_shed: u64,
    /// Publishes refused with a non-OK status.
    pub e2e_errors: u64,
}

/// Resident memory of the bench process (gateway, agencies, clients).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Memory {
    /// Before queueing, MB.
    pub rss_mb_before_queue: f64,
    /// After `rss_queued` alerts were queued for an offline node, MB.
    pub rss_mb_queued: f64,
    /// How many alerts were queued for that figure.
    pub rss_queued: u64,
    /// `rss_mb_queued` when `rss_queued` is 100,000 (the full run), else absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rss_mb_100k_queued: Option<f64>,
}

/// The Cedar decision path alone, and its share of a publish.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PolicyReport {
    /// Disclosure decisions per second (one recipient each, with redaction), decision cache warm.
    pub policy_decisions_per_s: f64,
    /// Microseconds of policy work per published alert (five candidates), cache warm.
    pub policy_us_per_alert: f64,
    /// Decisions per second with the decision cache off.
    pub policy_decisions_per_s_uncached: f64,
    /// Microseconds of policy work per alert with the cache off.
    pub policy_us_per_alert_uncached: f64,
    /// CPU microseconds per publish at the measured publish throughput (needs the publish phase).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub publish_us_per_alert: Option<f64>,
    /// `policy_us_per_alert / publish_us_per_alert`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy_share_of_publish: Option<f64>,
    /// `policy_us_per_alert_uncached / publish_us_per_alert`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy_share_of_publish_uncached: Option<f64>,
}

/// Runs `task` from `concurrency` workers for `phase`; returns (ok count, error count, elapsed).
async fn drive<F, Fut>(phase: Duration, concurrency: usize, task: F) -> (u64, u64, Duration)
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let task = Arc::new(task);
    let start = Instant::now();
    let deadline = start + phase;
    let mut workers = Vec::new();
    for worker in 0..concurrency {
        let (ok, failed, task) = (ok.clone(), failed.clone(), task.clone());
        workers.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                if task(worker).await {
                    ok.fetch_add(1, Ordering::Relaxed);
                } else {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for w in workers {
        let _ = w.await;
    }
    (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed), start.elapsed())
}

/// The decision path alone: one alert to five candidates, redaction included.
///
/// The alerts cycle through all 17 crime areas and 5 TLP levels. Returns
/// (decisions per second, µs per alert) with the decision cache and without it
/// (every decision evaluated by Cedar).
pub fn policy_decisions(phase: Duration) -> Result<PolicyFigures, isx_policy::PolicyError> {
    let dir = tempfile::tempdir().map_err(|source| isx_policy::PolicyError::Io { path: "tmp".into(), source })?;
    isx_policy::defaults::write_to(dir.path())
        .map_err(|source| isx_policy::PolicyError::Io { path: dir.path().into(), source })?;
    let engine = Arc::new(PolicyEngine::load(dir.path())?);
    let nodes: Vec<NodeInfo> = TopologySpec::default_agencies()
        .nodes
        .iter()
        .map(|n| NodeInfo {
            id: n.id.clone(),
            kind: n.kind,
            country: n.country.clone(),
            roles: n.kind.default_roles(),
            name: n.name.clone(),
        })
        .collect();
    let alert = samples::trafficking_victim("fr-police", &[]);
    let measure = |disclosure: &Disclosure| {
        let start = Instant::now();
        let (mut alerts, mut decisions) = (0u64, 0u64);
        let mut alert = alert.clone();
        #[allow(clippy::explicit_counter_loop)]
        while start.elapsed() < phase {
            // Cycle through every crime area and TLP: 85 label combinations.
            alert.alert_id = samples::new_alert_id();
            alert.category = (alerts % 17) as i32 + 1;
            alert.labels.as_mut().expect("labels").tlp = ((alerts / 17) % 5) as i32 + 1;
            let candidates = isx_policy::candidates(&alert, &nodes);
            let refs: Vec<&NodeInfo> = candidates.iter().map(|(n, _)| *n).collect();
            let prepared = disclosure.prepare(&alert, nodes.iter().find(|n| n.id.as_str() == "fr-police"), &refs);
            for (node, addressed) in candidates {
                std::hint::black_box(disclosure.decide(
                    &alert,
                    &prepared,
                    node,
                    isx_policy::Relation::routed(addressed),
                    "bench",
                ));
                decisions += 1;
            }
            alerts += 1;
        }
        let secs = start.elapsed().as_secs_f64();
        (decisions as f64 / secs, secs * 1e6 / alerts as f64)
    };
    let cached = measure(&Disclosure::new(engine.clone(), RedactionProfile::default()));
    let uncached = measure(&Disclosure::new(engine, RedactionProfile::default()).without_cache());
    Ok(PolicyFigures { cached, uncached })
}

/// Decision-path figures: (decisions per second, µs per alert of five candidates).
#[derive(Debug, Clone, Copy)]
pub struct PolicyFigures {
    /// With the decision cache warm (alerts with recurring facts).
    pub cached: (f64, f64),
    /// Every decision evaluated by Cedar.
    pub uncached: (f64, f64),
}

/// The bench's topology: the default agencies, rate limits and lookup
/// quotas lifted (the bench measures capacity, not the quotas that stop a
/// node from mining the alerts), in process or attached to `options.target`.
async fn topology(options: &BenchOptions, offline: Option<&str>) -> Result<Topology, TopologyError> {
    topology_with(options, offline, false).await
}

/// [`topology`], with two in-process witnesses (quorum both) if `witnessed`.
async fn topology_with(
    options: &BenchOptions,
    offline: Option<&str>,
    witnessed: bool,
) -> Result<Topology, TopologyError> {
    let mut spec = TopologySpec::default_agencies();
    if witnessed {
        spec.witnesses = vec!["w1".into(), "w2".into()];
        spec.witness_quorum = "all".into();
    }
    spec.limits.rate_per_node = 1e9;
    spec.limits.burst_per_node = u32::MAX;
    spec.limits.max_queue_per_node = u64::MAX;
    spec.lookup.per_node = u32::MAX;
    spec.lookup.per_officer = u32::MAX;
    match &options.target {
        Target::InProcess => {
            for n in spec.nodes.iter_mut().filter(|n| Some(n.id.as_str()) == offline) {
                n.run_mock = false;
            }
            Topology::start(spec).await
        }
        Target::Remote { addr, pki_dir } => {
            // The deployment's own agencies receive; the bench only sends.
            for n in spec.nodes.iter_mut() {
                n.run_mock = false;
            }
            Topology::attach(spec, addr, pki_dir).await
        }
    }
}

/// `options.channels` clients (HTTP/2 connections) acting as `node`.
async fn channels(topo: &Topology, node: &str, options: &BenchOptions) -> Result<Vec<Client>, TopologyError> {
    let mut clients = Vec::with_capacity(options.channels.max(1));
    for _ in 0..options.channels.max(1) {
        clients.push(topo.client(node).await?);
    }
    Ok(clients)
}

fn bench_error(what: &str, e: &dyn std::fmt::Display) -> TopologyError {
    TopologyError::Node { node: format!("bench {what}"), message: e.to_string() }
}

/// Runs the phases of `options`, reporting each step through `progress`.
pub async fn run(
    options: &BenchOptions,
    progress: &(dyn Fn(&str) + Send + Sync),
) -> Result<BenchReport, TopologyError> {
    let mut report = BenchReport::default();
    let mut phases = options.phases.clone();
    if phases.iter().any(|p| matches!(p, Phase::Publish | Phase::Lookup)) {
        phases.push(Phase::Baseline);
    }
    if matches!(options.target, Target::Remote { .. }) && phases.contains(&Phase::Memory) {
        progress("memory: skipped (the gateway runs in another process)");
        phases.retain(|p| *p != Phase::Memory);
    }
    phases.sort();
    phases.dedup();
    let options = BenchOptions { phases: phases.clone(), ..options.clone() };
    report.phases = phases;

    if options.runs(Phase::Memory) {
        report.memory = Some(memory(&options, progress).await?);
    }
    if options.runs(Phase::Baseline) {
        report.throughput = Some(throughput(&options, progress).await?);
    }
    if options.runs(Phase::Latency) {
        report.latency = Some(latency(&options, progress).await?);
    }
    if options.runs(Phase::Policy) {
        progress("policy: the decision path alone");
        let figures =
            policy_decisions(options.phase.min(Duration::from_secs(3))).map_err(|e| bench_error("policy", &e))?;
        let mut p = PolicyReport {
            policy_decisions_per_s: figures.cached.0,
            policy_us_per_alert: figures.cached.1,
            policy_decisions_per_s_uncached: figures.uncached.0,
            policy_us_per_alert_uncached: figures.uncached.1,
            ..Default::default()
        };
        if let Some(publish_rps) = report.throughput.as_ref().and_then(|t| t.publish_rps) {
            // At the measured throughput with every core busy, each publish
            // costs about (cores / publish_rps) of CPU time.
            let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) as f64;
            let per_alert = cores * 1e6 / publish_rps.max(1e-9);
            p.publish_us_per_alert = Some(per_alert);
            p.policy_share_of_publish = Some(p.policy_us_per_alert / per_alert);
            p.policy_share_of_publish_uncached = Some(p.policy_us_per_alert_uncached / per_alert);
        }
        report.policy = Some(p);
    }
    if options.runs(Phase::Audit) {
        report.audit = Some(
            audit_figures(options.audit_records, 64, &options.log_sizes, progress)
                .map_err(|message| bench_error("audit", &message))?,
        );
    }
    if options.runs(Phase::Witness) {
        if matches!(options.target, Target::Remote { .. }) {
            progress("witness: skipped (the witnesses run in this process)");
        } else {
            report.witness = Some(witness_cost(&options, progress).await?);
        }
    }
    if options.runs(Phase::Amend) {
        if matches!(options.target, Target::Remote { .. }) {
            progress("amend: skipped (it times the confirmations of agencies in this process)");
        } else {
            report.amend = Some(amend_fanout(&options, progress).await?);
        }
    }
    Ok(report)
}

/// The baseline, publish and lookup phases.
async fn throughput(
    options: &BenchOptions,
    progress: &(dyn Fn(&str) + Send + Sync),
) -> Result<Throughput, TopologyError> {
    progress("starting a gateway and five agencies over mTLS");
    let topo = topology(options, None).await?;
    let mut t = Throughput::default();
    let clients = Arc::new(channels(&topo, "de-police", options).await?);

    progress("baseline: no-op RPC (health check) over the same channels");
    let cs = clients.clone();
    let (ok, err, took) = drive(options.phase, options.concurrency, move |w| {
        let channel = cs[w % cs.len()].channel();
        async move {
            let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
            health.check(tonic_health::pb::HealthCheckRequest { service: String::new() }).await.is_ok()
        }
    })
    .await;
    t.baseline_rps = ok as f64 / took.as_secs_f64();
    t.errors += err;

    if options.runs(Phase::Publish) {
        progress("publish: durable, default policy, four subscribed recipients");
        let (rps, err) = publish_phase(&clients, options).await;
        t.publish_rps = Some(rps);
        t.publish_ratio = Some(rps / t.baseline_rps.max(1e-9));
        t.errors += err;
    }

    if options.runs(Phase::Lookup) {
        progress("lookup: by document number, one match, audited");
        let target = samples::foreign_fighter("de-police", &["fr-police"]);
        clients[0].publish(target).await.map_err(|e| bench_error("lookup", &e))?;
        let askers = Arc::new(channels(&topo, "it-police", options).await?);
        let (ok, err, took) = drive(options.phase, options.concurrency, move |w| {
            let client = askers[w % askers.len()].clone();
            async move {
                use isx_core::wire::lookup_identifier::Kind;
                let id = isx_core::wire::LookupIdentifier {
                    kind: Some(Kind::Document(isx_core::wire::DocumentNumber {
                        issuing_country: "DE".into(),
                        number: "C4J9X1R27".into(),
                    })),
                };
                // At least one hit: against a long-running deployment earlier runs' alerts match too.
                client.lookup(vec![id], "bench", "bench").await.is_ok_and(|r| !r.hits.is_empty())
            }
        })
        .await;
        let rps = ok as f64 / took.as_secs_f64();
        t.lookup_rps = Some(rps);
        t.lookup_ratio = Some(rps / t.baseline_rps.max(1e-9));
        t.errors += err;
    }
    topo.shutdown().await;
    Ok(t)
}

/// Durable publishes to four subscribed recipients for `options.phase`: (per second, errors).
async fn publish_phase(clients: &Arc<Vec<Client>>, options: &BenchOptions) -> (f64, u64) {
    let cs = clients.clone();
    let n = Arc::new(AtomicU64::new(0));
    let (ok, err, took) = drive(options.phase, options.concurrency, move |w| {
        let client = cs[w % cs.len()].clone();
        let mut alert = samples::migrant_smuggling("de-police", &["fr-police", "it-police", "europol", "frontex"]);
        distinct_subjects(&mut alert, n.fetch_add(1, Ordering::Relaxed));
        async move { client.publish(alert).await.is_ok() }
    })
    .await;
    (ok as f64 / took.as_secs_f64(), err)
}

/// The witness phase: publish and latency without witnesses, then with two.
async fn witness_cost(
    options: &BenchOptions,
    progress: &(dyn Fn(&str) + Send + Sync),
) -> Result<WitnessCost, TopologyError> {
    let mut cost = WitnessCost::default();
    for witnessed in [false, true] {
        let label = if witnessed { "two witnesses" } else { "no witness" };
        progress(&format!("witness: publish with {label}"));
        let topo = topology_with(options, None, witnessed).await?;
        let clients = Arc::new(channels(&topo, "de-police", options).await?);
        let (rps, _) = publish_phase(&clients, options).await;
        if witnessed {
            // Every checkpoint of the phase offered and cosigned before counting.
            let auditor = topo.client("auditor").await?;
            let reason = crate::topology::testkit_reason();
            let cp = isx_node::audit::checkpoint(&auditor, &reason).await.map_err(|e| bench_error("witness", &e))?;
            if !cp.witnessed || cp.cosigners.len() != 2 {
                return Err(bench_error(
                    "witness",
                    &"the witnessed topology published no checkpoint both witnesses cosigned",
                ));
            }
        }
        topo.shutdown().await;
        progress(&format!("witness: latency with {label} at {}/s offered", options.rate));
        let lat = latency_with(options, progress, witnessed).await?;
        if witnessed {
            cost.publish_rps_witnessed = rps;
            cost.e2e_p99_ms_witnessed = lat.e2e_p99_ms;
        } else {
            cost.publish_rps_unwitnessed = rps;
            cost.e2e_p99_ms_unwitnessed = lat.e2e_p99_ms;
        }
    }
    cost.witness_publish_ratio = cost.publish_rps_witnessed / cost.publish_rps_unwitnessed.max(1e-9);
    Ok(cost)
}

/// Makes every identifier of `alert` (names, documents, plates, serials)
/// unique to `i`, as in real traffic, where each alert names other people:
/// the audit and lookup indexes then grow as they would in use.
fn distinct_subjects(alert: &mut isx_core::wire::Alert, i: u64) {
    // Letters for names (a name holds no digits), digits for numbers.
    let letters: String =
        format!("{i:x}").chars().map(|c| (b'a' + c.to_digit(16).unwrap_or(0) as u8) as char).collect();
    for s in &mut alert.subjects {
        if !s.family_name.is_empty() {
            s.family_name = format!("{}-{letters}", s.family_name);
        }
        for d in &mut s.documents {
            d.number = format!("{}{i}", d.number);
        }
    }
    for o in &mut alert.objects {
        if !o.identifier.is_empty() {
            o.identifier = format!("{} {i}", o.identifier);
        }
    }
}

/// Resident memory of this process, MB (Linux `/proc/self/status`; 0 elsewhere).
fn rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

/// Publish-to-delivery latency at a fixed offered rate (HDR histogram), with
/// the bench subscribed as the recipient (`fr-police`, whose mock agency is off).
async fn latency(options: &BenchOptions, progress: &(dyn Fn(&str) + Send + Sync)) -> Result<Latency, TopologyError> {
    progress(&format!("latency: publish to delivery at {}/s offered", options.rate));
    latency_with(options, progress, false).await
}

/// [`latency`], with two witnesses if `witnessed`.
async fn latency_with(
    options: &BenchOptions,
    _progress: &(dyn Fn(&str) + Send + Sync),
    witnessed: bool,
) -> Result<Latency, TopologyError> {
    use std::collections::HashMap;
    use std::sync::Mutex;
    let topo = topology_with(options, Some("fr-police"), witnessed).await?;
    let bad = |e: &dyn std::fmt::Display| bench_error("latency", e);
    let sent: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let hist =
        Arc::new(Mutex::new(hdrhistogram::Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).map_err(|e| bad(&e))?));
    let fr = topo.client("fr-police").await?;
    let mut stream = fr.subscribe(0).await.map_err(|e| bad(&e))?;
    let arrived = Arc::new(AtomicU64::new(0));
    let receiver = {
        let (sent, hist, arrived, fr) = (sent.clone(), hist.clone(), arrived.clone(), fr.clone());
        tokio::spawn(async move {
            while let Ok(Some(msg)) = stream.message().await {
                if let Some(isx_core::wire::subscribe_response::Event::Delivery(d)) = msg.event {
                    let id = d.alert.map(|a| a.alert_id).unwrap_or_default();
                    if let Some(t) = sent.lock().unwrap_or_else(|e| e.into_inner()).remove(&id) {
                        let us = t.elapsed().as_micros().max(1) as u64;
                        let _ = hist.lock().unwrap_or_else(|e| e.into_inner()).record(us);
                        arrived.fetch_add(1, Ordering::Relaxed);
                    }
                }
                let _ = fr.ack(msg.cursor).await;
            }
        })
    };
    let publishers = channels(&topo, "de-police", options).await?;
    let in_flight = Arc::new(AtomicU64::new(0));
    let (mut offered, mut shed) = (0u64, 0u64);
    let accepted = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / options.rate.max(1) as f64));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let start = Instant::now();
    while start.elapsed() < options.phase {
        tick.tick().await;
        offered += 1;
        if in_flight.load(Ordering::Relaxed) >= 1024 {
            shed += 1;
            continue;
        }
        let client = publishers[(offered as usize) % publishers.len()].clone();
        let (sent, in_flight, accepted, refused) = (sent.clone(), in_flight.clone(), accepted.clone(), refused.clone());
        in_flight.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            let mut alert = samples::foreign_fighter("de-police", &["fr-police"]);
            distinct_subjects(&mut alert, offered);
            sent.lock().unwrap_or_else(|e| e.into_inner()).insert(alert.alert_id.clone(), Instant::now());
            if client.publish(alert.clone()).await.is_ok() {
                accepted.fetch_add(1, Ordering::Relaxed);
            } else {
                refused.fetch_add(1, Ordering::Relaxed);
                sent.lock().unwrap_or_else(|e| e.into_inner()).remove(&alert.alert_id);
            }
            in_flight.fetch_sub(1, Ordering::Relaxed);
        });
    }
    let offered_secs = start.elapsed().as_secs_f64();
    // Bounded wait for what was accepted to arrive.
    let deadline = Instant::now() + Duration::from_secs(60);
    while (in_flight.load(Ordering::Relaxed) > 0 || arrived.load(Ordering::Relaxed) < accepted.load(Ordering::Relaxed))
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    receiver.abort();
    topo.shutdown().await;
    let h = hist.lock().unwrap_or_else(|e| e.into_inner());
    Ok(Latency {
        e2e_p50_ms: h.value_at_quantile(0.5) as f64 / 1000.0,
        e2e_p99_ms: h.value_at_quantile(0.99) as f64 / 1000.0,
        e2e_p999_ms: h.value_at_quantile(0.999) as f64 / 1000.0,
        e2e_offered_rps: offered as f64 / offered_secs,
        e2e_delivered: arrived.load(Ordering::Relaxed),
        e2e_shed: shed,
        e2e_errors: refused.load(Ordering::Relaxed),
    })
}

/// Resident memory with `options.queued` alerts queued for an offline node
/// (`fr-police`, no subscriber).
async fn memory(options: &BenchOptions, progress: &(dyn Fn(&str) + Send + Sync)) -> Result<Memory, TopologyError> {
    progress(&format!("memory: {} alerts queued for an offline node", options.queued));
    let topo = topology(options, Some("fr-police")).await?;
    let publishers = channels(&topo, "de-police", options).await?;
    let before = rss_mb();
    let target = options.queued;
    let next = Arc::new(AtomicU64::new(0));
    let stored = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for w in 0..options.concurrency.max(1) {
        let client = publishers[w % publishers.len()].clone();
        let (next, stored) = (next.clone(), stored.clone());
        workers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= target {
                    break;
                }
                let mut alert = samples::migrant_smuggling("de-police", &["fr-police"]);
                distinct_subjects(&mut alert, i);
                if client.publish(alert).await.is_ok() {
                    stored.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    let started = Instant::now();
    let mut shown = 0;
    while !workers.iter().all(|w| w.is_finished()) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let done = stored.load(Ordering::Relaxed);
        if started.elapsed().as_secs() >= shown + 5 {
            shown = started.elapsed().as_secs();
            progress(&format!("memory: {done} of {target} alerts queued for an offline node"));
        }
    }
    for w in workers {
        let _ = w.await;
    }
    let (queued, rss) = (stored.load(Ordering::Relaxed), rss_mb());
    topo.shutdown().await;
    Ok(Memory {
        rss_mb_before_queue: before,
        rss_mb_queued: rss,
        rss_queued: queued,
        rss_mb_100k_queued: (queued >= 100_000).then_some(rss),
    })
}

/// Rounds in which raw sled inserts and audit appends alternate.
const ROUNDS: u64 = 8;

/// Audit-log figures, each next to its baseline from the same run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AuditFigures {
    /// Records per second appended with group commit (one flush + fsync per
    /// batch): body and Merkle hashes, what makes a record durable and
    /// verifiable. The search index is written afterwards (`audit_index_records_per_s`).
    pub audit_append_rps: f64,
    /// Raw sled inserts of the same bytes with the same flush policy.
    pub sled_raw_rps: f64,
    /// `audit_append_rps / sled_raw_rps`.
    pub audit_append_ratio: f64,
    /// Records per second indexed for search (off the append path).
    pub audit_index_records_per_s: f64,
    /// Records per second verified offline (hash, recompute root).
    pub verify_records_per_s: f64,
    /// Proof and search times at each log size.
    pub log_sizes: Vec<LogSize>,
    /// `search_ms` at the largest size over `search_ms` at the smallest.
    pub search_growth: f64,
}

/// Proof and search times at one log size.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LogSize {
    /// Records in the log.
    pub records: u64,
    /// One inclusion proof, ms (mean of 200).
    pub proof_ms: f64,
    /// One search returning 20 records, ms (mean of 200).
    pub search_ms: f64,
}

fn sample_record(i: u64) -> isx_core::wire::AuditRecord {
    use isx_core::wire::{AuditRecord, Operation, Outcome, RecipientLevel};
    AuditRecord {
        operation: Operation::Disclosure as i32,
        node: format!("node-{}", i % 5),
        officer: format!("officer-{}", i % 97),
        cert_fingerprint: "ab".repeat(32),
        purpose: "prevention, investigation and detection of serious crime".into(),
        legal_basis: "Directive (EU) 2016/680 Art. 8".into(),
        alert_id: format!("01JDQ3B2C4D6E8F0G2H4J{:05}", i / 4),
        content_digest: "cd".repeat(32),
        recipients: vec![RecipientLevel {
            node: "fr-police".into(),
            level: 1,
            policy_ids: vec!["national-police-full".into()],
            outcome: isx_core::wire::RecipientOutcome::Queued as i32,
        }],
        policy_ids: vec!["national-police-full".into()],
        policy_version: "4de6eff97777ac94".into(),
        outcome: Outcome::Ok as i32,
        subject_pseudonyms: vec![format!("{:064x}", i % 10_007)],
        ..Default::default()
    }
}

fn fsync_files(dir: &std::path::Path) -> Vec<std::fs::File> {
    ["db", "conf"].iter().filter_map(|n| std::fs::File::open(dir.join(n)).ok()).collect()
}

/// Measures the audit log: append with group commit next to raw sled, offline
/// verification, and proof and search times at each of `sizes` records.
pub fn audit_figures(
    records: u64,
    batch: u64,
    sizes: &[u64],
    progress: &(dyn Fn(&str) + Send + Sync),
) -> Result<AuditFigures, String> {
    use prost::Message;
    let err = |e: &dyn std::fmt::Display| e.to_string();
    let tmp = tempfile::tempdir().map_err(|e| err(&e))?;
    isx_audit::keys::create(tmp.path(), "bench/audit").map_err(|e| err(&e))?;
    let keys = || isx_audit::keys::load(tmp.path()).map_err(|e| err(&e));
    let mut f = AuditFigures::default();

    progress("audit append with group commit, next to raw sled inserts");
    let raw_dir = tmp.path().join("raw");
    let raw = isx_store::open(&raw_dir, isx_store::GATEWAY_CACHE_BYTES).map_err(|e| err(&e))?;
    let raw_tree = raw.open_tree("raw").map_err(|e| err(&e))?;
    let raw_sync = fsync_files(&raw_dir);
    let bodies: Vec<Vec<u8>> = (0..records).map(|i| sample_record(i).encode_to_vec()).collect();
    let log_dir = tmp.path().join("log");
    let db = isx_store::open(&log_dir, isx_store::GATEWAY_CACHE_BYTES).map_err(|e| err(&e))?;
    let (log, _) = isx_audit::AuditLog::open(&db, keys()?, &|_, _| {}).map_err(|e| err(&e))?;
    let sync = fsync_files(&log_dir);
    // The two alternate in rounds, so that a slower or faster spell of the
    // machine falls on both alike.
    let (mut raw_time, mut log_time) = (Duration::ZERO, Duration::ZERO);
    let round = records.div_ceil(ROUNDS).max(1);
    let mut i = 0;
    while i < records {
        let end = records.min(i + round);
        let start = Instant::now();
        for j in i..end {
            raw_tree.insert(j.to_be_bytes(), bodies[j as usize].as_slice()).map_err(|e| err(&e))?;
            if (j + 1).is_multiple_of(batch) || j + 1 == end {
                raw.flush().map_err(|e| err(&e))?;
                raw_sync.iter().for_each(|f| drop(f.sync_all()));
            }
        }
        raw_time += start.elapsed();
        let start = Instant::now();
        let mut j = i;
        while j < end {
            let n = batch.min(end - j);
            log.append((j..j + n).map(sample_record).collect(), 1_700_000_000_000 + j).map_err(|e| err(&e))?;
            db.flush().map_err(|e| err(&e))?;
            sync.iter().for_each(|f| drop(f.sync_all()));
            j += n;
        }
        log_time += start.elapsed();
        i = end;
    }
    f.sled_raw_rps = records as f64 / raw_time.as_secs_f64().max(1e-9);
    f.audit_append_rps = records as f64 / log_time.as_secs_f64().max(1e-9);
    f.audit_append_ratio = f.audit_append_rps / f.sled_raw_rps.max(1e-9);

    progress("audit search index, written after the append (as the gateway's background indexer does)");
    let start = Instant::now();
    let indexed = log.index_pending().map_err(|e| err(&e))?;
    db.flush().map_err(|e| err(&e))?;
    f.audit_index_records_per_s = indexed as f64 / start.elapsed().as_secs_f64();

    progress("offline verification rate");
    let size = log.size();
    let note = log.sign_checkpoint(size).map_err(|e| err(&e))?;
    let cp = isx_audit::checkpoint::open(&note, &log.keys().verifier_key).map_err(|e| err(&e))?;
    let entries = log.entries(0, size).map_err(|e| err(&e))?;
    let start = Instant::now();
    let mut v = isx_audit::verify::LogVerifier::default();
    for e in &entries {
        v.push(e).map_err(|e| err(&e))?;
    }
    v.finish(&cp).map_err(|e| err(&e))?;
    f.verify_records_per_s = size as f64 / start.elapsed().as_secs_f64();
    drop(entries);

    progress("inclusion proofs and search at each log size");
    let mut grown = size;
    for &target in sizes {
        while grown < target {
            let n = 10_000.min(target - grown);
            log.append((grown..grown + n).map(sample_record).collect(), 1_700_000_000_000 + grown)
                .map_err(|e| err(&e))?;
            grown += n;
        }
        db.flush().map_err(|e| err(&e))?;
        let pending = log.unindexed().map_err(|e| err(&e))?;
        if pending > 0 {
            progress(&format!("  {target} records: indexing {pending} records for search first"));
            log.index_pending().map_err(|e| err(&e))?;
        }
        let probes = 200u64;
        // One untimed pass first, so that both sizes are measured in steady state.
        for p in 0..probes {
            let filter = isx_audit::Filter { officer: Some(format!("officer-{}", p % 97)), ..Default::default() };
            std::hint::black_box(log.search(&filter, 20, None).map_err(|e| err(&e))?);
            std::hint::black_box(log.inclusion_proof((p * 7919) % target, target).map_err(|e| err(&e))?);
        }
        let start = Instant::now();
        for p in 0..probes {
            std::hint::black_box(log.inclusion_proof((p * 7919) % target, target).map_err(|e| err(&e))?);
        }
        let proof_ms = start.elapsed().as_secs_f64() * 1e3 / probes as f64;
        let start = Instant::now();
        for p in 0..probes {
            let filter = isx_audit::Filter { officer: Some(format!("officer-{}", p % 97)), ..Default::default() };
            std::hint::black_box(log.search(&filter, 20, None).map_err(|e| err(&e))?);
        }
        let search_ms = start.elapsed().as_secs_f64() * 1e3 / probes as f64;
        progress(&format!("  {target} records: proof {proof_ms:.3} ms, search (20 results) {search_ms:.3} ms"));
        f.log_sizes.push(LogSize { records: target, proof_ms, search_ms });
    }
    if let (Some(first), Some(last)) = (f.log_sizes.first(), f.log_sizes.last()) {
        f.search_growth = last.search_ms / first.search_ms.max(1e-9);
    }
    Ok(f)
}

/// Amend fan-out: the time from `Amend`'s reply until every holder of a
/// copy has applied the new version, flushed it and had its confirmation
/// accepted by the gateway (the agency's `NodeEvent::Changed`, reported
/// after its `Ack` returned). Both shapes run for half of `phase` each
/// (1.5 s in the quick run, which CI runs), with
/// [`AMEND_WORKERS`] workers, each amending an alert of its own version
/// after version; `amend_*_per_s` is the number of amendments every holder
/// confirmed, per second.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AmendFanout {
    /// Four direct recipients: median, ms.
    pub amend_direct_p50_ms: f64,
    /// Four direct recipients: 99th percentile, ms.
    pub amend_direct_p99_ms: f64,
    /// Four direct recipients: amendments confirmed by all four, per second.
    pub amend_direct_per_s: f64,
    /// Four direct recipients: amendments timed.
    pub amend_direct_samples: u64,
    /// A forward chain (origin → fr-police → it-police → europol): median, ms.
    pub amend_chain_p50_ms: f64,
    /// The forward chain: 99th percentile, ms.
    pub amend_chain_p99_ms: f64,
    /// The forward chain: amendments confirmed by every holder, per second.
    pub amend_chain_per_s: f64,
    /// The forward chain: amendments timed.
    pub amend_chain_samples: u64,
    /// The copies an amendment of the chain's original changes (the holders
    /// the gateway's status lists as updated by it).
    pub amend_chain_copies: u64,
    /// A withdrawal of the chain's original, which follows the forwards:
    /// median from Withdraw's reply until all three holders confirmed the
    /// deletion, ms.
    pub withdraw_chain_p50_ms: f64,
    /// The withdrawal along the chain: 99th percentile, ms.
    pub withdraw_chain_p99_ms: f64,
    /// Withdrawals timed.
    pub withdraw_chain_samples: u64,
    /// Amendments refused, or not confirmed by every holder within 10 s.
    pub amend_errors: u64,
}

/// Workers of each amend shape: enough to keep the gateway busy, few
/// enough that the figure is the fan-out, not a queue.
pub const AMEND_WORKERS: usize = 4;

/// How long one amendment may take to be confirmed by every holder.
const AMEND_LIMIT: Duration = Duration::from_secs(10);

/// The versions each agency confirmed, by (node, alert id), and a counter
/// that moves on every confirmation.
#[derive(Clone)]
struct Confirmed {
    versions: Arc<std::sync::Mutex<std::collections::HashMap<(String, String), u32>>>,
    moved: tokio::sync::watch::Receiver<u64>,
}

impl Confirmed {
    /// Routes the topology's node events into the table.
    fn follow(mut events: tokio::sync::mpsc::UnboundedReceiver<(isx_core::NodeId, isx_node::NodeEvent)>) -> Self {
        let versions: Arc<std::sync::Mutex<std::collections::HashMap<(String, String), u32>>> = Arc::default();
        let (tx, moved) = tokio::sync::watch::channel(0u64);
        let table = versions.clone();
        tokio::spawn(async move {
            while let Some((node, event)) = events.recv().await {
                if let isx_node::NodeEvent::Changed { alert_id, version, .. } = event {
                    let mut t = table.lock().unwrap_or_else(|e| e.into_inner());
                    let v = t.entry((node.to_string(), alert_id)).or_default();
                    *v = (*v).max(version);
                    drop(t);
                    tx.send_modify(|n| *n += 1);
                }
            }
        });
        Self { versions, moved }
    }

    fn reached(&self, copies: &[(String, String)], version: u32) -> bool {
        let t = self.versions.lock().unwrap_or_else(|e| e.into_inner());
        copies.iter().all(|c| t.get(c).is_some_and(|v| *v >= version))
    }

    /// Waits until every copy confirmed `version`, at most `limit`.
    async fn wait(&self, copies: &[(String, String)], version: u32, limit: Duration) -> bool {
        let mut moved = self.moved.clone();
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            moved.borrow_and_update();
            if self.reached(copies, version) {
                return true;
            }
            if tokio::time::timeout_at(deadline, moved.changed()).await.is_err() {
                return false;
            }
        }
    }
}

/// One worker's alert: the origin's client, the alert as last sent, and
/// the copies (node, alert id) an amendment of it changes.
struct Amended {
    client: Client,
    alert: isx_core::wire::Alert,
    copies: Vec<(String, String)>,
    /// The alert's current version.
    version: u32,
}

/// Amends each worker's alert version after version for `phase`: (latency
/// histogram in µs, amendments confirmed, errors, elapsed).
async fn amend_loop(
    workers: Vec<Amended>,
    confirmed: &Confirmed,
    phase: Duration,
) -> Result<(hdrhistogram::Histogram<u64>, u64, u64, Duration), TopologyError> {
    let bad = |e: &dyn std::fmt::Display| bench_error("amend", e);
    let start = Instant::now();
    let deadline = start + phase;
    let mut tasks = Vec::new();
    for mut w in workers {
        let confirmed = confirmed.clone();
        tasks.push(tokio::spawn(async move {
            let mut hist =
                hdrhistogram::Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).map_err(|e| e.to_string())?;
            let (mut ok, mut errors, mut version) = (0u64, 0u64, w.version);
            while Instant::now() < deadline {
                let mut next = w.alert.clone();
                next.narrative = format!("{} (correction {})", w.alert.narrative, version);
                let reply = w.client.amend(next.clone(), version, "bench: amend fan-out").await;
                let sent = Instant::now();
                let new = match reply {
                    Ok(r) => r.receipt.map(|r| r.version).unwrap_or(version + 1),
                    Err(_) => {
                        errors += 1;
                        continue;
                    }
                };
                if confirmed.wait(&w.copies, new, AMEND_LIMIT).await {
                    let _ = hist.record(sent.elapsed().as_micros().max(1) as u64);
                    ok += 1;
                } else {
                    errors += 1;
                }
                version = new;
                w.alert = next;
            }
            Ok::<_, String>((hist, ok, errors))
        }));
    }
    let mut hist = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).map_err(|e| bad(&e))?;
    let (mut ok, mut errors) = (0, 0);
    for t in tasks {
        let (h, o, e) = t.await.map_err(|e| bad(&e))?.map_err(|e| bad(&e))?;
        hist.add(h).map_err(|e| bad(&e))?;
        ok += o;
        errors += e;
    }
    Ok((hist, ok, errors, start.elapsed()))
}

/// Waits until `node`'s agency holds `alert_id`, at most [`AMEND_LIMIT`].
async fn delivered(topo: &Topology, node: &str, alert_id: &str) -> Result<(), TopologyError> {
    match topo.inbox(node).wait_for(alert_id, AMEND_LIMIT).await {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(bench_error("amend", &format!("{alert_id} did not reach {node}"))),
        Err(e) => Err(bench_error("amend", &e)),
    }
}

/// The amend phase: four direct recipients, then a forward chain of two
/// hops, each on a fresh topology with every agency running.
async fn amend_fanout(
    options: &BenchOptions,
    progress: &(dyn Fn(&str) + Send + Sync),
) -> Result<AmendFanout, TopologyError> {
    let bad = |e: &dyn std::fmt::Display| bench_error("amend", e);
    let mut f = AmendFanout::default();
    let to_ms = |h: &hdrhistogram::Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;

    progress("amend: fan-out to four direct recipients, until all four confirmed");
    let (topo, confirmed) = amend_topology().await?;
    let recipients = ["fr-police", "it-police", "europol", "frontex"];
    let mut workers = Vec::new();
    for _ in 0..AMEND_WORKERS {
        let client = topo.client("de-police").await?;
        let alert = samples::foreign_fighter("de-police", &recipients);
        client.publish(alert.clone()).await.map_err(|e| bad(&e))?;
        for node in recipients {
            delivered(&topo, node, &alert.alert_id).await?;
        }
        let copies = recipients.iter().map(|n| (n.to_string(), alert.alert_id.clone())).collect();
        workers.push(Amended { client, alert, copies, version: 1 });
    }
    let (hist, ok, errors, took) = amend_loop(workers, &confirmed, options.phase / 2).await?;
    topo.shutdown().await;
    f.amend_direct_p50_ms = to_ms(&hist, 0.5);
    f.amend_direct_p99_ms = to_ms(&hist, 0.99);
    f.amend_direct_per_s = ok as f64 / took.as_secs_f64();
    f.amend_direct_samples = ok;
    f.amend_errors += errors;

    progress(
        "amend: fan-out of an amended original that was forwarded twice (de-police -> fr-police -> it-police -> europol)",
    );
    let (topo, confirmed) = amend_topology().await?;
    let mut workers = Vec::new();
    for _ in 0..AMEND_WORKERS {
        let (client, alert, _) = forward_chain(&topo).await?;
        // A first amendment, untimed: the copies it changes, as the gateway lists them.
        let mut next = alert.clone();
        next.narrative = format!("{} (correction 1)", alert.narrative);
        let version = client.amend(next.clone(), 1, "bench: amend fan-out").await.map_err(|e| bad(&e))?;
        let version = version.receipt.map(|r| r.version).unwrap_or(2);
        let status = client.alert_status(&alert.alert_id).await.map_err(|e| bad(&e))?;
        let copies: Vec<(String, String)> = status
            .copies
            .iter()
            .filter(|c| c.last_change() == isx_core::wire::ChangeKind::Update)
            .map(|c| (c.node.clone(), c.copy_of.clone()))
            .collect();
        if !confirmed.wait(&copies, version, AMEND_LIMIT).await {
            return Err(bad(&"the first amendment of a forward chain was not confirmed"));
        }
        workers.push(Amended { client, alert: next, copies, version });
    }
    f.amend_chain_copies = workers.first().map(|w| w.copies.len() as u64).unwrap_or(0);
    let (hist, ok, errors, took) = amend_loop(workers, &confirmed, options.phase / 2).await?;
    f.amend_chain_p50_ms = to_ms(&hist, 0.5);
    f.amend_chain_p99_ms = to_ms(&hist, 0.99);
    f.amend_chain_per_s = ok as f64 / took.as_secs_f64();
    f.amend_chain_samples = ok;
    f.amend_errors += errors;

    progress("amend: a withdrawal along the same forward chain, until all three holders confirmed");
    let (hist, ok, errors) = withdraw_loop(&topo, &confirmed, options.phase / 2).await?;
    topo.shutdown().await;
    f.withdraw_chain_p50_ms = to_ms(&hist, 0.5);
    f.withdraw_chain_p99_ms = to_ms(&hist, 0.99);
    f.withdraw_chain_samples = ok;
    f.amend_errors += errors;
    Ok(f)
}

/// An alert of de-police to fr-police, relayed to it-police and on to
/// europol, each copy delivered: the origin's client, the original, and
/// the copies (node, alert id) along the chain.
async fn forward_chain(
    topo: &Topology,
) -> Result<(Client, isx_core::wire::Alert, Vec<(String, String)>), TopologyError> {
    let bad = |e: &dyn std::fmt::Display| bench_error("amend", e);
    let client = topo.client("de-police").await?;
    let alert = samples::foreign_fighter("de-police", &["fr-police"]);
    client.publish(alert.clone()).await.map_err(|e| bad(&e))?;
    delivered(topo, "fr-police", &alert.alert_id).await?;
    let mut copies = vec![("fr-police".to_owned(), alert.alert_id.clone())];
    let mut parent = alert.clone();
    for (from, to) in [("fr-police", "it-police"), ("it-police", "europol")] {
        let relay = isx_core::wire::Alert {
            alert_id: samples::new_alert_id(),
            origin: from.into(),
            forwarded_from: parent.alert_id.clone(),
            hops: 0,
            version: 0,
            addressees: vec![to.into()],
            ..parent.clone()
        };
        topo.client(from).await?.publish(relay.clone()).await.map_err(|e| bad(&e))?;
        delivered(topo, to, &relay.alert_id).await?;
        copies.push((to.to_owned(), relay.alert_id.clone()));
        parent = relay;
    }
    Ok((client, alert, copies))
}

/// Withdraws fresh forward chains for `phase`, [`AMEND_WORKERS`] at a
/// time: (latency histogram in µs from Withdraw's reply until all three
/// holders confirmed the deletion, withdrawals timed, errors).
async fn withdraw_loop(
    topo: &Topology,
    confirmed: &Confirmed,
    phase: Duration,
) -> Result<(hdrhistogram::Histogram<u64>, u64, u64), TopologyError> {
    let bad = |e: &dyn std::fmt::Display| bench_error("amend", e);
    let mut hist = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).map_err(|e| bad(&e))?;
    let (mut ok, mut errors) = (0u64, 0u64);
    let start = Instant::now();
    while start.elapsed() < phase {
        let mut chains = Vec::new();
        for _ in 0..AMEND_WORKERS {
            chains.push(forward_chain(topo).await?);
        }
        let rounds = chains.into_iter().map(|(client, alert, copies)| {
            let confirmed = confirmed.clone();
            async move {
                let reply = client.withdraw(&alert.alert_id, "bench: withdrawal along a forward chain").await;
                let sent = Instant::now();
                // A deletion confirms the last version held, 1 here.
                (reply.is_ok() && confirmed.wait(&copies, 1, AMEND_LIMIT).await).then(|| sent.elapsed())
            }
        });
        for took in futures_join(rounds).await {
            match took {
                Some(t) => {
                    let _ = hist.record(t.as_micros().max(1) as u64);
                    ok += 1;
                }
                None => errors += 1,
            }
        }
    }
    Ok((hist, ok, errors))
}

/// Runs the futures concurrently on this task; their outputs in order.
async fn futures_join<F: std::future::Future>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output> {
    let mut set: Vec<std::pin::Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = (0..set.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in set.iter_mut().enumerate() {
            if out[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => out[i] = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending { std::task::Poll::Pending } else { std::task::Poll::Ready(()) }
    })
    .await;
    set.clear();
    out.into_iter().flatten().collect()
}

/// The bench's topology in process with every agency running, and the
/// confirmations its agencies report.
async fn amend_topology() -> Result<(Topology, Confirmed), TopologyError> {
    let mut spec = TopologySpec::default_agencies();
    spec.limits.rate_per_node = 1e9;
    spec.limits.burst_per_node = u32::MAX;
    spec.limits.max_queue_per_node = u64::MAX;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let topo = Topology::start_with_events(spec, Some(tx)).await?;
    Ok((topo, Confirmed::follow(rx)))
}
