//! The ledger over HTTP: `GET /cases/{id}` and `GET /cases?department=&status=&overdue=
//! &since=&page=&per_page=`. Every request names its caller with `X-Api-Key`: the center's
//! key sees every case, a department's key only the cases routed to it now (another
//! department's case answers 404, as if it did not exist).

use super::view::{CaseView, SharedLedger};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The caller a key belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    Center,
    Department(String),
}

pub struct LedgerApi {
    ledger: SharedLedger,
    /// Department code (or `center`) → its key.
    keys: BTreeMap<String, String>,
}

pub fn routes(ledger: SharedLedger, keys: BTreeMap<String, String>) -> Router {
    let api = Arc::new(LedgerApi { ledger, keys });
    Router::new()
        .route("/cases", get(list))
        .route("/cases/{id}", get(one))
        .with_state(api)
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({"error": message}))).into_response()
}

impl LedgerApi {
    fn caller(&self, headers: &HeaderMap) -> Option<Caller> {
        let given = headers.get("x-api-key")?.to_str().ok()?;
        self.keys.iter().find_map(|(who, key)| {
            let same = !key.is_empty()
                && subtle::ConstantTimeEq::ct_eq(key.as_bytes(), given.as_bytes()).into();
            same.then(|| {
                if who == crate::lifecycle::CENTER {
                    Caller::Center
                } else {
                    Caller::Department(who.clone())
                }
            })
        })
    }
}

fn visible(caller: &Caller, case: &CaseView) -> bool {
    match caller {
        Caller::Center => true,
        Caller::Department(d) => case.department() == d,
    }
}

fn summary(id: &str, c: &CaseView) -> Value {
    let l = c.lifecycle.as_ref();
    json!({
        "case_id": id,
        "department": c.department(),
        "status": c.phase(),
        "overdue": c.overdue(),
        "escalated": l.map_or(c.case["escalated"].clone(), |l| l["escalated"].clone()),
        "deadline": l.map_or(Value::Null, |l| unix_to_rfc3339(&l["deadline"])),
        "opened_at": c.case["dispatched_at"],
        "region": c.case["region"],
        "reports": c.reports.len(),
    })
}

fn unix_to_rfc3339(v: &Value) -> Value {
    v.as_i64()
        .and_then(|t| chrono::DateTime::from_timestamp(t, 0))
        .map_or(Value::Null, |t| Value::String(t.to_rfc3339()))
}

async fn one(
    State(api): State<Arc<LedgerApi>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let Some(caller) = api.caller(&headers) else {
        return error(StatusCode::UNAUTHORIZED, "a valid X-Api-Key is required");
    };
    let Ok(ledger) = api.ledger.read() else {
        return error(StatusCode::SERVICE_UNAVAILABLE, "the ledger is unavailable");
    };
    let Some(case) = ledger
        .case(&id)
        .filter(|c| visible(&caller, c) && !c.case.is_null())
    else {
        return error(StatusCode::NOT_FOUND, "no such case");
    };
    let mut record = case.case.clone();
    if let Some(o) = record.as_object_mut() {
        o.remove("seed"); // the deduper's working copy, not the ledger's business
        o.remove("type");
    }
    let mut callbacks: Vec<&Value> = case.callbacks.values().collect();
    callbacks.sort_by(|a, b| a["finished_at"].as_str().cmp(&b["finished_at"].as_str()));
    let mut body = summary(&id, case);
    body["case"] = record;
    body["routing"] = case.case["routing"].clone();
    body["reports"] = Value::Array(case.reports.clone());
    body["petition"] = case.petition.clone().unwrap_or(Value::Null);
    if let Some(l) = &case.lifecycle {
        body["history"] = l["history"].clone();
        body["sources"] = l["sources"].clone();
    }
    body["callbacks"] = json!(callbacks);
    Json(body).into_response()
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    department: Option<String>,
    status: Option<String>,
    overdue: Option<bool>,
    /// RFC 3339: cases opened at or after.
    since: Option<String>,
    page: Option<usize>,
    per_page: Option<usize>,
}

async fn list(
    State(api): State<Arc<LedgerApi>>,
    headers: HeaderMap,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Some(caller) = api.caller(&headers) else {
        return error(StatusCode::UNAUTHORIZED, "a valid X-Api-Key is required");
    };
    let Ok(Query(q)) = query else {
        return error(
            StatusCode::BAD_REQUEST,
            "query: department, status, overdue (true|false), since (RFC 3339), page, per_page",
        );
    };
    let since = match q.since.as_deref().map(chrono::DateTime::parse_from_rfc3339) {
        None => None,
        Some(Ok(t)) => Some(t),
        Some(Err(_)) => return error(StatusCode::BAD_REQUEST, "since: not an RFC 3339 time"),
    };
    let per_page = q.per_page.unwrap_or(50).clamp(1, 500);
    let page = q.page.unwrap_or(1).max(1);
    let Ok(ledger) = api.ledger.read() else {
        return error(StatusCode::SERVICE_UNAVAILABLE, "the ledger is unavailable");
    };
    let mut hits: Vec<(&String, &CaseView)> = ledger
        .cases()
        .filter(|(_, c)| !c.case.is_null() && visible(&caller, c))
        .filter(|(_, c)| q.department.as_deref().is_none_or(|d| c.department() == d))
        .filter(|(_, c)| q.status.as_deref().is_none_or(|s| c.phase() == s))
        .filter(|(_, c)| q.overdue.is_none_or(|o| c.overdue() == o))
        .filter(|(_, c)| {
            since.is_none_or(|s| {
                c.case["dispatched_at"]
                    .as_str()
                    .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                    .is_some_and(|t| t >= s)
            })
        })
        .collect();
    // Oldest first, so paging is stable while new cases arrive.
    hits.sort_by(|a, b| {
        (a.1.case["dispatched_at"].as_str(), a.0).cmp(&(b.1.case["dispatched_at"].as_str(), b.0))
    });
    let total = hits.len();
    let cases: Vec<Value> = hits
        .iter()
        .skip((page - 1).saturating_mul(per_page))
        .take(per_page)
        .map(|(id, c)| summary(id, c))
        .collect();
    Json(json!({"cases": cases, "page": page, "per_page": per_page, "total": total}))
        .into_response()
}
