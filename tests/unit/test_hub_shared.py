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


def _message(i: int) -> Message:
    return Message(i, "main", "human", ["all"], "chat", f"m{i}", "2026-01-01T00:00:00.000Z")


def _payloads(wires: list[bytes]) -> list[int]:
    """The message ids in unmasked server text frames (short ones: 2-byte header, or
    4 with a 16-bit length)."""
    ids = []
    for wire in wires:
        assert wire[0] == 0x81  # final text frame
        size = wire[1]
        body = wire[2:] if size < 126 else wire[4:]
        ids.append(json.loads(body)["message"]["id"])
    return ids


async def test_an_idle_connection_gets_the_frame_in_the_same_pass() -> None:
    """No writer task in between: published, and the bytes are already written, once
    for everyone (the same frame object)."""
    hub = Hub()
    wires: dict[str, list[bytes]] = {"a": [], "b": []}
    for name in wires:
        sub = Subscriber(_collect([]), agent=name, encoded=True,
                         send_now=lambda w, into=wires[name]: into.append(w) is None)
        sub.finish_replay([])
        hub.add(sub)
    hub.publish(_message(1), ("a", "b"))
    assert _payloads(wires["a"]) == _payloads(wires["b"]) == [1]
    assert wires["a"][0] is wires["b"][0]


async def test_frames_keep_their_order_when_some_must_wait() -> None:
    """A connection that cannot take a frame at once (send_now says no) gets it through
    its queue; the next one waits behind it even when the socket could take it."""
    written: list[bytes] = []
    queued: list[object] = []
    accept = [False]

    def send_now(wire: bytes) -> bool:
        if accept[0]:
            written.append(wire)
        return accept[0]

    sub = Subscriber(_collect(queued), agent="a", encoded=True, send_now=send_now)
    sub.finish_replay([])
    sub.push(_message(1))  # refused: queued
    accept[0] = True
    sub.push(_message(2))  # the queue is not empty: behind message 1, not around it
    assert written == []
    sub.close()
    await sub.run_writer()
    assert [json.loads(str(t))["message"]["id"] for t in queued] == [1, 2]
    sub2 = Subscriber(_collect([]), agent="b", encoded=True, send_now=send_now)
    sub2.finish_replay([])
    sub2.push(_message(3))
    assert _payloads(written) == [3]
