"""Issue 21, point 7: the control service sends a busy master the commands queued for it in one call,
and the master claims them with one fsync; each request still gets its own truthful reply."""

from __future__ import annotations

import asyncio
import datetime
import json
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from control.dispatch import Attempt, Idc
from control.pki import CONTROL_CLIENT, Pki
from masters.executors import CallerExecutor
from masters.memory import ClaimLedger
from masters.protocol import MAX_BATCH, MasterReply, decode_batch, encode_batch
from masters.tls import client_context
from tests.masters.conftest import ServeMaster, control_client, request
from tests.masters.test_transport import CountingExecutor

EXPIRES = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)


@pytest.fixture
def fsyncs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Every fsync the ledger makes, by file descriptor."""
    import masters.memory

    made: list[int] = []
    real = masters.memory.os.fsync

    def counting(fd: int) -> None:
        made.append(fd)
        real(fd)

    monkeypatch.setattr(masters.memory.os, "fsync", counting)
    return made


def test_a_batch_of_claims_shares_one_fsync(tmp_path: Path, fsyncs: list[int]) -> None:
    ledger = ClaimLedger(tmp_path, "bj-1")
    fsyncs.clear()  # the start's rewrite
    ids = [f"command-{n}" for n in range(10)]
    assert ledger.claim_many([(command_id, EXPIRES) for command_id in ids]) == [None] * 10
    assert len(fsyncs) == 1
    again = ledger.claim_many([(ids[0], EXPIRES), ("command-new", EXPIRES), ("command-new", EXPIRES)])
    assert again[0] is not None and again[0].master == "bj-1"  # claimed before: not to run again
    assert again[1] is None and again[2] is not None  # the same id twice: its first claims it
    assert len(fsyncs) == 2
    ledger.claim_many([(ids[1], EXPIRES)])  # nothing new to make durable
    assert len(fsyncs) == 2
    ledger.close()


def execute(pki: Pki, address: Any, batch: str) -> str:
    from control.dispatch import connect

    connection = connect(address, client_context(pki.files(CONTROL_CLIENT)), 2, 10)
    try:
        return str(connection.root.execute(batch))
    finally:
        connection.close()


def test_each_request_of_a_batch_gets_its_own_reply_in_order(
    pki: Pki, caller: CallerExecutor, serve_master: ServeMaster
) -> None:
    executor = CountingExecutor(caller)
    address = serve_master(executor)
    hostname = request("cmd_allowlisted", args={"name": "hostname"})
    batch = [hostname, "{not json", hostname, request(idc=["sh"]), request("ping")]
    replies = [
        MasterReply.model_validate_json(reply)
        for reply in decode_batch(execute(pki, address, encode_batch(batch)), 5)
    ]
    assert [(reply.status, reply.reason) for reply in replies] == [
        ("succeeded", ""),
        ("refused", "malformed"),
        ("succeeded", ""),  # the same command again: the first run's reply, not a second run
        ("refused", "wrong_idc"),
        ("succeeded", ""),
    ]
    assert replies[0] == replies[2] and executor.runs == 2
    again = MasterReply.model_validate_json(
        decode_batch(execute(pki, address, encode_batch([hostname])), 1)[0]
    )
    assert again == replies[0] and executor.runs == 2


@pytest.mark.parametrize(
    ("batch", "reason"),
    [
        ("[]", "malformed"),
        ("{}", "malformed"),
        (json.dumps([["nested"]]), "malformed"),
        (encode_batch(["{}"] * (MAX_BATCH + 1)), "malformed"),
        ("[" + '"' + "x" * (2 * 66 * 1024 * MAX_BATCH) + '"]', "too_large"),
    ],
    ids=["empty", "object", "nested", "too-many", "too-large"],
)
def test_a_batch_that_is_none_is_refused_whole(
    pki: Pki, caller: CallerExecutor, serve_master: ServeMaster, batch: str, reason: str
) -> None:
    executor = CountingExecutor(caller)
    reply = MasterReply.model_validate_json(execute(pki, serve_master(executor), batch))
    assert (reply.status, reply.reason) == ("refused", reason)
    assert executor.runs == 0


def test_commands_queued_for_a_busy_master_go_in_one_call(
    pki: Pki, caller: CallerExecutor, serve_master: ServeMaster
) -> None:
    executor = CountingExecutor(caller)
    client = control_client(pki, serve_master(executor))
    calls: list[int] = []
    send = client.call

    def counted(requests: Sequence[tuple[str, Attempt]]) -> list[str | None]:
        calls.append(len(requests))
        return send(requests)

    client.call = counted  # type: ignore[method-assign]
    requests = [request("ping") for _ in range(20)]

    async def dispatch_all(idc: Idc) -> list[MasterReply]:
        ids = [json.loads(r)["command"]["command_id"] for r in requests]
        return list(
            await asyncio.gather(*(idc.dispatch(i, r, Attempt()) for i, r in zip(ids, requests, strict=True)))
        )

    with ThreadPoolExecutor(2) as pool:
        replies = asyncio.run(dispatch_all(Idc("bj", [client], 64, pool, calls_per_master=1)))
    client.close()
    assert [reply.status for reply in replies] == ["succeeded"] * 20 and executor.runs == 20
    assert sum(calls) == 20 and len(calls) <= 3, calls  # the first alone, the rest while it ran
