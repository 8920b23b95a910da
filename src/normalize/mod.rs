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
    let hostile = control_characters(mapped);
    if !hostile.is_empty() {
        return Err(hostile);
    }
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

/// Control characters a petition may not carry, at the sender's path: none in its id (a
/// `RC\u{0}X` work order number would be a second id that looks like the first in every
/// log and screen), and no NUL anywhere (PostgreSQL's text cannot hold it, C consumers
/// cut the string there). Line breaks and tabs in free text are the citizen's.
fn control_characters(mapped: &MappedPetition) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let id_control = |c: char| c.is_control();
    if let Some(id) = &mapped.source_id {
        if let Some(c) = id.chars().find(|c| id_control(*c)) {
            let path = mapped
                .source_path("/source_id")
                .unwrap_or_else(|| "(petition)/source_id".into());
            errors.push(FieldError::new(
                path,
                format!(
                    "the id holds a control character (U+{:04X}); ids are printable text",
                    c as u32
                ),
            ));
        }
    }
    fn walk(value: &Value, pointer: &mut String, found: &mut Vec<String>) {
        match value {
            Value::String(s) if s.contains('\0') => found.push(pointer.clone()),
            Value::Array(items) => {
                for (i, v) in items.iter().enumerate() {
                    let len = pointer.len();
                    pointer.push_str(&format!("/{i}"));
                    walk(v, pointer, found);
                    pointer.truncate(len);
                }
            }
            Value::Object(map) => {
                for (k, v) in map {
                    let len = pointer.len();
                    pointer.push('/');
                    pointer.push_str(&k.replace('~', "~0").replace('/', "~1"));
                    walk(v, pointer, found);
                    pointer.truncate(len);
                }
            }
            _ => {}
        }
    }
    let mut found = Vec::new();
    let mut pointer = String::new();
    for (k, v) in &mapped.fields {
        pointer.clear();
        pointer.push('/');
        pointer.push_str(&k.replace('~', "~0").replace('/', "~1"));
        walk(v, &mut pointer, &mut found);
    }
    for pointer in found {
        let path = mapped
            .source_path(&pointer)
            .unwrap_or_else(|| format!("(petition){pointer}"));
        if !errors.iter().any(|e| e.path == path) {
            errors.push(FieldError::new(path, "holds a NUL character (U+0000)"));
        }
    }
    errors
}
