//! Event routes of push connectors (the city app's satisfaction feedback): authenticated
//! like the connector's petitions, checked for the fields the connector requires, and
//! published to `petitions.feedback` for the responder, answered only after Kafka's ack.

use super::push::{now_rfc3339, respond, Admitted, PushChannel, Request};
use super::IntakeContext;
use crate::kafka::cloudevents::{new_span_id, new_trace_id, CloudEvent};
use crate::petition::petition_id;
use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use gateway_connectors::{AnswerClass, FieldError};
use serde_json::{json, Value};
use std::sync::Arc;

pub async fn receive(
    State((ctx, channel, index)): State<(Arc<IntakeContext>, Arc<PushChannel>, usize)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Some(route) = channel.push.events.get(index) else {
        return respond(channel.push.answer.error(
            AnswerClass::Invalid,
            &[FieldError::new("/", "unknown event route")],
            "",
        ));
    };
    let req = Request {
        ctx: &ctx,
        channel: &channel,
        headers: &headers,
        received_at: now_rfc3339(),
    };
    let Admitted { bytes, payload } = match req.admit(body).await {
        Ok(a) => a,
        Err(response) => return response,
    };
    let mut errors: Vec<FieldError> = route
        .required
        .iter()
        .filter(|p| payload.pointer(p).is_none_or(Value::is_null))
        .map(|p| FieldError::new(p.clone(), "is required"))
        .collect();
    let source_id = match payload.pointer(&route.source_id) {
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    if source_id.is_none() && !errors.iter().any(|e| e.path == route.source_id) {
        errors.push(FieldError::new(
            route.source_id.clone(),
            "must be the id of a petition",
        ));
    }
    let Some(source_id) = source_id.filter(|_| errors.is_empty()) else {
        return req
            .reject(AnswerClass::Invalid, errors, &bytes, false, None)
            .await;
    };
    let name = channel.definition.name();
    let petition = petition_id(name, &source_id);
    let record = json!({
        "event_type": route.event_type,
        "channel": name,
        "source_id": source_id,
        "petition_id": petition,
        "received_at": req.received_at,
        "payload": payload,
    });
    let event_id = uuid::Uuid::new_v4().to_string();
    let source = format!("/petition-gateway/intake/{name}");
    let event_type = format!("gov.petition.{}.v1", route.event_type);
    let headers = CloudEvent {
        id: &event_id,
        source: &source,
        event_type: &event_type,
        time: &req.received_at,
        subject: Some(&petition),
        trace_id: &new_trace_id(),
        span_id: &new_span_id(),
    }
    .headers();
    let topic = ctx.topics.name(&ctx.topics.feedback);
    let bytes = serde_json::to_vec(&record).unwrap_or_default();
    match ctx
        .publisher
        .publish(&topic, &petition, &bytes, headers)
        .await
    {
        Ok(_) => respond(channel.push.answer.success(&petition, &source_id)),
        Err(e) => {
            tracing::error!(channel = name, error = %e, "event not stored; sender told to retry");
            let errors = vec![FieldError::new(
                "/",
                "the event could not be stored; send it again later",
            )];
            respond(
                channel
                    .push
                    .answer
                    .error(AnswerClass::Unavailable, &errors, &source_id),
            )
        }
    }
}
