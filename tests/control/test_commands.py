"""Signed commands: the canonical form, Ed25519 signatures, the operator registry."""

from __future__ import annotations

import datetime
import uuid
from pathlib import Path

import pytest
from pydantic import ValidationError

from masters.keys import generate_key, load_private_key, load_registry, sign, verify
from masters.protocol import Command, CommandRejected
from tests.masters.conftest import OTHER_OPERATOR, TAMPERINGS

NOW = datetime.datetime(2026, 11, 24, 8, 0, tzinfo=datetime.UTC)


def command(**changes: object) -> Command:
    fields: dict[str, object] = {
        "command_id": uuid.UUID(int=1),
        "operator": "alice",
        "idc": ["bj", "sh"],
        "target": "web*",
        "module": "ping",
        "args": {},
        "issued_at": NOW,
        "expires_at": NOW + datetime.timedelta(minutes=5),
    }
    return Command.model_validate(fields | changes)


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path]:
    keys_dir, registry = tmp_path / "keys", tmp_path / "operators.json"
    for operator in ("alice", "mallory", OTHER_OPERATOR):
        generate_key(keys_dir, registry, operator)
    return keys_dir, registry


def test_canonical_form_ignores_time_zone_notation_and_signature() -> None:
    shanghai = datetime.timezone(datetime.timedelta(hours=8))
    same_instant = command(issued_at=NOW.astimezone(shanghai), signature="x")
    assert same_instant.canonical() == command().canonical()
    assert command(idc="bj").idc == ["bj"]
    assert command(args={"name": "nginx"}).canonical() != command().canonical()


def test_a_signed_command_verifies_and_survives_the_wire(keys: tuple[Path, Path]) -> None:
    keys_dir, registry = keys
    signed = sign(command(), load_private_key(keys_dir, "alice"))
    verify(Command.model_validate_json(signed.model_dump_json()), load_registry(registry))


@pytest.mark.parametrize(
    ("tamper", "reason"),
    [
        (lambda c: c.model_copy(update={"signature": ""}), "unsigned"),
        (lambda c: c.model_copy(update={"module": "service"}), "bad_signature"),
        (lambda c: c.model_copy(update={"signature": "not base64!"}), "bad_signature"),
        (lambda c: c.model_copy(update={"operator": "nobody"}), "unknown_operator"),
        (lambda c: c.model_copy(update={"operator": "mallory"}), "bad_signature"),
    ],
)
def test_tampered_or_unsigned_commands_are_rejected(
    keys: tuple[Path, Path], tamper: object, reason: str
) -> None:
    keys_dir, registry = keys
    signed = sign(command(), load_private_key(keys_dir, "alice"))
    with pytest.raises(CommandRejected) as error:
        verify(tamper(signed), load_registry(registry))  # type: ignore[operator]
    assert error.value.reason == reason


@pytest.mark.parametrize("field", sorted(TAMPERINGS))
def test_a_change_to_any_signed_field_voids_the_signature(keys: tuple[Path, Path], field: str) -> None:
    keys_dir, registry = keys
    signed = sign(command(), load_private_key(keys_dir, "alice"))
    tampered = Command.model_validate(signed.model_dump() | {field: TAMPERINGS[field]})
    with pytest.raises(CommandRejected) as error:
        verify(tampered, load_registry(registry))
    assert error.value.reason == "bad_signature"


def test_keygen_refuses_to_overwrite_unless_rotating(keys: tuple[Path, Path]) -> None:
    keys_dir, registry = keys
    old = load_registry(registry)["alice"]
    with pytest.raises(FileExistsError):
        generate_key(keys_dir, registry, "alice")
    generate_key(keys_dir, registry, "alice", replace=True)
    signed = sign(command(), load_private_key(keys_dir, "alice"))
    with pytest.raises(CommandRejected):
        verify(signed, {"alice": old})
    assert (keys_dir / "alice.key").stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize(
    "changes",
    [{"idc": []}, {"idc": ["bj", "bj"]}, {"target": ""}, {"command_id": "nope"}, {"operator": "a b"}],
)
def test_malformed_commands_fail_validation(changes: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        command(**changes)
