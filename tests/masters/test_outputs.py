"""Issue 21, row 4: outputs nested ~1,000 levels deep, or from ~7,000 minions (over 1 MiB), were lost
(no result at all, or one never published). Bounded, every result parses for every reader and fits
its topic whatever the number of minions, with a marker saying what was cut or left out."""

from __future__ import annotations

import json
from typing import Any

import pytest

from control.results import MAX_RESULT_BYTES, CommandResult
from masters.protocol import MAX_OUTPUT_DEPTH, MasterReply, MinionReturn, bounded_outputs


def nested(depth: int) -> list[Any]:
    outer: list[Any] = []
    inner = outer
    for _ in range(depth - 1):
        inner.append([])
        inner = inner[0]
    return outer


def depth_of(value: Any) -> int:
    depth = 0
    while isinstance(value, (list, dict)) and value:
        value = value[0] if isinstance(value, list) else next(iter(value.values()))
        depth += 1
    return depth


def result_json(minions: dict[str, MinionReturn]) -> str:
    """What the control service publishes for them, having bounded them as the master did."""
    kept, truncated, omitted = bounded_outputs(minions)
    reply = MasterReply.model_validate_json(
        MasterReply(
            status="succeeded", master="bj-1", minions=kept, truncated=truncated, omitted=omitted
        ).model_dump_json()
    )
    again, cut_again, more = bounded_outputs(reply.minions)
    assert (again, cut_again, more) == (reply.minions, False, 0)  # bounding twice changes nothing
    result = CommandResult(
        command_id="7f8b8f66-2f3c-4f7e-9d4a-0c1d2e3f4a5b",
        stage="result",
        status=reply.status,
        idc="bj",
        minions=reply.minions,
        truncated=reply.truncated,
        omitted=reply.omitted,
        args={"name": "x" * 60_000},  # the most a command's args can carry
    )
    return result.model_dump_json()


@pytest.mark.parametrize("depth", [250, 1_000, 100_000])
def test_an_output_nested_deeper_than_any_parser_takes_is_cut_with_a_marker(depth: int) -> None:
    published = result_json({"minion-1": MinionReturn(ok=True, output={"deep": nested(depth)})})
    result = CommandResult.model_validate_json(published)  # what the sink and the client read
    output = result.minions["minion-1"].output
    assert result.truncated and depth_of(output) == MAX_OUTPUT_DEPTH + 1
    marker = output["deep"]
    for _ in range(MAX_OUTPUT_DEPTH - 1):
        marker = marker[0]
    assert marker["truncated"] is True and marker["head"].startswith("[[[[")


@pytest.mark.parametrize("minions", [7_000, 50_000])
def test_the_returns_of_thousands_of_minions_fit_the_topic_with_the_failed_ones_first(minions: int) -> None:
    returns = {
        f"web-{number:05d}.idc-bj.example.com": MinionReturn(
            ok=number % 1_000 != 7, output={"version": "1.2.3", "log": "y" * 200}
        )
        for number in range(minions)
    }
    published = result_json(returns)
    assert len(published.encode()) <= MAX_RESULT_BYTES
    result = CommandResult.model_validate_json(published)
    failed = sorted(name for name, ret in returns.items() if not ret.ok)
    assert sorted(name for name, ret in result.minions.items() if not ret.ok) == failed
    assert result.truncated and result.omitted == minions - len(result.minions) > 0


def test_small_outputs_are_kept_as_they_are() -> None:
    returns = {"a": MinionReturn(ok=True, output={"x": [1, 2.5, None, "s"], "t": (1, 2)})}
    kept, truncated, omitted = bounded_outputs(returns)
    assert (truncated, omitted) == (False, 0)
    assert json.loads(json.dumps(kept["a"].output)) == {"x": [1, 2.5, None, "s"], "t": [1, 2]}
