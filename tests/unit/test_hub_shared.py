"""One message to many subscribers is encoded once, and every one gets the same text."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable

from csp_core.protocol import Message
from cspd.hub import Hub, SharedFrame, Subscriber


async def test_a_message_is_encoded_once_for_every_subscriber() -> None:
    hub = Hub()
    got: dict[str, list[object]] = {}
    subs = []
    for name in ("a", "b", "c"):
        got[name] = []
        sub = Subscriber(_collect(got[name]), agent=name, encoded=True)
        sub.finish_replay([])
        hub.add(sub)
        subs.append(sub)
    plain: list[object] = []
    watcher = Subscriber(_collect(plain))  # a dict-taking subscriber (the MCP waiter's kind)
    watcher.finish_replay([])
    hub.add(watcher)
    message = Message(7, "main", "human", ["all"], "chat", "hi", "2026-01-01T00:00:00.000Z")
    hub.publish(message, ("a", "b", "c"))
    queued = [sub._queue.get_nowait() for sub in subs]
    assert all(isinstance(q, SharedFrame) for q in queued)
    assert queued[0] is queued[1] is queued[2]  # one frame object, so one encoding
    for sub, item in zip(subs, queued, strict=True):
        sub._queue.put_nowait(item)
    for sub in [*subs, watcher]:
        sub.close()
    await asyncio.gather(*(sub.run_writer() for sub in [*subs, watcher]))
    texts = [got[n][0] for n in ("a", "b", "c")]
    assert texts[0] == texts[1] == texts[2]
    assert json.loads(str(texts[0])) == {"type": "message", "message": message.to_json()}
    assert plain == [{"type": "message", "message": message.to_json()}]


def _collect(into: list[object]) -> Callable[[object], Awaitable[None]]:
    async def send(frame: object) -> None:
        into.append(frame)
    return send
