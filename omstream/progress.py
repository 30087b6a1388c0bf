"""Progress bars for long work (generate, replay): tqdm on stderr."""

from __future__ import annotations

import sys
from typing import Any

from tqdm import tqdm


class ProgressBar(tqdm):
    def update_to(self, done: int) -> None:
        """Set absolute progress (callbacks report totals so far, not increments)."""
        self.update(done - self.n)


def progress_bar(total: int, unit: str, desc: str, **options: Any) -> ProgressBar:
    scale = {"unit_scale": True, "unit_divisor": 1024} if unit == "B" else {"unit_scale": True}
    return ProgressBar(
        total=total,
        unit=unit,
        desc=desc,
        file=sys.stderr,
        mininterval=0.5,
        leave=True,
        **scale,
        **options,
    )
