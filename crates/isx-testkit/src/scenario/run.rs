//! Running a scenario against a topology, one check per expectation.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::time::{Duration, Instant};

use isx_core::display;
use isx_core::json::{from_json, to_json_value};
use isx_core::wire::lookup_identifier::Kind;
use isx_core::wire::{
    AccessState, Alert, DisclosureLevel, DocumentNumber, LookupIdentifier, Operation, Outcome, PersonName, Receipt,
    SearchRequest,
};
use isx_node::Client;
use tonic_types::StatusExt;

use super::{Action, Scenario, Source, Step, code_name};
use crate::topology::Topology;

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

impl Report {
    /// How many checks failed.
    pub fn failed(&self) -> usize {
        self.checks.iter().filter(|c| !c.ok()).count()
    }
}

/// How to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// The bound on every wait for a delivery or an access outcome.
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
    hits: HashMap<(String, String), String>,
    requests: HashMap<String, String>,
    checks: Vec<Check>,
    policies: BTreeSet<String>,
    step: (usize, usize),
    order: Vec<String>,
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
        hits: HashMap::new(),
        requests: HashMap::new(),
        checks: Vec::new(),
        policies: BTreeSet::new(),
        step: (0, 0),
        order: Vec::new(),
    };
    let needs_gateway: Vec<String> = scenario
        .steps
        .iter()
        .filter(|s| matches!(s.action, Action::RestartGateway | Action::AdvanceClock))
        .map(|s| format!("step {} (line {})", s.number, s.line))
        .collect();
    if runner.topo.is_attached() && !needs_gateway.is_empty() {
        runner.check(
            "the scenario runs against an attached gateway",
            Verdict::Skipped(format!(
                "it restarts the gateway or moves its clock ({}); run it in process",
                needs_gateway.join(", ")
            )),
        );
        return Report {
            path: scenario.path.clone(),
            name: scenario.name.clone(),
            checks: runner.checks,
            elapsed: start.elapsed(),
            policies: runner.policies,
            alerts: vec![],
        };
    }
    for step in &scenario.steps {
        runner.step = (step.number, step.line);
        if let Some(say) = &step.fields.say {
            (runner.emit)(Line::Say(say.trim().to_owned()));
        }
        (runner.emit)(Line::Step { number: step.number, line: step.line, summary: summary(step) });
        runner.run_step(step).await;
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

fn summary(step: &Step) -> String {
    let f = &step.fields;
    let or = |v: &Option<String>| v.clone().unwrap_or_default();
    match step.action {
        Action::Publish => {
            let what = f.name.clone().or_else(|| f.file.as_ref().map(|p| stem(p))).unwrap_or_default();
            format!("publish {what} as {}", or(&f.actor))
        }
        Action::Forward => format!("forward {} as {}", or(&f.of), or(&f.actor)),
        Action::ExpectDelivery => format!("{} receives {} {}", or(&f.node), or(&f.alert), or(&f.level)),
        Action::Lookup => format!("lookup as {}", or(&f.actor)),
        Action::RequestAccess => format!("{} requests access to {}", or(&f.actor), or(&f.alert)),
        Action::Decide => format!(
            "{} {} request {}",
            or(&f.actor),
            if f.grant == Some(true) { "grants" } else { "denies" },
            or(&f.request)
        ),
        Action::Decline => format!("{} declines to follow up {}", or(&f.actor), or(&f.alert)),
        Action::ExpectAccess => format!("{} sees request {} {}", or(&f.node), or(&f.request), or(&f.state)),
        Action::StopNode => format!("stop {}", or(&f.node)),
        Action::StartNode => format!("start {}", or(&f.node)),
        Action::RestartGateway => "restart the gateway".into(),
        Action::AdvanceClock => format!("advance the gateway clock by {}", or(&f.by)),
        Action::ExpectAudit => format!("audit log: {}", or(&f.operation)),
    }
}

fn stem(p: &Path) -> String {
    p.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default()
}

fn level_name(level: DisclosureLevel) -> &'static str {
    display::level(level)
}

fn state_name(state: AccessState) -> String {
    state.as_str_name().trim_start_matches("ACCESS_STATE_").to_ascii_lowercase()
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

    async fn client(&mut self, node: &str, officer: &Option<String>) -> Option<Client> {
        match self.topo.client(node).await {
            Ok(c) => match officer {
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
                self.check(format!("connect as {node}"), Verdict::Fail(e.to_string()));
                None
            }
        }
    }

    /// Checks a call's status against the step's `expect_code`, message and
    /// fields; returns true if the call succeeded.
    fn call<T>(&mut self, step: &Step, what: &str, result: &Result<T, tonic::Status>) -> bool {
        let f = &step.fields;
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
        self.expect(format!("{what}: {}", code_name(step.code)), code == step.code, || {
            if message.is_empty() { code_name(code) } else { format!("{}: {message}", code_name(code)) }
        });
        if let Some(want) = &f.expect_message {
            self.expect(format!("{what}: message contains {want:?}"), message.contains(want.as_str()), || {
                format!("message was {message:?}")
            });
        }
        if let Some(want) = &f.expect_fields {
            self.expect(format!("{what}: bad fields {want:?}"), *want == fields, || format!("named {fields:?}"));
        }
        code == tonic::Code::Ok
    }

    fn read_alert(&mut self, step: &Step) -> Result<Alert, String> {
        let f = &step.fields;
        let mut value: serde_json::Value = match (&f.file, &f.inline) {
            (Some(file), _) => {
                let path = self.base.join(file);
                let text = self.source.read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
                serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?
            }
            (None, Some(inline)) => serde_json::to_value(inline).map_err(|e| format!("inline: {e}"))?,
            (None, None) => return Err("no alert".into()),
        };
        if let Some(patch) = &f.patch {
            isx_policy::table::merge(&mut value, &serde_json::to_value(patch).map_err(|e| format!("patch: {e}"))?);
        }
        from_json::<Alert>(&value.to_string(), "the step's alert").map_err(|e| e.to_string())
    }

    fn alert_id(&mut self, name: &str) -> Option<String> {
        let id = self.alerts.get(name).map(|a| a.alert_id.clone());
        if id.is_none() {
            self.check(format!("alert {name:?} is known"), Verdict::Fail("no earlier step published it".into()));
        }
        id
    }

    async fn run_step(&mut self, step: &Step) {
        let f = step.fields.clone();
        let actor = f.actor.clone().unwrap_or_default();
        match step.action {
            Action::Publish | Action::Forward => self.publish(step).await,
            Action::ExpectDelivery => self.expect_delivery(step).await,
            Action::Lookup => self.lookup(step).await,
            Action::RequestAccess => {
                let alert = f.alert.clone().unwrap_or_default();
                let Some(hit) = self.hit(&actor, &alert) else { return };
                let Some(client) = self.client(&actor, &f.officer).await else { return };
                let result = client
                    .request_access(&hit, f.purpose.as_deref().unwrap_or(""), f.justification.as_deref().unwrap_or(""))
                    .await;
                if self.call(step, &format!("{actor} requests {alert}"), &result)
                    && let Ok(request) = result
                {
                    let name = f.name.clone().unwrap_or_else(|| format!("{actor}/{alert}"));
                    self.detail(format!(
                        "{} asks {} for {alert}: request {} (deadline {})",
                        actor,
                        request.holder,
                        request.request_id,
                        request.deadline.as_ref().map(isx_core::timestamp::rfc3339).unwrap_or_default()
                    ));
                    self.requests.insert(name, request.request_id);
                }
            }
            Action::Decide => {
                let name = f.request.clone().unwrap_or_default();
                let Some(id) = self.request_id(&name) else { return };
                let Some(client) = self.client(&actor, &f.officer).await else { return };
                let grant = f.grant == Some(true);
                let result = client.decide_access(&id, grant, f.reason.as_deref().unwrap_or("")).await;
                let verb = if grant { "grants" } else { "denies" };
                if self.call(step, &format!("{actor} {verb} {name}"), &result)
                    && let Ok(decided) = result
                {
                    self.policies.extend(decided.policy_ids.iter().cloned());
                    if grant {
                        self.detail(format!(
                            "granted: {} will receive it {} ({})",
                            decided.requester,
                            level_name(decided.level()),
                            decided.policy_ids.join(", ")
                        ));
                    }
                    if let Some(want) = &f.expect_level {
                        let got = level_name(decided.level());
                        self.expect(format!("{} gets {want} after the grant", decided.requester), got == want, || {
                            format!("got {got} ({})", decided.policy_ids.join(", "))
                        });
                    }
                }
            }
            Action::Decline => {
                let alert = f.alert.clone().unwrap_or_default();
                let Some(hit) = self.hit(&actor, &alert) else { return };
                let Some(client) = self.client(&actor, &f.officer).await else { return };
                let result = client.decline_follow_up(&hit, f.reason.as_deref().unwrap_or("")).await;
                self.call(step, &format!("{actor} declines {alert}"), &result);
            }
            Action::ExpectAccess => {
                let node = f.node.clone().unwrap_or_default();
                let name = f.request.clone().unwrap_or_default();
                let want = f.state.clone().unwrap_or_default();
                let Some(id) = self.request_id(&name) else { return };
                let got = self
                    .topo
                    .inbox(&node)
                    .wait_for_access(&id, |r| state_name(r.state()) == want, self.options.limit)
                    .await;
                let (ok, detail) = match got {
                    Ok(Some(r)) => {
                        let st = state_name(r.state());
                        (st == want, format!("{st}: {}", r.reason))
                    }
                    Ok(None) => (false, format!("{node} never heard of it within {:?}", self.options.limit)),
                    Err(e) => (false, e.to_string()),
                };
                if ok {
                    self.detail(format!("{node}: request {name} {detail}"));
                }
                self.expect(format!("{node} sees request {name} {want}"), ok, || detail);
            }
            Action::StopNode | Action::StartNode => {
                let node = f.node.clone().unwrap_or_default();
                let result = if step.action == Action::StopNode {
                    self.topo.stop_node(&node).await
                } else {
                    self.topo.start_node(&node).await
                };
                let verb = if step.action == Action::StopNode { "stopped" } else { "started" };
                self.expect(format!("{node} {verb}"), result.is_ok(), || format!("{:?}", result.err()));
            }
            Action::RestartGateway => {
                if self.topo.is_attached() {
                    self.check("gateway restarted", Verdict::Skipped("the gateway runs elsewhere".into()));
                } else {
                    let result = self.topo.restart_gateway().await;
                    self.expect("gateway restarted", result.is_ok(), || format!("{:?}", result.err()));
                }
            }
            Action::AdvanceClock => {
                if self.topo.is_attached() {
                    self.check("clock advanced", Verdict::Skipped("the gateway runs elsewhere".into()));
                } else {
                    self.topo.advance_clock(step.duration.unwrap_or_default());
                }
            }
            Action::ExpectAudit => self.expect_audit(step).await,
        }
    }

    fn hit(&mut self, node: &str, alert: &str) -> Option<String> {
        let hit = self.hits.get(&(node.to_owned(), alert.to_owned())).cloned();
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

    async fn publish(&mut self, step: &Step) {
        let f = step.fields.clone();
        let actor = f.actor.clone().unwrap_or_default();
        let (mut alert, name) = if step.action == Action::Forward {
            let of = f.of.clone().unwrap_or_default();
            let Some(parent) = self.alerts.get(&of).cloned() else {
                self.check(format!("alert {of:?} is known"), Verdict::Fail("no earlier step published it".into()));
                return;
            };
            let mut value = to_json_value(&Alert {
                alert_id: crate::samples::new_alert_id(),
                origin: actor.clone(),
                forwarded_from: parent.alert_id.clone(),
                hops: 0,
                ..parent
            });
            if let Some(patch) = &f.patch
                && let Ok(p) = serde_json::to_value(patch)
            {
                isx_policy::table::merge(&mut value, &p);
            }
            match from_json::<Alert>(&value.to_string(), "the forwarded alert") {
                Ok(a) => (a, f.name.clone().unwrap_or_else(|| format!("{of}-forwarded"))),
                Err(e) => {
                    self.check("build the forwarded alert", Verdict::Fail(e.to_string()));
                    return;
                }
            }
        } else {
            match self.read_alert(step) {
                Ok(a) => {
                    let name = f.name.clone().unwrap_or_else(|| f.file.as_deref().map(stem).unwrap_or_default());
                    (a, name)
                }
                Err(e) => {
                    self.check("read the alert", Verdict::Fail(e));
                    return;
                }
            }
        };
        if let Some(earlier) = self.alerts.get(&name) {
            alert.alert_id = earlier.alert_id.clone(); // the same name again is a resend
        } else if step.action == Action::Publish && f.keep_id != Some(true) {
            alert.alert_id = crate::samples::new_alert_id();
        }
        let Some(client) = self.client(&actor, &f.officer).await else { return };
        let result = client.publish(alert.clone()).await;
        let verb = if step.action == Action::Forward { "forward" } else { "publish" };
        if !self.call(step, &format!("{verb} {name} as {actor}"), &result) {
            return;
        }
        let Ok(resp) = result else { return };
        let receipt = resp.receipt.unwrap_or_default();
        if resp.duplicate {
            self.detail(format!("{name}: a resend of an earlier publish; the original receipt came back"));
        }
        for r in &receipt.recipients {
            self.policies.extend(r.policy_ids.iter().cloned());
            let first = r.policy_ids.first().cloned().unwrap_or_default();
            let reason = self.topo.policy_reason(&first).unwrap_or_default();
            self.detail(format!("{:<10} {:<9} {first}: {reason}", r.node, level_name(r.level())));
        }
        for (node, want) in f.receipt.iter().flatten() {
            let got = receipt
                .recipients
                .iter()
                .find(|r| r.node == *node)
                .map(|r| level_name(r.level()))
                .unwrap_or("not a candidate");
            let ok = got == want || (want == "denied" && got == "not a candidate");
            self.expect(format!("receipt: {node} {want}"), ok, || format!("got {got}"));
        }
        for (node, want) in f.receipt_policies.iter().flatten() {
            let got: Vec<String> =
                receipt.recipients.iter().find(|r| r.node == *node).map(|r| r.policy_ids.clone()).unwrap_or_default();
            let missing: Vec<&String> = want.iter().filter(|p| !got.contains(p)).collect();
            self.expect(format!("receipt: {node} decided by {want:?}"), missing.is_empty(), || {
                format!("deciding policies were {got:?}")
            });
        }
        if !self.order.contains(&name) {
            self.order.push(name.clone());
        }
        self.alerts.insert(name.clone(), alert);
        self.receipts.insert(name, receipt);
    }

    async fn expect_delivery(&mut self, step: &Step) {
        let f = step.fields.clone();
        let node = f.node.clone().unwrap_or_default();
        let name = f.alert.clone().unwrap_or_default();
        let want = f.level.clone().unwrap_or_default();
        let Some(id) = self.alert_id(&name) else { return };
        let inbox = self.topo.inbox(&node);
        if want == "denied" {
            let in_receipt = self
                .receipts
                .get(&name)
                .and_then(|r| r.recipients.iter().find(|d| d.node == node))
                .map(|d| d.level())
                .filter(|l| *l != DisclosureLevel::Denied);
            let held = inbox.get(&id).ok().flatten();
            self.expect(format!("{node} receives nothing of {name}"), in_receipt.is_none() && held.is_none(), || {
                format!(
                    "receipt says {:?}; inbox holds {:?}",
                    in_receipt.map(level_name),
                    held.map(|r| level_name(r.level()))
                )
            });
            return;
        }
        let request = match &f.request {
            Some(r) => match self.request_id(r) {
                Some(id) => Some(id),
                None => return,
            },
            None => None,
        };
        let got = inbox.wait_until(&id, |r| level_name(r.level()) == want, self.options.limit).await;
        let record = match got {
            Ok(Some(r)) => r,
            Ok(None) => {
                let held = inbox.get(&id).ok().flatten().map(|r| level_name(r.level()).to_owned());
                self.check(
                    format!("{node} receives {name} {want}"),
                    Verdict::Fail(match held {
                        Some(l) => format!("it holds it {l}"),
                        None => format!("nothing arrived within {:?}", self.options.limit),
                    }),
                );
                return;
            }
            Err(e) => {
                self.check(format!("{node} receives {name} {want}"), Verdict::Fail(e.to_string()));
                return;
            }
        };
        self.check(format!("{node} receives {name} {want}"), Verdict::Pass);
        let delivery = record.delivery.unwrap_or_default();
        self.policies.extend(delivery.policy_ids.iter().cloned());
        let view = to_json_value(&delivery.alert.clone().unwrap_or_default());
        for path in f.present.iter().flatten() {
            let found = values_at(&view, path).into_iter().any(has_value);
            self.expect(format!("{node}'s copy of {name} has {path}"), found, || "it is absent".into());
        }
        for path in f.absent.iter().flatten() {
            let found: Vec<String> =
                values_at(&view, path).into_iter().filter(|v| has_value(v)).map(|v| v.to_string()).collect();
            self.expect(format!("{node}'s copy of {name} lacks {path}"), found.is_empty(), || {
                format!("it has {}", found.len())
            });
        }
        if let Some(want) = &f.policies {
            let missing: Vec<&String> = want.iter().filter(|p| !delivery.policy_ids.contains(p)).collect();
            self.expect(format!("{node}'s copy of {name} decided by {want:?}"), missing.is_empty(), || {
                format!("deciding policies were {:?}", delivery.policy_ids)
            });
        }
        if let Some(request) = request {
            self.expect(
                format!("{node}'s copy of {name} follows request {request}"),
                delivery.request_id == request,
                || format!("request_id was {:?}", delivery.request_id),
            );
        }
    }

    async fn lookup(&mut self, step: &Step) {
        let f = step.fields.clone();
        let actor = f.actor.clone().unwrap_or_default();
        let mut ids = Vec::new();
        for d in f.document.iter().flatten() {
            let (country, number) = d.split_once(':').unwrap_or(("", d));
            ids.push(Kind::Document(DocumentNumber { issuing_country: country.into(), number: number.into() }));
        }
        if let (Some(person), Some(dob)) = (&f.person, &f.dob) {
            let (family, given) = person.split_once(',').unwrap_or((person, ""));
            ids.push(Kind::Person(PersonName {
                family_name: family.trim().into(),
                given_names: given.trim().into(),
                date_of_birth: dob.clone(),
            }));
        }
        ids.extend(f.plate.iter().flatten().map(|p| Kind::Plate(p.clone())));
        ids.extend(f.firearm.iter().flatten().map(|p| Kind::FirearmSerial(p.clone())));
        let ids = ids.into_iter().map(|k| LookupIdentifier { kind: Some(k) }).collect();
        let Some(client) = self.client(&actor, &f.officer).await else { return };
        let result =
            client.lookup(ids, f.purpose.as_deref().unwrap_or(""), f.justification.as_deref().unwrap_or("")).await;
        if !self.call(step, &format!("lookup as {actor}"), &result) {
            return;
        }
        let Ok(resp) = result else { return };
        let mut names = Vec::new();
        let mut foreign = 0;
        for hit in &resp.hits {
            // Against a shared gateway, alerts from other runs may match too; only ours count.
            if !self.alerts.values().any(|a| a.alert_id == hit.alert_id) {
                foreign += 1;
                continue;
            }
            let name = self
                .alerts
                .iter()
                .find(|(_, a)| a.alert_id == hit.alert_id)
                .map(|(n, _)| n.clone())
                .unwrap_or_default();
            self.policies.extend(hit.policy_ids.iter().cloned());
            self.detail(format!(
                "hit: {name} held by {} ({}, matched on {})",
                hit.holder,
                display::category(hit.category()),
                hit.matched.join(", ")
            ));
            self.hits.insert((actor.clone(), name.clone()), hit.hit_id.clone());
            names.push(name);
        }
        if resp.hits.is_empty() {
            self.detail("no hit".into());
        }
        if foreign > 0 {
            self.detail(format!("{foreign} more hit(s) on alerts this scenario did not publish (ignored)"));
        }
        if let Some(want) = &f.hits {
            let mut got = names.clone();
            got.sort();
            let mut want = want.clone();
            want.sort();
            self.expect(format!("{actor}'s lookup shows exactly {want:?}"), got == want, || {
                format!("it showed {got:?}")
            });
        }
    }

    async fn expect_audit(&mut self, step: &Step) {
        let f = step.fields.clone();
        let op = f.operation.clone().unwrap_or_default();
        let operation = Operation::from_str_name(&format!("OPERATION_{}", op.to_ascii_uppercase())).unwrap_or_default();
        let mut filter = SearchRequest {
            operation: operation as i32,
            node: f.node.clone().unwrap_or_default(),
            justification: "scenario expectation".into(),
            ..Default::default()
        };
        if let Some(a) = &f.alert {
            let Some(id) = self.alert_id(a) else { return };
            filter.alert_id = id;
        }
        if let Some(r) = &f.request {
            let Some(id) = self.request_id(r) else { return };
            filter.request_id = id;
        }
        let records = match self.topo.audit_records(filter).await {
            Ok(r) => r,
            Err(e) => {
                self.check(format!("audit: {op}"), Verdict::Fail(e.to_string()));
                return;
            }
        };
        let outcome = match f.outcome.as_deref() {
            Some("ok") => Some(Outcome::Ok),
            Some("refused") => Some(Outcome::Refused),
            Some("error") => Some(Outcome::Error),
            _ => None,
        };
        let n = records.iter().filter(|r| outcome.is_none_or(|o| r.outcome() == o)).count() as u64;
        let mut what = format!("audit: {op}");
        for (k, v) in [("node", &f.node), ("alert", &f.alert), ("request", &f.request), ("outcome", &f.outcome)] {
            if let Some(v) = v {
                what.push_str(&format!(" {k}={v}"));
            }
        }
        match (f.count, f.at_least) {
            (Some(c), _) => self.expect(format!("{what}: {c} record(s)"), n == c, || format!("found {n}")),
            (_, Some(c)) => self.expect(format!("{what}: at least {c}"), n >= c, || format!("found {n}")),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
