//! The ledger (台账): a read model of `petitions.cases` and `callbacks.delivery` served
//! over HTTP to the center and the departments, and the index the status router uses to
//! find the dispatcher partition that owns a case.

pub mod api;
pub mod open311;
pub mod view;

pub use view::{spawn_reader, wait_caught_up, CaseView, Ledger, SharedLedger};
