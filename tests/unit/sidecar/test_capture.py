"""Capture: what settles on the agent's screen becomes clean chat text, once."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from csp_sidecar.capture import Capture
from csp_sidecar.profiles import load_profile
from csp_sidecar.screen import ScreenModel


@pytest.fixture(autouse=True)
def _no_user_profiles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))


class Agent:
    """A screen model and a capture, taken the way the sidecar does at a quiet point."""

    def __init__(self, profile: str, rows: int = 12, cols: int = 60,
                 started: bool = True) -> None:
        self.screen = ScreenModel(rows, cols)
        self.capture = Capture(load_profile(profile))
        if started:  # past its start screens (capture_after_prompt), unless a test is on those
            self.capture.started = True

    def out(self, text: str) -> list[str]:
        self.screen.feed(text.replace("\n", "\r\n").encode())
        return self.take()

    def take(self, typed: tuple[str, ...] = ()) -> list[str]:
        """What is shared, as lines (chunks joined)."""
        chunks = self.capture.take(self.screen, list(typed))
        return "\n".join(chunks).split("\n") if chunks else []

    def show(self, lines: list[str], cursor_row: int) -> list[str]:
        """Draw ``lines`` over the screen in place (as a TUI redraws: home, each row
        erased and written, the rest erased), put the cursor on ``cursor_row``, take."""
        rows = "\r\n".join(f"\x1b[2K{line}" for line in lines)
        self.screen.feed(f"\x1b[H{rows}\x1b[J\x1b[{cursor_row + 1};1H".encode())
        return self.take()


def test_claude_reply_without_prompt_rules_footer_or_spinner() -> None:
    a = Agent("claude")
    screen = ("● Here is the plan:\n  - read the code\n  - fix the bug\n"
              "✻ Pondering… (esc to interrupt)\n" + "─" * 50 + "\n❯ \n" + "─" * 50
              + "\n  ? for shortcuts")
    a.screen.feed(screen.replace("\n", "\r\n").encode() + b"\x1b[6;3H")
    assert a.take() == ["Here is the plan:", "- read the code", "- fix the bug"]


def test_claude_boxes_and_interruptions_are_chrome() -> None:
    a = Agent("claude")
    lines = ["╭────────╮", "│ Welcome│", "╰────────╯", "  ⎿  Interrupted by user",
             "⏺ kept", "  ⏵⏵ bypass permissions on", "❯ "]
    assert a.show(lines, 6) == ["kept"]


def test_codex_reply_marker_and_chrome() -> None:
    a = Agent("codex")
    lines = ["• Ran the tests", "  all 12 passed", "", "› Ask Codex to do anything",
             "  ? for shortcuts     98% context left", "Working (3s • esc to interrupt)"]
    assert a.show(lines, 6) == ["Ran the tests", "all 12 passed"]


def test_gemini_reply_marker_and_chrome() -> None:
    a = Agent("gemini")
    lines = ["✦ The answer is 42.", "╭──────────╮", "│ >   Type your message or @path/to/file │",
             "╰──────────╯", "~/src (main*)   no sandbox   gemini-2.5-pro (99% context left)",
             "⠼ Thinking (esc to cancel, 3s)"]
    assert a.show(lines, 6) == ["The answer is 42."]


def test_generic_keeps_everything_but_rules_and_spinners() -> None:
    # (an ASCII "-----" is kept: in a reply it is markdown's horizontal rule)
    a = Agent("generic")
    lines = [">>> print(1)", "1", "─────", "⠋ loading", "| Working…", "- a bullet",
             "| a | table |", "/ not a spinner", "-----"]
    assert a.show(lines, 9) == [">>> print(1)", "1", "- a bullet", "| a | table |",
                                "/ not a spinner", "-----"]


def test_only_lines_above_the_cursor_count() -> None:
    a = Agent("generic", rows=5)
    a.screen.feed(b"done\r\nhalf a line")
    assert a.take() == ["done"]
    a.screen.feed(b" finished\r\n")
    assert a.take() == ["half a line finished"]


def test_an_unchanged_screen_yields_nothing_again() -> None:
    a = Agent("generic", rows=5)
    assert a.out("one\ntwo\n") == ["one", "two"]
    assert a.take() == []
    a.screen.feed(b"\x1b[H\x1b[2Jone\r\ntwo\r\n")  # a full redraw of the same screen
    assert a.take() == []


def test_a_redraw_of_more_than_a_screen_shares_nothing_twice() -> None:
    # Ink (Claude Code, Gemini) clears and rewrites its whole output on resize
    a = Agent("generic", rows=5)
    body = "".join(f"line {i}\n" for i in range(12))
    assert a.out(body) == [f"line {i}" for i in range(12)]
    assert a.out("\x1b[2J\x1b[3J\x1b[H" + body) == []
    assert a.out("line 12\n") == ["line 12"]


def test_lines_that_went_below_the_cursor_for_a_moment_are_not_shared_again() -> None:
    a = Agent("generic", rows=8)
    assert a.out("a\nb\nc\n") == ["a", "b", "c"]
    a.screen.feed(b"\x1b[2;1H")  # the cursor moves up (a TUI redrawing its input area)
    assert a.take() == []
    a.screen.feed(b"\x1b[4;1H")
    assert a.take() == []
    assert a.out("d\n") == ["d"]


def test_new_output_that_scrolled_off_between_quiet_points_is_captured_in_order() -> None:
    a = Agent("generic", rows=4)
    a.out("start\n")
    got = a.out("".join(f"row {i}\n" for i in range(10)))
    assert got == [f"row {i}" for i in range(10)]


def test_a_line_rewritten_in_place_is_shared_as_it_settles() -> None:
    a = Agent("generic", rows=4)
    a.out("progress 50%\n")
    a.screen.feed(b"\x1b[1A\rprogress 100%\r\n")
    assert a.take() == ["progress 100%"]


def test_repeated_identical_lines_of_new_output_are_all_kept() -> None:
    a = Agent("generic", rows=10)
    assert a.out("}\n}\n") == ["}", "}"]
    assert a.out("}\n") == ["}"]


def test_echo_of_injected_text_is_dropped() -> None:
    # only the echo itself: a line that shows a part of it is the agent's (it used to
    # be dropped too)
    a = Agent("claude", rows=10)
    a.capture.expect_echo("[human → @fa] line one\nline two")
    lines = ["[human → @fa] line one", "line   two", "● reply: [human → @fa] line one",
             "[human → @fa] line"]
    assert a.show(lines, 4) == ["reply: [human → @fa] line one", "[human → @fa] line"]


def test_echoes_are_bounded() -> None:
    c = Capture(load_profile("generic"))
    c.expect_echo("\n".join(f"echo {i}" for i in range(300)))
    assert len(c.echoes) == 200 and c.echoes[-1] == "echo 299"


def test_what_the_human_typed_is_not_shared() -> None:
    a = Agent("generic", rows=10)
    a.out(">>> ")
    a.screen.feed(b"print(42)\r\n42\r\n>>> ")
    assert a.take(typed=("print(42)",)) == ["42"]


# -- chunks ---------------------------------------------------------------------


def chunker(cap: int) -> Capture:
    return Capture(dataclasses.replace(load_profile("generic"), chunk_max_chars=cap))


def test_chunks_join_lines_up_to_the_cap_at_line_boundaries() -> None:
    c = chunker(20)
    assert c.chunks(["aaaa", "bbbb", "cccc", "dddd", "eeee"]) == [
        "aaaa\nbbbb\ncccc\ndddd", "eeee"]
    assert c.chunks(["x" * 20, "y"]) == ["x" * 20, "y"]


def test_chunks_collapse_blank_runs_and_drop_empty_output() -> None:
    c = chunker(100)
    assert c.chunks(["", "a", "", "", "", "b", ""]) == ["a\n\nb"]
    assert c.chunks(["", "  ", ""]) == []
    assert c.chunks([]) == []


def test_a_huge_line_is_cut_at_a_sentence_then_a_space_then_anywhere() -> None:
    c = chunker(40)
    text = "First sentence here. Second one is longer than the rest of it."
    assert c.chunks([text]) == ["First sentence here.", "Second one is longer than the rest of",
                                "it."]
    assert c.chunks(["z" * 100]) == ["z" * 40, "z" * 40, "z" * 20]


@pytest.mark.parametrize("cap", [1, 7, 50])
def test_no_chunk_exceeds_the_cap_and_nothing_is_lost(cap: int) -> None:
    c = chunker(cap)
    lines = ["alpha beta. gamma", "", "delta", "epsilon zeta eta theta iota kappa lambda"]
    out = c.chunks(lines)
    assert all(len(chunk) <= cap for chunk in out)
    assert "".join("".join(out).split()) == "".join("".join(lines).split())


def test_echo_behind_a_generic_prompt_is_not_shared() -> None:
    a = Agent("generic")
    for _ in range(2):  # typed in twice: echoed twice
        a.capture.expect_echo("[human → @all] hello agents, please report")
    lines = ["❯ [human → @all] hello agents, please report",
             ">>> [human → @all] hello agents, please report",
             "● reply: [human → @all] hello agents, please report", "❯"]
    assert a.show(lines, 3) == ["● reply: [human → @all] hello agents, please report"]


# What Claude Code 2.1.332 showed (classic renderer, 100 columns), reduced to its shape.
_RULE = "─" * 60
_INPUT = [_RULE, "❯ ", _RULE, "  ⏸ manual mode on · esc to interrupt"]


def _text(lines: list[str]) -> str:
    """What gets shared of these lines (blank runs at the ends do not count)."""
    return "\n".join(lines).strip("\n")


def test_claude_a_tip_wrapped_under_the_spinner_is_chrome_to_its_last_line() -> None:
    a = Agent("claude", rows=30)
    lines = ["❯ [human → @claude] please", "", "* Sock-hopping…",
             "  ⎿  Tip: Use Plan Mode to prepare for a complex request before making",
             "     changes. Press shift+tab twice to enable.", "", *_INPUT]
    assert _text(a.show(lines, 8)) == ""
    # and when the reply replaces the spinner, only the reply is new
    lines[2:5] = ["● ECHO: please", "  (1 line received)", "", "✻ Crunched for 3s"]
    assert _text(a.show(lines, 9)) == "ECHO: please\n(1 line received)"


@pytest.mark.parametrize("spinner", ["✶ Meandering…", "* Sock-hopping…", "✢ Beboppin'…",
                                     "· Flambéing…", "✻ Sautéed for 3s · done 12:42 PM"])
def test_claude_spinner_verbs_are_chrome(spinner: str) -> None:
    assert Agent("claude").show(["● hi", spinner, *_INPUT], 2) == ["hi"]


def test_claude_tool_output_wrapped_under_a_kept_line_is_kept() -> None:
    a = Agent("claude")
    lines = ["● Bash(ls)", "  ⎿  a.txt", "     b.txt", "● Two files.", "", *_INPUT]
    assert a.show(lines, 6) == ["Bash(ls)", "⎿  a.txt", "   b.txt", "Two files."]


def test_claude_first_start_notice_and_logo_are_chrome() -> None:
    a = Agent("claude", rows=30)  # as if they came after its first prompt
    lines = [" ▐▛███▛█   Claude Code v2.1.332", "▝▜██████▀  Opus 5.5 · API Usage Billing",
             " ▝▝   ▝▝   /home/me/project", "",
             "▎ Auto mode is now Claude Code's default permission mode.",
             "▎ Auto mode lets Claude handle permission prompts automatically. Claude",
             "▎ blocks the rest.", "▎ https://code.claude.com/docs/en/permission-modes",
             "", *_INPUT]
    assert _text(a.show(lines, 10)) == ""


_MENU = [_RULE, " Bash command", " Tip: auto mode handles these prompts for you",
         " Run the requested command", "╌" * 60, " touch made", "╌" * 60,
         " Do you want to proceed?", " ❯ 1. Yes", "   2. Yes, and always allow access to",
         "      /home/me/project from this project", "   4. No",
         " Esc to cancel · Tab to amend"]


def test_claude_permission_menu_is_never_shared_and_its_tool_call_is_once() -> None:
    a = Agent("claude", rows=30)
    asked = ["❯ [human → @claude] RUN: touch made", "● Bash(touch made)", "  ⎿  Waiting…"]
    assert a.show([*asked, *_MENU], 15) == []  # the menu is open: nothing yet
    assert a.show([*asked, *_MENU], 16) == []
    # answered: the menu is gone, the tool call and what came of it are shared
    done = [*asked[:2], "  ⎿  Done", "● TOOL RESULT: ok", "", *_INPUT]
    assert a.show(done, 6) == ["Bash(touch made)", "⎿  Done", "TOOL RESULT: ok"]


def test_lines_that_scroll_off_while_a_menu_is_open_are_shared_after_it() -> None:
    a = Agent("claude", rows=16)
    # the word scrolls off the top while the menu is open
    a.screen.feed("\r\n".join(["● Before the tool call, a word.", "● Bash(x)", *_MENU, "", ""])
                  .encode())
    assert a.take() == []
    assert "● Before the tool call, a word." not in a.screen.lines()
    out = a.show(["● Bash(x)", "  ⎿  Done", *_INPUT], 2)
    assert out == ["Before the tool call, a word.", "Bash(x)", "⎿  Done"]


def test_generic_profile_has_no_menus() -> None:
    a = Agent("generic")
    assert a.show(["$ ls", " ❯ 1. Yes", " Esc to cancel · Tab to amend", "$"], 3) == [
        "$ ls", " ❯ 1. Yes", " Esc to cancel · Tab to amend"]


def test_claude_onboarding_and_first_screen_are_not_shared_then_replies_are() -> None:
    a = Agent("claude", rows=30, started=False)
    splash = ["Welcome to Claude Code v2.1.332", "." * 58, " *        ░░░░", " Let's get started.",
              " Choose the text style that looks best with your terminal"]
    assert a.show(splash, 5) == []
    assert a.show([*splash, " ❯ ✔ Auto (match terminal)", "     Dark mode"], 6) == []
    first = [" ▐▛███▛█   Claude Code v2.1.332", "",
             "▎ Auto mode is now Claude Code's default permission mode.", "Press Enter to go on",
             "", *_INPUT]
    assert a.show(first, 6) == []  # its first prompt: the start is over
    asked = [*first[:5], "❯ [human → @claude] hi", "", "● ECHO: hi", "", *_INPUT]
    assert _text(a.show(asked, 9)) == "ECHO: hi"


def test_without_capture_after_prompt_the_first_screen_is_shared() -> None:
    a = Agent("codex", started=False)
    assert a.show(["• hello", "› "], 1) == ["hello"]
