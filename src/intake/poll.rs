//! The generic poll engine: fetches pages from a channel (JSON with an opaque cursor, or
//! XML with numbered pages over a time window), publishes every item as a petition and
//! advances the stored cursor only after Kafka acknowledged all of the page's petitions.
//!
//! Politeness: the channel's rate limit (`governor`), `Retry-After` on 429, exponential
//! backoff with jitter on errors. Exclusivity between gateway instances comes from
//! [`super::lease`].

use super::cursor::CursorStore;
use super::push::{accept_payload, now_rfc3339, Refusal};
use super::quarantine::{quarantine, Rejected};
use super::IntakeContext;
use crate::kafka::cloudevents::new_trace_id;
use gateway_connectors::definition::{Paging, PollFormat, PollIntake};
use gateway_connectors::xml::{items_at, xml_to_json};
use gateway_connectors::{AnswerClass, ConnectorDefinition};
use governor::DefaultDirectRateLimiter;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// A poll connector ready to run.
pub struct PollChannel {
    pub definition: ConnectorDefinition,
    pub poll: PollIntake,
    pub secret: String,
    pub base: String,
    pub limiter: DefaultDirectRateLimiter,
}

#[derive(Debug, thiserror::Error)]
pub enum PollError {
    #[error("{channel}: {url}: {source}")]
    Http {
        channel: String,
        url: String,
        source: reqwest::Error,
    },
    #[error("{channel}: {url} answered {status}: {excerpt}")]
    Status {
        channel: String,
        url: String,
        status: u16,
        excerpt: String,
        retry_after: Option<Duration>,
    },
    #[error("{channel}: {url}: unreadable page: {message}")]
    Page {
        channel: String,
        url: String,
        message: String,
    },
    #[error("{channel}: {count} petition(s) of the page were not acknowledged by Kafka")]
    NotStored { channel: String, count: usize },
    #[error(transparent)]
    Cursor(#[from] super::cursor::CursorError),
}

impl PollError {
    /// Whether polling again later may succeed (4xx other than 429 means our request or
    /// credentials are wrong: still retried, but slowly, and logged as an error).
    pub fn retryable(&self) -> bool {
        match self {
            PollError::Status { status, .. } => *status == 429 || *status >= 500,
            _ => true,
        }
    }
}

/// Position in a channel's stream of items.
#[derive(Debug, Clone, PartialEq)]
pub enum Position {
    Cursor(String),
    Window {
        start: String,
        page: u32,
        /// Newest item time seen in this window so far.
        newest: String,
    },
}

impl Position {
    pub fn initial(paging: &Paging) -> Self {
        match paging {
            Paging::Cursor { .. } => Position::Cursor(String::new()),
            Paging::PageWindow {
                initial_window,
                first_page,
                ..
            } => Position::Window {
                start: initial_window.clone(),
                page: *first_page,
                newest: initial_window.clone(),
            },
        }
    }

    pub fn to_json(&self) -> Value {
        match self {
            Position::Cursor(c) => json!({"cursor": c}),
            Position::Window {
                start,
                page,
                newest,
            } => {
                json!({"window_start": start, "page": page, "newest": newest})
            }
        }
    }

    pub fn from_json(paging: &Paging, v: &Value) -> Option<Self> {
        match paging {
            Paging::Cursor { .. } => Some(Position::Cursor(v.get("cursor")?.as_str()?.to_string())),
            Paging::PageWindow { .. } => Some(Position::Window {
                start: v.get("window_start")?.as_str()?.to_string(),
                page: u32::try_from(v.get("page")?.as_u64()?).ok()?,
                newest: v.get("newest")?.as_str()?.to_string(),
            }),
        }
    }
}

fn encode(v: &str) -> String {
    form_urlencoded::byte_serialize(v.as_bytes()).collect()
}

/// The request URL for a position.
pub fn page_url(ch: &PollChannel, pos: &Position) -> String {
    let mut url = ch.poll.url.replace("{base}", &ch.base);
    let page_size = match &ch.poll.paging {
        Paging::Cursor { page_size, .. } | Paging::PageWindow { page_size, .. } => *page_size,
    };
    url = url
        .replace("{limit}", &page_size.to_string())
        .replace("{page_size}", &page_size.to_string());
    match pos {
        Position::Cursor(c) => url.replace("{cursor}", &encode(c)),
        Position::Window { start, page, .. } => url
            .replace("{window_start}", &encode(start))
            .replace("{page}", &page.to_string()),
    }
}

/// What a page says about where to go next.
#[derive(Debug, PartialEq)]
pub struct Advance {
    pub next: Position,
    /// More pages are waiting now (no pause before the next request).
    pub more: bool,
}

/// Pure: the position after a fully published page.
pub fn advance(
    paging: &Paging,
    pos: &Position,
    doc: &Value,
    items: &[Value],
) -> Result<Advance, String> {
    match (paging, pos) {
        (
            Paging::Cursor {
                next_cursor,
                has_more,
                ..
            },
            Position::Cursor(current),
        ) => {
            let next = match doc.pointer(next_cursor) {
                Some(Value::String(s)) if !s.is_empty() => s.clone(),
                Some(Value::Number(n)) => n.to_string(),
                // No cursor with no items: stay where we are and ask again later.
                _ if items.is_empty() => current.clone(),
                _ => return Err(format!("no cursor at {next_cursor}")),
            };
            let more = match doc.pointer(has_more) {
                Some(Value::Bool(b)) => *b,
                Some(Value::String(s)) => s == "true",
                _ => false,
            };
            Ok(Advance {
                next: Position::Cursor(next),
                more: more && !items.is_empty(),
            })
        }
        (
            Paging::PageWindow {
                total,
                page_size,
                first_page,
                item_time,
                time_format,
                ..
            },
            Position::Window {
                start,
                page,
                newest,
            },
        ) => {
            let total: u64 = match doc.pointer(total) {
                Some(Value::String(s)) => s
                    .trim()
                    .parse()
                    .map_err(|_| format!("total {s:?} is not a number"))?,
                Some(Value::Number(n)) => n.as_u64().ok_or("total is not a count")?,
                _ => return Err(format!("no total at {total}")),
            };
            let mut newest = newest.clone();
            for item in items {
                if let Some(t) = item.pointer(item_time).and_then(Value::as_str) {
                    // Only well-formed times move the window; their format sorts as text.
                    if chrono::NaiveDateTime::parse_from_str(t.trim(), time_format).is_ok()
                        && t.trim() > newest.as_str()
                    {
                        newest = t.trim().to_string();
                    }
                }
            }
            let read = u64::from(page + 1 - first_page) * u64::from(*page_size);
            if !items.is_empty() && read < total {
                Ok(Advance {
                    next: Position::Window {
                        start: start.clone(),
                        page: page + 1,
                        newest,
                    },
                    more: true,
                })
            } else {
                // Window done: the next one starts at the newest item time, inclusive, so
                // items stamped at that same second are read again (ids dedupe them).
                Ok(Advance {
                    next: Position::Window {
                        start: newest.clone(),
                        page: *first_page,
                        newest,
                    },
                    more: false,
                })
            }
        }
        _ => Err("stored position does not fit the connector's paging".into()),
    }
}

/// Exponential backoff with full jitter, capped.
pub fn backoff(attempt: u32, base: Duration, cap: Duration) -> Duration {
    let exp = base.saturating_mul(2u32.saturating_pow(attempt.min(16)));
    let ceiling = exp.min(cap);
    let jitter = rand::random::<f64>();
    ceiling.mul_f64(0.5 + 0.5 * jitter)
}

/// Test hook: `GATEWAY_FAULT_CRASH_AFTER_FETCH=<channel>:<n>` aborts the process right
/// after the n-th page of that channel was fetched and before any of it is published,
/// so tests can prove a crash there loses nothing.
fn crash_after_fetch(channel: &str, fetched: u64) {
    if let Ok(spec) = std::env::var("GATEWAY_FAULT_CRASH_AFTER_FETCH") {
        if let Some((c, n)) = spec.split_once(':') {
            if c == channel && n.parse::<u64>().ok() == Some(fetched) {
                eprintln!("fault injection: aborting after fetching page {fetched} of {channel}");
                std::process::abort();
            }
        }
    }
}

pub struct Poller {
    pub ctx: Arc<IntakeContext>,
    pub http: reqwest::Client,
    pub cursors: CursorStore,
}

impl Poller {
    /// Polls one channel until cancelled (its lease was lost or the gateway stops).
    pub async fn run(&self, ch: Arc<PollChannel>, cancel: CancellationToken) {
        let name = ch.definition.name().to_string();
        let mut failures: u32 = 0;
        let mut fetched: u64 = 0;
        let mut pos = loop {
            match self.cursors.load(&name).await {
                Ok(stored) => {
                    break stored
                        .and_then(|v| Position::from_json(&ch.poll.paging, &v))
                        .unwrap_or_else(|| Position::initial(&ch.poll.paging))
                }
                Err(e) => {
                    tracing::warn!(channel = %name, error = %e, "cannot read the poll cursor yet");
                    if sleep_or_cancel(
                        &cancel,
                        backoff(failures, Duration::from_secs(1), Duration::from_secs(30)),
                    )
                    .await
                    {
                        return;
                    }
                    failures += 1;
                }
            }
        };
        failures = 0;
        tracing::info!(channel = %name, position = %pos.to_json(), "polling");
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = ch.limiter.until_ready() => {}
            }
            let result = self.poll_once(&ch, &pos, &mut fetched).await;
            let pause = match result {
                Ok(advance) => {
                    failures = 0;
                    let more = advance.more;
                    pos = advance.next;
                    if more {
                        Duration::ZERO
                    } else {
                        Duration::from_secs(ch.poll.interval_secs)
                    }
                }
                Err(e) => {
                    failures += 1;
                    let wait = match &e {
                        PollError::Status {
                            retry_after: Some(d),
                            ..
                        } => {
                            *d + backoff(0, Duration::from_millis(100), Duration::from_millis(500))
                        }
                        _ => backoff(
                            failures - 1,
                            Duration::from_secs(1),
                            Duration::from_secs(60),
                        ),
                    };
                    if e.retryable() {
                        tracing::warn!(channel = %name, error = %e, wait_ms = wait.as_millis() as u64, "poll failed; retrying");
                    } else {
                        tracing::error!(channel = %name, error = %e, wait_ms = wait.as_millis() as u64, "poll rejected; check the connector's settings");
                    }
                    wait
                }
            };
            if sleep_or_cancel(&cancel, pause).await {
                return;
            }
        }
    }

    async fn poll_once(
        &self,
        ch: &PollChannel,
        pos: &Position,
        fetched: &mut u64,
    ) -> Result<Advance, PollError> {
        let name = ch.definition.name();
        let url = page_url(ch, pos);
        let http_err = |source| PollError::Http {
            channel: name.to_string(),
            url: url.clone(),
            source,
        };
        let mut request = self
            .http
            .get(&url)
            .timeout(Duration::from_secs(ch.poll.timeout_secs));
        for (k, v) in ch
            .poll
            .auth
            .outbound_headers(&ch.secret, b"", chrono::Utc::now().timestamp())
        {
            request = request.header(k, v);
        }
        let response = request.send().await.map_err(http_err)?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = response.bytes().await.map_err(http_err)?;
        if !(200..300).contains(&status) {
            return Err(PollError::Status {
                channel: name.to_string(),
                url,
                status,
                excerpt: String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
                retry_after,
            });
        }
        *fetched += 1;
        crash_after_fetch(name, *fetched);
        let page_err = |message: String| PollError::Page {
            channel: name.to_string(),
            url: url.clone(),
            message,
        };
        let doc: Value = match ch.poll.format {
            PollFormat::Json => {
                serde_json::from_slice(&body).map_err(|e| page_err(e.to_string()))?
            }
            PollFormat::Xml => {
                let text = std::str::from_utf8(&body).map_err(|e| page_err(e.to_string()))?;
                xml_to_json(text).map_err(page_err)?
            }
        };
        let items = items_at(&doc, &ch.poll.items);
        let next = advance(&ch.poll.paging, pos, &doc, &items).map_err(page_err)?;

        let received_at = now_rfc3339();
        let results =
            futures_util::future::join_all(items.iter().map(|item| {
                let trace = new_trace_id();
                let received_at = received_at.clone();
                async move {
                    accept_payload(&self.ctx, &ch.definition, item, &received_at, &trace).await
                }
            }))
            .await;
        let mut not_stored = 0;
        for (item, result) in items.iter().zip(results) {
            match result {
                Ok(_) => {}
                Err(Refusal::Unavailable(_)) => not_stored += 1,
                Err(Refusal::Invalid(errors)) => {
                    // The channel's data, not our state: quarantine it and move on, so one
                    // bad item never blocks the channel.
                    let source_id = super::push::source_id_hint(&ch.definition, item);
                    let body = serde_json::to_vec(item).unwrap_or_default();
                    quarantine(
                        &self.ctx,
                        Rejected {
                            channel: name,
                            received_at: &received_at,
                            class: AnswerClass::Invalid,
                            errors: &errors,
                            source_id: source_id.as_deref(),
                            content_type: Some("application/json"),
                            body: &body,
                            truncated: false,
                        },
                    )
                    .await;
                }
            }
        }
        if not_stored > 0 {
            return Err(PollError::NotStored {
                channel: name.to_string(),
                count: not_stored,
            });
        }
        self.cursors.save(name, &next.next.to_json()).await?;
        if !items.is_empty() {
            tracing::info!(channel = name, items = items.len(), position = %next.next.to_json(), "page published");
        }
        Ok(next)
    }
}

/// Sleeps; true when cancelled meanwhile.
async fn sleep_or_cancel(cancel: &CancellationToken, d: Duration) -> bool {
    if d.is_zero() {
        return cancel.is_cancelled();
    }
    tokio::select! {
        _ = cancel.cancelled() => true,
        _ = tokio::time::sleep(d) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cursor_paging() -> Paging {
        Paging::Cursor {
            next_cursor: "/data/nextCursor".into(),
            has_more: "/data/hasMore".into(),
            page_size: 50,
        }
    }

    fn window_paging() -> Paging {
        Paging::PageWindow {
            total: "/response/total".into(),
            page_size: 2,
            first_page: 1,
            item_time: "/submitTime".into(),
            time_format: "%Y-%m-%d %H:%M:%S".into(),
            initial_window: "2026-01-01 00:00:00".into(),
        }
    }

    #[test]
    fn a_cursor_page_moves_to_its_next_cursor() {
        let doc = json!({"data": {"items": [{"tid": "1"}], "nextCursor": "c-1", "hasMore": true}});
        let items = items_at(&doc, "/data/items");
        let a = advance(
            &cursor_paging(),
            &Position::Cursor(String::new()),
            &doc,
            &items,
        )
        .unwrap();
        assert_eq!(
            a,
            Advance {
                next: Position::Cursor("c-1".into()),
                more: true
            }
        );
        let empty = json!({"data": {"items": [], "nextCursor": "c-1", "hasMore": false}});
        let a = advance(
            &cursor_paging(),
            &Position::Cursor("c-1".into()),
            &empty,
            &[],
        )
        .unwrap();
        assert_eq!(
            a,
            Advance {
                next: Position::Cursor("c-1".into()),
                more: false
            }
        );
    }

    #[test]
    fn a_window_pages_through_then_restarts_at_the_newest_time() {
        let p = window_paging();
        let start = Position::initial(&p);
        let page1 = json!({"response": {"total": "3", "clue": [
            {"submitTime": "2026-11-01 09:00:00"}, {"submitTime": "2026-11-01 10:00:00"}]}});
        let items = items_at(&page1, "/response/clue");
        let a = advance(&p, &start, &page1, &items).unwrap();
        assert!(a.more);
        assert!(matches!(&a.next, Position::Window { page: 2, .. }));
        let page2 =
            json!({"response": {"total": "3", "clue": {"submitTime": "2026-11-01 11:00:00"}}});
        let items = items_at(&page2, "/response/clue");
        let b = advance(&p, &a.next, &page2, &items).unwrap();
        assert!(!b.more);
        assert_eq!(
            b.next,
            Position::Window {
                start: "2026-11-01 11:00:00".into(),
                page: 1,
                newest: "2026-11-01 11:00:00".into()
            }
        );
    }

    #[test]
    fn positions_round_trip_through_json() {
        for (paging, pos) in [
            (cursor_paging(), Position::Cursor("c-9912".into())),
            (
                window_paging(),
                Position::Window {
                    start: "a".into(),
                    page: 3,
                    newest: "b".into(),
                },
            ),
        ] {
            assert_eq!(Position::from_json(&paging, &pos.to_json()), Some(pos));
        }
    }

    #[test]
    fn backoff_grows_and_stays_under_the_cap() {
        let cap = Duration::from_secs(60);
        for attempt in 0..30 {
            let d = backoff(attempt, Duration::from_secs(1), cap);
            assert!(d <= cap);
            assert!(d >= Duration::from_secs(1).min(cap).mul_f64(0.5) || attempt == 0);
        }
        assert!(backoff(0, Duration::from_secs(1), cap) <= Duration::from_secs(1));
    }
}
