//! The dispatcher stage, exactly once: a consumer group on `petitions.inbound` that
//! recognises resent petitions, merges near-duplicates into open cases and routes each
//! new case to its department topic (or triage, plus escalations).
//!
//! Per batch of inbound records it runs one Kafka transaction holding the department,
//! triage and escalation records, the case-state records on `petitions.cases` and the
//! consumed offsets. A crash anywhere leaves either all of a batch or none of it, and
//! consumers reading committed data never see the half.
//!
//! State lives per inbound partition (inbound is keyed by region, so reports of one
//! incident meet in one partition). `petitions.cases` has as many partitions as
//! inbound, and partition p's case records go to cases partition p; an instance that
//! gets partition p replays cases partition p before it handles any record of p. Any
//! rebalance drops all local state, so state can never be stale after another instance
//! held a partition in between.

use super::cases::{CaseLogEntry, CaseState, DecisionContext, Outcome, Rebuild, RebuildError};
use super::dedupe::{DedupeSettings, MergeDecision};
use super::learning::stream::SharedLearner;
use super::learning::Example;
use super::reload::{ActiveList, ListHandle};
use super::router::{RoutingDecision, TRIAGE};
use crate::config::{DispatcherSettings, KafkaSettings, TopicSettings};
use crate::kafka::cloudevents::{new_span_id, CloudEvent};
use crate::lifecycle::status_router::CaseEvent;
use crate::lifecycle::{Effects, Lifecycle, Refusal, Source, Timing};
use crate::petition::Petition;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Blocking Kafka calls (transactions, metadata) give up after this long.
const KAFKA_CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Restoring one partition's state gives up after this long.
const RESTORE_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    #[error("dispatcher kafka client: {0}")]
    Client(#[from] KafkaError),
    #[error("dispatcher transaction failed while {stage}: {source}")]
    Transaction {
        stage: &'static str,
        source: KafkaError,
    },
    #[error("restoring case state of {topic} partition {partition}: {reason}")]
    Restore {
        topic: String,
        partition: i32,
        reason: String,
    },
    #[error("{cases} has {cases_partitions} partitions but {inbound} has {inbound_partitions}; the dispatcher keeps inbound partition p's state in partition p of the cases and case-events topics, so they must match (create {cases} with {inbound_partitions} partitions)")]
    PartitionMismatch {
        cases: String,
        cases_partitions: usize,
        inbound: String,
        inbound_partitions: usize,
    },
    #[error("topic {0} does not exist")]
    MissingTopic(String),
    #[error("cannot encode a dispatcher record: {0}")]
    Encode(#[from] serde_json::Error),
    #[error("a blocking kafka call did not finish: {0}")]
    Blocking(String),
    #[error("asking the ledger about petitions the receiver no longer holds: {0}")]
    Ledger(#[from] crate::ledger::LedgerError),
}

impl DispatchError {
    /// Whether the transactional producer can no longer be used (fenced by a newer
    /// incarnation, or a fatal idempotence error): only new clients help.
    pub fn fatal_for_producer(&self) -> bool {
        match self {
            DispatchError::Transaction {
                source: KafkaError::Transaction(e),
                ..
            } => e.is_fatal(),
            DispatchError::Transaction { .. } | DispatchError::Encode(_) => false,
            _ => true,
        }
    }

    /// Whether starting over (new clients, state restored from Kafka) may succeed.
    pub fn retryable(&self) -> bool {
        !matches!(
            self,
            DispatchError::PartitionMismatch { .. } | DispatchError::Encode(_)
        )
    }
}

/// Which record a department (or triage, or escalations) receives: `case` once per
/// case, `report` for each later report that joined it, `assignment` when the case is
/// assigned to it again (`schemas/department-record.v1.schema.json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordKind {
    Case,
    Report,
    Assignment,
}

/// A `case` or `report` department record.
#[derive(Serialize)]
pub struct DispatchRecord<'a> {
    #[serde(rename = "type")]
    pub kind: RecordKind,
    pub case_id: &'a str,
    /// On `report` records to the case's topic: the case's department (or triage).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub department: Option<&'a str>,
    pub petition: &'a Value,
    pub routing: &'a RoutingDecision,
    pub list_version: &'a str,
    pub dispatched_at: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sla_hours: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deadline: Option<&'a str>,
    /// On `report` records: why the report joined the case.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub merge: Option<&'a MergeDecision>,
}

/// Counts rebalances: a revocation means local state may be stale.
#[derive(Default)]
pub struct RebalanceEpoch {
    epoch: AtomicU64,
}

impl RebalanceEpoch {
    fn current(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }
}

impl ClientContext for RebalanceEpoch {}

impl ConsumerContext for RebalanceEpoch {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            self.epoch.fetch_add(1, Ordering::SeqCst);
            tracing::info!(partitions = tpl.count(), "dispatcher partitions revoked");
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            let partitions: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
            tracing::info!(?partitions, "dispatcher partitions assigned");
        }
    }
}

type InboundConsumer = StreamConsumer<RebalanceEpoch>;

pub struct Dispatcher {
    kafka: KafkaSettings,
    settings: DispatcherSettings,
    topics: TopicSettings,
    dedupe: DedupeSettings,
    list: ListHandle,
    instance: String,
    transactional_id: String,
    /// Channels that take status callbacks (Open311 clients poll instead).
    callback_channels: Arc<HashSet<String>>,
    timing: Timing,
    tick_interval_ms: u64,
    /// Acknowledgements of the open transaction's records.
    pending: std::sync::Mutex<Vec<DeliveryFuture>>,
    /// The router learned from the center's assignments (`None`: learning is off).
    learner: Option<SharedLearner>,
    /// Where the receiver finds petitions it forgot (`None`: it forgets none).
    ledger: Option<crate::ledger::Ledger>,
}

/// Runs a blocking Kafka call off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, DispatchError> + Send + 'static,
) -> Result<T, DispatchError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| DispatchError::Blocking(e.to_string()))?
}

impl Dispatcher {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        kafka: &KafkaSettings,
        settings: &DispatcherSettings,
        topics: TopicSettings,
        dedupe: DedupeSettings,
        list: ListHandle,
        listen_port: u16,
        callback_channels: HashSet<String>,
        lifecycle: &crate::config::LifecycleSettings,
    ) -> Self {
        let instance = if settings.instance_id.is_empty() {
            default_instance_id(listen_port)
        } else {
            settings.instance_id.clone()
        };
        let transactional_id = format!("{}{}-{instance}", topics.prefix, settings.group_id);
        Self {
            kafka: kafka.clone(),
            settings: settings.clone(),
            topics,
            dedupe,
            list,
            instance,
            transactional_id,
            callback_channels: Arc::new(callback_channels),
            timing: lifecycle.timing(),
            tick_interval_ms: lifecycle.tick_interval_ms,
            pending: std::sync::Mutex::new(Vec::new()),
            learner: None,
            ledger: None,
        }
    }

    /// The idempotent receiver keeps in memory only the petitions that reached the
    /// gateway within the near-duplicate window and allowed lateness; a resend of an
    /// older one is recognised through the ledger, which holds every report. Memory then
    /// holds a span of history, not all of it.
    pub fn with_ledger(mut self, ledger: crate::ledger::Ledger) -> Self {
        self.ledger = Some(ledger);
        self
    }

    /// How long the receiver keeps a petition in memory (`None`: for ever).
    fn receipts_kept_secs(&self) -> Option<i64> {
        self.ledger.as_ref().map(|_| self.dedupe.held_secs())
    }

    /// Tells each partition's receiver where its reports are in `petitions.cases` (the
    /// high watermark, every transaction so far committed) and how far this process's
    /// ledger has read them: only what the ledger holds leaves memory. Skipped for a
    /// tick when the broker does not answer (nothing is forgotten early).
    async fn track_receipts(
        &self,
        watermarks: &Arc<BaseConsumer>,
        states: &mut HashMap<i32, CaseState>,
    ) {
        let Some(ledger) = &self.ledger else {
            return;
        };
        let cases = self.topics.name(&self.topics.cases);
        let partitions: Vec<i32> = states.keys().copied().collect();
        let (c, topic) = (watermarks.clone(), cases.clone());
        let ends = blocking(move || {
            partitions
                .into_iter()
                .map(|p| Ok((p, c.fetch_watermarks(&topic, p, KAFKA_CALL_TIMEOUT)?.1)))
                .collect::<Result<Vec<_>, DispatchError>>()
        })
        .await;
        let ends = match ends {
            Ok(ends) => ends,
            Err(e) => {
                tracing::debug!(error = %e, "case log ends unknown this tick");
                return;
            }
        };
        for (partition, end) in ends {
            if let Some(state) = states.get_mut(&partition) {
                state.case_log_written_below(end);
                if let Some(read) = ledger.read_to(&cases, partition) {
                    state.ledger_has_read_to(read);
                }
            }
        }
    }

    /// Tells each partition's receiver what the ledger knows of the batch's petitions it
    /// no longer holds, before deciding: a resend older than the receiver's memory is
    /// recognised, not opened as a second case.
    async fn recall(
        &self,
        batch: &[OwnedMessage],
        states: &mut HashMap<i32, CaseState>,
    ) -> Result<(), DispatchError> {
        let Some(ledger) = &self.ledger else {
            return Ok(());
        };
        #[derive(serde::Deserialize)]
        struct PetitionId<'a> {
            #[serde(borrow)]
            id: std::borrow::Cow<'a, str>,
        }
        let case_events = self.topics.name(&self.topics.case_events);
        let mut asked: Vec<(i32, std::borrow::Cow<'_, str>)> = Vec::new();
        for m in batch.iter().filter(|m| m.topic() != case_events) {
            let Some(state) = states.get(&m.partition()).filter(|s| s.has_forgotten()) else {
                continue;
            };
            let payload = m.payload().unwrap_or_default();
            if let Ok(p) = serde_json::from_slice::<PetitionId>(payload) {
                if state.may_know_elsewhere(&p.id) {
                    asked.push((m.partition(), p.id));
                }
            }
        }
        if asked.is_empty() {
            return Ok(());
        }
        let ids: Vec<&str> = asked.iter().map(|(_, id)| &**id).collect();
        // A busy database (another process writing the same SQLite file) is waited for
        // here rather than by starting the session over; deciding without the answer
        // could open a resend as a second case, so the last failure ends the session.
        let mut attempt = 0;
        let found = loop {
            match ledger.store().cases_of(&ids).await {
                Ok(found) => break found,
                Err(e) if attempt < 5 => {
                    tracing::warn!(error = %e, attempt,
                        "the ledger did not answer about older petitions; asking again");
                    tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
                    attempt += 1;
                }
                Err(e) => return Err(e.into()),
            }
        };
        let known: HashMap<String, String> = found.into_iter().collect();
        for (partition, id) in &asked {
            if let (Some(case), Some(state)) = (known.get(&**id), states.get_mut(partition)) {
                tracing::info!(petition_id = %id, case_id = %case,
                    "a petition older than the receiver's memory found in the ledger");
                state.remember(id, case);
            }
        }
        Ok(())
    }

    /// Decides with the learned router (what the list leaves to triage), and writes the
    /// center's assignments to the examples topic it learns from.
    pub fn with_learner(mut self, learner: SharedLearner) -> Self {
        self.learner = Some(learner);
        self
    }

    /// This instance's id (transactional id suffix and static group membership).
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// Runs until cancelled. A failed session (broker gone, transaction fenced or
    /// aborted) is started over with fresh clients and state restored from Kafka.
    pub async fn run(self, cancel: CancellationToken) {
        let mut backoff = Duration::from_millis(500);
        loop {
            match self.session(&cancel).await {
                Ok(()) => break,
                Err(e) => {
                    tracing::error!(error = %e, retryable = e.retryable(),
                        "dispatcher session ended; starting over from the committed state");
                    tokio::select! {
                        _ = cancel.cancelled() => break,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
        }
        tracing::info!("dispatcher stopped");
    }

    async fn session(&self, cancel: &CancellationToken) -> Result<(), DispatchError> {
        let producer: FutureProducer = crate::kafka::base_config(&self.kafka)
            .set("transactional.id", &self.transactional_id)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set(
                "transaction.timeout.ms",
                self.settings.transaction_timeout_ms.to_string(),
            )
            .set(
                "message.timeout.ms",
                self.kafka.message_timeout_ms.to_string(),
            )
            .set("linger.ms", "5")
            // The coordinator answers "concurrent transactions" while the previous
            // commit's markers are written; librdkafka's 100 ms default backoff on that
            // made every transaction take 100 ms.
            .set("retry.backoff.ms", "5")
            .set("compression.type", "lz4")
            .create()?;
        {
            let producer = producer.clone();
            // Fences an earlier incarnation of this instance and aborts what it left open.
            blocking(move || {
                producer
                    .init_transactions(KAFKA_CALL_TIMEOUT)
                    .map_err(|source| DispatchError::Transaction {
                        stage: "initialising transactions",
                        source,
                    })
            })
            .await?;
        }
        let consumer: Arc<InboundConsumer> = Arc::new(
            crate::kafka::consumer_config(&self.kafka)
                .set("group.id", self.topics.name(&self.settings.group_id))
                // Static membership: a restarted instance takes its partitions back at
                // once instead of waiting for its dead predecessor's session to expire.
                .set("group.instance.id", &self.instance)
                .set(
                    "session.timeout.ms",
                    self.settings.session_timeout_ms.to_string(),
                )
                .set("enable.auto.commit", "false")
                .set("auto.offset.reset", "earliest")
                .set("isolation.level", "read_committed")
                // Partition p of inbound and of case-events go to the same instance:
                // both are about the state of partition p.
                .set("partition.assignment.strategy", "range")
                .create_with_context(RebalanceEpoch::default())?,
        );
        let inbound = self.topics.name(&self.topics.inbound);
        let case_events = self.topics.name(&self.topics.case_events);
        self.check_partitions(&consumer).await?;
        consumer.subscribe(&[&inbound, &case_events])?;
        tracing::info!(transactional_id = %self.transactional_id, "dispatcher joined its group");

        let result = self.process(&consumer, &producer, cancel).await;
        // Closing leaves the group at once (no session timeout for the others); both
        // calls block.
        let _ = tokio::task::spawn_blocking(move || {
            drop(consumer);
            drop(producer);
        })
        .await;
        result
    }

    async fn process(
        &self,
        consumer: &Arc<InboundConsumer>,
        producer: &FutureProducer,
        cancel: &CancellationToken,
    ) -> Result<(), DispatchError> {
        let mut states: HashMap<i32, CaseState> = HashMap::new();
        let mut epoch = consumer.context().current();
        let mut transactions: u64 = 0;
        let tick_interval = Duration::from_millis(self.tick_interval_ms);
        let mut last_tick = Instant::now();
        // Its own client: queries on the stream's consumer can leave its waker unwoken
        // (rust-rdkafka #665), and the stream would stop with records waiting.
        let watermarks: Option<Arc<BaseConsumer>> = match &self.ledger {
            Some(_) => Some(Arc::new(
                crate::kafka::base_config(&self.kafka)
                    .set("group.id", self.topics.name("dispatcher-watermarks"))
                    .create()?,
            )),
            None => None,
        };
        loop {
            let batch = tokio::select! {
                _ = cancel.cancelled() => return Ok(()),
                b = self.next_batch(consumer, &mut epoch, &mut states) => b?,
            };
            // Restore every assigned partition now, not when its first record comes, so
            // the first petition after a rebalance does not wait for it.
            let mut partitions: Vec<i32> = batch.iter().map(Message::partition).collect();
            let inbound = self.topics.name(&self.topics.inbound);
            partitions.extend(
                consumer
                    .assignment()?
                    .elements_for_topic(&inbound)
                    .iter()
                    .map(|e| e.partition()),
            );
            partitions.sort_unstable();
            partitions.dedup();
            partitions.retain(|p| !states.contains_key(p));
            // Concurrently: each restore is a blocking fetch-and-decode of its own.
            let restored =
                futures_util::future::try_join_all(partitions.iter().map(|p| self.restore(*p)))
                    .await?;
            states.extend(partitions.into_iter().zip(restored));
            // Timers (SLA alerts, satisfaction timeouts) are looked at every tick.
            let now = chrono::Utc::now().timestamp();
            let tick = last_tick.elapsed() >= tick_interval;
            let due = tick
                && states
                    .values_mut()
                    .any(|s| !s.due(now, self.timing).is_empty());
            if tick {
                last_tick = Instant::now();
                if let Some(w) = &watermarks {
                    self.track_receipts(w, &mut states).await;
                }
            }
            if batch.is_empty() && !due {
                continue;
            }
            self.recall(&batch, &mut states).await?;
            transactions += 1;
            let Err(e) = self
                .transact(consumer, producer, &batch, &mut states, transactions, due)
                .await
            else {
                continue;
            };
            if e.fatal_for_producer() {
                return Err(e); // fenced or broken: start over with new clients
            }
            // Abortable (a rebalance took a partition, a broker timed out): undo the
            // batch, forget state it touched, and read the batch again.
            tracing::warn!(error = %e, records = batch.len(),
                "dispatcher transaction aborted; the batch is read again");
            let p = producer.clone();
            blocking(move || {
                p.abort_transaction(KAFKA_CALL_TIMEOUT).map_err(|source| {
                    DispatchError::Transaction {
                        stage: "aborting",
                        source,
                    }
                })
            })
            .await?;
            states.clear();
            self.rewind(consumer, &batch).await?;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Reads the batch again (see `kafka::rewind`).
    async fn rewind(
        &self,
        consumer: &Arc<InboundConsumer>,
        batch: &[OwnedMessage],
    ) -> Result<(), DispatchError> {
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

    /// Waits (up to a second) for the next record, then takes whatever else is already
    /// there (up to `max_batch`). A rebalance seen on the way discards the batch and all
    /// state. A fatal consumer error ends the session: the consumer will never deliver
    /// again (after a broker restart, the group may fence this static member by its own
    /// `group.instance.id`), and only a new one helps.
    async fn next_batch(
        &self,
        consumer: &InboundConsumer,
        epoch: &mut u64,
        states: &mut HashMap<i32, CaseState>,
    ) -> Result<Vec<OwnedMessage>, DispatchError> {
        let mut batch = Vec::new();
        loop {
            let received = if batch.is_empty() {
                // Bounded, so a new assignment is restored soon even with no records.
                match tokio::time::timeout(Duration::from_secs(1), consumer.recv()).await {
                    Ok(m) => Some(m),
                    Err(_) => return Ok(batch),
                }
            } else {
                tokio::time::timeout(Duration::from_millis(2), consumer.recv())
                    .await
                    .ok()
            };
            let now = consumer.context().current();
            if now != *epoch {
                // Records taken before the rebalance come again from the committed
                // offsets if the partition is still ours; state is restored afresh.
                *epoch = now;
                batch.clear();
                states.clear();
            }
            match received {
                Some(Ok(m)) => {
                    batch.push(m.detach());
                    if batch.len() >= self.settings.max_batch {
                        return Ok(batch);
                    }
                }
                Some(Err(e @ KafkaError::MessageConsumptionFatal(_))) => {
                    return Err(DispatchError::Client(e));
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "dispatcher consumer error");
                    if !batch.is_empty() {
                        return Ok(batch);
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                None => return Ok(batch),
            }
        }
    }

    async fn transact(
        &self,
        consumer: &Arc<InboundConsumer>,
        producer: &FutureProducer,
        batch: &[OwnedMessage],
        states: &mut HashMap<i32, CaseState>,
        number: u64,
        due: bool,
    ) -> Result<(), DispatchError> {
        // Left over from an aborted transaction: nothing to wait for.
        if let Ok(mut p) = self.pending.lock() {
            p.clear();
        }
        producer
            .begin_transaction()
            .map_err(|source| DispatchError::Transaction {
                stage: "beginning",
                source,
            })?;
        let list = self.list.borrow().clone();
        let now = chrono::Utc::now();
        let mut offsets: BTreeMap<(String, i32), i64> = BTreeMap::new();
        let (mut opened, mut merged, mut resent) = (0, 0, 0);
        let case_events = self.topics.name(&self.topics.case_events);
        for m in batch {
            let partition = m.partition();
            // Every batch partition was restored before the transaction began; if one
            // were not, skipping its record would commit its offset unhandled.
            let state = states
                .get_mut(&partition)
                .ok_or(DispatchError::Transaction {
                    stage: "finding the partition's restored state",
                    source: KafkaError::Canceled,
                })?;
            offsets.insert((m.topic().to_string(), partition), m.offset() + 1);
            let payload = m.payload().unwrap_or_default();
            if m.topic() == case_events {
                self.case_event(producer, partition, state, payload, &list, now)?;
                continue;
            }
            let Some((value, petition)) = parse_petition(payload) else {
                let record = serde_json::json!({
                    "stage": "dispatcher", "class": "invalid",
                    "errors": [{"path": "/", "message": "not a petition.v1 record"}],
                    "topic": m.topic(), "partition": partition, "offset": m.offset(),
                    "body": String::from_utf8_lossy(payload),
                });
                let topic = self.topics.name(&self.topics.invalid);
                self.send(producer, &topic, None, "dispatcher", &record, None)?;
                continue;
            };
            // A poisoned lock (a panic while learning) leaves the list alone deciding.
            let learned = self.learner.as_ref().and_then(|l| l.read().ok());
            let outcome = state.decide(
                &petition,
                &list.router,
                &DecisionContext {
                    seq: m.offset(),
                    list_version: &list.version,
                    instance: &self.instance,
                    now,
                    learned: learned.as_deref(),
                },
            );
            drop(learned);
            match &outcome {
                Outcome::Resent { case_id } => {
                    resent += 1;
                    tracing::info!(petition_id = %petition.id, %case_id,
                        "resent petition already in a case");
                }
                Outcome::Opened { case, .. } => {
                    opened += 1;
                    let record = DispatchRecord {
                        kind: RecordKind::Case,
                        case_id: &case.case_id,
                        department: None,
                        petition: &value,
                        routing: &case.routing,
                        list_version: &case.list_version,
                        dispatched_at: &case.dispatched_at,
                        sla_hours: case.sla_hours,
                        deadline: case.deadline.as_deref(),
                        merge: None,
                    };
                    let topic = match &case.routing.topic {
                        Some(t) => self.topics.name(t),
                        None => self.topics.name(&self.topics.triage),
                    };
                    self.send(
                        producer,
                        &topic,
                        None,
                        &case.case_id,
                        &record,
                        Some(&petition),
                    )?;
                    if case.escalated {
                        let topic = self.topics.name(&self.topics.escalations);
                        self.send(
                            producer,
                            &topic,
                            None,
                            &case.case_id,
                            &record,
                            Some(&petition),
                        )?;
                    }
                    tracing::info!(petition_id = %petition.id, department = %case.department,
                        rule = ?case.routing.rule, score = case.routing.score,
                        escalate = case.escalated, "case opened and dispatched");
                }
                Outcome::Merged {
                    report,
                    routing,
                    escalates,
                } => {
                    merged += 1;
                    let stamp = now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
                    // The case's department sees every report that joins it (关联工单),
                    // on the topic the case is at now: assigned, or still in triage.
                    let current = state
                        .lifecycle(&report.case_id)
                        .map_or(TRIAGE, |l| l.department.as_str());
                    let department = list.router.list().department(current);
                    let record = DispatchRecord {
                        kind: RecordKind::Report,
                        case_id: &report.case_id,
                        department: Some(department.map_or(TRIAGE, |d| d.code.as_str())),
                        petition: &value,
                        routing,
                        list_version: &list.version,
                        dispatched_at: &stamp,
                        sla_hours: None,
                        deadline: None,
                        merge: report.merge.as_ref(),
                    };
                    let topic = self.department_topic(department);
                    self.send_event(
                        producer,
                        &topic,
                        None,
                        &report.case_id,
                        &record,
                        Some((&petition, "joined", "gov.petition.report-joined.v1")),
                    )?;
                    if *escalates {
                        let record = DispatchRecord {
                            department: None,
                            ..record
                        };
                        let topic = self.topics.name(&self.topics.escalations);
                        self.send(
                            producer,
                            &topic,
                            None,
                            &report.case_id,
                            &record,
                            Some(&petition),
                        )?;
                    }
                    tracing::info!(petition_id = %petition.id, case_id = %report.case_id,
                        score = report.merge.as_ref().map(|m| m.score),
                        "report merged into an open case");
                }
            }
            let cases_topic = self.topics.name(&self.topics.cases);
            let moved = lifecycle_move(&outcome, &petition, state, now, self.timing.hour_secs);
            if let Outcome::Opened { case, .. } = &outcome {
                let record = serde_json::json!({
                    "type": "petition", "case_id": case.case_id, "petition": value,
                });
                let key = format!("{}{}", super::cases::PETITION_KEY_PREFIX, case.case_id);
                self.send(producer, &cases_topic, Some(partition), &key, &record, None)?;
            }
            for entry in outcome.log_entries() {
                self.send(
                    producer,
                    &cases_topic,
                    Some(partition),
                    &entry.key(),
                    &entry,
                    None,
                )?;
                state.apply_entry(&entry);
            }
            if let Some((lifecycle, fx)) = moved {
                // The department (or triage) and escalation records went out above.
                let fx = Effects {
                    dispatch_to: None,
                    escalate: false,
                    ..fx
                };
                self.emit(producer, partition, state, lifecycle, &fx, None, &list, now)?;
            }
        }

        // Timers fire in a transaction that also carries input offsets, so a member the
        // group has already replaced (it has not noticed yet) is fenced by the group
        // generation check instead of firing them a second time. Without a batch, the
        // offsets already committed are committed again; with none yet, the timers wait.
        let mut fence: Vec<(String, i32, i64)> = Vec::new();
        if due && offsets.is_empty() {
            let c = consumer.clone();
            let committed = blocking(move || Ok(c.committed(KAFKA_CALL_TIMEOUT)?)).await?;
            for e in committed.elements() {
                if let Offset::Offset(o) = e.offset() {
                    fence.push((e.topic().to_string(), e.partition(), o));
                }
            }
        }
        let assigned: Vec<i32> = consumer
            .assignment()?
            .elements()
            .iter()
            .map(|e| e.partition())
            .collect();
        if due && (!offsets.is_empty() || !fence.is_empty()) {
            for (partition, state) in states.iter_mut() {
                if !assigned.contains(partition) {
                    continue;
                }
                for case_id in state.due(now.timestamp(), self.timing) {
                    let Some(mut lifecycle) = state.lifecycle(&case_id).cloned() else {
                        continue;
                    };
                    let fx = lifecycle.tick(now.timestamp(), self.timing);
                    self.emit(
                        producer, *partition, state, lifecycle, &fx, None, &list, now,
                    )?;
                }
            }
        }

        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), offset) in &offsets {
            tpl.add_partition_offset(topic, *partition, Offset::Offset(*offset))?;
        }
        for (topic, partition, offset) in &fence {
            tpl.add_partition_offset(topic, *partition, Offset::Offset(*offset))?;
        }
        let group = consumer
            .group_metadata()
            .ok_or(DispatchError::Transaction {
                stage: "reading the consumer group metadata",
                source: KafkaError::Canceled,
            })?;
        let committing = Instant::now();
        self.delivered().await?;
        let producer = producer.clone();
        blocking(move || {
            if tpl.count() > 0 {
                producer
                    .send_offsets_to_transaction(&tpl, &group, KAFKA_CALL_TIMEOUT)
                    .map_err(|source| DispatchError::Transaction {
                        stage: "adding the input offsets",
                        source,
                    })?;
            }
            crash_before_commit(number, &producer);
            producer
                .commit_transaction(KAFKA_CALL_TIMEOUT)
                .map_err(|source| DispatchError::Transaction {
                    stage: "committing",
                    source,
                })
        })
        .await?;
        tracing::debug!(
            records = batch.len(),
            opened,
            merged,
            resent,
            commit_ms = committing.elapsed().as_millis() as u64,
            "batch committed"
        );
        Ok(())
    }

    /// A status event or the citizen's feedback, forwarded by the status router to the
    /// partition owning the case: the lifecycle moves, or the event is refused with
    /// its reason on the rejected-events topic.
    #[allow(clippy::too_many_arguments)]
    fn case_event(
        &self,
        producer: &FutureProducer,
        partition: i32,
        state: &mut CaseState,
        payload: &[u8],
        list: &ActiveList,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), DispatchError> {
        let event: CaseEvent = match serde_json::from_slice(payload) {
            Ok(e) => e,
            Err(e) => {
                tracing::error!(partition, error = %e, "unreadable case event rejected");
                let record = serde_json::json!({
                    "reason": format!("not a case event: {e}"), "errors": [],
                    "event": String::from_utf8_lossy(payload),
                    "rejected_at": now.to_rfc3339(),
                });
                let topic = self.topics.name(&self.topics.status_rejected);
                return self.send(producer, &topic, None, "dispatcher", &record, None);
            }
        };
        let departments = ListDepartments {
            list,
            hour_secs: self.timing.hour_secs,
        };
        let moved = match state.lifecycle(event.case_id()) {
            None => Err(Refusal::Invalid(format!(
                "case {} is closed or rejected, or was opened before case lifecycles",
                event.case_id()
            ))),
            Some(current) => {
                let mut lifecycle = current.clone();
                let result = match &event {
                    CaseEvent::Status { event, .. } => {
                        lifecycle.apply(event, now.timestamp(), &departments)
                    }
                    CaseEvent::Feedback { feedback, .. } => {
                        lifecycle.feedback(feedback, now.timestamp())
                    }
                };
                result.map(|fx| (lifecycle, fx))
            }
        };
        match moved {
            Ok((lifecycle, fx)) => {
                tracing::info!(case_id = %lifecycle.case_id, phase = lifecycle.phase.as_str(),
                    department = %lifecycle.department, origin = event.origin(), "case moved");
                if let (Some(_), CaseEvent::Status { event: status, .. }) = (&self.learner, &event)
                {
                    let before = state
                        .lifecycle(&lifecycle.case_id)
                        .and_then(assigned_away_from);
                    if let Some(example) =
                        center_example(status, before.as_deref(), event.petition(), now)
                    {
                        let topic = self.topics.name(&self.topics.examples);
                        tracing::info!(case_id = %example.case_id, department = %example.department,
                            source = ?example.source, "the router learns the center's assignment");
                        self.send(producer, &topic, Some(0), &example.case_id, &example, None)?;
                    }
                }
                self.emit(
                    producer,
                    partition,
                    state,
                    lifecycle,
                    &fx,
                    event.petition(),
                    list,
                    now,
                )
            }
            Err(refusal) => {
                tracing::warn!(case_id = event.case_id(), reason = %refusal, "status event refused");
                let record = serde_json::json!({
                    "reason": refusal.to_string(), "errors": [],
                    "origin": event.origin(), "event": event,
                    "rejected_at": now.to_rfc3339(),
                });
                let topic = self.topics.name(&self.topics.status_rejected);
                self.send(producer, &topic, None, event.case_id(), &record, None)
            }
        }
    }

    /// Writes what a lifecycle move asks for, and the moved lifecycle itself: callbacks
    /// to every source, the case to its (new) department or triage, an escalation, SLA
    /// alerts.
    #[allow(clippy::too_many_arguments)]
    fn emit(
        &self,
        producer: &FutureProducer,
        partition: i32,
        state: &mut CaseState,
        mut lifecycle: Lifecycle,
        fx: &Effects,
        petition: Option<&Value>,
        list: &ActiveList,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), DispatchError> {
        let at = now.timestamp();
        let departments = list.router.list();
        let name = |code: &str| departments.department(code).map(|d| d.name.clone());
        let takes = |channel: &str| self.callback_channels.contains(channel);
        for cb in crate::lifecycle::callbacks(&lifecycle, fx, at, &takes, &name) {
            let topic = self.topics.callbacks_topic(&cb.channel);
            self.send(producer, &topic, None, &cb.case_id, &cb, None)?;
        }
        let record = assignment_record(&lifecycle, petition, now);
        if let Some(to) = &fx.dispatch_to {
            let topic = self.department_topic(departments.department(to));
            self.send(producer, &topic, None, &lifecycle.case_id, &record, None)?;
        }
        if fx.escalate {
            let topic = self.topics.name(&self.topics.escalations);
            self.send(producer, &topic, None, &lifecycle.case_id, &record, None)?;
        }
        for alert in &fx.alerts {
            let value = serde_json::json!({
                "kind": alert.kind,
                "case_id": lifecycle.case_id,
                "department": lifecycle.department,
                "deadline": chrono::DateTime::from_timestamp(alert.deadline, 0).map(|t| t.to_rfc3339()),
                "at": now.to_rfc3339(),
            });
            tracing::warn!(case_id = %lifecycle.case_id, kind = ?alert.kind, "SLA alert");
            let topic = self.topics.name(&self.topics.alerts);
            self.send(producer, &topic, None, &lifecycle.case_id, &value, None)?;
        }
        let cases_topic = self.topics.name(&self.topics.cases);
        if let Some(history) = lifecycle.take_unwritten() {
            let record = serde_json::json!({
                "type": "history", "case_id": history.case_id, "from": history.from,
                "entries": history.entries,
            });
            self.send(
                producer,
                &cases_topic,
                Some(partition),
                &history.key(),
                &record,
                None,
            )?;
        }
        let entry = CaseLogEntry::Lifecycle(lifecycle);
        self.send(
            producer,
            &cases_topic,
            Some(partition),
            &entry.key(),
            &entry,
            None,
        )?;
        state.apply_entry(&entry);
        Ok(())
    }

    /// A department's topic, or triage's for a case nobody holds (or a department the
    /// list in force no longer has).
    fn department_topic(&self, department: Option<&super::responsibility::Department>) -> String {
        match department {
            Some(d) => self.topics.name(&d.topic),
            None => self.topics.name(&self.topics.triage),
        }
    }

    /// Queues a record in the open transaction (committing waits for all of them).
    fn send(
        &self,
        producer: &FutureProducer,
        topic: &str,
        partition: Option<i32>,
        key: &str,
        value: &impl Serialize,
        petition: Option<&Petition>,
    ) -> Result<(), DispatchError> {
        let event = petition.map(|p| (p, "dispatched", "gov.petition.dispatched.v1"));
        self.send_event(producer, topic, partition, key, value, event)
    }

    /// `send`, with the CloudEvent headers of `event`: the petition it is about, the
    /// suffix of the event id, and the event type.
    fn send_event(
        &self,
        producer: &FutureProducer,
        topic: &str,
        partition: Option<i32>,
        key: &str,
        value: &impl Serialize,
        event: Option<(&Petition, &str, &str)>,
    ) -> Result<(), DispatchError> {
        let payload = serde_json::to_vec(value)?;
        let headers = match event {
            Some((p, suffix, event_type)) => CloudEvent {
                id: &format!("{}:{suffix}", p.id),
                source: "/petition-gateway/dispatcher",
                event_type,
                time: &chrono::Utc::now().to_rfc3339(),
                subject: Some(&p.id),
                trace_id: &p.trace_id,
                span_id: &new_span_id(),
            }
            .headers(),
            None => OwnedHeaders::new(),
        };
        let mut record = FutureRecord::to(topic)
            .key(key)
            .payload(&payload)
            .headers(headers);
        if let Some(p) = partition {
            record = record.partition(p);
        }
        let delivery =
            producer
                .send_result(record)
                .map_err(|(source, _)| DispatchError::Transaction {
                    stage: "queueing a record",
                    source,
                })?;
        if let Ok(mut pending) = self.pending.lock() {
            pending.push(delivery);
        }
        Ok(())
    }

    /// Waits until the open transaction's records were acknowledged (see
    /// `kafka::acknowledged`).
    async fn delivered(&self) -> Result<(), DispatchError> {
        let pending = match self.pending.lock() {
            Ok(mut p) => std::mem::take(&mut *p),
            Err(_) => Vec::new(),
        };
        crate::kafka::acknowledged(pending)
            .await
            .map_err(|source| DispatchError::Transaction {
                stage: "writing a record",
                source,
            })
    }

    /// Inbound and cases must have as many partitions (see the module header).
    async fn check_partitions(&self, consumer: &Arc<InboundConsumer>) -> Result<(), DispatchError> {
        let consumer = consumer.clone();
        let inbound = self.topics.name(&self.topics.inbound);
        let cases = self.topics.name(&self.topics.cases);
        let case_events = self.topics.name(&self.topics.case_events);
        blocking(move || {
            let count = |topic: &str| -> Result<usize, DispatchError> {
                let m = consumer.fetch_metadata(Some(topic), KAFKA_CALL_TIMEOUT)?;
                m.topics()
                    .iter()
                    .find(|t| t.name() == topic && t.error().is_none())
                    .map(|t| t.partitions().len())
                    .filter(|n| *n > 0)
                    .ok_or_else(|| DispatchError::MissingTopic(topic.to_string()))
            };
            let i = count(&inbound)?;
            for other in [cases, case_events] {
                let c = count(&other)?;
                if i != c {
                    return Err(DispatchError::PartitionMismatch {
                        cases: other,
                        cases_partitions: c,
                        inbound,
                        inbound_partitions: i,
                    });
                }
            }
            Ok(())
        })
        .await
    }

    async fn restore(&self, partition: i32) -> Result<CaseState, DispatchError> {
        let kafka = self.kafka.clone();
        let topic = self.topics.name(&self.topics.cases);
        let group = self.topics.name(&self.settings.group_id);
        let settings = self.dedupe;
        // What the receiver may forget while restoring: what this process's ledger read.
        let keep = self.receipts_kept_secs().map(|keep| {
            let read = self
                .ledger
                .as_ref()
                .and_then(|l| l.read_to(&topic, partition));
            (keep, read)
        });
        let started = Instant::now();
        let (state, records) = blocking(move || {
            restore_partition(
                &kafka,
                &group,
                &topic,
                partition,
                settings,
                keep,
                RESTORE_TIMEOUT,
            )
        })
        .await?;
        tracing::info!(
            partition,
            records,
            petitions = state.petitions(),
            open_cases = state.open_cases(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "case state restored"
        );
        Ok(state)
    }
}

fn parse_petition(payload: &[u8]) -> Option<(Value, Petition)> {
    let value: Value = serde_json::from_slice(payload).ok()?;
    // Deserialized from the borrowed value: no copy of the whole petition per record.
    let petition = Petition::deserialize(&value).ok()?;
    Some((value, petition))
}

/// Reads one partition of `petitions.cases` (committed records only) up to the end it
/// had when the restore began, and rebuilds its state. Returns the state and the number
/// of records read.
///
/// Records are applied as they arrive ([`Rebuild`]); should a partition hold records out
/// of the order they were decided in, it is read again and restored sorted.
pub fn restore_partition(
    kafka: &KafkaSettings,
    group: &str,
    topic: &str,
    partition: i32,
    settings: DedupeSettings,
    receipts: Option<(i64, Option<i64>)>,
    timeout: Duration,
) -> Result<(CaseState, usize), DispatchError> {
    let rebuild = |r: Rebuild| {
        let r = r.forgetting_receipts_after(receipts.map(|r| r.0), receipts.and_then(|r| r.1));
        rebuild_partition(kafka, group, topic, partition, timeout, r)
    };
    if let Some(restored) = rebuild(Rebuild::new(settings))? {
        return Ok(restored);
    }
    rebuild(Rebuild::sorted(settings))?.ok_or_else(|| DispatchError::Restore {
        topic: topic.to_string(),
        partition,
        reason: "a sorted restore refused the records' order".into(),
    })
}

/// Feeds one partition's records to `rebuild`; `None` if it refused their order.
fn rebuild_partition(
    kafka: &KafkaSettings,
    group: &str,
    topic: &str,
    partition: i32,
    timeout: Duration,
    mut rebuild: Rebuild,
) -> Result<Option<(CaseState, usize)>, DispatchError> {
    let mut in_order = true;
    let records = read_partition(
        kafka,
        group,
        topic,
        partition,
        timeout,
        |key, payload, offset| {
            if key.starts_with(super::cases::PETITION_KEY_PREFIX.as_bytes()) {
                return ControlFlow::Continue(());
            }
            match rebuild.record_at(key, payload, offset) {
                Ok(()) => {}
                // State restored without it decides differently: loud.
                Err(RebuildError::Unreadable(e)) => {
                    tracing::error!(partition, offset, error = %e, "unreadable case record skipped");
                }
                Err(e @ RebuildError::OutOfOrder { .. }) => {
                    tracing::warn!(partition, offset, error = %e,
                        "case records out of order: restoring sorted");
                    in_order = false;
                    return ControlFlow::Break(());
                }
            }
            ControlFlow::Continue(())
        },
    )?;
    if !in_order {
        return Ok(None);
    }
    let (state, unreadable) = rebuild.finish();
    for (key, e) in unreadable {
        tracing::error!(partition, key, error = %e, "unreadable lifecycle record skipped");
    }
    Ok(Some((state, records)))
}

/// Reads one partition from its beginning to the end it had when the read began, handing
/// each record's key (empty if none), payload and offset to `visit` until it breaks.
/// Returns the number of records read.
fn read_partition(
    kafka: &KafkaSettings,
    group: &str,
    topic: &str,
    partition: i32,
    timeout: Duration,
    mut visit: impl FnMut(&[u8], &[u8], i64) -> ControlFlow<()>,
) -> Result<usize, DispatchError> {
    let fail = |reason: String| DispatchError::Restore {
        topic: topic.to_string(),
        partition,
        reason,
    };
    let consumer: BaseConsumer = crate::kafka::base_config(kafka)
        // Only for the client's bookkeeping: nothing is committed, partitions are assigned.
        .set("group.id", format!("{group}-restore"))
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        // Big fetches: a restore reads the whole partition as fast as it can.
        .set("max.partition.fetch.bytes", "16777216")
        .set("fetch.max.bytes", "67108864")
        .create()?;
    let (low, high) = consumer.fetch_watermarks(topic, partition, KAFKA_CALL_TIMEOUT)?;
    let mut records = 0;
    if high > low {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, partition, Offset::Beginning)?;
        consumer.assign(&tpl)?;
        let deadline = Instant::now() + timeout;
        loop {
            let idle = match consumer.poll(Duration::from_millis(100)) {
                Some(Ok(m)) => {
                    records += 1;
                    if let Some(payload) = m.payload() {
                        let key = m.key().unwrap_or_default();
                        if visit(key, payload, m.offset()).is_break() {
                            break;
                        }
                    }
                    if m.offset() + 1 >= high {
                        break;
                    }
                    false
                }
                Some(Err(e)) => return Err(fail(e.to_string())),
                None => true,
            };
            // Looking at the position costs a copy of the assignment: only when the
            // stream paused, or now and then.
            if !idle && records % 4096 != 0 {
                continue;
            }
            // A transaction marker may be the last record: the position passes it.
            let position = consumer
                .position()?
                .find_partition(topic, partition)
                .map(|e| e.offset());
            if let Some(Offset::Offset(o)) = position {
                if o >= high {
                    break;
                }
            }
            if Instant::now() > deadline {
                return Err(fail(format!(
                    "not at offset {high} after {}s (an open transaction?)",
                    timeout.as_secs()
                )));
            }
        }
    }
    let _ = consumer.unassign();
    Ok(records)
}

/// The responsibility list's SLAs, in the lifecycle clock's seconds.
struct ListDepartments<'a> {
    list: &'a ActiveList,
    hour_secs: i64,
}

impl crate::lifecycle::Departments for ListDepartments<'_> {
    fn sla_secs(&self, code: &str) -> Option<i64> {
        self.list
            .router
            .list()
            .department(code)
            .map(|d| i64::from(d.sla_hours) * self.hour_secs)
    }
}

/// The `assignment` record: a case assigned to a department or triage again, and why.
fn assignment_record(
    lifecycle: &Lifecycle,
    petition: Option<&Value>,
    now: chrono::DateTime<chrono::Utc>,
) -> Value {
    let last = lifecycle.last.as_ref();
    serde_json::json!({
        "type": RecordKind::Assignment,
        "case_id": lifecycle.case_id,
        "petition": petition,
        "department": lifecycle.department,
        "status": lifecycle.phase.as_str(),
        "reason": last.map(|h| h.status.as_str()),
        "note": last.and_then(|h| h.note.as_deref()),
        "reopened": lifecycle.reopened,
        "deadline": lifecycle.deadline.and_then(|t| chrono::DateTime::from_timestamp(t, 0)).map(|t| t.to_rfc3339()),
        "dispatched_at": now.to_rfc3339(),
        "sources": lifecycle.sources.len(),
    })
}

/// The lifecycle move a new case or a merged report makes, with what it asks for. A
/// merge into a case that has no lifecycle (opened before lifecycles existed, or
/// already finished) moves nothing.
fn lifecycle_move(
    outcome: &Outcome,
    petition: &Petition,
    state: &CaseState,
    now: chrono::DateTime<chrono::Utc>,
    hour_secs: i64,
) -> Option<(Lifecycle, Effects)> {
    let source = Source {
        petition_id: petition.id.clone(),
        channel: petition.channel.clone(),
        source_id: petition.source_id.clone(),
        reporter_name: petition.reporter.name.clone(),
        joined_at: now.timestamp(),
    };
    match outcome {
        Outcome::Resent { .. } => None,
        Outcome::Opened { case, .. } => Some(Lifecycle::opened(
            &case.case_id,
            &case.department,
            case.sla_hours.map(|h| i64::from(h) * hour_secs),
            case.escalated,
            source,
            now.timestamp(),
        )),
        Outcome::Merged {
            report, escalates, ..
        } => {
            let mut lifecycle = state.lifecycle(&report.case_id)?.clone();
            let fx = lifecycle.merged(source, *escalates, now.timestamp());
            Some((lifecycle, fx))
        }
    }
}

/// Stable across restarts on one host and unique per listener, so a restarted instance
/// fences its predecessor's open transaction.
fn default_instance_id(listen_port: u16) -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into());
    let host: String = host
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{host}-{listen_port}")
}

/// Test hook: `GATEWAY_FAULT_CRASH_BEFORE_COMMIT=<n>` flushes the n-th transaction's
/// records to the broker and aborts the process before committing, so tests can prove
/// that such a crash neither loses nor doubles anything.
fn crash_before_commit(number: u64, producer: &FutureProducer) {
    if let Ok(n) = std::env::var("GATEWAY_FAULT_CRASH_BEFORE_COMMIT") {
        if n.trim().parse::<u64>().ok() == Some(number) {
            let _ = producer.flush(Duration::from_secs(10));
            eprintln!("fault injection: aborting before committing transaction {number}");
            std::process::abort();
        }
    }
}

/// The department a case's next assignment corrects, if any: the department holding it,
/// or, for a case in triage because a department returned it, that department (the list
/// sent it there; the department said no). `None` for a case the list left in triage.
fn assigned_away_from(lifecycle: &Lifecycle) -> Option<String> {
    if lifecycle.department != TRIAGE {
        return Some(lifecycle.department.clone());
    }
    lifecycle.returned_by.clone()
}

/// The example a center's assignment teaches: the center (`department` "center") moving
/// a case to `to_department`, out of triage the list left it in, or away from the
/// department `before` that held or returned it (a correction). The text, label, region
/// and channel are the case's first petition's.
fn center_example(
    status: &crate::lifecycle::StatusEvent,
    before: Option<&str>,
    petition: Option<&Value>,
    now: chrono::DateTime<chrono::Utc>,
) -> Option<Example> {
    if status.status != "reassigned" || status.department != crate::lifecycle::CENTER {
        return None;
    }
    let to = status.to_department.clone()?;
    let petition: Petition = serde_json::from_value(petition?.clone()).ok()?;
    let corrected_from = before.filter(|b| *b != TRIAGE);
    Some(Example::assigned(
        &status.case_id,
        &petition,
        &to,
        corrected_from,
        now.to_rfc3339(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dispatch::learning::ExampleSource;
    use crate::dispatch::responsibility::ResponsibilityList;
    use crate::dispatch::router::Router;
    use crate::normalize::region::Gazetteer;
    use crate::normalize::schema::Schemas;

    fn router() -> Router {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(root.join("config/gazetteer.toml")).expect("gazetteer");
        let g: Gazetteer = toml::from_str(&text).expect("gazetteer parses");
        let list =
            ResponsibilityList::load(&root.join("config/responsibility.toml"), &g).expect("list");
        Router::new(list)
    }

    fn petition() -> Value {
        serde_json::json!({
            "id": crate::petition::petition_id("hotline", "RC-1"), "channel": "hotline",
            "source_id": "RC-1", "kind": "complaint", "urgency": "normal",
            "text": "宁津街道东墩村4号楼暖气不热", "reported_at": "2026-11-24T09:00:00+08:00",
            "received_at": "2026-11-24T09:00:05+08:00",
            "trace_id": "0af7651916cd43dd8448eb211c80319c",
            "location": {"region": {"code": "371082003", "level": "street", "resolved_by": "text"}},
            "reporter": {"phone": "+8613800000000"}, "attachments": []
        })
    }

    /// Every record a department topic gets keeps `department-record.v1`, and the
    /// schema tells the kinds apart (a `report` without its evidence is refused).
    #[test]
    fn department_records_keep_their_schema() {
        let schemas = Schemas::compile().expect("schemas");
        let value = petition();
        let p: Petition = serde_json::from_value(value.clone()).expect("petition");
        let routing = router().route(&p);
        let merge = MergeDecision {
            case_id: "case-1".into(),
            score: 0.42,
            matched: vec!["building:4".into()],
        };
        let case = DispatchRecord {
            kind: RecordKind::Case,
            case_id: "case-1",
            department: None,
            petition: &value,
            routing: &routing,
            list_version: "v1",
            dispatched_at: "2026-11-24T01:00:05.000Z",
            sla_hours: Some(72),
            deadline: Some("2026-11-27T01:00:05.000Z"),
            merge: None,
        };
        let report = DispatchRecord {
            kind: RecordKind::Report,
            department: Some("heating"),
            sla_hours: None,
            deadline: None,
            merge: Some(&merge),
            ..case
        };
        let source = Source {
            petition_id: p.id.clone(),
            channel: "hotline".into(),
            source_id: "RC-1".into(),
            reporter_name: None,
            joined_at: 0,
        };
        let (lifecycle, _) = Lifecycle::opened("case-1", "heating", Some(3600), false, source, 0);
        let assignment = assignment_record(&lifecycle, Some(&value), chrono::Utc::now());
        let records = [
            serde_json::to_value(&case).expect("case"),
            serde_json::to_value(&report).expect("report"),
            assignment,
        ];
        for (record, kind) in records.iter().zip(["case", "report", "assignment"]) {
            assert_eq!(record["type"], kind);
            let errors = schemas.department_record_errors(record);
            assert!(errors.is_empty(), "{kind}: {errors:?}\n{record}");
        }
        let without_evidence = DispatchRecord {
            merge: None,
            ..report
        };
        let value = serde_json::to_value(&without_evidence).expect("report");
        assert!(!schemas.department_record_errors(&value).is_empty());
    }

    #[test]
    fn a_center_assignment_is_an_example_and_says_what_it_corrects() {
        struct Sla;
        impl crate::lifecycle::Departments for Sla {
            fn sla_secs(&self, _: &str) -> Option<i64> {
                Some(72 * 3600)
            }
        }
        let source = Source {
            petition_id: "c1".into(),
            channel: "hotline".into(),
            source_id: "RC1".into(),
            reporter_name: None,
            joined_at: 0,
        };
        let status = |status: &str, by: &str, to: Option<&str>| crate::lifecycle::StatusEvent {
            case_id: "c1".into(),
            status: status.into(),
            department: by.into(),
            to_department: to.map(str::to_string),
            note: Some("说明".into()),
            at: "2026-11-24T10:00:00+08:00".into(),
            operator: None,
        };
        // Left in triage by the list: nothing to correct.
        let (triage, _) = Lifecycle::opened("c1", TRIAGE, None, false, source.clone(), 0);
        assert_eq!(assigned_away_from(&triage), None);
        // Routed to water, returned by water: the assignment corrects water.
        let (mut water, _) = Lifecycle::opened("c1", "water", Some(3600), false, source, 0);
        assert_eq!(assigned_away_from(&water).as_deref(), Some("water"));
        water
            .apply(&status("returned", "water", None), 10, &Sla)
            .expect("returned");
        assert_eq!(assigned_away_from(&water).as_deref(), Some("water"));

        let now = chrono::Utc::now();
        let assign = status("reassigned", crate::lifecycle::CENTER, Some("transport"));
        let example =
            center_example(&assign, Some("water"), Some(&petition()), now).expect("an example");
        assert_eq!(example.department, "transport");
        assert_eq!(example.source, ExampleSource::Correction);
        assert_eq!(example.corrected_from.as_deref(), Some("water"));
        assert!(!example.text.is_empty());
        let example = center_example(&assign, None, Some(&petition()), now).expect("an example");
        assert_eq!(example.source, ExampleSource::Center);
        // A department moving its own case, or no petition to learn from: no example.
        let by_department = status("reassigned", "water", Some("transport"));
        assert_eq!(
            center_example(&by_department, None, Some(&petition()), now),
            None
        );
        assert_eq!(center_example(&assign, None, None, now), None);
    }
}
