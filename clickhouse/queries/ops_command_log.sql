-- The latest {top} ops outcomes for IDC {idc} ('*' = every IDC) in the range, newest first, with who ran
-- what where, the outcome, why it failed and how long it took.
SELECT
    issued_at, command_id, operator, module, target, idc, minion, master, stage, status, reason, duration_ms
FROM ops_audit FINAL
WHERE ({idc:String} = '*' OR idc = {idc:String})
  AND issued_at >= toDateTime({from:Date}, {tz:String}) AND issued_at < toDateTime({to:Date} + 1, {tz:String})
ORDER BY issued_at DESC, command_id, stage, idc, minion
LIMIT {top:UInt32}
