"""How long the sidecar's event loop was ever late: the human's terminal freezes for that.

Set ``CSP_SIDECAR_LAG_FILE=PATH`` and the sidecar checks, every few
milliseconds, how late its loop wakes up, and writes what it saw to PATH as
JSON when it exits (``make bench`` reads it).  It watches while the agent runs:
the wrap-up after the agent exited is not what a human waits on.  Off by default: it costs a
wake-up every ``INTERVAL``.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

ENV = "CSP_SIDECAR_LAG_FILE"
INTERVAL = 0.005


class LoopLag:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.samples: list[float] = []
        self.stalls: list[tuple[float, float]] = []  # (seconds since start, stall) > 20 ms
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def from_env(cls) -> LoopLag | None:
        path = os.environ.get(ENV)
        return cls(Path(path)) if path else None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._watch())

    async def _watch(self) -> None:
        start = time.perf_counter()
        while True:
            t0 = time.perf_counter()
            await asyncio.sleep(INTERVAL)
            late = max(0.0, time.perf_counter() - t0 - INTERVAL)
            self.samples.append(late)
            if late > 0.020:
                self.stalls.append((round(t0 - start, 3), round(late * 1000, 1)))

    def stop(self) -> None:
        """Stop watching (the agent has exited: what follows is the sidecar's wrap-up)."""
        if self._task is not None:
            self._task.cancel()
            self._task = None

    def write(self) -> None:
        self.stop()
        ordered = sorted(self.samples) or [0.0]
        self.path.write_text(json.dumps({
            "samples": len(self.samples),
            "max_ms": round(ordered[-1] * 1000, 3),
            "p99_ms": round(ordered[int(0.99 * (len(ordered) - 1))] * 1000, 3),
            "over_20ms": len(self.stalls),
            "stalls_at_s_ms": self.stalls[:20],
        }))
