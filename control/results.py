"""What the control service publishes on `ops.results`: a command's admission, then a result set per IDC."""

from __future__ import annotations

import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from masters.protocol import Command, MinionReturn, Target

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
