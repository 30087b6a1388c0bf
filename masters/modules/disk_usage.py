"""`disk_usage`: usage of every mounted filesystem (Salt `disk.usage`)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from masters.modules import Allowed, SaltCall


class Args(BaseModel):
    model_config = ConfigDict(extra="forbid")


def salt_call(args: Args, allowed: Allowed) -> SaltCall:
    return SaltCall("disk.usage")
