//! With the broker stopped, the hotline gets "try again", never a false receipt; readiness
//! drops; once the broker is back the resend succeeds with the same receipt and every
//! accepted petition is dispatched exactly once.
//!
//! This stops and restarts the shared test broker (`scripts/kafka`), so it is the only
//! test in its binary (cargo runs test binaries one after another).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use serde_json::json;
use std::time::Duration;

/// Restarts the broker even when an assertion fails, so later test binaries have one.
struct RestartOnDrop;
impl Drop for RestartOnDrop {
    fn drop(&mut self) {
        let _ = std::process::Command::new(repo().join("scripts/kafka"))
            .arg("start")
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_the_broker_is_down_the_hotline_is_told_to_retry() {
    capture_logs();
    let cfg = write_config("outage", true, None);
    let gw = start(&cfg.file).await;
    wait_ready(&gw, true).await;

    let sample = hotline_sample();
    let before = sample[0]["payload"].clone();
    let during = sample[1]["payload"].clone();
    let a = post_order(&gw, &before).await;
    assert_eq!(a.body["code"], 0);

    let _guard = RestartOnDrop;
    tokio::task::spawn_blocking(|| kafka_script(&["stop"]))
        .await
        .unwrap();
    wait_ready(&gw, false).await;

    let refused = post_order(&gw, &during).await;
    assert_eq!(refused.status, 200);
    assert_eq!(refused.body["code"], 5003, "{}", refused.body);
    assert!(
        refused.body["data"].get("receipt").is_none(),
        "a receipt without Kafka's ack"
    );
    assert_eq!(refused.body["data"]["gdbh"], during["gdbh"]);

    tokio::task::spawn_blocking(|| kafka_script(&["start"]))
        .await
        .unwrap();
    wait_ready(&gw, true).await;

    // The hotline resends what it got no receipt for, until it gets one (a broker that
    // just restarted may still be electing partition leaders).
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    let accepted = loop {
        let a = post_order(&gw, &during).await;
        if a.body["code"] == 0 || std::time::Instant::now() > deadline {
            break a;
        }
        assert_eq!(
            a.body["code"], 5003,
            "only 'try again' is acceptable meanwhile: {}",
            a.body
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(accepted.body["code"], 0, "{}", accepted.body);
    let receipt = accepted.body["data"]["receipt"].clone();
    assert_eq!(
        receipt,
        json!(petition_gateway::petition::petition_id(
            "hotline",
            during["gdbh"].as_str().unwrap()
        ))
    );

    let inbound = read_topics(
        &[format!("{}petitions.inbound", cfg.prefix)],
        2,
        Duration::from_secs(3),
    )
    .await;
    let ids: Vec<_> = inbound.iter().map(|r| r.value["id"].clone()).collect();
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert!(ids.contains(&receipt) && ids.contains(&a.body["data"]["receipt"]));

    let out = read_topics(&output_topics(&cfg.prefix), 2, Duration::from_secs(3)).await;
    let mut dispatched: Vec<_> = out
        .iter()
        .map(|r| r.value["petition"]["id"].clone())
        .collect();
    dispatched.sort_by_key(|v| v.to_string());
    dispatched.dedup();
    assert_eq!(
        out.len(),
        2,
        "each petition dispatched exactly once: {dispatched:?}"
    );
    assert_eq!(dispatched.len(), 2);
    gw.shutdown().await;
}
