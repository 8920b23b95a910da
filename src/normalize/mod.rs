//! Normalization: a mapped payload becomes a complete, schema-valid petition.
//!
//! The connector's mapper fills the channel's fields; this stage adds what the gateway
//! owns (id, channel, receive time, trace id, region) and enforces the petition schema
//! on every petition before it is published.

pub mod region;
pub mod schema;

use crate::petition::{petition_id, Petition};
use gateway_connectors::{FieldError, MappedPetition};
use region::RegionResolver;
use schema::Schemas;
use serde_json::{Map, Value};

/// Builds the canonical petition. Errors carry the sender's payload paths.
pub fn normalize(
    channel: &str,
    mapped: &MappedPetition,
    received_at: &str,
    trace_id: &str,
    regions: &RegionResolver,
    schemas: &Schemas,
) -> Result<(Value, Petition), Vec<FieldError>> {
    let mut fields: Map<String, Value> = mapped.fields.clone();
    let source_id = mapped.source_id.clone().unwrap_or_default();
    fields.insert("id".into(), Value::String(petition_id(channel, &source_id)));
    fields.insert("channel".into(), Value::String(channel.into()));
    fields.insert("received_at".into(), Value::String(received_at.into()));
    fields.insert("trace_id".into(), Value::String(trace_id.into()));
    if !fields.contains_key("reported_at") {
        fields.insert("reported_at".into(), Value::String(received_at.into()));
        fields.insert("reported_at_unknown".into(), Value::Bool(true));
    }
    fields
        .entry("attachments")
        .or_insert_with(|| Value::Array(Vec::new()));
    fields
        .entry("reporter")
        .or_insert_with(|| Value::Object(Map::new()));

    let location = fields
        .entry("location")
        .or_insert_with(|| Value::Object(Map::new()));
    let text = mapped
        .fields
        .get("text")
        .and_then(Value::as_str)
        .unwrap_or("");
    let point = location
        .get("point")
        .and_then(|p| Some((p.get("lat")?.as_f64()?, p.get("lon")?.as_f64()?)));
    let region = regions.resolve(&region::Clues {
        grid_code: location.get("grid_code").and_then(Value::as_str),
        point,
        address: location.get("address").and_then(Value::as_str),
        text,
    });
    if let Value::Object(loc) = location {
        loc.insert(
            "region".into(),
            serde_json::to_value(&region).unwrap_or(Value::Null),
        );
    }

    let value = Value::Object(fields);
    let errors = schemas.petition_errors(&value);
    if !errors.is_empty() {
        return Err(errors
            .into_iter()
            .map(|(pointer, message)| {
                let path = mapped
                    .source_path(&pointer)
                    .unwrap_or_else(|| format!("(petition){pointer}"));
                FieldError::new(path, message)
            })
            .collect());
    }
    match serde_json::from_value::<Petition>(value.clone()) {
        Ok(petition) => Ok((value, petition)),
        Err(e) => Err(vec![FieldError::new("/", format!("petition model: {e}"))]),
    }
}
