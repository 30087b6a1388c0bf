"""`pkg_version`: installed version of a package (Salt `pkg.version`)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from masters.modules import Allowed, SaltCall

PACKAGE_NAME = r"^[A-Za-z0-9][A-Za-z0-9.+_:-]{0,127}$"


class Args(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=PACKAGE_NAME)


def salt_call(args: Args, allowed: Allowed) -> SaltCall:
    return SaltCall("pkg.version", (args.name,))
