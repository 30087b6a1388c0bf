-- Ops commands per day (in {tz}) and outcome, for IDC {idc} ('*' = every IDC): received rows count
-- accepted / rejected commands (idc '', so under '*' only), result rows succeeded / failed / timeout per minion.
SELECT toString(toDate(issued_at, {tz:String})) AS date, stage, status, count() AS outcomes
FROM ops_audit FINAL
WHERE ({idc:String} = '*' OR idc = {idc:String})
  AND issued_at >= toDateTime({from:Date}, {tz:String}) AND issued_at < toDateTime({to:Date} + 1, {tz:String})
GROUP BY date, stage, status
ORDER BY date, stage, status
