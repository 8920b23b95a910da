//! The published JSON Schemas, compiled once and enforced on every record we publish.

use jsonschema::Validator;
use serde_json::Value;

pub const PETITION_SCHEMA: &str = include_str!("../../schemas/petition.v1.schema.json");
pub const STATUS_EVENT_SCHEMA: &str = include_str!("../../schemas/status-event.v1.schema.json");
pub const DEPARTMENT_RECORD_SCHEMA: &str =
    include_str!("../../schemas/department-record.v1.schema.json");

pub struct Schemas {
    petition: Validator,
    status_event: Validator,
    department_record: Validator,
}

#[derive(Debug, thiserror::Error)]
#[error("schema {name}: {message}")]
pub struct SchemaError {
    pub name: &'static str,
    pub message: String,
}

fn compile(name: &'static str, text: &str) -> Result<Validator, SchemaError> {
    let schema: Value = serde_json::from_str(text).map_err(|e| SchemaError {
        name,
        message: e.to_string(),
    })?;
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .should_validate_formats(true)
        .build(&schema)
        .map_err(|e| SchemaError {
            name,
            message: e.to_string(),
        })
}

impl Schemas {
    pub fn compile() -> Result<Self, SchemaError> {
        Ok(Self {
            petition: compile("petition.v1", PETITION_SCHEMA)?,
            status_event: compile("status-event.v1", STATUS_EVENT_SCHEMA)?,
            department_record: compile("department-record.v1", DEPARTMENT_RECORD_SCHEMA)?,
        })
    }

    /// Every violation as (JSON Pointer into the instance, message).
    pub fn petition_errors(&self, instance: &Value) -> Vec<(String, String)> {
        errors(&self.petition, instance)
    }

    pub fn status_event_errors(&self, instance: &Value) -> Vec<(String, String)> {
        errors(&self.status_event, instance)
    }

    /// What departments read (the contract the dispatcher's records keep; tested).
    pub fn department_record_errors(&self, instance: &Value) -> Vec<(String, String)> {
        errors(&self.department_record, instance)
    }
}

fn errors(validator: &Validator, instance: &Value) -> Vec<(String, String)> {
    validator
        .iter_errors(instance)
        .map(|e| {
            let pointer = e.instance_path().to_string();
            (pointer, e.to_string())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn valid_petition() -> Value {
        json!({
            "id": "3f1e2d4c-5b6a-5978-8a9b-0c1d2e3f4a5b", "channel": "hotline",
            "source_id": "RC1", "received_at": "2026-11-24T09:15:04+08:00",
            "reported_at": "2026-11-24T09:15:03+08:00", "kind": "complaint",
            "text": "路灯坏了", "urgency": "normal", "reporter": {"phone": ""},
            "location": {"region": {"code": "371082", "level": "county", "resolved_by": "default"}},
            "attachments": [], "trace_id": "0af7651916cd43dd8448eb211c80319c"
        })
    }

    #[test]
    fn both_schemas_compile_and_accept_a_valid_instance() {
        let s = Schemas::compile().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.petition_errors(&valid_petition()), vec![]);
        let event = json!({"case_id": "c1", "status": "accepted", "department": "water",
            "at": "2026-11-24T10:00:00+08:00"});
        assert_eq!(s.status_event_errors(&event), vec![]);
    }

    #[test]
    fn violations_name_their_pointer() {
        let s = Schemas::compile().unwrap_or_else(|e| panic!("{e}"));
        let mut p = valid_petition();
        p["reporter"]["phone"] = json!("138 0631 2345");
        p["received_at"] = json!("yesterday");
        p["kind"] = json!("rant");
        let mut pointers: Vec<_> = s.petition_errors(&p).into_iter().map(|(p, _)| p).collect();
        pointers.sort();
        assert_eq!(pointers, vec!["/kind", "/received_at", "/reporter/phone"]);
    }

    #[test]
    fn a_reassignment_needs_its_target() {
        let s = Schemas::compile().unwrap_or_else(|e| panic!("{e}"));
        let event = json!({"case_id": "c1", "status": "reassigned", "department": "water",
            "at": "2026-11-24T10:00:00+08:00"});
        assert!(!s.status_event_errors(&event).is_empty());
    }
}
