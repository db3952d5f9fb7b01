"""The agent's turn reports: the event model and the private channel they arrive on.

Claude Code and Codex run a command when a turn starts or ends (hooks, a notify
program).  That command is ``csp-hook`` (``hook_cmd.py``): it connects to this
sidecar's unix socket, named in the agent's environment as ``CSP_HOOK_SOCKET``,
writes one frame and leaves.  The frame is::

    b"CSPHOOK1 " + label + b"\\n" + payload

``label`` is the event's name as the CLI knows it (``Stop``, ``notify``) and
``payload`` the CLI's JSON, byte for byte.  What a payload means is data: the
profile's ``[reports]`` table maps each label to a kind and names the JSON fields
that hold the prompt, the reply, the thread and a detail (``HookSpec``), so this
module knows no CLI by name.

The channel is a stream socket (a 100 KB reply does not fit a datagram), in a
0700 directory, itself 0600; a connection from another uid is refused.  Bad
input (no frame, bad JSON, too large, too slow) is logged and dropped: nothing
an agent sends can raise into the sidecar's loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import socket
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from csp_core import paths
from csp_core.errors import ConfigError

log = logging.getLogger("csp_sidecar.hooks")

SOCKET_ENV = "CSP_HOOK_SOCKET"
HOOK_SOCKET_ENV = SOCKET_ENV
MAGIC = b"CSPHOOK1 "
MAX_PAYLOAD = 4 * 1024 * 1024
# a client that has connected gets this long to finish writing its frame
READ_TIMEOUT = 5.0
KINDS = ("prompt", "turn_end", "waiting", "tool", "other")
TOOL_LINE_MAX = 200
# longest unix socket path the kernel takes (sun_path is 108 bytes with its NUL)
MAX_SOCKET_PATH = 107


@dataclass(frozen=True)
class HookEvent:
    """One thing the agent CLI reported about its turn.

    ``kind``: ``prompt`` (the CLI received a prompt: it is busy now), ``turn_end``
    (the turn is over; ``reply`` is the reply's exact text, or None when the CLI
    gave none), ``waiting`` (it waits for the human: a permission or a question),
    ``tool`` (``detail`` is one line describing a tool call), ``other``.
    ``label`` is the event's own name (``Stop``, ``agent-turn-complete``, a
    transcript record type), ``thread`` the CLI's session or thread id.
    """

    kind: str
    label: str = ""
    prompt: str | None = None
    reply: str | None = None
    thread: str | None = None
    detail: str = ""
    raw: dict[str, Any] = field(default_factory=dict)


def socket_path(agent: str) -> Path:
    """Where agent ``agent``'s sidecar listens: ``$XDG_RUNTIME_DIR/csp/hooks/<agent>.sock``."""
    return paths.runtime_dir() / "hooks" / f"{agent}.sock"


# -- reading the profile's [reports] table ---------------------------------------


def _str(table: Mapping[str, Any], key: str, source: str) -> str | None:
    value = table.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ConfigError(f"{source}: '{key}' must be a string")
    return value


def _strs(table: Mapping[str, Any], key: str, source: str) -> tuple[str, ...]:
    value = table.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{source}: '{key}' must be a list of strings")
    return tuple(value)


def _kind(value: Any, source: str) -> str:
    if value not in KINDS:
        raise ConfigError(f"{source}: kind must be one of {', '.join(KINDS)}, not {value!r}")
    return str(value)


@dataclass(frozen=True)
class EventRule:
    """How to read one labelled event: its kind and which JSON fields hold what.

    ``detail`` is the ``detail`` field's text, else (and always for a ``tool``
    event) the one-line description of the tool call ``tool_name``/``tool_input`` hold.

    ``kind_field``/``kind_map`` pick the kind from a field's value (Claude's
    ``Notification`` is ``waiting`` only for a permission or question prompt);
    ``matcher``, ``asynchronous`` and ``timeout`` are for the wiring (Claude's hook
    entry), not for parsing.
    """

    kind: str = "other"
    prompt: str | None = None
    reply: str | None = None
    thread: str | None = None
    detail: str | None = None
    tool_name: str | None = None
    tool_input: str | None = None
    kind_field: str | None = None
    kind_map: Mapping[str, str] = field(default_factory=dict)
    matcher: str | None = None
    asynchronous: bool = False
    timeout: int | None = None

    @classmethod
    def from_table(cls, table: Any, source: str) -> EventRule:
        if not isinstance(table, dict):
            raise ConfigError(f"{source}: must be a table")
        known = {"kind", "prompt", "reply", "thread", "detail", "tool_name", "tool_input",
                 "kind_field", "kind_map", "matcher", "async", "timeout"}
        for key in table:
            if key not in known:
                raise ConfigError(f"{source}: unknown key '{key}'")
        kind_map = table.get("kind_map", {})
        if not isinstance(kind_map, dict):
            raise ConfigError(f"{source}: 'kind_map' must be a table")
        asynchronous = table.get("async", False)
        timeout = table.get("timeout")
        if not isinstance(asynchronous, bool):
            raise ConfigError(f"{source}: 'async' must be true or false")
        if timeout is not None and (type(timeout) is not int or timeout < 1):
            raise ConfigError(f"{source}: 'timeout' must be a positive integer (seconds)")
        return cls(
            kind=_kind(table.get("kind", "other"), source),
            prompt=_str(table, "prompt", source), reply=_str(table, "reply", source),
            thread=_str(table, "thread", source), detail=_str(table, "detail", source),
            tool_name=_str(table, "tool_name", source),
            tool_input=_str(table, "tool_input", source),
            kind_field=_str(table, "kind_field", source),
            kind_map={str(k): _kind(v, f"{source}.kind_map") for k, v in kind_map.items()},
            matcher=_str(table, "matcher", source), asynchronous=asynchronous, timeout=timeout)


@dataclass(frozen=True)
class HookSpec:
    """The ``[reports]`` table's event part: label → rule, and how to spot side threads.

    ``label_field``: a JSON field that names the event and wins over the label
    csp-hook was given (Codex's notify JSON says ``"type": "agent-turn-complete"``).
    ``side_threads``: field → regular expression; an event whose field (a string,
    or any string in a list) matches comes from a side thread of the CLI's own
    (Codex's title-generation turn) and is delivered as ``other`` with
    ``detail="side thread"``, as is every later event of that thread.
    """

    events: Mapping[str, EventRule] = field(default_factory=dict)
    label_field: str | None = None
    side_threads: Mapping[str, re.Pattern[str]] = field(default_factory=dict)
    tool_summary_keys: tuple[str, ...] = ()

    @classmethod
    def from_reports(cls, reports: Mapping[str, Any], source: str) -> HookSpec:
        events = reports.get("events", {})
        if not isinstance(events, dict):
            raise ConfigError(f"{source}: 'reports.events' must be a table")
        side = reports.get("side_threads", {})
        if not isinstance(side, dict) or not all(isinstance(v, str) for v in side.values()):
            raise ConfigError(f"{source}: 'reports.side_threads' must be a table of patterns")
        try:
            side_threads = {str(k): re.compile(v) for k, v in side.items()}
        except re.error as exc:
            raise ConfigError(f"{source}: 'reports.side_threads': bad pattern: {exc}") from None
        return cls(
            events={str(label): EventRule.from_table(rule, f"{source}: reports.events.{label}")
                    for label, rule in events.items()},
            label_field=_str(reports, "label_field", f"{source}: reports"),
            side_threads=side_threads,
            tool_summary_keys=_strs(reports, "tool_summary_keys", f"{source}: reports"))

    def parse(self, label: str, raw: dict[str, Any]) -> HookEvent:
        """The event ``raw`` (the CLI's JSON) reports, read by the rule for its label."""
        if self.label_field and isinstance(raw.get(self.label_field), str):
            label = raw[self.label_field]
        rule = self.events.get(label)
        if rule is None:
            return HookEvent("other", label=label, detail=label, raw=raw)
        kind = rule.kind
        if rule.kind_field is not None:
            kind = rule.kind_map.get(str(raw.get(rule.kind_field)), rule.kind)
        detail = _text(raw.get(rule.detail)) if rule.detail else None
        if rule.tool_name is not None and (kind == "tool" or detail is None):
            detail = self.tool_line(raw.get(rule.tool_name), raw.get(rule.tool_input or ""))
        return HookEvent(
            kind, label=label,
            prompt=_text(raw.get(rule.prompt)) if rule.prompt else None,
            reply=_text(raw.get(rule.reply)) if rule.reply else None,
            thread=_text(raw.get(rule.thread)) if rule.thread else None,
            detail=detail or "", raw=raw)

    def tool_line(self, name: Any, tool_input: Any) -> str:
        """``Bash: ls -la``: the tool's name and its most telling argument, on one line."""
        return tool_line(name, tool_input, self.tool_summary_keys)

    def is_side(self, raw: Mapping[str, Any]) -> bool:
        for key, pattern in self.side_threads.items():
            value = raw.get(key)
            values = value if isinstance(value, list) else [value]
            if any(isinstance(v, str) and pattern.search(v) for v in values):
                return True
        return False


def _text(value: Any) -> str | None:
    """A field as text: strings as they are, a list of strings joined by blank lines."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return "\n\n".join(value)
    return json.dumps(value, ensure_ascii=False)


def tool_line(name: Any, tool_input: Any, summary_keys: tuple[str, ...]) -> str:
    """One line for a tool call: ``name: <first summary key found in its input>``."""
    label = name if isinstance(name, str) and name else "tool"
    arg = ""
    if isinstance(tool_input, dict):
        for key in summary_keys:
            if isinstance(tool_input.get(key), str) and tool_input[key].strip():
                arg = tool_input[key]
                break
        else:
            arg = json.dumps(tool_input, ensure_ascii=False) if tool_input else ""
    elif isinstance(tool_input, str):
        arg = tool_input
    line = " ".join(f"{label}: {arg}".split()) if arg else label
    return line if len(line) <= TOOL_LINE_MAX else line[:TOOL_LINE_MAX - 1] + "…"


# -- the channel -------------------------------------------------------------------


def decode_frame(data: bytes) -> tuple[str, dict[str, Any]]:
    """(label, JSON object) from one connection's bytes; ValueError when it is not one."""
    if not data.startswith(MAGIC):
        raise ValueError("not a csp-hook frame")
    head, sep, payload = data[len(MAGIC):].partition(b"\n")
    if not sep or not head or len(head) > 200:
        raise ValueError("bad frame header")
    label = head.decode("utf-8", "replace").strip()
    value = json.loads(payload.decode("utf-8", "surrogateescape")) if payload.strip() else {}
    if not isinstance(value, dict):
        raise ValueError(f"payload is a JSON {type(value).__name__}, not an object")
    return label, value


def _peer_uid(writer: asyncio.StreamWriter) -> int | None:
    sock = writer.get_extra_info("socket")
    if sock is None:
        return None
    try:
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except OSError:
        return None
    return int(struct.unpack("3i", creds)[1])


class HookChannel:
    """The sidecar's end: a unix socket server that turns each frame into a HookEvent.

    ``on_event`` is called on the loop, once per frame, in the order connections
    finish; an exception in it is logged, never raised into the loop.  Events of a
    side thread (``HookSpec.side_threads``) arrive as ``other``.
    """

    def __init__(self, path: Path, on_event: Callable[[HookEvent], None],
                 spec: HookSpec | Mapping[str, Any], *, max_bytes: int = MAX_PAYLOAD,
                 read_timeout: float = READ_TIMEOUT) -> None:
        self.path = path
        self.on_event = on_event
        # the rules, or the profile's [reports] table to read them from
        self.spec = spec if isinstance(spec, HookSpec) else HookSpec.from_reports(spec, str(path))
        self.max_bytes = max_bytes
        self.read_timeout = read_timeout
        self.side_threads: set[str] = set()
        self.agent_threads: set[str] = set()
        self._server: asyncio.AbstractServer | None = None
        self._inode: int | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def env(self) -> dict[str, str]:
        """What the agent's environment needs so csp-hook finds this channel."""
        return {SOCKET_ENV: str(self.path)}

    async def start(self) -> None:
        if len(os.fsencode(self.path)) > MAX_SOCKET_PATH:
            raise OSError(f"socket path too long for a unix socket: {self.path}")
        paths.ensure_private_dir(self.path.parent)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # a dead sidecar's socket of the same name
        self._server = await asyncio.start_unix_server(self._accept, path=str(self.path))
        os.chmod(self.path, 0o600)
        self._inode = self.path.stat().st_ino

    async def close(self) -> None:
        """Stop listening and remove the socket (only if it is still ours)."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for task in list(self._tasks):
            task.cancel()
        try:
            if self._inode is not None and self.path.stat().st_ino == self._inode:
                self.path.unlink()
        except FileNotFoundError:
            pass
        self._inode = None
        if server is not None:
            await server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            uid = _peer_uid(writer)
            if uid is not None and uid != os.getuid():
                log.warning("hook connection from uid %d refused", uid)
                return
            data = await asyncio.wait_for(self._read(reader), self.read_timeout)
            if data is not None:
                self.receive(data)
        except TimeoutError:
            log.warning("hook client too slow: dropped after %.1fs", self.read_timeout)
        except (OSError, asyncio.IncompleteReadError) as exc:
            log.warning("hook connection failed: %s", exc)
        finally:
            if task is not None:
                self._tasks.discard(task)
            writer.close()

    async def _read(self, reader: asyncio.StreamReader) -> bytes | None:
        chunks: list[bytes] = []
        size = 0
        while chunk := await reader.read(65536):
            size += len(chunk)
            if size > self.max_bytes + 256:
                log.warning("hook frame larger than %d bytes: dropped", self.max_bytes)
                return None
            chunks.append(chunk)
        return b"".join(chunks)

    def receive(self, data: bytes) -> None:
        """Parse one frame and hand its event on; bad frames are logged and dropped."""
        try:
            label, raw = decode_frame(data)
        except ValueError as exc:
            log.warning("hook frame dropped (%d bytes): %s", len(data), exc)
            return
        try:
            event = self._classify(self.spec.parse(label, raw))
        except Exception:
            log.exception("hook event %r could not be read", label)
            return
        log.debug("hook event %s (%s) thread=%s", event.kind, event.label, event.thread)
        try:
            self.on_event(event)
        except Exception:
            log.exception("hook event handler failed on %s", event.kind)

    def _classify(self, event: HookEvent) -> HookEvent:
        """A side thread's events (Codex's title turn) are ``other``, never a turn end.

        A thread that has had one of the agent's own events is never taken for a
        side thread later (a reply that happens to look like a title stays a reply).
        """
        thread = event.thread
        side = thread is not None and thread in self.side_threads
        if not side and thread not in self.agent_threads and self.spec.is_side(event.raw):
            side = True
            if thread is not None:
                self.side_threads.add(thread)
                log.info("thread %s is a side thread of the CLI (not the agent's turns)", thread)
        if not side:
            if thread is not None:
                self.agent_threads.add(thread)
            return event
        return HookEvent("other", label=event.label, thread=event.thread,
                         detail="side thread", raw=event.raw)
