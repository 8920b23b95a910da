//! The dispatcher's case state at scale, without Kafka: memory per open case, the time
//! per decision (near-duplicate lookup + merge decision, and the whole decision with
//! routing), and the CPU part of a restore (decoding the `petitions.cases` records and
//! rebuilding state). Synthetic petitions in the sample's style, spread over 80% of the
//! dedupe window so that every case is open.
//!
//! - `cargo bench --bench case_state -- [REPORTS]` (default 100000): the gazetteer's own
//!   places, which repeat (half of a million reports merge).
//! - `cargo bench --bench case_state -- --open-cases N`: a city (every street with 80
//!   communities and 24 roads), filled until the window holds N open cases.
//! - `--without-lifecycles`: hold only what dedupe and the idempotent receiver need (the
//!   dispatcher also holds each open case's lifecycle).
//!
//! Prints Markdown rows for BENCHMARKS.md.
//!
//! `… -- (REPORTS | --open-cases N) --jsonl FILE` only writes the same petitions as
//! hotline work orders in the sample's format, for `petition-gateway import`
//! (`scripts/bench-restore` measures the restore from a real broker with them);
//! `--days D` spreads their times over D days instead (history longer than the window).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use petition_gateway::dispatch::cases::{
    CaseLogEntry, CaseState, DecisionContext, Outcome, Rebuild,
};
use petition_gateway::dispatch::dedupe::{DedupeSettings, Report};
use petition_gateway::dispatch::responsibility::ResponsibilityList;
use petition_gateway::dispatch::router::Router;
use petition_gateway::lifecycle::{Lifecycle, Source};
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

/// Characters synthetic community and road names are made of: none of them ends a name
/// for the feature extractor (no 区, 道, 和, 近, 口…), so each name reads back whole.
const NAME_CHARS: &[char] = &[
    '安', '宁', '康', '泰', '福', '兴', '华', '盛', '平', '新', '阳', '光', '丽', '景', '翠', '金',
    '银', '春', '秋', '锦', '绣', '明', '珠', '玉', '兰', '松', '柏', '梅', '竹', '桃', '李', '杏',
    '枫', '鹤', '龙', '凤',
];

/// One street and where its citizens live.
struct Street {
    code: String,
    name: String,
    places: Vec<String>,
    roads: Vec<String>,
}

/// How big the synthetic city is.
#[derive(Clone, Copy)]
enum Scale {
    /// The gazetteer's communities and eight roads: places repeat, half the reports of a
    /// million merge (the figures of 2026-11-25).
    Town,
    /// Every street also gets synthetic communities and roads, as many as a city district
    /// has, so that a million reports over the window are mostly distinct incidents and
    /// the window holds a million open cases.
    City,
}

const CITY_COMMUNITIES_PER_STREET: usize = 80;
const CITY_ROADS_PER_STREET: usize = 24;

struct Generator {
    streets: Vec<Street>,
    rng: StdRng,
    start: i64,
    span: i64,
}

impl Generator {
    fn new(g: &Gazetteer, seed: u64, scale: Scale, span: i64) -> Self {
        let mut names = StdRng::seed_from_u64(0x5eed);
        let mut synthetic = |suffix: &str, taken: &mut std::collections::HashSet<String>| loop {
            let name: String = (0..3)
                .map(|_| NAME_CHARS[names.random_range(0..NAME_CHARS.len())])
                .collect::<String>()
                + suffix;
            if taken.insert(name.clone()) {
                return name;
            }
        };
        let mut taken = std::collections::HashSet::new();
        let streets = g
            .streets
            .iter()
            .map(|s| {
                let mut places = s.communities.clone();
                if places.is_empty() {
                    places.push(s.name.clone());
                }
                let mut roads: Vec<String> = ROADS.iter().map(|r| r.to_string()).collect();
                if let Scale::City = scale {
                    while places.len() < CITY_COMMUNITIES_PER_STREET {
                        places.push(synthetic("社区", &mut taken));
                    }
                    while roads.len() < CITY_ROADS_PER_STREET {
                        roads.push(synthetic("路", &mut taken));
                    }
                }
                Street {
                    code: s.code.clone(),
                    name: s.name.clone(),
                    places,
                    roads,
                }
            })
            .collect();
        Self {
            streets,
            rng: StdRng::seed_from_u64(seed),
            start: 1_795_000_000,
            span,
        }
    }

    /// The n-th of `total` petitions: times increase with n.
    fn petition(&mut self, n: usize, total: usize) -> Petition {
        let (_, p) = self.next(n, total);
        p
    }

    /// The petition and the hotline work order it comes from.
    fn next(&mut self, n: usize, total: usize) -> (serde_json::Value, Petition) {
        let street = &self.streets[self.rng.random_range(0..self.streets.len())];
        let (code, name) = (&street.code, &street.name);
        let mut place = &street.places[self.rng.random_range(0..street.places.len())];
        let problem = PROBLEMS[self.rng.random_range(0..PROBLEMS.len())];
        let text = if self.rng.random_bool(0.7) {
            format!(
                "{place}{}号楼{}单元{problem}",
                self.rng.random_range(1..400),
                self.rng.random_range(1..9)
            )
        } else {
            let (ia, ib) = (
                self.rng.random_range(0..street.roads.len()),
                self.rng.random_range(0..street.roads.len()),
            );
            // A crossing lies by one community, the landmark its reporters name (the
            // deduper places a report by the crossing, whatever community it names).
            place = &street.places[(ia * 7 + ib * 13) % street.places.len()];
            let (a, b) = (&street.roads[ia], &street.roads[ib]);
            format!("{place}附近{a}与{b}交叉口{problem}")
        };
        // Past `total` (a city filled until it holds enough open cases) time stands still
        // at the end of the span.
        let at = self.start + (n.min(total) as i64 * self.span) / total.max(1) as i64;
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
            "sqlx": "投诉", "jjcd": "一般", "sqnr": text, "sqdz": format!("{name}{place}"),
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

/// How many reports to generate: a fixed number, or until the window holds that many
/// open cases.
#[derive(Clone, Copy)]
enum Target {
    Reports(usize),
    OpenCases(usize),
}

impl Target {
    /// The number of reports the generator spreads its times over.
    fn planned(self) -> usize {
        match self {
            Target::Reports(n) => n,
            // A city's reports merge ~13% of the time: plan for that many more.
            Target::OpenCases(n) => n + n * 3 / 20,
        }
    }

    fn reached(self, reports: usize, open: usize) -> bool {
        match self {
            Target::Reports(n) => reports >= n,
            // Bounded, in case the generator merges far more than planned.
            Target::OpenCases(n) => open >= n || reports >= 3 * n,
        }
    }
}

/// Decides and applies generated reports until `target`, as the dispatcher does
/// (lifecycles included unless `lifecycles` is false); `each` sees every report's
/// records. Returns the reports and how many merged.
fn fill(
    state: &mut CaseState,
    generator: &mut Generator,
    router: &Router,
    target: Target,
    lifecycles: bool,
    mut each: impl FnMut(&serde_json::Value, &Petition, &Outcome),
) -> (usize, usize) {
    let planned = target.planned();
    let (mut n, mut merged) = (0, 0);
    while !target.reached(n, state.open_cases()) {
        let (order, p) = generator.next(n, planned);
        let o = state.decide(&p, router, &ctx(n as i64));
        merged += usize::from(matches!(o, Outcome::Merged { .. }));
        state.apply(&o);
        if lifecycles {
            if let Some(l) = lifecycle_after(state, &o, &p, router) {
                state.apply_entry(&CaseLogEntry::Lifecycle(l));
            }
        }
        each(&order, &p, &o);
        n += 1;
        if n % 200_000 == 0 {
            eprintln!("{n} reports, {} open cases", state.open_cases());
        }
    }
    (n, merged)
}

fn ctx(seq: i64) -> DecisionContext<'static> {
    DecisionContext {
        seq,
        list_version: "bench",
        instance: "bench",
        now: chrono::Utc::now(),
        learned: None,
    }
}

/// The case's lifecycle after this outcome, as the dispatcher writes it.
fn lifecycle_after(
    state: &CaseState,
    o: &Outcome,
    p: &Petition,
    router: &Router,
) -> Option<Lifecycle> {
    let at = chrono::Utc::now().timestamp();
    let source = Source {
        petition_id: p.id.clone(),
        channel: p.channel.clone(),
        source_id: p.source_id.clone(),
        reporter_name: None,
        joined_at: at,
    };
    match o {
        Outcome::Resent { .. } => None,
        Outcome::Opened { case, .. } => {
            let sla = router
                .list()
                .department(&case.department)
                .map(|d| i64::from(d.sla_hours) * 3600);
            let (l, _) = Lifecycle::opened(
                &case.case_id,
                &case.department,
                sla,
                case.escalated,
                source,
                at,
            );
            Some(l)
        }
        Outcome::Merged {
            report, escalates, ..
        } => {
            let mut l = state.lifecycle(&report.case_id)?.clone();
            l.merged(source, *escalates, at);
            Some(l)
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str| args.iter().position(|a| a == name).map(|i| &args[i + 1]);
    let target = match flag("--open-cases") {
        Some(n) => Target::OpenCases(n.parse().expect("--open-cases N")),
        None => Target::Reports(
            // The first number that is not a flag's value.
            args.iter()
                .enumerate()
                .skip(1)
                .filter(|(i, _)| !args[i - 1].starts_with("--"))
                .find_map(|(_, a)| a.parse().ok())
                .unwrap_or(100_000),
        ),
    };
    let scale = match target {
        Target::Reports(_) => Scale::Town,
        Target::OpenCases(_) => Scale::City,
    };
    let lifecycles = !args.iter().any(|a| a == "--without-lifecycles");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let gazetteer = Gazetteer::load(&root.join("config/gazetteer.toml")).unwrap();
    let list =
        ResponsibilityList::load(&root.join("config/responsibility.toml"), &gazetteer).unwrap();
    let router = Router::new(list);
    let settings = DedupeSettings::default();
    let span = match flag("--days") {
        Some(d) => d.parse::<i64>().expect("--days D") * 86_400,
        None => settings.window_secs * 4 / 5,
    };

    if let Some(path) = flag("--jsonl") {
        use std::io::Write;
        let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
        let mut state = CaseState::new(settings);
        let mut generator = Generator::new(&gazetteer, 1, scale, span);
        let mut seq = 0;
        let (reports, _) = fill(
            &mut state,
            &mut generator,
            &router,
            target,
            false,
            |order, p, _| {
                seq += 1;
                let line = serde_json::json!({
                    "seq": seq, "at": p.received_at, "channel": "hotline", "payload": order,
                });
                writeln!(out, "{line}").unwrap();
            },
        );
        eprintln!(
            "{reports} work orders, {} open cases in process",
            state.open_cases()
        );
        return;
    }

    // 1. Fill the state; RSS before and after gives the memory per open case.
    let before = resident_bytes();
    let mut state = CaseState::new(settings);
    let mut generator = Generator::new(&gazetteer, 1, scale, span);
    let started = Instant::now();
    let (total, merged) = fill(
        &mut state,
        &mut generator,
        &router,
        target,
        lifecycles,
        |_, _, _| {},
    );
    let fill_time = started.elapsed();
    let used = resident_bytes().saturating_sub(before);
    let open = state.open_cases();
    let per_case = used as f64 / open as f64;

    // 2. Decisions against the full state (not applied, so the state stays the same).
    let mut probes = Generator::new(&gazetteer, 2, scale, span);
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
            at_known: true,
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

    // 3. Restore: the records a compacted petitions.cases holds (case and report records,
    // each open case's latest lifecycle), encoded with their keys, then rebuilt two ways.
    let mut records: Vec<(String, Vec<u8>)> = Vec::new();
    {
        let mut generator = Generator::new(&gazetteer, 1, scale, span);
        let mut replay = CaseState::new(settings);
        fill(
            &mut replay,
            &mut generator,
            &router,
            Target::Reports(total),
            false,
            |_, _, o| {
                records.extend(
                    o.log_entries()
                        .iter()
                        .map(|e| (e.key(), serde_json::to_vec(e).unwrap())),
                );
            },
        );
    }
    records.extend(state.lifecycles().map(|l| {
        let e = CaseLogEntry::Lifecycle(l.clone());
        (e.key(), serde_json::to_vec(&e).unwrap())
    }));
    drop(state);
    let bytes: usize = records.iter().map(|(_, r)| r.len()).sum();

    // a. As the dispatcher restores: each record applied as it is read (`Rebuild`).
    let started = Instant::now();
    let mut rebuild = Rebuild::new(settings);
    for (key, payload) in &records {
        rebuild.record(key.as_bytes(), payload).unwrap();
    }
    let (rebuilt, unreadable) = rebuild.finish();
    let streamed = started.elapsed();
    assert!(unreadable.is_empty());
    assert_eq!(rebuilt.open_cases(), open);
    drop(rebuilt);

    // b. The sorted restore (every record decoded whole with serde's tagged decoding,
    // collected, sorted, applied): what the dispatcher did before, and still does for a
    // partition whose records are out of order.
    let started = Instant::now();
    let entries: Vec<CaseLogEntry> = records
        .iter()
        .map(|(_, r)| serde_json::from_slice(r).unwrap())
        .collect();
    let decoded = started.elapsed();
    let restored = CaseState::restore(settings, entries);
    let sorted = started.elapsed();
    assert_eq!(restored.open_cases(), open);
    drop(restored);

    let date = chrono::Utc::now().format("%Y-%m-%d");
    println!(
        "{open} open cases ({merged} of {total} reports merged); filled in {:.1} s ({:.1} µs per report)",
        fill_time.as_secs_f64(),
        fill_time.as_secs_f64() * 1e6 / total as f64
    );
    println!();
    println!("| date | reports | open cases | state held | memory per open case | dedupe decision p50 / p99 | whole decision (routing + dedupe) p50 / p99 | restore CPU as read (records, MB) | sorted restore (of which decoding) |");
    println!("|---|---|---|---|---|---|---|---|---|");
    println!(
        "| {date} | {total} | {open} | {} | {:.0} B | {} / {} | {} / {} | {:.2} s ({}, {:.0} MB) | {:.2} s ({:.2} s) |",
        if lifecycles { "dedupe, receiver, lifecycles" } else { "dedupe, receiver" },
        per_case,
        micros(percentile(&dedupe_t, 0.5)),
        micros(percentile(&dedupe_t, 0.99)),
        micros(percentile(&whole_t, 0.5)),
        micros(percentile(&whole_t, 0.99)),
        streamed.as_secs_f64(),
        records.len(),
        bytes as f64 / 1e6,
        sorted.as_secs_f64(),
        decoded.as_secs_f64(),
    );
}
