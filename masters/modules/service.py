"""`service`: status or restart of a system service (Salt `service.status` / `service.restart`)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from masters.modules import Allowed, SaltCall

SERVICE_NAME = r"^[A-Za-z0-9][A-Za-z0-9@._-]{0,127}$"


class Args(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=SERVICE_NAME)
    action: Literal["status", "restart"] = "status"


def salt_call(args: Args, allowed: Allowed) -> SaltCall:
    return SaltCall(f"service.{args.action}", (args.name,))
