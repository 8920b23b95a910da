//! The generic push engine: one handler runs every push connector file.
//!
//! Order of checks: rate limit → body size → authentication → body format → mapping →
//! schema → publish. The sender's receipt is sent only after Kafka acknowledged the
//! petition. Every rejection but throttling is quarantined.

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
use gateway_connectors::auth::AuthInput;
use gateway_connectors::definition::{BodyFormat, PushIntake};
use gateway_connectors::{map_payload, Answer, AnswerClass, ConnectorDefinition, FieldError};
use governor::DefaultDirectRateLimiter;
use serde_json::Value;
use std::sync::Arc;

pub struct PushChannel {
    /// The push part of `definition`, kept apart so handlers need no `Option`.
    pub push: PushIntake,
    pub definition: ConnectorDefinition,
    pub secret: String,
    pub limiter: DefaultDirectRateLimiter,
}

pub fn respond(answer: Answer) -> Response {
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, Json(answer.body)).into_response()
}

pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Parses a body in the connector's format into JSON. Form fields become strings
/// (a repeated field keeps its last value).
pub fn decode_body(format: BodyFormat, bytes: &[u8]) -> Result<Value, FieldError> {
    match format {
        // Strictly: a key given twice is refused (see `strict_json`).
        BodyFormat::Json => super::strict_json::parse(bytes)
            .map_err(|refused| FieldError::new(refused.path, refused.message)),
        BodyFormat::Form => {
            if std::str::from_utf8(bytes).is_err() {
                return Err(FieldError::new("/", "form body is not UTF-8"));
            }
            let map: serde_json::Map<String, Value> = form_urlencoded::parse(bytes)
                .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
                .collect();
            Ok(Value::Object(map))
        }
    }
}

/// The body as it may be stored: without credential fields (Open311's `api_key`).
fn without_credentials(format: BodyFormat, bytes: &[u8], field: Option<&str>) -> Vec<u8> {
    let Some(field) = field else {
        return bytes.to_vec();
    };
    match format {
        BodyFormat::Form => form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form_urlencoded::parse(bytes).filter(|(k, _)| k != field))
            .finish()
            .into_bytes(),
        BodyFormat::Json => match serde_json::from_slice::<Value>(bytes) {
            Ok(Value::Object(mut m)) => {
                m.remove(field);
                serde_json::to_vec(&m).unwrap_or_default()
            }
            _ => bytes.to_vec(),
        },
    }
}

/// One request on its way through a push route.
pub struct Request<'a> {
    pub ctx: &'a IntakeContext,
    pub channel: &'a PushChannel,
    pub headers: &'a HeaderMap,
    pub received_at: String,
}

/// A request that passed the rate limit, size limit and authentication.
pub struct Admitted {
    pub bytes: Vec<u8>,
    pub payload: Value,
}

impl Request<'_> {
    fn name(&self) -> &str {
        self.channel.definition.name()
    }

    /// Answers in the channel's envelope and quarantines the raw request (without
    /// credentials).
    pub async fn reject(
        &self,
        class: AnswerClass,
        errors: Vec<FieldError>,
        body: &[u8],
        truncated: bool,
        source_id: Option<String>,
    ) -> Response {
        let push = &self.channel.push;
        let body = without_credentials(push.format, body, push.auth.credential_field());
        tracing::info!(
            channel = self.name(),
            class = class.as_str(),
            problems = errors.len(),
            source_id = source_id.as_deref().unwrap_or(""),
            "request rejected"
        );
        let content_type = self
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        quarantine(
            self.ctx,
            Rejected {
                channel: self.name(),
                received_at: &self.received_at,
                class,
                errors: &errors,
                source_id: source_id.as_deref(),
                content_type,
                body: &body,
                truncated,
            },
        )
        .await;
        respond(
            push.answer
                .error(class, &errors, source_id.as_deref().unwrap_or("")),
        )
    }

    /// Rate limit, size limit, authentication, body format — shared by every route of a
    /// push connector.
    pub async fn admit(&self, body: Body) -> Result<Admitted, Response> {
        let push = &self.channel.push;
        let name = self.name();
        if self.channel.limiter.check().is_err() {
            tracing::warn!(channel = name, "rate limit exceeded");
            let mut response = respond(push.answer.error(
                AnswerClass::RateLimited,
                &[FieldError::new("/", "too many requests; retry after 1 s")],
                "",
            ));
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            return Err(response);
        }

        let limit = push.max_body_bytes;
        let too_large = |size: String| {
            vec![FieldError::new(
                "/",
                format!("body of {size} is over the limit of {limit} bytes"),
            )]
        };
        let declared = self
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        if let Some(len) = declared.filter(|len| *len > limit) {
            let errors = too_large(format!("{len} bytes"));
            return Err(self
                .reject(AnswerClass::TooLarge, errors, &[], true, None)
                .await);
        }
        let bytes = match to_bytes(body, limit).await {
            Ok(b) => b.to_vec(),
            Err(_) => {
                let errors = too_large("more bytes".into());
                return Err(self
                    .reject(AnswerClass::TooLarge, errors, &[], true, None)
                    .await);
            }
        };

        let header_str = |n: &str| self.headers.get(n).and_then(|v| v.to_str().ok());
        let parsed = decode_body(push.format, &bytes);
        let auth_input = AuthInput {
            header: &header_str,
            body: &bytes,
            fields: parsed.as_ref().ok().and_then(Value::as_object),
            now_unix: chrono::Utc::now().timestamp(),
        };
        if let Err(e) = push.auth.verify(&auth_input, &self.channel.secret) {
            tracing::warn!(
                channel = name,
                location = e.location(),
                "authentication failed"
            );
            let errors = vec![FieldError::new(e.location(), e.to_string())];
            return Err(self
                .reject(AnswerClass::Unauthorized, errors, &bytes, false, None)
                .await);
        }
        let mut payload = match parsed {
            Ok(v) => v,
            Err(e) => {
                return Err(self
                    .reject(AnswerClass::Invalid, vec![e], &bytes, false, None)
                    .await)
            }
        };
        if let (Some(field), Value::Object(m)) = (push.auth.credential_field(), &mut payload) {
            m.remove(field);
        }
        Ok(Admitted { bytes, payload })
    }
}

pub async fn receive(
    State((ctx, channel)): State<(Arc<IntakeContext>, Arc<PushChannel>)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
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
    let def = &channel.definition;
    let source_hint = source_id_hint(def, &payload);
    let trace_id = headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .and_then(trace_id_from_traceparent)
        .unwrap_or_else(new_trace_id);
    match accept_payload(&ctx, def, &payload, &req.received_at, &trace_id).await {
        Ok(petition) => respond(
            channel
                .push
                .answer
                .success(&petition.id, &petition.source_id),
        ),
        Err(Refusal::Invalid(errors)) => {
            req.reject(AnswerClass::Invalid, errors, &bytes, false, source_hint)
                .await
        }
        Err(Refusal::Unavailable(source_id)) => {
            let errors = vec![FieldError::new(
                "/",
                "the petition could not be stored; send it again later",
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

/// Why a payload did not become a stored petition.
pub enum Refusal {
    /// The sender must fix it.
    Invalid(Vec<FieldError>),
    /// Kafka did not acknowledge it; the sender (or poller) tries again.
    Unavailable(String),
}

/// A petition ready for `petitions.inbound`: its record, CloudEvent headers and model.
pub struct PreparedPetition {
    pub record: Vec<u8>,
    pub headers: rdkafka::message::OwnedHeaders,
    pub petition: crate::petition::Petition,
}

/// Map → normalize → encode, without publishing. Shared by live intake and `import`.
pub fn prepare_petition(
    ctx: &IntakeContext,
    def: &ConnectorDefinition,
    payload: &Value,
    received_at: &str,
    trace_id: &str,
) -> Result<PreparedPetition, Vec<FieldError>> {
    let name = def.name();
    let mapped = map_payload(def, payload)?;
    let (value, petition) = normalize(
        name,
        &mapped,
        received_at,
        trace_id,
        &ctx.regions,
        &ctx.schemas,
    )?;
    let record = serde_json::to_vec(&value)
        .map_err(|e| vec![FieldError::new("/", format!("cannot encode petition: {e}"))])?;
    let source = format!("/petition-gateway/intake/{name}");
    let headers = CloudEvent {
        id: &petition.id,
        source: &source,
        event_type: "gov.petition.received.v1",
        time: received_at,
        subject: Some(&petition.id),
        trace_id,
        span_id: &new_span_id(),
    }
    .headers();
    Ok(PreparedPetition {
        record,
        headers,
        petition,
    })
}

/// Map → normalize → publish to `petitions.inbound`, waiting for Kafka's ack. Shared by
/// the push routes and the poller.
pub async fn accept_payload(
    ctx: &IntakeContext,
    def: &ConnectorDefinition,
    payload: &Value,
    received_at: &str,
    trace_id: &str,
) -> Result<crate::petition::Petition, Refusal> {
    let name = def.name();
    let PreparedPetition {
        record,
        headers,
        petition,
    } = prepare_petition(ctx, def, payload, received_at, trace_id).map_err(Refusal::Invalid)?;
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
            Ok(petition)
        }
        Err(e) => {
            // Never a receipt without Kafka's acknowledgement: the sender keeps the
            // petition and resends it; the same id comes back then.
            tracing::error!(channel = name, source_id = %petition.source_id, error = %e,
                retryable = e.retryable(), "petition not stored; sender told to retry");
            Err(Refusal::Unavailable(petition.source_id))
        }
    }
}

/// The sender's own id, when one can be read, so error answers can echo it.
pub fn source_id_hint(def: &ConnectorDefinition, payload: &Value) -> Option<String> {
    let rule = def.mapping.iter().find(|r| r.target == "source_id")?;
    if !rule.transforms.is_empty() && rule.from.as_deref() == Some("") {
        return None; // derived ids (content hashes) are not the sender's
    }
    match payload.pointer(rule.from.as_deref()?)? {
        Value::String(s) => Some(s.trim().to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}
