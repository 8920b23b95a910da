//! Ingest through the whole gateway against the raw Kafka producer, measured in one run
//! on one machine (needs `scripts/kafka start`).
//!
//! `cargo bench --bench ingest -- [PETITIONS]` (default 20000):
//! 1. **gateway**: PETITIONS pushed over HTTP by 64 concurrent connections, rotating the
//!    hotline, community app and Open311 with the sample's petitions (unique ids), through
//!    intake, the dispatcher's transactions and routing; done when every petition's
//!    `report` record is readable (read committed) on `petitions.cases`, which commits in
//!    the same transaction as its department record (merged reports get no department
//!    record, so that topic cannot count them);
//! 2. **raw producer**: the same number of records of the same average size with the
//!    gateway's producer settings (idempotent, `acks=all`, lz4, linger 2 ms);
//! 3. **ProducerPerformance**: Kafka's own tool with those settings;
//! 4. **latency** at a fixed 1,000 petitions/s for 10 s: HTTP answer time, and request →
//!    report record readable.
//!
//! The gateway runs in this process (2 cores shared with the broker and the load
//! generator). Per-channel rate limits are raised for the run: they protect the gateway
//! from one channel, they are not its capacity.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use serde_json::Value;
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

const BOOTSTRAP: &str = "127.0.0.1:9092";
const CONNECTIONS: usize = 64;
const CHANNELS: [&str; 3] = ["hotline", "community-app", "open311"];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The sample's payloads of the three channels, made unique per index.
struct Payloads {
    by_channel: HashMap<&'static str, Vec<Value>>,
}

impl Payloads {
    fn load() -> Self {
        let path = petition_gateway::sample::sample_path();
        let mut by_channel: HashMap<&'static str, Vec<Value>> = HashMap::new();
        for line in std::fs::read_to_string(path).unwrap().lines() {
            let row: Value = serde_json::from_str(line).unwrap();
            for c in CHANNELS {
                if row["channel"] == c {
                    by_channel
                        .entry(c)
                        .or_default()
                        .push(row["payload"].clone());
                }
            }
        }
        Self { by_channel }
    }

    /// The i-th request: channel, path, content type, extra header, body.
    fn request(&self, i: usize, run: &str) -> (&'static str, Vec<u8>) {
        let channel = CHANNELS[i % CHANNELS.len()];
        let list = &self.by_channel[channel];
        let mut p = list[(i / CHANNELS.len()) % list.len()].clone();
        let id = format!("{run}-{i}");
        match channel {
            "hotline" => {
                p["gdbh"] = Value::String(id);
                (channel, serde_json::to_vec(&p).unwrap())
            }
            "community-app" => {
                p["eventNo"] = Value::String(id);
                (channel, serde_json::to_vec(&p).unwrap())
            }
            _ => {
                // Open311 ids are a hash of the content: vary it.
                let text = format!("{}（{id}）", p["description"].as_str().unwrap_or(""));
                p["description"] = Value::String(text);
                p["api_key"] = Value::String("dev-open311-key".into());
                let mut form = form_urlencoded::Serializer::new(String::new());
                for (k, v) in p.as_object().unwrap() {
                    let v = match v {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    form.append_pair(k, &v);
                }
                (channel, form.finish().into_bytes())
            }
        }
    }
}

fn config(dir: &Path, prefix: &str) -> std::path::PathBuf {
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
instance_id = "bench"
"#,
        root = root().display()
    );
    let secrets = [
        ("hotline", "token", "dev-hotline-token"),
        ("community-app", "api_key", "dev-community-key"),
        ("open311", "api_key", "dev-open311-key"),
    ];
    for (name, key, secret) in secrets {
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
            // Ingest only: callbacks are measured by the callbacks bench.
            "[connectors.{name}]\ndefinition = \"{}\"\n{key} = \"{secret}\"\ncallbacks = false\n",
            file.display()
        ));
    }
    let file = dir.join("gateway.toml");
    std::fs::write(&file, text).unwrap();
    file
}

/// Sends one request; returns the petition id from the channel's answer.
async fn send(
    client: &reqwest::Client,
    base: &str,
    channel: &str,
    body: Vec<u8>,
) -> Option<String> {
    let req = match channel {
        "hotline" => client
            .post(format!("{base}/intake/hotline"))
            .bearer_auth("dev-hotline-token")
            .header("content-type", "application/json"),
        "community-app" => client
            .post(format!("{base}/intake/community-app"))
            .header("X-Api-Key", "dev-community-key")
            .header("content-type", "application/json"),
        _ => client
            .post(format!("{base}/open311/v2/requests.json"))
            .header("content-type", "application/x-www-form-urlencoded"),
    };
    let answer: Value = req.body(body).send().await.ok()?.json().await.ok()?;
    let id = match channel {
        "hotline" => answer["data"]["receipt"].as_str(),
        "community-app" => answer["data"].as_str(),
        _ => answer[0]["service_request_id"].as_str(),
    };
    id.map(str::to_string)
}

/// Arrival times of `report` records on petitions.cases, by petition id.
fn watch_reports(prefix: &str, cancel: CancellationToken) -> Arc<Mutex<HashMap<String, Instant>>> {
    let arrived = Arc::new(Mutex::new(HashMap::new()));
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", BOOTSTRAP)
        .set("group.id", format!("{prefix}watch"))
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        .set("fetch.wait.max.ms", "5")
        .set("topic.metadata.refresh.interval.ms", "1000")
        .set("log_level", "3")
        .create()
        .unwrap();
    consumer
        .subscribe(&[&format!("{prefix}petitions.cases")])
        .unwrap();
    let out = arrived.clone();
    tokio::spawn(async move {
        loop {
            let m = tokio::select! {
                _ = cancel.cancelled() => return,
                m = consumer.recv() => m,
            };
            let Ok(m) = m else { continue };
            let now = Instant::now();
            let Ok(v) = serde_json::from_slice::<Value>(m.payload().unwrap_or_default()) else {
                continue;
            };
            if v["type"] == "report" {
                if let Some(id) = v["petition_id"].as_str() {
                    out.lock().unwrap().insert(id.to_string(), now);
                }
            }
        }
    });
    arrived
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

async fn wait_for(arrived: &Mutex<HashMap<String, Instant>>, ids: &[String], limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let done = {
            let a = arrived.lock().unwrap();
            ids.iter().all(|id| a.contains_key(id))
        };
        if done || Instant::now() > deadline {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn raw_producer_rate(topic: &str, records: usize, size: usize) -> f64 {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", BOOTSTRAP)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "2")
        .set("compression.type", "lz4")
        .set("log_level", "3")
        .create()
        .unwrap();
    // Realistic, compressible text (a petition repeated), not random bytes.
    let text = "荣成市宁津街道东墩村4号楼暖气不热，家里只有十二度，老人孩子受不了。";
    let payload: Vec<u8> = text.bytes().cycle().take(size).collect();
    let started = Instant::now();
    let mut pending = std::collections::VecDeque::new();
    for i in 0..records {
        let key = format!("37108200{}", i % 22);
        loop {
            let record = FutureRecord::to(topic).key(&key).payload(&payload);
            match producer.send_result(record) {
                Ok(f) => {
                    pending.push_back(f);
                    break;
                }
                Err(_) => {
                    if let Some(f) = pending.pop_front() {
                        let _ = f.await;
                    }
                }
            }
        }
        if pending.len() > 50_000 {
            if let Some(f) = pending.pop_front() {
                let _ = f.await;
            }
        }
    }
    for f in pending {
        let r = f.await;
        assert!(
            matches!(r, Ok(Ok(_))),
            "raw producer record not acknowledged"
        );
    }
    records as f64 / started.elapsed().as_secs_f64()
}

fn producer_performance(topic: &str, records: usize, size: usize) -> Option<f64> {
    let out = std::process::Command::new(root().join("scripts/kafka"))
        .args([
            "tool",
            "org.apache.kafka.tools.ProducerPerformance",
            "--topic",
            topic,
            "--num-records",
            &records.to_string(),
            "--record-size",
            &size.to_string(),
            "--throughput",
            "-1",
            "--producer-props",
            &format!("bootstrap.servers={BOOTSTRAP}"),
            "acks=all",
            "enable.idempotence=true",
            "compression.type=lz4",
            "linger.ms=2",
        ])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let last = text.lines().rev().find(|l| l.contains("records sent"))?;
    let (before, _) = last.split_once(" records/sec")?;
    before.rsplit(", ").next()?.trim().parse().ok()
}

async fn run() {
    let petitions: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(20_000);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let prefix = format!("bench-ingest-{nanos}.");
    let dir = tempfile::tempdir().unwrap();
    let loaded = petition_gateway::config::load(&config(dir.path(), &prefix)).unwrap();
    let kafka = loaded.settings.kafka.clone();
    let cancel = CancellationToken::new();
    let gw = petition_gateway::server::start(loaded, cancel.clone())
        .await
        .unwrap();
    let base = format!("http://{}", gw.addr);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(CONNECTIONS)
        .build()
        .unwrap();
    while client
        .get(format!("{base}/readyz"))
        .send()
        .await
        .map(|r| !r.status().is_success())
        .unwrap_or(true)
    {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let arrived = watch_reports(&prefix, cancel.clone());
    let payloads = Arc::new(Payloads::load());

    // Warm up: the dispatcher restores and joins, topics are created, connections open.
    let warm: Vec<String> = futures_util::future::join_all((0..300).map(|i| {
        let (channel, body) = payloads.request(i, "warm");
        let client = client.clone();
        let base = base.clone();
        async move { send(&client, &base, channel, body).await }
    }))
    .await
    .into_iter()
    .flatten()
    .collect();
    wait_for(&arrived, &warm, Duration::from_secs(120)).await;

    // 1. Throughput through the gateway.
    let next = Arc::new(AtomicUsize::new(0));
    let ids = Arc::new(Mutex::new(Vec::with_capacity(petitions)));
    let http = Arc::new(Mutex::new(Vec::with_capacity(petitions)));
    let started = Instant::now();
    let workers: Vec<_> = (0..CONNECTIONS)
        .map(|_| {
            let (next, ids, http) = (next.clone(), ids.clone(), http.clone());
            let (client, base, payloads) = (client.clone(), base.clone(), payloads.clone());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= petitions {
                        return;
                    }
                    let (channel, body) = payloads.request(i, "load");
                    let t = Instant::now();
                    if let Some(id) = send(&client, &base, channel, body).await {
                        http.lock().unwrap().push(t.elapsed());
                        ids.lock().unwrap().push(id);
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.await.unwrap();
    }
    let answered = started.elapsed();
    let ids = ids.lock().unwrap().clone();
    wait_for(&arrived, &ids, Duration::from_secs(600)).await;
    let last = {
        let a = arrived.lock().unwrap();
        ids.iter().filter_map(|id| a.get(id)).max().copied()
    };
    let end_to_end = last.map_or(Duration::ZERO, |l| l - started);
    let accepted = ids.len();
    let gateway_rate = accepted as f64 / end_to_end.as_secs_f64();
    let http_rate = accepted as f64 / answered.as_secs_f64();

    // 2, 3. References at the inbound records' size.
    let size = 1100; // bytes: a normalized petition on petitions.inbound is 0.9–1.3 KB
    let (raw_topic, perf_topic) = (format!("{prefix}raw"), format!("{prefix}perf"));
    petition_gateway::kafka::topics::ensure_topics(
        &kafka,
        &[
            petition_gateway::kafka::topics::TopicSpec::plain(raw_topic.clone()),
            petition_gateway::kafka::topics::TopicSpec::plain(perf_topic.clone()),
        ],
    )
    .await
    .unwrap();
    let raw = raw_producer_rate(&raw_topic, petitions, size).await;
    let tool = producer_performance(&perf_topic, petitions, size);

    // 4. Latency at a fixed 1,000 petitions/s for 10 s.
    let sent: Arc<Mutex<Vec<(String, Instant, Duration)>>> = Arc::new(Mutex::new(Vec::new()));
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks = Vec::new();
    for i in 0..10_000 {
        tick.tick().await;
        let (client, base, payloads, sent) =
            (client.clone(), base.clone(), payloads.clone(), sent.clone());
        tasks.push(tokio::spawn(async move {
            let (channel, body) = payloads.request(i, "rate");
            let t = Instant::now();
            if let Some(id) = send(&client, &base, channel, body).await {
                sent.lock().unwrap().push((id, t, t.elapsed()));
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let sent = sent.lock().unwrap().clone();
    let rate_ids: Vec<String> = sent.iter().map(|(id, _, _)| id.clone()).collect();
    wait_for(&arrived, &rate_ids, Duration::from_secs(120)).await;
    let (mut e2e, mut answer) = (Vec::new(), Vec::new());
    {
        let a = arrived.lock().unwrap();
        for (id, t, h) in &sent {
            answer.push(*h);
            if let Some(at) = a.get(id) {
                e2e.push(*at - *t);
            }
        }
    }
    e2e.sort();
    answer.sort();
    let mut http = http.lock().unwrap().clone();
    http.sort();

    cancel.cancel();
    gw.shutdown().await;

    let date = chrono::Utc::now().format("%Y-%m-%d");
    println!("gateway: {accepted} petitions accepted, HTTP answers in {:.1} s ({http_rate:.0}/s), all dispatched after {:.1} s", answered.as_secs_f64(), end_to_end.as_secs_f64());
    println!(
        "ingest HTTP answer p50 {} p99 {} (64 connections, saturated)",
        ms(pct(&http, 0.5)),
        ms(pct(&http, 0.99))
    );
    println!();
    println!("| date | petitions | gateway end to end | raw rdkafka producer | gateway / raw | ProducerPerformance | gateway / tool |");
    println!("|---|---|---|---|---|---|---|");
    println!(
        "| {date} | {accepted} | {gateway_rate:.0}/s | {raw:.0}/s | {:.1}% | {} | {} |",
        100.0 * gateway_rate / raw,
        tool.map_or("n/a".into(), |t| format!("{t:.0}/s")),
        tool.map_or("n/a".into(), |t| format!(
            "{:.1}%",
            100.0 * gateway_rate / t
        )),
    );
    println!();
    println!(
        "| date | offered | dispatched | end to end p50 / p99 / max | HTTP answer p50 / p99 |"
    );
    println!("|---|---|---|---|---|");
    println!(
        "| {date} | 1,000/s for 10 s | {} of {} | {} / {} / {} | {} / {} |",
        e2e.len(),
        sent.len(),
        ms(pct(&e2e, 0.5)),
        ms(pct(&e2e, 0.99)),
        ms(e2e.last().copied().unwrap_or_default()),
        ms(pct(&answer, 0.5)),
        ms(pct(&answer, 0.99)),
    );
}

fn main() {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(run());
}
