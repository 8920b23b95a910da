//! Every petition of the labeled sample is accepted by its channel's connector and valid
//! against the petition schema, through the same mapping and normalization code as the
//! live pipeline (`replay`); and region resolution never names a wrong street.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::Value;
use std::collections::HashMap;
use std::path::PathBuf;

#[test]
fn all_sample_petitions_are_accepted_and_placed() {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let sample = petition_gateway::sample::sample_path();
    let text = std::fs::read_to_string(&sample).unwrap();
    let loaded = petition_gateway::config::load(&repo.join("config/gateway.toml")).unwrap();
    let mut out = Vec::new();
    let stats = petition_gateway::replay::replay(loaded, text.as_bytes(), &mut out).unwrap();
    let results: Vec<Value> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let errors: Vec<&Value> = results
        .iter()
        .filter(|r| r.get("error").is_some())
        .take(5)
        .collect();
    assert_eq!(stats.rejected, 0, "rejected: {errors:?}");
    assert_eq!(stats.accepted, text.lines().count());

    let labels: HashMap<u64, Value> = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .map(|r| (r["seq"].as_u64().unwrap(), r["label"].clone()))
        .collect();
    let mut per_channel: HashMap<String, (usize, usize)> = HashMap::new();
    for (r, line) in results.iter().zip(text.lines()) {
        let label = &labels[&r["seq"].as_u64().unwrap()];
        let channel = serde_json::from_str::<Value>(line).unwrap()["channel"]
            .as_str()
            .unwrap()
            .to_string();
        let want = label["region"].as_str().unwrap_or("371082");
        let got = r["region"].as_str().unwrap();
        // Never a wrong street: either the labeled one or, lacking a place, the county.
        assert!(
            got == want || got == "371082",
            "seq {}: {got} instead of {want}",
            r["seq"]
        );
        let e = per_channel.entry(channel).or_default();
        e.0 += usize::from(got == want);
        e.1 += 1;
    }
    for (channel, (right, all)) in &per_channel {
        eprintln!(
            "region resolution {channel}: {right}/{all} = {:.3}",
            *right as f64 / *all as f64
        );
    }
}
