//! XML bodies as JSON, so one mapper (JSON Pointers) serves JSON and XML channels alike.
//!
//! `<response><total>2</total><clue><clueId>A</clueId></clue><clue>…</clue></response>`
//! becomes `{"response": {"total": "2", "clue": [{"clueId": "A"}, …]}}`: an element with
//! only text is a string, repeated children become an array, attributes are kept as
//! `@name`. Text is never converted to numbers (a transform decides that).

use quick_xml::events::Event;
use quick_xml::Reader;
use serde_json::{Map, Value};

pub fn xml_to_json(xml: &str) -> Result<Value, String> {
    let mut reader = Reader::from_str(xml);
    // Stack of (element name, children, text).
    let mut stack: Vec<(String, Map<String, Value>, String)> = Vec::new();
    let mut root: Option<(String, Value)> = None;
    loop {
        let position = reader.buffer_position();
        match reader.read_event() {
            Ok(Event::Start(e)) => {
                let name = String::from_utf8_lossy(e.name().as_ref()).into_owned();
                let mut attrs = Map::new();
                for a in e.attributes().flatten() {
                    let key = format!("@{}", String::from_utf8_lossy(a.key.as_ref()));
                    let value = a
                        .unescape_value()
                        .map_err(|err| format!("at byte {position}: {err}"))?;
                    attrs.insert(key, Value::String(value.into_owned()));
                }
                stack.push((name, attrs, String::new()));
            }
            Ok(Event::Empty(e)) => {
                let name = String::from_utf8_lossy(e.name().as_ref()).into_owned();
                let value = Value::String(String::new());
                match stack.last_mut() {
                    Some((_, children, _)) => insert_child(children, name, value),
                    None => root = Some((name, value)),
                }
            }
            Ok(Event::Text(t)) => {
                let text = t
                    .decode()
                    .map_err(|err| format!("at byte {position}: {err}"))?;
                let text = quick_xml::escape::unescape(&text)
                    .map_err(|err| format!("at byte {position}: {err}"))?;
                if let Some((_, _, buf)) = stack.last_mut() {
                    buf.push_str(&text);
                }
            }
            Ok(Event::CData(c)) => {
                if let Some((_, _, buf)) = stack.last_mut() {
                    buf.push_str(&String::from_utf8_lossy(&c));
                }
            }
            Ok(Event::GeneralRef(r)) => {
                let name = String::from_utf8_lossy(&r).into_owned();
                let text = match name.as_str() {
                    "lt" => "<".to_string(),
                    "gt" => ">".to_string(),
                    "amp" => "&".to_string(),
                    "apos" => "'".to_string(),
                    "quot" => "\"".to_string(),
                    other => match r.resolve_char_ref() {
                        Ok(Some(c)) => c.to_string(),
                        _ => return Err(format!("at byte {position}: unknown entity &{other};")),
                    },
                };
                if let Some((_, _, buf)) = stack.last_mut() {
                    buf.push_str(&text);
                }
            }
            Ok(Event::End(_)) => {
                let Some((name, children, text)) = stack.pop() else {
                    return Err(format!("at byte {position}: unexpected closing tag"));
                };
                let value = if children.is_empty() {
                    Value::String(text.trim().to_string())
                } else {
                    Value::Object(children)
                };
                match stack.last_mut() {
                    Some((_, parent, _)) => insert_child(parent, name, value),
                    None => root = Some((name, value)),
                }
            }
            Ok(Event::Eof) => break,
            Ok(_) => {}
            Err(e) => return Err(format!("malformed XML at byte {position}: {e}")),
        }
    }
    if !stack.is_empty() {
        return Err("malformed XML: unclosed element".into());
    }
    let (name, value) = root.ok_or("empty XML document")?;
    let mut doc = Map::new();
    doc.insert(name, value);
    Ok(Value::Object(doc))
}

fn insert_child(children: &mut Map<String, Value>, name: String, value: Value) {
    match children.get_mut(&name) {
        Some(Value::Array(items)) => items.push(value),
        Some(existing) => {
            let first = existing.take();
            *existing = Value::Array(vec![first, value]);
        }
        None => {
            children.insert(name, value);
        }
    }
}

/// Items at `pointer`, whether XML gave one element (an object) or several (an array).
pub fn items_at(doc: &Value, pointer: &str) -> Vec<Value> {
    match doc.pointer(pointer) {
        Some(Value::Array(items)) => items.clone(),
        Some(Value::Null) | None => Vec::new(),
        Some(Value::String(s)) if s.is_empty() => Vec::new(),
        Some(one) => vec![one.clone()],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_page_of_clues_becomes_json() {
        let doc = xml_to_json(
            "<response><total>2</total>\
             <clue><clueId>A</clueId><content>拖欠 &amp; 账款</content></clue>\
             <clue><clueId>B</clueId><content><![CDATA[<b>x</b>]]></content></clue></response>",
        )
        .unwrap();
        assert_eq!(doc["response"]["total"], json!("2"));
        let clues = items_at(&doc, "/response/clue");
        assert_eq!(clues.len(), 2);
        assert_eq!(clues[0]["content"], json!("拖欠 & 账款"));
        assert_eq!(clues[1]["content"], json!("<b>x</b>"));
    }

    #[test]
    fn one_item_is_still_a_list_and_none_is_empty() {
        let doc =
            xml_to_json("<response><total>1</total><clue><clueId>A</clueId></clue></response>")
                .unwrap();
        assert_eq!(items_at(&doc, "/response/clue").len(), 1);
        let doc = xml_to_json("<response><total>0</total></response>").unwrap();
        assert!(items_at(&doc, "/response/clue").is_empty());
    }

    #[test]
    fn malformed_xml_is_an_error_not_a_panic() {
        assert!(xml_to_json("<clue><clueId>A</clue>").is_err());
        assert!(xml_to_json("").is_err());
        assert!(xml_to_json("<a><b></a>").is_err());
    }

    #[test]
    fn entity_expansion_is_refused() {
        // A billion laughs: declared entities are never expanded, only the five XML
        // ones and character references are.
        let bomb = r#"<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<response><clue><content>&lol3;</content></clue></response>"#;
        let e = xml_to_json(bomb).err().unwrap_or_default();
        assert!(e.contains("unknown entity &lol3;"), "{e}");
        let plain = xml_to_json("<a><b>&lt;&#x4e2d;&amp;</b></a>").unwrap_or_default();
        assert_eq!(plain["a"]["b"], "<中&");
    }

    #[test]
    fn an_external_entity_is_never_read() {
        let xxe = r#"<?xml version="1.0"?>
<!DOCTYPE clue [<!ENTITY secret SYSTEM "file:///etc/passwd">]>
<clue><content>&secret;</content></clue>"#;
        let e = xml_to_json(xxe).err().unwrap_or_default();
        assert!(e.contains("unknown entity &secret;"), "{e}");
        assert!(!e.contains("root:"), "{e}");
    }
}
