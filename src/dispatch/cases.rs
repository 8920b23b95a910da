//! Case state of one inbound partition: which petitions were seen (the idempotent
//! receiver), which cases are open for near-duplicate merging, which are escalated.
//!
//! The same code decides for the live dispatcher and for `replay`: [`CaseState::decide`]
//! looks, [`CaseState::apply`] changes. Everything `apply` needs is in the
//! [`CaseLogEntry`] records the dispatcher writes to the compacted `petitions.cases`
//! topic in the same transaction as its outputs, so replaying those records through
//! `apply` after a restart rebuilds exactly the state the crashed instance had.

use super::dedupe::{CaseSeed, DedupeSettings, Deduper, MergeDecision, Report};
use super::router::{Router, RoutingDecision};
use crate::lifecycle::Lifecycle;
use crate::petition::Petition;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};

/// A case: one incident, however many reports joined it. Written when it opens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaseEntry {
    pub case_id: String,
    /// The inbound offset of the report that opened it: restore opens cases in this order.
    pub seq: i64,
    pub region: String,
    pub department: String,
    pub routing: RoutingDecision,
    pub escalated: bool,
    /// The version of the responsibility list that decided.
    pub list_version: String,
    /// The dispatcher instance that decided.
    pub dispatcher: String,
    pub dispatched_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sla_hours: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deadline: Option<String>,
    /// What the near-duplicate stage needs to recognise later reports of this incident.
    pub seed: CaseSeed,
}

/// One report (petition) and the case it belongs to. Written once per petition id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportEntry {
    pub petition_id: String,
    pub case_id: String,
    pub seq: i64,
    pub region: String,
    pub channel: String,
    pub source_id: String,
    pub reported_at: String,
    pub received_at: String,
    /// Set when the report joined an existing case: which, with what score and evidence.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub merge: Option<MergeDecision>,
    /// Where routing alone would have sent this report.
    pub department: String,
    /// This report escalated the case (which was not escalated before).
    pub escalated: bool,
    /// The report as the near-duplicate stage saw it, replayed into the case on restore.
    pub at_unix: i64,
    pub text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    pub problem: Vec<String>,
}

/// A record of the `petitions.cases` topic. Keys: `case/<id>`, `report/<id>` and
/// `lifecycle/<id>` (a case's id is its first report's id, so the prefixes keep
/// compaction apart). Case and report records are written once; a case's lifecycle is
/// written whole after every change, so compaction keeps the latest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum CaseLogEntry {
    Case(CaseEntry),
    Report(ReportEntry),
    Lifecycle(Lifecycle),
}

/// Key prefix of the case's first petition as published, on the same topic and
/// partition: read by the ledger (and the status router, to send a case to another
/// department), never by a restore, which skips these records by key without decoding.
pub const PETITION_KEY_PREFIX: &str = "petition/";

impl CaseLogEntry {
    pub fn key(&self) -> String {
        match self {
            CaseLogEntry::Case(c) => format!("case/{}", c.case_id),
            CaseLogEntry::Report(r) => format!("report/{}", r.petition_id),
            CaseLogEntry::Lifecycle(l) => format!("lifecycle/{}", l.case_id),
        }
    }

    fn seq(&self) -> (i64, u8) {
        // A case opens before its first report is linked to it.
        match self {
            CaseLogEntry::Case(c) => (c.seq, 0),
            CaseLogEntry::Report(r) => (r.seq, 1),
            // After everything else, in topic order (the sort is stable): the last wins.
            CaseLogEntry::Lifecycle(_) => (i64::MAX, 2),
        }
    }
}

/// What to do with one petition.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The petition id was seen before (a channel's resend): nothing new.
    Resent { case_id: String },
    /// A new case: its department (or triage) gets it, escalations too when it escalates.
    Opened {
        case: Box<CaseEntry>,
        report: Box<ReportEntry>,
    },
    /// The report joined an open case; `escalates` when it newly escalates that case.
    Merged {
        report: Box<ReportEntry>,
        routing: Box<RoutingDecision>,
        escalates: bool,
    },
}

impl Outcome {
    pub fn case_id(&self) -> &str {
        match self {
            Outcome::Resent { case_id } => case_id,
            Outcome::Opened { case, .. } => &case.case_id,
            Outcome::Merged { report, .. } => &report.case_id,
        }
    }

    /// The records that make this outcome durable on `petitions.cases`.
    pub fn log_entries(&self) -> Vec<CaseLogEntry> {
        match self {
            Outcome::Resent { .. } => Vec::new(),
            Outcome::Opened { case, report } => vec![
                CaseLogEntry::Case((**case).clone()),
                CaseLogEntry::Report((**report).clone()),
            ],
            Outcome::Merged { report, .. } => vec![CaseLogEntry::Report((**report).clone())],
        }
    }
}

/// Petition and case ids are UUIDs: kept as 16 bytes, not 36-character strings.
fn id_key(id: &str) -> u128 {
    uuid::Uuid::parse_str(id).map_or_else(|_| hash_id(id), |u| u.as_u128())
}

fn hash_id(id: &str) -> u128 {
    uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, id.as_bytes()).as_u128()
}

/// Everything the dispatcher knows about one inbound partition.
pub struct CaseState {
    /// Petition id → case id: the idempotent receiver.
    seen: HashMap<u128, u128>,
    escalated: HashSet<u128>,
    deduper: Deduper,
    /// Cases not yet closed or rejected: where they are, their deadline, their sources.
    lifecycles: HashMap<u128, Lifecycle>,
}

/// When and by which list a decision was made; not part of what is decided.
pub struct DecisionContext<'a> {
    pub seq: i64,
    pub list_version: &'a str,
    pub instance: &'a str,
    pub now: chrono::DateTime<chrono::Utc>,
}

impl CaseState {
    pub fn new(settings: DedupeSettings) -> Self {
        Self {
            seen: HashMap::new(),
            escalated: HashSet::new(),
            deduper: Deduper::new(settings),
            lifecycles: HashMap::new(),
        }
    }

    /// Petitions seen.
    pub fn petitions(&self) -> usize {
        self.seen.len()
    }

    /// Cases open for merging.
    pub fn open_cases(&self) -> usize {
        self.deduper.len()
    }

    /// A case's lifecycle, while it is neither closed nor rejected.
    pub fn lifecycle(&self, case_id: &str) -> Option<&Lifecycle> {
        self.lifecycles.get(&id_key(case_id))
    }

    /// The cases whose timers are due at `now` (SLA alerts, satisfaction timeouts).
    pub fn due(&self, now: i64, timing: crate::lifecycle::Timing) -> Vec<String> {
        let mut due: Vec<String> = self
            .lifecycles
            .values()
            .filter(|l| l.next_due(timing).is_some_and(|t| t <= now))
            .map(|l| l.case_id.clone())
            .collect();
        due.sort_unstable();
        due
    }

    /// Cases neither closed nor rejected.
    pub fn lifecycles(&self) -> impl Iterator<Item = &Lifecycle> {
        self.lifecycles.values()
    }

    /// The near-duplicate stage's view (benchmarks measure its lookups alone).
    pub fn deduper(&self) -> &Deduper {
        &self.deduper
    }

    /// Decides what `petition` is; changes nothing.
    pub fn decide(&self, petition: &Petition, router: &Router, ctx: &DecisionContext) -> Outcome {
        if let Some(case) = self.seen.get(&id_key(&petition.id)) {
            return Outcome::Resent {
                case_id: uuid::Uuid::from_u128(*case).to_string(),
            };
        }
        let routing = router.route(petition);
        let at_unix = chrono::DateTime::parse_from_rfc3339(&petition.reported_at)
            .map(|t| t.timestamp())
            .unwrap_or_default();
        let problem = router.problem_words(&routing).to_vec();
        let region = petition.location.region.code.as_str();
        let address = petition.location.address.as_deref();
        let merge = self.deduper.decide(&Report {
            region,
            department: &routing.department,
            at_unix,
            text: &petition.text,
            address,
            problem: &problem,
        });
        let mut report = ReportEntry {
            petition_id: petition.id.clone(),
            case_id: petition.id.clone(),
            seq: ctx.seq,
            region: region.to_string(),
            channel: petition.channel.clone(),
            source_id: petition.source_id.clone(),
            reported_at: petition.reported_at.clone(),
            received_at: petition.received_at.clone(),
            merge: None,
            department: routing.department.clone(),
            escalated: false,
            at_unix,
            text: petition.text.clone(),
            address: address.map(str::to_string),
            problem: problem.clone(),
        };
        match merge {
            Some(m) => {
                let escalates = routing.escalate && !self.escalated.contains(&id_key(&m.case_id));
                report.case_id = m.case_id.clone();
                report.escalated = escalates;
                report.merge = Some(m);
                Outcome::Merged {
                    report: Box::new(report),
                    routing: Box::new(routing),
                    escalates,
                }
            }
            None => {
                let sla_hours = router
                    .list()
                    .department(&routing.department)
                    .map(|d| d.sla_hours);
                let stamp = |t: chrono::DateTime<chrono::Utc>| {
                    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
                };
                report.escalated = routing.escalate;
                let case = CaseEntry {
                    case_id: petition.id.clone(),
                    seq: ctx.seq,
                    region: region.to_string(),
                    department: routing.department.clone(),
                    escalated: routing.escalate,
                    list_version: ctx.list_version.to_string(),
                    dispatcher: ctx.instance.to_string(),
                    dispatched_at: stamp(ctx.now),
                    sla_hours,
                    deadline: sla_hours
                        .map(|h| stamp(ctx.now + chrono::Duration::hours(i64::from(h)))),
                    seed: CaseSeed {
                        case_id: petition.id.clone(),
                        region: region.to_string(),
                        department: routing.department.clone(),
                        opened_at: at_unix,
                        text: petition.text.clone(),
                        address: address.map(str::to_string),
                        problem,
                    },
                    routing,
                };
                Outcome::Opened {
                    case: Box::new(case),
                    report: Box::new(report),
                }
            }
        }
    }

    /// Applies a decided outcome (live, once decided; on restore, from the topic).
    pub fn apply(&mut self, outcome: &Outcome) {
        for entry in outcome.log_entries() {
            self.apply_entry(&entry);
        }
    }

    pub fn apply_entry(&mut self, entry: &CaseLogEntry) {
        match entry {
            CaseLogEntry::Case(c) => {
                if c.escalated {
                    self.escalated.insert(id_key(&c.case_id));
                }
                self.deduper.open(&c.seed);
            }
            CaseLogEntry::Report(r) => {
                let case = id_key(&r.case_id);
                self.seen.insert(id_key(&r.petition_id), case);
                if r.escalated {
                    self.escalated.insert(case);
                }
                if r.merge.is_some() {
                    self.deduper.merged(
                        &r.case_id,
                        &Report {
                            region: &r.region,
                            department: &r.department,
                            at_unix: r.at_unix,
                            text: &r.text,
                            address: r.address.as_deref(),
                            problem: &r.problem,
                        },
                    );
                }
            }
            CaseLogEntry::Lifecycle(l) => {
                // Escalated by the center or the clock: a later report does not escalate
                // it again.
                if l.escalated {
                    self.escalated.insert(id_key(&l.case_id));
                }
                // Finished cases leave memory; the ledger keeps their history.
                if l.phase.terminal() {
                    self.lifecycles.remove(&id_key(&l.case_id));
                    self.deduper.close(&l.case_id);
                } else {
                    self.lifecycles.insert(id_key(&l.case_id), l.clone());
                }
            }
        }
    }

    /// Rebuilds state from the records of one `petitions.cases` partition, in any order
    /// compaction left them: cases open in the order they first opened.
    pub fn restore(settings: DedupeSettings, mut entries: Vec<CaseLogEntry>) -> Self {
        entries.sort_by_key(CaseLogEntry::seq);
        let mut state = Self::new(settings);
        for e in &entries {
            state.apply_entry(e);
        }
        state
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dispatch::responsibility::ResponsibilityList;
    use crate::normalize::region::Gazetteer;
    use serde_json::json;

    fn router() -> Router {
        let g: Gazetteer = toml::from_str(
            &std::fs::read_to_string(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/config/gazetteer.toml"
            ))
            .expect("gazetteer"),
        )
        .expect("gazetteer parses");
        let list = ResponsibilityList::load(
            std::path::Path::new(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/config/responsibility.toml"
            )),
            &g,
        )
        .expect("list");
        Router::new(list)
    }

    fn petition(source_id: &str, region: &str, at: &str, text: &str) -> Petition {
        let id = crate::petition::petition_id("hotline", source_id);
        serde_json::from_value(json!({
            "id": id, "channel": "hotline", "source_id": source_id, "kind": "complaint",
            "urgency": "normal", "text": text, "reported_at": at, "received_at": at,
            "trace_id": "0af7651916cd43dd8448eb211c80319c",
            "location": {"region": {"code": region, "level": "street", "resolved_by": "text"}},
            "reporter": {}, "attachments": []
        }))
        .expect("petition")
    }

    fn ctx(seq: i64) -> DecisionContext<'static> {
        DecisionContext {
            seq,
            list_version: "test",
            instance: "test",
            now: chrono::Utc::now(),
        }
    }

    fn reports() -> Vec<Petition> {
        vec![
            petition(
                "A1",
                "371082003",
                "2026-11-01T08:00:00+08:00",
                "宁津街道东墩村4号楼暖气不热，家里只有十二度",
            ),
            petition(
                "A2",
                "371082003",
                "2026-11-01T09:00:00+08:00",
                "东墩村四号楼暖气不热好几天了，老人孩子受不了",
            ),
            petition(
                "A3",
                "371082003",
                "2026-11-01T10:00:00+08:00",
                "东墩村7号楼暖气不热，家里只有十二度",
            ),
            petition(
                "A1",
                "371082003",
                "2026-11-01T08:00:00+08:00",
                "宁津街道东墩村4号楼暖气不热，家里只有十二度",
            ),
            petition(
                "A4",
                "371082003",
                "2026-11-01T11:00:00+08:00",
                "东墩村七号楼暖气一直不热",
            ),
        ]
    }

    #[test]
    fn a_resend_is_recognised_and_a_near_duplicate_joins_its_case() {
        let router = router();
        let mut state = CaseState::new(DedupeSettings::default());
        let mut outcomes = Vec::new();
        for (i, p) in reports().iter().enumerate() {
            let o = state.decide(p, &router, &ctx(i as i64));
            state.apply(&o);
            outcomes.push(o);
        }
        assert!(matches!(outcomes[0], Outcome::Opened { .. }));
        assert!(
            matches!(&outcomes[1], Outcome::Merged { report, .. } if report.case_id == outcomes[0].case_id()),
            "{:?}",
            outcomes[1]
        );
        assert!(
            matches!(outcomes[2], Outcome::Opened { .. }),
            "another building"
        );
        assert_eq!(
            outcomes[3],
            Outcome::Resent {
                case_id: outcomes[0].case_id().to_string()
            }
        );
        assert_eq!(outcomes[4].case_id(), outcomes[2].case_id());
        assert_eq!(state.petitions(), 4);
        assert_eq!(state.open_cases(), 2);
    }

    /// The restart guarantee in pure form: state rebuilt from the log records (in the
    /// shuffled order compaction may leave) decides the rest exactly as uninterrupted
    /// state does.
    #[test]
    fn restored_state_decides_like_uninterrupted_state() {
        let router = router();
        let all = reports();
        for cut in 0..all.len() {
            let mut straight = CaseState::new(DedupeSettings::default());
            let mut log = Vec::new();
            let mut expected = Vec::new();
            for (i, p) in all.iter().enumerate() {
                let o = straight.decide(p, &router, &ctx(i as i64));
                straight.apply(&o);
                if i < cut {
                    log.extend(o.log_entries());
                }
                expected.push(o.case_id().to_string());
            }
            log.reverse();
            let mut restored = CaseState::restore(DedupeSettings::default(), log);
            let mut got: Vec<String> = expected[..cut].to_vec();
            for (i, p) in all.iter().enumerate().skip(cut) {
                let o = restored.decide(p, &router, &ctx(i as i64));
                restored.apply(&o);
                got.push(o.case_id().to_string());
            }
            assert_eq!(got, expected, "restart after {cut} reports");
            assert_eq!(restored.petitions(), straight.petitions());
            assert_eq!(restored.open_cases(), straight.open_cases());
        }
    }

    #[test]
    fn log_entries_survive_their_json_encoding() {
        let router = router();
        let state = CaseState::new(DedupeSettings::default());
        let o = state.decide(&reports()[0], &router, &ctx(7));
        for e in o.log_entries() {
            let text = serde_json::to_string(&e).expect("encodes");
            let back: CaseLogEntry = serde_json::from_str(&text).expect("decodes");
            assert_eq!(back, e);
        }
        assert_eq!(o.log_entries()[0].key(), format!("case/{}", o.case_id()));
        assert_eq!(o.log_entries()[1].key(), format!("report/{}", o.case_id()));
    }
}
