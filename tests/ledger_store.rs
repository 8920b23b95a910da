//! The ledger's database on both backends: embedded SQLite and the PostgreSQL server of
//! `scripts/postgres`. Records in any order make one case; applying a batch again changes
//! nothing; the offsets stored with the rows survive a reopen; the filters of
//! `GET /cases` select what they say; a department sees only its own cases over HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use petition_gateway::ledger::record::LedgerRecord;
use petition_gateway::ledger::store::CaseFilter;
use petition_gateway::ledger::Ledger;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// Each backend's URL for a new, empty database.
fn databases(dir: &tempfile::TempDir) -> Vec<String> {
    vec![
        format!("sqlite://{}", dir.path().join("ledger.sqlite").display()),
        common::postgres_database(),
    ]
}

fn records(values: &[(i32, Value)]) -> Vec<LedgerRecord> {
    values
        .iter()
        .map(|(partition, v)| {
            let topic = if v.get("callback_id").is_some() {
                "callbacks.delivery"
            } else {
                "petitions.cases"
            };
            LedgerRecord::parse("petitions.cases", topic, *partition, v).expect("kept")
        })
        .collect()
}

fn case(id: &str, department: &str, at: &str, region: &str, category: &str, place: &str) -> Value {
    json!({"type": "case", "case_id": id, "department": department, "escalated": false,
        "dispatched_at": at, "region": region, "routing": {"category": category},
        "seed": {"address": place}})
}

fn report(case_id: &str, petition_id: &str, channel: &str) -> Value {
    json!({"type": "report", "case_id": case_id, "petition_id": petition_id,
        "channel": channel, "reported_at": "2026-11-24T09:00:00+08:00"})
}

#[tokio::test]
async fn records_in_any_order_make_one_case_and_applying_them_again_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    for url in databases(&dir) {
        let ledger = Ledger::open(&url).await.unwrap();
        let store = ledger.store();
        // The delivery topic is read independently: a callback may come before its case.
        let batch = records(&[
            (
                0,
                json!({"case_id": "k1", "callback_id": "cb1", "state": "delivered"}),
            ),
            (2, report("k1", "p2", "hotline")),
            (
                2,
                json!({"type": "lifecycle", "case_id": "k1", "phase": "accepted",
                "department": "housing", "overdue": true, "deadline": 1_796_000_000,
                "history": [{"status": "accepted"}]}),
            ),
            (
                2,
                case(
                    "k1",
                    "water",
                    "2026-11-24T10:00:00+08:00",
                    "r1",
                    "C1",
                    "解放路12号",
                ),
            ),
            (2, report("k1", "k1", "city-app")),
            (
                2,
                json!({"type": "petition", "case_id": "k1", "petition": {"id": "k1"}}),
            ),
        ]);
        store.apply(&batch, &[]).await.unwrap();
        store.apply(&batch, &[]).await.unwrap();
        let c = store.case("k1").await.unwrap().expect("the case");
        assert_eq!(c.partition, 2, "{url}");
        assert_eq!(c.reports.len(), 2, "{url}");
        assert_eq!(c.callbacks.len(), 1, "{url}");
        assert_eq!(c.petition, Some(json!({"id": "k1"})), "{url}");
        // The lifecycle read before the case record still says who works on it now.
        assert_eq!(
            (c.department(), c.phase(), c.overdue()),
            ("housing", "accepted", true),
            "{url}"
        );
        // A lifecycle written before history records carried its history inside.
        assert_eq!(c.history, [json!({"status": "accepted"})], "{url}");
        assert_eq!(store.case_of("p2").await.unwrap().as_deref(), Some("k1"));
        // The dispatcher's receiver asks for many at once; unknown ids are left out.
        let mut found = store.cases_of(&["p2", "k1", "nobody"]).await.unwrap();
        found.sort();
        assert_eq!(
            found,
            [("k1".into(), "k1".into()), ("p2".into(), "k1".into())],
            "{url}"
        );
        let many: Vec<String> = (0..1200).map(|i| format!("x{i}")).collect();
        let mut asked: Vec<&str> = many.iter().map(String::as_str).collect();
        asked.push("p2");
        assert_eq!(store.cases_of(&asked).await.unwrap().len(), 1, "{url}");
        let (page, total) = store.list(&CaseFilter::default(), 1, 10).await.unwrap();
        assert_eq!(total, 1, "{url}");
        let s = &page[0];
        assert_eq!(
            (
                s.department.as_str(),
                s.phase.as_str(),
                s.overdue,
                s.reports
            ),
            ("housing", "accepted", true, 2),
            "{url}"
        );
        assert_eq!(s.deadline, Some(1_796_000_000));
        let route = store.route("k1").await.unwrap().expect("a route");
        assert!(route.known && route.partition == 2, "{url}");
        // A case that only a report mentions is not one yet.
        store
            .apply(&records(&[(1, report("k9", "p9", "hotline"))]), &[])
            .await
            .unwrap();
        assert!(!store.route("k9").await.unwrap().expect("a row").known);
        assert_eq!(
            store.list(&CaseFilter::default(), 1, 10).await.unwrap().1,
            1,
            "{url}"
        );
        store.close().await;
    }
}

#[tokio::test]
async fn history_records_make_the_case_history_in_order_once_whatever_order_they_come_in() {
    let dir = tempfile::tempdir().unwrap();
    let entry = |status: &str| json!({"status": status, "at": 1, "by": "gateway"});
    for url in databases(&dir) {
        let ledger = Ledger::open(&url).await.unwrap();
        let store = ledger.store();
        let later = records(&[(
            0,
            json!({"type": "history", "case_id": "h1", "from": 3,
                "entries": [entry("accepted"), entry("resolved")]}),
        )]);
        let first = records(&[
            (
                0,
                case(
                    "h1",
                    "water",
                    "2026-11-24T10:00:00+08:00",
                    "r1",
                    "C1",
                    "解放路1号",
                ),
            ),
            (
                0,
                json!({"type": "history", "case_id": "h1", "from": 0,
                    "entries": [entry("received"), entry("accepted"), entry("dispatched")]}),
            ),
            (
                0,
                json!({"type": "lifecycle", "case_id": "h1", "phase": "resolved",
                    "department": "water", "history_len": 5, "sources": []}),
            ),
        ]);
        store.apply(&later, &[]).await.unwrap();
        store.apply(&first, &[]).await.unwrap();
        store.apply(&later, &[]).await.unwrap();
        store.apply(&first, &[]).await.unwrap();
        let c = store.case("h1").await.unwrap().expect("the case");
        let statuses: Vec<&str> = c
            .history
            .iter()
            .map(|h| h["status"].as_str().unwrap())
            .collect();
        assert_eq!(
            statuses,
            ["received", "accepted", "dispatched", "accepted", "resolved"],
            "{url}"
        );
        // Another case's history is not this one's.
        store
            .apply(
                &records(&[(
                    0,
                    json!({"type": "history", "case_id": "h2", "from": 0,
                        "entries": [entry("received")]}),
                )]),
                &[],
            )
            .await
            .unwrap();
        assert_eq!(store.case("h1").await.unwrap().unwrap().history.len(), 5);
        store.close().await;
    }
}

#[tokio::test]
async fn offsets_stored_with_the_rows_survive_a_reopen_and_a_reset_forgets_both() {
    let dir = tempfile::tempdir().unwrap();
    for url in databases(&dir) {
        let ledger = Ledger::open(&url).await.unwrap();
        let positions = vec![
            (("t.petitions.cases".to_string(), 0), 41),
            (("t.petitions.cases".to_string(), 1), 7),
        ];
        ledger
            .store()
            .apply(
                &records(&[(
                    0,
                    case("k1", "water", "2026-11-24T10:00:00+08:00", "r", "C", "x"),
                )]),
                &positions,
            )
            .await
            .unwrap();
        ledger
            .store()
            .apply(&[], &[(("t.petitions.cases".to_string(), 0), 43)])
            .await
            .unwrap();
        ledger.store().close().await;
        drop(ledger);

        let reopened = Ledger::open(&url).await.unwrap();
        let (_, offsets) = reopened.store().offsets().await.unwrap();
        assert_eq!(offsets.len(), 2, "{url}");
        assert_eq!(offsets[&("t.petitions.cases".to_string(), 0)], 43, "{url}");
        assert_eq!(offsets[&("t.petitions.cases".to_string(), 1)], 7, "{url}");
        assert!(reopened.store().case("k1").await.unwrap().is_some());

        reopened.store().reset("cluster-b", "a,b").await.unwrap();
        let (source, offsets) = reopened.store().offsets().await.unwrap();
        assert_eq!(source.as_deref(), Some("cluster-b a,b"), "{url}");
        assert!(offsets.is_empty(), "{url}");
        assert!(
            reopened.store().case("k1").await.unwrap().is_none(),
            "{url}"
        );
        reopened.store().close().await;
    }
}

#[tokio::test]
async fn each_filter_selects_what_it_says_and_pages_are_stable() {
    let dir = tempfile::tempdir().unwrap();
    for url in databases(&dir) {
        let ledger = Ledger::open(&url).await.unwrap();
        let mut values = Vec::new();
        for i in 0..30 {
            let id = format!("c{i:02}");
            let department = ["water", "housing", "transport"][i % 3];
            let at = format!("2026-11-{:02}T10:00:00+08:00", 1 + i % 28);
            let region = if i % 2 == 0 { "east" } else { "west" };
            let place = if i % 5 == 0 {
                "解放路12号"
            } else {
                "人民路3号"
            };
            values.push((
                i as i32 % 3,
                case(&id, department, &at, region, "C1", place),
            ));
            values.push((i as i32 % 3, report(&id, &id, "hotline")));
            if i % 4 == 0 {
                values.push((
                    i as i32 % 3,
                    json!({"type": "lifecycle", "case_id": id,
                    "phase": "in_progress", "department": department, "overdue": i % 8 == 0}),
                ));
            }
        }
        ledger.store().apply(&records(&values), &[]).await.unwrap();
        let count = |filter: CaseFilter| {
            let store = ledger.store();
            async move { store.list(&filter, 1, 500).await.unwrap().1 }
        };
        let f = CaseFilter::default;
        assert_eq!(count(f()).await, 30, "{url}");
        let department = |d: &str| CaseFilter {
            department: Some(d.into()),
            ..f()
        };
        assert_eq!(count(department("water")).await, 10, "{url}");
        assert_eq!(
            count(CaseFilter {
                phase: Some("in_progress".into()),
                ..f()
            })
            .await,
            8
        );
        assert_eq!(
            count(CaseFilter {
                overdue: Some(true),
                ..f()
            })
            .await,
            4
        );
        assert_eq!(
            count(CaseFilter {
                region: Some("east".into()),
                ..f()
            })
            .await,
            15
        );
        assert_eq!(
            count(CaseFilter {
                place: Some("解放路".into()),
                ..f()
            })
            .await,
            6,
            "{url}"
        );
        let nov = |d: u32| {
            chrono::DateTime::parse_from_rfc3339(&format!("2026-11-{d:02}T00:00:00+08:00"))
                .unwrap()
                .timestamp()
        };
        assert_eq!(
            count(CaseFilter {
                since: Some(nov(10)),
                until: Some(nov(20)),
                ..f()
            })
            .await,
            10,
            "{url}"
        );
        // Paging: oldest first, no case twice, none left out.
        let mut seen = Vec::new();
        for page in 1..=4 {
            let (cases, total) = ledger.store().list(&f(), page, 8).await.unwrap();
            assert_eq!(total, 30);
            seen.extend(cases.into_iter().map(|c| (c.opened_at, c.case_id)));
        }
        let mut sorted = seen.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(seen.len(), 30, "{url}");
        assert_eq!(sorted.len(), 30, "{url}");
        assert_eq!(seen, sorted, "pages come oldest first: {url}");
        // A place prefix pages in the same order (its index ends in the paging order).
        let at_place = || CaseFilter {
            place: Some("人民".into()),
            ..f()
        };
        let mut seen = Vec::new();
        for page in 1..=5 {
            let (cases, total) = ledger.store().list(&at_place(), page, 5).await.unwrap();
            assert_eq!(total, 24, "{url}");
            seen.extend(cases.into_iter().map(|c| (c.opened_at, c.case_id)));
        }
        let mut sorted = seen.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(seen.len(), 24, "{url}");
        assert_eq!(seen, sorted, "a place's pages come oldest first: {url}");
        ledger.store().close().await;
    }
}

/// `GET /cases` and `GET /cases/{id}` served in-process on a real listener.
async fn serve(ledger: Ledger) -> String {
    let keys: BTreeMap<String, String> = [
        ("center", "center-key-1"),
        ("water", "water-key-12"),
        ("housing", "housing-key-1"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    let app = petition_gateway::ledger::api::routes(ledger, keys);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

async fn get(url: &str, key: &str) -> (u16, Value) {
    let r = reqwest::Client::new()
        .get(url)
        .header("x-api-key", key)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_department_sees_its_own_cases_only_over_http() {
    let dir = tempfile::tempdir().unwrap();
    for url in databases(&dir) {
        let ledger = Ledger::open(&url).await.unwrap();
        ledger
            .store()
            .apply(
                &records(&[
                    (
                        0,
                        case("w1", "water", "2026-11-24T10:00:00+08:00", "r", "C", "x"),
                    ),
                    (0, report("w1", "w1", "hotline")),
                    (
                        1,
                        case("h1", "housing", "2026-11-24T11:00:00+08:00", "r", "C", "y"),
                    ),
                    (1, report("h1", "h1", "hotline")),
                    // Sent on to housing by the center: no longer water's.
                    (
                        2,
                        case("m1", "water", "2026-11-24T12:00:00+08:00", "r", "C", "z"),
                    ),
                    (
                        2,
                        json!({"type": "lifecycle", "case_id": "m1", "phase": "dispatched",
                        "department": "housing", "history": []}),
                    ),
                ]),
                &[],
            )
            .await
            .unwrap();
        let base = serve(ledger.clone()).await;
        let ids = |body: &Value| -> Vec<String> {
            body["cases"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["case_id"].as_str().unwrap().to_string())
                .collect()
        };
        let (status, all) = get(&format!("{base}/cases"), "center-key-1").await;
        assert_eq!(
            (status, ids(&all)),
            (200, vec!["w1".into(), "h1".into(), "m1".into()])
        );
        let (_, water) = get(&format!("{base}/cases"), "water-key-12").await;
        assert_eq!(ids(&water), vec!["w1".to_string()], "{url}");
        assert_eq!(water["total"], 1);
        let (_, housing) = get(&format!("{base}/cases"), "housing-key-1").await;
        assert_eq!(ids(&housing), vec!["h1".to_string(), "m1".into()], "{url}");
        // Asking for another department's cases finds none rather than theirs.
        let (_, asked) = get(&format!("{base}/cases?department=housing"), "water-key-12").await;
        assert_eq!(asked["total"], 0, "{url}");
        assert_eq!(
            get(&format!("{base}/cases/w1"), "water-key-12").await.0,
            200
        );
        assert_eq!(
            get(&format!("{base}/cases/m1"), "water-key-12").await.0,
            404
        );
        assert_eq!(
            get(&format!("{base}/cases/h1"), "water-key-12").await.0,
            404
        );
        assert_eq!(get(&format!("{base}/cases/h1"), "nobody-key").await.0, 401);
        let (status, bad) = get(&format!("{base}/cases?since=yesterday"), "center-key-1").await;
        assert_eq!(status, 400);
        assert!(bad["error"].as_str().unwrap().contains("since"), "{bad}");
        let (status, unknown) = get(&format!("{base}/cases?colour=red"), "center-key-1").await;
        assert_eq!(status, 400, "{unknown}");
        ledger.store().close().await;
    }
}

#[tokio::test]
async fn a_list_counts_up_to_the_cap_and_says_so() {
    use petition_gateway::ledger::store::COUNT_CAP;
    let dir = tempfile::tempdir().unwrap();
    for url in databases(&dir) {
        let ledger = Ledger::open(&url).await.unwrap();
        let cases: Vec<(i32, Value)> = (0..COUNT_CAP + 3)
            .map(|i| {
                (
                    0,
                    case(
                        &format!("c{i:06}"),
                        "water",
                        "2026-11-24T10:00:00+08:00",
                        "r",
                        "C",
                        "x",
                    ),
                )
            })
            .collect();
        ledger.store().apply(&records(&cases), &[]).await.unwrap();
        let base = serve(ledger.clone()).await;
        let (status, body) = get(&format!("{base}/cases?per_page=2"), "center-key-1").await;
        assert_eq!(status, 200);
        assert_eq!(body["total"], COUNT_CAP, "{url}");
        assert_eq!(body["total_capped"], true, "{url}");
        let (_, few) = get(&format!("{base}/cases?department=housing"), "center-key-1").await;
        assert_eq!(
            (few["total"].clone(), few["total_capped"].clone()),
            (json!(0), json!(false))
        );
        ledger.store().close().await;
    }
}
