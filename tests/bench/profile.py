"""A sampling profile of a running process, summed up: where a missed target's time goes.

``make bench`` attaches py-spy (a dev dependency; it reads the target's memory
from outside, so the profiled program runs unchanged) to the gateway while a load
runs, counting only samples that hold the GIL (CPU, not waiting), and reduces the
stacks to shares: csp's own code, aiohttp, asyncio and the rest of Python, and the
functions with the largest own share.  Where py-spy is missing or may not attach
(ptrace restricted), the figures say so instead.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import shutil
import signal
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

from .registry import Figures

RATE_HZ = 200
TOP = 8
# where a frame's file lives, by the text py-spy prints for it
OWNERS = (("csp", ("cspd/", "csp_core/", "csp_sidecar/", "csp_cli/")),
          ("aiohttp", ("aiohttp/",)), ("asyncio", ("asyncio/", "selectors.py")),
          ("sqlite3", ("sqlite3/",)))


def _py_spy() -> str | None:
    here = Path(sys.executable).with_name("py-spy")
    return str(here) if here.exists() else shutil.which("py-spy")


@contextlib.asynccontextmanager
async def profiled(pid: int, into: Figures, prefix: str = "profile_") -> AsyncIterator[None]:
    """Sample ``pid`` while the body runs; its summary goes into ``into``."""
    tool = _py_spy()
    if tool is None:
        into[f"{prefix}error"] = "py-spy is not installed (pip install py-spy)"
        yield
        return
    out = Path(tempfile.mkdtemp(prefix="csp-profile-")) / "stacks.txt"
    proc = await asyncio.create_subprocess_exec(
        tool, "record", "--gil", "--nonblocking", "-r", str(RATE_HZ), "-f", "raw",
        "-o", str(out), "-p", str(pid),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    try:
        await asyncio.sleep(0.5)  # attached before the load starts
        yield
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGINT)
        _, err = await proc.communicate()
        if out.exists() and out.stat().st_size:
            into.update(summarize(out.read_text(), prefix))
        else:
            into[f"{prefix}error"] = (err.decode(errors="replace").strip().splitlines()
                                      or ["no samples"])[-1][:200]
        shutil.rmtree(out.parent, ignore_errors=True)


def summarize(collapsed: str, prefix: str = "profile_") -> Figures:
    """py-spy's raw (collapsed) stacks as shares of the samples: by owner of the
    innermost frame, and the functions with the most samples of their own."""
    owners: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        leaf = stack.rsplit(";", 1)[-1]
        total += n
        own[leaf] += n
        owners[_owner(leaf)] += n
    if not total:
        return {f"{prefix}error": "no samples"}
    figures: Figures = {f"{prefix}samples": total}
    for owner, n in owners.most_common():
        figures[f"{prefix}{owner}_percent"] = round(100 * n / total, 1)
    figures[f"{prefix}top_own"] = "; ".join(
        f"{leaf.split(' (')[0]} {100 * n / total:.1f}%" for leaf, n in own.most_common(TOP))
    csp = [(leaf, n) for leaf, n in own.most_common() if _owner(leaf) == "csp"]
    if csp:
        figures[f"{prefix}top_csp_function"] = f"{csp[0][0]} {100 * csp[0][1] / total:.1f}%"
    return figures


def _owner(frame: str) -> str:
    where = frame.rpartition("(")[2]
    for owner, marks in OWNERS:
        if any(mark in where for mark in marks):
            return owner
    return "python"


__all__ = ["profiled", "summarize"]
