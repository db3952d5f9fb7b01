"""``python -m tests.bench.run --output FILE``: run the benchmark cases, print, save JSON.

Every case runs against one real ``cspd`` (a subprocess in temporary XDG dirs,
unix socket only).  Figures are for reading, not asserting: see TESTING.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

from . import cases as _cases  # noqa: F401  (registers the gateway cases)
from . import sidecar_cases as _sidecar_cases  # noqa: F401  (and the sidecar's)
from .gateway import BenchGateway
from .registry import CASES, Context, Figures

# the benchmark measures the gateway, not the per-client rate limit
BENCH_CONFIG = {"rate_per_second": 1_000_000.0, "rate_burst": 1_000_000}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.run", description=__doc__)
    parser.add_argument("--output", type=Path, help="write all figures to this JSON file")
    parser.add_argument("--only", action="append", metavar="NAME", default=[],
                        help="run only this case (repeatable); see --list")
    parser.add_argument("--list", action="store_true", help="list the cases and exit")
    parser.add_argument("--quick", action="store_true",
                        help="a tenth of the iterations (a smoke run, not figures)")
    return parser.parse_args(argv)


def print_table(results: dict[str, Figures]) -> None:
    width = max((len(k) for figures in results.values() for k in figures), default=10)
    for name, figures in results.items():
        print(f"\n{name}: {CASES[name].description}")
        for key, value in figures.items():
            print(f"  {key:<{width}}  {value}")


async def run_cases(names: list[str], scale: float) -> dict[str, Figures]:
    async with BenchGateway(BENCH_CONFIG) as gw:
        ctx = Context(gateway=gw, started=gw.sample(), scale=scale)
        for name in names:
            t0 = time.perf_counter()
            print(f"running {name} ...", file=sys.stderr, flush=True)
            figures = await CASES[name].run(ctx)
            figures["case_wall_s"] = round(time.perf_counter() - t0, 2)
            ctx.results[name] = figures
        return ctx.results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.list:
        for c in CASES.values():
            print(f"{c.name:<16} {c.description}")
        return 0
    unknown = [n for n in args.only if n not in CASES]
    if unknown:
        print(f"unknown case(s): {', '.join(unknown)}; known: {', '.join(CASES)}",
              file=sys.stderr)
        return 2
    names = [n for n in CASES if not args.only or n in args.only]
    results = asyncio.run(run_cases(names, 0.1 if args.quick else 1.0))
    print_table(results)
    if args.output:
        doc: dict[str, Any] = {
            "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "machine": {"python": platform.python_version(), "kernel": platform.release(),
                        "cpus": os.cpu_count()},
            "gateway_config": BENCH_CONFIG,
            "quick": args.quick,
            "cases": results,
        }
        args.output.write_text(json.dumps(doc, indent=2) + "\n")
        print(f"\nfigures written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
