"""The Faust floor of `omstream bench stream`: a bare agent that only decodes, in its own process.

Run as `python -m omstream._faust_floor EVENTS` with the pipeline's environment (`service_env`). With
the worker's Faust settings, in a consumer group of its own (the workers' plus `-floor`), it reads
the events topic from the earliest offset and counts events (orjson only: no validation, no windows,
no ClickHouse). Once it has counted EVENTS it prints its `[seconds, events so far]` samples (one per
take) as one JSON line after `FLOOR_RESULT_PREFIX`, and exits.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time

import faust

from omstream.bench import FLOOR_RESULT_PREFIX, count_events
from omstream.embedded import resolve_bootstrap
from omstream.services import faust_config
from omstream.settings import Settings
from stream.app import create_app, raw_topic, run_faust

_TAKE = 1_000
_WITHIN_S = 0.2


def build_app(settings: Settings, bootstrap: str, expected: int) -> faust.App:
    app = create_app(faust_config(settings, f"{settings.consumer_group}-floor", bootstrap))

    async def floor(stream: faust.StreamT[bytes]) -> None:
        samples = [(time.monotonic(), 0)]
        async for batch in stream.take(_TAKE, within=_WITHIN_S):
            samples.append((time.monotonic(), samples[-1][1] + sum(count_events(value) for value in batch)))
            if samples[-1][1] >= expected:
                print(FLOOR_RESULT_PREFIX + json.dumps(samples), flush=True)
                os.kill(os.getpid(), signal.SIGTERM)  # Faust's own graceful shutdown
                return

    app.agent(raw_topic(app, settings.events_topic), name="floor")(floor)
    return app


def main() -> None:
    settings = Settings()
    run_faust(build_app(settings, resolve_bootstrap(settings), int(sys.argv[1])), settings.log_level)


if __name__ == "__main__":
    main()
