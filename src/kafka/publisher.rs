//! The idempotent producer (`enable.idempotence`, `acks=all`). `publish` returns only once
//! Kafka acknowledged the record, which is what lets intake promise a receipt.

use crate::config::KafkaSettings;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::OwnedHeaders;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("kafka did not acknowledge the record on {topic}: {source}")]
    NotAcknowledged { topic: String, source: KafkaError },
    #[error("cannot create the kafka producer: {0}")]
    Client(KafkaError),
}

impl PublishError {
    /// Whether sending the same record again later may succeed.
    pub fn retryable(&self) -> bool {
        match self {
            PublishError::NotAcknowledged { source, .. } => !matches!(
                source.rdkafka_error_code(),
                Some(RDKafkaErrorCode::MessageSizeTooLarge)
                    | Some(RDKafkaErrorCode::InvalidMessage)
                    | Some(RDKafkaErrorCode::TopicAuthorizationFailed)
            ),
            PublishError::Client(_) => false,
        }
    }
}

#[derive(Clone)]
pub struct Publisher {
    producer: FutureProducer,
}

impl Publisher {
    pub fn new(settings: &KafkaSettings) -> Result<Self, PublishError> {
        let producer: FutureProducer = super::base_config(settings)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set(
                "message.timeout.ms",
                settings.message_timeout_ms.to_string(),
            )
            .set("linger.ms", "2")
            .set("compression.type", "lz4")
            .create()
            .map_err(PublishError::Client)?;
        Ok(Self { producer })
    }

    /// Sends one record and waits for the broker's acknowledgement (or the message
    /// timeout). Returns (partition, offset).
    pub async fn publish(
        &self,
        topic: &str,
        key: &str,
        payload: &[u8],
        headers: OwnedHeaders,
    ) -> Result<(i32, i64), PublishError> {
        let record = FutureRecord::to(topic)
            .key(key)
            .payload(payload)
            .headers(headers);
        // Zero queue timeout: a full local queue is reported at once as retryable rather
        // than holding the sender's connection.
        match self.producer.send(record, Duration::from_secs(0)).await {
            Ok(delivery) => Ok((delivery.partition, delivery.offset)),
            Err((source, _)) => Err(PublishError::NotAcknowledged {
                topic: topic.to_string(),
                source,
            }),
        }
    }

    /// Queues a record at once, so records queued one after another keep their order
    /// (what a bulk import needs), and returns a future for Kafka's acknowledgement.
    pub fn enqueue(
        &self,
        topic: &str,
        key: &str,
        payload: &[u8],
        headers: OwnedHeaders,
    ) -> Result<impl std::future::Future<Output = Result<(i32, i64), PublishError>>, PublishError>
    {
        let record = FutureRecord::to(topic)
            .key(key)
            .payload(payload)
            .headers(headers);
        let delivery = self.producer.send_result(record).map_err(|(source, _)| {
            PublishError::NotAcknowledged {
                topic: topic.to_string(),
                source,
            }
        })?;
        let topic = topic.to_string();
        Ok(async move {
            match delivery.await {
                Ok(Ok(d)) => Ok((d.partition, d.offset)),
                Ok(Err((source, _))) => Err(PublishError::NotAcknowledged { topic, source }),
                Err(_) => Err(PublishError::NotAcknowledged {
                    topic,
                    source: KafkaError::Canceled,
                }),
            }
        })
    }

    /// Flushes outstanding records; blocking, so it runs off the async threads.
    pub async fn flush(&self, timeout: Duration) {
        let producer = self.producer.clone();
        let _ = tokio::task::spawn_blocking(move || producer.flush(timeout)).await;
    }
}
