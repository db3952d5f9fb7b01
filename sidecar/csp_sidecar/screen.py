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
from pyte.charsets import LAT1_MAP  # the default: maps every character to itself
from pyte.screens import wcwidth

_MODE = re.compile(rb"\x1b\[\?([0-9;]+)([hl])")
_STYLES_CACHED = 256
# CSI sequences with a private marker pyte does not know (kitty keyboard ESC[<u / ESC[>1u,
# xterm modifyOtherKeys ESC[>4;2m): they set input modes and draw nothing
_PRIVATE_CSI = re.compile(r"\x1b\[[<>=][0-9;:?]*[ -/]*[@-~]")
_CUT_CSI = re.compile(r"\x1b(\[[0-9;:?<>=]{0,64}[ -/]{0,4})?\Z")
_PARTIAL = re.compile(rb"\x1b(\[(\?[0-9;]{0,64})?)?\Z")  # the start of a _MODE, cut off


# characters known to take exactly one cell (pyte's own width function decides)
_NARROW = {chr(c) for c in range(0x20, 0x7F)}
_NARROW_MAX = 20_000


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


class CaptureScreen(pyte.Screen):  # type: ignore[misc]
    """A pyte screen that remembers the lines that scroll off its top.

    It also draws runs of one-cell characters faster than pyte does (no per-character
    width lookup, one shared cell per character and style: cells are immutable): pyte's own draw
    is what bounds the sidecar's throughput on a large output.
    """

    def __init__(self, columns: int, lines: int) -> None:
        super().__init__(columns, lines)
        self.scrolled: list[str] = []
        self._cells: dict[Any, dict[str, Any]] = {}  # style -> character -> its cell

    def draw(self, data: str) -> None:
        charset = self.g1_charset if self.charset else self.g0_charset
        if (charset is not LAT1_MAP or mo.IRM in self.mode or mo.DECAWM not in self.mode
                or not _all_narrow(data)):
            super().draw(data)
            return
        cursor, columns = self.cursor, self.columns
        cells = self._cells.get(cursor.attrs)
        if cells is None:
            if len(self._cells) > _STYLES_CACHED:
                self._cells.clear()
            cells = self._cells[cursor.attrs] = {}
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

    def index(self) -> None:
        top, bottom = self.margins or (0, self.lines - 1)
        if self.cursor.y == bottom and top == 0:
            self.scrolled.append(self._line_text(0))
            if len(self.scrolled) > 5000:
                del self.scrolled[:1000]
        super().index()

    def _line_text(self, y: int) -> str:
        """Row ``y`` as text, right-trimmed: ``display[y].rstrip()`` without pyte's
        per-cell width lookups (readiness checks read the screen on every state change)."""
        line = self.buffer[y]
        if not line:
            return ""
        chars = [" "] * min(max(line) + 1, self.columns)
        for x, cell in line.items():
            if x < len(chars):
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

    def text_lines(self) -> list[str]:
        return [self._line_text(y) for y in range(self.lines)]


class ScreenModel:
    """The screen, updated lazily.

    ``feed`` only scans for modes and queues the bytes; the VT emulator runs when
    someone looks at the screen (readiness and capture do, at quiet points).  So
    a flood of output passes through at the speed of the terminal, not of pyte,
    and of a flood only its last ``BACKLOG_KEEP`` bytes are ever emulated: enough
    for the screen it leaves behind, which is all that readiness looks at.
    """

    BACKLOG_KEEP = 256 * 1024

    def __init__(self, rows: int, cols: int) -> None:
        self._screen = CaptureScreen(cols, rows)
        self.stream = pyte.Stream(self._screen)
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._tail = b""
        self._held = ""
        self._backlog = bytearray()
        self.dropped = 0  # bytes of floods never emulated
        self.bracketed_paste = False
        self.alternate_screen = False
        self.generation = 0  # bumps on every feed; "has anything changed since"

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
        self.generation += 1

    def _drain(self) -> None:
        if not self._backlog:
            return
        data = bytes(self._backlog)
        self._backlog.clear()
        text = self._held + self._decoder.decode(data)
        # a CSI cut off at the end waits for its end, so the filter below sees it whole
        cut = _CUT_CSI.search(text)
        self._held, text = (text[cut.start():], text[:cut.start()]) if cut else ("", text)
        text = _PRIVATE_CSI.sub("", text)
        try:
            self.stream.feed(text)
        except Exception:
            # pyte chokes on a few modern sequences (e.g. one cut in half by a read);
            # the screen model is a best effort, the agent's terminal got the bytes
            # already: lose the rest of this chunk, never the sidecar
            self.stream = pyte.Stream(self._screen)

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

    def lines(self) -> list[str]:
        """The visible lines, right-trimmed."""
        return self.screen.text_lines()

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
