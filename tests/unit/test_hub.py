"""Live fan-out: replay/live hand-over, dedup, and cutting loose a stalled reader."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from csp_core.protocol import Message
from cspd import hub as hub_mod
from cspd.hub import Hub, Subscriber


def msg(i: int, room: str = "main") -> Message:
    return Message(i, room, "human", ["all"], "chat", f"m{i}", "2026-01-01T00:00:00.000Z")


class Sink:
    def __init__(self) -> None:
        self.frames: list[dict[str, Any]] = []

    async def __call__(self, frame: dict[str, Any]) -> None:
        self.frames.append(frame)

    def ids(self) -> list[int]:
        return [f["message"]["id"] for f in self.frames if f["type"] == "message"]


async def drain(sub: Subscriber) -> None:
    sub.close()
    await asyncio.wait_for(sub.run_writer(), 10)


async def test_live_messages_held_during_replay_and_deduplicated() -> None:
    sink = Sink()
    sub = Subscriber(sink, agent="codex")
    h = Hub()
    h.add(sub)
    h.publish(msg(3), ("codex",))  # committed while the replay is being read
    h.publish(msg(5), ("codex",))
    sub.finish_replay([msg(1), msg(3)])  # the replay saw 3 too
    h.publish(msg(6), ("claude",))  # not for codex
    h.publish(msg(7), ("codex",))
    await drain(sub)
    assert sink.ids() == [1, 3, 5, 7]


async def test_watcher_filters_by_room_and_since() -> None:
    sink = Sink()
    sub = Subscriber(sink, room="dev", since=4)
    h = Hub()
    h.add(sub)
    sub.finish_replay([])
    for m in (msg(3, "dev"), msg(5, "main"), msg(6, "dev")):
        h.publish(m, ())
    await drain(sub)
    assert sink.ids() == [6]


async def test_stalled_reader_is_cut_loose_with_bounded_memory(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hub_mod, "MAX_QUEUE", 10)
    sub = Subscriber(Sink(), agent="codex")
    sub.finish_replay([])
    for i in range(1, 200):  # nobody runs the writer: a reader that never reads
        sub.push(msg(i))
    assert sub.overflowed
    assert sub._queue.qsize() <= 11


async def test_remove_only_its_own_registration() -> None:
    h = Hub()
    first, second = Subscriber(Sink(), agent="codex"), Subscriber(Sink(), agent="codex")
    h.add(first)
    h.add(second)
    h.remove(first)  # a stale connection going away must not unregister the new one
    assert h.agents["codex"] is second
    changes: list[int] = []
    h.on_change.append(lambda: changes.append(1))
    h.remove(second)
    assert not h.online("codex") and changes == [1]
