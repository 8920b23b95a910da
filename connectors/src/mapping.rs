//! The mapper: a channel's payload → the petition fields its connector file declares.

use crate::definition::{ConnectorDefinition, FieldRule};
use crate::error::FieldError;
use serde_json::{Map, Value};

/// Petition fields built from one payload, and where each came from (for error paths).
#[derive(Debug, Clone, PartialEq)]
pub struct MappedPetition {
    pub fields: Map<String, Value>,
    /// source_id as mapped, for answers that echo it.
    pub source_id: Option<String>,
    sources: Vec<(String, String)>,
}

impl MappedPetition {
    /// Translates a JSON Pointer into the petition (`/reporter/phone`, `/attachments/0`)
    /// into the sender's payload path (`/ldhm`, `/fj/0`), so a schema violation found on
    /// the canonical form is reported where the sender can fix it.
    pub fn source_path(&self, petition_pointer: &str) -> Option<String> {
        self.sources
            .iter()
            .filter_map(|(target, from)| {
                let target_ptr = format!("/{}", target.replace('.', "/"));
                let rest = petition_pointer.strip_prefix(&target_ptr)?;
                (rest.is_empty() || rest.starts_with('/')).then(|| format!("{from}{rest}"))
            })
            .next()
    }
}

/// Applies every field rule, collecting every problem rather than stopping at the first.
pub fn map_payload(
    def: &ConnectorDefinition,
    payload: &Value,
) -> Result<MappedPetition, Vec<FieldError>> {
    if !payload.is_object() {
        return Err(vec![FieldError::new("/", "expected a JSON object")]);
    }
    let mut fields = Map::new();
    let mut errors = Vec::new();
    let mut sources = Vec::new();
    for rule in &def.mapping {
        match apply_rule(rule, payload) {
            Ok(Value::Null) => {}
            Ok(value) => set_dotted(&mut fields, &rule.target, value),
            Err(e) => errors.push(e),
        }
        if let Some(from) = &rule.from {
            sources.push((rule.target.clone(), from.clone()));
        }
    }
    if errors.is_empty() {
        let source_id = fields
            .get("source_id")
            .and_then(Value::as_str)
            .map(str::to_string);
        Ok(MappedPetition {
            fields,
            source_id,
            sources,
        })
    } else {
        Err(errors)
    }
}

fn apply_rule(rule: &FieldRule, payload: &Value) -> Result<Value, FieldError> {
    let (path, mut value) = match (&rule.from, &rule.value) {
        (Some(from), _) => (
            from.as_str(),
            payload.pointer(from).cloned().unwrap_or(Value::Null),
        ),
        (None, Some(constant)) => ("/", constant.clone()),
        (None, None) => ("/", Value::Null),
    };
    if rule.required && value.is_null() {
        return Err(FieldError::new(path, "is required"));
    }
    for transform in &rule.transforms {
        value = transform
            .apply(value)
            .map_err(|message| FieldError::new(path, message))?;
    }
    Ok(value)
}

fn set_dotted(fields: &mut Map<String, Value>, target: &str, value: Value) {
    let mut parts = target.split('.').peekable();
    let mut current = fields;
    while let Some(part) = parts.next() {
        if parts.peek().is_none() {
            current.insert(part.to_string(), value);
            return;
        }
        let entry = current
            .entry(part.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        if !entry.is_object() {
            *entry = Value::Object(Map::new());
        }
        match entry {
            Value::Object(map) => current = map,
            _ => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::path::Path;

    fn hotline() -> ConnectorDefinition {
        match ConnectorDefinition::parse(include_str!("../hotline.toml"), Path::new("hotline.toml"))
        {
            Ok(d) => d,
            Err(e) => panic!("{e}"),
        }
    }

    fn order() -> Value {
        json!({"gdbh": "RC2026112400123", "ldsj": "2026-11-24 09:15:03", "ldhm": "138 0631 2345",
            "ldrxm": "葛女士", "sqlx": "投诉", "jjcd": "紧急",
            "sqnr": " 曙光社区3号楼2单元楼道灯坏了一个多星期。 ",
            "sqdz": "崖头街道曙光社区3号楼", "fj": ["http://hotline.local/rec/123.mp3"]})
    }

    #[test]
    fn a_hotline_work_order_maps_to_canonical_fields() {
        let m = map_payload(&hotline(), &order()).unwrap_or_else(|e| panic!("{e:?}"));
        let f = Value::Object(m.fields.clone());
        assert_eq!(f["source_id"], json!("RC2026112400123"));
        assert_eq!(f["reported_at"], json!("2026-11-24T09:15:03+08:00"));
        assert_eq!(f["reporter"]["phone"], json!("+8613806312345"));
        assert_eq!(f["reporter"]["name"], json!("葛女士"));
        assert_eq!(f["kind"], json!("complaint"));
        assert_eq!(f["urgency"], json!("urgent"));
        assert_eq!(f["text"], json!("曙光社区3号楼2单元楼道灯坏了一个多星期。"));
        assert_eq!(f["location"]["address"], json!("崖头街道曙光社区3号楼"));
        assert_eq!(
            f["attachments"],
            json!(["http://hotline.local/rec/123.mp3"])
        );
        assert_eq!(m.source_id.as_deref(), Some("RC2026112400123"));
    }

    #[test]
    fn anonymous_and_withheld_callers_stay_empty() {
        let mut o = order();
        o["ldrxm"] = json!("匿名");
        o["ldhm"] = json!("");
        let m = map_payload(&hotline(), &o).unwrap_or_else(|e| panic!("{e:?}"));
        assert!(m.fields["reporter"].get("name").is_none());
        assert_eq!(m.fields["reporter"]["phone"], json!(""));
    }

    #[test]
    fn every_problem_is_reported_with_its_path() {
        let mut o = order();
        o["ldsj"] = json!("yesterday");
        o["sqlx"] = json!("吐槽");
        o.as_object_mut().map(|m| m.remove("gdbh"));
        let errors = map_payload(&hotline(), &o).err().unwrap_or_default();
        let paths: Vec<_> = errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, vec!["/gdbh", "/ldsj", "/sqlx"], "{errors:?}");
    }

    #[test]
    fn schema_paths_translate_back_to_payload_paths() {
        let m = map_payload(&hotline(), &order()).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(m.source_path("/reporter/phone").as_deref(), Some("/ldhm"));
        assert_eq!(m.source_path("/attachments/0").as_deref(), Some("/fj/0"));
        assert_eq!(m.source_path("/textual"), None);
    }

    #[test]
    fn a_non_object_body_is_one_error_at_the_root() {
        let errors = map_payload(&hotline(), &json!([1, 2]))
            .err()
            .unwrap_or_default();
        assert_eq!(errors, vec![FieldError::new("/", "expected a JSON object")]);
    }
}
