"""How long to wait before reconnecting to the gateway, for every client that does.

The sidecar's link, ``cspctl chat`` and ``cspctl history --follow`` all keep a
connection open and try again when the gateway goes away.  They share this one
schedule: the delay doubles from a short first wait up to a cap (a restart of
the gateway is quick; a stopped one should not be hammered), each delay is
shortened by a random part of itself so that many clients cut off at the same
moment do not all come back in the same instant, and a working connection
starts the schedule over.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

FIRST = 0.2
CAP = 5.0
FACTOR = 2.0
JITTER = 0.25  # a delay is between (1 - JITTER) and 1 times its step


class Backoff:
    """Jittered exponential delays with a cap; :meth:`reset` after a success.

    ``rand`` (a function returning a float in [0, 1)) is there for tests.
    """

    def __init__(self, first: float = FIRST, cap: float = CAP, factor: float = FACTOR,
                 jitter: float = JITTER, rand: Callable[[], float] = random.random) -> None:
        if not 0 < first <= cap or factor < 1 or not 0 <= jitter < 1:
            raise ValueError("backoff needs 0 < first <= cap, factor >= 1, 0 <= jitter < 1")
        self.first = first
        self.cap = cap
        self.factor = factor
        self.jitter = jitter
        self._rand = rand
        self._step = first
        self.attempts = 0  # failures since the last success

    def delay(self) -> float:
        """The next wait, in seconds; each call moves one step along the schedule."""
        step = self._step
        self._step = min(self.cap, self._step * self.factor)
        self.attempts += 1
        return step * (1.0 - self.jitter * self._rand())

    def reset(self) -> None:
        """The connection works again: the next failure waits the shortest time."""
        self._step = self.first
        self.attempts = 0

    async def wait(self) -> None:
        """Sleep for :meth:`delay` (the form every current caller needs: all are async)."""
        await asyncio.sleep(self.delay())
