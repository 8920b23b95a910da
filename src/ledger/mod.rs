//! The ledger (台账): a read model of `petitions.cases` and `callbacks.delivery` in a
//! database (SQLite by default, PostgreSQL for deployments), served over HTTP to the
//! center and the departments, and the index the status router uses to find the
//! dispatcher partition that owns a case.

pub mod api;
pub mod open311;
pub mod reader;
pub mod record;
pub mod store;
pub mod view;
pub mod write;

pub use reader::{spawn_reader, wait_caught_up};
pub use store::{LedgerError, LedgerStore};
pub use view::CaseView;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

type Positions = HashMap<(String, i32), i64>;

/// The ledger as the gateway's parts share it: the database, and how far the reader
/// has stored each topic partition (what `wait_caught_up` compares with the topics).
#[derive(Clone)]
pub struct Ledger {
    store: Arc<LedgerStore>,
    positions: Arc<RwLock<Positions>>,
}

impl Ledger {
    /// Opens (and migrates) the database at `url`.
    pub async fn open(url: &str) -> Result<Self, LedgerError> {
        // Positions come from the reader once it checked that the stored ones are
        // this cluster's and these topics'.
        Ok(Self {
            store: Arc::new(LedgerStore::open(url).await?),
            positions: Arc::default(),
        })
    }

    pub fn store(&self) -> &LedgerStore {
        &self.store
    }

    /// The reader has applied `topic`'s `partition` below this offset (`None`: not read
    /// in this process, or not yet).
    pub fn read_to(&self, topic: &str, partition: i32) -> Option<i64> {
        self.position(&(topic.to_string(), partition))
    }

    fn position(&self, key: &(String, i32)) -> Option<i64> {
        self.positions.read().ok()?.get(key).copied()
    }

    fn set_positions(&self, positions: Positions) {
        if let Ok(mut p) = self.positions.write() {
            *p = positions;
        }
    }

    fn advance(&self, moved: Vec<((String, i32), i64)>) {
        if let Ok(mut p) = self.positions.write() {
            p.extend(moved);
        }
    }

    fn reached(&self, ends: &[((String, i32), i64)]) -> bool {
        self.positions.read().is_ok_and(|p| {
            ends.iter()
                .all(|(key, end)| p.get(key).is_some_and(|pos| pos >= end))
        })
    }
}
