//! Callback latency and throughput, from a department's status event to the channel's
//! simulator receiving the callback (needs `scripts/kafka start`).
//!
//! `cargo bench --bench callbacks -- [CASES] [RATE] [SECONDS]` (defaults 200, 20, 20):
//! 1. CASES hotline work orders and CASES grid-app events are opened through intake;
//! 2. **steady**: departments publish `accepted`/`in_progress` events for those cases at
//!    RATE events per second for SECONDS; each becomes one callback to its source. The
//!    latency is event published → the simulator recorded the callback (both clocks
//!    are this machine's);
//! 3. **one channel down**: the hotline simulator answers 503 while the same load runs;
//!    the grid app's latency is measured against the steady phase; then the hotline
//!    comes back and the time until its backlog is delivered is measured (the events of
//!    this phase are `resolved`, of the steady phase `accepted`);
//! 4. **burst**: the center reopens every case at once; callbacks per second.
//!
//! The gateway runs in this process; the simulators are the repository's Python servers
//! (`simulators/channel_sim.py`, one process each) and bound the burst rate. The
//! connector files' callback rate limits (5/s) are raised for the run: they protect a
//! channel, they are not the gateway's capacity.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::BufRead;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio_util::sync::CancellationToken;

const BOOTSTRAP: &str = "127.0.0.1:9092";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

struct Sim {
    url: String,
    child: std::process::Child,
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn sim(channel: &str, port: u16, secret: &str) -> Sim {
    let mut child = std::process::Command::new("python3")
        .arg(root().join("simulators/channel_sim.py"))
        .args([
            "--channel",
            channel,
            "--port",
            &port.to_string(),
            "--secret",
            secret,
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap()
        .to_string();
    Sim {
        url: format!("http://{addr}"),
        child,
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn config(dir: &Path, prefix: &str, hotline: u16, community: u16) -> std::path::PathBuf {
    let mut text = format!(
        r#"
[http]
listen = "127.0.0.1:0"
[kafka]
bootstrap_servers = "{BOOTSTRAP}"
partitions = 3
[topics]
prefix = "{prefix}"
[routing]
responsibility = "{root}/config/responsibility.toml"
gazetteer = "{root}/config/gazetteer.toml"
[dispatcher]
instance_id = "bench-callbacks"
[responder]
retry_initial_ms = 200
retry_max_ms = 1000
max_attempts = 1000
"#,
        root = root().display()
    );
    for (name, key, secret, port) in [
        ("hotline", "token", "dev-hotline-token", hotline),
        ("community-app", "api_key", "dev-community-key", community),
    ] {
        let def = std::fs::read_to_string(root().join(format!("connectors/{name}.toml"))).unwrap();
        let def: String = def
            .lines()
            .map(|l| {
                if l.starts_with("rate_limit_per_second") {
                    "rate_limit_per_second = 100000".to_string()
                } else if l.starts_with("rate_limit_burst") {
                    "rate_limit_burst = 100000".to_string()
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        let file = dir.join(format!("{name}.toml"));
        std::fs::write(&file, def).unwrap();
        text.push_str(&format!(
            "[connectors.{name}]\ndefinition = \"{}\"\n{key} = \"{secret}\"\nbase = \"http://127.0.0.1:{port}\"\n",
            file.display()
        ));
    }
    let file = dir.join("gateway.toml");
    std::fs::write(&file, text).unwrap();
    file
}

/// A case and the source that hears about it.
struct Case {
    id: String,
    department: String,
    channel: &'static str,
    source_id: String,
}

async fn open_cases(gw: &str, prefix: &str, n: usize) -> Vec<Case> {
    let client = reqwest::Client::new();
    let mut out = Vec::new();
    for i in 0..n {
        // Distinct buildings, so no two reports merge.
        let text = format!("崖头街道曙光社区{}号楼停水了，一直没来水。", 1000 + i);
        let order = json!({"gdbh": format!("CB-{i}"), "ldsj": "2026-11-20 09:30:00",
            "ldhm": "13800138000", "ldrxm": "王女士", "sqlx": "求助", "jjcd": "一般",
            "sqnr": text, "sqdz": format!("崖头街道曙光社区{}号楼", 1000 + i)});
        let a: Value = client
            .post(format!("{gw}/intake/hotline"))
            .bearer_auth("dev-hotline-token")
            .json(&order)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        out.push((
            a["data"]["receipt"].as_str().unwrap().to_string(),
            "hotline",
            format!("CB-{i}"),
        ));
        let event = json!({"eventNo": format!("SQ-CB-{i}"), "reportTime": 1764036000000_i64,
            "reporterType": "resident", "reporterName": "姜思宇", "reporterPhone": "15006311234",
            "gridCode": "371082001003005", "eventType": "供水",
            "description": format!("曙光社区{}号楼停水了，一直没来水。", 3000 + i)});
        let a: Value = client
            .post(format!("{gw}/intake/community-app"))
            .header("X-Api-Key", "dev-community-key")
            .json(&event)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        out.push((
            a["data"].as_str().unwrap().to_string(),
            "community-app",
            format!("SQ-CB-{i}"),
        ));
    }
    // Departments from the ledger-independent case records.
    let consumer: rdkafka::consumer::StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", BOOTSTRAP)
        .set("group.id", format!("{prefix}bench-reader"))
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        .create()
        .unwrap();
    use rdkafka::consumer::Consumer;
    use rdkafka::message::Message;
    consumer
        .subscribe(&[&format!("{prefix}petitions.cases")])
        .unwrap();
    let mut department: HashMap<String, String> = HashMap::new();
    while department.len() < out.len() {
        let m = consumer.recv().await.unwrap();
        let v: Value = serde_json::from_slice(m.payload().unwrap_or_default()).unwrap();
        if v["type"] == "case" {
            department.insert(
                v["case_id"].as_str().unwrap().to_string(),
                v["department"].as_str().unwrap().to_string(),
            );
        }
    }
    out.into_iter()
        .map(|(id, channel, source_id)| Case {
            department: department[&id].clone(),
            id,
            channel,
            source_id,
        })
        .collect()
}

async fn publish(producer: &FutureProducer, prefix: &str, case: &Case, status: &str) -> f64 {
    let payload = json!({"case_id": case.id, "status": status, "department": case.department,
        "note": "bench", "at": chrono::Utc::now().to_rfc3339()})
    .to_string();
    let sent = now_secs();
    producer
        .send(
            FutureRecord::to(&format!("{prefix}petitions.status"))
                .key(&case.id)
                .payload(&payload),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    sent
}

/// The simulator's accepted callbacks: (source id, channel code) → time received.
async fn received(sim: &Sim, channel: &str) -> HashMap<(String, String), f64> {
    let all: Value = reqwest::get(format!("{}/_sim/received", sim.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut out = HashMap::new();
    for r in all.as_array().unwrap() {
        if r["accepted"] != true {
            continue;
        }
        let key = if channel == "hotline" {
            (
                r["body"]["gdbh"].as_str().unwrap_or_default().to_string(),
                r["body"]["zt"].as_str().unwrap_or_default().to_string(),
            )
        } else {
            let path = r["path"].as_str().unwrap_or_default();
            let id = path.split('/').nth(3).unwrap_or_default().to_string();
            (id, r["body"]["statusCode"].to_string())
        };
        out.entry(key)
            .or_insert(r["time"].as_f64().unwrap_or_default());
    }
    out
}

/// The channel's code for a status (each phase of the run uses another status, so
/// callbacks of one phase are never taken for another's).
fn code(channel: &str, status: &str) -> String {
    let n = match status {
        "accepted" => 3,
        "resolved" => 4,
        _ => 8, // reopened
    };
    if channel == "hotline" {
        format!("0{n}")
    } else {
        n.to_string()
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn summary(name: &str, mut ms: Vec<f64>) -> (f64, f64) {
    ms.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let (p50, p99) = (percentile(&ms, 0.5), percentile(&ms, 0.99));
    println!(
        "{name}: {} callbacks, p50 {p50:.1} ms, p99 {p99:.1} ms, max {:.1} ms",
        ms.len(),
        ms.last().copied().unwrap_or(f64::NAN)
    );
    (p50, p99)
}

/// Publishes one event per tick at `rate`/s for `seconds`, cycling through `cases` with
/// `status`; returns (case index, publish time).
async fn steady(
    producer: &FutureProducer,
    prefix: &str,
    cases: &[Case],
    status: &str,
    rate: u32,
    seconds: u64,
) -> Vec<(usize, f64)> {
    let mut sent = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate)));
    let end = Instant::now() + Duration::from_secs(seconds);
    let mut i = 0;
    while Instant::now() < end && i < cases.len() {
        tick.tick().await;
        sent.push((i, publish(producer, prefix, &cases[i], status).await));
        i += 1;
    }
    sent
}

async fn latencies(
    sims: &HashMap<&str, &Sim>,
    cases: &[Case],
    sent: &[(usize, f64)],
    status: &str,
    channel: &str,
    limit: Duration,
) -> Vec<f64> {
    let deadline = Instant::now() + limit;
    loop {
        let got = received(sims[channel], channel).await;
        let ms: Vec<f64> = sent
            .iter()
            .filter(|(i, _)| cases[*i].channel == channel)
            .filter_map(|(i, t)| {
                got.get(&(cases[*i].source_id.clone(), code(channel, status)))
                    .map(|r| (r - t) * 1000.0)
            })
            .collect();
        let expected = sent
            .iter()
            .filter(|(i, _)| cases[*i].channel == channel)
            .count();
        if ms.len() >= expected || Instant::now() > deadline {
            return ms;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // RUST_LOG=info shows each stage's log lines with their times.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .try_init();
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let cases_n: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(200);
    let rate: u32 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(20);
    let seconds: u64 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(20);
    let (hp, cp) = (free_port(), free_port());
    let hotline = sim("hotline", hp, "dev-hotline-token");
    let community = sim("community-app", cp, "dev-community-key");
    let sims: HashMap<&str, &Sim> = [("hotline", &hotline), ("community-app", &community)].into();
    let dir = tempfile::tempdir().unwrap();
    let prefix = format!("bench-callbacks-{}.", std::process::id());
    let loaded = petition_gateway::config::load(&config(dir.path(), &prefix, hp, cp)).unwrap();
    let gw = petition_gateway::server::start(loaded, CancellationToken::new())
        .await
        .unwrap();
    let base = format!("http://{}", gw.addr);
    while reqwest::get(format!("{base}/readyz"))
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
        != 200
    {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", BOOTSTRAP)
        .set("enable.idempotence", "true")
        .set("linger.ms", "0")
        .create()
        .unwrap();

    println!("opening {} cases…", cases_n * 2);
    let cases = open_cases(&base, &prefix, cases_n).await;
    // Let the opening callbacks (received, dispatched) drain first.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let limit = Duration::from_secs(120);

    println!("steady: {rate} status events/s for {seconds} s, half to each channel");
    let sent = steady(&producer, &prefix, &cases, "accepted", rate, seconds).await;
    let mut steady_all = Vec::new();
    let mut steady_p99 = HashMap::new();
    for channel in ["hotline", "community-app"] {
        let ms = latencies(&sims, &cases, &sent, "accepted", channel, limit).await;
        steady_all.extend(ms.iter().copied());
        steady_p99.insert(channel, summary(&format!("  steady {channel}"), ms).1);
    }
    summary("  steady all", steady_all);

    println!("hotline down (503): the same load");
    reqwest::Client::new()
        .post(format!("{}/_sim/faults", hotline.url))
        .json(&json!({"status": 503, "until": "clear"}))
        .send()
        .await
        .unwrap();
    let sent = steady(&producer, &prefix, &cases, "resolved", rate, seconds).await;
    let community_ms = latencies(&sims, &cases, &sent, "resolved", "community-app", limit).await;
    let (_, down_p99) = summary("  community-app while the hotline is down", community_ms);
    println!(
        "  community-app p99 during the outage / steady: {:.2}",
        down_p99 / steady_p99["community-app"]
    );
    let back = Instant::now();
    reqwest::Client::new()
        .post(format!("{}/_sim/faults", hotline.url))
        .json(&json!({"clear": true}))
        .send()
        .await
        .unwrap();
    let hotline_ms = latencies(&sims, &cases, &sent, "resolved", "hotline", limit).await;
    println!(
        "  hotline back: {} queued callbacks delivered {:.1} s after it recovered",
        hotline_ms.len(),
        back.elapsed().as_secs_f64()
    );

    println!("burst: the center reopens {} cases at once", cases.len());
    let started = Instant::now();
    let mut sent = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let center = Case {
            department: "center".into(),
            id: case.id.clone(),
            channel: case.channel,
            source_id: case.source_id.clone(),
        };
        sent.push((i, publish(&producer, &prefix, &center, "reopened").await));
    }
    let mut all = 0;
    for channel in ["hotline", "community-app"] {
        all += latencies(&sims, &cases, &sent, "reopened", channel, limit)
            .await
            .len();
    }
    let took = started.elapsed().as_secs_f64();
    println!(
        "  {all} callbacks in {took:.1} s: {:.0} callbacks/s (two channels, one sender each)",
        all as f64 / took
    );
    gw.shutdown().await;
}
