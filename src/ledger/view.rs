//! The ledger's data: every case, its reports, its lifecycle and its callbacks' delivery
//! state, as read from `petitions.cases` and `callbacks.delivery`. One reader thread
//! applies records; HTTP handlers and the status router read.

use crate::config::{KafkaSettings, TopicSettings};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// One case as the ledger knows it.
#[derive(Debug, Clone, Default)]
pub struct CaseView {
    /// The `petitions.cases` partition holding it: its dispatcher partition.
    pub partition: i32,
    pub case: Value,
    pub lifecycle: Option<Value>,
    /// The case's first petition as published.
    pub petition: Option<Value>,
    pub reports: Vec<Value>,
    /// Callback id → its final delivery record.
    pub callbacks: HashMap<String, Value>,
}

impl CaseView {
    /// The department working on it now (the routed one before any lifecycle).
    pub fn department(&self) -> &str {
        self.lifecycle
            .as_ref()
            .and_then(|l| l["department"].as_str())
            .or_else(|| self.case["department"].as_str())
            .unwrap_or_default()
    }

    pub fn phase(&self) -> &str {
        self.lifecycle
            .as_ref()
            .and_then(|l| l["phase"].as_str())
            .unwrap_or("dispatched")
    }

    pub fn overdue(&self) -> bool {
        self.lifecycle
            .as_ref()
            .is_some_and(|l| l["overdue"].as_bool() == Some(true))
    }
}

#[derive(Debug, Default)]
pub struct Ledger {
    cases: HashMap<String, CaseView>,
    /// Petition id → case id.
    case_of: HashMap<String, String>,
    /// Deliveries read before their case (the topics are read independently).
    early_callbacks: HashMap<String, Vec<Value>>,
    /// (topic, partition) → the next offset to read.
    positions: HashMap<(String, i32), i64>,
}

pub type SharedLedger = Arc<RwLock<Ledger>>;

impl Ledger {
    pub fn case(&self, id: &str) -> Option<&CaseView> {
        self.cases.get(id)
    }

    pub fn cases(&self) -> impl Iterator<Item = (&String, &CaseView)> {
        self.cases.iter()
    }

    /// The case a petition belongs to.
    pub fn case_of(&self, petition_id: &str) -> Option<&str> {
        self.case_of.get(petition_id).map(String::as_str)
    }

    fn reached(&self, ends: &[(String, i32, i64)]) -> bool {
        ends.iter().all(|(t, p, end)| {
            self.positions
                .get(&(t.clone(), *p))
                .is_some_and(|pos| pos >= end)
        })
    }

    /// Applies one record of `petitions.cases` or `callbacks.delivery`.
    pub fn apply(&mut self, cases_topic: &str, topic: &str, partition: i32, value: &Value) {
        if topic != cases_topic {
            let case = value["case_id"].as_str().unwrap_or_default().to_string();
            let id = value["callback_id"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            match self.cases.get_mut(&case) {
                Some(c) => {
                    c.callbacks.insert(id, value.clone());
                }
                None => self
                    .early_callbacks
                    .entry(case)
                    .or_default()
                    .push(value.clone()),
            }
            return;
        }
        match value["type"].as_str() {
            Some("case") => {
                let id = value["case_id"].as_str().unwrap_or_default().to_string();
                let mut view = CaseView {
                    partition,
                    case: value.clone(),
                    ..CaseView::default()
                };
                if let Some(old) = self.cases.remove(&id) {
                    view.lifecycle = old.lifecycle;
                    view.petition = old.petition;
                    view.reports = old.reports;
                    view.callbacks = old.callbacks;
                }
                for cb in self.early_callbacks.remove(&id).unwrap_or_default() {
                    let cid = cb["callback_id"].as_str().unwrap_or_default().to_string();
                    view.callbacks.insert(cid, cb);
                }
                self.cases.insert(id, view);
            }
            Some("report") => {
                let case = value["case_id"].as_str().unwrap_or_default().to_string();
                let petition = value["petition_id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                self.case_of.insert(petition.clone(), case.clone());
                let view = self.cases.entry(case).or_insert_with(|| CaseView {
                    partition,
                    ..CaseView::default()
                });
                view.reports
                    .retain(|r| r["petition_id"].as_str() != Some(petition.as_str()));
                view.reports.push(value.clone());
            }
            Some("petition") => {
                let case = value["case_id"].as_str().unwrap_or_default().to_string();
                let view = self.cases.entry(case).or_insert_with(|| CaseView {
                    partition,
                    ..CaseView::default()
                });
                view.petition = Some(value["petition"].clone());
            }
            Some("lifecycle") => {
                let case = value["case_id"].as_str().unwrap_or_default().to_string();
                let view = self.cases.entry(case).or_insert_with(|| CaseView {
                    partition,
                    ..CaseView::default()
                });
                view.lifecycle = Some(value.clone());
            }
            _ => {}
        }
    }
}

/// Reads both topics from the beginning, for as long as the gateway runs.
pub fn spawn_reader(
    kafka: KafkaSettings,
    topics: TopicSettings,
    ledger: SharedLedger,
    cancel: CancellationToken,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut backoff = Duration::from_millis(500);
        while !cancel.is_cancelled() {
            match read(&kafka, &topics, &ledger, &cancel) {
                Ok(()) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "ledger reader failed; reading again");
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
    ledger: &SharedLedger,
    cancel: &CancellationToken,
) -> Result<(), rdkafka::error::KafkaError> {
    let cases = topics.name(&topics.cases);
    let delivery = topics.name(&topics.callback_delivery);
    let consumer: BaseConsumer = crate::kafka::consumer_config(kafka)
        .set("group.id", topics.name("ledger-reader"))
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .create()?;
    let mut tpl = TopicPartitionList::new();
    for topic in [&cases, &delivery] {
        let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
        let before = tpl.count();
        for t in metadata.topics().iter().filter(|t| t.error().is_none()) {
            for p in t.partitions() {
                tpl.add_partition_offset(topic, p.id(), Offset::Beginning)?;
            }
        }
        // A topic created a moment ago may not have its partitions in the metadata yet:
        // reading none of it would leave the ledger empty for good.
        if tpl.count() == before {
            return Err(rdkafka::error::KafkaError::MetadataFetch(
                rdkafka::types::RDKafkaErrorCode::UnknownTopicOrPartition,
            ));
        }
    }
    consumer.assign(&tpl)?;
    // Read from the start again: forget what an earlier attempt built.
    if let Ok(mut l) = ledger.write() {
        *l = Ledger::default();
    }
    let mut last_position = Instant::now();
    while !cancel.is_cancelled() {
        let message = consumer.poll(Duration::from_millis(100));
        let idle = match message {
            Some(Ok(m)) => {
                if let Some(Ok(value)) = m.payload().map(serde_json::from_slice::<Value>) {
                    if let Ok(mut l) = ledger.write() {
                        l.apply(&cases, m.topic(), m.partition(), &value);
                        l.positions
                            .insert((m.topic().to_string(), m.partition()), m.offset() + 1);
                    }
                }
                false
            }
            Some(Err(e)) => return Err(e),
            None => true,
        };
        // The position also passes transaction markers, which carry no message.
        if idle || last_position.elapsed() > Duration::from_millis(200) {
            last_position = Instant::now();
            let position = consumer.position()?;
            if let Ok(mut l) = ledger.write() {
                for e in position.elements() {
                    if let Offset::Offset(o) = e.offset() {
                        let key = (e.topic().to_string(), e.partition());
                        let entry = l.positions.entry(key).or_insert(o);
                        *entry = (*entry).max(o);
                    }
                }
            }
        }
    }
    Ok(())
}

/// Waits until the ledger has read everything committed to `petitions.cases` before
/// this call (so a case whose records were committed is known), up to `timeout`.
pub fn wait_caught_up(
    kafka: &KafkaSettings,
    topics: &TopicSettings,
    ledger: &SharedLedger,
    timeout: Duration,
) -> Result<bool, rdkafka::error::KafkaError> {
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
                ends.push((cases.clone(), p.id(), high));
            }
        }
    }
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if ledger.read().is_ok_and(|l| l.reached(&ends)) {
            return Ok(true);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn records_in_any_order_make_one_case_with_its_reports_lifecycle_and_callbacks() {
        let mut l = Ledger::default();
        l.apply(
            "c",
            "d",
            0,
            &json!({"case_id": "k1", "callback_id": "cb1", "state": "delivered"}),
        );
        l.apply(
            "c",
            "c",
            2,
            &json!({"type": "report", "case_id": "k1", "petition_id": "p2"}),
        );
        l.apply(
            "c",
            "c",
            2,
            &json!({"type": "case", "case_id": "k1", "department": "water"}),
        );
        l.apply(
            "c",
            "c",
            2,
            &json!({"type": "report", "case_id": "k1", "petition_id": "k1"}),
        );
        l.apply("c", "c", 2, &json!({"type": "lifecycle", "case_id": "k1", "phase": "accepted", "department": "housing", "overdue": true}));
        let c = l.case("k1").unwrap();
        assert_eq!(c.partition, 2);
        assert_eq!(c.reports.len(), 2);
        assert_eq!(c.callbacks.len(), 1);
        assert_eq!(
            (c.department(), c.phase(), c.overdue()),
            ("housing", "accepted", true)
        );
        assert_eq!(l.case_of("p2"), Some("k1"));
    }
}
