//! The examples topic (`routing.examples`: one partition, compacted, keyed by case id).
//! The dispatcher writes an example in the transaction that applies the center's
//! assignment; every instance reads the topic from the beginning and keeps following it,
//! so every instance and every restart learns the same examples in the same order. An
//! empty value (a tombstone) forgets the case's example: that is how an operator
//! removes a wrong one (`petition-gateway learned --forget CASE_ID`).

use super::{Example, Learner};
use crate::config::{KafkaSettings, TopicSettings};
use crate::dispatch::reload::ListHandle;
use crate::dispatch::responsibility::ResponsibilityList;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The model every decision of this instance reads.
pub type SharedLearner = Arc<RwLock<Learner>>;

#[derive(Debug, thiserror::Error)]
pub enum ExamplesError {
    #[error("examples topic {topic}: {source}")]
    Kafka {
        topic: String,
        source: rdkafka::error::KafkaError,
    },
    #[error("seed file {file}: {reason}")]
    Seed { file: PathBuf, reason: String },
}

impl ExamplesError {
    /// A broker problem passes; a seed file that cannot be read stays unreadable.
    pub fn retryable(&self) -> bool {
        matches!(self, Self::Kafka { .. })
    }
}

/// Reads a seed file of labeled history (one example per line, `source` seed), for a
/// model that starts from last year's cases rather than from nothing.
pub fn read_seed(file: &std::path::Path) -> Result<Vec<Example>, ExamplesError> {
    let seed = |reason: String| ExamplesError::Seed {
        file: file.to_path_buf(),
        reason,
    };
    let text = std::fs::read_to_string(file).map_err(|e| seed(e.to_string()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str::<Example>(l).map_err(|e| seed(format!("line {}: {e}", i + 1)))
        })
        .collect()
}

/// Applies one record of the topic: an example, or a tombstone.
pub fn apply(
    learner: &mut Learner,
    key: Option<&[u8]>,
    payload: Option<&[u8]>,
    list: &ResponsibilityList,
) {
    match payload {
        Some(bytes) if !bytes.is_empty() => match serde_json::from_slice::<Example>(bytes) {
            Ok(example) => learner.learn(example, list),
            Err(e) => tracing::warn!(error = %e, "unreadable example skipped"),
        },
        _ => {
            if let Some(case_id) = key.and_then(|k| std::str::from_utf8(k).ok()) {
                learner.forget(case_id);
            }
        }
    }
}

/// A new model with the seed file's examples learned, if there is a seed.
fn seeded(
    settings: super::LearningSettings,
    seed: Option<&std::path::Path>,
    list: &ListHandle,
) -> Result<Learner, ExamplesError> {
    let mut learner = Learner::new(settings);
    if let Some(file) = seed {
        let active = list.borrow().clone();
        for example in read_seed(file)? {
            learner.learn(example, active.router.list());
        }
    }
    Ok(learner)
}

/// A reader of committed records only (an aborted transaction teaches nothing), that
/// commits nothing: every reader starts from the beginning.
fn examples_consumer(
    kafka: &KafkaSettings,
    topics: &TopicSettings,
    group: &str,
) -> Result<BaseConsumer, rdkafka::error::KafkaError> {
    crate::kafka::consumer_config(kafka)
        .set("group.id", topics.name(group))
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .create()
}

/// The topic's one partition, from its first record.
fn from_the_beginning(
    consumer: &BaseConsumer,
    topic: &str,
) -> Result<(), rdkafka::error::KafkaError> {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)?;
    consumer.assign(&tpl)
}

/// Follows the examples topic on a thread of its own until cancelled, learning each
/// example as it is committed (read_committed: an aborted transaction teaches nothing).
/// A broker failure starts the reading over, from the seed and the topic's beginning.
pub fn follow(
    kafka: KafkaSettings,
    topics: TopicSettings,
    learner: SharedLearner,
    list: ListHandle,
    seed: Option<PathBuf>,
    cancel: CancellationToken,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut backoff = Duration::from_millis(500);
        while !cancel.is_cancelled() {
            match read(&kafka, &topics, &learner, &list, seed.as_deref(), &cancel) {
                Ok(()) => break,
                Err(e) if e.retryable() => {
                    tracing::warn!(error = %e, "examples reader failed; reading again");
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
                Err(e) => {
                    tracing::error!(error = %e, "the learned router stays empty");
                    break;
                }
            }
        }
    })
}

fn read(
    kafka: &KafkaSettings,
    topics: &TopicSettings,
    learner: &SharedLearner,
    list: &ListHandle,
    seed: Option<&std::path::Path>,
    cancel: &CancellationToken,
) -> Result<(), ExamplesError> {
    let topic = topics.name(&topics.examples);
    let fail = |source| ExamplesError::Kafka {
        topic: topic.clone(),
        source,
    };
    let settings = learner.read().map(|l| l.settings).unwrap_or_default();
    let fresh = seeded(settings, seed, list)?;
    let consumer = examples_consumer(kafka, topics, "examples-reader").map_err(fail)?;
    from_the_beginning(&consumer, &topic).map_err(fail)?;
    // Read from the start again: forget what an earlier attempt learned.
    if let Ok(mut l) = learner.write() {
        *l = fresh;
    }
    while !cancel.is_cancelled() {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                let active = list.borrow().clone();
                if let Ok(mut l) = learner.write() {
                    apply(&mut l, m.key(), m.payload(), active.router.list());
                }
            }
            Some(Err(e)) => return Err(fail(e)),
            None => {}
        }
    }
    Ok(())
}

/// Everything the examples topic holds now (up to its high watermark), learned in order
/// after the seed: what `petition-gateway learned` lists.
pub fn load(
    kafka: &KafkaSettings,
    topics: &TopicSettings,
    settings: super::LearningSettings,
    list: &ListHandle,
    seed: Option<&std::path::Path>,
) -> Result<Learner, ExamplesError> {
    let topic = topics.name(&topics.examples);
    let fail = |source| ExamplesError::Kafka {
        topic: topic.clone(),
        source,
    };
    let mut learner = seeded(settings, seed, list)?;
    let consumer = examples_consumer(kafka, topics, "examples-lister").map_err(fail)?;
    use rdkafka::error::KafkaError;
    use rdkafka::types::RDKafkaErrorCode as Code;
    let (low, high) = match consumer.fetch_watermarks(&topic, 0, Duration::from_secs(10)) {
        Ok(marks) => marks,
        // No topic yet (no gateway started on this cluster): nothing was learned.
        Err(KafkaError::MetadataFetch(
            Code::UnknownPartition | Code::UnknownTopic | Code::UnknownTopicOrPartition,
        )) => return Ok(learner),
        Err(e) => return Err(fail(e)),
    };
    if high <= low {
        return Ok(learner);
    }
    from_the_beginning(&consumer, &topic).map_err(fail)?;
    let active = list.borrow().clone();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::time::Instant::now() < deadline {
        if let Some(m) = consumer.poll(Duration::from_millis(200)) {
            let m = m.map_err(fail)?;
            apply(&mut learner, m.key(), m.payload(), active.router.list());
        }
        // The position passes transaction markers too.
        let position = consumer.position().map_err(fail)?;
        let reached = position
            .elements()
            .iter()
            .any(|e| matches!(e.offset(), Offset::Offset(o) if o >= high));
        if reached {
            return Ok(learner);
        }
    }
    Err(fail(rdkafka::error::KafkaError::MessageConsumption(
        rdkafka::types::RDKafkaErrorCode::OperationTimedOut,
    )))
}

/// Publishes a tombstone for a case's example: every instance forgets it.
pub fn forget(
    kafka: &KafkaSettings,
    topics: &TopicSettings,
    case_id: &str,
) -> Result<(), ExamplesError> {
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    let topic = topics.name(&topics.examples);
    let fail = |source| ExamplesError::Kafka {
        topic: topic.clone(),
        source,
    };
    let producer: BaseProducer = crate::kafka::base_config(kafka)
        .set("enable.idempotence", "true")
        .create()
        .map_err(fail)?;
    producer
        .send(
            BaseRecord::<str, [u8]>::to(&topic)
                .partition(0)
                .key(case_id),
        )
        .map_err(|(e, _)| fail(e))?;
    producer.flush(Duration::from_secs(10)).map_err(fail)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dispatch::responsibility::ResponsibilityList;
    use crate::normalize::region::Gazetteer;

    fn list() -> ListHandle {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let g =
            Gazetteer::load(&root.join("config/gazetteer.toml")).unwrap_or_else(|e| panic!("{e}"));
        let list = ResponsibilityList::load(&root.join("config/responsibility.toml"), &g)
            .unwrap_or_else(|e| panic!("{e:?}"));
        crate::dispatch::reload::fixed(list, "test")
    }

    fn example(case: &str) -> Example {
        Example {
            case_id: case.into(),
            text: "小区门口共享单车乱停乱放，人行道堵死了".into(),
            region: "371082001".into(),
            channel: "hotline".into(),
            label: None,
            department: "urban-management".into(),
            source: super::super::ExampleSource::Seed,
            corrected_from: None,
            at: "2026-01-01T00:00:00+08:00".into(),
        }
    }

    #[test]
    fn records_teach_and_tombstones_forget() {
        let handle = list();
        let list = handle.borrow().router.list().clone();
        let mut learner = Learner::default();
        let bytes = serde_json::to_vec(&example("c1")).unwrap_or_default();
        apply(&mut learner, Some(b"c1"), Some(&bytes), &list);
        apply(&mut learner, Some(b"c2"), Some(b"not an example"), &list);
        assert_eq!(learner.len(), 1);
        apply(&mut learner, Some(b"c1"), None, &list);
        assert!(learner.is_empty());
        assert_eq!(learner.version(), 2);
    }

    #[test]
    fn a_seed_file_is_read_or_its_line_named() {
        let dir = std::env::temp_dir().join(format!("seed-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        let good = dir.join("good.jsonl");
        let line = serde_json::to_string(&example("s1")).unwrap_or_default();
        std::fs::write(&good, format!("{line}\n\n{line}\n")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(read_seed(&good).map(|s| s.len()).ok(), Some(2));
        let bad = dir.join("bad.jsonl");
        std::fs::write(&bad, format!("{line}\n{{\"case_id\": 1}}\n"))
            .unwrap_or_else(|e| panic!("{e}"));
        let e = read_seed(&bad)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("bad.jsonl") && e.contains("line 2"), "{e}");
        assert!(read_seed(&dir.join("missing.jsonl")).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
