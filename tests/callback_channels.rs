//! Callbacks in each channel's own format, and the ones that cannot be delivered: the
//! supervision platform gets XML feedback for its clues (which always escalate); a
//! channel that refuses every callback for good gets none of them retried, and each
//! lands on `callbacks.dead` with its attempts, with an alert. Real broker, real
//! simulators, the gateway in-process.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use serde_json::json;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_supervision_platform_gets_xml_feedback_in_order() {
    let sim = Sim::start("supervision", None, &["--limit", "1"]);
    let dir = tempfile::tempdir().unwrap();
    let connectors = tempfile::tempdir().unwrap();
    let cfg = config_with(
        "supervision-feedback",
        true,
        dir,
        &[Connector::edited(
            "supervision",
            connectors.path(),
            &[
                ("interval_secs = 30", "interval_secs = 1"),
                ("rate_limit_per_second = 2", "rate_limit_per_second = 50"),
            ],
        )
        .with("base", sim.url.clone())
        .with("callbacks", "true")],
    );
    let gw = start(&cfg.file).await;
    wait_ready(&gw, true).await;

    let deadline = Instant::now() + Duration::from_secs(60);
    let received = loop {
        let received = sim.get("/_sim/received").await;
        let received = received.as_array().unwrap().clone();
        // 已受理, then 已转办 (or triage's silence), and 提级办理: clues escalate. The
        // escalation's callback may come after the others: wait for it, not for a count.
        let escalated = received
            .iter()
            .any(|r| r["body"].as_str().is_some_and(|b| b.contains("提级办理")));
        if (received.len() >= 2 && escalated) || Instant::now() > deadline {
            break received;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(received.len() >= 2, "{received:?}");
    let statuses: Vec<String> = received
        .iter()
        .map(|r| {
            assert_eq!(r["accepted"], true, "{r}");
            assert_eq!(r["headers"]["token"], "dev-supervision-token");
            assert!(r["headers"]["content-type"]
                .as_str()
                .unwrap()
                .contains("xml"));
            let xml = r["body"].as_str().unwrap();
            assert!(
                xml.starts_with("<feedback>") || xml.contains("<feedback>"),
                "{xml}"
            );
            assert!(xml.contains("<time>"), "{xml}");
            let status = xml.split("<status>").nth(1).unwrap();
            status.split("</status>").next().unwrap().to_string()
        })
        .collect();
    assert_eq!(statuses[0], "已受理", "{statuses:?}");
    assert!(
        statuses.contains(&"提级办理".to_string()),
        "clues escalate: {statuses:?}"
    );
    let path = received[0]["path"].as_str().unwrap();
    assert!(
        path.starts_with("/dc/clues/DC") && path.ends_with("/feedback"),
        "{path}"
    );
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callback_refused_for_good_goes_to_the_dead_letters_with_an_alert() {
    // The hotline simulator expects another token: every callback gets code 4010.
    let sim = Sim::start("hotline", None, &["--secret", "a-token-we-do-not-have"]);
    let cfg = config_with(
        "dead-letters",
        true,
        tempfile::tempdir().unwrap(),
        &[Connector::shipped("hotline")
            .with("base", sim.url.clone())
            .with("callbacks", "true")],
    );
    let gw = start(&cfg.file).await;
    wait_ready(&gw, true).await;
    let order = json!({
        "gdbh": "DEAD-1", "ldsj": "2026-11-20 09:30:00", "ldhm": "13800138000",
        "ldrxm": "王女士", "sqlx": "求助", "jjcd": "一般",
        "sqnr": "崖头街道曙光社区7号楼楼道灯坏了一个星期。", "sqdz": "崖头街道曙光社区7号楼",
    });
    let answer = post_order(&gw, &order).await;
    let case_id = answer.body["data"]["receipt"].as_str().unwrap().to_string();

    let dead = read_topics(
        &[format!("{}callbacks.dead", cfg.prefix)],
        2,
        Duration::from_secs(1),
    )
    .await;
    assert_eq!(dead.len(), 2, "received and dispatched, each given up once");
    for d in &dead {
        assert_eq!(d.value["case_id"], case_id.as_str());
        assert_eq!(d.value["state"], "dead");
        let attempts = d.value["attempts"].as_array().unwrap();
        // A permanent answer is not retried.
        assert_eq!(attempts.len(), 1, "{}", d.value);
        assert_eq!(attempts[0]["outcome"], "permanent");
    }
    let alerts = read_topics(
        &[format!("{}petitions.alerts", cfg.prefix)],
        2,
        Duration::from_secs(1),
    )
    .await;
    assert_eq!(alerts.len(), 2);
    assert!(alerts.iter().all(|a| a.value["kind"] == "callback_dead"));
    // The sim saw exactly one attempt per callback.
    assert_eq!(sim.get("/_sim/received").await.as_array().unwrap().len(), 2);
    gw.shutdown().await;
}
