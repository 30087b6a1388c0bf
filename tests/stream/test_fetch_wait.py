"""How long the worker's and the sink's fetches wait at the broker (Faust fixes 1.5 s; Tansu holds a
fetch of a caught-up partition for most of its wait: README, How fresh the windows are)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from omstream.services import sink_config, worker_config
from omstream.settings import Settings
from stream.sink import build_sink_app
from stream.worker import build_worker_app


async def fetch_wait_of(app: object) -> int:
    """The fetch wait of the aiokafka consumer the app's Faust consumer creates."""
    consumer = app.consumer._thread._create_worker_consumer(app.transport)  # type: ignore[attr-defined]
    await consumer.stop()
    return int(consumer._fetch_max_wait_ms)


def test_the_worker_and_the_sink_fetch_with_the_configured_wait(tmp_path: Path) -> None:
    settings = Settings(
        state_dir=tmp_path, kafka_bootstrap="127.0.0.1:1", clickhouse_dsn="", fetch_wait_ms=70
    )

    async def build() -> tuple[int, int]:
        worker = build_worker_app(worker_config(settings, settings.kafka_bootstrap))
        sink = build_sink_app(sink_config(settings, settings.kafka_bootstrap), client=None)  # type: ignore[arg-type]
        return await fetch_wait_of(worker), await fetch_wait_of(sink)

    assert asyncio.run(build()) == (70, 70)
