"""The command an operator signs and the results the control service publishes (`ops.commands`/`results`)."""

from __future__ import annotations

import datetime
import json
from typing import Any, Literal
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from masters.protocol import MinionReturn, Target

NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class CommandRejected(ValueError):
    """Why a command may not run: `reason` is a short code (`unsigned`, `forbidden_idc`, …), the message
    says it in words. Every check of the control service raises it; each becomes a published result."""

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


Stage = Literal["received", "result"]
Status = Literal["accepted", "rejected", "succeeded", "failed", "timeout"]


class CommandResult(BaseModel):
    """One outcome on `ops.results`: a command accepted or rejected, then one result set per IDC."""

    command_id: str
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
    duration_ms: float = 0.0
    issued_at: datetime.datetime | None = None
    expires_at: datetime.datetime | None = None
    recorded_at: datetime.datetime = Field(default_factory=lambda: datetime.datetime.now(datetime.UTC))

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
