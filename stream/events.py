"""The user-behaviour event, its JSON wire format, and why an input is rejected.

Wire format on the events topic: UTF-8 JSON, either one event object per message (as services that
write to Kafka themselves send it) or a JSON array of events whose users all hash to the partition
the message is written to (as our emitter batches them).
"""

from __future__ import annotations

import base64
import functools
import time
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, Literal, Protocol, cast, get_args

import annotated_types
import msgspec
import orjson
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from stream._fetch import UndecodableBatch

Behavior = Literal["pv", "fav", "cart", "buy"]
BEHAVIORS: tuple[Behavior, ...] = get_args(Behavior)
# Numeric codes, where windows and the generator work on arrays: a behaviour's index in BEHAVIORS
BEHAVIOR_CODE: dict[Behavior, int] = {behavior: code for code, behavior in enumerate(BEHAVIORS)}
PV, FAV, CART, BUY = (BEHAVIOR_CODE[behavior] for behavior in BEHAVIORS)

Id = Annotated[int, Field(ge=0, lt=2**63)]


class Event(BaseModel):
    """One user-behaviour event; `ts` is event time in Unix seconds."""

    model_config = ConfigDict(strict=True, frozen=True, extra="ignore", title="OMStream user-behaviour event")

    user_id: Id = Field(description="the user; also the message key, as decimal text")
    item_id: Id = Field(description="the item (product)")
    category_id: Id = Field(description="the item's category")
    behavior: Behavior = Field(
        description="pv = item page view (click), fav = favourite, cart = add to cart, buy = purchase"
    )
    ts: int = Field(
        description="event time in integer Unix SECONDS (not milliseconds), within the accepted range"
    )
    channel: str = Field("", description="optional: where the event came from (app, web, ...)")
    device_id: str = Field("", description="optional")
    event_id: str = Field("", description="optional: the emitter's id of the event")

    @property
    def key(self) -> bytes:
        return str(self.user_id).encode()


EVENT_COLUMNS: tuple[str, ...] = tuple(Event.model_fields)  # also the raw table's columns, in order


class RejectReason(StrEnum):
    MALFORMED = "malformed"  # not JSON / not CSV, or not an object
    INVALID = "invalid"  # a field missing or of the wrong type
    UNKNOWN_BEHAVIOR = "unknown_behavior"
    OUT_OF_WINDOW = "out_of_window"  # event time outside the accepted range
    LATE = "late"  # valid and stored, but behind the real-time windows' grace
    NULL_VALUE = "null_value"  # a Kafka record without a value (a tombstone)
    NOT_UTF8 = "not_utf8"  # bytes that are not UTF-8 text
    OVERSIZED = "oversized"  # a message over MAX_MESSAGE_BYTES
    UNDECODABLE_BATCH = "undecodable_batch"  # a record batch the consumer could not decompress or parse


MAX_MESSAGE_BYTES = 1 << 20  # a message's value, at most (Kafka's default message.max.bytes is ~1 MB)
MAX_PAYLOAD_CHARS = 64 << 10  # of an input kept in a dead letter: the letter must fit a Kafka message


@dataclass(frozen=True)
class Rejected:
    reason: RejectReason
    detail: str
    payload: str  # the offending input, verbatim (its head when longer than MAX_PAYLOAD_CHARS)


_EVENT_LIST = TypeAdapter(list[Event])


@dataclass(frozen=True)
class FixedRange:
    """Accepted event times [start, end) in Unix seconds, fixed: a historical data set's window."""

    start: int
    end: int

    def __post_init__(self) -> None:
        if self.start >= self.end:
            raise ValueError(f"the accepted range must end after it starts ({self.start} >= {self.end})")

    def bounds(self) -> tuple[int, int]:
        return self.start, self.end


_CLOCK_STEP = 60  # a moving range's bounds advance a minute at a time, so its decoders can be reused


@dataclass(frozen=True)
class RecentRange:
    """Accepted event times relative to the clock, for live events: from `back` seconds ago to `ahead`
    seconds from now (a little, for clock skew: an event far in the future would close windows early)."""

    back: int
    ahead: int

    def bounds(self) -> tuple[int, int]:
        now = int(time.time()) // _CLOCK_STEP * _CLOCK_STEP
        return now - self.back, now + self.ahead + _CLOCK_STEP  # never less than `ahead` ahead


AcceptRange = FixedRange | RecentRange


class EventFields(Protocol):
    """An event's fields, read-only: what both `Event` and the hot path's decoding give."""

    @property
    def user_id(self) -> int: ...
    @property
    def item_id(self) -> int: ...
    @property
    def category_id(self) -> int: ...
    @property
    def behavior(self) -> Behavior: ...
    @property
    def ts(self) -> int: ...
    @property
    def channel(self) -> str: ...
    @property
    def device_id(self) -> str: ...
    @property
    def event_id(self) -> str: ...


def _msgspec_meta(rules: list[Any]) -> msgspec.Meta | None:
    bounds: dict[str, int] = {}
    for rule in rules:
        if isinstance(rule, annotated_types.Ge):
            bounds["ge"] = cast(int, rule.ge)
        elif isinstance(rule, annotated_types.Lt):
            bounds["le"] = cast(int, rule.lt) - 1  # msgspec's bounds must fit an int64: 2**63 does not
        else:
            raise TypeError(f"no msgspec equivalent of the rule {rule!r}")
    return msgspec.Meta(ge=bounds.get("ge"), le=bounds.get("le")) if bounds else None


def _as_struct(model: type[BaseModel], ts_range: tuple[int, int]) -> type[msgspec.Struct]:
    """The model's fields, types, bounds and defaults as a msgspec Struct, with `ts` in `ts_range`:
    msgspec validates JSON faster than pydantic, and the model stays the one definition of an event."""
    fields: list[Any] = []
    for name, field in model.model_fields.items():
        rules = [*field.metadata, *(_window_rules(ts_range) if name == "ts" else [])]
        meta = _msgspec_meta(rules)
        annotation = Annotated[field.annotation, meta] if meta else field.annotation
        fields.append((name, annotation) if field.is_required() else (name, annotation, field.default))
    return msgspec.defstruct(f"{model.__name__}Fields", fields, frozen=True, gc=False)


def _window_rules(bounds: tuple[int, int]) -> list[Any]:
    start, end = bounds
    return [annotated_types.Ge(start), annotated_types.Lt(end)]


@functools.lru_cache(maxsize=4)
def _decoders(bounds: tuple[int, int]) -> tuple[msgspec.json.Decoder[Any], msgspec.json.Decoder[Any]]:
    """Decoders of one event and of a batch whose events are all within `bounds` (one per bounds: a
    fixed range has one for the life of a process, a moving one a new one each minute)."""
    struct = _as_struct(Event, bounds)
    return msgspec.json.Decoder(struct), msgspec.json.Decoder(list[struct])  # type: ignore[valid-type]


def decode_fields(value: bytes | None, accept_range: AcceptRange) -> list[EventFields] | None:
    """The hot path: a message (one event or a batch) whose events are all valid and in the window;
    None otherwise, and `decode_message` says why (it accepts all that this does, and more)."""
    if value is None or len(value) > MAX_MESSAGE_BYTES:
        return None
    decode_one, decode_list = _decoders(accept_range.bounds())
    opening = value[:1]
    try:
        if opening == b"[":
            return cast(list[EventFields], decode_list.decode(value))
        if opening == b"{":
            return [decode_one.decode(value)]
    except (msgspec.DecodeError, UnicodeDecodeError):  # not JSON text, not valid events, or not in the window
        return None
    return None


def decode_singles(values: Sequence[bytes | None], accept_range: AcceptRange) -> list[EventFields] | None:
    """Messages that each hold one valid event in the window (as services that write to Kafka
    themselves send them), decoded in one pass; None when any does not (a batch, or bad input), and
    each message then takes `decode_fields`."""
    decode_one = _decoders(accept_range.bounds())[0].decode
    try:
        if max(map(len, cast(Sequence[bytes], values)), default=0) > MAX_MESSAGE_BYTES:
            return None
        return list(map(decode_one, cast(Sequence[bytes], values)))
    except (msgspec.DecodeError, UnicodeDecodeError, TypeError):  # TypeError: a NULL value
        return None


def classify_error(error: ValidationError) -> tuple[RejectReason, str]:
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"])
    if first["loc"][-1:] == ("behavior",) and first["type"] == "literal_error":
        return RejectReason.UNKNOWN_BEHAVIOR, f"behavior={first.get('input')!r}"
    return RejectReason.INVALID, f"{where}: {first['msg']}"


def _payload(item: Any) -> str:
    return orjson.dumps(item).decode() if not isinstance(item, str) else item


def validate_item(item: Any, accept_range: AcceptRange) -> Event | Rejected:
    try:
        event = Event.model_validate(item)
    except ValidationError as error:
        return Rejected(*classify_error(error), _payload(item))
    return check_window(event, accept_range)


def check_window(event: Event, accept_range: AcceptRange) -> Event | Rejected:
    start, end = accept_range.bounds()
    if start <= event.ts < end:
        return event
    detail = f"ts={event.ts}"
    if start <= event.ts // 1000 < end:
        detail += " looks like milliseconds: ts is in Unix seconds"
    return Rejected(RejectReason.OUT_OF_WINDOW, detail, encode_events([event]).decode())


def unreadable(value: bytes | None) -> Rejected | None:
    """Why a Kafka message's value cannot be read as JSON text at all, if it cannot."""
    if value is None:
        return Rejected(RejectReason.NULL_VALUE, "the record has no value", "")
    if isinstance(value, UndecodableBatch):
        return Rejected(
            RejectReason.UNDECODABLE_BATCH, value.detail, "base64:" + base64.b64encode(value).decode()
        )
    if len(value) > MAX_MESSAGE_BYTES:
        detail = f"{len(value)} bytes, over the limit of {MAX_MESSAGE_BYTES}: send smaller JSON arrays"
        return Rejected(RejectReason.OVERSIZED, detail, bytes(value).decode(errors="replace"))
    try:
        bytes(value).decode()
    except UnicodeDecodeError as error:
        return Rejected(RejectReason.NOT_UTF8, str(error), bytes(value).decode(errors="replace"))
    return None


def decode_message(value: bytes | None, accept_range: AcceptRange) -> list[Event | Rejected]:
    """Decode one Kafka message (an event or a batch) into events and rejections, in order."""
    rejected = unreadable(value)
    if rejected is not None:
        return [rejected]
    assert value is not None
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


def as_event(fields: EventFields) -> Event:
    if isinstance(fields, Event):
        return fields
    return Event.model_validate({name: getattr(fields, name) for name in Event.model_fields})


def valid_events(value: bytes | None, accept_range: AcceptRange) -> list[Event]:
    """The message's valid, in-window events, when some of its events are not (the slow path)."""
    return [result for result in decode_message(value, accept_range) if isinstance(result, Event)]


def encode_events(events: Sequence[Event]) -> bytes:
    """One event as an object, several as an array (the batched wire format)."""
    if len(events) == 1:
        return events[0].model_dump_json(exclude_defaults=True).encode()
    return _EVENT_LIST.dump_json(list(events), exclude_defaults=True)


@dataclass(frozen=True)
class DeadLetter:
    """A rejected input on the dead-letter topic, as the `dead_letters` table stores it.

    `origin` names the input it came from (topic/partition/offset/position), so re-processing the same
    input yields the same letter; a letter written without one takes its own position on the topic.
    """

    origin: str
    reason: str
    source: str  # who rejected it: the emitter (`replay`, …) or `stream`
    detail: str
    payload: str  # the offending input, verbatim

    @classmethod
    def of(cls, rejected: Rejected, source: str, origin: str = "") -> DeadLetter:
        detail, payload = rejected.detail, rejected.payload
        if len(payload) > MAX_PAYLOAD_CHARS:
            detail += f" (payload: the first {MAX_PAYLOAD_CHARS} of {len(payload)} characters)"
            payload = payload[:MAX_PAYLOAD_CHARS]
        return cls(origin, rejected.reason.value, source, detail, payload)

    def encode(self) -> bytes:
        return orjson.dumps(self)

    @classmethod
    def decode(cls, value: bytes | None, position: str) -> DeadLetter:
        """The letter in `value`; one written in another shape (by a foreign producer) is kept too, as
        a malformed letter carrying the raw bytes, because a dead letter is never dropped."""
        rejected = unreadable(value)
        if rejected is not None:
            return cls.of(rejected, "unknown", position)
        assert value is not None
        try:
            body = orjson.loads(value)
            fields = {name: str(body[name]) for name in ("reason", "source", "detail", "payload")}
            return cls(origin=str(body.get("origin") or position), **fields)
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
            raw = bytes(value).decode(errors="replace")
            return cls.of(
                Rejected(RejectReason.MALFORMED, "unreadable dead letter", raw), "unknown", position
            )
