"""The SQLite store: group commit, durability settings, pending/ack, history."""

from __future__ import annotations

import asyncio
import sqlite3
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cspd.store import Draft, Store


def draft(i: int = 0, room: str = "main", deliver_to: tuple[str, ...] = ()) -> Draft:
    return Draft(room=room, sender="human", to=["all"], kind="chat", content=f"m{i}",
                 deliver_to=deliver_to)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = Store(tmp_path / "state" / "csp.sqlite3")
    await s.open()
    try:
        yield s
    finally:
        await s.close()


async def test_group_commit_batches_and_acks_only_committed(store: Store) -> None:
    # a second connection sees only committed rows: each sender checks its own
    # message is visible there the moment append() returns
    reader = sqlite3.connect(store.path)
    seen_committed: list[bool] = []

    async def one(i: int) -> int:
        message = await store.append(draft(i))
        row = reader.execute("SELECT content FROM chat_messages WHERE id = ?",
                             (message.id,)).fetchone()
        seen_committed.append(row is not None and row[0] == f"m{i}")
        return message.id

    n = 300
    ids = await asyncio.gather(*(one(i) for i in range(n)))
    reader.close()
    assert all(seen_committed) and len(seen_committed) == n
    assert ids == sorted(ids) and len(set(ids)) == n  # increasing in submission order
    assert 1 <= store.batches < n


async def test_wal_and_full_sync(store: Store) -> None:
    assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


async def test_files_are_private(store: Store) -> None:
    await store.append(draft())
    files = [p for p in store.path.parent.iterdir() if p.name.startswith(store.path.name)]
    assert store.path in files
    for p in files:  # the database and its -wal/-shm companions hold message text
        assert stat.S_IMODE(p.stat().st_mode) & 0o077 == 0, (p, oct(p.stat().st_mode))
    assert stat.S_IMODE(store.path.parent.stat().st_mode) == 0o700


async def test_pending_and_ack(store: Store) -> None:
    a = await store.append(draft(1, deliver_to=("codex", "claude")))
    b = await store.append(draft(2, deliver_to=("codex",)))
    assert [m.id for m in await store.pending("codex")] == [a.id, b.id]
    assert await store.pending_count("claude") == 1
    assert await store.ack("codex", [a.id, 999]) == 1
    assert [m.id for m in await store.pending("codex")] == [b.id]
    assert await store.ack("codex", [a.id]) == 0  # acking twice is harmless
    assert await store.pending_count("claude") == 1  # per recipient


async def test_ack_ignores_ids_sqlite_cannot_hold(store: Store) -> None:
    m = await store.append(draft(1, deliver_to=("codex",)))
    assert await store.ack("codex", [2**64, -(2**70), m.id]) == 1


async def test_history_semantics(store: Store) -> None:
    ids = [(await store.append(draft(i, room="main" if i % 2 else "dev"))).id
           for i in range(10)]
    main_ids = [i for n, i in enumerate(ids) if n % 2]
    # since=0: the last N, oldest first
    assert [m.id for m in await store.history(None, 0, 3)] == ids[-3:]
    # since=k: the next N after k
    assert [m.id for m in await store.history(None, ids[2], 3)] == ids[3:6]
    assert [m.id for m in await store.history("main", 0, 100)] == main_ids
    assert [m.id for m in await store.history("main", main_ids[1], 2)] == main_ids[2:4]
    assert await store.history(None, ids[-1], 10) == []
    assert await store.history("nowhere", 0, 10) == []


async def test_reopen_keeps_data(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    s = Store(path)
    await s.open()
    sent = [await s.append(draft(i, deliver_to=("codex",))) for i in range(5)]
    await s.ensure_room("dev")
    await s.join("dev", "codex")
    await s.close()

    s2 = Store(path)
    await s2.open()
    try:
        assert await s2.history(None, 0, 100) == sent
        assert [m.id for m in await s2.pending("codex")] == [m.id for m in sent]
        assert await s2.members("dev") == ["codex"]
        later = await s2.append(draft(99))
        assert later.id > sent[-1].id
    finally:
        await s2.close()


async def test_one_bad_message_does_not_fail_its_batch(store: Store) -> None:
    # a string SQLite cannot encode (a lone surrogate) fails on its own; the
    # messages committed with it in the same batch are still acknowledged
    bad = Draft(room="main", sender="human", to=["all"], kind="chat", content="\ud800")
    results = await asyncio.gather(*(store.append(draft(i)) for i in range(5)),
                                   store.append(bad),
                                   *(store.append(draft(i)) for i in range(5, 10)),
                                   return_exceptions=True)
    failures = [r for r in results if isinstance(r, BaseException)]
    assert len(failures) == 1
    assert len(await store.history(None, 0, 100)) == 10


async def test_close_waits_for_queued_appends(tmp_path: Path) -> None:
    s = Store(tmp_path / "db.sqlite3")
    await s.open()
    tasks = [asyncio.create_task(s.append(draft(i))) for i in range(50)]
    await asyncio.sleep(0)  # let them queue
    await s.close()
    assert all(t.done() and not t.exception() for t in tasks)
    s2 = Store(tmp_path / "db.sqlite3")
    await s2.open()
    try:
        assert len(await s2.history(None, 0, 100)) == 50
    finally:
        await s2.close()


async def test_rooms_members_agents(store: Store) -> None:
    room = await store.ensure_room("dev")
    assert room.name == "dev" and not room.relay
    await store.update_room("dev", relay=True, hop_limit=3)
    room2 = await store.room("dev")
    assert room2 is not None and room2.relay and room2.hop_limit == 3
    await store.upsert_agent("codex", "codex", "dev", "codex --x")
    await store.join("dev", "codex")
    await store.append(draft(1, deliver_to=("codex",)))
    assert [a.name for a in await store.agents()] == ["codex"]
    assert await store.rooms_of("codex") == ["dev"]
    await store.forget_agent("codex")
    assert await store.agents() == [] and await store.members("dev") == []
    assert await store.pending_count("codex") == 0


async def test_history_with_out_of_range_arguments(store: Store) -> None:
    m = await store.append(draft(1))
    assert await store.history(None, 10**30, 10) == []
    assert await store.history(None, 0, 10**30) == [m]
    assert await store.history(None, 0, 0) == []


async def test_last_id_follows_commits_and_survives_reopen(tmp_path: Path) -> None:
    s = Store(tmp_path / "db.sqlite3")
    await s.open()
    assert s.last_id == 0
    stored = [await s.append(draft(i)) for i in range(3)]
    assert s.last_id == stored[-1].id
    await s.close()
    again = Store(tmp_path / "db.sqlite3")
    await again.open()
    try:
        assert again.last_id == stored[-1].id
    finally:
        await again.close()


async def test_room_hops_come_from_the_newest_non_system_message(store: Store) -> None:
    assert await store.room_hops("main") == 0
    await store.append(Draft(room="main", sender="claude", to=["codex"], kind="direct",
                             content="x", hops=2))
    await store.append(Draft(room="main", sender="system", to=["all"], kind="system",
                             content="codex left"))
    assert await store.room_hops("main") == 2  # a notice does not reset the count
    await store.append(draft(9))  # a human speaks
    assert await store.room_hops("main") == 0
