"""SQLite storage: messages, rooms, members, agents and pending deliveries.

All database work runs on one dedicated thread so the event loop never blocks.
Appends are group-committed: while one transaction is being made durable
(``synchronous=FULL`` in WAL mode), new messages queue up and go together in
the next one, so durability costs one fsync per batch, not per message.  A
message's future resolves only after its transaction has committed; that is
the moment the sender may be told "accepted".
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sqlite3
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from .protocol import Message, now_iso

T = TypeVar("T")

SQLITE_MAX_INT = 2**63 - 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS chat_messages (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    room       TEXT NOT NULL,
    sender     TEXT NOT NULL,
    recipients TEXT NOT NULL,
    kind       TEXT NOT NULL,
    content    TEXT NOT NULL,
    ts         TEXT NOT NULL,
    hops       INTEGER NOT NULL DEFAULT 0,
    urgent     INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS chat_messages_room_ts ON chat_messages (room, ts);
CREATE INDEX IF NOT EXISTS chat_messages_room_id ON chat_messages (room, id);
CREATE TABLE IF NOT EXISTS rooms (
    name      TEXT PRIMARY KEY,
    created   TEXT NOT NULL,
    relay     INTEGER NOT NULL DEFAULT 0,
    hop_limit INTEGER
);
CREATE TABLE IF NOT EXISTS members (
    room TEXT NOT NULL,
    name TEXT NOT NULL,
    PRIMARY KEY (room, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS agents (
    name       TEXT PRIMARY KEY,
    profile    TEXT NOT NULL DEFAULT '',
    room       TEXT NOT NULL,
    command    TEXT NOT NULL DEFAULT '',
    first_seen TEXT NOT NULL,
    last_seen  TEXT NOT NULL
);
-- one row per (recipient, message) not yet acknowledged by the recipient
CREATE TABLE IF NOT EXISTS pending (
    recipient  TEXT NOT NULL,
    message_id INTEGER NOT NULL,
    PRIMARY KEY (recipient, message_id)
) WITHOUT ROWID;
"""


@dataclass(frozen=True)
class Draft:
    """A message before it has an id; ``deliver_to`` get a pending delivery row."""

    room: str
    sender: str
    to: list[str]
    kind: str
    content: str
    deliver_to: tuple[str, ...] = ()
    hops: int = 0
    urgent: bool = False


@dataclass(frozen=True)
class Room:
    name: str
    created: str
    relay: bool
    hop_limit: int | None


@dataclass(frozen=True)
class AgentRecord:
    name: str
    profile: str
    room: str
    command: str
    first_seen: str
    last_seen: str


def _row_to_message(row: sqlite3.Row) -> Message:
    return Message(
        id=row["id"],
        room=row["room"],
        sender=row["sender"],
        to=json.loads(row["recipients"]),
        kind=row["kind"],
        content=row["content"],
        ts=row["ts"],
        hops=row["hops"],
        urgent=bool(row["urgent"]),
    )


class Store:
    """Async facade over one SQLite connection living on its own thread."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="csp-store")
        self._db: sqlite3.Connection | None = None
        self._queue: list[tuple[Draft, asyncio.Future[Message]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self.batches = 0
        self.last_id = 0  # the newest committed message id, kept as batches commit

    # -- lifecycle ---------------------------------------------------------

    async def open(self) -> None:
        await self._run(self._open_sync)

    def _open_sync(self) -> None:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # create the file 0600 before SQLite does: its -wal/-shm companions copy
        # the database's mode, and they hold message text too
        os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("PRAGMA foreign_keys=ON")
        db.execute("PRAGMA busy_timeout=5000")
        db.executescript(SCHEMA)
        for suffix in ("", "-wal", "-shm"):  # tighten files left by older versions
            with contextlib.suppress(FileNotFoundError):
                Path(f"{self.path}{suffix}").chmod(0o600)
        self._db = db
        self.last_id = self._last_id_sync()

    async def close(self) -> None:
        if self._flusher is not None:
            await asyncio.shield(self._flusher)
        await self._run(self._close_sync)
        self._executor.shutdown(wait=True)

    def _close_sync(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, fn, *args)

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("store is not open")
        return self._db

    # -- messages ----------------------------------------------------------

    async def append(self, draft: Draft) -> Message:
        """Store a message durably; returns once it is committed."""
        fut: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._queue.append((draft, fut))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        return await fut

    async def _flush(self) -> None:
        while self._queue:
            batch, self._queue = self._queue, []
            error = await self._commit(batch)
            if error is not None and len(batch) > 1:
                # one bad message must not fail its neighbours: write each alone
                for item in batch:
                    self._fail([item], await self._commit([item]))
            else:
                self._fail(batch, error)

    async def _commit(self, batch: list[tuple[Draft, asyncio.Future[Message]]],
                      ) -> Exception | None:
        """Write a batch in one transaction; resolve its futures, or return the error."""
        try:
            stored = await self._run(self._write_batch, [d for d, _ in batch])
        except Exception as exc:  # the whole transaction failed: nobody is acked
            return exc
        self.batches += 1
        if stored:
            self.last_id = max(self.last_id, stored[-1].id)
        for (_, fut), message in zip(batch, stored, strict=True):
            if not fut.done():
                fut.set_result(message)
        return None

    @staticmethod
    def _fail(batch: list[tuple[Draft, asyncio.Future[Message]]],
              error: Exception | None) -> None:
        if error is None:
            return
        for _, fut in batch:
            if not fut.done():
                fut.set_exception(error)

    def _write_batch(self, drafts: list[Draft]) -> list[Message]:
        db = self.db
        out: list[Message] = []
        db.execute("BEGIN IMMEDIATE")
        try:
            for d in drafts:
                ts = now_iso()
                cur = db.execute(
                    "INSERT INTO chat_messages (room, sender, recipients, kind, content, ts,"
                    " hops, urgent) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (d.room, d.sender, json.dumps(d.to), d.kind, d.content, ts, d.hops,
                     int(d.urgent)),
                )
                mid = int(cur.lastrowid or 0)
                db.executemany(
                    "INSERT OR IGNORE INTO pending (recipient, message_id) VALUES (?, ?)",
                    [(r, mid) for r in d.deliver_to],
                )
                out.append(Message(mid, d.room, d.sender, list(d.to), d.kind, d.content, ts,
                                   d.hops, d.urgent))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return out

    async def history(self, room: str | None, since: int, limit: int) -> list[Message]:
        """Oldest first: the ``limit`` messages after ``since``, or the last ``limit``
        messages when ``since`` is 0."""
        return await self._run(self._history_sync, room, since, limit)

    def _history_sync(self, room: str | None, since: int, limit: int) -> list[Message]:
        if since >= SQLITE_MAX_INT or limit <= 0:  # nothing is after the largest id
            return []
        limit = min(limit, SQLITE_MAX_INT)
        where = ["id > ?"]
        args: list[Any] = [since]
        if room is not None:
            where.append("room = ?")
            args.append(room)
        clause = " AND ".join(where)
        if since <= 0:
            # newest first, then flipped: "the last N messages"
            rows = self.db.execute(
                f"SELECT * FROM (SELECT * FROM chat_messages WHERE {clause} "
                "ORDER BY id DESC LIMIT ?) ORDER BY id", (*args, limit)).fetchall()
        else:
            rows = self.db.execute(
                f"SELECT * FROM chat_messages WHERE {clause} ORDER BY id LIMIT ?",
                (*args, limit)).fetchall()
        return [_row_to_message(r) for r in rows]

    async def get(self, message_id: int) -> Message | None:
        rows = await self._run(lambda: self.db.execute(
            "SELECT * FROM chat_messages WHERE id = ?", (message_id,)).fetchall())
        return _row_to_message(rows[0]) if rows else None

    async def pending(self, recipient: str, limit: int = 10000) -> list[Message]:
        """Messages delivered to ``recipient`` but not acknowledged yet, oldest first."""
        def run() -> list[Message]:
            rows = self.db.execute(
                "SELECT m.* FROM pending p JOIN chat_messages m ON m.id = p.message_id "
                "WHERE p.recipient = ? ORDER BY m.id LIMIT ?", (recipient, limit)).fetchall()
            return [_row_to_message(r) for r in rows]
        return await self._run(run)

    async def pending_count(self, recipient: str) -> int:
        return await self._run(lambda: int(self.db.execute(
            "SELECT COUNT(*) FROM pending WHERE recipient = ?", (recipient,)).fetchone()[0]))

    async def ack(self, recipient: str, ids: Iterable[int]) -> int:
        """Drop acknowledged deliveries; returns how many were pending."""
        # ids SQLite cannot even represent are pending nowhere
        pairs = [(recipient, int(i)) for i in ids if 0 <= int(i) <= SQLITE_MAX_INT]

        def run() -> int:
            with self.db:
                cur = self.db.executemany(
                    "DELETE FROM pending WHERE recipient = ? AND message_id = ?", pairs)
                return cur.rowcount
        return await self._run(run)

    def _last_id_sync(self) -> int:
        return int(self.db.execute(
            "SELECT COALESCE(MAX(id), 0) FROM chat_messages").fetchone()[0])

    async def room_hops(self, room: str) -> int:
        """The loop guard's count for a room: the hops of its newest non-system message
        (a human's message carries 0, an agent's the count after it)."""
        row = await self._run(lambda: self.db.execute(
            "SELECT hops FROM chat_messages WHERE room = ? AND kind != 'system' "
            "ORDER BY id DESC LIMIT 1", (room,)).fetchone())
        return int(row[0]) if row else 0

    # -- rooms and members -------------------------------------------------

    async def ensure_room(self, name: str) -> Room:
        def run() -> Room:
            with self.db:
                self.db.execute("INSERT OR IGNORE INTO rooms (name, created) VALUES (?, ?)",
                                (name, now_iso()))
            return self._room_sync(name)  # type: ignore[return-value]
        return await self._run(run)

    def _room_sync(self, name: str) -> Room | None:
        row = self.db.execute("SELECT * FROM rooms WHERE name = ?", (name,)).fetchone()
        if row is None:
            return None
        return Room(row["name"], row["created"], bool(row["relay"]), row["hop_limit"])

    async def room(self, name: str) -> Room | None:
        return await self._run(self._room_sync, name)

    async def rooms(self) -> list[tuple[Room, list[str]]]:
        def run() -> list[tuple[Room, list[str]]]:
            out = []
            for row in self.db.execute("SELECT name FROM rooms ORDER BY name").fetchall():
                room = self._room_sync(row["name"])
                assert room is not None
                members = [r[0] for r in self.db.execute(
                    "SELECT name FROM members WHERE room = ? ORDER BY name", (room.name,))]
                out.append((room, members))
            return out
        return await self._run(run)

    async def update_room(self, name: str, *, relay: bool | None = None,
                          hop_limit: int | None = None) -> None:
        def run() -> None:
            with self.db:
                if relay is not None:
                    self.db.execute("UPDATE rooms SET relay = ? WHERE name = ?",
                                    (int(relay), name))
                if hop_limit is not None:
                    self.db.execute("UPDATE rooms SET hop_limit = ? WHERE name = ?",
                                    (hop_limit, name))
        await self._run(run)

    async def members(self, room: str) -> list[str]:
        return await self._run(lambda: [r[0] for r in self.db.execute(
            "SELECT name FROM members WHERE room = ? ORDER BY name", (room,))])

    async def rooms_of(self, name: str) -> list[str]:
        return await self._run(lambda: [r[0] for r in self.db.execute(
            "SELECT room FROM members WHERE name = ? ORDER BY room", (name,))])

    async def join(self, room: str, name: str) -> None:
        def run() -> None:
            with self.db:
                self.db.execute("INSERT OR IGNORE INTO members (room, name) VALUES (?, ?)",
                                (room, name))
        await self._run(run)

    async def leave(self, room: str, name: str) -> None:
        def run() -> None:
            with self.db:
                self.db.execute("DELETE FROM members WHERE room = ? AND name = ?", (room, name))
        await self._run(run)

    # -- agents ------------------------------------------------------------

    async def upsert_agent(self, name: str, profile: str, room: str, command: str) -> None:
        def run() -> None:
            ts = now_iso()
            with self.db:
                self.db.execute(
                    "INSERT INTO agents (name, profile, room, command, first_seen, last_seen) "
                    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(name) DO UPDATE SET "
                    "profile = excluded.profile, room = excluded.room, "
                    "command = excluded.command, last_seen = excluded.last_seen",
                    (name, profile, room, command, ts, ts))
        await self._run(run)

    async def touch_agent(self, name: str) -> None:
        def run() -> None:
            with self.db:
                self.db.execute("UPDATE agents SET last_seen = ? WHERE name = ?",
                                (now_iso(), name))
        await self._run(run)

    async def agents(self) -> list[AgentRecord]:
        def run() -> list[AgentRecord]:
            rows = self.db.execute("SELECT * FROM agents ORDER BY name").fetchall()
            return [AgentRecord(r["name"], r["profile"], r["room"], r["command"],
                                r["first_seen"], r["last_seen"]) for r in rows]
        return await self._run(run)

    async def forget_agent(self, name: str) -> None:
        def run() -> None:
            with self.db:
                self.db.execute("DELETE FROM agents WHERE name = ?", (name,))
                self.db.execute("DELETE FROM members WHERE name = ?", (name,))
                self.db.execute("DELETE FROM pending WHERE recipient = ?", (name,))
        await self._run(run)
