//! petition-gateway: takes citizens' petitions from every channel, normalizes them to one
//! schema, routes them by the department responsibility list onto Kafka topics.
//!
//! Stages (see `docs/design.md`): [`intake`] (HTTP push receivers) → [`normalize`]
//! (region resolution, schema validation) → `petitions.inbound` → [`dispatch`]
//! (routing by the responsibility list) → department topics. [`kafka`] holds the
//! producer, consumer and topic plumbing shared by the stages.

pub mod check;
pub mod config;
pub mod connector_test;
pub mod dispatch;
pub mod import;
pub mod intake;
pub mod kafka;
pub mod ledger;
pub mod lifecycle;
pub mod normalize;
pub mod petition;
pub mod replay;
pub mod respond;
pub mod server;
pub mod watch;

// The gateway allocates and frees per record (JSON values, strings); mimalloc's
// thread-local free lists cut that cost against glibc's malloc (see BENCHMARKS.md).
// In the library, so the binary, the benchmarks and the tests all run on it.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
