"""Fixtures shared by the suite: real Tansu brokers, settings on a temporary state dir, data sets."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from omstream.embedded import tansu_broker, topic_partitions
from omstream.settings import Settings
from stream.kafka import ensure_topics
from tests.expected import TAOBAO_WINDOW
from tests.pipeline import ordered_sample

SHARED = Path(__file__).resolve().parents[2] / "shared"
TAOBAO_SAMPLE = SHARED / "datasets" / "taobao_userbehavior_sample.csv"


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
    with tansu_broker(settings.state_dir) as address:
        asyncio.run(ensure_topics(address, topic_partitions(settings)))
        yield address
