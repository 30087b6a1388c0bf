"""Admission of commands by the control service: every rejection names its reason."""

from __future__ import annotations

import datetime
import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from control.policy import DEFAULT_POLICY, load_policy
from control.service import Admission, rejected_result
from masters.keys import generate_key, load_private_key, load_registry, sign
from masters.protocol import Command, CommandRejected

NOW = datetime.datetime.now(datetime.UTC)


@pytest.fixture
def admission(tmp_path: Path) -> Admission:
    generate_key(tmp_path, tmp_path / "operators.json", "demo")
    return Admission(
        policy=load_policy(DEFAULT_POLICY),
        operators=load_registry(tmp_path / "operators.json"),
        idcs={"bj", "sh"},
        max_lifetime=datetime.timedelta(hours=1),
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


def reason_for(admission: Admission, raw: bytes) -> str:
    with pytest.raises(CommandRejected) as error:
        admission.admit(raw, NOW)
    return error.value.reason


def test_a_valid_command_is_admitted_once(admission: Admission, signer: Any) -> None:
    raw = signer()
    assert admission.admit(raw, NOW).module == "ping"
    assert reason_for(admission, raw) == "replayed"


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


def test_malformed_input_becomes_a_result_with_the_id_when_it_has_one(admission: Admission) -> None:
    for raw in (
        b"not json",
        b"[]",
        b'{"command_id": "x"}',
        json.dumps({"command_id": str(uuid.UUID(int=5))}).encode(),
    ):
        with pytest.raises(CommandRejected) as error:
            admission.admit(raw, NOW)
        result = rejected_result(raw, error.value)
        assert (result.status, result.reason) == ("rejected", "malformed")
        uuid.UUID(result.command_id)
    assert result.command_id == str(uuid.UUID(int=5))
