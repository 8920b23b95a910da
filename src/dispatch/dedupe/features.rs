//! What makes two reports the same incident: the place details citizens give (building
//! and unit numbers, the roads of an intersection and the side of it, named businesses,
//! communities) and the wording, as character bigrams.
//!
//! Numbers are normalized first, so 十四号楼 and 14号楼 are the same building.
//!
//! A report's details are [`Features`] (sets of names, read once per decision); an open
//! case keeps them as [`CaseFeatures`]: names hashed to `u32` (FNV-1a, stable across
//! restarts) in small sorted slices, so a million open cases fit in memory.

use std::collections::BTreeSet;

/// Chinese numerals (一 … 九十九, 两, 零, 百) → Arabic digits, wherever they stand before a
/// counter that names a place (号, 栋, 单元, 楼, 层, 室).
pub fn normalize_numerals(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let start = i;
        while i < chars.len() && numeral_value(chars[i]).is_some() {
            i += 1;
        }
        if i > start {
            let run: String = chars[start..i].iter().collect();
            let followed_by_counter = chars
                .get(i)
                .is_some_and(|c| matches!(c, '号' | '栋' | '单' | '楼' | '层' | '室' | '幢'));
            match (followed_by_counter, chinese_number(&run)) {
                (true, Some(n)) => out.push_str(&n.to_string()),
                _ => out.push_str(&run),
            }
            continue;
        }
        out.push(chars[i]);
        i += 1;
    }
    out
}

fn numeral_value(c: char) -> Option<u32> {
    Some(match c {
        '零' | '〇' => 0,
        '一' => 1,
        '二' | '两' => 2,
        '三' => 3,
        '四' => 4,
        '五' => 5,
        '六' => 6,
        '七' => 7,
        '八' => 8,
        '九' => 9,
        '十' => 10,
        '百' => 100,
        _ => return None,
    })
}

/// 十四 → 14, 二十 → 20, 二十四 → 24, 一百零五 → 105, 三 → 3.
pub fn chinese_number(s: &str) -> Option<u32> {
    let mut total = 0;
    let mut digit: Option<u32> = None;
    for c in s.chars() {
        match numeral_value(c)? {
            10 => {
                total += digit.unwrap_or(1) * 10;
                digit = None;
            }
            100 => {
                total += digit.unwrap_or(1) * 100;
                digit = None;
            }
            d => digit = Some(d),
        }
    }
    Some(total + digit.unwrap_or(0))
}

/// Place details found in a report's text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Features {
    /// `14号楼` → 14.
    pub buildings: BTreeSet<u32>,
    pub units: BTreeSet<u32>,
    /// Road names (`观海路`, `成山大道`, `石岛大街`).
    pub roads: BTreeSet<String>,
    /// 东 / 西 / 南 / 北 side of an intersection.
    pub sides: BTreeSet<char>,
    /// Named businesses and sites (`宏远机械厂`, `老张烧烤`).
    pub entities: BTreeSet<String>,
    /// Communities and villages (`蜊江社区`, `屯口村`), as written: a street prefix may
    /// come with them (`寻山寻山社区`), so two names are one place when one ends the other.
    pub communities: BTreeSet<String>,
    /// Character bigrams of the normalized text, hashed, sorted and unique: wording
    /// similarity is their Jaccard index.
    pub bigrams: Vec<u32>,
}

const COMMUNITY_SUFFIXES: &[&str] = &["社区", "小区", "村"];
const ROAD_SUFFIXES: &[&str] = &["大道", "大街", "路", "街"];
const ENTITY_SUFFIXES: &[&str] = &[
    "机械厂",
    "食品厂",
    "厂",
    "公司",
    "项目部",
    "饭店",
    "饭庄",
    "烧烤",
    "超市",
    "健身房",
    "早餐店",
    "餐馆",
    "酒店",
    "工地",
    "小区",
    "花园",
];
/// Characters that end the name before a suffix: not part of any name.
const STOPS: &[char] = &[
    '，', '。', '、', '与', '和', '在', '的', '是', '有', '个', '了', '附', '近', '门', '口', '边',
    '旁', '里', '从', '到', '把', '被', '我', '们', '你', '他', '这', '那', '举', '报', '反', '映',
    '投', '诉', '某', '区', '镇', '村', '道', '市', '侧', '交', '叉', '号', '楼', '栋', '幢', '单',
    '元', '层',
];

/// Characters that end a community or village name: village names hold 口, 门, 里 (屯口村),
/// so only the words around a name stop it.
const COMMUNITY_STOPS: &[char] = &[
    '，', '。', '、', '与', '和', '在', '的', '是', '有', '了', '从', '到', '我', '们', '你', '他',
    '这', '那', '区', '镇', '道', '市', '县', '住', '附', '近', '诉', '报', '映', '向',
];

/// The name ending at byte `end` of `text` (up to `max` chars, at least 2).
fn name_before(text: &str, end: usize, max: usize) -> Option<String> {
    name_before_with(text, end, max, STOPS)
}

fn name_before_with(text: &str, end: usize, max: usize, stops: &[char]) -> Option<String> {
    let head = &text[..end];
    let name: Vec<char> = head
        .chars()
        .rev()
        .take_while(|c| ('\u{4e00}'..='\u{9fff}').contains(c) && !stops.contains(c))
        .take(max)
        .collect();
    (name.len() >= 2).then(|| name.into_iter().rev().collect())
}

/// Byte spans of the road names in `text` (`观海路`, `成山大道`). Routing uses them too: a
/// keyword that overlaps a road name (the 道路 of 成山大道路口) is not a word of the text.
pub fn road_spans(text: &str) -> Vec<(usize, usize)> {
    // Longest suffix first; a shorter one inside a road already found is not another road
    // (the 街 of 石岛大街).
    let mut covered: Vec<(usize, usize)> = Vec::new();
    for suffix in ROAD_SUFFIXES {
        for (pos, _) in text.match_indices(suffix) {
            let end = pos + suffix.len();
            if covered.iter().any(|&(s, e)| s <= pos && end <= e) {
                continue;
            }
            // 路口/路面/路边… are parts of a road, 街道 an administrative area; 走路, 修路,
            // 马路… are not road names.
            let next = text[end..].chars().next();
            if next.is_some_and(|c| "口面边段灯上旁况道".contains(c)) {
                continue;
            }
            // 成山大道社区 is a community named after the road; the 路 of 铁路街 is inside
            // a longer road name.
            if text[end..].starts_with("社区")
                || (*suffix == "路" && (next == Some('街') || text[end..].starts_with("大")))
            {
                continue;
            }
            let before = text[..pos].chars().next_back();
            if before.is_some_and(|c| "走修让堵过占挡问出马上赶带".contains(c)) {
                continue;
            }
            if let Some(name) = name_before(text, pos, 2) {
                // A name does not reach into the road before it: 青山路铁路街 is 青山路
                // and 铁路街, not 路铁路.
                let mut start = pos - name.len();
                for &(s, e) in &covered {
                    if s < pos && e > start {
                        start = start.max(e);
                    }
                }
                if text[start..pos].chars().count() >= 2 {
                    covered.push((start, end));
                }
            }
        }
    }
    covered
}

pub fn features(text: &str) -> Features {
    let text = normalize_numerals(text);
    let mut f = Features::default();
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    for (k, &(pos, c)) in chars.iter().enumerate() {
        // Numbers before 号楼/栋/幢 (buildings) and 单元 (units).
        if c.is_ascii_digit() && (k == 0 || !chars[k - 1].1.is_ascii_digit()) {
            let digits: String = text[pos..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            let rest = &text[pos + digits.len()..];
            if let Ok(n) = digits.parse::<u32>() {
                if rest.starts_with("号楼")
                    || rest.starts_with('栋')
                    || rest.starts_with('幢')
                    || rest.starts_with("号院")
                {
                    f.buildings.insert(n);
                } else if rest.starts_with("单元") {
                    f.units.insert(n);
                }
            }
        }
        if matches!(c, '东' | '西' | '南' | '北') && text[pos + c.len_utf8()..].starts_with('侧')
        {
            f.sides.insert(c);
        }
    }
    for (start, end) in road_spans(&text) {
        f.roads.insert(text[start..end].to_string());
    }
    for suffix in COMMUNITY_SUFFIXES {
        for (pos, _) in text.match_indices(suffix) {
            if let Some(name) = name_before_with(&text, pos, 4, COMMUNITY_STOPS) {
                f.communities.insert(format!("{name}{suffix}"));
            }
        }
    }
    for suffix in ENTITY_SUFFIXES {
        for (pos, _) in text.match_indices(suffix) {
            if let Some(name) = name_before(&text, pos, 4) {
                f.entities.insert(format!("{name}{suffix}"));
            }
        }
    }
    let content: Vec<char> = text
        .chars()
        .filter(|c| !c.is_whitespace() && !c.is_ascii_punctuation())
        .collect();
    let mut buf = [0u8; 8];
    f.bigrams = content
        .windows(2)
        .map(|w| {
            let a = w[0].encode_utf8(&mut buf[..4]).len();
            let b = w[1].encode_utf8(&mut buf[a..]).len();
            hash32(&buf[..a + b])
        })
        .collect();
    f.bigrams.sort_unstable();
    f.bigrams.dedup();
    f
}

/// FNV-1a, 32 bits: stable across processes and restarts (unlike the std hasher), so
/// restored cases hash their details as the ones that opened them.
pub fn hash32(bytes: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in bytes {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

fn hashed(names: &BTreeSet<String>) -> Box<[u32]> {
    let mut v: Vec<u32> = names.iter().map(|n| hash32(n.as_bytes())).collect();
    v.sort_unstable();
    v.dedup();
    v.into_boxed_slice()
}

fn side_bits(sides: &BTreeSet<char>) -> u8 {
    sides.iter().fold(0, |bits, c| {
        bits | match c {
            '东' => 1,
            '西' => 2,
            '南' => 4,
            '北' => 8,
            _ => 0,
        }
    })
}

/// What an open case keeps of its reports' place details and wording.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CaseFeatures {
    pub buildings: Box<[u32]>,
    pub units: Box<[u32]>,
    /// Hashes of road names.
    pub roads: Box<[u32]>,
    /// 东 1, 西 2, 南 4, 北 8.
    pub sides: u8,
    /// Hashes of business names.
    pub entities: Box<[u32]>,
    /// The entities that are companies (see [`is_company`]): one company of a name per
    /// town, whichever village a report places it in.
    pub companies: Box<[u32]>,
    /// Community names as written (compared by suffix, see [`Features::communities`]).
    pub communities: Box<[Box<str>]>,
    pub bigrams: Box<[u32]>,
}

impl CaseFeatures {
    pub fn of(f: &Features) -> Self {
        Self {
            buildings: f.buildings.iter().copied().collect(),
            units: f.units.iter().copied().collect(),
            roads: hashed(&f.roads),
            sides: side_bits(&f.sides),
            entities: hashed(&f.entities),
            companies: hashed(
                &f.entities
                    .iter()
                    .filter(|e| is_company(e))
                    .cloned()
                    .collect(),
            ),
            communities: f.communities.iter().map(|c| c.as_str().into()).collect(),
            bigrams: f.bigrams.clone().into_boxed_slice(),
        }
    }

    /// Takes each place detail the case lacks from a report that joined it. The wording
    /// stays the first report's: similarity is measured against it.
    pub fn learn(&mut self, report: &Features) {
        let other = Self::of(report);
        if self.buildings.is_empty() {
            self.buildings = other.buildings;
        }
        if self.units.is_empty() {
            self.units = other.units;
        }
        if self.roads.is_empty() {
            self.roads = other.roads;
        }
        if self.sides == 0 {
            self.sides = other.sides;
        }
        if self.entities.is_empty() {
            self.entities = other.entities;
            self.companies = other.companies;
        }
        if self.communities.is_empty() {
            self.communities = other.communities;
        }
    }

    /// Heap bytes held (for the memory budget per open case).
    pub fn heap_bytes(&self) -> usize {
        4 * (self.buildings.len()
            + self.units.len()
            + self.roads.len()
            + self.entities.len()
            + self.companies.len()
            + self.bigrams.len())
            + self
                .communities
                .iter()
                .map(|c| c.len() + std::mem::size_of::<Box<str>>())
                .sum::<usize>()
    }
}

/// A company's name: a trade name before the industry and the form (宏远机械厂,
/// 海达水产公司, 鸿运建设项目部). A company's name is registered once per county, so two
/// reports naming it in one street name one company, whichever village they place it in;
/// a shop's name (老张烧烤, 好又多超市) is not, and a bare industry (物业公司) names none.
pub fn is_company(entity: &str) -> bool {
    ["厂", "公司", "项目部"].iter().any(|s| entity.ends_with(s)) && entity.chars().count() >= 5
}

/// Two non-empty sets that share nothing: the reports name different things.
fn conflict(a: &[u32], b: &[u32]) -> bool {
    !a.is_empty() && !b.is_empty() && !a.iter().any(|x| b.contains(x))
}

fn same_community(x: &str, y: &str) -> bool {
    x.ends_with(y) || y.ends_with(x)
}

/// Why a report cannot be the incident of a case, if it cannot.
pub fn conflict_with(r: &CaseFeatures, c: &CaseFeatures) -> Option<&'static str> {
    if conflict(&r.buildings, &c.buildings) {
        return Some("another building");
    }
    if conflict(&r.units, &c.units) {
        return Some("another unit");
    }
    if !r.roads.is_empty() && !c.roads.is_empty() && r.roads != c.roads {
        return Some("another road");
    }
    if r.sides != 0 && c.sides != 0 && r.sides & c.sides == 0 {
        return Some("another side of the crossing");
    }
    if conflict(&r.entities, &c.entities) {
        return Some("another business");
    }
    // Both name the same crossing, or the same company: that places them more exactly
    // than the community or village they mention beside it (成山头社区附近 / 马家寨村附近
    // the same crossing; a factory's neighbours and workers live in several villages).
    let same_crossing = r.roads.len() >= 2 && r.roads == c.roads;
    let same_company = r.companies.iter().any(|x| c.companies.contains(x));
    if same_crossing || same_company {
        return None;
    }
    let shared = r
        .communities
        .iter()
        .any(|x| c.communities.iter().any(|y| same_community(x, y)));
    if !r.communities.is_empty() && !c.communities.is_empty() && !shared {
        return Some("another community");
    }
    None
}

/// Why two reports cannot be one incident, if they cannot.
pub fn place_conflict(a: &Features, b: &Features) -> Option<&'static str> {
    conflict_with(&CaseFeatures::of(a), &CaseFeatures::of(b))
}

/// The place details of a report that a case also names, for the decision's record.
pub fn shared_places(r: &Features, c: &CaseFeatures) -> Vec<String> {
    let mut out = Vec::new();
    out.extend(
        r.buildings
            .iter()
            .filter(|n| c.buildings.contains(n))
            .map(|n| format!("building:{n}")),
    );
    out.extend(
        r.units
            .iter()
            .filter(|n| c.units.contains(n))
            .map(|n| format!("unit:{n}")),
    );
    out.extend(
        r.roads
            .iter()
            .filter(|n| c.roads.contains(&hash32(n.as_bytes())))
            .map(|n| format!("road:{n}")),
    );
    let bits = side_bits(&r.sides) & c.sides;
    out.extend(
        r.sides
            .iter()
            .filter(|s| side_bits(&[**s].into()) & bits != 0)
            .map(|s| format!("side:{s}")),
    );
    out.extend(
        r.entities
            .iter()
            .filter(|n| c.entities.contains(&hash32(n.as_bytes())))
            .map(|n| format!("entity:{n}")),
    );
    out
}

/// Jaccard index of two sorted, unique hash lists.
pub fn similarity(a: &[u32], b: &[u32]) -> f64 {
    let (mut i, mut j, mut inter) = (0, 0, 0usize);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                inter += 1;
                i += 1;
                j += 1;
            }
        }
    }
    let union = a.len() + b.len() - inter;
    if union == 0 {
        0.0
    } else {
        inter as f64 / union as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chinese_and_arabic_numerals_name_the_same_building() {
        assert_eq!(normalize_numerals("二十四号楼3单元"), "24号楼3单元");
        assert_eq!(normalize_numerals("十四号楼"), "14号楼");
        assert_eq!(normalize_numerals("一号楼六单元"), "1号楼6单元");
        assert_eq!(normalize_numerals("一百零五号"), "105号");
        // Durations are not places and stay as written.
        assert_eq!(normalize_numerals("一个多月了"), "一个多月了");
        assert_eq!(chinese_number("十"), Some(10));
        assert_eq!(chinese_number("二十"), Some(20));
        assert_eq!(
            features("崂山社区二十四号楼").buildings,
            features("崂山社区24号楼").buildings
        );
    }

    #[test]
    fn roads_sides_and_businesses_are_found() {
        let f = features("马栏湾村附近观海路与黄海路交叉口南侧自来水管爆了");
        assert_eq!(
            f.roads,
            ["观海路", "黄海路"].iter().map(|s| s.to_string()).collect()
        );
        assert_eq!(f.sides, ['南'].into());
        let f = features("举报荣成市人和镇宏远机械厂偷排污水入河");
        assert!(f.entities.contains("宏远机械厂"), "{:?}", f.entities);
        let f = features("崖头街道成山大道与石岛大街路口");
        assert!(
            f.roads.contains("成山大道") && f.roads.contains("石岛大街"),
            "{:?}",
            f.roads
        );
    }

    #[test]
    fn one_crossing_written_two_ways_is_one_place() {
        let a =
            features("成山镇沿河路与石岛大街交叉口南侧的路灯坏了半个多月了，附近住户走路很危险");
        let b = features("成山镇沿河路石岛大街路口南侧的路灯坏了一个星期了，大家走路很危险");
        assert_eq!(a.roads, b.roads, "{:?} / {:?}", a.roads, b.roads);
        // 走路 (walking) is not a road.
        assert!(features("附近住户走路很危险").roads.is_empty());
        assert_eq!(place_conflict(&a, &b), None, "{a:?} {b:?}");
    }

    #[test]
    fn the_same_problem_elsewhere_conflicts() {
        let a = features("蜊江社区2号楼5单元电梯停用两个月");
        let b = features("城西街道蜊江社区一号楼6单元电梯停用两个月");
        assert_eq!(place_conflict(&a, &b), Some("another building"));
        let a = features("青山路与府新路交叉口东侧地下管道漏水严重");
        let b = features("青山路与黄海路交叉口南侧地下管道漏水严重");
        assert_eq!(place_conflict(&a, &b), Some("another road"));
        let a = features("马栏湾村附近观海路黄海路路口南侧自来水管爆了");
        let b =
            features("俚岛镇马栏湾村附近观海路与黄海路交叉口南侧自来水管爆了，两个月了还在冒水");
        assert_eq!(place_conflict(&a, &b), None);
        assert!(similarity(&a.bigrams, &b.bigrams) > 0.4);
    }

    #[test]
    fn a_road_name_does_not_reach_into_the_road_before_it() {
        let roads = |t: &str| features(t).roads.into_iter().collect::<Vec<_>>();
        assert_eq!(roads("青山路铁路街路口南侧路灯不亮"), ["铁路街", "青山路"]);
        assert_eq!(
            roads("青山路与铁路街交叉口南侧路灯不亮"),
            ["铁路街", "青山路"]
        );
        // A community named after a road is not the road.
        assert!(roads("成山大道社区11号楼电梯坏了").is_empty());
    }

    #[test]
    fn village_and_community_names_are_found_without_the_words_around_them() {
        let c = |t: &str| features(t).communities.into_iter().collect::<Vec<_>>();
        // 口 ends shop names (门口), not village names.
        assert_eq!(c("崂山街道屯口村17号楼停水"), ["屯口村"]);
        assert_eq!(c("投诉铁路社区附近烧烤店油烟"), ["铁路社区"]);
        // A town written before the village stays on it; suffixes make them one place.
        let a = features("城西铁路社区阳光健身房油烟扰民");
        let b = features("投诉铁路社区附近阳光健身房油烟扰民");
        assert_eq!(place_conflict(&a, &b), None);
        // A residential compound is a place of its own: 7号楼 there is not 石岛社区's.
        let a = features("海景花园小区7号楼门禁坏了");
        let b = features("石岛社区七号楼门禁坏了");
        assert_eq!(place_conflict(&a, &b), Some("another community"));
        let a = features("宁津所社区18号楼申请低保没有结果");
        let b = features("东墩村18号楼申请低保没有结果");
        assert_eq!(place_conflict(&a, &b), Some("another community"));
    }

    #[test]
    fn a_business_name_does_not_take_the_building_before_it() {
        let a = features("投诉南山村10号楼物业公司乱收费");
        let b = features("南山村10号楼3单元物业公司乱收费");
        assert!(a.entities.contains("物业公司"), "{:?}", a.entities);
        assert_eq!(place_conflict(&a, &b), None);
    }
}
