"""What a minute of a metric should look like: a robust baseline from the previous days.

For minute t of a metric, each of up to `days` previous days contributes the median of its minutes
around the same minute of day (t - d days, ± `neighbourhood` minutes); the seasonal value is the
median of those. The recent level (the median, over the last `level_minutes`, of each minute's
observed value over its seasonal value, over minutes that did not deviate) scales it to today's
traffic (only minutes near their seasonal value count), so a quieter weekday or a slow trend does
not read as an anomaly, while neither an anomaly in progress nor a day-long surge becomes the level
it is judged against.
The spread is the median absolute deviation of the previous days' minutes around their own day's
value, relative to it, with a Poisson floor for counts (a count of n varies by about √n).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

DAY_MINUTES = 1440
_MAD_TO_SIGMA = 1.4826  # a normal distribution's standard deviation per median absolute deviation

Floats = npt.NDArray[np.float64]


@dataclass(frozen=True)
class BaselineRules:
    days: int  # previous days the seasonal value looks at
    min_days: int  # no baseline (so no alert) with fewer previous days of history
    neighbourhood: int  # minutes either side of the same minute of day
    level_minutes: int  # the recent span the level is measured over
    level_band: float  # minutes further than this from their seasonal value (relative) do not set it

    @property
    def history_minutes(self) -> int:
        """The minutes before t that minute t's expectation reads: `days` days and the neighbourhood
        for the seasonal value, the level's span (four times `level_minutes`, see `recent_level`)."""
        return max(self.days * DAY_MINUTES + self.neighbourhood, 4 * self.level_minutes)


@dataclass(frozen=True)
class Expectation:
    expected: float
    sigma: float


class Series:
    """A metric's values per minute (index 0 = the first minute) and the seasonal value each had."""

    def __init__(self, keep: int) -> None:
        self.keep = keep  # minutes of history to hold
        self.offset = 0  # index of values[0]
        self.values: Floats = np.zeros(0)
        self.seasonal: Floats = np.zeros(0)  # nan where there was no baseline
        self.calm: npt.NDArray[np.bool_] = np.zeros(0, dtype=bool)  # the minute did not deviate
        self.length = 0

    def append(self, value: float, seasonal: float) -> None:
        local = self.length - self.offset
        if local == len(self.values):
            self._grow()
            local = self.length - self.offset
        self.values[local] = value
        self.seasonal[local] = seasonal
        self.calm[local] = True
        self.length += 1

    def mark_deviating(self, t: int) -> None:
        self.calm[t - self.offset] = False

    def _grow(self) -> None:
        held = self.length - self.offset
        drop = max(0, held - self.keep)
        size = max(2 * (held - drop), 1024)
        values, seasonal, calm = np.zeros(size), np.full(size, np.nan), np.zeros(size, dtype=bool)
        values[: held - drop] = self.values[drop:held]
        seasonal[: held - drop] = self.seasonal[drop:held]
        calm[: held - drop] = self.calm[drop:held]
        self.values, self.seasonal, self.calm, self.offset = values, seasonal, calm, self.offset + drop

    def window(self, start: int, stop: int) -> tuple[Floats, Floats]:
        """Values and seasonal values of minutes [start, stop), as far as they are held."""
        low = max(start, self.offset) - self.offset
        high = max(stop - self.offset, low)
        return self.values[low:high], self.seasonal[low:high]

    def calm_window(self, start: int, stop: int) -> npt.NDArray[np.bool_]:
        low = max(start, self.offset) - self.offset
        return self.calm[low : max(stop - self.offset, low)]


def seasonal_value(series: Series, t: int, rules: BaselineRules) -> tuple[float, Floats] | None:
    """The median over previous days of each day's median around minute t's minute of day, and the
    days' minutes relative to their day's median (for the spread); None without enough days."""
    width = rules.neighbourhood
    days = [
        t - day * DAY_MINUTES
        for day in range(1, rules.days + 1)
        if t - day * DAY_MINUTES - width >= series.offset
    ]
    if len(days) < rules.min_days:
        return None
    local = np.array(days)[:, None] - series.offset + np.arange(-width, width + 1)
    around = series.values[local]
    daily = np.sort(around, axis=1)[:, width]  # each day's median (2 * width + 1 minutes)
    relative = around[daily > 0] / daily[daily > 0, None] - 1.0
    return _median(daily), relative.ravel()


def recent_level(series: Series, t: int, rules: BaselineRules) -> float:
    """Observed over seasonal, the median over the last `level_minutes` minutes that did not deviate
    and were within `level_band` of their seasonal value (1 until half as many exist in the last
    12 hours): the level follows a slow trend or a quieter weekday, while neither an anomaly in
    progress nor a day-long surge becomes the level it is judged against."""
    span = rules.level_minutes * 4  # a long anomaly or surge leaves it enough usable minutes
    values, seasonal = series.window(t - span, t)
    ratio = np.divide(values, seasonal, out=np.full(values.shape, np.nan), where=seasonal > 0)
    usable = np.flatnonzero(series.calm_window(t - span, t) & (np.abs(ratio - 1.0) <= rules.level_band))
    usable = usable[-rules.level_minutes :]
    if usable.size < rules.level_minutes // 2:
        return 1.0
    return _median(ratio[usable])


def expectation(
    series: Series, t: int, rules: BaselineRules, floor: Callable[[float], float]
) -> tuple[Expectation | None, float]:
    """The expectation for minute t (None: not enough history), and its seasonal value (nan if none).

    `floor(expected)`: the least spread the metric has by sampling alone (Poisson for a count)."""
    seasonal = seasonal_value(series, t, rules)
    if seasonal is None:
        return None, float("nan")
    value, relative = seasonal
    expected = recent_level(series, t, rules) * value
    spread = _MAD_TO_SIGMA * _mad(relative) if relative.size else 0.0
    sigma = max(expected * spread, floor(expected), 1e-9)
    return Expectation(expected, sigma), value


def _mad(values: Floats) -> float:
    return _median(np.abs(values - _median(values)))


def _median(values: Floats) -> float:
    """np.median without its generality, whose overhead is most of the detector's time here."""
    half = values.size // 2
    if values.size % 2:
        return float(np.partition(values, half)[half])
    low, high = np.partition(values, (half - 1, half))[half - 1 : half + 1]
    return float(low + high) / 2
