//! The ledger's database: embedded SQLite by default, PostgreSQL for deployments, one
//! code path for both through sqlx's `Any` driver (the queries use only what both
//! understand: `$n` parameters, `ON CONFLICT … DO UPDATE`, TEXT and BIGINT columns).
//! The migrations are in `migrations/`. Rows and the Kafka offsets they came from are
//! written in one transaction, so the ledger applies every record exactly once.

use super::record::LedgerRecord;
use super::view::CaseView;
use super::write::{Cell, Plan, ROWS_PER_STATEMENT};
use serde_json::Value;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};
use std::collections::HashMap;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("ledger database: {url:?} is neither sqlite:PATH nor postgres://…")]
    Url { url: String },
    #[error("ledger database {url}: cannot create its folder: {source}")]
    Folder { url: String, source: std::io::Error },
    #[error("ledger database {url}: cannot connect: {source}")]
    Connect { url: String, source: sqlx::Error },
    #[error("ledger database: migrating the schema failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("ledger database: {0}")]
    Query(#[from] sqlx::Error),
}

impl LedgerError {
    /// A database that is down or busy may answer later; a wrong URL or schema will not.
    pub fn retryable(&self) -> bool {
        match self {
            LedgerError::Url { .. } | LedgerError::Folder { .. } | LedgerError::Migrate(_) => false,
            LedgerError::Connect { .. } => true,
            LedgerError::Query(e) => matches!(
                e,
                sqlx::Error::Io(_)
                    | sqlx::Error::PoolTimedOut
                    | sqlx::Error::PoolClosed
                    | sqlx::Error::WorkerCrashed
                    | sqlx::Error::Database(_)
            ),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn of(url: &str) -> Option<Self> {
        if url.starts_with("sqlite:") {
            Some(Backend::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Some(Backend::Postgres)
        } else {
            None
        }
    }
}

/// The filters of `GET /cases`; `None` filters nothing.
#[derive(Debug, Clone, Default)]
pub struct CaseFilter {
    pub department: Option<String>,
    pub phase: Option<String>,
    pub overdue: Option<bool>,
    /// Unix seconds: opened at or after / before.
    pub since: Option<i64>,
    pub until: Option<i64>,
    pub region: Option<String>,
    pub category: Option<String>,
    /// The address begins with this.
    pub place: Option<String>,
}

/// One line of a case list.
#[derive(Debug, Clone, PartialEq)]
pub struct CaseSummary {
    pub case_id: String,
    pub department: String,
    pub phase: String,
    pub overdue: bool,
    pub escalated: bool,
    pub deadline: Option<i64>,
    pub opened_at: Option<String>,
    pub region: Option<String>,
    pub reports: i64,
}

/// What the status router needs to send an event to the case's dispatcher partition.
#[derive(Debug, Clone, PartialEq)]
pub struct CaseRoute {
    pub partition: i32,
    /// The case record arrived (a case only reports or a lifecycle mention is not one).
    pub known: bool,
    pub petition: Option<Value>,
}

/// An Open311 service request's place in the ledger.
#[derive(Debug, Clone, Default)]
pub struct Open311Filter {
    pub service_code: Option<String>,
    pub start: Option<i64>,
    pub end: Option<i64>,
    /// `Some(true)`: closed or rejected cases only; `Some(false)`: the others.
    pub closed: Option<bool>,
}

enum Bind {
    Text(String),
    Int(i64),
}

pub struct LedgerStore {
    pool: AnyPool,
    backend: Backend,
}

fn int(b: bool) -> i64 {
    i64::from(b)
}

fn json(text: Option<String>) -> Option<Value> {
    text.and_then(|t| serde_json::from_str(&t).ok())
}

impl LedgerStore {
    /// Connects (creating an SQLite file and its folder when missing) and migrates.
    pub async fn open(url: &str) -> Result<Self, LedgerError> {
        sqlx::any::install_default_drivers();
        let backend = Backend::of(url).ok_or_else(|| LedgerError::Url { url: url.into() })?;
        let memory = url.contains(":memory:") || url.contains("mode=memory");
        let mut connect_url = url.to_string();
        let mut options = AnyPoolOptions::new().acquire_timeout(Duration::from_secs(10));
        if backend == Backend::Sqlite {
            if memory {
                // Every connection to `:memory:` is a database of its own: keep one.
                options = options
                    .max_connections(1)
                    .idle_timeout(None)
                    .max_lifetime(None);
            } else {
                // sqlx's `Any` reads the URL with the `url` crate, which would take the
                // first folder of a relative path for a host: give it an absolute one.
                let path = absolute(std::path::Path::new(sqlite_path(url)));
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).map_err(|source| LedgerError::Folder {
                        url: url.into(),
                        source,
                    })?;
                }
                connect_url = format!("sqlite://{}", path.display());
                if let Some((_, query)) = url.split_once('?') {
                    connect_url.push('?');
                    connect_url.push_str(query);
                }
                if !url.contains("mode=") {
                    connect_url.push(if url.contains('?') { '&' } else { '?' });
                    connect_url.push_str("mode=rwc");
                }
                // One writer (the reader thread) and the API's readers beside it.
                options = options.max_connections(4).after_connect(|conn, _| {
                    Box::pin(async move {
                        // WAL: readers do not wait for the writer; NORMAL: a commit
                        // survives the process dying (the case that matters here).
                        sqlx::query("PRAGMA journal_mode = WAL")
                            .execute(&mut *conn)
                            .await?;
                        sqlx::query("PRAGMA synchronous = NORMAL")
                            .execute(&mut *conn)
                            .await?;
                        Ok(())
                    })
                });
            }
        } else {
            options = options.max_connections(8);
        }
        let pool = options
            .connect(&connect_url)
            .await
            .map_err(|source| LedgerError::Connect {
                url: redact(url),
                source,
            })?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        Ok(Self { pool, backend })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// The cluster and topics the rows came from (`cluster topics`), and the offsets:
    /// (topic, partition) → next.
    pub async fn offsets(
        &self,
    ) -> Result<(Option<String>, HashMap<(String, i32), i64>), LedgerError> {
        let source = match sqlx::query("SELECT cluster, topics FROM ledger_source WHERE id = 1")
            .fetch_optional(&self.pool)
            .await?
        {
            Some(r) => Some(format!(
                "{} {}",
                r.try_get::<String, _>("cluster")?,
                r.try_get::<String, _>("topics")?
            )),
            None => None,
        };
        let rows = sqlx::query("SELECT topic, part, next_offset FROM ledger_offsets")
            .fetch_all(&self.pool)
            .await?;
        let mut offsets = HashMap::new();
        for r in rows {
            let part: i64 = r.try_get("part")?;
            offsets.insert(
                (r.try_get("topic")?, part as i32),
                r.try_get::<i64, _>("next_offset")?,
            );
        }
        Ok((source, offsets))
    }

    /// Forgets every row and offset: the topics they came from are gone (another
    /// cluster, or recreated topics) or not the ones configured; the ledger reads
    /// `topics` of `cluster` from the start.
    pub async fn reset(&self, cluster: &str, topics: &str) -> Result<(), LedgerError> {
        let mut tx = self.pool.begin().await?;
        for table in [
            "cases",
            "case_documents",
            "reports",
            "callbacks",
            "case_history",
            "ledger_offsets",
            "ledger_source",
        ] {
            sqlx::query(&format!("DELETE FROM {table}"))
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query("INSERT INTO ledger_source (id, cluster, topics) VALUES (1, $1, $2)")
            .bind(cluster)
            .bind(topics)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Applies records and moves the offsets past them, in one transaction.
    pub async fn apply(
        &self,
        records: &[LedgerRecord],
        positions: &[((String, i32), i64)],
    ) -> Result<(), LedgerError> {
        let mut tx = self.pool.begin().await?;
        let plan = Plan::of(records);
        for (statement, rows) in plan.statements() {
            for chunk in rows.chunks(ROWS_PER_STATEMENT) {
                let sql = statement.sql(chunk.len());
                let mut query = sqlx::query(&sql);
                for cell in chunk.iter().flatten() {
                    query = match cell {
                        Cell::Text(t) => query.bind(*t),
                        Cell::Int(i) => query.bind(*i),
                    };
                }
                query.execute(&mut *tx).await?;
            }
        }
        for ((topic, partition), next) in positions {
            sqlx::query(
                "INSERT INTO ledger_offsets (topic, part, next_offset) VALUES ($1, $2, $3) \
                 ON CONFLICT (topic, part) DO UPDATE SET next_offset = excluded.next_offset",
            )
            .bind(topic.as_str())
            .bind(i64::from(*partition))
            .bind(*next)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The case a petition belongs to.
    pub async fn case_of(&self, petition_id: &str) -> Result<Option<String>, LedgerError> {
        Ok(
            sqlx::query("SELECT case_id FROM reports WHERE petition_id = $1")
                .bind(petition_id)
                .fetch_optional(&self.pool)
                .await?
                .map(|r| r.try_get("case_id"))
                .transpose()?,
        )
    }

    /// The cases of those of `petition_ids` the ledger holds (the dispatcher's receiver
    /// asks for petitions it no longer keeps in memory), in queries of at most 500 ids.
    pub async fn cases_of(
        &self,
        petition_ids: &[&str],
    ) -> Result<Vec<(String, String)>, LedgerError> {
        let mut found = Vec::new();
        for chunk in petition_ids.chunks(500) {
            let placeholders = (1..=chunk.len())
                .map(|i| format!("${i}"))
                .collect::<Vec<_>>()
                .join(", ");
            let sql = format!(
                "SELECT petition_id, case_id FROM reports WHERE petition_id IN ({placeholders})"
            );
            let mut query = sqlx::query(&sql);
            for id in chunk {
                query = query.bind(*id);
            }
            for row in query.fetch_all(&self.pool).await? {
                found.push((row.try_get("petition_id")?, row.try_get("case_id")?));
            }
        }
        Ok(found)
    }

    /// Where the case's events go.
    pub async fn route(&self, case_id: &str) -> Result<Option<CaseRoute>, LedgerError> {
        let Some(row) = sqlx::query(
            "SELECT c.part, c.opened_unix IS NOT NULL AS known, d.petition FROM cases c \
             LEFT JOIN case_documents d ON d.case_id = c.case_id WHERE c.case_id = $1",
        )
        .bind(case_id)
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok(None);
        };
        Ok(Some(CaseRoute {
            partition: row.try_get::<i64, _>("part")? as i32,
            known: truthy(&row, "known")?,
            petition: json(row.try_get("petition")?),
        }))
    }

    /// Everything the ledger knows about one case.
    pub async fn case(&self, case_id: &str) -> Result<Option<CaseView>, LedgerError> {
        let Some(row) = sqlx::query(
            "SELECT c.part, d.case_record, d.lifecycle, d.petition FROM cases c \
             LEFT JOIN case_documents d ON d.case_id = c.case_id WHERE c.case_id = $1",
        )
        .bind(case_id)
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok(None);
        };
        let reports = sqlx::query(
            "SELECT record FROM reports WHERE case_id = $1 ORDER BY reported_unix, petition_id",
        )
        .bind(case_id)
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .filter_map(|r| json(r.try_get("record").ok()))
        .collect();
        let history = sqlx::query("SELECT entry FROM case_history WHERE case_id = $1 ORDER BY seq")
            .bind(case_id)
            .fetch_all(&self.pool)
            .await?
            .into_iter()
            .filter_map(|r| json(r.try_get("entry").ok()))
            .collect();
        let callbacks = sqlx::query("SELECT callback_id, record FROM callbacks WHERE case_id = $1")
            .bind(case_id)
            .fetch_all(&self.pool)
            .await?
            .into_iter()
            .filter_map(|r| {
                Some((
                    r.try_get("callback_id").ok()?,
                    json(r.try_get("record").ok())?,
                ))
            })
            .collect();
        Ok(Some(
            CaseView {
                partition: row.try_get::<i64, _>("part")? as i32,
                case: json(row.try_get("case_record")?).unwrap_or(Value::Null),
                lifecycle: json(row.try_get("lifecycle")?),
                petition: json(row.try_get("petition")?),
                reports,
                history,
                callbacks,
            }
            .with_legacy_history(),
        ))
    }

    /// One page of the cases `filter` selects, oldest first, and how many it selects
    /// (counted up to [`COUNT_CAP`] + 1).
    pub async fn list(
        &self,
        filter: &CaseFilter,
        page: u32,
        per_page: u32,
    ) -> Result<(Vec<CaseSummary>, i64), LedgerError> {
        let mut clauses = vec!["opened_unix IS NOT NULL".to_string()];
        let mut binds = Vec::new();
        let mut add = |clause: &str, bind: Bind| {
            binds.push(bind);
            clauses.push(clause.replace('?', &format!("${}", binds.len())));
        };
        if let Some(d) = &filter.department {
            add("department = ?", Bind::Text(d.clone()));
        }
        if let Some(p) = &filter.phase {
            add("phase = ?", Bind::Text(p.clone()));
        }
        if let Some(s) = filter.since {
            add("opened_unix >= ?", Bind::Int(s));
        }
        if let Some(u) = filter.until {
            add("opened_unix < ?", Bind::Int(u));
        }
        if let Some(r) = &filter.region {
            add("region = ?", Bind::Text(r.clone()));
        }
        if let Some(c) = &filter.category {
            add("category = ?", Bind::Text(c.clone()));
        }
        if let Some(p) = &filter.place {
            // A range, so that the index serves a prefix (the database's collation must
            // order by code point: SQLite's does, PostgreSQL's with `COLLATE "C"`/`C.UTF-8`).
            add("place >= ?", Bind::Text(p.clone()));
            add("place < ?", Bind::Text(format!("{p}\u{10FFFF}")));
        }
        if let Some(o) = filter.overdue {
            // A literal, not a parameter: PostgreSQL's generic plan for `overdue = $1`
            // assumes half the cases match and counts by a sequential scan (136 ms at a
            // year's scale, against 3 ms through the index when it sees the value).
            clauses.push(format!("overdue = {}", int(o)));
        }
        let conditions = clauses.join(" AND ");
        // Counted up to a cap: an exact count of a year's cases would read them all.
        let count_sql = format!(
            "SELECT COUNT(*) AS n FROM (SELECT 1 FROM cases WHERE {conditions} LIMIT {}) hits",
            COUNT_CAP + 1
        );
        // The page's ids first, from the filter's index alone (each ends in the paging
        // order), then only their rows: the rows skipped by the offset, or sorted out of a
        // range (a place prefix), are never read from the table.
        let page_sql = format!(
            "SELECT c.case_id, c.department, c.phase, c.overdue, c.escalated, c.deadline, \
             c.opened_at, c.region, \
             (SELECT COUNT(*) FROM reports r WHERE r.case_id = c.case_id) AS reports \
             FROM (SELECT case_id FROM cases WHERE {conditions} \
                   ORDER BY opened_unix, case_id LIMIT {} OFFSET {}) page \
             JOIN cases c ON c.case_id = page.case_id \
             ORDER BY c.opened_unix, c.case_id",
            per_page,
            u64::from(page.saturating_sub(1)) * u64::from(per_page),
        );
        let total: i64 = bound(sqlx::query(&count_sql), &binds)
            .fetch_one(&self.pool)
            .await?
            .try_get("n")?;
        let rows = bound(sqlx::query(&page_sql), &binds)
            .fetch_all(&self.pool)
            .await?;
        let mut cases = Vec::with_capacity(rows.len());
        for r in rows {
            cases.push(CaseSummary {
                case_id: r.try_get("case_id")?,
                department: r.try_get("department")?,
                phase: r.try_get("phase")?,
                overdue: truthy(&r, "overdue")?,
                escalated: truthy(&r, "escalated")?,
                deadline: r.try_get("deadline")?,
                opened_at: r.try_get("opened_at")?,
                region: r.try_get("region")?,
                reports: r.try_get("reports")?,
            });
        }
        Ok((cases, total))
    }

    /// Ids of the Open311 channel's petitions `filter` selects, newest first, at most
    /// `limit`.
    pub async fn open311_requests(
        &self,
        filter: &Open311Filter,
        limit: u32,
    ) -> Result<Vec<String>, LedgerError> {
        let mut clauses = vec!["r.channel = 'open311'".to_string()];
        let mut binds = Vec::new();
        let mut add = |clause: &str, bind: Bind| {
            binds.push(bind);
            clauses.push(clause.replace('?', &format!("${}", binds.len())));
        };
        if let Some(c) = &filter.service_code {
            add("c.category = ?", Bind::Text(c.clone()));
        }
        if let Some(s) = filter.start {
            add("r.reported_unix >= ?", Bind::Int(s));
        }
        if let Some(e) = filter.end {
            add("r.reported_unix <= ?", Bind::Int(e));
        }
        match filter.closed {
            Some(true) => clauses.push("c.phase IN ('closed', 'rejected')".into()),
            Some(false) => clauses.push("c.phase NOT IN ('closed', 'rejected')".into()),
            None => {}
        }
        let sql = format!(
            "SELECT r.petition_id FROM reports r JOIN cases c ON c.case_id = r.case_id \
             WHERE {} ORDER BY r.reported_unix DESC, r.petition_id LIMIT {limit}",
            clauses.join(" AND ")
        );
        let rows = bound(sqlx::query(&sql), &binds)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| r.try_get("petition_id").map_err(LedgerError::from))
            .collect()
    }
}

type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>;

fn bound<'q>(mut query: AnyQuery<'q>, binds: &'q [Bind]) -> AnyQuery<'q> {
    for b in binds {
        query = match b {
            Bind::Text(t) => query.bind(t.as_str()),
            Bind::Int(i) => query.bind(*i),
        };
    }
    query
}

/// A 0/1 column (booleans are BIGINT in both databases; `IS NOT NULL` is a boolean in
/// PostgreSQL and an integer in SQLite).
fn truthy(row: &AnyRow, column: &str) -> Result<bool, sqlx::Error> {
    match row.try_get::<i64, _>(column) {
        Ok(v) => Ok(v != 0),
        Err(_) => row.try_get::<bool, _>(column),
    }
}

/// How many cases a list counts at most (`total_capped` beyond).
pub const COUNT_CAP: i64 = 10_000;

/// The file of an `sqlite:` URL (`sqlite://a/b.db?x` and `sqlite:a/b.db` → `a/b.db`).
pub fn sqlite_path(url: &str) -> &str {
    let rest = url.strip_prefix("sqlite:").unwrap_or(url);
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    rest.split('?').next().unwrap_or(rest)
}

/// `path` from the root, without `.` and `..` (lexically: the file may not exist yet).
pub fn absolute(path: &std::path::Path) -> std::path::PathBuf {
    use std::path::Component;
    let joined = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_default().join(path)
    };
    let mut out = std::path::PathBuf::new();
    for c in joined.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// The URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_urls_name_their_file() {
        assert_eq!(
            sqlite_path("sqlite://state/ledger.db?mode=rwc"),
            "state/ledger.db"
        );
        assert_eq!(sqlite_path("sqlite:state/ledger.db"), "state/ledger.db");
        assert_eq!(sqlite_path("sqlite:///tmp/l.db"), "/tmp/l.db");
    }

    #[test]
    fn relative_paths_become_absolute_without_dot_segments() {
        let p = absolute(std::path::Path::new("config/../.state/ledger.sqlite"));
        assert!(p.is_absolute(), "{p:?}");
        assert!(p.ends_with(".state/ledger.sqlite"), "{p:?}");
        assert!(!p.to_string_lossy().contains(".."), "{p:?}");
        // Built from parts: the self-containment test reads literal paths in the code.
        let dotted = std::path::Path::new("/a/b")
            .join(std::path::Component::ParentDir)
            .join("c")
            .join(std::path::Component::CurDir)
            .join("d.db");
        assert_eq!(absolute(&dotted), std::path::PathBuf::from("/a/c/d.db"));
    }

    #[test]
    fn passwords_are_not_repeated_in_messages() {
        assert_eq!(
            redact("postgres://gw:s3cret@db:5432/ledger"),
            "postgres://gw:***@db:5432/ledger"
        );
        assert_eq!(redact("postgres://gw@db/ledger"), "postgres://gw@db/ledger");
        assert_eq!(Backend::of("mysql://x"), None);
    }
}
