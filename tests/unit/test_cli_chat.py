"""Units of ``cspctl chat``: line parsing, how messages look, completion, ``attach --size``.

The terminal itself (editing, wide characters, paste, resize) is prompt_toolkit's and is
tested where it runs, in a real tmux pane (tests/integration/test_chat.py).
"""

from __future__ import annotations

import re
from typing import cast

import click
import pytest
from prompt_toolkit.completion import CompleteEvent
from prompt_toolkit.document import Document

from csp_cli.attach_cmd import parse_size
from csp_cli.chat import Chat, CommandLine, SendLine, command_name, parse_line
from csp_cli.chatterm import ChatCompleter
from csp_cli.render import format_message, format_notice
from csp_core.protocol import Message

SGR = re.compile(r"\x1b\[[0-9;]*m")


@pytest.mark.parametrize(("line", "parsed"), [
    ("hello all", SendLine(["@all"], "hello all")),
    ("  @codex  please look ", SendLine(["@codex"], "please look")),
    ("@a @b #dev hi\nthere", SendLine(["@a", "@b", "#dev"], "hi\nthere")),
    ("!@claude stop", SendLine(["@claude"], "stop", urgent=True)),
    ("email me@host.org", SendLine(["@all"], "email me@host.org")),
    ("@codex", SendLine(["@all"], "@codex")),
    ("//etc is a dir", SendLine(["@all"], "/etc is a dir")),
    ("/history 5", CommandLine("history", ["5"])),
    ("/PAUSE claude", CommandLine("pause", ["claude"])),
    ("/", CommandLine("help", [])),
    ("   ", None),
])
def test_parse_line(line: str, parsed: object) -> None:
    assert parse_line(line) == parsed


def test_aliases_name_their_command() -> None:
    assert [command_name(w) for w in ("q", "exit", "ls", "?", "room", "nope")] == [
        "quit", "quit", "list", "help", "room", None]


def _message(content: str, kind: str = "chat", sender: str = "codex",
             room: str = "main") -> Message:
    return Message(id=1, room=room, sender=sender, to=["all"], kind=kind, content=content,
                   ts="2026-01-01T12:34:56.000Z")


def test_messages_are_shown_without_their_control_sequences() -> None:
    out = format_message(_message("evil\x1b]2;x\x07 \x1b[31mred\r\nnext\x9b2J"))
    # the only escapes left are the colours added for the sender and the time
    assert all(m.group(0).startswith("\x1b[") for m in re.finditer(r"\x1b.", out))
    plain = SGR.sub("", out)
    assert "\x1b" not in plain and "\x07" not in plain and "\x9b" not in plain
    assert plain.splitlines() == ["12:34:56 codex: evil]2;x [31mred", "         next2J"]


def test_output_system_and_room_forms() -> None:
    out = format_message(_message("line1\nline2", kind="output"), colour=False)
    assert out.splitlines() == ["12:34:56 codex (output)", "  │ line1", "  │ line2"]
    system = format_message(_message("claude joined", kind="system", sender="system"),
                            colour=False, show_room=True)
    assert system == "12:34:56 -- #main claude joined"
    assert format_message(_message("hi", room="dev"), colour=False,
                          show_room=True) == "12:34:56 #dev codex: hi"
    assert SGR.sub("", format_notice("a\x1bb\nc")) == "  * ab\n    c"


class _Names:
    """Stands in for the gateway's answers (a unit test: the real one is in test_chat)."""

    def __init__(self) -> None:
        self.fail = False

    async def agent_names(self) -> list[str]:
        if self.fail:
            from csp_core.errors import GatewayUnavailable
            raise GatewayUnavailable("away")
        return ["claude", "codex", "gemini"]

    async def room_names(self) -> list[str]:
        return ["backend", "main"]


async def _complete(completer: ChatCompleter, text: str) -> list[str]:
    doc = Document(text, len(text))
    return [c.text async for c in completer.get_completions_async(doc, CompleteEvent(True))]


async def test_completion_of_names_rooms_and_commands() -> None:
    names = _Names()
    completer = ChatCompleter(cast(Chat, names))
    assert await _complete(completer, "@c") == ["@claude ", "@codex "]
    assert await _complete(completer, "hi @") == ["@claude ", "@codex ", "@gemini ", "@all "]
    assert await _complete(completer, "/pa") == ["/pause "]
    assert await _complete(completer, "/r") == ["/resume ", "/room "]
    assert await _complete(completer, "/room b") == ["backend "]
    assert await _complete(completer, "/pause g") == ["gemini "]
    assert await _complete(completer, "see #m") == ["#main "]
    assert await _complete(completer, "plain words") == []
    assert await _complete(completer, "@c ") == []  # after a space: a new, empty word
    names.fail = True  # the gateway away: the last names it gave
    assert await _complete(completer, "@ge") == ["@gemini "]


@pytest.mark.parametrize(("value", "size"), [("160x48", (160, 48)), ("80X24", (80, 24)),
                                             (" 200 x 60 ", (200, 60)), (None, None)])
def test_size_option_accepts_cols_x_rows(value: str | None,
                                         size: tuple[int, int] | None) -> None:
    assert parse_size(None, None, value) == size


@pytest.mark.parametrize(("value", "why"), [("160", "is not COLSxROWS"),
                                            ("axb", "is not COLSxROWS"),
                                            ("-5x10", "is not COLSxROWS"),
                                            ("10x5", "out of range"),
                                            ("20000x50", "out of range")])
def test_size_option_refuses_nonsense(value: str, why: str) -> None:
    with pytest.raises(click.BadParameter, match=why):
        parse_size(None, None, value)
