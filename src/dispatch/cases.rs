//! Case state of one inbound partition: which petitions were seen (the idempotent
//! receiver), which cases are open for near-duplicate merging, which are escalated.
//!
//! The same code decides for the live dispatcher and for `replay`: [`CaseState::decide`]
//! looks, [`CaseState::apply`] changes. Everything `apply` needs is in the
//! [`CaseLogEntry`] records the dispatcher writes to the compacted `petitions.cases`
//! topic in the same transaction as its outputs, so replaying those records through
//! `apply` after a restart rebuilds exactly the state the crashed instance had.

use super::dedupe::{CaseSeed, DedupeSettings, Deduper, MergeDecision, Report};
use super::router::{Router, RoutingDecision, Rule};
use crate::lifecycle::Lifecycle;
use crate::petition::Petition;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, VecDeque};
// foldhash instead of SipHash for the state's maps: their keys are ids and hashes, the
// maps hold millions of entries and a restore fills them all (SipHash was 2% of it).
// Seeded per process, so keys chosen from citizens' text cannot be made to collide.
use foldhash::{HashMap, HashSet};

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
    /// The channel did not say when it was reported: `at_unix` is its receipt time.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub at_unknown: bool,
    /// Processing time: unix seconds it reached the gateway (`received_at`), which moves
    /// the near-duplicate stage's clock; records written before it was kept: `at_unix`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub received_unix: Option<i64>,
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

/// Key prefix of a case's lifecycle record (the latest one counts).
pub const LIFECYCLE_KEY_PREFIX: &str = "lifecycle/";

/// How each kind of record begins as serde writes it (the internally tagged `type` first).
const CASE_TAG: &[u8] = br#"{"type":"case","#;
const REPORT_TAG: &[u8] = br#"{"type":"report","#;
const LIFECYCLE_TAG: &[u8] = br#"{"type":"lifecycle","#;

impl CaseLogEntry {
    pub fn key(&self) -> String {
        match self {
            CaseLogEntry::Case(c) => format!("case/{}", c.case_id),
            CaseLogEntry::Report(r) => format!("report/{}", r.petition_id),
            CaseLogEntry::Lifecycle(l) => format!("{LIFECYCLE_KEY_PREFIX}{}", l.case_id),
        }
    }

    /// Decodes a record of `petitions.cases`. Its `type` tag comes first as we write it,
    /// so the variant is read straight from the bytes: serde's internally tagged decoding
    /// would first buffer the whole record to find the tag (half a restore's decoding
    /// time). Records written otherwise take serde's way.
    pub fn decode(payload: &[u8]) -> Result<Self, serde_json::Error> {
        if payload.starts_with(CASE_TAG) {
            serde_json::from_slice(payload).map(CaseLogEntry::Case)
        } else if payload.starts_with(REPORT_TAG) {
            serde_json::from_slice(payload).map(CaseLogEntry::Report)
        } else if payload.starts_with(LIFECYCLE_TAG) {
            serde_json::from_slice(payload).map(CaseLogEntry::Lifecycle)
        } else {
            serde_json::from_slice(payload)
        }
    }

    /// Where the record goes in a restore: cases in the order they opened, each report
    /// after its case, lifecycles last (in topic order, the latest wins).
    pub fn restore_order(&self) -> (i64, u8) {
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
    /// Where the receiver may forget: see [`CaseState::forget_receipts_after`].
    receipts: Option<Receipts>,
    /// Escalated cases, while they may still take reports (pruned as they leave the
    /// near-duplicate index).
    escalated: HashSet<u128>,
    deduper: Deduper,
    /// Cases not yet closed or rejected: where they are, their deadline, their sources.
    /// Boxed: the table keeps up to twice as many slots as cases, and a slot holds a
    /// pointer instead of a whole lifecycle (with `last` boxed too: 1,859 → 1,573 B per
    /// open case, BENCHMARKS.md).
    lifecycles: HashMap<u128, Box<Lifecycle>>,
    timers: TimerIndex,
}

/// The receiver's memory in the order petitions reached the gateway, so that it holds a
/// bounded span of history: a petition leaves it `keep_secs` after its receipt on the
/// partition's processing clock (the near-duplicate window and allowed lateness, when its
/// case stops taking reports), once the ledger has read its report. A resend after that is
/// recognised through the ledger.
struct Receipts {
    keep_secs: i64,
    /// (received, petition, bound): the petition's report is in `petitions.cases` below
    /// offset `bound` (`UNWRITTEN` until the dispatcher learns one).
    by_receipt: VecDeque<(i64, u128, i64)>,
    /// The ledger has read this partition of `petitions.cases` below this offset.
    ledger_read_to: i64,
    /// Where reports applied now are in `petitions.cases`: below this offset while a
    /// restore reads them back, `UNWRITTEN` live (not known until their transaction).
    applying_below: i64,
    /// Something was forgotten: a petition not in memory may be in the ledger.
    forgot: bool,
}

const UNWRITTEN: i64 = i64::MAX;

/// The open cases' next timer (due-soon, overdue, satisfaction timeout) by due time, so a
/// tick looks only at what is due: a scan of every lifecycle took 32 ms a tick at a
/// million open cases, on the dispatcher's loop. Built for the timing rules of the first
/// `due` call (rebuilt should they change), then kept as lifecycles change.
#[derive(Default)]
struct TimerIndex {
    timing: Option<crate::lifecycle::Timing>,
    by_due: BTreeSet<(i64, u128)>,
    due_of: HashMap<u128, i64>,
}

impl TimerIndex {
    fn set(&mut self, case: u128, lifecycle: Option<&Lifecycle>) {
        let Some(timing) = self.timing else {
            return;
        };
        if let Some(old) = self.due_of.remove(&case) {
            self.by_due.remove(&(old, case));
        }
        if let Some(due) = lifecycle.and_then(|l| l.next_due(timing)) {
            self.due_of.insert(case, due);
            self.by_due.insert((due, case));
        }
    }

    fn rebuild(
        &mut self,
        timing: crate::lifecycle::Timing,
        lifecycles: &HashMap<u128, Box<Lifecycle>>,
    ) {
        *self = TimerIndex {
            timing: Some(timing),
            ..TimerIndex::default()
        };
        for (case, l) in lifecycles {
            self.set(*case, Some(l));
        }
    }
}

/// When and by which list a decision was made; not part of what is decided. The learned
/// model, if any, decides what the list leaves to triage.
pub struct DecisionContext<'a> {
    pub seq: i64,
    pub list_version: &'a str,
    pub instance: &'a str,
    pub now: chrono::DateTime<chrono::Utc>,
    pub learned: Option<&'a crate::dispatch::learning::Learner>,
}

impl CaseState {
    pub fn new(settings: DedupeSettings) -> Self {
        Self {
            seen: HashMap::default(),
            receipts: None,
            escalated: HashSet::default(),
            deduper: Deduper::new(settings),
            lifecycles: HashMap::default(),
            timers: TimerIndex::default(),
        }
    }

    /// Petitions held by the receiver.
    pub fn petitions(&self) -> usize {
        self.seen.len()
    }

    /// Lets the receiver forget a petition `keep_secs` after it reached the gateway (on
    /// the processing clock) and the ledger read its report, so that memory holds a span
    /// of history, not all of it. Only for a dispatcher that can ask the ledger about
    /// older petitions ([`CaseState::may_know_elsewhere`], [`CaseState::remember`]) and
    /// tells it where the case log and the ledger are ([`CaseState::case_log_written_below`],
    /// [`CaseState::ledger_has_read_to`]): without one, the receiver keeps every petition.
    pub fn forget_receipts_after(&mut self, keep_secs: i64) {
        self.receipts = Some(Receipts {
            keep_secs,
            by_receipt: self
                .receipts
                .take()
                .map(|r| r.by_receipt)
                .unwrap_or_default(),
            ledger_read_to: 0,
            applying_below: UNWRITTEN,
            forgot: false,
        });
    }

    /// Every report applied so far is in this partition of `petitions.cases` below `end`
    /// (its high watermark, read after their transactions committed).
    pub fn case_log_written_below(&mut self, end: i64) {
        if let Some(r) = self.receipts.as_mut() {
            for entry in r.by_receipt.iter_mut().rev() {
                if entry.2 != UNWRITTEN {
                    break;
                }
                entry.2 = end;
            }
        }
    }

    /// The ledger has read this partition of `petitions.cases` below `next`: what it read
    /// may leave memory once old enough.
    pub fn ledger_has_read_to(&mut self, next: i64) {
        if let Some(r) = self.receipts.as_mut() {
            r.ledger_read_to = r.ledger_read_to.max(next);
        }
        self.forget();
    }

    /// The receiver forgot petitions: one it does not hold may have been seen.
    pub fn has_forgotten(&self) -> bool {
        self.receipts.as_ref().is_some_and(|r| r.forgot)
    }

    /// The receiver does not hold `petition_id`, but forgot petitions before: it may have
    /// been seen, and the ledger knows.
    pub fn may_know_elsewhere(&self, petition_id: &str) -> bool {
        self.has_forgotten() && !self.seen.contains_key(&id_key(petition_id))
    }

    /// The ledger says `petition_id` is in `case_id`: a resend of it is recognised again
    /// (until it is forgotten again, on the same clock).
    pub fn remember(&mut self, petition_id: &str, case_id: &str) {
        let petition = id_key(petition_id);
        self.seen.insert(petition, id_key(case_id));
        if let (Some(r), Some(now)) = (self.receipts.as_mut(), self.deduper.clock()) {
            // Tagged with the others at the next tick, so that the untagged stay together
            // at the back (it is in the ledger already).
            r.by_receipt.push_back((now, petition, UNWRITTEN));
        }
    }

    /// Drops what the receiver may forget by now. Live, only between batches (from
    /// [`CaseState::ledger_has_read_to`]): the dispatcher asks the ledger about a batch's
    /// petitions before deciding it, so nothing may leave memory halfway through.
    fn forget(&mut self) {
        if let (Some(r), Some(now)) = (self.receipts.as_mut(), self.deduper.clock()) {
            // Receipts are in arrival order, near enough: one received a little out of
            // order is forgotten a little late, never early.
            while let Some(&(received, petition, bound)) = r.by_receipt.front() {
                if now - received <= r.keep_secs || bound > r.ledger_read_to {
                    break;
                }
                r.by_receipt.pop_front();
                self.seen.remove(&petition);
                r.forgot = true;
            }
            // A restore may have held far more than the span: give the memory back.
            if r.by_receipt.capacity() > 4096 && r.by_receipt.capacity() > 4 * r.by_receipt.len() {
                r.by_receipt.shrink_to_fit();
            }
            if self.seen.capacity() > 4096 && self.seen.capacity() > 4 * self.seen.len() {
                self.seen.shrink_to_fit();
            }
        }
    }

    /// Drops the escalation marks of cases that left the near-duplicate index (no report
    /// joins them any more). Amortised: a sweep when the marks outnumber the open cases
    /// twice over.
    fn prune_escalated(&mut self) {
        if self.escalated.len() > 1024 && self.escalated.len() > 2 * self.deduper.len() {
            let open: HashSet<u128> = self.deduper.case_ids().map(id_key).collect();
            self.escalated.retain(|case| open.contains(case));
        }
    }

    /// Cases open for merging.
    pub fn open_cases(&self) -> usize {
        self.deduper.len()
    }

    /// A case's lifecycle, while it is neither closed nor rejected.
    pub fn lifecycle(&self, case_id: &str) -> Option<&Lifecycle> {
        self.lifecycles.get(&id_key(case_id)).map(|l| &**l)
    }

    /// The cases whose timers are due at `now` (SLA alerts, satisfaction timeouts), in
    /// case id order.
    pub fn due(&mut self, now: i64, timing: crate::lifecycle::Timing) -> Vec<String> {
        if self.timers.timing != Some(timing) {
            self.timers.rebuild(timing, &self.lifecycles);
        }
        let mut due: Vec<String> = self
            .timers
            .by_due
            .range(..=(now, u128::MAX))
            .filter_map(|(_, case)| self.lifecycles.get(case))
            .map(|l| l.case_id.clone())
            .collect();
        due.sort_unstable();
        due
    }

    /// The same by a scan of every lifecycle: the reference the index must match.
    #[cfg(test)]
    fn due_by_scan(&self, now: i64, timing: crate::lifecycle::Timing) -> Vec<String> {
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
        self.lifecycles.values().map(|l| &**l)
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
        let mut routing = router.route(petition);
        if let Some(learner) = ctx.learned {
            let text = || crate::dispatch::learning::petition_text(petition);
            let (label, region) = (
                petition.category_label.as_deref(),
                petition.location.region.code.as_str(),
            );
            // The model decides what the list leaves to triage, and a decision on the
            // list's keywords alone that the center has corrected for petitions like it.
            let suggestion = match routing.rule {
                Rule::NoMatch | Rule::Tie => learner.suggest(&text(), label, region, router.list()),
                Rule::Keywords if learner.may_correct(&routing.department, router.list()) => {
                    learner.correction(&text(), label, region, router.list(), &routing.department)
                }
                _ => None,
            };
            if let Some(s) = suggestion {
                routing = router.learned(routing, s);
            }
        }
        let parse = |t: &str| chrono::DateTime::parse_from_rfc3339(t).map(|t| t.timestamp());
        // A petition cannot have been reported after it reached us: a channel's clock
        // running ahead must not date it past the reports of its incident.
        let received_unix = parse(&petition.received_at).ok();
        // A channel that does not say when (Open311) leaves the receipt time in
        // `reported_at`: it tells nothing of when the incident was reported.
        let at_known = !petition.reported_at_unknown;
        let at_unix = match (parse(&petition.reported_at).ok(), received_unix) {
            (Some(reported), Some(received)) => reported.min(received),
            (Some(t), None) | (None, Some(t)) => t,
            (None, None) => 0,
        };
        let problem = router.problem_words(&routing);
        let region = petition.location.region.code.as_str();
        let address = petition.location.address.as_deref();
        let merge = self.deduper.decide(&Report {
            region,
            department: &routing.department,
            at_unix,
            at_known,
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
            at_unknown: !at_known,
            received_unix,
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
                        received_unix,
                        opened_at_unknown: !at_known,
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
            CaseLogEntry::Case(c) => self.open_case(&c.case_id, c.escalated, &c.seed),
            CaseLogEntry::Report(r) => self.add_report(
                &r.petition_id,
                &r.case_id,
                r.escalated,
                r.merge.is_some(),
                r.received_unix.unwrap_or(r.at_unix),
                &Report {
                    region: &r.region,
                    department: &r.department,
                    at_unix: r.at_unix,
                    at_known: !r.at_unknown,
                    text: &r.text,
                    address: r.address.as_deref(),
                    problem: &r.problem,
                },
            ),
            CaseLogEntry::Lifecycle(l) => self.apply_lifecycle(l.clone()),
        }
    }

    fn open_case(&mut self, case_id: &str, escalated: bool, seed: &CaseSeed) {
        if escalated {
            self.escalated.insert(id_key(case_id));
        }
        self.deduper.open(seed);
    }

    fn add_report(
        &mut self,
        petition_id: &str,
        case_id: &str,
        escalated: bool,
        merged: bool,
        received_unix: i64,
        report: &Report<'_>,
    ) {
        self.deduper.observe(received_unix);
        let case = id_key(case_id);
        let petition = id_key(petition_id);
        self.seen.insert(petition, case);
        if let Some(r) = self.receipts.as_mut() {
            r.by_receipt
                .push_back((received_unix, petition, r.applying_below));
        }
        if escalated {
            self.escalated.insert(case);
        }
        if merged {
            self.deduper.merged(case_id, report);
        }
        // A restore forgets as it reads (its reports' offsets are known).
        if self
            .receipts
            .as_ref()
            .is_some_and(|r| r.applying_below != UNWRITTEN)
        {
            self.forget();
        }
        self.prune_escalated();
    }

    /// As [`CaseState::apply_entry`], taking the record: a restore moves each lifecycle
    /// into the state instead of copying it.
    pub fn apply_owned(&mut self, entry: CaseLogEntry) {
        match entry {
            CaseLogEntry::Lifecycle(l) => self.apply_lifecycle(l),
            other => self.apply_entry(&other),
        }
    }

    /// A closed or rejected case, restored: as [`CaseState::apply_lifecycle`] with a
    /// finished lifecycle.
    fn finished(&mut self, case_id: &str) {
        let case = id_key(case_id);
        self.lifecycles.remove(&case);
        self.timers.set(case, None);
        self.deduper.close(case_id);
    }

    fn apply_lifecycle(&mut self, mut l: Lifecycle) {
        // The history is the ledger's: entries not yet written are not kept either.
        l.unwritten = Vec::new();
        let case = id_key(&l.case_id);
        // Escalated by the center or the clock: a later report does not escalate it again.
        if l.escalated {
            self.escalated.insert(case);
        }
        // Finished cases leave memory; the ledger keeps their history.
        if l.phase.terminal() {
            self.lifecycles.remove(&case);
            self.timers.set(case, None);
            self.deduper.close(&l.case_id);
        } else {
            self.timers.set(case, Some(&l));
            self.lifecycles.insert(case, Box::new(l));
        }
    }

    /// Rebuilds state from the records of one `petitions.cases` partition, in any order
    /// compaction left them: cases open in the order they first opened.
    pub fn restore(settings: DedupeSettings, entries: Vec<CaseLogEntry>) -> Self {
        let mut state = Self::new(settings);
        state.apply_sorted(entries);
        state
    }

    fn apply_sorted(&mut self, mut entries: Vec<CaseLogEntry>) {
        entries.sort_by_key(CaseLogEntry::restore_order);
        for e in entries {
            self.apply_owned(e);
        }
    }
}

/// What a restore reads of a case record; the rest (routing, list version, deadline) is
/// the ledger's, skipped without being allocated.
#[derive(Deserialize)]
struct RestoredCase {
    case_id: String,
    seq: i64,
    escalated: bool,
    seed: CaseSeed,
}

/// What a restore reads of a report record.
#[derive(Deserialize)]
struct RestoredReport {
    petition_id: String,
    case_id: String,
    seq: i64,
    escalated: bool,
    #[serde(default)]
    merge: Option<serde::de::IgnoredAny>,
    region: String,
    department: String,
    at_unix: i64,
    #[serde(default)]
    at_unknown: bool,
    #[serde(default)]
    received_unix: Option<i64>,
    text: String,
    #[serde(default)]
    address: Option<String>,
    problem: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    #[error("unreadable case record: {0}")]
    Unreadable(#[from] serde_json::Error),
    /// The partition's records are not in the order they were decided in: only a sorted
    /// restore ([`Rebuild::sorted`]) rebuilds such a partition exactly.
    #[error("case record of offset {seq} after one of offset {after}")]
    OutOfOrder { seq: i64, after: i64 },
}

/// A restore that applies a partition's case and report records as they are read, in
/// topic order, which is the order they were decided in: the dispatcher writes them in
/// its transactions, offset after offset. Against collecting every record, sorting and
/// then applying ([`Rebuild::sorted`]) it holds no copy of the partition and allocates
/// nothing for what only the ledger reads: at a million open cases the collected records
/// were gigabytes the kernel had to hand out and zero first. Records out of order are
/// refused (`OutOfOrder`): the caller restores that partition again, sorted.
/// Lifecycles are rewritten on every move: only each case's latest is decoded, at the end.
pub struct Rebuild {
    state: CaseState,
    last: (i64, u8),
    lifecycles: HashMap<Box<[u8]>, Box<[u8]>>,
    /// Sorted restore: the case and report records, applied in order at the end.
    collected: Option<Vec<CaseLogEntry>>,
}

impl Rebuild {
    pub fn new(settings: DedupeSettings) -> Self {
        Self {
            state: CaseState::new(settings),
            last: (i64::MIN, 0),
            lifecycles: HashMap::default(),
            collected: None,
        }
    }

    /// As [`CaseState::forget_receipts_after`], from the first record on, with the
    /// ledger having read the partition below `ledger_read_to`: a restore holds no more
    /// of the receiver than the live dispatcher did. Read records with
    /// [`Rebuild::record_at`] so that each report's offset is known.
    pub fn forgetting_receipts_after(
        mut self,
        keep_secs: Option<i64>,
        ledger_read_to: Option<i64>,
    ) -> Self {
        if let Some(keep) = keep_secs {
            self.state.forget_receipts_after(keep);
            if let Some(read) = ledger_read_to {
                self.state.ledger_has_read_to(read);
            }
        }
        self
    }

    /// [`Rebuild::record`], for the record at `offset` of its partition.
    pub fn record_at(
        &mut self,
        key: &[u8],
        payload: &[u8],
        offset: i64,
    ) -> Result<(), RebuildError> {
        if let Some(r) = self.state.receipts.as_mut() {
            r.applying_below = offset.saturating_add(1);
        }
        self.record(key, payload)
    }

    /// Collects every record (decoded whole), sorts and applies them at the end, as
    /// [`CaseState::restore`] does: for records in any order.
    pub fn sorted(settings: DedupeSettings) -> Self {
        Self {
            collected: Some(Vec::new()),
            ..Self::new(settings)
        }
    }

    fn in_order(&mut self, order: (i64, u8)) -> Result<(), RebuildError> {
        if order < self.last {
            return Err(RebuildError::OutOfOrder {
                seq: order.0,
                after: self.last.0,
            });
        }
        self.last = order;
        Ok(())
    }

    /// One record of `petitions.cases` with its key.
    pub fn record(&mut self, key: &[u8], payload: &[u8]) -> Result<(), RebuildError> {
        if key.starts_with(LIFECYCLE_KEY_PREFIX.as_bytes()) {
            // A finished case needs only its id at the end (it leaves the near-duplicate
            // index): over a year the finished are nearly all, and their records were
            // most of a restore's memory.
            #[derive(Deserialize)]
            struct PhaseOnly {
                phase: crate::lifecycle::Phase,
            }
            let finished =
                serde_json::from_slice::<PhaseOnly>(payload).is_ok_and(|p| p.phase.terminal());
            let kept: Box<[u8]> = if finished {
                Box::default()
            } else {
                payload.into()
            };
            self.lifecycles.insert(key.into(), kept);
            return Ok(());
        }
        // A case's history is the ledger's; deciding needs only the lifecycle's count.
        if key.starts_with(crate::lifecycle::machine::HISTORY_KEY_PREFIX.as_bytes()) {
            return Ok(());
        }
        if self.collected.is_none() && payload.starts_with(CASE_TAG) {
            let c: RestoredCase = serde_json::from_slice(payload)?;
            self.in_order((c.seq, 0))?;
            self.state.open_case(&c.case_id, c.escalated, &c.seed);
        } else if self.collected.is_none() && payload.starts_with(REPORT_TAG) {
            let r: RestoredReport = serde_json::from_slice(payload)?;
            self.in_order((r.seq, 1))?;
            self.state.add_report(
                &r.petition_id,
                &r.case_id,
                r.escalated,
                r.merge.is_some(),
                r.received_unix.unwrap_or(r.at_unix),
                &Report {
                    region: &r.region,
                    department: &r.department,
                    at_unix: r.at_unix,
                    at_known: !r.at_unknown,
                    text: &r.text,
                    address: r.address.as_deref(),
                    problem: &r.problem,
                },
            );
        } else {
            match CaseLogEntry::decode(payload)? {
                // Under its canonical key, so that records without one do not replace
                // each other.
                CaseLogEntry::Lifecycle(l) => {
                    let key = format!("{LIFECYCLE_KEY_PREFIX}{}", l.case_id);
                    self.lifecycles
                        .insert(key.into_bytes().into(), payload.into());
                }
                other => match &mut self.collected {
                    Some(collected) => collected.push(other),
                    None => {
                        self.in_order(other.restore_order())?;
                        self.state.apply_owned(other);
                    }
                },
            }
        }
        Ok(())
    }

    /// The state, after each case's latest lifecycle; and the lifecycle records that
    /// could not be read, by key.
    pub fn finish(mut self) -> (CaseState, Vec<(String, serde_json::Error)>) {
        if let Some(collected) = self.collected.take() {
            self.state.apply_sorted(collected);
        }
        // Live from here: later reports' offsets come with their transactions.
        if let Some(r) = self.state.receipts.as_mut() {
            r.applying_below = UNWRITTEN;
        }
        let mut unreadable = Vec::new();
        for (key, payload) in std::mem::take(&mut self.lifecycles) {
            if payload.is_empty() {
                let case_id = String::from_utf8_lossy(&key[LIFECYCLE_KEY_PREFIX.len()..]);
                self.state.finished(&case_id);
                continue;
            }
            match serde_json::from_slice::<Lifecycle>(&payload) {
                Ok(l) => self.state.apply_lifecycle(l),
                Err(e) => unreadable.push((String::from_utf8_lossy(&key).into_owned(), e)),
            }
        }
        (self.state, unreadable)
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
            learned: None,
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

    fn decide_apply(state: &mut CaseState, router: &Router, p: &Petition, seq: i64) -> Outcome {
        let o = state.decide(p, router, &ctx(seq));
        state.apply(&o);
        o
    }

    /// Another street's report a week later: only the processing clock moves.
    fn a_week_later(source_id: &str) -> Petition {
        petition(
            source_id,
            "371082003",
            "2026-11-08T12:00:00+08:00",
            "长官镇政府门口的路灯不亮",
        )
    }

    #[test]
    fn the_receiver_forgets_after_the_window_and_recognises_what_the_ledger_knows() {
        let router = router();
        let settings = DedupeSettings::default();
        let keep = settings.held_secs();
        let mut state = CaseState::new(settings);
        state.forget_receipts_after(keep);
        let first = reports().remove(0);
        let opened = decide_apply(&mut state, &router, &first, 0);
        state.case_log_written_below(2);
        decide_apply(&mut state, &router, &a_week_later("B1"), 1);
        state.case_log_written_below(4);
        assert_eq!(
            state.petitions(),
            2,
            "the ledger has not read the first yet"
        );
        assert!(
            !state.may_know_elsewhere(&first.id),
            "nothing forgotten yet"
        );
        state.ledger_has_read_to(1);
        assert_eq!(
            state.petitions(),
            2,
            "the ledger has not read all of its records"
        );
        state.ledger_has_read_to(2);
        assert_eq!(state.petitions(), 1, "the first petition left memory");
        assert!(state.may_know_elsewhere(&first.id));
        // Not told what the ledger knows, the resend would open a second case.
        assert!(matches!(
            state.decide(&first, &router, &ctx(2)),
            Outcome::Opened { .. }
        ));
        state.remember(&first.id, opened.case_id());
        assert!(!state.may_know_elsewhere(&first.id));
        assert_eq!(
            state.decide(&first, &router, &ctx(2)),
            Outcome::Resent {
                case_id: opened.case_id().to_string()
            }
        );
    }

    #[test]
    fn nothing_leaves_the_receivers_memory_halfway_through_a_batch() {
        let router = router();
        let settings = DedupeSettings::default();
        let keep = settings.held_secs();
        let mut state = CaseState::new(settings);
        state.forget_receipts_after(keep);
        let first = reports().remove(0);
        let opened = decide_apply(&mut state, &router, &first, 0);
        state.case_log_written_below(2);
        state.ledger_has_read_to(2);
        // One batch: a report a week later moves the clock, then the first is resent.
        // The ledger was asked before the batch, about the batch as it stood then.
        decide_apply(&mut state, &router, &a_week_later("B1"), 1);
        assert_eq!(
            state.decide(&first, &router, &ctx(2)),
            Outcome::Resent {
                case_id: opened.case_id().to_string()
            }
        );
        // Between batches it goes.
        state.case_log_written_below(4);
        state.ledger_has_read_to(4);
        assert_eq!(state.petitions(), 1);
    }

    #[test]
    fn a_finished_case_restored_from_its_phase_alone_leaves_the_index() {
        let router = router();
        let mut live = CaseState::new(DedupeSettings::default());
        let first = reports().remove(0);
        let opened = decide_apply(&mut live, &router, &first, 0);
        let mut log = opened.log_entries();
        let source = crate::lifecycle::Source {
            petition_id: first.id.clone(),
            channel: "hotline".into(),
            source_id: first.source_id.clone(),
            reporter_name: None,
            joined_at: 1,
        };
        let (mut lifecycle, _) =
            crate::lifecycle::Lifecycle::opened(&first.id, "heating", None, false, source, 1);
        lifecycle.take_unwritten();
        log.push(CaseLogEntry::Lifecycle(lifecycle.clone()));
        lifecycle.phase = crate::lifecycle::Phase::Closed;
        log.push(CaseLogEntry::Lifecycle(lifecycle));
        let restore = |log: &[CaseLogEntry]| {
            let mut rebuild = Rebuild::new(DedupeSettings::default());
            for e in log {
                let bytes = serde_json::to_vec(e).expect("encodes");
                rebuild
                    .record(e.key().as_bytes(), &bytes)
                    .expect("in order");
            }
            rebuild.finish().0
        };
        let open = restore(&log[..log.len() - 1]);
        assert_eq!(open.open_cases(), 1);
        assert!(open.lifecycle(&first.id).is_some());
        let closed = restore(&log);
        assert_eq!(
            closed.open_cases(),
            0,
            "a closed case takes no more reports"
        );
        assert!(closed.lifecycle(&first.id).is_none());
        assert_eq!(closed.petitions(), 1, "its petition is still known");
    }

    #[test]
    fn a_restore_forgets_what_the_live_receiver_forgot() {
        let router = router();
        let settings = DedupeSettings::default();
        let keep = settings.held_secs();
        let mut live = CaseState::new(settings);
        live.forget_receipts_after(keep);
        let first = reports().remove(0);
        let mut log = Vec::new();
        for (i, p) in [first.clone(), a_week_later("B1")].iter().enumerate() {
            let o = decide_apply(&mut live, &router, p, i as i64);
            log.extend(o.log_entries());
        }
        live.case_log_written_below(log.len() as i64);
        live.ledger_has_read_to(log.len() as i64);
        let restore = |ledger_read_to: Option<i64>| {
            let mut rebuild =
                Rebuild::new(settings).forgetting_receipts_after(Some(keep), ledger_read_to);
            for (offset, e) in log.iter().enumerate() {
                let bytes = serde_json::to_vec(e).expect("encodes");
                rebuild
                    .record_at(e.key().as_bytes(), &bytes, offset as i64)
                    .expect("in order");
            }
            rebuild.finish().0
        };
        // The ledger had not read the first report: it stays until the ledger has.
        let first_report = log
            .iter()
            .position(|e| matches!(e, CaseLogEntry::Report(r) if r.petition_id == first.id))
            .expect("the first report") as i64;
        let mut restored = restore(Some(first_report));
        assert_eq!(
            restored.petitions(),
            2,
            "nothing forgotten before the ledger read it"
        );
        restored.ledger_has_read_to(first_report + 1);
        assert_eq!(restored.petitions(), 1);
        // The ledger had read everything: forgotten while restoring.
        let restored = restore(Some(log.len() as i64));
        assert_eq!(restored.petitions(), live.petitions());
        assert_eq!(restored.petitions(), 1);
        assert!(restored.may_know_elsewhere(&first.id));
    }

    #[test]
    fn without_a_ledger_to_ask_the_receiver_remembers_every_petition() {
        let router = router();
        let mut state = CaseState::new(DedupeSettings::default());
        let first = reports().remove(0);
        let opened = decide_apply(&mut state, &router, &first, 0);
        decide_apply(&mut state, &router, &a_week_later("B1"), 1);
        assert_eq!(state.petitions(), 2);
        assert!(!state.may_know_elsewhere(&first.id));
        assert_eq!(
            state.decide(&first, &router, &ctx(2)),
            Outcome::Resent {
                case_id: opened.case_id().to_string()
            }
        );
    }

    #[test]
    fn escalation_marks_leave_with_their_cases() {
        let router = router();
        let settings = DedupeSettings::default();
        let keep = settings.held_secs();
        let mut state = CaseState::new(settings);
        state.forget_receipts_after(keep);
        let start = chrono::DateTime::parse_from_rfc3339("2026-11-01T00:00:00+08:00")
            .expect("time")
            .timestamp();
        // An escalating report (a gas leak) every hour for 200 days: 4,800 cases.
        let hours = 200 * 24;
        for h in 0..hours {
            let at = chrono::DateTime::from_timestamp(start + h * 3600, 0)
                .expect("time")
                .to_rfc3339();
            let p = petition(
                &format!("G{h}"),
                "371082003",
                &at,
                &format!("东墩村{h}号楼燃气泄漏，味道很大"),
            );
            let o = decide_apply(&mut state, &router, &p, h);
            assert!(matches!(o, Outcome::Opened { .. }), "{o:?}");
            state.case_log_written_below(h + 1);
            state.ledger_has_read_to(h + 1);
        }
        let held = ((keep / 3600) + 1) as usize;
        assert!(
            state.escalated.len() >= state.open_cases(),
            "open cases keep theirs"
        );
        assert!(
            state.escalated.len() <= 2 * held.max(1024) + 1,
            "{} marks for {} open cases",
            state.escalated.len(),
            state.open_cases()
        );
        assert_eq!(state.petitions(), held);
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

    struct Slas;
    impl crate::lifecycle::Departments for Slas {
        fn sla_secs(&self, code: &str) -> Option<i64> {
            (code != "triage").then_some(24 * 3600)
        }
    }

    /// The timer index answers what a scan of every lifecycle answers, while cases open,
    /// are moved by departments, by the clock and by the citizen, and finish; also after
    /// the timing rules change. It fails if any path forgets to update the index.
    #[test]
    fn the_timer_index_finds_what_a_scan_finds() {
        use crate::lifecycle::{Lifecycle, Source, StatusEvent, Timing};
        use rand::{Rng, SeedableRng};
        let timing = Timing {
            due_soon_share: 0.8,
            satisfaction_timeout_secs: 6 * 3600,
            hour_secs: 3600,
        };
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut state = CaseState::new(DedupeSettings::default());
        let t0 = 1_764_000_000;
        let mut ids: Vec<String> = Vec::new();
        let mut checked_due = 0;
        for step in 0..3000 {
            let now = t0 + step * 120;
            if step % 3 == 0 {
                let id = uuid::Uuid::new_v4().to_string();
                let source = Source {
                    petition_id: id.clone(),
                    channel: "hotline".into(),
                    source_id: id.clone(),
                    reporter_name: None,
                    joined_at: now,
                };
                let department = if rng.random_bool(0.1) {
                    "triage"
                } else {
                    "water"
                };
                let sla = (department != "triage").then_some(24 * 3600);
                let (l, _) = Lifecycle::opened(&id, department, sla, false, source, now);
                state.apply_entry(&CaseLogEntry::Lifecycle(l));
                ids.push(id);
            }
            // A department or the center moves a random case.
            let id = &ids[rng.random_range(0..ids.len())];
            if let Some(mut l) = state.lifecycle(id).cloned() {
                let (status, department) = match rng.random_range(0..5) {
                    0 => ("accepted", "water"),
                    1 => ("in_progress", "water"),
                    2 => ("resolved", "water"),
                    3 => ("closed", "center"),
                    _ => ("reopened", "center"),
                };
                let e = StatusEvent {
                    case_id: id.clone(),
                    status: status.into(),
                    department: department.into(),
                    to_department: None,
                    note: None,
                    at: "2026-11-24T10:00:00+08:00".into(),
                    operator: None,
                };
                if l.apply(&e, now, &Slas).is_ok() {
                    state.apply_entry(&CaseLogEntry::Lifecycle(l));
                }
            }
            // The clock: every due case ticks, as the dispatcher does.
            if step % 10 == 0 {
                let due = state.due(now, timing);
                assert_eq!(due, state.due_by_scan(now, timing), "step {step}");
                checked_due += due.len();
                for id in due {
                    if let Some(mut l) = state.lifecycle(&id).cloned() {
                        l.tick(now, timing);
                        state.apply_entry(&CaseLogEntry::Lifecycle(l));
                    }
                }
            }
        }
        assert!(checked_due > 50, "only {checked_due} due cases checked");
        let other = Timing {
            due_soon_share: 0.5,
            ..timing
        };
        let later = t0 + 3000 * 120 + 48 * 3600;
        assert_eq!(state.due(later, other), state.due_by_scan(later, other));
        assert!(!state.due(later, other).is_empty());
    }

    /// A rebuild fed the records in the order they were written decides the rest as the
    /// sorted restore and the uninterrupted state do; fed them out of order, it refuses
    /// (the dispatcher then restores sorted).
    #[test]
    fn a_rebuild_in_topic_order_decides_like_a_sorted_restore() {
        let router = router();
        let all = reports();
        let cut = all.len() / 2;
        let mut straight = CaseState::new(DedupeSettings::default());
        let mut log = Vec::new();
        for (i, p) in all.iter().enumerate().take(cut) {
            let o = straight.decide(p, &router, &ctx(i as i64));
            straight.apply(&o);
            log.extend(o.log_entries());
        }
        assert!(log
            .iter()
            .any(|e| matches!(e, CaseLogEntry::Report(r) if r.merge.is_some())));
        let source = crate::lifecycle::Source {
            petition_id: all[0].id.clone(),
            channel: "hotline".into(),
            source_id: all[0].source_id.clone(),
            reporter_name: None,
            joined_at: 1,
        };
        let (mut lifecycle, _) = crate::lifecycle::Lifecycle::opened(
            &all[0].id,
            "triage",
            None,
            true,
            source.clone(),
            1,
        );
        // As written: the entries went out in a history record of their own.
        lifecycle.take_unwritten();
        log.push(CaseLogEntry::Lifecycle(lifecycle.clone()));

        // Lifecycle records without a key do not replace each other.
        let mut keyless = Rebuild::new(DedupeSettings::default());
        for p in &all[..2] {
            let (l, _) = crate::lifecycle::Lifecycle::opened(
                &p.id,
                "triage",
                None,
                false,
                source.clone(),
                1,
            );
            let bytes = serde_json::to_vec(&CaseLogEntry::Lifecycle(l)).expect("encodes");
            keyless.record(b"", &bytes).expect("read");
        }
        let (state, _) = keyless.finish();
        assert!(state.lifecycle(&all[0].id).is_some() && state.lifecycle(&all[1].id).is_some());

        let mut rebuild = Rebuild::new(DedupeSettings::default());
        for e in &log {
            let bytes = serde_json::to_vec(e).expect("encodes");
            rebuild
                .record(e.key().as_bytes(), &bytes)
                .expect("in order");
        }
        let (mut rebuilt, unreadable) = rebuild.finish();
        assert!(unreadable.is_empty());
        assert_eq!(rebuilt.lifecycle(&all[0].id), Some(&lifecycle));
        let mut sorted = CaseState::restore(DedupeSettings::default(), log.clone());
        assert_eq!(rebuilt.petitions(), straight.petitions());
        assert_eq!(rebuilt.open_cases(), straight.open_cases());
        for (i, p) in all.iter().enumerate().skip(cut) {
            let a = rebuilt.decide(p, &router, &ctx(i as i64));
            let b = sorted.decide(p, &router, &ctx(i as i64));
            assert_eq!(a.case_id(), b.case_id(), "report {i}");
            rebuilt.apply(&a);
            sorted.apply(&b);
        }

        // The same records with one report moved before its case: refused.
        let mut shuffled = log.clone();
        let report = shuffled
            .iter()
            .position(|e| matches!(e, CaseLogEntry::Report(_)))
            .expect("a report");
        let moved = shuffled.remove(report);
        shuffled.insert(0, moved);
        let mut rebuild = Rebuild::new(DedupeSettings::default());
        let refused = shuffled.iter().find_map(|e| {
            let bytes = serde_json::to_vec(e).expect("encodes");
            rebuild.record(e.key().as_bytes(), &bytes).err()
        });
        assert!(
            matches!(refused, Some(RebuildError::OutOfOrder { .. })),
            "{refused:?}"
        );
        // The sorted restore the dispatcher falls back on takes them, as the old restore.
        let mut sorted_rebuild = Rebuild::sorted(DedupeSettings::default());
        for e in &shuffled {
            let bytes = serde_json::to_vec(e).expect("encodes");
            sorted_rebuild
                .record(e.key().as_bytes(), &bytes)
                .expect("any order");
        }
        let (resorted, _) = sorted_rebuild.finish();
        assert_eq!(resorted.petitions(), straight.petitions());
        assert_eq!(resorted.open_cases(), straight.open_cases());
        assert_eq!(resorted.lifecycle(&all[0].id), Some(&lifecycle));
    }

    /// The restore's fast decoding reads every variant as serde's tagged decoding does,
    /// and still reads a record whose tag is not first (written by another encoder).
    #[test]
    fn fast_decoding_reads_what_tagged_decoding_reads() {
        let router = router();
        let mut state = CaseState::new(DedupeSettings::default());
        let all = reports();
        let mut entries = Vec::new();
        for (i, p) in all.iter().enumerate() {
            let o = state.decide(p, &router, &ctx(i as i64));
            state.apply(&o);
            entries.extend(o.log_entries());
        }
        assert!(entries
            .iter()
            .any(|e| matches!(e, CaseLogEntry::Report(r) if r.merge.is_some())));
        let source = crate::lifecycle::Source {
            petition_id: all[0].id.clone(),
            channel: "hotline".into(),
            source_id: all[0].source_id.clone(),
            reporter_name: None,
            joined_at: 1,
        };
        let (mut lifecycle, _) =
            crate::lifecycle::Lifecycle::opened(&all[0].id, "triage", None, false, source, 1);
        lifecycle.take_unwritten();
        entries.push(CaseLogEntry::Lifecycle(lifecycle));
        for e in &entries {
            let bytes = serde_json::to_vec(e).expect("encodes");
            let fast = CaseLogEntry::decode(&bytes).expect("decodes");
            assert_eq!(&fast, e);
            // The same record with its tag last.
            let mut value = serde_json::to_value(e).expect("encodes");
            let object = value.as_object_mut().expect("an object");
            let tag = object.remove("type").expect("tagged");
            object.insert("type".into(), tag);
            let reordered = serde_json::to_vec(&value).expect("encodes");
            assert!(!reordered.starts_with(b"{\"type\""));
            assert_eq!(&CaseLogEntry::decode(&reordered).expect("decodes"), e);
        }
    }
}
