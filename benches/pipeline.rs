//! CPU cost of the per-petition pipeline without I/O: mapping (connector engine),
//! normalization (region + JSON Schema) and routing, on the sample's hotline work orders.
//! `cargo bench --bench pipeline` — prints a Markdown table row for BENCHMARKS.md, and
//! one for the learned router: learning an example, and a suggestion for a petition the
//! list left to triage, with every hotline order of the sample learned.
//! The Kafka-bound figures (ingest vs raw producer rate, latency) come with the
//! benchmark issue; this harness is where they will live.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use gateway_connectors::{map_payload, ConnectorDefinition};
use petition_gateway::dispatch::responsibility::ResponsibilityList;
use petition_gateway::dispatch::router::Router;
use petition_gateway::normalize::normalize;
use petition_gateway::normalize::region::{Gazetteer, RegionResolver};
use petition_gateway::normalize::schema::Schemas;
use serde_json::Value;
use std::path::Path;
use std::time::{Duration, Instant};

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let sample_path = petition_gateway::sample::sample_path();
    let lines: Vec<Value> = std::fs::read_to_string(&sample_path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|r| r["channel"] == "hotline")
        .collect();
    let orders: Vec<Value> = lines.iter().map(|r| r["payload"].clone()).collect();
    let def = ConnectorDefinition::load(&root.join("connectors/hotline.toml")).unwrap();
    let gazetteer = Gazetteer::load(&root.join("config/gazetteer.toml")).unwrap();
    let list =
        ResponsibilityList::load(&root.join("config/responsibility.toml"), &gazetteer).unwrap();
    let regions = RegionResolver::new(gazetteer);
    let schemas = Schemas::compile().unwrap();
    let router = Router::new(list.clone());
    let trace = "0af7651916cd43dd8448eb211c80319c";
    let now = "2026-11-25T00:00:00.000Z";

    let rounds = 20;
    let (mut map_t, mut norm_t, mut route_t) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        let t = Instant::now();
        let mapped: Vec<_> = orders
            .iter()
            .map(|o| map_payload(&def, o).unwrap())
            .collect();
        map_t.push(t.elapsed());
        let t = Instant::now();
        let petitions: Vec<_> = mapped
            .iter()
            .map(|m| {
                normalize("hotline", m, now, trace, &regions, &schemas)
                    .unwrap()
                    .1
            })
            .collect();
        norm_t.push(t.elapsed());
        let t = Instant::now();
        let routed = petitions
            .iter()
            .map(|p| router.route(p))
            .filter(|d| d.topic.is_some())
            .count();
        route_t.push(t.elapsed());
        std::hint::black_box(routed);
    }
    let per = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2].as_nanos() as f64 / orders.len() as f64 / 1000.0
    };
    let (m, n, r) = (per(&mut map_t), per(&mut norm_t), per(&mut route_t));
    let total = m + n + r;
    println!("| pipeline CPU per petition (median of {rounds} rounds × {} hotline orders) | map {m:.1} µs | normalize {n:.1} µs | route {r:.1} µs | total {total:.1} µs ≈ {:.0} petitions/s per core |", orders.len(), 1e6 / total);

    // The learned router with every labeled hotline order as an example.
    use petition_gateway::dispatch::learning::{petition_text, Example, Learner};
    let petitions: Vec<_> = orders
        .iter()
        .map(|o| {
            let mapped = map_payload(&def, o).unwrap();
            normalize("hotline", &mapped, now, trace, &regions, &schemas)
                .unwrap()
                .1
        })
        .collect();
    let examples: Vec<Example> = petitions
        .iter()
        .zip(&lines)
        .filter(|(_, l)| l["label"]["department"] != "triage")
        .map(|(p, l)| {
            let department = l["label"]["department"].as_str().unwrap();
            Example::assigned(&p.id, p, department, None, now.to_string())
        })
        .collect();
    let mut learner = Learner::default();
    let t = Instant::now();
    for e in examples.iter().cloned() {
        learner.learn(e, &list);
    }
    let learn = t.elapsed().as_nanos() as f64 / examples.len() as f64 / 1000.0;
    let mut suggest_t = Vec::new();
    let mut decided = 0;
    for _ in 0..3 {
        let t = Instant::now();
        for p in &petitions {
            let s = learner.suggest(
                &petition_text(p),
                p.category_label.as_deref(),
                &p.location.region.code,
                &list,
            );
            decided += usize::from(s.is_some());
        }
        suggest_t.push(t.elapsed());
    }
    let suggest = per(&mut suggest_t);
    // What every keyword decision pays when the center corrected nothing of its class.
    let mut check_t = Vec::new();
    for _ in 0..rounds {
        let t = Instant::now();
        for p in &petitions {
            std::hint::black_box(learner.may_correct(std::hint::black_box("water"), &list));
            std::hint::black_box(p);
        }
        check_t.push(t.elapsed());
    }
    let check = per(&mut check_t);
    println!("| learned router, {} examples | learn {learn:.1} µs per example | suggest {suggest:.1} µs per petition ({} of {} decided) | correction check, nothing corrected {check:.2} µs |", examples.len(), decided / 3, petitions.len());
}
