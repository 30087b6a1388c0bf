"""The user-behaviour event, its JSON wire format, and why an input is rejected.

Wire format on the events topic (MISSION §3): UTF-8 JSON, either one event object per message
or a JSON array of events whose users all hash to the partition the message is written to.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, Literal, NotRequired

import orjson
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from typing_extensions import TypedDict

Behavior = Literal["pv", "fav", "cart", "buy"]
BEHAVIORS: tuple[Behavior, ...] = ("pv", "fav", "cart", "buy")

Id = Annotated[int, Field(ge=0, lt=2**63)]


class Event(BaseModel):
    """One user-behaviour event; `ts` is event time in Unix seconds."""

    model_config = ConfigDict(strict=True, frozen=True, extra="ignore")

    user_id: Id
    item_id: Id
    category_id: Id
    behavior: Behavior
    ts: int
    channel: str = ""
    device_id: str = ""
    event_id: str = ""

    @property
    def key(self) -> bytes:
        return str(self.user_id).encode()


class RejectReason(StrEnum):
    MALFORMED = "malformed"  # not JSON / not CSV, or not an object
    INVALID = "invalid"  # a field missing or of the wrong type
    UNKNOWN_BEHAVIOR = "unknown_behavior"
    OUT_OF_WINDOW = "out_of_window"  # event time outside the accepted range
    LATE = "late"  # valid and stored, but behind the real-time windows' grace


@dataclass(frozen=True)
class Rejected:
    reason: RejectReason
    detail: str
    payload: str  # the offending input, verbatim, so nothing is lost


_EVENT_LIST = TypeAdapter(list[Event])


def _fields_of(model: type[BaseModel]) -> Any:
    """The model's fields and rules as a TypedDict: validating into dicts skips building models."""
    fields = {}
    for name, field in model.model_fields.items():
        annotation = Annotated[(field.annotation, *field.metadata)] if field.metadata else field.annotation
        fields[name] = annotation if field.is_required() else NotRequired[annotation]
    typed = TypedDict(f"{model.__name__}Fields", fields)  # type: ignore[misc]
    typed.__pydantic_config__ = model.model_config  # type: ignore[attr-defined]
    return typed


_EVENT_FIELDS = _fields_of(Event)
_EVENT_FIELDS_ONE: TypeAdapter[dict[str, Any]] = TypeAdapter(_EVENT_FIELDS)
_EVENT_FIELDS_LIST: TypeAdapter[list[dict[str, Any]]] = TypeAdapter(list[_EVENT_FIELDS])  # type: ignore[valid-type]


def decode_fields(value: bytes, accept_range: tuple[int, int]) -> list[dict[str, Any]] | None:
    """The hot path: a message (one event or a batch) whose events are all valid and in the window, as
    dicts of `Event`'s fields (optional ones may be absent); None otherwise: `decode_message` says why."""
    opening = value[:1]
    try:
        if opening == b"[":
            items: list[dict[str, Any]] = _EVENT_FIELDS_LIST.validate_json(value)
        elif opening == b"{":
            items = [_EVENT_FIELDS_ONE.validate_json(value)]
        else:
            return None
    except ValidationError:
        return None
    start, end = accept_range
    return items if all(start <= item["ts"] < end for item in items) else None


def classify_error(error: ValidationError) -> tuple[RejectReason, str]:
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"])
    if first["loc"][-1:] == ("behavior",) and first["type"] == "literal_error":
        return RejectReason.UNKNOWN_BEHAVIOR, f"behavior={first.get('input')!r}"
    return RejectReason.INVALID, f"{where}: {first['msg']}"


def _payload(item: Any) -> str:
    return orjson.dumps(item).decode() if not isinstance(item, str) else item


def validate_item(item: Any, accept_range: tuple[int, int]) -> Event | Rejected:
    try:
        event = Event.model_validate(item)
    except ValidationError as error:
        return Rejected(*classify_error(error), _payload(item))
    return check_window(event, accept_range)


def check_window(event: Event, accept_range: tuple[int, int]) -> Event | Rejected:
    start, end = accept_range
    if start <= event.ts < end:
        return event
    return Rejected(RejectReason.OUT_OF_WINDOW, f"ts={event.ts}", encode_events([event]).decode())


def decode_message(value: bytes, accept_range: tuple[int, int]) -> list[Event | Rejected]:
    """Decode one Kafka message (an event or a batch) into events and rejections, in order."""
    try:
        events = _EVENT_LIST.validate_json(value) if value[:1] == b"[" else None
    except ValidationError:
        events = None  # one bad item: fall back to item by item so the good ones survive
    if events is not None:
        return [check_window(event, accept_range) for event in events]
    try:
        parsed = orjson.loads(value)
    except orjson.JSONDecodeError as error:
        return [Rejected(RejectReason.MALFORMED, f"not JSON: {error}", value.decode(errors="replace"))]
    items = parsed if isinstance(parsed, list) else [parsed]
    return [validate_item(item, accept_range) for item in items]


def event_fields(value: bytes, accept_range: tuple[int, int]) -> list[dict[str, Any]]:
    """The fields of the message's valid, in-window events (what the raw table stores)."""
    fields = decode_fields(value, accept_range)
    if fields is None:
        fields = [
            result.model_dump() for result in decode_message(value, accept_range) if isinstance(result, Event)
        ]
    return fields


def encode_events(events: Sequence[Event]) -> bytes:
    """One event as an object, several as an array (the batched wire format)."""
    if len(events) == 1:
        return events[0].model_dump_json(exclude_defaults=True).encode()
    return _EVENT_LIST.dump_json(list(events), exclude_defaults=True)


def encode_rejected(rejected: Rejected, source: str, origin: str = "") -> bytes:
    """A dead letter; `origin` names the input it came from, so re-processing it yields the same letter."""
    letter = {
        "reason": rejected.reason.value,
        "detail": rejected.detail,
        "source": source,
        "payload": rejected.payload,
    }
    return orjson.dumps({**letter, "origin": origin} if origin else letter)
