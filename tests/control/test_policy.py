"""The RBAC policy file: validation at load, and what a role allows."""

from __future__ import annotations

import datetime
import uuid
from pathlib import Path

import pytest

from control.policy import DEFAULT_POLICY, PolicyError, contains, grant, load_policy
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


def test_the_shipped_policy_loads_and_grants_no_one_anything() -> None:
    assert load_policy(DEFAULT_POLICY).operators == {}


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


@pytest.mark.parametrize(
    ("pattern", "target"),
    [
        ("*", "*"),
        ("*", "G@role:web"),
        ("web*", "web1"),
        ("web*", "web*"),
        ("web*", "web-1*"),
        ("web*", "web-??"),
        ("web*", "web[0-9]"),
        ("web-??", "web-01"),  # a literal host is inside whatever pattern matches it
        ("[!v]*", "web1"),
        ("web1", "web1"),
        ("G@role:web", "G@role:web"),
    ],
)
def test_a_pattern_contains_a_target_when_every_host_it_can_match_is_inside(
    pattern: str, target: str
) -> None:
    assert contains(pattern, target)


@pytest.mark.parametrize(
    ("pattern", "target"),
    [
        ("web-??", "web-**"),  # issue row 6: web-** matches web-abc, which web-?? does not
        ("[!v]*", "*"),  # issue row 6: * matches vault1
        ("web-??", "web-?"),
        ("web*", "*"),
        ("web*", "we*"),
        ("web*", "[w]eb1"),
        ("web*", "G@role:web"),
        ("web1", "web1*"),
        ("web1", "web?"),
        ("web*x", "web*x"),  # not a prefix pattern: containment of globs is not shown
        ("G@role:web", "web1"),
        ("G@role:web", "G@role:*"),
        ("db*", "web1"),
    ],
)
def test_a_pattern_does_not_contain_a_target_it_cannot_be_shown_to_contain(pattern: str, target: str) -> None:
    assert not contains(pattern, target)


def test_globs_a_role_cannot_contain_are_forbidden_targets(tmp_path: Path) -> None:
    """Issue row 6: patterns were compared as strings, so `web-**` passed a role of `web-??`."""
    path = tmp_path / "policy.yaml"
    path.write_text(
        "roles:\n"
        "  pairs: {modules: [ping], idcs: [bj], targets: ['web-??']}\n"
        "  not_vault: {modules: [ping], idcs: [bj], targets: ['[!v]*']}\n"
        "operators: {carol: [pairs], dave: [not_vault]}\n"
    )
    policy = load_policy(path)
    for operator, target in (("carol", "web-**"), ("dave", "*"), ("carol", ["web-01", "web-*"])):
        with pytest.raises(CommandRejected) as error:
            policy.check(command(operator, "ping", ["bj"], target))
        assert error.value.reason == "forbidden_target"
    policy.check(command("carol", "ping", ["bj"], ["web-01", "web-02"]))
    policy.check(command("dave", "ping", ["bj"], "web1"))


def test_granting_roles_keeps_the_opening_comment_and_the_other_operators(policy_file: Path) -> None:
    policy_file.write_text("# ours: keep this\n# and this\n" + POLICY)
    assert grant(policy_file, "carol", ["observer"]) == ["observer"]
    assert grant(policy_file, "alice", ["observer", "web_ops"]) == ["web_ops", "observer"]
    policy = load_policy(policy_file)
    assert policy.operators == {"alice": ["web_ops", "observer"], "bob": ["observer"], "carol": ["observer"]}
    assert policy_file.read_text().startswith("# ours: keep this\n# and this\nroles:")
    policy.check(command("carol", "ping", ["sh"], "*"))  # allowed: raises nothing


def test_granting_a_role_the_policy_lacks_is_one_clear_error_and_changes_nothing(policy_file: Path) -> None:
    with pytest.raises(PolicyError, match="has no role 'admin'; its roles: web_ops, observer"):
        grant(policy_file, "carol", ["admin"])
    assert policy_file.read_text() == POLICY
