//! Kafka plumbing shared by the stages: the idempotent publisher, CloudEvents headers,
//! topic provisioning and broker health.

pub mod cloudevents;
pub mod health;
pub mod publisher;
pub mod topics;

pub use publisher::{PublishError, Publisher};

use crate::config::KafkaSettings;
use rdkafka::ClientConfig;

/// Settings every client of ours shares.
pub fn base_config(settings: &KafkaSettings) -> ClientConfig {
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", &settings.bootstrap_servers)
        .set("client.id", &settings.client_id)
        // librdkafka logs connection refusals at error level every few seconds while the
        // broker is down; readiness reports that state instead.
        .set("log_level", "3");
    cfg
}

/// `base_config` for a stage's consumer: fetches held only briefly (see
/// `kafka.fetch_wait_max_ms`).
pub fn consumer_config(settings: &KafkaSettings) -> ClientConfig {
    let mut cfg = base_config(settings);
    cfg.set("fetch.wait.max.ms", settings.fetch_wait_max_ms.to_string());
    cfg
}

/// Moves a consumer back to the first record of each partition in `batch`, so an aborted
/// transaction's input is read again; a partition no longer assigned starts from its
/// committed offset anyway. Blocking (seeks): call it off the async threads.
pub fn rewind<X, C>(
    consumer: &C,
    batch: &[rdkafka::message::OwnedMessage],
    timeout: std::time::Duration,
) -> Result<(), rdkafka::error::KafkaError>
where
    X: rdkafka::consumer::ConsumerContext,
    C: rdkafka::consumer::Consumer<X>,
{
    use rdkafka::message::Message;
    let mut first: std::collections::BTreeMap<(String, i32), i64> = Default::default();
    for m in batch {
        first
            .entry((m.topic().to_string(), m.partition()))
            .or_insert(m.offset());
    }
    let assigned = consumer.assignment()?;
    for ((topic, partition), offset) in first {
        if assigned.find_partition(&topic, partition).is_some() {
            consumer.seek(&topic, partition, rdkafka::Offset::Offset(offset), timeout)?;
        }
    }
    Ok(())
}

/// Waits until every record queued in an open transaction was acknowledged; call it
/// before `commit_transaction`. Committing would wait for them too, but librdkafka's
/// flush inside the commit polls in 100 ms steps when another thread (rust-rdkafka's)
/// takes the delivery reports: awaiting them here first makes each transaction 100 ms
/// faster.
pub async fn acknowledged(
    pending: Vec<rdkafka::producer::DeliveryFuture>,
) -> Result<(), rdkafka::error::KafkaError> {
    for delivery in pending {
        match delivery.await {
            Ok(Ok(_)) => {}
            Ok(Err((e, _))) => return Err(e),
            Err(_) => return Err(rdkafka::error::KafkaError::Canceled),
        }
    }
    Ok(())
}
