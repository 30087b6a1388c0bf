"""What crosses the wire between the control service and a master: JSON strings, never live objects."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Target = str | list[str]


def target_type(target: Target) -> Literal["glob", "list", "grain"]:
    """Salt's targeting for a command target: a list of hosts, `G@key:value` for a grain, else a glob."""
    if isinstance(target, list):
        return "list"
    return "grain" if target.startswith("G@") else "glob"


def salt_target(target: Target) -> str | list[str]:
    """The target in the form Salt expects for its `target_type`."""
    return target.removeprefix("G@") if isinstance(target, str) else target


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
