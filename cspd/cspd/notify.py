"""sd_notify: readiness, status text, watchdog, reload and stop.

Every call is a no-op when the daemon was not started by systemd
(``NOTIFY_SOCKET`` unset), so running ``cspd`` by hand needs no special case.

``STATUS=`` is throttled: the status text counts messages, so it changes on
every post, and a datagram to the manager per post is load on systemd (it
re-broadcasts each change as ``PropertiesChanged`` on the bus) for a line a
person reads now and then.  A changed text goes out at once if the last one
left at least :data:`STATUS_INTERVAL` ago, otherwise once that interval is
over, carrying the newest text; an unchanged text is never sent again.  The
text may be given as a function: while a send is already due it is not even
worked out (the gateway's counts every agent online, on every post).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable

import sdnotify

# at most this many STATUS= datagrams per second, whatever the message rate
STATUS_PER_SECOND = 4
STATUS_INTERVAL = 1.0 / STATUS_PER_SECOND


class Notifier:
    def __init__(self) -> None:
        self.enabled = bool(os.environ.get("NOTIFY_SOCKET"))
        self._sd = sdnotify.SystemdNotifier() if self.enabled else None
        self._watchdog: asyncio.TimerHandle | None = None
        self.last_status = ""  # the text systemd has now
        # the newest text asked for (sent once the interval allows), or what makes it
        self._wanted: str | Callable[[], str] = ""
        self._sent_at = -STATUS_INTERVAL  # monotonic time of the last STATUS=
        self._flush: asyncio.TimerHandle | None = None
        self._stopping = False

    def send(self, *lines: str) -> None:
        if self._sd is not None:
            self._sd.notify("\n".join(lines))

    def ready(self, status: str) -> None:
        """``READY=1`` with the current status, always (also after a reload)."""
        self._stopping = False
        self.status(status, force=True)
        self.send("READY=1")

    def status(self, text: str | Callable[[], str], force: bool = False) -> None:
        """Ask for ``STATUS=text``; sent now, later (throttled) or not at all if unchanged."""
        if self._stopping and not force:
            return  # after STOPPING=1 the status stays "stopping"
        if self._flush is not None and not force:
            self._wanted = text  # a send is already due; it takes the newest text
            return
        if callable(text):
            text = text()
        self._wanted = text
        if force:
            self._cancel_flush()
            self._send_status(text)
            return
        if text == self.last_status:
            return
        wait = self._sent_at + STATUS_INTERVAL - time.monotonic()
        if wait <= 0:
            self._send_status(text)
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop (startup, tests): nothing to defer with
            self._send_status(text)
            return
        self._flush = loop.call_later(wait, self._flush_status)

    def _flush_status(self) -> None:
        self._flush = None
        wanted = self._wanted() if callable(self._wanted) else self._wanted
        self._wanted = wanted
        if wanted != self.last_status and not self._stopping:
            self._send_status(wanted)

    def _send_status(self, text: str) -> None:
        self.last_status = text
        self._sent_at = time.monotonic()
        self.send(f"STATUS={text}")

    def _cancel_flush(self) -> None:
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None

    def reloading(self) -> None:
        # a throttled status arriving mid-reload would hide "reloading configuration";
        # ready() sends the current one afterwards anyway
        self._cancel_flush()
        self.last_status = "reloading configuration"
        self._sent_at = time.monotonic()
        self.send("RELOADING=1", "STATUS=reloading configuration")

    def stopping(self) -> None:
        self._cancel_flush()
        self._stopping = True
        self.last_status = "stopping"
        self._sent_at = time.monotonic()
        self.send("STOPPING=1", "STATUS=stopping")

    def extend_timeout(self, seconds: float) -> None:
        """Ask for ``seconds`` more before systemd gives up on the current state.

        Used while the gateway deliberately waits before serving (crash-loop
        backoff, see :mod:`cspd.restarts`), so that waiting is never mistaken
        for a hung start (``TimeoutStartSec=``).
        """
        self.send(f"EXTEND_TIMEOUT_USEC={int(seconds * 1_000_000)}")

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
        self._cancel_flush()
