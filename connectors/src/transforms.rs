//! The fixed library of named transforms a connector file can apply to a field.
//!
//! Each transform takes the value found at a payload path and returns the value to store,
//! or a message saying why the input is unusable (the mapper adds the path).

use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(tag = "fn", rename_all = "snake_case", deny_unknown_fields)]
pub enum Transform {
    /// Trims whitespace (including the ideographic space U+3000) from a string.
    Trim,
    /// Turns listed placeholder values (e.g. `匿名`, `""`) into null.
    NullIf { values: Vec<String> },
    /// Replaces a null or absent value.
    Default { value: Value },
    /// Maps the channel's codes to canonical ones. Unknown input is an error unless
    /// `fallback` is given.
    ValueMap {
        map: BTreeMap<String, Value>,
        #[serde(default)]
        fallback: Option<Value>,
    },
    /// Local time written without a zone (`2026-11-24 09:15:03`) → RFC 3339 in `zone`.
    LocalTime { format: String, zone: String },
    /// Unix seconds → RFC 3339, rendered in `zone`.
    UnixSeconds {
        #[serde(default = "default_zone")]
        zone: String,
    },
    /// Unix milliseconds → RFC 3339, rendered in `zone`.
    UnixMillis {
        #[serde(default = "default_zone")]
        zone: String,
    },
    /// A phone number in any human format → E.164 (`+8613806312345`, landlines too).
    /// `region` is the ISO country for numbers written without a country code.
    /// An empty or absent number stays empty.
    PhoneE164 {
        #[serde(default = "default_phone_region")]
        region: String,
    },
    /// An RFC 3339 time, checked and written uniformly.
    Rfc3339,
    /// A number written as text (form fields) → a JSON number.
    ToNumber,
    /// One value → a one-element list; empty text → an empty list.
    ToArray,
    /// An object with a point → `{lat, lon}` in WGS-84. `lat`/`lon` name the object's
    /// fields; the datum is `datum_field`'s value when present, else `datum`
    /// (`gcj02` or `wgs84`). No coordinates → null.
    Coordinates {
        lat: String,
        lon: String,
        #[serde(default)]
        datum_field: Option<String>,
        #[serde(default = "default_datum")]
        datum: String,
    },
    /// A stable id for channels that have none (Open311): hex SHA-256 of the value's
    /// canonical JSON without the `exclude`d fields, so an identical resend gets the
    /// same petition id.
    ContentHash {
        #[serde(default)]
        exclude: Vec<String>,
    },
}

fn default_datum() -> String {
    "wgs84".into()
}

fn default_zone() -> String {
    "Asia/Shanghai".into()
}

fn default_phone_region() -> String {
    "CN".into()
}

impl Transform {
    pub fn name(&self) -> &'static str {
        match self {
            Transform::Trim => "trim",
            Transform::NullIf { .. } => "null_if",
            Transform::Default { .. } => "default",
            Transform::ValueMap { .. } => "value_map",
            Transform::LocalTime { .. } => "local_time",
            Transform::UnixSeconds { .. } => "unix_seconds",
            Transform::UnixMillis { .. } => "unix_millis",
            Transform::PhoneE164 { .. } => "phone_e164",
            Transform::Rfc3339 => "rfc3339",
            Transform::ToNumber => "to_number",
            Transform::ToArray => "to_array",
            Transform::Coordinates { .. } => "coordinates",
            Transform::ContentHash { .. } => "content_hash",
        }
    }

    /// Checks the transform's own parameters, so a broken connector file is rejected at
    /// startup rather than on the first petition.
    pub fn validate(&self) -> Result<(), String> {
        match self {
            Transform::LocalTime { format, zone } => {
                parse_zone(zone)?;
                if format.trim().is_empty() {
                    return Err("format must not be empty".into());
                }
                // chrono reports a bad format only when used: try it on a formatted instant.
                let probe = Utc
                    .with_ymd_and_hms(2026, 1, 2, 3, 4, 5)
                    .single()
                    .ok_or("internal probe time")?
                    .naive_utc();
                let rendered = probe.format(format).to_string();
                NaiveDateTime::parse_from_str(&rendered, format)
                    .map(|_| ())
                    .map_err(|e| format!("format {format:?} cannot parse a date and time: {e}"))
            }
            Transform::UnixSeconds { zone } | Transform::UnixMillis { zone } => {
                parse_zone(zone).map(|_| ())
            }
            Transform::PhoneE164 { region } => region
                .parse::<phonenumber::country::Id>()
                .map(|_| ())
                .map_err(|_| format!("unknown phone region {region:?} (use an ISO code like CN)")),
            Transform::ValueMap { map, .. } if map.is_empty() => Err("map is empty".into()),
            Transform::Coordinates { datum, .. } if datum != "gcj02" && datum != "wgs84" => {
                Err(format!("datum {datum:?} must be gcj02 or wgs84"))
            }
            _ => Ok(()),
        }
    }

    pub fn apply(&self, value: Value) -> Result<Value, String> {
        match self {
            Transform::Default { value: default } => Ok(if value.is_null() {
                default.clone()
            } else {
                value
            }),
            _ if value.is_null() => Ok(Value::Null),
            Transform::Trim => match value {
                Value::String(s) => Ok(Value::String(
                    s.trim_matches(|c: char| c.is_whitespace()).to_string(),
                )),
                other => Ok(other),
            },
            Transform::NullIf { values } => Ok(match &value {
                Value::String(s) if values.iter().any(|v| v == s.trim()) => Value::Null,
                _ => value,
            }),
            Transform::ValueMap { map, fallback } => {
                let key = match &value {
                    Value::String(s) => s.trim().to_string(),
                    Value::Number(n) => n.to_string(),
                    Value::Bool(b) => b.to_string(),
                    _ => return Err(format!("expected a code, found {}", type_name(&value))),
                };
                match map.get(&key).or(fallback.as_ref()) {
                    Some(mapped) => Ok(mapped.clone()),
                    None => Err(format!(
                        "unknown value {key:?}; expected one of {}",
                        map.keys()
                            .map(|k| format!("{k:?}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )),
                }
            }
            Transform::LocalTime { format, zone } => {
                let text = expect_str(&value)?;
                let tz = parse_zone(zone)?;
                let naive = NaiveDateTime::parse_from_str(text.trim(), format).map_err(|_| {
                    format!("{text:?} is not a local time in the format {format:?}")
                })?;
                let local = tz
                    .from_local_datetime(&naive)
                    .earliest()
                    .ok_or_else(|| format!("{text:?} does not exist in {zone}"))?;
                Ok(Value::String(local.to_rfc3339()))
            }
            Transform::UnixSeconds { zone } => epoch(&value, zone, 1_000),
            Transform::UnixMillis { zone } => epoch(&value, zone, 1),
            Transform::PhoneE164 { region } => phone_e164(&value, region),
            Transform::Rfc3339 => {
                let text = expect_str(&value)?;
                DateTime::parse_from_rfc3339(text.trim())
                    .map(|t| Value::String(t.to_rfc3339()))
                    .map_err(|_| format!("{text:?} is not an RFC 3339 time"))
            }
            Transform::ToNumber => match &value {
                Value::Number(_) => Ok(value),
                Value::String(s) if s.trim().is_empty() => Ok(Value::Null),
                Value::String(s) => s
                    .trim()
                    .parse::<f64>()
                    .ok()
                    .and_then(serde_json::Number::from_f64)
                    .map(Value::Number)
                    .ok_or_else(|| format!("{s:?} is not a number")),
                other => Err(format!("expected a number, found {}", type_name(other))),
            },
            Transform::ToArray => Ok(match value {
                Value::Array(_) => value,
                Value::String(s) if s.trim().is_empty() => Value::Array(Vec::new()),
                other => Value::Array(vec![other]),
            }),
            Transform::Coordinates {
                lat,
                lon,
                datum_field,
                datum,
            } => coordinates(&value, lat, lon, datum_field.as_deref(), datum),
            Transform::ContentHash { exclude } => {
                use sha2::Digest;
                let mut v = value;
                if let Value::Object(map) = &mut v {
                    for field in exclude {
                        map.remove(field);
                    }
                }
                // serde_json's map is ordered by key, so this text is canonical.
                let text = serde_json::to_string(&v).map_err(|e| e.to_string())?;
                Ok(Value::String(
                    hex::encode(sha2::Sha256::digest(text.as_bytes()))[..32].to_string(),
                ))
            }
        }
    }
}

fn number_in(obj: &Value, field: &str) -> Result<Option<f64>, String> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => Ok(n.as_f64()),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => s
            .trim()
            .parse::<f64>()
            .map(Some)
            .map_err(|_| format!("{field}: {s:?} is not a number")),
        Some(other) => Err(format!(
            "{field}: expected a number, found {}",
            type_name(other)
        )),
    }
}

fn coordinates(
    obj: &Value,
    lat_field: &str,
    lon_field: &str,
    datum_field: Option<&str>,
    default_datum: &str,
) -> Result<Value, String> {
    if !obj.is_object() {
        return Err(format!(
            "expected an object with {lat_field} and {lon_field}"
        ));
    }
    let (lat, lon) = match (number_in(obj, lat_field)?, number_in(obj, lon_field)?) {
        (Some(lat), Some(lon)) => (lat, lon),
        (None, None) => return Ok(Value::Null),
        _ => return Err(format!("needs both {lat_field} and {lon_field}")),
    };
    if !(-90.0..=90.0).contains(&lat) || !(-180.0..=180.0).contains(&lon) {
        return Err(format!("({lat}, {lon}) is not a point on Earth"));
    }
    let datum = datum_field
        .and_then(|f| obj.get(f))
        .and_then(Value::as_str)
        .map(|d| d.trim().to_ascii_lowercase())
        .unwrap_or_else(|| default_datum.to_string());
    let (lat, lon) = match datum.as_str() {
        "gcj02" | "gcj-02" => crate::geo::gcj02_to_wgs84(lat, lon),
        "wgs84" | "wgs-84" => (lat, lon),
        other => {
            return Err(format!(
                "unknown coordinate system {other:?} (gcj02 or wgs84)"
            ))
        }
    };
    let round = |x: f64| (x * 1e7).round() / 1e7;
    Ok(serde_json::json!({"lat": round(lat), "lon": round(lon)}))
}

fn parse_zone(zone: &str) -> Result<Tz, String> {
    zone.parse::<Tz>()
        .map_err(|_| format!("unknown time zone {zone:?} (use an IANA name like Asia/Shanghai)"))
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn expect_str(value: &Value) -> Result<&str, String> {
    value
        .as_str()
        .ok_or_else(|| format!("expected a string, found {}", type_name(value)))
}

fn epoch(value: &Value, zone: &str, millis_per_unit: i64) -> Result<Value, String> {
    let tz = parse_zone(zone)?;
    let units = match value {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse::<i64>().ok(),
        _ => None,
    }
    .ok_or_else(|| format!("expected an integer timestamp, found {value}"))?;
    let millis = units
        .checked_mul(millis_per_unit)
        .ok_or_else(|| format!("timestamp {units} is out of range"))?;
    let utc = DateTime::<Utc>::from_timestamp_millis(millis)
        .ok_or_else(|| format!("timestamp {units} is out of range"))?;
    Ok(Value::String(utc.with_timezone(&tz).to_rfc3339()))
}

fn phone_e164(value: &Value, region: &str) -> Result<Value, String> {
    let raw = match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        other => {
            return Err(format!(
                "expected a phone number, found {}",
                type_name(other)
            ))
        }
    };
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Ok(Value::String(String::new()));
    }
    if region == "CN" {
        if let Some(mobile) = chinese_mobile(trimmed) {
            return Ok(Value::String(mobile));
        }
    }
    let country = region
        .parse::<phonenumber::country::Id>()
        .map_err(|_| format!("unknown phone region {region:?}"))?;
    let number = phonenumber::parse(Some(country), trimmed)
        .map_err(|_| "is not a phone number".to_string())?;
    // Validity against the numbering plan is deliberately not required: new number ranges
    // appear before metadata catches up, and a petition must never be refused over that.
    if number.national().value() < 1_000_000 {
        return Err("is too short to be a phone number".into());
    }
    Ok(Value::String(
        number.format().mode(phonenumber::Mode::E164).to_string(),
    ))
}

/// A Chinese mobile number (11 digits, 1[3-9]…) with or without +86/0086. Handled before
/// libphonenumber because its CN metadata strips 179xx IP-dialling prefixes, which turns
/// mobiles in the 179 range into short garbage.
fn chinese_mobile(raw: &str) -> Option<String> {
    if raw
        .chars()
        .any(|c| !(c.is_ascii_digit() || matches!(c, ' ' | '-' | '+' | '(' | ')' | '.')))
    {
        return None;
    }
    let digits: String = raw.chars().filter(char::is_ascii_digit).collect();
    let national = if raw.trim_start().starts_with('+') {
        digits.strip_prefix("86")?
    } else if let Some(rest) = digits.strip_prefix("0086") {
        rest
    } else {
        digits.as_str()
    };
    let b = national.as_bytes();
    (b.len() == 11 && b[0] == b'1' && (b'3'..=b'9').contains(&b[1]))
        .then(|| format!("+86{national}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn phone(s: &str) -> Result<Value, String> {
        Transform::PhoneE164 {
            region: "CN".into(),
        }
        .apply(json!(s))
    }

    #[test]
    fn phone_numbers_in_every_human_format_become_e164() {
        for raw in [
            "138 0631 2345",
            "+86 13806312345",
            "+86-13806312345",
            "13806312345",
            "0086 138-0631-2345",
        ] {
            assert_eq!(phone(raw), Ok(json!("+8613806312345")), "{raw}");
        }
        assert_eq!(phone("0631-7561234"), Ok(json!("+866317561234")));
        // 179 mobiles: libphonenumber alone would strip 17950 as an IP-dialling prefix.
        assert_eq!(phone("+86 17950755552"), Ok(json!("+8617950755552")));
        assert_eq!(phone("179 5075 5552"), Ok(json!("+8617950755552")));
        // A foreign number is not mistaken for a Chinese mobile.
        assert_eq!(phone("+1 415 555 2671"), Ok(json!("+14155552671")));
        assert_eq!(phone("(0631) 756 1234"), Ok(json!("+866317561234")));
    }

    #[test]
    fn an_empty_phone_stays_empty_and_garbage_is_an_error() {
        assert_eq!(phone(""), Ok(json!("")));
        assert_eq!(phone("   "), Ok(json!("")));
        assert!(phone("不告诉你").is_err());
        assert!(phone("12").is_err());
    }

    #[test]
    fn local_time_becomes_rfc3339_with_the_zone_offset() {
        let t = Transform::LocalTime {
            format: "%Y-%m-%d %H:%M:%S".into(),
            zone: "Asia/Shanghai".into(),
        };
        assert_eq!(
            t.apply(json!("2026-11-24 09:15:03")),
            Ok(json!("2026-11-24T09:15:03+08:00"))
        );
        assert!(t.apply(json!("2026-11-24T09:15:03")).is_err());
        assert!(t.apply(json!("2026-13-40 09:15:03")).is_err());
        assert!(t.apply(json!(20261124)).is_err());
        assert_eq!(t.apply(Value::Null), Ok(Value::Null));
    }

    #[test]
    fn unix_timestamps_render_in_the_zone() {
        let ms = Transform::UnixMillis {
            zone: "Asia/Shanghai".into(),
        };
        assert_eq!(
            ms.apply(json!(1764036000000_i64)),
            Ok(json!("2025-11-25T10:00:00+08:00"))
        );
        let s = Transform::UnixSeconds {
            zone: "Asia/Shanghai".into(),
        };
        assert_eq!(
            s.apply(json!("1764036000")),
            Ok(json!("2025-11-25T10:00:00+08:00"))
        );
        assert!(s.apply(json!("soon")).is_err());
    }

    #[test]
    fn value_map_names_the_allowed_values_on_unknown_input() {
        let t = Transform::ValueMap {
            map: [("投诉".to_string(), json!("complaint"))].into(),
            fallback: None,
        };
        assert_eq!(t.apply(json!(" 投诉 ")), Ok(json!("complaint")));
        let err = t.apply(json!("吐槽")).unwrap_err();
        assert!(err.contains("\"投诉\""), "{err}");
    }

    #[test]
    fn null_if_default_and_trim_compose() {
        assert_eq!(
            Transform::NullIf {
                values: vec!["匿名".into()]
            }
            .apply(json!("匿名")),
            Ok(Value::Null)
        );
        assert_eq!(
            Transform::Default { value: json!("x") }.apply(Value::Null),
            Ok(json!("x"))
        );
        assert_eq!(
            Transform::Trim.apply(json!("\u{3000} a \n")),
            Ok(json!("a"))
        );
    }

    #[test]
    fn coordinates_convert_gcj02_and_keep_wgs84() {
        let t = Transform::Coordinates {
            lat: "lat".into(),
            lon: "lng".into(),
            datum_field: Some("coordType".into()),
            datum: "gcj02".into(),
        };
        let (glat, glon) = crate::geo::wgs84_to_gcj02(37.1652, 122.4211);
        let v = t
            .apply(json!({"lat": glat, "lng": glon, "coordType": "gcj02"}))
            .unwrap();
        let d = crate::geo::haversine_m(
            (37.1652, 122.4211),
            (v["lat"].as_f64().unwrap(), v["lon"].as_f64().unwrap()),
        );
        assert!(d < 0.05, "{d} m");
        let v = t
            .apply(json!({"lat": "37.1", "lng": "122.4", "coordType": "wgs84"}))
            .unwrap();
        assert_eq!(v, json!({"lat": 37.1, "lon": 122.4}));
        assert_eq!(t.apply(json!({"address": "x"})), Ok(Value::Null));
        assert!(t.apply(json!({"lat": 37.1})).is_err());
        assert!(t.apply(json!({"lat": 137.1, "lng": 1.0})).is_err());
    }

    #[test]
    fn content_hash_ignores_excluded_fields_and_key_order() {
        let t = Transform::ContentHash {
            exclude: vec!["api_key".into()],
        };
        let a = t
            .apply(json!({"a": "1", "b": "2", "api_key": "k1"}))
            .unwrap();
        let b = t
            .apply(json!({"b": "2", "a": "1", "api_key": "k2"}))
            .unwrap();
        let c = t.apply(json!({"a": "1", "b": "3"})).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn numbers_arrays_and_rfc3339() {
        assert_eq!(Transform::ToNumber.apply(json!(" 36.9 ")), Ok(json!(36.9)));
        assert!(Transform::ToNumber.apply(json!("north")).is_err());
        assert_eq!(
            Transform::ToArray.apply(json!("http://x/1.jpg")),
            Ok(json!(["http://x/1.jpg"]))
        );
        assert_eq!(Transform::ToArray.apply(json!("")), Ok(json!([])));
        assert_eq!(
            Transform::Rfc3339.apply(json!("2026-11-24T09:20:11+08:00")),
            Ok(json!("2026-11-24T09:20:11+08:00"))
        );
        assert!(Transform::Rfc3339
            .apply(json!("2026-11-24 09:20:11"))
            .is_err());
    }

    #[test]
    fn parameters_are_validated_up_front() {
        assert!(Transform::LocalTime {
            format: "%Y-%m-%d".into(),
            zone: "Mars/Olympus".into()
        }
        .validate()
        .is_err());
        assert!(Transform::LocalTime {
            format: "%Y-%m-%d %H:%M:%S".into(),
            zone: "Asia/Shanghai".into()
        }
        .validate()
        .is_ok());
        assert!(Transform::PhoneE164 {
            region: "XX".into()
        }
        .validate()
        .is_err());
    }
}
