//! `{{variable}}` templates for callback URLs, bodies and messages, and the body tree that
//! keeps the connector file's order.
//!
//! Syntax: `{{name}}`, `{{name:argument}}` (a time format), `{{name|fallback}}` (text used
//! when the value is absent or empty). The fallback is split off first, so a format may
//! contain `:` but not `|`.

use serde::de::{Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeMap, SerializeSeq, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fmt;

/// One piece of a parsed template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Segment<'a> {
    Text(&'a str),
    Var(Var<'a>),
}

/// A `{{…}}` reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Var<'a> {
    pub name: &'a str,
    pub arg: Option<&'a str>,
    pub fallback: Option<&'a str>,
}

pub(crate) fn parse(template: &str) -> Result<Vec<Segment<'_>>, String> {
    let mut segments = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        if start > 0 {
            segments.push(Segment::Text(&rest[..start]));
        }
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| format!("{template:?}: \"{{{{\" is never closed"))?;
        segments.push(Segment::Var(parse_var(&after[..end])?));
        rest = &after[end + 2..];
    }
    if !rest.is_empty() {
        segments.push(Segment::Text(rest));
    }
    Ok(segments)
}

fn parse_var(inner: &str) -> Result<Var<'_>, String> {
    let (head, fallback) = match inner.split_once('|') {
        Some((head, fallback)) => (head, Some(fallback)),
        None => (inner, None),
    };
    let (name, arg) = match head.split_once(':') {
        Some((name, arg)) => (name.trim(), Some(arg)),
        None => (head.trim(), None),
    };
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        return Err(format!(
            "{{{{{inner}}}}}: {name:?} is not a variable name (lowercase letters, digits, _)"
        ));
    }
    Ok(Var {
        name,
        arg,
        fallback,
    })
}

/// A body as the connector file wrote it. Tables keep their order (serde_json's map would
/// sort the keys, and an XML receiver may validate element order against a schema).
#[derive(Debug, Clone, PartialEq)]
pub enum BodyTemplate {
    /// A string template, or a constant number or boolean.
    Scalar(Value),
    List(Vec<BodyTemplate>),
    Table(Vec<(String, BodyTemplate)>),
}

impl BodyTemplate {
    /// Calls `f` with every string template and its key path (`callback.body.clsj`).
    pub(crate) fn each_string<'a>(&'a self, key: &str, f: &mut dyn FnMut(&str, &'a str)) {
        match self {
            BodyTemplate::Scalar(Value::String(s)) => f(key, s),
            BodyTemplate::Scalar(_) => {}
            BodyTemplate::List(items) => {
                for (i, item) in items.iter().enumerate() {
                    item.each_string(&format!("{key}[{i}]"), f);
                }
            }
            BodyTemplate::Table(fields) => {
                for (name, value) in fields {
                    value.each_string(&format!("{key}.{name}"), f);
                }
            }
        }
    }

    /// Calls `f` with every table key and its key path.
    pub(crate) fn each_key(&self, key: &str, f: &mut dyn FnMut(&str, &str)) {
        match self {
            BodyTemplate::Scalar(_) => {}
            BodyTemplate::List(items) => {
                for (i, item) in items.iter().enumerate() {
                    item.each_key(&format!("{key}[{i}]"), f);
                }
            }
            BodyTemplate::Table(fields) => {
                for (name, value) in fields {
                    let path = format!("{key}.{name}");
                    f(&path, name);
                    value.each_key(&path, f);
                }
            }
        }
    }

    /// Renders every string with `fill`; constants are copied.
    pub(crate) fn render<E>(
        &self,
        fill: &mut dyn FnMut(&str) -> Result<Value, E>,
    ) -> Result<Rendered, E> {
        Ok(match self {
            BodyTemplate::Scalar(Value::String(s)) => Rendered::Value(fill(s)?),
            BodyTemplate::Scalar(v) => Rendered::Value(v.clone()),
            BodyTemplate::List(items) => Rendered::List(
                items
                    .iter()
                    .map(|i| i.render(fill))
                    .collect::<Result<_, _>>()?,
            ),
            BodyTemplate::Table(fields) => Rendered::Table(
                fields
                    .iter()
                    .map(|(k, v)| Ok((k.clone(), v.render(fill)?)))
                    .collect::<Result<_, _>>()?,
            ),
        })
    }
}

impl<'de> Deserialize<'de> for BodyTemplate {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(BodyVisitor)
    }
}

struct BodyVisitor;

impl<'de> Visitor<'de> for BodyVisitor {
    type Value = BodyTemplate;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string, number, boolean, array or table")
    }

    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(BodyTemplate::Scalar(Value::Bool(v)))
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(BodyTemplate::Scalar(Value::from(v)))
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(BodyTemplate::Scalar(Value::from(v)))
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Self::Value, E> {
        serde_json::Number::from_f64(v)
            .map(|n| BodyTemplate::Scalar(Value::Number(n)))
            .ok_or_else(|| E::custom("a number in a body must be finite"))
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(BodyTemplate::Scalar(Value::String(v.to_string())))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(BodyTemplate::List(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut fields = Vec::new();
        while let Some((key, value)) = map.next_entry::<String, BodyTemplate>()? {
            fields.push((key, value));
        }
        Ok(BodyTemplate::Table(fields))
    }
}

/// A rendered body, in the template's order.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Rendered {
    Value(Value),
    List(Vec<Rendered>),
    Table(Vec<(String, Rendered)>),
}

impl Rendered {
    /// Applies `f` to every string value (not to keys, which are the template's own).
    pub(crate) fn map_strings<E>(
        self,
        f: &mut dyn FnMut(String) -> Result<String, E>,
    ) -> Result<Rendered, E> {
        Ok(match self {
            Rendered::Value(Value::String(s)) => Rendered::Value(Value::String(f(s)?)),
            Rendered::Value(v) => Rendered::Value(v),
            Rendered::List(items) => Rendered::List(
                items
                    .into_iter()
                    .map(|i| i.map_strings(f))
                    .collect::<Result<_, _>>()?,
            ),
            Rendered::Table(fields) => Rendered::Table(
                fields
                    .into_iter()
                    .map(|(k, v)| Ok((k, v.map_strings(f)?)))
                    .collect::<Result<_, _>>()?,
            ),
        })
    }

    /// The body as XML under `root`: tables are elements, lists repeat their element,
    /// values are escaped text.
    pub(crate) fn to_xml(&self, root: &str) -> String {
        let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>");
        write_xml(&mut out, root, self);
        out
    }
}

fn write_xml(out: &mut String, name: &str, node: &Rendered) {
    match node {
        Rendered::List(items) => {
            for item in items {
                write_xml(out, name, item);
            }
        }
        Rendered::Table(fields) => {
            out.push('<');
            out.push_str(name);
            out.push('>');
            for (child, value) in fields {
                write_xml(out, child, value);
            }
            out.push_str("</");
            out.push_str(name);
            out.push('>');
        }
        Rendered::Value(value) => {
            out.push('<');
            out.push_str(name);
            out.push('>');
            // Characters XML 1.0 cannot carry at all (most C0 controls) are dropped: a
            // stray control character in a note must not make the whole document invalid.
            let text: String = value_text(value)
                .chars()
                .filter(|c| matches!(c, '\t' | '\n' | '\r') || *c >= ' ')
                .filter(|c| !matches!(c, '\u{FFFE}' | '\u{FFFF}'))
                .collect();
            out.push_str(&quick_xml::escape::escape(text.as_str()));
            out.push_str("</");
            out.push_str(name);
            out.push('>');
        }
    }
}

/// A value as text: strings as they are, null as nothing, anything else as JSON.
pub(crate) fn value_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

impl Serialize for Rendered {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Rendered::Value(v) => v.serialize(serializer),
            Rendered::List(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Rendered::Table(fields) => {
                let mut map = serializer.serialize_map(Some(fields.len()))?;
                for (k, v) in fields {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
        }
    }
}

/// Whether `name` is an XML element name we can write without escaping (ASCII subset).
pub(crate) fn is_xml_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        && !name.to_ascii_lowercase().starts_with("xml")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn templates_split_into_text_and_variables() {
        let segments = parse("经{{department_name|承办单位}}办理，{{at_local:%H:%M}}").unwrap();
        assert_eq!(
            segments,
            vec![
                Segment::Text("经"),
                Segment::Var(Var {
                    name: "department_name",
                    arg: None,
                    fallback: Some("承办单位")
                }),
                Segment::Text("办理，"),
                Segment::Var(Var {
                    name: "at_local",
                    arg: Some("%H:%M"),
                    fallback: None
                }),
            ]
        );
        assert_eq!(parse("").unwrap(), vec![]);
        assert_eq!(parse("a }} b").unwrap(), vec![Segment::Text("a }} b")]);
    }

    #[test]
    fn broken_templates_are_errors() {
        assert!(parse("{{note").unwrap_err().contains("never closed"));
        assert!(parse("{{}}").is_err());
        assert!(parse("{{Note}}").is_err());
        assert!(
            parse("{{ note }}").is_ok(),
            "spaces around a name are allowed"
        );
    }

    #[test]
    fn bodies_keep_the_files_order_in_json_and_xml() {
        let body: BodyTemplate =
            toml::from_str("status = \"s\"\nhandlingDept = \"d\"\nresult = 1\ntime = true\n")
                .unwrap();
        let rendered = body
            .render(&mut |s| Ok::<_, ()>(Value::String(format!("<{s}&>"))))
            .unwrap();
        assert_eq!(
            serde_json::to_string(&rendered).unwrap(),
            r#"{"status":"<s&>","handlingDept":"<d&>","result":1,"time":true}"#
        );
        assert_eq!(
            rendered.to_xml("feedback"),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><feedback><status>&lt;s&amp;&gt;</status>\
             <handlingDept>&lt;d&amp;&gt;</handlingDept><result>1</result><time>true</time></feedback>"
        );
    }

    #[test]
    fn xml_lists_repeat_and_controls_are_dropped() {
        let r = Rendered::Table(vec![
            (
                "item".into(),
                Rendered::List(vec![
                    Rendered::Value(json!("a")),
                    Rendered::Value(json!("b\u{1}")),
                ]),
            ),
            ("none".into(), Rendered::Value(Value::Null)),
        ]);
        assert!(r
            .to_xml("r")
            .ends_with("<r><item>a</item><item>b</item><none></none></r>"));
    }

    #[test]
    fn xml_names() {
        assert!(is_xml_name("handlingDept"));
        assert!(is_xml_name("a_b-c.d"));
        assert!(!is_xml_name("1a"));
        assert!(!is_xml_name("a b"));
        assert!(!is_xml_name("xmlThing"));
        assert!(!is_xml_name(""));
    }
}
