"""The control plane's wire protocol, shared by the control service, operators' clients and masters.

What an operator signs (`Command`), what the control service sends a master (`MasterRequest`: the
signed command itself, which the master verifies again) and what a master answers (`MasterReply`)
cross the wire as JSON strings, never as live objects. It lives with the masters, which verify
commands themselves; the control service imports it, never the reverse.
"""

from __future__ import annotations

import datetime
import json
from typing import Any, Literal
from uuid import UUID

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
)

Target = str | list[str]

# Checked before anything is parsed: a command is a few hundred bytes, and its args are small.
MAX_COMMAND_BYTES = 64 * 1024
# What the outputs of one result set may take; beyond it outputs are cut, with a marker.
MAX_OUTPUT_BYTES = 256 * 1024
# A command issued a little "in the future" is a clock skew, not an attack.
CLOCK_SKEW = datetime.timedelta(seconds=60)


def target_type(target: Target) -> Literal["glob", "list", "grain"]:
    """Salt's targeting for a command target: a list of hosts, `G@key:value` for a grain, else a glob."""
    if isinstance(target, list):
        return "list"
    return "grain" if target.startswith("G@") else "glob"


def salt_target(target: Target) -> str | list[str]:
    """The target in the form Salt expects for its `target_type`."""
    return target.removeprefix("G@") if isinstance(target, str) else target


NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class CommandRejected(ValueError):
    """Why a command may not run: `reason` is a short code (`unsigned`, `forbidden_idc`, …), the message
    says it in words. Every check of the control service and of a master raises it."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


class Command(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    command_id: UUID
    operator: str = Field(pattern=NAME)
    idc: list[str] = Field(min_length=1)
    target: Target
    module: str = Field(pattern=NAME)
    args: dict[str, Any] = Field(default_factory=dict)
    issued_at: AwareDatetime
    expires_at: AwareDatetime
    signature: str = ""

    @field_validator("idc", mode="before")
    @classmethod
    def _one_or_many_idcs(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("idc")
    @classmethod
    def _distinct_idcs(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("an IDC is named twice")
        return value

    @field_validator("target")
    @classmethod
    def _nonempty_target(cls, value: Target) -> Target:
        if not value:
            raise ValueError("empty target")
        return value

    @field_validator("issued_at", "expires_at")
    @classmethod
    def _utc(cls, value: datetime.datetime) -> datetime.datetime:
        # One time zone, so the signed bytes do not depend on how the operator's clock wrote them.
        return value.astimezone(datetime.UTC)

    def canonical(self) -> bytes:
        """The bytes an operator signs: every field but the signature, as sorted compact JSON."""
        body = self.model_dump(mode="json", exclude={"signature"})
        return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def parse_command(raw: bytes) -> Command:
    """A command read from the wire: its size is checked before a byte of it is parsed, and nesting
    deeper than the JSON parser's limit is refused as malformed (never a crash)."""
    if len(raw) > MAX_COMMAND_BYTES:
        raise CommandRejected("too_large", f"a command is at most {MAX_COMMAND_BYTES} bytes, not {len(raw)}")
    try:
        return Command.model_validate_json(raw)
    except ValidationError as error:
        raise CommandRejected("malformed", first_error(error)) from None


def check_times(command: Command, now: datetime.datetime, max_lifetime: datetime.timedelta) -> None:
    """Raises CommandRejected unless the command is valid at `now` and lives no longer than allowed
    (which bounds how long anyone must remember it to refuse its replays)."""
    if command.expires_at <= now:
        raise CommandRejected("expired", f"the command expired at {command.expires_at.isoformat()}")
    if command.issued_at > now + CLOCK_SKEW:
        raise CommandRejected("not_yet_valid", f"issued in the future ({command.issued_at.isoformat()})")
    if command.expires_at - command.issued_at > max_lifetime:
        raise CommandRejected("lifetime_too_long", f"a command may live at most {max_lifetime}")


def first_error(error: ValidationError, whole: str = "") -> str:
    """`field.path: message` of the first error; `whole` names the place when the error is not in a field."""
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or whole
    return f"{where}: {first['msg']}" if where else first["msg"]


class MasterRequest(BaseModel):
    """What the control service asks a master: run this signed command in the master's IDC."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    command: Command


# Requests the control service sends a master in one call: their claims share one fsync.
MAX_BATCH = 64
_REQUESTS = TypeAdapter(list[str])


def encode_batch(items: list[str]) -> str:
    """Requests (or replies) in one call: a JSON array of their JSON strings, each checked on its own."""
    return json.dumps(items)


def decode_batch(text: str, limit: int) -> list[str]:
    """The JSON strings of a batch of at most `limit` items; raises CommandRejected (`malformed`) for
    anything else, before any item is parsed."""
    try:
        items = _REQUESTS.validate_json(text)
    except ValidationError as error:
        raise CommandRejected("malformed", f"malformed batch: {first_error(error, 'batch')}") from None
    if not 1 <= len(items) <= limit:
        raise CommandRejected("malformed", f"a batch holds 1 to {limit} requests, not {len(items)}")
    return items


class MinionReturn(BaseModel):
    ok: bool
    output: Any = None


class MasterReply(BaseModel):
    """`refused`: the master did not run the command now (`reason` says why: `bad_signature`,
    `expired`, `wrong_idc`, `bad_args`, `already_run`, …); `failed`: it ran and a minion failed."""

    status: Literal["succeeded", "failed", "refused"]
    reason: str = ""
    detail: str = ""
    master: str
    minions: dict[str, MinionReturn] = Field(default_factory=dict)
    duration_ms: float = 0.0
    truncated: bool = False  # some outputs were cut to fit MAX_OUTPUT_BYTES or MAX_OUTPUT_DEPTH
    omitted: int = 0  # minions whose returns were left out to fit (the detail counts them all)


def bounded_outputs(
    minions: dict[str, MinionReturn], limit: int = MAX_OUTPUT_BYTES
) -> tuple[dict[str, MinionReturn], bool, int]:
    """The minions' returns as plain JSON data within `limit` bytes, whether any output was cut, and
    how many minions' returns were left out. Nesting deeper than MAX_OUTPUT_DEPTH becomes a marker
    (so every reader can parse the result); when the outputs are too large, each over its share is
    cut to `{"truncated": true, "bytes": N, "head": "<its JSON's start>"}`; when there are too many
    minions for each to keep MIN_RETURN_BYTES, failed ones are kept first and the rest left out. So a
    result fits its topic whatever the number of minions, and bounding it again changes nothing."""
    plain = {}
    cut = False
    for minion, ret in minions.items():
        output, deep = _plain(ret.output, 0)
        cut |= deep
        plain[minion] = MinionReturn(ok=ret.ok, output=output)
    sizes = {minion: _entry_bytes(minion, ret) for minion, ret in plain.items()}
    if sum(sizes.values()) <= limit:
        return plain, cut, 0
    order = sorted(plain, key=lambda minion: (plain[minion].ok, minion))  # failed ones first
    kept = order[: max(1, limit // MIN_RETURN_BYTES)]
    share = limit // len(kept)
    bounded = {}
    for minion in kept:
        ret = plain[minion]
        if sizes[minion] > share:
            room = max(share - (sizes[minion] - len(_json(ret.output))), 2 * _MARKER_BYTES)
            ret = MinionReturn(ok=ret.ok, output=_cut(_json(ret.output), room))
        bounded[minion] = ret
    return bounded, True, len(plain) - len(kept)


# Levels of a minion's output kept: far below what JSON parsers of every reader accept (pydantic's
# stops at 200), with room for the result's own envelope.
MAX_OUTPUT_DEPTH = 32
# What each listed minion may take at least; with more minions than fit, the rest are left out.
MIN_RETURN_BYTES = 512
_MARKER_BYTES = 64  # the marker around a cut output's head
_HEAD_CHARS = 200  # of a part nested too deep, kept in its marker


def _json(value: Any) -> str:
    return json.dumps(value)


def _entry_bytes(minion: str, ret: MinionReturn) -> int:
    """What a minion's return takes in a result's JSON (at most: pydantic escapes no more than this)."""
    return len(_json(minion)) + len(_json(ret.output)) + len('"":{"ok":false,"output":},')


def _plain(value: Any, depth: int) -> tuple[Any, bool]:
    """`value` as JSON data (other types as their text), with containers nested deeper than
    MAX_OUTPUT_DEPTH replaced by a marker; and whether any was."""
    containers = (dict, list, tuple, set, frozenset)
    if isinstance(value, containers) and depth >= MAX_OUTPUT_DEPTH and not _is_depth_marker(value):
        return {"truncated": True, "nested_deeper_than": MAX_OUTPUT_DEPTH, "head": _head(value)}, True
    if isinstance(value, dict):
        items = [(str(key), _plain(item, depth + 1)) for key, item in value.items()]
        return {key: item for key, (item, _) in items}, any(deep for _, (_, deep) in items)
    if isinstance(value, containers):
        elements = [_plain(item, depth + 1) for item in value]
        return [item for item, _ in elements], any(deep for _, deep in elements)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value, False
    return str(value), False


def _is_depth_marker(value: Any) -> bool:
    """A marker `_plain` made (bounding a result again keeps it): flat, so within any depth."""
    return (
        isinstance(value, dict)
        and set(value) == {"truncated", "nested_deeper_than", "head"}
        and value["nested_deeper_than"] == MAX_OUTPUT_DEPTH
        and isinstance(value["head"], str)
    )


class _Text(str):
    """A piece of `_head`'s output (a bracket, a separator), as opposed to a string value."""


def _head(value: Any) -> str:
    """The start of `value` as JSON text, written without recursion (it may be nested deeper than
    Python's recursion limit)."""
    pieces: list[str] = []
    length = 0
    stack: list[Any] = [value]
    while stack and length < _HEAD_CHARS:
        item = stack.pop()
        if isinstance(item, _Text):
            piece = str(item)
        elif isinstance(item, dict):
            piece = "{"
            entries = list(item.items())[:_HEAD_CHARS]
            stack.append(_Text("}"))
            for number, (key, element) in reversed(list(enumerate(entries))):
                stack += [element, _Text(json.dumps(str(key)) + ": ")]
                stack += [_Text(", ")] if number else []
        elif isinstance(item, (list, tuple, set, frozenset)):
            piece = "["
            elements = list(item)[:_HEAD_CHARS]
            stack.append(_Text("]"))
            for number, element in reversed(list(enumerate(elements))):
                stack += [element, _Text(", ")] if number else [element]
        else:
            piece = json.dumps(item, default=str)[:_HEAD_CHARS]
        pieces.append(piece)
        length += len(piece)
    return "".join(pieces)[:_HEAD_CHARS]


def _cut(text: str, share: int) -> dict[str, Any]:
    head = text[: share - _MARKER_BYTES]
    while True:  # quotes and backslashes of the head are escaped again: shorten it until it fits
        marker = {"truncated": True, "bytes": len(text), "head": head}
        size = len(json.dumps(marker))
        if size <= share:
            return marker
        head = head[: len(head) * (share - _MARKER_BYTES) // size]


# Both ends of the rpyc connection: nothing but exposed names is reachable, nothing is pickled, no
# exception classes are imported from the peer.
RPYC_CONFIG: dict[str, Any] = {
    "allow_public_attrs": False,
    "allow_safe_attrs": False,
    "allow_all_attrs": False,
    "allow_setattr": False,
    "allow_delattr": False,
    "allow_pickle": False,
    "import_custom_exceptions": False,
    "instantiate_custom_exceptions": False,
    "instantiate_oldstyle_exceptions": False,
}
