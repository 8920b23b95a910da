//! The department responsibility list (责任清单, `config/responsibility.toml`).

use crate::normalize::region::Gazetteer;
use serde::Deserialize;
use std::collections::HashSet;
use std::path::Path;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResponsibilityList {
    #[serde(rename = "department")]
    pub departments: Vec<Department>,
    #[serde(default)]
    pub escalation: EscalationRules,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Department {
    pub code: String,
    pub name: String,
    pub topic: String,
    #[serde(default)]
    pub categories: Vec<String>,
    #[serde(default)]
    pub channel_labels: Vec<String>,
    #[serde(default)]
    pub keywords: Vec<String>,
    /// Keywords that name one problem though they share no character (废气 / 臭味):
    /// reports of one place that use either are about the same problem. Keywords that
    /// share a character (摊贩 / 流动摊点) need no entry (see the deduper).
    #[serde(default)]
    pub synonyms: Vec<Vec<String>>,
    /// Street offices: the region codes they cover. Empty: the whole county.
    #[serde(default)]
    pub regions: Vec<String>,
    #[serde(default = "default_sla_hours")]
    pub sla_hours: u32,
}

fn default_sla_hours() -> u32 {
    72
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EscalationRules {
    #[serde(default)]
    pub channels: Vec<String>,
    /// The center writes urgencies in Chinese (特急); canonical names are accepted too.
    #[serde(default)]
    pub urgency: Vec<String>,
    #[serde(default)]
    pub categories: Vec<String>,
    #[serde(default)]
    pub keywords: Vec<String>,
}

/// Canonical urgency for a name the center may use.
pub fn canonical_urgency(name: &str) -> Option<&'static str> {
    match name {
        "一般" | "normal" => Some("normal"),
        "紧急" | "urgent" => Some("urgent"),
        "特急" | "critical" => Some("critical"),
        _ => None,
    }
}

pub fn valid_topic_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 249
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

impl ResponsibilityList {
    pub fn load(file: &Path, gazetteer: &Gazetteer) -> Result<Self, Vec<String>> {
        let text = std::fs::read_to_string(file).map_err(|e| vec![format!("cannot read: {e}")])?;
        Self::parse(&text, gazetteer)
    }

    pub fn parse(text: &str, gazetteer: &Gazetteer) -> Result<Self, Vec<String>> {
        let list: ResponsibilityList = toml::from_str(text)
            .map_err(|e| vec![e.to_string().trim_end().replace('\n', " | ")])?;
        let problems = list.problems(gazetteer);
        if problems.is_empty() {
            Ok(list)
        } else {
            Err(problems)
        }
    }

    pub fn problems(&self, gazetteer: &Gazetteer) -> Vec<String> {
        let mut problems = Vec::new();
        if self.departments.is_empty() {
            problems.push("department: the list names no department".into());
        }
        let mut codes = HashSet::new();
        for (i, d) in self.departments.iter().enumerate() {
            let key = format!("department[{i}] ({})", d.code);
            if d.code.is_empty() || d.code == "triage" {
                problems.push(format!("{key}.code: {:?} is not a usable code", d.code));
            }
            if !codes.insert(d.code.as_str()) {
                problems.push(format!("{key}.code: appears twice"));
            }
            if !valid_topic_name(&d.topic) {
                problems.push(format!(
                    "{key}.topic: {:?} is not a valid Kafka topic name",
                    d.topic
                ));
            }
            if d.sla_hours == 0 {
                problems.push(format!("{key}.sla_hours: must be > 0"));
            }
            if d.categories.is_empty() && d.channel_labels.is_empty() && d.keywords.is_empty() {
                problems.push(format!(
                    "{key}: owns no categories, channel labels or keywords, so nothing can reach it"
                ));
            }
            for c in &d.categories {
                if !c.contains('.') {
                    problems.push(format!(
                        "{key}.categories: {c:?} is not a category code like urban.streetlight"
                    ));
                }
            }
            for k in d.keywords.iter().chain(&d.channel_labels) {
                if k.trim().is_empty() {
                    problems.push(format!(
                        "{key}: an empty keyword or label matches everything"
                    ));
                }
            }
            for (g, group) in d.synonyms.iter().enumerate() {
                if group.len() < 2 {
                    problems.push(format!(
                        "{key}.synonyms[{g}]: a group of synonyms needs at least two keywords"
                    ));
                }
                for w in group {
                    if !d.keywords.contains(w) {
                        problems.push(format!(
                            "{key}.synonyms[{g}]: {w:?} is not one of the department's keywords"
                        ));
                    }
                }
            }
            for r in &d.regions {
                if !gazetteer.has_region(r) {
                    problems.push(format!("{key}.regions: {r:?} is not in the gazetteer"));
                }
            }
        }
        for u in &self.escalation.urgency {
            if canonical_urgency(u).is_none() {
                problems.push(format!(
                    "escalation.urgency: {u:?} is not an urgency (一般/紧急/特急)"
                ));
            }
        }
        if self.escalation.keywords.iter().any(|k| k.trim().is_empty()) {
            problems.push("escalation.keywords: an empty keyword matches everything".into());
        }
        problems
    }

    pub fn department(&self, code: &str) -> Option<&Department> {
        self.departments.iter().find(|d| d.code == code)
    }
}

impl Department {
    /// The keyword that stands for `keyword`'s group of synonyms, if it is in one.
    pub fn synonym_of(&self, keyword: &str) -> Option<&str> {
        self.synonyms
            .iter()
            .find(|group| group.iter().any(|w| w == keyword))
            .and_then(|group| group.first())
            .map(String::as_str)
    }
}
