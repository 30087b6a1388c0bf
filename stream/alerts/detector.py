"""The alert detector: per metric, each complete global minute against its baseline.

A minute leans up (down) when its score, observed minus expected in units of the baseline's spread
(see `deviation`), is at least `lean_score` (at most minus it) and the observed value is at least
`up_ratio` times the expected one (at most `down_ratio` times): the score alone would flag tiny
relative changes of large counts, the ratio alone noise in small ones. A leaning minute starts a
run, which the next minutes go on at half the lean (half the score, half the ratio's distance from
1): a drop of a few events a minute leans fully only now and then, while the run gathers the
evidence of all its minutes. A run's score is its summed deviation over its combined spread: a run
of at least `confirm_minutes` minutes scoring `score` or more raises an alert, and so does a single
minute scoring `strong_score` with `strong_ratio` (or its inverse). Once raised, a minute keeps the
alert going at half the lean too, so a deviation that hovers near the thresholds is one alert, not
many; `close_minutes` minutes in a row that do not keep it going close it.

An alert is identified by its metric, direction and first minute, so the same minutes always give
the same alerts with the same ids: a detector rebuilt from the same window rows raises nothing new,
and storage keyed by the id holds each alert once.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field

from stream.alerts.baseline import BaselineRules, Expectation, History, expectations
from stream.alerts.minutes import METRICS, MINUTE, MinuteTotals

UP, DOWN = "up", "down"
_PAY_EVIDENCE = 5.0  # buyers a minute must be expected to have, or have, before its pay rate is judged
OPEN, CLOSED = "open", "closed"


@dataclass(frozen=True)
class AlertRules:
    """What raises and closes an alert (the settings `OMSTREAM_ALERT_*` hold the defaults)."""

    metrics: tuple[str, ...]
    baseline: BaselineRules
    lean_score: float
    up_ratio: float
    down_ratio: float
    score: float
    confirm_minutes: int
    strong_score: float
    strong_ratio: float
    close_minutes: int

    def __post_init__(self) -> None:
        unknown = set(self.metrics) - set(METRICS)
        if unknown:
            raise ValueError(f"unknown alert metrics {sorted(unknown)}: choose from {', '.join(METRICS)}")


@dataclass(frozen=True)
class Alert:
    """An alert as raised (`open`) or ended (`closed`); `version` orders the two records of one id."""

    alert_id: str
    metric: str
    direction: str  # up or down
    status: str  # open or closed
    window_start: int  # unix seconds: the first deviating minute
    window_end: int  # the end of the last deviating minute seen (so far, while open)
    observed: float  # mean over the deviating minutes
    expected: float
    score: float  # the strongest minute's score (signed)
    event_time_at_raise: int  # the watermark when the alert was raised
    version: int  # 0 open, 1 closed


def deviation(observed: float, expected: float, sigma: float) -> float:
    """Observed minus expected in units of the spread, scaled as their square roots differ (for a
    count, 2(√o - √e) is the variance-stabilised difference): a count's right tail is longer and its
    left tail shorter than a normal one, so a small count's excess is less rare, and its fall rarer,
    than the plain score says."""
    score = (observed - expected) / sigma
    if expected > 0 and observed >= 0:
        return score * 2 / (1 + math.sqrt(observed / expected))
    return score


def alert_id(metric: str, direction: str, window_start: int) -> str:
    return hashlib.sha256(f"{metric}/{direction}/{window_start}".encode()).hexdigest()[:16]


@dataclass
class _Run:
    """Deviating minutes in a row, one direction."""

    direction: str
    start: int
    last: int
    observed: list[float] = field(default_factory=list)
    expected: list[float] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    variance: float = 0.0

    def add(self, start: int, observed: float, found: Expectation) -> None:
        self.last = start
        self.observed.append(observed)
        self.expected.append(found.expected)
        self.scores.append(deviation(observed, found.expected, found.sigma))
        self.variance += found.sigma**2

    @property
    def score(self) -> float:
        return deviation(sum(self.observed), sum(self.expected), math.sqrt(self.variance))

    def alert(self, metric: str, status: str, raised_at: int) -> Alert:
        return Alert(
            alert_id(metric, self.direction, self.start),
            metric,
            self.direction,
            status,
            self.start,
            self.last + MINUTE,
            sum(self.observed) / len(self.observed),
            sum(self.expected) / len(self.expected),
            max(self.scores, key=abs),
            raised_at,
            int(status == CLOSED),
        )


class MetricWatch:
    """One metric's alert state (its history is a row of the detector's)."""

    def __init__(self, metric: str, rules: AlertRules) -> None:
        self.metric = metric
        self.rules = rules
        self.run: _Run | None = None  # leaning minutes not (yet) raised
        self.open: _Run | None = None  # the raised alert
        self.raised_at = 0
        self.calm = 0  # minutes in a row that did not lean the open alert's way

    def observe(
        self, minute: MinuteTotals, observed: float, found: Expectation | None
    ) -> tuple[list[Alert], bool]:
        """The alerts this minute raises or closes, and whether it deviated."""
        buyers = max(found.expected * minute.uv, minute.buy) if found else 0.0
        if self.metric == "pay_rate" and buyers < _PAY_EVIDENCE:
            found = None  # too few buyers, expected or seen, to judge a rate: the buy count's own noise
        # a run under way, like a raised alert, goes on at half the lean
        direction = self._lean(observed, found, 1.0 if self.open is None and self.run is None else 0.5)
        if self.open is not None:
            return self._follow(minute, direction, observed, found), direction is not None
        return self._watch(minute, direction, observed, found), direction is not None

    def noise(self, value: float, users: float) -> float:
        """Sampling variance: Poisson for a count, binomial over the minute's users for the pay rate
        (which a handful of users makes noisy, whatever its history)."""
        if self.metric == "pay_rate":
            rate = min(max(value, 0.0), 1.0)
            return rate * (1 - rate) / max(users, 1.0)
        return max(value, 1.0)

    def _lean(self, observed: float, found: Expectation | None, share: float) -> str | None:
        """The way the minute leans by `share` of the lean thresholds, if it does."""
        if found is None:
            return None
        rules = self.rules
        score = deviation(observed, found.expected, found.sigma)
        up_ratio, down_ratio = (1 + share * (ratio - 1) for ratio in (rules.up_ratio, rules.down_ratio))
        if score >= share * rules.lean_score and observed >= up_ratio * found.expected:
            return UP
        if score <= -share * rules.lean_score and observed <= down_ratio * found.expected:
            return DOWN
        return None

    def _strong(self, run: _Run) -> bool:
        observed, expected, score = run.observed[-1], run.expected[-1], run.scores[-1]
        rules = self.rules
        if run.direction == UP:
            return score >= rules.strong_score and observed >= rules.strong_ratio * expected
        return score <= -rules.strong_score and observed * rules.strong_ratio <= expected

    def _watch(
        self, minute: MinuteTotals, direction: str | None, observed: float, found: Expectation | None
    ) -> list[Alert]:
        if direction is None or found is None:
            self.run = None
            return []
        if self.run is None or self.run.direction != direction:
            if self._lean(observed, found, 1.0) != direction:
                self.run = None
                return []
            self.run = _Run(direction, minute.start, minute.start)
        run = self.run
        run.add(minute.start, observed, found)
        confirmed = len(run.scores) >= self.rules.confirm_minutes and abs(run.score) >= self.rules.score
        if not (confirmed or self._strong(run)):
            return []
        self.open, self.run, self.calm = run, None, 0
        self.raised_at = minute.watermark
        return [run.alert(self.metric, OPEN, self.raised_at)]

    def _follow(
        self, minute: MinuteTotals, direction: str | None, observed: float, found: Expectation | None
    ) -> list[Alert]:
        assert self.open is not None
        if found is not None and direction == self.open.direction:
            self.open.add(minute.start, observed, found)
            self.calm = 0
            return []
        self.calm += 1
        if self.calm < self.rules.close_minutes:
            return []
        closed = self.open.alert(self.metric, CLOSED, self.raised_at)
        self.open = None
        return [closed]


class Detector:
    """Every watched metric over the sequence of complete global minutes."""

    def __init__(self, rules: AlertRules) -> None:
        self.rules = rules
        self.watches = [MetricWatch(metric, rules) for metric in rules.metrics]
        self.history = History(len(self.watches), keep=rules.baseline.history_minutes)
        self.next_minute: int | None = None

    def observe(self, minute: MinuteTotals) -> list[Alert]:
        """Alerts raised or closed by this minute (minutes must come in order; a gap is zeros)."""
        if self.next_minute is not None and minute.start < self.next_minute:
            return []
        alerts: list[Alert] = []
        while self.next_minute is not None and self.next_minute < minute.start:
            alerts += self._each(MinuteTotals(self.next_minute, 0, 0, 0, 0, 0, minute.watermark))
        return alerts + self._each(minute)

    def _each(self, minute: MinuteTotals) -> list[Alert]:
        self.next_minute = minute.start + MINUTE
        history, t = self.history, self.history.length
        observed = [minute.value(watch.metric) for watch in self.watches]
        noises = [watch.noise for watch in self.watches]
        found = expectations(history, t, self.rules.baseline, noises, minute.uv)
        history.append(observed, [e.seasonal if e else math.nan for e in found], minute.uv)
        alerts: list[Alert] = []
        for metric, watch in enumerate(self.watches):
            raised, deviated = watch.observe(minute, observed[metric], found[metric])
            if deviated:
                history.mark_deviating(metric, t)
            alerts += raised
        return alerts

    def open_alerts(self) -> list[Alert]:
        return [watch.open.alert(watch.metric, OPEN, watch.raised_at) for watch in self.watches if watch.open]
