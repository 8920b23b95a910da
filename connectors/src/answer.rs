//! Answer envelopes: what a push channel gets back, in its own convention.
//!
//! A connector file gives the success body and one error body as JSON templates. A string
//! that is exactly `{{name}}` is replaced by the variable's typed value (so `errors` stays
//! a list and `code` a number); `{{name}}` inside a longer string is interpolated as text.

use crate::error::FieldError;
use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// Why a request was not accepted, as far as the answer is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnswerClass {
    /// Malformed body, missing or invalid fields.
    Invalid,
    /// Missing or wrong credentials.
    Unauthorized,
    /// Body over the connector's limit.
    TooLarge,
    /// The channel sent faster than its rate limit.
    RateLimited,
    /// The gateway could not store the petition (Kafka unavailable): try again.
    Unavailable,
}

impl AnswerClass {
    pub const ALL: [AnswerClass; 5] = [
        AnswerClass::Invalid,
        AnswerClass::Unauthorized,
        AnswerClass::TooLarge,
        AnswerClass::RateLimited,
        AnswerClass::Unavailable,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AnswerClass::Invalid => "invalid",
            AnswerClass::Unauthorized => "unauthorized",
            AnswerClass::TooLarge => "too_large",
            AnswerClass::RateLimited => "rate_limited",
            AnswerClass::Unavailable => "unavailable",
        }
    }

    /// Whether the sender should send the same request again later.
    pub fn retryable(self) -> bool {
        matches!(self, AnswerClass::RateLimited | AnswerClass::Unavailable)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnswerSpec {
    pub success: SuccessAnswer,
    pub error: ErrorAnswer,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SuccessAnswer {
    pub status: u16,
    /// Variables: `receipt` (the petition id), `source_id`.
    pub body: Value,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorAnswer {
    /// Variables: `code`, `message`, `errors` (list of `{path, message}`), `detail`
    /// (the errors as one line of text), `source_id`.
    pub body: Value,
    /// One entry per [`AnswerClass`]: HTTP status, the channel's code and message.
    pub classes: BTreeMap<AnswerClass, ErrorClassSpec>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorClassSpec {
    pub status: u16,
    pub code: Value,
    pub message: String,
}

/// A rendered answer, ready for the HTTP layer.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
}

impl AnswerSpec {
    pub fn problems(&self, key: &str) -> Vec<String> {
        let mut problems = Vec::new();
        if !(200..300).contains(&self.success.status) {
            problems.push(format!("{key}.success.status: must be 2xx"));
        }
        for class in AnswerClass::ALL {
            match self.error.classes.get(&class) {
                None => problems.push(format!(
                    "{key}.error.classes.{}: missing (every class needs an answer)",
                    class.as_str()
                )),
                Some(spec) if !(100..600).contains(&spec.status) => problems.push(format!(
                    "{key}.error.classes.{}.status: {} is not an HTTP status",
                    class.as_str(),
                    spec.status
                )),
                _ => {}
            }
        }
        problems
    }

    pub fn success(&self, receipt: &str, source_id: &str) -> Answer {
        let mut vars = Map::new();
        vars.insert("receipt".into(), Value::String(receipt.into()));
        vars.insert("source_id".into(), Value::String(source_id.into()));
        Answer {
            status: self.success.status,
            body: render(&self.success.body, &vars),
        }
    }

    pub fn error(&self, class: AnswerClass, errors: &[FieldError], source_id: &str) -> Answer {
        let (status, code, message) = match self.error.classes.get(&class) {
            Some(spec) => (spec.status, spec.code.clone(), spec.message.clone()),
            // Definitions are validated at load; this only guards a hand-built spec.
            None => (500, Value::from(-1), class.as_str().to_string()),
        };
        let detail = errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        let mut vars = Map::new();
        vars.insert("code".into(), code);
        vars.insert("message".into(), Value::String(message));
        vars.insert("detail".into(), Value::String(detail));
        vars.insert(
            "errors".into(),
            serde_json::to_value(errors).unwrap_or(Value::Null),
        );
        vars.insert("source_id".into(), Value::String(source_id.into()));
        Answer {
            status,
            body: render(&self.error.body, &vars),
        }
    }
}

fn render(template: &Value, vars: &Map<String, Value>) -> Value {
    // `{"$each_error": {…}}` renders one element per error, with `error.path` and
    // `error.message` (Open311's `[{"code", "description"}]` error list).
    if let Some(inner) = template.as_object().and_then(|o| o.get("$each_error")) {
        let errors = vars
            .get("errors")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        return Value::Array(
            errors
                .iter()
                .map(|e| {
                    let mut v = vars.clone();
                    v.insert(
                        "error.path".into(),
                        e.get("path").cloned().unwrap_or(Value::Null),
                    );
                    v.insert(
                        "error.message".into(),
                        e.get("message").cloned().unwrap_or(Value::Null),
                    );
                    render(inner, &v)
                })
                .collect(),
        );
    }
    match template {
        Value::String(s) => {
            if let Some(name) = s.strip_prefix("{{").and_then(|r| r.strip_suffix("}}")) {
                if let Some(v) = vars.get(name.trim()) {
                    return v.clone();
                }
            }
            let mut out = s.clone();
            for (name, value) in vars {
                let needle = format!("{{{{{name}}}}}");
                if out.contains(&needle) {
                    let text = match value {
                        Value::String(t) => t.clone(),
                        other => other.to_string(),
                    };
                    out = out.replace(&needle, &text);
                }
            }
            Value::String(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(|v| render(v, vars)).collect()),
        Value::Object(fields) => Value::Object(
            fields
                .iter()
                .map(|(k, v)| (k.clone(), render(v, vars)))
                .collect(),
        ),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec() -> AnswerSpec {
        let classes = AnswerClass::ALL
            .iter()
            .map(|c| {
                (
                    *c,
                    ErrorClassSpec {
                        status: 200,
                        code: json!(4001),
                        message: "数据不合法".into(),
                    },
                )
            })
            .collect();
        AnswerSpec {
            success: SuccessAnswer {
                status: 200,
                body: json!({"code": 0, "msg": "ok", "data": {"receipt": "{{receipt}}"}}),
            },
            error: ErrorAnswer {
                body: json!({"code": "{{code}}", "msg": "{{message}}：{{detail}}", "errors": "{{errors}}"}),
                classes,
            },
        }
    }

    #[test]
    fn success_fills_the_receipt() {
        let a = spec().success("p-1", "RC1");
        assert_eq!(a.status, 200);
        assert_eq!(
            a.body,
            json!({"code": 0, "msg": "ok", "data": {"receipt": "p-1"}})
        );
    }

    #[test]
    fn errors_keep_types_and_interpolate_text() {
        let errs = vec![
            FieldError::new("/ldsj", "bad time"),
            FieldError::new("/sqnr", "missing"),
        ];
        let a = spec().error(AnswerClass::Invalid, &errs, "RC1");
        assert_eq!(a.body["code"], json!(4001));
        assert_eq!(
            a.body["msg"],
            json!("数据不合法：/ldsj: bad time; /sqnr: missing")
        );
        assert_eq!(a.body["errors"][1]["path"], json!("/sqnr"));
    }

    #[test]
    fn each_error_renders_one_element_per_error() {
        let mut s = spec();
        s.error.body = json!({"$each_error": {"code": "{{code}}", "description": "{{error.path}}: {{error.message}}"}});
        let errs = vec![
            FieldError::new("/lat", "not a number"),
            FieldError::new("/description", "is required"),
        ];
        let a = s.error(AnswerClass::Invalid, &errs, "");
        assert_eq!(
            a.body,
            json!([
                {"code": 4001, "description": "/lat: not a number"},
                {"code": 4001, "description": "/description: is required"}
            ])
        );
    }

    #[test]
    fn a_missing_class_is_a_problem() {
        let mut s = spec();
        s.error.classes.remove(&AnswerClass::TooLarge);
        let problems = s.problems("intake.answer");
        assert_eq!(problems.len(), 1);
        assert!(problems[0].contains("too_large"));
    }
}
