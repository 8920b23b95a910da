//! The router that learns, live on the real broker: the center assigns two triage cases
//! on `petitions.status`; the dispatcher writes each assignment to `routing.examples` in
//! the transaction that applies it; the next petition like them goes to the assigned
//! department, decided by the model (rule `learned`). A second instance, started from
//! nothing, reads the same examples from the topic and decides as the first; it keeps
//! deciding so after the first stops.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use petition_gateway::server::RunningGateway;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// Shared bicycles blocking a pavement: no word of the responsibility list names it.
const BIKES: [(&str, &str); 4] = [
    (
        "崖头街道曙光社区门口共享单车乱停乱放，把人行道堵死了",
        "崖头街道曙光社区",
    ),
    (
        "城西街道西苑社区门口共享单车乱停乱放，人行道都堵住了",
        "城西街道西苑社区",
    ),
    (
        "港湾街道海湾村门口共享单车乱停乱放，把人行道堵死了",
        "港湾街道海湾村",
    ),
    (
        "东山街道黄山社区门口共享单车乱停乱放，人行道堵死了",
        "东山街道黄山社区",
    ),
];

fn order(id: &str, (text, place): (&str, &str)) -> Value {
    json!({
        "gdbh": id, "ldsj": "2026-11-20 09:30:00", "ldhm": "13800138000", "ldrxm": "市民",
        "sqlx": "投诉", "jjcd": "一般", "sqnr": text, "sqdz": place,
    })
}

/// The center assigns a case to a department, as its console or a program would.
async fn assign(prefix: &str, case_id: &str, to: &str) {
    use rdkafka::producer::{FutureProducer, FutureRecord};
    use rdkafka::ClientConfig;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .create()
        .unwrap();
    let event = json!({"case_id": case_id, "status": "reassigned", "department": "center",
        "to_department": to, "note": "共享单车归城管", "at": chrono::Utc::now().to_rfc3339()});
    producer
        .send(
            FutureRecord::to(&format!("{prefix}petitions.status"))
                .key(case_id)
                .payload(&event.to_string()),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
}

async fn learned(gw: &RunningGateway, examples: usize) {
    let learner = gw.learner.clone().expect("learning is on");
    let deadline = Instant::now() + Duration::from_secs(60);
    while learner.read().unwrap().len() < examples {
        assert!(
            Instant::now() < deadline,
            "never learned {examples} examples"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The department record of a case on a department or the triage topic.
async fn routed(prefix: &str, case_id: &str) -> Value {
    let topics = [
        format!("{prefix}petitions.triage"),
        format!("{prefix}dept.urban-management"),
    ];
    let records = read_topics_until(
        &topics,
        |records| records.iter().any(|r| r.value["case_id"] == case_id),
        Duration::ZERO,
    )
    .await;
    records
        .into_iter()
        .find(|r| r.value["case_id"] == case_id)
        .map(|r| r.value)
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_centers_assignments_route_the_next_similar_petition() {
    let cfg = write_config("learned", true, None);
    let gw = start(&cfg.file).await;
    wait_ready(&gw, true).await;
    let p = cfg.prefix.clone();

    let mut cases = Vec::new();
    for (i, bikes) in BIKES[..2].iter().enumerate() {
        let answer = post_order(&gw, &order(&format!("LR-{i}"), *bikes)).await;
        let case = answer.body["data"]["receipt"].as_str().unwrap().to_string();
        let record = routed(&p, &case).await;
        assert_eq!(record["routing"]["department"], "triage", "{record}");
        cases.push(case);
    }
    for case in &cases {
        assign(&p, case, "urban-management").await;
    }
    let examples = read_topics(&[format!("{p}routing.examples")], 2, Duration::from_secs(1)).await;
    assert_eq!(examples.len(), 2);
    for (record, case) in examples.iter().zip(&cases) {
        assert_eq!(record.key.as_deref(), Some(case.as_str()));
        assert_eq!(record.value["department"], "urban-management");
        assert_eq!(record.value["source"], "center");
        assert!(record.value["text"].as_str().unwrap().contains("共享单车"));
    }
    learned(&gw, 2).await;

    let answer = post_order(&gw, &order("LR-2", BIKES[2])).await;
    let third = answer.body["data"]["receipt"].as_str().unwrap().to_string();
    let record = routed(&p, &third).await;
    let routing = &record["routing"];
    assert_eq!(routing["department"], "urban-management", "{record}");
    assert_eq!(routing["rule"], "learned", "{record}");
    assert_eq!(routing["learned"]["model_version"], 2, "{record}");
    let nearest: Vec<&str> = routing["learned"]["nearest"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["case_id"].as_str().unwrap())
        .collect();
    assert!(
        nearest.iter().all(|n| cases.iter().any(|c| c == n)),
        "{record}"
    );

    // A second instance learns the same from the topic and decides alike.
    let other = start(&cfg.file).await;
    wait_ready(&other, true).await;
    learned(&other, 2).await;
    let list = petition_gateway::dispatch::reload::fixed(
        petition_gateway::config::load(&cfg.file)
            .unwrap()
            .responsibility,
        "test",
    );
    let list = list.borrow().router.list().clone();
    let probe = |gw: &RunningGateway| {
        gw.learner
            .as_ref()
            .unwrap()
            .read()
            .unwrap()
            .suggest(BIKES[3].0, None, "371082006", &list)
    };
    let before = probe(&gw);
    assert!(before.is_some());
    assert_eq!(probe(&other), before);

    // The first stops; the second, restored from the topics, routes the next one alike.
    gw.shutdown().await;
    let answer = post_order(&other, &order("LR-3", BIKES[3])).await;
    let fourth = answer.body["data"]["receipt"].as_str().unwrap().to_string();
    let record = routed(&p, &fourth).await;
    assert_eq!(
        record["routing"]["department"], "urban-management",
        "{record}"
    );
    assert_eq!(record["routing"]["rule"], "learned", "{record}");

    // An operator lists what was learned, and forgets a wrong example: every instance
    // unlearns it.
    let loaded = petition_gateway::config::load(&cfg.file).unwrap();
    let settings = loaded.settings;
    let handle = petition_gateway::dispatch::reload::fixed(list.clone(), "test");
    let listed = petition_gateway::dispatch::learning::stream::load(
        &settings.kafka,
        &settings.topics,
        settings.routing.learning.settings(),
        &handle,
        None,
    )
    .unwrap();
    assert_eq!(listed.len(), 2);
    let summary = listed.summary();
    assert_eq!(summary.len(), 1, "{summary:?}");
    assert_eq!(summary[0].department, "urban-management");
    assert!(
        summary[0].words.iter().any(|w| w.contains("单车")),
        "{summary:?}"
    );
    petition_gateway::dispatch::learning::stream::forget(
        &settings.kafka,
        &settings.topics,
        &cases[0],
    )
    .unwrap();
    let learner = other.learner.clone().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while learner.read().unwrap().len() != 1 {
        assert!(Instant::now() < deadline, "the example was not forgotten");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(learner
        .read()
        .unwrap()
        .examples()
        .all(|e| e.case_id == cases[1]));
    other.shutdown().await;
}
