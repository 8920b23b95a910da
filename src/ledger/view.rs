//! One case as the ledger shows it: its case record, reports, lifecycle, first petition
//! and callbacks' delivery, as read back from the ledger's database.

use serde_json::Value;
use std::collections::HashMap;

/// One case as the ledger knows it.
#[derive(Debug, Clone, Default)]
pub struct CaseView {
    /// The `petitions.cases` partition holding it: its dispatcher partition.
    pub partition: i32,
    pub case: Value,
    pub lifecycle: Option<Value>,
    /// The case's first petition as published.
    pub petition: Option<Value>,
    pub reports: Vec<Value>,
    /// The case's history, oldest first.
    pub history: Vec<Value>,
    /// Callback id → its final delivery record.
    pub callbacks: HashMap<String, Value>,
}

impl CaseView {
    /// Lifecycle records written before history records carried the whole history in
    /// themselves: theirs is the case's history when no history rows exist.
    pub fn with_legacy_history(mut self) -> Self {
        if self.history.is_empty() {
            if let Some(h) = self
                .lifecycle
                .as_ref()
                .and_then(|l| l["history"].as_array())
            {
                self.history = h.clone();
            }
        }
        self
    }

    /// The department working on it now (the routed one before any lifecycle).
    pub fn department(&self) -> &str {
        self.lifecycle
            .as_ref()
            .and_then(|l| l["department"].as_str())
            .or_else(|| self.case["department"].as_str())
            .unwrap_or_default()
    }

    pub fn phase(&self) -> &str {
        self.lifecycle
            .as_ref()
            .and_then(|l| l["phase"].as_str())
            .unwrap_or("dispatched")
    }

    pub fn overdue(&self) -> bool {
        self.lifecycle
            .as_ref()
            .is_some_and(|l| l["overdue"].as_bool() == Some(true))
    }
}
