-- IDCs that appear in the ops audit trail (choices for the dashboards' IDC variable).
SELECT DISTINCT idc FROM ops_audit_log FINAL WHERE idc != '' ORDER BY idc
