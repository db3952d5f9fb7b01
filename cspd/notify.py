"""sd_notify: readiness, status text, watchdog, reload and stop.

Every call is a no-op when the daemon was not started by systemd
(``NOTIFY_SOCKET`` unset), so running ``cspd`` by hand needs no special case.
"""

from __future__ import annotations

import asyncio
import os

import sdnotify


class Notifier:
    def __init__(self) -> None:
        self.enabled = bool(os.environ.get("NOTIFY_SOCKET"))
        self._sd = sdnotify.SystemdNotifier() if self.enabled else None
        self._watchdog: asyncio.TimerHandle | None = None
        self.last_status = ""

    def send(self, *lines: str) -> None:
        if self._sd is not None:
            self._sd.notify("\n".join(lines))

    def ready(self, status: str) -> None:
        self.status(status, force=True)
        self.send("READY=1")

    def status(self, text: str, force: bool = False) -> None:
        if text != self.last_status or force:
            self.last_status = text
            self.send(f"STATUS={text}")

    def reloading(self) -> None:
        self.send("RELOADING=1", "STATUS=reloading configuration")

    def stopping(self) -> None:
        self.send("STOPPING=1", "STATUS=stopping")

    def start_watchdog(self, loop: asyncio.AbstractEventLoop) -> float | None:
        """Ping ``WATCHDOG=1`` from the event loop at half of ``WATCHDOG_USEC``.

        The ping runs on the loop itself, so a blocked loop starves the watchdog
        and systemd restarts the daemon, which is the point.
        """
        usec = os.environ.get("WATCHDOG_USEC")
        pid = os.environ.get("WATCHDOG_PID")
        if not self.enabled or not usec or (pid and pid != str(os.getpid())):
            return None
        interval = int(usec) / 1e6 / 2

        def ping() -> None:
            self.send("WATCHDOG=1")
            self._watchdog = loop.call_later(interval, ping)

        ping()
        return interval

    def stop_watchdog(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
