"""Showing the agent's state in its tmux pane title.

The sidecar never writes its own escape sequences into the agent's output
stream (it could land in the middle of one of the agent's).  Inside tmux it
sets the pane's ``@csp_title`` option, which ``cspctl attach`` shows in the
pane border, and the pane title for plain tmux layouts.  Outside tmux there is
nothing to do.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil


class PaneTitle:
    def __init__(self) -> None:
        self.pane = os.environ.get("TMUX_PANE") if os.environ.get("TMUX") else None
        self.tmux = shutil.which("tmux") if self.pane else None
        self._last = ""
        self._task: asyncio.Task[None] | None = None
        self._wanted = ""

    def set(self, text: str) -> None:
        if not self.tmux or text == self._last:
            return
        self._wanted = text
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._apply())

    async def _apply(self) -> None:
        while self._wanted != self._last:
            text = self._wanted
            assert self.tmux and self.pane
            with contextlib.suppress(OSError):
                proc = await asyncio.create_subprocess_exec(
                    self.tmux, "set-option", "-p", "-t", self.pane, "@csp_title", text, ";",
                    "select-pane", "-t", self.pane, "-T", text,
                    stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
                    stderr=asyncio.subprocess.DEVNULL)
                await proc.wait()
            self._last = text

    async def wait(self) -> None:
        if self._task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._task, 2.0)
