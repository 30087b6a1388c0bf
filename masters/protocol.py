"""The control plane's wire protocol, shared by the control service, operators' clients and masters.

What an operator signs (`Command`), what the control service sends a master (`MasterRequest`) and
what a master answers (`MasterReply`) cross the wire as JSON strings, never as live objects. It lives
with the masters, which verify commands themselves; the control service imports it, never the reverse.
"""

from __future__ import annotations

import datetime
import json
from typing import Any, Literal
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, field_validator

Target = str | list[str]


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


def first_error(error: ValidationError, whole: str = "") -> str:
    """`field.path: message` of the first error; `whole` names the place when the error is not in a field."""
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or whole
    return f"{where}: {first['msg']}" if where else first["msg"]


class MasterRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    command_id: str
    idc: str
    module: str
    target: Target
    args: dict[str, Any] = Field(default_factory=dict)


class MinionReturn(BaseModel):
    ok: bool
    output: Any = None


class MasterReply(BaseModel):
    status: Literal["succeeded", "failed"]
    reason: str = ""
    master: str
    minions: dict[str, MinionReturn] = Field(default_factory=dict)
    duration_ms: float = 0.0


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
