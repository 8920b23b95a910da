//! What a channel's answer to a callback means: done, try again later, or never.
//!
//! Common to every channel: 2xx is done; 408, 425, 429 and every 5xx are worth retrying
//! (honouring `Retry-After` seconds); anything else is permanent. A connector adds its own
//! conventions in `[callback.outcome]`: statuses that mean "already have it" (city-app 409)
//! and, for envelopes that answer HTTP 200 to everything (the hotline), a code field in
//! the JSON answer that decides.

use serde::Deserialize;
use serde_json::Value;
use std::time::Duration;

/// The longest `Retry-After` honoured: a misconfigured channel asking for a day must not
/// park its updates for a day.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// How much of an answer is quoted in a reason.
const SNIPPET_CHARS: usize = 200;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// The channel has the update (or already had it).
    Done,
    /// Send the same request again, after `after` if the channel said when.
    Retry {
        after: Option<Duration>,
        reason: String,
    },
    /// Sending it again will not help; `reason` says why, for the operator.
    Permanent { reason: String },
}

/// A request that got no answer (timeout, refused, reset) is always worth retrying.
pub fn transport_failure(error: impl std::fmt::Display) -> DeliveryOutcome {
    DeliveryOutcome::Retry {
        after: None,
        reason: format!("no answer: {error}"),
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutcomeRules {
    /// Non-2xx statuses meaning the channel already has this update (city-app 409).
    #[serde(default)]
    pub done_statuses: Vec<u16>,
    /// Statuses to retry besides 408, 425, 429 and 5xx.
    #[serde(default)]
    pub retry_statuses: Vec<u16>,
    /// A field of a 2xx JSON answer that decides (the hotline's `code`).
    #[serde(default)]
    pub code: Option<CodeRule>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CodeRule {
    /// JSON Pointer to the code (`/code`); a number or a numeric string.
    pub pointer: String,
    /// Codes meaning done.
    pub done: Vec<CodeRange>,
    /// Codes meaning "try again later"; every other code is permanent.
    #[serde(default)]
    pub retry: Vec<CodeRange>,
    /// JSON Pointer to the channel's message, quoted in reasons (`/msg`).
    #[serde(default)]
    pub message: Option<String>,
}

/// One code (`0`) or an inclusive range (`[5001, 5999]`).
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum CodeRange {
    One(i64),
    Range([i64; 2]),
}

impl CodeRange {
    fn contains(self, code: i64) -> bool {
        match self {
            CodeRange::One(c) => c == code,
            CodeRange::Range([lo, hi]) => (lo..=hi).contains(&code),
        }
    }
}

impl OutcomeRules {
    pub fn problems(&self, key: &str) -> Vec<String> {
        let mut problems = Vec::new();
        for s in &self.done_statuses {
            if !(300..600).contains(s) {
                problems.push(format!(
                    "{key}.done_statuses: {s} must be a non-2xx HTTP status (2xx is always done)"
                ));
            }
        }
        for s in &self.retry_statuses {
            if !(300..600).contains(s) {
                problems.push(format!(
                    "{key}.retry_statuses: {s} must be a non-2xx HTTP status"
                ));
            }
            if self.done_statuses.contains(s) {
                problems.push(format!(
                    "{key}.retry_statuses: {s} is also in done_statuses"
                ));
            }
        }
        if let Some(code) = &self.code {
            for p in std::iter::once(&code.pointer).chain(&code.message) {
                if !p.starts_with('/') {
                    problems.push(format!(
                        "{key}.code: {p:?} must be a JSON Pointer starting with '/'"
                    ));
                }
            }
            if code.done.is_empty() {
                problems.push(format!("{key}.code.done: name at least one code"));
            }
            for (part, ranges) in [("done", &code.done), ("retry", &code.retry)] {
                for r in ranges {
                    if let CodeRange::Range([lo, hi]) = r {
                        if lo > hi {
                            problems.push(format!("{key}.code.{part}: [{lo}, {hi}] is empty"));
                        }
                    }
                }
            }
            for d in &code.done {
                let overlaps = code.retry.iter().any(|r| match (*d, *r) {
                    (CodeRange::One(c), r) => r.contains(c),
                    (CodeRange::Range([lo, hi]), CodeRange::One(c)) => (lo..=hi).contains(&c),
                    (CodeRange::Range([a, b]), CodeRange::Range([c, d])) => a <= d && c <= b,
                });
                if overlaps {
                    problems.push(format!("{key}.code: done and retry overlap at {d:?}"));
                }
            }
        }
        problems
    }

    /// Classifies one answer: its HTTP status, `Retry-After` header and body.
    pub fn classify(
        &self,
        http_status: u16,
        retry_after: Option<&str>,
        body: &[u8],
    ) -> DeliveryOutcome {
        let after = retry_after.and_then(parse_retry_after);
        if self.done_statuses.contains(&http_status) {
            return DeliveryOutcome::Done;
        }
        if (200..300).contains(&http_status) {
            let Some(rule) = &self.code else {
                return DeliveryOutcome::Done;
            };
            let answer: Option<Value> = serde_json::from_slice(body).ok();
            let code = answer
                .as_ref()
                .and_then(|a| a.pointer(&rule.pointer))
                .and_then(|c| match c {
                    Value::Number(n) => n.as_i64(),
                    Value::String(s) => s.trim().parse().ok(),
                    _ => None,
                });
            let message = rule
                .message
                .as_ref()
                .and_then(|p| answer.as_ref()?.pointer(p))
                .map(|m| match m {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .unwrap_or_default();
            return match code {
                // An answer without the code is not the channel's envelope (a proxy page,
                // a truncated answer): whether the update arrived is unknown, so resend.
                None => DeliveryOutcome::Retry {
                    after,
                    reason: format!(
                        "HTTP {http_status} without a code at {}: {}",
                        rule.pointer,
                        snippet(body)
                    ),
                },
                Some(c) if rule.done.iter().any(|r| r.contains(c)) => DeliveryOutcome::Done,
                Some(c) if rule.retry.iter().any(|r| r.contains(c)) => DeliveryOutcome::Retry {
                    after,
                    reason: format!("code {c}: {message}"),
                },
                Some(c) => DeliveryOutcome::Permanent {
                    reason: format!("code {c}: {message}"),
                },
            };
        }
        if matches!(http_status, 408 | 425 | 429 | 500..=599)
            || self.retry_statuses.contains(&http_status)
        {
            return DeliveryOutcome::Retry {
                after,
                reason: format!("HTTP {http_status}: {}", snippet(body)),
            };
        }
        DeliveryOutcome::Permanent {
            reason: format!("HTTP {http_status}: {}", snippet(body)),
        }
    }
}

/// `Retry-After` in seconds. The HTTP-date form is not honoured (no channel here sends
/// it); the caller's own backoff applies then.
fn parse_retry_after(value: &str) -> Option<Duration> {
    value
        .trim()
        .parse::<u64>()
        .ok()
        .map(|s| Duration::from_secs(s).min(MAX_RETRY_AFTER))
}

fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut chars = text.chars();
    let mut out: String = chars.by_ref().take(SNIPPET_CHARS).collect();
    if chars.next().is_some() {
        out.push('…');
    }
    if out.is_empty() {
        out.push_str("(empty answer)");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_rules_without_channel_conventions() {
        let r = OutcomeRules::default();
        assert_eq!(r.classify(200, None, b""), DeliveryOutcome::Done);
        assert_eq!(r.classify(204, None, b""), DeliveryOutcome::Done);
        assert_eq!(
            r.classify(429, Some(" 7 "), b"slow down"),
            DeliveryOutcome::Retry {
                after: Some(Duration::from_secs(7)),
                reason: "HTTP 429: slow down".into()
            }
        );
        assert!(matches!(
            r.classify(503, Some("Wed, 21 Oct 2026 07:28:00 GMT"), b""),
            DeliveryOutcome::Retry { after: None, .. }
        ));
        assert!(matches!(
            r.classify(502, Some("999999"), b""),
            DeliveryOutcome::Retry { after: Some(d), .. } if d == MAX_RETRY_AFTER
        ));
        assert!(matches!(
            r.classify(404, None, b"{}"),
            DeliveryOutcome::Permanent { .. }
        ));
        assert_eq!(
            transport_failure("connection refused"),
            DeliveryOutcome::Retry {
                after: None,
                reason: "no answer: connection refused".into()
            }
        );
    }

    #[test]
    fn long_answers_are_cut_in_reasons() {
        let body = "错".repeat(500);
        let DeliveryOutcome::Permanent { reason } =
            OutcomeRules::default().classify(400, None, body.as_bytes())
        else {
            panic!("expected permanent")
        };
        assert_eq!(
            reason.chars().count(),
            "HTTP 400: ".len() + SNIPPET_CHARS + 1
        );
    }

    #[test]
    fn bad_rules_are_problems() {
        let r = OutcomeRules {
            done_statuses: vec![200, 409],
            retry_statuses: vec![409],
            code: Some(CodeRule {
                pointer: "code".into(),
                done: vec![CodeRange::One(0)],
                retry: vec![CodeRange::Range([5999, 5001]), CodeRange::Range([-1, 3])],
                message: None,
            }),
        };
        let p = r.problems("callback.outcome").join("\n");
        assert!(p.contains("callback.outcome.done_statuses: 200"), "{p}");
        assert!(p.contains("409 is also in done_statuses"), "{p}");
        assert!(
            p.contains("callback.outcome.code: \"code\" must be a JSON Pointer"),
            "{p}"
        );
        assert!(p.contains("[5999, 5001] is empty"), "{p}");
        assert!(p.contains("overlap"), "{p}");
    }
}
