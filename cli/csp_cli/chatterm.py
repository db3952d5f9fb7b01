"""The command center on a terminal: prompt_toolkit's line editor under the room's messages.

prompt_toolkit does the terminal work — editing keys, wide characters, bracketed
paste, resizing, the history recalled with Up — and this module adds what is csp's
own: a status line above the input (the room watched and whether the gateway is
there), completion of ``@names`` (the agents online now), ``#rooms`` and
``/commands``, and the room's messages printed above the prompt.

Messages go to the terminal's ordinary output, not into a full-screen window, so
the terminal (or the tmux pane) keeps them in its own scrollback and re-wraps them
when it is resized.  The prompt is erased before and redrawn after each batch of
output, so what is being typed is never disturbed by what arrives.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncGenerator, Iterable

from prompt_toolkit import PromptSession
from prompt_toolkit.application import run_in_terminal
from prompt_toolkit.completion import CompleteEvent, Completer, Completion
from prompt_toolkit.document import Document
from prompt_toolkit.formatted_text import FormattedText
from prompt_toolkit.history import FileHistory, History, InMemoryHistory
from prompt_toolkit.key_binding import KeyBindings, KeyPressEvent
from prompt_toolkit.styles import Style
from prompt_toolkit.utils import get_cwidth

from csp_core import paths
from csp_core.errors import CspError

from .chat import COMMANDS, Chat
from .render import format_notice

PROMPT = "> "
HISTORY_FILE = "chat_history"
STYLE = Style.from_dict({"status": "fg:ansibrightblack", "prompt": "bold"})


class ChatCompleter(Completer):
    """``/commands`` at the start of a line, ``@agents`` and ``#rooms`` anywhere, and
    the argument of ``/room`` and ``/pause``/``/resume``.

    Names are asked of the gateway when completing, so an agent that joined a
    moment ago is offered; while the gateway is away the last answer is used.
    """

    def __init__(self, chat: Chat) -> None:
        self.chat = chat
        self._agents: list[str] = []
        self._rooms: list[str] = []

    def get_completions(self, document: Document,
                        complete_event: CompleteEvent) -> Iterable[Completion]:
        return []  # only the asynchronous form is used (prompt_async)

    async def get_completions_async(self, document: Document, complete_event: CompleteEvent,
                                    ) -> AsyncGenerator[Completion, None]:
        before = document.text_before_cursor
        word = before.split()[-1] if before and not before[-1].isspace() else ""
        words = before.split()
        if before.startswith("/") and len(words) <= 1 and word:
            for name in COMMANDS:
                if ("/" + name).startswith(word):
                    yield Completion("/" + name + " ", -len(word), display="/" + name)
            return
        arg_of = words[0].lstrip("/") if before.startswith("/") and words else ""
        if word.startswith("#") or (arg_of == "room" and len(words) <= 2):
            prefix = word.lstrip("#")
            mark = "#" if word.startswith("#") else ""
            for room in await self._room_names():
                if room.startswith(prefix):
                    yield Completion(mark + room + " ", -len(word), display=mark + room)
        elif word.startswith("@") or (arg_of in ("pause", "resume") and len(words) <= 2):
            prefix = word.lstrip("@")
            mark = "@" if word.startswith("@") or not arg_of else ""
            names = await self._agent_names()
            for name in ([*names, "all"] if mark else names):
                if name.startswith(prefix):
                    yield Completion(mark + name + " ", -len(word), display=mark + name)

    async def _agent_names(self) -> list[str]:
        with contextlib.suppress(CspError):
            self._agents = await self.chat.agent_names()
        return self._agents

    async def _room_names(self) -> list[str]:
        with contextlib.suppress(CspError):
            self._rooms = await self.chat.room_names()
        return self._rooms


def _history() -> History:
    """What was typed before, kept across restarts of the chat (0600, in the state dir)."""
    try:
        directory = paths.ensure_private_dir(paths.state_dir())
        path = directory / HISTORY_FILE
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.close(fd)
        return FileHistory(str(path))
    except (OSError, CspError):
        return InMemoryHistory()


class TerminalView:
    """Draws a :class:`Chat` with a prompt_toolkit prompt under its messages."""

    def __init__(self) -> None:
        self.where = ""
        self.state = ""
        self._pending: list[str] = []
        self._flushing = False
        self._writes: set[asyncio.Future[None]] = set()
        self.session: PromptSession[str] = PromptSession(
            history=_history(), style=STYLE, erase_when_done=True,
            complete_while_typing=False, enable_history_search=False,
            key_bindings=_key_bindings())

    # -- ChatView -------------------------------------------------------------

    def show(self, text: str) -> None:
        """Queue lines for printing above the prompt; one redraw per batch."""
        self._pending.append(text)
        if not self._flushing:
            self._flushing = True
            asyncio.get_running_loop().call_soon(self._flush)

    def link(self, text: str, level: str) -> None:
        self.show(format_notice(text, level))

    def set_status(self, where: str, state: str) -> None:
        self.where, self.state = where, state
        output = self.session.output
        output.set_title(f"chat · {where} · {state}")
        output.flush()
        self.session.app.invalidate()

    def give_back(self, line: str) -> None:
        buffer = self.session.default_buffer
        if not buffer.text:  # the human may have started the next line meanwhile
            buffer.set_document(Document(line, len(line)), bypass_readonly=True)
            self.session.app.invalidate()

    # -- drawing --------------------------------------------------------------

    def _flush(self) -> None:
        text = "\n".join(self._pending) + "\n"
        self._pending.clear()
        self._flushing = False
        output = self.session.output

        def write() -> None:
            output.enable_autowrap()
            output.write_raw(text)
            output.flush()

        future = asyncio.ensure_future(run_in_terminal(write, in_executor=False))
        self._writes.add(future)
        future.add_done_callback(self._writes.discard)

    def message(self) -> FormattedText:
        """The status line above the input's prompt.

        It is kept short rather than ruled across the width: a terminal that is
        made narrower re-wraps a full-width line into two, and the prompt, which
        erases only the rows it drew, would leave the first half behind.
        """
        width = self.session.output.get_size().columns
        status = f"── {self.where} · {self.state} ──"
        while get_cwidth(status) > width - 1 and len(status) > 1:
            status = status[:-2] + "…"
        return FormattedText([("class:status", status), ("", "\n"),
                              ("class:prompt", PROMPT)])

    async def drain(self) -> None:
        """Wait until what was shown has reached the terminal."""
        if self._flushing:
            self._flush()
        if self._writes:
            await asyncio.gather(*list(self._writes), return_exceptions=True)


def _key_bindings() -> KeyBindings:
    kb = KeyBindings()

    @kb.add("c-c")
    def _clear_or_quit(event: KeyPressEvent) -> None:
        """Ctrl-C clears the line; on an empty line it leaves (as Ctrl-D does)."""
        if event.current_buffer.text:
            event.current_buffer.reset()
        else:
            event.app.exit(exception=EOFError())

    return kb


async def run_tty(room: str | None, *, since: int | None = None, limit: int | None = 30,
                  address: str | None = None) -> None:
    """The command center on the controlling terminal, until /quit, Ctrl-D or a hangup."""
    view = TerminalView()
    chat = Chat(view, room, since=since, limit=limit, address=address, greet=True)
    completer = ChatCompleter(chat)
    lines: asyncio.Queue[str] = asyncio.Queue()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGHUP, signal.SIGTERM):
        loop.add_signal_handler(sig, chat.quit.set)
    session = asyncio.create_task(chat.run())
    editor = asyncio.create_task(_read_lines(view, completer, chat, lines))
    worker = asyncio.create_task(_submit_lines(chat, lines))
    try:
        await chat.quit.wait()
    finally:
        editor.cancel()
        worker.cancel()
        for task in (editor, worker):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        with contextlib.suppress(asyncio.CancelledError):
            await session
        with contextlib.suppress(Exception):
            await view.drain()
        for sig in (signal.SIGHUP, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        sys.stdout.flush()


async def _read_lines(view: TerminalView, completer: ChatCompleter, chat: Chat,
                      lines: asyncio.Queue[str]) -> None:
    """Prompt for line after line; each goes to the queue, in the order typed."""
    while not chat.quit.is_set():
        try:
            line = await view.session.prompt_async(view.message, completer=completer)
        except EOFError:
            break
        except KeyboardInterrupt:
            continue
        lines.put_nowait(line)
    chat.quit.set()


async def _submit_lines(chat: Chat, lines: asyncio.Queue[str]) -> None:
    """Submit lines one at a time: the editor stays free while one is being sent."""
    while True:
        await chat.submit(await lines.get())
