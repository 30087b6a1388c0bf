"""Window results on Kafka (`omstream.windows`): from the workers to the one ClickHouse writer."""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Sequence
from dataclasses import dataclass

import orjson

from stream.windows import FunnelRow, WindowRow

_ROWS_PER_MESSAGE = 2_000  # ~150 kB: well under Kafka's default 1 MB message limit
# a row's fields in order (dataclasses.astuple deep-copies every field: ten times slower)
_WINDOW_VALUES = operator.attrgetter(*(field.name for field in dataclasses.fields(WindowRow)))
_FUNNEL_VALUES = operator.attrgetter(*(field.name for field in dataclasses.fields(FunnelRow)))


@dataclass(frozen=True)
class WindowResults:
    windows: list[WindowRow]
    funnels: list[FunnelRow]
    positions: dict[int, int]  # source partition -> last offset these rows reflect


def encode_results(
    windows: Sequence[WindowRow], funnels: Sequence[FunnelRow], positions: dict[int, int]
) -> list[bytes]:
    """The rows as messages of bounded size; the positions ride on the last one, after all rows."""
    chunks: list[tuple[Sequence[WindowRow], Sequence[FunnelRow]]] = [
        (windows[i : i + _ROWS_PER_MESSAGE], []) for i in range(0, len(windows), _ROWS_PER_MESSAGE)
    ]
    chunks += [([], funnels[i : i + _ROWS_PER_MESSAGE]) for i in range(0, len(funnels), _ROWS_PER_MESSAGE)]
    chunks = chunks or [([], [])]
    last = len(chunks) - 1
    return [
        orjson.dumps(
            {
                "windows": [_WINDOW_VALUES(row) for row in window_rows],
                "funnels": [_FUNNEL_VALUES(row) for row in funnel_rows],
                "positions": {str(p): offset for p, offset in positions.items()} if index == last else {},
            }
        )
        for index, (window_rows, funnel_rows) in enumerate(chunks)
    ]


def decode_results(value: bytes) -> WindowResults:
    body = orjson.loads(value)
    return WindowResults(
        [WindowRow(*row) for row in body["windows"]],
        [FunnelRow(*row) for row in body["funnels"]],
        {int(partition): int(offset) for partition, offset in body["positions"].items()},
    )
