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

import functools
import math
from collections.abc import Callable, Sequence
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


class History:
    """Every watched metric's values per minute (index 0 = the first minute), the seasonal value each
    had, and whether it deviated; and each minute's active users (a rate's sample), which the metrics
    share. One array per quantity, a row per metric, so a minute's expectations are computed for all
    metrics at once: numpy's overhead per call, not its arithmetic, is what small windows cost."""

    def __init__(self, metrics: int, keep: int) -> None:
        self.metrics = metrics
        self.keep = keep  # minutes of history to hold
        self.offset = 0  # index of column 0
        self.values: Floats = np.zeros((metrics, 0))
        self.seasonal: Floats = np.zeros((metrics, 0))  # nan where there was no baseline
        self.calm: npt.NDArray[np.bool_] = np.zeros((metrics, 0), dtype=bool)  # the minute did not deviate
        self.users: Floats = np.zeros(0)
        self.length = 0

    def append(self, values: list[float], seasonal: list[float], users: float) -> None:
        local = self.length - self.offset
        if local == self.users.size:
            self._grow()
            local = self.length - self.offset
        self.values[:, local] = values
        self.seasonal[:, local] = seasonal
        self.users[local] = users
        self.calm[:, local] = True
        self.length += 1

    def mark_deviating(self, metric: int, t: int) -> None:
        self.calm[metric, t - self.offset] = False

    def _grow(self) -> None:
        held = self.length - self.offset
        drop = max(0, held - self.keep)
        kept = held - drop
        size = max(2 * kept, 1024)
        values, seasonal = np.zeros((self.metrics, size)), np.full((self.metrics, size), np.nan)
        calm, users = np.zeros((self.metrics, size), dtype=bool), np.zeros(size)
        values[:, :kept] = self.values[:, drop:held]
        seasonal[:, :kept] = self.seasonal[:, drop:held]
        calm[:, :kept] = self.calm[:, drop:held]
        users[:kept] = self.users[drop:held]
        self.values, self.seasonal, self.calm, self.users = values, seasonal, calm, users
        self.offset += drop

    def columns(self, start: int, stop: int) -> slice:
        """The held columns of minutes [start, stop)."""
        low = max(start, self.offset) - self.offset
        return slice(low, max(stop - self.offset, low))


@dataclass(frozen=True)
class Seasonal:
    values: Floats  # per metric: the median over previous days of each day's median around minute t
    relative: Floats  # per metric, a row: the days' minutes relative to their day's median (nan: none)
    users: float  # the median of those minutes' active users


def seasonal_values(history: History, t: int, rules: BaselineRules) -> Seasonal | None:
    """Minute t's seasonal values and what their spreads are measured on; None without enough days."""
    width = rules.neighbourhood
    days = [
        t - day * DAY_MINUTES
        for day in range(1, rules.days + 1)
        if t - day * DAY_MINUTES - width >= history.offset
    ]
    if len(days) < rules.min_days:
        return None
    local = np.array(days)[:, None] - history.offset + _around(width)
    around = history.values[:, local]  # metric, day, minute
    daily = np.sort(around, axis=2)[:, :, width]  # each day's median (2 * width + 1 minutes)
    counted = (daily > 0)[:, :, None]
    relative = np.divide(around, daily[:, :, None], out=np.full(around.shape, np.nan), where=counted) - 1.0
    users = history.users[local].ravel()
    return Seasonal(row_medians(daily), relative.reshape(history.metrics, -1), _median(users))


@functools.cache
def _around(width: int) -> npt.NDArray[np.int64]:
    return np.arange(-width, width + 1)


def recent_levels(history: History, t: int, rules: BaselineRules) -> Floats:
    """Per metric, observed over seasonal, the median over the last `level_minutes` minutes that did
    not deviate and were within `level_band` of their seasonal value (1 until half as many exist in
    the last 12 hours): the level follows a slow trend or a quieter weekday, while neither an anomaly
    in progress nor a day-long surge becomes the level it is judged against."""
    span = history.columns(t - rules.level_minutes * 4, t)  # a long anomaly leaves enough usable minutes
    values, seasonal = history.values[:, span], history.seasonal[:, span]
    ratio = np.divide(values, seasonal, out=np.full(values.shape, np.nan), where=seasonal > 0)
    usable = history.calm[:, span] & (np.abs(ratio - 1.0) <= rules.level_band)
    from_end = np.cumsum(usable[:, ::-1], axis=1)[:, ::-1]  # usable minutes at or after each one
    latest = usable & (from_end <= rules.level_minutes)
    levels = row_medians(np.where(latest, ratio, np.nan))
    return np.where(latest.sum(axis=1) < rules.level_minutes // 2, 1.0, levels)


# A minute's sampling variance, from its value and its active users (Poisson for a count, binomial
# for a rate over users)
Noise = Callable[[float, float], float]


def expectations(
    history: History, t: int, rules: BaselineRules, noises: Sequence[Noise], users: float
) -> list[Expectation | None]:
    """Each metric's expectation for minute t, of `users` active users (None: not enough history)."""
    seasonal = seasonal_values(history, t, rules)
    if seasonal is None:
        return [None] * history.metrics
    relative = seasonal.relative
    mads = row_medians(np.abs(relative - row_medians(relative)[:, None]))
    found: list[Expectation | None] = []
    rows = zip(
        seasonal.values.tolist(), recent_levels(history, t, rules).tolist(), mads.tolist(), strict=True
    )
    for noise, (value, level, mad) in zip(noises, rows, strict=True):
        expected = level * value
        spread = (_MAD_TO_SIGMA * mad) ** 2 if not math.isnan(mad) else 0.0
        sampled = noise(value, seasonal.users) / value**2 if value > 0 else 0.0
        variance = noise(expected, users) + max(spread - sampled, 0.0) * expected**2
        found.append(Expectation(expected, value, max(math.sqrt(variance), 1e-9)))
    return found


def row_medians(rows: Floats) -> Floats:
    """Each row's median over its values that are not nan (nan for a row without any), computed as
    `_median` computes one."""
    if rows.shape[1] == 0:
        return np.full(rows.shape[0], np.nan)
    ordered = np.sort(rows, axis=1)  # nan last
    counts = rows.shape[1] - np.isnan(ordered).sum(axis=1)
    half, row = counts // 2, np.arange(rows.shape[0])
    upper = ordered[row, np.minimum(half, rows.shape[1] - 1)]
    lower = ordered[row, np.maximum(half - 1, 0)]
    return np.where(counts % 2 == 1, upper, (lower + upper) / 2)


def _median(values: Floats) -> float:
    """np.median without its generality, whose overhead is most of the detector's time here."""
    half = values.size // 2
    if values.size % 2:
        return float(np.partition(values, half)[half])
    low, high = np.partition(values, (half - 1, half))[half - 1 : half + 1]
    return float(low + high) / 2
