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
    // Several partitions: status events must find the case's partition.
    with_partitions(&cfg, 3);
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
    assert_eq!(lifecycle.value["history_len"], 4);
    // The history is not in the lifecycle: each move wrote its entries once, in order.
    assert!(lifecycle.value.get("history").is_none());
    let history: Vec<&str> = cases
        .iter()
        .filter(|r| r.value["type"] == "history" && r.value["case_id"] == first_id.as_str())
        .flat_map(|r| r.value["entries"].as_array().unwrap().iter())
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

    // From now on both work orders hear every move of the case they share.
    let department = lifecycle.value["department"].as_str().unwrap().to_string();
    publish_status(&cfg.prefix, &first_id, "accepted", &department, "已签收").await;
    publish_status(&cfg.prefix, &first_id, "resolved", &department, "已修好").await;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let received = loop {
        let received = hotline.get("/_sim/received").await;
        let received = received.as_array().unwrap().clone();
        if received.len() >= 8 || std::time::Instant::now() > deadline {
            break received;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let codes = |gdbh: &str| -> Vec<String> {
        received
            .iter()
            .filter(|r| r["body"]["gdbh"] == gdbh)
            .map(|r| r["body"]["zt"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(codes("LC-1"), ["01", "02", "03", "04"]);
    assert_eq!(codes("LC-2"), ["01", "06", "03", "04"]);
    let done = received.iter().find(|r| r["body"]["zt"] == "04").unwrap();
    assert_eq!(done["body"]["bljg"], "已修好", "{done}");
    let dispatched = received.iter().find(|r| r["body"]["zt"] == "02").unwrap();
    assert!(!dispatched["body"]["blbm"].as_str().unwrap().is_empty());
    gw.shutdown().await;
}

const CENTER_KEY: &str = "test-center-key";
const URBAN_KEY: &str = "test-urban-key";
const WATER_KEY: &str = "test-water-key";

async fn ledger(
    gw: &petition_gateway::server::RunningGateway,
    path: &str,
    key: &str,
) -> (u16, Value) {
    let response = reqwest::Client::new()
        .get(format!("http://{}{path}", gw.addr))
        .header("x-api-key", key)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Waits until the ledger shows the case with `history` entries in `phase`.
async fn wait_phase(
    gw: &petition_gateway::server::RunningGateway,
    case_id: &str,
    phase: &str,
    history: usize,
) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (status, body) = ledger(gw, &format!("/cases/{case_id}"), CENTER_KEY).await;
        let len = body["history"].as_array().map_or(0, Vec::len);
        if status == 200 && body["status"] == phase && len >= history {
            return body;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "case {case_id} never reached {phase} with {history} history entries: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_case_lives_until_the_citizen_is_satisfied() {
    let port = free_port();
    let cfg = config_with(
        "life",
        true,
        tempfile::tempdir().unwrap(),
        &[Connector::shipped("city-app")
            .with("base", format!("http://127.0.0.1:{port}"))
            .with("callbacks", "true")],
    );
    with_partitions(&cfg, 3);
    let text = std::fs::read_to_string(&cfg.file).unwrap();
    std::fs::write(
        &cfg.file,
        text + &format!(
            "[ledger.keys]\ncenter = \"{CENTER_KEY}\"\nurban-management = \"{URBAN_KEY}\"\nwater = \"{WATER_KEY}\"\n"
        ),
    )
    .unwrap();
    let gw = start(&cfg.file).await;
    wait_ready(&gw, true).await;
    let app = Sim::start("city-app", Some(gw.addr), &["--port", &port.to_string()]);

    let ticket = json!({
        "ticketId": "LIFE-1", "createdAt": chrono::Utc::now().to_rfc3339(),
        "user": {"openId": "o-1", "nickname": "海边的风", "mobile": "13806312345"},
        "category": "城市管理/路灯", "title": "路灯不亮",
        "content": "成山大道与海湾路路口东侧两盏路灯不亮，夜里很黑。",
        "location": {"lng": 122.4211, "lat": 37.1652, "coordType": "gcj02", "address": "成山大道海湾路口"},
        "images": []
    });
    let pushed = app.push(json!({"payload": ticket})).await;
    assert_eq!(pushed[0]["http_status"], 202, "{pushed:?}");
    let case_id = pushed[0]["answer"]["receipt"].as_str().unwrap().to_string();
    let p = &cfg.prefix;

    let opened = wait_phase(&gw, &case_id, "dispatched", 3).await;
    assert_eq!(opened["department"], "urban-management");
    assert_eq!(opened["petition"]["source_id"], "LIFE-1", "{opened}");
    assert_eq!(opened["routing"]["department"], "urban-management");
    assert_eq!(opened["reports"].as_array().unwrap().len(), 1);
    // Departments see their own cases only; another department's is not there at all.
    assert_eq!(
        ledger(&gw, &format!("/cases/{case_id}"), URBAN_KEY).await.0,
        200
    );
    assert_eq!(
        ledger(&gw, &format!("/cases/{case_id}"), WATER_KEY).await.0,
        404
    );
    assert_eq!(
        ledger(&gw, &format!("/cases/{case_id}"), "nobody").await.0,
        401
    );

    publish_status(p, &case_id, "accepted", "urban-management", "已签收").await;
    // Not theirs: refused with the reason, nothing moves.
    publish_status(p, &case_id, "in_progress", "water", "").await;
    publish_status(p, &case_id, "in_progress", "urban-management", "已派人查看").await;
    publish_status(p, &case_id, "resolved", "urban-management", "已更换灯具").await;
    // Late: would move the case back.
    publish_status(p, &case_id, "in_progress", "urban-management", "迟到的消息").await;
    wait_phase(&gw, &case_id, "resolved", 6).await;
    let rejected = read_topics(
        &[format!("{p}petitions.status.rejected")],
        2,
        Duration::from_secs(1),
    )
    .await;
    let reasons: Vec<&str> = rejected
        .iter()
        .map(|r| r.value["reason"].as_str().unwrap())
        .collect();
    assert_eq!(rejected.len(), 2, "{reasons:?}");
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("routed to urban-management, not to water")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.starts_with("stale")),
        "{reasons:?}"
    );

    // 不满意不销号: not satisfied reopens it at the same department, with the comment.
    let answer = app
        .control(
            "/_sim/feedback",
            json!({"ticketId": "LIFE-1", "satisfied": false, "comment": "还是不亮"}),
        )
        .await;
    assert_eq!(answer["http_status"], 202, "{answer}");
    let reopened = wait_phase(&gw, &case_id, "dispatched", 9).await;
    assert_eq!(reopened["department"], "urban-management");
    let again = read_topics_until(
        &[format!("{p}dept.urban-management")],
        |records| records.iter().any(|r| r.value["reason"] == "dispatched"),
        Duration::ZERO,
    )
    .await;
    let redispatch = again
        .iter()
        .find(|r| r.value["reason"] == "dispatched")
        .unwrap();
    assert_eq!(redispatch.value["case_id"], case_id.as_str());
    assert_eq!(
        redispatch.value["petition"]["channel"], "city-app",
        "the department gets the petition again"
    );
    assert_eq!(redispatch.value["reopened"], 1);

    publish_status(p, &case_id, "resolved", "urban-management", "已彻底修复").await;
    wait_phase(&gw, &case_id, "resolved", 10).await;
    app.control(
        "/_sim/feedback",
        json!({"ticketId": "LIFE-1", "satisfied": true, "comment": ""}),
    )
    .await;
    let closed = wait_phase(&gw, &case_id, "closed", 12).await;
    let history: Vec<&str> = closed["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        history,
        [
            "received",
            "accepted",
            "dispatched",
            "accepted",
            "in_progress",
            "resolved",
            "dissatisfied",
            "reopened",
            "dispatched",
            "resolved",
            "satisfied",
            "closed"
        ]
    );
    let (_, listed) = ledger(
        &gw,
        "/cases?status=closed&department=urban-management",
        CENTER_KEY,
    )
    .await;
    assert!(listed["cases"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["case_id"] == case_id.as_str()));

    // The app heard every step in its own words, in order (closed has no word there).
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let words = loop {
        let received = app.get("/_sim/received").await;
        let words: Vec<String> = received
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["path"] == "/open/v1/tickets/LIFE-1/progress")
            .map(|r| r["body"]["status"].as_str().unwrap_or_default().to_string())
            .collect();
        if words.len() >= 8 || std::time::Instant::now() > deadline {
            break words;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        words,
        [
            "ACCEPTED",
            "DISPATCHED",
            "PROCESSING",
            "PROCESSING",
            "DONE",
            "REOPENED",
            "DISPATCHED",
            "DONE"
        ]
    );
    gw.shutdown().await;
}
