"""Making committed transactions durable: the WAL's fsync, on threads of its own, in groups.

The store commits with ``synchronous=NORMAL``: ``COMMIT`` writes the transaction to
the WAL (the page cache) and returns in some 0.15 ms, and from then on it survives a
crash of any process.  Only a power loss or a kernel crash could still take it,
until the WAL is fsynced, 0.5 to 1.2 ms more on this machine's disk.
:class:`WalSync` does that fsync off the event loop, so the gateway can hand a
committed message to its recipients at once and tell its sender "accepted" once it
is on disk.

Waiters are served in groups: an fsync covers everyone who asked before it started
(every write they made is older), so durability costs one fsync per group, however
many commits it covers; up to ``IN_FLIGHT`` groups are synced at once.
"""

from __future__ import annotations

import asyncio
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from csp_core.errors import StorageUnavailable

log = logging.getLogger("cspd.store")


# fsyncs allowed at once.  With one, what commits while an fsync runs waits for it
# to end and then for a whole fsync of its own: 1.5 fsyncs on average.  A second
# one starts at once instead (the kernel and the device merge the flushes): with
# `make bench`'s eight senders, each waiting for its answer, two did more messages
# a second than one in each of eight interleaved pairs (5-60% more); three, no more.
IN_FLIGHT = 2


class WalSync:
    """Group fsync of the database's WAL (or the database itself, when it has none)."""

    def __init__(self, db_path: Path) -> None:
        self.db_path = db_path
        self.wal_path = Path(f"{db_path}-wal")
        self.syncs = 0  # fsyncs done (the tests count them)
        self._executor = ThreadPoolExecutor(max_workers=IN_FLIGHT,
                                            thread_name_prefix="csp-sync")
        self._waiting: list[asyncio.Future[None]] = []
        self._running: set[asyncio.Task[None]] = set()
        self._start_due = False

    def durable(self) -> asyncio.Future[None]:
        """A future that resolves once what has been written so far is on disk (or
        fails with :class:`StorageUnavailable` when the disk refuses)."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        self._waiting.append(fut)
        if not self._start_due:  # at the end of this turn: who asks in it goes together
            self._start_due = True
            loop.call_soon(self._start)
        return fut

    def _start(self) -> None:
        """An fsync for everyone waiting, when fewer than ``IN_FLIGHT`` run; else they
        wait for one to end (and then go together)."""
        self._start_due = False
        if not self._waiting or len(self._running) >= IN_FLIGHT:
            return
        group, self._waiting = self._waiting, []
        task = asyncio.ensure_future(self._sync(group))
        self._running.add(task)
        task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self._start()

    async def _sync(self, group: list[asyncio.Future[None]]) -> None:
        loop = asyncio.get_running_loop()
        error: Exception | None = None
        try:
            await loop.run_in_executor(self._executor, self.sync_now)
        except OSError as exc:
            log.error("cannot make the database %s durable: %s", self.db_path,
                      exc.strerror or exc)
            error = StorageUnavailable(
                f"the gateway could not make its database {self.db_path} durable "
                f"({exc.strerror or exc}); the message may not survive a power loss",
                reason=exc.strerror or str(exc))
        for fut in group:
            if fut.done():
                continue
            if error is None:
                fut.set_result(None)
            else:
                fut.set_exception(error)

    def sync_now(self) -> None:
        """fsync the WAL, here and now (on whichever thread calls it)."""
        try:
            fd = os.open(self.wal_path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:  # no WAL (yet, or after a clean close): the file itself
            fd = os.open(self.db_path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        self.syncs += 1

    async def close(self) -> None:
        """Wait for the fsyncs asked for, then stop the threads."""
        while self._running or self._waiting:
            if self._running:  # (always yields, so _ended runs even for one done)
                await asyncio.wait(set(self._running))
            else:  # a group whose fsync starts at the end of this turn
                await asyncio.sleep(0)
        self._executor.shutdown(wait=True)
