"""`ping`: is the minion alive and answering (Salt `test.ping`)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from masters.modules import Allowed, SaltCall


class Args(BaseModel):
    model_config = ConfigDict(extra="forbid")


def salt_call(args: Args, allowed: Allowed) -> SaltCall:
    return SaltCall("test.ping")
