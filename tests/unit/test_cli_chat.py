"""Units of ``cspctl chat``: line parsing, key decoding, editing, wrapping, the screen."""

from __future__ import annotations

import fcntl
import os
import struct
import termios
from collections.abc import Iterator

import pyte
import pytest
from csp_cli.chat import CommandLine, SendLine, parse_line, render_message, render_notice
from csp_cli.chatterm import Key, KeyDecoder, LineEditor, Screen, text_width, wrap
from csp_core.protocol import Message
from hypothesis import given
from hypothesis import strategies as st


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


def test_decoder_handles_split_sequences_and_paste() -> None:
    d = KeyDecoder()
    assert d.feed(b"ab\x1b") == [Key("text", "ab")]
    assert d.feed(b"[D\xc3") == [Key("left")]
    assert d.feed(b"\xa9\r") == [Key("text", "é"), Key("enter")]
    keys = d.feed(b"\x1b[200~one\r\ntwo\x1b[2")
    assert keys == [Key("text", "one\n\ntwo")]
    assert d.feed(b"01~\r") == [Key("enter")]
    # control bytes never reach the line; Alt+x drops the Esc
    assert d.feed(b"\x1bx\x07y\xc2\x9b") == [Key("text", "y")]


def test_editor_edits_and_recalls() -> None:
    e = LineEditor()
    for key in [Key("text", "hello world"), Key("ctrl-w"), Key("text", "there"),
                Key("home"), Key("delete"), Key("text", "H")]:
        e.apply(key)
    assert e.text == "Hello there"
    assert e.apply(Key("enter")) == "Hello there" and e.text == ""
    e.apply(Key("up"))
    assert e.text == "Hello there"
    e.apply(Key("down"))
    assert e.text == ""


@given(st.text(alphabet=st.sampled_from("ab 界\n-"), max_size=200), st.integers(1, 40))
def test_wrap_fits_and_keeps_the_words(text: str, width: int) -> None:
    lines = wrap(text, width)
    for line in lines:
        assert text_width(line) <= max(width, 2)  # a wide char needs two cells
    assert "".join(lines).replace(" ", "") == text.replace(" ", "").replace("\n", "")


@given(st.text(max_size=100), st.integers(5, 60))
def test_editor_view_fits(text: str, width: int) -> None:
    e = LineEditor()
    e.set(text.replace("\x00", ""))
    view, col = e.visible(width)
    assert text_width(view) <= width and 0 <= col <= width


def _message(content: str, kind: str = "chat", sender: str = "codex") -> Message:
    return Message(id=1, room="main", sender=sender, to=["all"], kind=kind, content=content,
                   ts="2026-01-01T12:34:56.000Z")


def test_render_strips_controls_and_wraps() -> None:
    lines = render_message(_message("evil\x1b]2;x\x07 \x1b[31mred " + "w" * 50))(30)
    plain = [pyte_plain(line) for line in lines]
    assert plain[0].startswith("12:34:56 codex: evil]2;x")
    assert " ".join(p.strip() for p in plain).startswith("12:34:56 codex: evil]2;x [31mred w")
    assert all(text_width(p) <= 30 and "\x1b" not in p for p in plain)
    out = render_message(_message("line1\nline2", kind="output"))(40)
    assert [pyte_plain(x) for x in out] == ["12:34:56 codex (output)", "  │ line1",
                                            "  │ line2"]
    system = render_message(_message("claude joined", kind="system", sender="system"))(40)
    assert pyte_plain(system[0]) == "12:34:56 -- claude joined"
    assert pyte_plain(render_notice("a\x1bb")(40)[0]) == "  * ab"


def pyte_plain(styled: str) -> str:
    import re
    return re.sub(r"\x1b\[[0-9;]*m", "", styled)


# -- the screen, on a real pty read back through a VT emulator ----------------------------

@pytest.fixture
def pty_screen() -> Iterator[tuple[Screen, int, pyte.Screen, pyte.ByteStream]]:
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 12, 40, 0, 0))
    screen = Screen(slave, slave, prompt="> ")
    vt = pyte.Screen(40, 12)
    stream = pyte.ByteStream(vt)
    screen.start()
    yield screen, master, vt, stream
    screen.stop()
    os.close(master)
    os.close(slave)


def _drain(master: int, stream: pyte.ByteStream) -> None:
    import select
    while select.select([master], [], [], 0.05)[0]:
        stream.feed(os.read(master, 65536))


def test_incoming_messages_never_garble_the_input_line(
        pty_screen: tuple[Screen, int, pyte.Screen, pyte.ByteStream]) -> None:
    screen, master, vt, stream = pty_screen
    for key in KeyDecoder().feed("half typed ünïcode".encode()):
        screen.editor.apply(key)
    screen.redraw_input()
    for i in range(30):
        screen.show(render_message(_message(f"message {i} " + "x" * (i * 3))))
    screen.set_status("─ #main · connected")
    _drain(master, stream)
    assert vt.display[-1].rstrip() == "> half typed ünïcode"
    assert vt.display[-2].startswith("─ #main · connected")
    assert vt.cursor.y == 11 and vt.cursor.x == len("> half typed ünïcode")
    body = "\n".join(vt.display[:-2])
    assert "message 29" in body and "message 0 " not in body  # scrolled, newest last


def test_resize_rewraps_the_transcript(
        pty_screen: tuple[Screen, int, pyte.Screen, pyte.ByteStream]) -> None:
    screen, master, vt, stream = pty_screen
    screen.show(render_message(_message("word " * 20)))
    fcntl.ioctl(screen.out_fd, termios.TIOCSWINSZ, struct.pack("HHHH", 10, 30, 0, 0))
    vt.resize(10, 30)
    screen.resize()
    _drain(master, stream)
    lines = [line.rstrip() for line in vt.display[:-2] if line.strip()]
    assert lines[0].startswith("12:34:56 codex: word")
    assert all(len(line) <= 30 for line in lines)
    assert " ".join(lines).count("word") == 20
