//! Wiring for `petition-gateway run`: the HTTP listener, the readiness probe (which also
//! creates the topics), and the dispatcher, all stopped by one cancellation token.

use crate::config::Loaded;
use crate::dispatch::dispatcher::Dispatcher;
use crate::dispatch::router::Router;
use crate::intake::{app, IntakeContext};
use crate::kafka::topics::{ensure_topics, HealthProbe, TopicError};
use crate::kafka::Publisher;
use crate::normalize::schema::Schemas;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Publish(#[from] crate::kafka::PublishError),
    #[error(transparent)]
    Schema(#[from] crate::normalize::schema::SchemaError),
    #[error(transparent)]
    Topics(#[from] TopicError),
    #[error(transparent)]
    Dispatch(#[from] crate::dispatch::dispatcher::DispatchError),
}

impl ServerError {
    pub fn retryable(&self) -> bool {
        matches!(self, ServerError::Listen { .. })
    }
}

pub struct RunningGateway {
    pub addr: SocketAddr,
    pub ready: Arc<AtomicBool>,
    cancel: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
    publisher: Publisher,
}

impl RunningGateway {
    /// Stops accepting, lets in-flight requests finish, stops the dispatcher, flushes.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        self.wait().await;
    }

    /// Waits until the token (shared with signal handlers) stops everything.
    pub async fn wait(self) {
        for t in self.tasks {
            let _ = t.await;
        }
        self.publisher.flush(Duration::from_secs(5)).await;
    }
}

pub async fn start(
    loaded: Loaded,
    cancel: CancellationToken,
) -> Result<RunningGateway, ServerError> {
    let settings = loaded.settings;
    let publisher = Publisher::new(&settings.kafka)?;
    let schemas = Arc::new(Schemas::compile()?);
    let ready = Arc::new(AtomicBool::new(false));
    let ctx = Arc::new(IntakeContext {
        publisher: publisher.clone(),
        topics: settings.topics.clone(),
        regions: Arc::new(loaded.regions),
        schemas,
        ready: ready.clone(),
    });
    let router = app(ctx, &loaded.connectors);
    let listener = tokio::net::TcpListener::bind(&settings.http.listen)
        .await
        .map_err(|source| ServerError::Listen {
            addr: settings.http.listen.clone(),
            source,
        })?;
    let addr = listener
        .local_addr()
        .map_err(|source| ServerError::Listen {
            addr: settings.http.listen.clone(),
            source,
        })?;
    tracing::info!(%addr, connectors = loaded.connectors.len(), "listening");

    let mut tasks = Vec::new();
    let http_cancel = cancel.clone();
    tasks.push(tokio::spawn(async move {
        let served = axum::serve(listener, router)
            .with_graceful_shutdown(async move { http_cancel.cancelled().await })
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "http server stopped");
        }
    }));

    let mut topic_names: Vec<String> = [
        &settings.topics.inbound,
        &settings.topics.invalid,
        &settings.topics.triage,
        &settings.topics.escalations,
    ]
    .iter()
    .map(|t| settings.topics.name(t))
    .collect();
    topic_names.extend(
        loaded
            .responsibility
            .departments
            .iter()
            .map(|d| settings.topics.name(&d.topic)),
    );
    let topics_ready = Arc::new(tokio::sync::Notify::new());
    let probe = Arc::new(HealthProbe::new(&settings.kafka)?);
    {
        let kafka = settings.kafka.clone();
        let ready = ready.clone();
        let cancel = cancel.clone();
        let topics_ready = topics_ready.clone();
        tasks.push(tokio::spawn(async move {
            let mut ensured = false;
            loop {
                let p = probe.clone();
                let reachable =
                    tokio::task::spawn_blocking(move || p.broker_reachable(Duration::from_secs(2)))
                        .await
                        .unwrap_or(false);
                if reachable && !ensured {
                    match ensure_topics(&kafka, &topic_names).await {
                        Ok(()) => {
                            ensured = true;
                            topics_ready.notify_waiters();
                            topics_ready.notify_one();
                        }
                        Err(e) => tracing::warn!(error = %e, "cannot create topics yet"),
                    }
                }
                let now_ready = reachable && ensured;
                if ready.swap(now_ready, Ordering::Relaxed) != now_ready {
                    tracing::info!(ready = now_ready, "readiness changed");
                }
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }));
    }

    if settings.dispatcher.enabled {
        let dispatcher = Dispatcher::new(
            &settings.kafka,
            &settings.dispatcher,
            settings.topics.clone(),
            publisher.clone(),
            Arc::new(Router::new(loaded.responsibility)),
        )?;
        let cancel = cancel.clone();
        tasks.push(tokio::spawn(async move {
            // Subscribing before the topics exist only produces noise; wait for them.
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = topics_ready.notified() => {}
            }
            dispatcher.run(cancel).await;
        }));
    }

    Ok(RunningGateway {
        addr,
        ready,
        cancel,
        tasks,
        publisher,
    })
}
