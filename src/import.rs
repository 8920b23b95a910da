//! `petition-gateway import FILE`: publishes a JSONL file in the sample's format
//! (`channel` + `payload` or `payload_xml`, optional `at`) onto `petitions.inbound` through
//! the same mapping, normalization and idempotent producer as live intake. For bulk
//! imports of another system's backlog, load generation and crash tests.
//!
//! Lines are published in file order (queued one after another, acknowledged in a
//! window), so each region's reports reach the dispatcher in the order of the file, and
//! a second import of the same file adds nothing (same petition ids).

use crate::config::Loaded;
use crate::dispatch::reload;
use crate::intake::push::prepare_petition;
use crate::intake::IntakeContext;
use crate::kafka::topics::ensure_topics;
use crate::kafka::{PublishError, Publisher};
use crate::normalize::schema::Schemas;
use crate::replay::native_payload;
use serde_json::Value;
use std::collections::{HashMap, VecDeque};
use std::io::BufRead;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Acknowledgements awaited at most at once; bounds memory, keeps the producer busy.
const WINDOW: usize = 512;

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("import input: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Schema(#[from] crate::normalize::schema::SchemaError),
    #[error(transparent)]
    Topics(#[from] crate::kafka::topics::TopicError),
    #[error("line {line}: {source}")]
    Publish { line: usize, source: PublishError },
    #[error(transparent)]
    Client(PublishError),
}

impl ImportError {
    pub fn retryable(&self) -> bool {
        match self {
            ImportError::Publish { source, .. } | ImportError::Client(source) => source.retryable(),
            ImportError::Topics(e) => e.retryable(),
            ImportError::Io(_) | ImportError::Schema(_) => false,
        }
    }
}

#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ImportStats {
    pub lines: usize,
    pub published: usize,
    pub rejected: usize,
}

/// Publishes every line; `rate` paces it (petitions per second). Rejected lines are
/// reported on standard error with each problem and its path, and counted.
pub async fn import(
    loaded: Loaded,
    input: impl BufRead,
    rate: Option<u32>,
) -> Result<ImportStats, ImportError> {
    let settings = &loaded.settings;
    let publisher = Publisher::new(&settings.kafka).map_err(ImportError::Client)?;
    ensure_topics(
        &settings.kafka,
        &crate::server::gateway_topics(
            settings,
            &loaded.responsibility,
            &crate::server::callback_channels(&loaded.connectors),
        ),
    )
    .await?;
    let ctx = IntakeContext {
        publisher: publisher.clone(),
        topics: settings.topics.clone(),
        regions: Arc::new(loaded.regions),
        schemas: Arc::new(Schemas::compile()?),
        ready: Arc::new(crate::kafka::health::Readiness::ready_now()),
        list: reload::fixed(loaded.responsibility, "import"),
        ledger: Default::default(),
    };
    let connectors: HashMap<&str, _> = loaded
        .connectors
        .iter()
        .map(|c| (c.definition.name(), &c.definition))
        .collect();
    let topic = settings.topics.name(&settings.topics.inbound);
    let started = Instant::now();
    let mut stats = ImportStats::default();
    let mut pending = VecDeque::new();
    for (n, line) in input.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let line_no = n + 1;
        stats.lines += 1;
        if let Some(rate) = rate.filter(|r| *r > 0) {
            let due = started + Duration::from_secs_f64(stats.lines as f64 / f64::from(rate));
            tokio::time::sleep_until(due.into()).await;
        }
        let prepared = serde_json::from_str::<Value>(&line)
            .map_err(|e| format!("not JSON: {e}"))
            .and_then(|input| {
                let channel = input
                    .get("channel")
                    .and_then(Value::as_str)
                    .ok_or("no channel")?
                    .to_string();
                let def = connectors
                    .get(channel.as_str())
                    .ok_or_else(|| format!("no connector for channel {channel:?}"))?;
                let payload = native_payload(&input)?;
                let received_at = input
                    .get("at")
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .unwrap_or_else(|| chrono::Utc::now().to_rfc3339());
                let trace_id = format!("{:032x}", rand::random::<u128>());
                prepare_petition(&ctx, def, &payload, &received_at, &trace_id).map_err(|errors| {
                    errors
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join("; ")
                })
            });
        let prepared = match prepared {
            Ok(p) => p,
            Err(e) => {
                eprintln!("line {line_no}: rejected: {e}");
                stats.rejected += 1;
                continue;
            }
        };
        let ack = publisher
            .enqueue(
                &topic,
                &prepared.petition.location.region.code,
                &prepared.record,
                prepared.headers,
            )
            .map_err(|source| ImportError::Publish {
                line: line_no,
                source,
            })?;
        pending.push_back((line_no, ack));
        if pending.len() >= WINDOW {
            settle_one(&mut pending, &mut stats).await?;
        }
    }
    while !pending.is_empty() {
        settle_one(&mut pending, &mut stats).await?;
    }
    Ok(stats)
}

async fn settle_one<F>(
    pending: &mut VecDeque<(usize, F)>,
    stats: &mut ImportStats,
) -> Result<(), ImportError>
where
    F: std::future::Future<Output = Result<(i32, i64), PublishError>>,
{
    if let Some((line, ack)) = pending.pop_front() {
        // The producer already retried within its message timeout: an import that
        // cannot be stored stops, so the operator reruns it (ids make reruns harmless).
        ack.await
            .map_err(|source| ImportError::Publish { line, source })?;
        stats.published += 1;
    }
    Ok(())
}
