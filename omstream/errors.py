"""Validation errors in one line: what the first problem is, and where."""

from __future__ import annotations

from pydantic import ValidationError


def first_error(error: ValidationError, whole: str = "") -> str:
    """`field.path: message` of the first error; `whole` names the place when the error is not in a field."""
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or whole
    return f"{where}: {first['msg']}" if where else first["msg"]
