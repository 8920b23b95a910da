-- A place query selects a prefix range of addresses, then pages through it in the paging
-- order (opened, case id). With only the address in the index, every match was read from
-- the table to be sorted: at a year's scale (2.45 million cases) a prefix selecting 6,800
-- cases took p50 71 ms, p99 401 ms on SQLite. With the paging order in the index, the
-- sort reads the index alone and only the page's rows are read (store.rs, `list`).
DROP INDEX cases_by_place;
CREATE INDEX cases_by_place ON cases (place, opened_unix, case_id);
