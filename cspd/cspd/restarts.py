"""Crash-loop backoff: the gateway paces its own restarts under systemd.

Why it exists: systemd's start limit (by default 5 starts in 10 s) puts a
crash-looping service in ``failed`` for good, and with it *both* socket units
(``Result=service-start-limit-hit``); every client then gets "not running"
until someone runs ``reset-failed`` by hand.  ``csp-gateway.service`` turns
that limit off (``StartLimitIntervalSec=0``) and the gateway paces itself
instead: systemd 254's ``RestartSteps=``/``RestartMaxDelaySec=`` would do it
in the manager, but Debian 12 has 252.

How: every start under systemd is noted in ``$XDG_RUNTIME_DIR/csp/starts.json``
(with the wait it chose) before anything else can fail.  A run that ends with
a clean stop clears the record; a run that served for :data:`HEALTHY` seconds
or more does not count either.  So at the next start the record holds the
runs that ended badly in a row, quickly: killed, crashed, or refused to start
(a broken config, an unwritable state dir).  After :data:`FREE` of them the
start waits :data:`BASE`, then twice that each time, up to :data:`MAX_DELAY`,
before it serves; meanwhile the service is ``activating`` and says why in
``STATUS=`` (so ``cspctl gateway status`` shows it), and clients that connect
wait in the socket's backlog, held by systemd.  Once the cause is gone the
next attempt simply succeeds: nobody has to restart anything.

The clock is ``CLOCK_MONOTONIC``, which all processes share, and the file
lives in the runtime dir, so a new login starts with a clean slate.
"""

from __future__ import annotations

import contextlib
import signal
import time
from pathlib import Path
from types import FrameType

from csp_core.startrecord import StartRecord, record_path

from .notify import Notifier

FREE = 2  # unclean ends in a row that restart at once (one kill -9 costs nothing)
BASE = 0.5  # the first wait, doubled for every further unclean end
MAX_DELAY = 10.0  # however long the loop, a fixed cause is retried this often


def delay_for(failures: int) -> float:
    """How long a start waits after ``failures`` quick unclean ends in a row."""
    if failures <= FREE:
        return 0.0
    return float(min(MAX_DELAY, BASE * 2 ** (failures - FREE - 1)))


def describe(failures: int, wait: float, last_error: str) -> str:
    """The ``STATUS=`` line while waiting: what happened and what comes next."""
    why = f"last run: {last_error}" if last_error else "the last run was killed or crashed"
    ends = "end" if failures == 1 else "ends"
    return (f"crash loop: {failures} unclean {ends} in a row ({why}); "
            f"waiting {wait:g} s before starting again")


class _Stopped(Exception):
    """SIGTERM during the wait: systemd (or a person) stopped the service."""


def _raise_stopped(signum: int, frame: FrameType | None) -> None:
    raise _Stopped


class Pacer:
    """One gateway run's side of the record; every method is a no-op off systemd.

    A gateway started by hand is restarted by a person, who needs no pacing,
    and must not leave a record behind for the service to trip over.
    """

    def __init__(self, notifier: Notifier, path: Path | None = None) -> None:
        self.notifier = notifier
        self.enabled = notifier.enabled
        self._path = path

    @property
    def path(self) -> Path:
        if self._path is None:
            self._path = record_path()
        return self._path

    def start(self) -> bool:
        """Note this start and wait as the record asks; False if stopped while waiting."""
        if not self.enabled:
            return True
        record = StartRecord.load(self.path)
        now = time.monotonic()
        failures = record.failures(now)
        wait = delay_for(failures)
        if failures == 0:
            record.starts = []
        record.starts.append((now, wait))
        record.clean = False
        with contextlib.suppress(OSError):
            record.save(self.path)
        if wait <= 0:
            return True
        self.notifier.extend_timeout(wait + 30.0)
        self.notifier.status(describe(failures, wait, record.last_error), force=True)
        # a stop while waiting (`cspctl gateway stop|restart|tcp on`) is a person acting:
        # leave quietly, and let the next start begin afresh
        previous = signal.signal(signal.SIGTERM, _raise_stopped)
        try:
            time.sleep(wait)
        except _Stopped:
            self.clean()
            return False
        finally:
            signal.signal(signal.SIGTERM, previous)
        self.notifier.status("starting", force=True)
        return True

    def clean(self) -> None:
        """A clean stop: the next start owes nothing to what came before."""
        if self.enabled:
            with contextlib.suppress(OSError):
                StartRecord(clean=True).save(self.path)

    def failed(self, message: str) -> None:
        """Remember why this run gives up, for the next start's ``STATUS=`` line."""
        if not self.enabled:
            return
        record = StartRecord.load(self.path)
        record.last_error = message.splitlines()[0][:200] if message else ""
        with contextlib.suppress(OSError):
            record.save(self.path)
