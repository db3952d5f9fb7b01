"""A model of the agent's screen, fed with everything the agent prints.

Readiness and capture look at what is *on screen* (pyte, a VT emulator), not
at the raw byte stream full of cursor motion and redraws.  Alongside, a tiny
scanner watches the raw stream for the private modes that matter to
injection: bracketed paste (``?2004``) and the alternate screen (``?1049``,
``?47``, ``?1047``).

For capture the model knows more than pyte does: which rows continue the row
above because the cursor auto-wrapped into them (so a line wider than the
pane is one line again, whatever the pane's width), the rows that scrolled off
the top (numbered, so capture can ask for "everything since row N"), where the
screen was wiped (a full clear: what follows is a redraw, not a continuation),
the alternate screen as a separate buffer (so a full-screen app never mixes
into the transcript) and concealed text (SGR 8, drawn as blanks).  A resize
re-wraps the lines at the new width, as tmux does, instead of cutting them.
"""

from __future__ import annotations

import codecs
import copy
import re
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, NamedTuple

import pyte
from pyte import modes as mo
from pyte.charsets import LAT1_MAP  # the default: maps every character to itself
from pyte.screens import StaticDefaultDict, wcwidth

_MODE = re.compile(rb"\x1b\[\?([0-9;]+)([hl])")
_STYLES_CACHED = 256
# CSI sequences with a private marker pyte does not know (kitty keyboard ESC[<u / ESC[>1u,
# xterm modifyOtherKeys ESC[>4;2m): they set input modes and draw nothing
_PRIVATE_CSI = re.compile(r"\x1b\[[<>=][0-9;:?]*[ -/]*[@-~]")
_CUT_CSI = re.compile(r"\x1b(\[[0-9;:?<>=]{0,64}[ -/]{0,4})?\Z")
_PARTIAL = re.compile(rb"\x1b(\[(\?[0-9;]{0,64})?)?\Z")  # the start of a _MODE, cut off
_ALTERNATE = frozenset((1049, 1047, 47))  # private modes that switch to the alternate screen
# a run of plain lines (printable text and colours, each ending in CR LF): what a flood is
# made of, and what the fast path in ScreenModel._drain turns into rows without pyte
# (possessive: linear, never backtracking into a long line)
_PLAIN_RUN = re.compile(r"(?:(?:[^\x00-\x1f\x7f-\x9f]++|\x1b\[[0-9;]*+m)*+\r\n)++")
_SGR = re.compile(r"\x1b\[[0-9;]*m")
_SGR_RESET = re.compile(r"\x1b\[0*m")
_SGR_CONCEAL = re.compile(r"\x1b\[(?:[0-9;]*;)?0*8(?:;[0-9;]*)?m")  # may set SGR 8 (conceal)

# characters known to take exactly one cell (pyte's own width function decides)
_NARROW = {chr(c) for c in range(0x20, 0x7F)}
_NARROW_MAX = 20_000
HISTORY_MAX = 20_000  # rows kept after they scrolled off the top (a 5,000-line burst)


def _all_narrow(data: str) -> bool:
    """Is every character of ``data`` a printable one-cell character?"""
    if data.isascii():
        return data.isprintable()
    chars = set(data)
    for ch in chars - _NARROW:
        if not ch.isprintable() or wcwidth(ch) != 1:
            return False
        if len(_NARROW) < _NARROW_MAX:
            _NARROW.add(ch)
    return True


def cell_width(text: str) -> int:
    """How many cells ``text`` takes on screen."""
    if text.isascii():
        return len(text)
    return sum(max(wcwidth(ch[0]), 0) for ch in text if ch)


class Row(NamedTuple):
    """One screen row as text.

    ``wrapped``: the cursor auto-wrapped into this row from the one above, so it
    continues that row's line.  ``width``: the screen's width when the row was
    read, so a joined line gets back the blanks its right-trimmed text lost.
    """

    text: str
    wrapped: bool
    width: int


def join_rows(rows: list[Row]) -> str:
    """The one line a row and its wrapped continuations show, right-trimmed."""
    if len(rows) == 1:
        return rows[0].text
    parts = [row.text + " " * max(0, row.width - cell_width(row.text)) for row in rows[:-1]]
    parts.append(rows[-1].text)
    return "".join(parts).rstrip()


def _row_text(line: dict[int, Any], columns: int) -> str:
    """A buffer row as text, right-trimmed: ``display[y].rstrip()`` without pyte's
    per-cell width lookups (readiness checks read the screen on every state change)."""
    if not line:
        return ""
    chars = [" "] * min(max(line) + 1, columns)
    for x, cell in line.items():
        if 0 <= x < len(chars):
            chars[x] = cell.data
    text = "".join(chars)
    if text.isascii():
        return text.rstrip()
    out, covered = [], False
    for ch in chars:  # a wide character covers the next cell, whatever is stored there
        if covered:
            covered = False
            continue
        out.append(ch)
        covered = ch not in _NARROW and bool(ch) and wcwidth(ch[0]) == 2
    return "".join(out).rstrip()


def _split_cells(cells: list[Any], columns: int) -> list[tuple[int, list[Any]]]:
    """A line's cells cut into rows of ``columns``: (index of the first cell, cells).

    A row never begins with the stub of a wide character: the character stays in the
    last column of the row before, as pyte draws it.
    """
    chunks: list[tuple[int, list[Any]]] = []
    i = 0
    while True:
        if chunks and i < len(cells) and cells[i].data == "":
            i += 1
        chunks.append((i, cells[i:i + columns]))
        i += columns
        if i >= len(cells):
            return chunks


def _cursor_in(chunks: list[tuple[int, list[Any]]], offset: int, columns: int,
               length: int) -> tuple[int, int]:
    """The row (maybe past the chunks) and column of the cell ``offset`` of a line."""
    row = max(r for r, (start, _) in enumerate(chunks) if start <= offset or r == 0)
    x = offset - chunks[row][0]
    if x < columns or (x == columns and offset >= length):  # at the end: a pending wrap
        return row, max(x, 0)
    extra, x = divmod(x, columns)
    return row + extra, x


def _conceals(attrs: tuple[int, ...], concealed: bool) -> bool:
    """Is text concealed after SGR ``attrs``? (pyte has no conceal attribute.)"""
    if not attrs:
        return False
    i = 0
    while i < len(attrs):
        attr = attrs[i]
        if attr == 0:
            concealed = False
        elif attr == 8:
            concealed = True
        elif attr == 28:
            concealed = False
        elif attr in (38, 48, 58) and i + 1 < len(attrs):  # a colour's own numbers
            i += 2 if attrs[i + 1] == 5 else 4 if attrs[i + 1] == 2 else 0
        i += 1
    return concealed


def _blanks(data: str) -> str:
    """As many blank cells as ``data`` would take: what a concealed text shows."""
    if data.isascii():
        return " " * len(data)
    return "".join(" " * max(wcwidth(ch), 0) for ch in data)


@dataclass
class _Saved:
    """The main screen, kept while the alternate one is shown."""

    buffer: Any
    wrapped: list[bool]
    cursor: Any  # pyte.screens.Cursor, restored on the way back for ?1049


class CaptureScreen(pyte.Screen):
    """A pyte screen that keeps what capture needs (see the module's docstring).

    It also draws runs of one-cell characters faster than pyte does (no per-character
    width lookup, one shared cell per character and style: cells are immutable): pyte's own draw
    is what bounds the sidecar's throughput on a large output.
    """

    def __init__(self, columns: int, lines: int) -> None:
        self.history: list[Row] = []  # rows scrolled off the top, oldest first
        self.history_start = 0  # the absolute number of history[0]
        self.wrapped = [False] * lines  # per visible row: the cursor wrapped into it
        self.broken: int | None = None  # first row of a wiped screen, not yet read
        self.concealed = False
        self._saved: _Saved | None = None
        self._drawing = False
        self._cells: dict[Any, dict[str, Any]] = {}  # style -> character -> its cell
        super().__init__(columns, lines)
        self.broken = None

    # -- numbering and history ------------------------------------------------

    @property
    def scrolled_total(self) -> int:
        """How many rows have scrolled off the top: the absolute number of row 0."""
        return self.history_start + len(self.history)

    @property
    def in_alternate(self) -> bool:
        return self._saved is not None

    def row(self, y: int) -> Row:
        return Row(_row_text(self.buffer[y], self.columns), self.wrapped[y], self.columns)

    def text_lines(self) -> list[str]:
        return [_row_text(self.buffer[y], self.columns) for y in range(self.lines)]

    def rows_from(self, start: int) -> tuple[int, list[Row]]:
        """Rows from absolute row ``start`` (or the oldest kept) to the bottom of the screen."""
        start = max(start, self.history_start)
        total = self.scrolled_total
        kept = self.history[start - self.history_start:]
        return start, kept + [self.row(y) for y in range(max(0, start - total), self.lines)]

    def _push_history(self, rows: list[Row]) -> None:
        self.history.extend(rows)
        if len(self.history) > HISTORY_MAX:
            cut = len(self.history) - HISTORY_MAX + 1000
            del self.history[:cut]
            self.history_start += cut

    def mark_break(self) -> None:
        """The screen was wiped: what is drawn next does not continue what was there."""
        if self.broken is None and not self.in_alternate:
            self.broken = self.scrolled_total

    # -- drawing --------------------------------------------------------------

    def draw(self, data: str) -> None:
        if self.concealed:
            data = _blanks(data)
        self._drawing = True  # a linefeed now is an auto-wrap
        try:
            self._draw(data)
        finally:
            self._drawing = False

    def _draw(self, data: str) -> None:
        charset = self.g1_charset if self.charset else self.g0_charset
        if (charset is not LAT1_MAP or mo.IRM in self.mode or mo.DECAWM not in self.mode
                or not _all_narrow(data)):
            super().draw(data)
            return
        cursor, columns = self.cursor, self.columns
        cells = self._style_cells(cursor.attrs)
        make = cursor.attrs._replace
        i, n = 0, len(data)
        while i < n:
            if cursor.x >= columns:  # wrap, as pyte does: at the next character
                self.dirty.add(cursor.y)
                self.carriage_return()
                self.linefeed()
            x = cursor.x
            run = data[i:i + columns - x]
            line = self.buffer[cursor.y]
            for k, ch in enumerate(run, x):
                cell = cells.get(ch)
                if cell is None:
                    cell = cells[ch] = make(data=ch)
                line[k] = cell
            cursor.x = x + len(run)
            i += len(run)
        self.dirty.add(cursor.y)

    def _style_cells(self, attrs: Any) -> dict[str, Any]:
        cells = self._cells.get(attrs)
        if cells is None:
            if len(self._cells) > _STYLES_CACHED:
                self._cells.clear()
            cells = self._cells[attrs] = {}
        return cells

    def select_graphic_rendition(self, *attrs: int) -> None:
        self.concealed = _conceals(attrs, self.concealed)
        super().select_graphic_rendition(*attrs)

    def reset(self) -> None:
        super().reset()
        self.wrapped = [False] * self.lines
        self._saved = None
        self.concealed = False
        self.mark_break()

    # -- rows moving: the wrap marks move with them ----------------------------

    def linefeed(self) -> None:
        super().linefeed()
        if self._drawing:
            self.wrapped[self.cursor.y] = True

    def index(self) -> None:
        top, bottom = self.margins or (0, self.lines - 1)
        if self.cursor.y == bottom:
            if top == 0 and not self.in_alternate:
                self._push_history([self.row(0)])
            del self.wrapped[top]
            self.wrapped.insert(bottom, False)
            if top > 0:  # its row above did not move with it
                self.wrapped[top] = False
        super().index()

    def reverse_index(self) -> None:
        top, bottom = self.margins or (0, self.lines - 1)
        if self.cursor.y == top:
            del self.wrapped[bottom]
            self.wrapped.insert(top, False)
            if top + 1 <= bottom:
                self.wrapped[top + 1] = False
        super().reverse_index()

    def insert_lines(self, count: int | None = None) -> None:
        count = count or 1
        top, bottom = self.margins or (0, self.lines - 1)
        y = self.cursor.y
        if top <= y <= bottom:
            moved = ([False] * count + self.wrapped[y:bottom + 1])[:bottom + 1 - y]
            if count < len(moved):
                moved[count] = False
            self.wrapped[y:bottom + 1] = moved
        super().insert_lines(count)

    def delete_lines(self, count: int | None = None) -> None:
        count = count or 1
        top, bottom = self.margins or (0, self.lines - 1)
        y = self.cursor.y
        if top <= y <= bottom:
            moved = (self.wrapped[y + count:bottom + 1] + [False] * count)[:bottom + 1 - y]
            moved[0] = False
            self.wrapped[y:bottom + 1] = moved
        super().delete_lines(count)

    def erase_in_line(self, how: int = 0, private: bool = False) -> None:
        if how in (1, 2) or self.cursor.x == 0:  # the row's start is gone: a new line
            self.wrapped[self.cursor.y] = False
        super().erase_in_line(how, private)

    def erase_in_display(self, how: int = 0, *args: Any, **kwargs: Any) -> None:
        y = self.cursor.y
        if how == 0:
            self.wrapped[y + 1:] = [False] * (self.lines - y - 1)
            if y == 0 and self.cursor.x == 0:
                self.mark_break()
        elif how == 1:
            self.wrapped[:y + 1] = [False] * (y + 1)
        elif how in (2, 3):
            self.wrapped = [False] * self.lines
            self.mark_break()
        super().erase_in_display(how, *args, **kwargs)

    # -- the alternate screen ---------------------------------------------------

    def set_mode(self, *modes: int, **kwargs: Any) -> None:
        if kwargs.get("private") and _ALTERNATE & set(modes) and self._saved is None:
            self._saved = _Saved(self.buffer, self.wrapped,
                                 copy.copy(self.cursor) if 1049 in modes else None)
            self.buffer = self._new_buffer()
            self.wrapped = [False] * self.lines
            self.dirty.update(range(self.lines))
        super().set_mode(*modes, **kwargs)

    def reset_mode(self, *modes: int, **kwargs: Any) -> None:
        if kwargs.get("private") and _ALTERNATE & set(modes) and self._saved is not None:
            saved, self._saved = self._saved, None
            self.buffer, self.wrapped = saved.buffer, saved.wrapped
            if saved.cursor is not None:
                self.cursor = saved.cursor
                self.ensure_hbounds()
                self.ensure_vbounds()
            self.dirty.update(range(self.lines))
        super().reset_mode(*modes, **kwargs)

    def _new_buffer(self) -> Any:
        return defaultdict(lambda: StaticDefaultDict(self.default_char))

    # -- resize: re-wrap, as tmux does -------------------------------------------

    def resize(self, lines: int | None = None, columns: int | None = None) -> None:
        """Resize, re-wrapping wrapped lines at the new width instead of cutting them.

        Rows that no longer fit above the cursor scroll into the history (the
        terminal keeps them in its scrollback too); blank rows below the cursor go
        first.  The same text joins into the same lines before and after, so a
        resize never looks like new output.
        """
        lines, columns = lines or self.lines, columns or self.columns
        if (lines, columns) == (self.lines, self.columns):
            return
        if self._saved is not None:
            main = self._saved
            cursor = main.cursor if main.cursor is not None else copy.copy(self.cursor)
            main.buffer, main.wrapped, pushed = self._reflow(main.buffer, main.wrapped, cursor,
                                                             lines, columns)
            self._push_history(pushed)
            self.buffer, self.wrapped, _ = self._reflow(self.buffer, self.wrapped, self.cursor,
                                                        lines, columns)
        else:
            self.buffer, self.wrapped, pushed = self._reflow(self.buffer, self.wrapped,
                                                             self.cursor, lines, columns)
            self._push_history(pushed)
        if columns > self.columns:
            self.tabstops |= set(range(8, columns, 8))
        self.tabstops = {stop for stop in self.tabstops if stop < columns}
        self.lines, self.columns = lines, columns
        self.dirty.update(range(lines))
        self.set_margins()

    def _reflow(self, buffer: Any, wrapped: list[bool], cursor: Any, lines: int,
                columns: int) -> tuple[Any, list[bool], list[Row]]:
        """``buffer`` re-wrapped at ``columns`` into ``lines`` rows; moves ``cursor``.

        Returns the new buffer, its wrap marks, and the rows scrolled off its top.
        """
        texts, cursor_line, cursor_offset = self._cells_by_line(buffer, wrapped, cursor)
        rows: list[list[Any]] = []
        marks: list[bool] = []
        cursor_row = cursor_x = 0
        for i, line in enumerate(texts):
            while line and line[-1].data == " ":
                line.pop()
            chunks = _split_cells(line, columns)
            if i == cursor_line:
                row_in, cursor_x = _cursor_in(chunks, cursor_offset, columns, len(line))
                chunks += [(len(line), [])] * (row_in + 1 - len(chunks))
                cursor_row = len(rows) + row_in
            for k, (_, chunk) in enumerate(chunks):
                rows.append(chunk)
                marks.append(k > 0 or (i == 0 and bool(wrapped) and wrapped[0]))
        last = max([cursor_row] + [r for r, row in enumerate(rows) if row])
        rows, marks = rows[:last + 1], marks[:last + 1]
        push = min(max(0, len(rows) - lines), cursor_row)
        pushed = [Row(_row_text(dict(enumerate(row)), columns), mark, columns)
                  for row, mark in zip(rows[:push], marks[:push], strict=True)]
        rows, marks = rows[push:push + lines], marks[push:push + lines]
        new = self._new_buffer()
        for y, row in enumerate(rows):
            if row:
                new[y].update(enumerate(row))
        marks += [False] * (lines - len(marks))
        cursor.y, cursor.x = min(cursor_row - push, lines - 1), min(cursor_x, columns)
        return new, marks, pushed

    def _cells_by_line(self, buffer: Any, wrapped: list[bool],
                       cursor: Any) -> tuple[list[list[Any]], int, int]:
        """The cells of each line (a row and the rows wrapped from it), and the line and
        cell the cursor is at.  A wide character in a row's last column gets the stub
        cell it had no room for, so a line's cells are its cells on any width."""
        lines: list[list[Any]] = []
        cursor_line = cursor_offset = 0
        for y in range(self.lines):
            if y == 0 or not wrapped[y]:
                lines.append([])
            if y == cursor.y:
                cursor_line, cursor_offset = len(lines) - 1, len(lines[-1]) + cursor.x
            row = buffer.get(y)
            continued = y + 1 < self.lines and wrapped[y + 1]
            width = self.columns if continued else (max(row) + 1 if row else 0)
            cells = [row.get(x, self.default_char) if row else self.default_char
                     for x in range(min(width, self.columns))]
            if continued and cells and cells[-1].data and wcwidth(cells[-1].data[0]) == 2:
                cells.append(cells[-1]._replace(data=""))
            lines[-1].extend(cells)
        return lines, cursor_line, cursor_offset

    # -- the fast path for floods -------------------------------------------------

    def at_fresh_bottom(self) -> bool:
        """Is the cursor at the start of an empty bottom row, ready for plain lines?"""
        cursor = self.cursor
        return (cursor.x == 0 and cursor.y == self.lines - 1 and self.margins is None
                and not self.in_alternate and not self.concealed
                and not self.buffer.get(cursor.y)
                and mo.DECAWM in self.mode and mo.IRM not in self.mode
                and mo.LNM not in self.mode
                and (self.g1_charset if self.charset else self.g0_charset) is LAT1_MAP)

    def print_rows(self, rows: list[Row]) -> None:
        """As drawing ``rows`` (fitting the width) at a fresh bottom and scrolling.

        At least ``lines`` rows: every row on screen before, and all but the last
        ``lines - 1`` new ones, scroll off; those stay, drawn in the cursor's style.
        """
        keep = self.lines - 1
        self._push_history([self.row(y) for y in range(keep)] + rows[:len(rows) - keep])
        self.buffer = self._new_buffer()
        cells = self._style_cells(self.cursor.attrs)
        make = self.cursor.attrs._replace
        for y, row in enumerate(rows[len(rows) - keep:]):
            line = self.buffer[y]
            for x, ch in enumerate(row.text):
                cell = cells.get(ch)
                if cell is None:
                    cell = cells[ch] = make(data=ch)
                line[x] = cell
        self.wrapped = [row.wrapped for row in rows[len(rows) - keep:]] + [False]
        self.dirty.update(range(self.lines))


class ScreenModel:
    """The screen, updated lazily.

    ``feed`` only scans for modes and queues the bytes; the VT emulator runs when
    someone looks at the screen (readiness and capture do, at quiet points).  So
    a flood of output passes through at the speed of the terminal, not of pyte,
    and of a flood only its last ``BACKLOG_KEEP`` bytes are ever emulated: enough
    for the screen it leaves behind, which is all that readiness looks at.
    Plain lines scrolling through (most of any flood) skip pyte's cell-by-cell work.
    """

    BACKLOG_KEEP = 256 * 1024

    def __init__(self, rows: int, cols: int) -> None:
        self._screen = CaptureScreen(cols, rows)
        self.stream = pyte.Stream(self._screen)
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._tail = b""
        self._held = ""
        self._backlog = bytearray()
        self._gap = False  # bytes were dropped since the last drain
        self.dropped = 0  # bytes of floods never emulated
        self.bracketed_paste = False
        self.alternate_screen = False
        self.generation = 0  # bumps on every feed; "has anything changed since"
        self._resizes = 0
        self._lines: tuple[tuple[int, int], list[str]] | None = None  # (generation, resizes)
        # any_line_matches' answers for the lines they were found in
        self._matches_of: list[str] | None = None
        self._matches: dict[tuple[tuple[re.Pattern[str], ...], int | None], bool] = {}

    @property
    def screen(self) -> CaptureScreen:
        self._drain()
        return self._screen

    def feed(self, data: bytes) -> None:
        self._scan_modes(data)
        self._backlog += data
        if len(self._backlog) > 2 * self.BACKLOG_KEEP:
            cut = len(self._backlog) - self.BACKLOG_KEEP
            del self._backlog[:cut]
            self.dropped += cut
            self._gap = True
        self.generation += 1

    def pump(self, budget: int = 16 * 1024) -> bool:
        """Emulate at most ``budget`` bytes of the queued output; is more queued?

        For a caller that keeps the emulation going in slices between reads, so
        that no single look at the screen has a long backlog to emulate first
        (16 KiB: under 10 ms even where pyte draws every character itself).
        """
        self._drain(budget)
        return bool(self._backlog)

    def _drain(self, budget: int | None = None) -> None:
        if not self._backlog:
            return
        if self._gap:  # what is emulated next does not continue what was
            self._gap = False
            self._screen.mark_break()
        data = bytes(self._backlog[:budget])
        del self._backlog[:len(data)]
        text = self._held + self._decoder.decode(data)
        # a CSI cut off at the end waits for its end, so the filter below sees it whole
        cut = _CUT_CSI.search(text)
        self._held, text = (text[cut.start():], text[:cut.start()]) if cut else ("", text)
        text = _PRIVATE_CSI.sub("", text)
        try:
            self._emulate(text)
        except Exception:
            # pyte chokes on a few modern sequences (e.g. one cut in half by a read);
            # the screen model is a best effort, the agent's terminal got the bytes
            # already: lose the rest of this chunk, never the sidecar
            self.stream = pyte.Stream(self._screen)
        if self._screen.in_alternate != self.alternate_screen:  # a switch never emulated
            switch = self._screen.set_mode if self.alternate_screen else self._screen.reset_mode
            switch(1049, private=True)

    def _emulate(self, text: str) -> None:
        """Feed ``text`` to pyte, but runs of plain lines at the bottom straight to rows."""
        screen, pos = self._screen, 0
        while pos < len(text):
            if self.stream._taking_plain_text and screen.at_fresh_bottom():
                run = _PLAIN_RUN.match(text, pos)
                if run is not None:
                    done = self._print_plain(run.group())
                    if not done:  # too short, or not plain after all: pyte draws it
                        self.stream.feed(run.group())
                    pos = run.end()
                    continue
            newline = text.find("\n", pos)
            end = len(text) if newline < 0 else newline + 1
            self.stream.feed(text[pos:end])
            pos = end

    def _print_plain(self, run: str) -> bool:
        """Print plain lines as rows, if they fill the screen at least; False if not."""
        screen = self._screen
        if _SGR_CONCEAL.search(run):
            return False
        columns = screen.columns
        rows: list[Row] = []
        styles: list[str] = []
        for line in run.split("\r\n")[:-1]:
            text = line
            if "\x1b" in line:
                text = _SGR.sub("", line)
                styles.extend(_SGR.findall(line))
            if not (text.isascii() and text.isprintable()) and not _all_narrow(text):
                return False
            rows.append(Row(text[:columns].rstrip(), False, columns))
            if len(text) > columns:
                rows.extend(Row(text[i:i + columns].rstrip(), True, columns)
                            for i in range(columns, len(text), columns))
        if len(rows) < screen.lines:
            return False
        screen.print_rows(rows)
        if styles:  # the colours in force after these lines: from the last reset on
            last_reset = max((i for i, sgr in enumerate(styles) if _SGR_RESET.match(sgr)),
                             default=0)
            self.stream.feed("".join(styles[last_reset:]))
        return True

    def _scan_modes(self, data: bytes) -> None:
        # a sequence cut off at the end of a read is kept and completed by the next one
        buf = self._tail + data
        end = 0
        for match in _MODE.finditer(buf):
            end = match.end()
            on = match.group(2) == b"h"
            for param in match.group(1).split(b";"):
                if param == b"2004":
                    self.bracketed_paste = on
                elif param in (b"1049", b"1047", b"47"):
                    self.alternate_screen = on
        esc = buf.rfind(b"\x1b", end)
        self._tail = buf[esc:] if esc >= 0 and _PARTIAL.match(buf, esc) else b""

    def resize(self, rows: int, cols: int) -> None:
        self.screen.resize(rows, cols)  # after draining: the old size drew the backlog
        self._resizes += 1

    def lines(self) -> list[str]:
        """The visible lines, right-trimmed (do not change the list: it is kept until the
        screen changes, since readiness asks several times per message)."""
        screen = self.screen  # drained: what it shows follows from what was fed, and sizes
        key = (self.generation, self._resizes)
        if self._lines is None or self._lines[0] != key:
            self._lines = (key, screen.text_lines())
        return self._lines[1]

    @property
    def cursor_row(self) -> int:
        return int(self.screen.cursor.y)

    @property
    def in_alternate(self) -> bool:
        """Is the emulated screen the alternate one (a full-screen app's)?"""
        return self.screen.in_alternate

    def read_rows(self, start: int) -> RowsRead:
        """The rows from absolute row ``start`` to the bottom, and where the screen
        was wiped since the last read (capture's one look at the screen)."""
        screen = self.screen
        first, rows = screen.rows_from(start)
        broken, screen.broken = screen.broken, None
        return RowsRead(rows, first, screen.scrolled_total,
                        screen.scrolled_total + screen.cursor.y, broken)

    def any_line_matches(self, patterns: tuple[re.Pattern[str], ...],
                         bottom: int | None = None) -> bool:
        """Does any visible line (only the last ``bottom`` lines, if given) match?

        Remembered until the screen changes: before each message readiness and the
        published state ask the same questions several times."""
        lines = self.lines()
        if self._matches_of is not lines:
            self._matches_of, self._matches = lines, {}
        key = (patterns, bottom)
        found = self._matches.get(key)
        if found is None:
            window = lines if bottom is None else lines[-bottom:]
            found = self._matches[key] = any(p.search(line) for line in window
                                             for p in patterns)
        return found


class RowsRead(NamedTuple):
    """What capture reads off the screen: rows, numbered from the first ever shown."""

    rows: list[Row]  # from ``first`` through the bottom of the screen
    first: int  # absolute number of rows[0]
    top: int  # absolute number of the first visible row
    cursor: int  # absolute number of the cursor's row
    broken: int | None  # the screen was wiped since the last read, from this row on
