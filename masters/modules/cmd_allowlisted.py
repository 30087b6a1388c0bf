"""`cmd_allowlisted`: run a command by name from the IDC's allow-list (Salt `cmd.run_all`, no shell).

The wire carries only the name; the argument vector comes from the masters' allow-list file.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from masters.modules import Allowed, ModuleRejected, SaltCall


class Args(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z0-9_-]{1,64}$")


def salt_call(args: Args, allowed: Allowed) -> SaltCall:
    argv = allowed.commands.get(args.name)
    if argv is None:
        raise ModuleRejected("not_allowed", f"command {args.name!r} is not on this IDC's allow-list")
    return SaltCall("cmd.run_all", (argv,), {"python_shell": False})
