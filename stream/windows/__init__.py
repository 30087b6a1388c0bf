"""Event-time windows: tumbling minute/hour/day, the rolling last hour, and per-window funnels.

`kinds` defines the window kinds, their sizes and their tables; `state` keeps a partition's open windows
and rebuilds them exactly from a checkpoint; `buckets` maps event times to window starts; `funnel` counts
the ordered pv > cart > buy funnel of a window's users.
"""

from stream.windows.buckets import Bucketer
from stream.windows.funnel import funnel_users
from stream.windows.kinds import (
    DAY,
    FUNNEL_KINDS,
    FUNNEL_TABLE,
    HOUR,
    MINUTE,
    ROLLING,
    TUMBLING,
    WINDOWS_TABLE,
)
from stream.windows.state import (
    Batch,
    Checkpoint,
    FunnelRow,
    PartitionWindows,
    WindowRow,
    WindowRules,
    row_version,
)

__all__ = [
    "DAY",
    "FUNNEL_KINDS",
    "FUNNEL_TABLE",
    "HOUR",
    "MINUTE",
    "ROLLING",
    "TUMBLING",
    "WINDOWS_TABLE",
    "Batch",
    "Bucketer",
    "Checkpoint",
    "FunnelRow",
    "PartitionWindows",
    "WindowRow",
    "WindowRules",
    "funnel_users",
    "row_version",
]
