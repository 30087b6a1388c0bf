-- Audit trail of the control plane: every outcome the control service publishes to `ops.results`.
-- One row per (command, stage, IDC, minion): stage `received` (accepted or rejected, idc = '' and
-- minion = ''), then `result` rows per IDC and minion (minion = '' when the IDC failed as a whole).
-- The sink may store a result twice after a restart; the key makes it one row.
CREATE TABLE IF NOT EXISTS ops_audit
(
    command_id  UUID,
    stage       LowCardinality(String),  -- received, result
    idc         LowCardinality(String),
    minion      String,
    operator    LowCardinality(String),
    module      LowCardinality(String),
    target      String,
    args        String,                  -- JSON
    master      String,                  -- name of the master that ran it ('' before dispatch)
    status      LowCardinality(String),  -- accepted, rejected, succeeded, failed, timeout
    reason      LowCardinality(String),  -- code: unsigned, expired, forbidden_module, unreachable, ...
    detail      String,                  -- the reason in words
    output      String,                  -- JSON return of the minion
    duration_ms Float64,
    issued_at   DateTime64(3, 'UTC'),
    recorded_at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(recorded_at)
ORDER BY (command_id, stage, idc, minion);
