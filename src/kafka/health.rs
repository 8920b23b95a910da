//! Broker health: the readiness probe, what `/readyz` says while the gateway is not ready,
//! and how an unreachable broker is reported — one line naming the bootstrap servers and
//! how to start a local broker, not librdkafka's error lines repeated by every client
//! every half second (they are dropped from the log while readiness tells the story).

use crate::config::KafkaSettings;
use rdkafka::consumer::{BaseConsumer, Consumer};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

/// Why a broker could not be reached, as librdkafka's messages tell it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportCause {
    Refused,
    Unresolved,
    Disconnected,
    AllDown,
}

impl TransportCause {
    const ALL: [TransportCause; 4] = [
        TransportCause::Refused,
        TransportCause::Unresolved,
        TransportCause::Disconnected,
        TransportCause::AllDown,
    ];

    pub fn describe(self) -> &'static str {
        match self {
            TransportCause::Refused => "connection refused",
            TransportCause::Unresolved => "the host name does not resolve",
            TransportCause::Disconnected => "the connection was lost",
            TransportCause::AllDown => "no broker answers",
        }
    }

    fn index(self) -> u8 {
        Self::ALL.iter().position(|c| *c == self).unwrap_or(0) as u8 + 1
    }
}

/// Whether a log line of librdkafka's (log target `librdkafka`, or `rdkafka::…` for its
/// error callback) says only that a broker cannot be reached, and why.
pub fn transport_cause(target: &str, message: &str) -> Option<TransportCause> {
    if target != "librdkafka" && !target.starts_with("rdkafka") {
        return None;
    }
    if message.contains("Connection refused") {
        Some(TransportCause::Refused)
    } else if message.contains("Failed to resolve") || message.contains("Name or service not known")
    {
        Some(TransportCause::Unresolved)
    } else if message.contains("Disconnected") {
        Some(TransportCause::Disconnected)
    } else if message.contains("AllBrokersDown")
        || message.contains("BrokerTransportFailure")
        || (message.contains("Connect to ") && message.contains(" failed"))
    {
        Some(TransportCause::AllDown)
    } else {
        None
    }
}

/// The last cause librdkafka gave (0: none yet), and how many lines were dropped.
static LAST_CAUSE: AtomicU8 = AtomicU8::new(0);
static DROPPED: AtomicU64 = AtomicU64::new(0);

/// "All brokers are down" follows every specific failure: it does not replace one.
fn remember(cause: TransportCause) {
    if cause == TransportCause::AllDown {
        let _ = LAST_CAUSE.compare_exchange(0, cause.index(), Ordering::Relaxed, Ordering::Relaxed);
    } else {
        LAST_CAUSE.store(cause.index(), Ordering::Relaxed);
    }
}

/// The most recent reason librdkafka gave for not reaching a broker.
pub fn last_transport_cause() -> Option<TransportCause> {
    let i = LAST_CAUSE.load(Ordering::Relaxed);
    TransportCause::ALL
        .get(usize::from(i).checked_sub(1)?)
        .copied()
}

/// How many of librdkafka's "cannot reach the broker" lines were kept out of the log.
pub fn dropped_transport_lines() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

/// The `log` logger of the `run` command: rdkafka logs through the `log` crate, and this
/// hands every record to tracing (as `tracing_log::LogTracer` does) except librdkafka's
/// connection failures, whose cause it remembers for the readiness probe's one line
/// (see [`Readiness`]).
pub struct QuietBrokerTransport {
    inner: tracing_log::LogTracer,
}

impl QuietBrokerTransport {
    /// Installs it as the `log` logger, passing what the tracing subscriber in force
    /// (set it first) lets through.
    pub fn install() -> Result<(), log::SetLoggerError> {
        log::set_boxed_logger(Box::new(Self {
            inner: tracing_log::LogTracer::new(),
        }))?;
        log::set_max_level(tracing_log::AsLog::as_log(
            &tracing::level_filters::LevelFilter::current(),
        ));
        Ok(())
    }
}

impl log::Log for QuietBrokerTransport {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        self.inner.enabled(metadata)
    }

    fn log(&self, record: &log::Record<'_>) {
        let target = record.target();
        if target == "librdkafka" || target.starts_with("rdkafka") {
            if let Some(cause) = transport_cause(target, &record.args().to_string()) {
                remember(cause);
                DROPPED.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
        self.inner.log(record);
    }

    fn flush(&self) {
        self.inner.flush();
    }
}

/// Why the gateway is not ready, one kind at a time: the log gets a line when the kind
/// changes, `/readyz` the current text every time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotReadyKind {
    Starting,
    Unreachable,
    TopicsMissing,
    NoLeader,
}

/// What `/readyz` answers, set by the readiness probe.
pub struct Readiness {
    ready: AtomicBool,
    state: Mutex<(Option<NotReadyKind>, String)>,
}

impl Default for Readiness {
    fn default() -> Self {
        Self {
            ready: AtomicBool::new(false),
            state: Mutex::new((
                Some(NotReadyKind::Starting),
                "starting: Kafka not checked yet".into(),
            )),
        }
    }
}

impl Readiness {
    /// Ready from the start (`import`: nothing to probe).
    pub fn ready_now() -> Self {
        let r = Self::default();
        r.set_ready();
        r
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// `ready`, or why not.
    pub fn describe(&self) -> String {
        if self.is_ready() {
            return "ready".into();
        }
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        format!("not ready: {}", state.1)
    }

    /// Returns whether this changed readiness.
    pub fn set_ready(&self) -> bool {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        self.ready.store(true, Ordering::Relaxed);
        state.0.take().is_some()
    }

    /// Returns whether the kind of reason changed (ready → not, or another kind).
    pub fn set_not_ready(&self, kind: NotReadyKind, reason: String) -> bool {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        self.ready.store(false, Ordering::Relaxed);
        let changed = state.0 != Some(kind);
        *state = (Some(kind), reason);
        changed
    }
}

/// Why a probe failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeFailure {
    /// No broker answered.
    Unreachable,
    /// The cluster answers, but the topic is missing or has a partition without a leader
    /// (a restarted broker answers metadata before it can take writes).
    NoLeader(String),
}

/// A long-lived client for readiness probes (one librdkafka client, not one per probe).
pub struct HealthProbe {
    consumer: BaseConsumer,
}

impl HealthProbe {
    pub fn new(settings: &KafkaSettings) -> Result<Self, rdkafka::error::KafkaError> {
        let consumer = super::base_config(settings).create()?;
        Ok(Self { consumer })
    }

    /// Whether the cluster answers and, when `topic` is given, every partition of that
    /// topic has a leader. Blocking: run it off the async threads.
    pub fn check(&self, topic: Option<&str>, timeout: Duration) -> Result<(), ProbeFailure> {
        let Ok(m) = self.consumer.fetch_metadata(topic, timeout) else {
            return Err(ProbeFailure::Unreachable);
        };
        if m.brokers().is_empty() {
            return Err(ProbeFailure::Unreachable);
        }
        let writable = m.topics().iter().all(|t| {
            t.error().is_none()
                && !t.partitions().is_empty()
                && t.partitions()
                    .iter()
                    .all(|p| p.leader() >= 0 && p.error().is_none())
        });
        if writable {
            Ok(())
        } else {
            Err(ProbeFailure::NoLeader(
                topic.unwrap_or_default().to_string(),
            ))
        }
    }
}

/// The one line an operator reads when the broker cannot be reached.
pub fn unreachable_message(bootstrap_servers: &str, cause: Option<TransportCause>) -> String {
    let cause = cause.map_or("no answer", TransportCause::describe);
    format!(
        "cannot reach Kafka at {bootstrap_servers} ({cause}); for a local broker run \
         `scripts/kafka start`, else set kafka.bootstrap_servers \
         (GATEWAY__KAFKA__BOOTSTRAP_SERVERS). Retrying quietly; GET /readyz says why the \
         gateway is not ready"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn librdkafka_connection_failures_are_recognised_with_their_cause() {
        let refused = "librdkafka: FAIL [thrd:127.0.0.1:19999/bootstrap]: 127.0.0.1:19999/bootstrap: Connect to ipv4#127.0.0.1:19999 failed: Connection refused (after 0ms in state CONNECT)";
        assert_eq!(
            transport_cause("librdkafka", refused),
            Some(TransportCause::Refused)
        );
        let global = "librdkafka: Global error: AllBrokersDown (Local: All broker connections are down): 1/1 brokers are down";
        assert_eq!(
            transport_cause("rdkafka::client", global),
            Some(TransportCause::AllDown)
        );
        let resolve = "librdkafka: FAIL [thrd:kafka.invalid:9092/bootstrap]: kafka.invalid:9092/bootstrap: Failed to resolve 'kafka.invalid:9092': Name or service not known";
        assert_eq!(
            transport_cause("librdkafka", resolve),
            Some(TransportCause::Unresolved)
        );
        let lost = "librdkafka: FAIL [thrd:127.0.0.1:9092/1]: 127.0.0.1:9092/1: Disconnected (after 5012ms in state UP)";
        assert_eq!(
            transport_cause("librdkafka", lost),
            Some(TransportCause::Disconnected)
        );
    }

    #[test]
    fn other_lines_and_other_components_stay_in_the_log() {
        // A real problem of librdkafka's that is not about reaching the broker.
        let fenced = "librdkafka: Global error: Fatal (Local: Fatal error): Producer fenced by newer instance";
        assert_eq!(transport_cause("rdkafka::client", fenced), None);
        // Our own lines mentioning a refusal are never dropped.
        assert_eq!(
            transport_cause("petition_gateway::respond", "Connection refused"),
            None
        );
    }

    #[test]
    fn the_message_names_the_servers_the_cause_and_the_way_out() {
        let line = unreachable_message("127.0.0.1:19999", Some(TransportCause::Refused));
        assert!(
            line.contains("127.0.0.1:19999 (connection refused)"),
            "{line}"
        );
        assert!(line.contains("scripts/kafka start"), "{line}");
        assert!(line.contains("/readyz"), "{line}");
        assert!(unreachable_message("k:9092", None).contains("(no answer)"));
    }

    #[test]
    fn readiness_reports_a_change_of_kind_once_and_the_latest_reason() {
        let r = Readiness::default();
        assert!(!r.is_ready());
        assert!(r.describe().starts_with("not ready: starting"));
        assert!(r.set_not_ready(NotReadyKind::Unreachable, "a".into()));
        assert!(!r.set_not_ready(NotReadyKind::Unreachable, "b".into()));
        assert_eq!(r.describe(), "not ready: b");
        assert!(r.set_ready());
        assert!(!r.set_ready());
        assert_eq!(r.describe(), "ready");
        assert!(r.set_not_ready(NotReadyKind::Unreachable, "c".into()));
        assert!(Readiness::ready_now().is_ready());
    }
}
