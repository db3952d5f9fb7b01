"""The agent CLI as a process: started on a PTY, signalled as a group, reaped.

The agent runs as the leader of its own session and process group on the PTY
the sidecar owns.  Ending it is done to the whole group, SIGHUP first (what a
closing terminal sends), then SIGTERM, then SIGKILL, each after a grace
period, so that helpers and daemons it started do not pile up unseen.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time

from ptyprocess import PtyProcess

from .lifeline import die_with_parent

KILL_GRACE = 1.5


class AgentProcess:
    def __init__(self, command: list[str], *, cwd: str | None, env: dict[str, str],
                 size: tuple[int, int]) -> None:
        self.pty = PtyProcess.spawn(command, cwd=cwd, env=env, dimensions=size,
                                    preexec_fn=die_with_parent)
        os.set_blocking(self.pty.fd, False)

    @property
    def pid(self) -> int:
        return int(self.pty.pid)

    @property
    def fd(self) -> int:
        return int(self.pty.fd)

    def isalive(self) -> bool:
        return bool(self.pty.isalive())

    def resize(self, rows: int, cols: int) -> None:
        with contextlib.suppress(OSError):
            self.pty.setwinsize(rows, cols)

    def signal_group(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)

    def group_exists(self) -> bool:
        try:
            os.killpg(self.pid, 0)
        except (ProcessLookupError, PermissionError):
            return False
        return True

    async def wait_group_gone(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.isalive()  # reaps the leader once it has exited: a zombie keeps its group
            if not self.group_exists():
                return True
            await asyncio.sleep(0.05)
        return False

    async def end_group(self, first: int = signal.SIGHUP) -> None:
        """``first``, then SIGTERM, then SIGKILL, until the group is gone."""
        for sig in (first, signal.SIGTERM, signal.SIGKILL):
            self.signal_group(sig)
            if await self.wait_group_gone(KILL_GRACE):
                return

    async def reap(self) -> int:
        """Wait for the agent (ending it if it lingers), clear out its group, and
        return the status to exit with: its exit code, or 128 + the signal."""
        deadline = time.monotonic() + KILL_GRACE
        while self.isalive() and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        if self.isalive() or self.group_exists():
            await self.end_group()
        with contextlib.suppress(Exception):
            self.pty.close(force=True)
        if self.pty.signalstatus is not None:
            return 128 + int(self.pty.signalstatus)
        return int(self.pty.exitstatus or 0)
