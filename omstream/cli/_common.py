"""What every command shares: one-line errors, the invocation's settings, SIGTERM as Ctrl-C, metrics."""

from __future__ import annotations

import functools
import json
import signal
from collections.abc import Callable
from typing import Any, Concatenate, ParamSpec, TypeVar

import click
from pydantic import ValidationError

import clickhouse
from omstream.settings import Settings
from stream.kafka import BrokerUnreachable

F = TypeVar("F", bound=Callable[..., Any])
P = ParamSpec("P")
R = TypeVar("R")

_EXPECTED_ERRORS = (
    BrokerUnreachable,
    clickhouse.ClickHouseUnavailable,
    FileNotFoundError,
    TimeoutError,
    RuntimeError,
    ValueError,
)


def one_line_errors(command: F) -> F:
    """Bad input or an unreachable server ends the command with one clear line, not a traceback."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except ValidationError as error:
            raise click.ClickException(f"invalid settings: {error.errors()[0]['msg']}") from error
        except _EXPECTED_ERRORS as error:
            message = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise click.ClickException(message) from error

    return wrapper  # type: ignore[return-value]


def pass_settings(command: Callable[Concatenate[Settings, P], R]) -> Callable[P, R]:
    """Hand the command the invocation's `Settings` as its first argument.

    They are built once per invocation, on first use (so `--help` reads no environment), and kept as the
    root context's object, where a caller (a test) may also put its own."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        root = click.get_current_context().find_root()
        if root.obj is None:
            root.obj = Settings()
        return command(root.obj, *args, **kwargs)

    return wrapper


def terminate_as_interrupt() -> None:
    # SIGTERM unwinds like Ctrl-C, so `finally` blocks stop the processes this command started.
    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def result_line(result: Any) -> str:
    """One control-plane result (`CommandResult`) as `ops run` and `demo` print it."""
    where = f"{result.idc} via {result.master or '-'}" if result.stage == "result" else "control"
    line = f"{result.command_id} {result.module or '?'} {where}: {result.status}"
    line += f" ({result.reason}: {result.detail})" if result.reason else ""
    for minion, ret in sorted(result.minions.items()):
        line += f"\n  {minion}: {'ok' if ret.ok else 'FAILED'} {json.dumps(ret.output, default=str)[:120]}"
    return line


def serve_metrics(service: str, settings: Settings) -> None:
    from prometheus_client import start_http_server

    server, _ = start_http_server(settings.metrics_port, addr=settings.metrics_host)
    click.echo(f"{service}, metrics on {settings.metrics_host}:{server.server_port}", err=True)
