"""``cspctl chat``: the human's command center — a live room view and an input line.

The view follows the gateway's WebSocket and reconnects by itself (showing
that it does) when the gateway restarts; after a reconnect it asks for what it
missed with ``since``, so nothing is lost and nothing is shown twice.  All chat
text goes through :func:`csp_core.sanitize.visible_text` before it is drawn.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import stat
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp
import click
from csp_core.client import GatewayClient
from csp_core.errors import CspError, GatewayUnavailable
from csp_core.protocol import Message
from csp_core.sanitize import one_line, visible_text

from .chatterm import Key, LineEditor, Render, Screen, text_width, wrap
from .render import clock, colour_of

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
RETRY_DELAYS = (0.2, 0.5, 1.0, 2.0)


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


# -- how things look ------------------------------------------------------------------

def render_message(m: Message, show_room: bool = False) -> Render:
    """The lines of one message for a given width (coloured, sanitised)."""
    content = visible_text(m.content).rstrip("\n")
    time = clock(m.ts)
    room = f"#{m.room} " if show_room else ""

    def render(width: int) -> list[str]:
        if m.kind == "system":
            return [click.style(line, dim=True) for line in
                    wrap(f"{time} -- {room}{one_line(content)}", width)]
        to = "" if m.to == ["all"] else " → " + ", ".join("@" + t for t in m.to)
        urgent = "!" if m.urgent else ""
        head_plain = f"{room}{m.sender}{to}{urgent}"
        head = click.style(head_plain, fg=colour_of(m.sender), bold=True)
        stamp = click.style(time, dim=True)
        if m.kind == "output":
            # an agent's screen output: keep its lines, in a gutter of its colour
            gutter = click.style("  │ ", fg=colour_of(m.sender))
            lines = [f"{stamp} {head} {click.style('(output)', dim=True)}"]
            for line in wrap(content, width - 4):
                lines.append(gutter + line)
            return lines
        prefix_w = text_width(time) + 1 + text_width(head_plain) + 2
        indent = 9 if prefix_w < width // 2 else 2
        body = wrap(content, width - indent, first_width=width - prefix_w)
        return [f"{stamp} {head}: {body[0]}"] + [" " * indent + b for b in body[1:]]
    return render


def render_notice(text: str, level: str = "info") -> Render:
    """Lines from the chat itself (help, /list, errors), set apart from the room."""
    colour = {"info": "bright_black", "ok": "green", "warn": "yellow", "error": "red"}[level]
    clean = visible_text(text)

    def render(width: int) -> list[str]:
        lines = wrap(clean, width - 4)
        return [click.style(("  * " if i == 0 else "    ") + line, fg=colour)
                for i, line in enumerate(lines)]
    return render


# -- the session ----------------------------------------------------------------------

class ChatView(Protocol):
    editor: LineEditor

    def show(self, render: Render) -> None: ...

    def set_status(self, status: str, title: str | None = None) -> None: ...

    def redraw_input(self) -> None: ...


class Chat:
    """The room being watched, the connection to it, and the commands."""

    def __init__(self, view: ChatView, room: str | None = None, backlog: int = 30,
                 address: str | None = None) -> None:
        self.view = view
        self.room = room
        self.backlog = backlog
        self.address = address
        self.last_id = 0
        self.default_room: str | None = None  # learnt from the gateway
        self.quit = asyncio.Event()
        self.last_error: CspError | None = None  # what went wrong with the last failed line
        self._follower: asyncio.Task[None] | None = None
        self._client = GatewayClient(address, timeout=10.0)

    @property
    def where(self) -> str:
        return f"#{self.room}" if self.room else "all rooms"

    async def run(self) -> None:
        async with self._client:
            self._follower = asyncio.create_task(self._follow())
            try:
                await self.quit.wait()
            finally:
                self._follower.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._follower

    # -- following the room, reconnecting ---------------------------------------

    async def _follow(self) -> None:
        attempt = 0
        lost = False
        while True:
            self._status("connecting…" if not lost else
                         f"gateway unreachable, reconnecting (try {attempt})…")
            try:
                async with GatewayClient(self.address, timeout=None) as client:  # type: ignore[arg-type]
                    if self.last_id == 0:
                        await self._backlog()
                    ws = await client.stream(room=self.room, since=self.last_id)
                    try:
                        async for frame in ws:
                            if frame.type != aiohttp.WSMsgType.TEXT:
                                break
                            if self._frame(json.loads(frame.data)) and lost:
                                self.view.show(render_notice("reconnected to the gateway",
                                                             "ok"))
                                lost, attempt = False, 0
                    finally:
                        await ws.close()
            except Exception as exc:  # any failure: say so, reconnect, go on
                if not lost:
                    self.view.show(render_notice(f"lost the gateway: {_short(exc)}; "
                                                 "reconnecting…", "warn"))
            else:
                if not lost:
                    self.view.show(render_notice("the gateway closed the connection; "
                                                 "reconnecting…", "warn"))
            lost = True
            attempt += 1
            self._status(f"gateway unreachable, reconnecting (try {attempt})…")
            await asyncio.sleep(RETRY_DELAYS[min(attempt - 1, len(RETRY_DELAYS) - 1)])

    def _frame(self, frame: dict[str, Any]) -> bool:
        """Handle one frame; True once the connection is known to work."""
        kind = frame.get("type")
        if kind == "hello":
            self._status("connected")
            return True
        if kind == "message":
            self._show(Message.from_json(frame["message"]))
        elif kind == "error":
            self.view.show(render_notice(f"gateway: {frame.get('message')}", "error"))
        return False

    async def _backlog(self) -> None:
        self.default_room = (await self._client.rooms()).get("default")
        messages = await self._client.history(room=self.room, limit=self.backlog)
        for m in messages:
            self._show(m)
        if not messages:
            self.view.show(render_notice(
                f"watching {self.where}; type to talk to everyone, /help for commands"))

    def _show(self, m: Message) -> None:
        if m.id <= self.last_id:
            return  # replayed after a reconnect
        self.last_id = m.id
        self.view.show(render_message(m, show_room=self._room_differs(m)))

    def _room_differs(self, m: Message) -> bool:
        """Watching all rooms, say which room a message is in (unless the usual one)."""
        return self.room is None and m.room != self.default_room

    def _status(self, state: str) -> None:
        self.view.set_status(f"─ {self.where} · {state}",
                             title=f"chat · {self.where} · {state}")

    # -- what the human types ------------------------------------------------------

    async def submit(self, line: str) -> None:
        parsed = parse_line(line)
        if parsed is None:
            return
        try:
            if isinstance(parsed, SendLine):
                await self._client.send(parsed.to, parsed.text, room=self.room,
                                        urgent=parsed.urgent)
            else:
                await self._command(parsed)
        except GatewayUnavailable as exc:
            self.last_error = exc
            self.view.show(render_notice(f"not sent, the gateway is unreachable: "
                                         f"{_short(exc)}", "error"))
            if isinstance(parsed, SendLine) and not self.view.editor.text:
                self.view.editor.set(line)  # give the text back rather than lose it
                self.view.redraw_input()
        except CspError as exc:
            self.last_error = exc
            self.view.show(render_notice(exc.message, "error"))

    async def _command(self, cmd: CommandLine) -> None:
        name, args = cmd.name, cmd.args
        if name in ("quit", "exit", "q"):
            self.quit.set()
        elif name in ("help", "h", "?"):
            for line in HELP:
                self.view.show(render_notice(line))
        elif name in ("list", "agents", "ls"):
            await self._list()
        elif name == "history":
            count = int(args[0]) if args and args[0].isdigit() else 20
            messages = await self._client.history(room=self.room, limit=count)
            self.view.show(render_notice(f"last {len(messages)} messages of {self.where}:"))
            for m in messages:
                self.view.show(render_message(m, show_room=self._room_differs(m)))
        elif name in ("pause", "resume"):
            if len(args) != 1:
                self.view.show(render_notice(f"usage: /{name} NAME", "error"))
                return
            await self._client.control(args[0].lstrip("@"), name)
            self.view.show(render_notice(f"{name}: sent to {args[0].lstrip('@')}", "ok"))
        elif name == "room":
            await self._switch_room(args[0].lstrip("#") if args else None)
        else:
            self.view.show(render_notice(f"unknown command /{name}; /help lists them", "error"))

    async def _list(self) -> None:
        rows = await self._client.agents()
        if not rows:
            self.view.show(render_notice("no agents have joined yet"))
        for a in rows:
            state = a.get("state", "") if a.get("online", True) else "offline"
            self.view.show(render_notice(
                f"{a['name']:<12} {state:<8} queue {a.get('queue', 0)}"
                f"  pending {a.get('pending', 0)}  #{a.get('room', '')}"))

    async def _switch_room(self, room: str | None) -> None:
        if room is not None:
            from csp_core.protocol import check_name
            check_name(room, "room name")
        self.room = room
        self.last_id = 0
        self.view.show(render_notice(f"now watching {self.where}", "ok"))
        if self._follower is not None:
            self._follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._follower
        self._follower = asyncio.create_task(self._follow())


def _short(exc: BaseException) -> str:
    text = exc.message if isinstance(exc, CspError) else f"{exc.__class__.__name__}: {exc}"
    return one_line(text.split(";")[0])[:160]


# -- running it on a terminal -----------------------------------------------------

async def run_tty(room: str | None, address: str | None = None) -> None:
    """The full-screen command center on the controlling terminal."""
    in_fd, out_fd = sys.stdin.fileno(), sys.stdout.fileno()
    screen = Screen(in_fd, out_fd, prompt="> ")
    chat = Chat(screen, room, address=address)
    loop = asyncio.get_running_loop()
    from .chatterm import KeyDecoder
    decoder = KeyDecoder()
    lines: asyncio.Queue[str] = asyncio.Queue()

    def on_input() -> None:
        try:
            data = os.read(in_fd, 4096)
        except OSError:
            data = b""
        if not data:
            chat.quit.set()
            return
        for key in decoder.feed(data):
            _on_key(key, screen, chat, lines)
        screen.redraw_input()

    screen.start()
    loop.add_reader(in_fd, on_input)
    loop.add_signal_handler(signal.SIGWINCH, screen.resize)
    for sig in (signal.SIGHUP, signal.SIGTERM):
        loop.add_signal_handler(sig, chat.quit.set)
    worker = asyncio.create_task(_submit_loop(chat, lines))
    try:
        await chat.run()
    finally:
        worker.cancel()
        loop.remove_reader(in_fd)
        loop.remove_signal_handler(signal.SIGWINCH)
        screen.stop()


def _on_key(key: Key, screen: Screen, chat: Chat, lines: asyncio.Queue[str]) -> None:
    editor = screen.editor
    if key.name == "ctrl-c":
        if editor.text:
            editor.set("")
        else:
            chat.quit.set()
    elif key.name == "ctrl-d" and not editor.text:
        chat.quit.set()
    elif key.name == "ctrl-l":
        screen.resize()
    else:
        line = editor.apply(key)
        if line is not None:
            lines.put_nowait(line)


async def _submit_loop(chat: Chat, lines: asyncio.Queue[str]) -> None:
    """Submit lines in the order typed, one at a time, off the input callback."""
    while True:
        await chat.submit(await lines.get())


class PlainView:
    """For pipes and scripts: print lines, no screen control."""

    def __init__(self, write: Callable[[str], None]) -> None:
        self.editor = LineEditor()
        self._write = write

    def show(self, render: Render) -> None:
        for line in render(10_000):
            self._write(line)

    def set_status(self, status: str, title: str | None = None) -> None:
        pass

    def redraw_input(self) -> None:
        pass


async def run_plain(room: str | None, address: str | None = None) -> None:
    """Line mode: messages on stdout, commands and text from stdin, one per line.

    At the end of stdin it leaves once what was read has been sent.  A line that
    failed (not sent, refused) makes it exit with that error's code, so a script
    piping into it learns that something did not go through.
    """
    colour = sys.stdout.isatty()
    view = PlainView(lambda s: click.echo(s, color=colour))
    chat = Chat(view, room, address=address)
    task = asyncio.create_task(_read_stdin_lines(chat))
    try:
        await chat.run()
    finally:
        task.cancel()
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
    chat.quit.set()


def _pollable(fd: int) -> bool:
    """Whether the event loop can watch ``fd`` (a pipe, socket or terminal)."""
    mode = os.fstat(fd).st_mode
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or os.isatty(fd)
