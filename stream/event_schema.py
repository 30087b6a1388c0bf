"""The JSON Schema of a message on the events topic, generated from the `Event` model: one event
object, or a JSON array of them. Published for producers as `docs/event.schema.json`; after changing
the model, regenerate it with `python -m stream.event_schema > docs/event.schema.json`.

The model is stricter than JSON Schema in one respect: an integer field takes only an integer
literal (`5`, never `5.0`), where JSON Schema's `integer` also admits a number with a zero fraction.
"""

from __future__ import annotations

import json
from typing import Any

from stream.events import Event

SCHEMA_FILE = "docs/event.schema.json"


def message_schema() -> dict[str, Any]:
    event = Event.model_json_schema()
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "A message on the OMStream events topic",
        "description": (
            "UTF-8 JSON: one event, or an array of events whose users all hash to the partition the "
            "message is written to. Unknown fields are ignored."
        ),
        "anyOf": [{"$ref": "#/$defs/Event"}, {"type": "array", "items": {"$ref": "#/$defs/Event"}}],
        "$defs": {"Event": event},
    }


def rendered() -> str:
    return json.dumps(message_schema(), indent=2) + "\n"


if __name__ == "__main__":
    print(rendered(), end="")
