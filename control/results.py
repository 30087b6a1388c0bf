"""What the control service publishes on `ops.results`: a command's admission, then a result set per IDC.

Each result is signed by the control service (a Kafka header, see `control.signing`); whoever reads
the topic (the sink, an operator's client) takes only what verifies, and skips what it cannot read.
"""

from __future__ import annotations

import datetime
import re
import uuid
from typing import Any, Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import BaseModel, Field, ValidationError, field_validator

from control.signing import Headers, Purpose, is_signed
from masters.protocol import Command, MinionReturn, Target

Stage = Literal["received", "result"]
# Per IDC: `refused` a master did not run it (bad signature, expired, already run, …); `timeout` it
# was never sent to a master in time, so it did not run; `unknown` it was sent and no answer came.
Status = Literal["accepted", "rejected", "succeeded", "failed", "refused", "timeout", "unknown"]
# Far above what the control service publishes (outputs are cut to MAX_OUTPUT_BYTES): anything
# bigger is not one of its results, and is not parsed.
MAX_RESULT_BYTES = 1024 * 1024


class CommandResult(BaseModel):
    """One outcome on `ops.results`: a command accepted or rejected, then one result set per IDC."""

    command_id: str  # a UUID, in its canonical text
    stage: Stage
    status: Status
    reason: str = ""
    detail: str = ""
    operator: str = ""
    module: str = ""
    target: Target = ""
    args: dict[str, Any] = Field(default_factory=dict)
    idc: str = ""
    idcs: list[str] = Field(default_factory=list)
    master: str = ""
    minions: dict[str, MinionReturn] = Field(default_factory=dict)
    truncated: bool = False  # some minion outputs were cut, each to a marker with its start
    omitted: int = 0  # minions whose returns were left out to fit (the detail counts them)
    source: str = ""  # the record of ops.commands it is about: topic/partition/offset
    duration_ms: float = 0.0
    issued_at: datetime.datetime | None = None
    expires_at: datetime.datetime | None = None

    @field_validator("command_id")
    @classmethod
    def _uuid(cls, value: str) -> str:
        return str(uuid.UUID(value))

    @classmethod
    def about(cls, command: Command, **fields: Any) -> CommandResult:
        return cls(
            command_id=str(command.command_id),
            operator=command.operator,
            module=command.module,
            target=command.target,
            args=command.args,
            idcs=command.idc,
            issued_at=command.issued_at,
            expires_at=command.expires_at,
            **fields,
        )


class UnreadableResult(ValueError):
    """A record on `ops.results` that is no result of the control service: `why` is `oversized`,
    `unsigned` (no valid signature of the control service) or `malformed`."""

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


def read_result(value: bytes, headers: Headers, control_key: Ed25519PublicKey | None) -> CommandResult:
    """The result in a record, checked in this order: size, then the control service's signature
    (unless no key is given), then the model; raises UnreadableResult."""
    if len(value) > MAX_RESULT_BYTES:
        raise UnreadableResult("oversized")
    if control_key is not None and not is_signed(control_key, Purpose.RESULT, value, headers):
        raise UnreadableResult("unsigned")
    try:
        return CommandResult.model_validate_json(value)
    except ValidationError:
        raise UnreadableResult("malformed") from None


NIL_ID = str(uuid.UUID(int=0))
_COMMAND_ID = re.compile(rb'"command_id"\s*:\s*"([0-9A-Za-z{}:-]{32,45})"')


def claimed_id(raw: bytes) -> str:
    """The command id that bytes claim, found without parsing them (they may be too large or too deep
    to parse, or forged), or the nil UUID: the audit is keyed by UUID."""
    found = _COMMAND_ID.search(raw)
    try:
        return str(uuid.UUID(found[1].decode())) if found else NIL_ID
    except ValueError:
        return NIL_ID
