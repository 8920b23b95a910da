//! The router that learns from the center, measured the way the issue asks, without
//! hidden data: `replay --center` over the labeled sample (the center assigns what the
//! decision got wrong right after it, the model learns only what it was told by then),
//! on the full list and on copies of the list with one department's words deleted.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use petition_gateway::dispatch::responsibility::ResponsibilityList;
use petition_gateway::replay::{replay_with, ReplayOptions, ReplayOrder};
use serde_json::Value;
use std::collections::HashMap;

/// (labeled department, decided department, rule) per line, in the order decided.
fn replayed(list: Option<ResponsibilityList>, center: bool) -> Vec<(String, String, String)> {
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/config/gateway.toml");
    let mut loaded = petition_gateway::config::load(std::path::Path::new(config)).unwrap();
    if let Some(list) = list {
        loaded.responsibility = list;
    }
    let sample = std::fs::read_to_string(petition_gateway::sample::sample_path()).unwrap();
    let labels: HashMap<u64, String> = sample
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (
                v["seq"].as_u64().unwrap(),
                v["label"]["department"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let mut out = Vec::new();
    let options = ReplayOptions {
        order: ReplayOrder::Reported,
        center,
    };
    replay_with(loaded, sample.as_bytes(), &mut out, options).unwrap();
    String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| {
            let r: Value = serde_json::from_str(l).unwrap();
            (
                labels[&r["seq"].as_u64().unwrap()].clone(),
                r["department"].as_str().unwrap().to_string(),
                r["rule"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

fn share(rows: &[&(String, String, String)], f: impl Fn(&(String, String, String)) -> bool) -> f64 {
    rows.iter().filter(|r| f(r)).count() as f64 / rows.len().max(1) as f64
}

/// The shipped list with one department's keywords, channel labels and synonyms deleted.
fn without_words_of(department: &str) -> ResponsibilityList {
    let root = env!("CARGO_MANIFEST_DIR");
    let text = std::fs::read_to_string(format!("{root}/config/responsibility.toml")).unwrap();
    let blocks: Vec<String> = text
        .split("[[department]]")
        .map(|block| {
            if !block.contains(&format!("code = \"{department}\"\n")) {
                return block.to_string();
            }
            block
                .lines()
                .filter(|l| !l.starts_with("synonyms"))
                .map(|l| {
                    if l.starts_with("keywords =") {
                        "keywords = []"
                    } else if l.starts_with("channel_labels =") {
                        "channel_labels = []"
                    } else {
                        l
                    }
                })
                .collect::<Vec<_>>()
                .join("\n")
                + "\n"
        })
        .collect();
    let gazetteer = petition_gateway::normalize::region::Gazetteer::load(std::path::Path::new(
        &format!("{root}/config/gazetteer.toml"),
    ))
    .unwrap();
    ResponsibilityList::parse(&blocks.join("[[department]]"), &gazetteer).unwrap()
}

#[test]
fn acting_as_the_center_on_the_full_sample_routes_right_and_never_wrong() {
    let rows = replayed(None, true);
    let all: Vec<_> = rows.iter().collect();
    let right = share(&all, |(want, got, _)| want == got);
    let wrong = share(&all, |(want, got, _)| want != got && got != "triage");
    eprintln!("--center: right {right:.4}, wrong {wrong:.4}");
    // Measured 2026-12-01: right 0.9982 (the list alone 0.9910), wrong 0.
    assert!(
        right >= 0.99 && wrong <= 0.005,
        "right {right:.4} wrong {wrong:.4}"
    );
    assert!(all.iter().any(|(_, _, rule)| rule == "learned"));
}

#[test]
fn a_department_whose_words_are_deleted_is_learned_back_from_the_center() {
    for department in ["water", "market", "environment", "housing"] {
        let list = without_words_of(department);
        let mut second_half = Vec::new();
        for center in [false, true] {
            let rows = replayed(Some(list.clone()), center);
            let half = rows.len() / 2;
            let mine: Vec<_> = rows[half..]
                .iter()
                .filter(|(want, _, _)| want == department)
                .collect();
            let all: Vec<_> = rows.iter().collect();
            let right = share(&mine, |(want, got, _)| want == got);
            let wrong = share(&all, |(want, got, _)| want != got && got != "triage");
            eprintln!(
                "{department} (center {center}): second half right {right:.4}, wrong {wrong:.4}"
            );
            second_half.push((right, wrong));
        }
        let ((alone, _), (learned, wrong)) = (second_half[0], second_half[1]);
        // The list alone cannot route them (words deleted); learning brings them back.
        // Measured 2026-12-01: alone ≤ 0.11; with the center ≥ 0.985, wrong ≤ 0.0022.
        assert!(alone < 0.5, "{department}: the list alone {alone:.4}");
        assert!(learned >= 0.9, "{department}: second half {learned:.4}");
        assert!(wrong <= 0.005, "{department}: wrong {wrong:.4}");
    }
}
