"""Turning what settles on the agent's screen into clean chat text, once.

At each quiet point the sidecar calls :meth:`Capture.take`.  It reads the
screen model's rows from where the last look began (rows that scrolled off the
top in between included), joins the rows the terminal soft-wrapped into one
line each, and keeps the lines above the cursor's line (the input area and
footers of TUIs live at and below it; a line still being drawn is not done).

Those lines are placed in the transcript seen so far by *position*: the screen
model numbers rows, so a line is "already seen" when the same text sat at the
same place before, not because equal text appeared somewhere earlier (a second
reply's "```", blank lines and repeated bullets are new).  Only after the screen
was wiped (a full clear and redraw, a lost flood) is the redraw placed by its
content: a redraw repeats the transcript's tail, at any width, so it shares
nothing twice, while new text that merely resembles older text does not fit
there and is shared.  A resize re-wraps rows in the model, which keeps lines and
positions as they were.  Work is proportional to the rows read, never to the
transcript.

Then the CLI's chrome (prompts, rules, footers, spinners: profile patterns;
the wrapped continuation of such a line; the body of a box the chrome opened)
and the echo of what was typed in are dropped, reply markers (``● ``) are
stripped, and the rest is chunked at line boundaries.  Nothing is read while a
menu is open (profile ``menu_patterns``: a permission prompt) or while the
alternate screen is shown: what settles meanwhile is taken once they are gone.
With ``capture_after_prompt``, what a CLI shows before its first prompt
(onboarding, splash, first-start notices) is taken as seen, never shared.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import NamedTuple

from .profiles import Profile
from .screen import RowsRead, ScreenModel, join_rows

# braille spinners; an ASCII one (| / - \) only with a short "doing something…" after
# it, so markdown bullets ("- item") and table rows are kept
SPINNER = re.compile(r"^\s*([⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏⣾⣽⣻⢿⡿⣟⣯⣷]\s|[|/\\-]\s+\S.{0,60}(\.\.\.|…)"
                     r"\s*(\(.*\))?\s*$)")
_SPINNER_FIRST = frozenset("⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏⣾⣽⣻⢿⡿⣟⣯⣷|/\\-")
# where a line's text starts after its leading symbol ("  ⎿  Tip: …" -> column 5):
# the column a TUI indents that line's wrapped continuation to
_TEXT_START = re.compile(r"\s*\S+\s+(?=\S)")
# a box drawn by the CLI: a chrome line "╭───╮" opens it, "│ … │" rows are its body
_BOX_TOP = re.compile(r"^\s*╭.*╮\s*$")
# the echo of typed text may sit behind a short prompt: "❯ ", ">>> ", "$ ", "aider> ",
# "... " (not behind a word: "Note: <the same text>" is a reply)
_PROMPT = re.compile(r"^\s*(?:[\w()\[\]@~/.-]{0,12}[>$%#❯›»]+|\.{2,4})\s")
_TRANSCRIPT_LINES = 5000
_LIVE = 6  # lines at the end of the transcript a redraw may show changed (spinner, status)
_CANDIDATES = 4
_ECHO_ROWS = 20  # an echo hard-wrapped by the CLI spans at most this many lines
_KEY = 4  # echoes are looked up by this many first characters


def _norm(line: str) -> str:
    return " ".join(line.split())


def _squash(line: str) -> str:
    return "".join(line.split())


class _State(NamedTuple):
    """What a line means for the lines after it (kept per transcript line)."""

    column: int | None = None  # a chrome line's text column: its wrapped continuation
    indent: int = 0  # reply text is indented this much under its marker
    box: bool = False  # inside a box the CLI drew (its chrome)


_START = _State()


class _Patterns:
    """Several patterns searched as one (a line is tested once, not once per pattern)."""

    def __init__(self, patterns: tuple[re.Pattern[str], ...]) -> None:
        self.each = patterns
        self.one: re.Pattern[str] | None = None
        if patterns:
            try:
                self.one = re.compile("|".join(f"(?:{p.pattern})" for p in patterns))
            except re.error:  # e.g. a global flag inside one of them: test each
                self.one = None

    def search(self, line: str) -> bool:
        if self.one is not None:
            return self.one.search(line) is not None
        return any(p.search(line) for p in self.each)


class _Window(NamedTuple):
    """The lines read at one quiet point, in order, above the cursor's line."""

    lines: list[str]
    starts: list[int]  # absolute row where each line starts
    top: int  # index of the line holding the first visible row (len(lines): the cursor's)
    next_mark: int  # the row the next read starts at: where that line starts
    partial: bool  # the first line continues a row no longer kept


class Capture:
    def __init__(self, profile: Profile) -> None:
        self.profile = profile
        self.echoes: list[str] = []  # normalised lines typed in, their echo not yet seen
        # with capture_after_prompt, nothing is taken until the CLI has shown its prompt
        self.started = not (profile.capture_after_prompt and profile.prompt_patterns)
        self.seen: list[str] = []  # the transcript: lines at their positions
        self._states: list[_State] = []  # per seen line
        self._mark = 0  # absolute row where seen[self._top] starts: where reads begin
        self._top = 0
        self._end = 0  # just past the seen lines that were above the cursor last time
        self._break: int | None = None  # a wipe not yet followed by a redraw to place
        self._chrome = _Patterns(profile.chrome_patterns)
        self._menus = _Patterns(profile.menu_patterns)
        self._prompts = _Patterns(profile.prompt_patterns)
        self._echo_keys: tuple[list[str], dict[str, list[int]]] | None = None

    def expect_echo(self, text: str) -> None:
        """Remember text the agent will echo, so it is not shared as its output."""
        for line in text.splitlines():
            n = _norm(line)
            if n:
                self.echoes.append(n)
        del self.echoes[:-200]

    # -- the entry point ------------------------------------------------------------

    def take(self, screen: ScreenModel, typed: list[str] | tuple[str, ...] = ()) -> list[str]:
        """What the agent said since the last call, as chunks to share.

        ``typed``: the lines the human submitted since the last call (their echo is
        dropped).  Nothing is read while the alternate screen is shown or a menu is
        open: it stays on the model and is taken by a later call.
        """
        for line in typed:
            self.expect_echo(line)
        if screen.alternate_screen or screen.in_alternate:
            return []
        visible = screen.lines()
        if any(self._menus.search(line) for line in visible):
            return []
        window = self._window(screen.read_rows(self._mark))
        new, positions = self._merge(window)
        out = self._render(window.lines, positions, new)
        if not self.started:  # still starting: whatever it shows is its own
            self.started = any(self._prompts.search(line) for line in visible)
            return []
        return self.chunks(self._drop_echoes(out))

    # -- reading ----------------------------------------------------------------------

    def _window(self, read: RowsRead) -> _Window:
        """Join soft-wrapped rows into lines; keep those above the cursor's line."""
        groups: list[tuple[int, int]] = []  # (first row, end row) as indices into read.rows
        for i, row in enumerate(read.rows):
            if groups and row.wrapped:
                groups[-1] = (groups[-1][0], i + 1)
            else:
                groups.append((i, i + 1))
        cursor, top = read.cursor - read.first, read.top - read.first
        cut = next(g for g, (a, b) in enumerate(groups) if a <= cursor < b)
        top_group = next(g for g, (a, b) in enumerate(groups) if a <= top < b)
        lines = [join_rows(read.rows[a:b]) for a, b in groups[:cut]]
        starts = [read.first + a for a, _ in groups[:cut]]
        self._note_break(read)
        return _Window(lines, starts, min(top_group, cut), read.first + groups[top_group][0],
                       bool(read.rows) and read.rows[0].wrapped)

    def _note_break(self, read: RowsRead) -> None:
        """Rows from where the screen was wiped, or rows lost, are placed by content."""
        lost = read.first if read.first > self._mark else None
        for row in (read.broken, lost):
            if row is not None:
                self._break = row if self._break is None else min(self._break, row)

    # -- placing the window in the transcript ---------------------------------------------

    def _merge(self, window: _Window) -> tuple[set[int], list[int]]:
        """Place the window's lines in the transcript: which are new, and where each is.

        Lines read up to a wipe continue the transcript where the last read
        began; lines after it (a redraw) are placed where their content fits.
        """
        lines = window.lines
        pre = len(lines) if self._break is None else sum(s < self._break for s in window.starts)
        start = self._top
        new = {j for j in range(pre) if not self._is_seen(start + j, lines[j])}
        # a piece of a line seen whole: the rest of one that began out of reach, or the
        # start of one whose other rows a wipe erased; the transcript keeps it whole
        pieces = {0} if window.partial else set()
        if pre and pre < len(lines) and self._cut_by_wipe(start, lines, pre):
            pieces.add(pre - 1)
        new -= pieces
        self._put(start, lines[:pre], pieces)
        positions = list(range(start, start + pre))
        if pre < len(lines):  # a redraw after a wipe
            end = min(max(self._end, start + pre), len(self.seen))
            del self.seen[end:], self._states[end:]  # what was below the cursor is gone
            at = self._place(lines[pre:], end)
            if at < 0:  # it begins before the transcript kept: those lines are old
                self.seen[0:0] = lines[pre:pre - at]
                self._states[0:0] = [_START] * -at
                positions = [p - at for p in positions]
                at = 0
            new |= {pre + j for j, line in enumerate(lines[pre:])
                    if not self._is_seen(at + j, line)}
            self._put(at, lines[pre:])
            positions += range(at, at + len(lines) - pre)
            self._break = None
        after = positions[-1] + 1 if positions else self._top
        self._end = after
        self._top = positions[window.top] if window.top < len(positions) else after
        self._mark = window.next_mark
        self._trim(positions)
        return new, positions

    def _is_seen(self, k: int, line: str) -> bool:
        return 0 <= k < len(self.seen) and self.seen[k] == line

    def _cut_by_wipe(self, start: int, lines: list[str], pre: int) -> bool:
        """The last line before a wipe lost its rows on screen: its start is the line seen."""
        k = start + pre - 1
        return 0 <= k < len(self.seen) and bool(lines[pre - 1]) and \
            self.seen[k].startswith(lines[pre - 1])

    def _put(self, at: int, lines: list[str], pieces: set[int] = frozenset()) -> None:
        """Write ``lines`` into the transcript from ``at`` (not those in ``pieces``)."""
        kept = {j: self.seen[at + j] for j in pieces if at + j < len(self.seen)}
        self.seen[at:at + len(lines)] = lines
        self._states[at:at + len(lines)] = [_START] * len(lines)
        for j, line in kept.items():
            self.seen[at + j] = line

    def _trim(self, positions: list[int]) -> None:
        excess = len(self.seen) - _TRANSCRIPT_LINES
        if excess <= 0:
            return
        cut = excess + _TRANSCRIPT_LINES // 10
        del self.seen[:cut], self._states[:cut]
        self._top, self._end = max(0, self._top - cut), max(0, self._end - cut)
        positions[:] = [p - cut for p in positions]

    def _place(self, redraw: list[str], end: int) -> int:
        """Where a redraw's first line sits in the transcript (which ends at ``end``).

        A redraw repeats the transcript's tail, maybe followed by new lines; only
        its last few lines (a spinner, a status) may differ.  Candidates come from
        equal lines (hash look-ups, bounded per line), and must fit exactly; new text
        that merely resembles an older reply does not, and goes after ``end``.
        """
        low = max(0, end - len(redraw) - 200)
        where: dict[str, list[int]] = {}
        for k in range(low, end):
            if self.seen[k].strip():
                where.setdefault(self.seen[k], []).append(k)
        votes: Counter[int] = Counter()
        for j, line in enumerate(redraw):
            for k in where.get(line, ())[-_CANDIDATES:]:
                votes[k - j] += 1
        best, best_score = end, 0
        for at, _ in votes.most_common(_CANDIDATES):
            score = self._fit(redraw, at, end)
            if score is not None and (score, at) > (best_score, best):
                best, best_score = at, score
        return best

    def _fit(self, redraw: list[str], at: int, end: int) -> int | None:
        """How many non-blank lines match if the redraw starts at ``at``; None: no fit."""
        matches = misses = 0
        for j in range(max(0, -at), min(len(redraw), end - at)):
            k, line = at + j, redraw[j]
            if self.seen[k] == line:
                matches += bool(line.strip())
            elif k < end - _LIVE:
                return None
            else:
                misses += bool(line.strip() or self.seen[k].strip())
        return matches if matches and misses <= matches else None

    # -- cleaning -------------------------------------------------------------------------

    def _render(self, lines: list[str], positions: list[int], new: set[int]) -> list[str | None]:
        """The new lines cleaned (None: chrome), computing each line's state on the way."""
        out: list[str | None] = []
        state, previous = _START, -2
        for j, line in enumerate(lines):
            k = positions[j]
            if k != previous + 1:  # a run starts: carry the state of the line before it
                state = self._states[k - 1] if k > 0 else _START
            state, text = self._step(state, line)
            self._states[k], previous = state, k
            if j in new:
                out.append(text)
        return out

    def _step(self, state: _State, line: str) -> tuple[_State, str | None]:
        """One line read in its context: its text to share (None: chrome), and the
        context for the next line."""
        stripped = line.lstrip()
        lead = len(line) - len(stripped)
        if not stripped:
            return _State(None, state.indent, False), ""
        if self._chrome.search(line):
            start = _TEXT_START.match(line)
            opens = state.box or _BOX_TOP.match(line) is not None
            return _State(start.end() if start else None, state.indent,
                          opens and not stripped.startswith("╰")), None
        if state.box and stripped[0] in "│╰":  # the body of a box the CLI drew
            return _State(None, state.indent, stripped[0] == "│"), None
        if lead == state.column:  # a chrome line's wrapped continuation
            return _State(state.column, state.indent, False), None
        indent = state.indent
        marker = next((m for m in self.profile.reply_markers if line.startswith(m)), None)
        if marker is not None:
            indent, line = len(marker), line[len(marker):]
        elif lead >= indent > 0:
            line = line[indent:]
        else:
            indent = 0
        if line.lstrip()[:1] in _SPINNER_FIRST and SPINNER.match(line):
            return _State(None, indent, False), None
        return _State(None, indent, False), line.rstrip()

    def _drop_echoes(self, lines: list[str | None]) -> list[str]:
        """The lines without the echo of what was typed in (each echo is seen once)."""
        out: list[str] = []
        i = 0
        while i < len(lines):
            line = lines[i]
            used = self._echo_at(lines, i) if line and line.strip() and self.echoes else 0
            if line is not None and not used:
                out.append(line)
            i += max(used, 1)
        return out

    def _echo_at(self, lines: list[str | None], i: int) -> int:
        """How many lines from ``i`` are the echo of one typed line (0: none).

        The echo is that exact line, maybe behind a short prompt ("❯ ", ">>> "), maybe
        wrapped by the CLI over a few lines; a line that quotes it among other words,
        or shows only a part of it, is not its echo.
        """
        first = lines[i] or ""
        heads = [_squash(first)]
        prompt = _PROMPT.match(first)
        if prompt:
            heads.append(_squash(first[prompt.end():]))
        for head in heads:
            for n in self._echo_index().get(head[:_KEY], ()):
                used = _spans(_squash(self.echoes[n]), head, lines, i)
                if used:
                    del self.echoes[n]
                    self._echo_keys = None
                    return used
        return 0

    def _echo_index(self) -> dict[str, list[int]]:
        """Echoes by their first characters: a line is compared with few of them."""
        if self._echo_keys is None or self._echo_keys[0] != self.echoes:
            index: dict[str, list[int]] = {}
            for n, echo in enumerate(self.echoes):
                index.setdefault(_squash(echo)[:_KEY], []).append(n)
            self._echo_keys = (list(self.echoes), index)
        return self._echo_keys[1]

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


def _spans(target: str, head: str, lines: list[str | None], i: int) -> int:
    """How many lines from ``i`` (the first read as ``head``) spell ``target`` exactly."""
    if not head or not target.startswith(head):
        return 0
    text = head
    for n in range(1, _ECHO_ROWS + 1):
        if text == target:
            return n
        if i + n >= len(lines) or not (lines[i + n] or "").strip():
            return 0
        text += _squash(lines[i + n] or "")
        if not target.startswith(text):
            return 0
    return 0


def _cut_point(line: str, cap: int) -> int:
    """Where to cut a line longer than ``cap``: after a sentence, else a space."""
    head = line[:cap]
    for pattern in (r"[.!?…](?=\s)", r"\s"):
        ends = [m.end() for m in re.finditer(pattern, head)]
        if ends and ends[-1] >= cap // 2:
            return ends[-1]
    return cap
