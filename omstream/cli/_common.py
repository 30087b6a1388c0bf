"""What every command shares: one-line errors, the invocation's settings, SIGTERM as Ctrl-C, metrics."""

from __future__ import annotations

import functools
import json
import logging
import signal
import sys
from collections.abc import Callable
from typing import Any, Concatenate, ParamSpec, TypeVar

import click
from pydantic import ValidationError

from omstream.settings import Settings

F = TypeVar("F", bound=Callable[..., Any])
P = ParamSpec("P")
R = TypeVar("R")

# What a user can act on, each the project's own exception: any other one is a bug and keeps its traceback.
# Named, not imported: a command imports only what it runs (a module that was not imported raised nothing).
EXPECTED_ERRORS = (
    # the stream and its input
    "stream.kafka.BrokerUnreachable",
    "stream.kafka.BadBootstrap",
    "stream.processed.NotStored",
    "stream.sources.taobao.UnreadableFile",
    # ClickHouse and the report
    "clickhouse._client.ClickHouseUnavailable",
    "report._build.NoSchema",
    "report._build.BadRange",
    # the control plane and the masters
    "control.policy.PolicyError",
    "control.dispatch.BadMasterAddress",
    "control.client.BadArgument",
    "masters.keys.MissingKeyFile",
    "masters.keys.KeyExists",
    "masters.keys.BadKey",
    "masters.executors.SaltNotReady",
    # omstream's own
    "omstream.settings.SettingsConflict",
    "omstream.embedded.supervisor.AlreadyRunning",
    "omstream.embedded.supervisor.ServiceFailed",
    "omstream.embedded.supervisor.NotReady",
    "omstream.embedded.demo.NotDelivered",
    "omstream.embedded.accept.OutsideAcceptedRange",
    "omstream.bench.BenchFailed",
)


def expected(error: Exception) -> bool:
    """Whether `error` is one of EXPECTED_ERRORS (of the modules imported so far)."""
    loaded = (name.rpartition(".") for name in EXPECTED_ERRORS)
    classes = tuple(getattr(sys.modules[module], name) for module, _, name in loaded if module in sys.modules)
    return isinstance(error, classes)


def one_line_errors(command: F) -> F:
    """Bad input or an unreachable server ends the command with one clear line, not a traceback."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except ValidationError as error:
            what = "settings" if error.title == Settings.__name__ else error.title
            raise click.ClickException(f"invalid {what}: {error.errors()[0]['msg']}") from error
        except Exception as error:
            if not expected(error):
                raise
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


def configure_logging(level: str) -> None:
    """Log at `level` to stderr, with the time, for a service that Faust does not set up."""
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(message)s", force=True)


def terminate_as_interrupt() -> None:
    # SIGTERM unwinds like Ctrl-C, so `finally` blocks stop the processes this command started.
    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def result_line(result: Any) -> str:
    """One control-plane result (`CommandResult`) as `ops run` and `demo` print it."""
    where = f"{result.idc} via {result.master or '-'}" if result.stage == "result" else "control"
    line = f"{result.command_id} {result.module or '?'} {where}: "
    line += outcome(result.status, result.reason, result.detail)
    for minion, ret in sorted(result.minions.items()):
        line += f"\n  {minion}: {'ok' if ret.ok else 'FAILED'} {json.dumps(ret.output, default=str)[:120]}"
    return line


def outcome(status: str, reason: str, detail: str) -> str:
    """`failed (salt_error: …)`; a reason that only repeats the status is said once: `failed: …`."""
    if not reason:
        return status
    return f"{status}: {detail}" if reason == status else f"{status} ({reason}: {detail})"


def plural(count: int, noun: str) -> str:
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def serve_metrics(service: str, settings: Settings) -> None:
    from prometheus_client import start_http_server

    server, _ = start_http_server(settings.metrics_port, addr=settings.metrics_host)
    click.echo(f"{service}, metrics on {settings.metrics_host}:{server.server_port}", err=True)
