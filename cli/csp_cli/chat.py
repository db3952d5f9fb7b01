"""``cspctl chat``: the command center's session — the room it watches, its link to the
gateway, and what a typed line does.

The view follows the gateway's WebSocket and reconnects by itself (with
:class:`csp_core.backoff.Backoff`) when the gateway goes away; after a reconnect
it asks for what it missed with ``since``, so nothing is lost and nothing is
shown twice.  What is shown first is decided once, at start: by default nothing
from before (a script piping into the chat gets only what happens while it
runs), ``--limit N`` the last N messages, ``--since ID`` everything after ID.

How it is drawn is not decided here: :mod:`csp_cli.chatterm` draws it on a
terminal (prompt_toolkit), :class:`PlainView` prints lines for pipes.  All chat
text is sanitised by :func:`csp_cli.render.format_message` before it is shown.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import stat
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp
import click

from csp_core.backoff import Backoff
from csp_core.client import GatewayClient
from csp_core.errors import BadRequest, CspError, GatewayUnavailable, NotFound
from csp_core.protocol import API, Message, check_name
from csp_core.sanitize import one_line

from .render import format_message, format_notice

HELP = [
    "text                 send to everyone in the room (@all)",
    "@name text           send to one agent (or several: @a @b text)",
    "!text                urgent: agents get it without waiting until they are idle",
    "//text               send text that starts with '/'",
    "/list                the agents, their state and queue",
    "/history [N]         the last N messages of the room (default 20)",
    "/pause NAME          hold delivery to an agent;  /resume NAME  releases it",
    "/room NAME           watch and talk in another room (/room alone: all rooms)",
    "/help  /quit         this help; leave (Ctrl-D on an empty line too)",
]
# the commands a line can start with (completion offers these), aliases after the first
COMMANDS = {"help": ("h", "?"), "list": ("agents", "ls"), "history": (), "pause": (),
            "resume": (), "room": (), "quit": ("exit", "q")}
CATCH_UP_PAGE = 500


# -- what a typed line means ----------------------------------------------------------

@dataclass(frozen=True)
class SendLine:
    to: list[str]
    text: str
    urgent: bool = False


@dataclass(frozen=True)
class CommandLine:
    name: str
    args: list[str]


_ADDRESSES = re.compile(r"^((?:[@#][a-z][a-z0-9_-]{0,31}\s+)+)(\S.*)$", re.DOTALL)


def parse_line(line: str) -> SendLine | CommandLine | None:
    """Plain text -> @all; ``@name text`` -> direct; ``/cmd args`` -> a command."""
    text = line.strip()
    if not text:
        return None
    if text.startswith("//"):
        return SendLine(["@all"], text[1:])
    if text.startswith("/"):
        words = text[1:].split()
        return CommandLine(words[0].lower() if words else "help", words[1:])
    urgent = text.startswith("!")
    if urgent:
        text = text[1:].lstrip()
    m = _ADDRESSES.match(text)
    if m:
        return SendLine(m.group(1).split(), m.group(2), urgent)
    return SendLine(["@all"], text, urgent)


def command_name(word: str) -> str | None:
    """The command a typed word names (aliases included), or None."""
    for name, aliases in COMMANDS.items():
        if word == name or word in aliases:
            return name
    return None


# -- the session ----------------------------------------------------------------------

class ChatView(Protocol):
    """What the session needs from whatever draws it."""

    def show(self, text: str) -> None:
        """Show a block of lines: a message, or the answer to a command."""

    def link(self, text: str, level: str) -> None:
        """Say how the connection to the gateway is doing (lost, back)."""

    def set_status(self, where: str, state: str) -> None:
        """The room watched and the connection's state, for a status line or title."""

    def give_back(self, line: str) -> None:
        """A line that could not be sent: put it back where it can be sent again."""


def unknown_room(room: str) -> NotFound:
    return NotFound(f"no room #{room}: create it with `cspctl rooms create {room}`",
                    room=room)


class Chat:
    """The room being watched, the connection to it, and the commands."""

    def __init__(self, view: ChatView, room: str | None = None, *, since: int | None = None,
                 limit: int | None = None, address: str | None = None,
                 greet: bool = False) -> None:
        self.view = view
        self.room = room
        self.since = since
        self.limit = limit
        self.address = address
        self.greet = greet
        self.colour = True
        self.last_id = 0
        self.default_room: str | None = None  # learnt from the gateway
        self.quit = asyncio.Event()
        # set once the starting point is fixed (or the gateway is found away): lines
        # typed before it must not count as "before the start"
        self.ready = asyncio.Event()
        self.last_error: CspError | None = None  # what went wrong with the last failed line
        self.client = GatewayClient(address, timeout=10.0)
        self._started = False
        self._follower: asyncio.Task[None] | None = None

    @property
    def where(self) -> str:
        return f"#{self.room}" if self.room else "all rooms"

    async def run(self) -> None:
        async with self.client:
            self._follower = asyncio.create_task(self._follow())
            try:
                await self.quit.wait()
            finally:
                await self._stop_following()

    async def _stop_following(self) -> None:
        if self._follower is not None:
            self._follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._follower
            self._follower = None

    # -- following the room, reconnecting ---------------------------------------

    async def _follow(self) -> None:
        backoff = Backoff()
        lost = False
        connected_once = False
        self._status("connecting…")
        while True:
            try:
                async with GatewayClient(self.address, timeout=None) as client:  # type: ignore[arg-type]
                    if not self._started:
                        await self._start(client)
                    ws = await client.stream(room=self.room, since=self.last_id)
                    try:
                        async for frame in ws:
                            if frame.type != aiohttp.WSMsgType.TEXT:
                                break
                            if self._frame(json.loads(frame.data)):
                                backoff.reset()
                                connected_once = True
                                if lost:
                                    self.view.link("reconnected to the gateway", "ok")
                                    lost = False
                    finally:
                        await ws.close()
            except (BadRequest, NotFound) as exc:  # bad --limit, unknown --room: no retry
                self.last_error = exc
                self.view.show(format_notice(exc.message, "error", self.colour))
                self.ready.set()
                self.quit.set()
                return
            except Exception as exc:  # any other failure: say so, reconnect, go on
                if not lost:
                    what = "lost the gateway" if connected_once else "cannot reach the gateway"
                    self.view.link(f"{what}: {_short(exc)}; reconnecting…", "warn")
            else:
                if not lost:
                    self.view.link("the gateway closed the connection; reconnecting…", "warn")
            lost = True
            self.ready.set()  # the gateway is away: lines typed now fail, and say so
            self._status(f"gateway unreachable, reconnecting (try {backoff.attempts + 1})…")
            await backoff.wait()

    async def _start(self, client: GatewayClient) -> None:
        """Fix where the view starts and show the backlog asked for (once per room)."""
        rooms = await client.rooms()
        self.default_room = rooms.get("default")
        if self.room is not None and self.room not in {r["name"] for r in rooms["rooms"]}:
            raise unknown_room(self.room)
        params: dict[str, Any] = {"limit": self.limit or 1}
        if self.room:
            params["room"] = self.room
        data = await client.request("GET", f"{API}/messages", params=params)
        start = int(data.get("last_id", 0))
        shown = 0
        if self.limit:
            for raw in data["messages"]:
                m = Message.from_json(raw)
                if self.since is None or m.id > self.since:
                    self._show(m)
                    shown += 1
        if self.since is not None and not self.limit:
            self.last_id = self.since  # the stream replays everything after it
        else:
            self.last_id = max(self.last_id, start)
        self._started = True
        self.ready.set()
        if self.greet and not shown:
            self.view.show(format_notice(
                f"watching {self.where}; type to talk to everyone, /help for commands"))

    def _frame(self, frame: dict[str, Any]) -> bool:
        """Handle one frame; True once the connection is known to work."""
        kind = frame.get("type")
        if kind == "hello":
            self._status("connected")
            return True
        if kind == "message":
            self._show(Message.from_json(frame["message"]))
        elif kind == "error":
            self.view.show(format_notice(f"gateway: {frame.get('message')}", "error",
                                         self.colour))
        return False

    def _show(self, m: Message) -> None:
        if m.id <= self.last_id:
            return  # replayed after a reconnect, or from before the start
        self.last_id = m.id
        self.view.show(format_message(m, self.colour, show_room=self._room_differs(m)))

    def _room_differs(self, m: Message) -> bool:
        """Watching all rooms, say which room a message is in (unless the usual one)."""
        return self.room is None and m.room != self.default_room

    def _status(self, state: str) -> None:
        self.view.set_status(self.where, state)

    async def catch_up(self) -> None:
        """Show what the room holds up to now that the live view has not shown yet.

        A script's chat ends at the end of its input: this makes what it prints
        end at the same point every time (its own lines included), instead of
        wherever the WebSocket happened to be.
        """
        if not self._started:
            return
        with contextlib.suppress(CspError):
            while True:
                page = await self.client.history(room=self.room, since=self.last_id,
                                                 limit=CATCH_UP_PAGE)
                for m in page:
                    self._show(m)
                if len(page) < CATCH_UP_PAGE:
                    break

    # -- what the human types ------------------------------------------------------

    def notice(self, text: str, level: str = "info") -> None:
        self.view.show(format_notice(text, level, self.colour))

    async def submit(self, line: str) -> None:
        parsed = parse_line(line)
        if parsed is None:
            return
        await self.ready.wait()
        if self.quit.is_set():
            return  # the chat could not start (an unknown room): nothing goes out
        try:
            if isinstance(parsed, SendLine):
                await self.client.send(parsed.to, parsed.text, room=self.room,
                                       urgent=parsed.urgent)
            else:
                await self._command(parsed)
        except GatewayUnavailable as exc:
            self.last_error = exc
            self.notice(f"not sent, the gateway is unreachable: {_short(exc)}", "error")
            if isinstance(parsed, SendLine):
                self.view.give_back(line)  # rather than lose it
        except CspError as exc:
            self.last_error = exc
            self.notice(exc.message, "error")

    async def _command(self, cmd: CommandLine) -> None:
        name, args = command_name(cmd.name), cmd.args
        if name == "quit":
            self.quit.set()
        elif name == "help":
            for line in HELP:
                self.notice(line)
        elif name == "list":
            await self._list()
        elif name == "history":
            count = int(args[0]) if args and args[0].isdigit() else 20
            messages = await self.client.history(room=self.room, limit=count)
            self.notice(f"last {len(messages)} messages of {self.where}:")
            for m in messages:
                self.view.show(format_message(m, self.colour,
                                              show_room=self._room_differs(m)))
        elif name in ("pause", "resume"):
            if len(args) != 1:
                self.notice(f"usage: /{name} NAME", "error")
                return
            await self.client.control(args[0].lstrip("@"), name)
            self.notice(f"{name}: sent to {args[0].lstrip('@')}", "ok")
        elif name == "room":
            await self._switch_room(args[0].lstrip("#") if args else None)
        else:
            self.notice(f"unknown command /{cmd.name}; /help lists them", "error")

    async def _list(self) -> None:
        rows = await self.client.agents()
        if not rows:
            self.notice("no agents have joined yet")
        for a in rows:
            state = a.get("state", "") if a.get("online", True) else "offline"
            self.notice(f"{a['name']:<12} {state:<8} queue {a.get('queue', 0)}"
                        f"  pending {a.get('pending', 0)}  #{a.get('room', '')}")

    async def agent_names(self) -> list[str]:
        """The online agents (for completing ``@names``)."""
        return sorted(a["name"] for a in await self.client.agents() if a.get("online", True))

    async def room_names(self) -> list[str]:
        return sorted(r["name"] for r in (await self.client.rooms())["rooms"])

    async def _switch_room(self, room: str | None) -> None:
        if room is not None:
            check_name(room, "room name")
            if room not in await self.room_names():
                raise unknown_room(room)
        self.room = room
        await self._stop_following()
        # the new room starts as the chat did: with its last --limit messages (on a
        # terminal, 30), or in line mode with nothing from before
        self._started, self.since, self.last_id = False, None, 0
        self.notice(f"now watching {self.where}", "ok")
        self._follower = asyncio.create_task(self._follow())


def _short(exc: BaseException) -> str:
    text = exc.message if isinstance(exc, CspError) else f"{exc.__class__.__name__}: {exc}"
    return one_line(text.split(";")[0])[:160]


# -- line mode, for pipes and scripts -------------------------------------------------

class PlainView:
    """Messages and answers on stdout, the connection's ups and downs on stderr."""

    def __init__(self, write: Callable[[str], None],
                 warn: Callable[[str], None]) -> None:
        self._write = write
        self._warn = warn

    def show(self, text: str) -> None:
        self._write(text)

    def link(self, text: str, level: str) -> None:
        self._warn(f"cspctl: {text}")

    def set_status(self, where: str, state: str) -> None:
        pass

    def give_back(self, line: str) -> None:
        pass  # nobody to hand it to: the exit code says it was not sent


async def run_plain(room: str | None, *, since: int | None = None, limit: int | None = None,
                    address: str | None = None) -> None:
    """Line mode: messages on stdout, commands and text from stdin, one per line.

    It prints what happens from its start on (plus the backlog ``since``/``limit``
    ask for), sends each line, and at the end of stdin shows the room up to that
    moment and leaves.  A line that failed (not sent, refused) makes it exit with
    that error's code, so a script piping into it learns that something did not
    go through.
    """
    colour = sys.stdout.isatty()
    view = PlainView(lambda s: click.echo(s, color=colour),
                     lambda s: click.echo(s, err=True))
    chat = Chat(view, room, since=since, limit=limit, address=address)
    chat.colour = colour
    task = asyncio.create_task(_read_stdin_lines(chat))
    try:
        await chat.run()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    if chat.last_error is not None:
        raise chat.last_error


async def _read_stdin_lines(chat: Chat) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    if not _pollable(sys.stdin.fileno()):
        # a regular file or /dev/null: reading never blocks, and epoll refuses them
        for line in sys.stdin.read().splitlines():
            await chat.submit(line)
    else:
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while (line := await reader.readline()) and not chat.quit.is_set():
            await chat.submit(line.decode(errors="replace").rstrip("\n"))
    if not chat.quit.is_set():
        await chat.ready.wait()  # stdin may end before the chat has even started
        await chat.catch_up()
    chat.quit.set()


def _pollable(fd: int) -> bool:
    """Whether the event loop can watch ``fd`` (a pipe, socket or terminal)."""
    mode = os.fstat(fd).st_mode
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or os.isatty(fd)
