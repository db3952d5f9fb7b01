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
from collections.abc import Set as AbstractSet
from typing import NamedTuple

from .profiles import Profile
from .screen import Row, RowsRead, ScreenModel, join_rows

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
_TAKE_LINES = 1500  # at most this many lines a call (then ``more``): bounded work a call
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
_PLAIN: dict[int, _State] = {}


def _plain(indent: int) -> _State:
    """The state after a reply line (one shared tuple per indent)."""
    state = _PLAIN.get(indent)
    if state is None:
        state = _PLAIN[indent] = _State(None, indent, False)
    return state


class _Patterns:
    """Several patterns searched as one, a line tested once rather than once per pattern.

    Those anchored at the start are tried at the start only (``match``): searched in
    one alternation with the others, each would be tried at every position.
    """

    def __init__(self, patterns: tuple[re.Pattern[str], ...]) -> None:
        self.each = patterns
        start = _combine([p.pattern for p in patterns if _anchored(p.pattern)])
        anywhere = _combine([p.pattern for p in patterns if not _anchored(p.pattern)])
        self.start, self.anywhere = start or _NONE, anywhere or _NONE
        # a flag, a back reference (numbered in the one pattern), or a pattern that does
        # not combine: test each
        self.combined = start is not None and anywhere is not None and all(
            p.flags == re.UNICODE and not _BACKREF.search(p.pattern) for p in patterns)

    def search(self, line: str) -> bool:
        if not self.combined:
            return any(p.search(line) for p in self.each)
        return bool(self.start.match(line) or self.anywhere.search(line))


_NONE = re.compile(r"(?!)")  # matches nothing: no pattern of a kind
_BACKREF = re.compile(r"\\[1-9]|\(\?P=")


def _combine(patterns: list[str]) -> re.Pattern[str] | None:
    """One alternation of ``patterns`` (``_NONE`` if empty; None if they do not combine)."""
    if not patterns:
        return _NONE
    try:
        return re.compile("|".join(f"(?:{p})" for p in patterns))
    except re.error:  # e.g. a global flag inside one of them
        return None


def _anchored(pattern: str) -> bool:
    """Does ``pattern`` only match at the start of a line ("^…", no "|" outside groups)?"""
    if not pattern.startswith("^"):
        return False
    depth, i, in_class = 0, 1, False
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\":
            i += 1
        elif in_class:
            in_class = ch != "]"
        elif ch == "[":
            in_class = True
            i += 1 if pattern[i + 1:i + 2] == "^" else 0
            i += 1 if pattern[i + 1:i + 2] == "]" else 0  # "[]…]": that "]" is a character
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "|" and depth == 0:
            return False
        i += 1
    return True


class _Window(NamedTuple):
    """The lines read at one quiet point, in order, above the cursor's line."""

    lines: list[str]
    starts: list[int]  # absolute row where each line starts
    top: int  # index of the line holding the first visible row (len(lines): the cursor's)
    next_mark: int  # the row the next read starts at: where that line starts
    partial: bool  # the first line continues a row no longer kept
    width: int  # the screen's width


class Capture:
    """What an agent says on screen, for a CLI that cannot report it otherwise.

    The sidecar calls :meth:`expect_echo` with what it types in, and :meth:`take`
    at each quiet point; ``take`` returns the chunks to share.  After a large
    output one call takes at most ``_TAKE_LINES`` lines and sets :attr:`more`:
    the rest is taken by the next calls, so no call holds the event loop long.
    """

    def __init__(self, profile: Profile) -> None:
        self.profile = profile
        self.echoes: list[str] = []  # normalised lines typed in, their echo not yet seen
        # with capture_after_prompt, nothing is taken until the CLI has shown its prompt
        self.started = not (profile.capture_after_prompt and profile.prompt_patterns)
        self.seen: list[str] = []  # the transcript: lines at their positions
        self._states: list[_State | None] = []  # per seen line (None: not known)
        self._mark = 0  # absolute row where seen[self._top] starts: where reads begin
        self._top = 0
        self._end = 0  # just past the seen lines that were above the cursor last time
        self._break: int | None = None  # a wipe not yet followed by a redraw to place
        self._width = 0  # the screen's width when the transcript's end was read
        self._chrome = _Patterns(profile.chrome_patterns)
        self._menus = _Patterns(profile.menu_patterns)
        self._prompts = _Patterns(profile.prompt_patterns)
        self._markers = tuple(profile.reply_markers)
        # more lines wait to be taken than one call takes: call again soon
        self.more = False

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
        self.more = False
        for line in typed:
            self.expect_echo(line)
        if screen.alternate_screen or screen.in_alternate:
            return []
        visible = screen.lines()
        if any(self._menus.search(line) for line in visible):
            return []
        window = self._window(screen.read_rows(self._mark))
        self.more = len(window.lines) == _TAKE_LINES and self._break is None
        new, positions = self._merge(window)
        out = self._render(window.lines[:len(positions)], positions, new)
        if not self.started:  # still starting: whatever it shows is its own
            self.started = any(self._prompts.search(line) for line in visible)
            return []
        return self.chunks(self._drop_echoes(out))

    # -- reading ----------------------------------------------------------------------

    def _window(self, read: RowsRead) -> _Window:
        """Join soft-wrapped rows into lines; keep those above the cursor's line."""
        rows, first = read.rows, read.first
        cut = _line_start(rows, read.cursor - first)  # the cursor's line is not done
        top_row = _line_start(rows, read.top - first)
        self._note_break(read)
        limit = _TAKE_LINES if self._break is None else len(rows)
        lines: list[str] = []
        starts: list[int] = []
        top = None
        i = 0
        while i < cut:
            if len(lines) == limit:  # the rest next time (a redraw is placed in one go)
                cut = i
                break
            j = i + 1
            while j < cut and rows[j].wrapped:
                j += 1
            if i == top_row:
                top = len(lines)
            lines.append(rows[i].text if j == i + 1 else join_rows(rows[i:j]))
            starts.append(first + i)
            i = j
        return _Window(lines, starts, len(lines) if top is None else top,
                       first + min(top_row, cut), bool(rows) and rows[0].wrapped,
                       rows[-1].width)

    def _note_break(self, read: RowsRead) -> None:
        """Rows from where the screen was wiped, or rows lost, are placed by content."""
        lost = read.first if read.first > self._mark else None
        for row in (read.broken, lost):
            if row is not None:
                self._break = row if self._break is None else min(self._break, row)

    # -- placing the window in the transcript ---------------------------------------------

    def _merge(self, window: _Window) -> tuple[set[int], list[int]]:
        """Place the window's lines in the transcript: which are new, and where each of
        the lines placed is (a redraw still being drawn is not placed yet).

        Lines read up to a wipe continue the transcript where the last read
        began; lines after it (a redraw) are placed where their content fits.
        """
        lines, wipe = window.lines, self._break
        pre = len(lines) if wipe is None else sum(s < wipe for s in window.starts)
        if window.partial:  # a piece of a line from before: not where a redraw starts
            pre = max(pre, min(1, len(lines)))
        start = self._top
        new = self._continue(window, pre)
        positions = list(range(start, start + pre))
        if wipe is not None and pre < len(lines):  # a redraw after a wipe
            end = min(max(self._end, start + pre), len(self.seen))
            placed = self._redraw(lines[pre:], end, window.width != self._width)
            if placed is None:  # not all drawn yet: read it again from the wipe, next time
                self._top, self._end, self._mark = start + pre, end, wipe
                return new, positions
            fresh, at, shift = placed
            new |= {pre + j for j in fresh}
            positions = [p + shift for p in positions] + list(range(at, at + len(lines) - pre))
            self._break = None
        after = positions[-1] + 1 if positions else self._top
        self._end = after
        if new or (wipe is not None and self._break is None):  # what its end was drawn at
            self._width = window.width
        self._top = positions[window.top] if window.top < len(positions) else after
        self._mark = window.next_mark
        self._trim(positions)
        return new, positions

    def _continue(self, window: _Window, pre: int) -> set[int]:
        """Put the first ``pre`` lines where the last read began: those that changed
        there, or go past what was seen, are new."""
        lines, start = window.lines, self._top
        new = {j for j in range(pre) if not self._is_seen(start + j, lines[j])}
        # a piece of a line seen whole: the rest of one that began out of reach, or the
        # start of one whose other rows a wipe erased; the transcript keeps it whole
        pieces = {0} if window.partial else set()
        if pre and pre < len(lines) and self._cut_by_wipe(start, lines, pre):
            pieces.add(pre - 1)
        self._put(start, lines[:pre], pieces)
        return new - pieces

    def _redraw(self, redraw: list[str], end: int,
                resized: bool) -> tuple[set[int], int, int] | None:
        """Put a redraw where it fits: its new lines, where it starts, and how far the
        transcript moved (lines from before the transcript kept are put in front).

        None: drawn so far, it repeats old lines and has not reached the end, at a
        new width: read it again once more is drawn (a redraw wrapped anew does not
        go on line for line where it stops)."""
        del self.seen[end:], self._states[end:]  # what was below the cursor is gone
        at = self._place(redraw, end)
        if resized and at is not None and at + len(redraw) < end:
            return None
        if at is None:
            rewrapped = self._place_text(redraw, end)
            if rewrapped is not None:  # the same text, wrapped by the CLI at another width
                at, old = rewrapped
                if old < 0:
                    return None
                del self.seen[at:end], self._states[at:end]
                self._put(at, redraw)
                return set(range(old, len(redraw))), at, 0
            at = end
        shift = max(0, -at)
        if shift:  # it begins before the transcript kept: those lines are old
            self.seen[0:0] = redraw[:shift]
            self._states[0:0] = [None] * shift
            at = 0
        fresh = {j for j, line in enumerate(redraw) if not self._is_seen(at + j, line)}
        self._put(at, redraw)
        return fresh, at, shift

    def _is_seen(self, k: int, line: str) -> bool:
        return 0 <= k < len(self.seen) and self.seen[k] == line

    def _cut_by_wipe(self, start: int, lines: list[str], pre: int) -> bool:
        """The last line before a wipe lost its rows on screen: its start is the line seen."""
        k = start + pre - 1
        return 0 <= k < len(self.seen) and bool(lines[pre - 1]) and \
            self.seen[k].startswith(lines[pre - 1])

    def _put(self, at: int, lines: list[str], pieces: AbstractSet[int] = frozenset()) -> None:
        """Write ``lines`` into the transcript from ``at`` (not those in ``pieces``)."""
        kept = {j: self.seen[at + j] for j in pieces if at + j < len(self.seen)}
        old = self.seen[at:at + len(lines)]
        self._states[at:at + len(lines)] = [
            self._states[at + j] if j < len(old) and old[j] == line else None
            for j, line in enumerate(lines)]
        self.seen[at:at + len(lines)] = lines
        for j, line in kept.items():
            self.seen[at + j] = line

    def _trim(self, positions: list[int]) -> None:
        """Forget the oldest lines (not those just read: their states are still due)."""
        excess = len(self.seen) - _TRANSCRIPT_LINES
        cut = min(excess + _TRANSCRIPT_LINES // 10, positions[0] if positions else excess)
        if excess <= 0 or cut <= 0:
            return
        del self.seen[:cut], self._states[:cut]
        self._top, self._end = max(0, self._top - cut), max(0, self._end - cut)
        positions[:] = [p - cut for p in positions]

    def _place(self, redraw: list[str], end: int) -> int | None:
        """Where a redraw's first line sits in the transcript (which ends at ``end``).

        A redraw repeats the transcript's tail, maybe followed by new lines; only
        its last few lines (a spinner, a status) may differ.  Candidates come from
        equal lines (hash look-ups, bounded per line), and must fit exactly; new text
        that merely resembles an older reply does not, and goes after ``end``.
        """
        where: dict[str, list[int]] = {}  # (a redraw may begin anywhere: all of it)
        for k in range(end):
            if self.seen[k].strip():
                where.setdefault(self.seen[k], []).append(k)
        votes: Counter[int] = Counter()
        for j, line in enumerate(redraw):
            for k in where.get(line, ())[-_CANDIDATES:]:
                votes[k - j] += 1
        best, best_score = None, 0
        for at, _ in votes.most_common(_CANDIDATES):
            score = self._fit(redraw, at, end)
            if score is not None and (score, at) > (best_score, best or 0):
                best, best_score = at, score
        return best

    def _place_text(self, redraw: list[str], end: int) -> tuple[int, int] | None:
        """Where a redraw that wrapped its text anew begins, and how many of its lines
        are old; None if it is not the transcript's tail.

        TUIs (Ink) wrap long text themselves, words too long for a row included, and
        draw it again after a resize at the new width: the lines differ, the text
        without its blanks does not.  It must begin where a transcript line begins,
        and match up to the last few lines.
        """
        text = "".join(_squash(line) for line in redraw)
        if not text:
            return None
        best: tuple[int, int] | None = None
        tried = 0
        for x in range(end - 1, max(0, end - 4 * len(redraw) - 200) - 1, -1):
            head = self.seen[x].lstrip()[:1]
            if not head or head != text[0] or not text.startswith(_squash(self.seen[x])[:16]):
                continue
            matched = self._text_fit(text, x, end)
            if matched < 0:
                return x, -1
            if matched and (best is None or matched > best[1]):
                best = (x, matched)
            tried += 1
            if tried == 2 * _CANDIDATES:
                break
        if best is None:
            return None
        x, matched = best
        old, done = 0, 0
        for line in redraw:  # lines wholly within the matched text are old
            done += len(_squash(line))
            if done > matched:
                break
            old += 1
        return x, old

    def _text_fit(self, text: str, x: int, end: int) -> int:
        """How much of ``text`` matches the transcript's text (blanks aside) from line
        ``x`` on; 0 if they part before its last few lines; -1 if all of it matches and
        the transcript's text goes on (a redraw not drawn to its end yet)."""
        at = 0
        for k in range(x, end):
            line = _squash(self.seen[k])
            if text.startswith(line, at):
                at += len(line)
                continue
            if line.startswith(text[at:]):  # all of the redraw so far is old: more to come
                return -1
            if k < end - _LIVE:
                return 0
            same = 0
            while at + same < len(text) and same < len(line) and text[at + same] == line[same]:
                same += 1
            return at + same
        return at

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
        """The new lines cleaned (None: chrome), computing each line's state on the way.

        A line seen before, reached in the state it was reached in before, keeps its
        state: only new lines and what they change are looked at.
        """
        out: list[str | None] = []
        state, previous = _START, -2
        before: _State | None = _START  # the state stored after the previous line, before
        for j, line in enumerate(lines):
            k = positions[j]
            if k != previous + 1:  # a run starts: carry the state of the line before it
                state = (self._states[k - 1] if k > 0 else None) or _START
                before = state
            stored, previous = self._states[k], k
            if j not in new and stored is not None and state == before:
                state = before = stored
                continue
            before = stored
            state, text = self._step(state, line)
            self._states[k] = state
            if j in new:
                out.append(text)
        return out

    def _step(self, state: _State, line: str) -> tuple[_State, str | None]:
        """One line read in its context: its text to share (None: chrome), and the
        context for the next line."""
        stripped = line.lstrip()
        if not stripped:
            return _plain(state.indent), ""
        if self._chrome.search(line):
            start = _TEXT_START.match(line)
            opens = state.box or _BOX_TOP.match(line) is not None
            return _State(start.end() if start else None, state.indent,
                          opens and not stripped.startswith("╰")), None
        if state.box and stripped[0] in "│╰":  # the body of a box the CLI drew
            return _State(None, state.indent, stripped[0] == "│"), None
        lead = len(line) - len(stripped)
        if lead == state.column:  # a chrome line's wrapped continuation
            return _State(state.column, state.indent, False), None
        indent = state.indent
        if self._markers and line.startswith(self._markers):
            indent = len(next(m for m in self._markers if line.startswith(m)))
            line = line[indent:]
        elif lead >= indent > 0:
            line = line[indent:]
        else:
            indent = 0
        if stripped[0] in _SPINNER_FIRST and SPINNER.match(line):
            return _plain(indent), None
        return _plain(indent), line.rstrip()

    def _drop_echoes(self, lines: list[str | None]) -> list[str]:
        """The lines without the echo of what was typed in (each echo is seen once)."""
        if not self.echoes:
            return [line for line in lines if line is not None]
        index = self._echo_index()
        out: list[str] = []
        i = 0
        while i < len(lines):
            line = lines[i]
            used = self._echo_at(lines, i, index) if line and line.strip() else 0
            if used:
                index = self._echo_index()
            elif line is not None:
                out.append(line)
            i += max(used, 1)
        return out

    def _echo_at(self, lines: list[str | None], i: int, index: dict[str, list[int]]) -> int:
        """How many lines from ``i`` are the echo of one typed line (0: none; it is
        forgotten once seen).

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
            for n in index.get(head[:_KEY], ()):
                used = _spans(_squash(self.echoes[n]), head, lines, i)
                if used:
                    del self.echoes[n]
                    return used
        return 0

    def _echo_index(self) -> dict[str, list[int]]:
        """Echoes by their first characters: a line is compared with few of them."""
        index: dict[str, list[int]] = {}
        for n, echo in enumerate(self.echoes):
            index.setdefault(_squash(echo)[:_KEY], []).append(n)
        return index

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


def _line_start(rows: list[Row], i: int) -> int:
    """The row where the line holding row ``i`` starts (rows wrap into the next)."""
    while i > 0 and rows[i].wrapped:
        i -= 1
    return i


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
