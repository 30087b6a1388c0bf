"""Executors on real Salt: masterless Caller on this machine, and LocalClient through a salt-master."""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from pathlib import Path

import pytest

from control.pki import Pki
from masters.executors import CallerExecutor, Expired, LocalClientExecutor
from masters.master import ALLOWLIST_FILE, load_allowed
from masters.modules import salt_call
from masters.protocol import MasterReply
from tests.masters.conftest import MINION_ID, ServeMaster, call, control_client, request
from tests.masters.salt_cluster import MINIONS, salt_cluster, wait_for_minions

ALLOWED = load_allowed(ALLOWLIST_FILE, "bj")
LATER = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)


@pytest.mark.parametrize("target", ["*", MINION_ID, [MINION_ID, "elsewhere"], "G@kernel:Linux"])
def test_masterless_targets_this_machine(caller: CallerExecutor, target: str | list[str]) -> None:
    returns = caller.run(salt_call("ping", {}, ALLOWED), target, timeout=10, not_after=LATER)
    assert list(returns) == [MINION_ID] and returns[MINION_ID].ok


@pytest.mark.parametrize("target", ["no-such-host", ["a", "b"], "G@kernel:Plan9"])
def test_masterless_skips_what_does_not_match(caller: CallerExecutor, target: str | list[str]) -> None:
    assert caller.run(salt_call("ping", {}, ALLOWED), target, timeout=10, not_after=LATER) == {}


@pytest.mark.parametrize(
    ("module", "args", "ok"),
    [
        ("disk_usage", {}, True),
        ("grains", {"keys": ["kernel"]}, True),
        ("pkg_version", {"name": "bash"}, True),
        ("cmd_allowlisted", {"name": "uptime"}, True),
        ("state_apply", {"state": "omstream_probe"}, True),
        # no systemd on this machine: Salt's service module cannot restart anything, and says so
        ("service", {"name": "omstream-none", "action": "restart"}, False),
    ],
)
def test_masterless_modules(caller: CallerExecutor, module: str, args: dict[str, object], ok: bool) -> None:
    returns = caller.run(salt_call(module, args, ALLOWED), "*", timeout=30, not_after=LATER)
    assert returns[MINION_ID].ok is ok, returns


@pytest.fixture(scope="module")
def salt_master(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalClientExecutor]:
    with salt_cluster(tmp_path_factory.mktemp("salt")) as master_config:
        executor = LocalClientExecutor(master_config)
        wait_for_minions(
            lambda: executor.run(salt_call("ping", {}, ALLOWED), "*", timeout=3, not_after=LATER)
        )
        yield executor


def test_a_master_runs_a_module_across_both_minions_of_a_salt_master(
    pki: Pki, salt_master: LocalClientExecutor, serve_master: ServeMaster
) -> None:
    client = control_client(pki, serve_master(salt_master))
    reply = MasterReply.model_validate_json(call(client, request("disk_usage")))
    assert reply.status == "succeeded" and sorted(reply.minions) == list(MINIONS)
    assert all(isinstance(ret.output, dict) and "/" in str(ret.output) for ret in reply.minions.values())

    only_web = MasterReply.model_validate_json(call(client, request("ping", target="G@role:web")))
    assert list(only_web.minions) == ["minion-a"]
    listed = MasterReply.model_validate_json(call(client, request("ping", target=list(MINIONS))))
    assert sorted(listed.minions) == list(MINIONS)


def test_local_client_reports_a_failing_command_per_minion(salt_master: LocalClientExecutor) -> None:
    returns = salt_master.run(
        salt_call("service", {"name": "omstream-none", "action": "restart"}, ALLOWED), "*", 10, LATER
    )
    assert sorted(returns) == list(MINIONS) and not any(ret.ok for ret in returns.values())


def test_a_salt_master_that_never_becomes_ready_is_a_clear_error(tmp_path: Path) -> None:
    config = tmp_path / "master"
    config.write_text(f"root_dir: {tmp_path}\ncachedir: {tmp_path / 'cache'}\n")
    with pytest.raises(TimeoutError, match="health/ready"):
        LocalClientExecutor(config, ready_timeout=0.5)


def test_a_call_whose_command_expired_while_it_waited_is_not_started(caller: CallerExecutor) -> None:
    with pytest.raises(Expired, match="before Salt could start it"):
        caller.run(
            salt_call("ping", {}, ALLOWED), "*", timeout=10, not_after=datetime.datetime.now(datetime.UTC)
        )
