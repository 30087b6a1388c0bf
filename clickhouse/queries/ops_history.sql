-- The latest records of the control plane, newest first, from the audit table the sink fills from
-- `ops.results`: per command, its admission (stage `received`), one line per IDC result set (stage
-- `result`, its minions folded into a count) and any forged record naming it (stage `forgery`). Each
-- record is its own line, so a rejected replay never hides the admission of the command it copies.
-- Times in {tz}.
SELECT
    toString(command_id)                                AS command_id,
    stage,
    idc,
    any(operator)                                       AS operator,
    any(module)                                         AS module,
    any(target)                                         AS target,
    any(status)                                         AS status,
    any(reason)                                         AS reason,
    any(detail)                                         AS detail,
    any(master)                                         AS master,
    countIf(minion != '')                               AS minions,
    round(max(duration_ms), 1)                          AS duration_ms,
    formatDateTime(min(stored_at), '%Y-%m-%d %H:%i:%S', {tz:String}) AS time
FROM ops_audit_log FINAL
GROUP BY command_id, record_id, stage, idc
ORDER BY min(stored_at) DESC, command_id, stage DESC, idc
LIMIT {limit:UInt32}
