"""StatePublisher: listeners hear at once, the gateway once per burst of changes."""

from __future__ import annotations

import asyncio
from typing import Any

from csp_sidecar.state import ANNOUNCE_DELAY, StatePublisher


class Reports:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    async def __call__(self, **state: Any) -> None:
        self.sent.append(state)


def props(state: str, queue: int = 0, activity: float = 0.0) -> dict[str, Any]:
    return {"State": state, "QueueLength": queue, "Reason": "", "Pid": 42,
            "LastActivity": activity}


async def until(condition: Any, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition never held"
        await asyncio.sleep(0.01)


async def test_a_burst_of_changes_is_one_report_of_the_last() -> None:
    reports = Reports()
    states = StatePublisher("a", reports)
    for state, queue in (("busy", 1), ("busy", 0), ("ready", 0)):
        states.changed(lambda s=state, q=queue: props(s, q))
    assert reports.sent == []  # not at once: see ANNOUNCE_DELAY
    await until(lambda: reports.sent)
    await asyncio.sleep(ANNOUNCE_DELAY * 2)
    assert reports.sent == [{"state": "ready", "queue": 0, "pid": 42, "reason": ""}]


async def test_listeners_hear_each_change_at_once_and_activity_alone_is_not_reported() -> None:
    reports = Reports()
    heard: list[dict[str, Any]] = []
    states = StatePublisher("a", reports)
    states.add_listener(heard.append)
    states.changed(lambda: props("busy", 1))
    states.changed(lambda: props("busy", 1, activity=5.0))
    assert heard == [props("busy", 1), {"LastActivity": 5.0}]
    await until(lambda: reports.sent)
    await asyncio.sleep(ANNOUNCE_DELAY * 2)
    assert [r["state"] for r in reports.sent] == ["busy"]
    states.changed(lambda: props("busy", 1, activity=9.0))  # activity only
    await asyncio.sleep(ANNOUNCE_DELAY * 2)
    assert len(reports.sent) == 1


async def test_flush_reports_what_is_due_at_once() -> None:
    reports = Reports()
    states = StatePublisher("a", reports)
    states.changed(lambda: props("exited"))
    states.flush()
    await asyncio.sleep(0)  # the report is a task: let it run
    assert reports.sent == [{"state": "exited", "queue": 0, "pid": 42, "reason": ""}]
