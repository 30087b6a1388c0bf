"""Admission of commands by the control service: every rejection names its reason."""

from __future__ import annotations

import datetime
import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from control.admitted import AdmittedCommands
from control.policy import Policy, Role
from control.results import NIL_ID
from control.service import Admission, rejected_result
from masters.keys import generate_key, load_private_key, load_registry, sign
from masters.protocol import Command, CommandRejected, parse_command

NOW = datetime.datetime.now(datetime.UTC)
HOUR = datetime.timedelta(hours=1)


@pytest.fixture
def admission(tmp_path: Path) -> Admission:
    generate_key(tmp_path, tmp_path / "operators.json", "demo")
    admin = Role(modules=["*"], idcs=["*"], targets=["*"])
    return Admission(
        policy=Policy(roles={"admin": admin}, operators={"demo": ["admin"]}),
        operators=load_registry(tmp_path / "operators.json"),
        idcs={"bj", "sh"},
        max_lifetime=HOUR,
        admitted=AdmittedCommands(keep_after_expiry=HOUR),
    )


@pytest.fixture
def signer(tmp_path: Path, admission: Admission) -> Any:
    key = load_private_key(tmp_path, "demo")

    def signed(**changes: Any) -> bytes:
        fields = {
            "command_id": str(uuid.uuid4()),
            "operator": "demo",
            "idc": ["bj", "sh"],
            "target": "*",
            "module": "ping",
            "args": {},
            "issued_at": NOW.isoformat(),
            "expires_at": (NOW + datetime.timedelta(minutes=5)).isoformat(),
        }
        return sign(Command.model_validate(fields | changes), key).model_dump_json().encode()

    return signed


def admit(admission: Admission, raw: bytes, offset: int = 0) -> None:
    """What the control service does with the record at `offset` of ops.commands."""
    command = parse_command(raw)
    admission.verify(command)
    admission.admit(command, 0, offset, NOW)


def reason_for(admission: Admission, raw: bytes, offset: int = 0) -> str:
    with pytest.raises(CommandRejected) as error:
        admit(admission, raw, offset)
    return error.value.reason


def test_a_valid_command_is_admitted_once(admission: Admission, signer: Any) -> None:
    raw = signer()
    admit(admission, raw)
    assert reason_for(admission, raw, offset=1) == "replayed"


def test_a_replay_with_the_id_written_otherwise_is_a_replay(admission: Admission, signer: Any) -> None:
    raw = signer()
    admit(admission, raw)
    body = json.loads(raw)
    for spelling in (
        uuid.UUID(body["command_id"]).hex,
        body["command_id"].upper(),
        f"{{{body['command_id']}}}",
    ):
        assert reason_for(admission, json.dumps(body | {"command_id": spelling}).encode(), 1) == "replayed"


def test_a_rejected_command_is_not_remembered_as_admitted(admission: Admission, signer: Any) -> None:
    forbidden = signer(idc=["gz"])
    assert reason_for(admission, forbidden) == "unknown_idc"
    assert admission.admitted.get(parse_command(forbidden)) is None


def test_unsigned_and_forged(admission: Admission, signer: Any) -> None:
    body = json.loads(signer())
    assert reason_for(admission, json.dumps(body | {"signature": ""}).encode()) == "unsigned"
    assert reason_for(admission, json.dumps(body | {"target": "db*"}).encode()) == "bad_signature"


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"expires_at": (NOW - datetime.timedelta(seconds=1)).isoformat()}, "expired"),
        ({"issued_at": (NOW + datetime.timedelta(minutes=4)).isoformat()}, "not_yet_valid"),
        ({"expires_at": (NOW + datetime.timedelta(hours=2)).isoformat()}, "lifetime_too_long"),
        ({"module": "reboot"}, "unknown_module"),
        ({"module": "service", "args": {"name": "x; rm -rf /"}}, "bad_args"),
        ({"module": "ping", "args": {"shell": "id"}}, "bad_args"),
        ({"idc": ["bj", "gz"]}, "unknown_idc"),
    ],
)
def test_rejections(admission: Admission, signer: Any, changes: dict[str, Any], reason: str) -> None:
    assert reason_for(admission, signer(**changes)) == reason


def test_malformed_input_becomes_a_rejection_of_its_record_naming_no_one(admission: Admission) -> None:
    """Issue 21, row 2: garbage containing a victim's id and name was rejected under that id and name."""
    for raw in (
        b"not json",
        b"[]",
        b'{"command_id": "x"}',
        json.dumps({"command_id": str(uuid.UUID(int=5)), "operator": "alice", "module": "service"}).encode(),
    ):
        with pytest.raises(CommandRejected) as error:
            admit(admission, raw)
        result = rejected_result(error.value, None, "ops.commands/0/7")
        assert (result.status, result.reason, result.source) == ("rejected", "malformed", "ops.commands/0/7")
        assert (result.command_id, result.operator, result.module) == (NIL_ID, "", "")


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        ({"junk": "x" * 1_200_000}, "too_large"),
        ({"args": {"deep": json.loads("[" * 200 + "]" * 200)}}, "malformed"),
        ({"args": "[" * 30_000 + "]" * 30_000}, "malformed"),
    ],
    ids=["1.2 MB", "200 deep", "30,000 deep"],
)
def test_oversized_or_deeply_nested_commands_are_rejected_naming_no_one(
    admission: Admission, signer: Any, extra: dict[str, Any], reason: str
) -> None:
    body = json.loads(signer())
    raw = json.dumps(body | extra).encode()
    if isinstance(extra.get("args"), str):  # nesting written out, beyond what json.dumps would nest
        raw = raw.replace(json.dumps(extra["args"]).encode(), extra["args"].encode())
    with pytest.raises(CommandRejected) as error:
        admit(admission, raw)
    result = rejected_result(error.value, None, "ops.commands/0/7")
    assert (result.reason, result.command_id, result.operator, result.module) == (reason, NIL_ID, "", "")
    assert len(result.model_dump_json()) < 2_000  # nothing of the junk is carried on
