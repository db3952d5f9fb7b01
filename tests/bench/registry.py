"""Named benchmark cases.

A case is an async function taking the shared :class:`Context` and returning a flat
dict of figures (name -> number or text); units go in the figure's name
(``_ms``, ``_s``, ``_kib``, ``per_s``).  Register it with ``@case("name")``;
``python -m tests.bench.run --only name`` runs just that one.  Cases run in
registration order against one gateway, so later ones see it after load.

A case may name :class:`Target` s: the run prints each beside its figure, says
MISS where it is missed, and writes the verdicts to the results file.  Where a
target cannot be met on the machine for a reason outside csp, the case returns
a figure ``why_missed`` saying so (and where the profile that shows it is).

Registration point: the modules in :data:`CASE_MODULES` are imported by the
run, in that order; a module registers its cases with ``@case(...)`` at import.
``client_cases`` (cspctl, the sidecar's start-up, RSS and turn ends) may be
missing while it is written: a module that is not there is skipped.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from .figures import Figures
from .gateway import BenchGateway
from .procstat import ProcSample

# imported by the run in this order (each registers its cases); see the docstring
CASE_MODULES = ("cases", "sidecar_cases", "scale_cases", "client_cases")


@dataclass
class Context:
    gateway: BenchGateway
    started: ProcSample  # the gateway just after it began serving
    scale: float = 1.0  # <1 for a quick run (fewer iterations)
    results: dict[str, Figures] = field(default_factory=dict)
    # shared by several cases (the scale cases' fleet of sidecars): name -> object
    shared: dict[str, Any] = field(default_factory=dict)
    # run once every case is done, last registered first (stop what a case left running)
    cleanups: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    def n(self, count: int) -> int:
        return max(1, int(count * self.scale))

    @property
    def quick(self) -> bool:
        return self.scale < 1.0


@dataclass(frozen=True)
class Target:
    """What a figure should be: ``figure <= limit`` ("max") or ``>= limit`` ("min")."""

    figure: str
    limit: float
    kind: Literal["max", "min"] = "max"

    def met(self, value: Any) -> bool | None:
        """None when the figure is missing or not a number (the case could not tell)."""
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None
        return value <= self.limit if self.kind == "max" else value >= self.limit

    def describe(self) -> str:
        return f"{'<=' if self.kind == 'max' else '>='} {self.limit:g}"

    def verdict(self, figures: Figures) -> dict[str, Any]:
        met = self.met(figures.get(self.figure))
        return {"figure": self.figure, "value": figures.get(self.figure),
                "target": self.describe(), "met": met}


CaseFn = Callable[[Context], Awaitable[Figures]]


@dataclass(frozen=True)
class Case:
    name: str
    description: str
    run: CaseFn
    targets: tuple[Target, ...] = ()


CASES: dict[str, Case] = {}


def case(name: str, description: str,
         targets: tuple[Target, ...] = ()) -> Callable[[CaseFn], CaseFn]:
    def register(fn: CaseFn) -> CaseFn:
        if name in CASES:
            raise ValueError(f"benchmark case {name!r} registered twice")
        CASES[name] = Case(name, description, fn, targets)
        return fn
    return register

