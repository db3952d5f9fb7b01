"""Telling the world what the agent is doing: D-Bus, the gateway, the pane title.

The sidecar calls :meth:`StatePublisher.publish` with its current properties
whenever something may have changed; only what did change goes out: a
``PropertiesChanged`` to each listener (the D-Bus object), a ``state`` frame
to the gateway, the tmux pane title.  ``LastActivity`` alone changes with
every byte, so it reaches the listeners but not the gateway or the title.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from .control import ChangeListener
from .title import PaneTitle

log = logging.getLogger("csp_sidecar.state")


class StatePublisher:
    def __init__(self, name: str, report: Callable[..., Coroutine[Any, Any, None]]) -> None:
        self.name = name
        self.title = PaneTitle()
        self._report = report
        self._listeners: list[ChangeListener] = []
        self._published: dict[str, Any] = {}

    def add_listener(self, listener: ChangeListener) -> None:
        self._listeners.append(listener)

    def get(self, key: str) -> Any:
        return self._published.get(key)

    def publish(self, props: dict[str, Any]) -> None:
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
            self._announce()

    def _announce(self) -> None:
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
