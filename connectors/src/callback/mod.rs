//! Callbacks: telling a channel what became of its petition, in its own words.
//!
//! A connector file's optional `[callback]` section declares the request (method, URL,
//! JSON or XML body, authentication), the channel's own word or code for each canonical
//! status, message texts, and what the channel's answers mean. This module renders a
//! [`CallbackEvent`] into a [`CallbackRequest`] and classifies the answer into a
//! [`DeliveryOutcome`]; sending, queueing and retrying belong to the runtime. No I/O.
//!
//! # Template variables
//!
//! URL, body strings and `[callback.messages]` are templates: `{{name}}`,
//! `{{name|fallback}}` (used when the value is absent or empty), and for local times
//! `{{at_local:<chrono format>}}`. A body string that is exactly one variable keeps the
//! value's JSON type (`statusCode = "{{channel_status}}"` stays a number); inside longer
//! text a value is written as text. An absent value is the empty string.
//!
//! | variable | value |
//! |---|---|
//! | `base` | deployment setting `base` (URL only, and first), trailing `/` removed |
//! | `channel`, `source_id`, `petition_id`, `case_id` | from the event |
//! | `status` | the canonical status (`resolved`) |
//! | `channel_status` | the channel's word or code for it (`[callback.statuses]`), typed |
//! | `message` | `[callback.messages]` for the status, else its `default`, else `note` |
//! | `department_code`, `department_name`, `note` | from the event, may be absent |
//! | `merged_into`, `case_status` | from the event, may be absent |
//! | `reporter_name` | from the event; refused at load for a `public` channel |
//! | `at_rfc3339` | event time, RFC 3339 with the zone's offset (`2026-11-24T18:30:00+08:00`) |
//! | `at_unix`, `at_unix_ms` | event time, Unix seconds / milliseconds (numbers) |
//! | `at_local` | event time in the zone, `%Y-%m-%d %H:%M:%S` or `{{at_local:<format>}}` |
//! | `deadline_rfc3339`, `deadline_unix`, `deadline_unix_ms`, `deadline_local` | the same for the deadline, may be absent |
//!
//! `zone` (default `Asia/Shanghai`) is the channels' "local time". Variables in the URL are
//! percent-encoded as path segments and must not be empty, `.` or `..`.
//!
//! A `public` channel publishes what it is sent (the leader board): every string in the
//! rendered body is scrubbed of personal data ([`scrub`]), and its templates may not
//! use `reporter_*` at all.

pub mod outcome;
pub mod scrub;
pub mod template;

pub use outcome::{transport_failure, CodeRange, CodeRule, DeliveryOutcome, OutcomeRules};
pub use template::BodyTemplate;

use crate::auth::AuthScheme;
use chrono::format::{Item, StrftimeItems};
use chrono::{DateTime, SecondsFormat, Utc};
use chrono_tz::Tz;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;
use template::{Segment, Var};

/// Every status a case can have; `[callback.statuses]` keys must be among them.
pub const CANONICAL_STATUSES: &[&str] = &[
    "received",
    "accepted",
    "dispatched",
    "in_progress",
    "resolved",
    "closed",
    "returned",
    "reassigned",
    "merged",
    "rejected",
    "reopened",
    "overdue",
    "escalated",
];

/// Template variables, for validation and error messages (see the module docs).
pub const VARIABLES: &[&str] = &[
    "base",
    "channel",
    "source_id",
    "petition_id",
    "case_id",
    "status",
    "channel_status",
    "message",
    "department_code",
    "department_name",
    "note",
    "merged_into",
    "case_status",
    "reporter_name",
    "at_rfc3339",
    "at_unix",
    "at_unix_ms",
    "at_local",
    "deadline_rfc3339",
    "deadline_unix",
    "deadline_unix_ms",
    "deadline_local",
];

const DEFAULT_LOCAL_FORMAT: &str = "%Y-%m-%d %H:%M:%S";

/// RFC 3986 unreserved characters stay; everything else in a path variable is encoded.
const PATH_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// One status update for one channel, as the runtime queues it (JSON on the outbox topic).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallbackEvent {
    /// The connector name the update goes to.
    pub channel: String,
    /// The channel's own id of the petition (`gdbh`, `ticketId`, `tid`…).
    pub source_id: String,
    pub petition_id: String,
    pub case_id: String,
    /// Canonical status, one of [`CANONICAL_STATUSES`].
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub department_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub department_name: Option<String>,
    /// The department's or center's own words (may quote the citizen; scrubbed when public).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// When the status changed.
    pub at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<DateTime<Utc>>,
    /// For `merged`: the case this petition joined.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merged_into: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub case_status: Option<String>,
    /// Only so a public channel's text can be scrubbed of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reporter_name: Option<String>,
}

/// A request ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallbackRequest {
    pub method: String,
    pub url: String,
    /// Authentication headers (the content type is separate).
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub content_type: &'static str,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "UPPERCASE")]
pub enum CallbackMethod {
    Post,
    Put,
    Patch,
}

impl CallbackMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            CallbackMethod::Post => "POST",
            CallbackMethod::Put => "PUT",
            CallbackMethod::Patch => "PATCH",
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum CallbackFormat {
    Json,
    /// The body table becomes the children of `root`.
    Xml,
}

/// `[callback]` of a connector file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallbackSpec {
    /// The connector's name, set by [`crate::ConnectorDefinition::parse`], so errors and
    /// the event's `channel` check need no extra argument.
    #[serde(skip)]
    connector: String,
    pub method: CallbackMethod,
    /// Template starting with `{{base}}`.
    pub url: String,
    pub format: CallbackFormat,
    /// The XML root element (XML only).
    #[serde(default)]
    pub root: Option<String>,
    pub body: BodyTemplate,
    /// How we authenticate to the channel; `secret` names a deployment setting.
    pub auth: AuthScheme,
    /// Canonical status → the channel's word or code (string or integer). A status not
    /// listed is not sent to this channel.
    pub statuses: BTreeMap<String, Value>,
    /// Canonical status (or `default`) → message template, the `{{message}}` variable.
    #[serde(default)]
    pub messages: BTreeMap<String, String>,
    #[serde(default)]
    pub outcome: OutcomeRules,
    /// The channel publishes what it is sent: scrub personal data, refuse `reporter_*`.
    #[serde(default)]
    pub public: bool,
    #[serde(default = "default_zone")]
    pub zone: String,
    /// Sustained callbacks per second to this channel, and the burst above it.
    #[serde(default = "default_rate")]
    pub rate_limit_per_second: u32,
    #[serde(default = "default_burst")]
    pub rate_limit_burst: u32,
    /// Per request, connect to last byte.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
}

fn default_zone() -> String {
    "Asia/Shanghai".into()
}
fn default_rate() -> u32 {
    5
}
fn default_burst() -> u32 {
    10
}
fn default_timeout() -> u64 {
    10
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallbackError {
    #[error("callback for {connector}: the event is for channel {channel:?}")]
    WrongChannel { connector: String, channel: String },
    #[error("callback for {connector}: {status:?} is not a canonical status")]
    UnknownStatus { connector: String, status: String },
    #[error("callback for {connector}: deployment setting {key:?} is missing or empty")]
    MissingSetting { connector: String, key: String },
    #[error("callback for {connector}: deployment setting base = {value:?} is not an http(s) URL")]
    BadBase { connector: String, value: String },
    #[error("callback for {connector}: {key}: {message}")]
    Render {
        connector: String,
        key: String,
        message: String,
    },
    #[error("callback for {connector}: personal data could not be checked, so nothing is sent to this public channel")]
    Scrub { connector: String },
}

impl CallbackError {
    /// Whether the same event may render later: true when the deployment settings are
    /// at fault (fixed without touching the event, so the update must not be dropped);
    /// false when the event or the template is.
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            CallbackError::MissingSetting { .. } | CallbackError::BadBase { .. }
        )
    }

    pub fn connector(&self) -> &str {
        match self {
            CallbackError::WrongChannel { connector, .. }
            | CallbackError::UnknownStatus { connector, .. }
            | CallbackError::MissingSetting { connector, .. }
            | CallbackError::BadBase { connector, .. }
            | CallbackError::Render { connector, .. }
            | CallbackError::Scrub { connector } => connector,
        }
    }
}

/// Where a template is used: it decides which variables it may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    Url,
    Body,
    Message,
}

impl CallbackSpec {
    /// The connector this callback belongs to.
    pub fn connector(&self) -> &str {
        &self.connector
    }

    pub(crate) fn set_connector(&mut self, name: &str) {
        self.connector = name.to_string();
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_secs)
    }

    /// The deployment settings rendering needs: `base` and the auth secret's key.
    pub fn settings_keys(&self) -> Vec<&str> {
        vec!["base", self.auth.secret_key()]
    }

    /// The request telling the channel about `event`, or `None` when the channel has no
    /// word for this status (deliberately not sent). `settings` looks up the connector's
    /// deployment settings (`base`, secrets); `now_unix` is the signing time.
    pub fn render(
        &self,
        event: &CallbackEvent,
        settings: &dyn Fn(&str) -> Option<String>,
        now_unix: i64,
    ) -> Result<Option<CallbackRequest>, CallbackError> {
        if event.channel != self.connector {
            return Err(CallbackError::WrongChannel {
                connector: self.connector.clone(),
                channel: event.channel.clone(),
            });
        }
        if !CANONICAL_STATUSES.contains(&event.status.as_str()) {
            return Err(CallbackError::UnknownStatus {
                connector: self.connector.clone(),
                status: event.status.clone(),
            });
        }
        let Some(channel_status) = self.statuses.get(&event.status) else {
            return Ok(None);
        };
        let render_err = |key: &str, message: String| CallbackError::Render {
            connector: self.connector.clone(),
            key: key.to_string(),
            message,
        };
        let tz: Tz = self
            .zone
            .parse()
            .map_err(|_| render_err("callback.zone", format!("unknown zone {:?}", self.zone)))?;
        let mut ctx = Context {
            event,
            channel_status,
            tz,
            message: String::new(),
        };
        let message_key = if self.messages.contains_key(&event.status) {
            event.status.as_str()
        } else {
            "default"
        };
        ctx.message = match self.messages.get(message_key) {
            Some(t) => render_text(t, &ctx)
                .map_err(|m| render_err(&format!("callback.messages.{message_key}"), m))?,
            None => event.note.clone().unwrap_or_default(),
        };

        let url = self.render_url(&ctx, settings)?;
        let mut body = self
            .body
            .render(&mut |t| render_value(t, &ctx))
            .map_err(|m| render_err("callback.body", m))?;
        if self.public {
            let name = event.reporter_name.as_deref();
            body = body
                .map_strings(&mut |s| scrub::scrub(&s, name).ok_or(()))
                .map_err(|()| CallbackError::Scrub {
                    connector: self.connector.clone(),
                })?;
        }
        let (bytes, content_type) = match self.format {
            CallbackFormat::Json => (
                serde_json::to_vec(&body)
                    .map_err(|e| render_err("callback.body", e.to_string()))?,
                "application/json; charset=utf-8",
            ),
            CallbackFormat::Xml => (
                body.to_xml(self.root.as_deref().unwrap_or("root"))
                    .into_bytes(),
                "application/xml; charset=utf-8",
            ),
        };
        let secret = self.setting(settings, self.auth.secret_key())?;
        let headers = self.auth.outbound_headers(&secret, &bytes, now_unix);
        Ok(Some(CallbackRequest {
            method: self.method.as_str().to_string(),
            url,
            headers,
            body: bytes,
            content_type,
        }))
    }

    /// What the channel's answer means. A request with no answer is
    /// [`transport_failure`].
    pub fn classify(
        &self,
        http_status: u16,
        retry_after: Option<&str>,
        body: &[u8],
    ) -> DeliveryOutcome {
        self.outcome.classify(http_status, retry_after, body)
    }

    fn setting(
        &self,
        settings: &dyn Fn(&str) -> Option<String>,
        key: &str,
    ) -> Result<String, CallbackError> {
        settings(key)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .ok_or_else(|| CallbackError::MissingSetting {
                connector: self.connector.clone(),
                key: key.to_string(),
            })
    }

    fn render_url(
        &self,
        ctx: &Context<'_>,
        settings: &dyn Fn(&str) -> Option<String>,
    ) -> Result<String, CallbackError> {
        let err = |message: String| CallbackError::Render {
            connector: self.connector.clone(),
            key: "callback.url".into(),
            message,
        };
        let mut url = String::new();
        for segment in template::parse(&self.url).map_err(err)? {
            match segment {
                Segment::Text(t) => url.push_str(t),
                Segment::Var(v) if v.name == "base" => {
                    let base = self.setting(settings, "base")?;
                    if !(base.starts_with("http://") || base.starts_with("https://")) {
                        return Err(CallbackError::BadBase {
                            connector: self.connector.clone(),
                            value: base,
                        });
                    }
                    url.push_str(base.trim_end_matches('/'));
                }
                Segment::Var(v) => {
                    let value = ctx.text(&v).map_err(err)?;
                    // `..` would climb out of the channel's path once the client normalizes
                    // the URL (`%2E%2E` too, per the URL standard), and empty collapses it.
                    if matches!(value.as_str(), "" | "." | "..") {
                        return Err(err(format!(
                            "{{{{{}}}}} is {value:?}, which cannot be a path segment",
                            v.name
                        )));
                    }
                    url.extend(utf8_percent_encode(&value, PATH_SEGMENT));
                }
            }
        }
        Ok(url)
    }

    /// Every problem of this section, each naming its key (`key` is `callback`).
    pub fn problems(&self, key: &str) -> Vec<String> {
        let mut problems = Vec::new();
        let mut check = |path: &str, text: &str, place: Place| {
            problems.extend(template_problems(path, text, place, self.public));
        };

        check(&format!("{key}.url"), &self.url, Place::Url);
        self.body
            .each_string(&format!("{key}.body"), &mut |path, text| {
                check(path, text, Place::Body)
            });
        for (status, text) in &self.messages {
            check(&format!("{key}.messages.{status}"), text, Place::Message);
        }

        if !self.url.starts_with("{{base}}") {
            problems.push(format!(
                "{key}.url: {:?} must start with {{{{base}}}} (the deployment's base URL)",
                self.url
            ));
        }
        if !matches!(self.body, BodyTemplate::Table(_)) {
            problems.push(format!("{key}.body: must be a table"));
        }
        match (self.format, &self.root) {
            (CallbackFormat::Xml, None) => {
                problems.push(format!("{key}.root: an XML body needs its root element"))
            }
            (CallbackFormat::Xml, Some(root)) if !template::is_xml_name(root) => problems.push(
                format!("{key}.root: {root:?} is not an element name we can write"),
            ),
            (CallbackFormat::Json, Some(_)) => {
                problems.push(format!("{key}.root: only for format = \"xml\""))
            }
            _ => {}
        }
        if self.format == CallbackFormat::Xml {
            self.body
                .each_key(&format!("{key}.body"), &mut |path, name| {
                    if !template::is_xml_name(name) {
                        problems.push(format!("{path}: {name:?} is not an element name"));
                    }
                });
        }

        if self.statuses.is_empty() {
            problems.push(format!(
                "{key}.statuses: map at least one canonical status, or drop [callback]"
            ));
        }
        for (status, word) in &self.statuses {
            if !CANONICAL_STATUSES.contains(&status.as_str()) {
                problems.push(format!(
                    "{key}.statuses.{status}: not a canonical status; expected one of {}",
                    CANONICAL_STATUSES.join(", ")
                ));
            }
            let usable = match word {
                Value::String(s) => !s.trim().is_empty(),
                Value::Number(n) => n.is_i64() || n.is_u64(),
                _ => false,
            };
            if !usable {
                problems.push(format!(
                    "{key}.statuses.{status}: the channel's word must be a non-empty string or an integer"
                ));
            }
        }
        for status in self.messages.keys() {
            if status == "default" {
                continue;
            }
            if !CANONICAL_STATUSES.contains(&status.as_str()) {
                problems.push(format!(
                    "{key}.messages.{status}: not a canonical status (or \"default\")"
                ));
            } else if !self.statuses.contains_key(status) {
                problems.push(format!(
                    "{key}.messages.{status}: never sent, {status} is not in {key}.statuses"
                ));
            }
        }

        if let AuthScheme::BodyField { .. } = self.auth {
            problems.push(format!(
                "{key}.auth: a callback authenticates with bearer, header or hmac_sha256"
            ));
        }
        if self.auth.secret_key().trim().is_empty() {
            problems.push(format!("{key}.auth.secret: must name a settings key"));
        }
        if self.zone.parse::<Tz>().is_err() {
            problems.push(format!(
                "{key}.zone: unknown time zone {:?} (use an IANA name like Asia/Shanghai)",
                self.zone
            ));
        }
        if self.rate_limit_per_second == 0 || self.rate_limit_burst == 0 {
            problems.push(format!(
                "{key}.rate_limit_per_second/rate_limit_burst: must be > 0"
            ));
        }
        if !(1..=300).contains(&self.timeout_secs) {
            problems.push(format!("{key}.timeout_secs: must be between 1 and 300"));
        }
        problems.extend(self.outcome.problems(&format!("{key}.outcome")));
        problems
    }
}

fn template_problems(path: &str, text: &str, place: Place, public: bool) -> Vec<String> {
    let segments = match template::parse(text) {
        Ok(s) => s,
        Err(e) => return vec![format!("{path}: {e}")],
    };
    let mut problems = Vec::new();
    for segment in segments {
        let Segment::Var(v) = segment else { continue };
        let shown = format!("{{{{{}}}}}", v.name);
        if public && v.name.starts_with("reporter_") {
            problems.push(format!(
                "{path}: {shown} must not be sent to a public channel (its replies are published)"
            ));
            continue;
        }
        if !VARIABLES.contains(&v.name) {
            problems.push(format!(
                "{path}: unknown variable {shown}; expected one of {}",
                VARIABLES.join(", ")
            ));
            continue;
        }
        if v.name == "base" && place != Place::Url {
            problems.push(format!("{path}: {shown} is only for the url"));
        }
        if v.name == "message" && place == Place::Message {
            problems.push(format!("{path}: a message cannot use {shown} (itself)"));
        }
        match (v.arg, is_local_time(v.name)) {
            (Some(_), false) => problems.push(format!("{path}: {shown} takes no format")),
            (Some(format), true) if !valid_time_format(format) => problems.push(format!(
                "{path}: {shown}: {format:?} is not a chrono time format"
            )),
            _ => {}
        }
    }
    problems
}

fn is_local_time(name: &str) -> bool {
    matches!(name, "at_local" | "deadline_local")
}

fn valid_time_format(format: &str) -> bool {
    !format.trim().is_empty() && !StrftimeItems::new(format).any(|i| matches!(i, Item::Error))
}

/// What the variables of one event resolve to.
struct Context<'a> {
    event: &'a CallbackEvent,
    channel_status: &'a Value,
    tz: Tz,
    message: String,
}

impl Context<'_> {
    /// The variable's value, `None` when the event has none.
    fn value(&self, var: &Var<'_>) -> Result<Option<Value>, String> {
        let e = self.event;
        let text = |s: &str| Some(Value::String(s.to_string()));
        let opt = |s: &Option<String>| s.as_deref().map(|s| Value::String(s.to_string()));
        let time = |t: Option<DateTime<Utc>>, what: &str| -> Result<Option<Value>, String> {
            let Some(t) = t else { return Ok(None) };
            Ok(Some(match what {
                "rfc3339" => Value::String(
                    t.with_timezone(&self.tz)
                        .to_rfc3339_opts(SecondsFormat::Secs, true),
                ),
                "unix" => Value::from(t.timestamp()),
                "unix_ms" => Value::from(t.timestamp_millis()),
                _ => {
                    let format = var.arg.unwrap_or(DEFAULT_LOCAL_FORMAT);
                    let mut out = String::new();
                    // `write!` reports a bad format as an error; `to_string` would panic.
                    write!(out, "{}", t.with_timezone(&self.tz).format(format))
                        .map_err(|_| format!("{format:?} is not a chrono time format"))?;
                    Value::String(out)
                }
            }))
        };
        Ok(match var.name {
            "channel" => text(&e.channel),
            "source_id" => text(&e.source_id),
            "petition_id" => text(&e.petition_id),
            "case_id" => text(&e.case_id),
            "status" => text(&e.status),
            "channel_status" => Some(self.channel_status.clone()),
            "message" => text(&self.message),
            "department_code" => opt(&e.department_code),
            "department_name" => opt(&e.department_name),
            "note" => opt(&e.note),
            "merged_into" => opt(&e.merged_into),
            "case_status" => opt(&e.case_status),
            "reporter_name" => opt(&e.reporter_name),
            "at_rfc3339" => time(Some(e.at), "rfc3339")?,
            "at_unix" => time(Some(e.at), "unix")?,
            "at_unix_ms" => time(Some(e.at), "unix_ms")?,
            "at_local" => time(Some(e.at), "local")?,
            "deadline_rfc3339" => time(e.deadline, "rfc3339")?,
            "deadline_unix" => time(e.deadline, "unix")?,
            "deadline_unix_ms" => time(e.deadline, "unix_ms")?,
            "deadline_local" => time(e.deadline, "local")?,
            other => return Err(format!("unknown variable {{{{{other}}}}}")),
        })
    }

    /// The value as text, or the fallback when it is absent or empty.
    fn text(&self, var: &Var<'_>) -> Result<String, String> {
        Ok(match self.value(var)? {
            Some(v) if !is_empty(&v) => template::value_text(&v),
            _ => var.fallback.unwrap_or_default().to_string(),
        })
    }
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::String(s) => s.trim().is_empty(),
        _ => false,
    }
}

fn render_text(template: &str, ctx: &Context<'_>) -> Result<String, String> {
    let mut out = String::new();
    for segment in template::parse(template)? {
        match segment {
            Segment::Text(t) => out.push_str(t),
            Segment::Var(v) => out.push_str(&ctx.text(&v)?),
        }
    }
    Ok(out)
}

/// A body string: exactly one variable keeps its type, anything else is text.
fn render_value(template: &str, ctx: &Context<'_>) -> Result<Value, String> {
    let segments = template::parse(template)?;
    if let [Segment::Var(v)] = segments.as_slice() {
        return Ok(match ctx.value(v)? {
            Some(value) if !is_empty(&value) => value,
            _ => Value::String(v.fallback.unwrap_or_default().to_string()),
        });
    }
    render_text(template, ctx).map(Value::String)
}

#[cfg(test)]
mod tests;
