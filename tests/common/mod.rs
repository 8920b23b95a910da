//! Shared helpers for the integration tests: a gateway started in-process against the
//! real Kafka broker (`scripts/kafka start`), each test on its own topic prefix, and a
//! real consumer to read what landed on the topics.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use petition_gateway::server::RunningGateway;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use rdkafka::ClientConfig;
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

pub const TOKEN: &str = "test-hotline-token";

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn bootstrap() -> String {
    std::env::var("PETITION_KAFKA_BOOTSTRAP").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

/// The PostgreSQL server of `scripts/postgres` (`PETITION_LEDGER_POSTGRES` overrides).
pub fn postgres_admin_url() -> String {
    std::env::var("PETITION_LEDGER_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:55432/postgres".into())
}

/// A new, empty PostgreSQL database on that server; its URL.
pub fn postgres_database() -> String {
    let admin = postgres_admin_url();
    let name = format!(
        "ledger_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let out = std::process::Command::new("psql")
        .args([admin.as_str(), "-qc", &format!("CREATE DATABASE {name}")])
        .output()
        .expect("psql runs (scripts/postgres installs it)");
    assert!(
        out.status.success(),
        "cannot create a database on {admin} (is `scripts/postgres start` running?): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
    format!("{base}/{name}")
}

/// A test gateway's ledger database: an SQLite file beside its config, or with
/// `PETITION_TEST_LEDGER=postgres` (scripts/test runs the ledger's end-to-end tests so
/// once more) a new database on the PostgreSQL of `scripts/postgres`.
pub fn ledger_database(name: &str) -> String {
    match std::env::var("PETITION_TEST_LEDGER").as_deref() {
        Ok("postgres") => postgres_database(),
        Ok("sqlite") | Err(_) => format!("sqlite:{name}.sqlite"),
        Ok(other) => panic!("PETITION_TEST_LEDGER={other}: sqlite or postgres"),
    }
}

pub fn unique_prefix(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("t{}-{name}-{nanos}.", std::process::id())
}

/// The labeled sample (`data/`; `PETITION_SAMPLE` overrides it).
pub fn sample() -> Vec<Value> {
    let path = petition_gateway::sample::sample_path();
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read the sample {}: {e}", path.display()));
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

pub fn hotline_sample() -> Vec<Value> {
    sample()
        .into_iter()
        .filter(|r| r["channel"] == "hotline")
        .collect()
}

pub struct TestConfig {
    pub prefix: String,
    pub dir: tempfile::TempDir,
    pub file: PathBuf,
}

/// A gateway config for one test with the hotline only: its own topic prefix, a free
/// port, the repo's responsibility list and gazetteer. `hotline_definition` replaces the
/// connector file.
pub fn write_config(name: &str, dispatcher: bool, hotline_definition: Option<&str>) -> TestConfig {
    let dir = tempfile::tempdir().unwrap();
    let hotline = match hotline_definition {
        Some(text) => {
            let path = dir.path().join("hotline.toml");
            std::fs::write(&path, text).unwrap();
            Connector {
                definition: path,
                ..Connector::shipped("hotline")
            }
        }
        None => Connector::shipped("hotline"),
    };
    config_with(name, dispatcher, dir, &[hotline])
}

pub async fn start(config: &Path) -> RunningGateway {
    let loaded = petition_gateway::config::load(config).unwrap_or_else(|e| panic!("{e}"));
    petition_gateway::server::start(loaded, CancellationToken::new())
        .await
        .unwrap()
}

pub async fn wait_ready(gw: &RunningGateway, ready: bool) {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let status = client
            .get(format!("http://{}/readyz", gw.addr))
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0);
        if (status == 200) == ready {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "gateway readiness never became {ready}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub struct Answer {
    pub status: u16,
    pub body: Value,
    pub headers: reqwest::header::HeaderMap,
}

pub async fn post_raw(
    gw: &RunningGateway,
    token: Option<&str>,
    body: impl Into<reqwest::Body>,
) -> Answer {
    let mut req = reqwest::Client::new()
        .post(format!("http://{}/intake/hotline", gw.addr))
        .header("content-type", "application/json")
        .body(body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.json().await.unwrap_or(Value::Null);
    Answer {
        status,
        body,
        headers,
    }
}

pub async fn post_order(gw: &RunningGateway, order: &Value) -> Answer {
    post_raw(gw, Some(TOKEN), serde_json::to_vec(order).unwrap()).await
}

#[derive(Debug, Clone)]
pub struct Record {
    pub topic: String,
    pub key: Option<String>,
    pub value: Value,
    pub headers: HashMap<String, String>,
}

/// Reads the topics with a real consumer (own group, from the beginning) until `expected`
/// records arrived, then keeps reading for `settle` to catch any extra (doubled) record.
pub async fn read_topics(topics: &[String], expected: usize, settle: Duration) -> Vec<Record> {
    read_topics_until(topics, |records| records.len() >= expected, settle).await
}

/// Reads the topics until `done` holds for what was read, then for `settle` more
/// (or for two minutes at most).
pub async fn read_topics_until(
    topics: &[String],
    done: impl Fn(&[Record]) -> bool,
    settle: Duration,
) -> Vec<Record> {
    read_topics_within(topics, done, settle, Duration::from_secs(120)).await
}

/// `read_topics_until` with its own limit, for runs that take long on a busy machine.
pub async fn read_topics_within(
    topics: &[String],
    done: impl Fn(&[Record]) -> bool,
    settle: Duration,
    limit: Duration,
) -> Vec<Record> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("group.id", unique_prefix("reader"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("topic.metadata.refresh.interval.ms", "1000")
        .set("log_level", "3")
        .create()
        .unwrap();
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    consumer.subscribe(&names).unwrap();
    let mut records = Vec::new();
    let deadline = Instant::now() + limit;
    let mut settle_until: Option<Instant> = None;
    loop {
        if settle_until.is_none() && done(&records) {
            settle_until = Some(Instant::now() + settle);
        }
        let stop_at = settle_until.unwrap_or(deadline).min(deadline);
        let now = Instant::now();
        if now >= stop_at {
            break;
        }
        match tokio::time::timeout(stop_at - now, consumer.recv()).await {
            Ok(Ok(m)) => {
                let mut headers = HashMap::new();
                if let Some(hs) = m.headers() {
                    for h in hs.iter() {
                        headers.insert(
                            h.key.to_string(),
                            String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                        );
                    }
                }
                records.push(Record {
                    topic: m.topic().to_string(),
                    key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                    value: serde_json::from_slice(m.payload().unwrap_or_default())
                        .unwrap_or(Value::Null),
                    headers,
                });
            }
            // A topic created a moment ago may not be in every broker's metadata yet.
            Ok(Err(rdkafka::error::KafkaError::MessageConsumption(
                rdkafka::types::RDKafkaErrorCode::UnknownTopicOrPartition,
            ))) => tokio::time::sleep(Duration::from_millis(100)).await,
            Ok(Err(e)) => panic!("consumer error: {e}"),
            Err(_) => break,
        }
    }
    records
}

/// Every topic a dispatched petition can land on, for this prefix.
pub fn output_topics(prefix: &str) -> Vec<String> {
    let text = std::fs::read_to_string(repo().join("config/responsibility.toml")).unwrap();
    let list: toml::Value = toml::from_str(&text).unwrap();
    let mut topics: Vec<String> = list["department"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| format!("{prefix}{}", d["topic"].as_str().unwrap()))
        .collect();
    topics.push(format!("{prefix}petitions.triage"));
    topics
}

/// Runs `scripts/kafka` with the given arguments and asserts it succeeded.
pub fn kafka_script(args: &[&str]) {
    let status = std::process::Command::new(repo().join("scripts/kafka"))
        .args(args)
        .status()
        .unwrap();
    assert!(status.success(), "scripts/kafka {args:?} failed");
}

/// One connector in a test configuration: name, definition file, extra settings.
pub struct Connector {
    pub name: &'static str,
    pub definition: PathBuf,
    pub settings: Vec<(&'static str, String)>,
}

impl Connector {
    /// A shipped connector with the simulators' default credentials.
    pub fn shipped(name: &'static str) -> Self {
        let secret = |k: &'static str, v: &str| (k, v.to_string());
        let settings = match name {
            "hotline" => vec![secret("token", TOKEN)],
            "city-app" => vec![secret("secret", "dev-city-app-secret")],
            "community-app" => vec![secret("api_key", "dev-community-key")],
            "open311" => vec![secret("api_key", "dev-open311-key")],
            "leader-board" => vec![secret("app_key", "dev-leader-board-key")],
            "supervision" => vec![secret("token", "dev-supervision-token")],
            _ => vec![],
        };
        Self {
            name,
            definition: repo().join(format!("connectors/{name}.toml")),
            settings,
        }
    }

    /// The shipped connector file with text replaced (e.g. a shorter poll interval).
    pub fn edited(name: &'static str, dir: &Path, edits: &[(&str, &str)]) -> Self {
        let mut text =
            std::fs::read_to_string(repo().join(format!("connectors/{name}.toml"))).unwrap();
        for (from, to) in edits {
            assert!(text.contains(from), "{from:?} not in {name}.toml");
            text = text.replace(from, to);
        }
        let path = dir.join(format!("{name}.toml"));
        std::fs::write(&path, text).unwrap();
        Self {
            definition: path,
            ..Self::shipped(name)
        }
    }

    pub fn with(mut self, key: &'static str, value: impl Into<String>) -> Self {
        self.settings.push((key, value.into()));
        self
    }
}

/// A gateway config with exactly these connectors, on its own topic prefix.
pub fn config_with(
    name: &str,
    dispatcher: bool,
    dir: tempfile::TempDir,
    connectors: &[Connector],
) -> TestConfig {
    config_on_prefix(&unique_prefix(name), dispatcher, dir, connectors)
}

/// The config with `partitions` topic partitions instead of one.
pub fn with_partitions(cfg: &TestConfig, partitions: u32) {
    let text = std::fs::read_to_string(&cfg.file).unwrap();
    assert!(text.contains("partitions = 1\n"));
    let text = text.replacen(
        "partitions = 1\n",
        &format!("partitions = {partitions}\n"),
        1,
    );
    std::fs::write(&cfg.file, text).unwrap();
}

/// Same, on a given prefix (two gateway instances sharing their topics and groups).
pub fn config_on_prefix(
    prefix: &str,
    dispatcher: bool,
    dir: tempfile::TempDir,
    connectors: &[Connector],
) -> TestConfig {
    let mut text = format!(
        r#"
[http]
listen = "127.0.0.1:0"
[kafka]
bootstrap_servers = "{bootstrap}"
message_timeout_ms = 3000
partitions = 1
[topics]
prefix = "{prefix}"
[routing]
responsibility = "{repo}/config/responsibility.toml"
gazetteer = "{repo}/config/gazetteer.toml"
[dispatcher]
enabled = {dispatcher}
group_id = "{prefix}dispatcher"
"#,
        bootstrap = bootstrap(),
        repo = repo().display(),
    );
    for c in connectors {
        text.push_str(&format!(
            "[connectors.{}]\ndefinition = \"{}\"\n",
            c.name,
            c.definition.display()
        ));
        // Callbacks only where a test asks for them (`.with("callbacks", "true")`).
        if !c.settings.iter().any(|(k, _)| *k == "callbacks") {
            text.push_str("callbacks = false\n");
        }
        for (k, v) in &c.settings {
            if *k == "callbacks" {
                text.push_str(&format!("{k} = {v}\n"));
            } else {
                text.push_str(&format!("{k} = \"{v}\"\n"));
            }
        }
    }
    let suffix = rand_suffix();
    // Each instance its own ledger database (beside its config), as each its own host.
    text.push_str(&format!(
        "[ledger]\ndatabase = \"{}\"\n",
        ledger_database(&format!("ledger-{suffix}"))
    ));
    let file = dir.path().join(format!("gateway-{suffix}.toml"));
    std::fs::write(&file, text).unwrap();
    TestConfig {
        prefix: prefix.to_string(),
        dir,
        file,
    }
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

/// A channel simulator (`simulators/channel_sim.py`): a real HTTP server on 127.0.0.1.
pub struct Sim {
    pub url: String,
    child: std::process::Child,
}

impl Sim {
    pub fn start(channel: &str, gateway: Option<std::net::SocketAddr>, extra: &[&str]) -> Sim {
        use std::io::BufRead;
        let mut cmd = std::process::Command::new("python3");
        cmd.arg(repo().join("simulators/channel_sim.py"))
            .args(["--channel", channel, "--port", "0"])
            .args(extra)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null());
        if let Some(addr) = gateway {
            cmd.args(["--gateway", &format!("http://{addr}")]);
        }
        let mut child = cmd.spawn().expect("python3 must be installed");
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("simulator {channel} said {line:?}"))
            .to_string();
        Sim {
            url: format!("http://{addr}"),
            child,
        }
    }

    pub async fn control(&self, path: &str, body: Value) -> Value {
        reqwest::Client::new()
            .post(format!("{}{path}", self.url))
            .json(&body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    pub async fn get(&self, path: &str) -> Value {
        reqwest::get(format!("{}{path}", self.url))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    pub async fn push(&self, body: Value) -> Vec<Value> {
        self.control("/_sim/push", body).await["results"]
            .as_array()
            .unwrap()
            .clone()
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Distinct petition ids among records.
pub fn distinct_ids(records: &[Record], pointer: &str) -> std::collections::HashSet<String> {
    records
        .iter()
        .filter_map(|r| {
            r.value
                .pointer(pointer)
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .collect()
}

/// The dispatcher's `petitions.cases` topic read back (uncompacted, committed only).
pub struct CaseLog {
    /// Case id → its case record.
    pub cases: HashMap<String, Value>,
    /// Petition id → its report record (which case it is in, and why).
    pub reports: HashMap<String, Value>,
    /// Case id → its latest lifecycle record.
    pub lifecycles: HashMap<String, Value>,
    /// Case id → its history entries, in order (from its history records).
    pub histories: HashMap<String, Vec<Value>>,
}

impl CaseLog {
    /// Reports that joined a case (not the first report of theirs).
    pub fn merged_reports(&self) -> usize {
        self.reports
            .values()
            .filter(|r| r["merge"].is_object())
            .count()
    }

    /// The records the department and triage topics get: one per case, one per report
    /// that joined a case.
    pub fn department_records(&self) -> usize {
        self.cases.len() + self.merged_reports()
    }

    /// Petition id → case id.
    pub fn case_of(&self) -> HashMap<String, String> {
        self.reports
            .iter()
            .map(|(p, r)| (p.clone(), r["case_id"].as_str().unwrap().to_string()))
            .collect()
    }
}

/// Reads `petitions.cases` until `reports` report records arrived; asserts that no case
/// and no report was ever written twice (exactly once, not just "latest wins").
pub async fn read_case_log(prefix: &str, reports: usize, settle: Duration) -> CaseLog {
    read_case_log_within(prefix, reports, settle, Duration::from_secs(120)).await
}

pub async fn read_case_log_within(
    prefix: &str,
    reports: usize,
    settle: Duration,
    limit: Duration,
) -> CaseLog {
    let records = read_topics_within(
        &[format!("{prefix}petitions.cases")],
        |records| {
            records
                .iter()
                .filter(|r| r.value["type"] == "report")
                .count()
                >= reports
        },
        settle,
        limit,
    )
    .await;
    let mut log = CaseLog {
        cases: HashMap::new(),
        reports: HashMap::new(),
        lifecycles: HashMap::new(),
        histories: HashMap::new(),
    };
    let mut petitions = std::collections::HashSet::new();
    // Case id → position → that move's entries.
    let mut moves: HashMap<String, std::collections::BTreeMap<u64, Vec<Value>>> = HashMap::new();
    for r in records {
        let key = r.key.clone().unwrap();
        match r.value["type"].as_str().unwrap() {
            "case" => {
                let id = r.value["case_id"].as_str().unwrap().to_string();
                assert_eq!(key, format!("case/{id}"));
                assert!(
                    log.cases.insert(id.clone(), r.value).is_none(),
                    "case {id} written twice"
                );
            }
            "report" => {
                let id = r.value["petition_id"].as_str().unwrap().to_string();
                assert_eq!(key, format!("report/{id}"));
                assert!(
                    log.reports.insert(id.clone(), r.value).is_none(),
                    "report {id} written twice"
                );
            }
            // Rewritten whole after every move: each version must add to the history,
            // a move applied twice would not.
            "lifecycle" => {
                let id = r.value["case_id"].as_str().unwrap().to_string();
                assert_eq!(key, format!("lifecycle/{id}"));
                let len = |v: &Value| v["history_len"].as_u64().unwrap_or(0);
                if let Some(before) = log.lifecycles.get(&id) {
                    assert!(
                        len(&r.value) > len(before),
                        "case {id}: a lifecycle version repeats or goes back: {before} then {}",
                        r.value
                    );
                }
                log.lifecycles.insert(id, r.value);
            }
            // Each move's entries, written once at their position.
            "history" => {
                let id = r.value["case_id"].as_str().unwrap().to_string();
                let from = r.value["from"].as_u64().unwrap();
                assert_eq!(key, format!("history/{id}/{from}"));
                let entries = r.value["entries"].as_array().unwrap().clone();
                assert!(!entries.is_empty(), "case {id}: an empty history record");
                assert!(
                    moves
                        .entry(id.clone())
                        .or_default()
                        .insert(from, entries)
                        .is_none(),
                    "case {id}: history from {from} written twice"
                );
            }
            // The case's first petition, once per case.
            "petition" => {
                let id = r.value["case_id"].as_str().unwrap().to_string();
                assert_eq!(key, format!("petition/{id}"));
                assert!(
                    petitions.insert(id.clone()),
                    "the petition of case {id} written twice"
                );
            }
            other => panic!("unknown case record type {other}"),
        }
    }
    // A case's moves follow each other: no gap, no overlap.
    for (case, by_position) in moves {
        let mut entries = Vec::new();
        for (from, move_entries) in by_position {
            assert_eq!(
                from,
                entries.len() as u64,
                "case {case}: history records overlap or leave a gap"
            );
            entries.extend(move_entries);
        }
        log.histories.insert(case, entries);
    }
    if !settle.is_zero() {
        for (case, lifecycle) in &log.lifecycles {
            assert_eq!(
                log.histories.get(case).map_or(0, Vec::len) as u64,
                lifecycle["history_len"].as_u64().unwrap_or(0),
                "case {case}: its history records and its lifecycle's count differ"
            );
        }
        for case in log.cases.keys() {
            assert!(
                log.lifecycles.contains_key(case),
                "case {case} has no lifecycle"
            );
            assert!(
                petitions.contains(case),
                "case {case} has no petition record"
            );
        }
    }
    // Every report is a source of its case's lifecycle, once.
    for (case, lifecycle) in &log.lifecycles {
        let mut sources: Vec<&str> = lifecycle["sources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["petition_id"].as_str().unwrap())
            .collect();
        sources.sort_unstable();
        let mut reports: Vec<&str> = log
            .reports
            .iter()
            .filter(|(_, r)| r["case_id"] == case.as_str())
            .map(|(p, _)| p.as_str())
            .collect();
        reports.sort_unstable();
        for s in &sources {
            assert!(
                reports.binary_search(s).is_ok(),
                "case {case}: source {s} is not one of its reports"
            );
        }
        // Read on after the last report: the lifecycle written with it has come too.
        if !settle.is_zero() {
            assert_eq!(sources, reports, "case {case}: sources and reports differ");
        }
    }
    for (p, r) in &log.reports {
        let case = r["case_id"].as_str().unwrap();
        assert!(
            log.cases.contains_key(case),
            "report {p} names case {case}, which was never opened"
        );
    }
    log
}

/// Every case on exactly one department or triage topic, once, on the topic its
/// routing names; nothing else there.
/// Every case reached its department (or triage) once as a `case` record, and every
/// report that joined a case reached the case's topic once as a `report` record, with
/// the merge evidence (`schemas/department-record.v1.schema.json`).
pub fn assert_each_case_dispatched_once(prefix: &str, out: &[Record], log: &CaseLog) {
    let mut seen = std::collections::HashSet::new();
    let mut joined = std::collections::HashSet::new();
    for r in out.iter().filter(|r| r.value["type"] == "report") {
        let case = r.value["case_id"].as_str().unwrap();
        let petition = r.value["petition"]["id"].as_str().unwrap().to_string();
        let report = log
            .reports
            .get(&petition)
            .unwrap_or_else(|| panic!("report record of {petition}, which is in no case"));
        assert_eq!(report["case_id"], case, "report record on another case");
        assert_eq!(r.value["merge"], report["merge"], "merge evidence differs");
        assert_eq!(r.headers["ce_type"], "gov.petition.report-joined.v1");
        assert_eq!(r.key.as_deref(), Some(case));
        assert!(
            joined.insert(petition.clone()),
            "report {petition} sent twice"
        );
    }
    assert_eq!(
        joined.len(),
        log.merged_reports(),
        "some reports that joined a case never reached its department"
    );
    for r in out.iter().filter(|r| r.value["type"] != "report") {
        assert_eq!(r.value["type"], "case", "{}", r.value);
        let case = r.value["case_id"].as_str().unwrap().to_string();
        assert!(seen.insert(case.clone()), "case {case} dispatched twice");
        let opened = log
            .cases
            .get(&case)
            .unwrap_or_else(|| panic!("dispatched case {case} is not in petitions.cases"));
        let routed = r.value["routing"]["department"].as_str().unwrap();
        assert_eq!(opened["department"], routed);
        let expected_topic = if routed == "triage" {
            format!("{prefix}petitions.triage")
        } else {
            format!("{prefix}dept.{routed}")
        };
        assert_eq!(
            r.topic, expected_topic,
            "record on a topic its routing does not name"
        );
        assert_eq!(r.key.as_deref(), Some(case.as_str()));
    }
    assert_eq!(
        seen.len(),
        log.cases.len(),
        "some cases were never dispatched"
    );
}

/// A free port on 127.0.0.1 for a simulator whose address a config must name first.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A department (or the center) publishing to `petitions.status`, as departments do.
pub async fn publish_status(
    prefix: &str,
    case_id: &str,
    status: &str,
    department: &str,
    note: &str,
) {
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("enable.idempotence", "true")
        .create()
        .unwrap();
    let event = serde_json::json!({"case_id": case_id, "status": status, "department": department,
        "note": note, "at": chrono::Utc::now().to_rfc3339(), "operator": "张科长"});
    let payload = event.to_string();
    producer
        .send(
            FutureRecord::to(&format!("{prefix}petitions.status"))
                .key(case_id)
                .payload(&payload),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
}

/// Pairwise precision and recall of cases against labeled incidents, over reports given
/// as (case id, incident id): of the pairs of reports put in one case, the share that
/// are one incident; of the pairs that are one incident, the share put in one case.
pub fn pairwise_quality(reports: impl IntoIterator<Item = (String, String)>) -> (f64, f64) {
    let mut by_case: HashMap<String, usize> = HashMap::new();
    let mut by_incident: HashMap<String, usize> = HashMap::new();
    let mut by_both: HashMap<(String, String), usize> = HashMap::new();
    for (case, incident) in reports {
        *by_case.entry(case.clone()).or_default() += 1;
        *by_incident.entry(incident.clone()).or_default() += 1;
        *by_both.entry((case, incident)).or_default() += 1;
    }
    let pairs = |counts: Vec<usize>| -> f64 {
        counts
            .into_iter()
            .map(|n| (n * n.saturating_sub(1) / 2) as f64)
            .sum()
    };
    let predicted = pairs(by_case.into_values().collect());
    let actual = pairs(by_incident.into_values().collect());
    let right = pairs(by_both.into_values().collect());
    (right / predicted, right / actual)
}

/// Seq → incident id, from the labeled sample.
pub fn incidents() -> HashMap<u64, String> {
    sample()
        .iter()
        .map(|r| {
            (
                r["seq"].as_u64().unwrap(),
                r["label"]["incident"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// The gateway's log, captured by the test harness: shown when the test fails.
pub fn capture_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,rdkafka=warn".into()),
        )
        .with_test_writer()
        .try_init();
}
