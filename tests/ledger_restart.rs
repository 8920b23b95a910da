//! The ledger in its database across restarts, against the real broker: a restart
//! resumes from the offsets stored with the rows instead of reading history again, and a
//! database that describes other topics starts over on the configured ones. Runs on
//! SQLite, and on PostgreSQL with `PETITION_TEST_LEDGER=postgres` (scripts/test does both).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use serde_json::Value;
use std::collections::HashMap;
use std::time::{Duration, Instant};

const CENTER_KEY: &str = "center-key-restart";

fn with_center_key(cfg: &TestConfig) {
    let text = std::fs::read_to_string(&cfg.file).unwrap();
    std::fs::write(
        &cfg.file,
        text + &format!("[ledger.keys]\ncenter = \"{CENTER_KEY}\"\n"),
    )
    .unwrap();
}

/// Every case the ledger lists: case id → its number of reports.
async fn listed(gw: &petition_gateway::server::RunningGateway) -> HashMap<String, u64> {
    let mut out = HashMap::new();
    for page in 1.. {
        let body: Value = reqwest::Client::new()
            .get(format!("http://{}/cases?per_page=500&page={page}", gw.addr))
            .header("x-api-key", CENTER_KEY)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let cases = body["cases"].as_array().unwrap();
        for c in cases {
            out.insert(
                c["case_id"].as_str().unwrap().to_string(),
                c["reports"].as_u64().unwrap(),
            );
        }
        if cases.len() < 500 {
            break;
        }
    }
    out
}

/// Waits until the ledger lists exactly `expected`.
async fn wait_listed(
    gw: &petition_gateway::server::RunningGateway,
    expected: &HashMap<String, u64>,
) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let now = listed(gw).await;
        if &now == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the ledger lists {} cases ({} reports), the case log has {} ({})",
            now.len(),
            now.values().sum::<u64>(),
            expected.len(),
            expected.values().sum::<u64>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Case id → reports, from the case log (cases whose case record is in it).
fn expected(log: &CaseLog) -> HashMap<String, u64> {
    let mut out: HashMap<String, u64> = log.cases.keys().map(|c| (c.clone(), 0)).collect();
    for r in log.reports.values() {
        if let Some(n) = out.get_mut(r["case_id"].as_str().unwrap()) {
            *n += 1;
        }
    }
    out
}

async fn post_all(gw: &petition_gateway::server::RunningGateway, orders: &[Value]) {
    for chunk in orders.chunks(16) {
        let answers =
            futures_util::future::join_all(chunk.iter().map(|o| post_order(gw, &o["payload"])))
                .await;
        for a in answers {
            assert_eq!(
                (a.status, &a.body["code"]),
                (200, &Value::from(0)),
                "{}",
                a.body
            );
        }
    }
}

async fn sql(url: &str, statement: &str, id: &str) {
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(url).await.unwrap();
    sqlx::query(statement)
        .bind(id)
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_resumes_where_the_ledger_stopped_and_other_topics_start_over() {
    let cfg = write_config("ledger-restart", true, None);
    with_center_key(&cfg);
    let database = petition_gateway::config::load(&cfg.file)
        .unwrap()
        .settings
        .ledger
        .database;
    let orders = hotline_sample();
    let (first, second) = orders.split_at(orders.len() / 2);

    let gw = start(&cfg.file).await;
    wait_ready(&gw, true).await;
    post_all(&gw, first).await;
    let log = read_case_log(&cfg.prefix, first.len(), Duration::from_secs(1)).await;
    wait_listed(&gw, &expected(&log)).await;
    gw.shutdown().await;

    // Taken out behind the gateway's back: a ledger that read the topics again from the
    // start would bring it back; one that resumes from its offsets does not.
    let victim = log
        .cases
        .keys()
        .min()
        .expect("the first half opened cases")
        .clone();
    sql(&database, "DELETE FROM cases WHERE case_id = $1", &victim).await;

    let gw = start(&cfg.file).await;
    wait_ready(&gw, true).await;
    post_all(&gw, second).await;
    let log = read_case_log(&cfg.prefix, orders.len(), Duration::from_secs(1)).await;
    let mut after = expected(&log);
    after.remove(&victim);
    wait_listed(&gw, &after).await;
    let (status, _) = {
        let r = reqwest::Client::new()
            .get(format!("http://{}/cases/{victim}", gw.addr))
            .header("x-api-key", CENTER_KEY)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), ())
    };
    assert_eq!(
        status, 404,
        "the ledger read history again after the restart"
    );
    gw.shutdown().await;

    // The same database under another topic prefix (a new deployment, a fresh demo):
    // the other topics' cases are forgotten, these are read from the start.
    let other = write_config("ledger-other", true, None);
    with_center_key(&other);
    let text = std::fs::read_to_string(&other.file).unwrap();
    let text = text
        .lines()
        .map(|l| {
            if l.starts_with("database = ") {
                format!("database = \"{database}\"")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&other.file, text + "\n").unwrap();
    let gw = start(&other.file).await;
    wait_ready(&gw, true).await;
    post_all(&gw, &orders[..3]).await;
    let log = read_case_log(&other.prefix, 3, Duration::from_secs(1)).await;
    wait_listed(&gw, &expected(&log)).await;
    gw.shutdown().await;
}
