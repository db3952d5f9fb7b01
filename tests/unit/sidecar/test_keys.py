"""LineTracker: does the human have a half-typed line the sidecar must not splice into?"""

from __future__ import annotations

import pytest
from csp_sidecar.keys import LineTracker
from hypothesis import given
from hypothesis import strategies as st

UP, DOWN, LEFT, RIGHT = b"\x1b[A", b"\x1b[B", b"\x1b[D", b"\x1b[C"


def fed(*chunks: bytes) -> LineTracker:
    t = LineTracker()
    for chunk in chunks:
        t.feed(chunk)
    return t


def text(t: LineTracker) -> str:
    return "".join(t.buffer)


def test_typing_makes_the_line_dirty_and_enter_submits_it() -> None:
    t = fed(b"hello")
    assert t.dirty and text(t) == "hello"
    t.feed(b" world\r")
    assert not t.dirty and t.submits == 1 and t.submitted == ["hello world"]


def test_an_empty_enter_counts_as_a_submit_but_records_no_line() -> None:
    t = fed(b"\r")
    assert t.submits == 1 and t.submitted == [] and not t.dirty


def test_submitted_lines_are_bounded() -> None:
    t = fed(*(f"line {i}\r".encode() for i in range(30)))
    assert len(t.submitted) == 20 and t.submitted[-1] == "line 29"


def test_backspacing_to_nothing_makes_the_line_clean() -> None:
    t = fed(b"ab", b"\x7f")
    assert text(t) == "a" and t.dirty
    t.feed(b"\x08")
    assert not t.dirty
    t.feed(b"\x7f\x7f")  # more backspaces on an empty line change nothing
    assert not t.dirty and t.buffer == []


@pytest.mark.parametrize("key", [b"\x03", b"\x15"], ids=["ctrl-c", "ctrl-u"])
def test_ctrl_c_and_ctrl_u_clear_the_line(key: bytes) -> None:
    t = fed(b"half typed", key)
    assert not t.dirty and t.submits == 0


def test_ctrl_w_drops_the_last_word_and_trailing_spaces() -> None:
    t = fed(b"one two  ", b"\x17")
    assert text(t) == "one "
    t.feed(b"\x17")
    assert not t.dirty


@pytest.mark.parametrize("key", [b"\x04", b"\x07"], ids=["ctrl-d", "ctrl-g"])
def test_ctrl_d_and_ctrl_g_at_the_end_of_a_line_leave_its_text(key: bytes) -> None:
    # Ctrl-D deletes the character under the cursor: at the end of the line there is none
    t = fed(b"keep me", key)
    assert t.dirty and text(t) == "keep me"


def test_left_arrow_then_backspace_at_the_start_deletes_nothing() -> None:
    t = fed(b"ab", LEFT, LEFT, b"\x7f\x7f")
    assert text(t) == "ab" and t.dirty


def test_left_arrow_then_ctrl_u_keeps_the_text_right_of_the_cursor() -> None:
    t = fed(b"abc", LEFT, b"\x15")
    assert text(t) == "c" and t.dirty
    t.feed(b"\x0b")  # Ctrl-K: and the rest of the line
    assert not t.dirty


def test_typing_after_moving_left_inserts_at_the_cursor() -> None:
    t = fed(b"ac", LEFT, b"b", RIGHT, b"d")
    assert text(t) == "abcd"


def test_home_end_and_delete() -> None:
    t = fed(b"abc", b"\x1b[H", b"\x1b[3~")
    assert text(t) == "bc"
    t.feed(b"\x1b[F\x7f")
    assert text(t) == "b"
    t.feed(b"\x01\x04")  # Ctrl-A, Ctrl-D
    assert not t.dirty


def test_ss3_arrows_as_sent_in_application_cursor_mode() -> None:
    t = fed(b"ab", b"\x1bOD", b"\x1bOD", b"x")
    assert text(t) == "xab"


@pytest.mark.parametrize("key", [UP, DOWN, b"\x1bOA", b"\x1b[1;2A"])
def test_history_keys_make_the_line_unknown_until_enter_or_ctrl_c(key: bytes) -> None:
    # Up recalls an earlier prompt into the input: text the tracker cannot see
    t = fed(key)
    assert t.dirty
    t.feed(b"\x7f\x7f\x15")
    assert t.dirty
    t.feed(b"\r")
    assert not t.dirty
    t.feed(key + b"\x03")
    assert not t.dirty


def test_word_motion_on_a_dirty_line_makes_backspacing_untrustworthy() -> None:
    t = fed(b"one two", b"\x1b[1;5D", b"\x7f" * 7)
    assert t.dirty
    t.feed(b"\x03")
    assert not t.dirty


def test_word_motion_on_a_clean_line_keeps_it_clean() -> None:
    t = fed(b"\x1b[1;5D", b"\x1bb")
    assert not t.dirty


@pytest.mark.parametrize("seq", [
    b"\x1b[15~",  # F5
    b"\x1b[5~",  # Page Up
    b"\x1b[I", b"\x1b[O",  # focus in/out
    b"\x1b[<0;12;5M", b"\x1b[<0;12;5m",  # SGR mouse press/release
    b"\x1b]11;rgb:0000/0000/0000\x1b\\",  # reply to a colour query (OSC, ST)
    b"\x1b]10;rgb:ffff/ffff/ffff\x07",  # (OSC, BEL)
    b"\x1bP>|tmux 3.3a\x1b\\",  # reply to a version query (DCS)
    b"\x1b[?1;2c",  # device attributes reply
    b"\x1b[12;40R",  # cursor position report
    b"\x1b",  # the Esc key
])
def test_escape_sequences_add_no_text(seq: bytes) -> None:
    t = fed(seq)
    assert not t.dirty, t.buffer
    t = fed(b"x", seq, b"\x7f")
    assert not t.dirty, t.buffer


def test_alt_enter_adds_a_newline_and_alt_backspace_a_word() -> None:
    t = fed(b"one two", b"\x1b\x7f")
    assert text(t) == "one "
    t.feed(b"\x1b\r")
    assert text(t) == "one \n"


def test_escape_sequences_split_across_reads() -> None:
    t = fed(b"ab\x1b", b"[D", b"\x1b[", b"D\x7f\x7f")
    assert text(t) == "ab"
    t = fed(b"\x1b]11;rgb:00", b"00/0000/0000\x1b", b"\\")
    assert not t.dirty


def test_escape_key_then_enter_still_submits() -> None:
    t = fed(b"typed", b"\x1b", b"\r")
    assert not t.dirty and t.submitted == ["typed"]


def test_an_unterminated_string_sequence_does_not_swallow_enter() -> None:
    t = fed(b"\x1bPhello\r")  # Alt-Shift-P, then typing
    assert not t.dirty and t.submits == 1


def test_a_human_bracketed_paste_is_text_and_its_newlines_do_not_submit() -> None:
    t = fed(b"\x1b[200~first\rsecond\n\x1b[31mthird\x1b[201~")
    assert t.dirty and t.submits == 0
    assert text(t) == "first\nsecond\n[31mthird"
    t.feed(b"\r")
    assert t.submits == 1 and not t.dirty


@pytest.mark.parametrize("cut", range(1, 12))
def test_paste_markers_split_at_any_byte(cut: int) -> None:
    data = b"\x1b[200~a\rb\x1b[201~"
    t = fed(data[:cut], data[cut:])
    assert text(t) == "a\nb" and t.submits == 0
    t.feed(b"\r")
    assert t.submits == 1


def test_paste_end_split_inside_a_long_paste() -> None:
    t = fed(b"\x1b[200~" + b"x" * 100 + b"\x1b[20", b"1~\r")
    assert t.submits == 1 and t.submitted == ["x" * 100]


@pytest.mark.parametrize("char", ["é", "€", "😀"])
def test_utf8_split_across_reads_is_one_character(char: str) -> None:
    raw = char.encode()
    for cut in range(1, len(raw)):
        t = fed(raw[:cut], raw[cut:])
        assert t.buffer == [char]
        t.feed(b"\x7f")
        assert not t.dirty


def test_clear_resets_everything() -> None:
    t = fed(b"abc", LEFT, UP)
    t.clear()
    assert not t.dirty
    t.feed(b"x\x7f")
    assert not t.dirty


def test_a_buffer_cleared_from_outside_keeps_the_cursor_sane() -> None:
    t = fed(b"abc", LEFT, LEFT)
    t.buffer.clear()
    t.feed(b"z\x7f")
    assert not t.dirty


_KEYS = st.sampled_from([b"a", b"b", b" ", b"\x7f", b"\x17", b"\x15", b"\x0b", b"\x01",
                         b"\x05", b"\x04", LEFT, RIGHT, b"\x1b[H", b"\x1b[F", b"\x1b[3~"])


@given(st.lists(_KEYS, max_size=30))
def test_the_model_follows_a_reference_line_editor(keys: list[bytes]) -> None:
    """Against a plain emacs-style line editor, byte by byte or in one read."""
    line, pos = "", 0
    for k in keys:
        if k in (b"a", b"b", b" "):
            line, pos = line[:pos] + k.decode() + line[pos:], pos + 1
        elif k == b"\x7f" and pos:
            line, pos = line[:pos - 1] + line[pos:], pos - 1
        elif k == b"\x17":
            start = len(line[:pos].rstrip(" "))
            start = line.rfind(" ", 0, start) + 1
            line, pos = line[:start] + line[pos:], start
        elif k == b"\x15":
            line, pos = line[pos:], 0
        elif k == b"\x0b":
            line = line[:pos]
        elif k in (b"\x01", b"\x1b[H"):
            pos = 0
        elif k in (b"\x05", b"\x1b[F"):
            pos = len(line)
        elif k in (b"\x04", b"\x1b[3~"):
            line = line[:pos] + line[pos + 1:]
        elif k == LEFT:
            pos = max(0, pos - 1)
        elif k == RIGHT:
            pos = min(len(line), pos + 1)
    assert text(fed(*keys)) == line
    assert text(fed(b"".join(keys))) == line
