//! Region resolution from the gazetteer (`config/gazetteer.toml`): which street office's
//! area a petition is about, found from the address, then the text, else the county.

use crate::petition::{Region, RegionLevel, ResolvedBy};
use serde::Deserialize;
use std::path::Path;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Gazetteer {
    pub county: String,
    pub county_name: String,
    pub city: String,
    pub city_name: String,
    #[serde(rename = "street")]
    pub streets: Vec<Street>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Street {
    pub code: String,
    pub name: String,
    #[serde(default)]
    pub aliases: Vec<String>,
    /// WGS-84 [lat, lon].
    pub center: [f64; 2],
    pub radius_km: f64,
    #[serde(default)]
    pub communities: Vec<String>,
}

impl Gazetteer {
    pub fn load(file: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(file).map_err(|e| format!("cannot read: {e}"))?;
        let g: Gazetteer = toml::from_str(&text).map_err(|e| e.to_string().replace('\n', " "))?;
        let problems = g.problems();
        if problems.is_empty() {
            Ok(g)
        } else {
            Err(problems.join("; "))
        }
    }

    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.county.len() != 6 || !self.county.bytes().all(|b| b.is_ascii_digit()) {
            problems.push(format!("county: {:?} must be 6 digits", self.county));
        }
        let mut seen = std::collections::HashSet::new();
        for (i, s) in self.streets.iter().enumerate() {
            if !(s.code.len() == 9 && s.code.starts_with(&self.county)) {
                problems.push(format!(
                    "street[{i}].code: {:?} must be the county code + 3 digits",
                    s.code
                ));
            }
            if !seen.insert(&s.code) {
                problems.push(format!("street[{i}].code: {:?} appears twice", s.code));
            }
            if s.radius_km <= 0.0 {
                problems.push(format!("street[{i}].radius_km: must be > 0"));
            }
        }
        problems
    }

    pub fn has_region(&self, code: &str) -> bool {
        code == self.county || self.streets.iter().any(|s| s.code == code)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum NameKind {
    /// The official name, e.g. 崖头街道.
    Official,
    /// A community or village, e.g. 曙光社区: specific, so as strong as the official name.
    Community,
    /// A short alias, e.g. 崖头: also the first characters of road names (成山大道).
    Alias,
}

struct Needle {
    text: String,
    street: usize,
    kind: NameKind,
}

/// Compiled lookup over the gazetteer's names.
pub struct RegionResolver {
    gazetteer: Gazetteer,
    needles: Vec<Needle>,
}

/// Characters that, right after a short alias, show it is part of a road or building name.
const ROAD_SUFFIXES: &[&str] = &["大道", "大街", "路", "街", "大厦", "大桥", "广场"];

impl RegionResolver {
    pub fn new(gazetteer: Gazetteer) -> Self {
        let mut needles = Vec::new();
        for (i, s) in gazetteer.streets.iter().enumerate() {
            needles.push(Needle {
                text: s.name.clone(),
                street: i,
                kind: NameKind::Official,
            });
            for c in &s.communities {
                needles.push(Needle {
                    text: c.clone(),
                    street: i,
                    kind: NameKind::Community,
                });
            }
            for a in &s.aliases {
                needles.push(Needle {
                    text: a.clone(),
                    street: i,
                    kind: NameKind::Alias,
                });
            }
        }
        // Longest first, so 石岛管理区 wins over 石岛 at the same position.
        needles.sort_by(|a, b| b.text.len().cmp(&a.text.len()).then(a.kind.cmp(&b.kind)));
        Self { gazetteer, needles }
    }

    pub fn gazetteer(&self) -> &Gazetteer {
        &self.gazetteer
    }

    /// The address decides when it names a place; the text is the fallback; the county is
    /// what is left when the petition names no place at all.
    pub fn resolve(&self, address: Option<&str>, text: &str) -> Region {
        if let Some(found) = address.and_then(|a| self.find(a)) {
            return self.street_region(found, ResolvedBy::Address);
        }
        if let Some(found) = self.find(text) {
            return self.street_region(found, ResolvedBy::Text);
        }
        Region {
            code: self.gazetteer.county.clone(),
            name: Some(self.gazetteer.county_name.clone()),
            level: RegionLevel::County,
            resolved_by: ResolvedBy::Default,
            matched: None,
        }
    }

    fn street_region(&self, (street, matched): (usize, &str), by: ResolvedBy) -> Region {
        let s = &self.gazetteer.streets[street];
        Region {
            code: s.code.clone(),
            name: Some(s.name.clone()),
            level: RegionLevel::Street,
            resolved_by: by,
            matched: Some(matched.to_string()),
        }
    }

    /// The earliest place name in the text (longest at a position); a petition names the
    /// place it is about first, and later names are usually landmarks or roads.
    fn find<'a>(&'a self, text: &str) -> Option<(usize, &'a str)> {
        let mut best: Option<(usize, &Needle)> = None;
        for needle in &self.needles {
            for (pos, _) in text.match_indices(needle.text.as_str()) {
                if needle.kind == NameKind::Alias {
                    let after = &text[pos + needle.text.len()..];
                    if ROAD_SUFFIXES.iter().any(|s| after.starts_with(s)) {
                        continue;
                    }
                }
                let better = match best {
                    None => true,
                    Some((p, n)) => pos < p || (pos == p && needle.text.len() > n.text.len()),
                };
                if better {
                    best = Some((pos, needle));
                }
                break;
            }
        }
        best.map(|(_, n)| (n.street, n.text.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolver() -> RegionResolver {
        let g = Gazetteer::load(Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/config/gazetteer.toml"
        )))
        .unwrap_or_else(|e| panic!("{e}"));
        RegionResolver::new(g)
    }

    #[test]
    fn the_address_names_the_street() {
        let r = resolver().resolve(Some("崖头街道曙光社区3号楼"), "楼道灯坏了");
        assert_eq!(r.code, "371082001");
        assert_eq!(r.resolved_by, ResolvedBy::Address);
    }

    #[test]
    fn a_community_alone_is_enough() {
        let r = resolver().resolve(None, "马栏湾村附近自来水管爆了");
        assert_eq!(r.code, "371082011");
        assert_eq!(r.resolved_by, ResolvedBy::Text);
    }

    #[test]
    fn road_names_that_start_with_an_alias_are_not_places() {
        // 成山 is 成山镇's alias, but 成山大道 is a road in many towns.
        let r = resolver().resolve(Some("荫子镇黄海路成山大道路口"), "");
        assert_eq!(r.code, "371082016");
        let r = resolver().resolve(None, "成山大道与海湾路路口路灯不亮");
        assert_eq!(r.level, RegionLevel::County);
    }

    #[test]
    fn the_first_place_named_wins() {
        let r = resolver().resolve(Some("人和石岛大街成山大道路口"), "");
        assert_eq!(r.code, "371082021");
    }

    #[test]
    fn no_place_means_the_county() {
        let r = resolver().resolve(None, "某单位拖欠中小企业账款");
        assert_eq!(r.code, "371082");
        assert_eq!(r.level, RegionLevel::County);
        assert_eq!(r.resolved_by, ResolvedBy::Default);
    }
}
