//! Departments that work every case they get, for benchmarks that need cases to close
//! (`scripts/bench-restore --days D` runs it beside the gateway; needs `scripts/kafka start`).
//!
//! `cargo bench --bench departments -- PREFIX`: reads every department topic
//! (`PREFIX` + `dept.*`) and `PREFIX` + `petitions.triage` with a real consumer, as a
//! department's system would, and publishes to `PREFIX` + `petitions.status`:
//! - a case (or an assignment) on a department's topic: `resolved` by that department
//!   (skipping a step forward is legal); the gateway closes it when the citizen's
//!   satisfaction timeout passes;
//! - a case in triage: `reassigned` by the center to the department the router named
//!   among its candidates, or to urban management.
//!
//! Prints what it published every 10 s, until killed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const BOOTSTRAP: &str = "127.0.0.1:9092";
const FALLBACK_DEPARTMENT: &str = "urban-management";

/// What a department or the center answers to one record of its topic.
fn answer(prefix: &str, topic: &str, record: &Value) -> Option<Value> {
    let kind = record["type"].as_str()?;
    if kind != "case" && kind != "assignment" {
        return None; // a report that joined a case: the case itself is already worked
    }
    let case_id = record["case_id"].as_str()?;
    let at = chrono::Utc::now().to_rfc3339();
    let local = topic.strip_prefix(prefix)?;
    if local == "petitions.triage" {
        let to = record["routing"]["candidates"]
            .as_array()
            .and_then(|c| c.first())
            .and_then(|c| c["department"].as_str())
            .unwrap_or(FALLBACK_DEPARTMENT);
        return Some(
            json!({"case_id": case_id, "status": "reassigned", "department": "center",
            "to_department": to, "at": at, "note": "bench: the center assigns"}),
        );
    }
    let department = local.strip_prefix("dept.")?;
    Some(
        json!({"case_id": case_id, "status": "resolved", "department": department,
        "at": at, "note": "bench: done"}),
    )
}

#[tokio::main]
async fn main() {
    let prefix = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .expect("usage: cargo bench --bench departments -- PREFIX");
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", BOOTSTRAP)
        .set("group.id", format!("{prefix}bench-departments"))
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        .set("topic.metadata.refresh.interval.ms", "2000")
        .create()
        .unwrap();
    let departments = format!("^{}dept\\..*", regex_escape(&prefix));
    let triage = format!("{prefix}petitions.triage");
    consumer.subscribe(&[&departments, &triage]).unwrap();
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", BOOTSTRAP)
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .create()
        .unwrap();
    let status = format!("{prefix}petitions.status");
    let (mut resolved, mut assigned) = (0u64, 0u64);
    let (mut report, mut flushed) = (Instant::now(), Instant::now());
    let mut pending = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(1), consumer.recv()).await {
            Ok(Ok(m)) => {
                let Ok(record) = serde_json::from_slice::<Value>(m.payload().unwrap_or_default())
                else {
                    continue;
                };
                if let Some(event) = answer(&prefix, m.topic(), &record) {
                    if event["status"] == "resolved" {
                        resolved += 1;
                    } else {
                        assigned += 1;
                    }
                    let key = event["case_id"].as_str().unwrap_or_default().to_string();
                    let payload = event.to_string();
                    let delivery = producer
                        .send_result(FutureRecord::to(&status).key(&key).payload(&payload))
                        .map_err(|(e, _)| e)
                        .unwrap();
                    pending.push(delivery);
                }
            }
            Ok(Err(e)) => eprintln!("departments: consumer: {e}"),
            Err(_) => {}
        }
        if pending.len() >= 1000 || flushed.elapsed() >= Duration::from_millis(200) {
            for d in pending.drain(..) {
                d.await.unwrap().map_err(|(e, _)| e).unwrap();
            }
            flushed = Instant::now();
        }
        if report.elapsed() >= Duration::from_secs(10) {
            eprintln!("departments: {resolved} resolved, {assigned} assigned from triage");
            report = Instant::now();
        }
    }
}

fn regex_escape(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            let special = ".^$*+?()[]{}|\\".contains(c);
            special.then_some('\\').into_iter().chain(Some(c))
        })
        .collect()
}
