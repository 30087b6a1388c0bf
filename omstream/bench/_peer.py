"""What every peer of `omstream bench stream` shares: messages seen over time, and how it reports them.

A peer runs as `python -m omstream.bench.<name>_peer …` and prints one JSON line after
`PEER_RESULT_PREFIX`: `samples`, `[seconds, messages so far]`, and, for the peers that compute hourly
PV/UV, `hourly`: `{hour start (Unix seconds): [PV, UV]}`. This module imports nothing heavy, so a
peer starts with only its own library loaded.
"""

from __future__ import annotations

import json
import time
from typing import Any

PEER_RESULT_PREFIX = "peer-result: "  # the peer's stdout may carry terminal codes too
HOUR_S = 3600
_SAMPLE_EVERY = 1_000


class Samples:
    """Messages seen so far, sampled every `_SAMPLE_EVERY`, until `expected`."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.seen = 0
        self.samples: list[tuple[float, int]] = [(time.monotonic(), 0)]

    def count(self, _: Any = None) -> None:
        self.seen += 1
        if self.seen % _SAMPLE_EVERY == 0 or self.seen == self.expected:
            self.samples.append((time.monotonic(), self.seen))

    def count_to(self, seen: int) -> None:
        """For a peer that learns its total in steps: `seen` messages so far."""
        self.seen = seen
        self.samples.append((time.monotonic(), seen))

    @property
    def done(self) -> bool:
        return self.seen >= self.expected


def hour_of(ts: int) -> int:
    """The start of the 1 h tumbling window (aligned to the Unix epoch, UTC) an event time is in."""
    return ts - ts % HOUR_S


def print_result(samples: Samples, hourly: dict[int, tuple[int, int]] | None = None) -> None:
    result: dict[str, Any] = {"samples": samples.samples}
    if hourly is not None:
        result["hourly"] = {str(hour): list(counts) for hour, counts in hourly.items()}
    print(PEER_RESULT_PREFIX + json.dumps(result), flush=True)
