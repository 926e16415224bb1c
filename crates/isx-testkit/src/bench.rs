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
//!   recipients, with redaction), and its share of a publish's cost.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use isx_core::NodeInfo;
use isx_core::redaction::RedactionProfile;
use isx_policy::{Disclosure, PolicyEngine};
use serde::Serialize;

use crate::samples;
use crate::topology::{Topology, TopologyError, TopologySpec};

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
        }
    }
}

/// The figures of one run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct BenchReport {
    /// No-op unary RPCs per second over the same mTLS channels.
    pub baseline_rps: f64,
    /// Durable publishes per second (default policy, four recipients, flushed).
    pub publish_rps: f64,
    /// `publish_rps / baseline_rps`.
    pub publish_ratio: f64,
    /// Audited hit/no-hit lookups per second (one match among the published alerts).
    pub lookup_rps: f64,
    /// `lookup_rps / baseline_rps`.
    pub lookup_ratio: f64,
    /// Disclosure decisions per second (one recipient each, with redaction), decision cache warm.
    pub policy_decisions_per_s: f64,
    /// Microseconds of policy work per published alert (five candidates), cache warm.
    pub policy_us_per_alert: f64,
    /// Microseconds per publish at the measured publish throughput.
    pub publish_us_per_alert: f64,
    /// `policy_us_per_alert / publish_us_per_alert`.
    pub policy_share_of_publish: f64,
    /// Decisions per second with the decision cache off.
    pub policy_decisions_per_s_uncached: f64,
    /// Microseconds of policy work per alert with the cache off.
    pub policy_us_per_alert_uncached: f64,
    /// `policy_us_per_alert_uncached / publish_us_per_alert`.
    pub policy_share_of_publish_uncached: f64,
    /// Publish-to-delivery latency at `e2e_offered_rps`, median, ms.
    pub e2e_p50_ms: f64,
    /// 99th percentile, ms.
    pub e2e_p99_ms: f64,
    /// 99.9th percentile, ms.
    pub e2e_p999_ms: f64,
    /// The offered rate of the latency phase, per second.
    pub e2e_offered_rps: f64,
    /// Publishes accepted and delivered in the latency phase.
    pub e2e_delivered: u64,
    /// Offered publishes not sent because 1024 were already in flight (the gateway fell behind).
    pub e2e_shed: u64,
    /// Resident memory of the bench process (gateway, agencies, clients) before queueing, MB.
    pub rss_mb_before_queue: f64,
    /// The same after `rss_queued` alerts were queued for an offline node, MB.
    pub rss_mb_queued: f64,
    /// How many alerts were queued for that figure.
    pub rss_queued: u64,
    /// `rss_mb_queued` when `rss_queued` is 100,000 (the full run), else absent.
    pub rss_mb_100k_queued: Option<f64>,
    /// Requests that ended in a non-OK status.
    pub errors: u64,
    /// The audit-log figures.
    pub audit: AuditFigures,
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

/// Runs the benchmark against an in-process topology.
pub async fn run(
    options: &BenchOptions,
    progress: &(dyn Fn(&str) + Send + Sync),
) -> Result<BenchReport, TopologyError> {
    let mut report = BenchReport::default();
    progress("starting a gateway and five agencies over mTLS");
    // The bench measures capacity, so the per-node rate limit is lifted.
    let mut spec = TopologySpec::default_agencies();
    spec.limits.rate_per_node = 1e9;
    spec.limits.burst_per_node = u32::MAX;
    let topo = Topology::start(spec).await?;
    let mut clients = Vec::new();
    for _ in 0..options.channels.max(1) {
        clients.push(topo.client("de-police").await?);
    }
    let clients = Arc::new(clients);

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
    report.baseline_rps = ok as f64 / took.as_secs_f64();
    report.errors += err;

    progress("publish: durable, default policy, four subscribed recipients");
    let cs = clients.clone();
    let (ok, err, took) = drive(options.phase, options.concurrency, move |w| {
        let client = cs[w % cs.len()].clone();
        async move {
            client
                .publish(samples::migrant_smuggling("de-police", &["fr-police", "it-police", "europol", "frontex"]))
                .await
                .is_ok()
        }
    })
    .await;
    report.publish_rps = ok as f64 / took.as_secs_f64();
    report.errors += err;
    report.publish_ratio = report.publish_rps / report.baseline_rps.max(1e-9);

    progress("lookup: by document number, one match, audited");
    let target = samples::foreign_fighter("de-police", &["fr-police"]);
    clients[0]
        .publish(target)
        .await
        .map_err(|e| TopologyError::Node { node: "bench".into(), message: e.to_string() })?;
    let mut askers = Vec::new();
    for _ in 0..options.channels.max(1) {
        askers.push(topo.client("it-police").await?);
    }
    let askers = Arc::new(askers);
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
            client.lookup(vec![id], "bench", "bench").await.is_ok_and(|r| r.hits.len() == 1)
        }
    })
    .await;
    report.lookup_rps = ok as f64 / took.as_secs_f64();
    report.lookup_ratio = report.lookup_rps / report.baseline_rps.max(1e-9);
    report.errors += err;
    topo.shutdown().await;

    latency_and_memory(options, &mut report, progress).await?;

    progress("policy: the decision path alone");
    let figures = policy_decisions(options.phase.min(Duration::from_secs(3)))
        .map_err(|e| TopologyError::Node { node: "policy".into(), message: e.to_string() })?;
    (report.policy_decisions_per_s, report.policy_us_per_alert) = figures.cached;
    (report.policy_decisions_per_s_uncached, report.policy_us_per_alert_uncached) = figures.uncached;
    // At the measured throughput with `concurrency` in flight on two cores, each
    // publish costs about (cores / publish_rps) of CPU time.
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) as f64;
    report.publish_us_per_alert = cores * 1e6 / report.publish_rps.max(1e-9);
    report.policy_share_of_publish = report.policy_us_per_alert / report.publish_us_per_alert;
    report.policy_share_of_publish_uncached = report.policy_us_per_alert_uncached / report.publish_us_per_alert;
    report.audit = audit_figures(options.audit_records, 64, &options.log_sizes, progress)
        .map_err(|message| TopologyError::Node { node: "audit bench".into(), message })?;
    Ok(report)
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

/// Publish-to-delivery latency at a fixed offered rate (HDR histogram), then
/// resident memory with `options.queued` alerts queued for an offline node.
async fn latency_and_memory(
    options: &BenchOptions,
    report: &mut BenchReport,
    progress: &(dyn Fn(&str) + Send + Sync),
) -> Result<(), TopologyError> {
    use std::collections::HashMap;
    use std::sync::Mutex;
    progress(&format!("latency: publish to delivery at {}/s offered", options.rate));
    let mut spec = TopologySpec::default_agencies();
    spec.limits.rate_per_node = 1e9;
    spec.limits.burst_per_node = u32::MAX;
    spec.limits.max_queue_per_node = u64::MAX;
    for n in spec.nodes.iter_mut().filter(|n| n.id.as_str() == "fr-police") {
        n.run_mock = false;
    }
    let topo = Topology::start(spec).await?;
    let bad = |e: &dyn std::fmt::Display| TopologyError::Node { node: "bench".into(), message: e.to_string() };
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
    let mut publishers = Vec::new();
    for _ in 0..options.channels.max(1) {
        publishers.push(topo.client("de-police").await?);
    }
    let in_flight = Arc::new(AtomicU64::new(0));
    let (mut offered, mut shed) = (0u64, 0u64);
    let accepted = Arc::new(AtomicU64::new(0));
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
        let (sent, in_flight, accepted) = (sent.clone(), in_flight.clone(), accepted.clone());
        in_flight.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            let alert = samples::foreign_fighter("de-police", &["fr-police"]);
            sent.lock().unwrap_or_else(|e| e.into_inner()).insert(alert.alert_id.clone(), Instant::now());
            if client.publish(alert.clone()).await.is_ok() {
                accepted.fetch_add(1, Ordering::Relaxed);
            } else {
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
    {
        let h = hist.lock().unwrap_or_else(|e| e.into_inner());
        report.e2e_p50_ms = h.value_at_quantile(0.5) as f64 / 1000.0;
        report.e2e_p99_ms = h.value_at_quantile(0.99) as f64 / 1000.0;
        report.e2e_p999_ms = h.value_at_quantile(0.999) as f64 / 1000.0;
    }
    report.e2e_offered_rps = offered as f64 / offered_secs;
    report.e2e_delivered = arrived.load(Ordering::Relaxed);
    report.e2e_shed = shed;
    receiver.abort();

    progress(&format!("memory: {} alerts queued for an offline node", options.queued));
    report.rss_mb_before_queue = rss_mb();
    let target = options.queued;
    let next = Arc::new(AtomicU64::new(0));
    let stored = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for w in 0..options.concurrency.max(1) {
        let client = publishers[w % publishers.len()].clone();
        let (next, stored) = (next.clone(), stored.clone());
        workers.push(tokio::spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < target {
                if client.publish(samples::migrant_smuggling("de-police", &["fr-police"])).await.is_ok() {
                    stored.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for w in workers {
        let _ = w.await;
    }
    let ok = stored.load(Ordering::Relaxed);
    report.rss_mb_queued = rss_mb();
    report.rss_queued = ok;
    report.rss_mb_100k_queued = (report.rss_queued >= 100_000).then_some(report.rss_mb_queued);
    topo.shutdown().await;
    Ok(())
}

/// Audit-log figures, each next to its baseline from the same run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AuditFigures {
    /// Records per second appended with group commit (one flush + fsync per batch).
    pub audit_append_rps: f64,
    /// Raw sled inserts of the same bytes with the same flush policy.
    pub sled_raw_rps: f64,
    /// `audit_append_rps / sled_raw_rps`.
    pub audit_append_ratio: f64,
    /// Records per second verified offline (hash, recompute root).
    pub verify_records_per_s: f64,
    /// Per log size: (records, inclusion-proof ms, search ms).
    pub sizes: Vec<(u64, f64, f64)>,
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
    let raw = isx_audit::open_db(&raw_dir).map_err(|e| err(&e))?;
    let raw_tree = raw.open_tree("raw").map_err(|e| err(&e))?;
    let raw_sync = fsync_files(&raw_dir);
    let bodies: Vec<Vec<u8>> = (0..records).map(|i| sample_record(i).encode_to_vec()).collect();
    let start = Instant::now();
    for (i, body) in bodies.iter().enumerate() {
        raw_tree.insert((i as u64).to_be_bytes(), body.as_slice()).map_err(|e| err(&e))?;
        if (i as u64 + 1).is_multiple_of(batch) {
            raw.flush().map_err(|e| err(&e))?;
            raw_sync.iter().for_each(|f| drop(f.sync_all()));
        }
    }
    raw.flush().map_err(|e| err(&e))?;
    f.sled_raw_rps = records as f64 / start.elapsed().as_secs_f64();

    let log_dir = tmp.path().join("log");
    let db = isx_audit::open_db(&log_dir).map_err(|e| err(&e))?;
    let (log, _) = isx_audit::AuditLog::open(&db, keys()?, &|_, _| {}).map_err(|e| err(&e))?;
    let sync = fsync_files(&log_dir);
    let start = Instant::now();
    let mut i = 0;
    while i < records {
        let n = batch.min(records - i);
        log.append((i..i + n).map(sample_record).collect(), 1_700_000_000_000 + i).map_err(|e| err(&e))?;
        db.flush().map_err(|e| err(&e))?;
        sync.iter().for_each(|f| drop(f.sync_all()));
        i += n;
    }
    f.audit_append_rps = records as f64 / start.elapsed().as_secs_f64();
    f.audit_append_ratio = f.audit_append_rps / f.sled_raw_rps.max(1e-9);

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
        f.sizes.push((target, proof_ms, search_ms));
    }
    Ok(f)
}
