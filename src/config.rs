//! Gateway configuration: a TOML file layered with `GATEWAY__SECTION__KEY` environment
//! variables (the `config` crate), validated as a whole at startup.
//!
//! Relative paths in the file are resolved from the file's own folder, so the gateway
//! runs the same from any working directory.

use crate::dispatch::responsibility::{valid_topic_name, ResponsibilityList};
use crate::normalize::region::{Gazetteer, RegionResolver};
use gateway_connectors::ConnectorDefinition;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

pub const ENV_PREFIX: &str = "GATEWAY";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub http: HttpSettings,
    pub kafka: KafkaSettings,
    #[serde(default)]
    pub topics: TopicSettings,
    pub routing: RoutingSettings,
    #[serde(default)]
    pub dispatcher: DispatcherSettings,
    #[serde(default)]
    pub responder: ResponderSettings,
    #[serde(default)]
    pub ledger: LedgerSettings,
    #[serde(default)]
    pub lifecycle: LifecycleSettings,
    #[serde(default)]
    pub dedupe: DedupeConfig,
    #[serde(default)]
    pub connectors: BTreeMap<String, ConnectorSettings>,
}

/// `[dedupe]`: how near-duplicate reports join open cases.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DedupeConfig {
    /// All reports of a case were reported within this long of each other (event time).
    pub window_hours: u32,
    /// How much later than its incident's first report a report may reach the gateway
    /// and still find its case: a case leaves the index window + this long of processing
    /// time after its first report arrived.
    pub allowed_lateness_hours: u32,
}

impl Default for DedupeConfig {
    fn default() -> Self {
        // The center's 72 h promise, and a portal down for three days; see
        // `config/gateway.toml`.
        Self {
            window_hours: 72,
            allowed_lateness_hours: 72,
        }
    }
}

impl DedupeConfig {
    pub fn settings(&self) -> crate::dispatch::dedupe::DedupeSettings {
        crate::dispatch::dedupe::DedupeSettings {
            window_secs: i64::from(self.window_hours) * 3600,
            allowed_lateness_secs: i64::from(self.allowed_lateness_hours) * 3600,
            ..Default::default()
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSettings {
    /// Address of the HTTP listener (`127.0.0.1:8080`; port 0 picks a free one).
    pub listen: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSettings {
    pub bootstrap_servers: String,
    #[serde(default = "default_client_id")]
    pub client_id: String,
    /// How long a petition may wait for Kafka's acknowledgement before the sender is told
    /// to try again.
    #[serde(default = "default_message_timeout_ms")]
    pub message_timeout_ms: u64,
    /// Partitions and replication factor for the topics the gateway creates.
    #[serde(default = "default_partitions")]
    pub partitions: i32,
    #[serde(default = "default_replication_factor")]
    pub replication_factor: i32,
    /// How long the broker may hold a fetch of the stages' consumers when nothing is
    /// there. Records of a Kafka transaction become readable when it commits, and the
    /// broker does not answer a waiting fetch for that: the consumer sees them only at
    /// its next fetch. librdkafka's 500 ms default would add up to that to every stage.
    #[serde(default = "default_fetch_wait_max_ms")]
    pub fetch_wait_max_ms: u32,
}

fn default_client_id() -> String {
    "petition-gateway".into()
}
fn default_message_timeout_ms() -> u64 {
    10_000
}
fn default_partitions() -> i32 {
    3
}
fn default_replication_factor() -> i32 {
    1
}
fn default_fetch_wait_max_ms() -> u32 {
    20
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TopicSettings {
    /// Put in front of every topic name, department topics included (one Kafka cluster,
    /// several environments; tests use it to stay apart).
    pub prefix: String,
    pub inbound: String,
    pub invalid: String,
    pub triage: String,
    pub escalations: String,
    /// Events from channels about their petitions (satisfaction feedback).
    pub feedback: String,
    /// Compacted: where each poll connector has read up to.
    pub poll_cursors: String,
    /// One partition per poll connector; the consumer group's assignment decides which
    /// gateway instance polls which channel.
    pub poll_leases: String,
    /// Compacted: the dispatcher's cases and the reports linked to them, one partition
    /// per inbound partition; the state a dispatcher restores on assignment.
    pub cases: String,
    /// Each channel's callback outbox is `<callbacks>.<channel>`, keyed by case id.
    pub callbacks: String,
    /// Due-soon and overdue alerts, and callbacks given up.
    pub alerts: String,
    /// Compacted: each callback's final state (delivered, not applicable, dead).
    pub callback_delivery: String,
    /// Callbacks given up, with every attempt's outcome.
    pub callbacks_dead: String,
    /// What departments and the center publish about cases.
    pub status: String,
    /// Status events and feedback refused, with the reason.
    pub status_rejected: String,
    /// Status events and feedback forwarded to the dispatcher partition owning the case
    /// (as many partitions as inbound).
    pub case_events: String,
    /// Compacted, one partition: the center's assignments the router learns from, by
    /// case id (see `dispatch::learning::stream`).
    pub examples: String,
}

impl Default for TopicSettings {
    fn default() -> Self {
        Self {
            prefix: String::new(),
            inbound: "petitions.inbound".into(),
            invalid: "petitions.invalid".into(),
            triage: "petitions.triage".into(),
            escalations: "petitions.escalations".into(),
            feedback: "petitions.feedback".into(),
            poll_cursors: "gateway.poll-cursors".into(),
            poll_leases: "gateway.poll-leases".into(),
            cases: "petitions.cases".into(),
            callbacks: "callbacks".into(),
            alerts: "petitions.alerts".into(),
            callback_delivery: "callbacks.delivery".into(),
            callbacks_dead: "callbacks.dead".into(),
            status: "petitions.status".into(),
            status_rejected: "petitions.status.rejected".into(),
            case_events: "petitions.case-events".into(),
            examples: "routing.examples".into(),
        }
    }
}

impl TopicSettings {
    pub fn name(&self, topic: &str) -> String {
        format!("{}{topic}", self.prefix)
    }

    /// A channel's callback outbox.
    pub fn callbacks_topic(&self, channel: &str) -> String {
        format!("{}{}.{channel}", self.prefix, self.callbacks)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutingSettings {
    pub responsibility: PathBuf,
    pub gazetteer: PathBuf,
    /// How often the responsibility list file is checked for changes (0: never). A
    /// changed list that validates replaces the running one; a broken one is logged
    /// and the running list stays.
    #[serde(default = "default_reload_interval_ms")]
    pub reload_interval_ms: u64,
    #[serde(default)]
    pub learning: LearningConfig,
}

/// `[routing.learning]`: the model learned from the center's assignments.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LearningConfig {
    /// Learn from the center's assignments, and let the model decide what the list
    /// leaves to triage.
    pub enabled: bool,
    /// The model decides only at or above this probability; below, triage.
    pub min_confidence: f64,
    /// … and only for a department the center assigned at least this many cases.
    pub min_examples: usize,
    /// … and only when one of those cases is at least this alike (Jaccard over words and
    /// bigrams).
    pub min_overlap: f64,
    /// Let the center's corrections override a decision the list took on keywords alone,
    /// for petitions like those the center corrected away from that department.
    pub override_corrected: bool,
    /// Labeled history (JSONL of examples, `source` "seed") learned before the center's
    /// assignments. Off by default: what is measured is learning from the center.
    pub seed: Option<PathBuf>,
}

impl Default for LearningConfig {
    fn default() -> Self {
        let s = crate::dispatch::learning::LearningSettings::default();
        Self {
            enabled: true,
            min_confidence: s.min_confidence,
            min_examples: s.min_examples,
            min_overlap: s.min_overlap,
            override_corrected: s.override_corrected,
            seed: None,
        }
    }
}

impl LearningConfig {
    pub fn settings(&self) -> crate::dispatch::learning::LearningSettings {
        crate::dispatch::learning::LearningSettings {
            min_confidence: self.min_confidence,
            min_examples: self.min_examples,
            min_overlap: self.min_overlap,
            override_corrected: self.override_corrected,
        }
    }
}

fn default_reload_interval_ms() -> u64 {
    2000
}

/// The case lifecycle's clock.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LifecycleSettings {
    /// The due-soon alert fires after this share of a case's SLA.
    pub due_soon_share: f64,
    /// A resolved case nobody answered for closes after this long.
    pub satisfaction_timeout_hours: f64,
    /// How long an SLA hour lasts, in seconds: 3600. Shorten only for demos and tests.
    pub hour_secs: u32,
    /// How often the dispatcher looks for due timers.
    pub tick_interval_ms: u64,
}

impl Default for LifecycleSettings {
    fn default() -> Self {
        Self {
            due_soon_share: 0.8,
            satisfaction_timeout_hours: 72.0,
            hour_secs: 3600,
            tick_interval_ms: 1000,
        }
    }
}

impl LifecycleSettings {
    pub fn timing(&self) -> crate::lifecycle::Timing {
        let hour = i64::from(self.hour_secs.max(1));
        crate::lifecycle::Timing {
            due_soon_share: self.due_soon_share,
            satisfaction_timeout_secs: (self.satisfaction_timeout_hours * hour as f64) as i64,
            hour_secs: hour,
        }
    }
}

/// The ledger API: who may read it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LedgerSettings {
    pub enabled: bool,
    /// `center` or a department code → that caller's API key (`X-Api-Key`). The center
    /// sees every case; a department only its own. Set keys through
    /// `GATEWAY__LEDGER__KEYS__<CODE>` in deployments.
    pub keys: BTreeMap<String, String>,
    /// Where the ledger keeps its cases: `sqlite:PATH` (a relative path is resolved from
    /// the configuration file's folder; the file is created) or `postgres://…` (set it
    /// through `GATEWAY__LEDGER__DATABASE`: it may hold a password).
    pub database: String,
}

impl Default for LedgerSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            keys: BTreeMap::new(),
            database: "sqlite:ledger.sqlite".into(),
        }
    }
}

/// Callback delivery: the retry budget per callback.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ResponderSettings {
    pub enabled: bool,
    /// Attempts per callback before it goes to the dead letters (with the defaults,
    /// about 15 minutes of retrying).
    pub max_attempts: u32,
    pub retry_initial_ms: u64,
    pub retry_max_ms: u64,
}

impl Default for ResponderSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            max_attempts: 40,
            retry_initial_ms: 500,
            retry_max_ms: 30_000,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DispatcherSettings {
    pub enabled: bool,
    pub group_id: String,
    /// Names this instance's Kafka transactions. Keep it stable across restarts and
    /// unique among running instances: a restarted instance then fences its own
    /// unfinished transaction at once instead of leaving it open until it times out.
    /// Empty: derived from the host name and the HTTP port.
    pub instance_id: String,
    /// Inbound records handled per transaction, at most.
    pub max_batch: usize,
    /// How long Kafka lets a transaction stay open before aborting it.
    pub transaction_timeout_ms: u64,
    /// How long an instance that stopped answering keeps its partitions before the
    /// group gives them to the others. Members are static (`instance_id`), so a
    /// restarted instance takes them back at once and a short timeout is not needed
    /// for restarts, only for instances that never come back.
    pub session_timeout_ms: u64,
}

impl Default for DispatcherSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            group_id: "petition-dispatcher".into(),
            instance_id: String::new(),
            max_batch: 500,
            transaction_timeout_ms: 30_000,
            session_timeout_ms: 10_000,
        }
    }
}

/// `[connectors.<name>]`: which definition file to run and the deployment's secrets for
/// it. Secrets usually come from `GATEWAY__CONNECTORS__<NAME>__<KEY>`.
#[derive(Debug, Clone, Deserialize)]
pub struct ConnectorSettings {
    #[serde(default)]
    pub definition: Option<PathBuf>,
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Send this channel status callbacks (when its connector declares them). Off, its
    /// sources hear nothing back: for intake-only deployments and tests.
    #[serde(default = "default_true")]
    pub callbacks: bool,
    #[serde(flatten)]
    pub secrets: BTreeMap<String, String>,
}

fn default_true() -> bool {
    true
}

/// One configuration problem: where it is and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// A file, or the environment variable that set the key.
    pub origin: String,
    pub key: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}: {}", self.origin, self.message)
        } else {
            write!(f, "{}: {}: {}", self.origin, self.key, self.message)
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{} configuration problem(s):\n  {}", .0.len(), .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n  "))]
pub struct ConfigErrors(pub Vec<Problem>);

/// A connector ready to run: its definition and the secret its auth scheme needs.
#[derive(Debug, Clone)]
pub struct LoadedConnector {
    pub definition: ConnectorDefinition,
    pub secret: String,
    pub file: PathBuf,
    /// The channel's base URL (`{base}` in poll and callback URLs).
    pub base: Option<String>,
    /// Whether the gateway sends this channel status callbacks.
    pub callbacks: bool,
    /// The connector's deployment settings (base URL, secrets) by key.
    pub settings: BTreeMap<String, String>,
}

/// Everything `run` needs, validated.
pub struct Loaded {
    pub settings: Settings,
    pub config_file: PathBuf,
    pub connectors: Vec<LoadedConnector>,
    pub responsibility: ResponsibilityList,
    /// Where the list came from and its text, for reloading and versioning it.
    pub responsibility_file: PathBuf,
    pub responsibility_text: String,
    pub regions: RegionResolver,
}

fn env_var_for(key: &str) -> String {
    format!(
        "{ENV_PREFIX}__{}",
        key.replace('.', "__").replace('-', "_").to_uppercase()
    )
}

/// Where a key's value came from: the environment variable if one is set, else the file.
fn origin_of(key: &str, file: &Path) -> String {
    let var = env_var_for(key);
    if std::env::var_os(&var).is_some() {
        format!("environment variable {var}")
    } else {
        file.display().to_string()
    }
}

pub fn load_settings(file: &Path) -> Result<Settings, ConfigErrors> {
    let problem = |message: String| {
        ConfigErrors(vec![Problem {
            origin: file.display().to_string(),
            key: String::new(),
            message,
        }])
    };
    if !file.is_file() {
        return Err(problem("no such configuration file".into()));
    }
    let built = config::Config::builder()
        .add_source(config::File::from(file).format(config::FileFormat::Toml))
        .add_source(
            config::Environment::with_prefix(ENV_PREFIX)
                .prefix_separator("__")
                .separator("__"),
        )
        .build()
        .map_err(|e| problem(e.to_string()))?;
    let mut settings: Settings = built
        .try_deserialize()
        .map_err(|e| problem(format!("{e} (file or GATEWAY__… environment variable)")))?;
    settings.connectors = merge_connector_keys(std::mem::take(&mut settings.connectors));
    Ok(settings)
}

/// Environment variables cannot spell `city-app`; `GATEWAY__CONNECTORS__CITY_APP__…`
/// lands under `city_app` and is merged into `city-app` here.
fn merge_connector_keys(
    connectors: BTreeMap<String, ConnectorSettings>,
) -> BTreeMap<String, ConnectorSettings> {
    let mut merged: BTreeMap<String, ConnectorSettings> = BTreeMap::new();
    let (dashed, underscored): (Vec<_>, Vec<_>) =
        connectors.into_iter().partition(|(k, _)| !k.contains('_'));
    for (name, c) in dashed {
        merged.insert(name, c);
    }
    for (name, c) in underscored {
        let key = name.replace('_', "-");
        match merged.get_mut(&key) {
            Some(existing) => {
                if c.definition.is_some() {
                    existing.definition = c.definition;
                }
                // Both default to on: only an explicit `false` says something.
                existing.enabled &= c.enabled;
                existing.callbacks &= c.callbacks;
                existing.secrets.extend(c.secrets);
            }
            None => {
                merged.insert(key, c);
            }
        }
    }
    merged
}

fn resolve(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

/// Loads and validates everything: settings, connector files, the gazetteer and the
/// responsibility list. Reports every problem found, not just the first.
pub fn load(file: &Path) -> Result<Loaded, ConfigErrors> {
    let mut settings = load_settings(file)?;
    let base = file.parent().unwrap_or(Path::new(".")).to_path_buf();
    let mut problems = Vec::new();
    let mut push = |key: &str, message: String| {
        problems.push(Problem {
            origin: origin_of(key, file),
            key: key.into(),
            message,
        })
    };

    if settings.http.listen.parse::<SocketAddr>().is_err() {
        push(
            "http.listen",
            format!(
                "{:?} is not an address like 127.0.0.1:8080",
                settings.http.listen
            ),
        );
    }
    if settings.kafka.bootstrap_servers.trim().is_empty() {
        push("kafka.bootstrap_servers", "must not be empty".into());
    }
    if settings.kafka.message_timeout_ms < 1000 {
        push("kafka.message_timeout_ms", "must be at least 1000".into());
    }
    if settings.kafka.partitions < 1 {
        push("kafka.partitions", "must be at least 1".into());
    }
    if settings.kafka.replication_factor < 1 {
        push("kafka.replication_factor", "must be at least 1".into());
    }
    let t = &settings.topics;
    for (key, name) in [
        ("topics.inbound", &t.inbound),
        ("topics.invalid", &t.invalid),
        ("topics.triage", &t.triage),
        ("topics.escalations", &t.escalations),
        ("topics.feedback", &t.feedback),
        ("topics.poll_cursors", &t.poll_cursors),
        ("topics.poll_leases", &t.poll_leases),
        ("topics.cases", &t.cases),
        ("topics.examples", &t.examples),
    ] {
        if !valid_topic_name(&t.name(name)) {
            push(
                key,
                format!("{:?} is not a valid Kafka topic name", t.name(name)),
            );
        }
    }
    if !t.prefix.is_empty() && !valid_topic_name(&t.prefix) {
        push(
            "topics.prefix",
            format!("{:?} has characters Kafka does not allow", t.prefix),
        );
    }
    if settings.dedupe.window_hours == 0 {
        push("dedupe.window_hours", "must be at least 1".into());
    }
    let learning = &settings.routing.learning;
    if !(learning.min_confidence > 0.0 && learning.min_confidence <= 1.0) {
        push(
            "routing.learning.min_confidence",
            "must be above 0 and at most 1 (a probability)".into(),
        );
    }
    if learning.min_examples == 0 {
        push("routing.learning.min_examples", "must be at least 1".into());
    }
    if !(0.0..=1.0).contains(&learning.min_overlap) {
        push(
            "routing.learning.min_overlap",
            "must be between 0 and 1 (a Jaccard index)".into(),
        );
    }
    if settings.dispatcher.group_id.trim().is_empty() {
        push("dispatcher.group_id", "must not be empty".into());
    }
    if settings.dispatcher.max_batch == 0 {
        push("dispatcher.max_batch", "must be at least 1".into());
    }
    let l = &settings.lifecycle;
    if l.due_soon_share.is_nan() || l.due_soon_share <= 0.0 || l.due_soon_share >= 1.0 {
        push(
            "lifecycle.due_soon_share",
            "must be between 0 and 1 (a share of the SLA)".into(),
        );
    }
    if l.satisfaction_timeout_hours.is_nan() || l.satisfaction_timeout_hours <= 0.0 {
        push("lifecycle.satisfaction_timeout_hours", "must be > 0".into());
    }
    if l.hour_secs == 0 {
        push(
            "lifecycle.hour_secs",
            "must be at least 1 (3600 in production)".into(),
        );
    }
    if l.tick_interval_ms < 10 {
        push("lifecycle.tick_interval_ms", "must be at least 10".into());
    }
    if settings.responder.max_attempts == 0 {
        push("responder.max_attempts", "must be at least 1".into());
    }
    if settings.responder.retry_initial_ms == 0
        || settings.responder.retry_max_ms < settings.responder.retry_initial_ms
    {
        push(
            "responder.retry_initial_ms",
            "must be > 0 and at most responder.retry_max_ms".into(),
        );
    }
    if settings.dispatcher.transaction_timeout_ms < settings.kafka.message_timeout_ms {
        push(
            "dispatcher.transaction_timeout_ms",
            format!(
                "must be at least kafka.message_timeout_ms ({})",
                settings.kafka.message_timeout_ms
            ),
        );
    }
    if !(6_000..=300_000).contains(&settings.dispatcher.session_timeout_ms) {
        push(
            "dispatcher.session_timeout_ms",
            "must be between 6000 and 300000 (the broker's group session limits)".into(),
        );
    }
    let id = &settings.dispatcher.instance_id;
    if !id.is_empty() && !valid_topic_name(id) {
        push(
            "dispatcher.instance_id",
            format!("{id:?}: use letters, digits, '.', '_' and '-' only"),
        );
    }

    match crate::ledger::store::Backend::of(&settings.ledger.database) {
        None => push(
            "ledger.database",
            format!(
                "{:?} is neither sqlite:PATH nor postgres://USER@HOST/DATABASE",
                crate::ledger::store::redact(&settings.ledger.database)
            ),
        ),
        Some(crate::ledger::store::Backend::Sqlite) => {
            let url = &settings.ledger.database;
            let path = crate::ledger::store::sqlite_path(url);
            if path.is_empty() {
                push("ledger.database", "sqlite: needs a file path".into());
            } else if !url.contains(":memory:") && Path::new(path).is_relative() {
                let query = url.split_once('?').map(|(_, q)| q);
                let absolute = resolve(&base, Path::new(path));
                settings.ledger.database = match query {
                    Some(q) => format!("sqlite://{}?{q}", absolute.display()),
                    None => format!("sqlite://{}", absolute.display()),
                };
            }
        }
        Some(crate::ledger::store::Backend::Postgres) => {}
    }

    let gazetteer_file = resolve(&base, &settings.routing.gazetteer);
    let gazetteer = match Gazetteer::load(&gazetteer_file) {
        Ok(g) => Some(g),
        Err(e) => {
            push(
                "routing.gazetteer",
                format!("{}: {e}", gazetteer_file.display()),
            );
            None
        }
    };
    if let Some(seed) = settings.routing.learning.seed.take() {
        let seed = resolve(&base, &seed);
        if let Err(e) = crate::dispatch::learning::stream::read_seed(&seed) {
            push("routing.learning.seed", e.to_string());
        }
        settings.routing.learning.seed = Some(seed);
    }
    let responsibility_file = resolve(&base, &settings.routing.responsibility);
    let responsibility = match &gazetteer {
        Some(g) => match ResponsibilityList::load(&responsibility_file, g) {
            Ok(list) => Some(list),
            Err(list_problems) => {
                for p in list_problems {
                    push(
                        "routing.responsibility",
                        format!("{}: {p}", responsibility_file.display()),
                    );
                }
                None
            }
        },
        None => None,
    };
    if let Some(list) = &responsibility {
        for (who, key) in &settings.ledger.keys {
            if who != crate::lifecycle::CENTER && list.department(who).is_none() {
                push(
                    &format!("ledger.keys.{who}"),
                    "neither `center` nor a department code of the responsibility list".into(),
                );
            }
            if key.trim().len() < 8 {
                push(
                    &format!("ledger.keys.{who}"),
                    "an API key needs at least 8 characters".into(),
                );
            }
        }
    }

    let mut connectors = Vec::new();
    let mut routes = std::collections::HashMap::new();
    if settings.connectors.values().all(|c| !c.enabled) {
        push("connectors", "no connector is enabled".into());
    }
    for (name, c) in settings.connectors.iter().filter(|(_, c)| c.enabled) {
        let key = format!("connectors.{name}");
        let Some(definition) = &c.definition else {
            push(
                &format!("{key}.definition"),
                "missing: name the connector file".into(),
            );
            continue;
        };
        let def_file = resolve(&base, definition);
        let def = match ConnectorDefinition::load(&def_file) {
            Ok(def) => def,
            Err(e) => {
                push(&format!("{key}.definition"), e.to_string());
                continue;
            }
        };
        if def.name() != name {
            push(
                &format!("{key}.definition"),
                format!(
                    "{} declares connector.name = {:?}, but it is configured as {name:?}",
                    def_file.display(),
                    def.name()
                ),
            );
        }
        for route in def.routes() {
            if matches!(route.as_str(), "/healthz" | "/readyz") {
                push(&key, format!("route {route} is the gateway's own"));
            }
            if let Some(other) = routes.insert(route.clone(), name.clone()) {
                push(
                    &key,
                    format!("route {route} is also used by connector {other:?}"),
                );
            }
        }
        let base = c
            .secrets
            .get("base")
            .map(|b| b.trim_end_matches('/').to_string());
        let callbacks = c.callbacks && def.callback().is_some();
        if callbacks {
            if let Some(spec) = def.callback() {
                for k in spec.settings_keys() {
                    if c.secrets.get(k).is_none_or(|v| v.trim().is_empty()) {
                        push(
                            &format!("{key}.{k}"),
                            format!(
                                "the connector sends status callbacks and needs this setting (or set {key}.callbacks = false); env {}",
                                env_var_for(&format!("{key}.{k}"))
                            ),
                        );
                    }
                }
            }
        }
        if def.poll().is_some() || callbacks {
            match &base {
                Some(b) if b.starts_with("http://") || b.starts_with("https://") => {}
                Some(b) => push(
                    &format!("{key}.base"),
                    format!("{b:?} is not an http(s) URL"),
                ),
                None if def.poll().is_some() => push(
                    &format!("{key}.base"),
                    "a poll connector needs the channel's base URL".into(),
                ),
                None => {}
            }
        }
        let secret_key = def.auth().secret_key().to_string();
        let secret = c.secrets.get(&secret_key).cloned().unwrap_or_default();
        if secret.trim().is_empty() {
            push(
                &format!("{key}.{secret_key}"),
                format!(
                    "the {} auth scheme needs this secret; set it in the file or in {}",
                    name,
                    env_var_for(&format!("{key}.{secret_key}"))
                ),
            );
        }
        connectors.push(LoadedConnector {
            definition: def,
            secret,
            file: def_file,
            base,
            callbacks,
            settings: c.secrets.clone(),
        });
    }

    match (problems.is_empty(), gazetteer, responsibility) {
        (true, Some(g), Some(responsibility)) => Ok(Loaded {
            settings,
            config_file: file.to_path_buf(),
            connectors,
            responsibility,
            responsibility_text: std::fs::read_to_string(&responsibility_file).unwrap_or_default(),
            responsibility_file,
            regions: RegionResolver::new(g),
        }),
        _ => Err(ConfigErrors(problems)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_var_names_follow_the_layering_convention() {
        assert_eq!(
            env_var_for("kafka.bootstrap_servers"),
            "GATEWAY__KAFKA__BOOTSTRAP_SERVERS"
        );
        assert_eq!(
            env_var_for("connectors.city-app.secret"),
            "GATEWAY__CONNECTORS__CITY_APP__SECRET"
        );
    }

    #[test]
    fn underscored_connector_keys_merge_into_dashed_ones() {
        let mut m = BTreeMap::new();
        m.insert(
            "city-app".to_string(),
            ConnectorSettings {
                definition: Some("c.toml".into()),
                enabled: true,
                callbacks: true,
                secrets: BTreeMap::new(),
            },
        );
        m.insert(
            "city_app".to_string(),
            ConnectorSettings {
                definition: None,
                enabled: true,
                callbacks: false,
                secrets: [("secret".to_string(), "s".to_string())].into(),
            },
        );
        let merged = merge_connector_keys(m);
        assert_eq!(merged.len(), 1);
        assert_eq!(merged["city-app"].secrets["secret"], "s");
        assert!(!merged["city-app"].callbacks, "an explicit false is kept");
        assert_eq!(merged["city-app"].definition, Some(PathBuf::from("c.toml")));
    }
}
