//! JSON bodies read strictly: a key given twice in one object is refused at its path.
//! `serde_json` keeps the last of them without a word, so `{"gdbh": "RC-1", "gdbh":
//! "RC-2"}` would be stored as RC-2 while the sender's own systems (or a proxy's) read
//! RC-1: two readings of one petition. Everything else is `serde_json`'s (its recursion
//! limit refuses deep nesting, a number out of range is malformed, so is invalid UTF-8).

use serde::de::{DeserializeSeed, Error as _, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use std::cell::RefCell;

/// Why a body was refused: where (a JSON pointer, `/` for the body) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub path: String,
    pub message: String,
}

/// Parses `bytes` as JSON, refusing duplicate keys.
pub fn parse(bytes: &[u8]) -> Result<Value, Refused> {
    let duplicate = RefCell::new(None);
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let parsed = Strict {
        at: None,
        duplicate: &duplicate,
    }
    .deserialize(&mut de)
    .and_then(|v| de.end().map(|()| v));
    parsed.map_err(|e| match duplicate.into_inner() {
        Some((path, key)) => Refused {
            path,
            message: format!("the key {key:?} appears twice in one object"),
        },
        None => Refused {
            path: "/".into(),
            message: format!(
                "malformed JSON at line {} column {}: {e}",
                e.line(),
                e.column()
            ),
        },
    })
}

/// Where a value stands: its parent and its key or index. Only written out as a JSON
/// pointer when a duplicate is found, so reading a body allocates no paths.
struct Step<'a> {
    parent: Option<&'a Step<'a>>,
    key: Key<'a>,
}

enum Key<'a> {
    Name(&'a str),
    Index(usize),
}

fn pointer(step: Option<&Step<'_>>) -> String {
    let mut keys = Vec::new();
    let mut at = step;
    while let Some(s) = at {
        keys.push(match s.key {
            Key::Name(k) => k.replace('~', "~0").replace('/', "~1"),
            Key::Index(i) => i.to_string(),
        });
        at = s.parent;
    }
    keys.iter().rev().map(|k| format!("/{k}")).collect()
}

struct Strict<'a> {
    /// The value being read (`None`: the body).
    at: Option<&'a Step<'a>>,
    /// The first duplicate found: (its pointer, the key).
    duplicate: &'a RefCell<Option<(String, String)>>,
}

impl<'de> DeserializeSeed<'de> for Strict<'_> {
    type Value = Value;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        loop {
            let step = Step {
                parent: self.at,
                key: Key::Index(items.len()),
            };
            let child = Strict {
                at: Some(&step),
                duplicate: self.duplicate,
            };
            match seq.next_element_seed(child)? {
                Some(v) => items.push(v),
                None => return Ok(Value::Array(items)),
            }
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let step = Step {
                parent: self.at,
                key: Key::Name(&key),
            };
            if object.contains_key(&key) {
                *self.duplicate.borrow_mut() = Some((pointer(Some(&step)), key.clone()));
                return Err(A::Error::custom(format!("duplicate key {key:?}")));
            }
            let value = map.next_value_seed(Strict {
                at: Some(&step),
                duplicate: self.duplicate,
            })?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_given_twice_is_refused_at_its_path() {
        let r = parse(br#"{"gdbh": "RC-1", "fj": [{"a": 1, "a": 2}], "gdbh": "RC-2"}"#);
        assert_eq!(
            r,
            Err(Refused {
                path: "/fj/0/a".into(),
                message: "the key \"a\" appears twice in one object".into()
            })
        );
        let r = parse(br#"{"gdbh": "RC-1", "gdbh": "RC-2"}"#);
        assert_eq!(r.map_err(|e| e.path), Err("/gdbh".to_string()));
    }

    #[test]
    fn everything_else_reads_as_serde_json_reads_it() {
        let text = r#"{"a": [1, -2, 3.5, "x", null, true, {"b": {}}], "c": "楼道"}"#;
        let strict = parse(text.as_bytes()).unwrap_or_default();
        let plain: Value = serde_json::from_str(text).unwrap_or_default();
        assert_eq!(strict, plain);
        for bad in [
            &b"{\"a\": \"\xff\"}"[..],
            b"{\"a\": 1e400}",
            b"{\"a\": 1} trailing",
            b"{\"a\": ",
        ] {
            let r = parse(bad);
            assert!(
                r.as_ref()
                    .is_err_and(|e| e.path == "/" && e.message.contains("malformed JSON")),
                "{r:?}"
            );
        }
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        assert!(parse(deep.as_bytes()).is_err_and(|e| e.message.contains("recursion limit")));
    }
}
