//! The center edits the responsibility list while the gateway runs: a valid edit routes
//! the next petition by the new list (its new department's topic created on the way),
//! a broken edit is refused and the last good list keeps routing. Real broker, the
//! gateway in-process, petitions over HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use serde_json::json;
use std::time::{Duration, Instant};

fn order(id: &str, text: &str) -> serde_json::Value {
    json!({
        "gdbh": id, "ldsj": "2026-11-20 09:30:00", "ldhm": "13800138000", "ldrxm": "王女士",
        "sqlx": "求助", "jjcd": "一般", "sqnr": text, "sqdz": "崖头街道",
    })
}

/// Posts until the petition's case shows up routed to `department` (the list is looked
/// at every 200 ms), each attempt a new petition.
async fn routed_after_edit(
    gw: &petition_gateway::server::RunningGateway,
    prefix: &str,
    text: &str,
    department: &str,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    for attempt in 0.. {
        let id = format!("RELOAD-{department}-{attempt}");
        let answer = post_order(gw, &order(&id, &format!("{text}（第{attempt}次）"))).await;
        assert_eq!(answer.body["code"], 0, "{}", answer.body);
        let petition = answer.body["data"]["receipt"].as_str().unwrap().to_string();
        let records = read_topics_until(
            &[format!("{prefix}petitions.cases")],
            |records| {
                records
                    .iter()
                    .any(|r| r.value["petition_id"] == petition.as_str())
            },
            Duration::ZERO,
        )
        .await;
        let found = records
            .into_iter()
            .find(|r| r.value["petition_id"] == petition.as_str())
            .expect("the petition reached a case")
            .value;
        if found["department"] == department {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "never routed to {department}: {found}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    unreachable!()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edited_list_routes_at_once_and_a_broken_one_is_refused() {
    let cfg = write_config("reload", true, None);
    let list = cfg.dir.path().join("responsibility.toml");
    let original = std::fs::read_to_string(repo().join("config/responsibility.toml")).unwrap();
    std::fs::write(&list, &original).unwrap();
    let text = std::fs::read_to_string(&cfg.file).unwrap();
    let text = text
        .replace(
            &format!("{}/config/responsibility.toml", repo().display()),
            &list.display().to_string(),
        )
        .replace("[routing]\n", "[routing]\nreload_interval_ms = 200\n");
    std::fs::write(&cfg.file, text).unwrap();
    let gw = start(&cfg.file).await;
    wait_ready(&gw, true).await;

    // Nobody owns stray cats yet.
    let cats = "小区里流浪猫越来越多，夜里叫得睡不着";
    let before = routed_after_edit(&gw, &cfg.prefix, cats, "triage").await;
    assert_eq!(before["department"], "triage");

    let edited = format!(
        "{original}\n[[department]]\ncode = \"animal\"\nname = \"动物防疫和流浪动物管理站\"\ntopic = \"dept.animal\"\nkeywords = [\"流浪猫\", \"流浪狗\"]\n"
    );
    std::fs::write(&list, &edited).unwrap();
    let after = routed_after_edit(&gw, &cfg.prefix, cats, "animal").await;
    let dispatched = read_topics(
        &[format!("{}dept.animal", cfg.prefix)],
        1,
        Duration::from_millis(500),
    )
    .await;
    assert_eq!(dispatched[0].value["case_id"], after["case_id"]);
    let version = dispatched[0].value["list_version"].clone();

    // A broken edit (a department without a topic) changes nothing.
    std::fs::write(&list, edited.replace("topic = \"dept.animal\"\n", "")).unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    let still = routed_after_edit(&gw, &cfg.prefix, "楼下流浪狗咬人了，请尽快处理", "animal").await;
    let log = read_case_log(&cfg.prefix, 1, Duration::from_millis(300)).await;
    assert_eq!(
        log.cases[still["case_id"].as_str().unwrap()]["list_version"],
        version
    );
    gw.shutdown().await;
}
