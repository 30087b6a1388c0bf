"""What a minute of a metric should look like: a robust baseline from the previous days.

For minute t of a metric, each of up to `days` previous days contributes the median of its minutes
around the same minute of day (t - d days, ± `neighbourhood` minutes); the seasonal value is the
median of those. The recent level (the median, over the last `level_minutes`, of each minute's
observed value over its seasonal value, over minutes that did not deviate) scales it to today's
traffic (only minutes near their seasonal value count), so a quieter weekday or a slow trend does
not read as an anomaly, while neither an anomaly in progress nor a day-long surge becomes the level
it is judged against.
The spread has two parts: sampling noise, which depends on the minute's own size (a count of n
varies by about √n, a rate over n users by its binomial spread), and the traffic's own variation,
relative to the value. The previous days' minutes, around their own day's value, give the total
relative spread (their median absolute deviation); what is left of it after their sampling noise is
the traffic's own. A minute's spread adds that, at its expected value, to its own sampling noise: a
pay rate over five times the usual users is judged five times as finely as the usual minutes are.
"""

from __future__ import annotations

import math
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
    seasonal: float  # before the recent level scaled it
    sigma: float


class Series:
    """A metric's values per minute (index 0 = the first minute) and the seasonal value each had."""

    def __init__(self, keep: int) -> None:
        self.keep = keep  # minutes of history to hold
        self.offset = 0  # index of values[0]
        self.values: Floats = np.zeros(0)
        self.seasonal: Floats = np.zeros(0)  # nan where there was no baseline
        self.calm: npt.NDArray[np.bool_] = np.zeros(0, dtype=bool)  # the minute did not deviate
        self.users: Floats = np.zeros(0)  # the minute's active users (a rate's sample)
        self.length = 0

    def append(self, value: float, seasonal: float, users: float) -> None:
        local = self.length - self.offset
        if local == len(self.values):
            self._grow()
            local = self.length - self.offset
        self.values[local] = value
        self.seasonal[local] = seasonal
        self.users[local] = users
        self.calm[local] = True
        self.length += 1

    def mark_deviating(self, t: int) -> None:
        self.calm[t - self.offset] = False

    def _grow(self) -> None:
        held = self.length - self.offset
        drop = max(0, held - self.keep)
        size = max(2 * (held - drop), 1024)
        values, seasonal, calm = np.zeros(size), np.full(size, np.nan), np.zeros(size, dtype=bool)
        users = np.zeros(size)
        values[: held - drop] = self.values[drop:held]
        seasonal[: held - drop] = self.seasonal[drop:held]
        calm[: held - drop] = self.calm[drop:held]
        users[: held - drop] = self.users[drop:held]
        self.values, self.seasonal, self.calm, self.users = values, seasonal, calm, users
        self.offset += drop

    def window(self, start: int, stop: int) -> tuple[Floats, Floats]:
        """Values and seasonal values of minutes [start, stop), as far as they are held."""
        low = max(start, self.offset) - self.offset
        high = max(stop - self.offset, low)
        return self.values[low:high], self.seasonal[low:high]

    def calm_window(self, start: int, stop: int) -> npt.NDArray[np.bool_]:
        low = max(start, self.offset) - self.offset
        return self.calm[low : max(stop - self.offset, low)]


@dataclass(frozen=True)
class Seasonal:
    value: float  # the median over previous days of each day's median around minute t's minute of day
    relative: Floats  # the days' minutes relative to their day's median
    users: float  # the median of those minutes' active users


def seasonal_value(series: Series, t: int, rules: BaselineRules) -> Seasonal | None:
    """Minute t's seasonal value and what its spread is measured on; None without enough days."""
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
    return Seasonal(_median(daily), relative.ravel(), _median(series.users[local].ravel()))


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


# A minute's sampling variance, from its value and its active users (Poisson for a count, binomial
# for a rate over users)
Noise = Callable[[float, float], float]


def expectation(
    series: Series, t: int, rules: BaselineRules, noise: Noise, users: float
) -> Expectation | None:
    """The expectation for minute t, of `users` active users (None: not enough history)."""
    seasonal = seasonal_value(series, t, rules)
    if seasonal is None:
        return None
    expected = recent_level(series, t, rules) * seasonal.value
    spread = (_MAD_TO_SIGMA * _mad(seasonal.relative)) ** 2 if seasonal.relative.size else 0.0
    sampled = noise(seasonal.value, seasonal.users) / seasonal.value**2 if seasonal.value > 0 else 0.0
    variance = noise(expected, users) + max(spread - sampled, 0.0) * expected**2
    return Expectation(expected, seasonal.value, max(math.sqrt(variance), 1e-9))


def _mad(values: Floats) -> float:
    return _median(np.abs(values - _median(values)))


def _median(values: Floats) -> float:
    """np.median without its generality, whose overhead is most of the detector's time here."""
    half = values.size // 2
    if values.size % 2:
        return float(np.partition(values, half)[half])
    low, high = np.partition(values, (half - 1, half))[half - 1 : half + 1]
    return float(low + high) / 2
