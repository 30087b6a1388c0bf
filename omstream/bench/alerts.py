"""`omstream bench alerts`: how well the alert detector finds injected anomalies in generated data.

Per seed: the generator's 9 days, counted per minute exactly (PV, UV, cart, fav, buy); anomalies
injected at random minutes of the days the detector has history for (spikes x2 to x5 and drops to
0 to 50 % for 10 to 30 minutes, on one metric or on all; extra traffic Poisson, dropped traffic
thinned binomially). The minutes, split over four partitions, are encoded as the workers send them
and fed through the detector's path in the sink (decode, assemble the global minutes, judge them),
each complete at its end (as in a stream with every partition's watermark at that minute's end).
An alert is true when it overlaps an injected anomaly of its metric and direction, or the
generator's Dec 2 spike (a whole day of more and busier visitors); every other alert is false.
Recall counts each (anomaly, metric it moves) pair found; the delay is the alert's
`event_time_at_raise` minus the anomaly's start.
"""

from __future__ import annotations

import statistics
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from stream.alerts import OPEN, Alert, AlertRules, Detector, MinuteAssembler
from stream.alerts.minutes import MINUTE
from stream.events import BUY, CART, FAV, PV
from stream.results import decode_results, encode_results
from stream.sources.generator import generate_chunks
from stream.sources.taobao import TAOBAO_DAYS, TAOBAO_START
from stream.windows import WindowRow

COUNTS = ("pv", "uv", "cart", "fav", "buy")
TARGETS = (*COUNTS, "all")
DAY = 86_400
DEC_2 = TAOBAO_START + 7 * DAY  # the generator's spike day (China time)
_MINUTES = TAOBAO_DAYS * DAY // MINUTE
_DAY_MINUTES = DAY // MINUTE
_GAP_MINUTES = 90  # between injected anomalies, and around Dec 2
# The generator moves events of sessions running past the window's end onto its last second: that
# minute's pile-up is an artefact of the cut, not traffic, so the minutes fed stop before it.
_FED_MINUTES = _MINUTES - 1
_PARTITIONS = 4  # of the events topic, as the embedded stack's default
# The batched pipeline's end-to-end rate measured here (`omstream bench stream`, ~300k events/s): at a
# data set's density, the event-time minutes per second the detector must keep up with.
BATCHED_EVENTS_PER_SECOND = 300_000


@dataclass(frozen=True)
class Anomaly:
    target: str  # a count, or "all"
    start: int  # unix seconds, a minute's start
    minutes: int
    factor: float  # > 1 a spike, < 1 a drop

    @property
    def end(self) -> int:
        return self.start + self.minutes * MINUTE

    def moves(self) -> dict[str, str]:
        """Metric -> direction for every metric this anomaly moves (pay rate = buy / UV moves with
        either alone; scaling every count leaves it be)."""
        direction = "up" if self.factor > 1 else "down"
        if self.target == "all":
            return dict.fromkeys(COUNTS, direction)
        moved = {self.target: direction}
        if self.target == "buy":
            moved["pay_rate"] = direction
        elif self.target == "uv":
            moved["pay_rate"] = "down" if self.factor > 1 or self.factor == 0 else "up"
        return moved


def minute_counts(events: int, seed: int) -> dict[str, np.ndarray[Any, np.dtype[np.int64]]]:
    """Per minute of the generated days: each behaviour's events, and distinct users (UV)."""
    counts = {name: np.zeros(_MINUTES, dtype=np.int64) for name in COUNTS}
    codes = {"pv": PV, "cart": CART, "fav": FAV, "buy": BUY}
    for chunk in generate_chunks(events, seed):  # chunks hold whole users: their UVs add up
        minute = (chunk.ts - TAOBAO_START) // MINUTE
        for name, code in codes.items():
            counts[name] += np.bincount(minute[chunk.behavior == code], minlength=_MINUTES)
        pairs = np.unique(chunk.user_id * _MINUTES + minute)
        counts["uv"] += np.bincount(pairs % _MINUTES, minlength=_MINUTES)
    return counts


def draw_anomalies(rng: np.random.Generator, count: int, first_day: int) -> list[Anomaly]:
    """`count` anomalies at random minutes of the days from `first_day`, apart from each other and Dec 2."""
    anomalies: list[Anomaly] = []
    low, high = first_day * _DAY_MINUTES, _MINUTES - 30
    first_of_dec_2 = (DEC_2 - TAOBAO_START) // MINUTE
    dec_2 = (first_of_dec_2 - _GAP_MINUTES, first_of_dec_2 + _DAY_MINUTES + _GAP_MINUTES)
    while len(anomalies) < count:
        start, minutes = int(rng.integers(low, high)), int(rng.integers(10, 31))
        taken = [(a.start - TAOBAO_START) // MINUTE for a in anomalies]
        if dec_2[0] - minutes < start < dec_2[1] or any(abs(start - t) < _GAP_MINUTES for t in taken):
            continue
        spike = bool(rng.random() < 0.5)
        factor = float(rng.uniform(2.0, 5.0) if spike else rng.uniform(0.0, 0.5))
        target = TARGETS[int(rng.integers(len(TARGETS)))]
        anomalies.append(Anomaly(target, TAOBAO_START + start * MINUTE, minutes, factor))
    return sorted(anomalies, key=lambda anomaly: anomaly.start)


def inject(
    counts: dict[str, np.ndarray[Any, np.dtype[np.int64]]], anomalies: list[Anomaly], rng: np.random.Generator
) -> dict[str, np.ndarray[Any, np.dtype[np.int64]]]:
    changed = {name: values.copy() for name, values in counts.items()}
    for anomaly in anomalies:
        span = slice((anomaly.start - TAOBAO_START) // MINUTE, (anomaly.end - TAOBAO_START) // MINUTE)
        for name in COUNTS if anomaly.target == "all" else (anomaly.target,):
            values = changed[name][span]
            if anomaly.factor > 1:
                changed[name][span] = values + rng.poisson(values * (anomaly.factor - 1))
            else:
                changed[name][span] = rng.binomial(values, anomaly.factor)
    return changed


def window_messages(counts: dict[str, np.ndarray[Any, np.dtype[np.int64]]], partitions: int) -> list[bytes]:
    """The minutes as workers send them on `omstream.windows`: per minute each partition's final row
    (the counts split across partitions) and every partition written through the minute's end."""
    messages = []
    for index in range(_FED_MINUTES):
        start = TAOBAO_START + index * MINUTE
        rows = []
        for partition in range(partitions):
            pv, uv, cart, fav, buy = (
                _share(int(counts[name][index]), partition, partitions) for name in COUNTS
            )
            rows.append(WindowRow("minute", start, partition, pv, fav, cart, buy, uv, 1, index))
        through = dict.fromkeys(range(partitions), start + MINUTE)
        messages += encode_results(rows, [], {}, through)
    return messages


def _share(total: int, partition: int, partitions: int) -> int:
    return total // partitions + (partition < total % partitions)


def detect(messages: list[bytes], partitions: int, rules: AlertRules) -> tuple[list[Alert], float]:
    """Raised alerts (their open record), and the minutes per second of the detector's path in the
    sink (decoding the window rows, assembling the global minutes, judging them)."""
    minutes, detector = MinuteAssembler(partitions), Detector(rules)
    raised: list[Alert] = []
    began = time.perf_counter()
    for message in messages:
        for minute in minutes.add(decode_results(message)):
            raised += [alert for alert in detector.observe(minute) if alert.status == OPEN]
    return raised, _FED_MINUTES / (time.perf_counter() - began)


@dataclass
class Tally:
    found: int = 0
    missed: int = 0
    true_alerts: int = 0
    false_alerts: int = 0

    @property
    def recall(self) -> float:
        return self.found / (self.found + self.missed) if self.found + self.missed else 1.0

    @property
    def precision(self) -> float:
        alerts = self.true_alerts + self.false_alerts
        return self.true_alerts / alerts if alerts else 1.0


def score_run(
    anomalies: list[Anomaly], alerts: list[Alert], tallies: dict[str, Tally], delays: dict[str, list[float]]
) -> list[dict[str, Any]]:
    """Match alerts to anomalies; returns the false alerts (as dicts) and the misses."""
    report: list[dict[str, Any]] = []
    for anomaly in anomalies:
        for metric, direction in anomaly.moves().items():
            matching = [
                alert
                for alert in alerts
                if alert.metric == metric
                and alert.direction == direction
                and alert.window_start < anomaly.end
                and alert.window_end > anomaly.start
            ]
            if matching:
                tallies[metric].found += 1
                first = min(alert.event_time_at_raise for alert in matching)
                delays[metric].append((first - anomaly.start) / 60)
                if first - anomaly.start > 2 * MINUTE:
                    late = (first - anomaly.start) / 60
                    report.append({"late": metric, "delay_minutes": late, **anomaly.__dict__})
            else:
                tallies[metric].missed += 1
                report.append({"missed": metric, "direction": direction, **anomaly.__dict__})
    for alert in alerts:
        true = (alert.window_start < DEC_2 + DAY and alert.window_end > DEC_2) or any(
            alert.window_start < anomaly.end
            and alert.window_end > anomaly.start
            and anomaly.moves().get(alert.metric) == alert.direction
            for anomaly in anomalies
        )
        if true:
            tallies[alert.metric].true_alerts += 1
        else:
            tallies[alert.metric].false_alerts += 1
            report.append({"false": alert.metric, **alert.__dict__})
    return report


def run_alerts_bench(
    rules: AlertRules,
    events: int,
    seeds: list[int],
    anomalies_per_seed: int,
    on_progress: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    """Precision, recall and delay, overall and per metric, over `seeds` runs of `events` events."""
    tallies: dict[str, Tally] = defaultdict(Tally)
    delays: dict[str, list[float]] = defaultdict(list)
    details: list[dict[str, Any]] = []
    speeds: list[float] = []
    dec_2_found = dec_2_alerts = 0
    evaluated_days = TAOBAO_DAYS - rules.baseline.min_days
    for seed in seeds:
        on_progress(f"seed {seed}: generating {events:,} events")
        counts = minute_counts(events, seed)
        rng = np.random.default_rng(seed)
        anomalies = draw_anomalies(rng, anomalies_per_seed, rules.baseline.min_days)
        alerts, speed = detect(
            window_messages(inject(counts, anomalies, rng), _PARTITIONS), _PARTITIONS, rules
        )
        speeds.append(speed)
        on_dec_2 = [a for a in alerts if a.window_start < DEC_2 + DAY and a.window_end > DEC_2]
        dec_2_found += bool(on_dec_2)
        dec_2_alerts += len(on_dec_2)
        details += [{"seed": seed, **item} for item in score_run(anomalies, alerts, tallies, delays)]
        on_progress(f"seed {seed}: {len(alerts)} alerts for {len(anomalies)} anomalies")
    every_delay = [delay for values in delays.values() for delay in values]
    total = Tally(*(sum(getattr(t, name) for t in tallies.values()) for name in Tally.__dataclass_fields__))
    days = evaluated_days * len(seeds)
    return {
        "events_per_seed": events,
        "seeds": seeds,
        "anomalies": anomalies_per_seed * len(seeds),
        "evaluated_days": days,
        "recall": total.recall,
        "precision": total.precision,
        "false_alerts": total.false_alerts,
        "false_alerts_per_7_days": total.false_alerts * 7 / days,
        "delay_minutes_median": statistics.median(every_delay) if every_delay else None,
        "delay_minutes_max": max(every_delay) if every_delay else None,
        "dec_2_spike_alerted_in_seeds": dec_2_found,
        "dec_2_alerts": dec_2_alerts,
        "detector_minutes_per_second": statistics.median(speeds),
        "stream_minutes_per_second": BATCHED_EVENTS_PER_SECOND * _MINUTES / events,
        "per_metric": {
            metric: {
                "recall": tally.recall,
                "precision": tally.precision,
                "found": tally.found,
                "missed": tally.missed,
                "false_alerts": tally.false_alerts,
                "delay_minutes_median": statistics.median(delays[metric]) if delays[metric] else None,
                "delay_minutes_max": max(delays[metric]) if delays[metric] else None,
            }
            for metric, tally in sorted(tallies.items())
        },
        "misses_and_false_alerts": details,
    }


def render_alerts_bench(result: dict[str, Any]) -> str:
    def minutes(value: float | None) -> str:
        return "-" if value is None else f"{value:.1f} min"

    lines = [
        f"{result['anomalies']} anomalies over {len(result['seeds'])} seeds of {result['events_per_seed']:,} "
        f"events ({result['evaluated_days']} days with history)",
        f"recall {result['recall']:.1%}, precision {result['precision']:.1%}, "
        f"{result['false_alerts']} false alerts ({result['false_alerts_per_7_days']:.2f} per 7 days)",
        f"delay (event time at raise - anomaly start): median {minutes(result['delay_minutes_median'])}, "
        f"worst {minutes(result['delay_minutes_max'])}",
        f"Dec 2 spike alerted in {result['dec_2_spike_alerted_in_seeds']} of {len(result['seeds'])} seeds "
        f"({result['dec_2_alerts']} alerts)",
        f"detector (window rows decoded, minutes assembled and judged): "
        f"{result['detector_minutes_per_second']:,.0f} minutes/s; the batched stream brings "
        f"{result['stream_minutes_per_second']:,.0f} minutes/s at this density",
        "metric     recall  precision  found  missed  false  delay median  delay worst",
    ]
    for metric, row in result["per_metric"].items():
        lines.append(
            f"{metric:<9} {row['recall']:>7.1%} {row['precision']:>10.1%} {row['found']:>6} "
            f"{row['missed']:>7} {row['false_alerts']:>6} {minutes(row['delay_minutes_median']):>13} "
            f"{minutes(row['delay_minutes_max']):>12}"
        )
    return "\n".join(lines)
