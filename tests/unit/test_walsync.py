"""WalSync: fsyncs of the WAL in groups, at most IN_FLIGHT at once, each covering
everyone who asked before it started."""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path

import pytest

from cspd import walsync
from cspd.walsync import WalSync
from tests.polling import async_wait_for


async def test_groups_and_at_most_in_flight_fsyncs(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "csp.sqlite3"
    Path(f"{db}-wal").write_bytes(b"frames")
    started: list[int] = []
    release = threading.Event()
    real_fsync = os.fsync

    def held_fsync(fd: int) -> None:
        started.append(fd)
        release.wait(10)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", held_fsync)
    sync = WalSync(db)
    first = [sync.durable(), sync.durable()]  # one group: asked before it started

    async def running(n: int) -> bool:
        return len(started) == n

    await async_wait_for(lambda: running(1), timeout=10, what="the first fsync")
    second = sync.durable()  # a second fsync starts at once, beside the first
    await async_wait_for(lambda: running(2), timeout=10, what="the second fsync")
    later = [sync.durable(), sync.durable()]  # two run: these wait, then go together
    await asyncio.sleep(0.05)
    assert len(started) == walsync.IN_FLIGHT == 2
    assert not any(f.done() for f in [*first, second, *later])
    release.set()
    await asyncio.gather(*first, second, *later)
    assert sync.syncs == 3
    await sync.close()


async def test_without_a_wal_the_database_itself_is_synced(
        tmp_path: Path, fsynced: list[str]) -> None:
    db = tmp_path / "csp.sqlite3"
    db.write_bytes(b"pages")
    sync = WalSync(db)
    await sync.durable()
    assert fsynced == [str(db)]
    await sync.close()
