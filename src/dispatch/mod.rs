//! Dispatch: consumes `petitions.inbound`, decides each petition's department with the
//! responsibility list, and publishes it to that department's topic (or triage).
//!
//! Deduplication (idempotent receiver, near-duplicate merge) and Kafka transactions slot
//! in between [`router`] and the publish step in [`dispatcher`].

pub mod cases;
pub mod dedupe;
pub mod dispatcher;
pub mod learning;
pub mod reload;
pub mod responsibility;
pub mod router;
