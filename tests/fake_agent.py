"""A stand-in :class:`~csp_sidecar.control.AgentControl` for bus tests.

It records what it is asked to do and changes state the way a sidecar would
(pause → ``paused``, resume → ``ready``, inject → one more queued), telling its
listeners each time.
"""

from __future__ import annotations

import time
from typing import Any

from csp_sidecar.control import ChangeListener


class FakeControl:
    def __init__(self, name: str = "claude", room: str = "lobby", pid: int = 4242) -> None:
        self.name = name
        self.profile = "generic"
        self.room = room
        self.command = ["claude", "--model", "x y"]
        self._pid = pid
        self._state = "ready"
        self._queue = 0
        self._last = time.time()
        self.calls: list[tuple[str, ...]] = []
        self.listeners: list[ChangeListener] = []

    @property
    def pid(self) -> int:
        return self._pid

    @property
    def state(self) -> str:
        return self._state

    @property
    def queue_length(self) -> int:
        return self._queue

    @property
    def reason(self) -> str:
        return "the human has a half-typed line" if self._queue else ""

    @property
    def last_activity(self) -> float:
        return self._last

    def set_state(self, state: str) -> None:
        self._state = state
        self._notify({"State": state})

    def _notify(self, changes: dict[str, Any]) -> None:
        for listener in self.listeners:
            listener(changes)

    def pause(self) -> None:
        self.calls.append(("pause",))
        self.set_state("paused")

    def resume(self) -> None:
        self.calls.append(("resume",))
        self.set_state("ready")

    def inject(self, text: str, sender: str = "dbus") -> None:
        if not text.strip():
            from csp_core.errors import BadRequest
            raise BadRequest("empty message")
        self.calls.append(("inject", text, sender))
        self._queue += 1
        self._notify({"QueueLength": self._queue})

    def interrupt(self) -> None:
        self.calls.append(("interrupt",))

    def add_listener(self, listener: ChangeListener) -> None:
        self.listeners.append(listener)
