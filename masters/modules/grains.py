"""`grains`: facts about the minion (Salt `grains.item`, or `grains.items` when no keys are named)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from masters.modules import Allowed, SaltCall


class Args(BaseModel):
    model_config = ConfigDict(extra="forbid")

    keys: list[str] = Field(default_factory=list, max_length=50)


def salt_call(args: Args, allowed: Allowed) -> SaltCall:
    return SaltCall("grains.item", tuple(args.keys)) if args.keys else SaltCall("grains.items")
