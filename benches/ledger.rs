//! The ledger's database at a year's scale: how fast it stores records, how fast its
//! queries answer over HTTP, how long a restart takes, and the process's memory while
//! history grows (needs no Kafka).
//!
//! `cargo bench --bench ledger -- [--database URL] [--cases N] [--queries Q] [--filled]`
//! (default: an SQLite file in a temp folder, 100,000 cases, 200 queries per kind).
//! `--filled` skips the fill and measures the database at `--database` as it is (one an
//! earlier run filled with the same `--cases`: PostgreSQL's are kept, named in the output),
//! after any new migration: a change to the queries or indexes measured on the same data.
//! A year of the city is about 11 million reports; at 4.5 reports per case (close to the
//! hotline sample's 4.8): `--cases 2450000`. For PostgreSQL:
//! `--database "$(scripts/postgres url)"` (the bench creates a database of its own).
//!
//! 1. **fill**: synthetic cases written as the reader writes them (`LedgerStore::apply`,
//!    2,000 records per transaction with their offsets): a case record, its reports, its
//!    first petition, two moves' history records (five entries) and a lifecycle, spread
//!    over 365 days, 12 departments, 40 streets;
//!    records/s and the process's resident memory every 10% of the way;
//! 2. **restart**: opening the filled database again (migrations checked, offsets read)
//!    is everything a restart does before resuming;
//! 3. **queries**: `GET /cases` with each filter and `GET /cases/{id}` of random cases,
//!    one after another over HTTP on 127.0.0.1 (the ledger's own router): p50/p99.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use petition_gateway::ledger::record::LedgerRecord;
use petition_gateway::ledger::Ledger;
use serde_json::json;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const DEPARTMENTS: [&str; 12] = [
    "urban-management",
    "water",
    "housing",
    "transport",
    "environment",
    "market-regulation",
    "public-security",
    "education",
    "health",
    "human-resources",
    "civil-affairs",
    "street-office-001",
];
const PHASES: [&str; 6] = [
    "closed",
    "closed",
    "closed",
    "resolved",
    "in_progress",
    "accepted",
];
const YEAR_START: i64 = 1_767_196_800; // 2026-01-01T00:00:00+08:00
const TEXT: &str =
    "成山大道与海湾路路口东侧两盏路灯不亮，夜里很黑，行人过马路看不清，希望尽快修复。";

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// A cheap deterministic generator (no dependency, the same data on every backend).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn rfc3339(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0)
        .unwrap()
        .with_timezone(&chrono::FixedOffset::east_opt(8 * 3600).unwrap())
        .to_rfc3339()
}

/// One case's records, as the dispatcher writes them (sizes close to the real ones).
fn case_records(i: u64, of: u64, rng: &mut Lcg) -> Vec<LedgerRecord> {
    let case_id = format!("case-{i:08}");
    // Spread over the year, oldest first, however many cases the run writes.
    let opened = YEAR_START + (i as i64 * 31_536_000) / of.max(1) as i64;
    let department = DEPARTMENTS[rng.below(12) as usize];
    let street = rng.below(40);
    let region = format!("3710020{street:02}");
    let place = format!("环翠区第{street}街道{}号", rng.below(1000));
    let category = format!("C{:02}", rng.below(30));
    let partition = (i % 3) as i32;
    let reports = 1 + rng.below(8); // 4.5 on average, close to the sample's 4.8
    let mut out = Vec::new();
    let case = json!({"type": "case", "case_id": case_id, "seq": i, "region": region,
        "department": department, "routing": {"department": department, "topic": format!("dept.{department}"),
        "rule": "keyword", "score": 3, "matched": ["路灯"], "candidates": [], "category": category,
        "category_inferred": false, "escalate": false, "escalation_reasons": []},
        "escalated": false, "list_version": "2026-11", "dispatcher": "bench",
        "dispatched_at": rfc3339(opened), "sla_hours": 72,
        "seed": {"case_id": case_id, "region": region, "department": department,
            "opened_at": opened, "text": TEXT, "address": place, "problem": ["路灯"]}});
    let cases = "petitions.cases";
    out.push(LedgerRecord::parse(cases, cases, partition, &case).unwrap());
    for r in 0..reports {
        let petition_id = if r == 0 {
            case_id.clone()
        } else {
            format!("{case_id}-{r}")
        };
        let channel = ["hotline", "city-app", "open311"][r as usize % 3];
        let report = json!({"type": "report", "petition_id": petition_id, "case_id": case_id,
            "seq": i, "region": region, "channel": channel,
            "source_id": format!("RX{i}{r}"), "reported_at": rfc3339(opened + r as i64 * 600),
            "received_at": rfc3339(opened + r as i64 * 600 + 5), "department": department,
            "escalated": false, "at_unix": opened, "text": TEXT, "address": place, "problem": ["路灯"]});
        out.push(LedgerRecord::parse(cases, cases, partition, &report).unwrap());
    }
    let petition = json!({"type": "petition", "case_id": case_id, "petition": {"id": case_id,
        "channel": "hotline", "source_id": format!("RX{i}"), "text": TEXT,
        "reporter": {"name": "张先生", "phone": "138****1234"}, "location": {"address": place}}});
    out.push(LedgerRecord::parse(cases, cases, partition, &petition).unwrap());
    let phase = PHASES[rng.below(6) as usize];
    let history = json!({"type": "history", "case_id": case_id, "from": 0, "entries": [
            {"status": "received", "at": opened, "by": "gateway"},
            {"status": "accepted", "at": opened, "by": "gateway"},
            {"status": "dispatched", "at": opened, "by": "gateway", "department": department}]});
    out.push(LedgerRecord::parse(cases, cases, partition, &history).unwrap());
    let moved = json!({"type": "history", "case_id": case_id, "from": 3, "entries": [
            {"status": "accepted", "at": opened + 3600, "by": department, "note": "已签收"},
            {"status": phase, "at": opened + 86_400, "by": department, "note": "已处理"}]});
    out.push(LedgerRecord::parse(cases, cases, partition, &moved).unwrap());
    let lifecycle = json!({"type": "lifecycle", "case_id": case_id, "phase": phase,
        "department": department, "deadline": opened + 72 * 3600, "overdue": rng.below(20) == 0,
        "escalated": false, "history_len": 5,
        "last": {"status": phase, "at": opened + 86_400, "by": department, "note": "已处理"},
        "sources": [{"channel": "hotline", "source_id": format!("RX{i}")}]});
    out.push(LedgerRecord::parse(cases, cases, partition, &lifecycle).unwrap());
    out
}

/// A query of one kind, drawn at random.
type QueryPath = Box<dyn Fn(&mut Lcg) -> String>;

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

async fn fresh_database(given: Option<String>, dir: &tempfile::TempDir) -> String {
    match given {
        None => format!("sqlite://{}", dir.path().join("ledger.sqlite").display()),
        Some(url) if url.starts_with("postgres") => {
            sqlx::any::install_default_drivers();
            let name = format!("ledger_bench_{}", std::process::id());
            let pool = sqlx::AnyPool::connect(&url).await.unwrap();
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&pool)
                .await
                .unwrap();
            pool.close().await;
            format!("{}/{name}", url.rsplit_once('/').unwrap().0)
        }
        Some(url) => url,
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let cases: u64 = arg("--cases").map_or(100_000, |c| c.parse().unwrap());
    let queries: usize = arg("--queries").map_or(200, |q| q.parse().unwrap());
    let filled = std::env::args().any(|a| a == "--filled");
    let dir = tempfile::tempdir().unwrap();
    let url = if filled {
        arg("--database").expect("--filled measures the database given by --database")
    } else {
        fresh_database(arg("--database"), &dir).await
    };
    let backend = if url.starts_with("sqlite") {
        "SQLite"
    } else {
        "PostgreSQL"
    };
    println!("ledger bench: {backend}, {cases} cases, {queries} queries per kind");
    if backend == "PostgreSQL" {
        println!("database: {url}");
    }
    let rss_start = rss_mb();

    // 1. fill
    let t = Instant::now();
    let ledger = Ledger::open(&url).await.unwrap();
    println!(
        "open (new migrations applied): {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let mut rng = Lcg(42);
    let mut batch = Vec::new();
    let (mut records, mut reports) = (0u64, 0u64);
    let started = Instant::now();
    let mut offset = 0i64;
    let to_fill = if filled { 0 } else { cases };
    for i in 0..to_fill {
        for r in case_records(i, cases, &mut rng) {
            if matches!(r, LedgerRecord::Report { .. }) {
                reports += 1;
            }
            batch.push(r);
        }
        if batch.len() >= 2000 || i + 1 == cases {
            offset += batch.len() as i64;
            records += batch.len() as u64;
            ledger
                .store()
                .apply(&batch, &[(("petitions.cases".into(), 0), offset)])
                .await
                .unwrap();
            batch.clear();
        }
        if (i + 1) % (cases / 10).max(1) == 0 {
            println!(
                "  {:>9} cases, {:>10} reports stored: {:>7.0} records/s, RSS {:.0} MB",
                i + 1,
                reports,
                records as f64 / started.elapsed().as_secs_f64(),
                rss_mb()
            );
        }
    }
    let fill = started.elapsed().as_secs_f64();
    if !filled {
        println!(
            "fill: {records} records ({reports} reports) in {fill:.1} s = {:.0} records/s; RSS {:.0} MB at start, {:.0} MB now",
            records as f64 / fill,
            rss_start,
            rss_mb()
        );
    }
    if backend == "PostgreSQL" && !filled {
        // What autovacuum does minutes after a bulk load (insert-only tables too, since
        // PostgreSQL 13): the planner's statistics, and the visibility map that lets a
        // count or a page's ids come from an index alone.
        let t = Instant::now();
        let pool = sqlx::AnyPool::connect(&url).await.unwrap();
        sqlx::query("VACUUM ANALYZE").execute(&pool).await.unwrap();
        pool.close().await;
        println!(
            "VACUUM ANALYZE (what autovacuum does, done now): {:.1} s",
            t.elapsed().as_secs_f64()
        );
    }
    ledger.store().close().await;
    drop(ledger);

    // 2. restart
    let t = Instant::now();
    let ledger = Ledger::open(&url).await.unwrap();
    let (_, offsets) = ledger.store().offsets().await.unwrap();
    println!(
        "restart: open + migrations checked + {} offsets read in {:.1} ms (nothing re-read)",
        offsets.len(),
        t.elapsed().as_secs_f64() * 1000.0
    );

    // 3. queries over HTTP
    let keys: BTreeMap<String, String> = [("center".to_string(), "bench-center-key".to_string())]
        .into_iter()
        .collect();
    let app = petition_gateway::ledger::api::routes(ledger.clone(), keys);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let client = reqwest::Client::new();
    let month = |m: u32| rfc3339(YEAR_START + i64::from(m) * 2_628_000).replace('+', "%2B");
    let kinds: Vec<(&str, QueryPath)> = vec![
        ("no filter, page 1", Box::new(|_| "/cases".into())),
        (
            "department",
            Box::new(|r| format!("/cases?department={}", DEPARTMENTS[r.below(12) as usize])),
        ),
        (
            "department + status",
            Box::new(|r| {
                format!(
                    "/cases?department={}&status=in_progress",
                    DEPARTMENTS[r.below(12) as usize]
                )
            }),
        ),
        ("overdue", Box::new(|_| "/cases?overdue=true".into())),
        (
            "one month",
            Box::new(move |r| {
                let m = r.below(11) as u32;
                format!("/cases?since={}&until={}", month(m), month(m + 1))
            }),
        ),
        (
            "region",
            Box::new(|r| format!("/cases?region=3710020{:02}", r.below(40))),
        ),
        (
            "category",
            Box::new(|r| format!("/cases?category=C{:02}", r.below(30))),
        ),
        (
            "place (prefix)",
            Box::new(|r| format!("/cases?place=环翠区第{}街道{}", r.below(40), r.below(10))),
        ),
        (
            "page 100 of everything",
            Box::new(|_| "/cases?page=100&per_page=50".into()),
        ),
        (
            "GET /cases/{id}",
            Box::new(move |r| format!("/cases/case-{:08}", r.below(cases))),
        ),
    ];
    println!("| query | p50 ms | p99 ms | total cases it selects (last) |");
    println!("|---|---|---|---|");
    for (name, path) in &kinds {
        let mut times = Vec::with_capacity(queries);
        let mut total = serde_json::Value::Null;
        for _ in 0..queries {
            let p = path(&mut rng);
            let t = Instant::now();
            let r = client
                .get(format!("http://{addr}{p}"))
                .header("x-api-key", "bench-center-key")
                .send()
                .await
                .unwrap();
            assert_eq!(r.status().as_u16(), 200, "{p}");
            let body: serde_json::Value = r.json().await.unwrap();
            times.push(t.elapsed());
            total = body["total"].clone();
        }
        times.sort();
        println!(
            "| {name} | {:.2} | {:.2} | {} |",
            percentile(&times, 0.5),
            percentile(&times, 0.99),
            total
        );
    }
    println!("RSS at the end: {:.0} MB", rss_mb());
}
