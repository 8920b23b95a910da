//! An integrator adds a channel by writing a connector file: no Rust. The file below is
//! a made-up WeChat mini-program with its own envelope, header key and field names.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use serde_json::json;
use std::time::Duration;

const WECHAT: &str = r#"
[connector]
name = "wechat"
description = "WeChat mini-program 随手拍"

[intake]
mode = "push"
route = "/intake/wechat"
format = "json"
auth = { scheme = "header", header = "X-Wx-Key", secret = "key" }

[intake.answer.success]
status = 200
body = { errcode = 0, errmsg = "ok", data = { id = "{{receipt}}" } }

[intake.answer.error]
body = { errcode = "{{code}}", errmsg = "{{detail}}" }

[intake.answer.error.classes]
invalid = { status = 200, code = 40001, message = "invalid" }
unauthorized = { status = 200, code = 40101, message = "unauthorized" }
too_large = { status = 200, code = 41301, message = "too large" }
rate_limited = { status = 200, code = 42901, message = "slow down" }
unavailable = { status = 200, code = 50301, message = "retry" }

[[mapping]]
target = "source_id"
from = "/msg/id"
required = true

[[mapping]]
target = "reported_at"
from = "/msg/ts"
transforms = [{ fn = "unix_seconds" }]

[[mapping]]
target = "kind"
value = "report"

[[mapping]]
target = "urgency"
from = "/msg/level"
transforms = [{ fn = "value_map", map = { "1" = "normal", "2" = "urgent" }, fallback = "normal" }]

[[mapping]]
target = "text"
from = "/msg/text"
required = true
transforms = [{ fn = "trim" }]

[[mapping]]
target = "reporter.phone"
from = "/user/tel"
transforms = [{ fn = "phone_e164" }]

[[mapping]]
target = "location.point"
from = "/geo"
transforms = [{ fn = "coordinates", lat = "la", lon = "lo", datum = "gcj02" }]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seventh_channel_from_a_connector_file_alone() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("wechat.toml");
    std::fs::write(&file, WECHAT).unwrap();
    let connector = Connector {
        name: "wechat",
        definition: file.clone(),
        settings: vec![("key", "wx-secret".to_string())],
    };
    let cfg = config_with("wechat", true, dir, &[connector]);
    let gw = start(&cfg.file).await;
    wait_ready(&gw, true).await;

    let client = reqwest::Client::new();
    let body = json!({"msg": {"id": "WX-1", "ts": 1764036000, "level": 2,
        "text": "崖头街道曙光社区3号楼楼道堆放杂物，影响通行"},
        "user": {"tel": "138-0631-2345"}, "geo": {"la": 37.1670, "lo": 122.4258}});
    let answer: serde_json::Value = client
        .post(format!("http://{}/intake/wechat", gw.addr))
        .header("X-Wx-Key", "wx-secret")
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["errcode"], 0, "{answer}");
    let receipt = answer["data"]["id"].clone();

    let wrong: serde_json::Value = client
        .post(format!("http://{}/intake/wechat", gw.addr))
        .header("X-Wx-Key", "nope")
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(wrong["errcode"], 40101);

    let inbound = read_topics(
        &[format!("{}petitions.inbound", cfg.prefix)],
        1,
        Duration::from_secs(1),
    )
    .await;
    assert_eq!(inbound.len(), 1);
    let p = &inbound[0].value;
    assert_eq!(p["id"], receipt);
    assert_eq!(p["channel"], "wechat");
    assert_eq!(p["urgency"], "urgent");
    assert_eq!(p["reporter"]["phone"], "+8613806312345");
    assert_eq!(p["reported_at"], "2025-11-25T10:00:00+08:00");
    assert_eq!(p["location"]["region"]["code"], "371082001");

    let out = read_topics(&output_topics(&cfg.prefix), 1, Duration::from_secs(1)).await;
    assert_eq!(out.len(), 1);
    assert_eq!(
        out[0].topic,
        format!("{}dept.street-001", cfg.prefix),
        "routed like any other channel"
    );

    // `connector test` shows the same petition without Kafka.
    let sample = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(sample.path(), body.to_string()).unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_petition-gateway"))
        .current_dir(repo())
        .args(["connector", "test"])
        .arg(&file)
        .arg(sample.path())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let shown: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(shown["petition"]["id"], receipt);
    assert_eq!(shown["routing"]["department"], "street-001");
    gw.shutdown().await;
}
