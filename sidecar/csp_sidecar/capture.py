"""Turning what settles on the agent's screen into clean chat text.

At each quiet point (no output for ``capture_quiet_ms``) the screen is
compared with the previous quiet point.  Lines that are new, including those
that scrolled off the top in between, and that sit above the cursor (the
input area and footers of TUIs live at and below it) are candidates.  Then
the CLI's chrome (prompts, rules, footers, spinners: profile patterns, and
the wrapped continuation of such a line), the echo of what was just injected
and of what the human typed are dropped, reply markers (``● ``) are stripped,
and the rest is chunked at line boundaries.  While a menu is open (profile
``menu_patterns``: a permission prompt) nothing is captured: the menu's text is
the CLI's, and what settles meanwhile is taken once the menu is answered.
With ``capture_after_prompt``, what a CLI shows before its first prompt
(onboarding, splash, first-start notices) is taken as seen, never shared.
"""

from __future__ import annotations

import difflib
import re

from .profiles import Profile

# braille spinners; an ASCII one (| / - \) only with a short "doing something…" after
# it, so markdown bullets ("- item") and table rows are kept
SPINNER = re.compile(r"^\s*([⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏⣾⣽⣻⢿⡿⣟⣯⣷]\s|[|/\\-]\s+\S.{0,60}(\.\.\.|…)"
                     r"\s*(\(.*\))?\s*$)")
# where a line's text starts after its leading symbol ("  ⎿  Tip: …" -> column 5):
# the column a TUI indents that line's wrapped continuation to
_TEXT_START = re.compile(r"\s*\S+\s+(?=\S)")
_MARGIN = 200  # transcript lines compared beyond the window's own length
_TRANSCRIPT_LINES = 5000


def _norm(line: str) -> str:
    return " ".join(line.split())


class Capture:
    def __init__(self, profile: Profile) -> None:
        self.profile = profile
        self.previous: list[str] = []  # the tail of the transcript seen so far
        self.echoes: list[str] = []  # normalised lines we typed in ourselves
        self.held: list[str] = []  # lines that scrolled off while a menu was open
        # with capture_after_prompt, nothing is taken until the CLI has shown its prompt
        self.started = not (profile.capture_after_prompt and profile.prompt_patterns)

    def expect_echo(self, text: str) -> None:
        """Remember text the agent will echo, so it is not shared as its output."""
        for line in text.splitlines():
            n = _norm(line)
            if n:
                self.echoes.append(n)
        del self.echoes[:-200]

    def reset(self, lines: list[str]) -> None:
        """Take ``lines`` as seen without sharing them (e.g. a full-screen app's view)."""
        self._diff(list(lines))

    def settle(self, scrolled: list[str], lines: list[str], cursor_row: int) -> list[str]:
        """New settled lines since the last call, filtered; updates the baseline.

        While a menu is on screen (anywhere, also below the cursor) nothing is
        taken and the baseline stays: once the menu is answered and gone, what
        settled around it is new, what was only the menu's never shows up.
        """
        if any(p.search(line) for line in lines for p in self.profile.menu_patterns):
            self.held = (self.held + scrolled)[-_TRANSCRIPT_LINES:]
            return []
        current = self.held + scrolled + lines[:cursor_row]
        self.held = []
        if not self.started:  # still starting: whatever it shows is its own
            self.started = any(p.search(line) for line in lines
                               for p in self.profile.prompt_patterns)
            self._diff(current)
            return []
        chrome = self._chrome_blocks(current)
        new = self._dedent_replies([current[i] for i in self._diff(current) if i not in chrome])
        return [line for line in (self._clean(x) for x in new) if line is not None]

    def _is_chrome(self, line: str) -> bool:
        return any(p.search(line) for p in self.profile.chrome_patterns)

    def _chrome_blocks(self, lines: list[str]) -> set[int]:
        """Indices of chrome lines as drawn, with the lines their text wraps onto.

        A TUI wraps a long line (Claude Code's "⎿  Tip: …" under its spinner)
        onto lines indented to where its text starts; no pattern can tell such a
        continuation ("     twice to enable.") from words, but its neighbour can.
        Decided on the whole window, so a continuation is known even when the
        line it continues was seen before.
        """
        out: set[int] = set()
        column: int | None = None
        for i, line in enumerate(lines):
            lead = len(line) - len(line.lstrip())
            if line.strip() and self._is_chrome(line):
                out.add(i)
                start = _TEXT_START.match(line)
                column = start.end() if start else None
            elif line.strip() and lead == column:
                out.add(i)
            else:
                column = None
        return out

    def _dedent_replies(self, lines: list[str]) -> list[str]:
        """Continuation lines of a reply are indented under its marker (``● ``): drop that."""
        out: list[str] = []
        indent = 0
        for line in lines:
            stripped = line.lstrip()
            lead = len(line) - len(stripped)
            marker = next((m for m in self.profile.reply_markers if stripped.startswith(m)), None)
            if marker is not None:
                indent = lead + len(marker)
            elif stripped and lead >= indent > 0:
                line = line[indent:]
            elif stripped:
                indent = 0
            out.append(line)
        return out

    def _diff(self, current: list[str]) -> list[int]:
        """Indices of lines of ``current`` not in the transcript seen so far; merge them in.

        ``current`` is a window onto the end of the agent's transcript: what
        scrolled off since the last call, then the screen above the cursor.  It
        is aligned with the tail of the transcript seen so far, not just with
        the last screen, so a TUI that clears and redraws everything (Ink does,
        on resize or when its output outgrows the screen) shares nothing twice;
        and lines that went below the cursor for a moment stay known.
        """
        window = len(current) + _MARGIN
        before, tail = self.previous[:-window], self.previous[-window:]
        ops = difflib.SequenceMatcher(a=tail, b=current, autojunk=False).get_opcodes()
        new = [j for op, _, _, j1, j2 in ops if op in ("insert", "replace")
               for j in range(j1, j2)]
        equal = [(i1, i2, j1, j2) for op, i1, i2, j1, j2 in ops if op == "equal"]
        if not equal:
            merged = tail + current
        else:
            i1, _, j1, _ = equal[0]
            _, i2, _, j2 = equal[-1]
            # keep what came before the window, and what was below it if nothing replaced it
            below = tail[i2:] if j2 == len(current) else []
            merged = tail[:max(0, i1 - j1)] + current + below
        self.previous = (before + merged)[-_TRANSCRIPT_LINES:]
        return new

    def _clean(self, line: str) -> str | None:
        for marker in self.profile.reply_markers:
            if line.lstrip().startswith(marker):
                line = line.lstrip()[len(marker):]
                break
        if not line.strip():
            return ""
        if self._is_chrome(line):
            return None
        if SPINNER.match(line):
            return None
        n = _norm(line)
        if any(_is_echo(n, e) for e in self.echoes):
            return None
        return line.rstrip()

    def chunks(self, lines: list[str]) -> list[str]:
        """Join lines into messages of at most ``chunk_max_chars``, at line boundaries."""
        text = "\n".join(lines)
        text = re.sub(r"\n{3,}", "\n\n", text).strip("\n")
        if not text.strip():
            return []
        out: list[str] = []
        cap = self.profile.chunk_max_chars
        current = ""
        for line in text.split("\n"):
            while len(line) > cap:  # a single huge line: cut it, at a sentence if possible
                if current:
                    out.append(current)
                    current = ""
                cut = _cut_point(line, cap)
                out.append(line[:cut].rstrip())
                line = line[cut:].lstrip(" ")
            candidate = f"{current}\n{line}" if current else line
            if len(candidate) > cap:
                out.append(current)
                current = line
            else:
                current = candidate
        if current.strip():
            out.append(current)
        return [c.strip("\n") for c in out if c.strip()]


def _is_echo(line: str, echo: str) -> bool:
    """Is this screen line (part of) text we typed in, maybe behind a short prompt?"""
    if line == echo or (len(line) > 12 and line in echo):
        return True
    # "❯ [human → @all] hi", ">>> [human → @all] hi": the echo behind a prompt
    return len(echo) > 12 and line.endswith(echo) and len(line) - len(echo) <= 4


def _cut_point(line: str, cap: int) -> int:
    """Where to cut a line longer than ``cap``: after a sentence, else a space."""
    head = line[:cap]
    for pattern in (r"[.!?…](?=\s)", r"\s"):
        ends = [m.end() for m in re.finditer(pattern, head)]
        if ends and ends[-1] >= cap // 2:
            return ends[-1]
    return cap
