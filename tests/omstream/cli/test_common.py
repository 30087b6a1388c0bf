"""What every command shares: one-line errors for what a user can act on, tracebacks for bugs, and one
`Settings` per invocation."""

from __future__ import annotations

import importlib
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from omstream.cli import main
from omstream.cli._common import EXPECTED_ERRORS, one_line_errors, pass_settings
from omstream.settings import Settings
from stream.sources.taobao import UnreadableFile

PROJECT = ("stream", "clickhouse", "report", "control", "masters", "omstream")


@pytest.mark.parametrize("name", EXPECTED_ERRORS)
def test_every_expected_error_is_an_exception_class_of_the_project(name: str) -> None:
    module, _, attribute = name.rpartition(".")
    error = getattr(importlib.import_module(module), attribute)
    assert issubclass(error, Exception)
    assert error.__module__ == module and module.split(".")[0] in PROJECT


def failing(error: Exception) -> click.Command:
    @click.command()
    @one_line_errors
    def command() -> None:
        raise error

    return command


def test_what_a_user_can_act_on_is_one_line() -> None:
    done = CliRunner().invoke(failing(UnreadableFile("data.csv has no event times\nmore")))
    assert (done.exit_code, done.output) == (1, "Error: data.csv has no event times\n")


@pytest.mark.parametrize("bug", [ValueError("a bug"), RuntimeError("a bug"), FileNotFoundError("a bug")])
def test_a_bug_keeps_its_traceback(bug: Exception) -> None:
    done = CliRunner().invoke(failing(bug))
    assert done.exception is bug and done.exc_info is not None


def test_the_settings_are_built_once_per_invocation_and_handed_down(tmp_path: Path) -> None:
    seen: list[Settings] = []

    @click.group()
    def group() -> None:
        pass

    @group.command()
    @pass_settings
    def first(settings: Settings) -> None:
        seen.append(settings)
        click.get_current_context().invoke(second)

    @group.command()
    @pass_settings
    def second(settings: Settings) -> None:
        seen.append(settings)

    assert CliRunner().invoke(group, ["first"]).exit_code == 0
    assert len(seen) == 2 and seen[0] is seen[1]


def test_a_caller_may_hand_the_commands_its_own_settings(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path / "state", kafka_bootstrap="", clickhouse_dsn="")
    done = CliRunner().invoke(main, ["ops", "keygen", "--operator", "alice"], obj=settings)
    assert done.exit_code == 0, done.output
    assert (settings.keys_dir / "alice.key").is_file()
