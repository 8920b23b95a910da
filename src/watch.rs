//! `petition-gateway watch`: prints one line per petition: where its case was dispatched
//! (a department or triage topic), or which open case it joined (the `report` record on
//! the case's topic), for the local demo and for integrators checking a deployment.

use crate::config::Settings;
use crate::dispatch::responsibility::ResponsibilityList;
use crate::petition::mask_phone;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::Message;
use serde_json::Value;
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("watch consumer: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
}

/// Reads the department and triage topics from the beginning for `window`, or
/// until `expected` petitions were printed; returns how many were printed.
pub async fn watch(
    settings: &Settings,
    list: &ResponsibilityList,
    window: Duration,
    expected: Option<usize>,
    mut out: impl std::io::Write,
) -> Result<usize, WatchError> {
    let group = format!("petition-gateway-watch-{}", uuid::Uuid::new_v4());
    let consumer: StreamConsumer = crate::kafka::base_config(&settings.kafka)
        .set("group.id", &group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .create()?;
    let t = &settings.topics;
    let mut topics: Vec<String> = list.departments.iter().map(|d| t.name(&d.topic)).collect();
    topics.push(t.name(&t.triage));
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    consumer.subscribe(&names)?;
    let deadline = Instant::now() + window;
    let mut printed = 0;
    while expected.is_none_or(|n| printed < n) {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let Ok(message) = tokio::time::timeout(left, consumer.recv()).await else {
            break;
        };
        let m = message?;
        let v: Value = serde_json::from_slice(m.payload().unwrap_or_default()).unwrap_or_default();
        let p = &v["petition"];
        if v["type"] == "assignment" {
            // The case again, not another petition.
            let _ = writeln!(
                out,
                "{:<16} {:<9} {:<24} case {} {} ({})",
                "(case)",
                "",
                m.topic(),
                v["case_id"].as_str().unwrap_or("?"),
                v["status"].as_str().unwrap_or("?"),
                v["reason"].as_str().unwrap_or("?"),
            );
            continue;
        }
        if v["type"] == "report" {
            let _ = writeln!(
                out,
                "{:<16} {:<9} {:<24} joined case {} (score {}, [{}])",
                p["source_id"].as_str().unwrap_or("?"),
                p["channel"].as_str().unwrap_or("?"),
                m.topic(),
                v["case_id"].as_str().unwrap_or("?"),
                v["merge"]["score"],
                v["merge"]["matched"]
                    .as_array()
                    .map(|a| a
                        .iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(","))
                    .unwrap_or_default(),
            );
            printed += 1;
            continue;
        }
        let r = &v["routing"];
        let matched: Vec<&str> = r["matched"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "{:<16} {:<9} {:<24} rule={:<9} [{}] region={} caller={} «{}»",
            p["source_id"].as_str().unwrap_or("?"),
            p["channel"].as_str().unwrap_or("?"),
            m.topic(),
            r["rule"].as_str().unwrap_or("?"),
            matched.join(","),
            p["location"]["region"]["code"].as_str().unwrap_or("?"),
            mask_phone(p["reporter"]["phone"].as_str().unwrap_or("")),
            p["text"]
                .as_str()
                .unwrap_or("")
                .chars()
                .take(24)
                .collect::<String>(),
        );
        printed += 1;
    }
    Ok(printed)
}
