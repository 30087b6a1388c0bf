"""Event-time windows: tumbling minute/hour/day, the rolling last hour, and per-window funnels."""

from stream.windows.buckets import Bucketer
from stream.windows.funnel import funnel_users
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
