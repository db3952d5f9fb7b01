"""Wait for conditions with a deadline instead of sleeping a fixed time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

DEFAULT_TIMEOUT = 15.0


class Timeout(AssertionError):
    pass


def wait_for(condition: Callable[[], T], timeout: float = DEFAULT_TIMEOUT,
             interval: float = 0.02, what: str = "condition") -> T:
    """Call ``condition`` until it returns something truthy; return that value."""
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while True:
        try:
            value = condition()
            if value:
                return value
        except Exception as exc:  # keep polling; report the last failure on timeout
            last_exc = exc
        if time.monotonic() > deadline:
            raise Timeout(f"timed out after {timeout}s waiting for {what}"
                          + (f" (last error: {last_exc!r})" if last_exc else ""))
        time.sleep(interval)
        interval = min(interval * 1.5, 0.25)


async def async_wait_for(condition: Callable[[], Awaitable[T]], timeout: float = DEFAULT_TIMEOUT,
                         interval: float = 0.02, what: str = "condition") -> T:
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while True:
        try:
            value = await condition()
            if value:
                return value
        except Exception as exc:
            last_exc = exc
        if time.monotonic() > deadline:
            raise Timeout(f"timed out after {timeout}s waiting for {what}"
                          + (f" (last error: {last_exc!r})" if last_exc else ""))
        await asyncio.sleep(interval)
        interval = min(interval * 1.5, 0.25)
