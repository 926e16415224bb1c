//! The one seam where the gateway decides what each recipient gets.
//!
//! Routing picks the candidates (the addressees, or every registered node
//! but the origin); a [`Disclose`] implementation decides each one's level
//! and produces its view of the alert. Nothing else in the gateway decides
//! disclosure.

use isx_core::Role;
use isx_core::wire::{Alert, DisclosureLevel};

use crate::config::NodeInfo;

/// What one recipient gets, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// The disclosure level.
    pub level: DisclosureLevel,
    /// The ids of the rules that decided it.
    pub policy_ids: Vec<String>,
    /// The human reasons of those rules, in the same order.
    pub reasons: Vec<String>,
    /// Field paths the recipient will not see.
    pub removed_fields: Vec<String>,
    /// The recipient's view; `None` when the level is `denied`.
    pub view: Option<Alert>,
}

/// One candidate recipient.
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'a> {
    /// The node as registered.
    pub node: &'a NodeInfo,
    /// True if the alert names this node in `addressees`.
    pub addressed: bool,
}

/// Facts about the request that are not in the alert.
#[derive(Debug, Clone, Copy)]
pub struct RequestFacts<'a> {
    /// The officer acting for the publisher (`x-isx-officer`).
    pub officer: &'a str,
}

/// Decides disclosure for one candidate. Implementations must fail closed:
/// any internal error is a `denied` decision.
pub trait Disclose: Send + Sync + 'static {
    /// The decision for `candidate` on `alert`.
    fn decide(&self, alert: &Alert, candidate: Candidate<'_>, facts: RequestFacts<'_>) -> Decision;
}

/// Relay without policy: the whole alert to every candidate that subscribes.
#[derive(Debug, Default, Clone, Copy)]
pub struct WholeAlert;

impl Disclose for WholeAlert {
    fn decide(&self, alert: &Alert, candidate: Candidate<'_>, _facts: RequestFacts<'_>) -> Decision {
        if candidate.node.has(Role::Subscribe) {
            Decision {
                level: DisclosureLevel::Full,
                policy_ids: vec!["relay-whole-alert".into()],
                reasons: vec!["no policy configured: every candidate gets the alert as sent".into()],
                removed_fields: vec![],
                view: Some(alert.clone()),
            }
        } else {
            Decision {
                level: DisclosureLevel::Denied,
                policy_ids: vec!["role-subscribe".into()],
                reasons: vec![format!("{} does not hold the subscribe role", candidate.node.id)],
                removed_fields: vec![],
                view: None,
            }
        }
    }
}
