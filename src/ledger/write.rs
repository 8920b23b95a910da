//! Writing a batch of records: each row's latest record, a few hundred rows per
//! statement. Every write is an upsert keyed by the row (a later record of the same
//! row replaces what an earlier one set, the history's entries are never replaced), so
//! applying each row's last record of the batch, kind after kind, leaves the rows as
//! applying every record in topic order would; one statement per kind and a few hundred
//! rows instead of two or three statements per record (what the database's round trips
//! cost, mostly: PostgreSQL stored 6,736 records/s one by one).

use super::record::LedgerRecord;
use std::collections::HashMap;

/// One bound value of a row.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell<'a> {
    Text(Option<&'a str>),
    Int(Option<i64>),
}

/// Rows in first-seen order, each with its latest values.
#[derive(Debug)]
pub struct Rows<'a, K> {
    index: HashMap<K, usize>,
    pub rows: Vec<Vec<Cell<'a>>>,
}

impl<K: std::hash::Hash + Eq> Default for Rows<'_, K> {
    fn default() -> Self {
        Self {
            index: HashMap::new(),
            rows: Vec::new(),
        }
    }
}

impl<'a, K: std::hash::Hash + Eq> Rows<'a, K> {
    /// The row of `key` becomes `row` (`replace`), or stays as first set (`!replace`).
    fn put(&mut self, key: K, row: Vec<Cell<'a>>, replace: bool) {
        match self.index.get(&key) {
            Some(&i) if replace => self.rows[i] = row,
            Some(_) => {}
            None => {
                self.index.insert(key, self.rows.len());
                self.rows.push(row);
            }
        }
    }
}

/// What a batch writes, table by table.
#[derive(Debug, Default)]
pub struct Plan<'a> {
    /// Cases only a report or a petition names so far: (case_id, part).
    pub placeholders: Rows<'a, &'a str>,
    pub cases: Rows<'a, &'a str>,
    pub lifecycles: Rows<'a, &'a str>,
    /// (case_id, json) per document column.
    pub case_records: Rows<'a, &'a str>,
    pub petitions: Rows<'a, &'a str>,
    pub lifecycle_documents: Rows<'a, &'a str>,
    pub reports: Rows<'a, &'a str>,
    pub history: Rows<'a, (&'a str, i64)>,
    pub callbacks: Rows<'a, &'a str>,
}

fn text(s: &str) -> Cell<'_> {
    Cell::Text(Some(s))
}

impl<'a> Plan<'a> {
    pub fn of(records: &'a [LedgerRecord]) -> Self {
        let mut plan = Plan::default();
        for record in records {
            plan.add(record);
        }
        plan
    }

    fn add(&mut self, record: &'a LedgerRecord) {
        match record {
            LedgerRecord::Case {
                case_id,
                partition,
                department,
                escalated,
                opened_at,
                opened_unix,
                region,
                category,
                place,
                json,
            } => {
                let row = vec![
                    text(case_id),
                    Cell::Int(Some(i64::from(*partition))),
                    text(department),
                    Cell::Int(Some(i64::from(*escalated))),
                    Cell::Text(opened_at.as_deref()),
                    // A case without a readable opening time is still listed (as the oldest).
                    Cell::Int(Some(opened_unix.unwrap_or(0))),
                    Cell::Text(region.as_deref()),
                    Cell::Text(category.as_deref()),
                    Cell::Text(place.as_deref()),
                ];
                self.cases.put(case_id, row, true);
                self.case_records
                    .put(case_id, vec![text(case_id), text(json)], true);
            }
            LedgerRecord::Report {
                petition_id,
                case_id,
                partition,
                channel,
                reported_unix,
                json,
            } => {
                self.placeholder(case_id, *partition);
                let row = vec![
                    text(petition_id),
                    text(case_id),
                    text(channel),
                    Cell::Int(*reported_unix),
                    text(json),
                ];
                self.reports.put(petition_id, row, true);
            }
            LedgerRecord::Petition {
                case_id,
                partition,
                json,
            } => {
                self.placeholder(case_id, *partition);
                self.petitions
                    .put(case_id, vec![text(case_id), text(json)], true);
            }
            LedgerRecord::Lifecycle {
                case_id,
                partition,
                department,
                phase,
                overdue,
                escalated,
                deadline,
                json,
            } => {
                let row = vec![
                    text(case_id),
                    Cell::Int(Some(i64::from(*partition))),
                    text(department),
                    text(phase),
                    Cell::Int(Some(i64::from(*overdue))),
                    Cell::Int(Some(i64::from(*escalated))),
                    Cell::Int(*deadline),
                    Cell::Int(Some(1)),
                ];
                self.lifecycles.put(case_id, row, true);
                self.lifecycle_documents
                    .put(case_id, vec![text(case_id), text(json)], true);
            }
            LedgerRecord::History {
                case_id,
                from,
                entries,
            } => {
                for (i, entry) in entries.iter().enumerate() {
                    let seq = from + i as i64;
                    let row = vec![text(case_id), Cell::Int(Some(seq)), text(entry)];
                    self.history.put((case_id, seq), row, false);
                }
            }
            LedgerRecord::Callback {
                callback_id,
                case_id,
                finished_at,
                json,
            } => {
                let row = vec![
                    text(callback_id),
                    text(case_id),
                    Cell::Text(finished_at.as_deref()),
                    text(json),
                ];
                self.callbacks.put(callback_id, row, true);
            }
        }
    }

    fn placeholder(&mut self, case_id: &'a str, partition: i32) {
        let row = vec![text(case_id), Cell::Int(Some(i64::from(partition)))];
        self.placeholders.put(case_id, row, false);
    }

    /// Each statement with its rows, in the order they must run: placeholders and case
    /// records before lifecycles (a lifecycle says who works on the case now, whichever
    /// came first), rows before the documents that hang on them.
    pub fn statements(&self) -> Vec<(Statement, &[Vec<Cell<'a>>])> {
        vec![
            (PLACEHOLDERS, &self.placeholders.rows[..]),
            (CASES, &self.cases.rows[..]),
            (LIFECYCLES, &self.lifecycles.rows[..]),
            (document("case_record"), &self.case_records.rows[..]),
            (document("petition"), &self.petitions.rows[..]),
            (document("lifecycle"), &self.lifecycle_documents.rows[..]),
            (REPORTS, &self.reports.rows[..]),
            (HISTORY, &self.history.rows[..]),
            (CALLBACKS, &self.callbacks.rows[..]),
        ]
    }
}

/// An upsert with its `VALUES` left to fill: `head VALUES (…), (…) tail`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Statement {
    pub head: &'static str,
    pub columns: usize,
    pub tail: &'static str,
}

impl Statement {
    /// The SQL for `rows` rows, parameters numbered `$1…` row after row.
    pub fn sql(&self, rows: usize) -> String {
        let mut sql =
            String::with_capacity(self.head.len() + self.tail.len() + rows * 6 * self.columns);
        sql.push_str(self.head);
        sql.push_str(" VALUES ");
        let mut n = 0;
        for r in 0..rows {
            if r > 0 {
                sql.push_str(", ");
            }
            sql.push('(');
            for c in 0..self.columns {
                if c > 0 {
                    sql.push_str(", ");
                }
                n += 1;
                sql.push('$');
                sql.push_str(&n.to_string());
            }
            sql.push(')');
        }
        sql.push(' ');
        sql.push_str(self.tail);
        sql
    }
}

/// Rows per statement: well under SQLite's 32,766 and PostgreSQL's 65,535 parameters.
pub const ROWS_PER_STATEMENT: usize = 250;

const PLACEHOLDERS: Statement = Statement {
    head: "INSERT INTO cases (case_id, part)",
    columns: 2,
    tail: "ON CONFLICT (case_id) DO NOTHING",
};

/// A lifecycle read earlier knows better who works on the case now.
const CASES: Statement = Statement {
    head: "INSERT INTO cases (case_id, part, department, escalated, opened_at, opened_unix, \
           region, category, place)",
    columns: 9,
    tail: "ON CONFLICT (case_id) DO UPDATE SET part = excluded.part, \
           department = CASE WHEN cases.has_lifecycle = 0 THEN excluded.department \
             ELSE cases.department END, \
           escalated = CASE WHEN cases.has_lifecycle = 0 THEN excluded.escalated \
             ELSE cases.escalated END, \
           opened_at = excluded.opened_at, opened_unix = excluded.opened_unix, \
           region = excluded.region, category = excluded.category, place = excluded.place",
};

const LIFECYCLES: Statement = Statement {
    head: "INSERT INTO cases (case_id, part, department, phase, overdue, escalated, deadline, \
           has_lifecycle)",
    columns: 8,
    tail: "ON CONFLICT (case_id) DO UPDATE SET department = excluded.department, \
           phase = excluded.phase, overdue = excluded.overdue, \
           escalated = excluded.escalated, deadline = excluded.deadline, has_lifecycle = 1",
};

fn document(column: &str) -> Statement {
    let (head, tail) = match column {
        "case_record" => (
            "INSERT INTO case_documents (case_id, case_record)",
            "ON CONFLICT (case_id) DO UPDATE SET case_record = excluded.case_record",
        ),
        "petition" => (
            "INSERT INTO case_documents (case_id, petition)",
            "ON CONFLICT (case_id) DO UPDATE SET petition = excluded.petition",
        ),
        _ => (
            "INSERT INTO case_documents (case_id, lifecycle)",
            "ON CONFLICT (case_id) DO UPDATE SET lifecycle = excluded.lifecycle",
        ),
    };
    Statement {
        head,
        columns: 2,
        tail,
    }
}

const REPORTS: Statement = Statement {
    head: "INSERT INTO reports (petition_id, case_id, channel, reported_unix, record)",
    columns: 5,
    tail: "ON CONFLICT (petition_id) DO UPDATE SET case_id = excluded.case_id, \
           channel = excluded.channel, reported_unix = excluded.reported_unix, \
           record = excluded.record",
};

const HISTORY: Statement = Statement {
    head: "INSERT INTO case_history (case_id, seq, entry)",
    columns: 3,
    tail: "ON CONFLICT (case_id, seq) DO NOTHING",
};

const CALLBACKS: Statement = Statement {
    head: "INSERT INTO callbacks (callback_id, case_id, finished_at, record)",
    columns: 4,
    tail: "ON CONFLICT (callback_id) DO UPDATE SET case_id = excluded.case_id, \
           finished_at = excluded.finished_at, record = excluded.record",
};

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: serde_json::Value) -> LedgerRecord {
        LedgerRecord::parse("petitions.cases", "petitions.cases", 1, &v).expect("kept")
    }

    #[test]
    fn each_row_is_written_once_with_its_latest_record() {
        let records = vec![
            parse(
                json!({"type": "lifecycle", "case_id": "a", "phase": "accepted",
                "department": "water"}),
            ),
            parse(
                json!({"type": "report", "case_id": "a", "petition_id": "p1",
                "channel": "hotline"}),
            ),
            parse(
                json!({"type": "lifecycle", "case_id": "a", "phase": "resolved",
                "department": "water"}),
            ),
            parse(
                json!({"type": "report", "case_id": "a", "petition_id": "p1",
                "channel": "city-app"}),
            ),
            parse(json!({"type": "history", "case_id": "a", "from": 0,
                "entries": [{"status": "received"}, {"status": "accepted"}]})),
            parse(json!({"type": "history", "case_id": "a", "from": 1,
                "entries": [{"status": "replaced?"}]})),
        ];
        let plan = Plan::of(&records);
        assert_eq!(plan.lifecycles.rows.len(), 1);
        assert_eq!(plan.lifecycles.rows[0][3], Cell::Text(Some("resolved")));
        assert_eq!(plan.reports.rows.len(), 1);
        assert_eq!(plan.reports.rows[0][2], Cell::Text(Some("city-app")));
        // History entries are never replaced: the first at a position stays.
        let entries: Vec<&Cell> = plan.history.rows.iter().map(|r| &r[2]).collect();
        assert_eq!(
            entries,
            [
                &Cell::Text(Some(r#"{"status":"received"}"#)),
                &Cell::Text(Some(r#"{"status":"accepted"}"#))
            ]
        );
        // The report's case gets a row before any case record arrives.
        assert_eq!(plan.placeholders.rows.len(), 1);
    }

    #[test]
    fn every_row_of_a_statement_gets_its_own_numbered_parameters() {
        assert_eq!(
            HISTORY.sql(2),
            "INSERT INTO case_history (case_id, seq, entry) VALUES ($1, $2, $3), ($4, $5, $6) \
             ON CONFLICT (case_id, seq) DO NOTHING"
        );
        let plan = Plan::of(&[]);
        for (statement, rows) in plan.statements() {
            assert!(rows.is_empty());
            // Each statement names as many columns as its rows carry.
            let named = statement
                .head
                .split_once('(')
                .map(|(_, c)| c.split(',').count())
                .unwrap_or_default();
            assert_eq!(named, statement.columns, "{}", statement.head);
        }
    }

    #[test]
    fn each_kind_of_record_fills_the_columns_its_statement_names() {
        let records = vec![
            parse(
                json!({"type": "case", "case_id": "a", "department": "water",
                "dispatched_at": "2026-11-24T10:00:00+08:00"}),
            ),
            parse(
                json!({"type": "report", "case_id": "a", "petition_id": "p1",
                "channel": "hotline"}),
            ),
            parse(json!({"type": "petition", "case_id": "a", "petition": {"id": "a"}})),
            parse(
                json!({"type": "lifecycle", "case_id": "a", "phase": "accepted",
                "department": "water"}),
            ),
            parse(json!({"type": "history", "case_id": "a", "from": 0,
                "entries": [{"status": "received"}]})),
            LedgerRecord::parse(
                "petitions.cases",
                "callbacks.delivery",
                0,
                &json!({"callback_id": "cb", "case_id": "a"}),
            )
            .expect("kept"),
        ];
        let plan = Plan::of(&records);
        for (statement, rows) in plan.statements() {
            assert_eq!(rows.len(), 1, "{}", statement.head);
            assert_eq!(rows[0].len(), statement.columns, "{}", statement.head);
        }
    }
}
