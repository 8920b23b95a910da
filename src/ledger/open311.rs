//! Open311 GeoReport v2 status queries, answered from the ledger: Open311 clients poll
//! instead of receiving callbacks. `service_request_id` is the petition id intake
//! returned. The answers are public by the spec's design, so they carry no personal
//! data: descriptions and notes are scrubbed, reporters are never named.

use super::store::Open311Filter;
use super::view::CaseView;
use super::Ledger;
use crate::intake::IntakeContext;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use gateway_connectors::callback::scrub::scrub;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

fn errors(status: StatusCode, description: &str) -> Response {
    (
        status,
        Json(json!([{"code": status.as_u16(), "description": description}])),
    )
        .into_response()
}

/// Scrubbed, or left out when the scrubber cannot run (fail closed).
fn public(text: Option<&str>) -> Value {
    text.and_then(|t| scrub(t, None))
        .map_or(Value::Null, Value::String)
}

fn unix(v: &Value) -> Value {
    v.as_i64()
        .and_then(|t| chrono::DateTime::from_timestamp(t, 0))
        .map_or(Value::Null, |t| Value::String(t.to_rfc3339()))
}

/// One service request: the petition `petition_id` and the case it is in.
fn service_request(
    petition_id: &str,
    case: &CaseView,
    departments: &dyn Fn(&str) -> Option<String>,
) -> Value {
    let report = case
        .reports
        .iter()
        .find(|r| r["petition_id"] == petition_id);
    let petition = case.petition.as_ref();
    let first = case.case["case_id"] == petition_id;
    let phase = case.phase();
    let history = &case.history;
    let last = history.last();
    // The department's latest words (its result), not the gateway's own notes.
    let note = history
        .iter()
        .rev()
        .filter(|h| h["by"] != "gateway")
        .find_map(|h| h["note"].as_str())
        .map(str::to_string);
    let status_notes = match (last.and_then(|h| h["status"].as_str()), note) {
        (Some(s), Some(n)) => Some(format!("{s}; {n}")),
        (Some(s), None) => Some(s.to_string()),
        _ => None,
    };
    let point = petition.filter(|_| first).map(|p| &p["location"]["point"]);
    // Any citizen's name a department's note repeats.
    let names: Vec<String> = case
        .lifecycle
        .as_ref()
        .and_then(|l| l["sources"].as_array())
        .map(|s| {
            s.iter()
                .filter_map(|s| s["reporter_name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let status_notes = status_notes.map(|n| crate::lifecycle::notify::mask_names(&n, &names));
    json!({
        "service_request_id": petition_id,
        "status": if matches!(phase, "closed" | "rejected") { "closed" } else { "open" },
        "status_notes": public(status_notes.as_deref()),
        "service_code": case.case["routing"]["category"],
        "description": public(report.and_then(|r| r["text"].as_str())),
        "agency_responsible": departments(case.department()),
        "requested_datetime": report.map_or(Value::Null, |r| r["reported_at"].clone()),
        "updated_datetime": last.map_or(Value::Null, |h| unix(&h["at"])),
        "expected_datetime": case.lifecycle.as_ref().map_or(Value::Null, |l| unix(&l["deadline"])),
        "address": public(report.and_then(|r| r["address"].as_str())),
        "lat": point.map_or(Value::Null, |p| p["lat"].clone()),
        "long": point.map_or(Value::Null, |p| p["lon"].clone()),
    })
}

fn department_names(ctx: &IntakeContext) -> impl Fn(&str) -> Option<String> {
    let active = ctx.list.borrow().clone();
    move |code: &str| {
        active
            .router
            .list()
            .department(code)
            .map(|d| d.name.clone())
    }
}

/// Requests of the Open311 channel only: another channel's petitions are not this
/// channel's to see.
async fn open311_request(
    ledger: &Ledger,
    id: &str,
) -> Result<Option<CaseView>, super::LedgerError> {
    let store = ledger.store();
    let Some(case_id) = store.case_of(id).await? else {
        return Ok(None);
    };
    let case = store.case(&case_id).await?;
    Ok(case.filter(|c| {
        c.reports
            .iter()
            .any(|r| r["petition_id"] == id && r["channel"] == "open311")
    }))
}

fn unavailable(e: &super::LedgerError) -> Response {
    tracing::warn!(error = %e, "ledger query failed");
    errors(
        StatusCode::SERVICE_UNAVAILABLE,
        "the ledger is unavailable; try again",
    )
}

fn no_ledger() -> Response {
    errors(
        StatusCode::SERVICE_UNAVAILABLE,
        "status queries are not served here",
    )
}

pub async fn one(State(ctx): State<Arc<IntakeContext>>, Path(file): Path<String>) -> Response {
    let Some(id) = file.strip_suffix(".json") else {
        return errors(StatusCode::NOT_FOUND, "only the .json format is served");
    };
    let Some(ledger) = &ctx.ledger else {
        return no_ledger();
    };
    let names = department_names(&ctx);
    match open311_request(ledger, id).await {
        Ok(Some(case)) => Json(json!([service_request(id, &case, &names)])).into_response(),
        Ok(None) => errors(StatusCode::NOT_FOUND, &format!("no service request {id}")),
        Err(e) => unavailable(&e),
    }
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    service_request_id: Option<String>,
    service_code: Option<String>,
    start_date: Option<String>,
    end_date: Option<String>,
    status: Option<String>,
}

pub async fn list(
    State(ctx): State<Arc<IntakeContext>>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(q)) = query else {
        return errors(StatusCode::BAD_REQUEST, "bad query");
    };
    let date = |v: &Option<String>, name: &str| match v.as_deref() {
        None => Ok(None),
        Some(t) => chrono::DateTime::parse_from_rfc3339(t)
            .map(Some)
            .map_err(|_| format!("{name}: not a W3C date-time")),
    };
    let (start, end) = match (
        date(&q.start_date, "start_date"),
        date(&q.end_date, "end_date"),
    ) {
        (Ok(s), Ok(e)) => (s, e),
        (Err(m), _) | (_, Err(m)) => return errors(StatusCode::BAD_REQUEST, &m),
    };
    if let Some(s) = q
        .status
        .as_deref()
        .filter(|s| !matches!(*s, "open" | "closed"))
    {
        return errors(
            StatusCode::BAD_REQUEST,
            &format!("status: {s} is neither open nor closed"),
        );
    }
    let Some(ledger) = &ctx.ledger else {
        return no_ledger();
    };
    let names = department_names(&ctx);
    let filter = Open311Filter {
        service_code: q.service_code.clone(),
        start: start.map(|s| s.timestamp()),
        end: end.map(|e| e.timestamp()),
        closed: q.status.as_deref().map(|s| s == "closed"),
    };
    let ids: Vec<String> = match &q.service_request_id {
        Some(list) => list
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .take(MAX_REQUESTS)
            .collect(),
        // The spec's cap on one answer.
        None => match ledger
            .store()
            .open311_requests(&filter, MAX_REQUESTS as u32)
            .await
        {
            Ok(ids) => ids,
            Err(e) => return unavailable(&e),
        },
    };
    let mut out = Vec::new();
    for id in &ids {
        match open311_request(ledger, id).await {
            Ok(Some(case)) => out.push(service_request(id, &case, &names)),
            Ok(None) => {}
            Err(e) => return unavailable(&e),
        }
    }
    // Ids asked for by name pass the same filters as a search.
    out.retain(|r| {
        let at = r["requested_datetime"]
            .as_str()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok());
        q.status.as_deref().is_none_or(|s| r["status"] == s)
            && q.service_code
                .as_deref()
                .is_none_or(|c| r["service_code"] == c)
            && start.is_none_or(|s| at.is_some_and(|a| a >= s))
            && end.is_none_or(|e| at.is_some_and(|a| a <= e))
    });
    out.sort_by(|a, b| {
        b["requested_datetime"]
            .as_str()
            .cmp(&a["requested_datetime"].as_str())
    });
    Json(Value::Array(out)).into_response()
}

/// The spec's cap on one answer.
const MAX_REQUESTS: usize = 1000;
