"""What a running sidecar exposes to its controllers (the gateway link, D-Bus).

The sidecar's core implements :class:`AgentControl`; the D-Bus service and the
gateway connection only talk to this protocol, so each can be tested with a
stand-in and neither knows how the PTY works.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

STATES = ("starting", "ready", "busy", "waiting", "paused", "exited")

# called with the properties that changed, e.g. {"State": "busy", "QueueLength": 2}
ChangeListener = Callable[[dict[str, Any]], None]


class AgentControl(Protocol):
    name: str
    profile: str
    room: str
    command: list[str]

    @property
    def pid(self) -> int: ...

    @property
    def state(self) -> str: ...

    @property
    def reason(self) -> str:
        """Why queued messages wait ("vim is in the foreground"); "" when they do not."""
        ...

    @property
    def queue_length(self) -> int: ...

    @property
    def last_activity(self) -> float:
        """Unix time of the agent's last output or the human's last keystroke."""
        ...

    def pause(self) -> None: ...

    def resume(self) -> None: ...

    def inject(self, text: str, sender: str = "dbus") -> None:
        """Queue text for the agent under the same sanitising and flow control as chat."""
        ...

    def interrupt(self) -> None:
        """Do what Ctrl-C typed by the human would do."""
        ...

    def add_listener(self, listener: ChangeListener) -> None: ...
