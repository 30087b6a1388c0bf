"""The report: the analyses of `clickhouse/queries` as a typed `Report`, rendered as JSON, terminal tables,
or an HTML page with charts (matplotlib) and a Sankey of the session paths.

It reads ClickHouse through a client it is given, like `grafana` reads the same queries; it knows nothing
of how the stack runs.
"""

from report._alerts import alert_line, list_alerts
from report._build import NO_DATA, NoSchema, Report, ReportOptions, build_report, ltv
from report._html import write_html
from report._text import render_text

__all__ = [
    "NO_DATA",
    "NoSchema",
    "Report",
    "ReportOptions",
    "alert_line",
    "build_report",
    "list_alerts",
    "ltv",
    "render_text",
    "write_html",
]
