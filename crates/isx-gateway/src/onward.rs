//! Onward reach: who may receive a relay or a look-alike of an alert.
//!
//! - `Exchange.AllowOnward`: the origin of an alert lets named organisations
//!   receive onward copies (TLP 2.0: going wider than the label needs the
//!   source's permission), besides those its `labels.onward` names. An
//!   ALTERATION record holds the officer, the reason and the organisations.
//! - Laundering: a publish that shares a person, document or object
//!   pseudonym with an alert its publisher received under H2, TLP:RED or
//!   TLP:AMBER+STRICT takes that alert's stricter labels and reaches no one
//!   a relay of it could not reach ([`overlaps`], [`raise`]). It is never
//!   refused for it: an honest independent report loses reach, not its
//!   place in the log.

use std::collections::BTreeSet;

use isx_core::NodeId;
use isx_core::Role;
use isx_core::wire::{Alert, AllowOnwardRequest, AllowOnwardResponse, HandlingCode, Labels, Pap, Tlp};
use isx_policy::Related;
use tonic::Request;
use tracing::info;

use crate::error::RequestError;
use crate::records;
use crate::state::State;
use crate::store::{IndexRow, Store, StoreError, StoredAlert};
use crate::text::Fields;

/// True for labels that forbid onward dissemination: H2, TLP:RED, TLP:AMBER+STRICT.
pub(crate) fn restricted(labels: &Labels) -> bool {
    labels.handling_code() == HandlingCode::H2 || matches!(labels.tlp(), Tlp::Red | Tlp::AmberStrict)
}

/// An alert its publisher received under restricted labels that shares an
/// identifier with what it now publishes.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Overlap {
    /// The received alert.
    pub alert_id: String,
    /// Its labels.
    pub labels: Labels,
}

/// The alerts `publisher` received under restricted labels that share a
/// pseudonym of `index` (the new alert's identifiers), live at `now_ms`,
/// other than those in `except` (the new alert and the one it relays). At
/// most `limit` matches are looked at per pseudonym.
pub(crate) fn overlaps(
    store: &Store,
    publisher: &NodeId,
    except: &[&str],
    index: &[IndexRow],
    now_ms: u64,
    limit: usize,
) -> Result<Vec<Overlap>, StoreError> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for row in index {
        for m in store.index().matches(&row.pseudonym, limit)? {
            if except.contains(&m.alert_id.as_str()) || !seen.insert(m.alert_id.clone()) {
                continue;
            }
            let Some((stored, alert)) = store.live_alert(&m.alert_id, now_ms)? else { continue };
            let labels = alert.labels.clone().unwrap_or_default();
            if alert.origin == publisher.as_str() || !restricted(&labels) {
                continue;
            }
            if stored.holders().contains(publisher.as_str()) {
                out.push(Overlap { alert_id: m.alert_id, labels });
            }
        }
    }
    Ok(out)
}

/// What `alert` relays or overlaps, for its decisions' context: the nodes
/// that hold its relayed alert and every alert of `raised_by` (an alert no
/// longer stored is held by no one), and whom the relayed alert's origin
/// allows onward copies.
pub(crate) fn related(store: &Store, alert: &Alert, raised_by: &[String]) -> Result<Related, StoreError> {
    let mut holders: Option<BTreeSet<String>> = None;
    let mut meet = |of: Option<&StoredAlert>| {
        let held = of.map(StoredAlert::holders).unwrap_or_default();
        holders = Some(match holders.take() {
            None => held,
            Some(h) => h.intersection(&held).cloned().collect(),
        });
    };
    let mut onward = BTreeSet::new();
    if !alert.forwarded_from.is_empty() {
        let parent = store.alert(&alert.forwarded_from)?;
        if let Some(p) = &parent {
            onward = p.onward();
        }
        meet(parent.as_ref());
    }
    for id in raised_by {
        meet(store.alert(id)?.as_ref());
    }
    Ok(Related { holders, onward, overlaps_restricted: !raised_by.is_empty() })
}

/// Raises `labels` to at least `other`'s: the stricter TLP, H2 over H0 and
/// H1 (an H3 note stays, it already restricts), the stricter PAP.
pub(crate) fn raise(labels: &mut Labels, other: &Labels) {
    // Tlp and Pap values are declared from CLEAR to RED.
    labels.tlp = labels.tlp.max(other.tlp);
    if other.handling_code() == HandlingCode::H2
        && matches!(labels.handling_code(), HandlingCode::H0 | HandlingCode::H1 | HandlingCode::Unspecified)
    {
        labels.handling_code = HandlingCode::H2 as i32;
    }
    if other.pap() != Pap::Unspecified {
        labels.pap = labels.pap.max(other.pap);
    }
}

/// `Exchange.AllowOnward`.
pub(crate) async fn allow_onward(
    st: &State,
    req: Request<AllowOnwardRequest>,
) -> Result<AllowOnwardResponse, RequestError> {
    let caller = st.caller(&req, &[Role::Publish])?;
    let body = req.into_inner();
    let mut fields = Fields::default();
    fields.required("alert_id", &body.alert_id);
    fields.required("reason", &body.reason);
    if body.recipients.is_empty() {
        fields.push("recipients", "name at least one registered node");
    }
    if body.recipients.len() > st.limits.max_list_len {
        fields.push("recipients", &format!("at most {} (limits.max_list_len)", st.limits.max_list_len));
    } else {
        for (i, r) in body.recipients.iter().enumerate() {
            if st.node_info(r).is_none() {
                fields.push(&format!("recipients[{i}]"), "is not a registered node");
            }
        }
    }
    fields.finish()?;
    let now = st.now_ms();
    let unknown = || RequestError::UnknownAlert(body.alert_id.clone());
    let (mut stored, alert) = st.store.live_alert(&body.alert_id, now)?.ok_or_else(unknown)?;
    if alert.origin != caller.node().as_str() {
        return Err(RequestError::NotOrigin { node: caller.node().to_string(), alert_id: body.alert_id });
    }
    let mut allowed: BTreeSet<String> = stored.onward_allowed.iter().cloned().collect();
    allowed.extend(body.recipients.iter().cloned());
    stored.onward_allowed = allowed.into_iter().collect();
    let record = records::onward_allowed(caller.actor(), &alert, &body.recipients, &body.reason);
    st.recorder.append(vec![record])?;
    st.store.update_alert(&stored)?;
    st.committer.commit().await?;
    info!(alert_id = %body.alert_id, recipients = body.recipients.len(), "onward copies allowed");
    Ok(AllowOnwardResponse { allowed: stored.onward().into_iter().collect() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(tlp: Tlp, h: HandlingCode, pap: Pap) -> Labels {
        Labels { tlp: tlp as i32, handling_code: h as i32, pap: pap as i32, ..Default::default() }
    }

    #[test]
    fn restricted_labels() {
        assert!(restricted(&labels(Tlp::Green, HandlingCode::H2, Pap::Unspecified)));
        assert!(restricted(&labels(Tlp::Red, HandlingCode::H0, Pap::Unspecified)));
        assert!(restricted(&labels(Tlp::AmberStrict, HandlingCode::H1, Pap::Unspecified)));
        assert!(!restricted(&labels(Tlp::Amber, HandlingCode::H1, Pap::Green)));
        assert!(!restricted(&labels(Tlp::Clear, HandlingCode::H3, Pap::Unspecified)));
    }

    #[test]
    fn labels_rise_to_the_stricter_and_never_fall() {
        let mut mine = labels(Tlp::Clear, HandlingCode::H0, Pap::Clear);
        raise(&mut mine, &labels(Tlp::AmberStrict, HandlingCode::H2, Pap::Amber));
        assert_eq!((mine.tlp(), mine.handling_code(), mine.pap()), (Tlp::AmberStrict, HandlingCode::H2, Pap::Amber));
        raise(&mut mine, &labels(Tlp::Green, HandlingCode::H0, Pap::Unspecified));
        assert_eq!((mine.tlp(), mine.handling_code(), mine.pap()), (Tlp::AmberStrict, HandlingCode::H2, Pap::Amber));
        let mut noted = labels(Tlp::Green, HandlingCode::H3, Pap::Unspecified);
        raise(&mut noted, &labels(Tlp::Red, HandlingCode::H2, Pap::Unspecified));
        assert_eq!((noted.tlp(), noted.handling_code()), (Tlp::Red, HandlingCode::H3), "an H3 note stays");
    }
}
