"""The peers of `omstream bench stream`: Pathway's and Bytewax's hourly PV/UV, and the bench's check
that each is exact."""

import importlib.util
from pathlib import Path

import orjson
import pytest

from omstream.bench import BenchFailed
from omstream.bench.throughput import (
    PV_UV_PEERS,
    PeerResult,
    Sample,
    _bench_settings,
    _produce,
    _run_peer,
    _time_ordered_csv,
    check_hourly,
    expected_hourly,
    first_to_last_rate,
)
from omstream.embedded.stack import broker
from omstream.settings import Settings
from stream.sources.taobao import TAOBAO_START

HOUR = 3600
START = TAOBAO_START  # an hour start: the Taobao window is whole days
# (user_id, ts): three events in the first hour (two users), two in the third, out of order
EVENTS = [(1, START + 10), (7, START + 2 * HOUR + 5), (2, START + 3599), (1, START + 2 * HOUR), (1, START)]
HOURLY = {START: (3, 2), START + 2 * HOUR: (2, 2)}


def peer_result(hourly: dict[int, tuple[int, int]]) -> PeerResult:
    return PeerResult([Sample(0.0, 0), Sample(1.0, 5)], hourly)


def test_exact_hourly_pv_uv_pass_the_check() -> None:
    check_hourly("pathway", peer_result(HOURLY), HOURLY, messages=5)


def test_a_peer_whose_pv_miss_an_event_fails_the_check() -> None:
    with pytest.raises(BenchFailed, match="add up to 4 events, not 5"):
        check_hourly("bytewax", peer_result({START: (2, 2), START + 2 * HOUR: (2, 2)}), HOURLY, messages=5)


def test_a_peer_with_a_wrong_uv_or_a_shifted_hour_fails_the_check() -> None:
    with pytest.raises(BenchFailed, match="differ in 1 hours"):
        check_hourly("pathway", peer_result({START: (3, 3), START + 2 * HOUR: (2, 2)}), HOURLY, messages=5)
    shifted = {START + HOUR: (3, 2), START + 2 * HOUR: (2, 2)}
    with pytest.raises(BenchFailed, match="differ in 2 hours"):
        check_hourly("bytewax", peer_result(shifted), HOURLY, messages=5)


def test_the_expected_hourly_pv_uv_count_the_events_a_replay_sends(
    tmp_path: Path, settings: Settings
) -> None:
    rows = [f"{user},5,6,pv,{ts}" for user, ts in EVENTS]
    (tmp_path / "events.csv").write_text("\n".join([*rows, "garbage", f"3,5,6,pv,{START - 86_400 * 400}"]))
    assert expected_hourly(tmp_path / "events.csv", settings) == HOURLY


def test_pathway_counts_views_and_distinct_users_per_event_time_hour() -> None:
    import pathway as pw

    from omstream.bench.pathway_peer import EventTime, hourly_pv_uv

    events = pw.debug.table_from_rows(EventTime, EVENTS)
    windows = pw.debug.table_to_pandas(hourly_pv_uv(events))
    assert {row.hour: (row.pv, row.uv) for row in windows.itertuples()} == HOURLY


def test_bytewax_counts_views_and_distinct_users_per_event_time_hour() -> None:
    from bytewax.connectors.kafka import KafkaSourceMessage
    from bytewax.testing import TestingSource, run_main

    from omstream.bench._peer import Samples
    from omstream.bench.bytewax_peer import hourly_flow, hourly_of

    messages = [KafkaSourceMessage(None, orjson.dumps({"user_id": u, "ts": ts})) for u, ts in EVENTS]
    samples, results, late = Samples(len(EVENTS)), list[object](), list[object]()
    run_main(hourly_flow(TestingSource(messages), samples, results, late))
    assert (hourly_of(results), late, samples.seen) == (HOURLY, [], 5)


@pytest.mark.integration
@pytest.mark.timeout(120)
def test_each_peer_reads_every_message_on_the_broker_and_counts_it_exactly(
    tmp_path: Path, settings: Settings
) -> None:
    bench = _bench_settings(settings, tmp_path / "bench")
    bench.state_dir.mkdir(parents=True)
    data = _time_ordered_csv(tmp_path, "events", 20_000)
    with broker(bench) as bootstrap:
        emitted = _produce(data, bench, bootstrap, pack=1)
        results = {name: _run_peer(bench, bootstrap, name, emitted.messages) for name in PV_UV_PEERS}
    expected = expected_hourly(data, bench)
    for name, result in results.items():
        check_hourly(name, result, expected, emitted.messages)
        assert first_to_last_rate(result.samples) > 0
    assert sum(pv for pv, _ in expected.values()) == emitted.messages == 20_000


def test_a_peer_that_is_not_installed_fails_the_bench_with_how_to_install_it(
    tmp_path: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    installed = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name: None if name == "bytewax" else installed(name)
    )
    with pytest.raises(BenchFailed, match=r"Bytewax: pip install -e '\.\[bench\]'"):
        _run_peer(_bench_settings(settings, tmp_path), "127.0.0.1:1", "bytewax", messages=1)
