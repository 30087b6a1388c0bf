"""The control service against a master that is too slow: the IDC's result is a `timeout`, in time."""

from __future__ import annotations

import asyncio
import datetime
import time
from concurrent.futures import ThreadPoolExecutor

from control.client import OpsClient, new_command, publish
from control.dispatch import Idc
from control.pki import Pki
from control.policy import DEFAULT_POLICY, load_policy
from control.results import CommandResult
from control.service import Admission, ControlService
from masters.executors import CallerExecutor
from masters.keys import generate_key, load_registry
from masters.modules import SaltCall
from masters.protocol import MinionReturn, Target
from omstream.services import control_config, ops_topics
from omstream.settings import Settings
from tests.masters.conftest import ServeMaster, control_client


class SlowExecutor:
    """The real masterless executor, after a pause longer than the control service waits."""

    def __init__(self, inner: CallerExecutor, pause: float) -> None:
        self.inner, self.pause = inner, pause

    def run(self, call: SaltCall, target: Target, timeout: float) -> dict[str, MinionReturn]:
        time.sleep(self.pause)
        return self.inner.run(call, target, timeout)


def test_a_master_slower_than_the_timeout_gives_a_timeout_result(
    bootstrap: str, settings: Settings, pki: Pki, caller: CallerExecutor, serve_master: ServeMaster
) -> None:
    settings = settings.model_copy(update={"ops_timeout_s": 0.5})
    generate_key(settings.keys_dir, settings.operators_file, "demo")
    admission = Admission(
        load_policy(DEFAULT_POLICY),
        load_registry(settings.operators_file),
        {"bj"},
        datetime.timedelta(hours=1),
    )
    slow = control_client(pki, serve_master(SlowExecutor(caller, pause=2.0)))

    async def scenario() -> list[CommandResult]:
        with ThreadPoolExecutor(4) as pool:
            config = control_config(
                settings.model_copy(update={"masters": {"bj": ["bj-1@127.0.0.1:1"]}}), bootstrap
            )
            service = ControlService(config, admission, {"bj": Idc("bj", [slow], 4, pool)})
            running = asyncio.create_task(service.run())
            command = new_command(settings.keys_dir, "demo", ["bj"], "*", "ping", {})
            results: list[CommandResult] = []
            try:
                async with OpsClient(bootstrap, ops_topics(settings)) as follower:
                    await publish(
                        bootstrap, settings.ops_commands_topic, [command.model_dump_json().encode()]
                    )
                    async with asyncio.timeout(30):
                        async for result in follower.results():
                            results.append(result)
                            if result.stage == "result":
                                return results
            finally:
                running.cancel()
        return results

    results = asyncio.run(scenario())
    assert [(r.stage, r.status) for r in results] == [("received", "accepted"), ("result", "timeout")]
    assert results[1].reason == "timeout" and 500 <= results[1].duration_ms < 1500
