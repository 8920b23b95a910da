//! Near-duplicate merge: a new report joins an open case when it describes the same
//! incident — same street, same department (or one of them still in triage),
//! within the time window, at least one shared place detail (building, road, business),
//! none conflicting (another building, road, side or business), and similar enough wording.
//! Reports that name no place ("办事效率太低") never merge: nothing says they are one incident.
//!
//! Candidates come from a per-street bucket pruned to the window; this is the exact
//! check. Scaling the candidate lookup (MinHash/LSH) is the dedupe issue's next step.

pub mod features;

use features::{features, jaccard, place_conflict, Features};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// How sure the merge must be. Wording similarity is Jaccard over character bigrams of
/// the normalized text; place details must not conflict at all, and one must be shared.
#[derive(Debug, Clone, Copy)]
pub struct DedupeSettings {
    pub window_secs: i64,
    /// Wording similarity needed on top of a shared building, road or business.
    pub min_similarity_with_place: f64,
    /// When routing found no problem word in common, the wording must be this close.
    pub min_similarity_other_words: f64,
}

impl Default for DedupeSettings {
    fn default() -> Self {
        Self {
            window_secs: 7 * 24 * 3600,
            min_similarity_with_place: 0.12,
            min_similarity_other_words: 0.35,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MergeDecision {
    pub case_id: String,
    pub score: f64,
    /// The place details both reports name.
    pub matched: Vec<String>,
}

/// One report as the deduper sees it.
#[derive(Debug, Clone, Copy)]
pub struct Report<'a> {
    /// Street code, or the county for unplaced reports.
    pub region: &'a str,
    /// The routed department, or `triage`.
    pub department: &'a str,
    /// Unix seconds the citizen reported it.
    pub at_unix: i64,
    pub text: &'a str,
    /// The problem words routing found (see `Router::problem_words`).
    pub problem: &'a [String],
}

/// What the dispatcher persists for an open case so that a restarted deduper decides
/// exactly as the one that opened it: `open` with the seed rebuilds the case, and
/// `merged` replays each report that joined it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaseSeed {
    pub case_id: String,
    pub region: String,
    pub department: String,
    pub opened_at: i64,
    pub text: String,
    pub problem: Vec<String>,
}

struct OpenCase {
    case_id: String,
    department: String,
    /// The problem words routing found (路灯, 占道经营): another problem at the same place
    /// is another incident.
    problem: Vec<String>,
    /// Unix seconds of the case's first report: the window runs from there, so a case
    /// that keeps being reported does not stay open for merging for ever.
    opened_at: i64,
    features: Features,
}

#[derive(Default)]
pub struct Deduper {
    settings: DedupeSettings,
    /// Open cases per region (a street, or the county for unplaced reports).
    buckets: HashMap<String, Vec<OpenCase>>,
}

fn shared_places(a: &Features, b: &Features) -> Vec<String> {
    let mut out = Vec::new();
    out.extend(
        a.buildings
            .intersection(&b.buildings)
            .map(|n| format!("building:{n}")),
    );
    out.extend(a.units.intersection(&b.units).map(|n| format!("unit:{n}")));
    out.extend(a.roads.intersection(&b.roads).map(|r| format!("road:{r}")));
    out.extend(a.sides.intersection(&b.sides).map(|s| format!("side:{s}")));
    out.extend(
        a.entities
            .intersection(&b.entities)
            .map(|e| format!("entity:{e}")),
    );
    out
}

/// One street, or a street and its county: a report the gateway could place only at
/// county level (no street named) may be any street's incident. Region codes nest: a
/// street's code starts with its county's.
fn regions_compatible(a: &str, b: &str) -> bool {
    a == b || (((a.len() < b.len() && b.starts_with(a)) || (b.len() < a.len() && a.starts_with(b))))
}

/// Whether two reports' problem words can name one problem. Unknown on either side: yes.
/// Otherwise a shared word, or keywords sharing a morpheme: Chinese compounds that share
/// a character name related things (摊贩 / 流动摊点, 道路 / 路面, 水管 / 漏水), while
/// another problem at the same place shares none (井盖 / 摊贩, 公交 / 坑洼).
fn problems_related(a: &[String], b: &[String]) -> bool {
    if a.is_empty() || b.is_empty() || a.iter().any(|p| b.contains(p)) {
        return true;
    }
    let keywords = |w: &[String]| -> Vec<String> {
        w.iter()
            .filter_map(|p| p.strip_prefix("keyword:").map(str::to_string))
            .collect()
    };
    let (ka, kb) = (keywords(a), keywords(b));
    if ka.is_empty() || kb.is_empty() {
        return true;
    }
    ka.iter()
        .any(|x| kb.iter().any(|y| x.chars().any(|ch| y.contains(ch))))
}

/// County codes are six digits, street codes nine (GB/T 2260 plus the street part).
fn is_county(region: &str) -> bool {
    region.len() <= 6
}

impl Deduper {
    pub fn new(settings: DedupeSettings) -> Self {
        Self {
            settings,
            buckets: HashMap::new(),
        }
    }

    /// Open cases held (those past the window are dropped lazily, as new cases open).
    pub fn len(&self) -> usize {
        self.buckets.values().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Which open case, if any, this report joins. Changes nothing: the caller calls
    /// `open` or `merged` once the decision is durable.
    pub fn decide(&self, r: &Report<'_>) -> Option<MergeDecision> {
        let f = features(r.text);
        let s = self.settings;
        let triage = crate::dispatch::router::TRIAGE;
        let mut best: Option<(&OpenCase, f64, Vec<String>)> = None;
        let mut streets: Vec<&str> = Vec::new();
        let buckets = self
            .buckets
            .iter()
            .filter(|(region, _)| regions_compatible(region, r.region));
        for (region, c) in buckets.flat_map(|(region, b)| b.iter().map(move |c| (region, c))) {
            if r.at_unix - c.opened_at > s.window_secs {
                continue;
            }
            // A report the router could not place may join any case, and any report may
            // join a case still in triage: routing is not what makes an incident.
            let compatible =
                c.department == r.department || c.department == triage || r.department == triage;
            if !compatible || place_conflict(&f, &c.features).is_some() {
                continue;
            }
            let score = jaccard(&f.bigrams, &c.features.bigrams);
            // Different problem words and different wording: another problem at that place.
            let other_problem =
                !problems_related(r.problem, &c.problem) && score < s.min_similarity_other_words;
            if other_problem {
                continue;
            }
            let places = shared_places(&f, &c.features);
            if !places.iter().any(|p| !p.starts_with("side:")) {
                continue;
            }
            // A business named without its town (远洋食品厂) may be any of the branches or
            // namesakes in the county's towns: across county and street level only a
            // building or road places it.
            let across_levels = is_county(region) != is_county(r.region);
            if across_levels && places.iter().all(|p| p.starts_with("entity:")) {
                continue;
            }
            if score < s.min_similarity_with_place {
                continue;
            }
            if !streets.contains(&region.as_str()) {
                streets.push(region);
            }
            let better = best.as_ref().is_none_or(|b| {
                (score, c.opened_at, &c.case_id) > (b.1, b.0.opened_at, &b.0.case_id)
            });
            if better {
                best = Some((c, score, places));
            }
        }
        // A report placed only at county level that fits open cases of two streets could
        // be either: the same business or crossing exists in several towns.
        if is_county(r.region) && streets.iter().filter(|s| !is_county(s)).count() > 1 {
            return None;
        }
        best.map(|(c, score, matched)| MergeDecision {
            case_id: c.case_id.clone(),
            score: (score * 1000.0).round() / 1000.0,
            matched,
        })
    }

    /// Opens a case (a report that merged nowhere, or a case restored after a restart).
    pub fn open(&mut self, seed: &CaseSeed) {
        let window = self.settings.window_secs;
        let bucket = self.buckets.entry(seed.region.clone()).or_default();
        bucket.retain(|c| seed.opened_at - c.opened_at <= window);
        bucket.push(OpenCase {
            case_id: seed.case_id.clone(),
            department: seed.department.clone(),
            problem: seed.problem.clone(),
            opened_at: seed.opened_at,
            features: features(&seed.text),
        });
    }

    /// A report joined `case_id`: the case learns what its first report left open. A
    /// case opened at county level takes the street of the first report that names one,
    /// and each place detail the case lacked (community, building, road…) is taken from
    /// the first report that gives it: from then on another street, community or
    /// building is another incident. Restore replays these calls in order.
    pub fn merged(&mut self, case_id: &str, report: &Report<'_>) {
        let Some((region, at)) = self.buckets.iter().find_map(|(region, b)| {
            b.iter()
                .position(|c| c.case_id == case_id)
                .map(|i| (region.clone(), i))
        }) else {
            return;
        };
        let Some(bucket) = self.buckets.get_mut(&region) else {
            return;
        };
        let f = features(report.text);
        let case = &mut bucket[at];
        case.features.learn(&f);
        let pin = is_county(&region)
            && !is_county(report.region)
            && report.region.starts_with(region.as_str());
        if pin {
            let case = bucket.remove(at);
            self.buckets
                .entry(report.region.to_string())
                .or_default()
                .push(case);
        }
    }

    /// Decides and applies in one step (replay and tests).
    pub fn decide_and_apply(&mut self, case_id: &str, r: &Report<'_>) -> Option<MergeDecision> {
        let decision = self.decide(r);
        match &decision {
            Some(m) => self.merged(&m.case_id, r),
            None => self.open(&CaseSeed {
                case_id: case_id.to_string(),
                region: r.region.to_string(),
                department: r.department.to_string(),
                opened_at: r.at_unix,
                text: r.text.to_string(),
                problem: r.problem.to_vec(),
            }),
        }
        decision
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 24 * 3600;

    fn words(w: &[&str]) -> Vec<String> {
        w.iter().map(|s| format!("keyword:{s}")).collect()
    }

    #[test]
    fn the_same_building_reported_again_joins_the_case() {
        let mut d = Deduper::default();
        let heat = words(&["暖气"]);
        assert_eq!(
            d.decide_and_apply(
                "c1",
                &Report {
                    region: "371082003",
                    department: "heating",
                    at_unix: 0,
                    text: "宁津街道东墩村4号楼暖气不热，一个星期一直这样",
                    problem: &heat
                }
            ),
            None
        );
        let m = d
            .decide_and_apply(
                "c2",
                &Report {
                    region: "371082003",
                    department: "heating",
                    at_unix: DAY,
                    text: "荣成市宁津街道东墩村四号楼3单元暖气不热，三天一直这样",
                    problem: &heat,
                },
            )
            .expect("merged");
        assert_eq!(m.case_id, "c1");
        assert!(m.matched.contains(&"building:4".to_string()), "{m:?}");
    }

    #[test]
    fn another_building_road_or_street_is_another_incident() {
        let mut d = Deduper::default();
        let w = words(&["电梯"]);
        d.decide_and_apply(
            "c1",
            &Report {
                region: "371082002",
                department: "housing",
                at_unix: 0,
                text: "蜊江社区2号楼5单元电梯停用两个月",
                problem: &w,
            },
        );
        assert_eq!(
            d.decide_and_apply(
                "c2",
                &Report {
                    region: "371082002",
                    department: "housing",
                    at_unix: DAY,
                    text: "城西街道蜊江社区一号楼6单元电梯停用两个月",
                    problem: &w
                }
            ),
            None
        );
        // The same text in another street's bucket never meets the first.
        assert_eq!(
            d.decide_and_apply(
                "c3",
                &Report {
                    region: "371082005",
                    department: "housing",
                    at_unix: DAY,
                    text: "蜊江社区2号楼5单元电梯停用两个月",
                    problem: &w
                }
            ),
            None
        );
    }

    #[test]
    fn reports_that_name_no_place_never_merge() {
        let mut d = Deduper::default();
        d.decide_and_apply(
            "c1",
            &Report {
                region: "371082",
                department: "triage",
                at_unix: 0,
                text: "你们办事效率太低了，我反映的问题一直没人管。",
                problem: &[],
            },
        );
        assert_eq!(
            d.decide_and_apply(
                "c2",
                &Report {
                    region: "371082",
                    department: "triage",
                    at_unix: DAY,
                    text: "你们办事效率太低了，我反映的问题一直没人管。",
                    problem: &[]
                }
            ),
            None
        );
    }

    #[test]
    fn cases_close_to_new_reports_after_the_window() {
        let mut d = Deduper::default();
        let w = words(&["暖气"]);
        d.decide_and_apply(
            "c1",
            &Report {
                region: "371082003",
                department: "heating",
                at_unix: 0,
                text: "东墩村4号楼暖气不热",
                problem: &w,
            },
        );
        assert_eq!(
            d.decide_and_apply(
                "c2",
                &Report {
                    region: "371082003",
                    department: "heating",
                    at_unix: 8 * DAY,
                    text: "东墩村4号楼暖气不热",
                    problem: &w
                }
            ),
            None
        );
    }
}
