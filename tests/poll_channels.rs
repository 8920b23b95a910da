//! The poll channels against their simulators: the leader board's JSON pages with an
//! opaque cursor (429 + Retry-After, 5xx), the supervision platform's XML pages over a
//! time window; and two gateway instances sharing the polling through Kafka.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

fn leader_board(dir: &std::path::Path, sim: &Sim) -> Connector {
    Connector::edited(
        "leader-board",
        dir,
        &[
            ("interval_secs = 10", "interval_secs = 1"),
            ("page_size = 50", "page_size = 20"),
        ],
    )
    .with("base", sim.url.clone())
}

async fn wait_for_inbound(prefix: &str, distinct: usize) -> Vec<Record> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let records = read_topics(
            &[format!("{prefix}petitions.inbound")],
            distinct,
            Duration::from_millis(500),
        )
        .await;
        if distinct_ids(&records, "/id").len() >= distinct || Instant::now() > deadline {
            return records;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_board_is_paged_through_despite_429_and_5xx() {
    let sim = Sim::start("leader-board", None, &["--limit", "70"]);
    sim.control("/_sim/release", json!({"count": 30})).await;
    sim.control("/_sim/faults", json!({"status": 503, "count": 2}))
        .await;
    let dir = tempfile::tempdir().unwrap();
    let connector = leader_board(dir.path(), &sim);
    let cfg = config_with("board", false, dir, &[connector]);
    let gw = start(&cfg.file).await;
    wait_ready(&gw, true).await;

    let first = wait_for_inbound(&cfg.prefix, 30).await;
    assert_eq!(distinct_ids(&first, "/id").len(), 30);
    // Items released later are found from the stored cursor on.
    sim.control("/_sim/faults", json!({"status": 429, "count": 1}))
        .await;
    sim.control("/_sim/release", json!({"count": 70})).await;
    let all = wait_for_inbound(&cfg.prefix, 70).await;
    assert_eq!(distinct_ids(&all, "/id").len(), 70);
    assert_eq!(all.len(), 70, "no page was published twice");
    for r in &all {
        assert_eq!(r.value["channel"], "leader-board");
        assert!(
            r.value["reporter"].get("phone").is_none_or(|p| p == ""),
            "boards carry no phone"
        );
    }

    let requests = sim.get("/_sim/requests").await;
    let requests = requests.as_array().unwrap();
    let statuses: Vec<u64> = requests
        .iter()
        .map(|r| r["status"].as_u64().unwrap())
        .collect();
    assert_eq!(&statuses[..2], &[503, 503], "{statuses:?}");
    assert_eq!(statuses[2], 200, "retried after the 5xx: {statuses:?}");
    let i429 = statuses
        .iter()
        .position(|s| *s == 429)
        .expect("a 429 was served");
    let (t429, tnext) = (
        requests[i429]["time"].as_f64().unwrap(),
        requests[i429 + 1]["time"].as_f64().unwrap(),
    );
    assert!(
        tnext - t429 >= 0.95,
        "Retry-After: 1 was not honoured ({:.3} s)",
        tnext - t429
    );
    // The cursor only ever moved forward.
    let cursors: Vec<u64> = requests
        .iter()
        .filter(|r| r["status"] == 200)
        .map(|r| {
            r["query"]["since"]
                .as_str()
                .and_then(|c| c.strip_prefix("c-"))
                .map_or(0, |n| n.parse().unwrap())
        })
        .collect();
    assert!(cursors.windows(2).all(|w| w[0] <= w[1]), "{cursors:?}");
    assert!(
        cursors.last() >= Some(&50),
        "the last pages were never asked for: {cursors:?}"
    );
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn supervision_clues_are_read_from_xml_pages_and_escalated() {
    let sim = Sim::start("supervision", None, &["--limit", "45"]);
    let dir = tempfile::tempdir().unwrap();
    let connector = Connector::edited(
        "supervision",
        dir.path(),
        &[("interval_secs = 30", "interval_secs = 1")],
    )
    .with("base", sim.url.clone());
    let cfg = config_with("clues", true, dir, &[connector]);
    let gw = start(&cfg.file).await;
    wait_ready(&gw, true).await;

    let inbound = wait_for_inbound(&cfg.prefix, 45).await;
    assert_eq!(distinct_ids(&inbound, "/id").len(), 45);
    for r in &inbound {
        assert_eq!(r.value["urgency"], "urgent");
        assert!(r.value["reported_at"].as_str().unwrap().ends_with("+08:00"));
    }
    // Clues always escalate, besides going to their department: every case they
    // make (near-duplicate clues join one case) is escalated once.
    let log = read_case_log(&cfg.prefix, 45, Duration::from_secs(1)).await;
    assert_eq!(log.reports.len(), 45);
    let escalations = read_topics(
        &[format!("{}petitions.escalations", cfg.prefix)],
        log.cases.len(),
        Duration::from_secs(2),
    )
    .await;
    assert_eq!(escalations.len(), log.cases.len());
    assert_eq!(
        distinct_ids(&escalations, "/case_id").len(),
        log.cases.len()
    );
    assert!(escalations
        .iter()
        .all(|r| log.cases.contains_key(r.value["case_id"].as_str().unwrap())));
    assert!(escalations
        .iter()
        .all(|r| r.value["routing"]["escalation_reasons"][0] == "channel:supervision"));

    // Pages 1..3 of the first window, then windows that start at the newest clue seen.
    let requests = sim.get("/_sim/requests").await;
    let queries: Vec<(String, String)> = requests
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let q = &r["query"];
            (
                q["startTime"].as_str().unwrap().to_string(),
                q["page"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        queries[0],
        ("2026-01-01 00:00:00".to_string(), "1".to_string()),
        "{queries:?}"
    );
    assert!(queries.iter().any(|(_, page)| page == "3"), "{queries:?}");
    let (last_window, last_page) = queries.last().unwrap();
    assert!(
        last_window.as_str() > "2026-11-01",
        "the window never moved: {last_window}"
    );
    assert_eq!(last_page, "1");
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_never_poll_one_channel_at_the_same_time() {
    let sim = Sim::start("leader-board", None, &["--limit", "100"]);
    sim.control("/_sim/release", json!({"count": 40})).await;
    let prefix = unique_prefix("lease");
    let dir_a = tempfile::tempdir().unwrap();
    let dir_b = tempfile::tempdir().unwrap();
    let a_conn = leader_board(dir_a.path(), &sim);
    let b_conn = leader_board(dir_b.path(), &sim);
    let cfg_a = config_on_prefix(&prefix, false, dir_a, &[a_conn]);
    let cfg_b = config_on_prefix(&prefix, false, dir_b, &[b_conn]);
    let a = start(&cfg_a.file).await;
    let b = start(&cfg_b.file).await;
    wait_ready(&a, true).await;
    wait_ready(&b, true).await;

    wait_for_inbound(&prefix, 40).await;
    // Let both instances settle into the group and poll the empty end for a while.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let before = sim.get("/_sim/requests").await.as_array().unwrap().clone();
    let agents = |rs: &[Value]| -> Vec<String> {
        rs.iter()
            .map(|r| r["user_agent"].as_str().unwrap().to_string())
            .collect()
    };
    let holder = agents(&before).last().unwrap().clone();
    let recent: Vec<String> = agents(&before).into_iter().rev().take(3).collect();
    assert!(
        recent.iter().all(|a| *a == holder),
        "two pollers at once: {recent:?}"
    );

    // The holder stops; the other instance takes the lease over and finds the rest.
    let (holder_gw, other_gw) = if a.addr == b.addr {
        unreachable!()
    } else {
        (a, b)
    };
    // We do not know which instance holds it: stop both in turn, checking each time.
    holder_gw.shutdown().await;
    sim.control("/_sim/release", json!({"count": 100})).await;
    let all = wait_for_inbound(&prefix, 100).await;
    assert_eq!(
        distinct_ids(&all, "/id").len(),
        100,
        "nothing lost across the hand-over"
    );
    assert_eq!(
        all.len(),
        100,
        "nothing published twice across the hand-over"
    );

    let requests = sim.get("/_sim/requests").await.as_array().unwrap().clone();
    let seq = agents(&requests);
    // Polling passes from one instance to another at most once per hand-over: never interleaved.
    let switches = seq.windows(2).filter(|w| w[0] != w[1]).count();
    assert!(
        switches <= 2,
        "instances took turns polling: {switches} switches"
    );
    other_gw.shutdown().await;
}
