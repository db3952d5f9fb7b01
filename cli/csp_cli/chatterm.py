"""The terminal side of ``cspctl chat``: a scrolling view above an input line.

Plain ANSI, no curses: the rows above the last two form a scroll region that
incoming lines scroll through; the second-to-last row is a status line and the
last one is the input line.  Every screen update is one ``write`` that ends by
redrawing the input line and putting the cursor back, so a message arriving
while the human types never garbles what they are typing.
"""

from __future__ import annotations

import codecs
import contextlib
import os
import re
import shutil
import termios
import tty
import unicodedata
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

ESC = "\x1b"
Render = Callable[[int], list[str]]  # width -> lines that fit in it

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


# -- widths and wrapping ------------------------------------------------------------

def char_width(ch: str) -> int:
    if unicodedata.combining(ch) or ch == "\u200b":
        return 0
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


def text_width(text: str) -> int:
    return sum(char_width(c) for c in _ANSI.sub("", text))


def wrap(text: str, width: int, first_width: int | None = None) -> list[str]:
    """Wrap plain text to terminal cells, at spaces where possible.

    ``first_width`` is the room left on the first line (after a prefix).
    """
    width = max(width, 1)
    limit = max(first_width if first_width is not None else width, 1)
    lines: list[str] = []
    for para in text.expandtabs(4).split("\n"):
        line, used = "", 0
        for word in re.findall(r"\S+\s*|\s+", para) or [""]:
            if used + text_width(word.rstrip()) <= limit:
                line, used = line + word, used + text_width(word)
                continue
            if line.strip():
                lines.append(line.rstrip())
                limit = width
            line, used = "", 0  # a new line starts with a word, not with spaces
            word = word.lstrip()
            while text_width(word.rstrip()) > limit - used:  # a word longer than a line
                cut, cells = 0, 0
                while cut < len(word) and cells + char_width(word[cut]) <= limit - used:
                    cells += char_width(word[cut])
                    cut += 1
                cut = max(cut, 1)
                lines.append(line + word[:cut])
                limit = width
                line, used = "", 0
                word = word[cut:]
            line, used = line + word, used + text_width(word)
        lines.append(line.rstrip())
        limit = width
    return lines


# -- the input line -------------------------------------------------------------------

@dataclass
class Key:
    """One decoded input event: text to insert or a named key."""

    name: str  # "text", "enter", "backspace", "delete", "left", "right", "home", "end",
    #            "up", "down", "ctrl-c", "ctrl-d", "ctrl-u", "ctrl-k", "ctrl-w", "ctrl-l"
    text: str = ""


_CONTROL_KEYS = {"\r": "enter", "\n": "enter", "\x7f": "backspace", "\x08": "backspace",
                 "\x01": "home", "\x05": "end", "\x02": "left", "\x06": "right",
                 "\x03": "ctrl-c", "\x04": "ctrl-d", "\x15": "ctrl-u", "\x0b": "ctrl-k",
                 "\x17": "ctrl-w", "\x0c": "ctrl-l", "\x10": "up", "\x0e": "down"}
_SEQUENCES = {"[A": "up", "[B": "down", "[C": "right", "[D": "left", "[H": "home",
              "[F": "end", "OH": "home", "OF": "end", "OA": "up", "OB": "down",
              "OC": "right", "OD": "left", "[1~": "home", "[7~": "home", "[4~": "end",
              "[8~": "end", "[3~": "delete"}
PASTE_START, PASTE_END = "[200~", "[201~"


class KeyDecoder:
    """Turns the bytes of a raw-mode terminal into :class:`Key` events.

    Escape sequences may arrive split across reads; the unfinished tail is kept.
    Inside a bracketed paste, newlines are text, not Enter.
    """

    def __init__(self) -> None:
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._pending = ""
        self._paste = False

    def feed(self, data: bytes) -> list[Key]:
        text = self._pending + self._utf8.decode(data)
        self._pending = ""
        keys: list[Key] = []
        i = 0
        while i < len(text):
            ch = text[i]
            if ch == ESC:
                end = _sequence_end(text, i + 1)
                if end is None:  # incomplete: wait for the rest
                    self._pending = text[i:]
                    break
                seq = text[i + 1:end]
                i = end
                if seq == PASTE_START:
                    self._paste = True
                elif seq == PASTE_END:
                    self._paste = False
                elif seq in _SEQUENCES and not self._paste:
                    keys.append(Key(_SEQUENCES[seq]))
                continue
            i += 1
            if self._paste:
                if ch in "\r\n":
                    keys.append(Key("text", "\n"))
                elif ch == "\t" or ch >= " ":
                    keys.append(Key("text", ch))
            elif ch in _CONTROL_KEYS:
                keys.append(Key(_CONTROL_KEYS[ch]))
            elif ch == "\t":
                keys.append(Key("text", " "))
            elif ch >= " " and not ("\x7f" <= ch <= "\x9f"):
                keys.append(Key("text", ch))
        return _merge_text(keys)


def _sequence_end(text: str, start: int) -> int | None:
    """Index just past the escape sequence whose body starts at ``start``."""
    if start >= len(text):
        return None
    lead = text[start]
    if lead == "[":
        j = start + 1
        while j < len(text) and text[j] in "0123456789;?":
            j += 1
        return j + 1 if j < len(text) else None
    if lead == "O":
        return start + 2 if start + 1 < len(text) else None
    return start + 1  # Alt+key or a lone Esc: drop the Esc and the key


def _merge_text(keys: list[Key]) -> list[Key]:
    out: list[Key] = []
    for key in keys:
        if key.name == "text" and out and out[-1].name == "text":
            out[-1].text += key.text
        else:
            out.append(key)
    return out


@dataclass
class LineEditor:
    """The input line's text and cursor, with a history of what was sent."""

    text: str = ""
    cursor: int = 0
    history: list[str] = field(default_factory=list)
    _browse: int | None = None

    def apply(self, key: Key) -> str | None:
        """Edit for ``key``; return the submitted line on Enter, else None."""
        n = key.name
        if n == "text":
            self.text = self.text[:self.cursor] + key.text + self.text[self.cursor:]
            self.cursor += len(key.text)
        elif n == "enter":
            line, self.text, self.cursor, self._browse = self.text, "", 0, None
            if line.strip() and (not self.history or self.history[-1] != line):
                self.history.append(line)
            return line
        elif n == "backspace" and self.cursor > 0:
            self.text = self.text[:self.cursor - 1] + self.text[self.cursor:]
            self.cursor -= 1
        elif n in ("delete", "ctrl-d") and self.cursor < len(self.text):
            self.text = self.text[:self.cursor] + self.text[self.cursor + 1:]
        elif n == "left":
            self.cursor = max(0, self.cursor - 1)
        elif n == "right":
            self.cursor = min(len(self.text), self.cursor + 1)
        elif n == "home":
            self.cursor = 0
        elif n == "end":
            self.cursor = len(self.text)
        elif n == "ctrl-u":
            self.text, self.cursor = self.text[self.cursor:], 0
        elif n == "ctrl-k":
            self.text = self.text[:self.cursor]
        elif n == "ctrl-w":
            head = self.text[:self.cursor].rstrip()
            cut = head.rfind(" ") + 1
            self.text, self.cursor = head[:cut] + self.text[self.cursor:], cut
        elif n in ("up", "down"):
            self._recall(-1 if n == "up" else 1)
        return None

    def _recall(self, step: int) -> None:
        if not self.history:
            return
        pos = len(self.history) if self._browse is None else self._browse
        pos = min(max(pos + step, 0), len(self.history))
        self._browse = pos
        self.text = self.history[pos] if pos < len(self.history) else ""
        self.cursor = len(self.text)

    def set(self, text: str) -> None:
        self.text, self.cursor = text, len(text)

    def visible(self, width: int) -> tuple[str, int]:
        """The slice of the line that fits in ``width`` cells, and the cursor's column."""
        shown = self.text.replace("\n", "↵")
        before = shown[:self.cursor]
        start = 0
        while text_width(before[start:]) > width - 1:
            start += 1
        view, cells = "", 0
        for ch in shown[start:]:
            if cells + char_width(ch) > width:
                break
            view += ch
            cells += char_width(ch)
        return view, text_width(before[start:])


# -- the screen ---------------------------------------------------------------------------

class Screen:
    """Owns the terminal: raw input, scroll region, status line, input line."""

    def __init__(self, in_fd: int, out_fd: int, prompt: str = "> ") -> None:
        self.in_fd = in_fd
        self.out_fd = out_fd
        self.prompt = prompt
        self.editor = LineEditor()
        self.status = ""
        self.transcript: deque[Render] = deque(maxlen=2000)
        self._saved: list[object] | None = None
        self.rows, self.cols = 24, 80

    # lifecycle
    def start(self) -> None:
        self._saved = termios.tcgetattr(self.in_fd)
        tty.setraw(self.in_fd, termios.TCSANOW)
        attrs = termios.tcgetattr(self.in_fd)  # keep output post-processing (\n -> \r\n)
        attrs[1] |= termios.OPOST | termios.ONLCR
        termios.tcsetattr(self.in_fd, termios.TCSANOW, attrs)
        self._write(f"{ESC}[?2004h")
        self.resize()

    def stop(self) -> None:
        """Give the terminal back; quietly, if it has already gone (a closed pane)."""
        with contextlib.suppress(OSError):
            self._write(f"{ESC}[?2004l{ESC}[r{ESC}[{self.rows};1H\r\n")
        if self._saved is not None:
            with contextlib.suppress(OSError, termios.error):
                termios.tcsetattr(self.in_fd, termios.TCSADRAIN,
                                  self._saved)  # type: ignore[arg-type]
            self._saved = None

    def resize(self) -> None:
        size = shutil.get_terminal_size()
        with contextlib.suppress(OSError):
            size = os.get_terminal_size(self.out_fd)
        self.cols, self.rows = max(size.columns, 20), max(size.lines, 5)
        body = self.rows - 2
        out = [f"{ESC}[r{ESC}[2J{ESC}[1;{body}r{ESC}[{body};1H"]
        lines: list[str] = []
        for render in reversed(self.transcript):
            lines[:0] = render(self.cols)
            if len(lines) >= body:
                break
        for line in lines[-body:]:
            out.append(f"\r\n{line}{ESC}[0m{ESC}[K")
        out.append(self._footer())
        self._write("".join(out))

    # drawing
    def show(self, render: Render) -> None:
        """Add an entry to the view (it is re-wrapped when the terminal resizes)."""
        self.transcript.append(render)
        body = self.rows - 2
        out = [f"{ESC}[{body};1H"]
        for line in render(self.cols):
            out.append(f"\r\n{line}{ESC}[0m{ESC}[K")
        out.append(self._footer())
        self._write("".join(out))

    def set_status(self, status: str, title: str | None = None) -> None:
        self.status = status
        extra = f"{ESC}]2;{title}{ESC}\\" if title else ""
        self._write(extra + self._footer())

    def redraw_input(self) -> None:
        self._write(self._footer())

    def _footer(self) -> str:
        status = self.status
        if text_width(status) > self.cols:
            status = wrap(status, self.cols)[0]
        pad = "─" * max(0, self.cols - text_width(status) - 1)
        room = self.cols - text_width(self.prompt)
        view, col = self.editor.visible(max(room, 1))
        return (f"{ESC}[{self.rows - 1};1H{ESC}[0;2m{status} {pad}{ESC}[0m{ESC}[K"
                f"{ESC}[{self.rows};1H{ESC}[0;1m{self.prompt}{ESC}[0m{view}{ESC}[K"
                f"{ESC}[{self.rows};{text_width(self.prompt) + col + 1}H")

    def _write(self, text: str) -> None:
        data = text.encode("utf-8", errors="replace")
        while data:
            try:
                n = os.write(self.out_fd, data)
            except BlockingIOError:
                continue
            data = data[n:]
