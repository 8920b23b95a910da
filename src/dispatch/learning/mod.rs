//! Routing learned from the center: every time the center assigns a case the list left
//! to triage (or moves a case a department returned), that is an example — the
//! petition's text, channel label and street, and the department. A multinomial naive
//! Bayes model over the examples' words (jieba) and character bigrams suggests a
//! department for what the list leaves to triage: the list stays first, and below the
//! settings' bars (probability, examples, a near example) the petition goes to triage
//! as before. Where the center has corrected the list's keywords for petitions like
//! this one, the correction stands instead of the keywords (`Learner::correction`).
//!
//! Why naive Bayes: it learns one example at a time (adding its columns' counts), so the
//! model is current after every assignment without a retraining job, the same examples
//! give the same model whatever else the process does, and its class probabilities give
//! the confidence the threshold is applied to. Forgetting an example rebuilds the counts
//! from the examples kept (rare: an operator's correction).
//!
//! Why the counts are kept here and not in `linfa-bayes`: its `MultinomialNb` 0.8.1
//! prints every fitted class's arrays to standard error at each fit (a `dbg!` left in
//! `fit_with`), 16,384 numbers per example, and 0.7.1 keeps the class probabilities
//! private. The model is the counts the explanations need anyway (the words that weigh
//! most): a class's log probability is its prior plus, per column of the petition,
//! `ln((count + α) / (total + α·columns))`.
//!
//! Street offices (departments that cover listed regions) are learned as one class, "the
//! street office of the petition's street": an example from one street teaches where a
//! corridor full of boxes goes in every street.

pub mod features;
pub mod stream;

use super::dedupe::features::similarity as overlap;
use super::responsibility::ResponsibilityList;
use features::{columns, tokens, DIMENSIONS};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

/// Where an example came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExampleSource {
    /// The center assigned a case out of triage (one the list left there, or one a
    /// department returned).
    Center,
    /// The center moved a case from one department to another.
    Correction,
    /// Labeled history from the seed file.
    Seed,
}

/// What the center taught with one assignment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Example {
    /// One example per case: a later assignment of the same case replaces it.
    pub case_id: String,
    pub text: String,
    /// The petition's street (or county).
    pub region: String,
    pub channel: String,
    /// The channel's own category label, if it gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    pub department: String,
    pub source: ExampleSource,
    /// A correction: the department the case was moved away from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub corrected_from: Option<String>,
    /// When the center assigned it (RFC 3339).
    pub at: String,
}

impl Example {
    /// The center assigning `petition`'s case to `department`: out of triage the list left
    /// it in (`corrected_from` none, source center), or away from `corrected_from` (a
    /// correction). What the model reads is the petition's.
    pub fn assigned(
        case_id: &str,
        petition: &crate::petition::Petition,
        department: &str,
        corrected_from: Option<&str>,
        at: String,
    ) -> Self {
        let source = match corrected_from {
            Some(_) => ExampleSource::Correction,
            None => ExampleSource::Center,
        };
        Self {
            case_id: case_id.to_string(),
            text: petition_text(petition),
            region: petition.location.region.code.clone(),
            channel: petition.channel.clone(),
            label: petition.category_label.clone(),
            department: department.to_string(),
            source,
            corrected_from: corrected_from.map(str::to_string),
            at,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LearningSettings {
    /// The model decides a triage petition only when its probability for the department
    /// is at least this.
    pub min_confidence: f64,
    /// … and the center assigned at least this many cases to that department.
    pub min_examples: usize,
    /// … and one of them is at least this alike (Jaccard over the two petitions' words
    /// and bigrams). The model's probability is among the departments it has learned:
    /// a petition like none of the examples (办事效率太低, a consultation) would still get
    /// one of them with certainty. A near example is the basis the center can check.
    pub min_overlap: f64,
    /// Let the center's corrections override a decision the list took on keywords alone
    /// (see [`Learner::correction`]).
    pub override_corrected: bool,
}

impl Default for LearningSettings {
    fn default() -> Self {
        Self {
            min_confidence: 0.9,
            min_examples: 2,
            min_overlap: 0.2,
            override_corrected: true,
        }
    }
}

/// What the model reads of a petition: its title and text, as routing does.
pub fn petition_text(p: &crate::petition::Petition) -> String {
    match &p.title {
        Some(title) => format!("{title}\n{}", p.text),
        None => p.text.clone(),
    }
}

/// The class street offices are learned as.
const STREET_OFFICE: &str = "@street-office";
/// Laplace smoothing of the counts.
const ALPHA: f64 = 0.1;

struct Learned {
    example: Example,
    class: String,
    /// A correction: the class of the department it corrects.
    corrects: Option<String>,
    columns: Vec<u32>,
}

/// The model's suggestion for a petition, with why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Suggestion {
    pub department: String,
    /// The model's probability for it, among the departments that may take the petition.
    pub confidence: f64,
    /// How many examples the model had learned or forgotten (its version: the same
    /// examples in the same order, the same model).
    pub model_version: u64,
    /// The petition's words that weigh most for the department against the runner-up.
    pub words: Vec<String>,
    /// The center's examples of that department closest to the petition.
    pub nearest: Vec<NearExample>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NearExample {
    pub case_id: String,
    pub overlap: f64,
}

/// What was learned for one department (for operators).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DepartmentSummary {
    pub department: String,
    pub examples: usize,
    /// Tokens that weigh most for it against every other class.
    pub words: Vec<String>,
}

/// One class of the model: how many examples, and how often each column occurred in
/// them (each column once per example).
#[derive(Default)]
struct ClassCounts {
    examples: usize,
    columns: HashMap<u32, f64>,
    total: f64,
}

pub struct Learner {
    settings: LearningSettings,
    examples: Vec<Learned>,
    by_case: HashMap<String, usize>,
    /// The model: counts per class, in a stable order.
    classes: BTreeMap<String, ClassCounts>,
    /// Corrections per class corrected: a keyword decision for a class nobody corrected
    /// costs one lookup.
    corrected: HashMap<String, usize>,
    /// Examples learned or forgotten so far.
    version: u64,
}

impl Default for Learner {
    fn default() -> Self {
        Self::new(LearningSettings::default())
    }
}

impl Learner {
    pub fn new(settings: LearningSettings) -> Self {
        Self {
            settings,
            examples: Vec::new(),
            by_case: HashMap::new(),
            classes: BTreeMap::new(),
            corrected: HashMap::new(),
            version: 0,
        }
    }

    /// Whether a decision the list's keywords took for `decided` is worth asking
    /// [`Learner::correction`] about: corrections may override and the center corrected
    /// that department at least once. One map lookup, so a keyword decision costs next
    /// to nothing until the center corrects its department.
    pub fn may_correct(&self, decided: &str, list: &ResponsibilityList) -> bool {
        self.settings.override_corrected
            && self.corrected.contains_key(&Self::class_of(decided, list))
    }

    pub fn version(&self) -> u64 {
        self.version
    }

    pub fn len(&self) -> usize {
        self.examples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.examples.is_empty()
    }

    /// The class a department is learned as.
    fn class_of(department: &str, list: &ResponsibilityList) -> String {
        match list.department(department) {
            Some(d) if !d.regions.is_empty() => STREET_OFFICE.to_string(),
            _ => department.to_string(),
        }
    }

    /// Learns one example. A case learned before is replaced (the center changed its
    /// mind): the model is rebuilt without the old one.
    pub fn learn(&mut self, example: Example, list: &ResponsibilityList) {
        if self.by_case.contains_key(&example.case_id) {
            self.forget(&example.case_id.clone());
        }
        let class = Self::class_of(&example.department, list);
        let corrects = example
            .corrected_from
            .as_deref()
            .map(|from| Self::class_of(from, list));
        let columns = columns(&tokens(&example.text, example.label.as_deref()));
        let learned = Learned {
            example,
            class,
            corrects,
            columns,
        };
        self.fit(&learned);
        self.by_case
            .insert(learned.example.case_id.clone(), self.examples.len());
        self.examples.push(learned);
        self.version += 1;
    }

    fn fit(&mut self, learned: &Learned) {
        let class = self.classes.entry(learned.class.clone()).or_default();
        class.examples += 1;
        for c in &learned.columns {
            *class.columns.entry(*c).or_default() += 1.0;
        }
        class.total += learned.columns.len() as f64;
        if let Some(from) = &learned.corrects {
            *self.corrected.entry(from.clone()).or_default() += 1;
        }
    }

    /// Forgets the example of a case (an operator's correction): the model is rebuilt
    /// from the others, in the order they were learned. Returns whether there was one.
    pub fn forget(&mut self, case_id: &str) -> bool {
        let Some(position) = self.by_case.remove(case_id) else {
            return false;
        };
        let kept: Vec<Learned> = self
            .examples
            .drain(..)
            .enumerate()
            .filter(|(i, _)| *i != position)
            .map(|(_, l)| l)
            .collect();
        self.classes.clear();
        self.corrected.clear();
        self.by_case.clear();
        for learned in kept {
            self.fit(&learned);
            self.by_case
                .insert(learned.example.case_id.clone(), self.examples.len());
            self.examples.push(learned);
        }
        self.version += 1;
        true
    }

    /// The examples learned, in order.
    pub fn examples(&self) -> impl Iterator<Item = &Example> {
        self.examples.iter().map(|l| &l.example)
    }

    /// ln P(column | class), smoothed.
    fn log_prob(&self, class: &str, column: u32) -> f64 {
        let counts = self.classes.get(class);
        let count = counts
            .and_then(|c| c.columns.get(&column))
            .copied()
            .unwrap_or(0.0);
        let total = counts.map_or(0.0, |c| c.total);
        ((count + ALPHA) / (total + ALPHA * DIMENSIONS as f64)).ln()
    }

    /// ln P(class) + Σ ln P(column | class) over the petition's columns.
    fn joint_log_likelihood(&self, class: &str, columns: &[u32]) -> f64 {
        let prior = self.classes.get(class).map_or(0, |c| c.examples) as f64
            / self.examples.len().max(1) as f64;
        prior.ln()
            + columns
                .iter()
                .map(|c| self.log_prob(class, *c))
                .sum::<f64>()
    }

    /// Which department the model suggests for a petition the list left to triage,
    /// among those that may take a petition of `region`; `None` below the confidence,
    /// the examples or the overlap the settings ask for.
    pub fn suggest(
        &self,
        text: &str,
        label: Option<&str>,
        region: &str,
        list: &ResponsibilityList,
    ) -> Option<Suggestion> {
        self.suggest_unless(text, label, region, list, None)
    }

    /// Whether the center already corrected petitions like this one away from
    /// `decided`, the department the list's keywords chose: the model's department when
    /// it passes the settings' bars and a correction from `decided` is among its nearest
    /// examples. The list's keywords said one thing, the center said another for the
    /// same words; the center is the authority the list stands in for.
    pub fn correction(
        &self,
        text: &str,
        label: Option<&str>,
        region: &str,
        list: &ResponsibilityList,
        decided: &str,
    ) -> Option<Suggestion> {
        self.suggest_unless(text, label, region, list, Some(decided))
    }

    fn suggest_unless(
        &self,
        text: &str,
        label: Option<&str>,
        region: &str,
        list: &ResponsibilityList,
        corrected_from: Option<&str>,
    ) -> Option<Suggestion> {
        if self.examples.is_empty() {
            return None;
        }
        let petition_tokens = tokens(text, label);
        let cols = columns(&petition_tokens);
        // The departments a class stands for here: a street office only in its street.
        let office: Vec<&str> = list
            .departments
            .iter()
            .filter(|d| d.regions.iter().any(|r| r == region))
            .map(|d| d.code.as_str())
            .collect();
        let mut scored: Vec<(&str, String, f64)> = self
            .classes
            .keys()
            .filter_map(|class| {
                let department = if class.as_str() == STREET_OFFICE {
                    match office.as_slice() {
                        [one] => (*one).to_string(),
                        _ => return None,
                    }
                } else {
                    let d = list.department(class)?;
                    if !d.regions.is_empty() {
                        return None;
                    }
                    d.code.clone()
                };
                Some((
                    class.as_str(),
                    department,
                    self.joint_log_likelihood(class, &cols),
                ))
            })
            .collect();
        // Sorted so that equal scores never depend on an order of the maps.
        scored.sort_by(|a, b| b.2.total_cmp(&a.2).then(a.0.cmp(b.0)));
        let best = scored.first()?;
        let top = best.2;
        let norm: f64 = scored.iter().map(|(_, _, s)| (s - top).exp()).sum();
        let confidence = 1.0 / norm;
        let class = best.0;
        let examples = self.classes.get(class).map_or(0, |c| c.examples);
        if confidence < self.settings.min_confidence || examples < self.settings.min_examples {
            return None;
        }
        let mut nearest: Vec<NearExample> = self
            .examples
            .iter()
            .filter(|l| l.class == class)
            .map(|l| NearExample {
                case_id: l.example.case_id.clone(),
                overlap: overlap(&cols, &l.columns),
            })
            .collect();
        nearest.sort_by(|a, b| {
            b.overlap
                .total_cmp(&a.overlap)
                .then(a.case_id.cmp(&b.case_id))
        });
        nearest.truncate(3);
        if nearest
            .first()
            .is_none_or(|n| n.overlap < self.settings.min_overlap)
        {
            return None;
        }
        if let Some(from) = corrected_from {
            // By class: a correction away from one street office speaks for all of them.
            let from_class = Self::class_of(from, list);
            let corrected = nearest.iter().any(|n| {
                n.overlap >= self.settings.min_overlap
                    && self.by_case.get(&n.case_id).is_some_and(|i| {
                        self.examples[*i].corrects.as_deref() == Some(from_class.as_str())
                    })
            });
            if best.1 == from || !corrected {
                return None;
            }
        }
        for n in &mut nearest {
            n.overlap = (n.overlap * 1000.0).round() / 1000.0;
        }
        let runner_up = scored.get(1).map(|s| s.0);
        let mut weighed: Vec<(f64, &String)> = petition_tokens
            .iter()
            .map(|t| {
                let c = features::column32(t);
                let against = runner_up.map_or(0.0, |r| self.log_prob(r, c));
                (self.log_prob(class, c) - against, t)
            })
            .filter(|(w, _)| *w > 0.0)
            .collect();
        weighed.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(b.1)));
        let mut words: Vec<String> = Vec::new();
        for (_, t) in weighed {
            if !words.contains(t) {
                words.push(t.clone());
            }
            if words.len() == 5 {
                break;
            }
        }
        Some(Suggestion {
            department: best.1.clone(),
            confidence: (confidence * 1000.0).round() / 1000.0,
            model_version: self.version,
            words,
            nearest,
        })
    }

    /// What was learned, per class: examples and the tokens that weigh most.
    pub fn summary(&self) -> Vec<DepartmentSummary> {
        let mut out = Vec::new();
        for (class, counts) in &self.classes {
            // A token's weight: its log probability here against the likeliest elsewhere.
            let mut names: HashMap<u32, String> = HashMap::new();
            for l in self.examples.iter().filter(|l| &l.class == class) {
                for t in tokens(&l.example.text, l.example.label.as_deref()) {
                    names.entry(features::column32(&t)).or_insert(t);
                }
            }
            let others: Vec<&String> = self.classes.keys().filter(|k| *k != class).collect();
            let mut weighed: Vec<(f64, &String)> = counts
                .columns
                .keys()
                .filter_map(|c| {
                    let here = self.log_prob(class, *c);
                    let there = others
                        .iter()
                        .map(|o| self.log_prob(o, *c))
                        .fold(f64::MIN, f64::max);
                    Some((here - there, names.get(c)?))
                })
                .collect();
            weighed.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(b.1)));
            out.push(DepartmentSummary {
                department: class.clone(),
                examples: counts.examples,
                words: weighed.iter().take(10).map(|(_, n)| (*n).clone()).collect(),
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::normalize::region::Gazetteer;
    use std::path::Path;

    fn list() -> ResponsibilityList {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let g =
            Gazetteer::load(&root.join("config/gazetteer.toml")).unwrap_or_else(|e| panic!("{e}"));
        ResponsibilityList::load(&root.join("config/responsibility.toml"), &g)
            .unwrap_or_else(|e| panic!("{e:?}"))
    }

    fn example(case: &str, text: &str, region: &str, department: &str) -> Example {
        Example {
            case_id: case.into(),
            text: text.into(),
            region: region.into(),
            channel: "hotline".into(),
            label: None,
            department: department.into(),
            source: ExampleSource::Center,
            corrected_from: None,
            at: "2026-11-01T00:00:00+08:00".into(),
        }
    }

    const STALL_A: &str = "西苑社区门口小吃摊用的秤有问题，买的东西少了好几两";
    const STALL_B: &str = "海湾村门口水果店的秤有问题，买的东西少了好几两";
    const STALL_C: &str = "铁路社区水果店用的秤不准，买的东西少了二两";
    const BOXES_A: &str = "海湾村19号楼楼道里堆满纸箱，有消防隐患";
    const BOXES_B: &str = "铁路社区3号楼楼道里堆满纸箱和旧家具，有消防隐患";

    fn taught(settings: LearningSettings) -> Learner {
        let l = list();
        let mut learner = Learner::new(settings);
        for (i, (text, region, department)) in [
            (STALL_A, "371082002", "market"),
            (BOXES_A, "371082004", "street-004"),
            (STALL_B, "371082004", "market"),
            (BOXES_B, "371082002", "street-002"),
        ]
        .into_iter()
        .enumerate()
        {
            learner.learn(example(&format!("c{i}"), text, region, department), &l);
        }
        learner
    }

    #[test]
    fn what_the_center_assigned_twice_is_suggested_with_why() {
        let l = list();
        let learner = taught(LearningSettings::default());
        let s = learner
            .suggest(STALL_C, None, "371082002", &l)
            .expect("a suggestion");
        assert_eq!(s.department, "market");
        assert!(s.confidence >= 0.9, "{s:?}");
        assert_eq!(s.model_version, 4);
        assert!(!s.words.is_empty(), "{s:?}");
        assert!(s.nearest.iter().any(|n| n.case_id == "c2"), "{s:?}");
        // Below the examples the settings ask for: no suggestion.
        let strict = taught(LearningSettings {
            min_examples: 3,
            ..LearningSettings::default()
        });
        assert_eq!(strict.suggest(STALL_C, None, "371082002", &l), None);
    }

    #[test]
    fn a_petition_like_no_example_is_left_to_triage() {
        let l = list();
        let learner = taught(LearningSettings::default());
        // The model knows two classes and would pick one with certainty; no example is
        // near, so it does not decide.
        assert_eq!(
            learner.suggest(
                "你们办事效率太低了，我反映的问题一直没人管",
                None,
                "371082002",
                &l
            ),
            None
        );
        let lenient = taught(LearningSettings {
            min_overlap: 0.0,
            ..LearningSettings::default()
        });
        assert!(lenient
            .suggest(
                "你们办事效率太低了，我反映的问题一直没人管",
                None,
                "371082002",
                &l
            )
            .is_some());
    }

    #[test]
    fn street_offices_are_learned_as_the_office_of_the_petitions_street() {
        let l = list();
        let learner = taught(LearningSettings::default());
        // Taught by streets 004 and 002; asked in street 010.
        let s = learner
            .suggest(
                "崂山街道屯口村5号楼楼道里堆满纸箱，有消防隐患",
                None,
                "371082010",
                &l,
            )
            .expect("a suggestion");
        assert_eq!(s.department, "street-010");
        // At county level no single street office may take it.
        assert_eq!(
            learner.suggest("5号楼楼道里堆满纸箱，有消防隐患", None, "371082", &l),
            None
        );
    }

    #[test]
    fn the_same_examples_in_the_same_order_give_the_same_decisions() {
        let l = list();
        let (a, b) = (
            taught(LearningSettings::default()),
            taught(LearningSettings::default()),
        );
        for text in [STALL_C, BOXES_A, "楼道里堆满杂物", "秤不准"] {
            assert_eq!(
                a.suggest(text, None, "371082002", &l),
                b.suggest(text, None, "371082002", &l),
                "{text}"
            );
        }
    }

    #[test]
    fn a_forgotten_example_is_unlearned_and_a_reassigned_case_replaces_its_example() {
        let l = list();
        let mut learner = taught(LearningSettings::default());
        assert!(learner.forget("c2"));
        assert!(!learner.forget("c2"));
        assert_eq!(learner.len(), 3);
        assert_eq!(learner.version(), 5);
        // One market example left: below min_examples.
        assert_eq!(learner.suggest(STALL_C, None, "371082002", &l), None);
        // The center assigns c0 again, elsewhere: one example for the case.
        learner.learn(example("c0", STALL_A, "371082002", "street-002"), &l);
        assert_eq!(learner.len(), 3);
        assert!(learner.examples().all(|e| e.department != "market"));
        let summary = learner.summary();
        assert!(
            summary.iter().all(|d| d.department != "market"),
            "{summary:?}"
        );
        assert!(summary
            .iter()
            .any(|d| d.department == "@street-office" && d.examples == 3 && !d.words.is_empty()));
    }

    #[test]
    fn a_keyword_decision_is_overridden_only_where_the_center_corrected_it() {
        let l = list();
        let mut learner = Learner::new(LearningSettings::default());
        let burst = "青山路黄海路路口自来水管爆了，水流满了路面，两天了还在冒水";
        for (i, text) in [burst, "观海路海湾路路口自来水管爆了，水流满了路面，三天了"]
            .into_iter()
            .enumerate()
        {
            let mut e = example(&format!("c{i}"), text, "371082004", "water");
            e.source = ExampleSource::Correction;
            e.corrected_from = Some("transport".into());
            learner.learn(e, &l);
        }
        let again = "龙山路府新路路口自来水管爆了，水流满了路面，好几天了";
        let s = learner.correction(again, None, "371082004", &l, "transport");
        assert_eq!(s.map(|s| s.department).as_deref(), Some("water"));
        // A keyword decision for another department the center never corrected stands.
        assert_eq!(
            learner.correction(again, None, "371082004", &l, "urban-management"),
            None
        );
    }
}
