"""Executors run a module's Salt call on the minions a target names, and report each minion's return.

`CallerExecutor` is masterless Salt in-process (this machine is the one minion; the embedded default);
`LocalClientExecutor` publishes through a salt-master to many minions and streams their returns.
"""

from __future__ import annotations

import datetime
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import salt._logging
import salt.client
import salt.config
import yaml

from masters.modules import SaltCall
from masters.protocol import MinionReturn, Target, salt_target, target_type

_STATES_DIR = Path(__file__).parent / "salt" / "states"


class Executor(Protocol):
    def run(
        self, call: SaltCall, target: Target, timeout: float, not_after: datetime.datetime
    ) -> dict[str, MinionReturn]:
        """Each matched minion's return; raises Expired, having run nothing, when Salt could not start
        the call before `not_after` (the command's expiry)."""
        ...


class SaltNotReady(TimeoutError):
    """The salt-master did not become ready in time."""


class Expired(RuntimeError):
    """The command expired before Salt could start it (it waited for the executor): it did not run."""


def _start_before(not_after: datetime.datetime) -> None:
    if datetime.datetime.now(datetime.UTC) >= not_after:
        raise Expired(f"the command expired at {not_after.isoformat()} before Salt could start it")


# Functions whose whole answer is "did it work": False is a failure (service.status's False is an answer).
_TRUE_OR_FAILED = frozenset({"test.ping", "service.restart"})


def succeeded(call: SaltCall, output: Any) -> bool:
    """Salt reports many failures as data, not exceptions: read them per function."""
    if call.function == "cmd.run_all":
        return isinstance(output, dict) and output.get("retcode") == 0
    if call.function == "state.apply":
        return isinstance(output, dict) and all(
            isinstance(state, dict) and state.get("result") is not False for state in output.values()
        )
    if call.function in _TRUE_OR_FAILED:
        return output is True
    # a function Salt could not load answers with a string like "'disk.usage' is not available."
    return not (isinstance(output, str) and output.endswith("is not available."))


def write_minion_config(directory: Path, minion_id: str) -> Path:
    """A masterless minion config rooted in `directory`, serving the project's states."""
    root = directory.resolve()
    config = {
        "id": minion_id,
        "file_client": "local",
        "root_dir": str(root),
        "pki_dir": str(root / "pki"),
        "cachedir": str(root / "cache"),
        "sock_dir": str(root / "sock"),
        "log_file": str(root / "minion.log"),
        "file_roots": {"base": [str(_STATES_DIR.resolve())]},
    }
    root.mkdir(parents=True, exist_ok=True)
    path = root / "minion"
    path.write_text(yaml.safe_dump(config))
    return path


def _release_salt_log_buffer() -> None:
    # Importing Salt installs a root handler that buffers every warning until the process exits; a
    # long-running master would grow it forever. Hand its records to our logging and remove it.
    salt._logging.shutdown_temp_handler()


class CallerExecutor:
    """Masterless Salt (`salt.client.Caller`); calls are serialised because a Caller is not thread-safe."""

    def __init__(self, minion_config: Path) -> None:
        _release_salt_log_buffer()
        self._caller = salt.client.Caller(mopts=salt.config.minion_config(str(minion_config)))
        self._minion_id = str(self._caller.opts["id"])
        self._lock = threading.Lock()

    def run(
        self, call: SaltCall, target: Target, timeout: float, not_after: datetime.datetime
    ) -> dict[str, MinionReturn]:
        with self._lock:  # calls queue here: the expiry is checked once this one's turn has come
            _start_before(not_after)
            if not self._caller.cmd(f"match.{target_type(target)}", salt_target(target)):
                return {}
            try:
                output = self._caller.cmd(call.function, *call.args, **call.kwargs)
            except Exception as error:  # Salt raises its own types for a failing function: a result
                return {self._minion_id: MinionReturn(ok=False, output=f"{type(error).__name__}: {error}")}
        return {self._minion_id: MinionReturn(ok=succeeded(call, output), output=output)}


class LocalClientExecutor:
    """Salt `LocalClient` against a salt-master, created once the master reports itself ready."""

    def __init__(self, master_config: Path, ready_timeout: float = 60.0) -> None:
        _release_salt_log_buffer()
        opts = salt.config.master_config(str(master_config))
        _wait_for(Path(opts["cachedir"]) / "health" / "ready", ready_timeout)
        self._client = salt.client.LocalClient(mopts=opts)

    def run(
        self, call: SaltCall, target: Target, timeout: float, not_after: datetime.datetime
    ) -> dict[str, MinionReturn]:
        _start_before(not_after)
        returns: dict[str, MinionReturn] = {}
        for minion, ret in self._returns(call, target, timeout):
            output = ret.get("ret")
            ok = ret.get("retcode", 0) == 0 and succeeded(call, output)
            returns[minion] = MinionReturn(ok=ok, output=output)
        return returns

    def _returns(
        self, call: SaltCall, target: Target, timeout: float
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        stream = self._client.cmd_iter(
            salt_target(target),
            call.function,
            arg=list(call.args),
            kwarg=call.kwargs,
            tgt_type=target_type(target),
            timeout=timeout,
        )
        for chunk in stream:
            yield from chunk.items()


def _wait_for(path: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise SaltNotReady(f"the salt-master did not become ready ({path} missing after {timeout:.0f} s)")
        time.sleep(0.1)
