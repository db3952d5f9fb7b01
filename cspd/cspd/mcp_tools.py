"""The csp tools an agent uses over MCP: their schemas and what each one does.

Each tool acts as the connection's identity (:func:`cspd.identity.speaker_of`),
never as a name given in its arguments.  A tool that cannot do what was asked
(bad arguments, an unknown recipient, a full disk) returns a tool result with
``isError: true`` and a sentence saying why, so the model can correct itself;
the MCP session goes on.  The transport (sessions, JSON-RPC) is :mod:`cspd.mcp`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from csp_core.errors import BadRequest, CspError, NotFound
from csp_core.protocol import HUMAN, Message, check_name, mentions

from . import presence
from .gateway import Gateway, gateway_of
from .hub import Subscriber
from .identity import speaker_of
from .router import Post

MAX_WAIT_SECONDS = 300
READ_LIMIT = 50
HISTORY_LIMIT = 200
# a reader without a cursor yet (its first read) is shown its newest messages among
# these many recent ones, not the whole history
FIRST_READ_SCAN = 500

_ADDRESS_HELP = ("Addresses: '@all' (everyone in your room), '@name' (one agent, or "
                 "'@human' for the person running csp), '#room' (everyone in that room).")

TOOLS: list[dict[str, Any]] = [
    {
        "name": "send_message",
        "title": "Send a chat message",
        "description": (
            "Send a message to the csp group chat, where other coding agents and the "
            "human talk. You always speak as yourself. " + _ADDRESS_HELP + " Without "
            "'to' it goes to '@all' (or, with reply_to, to the author of that message). "
            "Keep messages short and specific; an agent you address gets your text typed "
            "into its terminal, so address only those who need it. Returns the new "
            "message's id."),
        "inputSchema": {
            "type": "object",
            "properties": {
                "text": {"type": "string", "minLength": 1,
                         "description": "The message text (plain text or markdown)."},
                "to": {"type": "array", "items": {"type": "string"},
                       "description": "Recipients, e.g. [\"@codex\", \"@gemini\"], "
                                      "[\"@all\"] or [\"#review\"]."},
                "reply_to": {"type": "integer", "minimum": 1,
                             "description": "The id of the message you answer."},
                "urgent": {"type": "boolean", "default": False,
                           "description": "Deliver as soon as the recipient's terminal "
                                          "can take it; only for what cannot wait."},
            },
            "required": ["text"],
            "additionalProperties": False,
        },
    },
    {
        "name": "read_messages",
        "title": "Read new messages",
        "description": (
            "Read the chat messages meant for you that you have not read yet (messages "
            "to your room and to you by name), oldest first, and mark them read: the "
            "next call returns only newer ones. With wait_seconds, waits up to that "
            "long for a message when none is unread. Use it to catch up, or to wait "
            "for an answer you asked another agent for."),
        "inputSchema": {
            "type": "object",
            "properties": {
                "wait_seconds": {"type": "number", "minimum": 0,
                                 "maximum": MAX_WAIT_SECONDS, "default": 0,
                                 "description": "Seconds to wait when nothing is unread "
                                                f"(0 to {MAX_WAIT_SECONDS})."},
                "limit": {"type": "integer", "minimum": 1, "maximum": READ_LIMIT,
                          "default": 20, "description": "At most this many messages."},
            },
            "additionalProperties": False,
        },
    },
    {
        "name": "list_agents",
        "title": "List the agents",
        "description": (
            "List the agents in the group chat: name, state (ready: can take a message "
            "now; busy: working; waiting: waiting for the human to answer a question "
            "or permission prompt; paused: paused by the human; starting; offline), "
            "profile (which CLI it is), room, and what it says it can do. Use it to "
            "find whom to ask."),
        "inputSchema": {"type": "object", "properties": {}, "additionalProperties": False},
    },
    {
        "name": "get_history",
        "title": "Search the chat history",
        "description": (
            "Read past messages of a room, oldest first, including ones not meant for "
            "you. Without 'since' you get the newest 'limit' messages; with it, the "
            "messages after that id. 'text' keeps only messages containing it (case "
            "does not matter). Does not change what read_messages returns."),
        "inputSchema": {
            "type": "object",
            "properties": {
                "room": {"type": "string",
                         "description": "Room name without '#' (default: your room)."},
                "since": {"type": "integer", "minimum": 0,
                          "description": "Only messages with a larger id."},
                "limit": {"type": "integer", "minimum": 1, "maximum": HISTORY_LIMIT,
                          "default": 50},
                "text": {"type": "string",
                         "description": "Only messages containing this text."},
            },
            "additionalProperties": False,
        },
    },
]

# old names still answered (not listed): post_message was send_message
ALIASES = {"post_message": "send_message"}


@dataclass(frozen=True)
class ToolResult:
    """What a tool gives back: data for the model, or why it failed."""

    data: Any
    is_error: bool = False

    def to_json(self, structured: bool) -> dict[str, Any]:
        text = self.data if isinstance(self.data, str) else json.dumps(
            self.data, ensure_ascii=False, indent=1)
        out: dict[str, Any] = {"content": [{"type": "text", "text": text}],
                               "isError": self.is_error}
        if structured and isinstance(self.data, dict) and not self.is_error:
            out["structuredContent"] = self.data
        return out


class ToolError(Exception):
    """A tool's own failure, shown to the model as an ``isError`` result."""


def _int(args: dict[str, Any], key: str, default: int, lo: int, hi: int) -> int:
    value = args.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
        raise ToolError(f"'{key}' must be a whole number from {lo} to {hi}")
    if not lo <= int(value) <= hi:
        raise ToolError(f"'{key}' must be from {lo} to {hi}, not {value}")
    return int(value)


def _str(args: dict[str, Any], key: str) -> str | None:
    value = args.get(key)
    if value is not None and not isinstance(value, str):
        raise ToolError(f"'{key}' must be a string")
    return value


def _addresses(raw: Any) -> list[str]:
    """``to`` as address words; a bare name is taken as ``@name`` (models forget the @)."""
    if raw is None:
        return []
    if isinstance(raw, str):
        raw = raw.replace(",", " ").split()
    if not isinstance(raw, list) or not all(isinstance(t, str) for t in raw):
        raise ToolError("'to' must be a list of addresses such as [\"@all\"]. " + _ADDRESS_HELP)
    return [t if t[:1] in "@#" else "@" + t for t in (w.strip() for w in raw) if t]


def _message(m: Message) -> dict[str, Any]:
    return m.to_json()


# -- send_message -------------------------------------------------------------------


async def send_message(request: web.Request, me: str, args: dict[str, Any]) -> ToolResult:
    gw = gateway_of(request)
    text = args.get("text", args.get("content"))  # post_message called it content
    if not isinstance(text, str) or not text.strip():
        raise ToolError("'text' is required: the message to send")
    to = _addresses(args.get("to"))
    room: str | None = None
    reply_to = args.get("reply_to")
    if reply_to is not None:
        original = await _original(gw, _int(args, "reply_to", 0, 1, 2**62))
        room = original.room
        if not to and original.sender not in (me, "system"):
            to = [f"@{original.sender}"]
        text = f"(re #{original.id}) {text}"
    urgent = args.get("urgent", False)
    if not isinstance(urgent, bool):
        raise ToolError("'urgent' must be true or false")
    gw.limiter.take(me)
    message = await gw.router.post(Post(sender=me, to=to or ["@all"], content=text,
                                        room=room, urgent=urgent))
    gw.update_status()
    return ToolResult({"id": message.id, "room": message.room, "to": message.to,
                       "kind": message.kind})


async def _original(gw: Gateway, message_id: int) -> Message:
    original = await gw.store.get(message_id)
    if original is None:
        raise ToolError(f"reply_to: there is no message #{message_id}")
    return original


# -- read_messages ------------------------------------------------------------------


def is_for(message: Message, reader: str, rooms: set[str]) -> bool:
    """Is ``message`` one ``reader`` should read: to its room or to it by name, not its own?

    Captured terminal output of other agents counts only where it names the reader.
    """
    if message.sender == reader:
        return False
    if reader in message.to:
        return True
    if message.room not in rooms:
        return False
    if message.kind == "output":
        return reader in mentions(message.content)
    return "all" in message.to


async def read_messages(request: web.Request, me: str, args: dict[str, Any]) -> ToolResult:
    gw = gateway_of(request)
    limit = _int(args, "limit", 20, 1, READ_LIMIT)
    wait = args.get("wait_seconds", 0) or 0
    if isinstance(wait, bool) or not isinstance(wait, int | float) or \
            not 0 <= wait <= MAX_WAIT_SECONDS:
        raise ToolError(f"'wait_seconds' must be a number from 0 to {MAX_WAIT_SECONDS}")
    arrived = asyncio.Event()
    watcher = _Watcher(gw, arrived) if wait > 0 else None
    try:
        deadline = time.monotonic() + float(wait)
        while True:
            arrived.clear()
            if _gone(request):  # nobody to show them to: they stay unread
                raise ToolError("the client went away before anything arrived")
            messages, more = await _take_unread(gw, me, limit)
            left = deadline - time.monotonic()
            if messages or watcher is None or left <= 0:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(arrived.wait(), left)
    finally:
        if watcher is not None:
            watcher.stop()
    return ToolResult({"messages": [_message(m) for m in messages], "more": more,
                       "you": me})


def _gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


async def _take_unread(gw: Gateway, me: str, limit: int) -> tuple[list[Message], bool]:
    """The reader's unread messages (up to ``limit``), marked read; and whether more wait."""
    rooms = set(await gw.store.rooms_of(me))
    cursor = await gw.store.read_cursor(me)
    if cursor is None:  # a first read: the newest of the recent messages
        last = gw.store.last_id
        recent = await gw.store.history(None, 0, FIRST_READ_SCAN)
        mine = [m for m in recent if is_for(m, me, rooms)]
        await gw.store.set_read_cursor(me, max([last, *(m.id for m in recent)]))
        return mine[-limit:], False
    scanned = await gw.store.history(None, cursor, FIRST_READ_SCAN)
    taken: list[Message] = []
    last_seen = cursor
    more = False
    for m in scanned:
        if is_for(m, me, rooms):
            if len(taken) == limit:
                more = True
                break
            taken.append(m)
        last_seen = m.id
    if len(scanned) == FIRST_READ_SCAN and not more:
        more = any(is_for(m, me, rooms) for m in await gw.store.history(
            None, last_seen, FIRST_READ_SCAN))
    if last_seen != cursor:
        await gw.store.set_read_cursor(me, last_seen)
    return taken, more


class _Watcher:
    """Sets ``event`` whenever a message is published (a wait re-reads the store)."""

    def __init__(self, gw: Gateway, event: asyncio.Event) -> None:
        async def seen(frame: dict[str, Any]) -> None:
            event.set()

        self.gw = gw
        self.sub = Subscriber(seen)
        self.sub.finish_replay([])  # nothing to replay: live messages only
        gw.hub.add(self.sub)
        self.task = asyncio.get_running_loop().create_task(self.sub.run_writer())

    def stop(self) -> None:
        self.gw.hub.remove(self.sub)
        self.sub.close()
        self.task.cancel()


# -- list_agents ----------------------------------------------------------------------

STATE_MEANING = {
    "ready": "can take a message now",
    "busy": "working",
    "waiting": "waiting for the human (a question or a permission prompt)",
    "paused": "paused by the human: messages wait",
    "starting": "starting up",
    "exited": "its CLI has exited",
    "offline": "not running: messages wait until it is back",
}


async def list_agents(request: web.Request, me: str, args: dict[str, Any]) -> ToolResult:
    gw = gateway_of(request)
    rows: list[dict[str, Any]] = []
    for rec in await gw.store.agents():
        sub = gw.hub.agents.get(rec.name)
        state = sub.state.state if sub is not None else "offline"
        can = sub.state.extra.get("capabilities") if sub is not None else None
        rows.append({"name": rec.name, "state": state, "profile": rec.profile,
                     "room": rec.room, "can": can if isinstance(can, str) else
                     _can(rec.profile, rec.command)})
    rows = presence.with_bus(request.app, rows)
    out = []
    for row in rows:
        state = str(row.get("state") or "offline")
        out.append({"name": row["name"], "you": row["name"] == me, "state": state,
                    "meaning": STATE_MEANING.get(state, state),
                    "profile": row.get("profile", ""), "room": row.get("room", ""),
                    "can": row.get("can") or _can(str(row.get("profile", "")), "")})
    return ToolResult({"agents": out, "you": me})


def _can(profile: str, command: str) -> str:
    """What an agent can do, when it does not say: its CLI (the profile names it)."""
    known = {"claude": "Claude Code: a coding agent (reads, edits and runs code)",
             "codex": "OpenAI Codex CLI: a coding agent (reads, edits and runs code)",
             "gemini": "Gemini CLI: a coding agent (reads, edits and runs code)",
             "aider": "aider: a coding agent that edits files in a git repository",
             "shell": "a shell: commands typed by the human"}
    return known.get(profile) or (f"runs {command}" if command else "unknown")


# -- get_history ----------------------------------------------------------------------


async def get_history(request: web.Request, me: str, args: dict[str, Any]) -> ToolResult:
    gw = gateway_of(request)
    room = _str(args, "room")
    if room:
        room = room.lstrip("#")
        try:
            check_name(room, "room name")
        except BadRequest as exc:
            raise ToolError(exc.message) from None
        if await gw.store.room(room) is None:
            raise NotFound(f"no room #{room}; list_agents shows the agents' rooms")
    else:
        room = gw.router.home_room(me) if me != HUMAN else gw.config.default_room
    since = _int(args, "since", 0, 0, 2**62)
    limit = _int(args, "limit", 50, 1, HISTORY_LIMIT)
    text = _str(args, "text") or None
    messages = await gw.store.search_history(room, since, limit, text)
    return ToolResult({"room": room, "messages": [_message(m) for m in messages]})


# -- dispatch ---------------------------------------------------------------------------

Tool = Callable[[web.Request, str, dict[str, Any]], Awaitable[ToolResult]]
HANDLERS: dict[str, Tool] = {
    "send_message": send_message,
    "read_messages": read_messages,
    "list_agents": list_agents,
    "get_history": get_history,
}


_SCHEMAS = {t["name"]: t["inputSchema"] for t in TOOLS}


def _check_arguments(name: str, args: dict[str, Any], alias: bool) -> None:
    """An argument the tool does not take is an error: it would otherwise be ignored
    silently (a ``from`` that does nothing, a misspelt ``wait_second``)."""
    allowed = set(_SCHEMAS[name].get("properties", {}))
    if alias:
        allowed.add("content")  # post_message's name for text
    unknown = sorted(set(args) - allowed)
    if unknown:
        takes = ", ".join(sorted(allowed)) or "no arguments"
        why = (" (you always speak as yourself)"
               if set(unknown) & {"from", "sender", "as", "agent"} else "")
        raise ToolError(f"{name} does not take {', '.join(map(repr, unknown))}{why}; "
                        f"it takes: {takes}")


def known(name: str) -> bool:
    return ALIASES.get(name, name) in HANDLERS


async def call(request: web.Request, name: str, args: dict[str, Any]) -> ToolResult:
    """Run tool ``name`` as the connection's identity; a failure is an error result."""
    real = ALIASES.get(name, name)
    handler = HANDLERS[real]
    try:
        _check_arguments(real, args, alias=real != name)
        return await handler(request, speaker_of(request), args)
    except ToolError as exc:
        return ToolResult(str(exc), is_error=True)
    except CspError as exc:
        return ToolResult(exc.message, is_error=True)
