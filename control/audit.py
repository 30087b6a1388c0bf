"""Audit rows: a result from `ops.results` flattened to the `ops_audit` table, one row per minion."""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import uuid

from control.results import CommandResult

log = logging.getLogger("omstream.audit")

_EPOCH = datetime.datetime.fromtimestamp(0, datetime.UTC)


@dataclasses.dataclass(frozen=True)
class AuditRow:
    command_id: uuid.UUID
    stage: str
    idc: str
    minion: str
    operator: str
    module: str
    target: str
    args: str
    master: str
    status: str
    reason: str
    detail: str
    output: str
    duration_ms: float
    issued_at: datetime.datetime
    recorded_at: datetime.datetime


def audit_rows(result: CommandResult) -> list[AuditRow]:
    target = result.target if isinstance(result.target, str) else ",".join(result.target)
    row = AuditRow(
        command_id=uuid.UUID(result.command_id),
        stage=result.stage,
        idc=result.idc,
        minion="",
        operator=result.operator,
        module=result.module,
        target=target,
        args=json.dumps(result.args, sort_keys=True),
        master=result.master,
        status=result.status,
        reason=result.reason,
        detail=result.detail,
        output="",
        duration_ms=result.duration_ms,
        issued_at=result.issued_at or _EPOCH,
        recorded_at=result.recorded_at,
    )
    if not result.minions:
        return [row]
    return [
        dataclasses.replace(
            row, minion=minion, output=json.dumps({"ok": ret.ok, "output": ret.output}, default=str)
        )
        for minion, ret in sorted(result.minions.items())
    ]


def audit_rows_of(value: bytes) -> list[AuditRow]:
    """The audit rows of one message on `ops.results`; none for a message that is not a result."""
    try:
        return audit_rows(CommandResult.model_validate_json(value))
    except ValueError:  # not a result, or a command_id that is not a UUID
        log.warning("skipped a message on the results topic that is not a command result")
        return []
