//! Which gateway instance polls which channel, decided by Kafka: instances form one
//! consumer group on the `gateway.poll-leases` topic (no records; only the assignment
//! matters), and a channel is polled by whoever holds its partition. Before a partition
//! is handed to another instance, the rebalance callback stops the local poller and
//! waits for it, so two instances never poll one channel at the same time.
//!
//! The consumer runs on its own OS thread: its callbacks block, and rdkafka's poll is a
//! blocking call that must stay off the async threads.

use super::poll::{PollChannel, Poller};
use crate::config::KafkaSettings;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::ClientContext;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::runtime::Handle;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Partitions of the lease topic; channels map onto them by a stable hash.
pub const LEASE_PARTITIONS: i32 = 8;

/// FNV-1a: stable across builds and platforms, unlike std's hasher.
pub fn lease_partition(channel: &str) -> i32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in channel.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    (h % LEASE_PARTITIONS as u32) as i32
}

struct Running {
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

struct LeaseContext {
    runtime: Handle,
    poller: Arc<Poller>,
    channels: Vec<Arc<PollChannel>>,
    running: Mutex<HashMap<String, Running>>,
    shutdown: CancellationToken,
}

impl LeaseContext {
    fn channels_of(&self, partitions: &[i32]) -> Vec<Arc<PollChannel>> {
        self.channels
            .iter()
            .filter(|c| partitions.contains(&lease_partition(c.definition.name())))
            .cloned()
            .collect()
    }

    fn start(&self, partitions: &[i32]) {
        if self.shutdown.is_cancelled() {
            return;
        }
        let Ok(mut running) = self.running.lock() else {
            return;
        };
        for ch in self.channels_of(partitions) {
            let name = ch.definition.name().to_string();
            if running.contains_key(&name) {
                continue;
            }
            tracing::info!(channel = %name, "poll lease acquired");
            let cancel = self.shutdown.child_token();
            let poller = self.poller.clone();
            let token = cancel.clone();
            let task = self
                .runtime
                .spawn(async move { poller.run(ch, token).await });
            running.insert(name, Running { cancel, task });
        }
    }

    /// Stops the pollers of `partitions` (all when None) and waits for them to finish.
    fn stop(&self, partitions: Option<&[i32]>) {
        let stopping: Vec<(String, Running)> = match self.running.lock() {
            Ok(mut running) => {
                let names: Vec<String> = running
                    .keys()
                    .filter(|n| partitions.is_none_or(|p| p.contains(&lease_partition(n))))
                    .cloned()
                    .collect();
                names
                    .into_iter()
                    .filter_map(|n| running.remove(&n).map(|r| (n, r)))
                    .collect()
            }
            Err(_) => Vec::new(),
        };
        for (name, r) in stopping {
            r.cancel.cancel();
            // We are on the lease thread, not a runtime thread, so blocking here is fine.
            let finished = self
                .runtime
                .block_on(async { tokio::time::timeout(Duration::from_secs(30), r.task).await });
            if finished.is_err() {
                tracing::error!(channel = %name, "poller did not stop within 30 s");
            }
            tracing::info!(channel = %name, "poll lease released");
        }
    }
}

impl ClientContext for LeaseContext {}

impl ConsumerContext for LeaseContext {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            let partitions: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
            self.stop(Some(&partitions));
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            let partitions: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
            self.start(&partitions);
        }
    }
}

/// Joins the lease group and runs the pollers this instance is assigned, until `cancel`.
/// Returns the lease thread; it exits after stopping every poller.
pub fn spawn(
    kafka: &KafkaSettings,
    group_id: &str,
    topic: &str,
    poller: Arc<Poller>,
    channels: Vec<Arc<PollChannel>>,
    cancel: CancellationToken,
) -> Result<std::thread::JoinHandle<()>, rdkafka::error::KafkaError> {
    let context = LeaseContext {
        runtime: Handle::current(),
        poller,
        channels,
        running: Mutex::new(HashMap::new()),
        shutdown: cancel.clone(),
    };
    let consumer: BaseConsumer<LeaseContext> = crate::kafka::base_config(kafka)
        .set("group.id", group_id)
        .set("enable.auto.commit", "false")
        // Eager protocol: every partition is revoked before any is reassigned.
        .set("partition.assignment.strategy", "roundrobin")
        .set("session.timeout.ms", "10000")
        .set("heartbeat.interval.ms", "1000")
        .create_with_context(context)?;
    consumer.subscribe(&[topic])?;
    let handle = std::thread::Builder::new()
        .name("poll-leases".into())
        .spawn(move || {
            while !cancel.is_cancelled() {
                // No records are ever written; polling serves the group's callbacks.
                let _ = consumer.poll(Duration::from_millis(200));
            }
            consumer.context().stop(None);
            consumer.unsubscribe();
        })
        .map_err(|e| rdkafka::error::KafkaError::Subscription(e.to_string()))?;
    Ok(handle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_map_to_stable_partitions() {
        assert_eq!(
            lease_partition("leader-board"),
            lease_partition("leader-board")
        );
        for name in ["leader-board", "supervision", "x", ""] {
            assert!((0..LEASE_PARTITIONS).contains(&lease_partition(name)));
        }
    }
}
