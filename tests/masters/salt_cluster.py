"""A real salt-master with two minions on loopback, for tests: started as processes, stopped by PID."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import yaml

from omstream.embedded.stack import free_port
from omstream.embedded.supervisor import stop_process

MINIONS = ("minion-a", "minion-b")


def stop_processes(processes: list[subprocess.Popen[bytes]], grace: float = 10.0) -> None:
    """`stop_process` for several at once: all get SIGTERM first, so their shutdowns overlap."""
    for process in processes:
        if process.poll() is None:
            process.terminate()
    deadline = time.monotonic() + grace
    for process in processes:
        stop_process(process, grace=max(0.0, deadline - time.monotonic()))


def _salt_command(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


def _write(path: Path, config: dict[str, object]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config))
    return path


def _roots(root: Path) -> dict[str, object]:
    return {
        "root_dir": str(root),
        "pki_dir": str(root / "pki"),
        "cachedir": str(root / "cache"),
        "sock_dir": str(root / "sock"),
        "log_file": str(root / "salt.log"),
    }


@contextlib.contextmanager
def salt_cluster(directory: Path) -> Iterator[Path]:
    """Yields the master's config file; the minions are accepted automatically (loopback only)."""
    publish_port, return_port = free_port(), free_port()
    master_config = _write(
        directory / "master" / "master",
        {
            "interface": "127.0.0.1",
            "publish_port": publish_port,
            "ret_port": return_port,
            "auto_accept": True,
            "worker_threads": 2,
            **_roots(directory / "master-root"),
        },
    )
    configs = [
        _write(
            directory / minion / "minion",
            {
                "id": minion,
                "master": "127.0.0.1",
                "master_port": return_port,
                "publish_port": publish_port,
                "grains": {"role": "web" if minion.endswith("a") else "db"},
                # retry authentication quickly: the master accepts the key on first contact
                "acceptance_wait_time": 1,
                "random_reauth_delay": 0,
                **_roots(directory / f"{minion}-root"),
            },
        )
        for minion in MINIONS
    ]
    processes: list[subprocess.Popen[bytes]] = []
    with contextlib.ExitStack() as stack:
        stack.callback(stop_processes, processes, 20.0)  # minions take ~5 s to stop: overlap them
        for command, config in [("salt-master", master_config), *(("salt-minion", c) for c in configs)]:
            log = stack.enter_context((config.parent / "out.log").open("ab"))
            processes.append(
                subprocess.Popen(
                    [_salt_command(command), "-c", str(config.parent), "-l", "warning"],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                )
            )
        yield master_config


def wait_for_minions(run_ping: object, timeout: float = 60.0) -> None:
    """Until both minions answer a ping (they connect a few seconds after the master is ready)."""
    deadline = time.monotonic() + timeout
    while True:
        answered = run_ping()  # type: ignore[operator]
        if set(answered) >= set(MINIONS):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {sorted(answered)} of the minions answered within {timeout:.0f} s")
        time.sleep(0.5)
