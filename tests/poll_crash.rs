//! A gateway process killed between fetching a page and publishing it: the restarted
//! process reads that page again from the stored cursor. Nothing lost, nothing doubled.
//! Real processes (the built binary), a real broker, the leader board simulator.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use serde_json::json;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn gateway_process(config: &std::path::Path, crash: Option<&str>) -> std::process::Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_petition-gateway"));
    cmd.args(["run", "--config"])
        .arg(config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(spec) = crash {
        cmd.env("GATEWAY_FAULT_CRASH_AFTER_FETCH", spec);
    }
    cmd.spawn().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_fetch_and_publish_loses_and_doubles_nothing() {
    let sim = Sim::start("leader-board", None, &["--limit", "70"]);
    let dir = tempfile::tempdir().unwrap();
    let connector = Connector::edited(
        "leader-board",
        dir.path(),
        &[
            ("interval_secs = 10", "interval_secs = 1"),
            ("page_size = 50", "page_size = 20"),
        ],
    )
    .with("base", sim.url.clone());
    let cfg = config_with("crash", false, dir, &[connector]);
    let inbound = format!("{}petitions.inbound", cfg.prefix);

    // First process: dies right after fetching page 2, before publishing any of it.
    let mut first = gateway_process(&cfg.file, Some("leader-board:2"));
    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(status) = first.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the gateway never reached the crash point"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(!status.success(), "the process was meant to abort");
    let after_crash = read_topics(std::slice::from_ref(&inbound), 20, Duration::from_secs(2)).await;
    assert_eq!(
        after_crash.len(),
        20,
        "only page 1 was published before the crash"
    );

    // Second process: resumes from the stored cursor (after page 1).
    let mut second = gateway_process(&cfg.file, None);
    let deadline = Instant::now() + Duration::from_secs(90);
    let all = loop {
        let all = read_topics(
            std::slice::from_ref(&inbound),
            70,
            Duration::from_millis(500),
        )
        .await;
        if all.len() >= 70 || Instant::now() > deadline {
            break all;
        }
    };
    let _ = second.kill();
    let _ = second.wait();
    assert_eq!(distinct_ids(&all, "/id").len(), 70, "a petition was lost");
    assert_eq!(all.len(), 70, "a petition was published twice");

    // Page 2 (since=c-20) was fetched by both processes; everything else once.
    let requests = sim.get("/_sim/requests").await;
    let page2 = requests
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["status"] == 200 && r["query"]["since"] == json!("c-20"))
        .count();
    assert_eq!(page2, 2, "{requests}");
}
