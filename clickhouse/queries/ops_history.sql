-- The latest commands of the control plane, newest first, from the audit table the sink fills from
-- `ops.results`: per command, its admission (stage `received`) and one row per IDC result set
-- (stage `result`, its minions folded into a count).
SELECT
    toString(command_id)                                  AS command_id,
    stage,
    idc,
    any(operator)                                         AS operator,
    any(module)                                           AS module,
    any(target)                                           AS target,
    any(status)                                           AS status,
    any(reason)                                           AS reason,
    any(detail)                                           AS detail,
    any(master)                                           AS master,
    countIf(minion != '')                                 AS minions,
    round(max(duration_ms), 1)                            AS duration_ms,
    formatDateTime(min(recorded_at), '%Y-%m-%d %H:%i:%S') AS time
FROM ops_audit FINAL
GROUP BY command_id, stage, idc
ORDER BY min(recorded_at) DESC, stage DESC, idc
LIMIT {limit:UInt32}
