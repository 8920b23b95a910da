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

/// What a petition offers for finding its region.
#[derive(Debug, Default)]
pub struct Clues<'a> {
    pub grid_code: Option<&'a str>,
    /// WGS-84 (lat, lon).
    pub point: Option<(f64, f64)>,
    pub address: Option<&'a str>,
    pub text: &'a str,
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

    /// Most specific evidence first: the grid code names the street outright; a place name
    /// in the address is what the citizen said; coordinates come next (app locations are
    /// often the phone's, not the incident's); then a place named in the text; the county
    /// is what is left when the petition names no place at all.
    pub fn resolve(&self, clues: &Clues<'_>) -> Region {
        if let Some(street) = clues.grid_code.and_then(|g| self.by_grid_code(g)) {
            let code = clues.grid_code.unwrap_or_default();
            return self.street_region((street, &code[..9.min(code.len())]), ResolvedBy::GridCode);
        }
        if let Some(found) = clues.address.and_then(|a| self.find(a)) {
            return self.street_region(found, ResolvedBy::Address);
        }
        if let Some(street) = clues.point.and_then(|p| self.by_point(p)) {
            let s = &self.gazetteer.streets[street];
            return self.street_region((street, &s.name), ResolvedBy::Coordinates);
        }
        if let Some(found) = self.find(clues.text) {
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

    fn by_grid_code(&self, grid: &str) -> Option<usize> {
        let street = grid.get(..9)?;
        self.gazetteer.streets.iter().position(|s| s.code == street)
    }

    /// The nearest street centre, if the point is within that street's radius.
    fn by_point(&self, (lat, lon): (f64, f64)) -> Option<usize> {
        self.gazetteer
            .streets
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let d =
                    gateway_connectors::geo::haversine_m((lat, lon), (s.center[0], s.center[1]));
                (i, d, s.radius_km * 1000.0)
            })
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .filter(|(_, d, radius)| d <= radius)
            .map(|(i, _, _)| i)
    }

    /// Convenience for address + text only.
    pub fn resolve_text(&self, address: Option<&str>, text: &str) -> Region {
        self.resolve(&Clues {
            grid_code: None,
            point: None,
            address,
            text,
        })
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
        let r = resolver().resolve_text(Some("崖头街道曙光社区3号楼"), "楼道灯坏了");
        assert_eq!(r.code, "371082001");
        assert_eq!(r.resolved_by, ResolvedBy::Address);
    }

    #[test]
    fn a_community_alone_is_enough() {
        let r = resolver().resolve_text(None, "马栏湾村附近自来水管爆了");
        assert_eq!(r.code, "371082011");
        assert_eq!(r.resolved_by, ResolvedBy::Text);
    }

    #[test]
    fn road_names_that_start_with_an_alias_are_not_places() {
        // 成山 is 成山镇's alias, but 成山大道 is a road in many towns.
        let r = resolver().resolve_text(Some("荫子镇黄海路成山大道路口"), "");
        assert_eq!(r.code, "371082016");
        let r = resolver().resolve_text(None, "成山大道与海湾路路口路灯不亮");
        assert_eq!(r.level, RegionLevel::County);
    }

    #[test]
    fn the_first_place_named_wins() {
        let r = resolver().resolve_text(Some("人和石岛大街成山大道路口"), "");
        assert_eq!(r.code, "371082021");
    }

    #[test]
    fn a_grid_code_names_the_street() {
        let r = resolver().resolve(&Clues {
            grid_code: Some("371082004007020"),
            text: "停水了",
            ..Clues::default()
        });
        assert_eq!(r.code, "371082004");
        assert_eq!(r.resolved_by, ResolvedBy::GridCode);
    }

    #[test]
    fn coordinates_find_the_nearest_street_within_its_radius() {
        let r = resolver().resolve(&Clues {
            point: Some((36.9085, 122.4293)),
            text: "拖欠工资",
            ..Clues::default()
        });
        assert_eq!(r.code, "371082004");
        assert_eq!(r.resolved_by, ResolvedBy::Coordinates);
        // Out at sea: no street's radius covers it.
        let r = resolver().resolve(&Clues {
            point: Some((37.6, 123.3)),
            text: "拖欠工资",
            ..Clues::default()
        });
        assert_eq!(r.level, RegionLevel::County);
    }

    #[test]
    fn no_place_means_the_county() {
        let r = resolver().resolve_text(None, "某单位拖欠中小企业账款");
        assert_eq!(r.code, "371082");
        assert_eq!(r.level, RegionLevel::County);
        assert_eq!(r.resolved_by, ResolvedBy::Default);
    }
}
