"""Audit rows: a record of `ops.results` as rows of the `ops_audit_log` table, one row per minion.

Only a record the control service signed is stored as what it says. A record without its valid
signature is stored as a `forgery` row (its claimed command id and its first bytes, as evidence),
never as a result; records too large to be a result, or signed but unreadable, are skipped and
counted. Rows are keyed by a hash of the record, so storing a record twice (the sink restarted) is
one row, while no other record, a forgery or a rejection reusing a command's id, can replace it. The
stored time is the sink's clock, never a time read from the record.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import logging
import uuid
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from control import metrics
from control.results import CommandResult, UnreadableResult, claimed_id, read_result
from control.signing import Headers, load_verify_key

log = logging.getLogger("omstream.audit")

_EPOCH = datetime.datetime.fromtimestamp(0, datetime.UTC)
_EVIDENCE_BYTES = 1000  # of a forged record, kept in its row


@dataclasses.dataclass(frozen=True)
class AuditRow:
    record_id: str
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
    truncated: bool
    source: str
    issued_at: datetime.datetime
    stored_at: datetime.datetime


def record_id(value: bytes) -> str:
    return hashlib.sha256(value).hexdigest()[:32]


def audit_rows(result: CommandResult, record: str, stored_at: datetime.datetime) -> list[AuditRow]:
    target = result.target if isinstance(result.target, str) else ",".join(result.target)
    row = AuditRow(
        record_id=record,
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
        truncated=result.truncated,
        source=result.source,
        issued_at=result.issued_at or _EPOCH,
        stored_at=stored_at,
    )
    if not result.minions:
        return [row]
    return [
        dataclasses.replace(
            row, minion=minion, output=json.dumps({"ok": ret.ok, "output": ret.output}, default=str)
        )
        for minion, ret in sorted(result.minions.items())
    ]


def forgery_row(value: bytes, stored_at: datetime.datetime) -> AuditRow:
    """A record that claims to be a result but is not signed by the control service: evidence."""
    return AuditRow(
        record_id=record_id(value),
        command_id=uuid.UUID(claimed_id(value)),
        stage="forgery",
        idc="",
        minion="",
        operator="",
        module="",
        target="",
        args="",
        master="",
        status="forged",
        reason="unsigned",
        detail="not signed by the control service: kept as evidence, not as a result",
        output=value[:_EVIDENCE_BYTES].decode(errors="replace"),
        duration_ms=0.0,
        truncated=len(value) > _EVIDENCE_BYTES,
        source="",
        issued_at=_EPOCH,
        stored_at=stored_at,
    )


class AuditFeed:
    """The sink's reader of `ops.results`: records to audit rows, checked with the control service's
    public key (read at the first record: in embedded mode the control plane creates it after the
    sink has started)."""

    def __init__(self, control_public_key: Path) -> None:
        self._key_file = control_public_key
        self._key: Ed25519PublicKey | None = None
        self._reported: set[str] = set()

    def __call__(self, value: bytes | None, headers: Headers) -> list[AuditRow]:
        stored_at = datetime.datetime.now(datetime.UTC)
        if self._key is None:
            self._key = load_verify_key(self._key_file)
        value = value or b""  # a NULL value is a record like any other: unsigned
        try:
            result = read_result(value, headers, self._key)
        except UnreadableResult as error:
            if error.why == "unsigned":
                metrics.AUDIT_RECORDS.labels("forgery").inc()
                return [forgery_row(value, stored_at)]
            metrics.AUDIT_RECORDS.labels(error.why).inc()
            if error.why not in self._reported:
                self._reported.add(error.why)
                log.warning("skipped a record of the results topic (%s); more are only counted", error.why)
            return []
        metrics.AUDIT_RECORDS.labels("result").inc()
        return audit_rows(result, record_id(value), stored_at)
