//! Running a scenario against a topology, one check per expectation.
//!
//! The lifecycle steps (amend, withdraw, restrict, lift) and their
//! expectations (copies, confirmations, open hits) are in [`lifecycle`].

use crate::scenario::step::{
    AlertSource, AmendStep, ChangeStep, ExpectConfirmedStep, ExpectCopyStep, ExpectOpenHitsStep, WithCall, outcome_name,
};
use isx_core::wire::{AlertStatus, CopyState, CopyStatus, OpenHit};
use isx_node::Received;
use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use isx_core::json::{from_json, to_json_value};
use isx_core::wire::lookup_identifier::Kind;
use isx_core::wire::{
    Alert, Category, DisclosureLevel, DocumentNumber, LookupIdentifier, PersonName, Receipt, SearchRequest,
};
use isx_core::{NodeId, Role, display};
use isx_node::Client;
use tonic_types::StatusExt;

use super::published::publish_alert;
use super::step::{
    AdvanceClockStep, Call, Count, DecideStep, DeclineStep, ExpectAccessStep, ExpectAuditStep, ExpectDeliveryStep,
    ExpectNothingStep, ExpectWitnessedStep, ForwardStep, Level, LookupStep, PublishStep, RequestAccessStep, Step,
    state_name,
};
use super::{Scenario, Source, code_name};
use crate::topology::{Topology, TopologyError};

/// The result of one expectation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// It held.
    Pass,
    /// It did not; why.
    Fail(String),
    /// It could not be checked here (e.g. a gateway restart against an attached gateway).
    Skipped(String),
}

/// One expectation and its result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// The step it belongs to.
    pub step: usize,
    /// The step's line in the file.
    pub line: usize,
    /// What was expected, in words.
    pub what: String,
    /// The result.
    pub verdict: Verdict,
}

impl Check {
    /// True unless it failed.
    pub fn ok(&self) -> bool {
        !matches!(self.verdict, Verdict::Fail(_))
    }
}

/// What the runner reports as it goes.
#[derive(Debug, Clone)]
pub enum Line {
    /// A step's narration (`say`).
    Say(String),
    /// A step starts.
    Step {
        /// Its number.
        number: usize,
        /// Its line.
        line: usize,
        /// What it does.
        summary: String,
    },
    /// What happened, for a reader (who received what and why).
    Detail(String),
    /// An expectation was checked.
    Check(Check),
}

/// The outcome of one scenario.
#[derive(Debug, Clone)]
pub struct Report {
    /// The scenario file.
    pub path: std::path::PathBuf,
    /// Its title.
    pub name: String,
    /// Every check, in order.
    pub checks: Vec<Check>,
    /// How long it took.
    pub elapsed: Duration,
    /// Every policy id that decided something during the run.
    pub policies: BTreeSet<String>,
    /// The alerts published, by name, in order.
    pub alerts: Vec<(String, Alert)>,
}

/// How a whole scenario ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing failed and at least one expectation was checked and held.
    Pass,
    /// This many expectations failed.
    Fail(usize),
    /// Nothing was checked: every check was skipped (or there was none); why.
    Skipped(String),
}

impl Report {
    /// How many checks failed.
    pub fn failed(&self) -> usize {
        self.checks.iter().filter(|c| !c.ok()).count()
    }

    /// How many checks were skipped.
    pub fn skipped(&self) -> usize {
        self.checks.iter().filter(|c| matches!(c.verdict, Verdict::Skipped(_))).count()
    }

    /// How the scenario ended: a scenario whose every check was skipped is
    /// skipped, never passed.
    pub fn outcome(&self) -> Outcome {
        let failed = self.failed();
        if failed > 0 {
            return Outcome::Fail(failed);
        }
        if self.checks.iter().any(|c| c.verdict == Verdict::Pass) {
            return Outcome::Pass;
        }
        let reasons: Vec<&str> = self
            .checks
            .iter()
            .filter_map(|c| match &c.verdict {
                Verdict::Skipped(why) => Some(why.as_str()),
                _ => None,
            })
            .collect();
        Outcome::Skipped(match reasons.first() {
            Some(first) if reasons.iter().all(|r| r == first) => (*first).to_owned(),
            Some(_) => reasons.join("; "),
            None => "it checks nothing".into(),
        })
    }
}

/// How to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// The bound on every wait for a delivery, an access outcome or an audit count.
    pub limit: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self { limit: Duration::from_secs(10) }
    }
}

struct Runner<'a> {
    topo: &'a mut Topology,
    source: &'a dyn Source,
    base: std::path::PathBuf,
    options: &'a Options,
    emit: &'a mut dyn FnMut(Line),
    alerts: HashMap<String, Alert>,
    receipts: HashMap<String, Receipt>,
    /// The current version of each alert, by name, as the scenario changed it.
    versions: HashMap<String, u32>,
    hits: HashMap<(String, String), String>,
    requests: HashMap<String, String>,
    checks: Vec<Check>,
    policies: BTreeSet<String>,
    step: (usize, usize),
    order: Vec<String>,
    /// Nodes whose mock agency a step stopped (and none started again).
    stopped: BTreeSet<NodeId>,
    /// Set when the gateway stopped answering: the remaining steps are not run.
    halted: Option<String>,
}

/// How often `expect_audit` asks the log again while it waits (the log has
/// no notification).
pub const AUDIT_POLL: Duration = Duration::from_millis(50);

/// How many readings in a row an exact `expect_audit` count must hold.
pub const AUDIT_STABLE_READINGS: u32 = 3;

/// Why the scenario cannot run against this topology (an attached gateway,
/// or agencies that run elsewhere), if it cannot.
fn cannot_run_here(scenario: &Scenario, topo: &Topology) -> Vec<String> {
    let mut reasons = Vec::new();
    if !topo.is_attached() {
        return reasons;
    }
    let at = |e: &super::StepEntry| format!("step {} (line {})", e.number, e.line);
    let gateway: Vec<String> = scenario
        .steps
        .iter()
        .filter(|s| matches!(s.step, Step::RestartGateway(_) | Step::AdvanceClock(_)))
        .map(at)
        .collect();
    if !gateway.is_empty() {
        reasons.push(format!("it restarts the gateway or moves its clock ({}); run it in process", gateway.join(", ")));
    }
    let elsewhere: Vec<String> = scenario
        .steps
        .iter()
        .filter_map(|e| match &e.step {
            Step::StopNode(s) | Step::StartNode(s) if topo.runs_elsewhere(s.node.as_str()) => {
                Some(format!("{} of {}", at(e), s.node))
            }
            _ => None,
        })
        .collect();
    if !elsewhere.is_empty() {
        reasons.push(format!(
            "it stops or starts agencies that run in another process ({}); run it in process, or without --agencies",
            elsewhere.join(", ")
        ));
    }
    if !scenario.spec.witnesses.is_empty() || scenario.spec.nodes.iter().any(|n| n.witness) {
        reasons.push(
            "it runs witnesses of its own, which the running gateway's witness policy does not name; run it in process"
                .into(),
        );
    }
    for node in &scenario.spec.nodes {
        if !node.access_rules.is_empty() && topo.runs_elsewhere(node.id.as_str()) {
            reasons.push(format!(
                "it gives {} standing access rules, but {}'s agency runs in another process with the rules of its own node config",
                node.id, node.id
            ));
        }
    }
    reasons
}

/// Runs `scenario` against `topo`, reporting each line to `emit`.
pub async fn run(
    scenario: &Scenario,
    topo: &mut Topology,
    source: &dyn Source,
    options: &Options,
    emit: &mut dyn FnMut(Line),
) -> Report {
    let start = Instant::now();
    let mut runner = Runner {
        topo,
        source,
        base: scenario.base(),
        options,
        emit,
        alerts: HashMap::new(),
        receipts: HashMap::new(),
        versions: HashMap::new(),
        hits: HashMap::new(),
        requests: HashMap::new(),
        checks: Vec::new(),
        policies: BTreeSet::new(),
        step: (0, 0),
        order: Vec::new(),
        stopped: BTreeSet::new(),
        halted: None,
    };
    let reasons = cannot_run_here(scenario, runner.topo);
    if !reasons.is_empty() {
        runner.check("the scenario runs against this deployment", Verdict::Skipped(reasons.join("; ")));
        return Report {
            path: scenario.path.clone(),
            name: scenario.name.clone(),
            checks: runner.checks,
            elapsed: start.elapsed(),
            policies: runner.policies,
            alerts: vec![],
        };
    }
    for (i, entry) in scenario.steps.iter().enumerate() {
        if let Some(why) = runner.halted.clone() {
            let rest = &scenario.steps[i..];
            let last = rest.last().map(|e| e.number).unwrap_or(entry.number);
            runner.step = (entry.number, entry.line);
            runner.check(
                if last == entry.number {
                    format!("step {} not run", entry.number)
                } else {
                    format!("steps {} to {last} not run", entry.number)
                },
                Verdict::Skipped(why),
            );
            break;
        }
        runner.step = (entry.number, entry.line);
        if let Some(say) = &entry.say {
            (runner.emit)(Line::Say(say.trim().to_owned()));
        }
        (runner.emit)(Line::Step { number: entry.number, line: entry.line, summary: summary(&entry.step) });
        runner.run_step(&entry.step).await;
    }
    let alerts = runner.order.iter().filter_map(|n| runner.alerts.get(n).map(|a| (n.clone(), a.clone()))).collect();
    Report {
        path: scenario.path.clone(),
        name: scenario.name.clone(),
        checks: runner.checks,
        elapsed: start.elapsed(),
        policies: runner.policies,
        alerts,
    }
}

/// A step in words, e.g. `publish foreign-fighter as de-police`.
fn summary(step: &Step) -> String {
    match step {
        Step::Publish(s) => format!("publish {} as {}", s.step.name, s.call.actor),
        Step::Forward(s) => format!("forward {} as {}", s.step.of, s.call.actor),
        Step::ExpectDelivery(s) => format!("{} receives {} {}", s.node, s.alert, s.level.name()),
        Step::ExpectNothing(s) => match &s.alert {
            Some(a) => format!("{} receives nothing of {a}", s.node),
            None => format!("{} receives nothing of the scenario's alerts", s.node),
        },
        Step::Lookup(s) => format!("lookup as {}", s.call.actor),
        Step::RequestAccess(s) => format!("{} requests access to {}", s.call.actor, s.step.alert),
        Step::Decide(s) => {
            format!("{} {} request {}", s.call.actor, if s.step.grant { "grants" } else { "denies" }, s.step.request)
        }
        Step::Decline(s) => format!("{} declines to follow up {}", s.call.actor, s.step.alert),
        Step::ExpectAccess(s) => format!("{} sees request {} {}", s.node, s.request, s.state.name()),
        Step::StopNode(s) => format!("stop {}", s.node),
        Step::StartNode(s) => format!("start {}", s.node),
        Step::RestartGateway(_) => "restart the gateway".into(),
        Step::AdvanceClock(s) => format!("advance the gateway clock by {}", duration_text(s.by)),
        Step::ExpectAudit(s) => format!("audit log: {}", s.operation.name()),
        Step::ExpectWitnessed(s) => format!("the checkpoint is cosigned by {}", s.cosigners.join(", ")),
        Step::Amend(s) => format!("amend {} as {}", s.step.alert, s.call.actor),
        Step::Withdraw(s) => format!("withdraw {} as {}", s.step.alert, s.call.actor),
        Step::Restrict(s) => format!("restrict {} as {}", s.step.alert, s.call.actor),
        Step::Lift(s) => format!("lift the restriction of {} as {}", s.step.alert, s.call.actor),
        Step::ExpectCopy(s) => format!("{}'s copy of {}: {}", s.node, s.alert, copy_wanted(s)),
        Step::ExpectConfirmed(s) => format!("every copy of {} confirms its last change", s.alert),
        Step::ExpectOpenHits(s) => format!("{}'s open hits: {}", s.node, list(&s.hits)),
    }
}

/// A duration as scenarios write it: `3h`, `90s`, `2d`.
fn duration_text(d: Duration) -> String {
    let secs = d.as_secs();
    match secs {
        s if s > 0 && s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s > 0 && s % 3600 == 0 => format!("{}h", s / 3600),
        s if s > 0 && s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

fn level_name(level: DisclosureLevel) -> &'static str {
    display::level(level)
}

/// A text as a scenario file writes it: `"origin-is-caller"`.
fn quoted(text: &str) -> String {
    toml::Value::String(text.to_owned()).to_string()
}

/// A list as a scenario file writes it: `["a", "b"]`, or `[]`.
fn list(items: &[String]) -> String {
    toml::Value::Array(items.iter().cloned().map(toml::Value::String).collect()).to_string()
}

/// Every value at a path such as `subjects[0].family_name` or
/// `subjects[*].documents[*].number` in a JSON document.
pub fn values_at<'v>(root: &'v serde_json::Value, path: &str) -> Vec<&'v serde_json::Value> {
    let mut current = vec![root];
    for part in path.split('.') {
        let (name, indexes) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        let mut next: Vec<&serde_json::Value> = current.iter().filter_map(|v| v.get(name)).collect();
        for index in indexes.split('[').filter(|s| !s.is_empty()) {
            let index = index.trim_end_matches(']');
            next = next
                .into_iter()
                .flat_map(|v| match (index, v.as_array()) {
                    ("*", Some(items)) => items.iter().collect::<Vec<_>>(),
                    (i, Some(items)) => i.parse::<usize>().ok().and_then(|i| items.get(i)).into_iter().collect(),
                    _ => vec![],
                })
                .collect();
        }
        current = next;
    }
    current
}

fn has_value(v: &serde_json::Value) -> bool {
    match v {
        serde_json::Value::Null => false,
        serde_json::Value::String(s) => !s.is_empty(),
        serde_json::Value::Array(a) => !a.is_empty(),
        serde_json::Value::Object(o) => !o.is_empty(),
        serde_json::Value::Bool(b) => *b,
        serde_json::Value::Number(_) => true,
    }
}

impl Runner<'_> {
    fn check(&mut self, what: impl Into<String>, verdict: Verdict) {
        let check = Check { step: self.step.0, line: self.step.1, what: what.into(), verdict };
        (self.emit)(Line::Check(check.clone()));
        self.checks.push(check);
    }

    fn expect(&mut self, what: impl Into<String>, ok: bool, detail: impl FnOnce() -> String) {
        let verdict = if ok { Verdict::Pass } else { Verdict::Fail(detail()) };
        self.check(what, verdict);
    }

    fn detail(&mut self, text: String) {
        (self.emit)(Line::Detail(text));
    }

    async fn client(&mut self, call: &Call) -> Option<Client> {
        let node = call.actor.as_str();
        match self.topo.client(node).await {
            Ok(c) => match &call.officer {
                Some(o) => match c.with_officer(o) {
                    Ok(c) => Some(c),
                    Err(e) => {
                        self.check(format!("act as {node}"), Verdict::Fail(e.to_string()));
                        None
                    }
                },
                None => Some(c),
            },
            Err(e) => {
                if let TopologyError::Client(isx_node::ClientError::Connect { .. }) = &e {
                    self.halted = Some(format!("the gateway at {} stopped answering", self.topo.gateway_addr()));
                }
                self.check(format!("connect as {node}"), Verdict::Fail(e.to_string()));
                None
            }
        }
    }

    /// Checks a call's status against the step's `expect_code`, message and
    /// fields; returns true if the call succeeded.
    fn call<T>(&mut self, call: &Call, what: &str, result: &Result<T, tonic::Status>) -> bool {
        let (code, message, fields) = match result {
            Ok(_) => (tonic::Code::Ok, String::new(), vec![]),
            Err(s) => (
                s.code(),
                s.message().to_owned(),
                s.get_error_details()
                    .bad_request()
                    .map(|b| b.field_violations.iter().map(|v| v.field.clone()).collect())
                    .unwrap_or_default(),
            ),
        };
        let want = call.expect_code.0;
        self.expect(format!("{what}: {}", code_name(want)), code == want, || {
            if message.is_empty() { code_name(code) } else { format!("{}: {message}", code_name(code)) }
        });
        if let Some(want) = &call.expect_message {
            self.expect(format!("{what}: message contains {}", quoted(want)), message.contains(want.as_str()), || {
                if message.is_empty() {
                    "there was no message".into()
                } else {
                    format!("message was {}", quoted(&message))
                }
            });
        }
        if let Some(want) = &call.expect_fields {
            self.expect(format!("{what}: bad fields {}", list(want)), *want == fields, || {
                if fields.is_empty() { "it named no field".into() } else { format!("it named {}", list(&fields)) }
            });
        }
        code == tonic::Code::Ok
    }

    fn alert_id(&mut self, name: &str) -> Option<String> {
        let id = self.alerts.get(name).map(|a| a.alert_id.clone());
        if id.is_none() {
            self.check(format!("alert {name:?} is known"), Verdict::Fail("no earlier step published it".into()));
        }
        id
    }

    async fn run_step(&mut self, step: &Step) {
        match step {
            Step::Publish(s) => self.publish(s).await,
            Step::Forward(s) => self.forward(s).await,
            Step::ExpectDelivery(s) => self.expect_delivery(s).await,
            Step::ExpectNothing(s) => self.expect_nothing(s).await,
            Step::Lookup(s) => self.lookup(s).await,
            Step::RequestAccess(s) => self.request_access(s).await,
            Step::Decide(s) => self.decide(s).await,
            Step::Decline(s) => self.decline(s).await,
            Step::ExpectAccess(s) => self.expect_access(s).await,
            Step::StopNode(s) => {
                let result = self.topo.stop_node(s.node.as_str()).await;
                if result.is_ok() {
                    self.stopped.insert(s.node.clone());
                }
                self.expect(format!("{} stopped", s.node), result.is_ok(), || error_text(result.err()));
            }
            Step::StartNode(s) => {
                let result = self.topo.start_node(s.node.as_str()).await;
                if result.is_ok() {
                    self.stopped.remove(&s.node);
                }
                self.expect(format!("{} started", s.node), result.is_ok(), || error_text(result.err()));
            }
            Step::RestartGateway(_) => {
                if self.topo.is_attached() {
                    self.check("gateway restarted", Verdict::Skipped("the gateway runs elsewhere".into()));
                } else {
                    let result = self.topo.restart_gateway().await;
                    self.expect("gateway restarted", result.is_ok(), || error_text(result.err()));
                }
            }
            Step::AdvanceClock(AdvanceClockStep { by }) => {
                if self.topo.is_attached() {
                    self.check("clock advanced", Verdict::Skipped("the gateway runs elsewhere".into()));
                } else {
                    self.topo.advance_clock(*by);
                }
            }
            Step::ExpectAudit(s) => self.expect_audit(s).await,
            Step::ExpectWitnessed(s) => self.expect_witnessed(s).await,
            Step::Amend(s) => self.amend(s).await,
            Step::Withdraw(s) => self.change(s, Change::Withdraw).await,
            Step::Restrict(s) => self.change(s, Change::Restrict).await,
            Step::Lift(s) => self.change(s, Change::Lift).await,
            Step::ExpectCopy(s) => self.expect_copy(s).await,
            Step::ExpectConfirmed(s) => self.expect_confirmed(s).await,
            Step::ExpectOpenHits(s) => self.expect_open_hits(s).await,
        }
    }

    /// The published checkpoint (read as the auditor) is witnessed, by
    /// exactly `s.cosigners`, and meets the topology's witness policy.
    async fn expect_witnessed(&mut self, s: &ExpectWitnessedStep) {
        let what = format!("checkpoint cosigned by {}", s.cosigners.join(", "));
        let cp = match self.topo.checkpoint().await {
            Ok(cp) => cp,
            Err(e) => return self.check(what, Verdict::Fail(e.to_string())),
        };
        let mut want = s.cosigners.clone();
        want.sort();
        let mut got = cp.cosigners.clone();
        got.sort();
        let policy = self.topo.witness_policy().map(|p| {
            isx_audit::policy::WitnessPolicy::load(&p)
                .map_err(|e| e.to_string())
                .and_then(|p| p.check(&cp.note).map_err(|e| e.to_string()))
        });
        let verdict = match policy {
            _ if !cp.witnessed => Verdict::Fail(format!(
                "the published checkpoint (size {}) is not witnessed{}",
                cp.tree_size,
                if cp.cosigners.is_empty() {
                    String::new()
                } else {
                    format!(" (cosigned by {})", cp.cosigners.join(", "))
                }
            )),
            _ if got != want => Verdict::Fail(format!("cosigned by {}", got.join(", "))),
            Some(Err(e)) => Verdict::Fail(format!("it does not meet the witness policy: {e}")),
            _ => Verdict::Pass,
        };
        self.check(what, verdict);
    }

    fn hit(&mut self, node: &NodeId, alert: &str) -> Option<String> {
        let hit = self.hits.get(&(node.to_string(), alert.to_owned())).cloned();
        if hit.is_none() {
            self.check(
                format!("{node} has a hit on {alert}"),
                Verdict::Fail("no earlier lookup by this node showed it; add a lookup step".into()),
            );
        }
        hit
    }

    fn request_id(&mut self, name: &str) -> Option<String> {
        let id = self.requests.get(name).cloned();
        if id.is_none() {
            let known: Vec<&String> = self.requests.keys().collect();
            self.check(format!("request {name:?} is known"), Verdict::Fail(format!("known requests: {known:?}")));
        }
        id
    }

    async fn publish(&mut self, s: &WithCall<PublishStep>) {
        let mut alert = match publish_alert(&s.step, &self.base, self.source) {
            Ok(a) => a,
            Err(e) => {
                self.check("read the alert", Verdict::Fail(e));
                return;
            }
        };
        let name = s.step.name.clone();
        if let Some(earlier) = self.alerts.get(&name) {
            alert.alert_id = earlier.alert_id.clone(); // the same name again is a resend
            if s.step.expires_in.is_some() {
                alert.expires_at = earlier.expires_at; // and expires when it did
            }
        } else {
            if !s.step.keep_id {
                alert.alert_id = crate::samples::new_alert_id();
            }
            if let Some(d) = s.step.expires_in {
                let at = self.topo.now_ms().saturating_add(d.as_millis() as u64);
                alert.expires_at = Some(isx_core::timestamp::from_unix_millis(at));
            }
        }
        let expected = Expected { receipt: &s.step.receipt, policies: &s.step.receipt_policies };
        self.send(&s.call, "publish", name, alert, expected).await;
    }

    async fn forward(&mut self, s: &WithCall<ForwardStep>) {
        let of = &s.step.of;
        let Some(parent) = self.alerts.get(of).cloned() else {
            self.check(format!("alert {of:?} is known"), Verdict::Fail("no earlier step published it".into()));
            return;
        };
        let mut value = to_json_value(&Alert {
            alert_id: crate::samples::new_alert_id(),
            origin: s.call.actor.to_string(),
            forwarded_from: parent.alert_id.clone(),
            hops: 0,
            ..parent
        });
        if let Some(patch) = &s.step.patch {
            match serde_json::to_value(patch) {
                Ok(p) => isx_policy::table::merge(&mut value, &p),
                Err(e) => {
                    self.check("build the forwarded alert", Verdict::Fail(format!("patch: {e}")));
                    return;
                }
            }
        }
        let mut alert = match from_json::<Alert>(&value.to_string(), "the forwarded alert") {
            Ok(a) => a,
            Err(e) => {
                self.check("build the forwarded alert", Verdict::Fail(e.to_string()));
                return;
            }
        };
        let name = s.step.name();
        if let Some(earlier) = self.alerts.get(&name) {
            alert.alert_id = earlier.alert_id.clone(); // the same name again is a resend
        }
        let expected = Expected { receipt: &s.step.receipt, policies: &s.step.receipt_policies };
        self.send(&s.call, "forward", name, alert, expected).await;
    }

    /// Publishes (or forwards) `alert` and checks its receipt.
    async fn send(&mut self, call: &Call, verb: &str, name: String, alert: Alert, expected: Expected<'_>) {
        let Some(client) = self.client(call).await else { return };
        let result = client.publish(alert.clone()).await;
        if !self.call(call, &format!("{verb} {name} as {}", call.actor), &result) {
            return;
        }
        let Ok(resp) = result else { return };
        let receipt = resp.receipt.unwrap_or_default();
        if resp.duplicate {
            self.detail(format!("{name}: a resend of an earlier publish; the original receipt came back"));
        }
        self.check_receipt(&receipt, &expected);
        if !self.order.contains(&name) {
            self.order.push(name.clone());
        }
        self.versions.insert(name.clone(), receipt.version.max(1));
        self.alerts.insert(name.clone(), alert);
        self.receipts.insert(name, receipt);
    }

    /// Reports each recipient of `receipt` and checks the levels and
    /// policies `expected` names.
    fn check_receipt(&mut self, receipt: &Receipt, expected: &Expected<'_>) {
        for r in &receipt.recipients {
            self.policies.extend(r.policy_ids.iter().cloned());
            let first = r.policy_ids.first().cloned().unwrap_or_default();
            let reason = self.topo.policy_reason(&first).unwrap_or_default();
            self.detail(format!("{:<10} {:<9} {first}: {reason}", r.node, level_name(r.level())));
        }
        for (node, want) in expected.receipt {
            let got = receipt.recipients.iter().find(|r| r.node == node.as_str()).map(|r| r.level());
            // `denied` also matches a node that is not a candidate at all.
            let ok = match got {
                Some(level) => level == want.wire(),
                None => *want == Level::Denied,
            };
            let got = got.map(level_name).unwrap_or("not a candidate");
            self.expect(format!("receipt: {node} {}", want.name()), ok, || format!("got {got}"));
        }
        for (node, want) in expected.policies {
            let got: Vec<String> = receipt
                .recipients
                .iter()
                .find(|r| r.node == node.as_str())
                .map(|r| r.policy_ids.clone())
                .unwrap_or_default();
            let missing: Vec<&String> = want.iter().filter(|p| !got.contains(p)).collect();
            self.expect(format!("receipt: {node} decided by {want:?}"), missing.is_empty(), || {
                format!("deciding policies were {got:?}")
            });
        }
    }

    async fn expect_delivery(&mut self, s: &ExpectDeliveryStep) {
        let (node, name, want) = (&s.node, &s.alert, s.level);
        let Some(id) = self.alert_id(name) else { return };
        if want == Level::Denied {
            self.expect_denied(node, name, &id).await;
            return;
        }
        let request = match &s.request {
            Some(r) => match self.request_id(r) {
                Some(id) => Some(id),
                None => return,
            },
            None => None,
        };
        let agency = self.topo.agency(node.as_str());
        let what = format!("{node} receives {name} {}", want.name());
        let record = match agency.wait_until(&id, |r| r.level() == want.wire(), self.options.limit).await {
            Ok(Some(r)) => r,
            Ok(None) => {
                let held = agency.get(&id).await.ok().flatten().map(|r| level_name(r.level()).to_owned());
                self.check(
                    what,
                    Verdict::Fail(match held {
                        Some(l) => format!("it holds it {l}"),
                        None => format!("nothing arrived within {}", duration_text(self.options.limit)),
                    }),
                );
                return;
            }
            Err(e) => {
                self.check(what, Verdict::Fail(e.to_string()));
                return;
            }
        };
        self.check(what, Verdict::Pass);
        let delivery = record.delivery.unwrap_or_default();
        self.policies.extend(delivery.policy_ids.iter().cloned());
        let view = to_json_value(&delivery.alert.clone().unwrap_or_default());
        for path in &s.present {
            let found = values_at(&view, path).into_iter().any(has_value);
            self.expect(format!("{node}'s copy of {name} has {path}"), found, || "it is absent".into());
        }
        for path in &s.absent {
            let found: Vec<String> =
                values_at(&view, path).into_iter().filter(|v| has_value(v)).map(|v| v.to_string()).collect();
            self.expect(format!("{node}'s copy of {name} lacks {path}"), found.is_empty(), || {
                format!("it has {}", found.len())
            });
        }
        if let Some(want) = &s.policies {
            let missing: Vec<&String> = want.iter().filter(|p| !delivery.policy_ids.contains(p)).collect();
            self.expect(format!("{node}'s copy of {name} decided by {}", list(want)), missing.is_empty(), || {
                format!("deciding policies were {}", list(&delivery.policy_ids))
            });
        }
        if let Some(request) = request {
            self.expect(
                format!("{node}'s copy of {name} follows request {request}"),
                delivery.request_id == request,
                || match delivery.request_id.as_str() {
                    "" => "it came with no access request".into(),
                    other => format!("it came with request {other}"),
                },
            );
        }
    }

    /// `level = "denied"`: the receipt gave `node` nothing of the alert, and
    /// its agency holds nothing of it (read after an ordering marker, see
    /// [`Runner::ordered`]).
    async fn expect_denied(&mut self, node: &NodeId, name: &str, id: &str) {
        let what = format!("{node} receives nothing of {name}");
        let in_receipt = self
            .receipts
            .get(name)
            .and_then(|r| r.recipients.iter().find(|d| d.node == node.as_str()))
            .map(|d| d.level())
            .filter(|l| *l != DisclosureLevel::Denied);
        let origin = self.alerts.get(name).map(|a| a.origin.clone()).unwrap_or_default();
        if !self.ordered(node, &origin, &what).await {
            return;
        }
        let held = match self.topo.agency(node.as_str()).get(id).await {
            Ok(held) => held,
            Err(e) => {
                self.check(what, Verdict::Fail(e.to_string()));
                return;
            }
        };
        self.expect(what, in_receipt.is_none() && held.is_none(), || {
            let receipt = match in_receipt {
                Some(level) => format!("the receipt gives it {}", level_name(level)),
                None => "the receipt gives it nothing".into(),
            };
            let agency = match &held {
                Some(r) => format!("its agency holds it {}", level_name(r.level())),
                None => "its agency holds nothing of it".into(),
            };
            format!("{receipt}; {agency}")
        });
    }

    /// `do = "expect_nothing"`: `node`'s agency holds nothing of the alert,
    /// or of any alert earlier steps published (read after an ordering
    /// marker, see [`Runner::ordered`]). The receipt is not consulted.
    async fn expect_nothing(&mut self, s: &ExpectNothingStep) {
        let node = &s.node;
        let names: Vec<String> = match &s.alert {
            Some(name) => vec![name.clone()],
            None => self.order.clone(),
        };
        let what = match &s.alert {
            Some(name) => format!("{node} holds nothing of {name}"),
            None => format!("{node} holds none of the scenario's alerts ({})", names.len()),
        };
        let mut ids = Vec::new();
        for name in &names {
            let Some(id) = self.alert_id(name) else { return };
            ids.push((name.clone(), id));
        }
        let origin = match &s.alert {
            Some(name) => self.alerts.get(name).map(|a| a.origin.clone()).unwrap_or_default(),
            None => String::new(),
        };
        if !self.ordered(node, &origin, &what).await {
            return;
        }
        let agency = self.topo.agency(node.as_str());
        let mut held = Vec::new();
        for (name, id) in &ids {
            match agency.get(id).await {
                Ok(Some(r)) => held.push(format!("{name} {}", level_name(r.level()))),
                Ok(None) => {}
                Err(e) => {
                    self.check(what, Verdict::Fail(e.to_string()));
                    return;
                }
            }
        }
        self.expect(what, held.is_empty(), || format!("its agency holds {}", held.join(", ")));
    }

    /// Orders a check of `node`'s agency after every delivery already queued
    /// for it: the gateway delivers to a node in the order of its outbox, so
    /// once an ordering marker published now has arrived, a delivery still
    /// in flight before it has landed too. A stopped agency writes nothing
    /// until it starts again, so its inbox is read at once. On failure,
    /// checks `what` as failed and returns false.
    async fn ordered(&mut self, node: &NodeId, origin: &str, what: &str) -> bool {
        if self.stopped.contains(node) {
            return true;
        }
        match self.settle(node, origin).await {
            Ok(publisher) => {
                self.detail(format!("checked after a marker alert from {publisher} reached {node}"));
                true
            }
            Err(why) => {
                self.check(what, Verdict::Fail(why));
                false
            }
        }
    }

    /// Publishes an ordering marker to `node` (from `origin`, or another
    /// node that may publish if `origin` is `node`) and waits until `node`'s
    /// agency holds it; afterwards everything the gateway queued for `node`
    /// before the marker has arrived too. The marker names no person or
    /// object, so no lookup can match it; it adds a collection and a
    /// disclosure to the audit log. Returns the marker's publisher.
    async fn settle(&mut self, node: &NodeId, origin: &str) -> Result<NodeId, String> {
        let spec = self.topo.spec();
        let may_publish = |n: &&crate::topology::NodeSpec| {
            n.id != *node && n.roles.clone().unwrap_or_else(|| n.kind.default_roles()).contains(&Role::Publish)
        };
        let publisher = match spec.nodes.iter().filter(may_publish).find(|n| n.id.as_str() == origin) {
            Some(n) => n.id.clone(),
            None => spec
                .nodes
                .iter()
                .find(may_publish)
                .map(|n| n.id.clone())
                .ok_or_else(|| format!("no node but {node} may publish the marker that orders this check"))?,
        };
        let mut marker = crate::samples::base(
            publisher.as_str(),
            &[node.as_str()],
            Category::MigrantSmuggling,
            isx_core::wire::Action::Inform,
        );
        marker.narrative = "Ordering marker of the scenario runner: no case behind it.".into();
        let client = self.topo.client(publisher.as_str()).await.map_err(|e| format!("connect as {publisher}: {e}"))?;
        let resp = client.publish(marker.clone()).await.map_err(|s| {
            format!("the ordering marker from {publisher} was refused: {}: {}", code_name(s.code()), s.message())
        })?;
        let level = resp
            .receipt
            .and_then(|r| r.recipients.into_iter().find(|d| d.node == node.as_str()))
            .map(|d| d.level())
            .unwrap_or(DisclosureLevel::Denied);
        if matches!(level, DisclosureLevel::Denied | DisclosureLevel::Unspecified) {
            return Err(format!(
                "policy gives {node} nothing of an ordering marker from {publisher}, so the check cannot be ordered after deliveries in flight"
            ));
        }
        match self.topo.agency(node.as_str()).wait_for(&marker.alert_id, self.options.limit).await {
            Ok(Some(_)) => Ok(publisher),
            Ok(None) => Err(format!(
                "the ordering marker from {publisher} did not arrive within {}, so deliveries in flight may not have either",
                duration_text(self.options.limit)
            )),
            Err(e) => Err(e.to_string()),
        }
    }

    async fn lookup(&mut self, s: &WithCall<LookupStep>) {
        let (actor, step) = (&s.call.actor, &s.step);
        let mut ids = Vec::new();
        for d in &step.document {
            let (country, number) = d.split_once(':').unwrap_or(("", d));
            ids.push(Kind::Document(DocumentNumber { issuing_country: country.into(), number: number.into() }));
        }
        if let Some(p) = &step.person {
            ids.push(Kind::Person(PersonName {
                family_name: p.family_name.clone(),
                given_names: p.given_names.clone(),
                date_of_birth: p.date_of_birth.clone(),
            }));
        }
        ids.extend(step.plate.iter().map(|p| Kind::Plate(p.clone())));
        ids.extend(step.firearm.iter().map(|p| Kind::FirearmSerial(p.clone())));
        let ids = ids.into_iter().map(|k| LookupIdentifier { kind: Some(k) }).collect();
        let Some(client) = self.client(&s.call).await else { return };
        let result = client.lookup(ids, &step.purpose, &step.justification).await;
        if !self.call(&s.call, &format!("lookup as {actor}"), &result) {
            return;
        }
        let Ok(resp) = result else { return };
        let mut names = Vec::new();
        let mut foreign = 0;
        for hit in &resp.hits {
            // Against a shared gateway, alerts from other runs may match too; only ours count.
            let Some(name) = self.alerts.iter().find(|(_, a)| a.alert_id == hit.alert_id).map(|(n, _)| n.clone())
            else {
                foreign += 1;
                continue;
            };
            self.policies.extend(hit.policy_ids.iter().cloned());
            self.detail(format!(
                "hit: {name} held by {} ({}, matched on {})",
                hit.holder,
                display::category(hit.category()),
                hit.matched.join(", ")
            ));
            self.hits.insert((actor.to_string(), name.clone()), hit.hit_id.clone());
            names.push(name);
        }
        if resp.hits.is_empty() {
            self.detail("no hit".into());
        }
        if foreign > 0 {
            self.detail(format!("{foreign} more hit(s) on alerts this scenario did not publish (ignored)"));
        }
        if let Some(want) = &step.hits {
            let mut got = names.clone();
            got.sort();
            let mut want = want.clone();
            want.sort();
            self.expect(format!("{actor}'s lookup shows exactly {}", list(&want)), got == want, || {
                if got.is_empty() {
                    "it showed no hit of the scenario's alerts".into()
                } else {
                    format!("it showed {}", list(&got))
                }
            });
        }
    }

    async fn request_access(&mut self, s: &WithCall<RequestAccessStep>) {
        let (actor, alert) = (&s.call.actor, &s.step.alert);
        let Some(hit) = self.hit(actor, alert) else { return };
        let Some(client) = self.client(&s.call).await else { return };
        let result = client.request_access(&hit, &s.step.purpose, &s.step.justification).await;
        if self.call(&s.call, &format!("{actor} requests {alert}"), &result)
            && let Ok(request) = result
        {
            self.detail(format!(
                "{} asks {} for {alert}: request {} (deadline {})",
                actor,
                request.holder,
                request.request_id,
                request.deadline.as_ref().map(isx_core::timestamp::rfc3339).unwrap_or_default()
            ));
            self.requests.insert(s.step.name(actor), request.request_id);
        }
    }

    async fn decide(&mut self, s: &WithCall<DecideStep>) {
        let (actor, step) = (&s.call.actor, &s.step);
        let Some(id) = self.request_id(&step.request) else { return };
        let Some(client) = self.client(&s.call).await else { return };
        let result = client.decide_access(&id, step.grant, &step.reason).await;
        let verb = if step.grant { "grants" } else { "denies" };
        if self.call(&s.call, &format!("{actor} {verb} {}", step.request), &result)
            && let Ok(decided) = result
        {
            self.policies.extend(decided.policy_ids.iter().cloned());
            if step.grant {
                self.detail(format!(
                    "granted: {} will receive it {} ({})",
                    decided.requester,
                    level_name(decided.level()),
                    decided.policy_ids.join(", ")
                ));
            }
            if let Some(want) = step.expect_level {
                let got = decided.level();
                self.expect(
                    format!("{} gets {} after the grant", decided.requester, want.name()),
                    got == want.wire(),
                    || format!("got {} ({})", level_name(got), decided.policy_ids.join(", ")),
                );
            }
        }
    }

    async fn decline(&mut self, s: &WithCall<DeclineStep>) {
        let (actor, alert) = (&s.call.actor, &s.step.alert);
        let Some(hit) = self.hit(actor, alert) else { return };
        let Some(client) = self.client(&s.call).await else { return };
        let result = client.decline_follow_up(&hit, &s.step.reason).await;
        self.call(&s.call, &format!("{actor} declines {alert}"), &result);
    }

    async fn expect_access(&mut self, s: &ExpectAccessStep) {
        let (node, name, want) = (&s.node, &s.request, s.state);
        let Some(id) = self.request_id(name) else { return };
        let got = self
            .topo
            .agency(node.as_str())
            .wait_for_access(&id, |r| r.state() == want.wire(), self.options.limit)
            .await;
        let (ok, detail) = match got {
            Ok(Some(r)) if r.reason.is_empty() => (r.state() == want.wire(), state_name(r.state())),
            Ok(Some(r)) => (r.state() == want.wire(), format!("{}: {}", state_name(r.state()), r.reason)),
            Ok(None) => (false, format!("{node} never heard of it within {}", duration_text(self.options.limit))),
            Err(e) => (false, e.to_string()),
        };
        if ok {
            self.detail(format!("{node}: request {name} {detail}"));
        }
        self.expect(format!("{node} sees request {name} {}", want.name()), ok, || detail);
    }

    async fn expect_audit(&mut self, s: &ExpectAuditStep) {
        let op = s.operation.name();
        let mut filter = SearchRequest {
            operation: s.operation.wire() as i32,
            node: s.node.as_ref().map(NodeId::to_string).unwrap_or_default(),
            officer: s.officer.clone().unwrap_or_default(),
            justification: "scenario expectation".into(),
            reason: Some(isx_core::read_reason::reason(
                s.purpose.unwrap_or(isx_core::wire::ReadPurpose::SelfMonitoring),
                s.case.as_deref().unwrap_or(crate::topology::SCENARIO_CASE),
            )),
            ..Default::default()
        };
        if let Some(a) = &s.alert {
            let Some(id) = self.alert_id(a) else { return };
            filter.alert_id = id;
        }
        if let Some(r) = &s.request {
            let Some(id) = self.request_id(r) else { return };
            filter.request_id = id;
        }
        let mut what = format!("audit: {op}");
        let scope = [
            ("node", s.node.as_ref().map(NodeId::to_string)),
            ("officer", s.officer.clone()),
            ("alert", s.alert.clone()),
            ("request", s.request.clone()),
            ("outcome", s.outcome.map(|o| o.name().to_owned())),
        ];
        for (k, v) in scope {
            if let Some(v) = v {
                what.push_str(&format!(" {k}={v}"));
            }
        }
        let what = match s.count {
            Count::Exactly(c) => format!("{what}: {c} record(s)"),
            Count::AtLeast(c) => format!("{what}: at least {c}"),
        };
        // The log has no notification: ask again every AUDIT_POLL until the
        // count is reached (an exact count: reached and still the same
        // AUDIT_STABLE_READINGS readings in a row), or the limit passes.
        // Records are never taken away while a scenario runs, so a count
        // already past an exact one fails at once.
        let deadline = Instant::now() + self.options.limit;
        let mut same = 0;
        let n = loop {
            let records = match self.topo.audit_records(filter.clone()).await {
                Ok(r) => r,
                Err(e) => {
                    self.check(what, Verdict::Fail(e.to_string()));
                    return;
                }
            };
            let n = records.iter().filter(|r| s.outcome.is_none_or(|o| r.outcome() == o.wire())).count() as u64;
            let settled = match s.count {
                Count::AtLeast(c) => n >= c,
                Count::Exactly(c) if n > c => true,
                Count::Exactly(c) if n == c => {
                    same += 1;
                    same >= AUDIT_STABLE_READINGS
                }
                Count::Exactly(_) => {
                    same = 0;
                    false
                }
            };
            if settled || Instant::now() >= deadline {
                break n;
            }
            tokio::time::sleep(AUDIT_POLL).await;
        };
        let (ok, wanted) = match s.count {
            Count::Exactly(c) => (n == c, c),
            Count::AtLeast(c) => (n >= c, c),
        };
        let limit = duration_text(self.options.limit);
        self.expect(what, ok, || {
            if n < wanted { format!("found {n} after waiting {limit}") } else { format!("found {n}") }
        });
    }
}

/// An error as its message, or `it failed` if none was given.
fn error_text(e: Option<TopologyError>) -> String {
    e.map(|e| e.to_string()).unwrap_or_else(|| "it failed".into())
}

/// What a publish or forward expects of its receipt.
struct Expected<'a> {
    receipt: &'a std::collections::BTreeMap<NodeId, Level>,
    policies: &'a std::collections::BTreeMap<NodeId, Vec<String>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(verdicts: &[Verdict]) -> Report {
        Report {
            path: "s.toml".into(),
            name: "s".into(),
            checks: verdicts
                .iter()
                .enumerate()
                .map(|(i, v)| Check { step: i + 1, line: i + 3, what: format!("check {i}"), verdict: v.clone() })
                .collect(),
            elapsed: Duration::ZERO,
            policies: BTreeSet::new(),
            alerts: vec![],
        }
    }

    #[test]
    fn a_scenario_whose_every_check_was_skipped_is_skipped_not_passed() {
        let skip = |why: &str| Verdict::Skipped(why.into());
        let fail = Verdict::Fail("got redacted".into());
        assert_eq!(report(&[skip("elsewhere")]).outcome(), Outcome::Skipped("elsewhere".into()));
        assert_eq!(report(&[skip("a"), skip("a")]).outcome(), Outcome::Skipped("a".into()));
        assert_eq!(report(&[skip("a"), skip("b")]).outcome(), Outcome::Skipped("a; b".into()));
        assert_eq!(report(&[]).outcome(), Outcome::Skipped("it checks nothing".into()));
        assert_eq!(report(&[skip("a"), Verdict::Pass]).outcome(), Outcome::Pass);
        assert_eq!(report(&[Verdict::Pass, fail.clone(), skip("a")]).outcome(), Outcome::Fail(1));
        let r = report(&[Verdict::Pass, fail, skip("a")]);
        assert_eq!((r.failed(), r.skipped()), (1, 1));
    }

    #[test]
    fn values_are_written_as_in_a_scenario_file() {
        assert_eq!(quoted("origin-is-caller"), "\"origin-is-caller\"");
        assert_eq!(list(&["a".into(), "b c".into()]), "[\"a\", \"b c\"]");
        assert_eq!(list(&[]), "[]");
        assert_eq!(duration_text(Duration::from_secs(10)), "10s");
    }

    #[test]
    fn paths_find_values() {
        let v: serde_json::Value = serde_json::json!({
            "subjects": [{"family_name": "A", "documents": [{"number": ""}, {"number": "X"}]}, {"family_name": ""}],
            "narrative": ""
        });
        assert_eq!(values_at(&v, "subjects[0].family_name"), vec![&serde_json::json!("A")]);
        assert_eq!(values_at(&v, "subjects[*].family_name").len(), 2);
        assert_eq!(values_at(&v, "subjects[*].documents[*].number").into_iter().filter(|v| has_value(v)).count(), 1);
        assert!(values_at(&v, "subjects[5].family_name").is_empty());
        assert!(!values_at(&v, "narrative").into_iter().any(has_value));
        assert!(values_at(&v, "objects[0].identifier").is_empty());
    }
}

// ---- The lifecycle steps (amend, withdraw, restrict, lift) and their expectations ----
// The lifecycle steps of a scenario: the origin amends, withdraws,
// restricts or lifts an alert; and their expectations: what a holder's copy
// is, that every copy confirmed the last change, and a node's open hits.
//
// Every wait is bounded by the run's limit (`--timeout`). A holder's copy
// is read from its agency (which wakes waiters on every change in process);
// the alert's status and the open hits are asked of the gateway again every
// [`AUDIT_POLL`](super::AUDIT_POLL), as it has no notification for them.

/// Which change a `withdraw`, `restrict` or `lift` step asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Change {
    Withdraw,
    Restrict,
    Lift,
}

impl Change {
    fn verb(self) -> &'static str {
        match self {
            Self::Withdraw => "withdraws",
            Self::Restrict => "restricts",
            Self::Lift => "lifts the restriction of",
        }
    }
}

/// What an `expect_copy` step wants, in words: `version 2, restricted, full`.
pub(super) fn copy_wanted(s: &ExpectCopyStep) -> String {
    let mut parts = Vec::new();
    if s.deleted == Some(true) {
        parts.push("deleted".to_owned());
    }
    if let Some(v) = s.version {
        parts.push(format!("version {v}"));
    }
    if s.deleted == Some(false) {
        parts.push("held".to_owned());
    }
    match s.restricted {
        Some(true) => parts.push("restricted".to_owned()),
        Some(false) => parts.push("not restricted".to_owned()),
        None => {}
    }
    if let Some(l) = s.level {
        parts.push(l.name().to_owned());
    }
    parts.join(", ")
}

/// True if `r` is in every state `s` names.
fn copy_matches(s: &ExpectCopyStep, r: &Received) -> bool {
    s.version.is_none_or(|v| r.version == v)
        && s.deleted.is_none_or(|d| r.is_deleted() == d)
        && s.restricted.is_none_or(|x| r.restricted == x)
        && s.level.is_none_or(|l| !r.is_deleted() && r.level() == l.wire())
}

/// A holder's copy in words, as `copy_wanted` writes what is wanted.
fn copy_held(r: &Received) -> String {
    if r.is_deleted() {
        return format!("it deleted its copy (version {})", r.version);
    }
    let restricted = if r.restricted { "restricted" } else { "not restricted" };
    format!("it holds version {}, {restricted}, {}", r.version, level_name(r.level()))
}

/// A copy state as scenarios write it: `held`, `restricted`, `deleted`.
fn copy_state_name(state: CopyState) -> String {
    state.as_str_name().trim_start_matches("COPY_STATE_").to_ascii_lowercase()
}

/// What a copy was asked and what its holder confirmed, in words.
fn copy_status(c: &CopyStatus, names: &dyn Fn(&str) -> String) -> String {
    let of = names(&c.copy_of);
    let confirmed = match c.confirmed() {
        CopyState::Unspecified => "confirmed nothing".to_owned(),
        state => format!("confirmed {} at version {}", copy_state_name(state), c.confirmed_version),
    };
    format!(
        "{} ({of}): asked {} at version {}, {confirmed}{}",
        c.node,
        copy_state_name(c.expected()),
        c.version,
        if c.overdue { ", overdue" } else { "" }
    )
}

impl Runner<'_> {
    /// The scenario's name of an alert id (`the alert <id>` if it is none of its own).
    fn alert_name(&self, id: &str) -> String {
        self.alerts.iter().find(|(_, a)| a.alert_id == id).map(|(n, _)| n.clone()).unwrap_or_else(|| id.to_owned())
    }

    /// The new version an `amend` step sends: the alert's current version, or
    /// its `file` or `inline` table with the alert's id, origin and
    /// forward; with `patch` merged over it.
    fn amended(&self, step: &AmendStep, current: &Alert) -> Result<Alert, String> {
        let mut value = match &step.source {
            None => to_json_value(current),
            Some(AlertSource::File(file)) => {
                let path = self.base.join(file);
                let text = self.source.read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
                let mut v: serde_json::Value =
                    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
                keep_identity(&mut v, current);
                v
            }
            Some(AlertSource::Inline(inline)) => {
                let mut v = serde_json::to_value(inline).map_err(|e| format!("inline: {e}"))?;
                keep_identity(&mut v, current);
                v
            }
        };
        if let Some(patch) = &step.patch {
            isx_policy::table::merge(&mut value, &serde_json::to_value(patch).map_err(|e| format!("patch: {e}"))?);
        }
        from_json::<Alert>(&value.to_string(), "the amended alert").map_err(|e| e.to_string())
    }

    pub(super) async fn amend(&mut self, s: &WithCall<AmendStep>) {
        let (actor, step) = (&s.call.actor, &s.step);
        let name = &step.alert;
        let Some(current) = self.alerts.get(name).cloned() else {
            self.check(format!("alert {name:?} is known"), Verdict::Fail("no earlier step published it".into()));
            return;
        };
        let alert = match self.amended(step, &current) {
            Ok(a) => a,
            Err(e) => {
                self.check("build the new version", Verdict::Fail(e));
                return;
            }
        };
        let replaces = step.replaces_version.unwrap_or_else(|| self.versions.get(name).copied().unwrap_or(1));
        let Some(client) = self.client(&s.call).await else { return };
        let result = client.amend(alert.clone(), replaces, &step.reason).await;
        if !self.call(&s.call, &format!("amend {name} (version {replaces}) as {actor}"), &result) {
            return;
        }
        let Ok(resp) = result else { return };
        let receipt = resp.receipt.unwrap_or_default();
        if resp.duplicate {
            self.detail(format!("{name}: this amendment was already made; its receipt came back"));
        }
        self.detail(format!(
            "{name} is now version {} (replaces digest {})",
            receipt.version,
            short(&receipt.replaces_digest)
        ));
        for r in &receipt.recipients {
            self.detail(format!("{:<10} {}", r.node, outcome_name(r.outcome())));
        }
        let no_policies = std::collections::BTreeMap::new();
        self.check_receipt(&receipt, &Expected { receipt: &step.receipt, policies: &no_policies });
        self.check_outcomes(&receipt, step);
        let version = receipt.version.max(replaces + 1);
        self.versions.insert(name.clone(), version);
        self.alerts.insert(name.clone(), Alert { version, ..alert });
        self.receipts.insert(name.clone(), receipt);
    }

    fn check_outcomes(&mut self, receipt: &Receipt, step: &AmendStep) {
        for (node, want) in &step.outcomes {
            let got = receipt.recipients.iter().find(|r| r.node == node.as_str()).map(|r| r.outcome());
            let ok = got == Some(want.wire());
            let got = got.map(outcome_name).unwrap_or_else(|| "not on the receipt".into());
            self.expect(format!("receipt: {node} {}", want.name()), ok, || format!("got {got}"));
        }
    }

    pub(super) async fn change(&mut self, s: &WithCall<ChangeStep>, change: Change) {
        let (actor, name) = (&s.call.actor, &s.step.alert);
        let Some(id) = self.alert_id(name) else { return };
        let Some(client) = self.client(&s.call).await else { return };
        let reason = &s.step.reason;
        let result: Result<AlertStatus, tonic::Status> = match change {
            Change::Withdraw => client.withdraw(&id, reason).await,
            Change::Restrict => client.restrict(&id, reason).await,
            Change::Lift => client.lift_restriction(&id, reason).await,
        };
        if !self.call(&s.call, &format!("{actor} {} {name}", change.verb()), &result) {
            return;
        }
        let Ok(status) = result else { return };
        let names = |id: &str| self.alert_name(id);
        let copies: Vec<String> = status.copies.iter().map(|c| format!("{} ({})", c.node, names(&c.copy_of))).collect();
        self.detail(format!(
            "{name} is {} at version {}; copies to change: {}",
            status.state().as_str_name().trim_start_matches("ALERT_STATE_").to_ascii_lowercase(),
            status.version,
            if copies.is_empty() { "none".to_owned() } else { copies.join(", ") }
        ));
    }

    pub(super) async fn expect_copy(&mut self, s: &ExpectCopyStep) {
        let (node, name) = (&s.node, &s.alert);
        let Some(id) = self.alert_id(name) else { return };
        let what = format!("{node}'s copy of {name}: {}", copy_wanted(s));
        let agency = self.topo.agency(node.as_str());
        let verdict = match agency.wait_until(&id, |r| copy_matches(s, r), self.options.limit).await {
            Ok(Some(_)) => Verdict::Pass,
            Ok(None) => Verdict::Fail(match agency.get(&id).await {
                Ok(Some(r)) => format!("{} after waiting {}", copy_held(&r), duration_text(self.options.limit)),
                Ok(None) => "its agency never held it".into(),
                Err(e) => e.to_string(),
            }),
            Err(e) => Verdict::Fail(e.to_string()),
        };
        self.check(what, verdict);
    }

    pub(super) async fn expect_confirmed(&mut self, s: &ExpectConfirmedStep) {
        let name = &s.alert;
        let Some(alert) = self.alerts.get(name).cloned() else {
            self.check(format!("alert {name:?} is known"), Verdict::Fail("no earlier step published it".into()));
            return;
        };
        let mut what = format!("every copy of {name} confirmed its last change");
        if let Some(v) = s.version {
            what.push_str(&format!(" (version {v})"));
        }
        if let Some(h) = &s.holders {
            let holders: Vec<String> = h.iter().map(|n| n.to_string()).collect();
            what.push_str(&format!(", held by {}", list(&holders)));
        }
        let client = match self.topo.client(&alert.origin).await {
            Ok(c) => c,
            Err(e) => return self.check(what, Verdict::Fail(format!("connect as {}: {e}", alert.origin))),
        };
        let want_holders: Option<BTreeSet<String>> =
            s.holders.as_ref().map(|h| h.iter().map(|n| n.to_string()).collect());
        let deadline = Instant::now() + self.options.limit;
        // The gateway has no notification for confirmations: ask again
        // every AUDIT_POLL until every copy is settled or the limit passes.
        let (status, problem) = loop {
            let status = match client.alert_status(&alert.alert_id).await {
                Ok(st) => st,
                Err(e) => {
                    let why = format!("{}: {}", code_name(e.code()), e.message());
                    return self.check(what, Verdict::Fail(format!("the alert's status was refused: {why}")));
                }
            };
            let problem = self.unconfirmed(&status, s.version, want_holders.as_ref());
            if problem.is_none() || Instant::now() >= deadline {
                break (status, problem);
            }
            tokio::time::sleep(AUDIT_POLL).await;
        };
        match problem {
            None => {
                for c in &status.copies {
                    let line = copy_status(c, &|id| self.alert_name(id));
                    self.detail(line);
                }
                self.check(what, Verdict::Pass);
            }
            Some(why) => {
                let limit = duration_text(self.options.limit);
                self.check(what, Verdict::Fail(format!("after waiting {limit}: {why}")));
            }
        }
    }

    /// Why `status` is not yet what an `expect_confirmed` step wants, if it is not.
    fn unconfirmed(
        &self,
        status: &AlertStatus,
        version: Option<u32>,
        holders: Option<&BTreeSet<String>>,
    ) -> Option<String> {
        if let Some(v) = version
            && status.version != v
        {
            return Some(format!("the alert is at version {}", status.version));
        }
        if let Some(want) = holders {
            let got: BTreeSet<String> = status.copies.iter().map(|c| c.node.clone()).collect();
            if got != *want {
                let got: Vec<String> = got.into_iter().collect();
                return Some(format!("its copies are held by {}", list(&got)));
            }
        }
        let open: Vec<String> =
            status.copies.iter().filter(|c| !c.settled).map(|c| copy_status(c, &|id| self.alert_name(id))).collect();
        (!open.is_empty()).then(|| format!("not confirmed: {}", open.join("; ")))
    }

    pub(super) async fn expect_open_hits(&mut self, s: &ExpectOpenHitsStep) {
        let node = &s.node;
        let mut want = s.hits.clone();
        want.sort();
        let mut what = format!("{node}'s open hits are exactly {}", list(&want));
        if let Some(o) = &s.officer {
            what.push_str(&format!(", each shown to {}", quoted(o)));
        }
        let client = match self.topo.client(node.as_str()).await {
            Ok(c) => c,
            Err(e) => return self.check(what, Verdict::Fail(format!("connect as {node}: {e}"))),
        };
        let ours = |hits: &[OpenHit]| -> Vec<(String, String)> {
            let mut got: Vec<(String, String)> = hits
                .iter()
                .filter_map(|h| {
                    self.alerts
                        .iter()
                        .find(|(_, a)| a.alert_id == h.alert_id)
                        .map(|(n, _)| (n.clone(), h.officer.clone()))
                })
                .collect();
            got.sort();
            got
        };
        let matches = |got: &[(String, String)]| {
            let names: Vec<&String> = got.iter().map(|(n, _)| n).collect();
            names == want.iter().collect::<Vec<_>>()
                && s.officer.as_ref().is_none_or(|o| got.iter().all(|(_, g)| g == o))
        };
        let deadline = Instant::now() + self.options.limit;
        // Bounded like every wait; the gateway has no notification for hits.
        let got = loop {
            let hits = match client.open_hits().await {
                Ok(h) => h,
                Err(e) => {
                    let why = format!("{}: {}", code_name(e.code()), e.message());
                    return self.check(what, Verdict::Fail(format!("the open hits were refused: {why}")));
                }
            };
            let got = ours(&hits);
            if matches(&got) || Instant::now() >= deadline {
                break got;
            }
            tokio::time::sleep(AUDIT_POLL).await;
        };
        if matches(&got) {
            for (name, officer) in &got {
                self.detail(format!("open hit on {name}, shown to {officer}"));
            }
            self.check(what, Verdict::Pass);
        } else {
            let shown: Vec<String> = got.iter().map(|(n, o)| format!("{n} (shown to {})", quoted(o))).collect();
            let limit = duration_text(self.options.limit);
            self.check(
                what,
                Verdict::Fail(if shown.is_empty() {
                    format!("it had no open hit on the scenario's alerts after waiting {limit}")
                } else {
                    format!("after waiting {limit} it had {}", shown.join(", "))
                }),
            );
        }
    }
}

/// Gives a new version read from a file or table the identity of the alert
/// it amends: its id, origin and the alert it was forwarded from.
fn keep_identity(value: &mut serde_json::Value, current: &Alert) {
    if let Some(map) = value.as_object_mut() {
        map.insert("alert_id".into(), current.alert_id.clone().into());
        map.insert("origin".into(), current.origin.clone().into());
        if !current.forwarded_from.is_empty() {
            map.insert("forwarded_from".into(), current.forwarded_from.clone().into());
        }
    }
}

/// The first 12 hex digits of a digest, or `none`.
fn short(digest: &str) -> &str {
    if digest.is_empty() { "none" } else { digest.get(..12).unwrap_or(digest) }
}

#[cfg(test)]
mod lifecycle_tests {
    use isx_core::wire::{Delivery, DisclosureLevel};

    use super::*;
    use crate::scenario::step::Level;

    fn step(
        version: Option<u32>,
        deleted: Option<bool>,
        restricted: Option<bool>,
        level: Option<Level>,
    ) -> ExpectCopyStep {
        ExpectCopyStep {
            node: isx_core::NodeId::new("fr-police").unwrap(),
            alert: "a".into(),
            version,
            deleted,
            restricted,
            level,
        }
    }

    fn held(version: u32, restricted: bool) -> Received {
        Received {
            delivery: Some(Delivery { level: DisclosureLevel::Full as i32, ..Default::default() }),
            version,
            restricted,
            ..Default::default()
        }
    }

    #[test]
    fn a_copy_matches_only_every_state_named() {
        let deleted = Received { version: 2, deleted_ms: 1, ..Default::default() };
        let cases = [
            (step(Some(2), None, None, None), held(2, false), true),
            (step(Some(3), None, None, None), held(2, false), false),
            (step(None, Some(true), None, None), deleted.clone(), true),
            (step(None, Some(true), None, None), held(2, false), false),
            (step(None, Some(false), None, None), deleted.clone(), false),
            (step(None, None, Some(true), None), held(1, true), true),
            (step(None, None, Some(false), None), held(1, true), false),
            (step(Some(1), None, Some(true), Some(Level::Full)), held(1, true), true),
            (step(None, None, None, Some(Level::Redacted)), held(1, false), false),
            (step(None, None, None, Some(Level::Full)), deleted, false),
        ];
        for (i, (s, r, want)) in cases.iter().enumerate() {
            assert_eq!(copy_matches(s, r), *want, "case {i}: {} against {}", copy_wanted(s), copy_held(r));
        }
    }

    #[test]
    fn copies_read_in_words() {
        assert_eq!(copy_wanted(&step(Some(2), None, Some(true), Some(Level::Full))), "version 2, restricted, full");
        assert_eq!(copy_wanted(&step(None, Some(true), None, None)), "deleted");
        assert_eq!(copy_held(&held(1, false)), "it holds version 1, not restricted, full");
        assert_eq!(
            copy_held(&Received { version: 2, deleted_ms: 5, ..Default::default() }),
            "it deleted its copy (version 2)"
        );
        let c = CopyStatus {
            node: "fr-police".into(),
            copy_of: "X".into(),
            version: 2,
            expected: CopyState::Deleted as i32,
            confirmed_version: 1,
            confirmed: CopyState::Held as i32,
            ..Default::default()
        };
        assert_eq!(
            copy_status(&c, &|id| format!("alert {id}")),
            "fr-police (alert X): asked deleted at version 2, confirmed held at version 1"
        );
        assert_eq!(short(""), "none");
        assert_eq!(short("0123456789abcdef"), "0123456789ab");
    }
}
