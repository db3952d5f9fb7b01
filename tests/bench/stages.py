"""Where one message's two milliseconds go: the stages of its path, timed in a pass of
its own with :mod:`tests.bench.stagehook.csp_bench_stages` loaded into the gateway
and the sidecar.

Each round gives CLOCK_MONOTONIC times for the POST (the bench), the stages the
hook notes in the gateway and the sidecar, and the paste read by the stand-in;
a segment is the time from one to the next, and its median over the rounds is
reported (``path_<segment>_p50_us``).  Medians of segments do not add up to the
median of the whole exactly, but near it.
"""

from __future__ import annotations

import os
import statistics
from pathlib import Path

from .figures import Figures
from .stagehook.csp_bench_stages import STAGES

HOOK_DIR = Path(__file__).with_name("stagehook")

# (figure name, from, to, what the segment holds); "post" and "paste" are the bench's
SEGMENTS: tuple[tuple[str, str, str, str], ...] = (
    ("post_to_gateway", "post", "gw_bytes",
     "the POST's write until the gateway reads it (it wakes)"),
    ("aiohttp", "gw_bytes", "gw_middleware",
     "aiohttp parses the request, starts its task and routes it"),
    ("gw_middlewares", "gw_middleware", "gw_handler", "csp's middlewares: Origin, token"),
    ("gw_checks", "gw_handler", "gw_store", "the JSON body, its checks, the addressing"),
    ("gw_commit", "gw_store", "gw_publish", "SQLite insert and commit (fsync later)"),
    ("frame_to_sidecar", "gw_publish", "sc_bytes",
     "the frame made and written; the sidecar wakes and reads it"),
    ("sc_parse", "sc_bytes", "sc_queued", "the sidecar parses the frame"),
    ("sc_queue", "sc_queued", "sc_facts", "queued, the decision begins"),
    ("sc_safety", "sc_facts", "sc_decided",
     "is typing safe: the terminal's foreground process, the screen, readiness"),
    ("sc_render", "sc_decided", "sc_journal", "the batch and its keystrokes"),
    ("sc_journal", "sc_journal", "sc_write", "journal appended before the paste"),
    ("pty_to_cli", "sc_write", "paste", "the PTY write; the CLI wakes and reads it"),
)
WAKES = ("post_to_gateway", "frame_to_sidecar", "pty_to_cli")

__all__ = ["SEGMENTS", "STAGES", "hook_env", "read_notes", "segments", "summary"]


def hook_env(out: Path, env: dict[str, str]) -> dict[str, str]:
    """``env`` with the hook loaded into every Python started with it, noting into ``out``."""
    path = [str(HOOK_DIR), *filter(None, [env.get("PYTHONPATH")])]
    return {**env, "PYTHONPATH": os.pathsep.join(path), "CSP_BENCH_STAGES": str(out)}


def read_notes(out: Path) -> list[tuple[int, str]]:
    notes: list[tuple[int, str]] = []
    for path in out.iterdir():
        for line in path.read_text().splitlines():
            stage, ns = line.split()
            notes.append((int(ns), stage))
    return sorted(notes)


def segments(rounds: list[tuple[int, int]], notes: list[tuple[int, str]]) -> Figures:
    """The median of each segment over ``rounds`` ((POST, paste) ns each); rounds in
    which a stage was not noted are left out."""
    found: dict[str, list[float]] = {name: [] for name, *_ in SEGMENTS}
    starts = [t0 for t0, _ in rounds] + [2**63]
    kept = 0
    for (t0, paste), end in zip(rounds, starts[1:], strict=False):
        at = _chain(t0, paste, [note for note in notes if t0 <= note[0] < end])
        if at is None:
            continue
        kept += 1
        for name, a, b, _ in SEGMENTS:
            found[name].append((at[b] - at[a]) / 1e3)
    figures: Figures = {"path_rounds": kept}
    if kept:
        figures.update({f"path_{name}_p50_us": round(statistics.median(found[name]), 1)
                        for name, *_ in SEGMENTS})
    return figures


def _chain(t0: int, paste: int, notes: list[tuple[int, str]]) -> dict[str, int] | None:
    """Each stage of one round at its first note after the stage before it (a ping the
    sidecar read before the gateway published is not the message's frame); None when
    one is missing."""
    at = {"post": t0}
    for _, before, stage, _ in SEGMENTS:
        if stage == "paste":
            at[stage] = paste
            continue
        found = next((ns for ns, s in notes if s == stage and ns >= at[before]), None)
        if found is None:
            return None
        at[stage] = found
    return at


def summary(figures: Figures) -> str:
    """One sentence for a why_missed: the segments, grouped by whose they are."""
    def us(names: tuple[str, ...] | list[str]) -> float:
        return sum(figures[f"path_{n}_p50_us"] for n in names)

    gateway = [n for n, *_ in SEGMENTS if n.startswith("gw_")]
    sidecar = [n for n, *_ in SEGMENTS if n.startswith("sc_")]
    parts = "; ".join(f"{what} {figures[f'path_{name}_p50_us']:.0f}"
                      for name, _, _, what in SEGMENTS)
    return (f"the path in stages, median us over {figures['path_rounds']} rounds "
            f"(path_*, a pass with tests/bench/stagehook loaded): {parts}. "
            f"Together: three wake-ups and writes {us(WAKES):.0f} us, aiohttp "
            f"{us(('aiohttp',)):.0f} us, csp's gateway {us(gateway):.0f} us, csp's sidecar "
            f"{us(sidecar):.0f} us")
