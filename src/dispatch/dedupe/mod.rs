//! Near-duplicate merge: a new report joins an open case when it describes the same
//! incident:
//! - same region: the street, or the county for a report placed no more exactly. The
//!   region is `petitions.inbound`'s partition key, so one dispatcher sees all of a
//!   region's reports and none of another's; a county-level report therefore never joins
//!   a street's case (it names a company or crossing without its town, and the same
//!   names exist in several towns: measured on the sample, recall +0.009 for precision
//!   −0.020);
//! - same department, or one of them still in triage;
//! - reported within the window of every other report of the case (the center's 72 h
//!   promise: a problem reported again after that is a new case, or a reopened one),
//!   judged on the times the citizens reported them, whatever order they arrived in;
//! - at least one shared place detail (building, unit, road, business) and none
//!   conflicting (another building, unit, road, side of a crossing, business, community),
//!   read from the report's address and text; a business name alone does not place a
//!   report that has no street (the same name exists in several towns). The same
//!   crossing, or the same company (see `features::is_company`), places two reports more
//!   exactly than the community or village either names beside it;
//! - problem words that can name one problem with those of every report of the case that
//!   named any (shared, sharing a morpheme: 摊贩 / 流动摊点, or synonyms the
//!   responsibility list names: 废气 / 臭味), or else wording at least
//!   `min_similarity_other_words` alike;
//! - wording similarity (Jaccard over hashed character bigrams) with the closest of the
//!   case's first reports at least `min_similarity_with_place`, or
//!   `min_similarity_strong_place` when both name the place in full (a named community's
//!   building, both roads and the side of a crossing); the most similar candidate wins.
//!   Every report of the case, not its first: which report of an incident arrives first
//!   is chance.
//!
//! Reports that name no place ("办事效率太低") never merge: nothing says they are one
//! incident.
//!
//! **Candidate lookup.** A merge needs a shared building, unit, road or business, so the
//! candidates are exactly the open cases listed under one of the report's place details:
//! an inverted index from (region, kind, list, hashed name) to open-case slots, with each
//! detail also listed per community (see `Lists`) so that a report in a busy street
//! looks only at its community's cases (roads are listed as the set a report names, a
//! road or a crossing's two). It is exact (no candidate that could merge is
//! missed, unlike MinHash/LSH, which is probabilistic and at these similarity thresholds,
//! Jaccard 0.12 or 0.05, would need so many bands that nearly every case in the window
//! becomes a candidate). The exact check then runs on the candidates only. `cfg(test)`
//! keeps the linear scan and a test that both decide alike.
//!
//! **Event time.** Decisions use reported times (a report that does not say when was
//! reported at its receipt or at most the allowed lateness before it, or it arrived
//! within the window of the case's first report). Cases leave the index by processing
//! time, the partition's
//! latest receipt time: window + `allowed_lateness_secs` after their first report
//! arrived. A report held back that long (a portal polled after an outage, a batch) still
//! finds its case, and a backlog pushed at once finds the cases it opens itself.
//!
//! **Memory.** An open case keeps hashes, not strings: sorted `u32` slices for its
//! bigrams (≈ 30–60 per petition, for each of its first eight reports) and place
//! details, its community names, id, region and problem words: about 0.75 KiB with its
//! index entries for a case of one report (see `OpenCase::heap_bytes` and the test that
//! bounds it under 1 KiB), ≈ 0.2 KiB more per joined report.

pub mod features;

use features::{conflict_with, features, shared_places, similarity, CaseFeatures, Features};
use foldhash::HashMap;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// How sure the merge must be. Wording similarity is Jaccard over character bigrams of
/// the normalized text; place details must not conflict at all, and one must be shared.
#[derive(Debug, Clone, Copy)]
pub struct DedupeSettings {
    /// The reports of one case were all reported within this long of each other.
    pub window_secs: i64,
    /// A case stays in the index for the window and this long of processing time after
    /// it opened: how much later than its incident's first report a report may reach
    /// the gateway (a portal polled after an outage, a batch) and still join the case.
    pub allowed_lateness_secs: i64,
    /// Wording similarity needed on top of a shared building, road or business.
    pub min_similarity_with_place: f64,
    /// … when both name the place in full (a community's building, a crossing's side).
    pub min_similarity_strong_place: f64,
    /// When the problem words are unrelated, the wording must be this close.
    pub min_similarity_other_words: f64,
}

impl DedupeSettings {
    /// How long, on the processing clock, a case stays open for merging after its first
    /// report reached the gateway: the window and the allowed lateness.
    pub fn held_secs(&self) -> i64 {
        self.window_secs + self.allowed_lateness_secs
    }
}

impl Default for DedupeSettings {
    fn default() -> Self {
        Self {
            window_secs: 72 * 3600,
            allowed_lateness_secs: 72 * 3600,
            min_similarity_with_place: 0.12,
            min_similarity_strong_place: 0.05,
            min_similarity_other_words: 0.35,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    /// Whether the channel said when (Open311 does not: `at_unix` is then the receipt
    /// time, which says nothing of the incident's time).
    pub at_known: bool,
    pub text: &'a str,
    /// The petition's address as the citizen or channel wrote it: place details (the
    /// village of 埠柳镇不夜村海达水产公司) the text may leave out.
    pub address: Option<&'a str>,
    /// The problem words routing found (see `Router::problem_words`).
    pub problem: &'a [String],
}

impl Report<'_> {
    fn features(&self) -> Features {
        read(self.address, self.text)
    }
}

/// The features of an address and text read together.
fn read(address: Option<&str>, text: &str) -> Features {
    match address {
        Some(a) if !a.trim().is_empty() => features(&format!("{a}\n{text}")),
        _ => features(text),
    }
}

/// What the dispatcher persists for an open case so that a restarted deduper decides
/// exactly as the one that opened it: `open` with the seed rebuilds the case, and
/// `merged` replays each report that joined it, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaseSeed {
    pub case_id: String,
    pub region: String,
    pub department: String,
    pub opened_at: i64,
    pub text: String,
    /// Seeds persisted before the address was read have none.
    #[serde(default)]
    pub address: Option<String>,
    pub problem: Vec<String>,
    /// Processing time: unix seconds the first report reached the gateway (seeds
    /// persisted before it was kept: `opened_at`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub received_unix: Option<i64>,
    /// The first report did not say when it was reported (`opened_at` is its receipt).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub opened_at_unknown: bool,
}

impl CaseSeed {
    fn processing_time(&self) -> i64 {
        self.received_unix.unwrap_or(self.opened_at)
    }
}

struct OpenCase {
    case_id: Box<str>,
    /// Street, or county until a report names the street.
    region: Box<str>,
    department: Box<str>,
    /// The problem words routing found (路灯, 占道经营) in each report that named any:
    /// another problem at the same place is another incident, whichever of the case's
    /// reports came first.
    problems: Box<[Box<[Box<str>]>]>,
    /// The wording of the reports that joined (up to [`MEMBERS_COMPARED`] with the
    /// first's in `features`): a report as close to any of them is as close to the case.
    joined_bigrams: Box<[Box<[u32]>]>,
    /// Unix seconds of the earliest and the latest reported time among the case's
    /// reports: they stay within the window of each other, so a case that keeps being
    /// reported does not stay open for merging for ever, and a report dated before the
    /// case's first one still joins it. No report that said when: `i64::MAX` and
    /// `i64::MIN`, so that any report's time fits.
    earliest: i64,
    latest: i64,
    /// Processing time it opened at: it leaves the index once the clock is the window
    /// and the allowed lateness past this.
    opened_processing: i64,
    features: CaseFeatures,
}

/// How many of a case's reports a new report's wording is compared with (the first
/// ones): enough for the reports of one incident, bounded for memory.
const MEMBERS_COMPARED: usize = 8;

impl OpenCase {
    /// Wording similarity of a report to the closest of the case's reports.
    fn similarity(&self, bigrams: &[u32]) -> f64 {
        self.joined_bigrams
            .iter()
            .map(|b| similarity(bigrams, b))
            .fold(similarity(bigrams, &self.features.bigrams), f64::max)
    }

    #[cfg(test)]
    /// Heap bytes held by the case itself (its index entries come on top: 4 bytes per
    /// place detail in a posting list, plus the id map entry).
    fn heap_bytes(&self) -> usize {
        self.case_id.len()
            + self.region.len()
            + self.department.len()
            + self
                .problems
                .iter()
                .flat_map(|words| words.iter())
                .map(|p| p.len() + std::mem::size_of::<Box<str>>())
                .sum::<usize>()
            + self
                .problems
                .iter()
                .map(|_| std::mem::size_of::<Box<[Box<str>]>>())
                .sum::<usize>()
            + self
                .joined_bigrams
                .iter()
                .map(|b| 4 * b.len() + std::mem::size_of::<Box<[u32]>>())
                .sum::<usize>()
            + self.features.heap_bytes()
    }

    /// The posting keys this case is listed under (see [`Lists`]).
    fn keys(&self) -> Vec<u64> {
        let f = &self.features;
        let tails = community_tails(&f.communities);
        let mut keys = Vec::new();
        for (kind, values) in details(f) {
            for v in values.iter() {
                keys.push(key(&self.region, kind, Lists::All, 0, *v));
                // A report naming a building finds the cases of that building through
                // the building's lists; by unit it needs only cases naming no building
                // (another building conflicts).
                if kind == UNIT && !f.buildings.is_empty() {
                    continue;
                }
                if tails.is_empty() {
                    keys.push(key(&self.region, kind, Lists::NoCommunity, 0, *v));
                }
                for t in &tails {
                    keys.push(key(&self.region, kind, Lists::Community, *t, *v));
                }
            }
        }
        keys
    }
}

const BUILDING: u8 = b'b';
const UNIT: u8 = b'u';
const ROAD: u8 = b'r';
const ENTITY: u8 = b'e';

/// The place details a case is listed under, by kind. Roads are listed as one value, the
/// set a report names (a road, or the two of a crossing): another set conflicts, so only
/// the cases naming the same set are candidates, and a busy road's cases are not all
/// looked at for each of its crossings.
fn details(f: &CaseFeatures) -> [(u8, Cow<'_, [u32]>); 4] {
    let roads = if f.roads.is_empty() {
        Cow::Borrowed(&[][..])
    } else {
        let bytes: Vec<u8> = f.roads.iter().flat_map(|r| r.to_le_bytes()).collect();
        Cow::Owned(vec![features::hash32(&bytes)])
    };
    [
        (BUILDING, Cow::Borrowed(&f.buildings[..])),
        (UNIT, Cow::Borrowed(&f.units[..])),
        (ROAD, roads),
        (ENTITY, Cow::Borrowed(&f.entities[..])),
    ]
}

/// Each place detail is listed three ways, so that a report in a busy street looks only
/// at cases that could be its incident:
/// - `All`: every case naming it (for reports that name no community);
/// - `Community`: per community of the case (a report naming a community looks only
///   there, and at `NoCommunity`: another community conflicts);
/// - `NoCommunity`: cases that name none.
#[derive(Clone, Copy)]
enum Lists {
    All = 1,
    Community = 2,
    NoCommunity = 3,
}

/// What two community names written differently (寻山寻山社区 / 寻山社区) still share: the
/// last two characters of the name and the suffix. Names are at least two characters,
/// so names one of which ends the other always agree on it.
fn community_tails(communities: &[Box<str>]) -> Vec<u32> {
    let mut tails: Vec<u32> = communities
        .iter()
        .map(|c| {
            let chars: Vec<char> = c.chars().collect();
            let suffix = if c.ends_with("社区") || c.ends_with("小区") {
                2
            } else {
                1
            };
            let from = chars.len().saturating_sub(suffix + 2);
            let tail: String = chars[from..].iter().collect();
            features::hash32(tail.as_bytes())
        })
        .collect();
    tails.sort_unstable();
    tails.dedup();
    tails
}

/// Posting key of one place detail in one region and list (FNV-1a 64, stable across
/// restarts).
fn key(region: &str, kind: u8, list: Lists, qualifier: u32, value: u32) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let bytes = region
        .bytes()
        .chain([0, kind, list as u8])
        .chain(qualifier.to_le_bytes())
        .chain(value.to_le_bytes());
    for b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The lists a report looks into in one region: every case that shares a place detail
/// with it and names no conflicting community or building is in one of them.
fn report_keys(region: &str, f: &CaseFeatures) -> Vec<u64> {
    let tails = community_tails(&f.communities);
    let mut keys = Vec::new();
    for (kind, values) in details(f) {
        for v in values.iter() {
            // A unit alone (no building) may be any building's unit; a crossing is the
            // same place whichever community a report names beside it.
            let crossing = kind == ROAD && f.roads.len() >= 2;
            let company = kind == ENTITY && f.companies.contains(v);
            if (kind == UNIT && f.buildings.is_empty()) || tails.is_empty() || crossing || company {
                keys.push(key(region, kind, Lists::All, 0, *v));
                continue;
            }
            keys.push(key(region, kind, Lists::NoCommunity, 0, *v));
            for t in &tails {
                keys.push(key(region, kind, Lists::Community, *t, *v));
            }
        }
    }
    keys
}

#[derive(Default)]
pub struct Deduper {
    settings: DedupeSettings,
    /// Open cases; a slot freed when its case leaves the window is reused.
    slots: Vec<Option<OpenCase>>,
    free: Vec<u32>,
    by_id: HashMap<Box<str>, u32>,
    /// (region, kind, place) → slots of the open cases that name it.
    postings: HashMap<u64, Vec<u32>>,
    /// Cases by the processing time they opened at, for dropping them in time.
    expiry: BinaryHeap<Reverse<(i64, u32)>>,
    /// The processing clock (see [`Deduper::clock`]).
    clock: Option<i64>,
}

/// A report against one candidate case, after the exact check.
struct Fit<'c> {
    case: &'c OpenCase,
    score: f64,
    places: Vec<String>,
}

/// Whether two reports' problem words can name one problem. Unknown on either side: yes.
/// Otherwise a shared word, or keywords sharing a morpheme: Chinese compounds that share
/// a character name related things (摊贩 / 流动摊点, 道路 / 路面, 水管 / 漏水), while
/// another problem at the same place shares none (井盖 / 摊贩, 公交 / 坑洼).
fn problems_related(a: &[String], b: &[Box<str>]) -> bool {
    if a.is_empty() || b.is_empty() || a.iter().any(|p| b.iter().any(|q| **q == **p)) {
        return true;
    }
    let ka: Vec<&str> = a
        .iter()
        .filter_map(|p| p.strip_prefix("keyword:"))
        .collect();
    let kb: Vec<&str> = b
        .iter()
        .filter_map(|p| p.strip_prefix("keyword:"))
        .collect();
    if ka.is_empty() || kb.is_empty() {
        return true;
    }
    ka.iter()
        .any(|x| kb.iter().any(|y| x.chars().any(|ch| y.contains(ch))))
}

/// A place named in full by both: the building of a named community, or both roads of a
/// crossing and the side of it.
fn strong_place(places: &[String], r: &CaseFeatures, c: &CaseFeatures) -> bool {
    let count = |kind: &str| places.iter().filter(|p| p.starts_with(kind)).count();
    let community = !r.communities.is_empty() && !c.communities.is_empty();
    (count("building:") > 0 && community) || (count("road:") >= 2 && count("side:") > 0)
}

/// County codes are six digits, street codes nine (GB/T 2260 plus the street part).
fn is_county(region: &str) -> bool {
    region.len() <= 6
}

impl Deduper {
    pub fn new(settings: DedupeSettings) -> Self {
        Self {
            settings,
            ..Self::default()
        }
    }

    /// Open cases held (those past window and lateness are dropped lazily, as new cases
    /// open).
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Which open case, if any, this report joins. Changes nothing: the caller calls
    /// `open` or `merged` once the decision is durable.
    pub fn decide(&self, r: &Report<'_>) -> Option<MergeDecision> {
        let f = r.features();
        let cf = CaseFeatures::of(&f);
        let mut slots: Vec<u32> = Vec::new();
        for k in report_keys(r.region, &cf) {
            if let Some(p) = self.postings.get(&k) {
                slots.extend(p);
            }
        }
        slots.sort_unstable();
        slots.dedup();
        let cases = slots
            .iter()
            .filter_map(|s| self.slots.get(*s as usize).and_then(Option::as_ref));
        self.choose(r, &f, &cf, cases)
    }

    /// The exact check over candidate cases, and the choice among those that fit.
    fn choose<'c>(
        &self,
        r: &Report<'_>,
        f: &Features,
        cf: &CaseFeatures,
        cases: impl Iterator<Item = &'c OpenCase>,
    ) -> Option<MergeDecision> {
        let mut best: Option<Fit<'c>> = None;
        for c in cases {
            let Some(fit) = self.fits(r, f, cf, c) else {
                continue;
            };
            let better = best.as_ref().is_none_or(|b| {
                (fit.score, c.earliest, &c.case_id) > (b.score, b.case.earliest, &b.case.case_id)
            });
            if better {
                best = Some(fit);
            }
        }
        best.map(|b| MergeDecision {
            case_id: b.case.case_id.to_string(),
            score: (b.score * 1000.0).round() / 1000.0,
            matched: b.places,
        })
    }

    /// Event time: the case's reports with this one lie within one window, whichever of
    /// them arrived first.
    ///
    /// A report that does not say when it was reported (Open311) was reported at its
    /// receipt or, at most, the allowed lateness before it; a case whose reports all
    /// left it unsaid, likewise before its first report's receipt. Such a report fits
    /// when some time in that range fits the case, or when it arrived within the window
    /// of the case's first report (a backlog delivered at once says nothing of when).
    fn within_window(&self, r: &Report<'_>, c: &OpenCase) -> bool {
        let (window, lateness) = (
            self.settings.window_secs,
            self.settings.allowed_lateness_secs,
        );
        let case_dated = c.earliest <= c.latest;
        if r.at_known && case_dated {
            return c.latest.max(r.at_unix) - c.earliest.min(r.at_unix) <= window;
        }
        let arrived = self.clock.unwrap_or(c.opened_processing);
        if arrived.saturating_sub(c.opened_processing) <= window {
            return true;
        }
        let (earliest, latest) = if r.at_known {
            (r.at_unix, r.at_unix)
        } else {
            (r.at_unix.saturating_sub(lateness), r.at_unix)
        };
        // The times the report may have been reported at and still fit the case.
        let (from, to) = if case_dated {
            (
                c.latest.saturating_sub(window),
                c.earliest.saturating_add(window),
            )
        } else {
            (
                c.opened_processing.saturating_sub(lateness + window),
                c.opened_processing.saturating_add(window),
            )
        };
        latest >= from && earliest <= to
    }

    /// Whether the report can be this case's incident, with the evidence.
    fn fits<'c>(
        &self,
        r: &Report<'_>,
        f: &Features,
        cf: &CaseFeatures,
        c: &'c OpenCase,
    ) -> Option<Fit<'c>> {
        let s = self.settings;
        if !self.within_window(r, c) {
            return None;
        }
        if *c.region != *r.region {
            return None;
        }
        // A report the router could not place may join any case, and any report may
        // join a case still in triage: routing is not what makes an incident.
        let triage = crate::dispatch::router::TRIAGE;
        let compatible =
            *c.department == *r.department || &*c.department == triage || r.department == triage;
        if !compatible || conflict_with(cf, &c.features).is_some() {
            return None;
        }
        let score = c.similarity(&cf.bigrams);
        // Unrelated problem words and different wording: another problem at that place.
        let unrelated = c.problems.iter().any(|p| !problems_related(r.problem, p));
        if unrelated && score < s.min_similarity_other_words {
            return None;
        }
        let places = shared_places(f, &c.features);
        if !places.iter().any(|p| !p.starts_with("side:")) {
            return None;
        }
        // A business named without its town (远洋食品厂) may be any of the branches or
        // namesakes in the county's towns: in reports placed only at county level, only
        // a building or road places it.
        if is_county(r.region) && places.iter().all(|p| p.starts_with("entity:")) {
            return None;
        }
        // Both name the place in full: different words for the same problem (暖气不热 /
        // 供暖温度只有14度) are enough.
        let min = if strong_place(&places, cf, &c.features) {
            s.min_similarity_strong_place
        } else {
            s.min_similarity_with_place
        };
        (score >= min).then_some(Fit {
            case: c,
            score,
            places,
        })
    }

    /// Opens a case (a report that merged nowhere, or a case restored after a restart).
    /// Cases past the window and the allowed lateness are dropped here.
    pub fn open(&mut self, seed: &CaseSeed) {
        self.observe(seed.processing_time());
        self.expire();
        if let Some(&old) = self.by_id.get(seed.case_id.as_str()) {
            // Restoring a case already held: the seed replaces it.
            self.remove(old);
        }
        let case = OpenCase {
            case_id: seed.case_id.as_str().into(),
            region: seed.region.as_str().into(),
            department: seed.department.as_str().into(),
            problems: if seed.problem.is_empty() {
                Box::default()
            } else {
                Box::new([seed.problem.iter().map(|p| p.as_str().into()).collect()])
            },
            joined_bigrams: Box::default(),
            earliest: if seed.opened_at_unknown {
                i64::MAX
            } else {
                seed.opened_at
            },
            latest: if seed.opened_at_unknown {
                i64::MIN
            } else {
                seed.opened_at
            },
            opened_processing: seed.processing_time(),
            features: CaseFeatures::of(&read(seed.address.as_deref(), &seed.text)),
        };
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => {
                self.slots.push(None);
                // More than u32::MAX open cases is far beyond any deployment.
                u32::try_from(self.slots.len() - 1).unwrap_or(u32::MAX)
            }
        };
        self.by_id.insert(case.case_id.clone(), slot);
        self.expiry.push(Reverse((case.opened_processing, slot)));
        self.index(slot, case);
    }

    /// Lists a case under its region and place details, in `slot`.
    fn index(&mut self, slot: u32, case: OpenCase) {
        for k in case.keys() {
            self.postings.entry(k).or_default().push(slot);
        }
        if let Some(s) = self.slots.get_mut(slot as usize) {
            *s = Some(case);
        }
    }

    /// Takes a case out of the index (and its slot), returning it.
    fn unindex(&mut self, slot: u32) -> Option<OpenCase> {
        let case = self.slots.get_mut(slot as usize)?.take()?;
        for k in case.keys() {
            if let Some(p) = self.postings.get_mut(&k) {
                p.retain(|s| *s != slot);
                if p.is_empty() {
                    self.postings.remove(&k);
                }
            }
        }
        Some(case)
    }

    fn remove(&mut self, slot: u32) {
        if let Some(case) = self.unindex(slot) {
            self.by_id.remove(&case.case_id);
            self.free.push(slot);
        }
    }

    /// The cases open for merging.
    pub fn case_ids(&self) -> impl Iterator<Item = &str> {
        self.by_id.keys().map(|k| &**k)
    }

    /// A case closed or rejected: later reports of the same place open a new case.
    pub fn close(&mut self, case_id: &str) {
        if let Some(&slot) = self.by_id.get(case_id) {
            self.remove(slot);
        }
    }

    /// The partition's processing clock: the latest time a report reached the gateway,
    /// as its records say (so replay and restore move it exactly as live processing
    /// did). It only decides when cases leave the index; merges are decided on reported
    /// times alone.
    pub fn clock(&self) -> Option<i64> {
        self.clock
    }

    /// A report reached the gateway at `received_unix` (processing time).
    pub fn observe(&mut self, received_unix: i64) {
        self.clock = Some(self.clock.map_or(received_unix, |c| c.max(received_unix)));
    }

    /// Drops the cases whose window and allowed lateness have passed on the processing
    /// clock since they opened. A report later than that opens a case of its own.
    fn expire(&mut self) {
        let Some(now) = self.clock else {
            return;
        };
        let keep = self.settings.held_secs();
        while let Some(&Reverse((opened, slot))) = self.expiry.peek() {
            if now - opened <= keep {
                break;
            }
            self.expiry.pop();
            // The slot may hold a newer case by now (reused, or the case re-seeded).
            let current = self
                .slots
                .get(slot as usize)
                .and_then(Option::as_ref)
                .is_some_and(|c| c.opened_processing == opened);
            if current {
                self.remove(slot);
            }
        }
    }

    /// A report joined `case_id`: the case learns what its first report left open. Each
    /// place detail the case lacked (community, building, road…) is taken from the first
    /// report that gives it: from then on another community or building is another
    /// incident. Restore replays these calls in order.
    pub fn merged(&mut self, case_id: &str, report: &Report<'_>) {
        let Some(&slot) = self.by_id.get(case_id) else {
            return;
        };
        let Some(mut case) = self.unindex(slot) else {
            return;
        };
        let features = report.features();
        case.features.learn(&features);
        // Boxed slices, rebuilt on a merge: an open case is held far more often than it
        // is joined.
        if case.joined_bigrams.len() + 1 < MEMBERS_COMPARED {
            let mut joined = std::mem::take(&mut case.joined_bigrams).into_vec();
            joined.push(features.bigrams.into_boxed_slice());
            case.joined_bigrams = joined.into_boxed_slice();
        }
        let words: Box<[Box<str>]> = report.problem.iter().map(|p| p.as_str().into()).collect();
        if !words.is_empty() && !case.problems.contains(&words) {
            let mut problems = std::mem::take(&mut case.problems).into_vec();
            problems.push(words);
            case.problems = problems.into_boxed_slice();
        }
        if report.at_known {
            case.latest = case.latest.max(report.at_unix);
            case.earliest = case.earliest.min(report.at_unix);
        }
        self.index(slot, case);
    }

    /// Decides and applies in one step (tests), the report reaching the gateway when it
    /// was reported.
    pub fn decide_and_apply(&mut self, case_id: &str, r: &Report<'_>) -> Option<MergeDecision> {
        let decision = self.decide(r);
        match &decision {
            Some(m) => {
                self.observe(r.at_unix);
                self.merged(&m.case_id, r);
            }
            None => self.open(&CaseSeed {
                case_id: case_id.to_string(),
                region: r.region.to_string(),
                department: r.department.to_string(),
                opened_at: r.at_unix,
                text: r.text.to_string(),
                address: r.address.map(str::to_string),
                problem: r.problem.to_vec(),
                received_unix: None,
                opened_at_unknown: !r.at_known,
            }),
        }
        decision
    }

    /// The same decision by a scan of every open case: the reference the index must match.
    #[cfg(test)]
    fn decide_linear(&self, r: &Report<'_>) -> Option<MergeDecision> {
        let f = r.features();
        let cf = CaseFeatures::of(&f);
        self.choose(r, &f, &cf, self.slots.iter().flatten())
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
                    at_known: true,
                    text: "宁津街道东墩村4号楼暖气不热，一个星期一直这样",
                    address: None,
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
                    at_known: true,
                    text: "荣成市宁津街道东墩村四号楼3单元暖气不热，三天一直这样",
                    address: None,
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
                at_known: true,
                text: "蜊江社区2号楼5单元电梯停用两个月",
                address: None,
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
                    at_known: true,
                    text: "城西街道蜊江社区一号楼6单元电梯停用两个月",
                    address: None,
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
                    at_known: true,
                    text: "蜊江社区2号楼5单元电梯停用两个月",
                    address: None,
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
                at_known: true,
                text: "你们办事效率太低了，我反映的问题一直没人管。",
                address: None,
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
                    at_known: true,
                    text: "你们办事效率太低了，我反映的问题一直没人管。",
                    address: None,
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
                at_known: true,
                text: "东墩村4号楼暖气不热",
                address: None,
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
                    at_known: true,
                    text: "东墩村4号楼暖气不热",
                    address: None,
                    problem: &w
                }
            ),
            None
        );
    }

    fn report<'a>(
        region: &'a str,
        department: &'a str,
        at: i64,
        text: &'a str,
        problem: &'a [String],
    ) -> Report<'a> {
        Report {
            region,
            department,
            at_unix: at,
            at_known: true,
            text,
            address: None,
            problem,
        }
    }

    #[test]
    fn a_county_level_report_never_joins_a_street_case() {
        // Regions are the inbound partition key: a street's cases and the county's
        // reports are decided by different dispatchers, so they must not depend on
        // each other.
        let mut d = Deduper::default();
        let w = words(&["路灯"]);
        let street = "港湾街道观海路石岛大街路口北侧路灯不亮好几天了，晚上过马路看不见车";
        d.decide_and_apply(
            "c1",
            &report("371082004", "urban-management", 0, street, &w),
        );
        let county = "观海路和石岛大街路口北侧的路灯全灭了，晚上过马路看不见车";
        assert_eq!(
            d.decide(&report("371082", "urban-management", 60, county, &w)),
            None
        );
        let again = "观海路石岛大街路口北侧的路灯全灭了，晚上过马路看不见车辆";
        d.decide_and_apply("c2", &report("371082", "urban-management", 60, county, &w));
        let m = d
            .decide(&report("371082", "urban-management", 120, again, &w))
            .expect("county-level reports of one crossing meet");
        assert_eq!(m.case_id, "c2");
    }

    #[test]
    fn a_business_name_alone_does_not_place_a_county_level_report() {
        let mut d = Deduper::default();
        let first = "俚岛镇金达食品厂拖欠我们十几个工人工资两个月";
        d.decide_and_apply("c1", &report("371082011", "hrss", 0, first, &[]));
        // The same name without a town may be the namesake factory elsewhere.
        let county = "金达食品厂拖欠我们十几个工人工资两个月了";
        assert_eq!(d.decide(&report("371082", "hrss", 3600, county, &[])), None);
        // Nor do two such reports, both without a town.
        d.decide_and_apply("c2", &report("371082", "hrss", 7200, county, &[]));
        assert_eq!(d.decide(&report("371082", "hrss", 9000, county, &[])), None);
        // Within the street the name places it.
        let street = "俚岛金达食品厂拖欠工人工资两个月了";
        assert!(d
            .decide(&report("371082011", "hrss", 3600, street, &[]))
            .is_some());
    }

    #[test]
    fn another_community_is_another_incident() {
        let mut d = Deduper::default();
        let w = words(&["停水"]);
        d.decide_and_apply(
            "c1",
            &report("371082010", "water", 0, "崂山街道南山村7号楼停水两天了", &w),
        );
        assert_eq!(
            d.decide(&report(
                "371082010",
                "water",
                3600,
                "崂山街道屯口村7号楼停水两天了",
                &w
            )),
            None
        );
        // A street name written before the village is the same village.
        assert!(d
            .decide(&report(
                "371082010",
                "water",
                3600,
                "崂山南山村7号楼也停水两天了",
                &w
            ))
            .is_some());
    }

    #[test]
    fn problem_words_sharing_a_morpheme_are_one_problem() {
        let mut d = Deduper::default();
        d.decide_and_apply(
            "c1",
            &report(
                "371082017",
                "urban-management",
                0,
                "滕家镇青山路与黄海路交叉口东侧早上有小摊贩占道，车都过不去",
                &words(&["摊贩"]),
            ),
        );
        let m = d.decide(&report(
            "371082017",
            "urban-management",
            3600,
            "青山路黄海路路口东侧流动摊点把人行道占满了",
            &words(&["流动摊点"]),
        ));
        assert_eq!(m.map(|m| m.case_id).as_deref(), Some("c1"));
        // A missing manhole cover at that crossing is another problem.
        let m = d.decide(&report(
            "371082017",
            "urban-management",
            3600,
            "青山路黄海路路口东侧井盖丢了，车都过不去",
            &words(&["井盖"]),
        ));
        assert_eq!(m, None);
    }

    #[test]
    fn a_case_learns_the_building_its_first_report_left_out() {
        let mut d = Deduper::default();
        let w = words(&["电梯"]);
        d.decide_and_apply(
            "c1",
            &report(
                "371082002",
                "housing",
                0,
                "蜊江社区3单元的电梯又坏了，老人上不去楼",
                &w,
            ),
        );
        assert!(d
            .decide_and_apply(
                "c2",
                &report(
                    "371082002",
                    "housing",
                    60,
                    "蜊江社区5号楼3单元电梯坏了，老人上不去楼",
                    &w
                )
            )
            .is_some());
        // Building 5's elevator is the case now: building 6's is another.
        assert_eq!(
            d.decide(&report(
                "371082002",
                "housing",
                120,
                "蜊江社区6号楼3单元电梯坏了，老人上不去楼",
                &w
            )),
            None
        );
    }

    #[test]
    fn restore_by_seed_and_merged_reports_decides_as_before() {
        let w = words(&["路灯"]);
        let reports = [
            ("c1", "371082", 0, "观海路和石岛大街路口北侧的路灯全灭了"),
            (
                "c2",
                "371082004",
                60,
                "港湾街道观海路石岛大街路口北侧路灯不亮",
            ),
            ("c3", "371082004", 120, "港湾社区8号楼门口的路灯不亮"),
        ];
        let mut live = Deduper::default();
        let mut seeds = Vec::new();
        let mut joined = Vec::new();
        for (id, region, at, text) in reports {
            let r = report(region, "urban-management", at, text, &w);
            match live.decide_and_apply(id, &r) {
                Some(m) => joined.push((m.case_id, region, at, text)),
                None => seeds.push(CaseSeed {
                    case_id: id.into(),
                    region: region.into(),
                    department: "urban-management".into(),
                    opened_at: at,
                    text: text.into(),
                    address: None,
                    problem: w.clone(),
                    received_unix: None,
                    opened_at_unknown: false,
                }),
            }
        }
        let mut restored = Deduper::default();
        for s in &seeds {
            restored.open(s);
        }
        for (case, region, at, text) in &joined {
            restored.merged(case, &report(region, "urban-management", *at, text, &w));
        }
        assert_eq!(restored.len(), live.len());
        for probe in [
            ("371082006", "东山街道观海路石岛大街路口北侧路灯不亮"),
            ("371082004", "港湾街道观海路石岛大街路口北侧路灯还是不亮"),
            ("371082", "港湾社区8号楼门口的路灯一直不亮"),
        ] {
            let r = report(probe.0, "urban-management", 180, probe.1, &w);
            assert_eq!(restored.decide(&r), live.decide(&r), "{probe:?}");
        }
    }

    /// Generated reports over a few towns, villages, buildings, crossings and businesses,
    /// in time order: every decision of the index equals the linear scan's.
    #[test]
    fn the_index_decides_like_the_linear_scan() {
        let towns = [
            ("371082004", "港湾街道"),
            ("371082006", "东山街道"),
            ("371082", ""),
        ];
        let villages = ["海湾村", "东山社区", "南港头村", "曙光社区"];
        let roads = ["观海路", "石岛大街", "青山路", "成山大道"];
        let firms = ["金达食品厂", "顺风超市", "老王烧烤"];
        let problems = [
            ("urban-management", "路灯不亮", "路灯"),
            ("urban-management", "有小摊贩占道", "摊贩"),
            ("water", "停水两天了", "停水"),
            ("environment", "油烟直排呛人", "油烟"),
            ("triage", "的问题没人管", ""),
        ];
        let mut seed: u64 = 7;
        let mut next = |n: usize| {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            ((seed >> 33) as usize) % n
        };
        let mut d = Deduper::default();
        let mut merges = 0;
        for i in 0..1500 {
            let (region, town) = towns[next(towns.len())];
            let (department, problem, word) = problems[next(problems.len())];
            let place = match next(6) {
                0 => format!("{}{}号楼", villages[next(villages.len())], 1 + next(6)),
                // Units with and without a building and a community, as citizens write.
                1 => format!("{}{}单元", villages[next(villages.len())], 1 + next(3)),
                2 => format!("{}号楼{}单元", 1 + next(6), 1 + next(3)),
                3 => format!(
                    "{}与{}交叉口{}侧",
                    roads[next(2)],
                    roads[2 + next(2)],
                    ["东", "南"][next(2)]
                ),
                4 => format!(
                    "{}附近{}",
                    villages[next(villages.len())],
                    firms[next(firms.len())]
                ),
                _ => villages[next(villages.len())].to_string(),
            };
            let text = format!(
                "{town}{place}{problem}，{}",
                ["请尽快处理", "大家很着急", ""][next(3)]
            );
            let w = if word.is_empty() {
                vec![]
            } else {
                words(&[word])
            };
            let at = i64::from(i) * 600;
            let r = report(region, department, at, &text, &w);
            let indexed = d.decide(&r);
            assert_eq!(indexed, d.decide_linear(&r), "report {i}: {text}");
            merges += usize::from(indexed.is_some());
            d.decide_and_apply(&format!("c{i}"), &r);
        }
        // The generated set exercises both outcomes.
        assert!(merges > 100 && merges < 1400, "{merges}");
        // Cases left the index 72 h window + 72 h lateness after they opened: of 1500
        // reports 10 min apart, at most the last 864 opened the cases still held.
        let opened = 1500 - merges;
        assert!(
            d.len() <= 864 && d.len() < opened,
            "{} of {opened}",
            d.len()
        );
    }

    #[test]
    fn an_open_case_stays_well_under_a_kibibyte() {
        let mut d = Deduper::default();
        let text = "荣成市港湾街道海湾村二十三号楼2单元突然停水一个多月了，也没有提前通知，\
                    我们生活受影响，做饭洗漱都成问题，希望有关部门尽快处理。";
        let w = words(&["停水"]);
        d.decide_and_apply(
            "3b48c5c6-919c-5af3-85c3-1afd0e5aa9a6",
            &report("371082004", "water", 0, text, &w),
        );
        let case = d.slots.iter().flatten().next().expect("one case");
        let inline = std::mem::size_of::<Option<OpenCase>>();
        // Index: one u32 per place detail in a posting list (say twice that for the
        // lists' spare capacity and map entries), the id map entry (key + slot + hash
        // map overhead), the expiry heap entry.
        let index = 2 * 4 * case.keys().len()
            + (std::mem::size_of::<Box<str>>() + case.case_id.len() + 4) * 2
            + 16;
        let total = inline + case.heap_bytes() + index;
        println!(
            "open case: {total} bytes ({inline} inline, {} heap, {index} index)",
            case.heap_bytes()
        );
        assert!(
            total < 1024,
            "{total} bytes: {inline} inline, {} heap, {index} index",
            case.heap_bytes()
        );
    }

    #[test]
    fn a_place_named_in_full_needs_little_common_wording() {
        let mut d = Deduper::default();
        d.decide_and_apply(
            "c1",
            &report(
                "371082014",
                "heating",
                0,
                "港西镇港西村6号楼暖气一直不热，家里老人孩子冻得受不了",
                &[],
            ),
        );
        // Other words for the same problem at the same community's building.
        let m = d.decide(&report(
            "371082014",
            "heating",
            3600,
            "港西村六号楼这周供暖温度只有十四度，晚上睡觉都得穿着棉袄盖两床被子",
            &[],
        ));
        assert_eq!(m.as_ref().map(|m| m.case_id.as_str()), Some("c1"), "{m:?}");
        assert!(m.is_some_and(|m| m.score < 0.12));
        // Without the community the building alone is not named in full.
        assert_eq!(
            d.decide(&report(
                "371082014",
                "heating",
                3600,
                "六号楼这周供暖温度只有十四度，晚上睡觉都得穿着棉袄盖两床被子",
                &[]
            )),
            None
        );
    }

    #[test]
    fn the_address_places_a_report_its_text_leaves_vague() {
        let mut d = Deduper::default();
        let w = words(&["油烟"]);
        let text = "顺风烧烤店油烟直排，窗户都不敢开";
        let mut first = report("371082013", "environment", 0, text, &w);
        first.address = Some("埠柳镇不夜村顺风烧烤店");
        d.decide_and_apply("c1", &first);
        // Same words, but the address names another village: another shop of the chain.
        let mut other = report("371082013", "environment", 3600, text, &w);
        other.address = Some("埠柳镇曲家村顺风烧烤店");
        assert_eq!(d.decide(&other), None);
        let mut same = report("371082013", "environment", 3600, text, &w);
        same.address = Some("不夜村顺风烧烤店门口");
        assert!(d.decide(&same).is_some());
    }

    /// Applies a report that reached the gateway at `received` (processing time), as the
    /// dispatcher does: the clock moves, then the report opens or joins a case.
    fn arrive(d: &mut Deduper, id: &str, r: &Report<'_>, received: i64) -> Option<String> {
        d.observe(received);
        let decision = d.decide(r);
        match &decision {
            Some(m) => d.merged(&m.case_id, r),
            None => d.open(&CaseSeed {
                case_id: id.into(),
                region: r.region.into(),
                department: r.department.into(),
                opened_at: r.at_unix,
                text: r.text.into(),
                address: None,
                problem: r.problem.to_vec(),
                received_unix: Some(received),
                opened_at_unknown: !r.at_known,
            }),
        }
        decision.map(|m| m.case_id)
    }

    const HEAT: &str = "宁津街道东墩村4号楼暖气不热，一个星期一直这样";
    const HEAT_AGAIN: &str = "东墩村四号楼暖气不热，家里很冷";
    /// Another incident in the same street, reported in between by other channels.
    const OTHER: &str = "宁津街道东墩村9号楼门口路灯不亮";

    #[test]
    fn a_late_report_joins_its_case_after_newer_dated_ones_arrived() {
        let (heat, light) = (words(&["暖气"]), words(&["路灯"]));
        let mut d = Deduper::default();
        arrive(
            &mut d,
            "c1",
            &report("371082003", "heating", 0, HEAT, &heat),
            0,
        );
        // Four days of other reports: a newest-reported-time clock would drop c1 here.
        arrive(
            &mut d,
            "c2",
            &report("371082003", "urban-management", 4 * DAY, OTHER, &light),
            4 * DAY,
        );
        // Reported on day 1, delivered after day 4 (a portal polled after an outage):
        // the window is judged on the reported times, 1 day apart.
        let late = report("371082003", "heating", DAY, HEAT_AGAIN, &heat);
        assert_eq!(
            arrive(&mut d, "r3", &late, 4 * DAY + 60).as_deref(),
            Some("c1")
        );
    }

    #[test]
    fn a_report_dated_before_the_case_joins_it_and_the_window_spans_both() {
        let heat = words(&["暖气"]);
        let mut d = Deduper::default();
        arrive(
            &mut d,
            "c1",
            &report("371082003", "heating", 3 * DAY, HEAT, &heat),
            3 * DAY,
        );
        // Dated two days before the case's first report, delivered after it.
        let early = report("371082003", "heating", DAY, HEAT_AGAIN, &heat);
        assert_eq!(
            arrive(&mut d, "r2", &early, 3 * DAY + 60).as_deref(),
            Some("c1")
        );
        // The case's reports now span day 1 to day 3: one dated day 4.5 would make that
        // 3.5 days, past the 72 h window, and is another case; one of day 3.5 joins.
        let after = report("371082003", "heating", 4 * DAY + DAY / 2, HEAT_AGAIN, &heat);
        assert_eq!(d.decide(&after), None);
        let within = report("371082003", "heating", 3 * DAY + DAY / 2, HEAT_AGAIN, &heat);
        assert_eq!(d.decide(&within).map(|m| m.case_id).as_deref(), Some("c1"));
    }

    #[test]
    fn a_report_past_the_allowed_lateness_opens_a_case_of_its_own() {
        let (heat, light) = (words(&["暖气"]), words(&["路灯"]));
        let settings = DedupeSettings::default();
        let keep = settings.window_secs + settings.allowed_lateness_secs;
        for (delivered, joins) in [(keep, true), (keep + 60, false)] {
            let mut d = Deduper::new(settings);
            arrive(
                &mut d,
                "c1",
                &report("371082003", "heating", 0, HEAT, &heat),
                0,
            );
            // Any case opening later moves the index's clock (processing time) on.
            let other = report("371082003", "urban-management", DAY, OTHER, &light);
            arrive(&mut d, "c2", &other, delivered);
            let late = report("371082003", "heating", DAY, HEAT_AGAIN, &heat);
            let joined = arrive(&mut d, "r3", &late, delivered);
            assert_eq!(joined.is_some(), joins, "delivered after {delivered} s");
        }
    }

    #[test]
    fn the_same_reports_make_the_same_cases_in_any_arrival_order() {
        let (heat, light) = (words(&["暖气"]), words(&["路灯"]));
        let reports = [
            ("a", report("371082003", "heating", 0, HEAT, &heat)),
            (
                "b",
                report("371082003", "urban-management", DAY, OTHER, &light),
            ),
            ("c", report("371082003", "heating", DAY, HEAT_AGAIN, &heat)),
            (
                "d",
                report(
                    "371082003",
                    "urban-management",
                    2 * DAY,
                    "东墩村9号楼门口的路灯坏了",
                    &light,
                ),
            ),
            (
                "e",
                report("371082003", "heating", 5 * DAY, HEAT_AGAIN, &heat),
            ),
        ];
        // Which reports share a case, as sets of report ids.
        let cases = |order: &[usize]| {
            let mut d = Deduper::default();
            let mut case_of: HashMap<&str, String> = HashMap::default();
            for (delivered, &i) in order.iter().enumerate() {
                let (id, r) = &reports[i];
                let case = arrive(&mut d, id, r, 6 * DAY + delivered as i64 * 60)
                    .unwrap_or_else(|| id.to_string());
                case_of.insert(id, case);
            }
            let mut groups: Vec<Vec<&str>> = Vec::new();
            let mut by_case: std::collections::BTreeMap<String, Vec<&str>> = Default::default();
            for (id, case) in case_of {
                by_case.entry(case).or_default().push(id);
            }
            for (_, mut ids) in by_case {
                ids.sort_unstable();
                groups.push(ids);
            }
            groups.sort();
            groups
        };
        let reported = cases(&[0, 1, 2, 3, 4]);
        assert_eq!(reported, vec![vec!["a", "c"], vec!["b", "d"], vec!["e"]]);
        for order in [[4, 3, 2, 1, 0], [2, 4, 0, 3, 1], [3, 0, 4, 1, 2]] {
            assert_eq!(cases(&order), reported, "arrival order {order:?}");
        }
    }

    #[test]
    fn a_report_that_does_not_say_when_is_judged_by_its_arrival() {
        let heat = words(&["暖气"]);
        let mut d = Deduper::default();
        // Reported on day 1; a backlog of undated reports (Open311) arrives on day 20.
        arrive(
            &mut d,
            "c1",
            &report("371082003", "heating", DAY, HEAT, &heat),
            20 * DAY,
        );
        let mut undated = report("371082003", "heating", 20 * DAY, HEAT_AGAIN, &heat);
        undated.at_known = false;
        assert_eq!(
            arrive(&mut d, "r2", &undated, 20 * DAY + 60).as_deref(),
            Some("c1")
        );
        // It does not stretch the case's reported span: a report of day 3 still fits.
        let dated = report("371082003", "heating", 3 * DAY, HEAT_AGAIN, &heat);
        assert!(d.decide(&dated).is_some());
        // Arriving past the window after the case's first report, it is another case.
        d.observe(23 * DAY + 60);
        assert_eq!(d.decide(&undated), None);

        // A case an undated report opened takes a dated report that arrives in time.
        let mut d = Deduper::default();
        arrive(&mut d, "c1", &undated, 20 * DAY);
        let dated = report("371082003", "heating", 2 * DAY, HEAT_AGAIN, &heat);
        assert_eq!(
            arrive(&mut d, "r2", &dated, 20 * DAY + 60).as_deref(),
            Some("c1")
        );
    }

    #[test]
    fn a_crossing_is_one_place_whichever_community_is_named_beside_it() {
        let w = words(&["路灯"]);
        let mut d = Deduper::default();
        let first = "反映马家寨村附近观海路海湾路路口东侧路灯不亮，已经三天";
        d.decide_and_apply("c1", &report("371082012", "urban-management", 0, first, &w));
        let near_another = "成山头社区附近观海路与海湾路交叉口东侧的路灯坏了，晚上一片漆黑";
        let m = d.decide(&report(
            "371082012",
            "urban-management",
            DAY,
            near_another,
            &w,
        ));
        assert_eq!(m.map(|m| m.case_id).as_deref(), Some("c1"));
        // Another crossing beside that community is another place.
        let other_crossing = "成山头社区附近观海路与青山路交叉口东侧的路灯坏了，晚上一片漆黑";
        let r = report("371082012", "urban-management", DAY, other_crossing, &w);
        assert_eq!(d.decide(&r), None);
        // A building is placed by its community: 7号楼 of two villages are two places.
        let w = words(&["停水"]);
        d.decide_and_apply(
            "c2",
            &report("371082012", "water", 0, "马家寨村7号楼停水两天了", &w),
        );
        let r = report("371082012", "water", DAY, "成山头社区7号楼停水两天了", &w);
        assert_eq!(d.decide(&r), None);
    }

    #[test]
    fn a_company_is_one_place_in_its_street_whichever_village_a_report_names() {
        let w = words(&["工资"]);
        let mut d = Deduper::default();
        let first = "我在夏庄镇宏远机械厂干活，老板拖欠工资三天了";
        let address = Some("夏庄镇后龙河村宏远机械厂");
        d.decide_and_apply(
            "c1",
            &Report {
                address,
                ..report("371082015", "hrss", 0, first, &w)
            },
        );
        let again = "夏庄宏远机械厂拖欠员工工资一个多月，多次讨要无果";
        let other_village = Report {
            address: Some("夏庄镇夏庄村宏远机械厂"),
            ..report("371082015", "hrss", DAY, again, &w)
        };
        let m = d.decide(&other_village);
        assert_eq!(m.map(|m| m.case_id).as_deref(), Some("c1"));
        // A shop's name is not registered once: 小杨早餐店 of two communities are two shops.
        let w = words(&["卫生"]);
        let shop = "黄山社区门口小杨早餐店后厨卫生条件极差，吃完拉肚子";
        d.decide_and_apply("c2", &report("371082006", "market", 0, shop, &w));
        let other_shop = "东山社区小杨早餐店后厨卫生条件极差，吃完拉肚子";
        let r = report("371082006", "market", DAY, other_shop, &w);
        assert_eq!(d.decide(&r), None);
        // Nor does a bare industry name one company: 物业公司 of two villages.
        assert!(!features::is_company("物业公司"));
        assert!(features::is_company("海达水产公司"));
    }

    #[test]
    fn a_report_as_close_to_any_report_of_the_case_joins_it() {
        let w = words(&["工资"]);
        let mut d = Deduper::default();
        let first = "虎山镇宏远机械厂拖欠员工工资两天，多次讨要无果";
        d.decide_and_apply("c1", &report("371082020", "hrss", 0, first, &w));
        let second = "我在虎山镇宏远机械厂干活，老板拖欠工资好几天了，十几个人都没拿到钱";
        assert!(d
            .decide_and_apply("r2", &report("371082020", "hrss", 3600, second, &w))
            .is_some());
        // Worded like the second report, not the first: it joins all the same.
        let third = "我在宏远机械厂干活，老板一个多月没发钱了，十几个人都没拿到钱";
        let r = report("371082020", "hrss", 7200, third, &w);
        let bigrams = |t: &str| features::features(t).bigrams;
        let settings = DedupeSettings::default();
        assert!(similarity(&bigrams(third), &bigrams(first)) < settings.min_similarity_with_place);
        assert!(
            similarity(&bigrams(third), &bigrams(second)) >= settings.min_similarity_with_place
        );
        assert_eq!(d.decide(&r).map(|m| m.case_id).as_deref(), Some("c1"));
    }

    #[test]
    fn another_problem_than_any_report_of_the_case_is_another_incident() {
        let mut d = Deduper::default();
        // The first report names no problem word the department knows.
        let first = "邱家村好又多超市用的秤有问题，买的东西少了好几两";
        d.decide_and_apply("c1", &report("371082008", "market", 0, first, &[]));
        let second = "王连邱家村好又多超市缺斤少两，大家多次被坑";
        assert!(d
            .decide_and_apply(
                "r2",
                &report("371082008", "market", 3600, second, &words(&["缺斤少两"]))
            )
            .is_some());
        // Expired food at that supermarket is another problem than the second report's,
        // whichever report opened the case.
        let third = "邱家村好又多超市在卖过期的牛奶和面包，店家不认账";
        let expired = words(&["过期"]);
        let r = report("371082008", "market", 7200, third, &expired);
        // Worded close enough to the first, were the problem the same.
        let bigrams = |t: &str| features::features(t).bigrams;
        assert!(
            similarity(&bigrams(third), &bigrams(first))
                >= DedupeSettings::default().min_similarity_with_place
        );
        assert_eq!(d.decide(&r), None);
    }

    #[test]
    fn an_undated_report_was_reported_at_most_the_allowed_lateness_before_its_receipt() {
        let (heat, light) = (words(&["暖气"]), words(&["路灯"]));
        let settings = DedupeSettings::default();
        let (window, lateness) = (settings.window_secs, settings.allowed_lateness_secs);
        for (received, joins) in [(window + lateness, true), (window + lateness + 60, false)] {
            let mut d = Deduper::new(settings);
            // Reported at 0, delivered two days late: in the index until day 8.
            arrive(
                &mut d,
                "c1",
                &report("371082003", "heating", 0, HEAT, &heat),
                2 * DAY,
            );
            let other = report("371082003", "urban-management", received, OTHER, &light);
            arrive(&mut d, "c2", &other, received);
            // Received past the window after the case arrived, so arrival does not
            // decide: reported no earlier than `received - lateness`, it fits the case's
            // day-0 report only up to the window after it.
            let mut undated = report("371082003", "heating", received, HEAT_AGAIN, &heat);
            undated.at_known = false;
            let joined = arrive(&mut d, "r3", &undated, received);
            assert_eq!(joined.is_some(), joins, "received after {received} s");
        }
        // A case an undated report opened was reported up to the lateness before it
        // arrived (day 10): a dated report of day 5, arriving on day 14, fits; of day 3,
        // not.
        for (reported, joins) in [(5 * DAY, true), (3 * DAY, false)] {
            let mut d = Deduper::new(settings);
            let mut undated = report("371082003", "heating", 10 * DAY, HEAT, &heat);
            undated.at_known = false;
            arrive(&mut d, "c1", &undated, 10 * DAY);
            let dated = report("371082003", "heating", reported, HEAT_AGAIN, &heat);
            let joined = arrive(&mut d, "r2", &dated, 14 * DAY);
            assert_eq!(joined.is_some(), joins, "reported at {reported} s");
        }
    }
}
