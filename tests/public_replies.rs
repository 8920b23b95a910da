//! What the public sees: the leader board publishes the gateway's replies, Open311
//! clients read a request's status from the gateway. Neither may ever carry personal
//! data, even when a department's note does. Real broker, real simulators.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const NOTE: &str = "已修复，如有问题请拨13806312345或0631-7561234，身份证370682198001011234";

/// The department a case went to, once the dispatcher opened it.
async fn department_of(prefix: &str, petition_id: &str) -> (String, String) {
    let records = read_topics_until(
        &[format!("{prefix}petitions.cases")],
        |records| {
            records
                .iter()
                .any(|r| r.value["petition_id"] == petition_id)
        },
        Duration::ZERO,
    )
    .await;
    let report = records
        .iter()
        .find(|r| r.value["petition_id"] == petition_id)
        .unwrap();
    (
        report.value["case_id"].as_str().unwrap().to_string(),
        report.value["department"].as_str().unwrap().to_string(),
    )
}

fn assert_no_personal_data(text: &str) {
    for secret in ["13806312345", "7561234", "370682198001011234"] {
        assert!(!text.contains(secret), "{secret} was published: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_replies_and_open311_status_carry_no_personal_data() {
    let board = Sim::start("leader-board", None, &["--limit", "1"]);
    let dir = tempfile::tempdir().unwrap();
    let connectors = tempfile::tempdir().unwrap();
    let cfg = config_with(
        "public",
        true,
        dir,
        &[
            Connector::edited(
                "leader-board",
                connectors.path(),
                &[("interval_secs = 10", "interval_secs = 1")],
            )
            .with("base", board.url.clone())
            .with("callbacks", "true"),
            Connector::shipped("open311"),
        ],
    );
    // Resolved cases nobody answers for close after two (one-second) hours.
    let text = std::fs::read_to_string(&cfg.file).unwrap();
    std::fs::write(
        &cfg.file,
        text + "[lifecycle]\nhour_secs = 1\nsatisfaction_timeout_hours = 2\ntick_interval_ms = 200\n",
    )
    .unwrap();
    let gw = start(&cfg.file).await;
    wait_ready(&gw, true).await;
    let open311 = Sim::start("open311", Some(gw.addr), &["--limit", "1"]);
    let p = cfg.prefix.clone();

    // The board's message: polled, opened, resolved with a note full of personal data.
    let records = read_topics_until(
        &[format!("{p}petitions.cases")],
        |records| records.iter().any(|r| r.value["channel"] == "leader-board"),
        Duration::ZERO,
    )
    .await;
    let board_report = records
        .iter()
        .find(|r| r.value["channel"] == "leader-board")
        .unwrap();
    let board_case = board_report.value["case_id"].as_str().unwrap().to_string();
    let board_department = board_report.value["department"]
        .as_str()
        .unwrap()
        .to_string();

    // The Open311 request.
    let pushed = open311.push(json!({"count": 1})).await;
    assert_eq!(pushed[0]["http_status"], 201, "{pushed:?}");
    let request_id = pushed[0]["answer"][0]["service_request_id"]
        .as_str()
        .unwrap()
        .to_string();
    let (case_311, department_311) = department_of(&p, &request_id).await;
    // The ledger stores what the dispatcher committed a moment later (its own reader).
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let status = loop {
        let status = open311
            .control("/_sim/status", json!({"id": request_id}))
            .await;
        if status["http_status"] != 404 || std::time::Instant::now() > deadline {
            break status;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(status["http_status"], 200, "{status}");
    assert_eq!(
        status["answer"][0]["service_request_id"],
        request_id.as_str()
    );
    assert_eq!(status["answer"][0]["status"], "open");

    // Both sample rows name their problem well enough to be routed.
    assert_ne!(board_department, "triage");
    assert_ne!(department_311, "triage");
    for (case, department) in [
        (&board_case, &board_department),
        (&case_311, &department_311),
    ] {
        publish_status(&p, case, "resolved", department, NOTE).await;
    }

    // The board published the reply, without the note's phone numbers or name.
    let deadline = Instant::now() + Duration::from_secs(60);
    let replies: Vec<Value> = loop {
        let received = board.get("/_sim/received").await;
        let replies: Vec<Value> = received
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["path"].as_str().unwrap_or_default().ends_with("/reply"))
            .cloned()
            .collect();
        let resolved = replies.iter().any(|r| {
            r["body"]["content"]
                .as_str()
                .unwrap_or_default()
                .contains("已修复")
        });
        if resolved || Instant::now() > deadline {
            break replies;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(!replies.is_empty(), "the board got no reply");
    for r in &replies {
        assert_eq!(r["accepted"], true, "{r}");
        assert!(
            r.get("warning").is_none(),
            "the board flagged personal data: {r}"
        );
        assert_no_personal_data(&r["body"].to_string());
    }

    // Open311: closed once the satisfaction wait ran out, the note scrubbed.
    let deadline = Instant::now() + Duration::from_secs(60);
    let answer = loop {
        let status = open311
            .control("/_sim/status", json!({"id": request_id}))
            .await;
        let answer = status["answer"][0].clone();
        if answer["status"] == "closed" || Instant::now() > deadline {
            break answer;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert_eq!(answer["status"], "closed", "{answer}");
    assert!(
        answer["status_notes"].as_str().unwrap().contains("已修复"),
        "{answer}"
    );
    assert_no_personal_data(&answer.to_string());
    let listed = open311
        .control("/_sim/status", json!({"query": {"status": "closed"}}))
        .await;
    assert_no_personal_data(&listed.to_string());

    // Another channel's petition is not an Open311 request.
    let hidden = open311
        .control(
            "/_sim/status",
            json!({"id": board_report.value["petition_id"]}),
        )
        .await;
    assert_eq!(hidden["http_status"], 404, "{hidden}");
    gw.shutdown().await;
}
