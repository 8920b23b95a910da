//! The push channels exactly as their simulators speak: city app (HMAC), community grid
//! app (API key), Open311 (form, api_key) — real HTTP both ways, real Kafka.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use serde_json::{json, Value};
use std::time::Duration;

async fn gateway(
    name: &str,
    connectors: &[&'static str],
) -> (TestConfig, petition_gateway::server::RunningGateway) {
    let list: Vec<Connector> = connectors.iter().map(|c| Connector::shipped(c)).collect();
    let cfg = config_with(name, false, tempfile::tempdir().unwrap(), &list);
    let gw = start(&cfg.file).await;
    wait_ready(&gw, true).await;
    (cfg, gw)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_city_app_is_verified_by_its_hmac_signature() {
    let (cfg, gw) = gateway("city", &["city-app"]).await;
    let sim = Sim::start("city-app", Some(gw.addr), &[]);

    let ok = sim.push(json!({"count": 20, "concurrency": 4})).await;
    for r in &ok {
        assert_eq!(r["http_status"], 202, "{r}");
        assert_eq!(r["answer"]["ticketId"], r["source_id"]);
        assert!(r["answer"]["receipt"].is_string());
    }

    let bad = sim
        .push(json!({"count": 1, "corrupt": "bad_signature"}))
        .await;
    assert_eq!(bad[0]["http_status"], 401);
    assert_eq!(bad[0]["answer"]["error"]["code"], "BAD_SIGNATURE");
    assert_eq!(
        bad[0]["answer"]["error"]["details"][0]["path"],
        "header X-Signature"
    );

    let stale = sim
        .push(json!({"count": 1, "corrupt": "stale_timestamp"}))
        .await;
    assert_eq!(stale[0]["http_status"], 401);
    let msg = stale[0]["answer"]["error"]["message"].as_str().unwrap();
    assert!(msg.contains("replay"), "{msg}");

    // The app resending an identical signed request (it lost our answer) inside the window
    // gets the same receipt: acceptance is idempotent, not a second petition.
    let resent = sim.push(json!({"count": 1, "corrupt": "replay"})).await;
    assert_eq!(resent.len(), 2);
    assert_eq!(resent[0]["http_status"], 202);
    assert_eq!(
        resent[0]["answer"]["receipt"],
        resent[1]["answer"]["receipt"]
    );

    let inbound = read_topics(
        &[format!("{}petitions.inbound", cfg.prefix)],
        22,
        Duration::from_secs(2),
    )
    .await;
    let ids = distinct_ids(&inbound, "/id");
    assert_eq!(ids.len(), 21, "20 tickets + 1 resent ticket");
    for r in &inbound {
        let point = &r.value["location"]["point"];
        if !point.is_null() {
            // Stored as WGS-84: about half a kilometre from the app's GCJ-02 numbers.
            assert!(point["lat"].as_f64().unwrap() > 36.0);
        }
        assert!(r.value["reporter"]["phone"]
            .as_str()
            .unwrap_or("")
            .starts_with("+86"));
    }

    let invalid = read_topics(
        &[format!("{}petitions.invalid", cfg.prefix)],
        2,
        Duration::from_secs(2),
    )
    .await;
    assert_eq!(invalid.len(), 2);
    assert!(invalid.iter().all(|r| r.value["class"] == "unauthorized"));

    // Satisfaction feedback: signed the same way, published as an event.
    let ticket = ok[0]["source_id"].as_str().unwrap();
    let fb = sim
        .control(
            "/_sim/feedback",
            json!({"ticketId": ticket, "satisfied": false, "comment": "还是不亮"}),
        )
        .await;
    assert_eq!(fb["http_status"], 202, "{fb}");
    let events = read_topics(
        &[format!("{}petitions.feedback", cfg.prefix)],
        1,
        Duration::from_secs(1),
    )
    .await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].value["event_type"], "satisfaction");
    assert_eq!(events[0].value["petition_id"], ok[0]["answer"]["receipt"]);
    assert_eq!(events[0].value["payload"]["satisfied"], false);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_community_app_needs_its_api_key() {
    let (cfg, gw) = gateway("community", &["community-app"]).await;
    let sim = Sim::start("community-app", Some(gw.addr), &[]);
    let ok = sim.push(json!({"count": 15, "concurrency": 3})).await;
    for r in &ok {
        assert_eq!(r["http_status"], 200, "{r}");
        assert_eq!(r["answer"]["success"], true);
    }
    let bad = sim.push(json!({"count": 1, "corrupt": "bad_auth"})).await;
    assert_eq!(bad[0]["http_status"], 401);
    assert_eq!(bad[0]["answer"]["success"], false);
    assert!(bad[0]["answer"]["errMsg"]
        .as_str()
        .unwrap()
        .contains("X-Api-Key"));

    let inbound = read_topics(
        &[format!("{}petitions.inbound", cfg.prefix)],
        15,
        Duration::from_secs(2),
    )
    .await;
    assert_eq!(distinct_ids(&inbound, "/id").len(), 15);
    for r in &inbound {
        // The grid code names the street outright.
        assert_eq!(r.value["location"]["region"]["resolved_by"], "grid_code");
        let grid = r.value["location"]["grid_code"].as_str().unwrap();
        assert_eq!(r.value["location"]["region"]["code"], &grid[..9]);
    }
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open311_speaks_georeport_v2() {
    let (cfg, gw) = gateway("open311", &["open311"]).await;
    let sim = Sim::start("open311", Some(gw.addr), &[]);
    let ok = sim.push(json!({"count": 10})).await;
    for r in &ok {
        assert_eq!(r["http_status"], 201, "{r}");
        assert!(r["answer"][0]["service_request_id"].is_string(), "{r}");
    }
    // An identical resend (no id of its own in Open311) gets the same request id.
    let again = sim.push(json!({"count": 1, "start": 0})).await;
    assert_eq!(
        again[0]["answer"][0]["service_request_id"],
        ok[0]["answer"][0]["service_request_id"]
    );

    let bad = sim.push(json!({"count": 1, "corrupt": "bad_auth"})).await;
    assert_eq!(bad[0]["http_status"], 403);
    assert_eq!(bad[0]["answer"][0]["code"], 403);
    assert!(bad[0]["answer"][0]["description"]
        .as_str()
        .unwrap()
        .starts_with("/api_key"));

    // Missing fields: the spec's error list, one entry per problem.
    let resp = reqwest::Client::new()
        .post(format!("http://{}/open311/v2/requests.json", gw.addr))
        .form(&[
            ("api_key", "dev-open311-key"),
            ("service_code", "urban.streetlight"),
            ("lat", "north"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    let errors: Value = resp.json().await.unwrap();
    let descriptions: Vec<&str> = errors
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["description"].as_str().unwrap())
        .collect();
    assert!(
        descriptions.iter().any(|d| d.starts_with("/description")),
        "{descriptions:?}"
    );
    assert!(
        descriptions.iter().any(|d| d.contains("lat")),
        "{descriptions:?}"
    );

    // Service discovery lists the responsibility list's categories.
    let services: Value = reqwest::get(format!("http://{}/open311/v2/services.json", gw.addr))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let codes: Vec<&str> = services
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["service_code"].as_str().unwrap())
        .collect();
    assert!(codes.contains(&"urban.streetlight") && codes.contains(&"community.corridor"));

    let inbound = read_topics(
        &[format!("{}petitions.inbound", cfg.prefix)],
        11,
        Duration::from_secs(2),
    )
    .await;
    assert_eq!(distinct_ids(&inbound, "/id").len(), 10);
    let invalid = read_topics(
        &[format!("{}petitions.invalid", cfg.prefix)],
        2,
        Duration::from_secs(2),
    )
    .await;
    assert_eq!(invalid.len(), 2);
    for r in &invalid {
        let body = r.value["body"].as_str().unwrap();
        assert!(
            !body.contains("api_key"),
            "credential stored in quarantine: {body}"
        );
    }
    gw.shutdown().await;
}
