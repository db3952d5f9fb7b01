"""The SQLite store: group commit, durability settings, pending/ack, history,
transactions, storage failures, and the bound on what waits for an absent agent."""

from __future__ import annotations

import asyncio
import errno
import os
import sqlite3
import stat
import threading
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cspd import store as store_module
from cspd.store import Draft, StorageUnavailable, Store, summary_text
from tests.polling import async_wait_for


def draft(i: int = 0, room: str = "main", deliver_to: tuple[str, ...] = ()) -> Draft:
    return Draft(room=room, sender="human", to=["all"], kind="chat", content=f"m{i}",
                 deliver_to=deliver_to)


async def wait_until(condition: Callable[[], object]) -> None:
    async def check() -> object:
        return condition()
    await async_wait_for(check, timeout=10, what="the store")


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


async def test_wal_and_its_fsync_before_an_append_returns(
        store: Store, fsynced: list[str]) -> None:
    # COMMIT does not fsync (NORMAL); the store's WalSync does, before any append returns
    assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.db.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    await store.append(draft())
    assert fsynced == [f"{store.path}-wal"]
    fsynced.clear()
    await asyncio.gather(*(store.append(draft(i)) for i in range(50)))
    assert 1 <= len(fsynced) < 50  # grouped: one fsync covers every commit before it


async def test_recipients_get_a_message_at_commit_its_sender_after_the_fsync(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    release = threading.Event()
    real_fsync = os.fsync

    def slow_fsync(fd: int) -> None:
        release.wait(10)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", slow_fsync)
    committed: list[list[int]] = []
    append = asyncio.ensure_future(store.append_many(
        [draft(1), draft(2)], on_commit=lambda ms: committed.append([m.id for m in ms])))
    await wait_until(lambda: committed)
    assert not append.done()  # handed on, but not acknowledged: not on disk yet
    reader = sqlite3.connect(store.path)  # and committed: another connection reads it
    assert reader.execute("SELECT COUNT(*) FROM chat_messages").fetchone()[0] == 2
    reader.close()
    release.set()
    assert [m.id for m in await append] == committed[0]


async def test_another_process_holding_the_lock_never_stalls_the_loop(store: Store) -> None:
    # the write lock taken elsewhere (a sqlite3 shell, say): the batch cannot start on the
    # loop without waiting, so it goes to the store thread, which waits; the loop runs on
    other = sqlite3.connect(store.path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    append = asyncio.ensure_future(store.append(draft(7)))
    started = time.monotonic()
    for _ in range(10):  # the loop turns while the append waits for the lock
        await asyncio.sleep(0.01)
    assert time.monotonic() - started < store_module.BUSY_WAIT_MS / 2000
    assert not append.done()
    other.execute("COMMIT")
    other.close()
    message = await append
    assert (await store.get(message.id)) == message


async def test_a_failed_fsync_refuses_the_append(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fsync", broken)
    with pytest.raises(StorageUnavailable, match="Input/output error"):
        await store.append(draft())
    monkeypatch.undo()
    await store.append(draft())  # the next fsync that works acknowledges again


async def test_checkpoints_run_off_the_writer(
        store: Store, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # SQLite itself never checkpoints (wal_autocheckpoint=0): without the store's own
    # checkpoints the WAL would only grow, and the database file hold no message
    assert store.db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
    monkeypatch.setattr(store_module, "CHECKPOINT_EVERY", 5)
    for i in range(4):
        await store.append(draft(i))
    assert store._checkpointing is None  # not yet
    for i in range(40):
        await store.append(draft(i))
    await wait_until(lambda: store._checkpointing is not None and store._checkpointing.done())
    # the database file alone (a copy, without its WAL) now holds checkpointed messages
    alone = tmp_path / "alone.sqlite3"
    alone.write_bytes(store.path.read_bytes())
    copy = sqlite3.connect(alone)
    try:
        assert copy.execute("SELECT COUNT(*) FROM chat_messages").fetchone()[0] >= 5
    finally:
        copy.close()


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


async def test_newest_pages_back_and_searches(store: Store) -> None:
    """The web view's reads: pages before an id, text (its own % and _ literal), sender;
    always the newest matches, shown oldest first; pending recipients by message."""
    texts = ["plain", "50% done", "A_B", "a_b", "50 done", "other room"]
    ids = []
    for i, text in enumerate(texts):
        d = Draft(room="dev" if i == 5 else "main", sender="codex" if i % 2 else "human",
                  to=["all"], kind="chat", content=text, deliver_to=("claude",) if i else ())
        ids.append((await store.append(d)).id)
    assert [m.id for m in await store.newest("main", 2)] == ids[3:5]
    assert [m.id for m in await store.newest("main", 10, before=ids[3])] == ids[:3]
    assert [m.content for m in await store.newest(None, 10, text="50%")] == ["50% done"]
    assert [m.content for m in await store.newest("main", 10, text="a_b")] == ["A_B", "a_b"]
    assert [m.id for m in await store.newest(None, 10, sender="codex")] == ids[1::2]
    assert await store.newest("main", 0) == []
    assert await store.pending_recipients(ids[1]) == ["claude"]
    assert await store.ack("claude", [ids[1]]) == 1
    assert await store.pending_recipients(ids[1]) == []


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


# -- transactions ------------------------------------------------------------


def statements(store: Store) -> list[str]:
    """Record the statements the store's connection runs from now on."""
    seen: list[str] = []
    store.db.set_trace_callback(seen.append)
    return seen


def unbracketed_writes(seen: list[str]) -> list[str]:
    """Writes that ran on their own (autocommit: one fsync each), outside BEGIN/COMMIT."""
    inside, out = False, []
    for sql in seen:
        if sql.startswith("BEGIN"):
            inside = True
        elif sql in ("COMMIT", "ROLLBACK"):
            inside = False
        elif not inside and sql.split(None, 1)[0].upper() in ("INSERT", "UPDATE", "DELETE"):
            out.append(sql)
    return out


async def test_ack_of_many_ids_is_one_transaction(store: Store) -> None:
    ids = [m.id for m in await asyncio.gather(
        *(store.append(draft(i, deliver_to=("codex",))) for i in range(500)))]
    seen = statements(store)
    batches = store.batches
    assert await store.ack("codex", ids) == 500
    assert store.batches == batches + 1
    assert seen.count("COMMIT") == 1 and seen[0] == "BEGIN IMMEDIATE"
    assert await store.pending_count("codex") == 0


async def test_concurrent_acks_share_the_group_commit(store: Store) -> None:
    ids = [m.id for m in await asyncio.gather(
        *(store.append(draft(i, deliver_to=("codex", "claude"))) for i in range(300)))]
    batches = store.batches
    seen = statements(store)
    # acks of two agents, one id each, and new messages, all at the same moment
    results = await asyncio.gather(*(store.ack("codex", [i]) for i in ids),
                                   *(store.ack("claude", [i]) for i in ids),
                                   *(store.append(draft(i)) for i in range(20)))
    assert results[:600] == [1] * 600
    assert store.batches - batches < 10, store.batches - batches  # not 620 commits
    commits = seen.count("COMMIT")
    assert 1 <= commits < 10, commits
    assert unbracketed_writes(seen) == []
    assert await store.pending_count("codex") == await store.pending_count("claude") == 0


async def test_forget_agent_is_all_or_nothing(store: Store) -> None:
    await store.upsert_agent("codex", "codex", "main", "codex")
    await store.join("main", "codex")
    await store.append(draft(1, deliver_to=("codex",)))
    # the last of its statements fails: the first ones must not stay done
    store.db.execute("CREATE TEMP TRIGGER no_pending_delete BEFORE DELETE ON pending "
                     "BEGIN SELECT RAISE(ABORT, 'refused'); END")
    with pytest.raises(sqlite3.Error, match="refused"):
        await store.forget_agent("codex")
    assert [a.name for a in await store.agents()] == ["codex"]
    assert await store.members("main") == ["codex"]
    assert await store.pending_count("codex") == 1
    store.db.execute("DROP TRIGGER no_pending_delete")
    await store.forget_agent("codex")
    assert await store.agents() == [] and await store.pending_count("codex") == 0


async def test_update_room_is_all_or_nothing(store: Store) -> None:
    await store.ensure_room("dev")
    store.db.execute("CREATE TEMP TRIGGER no_hop_limit BEFORE UPDATE OF hop_limit ON rooms "
                     "BEGIN SELECT RAISE(ABORT, 'refused'); END")
    with pytest.raises(sqlite3.Error, match="refused"):
        await store.update_room("dev", relay=True, hop_limit=3)
    room = await store.room("dev")
    assert room is not None and not room.relay and room.hop_limit is None


# -- storage failures --------------------------------------------------------


async def test_unwritable_database_refuses_writes_keeps_reads_and_recovers(
        store: Store) -> None:
    kept = await store.append(draft(1, deliver_to=("codex",)))
    # SQLite's own read-only switch: writes fail as on a read-only filesystem
    store.db.execute("PRAGMA query_only = ON")
    with pytest.raises(StorageUnavailable) as err:
        await store.append(draft(2))
    assert err.value.status == 503 and err.value.code == "storage_unavailable"
    assert "nothing was stored" in err.value.message
    assert store.write_error is not None
    # a batch fails whole and at once; acks and other writes are refused the same way
    results = await asyncio.gather(*(store.append(draft(i)) for i in range(5)),
                                   store.ack("codex", [kept.id]), return_exceptions=True)
    assert all(isinstance(r, StorageUnavailable) for r in results)
    with pytest.raises(StorageUnavailable):
        await store.update_room("main", relay=True)
    # reads keep working and see nothing that was refused
    assert await store.history(None, 0, 100) == [kept]
    assert await store.pending_count("codex") == 1
    assert store.last_id == kept.id
    store.db.execute("PRAGMA query_only = OFF")
    later = await store.append(draft(3))
    assert later.id > kept.id and store.write_error is None
    assert await store.ack("codex", [kept.id]) == 1


async def test_a_bad_statement_is_not_a_storage_failure(store: Store) -> None:
    await store.ensure_room("dev")
    store.db.execute("ALTER TABLE rooms RENAME COLUMN relay TO relay_gone")
    with pytest.raises(sqlite3.OperationalError):
        await store.update_room("dev", relay=True)
    assert store.write_error is None


# -- what waits for an agent that is away --------------------------------------


def later(days: float = 0) -> datetime:
    return datetime.now(UTC) + timedelta(days=days)


async def pending_ids(store: Store, name: str) -> list[int]:
    return [m.id for m in await store.pending(name)]


async def test_expire_keeps_the_newest_and_sums_up_the_rest(store: Store) -> None:
    await store.upsert_agent("codex", "codex", "main", "codex")
    sent = [(await store.append(draft(i, deliver_to=("codex",)))).id for i in range(150)]
    summary = await store.expire_pending("codex", max_age_s=86400, max_count=100)
    assert summary is not None
    assert (summary.sender, summary.to, summary.kind, summary.room) == (
        "system", ["codex"], "direct", "main")
    assert summary.content == ("50 older messages while you were away: "
                               f"`cspctl history --room main --since {sent[0] - 1}`")
    assert await pending_ids(store, "codex") == [*sent[50:], summary.id]
    assert store.last_id == summary.id
    # the summary line is a message like any other: in history, acknowledged once
    assert (await store.history(None, 0, 1)) == [summary]
    assert await store.expire_pending("codex", 86400, 100) is None  # nothing new is stale
    assert await store.ack("codex", [summary.id]) == 1


async def test_expire_by_age(store: Store) -> None:
    old = [(await store.append(draft(i, deliver_to=("codex",)))).id for i in range(3)]
    # two days on, three more arrive; the first three are past a day old by then
    store.db.execute("UPDATE chat_messages SET ts = ? WHERE id <= ?",
                     ((later(-2)).isoformat(timespec="milliseconds")[:23] + "Z", old[-1]))
    recent = [(await store.append(draft(i, deliver_to=("codex",)))).id for i in range(3)]
    summary = await store.expire_pending("codex", max_age_s=86400, max_count=100)
    assert summary is not None and summary.content.startswith("3 older messages")
    assert await pending_ids(store, "codex") == [*recent, summary.id]


async def test_expire_with_nothing_stale_changes_nothing(store: Store) -> None:
    sent = [(await store.append(draft(i, deliver_to=("codex",)))).id for i in range(5)]
    assert await store.expire_pending("codex", 86400, 5) is None
    assert await pending_ids(store, "codex") == sent
    assert await store.expire_pending("nobody", 86400, 5) is None


async def test_an_unread_summary_is_folded_into_the_next(store: Store) -> None:
    first = [(await store.append(draft(i, deliver_to=("codex",)))).id for i in range(5)]
    one = await store.expire_pending("codex", 86400, 2)  # 3 dropped
    assert one is not None and one.content.startswith("3 older messages")
    # the agent never read it; 4 more arrive, and it comes back again
    more = [(await store.append(draft(i, deliver_to=("codex",)))).id for i in range(4)]
    two = await store.expire_pending("codex", 86400, 2)
    assert two is not None
    # 3 from before, the 2 kept then, 2 of the 4 new ones: one line, from the first miss on
    assert two.content == ("7 older messages while you were away: "
                           f"`cspctl history --room main --since {first[0] - 1}`")
    assert await pending_ids(store, "codex") == [*more[2:], two.id]
    assert await store.get(one.id) == one  # still in history, just not pending


async def test_summary_names_each_room(store: Store) -> None:
    await store.ensure_room("dev")
    await store.upsert_agent("codex", "codex", "dev", "codex")
    main = [(await store.append(draft(i, deliver_to=("codex",)))).id for i in range(2)]
    dev = [(await store.append(draft(i, room="dev", deliver_to=("codex",)))).id
           for i in range(3)]
    summary = await store.expire_pending("codex", 86400, 1)
    assert summary is not None and summary.room == "dev"  # the agent's home room
    assert summary.content == (
        "4 older messages while you were away (2 in #main, 2 in #dev): "
        f"`cspctl history --room main --since {main[0] - 1}`, "
        f"`cspctl history --room dev --since {dev[0] - 1}`")


def test_summary_text_singular() -> None:
    assert summary_text({"main": (1, 42)}) == (
        "1 older message while you were away: `cspctl history --room main --since 41`")


async def test_summary_does_not_reset_the_loop_guard(store: Store) -> None:
    await store.append(Draft(room="main", sender="claude", to=["codex"], kind="direct",
                             content="x", hops=3, deliver_to=("codex",)))
    await store.append(Draft(room="main", sender="claude", to=["codex"], kind="direct",
                             content="y", hops=4, deliver_to=("codex",)))
    assert await store.expire_pending("codex", 86400, 1) is not None
    assert await store.room_hops("main") == 4


async def test_pending_pages_forward(store: Store) -> None:
    sent = [(await store.append(draft(i, deliver_to=("codex",)))).id for i in range(25)]
    got: list[int] = []
    after = 0
    while page := await store.pending("codex", 10, after=after):
        got.extend(m.id for m in page)
        after = page[-1].id
    assert got == sent


async def test_forget_agent_drops_its_summary(store: Store) -> None:
    await store.upsert_agent("codex", "codex", "main", "codex")
    for i in range(3):
        await store.append(draft(i, deliver_to=("codex",)))
    assert await store.expire_pending("codex", 86400, 1) is not None
    await store.forget_agent("codex")
    assert await store.pending_count("codex") == 0
    assert store.db.execute("SELECT COUNT(*) FROM pending_summaries").fetchone()[0] == 0


async def test_summary_survives_a_restart_and_is_not_made_twice(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    s = Store(path)
    await s.open()
    for i in range(4):
        await s.append(draft(i, deliver_to=("codex",)))
    summary = await s.expire_pending("codex", 86400, 2)
    await s.close()
    again = Store(path)
    await again.open()
    try:
        assert await again.expire_pending("codex", 86400, 2) is None
        assert (await again.pending("codex"))[-1] == summary
    finally:
        await again.close()


async def test_a_backlog_past_ten_thousand_comes_back_bounded(store: Store) -> None:
    # before: the first 10,000 of these were replayed on every reconnect, forever
    sent = [m.id for m in await asyncio.gather(
        *(store.append(draft(i, deliver_to=("codex",))) for i in range(12_000)))]
    summary = await store.expire_pending("codex", 86400, 100)
    assert summary is not None and summary.content.startswith("11900 older messages")
    assert await pending_ids(store, "codex") == [*sent[-100:], summary.id]
