//! Where each poll connector has read up to, in a compacted Kafka topic keyed by channel.
//! Written only after every petition of a page was acknowledged, so a crash re-reads
//! and never skips.

use crate::config::KafkaSettings;
use crate::kafka::Publisher;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Message, OwnedHeaders};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::Value;
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum CursorError {
    #[error("reading cursors from {topic}: {source}")]
    Read {
        topic: String,
        source: rdkafka::error::KafkaError,
    },
    #[error("reading cursors from {topic}: timed out")]
    Timeout { topic: String },
    #[error("storing the cursor of {channel}: {source}")]
    Write {
        channel: String,
        source: Box<crate::kafka::PublishError>,
    },
}

impl CursorError {
    pub fn retryable(&self) -> bool {
        true
    }
}

#[derive(Clone)]
pub struct CursorStore {
    kafka: KafkaSettings,
    topic: String,
    publisher: Publisher,
}

impl CursorStore {
    pub fn new(kafka: KafkaSettings, topic: String, publisher: Publisher) -> Self {
        Self {
            kafka,
            topic,
            publisher,
        }
    }

    /// The last stored cursor of a channel (None: never polled).
    pub async fn load(&self, channel: &str) -> Result<Option<Value>, CursorError> {
        let kafka = self.kafka.clone();
        let topic = self.topic.clone();
        let channel = channel.to_string();
        tokio::task::spawn_blocking(move || read_latest(&kafka, &topic, &channel))
            .await
            .unwrap_or_else(|_| {
                Err(CursorError::Timeout {
                    topic: String::new(),
                })
            })
    }

    pub async fn save(&self, channel: &str, cursor: &Value) -> Result<(), CursorError> {
        let record = serde_json::json!({
            "channel": channel,
            "cursor": cursor,
            "updated_at": chrono::Utc::now().to_rfc3339(),
        });
        let bytes = serde_json::to_vec(&record).unwrap_or_default();
        self.publisher
            .publish(&self.topic, channel, &bytes, OwnedHeaders::new())
            .await
            .map(|_| ())
            .map_err(|source| CursorError::Write {
                channel: channel.to_string(),
                source: Box::new(source),
            })
    }
}

/// Reads the whole (compacted, small) topic up to its end and keeps the channel's last
/// value. Blocking.
fn read_latest(
    kafka: &KafkaSettings,
    topic: &str,
    channel: &str,
) -> Result<Option<Value>, CursorError> {
    let err = |source| CursorError::Read {
        topic: topic.to_string(),
        source,
    };
    let consumer: BaseConsumer = crate::kafka::base_config(kafka)
        .set("group.id", "petition-gateway-cursor-reader")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .create()
        .map_err(err)?;
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .map_err(err)?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    let mut ends = Vec::new();
    let mut tpl = TopicPartitionList::new();
    for p in &partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, *p, Duration::from_secs(10))
            .map_err(err)?;
        if high > low {
            ends.push((*p, high));
            tpl.add_partition_offset(topic, *p, Offset::Beginning)
                .map_err(err)?;
        }
    }
    if ends.is_empty() {
        return Ok(None);
    }
    consumer.assign(&tpl).map_err(err)?;
    let mut latest = None;
    let mut done: Vec<i32> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while done.len() < ends.len() {
        if Instant::now() > deadline {
            return Err(CursorError::Timeout {
                topic: topic.to_string(),
            });
        }
        let Some(result) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let m = result.map_err(err)?;
        if m.key() == Some(channel.as_bytes()) {
            latest = m
                .payload()
                .and_then(|p| serde_json::from_slice::<Value>(p).ok())
                .and_then(|v| v.get("cursor").cloned());
        }
        if let Some((_, end)) = ends.iter().find(|(p, _)| *p == m.partition()) {
            if m.offset() + 1 >= *end && !done.contains(&m.partition()) {
                done.push(m.partition());
            }
        }
    }
    Ok(latest)
}
