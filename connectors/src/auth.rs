//! Authentication schemes a connector file can name, for requests a channel sends us
//! (`verify`) and requests we send a channel (`outbound_headers`, `sign`).

use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::{Map, Value};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// How a channel proves who it is. The secret never lives in the connector file: `secret`
/// names a key of the connector's deployment settings (`[connectors.<name>]` in the gateway
/// config, or `GATEWAY__CONNECTORS__<NAME>__<KEY>`).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(tag = "scheme", rename_all = "snake_case", deny_unknown_fields)]
pub enum AuthScheme {
    /// `Authorization: Bearer <token>`.
    Bearer { secret: String },
    /// A fixed key in a named header: `X-Api-Key`, `AppKey`, `Token`.
    Header { header: String, secret: String },
    /// HMAC-SHA256 over a string to sign built from the timestamp and the raw body,
    /// lowercase hex in `signature_header`; requests outside `window_secs` are replays.
    HmacSha256 {
        secret: String,
        timestamp_header: String,
        signature_header: String,
        #[serde(default = "default_window")]
        window_secs: i64,
        /// `{timestamp}` and `{body}` are replaced.
        #[serde(default = "default_string_to_sign")]
        string_to_sign: String,
    },
    /// A key in the body's fields, as Open311's `api_key`.
    BodyField { field: String, secret: String },
}

fn default_window() -> i64 {
    300
}
fn default_string_to_sign() -> String {
    "{timestamp}.{body}".into()
}

/// What a scheme may look at in an incoming request.
pub struct AuthInput<'a> {
    /// Header lookup by lowercase name.
    pub header: &'a (dyn Fn(&str) -> Option<&'a str> + Sync),
    pub body: &'a [u8],
    /// The parsed body, when it is an object (form or JSON).
    pub fields: Option<&'a Map<String, Value>>,
    pub now_unix: i64,
}

impl AuthScheme {
    /// The settings key that holds this scheme's secret.
    pub fn secret_key(&self) -> &str {
        match self {
            AuthScheme::Bearer { secret }
            | AuthScheme::Header { secret, .. }
            | AuthScheme::HmacSha256 { secret, .. }
            | AuthScheme::BodyField { secret, .. } => secret,
        }
    }

    /// Where the credential is, for error messages (`header Authorization`, `/api_key`).
    pub fn location(&self) -> String {
        match self {
            AuthScheme::Bearer { .. } => "header Authorization".into(),
            AuthScheme::Header { header, .. } => format!("header {header}"),
            AuthScheme::HmacSha256 {
                signature_header, ..
            } => format!("header {signature_header}"),
            AuthScheme::BodyField { field, .. } => format!("/{field}"),
        }
    }

    /// Body fields that carry credentials and must not be stored with the petition.
    pub fn credential_field(&self) -> Option<&str> {
        match self {
            AuthScheme::BodyField { field, .. } => Some(field),
            _ => None,
        }
    }

    pub fn verify(&self, input: &AuthInput<'_>, secret: &str) -> Result<(), AuthError> {
        match self {
            AuthScheme::Bearer { .. } => {
                let value = (input.header)("authorization").ok_or(AuthError::Missing {
                    location: self.location(),
                })?;
                let token = value
                    .strip_prefix("Bearer ")
                    .or_else(|| value.strip_prefix("bearer "))
                    .ok_or(AuthError::Malformed {
                        location: self.location(),
                        expected: "Bearer <token>".into(),
                    })?;
                check(token.trim(), secret, self)
            }
            AuthScheme::Header { header, .. } => {
                let value =
                    (input.header)(&header.to_ascii_lowercase()).ok_or(AuthError::Missing {
                        location: self.location(),
                    })?;
                check(value.trim(), secret, self)
            }
            AuthScheme::BodyField { field, .. } => {
                let value = input
                    .fields
                    .and_then(|f| f.get(field))
                    .and_then(Value::as_str)
                    .ok_or(AuthError::Missing {
                        location: self.location(),
                    })?;
                check(value.trim(), secret, self)
            }
            AuthScheme::HmacSha256 {
                timestamp_header,
                signature_header,
                window_secs,
                string_to_sign,
                ..
            } => {
                let ts_text = (input.header)(&timestamp_header.to_ascii_lowercase()).ok_or(
                    AuthError::Missing {
                        location: format!("header {timestamp_header}"),
                    },
                )?;
                let ts: i64 = ts_text.trim().parse().map_err(|_| AuthError::Malformed {
                    location: format!("header {timestamp_header}"),
                    expected: "Unix seconds".into(),
                })?;
                let given = (input.header)(&signature_header.to_ascii_lowercase()).ok_or(
                    AuthError::Missing {
                        location: self.location(),
                    },
                )?;
                let given = hex::decode(given.trim()).map_err(|_| AuthError::Malformed {
                    location: self.location(),
                    expected: "lowercase hex HMAC-SHA256".into(),
                })?;
                let mac =
                    mac(secret, string_to_sign, ts_text.trim(), input.body).ok_or_else(|| {
                        AuthError::Rejected {
                            location: self.location(),
                        }
                    })?;
                if secret.is_empty() || mac.verify_slice(&given).is_err() {
                    return Err(AuthError::Rejected {
                        location: self.location(),
                    });
                }
                // Checked after the signature, so an attacker learns nothing about the
                // window from unsigned requests.
                if (input.now_unix - ts).abs() > *window_secs {
                    return Err(AuthError::Replayed {
                        location: format!("header {timestamp_header}"),
                        age_secs: input.now_unix - ts,
                        window_secs: *window_secs,
                    });
                }
                Ok(())
            }
        }
    }

    /// Headers that authenticate a request we send (poll or callback). For HMAC the
    /// signature depends on the body and time.
    pub fn outbound_headers(
        &self,
        secret: &str,
        body: &[u8],
        now_unix: i64,
    ) -> Vec<(String, String)> {
        match self {
            AuthScheme::Bearer { .. } => vec![("Authorization".into(), format!("Bearer {secret}"))],
            AuthScheme::Header { header, .. } => vec![(header.clone(), secret.to_string())],
            AuthScheme::BodyField { .. } => Vec::new(),
            AuthScheme::HmacSha256 {
                timestamp_header,
                signature_header,
                string_to_sign,
                ..
            } => {
                let ts = now_unix.to_string();
                let signature = mac(secret, string_to_sign, &ts, body)
                    .map(|m| hex::encode(m.finalize().into_bytes()))
                    .unwrap_or_default();
                vec![
                    (timestamp_header.clone(), ts),
                    (signature_header.clone(), signature),
                ]
            }
        }
    }
}

fn mac(secret: &str, template: &str, ts: &str, body: &[u8]) -> Option<Hmac<Sha256>> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).ok()?;
    // Build the string to sign from the raw bytes: the body must not be re-encoded.
    let (before, after) = template.split_once("{body}").unwrap_or((template, ""));
    mac.update(before.replace("{timestamp}", ts).as_bytes());
    if template.contains("{body}") {
        mac.update(body);
    }
    mac.update(after.replace("{timestamp}", ts).as_bytes());
    Some(mac)
}

fn check(given: &str, secret: &str, scheme: &AuthScheme) -> Result<(), AuthError> {
    if !secret.is_empty() && bool::from(given.as_bytes().ct_eq(secret.as_bytes())) {
        Ok(())
    } else {
        Err(AuthError::Rejected {
            location: scheme.location(),
        })
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("{location} is missing")]
    Missing { location: String },
    #[error("{location} is malformed: expected {expected}")]
    Malformed { location: String, expected: String },
    #[error("the credential in {location} is not valid")]
    Rejected { location: String },
    #[error("{location} is {age_secs} s from now, outside the {window_secs} s window: a replay")]
    Replayed {
        location: String,
        age_secs: i64,
        window_secs: i64,
    },
}

impl AuthError {
    pub fn location(&self) -> &str {
        match self {
            AuthError::Missing { location }
            | AuthError::Malformed { location, .. }
            | AuthError::Rejected { location }
            | AuthError::Replayed { location, .. } => location,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verify(
        scheme: &AuthScheme,
        headers: &[(&str, &str)],
        body: &[u8],
        secret: &str,
        now: i64,
    ) -> Result<(), AuthError> {
        let owned: Vec<(String, String)> = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let lookup = |name: &str| {
            owned
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        let input = AuthInput {
            header: &lookup,
            body,
            fields: None,
            now_unix: now,
        };
        scheme.verify(&input, secret)
    }

    #[test]
    fn bearer_accepts_the_right_token_only() {
        let s = AuthScheme::Bearer {
            secret: "token".into(),
        };
        assert_eq!(
            verify(&s, &[("authorization", "Bearer s3cret")], b"", "s3cret", 0),
            Ok(())
        );
        assert!(matches!(
            verify(&s, &[("authorization", "Bearer wrong")], b"", "s3cret", 0),
            Err(AuthError::Rejected { .. })
        ));
        assert!(matches!(
            verify(&s, &[("authorization", "Basic abc")], b"", "s3cret", 0),
            Err(AuthError::Malformed { .. })
        ));
        assert!(matches!(
            verify(&s, &[], b"", "s3cret", 0),
            Err(AuthError::Missing { .. })
        ));
        assert!(
            verify(&s, &[("authorization", "Bearer ")], b"", "", 0).is_err(),
            "empty secret"
        );
    }

    #[test]
    fn header_keys_compare_by_lowercase_name() {
        let s = AuthScheme::Header {
            header: "X-Api-Key".into(),
            secret: "key".into(),
        };
        assert_eq!(verify(&s, &[("x-api-key", "k1")], b"", "k1", 0), Ok(()));
        assert!(verify(&s, &[("x-api-key", "k2")], b"", "k1", 0).is_err());
    }

    fn hmac_scheme() -> AuthScheme {
        AuthScheme::HmacSha256 {
            secret: "secret".into(),
            timestamp_header: "X-Timestamp".into(),
            signature_header: "X-Signature".into(),
            window_secs: 300,
            string_to_sign: default_string_to_sign(),
        }
    }

    #[test]
    fn hmac_signatures_round_trip_and_reject_tampering_and_replays() {
        let s = hmac_scheme();
        let body = br#"{"ticketId":"HW-1"}"#;
        let signed = s.outbound_headers("k", body, 1_000_000);
        let h: Vec<(String, String)> = signed
            .iter()
            .map(|(k, v)| (k.to_lowercase(), v.clone()))
            .collect();
        let hs: Vec<(&str, &str)> = h.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(verify(&s, &hs, body, "k", 1_000_100), Ok(()));
        assert!(matches!(
            verify(&s, &hs, b"{\"ticketId\":\"HW-2\"}", "k", 1_000_100),
            Err(AuthError::Rejected { .. })
        ));
        assert!(matches!(
            verify(&s, &hs, body, "other", 1_000_100),
            Err(AuthError::Rejected { .. })
        ));
        assert!(matches!(
            verify(&s, &hs, body, "k", 1_000_301),
            Err(AuthError::Replayed { .. })
        ));
    }

    #[test]
    fn hmac_matches_pythons_hmac_module() {
        let s = hmac_scheme();
        let h = s.outbound_headers("k", b"{}", 1_700_000_000);
        assert_eq!(h[1].1.len(), 64);
        // python3 -c "import hmac,hashlib; print(hmac.new(b'k', b'1700000000.{}', hashlib.sha256).hexdigest())"
        assert_eq!(
            h[1].1,
            "c6ef4734033cee2367414a0939385eca0397754aa7a59716da7463a9298b5146"
        );
    }

    #[test]
    fn body_field_keys_are_read_from_the_fields() {
        let s = AuthScheme::BodyField {
            field: "api_key".into(),
            secret: "key".into(),
        };
        let mut fields = Map::new();
        fields.insert("api_key".into(), Value::String("k1".into()));
        let none = |_: &str| None;
        let input = AuthInput {
            header: &none,
            body: b"",
            fields: Some(&fields),
            now_unix: 0,
        };
        assert_eq!(s.verify(&input, "k1"), Ok(()));
        assert!(s.verify(&input, "k2").is_err());
        assert_eq!(s.location(), "/api_key");
    }
}
