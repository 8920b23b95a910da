//! The whole labeled sample through the running gateway in the order real channels can
//! deliver it: each push channel's two weeks sent at once in a shuffled order over four
//! connections (sixteen in all), the two portals polled only afterwards. The cases are
//! those of `replay` in reported order (dedupe precision and recall within 0.02), and
//! every report that joined a case reached the case's department.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use petition_gateway::replay::{replay_in_order, ReplayOrder};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::Duration;

const PUSH: [&str; 4] = ["hotline", "city-app", "community-app", "open311"];

/// Petition id → seq, and the dedupe quality of `replay` in reported order.
fn replay_in_reported_order() -> (HashMap<String, u64>, (f64, f64)) {
    let config = repo().join("config/gateway.toml");
    let loaded = petition_gateway::config::load(&config).unwrap();
    let text = std::fs::read_to_string(petition_gateway::sample::sample_path()).unwrap();
    let mut out = Vec::new();
    replay_in_order(loaded, text.as_bytes(), &mut out, ReplayOrder::Reported).unwrap();
    let incident = incidents();
    let mut seq_of = HashMap::new();
    let mut reports = Vec::new();
    for line in String::from_utf8(out).unwrap().lines() {
        let r: Value = serde_json::from_str(line).unwrap();
        let seq = r["seq"].as_u64().unwrap();
        seq_of.insert(r["petition_id"].as_str().unwrap().to_string(), seq);
        reports.push((
            r["case_id"].as_str().unwrap().to_string(),
            incident[&seq].clone(),
        ));
    }
    (seq_of, pairwise_quality(reports))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sample_pushed_shuffled_and_polled_last_gives_the_cases_of_reported_order() {
    let (mut seq_of, (p0, r0)) = replay_in_reported_order();
    let petitions = seq_of.len();
    let prefix = unique_prefix("shuffled");

    // The push channels and the dispatcher.
    let connectors: Vec<Connector> = PUSH.iter().map(|c| Connector::shipped(c)).collect();
    // Debug builds and the broker share two cores under a burst of sixteen connections:
    // give Kafka time to acknowledge rather than answer "retry".
    let patient = |cfg: &TestConfig| {
        let text = std::fs::read_to_string(&cfg.file).unwrap();
        let text = text.replace(
            "message_timeout_ms = 3000\n",
            "message_timeout_ms = 30000\n",
        );
        std::fs::write(&cfg.file, text).unwrap();
    };
    let cfg = config_on_prefix(&prefix, true, tempfile::tempdir().unwrap(), &connectors);
    with_partitions(&cfg, 4);
    patient(&cfg);
    let gw = start(&cfg.file).await;
    wait_ready(&gw, true).await;
    let sims: Vec<Sim> = PUSH
        .iter()
        .map(|c| {
            // The test config's hotline token is not the simulator's default.
            let secret: &[&str] = if *c == "hotline" {
                &["--secret", TOKEN]
            } else {
                &[]
            };
            Sim::start(c, Some(gw.addr), secret)
        })
        .collect();
    let pushes = sims.iter().enumerate().map(|(i, sim)| {
        sim.push(
            json!({"count": 100_000, "concurrency": 4, "shuffle": 7 + i, "timeout_ms": 120_000}),
        )
    });
    let mut pushed = 0;
    for (channel, results) in PUSH
        .iter()
        .zip(futures_util::future::join_all(pushes).await)
    {
        // Accepted: 2xx, and the hotline's code 0 (it answers everything with HTTP 200).
        let refused: Vec<&Value> = results
            .iter()
            .filter(|r| {
                !matches!(r["http_status"].as_u64(), Some(200..=202))
                    || (*channel == "hotline" && r["answer"]["code"] != 0)
            })
            .collect();
        assert!(
            refused.is_empty(),
            "{channel}: {:?}",
            &refused[..refused.len().min(3)]
        );
        pushed += results.len();
        // An Open311 request's id is a hash of the form it came in, not of the sample's
        // JSON that replay reads: the receipt names it.
        if *channel == "open311" {
            for r in &results {
                let receipt = r["answer"][0]["service_request_id"].as_str().unwrap();
                seq_of.insert(receipt.to_string(), r["seq"].as_u64().unwrap());
            }
        }
    }
    let pushed_log = read_case_log_within(
        &prefix,
        pushed,
        Duration::from_secs(1),
        Duration::from_secs(300),
    )
    .await;
    assert_eq!(
        pushed_log.reports.len(),
        pushed,
        "pushed petitions in no case"
    );

    // The portals come last: a second instance that only polls them.
    let board = Sim::start("leader-board", None, &[]);
    let clues = Sim::start("supervision", None, &[]);
    let dir = tempfile::tempdir().unwrap();
    let polled = [
        Connector::edited(
            "leader-board",
            dir.path(),
            &[("interval_secs = 10", "interval_secs = 1")],
        )
        .with("base", board.url.clone()),
        Connector::edited(
            "supervision",
            dir.path(),
            &[("interval_secs = 30", "interval_secs = 1")],
        )
        .with("base", clues.url.clone()),
    ];
    let poll_cfg = config_on_prefix(&prefix, false, dir, &polled);
    with_partitions(&poll_cfg, 4);
    patient(&poll_cfg);
    let poller = start(&poll_cfg.file).await;
    wait_ready(&poller, true).await;
    let log = read_case_log_within(
        &prefix,
        petitions,
        Duration::from_secs(2),
        Duration::from_secs(300),
    )
    .await;
    assert_eq!(log.reports.len(), petitions, "petitions in no case");

    // The same cases as replay in reported order, by the labels' measure.
    let incident = incidents();
    let live: Vec<(String, String)> = log
        .reports
        .iter()
        .map(|(petition, r)| {
            let seq = seq_of[petition];
            (
                r["case_id"].as_str().unwrap().to_string(),
                incident[&seq].clone(),
            )
        })
        .collect();
    let (p, r) = pairwise_quality(live);
    eprintln!(
        "shuffled push, portals last: P {p:.4} R {r:.4}; replay in reported order: P {p0:.4} R {r0:.4}; {} cases",
        log.cases.len()
    );
    assert!(p >= p0 - 0.02, "precision {p:.4} against {p0:.4}");
    assert!(r >= r0 - 0.02, "recall {r:.4} against {r0:.4}");

    // Every case and every report that joined one reached the departments.
    let expected = log.department_records();
    let out = read_topics_within(
        &output_topics(&prefix),
        |records| records.len() >= expected,
        Duration::from_secs(2),
        Duration::from_secs(120),
    )
    .await;
    assert_each_case_dispatched_once(&prefix, &out, &log);
    poller.shutdown().await;
    gw.shutdown().await;
}
