//! Kafka plumbing shared by the stages: the idempotent publisher, CloudEvents headers,
//! topic provisioning and broker health.

pub mod cloudevents;
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
