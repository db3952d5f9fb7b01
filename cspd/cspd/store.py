"""SQLite storage: messages, rooms, members, agents and pending deliveries.

Appends, acks and the expiry of stale deliveries are group-committed: what
arrives while a batch is written goes together in the next one.  A batch is
committed in two steps (WAL mode, ``synchronous=NORMAL``):

1. its statements and ``COMMIT`` run on the event loop.  They write to the page
   cache only (about 0.15 ms), and from then on the batch survives a crash of any
   process: its messages may be handed to their recipients (``on_commit``);
2. the WAL is fsynced on a thread of its own (:class:`~cspd.walsync.WalSync`, one
   fsync for every batch committed before it starts); then the batch's futures
   resolve, and that is the moment a sender may be told "accepted".

So the disk's 0.5-1.2 ms fsync is in no recipient's way and never blocks the loop,
and a power loss can take only what no sender was told was accepted.  Running the
statements on a thread cost the gateway twice the CPU per message under load (each
releases the GIL and must win it back from a busy loop).  Checkpoints run on the
store thread through a connection of their own, every ``CHECKPOINT_EVERY`` commits.
Everything else (reads, the rare other writes, which fsync before they return) runs
whole on the store thread.  One lock keeps the connection to one user at a time, so
no read sees a transaction half made.

The connection runs in autocommit mode (``isolation_level=None``), where
``with db:`` is *not* a transaction: every write that takes more than one
statement goes through :meth:`Store._transaction` (``BEGIN IMMEDIATE`` ...
``COMMIT``), so it happens whole or not at all.

When the database cannot be written (a full disk, a read-only filesystem, an
I/O error) writes fail with :class:`StorageUnavailable` (HTTP 503, nothing
stored, nothing acknowledged) while reads go on; each later write simply tries
again, so the gateway recovers by itself once space returns.  A state directory
that is read-only at start is opened read-only and reopened for writing at the
first write that finds it writable again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sqlite3
import urllib.parse
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from csp_core.errors import StorageUnavailable
from csp_core.protocol import Message, now_iso

from .walsync import WalSync

T = TypeVar("T")

log = logging.getLogger("cspd.store")

# the sender of the summary line an agent gets for the deliveries that expired
# while it was away; a reserved name, so no agent can pose as it
SUMMARY_SENDER = "system"

SQLITE_MAX_INT = 2**63 - 1
# Under load, turns of the event loop a batch waits before it is written, so that
# the requests arriving meanwhile share it (eight concurrent senders: one commit per
# six to eight messages, not per two); "under load" is a commit in the last
# GATHER_WINDOW_S.  An idle store writes at once: a lone message waits for nothing.
GATHER_TURNS = 8
GATHER_WINDOW_S = 0.005
BUSY_WAIT_MS = 5000  # how long a write waits for another process's lock (thread only)
# commits between two checkpoints (a small commit adds 3-5 pages to the WAL; SQLite's
# own default is a checkpoint per 1,000 pages)
CHECKPOINT_EVERY = 250
_TO_ALL = json.dumps(["all"])  # the stored recipients of most messages

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
CREATE INDEX IF NOT EXISTS chat_messages_room_id ON chat_messages (room, id);
-- no query ever asked by (room, ts), and each index is one more page every commit writes
DROP INDEX IF EXISTS chat_messages_room_ts;
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
-- the summary lines ("37 older messages while you were away") an agent has not
-- acknowledged yet, with what each one counts: a newer summary folds them in, so
-- an agent never gets two
CREATE TABLE IF NOT EXISTS pending_summaries (
    message_id INTEGER PRIMARY KEY,
    recipient  TEXT NOT NULL,
    rooms      TEXT NOT NULL  -- JSON {room: [count, first missed id]}
);
-- how far each reader (an agent, over MCP's read_messages) has read: the newest
-- message id it has been shown or skipped past
CREATE TABLE IF NOT EXISTS read_cursors (
    reader  TEXT PRIMARY KEY,
    last_id INTEGER NOT NULL
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
class _Ack:
    """Acknowledged deliveries to drop, queued with the appends (one fsync for all)."""

    recipient: str
    ids: tuple[int, ...]


@dataclass(frozen=True)
class _Expire:
    """Drop a recipient's stale deliveries and leave one summary line in their place.

    Queued with the appends, so the summary gets its id in commit order and is
    published in that order too (a watcher drops an id lower than one it has seen).
    """

    recipient: str
    max_age_s: int
    max_count: int
    now: datetime


@dataclass(frozen=True)
class _Drafts:
    """Several messages posted together (``POST /v1/messages:batch``): one queue
    entry and one future for all of them, stored in order in one transaction."""

    drafts: tuple[Draft, ...]


_Write = Draft | _Drafts | _Ack | _Expire
_Result = Message | list[Message] | int | None
OnCommit = Callable[[list[Message]], None]


@dataclass(frozen=True)
class _Queued:
    item: _Write
    fut: asyncio.Future[_Result]
    on_commit: OnCommit | None = None  # told the messages once committed, before durable


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


def _iso(when: datetime) -> str:
    """The stored timestamp format (see :func:`now_iso`): comparable as text."""
    return when.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def summary_text(rooms: dict[str, tuple[int, int]]) -> str:
    """The one line an agent gets for the messages that expired while it was away.

    ``rooms`` maps a room to (how many, the first missed id); the command shows the
    room from just before the first one, which is where the agent wants to read.
    """
    total = sum(count for count, _ in rooms.values())
    noun = "message" if total == 1 else "messages"
    ordered = sorted(rooms.items(), key=lambda item: item[1][1])
    commands = ", ".join(f"`cspctl history --room {room} --since {first - 1}`"
                         for room, (_, first) in ordered)
    if len(ordered) == 1:
        return f"{total} older {noun} while you were away: {commands}"
    where = ", ".join(f"{count} in #{room}" for room, (count, _) in ordered)
    return f"{total} older {noun} while you were away ({where}): {commands}"


def within_bounds(messages: list[Message], max_age_s: int, max_count: int,
                  now: datetime | None = None) -> list[Message]:
    """The newest ``max_count`` of ``messages`` (oldest first) no older than ``max_age_s``.

    What an agent is replayed when the stale rest cannot be dropped (the disk is
    full): it still never gets the old ones typed in; they stay pending, and are
    summed up on a later connection that can write.
    """
    cutoff = _iso((now or datetime.now(UTC)) - timedelta(seconds=max_age_s))
    recent = [m for m in messages if m.ts >= cutoff]
    return recent[-max_count:] if max_count > 0 else []


def like_pattern(text: str) -> str:
    """``text`` anywhere in a column, for ``LIKE ? ESCAPE '\\'`` (its own % and _ literal)."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


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
        self._checkpointer: sqlite3.Connection | None = None  # store thread only
        self._commits_since_checkpoint = 0
        self._checkpointing: asyncio.Future[None] | None = None
        self._last_commit = float("-inf")  # loop time of the last commit
        self._wal = WalSync(path)
        # WAL mode, where COMMIT is made durable by self._wal; else COMMIT syncs itself
        self._syncs_itself = True
        self._queue: list[_Queued] = []
        self._flusher: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()  # one user of the connection at a time
        self.batches = 0
        self.last_id = 0  # the newest committed message id, kept as batches commit
        self.read_only = False  # opened read-only: the state directory could not be written
        # why the last write failed, until one succeeds again (for logs and status)
        self.write_error: str | None = None
        # rooms and their members as last read, so that a post does not wait on the
        # store thread for them; every change goes through this object and drops
        # them (see _changed_rooms), and a read that overlapped a change is not kept
        self._rooms: dict[str, Room] = {}
        self._members: dict[str, list[str]] = {}
        self._rooms_generation = 0

    # -- lifecycle ---------------------------------------------------------

    async def open(self) -> None:
        await self._run(self._open_sync)

    def _open_sync(self) -> None:
        try:
            self._db = self._connect_rw()
            self.read_only = False
        except (OSError, sqlite3.Error) as exc:
            # a read-only (or unwritable) state directory: serve what is stored,
            # refuse writes until it can be written again
            db = self._connect_ro()
            if db is None:
                raise StorageUnavailable(
                    f"cannot open the database {self.path}: {_reason(exc)}") from exc
            self._db = db
            self.read_only = True
            self._write_failed(_reason(exc))
        self.last_id = self._last_id_sync()

    def _connect_rw(self) -> sqlite3.Connection:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # create the file 0600 before SQLite does: its -wal/-shm companions copy
        # the database's mode, and they hold message text too
        os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        try:
            db.row_factory = sqlite3.Row
            wal = db.execute("PRAGMA journal_mode=WAL").fetchone()[0] == "wal"
            # in WAL mode a commit is made durable by WalSync (see the module docstring);
            # a filesystem without WAL support keeps the rollback journal and FULL
            db.execute(f"PRAGMA synchronous={'NORMAL' if wal else 'FULL'}")
            db.execute("PRAGMA wal_autocheckpoint=0")  # checkpoints: _checkpoint_sync
            self._syncs_itself = not wal
            db.execute("PRAGMA foreign_keys=ON")
            # no waiting for a lock on the event loop: see _begin_inline
            db.execute("PRAGMA busy_timeout=0")
            db.executescript(SCHEMA)
            for suffix in ("", "-wal", "-shm"):  # tighten files left by older versions
                with contextlib.suppress(FileNotFoundError):
                    Path(f"{self.path}{suffix}").chmod(0o600)
        except BaseException:
            db.close()
            raise
        return db

    def _connect_ro(self) -> sqlite3.Connection | None:
        """A read-only connection, or None when there is nothing to read.

        ``mode=ro`` reads a WAL database whose ``-wal``/``-shm`` exist (a gateway
        that stopped without a checkpoint); after a clean stop they are gone and
        cannot be created, and ``immutable=1`` reads the main file, which then
        holds everything.  Never immutable while a ``-wal`` exists: it would hide
        committed messages.
        """
        if not self.path.is_file():
            return None
        uri = "file:" + urllib.parse.quote(str(self.path)) + "?mode=ro"
        candidates = [uri]
        if not Path(f"{self.path}-wal").exists():
            candidates.append(uri + "&immutable=1")
        for candidate in candidates:
            db = sqlite3.connect(candidate, uri=True, check_same_thread=False,
                                 isolation_level=None)
            try:
                db.row_factory = sqlite3.Row
                db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
            except sqlite3.Error:
                db.close()
                continue
            return db
        return None

    async def close(self) -> None:
        if self._flusher is not None:
            await asyncio.shield(self._flusher)
        await self._wal.close()
        await self._run(self._close_sync)
        self._executor.shutdown(wait=True)

    def _close_sync(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.close()
            self._checkpointer = None
        if self._db is not None:
            self._db.close()  # the last connection: SQLite checkpoints and drops the WAL
            self._db = None

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn`` on the store thread, alone on the connection."""
        async with self._lock:
            return await self._on_thread(fn, *args)

    async def _on_thread(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, fn, *args)

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("store is not open")
        return self._db

    # -- transactions and storage failures --------------------------------

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction on the store thread: all of it commits, or none.

        ``BEGIN IMMEDIATE`` takes the write lock up front, so a transaction never
        fails halfway for a lock.  A storage failure (full, read-only, I/O) becomes
        :class:`StorageUnavailable`; other errors pass through unchanged.
        """
        with self._storage_errors():
            self._ensure_writable()
            db = self.db
            db.execute(f"PRAGMA busy_timeout={BUSY_WAIT_MS}")
            try:
                db.execute("BEGIN IMMEDIATE")
            finally:
                db.execute("PRAGMA busy_timeout=0")
            try:
                yield db
                db.execute("COMMIT")
            except BaseException:
                _roll_back(db)
                raise
            self._make_durable_here()
        self._write_ok()

    def _make_durable_here(self) -> None:
        """fsync what was committed, on the calling thread (a write on the store thread)."""
        if self._syncs_itself:
            return
        try:
            self._wal.sync_now()
        except OSError as exc:
            raise self._unavailable(_reason(exc)) from exc

    @contextlib.contextmanager
    def _storage_errors(self) -> Iterator[None]:
        """A storage failure becomes :class:`StorageUnavailable`; other errors pass."""
        try:
            yield
        except sqlite3.OperationalError as exc:
            if not _is_storage_failure(exc):
                raise
            raise self._unavailable(_reason(exc)) from exc

    def _ensure_writable(self) -> None:
        """Opened read-only: try read-write again (the directory may be writable now)."""
        if not self.read_only:
            return
        try:
            db = self._connect_rw()
        except (OSError, sqlite3.Error) as exc:
            raise self._unavailable(_reason(exc)) from exc
        old, self._db = self._db, db
        if old is not None:
            old.close()
        self.read_only = False
        log.info("the database %s is writable again", self.path)

    def _unavailable(self, reason: str) -> StorageUnavailable:
        self._write_failed(reason)
        return StorageUnavailable(
            f"the gateway cannot write its database {self.path} ({reason}); nothing was "
            "stored. Reading still works; writing resumes by itself once the disk has "
            "space (or the directory is writable) again", reason=reason)

    def _write_failed(self, reason: str) -> None:
        if self.write_error is None:  # log the change, not every refused write
            log.error("cannot write the database %s: %s; refusing new messages until "
                      "it can", self.path, reason)
        self.write_error = reason

    def _write_ok(self) -> None:
        if self.write_error is not None:
            log.info("the database %s takes writes again", self.path)
        self.write_error = None

    def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` as one transaction (on the store thread)."""
        with self._transaction() as db:
            return fn(db)

    # -- group commit: messages, acks, expiry -----------------------------

    async def append(self, draft: Draft) -> Message:
        """Store a message durably; returns once it is on disk."""
        result = await self._submit(draft)
        assert isinstance(result, Message)
        return result

    async def append_many(self, drafts: list[Draft],
                          on_commit: OnCommit | None = None) -> list[Message]:
        """Store several messages durably, in order; returns once all are on disk.

        They are queued together, so they go in one transaction (with whatever
        else is waiting) and one fsync.  ``on_commit`` is called with the stored
        messages as soon as they are committed, before the fsync: from then on only
        a power loss could take them, and their sender has not been told yet.
        """
        result = await self._submit(_Drafts(tuple(drafts)), on_commit)
        assert isinstance(result, list)
        return result

    async def _submit(self, item: _Write, on_commit: OnCommit | None = None) -> _Result:
        fut: asyncio.Future[_Result] = asyncio.get_running_loop().create_future()
        self._queue.append(_Queued(item, fut, on_commit))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        return await fut

    async def _flush(self) -> None:
        while self._queue:
            async with self._lock:
                for _ in range(self._turns_to_gather()):
                    await asyncio.sleep(0)
                batch, self._queue = self._queue, []
                error = await self._commit(batch)
                if error is not None and len(batch) > 1 and not isinstance(
                        error, StorageUnavailable):
                    # one bad message must not fail its neighbours: write each alone
                    # (not when the disk is full: each would fail the same way)
                    for item in batch:
                        self._fail([item], await self._commit([item]))
                else:
                    self._fail(batch, error)

    def _turns_to_gather(self) -> int:
        loop = asyncio.get_running_loop()
        return GATHER_TURNS if loop.time() - self._last_commit < GATHER_WINDOW_S else 0

    async def _commit(self, batch: list[_Queued]) -> Exception | None:
        """Commit a batch in one transaction, tell its ``on_commit``, and resolve its
        futures once it is durable; or return the error.  The caller holds the lock;
        the fsync is waited for without it, so the next batch is written meanwhile."""
        try:
            results = await self._write_batch([q.item for q in batch])
        except Exception as exc:  # the whole transaction failed: nobody is acked
            return exc
        self.batches += 1
        self._last_commit = asyncio.get_running_loop().time()
        for queued, result in zip(batch, results, strict=True):
            if isinstance(result, Message):
                self.last_id = max(self.last_id, result.id)
            elif isinstance(result, list) and result:
                self.last_id = max(self.last_id, result[-1].id)
                if queued.on_commit is not None:
                    _tell(queued.on_commit, result)
        self._maybe_checkpoint()
        if self._syncs_itself:
            self._settle(batch, results, None)
        else:
            self._wal.durable().add_done_callback(
                lambda done: self._settle(batch, results, _error_of(done)))
        return None

    @staticmethod
    def _settle(batch: list[_Queued], results: list[_Result],
                error: BaseException | None) -> None:
        """Resolve a batch's futures: with its results, or all with ``error``."""
        for queued, result in zip(batch, results, strict=True):
            if queued.fut.done():
                continue
            if error is None:
                queued.fut.set_result(result)
            else:
                queued.fut.set_exception(error)

    def _fail(self, batch: list[_Queued], error: Exception | None) -> None:
        if error is not None:
            self._settle(batch, [None] * len(batch), error)

    async def _write_batch(self, items: list[_Write]) -> list[_Result]:
        """A batch's transaction, committed on the event loop (page cache only).

        When another process holds the database's write lock the statements cannot
        start without waiting, and the loop must not wait: the whole batch then goes
        to the store thread, which waits up to ``BUSY_WAIT_MS``.
        """
        if not self._begin_inline():
            return await self._on_thread(self._write_batch_waiting, items)
        db = self.db
        try:
            with self._storage_errors():
                out = self._apply(db, items)
                db.execute("COMMIT")
        except BaseException:
            _roll_back(db)
            raise
        self._write_ok()
        return out

    def _maybe_checkpoint(self) -> None:
        """Every ``CHECKPOINT_EVERY`` commits, move the WAL into the database, on the
        store thread, while writing goes on."""
        self._commits_since_checkpoint += 1
        if self._commits_since_checkpoint < CHECKPOINT_EVERY or self._syncs_itself:
            return
        if self._checkpointing is not None and not self._checkpointing.done():
            return  # the last one still runs: the next commit asks again
        self._commits_since_checkpoint = 0
        self._checkpointing = asyncio.ensure_future(self._on_thread(self._checkpoint_sync))
        self._checkpointing.add_done_callback(_log_checkpoint_failure)

    def _checkpoint_sync(self) -> None:
        if self._checkpointer is None:
            self._checkpointer = sqlite3.connect(self.path, check_same_thread=False,
                                                 isolation_level=None)
            self._checkpointer.execute("PRAGMA synchronous=NORMAL")
        # PASSIVE: copies what it can without waiting for the writer or readers;
        # NORMAL syncs the WAL before and the database after
        self._checkpointer.execute("PRAGMA wal_checkpoint(PASSIVE)")

    def _begin_inline(self) -> bool:
        """``BEGIN IMMEDIATE`` without waiting; False when another process has the lock."""
        with self._storage_errors():
            self._ensure_writable()
            try:
                self.db.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                if (getattr(exc, "sqlite_errorcode", 0) & 0xFF) != sqlite3.SQLITE_BUSY:
                    raise
                return False
        return True

    def _write_batch_waiting(self, items: list[_Write]) -> list[_Result]:
        """The whole batch as one transaction, on the store thread."""
        with self._transaction() as db:
            return self._apply(db, items)

    def _apply(self, db: sqlite3.Connection, items: list[_Write]) -> list[_Result]:
        """A batch's statements, inside its transaction."""
        out: list[_Result] = []
        ts = now_iso()  # one timestamp for what commits together
        for item in items:
            if isinstance(item, _Ack):
                cur = db.executemany(
                    "DELETE FROM pending WHERE recipient = ? AND message_id = ?",
                    [(item.recipient, i) for i in item.ids])
                out.append(cur.rowcount)
            elif isinstance(item, _Expire):
                out.append(self._expire_sync(db, item))
            elif isinstance(item, _Drafts):
                out.append([self._insert_sync(db, d, ts) for d in item.drafts])
            else:
                out.append(self._insert_sync(db, item, ts))
        return out

    @staticmethod
    def _insert_sync(db: sqlite3.Connection, d: Draft, ts: str | None = None) -> Message:
        ts = ts or now_iso()
        cur = db.execute(
            "INSERT INTO chat_messages (room, sender, recipients, kind, content, ts,"
            " hops, urgent) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (d.room, d.sender, _TO_ALL if d.to == ["all"] else json.dumps(d.to), d.kind,
             d.content, ts, d.hops, int(d.urgent)),
        )
        mid = int(cur.lastrowid or 0)
        if d.deliver_to:
            db.executemany(
                "INSERT OR IGNORE INTO pending (recipient, message_id) VALUES (?, ?)",
                [(r, mid) for r in d.deliver_to],
            )
        return Message(mid, d.room, d.sender, list(d.to), d.kind, d.content, ts,
                       d.hops, d.urgent)

    async def ack(self, recipient: str, ids: Iterable[int]) -> int:
        """Drop acknowledged deliveries; returns how many were pending.

        Acks ride in the group commit with the appends: one transaction (and one
        fsync) for everything that arrived meanwhile, not one per id.
        """
        # ids SQLite cannot even represent are pending nowhere
        wanted = tuple(dict.fromkeys(int(i) for i in ids if 0 <= int(i) <= SQLITE_MAX_INT))
        if not wanted:
            return 0
        result = await self._submit(_Ack(recipient, wanted))
        assert isinstance(result, int)
        return result

    async def expire_pending(self, recipient: str, max_age_s: int, max_count: int,
                             now: datetime | None = None) -> Message | None:
        """Bound what waits for ``recipient``: the newest ``max_count`` deliveries no
        older than ``max_age_s`` stay; the rest are dropped and replaced by one summary
        line, a ``direct`` message from ``system`` to the recipient, which is pending
        itself (so it is delivered once and acknowledged like any message).  An
        unacknowledged older summary is folded into the new one.

        Called when an agent connects, so that one back after days is not typed in
        thousands of stale messages, each a paid model turn.  Returns the new
        summary, or None when nothing was stale.
        """
        result = await self._submit(_Expire(recipient, max_age_s, max_count,
                                            now or datetime.now(UTC)))
        assert result is None or isinstance(result, Message)
        return result

    def _expire_sync(self, db: sqlite3.Connection, op: _Expire) -> Message | None:
        r = op.recipient
        cutoff = _iso(op.now - timedelta(seconds=op.max_age_s))
        mine = ("FROM pending p JOIN chat_messages m ON m.id = p.message_id "
                "WHERE p.recipient = ? AND p.message_id NOT IN "
                "(SELECT message_id FROM pending_summaries WHERE recipient = ?)")
        # the oldest delivery the count bound keeps; anything before it is stale
        floor_row = db.execute(
            f"SELECT p.message_id {mine} ORDER BY p.message_id DESC LIMIT 1 OFFSET ?",
            (r, r, max(op.max_count, 1) - 1)).fetchone()
        floor = int(floor_row[0]) if floor_row else 0
        stale = f"{mine} AND (m.ts < ? OR p.message_id < ?)"
        args = (r, r, cutoff, floor)
        rooms: dict[str, tuple[int, int]] = {
            row[0]: (int(row[1]), int(row[2])) for row in db.execute(
                f"SELECT m.room, COUNT(*), MIN(m.id) {stale} GROUP BY m.room", args)}
        # summaries this recipient has acknowledged are done with
        db.execute("DELETE FROM pending_summaries WHERE recipient = ? AND message_id NOT IN "
                   "(SELECT message_id FROM pending WHERE recipient = ?)", (r, r))
        if not rooms:
            return None
        db.execute(f"DELETE FROM pending WHERE recipient = ? AND message_id IN "
                   f"(SELECT p.message_id {stale})", (r, *args))
        for (folded,) in db.execute(
                "SELECT rooms FROM pending_summaries WHERE recipient = ?", (r,)).fetchall():
            for room, (count, first) in json.loads(folded).items():
                had = rooms.get(room)
                rooms[room] = ((count, first) if had is None
                               else (had[0] + count, min(had[1], first)))
        db.execute("DELETE FROM pending WHERE recipient = ? AND message_id IN "
                   "(SELECT message_id FROM pending_summaries WHERE recipient = ?)", (r, r))
        db.execute("DELETE FROM pending_summaries WHERE recipient = ?", (r,))
        home = db.execute("SELECT room FROM agents WHERE name = ?", (r,)).fetchone()
        room = home[0] if home else max(rooms, key=lambda name: rooms[name][1])
        summary = self._insert_sync(db, Draft(
            room=room, sender=SUMMARY_SENDER, to=[r], kind="direct",
            content=summary_text(rooms), deliver_to=(r,)))
        db.execute("INSERT INTO pending_summaries (message_id, recipient, rooms) "
                   "VALUES (?, ?, ?)", (summary.id, r, json.dumps(rooms)))
        return summary

    # -- reads -------------------------------------------------------------

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

    async def search_history(self, room: str | None, since: int, limit: int,
                             text: str | None = None) -> list[Message]:
        """:meth:`history` keeping only messages whose content holds ``text`` (any case).

        Without ``since`` these are the newest ``limit`` matches, else the first
        ``limit`` after ``since``; oldest first either way.
        """
        if not text:
            return await self.history(room, since, limit)
        return await self._run(self._search_sync, room, since, limit, text)

    def _search_sync(self, room: str | None, since: int, limit: int,
                     text: str) -> list[Message]:
        if since >= SQLITE_MAX_INT or limit <= 0:
            return []
        where = ["id > ?", "content LIKE ? ESCAPE '\\'"]
        args: list[Any] = [since, like_pattern(text)]
        if room is not None:
            where.append("room = ?")
            args.append(room)
        clause = " AND ".join(where)
        order = "DESC" if since <= 0 else "ASC"
        rows = self.db.execute(
            f"SELECT * FROM chat_messages WHERE {clause} ORDER BY id {order} LIMIT ?",
            (*args, min(limit, SQLITE_MAX_INT))).fetchall()
        return sorted((_row_to_message(r) for r in rows), key=lambda m: m.id)

    async def newest(self, room: str | None, limit: int, *, before: int | None = None,
                     text: str | None = None, sender: str | None = None) -> list[Message]:
        """The newest ``limit`` messages before id ``before`` (holding ``text``, in any
        case; from ``sender``), oldest first: the web view's pages and its search."""
        return await self._run(self._newest_sync, room, limit, before, text, sender)

    def _newest_sync(self, room: str | None, limit: int, before: int | None,
                     text: str | None, sender: str | None) -> list[Message]:
        where = ["id < ?"]
        args: list[Any] = [min(before or SQLITE_MAX_INT, SQLITE_MAX_INT)]
        if text:
            where.append("content LIKE ? ESCAPE '\\'")
            args.append(like_pattern(text))
        if sender:
            where.append("sender = ?")
            args.append(sender)
        if room is not None:
            where.append("room = ?")
            args.append(room)
        rows = self.db.execute(
            f"SELECT * FROM chat_messages WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT ?",
            (*args, max(0, min(limit, SQLITE_MAX_INT)))).fetchall()
        return [_row_to_message(r) for r in reversed(rows)]

    async def pending_recipients(self, message_id: int) -> list[str]:
        """Who message ``message_id`` still waits for (not acknowledged yet), sorted."""
        rows = await self._run(lambda: self.db.execute(
            "SELECT recipient FROM pending WHERE message_id = ?", (message_id,)).fetchall())
        return sorted(str(r[0]) for r in rows)

    async def read_cursor(self, reader: str) -> int | None:
        """The newest message id ``reader`` has read (None: it never read)."""
        row = await self._run(lambda: self.db.execute(
            "SELECT last_id FROM read_cursors WHERE reader = ?", (reader,)).fetchone())
        return int(row[0]) if row else None

    async def set_read_cursor(self, reader: str, last_id: int) -> None:
        """Move ``reader``'s cursor to ``last_id`` (only ever forward)."""
        await self._run(self._write, lambda db: db.execute(
            "INSERT INTO read_cursors (reader, last_id) VALUES (?, ?) ON CONFLICT(reader) "
            "DO UPDATE SET last_id = MAX(last_id, excluded.last_id)", (reader, last_id)))

    async def get(self, message_id: int) -> Message | None:
        rows = await self._run(lambda: self.db.execute(
            "SELECT * FROM chat_messages WHERE id = ?", (message_id,)).fetchall())
        return _row_to_message(rows[0]) if rows else None

    async def pending(self, recipient: str, limit: int = 10000,
                      after: int = 0) -> list[Message]:
        """Messages delivered to ``recipient`` but not acknowledged yet, oldest first:
        the first ``limit`` after id ``after`` (a cursor, so that paging moves on)."""
        def run() -> list[Message]:
            if after >= SQLITE_MAX_INT or limit <= 0:
                return []
            rows = self.db.execute(
                "SELECT m.* FROM pending p JOIN chat_messages m ON m.id = p.message_id "
                "WHERE p.recipient = ? AND p.message_id > ? ORDER BY p.message_id LIMIT ?",
                (recipient, after, min(limit, SQLITE_MAX_INT))).fetchall()
            return [_row_to_message(r) for r in rows]
        return await self._run(run)

    async def pending_count(self, recipient: str) -> int:
        return await self._run(lambda: int(self.db.execute(
            "SELECT COUNT(*) FROM pending WHERE recipient = ?", (recipient,)).fetchone()[0]))

    def _last_id_sync(self) -> int:
        return int(self.db.execute(
            "SELECT COALESCE(MAX(id), 0) FROM chat_messages").fetchone()[0])

    async def room_hops(self, room: str) -> int:
        """The loop guard's count for a room: the hops of its newest non-system message
        (a human's message carries 0, an agent's the count after it).  The gateway's
        own lines (notices, an agent's away summary) are no one speaking: they keep
        the count."""
        row = await self._run(lambda: self.db.execute(
            "SELECT hops FROM chat_messages WHERE room = ? AND kind != 'system' "
            "AND sender != ? ORDER BY id DESC LIMIT 1", (room, SUMMARY_SENDER)).fetchone())
        return int(row[0]) if row else 0

    # -- rooms and members -------------------------------------------------

    async def ensure_room(self, name: str) -> Room:
        if (cached := self._rooms.get(name)) is not None:
            return cached

        def run() -> Room:
            # no write when it exists: a gateway on a read-only disk still starts
            room = self._room_sync(name)
            if room is not None:
                return room
            with self._transaction() as db:
                db.execute("INSERT OR IGNORE INTO rooms (name, created) VALUES (?, ?)",
                           (name, now_iso()))
                room = self._room_sync(name)
            assert room is not None
            return room
        async with self._changing_rooms():
            return await self._run(run)

    def _room_sync(self, name: str) -> Room | None:
        row = self.db.execute("SELECT * FROM rooms WHERE name = ?", (name,)).fetchone()
        if row is None:
            return None
        return Room(row["name"], row["created"], bool(row["relay"]), row["hop_limit"])

    async def room(self, name: str) -> Room | None:
        cached = self._rooms.get(name)
        if cached is not None:
            return cached
        generation = self._rooms_generation
        room = await self._run(self._room_sync, name)
        if room is not None and generation == self._rooms_generation:
            self._rooms[name] = room
        return room

    def _changed_rooms(self) -> None:
        """Rooms or memberships changed (or may have): forget what was read before."""
        self._rooms_generation += 1
        self._rooms.clear()
        self._members.clear()

    @contextlib.asynccontextmanager
    async def _changing_rooms(self) -> AsyncIterator[None]:
        try:
            yield
        finally:
            self._changed_rooms()

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
        def run(db: sqlite3.Connection) -> None:
            if relay is not None:
                db.execute("UPDATE rooms SET relay = ? WHERE name = ?", (int(relay), name))
            if hop_limit is not None:
                db.execute("UPDATE rooms SET hop_limit = ? WHERE name = ?", (hop_limit, name))
        async with self._changing_rooms():
            await self._run(self._write, run)

    async def members(self, room: str) -> list[str]:
        cached = self._members.get(room)
        if cached is not None:
            return list(cached)
        generation = self._rooms_generation
        members = await self._run(lambda: [r[0] for r in self.db.execute(
            "SELECT name FROM members WHERE room = ? ORDER BY name", (room,))])
        if generation == self._rooms_generation:
            self._members[room] = members
        return list(members)

    async def rooms_of(self, name: str) -> list[str]:
        return await self._run(lambda: [r[0] for r in self.db.execute(
            "SELECT room FROM members WHERE name = ? ORDER BY room", (name,))])

    async def join(self, room: str, name: str) -> None:
        def run() -> None:
            if self.db.execute("SELECT 1 FROM members WHERE room = ? AND name = ?",
                               (room, name)).fetchone():
                return  # already a member: no write (a read-only disk still serves)
            self._write(lambda db: db.execute(
                "INSERT OR IGNORE INTO members (room, name) VALUES (?, ?)", (room, name)))
        if name in self._members.get(room, ()):
            return  # a member (as read since the last change): nothing to write
        async with self._changing_rooms():
            await self._run(run)

    async def leave(self, room: str, name: str) -> None:
        async with self._changing_rooms():
            await self._run(self._write, lambda db: db.execute(
                "DELETE FROM members WHERE room = ? AND name = ?", (room, name)))

    # -- agents ------------------------------------------------------------

    async def upsert_agent(self, name: str, profile: str, room: str, command: str) -> None:
        ts = now_iso()
        await self._run(self._write, lambda db: db.execute(
            "INSERT INTO agents (name, profile, room, command, first_seen, last_seen) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(name) DO UPDATE SET "
            "profile = excluded.profile, room = excluded.room, "
            "command = excluded.command, last_seen = excluded.last_seen",
            (name, profile, room, command, ts, ts)))

    async def touch_agent(self, name: str) -> None:
        await self._run(self._write, lambda db: db.execute(
            "UPDATE agents SET last_seen = ? WHERE name = ?", (now_iso(), name)))

    async def agents(self) -> list[AgentRecord]:
        def run() -> list[AgentRecord]:
            rows = self.db.execute("SELECT * FROM agents ORDER BY name").fetchall()
            return [AgentRecord(r["name"], r["profile"], r["room"], r["command"],
                                r["first_seen"], r["last_seen"]) for r in rows]
        return await self._run(run)

    async def forget_agent(self, name: str) -> None:
        """Drop an agent, its memberships and what waits for it: all or nothing."""
        def run(db: sqlite3.Connection) -> None:
            db.execute("DELETE FROM agents WHERE name = ?", (name,))
            db.execute("DELETE FROM members WHERE name = ?", (name,))
            db.execute("DELETE FROM pending WHERE recipient = ?", (name,))
            db.execute("DELETE FROM pending_summaries WHERE recipient = ?", (name,))
            db.execute("DELETE FROM read_cursors WHERE reader = ?", (name,))
        async with self._changing_rooms():
            await self._run(self._write, run)


# what a full disk, a read-only or vanished directory, a failing device or another
# process holding the lock look like; anything else (a bad statement) is a bug
_STORAGE_FAILURES = frozenset({
    sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_READONLY,
    sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_PERM, sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED,
    sqlite3.SQLITE_NOMEM, sqlite3.SQLITE_PROTOCOL, sqlite3.SQLITE_NOLFS,
})


def _tell(on_commit: OnCommit, messages: list[Message]) -> None:
    """Hand committed messages on; a failure there must not undo their storing."""
    try:
        on_commit(messages)
    except Exception:
        log.exception("handing on committed messages %s..%s failed",
                      messages[0].id, messages[-1].id)


def _error_of(done: asyncio.Future[None]) -> BaseException | None:
    """What a finished fsync future failed with; cancelled (the loop going away) is a
    failure too: nobody may be told the message is on disk."""
    if done.cancelled():
        return StorageUnavailable("the gateway stopped before the message was on disk",
                                  reason="stopped")
    return done.exception()


def _log_checkpoint_failure(task: asyncio.Future[None]) -> None:
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.warning("checkpoint of the database failed (it is tried again later): %s",
                    _reason(exc))


def _roll_back(db: sqlite3.Connection) -> None:
    """End a failed transaction; SQLite may have rolled it back already (a full disk
    on COMMIT does)."""
    if db.in_transaction:
        with contextlib.suppress(sqlite3.Error):
            db.execute("ROLLBACK")


def _is_storage_failure(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    return code is None or (code & 0xFF) in _STORAGE_FAILURES


def _reason(exc: BaseException) -> str:
    """A short why for logs and error bodies: "database or disk is full"."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__
