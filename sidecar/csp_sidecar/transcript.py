"""Follow an agent CLI's own JSONL transcript as it grows, and report its turns.

Gemini CLI writes each prompt and each reply to its session file as the turn
happens, and cannot be given hooks per run; the sidecar names the session
(``--session-id``) and follows that file.  Which file, and what its records
look like, is data (``TranscriptSpec``, filled in by ``wiring.py`` from the
profile): a glob for the file, the field that holds a record's type, which types
are prompts and which replies, where their text is.

How it follows: inotify (through libc with ctypes: no dependency) on every
directory the glob can lead through, from the nearest one that exists, so a file
(and its directories) created after the follower started is found at once; then
on the file's directory, whose watch reports each append.  The fd is an asyncio
reader.  Where inotify is unavailable it polls, slowly, and says so in the log.

What it reports (``HookEvent``): a prompt record with text is ``prompt`` (Gemini
also writes a tool's result as a "user" record, without text: not a prompt); a reply record
with text is ``turn_end`` once the file has been quiet for ``settle_ms`` (or at
once when the next prompt arrives).  A transcript has no "turn over" record,
and a turn can have several replies (text, a tool call, more text): a reply
that a tool call or another reply follows within ``settle_ms`` is superseded
(its text is not reported: the turn's last reply is, like Claude's and Codex's
hooks report it).  Gemini records a tool call only when it has run, so a reply
followed by a tool that runs longer than ``settle_ms`` is reported as a turn end,
and the final reply as another one.  Each tool call is a ``tool`` event.
A record re-written with the same id (an update) is not reported twice.

A partial last line waits for its newline; a file replaced whole (rewritten,
renamed over) is read again from the start, skipping the records already seen
(by id when records have one, else by count).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import glob
import json
import logging
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .hooks import HookEvent, tool_line

log = logging.getLogger("csp_sidecar.transcript")

# inotify(7)
IN_MODIFY = 0x002
IN_CLOSE_WRITE = 0x008
IN_MOVED_FROM = 0x040
IN_MOVED_TO = 0x080
IN_CREATE = 0x100
IN_DELETE = 0x200
IN_Q_OVERFLOW = 0x4000
IN_ONLYDIR = 0x01000000
IN_ISDIR = 0x40000000
IN_NONBLOCK = 0o4000
IN_CLOEXEC = 0o2000000
DIR_MASK = (IN_MODIFY | IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE
            | IN_DELETE | IN_ONLYDIR)
_EVENT = struct.Struct("iIII")
READ_CHUNK = 8 * 1024 * 1024
FIRST_LINE_MAX = 1024 * 1024


@dataclass(frozen=True)
class TranscriptSpec:
    """What to follow and how to read it (see the ``[reports]`` table of gemini.toml).

    ``pattern``: a glob for the session's file, its placeholders already filled
    in.  ``session_field``: a field of the file's first record that must equal
    ``session`` (the file is then surely this run's).  ``id_field``: a record's id,
    for updates and rewrites.  ``prompt_fields``: the first of these fields
    present holds the prompt's text (what was typed, before the CLI expanded it).
    Text fields are strings or lists of parts (``[{"text": ...}]``, joined).
    """

    pattern: str
    session: str
    session_field: str | None = None
    id_field: str | None = None
    type_field: str = "type"
    prompt_types: tuple[str, ...] = ()
    reply_types: tuple[str, ...] = ()
    prompt_fields: tuple[str, ...] = ("content",)
    reply_field: str = "content"
    tool_calls_field: str | None = None
    tool_id_field: str = "id"
    tool_name_fields: tuple[str, ...] = ("name",)
    tool_input_field: str | None = None
    tool_summary_keys: tuple[str, ...] = ()
    settle_ms: int = 1000
    poll_interval: float = 0.5


def record_text(value: Any) -> str | None:
    """A record field as text: a string, or the ``text`` of each part in a list."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        texts = [p["text"] for p in value if isinstance(p, dict) and isinstance(p.get("text"), str)]
        texts += [p for p in value if isinstance(p, str)]
        return "".join(texts) if texts else None
    if isinstance(value, dict) and isinstance(value.get("text"), str):
        return str(value["text"])
    return None


class Inotify:
    """The few inotify calls the follower needs, through libc."""

    def __init__(self) -> None:
        name = ctypes.util.find_library("c") or "libc.so.6"
        self._libc = ctypes.CDLL(name, use_errno=True)
        self._libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
        fd = int(self._libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC))
        if fd < 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))
        self.fd = fd

    def add(self, path: Path, mask: int = DIR_MASK) -> int | None:
        """Watch ``path``; None when it cannot be watched (gone, no permission, limits)."""
        wd = int(self._libc.inotify_add_watch(self.fd, os.fsencode(path), mask))
        if wd < 0:
            log.debug("no inotify watch on %s: %s", path, os.strerror(ctypes.get_errno()))
            return None
        return wd

    def read(self) -> list[tuple[int, int, str]]:
        """Pending events as (watch, mask, name); [] when there are none."""
        try:
            data = os.read(self.fd, 65536)
        except BlockingIOError:
            return []
        out = []
        offset = 0
        while offset + _EVENT.size <= len(data):
            wd, mask, _cookie, size = _EVENT.unpack_from(data, offset)
            start = offset + _EVENT.size
            name = data[start:start + size].rstrip(b"\0").decode("utf-8", "surrogateescape")
            out.append((wd, mask, name))
            offset = start + size
        return out

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)


def _has_magic(part: str) -> bool:
    return glob.has_magic(part)


def watch_dirs(pattern: str) -> list[Path]:
    """The directories that may lead to a file matching ``pattern``, as they exist now.

    From the nearest existing ancestor of the pattern's fixed prefix down to each
    existing directory that the pattern's directory part can match.
    """
    parts = Path(pattern).parts[:-1]
    fixed = next((i for i, p in enumerate(parts) if _has_magic(p)), len(parts))
    prefix = Path(*parts[:fixed]) if fixed else Path(".")
    if not prefix.is_dir():
        ancestor = prefix
        while not ancestor.is_dir() and ancestor != ancestor.parent:
            ancestor = ancestor.parent
        return [ancestor]
    dirs = [prefix]
    for depth in range(fixed + 1, len(parts) + 1):
        dirs += [Path(p) for p in sorted(glob.glob(str(Path(*parts[:depth])))) if os.path.isdir(p)]
    return dirs


class TranscriptFollower:
    """Find the session's transcript once it appears and report its records as they come."""

    def __init__(self, spec: TranscriptSpec, on_event: Callable[[HookEvent], None],
                 *, use_inotify: bool = True) -> None:
        self.spec = spec
        self.on_event = on_event
        self.use_inotify = use_inotify
        self.path: Path | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._inotify: Inotify | None = None
        self._watched: set[Path] = set()
        self._poll_handle: asyncio.TimerHandle | None = None
        self._rejected: set[str] = set()
        self._inode: int | None = None
        self._offset = 0
        self._partial = b""
        self._records = 0
        self._skip = 0
        self._seen_ids: set[str] = set()
        self._seen_tools: set[str] = set()
        self._pending: dict[str, Any] | None = None
        self._settle: asyncio.TimerHandle | None = None
        self._closed = False

    @property
    def mode(self) -> str:
        """``inotify``, ``poll``, or ``stopped``: how the file is being followed."""
        if self._closed or self._loop is None:
            return "stopped"
        return "inotify" if self._inotify is not None else "poll"

    @property
    def bytes_read(self) -> int:
        """How far into the file (as it is now) the follower has read."""
        return self._offset

    # -- lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        if self.use_inotify:
            try:
                self._inotify = Inotify()
            except (OSError, AttributeError) as exc:
                log.warning("inotify unavailable (%s): polling %s every %.1fs instead",
                            exc, self.spec.pattern, self.spec.poll_interval)
        else:
            log.info("polling %s every %.1fs (inotify not used)",
                     self.spec.pattern, self.spec.poll_interval)
        if self._inotify is not None:
            self._loop.add_reader(self._inotify.fd, self._on_inotify)
            self._sync_watches()
        else:
            self._schedule_poll()
        self._scan()

    async def close(self) -> None:
        """Stop following; a reply still settling is reported first (it was the last)."""
        if self._closed:
            return
        self._flush()
        self._closed = True
        if self._inotify is not None and self._loop is not None:
            self._loop.remove_reader(self._inotify.fd)
            self._inotify.close()
            self._inotify = None
        if self._poll_handle is not None:
            self._poll_handle.cancel()

    # -- finding and reading the file ----------------------------------------------

    def _sync_watches(self) -> None:
        if self._inotify is None:
            return
        dirs = watch_dirs(self.spec.pattern)
        if self.path is not None:
            dirs.append(self.path.parent)
        for d in dirs:
            if d not in self._watched and self._inotify.add(d) is not None:
                self._watched.add(d)

    def _on_inotify(self) -> None:
        if self._inotify is None:
            return
        events = self._inotify.read()
        if any(mask & (IN_ISDIR | IN_Q_OVERFLOW) for _wd, mask, _name in events):
            self._sync_watches()
        if events:
            self._scan()

    def _schedule_poll(self) -> None:
        if self._loop is not None and not self._closed:
            self._poll_handle = self._loop.call_later(self.spec.poll_interval, self._poll)

    def _poll(self) -> None:
        self._scan()
        self._schedule_poll()

    def _scan(self) -> None:
        if self._closed:
            return
        try:
            if self.path is None:
                self._find()
            if self.path is not None:
                self._read_new()
        except OSError as exc:
            log.warning("transcript %s: %s", self.path or self.spec.pattern, exc)

    def _find(self) -> None:
        candidates = [c for c in glob.glob(self.spec.pattern) if c not in self._rejected]
        for candidate in sorted(candidates, key=_mtime, reverse=True):
            verdict = self._is_ours(Path(candidate))
            if verdict is None:
                continue  # its first record is not complete yet
            if not verdict:
                self._rejected.add(candidate)
                continue
            self.path = Path(candidate)
            log.info("following transcript %s (session %s)", self.path, self.spec.session)
            self._sync_watches()
            return

    def _is_ours(self, path: Path) -> bool | None:
        """True when the file's first record names our session; None: not written yet."""
        if self.spec.session_field is None:
            return True
        try:
            with path.open("rb") as f:
                first = f.readline(FIRST_LINE_MAX)
        except OSError:
            return None
        if not first.endswith(b"\n"):
            return None
        try:
            record = json.loads(first)
        except ValueError:
            return False
        value = record.get(self.spec.session_field) if isinstance(record, dict) else None
        return value is None or value == self.spec.session

    def _read_new(self) -> None:
        assert self.path is not None
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return  # being replaced: the rename brings it back
        try:
            st = os.fstat(fd)
            if self._inode is not None and (st.st_ino != self._inode or st.st_size < self._offset):
                self._rewritten()
            self._inode = st.st_ino
            os.lseek(fd, self._offset, os.SEEK_SET)
            data = os.read(fd, READ_CHUNK)
        finally:
            os.close(fd)
        if not data:
            return
        self._offset += len(data)
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        for line in lines:
            self._line(line)
        if len(data) == READ_CHUNK and self._loop is not None:
            self._loop.call_soon(self._scan)  # more than one chunk waiting

    def _rewritten(self) -> None:
        log.info("transcript %s was rewritten: reading it again", self.path)
        self._offset = 0
        self._partial = b""
        self._skip = 0 if self.spec.id_field else self._records
        self._records = 0

    # -- records -------------------------------------------------------------------

    def _line(self, line: bytes) -> None:
        if not line.strip():
            return
        self._records += 1
        if self._records <= self._skip:
            return
        try:
            record = json.loads(line)
        except ValueError as exc:
            log.warning("transcript %s: record %d is not JSON (%s)", self.path, self._records, exc)
            return
        if isinstance(record, dict):
            self._record(record)

    def _record(self, record: dict[str, Any]) -> None:
        kind = record.get(self.spec.type_field)
        if kind in self.spec.prompt_types:
            self._prompt(record)
        elif kind in self.spec.reply_types:
            self._reply(record)

    def _record_id(self, record: dict[str, Any]) -> str | None:
        if self.spec.id_field is None:
            return None
        value = record.get(self.spec.id_field)
        return str(value) if value is not None else None

    def _prompt(self, record: dict[str, Any]) -> None:
        rid = self._record_id(record)
        if rid is not None:
            if rid in self._seen_ids:
                return
            self._seen_ids.add(rid)
        text = next((t for f in self.spec.prompt_fields
                     if (t := record_text(record.get(f))) is not None), None)
        if text is None:
            return  # no text: a tool's result handed back to the model, the turn goes on
        self._flush()  # a new prompt: the last turn's reply is final
        self._emit(HookEvent("prompt", label=str(record.get(self.spec.type_field)),
                             prompt=text, thread=self.spec.session, raw=record))

    def _reply(self, record: dict[str, Any]) -> None:
        rid = self._record_id(record)
        self._tools(record)
        pending = self._pending
        if pending is not None and rid is not None and self._record_id(pending) == rid:
            self._cancel_settle()  # an update of the reply still settling replaces it
            self._pending = None
        elif rid is not None and rid in self._seen_ids:
            return  # an update of a reply reported or superseded before: nothing new
        else:
            self._supersede()
        if self._tool_calls(record) or not record_text(record.get(self.spec.reply_field)):
            if rid is not None:
                self._seen_ids.add(rid)  # a tool call's reply is not the turn's last word
            return
        self._pending = record
        if self._loop is not None:
            self._settle = self._loop.call_later(self.spec.settle_ms / 1000, self._flush)

    def _supersede(self) -> None:
        """A later reply came: the one settling is not the turn's last word."""
        self._cancel_settle()
        record, self._pending = self._pending, None
        rid = self._record_id(record) if record is not None else None
        if rid is not None:
            self._seen_ids.add(rid)

    def _tool_calls(self, record: dict[str, Any]) -> list[dict[str, Any]]:
        if self.spec.tool_calls_field is None:
            return []
        calls = record.get(self.spec.tool_calls_field)
        return [c for c in calls if isinstance(c, dict)] if isinstance(calls, list) else []

    def _tools(self, record: dict[str, Any]) -> None:
        for call in self._tool_calls(record):
            key = str(call.get(self.spec.tool_id_field) or json.dumps(call, sort_keys=True))
            if key in self._seen_tools:
                continue
            self._seen_tools.add(key)
            name = next((call[f] for f in self.spec.tool_name_fields if call.get(f)), None)
            args = call.get(self.spec.tool_input_field) if self.spec.tool_input_field else None
            self._emit(HookEvent("tool", label=str(record.get(self.spec.type_field)),
                                 thread=self.spec.session, raw=call,
                                 detail=tool_line(name, args, self.spec.tool_summary_keys)))

    def _cancel_settle(self) -> None:
        if self._settle is not None:
            self._settle.cancel()
            self._settle = None

    def _flush(self) -> None:
        """Report the reply that has settled (or that a new prompt made final)."""
        self._cancel_settle()
        record, self._pending = self._pending, None
        if record is None or self._closed:
            return
        rid = self._record_id(record)
        if rid is not None:
            self._seen_ids.add(rid)
        self._emit(HookEvent("turn_end", label=str(record.get(self.spec.type_field)),
                             reply=record_text(record.get(self.spec.reply_field)),
                             thread=self.spec.session, raw=record))

    def _emit(self, event: HookEvent) -> None:
        try:
            self.on_event(event)
        except Exception:
            log.exception("transcript event handler failed on %s", event.kind)


def _mtime(path: str) -> float:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return 0.0
