"""Following the human's keystrokes to know whether a line is half-typed.

The sidecar sees every byte the human types, so it knows better than any
screen heuristic whether there is unsent text in the agent's input: printable
input makes the line dirty; Enter submits it; Ctrl-C, Ctrl-U and a cleared
buffer (backspacing to nothing) make it clean again.  Escape sequences
(arrows, function keys, focus events) move around without adding text.
"""

from __future__ import annotations

import re

_ESC_SEQ = re.compile(r"\x1b(\[[0-9;?<>=]*[ -/]*[@-~]|O.|\][^\x07\x1b]*(\x07|\x1b\\)|.)?",
                      re.DOTALL)
PASTE_START = "\x1b[200~"
PASTE_END = "\x1b[201~"


class LineTracker:
    def __init__(self) -> None:
        self.buffer: list[str] = []
        self.submitted: list[str] = []  # recent submitted lines, to filter their echo
        self.submits = 0  # how many times Enter sent a line to the agent
        self._in_paste = False

    @property
    def dirty(self) -> bool:
        return bool(self.buffer)

    def feed(self, data: bytes) -> None:
        text = data.decode("utf-8", errors="replace")
        i = 0
        while i < len(text):
            if text.startswith(PASTE_START, i):
                self._in_paste = True
                i += len(PASTE_START)
                continue
            if text.startswith(PASTE_END, i):
                self._in_paste = False
                i += len(PASTE_END)
                continue
            ch = text[i]
            if ch == "\x1b" and not self._in_paste:
                m = _ESC_SEQ.match(text, i)
                i = m.end() if m else i + 1
                continue
            self._key(ch)
            i += 1

    def _key(self, ch: str) -> None:
        if self._in_paste:
            if ch in "\r\n":
                self.buffer.append("\n")
            elif ch.isprintable() or ch == "\t":
                self.buffer.append(ch)
            return
        if ch in "\r\n":
            self._submit()
        elif ch in ("\x03", "\x15", "\x04") or ch == "\x07":
            # Ctrl-C, Ctrl-U, Ctrl-D (at an empty line) and Ctrl-G all leave no text behind
            self.buffer.clear()
        elif ch in ("\x7f", "\x08"):
            if self.buffer:
                self.buffer.pop()
        elif ch == "\x17":  # Ctrl-W: drop the last word
            while self.buffer and self.buffer[-1] == " ":
                self.buffer.pop()
            while self.buffer and self.buffer[-1] != " ":
                self.buffer.pop()
        elif ch.isprintable() or ch == "\t":
            self.buffer.append(ch)

    def _submit(self) -> None:
        line = "".join(self.buffer).strip()
        self.buffer.clear()
        self.submits += 1
        if line:
            self.submitted.append(line)
            del self.submitted[:-20]
