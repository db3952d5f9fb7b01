"""Named benchmark cases.

A case is an async function taking the shared :class:`Context` and returning a flat
dict of figures (name -> number or text); units go in the figure's name
(``_ms``, ``_s``, ``_kib``, ``per_s``).  Register it with ``@case("name")``;
``python -m tests.bench.run --only name`` runs just that one.  Cases run in
registration order against one gateway, so later ones see it after load.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from .gateway import BenchGateway
from .procstat import ProcSample

Figures = dict[str, Any]


@dataclass
class Context:
    gateway: BenchGateway
    started: ProcSample  # the gateway just after it began serving
    scale: float = 1.0  # <1 for a quick run (fewer iterations)
    results: dict[str, Figures] = field(default_factory=dict)

    def n(self, count: int) -> int:
        return max(1, int(count * self.scale))


CaseFn = Callable[[Context], Awaitable[Figures]]


@dataclass(frozen=True)
class Case:
    name: str
    description: str
    run: CaseFn


CASES: dict[str, Case] = {}


def case(name: str, description: str) -> Callable[[CaseFn], CaseFn]:
    def register(fn: CaseFn) -> CaseFn:
        if name in CASES:
            raise ValueError(f"benchmark case {name!r} registered twice")
        CASES[name] = Case(name, description, fn)
        return fn
    return register


def percentiles(samples_s: list[float], prefix: str = "") -> Figures:
    """p50/p90/p99/max in milliseconds (nearest rank)."""
    ordered = sorted(samples_s)

    def rank(p: float) -> float:
        return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)] * 1000

    return {f"{prefix}n": len(ordered), f"{prefix}p50_ms": round(rank(50), 3),
            f"{prefix}p90_ms": round(rank(90), 3), f"{prefix}p99_ms": round(rank(99), 3),
            f"{prefix}max_ms": round(ordered[-1] * 1000, 3)}
