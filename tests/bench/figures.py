"""What a case reports, and the percentiles most figures are: standard library only, so
the helper processes (:mod:`tests.bench.loadgen`) can use them without the harness."""

from __future__ import annotations

import math
from typing import Any

Figures = dict[str, Any]


def percentiles(samples_s: list[float], prefix: str = "") -> Figures:
    """p50/p90/p99/max in milliseconds (nearest rank)."""
    ordered = sorted(samples_s)

    def rank(p: float) -> float:
        return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)] * 1000

    return {f"{prefix}n": len(ordered), f"{prefix}p50_ms": round(rank(50), 3),
            f"{prefix}p90_ms": round(rank(90), 3), f"{prefix}p99_ms": round(rank(99), 3),
            f"{prefix}max_ms": round(ordered[-1] * 1000, 3)}
