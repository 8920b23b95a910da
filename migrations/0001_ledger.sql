-- The ledger's read model of petitions.cases and callbacks.delivery (src/ledger).
-- Written for SQLite and PostgreSQL alike: TEXT and BIGINT only, JSON kept as TEXT.

-- Where the ledger's reader is in each topic partition: written in the same transaction
-- as the rows those records made, so a restart resumes exactly there.
CREATE TABLE ledger_offsets (
    topic TEXT NOT NULL,
    part BIGINT NOT NULL,
    next_offset BIGINT NOT NULL,
    PRIMARY KEY (topic, part)
);

-- Which Kafka cluster and topics the rows came from: another cluster (a fresh broker) or
-- other topics (another prefix) mean the rows describe other petitions, and the ledger
-- reads the configured topics from the start.
CREATE TABLE ledger_source (
    id BIGINT PRIMARY KEY,
    cluster TEXT NOT NULL,
    topics TEXT NOT NULL
);

-- One row per case with what the queries filter on: narrow, so that scans and counts
-- touch little. The records themselves are in case_documents.
CREATE TABLE cases (
    case_id TEXT PRIMARY KEY,
    -- The petitions.cases partition: the dispatcher partition that owns the case.
    part BIGINT NOT NULL,
    -- The department working on it now: the lifecycle's, else the routed one.
    department TEXT NOT NULL DEFAULT '',
    phase TEXT NOT NULL DEFAULT 'dispatched',
    overdue BIGINT NOT NULL DEFAULT 0,
    escalated BIGINT NOT NULL DEFAULT 0,
    has_lifecycle BIGINT NOT NULL DEFAULT 0,
    -- Unix seconds.
    deadline BIGINT,
    opened_at TEXT,
    -- NULL until the case record arrived (a report or lifecycle may come first): only
    -- cases with it are listed.
    opened_unix BIGINT,
    region TEXT,
    category TEXT,
    -- The address the first report named, for "the same place" queries (prefix match).
    place TEXT
);

-- The records as published (JSON text).
CREATE TABLE case_documents (
    case_id TEXT PRIMARY KEY,
    case_record TEXT,
    lifecycle TEXT,
    petition TEXT
);

CREATE TABLE reports (
    petition_id TEXT PRIMARY KEY,
    case_id TEXT NOT NULL,
    channel TEXT NOT NULL,
    reported_unix BIGINT,
    record TEXT NOT NULL
);

CREATE TABLE callbacks (
    callback_id TEXT PRIMARY KEY,
    case_id TEXT NOT NULL,
    finished_at TEXT,
    record TEXT NOT NULL
);

-- The ledger's queries: every filter of GET /cases, then its paging order.
CREATE INDEX cases_by_time ON cases (opened_unix, case_id);
CREATE INDEX cases_by_department ON cases (department, opened_unix, case_id);
CREATE INDEX cases_by_department_phase ON cases (department, phase, opened_unix, case_id);
CREATE INDEX cases_by_phase ON cases (phase, opened_unix, case_id);
CREATE INDEX cases_by_overdue ON cases (overdue, opened_unix, case_id);
CREATE INDEX cases_by_region ON cases (region, opened_unix, case_id);
CREATE INDEX cases_by_category ON cases (category, opened_unix, case_id);
CREATE INDEX cases_by_place ON cases (place);
CREATE INDEX reports_by_case ON reports (case_id);
CREATE INDEX reports_by_channel ON reports (channel, reported_unix);
CREATE INDEX callbacks_by_case ON callbacks (case_id);
