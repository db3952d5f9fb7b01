"""``python -m tests.bench.run --output FILE``: run the benchmark cases, print, save JSON.

Every case runs against one real ``cspd`` (a subprocess in temporary XDG dirs,
unix socket only).  Figures are for reading, not asserting: see TESTING.md; a
case's targets are printed beside its figures, with MISS where one is missed.

Programs run compiled, as ``make install`` leaves them: when the environment
says not to write bytecode (``PYTHONDONTWRITEBYTECODE``), the run compiles
csp's sources and what its programs import once, into a cache of its own
(``PYTHONPYCACHEPREFIX``), instead of timing Python compiling them at every start.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .gateway import BenchGateway
from .ptyrun import REPO
from .registry import CASE_MODULES, CASES, Context, Figures


def load_cases() -> None:
    """Import every case module (see registry.CASE_MODULES); a missing one is skipped."""
    for module in CASE_MODULES:
        try:
            importlib.import_module(f"{__package__}.{module}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__package__}.{module}":
                raise


def compiled_programs() -> str | None:
    """Make the programs the run starts import compiled code (see the docstring).

    Returns the bytecode cache used, or None when bytecode is written as usual.
    """
    if not os.environ.get("PYTHONDONTWRITEBYTECODE"):
        return None
    cache = Path(tempfile.gettempdir()) / f"csp-bench-pycache-{os.getuid()}"
    os.environ.pop("PYTHONDONTWRITEBYTECODE")
    os.environ["PYTHONPYCACHEPREFIX"] = str(cache)
    # csp's own sources all; of the libraries, what the programs import (compiling every
    # installed package, mypy's included, would take minutes on a fresh machine)
    subprocess.run([sys.executable, "-m", "compileall", "-q", "-j", "0",
                    *(str(REPO / d) for d in ("cspd", "sidecar", "cli", "tests/bench"))],
                   check=False, stdout=subprocess.DEVNULL)
    warm = (f"import importlib\nfor m in {WARM_MODULES!r}:\n"
            "    try: importlib.import_module(m)\n    except Exception: pass\n")
    subprocess.run([sys.executable, "-c", warm], check=False, cwd=REPO,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return str(cache)


# imported once before the run so that their bytecode is cached (see compiled_programs)
WARM_MODULES = ("cspd.main", "cspd.app", "csp_sidecar.main", "csp_sidecar.sidecar",
                "csp_cli.main", "csp_cli.entry", "aiohttp.web", "uvloop", "dbus_fast.aio",
                "pyte", "tests.bench.loadgen", "tests.bench.floor_server",
                "tests.bench.subscribers")


def machine() -> dict[str, Any]:
    model = ""
    try:
        with open("/proc/cpuinfo") as fh:
            model = next((line.split(":", 1)[1].strip() for line in fh
                          if line.startswith("model name")), "")
    except OSError:
        pass
    return {"python": platform.python_version(), "kernel": platform.release(),
            "cpus": os.cpu_count(), "cpu_model": model,
            "memory_mib": os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") >> 20}

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


def verdicts(results: dict[str, Figures]) -> dict[str, list[dict[str, Any]]]:
    return {name: [t.verdict(figures) for t in CASES[name].targets]
            for name, figures in results.items() if CASES[name].targets}


def print_table(results: dict[str, Figures]) -> None:
    width = max((len(k) for figures in results.values() for k in figures), default=10)
    misses = []
    for name, figures in results.items():
        print(f"\n{name}: {CASES[name].description}")
        targets = {t.figure: t for t in CASES[name].targets}
        for key, value in figures.items():
            line = f"  {key:<{width}}  {value}"
            if (target := targets.get(key)) is not None:
                met = target.met(value)
                mark = "ok" if met else ("MISS" if met is False else "n/a")
                line = f"{line:<{width + 16}}  target {target.describe()}  {mark}"
                if met is False:
                    misses.append(f"{name}.{key} = {value} (target {target.describe()})")
            print(line)
    print(f"\n{len(misses)} target(s) missed" + "".join(f"\n  MISS {m}" for m in misses))


async def run_cases(names: list[str], scale: float) -> dict[str, Figures]:
    async with BenchGateway(BENCH_CONFIG) as gw:
        ctx = Context(gateway=gw, started=gw.sample(), scale=scale)
        try:
            for name in names:
                t0 = time.perf_counter()
                print(f"running {name} ...", file=sys.stderr, flush=True)
                figures = await CASES[name].run(ctx)
                figures["case_wall_s"] = round(time.perf_counter() - t0, 2)
                ctx.results[name] = figures
        finally:
            for cleanup in reversed(ctx.cleanups):
                await cleanup()
        return ctx.results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    load_cases()
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
    pycache = compiled_programs()
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    results = asyncio.run(run_cases(names, 0.1 if args.quick else 1.0))
    wall = round(time.perf_counter() - t0, 1)
    print_table(results)
    print(f"whole run: {wall} s (target < 300 s); load average before "
          f"{load_before[0]:.2f}, after {os.getloadavg()[0]:.2f}")
    if args.output:
        doc: dict[str, Any] = {
            "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "machine": machine(),
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
            "wall_s": wall,
            "bytecode_cache": pycache,
            "gateway_config": BENCH_CONFIG,
            "quick": args.quick,
            "cases": results,
            "targets": verdicts(results),
        }
        args.output.write_text(json.dumps(doc, indent=2) + "\n")
        print(f"\nfigures written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
