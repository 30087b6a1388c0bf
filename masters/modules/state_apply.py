"""`state_apply`: apply one named Salt state from the IDC's allow-list (Salt `state.apply`)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from masters.modules import Allowed, ModuleRejected, SaltCall


class Args(BaseModel):
    model_config = ConfigDict(extra="forbid")

    state: str = Field(pattern=r"^[a-z0-9_.-]{1,64}$")
    test: bool = False


def salt_call(args: Args, allowed: Allowed) -> SaltCall:
    if args.state not in allowed.states:
        raise ModuleRejected("not_allowed", f"state {args.state!r} is not on this IDC's allow-list")
    return SaltCall("state.apply", (args.state,), {"test": args.test})
