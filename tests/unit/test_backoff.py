"""The one reconnect schedule (csp_core.backoff) every client of the gateway uses."""

from __future__ import annotations

import asyncio
import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from csp_core.backoff import CAP, FIRST, Backoff


def test_doubles_up_to_the_cap_without_jitter() -> None:
    b = Backoff(first=0.2, cap=5.0, jitter=0.0)
    assert [round(b.delay(), 3) for _ in range(8)] == [0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0, 5.0]
    assert b.attempts == 8


def test_reset_starts_over() -> None:
    b = Backoff(jitter=0.0)
    for _ in range(5):
        b.delay()
    b.reset()
    assert b.attempts == 0 and b.delay() == FIRST


def test_jitter_shortens_each_step_by_at_most_its_share() -> None:
    low = Backoff(first=1.0, cap=8.0, jitter=0.25, rand=lambda: 0.999999)
    high = Backoff(first=1.0, cap=8.0, jitter=0.25, rand=lambda: 0.0)
    for step in (1.0, 2.0, 4.0, 8.0, 8.0):
        assert high.delay() == step
        assert step * 0.75 <= low.delay() < step * 0.75 + 1e-5


@given(st.lists(st.floats(0, 0.999999), min_size=1, max_size=60))
def test_delays_stay_within_bounds(draws: list[float]) -> None:
    source = itertools.cycle(draws)
    b = Backoff(rand=lambda: next(source))
    for _ in range(len(draws)):
        d = b.delay()
        assert 0 < d <= CAP


def test_clients_cut_off_together_come_back_apart() -> None:
    """The point of the jitter: the same attempt of many clients is spread out."""
    delays = {round(Backoff().delay(), 6) for _ in range(50)}
    assert len(delays) > 10


@pytest.mark.parametrize("args", [{"first": 0}, {"first": 6, "cap": 5}, {"factor": 0.5},
                                  {"jitter": 1.0}])
def test_nonsense_schedules_are_refused(args: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Backoff(**args)  # type: ignore[arg-type]


async def test_wait_sleeps_the_delay(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr(asyncio, "sleep", fake_sleep)
    b = Backoff(first=0.5, cap=1.0, jitter=0.0)
    await b.wait()
    await b.wait()
    await b.wait()
    assert slept == [0.5, 1.0, 1.0]
