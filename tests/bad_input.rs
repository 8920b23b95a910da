//! Every kind of bad input gets an answer in the hotline's envelope naming each problem
//! with its JSON path, and a quarantined raw copy on petitions.invalid; none of it
//! reaches petitions.inbound. Rate limiting answers "try again" without quarantine.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use serde_json::{json, Value};
use std::time::Duration;

fn order() -> Value {
    json!({"gdbh": "RC-BAD-0001", "ldsj": "2026-11-24 09:15:03", "ldhm": "138 0631 2345",
        "ldrxm": "葛女士", "sqlx": "投诉", "jjcd": "一般",
        "sqnr": "曙光社区3号楼2单元楼道灯坏了一个多星期。", "sqdz": "崖头街道曙光社区3号楼"})
}

fn paths(answer: &Answer) -> Vec<String> {
    answer.body["data"]["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("no error list in {}", answer.body))
        .iter()
        .map(|e| e["path"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_answered_with_paths_and_quarantined() {
    let cfg = write_config("bad", false, None);
    let gw = start(&cfg.file).await;
    wait_ready(&gw, true).await;

    // 1. Malformed JSON.
    let a = post_raw(&gw, Some(TOKEN), r#"{"gdbh": "RC-BAD-0002", "ldsj": "#).await;
    assert_eq!((a.status, a.body["code"].clone()), (200, json!(4001)));
    assert_eq!(paths(&a), vec!["/"]);
    assert!(
        a.body["msg"]
            .as_str()
            .unwrap()
            .contains("malformed JSON at line 1"),
        "{}",
        a.body
    );

    // 2. Missing fields: every one is named.
    let mut o = order();
    o.as_object_mut().unwrap().remove("sqnr");
    o.as_object_mut().unwrap().remove("jjcd");
    let a = post_order(&gw, &o).await;
    assert_eq!(a.body["code"], 4001);
    assert_eq!(paths(&a), vec!["/jjcd", "/sqnr"]);
    assert_eq!(
        a.body["data"]["gdbh"], "RC-BAD-0001",
        "the answer echoes the work order"
    );

    // 3. Invalid values, found by the mapper and by the schema.
    let mut o = order();
    o["gdbh"] = json!("RC-BAD-0003");
    o["ldsj"] = json!("24/11/2026 9:15");
    o["sqlx"] = json!("吐槽");
    o["ldhm"] = json!("不告诉你");
    let a = post_order(&gw, &o).await;
    assert_eq!(paths(&a), vec!["/ldsj", "/ldhm", "/sqlx"]);
    let mut o = order();
    o["gdbh"] = json!("RC-BAD-0004");
    o["sqnr"] = json!("   ");
    o["fj"] = json!([""]);
    let a = post_order(&gw, &o).await;
    let mut p = paths(&a);
    p.sort();
    assert_eq!(
        p,
        vec!["/fj/0", "/sqnr"],
        "schema violations point into the payload: {}",
        a.body
    );

    // 4. Wrong token, and no token at all.
    let a = post_raw(
        &gw,
        Some("not-the-token"),
        serde_json::to_vec(&order()).unwrap(),
    )
    .await;
    assert_eq!(a.body["code"], 4010);
    assert_eq!(paths(&a), vec!["header Authorization"]);
    let a = post_raw(&gw, None, serde_json::to_vec(&order()).unwrap()).await;
    assert_eq!(a.body["code"], 4010);

    // 5. A body over the connector's limit (64 KiB).
    let mut o = order();
    o["sqnr"] = json!("很长".repeat(20_000));
    let a = post_order(&gw, &o).await;
    assert_eq!(a.body["code"], 4130);
    assert!(
        a.body["msg"].as_str().unwrap().contains("65536"),
        "{}",
        a.body
    );

    // 6. Control characters: a work order number holding NUL (a second id that prints like
    // the first), and a NUL in the text (no database's text column holds it).
    let mut o = order();
    o["gdbh"] = json!("RC\u{0}X");
    let a = post_order(&gw, &o).await;
    assert_eq!(a.body["code"], 4001, "{}", a.body);
    assert_eq!(paths(&a), vec!["/gdbh"]);
    assert!(
        a.body["msg"]
            .as_str()
            .unwrap()
            .contains("control character (U+0000)"),
        "{}",
        a.body
    );
    let mut o = order();
    o["gdbh"] = json!("RC-BAD-0006");
    o["sqnr"] = json!("楼道灯坏了\u{0}一个多星期");
    let a = post_order(&gw, &o).await;
    assert_eq!(paths(&a), vec!["/sqnr"], "{}", a.body);

    // 7. A key given twice: two readings of one work order.
    let body = r#"{"gdbh": "RC-BAD-0007", "ldsj": "2026-11-24 09:15:03", "ldhm": "13806312345",
        "ldrxm": "葛女士", "sqlx": "投诉", "jjcd": "一般", "sqnr": "楼道灯坏了", "gdbh": "RC-BAD-0008"}"#;
    let a = post_raw(&gw, Some(TOKEN), body).await;
    assert_eq!(a.body["code"], 4001, "{}", a.body);
    assert_eq!(paths(&a), vec!["/gdbh"]);

    // Ten rejections, ten quarantined copies with their reasons.
    let invalid = read_topics(
        &[format!("{}petitions.invalid", cfg.prefix)],
        10,
        Duration::from_secs(2),
    )
    .await;
    assert_eq!(invalid.len(), 10, "{invalid:#?}");
    let classes: Vec<_> = invalid
        .iter()
        .map(|r| r.value["class"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(classes.iter().filter(|c| *c == "invalid").count(), 7);
    assert_eq!(classes.iter().filter(|c| *c == "unauthorized").count(), 2);
    assert_eq!(classes.iter().filter(|c| *c == "too_large").count(), 1);
    for r in &invalid {
        assert_eq!(r.value["channel"], "hotline");
        assert!(!r.value["errors"].as_array().unwrap().is_empty());
        assert_eq!(r.headers["ce_type"], "gov.petition.rejected.v1");
        let text = r.value.to_string();
        assert!(
            !text.contains(TOKEN) && !text.contains("not-the-token"),
            "credentials leaked into quarantine"
        );
    }
    let malformed = invalid
        .iter()
        .find(|r| {
            r.value["body"]
                .as_str()
                .unwrap()
                .starts_with("{\"gdbh\": \"RC-BAD-0002\"")
        })
        .unwrap();
    assert_eq!(malformed.value["errors"][0]["path"], "/");
    let unauthorized = invalid
        .iter()
        .find(|r| r.value["class"] == "unauthorized")
        .unwrap();
    assert!(
        unauthorized.value["body"]
            .as_str()
            .unwrap()
            .contains("RC-BAD-0001"),
        "raw body kept"
    );

    let inbound = read_topics(
        &[format!("{}petitions.inbound", cfg.prefix)],
        0,
        Duration::from_secs(2),
    )
    .await;
    assert!(
        inbound.is_empty(),
        "a rejected request reached petitions.inbound"
    );
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_rate_limit_the_hotline_is_told_to_retry() {
    let definition = std::fs::read_to_string(repo().join("connectors/hotline.toml"))
        .unwrap()
        .replace("rate_limit_per_second = 500", "rate_limit_per_second = 1")
        .replace("rate_limit_burst = 1000", "rate_limit_burst = 2");
    let cfg = write_config("rate", false, Some(&definition));
    let gw = start(&cfg.file).await;
    wait_ready(&gw, true).await;
    let mut codes = Vec::new();
    for i in 0..4 {
        let mut o = order();
        o["gdbh"] = json!(format!("RC-RATE-{i}"));
        let a = post_order(&gw, &o).await;
        if a.body["code"] == 5029 {
            assert_eq!(a.headers.get("retry-after").unwrap(), "1");
        }
        codes.push(a.body["code"].as_i64().unwrap());
    }
    assert_eq!(&codes[..2], &[0, 0], "the burst is accepted");
    assert!(
        codes[2..].contains(&5029),
        "nothing was rate limited: {codes:?}"
    );
    let invalid = read_topics(
        &[format!("{}petitions.invalid", cfg.prefix)],
        0,
        Duration::from_secs(1),
    )
    .await;
    assert!(invalid.is_empty(), "throttled requests are not quarantined");
    gw.shutdown().await;
}
