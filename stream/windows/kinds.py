"""The window kinds: their names, sizes, and the ClickHouse tables their rows go to. Start reading here.

Every accepted event counts in one tumbling window of each kind in `TUMBLING` (minutes and hours aligned
in UTC, days starting at local midnight in the configured time zone) and in the rolling last hour
(`ROLLING`: sixty minutes, advancing every minute). Each (kind, window start, source partition) is one
row of `WINDOWS_TABLE` (PV, UV and the count of each behaviour); the kinds of `FUNNEL_KINDS` also give
a row of `FUNNEL_TABLE` (users reaching pv, then cart, then buy, in that order, within the window).
"""

from __future__ import annotations

MINUTE, HOUR, DAY = 60, 3_600, 86_400
TUMBLING = {"minute": MINUTE, "hour": HOUR, "day": DAY}  # kind -> size in seconds
ROLLING = "rolling_1h"
ROLLING_SIZE, ROLLING_STEP = HOUR, MINUTE  # the rolling window: last 60 minutes, advancing every minute
ROLLING_SOURCE = "minute"  # the tumbling kind the rolling window is summed from
FUNNEL_KINDS = ("hour", "day")

WINDOWS_TABLE = "realtime_windows"  # see clickhouse/migrations/0002_realtime.sql
FUNNEL_TABLE = "realtime_funnel"
