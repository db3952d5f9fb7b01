"""Live fan-out: who is connected, and pushing committed messages to them.

Two kinds of subscriber share one mechanism:

* an *agent* connection (a sidecar) receives the messages addressed to it,
  first everything still pending for it in the store, then live ones, and
  acknowledges each once it has been injected;
* a *watcher* (``cspctl history --follow``, ``cspctl chat``) sees every
  message of a room after a cursor, and acknowledges nothing.

A subscriber registers *before* it replays from the store and holds live
messages until the replay is done, so nothing committed in between is missed;
duplicates are dropped by id.  Each connection has one writer task, so frames
never interleave.

A message published to many subscribers is turned into JSON once
(:class:`SharedFrame`), not once per subscriber: an ``@all`` to 200 agents is one
encoding, not 200.  And it is written to every idle connection in the same pass
(``send_now``), not handed to 200 writer tasks: those would each wait for a turn
of the event loop, and the gateway, with the sidecars it just woke competing for
the CPU, got through them in 5 to 50 ms (`make bench`, case fanout_50).  A
connection whose writer is busy, or that cannot take a frame at once, gets it
through its queue, in order.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from csp_core.errors import Conflict
from csp_core.proctree import AgentTree
from csp_core.protocol import Message
from csp_core.wsframe import TEXT, frame

MAX_QUEUE = 10_000


@dataclass
class AgentState:
    """What a sidecar reports about its agent; shown by ``cspctl agents``."""

    state: str = "starting"
    queue: int = 0
    reason: str = ""  # why queued messages wait ("vim is in the foreground"), if they do
    pid: int | None = None
    dbus_name: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class SharedFrame:
    """A ``message`` frame shared by every subscriber it goes to; its JSON text is
    made once, by the first writer that needs it."""

    __slots__ = ("_text", "_wire", "message")

    def __init__(self, message: Message) -> None:
        self.message = message
        self._text: str | None = None
        self._wire: bytes | None = None

    @property
    def frame(self) -> dict[str, Any]:
        return {"type": "message", "message": self.message.to_json()}

    @property
    def text(self) -> str:
        if self._text is None:
            self._text = json.dumps(self.frame)
        return self._text

    @property
    def wire(self) -> bytes:
        """The whole WebSocket frame, as a server sends it (unmasked, uncompressed)."""
        if self._wire is None:
            self._wire = frame(TEXT, self.text.encode())
        return self._wire


class Subscriber:
    """``send`` gets each frame as a dict, or, with ``encoded``, as its JSON text.

    ``send_now``, if given, writes a message's whole WebSocket frame (bytes) at
    once and says whether it could; it is used only while nothing waits in the
    queue and the writer is not in the middle of a frame, so order is kept.
    """

    def __init__(self, send: Callable[[Any], Awaitable[None]], *,
                 agent: str | None = None, room: str | None = None, since: int = 0,
                 encoded: bool = False,
                 send_now: Callable[[bytes], bool] | None = None) -> None:
        self.agent = agent
        self.room = room
        self._send = send
        self._send_now = send_now
        self._writing = False
        self._encoded = encoded
        self._queue: asyncio.Queue[dict[str, Any] | SharedFrame | None] = asyncio.Queue()
        self._replaying = True
        self._held: list[tuple[Message, SharedFrame | None]] = []
        self._last_id = since
        self.state = AgentState()
        self.overflowed = False
        self.tree = AgentTree()  # the processes that are this agent (set at registration)

    def wants(self, message: Message, deliver_to: tuple[str, ...]) -> bool:
        if self.agent is not None:
            return self.agent in deliver_to
        return self.room is None or message.room == self.room

    def push(self, message: Message, shared: SharedFrame | None = None) -> None:
        if self._replaying:
            self._held.append((message, shared))
        else:
            self._enqueue(message, shared)

    def push_frame(self, frame: dict[str, Any]) -> None:
        self._queue.put_nowait(frame)

    def _enqueue(self, message: Message, shared: SharedFrame | None = None) -> None:
        if message.id <= self._last_id or self.overflowed:  # cut loose: queue no more
            return
        self._last_id = message.id
        if self._queue.qsize() >= MAX_QUEUE:
            # a stalled reader: cut it loose; it replays from its cursor on reconnect
            self.overflowed = True
            self._queue.put_nowait(None)
            return
        item = shared if shared is not None else SharedFrame(message)
        if (self._send_now is not None and not self._writing and self._queue.empty()
                and self._send_now(item.wire)):
            return
        self._queue.put_nowait(item)

    def finish_replay(self, replayed: list[Message]) -> None:
        for message in replayed:
            self._enqueue(message)
        self._replaying = False
        held, self._held = self._held, []
        for message, shared in held:
            self._enqueue(message, shared)

    def close(self) -> None:
        self._queue.put_nowait(None)

    async def run_writer(self) -> None:
        while True:
            item = await self._queue.get()
            if item is None:
                return
            self._writing = True
            try:
                if isinstance(item, SharedFrame):
                    await self._send(item.text if self._encoded else item.frame)
                else:
                    await self._send(json.dumps(item) if self._encoded else item)
            finally:
                self._writing = False


class Hub:
    def __init__(self) -> None:
        self.agents: dict[str, Subscriber] = {}
        self.watchers: set[Subscriber] = set()
        self.on_change: list[Callable[[], None]] = []

    def add(self, sub: Subscriber) -> None:
        if sub.agent is not None:
            self.agents[sub.agent] = sub
        else:
            self.watchers.add(sub)
        self._changed()

    def claim(self, sub: Subscriber) -> None:
        """Register an agent connection unless its name is online: the check and the
        add happen with no await in between, so of two registrations of one name at
        the same moment exactly one succeeds."""
        assert sub.agent is not None
        if sub.agent in self.agents:
            raise Conflict(f"an agent named {sub.agent!r} is already online; "
                           "pick another --name", name=sub.agent)
        self.add(sub)

    def remove(self, sub: Subscriber) -> None:
        if sub.agent is not None:
            if self.agents.get(sub.agent) is sub:
                del self.agents[sub.agent]
        else:
            self.watchers.discard(sub)
        self._changed()

    def online(self, name: str) -> bool:
        return name in self.agents

    def publish(self, message: Message, deliver_to: tuple[str, ...]) -> None:
        shared = SharedFrame(message)
        for name in deliver_to:
            sub = self.agents.get(name)
            if sub is not None:
                sub.push(message, shared)
        for sub in list(self.watchers):
            if sub.wants(message, deliver_to):
                sub.push(message, shared)

    def control(self, name: str, frame: dict[str, Any]) -> bool:
        sub = self.agents.get(name)
        if sub is None:
            return False
        sub.push_frame(frame)
        return True

    def _changed(self) -> None:
        for callback in self.on_change:
            callback()

    def close_all(self) -> None:
        for sub in [*self.agents.values(), *self.watchers]:
            sub.close()
