//! `petition-gateway replay`: runs intake mapping, normalization and routing in-process
//! over a JSONL file in the sample's format (`channel` + `payload`), with the same code
//! as the live pipeline and no Kafka or HTTP. One JSON line out per line in.

use crate::config::Loaded;
use crate::dispatch::cases::{CaseState, DecisionContext, Outcome};
use crate::dispatch::learning::{Example, Learner};
use crate::dispatch::router::{Router, TRIAGE};
use crate::normalize::normalize;
use crate::normalize::schema::Schemas;
use crate::petition::Petition;
use gateway_connectors::map_payload;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::{BufRead, Write};

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("replay i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Schema(#[from] crate::normalize::schema::SchemaError),
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct ReplayStats {
    pub lines: usize,
    pub accepted: usize,
    pub rejected: usize,
}

/// The order `replay` decides the lines in. Live, petitions reach the dispatcher in the
/// order channels deliver them, which is not the order citizens reported them: the
/// orders other than `File` show whether cases depend on that.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReplayOrder {
    /// As the lines are in the file (the sample's: arrival at the channels).
    #[default]
    File,
    /// By the time the citizen reported it (ties: file order).
    Reported,
    /// The file backwards.
    Reverse,
    /// Each line delayed by a random time under `hours` after its arrival (`at`), as a
    /// channel that batches or a portal polled after an outage deliver. Seeded: the same
    /// seed, the same order.
    ShuffleHours { hours: u32, seed: u64 },
    /// A random order, as when a backlog is pushed at once from many connections.
    Shuffle { seed: u64 },
}

impl std::str::FromStr for ReplayOrder {
    type Err = String;

    /// `file`, `reported`, `reverse`, `shuffle[:SEED]`, or `shuffle-hours:N[:SEED]` (seed
    /// 1 by default).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || {
            format!("{s:?} is not an order: file, reported, reverse, shuffle[:SEED] or shuffle-hours:N[:SEED]")
        };
        match s {
            "file" => Ok(Self::File),
            "reported" => Ok(Self::Reported),
            "reverse" => Ok(Self::Reverse),
            "shuffle" => Ok(Self::Shuffle { seed: 1 }),
            _ if s.starts_with("shuffle:") => Ok(Self::Shuffle {
                seed: s["shuffle:".len()..].parse().map_err(|_| bad())?,
            }),
            _ => {
                let rest = s.strip_prefix("shuffle-hours:").ok_or_else(bad)?;
                let mut parts = rest.split(':');
                let hours = parts
                    .next()
                    .and_then(|h| h.parse().ok())
                    .filter(|h| *h > 0)
                    .ok_or_else(bad)?;
                let seed = match parts.next() {
                    Some(seed) => seed.parse().map_err(|_| bad())?,
                    None => 1,
                };
                if parts.next().is_some() {
                    return Err(bad());
                }
                Ok(Self::ShuffleHours { hours, seed })
            }
        }
    }
}

/// How `replay` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReplayOptions {
    pub order: ReplayOrder,
    /// Act as the command center: a new case the list (or the model) sent to triage, or
    /// to another department than its line's `label.department`, is assigned to that
    /// department right after the decision, as a `reassigned` event would, and the
    /// learned model learns it (see `crate::dispatch::learning`).
    pub center: bool,
}

/// What everything but the decision needs: the connectors, schemas and router.
struct Pipeline<'a> {
    connectors: HashMap<&'a str, &'a gateway_connectors::ConnectorDefinition>,
    loaded: &'a Loaded,
    schemas: Schemas,
    router: Router,
}

/// One input line, mapped and normalized (or why not), not yet decided.
struct Prepared {
    line_no: usize,
    seq: Value,
    /// Unix seconds it reached the channel (`at`).
    arrived: i64,
    /// Unix seconds it is delivered to the gateway in the order replayed (`arrived`, or
    /// later when shuffled).
    delivered: i64,
    /// The line's `label.department`: the department the center would assign.
    labeled_department: Option<String>,
    petition: Result<Petition, Value>,
}

/// Replays the file in file order (see [`replay_in_order`]).
pub fn replay(
    loaded: Loaded,
    input: impl BufRead,
    output: impl Write,
) -> Result<ReplayStats, ReplayError> {
    replay_in_order(loaded, input, output, ReplayOrder::File)
}

/// Maps, normalizes and decides every line, in `order`; writes one JSON line per input
/// line, in the order decided. File order streams; the others read the whole file first.
pub fn replay_in_order(
    loaded: Loaded,
    input: impl BufRead,
    output: impl Write,
    order: ReplayOrder,
) -> Result<ReplayStats, ReplayError> {
    replay_with(
        loaded,
        input,
        output,
        ReplayOptions {
            order,
            center: false,
        },
    )
}

/// Replays with `options` (order, and whether to act as the center).
pub fn replay_with(
    loaded: Loaded,
    input: impl BufRead,
    mut output: impl Write,
    options: ReplayOptions,
) -> Result<ReplayStats, ReplayError> {
    let order = options.order;
    let pipeline = Pipeline {
        connectors: loaded
            .connectors
            .iter()
            .map(|c| (c.definition.name(), &c.definition))
            .collect(),
        loaded: &loaded,
        schemas: Schemas::compile()?,
        router: Router::new(loaded.responsibility.clone()),
    };
    // One state for the whole file: the live dispatcher keeps one per inbound partition,
    // and partitions are keyed by region, which is also where cases are looked up.
    let mut state = CaseState::new(loaded.settings.dedupe.settings());
    let mut learner = options
        .center
        .then(|| Learner::new(loaded.settings.routing.learning.settings()));
    let mut stats = ReplayStats::default();
    let mut decide = |p: Prepared, out: &mut dyn Write| -> Result<(), ReplayError> {
        stats.lines += 1;
        let labeled = p.labeled_department;
        let result = p.petition.map(|petition| {
            pipeline.decide(
                &petition,
                p.seq,
                p.line_no,
                &mut state,
                learner.as_mut(),
                labeled.as_deref(),
            )
        });
        match result {
            Ok(v) => {
                stats.accepted += 1;
                writeln!(out, "{v}")?;
            }
            Err(v) => {
                stats.rejected += 1;
                writeln!(out, "{v}")?;
            }
        }
        Ok(())
    };
    let mut buffered = Vec::new();
    for (n, line) in input.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let prepared = pipeline.prepare(&line, n + 1);
        if order == ReplayOrder::File {
            decide(prepared, &mut output)?;
        } else {
            buffered.push(prepared);
        }
    }
    arrange(&mut buffered, order);
    // Reordered, a line reaches the gateway after those before it: its receipt time (the
    // processing clock that ages cases out) never runs backwards.
    let mut clock = i64::MIN;
    for mut prepared in buffered {
        clock = clock.max(prepared.delivered);
        if let (Ok(p), Some(t)) = (
            &mut prepared.petition,
            chrono::DateTime::from_timestamp(clock, 0),
        ) {
            let received = t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            // A channel that gives no reported time gets the receipt time, as live.
            if p.reported_at_unknown {
                p.reported_at.clone_from(&received);
            }
            p.received_at = received;
        }
        decide(prepared, &mut output)?;
    }
    Ok(stats)
}

/// Puts prepared lines (in file order) into `order`.
fn arrange(lines: &mut [Prepared], order: ReplayOrder) {
    match order {
        ReplayOrder::File => {}
        ReplayOrder::Reverse => lines.reverse(),
        ReplayOrder::Reported => {
            // Stable: lines that cannot be read keep their place among equals.
            lines.sort_by_key(|p| {
                p.petition
                    .as_ref()
                    .ok()
                    .and_then(|p| chrono::DateTime::parse_from_rfc3339(&p.reported_at).ok())
                    .map_or(p.arrived, |t| t.timestamp())
            });
        }
        ReplayOrder::ShuffleHours { hours, seed } => {
            use rand::{Rng, SeedableRng};
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let spread = i64::from(hours) * 3600;
            for p in lines.iter_mut() {
                p.delivered = p.arrived + rng.random_range(0..spread);
            }
            lines.sort_by_key(|p| p.delivered);
        }
        ReplayOrder::Shuffle { seed } => {
            use rand::seq::SliceRandom;
            use rand::SeedableRng;
            lines.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed));
        }
    }
}

impl Pipeline<'_> {
    fn prepare(&self, line: &str, line_no: usize) -> Prepared {
        let input: Result<Value, _> = serde_json::from_str(line);
        let (seq, arrived) = match &input {
            Ok(v) => (
                v.get("seq").cloned().unwrap_or(json!(line_no)),
                v.get("at")
                    .and_then(Value::as_str)
                    .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                    .map_or(line_no as i64, |t| t.timestamp()),
            ),
            Err(_) => (json!(line_no), line_no as i64),
        };
        let labeled_department = input.as_ref().ok().and_then(|v| {
            v.pointer("/label/department")
                .and_then(Value::as_str)
                .map(str::to_string)
        });
        let petition = match input {
            Ok(v) => self.petition(&v, &seq, line_no),
            Err(e) => {
                Err(json!({"seq": line_no, "error": format!("line {line_no}: not JSON: {e}")}))
            }
        };
        Prepared {
            line_no,
            seq,
            arrived,
            delivered: arrived,
            labeled_department,
            petition,
        }
    }

    fn petition(&self, input: &Value, seq: &Value, line_no: usize) -> Result<Petition, Value> {
        let fail = |msg: String| json!({"seq": seq, "error": msg});
        let channel = input
            .get("channel")
            .and_then(Value::as_str)
            .ok_or_else(|| fail("no channel".into()))?;
        let def = self
            .connectors
            .get(channel)
            .ok_or_else(|| fail(format!("no connector for channel {channel:?}")))?;
        let payload =
            native_payload(input).map_err(|e| fail(format!("channel {channel:?}: {e}")))?;
        let joined = |errors: Vec<String>| fail(errors.join("; "));
        let mapped = map_payload(def, &payload)
            .map_err(|errors| joined(errors.iter().map(ToString::to_string).collect()))?;
        let received_at = input
            .get("at")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| chrono::Utc::now().to_rfc3339());
        let trace_id = format!("{:032x}", line_no as u128 + 1);
        let (_, petition) = normalize(
            channel,
            &mapped,
            &received_at,
            &trace_id,
            &self.loaded.regions,
            &self.schemas,
        )
        .map_err(|errors| joined(errors.iter().map(ToString::to_string).collect()))?;
        Ok(petition)
    }

    fn decide(
        &self,
        petition: &Petition,
        seq: Value,
        line_no: usize,
        state: &mut CaseState,
        mut learner: Option<&mut Learner>,
        labeled: Option<&str>,
    ) -> Value {
        let router = &self.router;
        let outcome = state.decide(
            petition,
            router,
            &DecisionContext {
                seq: line_no as i64,
                list_version: "replay",
                instance: "replay",
                now: chrono::Utc::now(),
                learned: learner.as_deref(),
            },
        );
        state.apply(&outcome);
        // The center assigns a new case the decision got wrong, and the model learns it.
        let mut assigned = None;
        if let (Some(learner), Some(department), Outcome::Opened { case, .. }) =
            (learner.as_mut(), labeled, &outcome)
        {
            let decided = case.routing.department.as_str();
            if decided != department {
                let example = Example::assigned(
                    outcome.case_id(),
                    petition,
                    department,
                    (decided != TRIAGE).then_some(decided),
                    petition.received_at.clone(),
                );
                learner.learn(example, router.list());
                assigned = Some(department);
            }
        }
        let (merged, merge, routing) = match &outcome {
            Outcome::Resent { .. } => (true, None, router.route(petition)),
            Outcome::Opened { case, .. } => (false, None, case.routing.clone()),
            Outcome::Merged {
                report, routing, ..
            } => (true, report.merge.clone(), (**routing).clone()),
        };
        json!({
            "seq": seq,
            "petition_id": petition.id,
            "case_id": outcome.case_id(),
            "merged": merged,
            "merge": merge,
            "department": routing.department,
            "escalated": routing.escalate,
            "category": routing.category,
            "region": petition.location.region.code,
            "rule": routing.rule,
            "matched": routing.matched,
            "confidence": routing.learned.as_ref().map(|l| l.confidence),
            "nearest": routing.learned.as_ref().and_then(|l| l.nearest.first()).map(|n| n.overlap),
            "center_assigned": assigned,
        })
    }
}

/// The sample's `payload` (JSON, or form fields as JSON), or `payload_xml` (one item
/// element, read as its content).
pub fn native_payload(input: &Value) -> Result<Value, String> {
    if let Some(p) = input.get("payload") {
        return Ok(p.clone());
    }
    let xml = input
        .get("payload_xml")
        .and_then(Value::as_str)
        .ok_or("no payload or payload_xml")?;
    let doc = gateway_connectors::xml::xml_to_json(xml)?;
    doc.as_object()
        .and_then(|o| o.values().next().cloned())
        .ok_or_else(|| "empty XML payload".to_string())
}
