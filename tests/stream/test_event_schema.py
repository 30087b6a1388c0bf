"""The published JSON Schema of the events topic's messages is the `Event` model's, and says what the
model accepts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest

from stream.event_schema import SCHEMA_FILE, message_schema, rendered
from stream.events import Event, FixedRange, decode_message

ROOT = Path(__file__).resolve().parents[2]
GOOD = {"user_id": 1, "item_id": 2, "category_id": 3, "behavior": "pv", "ts": 1_511_544_070}
ALL_TIME = FixedRange(-(2**62), 2**62)  # the schema cannot know the accepted range: every time here


def test_the_committed_schema_is_the_models() -> None:
    committed = (ROOT / SCHEMA_FILE).read_text()
    assert committed == rendered(), f"regenerate it: python -m stream.event_schema > {SCHEMA_FILE}"


@pytest.mark.parametrize(
    "message",
    [
        GOOD,
        [GOOD, {**GOOD, "behavior": "buy", "channel": "app", "extra": [1]}],
        {**GOOD, "user_id": "1"},
        {**GOOD, "user_id": -1},
        {**GOOD, "item_id": 2**63},
        {**GOOD, "behavior": "PV"},
        {**GOOD, "ts": True},
        {**GOOD, "channel": 5},
        {key: value for key, value in GOOD.items() if key != "ts"},
        [GOOD, {**GOOD, "behavior": "like"}],
        "pv",
    ],
)
def test_the_schema_accepts_exactly_what_the_model_accepts(message: Any) -> None:
    by_model = all(isinstance(result, Event) for result in decode_message(orjson.dumps(message), ALL_TIME))
    by_schema = jsonschema.Draft202012Validator(message_schema()).is_valid(message)
    assert by_schema == by_model
