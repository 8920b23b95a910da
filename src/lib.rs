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
pub mod sample;
pub mod server;
pub mod watch;

// The ledger holds every case record as a JSON value and the dispatcher millions of small
// strings: the gateway as shipped restores a million open cases 1.2–2.6× faster on
// mimalloc than on glibc's malloc (BENCHMARKS.md, "Dispatcher restore"). In the library,
// so the binary, the benchmarks and the tests all run on it.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
