-- Audit trail of the control plane, replacing `ops_audit` (0003), whose key let a later record replace
-- an earlier one's outcome and whose time came from the record itself; `ops_audit` is no longer written.
-- One row per record of `ops.results` and minion. Only records the control service signed are stored
-- as what they say (stage `received`: accepted or rejected, idc = '' and minion = ''; stage `result`:
-- per IDC and minion, minion = '' when the IDC has no result set); a record without that signature is
-- one `forgery` row (status `forged`, its first bytes in `output`), evidence, never a result.
-- The key holds a hash of the record: a record stored twice (the sink restarted) is one row, and no
-- other record, not even one reusing a command's id, can replace it. `stored_at` is the sink's clock.
CREATE TABLE IF NOT EXISTS ops_audit_log
(
    record_id   String,                  -- hash of the record as it was on ops.results
    command_id  UUID,
    stage       LowCardinality(String),  -- received, result, forgery
    idc         LowCardinality(String),
    minion      String,
    operator    LowCardinality(String),
    module      LowCardinality(String),
    target      String,
    args        String,                  -- JSON
    master      String,                  -- name of the master that answered ('' before dispatch)
    status      LowCardinality(String),  -- accepted, rejected, succeeded, failed, refused, timeout, unknown, forged
    reason      LowCardinality(String),  -- code: unsigned, expired, forbidden_target, unreachable, no_reply, ...
    detail      String,                  -- the reason in words
    output      String,                  -- JSON return of the minion (cut with a marker when large)
    duration_ms Float64,
    truncated   Bool,                    -- some output of the record was cut
    source      String,                  -- the command's record on ops.commands: topic/partition/offset
    issued_at   DateTime64(3, 'UTC'),
    stored_at   DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree
ORDER BY (command_id, record_id, minion);
