//! The hotline end to end against the real broker: real work orders from the sample over
//! HTTP, read back from the department topics with a real consumer.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sample_work_orders_reach_their_department_topics() {
    let cfg = write_config("sample", true, None);
    let gw = start(&cfg.file).await;
    wait_ready(&gw, true).await;

    let orders = hotline_sample();
    let mut receipts: HashMap<String, Value> = HashMap::new();
    for chunk in orders.chunks(16) {
        let answers =
            futures_util::future::join_all(chunk.iter().map(|o| post_order(&gw, &o["payload"])))
                .await;
        for (order, answer) in chunk.iter().zip(answers) {
            assert_eq!(answer.status, 200);
            assert_eq!(
                answer.body["code"], 0,
                "{} → {}",
                order["payload"]["gdbh"], answer.body
            );
            let receipt = answer.body["data"]["receipt"].as_str().unwrap().to_string();
            assert!(
                receipts.insert(receipt, order.clone()).is_none(),
                "two orders, one receipt"
            );
        }
    }
    assert_eq!(receipts.len(), orders.len());

    // Intake: every petition on petitions.inbound once, keyed by its region, as a
    // CloudEvent with a traceparent carrying the petition's trace id.
    let inbound = read_topics(
        &[format!("{}petitions.inbound", cfg.prefix)],
        orders.len(),
        Duration::from_secs(2),
    )
    .await;
    assert_eq!(inbound.len(), orders.len());
    for r in &inbound {
        let id = r.value["id"].as_str().unwrap();
        assert!(receipts.contains_key(id));
        assert_eq!(
            r.key.as_deref(),
            r.value["location"]["region"]["code"].as_str()
        );
        assert_eq!(r.headers["ce_specversion"], "1.0");
        assert_eq!(r.headers["ce_id"], id);
        assert_eq!(r.headers["ce_type"], "gov.petition.received.v1");
        assert_eq!(r.headers["ce_source"], "/petition-gateway/intake/hotline");
        let trace = r.value["trace_id"].as_str().unwrap();
        assert!(r.headers["traceparent"].starts_with(&format!("00-{trace}-")));
    }

    // Dispatch: every petition in exactly one case, every case on exactly one
    // department or triage topic once.
    let log = read_case_log(&cfg.prefix, orders.len(), Duration::from_secs(2)).await;
    assert_eq!(
        log.reports.len(),
        orders.len(),
        "some petitions are in no case"
    );
    let out = read_topics(
        &output_topics(&cfg.prefix),
        log.department_records(),
        Duration::from_secs(3),
    )
    .await;
    assert_each_case_dispatched_once(&cfg.prefix, &out, &log);
    for r in out.iter().filter(|r| r.value["type"] == "case") {
        assert!(r.value["routing"]["rule"].is_string());
        assert_eq!(r.headers["ce_type"], "gov.petition.dispatched.v1");
    }
    // Routing quality per report, as replay measures it.
    let (mut right, mut wrong) = (0usize, 0usize);
    for (id, report) in &log.reports {
        let routed = report["department"].as_str().unwrap();
        let labeled = receipts[id]["label"]["department"].as_str().unwrap();
        if routed == labeled {
            right += 1;
        } else if routed != "triage" {
            wrong += 1;
        }
    }
    let share = right as f64 / orders.len() as f64;
    let wrong_share = wrong as f64 / orders.len() as f64;
    eprintln!("hotline routing: {right}/{} to the labeled department ({share:.4}), {wrong} wrong ({wrong_share:.4})", orders.len());
    // Quality floors for this first router (measured 0.908 / 0.010); the dedupe issue raises them.
    assert!(share >= 0.88, "routing share fell to {share}");
    assert!(
        wrong_share <= 0.02,
        "wrongly routed share rose to {wrong_share}"
    );
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resend_is_one_petition_and_a_repeat_report_joins_its_case() {
    let cfg = write_config("resend", true, None);
    let gw = start(&cfg.file).await;
    wait_ready(&gw, true).await;
    let order = hotline_sample()[3]["payload"].clone();
    let first = post_order(&gw, &order).await;
    let second = post_order(&gw, &order).await;
    assert_eq!(first.body["code"], 0);
    assert_eq!(second.body["code"], 0);
    assert_eq!(
        first.body["data"]["receipt"],
        second.body["data"]["receipt"]
    );
    let other = {
        let mut o = order.clone();
        o["gdbh"] = json!("RC-RESEND-OTHER");
        post_order(&gw, &o).await
    };
    assert_ne!(other.body["data"]["receipt"], first.body["data"]["receipt"]);

    // The resend is the same petition; the other order, worded the same, is another
    // report of the same incident and joins its case.
    let log = read_case_log(&cfg.prefix, 2, Duration::from_secs(3)).await;
    let first_id = first.body["data"]["receipt"].as_str().unwrap();
    let other_id = other.body["data"]["receipt"].as_str().unwrap();
    assert_eq!(log.reports.len(), 2, "{:?}", log.reports.keys());
    assert_eq!(log.cases.len(), 1);
    assert_eq!(log.reports[other_id]["case_id"], first_id);
    assert!(log.reports[other_id]["merge"]["score"].as_f64().unwrap() > 0.9);
    // The department gets the case, then the report that joined it (关联工单).
    let out = read_topics(&output_topics(&cfg.prefix), 2, Duration::from_secs(3)).await;
    assert_each_case_dispatched_once(&cfg.prefix, &out, &log);
    assert_eq!(out[0].value["type"], "case");
    assert_eq!(out[0].value["petition"]["id"], first_id);
    assert_eq!(out[1].value["type"], "report");
    assert_eq!(out[1].value["petition"]["id"], other_id);
    assert_eq!(
        out[1].value["department"],
        out[0].value["routing"]["department"]
    );
    assert_eq!(out[1].topic, out[0].topic);
    gw.shutdown().await;
}
