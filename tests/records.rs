//! Whole-system tests that pin exactly what each audit record says.
//!
//! Every step of a test (a publish, a lookup, a refusal, a read of the log)
//! is followed by reading the log from where the previous step stopped
//! (`GetEntries`), and the records found must equal, field by field and in
//! number, the records the step should write: nothing missing, nothing extra,
//! no field empty that should carry a value. The expected values are computed
//! here, independently of the gateway where that can be done:
//!
//! - the officer is the `x-isx-officer` the client sent;
//! - the certificate fingerprint is SHA-256 (with `ring`, not the gateway's
//!   `sha2`) of the DER in the caller's `<node>.crt` in the PKI directory;
//! - the content digest is SHA-256 of the protobuf encoding of the alert sent
//!   (a collection) or of the view the recipient received (a disclosure);
//! - the subject pseudonyms are HMAC-SHA256 (with `ring`) under the key in
//!   `audit-hmac.key` of the normalised identifiers, written out literally;
//! - levels, deciding policy ids and withheld fields are literal in each
//!   table, and must also be what the receipt, the delivery and
//!   `isx_policy`'s explanation say;
//! - the policy-set version is the receipt's, and that of the policy
//!   directory loaded here.
//!
//! Records written off the request path are waited for: a disclosure record
//! is durable before its delivery leaves the gateway, so a test waits for the
//! delivery in the recipient's inbox (bounded) before it reads the log; a
//! refused handshake and an expiry are waited for by reading the log again
//! (bounded), each read being itself a checked record.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use isx_core::NodeInfo;
use isx_core::wire::DisclosureLevel::{Denied, Full, HitOnly, Redacted, Unspecified};
use isx_core::wire::lookup_identifier::Kind;
use isx_core::wire::{
    Action, Alert, AuditHit, AuditRecord, Category, DisclosureLevel, DocumentNumber, ExportRequest,
    GetCheckpointRequest, GetConsistencyProofRequest, GetEntriesRequest, GetInclusionProofRequest, LookupIdentifier,
    Operation, Outcome, ReadPurpose, ReadReason, Receipt, RecipientLevel, RecipientOutcome, SearchRequest, Tlp,
};
use isx_node::{Client, ClientOptions};
use isx_policy::{Disclosure, LookupQuestion, PolicyEngine};
use isx_testkit::{Topology, TopologySpec, samples};
use prost::Message;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use tonic::Code;

/// The bound on any wait; reached only when a test fails.
const LIMIT: Duration = Duration::from_secs(20);
/// How many times a test reads the log again for a record written off the request path.
const POLLS: usize = 400;
const PURPOSE: &str = "prevention and detection of terrorist offences";
const WHY: &str = "case DE-2026-4471: subject seen at the border crossing";

/// The normalised identifiers of `samples::foreign_fighter`, in the order the gateway lists them.
const FIGHTER: &[&str] = &["document:DE:C4J9X1R27", "name:BRANDT|LUKAS EMIL|1994-03-17", "plate:BKL4471"];
/// Those of `samples::migrant_smuggling`.
const SMUGGLING: &[&str] = &[
    "document:IT:CA48213KX",
    "name:RINALDI|MARCO|1981-11-02",
    "document:BA:B0931177",
    "name:HADZIC|EMIR|1988-06-21",
    "plate:FG512ZT",
];

// ---------------------------------------------------------------------------
// Independent oracles.

/// What a record must say, computed without the gateway.
struct Oracle {
    pki: PathBuf,
    hmac: ring::hmac::Key,
    version: String,
    policy: Disclosure,
    nodes: Vec<NodeInfo>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex")).collect()
}

fn sha256(bytes: &[u8]) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref())
}

fn officer(node: &str) -> String {
    format!("officer@{node}")
}

impl Oracle {
    fn new(topo: &Topology) -> Self {
        let pki = topo.pki_dir();
        let key = std::fs::read_to_string(pki.join("audit-hmac.key")).expect("the audit HMAC key");
        let hmac = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &unhex(key.trim()));
        let config = topo.gateway_config();
        let engine = PolicyEngine::load(&config.policy_dir).expect("the topology's policy loads");
        let version = engine.version().to_owned();
        let policy = Disclosure::new(Arc::new(engine), config.redaction.clone());
        Self { pki, hmac, version, policy, nodes: config.node_infos() }
    }

    /// SHA-256 of the DER certificate in `<pki>/<node>.crt`, hex.
    fn fingerprint(&self, node: &str) -> String {
        let der = CertificateDer::from_pem_file(self.pki.join(format!("{node}.crt"))).expect("the node's certificate");
        sha256(der.as_ref())
    }

    /// HMAC-SHA256 of each normalised identifier under the audit key, hex.
    fn pseudonyms(&self, normalised: &[&str]) -> Vec<String> {
        normalised.iter().map(|n| hex(ring::hmac::sign(&self.hmac, n.as_bytes()).as_ref())).collect()
    }

    /// SHA-256 of an alert's (or a view's) protobuf encoding, hex.
    fn digest(&self, alert: &Alert) -> String {
        let digest = sha256(&alert.encode_to_vec());
        assert_eq!(digest, isx_core::digest::content_digest_hex(alert), "the gateway's digest function agrees");
        digest
    }

    fn node(&self, id: &str) -> &NodeInfo {
        self.nodes.iter().find(|n| n.id.as_str() == id).expect("a registered node")
    }

    /// The policy's answer to `caller`'s lookup matching `alert`: shown, and the deciding ids.
    fn lookup(&self, alert: &Alert, caller: &str, purpose: &str, data_types: &[&str]) -> (bool, Vec<String>) {
        let question =
            LookupQuestion { purpose: purpose.into(), officer: officer(caller), data_types: strings(data_types) };
        self.policy.lookup(alert, Some(self.node(&alert.origin)), self.node(caller), &question)
    }

    /// A record about `node`'s request, as the client's certificate and officer say.
    fn by(&self, node: &str, operation: Operation, outcome: Outcome) -> AuditRecord {
        AuditRecord {
            version: 1,
            operation: operation as i32,
            node: node.to_owned(),
            officer: officer(node),
            cert_fingerprint: self.fingerprint(node),
            outcome: outcome as i32,
            ..Default::default()
        }
    }
}

/// The case of every read of the log these tests make.
const CASE: &str = "records test";

/// Why these tests read the log.
fn read_reason() -> ReadReason {
    isx_core::read_reason::reason(ReadPurpose::SelfMonitoring, CASE)
}

/// A record the gateway writes on its own (no caller).
fn by_gateway(operation: Operation, outcome: Outcome) -> AuditRecord {
    AuditRecord { version: 1, operation: operation as i32, outcome: outcome as i32, ..Default::default() }
}

// ---------------------------------------------------------------------------
// Reading the log step by step, and comparing.

/// Reads the log in order as the auditor, one step at a time.
struct Log {
    auditor: Client,
    /// Opens the records' sealed justifications (`audit-text.key`).
    text: isx_store::StoreKey,
    own: AuditRecord,
    next: u64,
    /// Every record read so far, the reads' own included.
    all: Vec<AuditRecord>,
}

impl Log {
    async fn new(topo: &Topology, oracle: &Oracle) -> Self {
        let auditor = topo.client("auditor").await.expect("the auditor connects");
        let text = isx_audit::keys::load_text_key(&topo.pki_dir()).expect("audit-text.key");
        let own = AuditRecord {
            purpose: "self_monitoring".into(),
            case_reference: CASE.into(),
            ..oracle.by("auditor", Operation::LogRead, Outcome::Ok)
        };
        Self { auditor, text, own, next: 0, all: vec![] }
    }

    /// Every record appended since the last read, in log order, with seq and
    /// time cleared (after checking them). This read's own record (a
    /// `GetEntries`, itself checked field by field) is taken out.
    async fn read(&mut self) -> Vec<AuditRecord> {
        let (start, end) = (self.next, self.next + 1000);
        let req = self.auditor.request(GetEntriesRequest { start, end, reason: Some(read_reason()) });
        let entries = isx_node::audit::audit(&self.auditor).get_entries(req).await.expect("GetEntries").into_inner();
        let mut records = Vec::new();
        for (i, e) in entries.entries.into_iter().enumerate() {
            assert_eq!(e.seq, start + i as u64, "entries come in order without gaps");
            let mut leaf = vec![0u8];
            leaf.extend_from_slice(&e.body);
            assert_eq!(hex(&e.leaf_hash), sha256(&leaf), "the leaf hash is SHA-256(0x00 || body)");
            let mut record = e.record.expect("a record");
            assert_eq!(AuditRecord::decode(e.body.as_slice()).expect("the body decodes"), record);
            assert_eq!(record.seq, e.seq, "a record names its own position");
            assert!(record.time.is_some(), "seq {}: every record has a time", e.seq);
            record.seq = 0;
            record.time = None;
            // Free text is never in the clear: it is sealed, and opens with the auditors' key.
            assert!(record.justification.is_empty(), "seq {}: a justification in the clear: {record:?}", e.seq);
            if !record.justification_sealed.is_empty() {
                record.justification = isx_audit::text::open(&self.text, &record).expect("opens with audit-text.key");
                record.justification_sealed.clear();
            }
            records.push(record);
        }
        self.next = start + records.len() as u64;
        self.all.extend(records.iter().cloned());
        let own = AuditRecord { detail: format!("GetEntries [{start}, {end})"), ..self.own.clone() };
        let mine: Vec<usize> = records.iter().enumerate().filter(|(_, r)| **r == own).map(|(i, _)| i).collect();
        assert_eq!(mine.len(), 1, "the read's own LOG_READ record, exactly once: {own:?} in {records:?}");
        records.remove(mine[0]);
        records
    }

    /// Reads until the records read so far satisfy `done` (bounded).
    async fn read_until(&mut self, done: impl Fn(&[AuditRecord]) -> bool) -> Vec<AuditRecord> {
        let mut all = Vec::new();
        for _ in 0..POLLS {
            all.extend(self.read().await);
            if done(&all) {
                return all;
            }
            tokio::time::sleep(LIMIT / POLLS as u32).await;
        }
        panic!("the expected record never arrived: {all:#?}");
    }
}

/// Every field of a record, named, for a readable difference.
fn fields(r: &AuditRecord) -> Vec<(&'static str, String)> {
    vec![
        ("version", r.version.to_string()),
        ("seq", r.seq.to_string()),
        ("time", format!("{:?}", r.time)),
        ("operation", format!("{:?}", r.operation())),
        ("node", r.node.clone()),
        ("officer", r.officer.clone()),
        ("cert_fingerprint", r.cert_fingerprint.clone()),
        ("purpose", r.purpose.clone()),
        ("legal_basis", r.legal_basis.clone()),
        ("justification", r.justification.clone()),
        ("alert_id", r.alert_id.clone()),
        ("content_digest", r.content_digest.clone()),
        ("recipients", format!("{:?}", r.recipients)),
        ("policy_ids", format!("{:?}", r.policy_ids)),
        ("policy_version", r.policy_version.clone()),
        ("withheld_fields", format!("{:?}", r.withheld_fields)),
        ("outcome", format!("{:?}", r.outcome())),
        ("detail", r.detail.clone()),
        ("subject_pseudonyms", format!("{:?}", r.subject_pseudonyms)),
        ("data_types", format!("{:?}", r.data_types)),
        ("request_id", r.request_id.clone()),
        ("hits", format!("{:?}", r.hits)),
        ("case_reference", r.case_reference.clone()),
        ("export_recipient", r.export_recipient.clone()),
        ("admin", format!("{:?}", r.admin)),
    ]
}

fn differences(want: &AuditRecord, got: &AuditRecord) -> Vec<String> {
    fields(want)
        .into_iter()
        .zip(fields(got))
        .filter(|(w, g)| w.1 != g.1)
        .map(|(w, g)| format!("{} is {:?}, expected {:?}", w.0, g.1, w.1))
        .collect()
}

/// Checks that a step wrote exactly the `want` records (in any order: the
/// disclosures of one publish are written as each recipient's stream runs).
fn check(step: &str, got: &[AuditRecord], want: &[AuditRecord]) {
    let mut left: Vec<&AuditRecord> = got.iter().collect();
    let mut missing = Vec::new();
    for w in want {
        match left.iter().position(|g| *g == w) {
            Some(i) => {
                left.remove(i);
            }
            None => missing.push(w),
        }
    }
    if missing.is_empty() && left.is_empty() {
        return;
    }
    let mut msg = format!("{step}: {} record(s) written, {} expected\n", got.len(), want.len());
    for w in &missing {
        let name = format!("{:?} by {:?} on {:?}", w.operation(), w.node, w.alert_id);
        match left.iter().min_by_key(|g| differences(w, g).len()) {
            Some(g) => {
                msg.push_str(&format!("  {name}: the nearest record differs: {}\n", differences(w, g).join("; ")))
            }
            None => msg.push_str(&format!("  {name}: not written: {w:?}\n")),
        }
    }
    for g in &left {
        msg.push_str(&format!("  not expected (or not as expected): {g:?}\n"));
    }
    panic!("{msg}");
}

// ---------------------------------------------------------------------------
// Publishing, as a table.

/// What one candidate recipient gets, as the receipt, its delivery, the
/// policy's explanation and the records must all say.
struct Gets {
    node: &'static str,
    level: DisclosureLevel,
    policies: &'static [&'static str],
    withheld: &'static [&'static str],
}

const fn gets(
    node: &'static str,
    level: DisclosureLevel,
    policies: &'static [&'static str],
    withheld: &'static [&'static str],
) -> Gets {
    Gets { node, level, policies, withheld }
}

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

/// A publish and what it must write.
struct Publish {
    name: &'static str,
    alert: Alert,
    /// The alert's normalised identifiers, in the gateway's order.
    identifiers: &'static [&'static str],
    /// Every candidate, in the receipt's order (node id order).
    recipients: Vec<Gets>,
    /// What the alert relays or overlaps, as the gateway finds it.
    related: isx_policy::Related,
    /// The received restricted alert it overlaps, and the labels it takes.
    raised: Option<(String, &'static str)>,
}

/// Publishes `case.alert` as its origin and checks the receipt, each
/// delivery, and every record the publish wrote: one collection, one denial
/// per refused recipient, one disclosure per delivery streamed.
async fn publish(topo: &Topology, oracle: &Oracle, log: &mut Log, case: Publish) -> Receipt {
    let Publish { name, alert, identifiers, recipients, related, raised } = case;
    let origin = alert.origin.clone();
    assert_eq!(isx_core::identifiers::of_alert(&alert), identifiers, "{name}: the normalised identifiers");
    let client = topo.client(&origin).await.unwrap();
    let receipt = client.publish(alert.clone()).await.expect("published").receipt.expect("a receipt");

    // The receipt, the table and the policy's own explanation agree.
    let digest = oracle.digest(&alert);
    assert_eq!(receipt.alert_id, alert.alert_id, "{name}");
    assert_eq!(receipt.content_digest, digest, "{name}: the receipt's digest");
    assert_eq!(receipt.policy_version, oracle.version, "{name}: the receipt's policy version");
    let said: Vec<(&str, DisclosureLevel, &[String], &[String])> = receipt
        .recipients
        .iter()
        .map(|r| (r.node.as_str(), r.level(), r.policy_ids.as_slice(), r.removed_fields.as_slice()))
        .collect();
    let table: Vec<(&str, DisclosureLevel, Vec<String>, Vec<String>)> =
        recipients.iter().map(|g| (g.node, g.level, strings(g.policies), strings(g.withheld))).collect();
    let table_ref: Vec<(&str, DisclosureLevel, &[String], &[String])> =
        table.iter().map(|(n, l, p, w)| (*n, *l, p.as_slice(), w.as_slice())).collect();
    assert_eq!(said, table_ref, "{name}: the receipt");
    let explained = oracle.policy.explain(&alert, &oracle.nodes, None, &officer(&origin), &related);
    for g in &recipients {
        let e = explained.iter().find(|e| e.recipient == g.node).expect("explained");
        assert_eq!(
            (e.level.as_str(), strings(g.policies), strings(g.withheld)),
            (isx_core::display::level(g.level), e.policies.clone(), e.removed_fields.clone()),
            "{name}: isx_policy explains {} so",
            g.node
        );
    }

    let pseudonyms = oracle.pseudonyms(identifiers);
    let about_alert = |r: AuditRecord| AuditRecord {
        purpose: alert.purpose.clone(),
        legal_basis: alert.legal_basis.clone(),
        alert_id: alert.alert_id.clone(),
        policy_version: oracle.version.clone(),
        subject_pseudonyms: pseudonyms.clone(),
        ..r
    };
    // A candidate of the publish (collection and denial records) carries
    // what became of it; a disclosure names its recipient and level only.
    let candidate = |g: &Gets| RecipientLevel {
        node: g.node.into(),
        level: g.level as i32,
        policy_ids: strings(g.policies),
        outcome: if g.level == DisclosureLevel::Denied { RecipientOutcome::Denied } else { RecipientOutcome::Queued }
            as i32,
    };
    let level = |g: &Gets| RecipientLevel { outcome: 0, ..candidate(g) };
    // A relay names what it relays; every relay here is the first hop.
    let relayed = u32::from(!alert.forwarded_from.is_empty());
    assert_eq!(receipt.hops, relayed, "{name}: the receipt's hop count");
    let relays = (relayed > 0).then(|| format!("relays {} (hop {relayed})", alert.forwarded_from));
    // A publish that overlaps a received restricted alert names it.
    let raised_by: Vec<String> = raised.iter().map(|(id, _)| id.clone()).collect();
    assert_eq!(receipt.raised_by, raised_by, "{name}: the receipt's raised_by");
    let overlap = raised.as_ref().map(|(id, labels)| {
        format!(
            "labels raised to {labels}: shares a person, document or object with {id} received under restricted labels; reaches only its holders"
        )
    });
    let detail = relays.into_iter().chain(overlap).collect::<Vec<_>>().join("; ");
    let mut want = vec![AuditRecord {
        content_digest: digest.clone(),
        recipients: recipients.iter().map(candidate).collect(),
        detail,
        related_alert_ids: raised_by,
        ..about_alert(oracle.by(&origin, Operation::Collection, Outcome::Ok))
    }];
    let mocks: Vec<String> =
        topo.spec().nodes.iter().filter(|n| n.run_mock).map(|n| n.id.to_string()).collect::<Vec<_>>();
    for g in &recipients {
        if g.level == DisclosureLevel::Denied {
            want.push(AuditRecord {
                content_digest: digest.clone(),
                recipients: vec![candidate(g)],
                policy_ids: strings(g.policies),
                detail: format!("recipient {} refused by policy", g.node),
                ..about_alert(oracle.by(&origin, Operation::Denial, Outcome::Refused))
            });
            continue;
        }
        if !mocks.iter().any(|m| m == g.node) {
            continue; // queued, not streamed: no disclosure yet
        }
        let received = topo.inbox(g.node).wait_for(&alert.alert_id, LIMIT).await.unwrap();
        let delivery = received.unwrap_or_else(|| panic!("{name}: {} receives", g.node)).delivery.unwrap();
        assert_eq!(delivery.level(), g.level, "{name}: {}'s delivery", g.node);
        assert_eq!(delivery.policy_ids, strings(g.policies), "{name}: {}'s delivery", g.node);
        assert_eq!(delivery.removed_fields, strings(g.withheld), "{name}: {}'s delivery", g.node);
        assert_eq!(delivery.policy_version, oracle.version, "{name}: {}'s delivery", g.node);
        assert!(delivery.request_id.is_empty());
        let view = delivery.alert.expect("a view");
        if g.level == DisclosureLevel::Full {
            let stored = Alert { hops: relayed, ..alert.clone() };
            assert_eq!(view, stored, "{name}: {} gets the alert as sent (with its hop count)", g.node);
        }
        want.push(AuditRecord {
            content_digest: oracle.digest(&view),
            recipients: vec![level(g)],
            policy_ids: strings(g.policies),
            withheld_fields: strings(g.withheld),
            ..about_alert(oracle.by(g.node, Operation::Disclosure, Outcome::Ok))
        });
    }
    check(name, &log.read().await, &want);
    receipt
}

async fn start(spec: TopologySpec) -> (Topology, Oracle, Log) {
    let topo = Topology::start(spec).await.expect("topology starts");
    let oracle = Oracle::new(&topo);
    let mut log = Log::new(&topo, &oracle).await;
    check("start", &log.read().await, &started(&topo, &oracle));
    (topo, oracle, log)
}

/// What a first start records, computed here: the start (policy version,
/// nodes, address), each node registered (kind, country, sorted roles,
/// name), and the redaction profile in force (each list sorted; its digest
/// SHA-256 of that line, 16 hex digits). No officer, no reason.
fn started(topo: &Topology, oracle: &Oracle) -> Vec<AuditRecord> {
    use isx_core::wire::{AdminAction, AdminChange};
    let admin = |action: AdminAction, old: &str, new: &str, changed: Vec<String>| {
        Some(AdminChange {
            action: action as i32,
            old_version: old.into(),
            new_version: new.into(),
            changed,
            via: "start".into(),
        })
    };
    let gateway = || by_gateway(Operation::Administration, Outcome::Ok);
    let mut want = vec![AuditRecord {
        policy_version: oracle.version.clone(),
        detail: format!(
            "gateway started: isx {}, policy version {}, {} nodes registered, listening on {}; first run on this data directory",
            env!("CARGO_PKG_VERSION"),
            oracle.version,
            oracle.nodes.len(),
            topo.gateway_addr()
        ),
        admin: admin(AdminAction::GatewayStart, "", &oracle.version, vec![]),
        ..gateway()
    }];
    for n in &oracle.nodes {
        let mut roles: Vec<&str> = n.roles.iter().map(|r| r.as_str()).collect();
        roles.sort();
        let describe =
            format!("kind={} country={} roles={} name={:?}", n.kind.as_str(), n.country, roles.join(","), n.name);
        want.push(AuditRecord {
            detail: format!("node {} registered: {describe}", n.id),
            admin: admin(AdminAction::NodeRegistered, "", &describe, vec![n.id.to_string()]),
            ..gateway()
        });
    }
    let profile = &topo.gateway_config().redaction;
    let sorted = |fields: &[isx_core::redaction::Field]| {
        let mut names: Vec<&str> = fields.iter().map(|f| f.name()).collect();
        names.sort();
        names
    };
    let (remove, year_only) = (sorted(&profile.remove), sorted(&profile.year_only));
    let line = format!("remove={} year_only={}", remove.join(","), year_only.join(","));
    let changed =
        remove.iter().map(|f| format!("+remove:{f}")).chain(year_only.iter().map(|f| format!("+year_only:{f}")));
    want.push(AuditRecord {
        detail: format!("redaction profile in force: {line}"),
        admin: admin(AdminAction::RedactionChanged, "", &sha256(line.as_bytes())[..16], changed.collect()),
        ..gateway()
    });
    want
}

/// What the default redaction profile removes from `samples::foreign_fighter`.
const FIGHTER_REDACTED: &[&str] = &[
    "subjects[0].family_name",
    "subjects[0].given_names",
    "subjects[0].date_of_birth",
    "subjects[0].documents[0].number",
    "subjects[0].special_categories[0]",
    "narrative",
];
/// What it removes from `samples::migrant_smuggling`.
const SMUGGLING_REDACTED: &[&str] = &[
    "subjects[0].family_name",
    "subjects[0].given_names",
    "subjects[0].date_of_birth",
    "subjects[0].documents[0].number",
    "subjects[1].family_name",
    "subjects[1].given_names",
    "subjects[1].date_of_birth",
    "subjects[1].documents[0].number",
    "narrative",
];
/// What a hit-only view lacks.
const HIT_ONLY: &[&str] =
    &["created_at", "expires_at", "labels", "purpose", "legal_basis", "subjects", "objects", "narrative"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_publish_records_its_collection_every_denial_and_every_disclosure() {
    let (topo, oracle, mut log) = start(TopologySpec::default_agencies()).await;

    let mut minor = samples::migrant_smuggling("fr-police", &[]);
    minor.subjects[0].minor = true;
    let minor_id = minor.alert_id.clone();
    let mut crisis =
        samples::base("de-police", &["europol", "fr-police"], Category::CrisesAndDisasters, Action::Inform);
    crisis.narrative = "dam breach upstream of the border crossing".into();
    // TLP:GREEN, so that a recipient may relay it to a new organisation
    // (TLP:AMBER needs the origin's permission: tests/trust.rs).
    crisis.labels.as_mut().unwrap().tlp = isx_core::wire::Tlp::Green as i32;
    // fr-police relays the crisis alert (it received it in full) to it-police,
    // and de-police relays the H2 smuggling alert, which nobody may receive onward.
    let relay = |of: &Alert, by: &str, to: &[&str]| Alert {
        alert_id: samples::new_alert_id(),
        origin: by.into(),
        forwarded_from: of.alert_id.clone(),
        addressees: strings(to),
        ..of.clone()
    };
    let smuggling = samples::migrant_smuggling("it-police", &["de-police", "europol", "frontex"]);
    let crisis_relay = relay(&crisis, "fr-police", &["it-police"]);
    let smuggling_relay = relay(&smuggling, "de-police", &["fr-police"]);
    let cases = vec![
        Publish {
            name: "a broadcast with special-category data",
            alert: samples::foreign_fighter("de-police", &[]),
            identifiers: FIGHTER,
            recipients: vec![
                gets("auditor", Denied, &["auditor-never-receives"], &[]),
                gets("europol", Redacted, &["special-categories-addressees-only", "europol-mandate"], FIGHTER_REDACTED),
                gets(
                    "fr-police",
                    Redacted,
                    &["special-categories-addressees-only", "national-police-full"],
                    FIGHTER_REDACTED,
                ),
                gets(
                    "frontex",
                    Redacted,
                    &["frontex-depersonalised", "special-categories-addressees-only", "frontex-border-crime"],
                    FIGHTER_REDACTED,
                ),
                gets(
                    "it-police",
                    Redacted,
                    &["special-categories-addressees-only", "national-police-full"],
                    FIGHTER_REDACTED,
                ),
            ],
            related: Default::default(),
            raised: None,
        },
        Publish {
            name: "addressed: full to the addressees, redacted to Frontex",
            alert: smuggling,
            identifiers: SMUGGLING,
            recipients: vec![
                gets("de-police", Full, &["named-addressee", "national-police-full"], &[]),
                gets("europol", Full, &["europol-mandate"], &[]),
                gets("frontex", Redacted, &["frontex-depersonalised", "frontex-border-crime"], SMUGGLING_REDACTED),
            ],
            related: Default::default(),
            raised: None,
        },
        Publish {
            name: "a minor suspect: hit only",
            alert: minor,
            identifiers: SMUGGLING,
            recipients: vec![
                gets("auditor", Denied, &["auditor-never-receives"], &[]),
                gets("de-police", HitOnly, &["minor-protection", "national-police-full"], HIT_ONLY),
                gets("europol", HitOnly, &["minor-protection", "europol-mandate"], HIT_ONLY),
                gets(
                    "frontex",
                    HitOnly,
                    &["frontex-depersonalised", "minor-protection", "frontex-border-crime"],
                    HIT_ONLY,
                ),
                gets("it-police", HitOnly, &["minor-protection", "national-police-full"], HIT_ONLY),
            ],
            related: Default::default(),
            raised: None,
        },
        Publish {
            name: "outside Europol's mandate",
            alert: crisis,
            identifiers: &[],
            recipients: vec![
                gets("europol", Denied, &["europol-outside-mandate"], &[]),
                gets("fr-police", Full, &["named-addressee", "national-police-full"], &[]),
            ],
            related: Default::default(),
            raised: None,
        },
        Publish {
            name: "a relay of what the relaying node received",
            alert: crisis_relay,
            identifiers: &[],
            recipients: vec![gets("it-police", Full, &["named-addressee", "national-police-full"], &[])],
            related: Default::default(),
            raised: None,
        },
        Publish {
            name: "a relay of an H2 alert",
            alert: smuggling_relay,
            identifiers: SMUGGLING,
            // It also shares identifiers with `minor`, an H2 alert de-police
            // received, whose stricter labels it takes: fr-police holds
            // `minor` but not the relayed alert, so it is new.
            recipients: vec![gets(
                "fr-police",
                Denied,
                &["amber-stays-with-its-recipients", "no-onward-relay", "restricted-reaches-no-one-new"],
                &[],
            )],
            related: isx_policy::Related {
                holders: Some(Default::default()),
                overlaps_restricted: true,
                ..Default::default()
            },
            raised: Some((minor_id.clone(), "TLP:AMBER H2 PAP:GREEN")),
        },
    ];
    for case in cases {
        publish(&topo, &oracle, &mut log, case).await;
    }

    // A publish whose flush fails is withdrawn: its collection record stays,
    // and a DENIAL with outcome ERROR says so; nothing is disclosed.
    let withdrawn = samples::foreign_fighter("de-police", &["fr-police"]);
    topo.faults().set_fail_flush(true);
    let err = topo.client("de-police").await.unwrap().publish(withdrawn.clone()).await.unwrap_err();
    topo.faults().set_fail_flush(false);
    assert_eq!(err.code(), Code::Unavailable, "{}", err.message());
    let collection = AuditRecord {
        purpose: withdrawn.purpose.clone(),
        legal_basis: withdrawn.legal_basis.clone(),
        alert_id: withdrawn.alert_id.clone(),
        content_digest: oracle.digest(&withdrawn),
        recipients: vec![RecipientLevel {
            node: "fr-police".into(),
            level: Full as i32,
            policy_ids: strings(&["named-addressee", "national-police-full"]),
            outcome: RecipientOutcome::Queued as i32,
        }],
        policy_version: oracle.version.clone(),
        subject_pseudonyms: oracle.pseudonyms(FIGHTER),
        ..oracle.by("de-police", Operation::Collection, Outcome::Ok)
    };
    let withdrawal = AuditRecord {
        alert_id: withdrawn.alert_id.clone(),
        detail: "publish withdrawn, nothing disclosed: injected fault: flush".into(),
        ..oracle.by("de-police", Operation::Denial, Outcome::Error)
    };
    // The failed publish is also refused like any request (through the same
    // refusal path, so with outcome REFUSED, not ERROR).
    let refusal = AuditRecord {
        alert_id: withdrawn.alert_id.clone(),
        detail: "Unavailable: storage unavailable, nothing was disclosed: injected fault: flush".into(),
        ..oracle.by("de-police", Operation::Denial, Outcome::Refused)
    };
    check("a withdrawn publish", &log.read().await, &[collection, withdrawal, refusal]);
    assert!(topo.inbox("fr-police").get(&withdrawn.alert_id).unwrap().is_none(), "nothing was delivered");
    topo.shutdown().await;
}

// ---------------------------------------------------------------------------
// Refused requests, as a table.

/// A call a refusal test makes.
enum Call {
    Publish(Box<Alert>),
    Lookup,
}

/// A refused request and the one DENIAL record it must write.
struct Refusal {
    name: &'static str,
    caller: &'static str,
    /// Whether the client sends `x-isx-officer`.
    officer: bool,
    call: Call,
    code: Code,
    /// The alert id the record names.
    alert_id: String,
    /// The code and rule the record names.
    detail: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_refused_request_records_the_caller_and_the_rule() {
    let (topo, oracle, mut log) = start(TopologySpec::default_agencies()).await;
    let spoofed = samples::foreign_fighter("fr-police", &[]);
    let by_auditor = samples::foreign_fighter("auditor", &[]);
    let unsigned = samples::foreign_fighter("de-police", &[]);
    let mut invalid = samples::foreign_fighter("de-police", &[]);
    invalid.purpose.clear();
    invalid.subjects[0].date_of_birth = "17.03.1994".into();
    let unknown = samples::foreign_fighter("de-police", &["es-police"]);
    let cases = vec![
        Refusal {
            name: "origin mismatch",
            caller: "de-police",
            officer: true,
            alert_id: spoofed.alert_id.clone(),
            call: Call::Publish(Box::new(spoofed)),
            code: Code::PermissionDenied,
            detail: "PermissionDenied: rule origin-is-caller (claimed origin fr-police)".into(),
        },
        Refusal {
            name: "a publish without the publish role",
            caller: "auditor",
            officer: true,
            alert_id: by_auditor.alert_id.clone(),
            call: Call::Publish(Box::new(by_auditor)),
            code: Code::PermissionDenied,
            detail: "PermissionDenied: rule role-publish".into(),
        },
        Refusal {
            name: "a lookup without the lookup role",
            caller: "auditor",
            officer: true,
            alert_id: String::new(),
            call: Call::Lookup,
            code: Code::PermissionDenied,
            detail: "PermissionDenied: rule role-lookup".into(),
        },
        Refusal {
            name: "no officer",
            caller: "de-police",
            officer: false,
            alert_id: unsigned.alert_id.clone(),
            call: Call::Publish(Box::new(unsigned)),
            code: Code::InvalidArgument,
            detail: "InvalidArgument: x-isx-officer".into(),
        },
        Refusal {
            name: "an invalid alert",
            caller: "de-police",
            officer: true,
            alert_id: invalid.alert_id.clone(),
            call: Call::Publish(Box::new(invalid)),
            code: Code::InvalidArgument,
            detail: "InvalidArgument: purpose, subjects[0].date_of_birth".into(),
        },
        Refusal {
            name: "an unregistered addressee",
            caller: "de-police",
            officer: true,
            alert_id: unknown.alert_id.clone(),
            call: Call::Publish(Box::new(unknown)),
            code: Code::InvalidArgument,
            detail: "InvalidArgument: addressees[0]".into(),
        },
    ];
    for case in cases {
        let client = topo.client(case.caller).await.unwrap();
        let client = if case.officer { client } else { client.without_officer() };
        let err = match case.call {
            Call::Publish(alert) => client.publish(*alert).await.map(|_| ()),
            Call::Lookup => client.lookup(vec![document("DE", "C4J9X1R27")], PURPOSE, WHY).await.map(|_| ()),
        }
        .expect_err(case.name);
        assert_eq!(err.code(), case.code, "{}: {}", case.name, err.message());
        let by = oracle.by(case.caller, Operation::Denial, Outcome::Refused);
        let officer = if case.officer { by.officer.clone() } else { String::new() };
        let want = AuditRecord { officer, alert_id: case.alert_id, detail: case.detail, ..by };
        check(case.name, &log.read().await, &[want]);
    }

    // A certificate from the gateway's CA for a node it does not know is
    // refused at the handshake; the record names the certificate.
    let es = isx_core::NodeId::new("es-police").unwrap();
    isx_tls::pki::issue_node(&topo.pki_dir(), &es, time::Duration::days(1)).unwrap();
    let opts = ClientOptions { node: es, ..topo.client_options("de-police").unwrap() };
    assert_eq!(
        isx_testkit::probe(&opts).await.unwrap(),
        isx_testkit::Probe::Dropped,
        "an unregistered node is refused"
    );
    let want = AuditRecord {
        version: 1,
        operation: Operation::Denial as i32,
        node: "es-police".into(),
        cert_fingerprint: oracle.fingerprint("es-police"),
        outcome: Outcome::Refused as i32,
        detail: "connection refused: the certificate names a node that is not registered".into(),
        ..Default::default()
    };
    // The refusal is recorded once per connection attempt, after the
    // handshake: wait for the first, then count all that came.
    let got = log.read_until(|rs| rs.iter().any(|r| r.node == "es-police")).await;
    check("an unregistered certificate", &got, &vec![want; got.len()]);
    topo.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_refusals_are_recorded_at_most_once_a_second_with_the_count() {
    let mut spec = TopologySpec::default_agencies();
    // Three calls per node, then one token in 100 s: every later call in
    // this test is refused. No mock agency runs, so only this test's calls
    // take tokens (the auditor's single read takes one of its own three).
    spec.limits.rate_per_node = 0.01;
    spec.limits.burst_per_node = 3;
    // Two refusals a second are recorded one by one; the rest are aggregated.
    spec.limits.refusal_records_per_second = 2;
    for n in &mut spec.nodes {
        n.run_mock = false;
    }
    let topo = Topology::start(spec).await.expect("topology starts");
    let oracle = Oracle::new(&topo);
    let it = topo.client("it-police").await.unwrap();
    let lookup = || it.lookup(vec![plate("xx 0000")], PURPOSE, WHY);
    for _ in 0..3 {
        assert!(lookup().await.unwrap().hits.is_empty());
    }
    let mut refused = 0;
    for _ in 0..4 {
        assert_eq!(lookup().await.unwrap_err().code(), Code::ResourceExhausted);
        refused += 1;
    }

    // The aggregate of each second's extra refusals comes from a ticker once
    // that second has passed. The auditor has three calls in all here, so
    // wait out that second first (a sleep for the window, not for
    // readiness), then read until every refusal is accounted for.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let mut log = Log::new(&topo, &oracle).await;
    let rule = "ResourceExhausted: limits.rate_per_node (0.01/s, burst 3)";
    let count = |d: &AuditRecord| -> u64 {
        match d.detail.split_once(" more refusals from it-police within a second, not recorded one by one (") {
            None => 0,
            Some((n, _)) => n.parse().unwrap_or_else(|_| panic!("{d:?}")),
        }
    };
    let got = log
        .read_until(|all| {
            let denials = all.iter().filter(|r| r.operation() == Operation::Denial);
            denials.map(|d| if count(d) == 0 { 1 } else { count(d) }).sum::<u64>() >= refused
        })
        .await;
    let consultation = AuditRecord {
        purpose: PURPOSE.into(),
        justification: WHY.into(),
        data_types: strings(&["plate"]),
        subject_pseudonyms: oracle.pseudonyms(&["plate:XX0000"]),
        detail: "0 hit(s) shown, 0 withheld by policy".into(),
        ..oracle.by("it-police", Operation::Consultation, Outcome::Ok)
    };
    let boot = started(&topo, &oracle);
    check("start", &got[..boot.len()], &boot);
    let got = &got[boot.len()..];
    check("the lookups served", &got[..3], &[consultation.clone(), consultation.clone(), consultation]);
    // A refusal record stands for itself; an aggregate for the ones it counts.
    let denials = &got[3..];
    let mut counted = 0;
    for d in denials {
        let n = count(d);
        let want_detail = if n == 0 {
            rule.to_owned()
        } else {
            format!(
                "{n} more refusals from it-police within a second, not recorded one by one ({n} × limits.rate_per_node); the latest: {rule}"
            )
        };
        let want = AuditRecord { detail: want_detail, ..oracle.by("it-police", Operation::Denial, Outcome::Refused) };
        check("a rate-limit refusal", std::slice::from_ref(d), &[want]);
        counted += n.max(1);
    }
    let singles = denials.iter().filter(|d| count(d) == 0).count();
    assert!(singles <= 2 * denials.len(), "{denials:#?}");
    assert!(denials.len() < refused as usize, "aggregated: {denials:#?}");
    assert_eq!(counted, refused, "{denials:#?}");
    topo.shutdown().await;
}

fn document(country: &str, number: &str) -> LookupIdentifier {
    LookupIdentifier {
        kind: Some(Kind::Document(DocumentNumber { issuing_country: country.into(), number: number.into() })),
    }
}

fn plate(p: &str) -> LookupIdentifier {
    LookupIdentifier { kind: Some(Kind::Plate(p.into())) }
}

// ---------------------------------------------------------------------------
// Lookups and follow-up access.

/// A consultation record as `caller`'s lookup must write it.
fn consultation(
    oracle: &Oracle,
    caller: &str,
    data_types: &[&str],
    queried: &[&str],
    hits: Vec<AuditHit>,
) -> AuditRecord {
    let shown = hits.iter().filter(|h| h.shown).count();
    let mut hits = hits;
    hits.sort_by(|a, b| a.alert_id.cmp(&b.alert_id));
    AuditRecord {
        purpose: PURPOSE.into(),
        justification: WHY.into(),
        data_types: strings(data_types),
        subject_pseudonyms: oracle.pseudonyms(queried),
        policy_version: if hits.is_empty() { String::new() } else { oracle.version.clone() },
        detail: format!("{shown} hit(s) shown, {} withheld by policy", hits.len() - shown),
        hits,
        ..oracle.by(caller, Operation::Consultation, Outcome::Ok)
    }
}

fn hit(alert: &Alert, shown: bool, policies: &[&str]) -> AuditHit {
    AuditHit { alert_id: alert.alert_id.clone(), holder: alert.origin.clone(), shown, policy_ids: strings(policies) }
}

/// Looks up `ids` as `caller` and checks the hits shown and the one
/// consultation record; returns the hit ids by alert id.
async fn lookup(
    topo: &Topology,
    oracle: &Oracle,
    log: &mut Log,
    caller: &str,
    ids: Vec<LookupIdentifier>,
    (data_types, queried): (&[&str], &[&str]),
    matches: &[(&Alert, bool, &[&str])],
) -> Vec<(String, String)> {
    let resp = topo.client(caller).await.unwrap().lookup(ids, PURPOSE, WHY).await.expect("lookup");
    for (alert, shown, policies) in matches {
        let policy = oracle.lookup(alert, caller, PURPOSE, data_types);
        assert_eq!(policy, (*shown, strings(policies)), "isx_policy's lookup answer for {caller}");
    }
    let mut shown: Vec<(&str, &[&str])> =
        matches.iter().filter(|m| m.1).map(|(a, _, p)| (a.alert_id.as_str(), *p)).collect();
    shown.sort();
    let mut answered: Vec<(&str, Vec<String>)> =
        resp.hits.iter().map(|h| (h.alert_id.as_str(), h.policy_ids.clone())).collect();
    answered.sort();
    let shown_owned: Vec<(&str, Vec<String>)> = shown.iter().map(|(a, p)| (*a, strings(p))).collect();
    assert_eq!(answered, shown_owned, "{caller}'s hits");
    let want_policy = if matches.is_empty() { String::new() } else { oracle.version.clone() };
    assert_eq!(resp.policy_version, want_policy);
    let hits = matches.iter().map(|(a, s, p)| hit(a, *s, p)).collect();
    check(&format!("{caller}'s lookup"), &log.read().await, &[consultation(oracle, caller, data_types, queried, hits)]);
    resp.hits.into_iter().map(|h| (h.alert_id, h.hit_id)).collect()
}

fn hit_of(hits: &[(String, String)], alert: &Alert) -> String {
    hits.iter().find(|(a, _)| *a == alert.alert_id).map(|(_, h)| h.clone()).expect("a hit on the alert")
}

/// The access request record of `requester`'s request on `alert`.
fn access_request(
    oracle: &Oracle,
    requester: &str,
    alert: &Alert,
    request: &isx_core::wire::AccessRequest,
) -> AuditRecord {
    let deadline = isx_core::timestamp::rfc3339(request.deadline.as_ref().expect("a deadline"));
    AuditRecord {
        purpose: PURPOSE.into(),
        justification: WHY.into(),
        alert_id: alert.alert_id.clone(),
        request_id: request.request_id.clone(),
        recipients: vec![RecipientLevel { node: alert.origin.clone(), ..Default::default() }],
        subject_pseudonyms: oracle.pseudonyms(FIGHTER),
        detail: format!(
            "asks holder {} for the alert behind hit {}; deadline {deadline}",
            alert.origin, request.hit_id
        ),
        ..oracle.by(requester, Operation::AccessRequest, Outcome::Ok)
    }
}

/// `requester` asks the holder for `alert` behind its hit: checks the
/// request as the requester and the holder's agency see it, and its record.
async fn ask(
    topo: &Topology,
    oracle: &Oracle,
    log: &mut Log,
    requester: &str,
    alert: &Alert,
    hit_id: &str,
) -> isx_core::wire::AccessRequest {
    let before = topo.now_ms();
    let client = topo.client(requester).await.unwrap();
    let request = client.request_access(hit_id, PURPOSE, WHY).await.expect("access requested");
    let at = request.requested_at.expect("a request time");
    let at_ms = isx_core::timestamp::to_unix_millis(&at);
    assert!(before <= at_ms && at_ms <= topo.now_ms(), "requested at the gateway's time");
    assert!(request.request_id.starts_with("ar-"), "{}", request.request_id);
    let deadline = topo.gateway_config().access.deadline.as_millis() as u64;
    let want = isx_core::wire::AccessRequest {
        request_id: request.request_id.clone(),
        hit_id: hit_id.into(),
        alert_id: alert.alert_id.clone(),
        requester: requester.into(),
        officer: officer(requester),
        holder: alert.origin.clone(),
        category: alert.category,
        purpose: PURPOSE.into(),
        justification: WHY.into(),
        requested_at: Some(at),
        deadline: Some(isx_core::timestamp::from_unix_millis(at_ms + deadline)),
        state: isx_core::wire::AccessState::Pending as i32,
        ..Default::default()
    };
    assert_eq!(request, want, "{requester}'s request as answered");
    let seen = topo.inbox(&alert.origin).wait_for_access(&request.request_id, |_| true, LIMIT).await.unwrap();
    assert_eq!(seen.as_ref(), Some(&want), "{requester}'s request as the holder receives it");
    check(&format!("{requester}'s request"), &log.read().await, &[access_request(oracle, requester, alert, &request)]);
    request
}

/// The request after the holder decided it as `officer` at some time; the
/// time is checked against the gateway's clock around the call.
fn decided(
    request: &isx_core::wire::AccessRequest,
    answer: &isx_core::wire::AccessRequest,
    state: isx_core::wire::AccessState,
    by: &str,
    reason: &str,
    (level, policy_ids): (DisclosureLevel, &[&str]),
    (before, after): (u64, u64),
) -> isx_core::wire::AccessRequest {
    let at = answer.decided_at.expect("a decision time");
    let at_ms = isx_core::timestamp::to_unix_millis(&at);
    assert!(before <= at_ms && at_ms <= after, "decided at the gateway's time");
    isx_core::wire::AccessRequest {
        state: state as i32,
        decided_by: by.into(),
        reason: reason.into(),
        decided_at: Some(at),
        level: level as i32,
        policy_ids: strings(policy_ids),
        ..request.clone()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookups_access_requests_decisions_declines_expiries_and_erasures_are_recorded() {
    let mut spec = TopologySpec::default_agencies();
    spec.access.deadline = Duration::from_secs(3600);
    // it-police runs no agency: what is queued for it stays queued.
    for n in &mut spec.nodes {
        if n.id.as_str() == "it-police" {
            n.run_mock = false;
        }
    }
    let (topo, oracle, mut log) = start(spec).await;
    let shared = samples::foreign_fighter("de-police", &["fr-police"]);
    let mut red = samples::foreign_fighter("de-police", &["fr-police"]);
    red.alert_id = samples::new_alert_id();
    red.labels.as_mut().unwrap().tlp = Tlp::Red as i32;
    for (name, alert) in [("shared", &shared), ("TLP:RED", &red)] {
        let fr = gets("fr-police", Full, &["named-addressee", "national-police-full"], &[]);
        let recipients = if alert.alert_id == red.alert_id {
            vec![gets("fr-police", Full, &["named-addressee"], &[])]
        } else {
            vec![fr]
        };
        publish(
            &topo,
            &oracle,
            &mut log,
            Publish {
                name,
                alert: alert.clone(),
                identifiers: FIGHTER,
                recipients,
                related: Default::default(),
                raised: None,
            },
        )
        .await;
    }
    let by_document = || vec![document("de", "c4j9-x1r27")];
    let document_only: (&[&str], &[&str]) = (&["document"], &["document:DE:C4J9X1R27"]);

    // it-police: a document and a plate; the RED alert is withheld.
    let it_hits = lookup(
        &topo,
        &oracle,
        &mut log,
        "it-police",
        vec![document("de", "c4j9-x1r27"), plate("b kl 4471")],
        (&["document", "plate"], &["document:DE:C4J9X1R27", "plate:BKL4471"]),
        &[(&shared, true, &["lookup-hit-flag"]), (&red, false, &["tlp-red-addressees-only"])],
    )
    .await;
    // Nothing matches: no hits, no policy asked.
    lookup(&topo, &oracle, &mut log, "it-police", vec![plate("zz 9999")], (&["plate"], &["plate:ZZ9999"]), &[]).await;

    // Frontex asks for the shared alert; the holder grants; Frontex gets it
    // redacted, as policy allows after a grant.
    let frontex_hits = lookup(
        &topo,
        &oracle,
        &mut log,
        "frontex",
        by_document(),
        document_only,
        &[(&shared, true, &["lookup-hit-flag"]), (&red, false, &["tlp-red-addressees-only"])],
    )
    .await;
    let request = ask(&topo, &oracle, &mut log, "frontex", &shared, &hit_of(&frontex_hits, &shared)).await;
    let de = topo.client("de-police").await.unwrap();
    let reason = "joint operation KESTREL";
    let before = topo.now_ms();
    let granted_request = de.decide_access(&request.request_id, true, reason).await.unwrap();
    let closes = (before, topo.now_ms());
    let granted = oracle.policy.granted(
        &shared,
        Some(oracle.node("de-police")),
        oracle.node("frontex"),
        &officer("de-police"),
        &isx_policy::Related::default(),
    );
    let after_grant: &[&str] =
        &["frontex-depersonalised", "special-categories-addressees-only", "frontex-border-crime"];
    assert_eq!(
        (granted.level, granted.policy_ids.clone()),
        (Redacted, strings(after_grant)),
        "isx_policy after a grant"
    );
    assert_eq!(granted.removed_fields, strings(FIGHTER_REDACTED));
    let want = decided(
        &request,
        &granted_request,
        isx_core::wire::AccessState::Granted,
        &officer("de-police"),
        reason,
        (Redacted, after_grant),
        closes,
    );
    assert_eq!(granted_request, want, "the grant as answered");
    let outcome = topo.inbox("frontex").wait_for_access(&request.request_id, |r| r.state == want.state, LIMIT).await;
    assert_eq!(outcome.unwrap().as_ref(), Some(&want), "the grant as the requester receives it");
    let received = topo
        .inbox("frontex")
        .wait_for(&shared.alert_id, LIMIT)
        .await
        .unwrap()
        .expect("frontex receives the granted alert");
    let delivery = received.delivery.unwrap();
    assert_eq!(delivery.request_id, request.request_id);
    assert_eq!(delivery.removed_fields, strings(FIGHTER_REDACTED));
    assert_eq!(delivery.policy_version, oracle.version);
    let frontex_gets = RecipientLevel {
        node: "frontex".into(),
        level: Redacted as i32,
        policy_ids: strings(after_grant),
        ..Default::default()
    };
    let on_request = |r: AuditRecord| AuditRecord {
        alert_id: shared.alert_id.clone(),
        request_id: request.request_id.clone(),
        purpose: PURPOSE.into(),
        ..r
    };
    let decision = AuditRecord {
        justification: reason.into(),
        content_digest: oracle.digest(&shared),
        recipients: vec![frontex_gets.clone()],
        policy_ids: strings(after_grant),
        policy_version: oracle.version.clone(),
        withheld_fields: strings(FIGHTER_REDACTED),
        subject_pseudonyms: oracle.pseudonyms(FIGHTER),
        detail: "granted: frontex receives the alert redacted".into(),
        ..on_request(oracle.by("de-police", Operation::AccessDecision, Outcome::Ok))
    };
    // The delivery after the grant: the alert's purpose and legal basis, the request's id.
    let disclosure = AuditRecord {
        purpose: shared.purpose.clone(),
        legal_basis: shared.legal_basis.clone(),
        alert_id: shared.alert_id.clone(),
        request_id: request.request_id.clone(),
        content_digest: oracle.digest(delivery.alert.as_ref().unwrap()),
        recipients: vec![frontex_gets],
        policy_ids: strings(after_grant),
        policy_version: oracle.version.clone(),
        withheld_fields: strings(FIGHTER_REDACTED),
        subject_pseudonyms: oracle.pseudonyms(FIGHTER),
        ..oracle.by("frontex", Operation::Disclosure, Outcome::Ok)
    };
    check("the grant and its delivery", &log.read().await, &[decision, disclosure]);

    // it-police asks; another node may not decide; the holder denies.
    let request = ask(&topo, &oracle, &mut log, "it-police", &shared, &hit_of(&it_hits, &shared)).await;
    let err = topo.client("fr-police").await.unwrap().decide_access(&request.request_id, true, "not mine").await;
    assert_eq!(err.unwrap_err().code(), Code::NotFound, "to a non-holder, the request does not exist");
    let not_holder = AuditRecord {
        request_id: request.request_id.clone(),
        detail: format!("NotFound: rule holder-decides (request {})", request.request_id),
        ..oracle.by("fr-police", Operation::Denial, Outcome::Refused)
    };
    check("a decision by another node", &log.read().await, &[not_holder]);
    let reason = "no joint case with Italy";
    let before = topo.now_ms();
    let denied = de.decide_access(&request.request_id, false, reason).await.unwrap();
    let state = isx_core::wire::AccessState::Denied;
    let want =
        decided(&request, &denied, state, &officer("de-police"), reason, (Unspecified, &[]), (before, topo.now_ms()));
    assert_eq!(denied, want, "the denial as answered");
    let denial = AuditRecord {
        alert_id: shared.alert_id.clone(),
        request_id: request.request_id.clone(),
        purpose: PURPOSE.into(),
        justification: reason.into(),
        recipients: vec![RecipientLevel {
            node: "it-police".into(),
            level: Denied as i32,
            policy_ids: vec![],
            ..Default::default()
        }],
        detail: "denied by the holder: it-police receives nothing".into(),
        ..oracle.by("de-police", Operation::AccessDecision, Outcome::Refused)
    };
    check("the holder's denial", &log.read().await, &[denial]);

    // Europol asks and nobody decides: past the deadline the request expires.
    let europol_hits = lookup(
        &topo,
        &oracle,
        &mut log,
        "europol",
        by_document(),
        document_only,
        &[(&shared, true, &["lookup-hit-flag"]), (&red, false, &["tlp-red-addressees-only"])],
    )
    .await;
    let request = ask(&topo, &oracle, &mut log, "europol", &shared, &hit_of(&europol_hits, &shared)).await;
    topo.advance_clock(Duration::from_secs(3601));
    // Listing expires due requests first (under the same lock as the sweeper),
    // so the expiry is recorded once, whoever gets there first.
    de.list_access_requests(None).await.unwrap();
    let deadline = isx_core::timestamp::rfc3339(request.deadline.as_ref().unwrap());
    let expiry = AuditRecord {
        alert_id: shared.alert_id.clone(),
        request_id: request.request_id.clone(),
        purpose: PURPOSE.into(),
        recipients: vec![RecipientLevel {
            node: "europol".into(),
            level: Denied as i32,
            policy_ids: vec![],
            ..Default::default()
        }],
        detail: format!("expired: holder de-police did not decide by {deadline}"),
        ..by_gateway(Operation::AccessDecision, Outcome::Refused)
    };
    check("the expiry", &log.read().await, &[expiry]);
    let expired = topo
        .inbox("europol")
        .wait_for_access(&request.request_id, |r| r.state() == isx_core::wire::AccessState::Expired, LIMIT)
        .await
        .unwrap()
        .expect("the requester learns of the expiry");
    let due = isx_core::timestamp::to_unix_millis(request.deadline.as_ref().unwrap());
    let want = isx_core::wire::AccessRequest {
        state: isx_core::wire::AccessState::Expired as i32,
        reason: format!("the holder did not decide by the deadline ({deadline})"),
        decided_at: expired.decided_at,
        ..request.clone()
    };
    assert_eq!(expired, want, "the expiry as the requester receives it");
    let at = isx_core::timestamp::to_unix_millis(expired.decided_at.as_ref().expect("an expiry time"));
    assert!(due <= at && at <= topo.now_ms(), "expired after the deadline, at the gateway's time");

    // fr-police sees both hits and declines to follow one up.
    let fr_hits = lookup(
        &topo,
        &oracle,
        &mut log,
        "fr-police",
        by_document(),
        document_only,
        &[(&shared, true, &["lookup-hit-flag"]), (&red, true, &["lookup-hit-flag"])],
    )
    .await;
    let hit_id = hit_of(&fr_hits, &red);
    let reason = "already known from our own investigation";
    topo.client("fr-police").await.unwrap().decline_follow_up(&hit_id, reason).await.unwrap();
    let declined = AuditRecord {
        justification: reason.into(),
        alert_id: red.alert_id.clone(),
        recipients: vec![RecipientLevel { node: "de-police".into(), ..Default::default() }],
        subject_pseudonyms: oracle.pseudonyms(FIGHTER),
        detail: format!("hit {hit_id} held by de-police not followed up"),
        ..oracle.by("fr-police", Operation::FollowUpDeclined, Outcome::Ok)
    };
    check("the declined follow-up", &log.read().await, &[declined]);

    // A request whose alert expires before the holder decides: a grant is
    // refused, a denial is recorded as any denial, and the alert's erasure
    // is recorded with the copy that waited for it-police.
    let mut brief = samples::foreign_fighter("de-police", &["it-police"]);
    brief.expires_at = Some(isx_core::timestamp::from_unix_millis(topo.now_ms() + 30 * 60 * 1000));
    let recipients = vec![gets("it-police", Full, &["named-addressee", "national-police-full"], &[])];
    publish(
        &topo,
        &oracle,
        &mut log,
        Publish {
            name: "brief",
            alert: brief.clone(),
            identifiers: FIGHTER,
            recipients,
            related: Default::default(),
            raised: None,
        },
    )
    .await;
    let frontex_hits = lookup(
        &topo,
        &oracle,
        &mut log,
        "frontex",
        by_document(),
        document_only,
        &[
            (&shared, true, &["lookup-hit-flag"]),
            (&red, false, &["tlp-red-addressees-only"]),
            (&brief, true, &["lookup-hit-flag"]),
        ],
    )
    .await;
    let request = ask(&topo, &oracle, &mut log, "frontex", &brief, &hit_of(&frontex_hits, &brief)).await;
    topo.advance_clock(Duration::from_secs(31 * 60));
    let erased = expiry_erasure(&brief, "it-police", "expired: the alert and 1 undelivered copies erased; 1 copy told");
    check("the brief alert's erasure", &log.read_until(|rs| !rs.is_empty()).await, &[erased]);
    let err = de.decide_access(&request.request_id, true, "too late").await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{}", err.message());
    let gone = AuditRecord {
        request_id: request.request_id.clone(),
        detail: format!("FailedPrecondition: {}", err.message()),
        ..oracle.by("de-police", Operation::Denial, Outcome::Refused)
    };
    check("a grant after the alert expired", &log.read().await, &[gone]);
    let reason = "the alert has expired";
    let before = topo.now_ms();
    let denied = de.decide_access(&request.request_id, false, reason).await.unwrap();
    let state = isx_core::wire::AccessState::Denied;
    let want =
        decided(&request, &denied, state, &officer("de-police"), reason, (Unspecified, &[]), (before, topo.now_ms()));
    assert_eq!(denied, want, "the denial as answered");
    let outcome = topo.inbox("frontex").wait_for_access(&request.request_id, |r| r.state == want.state, LIMIT).await;
    assert_eq!(outcome.unwrap().as_ref(), Some(&want), "the denial as the requester receives it");
    let denial = AuditRecord {
        alert_id: brief.alert_id.clone(),
        request_id: request.request_id.clone(),
        purpose: PURPOSE.into(),
        justification: reason.into(),
        recipients: vec![RecipientLevel {
            node: "frontex".into(),
            level: Denied as i32,
            policy_ids: vec![],
            ..Default::default()
        }],
        detail: "denied by the holder: frontex receives nothing".into(),
        ..oracle.by("de-police", Operation::AccessDecision, Outcome::Refused)
    };
    check("a denial after the alert expired", &log.read().await, &[denial]);

    // An alert that expires while its one copy waits for an agency that is
    // not running: its erasure is recorded with the copy it took.
    let mut short = samples::migrant_smuggling("de-police", &["it-police"]);
    let tomorrow = topo.now_ms() + 24 * 3600 * 1000;
    short.expires_at = Some(isx_core::timestamp::from_unix_millis(tomorrow));
    let recipients = vec![gets("it-police", Full, &["named-addressee", "national-police-full"], &[])];
    publish(
        &topo,
        &oracle,
        &mut log,
        Publish {
            name: "expiring",
            alert: short.clone(),
            identifiers: SMUGGLING,
            recipients,
            related: Default::default(),
            raised: None,
        },
    )
    .await;
    topo.advance_clock(Duration::from_secs(2 * 24 * 3600));
    let erasure =
        expiry_erasure(&short, "it-police", "expired: the alert and 1 undelivered copies erased; 1 copy told");
    let got = log.read_until(|rs| !rs.is_empty()).await;
    check("the erasure", &got, &[erasure]);
    topo.shutdown().await;
}

/// The ERASURE of an alert that expired with one holder, `holder`: its
/// identity and digest, the holder told to delete its copy, the EXPIRY
/// change (no content).
fn expiry_erasure(alert: &isx_core::wire::Alert, holder: &str, detail: &str) -> AuditRecord {
    let digest = isx_core::digest::content_digest_hex(alert);
    AuditRecord {
        alert_id: alert.alert_id.clone(),
        purpose: alert.purpose.clone(),
        legal_basis: alert.legal_basis.clone(),
        content_digest: digest.clone(),
        recipients: vec![RecipientLevel {
            node: holder.into(),
            level: Denied as i32,
            policy_ids: vec![],
            outcome: isx_core::wire::RecipientOutcome::Withdrawn as i32,
        }],
        lifecycle: Some(isx_core::wire::LifecycleChange {
            kind: isx_core::wire::ChangeKind::Expiry as i32,
            old_version: 1,
            new_version: 1,
            old_digest: digest.clone(),
            new_digest: digest,
            follows: vec![],
            confirmed: 0,
            confirm_grace_seconds: 3600,
        }),
        detail: detail.into(),
        ..by_gateway(Operation::Erasure, Outcome::Ok)
    }
}

// ---------------------------------------------------------------------------
// Reads of the log.

/// A call on the Audit service.
enum Read {
    Checkpoint,
    Entries(u64, u64),
    Search(SearchRequest),
    Export(SearchRequest),
    Inclusion(u64, u64),
    Consistency(u64, u64),
}

impl Read {
    /// Makes the call for [`read_reason`] (an export for [`CASE`]);
    /// returns the size of the answer: the tree size of a checkpoint or
    /// proof, the number of entries of a page or bundle.
    async fn call(&self, client: &Client) -> Result<u64, tonic::Status> {
        self.call_for(client, Some(read_reason()), CASE).await
    }

    /// As [`Read::call`], for `reason` (an export to `recipient`).
    async fn call_for(
        &self,
        client: &Client,
        reason: Option<ReadReason>,
        recipient: &str,
    ) -> Result<u64, tonic::Status> {
        let mut audit = isx_node::audit::audit(client);
        Ok(match self {
            Self::Checkpoint => {
                audit.get_checkpoint(client.request(GetCheckpointRequest { reason })).await?.into_inner().tree_size
            }
            Self::Entries(start, end) => {
                let req = GetEntriesRequest { start: *start, end: *end, reason };
                audit.get_entries(client.request(req)).await?.into_inner().entries.len() as u64
            }
            Self::Search(filter) => {
                let req = SearchRequest { reason, ..filter.clone() };
                audit.search(client.request(req)).await?.into_inner().entries.len() as u64
            }
            Self::Export(filter) => {
                let req = ExportRequest { filter: Some(filter.clone()), reason, recipient: recipient.to_owned() };
                {
                    let mut parts = audit.export(client.request(req)).await?.into_inner();
                    let mut n = 0;
                    while let Some(part) = parts.message().await? {
                        n += part.entries.len() as u64;
                    }
                    n
                }
            }
            Self::Inclusion(seq, tree_size) => {
                let req = GetInclusionProofRequest { seq: *seq, tree_size: *tree_size, reason };
                audit.get_inclusion_proof(client.request(req)).await?.into_inner().tree_size
            }
            Self::Consistency(first, second) => {
                let req = GetConsistencyProofRequest { first: *first, second: *second, reason };
                audit.get_consistency_proof(client.request(req)).await?.into_inner().second
            }
        })
    }
}

/// The size an answer must have, given the log's size before the call.
enum Size {
    /// Exactly this.
    Is(u64),
    /// The log's size after the call's own record, less this.
    All(u64),
    /// The auditor's reads so far, this one included.
    Reads,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_read_of_the_log_is_recorded_and_a_non_auditor_is_refused() {
    let (topo, oracle, mut log) = start(TopologySpec::default_agencies()).await;
    let alert = samples::foreign_fighter("de-police", &["fr-police"]);
    let recipients = vec![gets("fr-police", Full, &["named-addressee", "national-police-full"], &[])];
    publish(
        &topo,
        &oracle,
        &mut log,
        Publish {
            name: "something to read",
            alert: alert.clone(),
            identifiers: FIGHTER,
            recipients,
            related: Default::default(),
            raised: None,
        },
    )
    .await;
    let subject = oracle.pseudonyms(&["document:DE:C4J9X1R27"]).remove(0);
    let why = "FRA review 2026/17: disclosures of one person";
    let by_subject = SearchRequest {
        subject_identifier: "document:de:c4j9 x1r27".into(),
        justification: why.into(),
        ..Default::default()
    };
    let by_pseudonym = SearchRequest {
        subject_pseudonym: subject.to_ascii_uppercase(),
        node: "de-police".into(),
        operation: Operation::Collection as i32,
        justification: why.into(),
        ..Default::default()
    };
    let on_alert = SearchRequest { alert_id: alert.alert_id.clone(), justification: why.into(), ..Default::default() };
    let auditor = topo.client("auditor").await.unwrap();
    let others = SearchRequest {
        officer: officer("de-police"),
        request_id: "ar-000001".into(),
        purpose: alert.purpose.clone(),
        from: alert.created_at,
        justification: why.into(),
        ..Default::default()
    };
    // The log so far: the start's records (0..boot), the first read (boot),
    // the collection (boot + 1), the disclosure (boot + 2), the read after
    // the publish (boot + 3).
    let boot = started(&topo, &oracle).len() as u64;
    let after_collection = SearchRequest { after_seq: boot + 1, ..on_alert.clone() };
    let one = SearchRequest { limit: 1, ..on_alert.clone() };
    let reads = SearchRequest { node: "auditor".into(), operation: Operation::LogRead as i32, ..Default::default() };
    // (the call, the size of its answer; what the record says: justification, subject pseudonyms, detail)
    let reads: Vec<(Read, Size, &str, Vec<String>, String)> = vec![
        (Read::Checkpoint, Size::All(0), "", vec![], "GetCheckpoint".into()),
        (Read::Entries(0, 5), Size::Is(5), "", vec![], "GetEntries [0, 5)".into()),
        (Read::Entries(2, 5000), Size::All(2), "", vec![], "GetEntries [2, 1002)".into()),
        // The collection, the disclosure and this search's own record.
        (Read::Search(by_subject.clone()), Size::Is(3), why, vec![subject.clone()], "Search by subject".into()),
        (
            Read::Search(by_pseudonym),
            Size::Is(1),
            why,
            vec![subject.clone()],
            "Search by subject, node=de-police, operation=OPERATION_COLLECTION".into(),
        ),
        (
            Read::Search(others),
            Size::Is(0),
            why,
            vec![],
            format!("Search by officer=officer@de-police, request=ar-000001, purpose={}, time range", alert.purpose),
        ),
        (Read::Search(after_collection), Size::Is(1), why, vec![], format!("Search by alert={}", alert.alert_id)),
        (Read::Search(one), Size::Is(1), why, vec![], format!("Search by alert={}", alert.alert_id)),
        // From the first record on (seq 0, the first read).
        (Read::Search(reads), Size::Reads, "", vec![], "Search by node=auditor, operation=OPERATION_LOG_READ".into()),
        (Read::Export(on_alert), Size::Is(2), why, vec![], format!("Export of alert={}", alert.alert_id)),
        (Read::Export(SearchRequest::default()), Size::All(0), "", vec![], "Export of everything".into()),
        (Read::Inclusion(1, 0), Size::All(0), "", vec![], "GetInclusionProof 1".into()),
        (Read::Consistency(1, 3), Size::Is(3), "", vec![], "GetConsistencyProof 1..3".into()),
        (Read::Consistency(1, 0), Size::All(0), "", vec![], "GetConsistencyProof 1..0".into()),
    ];
    for (read, size, justification, pseudonyms, detail) in reads {
        let answer = read.call(&auditor).await.unwrap_or_else(|e| panic!("{detail}: {e}"));
        let want = match size {
            Size::Is(n) => n,
            Size::All(less) => log.next + 1 - less,
            Size::Reads => {
                let reads = log.all.iter().filter(|r| r.operation() == Operation::LogRead && r.node == "auditor");
                reads.count() as u64 + 1
            }
        };
        assert_eq!(answer, want, "{detail}: the size of the answer");
        let want = AuditRecord {
            justification: justification.into(),
            subject_pseudonyms: pseudonyms,
            detail: detail.clone(),
            purpose: "self_monitoring".into(),
            case_reference: CASE.into(),
            export_recipient: if matches!(read, Read::Export(_)) { CASE.into() } else { String::new() },
            ..oracle.by("auditor", Operation::LogRead, Outcome::Ok)
        };
        check(&detail, &log.read().await, &[want]);
    }

    // A node without the audit role, and an auditor without an officer, are
    // refused; each attempt is a denial that says what was asked.
    let de = topo.client("de-police").await.unwrap();
    let refusals: Vec<(&Client, &str, bool, Read, Code, String)> = vec![
        (
            &de,
            "de-police",
            true,
            Read::Checkpoint,
            Code::PermissionDenied,
            "PermissionDenied: rule role-audit (audit log: GetCheckpoint)".into(),
        ),
        (
            &de,
            "de-police",
            true,
            Read::Search(by_subject),
            Code::PermissionDenied,
            "PermissionDenied: rule role-audit (audit log: Search)".into(),
        ),
        (
            &auditor,
            "auditor",
            false,
            Read::Entries(0, 1),
            Code::InvalidArgument,
            "InvalidArgument: x-isx-officer (audit log: GetEntries)".into(),
        ),
    ];
    for (client, node, with_officer, read, code, detail) in refusals {
        let client = if with_officer { client.clone() } else { client.without_officer() };
        let err = read.call(&client).await.expect_err(&detail);
        assert_eq!(err.code(), code, "{detail}: {}", err.message());
        let by = oracle.by(node, Operation::Denial, Outcome::Refused);
        let officer = if with_officer { by.officer.clone() } else { String::new() };
        check(&detail, &log.read().await, &[AuditRecord { officer, detail: detail.clone(), ..by }]);
    }

    // An auditor's read without its purpose, its case, or (an export) its
    // recipient is refused naming the field, and the refusal is a denial
    // that names the field too.
    let no_purpose = Some(ReadReason { purpose: 0, case_reference: CASE.into() });
    let no_case = Some(isx_core::read_reason::reason(ReadPurpose::Lawfulness, " "));
    let unreasoned: Vec<(Read, Option<ReadReason>, &str, &str)> = vec![
        (Read::Checkpoint, None, CASE, "reason.purpose"),
        (Read::Entries(0, 1), no_purpose.clone(), CASE, "reason.purpose"),
        (Read::Search(SearchRequest::default()), no_case.clone(), CASE, "reason.case_reference"),
        (Read::Inclusion(1, 0), no_case, CASE, "reason.case_reference"),
        (Read::Consistency(1, 3), no_purpose, CASE, "reason.purpose"),
        (Read::Export(SearchRequest::default()), Some(read_reason()), "", "recipient"),
    ];
    for (read, reason, recipient, field) in unreasoned {
        let err = read.call_for(&auditor, reason, recipient).await.expect_err(field);
        assert_eq!(err.code(), Code::InvalidArgument, "{field}: {}", err.message());
        assert!(err.message().starts_with(&format!("{field}: ")), "{}", err.message());
        let named: Vec<String> = tonic_types::StatusExt::get_error_details(&err)
            .bad_request()
            .map(|b| b.field_violations.iter().map(|v| v.field.clone()).collect())
            .unwrap_or_default();
        assert_eq!(named, [field], "the BadRequest names the field");
        let by = oracle.by("auditor", Operation::Denial, Outcome::Refused);
        let detail = format!("InvalidArgument: {field}");
        check(&detail, &log.read().await, &[AuditRecord { detail: detail.clone(), ..by }]);
    }
    topo.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_at_the_configured_limits_is_collected_and_one_past_them_is_refused() {
    let mut alert = samples::migrant_smuggling("de-police", &["fr-police"]);
    alert.narrative = "Next run expected within ten days. ".repeat(40);
    let limit = alert.encoded_len();
    let mut spec = TopologySpec::default_agencies();
    // The alert is at each limit: its size, its narrative, its lists (two
    // subjects, two objects).
    spec.limits.max_alert_bytes = limit;
    spec.limits.max_narrative_bytes = alert.narrative.len();
    spec.limits.max_list_len = 2;
    let (topo, oracle, mut log) = start(spec).await;
    let recipients = vec![gets("fr-police", Full, &["named-addressee", "national-police-full"], &[])];
    let case = Publish {
        name: "at the limit",
        alert: alert.clone(),
        identifiers: SMUGGLING,
        recipients,
        related: Default::default(),
        raised: None,
    };
    publish(&topo, &oracle, &mut log, case).await;
    let mut over = Alert { alert_id: samples::new_alert_id(), ..alert.clone() };
    over.narrative.push('.');
    assert_eq!(over.encoded_len(), limit + 1);
    let err = topo.client("de-police").await.unwrap().publish(over.clone()).await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{}", err.message());
    let want = AuditRecord {
        alert_id: over.alert_id.clone(),
        detail: format!("ResourceExhausted: limits.max_alert_bytes ({} > {limit})", limit + 1),
        ..oracle.by("de-police", Operation::Denial, Outcome::Refused)
    };
    check("one byte over the limit", &log.read().await, &[want]);

    // Smaller, but one past the narrative or the list limit.
    let smaller = |alert: &Alert| {
        let mut a = Alert { alert_id: samples::new_alert_id(), ..alert.clone() };
        a.objects.truncate(1);
        a
    };
    let mut long = smaller(&alert);
    long.narrative.push('.');
    let mut tagged = smaller(&alert);
    tagged.labels.as_mut().unwrap().tags = strings(&["operation:tidewater", "lampedusa", "ventimiglia"]);
    for (name, alert, field) in
        [("a narrative too long", long, "narrative"), ("a list too long", tagged, "labels.tags")]
    {
        assert!(alert.encoded_len() < limit, "{name}: within the size limit");
        let err = topo.client("de-police").await.unwrap().publish(alert.clone()).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{name}: {}", err.message());
        let want = AuditRecord {
            alert_id: alert.alert_id.clone(),
            detail: format!("InvalidArgument: {field}"),
            ..oracle.by("de-police", Operation::Denial, Outcome::Refused)
        };
        check(name, &log.read().await, &[want]);
    }
    topo.shutdown().await;
}
