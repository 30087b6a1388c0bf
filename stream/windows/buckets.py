"""Event-time window bucketing, in the configured time zone."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

from stream.windows.kinds import DAY

Int64s = npt.NDArray[np.int64]
Bools = npt.NDArray[np.bool_]


class Bucketer:
    """Window starts (Unix seconds) of each tumbling kind; days start at local midnight.

    Minutes and hours are aligned in UTC, which equals local alignment in every zone whose offset
    is a whole number of hours (Asia/Shanghai included).
    """

    def __init__(self, timezone: str) -> None:
        self.zone = ZoneInfo(timezone)

    def _offset(self, ts: int) -> int:
        offset = datetime.fromtimestamp(ts, UTC).astimezone(self.zone).utcoffset()
        return int(offset.total_seconds()) if offset else 0

    def starts(self, size: int, ts: Int64s) -> Int64s:
        if size != DAY:
            return ts - ts % size
        low, high = self._offset(int(ts.min())), self._offset(int(ts.max()))
        if low == high:  # the usual case: one offset for the whole batch, so vectorise
            local = ts + low
            return local - local % DAY - low
        return np.array([self._day_start(int(t)) for t in ts], dtype=np.int64)

    def _day_start(self, ts: int) -> int:
        local = ts + self._offset(ts)
        return local - local % DAY - self._offset(ts)
