//! The typed form of `connectors/<name>.toml`: everything that makes a channel a channel.

use crate::answer::AnswerSpec;
use crate::auth::AuthScheme;
use crate::callback::CallbackSpec;
use crate::transforms::Transform;
use serde::Deserialize;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// Petition fields a mapping may write (dotted paths into `schemas/petition.v1`). The
/// gateway itself sets `id`, `channel`, `received_at`, `trace_id` and `location.region`.
pub const MAPPABLE_TARGETS: &[&str] = &[
    "source_id",
    "reported_at",
    "kind",
    "title",
    "text",
    "category",
    "category_label",
    "urgency",
    "reporter.name",
    "reporter.phone",
    "reporter.type",
    "location.address",
    "location.grid_code",
    "location.point",
    "attachments",
];

/// Targets every connector must fill (`reported_at` defaults to the receive time).
pub const REQUIRED_TARGETS: &[&str] = &["source_id", "kind", "text", "urgency"];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectorDefinition {
    pub connector: ConnectorMeta,
    pub intake: Intake,
    pub mapping: Vec<FieldRule>,
    /// How the channel is told about status changes; channels that poll us for status
    /// (Open311) have none.
    #[serde(default)]
    pub callback: Option<CallbackSpec>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectorMeta {
    /// The channel name: the petition's `channel`, the route `/intake/<name>`.
    pub name: String,
    #[serde(default)]
    pub description: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case", deny_unknown_fields)]
pub enum Intake {
    /// The channel POSTs petitions to the gateway.
    Push(PushIntake),
    /// The gateway fetches pages of petitions from the channel.
    Poll(PollIntake),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushIntake {
    /// Path of the HTTP route, e.g. `/intake/hotline`.
    pub route: String,
    pub format: BodyFormat,
    /// Largest accepted body; larger requests are refused before they are read.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// Sustained requests per second this channel may send, and the burst above it.
    #[serde(default = "default_rate")]
    pub rate_limit_per_second: u32,
    #[serde(default = "default_burst")]
    pub rate_limit_burst: u32,
    pub auth: AuthScheme,
    pub answer: AnswerSpec,
    /// Other things the channel posts about its petitions (e.g. satisfaction feedback),
    /// published as events rather than petitions.
    #[serde(default)]
    pub events: Vec<EventRoute>,
    /// A discovery document the channel's clients fetch (Open311 `services.json`).
    #[serde(default)]
    pub discovery: Option<Discovery>,
    /// Status queries the channel's clients send instead of receiving callbacks
    /// (Open311 `requests/{id}.json`, `requests.json`), answered from the ledger.
    #[serde(default)]
    pub queries: Vec<QueryRoute>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryRoute {
    /// A path; `{file}` as the last segment takes the id with its extension
    /// (`/open311/v2/requests/{file}` serves `…/requests/<id>.json`).
    pub route: String,
    pub kind: QueryKind,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum QueryKind {
    /// GeoReport v2: one service request by id.
    Open311Request,
    /// GeoReport v2: service requests by ids, service code, dates and status.
    Open311Requests,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventRoute {
    pub route: String,
    /// e.g. `satisfaction`; the record's `event_type`.
    pub event_type: String,
    /// JSON Pointer to the channel's id of the petition the event is about.
    pub source_id: String,
    /// Pointers that must be present.
    #[serde(default)]
    pub required: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Discovery {
    pub route: String,
    pub kind: DiscoveryKind,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum DiscoveryKind {
    /// GeoReport v2 service list built from the responsibility list's categories.
    Open311Services,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PollIntake {
    /// URL template: `{base}` (from the deployment settings), `{cursor}`, `{limit}`,
    /// `{page}`, `{page_size}`, `{window_start}`; values are URL-encoded.
    pub url: String,
    pub format: PollFormat,
    /// Pause between polls once the channel has nothing new.
    #[serde(default = "default_interval")]
    pub interval_secs: u64,
    /// The channel's own limit on our requests.
    #[serde(default = "default_poll_rate")]
    pub rate_limit_per_second: u32,
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    pub auth: AuthScheme,
    /// JSON Pointer to the list of items in a page (XML is read as JSON first).
    pub items: String,
    pub paging: Paging,
}

fn default_interval() -> u64 {
    30
}
fn default_poll_rate() -> u32 {
    1
}
fn default_timeout() -> u64 {
    10
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum PollFormat {
    Json,
    Xml,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "style", rename_all = "snake_case", deny_unknown_fields)]
pub enum Paging {
    /// An opaque cursor: the page says where the next one starts and whether there is one.
    Cursor {
        next_cursor: String,
        has_more: String,
        page_size: u32,
    },
    /// Numbered pages over a time window that starts at the newest item time seen; the
    /// window start is re-read, so items at that instant are never missed.
    PageWindow {
        total: String,
        page_size: u32,
        #[serde(default = "default_first_page")]
        first_page: u32,
        /// Pointer inside an item to its time, and that time's format.
        item_time: String,
        time_format: String,
        /// Where the first poll starts.
        initial_window: String,
    },
}

fn default_first_page() -> u32 {
    1
}

fn default_max_body_bytes() -> usize {
    64 * 1024
}
fn default_rate() -> u32 {
    500
}
fn default_burst() -> u32 {
    1000
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum BodyFormat {
    Json,
    /// `application/x-www-form-urlencoded`: fields become a JSON object of strings.
    Form,
}

/// One petition field and where it comes from.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldRule {
    /// Dotted petition path, one of [`MAPPABLE_TARGETS`].
    pub target: String,
    /// JSON Pointer into the channel's payload (`/gdbh`, `/user/mobile`).
    #[serde(default)]
    pub from: Option<String>,
    /// A constant instead of `from`.
    #[serde(default)]
    pub value: Option<Value>,
    /// The payload must carry a non-null value here.
    #[serde(default)]
    pub required: bool,
    #[serde(default)]
    pub transforms: Vec<Transform>,
}

#[derive(Debug, thiserror::Error)]
pub enum DefinitionError {
    #[error("{file}: cannot read: {source}")]
    Read {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("{file}: {message}")]
    Parse { file: PathBuf, message: String },
    #[error("{file}: {}", problems.join("; "))]
    Invalid {
        file: PathBuf,
        problems: Vec<String>,
    },
}

impl ConnectorDefinition {
    pub fn load(file: &Path) -> Result<Self, DefinitionError> {
        let text = std::fs::read_to_string(file).map_err(|source| DefinitionError::Read {
            file: file.to_path_buf(),
            source,
        })?;
        Self::parse(&text, file)
    }

    /// Parses and validates; `file` only names the source in errors.
    pub fn parse(text: &str, file: &Path) -> Result<Self, DefinitionError> {
        let mut def: ConnectorDefinition =
            toml::from_str(text).map_err(|e| DefinitionError::Parse {
                file: file.to_path_buf(),
                message: e.to_string().trim_end().replace('\n', " | "),
            })?;
        let name = def.connector.name.clone();
        if let Some(callback) = def.callback.as_mut() {
            callback.set_connector(&name);
        }
        let problems = def.problems();
        if problems.is_empty() {
            Ok(def)
        } else {
            Err(DefinitionError::Invalid {
                file: file.to_path_buf(),
                problems,
            })
        }
    }

    pub fn name(&self) -> &str {
        &self.connector.name
    }

    pub fn push(&self) -> Option<&PushIntake> {
        match &self.intake {
            Intake::Push(push) => Some(push),
            Intake::Poll(_) => None,
        }
    }

    pub fn poll(&self) -> Option<&PollIntake> {
        match &self.intake {
            Intake::Poll(poll) => Some(poll),
            Intake::Push(_) => None,
        }
    }

    pub fn callback(&self) -> Option<&CallbackSpec> {
        self.callback.as_ref()
    }

    pub fn auth(&self) -> &AuthScheme {
        match &self.intake {
            Intake::Push(p) => &p.auth,
            Intake::Poll(p) => &p.auth,
        }
    }

    /// Every HTTP route this connector serves on the gateway.
    pub fn routes(&self) -> Vec<String> {
        match &self.intake {
            Intake::Push(p) => std::iter::once(p.route.clone())
                .chain(p.events.iter().map(|e| e.route.clone()))
                .chain(p.discovery.iter().map(|d| d.route.clone()))
                .collect(),
            Intake::Poll(_) => Vec::new(),
        }
    }

    /// Every problem, each naming its key, so an integrator fixes them in one pass.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let name = &self.connector.name;
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            problems.push(format!(
                "connector.name: {name:?} must be lowercase letters, digits and '-'"
            ));
        }
        match &self.intake {
            Intake::Push(push) => {
                for route in self.routes() {
                    if !route.starts_with('/') {
                        problems.push(format!("intake: route {route:?} must start with '/'"));
                    }
                }
                if push.max_body_bytes == 0 || push.max_body_bytes > 16 * 1024 * 1024 {
                    problems.push("intake.max_body_bytes: must be between 1 and 16 MiB".into());
                }
                if push.rate_limit_per_second == 0 || push.rate_limit_burst == 0 {
                    problems
                        .push("intake.rate_limit_per_second/rate_limit_burst: must be > 0".into());
                }
                problems.extend(push.answer.problems("intake.answer"));
                for (i, e) in push.events.iter().enumerate() {
                    for p in std::iter::once(&e.source_id).chain(&e.required) {
                        if !p.starts_with('/') {
                            problems.push(format!(
                                "intake.events[{i}]: {p:?} must be a JSON Pointer starting with '/'"
                            ));
                        }
                    }
                }
            }
            Intake::Poll(poll) => {
                if !poll.url.starts_with("{base}") && !poll.url.starts_with("http") {
                    problems.push(format!(
                        "intake.url: {:?} must start with {{base}} or http",
                        poll.url
                    ));
                }
                if poll.rate_limit_per_second == 0 {
                    problems.push("intake.rate_limit_per_second: must be > 0".into());
                }
                if poll.interval_secs == 0 {
                    problems.push("intake.interval_secs: must be > 0".into());
                }
                if !poll.items.starts_with('/') {
                    problems.push("intake.items: must be a JSON Pointer starting with '/'".into());
                }
                if let AuthScheme::BodyField { .. } | AuthScheme::HmacSha256 { .. } = poll.auth {
                    problems.push(
                        "intake.auth: a poll connector authenticates with bearer or header".into(),
                    );
                }
                match &poll.paging {
                    Paging::Cursor { page_size, .. } | Paging::PageWindow { page_size, .. }
                        if *page_size == 0 =>
                    {
                        problems.push("intake.paging.page_size: must be > 0".into());
                    }
                    Paging::PageWindow {
                        time_format,
                        initial_window,
                        ..
                    } if chrono::NaiveDateTime::parse_from_str(initial_window, time_format)
                        .is_err() =>
                    {
                        problems.push(format!(
                            "intake.paging.initial_window: {initial_window:?} does not match time_format {time_format:?}"
                        ));
                    }
                    _ => {}
                }
            }
        }
        if self.auth().secret_key().is_empty() {
            problems.push("intake.auth.secret: must name a settings key".into());
        }

        if let Some(callback) = &self.callback {
            problems.extend(callback.problems("callback"));
        }

        let mut seen = std::collections::HashSet::new();
        for (i, rule) in self.mapping.iter().enumerate() {
            let key = format!("mapping[{i}] (target {:?})", rule.target);
            if !MAPPABLE_TARGETS.contains(&rule.target.as_str()) {
                problems.push(format!(
                    "{key}: unknown target; expected one of {}",
                    MAPPABLE_TARGETS.join(", ")
                ));
            }
            if !seen.insert(rule.target.clone()) {
                problems.push(format!("{key}: target mapped twice"));
            }
            match (&rule.from, &rule.value) {
                (Some(_), Some(_)) => {
                    problems.push(format!("{key}: give `from` or `value`, not both"))
                }
                (None, None) => problems.push(format!("{key}: needs `from` or `value`")),
                (Some(from), None) if !(from.is_empty() || from.starts_with('/')) => problems.push(format!(
                    "{key}.from: {from:?} must be a JSON Pointer starting with '/' (or \"\" for the whole item)"
                )),
                _ => {}
            }
            for (j, t) in rule.transforms.iter().enumerate() {
                if let Err(e) = t.validate() {
                    problems.push(format!("{key}.transforms[{j}] ({}): {e}", t.name()));
                }
            }
        }
        for required in REQUIRED_TARGETS {
            if !seen.contains(*required) {
                problems.push(format!(
                    "mapping: no rule fills the required target {required:?}"
                ));
            }
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOTLINE: &str = include_str!("../hotline.toml");

    #[test]
    fn the_shipped_hotline_definition_is_valid() {
        let def = ConnectorDefinition::parse(HOTLINE, Path::new("hotline.toml"));
        assert!(def.is_ok(), "{:?}", def.err());
    }

    #[test]
    fn problems_name_their_keys() {
        let broken = HOTLINE
            .replace("zone = \"Asia/Shanghai\"", "zone = \"Asia/Nowhere\"")
            .replace("target = \"text\"", "target = \"txet\"");
        let err = ConnectorDefinition::parse(&broken, Path::new("x.toml"))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("x.toml"), "{err}");
        assert!(err.contains("Asia/Nowhere"), "{err}");
        assert!(err.contains("unknown target"), "{err}");
        assert!(err.contains("required target \"text\""), "{err}");
    }

    #[test]
    fn unknown_keys_are_rejected_with_their_location() {
        let broken = HOTLINE.replacen("[intake]", "[intake]\nroutee = \"/x\"", 1);
        let err = ConnectorDefinition::parse(&broken, Path::new("x.toml"))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("routee"), "{err}");
    }
}
