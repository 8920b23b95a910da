//! Topic provisioning (broker health is in `health`).

use crate::config::KafkaSettings;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum TopicError {
    #[error("kafka admin client: {0}")]
    Client(rdkafka::error::KafkaError),
    #[error("creating topic {topic}: {code:?}")]
    Create {
        topic: String,
        code: RDKafkaErrorCode,
    },
}

impl TopicError {
    pub fn retryable(&self) -> bool {
        true
    }
}

/// A topic the gateway needs.
#[derive(Debug, Clone)]
pub struct TopicSpec {
    pub name: String,
    /// `None`: the configured default.
    pub partitions: Option<i32>,
    /// Log compaction (latest value per key), for state topics.
    pub compacted: bool,
}

impl TopicSpec {
    pub fn plain(name: String) -> Self {
        Self {
            name,
            partitions: None,
            compacted: false,
        }
    }
}

/// Creates the topics that do not exist yet (existing ones are left as they are).
pub async fn ensure_topics(
    settings: &KafkaSettings,
    specs: &[TopicSpec],
) -> Result<(), TopicError> {
    let admin: AdminClient<DefaultClientContext> = super::base_config(settings)
        .create()
        .map_err(TopicError::Client)?;
    let new_topics: Vec<NewTopic<'_>> = specs
        .iter()
        .map(|t| {
            let topic = NewTopic::new(
                &t.name,
                t.partitions.unwrap_or(settings.partitions),
                TopicReplication::Fixed(settings.replication_factor),
            );
            if t.compacted {
                topic.set("cleanup.policy", "compact")
            } else {
                topic
            }
        })
        .collect();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results = admin
        .create_topics(new_topics.iter(), &opts)
        .await
        .map_err(TopicError::Client)?;
    for r in results {
        if let Err((topic, code)) = r {
            if code != RDKafkaErrorCode::TopicAlreadyExists {
                return Err(TopicError::Create { topic, code });
            }
        }
    }
    Ok(())
}
