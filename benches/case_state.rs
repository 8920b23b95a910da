//! The dispatcher's case state at scale, without Kafka: memory per open case, the time
//! per decision (near-duplicate lookup + merge decision, and the whole decision with
//! routing), and the CPU part of a restore (decoding the `petitions.cases` records and
//! rebuilding state). Synthetic petitions in the sample's style, spread over 80% of the
//! dedupe window so that every case is open.
//!
//! `cargo bench --bench case_state -- [REPORTS]` (default 100000). Prints Markdown
//! rows for BENCHMARKS.md.
//!
//! `cargo bench --bench case_state -- REPORTS --jsonl FILE` only writes the same
//! petitions as hotline work orders in the sample's format, for `petition-gateway import`
//! (`scripts/bench-restore` measures the restore from a real broker with them).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use petition_gateway::dispatch::cases::{CaseLogEntry, CaseState, DecisionContext, Outcome};
use petition_gateway::dispatch::dedupe::{DedupeSettings, Report};
use petition_gateway::dispatch::responsibility::ResponsibilityList;
use petition_gateway::dispatch::router::Router;
use petition_gateway::normalize::region::Gazetteer;
use petition_gateway::petition::Petition;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::path::Path;
use std::time::{Duration, Instant};

const PROBLEMS: &[&str] = &[
    "暖气不热，屋里只有十三度",
    "电梯停运三天了，老人上下楼困难",
    "楼道灯坏了一直没人修",
    "下水道堵塞，污水漫到路面",
    "路灯不亮，晚上出行不安全",
    "有人占道经营，堵得车过不去",
    "夜里施工噪音扰民",
    "垃圾堆积没人清运，气味很大",
    "井盖缺失，很危险",
    "楼顶有人违章搭建",
    "自来水发黄，不能饮用",
    "小区门口积水严重",
];
const ROADS: &[&str] = &[
    "成山大道",
    "观海路",
    "龙山路",
    "海湾路",
    "石岛大街",
    "府新路",
    "青山路",
    "沿河街",
];

struct Generator {
    streets: Vec<(String, String, Vec<String>)>,
    rng: StdRng,
    start: i64,
    span: i64,
}

impl Generator {
    fn new(g: &Gazetteer, seed: u64) -> Self {
        let streets = g
            .streets
            .iter()
            .map(|s| {
                let mut places = s.communities.clone();
                if places.is_empty() {
                    places.push(s.name.clone());
                }
                (s.code.clone(), s.name.clone(), places)
            })
            .collect();
        Self {
            streets,
            rng: StdRng::seed_from_u64(seed),
            start: 1_795_000_000,
            span: DedupeSettings::default().window_secs * 4 / 5,
        }
    }

    /// The n-th of `total` petitions: times increase with n.
    fn petition(&mut self, n: usize, total: usize) -> Petition {
        let (_, p) = self.next(n, total);
        p
    }

    /// The petition and the hotline work order it comes from.
    fn next(&mut self, n: usize, total: usize) -> (serde_json::Value, Petition) {
        let (code, street, places) = &self.streets[self.rng.random_range(0..self.streets.len())];
        let place = &places[self.rng.random_range(0..places.len())];
        let problem = PROBLEMS[self.rng.random_range(0..PROBLEMS.len())];
        let text = if self.rng.random_bool(0.7) {
            format!(
                "{place}{}号楼{}单元{problem}",
                self.rng.random_range(1..400),
                self.rng.random_range(1..9)
            )
        } else {
            let a = ROADS[self.rng.random_range(0..ROADS.len())];
            let b = ROADS[self.rng.random_range(0..ROADS.len())];
            format!("{place}附近{a}与{b}交叉口{problem}")
        };
        let at = self.start + (n as i64 * self.span) / total.max(1) as i64;
        let time = chrono::DateTime::from_timestamp(at, 0)
            .unwrap()
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let source_id = format!("BENCH{n:08}");
        let local = chrono::DateTime::from_timestamp(at + 8 * 3600, 0)
            .unwrap()
            .format("%Y-%m-%d %H:%M:%S")
            .to_string();
        let order = serde_json::json!({
            "gdbh": source_id, "ldsj": local, "ldhm": "13800138000", "ldrxm": "测试",
            "sqlx": "投诉", "jjcd": "一般", "sqnr": text, "sqdz": format!("{street}{place}"),
        });
        let petition = serde_json::from_value(serde_json::json!({
            "id": petition_gateway::petition::petition_id("hotline", &source_id),
            "channel": "hotline", "source_id": source_id, "kind": "complaint",
            "urgency": "normal", "text": text, "reported_at": time, "received_at": time,
            "trace_id": "0af7651916cd43dd8448eb211c80319c", "attachments": [], "reporter": {},
            "location": {"region": {"code": code, "level": "street", "resolved_by": "text"}},
        }))
        .unwrap();
        (order, petition)
    }
}

fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn micros(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

fn main() {
    let total: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(100_000);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let gazetteer = Gazetteer::load(&root.join("config/gazetteer.toml")).unwrap();
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--jsonl") {
        use std::io::Write;
        let file = std::fs::File::create(&args[i + 1]).unwrap();
        let mut out = std::io::BufWriter::new(file);
        let mut generator = Generator::new(&gazetteer, 1);
        for n in 0..total {
            let (order, p) = generator.next(n, total);
            let line = serde_json::json!({
                "seq": n + 1, "at": p.received_at, "channel": "hotline", "payload": order,
            });
            writeln!(out, "{line}").unwrap();
        }
        return;
    }
    let list =
        ResponsibilityList::load(&root.join("config/responsibility.toml"), &gazetteer).unwrap();
    let router = Router::new(list);
    let settings = DedupeSettings::default();
    let ctx = |seq| DecisionContext {
        seq,
        list_version: "bench",
        instance: "bench",
        now: chrono::Utc::now(),
    };

    // 1. Fill the state; RSS before and after gives the memory per open case.
    let before = resident_bytes();
    let mut state = CaseState::new(settings);
    let mut generator = Generator::new(&gazetteer, 1);
    let (mut merged, started) = (0usize, Instant::now());
    for n in 0..total {
        let p = generator.petition(n, total);
        let o = state.decide(&p, &router, &ctx(n as i64));
        merged += usize::from(matches!(o, Outcome::Merged { .. }));
        state.apply(&o);
    }
    let fill = started.elapsed();
    let used = resident_bytes().saturating_sub(before);
    let open = state.open_cases();
    let per_case = used as f64 / open as f64;

    // 2. Decisions against the full state (not applied, so the state stays the same).
    let mut probes = Generator::new(&gazetteer, 2);
    let probe_petitions: Vec<Petition> = (0..10_000)
        .map(|n| {
            let mut p = probes.petition(total - 1, total);
            p.id = petition_gateway::petition::petition_id("hotline", &format!("PROBE{n}"));
            p
        })
        .collect();
    let mut whole_t = Vec::new();
    for p in &probe_petitions {
        let t = Instant::now();
        std::hint::black_box(state.decide(p, &router, &ctx(0)));
        whole_t.push(t.elapsed());
    }
    let mut dedupe_t = Vec::new();
    for p in &probe_petitions {
        let routing = router.route(p);
        let problem = router.problem_words(&routing).to_vec();
        let at = chrono::DateTime::parse_from_rfc3339(&p.reported_at)
            .unwrap()
            .timestamp();
        let report = Report {
            region: &p.location.region.code,
            department: &routing.department,
            at_unix: at,
            text: &p.text,
            address: p.location.address.as_deref(),
            problem: &problem,
        };
        let t = Instant::now();
        std::hint::black_box(state.deduper().decide(&report));
        dedupe_t.push(t.elapsed());
    }
    dedupe_t.sort();
    whole_t.sort();
    drop(state);

    // 3. Restore: the records as they sit on petitions.cases, decoded and applied.
    let mut state = CaseState::new(settings);
    let mut generator = Generator::new(&gazetteer, 1);
    let mut records: Vec<Vec<u8>> = Vec::new();
    for n in 0..total {
        let p = generator.petition(n, total);
        let o = state.decide(&p, &router, &ctx(n as i64));
        records.extend(
            o.log_entries()
                .iter()
                .map(|e| serde_json::to_vec(e).unwrap()),
        );
        state.apply(&o);
    }
    drop(state);
    let bytes: usize = records.iter().map(Vec::len).sum();
    let started = Instant::now();
    let entries: Vec<CaseLogEntry> = records
        .iter()
        .map(|r| serde_json::from_slice(r).unwrap())
        .collect();
    let decoded = started.elapsed();
    let restored = CaseState::restore(settings, entries);
    let restore = started.elapsed();
    assert_eq!(restored.open_cases(), open);

    let date = chrono::Utc::now().format("%Y-%m-%d");
    println!("open cases: {open} ({merged} of {total} reports merged); filled in {:.1} s ({:.1} µs per report)",
        fill.as_secs_f64(), fill.as_secs_f64() * 1e6 / total as f64);
    println!();
    println!("| date | open cases | memory per open case | dedupe decision p50 / p99 | whole decision (routing + dedupe) p50 / p99 | restore CPU: {} records, {:.0} MB | of which decoding |", records.len(), bytes as f64 / 1e6);
    println!("|---|---|---|---|---|---|---|");
    println!(
        "| {date} | {open} | {:.0} B | {} / {} | {} / {} | {:.2} s | {:.2} s |",
        per_case,
        micros(percentile(&dedupe_t, 0.5)),
        micros(percentile(&dedupe_t, 0.99)),
        micros(percentile(&whole_t, 0.5)),
        micros(percentile(&whole_t, 0.99)),
        restore.as_secs_f64(),
        decoded.as_secs_f64(),
    );
}
