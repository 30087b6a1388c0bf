"""Fixtures shared by the suite: real Tansu brokers, settings on a temporary state dir, data sets.

A test that starts a broker is an integration test: `-m "not integration"` is the fast suite, and a
broker started for a test without the mark fails it (`broker_for_test`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from omstream.embedded.stack import tansu_broker, topic_partitions
from omstream.settings import Settings
from stream.kafka import ensure_topics
from tests.expected import TAOBAO_WINDOW
from tests.pipeline import ordered_sample

SHARED = Path(__file__).resolve().parents[2] / "shared"
TAOBAO_SAMPLE = SHARED / "datasets" / "taobao_userbehavior_sample.csv"


_running: pytest.Item | None = None  # the test being set up or run


def pytest_runtest_setup(item: pytest.Item) -> None:
    global _running
    _running = item


@contextlib.contextmanager
def broker_for_test(state_dir: Path) -> Iterator[str]:
    """A real Tansu broker, stopped (by PID) at the end of the block; only for integration tests."""
    if _running is not None and _running.get_closest_marker("integration") is None:
        pytest.fail(f"{_running.nodeid} starts a broker: mark it @pytest.mark.integration", pytrace=False)
    with tansu_broker(state_dir) as address:
        yield address


@pytest.fixture
def taobao_sample() -> Path:
    if not TAOBAO_SAMPLE.is_file():
        pytest.skip("../shared/datasets is not present")
    return TAOBAO_SAMPLE


@pytest.fixture(scope="session")
def ordered_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """30,000 generated events with dirty rows, in time order (shared by the pipeline tests)."""
    return ordered_sample(tmp_path_factory.mktemp("data"))


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings on a temporary state dir, accepting the Taobao window (the generated data's)."""
    return Settings(state_dir=tmp_path / "state", kafka_bootstrap="", clickhouse_dsn="").with_window(
        TAOBAO_WINDOW
    )


@pytest.fixture
def bootstrap(settings: Settings) -> Iterator[str]:
    """A real Tansu broker with the project's topics, stopped (by PID) after the test."""
    with broker_for_test(settings.state_dir) as address:
        asyncio.run(ensure_topics(address, topic_partitions(settings)))
        yield address
