"""Operation modules: one per file in this package, each an args schema and an explicit Salt mapping.

A module file defines `Args` (a pydantic model: what the wire may carry) and
`salt_call(args, allowed) -> SaltCall` (the one Salt function it runs). Nothing else reaches Salt,
so no command can run a shell line that a module does not build from validated arguments.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field
from functools import cache
from types import ModuleType
from typing import Any, Protocol

from pydantic import BaseModel, ValidationError

from masters.protocol import first_error


@dataclass(frozen=True)
class SaltCall:
    function: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Allowed:
    """What an IDC's masters permit beyond a module's schema: named commands and named states."""

    commands: dict[str, list[str]] = field(default_factory=dict)
    states: frozenset[str] = frozenset()


class ModuleRejected(ValueError):
    """The module is unknown (`reason` unknown_module), its arguments fail its schema (bad_args), or
    they name something the IDC does not allow (not_allowed); the message says why."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


class _OperationModule(Protocol):
    Args: type[BaseModel]

    def salt_call(self, args: Any, allowed: Allowed) -> SaltCall: ...


@cache
def available() -> dict[str, ModuleType]:
    return {
        info.name: importlib.import_module(f"{__name__}.{info.name}")
        for info in pkgutil.iter_modules(__path__)
        if not info.name.startswith("_")
    }


def _module(name: str) -> _OperationModule:
    module = available().get(name)
    if module is None:
        raise ModuleRejected(
            "unknown_module", f"unknown module {name!r} (known: {', '.join(sorted(available()))})"
        )
    return module


def validate_args(name: str, args: dict[str, Any]) -> BaseModel:
    try:
        return _module(name).Args.model_validate(args)
    except ValidationError as error:
        raise ModuleRejected(
            "bad_args", f"bad args for {name}: {first_error(error, whole='args')}"
        ) from error


def salt_call(name: str, args: dict[str, Any], allowed: Allowed) -> SaltCall:
    return _module(name).salt_call(validate_args(name, args), allowed)
