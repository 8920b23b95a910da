//! CPU cost of the per-petition pipeline without I/O: mapping (connector engine),
//! normalization (region + JSON Schema) and routing, on the sample's hotline work orders.
//! `cargo bench --bench pipeline` — prints a Markdown table row for BENCHMARKS.md.
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
    let orders: Vec<Value> = std::fs::read_to_string(&sample_path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|r| r["channel"] == "hotline")
        .map(|r| r["payload"].clone())
        .collect();
    let def = ConnectorDefinition::load(&root.join("connectors/hotline.toml")).unwrap();
    let gazetteer = Gazetteer::load(&root.join("config/gazetteer.toml")).unwrap();
    let list =
        ResponsibilityList::load(&root.join("config/responsibility.toml"), &gazetteer).unwrap();
    let regions = RegionResolver::new(gazetteer);
    let schemas = Schemas::compile().unwrap();
    let router = Router::new(list);
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
}
