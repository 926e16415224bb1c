//! The canonical protobuf JSON mapping for wire messages.
//!
//! Alerts on files and in the CLI use this mapping, so that a file written for
//! one tool works in every tool, including `grpcurl` and generated clients in
//! other languages. Parsing accepts both `alert_id` and `alertId`, enum names
//! such as `"TLP_RED"`, and RFC 3339 timestamps; unknown fields are refused.

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

impl WireMessage for crate::wire::AuditRecord {
    const TYPE_NAME: &'static str = "isx.v1.AuditRecord";
}

impl WireMessage for crate::wire::Checkpoint {
    const TYPE_NAME: &'static str = "isx.v1.Checkpoint";
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
    let mut de = serde_json::Deserializer::from_str(text);
    let dynamic = DynamicMessage::deserialize(descriptor(M::TYPE_NAME), &mut de)
        .and_then(|m| de.end().map(|()| m))
        .map_err(|cause| JsonError::Parse { message: what.to_owned(), type_name: M::TYPE_NAME.to_owned(), cause })?;
    dynamic.transcode_to::<M>().map_err(|e| JsonError::Convert(e.to_string(), M::TYPE_NAME.to_owned()))
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
    fn errors_name_the_field() {
        let cases = [
            (r#"{"alert_idd": "x"}"#, "alert_idd"),
            (r#"{"labels": {"tlp": "TLP_PURPLE"}}"#, "TLP_PURPLE"),
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
