"""Per-client token buckets, so one runaway client cannot flood the room."""

from __future__ import annotations

import time

from csp_core.errors import RateLimited


class RateLimiter:
    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self._buckets: dict[str, tuple[float, float]] = {}

    def configure(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, burst

    def take(self, client: str) -> None:
        now = time.monotonic()
        tokens, last = self._buckets.get(client, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate)
        if tokens < 1.0:
            retry = (1.0 - tokens) / self.rate
            self._buckets[client] = (tokens, now)
            raise RateLimited(f"too many messages from {client}; retry in {retry:.2f}s",
                              retry_after=round(retry, 3))
        self._buckets[client] = (tokens - 1.0, now)
        if len(self._buckets) > self.MAX_CLIENTS:
            self._forget_full(now)

    MAX_CLIENTS = 1024

    def _forget_full(self, now: float) -> None:
        """Drop buckets that have refilled: forgetting them changes nothing."""
        refill = self.burst / self.rate
        self._buckets = {c: (t, last) for c, (t, last) in self._buckets.items()
                         if now - last < refill}
