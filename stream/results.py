"""Window results on Kafka (`omstream.windows`): from the workers to the one ClickHouse writer.

Rows travel as JSON objects with named fields, so a worker and a sink of different versions (a
rolling deploy) never put a value into the wrong column.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import orjson

from stream.windows import FunnelRow, WindowRow

_ROWS_PER_MESSAGE = 2_000  # well under Kafka's default 1 MB message limit


@dataclass(frozen=True)
class WindowResults:
    windows: list[WindowRow]
    funnels: list[FunnelRow]
    positions: dict[int, int]  # source partition -> last offset these rows reflect
    # source partition -> event time it is written through: every window of it ending at or before
    # this has its current row on the topic (read by the alert detector, `stream.alerts.minutes`)
    written_through: dict[int, int] = field(default_factory=dict)


def encode_results(
    windows: Sequence[WindowRow],
    funnels: Sequence[FunnelRow],
    positions: dict[int, int],
    written_through: dict[int, int] | None = None,
) -> list[bytes]:
    """The rows as messages of bounded size; positions and written-through times ride on the last
    one, after all rows."""
    chunks: list[tuple[Sequence[WindowRow], Sequence[FunnelRow]]] = [
        (windows[i : i + _ROWS_PER_MESSAGE], []) for i in range(0, len(windows), _ROWS_PER_MESSAGE)
    ]
    chunks += [([], funnels[i : i + _ROWS_PER_MESSAGE]) for i in range(0, len(funnels), _ROWS_PER_MESSAGE)]
    chunks = chunks or [([], [])]
    last = len(chunks) - 1
    return [
        orjson.dumps(  # orjson writes a dataclass as an object of its fields
            {
                "windows": window_rows,
                "funnels": funnel_rows,
                "positions": {str(p): offset for p, offset in positions.items()} if index == last else {},
                "written_through": {str(p): at for p, at in (written_through or {}).items()}
                if index == last
                else {},
            }
        )
        for index, (window_rows, funnel_rows) in enumerate(chunks)
    ]


def decode_results(value: bytes) -> WindowResults:
    body = orjson.loads(value)
    return WindowResults(
        [WindowRow(**row) for row in body["windows"]],
        [FunnelRow(**row) for row in body["funnels"]],
        {int(partition): int(offset) for partition, offset in body["positions"].items()},
        {int(partition): int(at) for partition, at in body.get("written_through", {}).items()},
    )
