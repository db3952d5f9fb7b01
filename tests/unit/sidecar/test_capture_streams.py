"""Capture on real byte streams, the way a CLI without hooks prints them.

A prompt line, the echo of what was typed, a spinner redrawn in place, a long
markdown reply drawn with CR LF whose long lines the terminal wraps at the pane's
width, the prompt again; resizes, a full clear and redraw, the alternate screen,
concealed text.  The chat must get each reply word for word, once.
"""

from __future__ import annotations

import gc
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from csp_sidecar.capture import Capture
from csp_sidecar.profiles import Profile, load_profile
from csp_sidecar.screen import ScreenModel
from tests.tools import markdown_cli as cli
from tests.tools.long_reply import long_reply

WIDTHS = [40, 66, 200]
PROMPTS = [f"[human → @md] please review the delivery gate, part {n}: what holds a message "
           "back while the human types?" for n in (1, 2, 3)]


@pytest.fixture(autouse=True)
def _no_user_profiles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))


class Pane:
    """A CLI's pane as the sidecar models it, taken at each quiet point."""

    def __init__(self, cols: int, rows: int = 24, profile: str | Profile = "generic") -> None:
        self.screen = ScreenModel(rows, cols)
        self.capture = Capture(load_profile(profile) if isinstance(profile, str) else profile)
        self.capture.started = True

    def feed(self, text: str, step: int | None = None) -> list[str]:
        """Feed ``text`` (in reads of ``step`` bytes, a quiet point after each); shared."""
        data = text.encode()
        step = step or len(data) or 1
        shared: list[str] = []
        for i in range(0, len(data), step):
            self.screen.feed(data[i:i + step])
            shared += self.take()
        return shared

    def take(self, typed: tuple[str, ...] = ()) -> list[str]:
        """A quiet point: take, and again at once while the capture has more."""
        shared = self.capture.take(self.screen, list(typed))
        while self.capture.more:
            shared += self.capture.take(self.screen, [])
        return shared

    def ask(self, prompt: str, number: int, step: int | None = None) -> list[str]:
        """The sidecar types ``prompt`` in; the CLI answers turn ``number``."""
        self.capture.expect_echo(prompt)
        return self.feed(cli.turn(prompt, number, width=self.screen.screen.columns), step)


def _lines(chunks: list[str]) -> list[str]:
    return [line for chunk in chunks for line in chunk.split("\n") if line.strip()]


@pytest.mark.parametrize("cols", WIDTHS)
def test_three_turns_are_shared_word_for_word(cols: int) -> None:
    pane = Pane(cols)
    assert pane.feed(cli.banner()) == [cli.BANNER]
    for number, prompt in enumerate(PROMPTS, 1):
        assert pane.ask(prompt, number) == [long_reply(prompt, number)]


@pytest.mark.parametrize("cols", WIDTHS)
def test_taken_at_every_read_the_turns_add_up_to_the_replies(cols: int) -> None:
    # quiet points mid-line, mid-spinner, mid-wrap: each line is shared once, when done
    pane = Pane(cols)
    pane.feed(cli.banner())
    for number, prompt in enumerate(PROMPTS, 1):
        shared = pane.ask(prompt, number, step=61)
        assert _lines(shared) == _lines([long_reply(prompt, number)])
        assert " ".join(shared).split() == long_reply(prompt, number).split()


@pytest.mark.parametrize("cols", WIDTHS)
def test_a_resize_between_turns_and_a_full_redraw_share_nothing_again(cols: int) -> None:
    pane = Pane(cols)
    pane.feed(cli.banner())
    assert pane.ask(PROMPTS[0], 1) == [long_reply(PROMPTS[0], 1)]
    other = 66 if cols != 66 else 40
    pane.screen.resize(30, other)
    assert pane.take() == []
    assert pane.ask(PROMPTS[1], 2) == [long_reply(PROMPTS[1], 2)]  # at the new width
    assert pane.feed(cli.redraw(PROMPTS[:2])) == []  # ESC[2J ESC[H, all of it again
    assert pane.ask(PROMPTS[2], 3) == [long_reply(PROMPTS[2], 3)]


def test_resizing_twice_shares_nothing_new() -> None:
    pane = Pane(66)
    pane.feed(cli.banner())
    pane.ask(PROMPTS[0], 1)
    for rows, cols in ((30, 39), (20, 200), (24, 66)):
        pane.screen.resize(rows, cols)
        assert pane.take() == []
    assert pane.ask(PROMPTS[1], 2) == [long_reply(PROMPTS[1], 2)]


@pytest.mark.parametrize("cols", [39, 120])
def test_a_cli_redrawing_everything_at_the_new_width_shares_nothing_again(cols: int) -> None:
    # what Ink-based CLIs do on SIGWINCH: the same lines, wrapped at another width
    pane = Pane(66)
    pane.feed(cli.banner())
    pane.ask(PROMPTS[0], 1)
    pane.ask(PROMPTS[1], 2)
    pane.screen.resize(24, cols)
    assert pane.feed(cli.redraw(PROMPTS[:2]), step=4096) == []
    assert pane.ask(PROMPTS[2], 3) == [long_reply(PROMPTS[2], 3)]


def _wrapped_by_the_cli(text: str, width: int) -> list[str]:
    """``text`` as a TUI that wraps text itself (Ink) draws it: rows no wider than the pane."""
    rows: list[str] = []
    for line in text.split("\n"):
        rows += textwrap.wrap(line, width - 1, drop_whitespace=True) or [""]
    return rows


@pytest.mark.parametrize("step", [None, 97])
def test_a_tui_drawing_its_own_wraps_anew_after_a_resize_shares_nothing_again(
        step: int | None) -> None:
    pane = Pane(66)
    first = _wrapped_by_the_cli(long_reply(PROMPTS[0], 1), 66)
    assert pane.feed("\r\n".join(first) + "\r\n\r\n> ") == ["\n".join(first)]
    pane.screen.resize(24, 40)
    assert pane.take() == []
    narrow = _wrapped_by_the_cli(long_reply(PROMPTS[0], 1), 40)
    assert pane.feed(cli.CLEAR + "\r\n".join(narrow) + "\r\n\r\n> ", step) == []
    second = _wrapped_by_the_cli(long_reply(PROMPTS[1], 2), 40)
    shared = pane.feed(cli.CLEAR + "\r\n".join([*narrow, "", *second]) + "\r\n\r\n> ", step)
    assert _lines(shared) == _lines(second)


@pytest.mark.parametrize("cols", [40, 200])
def test_after_a_clear_a_reply_like_the_one_before_is_shared_whole(cols: int) -> None:
    # the same shape, a few words apart: new text, not a redraw of the old
    pane = Pane(cols)
    pane.feed(cli.banner())
    pane.ask(PROMPTS[0], 1)
    pane.capture.expect_echo(PROMPTS[0])
    again = cli.CLEAR + cli.PROMPT + PROMPTS[0] + "\r\n" + cli.reply(PROMPTS[0], 2)
    assert pane.feed(again) == [long_reply(PROMPTS[0], 2)]


def test_a_reply_line_that_quotes_or_resembles_the_prompt_is_kept() -> None:
    pane = Pane(50)
    pane.feed(cli.banner())
    prompt = "[human → @md] fix the gate"
    pane.capture.expect_echo(prompt)
    reply = [f"You asked: {prompt}", "fix the gate", "[human → @md] fix",
             f"> {prompt}, and the rest", f"Note: {prompt}", f"{prompt} (as typed)", ">"]
    shared = pane.feed(prompt + "\r\n" + "\r\n".join(reply) + "\r\n\r\n> ")
    assert shared == ["\n".join(reply)]


def test_the_echo_of_a_long_prompt_wrapped_by_the_terminal_is_dropped() -> None:
    pane = Pane(40)
    pane.feed(cli.banner())
    prompt = "[human → @md] " + "word " * 30
    pane.capture.expect_echo(prompt)
    assert pane.feed(prompt + "\r\nok\r\n> ") == ["ok"]


def test_the_echo_of_what_the_human_typed_is_dropped() -> None:
    pane = Pane(60)
    pane.feed(cli.banner())
    pane.screen.feed(b"what is 6 x 7?\r\n42\r\n> ")
    assert pane.take(typed=("what is 6 x 7?",)) == ["42"]


TABLE = ["┌───────────┬───────┐", "│ Component │ State │", "├───────────┼───────┤",
         "│ gateway   │ ok    │", "└───────────┴───────┘", "│ a │ b │", "├──┼──┤",
         "▎ a quote, as Claude Code draws it", "▌ and as rich does", "> and in markdown",
         "---", "- item", "  - nested item", "    1. deeper"]


@pytest.mark.parametrize("profile", ["generic", "aider"])
def test_box_drawn_tables_quote_bars_and_nesting_are_kept(profile: str) -> None:
    pane = Pane(60, profile=profile)
    assert pane.feed("\r\n".join(TABLE) + "\r\n> ") == ["\n".join(TABLE)]


def test_a_box_the_cli_draws_is_chrome_to_its_bottom_a_table_in_a_reply_is_not() -> None:
    # the claude profile's boxes rule names only a box's rounded top and bottom: its body
    # is chrome because a chrome line opened the box, and a reply's table is not
    pane = Pane(60, rows=30, profile=load_profile("claude"))
    welcome = ["╭─── Claude Code ───────────────────────────────╮",
               "│ Welcome back!       │ Tips for getting started │",
               "│                     │ Run /init                │",
               "╰───────────────────────────────────────────────╯"]
    reply = ["● Here is the state:", "", *("  " + row for row in TABLE[:7])]
    rule = "─" * 60
    screen = [*welcome, "", *reply, "", rule, "❯ ", rule]
    pane.screen.feed(("\r\n".join(screen) + "\x1b[2A\r").encode())
    assert pane.take() == ["Here is the state:\n\n" + "\n".join(TABLE[:7])]


def test_nothing_from_the_alternate_screen() -> None:
    pane = Pane(60)
    pane.screen.feed(b"before the editor\r\n\x1b[?1049h\x1b[H\x1b[2J")
    pane.screen.feed(b"".join(b"editor line %d\r\n" % i for i in range(40)))
    assert pane.take() == []  # shown: nothing is read, nothing is lost
    pane.screen.feed(b"\x1b[?1049l")
    assert pane.take() == ["before the editor"]
    # in and out between two quiet points: its text never shows up
    assert pane.feed("x\r\n\x1b[?1049hin the pager\r\n\x1b[?1049ly\r\n") == ["x\ny"]


def test_nothing_drawn_concealed() -> None:
    pane = Pane(60)
    shared = pane.feed("shown \x1b[8mpassword123\x1b[28m shown too\r\n"
                       "\x1b[8mall hidden\x1b[0m\r\n" + "".join(
                           f"\x1b[31mred {i} \x1b[8msecret {i}\x1b[0m\r\n" for i in range(60))
                       + "\x1b[38;5;8mgrey is not hidden\x1b[0m\r\n")
    text = "\n".join(shared)
    assert "password" not in text and "hidden" not in text.replace("not hidden", "")
    assert "secret" not in text and "red 59" in text
    assert text.startswith("shown ") and "shown too" in text and "grey is not hidden" in text


def _output(lines: int, colour: bool) -> bytes:
    out: list[str] = []
    number = 0
    while len(out) < lines:
        number += 1
        for line in long_reply(f"prompt {number}", number).split("\n"):
            out.append(f"\x1b[32m{line}\x1b[0m" if colour and line else line)
    return ("\r\n".join(out[:lines]) + "\r\n").encode()


def _worst_take(pane: Pane, data: bytes) -> tuple[float, list[str]]:
    """The longest single take over ``data`` fed in 64 KiB reads: CPU time, without the
    garbage collector (a full collection of this big test process would be measured)."""
    worst, shared = 0.0, []
    gc.disable()
    try:
        for i in range(0, len(data), 65536):
            pane.screen.feed(data[i:i + 65536])
            more = True
            while more:  # each call on its own: the sidecar lets the loop run in between
                start = time.thread_time()
                shared += pane.capture.take(pane.screen, [])
                worst = max(worst, time.thread_time() - start)
                more = pane.capture.more
    finally:
        gc.enable()
    return worst, shared


@pytest.mark.parametrize("colour", [False, True])
@pytest.mark.parametrize("profile", ["generic", "claude"])
def test_a_5000_line_output_is_taken_in_bounded_steps(profile: str, colour: bool) -> None:
    # a capture at every 64 KiB read of a 5,000-line output: each call does work for
    # the rows it reads (at most 1,500 lines, then ``more``), never for the whole
    # transcript (measured: 5 to 15 ms CPU a call on a loaded 2-CPU box)
    pane = Pane(40, rows=50, profile=profile)
    data = _output(5000, colour)
    worst, shared = _worst_take(pane, data)
    plain = data.decode().replace("\x1b[32m", "").replace("\x1b[0m", "")
    expected = _lines([plain.replace("\r\n", "\n")])
    assert _lines(shared) == expected
    assert worst < 0.05, f"worst take {worst * 1000:.1f} ms"
    # and the same output cleared and drawn again: nothing new, in bounded steps too
    worst, shared = _worst_take(pane, b"\x1b[2J\x1b[3J\x1b[H" + data)
    assert shared == []
    assert worst < 0.05, f"worst take of the redraw {worst * 1000:.1f} ms"


# -- any session of a line-oriented CLI: every reply line once, in order ---------------

_WORDS = st.sampled_from(["alpha", "beta", "```", "-", "item", "|", "x" * 23, "/usr/lib/a.so",
                          "é", "日本", "  ", "#", ">", "1."])
_LINE = st.one_of(st.just(""), st.just("```"), st.just("- item"),
                  st.lists(_WORDS, min_size=1, max_size=40).map(" ".join))


@st.composite
def _sessions(draw: st.DrawFn) -> tuple[int, int, list[tuple[str, object]]]:
    """A pane size and a list of events: ("turn", reply lines), ("resize", (rows, cols)),
    ("redraw", None), each turn's bytes split in reads with quiet points between."""
    events: list[tuple[str, object]] = []
    for _ in range(draw(st.integers(1, 5))):
        events.append(("turn", draw(st.lists(_LINE, min_size=1, max_size=30))))
        events += draw(st.lists(st.one_of(
            st.tuples(st.just("resize"), st.tuples(st.integers(3, 30), st.integers(8, 120))),
            st.tuples(st.just("redraw"), st.none())), max_size=2))
    return draw(st.integers(3, 30)), draw(st.integers(8, 120)), events


@settings(max_examples=150, deadline=None)
@given(_sessions(), st.randoms(use_true_random=False))
def test_every_reply_line_is_shared_once_in_order(
        session: tuple[int, int, list[tuple[str, object]]], rnd: Any) -> None:
    rows, cols, events = session
    pane = Pane(cols, rows)
    drawn = "> "  # everything the CLI printed, for a redraw
    pane.feed(drawn)
    shared: list[str] = []
    expected: list[str] = []
    for number, (kind, arg) in enumerate(events):
        if kind == "turn":
            assert isinstance(arg, list)
            prompt = f"[human → @md] question {number}"
            pane.capture.expect_echo(prompt)
            reply = "".join(line + "\r\n" for line in arg) + "> "
            frames = cli.spinner(rnd.randint(0, 3), pane.screen.screen.columns)
            text = prompt + "\r\n" + frames + reply
            drawn += prompt + "\r\n" + reply
            expected += [line.rstrip() for line in arg if line.strip()]
            data = text.encode()
            cuts = sorted(rnd.sample(range(1, len(data)), min(4, len(data) - 1)))
            for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True):
                pane.screen.feed(data[a:b])
                shared += pane.take()
        elif kind == "resize":
            assert isinstance(arg, tuple)
            pane.screen.resize(*arg)
            if rnd.random() < 0.5:  # else the next read comes before a quiet point
                shared += pane.take()
        else:
            shared += pane.feed(cli.CLEAR + drawn)
    assert _lines(shared) == expected


def test_after_a_burst_of_5000_lines_each_call_is_bounded_too() -> None:
    # the sidecar's case: no quiet point until the burst is over, then one take after
    # another while ``more``; the emulation kept up in 16 KiB slices (``pump``)
    pane = Pane(40, rows=50, profile="claude")
    data = _output(5000, colour=True)
    worst, shared = 0.0, []
    gc.disable()
    try:
        for i in range(0, len(data), 65536):
            pane.screen.feed(data[i:i + 65536])
            more = True
            while more:
                start = time.thread_time()
                more = pane.screen.pump()
                worst = max(worst, time.thread_time() - start)
        calls = 0
        while calls == 0 or pane.capture.more:
            start = time.thread_time()
            shared += pane.capture.take(pane.screen, [])
            worst = max(worst, time.thread_time() - start)
            calls += 1
    finally:
        gc.enable()
    plain = data.decode().replace("\x1b[32m", "").replace("\x1b[0m", "")
    assert _lines(shared) == _lines([plain.replace("\r\n", "\n")])
    assert calls == 4  # 1,500 lines a call
    assert worst < 0.05, f"worst call {worst * 1000:.1f} ms"
