"""Making committed transactions durable: the WAL's fsync, on its own thread, in groups.

The store commits with ``synchronous=NORMAL``: ``COMMIT`` writes the transaction to
the WAL (the page cache) and returns in some 0.15 ms, and from then on it survives a
crash of any process.  Only a power loss or a kernel crash could still take it,
until the WAL is fsynced, 0.5 to 1.2 ms more on a typical disk.  :class:`WalSync`
does that fsync here, on a thread of its own, so the gateway can hand a committed
message to its recipients at once and tell its sender "accepted" once it is on disk.

Waiters are served in groups: whoever asks while an fsync is running waits for the
next one, which covers every write made before it started; so durability costs one
fsync per group, however many commits it covers.
"""

from __future__ import annotations

import asyncio
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from csp_core.errors import StorageUnavailable

log = logging.getLogger("cspd.store")


class WalSync:
    """Group fsync of the database's WAL (or the database itself, when it has none)."""

    def __init__(self, db_path: Path) -> None:
        self.db_path = db_path
        self.wal_path = Path(f"{db_path}-wal")
        self.syncs = 0  # fsyncs done, for tests and the bench
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="csp-sync")
        self._waiting: list[asyncio.Future[None]] = []
        self._runner: asyncio.Task[None] | None = None

    def durable(self) -> asyncio.Future[None]:
        """A future that resolves once what has been written so far is on disk (or
        fails with :class:`StorageUnavailable` when the disk refuses)."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append(fut)
        if self._runner is None or self._runner.done():
            self._runner = asyncio.create_task(self._run())
        return fut

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while self._waiting:
            group, self._waiting = self._waiting, []
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
        """Wait for the fsyncs asked for, then stop the thread."""
        if self._runner is not None:
            await asyncio.shield(self._runner)
        self._executor.shutdown(wait=True)
