//! Quarantine: the raw copy of every rejected request, with its reasons, on
//! `petitions.invalid`, so nothing is dropped silently and an operator can replay it.

use super::IntakeContext;
use crate::kafka::cloudevents::{new_span_id, new_trace_id, CloudEvent};
use gateway_connectors::{AnswerClass, FieldError};
use serde::Serialize;

/// Raw bodies are kept up to this size; a larger (refused) body is cut, and says so.
const MAX_QUARANTINED_BODY: usize = 256 * 1024;

#[derive(Serialize)]
pub struct QuarantineRecord<'a> {
    pub channel: &'a str,
    pub received_at: &'a str,
    pub class: &'a str,
    pub retryable: bool,
    pub errors: &'a [FieldError],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_type: Option<&'a str>,
    /// The body as received (lossy UTF-8 when it was not valid UTF-8).
    pub body: String,
    pub body_truncated: bool,
    pub body_lossy: bool,
}

pub struct Rejected<'a> {
    pub channel: &'a str,
    pub received_at: &'a str,
    pub class: AnswerClass,
    pub errors: &'a [FieldError],
    pub source_id: Option<&'a str>,
    pub content_type: Option<&'a str>,
    pub body: &'a [u8],
    pub truncated: bool,
}

/// Publishes the quarantined copy and waits for Kafka. A failure is logged, not hidden:
/// the sender still gets its error answer either way.
pub async fn quarantine(ctx: &IntakeContext, r: Rejected<'_>) {
    let cut = r.body.len() > MAX_QUARANTINED_BODY;
    let body = &r.body[..r.body.len().min(MAX_QUARANTINED_BODY)];
    let (text, lossy) = match std::str::from_utf8(body) {
        Ok(s) => (s.to_string(), false),
        Err(_) => (String::from_utf8_lossy(body).into_owned(), true),
    };
    let record = QuarantineRecord {
        channel: r.channel,
        received_at: r.received_at,
        class: r.class.as_str(),
        retryable: r.class.retryable(),
        errors: r.errors,
        source_id: r.source_id,
        content_type: r.content_type,
        body: text,
        body_truncated: r.truncated || cut,
        body_lossy: lossy,
    };
    let payload = match serde_json::to_vec(&record) {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(channel = r.channel, error = %e, "cannot encode quarantine record");
            return;
        }
    };
    let id = uuid::Uuid::new_v4().to_string();
    let source = format!("/petition-gateway/intake/{}", r.channel);
    let headers = CloudEvent {
        id: &id,
        source: &source,
        event_type: "gov.petition.rejected.v1",
        time: r.received_at,
        subject: r.source_id,
        trace_id: &new_trace_id(),
        span_id: &new_span_id(),
    }
    .headers();
    let topic = ctx.topics.name(&ctx.topics.invalid);
    if let Err(e) = ctx
        .publisher
        .publish(&topic, r.channel, &payload, headers)
        .await
    {
        tracing::error!(channel = r.channel, class = r.class.as_str(), error = %e,
            "rejected request could not be quarantined");
    }
}
