//! Authentication schemes a connector file can name.

use serde::Deserialize;
use subtle::ConstantTimeEq;

/// How a push channel proves who it is. The secret itself never lives in the connector
/// file: `secret` names a key of the connector's deployment settings
/// (`[connectors.<name>]` in the gateway config, or `GATEWAY__CONNECTORS__<NAME>__<KEY>`).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(tag = "scheme", rename_all = "snake_case", deny_unknown_fields)]
pub enum AuthScheme {
    /// `Authorization: Bearer <token>`.
    Bearer { secret: String },
    /// A fixed key in a named header, e.g. `X-Api-Key`.
    ApiKeyHeader { header: String, secret: String },
}

impl AuthScheme {
    /// The settings key that holds this scheme's secret.
    pub fn secret_key(&self) -> &str {
        match self {
            AuthScheme::Bearer { secret } | AuthScheme::ApiKeyHeader { secret, .. } => secret,
        }
    }

    /// Checks a request's headers, given as a lookup function so the engine stays free of
    /// any HTTP library. Comparison is constant-time.
    pub fn verify<'a>(
        &self,
        header: impl Fn(&str) -> Option<&'a str>,
        secret: &str,
    ) -> Result<(), AuthError> {
        match self {
            AuthScheme::Bearer { .. } => {
                let value = header("authorization").ok_or(AuthError::Missing {
                    header: "Authorization".into(),
                })?;
                let token = value
                    .strip_prefix("Bearer ")
                    .or_else(|| value.strip_prefix("bearer "))
                    .ok_or(AuthError::Malformed {
                        header: "Authorization".into(),
                        expected: "Bearer <token>".into(),
                    })?;
                check(token.trim(), secret, "Authorization")
            }
            AuthScheme::ApiKeyHeader { header: name, .. } => {
                let value = header(&name.to_ascii_lowercase()).ok_or(AuthError::Missing {
                    header: name.clone(),
                })?;
                check(value.trim(), secret, name)
            }
        }
    }
}

fn check(given: &str, secret: &str, header: &str) -> Result<(), AuthError> {
    if !secret.is_empty() && bool::from(given.as_bytes().ct_eq(secret.as_bytes())) {
        Ok(())
    } else {
        Err(AuthError::Rejected {
            header: header.to_string(),
        })
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("header {header} is missing")]
    Missing { header: String },
    #[error("header {header} is malformed: expected {expected}")]
    Malformed { header: String, expected: String },
    #[error("the credential in header {header} is not valid")]
    Rejected { header: String },
}

impl AuthError {
    pub fn header(&self) -> &str {
        match self {
            AuthError::Missing { header }
            | AuthError::Malformed { header, .. }
            | AuthError::Rejected { header } => header,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<&'a str> + 'a {
        move |name| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| *v)
    }

    #[test]
    fn bearer_accepts_the_right_token_only() {
        let scheme = AuthScheme::Bearer {
            secret: "token".into(),
        };
        assert_eq!(
            scheme.verify(headers(&[("authorization", "Bearer s3cret")]), "s3cret"),
            Ok(())
        );
        assert!(matches!(
            scheme.verify(headers(&[("authorization", "Bearer wrong")]), "s3cret"),
            Err(AuthError::Rejected { .. })
        ));
        assert!(matches!(
            scheme.verify(headers(&[("authorization", "Basic abc")]), "s3cret"),
            Err(AuthError::Malformed { .. })
        ));
        assert!(matches!(
            scheme.verify(headers(&[]), "s3cret"),
            Err(AuthError::Missing { .. })
        ));
    }

    #[test]
    fn an_empty_secret_never_authenticates() {
        let scheme = AuthScheme::Bearer {
            secret: "token".into(),
        };
        assert!(scheme
            .verify(headers(&[("authorization", "Bearer ")]), "")
            .is_err());
    }

    #[test]
    fn api_key_header_is_case_insensitive_on_the_name() {
        let scheme = AuthScheme::ApiKeyHeader {
            header: "X-Api-Key".into(),
            secret: "key".into(),
        };
        assert_eq!(scheme.verify(headers(&[("x-api-key", "k1")]), "k1"), Ok(()));
        assert!(scheme
            .verify(headers(&[("x-api-key", "k2")]), "k1")
            .is_err());
    }
}
