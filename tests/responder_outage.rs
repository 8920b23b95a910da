//! Callbacks when things go wrong: a channel that answers 503 for a while gets every
//! callback once it is back, in order per case, while the other channels carry on
//! undelayed; a gateway restarted in the middle of sending loses no callback, sends
//! none twice to a channel that confirmed it, and raises each SLA alert once. Real
//! broker, real simulators, the gateway in-process.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::{Duration, Instant};

fn order(id: &str, building: usize) -> Value {
    json!({
        "gdbh": id, "ldsj": "2026-11-20 09:30:00", "ldhm": "13800138000", "ldrxm": "王女士",
        "sqlx": "求助", "jjcd": "一般",
        "sqnr": format!("崖头街道曙光社区{building}号楼从早上开始停水，一直没来水，生活很不方便。"),
        "sqdz": format!("崖头街道曙光社区{building}号楼"),
    })
}

/// The hotline simulator's accepted callbacks: work order → its status codes in order.
async fn hotline_codes(sim: &Sim) -> HashMap<String, Vec<String>> {
    let received = sim.get("/_sim/received").await;
    let mut codes: HashMap<String, Vec<String>> = HashMap::new();
    for r in received.as_array().unwrap() {
        if r["accepted"] == true {
            codes
                .entry(r["body"]["gdbh"].as_str().unwrap().to_string())
                .or_default()
                .push(r["body"]["zt"].as_str().unwrap().to_string());
        }
    }
    codes
}

async fn wait_codes(
    sim: &Sim,
    orders: usize,
    per_order: usize,
    limit: Duration,
) -> HashMap<String, Vec<String>> {
    let deadline = Instant::now() + limit;
    loop {
        let codes = hotline_codes(sim).await;
        let done = codes.len() >= orders && codes.values().all(|c| c.len() >= per_order);
        if done || Instant::now() > deadline {
            return codes;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_down_for_a_while_gets_everything_in_order_and_delays_no_other() {
    let (hotline_port, community_port) = (free_port(), free_port());
    let cfg = config_with(
        "outage",
        true,
        tempfile::tempdir().unwrap(),
        &[
            Connector::shipped("hotline")
                .with("base", format!("http://127.0.0.1:{hotline_port}"))
                .with("callbacks", "true"),
            Connector::shipped("community-app")
                .with("base", format!("http://127.0.0.1:{community_port}"))
                .with("callbacks", "true"),
        ],
    );
    // Retry quickly, so the test does not wait out long backoffs.
    let text = std::fs::read_to_string(&cfg.file).unwrap();
    std::fs::write(
        &cfg.file,
        text + "[responder]\nretry_initial_ms = 200\nretry_max_ms = 1000\nmax_attempts = 200\n",
    )
    .unwrap();
    let gw = start(&cfg.file).await;
    wait_ready(&gw, true).await;
    let hotline = Sim::start(
        "hotline",
        Some(gw.addr),
        &["--port", &hotline_port.to_string(), "--secret", TOKEN],
    );
    let community = Sim::start(
        "community-app",
        Some(gw.addr),
        &["--port", &community_port.to_string()],
    );

    hotline
        .control("/_sim/faults", json!({"status": 503, "until": "clear"}))
        .await;
    for i in 0..10 {
        let answer = post_order(&gw, &order(&format!("OUT-{i}"), 100 + i)).await;
        assert_eq!(answer.body["code"], 0, "{}", answer.body);
    }
    // The hotline's sender is stuck retrying before the grid app sends anything.
    let deadline = Instant::now() + Duration::from_secs(60);
    while hotline
        .get("/_sim/received")
        .await
        .as_array()
        .unwrap()
        .is_empty()
    {
        assert!(Instant::now() < deadline, "the hotline was never tried");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let outage_started = Instant::now();
    let pushed = community.push(json!({"count": 10})).await;
    assert!(pushed.iter().all(|r| r["http_status"] == 200), "{pushed:?}");

    // While the hotline is down, the community app hears about its events at once.
    let deadline = Instant::now() + Duration::from_secs(60);
    let community_received = loop {
        let received = community.get("/_sim/received").await;
        let accepted: Vec<Value> = received
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["accepted"] == true)
            .cloned()
            .collect();
        // received (1) and dispatched (2) for each event, or 1 alone for triage.
        let events: std::collections::HashSet<&str> =
            accepted.iter().filter_map(|r| r["path"].as_str()).collect();
        if events.len() >= 10 || Instant::now() > deadline {
            break accepted;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let community_done = outage_started.elapsed();
    assert!(
        community_received.len() >= 10,
        "the community app waited for the hotline: {community_received:?}"
    );
    let failing = hotline.get("/_sim/received").await;
    assert!(
        failing
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["accepted"] == false),
        "the hotline accepted something while down"
    );
    eprintln!(
        "hotline down: community app got all {} callbacks {:?} after its events were sent; the hotline refused {} attempts in all",
        community_received.len(),
        community_done,
        failing.as_array().unwrap().len()
    );

    // Back up: everything arrives, once, in order per work order.
    hotline
        .control("/_sim/faults", json!({"clear": true}))
        .await;
    let codes = wait_codes(&hotline, 10, 2, Duration::from_secs(90)).await;
    assert_eq!(codes.len(), 10, "{codes:?}");
    for (gdbh, c) in &codes {
        assert_eq!(c, &["01", "02"], "{gdbh}: {c:?}");
    }
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_loses_no_callback_sends_none_twice_and_alerts_once() {
    let port = free_port();
    let cfg = config_with(
        "restart",
        true,
        tempfile::tempdir().unwrap(),
        &[Connector::shipped("hotline")
            .with("base", format!("http://127.0.0.1:{port}"))
            .with("callbacks", "true")],
    );
    // An SLA hour lasts a second here: water's 24 h is 24 s, due soon after 12 s.
    let text = std::fs::read_to_string(&cfg.file).unwrap();
    let text = text.replace(
        "[dispatcher]\n",
        "[dispatcher]\ninstance_id = \"restart\"\n",
    );
    std::fs::write(
        &cfg.file,
        text + "[lifecycle]\nhour_secs = 1\ndue_soon_share = 0.5\ntick_interval_ms = 200\n",
    )
    .unwrap();
    let hotline = Sim::start(
        "hotline",
        None,
        &["--port", &port.to_string(), "--secret", TOKEN],
    );
    // Slow answers (40 callbacks take ~16 s), so the restart comes after the due-soon
    // alerts (12 s) and while callbacks are still queued.
    hotline
        .control("/_sim/faults", json!({"delay_ms": 400, "count": 100000}))
        .await;

    let gw = start(&cfg.file).await;
    wait_ready(&gw, true).await;
    let started = Instant::now();
    let mut cases = Vec::new();
    for i in 0..20 {
        let answer = post_order(&gw, &order(&format!("RS-{i}"), 200 + i)).await;
        assert_eq!(answer.body["code"], 0, "{}", answer.body);
        cases.push(answer.body["data"]["receipt"].as_str().unwrap().to_string());
    }
    // Every due-soon alert fired before the restart; the overdue ones (24 s) come after.
    let due_soon = read_topics_until(
        &[format!("{}petitions.alerts", cfg.prefix)],
        |records| records.len() >= 20,
        Duration::ZERO,
    )
    .await;
    assert!(due_soon.iter().all(|a| a.value["kind"] == "due_soon"));
    gw.shutdown().await;
    let before = hotline_codes(&hotline)
        .await
        .values()
        .map(Vec::len)
        .sum::<usize>();
    eprintln!(
        "restart after {before} of 40 callbacks, {:?} in",
        started.elapsed()
    );
    assert!(
        before < 40,
        "everything went out before the restart: nothing tested"
    );

    let gw = start(&cfg.file).await;
    wait_ready(&gw, true).await;
    let codes = wait_codes(&hotline, 20, 2, Duration::from_secs(120)).await;
    assert_eq!(codes.len(), 20);
    for (gdbh, c) in &codes {
        // Twice the same code would be a callback the hotline had confirmed, sent again.
        assert_eq!(c, &["01", "02"], "{gdbh}: {c:?}");
    }

    // Every case goes overdue 24 s after dispatch: one due-soon and one overdue alert
    // each, across the restart.
    let alerts = read_topics_until(
        &[format!("{}petitions.alerts", cfg.prefix)],
        |records| records.len() >= 40,
        Duration::from_secs(3),
    )
    .await;
    let mut kinds: HashMap<(String, String), usize> = HashMap::new();
    for a in &alerts {
        *kinds
            .entry((
                a.value["case_id"].as_str().unwrap().to_string(),
                a.value["kind"].as_str().unwrap().to_string(),
            ))
            .or_default() += 1;
    }
    for case in &cases {
        for kind in ["due_soon", "overdue"] {
            assert_eq!(
                kinds.get(&(case.clone(), kind.to_string())),
                Some(&1),
                "case {case}: {kind} alerts: {kinds:?}"
            );
        }
    }
    assert_eq!(alerts.len(), 40, "no other alert");
    gw.shutdown().await;
}
