"""Alerts through the real pipeline: Tansu, a worker, the sink (and its detector), chDB, the CLI.

Three and a half days of steady traffic with a day-night curve, a spike of the whole traffic on the
fourth morning, then, after the worker and the sink were each killed and restarted, a drop. The spike
is raised once (one open record on `omstream.alerts`, one row in `alerts`), though the restarted
sink's detector rebuilt its state from the window rows and derived the spike again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import signal
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

import clickhouse
from omstream.embedded.demo import produced_targets
from omstream.embedded.stack import service_process, wait_until_processed
from omstream.settings import Settings
from stream.alerts.records import AlertRecord, decode_alert
from stream.kafka import read_to_end
from stream.processed import ProcessedWatcher, Stage
from stream.replay import Pacer
from stream.sources.taobao import TAOBAO_START
from tests.pipeline import SMALL_TAKES, kill_when_processed, replay
from tests.up import omstream

pytestmark = pytest.mark.integration

DAY, HOUR = 86_400, 3_600
SPIKE = TAOBAO_START + 3 * DAY + 10 * HOUR  # the fourth day, 10:00 China time, for 15 minutes
DROP = TAOBAO_START + 3 * DAY + 13 * HOUR  # 13:00, for 15 minutes, to a tenth
_BEHAVIORS = np.array(["pv", "cart", "fav", "buy"])


def traffic(path: Path, start: int, end: int, seed: int) -> Path:
    """Events per minute ~ Poisson(12 to 36 along the day), 5 times that in the spike, a tenth in the drop."""
    rng = np.random.default_rng(seed)
    minutes = np.arange(start, end, 60)
    hour = (minutes - TAOBAO_START) % DAY / HOUR
    rate = 12 * (2 - np.cos(2 * np.pi * (hour - 4) / 24))
    rate[(minutes >= SPIKE) & (minutes < SPIKE + 900)] *= 5
    rate[(minutes >= DROP) & (minutes < DROP + 900)] *= 0.1
    counts = rng.poisson(rate)
    ts = np.sort(np.repeat(minutes, counts) + rng.integers(0, 60, counts.sum()))
    users = rng.integers(1, 20_000, ts.size)
    behaviors = _BEHAVIORS[rng.choice(4, ts.size, p=[0.9, 0.05, 0.03, 0.02])]
    lines = (
        f"{user},{user % 97 + 1},{user % 13 + 1},{behavior},{t}\n"
        for user, behavior, t in zip(users.tolist(), behaviors.tolist(), ts.tolist(), strict=True)
    )
    path.write_text("".join(lines))
    return path


def alert_records(settings: Settings, bootstrap: str) -> list[tuple[int, AlertRecord]]:
    """(offset, record) of everything on the alerts topic."""

    async def read() -> list[tuple[int, AlertRecord]]:
        return [
            (record.offset, decode_alert(record.value or b""))
            async for record in read_to_end(bootstrap, settings.alerts_topic)
        ]

    return asyncio.run(read())


def wait_for_alert(settings: Settings, bootstrap: str, want: tuple[str, str, str], timeout: float) -> None:
    """Until the alert is on the topic, and the sink has stored all of the topic."""
    deadline = time.monotonic() + timeout
    while not any(
        (r.alert.metric, r.alert.direction, r.alert.status) == want
        for _, r in alert_records(settings, bootstrap)
    ):
        assert time.monotonic() < deadline, f"no {want} alert on the topic"
        time.sleep(0.5)
    last = max(offset for offset, _ in alert_records(settings, bootstrap))

    async def stored() -> None:
        async with ProcessedWatcher(bootstrap, settings.processed_topic) as watcher:
            targets = {(settings.alerts_topic, 0): last}
            await watcher.wait(targets, {settings.alerts_topic: {Stage.ALERTS}}, timeout, lambda: None)

    asyncio.run(stored())


def raised_counts(log: Path) -> dict[tuple[str, str], float]:
    """`omstream_alerts_total` of the service whose log names its metrics port."""
    port = re.search(r"metrics on [\d.]+:(\d+)", log.read_text())
    assert port is not None, log.read_text()
    with urllib.request.urlopen(f"http://127.0.0.1:{port.group(1)}/metrics", timeout=10) as response:
        text = response.read().decode()
    counts = {}
    for labels, value in re.findall(r"^omstream_alerts_total\{(.*)\} (\S+)$", text, re.MULTILINE):
        named = dict(re.findall(r'(\w+)="(\w+)"', labels))
        counts[named["metric"], named["direction"]] = float(value)
    return counts


def test_an_alert_is_raised_once_through_the_pipeline_across_kills(
    settings: Settings, bootstrap: str, tmp_path: Path
) -> None:
    settings = settings.model_copy(
        update={
            **SMALL_TAKES,
            "pack_size": 250,
            "alert_min_history_days": 2,
            "alert_baseline_days": 3,
            "alert_metrics": ["pv", "uv"],
        }
    )
    before = traffic(tmp_path / "before.csv", TAOBAO_START, SPIKE + 2 * HOUR, seed=1)
    after = traffic(tmp_path / "after.csv", SPIKE + 2 * HOUR, DROP + HOUR, seed=2)
    with contextlib.ExitStack() as stack:
        sink = stack.enter_context(service_process(settings, bootstrap, "sink", "sink"))
        worker = stack.enter_context(service_process(settings, bootstrap, "worker", "worker-0"))
        killer = threading.Thread(target=kill_when_processed, args=(worker.pid, settings, bootstrap, 200))
        killer.start()
        emitted = replay(before, settings, bootstrap, Pacer(rate=60_000))
        killer.join()
        stack.enter_context(
            service_process(settings, bootstrap, "worker", "worker-1")
        )  # the killed worker's successor
        wait_until_processed(settings, bootstrap, produced_targets(settings, emitted), 180)
        wait_for_alert(settings, bootstrap, ("pv", "up", "closed"), timeout=120)
        sink.send_signal(signal.SIGKILL)
        sink.wait()
        stack.enter_context(service_process(settings, bootstrap, "sink", "sink-again"))
        emitted = replay(after, settings, bootstrap)
        wait_until_processed(settings, bootstrap, produced_targets(settings, emitted), 180)
        wait_for_alert(settings, bootstrap, ("pv", "down", "open"), timeout=120)
        # the restarted sink counted the drop it raised, not the spike it derived again
        assert raised_counts(settings.state_dir / "sink-again.log") == {
            ("pv", "down"): 1.0,
            ("uv", "down"): 1.0,
        }
        published = Counter(
            (r.alert.alert_id, r.alert.version) for _, r in alert_records(settings, bootstrap)
        )
        # the restarted detector derived the spike again, and published nothing for it
        assert set(published.values()) == {1}, published
    client = clickhouse.connect(settings.resolved_clickhouse_dsn)
    try:
        rows = client.query("SELECT alert_id, count() FROM alerts FINAL GROUP BY alert_id").result_rows
    finally:
        client.close()
    assert {alert_id for alert_id, _ in rows} == {alert_id for alert_id, _ in published}
    assert all(count == 1 for _, count in rows)
    listed = omstream(settings.state_dir, "alerts", "--json")
    assert listed.returncode == 0, listed.stderr
    alerts = json.loads(listed.stdout)
    spike = [a for a in alerts if (a["metric"], a["direction"]) == ("pv", "up")]
    drop = [a for a in alerts if (a["metric"], a["direction"]) == ("pv", "down")]
    assert len(spike) == 1 and len(drop) == 1, alerts
    assert alerts[0]["window_start"] >= alerts[-1]["window_start"]  # newest first
    assert spike[0]["window_start"] == "2017-11-28T10:00:00+08:00"
    assert spike[0]["status"] == "closed" and spike[0]["window_end"] <= "2017-11-28T10:16:00+08:00"
    assert drop[0]["window_start"] == "2017-11-28T13:00:00+08:00"
    assert spike[0]["event_time_at_raise"] >= "2017-11-28T10:01:00+08:00"
    assert spike[0]["observed"] > 3 * spike[0]["expected"] and spike[0]["score"] > 0
    assert {a["metric"] for a in alerts} <= {"pv", "uv"}
    assert set(spike[0]) >= {
        "metric",
        "direction",
        "window_start",
        "window_end",
        "observed",
        "expected",
        "score",
        "raised_at",
        "event_time_at_raise",
    }
