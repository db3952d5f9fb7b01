"""Following the human's keystrokes to know whether a line is half-typed.

The sidecar sees every byte the human types, so it knows better than any
screen heuristic whether there is unsent text in the agent's input: printable
input makes the line dirty; Enter submits it; Ctrl-C makes it clean again, and
so do Ctrl-U, Ctrl-W and Backspace when they really leave nothing behind.  For
that the tracker follows the cursor through the usual emacs-style editing keys
(left/right, Home/End, Ctrl-A/E, Delete, Ctrl-K), because a Backspace with the
cursor at the start of the line deletes nothing.

Whenever the line may hold text the tracker cannot see (Up/Down recall the
input history, word motions move the cursor by an unknown amount) it is
*unknown*, which counts as dirty until Enter or Ctrl-C: a message waits
rather than splicing into a line it cannot see.  Bytes arrive in arbitrary
pieces, so an escape sequence or a UTF-8 character cut at the end of a read
is completed by the next one.
"""

from __future__ import annotations

import codecs
import re

# CSI, SS3, and the terminal's string replies (OSC, DCS, APC, PM, SOS: e.g. an
# answer to a version or colour query), then Alt-<key>
_ESC_SEQ = re.compile(
    r"\x1b(\[[0-9;?<>=]*[ -/]*[@-~]|O.|[\]P_^X][^\x07\x1b]*(\x07|\x1b\\)|[^\x1b])?",
    re.DOTALL)
# an escape sequence whose end has not arrived yet; a typed Enter is never part
# of one, so Alt-P then "text\r" still submits.  A lone ESC at the end of a read
# waits too: it is the Esc key unless the next read goes on with a sequence.
_INCOMPLETE = re.compile(r"\x1b(\[[0-9;?<>=]*[ -/]*|O|[\]P_^X][^\x07\x1b\r\n]*\x1b?)?\Z")
_INTRODUCERS = "[O]P_^X"
_MAX_PENDING = 512
PASTE_START = "\x1b[200~"
PASTE_END = "\x1b[201~"

_LEFT, _RIGHT = ("\x1b[D", "\x1bOD"), ("\x1b[C", "\x1bOC")
_HOME = ("\x1b[H", "\x1bOH", "\x1b[1~", "\x1b[7~")
_END = ("\x1b[F", "\x1bOF", "\x1b[4~", "\x1b[8~")
_DELETE = "\x1b[3~"
_HISTORY = re.compile(r"\x1b(\[[0-9;]*|O)[AB]\Z")  # Up/Down: a recalled line
_MOTION = re.compile(r"\x1b\[[0-9]*;[0-9]+[CDHF]\Z")  # Ctrl/Alt-arrows: word motions


class LineTracker:
    def __init__(self) -> None:
        self.buffer: list[str] = []
        self.submitted: list[str] = []  # recent submitted lines, to filter their echo
        self.submits = 0  # how many times Enter sent a line to the agent
        self.unknown = False  # the line may hold text we cannot see
        self._back = 0  # characters between the cursor and the end of the line
        self._in_paste = False
        self._pending = ""  # an escape sequence cut off at the end of the last read
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    @property
    def dirty(self) -> bool:
        return bool(self.buffer) or self.unknown

    def clear(self) -> None:
        """The agent's input line is empty now (Ctrl-C, or a submitted line)."""
        self.buffer.clear()
        self.unknown = False
        self._back = 0

    def feed(self, data: bytes) -> None:
        text = self._decoder.decode(data)
        if self._pending == "\x1b" and not self._in_paste and text[:1] not in _INTRODUCERS:
            self._pending = ""  # that was the Esc key
        text, self._pending = self._pending + text, ""
        i = 0
        while i < len(text):
            if text[i] == "\x1b":
                step = self._escape(text, i)
                if step == 0:  # cut off: wait for the rest
                    self._pending = text[i:]
                    return
                i += step
                continue
            self._key(text[i])
            i += 1

    def _escape(self, text: str, i: int) -> int:
        """Handle the escape sequence at ``text[i]``; its length, or 0 if incomplete."""
        rest = text[i:i + len(PASTE_END)]
        if self._in_paste:
            if rest == PASTE_END:
                self._in_paste = False
                return len(PASTE_END)
            if PASTE_END.startswith(rest):
                return 0
            return 1  # an ESC inside a paste is not text
        if rest == PASTE_START:
            self._in_paste = True
            return len(PASTE_START)
        if len(text) - i <= _MAX_PENDING and _INCOMPLETE.match(text, i):
            return 0
        m = _ESC_SEQ.match(text, i)
        assert m is not None  # the pattern matches at least the ESC itself
        self._sequence(m.group())
        return m.end() - i

    def _sequence(self, seq: str) -> None:
        self._back = self._cursor_back()
        pos = len(self.buffer) - self._back
        if seq in _LEFT:
            self._back = min(self._cursor_back() + 1, len(self.buffer))
        elif seq in _RIGHT:
            self._back = max(self._cursor_back() - 1, 0)
        elif seq in _HOME:
            self._back = len(self.buffer)
        elif seq in _END:
            self._back = 0
        elif seq == _DELETE:
            self._delete_at(pos)
        elif _HISTORY.match(seq):
            self.unknown = True
        elif seq in ("\x1b\r", "\x1b\n"):  # Alt-Enter: a newline in the input
            self._insert("\n")
        elif seq in ("\x1b\x7f", "\x1b\x08"):  # Alt-Backspace: drop the last word
            self._kill_word()
        elif self.dirty and (_MOTION.match(seq) or (len(seq) == 2 and seq[1] not in _INTRODUCERS)):
            # word motions and Alt-letter editing: where the cursor is, or what is left,
            # can no longer be followed
            self.unknown = True

    def _cursor_back(self) -> int:
        return min(self._back, len(self.buffer))  # the buffer may be cleared from outside

    def _key(self, ch: str) -> None:
        if self._in_paste:
            if ch in "\r\n":
                self._insert("\n")
            elif ch.isprintable() or ch == "\t":
                self._insert(ch)
            return
        self._back = self._cursor_back()
        pos = len(self.buffer) - self._back
        if ch in "\r\n":
            self._submit()
        elif ch == "\x03":  # Ctrl-C leaves no text behind
            self.clear()
        elif ch == "\x15":  # Ctrl-U: delete to the start of the line
            del self.buffer[:pos]
        elif ch == "\x0b":  # Ctrl-K: delete to the end of the line
            del self.buffer[pos:]
            self._back = 0
        elif ch in ("\x7f", "\x08"):
            if pos > 0:
                del self.buffer[pos - 1]
        elif ch == "\x04":  # Ctrl-D deletes the character under the cursor
            self._delete_at(pos)
        elif ch == "\x17":  # Ctrl-W: drop the last word
            self._kill_word()
        elif ch == "\x01":  # Ctrl-A
            self._back = len(self.buffer)
        elif ch == "\x05":  # Ctrl-E
            self._back = 0
        elif ch.isprintable() or ch == "\t":
            self._insert(ch)

    def _insert(self, ch: str) -> None:
        self.buffer.insert(len(self.buffer) - self._cursor_back(), ch)

    def _delete_at(self, pos: int) -> None:
        if pos < len(self.buffer):
            del self.buffer[pos]
            self._back = len(self.buffer) - pos

    def _kill_word(self) -> None:
        pos = len(self.buffer) - self._cursor_back()
        start = pos
        while start > 0 and self.buffer[start - 1] == " ":
            start -= 1
        while start > 0 and self.buffer[start - 1] != " ":
            start -= 1
        del self.buffer[start:pos]

    def _submit(self) -> None:
        line = "".join(self.buffer).strip()
        self.clear()
        self.submits += 1
        if line:
            self.submitted.append(line)
            del self.submitted[:-20]
