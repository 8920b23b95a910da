//! The dispatcher stage: a consumer group on `petitions.inbound` that routes each
//! petition to its department topic (or triage, plus escalations).
//!
//! This first version is at-least-once: a record's offset is stored only after every
//! output was acknowledged, so a crash re-delivers and never loses. A petition id seen
//! twice in one run (a channel's resend) is routed once. Durable dedupe and one Kafka
//! transaction for outputs + offsets come with the dedupe stage.

use super::router::{Router, RoutingDecision};
use crate::config::{DispatcherSettings, KafkaSettings, TopicSettings};
use crate::kafka::cloudevents::{new_span_id, CloudEvent};
use crate::kafka::{PublishError, Publisher};
use crate::petition::Petition;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Message};
use serde::Serialize;
use serde_json::Value;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    #[error("dispatcher consumer: {0}")]
    Consumer(#[from] rdkafka::error::KafkaError),
}

impl DispatchError {
    pub fn retryable(&self) -> bool {
        true
    }
}

/// What a department (or triage) receives.
#[derive(Serialize)]
pub struct DispatchRecord<'a> {
    /// One case per petition until near-duplicate merging lands.
    pub case_id: &'a str,
    pub petition: &'a Value,
    pub routing: &'a RoutingDecision,
    pub dispatched_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sla_hours: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deadline: Option<String>,
}

pub struct Dispatcher {
    consumer: Arc<StreamConsumer>,
    publisher: Publisher,
    router: Arc<Router>,
    topics: TopicSettings,
    seen: HashSet<String>,
}

impl Dispatcher {
    pub fn new(
        kafka: &KafkaSettings,
        settings: &DispatcherSettings,
        topics: TopicSettings,
        publisher: Publisher,
        router: Arc<Router>,
    ) -> Result<Self, DispatchError> {
        let consumer: StreamConsumer = crate::kafka::base_config(kafka)
            .set("group.id", &settings.group_id)
            .set("enable.auto.commit", "true")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("isolation.level", "read_committed")
            .create()?;
        consumer.subscribe(&[&topics.name(&topics.inbound)])?;
        Ok(Self {
            consumer: Arc::new(consumer),
            publisher,
            router,
            topics,
            seen: HashSet::new(),
        })
    }

    pub async fn run(mut self, cancel: CancellationToken) {
        let consumer = self.consumer.clone();
        loop {
            let message = tokio::select! {
                _ = cancel.cancelled() => break,
                m = consumer.recv() => m,
            };
            match message {
                Ok(m) => {
                    if self.handle(&m, &cancel).await {
                        if let Err(e) = consumer.store_offset_from_message(&m) {
                            tracing::error!(error = %e, "cannot store dispatcher offset");
                        }
                    } else {
                        break; // cancelled before the outputs were acknowledged
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "dispatcher consumer error");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
        let _ = tokio::task::spawn_blocking(move || {
            if let Err(e) = consumer.commit_consumer_state(CommitMode::Sync) {
                tracing::debug!(error = %e, "final dispatcher commit");
            }
        })
        .await;
        tracing::info!("dispatcher stopped");
    }

    /// Routes one record; returns false only when cancelled before it was done.
    async fn handle(&mut self, m: &BorrowedMessage<'_>, cancel: &CancellationToken) -> bool {
        let payload = m.payload().unwrap_or_default();
        let parsed = serde_json::from_slice::<Value>(payload).and_then(|v| {
            let p: Petition = serde_json::from_value(v.clone())?;
            Ok((v, p))
        });
        let (value, petition) = match parsed {
            Ok(x) => x,
            Err(e) => {
                let record = serde_json::json!({
                    "stage": "dispatcher", "class": "invalid",
                    "errors": [{"path": "/", "message": format!("not a petition.v1 record: {e}")}],
                    "topic": m.topic(), "partition": m.partition(), "offset": m.offset(),
                    "body": String::from_utf8_lossy(payload),
                });
                let topic = self.topics.name(&self.topics.invalid);
                let bytes = serde_json::to_vec(&record).unwrap_or_default();
                return self
                    .publish_until_done(&topic, "dispatcher", &bytes, None, cancel)
                    .await;
            }
        };
        if !self.seen.insert(petition.id.clone()) {
            tracing::info!(petition_id = %petition.id, "resent petition already dispatched");
            return true;
        }

        let decision = self.router.route(&petition);
        let now = chrono::Utc::now();
        let sla_hours = self
            .router
            .list()
            .department(&decision.department)
            .map(|d| d.sla_hours);
        let record = DispatchRecord {
            case_id: &petition.id,
            petition: &value,
            routing: &decision,
            dispatched_at: now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            sla_hours,
            deadline: sla_hours.map(|h| {
                (now + chrono::Duration::hours(i64::from(h)))
                    .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
            }),
        };
        let bytes = match serde_json::to_vec(&record) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "cannot encode dispatch record");
                return true;
            }
        };
        let topic = match &decision.topic {
            Some(t) => self.topics.name(t),
            None => self.topics.name(&self.topics.triage),
        };
        if !self
            .publish_until_done(&topic, &petition.id, &bytes, Some(&petition), cancel)
            .await
        {
            self.seen.remove(&petition.id);
            return false;
        }
        if decision.escalate {
            let topic = self.topics.name(&self.topics.escalations);
            if !self
                .publish_until_done(&topic, &petition.id, &bytes, Some(&petition), cancel)
                .await
            {
                self.seen.remove(&petition.id);
                return false;
            }
        }
        tracing::info!(petition_id = %petition.id, department = %decision.department,
            rule = ?decision.rule, score = decision.score, escalate = decision.escalate, "dispatched");
        true
    }

    /// Retries with capped exponential backoff until Kafka acknowledges, or shutdown.
    async fn publish_until_done(
        &self,
        topic: &str,
        key: &str,
        payload: &[u8],
        petition: Option<&Petition>,
        cancel: &CancellationToken,
    ) -> bool {
        let mut backoff = Duration::from_millis(200);
        loop {
            let headers = match petition {
                Some(p) => CloudEvent {
                    id: &format!("{}:dispatched", p.id),
                    source: "/petition-gateway/dispatcher",
                    event_type: "gov.petition.dispatched.v1",
                    time: &chrono::Utc::now().to_rfc3339(),
                    subject: Some(&p.id),
                    trace_id: &p.trace_id,
                    span_id: &new_span_id(),
                }
                .headers(),
                None => rdkafka::message::OwnedHeaders::new(),
            };
            let result: Result<_, PublishError> =
                self.publisher.publish(topic, key, payload, headers).await;
            match result {
                Ok(_) => return true,
                Err(e) => {
                    tracing::warn!(topic, error = %e, retryable = e.retryable(), "dispatch publish failed; retrying");
                    tokio::select! {
                        _ = cancel.cancelled() => return false,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
}
