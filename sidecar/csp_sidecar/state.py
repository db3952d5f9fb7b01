"""Telling the world what the agent is doing: D-Bus, the gateway, the pane title.

The sidecar calls :meth:`StatePublisher.changed` whenever something may have
changed; only what did change goes out: a
``PropertiesChanged`` to each listener (the D-Bus object), a ``state`` frame
to the gateway, the tmux pane title.  ``LastActivity`` alone changes with
every byte, so it reaches the listeners but not the gateway or the title.

The gateway and the title hear of a change ``ANNOUNCE_DELAY`` later, with
whatever else changed meanwhile: typing a message in changes the state two or
three times within a few ms, and each report is a frame the gateway handles (and
inside tmux a ``tmux`` process).  Coming at once, those reports landed among the
pastes of the other agents of an ``@all`` and slowed them (`make bench`, cases
fanout_50 and fanout_200); a tenth of a second later no one reading the title
or ``cspctl agents`` can tell.  D-Bus listeners still hear at once; with none
(no session bus) the properties are not even worked out before the report is due.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from .control import ChangeListener
from .title import PaneTitle

log = logging.getLogger("csp_sidecar.state")

ANNOUNCE_DELAY = 0.1  # seconds from a change to its report (see the module's docstring)


class StatePublisher:
    def __init__(self, name: str, report: Callable[..., Coroutine[Any, Any, None]]) -> None:
        self.name = name
        self.title = PaneTitle()
        self._report = report
        self._listeners: list[ChangeListener] = []
        self._published: dict[str, Any] = {}
        self._announcing: asyncio.TimerHandle | None = None
        self._due: Callable[[], Mapping[str, Any]] | None = None  # props to read when due

    def add_listener(self, listener: ChangeListener) -> None:
        self._listeners.append(listener)

    def get(self, key: str) -> Any:
        return self._published.get(key)

    def changed(self, props: Callable[[], Mapping[str, Any]]) -> None:
        """Something may have changed; ``props`` reads the current properties.  Read
        at once for listeners, else when the next report is due."""
        if self._listeners:
            self.publish(props())
        else:
            self._due = props
            self._arm()

    def publish(self, props: Mapping[str, Any]) -> None:
        changed = {k: v for k, v in props.items() if self._published.get(k) != v}
        if not changed:
            return
        self._published.update(changed)
        for listener in self._listeners:
            try:
                listener(changed)
            except Exception:
                log.exception("state listener failed")
        if any(k != "LastActivity" for k in changed):
            self._arm()

    def _arm(self) -> None:
        if self._announcing is not None:
            return  # already due: it will say what is current then
        with contextlib.suppress(RuntimeError):  # no loop: the sidecar is on its way out
            self._announcing = asyncio.get_running_loop().call_later(
                ANNOUNCE_DELAY, self._announce_now)

    def flush(self) -> None:
        """Report a change still due now (the sidecar is about to stop)."""
        if self._announcing is not None:
            self._announcing.cancel()
            self._announce_now()

    def _announce_now(self) -> None:
        self._announcing = None
        due, self._due = self._due, None
        if due is not None:
            props = due()
            changed = [k for k, v in props.items() if self._published.get(k) != v]
            self._published.update(props)
            if all(k == "LastActivity" for k in changed):
                return
        p = self._published
        queue = int(p.get("QueueLength", 0))
        queued = f" · {queue} queued" if queue else ""
        waiting = f" ({p['Reason']})" if queue and p.get("Reason") else ""
        self.title.set(f"{self.name} · {p.get('State')}{queued}{waiting}")
        with contextlib.suppress(RuntimeError):  # no loop: the sidecar is on its way out
            asyncio.get_running_loop().create_task(self._report(
                state=p.get("State"), queue=queue, pid=p.get("Pid"),
                reason=p.get("Reason", "")))

    async def wait(self) -> None:
        await self.title.wait()
