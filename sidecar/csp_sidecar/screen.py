"""A model of the agent's screen, fed with everything the agent prints.

Readiness and capture look at what is *on screen* (pyte, a VT emulator), not
at the raw byte stream full of cursor motion and redraws.  Alongside, a tiny
scanner watches the raw stream for the private modes that matter to
injection: bracketed paste (``?2004``) and the alternate screen (``?1049``,
``?47``, ``?1047``), which pyte does not track.
"""

from __future__ import annotations

import codecs
import re
from typing import Any

import pyte
from pyte import modes as mo
from pyte.charsets import LAT1_MAP  # the default: ASCII maps to itself

_MODE = re.compile(rb"\x1b\[\?([0-9;]+)([hl])")
_PARTIAL = re.compile(rb"\x1b(\[(\?[0-9;]{0,64})?)?\Z")  # the start of a _MODE, cut off


class CaptureScreen(pyte.Screen):  # type: ignore[misc]
    """A pyte screen that remembers the lines that scroll off its top.

    It also draws runs of plain ASCII faster than pyte does (no per-character
    width lookup, one shared cell per character and style): pyte's own draw
    is what bounds the sidecar's throughput on a large output.
    """

    def __init__(self, columns: int, lines: int) -> None:
        super().__init__(columns, lines)
        self.scrolled: list[str] = []
        self._cells_for: Any = None  # the style the cell cache is for
        self._cells: dict[str, Any] = {}

    def draw(self, data: str) -> None:
        charset = self.g1_charset if self.charset else self.g0_charset
        if (charset is not LAT1_MAP or not (data.isascii() and data.isprintable())
                or mo.IRM in self.mode or mo.DECAWM not in self.mode):
            super().draw(data)
            return
        cursor, columns = self.cursor, self.columns
        if self._cells_for != cursor.attrs:
            self._cells_for, self._cells = cursor.attrs, {}
        cells, make = self._cells, cursor.attrs._replace
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

    def index(self) -> None:
        top, bottom = self.margins or (0, self.lines - 1)
        if self.cursor.y == bottom and top == 0:
            self.scrolled.append(self._line_text(0))
            if len(self.scrolled) > 5000:
                del self.scrolled[:1000]
        super().index()

    def _line_text(self, y: int) -> str:
        line = self.buffer[y]
        if not line:
            return ""
        chars = [" "] * min(max(line) + 1, self.columns)
        for x, cell in line.items():
            if x < len(chars):
                chars[x] = cell.data
        return "".join(chars).rstrip()


class ScreenModel:
    def __init__(self, rows: int, cols: int) -> None:
        self.screen = CaptureScreen(cols, rows)
        self.stream = pyte.Stream(self.screen)
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._tail = b""
        self.bracketed_paste = False
        self.alternate_screen = False
        self.generation = 0  # bumps on every feed; "has anything changed since"

    def feed(self, data: bytes) -> None:
        self._scan_modes(data)
        self.stream.feed(self._decoder.decode(data))
        self.generation += 1

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
        self.screen.resize(rows, cols)

    def lines(self) -> list[str]:
        """The visible lines, right-trimmed."""
        return [line.rstrip() for line in self.screen.display]

    @property
    def cursor_row(self) -> int:
        return int(self.screen.cursor.y)

    def take_scrolled(self) -> list[str]:
        out, self.screen.scrolled = self.screen.scrolled, []
        return out

    def any_line_matches(self, patterns: tuple[re.Pattern[str], ...],
                         bottom: int | None = None) -> bool:
        """Does any visible line (only the last ``bottom`` lines, if given) match?"""
        lines = self.lines()
        if bottom is not None:
            lines = lines[-bottom:]
        return any(p.search(line) for line in lines for p in patterns)
