"""The baseline's per-metric medians, computed for every metric at once, are each metric's own."""

from __future__ import annotations

import numpy as np

from stream.alerts.baseline import row_medians


def test_each_rows_median_skips_nan_and_is_the_middle_or_the_mean_of_the_two() -> None:
    rng = np.random.default_rng(7)
    rows = rng.normal(size=(200, 21))
    rows[rng.random(rows.shape) < 0.3] = np.nan  # rows of every count of values, even and odd
    rows[0] = np.nan
    medians = row_medians(rows)
    assert np.isnan(medians[0])
    for row, median in zip(rows[1:], medians[1:], strict=True):
        values = sorted(row[~np.isnan(row)].tolist())
        half = len(values) // 2
        expected = values[half] if len(values) % 2 else (values[half - 1] + values[half]) / 2
        assert median == expected  # exactly: alerts must not depend on how the median was taken
    assert (
        row_medians(np.zeros((3, 0))).tolist() == [np.nan] * 3
        or np.isnan(row_medians(np.zeros((3, 0)))).all()
    )
