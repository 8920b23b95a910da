-- A case's history, one row per entry, from the `history/<case id>/<from>` records the
-- dispatcher writes once per move (the lifecycle record carries only the count). The
-- primary key makes a record read twice change nothing.
CREATE TABLE case_history (
    case_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    entry TEXT NOT NULL,
    PRIMARY KEY (case_id, seq)
);
