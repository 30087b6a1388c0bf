"""`omstream bench stream`: its rate arithmetic, and one tiny run end to end."""

import pytest

from omstream.bench.throughput import (
    PipelineRun,
    PipelineSample,
    Sample,
    first_to_last_rate,
    run_query_bench,
    run_stream_bench,
)
from omstream.settings import Settings


def test_rate_leaves_out_the_events_counted_by_the_first_counting_sample() -> None:
    samples = [Sample(0.0, 0), Sample(1.0, 0), Sample(2.0, 100), Sample(3.0, 300), Sample(4.0, 500)]
    assert first_to_last_rate(samples) == 200.0


def test_rate_when_one_sample_counted_everything_uses_the_interval_before_it() -> None:
    assert first_to_last_rate([Sample(0.0, 0), Sample(1.0, 0), Sample(1.5, 100)]) == 200.0


def test_rate_when_the_first_sample_counted_most_events_includes_them() -> None:
    # leaving out 990 of 1,000 events would time only the last ten
    assert first_to_last_rate([Sample(0.0, 0), Sample(1.0, 0), Sample(2.0, 990), Sample(3.0, 1000)]) == 500.0


def test_end_to_end_runs_from_the_worker_s_first_event_until_everything_is_stored() -> None:
    samples = [
        PipelineSample(0.0, worker=0, sink=0, rss_mb=0),
        PipelineSample(5.0, worker=100, sink=200, rss_mb=90),
        PipelineSample(6.0, worker=300, sink=400, rss_mb=95),
        PipelineSample(7.0, worker=400, sink=400, rss_mb=99),
        PipelineSample(9.0, worker=400, sink=400, rss_mb=99),  # all stored, windows included
    ]
    run = PipelineRun(samples, events=400, worker_rss_mb=99, sink_rss_mb=300)
    assert run.rates() == {"events_per_s": 75, "worker_events_per_s": 150, "sink_events_per_s": 200}
    assert run.start_to_first_event_s() == 5.0


@pytest.mark.integration
@pytest.mark.timeout(150)  # five peers and the pipeline, each starting up
def test_a_tiny_stream_bench_reports_every_figure(settings: Settings) -> None:
    result = run_stream_bench(settings, 5_000)
    batched, single = result["batched"], result["single"]
    assert {"events_per_s", "baseline_events_per_s", "ratio"} <= set(batched)
    assert {"events_per_s", "peer_loop_events_per_s", "peer_events_per_s", "ratio_to_peer"} <= set(single)
    for peer in ("pathway", "bytewax"):
        assert {f"{peer}_events_per_s", f"ratio_to_{peer}"} <= set(single)
    figures = [*batched.values(), *single.values(), result["start_to_first_event_s"], result["peak_rss_mb"]]
    assert all(figure > 0 for figure in figures), result
    assert batched["events"] == single["events"] == 5_000


@pytest.mark.integration
@pytest.mark.timeout(120)
def test_a_tiny_query_bench_reports_the_sinks_rate_under_each_load(settings: Settings) -> None:
    result = run_query_bench(settings, 20_000, repeats=1)
    assert set(result["sink_events_per_s"]) == {"alone", "dashboards", "back_to_back"}
    assert all(rate > 0 for rate in result["sink_events_per_s"].values()), result
    assert set(result["cost_percent"]) == {"dashboards", "back_to_back"}
