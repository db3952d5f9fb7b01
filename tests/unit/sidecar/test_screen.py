"""ScreenModel: what is on the agent's screen, and the private modes pyte ignores."""

from __future__ import annotations

import re

import pyte
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from csp_sidecar.screen import CaptureScreen, Row, ScreenModel, join_rows


def feed(model: ScreenModel, data: bytes, cut: int | None = None) -> None:
    if cut is None:
        model.feed(data)
    else:
        model.feed(data[:cut])
        model.feed(data[cut:])


@pytest.mark.parametrize("seq,attr", [
    (b"\x1b[?2004%s", "bracketed_paste"),
    (b"\x1b[?1049%s", "alternate_screen"),
    (b"\x1b[?1047%s", "alternate_screen"),
    (b"\x1b[?47%s", "alternate_screen"),
])
def test_private_modes_on_and_off(seq: bytes, attr: str) -> None:
    m = ScreenModel(5, 40)
    assert not getattr(m, attr)
    m.feed(b"text " + seq % b"h" + b" more")
    assert getattr(m, attr)
    m.feed(seq % b"l")
    assert not getattr(m, attr)


def test_several_modes_in_one_sequence() -> None:
    m = ScreenModel(5, 40)
    m.feed(b"\x1b[?1000;1006;2004;1049h")
    assert m.bracketed_paste and m.alternate_screen
    m.feed(b"\x1b[?2004;1049l")
    assert not m.bracketed_paste and not m.alternate_screen


def test_the_last_mode_change_wins_within_one_read() -> None:
    m = ScreenModel(5, 40)
    m.feed(b"\x1b[?2004h\x1b[?2004l\x1b[?2004h")
    assert m.bracketed_paste
    m.feed(b"\x1b[?2004l\x1b[?2004h\x1b[?2004l")
    assert not m.bracketed_paste


@pytest.mark.parametrize("data", [
    b"ab\x1b[?2004h", b"\x1b[?1000;1006;1015;2004h", b"x" * 100 + b"\x1b[?25;1049;2004h",
])
def test_a_mode_sequence_split_at_any_byte(data: bytes) -> None:
    for cut in range(1, len(data)):
        m = ScreenModel(5, 40)
        feed(m, data, cut)
        assert m.bracketed_paste, cut


def test_a_sequence_split_over_three_reads() -> None:
    m = ScreenModel(5, 40)
    for part in (b"\x1b", b"[?10", b"49h"):
        m.feed(part)
    assert m.alternate_screen


def test_a_mode_seen_once_is_not_applied_again_by_a_later_read() -> None:
    m = ScreenModel(5, 40)
    m.feed(b"\x1b[?2004h")
    m.bracketed_paste = False  # pretend something else turned it off
    m.feed(b"plain output")
    assert not m.bracketed_paste


def test_lookalikes_do_not_count() -> None:
    m = ScreenModel(5, 40)
    m.feed(b"\x1b[2004h [?2004h \x1b[?12004h \x1b[?20041h")
    assert not m.bracketed_paste


def test_visible_lines_and_cursor() -> None:
    m = ScreenModel(4, 20)
    m.feed("héllo \x1b[1mworld\x1b[0m\r\n❯ ".encode())
    assert m.lines() == ["héllo world", "❯", "", ""]
    assert m.cursor_row == 1


def test_utf8_split_across_reads() -> None:
    m = ScreenModel(3, 20)
    data = "● done ✓".encode()
    for cut in range(1, len(data)):
        m = ScreenModel(3, 20)
        feed(m, data, cut)
        assert m.lines()[0] == "● done ✓"


def scrolled(m: ScreenModel) -> list[str]:
    """The rows that scrolled off the top, in order."""
    read = m.read_rows(0)
    return [row.text for row in read.rows[:read.top - read.first]]


def test_lines_that_scroll_off_the_top_are_kept_in_order() -> None:
    m = ScreenModel(3, 20)
    m.feed(b"".join(b"line %d\r\n" % i for i in range(6)))
    assert scrolled(m) == ["line 0", "line 1", "line 2", "line 3"]
    assert m.lines() == ["line 4", "line 5", ""]
    assert [row.text for row in m.read_rows(4).rows] == ["line 4", "line 5", ""]  # the screen
    assert [row.text for row in m.read_rows(2).rows][:2] == ["line 2", "line 3"]


def test_a_scroll_region_below_the_top_scrolls_nothing_into_the_transcript() -> None:
    m = ScreenModel(5, 20)
    m.feed(b"header\x1b[2;4r\x1b[4;1H" + b"".join(b"r%d\r\n" % i for i in range(4)))
    assert scrolled(m) == []
    assert m.lines()[0] == "header"


def test_a_scroll_region_at_the_top_keeps_the_lines_it_scrolls_off() -> None:
    m = ScreenModel(5, 20)
    m.feed(b"\x1b[1;3r\x1b[5;1Hfooter\x1b[3;1H" + b"".join(b"\r\nr%d" % i for i in range(5)))
    assert scrolled(m) == ["", "", "", "r0", "r1"]
    assert m.lines() == ["r2", "r3", "r4", "", "footer"]


def test_long_lines_wrap_and_scroll() -> None:
    m = ScreenModel(2, 10)
    m.feed(b"a" * 25)
    assert scrolled(m) == ["a" * 10]
    assert m.lines() == ["a" * 10, "a" * 5]


def test_resize() -> None:
    m = ScreenModel(3, 10)
    m.feed(b"0123456789")
    m.resize(5, 20)
    assert len(m.lines()) == 5
    m.feed(b"\r\n" + b"x" * 15)
    assert m.lines()[1] == "x" * 15


def test_generation_counts_feeds() -> None:
    m = ScreenModel(3, 10)
    g = m.generation
    m.feed(b"a")
    m.feed(b"b")
    assert m.generation == g + 2


def test_any_line_matches_optionally_only_at_the_bottom() -> None:
    m = ScreenModel(5, 20)
    m.feed(b"> prompt\r\n\r\n\r\nfooter")
    pat = (re.compile(r"^> "),)
    assert m.any_line_matches(pat)
    assert not m.any_line_matches(pat, bottom=2)
    assert m.any_line_matches((re.compile("footer"),), bottom=2)


# -- the fast ASCII draw is pyte's draw -------------------------------------------

_PIECES = st.sampled_from([
    "plain text ", "x" * 37, "\r\n", "\n", "\r", "\t", "\b", "é", "日本", "e\u0301", "\x1b[31m",
    "\x1b[1;4m", "\x1b[0m", "\x1b[3;5H", "\x1b[H", "\x1b[2J", "\x1b[K", "\x1b[4h", "\x1b[4l",
    "\x1b[?7l", "\x1b[?7h", "\x0e", "\x0f", "\x1b(0", "\x1b(B", "\x1b)0", "lqqk", "\x1b[2;4r",
    "\x1b[r", "\x1bM", "\x1b[20C", "\x1b[5D", "\x1b[2@", "\x1b[3P", "~!@#$%^&*()_+{}|:<>?",
    "● ok │ ─━═ ✻ ❯ ›", "a\u00adb", "x\u200by", "\U0001f600", "\ufffd", "Ω≈ç√",
])


def _cells(screen: pyte.Screen) -> list[list[tuple[object, ...]]]:
    return [[tuple(screen.buffer[y][x]) for x in range(screen.columns)]
            for y in range(screen.lines)]


@settings(max_examples=300)
@given(st.lists(_PIECES, max_size=40), st.integers(3, 30), st.integers(2, 8))
def test_capture_screen_draws_exactly_like_pyte(pieces: list[str], cols: int,
                                                 rows: int) -> None:
    ours, theirs = CaptureScreen(cols, rows), pyte.Screen(cols, rows)
    a, b = pyte.Stream(ours), pyte.Stream(theirs)
    for piece in pieces:
        a.feed(piece)
        b.feed(piece)
    assert _cells(ours) == _cells(theirs)
    assert (ours.cursor.x, ours.cursor.y) == (theirs.cursor.x, theirs.cursor.y)
    assert ours.cursor.attrs == theirs.cursor.attrs


def test_scrolled_line_text_matches_the_display() -> None:
    m = ScreenModel(2, 10)
    m.feed("a\x1b[5Cb日\r\n\x1b[31mred\x1b[0m\r\nx".encode())
    assert scrolled(m) == ["a     b日"]
    assert m.lines() == ["red", "x"]


@settings(max_examples=300)
@given(st.lists(_PIECES, max_size=40), st.integers(3, 30), st.integers(2, 8))
def test_lines_are_pytes_display_right_trimmed(pieces: list[str], cols: int,
                                               rows: int) -> None:
    m = ScreenModel(rows, cols)
    for piece in pieces:
        m.feed(piece.encode())
    try:
        expected = [line.rstrip() for line in m.screen.display]
    except IndexError:  # pyte's display trips over a wide character's orphaned stub
        return
    assert m.lines() == expected


def test_a_flood_is_emulated_only_at_its_end_but_modes_are_all_seen() -> None:
    m = ScreenModel(5, 40)
    lines = b"".join(b"flood line %d\r\n" % i for i in range(60_000))
    half = len(lines) // 2
    m.feed(lines[:half] + b"\x1b[?2004h" + lines[half:])  # a mode switch mid-flood
    m.feed(b"the end")
    assert m.dropped > 0  # most of the flood was never emulated...
    assert m.bracketed_paste  # ...but its mode switches were all seen
    assert m.lines()[-2:] == ["flood line 59999", "the end"]  # and the screen it left is right


# -- soft wraps, history, resize: what capture reads ------------------------------


def _rows(m: ScreenModel, start: int = 0) -> list[Row]:
    return m.read_rows(start).rows


def _joined(rows: list[Row]) -> list[str]:
    """The lines rows show, soft-wrapped rows joined."""
    lines: list[list[Row]] = []
    for row in rows:
        if row.wrapped and lines:
            lines[-1].append(row)
        else:
            lines.append([row])
    return [join_rows(group) for group in lines]


def test_rows_the_cursor_wrapped_into_are_marked() -> None:
    m = ScreenModel(5, 10)
    m.feed(b"a" * 25 + b"\r\n" + b"b" * 10 + b"\r\nc")
    assert [(r.text, r.wrapped) for r in m.read_rows(0).rows] == [
        ("a" * 10, False), ("a" * 10, True), ("a" * 5, True), ("b" * 10, False), ("c", False)]


def test_a_wrap_mark_scrolls_into_the_history_with_its_row() -> None:
    m = ScreenModel(2, 10)
    m.feed(b"x" * 10 + b" word" + b"\r\nnext\r\n")
    read = m.read_rows(0)
    assert read.first == 0 and read.top == 2
    assert _joined(read.rows) == ["x" * 10 + " word", "next", ""]


def test_blanks_at_a_wrap_are_kept_when_joined() -> None:
    m = ScreenModel(3, 10)
    m.feed(b"123456789 after\r\n")  # the blank falls in the last column
    assert _joined(_rows(m))[0] == "123456789 after"


def test_erasing_a_row_or_moving_rows_ends_its_wrap() -> None:
    m = ScreenModel(6, 10)
    m.feed(b"a" * 15 + b"\r\n" + b"b" * 15)
    assert [r.wrapped for r in _rows(m)][:4] == [False, True, False, True]
    m.feed(b"\x1b[2K")  # the cursor's row: erased
    assert [r.wrapped for r in _rows(m)][:4] == [False, True, False, False]
    m.feed(b"\x1b[2;1H\x1b[L")  # a line inserted between a row and its wrap
    assert [r.wrapped for r in _rows(m)][:4] == [False, False, False, False]


def test_a_full_clear_is_reported_once_where_it_happened() -> None:
    m = ScreenModel(3, 10)
    m.feed(b"1\r\n2\r\n3\r\n4")
    assert m.read_rows(0).broken is None
    m.feed(b"\x1b[2J\x1b[Hredrawn")
    assert m.read_rows(0).broken == 1  # row 0 had scrolled off before it
    assert m.read_rows(0).broken is None
    m.feed(b"\r\n\x1b[H\x1b[J")  # erase from home: the same
    assert m.read_rows(0).broken == 1


@settings(max_examples=200)
@given(st.lists(st.text(st.sampled_from("ab ."), max_size=70), min_size=1, max_size=12),
       st.integers(3, 30), st.integers(2, 8), st.integers(3, 30), st.integers(2, 8))
def test_a_resize_rewraps_and_keeps_every_line(lines: list[str], cols: int, rows: int,
                                               cols2: int, rows2: int) -> None:
    m = ScreenModel(rows, cols)
    m.feed("\r\n".join(lines).encode())
    before = _joined(_rows(m))
    cursor_line = len(_joined(_rows(m)[:m.read_rows(0).cursor + 1])) - 1
    m.resize(rows2, cols2)
    after = _joined(_rows(m))
    assert [line for line in after if line] == [line for line in before if line]
    read = m.read_rows(0)
    assert len(_joined(read.rows[:read.cursor + 1])) - 1 == cursor_line  # same line
    m.feed(b"!")  # and the cursor is where the text ends
    assert _joined(_rows(m))[cursor_line] == (lines[-1] + "!").rstrip()


def test_a_resize_moves_the_cursor_with_its_text() -> None:
    m = ScreenModel(4, 10)
    m.feed(b"> " + b"x" * 15)
    m.resize(4, 40)
    assert m.lines()[0] == "> " + "x" * 15 and m.cursor_row == 0
    m.feed(b"!")
    assert m.lines()[0] == "> " + "x" * 15 + "!"
    m.resize(3, 5)  # narrower: the top of the line goes to the history
    assert _joined(_rows(m)) == ["> " + "x" * 15 + "!"]
    assert m.screen.scrolled_total == 1 and m.cursor_row == 2


def test_the_alternate_screen_is_a_buffer_of_its_own() -> None:
    m = ScreenModel(3, 20)
    m.feed(b"main 1\r\nmain 2\r\n\x1b[?1049h\x1b[H")
    assert m.in_alternate and m.lines() == ["", "", ""]
    m.feed(b"".join(b"app %d\r\n" % i for i in range(10)))
    assert m.screen.scrolled_total == 0  # its scrolling keeps nothing
    m.feed(b"\x1b[?1049l")
    assert not m.in_alternate and m.lines() == ["main 1", "main 2", ""]
    assert m.cursor_row == 2


def test_concealed_text_is_drawn_as_blanks() -> None:
    m = ScreenModel(3, 40)
    m.feed("a \x1b[8msecret 日本\x1b[28m b \x1b[1;8mx\x1b[0m c \x1b[38;5;8mgrey".encode())
    assert m.lines()[0] == "a" + " " * 13 + "b   c grey"


_PLAIN_LINES = st.lists(st.sampled_from([
    "", "short", "x" * 37, "a line that wraps at most widths used here " * 2, "é ü Ω",
    "\x1b[31mred\x1b[0m text", "\x1b[1mbold \x1b[32mgreen", "\x1b[m", "tab\there", "日本",
]), max_size=60)


@settings(max_examples=200)
@given(_PLAIN_LINES, st.integers(3, 30), st.integers(2, 8), st.booleans())
def test_plain_lines_skip_pyte_but_end_as_pyte_would(lines: list[str], cols: int, rows: int,
                                                     prompt: bool) -> None:
    text = ("> " if prompt else "") + "\r\n".join(lines) + "\r\nend"
    fast = ScreenModel(rows, cols)
    fast.feed(text.encode())
    slow = CaptureScreen(cols, rows)
    pyte.Stream(slow).feed(text)
    assert fast.lines() == slow.text_lines()
    assert fast.screen.history == slow.history
    assert fast.screen.wrapped == slow.wrapped
    assert fast.screen.cursor.attrs == slow.cursor.attrs
