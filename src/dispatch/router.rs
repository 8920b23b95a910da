//! Routing by the responsibility list: pure logic, explained in every decision.
//!
//! Evidence is scored per department: the center's category code (strongest), the
//! channel's own category label, then distinct keywords in the title and text. Street
//! offices only compete for petitions in their region. The best score wins; no evidence
//! or a tie goes to triage, because a wrong department is worse than the center deciding.

use super::responsibility::{canonical_urgency, ResponsibilityList};
use crate::petition::Petition;
use serde::{Deserialize, Serialize};

const CATEGORY_WEIGHT: u32 = 100;
const LABEL_WEIGHT: u32 = 10;
const KEYWORD_WEIGHT: u32 = 1;

/// Where routing sends a petition when no department owns it.
pub const TRIAGE: &str = "triage";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    Category,
    ChannelLabel,
    Keywords,
    NoMatch,
    Tie,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Candidate {
    pub department: String,
    pub score: u32,
    pub matched: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoutingDecision {
    /// A department code, or `triage`.
    pub department: String,
    /// The department's topic (without any deployment prefix); `None` for triage.
    pub topic: Option<String>,
    pub rule: Rule,
    pub score: u32,
    pub matched: Vec<String>,
    /// The best-scoring departments, for the center to see why.
    pub candidates: Vec<Candidate>,
    /// The petition's category code, or the one category of the department it was routed
    /// to when the channel gave none (then `category_inferred` is true).
    pub category: Option<String>,
    #[serde(default)]
    pub category_inferred: bool,
    pub escalate: bool,
    pub escalation_reasons: Vec<String>,
}

pub struct Router {
    list: ResponsibilityList,
}

impl Router {
    pub fn new(list: ResponsibilityList) -> Self {
        Self { list }
    }

    pub fn list(&self) -> &ResponsibilityList {
        &self.list
    }

    /// The evidence that tells one problem from another within the decided department:
    /// only meaningful where that department owns several categories (路灯 vs 占道经营);
    /// elsewhere different words are synonyms (供暖 / 暖气) and nothing is returned.
    pub fn problem_words<'a>(&self, decision: &'a RoutingDecision) -> &'a [String] {
        let several = self
            .list
            .department(&decision.department)
            .is_some_and(|d| d.categories.len() > 1);
        if several {
            &decision.matched
        } else {
            &[]
        }
    }

    pub fn route(&self, p: &Petition) -> RoutingDecision {
        let text = match &p.title {
            Some(title) => format!("{title}\n{}", p.text),
            None => p.text.clone(),
        };
        let keyword_hits = self.keyword_hits(&text);
        let region = p.location.region.code.as_str();

        let mut candidates: Vec<Candidate> = Vec::new();
        for (i, d) in self.list.departments.iter().enumerate() {
            if !d.regions.is_empty() && !d.regions.iter().any(|r| r == region) {
                continue;
            }
            let mut score = 0;
            let mut matched = Vec::new();
            if let Some(c) = &p.category {
                if d.categories.contains(c) {
                    score += CATEGORY_WEIGHT;
                    matched.push(format!("category:{c}"));
                }
            }
            if let Some(label) = &p.category_label {
                if d.channel_labels.iter().any(|l| l == label) {
                    score += LABEL_WEIGHT;
                    matched.push(format!("label:{label}"));
                }
            }
            for k in keyword_hits.iter().filter(|h| h.department == i) {
                score += KEYWORD_WEIGHT;
                matched.push(format!("keyword:{}", k.keyword));
            }
            if score > 0 {
                candidates.push(Candidate {
                    department: d.code.clone(),
                    score,
                    matched,
                });
            }
        }
        candidates.sort_by(|a, b| b.score.cmp(&a.score).then(a.department.cmp(&b.department)));
        candidates.truncate(5);

        // A department that owns a single category names the category too.
        let winner = match candidates.as_slice() {
            [first, second, ..] if first.score == second.score => None,
            [best, ..] => self.list.department(&best.department),
            [] => None,
        };
        let inferred = match (&p.category, winner) {
            (None, Some(d)) if d.categories.len() == 1 => d.categories.first().cloned(),
            _ => None,
        };
        let category_inferred = inferred.is_some();
        let category = p.category.clone().or(inferred);
        let (escalate, escalation_reasons) = self.escalation(p, category.as_deref(), &text);
        let triage = |rule| RoutingDecision {
            department: TRIAGE.into(),
            topic: None,
            rule,
            score: candidates.first().map_or(0, |c| c.score),
            matched: Vec::new(),
            candidates: candidates.clone(),
            category: category.clone(),
            category_inferred,
            escalate,
            escalation_reasons: escalation_reasons.clone(),
        };
        match candidates.as_slice() {
            [] => triage(Rule::NoMatch),
            [first, second, ..] if first.score == second.score => triage(Rule::Tie),
            [best, ..] => {
                let rule = if best.matched.iter().any(|m| m.starts_with("category:")) {
                    Rule::Category
                } else if best.matched.iter().any(|m| m.starts_with("label:")) {
                    Rule::ChannelLabel
                } else {
                    Rule::Keywords
                };
                let topic = self
                    .list
                    .department(&best.department)
                    .map(|d| d.topic.clone());
                RoutingDecision {
                    department: best.department.clone(),
                    topic,
                    rule,
                    score: best.score,
                    matched: best.matched.clone(),
                    candidates: candidates.clone(),
                    category,
                    category_inferred,
                    escalate,
                    escalation_reasons,
                }
            }
        }
    }

    /// Keyword occurrences, without those inside a longer matched keyword: in 漏水到
    /// (a neighbour's leak, a street-office matter) the 漏水 of the water company is not
    /// separate evidence.
    fn keyword_hits(&self, text: &str) -> Vec<KeywordHit<'_>> {
        let mut spans: Vec<(usize, usize, usize, &str)> = Vec::new();
        for (i, d) in self.list.departments.iter().enumerate() {
            for k in &d.keywords {
                for (pos, _) in text.match_indices(k.as_str()) {
                    spans.push((pos, pos + k.len(), i, k.as_str()));
                }
            }
        }
        let mut hits: Vec<KeywordHit<'_>> = Vec::new();
        for &(start, end, dept, keyword) in &spans {
            let covered = spans
                .iter()
                .any(|&(s, e, _, _)| s <= start && e >= end && (e - s) > (end - start));
            if covered
                || hits
                    .iter()
                    .any(|h| h.department == dept && h.keyword == keyword)
            {
                continue;
            }
            hits.push(KeywordHit {
                department: dept,
                keyword,
            });
        }
        hits
    }

    fn escalation(&self, p: &Petition, category: Option<&str>, text: &str) -> (bool, Vec<String>) {
        let rules = &self.list.escalation;
        let mut reasons = Vec::new();
        if rules.channels.iter().any(|c| c == &p.channel) {
            reasons.push(format!("channel:{}", p.channel));
        }
        if rules
            .urgency
            .iter()
            .any(|u| canonical_urgency(u) == Some(p.urgency.as_str()))
        {
            reasons.push(format!("urgency:{}", p.urgency));
        }
        if let Some(c) = category {
            if rules.categories.iter().any(|r| r == c) {
                reasons.push(format!("category:{c}"));
            }
        }
        for k in &rules.keywords {
            if text.contains(k.as_str()) {
                reasons.push(format!("keyword:{k}"));
            }
        }
        (!reasons.is_empty(), reasons)
    }
}

struct KeywordHit<'a> {
    department: usize,
    keyword: &'a str,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::normalize::region::Gazetteer;
    use crate::petition::{Location, Region, RegionLevel, Reporter, ResolvedBy};
    use std::path::Path;

    fn router() -> Router {
        let root = env!("CARGO_MANIFEST_DIR");
        let g = Gazetteer::load(&Path::new(root).join("config/gazetteer.toml"))
            .unwrap_or_else(|e| panic!("{e}"));
        let list = super::super::responsibility::ResponsibilityList::load(
            &Path::new(root).join("config/responsibility.toml"),
            &g,
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
        Router::new(list)
    }

    fn petition(text: &str, region: &str) -> Petition {
        Petition {
            id: "p".into(),
            channel: "hotline".into(),
            source_id: "s".into(),
            received_at: "2026-11-24T09:00:00+08:00".into(),
            reported_at: "2026-11-24T09:00:00+08:00".into(),
            kind: "complaint".into(),
            title: None,
            text: text.into(),
            category: None,
            category_label: None,
            urgency: "normal".into(),
            reporter: Reporter::default(),
            location: Location {
                address: None,
                grid_code: None,
                region: Region {
                    code: region.into(),
                    name: None,
                    level: if region.len() == 9 {
                        RegionLevel::Street
                    } else {
                        RegionLevel::County
                    },
                    resolved_by: ResolvedBy::Text,
                    matched: None,
                },
            },
            attachments: vec![],
            trace_id: "0".repeat(32),
        }
    }

    #[test]
    fn keywords_route_to_the_owning_department() {
        let d = router().route(&petition("小区供暖温度只有14度，暖气不热", "371082022"));
        assert_eq!(d.department, "heating");
        assert_eq!(d.rule, Rule::Keywords);
        assert_eq!(d.topic.as_deref(), Some("dept.heating"));
        assert!(d.matched.contains(&"keyword:暖气".to_string()), "{d:?}");
    }

    #[test]
    fn community_matters_go_to_the_street_office_of_the_region() {
        let d = router().route(&petition("3号楼楼道堆放杂物，影响通行", "371082007"));
        assert_eq!(d.department, "street-007");
        // Without a known street no street office applies: the center decides.
        let d = router().route(&petition("3号楼楼道堆放杂物，影响通行", "371082"));
        assert_eq!(d.department, TRIAGE);
    }

    #[test]
    fn a_longer_keyword_hides_the_shorter_one_inside_it() {
        let d = router().route(&petition("楼上漏水到我家，邻居不理", "371082010"));
        assert_eq!(d.department, "street-010", "{d:?}");
    }

    #[test]
    fn a_category_code_beats_keywords() {
        let mut p = petition("路灯不亮，路面也坏了，道路坑洼", "371082001");
        p.category = Some("urban.streetlight".into());
        let d = router().route(&p);
        assert_eq!(d.department, "urban-management");
        assert_eq!(d.rule, Rule::Category);
    }

    #[test]
    fn a_shared_channel_label_alone_is_a_tie() {
        let mut p = petition("有个问题想反映一下", "371082001");
        p.category_label = Some("城建".into());
        let d = router().route(&p);
        assert_eq!(d.department, TRIAGE);
        assert_eq!(d.rule, Rule::Tie);
    }

    #[test]
    fn nothing_recognisable_goes_to_triage() {
        let d = router().route(&petition("想咨询一下办事流程", "371082"));
        assert_eq!(d.department, TRIAGE);
        assert_eq!(d.rule, Rule::NoMatch);
        assert_eq!(d.topic, None);
    }

    #[test]
    fn a_single_category_department_names_the_category_and_its_escalation() {
        let d = router().route(&petition(
            "宏远机械厂拖欠我们中小企业工程款两个月",
            "371082001",
        ));
        assert_eq!(d.department, "business");
        assert_eq!(d.category.as_deref(), Some("business.arrears"));
        assert!(d.category_inferred);
        assert!(
            d.escalation_reasons
                .contains(&"category:business.arrears".to_string()),
            "{d:?}"
        );
        // Departments with several categories infer nothing.
        let d = router().route(&petition("小区供水停水三天", "371082001"));
        assert_eq!(d.department, "water");
        assert_eq!(d.category, None);
    }

    #[test]
    fn escalation_rules_apply_besides_routing() {
        let mut p = petition("小区燃气泄漏，味道很大", "371082001");
        p.urgency = "critical".into();
        let d = router().route(&p);
        assert!(d.escalate);
        assert!(d
            .escalation_reasons
            .contains(&"urgency:critical".to_string()));
        assert!(d
            .escalation_reasons
            .contains(&"keyword:燃气泄漏".to_string()));
        let d = router().route(&petition("路灯不亮", "371082001"));
        assert!(!d.escalate);
    }
}
