//! Routing by the responsibility list: pure logic, explained in every decision.
//!
//! Evidence is scored per department: the center's category code (strongest), the
//! channel's own category label, then distinct keywords in the title and text. Street
//! offices only compete for petitions in their region. The best score wins; no evidence
//! or a tie goes to triage, because a wrong department is worse than the center deciding.
//!
//! The list is the center's and is used as written; what the code adds is how to read a
//! petition against it: a keyword must be a word of the text (not part of a road name, not
//! the effect word after another department's problem word), a leak that comes from a
//! neighbour is the list's neighbour leak (漏水到), and a channel label is only as strong
//! as it is specific (a label several departments share, or one the text contradicts,
//! counts like a keyword; a label the list does not know is read for keywords).

use super::responsibility::{canonical_urgency, ResponsibilityList};
use crate::petition::Petition;
use serde::{Deserialize, Serialize};

const CATEGORY_WEIGHT: u32 = 100;
const LABEL_WEIGHT: u32 = 10;
const KEYWORD_WEIGHT: u32 = 1;

/// Who a citizen names when a neighbour causes the problem (楼上漏水: the flat above leaks).
const NEIGHBOUR_SOURCES: &[&str] = &["楼上", "楼下", "邻居", "隔壁", "对门"];

/// Everyday words for a list keyword, written with one character changed: (as citizens
/// write it, as the list writes it). They count as the list's keyword wherever the list
/// has it, so the list stays the only source of which department owns what.
const KEYWORD_VARIANTS: &[(&str, &str)] = &[("邻居", "邻里"), ("臭气", "臭味")];

/// Clause boundaries: a neighbour named in one clause is not the subject of the next.
const CLAUSE_ENDS: &[char] = &['，', '。', '；', '！', '？', ',', ';', '!', '?', '\n'];

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
    /// The list left it to triage; the model learned from the center's assignments
    /// decided (see `learned`).
    Learned,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Candidate {
    pub department: String,
    pub score: u32,
    pub matched: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    /// Why the learned model decided, when it did (rule `learned`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub learned: Option<Box<super::learning::Suggestion>>,
}

pub struct Router {
    list: ResponsibilityList,
    keywords: KeywordSearch,
}

/// Every department's keywords (and their everyday variants) in one automaton, so a text
/// is read once however long the list is: searching keyword by keyword was 80% of
/// routing's time (`cargo bench --bench pipeline`).
struct KeywordSearch {
    automaton: Option<aho_corasick::AhoCorasick>,
    /// Per pattern: the department and the list's keyword it stands for.
    patterns: Vec<(usize, String)>,
}

impl KeywordSearch {
    fn new(list: &ResponsibilityList) -> Self {
        let mut texts: Vec<&str> = Vec::new();
        let mut patterns = Vec::new();
        // Department, then keyword, then its variants: the order of the spans found.
        for (i, d) in list.departments.iter().enumerate() {
            for k in &d.keywords {
                texts.push(k);
                patterns.push((i, k.clone()));
                for (variant, _) in KEYWORD_VARIANTS.iter().filter(|(_, of)| of == k) {
                    texts.push(variant);
                    patterns.push((i, k.clone()));
                }
            }
        }
        // Patterns are plain strings, well under the automaton's size limits; should
        // building still fail, routing falls back to the per-keyword scan.
        let automaton = aho_corasick::AhoCorasick::new(&texts).ok();
        Self {
            automaton,
            patterns,
        }
    }
}

impl Router {
    pub fn new(list: ResponsibilityList) -> Self {
        let keywords = KeywordSearch::new(&list);
        Self { list, keywords }
    }

    pub fn list(&self) -> &ResponsibilityList {
        &self.list
    }

    /// The evidence that tells one problem from another within the decided department:
    /// only meaningful where that department owns several categories (路灯 vs 占道经营);
    /// elsewhere different words are synonyms (供暖 / 暖气) and nothing is returned.
    pub fn problem_words(&self, decision: &RoutingDecision) -> Vec<String> {
        let Some(department) = self
            .list
            .department(&decision.department)
            .filter(|d| d.categories.len() > 1)
        else {
            return Vec::new();
        };
        let mut words = decision.matched.clone();
        // Synonyms (臭味 for 废气) are written as the group's first keyword too, so that
        // the deduper finds them shared.
        for m in &decision.matched {
            if let Some(same) = m
                .strip_prefix("keyword:")
                .and_then(|keyword| department.synonym_of(keyword))
            {
                let word = format!("keyword:{same}");
                if !words.contains(&word) {
                    words.push(word);
                }
            }
        }
        words
    }

    pub fn route(&self, p: &Petition) -> RoutingDecision {
        let text = match &p.title {
            Some(title) => format!("{title}\n{}", p.text),
            None => p.text.clone(),
        };
        // A label the list does not know (社区/邻里纠纷) is the channel's words for the
        // problem: read it for keywords like the text.
        let label_owners = p.category_label.as_ref().map_or(0, |label| {
            self.list
                .departments
                .iter()
                .filter(|d| d.channel_labels.iter().any(|l| l == label))
                .count()
        });
        let keyword_text = match &p.category_label {
            Some(label) if label_owners == 0 => format!("{label}\n{text}"),
            _ => text.clone(),
        };
        let keyword_hits = self.keyword_hits(&keyword_text);
        let region = p.location.region.code.as_str();
        let eligible = |d: &super::responsibility::Department| {
            d.regions.is_empty() || d.regions.iter().any(|r| r == region)
        };
        // A label owned by one department is strong evidence, unless the text names
        // another department's problem and nothing of the labeled one (环境卫生 on a
        // corridor full of boxes): then the channel's coarse label counts like a keyword.
        let keywords_of = |i: usize| keyword_hits.iter().filter(|h| h.department == i).count();
        let contradicted = |i: usize| {
            keywords_of(i) == 0
                && self
                    .list
                    .departments
                    .iter()
                    .enumerate()
                    .any(|(j, d)| j != i && eligible(d) && keywords_of(j) > 0)
        };

        let mut candidates: Vec<Candidate> = Vec::new();
        for (i, d) in self.list.departments.iter().enumerate() {
            if !eligible(d) {
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
                    // A label several departments share (城建) tells them apart no better
                    // than a keyword does.
                    score += if label_owners > 1 || contradicted(i) {
                        KEYWORD_WEIGHT
                    } else {
                        LABEL_WEIGHT
                    };
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
        // Escalation does not hang on routing: left to triage, the petition still says
        // what it is about, and a department it names the matters of that owns a single
        // category names that category (拖欠账款 next to 农民工: a tie, and arrears).
        let named_categories: Vec<&str> = match (&category, winner) {
            (None, None) => candidates
                .iter()
                .filter_map(|c| self.list.department(&c.department))
                .filter_map(|d| match d.categories.as_slice() {
                    [only] => Some(only.as_str()),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        };
        let (escalate, escalation_reasons) =
            self.escalation(p, category.as_deref(), &named_categories, &text);
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
            learned: None,
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
                    learned: None,
                }
            }
        }
    }

    /// A decision the list left to triage, taken by the learned model's suggestion: the
    /// department, its topic and (for a department owning one category) the category.
    pub fn learned(
        &self,
        mut decision: RoutingDecision,
        suggestion: super::learning::Suggestion,
    ) -> RoutingDecision {
        let department = self.list.department(&suggestion.department);
        decision.topic = department.map(|d| d.topic.clone());
        if decision.category.is_none() {
            if let Some([only]) = department.map(|d| d.categories.as_slice()) {
                decision.category = Some(only.clone());
                decision.category_inferred = true;
            }
        }
        decision.department = suggestion.department.clone();
        decision.rule = Rule::Learned;
        decision.matched = vec![format!("model:v{}", suggestion.model_version)];
        decision
            .matched
            .extend(suggestion.words.iter().map(|w| format!("learned:{w}")));
        decision.learned = Some(Box::new(suggestion));
        decision
    }

    /// Every occurrence of a list keyword or variant, in the order of the list (department,
    /// keyword, variant) and by position within one pattern; the occurrences of one
    /// pattern do not overlap (as `str::match_indices` finds them).
    fn keyword_spans(&self, text: &str) -> Vec<Span> {
        let Some(automaton) = &self.keywords.automaton else {
            return self.keyword_spans_by_scan(text);
        };
        let mut found: Vec<(usize, usize, usize)> = automaton
            .find_overlapping_iter(text)
            .map(|m| (m.pattern().as_usize(), m.start(), m.end()))
            .collect();
        found.sort_unstable();
        let mut spans: Vec<Span> = Vec::with_capacity(found.len());
        let mut last: Option<(usize, usize)> = None;
        for (pattern, start, end) in found {
            if last.is_some_and(|(p, e)| p == pattern && start < e) {
                continue;
            }
            last = Some((pattern, end));
            let (department, keyword) = &self.keywords.patterns[pattern];
            spans.push(Span::new(start, end - start, *department, keyword));
        }
        spans
    }

    /// The same occurrences, keyword by keyword (without the automaton).
    fn keyword_spans_by_scan(&self, text: &str) -> Vec<Span> {
        let mut spans: Vec<Span> = Vec::new();
        for (i, d) in self.list.departments.iter().enumerate() {
            for k in &d.keywords {
                for (pos, _) in text.match_indices(k.as_str()) {
                    spans.push(Span::new(pos, k.len(), i, k));
                }
                for (variant, _) in KEYWORD_VARIANTS.iter().filter(|(_, of)| of == k) {
                    for (pos, _) in text.match_indices(variant) {
                        spans.push(Span::new(pos, variant.len(), i, k));
                    }
                }
            }
        }
        spans
    }

    /// Keyword occurrences that are words of the text, one per (department, keyword).
    ///
    /// - A keyword inside a longer matched keyword does not count: in 漏水到 (a
    ///   neighbour's leak, a street-office matter) the 漏水 of the water company is not
    ///   separate evidence.
    /// - A keyword overlapping a road name is not a word: 成山大道路口 holds 道路.
    /// - A keyword right after another department's keyword is the effect of that problem,
    ///   not a problem of its own: 油烟扰民 is cooking fumes, not night noise.
    /// - A keyword whose clause names a neighbour before it (楼上卫生间漏水) is the
    ///   neighbour's version of the problem when the list has one (keyword + 到, 漏水到).
    fn keyword_hits(&self, text: &str) -> Vec<KeywordHit> {
        let mut spans = self.keyword_spans(text);
        let roads = crate::dispatch::dedupe::features::road_spans(text);
        spans.retain(|s| !roads.iter().any(|&(rs, re)| s.start < re && rs < s.end));
        let longest: Vec<Span> = spans
            .iter()
            .filter(|a| {
                !spans.iter().any(|b| {
                    b.start <= a.start && b.end >= a.end && (b.end - b.start) > (a.end - a.start)
                })
            })
            .cloned()
            .collect();
        let mut hits: Vec<KeywordHit> = Vec::new();
        for a in &longest {
            let effect = longest.iter().any(|b| {
                b.end == a.start
                    && b.department != a.department
                    && !self.list.departments[b.department]
                        .keywords
                        .contains(&a.keyword)
            });
            if effect {
                continue;
            }
            let owners = match self.neighbour_version(text, a) {
                Some((version, owners)) => {
                    owners.into_iter().map(|d| (d, version.clone())).collect()
                }
                None => vec![(a.department, a.keyword.clone())],
            };
            for (department, keyword) in owners {
                if hits
                    .iter()
                    .any(|h| h.department == department && h.keyword == keyword)
                {
                    continue;
                }
                hits.push(KeywordHit {
                    department,
                    keyword,
                });
            }
        }
        hits
    }

    /// The list's neighbour version (keyword + 到) of a keyword whose clause names a
    /// neighbour before it, with the departments that own it (every street office; the
    /// region picks one later).
    fn neighbour_version(&self, text: &str, s: &Span) -> Option<(String, Vec<usize>)> {
        let clause_start = text[..s.start].rfind(CLAUSE_ENDS).map_or(0, |p| {
            p + text[p..].chars().next().map_or(1, char::len_utf8)
        });
        let clause = &text[clause_start..s.start];
        if !NEIGHBOUR_SOURCES.iter().any(|n| clause.contains(n)) {
            return None;
        }
        let version = format!("{}到", s.keyword);
        let owners: Vec<usize> = self
            .list
            .departments
            .iter()
            .enumerate()
            .filter(|(_, d)| d.keywords.contains(&version))
            .map(|(i, _)| i)
            .collect();
        (!owners.is_empty()).then_some((version, owners))
    }

    /// The escalation rules: the channel, the urgency, the category (the petition's own or
    /// routing's; for one left to triage, those its candidate departments name) and the
    /// keywords, whatever the routing.
    fn escalation(
        &self,
        p: &Petition,
        category: Option<&str>,
        named_categories: &[&str],
        text: &str,
    ) -> (bool, Vec<String>) {
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
        for c in category.iter().chain(named_categories) {
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

struct KeywordHit {
    department: usize,
    keyword: String,
}

/// One occurrence of a list keyword (or a variant of it) in the text, in bytes.
#[derive(Clone)]
struct Span {
    start: usize,
    end: usize,
    department: usize,
    keyword: String,
}

impl Span {
    fn new(start: usize, len: usize, department: usize, keyword: &str) -> Self {
        Self {
            start,
            end: start + len,
            department,
            keyword: keyword.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::normalize::region::Gazetteer;
    use crate::petition::{Location, Region, RegionLevel, Reporter, ResolvedBy};
    use std::path::Path;

    fn strings(value: &serde_json::Value, out: &mut Vec<String>) {
        match value {
            serde_json::Value::String(s) => out.push(s.clone()),
            serde_json::Value::Array(a) => a.iter().for_each(|v| strings(v, out)),
            serde_json::Value::Object(o) => o.values().for_each(|v| strings(v, out)),
            _ => {}
        }
    }

    /// The automaton finds the same keyword occurrences, in the same order, as the search
    /// keyword by keyword, on every string of every sample petition (and on repeats).
    #[test]
    fn the_automaton_finds_what_the_keyword_scan_finds() {
        let r = router();
        let sample = crate::sample::sample_path();
        let lines = std::fs::read_to_string(&sample)
            .unwrap_or_else(|e| panic!("{}: {e}", sample.display()));
        let mut texts = Vec::new();
        for line in lines.lines() {
            let value: serde_json::Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}"));
            strings(&value["payload"], &mut texts);
        }
        texts.push("邻居家漏水漏水到我家，臭气臭味，噪音噪音噪音".into());
        let key = |spans: Vec<Span>| -> Vec<(usize, usize, usize, String)> {
            spans
                .into_iter()
                .map(|s| (s.start, s.end, s.department, s.keyword))
                .collect()
        };
        let mut found = 0;
        for t in &texts {
            let fast = key(r.keyword_spans(t));
            assert_eq!(fast, key(r.keyword_spans_by_scan(t)), "{t}");
            found += fast.len();
        }
        assert!(
            texts.len() > 2000 && found > 1000,
            "{} texts, {found} spans",
            texts.len()
        );
    }

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
            reported_at_unknown: false,
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

    #[test]
    fn an_escalating_category_fires_also_when_routing_leaves_the_petition_to_triage() {
        // Arrears (business, escalated) and migrant workers (hrss) weigh the same.
        let p = petition("工地拖欠账款，农民工也没拿到钱", "371082001");
        let d = router().route(&p);
        assert_eq!(d.department, TRIAGE, "{:?}", d.candidates);
        assert!(d.escalate, "{:?}", d.candidates);
        assert_eq!(d.escalation_reasons, vec!["category:business.arrears"]);
        // A tie between departments whose categories do not escalate stays as it was.
        let d = router().route(&petition("路灯不亮，公交也不来", "371082001"));
        assert_eq!(d.department, TRIAGE, "{:?}", d.candidates);
        assert!(!d.escalate, "{:?}", d.escalation_reasons);
    }

    #[test]
    fn a_keyword_inside_a_road_name_is_not_evidence() {
        // 海湾路成山大道路口 holds 道路 across the road name: not a road complaint.
        let d = router().route(&petition(
            "海湾路成山大道路口的井盖被人偷走了，晚上骑车的人差点摔进去",
            "371082004",
        ));
        assert_eq!(d.department, "urban-management", "{d:?}");
        assert!(
            !d.candidates.iter().any(|c| c.department == "transport"),
            "{d:?}"
        );
    }

    #[test]
    fn the_word_after_a_problem_is_its_effect() {
        // 油烟扰民: fumes that disturb residents are the environment bureau's, not noise.
        let d = router().route(&petition(
            "小区门口新开的烤串店油烟扰民，每天晚上呛得开不了窗",
            "371082005",
        ));
        assert_eq!(d.department, "environment", "{d:?}");
    }

    #[test]
    fn a_leak_from_a_neighbour_is_a_neighbour_matter() {
        let d = router().route(&petition(
            "楼上邻居家卫生间漏水，把我家天花板泡坏了",
            "371082006",
        ));
        assert_eq!(d.department, "street-006", "{d:?}");
        assert!(d.matched.contains(&"keyword:漏水到".to_string()), "{d:?}");
        // Night noise from the flat above stays with the police: the list has no
        // neighbour version of it.
        let d = router().route(&petition(
            "楼上每天夜里两点还在大声喧哗，吵得全家没法睡",
            "371082006",
        ));
        assert_eq!(d.department, "public-security", "{d:?}");
        // A burst main in the street is the water company's.
        let d = router().route(&petition("小区门口的自来水管爆了，一直在漏水", "371082006"));
        assert_eq!(d.department, "water", "{d:?}");
    }

    #[test]
    fn synonyms_count_as_their_groups_first_keyword_for_the_deduper() {
        let r = router();
        let d = r.route(&petition(
            "远洋食品厂一到晚上就排放臭气，头疼恶心",
            "371082005",
        ));
        assert_eq!(d.department, "environment", "{d:?}");
        let words = r.problem_words(&d);
        assert!(words.contains(&"keyword:臭味".to_string()), "{words:?}");
        // 臭味 and 废气 share no character; the list says they name one problem.
        assert!(words.contains(&"keyword:废气".to_string()), "{words:?}");
        // 污水 is in no group: nothing is added.
        let d = r.route(&petition("远洋食品厂的污水直接排进河里", "371082005"));
        assert_eq!(r.problem_words(&d), d.matched, "{d:?}");
    }

    #[test]
    fn everyday_variants_count_as_the_list_keyword() {
        let d = router().route(&petition(
            "工业园有家化工厂夜里排出刺鼻的臭气，熏得人头晕",
            "371082021",
        ));
        assert_eq!(d.department, "environment", "{d:?}");
        assert!(d.matched.contains(&"keyword:臭味".to_string()), "{d:?}");
    }

    #[test]
    fn a_shared_label_counts_like_a_keyword() {
        let mut p = petition("5号楼楼道里堆放了很多杂物，进出都要侧着身子", "371082008");
        p.category_label = Some("城建".into());
        let d = router().route(&p);
        assert_eq!(d.department, "street-008", "{d:?}");
    }

    #[test]
    fn a_label_the_text_contradicts_is_only_a_hint() {
        let mut p = petition(
            "2号楼楼道被人堆放了旧沙发和杂物，消防通道都堵了",
            "371082008",
        );
        p.category_label = Some("环境卫生".into());
        let d = router().route(&p);
        assert_eq!(d.department, "street-008", "{d:?}");
        // With a word of its own department the label keeps its weight.
        let mut p = petition("小区垃圾桶满了好几天没人来拉", "371082008");
        p.category_label = Some("环境卫生".into());
        let d = router().route(&p);
        assert_eq!(d.department, "urban-management", "{d:?}");
        assert_eq!(d.rule, Rule::ChannelLabel);
    }

    #[test]
    fn a_label_the_list_does_not_know_is_read_for_keywords() {
        let mut p = petition("对门装修把我家墙面弄裂了，一直不给说法", "371082009");
        p.category_label = Some("社区/邻里纠纷".into());
        let d = router().route(&p);
        assert_eq!(d.department, "street-009", "{d:?}");
    }
}
