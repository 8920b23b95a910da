//! The case state machine: which status a case is in, which moves are legal and who may
//! make them, and what each move tells the case's sources and the center.
//!
//! Pure: no clock, no I/O. The owner of a case's partition (the dispatcher) feeds it the
//! department's and the center's status events, the citizen's satisfaction feedback and
//! clock ticks, and writes the resulting [`Lifecycle`] to `petitions.cases` in the same
//! transaction as the callbacks and alerts it caused, so a restart neither repeats nor
//! loses a move, a callback or an alert.

use serde::{Deserialize, Serialize};

/// The department code the center publishes its own events under.
pub const CENTER: &str = "center";
/// Where a case waits for the center to assign it.
pub const TRIAGE: &str = "triage";

/// Where a case is. The order of the working phases is the order a case moves through
/// them: a late or repeated event that would move a case back is refused as stale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Waiting for the center to assign a department (no match, a tie, or returned).
    Triage,
    Dispatched,
    Accepted,
    InProgress,
    /// Done by the department; waiting for the citizen's satisfaction (不满意不销号).
    Resolved,
    Closed,
    /// Not accepted (不予受理), with the reason.
    Rejected,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Triage => "triage",
            Phase::Dispatched => "dispatched",
            Phase::Accepted => "accepted",
            Phase::InProgress => "in_progress",
            Phase::Resolved => "resolved",
            Phase::Closed => "closed",
            Phase::Rejected => "rejected",
        }
    }

    /// A department is working on it, so the SLA clock runs.
    pub fn working(self) -> bool {
        matches!(
            self,
            Phase::Dispatched | Phase::Accepted | Phase::InProgress
        )
    }

    pub fn terminal(self) -> bool {
        matches!(self, Phase::Closed | Phase::Rejected)
    }
}

/// A petition linked to the case: every one of them hears about every change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Source {
    pub petition_id: String,
    pub channel: String,
    pub source_id: String,
    /// Kept to scrub it from public replies, never sent anywhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reporter_name: Option<String>,
    pub joined_at: i64,
}

/// One line of a case's status history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// A canonical status: received, accepted, dispatched, merged, in_progress, …
    pub status: String,
    pub at: i64,
    /// Who moved it: a department code, `center`, `gateway` or a channel (feedback).
    pub by: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub department: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator: Option<String>,
}

/// Everything about a case after it opened: where it is, its deadline and its sources.
/// Written whole (`lifecycle/<case id>` on the compacted cases topic) after every change.
/// Its history is not part of it: each move's entries go out once, as a `history`
/// record of their own, and the ledger keeps them; the dispatcher keeps only their count
/// and what its rules read (the last entry, who returned the case).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "LifecycleRecord")]
pub struct Lifecycle {
    pub case_id: String,
    pub phase: Phase,
    /// The department working on it (`triage` while in triage).
    pub department: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dispatched_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<i64>,
    /// The due-soon alert for the current deadline was raised.
    #[serde(default)]
    pub due_soon_alerted: bool,
    /// The current deadline passed while the department was working.
    #[serde(default)]
    pub overdue: bool,
    #[serde(default)]
    pub escalated: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_at: Option<i64>,
    #[serde(default)]
    pub reopened: u32,
    pub sources: Vec<Source>,
    /// How many history entries the case has had: the next one's position. Callback ids
    /// are built from it, so a redone move names its callbacks as the first try did.
    #[serde(default)]
    pub history_len: u32,
    /// The latest history entry: why the case is where it is. Boxed: a pointer in
    /// memory where an entry would take 128 B.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<Box<HistoryEntry>>,
    /// While the case is back in triage because a department returned it: that
    /// department (the center's next assignment corrects the list's choice).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub returned_by: Option<String>,
    /// Entries of moves since the lifecycle was last written, positions from
    /// `history_len - unwritten.len()`: taken out by [`Lifecycle::take_unwritten`].
    #[serde(skip)]
    pub unwritten: Vec<HistoryEntry>,
}

/// A lifecycle as records hold it: also the whole `history` that records written before
/// history records carried, folded into the count and the last entry as it is read.
#[derive(Deserialize)]
struct LifecycleRecord {
    case_id: String,
    phase: Phase,
    department: String,
    #[serde(default)]
    dispatched_at: Option<i64>,
    #[serde(default)]
    deadline: Option<i64>,
    #[serde(default)]
    due_soon_alerted: bool,
    #[serde(default)]
    overdue: bool,
    #[serde(default)]
    escalated: bool,
    #[serde(default)]
    resolved_at: Option<i64>,
    #[serde(default)]
    reopened: u32,
    sources: Vec<Source>,
    #[serde(default)]
    history_len: u32,
    #[serde(default)]
    last: Option<HistoryEntry>,
    #[serde(default)]
    returned_by: Option<String>,
    #[serde(default)]
    history: Vec<HistoryEntry>,
}

impl From<LifecycleRecord> for Lifecycle {
    fn from(r: LifecycleRecord) -> Self {
        let mut lifecycle = Lifecycle {
            case_id: r.case_id,
            phase: r.phase,
            department: r.department,
            dispatched_at: r.dispatched_at,
            deadline: r.deadline,
            due_soon_alerted: r.due_soon_alerted,
            overdue: r.overdue,
            escalated: r.escalated,
            resolved_at: r.resolved_at,
            reopened: r.reopened,
            sources: r.sources,
            history_len: r.history_len,
            last: r.last.map(Box::new),
            returned_by: r.returned_by,
            unwritten: Vec::new(),
        };
        if lifecycle.history_len == 0 {
            let mut history = r.history;
            for entry in &history {
                lifecycle.note_entry(entry);
            }
            if let Some(entry) = history.pop() {
                lifecycle.last = Some(Box::new(entry));
            }
        }
        lifecycle
    }
}

/// A move's history entries as the cases topic carries them (`history/<case id>/<from>`):
/// written once, never rewritten, so compaction keeps every one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryRecord {
    pub case_id: String,
    /// The position of the first entry in the case's history.
    pub from: u32,
    pub entries: Vec<HistoryEntry>,
}

/// Key prefix of history records.
pub const HISTORY_KEY_PREFIX: &str = "history/";

impl HistoryRecord {
    pub fn key(&self) -> String {
        format!("{HISTORY_KEY_PREFIX}{}/{}", self.case_id, self.from)
    }
}

/// What the machine needs to know about departments.
pub trait Departments {
    /// The SLA of a department of the current list in seconds, `None` if there is no
    /// such department.
    fn sla_secs(&self, code: &str) -> Option<i64>;
}

/// The timing rules (from the `[lifecycle]` settings).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timing {
    /// The share of the SLA after which the due-soon alert fires (0.8: at 57.6 h of 72).
    pub due_soon_share: f64,
    /// After resolution, how long the citizen has to answer before the case closes.
    pub satisfaction_timeout_secs: i64,
    /// How long an SLA hour lasts: 3600, shortened only for demos and tests.
    pub hour_secs: i64,
}

/// A department's or the center's status event, already schema-checked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusEvent {
    pub case_id: String,
    pub status: String,
    pub department: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_department: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The event's own time (RFC 3339), as its publisher stated it.
    pub at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator: Option<String>,
}

/// The citizen's answer after resolution (the city app's satisfaction feedback).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Feedback {
    pub channel: String,
    pub source_id: String,
    pub satisfied: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// Why an event changed nothing. Each goes to the rejected-events topic with its reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("case {case_id} is routed to {routed_to}, not to {department}")]
    NotYours {
        case_id: String,
        routed_to: String,
        department: String,
    },
    #[error("{status} is the center's to publish, not a department's")]
    CenterOnly { status: String },
    #[error("{status} is the department's to publish; the center assigns, escalates, closes and reopens")]
    DepartmentOnly { status: String },
    #[error("stale: case {case_id} is already {phase}, {status} would move it back")]
    Stale {
        case_id: String,
        phase: &'static str,
        status: String,
    },
    #[error("case {case_id} is {phase}: {status} is not a legal move from there")]
    Illegal {
        case_id: String,
        phase: &'static str,
        status: String,
    },
    #[error("no department {0} in the responsibility list")]
    UnknownDepartment(String),
    #[error("{0}")]
    Invalid(String),
}

/// What one move asks of the outside world.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Effects {
    /// Canonical statuses to tell every source, in order.
    pub notices: Vec<Notice>,
    /// The case must be (re)sent to this department's topic (or triage).
    pub dispatch_to: Option<String>,
    pub alerts: Vec<Alert>,
    /// Also publish the case on the escalations topic.
    pub escalate: bool,
}

impl Effects {
    pub fn is_empty(&self) -> bool {
        self.notices.is_empty()
            && self.dispatch_to.is_none()
            && self.alerts.is_empty()
            && !self.escalate
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    pub status: &'static str,
    pub note: Option<String>,
    /// Only this source (a merged report hears its own "merged"); `None`: every source.
    pub only: Option<String>,
}

impl Notice {
    fn all(status: &'static str, note: Option<String>) -> Self {
        Self {
            status,
            note,
            only: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    DueSoon,
    Overdue,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    pub kind: AlertKind,
    pub deadline: i64,
}

/// Seconds in an hour: the default SLA is 72 of them.
pub const HOUR: i64 = 3600;

impl Lifecycle {
    /// A case the dispatcher just opened: received, accepted, and dispatched unless it
    /// went to triage.
    pub fn opened(
        case_id: &str,
        department: &str,
        sla_secs: Option<i64>,
        escalated: bool,
        first: Source,
        at: i64,
    ) -> (Self, Effects) {
        let mut c = Lifecycle {
            case_id: case_id.to_string(),
            phase: Phase::Triage,
            department: TRIAGE.to_string(),
            dispatched_at: None,
            deadline: None,
            due_soon_alerted: false,
            overdue: false,
            escalated,
            resolved_at: None,
            reopened: 0,
            sources: vec![first],
            history_len: 0,
            last: None,
            returned_by: None,
            unwritten: Vec::new(),
        };
        let mut fx = Effects::default();
        // The center took it in (受理): the channels' "received" codes say exactly that
        // (hotline 01 受理); `accepted` is the department's word, sent when it accepts.
        c.record("received", at, "gateway", None, None);
        c.record("accepted", at, "gateway", None, None);
        fx.notices.push(Notice::all("received", None));
        if department != TRIAGE {
            c.dispatch(
                department,
                sla_secs.unwrap_or(72 * HOUR),
                at,
                "gateway",
                None,
                true,
                &mut fx,
            );
        }
        if escalated {
            c.record("escalated", at, "gateway", None, None);
            fx.notices.push(Notice::all("escalated", None));
            fx.escalate = true;
        }
        (c, fx)
    }

    /// Another report joined the case: it hears that it was merged and where the case is.
    pub fn merged(&mut self, source: Source, escalates: bool, at: i64) -> Effects {
        let mut fx = Effects::default();
        let only = Some(source.petition_id.clone());
        self.record(
            "merged",
            at,
            "gateway",
            None,
            Some(format!("report {} joined", source.petition_id)),
        );
        self.sources.push(source);
        fx.notices.push(Notice {
            status: "received",
            note: None,
            only: only.clone(),
        });
        fx.notices.push(Notice {
            status: "merged",
            note: None,
            only,
        });
        if escalates && !self.escalated {
            self.escalated = true;
            self.record("escalated", at, "gateway", None, None);
            fx.notices.push(Notice::all("escalated", None));
            fx.escalate = true;
        }
        fx
    }

    /// A department's or the center's event. `at` is when the gateway handled it (the
    /// SLA and the history run on the gateway's clock; the event's own time is kept in
    /// the note of the history when it differs).
    pub fn apply(
        &mut self,
        e: &StatusEvent,
        at: i64,
        departments: &dyn Departments,
    ) -> Result<Effects, Refusal> {
        let center = e.department == CENTER;
        let status = e.status.as_str();
        if center
            && matches!(
                status,
                "accepted" | "in_progress" | "resolved" | "returned" | "rejected"
            )
        {
            return Err(Refusal::DepartmentOnly {
                status: e.status.clone(),
            });
        }
        if !center {
            // Published before the case was last (re)dispatched: an event about the
            // earlier round (a resolution from before a reopen), not this one. Five
            // minutes allow for the departments' clocks.
            let published = chrono::DateTime::parse_from_rfc3339(&e.at).map(|t| t.timestamp());
            if let (Ok(published), Some(since)) = (published, self.dispatched_at) {
                if published + 300 < since {
                    return Err(Refusal::Stale {
                        case_id: self.case_id.clone(),
                        phase: self.phase.as_str(),
                        status: format!(
                            "{} published before the case was last dispatched",
                            e.status
                        ),
                    });
                }
            }
            if matches!(status, "escalated" | "closed" | "reopened") {
                return Err(Refusal::CenterOnly {
                    status: e.status.clone(),
                });
            }
            if e.department != self.department || self.phase == Phase::Triage {
                return Err(Refusal::NotYours {
                    case_id: self.case_id.clone(),
                    routed_to: self.department.clone(),
                    department: e.department.clone(),
                });
            }
        }
        let mut fx = Effects::default();
        let by = e.department.as_str();
        let note = e.note.clone();
        match status {
            "accepted" | "in_progress" | "resolved" => {
                let to = match status {
                    "accepted" => Phase::Accepted,
                    "in_progress" => Phase::InProgress,
                    _ => Phase::Resolved,
                };
                if !self.phase.working() {
                    return Err(self.refuse(status, self.phase >= to));
                }
                if self.phase >= to {
                    return Err(self.refuse(status, true));
                }
                self.phase = to;
                if to == Phase::Resolved {
                    self.resolved_at = Some(at);
                }
                self.record_event(e, at);
                fx.notices
                    .push(Notice::all(canonical(status), note.clone()));
            }
            "returned" => {
                if !self.phase.working() {
                    return Err(self.refuse(status, false));
                }
                self.phase = Phase::Triage;
                self.department = TRIAGE.to_string();
                self.clear_deadline();
                self.record_event(e, at);
                fx.notices.push(Notice::all("returned", note));
                fx.dispatch_to = Some(TRIAGE.to_string());
            }
            "reassigned" => {
                let Some(to) = e.to_department.as_deref() else {
                    return Err(Refusal::Invalid(
                        "reassigned needs to_department".to_string(),
                    ));
                };
                let sla = departments
                    .sla_secs(to)
                    .ok_or_else(|| Refusal::UnknownDepartment(to.to_string()))?;
                if !(self.phase.working() || self.phase == Phase::Triage) {
                    return Err(self.refuse(status, false));
                }
                // To itself would only reset its own deadline and overdue mark.
                if to == self.department {
                    return Err(Refusal::Invalid(format!(
                        "case {} is already routed to {to}",
                        self.case_id
                    )));
                }
                let from_triage = self.phase == Phase::Triage;
                self.record_event(e, at);
                // The sources hear one thing: dispatched (out of triage) or reassigned.
                let notice = if from_triage {
                    "dispatched"
                } else {
                    "reassigned"
                };
                fx.notices.push(Notice::all(notice, note.clone()));
                self.dispatch(to, sla, at, by, note, false, &mut fx);
            }
            "rejected" => {
                if !matches!(self.phase, Phase::Dispatched | Phase::Accepted) {
                    return Err(self.refuse(status, self.phase > Phase::Accepted));
                }
                if note.as_deref().is_none_or(|n| n.trim().is_empty()) {
                    return Err(Refusal::Invalid("rejected needs a note: the reason".into()));
                }
                self.phase = Phase::Rejected;
                self.clear_deadline();
                self.record_event(e, at);
                fx.notices.push(Notice::all("rejected", note));
            }
            "escalated" => {
                if self.phase.terminal() || self.escalated {
                    return Err(self.refuse(status, true));
                }
                self.escalated = true;
                self.record_event(e, at);
                fx.notices.push(Notice::all("escalated", note));
                fx.escalate = true;
            }
            // The center records satisfaction it learned itself (the hotline's 回访).
            "closed" => {
                if self.phase != Phase::Resolved {
                    return Err(self.refuse(status, self.phase.terminal()));
                }
                self.phase = Phase::Closed;
                self.record_event(e, at);
                fx.notices.push(Notice::all("closed", note));
            }
            // A closed case is final (its recurrence is a new petition): only a resolved
            // one the citizen turned out not to be satisfied with is reopened.
            "reopened" => {
                if self.phase != Phase::Resolved {
                    return Err(self.refuse(status, false));
                }
                self.record_event(e, at);
                self.reopen(at, by, note, &mut fx);
            }
            other => {
                return Err(Refusal::Invalid(format!("unknown status {other}")));
            }
        }
        Ok(fx)
    }

    /// The citizen answered. Not satisfied reopens the case at the same department with
    /// the comment; satisfied closes it.
    pub fn feedback(&mut self, f: &Feedback, at: i64) -> Result<Effects, Refusal> {
        if self.phase != Phase::Resolved {
            return Err(Refusal::Illegal {
                case_id: self.case_id.clone(),
                phase: self.phase.as_str(),
                status: if f.satisfied {
                    "satisfied"
                } else {
                    "not satisfied"
                }
                .into(),
            });
        }
        let mut fx = Effects::default();
        let status = if f.satisfied {
            "satisfied"
        } else {
            "dissatisfied"
        };
        self.record(status, at, &f.channel, None, f.comment.clone());
        if f.satisfied {
            self.phase = Phase::Closed;
            self.record("closed", at, "gateway", None, None);
            fx.notices.push(Notice::all("closed", None));
        } else {
            self.reopen(at, &f.channel.clone(), f.comment.clone(), &mut fx);
        }
        Ok(fx)
    }

    /// The clock: due-soon and overdue alerts for the current deadline (each once), and
    /// the close of a resolved case nobody answered for.
    pub fn tick(&mut self, now: i64, timing: Timing) -> Effects {
        let mut fx = Effects::default();
        if let (true, Some(from), Some(deadline)) =
            (self.phase.working(), self.dispatched_at, self.deadline)
        {
            let due_soon_at = from + ((deadline - from) as f64 * timing.due_soon_share) as i64;
            if now >= due_soon_at && !self.due_soon_alerted && now < deadline {
                self.due_soon_alerted = true;
                self.record("due_soon", now, "gateway", None, None);
                fx.alerts.push(Alert {
                    kind: AlertKind::DueSoon,
                    deadline,
                });
            }
            if now >= deadline && !self.overdue {
                // Past the deadline the due-soon alert is moot: one alert, the overdue one.
                self.due_soon_alerted = true;
                self.overdue = true;
                self.record("overdue", now, "gateway", None, None);
                fx.alerts.push(Alert {
                    kind: AlertKind::Overdue,
                    deadline,
                });
                fx.notices.push(Notice::all("overdue", None));
                if !self.escalated {
                    self.escalated = true;
                    self.record("escalated", now, "gateway", None, None);
                    fx.notices.push(Notice::all("escalated", None));
                    fx.escalate = true;
                }
            }
        }
        if let (Phase::Resolved, Some(resolved)) = (self.phase, self.resolved_at) {
            if now >= resolved + timing.satisfaction_timeout_secs {
                self.phase = Phase::Closed;
                self.record(
                    "closed",
                    now,
                    "gateway",
                    None,
                    Some("no answer from the citizen in time".into()),
                );
                fx.notices.push(Notice::all("closed", None));
            }
        }
        fx
    }

    /// The next moment `tick` can change something, to schedule the timer.
    pub fn next_due(&self, timing: Timing) -> Option<i64> {
        match (
            self.phase,
            self.dispatched_at,
            self.deadline,
            self.resolved_at,
        ) {
            (p, Some(from), Some(deadline), _) if p.working() => {
                if !self.due_soon_alerted {
                    Some(from + ((deadline - from) as f64 * timing.due_soon_share) as i64)
                } else if !self.overdue {
                    Some(deadline)
                } else {
                    None
                }
            }
            (Phase::Resolved, _, _, Some(resolved)) => {
                Some(resolved + timing.satisfaction_timeout_secs)
            }
            _ => None,
        }
    }

    /// The source a channel's id belongs to.
    pub fn source(&self, channel: &str, source_id: &str) -> Option<&Source> {
        self.sources
            .iter()
            .find(|s| s.channel == channel && s.source_id == source_id)
    }

    #[allow(clippy::too_many_arguments)]
    fn dispatch(
        &mut self,
        department: &str,
        sla_secs: i64,
        at: i64,
        by: &str,
        note: Option<String>,
        notify: bool,
        fx: &mut Effects,
    ) {
        self.phase = Phase::Dispatched;
        self.department = department.to_string();
        self.dispatched_at = Some(at);
        self.deadline = Some(at + sla_secs);
        self.due_soon_alerted = false;
        self.overdue = false;
        self.resolved_at = None;
        self.record("dispatched", at, by, Some(department.to_string()), note);
        if notify {
            fx.notices.push(Notice::all("dispatched", None));
        }
        fx.dispatch_to = Some(department.to_string());
    }

    fn reopen(&mut self, at: i64, by: &str, note: Option<String>, fx: &mut Effects) {
        self.reopened += 1;
        self.record("reopened", at, by, None, note.clone());
        fx.notices.push(Notice::all("reopened", note.clone()));
        let department = self.department.clone();
        if department == TRIAGE {
            self.phase = Phase::Triage;
            fx.dispatch_to = Some(TRIAGE.to_string());
            return;
        }
        // The same department again, with a fresh deadline of the same length.
        let sla_secs = match (self.dispatched_at, self.deadline) {
            (Some(from), Some(to)) => to - from,
            _ => 72 * HOUR,
        };
        self.dispatch(&department, sla_secs, at, by, note, true, fx);
    }

    fn clear_deadline(&mut self) {
        self.dispatched_at = None;
        self.deadline = None;
        self.due_soon_alerted = false;
        self.overdue = false;
    }

    fn refuse(&self, status: &str, stale: bool) -> Refusal {
        if stale {
            Refusal::Stale {
                case_id: self.case_id.clone(),
                phase: self.phase.as_str(),
                status: status.to_string(),
            }
        } else {
            Refusal::Illegal {
                case_id: self.case_id.clone(),
                phase: self.phase.as_str(),
                status: status.to_string(),
            }
        }
    }

    /// The entries moved since the lifecycle was last written, as their record; `None`
    /// when nothing moved.
    pub fn take_unwritten(&mut self) -> Option<HistoryRecord> {
        if self.unwritten.is_empty() {
            return None;
        }
        let entries = std::mem::take(&mut self.unwritten);
        Some(HistoryRecord {
            case_id: self.case_id.clone(),
            from: self.history_len - entries.len() as u32,
            entries,
        })
    }

    /// Counts an entry and keeps what the rules read of it.
    fn note_entry(&mut self, entry: &HistoryEntry) {
        self.history_len += 1;
        match entry.status.as_str() {
            "returned" => self.returned_by = Some(entry.by.clone()),
            "dispatched" | "reassigned" => self.returned_by = None,
            _ => {}
        }
    }

    fn push_entry(&mut self, entry: HistoryEntry) {
        self.note_entry(&entry);
        // Every move replaces the last entry: its box is reused, not allocated again.
        match &mut self.last {
            Some(last) => **last = entry.clone(),
            None => self.last = Some(Box::new(entry.clone())),
        }
        self.unwritten.push(entry);
    }

    fn record_event(&mut self, e: &StatusEvent, at: i64) {
        self.push_entry(HistoryEntry {
            status: e.status.clone(),
            at,
            by: e.department.clone(),
            department: e.to_department.clone(),
            note: e.note.clone(),
            operator: e.operator.clone(),
        });
    }

    fn record(
        &mut self,
        status: &str,
        at: i64,
        by: &str,
        department: Option<String>,
        note: Option<String>,
    ) {
        self.push_entry(HistoryEntry {
            status: status.to_string(),
            at,
            by: by.to_string(),
            department,
            note,
            operator: None,
        });
    }
}

fn canonical(status: &str) -> &'static str {
    match status {
        "accepted" => "accepted",
        "in_progress" => "in_progress",
        _ => "resolved",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct List;
    impl Departments for List {
        fn sla_secs(&self, code: &str) -> Option<i64> {
            match code {
                "water" => Some(72 * HOUR),
                "housing" => Some(48 * HOUR),
                _ => None,
            }
        }
    }

    const T0: i64 = 1_764_000_000;
    const TIMING: Timing = Timing {
        due_soon_share: 0.8,
        satisfaction_timeout_secs: 72 * HOUR,
        hour_secs: HOUR,
    };

    fn source(id: &str, channel: &str) -> Source {
        Source {
            petition_id: id.into(),
            channel: channel.into(),
            source_id: format!("S-{id}"),
            reporter_name: None,
            joined_at: T0,
        }
    }

    fn event(status: &str, department: &str) -> StatusEvent {
        StatusEvent {
            case_id: "c1".into(),
            status: status.into(),
            department: department.into(),
            to_department: None,
            note: Some("说明".into()),
            at: "2026-11-24T10:00:00+08:00".into(),
            operator: None,
        }
    }

    fn statuses(fx: &Effects) -> Vec<&str> {
        fx.notices.iter().map(|n| n.status).collect()
    }

    fn opened() -> Lifecycle {
        Lifecycle::opened(
            "c1",
            "water",
            Some(72 * HOUR),
            false,
            source("c1", "hotline"),
            T0,
        )
        .0
    }

    #[test]
    fn a_new_case_is_received_accepted_and_dispatched_with_its_deadline() {
        let (c, fx) = Lifecycle::opened(
            "c1",
            "water",
            Some(72 * HOUR),
            false,
            source("c1", "hotline"),
            T0,
        );
        assert_eq!(statuses(&fx), ["received", "dispatched"]);
        assert_eq!(fx.dispatch_to.as_deref(), Some("water"));
        assert_eq!(c.phase, Phase::Dispatched);
        assert_eq!(c.deadline, Some(T0 + 72 * HOUR));
        let (t, fx) = Lifecycle::opened("c2", TRIAGE, None, true, source("c2", "hotline"), T0);
        assert_eq!(t.phase, Phase::Triage);
        assert_eq!(statuses(&fx), ["received", "escalated"]);
        assert!(fx.escalate && fx.dispatch_to.is_none() && t.deadline.is_none());
    }

    #[test]
    fn the_department_moves_it_forward_and_never_back() {
        let mut c = opened();
        for s in ["accepted", "in_progress", "resolved"] {
            let fx = c.apply(&event(s, "water"), T0 + 10, &List).unwrap();
            assert_eq!(statuses(&fx), [s]);
        }
        assert_eq!(c.phase, Phase::Resolved);
        // Late and repeated events: refused as stale, nothing changes.
        let before = c.clone();
        for s in ["accepted", "in_progress", "resolved"] {
            let r = c.apply(&event(s, "water"), T0 + 20, &List);
            assert!(matches!(r, Err(Refusal::Stale { .. })), "{s}: {r:?}");
        }
        assert_eq!(c, before);
    }

    #[test]
    fn skipping_a_step_forward_is_legal() {
        let mut c = opened();
        c.apply(&event("resolved", "water"), T0 + 10, &List)
            .unwrap();
        assert_eq!(c.phase, Phase::Resolved);
    }

    #[test]
    fn only_the_routed_department_may_change_a_case() {
        let mut c = opened();
        let r = c.apply(&event("accepted", "housing"), T0, &List);
        assert!(matches!(r, Err(Refusal::NotYours { .. })), "{r:?}");
        let r = c.apply(&event("closed", "water"), T0, &List);
        assert!(matches!(r, Err(Refusal::CenterOnly { .. })), "{r:?}");
        assert_eq!(c.phase, Phase::Dispatched);
    }

    #[test]
    fn returned_goes_back_to_triage_and_the_center_assigns_it_again() {
        let mut c = opened();
        let fx = c.apply(&event("returned", "water"), T0 + 5, &List).unwrap();
        assert_eq!(fx.dispatch_to.as_deref(), Some(TRIAGE));
        assert_eq!((c.phase, c.department.as_str()), (Phase::Triage, TRIAGE));
        assert!(c.deadline.is_none());
        // The old department has no say any more.
        assert!(c.apply(&event("accepted", "water"), T0 + 6, &List).is_err());
        let mut assign = event("reassigned", CENTER);
        assign.to_department = Some("housing".into());
        let fx = c.apply(&assign, T0 + 7, &List).unwrap();
        assert_eq!(fx.dispatch_to.as_deref(), Some("housing"));
        assert_eq!(c.deadline, Some(T0 + 7 + 48 * HOUR));
        // Out of triage the sources hear "dispatched", once.
        assert_eq!(statuses(&fx), ["dispatched"]);
    }

    #[test]
    fn reassigned_routes_to_the_new_department_and_needs_one_that_exists() {
        let mut c = opened();
        let mut e = event("reassigned", "water");
        e.to_department = Some("nowhere".into());
        assert_eq!(
            c.apply(&e, T0, &List),
            Err(Refusal::UnknownDepartment("nowhere".into()))
        );
        e.to_department = Some("housing".into());
        c.apply(&e, T0 + 1, &List).unwrap();
        assert_eq!(c.department, "housing");
        assert!(c.apply(&event("accepted", "water"), T0 + 2, &List).is_err());
        assert!(c
            .apply(&event("accepted", "housing"), T0 + 2, &List)
            .is_ok());
    }

    #[test]
    fn rejected_needs_a_reason_and_ends_the_case() {
        let mut c = opened();
        let mut e = event("rejected", "water");
        e.note = None;
        assert!(matches!(c.apply(&e, T0, &List), Err(Refusal::Invalid(_))));
        e.note = Some("不属于受理范围".into());
        c.apply(&e, T0, &List).unwrap();
        assert_eq!(c.phase, Phase::Rejected);
        assert!(c.apply(&event("in_progress", "water"), T0, &List).is_err());
    }

    #[test]
    fn nothing_closes_until_the_citizen_is_satisfied() {
        let mut c = opened();
        // The center cannot close a case that is not resolved.
        assert!(c.apply(&event("closed", CENTER), T0, &List).is_err());
        c.apply(&event("resolved", "water"), T0 + HOUR, &List)
            .unwrap();
        let unhappy = Feedback {
            channel: "city-app".into(),
            source_id: "S-c1".into(),
            satisfied: false,
            comment: Some("还是不亮".into()),
        };
        let fx = c.feedback(&unhappy, T0 + 2 * HOUR).unwrap();
        assert_eq!(statuses(&fx), ["reopened", "dispatched"]);
        assert_eq!(fx.dispatch_to.as_deref(), Some("water"));
        assert_eq!((c.phase, c.reopened), (Phase::Dispatched, 1));
        assert_eq!(c.deadline, Some(T0 + 2 * HOUR + 72 * HOUR));
        assert!(c
            .unwritten
            .iter()
            .any(|h| h.note.as_deref() == Some("还是不亮")));
        // Feedback before resolution changes nothing.
        assert!(c.feedback(&unhappy, T0 + 3 * HOUR).is_err());
        c.apply(&event("resolved", "water"), T0 + 4 * HOUR, &List)
            .unwrap();
        let happy = Feedback {
            satisfied: true,
            comment: None,
            ..unhappy
        };
        let fx = c.feedback(&happy, T0 + 5 * HOUR).unwrap();
        assert_eq!(statuses(&fx), ["closed"]);
        assert_eq!(c.phase, Phase::Closed);
    }

    #[test]
    fn no_answer_closes_a_resolved_case_after_the_timeout() {
        let mut c = opened();
        c.apply(&event("resolved", "water"), T0, &List).unwrap();
        assert_eq!(c.next_due(TIMING), Some(T0 + 72 * HOUR));
        assert!(c.tick(T0 + 72 * HOUR - 1, TIMING).is_empty());
        let fx = c.tick(T0 + 72 * HOUR, TIMING);
        assert_eq!(statuses(&fx), ["closed"]);
        assert!(c.tick(T0 + 80 * HOUR, TIMING).is_empty());
    }

    #[test]
    fn sla_alerts_fire_once_each_and_overdue_escalates() {
        let mut c = opened();
        let due_soon = T0 + (72.0 * 0.8 * 3600.0) as i64;
        assert_eq!(c.next_due(TIMING), Some(due_soon));
        assert!(c.tick(due_soon - 1, TIMING).is_empty());
        let fx = c.tick(due_soon, TIMING);
        assert_eq!(fx.alerts.len(), 1);
        assert_eq!(fx.alerts[0].kind, AlertKind::DueSoon);
        assert!(c.tick(due_soon + 60, TIMING).is_empty());
        let fx = c.tick(T0 + 72 * HOUR, TIMING);
        assert_eq!(fx.alerts[0].kind, AlertKind::Overdue);
        assert_eq!(statuses(&fx), ["overdue", "escalated"]);
        assert!(fx.escalate && c.overdue && c.escalated);
        assert!(c.tick(T0 + 100 * HOUR, TIMING).is_empty());
        assert_eq!(c.next_due(TIMING), None);
    }

    #[test]
    fn a_restored_case_does_not_alert_again() {
        let mut c = opened();
        c.tick(T0 + 72 * HOUR, TIMING);
        // Written as the dispatcher writes it: the entries go out in their own record.
        c.take_unwritten();
        let restored: Lifecycle =
            serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
        let mut restored = restored;
        assert!(restored.tick(T0 + 73 * HOUR, TIMING).is_empty());
        assert_eq!(restored, c);
    }

    #[test]
    fn a_case_first_seen_past_its_deadline_alerts_overdue_only() {
        let mut c = opened();
        let fx = c.tick(T0 + 100 * HOUR, TIMING);
        let kinds: Vec<_> = fx.alerts.iter().map(|a| a.kind).collect();
        assert_eq!(kinds, [AlertKind::Overdue]);
    }

    #[test]
    fn a_merged_report_hears_merged_and_everyone_hears_a_new_escalation() {
        let mut c = opened();
        let fx = c.merged(source("p2", "city-app"), true, T0 + 5);
        assert_eq!(statuses(&fx), ["received", "merged", "escalated"]);
        assert_eq!(fx.notices[1].only.as_deref(), Some("p2"));
        assert_eq!(fx.notices[2].only, None);
        assert_eq!(c.sources.len(), 2);
        let fx = c.merged(source("p3", "hotline"), true, T0 + 6);
        assert_eq!(statuses(&fx), ["received", "merged"]);
    }

    #[test]
    fn the_center_escalates_once_and_a_closed_case_stays_closed() {
        let mut c = opened();
        assert!(
            c.apply(&event("escalated", CENTER), T0, &List)
                .unwrap()
                .escalate
        );
        assert!(matches!(
            c.apply(&event("escalated", CENTER), T0, &List),
            Err(Refusal::Stale { .. })
        ));
        c.apply(&event("resolved", "water"), T0, &List).unwrap();
        // The center's own satisfaction call turned out badly: reopened.
        let fx = c.apply(&event("reopened", CENTER), T0 + 1, &List).unwrap();
        assert_eq!(fx.dispatch_to.as_deref(), Some("water"));
        assert_eq!(c.phase, Phase::Dispatched);
        c.apply(&event("resolved", "water"), T0 + 2, &List).unwrap();
        c.apply(&event("closed", CENTER), T0 + 3, &List).unwrap();
        assert!(c.apply(&event("reopened", CENTER), T0 + 4, &List).is_err());
        assert_eq!(c.phase, Phase::Closed);
    }

    #[test]
    fn the_center_cannot_make_a_departments_moves() {
        let mut c = opened();
        for s in [
            "accepted",
            "in_progress",
            "resolved",
            "returned",
            "rejected",
        ] {
            let r = c.apply(&event(s, CENTER), T0, &List);
            assert!(
                matches!(r, Err(Refusal::DepartmentOnly { .. })),
                "{s}: {r:?}"
            );
        }
        assert_eq!(c.phase, Phase::Dispatched);
    }

    #[test]
    fn a_reassignment_is_heard_once_and_never_to_itself() {
        let mut c = opened();
        c.tick(T0 + 72 * HOUR, TIMING);
        assert!(c.overdue);
        let mut e = event("reassigned", "water");
        e.to_department = Some("water".into());
        assert!(matches!(
            c.apply(&e, T0 + 72 * HOUR, &List),
            Err(Refusal::Invalid(_))
        ));
        assert!(c.overdue, "its own overdue mark stays");
        e.to_department = Some("housing".into());
        let fx = c.apply(&e, T0 + 73 * HOUR, &List).unwrap();
        assert_eq!(statuses(&fx), ["reassigned"]);
        assert_eq!(fx.dispatch_to.as_deref(), Some("housing"));
    }

    #[test]
    fn an_event_published_before_the_last_dispatch_is_stale() {
        let mut c = opened();
        c.apply(&event("resolved", "water"), T0 + HOUR, &List)
            .unwrap();
        c.apply(&event("reopened", CENTER), T0 + 2 * HOUR, &List)
            .unwrap();
        // The department's resolution of the first round, arriving late.
        let mut late = event("resolved", "water");
        late.at = chrono::DateTime::from_timestamp(T0 + HOUR, 0)
            .unwrap()
            .to_rfc3339();
        let fresh = chrono::DateTime::from_timestamp(T0 + 3 * HOUR, 0)
            .unwrap()
            .to_rfc3339();
        assert!(matches!(
            c.apply(&late, T0 + 3 * HOUR, &List),
            Err(Refusal::Stale { .. })
        ));
        assert_eq!(c.phase, Phase::Dispatched);
        late.at = fresh;
        c.apply(&late, T0 + 3 * HOUR, &List).unwrap();
        assert_eq!(c.phase, Phase::Resolved);
    }

    #[test]
    fn each_move_hands_out_its_entries_once_at_their_positions() {
        let mut c = opened();
        let first = c.take_unwritten().unwrap();
        assert_eq!(first.key(), "history/c1/0");
        let statuses = |r: &HistoryRecord| -> Vec<String> {
            r.entries.iter().map(|h| h.status.clone()).collect()
        };
        assert_eq!(statuses(&first), ["received", "accepted", "dispatched"]);
        assert_eq!(c.take_unwritten(), None, "nothing moved since");
        c.apply(&event("accepted", "water"), T0 + 1, &List).unwrap();
        c.apply(&event("in_progress", "water"), T0 + 2, &List)
            .unwrap();
        let next = c.take_unwritten().unwrap();
        assert_eq!((next.from, statuses(&next).len()), (3, 2));
        assert_eq!(c.history_len, 5);
        assert_eq!(
            c.last.as_ref().map(|h| h.status.as_str()),
            Some("in_progress")
        );
        // A refused event leaves nothing to write.
        assert!(c.apply(&event("accepted", "water"), T0 + 3, &List).is_err());
        assert_eq!(c.take_unwritten(), None);
        // What is written of the lifecycle carries no history, only its count.
        let written = serde_json::to_value(&c).unwrap();
        assert!(written.get("history").is_none() && written.get("unwritten").is_none());
        let read: Lifecycle = serde_json::from_value(written).unwrap();
        assert_eq!(read, c);
    }

    #[test]
    fn a_returned_case_remembers_who_returned_it_until_it_is_dispatched_again() {
        let mut c = opened();
        assert_eq!(c.returned_by, None);
        c.apply(&event("returned", "water"), T0 + 1, &List).unwrap();
        assert_eq!(c.returned_by.as_deref(), Some("water"));
        let mut assign = event("reassigned", CENTER);
        assign.to_department = Some("housing".into());
        c.apply(&assign, T0 + 2, &List).unwrap();
        assert_eq!(c.returned_by, None);
        assert_eq!(c.department, "housing");
    }

    #[test]
    fn records_with_the_whole_history_inside_are_read_as_its_count_and_last_entry() {
        let mut c = opened();
        c.apply(&event("returned", "water"), T0 + 1, &List).unwrap();
        let entries = c.take_unwritten().unwrap().entries;
        let mut legacy = serde_json::to_value(&c).unwrap();
        let o = legacy.as_object_mut().unwrap();
        for k in ["history_len", "last", "returned_by"] {
            o.remove(k);
        }
        o.insert("history".into(), serde_json::to_value(&entries).unwrap());
        let read: Lifecycle = serde_json::from_value(legacy).unwrap();
        assert_eq!(read.history_len, 4);
        assert_eq!(read.last, entries.last().cloned().map(Box::new));
        assert_eq!(read.returned_by.as_deref(), Some("water"));
        assert_eq!(read, c);
    }
}
