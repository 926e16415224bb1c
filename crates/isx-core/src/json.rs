//! The canonical protobuf JSON mapping for wire messages.
//!
//! Alerts on files and in the CLI use this mapping, so that a file written for
//! one tool works in every tool, including `grpcurl` and generated clients in
//! other languages. Parsing accepts both `alert_id` and `alertId`, enum names
//! such as `"TLP_RED"` and their short forms as policies write them (`"red"`,
//! any case; see [`crate::enums`]), and RFC 3339 timestamps; unknown fields are
//! refused. Writing always uses the full enum names.

use prost::Message;
use prost_reflect::{DynamicMessage, SerializeOptions};

use crate::wire::Alert;

/// Why a JSON document is not a valid message.
#[derive(Debug, thiserror::Error)]
pub enum JsonError {
    /// The JSON text does not match the message schema; the text names the field.
    #[error("{message} is not a valid {type_name}: {cause}")]
    Parse {
        /// What was being parsed, e.g. the file name.
        message: String,
        /// The fully qualified protobuf message name.
        type_name: String,
        /// The parser's explanation, with line and column (shown in the message, not chained).
        cause: serde_json::Error,
    },
    /// An enum field holds a value that is neither a full nor a short name.
    #[error("{message}: {field}: {error}")]
    Enum {
        /// What was being parsed, e.g. the file name.
        message: String,
        /// The field's path, e.g. `labels.tlp` or `subjects[0].role`.
        field: String,
        /// The value and every valid one (shown in the message, not chained).
        error: crate::enums::EnumError,
    },
    /// The parsed value could not be converted into the generated type.
    #[error("{type_name} does not convert: {0}", type_name = .1)]
    Convert(String, String),
}

/// A message that has a descriptor in the isx descriptor pool.
pub trait WireMessage: Message + Default {
    /// The fully qualified protobuf name, e.g. `isx.v1.Alert`.
    const TYPE_NAME: &'static str;
}

impl WireMessage for Alert {
    const TYPE_NAME: &'static str = "isx.v1.Alert";
}

impl WireMessage for crate::wire::Receipt {
    const TYPE_NAME: &'static str = "isx.v1.Receipt";
}

impl WireMessage for crate::wire::Delivery {
    const TYPE_NAME: &'static str = "isx.v1.Delivery";
}

impl WireMessage for crate::wire::AlertChange {
    const TYPE_NAME: &'static str = "isx.v1.AlertChange";
}

impl WireMessage for crate::wire::AlertStatus {
    const TYPE_NAME: &'static str = "isx.v1.AlertStatus";
}

impl WireMessage for crate::wire::OpenHit {
    const TYPE_NAME: &'static str = "isx.v1.OpenHit";
}

impl WireMessage for crate::wire::AuditRecord {
    const TYPE_NAME: &'static str = "isx.v1.AuditRecord";
}

impl WireMessage for crate::wire::Checkpoint {
    const TYPE_NAME: &'static str = "isx.v1.Checkpoint";
}

impl WireMessage for crate::wire::Hold {
    const TYPE_NAME: &'static str = "isx.v1.Hold";
}

impl WireMessage for crate::wire::ListHoldsResponse {
    const TYPE_NAME: &'static str = "isx.v1.ListHoldsResponse";
}

impl WireMessage for crate::wire::PruneResponse {
    const TYPE_NAME: &'static str = "isx.v1.PruneResponse";
}

impl WireMessage for crate::wire::AuditBundle {
    const TYPE_NAME: &'static str = "isx.v1.AuditBundle";
}

impl WireMessage for crate::wire::LookupResponse {
    const TYPE_NAME: &'static str = "isx.v1.LookupResponse";
}

impl WireMessage for crate::wire::AccessRequest {
    const TYPE_NAME: &'static str = "isx.v1.AccessRequest";
}

impl WireMessage for crate::wire::ListAccessRequestsResponse {
    const TYPE_NAME: &'static str = "isx.v1.ListAccessRequestsResponse";
}

fn descriptor(type_name: &str) -> prost_reflect::MessageDescriptor {
    isx_proto::descriptor_pool()
        .get_message_by_name(type_name)
        .unwrap_or_else(|| panic!("{type_name} is compiled into the descriptor pool"))
}

/// Parses `text` as the canonical JSON form of `M`; `what` names the input in errors.
pub fn from_json<M: WireMessage>(text: &str, what: &str) -> Result<M, JsonError> {
    let parse_error = |cause| JsonError::Parse { message: what.to_owned(), type_name: M::TYPE_NAME.to_owned(), cause };
    let desc = descriptor(M::TYPE_NAME);
    // Short enum names become full ones first. When nothing changes, the text
    // itself is parsed, so that errors keep their line and column.
    let rewritten = match serde_json::from_str::<serde_json::Value>(text) {
        Ok(mut value) => {
            let changed = canonical_enums(&mut value, &desc, "").map_err(|(field, error)| JsonError::Enum {
                message: what.to_owned(),
                field,
                error,
            })?;
            changed.then_some(value)
        }
        Err(_) => None,
    };
    let dynamic = match rewritten {
        Some(value) => DynamicMessage::deserialize(desc, value).map_err(parse_error)?,
        None => {
            let mut de = serde_json::Deserializer::from_str(text);
            DynamicMessage::deserialize(desc, &mut de).and_then(|m| de.end().map(|()| m)).map_err(parse_error)?
        }
    };
    dynamic.transcode_to::<M>().map_err(|e| JsonError::Convert(e.to_string(), M::TYPE_NAME.to_owned()))
}

/// Rewrites enum values given by a short name (`terrorism`) or in another
/// case to their full names, in place. Returns whether anything changed, or
/// the path of the first value that is no name of its enum.
fn canonical_enums(
    value: &mut serde_json::Value,
    desc: &prost_reflect::MessageDescriptor,
    path: &str,
) -> Result<bool, (String, crate::enums::EnumError)> {
    use prost_reflect::Kind;
    use serde_json::Value;
    let Value::Object(fields) = value else { return Ok(false) };
    let mut changed = false;
    for (key, v) in fields.iter_mut() {
        let Some(field) = desc.get_field_by_name(key).or_else(|| desc.get_field_by_json_name(key)) else {
            continue;
        };
        let here = if path.is_empty() { field.name().to_owned() } else { format!("{path}.{}", field.name()) };
        let items: Vec<(String, &mut Value)> = match v {
            Value::Array(items) => {
                items.iter_mut().enumerate().map(|(i, item)| (format!("{here}[{i}]"), item)).collect()
            }
            one => vec![(here, one)],
        };
        for (at, item) in items {
            match field.kind() {
                Kind::Enum(e) => {
                    if let Value::String(s) = item
                        && e.get_value_by_name(s).is_none()
                    {
                        *s = crate::enums::full_name(&e, s).map_err(|err| (at, err))?;
                        changed = true;
                    }
                }
                Kind::Message(m) => changed |= canonical_enums(item, &m, &at)?,
                _ => {}
            }
        }
    }
    Ok(changed)
}

/// Writes `message` in canonical JSON with the `.proto` field names, pretty-printed.
pub fn to_json<M: WireMessage>(message: &M) -> String {
    let value = to_json_value(message);
    serde_json::to_string_pretty(&value).expect("a JSON value serialises")
}

/// Writes `message` as a `serde_json::Value` (proto field names, defaults omitted).
pub fn to_json_value<M: WireMessage>(message: &M) -> serde_json::Value {
    let mut dynamic = DynamicMessage::new(descriptor(M::TYPE_NAME));
    dynamic.transcode_from(message).expect("a generated message transcodes into its own descriptor");
    let options = SerializeOptions::new().use_proto_field_name(true).stringify_64_bit_integers(true);
    dynamic
        .serialize_with_options(serde_json::value::Serializer, &options)
        .expect("a dynamic message serialises to JSON")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{Labels, Tlp};

    #[test]
    fn round_trip_with_both_spellings() {
        let text = r#"{
            "alertId": "01JD0000000000000000000000",
            "origin": "de-police",
            "created_at": "2026-11-28T10:00:00Z",
            "labels": {"tlp": "TLP_AMBER", "tags": ["op:x"]},
            "category": "CATEGORY_TERRORISM"
        }"#;
        let alert: Alert = from_json(text, "test").unwrap();
        assert_eq!(alert.alert_id, "01JD0000000000000000000000");
        assert_eq!(alert.labels.as_ref().unwrap().tlp(), Tlp::Amber);
        assert_eq!(alert.created_at.unwrap().seconds, 1_795_860_000);
        let back: Alert = from_json(&to_json(&alert), "round trip").unwrap();
        assert_eq!(back, alert);
        assert!(to_json(&alert).contains("\"alert_id\""));
        assert!(to_json(&alert).contains("\"TLP_AMBER\""));
    }

    #[test]
    fn short_enum_names_read_as_the_full_ones() {
        let short: Alert = from_json(
            r#"{"category": "terrorism", "labels": {"tlp": "amber_strict", "handling_code": "H2"}, "subjects": [{"role": "Suspect"}]}"#,
            "short.json",
        )
        .unwrap();
        let full: Alert = from_json(
            r#"{"category": "CATEGORY_TERRORISM", "labels": {"tlp": "TLP_AMBER_STRICT", "handling_code": "HANDLING_CODE_H2"}, "subjects": [{"role": "SUBJECT_ROLE_SUSPECT"}]}"#,
            "full.json",
        )
        .unwrap();
        assert_eq!(short, full);
        assert!(to_json(&short).contains("\"CATEGORY_TERRORISM\""), "written with the full names");
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            (r#"{"alert_idd": "x"}"#, "alert_idd"),
            (
                r#"{"labels": {"tlp": "TLP_PURPLE"}}"#,
                "labels.tlp: \"TLP_PURPLE\" is not a valid Tlp; use one of TLP_CLEAR / clear",
            ),
            (r#"{"subjects": [{}, {"role": "boss"}]}"#, "subjects[1].role: \"boss\" is not a valid SubjectRole"),
            (r#"{"created_at": "yesterday"}"#, "timestamp"),
            (r#"{"alert_id": "x"} trailing"#, "trailing"),
        ];
        for (text, needle) in cases {
            let err = from_json::<Alert>(text, "alert.json").unwrap_err().to_string();
            assert!(err.contains("alert.json"), "{err}");
            assert!(err.to_lowercase().contains(&needle.to_lowercase()), "{text}: {err}");
        }
        let _ = Labels::default();
    }
}
