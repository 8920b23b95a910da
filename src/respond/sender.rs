//! The callback sender of one channel: reads the channel's outbox (`callbacks.<channel>`,
//! written by the dispatcher in its transactions), renders each callback with the
//! connector's `[callback]` section and delivers it, in outbox order, rate-limited, with
//! exponential backoff and jitter on retryable answers.
//!
//! Each channel has its own consumer and task, so a dead or slow channel holds up only
//! its own callbacks. A delivered callback is recorded on `callbacks.delivery` (compacted,
//! keyed by callback id) before its offset is committed; a restarted sender skips what
//! that topic says was delivered, so a channel that confirmed a callback does not get it
//! again. After the retry budget, or on a permanent answer, the callback goes to
//! `callbacks.dead` with every attempt's outcome, and an alert to `petitions.alerts`.

use crate::config::{KafkaSettings, LoadedConnector, ResponderSettings, TopicSettings};
use crate::lifecycle::OutboxCallback;
use gateway_connectors::{
    transport_failure, CallbackEvent, CallbackSpec, ConnectorDefinition, DeliveryOutcome,
};
use governor::DefaultDirectRateLimiter;
use rand::Rng;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rdkafka::Offset;
use serde::Serialize;
use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub enum SenderError {
    #[error("callback sender {channel}: kafka: {source}")]
    Kafka { channel: String, source: KafkaError },
    #[error("callback sender {channel}: the connector has no [callback] section")]
    NoCallback { channel: String },
    #[error("callback sender {channel}: {message}")]
    Http { channel: String, message: String },
}

impl SenderError {
    pub fn retryable(&self) -> bool {
        !matches!(self, SenderError::NoCallback { .. })
    }
}

/// What happened to one attempt, kept for the dead letter and the ledger.
#[derive(Debug, Clone, Serialize)]
pub struct Attempt {
    pub at: String,
    pub outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
    pub detail: String,
}

/// A callback's final state, on `callbacks.delivery` (delivered or not applicable) or
/// `callbacks.dead` (given up).
#[derive(Debug, Clone, Serialize)]
pub struct DeliveryRecord<'a> {
    pub callback_id: &'a str,
    pub case_id: &'a str,
    pub petition_id: &'a str,
    pub channel: &'a str,
    pub status: &'a str,
    /// delivered, not_applicable (the channel has no word for the status) or dead.
    pub state: &'static str,
    pub attempts: &'a [Attempt],
    pub finished_at: String,
}

pub struct CallbackSender {
    channel: String,
    spec: CallbackSpec,
    settings: BTreeMap<String, String>,
    kafka: KafkaSettings,
    topics: TopicSettings,
    responder: ResponderSettings,
    limiter: DefaultDirectRateLimiter,
    http: reqwest::Client,
}

impl CallbackSender {
    pub fn new(
        connector: &LoadedConnector,
        kafka: &KafkaSettings,
        topics: &TopicSettings,
        responder: &ResponderSettings,
    ) -> Result<Self, SenderError> {
        let channel = connector.definition.name().to_string();
        let spec = callback_spec(&connector.definition).ok_or(SenderError::NoCallback {
            channel: channel.clone(),
        })?;
        let http = reqwest::Client::builder()
            .timeout(spec.timeout())
            .user_agent("petition-gateway")
            .build()
            .map_err(|e| SenderError::Http {
                channel: channel.clone(),
                message: e.to_string(),
            })?;
        Ok(Self {
            limiter: crate::intake::channel_limiter(
                spec.rate_limit_per_second,
                spec.rate_limit_burst,
            ),
            channel,
            spec,
            settings: connector.settings.clone(),
            kafka: kafka.clone(),
            topics: topics.clone(),
            responder: responder.clone(),
            http,
        })
    }

    fn kafka_err(&self, source: KafkaError) -> SenderError {
        SenderError::Kafka {
            channel: self.channel.clone(),
            source,
        }
    }

    /// Runs until cancelled; a failed session starts over from the committed offsets.
    pub async fn run(self, cancel: CancellationToken) {
        let mut backoff = Duration::from_millis(500);
        loop {
            match self.session(&cancel).await {
                Ok(()) => break,
                Err(e) => {
                    tracing::error!(channel = %self.channel, error = %e, retryable = e.retryable(),
                        "callback sender stopped; starting over");
                    if !e.retryable() {
                        break;
                    }
                    tokio::select! {
                        _ = cancel.cancelled() => break,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
        }
    }

    async fn session(&self, cancel: &CancellationToken) -> Result<(), SenderError> {
        let mut delivered = self.delivered_before().await?;
        let producer: FutureProducer = crate::kafka::base_config(&self.kafka)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "1")
            .create()
            .map_err(|e| self.kafka_err(e))?;
        let reassigned = Arc::new(AtomicBool::new(false));
        let consumer: Arc<OutboxConsumer> = Arc::new(
            crate::kafka::consumer_config(&self.kafka)
                .set(
                    "group.id",
                    self.topics
                        .name(&format!("callback-sender-{}", self.channel)),
                )
                .set("enable.auto.commit", "false")
                .set("auto.offset.reset", "earliest")
                .set("isolation.level", "read_committed")
                .create_with_context(Reassigned(reassigned.clone()))
                .map_err(|e| self.kafka_err(e))?,
        );
        let outbox = self.topics.callbacks_topic(&self.channel);
        consumer
            .subscribe(&[&outbox])
            .map_err(|e| self.kafka_err(e))?;
        tracing::info!(channel = %self.channel, already_delivered = delivered.len(),
            "callback sender started");
        // The next callback goes out while the last one's delivery record is on its way:
        // the committer commits each offset only after that record was acknowledged.
        let (done_tx, done_rx) = mpsc::channel::<Finished>(1024);
        let committer = tokio::spawn(commit_in_order(
            done_rx,
            consumer.clone(),
            self.channel.clone(),
        ));
        let result = self
            .send_all(
                &consumer,
                &producer,
                &mut delivered,
                &reassigned,
                &done_tx,
                cancel,
            )
            .await;
        drop(done_tx);
        let committed = committer.await.map_err(|e| SenderError::Http {
            channel: self.channel.clone(),
            message: e.to_string(),
        })?;
        result.and(committed)
    }

    async fn send_all(
        &self,
        consumer: &OutboxConsumer,
        producer: &FutureProducer,
        delivered: &mut HashSet<String>,
        reassigned: &AtomicBool,
        done: &mpsc::Sender<Finished>,
        cancel: &CancellationToken,
    ) -> Result<(), SenderError> {
        loop {
            let message = tokio::select! {
                _ = cancel.cancelled() => return Ok(()),
                m = consumer.recv() => m,
            };
            let message = match message {
                Ok(m) => m,
                // This consumer will never deliver again: start over with a new one.
                Err(e @ KafkaError::MessageConsumptionFatal(_)) => {
                    return Err(SenderError::Kafka {
                        channel: self.channel.clone(),
                        source: e,
                    });
                }
                Err(e) => {
                    tracing::warn!(channel = %self.channel, error = %e, "outbox consumer error");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            };
            // Partitions another instance held may hold callbacks it delivered after this
            // session read the delivery topic: read it again before going on.
            if reassigned.swap(false, Ordering::SeqCst) {
                *delivered = self.delivered_before().await?;
            }
            let payload = message.payload().unwrap_or_default();
            let acks = match serde_json::from_slice::<OutboxCallback>(payload) {
                Ok(cb) if delivered.contains(&cb.callback_id) => {
                    tracing::debug!(callback_id = %cb.callback_id, "already delivered");
                    Vec::new()
                }
                Ok(cb) => {
                    let Some(finished) = self.deliver(&cb, cancel).await else {
                        return Ok(()); // cancelled mid-delivery: redone after restart
                    };
                    delivered.insert(cb.callback_id.clone());
                    self.record(producer, &cb, finished)?
                }
                Err(e) => {
                    tracing::error!(channel = %self.channel, offset = message.offset(), error = %e,
                        "unreadable outbox record skipped");
                    Vec::new()
                }
            };
            let finished = Finished {
                acks,
                topic: message.topic().to_string(),
                partition: message.partition(),
                offset: message.offset(),
            };
            if done.send(finished).await.is_err() {
                return Ok(()); // the committer stopped; its error is the session's
            }
        }
    }

    /// Delivers one callback, retrying within the budget. `None` when cancelled.
    async fn deliver(
        &self,
        cb: &OutboxCallback,
        cancel: &CancellationToken,
    ) -> Option<(&'static str, Vec<Attempt>)> {
        let event = to_event(cb);
        let lookup = |k: &str| self.settings.get(k).cloned();
        let mut attempts = Vec::new();
        let mut delay = Duration::from_millis(self.responder.retry_initial_ms);
        loop {
            let request = match self
                .spec
                .render(&event, &lookup, chrono::Utc::now().timestamp())
            {
                Ok(Some(r)) => r,
                Ok(None) => return Some(("not_applicable", attempts)),
                Err(e) => {
                    attempts.push(attempt("error", None, e.to_string()));
                    if !e.retryable() {
                        return Some(("dead", attempts));
                    }
                    // A deployment fault (missing setting): wait like any retry.
                    if !self.wait(&mut delay, None, attempts.len(), cancel).await? {
                        return Some(("dead", attempts));
                    }
                    continue;
                }
            };
            tokio::select! {
                _ = cancel.cancelled() => return None,
                _ = self.limiter.until_ready() => {}
            }
            let started = Instant::now();
            let mut builder = self
                .http
                .request(
                    reqwest::Method::from_bytes(request.method.as_bytes())
                        .unwrap_or(reqwest::Method::POST),
                    &request.url,
                )
                .header("content-type", request.content_type)
                .body(request.body.clone());
            for (k, v) in &request.headers {
                builder = builder.header(k, v);
            }
            let (outcome, status) = match builder.send().await {
                Ok(response) => {
                    let status = response.status().as_u16();
                    let retry_after = response
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string);
                    let body = response.bytes().await.unwrap_or_default();
                    (
                        self.spec.classify(status, retry_after.as_deref(), &body),
                        Some(status),
                    )
                }
                Err(e) => (transport_failure(e), None),
            };
            let took = started.elapsed().as_millis();
            match outcome {
                DeliveryOutcome::Done => {
                    attempts.push(attempt("done", status, format!("{took} ms")));
                    tracing::info!(channel = %self.channel, callback_id = %cb.callback_id,
                        status = %cb.status, attempts = attempts.len(), "callback delivered");
                    return Some(("delivered", attempts));
                }
                DeliveryOutcome::Permanent { reason } => {
                    attempts.push(attempt("permanent", status, reason));
                    return Some(("dead", attempts));
                }
                DeliveryOutcome::Retry { after, reason } => {
                    tracing::warn!(channel = %self.channel, callback_id = %cb.callback_id,
                        ?status, %reason, "callback will be retried");
                    attempts.push(attempt("retry", status, reason));
                    if !self.wait(&mut delay, after, attempts.len(), cancel).await? {
                        return Some(("dead", attempts));
                    }
                }
            }
        }
    }

    /// Sleeps before the next attempt: exponential with full jitter, at least what the
    /// channel asked for. `Some(false)` when the budget is spent, `None` when cancelled.
    async fn wait(
        &self,
        delay: &mut Duration,
        asked: Option<Duration>,
        attempts: usize,
        cancel: &CancellationToken,
    ) -> Option<bool> {
        if attempts >= self.responder.max_attempts as usize {
            return Some(false);
        }
        let jittered =
            rand::rng().random_range(delay.as_millis() as u64 / 2..=delay.as_millis() as u64);
        let sleep = Duration::from_millis(jittered).max(asked.unwrap_or_default());
        *delay = (*delay * 2).min(Duration::from_millis(self.responder.retry_max_ms));
        tokio::select! {
            _ = cancel.cancelled() => None,
            _ = tokio::time::sleep(sleep) => Some(true),
        }
    }

    /// Queues the callback's final state (and, for a dead one, the dead letter and an
    /// alert); the offset is committed once they were acknowledged.
    fn record(
        &self,
        producer: &FutureProducer,
        cb: &OutboxCallback,
        (state, attempts): (&'static str, Vec<Attempt>),
    ) -> Result<Vec<DeliveryFuture>, SenderError> {
        let record = DeliveryRecord {
            callback_id: &cb.callback_id,
            case_id: &cb.case_id,
            petition_id: &cb.petition_id,
            channel: &cb.channel,
            status: &cb.status,
            state,
            attempts: &attempts,
            finished_at: chrono::Utc::now().to_rfc3339(),
        };
        let payload = serde_json::to_vec(&record).unwrap_or_default();
        let mut out = vec![(
            self.topics.name(&self.topics.callback_delivery),
            cb.callback_id.clone(),
            payload.clone(),
        )];
        if state == "dead" {
            tracing::error!(channel = %self.channel, callback_id = %cb.callback_id,
                attempts = attempts.len(), "callback given up: dead letter and alert");
            out.push((
                self.topics.name(&self.topics.callbacks_dead),
                cb.callback_id.clone(),
                payload,
            ));
            let alert = serde_json::json!({
                "kind": "callback_dead", "case_id": cb.case_id, "channel": cb.channel,
                "callback_id": cb.callback_id, "status": cb.status,
                "attempts": attempts.len(), "at": chrono::Utc::now().to_rfc3339(),
            });
            out.push((
                self.topics.name(&self.topics.alerts),
                cb.case_id.clone(),
                alert.to_string().into_bytes(),
            ));
        }
        out.into_iter()
            .map(|(topic, key, payload)| {
                producer
                    .send_result(FutureRecord::to(&topic).key(&key).payload(&payload))
                    .map_err(|(e, _)| self.kafka_err(e))
            })
            .collect()
    }

    /// The callbacks of this channel `callbacks.delivery` says are finished.
    async fn delivered_before(&self) -> Result<HashSet<String>, SenderError> {
        let kafka = self.kafka.clone();
        let topic = self.topics.name(&self.topics.callback_delivery);
        let channel = self.channel.clone();
        let result = tokio::task::spawn_blocking(move || read_delivered(&kafka, &topic, &channel))
            .await
            .map_err(|e| SenderError::Http {
                channel: self.channel.clone(),
                message: e.to_string(),
            })?;
        result.map_err(|e| self.kafka_err(e))
    }
}

fn read_delivered(
    kafka: &KafkaSettings,
    topic: &str,
    channel: &str,
) -> Result<HashSet<String>, KafkaError> {
    let consumer: BaseConsumer = crate::kafka::base_config(kafka)
        .set("group.id", format!("{topic}-reader"))
        .set("enable.auto.commit", "false")
        .create()?;
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    let mut done = HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    for p in partitions {
        let (low, high) = consumer.fetch_watermarks(topic, p, Duration::from_secs(10))?;
        if high <= low {
            continue;
        }
        let mut tpl = rdkafka::TopicPartitionList::new();
        tpl.add_partition_offset(topic, p, Offset::Beginning)?;
        consumer.assign(&tpl)?;
        loop {
            // A partial set would send confirmed callbacks again: fail instead.
            if Instant::now() > deadline {
                return Err(KafkaError::MessageConsumption(
                    rdkafka::types::RDKafkaErrorCode::RequestTimedOut,
                ));
            }
            match consumer.poll(Duration::from_millis(200)) {
                Some(Ok(m)) => {
                    if let Some(Ok(v)) =
                        m.payload().map(serde_json::from_slice::<serde_json::Value>)
                    {
                        // Delivered, not applicable or dead: finished either way (a dead
                        // one is not retried, nor dead-lettered, a second time).
                        if v["channel"] == channel {
                            if let Some(id) = v["callback_id"].as_str() {
                                done.insert(id.to_string());
                            }
                        }
                    }
                    if m.offset() + 1 >= high {
                        break;
                    }
                }
                Some(Err(e)) => return Err(e),
                None => {}
            }
        }
    }
    Ok(done)
}

/// A handled outbox record: its offset may be committed once `acks` came back.
struct Finished {
    acks: Vec<DeliveryFuture>,
    topic: String,
    partition: i32,
    offset: i64,
}

/// Commits outbox offsets in order, each after its delivery records were acknowledged.
/// A record Kafka refused ends the session: the callback is read (and sent) again.
async fn commit_in_order(
    mut done: mpsc::Receiver<Finished>,
    consumer: Arc<OutboxConsumer>,
    channel: String,
) -> Result<(), SenderError> {
    let kafka_err = |source| SenderError::Kafka {
        channel: channel.clone(),
        source,
    };
    let mut latest: BTreeMap<(String, i32), i64> = BTreeMap::new();
    while let Some(f) = done.recv().await {
        for ack in f.acks {
            match ack.await {
                Ok(Ok(_)) => {}
                Ok(Err((e, _))) => return Err(kafka_err(e)),
                Err(_) => return Err(kafka_err(KafkaError::Canceled)),
            }
        }
        let mut tpl = rdkafka::TopicPartitionList::new();
        tpl.add_partition_offset(&f.topic, f.partition, Offset::Offset(f.offset + 1))
            .map_err(kafka_err)?;
        consumer
            .commit(&tpl, CommitMode::Async)
            .map_err(kafka_err)?;
        latest.insert((f.topic, f.partition), f.offset + 1);
    }
    // Stopping: the last offsets for sure, so a restart does not read them again.
    if !latest.is_empty() {
        let mut tpl = rdkafka::TopicPartitionList::new();
        for ((topic, partition), offset) in &latest {
            tpl.add_partition_offset(topic, *partition, Offset::Offset(*offset))
                .map_err(kafka_err)?;
        }
        let result = tokio::task::spawn_blocking(move || consumer.commit(&tpl, CommitMode::Sync))
            .await
            .map_err(|_| kafka_err(KafkaError::Canceled))?;
        result.map_err(kafka_err)?;
    }
    Ok(())
}

/// Notes each new assignment of outbox partitions.
struct Reassigned(Arc<AtomicBool>);

impl rdkafka::ClientContext for Reassigned {}

impl rdkafka::consumer::ConsumerContext for Reassigned {
    fn post_rebalance(
        &self,
        _consumer: &rdkafka::consumer::BaseConsumer<Self>,
        rebalance: &rdkafka::consumer::Rebalance<'_>,
    ) {
        if let rdkafka::consumer::Rebalance::Assign(_) = rebalance {
            self.0.store(true, Ordering::SeqCst);
        }
    }
}

type OutboxConsumer = StreamConsumer<Reassigned>;

fn attempt(outcome: &'static str, http_status: Option<u16>, detail: String) -> Attempt {
    Attempt {
        at: chrono::Utc::now().to_rfc3339(),
        outcome,
        http_status,
        detail,
    }
}

fn callback_spec(def: &ConnectorDefinition) -> Option<CallbackSpec> {
    def.callback().cloned()
}

/// The outbox record as the connector engine's event.
pub fn to_event(cb: &OutboxCallback) -> CallbackEvent {
    let time = |t: i64| chrono::DateTime::from_timestamp(t, 0).unwrap_or_default();
    CallbackEvent {
        channel: cb.channel.clone(),
        source_id: cb.source_id.clone(),
        petition_id: cb.petition_id.clone(),
        case_id: cb.case_id.clone(),
        status: cb.status.clone(),
        department_code: cb.department.clone(),
        department_name: cb.department_name.clone(),
        note: cb
            .note
            .as_deref()
            .map(|n| crate::lifecycle::notify::mask_names(n, &cb.names)),
        at: time(cb.at),
        deadline: cb.deadline.map(time),
        merged_into: cb.merged_into.clone(),
        case_status: Some(cb.case_status.clone()),
        reporter_name: cb.reporter_name.clone(),
    }
}

/// Starts one sender per channel that takes callbacks.
pub fn senders(
    connectors: &[LoadedConnector],
    kafka: &KafkaSettings,
    topics: &TopicSettings,
    responder: &ResponderSettings,
) -> Vec<Result<CallbackSender, SenderError>> {
    connectors
        .iter()
        .filter(|c| c.callbacks)
        .map(|c| CallbackSender::new(c, kafka, topics, responder))
        .collect()
}
