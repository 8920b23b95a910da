//! Intake: the HTTP listener. Each push connector gets its route; `/healthz` and
//! `/readyz` tell load balancers whether to send traffic.

pub mod cursor;
pub mod discovery;
pub mod events;
pub mod lease;
pub mod poll;
pub mod push;
pub mod quarantine;
pub mod strict_json;

use crate::config::{LoadedConnector, TopicSettings};
use crate::dispatch::reload::ListHandle;
use crate::kafka::health::Readiness;
use crate::kafka::Publisher;
use crate::normalize::region::RegionResolver;
use crate::normalize::schema::Schemas;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use push::PushChannel;
use std::num::NonZeroU32;
use std::sync::Arc;

/// What every intake route shares.
pub struct IntakeContext {
    pub publisher: Publisher,
    pub topics: TopicSettings,
    pub regions: Arc<RegionResolver>,
    pub schemas: Arc<Schemas>,
    /// Set by the readiness probe once Kafka answers and the topics exist.
    pub ready: Arc<Readiness>,
    /// The case ledger, for the status queries of channels that poll (Open311); `None`
    /// when this instance serves no ledger.
    pub ledger: Option<crate::ledger::Ledger>,
    /// The responsibility list in force, for discovery documents (Open311 services).
    pub list: ListHandle,
}

pub fn channel_limiter(per_second: u32, burst: u32) -> DefaultDirectRateLimiter {
    let rate = NonZeroU32::new(per_second).unwrap_or(NonZeroU32::MIN);
    let burst = NonZeroU32::new(burst).unwrap_or(rate);
    RateLimiter::direct(Quota::per_second(rate).allow_burst(burst))
}

/// The gateway's HTTP application, testable in-process.
pub fn app(ctx: Arc<IntakeContext>, connectors: &[LoadedConnector]) -> Router {
    let mut router = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz).with_state(ctx.clone()));
    for c in connectors {
        let Some(push) = c.definition.push() else {
            continue; // poll connectors have no routes
        };
        let channel = Arc::new(PushChannel {
            limiter: channel_limiter(push.rate_limit_per_second, push.rate_limit_burst),
            push: push.clone(),
            definition: c.definition.clone(),
            secret: c.secret.clone(),
        });
        router = router.route(
            &push.route,
            post(push::receive).with_state((ctx.clone(), channel.clone())),
        );
        for (i, event) in push.events.iter().enumerate() {
            router = router.route(
                &event.route,
                post(events::receive).with_state((ctx.clone(), channel.clone(), i)),
            );
        }
        for q in &push.queries {
            use gateway_connectors::definition::QueryKind;
            let handler = match q.kind {
                QueryKind::Open311Request => get(crate::ledger::open311::one),
                QueryKind::Open311Requests => get(crate::ledger::open311::list),
            };
            // A path that also takes the channel's petitions by POST gets GET added.
            router = router.route(&q.route, handler.with_state(ctx.clone()));
        }
        if let Some(discovery) = &push.discovery {
            router = router.route(
                &discovery.route,
                get(discovery::serve).with_state((ctx.clone(), discovery.kind)),
            );
        }
    }
    router
}

/// `ready`, or 503 with why not (Kafka unreachable, topics not created yet, …).
async fn readyz(State(ctx): State<Arc<IntakeContext>>) -> (StatusCode, String) {
    let status = if ctx.ready.is_ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, ctx.ready.describe())
}
