//! Reads `petitions.cases` and `callbacks.delivery` into the ledger's database for as
//! long as the gateway runs. Each batch of records goes in with the offsets after it in
//! one database transaction, and a start resumes from the offsets stored: no record is
//! applied twice or skipped, and a restart does not read history again.

use super::record::LedgerRecord;
use super::store::LedgerError;
use super::Ledger;
use crate::config::{KafkaSettings, TopicSettings};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use serde_json::Value;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Records per database transaction at most; a batch also ends when the topics go
/// quiet or after [`MAX_BATCH_AGE`], so that the ledger lags by a fraction of a second.
const MAX_BATCH: usize = 2000;
const MAX_BATCH_AGE: Duration = Duration::from_millis(200);

#[derive(Debug, thiserror::Error)]
pub enum ReaderError {
    #[error("ledger reader: Kafka: {0}")]
    Kafka(#[from] KafkaError),
    #[error("ledger reader: {0}")]
    Ledger(#[from] LedgerError),
    #[error("ledger reader: topic {0} has no partitions yet")]
    NoPartitions(String),
}

/// Reads both topics into the ledger until `cancel`, starting over (from the offsets
/// stored) after any error. Runs on a thread of its own: rdkafka's polling blocks.
pub fn spawn_reader(
    kafka: KafkaSettings,
    topics: TopicSettings,
    ledger: Ledger,
    cancel: CancellationToken,
) -> std::thread::JoinHandle<()> {
    let runtime = tokio::runtime::Handle::current();
    std::thread::spawn(move || {
        let mut backoff = Duration::from_millis(500);
        while !cancel.is_cancelled() {
            match read(&kafka, &topics, &ledger, &runtime, &cancel) {
                Ok(()) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "ledger reader failed; resuming from the offsets stored");
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
    })
}

fn read(
    kafka: &KafkaSettings,
    topics: &TopicSettings,
    ledger: &Ledger,
    runtime: &tokio::runtime::Handle,
    cancel: &CancellationToken,
) -> Result<(), ReaderError> {
    let cases = topics.name(&topics.cases);
    let delivery = topics.name(&topics.callback_delivery);
    let consumer: BaseConsumer = crate::kafka::consumer_config(kafka)
        .set("group.id", topics.name("ledger-reader"))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        .create()?;
    let timeout = Duration::from_secs(10);
    let cluster = consumer
        .client()
        .fetch_cluster_id(timeout)
        .unwrap_or_default();
    let source = format!("{cluster} {cases},{delivery}");
    let (stored_source, mut stored) = runtime.block_on(ledger.store().offsets())?;
    let mut ends = Vec::new();
    for topic in [&cases, &delivery] {
        let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
        let before = ends.len();
        for t in metadata.topics().iter().filter(|t| t.error().is_none()) {
            for p in t.partitions() {
                let (_, high) = consumer.fetch_watermarks(topic, p.id(), timeout)?;
                ends.push((topic.clone(), p.id(), high));
            }
        }
        // A topic created a moment ago may not have its partitions in the metadata yet:
        // reading none of it would leave the ledger without it for good.
        if ends.len() == before {
            return Err(ReaderError::NoPartitions(topic.clone()));
        }
    }
    // Rows of another cluster, of other topics, or of topics since deleted and created
    // again, describe other petitions.
    let ahead = ends
        .iter()
        .find(|(t, p, high)| stored.get(&(t.clone(), *p)).is_some_and(|next| next > high));
    if stored_source.as_deref() != Some(source.as_str()) || ahead.is_some() {
        if stored_source.is_some() {
            tracing::warn!(
                stored = stored_source.as_deref().unwrap_or_default(),
                configured = %source,
                ahead = ?ahead,
                "the ledger's database describes other topics (another Kafka cluster or topic prefix, or topics created again): forgetting them and reading the configured topics from the start"
            );
        }
        runtime.block_on(
            ledger
                .store()
                .reset(&cluster, &format!("{cases},{delivery}")),
        )?;
        stored.clear();
    }
    ledger.set_positions(stored.clone());
    let mut tpl = TopicPartitionList::new();
    for (topic, partition, _) in &ends {
        let offset = stored
            .get(&(topic.clone(), *partition))
            .map_or(Offset::Beginning, |o| Offset::Offset(*o));
        tpl.add_partition_offset(topic, *partition, offset)?;
    }
    consumer.assign(&tpl)?;
    tracing::info!(resumed = stored.len(), "ledger reader started");

    let mut batch: Vec<LedgerRecord> = Vec::new();
    let mut moved: HashMap<(String, i32), i64> = HashMap::new();
    let mut batch_started = Instant::now();
    let mut last_position = Instant::now();
    while !cancel.is_cancelled() {
        // With records in hand, only what is already fetched joins them: the ledger
        // stores a batch as soon as the consumer has nothing more at hand.
        let wait = if batch.is_empty() && moved.is_empty() {
            Duration::from_millis(50)
        } else {
            Duration::ZERO
        };
        let idle = match consumer.poll(wait) {
            Some(Ok(m)) => {
                if batch.is_empty() && moved.is_empty() {
                    batch_started = Instant::now();
                }
                if let Some(Ok(value)) = m.payload().map(serde_json::from_slice::<Value>) {
                    if let Some(r) = LedgerRecord::parse(&cases, m.topic(), m.partition(), &value) {
                        batch.push(r);
                    }
                }
                moved.insert((m.topic().to_string(), m.partition()), m.offset() + 1);
                false
            }
            Some(Err(e)) => return Err(e.into()),
            None => true,
        };
        // The position also passes transaction markers, which carry no message: without
        // it the ledger would never look caught up to a transactional topic's end.
        if idle || last_position.elapsed() > MAX_BATCH_AGE {
            last_position = Instant::now();
            for e in consumer.position()?.elements() {
                if let Offset::Offset(o) = e.offset() {
                    let key = (e.topic().to_string(), e.partition());
                    let known = moved.get(&key).copied().or_else(|| ledger.position(&key));
                    if known.is_none_or(|k| o > k) {
                        moved.insert(key, o);
                    }
                }
            }
        }
        let full = batch.len() >= MAX_BATCH || batch_started.elapsed() > MAX_BATCH_AGE;
        if !moved.is_empty() && (idle || full) {
            let positions: Vec<((String, i32), i64)> = moved.drain().collect();
            runtime.block_on(ledger.store().apply(&batch, &positions))?;
            batch.clear();
            ledger.advance(positions);
        }
    }
    Ok(())
}

/// Waits until the ledger has stored everything committed to `petitions.cases` before
/// this call (so a case whose records were committed is known), up to `timeout`.
pub fn wait_caught_up(
    kafka: &KafkaSettings,
    topics: &TopicSettings,
    ledger: &Ledger,
    timeout: Duration,
) -> Result<bool, KafkaError> {
    let cases = topics.name(&topics.cases);
    let consumer: BaseConsumer = crate::kafka::base_config(kafka)
        .set("group.id", topics.name("ledger-watermarks"))
        .set("isolation.level", "read_committed")
        .create()?;
    let metadata = consumer.fetch_metadata(Some(&cases), Duration::from_secs(10))?;
    let mut ends = Vec::new();
    for t in metadata.topics() {
        for p in t.partitions() {
            let (low, high) = consumer.fetch_watermarks(&cases, p.id(), Duration::from_secs(10))?;
            // An empty partition has nothing to read (and no position to compare).
            if high > low {
                ends.push(((cases.clone(), p.id()), high));
            }
        }
    }
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if ledger.reached(&ends) {
            return Ok(true);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(false)
}
