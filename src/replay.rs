//! `petition-gateway replay`: runs intake mapping, normalization and routing in-process
//! over a JSONL file in the sample's format (`channel` + `payload`), with the same code
//! as the live pipeline and no Kafka or HTTP. One JSON line out per line in.

use crate::config::Loaded;
use crate::dispatch::router::Router;
use crate::normalize::normalize;
use crate::normalize::schema::Schemas;
use gateway_connectors::map_payload;
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
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

pub fn replay(
    loaded: Loaded,
    input: impl BufRead,
    mut output: impl Write,
) -> Result<ReplayStats, ReplayError> {
    let schemas = Schemas::compile()?;
    let connectors: HashMap<&str, _> = loaded
        .connectors
        .iter()
        .map(|c| (c.definition.name(), &c.definition))
        .collect();
    let router = Router::new(loaded.responsibility.clone());
    let mut state = ReplayState {
        seen: HashSet::new(),
        deduper: crate::dispatch::dedupe::Deduper::new(loaded.settings.dedupe.settings()),
    };
    let mut stats = ReplayStats::default();
    for (n, line) in input.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        stats.lines += 1;
        let out = match replay_line(
            &line,
            n + 1,
            &connectors,
            &loaded,
            &schemas,
            &router,
            &mut state,
        ) {
            Ok(v) => {
                stats.accepted += 1;
                v
            }
            Err(v) => {
                stats.rejected += 1;
                v
            }
        };
        writeln!(output, "{out}")?;
    }
    Ok(stats)
}

/// What replay remembers across lines: petition ids seen and open cases.
struct ReplayState {
    seen: HashSet<String>,
    deduper: crate::dispatch::dedupe::Deduper,
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

fn replay_line(
    line: &str,
    line_no: usize,
    connectors: &HashMap<&str, &gateway_connectors::ConnectorDefinition>,
    loaded: &Loaded,
    schemas: &Schemas,
    router: &Router,
    state: &mut ReplayState,
) -> Result<Value, Value> {
    let (seen, deduper) = (&mut state.seen, &mut state.deduper);
    let input: Value = serde_json::from_str(line)
        .map_err(|e| json!({"seq": line_no, "error": format!("line {line_no}: not JSON: {e}")}))?;
    let seq = input.get("seq").cloned().unwrap_or(json!(line_no));
    let fail = |msg: String| json!({"seq": seq, "error": msg});
    let channel = input
        .get("channel")
        .and_then(Value::as_str)
        .ok_or_else(|| fail("no channel".into()))?;
    let def = connectors
        .get(channel)
        .ok_or_else(|| fail(format!("no connector for channel {channel:?}")))?;
    let payload = native_payload(&input).map_err(|e| fail(format!("channel {channel:?}: {e}")))?;
    let mapped = map_payload(def, &payload).map_err(|errors| {
        fail(
            errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; "),
        )
    })?;
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
        &loaded.regions,
        schemas,
    )
    .map_err(|errors| {
        fail(
            errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; "),
        )
    })?;
    let resent = !seen.insert(petition.id.clone());
    let decision = router.route(&petition);
    let at = chrono::DateTime::parse_from_rfc3339(&petition.reported_at)
        .map(|t| t.timestamp())
        .unwrap_or_default();
    let merge = if resent {
        None
    } else {
        deduper.decide_and_apply(
            &petition.id,
            &crate::dispatch::dedupe::Report {
                region: &petition.location.region.code,
                department: &decision.department,
                at_unix: at,
                text: &petition.text,
                address: petition.location.address.as_deref(),
                problem: router.problem_words(&decision),
            },
        )
    };
    let case_id = merge
        .as_ref()
        .map_or(petition.id.clone(), |m| m.case_id.clone());
    Ok(json!({
        "seq": seq,
        "petition_id": petition.id,
        "case_id": case_id,
        "merged": resent || merge.is_some(),
        "merge": merge,
        "department": decision.department,
        "escalated": decision.escalate,
        "category": decision.category,
        "region": petition.location.region.code,
        "rule": decision.rule,
        "matched": decision.matched,
    }))
}
