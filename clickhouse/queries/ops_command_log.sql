-- The latest {top} ops outcomes for IDC {idc} ('*' = every IDC) stored in the range, newest first, with
-- who ran what where, the outcome, why it failed and how long it took; forged records are flagged as such.
SELECT
    stored_at, command_id, operator, module, target, idc, minion, master, stage, status, reason, duration_ms
FROM ops_audit_log FINAL
WHERE ({idc:String} = '*' OR idc = {idc:String})
  AND stored_at >= toDateTime({from:Date}, {tz:String}) AND stored_at < toDateTime({to:Date} + 1, {tz:String})
ORDER BY stored_at DESC, command_id, stage, idc, minion
LIMIT {top:UInt32}
