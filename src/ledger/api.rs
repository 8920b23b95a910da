//! The ledger over HTTP: `GET /cases/{id}` and `GET /cases?department=&status=&overdue=
//! &since=&until=&region=&category=&place=&page=&per_page=` (`total` counts up to
//! 10,000 cases; `total_capped` says there are more). Every request names its caller with `X-Api-Key`: the center's
//! key sees every case, a department's key only the cases routed to it now (another
//! department's case answers 404, as if it did not exist).

use super::store::{CaseFilter, CaseSummary, COUNT_CAP};
use super::view::CaseView;
use super::Ledger;
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
    ledger: Ledger,
    /// Department code (or `center`) → its key.
    keys: BTreeMap<String, String>,
}

pub fn routes(ledger: Ledger, keys: BTreeMap<String, String>) -> Router {
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

fn summary(c: &CaseSummary) -> Value {
    json!({
        "case_id": c.case_id,
        "department": c.department,
        "status": c.phase,
        "overdue": c.overdue,
        "escalated": c.escalated,
        "deadline": c.deadline.map_or(Value::Null, |d| unix_to_rfc3339(&json!(d))),
        "opened_at": c.opened_at,
        "region": c.region,
        "reports": c.reports,
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
    let case = match api.ledger.store().case(&id).await {
        Ok(c) => c,
        Err(e) => return unavailable(&e),
    };
    let Some(case) = case.filter(|c| visible(&caller, c) && !c.case.is_null()) else {
        return error(StatusCode::NOT_FOUND, "no such case");
    };
    let mut record = case.case.clone();
    if let Some(o) = record.as_object_mut() {
        o.remove("seed"); // the deduper's working copy, not the ledger's business
        o.remove("type");
    }
    let mut callbacks: Vec<&Value> = case.callbacks.values().collect();
    callbacks.sort_by(|a, b| a["finished_at"].as_str().cmp(&b["finished_at"].as_str()));
    let l = case.lifecycle.as_ref();
    let mut body = json!({
        "case_id": id,
        "department": case.department(),
        "status": case.phase(),
        "overdue": case.overdue(),
        "escalated": l.map_or(case.case["escalated"].clone(), |l| l["escalated"].clone()),
        "deadline": l.map_or(Value::Null, |l| unix_to_rfc3339(&l["deadline"])),
        "opened_at": case.case["dispatched_at"],
        "region": case.case["region"],
        "reports": case.reports.len(),
    });
    body["case"] = record;
    body["routing"] = case.case["routing"].clone();
    body["reports"] = Value::Array(case.reports.clone());
    body["petition"] = case.petition.clone().unwrap_or(Value::Null);
    if let Some(l) = &case.lifecycle {
        body["history"] = json!(case.history);
        body["sources"] = l["sources"].clone();
    }
    body["callbacks"] = json!(callbacks);
    Json(body).into_response()
}

/// The database failed: the caller may try again.
fn unavailable(e: &super::LedgerError) -> Response {
    tracing::warn!(error = %e, "ledger query failed");
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "the ledger is unavailable; try again",
    )
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    department: Option<String>,
    status: Option<String>,
    overdue: Option<bool>,
    /// RFC 3339: cases opened at or after.
    since: Option<String>,
    /// RFC 3339: cases opened before.
    until: Option<String>,
    /// A street or county code.
    region: Option<String>,
    category: Option<String>,
    /// The beginning of the address the case's first report named.
    place: Option<String>,
    page: Option<u32>,
    per_page: Option<u32>,
}

const LIST_QUERY: &str = "query: department, status, overdue (true|false), since and until \
    (RFC 3339), region, category, place (an address prefix), page, per_page";

fn time(value: Option<&str>, name: &str) -> Result<Option<i64>, String> {
    match value.map(chrono::DateTime::parse_from_rfc3339) {
        None => Ok(None),
        Some(Ok(t)) => Ok(Some(t.timestamp())),
        Some(Err(_)) => Err(format!("{name}: not an RFC 3339 time")),
    }
}

async fn list(
    State(api): State<Arc<LedgerApi>>,
    headers: HeaderMap,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Some(caller) = api.caller(&headers) else {
        return error(StatusCode::UNAUTHORIZED, "a valid X-Api-Key is required");
    };
    let q = match query {
        Ok(Query(q)) => q,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("{}; {LIST_QUERY}", e.body_text()),
            )
        }
    };
    let (since, until) = match (
        time(q.since.as_deref(), "since"),
        time(q.until.as_deref(), "until"),
    ) {
        (Ok(s), Ok(u)) => (s, u),
        (Err(m), _) | (_, Err(m)) => return error(StatusCode::BAD_REQUEST, &m),
    };
    let per_page = q.per_page.unwrap_or(50).clamp(1, 500);
    let page = q.page.unwrap_or(1).clamp(1, 1_000_000);
    let department = match (&caller, q.department) {
        (Caller::Center, d) => d,
        // A department sees its own cases: asking for another's finds none.
        (Caller::Department(own), Some(d)) if &d != own => {
            return Json(json!({"cases": [], "page": page, "per_page": per_page, "total": 0}))
                .into_response()
        }
        (Caller::Department(own), _) => Some(own.clone()),
    };
    let filter = CaseFilter {
        department,
        phase: q.status,
        overdue: q.overdue,
        since,
        until,
        region: q.region,
        category: q.category,
        place: q.place.filter(|p| !p.is_empty()),
    };
    match api.ledger.store().list(&filter, page, per_page).await {
        Ok((cases, total)) => {
            let cases: Vec<Value> = cases.iter().map(summary).collect();
            let capped = total > COUNT_CAP;
            Json(json!({"cases": cases, "page": page, "per_page": per_page,
                "total": total.min(COUNT_CAP), "total_capped": capped}))
            .into_response()
        }
        Err(e) => unavailable(&e),
    }
}
