//! The status router: takes the departments' and the center's status events from
//! `petitions.status` and the citizens' feedback from `petitions.feedback`, checks them,
//! finds the dispatcher partition that owns the case (from the ledger), and forwards them
//! there on `petitions.case-events`; what cannot be forwarded goes to
//! `petitions.status.rejected` with the reason and the JSON paths at fault.
//!
//! The dispatcher owns a case's state (one writer per partition), but departments key
//! their events by case id, not by the region the dispatcher partitions by: this stage
//! bridges the two. Each batch is one Kafka transaction with its input offsets, so
//! every event is forwarded or rejected exactly once.

use crate::config::{KafkaSettings, TopicSettings};
use crate::dispatch::reload::ListHandle;
use crate::ledger::Ledger;
use crate::normalize::schema::Schemas;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const KAFKA_CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// How long an event about a case the ledger does not know waits for the ledger to
/// catch up before it is rejected as unknown.
const UNKNOWN_CASE_WAIT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    #[error("status router kafka client: {0}")]
    Client(#[from] KafkaError),
    #[error("status router transaction failed while {stage}: {source}")]
    Transaction {
        stage: &'static str,
        source: KafkaError,
    },
    #[error("status router: a blocking call did not finish: {0}")]
    Blocking(String),
    /// The ledger has not read all committed cases yet (starting, or lagging): the
    /// batch is read again later rather than its events rejected as unknown.
    #[error("status router: the ledger is still catching up")]
    LedgerBehind,
    /// The ledger's database did not answer: the batch is read again later.
    #[error("status router: {0}")]
    Ledger(#[from] crate::ledger::LedgerError),
}

impl RouterError {
    pub fn fatal_for_producer(&self) -> bool {
        match self {
            RouterError::Transaction {
                source: KafkaError::Transaction(e),
                ..
            } => e.is_fatal(),
            RouterError::Transaction { .. }
            | RouterError::LedgerBehind
            | RouterError::Ledger(_) => false,
            _ => true,
        }
    }

    pub fn retryable(&self) -> bool {
        true
    }
}

/// What the dispatcher partition owning a case receives.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CaseEvent {
    Status {
        event: super::StatusEvent,
        /// The case's first petition, for sending the case to another department.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        petition: Option<Value>,
        origin: String,
    },
    Feedback {
        case_id: String,
        feedback: super::Feedback,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        petition: Option<Value>,
        origin: String,
    },
}

impl CaseEvent {
    pub fn case_id(&self) -> &str {
        match self {
            CaseEvent::Status { event, .. } => &event.case_id,
            CaseEvent::Feedback { case_id, .. } => case_id,
        }
    }

    pub fn origin(&self) -> &str {
        match self {
            CaseEvent::Status { origin, .. } | CaseEvent::Feedback { origin, .. } => origin,
        }
    }

    pub fn petition(&self) -> Option<&Value> {
        match self {
            CaseEvent::Status { petition, .. } | CaseEvent::Feedback { petition, .. } => {
                petition.as_ref()
            }
        }
    }
}

/// Where one input record goes.
#[derive(Debug, PartialEq)]
pub enum Routed {
    Forward {
        partition: i32,
        event: Value,
    },
    Reject {
        reason: String,
        errors: Vec<Value>,
    },
    /// The ledger does not know the case (yet).
    Unknown {
        case_id: String,
    },
}

pub struct StatusRouter {
    kafka: KafkaSettings,
    topics: TopicSettings,
    ledger: Ledger,
    list: ListHandle,
    schemas: Arc<Schemas>,
    transactional_id: String,
    group_id: String,
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, RouterError> + Send + 'static,
) -> Result<T, RouterError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| RouterError::Blocking(e.to_string()))?
}

impl StatusRouter {
    pub fn new(
        kafka: &KafkaSettings,
        topics: TopicSettings,
        ledger: Ledger,
        list: ListHandle,
        schemas: Arc<Schemas>,
        instance: &str,
    ) -> Self {
        Self {
            transactional_id: format!("{}status-router-{instance}", topics.prefix),
            group_id: topics.name("status-router"),
            kafka: kafka.clone(),
            topics,
            ledger,
            list,
            schemas,
        }
    }

    /// Decides where one record goes. Pure apart from reading the ledger, whose errors
    /// are the only ones returned.
    pub async fn route(
        &self,
        topic: &str,
        origin: &str,
        payload: &[u8],
    ) -> Result<Routed, RouterError> {
        let reject = |reason: &str, errors: Vec<Value>| {
            Ok(Routed::Reject {
                reason: reason.to_string(),
                errors,
            })
        };
        let Ok(value) = serde_json::from_slice::<Value>(payload) else {
            return reject(
                "not JSON",
                vec![json!({"path": "", "message": "the record is not a JSON document"})],
            );
        };
        let ledger = self.ledger.store();
        if topic == self.topics.name(&self.topics.feedback) {
            let petition_id = value["petition_id"].as_str().unwrap_or_default();
            let Some(satisfied) = value["payload"]["satisfied"].as_bool() else {
                return reject(
                    "feedback without a satisfied answer",
                    vec![json!({"path": "/payload/satisfied", "message": "must be true or false"})],
                );
            };
            let Some(case_id) = ledger.case_of(petition_id).await? else {
                return Ok(Routed::Unknown {
                    case_id: petition_id.to_string(),
                });
            };
            let Some(case) = ledger.route(&case_id).await? else {
                return Ok(Routed::Unknown { case_id });
            };
            let event = CaseEvent::Feedback {
                case_id: case_id.clone(),
                feedback: super::Feedback {
                    channel: value["channel"].as_str().unwrap_or_default().to_string(),
                    source_id: value["source_id"].as_str().unwrap_or_default().to_string(),
                    satisfied,
                    comment: value["payload"]["comment"]
                        .as_str()
                        .filter(|c| !c.trim().is_empty())
                        .map(str::to_string),
                },
                petition: case.petition.clone(),
                origin: origin.to_string(),
            };
            return Ok(Routed::Forward {
                partition: case.partition,
                event: serde_json::to_value(&event).unwrap_or_default(),
            });
        }
        let errors = self.schemas.status_event_errors(&value);
        if !errors.is_empty() {
            return reject(
                "not a valid status-event.v1",
                errors
                    .into_iter()
                    .map(|(path, message)| json!({"path": path, "message": message}))
                    .collect(),
            );
        }
        let event: super::StatusEvent = match serde_json::from_value(value) {
            Ok(e) => e,
            Err(e) => return reject(&e.to_string(), vec![]),
        };
        let list = self.list.borrow().clone();
        let known =
            |code: &str| code == super::CENTER || list.router.list().department(code).is_some();
        if !known(&event.department) {
            return reject(
                &format!(
                    "no department {} in the responsibility list",
                    event.department
                ),
                vec![json!({"path": "/department", "message": "unknown department"})],
            );
        }
        let Some(case) = ledger.route(&event.case_id).await?.filter(|c| c.known) else {
            return Ok(Routed::Unknown {
                case_id: event.case_id,
            });
        };
        let event = CaseEvent::Status {
            petition: case.petition.clone(),
            event,
            origin: origin.to_string(),
        };
        Ok(Routed::Forward {
            partition: case.partition,
            event: serde_json::to_value(&event).unwrap_or_default(),
        })
    }

    pub async fn run(self, cancel: CancellationToken) {
        let mut backoff = Duration::from_millis(500);
        loop {
            match self.session(&cancel).await {
                Ok(()) => break,
                Err(e) => {
                    tracing::error!(error = %e, "status router session ended; starting over");
                    tokio::select! {
                        _ = cancel.cancelled() => break,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
        }
    }

    async fn session(&self, cancel: &CancellationToken) -> Result<(), RouterError> {
        let producer: FutureProducer = crate::kafka::base_config(&self.kafka)
            .set("transactional.id", &self.transactional_id)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            // See the dispatcher: otherwise each transaction waits 100 ms.
            .set("retry.backoff.ms", "5")
            .create()?;
        {
            let producer = producer.clone();
            blocking(move || {
                producer
                    .init_transactions(KAFKA_CALL_TIMEOUT)
                    .map_err(|source| RouterError::Transaction {
                        stage: "initialising transactions",
                        source,
                    })
            })
            .await?;
        }
        let consumer: Arc<StreamConsumer> = Arc::new(
            crate::kafka::consumer_config(&self.kafka)
                .set("group.id", &self.group_id)
                .set("enable.auto.commit", "false")
                .set("auto.offset.reset", "earliest")
                .set("isolation.level", "read_committed")
                .create()?,
        );
        let status = self.topics.name(&self.topics.status);
        let feedback = self.topics.name(&self.topics.feedback);
        consumer.subscribe(&[&status, &feedback])?;
        tracing::info!("status router joined its group");
        loop {
            let batch = tokio::select! {
                _ = cancel.cancelled() => return Ok(()),
                b = next_batch(&consumer) => b,
            };
            if batch.is_empty() {
                continue;
            }
            if let Err(e) = self.transact(&consumer, &producer, &batch).await {
                if matches!(e, RouterError::LedgerBehind | RouterError::Ledger(_)) {
                    // Nothing was begun: read the batch again once the ledger caught up.
                    tracing::warn!("status router waits for the ledger; the batch is read again");
                    rewind(&consumer, &batch).await?;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
                if e.fatal_for_producer() {
                    return Err(e);
                }
                tracing::warn!(error = %e, "status router transaction aborted; reading the batch again");
                let p = producer.clone();
                blocking(move || {
                    p.abort_transaction(KAFKA_CALL_TIMEOUT).map_err(|source| {
                        RouterError::Transaction {
                            stage: "aborting",
                            source,
                        }
                    })
                })
                .await?;
                rewind(&consumer, &batch).await?;
            }
        }
    }

    async fn transact(
        &self,
        consumer: &Arc<StreamConsumer>,
        producer: &FutureProducer,
        batch: &[OwnedMessage],
    ) -> Result<(), RouterError> {
        let mut decisions: Vec<Routed> = Vec::with_capacity(batch.len());
        for m in batch {
            let origin = format!("{}/{}/{}", m.topic(), m.partition(), m.offset());
            decisions.push(
                self.route(m.topic(), &origin, m.payload().unwrap_or_default())
                    .await?,
            );
        }
        // A case committed a moment ago may not be in the ledger yet: wait until the
        // ledger has read everything committed before now, then decide again.
        if decisions
            .iter()
            .any(|d| matches!(d, Routed::Unknown { .. }))
        {
            let (kafka, topics, ledger) =
                (self.kafka.clone(), self.topics.clone(), self.ledger.clone());
            let caught_up = blocking(move || {
                crate::ledger::wait_caught_up(&kafka, &topics, &ledger, UNKNOWN_CASE_WAIT)
                    .map_err(RouterError::Client)
            })
            .await?;
            if !caught_up {
                return Err(RouterError::LedgerBehind);
            }
            for (d, m) in decisions.iter_mut().zip(batch) {
                if matches!(d, Routed::Unknown { .. }) {
                    let origin = format!("{}/{}/{}", m.topic(), m.partition(), m.offset());
                    *d = match self
                        .route(m.topic(), &origin, m.payload().unwrap_or_default())
                        .await?
                    {
                        Routed::Unknown { case_id } => Routed::Reject {
                            reason: format!("no case {case_id} (or no petition with that id)"),
                            errors: vec![json!({"path": "/case_id", "message": "unknown case"})],
                        },
                        other => other,
                    };
                }
            }
        }
        producer
            .begin_transaction()
            .map_err(|source| RouterError::Transaction {
                stage: "beginning",
                source,
            })?;
        let forward_topic = self.topics.name(&self.topics.case_events);
        let rejected_topic = self.topics.name(&self.topics.status_rejected);
        let mut offsets: BTreeMap<(String, i32), i64> = BTreeMap::new();
        let mut pending = Vec::new();
        for (d, m) in decisions.iter().zip(batch) {
            offsets.insert((m.topic().to_string(), m.partition()), m.offset() + 1);
            let key = m
                .key()
                .map(|k| String::from_utf8_lossy(k).into_owned())
                .unwrap_or_default();
            let (topic, partition, value) = match d {
                Routed::Forward { partition, event } => {
                    (&forward_topic, Some(*partition), event.clone())
                }
                Routed::Reject { .. } | Routed::Unknown { .. } => {
                    let (reason, errors) = match d {
                        Routed::Reject { reason, errors } => (reason.clone(), errors.clone()),
                        Routed::Unknown { case_id } => (format!("no case {case_id}"), vec![]),
                        Routed::Forward { .. } => (String::new(), vec![]),
                    };
                    tracing::warn!(%reason, topic = m.topic(), offset = m.offset(),
                        "status event rejected");
                    let raw = m.payload().unwrap_or_default();
                    let original = serde_json::from_slice::<Value>(raw)
                        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(raw).into()));
                    (
                        &rejected_topic,
                        None,
                        json!({"reason": reason, "errors": errors, "topic": m.topic(),
                            "partition": m.partition(), "offset": m.offset(), "event": original,
                            "rejected_at": chrono::Utc::now().to_rfc3339()}),
                    )
                }
            };
            let payload = serde_json::to_vec(&value).unwrap_or_default();
            let mut record = FutureRecord::to(topic).key(&key).payload(&payload);
            if let Some(p) = partition {
                record = record.partition(p);
            }
            let delivery =
                producer
                    .send_result(record)
                    .map_err(|(source, _)| RouterError::Transaction {
                        stage: "queueing a record",
                        source,
                    })?;
            pending.push(delivery);
        }
        // Acknowledged before committing (see `kafka::acknowledged`: 100 ms otherwise).
        crate::kafka::acknowledged(pending)
            .await
            .map_err(|source| RouterError::Transaction {
                stage: "writing a record",
                source,
            })?;
        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), offset) in &offsets {
            tpl.add_partition_offset(topic, *partition, Offset::Offset(*offset))?;
        }
        let group = consumer.group_metadata().ok_or(RouterError::Transaction {
            stage: "reading the consumer group metadata",
            source: KafkaError::Canceled,
        })?;
        let producer = producer.clone();
        blocking(move || {
            producer
                .send_offsets_to_transaction(&tpl, &group, KAFKA_CALL_TIMEOUT)
                .map_err(|source| RouterError::Transaction {
                    stage: "adding the offsets",
                    source,
                })?;
            producer
                .commit_transaction(KAFKA_CALL_TIMEOUT)
                .map_err(|source| RouterError::Transaction {
                    stage: "committing",
                    source,
                })
        })
        .await
    }
}

/// Waits up to a second for a record, then takes what is already there (up to 200).
async fn next_batch(consumer: &StreamConsumer) -> Vec<OwnedMessage> {
    let mut batch = Vec::new();
    loop {
        let wait = if batch.is_empty() {
            Duration::from_secs(1)
        } else {
            Duration::from_millis(2)
        };
        match tokio::time::timeout(wait, consumer.recv()).await {
            Ok(Ok(m)) => {
                batch.push(m.detach());
                if batch.len() >= 200 {
                    return batch;
                }
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "status router consumer error");
                return batch;
            }
            Err(_) => return batch,
        }
    }
}

/// Reads the batch again (see `kafka::rewind`).
async fn rewind(consumer: &Arc<StreamConsumer>, batch: &[OwnedMessage]) -> Result<(), RouterError> {
    let consumer = consumer.clone();
    let batch = batch.to_vec();
    blocking(move || {
        Ok(crate::kafka::rewind(
            consumer.as_ref(),
            &batch,
            KAFKA_CALL_TIMEOUT,
        )?)
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dispatch::responsibility::ResponsibilityList;
    use crate::normalize::region::Gazetteer;

    fn router(ledger: Ledger) -> StatusRouter {
        let root = env!("CARGO_MANIFEST_DIR");
        let g: Gazetteer = toml::from_str(
            &std::fs::read_to_string(format!("{root}/config/gazetteer.toml")).expect("gazetteer"),
        )
        .expect("gazetteer parses");
        let list = ResponsibilityList::load(
            std::path::Path::new(&format!("{root}/config/responsibility.toml")),
            &g,
        )
        .expect("list");
        StatusRouter::new(
            &KafkaSettings {
                bootstrap_servers: "127.0.0.1:1".into(),
                client_id: "test".into(),
                message_timeout_ms: 1000,
                partitions: 1,
                replication_factor: 1,
                fetch_wait_max_ms: 20,
            },
            TopicSettings::default(),
            ledger,
            crate::dispatch::reload::fixed(list, "test"),
            Arc::new(Schemas::compile().expect("schemas")),
            "test",
        )
    }

    async fn ledger_with_case(partition: i32) -> Ledger {
        let ledger = Ledger::open("sqlite::memory:").await.expect("ledger");
        let records: Vec<_> = [
            json!({"type": "case", "case_id": "k1", "department": "water"}),
            json!({"type": "report", "case_id": "k1", "petition_id": "p2"}),
            json!({"type": "petition", "case_id": "k1", "petition": {"id": "k1"}}),
        ]
        .iter()
        .filter_map(|v| {
            crate::ledger::record::LedgerRecord::parse(
                "petitions.cases",
                "petitions.cases",
                partition,
                v,
            )
        })
        .collect();
        ledger.store().apply(&records, &[]).await.expect("applied");
        ledger
    }

    fn event(case: &str, department: &str) -> Vec<u8> {
        json!({"case_id": case, "status": "accepted", "department": department,
            "at": "2026-11-24T10:00:00+08:00"})
        .to_string()
        .into_bytes()
    }

    async fn route(r: &StatusRouter, topic: &str, payload: &[u8]) -> Routed {
        r.route(topic, "o", payload)
            .await
            .expect("the ledger answers")
    }

    #[tokio::test]
    async fn an_event_goes_to_the_partition_that_owns_its_case_with_the_petition() {
        let r = router(ledger_with_case(2).await);
        let Routed::Forward {
            partition,
            event: e,
        } = route(&r, "petitions.status", &event("k1", "water")).await
        else {
            panic!("not forwarded");
        };
        assert_eq!(partition, 2);
        assert_eq!(e["kind"], "status");
        assert_eq!(e["petition"]["id"], "k1");
        // Feedback finds its case by the petition id.
        let feedback = json!({"channel": "city-app", "source_id": "T-2", "petition_id": "p2",
            "payload": {"satisfied": false, "comment": "没修好"}});
        let Routed::Forward {
            partition,
            event: e,
        } = route(&r, "petitions.feedback", feedback.to_string().as_bytes()).await
        else {
            panic!("feedback not forwarded");
        };
        assert_eq!((partition, e["case_id"].as_str()), (2, Some("k1")));
        assert_eq!(e["feedback"]["comment"], "没修好");
    }

    #[tokio::test]
    async fn bad_or_unknown_events_are_refused_with_their_paths_or_wait() {
        let r = router(ledger_with_case(0).await);
        assert_eq!(
            route(&r, "petitions.status", &event("nope", "water")).await,
            Routed::Unknown {
                case_id: "nope".into()
            }
        );
        let Routed::Reject { errors, .. } =
            route(&r, "petitions.status", &event("k1", "Nope!")).await
        else {
            panic!("accepted a bad department code");
        };
        assert_eq!(errors[0]["path"], "/department");
        let Routed::Reject { reason, .. } =
            route(&r, "petitions.status", &event("k1", "no-such-dept")).await
        else {
            panic!("accepted an unknown department");
        };
        assert!(reason.contains("no-such-dept"), "{reason}");
        assert!(matches!(
            route(&r, "petitions.status", b"{").await,
            Routed::Reject { .. }
        ));
        let no_answer =
            json!({"channel": "city-app", "source_id": "T", "petition_id": "p2", "payload": {}});
        let Routed::Reject { errors, .. } =
            route(&r, "petitions.feedback", no_answer.to_string().as_bytes()).await
        else {
            panic!("feedback without an answer forwarded");
        };
        assert_eq!(errors[0]["path"], "/payload/satisfied");
    }
}
