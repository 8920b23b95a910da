//! A case's life as its sources hear it: the dispatcher writes each move of a case to
//! `petitions.cases` (`lifecycle/<id>`) and one callback per move and source to the
//! source channel's outbox (`callbacks.<channel>`), in the same transaction; the
//! channel's callback sender delivers them to the channel (the hotline simulator) in its
//! own format and codes. Real broker, the gateway in-process, petitions over HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use serde_json::{json, Value};
use std::time::Duration;

fn order(id: &str, name: &str) -> Value {
    json!({
        "gdbh": id, "ldsj": "2026-11-20 09:30:00", "ldhm": "13800138000", "ldrxm": name,
        "sqlx": "投诉", "jjcd": "一般",
        "sqnr": "崖头街道曙光社区3号楼2单元楼道灯坏了一个多星期，晚上上下楼很不方便。",
        "sqdz": "崖头街道曙光社区3号楼",
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_source_of_a_case_hears_its_moves_in_order() {
    let hotline = Sim::start("hotline", None, &["--secret", TOKEN]);
    let cfg = config_with(
        "lifecycle",
        true,
        tempfile::tempdir().unwrap(),
        &[Connector::shipped("hotline")
            .with("base", hotline.url.clone())
            .with("callbacks", "true")],
    );
    let gw = start(&cfg.file).await;
    wait_ready(&gw, true).await;

    let first = post_order(&gw, &order("LC-1", "葛女士")).await;
    let second = post_order(&gw, &order("LC-2", "王先生")).await;
    let first_id = first.body["data"]["receipt"].as_str().unwrap().to_string();
    let second_id = second.body["data"]["receipt"].as_str().unwrap().to_string();

    let outbox = read_topics(
        &[format!("{}callbacks.hotline", cfg.prefix)],
        4,
        Duration::from_secs(2),
    )
    .await;
    let heard = |petition: &str| -> Vec<String> {
        outbox
            .iter()
            .filter(|r| r.value["petition_id"] == petition)
            .map(|r| r.value["status"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(heard(&first_id), ["received", "dispatched"]);
    assert_eq!(heard(&second_id), ["received", "merged"]);
    for r in &outbox {
        // One case, one key: its callbacks stay in order on one partition.
        assert_eq!(r.key.as_deref(), Some(first_id.as_str()));
        assert_eq!(r.value["case_id"], first_id.as_str());
        assert_eq!(r.value["channel"], "hotline");
    }
    let merged = outbox
        .iter()
        .find(|r| r.value["status"] == "merged")
        .unwrap();
    assert_eq!(merged.value["merged_into"], first_id.as_str());
    assert_eq!(merged.value["case_status"], "dispatched");
    assert_eq!(merged.value["source_id"], "LC-2");
    let dispatched = outbox
        .iter()
        .find(|r| r.value["status"] == "dispatched")
        .unwrap();
    assert!(dispatched.value["department_name"].is_string());
    assert!(dispatched.value["deadline"].is_i64());

    // The case's lifecycle record: where it is and who reported it.
    let cases = read_topics_until(
        &[format!("{}petitions.cases", cfg.prefix)],
        |records| {
            records.iter().any(|r| {
                r.value["type"] == "lifecycle"
                    && r.value["sources"].as_array().map(Vec::len) == Some(2)
            })
        },
        Duration::ZERO,
    )
    .await;
    let lifecycle = cases
        .iter()
        .rev()
        .find(|r| r.value["type"] == "lifecycle")
        .unwrap();
    assert_eq!(
        lifecycle.key.as_deref(),
        Some(format!("lifecycle/{first_id}").as_str())
    );
    assert_eq!(lifecycle.value["phase"], "dispatched");
    let history: Vec<&str> = lifecycle.value["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["status"].as_str().unwrap())
        .collect();
    assert_eq!(history, ["received", "accepted", "dispatched", "merged"]);

    // The hotline got each work order's updates in its own codes, in order:
    // 01 受理, 02 已派单 for the first, 01 and 06 已并单 for the merged one.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let received = loop {
        let received = hotline.get("/_sim/received").await;
        let received = received.as_array().unwrap().clone();
        if received.len() >= 4 || std::time::Instant::now() > deadline {
            break received;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let codes = |gdbh: &str| -> Vec<String> {
        received
            .iter()
            .filter(|r| r["body"]["gdbh"] == gdbh)
            .map(|r| {
                assert_eq!(r["accepted"], true, "{r}");
                assert_eq!(r["path"], "/api/gd/fk");
                r["body"]["zt"].as_str().unwrap().to_string()
            })
            .collect()
    };
    assert_eq!(codes("LC-1"), ["01", "02"]);
    assert_eq!(codes("LC-2"), ["01", "06"]);
    assert_eq!(received.len(), 4, "nothing else was sent: {received:?}");
    let dispatched = received.iter().find(|r| r["body"]["zt"] == "02").unwrap();
    assert!(!dispatched["body"]["blbm"].as_str().unwrap().is_empty());
    gw.shutdown().await;
}
