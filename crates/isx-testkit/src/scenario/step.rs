//! The steps of a scenario, one type per kind of step.
//!
//! A `[[step]]` table is tagged by its `do` key: [`Step`] has one variant per
//! kind, and each variant's type holds exactly the keys that kind accepts,
//! required keys as plain fields and values as typed values ([`Level`],
//! [`RequestState`], [`AuditOperation`], [`Code`], durations). Every type
//! denies unknown fields.
//!
//! Two keys belong to every step and are read by the loader before the rest:
//! `do` (the kind) and `say` (narration, kept on
//! [`StepEntry`](super::StepEntry)). The steps that call the gateway also take
//! the keys of [`Call`] (`as`, `officer`, `expect_code`, `expect_message`,
//! `expect_fields`); serde's `flatten` does not combine with
//! `deny_unknown_fields`, so the loader splits those keys off the table and
//! reads them into a [`WithCall`] beside the step's own type.
//!
//! The keys each kind accepts are read from these types themselves
//! ([`Kind::keys`]), so the error messages and the types cannot disagree.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use isx_core::NodeId;
use isx_core::wire::{AccessState, DisclosureLevel, Operation, Outcome, RecipientOutcome};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

/// A disclosure level as scenarios spell it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// The alert as sent.
    Full,
    /// The redacted view.
    Redacted,
    /// Only that the alert exists.
    HitOnly,
    /// Nothing.
    Denied,
}

impl Level {
    /// The level on the wire.
    pub fn wire(self) -> DisclosureLevel {
        match self {
            Self::Full => DisclosureLevel::Full,
            Self::Redacted => DisclosureLevel::Redacted,
            Self::HitOnly => DisclosureLevel::HitOnly,
            Self::Denied => DisclosureLevel::Denied,
        }
    }

    /// The scenario spelling, e.g. `hit_only`.
    pub fn name(self) -> &'static str {
        isx_core::display::level(self.wire())
    }
}

/// The state of an access request as scenarios spell it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestState {
    /// Waiting for the holder.
    Pending,
    /// The holder granted it.
    Granted,
    /// The holder (or a standing rule) denied it.
    Denied,
    /// The deadline passed.
    Expired,
}

impl RequestState {
    /// The state on the wire.
    pub fn wire(self) -> AccessState {
        match self {
            Self::Pending => AccessState::Pending,
            Self::Granted => AccessState::Granted,
            Self::Denied => AccessState::Denied,
            Self::Expired => AccessState::Expired,
        }
    }

    /// The scenario spelling, e.g. `expired`.
    pub fn name(self) -> String {
        state_name(self.wire())
    }
}

/// The scenario spelling of an access state, e.g. `expired`.
pub fn state_name(state: AccessState) -> String {
    state.as_str_name().trim_start_matches("ACCESS_STATE_").to_ascii_lowercase()
}

/// An audit operation as scenarios spell it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditOperation {
    /// An alert was published.
    Collection,
    /// An alert was disclosed to a recipient.
    Disclosure,
    /// A recipient got nothing, or a request was refused.
    Denial,
    /// A lookup.
    Consultation,
    /// A request for follow-up access.
    AccessRequest,
    /// A decision on such a request.
    AccessDecision,
    /// An alert was altered.
    Alteration,
    /// An alert was erased.
    Erasure,
    /// The audit log was read.
    LogRead,
    /// A hit was not followed up.
    FollowUpDeclined,
    /// A holder confirmed that its copy reached the state a change asked for.
    ChangeConfirmed,
    /// A hit shown to an officer closed without follow-up.
    HitClosed,
}

impl AuditOperation {
    /// The operation on the wire.
    pub fn wire(self) -> Operation {
        match self {
            Self::Collection => Operation::Collection,
            Self::Disclosure => Operation::Disclosure,
            Self::Denial => Operation::Denial,
            Self::Consultation => Operation::Consultation,
            Self::AccessRequest => Operation::AccessRequest,
            Self::AccessDecision => Operation::AccessDecision,
            Self::Alteration => Operation::Alteration,
            Self::Erasure => Operation::Erasure,
            Self::LogRead => Operation::LogRead,
            Self::FollowUpDeclined => Operation::FollowUpDeclined,
            Self::ChangeConfirmed => Operation::ChangeConfirmed,
            Self::HitClosed => Operation::HitClosed,
        }
    }

    /// The scenario spelling, e.g. `access_request`.
    pub fn name(self) -> String {
        self.wire().as_str_name().trim_start_matches("OPERATION_").to_ascii_lowercase()
    }
}

/// An audit outcome as scenarios spell it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditOutcome {
    /// It was done.
    Ok,
    /// It was refused.
    Refused,
    /// It failed.
    Error,
}

impl AuditOutcome {
    /// The outcome on the wire.
    pub fn wire(self) -> Outcome {
        match self {
            Self::Ok => Outcome::Ok,
            Self::Refused => Outcome::Refused,
            Self::Error => Outcome::Error,
        }
    }

    /// The scenario spelling, e.g. `refused`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Refused => "refused",
            Self::Error => "error",
        }
    }
}

/// A gRPC code as scenarios spell it (`PERMISSION_DENIED`); `OK` by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Code(pub tonic::Code);

impl Default for Code {
    fn default() -> Self {
        Self(tonic::Code::Ok)
    }
}

impl<'de> Deserialize<'de> for Code {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        parse_code(&name).map(Code).ok_or_else(|| serde::de::Error::unknown_variant(&name, &CODE_NAMES))
    }
}

/// The longest duration a scenario may give: a hundred years.
pub const LONGEST: Duration = Duration::from_secs(36_500 * 86_400);

fn duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    // `parse_duration` multiplies without an overflow check, and far-off
    // times overflow the gateway's clock arithmetic: refuse them first.
    let digits: String = text.trim().chars().take_while(char::is_ascii_digit).collect();
    if !digits.is_empty() && digits.parse::<u64>().map_or(true, |n| n > LONGEST.as_secs()) {
        return Err(serde::de::Error::custom(format!("{text:?} is too long: at most 36500d")));
    }
    let parsed = isx_gateway::config::parse_duration(&text).map_err(serde::de::Error::custom)?;
    if parsed > LONGEST {
        return Err(serde::de::Error::custom(format!("{text:?} is too long: at most 36500d")));
    }
    Ok(parsed)
}

/// A duration such as `49h` (units `s`, `m`, `h`, `d`), if the key is given.
pub(super) fn optional_duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    duration(d).map(Some)
}

/// The keys of a step that calls the gateway: who calls, and how the call must end.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Call {
    /// The acting node.
    #[serde(rename = "as")]
    pub actor: NodeId,
    /// The officer named on the call (default `officer@<node>`).
    pub officer: Option<String>,
    /// The gRPC code the call must end with (default `OK`).
    #[serde(default)]
    pub expect_code: Code,
    /// A text the error message must contain.
    pub expect_message: Option<String>,
    /// The field paths the error's `google.rpc.BadRequest` must name, exactly.
    pub expect_fields: Option<Vec<String>>,
}

/// A step that calls the gateway: the [`Call`] keys and the step's own.
#[derive(Debug, Clone)]
pub struct WithCall<T> {
    /// Who calls and how the call must end.
    pub call: Call,
    /// The step's own keys.
    pub step: T,
}

/// Where a published alert comes from.
#[derive(Debug, Clone)]
pub enum AlertSource {
    /// A canonical-JSON alert file, relative to the scenario.
    File(PathBuf),
    /// An inline TOML table of the same shape.
    Inline(toml::Table),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PublishKeys {
    file: Option<PathBuf>,
    inline: Option<toml::Table>,
    patch: Option<toml::Table>,
    name: Option<String>,
    #[serde(default)]
    keep_id: bool,
    #[serde(default)]
    receipt: BTreeMap<NodeId, Level>,
    #[serde(default)]
    receipt_policies: BTreeMap<NodeId, Vec<String>>,
    #[serde(default, deserialize_with = "optional_duration")]
    expires_in: Option<Duration>,
}

/// `do = "publish"`: publish an alert.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "PublishKeys")]
pub struct PublishStep {
    /// The alert (`file` or `inline`).
    pub alert: AlertSource,
    /// The name later steps use (`name`, or the file's stem).
    pub name: String,
    /// Deep-merged over the alert before publishing.
    pub patch: Option<toml::Table>,
    /// Keep the file's `alert_id` instead of a fresh one.
    pub keep_id: bool,
    /// Expected receipt levels by node.
    pub receipt: BTreeMap<NodeId, Level>,
    /// Policy ids that must be among those deciding each node's level.
    pub receipt_policies: BTreeMap<NodeId, Vec<String>>,
    /// Sets `expires_at` this long after the gateway's now (its clock, as
    /// `advance_clock` moves it), so that a scenario can let the alert
    /// expire within its storage limit.
    pub expires_in: Option<Duration>,
}

impl TryFrom<PublishKeys> for PublishStep {
    type Error = String;

    fn try_from(k: PublishKeys) -> Result<Self, String> {
        let (alert, name) = match (k.file, k.inline) {
            (Some(file), None) => {
                let name = match k.name {
                    Some(n) => n,
                    None => file.file_stem().map(|s| s.to_string_lossy().into_owned()).ok_or_else(|| {
                        format!("`file` {} names no file to name the alert by; give `name`", file.display())
                    })?,
                };
                (AlertSource::File(file), name)
            }
            (None, Some(inline)) => {
                let name = k.name.ok_or("an inline alert needs a `name` for later steps")?;
                (AlertSource::Inline(inline), name)
            }
            _ => return Err("publish needs either `file` or `inline`, not both".into()),
        };
        Ok(Self {
            alert,
            name,
            patch: k.patch,
            keep_id: k.keep_id,
            receipt: k.receipt,
            receipt_policies: k.receipt_policies,
            expires_in: k.expires_in,
        })
    }
}

/// `do = "forward"`: relay an alert the acting node received.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardStep {
    /// The alert to relay, by name.
    pub of: String,
    /// Deep-merged over the relayed alert (e.g. new `addressees`).
    pub patch: Option<toml::Table>,
    /// The name later steps use (default `<of>-forwarded`).
    pub name: Option<String>,
    /// Expected receipt levels by node.
    #[serde(default)]
    pub receipt: BTreeMap<NodeId, Level>,
    /// Policy ids that must be among those deciding each node's level.
    #[serde(default)]
    pub receipt_policies: BTreeMap<NodeId, Vec<String>>,
}

impl ForwardStep {
    /// The name later steps use for the relayed alert.
    pub fn name(&self) -> String {
        self.name.clone().unwrap_or_else(|| format!("{}-forwarded", self.of))
    }
}

/// `do = "expect_delivery"`: a node's agency holds an alert at a level, or nothing of it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectDeliveryStep {
    /// The receiving node.
    pub node: NodeId,
    /// The alert, by name.
    pub alert: String,
    /// The level it must hold (`denied`: nothing).
    pub level: Level,
    /// Field paths that must have a value in the delivered copy.
    #[serde(default)]
    pub present: Vec<String>,
    /// Field paths that must be empty in the delivered copy.
    #[serde(default)]
    pub absent: Vec<String>,
    /// Policy ids that must be among the deciding ones.
    pub policies: Option<Vec<String>>,
    /// The granted access request the copy must come from, by name.
    pub request: Option<String>,
}

/// `do = "expect_nothing"`: a node's agency holds nothing of an alert, or
/// nothing of any alert the scenario published so far.
///
/// A kind of its own rather than a level of `expect_delivery`: "nothing" is
/// not a disclosure level, the keys that describe a delivered copy
/// (`present`, `absent`, `policies`, `request`) have no meaning for it, and
/// it may leave out `alert`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectNothingStep {
    /// The node whose agency is checked.
    pub node: NodeId,
    /// The alert, by name; without it, every alert earlier steps published.
    pub alert: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LookupKeys {
    #[serde(default)]
    document: Vec<String>,
    person: Option<String>,
    dob: Option<String>,
    #[serde(default)]
    plate: Vec<String>,
    #[serde(default)]
    firearm: Vec<String>,
    purpose: String,
    justification: String,
    hits: Option<Vec<String>>,
}

/// A person to look up: `person = "FAMILY, GIVEN"` with `dob`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    /// Family name.
    pub family_name: String,
    /// Given names (may be empty).
    pub given_names: String,
    /// Date of birth, `YYYY-MM-DD`.
    pub date_of_birth: String,
}

/// `do = "lookup"`: a hit/no-hit lookup.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "LookupKeys")]
pub struct LookupStep {
    /// Documents, `COUNTRY:NUMBER`.
    pub document: Vec<String>,
    /// A person (`person` with `dob`).
    pub person: Option<Person>,
    /// Vehicle plates.
    pub plate: Vec<String>,
    /// Firearm serials.
    pub firearm: Vec<String>,
    /// Stated purpose.
    pub purpose: String,
    /// Stated justification.
    pub justification: String,
    /// The scenario's alerts the lookup must show, exactly, by name.
    pub hits: Option<Vec<String>>,
}

impl LookupStep {
    /// True if the lookup names any identifier.
    pub fn has_identifiers(&self) -> bool {
        !self.document.is_empty() || self.person.is_some() || !self.plate.is_empty() || !self.firearm.is_empty()
    }
}

impl TryFrom<LookupKeys> for LookupStep {
    type Error = String;

    fn try_from(k: LookupKeys) -> Result<Self, String> {
        let person = match (k.person, k.dob) {
            (Some(person), Some(dob)) => {
                let (family, given) = person.split_once(',').unwrap_or((&person, ""));
                Some(Person { family_name: family.trim().into(), given_names: given.trim().into(), date_of_birth: dob })
            }
            (None, None) => None,
            _ => return Err("`person` and `dob` go together".into()),
        };
        Ok(Self {
            document: k.document,
            person,
            plate: k.plate,
            firearm: k.firearm,
            purpose: k.purpose,
            justification: k.justification,
            hits: k.hits,
        })
    }
}

/// `do = "request_access"`: ask the holder of a hit for the alert.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestAccessStep {
    /// The alert the acting node has a hit on, by name.
    pub alert: String,
    /// Stated purpose.
    pub purpose: String,
    /// Stated justification.
    pub justification: String,
    /// The name later steps use (default `<as>/<alert>`).
    pub name: Option<String>,
}

impl RequestAccessStep {
    /// The name later steps use for the request made by `actor`.
    pub fn name(&self, actor: &NodeId) -> String {
        self.name.clone().unwrap_or_else(|| format!("{actor}/{}", self.alert))
    }
}

/// `do = "decide"`: the holder grants or denies a request.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecideStep {
    /// The request, by name.
    pub request: String,
    /// Grant (true) or deny.
    pub grant: bool,
    /// The reason given.
    pub reason: String,
    /// The level a grant must give the requester.
    pub expect_level: Option<Level>,
}

/// `do = "decline"`: record why a hit is not followed up.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeclineStep {
    /// The alert the acting node has a hit on, by name.
    pub alert: String,
    /// The reason given.
    pub reason: String,
}

/// `do = "expect_access"`: a node's agency sees a request reach a state.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectAccessStep {
    /// The node whose agency is asked.
    pub node: NodeId,
    /// The request, by name.
    pub request: String,
    /// The state it must reach.
    pub state: RequestState,
}

/// `do = "stop_node"` and `do = "start_node"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeStep {
    /// The node whose mock agency stops or starts.
    pub node: NodeId,
}

/// `do = "restart_gateway"`: no keys.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestartGatewayStep {}

/// `do = "advance_clock"`: move the gateway's clock forward.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdvanceClockStep {
    /// How far, e.g. `49h`.
    #[serde(deserialize_with = "duration")]
    pub by: Duration,
}

/// `do = "expect_witnessed"`: the gateway's published checkpoint is
/// cosigned by exactly these witnesses, and meets the witness policy.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectWitnessedStep {
    /// The witnesses' names in the policy: standalone ids and node ids.
    pub cosigners: Vec<String>,
}

/// A recipient's outcome on a receipt as scenarios spell it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReceiptOutcome {
    /// Its view waits in its outbox (a node an amendment newly reaches).
    Queued,
    /// Policy gives it nothing.
    Denied,
    /// Its queue is full.
    QueueFull,
    /// It holds no subscribe role.
    NoSubscribeRole,
    /// An amendment: an update with its view of the new version is queued.
    Updated,
    /// An amendment: policy no longer lets it see the alert; a withdrawal is queued.
    Withdrawn,
    /// A restriction is queued.
    Restricted,
    /// A lift of the restriction is queued.
    Lifted,
}

impl ReceiptOutcome {
    /// The outcome on the wire.
    pub fn wire(self) -> RecipientOutcome {
        match self {
            Self::Queued => RecipientOutcome::Queued,
            Self::Denied => RecipientOutcome::Denied,
            Self::QueueFull => RecipientOutcome::QueueFull,
            Self::NoSubscribeRole => RecipientOutcome::NoSubscribeRole,
            Self::Updated => RecipientOutcome::Updated,
            Self::Withdrawn => RecipientOutcome::Withdrawn,
            Self::Restricted => RecipientOutcome::Restricted,
            Self::Lifted => RecipientOutcome::Lifted,
        }
    }

    /// The scenario spelling, e.g. `withdrawn`.
    pub fn name(self) -> String {
        outcome_name(self.wire())
    }
}

/// The scenario spelling of a recipient outcome, e.g. `queue_full`.
pub fn outcome_name(outcome: RecipientOutcome) -> String {
    outcome.as_str_name().trim_start_matches("RECIPIENT_OUTCOME_").to_ascii_lowercase()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AmendKeys {
    alert: String,
    file: Option<PathBuf>,
    inline: Option<toml::Table>,
    patch: Option<toml::Table>,
    replaces_version: Option<u32>,
    reason: String,
    #[serde(default)]
    receipt: BTreeMap<NodeId, Level>,
    #[serde(default)]
    outcomes: BTreeMap<NodeId, ReceiptOutcome>,
}

/// `do = "amend"`: the origin publishes a new version of one of its alerts.
///
/// The new version is the alert's current version as the scenario sent it,
/// or `file` or `inline` (a whole alert; its `alert_id` and `origin` are
/// replaced by the alert's), with `patch` deep-merged over it.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "AmendKeys")]
pub struct AmendStep {
    /// The alert to amend, by name.
    pub alert: String,
    /// A whole new version (`file` or `inline`); `None`: the current version.
    pub source: Option<AlertSource>,
    /// Deep-merged over the new version.
    pub patch: Option<toml::Table>,
    /// The version it replaces; default the current one as the scenario
    /// knows it (1 after the publish, one more per amendment).
    pub replaces_version: Option<u32>,
    /// Why (recorded).
    pub reason: String,
    /// Expected levels of the new version by node.
    pub receipt: BTreeMap<NodeId, Level>,
    /// Expected outcomes by node (`updated`, `withdrawn`, `queued`, ...).
    pub outcomes: BTreeMap<NodeId, ReceiptOutcome>,
}

impl TryFrom<AmendKeys> for AmendStep {
    type Error = String;

    fn try_from(k: AmendKeys) -> Result<Self, String> {
        let source = match (k.file, k.inline) {
            (Some(file), None) => Some(AlertSource::File(file)),
            (None, Some(inline)) => Some(AlertSource::Inline(inline)),
            (None, None) => None,
            (Some(_), Some(_)) => return Err("amend takes `file` or `inline`, not both".into()),
        };
        if source.is_none() && k.patch.is_none() {
            return Err("amend needs the change: `patch` (over the current version), `file` or `inline`".into());
        }
        if k.replaces_version == Some(0) {
            return Err("`replaces_version`: versions start at 1".into());
        }
        Ok(Self {
            alert: k.alert,
            source,
            patch: k.patch,
            replaces_version: k.replaces_version,
            reason: k.reason,
            receipt: k.receipt,
            outcomes: k.outcomes,
        })
    }
}

/// `do = "withdraw"`, `do = "restrict"` and `do = "lift"`: the origin
/// withdraws an alert, restricts its processing, or lifts the restriction.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangeStep {
    /// The alert, by name.
    pub alert: String,
    /// Why (recorded).
    pub reason: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectCopyKeys {
    node: NodeId,
    alert: String,
    version: Option<u32>,
    deleted: Option<bool>,
    restricted: Option<bool>,
    level: Option<Level>,
}

/// `do = "expect_copy"`: a node's agency holds its copy of an alert in a
/// state: at a version, deleted, marked restricted, at a level. Waits until
/// the copy is in every state given.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "ExpectCopyKeys")]
pub struct ExpectCopyStep {
    /// The holder.
    pub node: NodeId,
    /// The alert, by name.
    pub alert: String,
    /// The version the copy holds (or held, once deleted).
    pub version: Option<u32>,
    /// `true`: the copy was deleted (its record says so); `false`: it is held.
    pub deleted: Option<bool>,
    /// `true`: the copy is marked restricted; `false`: it is not.
    pub restricted: Option<bool>,
    /// The level of the held copy.
    pub level: Option<Level>,
}

impl TryFrom<ExpectCopyKeys> for ExpectCopyStep {
    type Error = String;

    fn try_from(k: ExpectCopyKeys) -> Result<Self, String> {
        if k.version.is_none() && k.deleted.is_none() && k.restricted.is_none() && k.level.is_none() {
            return Err("expect_copy needs at least one of `version`, `deleted`, `restricted`, `level`".into());
        }
        if k.level == Some(Level::Denied) {
            return Err("`level`: a copy is never held `denied`; use `deleted = true`, or expect_nothing".into());
        }
        if k.deleted == Some(true) && (k.level.is_some() || k.restricted == Some(true)) {
            return Err("a deleted copy has no `level` and is not `restricted`".into());
        }
        Ok(Self {
            node: k.node,
            alert: k.alert,
            version: k.version,
            deleted: k.deleted,
            restricted: k.restricted,
            level: k.level,
        })
    }
}

/// `do = "expect_confirmed"`: every copy of an alert (onward copies
/// included) has confirmed the alert's last change, as its origin reads the
/// alert's status. Waits until it has.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectConfirmedStep {
    /// The alert, by name.
    pub alert: String,
    /// The alert's current version.
    pub version: Option<u32>,
    /// Exactly the nodes whose copies the status lists, direct and onward.
    pub holders: Option<Vec<NodeId>>,
}

/// `do = "expect_open_hits"`: a node's open hits (shown, neither followed
/// up nor declined) on the scenario's alerts are exactly these. Waits until
/// they are.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectOpenHitsStep {
    /// The node whose open hits are listed.
    pub node: NodeId,
    /// The alerts, by name (`[]`: none).
    pub hits: Vec<String>,
    /// The officer each of them was shown to.
    pub officer: Option<String>,
}

/// How many audit records an `expect_audit` step wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Count {
    /// `count`: exactly this many.
    Exactly(u64),
    /// `at_least`: this many or more.
    AtLeast(u64),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectAuditKeys {
    operation: AuditOperation,
    node: Option<NodeId>,
    officer: Option<String>,
    alert: Option<String>,
    request: Option<String>,
    outcome: Option<AuditOutcome>,
    count: Option<u64>,
    at_least: Option<u64>,
    purpose: Option<String>,
    case: Option<String>,
}

/// `do = "expect_audit"`: count audit records.
///
/// The step reads the log as the topology's first auditor, for `purpose`
/// (default self-monitoring) in case `case` (default "scenario
/// expectation"); each reading is a LOG_READ record with both.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "ExpectAuditKeys")]
pub struct ExpectAuditStep {
    /// The operation.
    pub operation: AuditOperation,
    /// Only records naming this node.
    pub node: Option<NodeId>,
    /// Only records naming this officer (e.g. the officer who was shown a
    /// hit that closed).
    pub officer: Option<String>,
    /// Only records of this alert, by name.
    pub alert: Option<String>,
    /// Only records of this request, by name.
    pub request: Option<String>,
    /// Only records with this outcome.
    pub outcome: Option<AuditOutcome>,
    /// How many (`count` or `at_least`).
    pub count: Count,
    /// Why the step reads the log: `lawfulness`, `self_monitoring`
    /// (`self-monitoring`), `integrity` or `criminal_proceedings`.
    pub purpose: Option<isx_core::wire::ReadPurpose>,
    /// The case reference the step's reads give.
    pub case: Option<String>,
}

impl TryFrom<ExpectAuditKeys> for ExpectAuditStep {
    type Error = String;

    fn try_from(k: ExpectAuditKeys) -> Result<Self, String> {
        let count = match (k.count, k.at_least) {
            (Some(c), None) => Count::Exactly(c),
            (None, Some(c)) => Count::AtLeast(c),
            _ => return Err("expect_audit needs either `count` or `at_least`".into()),
        };
        let purpose = k
            .purpose
            .as_deref()
            .map(|p| isx_core::read_reason::parse(p).map_err(|e| format!("`purpose`: {}", e.message)))
            .transpose()?;
        if let Some(case) = &k.case {
            isx_core::read_reason::check(Some(&isx_core::read_reason::reason(
                isx_core::wire::ReadPurpose::SelfMonitoring,
                case,
            )))
            .map_err(|e| format!("`case`: {}", e.message))?;
        }
        Ok(Self {
            operation: k.operation,
            node: k.node,
            officer: k.officer,
            alert: k.alert,
            request: k.request,
            outcome: k.outcome,
            count,
            purpose,
            case: k.case,
        })
    }
}

/// How a step's type reads its keys from the step's table (without `do` and `say`).
trait FromTable: Sized {
    /// The keys it accepts, in order.
    fn keys() -> Vec<&'static str>;
    /// Reads it; errors carry the span of the offending key or value, or `span`.
    fn from_table(table: DeTable<'_>, span: std::ops::Range<usize>) -> Result<Self, toml::de::Error>;
}

fn read<T: DeserializeOwned>(table: DeTable<'_>, span: std::ops::Range<usize>) -> Result<T, toml::de::Error> {
    T::deserialize(ValueDeserializer::from(Spanned::new(span, DeValue::Table(table))))
}

impl<T: FromTable> FromTable for WithCall<T> {
    fn keys() -> Vec<&'static str> {
        probe::fields::<Call>().iter().copied().chain(T::keys()).collect()
    }

    fn from_table(table: DeTable<'_>, span: std::ops::Range<usize>) -> Result<Self, toml::de::Error> {
        let call_keys = probe::fields::<Call>();
        let (mut call, mut own) = (DeTable::new(), DeTable::new());
        for (k, v) in table {
            if call_keys.contains(&k.get_ref().as_ref()) {
                call.insert(k, v)
            } else {
                own.insert(k, v)
            };
        }
        Ok(Self { call: read(call, span.clone())?, step: T::from_table(own, span)? })
    }
}

macro_rules! plain_steps {
    ($($ty:ty),* $(,)?) => {$(
        impl FromTable for $ty {
            fn keys() -> Vec<&'static str> {
                probe::fields::<$ty>().to_vec()
            }

            fn from_table(table: DeTable<'_>, span: std::ops::Range<usize>) -> Result<Self, toml::de::Error> {
                read(table, span)
            }
        }
    )*};
}

plain_steps!(
    PublishStep,
    ForwardStep,
    ExpectDeliveryStep,
    ExpectNothingStep,
    LookupStep,
    RequestAccessStep,
    DecideStep,
    DeclineStep,
    ExpectAccessStep,
    NodeStep,
    RestartGatewayStep,
    AdvanceClockStep,
    ExpectAuditStep,
    ExpectWitnessedStep,
    AmendStep,
    ChangeStep,
    ExpectCopyStep,
    ExpectConfirmedStep,
    ExpectOpenHitsStep,
);

/// Declares [`Step`] and [`Kind`] from one list: variant, `do` name, type.
macro_rules! steps {
    ($($(#[$doc:meta])* $variant:ident = $name:literal => $ty:ty,)*) => {
        /// One step, by its `do`.
        #[derive(Debug, Clone)]
        pub enum Step {
            $($(#[$doc])* $variant($ty),)*
        }

        /// The kind of a step: the value of its `do`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Kind {
            $($(#[$doc])* $variant,)*
        }

        impl Kind {
            /// Every kind, in the order of the documentation.
            pub const ALL: &[Kind] = &[$(Kind::$variant,)*];

            /// Its `do` value.
            pub fn name(self) -> &'static str {
                match self {
                    $(Kind::$variant => $name,)*
                }
            }

            /// The kind named `name`.
            pub fn from_name(name: &str) -> Option<Self> {
                Self::ALL.iter().copied().find(|k| k.name() == name)
            }

            /// The keys a step of this kind accepts besides `do` and `say`, in order.
            pub fn own_keys(self) -> Vec<&'static str> {
                match self {
                    $(Kind::$variant => <$ty as FromTable>::keys(),)*
                }
            }

            /// Reads a step of this kind from its table (without `do` and `say`).
            pub(super) fn parse(self, table: DeTable<'_>, span: std::ops::Range<usize>) -> Result<Step, toml::de::Error> {
                Ok(match self {
                    $(Kind::$variant => Step::$variant(<$ty as FromTable>::from_table(table, span)?),)*
                })
            }
        }

        impl Step {
            /// Its kind.
            pub fn kind(&self) -> Kind {
                match self {
                    $(Step::$variant(_) => Kind::$variant,)*
                }
            }
        }
    };
}

steps! {
    /// Publish an alert as a node.
    Publish = "publish" => WithCall<PublishStep>,
    /// Relay an alert a node received, with `forwarded_from` set.
    Forward = "forward" => WithCall<ForwardStep>,
    /// Wait until a node has an alert at a level (or check it has nothing of it).
    ExpectDelivery = "expect_delivery" => ExpectDeliveryStep,
    /// Check that a node's agency holds nothing of an alert (or of any alert of the scenario).
    ExpectNothing = "expect_nothing" => ExpectNothingStep,
    /// Hit/no-hit lookup.
    Lookup = "lookup" => WithCall<LookupStep>,
    /// Ask the holder of a hit for the alert.
    RequestAccess = "request_access" => WithCall<RequestAccessStep>,
    /// The holder grants or denies.
    Decide = "decide" => WithCall<DecideStep>,
    /// Record why a hit is not followed up.
    Decline = "decline" => WithCall<DeclineStep>,
    /// Wait until an access request reaches a state, as a node's agency sees it.
    ExpectAccess = "expect_access" => ExpectAccessStep,
    /// Stop a mock agency.
    StopNode = "stop_node" => NodeStep,
    /// Start a mock agency again.
    StartNode = "start_node" => NodeStep,
    /// Stop and start the gateway on the same address and data.
    RestartGateway = "restart_gateway" => RestartGatewayStep,
    /// Move the gateway's clock forward.
    AdvanceClock = "advance_clock" => AdvanceClockStep,
    /// Count audit records.
    ExpectAudit = "expect_audit" => ExpectAuditStep,
    /// Check who cosigned the published checkpoint.
    ExpectWitnessed = "expect_witnessed" => ExpectWitnessedStep,
    /// As the origin, publish a new version of an alert.
    Amend = "amend" => WithCall<AmendStep>,
    /// As the origin, withdraw an alert: every copy is to be deleted.
    Withdraw = "withdraw" => WithCall<ChangeStep>,
    /// As the origin, restrict an alert's processing while it is checked.
    Restrict = "restrict" => WithCall<ChangeStep>,
    /// As the origin, lift an alert's restriction.
    Lift = "lift" => WithCall<ChangeStep>,
    /// Wait until a node's copy of an alert is at a version, deleted, restricted or at a level.
    ExpectCopy = "expect_copy" => ExpectCopyStep,
    /// Wait until every copy of an alert has confirmed its last change.
    ExpectConfirmed = "expect_confirmed" => ExpectConfirmedStep,
    /// Wait until a node's open hits are exactly these.
    ExpectOpenHits = "expect_open_hits" => ExpectOpenHitsStep,
}

impl Kind {
    /// Every key a step of this kind accepts, `do` and `say` first.
    pub fn keys(self) -> Vec<&'static str> {
        ["do", "say"].into_iter().chain(self.own_keys()).collect()
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The field names a `Deserialize` type asks for, read by letting it
/// deserialise from a deserializer that records them and stops.
mod probe {
    use std::cell::Cell;

    use serde::de::{self, Deserialize, Visitor};

    #[derive(Debug)]
    struct Stop;

    impl std::fmt::Display for Stop {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("probe")
        }
    }

    impl std::error::Error for Stop {}

    impl de::Error for Stop {
        fn custom<T: std::fmt::Display>(_: T) -> Self {
            Stop
        }
    }

    struct Probe<'a>(&'a Cell<&'static [&'static str]>);

    impl<'de> de::Deserializer<'de> for Probe<'_> {
        type Error = Stop;

        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
            Err(Stop)
        }

        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Stop> {
            self.0.set(fields);
            Err(Stop)
        }

        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option unit
            unit_struct newtype_struct seq tuple tuple_struct map enum identifier ignored_any
        }
    }

    /// The fields of the struct `T` deserialises from (for `try_from`
    /// types, those of the struct it converts from).
    pub fn fields<T: for<'de> Deserialize<'de>>() -> &'static [&'static str] {
        let seen = Cell::new(&[][..]);
        let _ = T::deserialize(Probe(&seen));
        seen.get()
    }
}

/// gRPC code names as scenarios spell them.
pub const CODE_NAMES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

/// Parses a gRPC code name as scenarios spell it: `OK`, `PERMISSION_DENIED`, ...
/// (case does not matter).
pub fn parse_code(name: &str) -> Option<tonic::Code> {
    CODE_NAMES.iter().position(|n| n.eq_ignore_ascii_case(name.trim())).map(|i| tonic::Code::from_i32(i as i32))
}

/// The scenario spelling of a gRPC code.
pub fn code_name(code: tonic::Code) -> String {
    format!("{code:?}")
        .chars()
        .enumerate()
        .flat_map(|(i, c)| {
            let sep = (i > 0 && c.is_ascii_uppercase()).then_some('_');
            sep.into_iter().chain(std::iter::once(c.to_ascii_uppercase()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_read_from_the_types() {
        assert_eq!(Kind::RestartGateway.keys(), ["do", "say"]);
        assert_eq!(Kind::AdvanceClock.own_keys(), ["by"]);
        assert_eq!(
            Kind::Decline.own_keys(),
            ["as", "officer", "expect_code", "expect_message", "expect_fields", "alert", "reason"]
        );
        assert_eq!(
            Kind::ExpectAudit.own_keys(),
            ["operation", "node", "officer", "alert", "request", "outcome", "count", "at_least", "purpose", "case"]
        );
        for kind in Kind::ALL {
            assert_eq!(Kind::from_name(kind.name()), Some(*kind));
            assert!(!kind.keys().is_empty());
        }
    }

    #[test]
    fn levels_and_names_agree_with_the_wire() {
        assert_eq!(Level::HitOnly.name(), "hit_only");
        assert_eq!(RequestState::Expired.name(), "expired");
        assert_eq!(AuditOperation::FollowUpDeclined.name(), "follow_up_declined");
        assert_eq!(AuditOutcome::Refused.wire(), Outcome::Refused);
    }
}
