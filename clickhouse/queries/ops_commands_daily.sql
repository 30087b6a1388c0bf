-- Ops outcomes per day stored (in {tz}) and outcome, for IDC {idc} ('*' = every IDC): received rows count
-- accepted / rejected commands and forgery rows forged records (idc '', so under '*' only), result rows
-- succeeded / failed / refused / timeout / unknown per minion.
SELECT toString(toDate(stored_at, {tz:String})) AS date, stage, status, count() AS outcomes
FROM ops_audit_log FINAL
WHERE ({idc:String} = '*' OR idc = {idc:String})
  AND stored_at >= toDateTime({from:Date}, {tz:String}) AND stored_at < toDateTime({to:Date} + 1, {tz:String})
GROUP BY date, stage, status
ORDER BY date, stage, status
