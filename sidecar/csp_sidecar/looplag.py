"""How long the sidecar's event loop was ever late: the human's terminal freezes for that.

Set ``CSP_SIDECAR_LAG_FILE=PATH`` and the sidecar checks, every few
milliseconds, how late its loop wakes up, and writes what it saw to PATH as
JSON when it exits (``make bench`` reads it).  Off by default: it costs a
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
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def from_env(cls) -> LoopLag | None:
        path = os.environ.get(ENV)
        return cls(Path(path)) if path else None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._watch())

    async def _watch(self) -> None:
        while True:
            t0 = time.perf_counter()
            await asyncio.sleep(INTERVAL)
            self.samples.append(max(0.0, time.perf_counter() - t0 - INTERVAL))

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        ordered = sorted(self.samples) or [0.0]
        self.path.write_text(json.dumps({
            "samples": len(self.samples),
            "max_ms": round(ordered[-1] * 1000, 3),
            "p99_ms": round(ordered[int(0.99 * (len(ordered) - 1))] * 1000, 3),
            "over_20ms": sum(1 for s in ordered if s > 0.020),
        }))
