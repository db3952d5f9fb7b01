"""LineTracker: does the human have a half-typed line the sidecar must not splice into?"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from csp_sidecar.keys import PASTE_END, PASTE_START, LineTracker

UP, DOWN, LEFT, RIGHT = b"\x1b[A", b"\x1b[B", b"\x1b[D", b"\x1b[C"
CTRL_A, CTRL_C, CTRL_E, CTRL_J, CTRL_K, CTRL_U, CTRL_W = (
    b"\x01", b"\x03", b"\x05", b"\n", b"\x0b", b"\x15", b"\x17")
BACKSPACE = b"\x7f"


def fed(*chunks: bytes) -> LineTracker:
    t = LineTracker()
    for chunk in chunks:
        t.feed(chunk)
    return t


def pieces(data: bytes) -> Iterator[list[bytes]]:
    """Every way a key's bytes may reach the tracker: whole, byte by byte, in two at each cut."""
    yield [data]
    yield [data[i:i + 1] for i in range(len(data))]
    for cut in range(1, len(data)):
        yield [data[:cut], data[cut:]]


def each_way(before: bytes, key: bytes, after: bytes = b"", *, esc_clears: bool = False,
             backslash_newline: bool = True) -> Iterator[tuple[list[bytes], LineTracker]]:
    """A fresh tracker per way of cutting ``key``, fed ``before`` and ``after`` around it."""
    for way in pieces(key):
        t = LineTracker(esc_clears=esc_clears, backslash_newline=backslash_newline)
        for chunk in (before, *way, after):
            t.feed(chunk)
        yield way, t


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
    b"\x1b[?1u",  # reply to a kitty keyboard-flags query
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



# -- a draft of several lines ---------------------------------------------------------------

NEWLINE_KEYS = {
    "ctrl-j": CTRL_J,
    "xterm shift-enter": b"\x1b[27;2;13~",  # modifyOtherKeys
    "xterm ctrl-enter": b"\x1b[27;5;13~",
    "xterm alt-enter": b"\x1b[27;3;13~",
    "xterm ctrl-j": b"\x1b[27;5;106~",
    "kitty shift-enter": b"\x1b[13;2u",  # kitty keyboard protocol / CSI u
    "kitty ctrl-enter": b"\x1b[13;5u",
    "kitty alt-enter": b"\x1b[13;3u",
    "kitty ctrl-shift-enter": b"\x1b[13;6u",
    "kitty shift-enter, press event": b"\x1b[13;2:1u",
    "kitty shift-enter, repeat event": b"\x1b[13;2:2u",
    "kitty shift-enter, alternate key": b"\x1b[13:13;2u",
    "kitty shift-enter, caps lock on": b"\x1b[13;66u",
    "kitty ctrl-j": b"\x1b[106;5u",
}


@pytest.mark.parametrize("key", NEWLINE_KEYS.values(), ids=NEWLINE_KEYS.keys())
def test_a_new_line_key_keeps_the_draft_open(key: bytes) -> None:
    for way, t in each_way(b"first", key, b"second"):
        assert text(t) == "first\nsecond" and t.dirty and t.submits == 0, way
        t.feed(b"\r")
        assert t.submitted == ["first\nsecond"] and not t.dirty, way


@pytest.mark.parametrize("key", NEWLINE_KEYS.values(), ids=NEWLINE_KEYS.keys())
def test_a_new_line_key_on_an_empty_input_starts_a_draft(key: bytes) -> None:
    for way, t in each_way(b"", key):
        assert t.buffer == ["\n"] and t.dirty and t.submits == 0, way


@pytest.mark.parametrize("key", [b"\x1b\r", b"\x1b\n"], ids=["alt-enter cr", "alt-enter lf"])
def test_legacy_alt_enter_keeps_the_draft_open(key: bytes) -> None:
    t = fed(b"first", key, b"second")
    assert text(t) == "first\nsecond" and t.submits == 0
    t = fed(b"first" + key + b"second")
    assert text(t) == "first\nsecond" and t.submits == 0


def test_a_lone_esc_ending_a_read_then_enter_is_the_esc_key_then_enter() -> None:
    # the one cut that cannot be told apart: a terminal writes Alt-Enter in one piece,
    # so ESC at the end of a read followed by CR in the next is Esc, then Enter
    t = fed(b"typed", b"\x1b", b"\r")
    assert t.submits == 1 and not t.dirty


@pytest.mark.parametrize("enter", [b"\r", b"\x1b[13u", b"\x1b[27;1;13~"],
                         ids=["legacy", "kitty", "xterm"])
def test_backslash_then_enter_becomes_the_new_line(enter: bytes) -> None:
    for way, t in each_way(b"first\\", enter, b"second"):
        assert text(t) == "first\nsecond" and t.submits == 0, way
    for way, t in each_way(b"", b"first\\" + enter + b"second"):
        assert text(t) == "first\nsecond" and t.submits == 0, way


def test_backslash_then_enter_submits_when_the_cli_has_no_such_rule() -> None:
    for way, t in each_way(b"", b"path\\\r", backslash_newline=False):
        assert t.submitted == ["path\\"] and not t.dirty, way


def test_only_a_backslash_right_before_the_cursor_makes_a_new_line() -> None:
    t = fed(b"a\\b\r")
    assert t.submitted == ["a\\b"]
    t = fed(b"a\\b", LEFT, b"\r")  # the cursor is after the backslash
    assert text(t) == "a\nb" and t.submits == 0
    t = fed(b"a\\\\\r")  # two backslashes: the last one becomes the new line
    assert text(t) == "a\\\n" and t.submits == 0
    t.feed(b"\r")  # after the new line: a submit
    assert t.submitted == ["a\\"]


@pytest.mark.parametrize("key", [b"\x1b[13u", b"\x1b[13;1u", b"\x1b[13;1:1u", b"\x1b[27;1;13~",
                                 b"\x1b[57414u"],
                         ids=["kitty", "kitty no modifiers", "kitty press", "xterm",
                              "kitty keypad enter"])
def test_a_plain_enter_in_any_encoding_submits(key: bytes) -> None:
    for way, t in each_way(b"one\ntwo", key):
        assert t.submits == 1 and t.submitted == ["one\ntwo"] and not t.dirty, way


@pytest.mark.parametrize("key", [
    b"\x1b[13;1:3u", b"\x1b[13;2:3u", b"\x1b[13;5:3u",  # Enter, Shift-, Ctrl-Enter
    b"\x1b[99;5:3u", b"\x1b[117;5:3u",  # Ctrl-C, Ctrl-U
    b"\x1b[127;1:3u", b"\x1b[97;1:3u", b"\x1b[27;1:3u",  # Backspace, 'a', Esc
    b"\x1b[1;1:3D", b"\x1b[3;1:3~",  # Left, Delete
])
def test_kitty_key_releases_are_ignored(key: bytes) -> None:
    for way, t in each_way(b"draft", key, b"!", esc_clears=True):
        assert text(t) == "draft!" and t.submits == 0, way


def test_a_paste_with_new_lines_and_new_line_keys_stay_one_draft() -> None:
    t = fed(PASTE_START.encode() + b"one\r\ntwo" + PASTE_END.encode(), CTRL_J,
            b"\x1b[13;2u", b"three")
    assert text(t) == "one\n\ntwo\n\nthree" and t.submits == 0
    t.feed(b"\r")
    assert t.submits == 1 and not t.dirty


# -- what ends a draft -----------------------------------------------------------------------

@pytest.mark.parametrize("key", [CTRL_C, b"\x1b[99;5u", b"\x1b[27;5;99~", b"\x1b[99;69u"],
                         ids=["legacy", "kitty", "xterm", "kitty caps lock"])
def test_ctrl_c_clears_a_draft_of_several_lines(key: bytes) -> None:
    for way, t in each_way(b"one\ntwo", key):
        assert not t.dirty and t.submits == 0, way


@pytest.mark.parametrize("key", [CTRL_U, b"\x1b[117;5u", b"\x1b[27;5;117~"],
                         ids=["legacy", "kitty", "xterm"])
def test_ctrl_u_clears_only_the_current_line(key: bytes) -> None:
    for way, t in each_way(b"one\ntwo", key):
        assert text(t) == "one\n" and t.dirty, way
        t.feed(BACKSPACE)
        t.feed(key)
        assert not t.dirty, way


def test_ctrl_u_at_the_start_of_a_later_line_loses_track() -> None:
    # CLIs differ: some join the lines, some do nothing
    t = fed(b"one\n", CTRL_U, BACKSPACE * 4)
    assert t.dirty and t.unknown
    t.feed(CTRL_C)
    assert not t.dirty


def test_ctrl_k_at_the_end_of_an_earlier_line_loses_track() -> None:
    t = fed(b"one\ntwo", LEFT * 5, CTRL_K)  # "on|e": kills the "e" only
    assert text(t) == "on\ntwo" and not t.unknown
    t.feed(CTRL_K)
    assert t.unknown


@pytest.mark.parametrize("key", [b"\x1b[27u", b"\x1b[27;1u", b"\x1b[27;1:1u"],
                         ids=["kitty", "kitty no modifiers", "kitty press"])
def test_the_kitty_esc_key_clears_only_where_the_cli_says_so(key: bytes) -> None:
    for way, t in each_way(b"one\ntwo", key, esc_clears=True):
        assert not t.dirty and t.submits == 0, way
    for way, t in each_way(b"one\ntwo", key):
        assert text(t) == "one\ntwo", way


def test_a_lone_esc_clears_once_the_next_read_shows_it_was_the_esc_key() -> None:
    t = LineTracker(esc_clears=True)
    t.feed(b"one\ntwo")
    t.feed(b"\x1b")
    assert t.dirty  # the start of a sequence, or the Esc key? not known yet
    t.feed(b"x")
    assert text(t) == "x"
    t = LineTracker(esc_clears=True)
    t.feed(b"one\x1b")
    t.feed(b"[D")  # it was Left
    assert text(t) == "one"


def test_esc_then_a_sequence_in_one_read_is_not_taken_for_the_esc_key() -> None:
    # ESC ESC [D is Alt-Left in some terminals
    t = LineTracker(esc_clears=True)
    t.feed(b"draft")
    t.feed(b"\x1b\x1b[D")
    assert t.dirty and t.unknown


def test_enter_submits_every_line_of_the_draft() -> None:
    t = fed(b"one", CTRL_J, b"two\\\rthree\r")
    assert t.submits == 1 and t.submitted == ["one\ntwo\nthree"] and not t.dirty


# -- the cursor in a draft of several lines --------------------------------------------------

def test_home_end_ctrl_a_ctrl_e_work_on_the_current_line() -> None:
    t = fed(b"one\ntwo", CTRL_A, b"<", CTRL_E, b">")
    assert text(t) == "one\n<two>"
    t.feed(LEFT * 6 + b"\x1b[H[\x1b[F]")
    assert text(t) == "[one]\n<two>"


def test_backspace_at_the_start_of_a_line_joins_it_to_the_one_before() -> None:
    t = fed(b"one\ntwo", CTRL_A, BACKSPACE)
    assert text(t) == "onetwo"
    t.feed(b"\x1b[3~")  # Delete: the character under the cursor
    assert text(t) == "onewo"


def test_ctrl_w_stops_at_a_line_break() -> None:
    t = fed(b"one\ntwo", CTRL_W)
    assert text(t) == "one\n" and not t.unknown
    t.feed(CTRL_W)
    assert t.unknown


@pytest.mark.parametrize("key", [UP, DOWN, b"\x10", b"\x0e", b"\x1b[1;1:2A"],
                         ids=["up", "down", "ctrl-p", "ctrl-n", "kitty up repeat"])
def test_up_and_down_in_a_draft_of_several_lines_keep_it_dirty(key: bytes) -> None:
    for way, t in each_way(b"one\ntwo", key, BACKSPACE * 10 + CTRL_U):
        assert t.dirty and t.unknown, way
        t.feed(b"\r")
        assert not t.dirty and t.submits == 1, way


@pytest.mark.parametrize("key", [b"\x02", b"\x1b[98;5u"], ids=["legacy", "kitty"])
def test_ctrl_b_moves_left_so_backspace_deletes_nothing(key: bytes) -> None:
    t = fed(b"ab", key, key, BACKSPACE * 2)
    assert text(t) == "ab"
    t.feed(b"\x06" * 2 + BACKSPACE * 2)  # Ctrl-F
    assert not t.dirty


@pytest.mark.parametrize("key", [b"\x19", b"\x1f", b"\x1b[121;5u", b"\x1b[47;5u"],
                         ids=["ctrl-y", "ctrl-_", "kitty ctrl-y", "kitty ctrl-/"])
def test_yank_and_undo_may_bring_text_back(key: bytes) -> None:
    t = fed(b"gone", CTRL_U, key)
    assert t.dirty


# -- every key as a CLI with the kitty protocol receives it ----------------------------------

@pytest.mark.parametrize(("key", "typed"), [
    (b"\x1b[97u", "a"),
    (b"\x1b[97;2u", "A"),  # Shift, no alternate key reported
    (b"\x1b[97:65;2u", "A"),  # Shift, with the shifted key
    (b"\x1b[97;2;65u", "A"),  # with the text it types
    (b"\x1b[97;65;65u", "A"),  # Caps Lock on
    (b"\x1b[97;1:2u", "a"),  # a repeat
    (b"\x1b[49;2u", "!"),
    (b"\x1b[49:33;2u", "!"),
    (b"\x1b[32u", " "),
    (b"\x1b[233u", "é"),
    (b"\x1b[9u", "\t"),
    (b"\x1b[57400u", "1"),  # keypad 1
    (b"\x1b[27;2;65~", "A"),  # xterm modifyOtherKeys
], ids=repr)
def test_kitty_printable_keys_are_typing(key: bytes, typed: str) -> None:
    for way, t in each_way(b"", key):
        assert text(t) == typed, way
        t.feed(b"\x1b[127u")
        assert not t.dirty, way


@pytest.mark.parametrize("key", [b"\x1b[127u", b"\x1b[127;1:2u", b"\x1b[127;2u", b"\x1b[127;5u"],
                         ids=["plain", "repeat", "shift", "ctrl"])
def test_kitty_backspace_deletes_one_character(key: bytes) -> None:
    for way, t in each_way(b"ab", key):
        assert text(t) == "a", way


def test_kitty_alt_backspace_drops_a_word() -> None:
    for way, t in each_way(b"one two", b"\x1b[127;3u"):
        assert text(t) == "one ", way


@pytest.mark.parametrize("key", [
    b"\x1b[57441;2u", b"\x1b[57443;3u",  # Shift, Alt pressed on their own
    b"\x1b[9;2u",  # Shift-Tab
    b"\x1b[109;5u", b"\x1b[104;5u",  # Ctrl-M, Ctrl-H: not Enter and Backspace here
    b"\x1b[57376u",  # F13
])
def test_kitty_keys_that_change_no_text(key: bytes) -> None:
    for way, t in each_way(b"ab", key, BACKSPACE):
        assert text(t) == "a" and not t.unknown and t.submits == 0, way


@pytest.mark.parametrize("key", [b"\x1b[98;3u", b"\x1b[100;3u", b"\x1b[117;6u", b"\x1b[97;9u"],
                         ids=["alt-b", "alt-d", "ctrl-shift-u", "super-a"])
def test_kitty_alt_and_other_modified_keys_lose_track_of_a_draft(key: bytes) -> None:
    for way, t in each_way(b"one two", key):
        assert t.unknown, way
    for way, t in each_way(b"", key):
        assert not t.dirty, way


@pytest.mark.parametrize(("key", "result"), [
    (b"\x1b[1;1:2D", "ab<c"),  # Left, repeated
    (b"\x1b[1;65D", "ab<c"),  # Left with Caps Lock on
    (b"\x1b[57417u", "ab<c"),  # keypad Left
    (b"\x1b[57423u", "<abc"),  # keypad Home
    (b"\x1b[97;5u", "<abc"),  # Ctrl-A
], ids=repr)
def test_kitty_cursor_keys_move_the_cursor(key: bytes, result: str) -> None:
    for way, t in each_way(b"abc", key, b"<"):
        assert text(t) == result, way


def test_kitty_ctrl_k_and_delete() -> None:
    for way, t in each_way(b"abc", b"\x1b[97;5u\x1b[3;1:1~\x1b[107;5u"):
        assert not t.dirty, way


# -- properties ------------------------------------------------------------------------------

_KEYS = st.sampled_from([b"a", b"b", b" ", CTRL_J, BACKSPACE, CTRL_W, CTRL_U, CTRL_K, CTRL_A,
                         CTRL_E, b"\x04", LEFT, RIGHT, b"\x1b[H", b"\x1b[F", b"\x1b[3~"])


@given(st.lists(_KEYS, max_size=30))
def test_the_model_follows_a_reference_line_editor(keys: list[bytes]) -> None:
    """Against a plain emacs-style editor of a draft in lines, byte by byte or in one read.

    Where CLIs disagree (a kill with nothing to kill before a line break: join the lines or
    do nothing) the draft turns unknown and the text stays as it was.
    """
    line, pos, unknown = "", 0, False
    for k in keys:
        bol, eol = line.rfind("\n", 0, pos) + 1, line.find("\n", pos) % (len(line) + 1)
        if k in (b"a", b"b", b" ", CTRL_J):
            line, pos = line[:pos] + k.decode() + line[pos:], pos + 1
        elif k == BACKSPACE and pos:
            line, pos = line[:pos - 1] + line[pos:], pos - 1
        elif k == CTRL_W:
            start = len(line[:pos].rstrip(" "))
            start = max(line.rfind(" ", 0, start), line.rfind("\n", 0, start)) + 1
            unknown |= start == pos > 0
            line, pos = line[:start] + line[pos:], start
        elif k == CTRL_U:
            unknown |= bol == pos > 0
            line, pos = line[:bol] + line[pos:], bol
        elif k == CTRL_K:
            unknown |= eol == pos < len(line)
            line = line[:pos] + line[eol:]
        elif k in (CTRL_A, b"\x1b[H"):
            pos = bol
        elif k in (CTRL_E, b"\x1b[F"):
            pos = eol
        elif k in (b"\x04", b"\x1b[3~"):
            line = line[:pos] + line[pos + 1:]
        elif k == LEFT:
            pos = max(0, pos - 1)
        elif k == RIGHT:
            pos = min(len(line), pos + 1)
    for t in (fed(*keys), fed(b"".join(keys))):
        assert (text(t), t.unknown) == (line, unknown)


_PRINTABLE = st.text(st.characters(min_codepoint=0x20, exclude_categories=("Cc", "Cs")),
                     min_size=1, max_size=8).map(str.encode)
_KITTY_TYPED = st.sampled_from([b"\x1b[97u", b"\x1b[97;2u", b"\x1b[49:33;2u", b"\x1b[57400u",
                                b"\x1b[27;2;65~"])
_PASTE = st.text(st.sampled_from("ab \r\n\t"), min_size=1, max_size=8).map(
    lambda s: PASTE_START.encode() + s.encode() + PASTE_END.encode())
_NEWLINE = st.sampled_from([*NEWLINE_KEYS.values(), b"\x1b\r", b"\x1b\n", b"\\\r",
                            b"\\\x1b[13u"])
_DRAFT = st.lists(st.one_of(_PRINTABLE, _KITTY_TYPED, _PASTE, _NEWLINE), min_size=1,
                  max_size=20)


@given(_DRAFT, st.lists(st.integers(min_value=1), max_size=6))
def test_typing_and_new_lines_never_end_the_draft(keys: list[bytes], cuts: list[int]) -> None:
    """Printable text and new-line keys, however the reads cut them, never submit a draft."""
    t = LineTracker()
    for k in keys:
        t.feed(k)
        assert t.dirty and t.submits == 0, k
    data = b"".join(keys)
    # a terminal writes Alt-Enter whole: ESC at the end of a read, then CR, is Esc, Enter
    points = sorted({c % len(data) for c in cuts} - {i for i in range(1, len(data))
                                                   if data[i - 1:i + 1] in (b"\x1b\r",
                                                                            b"\x1b\n")})
    t = LineTracker()
    for a, b in zip([0, *points], [*points, len(data)], strict=True):
        t.feed(data[a:b])
    assert t.dirty and t.submits == 0
