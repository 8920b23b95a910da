//! The generic push engine: one handler runs every push connector file.
//!
//! Order of checks: rate limit → body size → authentication → JSON → mapping → schema →
//! publish. The sender's receipt is sent only after Kafka acknowledged the petition.

use super::quarantine::{quarantine, Rejected};
use super::IntakeContext;
use crate::kafka::cloudevents::{new_span_id, new_trace_id, trace_id_from_traceparent, CloudEvent};
use crate::normalize::normalize;
use crate::petition::mask_phone;
use axum::body::{to_bytes, Body};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use gateway_connectors::{map_payload, Answer, AnswerClass, ConnectorDefinition, FieldError};
use governor::DefaultDirectRateLimiter;
use serde_json::Value;
use std::sync::Arc;

pub struct PushChannel {
    pub definition: ConnectorDefinition,
    pub secret: String,
    pub limiter: DefaultDirectRateLimiter,
}

fn respond(answer: Answer) -> Response {
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, Json(answer.body)).into_response()
}

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

pub async fn receive(
    State((ctx, channel)): State<(Arc<IntakeContext>, Arc<PushChannel>)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let def = &channel.definition;
    let name = def.name();
    let push = def.push();
    let answers = &push.answer;
    let received_at = now_rfc3339();

    if channel.limiter.check().is_err() {
        tracing::warn!(channel = name, "rate limit exceeded");
        let mut response = respond(answers.error(
            AnswerClass::RateLimited,
            &[FieldError::new("/", "too many requests; retry after 1 s")],
            "",
        ));
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return response;
    }

    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let reject = |class: AnswerClass,
                  errors: Vec<FieldError>,
                  body: Vec<u8>,
                  truncated: bool,
                  source_id: Option<String>| {
        let ctx = ctx.clone();
        let content_type = content_type.clone();
        let received_at = received_at.clone();
        async move {
            tracing::info!(
                channel = name,
                class = class.as_str(),
                problems = errors.len(),
                source_id = source_id.as_deref().unwrap_or(""),
                "request rejected"
            );
            quarantine(
                &ctx,
                Rejected {
                    channel: name,
                    received_at: &received_at,
                    class,
                    errors: &errors,
                    source_id: source_id.as_deref(),
                    content_type: content_type.as_deref(),
                    body: &body,
                    truncated,
                },
            )
            .await;
            respond(answers.error(class, &errors, source_id.as_deref().unwrap_or("")))
        }
    };

    let limit = push.max_body_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let too_large = |size: String| {
        vec![FieldError::new(
            "/",
            format!("body of {size} is over the limit of {limit} bytes"),
        )]
    };
    if let Some(len) = declared.filter(|len| *len > limit) {
        return reject(
            AnswerClass::TooLarge,
            too_large(format!("{len} bytes")),
            Vec::new(),
            true,
            None,
        )
        .await;
    }
    let bytes = match to_bytes(body, limit).await {
        Ok(b) => b.to_vec(),
        Err(_) => {
            return reject(
                AnswerClass::TooLarge,
                too_large("more bytes".into()),
                Vec::new(),
                true,
                None,
            )
            .await
        }
    };

    let header_str = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    if let Err(e) = push.auth.verify(header_str, &channel.secret) {
        tracing::warn!(channel = name, header = e.header(), "authentication failed");
        let errors = vec![FieldError::new(
            format!("header {}", e.header()),
            e.to_string(),
        )];
        return reject(AnswerClass::Unauthorized, errors, bytes, false, None).await;
    }

    let payload: Value = match serde_json::from_slice(&bytes) {
        Ok(v) => v,
        Err(e) => {
            let errors = vec![FieldError::new(
                "/",
                format!(
                    "malformed JSON at line {} column {}: {e}",
                    e.line(),
                    e.column()
                ),
            )];
            return reject(AnswerClass::Invalid, errors, bytes, false, None).await;
        }
    };
    let source_hint = source_id_hint(def, &payload);
    let mapped = match map_payload(def, &payload) {
        Ok(m) => m,
        Err(errors) => {
            return reject(AnswerClass::Invalid, errors, bytes, false, source_hint).await
        }
    };
    let trace_id = header_str("traceparent")
        .and_then(trace_id_from_traceparent)
        .unwrap_or_else(new_trace_id);
    let (value, petition) = match normalize(
        name,
        &mapped,
        &received_at,
        &trace_id,
        &ctx.regions,
        &ctx.schemas,
    ) {
        Ok(p) => p,
        Err(errors) => {
            return reject(AnswerClass::Invalid, errors, bytes, false, source_hint).await
        }
    };

    let record = match serde_json::to_vec(&value) {
        Ok(r) => r,
        Err(e) => {
            let errors = vec![FieldError::new("/", format!("cannot encode petition: {e}"))];
            return respond(answers.error(AnswerClass::Unavailable, &errors, &petition.source_id));
        }
    };
    let source = format!("/petition-gateway/intake/{name}");
    let headers = CloudEvent {
        id: &petition.id,
        source: &source,
        event_type: "gov.petition.received.v1",
        time: &received_at,
        subject: Some(&petition.id),
        trace_id: &trace_id,
        span_id: &new_span_id(),
    }
    .headers();
    let topic = ctx.topics.name(&ctx.topics.inbound);
    match ctx
        .publisher
        .publish(&topic, &petition.location.region.code, &record, headers)
        .await
    {
        Ok((partition, offset)) => {
            tracing::info!(
                channel = name,
                source_id = %petition.source_id,
                petition_id = %petition.id,
                region = %petition.location.region.code,
                phone = %mask_phone(petition.reporter.phone.as_deref().unwrap_or("")),
                partition, offset,
                "petition accepted"
            );
            respond(answers.success(&petition.id, &petition.source_id))
        }
        Err(e) => {
            // Never a receipt without Kafka's acknowledgement: the sender keeps the
            // petition and resends it; the same id comes back then.
            tracing::error!(channel = name, source_id = %petition.source_id, error = %e,
                retryable = e.retryable(), "petition not stored; sender told to retry");
            let errors = vec![FieldError::new(
                "/",
                "the petition could not be stored; send it again later",
            )];
            respond(answers.error(AnswerClass::Unavailable, &errors, &petition.source_id))
        }
    }
}

/// The sender's own id, when one can be read, so error answers can echo it.
fn source_id_hint(def: &ConnectorDefinition, payload: &Value) -> Option<String> {
    let rule = def.mapping.iter().find(|r| r.target == "source_id")?;
    match payload.pointer(rule.from.as_deref()?)? {
        Value::String(s) => Some(s.trim().to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}
