"""The per-client token bucket."""

from __future__ import annotations

import pytest

from csp_core.errors import RateLimited
from cspd.ratelimit import RateLimiter


def test_burst_then_refusal_with_retry_after() -> None:
    limiter = RateLimiter(rate=1.0, burst=3)
    for _ in range(3):
        limiter.take("claude")
    with pytest.raises(RateLimited) as info:
        limiter.take("claude")
    assert 0 < info.value.details["retry_after"] <= 1.0
    limiter.take("codex")  # buckets are per client


def test_refilled_buckets_are_forgotten(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr("cspd.ratelimit.time.monotonic", lambda: clock[0])
    limiter = RateLimiter(rate=10.0, burst=10)
    for i in range(RateLimiter.MAX_CLIENTS):
        limiter.take(f"client{i}")
    clock[0] += 5.0  # every bucket has refilled
    limiter.take("one more")
    assert len(limiter._buckets) == 1
