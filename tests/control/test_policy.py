"""The RBAC policy file: validation at load, and what a role allows."""

from __future__ import annotations

import datetime
import uuid
from pathlib import Path

import pytest

from control.policy import DEFAULT_POLICY, load_policy
from masters.protocol import Command, CommandRejected

POLICY = """
roles:
  web_ops: {modules: [ping, service], idcs: [bj], targets: ["web*", "G@role:web"]}
  observer: {modules: [ping, grains], idcs: ["*"], targets: ["*"]}
operators:
  alice: [web_ops]
  bob: [observer]
"""


def command(operator: str, module: str, idc: list[str], target: str | list[str]) -> Command:
    now = datetime.datetime.now(datetime.UTC)
    return Command(
        command_id=uuid.uuid4(),
        operator=operator,
        idc=idc,
        target=target,
        module=module,
        issued_at=now,
        expires_at=now + datetime.timedelta(minutes=1),
    )


@pytest.fixture
def policy_file(tmp_path: Path) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY)
    return path


def test_the_shipped_policy_loads() -> None:
    assert "demo" in load_policy(DEFAULT_POLICY).operators


@pytest.mark.parametrize(
    ("operator", "module", "idc", "target"),
    [
        ("alice", "service", ["bj"], "web1"),
        ("alice", "ping", ["bj"], ["web1", "web2"]),
        ("alice", "ping", ["bj"], "G@role:web"),
        ("bob", "grains", ["bj", "sh"], "*"),
    ],
)
def test_allowed(policy_file: Path, operator: str, module: str, idc: list[str], target: str) -> None:
    load_policy(policy_file).check(command(operator, module, idc, target))


@pytest.mark.parametrize(
    ("operator", "module", "idc", "target", "reason"),
    [
        ("alice", "state_apply", ["bj"], "web1", "forbidden_module"),
        ("bob", "service", ["bj"], "web1", "forbidden_module"),
        ("nobody", "ping", ["bj"], "web1", "forbidden_module"),
        ("alice", "ping", ["bj", "sh"], "web1", "forbidden_idc"),
        ("alice", "ping", ["bj"], "db1", "forbidden_target"),
        ("alice", "ping", ["bj"], "*", "forbidden_target"),
        ("alice", "ping", ["bj"], ["web1", "db1"], "forbidden_target"),
    ],
)
def test_denied(
    policy_file: Path, operator: str, module: str, idc: list[str], target: str, reason: str
) -> None:
    with pytest.raises(CommandRejected) as error:
        load_policy(policy_file).check(command(operator, module, idc, target))
    assert error.value.reason == reason


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "roles: {a: {modules: [ping], idcs: [bj], targets: ['*']}}\noperators: {x: [b]}",
            "unknown role 'b'",
        ),
        ("roles: {a: {modules: [rm_rf], idcs: [bj], targets: ['*']}}\noperators: {}", "matches no module"),
        ("roles: {a: {modules: [], idcs: [bj], targets: ['*']}}\noperators: {}", "roles.a.modules"),
        ("roles: [", "not YAML"),
        ("operators: {}", "roles: Field required"),
    ],
)
def test_invalid_policies_fail_at_load_with_one_clear_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=message) as error:
        load_policy(path)
    assert str(path) in str(error.value) and "\n" not in str(error.value)
