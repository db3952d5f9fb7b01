"""Following the human's keystrokes to know whether the agent's input holds a draft.

The sidecar sees every byte the human types, so it knows better than any
screen heuristic whether there is unsent text in the agent's input: printable
input makes the draft dirty; Enter submits it; Ctrl-C makes it clean again, and
so do Ctrl-U, Ctrl-W and Backspace when they really leave nothing behind (and
Esc, for a CLI where Esc empties the input: ``esc_clears``).

A draft may span several lines, and every agent CLI has keys that add a line
instead of submitting: Ctrl-J, Alt-Enter, Shift-Enter and Ctrl-Enter, and a
``\\`` typed just before Enter (Claude Code, Gemini CLI: the backslash becomes
the new line; ``backslash_newline``).  Taking one of those for Enter would let
the next chat message be pasted into the draft and sent with it, so they keep
the draft open.  Terminals send modified keys in several encodings (legacy
``ESC CR``, xterm's modifyOtherKeys ``ESC[27;2;13~``, the kitty keyboard protocol
``ESC[13;2u``); a CLI that turns on the kitty protocol receives *every* key that
way, letters, Backspace, Esc and Ctrl-C included, so all of them are decoded to
the same edits as their plain bytes, and kitty's key-release reports are ignored.

The tracker follows the cursor through the usual emacs-style editing keys
(left/right, Home/End, Ctrl-A/E/B/F, Delete, Ctrl-K), line by line in a
multi-line draft, because a Backspace with the cursor at the start of the input
deletes nothing.  Whenever the input may hold text the tracker cannot see (Up/Down
recall the input history or move between the draft's lines, word motions move the
cursor by an unknown amount, yank and undo put back text, CLIs disagree on whether
a kill at a line's edge joins two lines) it is *unknown*, which counts as dirty
until the draft is submitted or cleared: a message waits rather than splicing into
a draft it cannot see.  Bytes arrive in arbitrary pieces, so an escape sequence or
a UTF-8 character cut at the end of a read is completed by the next one.
"""

from __future__ import annotations

import codecs
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass

# CSI, SS3, and the terminal's string replies (OSC, DCS, APC, PM, SOS: e.g. an
# answer to a version or colour query), then Alt-<key>.  CSI parameters are any
# of 0x30-0x3F, which takes in the ':' of kitty's sub-parameters.
_ESC_SEQ = re.compile(
    r"\x1b(\[[0-?]*[ -/]*[@-~]|O.|[\]P_^X][^\x07\x1b]*(\x07|\x1b\\)|[^\x1b])?",
    re.DOTALL)
# an escape sequence whose end has not arrived yet; a typed Enter is never part
# of one, so Alt-P then "text\r" still submits.  A lone ESC at the end of a read
# waits too: it is the Esc key unless the next read goes on with a sequence.
_INCOMPLETE = re.compile(r"\x1b(\[[0-?]*[ -/]*|O|[\]P_^X][^\x07\x1b\r\n]*\x1b?)?\Z")
_INTRODUCERS = "[O]P_^X"
_MAX_PENDING = 512
PASTE_START = "\x1b[200~"
PASTE_END = "\x1b[201~"

_LEFT, _RIGHT = ("\x1b[D", "\x1bOD"), ("\x1b[C", "\x1bOC")
_HOME = ("\x1b[H", "\x1bOH", "\x1b[1~", "\x1b[7~")
_END = ("\x1b[F", "\x1bOF", "\x1b[4~", "\x1b[8~")
_DELETE = "\x1b[3~"
_ALT_ENTER = ("\x1b\r", "\x1b\n")
_ALT_BACKSPACE = ("\x1b\x7f", "\x1b\x08")
_HISTORY = re.compile(r"\x1b(\[[0-9;]*|O)[AB]\Z")  # Up/Down: a recalled line
_MOTION = re.compile(r"\x1b\[[0-9]*;[0-9]+[CDHF]\Z")  # Ctrl/Alt-arrows: word motions

# a key as the kitty protocol (CSI u), xterm's modifyOtherKeys (CSI 27;m;k ~) or a
# legacy key with kitty's event type (CSI 1;1:2 A) sends it: no private marker
_CSI_KEY = re.compile(r"\x1b\[([0-9:;]*)([u~A-FHPQS])\Z")
_SHIFT, _ALT, _CTRL = 1, 2, 4  # modifier bits; above them super, hyper, meta
_LOCKS = 64 | 128  # Caps Lock and Num Lock are states, not modifiers
_RELEASE = 3  # kitty event types: 1 press, 2 repeat, 3 release
_ENTER, _TAB, _ESC, _BACKSPACE = 13, 9, 27, 127
_MODIFY_OTHER_KEYS = 27  # the first parameter of xterm's CSI 27;<mods>;<key> ~
_PRIVATE_USE = range(0xE000, 0xF900)  # kitty's codes for keys that type nothing
# kitty's keypad keys: those that type text, Enter, and the navigation keys
_KP_TEXT = dict(zip(range(57399, 57417), "0123456789./*-+\r=,", strict=True))
_KP_NAV = dict(zip(range(57417, 57428), (("D", 1), ("C", 1), ("A", 1), ("B", 1), ("~", 5),
                                         ("~", 6), ("H", 1), ("F", 1), ("~", 2), ("~", 3),
                                         ("E", 1)), strict=True))
# Shift with a key the terminal did not report the shifted form of: a US layout
_SHIFTED = dict(zip("`1234567890-=[]\\;',./", '~!@#$%^&*()_+{}|:"<>?', strict=True))


@dataclass(frozen=True)
class _Key:
    """A key press decoded from CSI u or modifyOtherKeys."""

    code: int  # the key's Unicode code point (unshifted), or kitty's functional code
    mods: int  # _SHIFT | _ALT | _CTRL | ..., without the lock bits
    shifted: int = 0  # the shifted key, when the terminal reports alternate keys
    text: str = ""  # the text the key types, when the terminal reports it


def _char(code: int | None) -> str:
    """The character for a code point a terminal sent, or "" if there is none."""
    return chr(code) if code and 0 < code <= sys.maxunicode else ""


def _params(raw: str) -> list[list[int | None]]:
    return [[int(s) if s else None for s in field.split(":")] for field in raw.split(";")]


def _legacy_form(final: str, number: int | None, mods: int) -> str:
    """A cursor or editing key in the plain form the dispatch knows (ESC[D, ESC[1;5D, ESC[3~)."""
    if final == "~":
        return f"\x1b[{number or ''}~" if not mods else f"\x1b[{number or ''};{mods + 1}~"
    return f"\x1b[{final}" if not mods else f"\x1b[1;{mods + 1}{final}"


def _decode(seq: str) -> _Key | str | None:
    """What key an escape sequence is: a _Key, a legacy sequence, or None for a release.

    kitty's event types and lock bits may ride on legacy sequences too
    (``ESC[1;1:2D`` is a repeated Left): those are brought back to the plain form.
    """
    m = _CSI_KEY.match(seq)
    if m is None:
        return seq
    params = _params(m.group(1))
    mod_field = params[1] if len(params) > 1 else [None]
    mods = ((mod_field[0] or 1) - 1) & ~_LOCKS
    if len(mod_field) > 1 and mod_field[1] == _RELEASE:
        return None
    first, final = params[0], m.group(2)
    if final == "u":
        text = "".join(_char(c) for c in params[2]) if len(params) > 2 else ""
        shifted = first[1] if len(first) > 1 and first[1] else 0
        return _Key(first[0] or 0, mods, shifted, text)
    if final == "~" and first[0] == _MODIFY_OTHER_KEYS and len(params) == 3:
        return _Key(params[2][0] or 0, mods)
    return _legacy_form(final, first[0], mods)


def _typable(ch: str) -> bool:
    """Whether a CLI puts this character into its input (no C0/C1 control, no DEL)."""
    return ch == "\t" or (ch >= " " and not "\x7f" <= ch <= "\x9f")


def _ctrl_char(code: int) -> str | None:
    """The control character Ctrl plus this key sends in a legacy terminal, if it is an edit.

    Ctrl-H and Ctrl-M are left out: in a legacy terminal they are Backspace and
    Enter, but a CLI that reads the kitty protocol tells them apart and may do
    nothing, and taking them for a deletion or a submit is the unsafe guess.
    """
    ch = _char(code).lower()
    if len(ch) == 1 and "a" <= ch <= "z" and ch not in "hm":
        return chr(ord(ch) - ord("a") + 1)
    if ch in ("/", "-", "_"):
        return "\x1f"  # Ctrl-/, Ctrl-_: undo
    return None


class LineTracker:
    """Follows the human's keys to tell whether the agent's input holds a draft."""

    def __init__(self, *, esc_clears: bool = False, backslash_newline: bool = True) -> None:
        self.esc_clears = esc_clears  # the Esc key empties this CLI's input
        self.backslash_newline = backslash_newline  # "\" then Enter is a new line
        self.buffer: list[str] = []  # the draft, one character each, "\n" between lines
        self.submitted: list[str] = []  # recent submitted drafts, to filter their echo
        self.submits = 0  # how many times Enter sent a draft to the agent
        self.unknown = False  # the input may hold text we cannot see
        self._back = 0  # characters between the cursor and the end of the draft
        self._in_paste = False
        self._pending = ""  # an escape sequence cut off at the end of the last read
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._controls: dict[str, Callable[[], None]] = {
            "\r": self._enter, "\n": self._newline,
            "\x03": self.clear,  # Ctrl-C leaves no text behind
            "\x15": self._kill_to_line_start,  # Ctrl-U
            "\x0b": self._kill_to_line_end,  # Ctrl-K
            "\x7f": self._backspace, "\x08": self._backspace,
            "\x04": self._delete,  # Ctrl-D deletes the character under the cursor
            "\x17": self._kill_word,  # Ctrl-W
            "\x01": self._line_home, "\x05": self._line_end,  # Ctrl-A, Ctrl-E
            "\x02": self._left, "\x06": self._right,  # Ctrl-B, Ctrl-F
            "\x10": self._recall, "\x0e": self._recall,  # Ctrl-P, Ctrl-N: history, or lines
            "\x19": self._recall, "\x1f": self._recall,  # Ctrl-Y yank, Ctrl-_ undo: old text
        }

    @property
    def dirty(self) -> bool:
        return bool(self.buffer) or self.unknown

    def clear(self) -> None:
        """The agent's input is empty now (Ctrl-C, or a submitted draft)."""
        self.buffer.clear()
        self.unknown = False
        self._back = 0

    def feed(self, data: bytes) -> None:
        text = self._decoder.decode(data)
        if self._pending == "\x1b" and not self._in_paste and text[:1] not in _INTRODUCERS:
            self._pending = ""  # that was the Esc key
            self._esc_key()
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
        key = _decode(m.group())
        if isinstance(key, _Key):
            self._press(key)
        elif key is not None:
            self._sequence(key)
        return m.end() - i

    def _sequence(self, seq: str) -> None:
        """A legacy escape sequence: cursor keys, Alt-<key>."""
        if seq in _LEFT:
            self._left()
        elif seq in _RIGHT:
            self._right()
        elif seq in _HOME:
            self._line_home()
        elif seq in _END:
            self._line_end()
        elif seq == _DELETE:
            self._delete()
        elif _HISTORY.match(seq):
            self._recall()
        elif seq in _ALT_ENTER:
            self._newline()
        elif seq in _ALT_BACKSPACE:  # drop the last word
            self._kill_word()
        elif _MOTION.match(seq) or len(seq) == 1 or (len(seq) == 2
                                                   and seq[1] not in _INTRODUCERS):
            # word motions and Alt-<key> editing, or ESC ESC (the Esc key twice, or an
            # Alt-prefixed sequence): where the cursor is, or what is left, is unknown
            self._lose_track()

    def _press(self, key: _Key) -> None:
        """A key press the kitty protocol or modifyOtherKeys encoded."""
        code = key.code
        if code in _KP_TEXT:
            code = ord(_KP_TEXT[code])
        if code in _KP_NAV:
            self._sequence(_legacy_form(*_KP_NAV[code], key.mods))
        elif code == _ENTER and not key.mods:
            self._enter()
        elif code == _ENTER:
            self._newline()  # Shift-, Ctrl-, Alt-Enter
        elif code == _BACKSPACE and key.mods & _ALT:
            self._kill_word()
        elif code == _BACKSPACE:
            self._backspace()
        elif code in (_ESC, _TAB):
            self._esc_or_tab(code, key.mods)
        elif code in _PRIVATE_USE:
            pass  # modifier keys on their own, media keys, F13 and up
        elif key.mods & _CTRL and not key.mods & ~(_CTRL | _SHIFT):
            self._ctrl(code, key.mods)
        elif key.mods & ~_SHIFT:
            self._lose_track()  # Alt/Super-<key>: editing we cannot follow
        else:
            self._type(key, code)

    def _esc_or_tab(self, code: int, mods: int) -> None:
        if mods:
            return  # Shift-Tab and the like change no text
        if code == _ESC:
            self._esc_key()
        else:
            self._insert("\t")

    def _ctrl(self, code: int, mods: int) -> None:
        """Ctrl-<key> as the control character it stands for (Ctrl-C, Ctrl-U, Ctrl-J...)."""
        ch = _ctrl_char(code)
        if mods & _SHIFT and _char(code).isalpha():
            self._lose_track()  # Ctrl-Shift-<letter>: no legacy key, no known edit
        elif ch is not None:
            self._key(ch)

    def _type(self, key: _Key, code: int) -> None:
        """Insert the text of a printable key, shifted as the terminal says or as Shift does."""
        text = key.text
        if not text and key.mods & _SHIFT:
            text = _char(key.shifted) or _SHIFTED.get(_char(code), _char(code).upper())
        for ch in text or _char(code):
            if _typable(ch):
                self._insert(ch)

    def _key(self, ch: str) -> None:
        if self._in_paste:
            if ch in "\r\n":
                self._insert("\n")  # a pasted line break is part of the draft
            elif _typable(ch):
                self._insert(ch)
            return
        if ch in self._controls:
            self._controls[ch]()
        elif _typable(ch):
            self._insert(ch)

    # where the cursor is

    def _cursor_back(self) -> int:
        return min(self._back, len(self.buffer))  # the buffer may be cleared from outside

    def _pos(self) -> int:
        return len(self.buffer) - self._cursor_back()

    def _move_to(self, pos: int) -> None:
        self._back = len(self.buffer) - max(0, min(pos, len(self.buffer)))

    def _start_of_line(self, pos: int) -> int:
        return "".join(self.buffer).rfind("\n", 0, pos) + 1

    def _end_of_line(self, pos: int) -> int:
        end = "".join(self.buffer).find("\n", pos)
        return len(self.buffer) if end < 0 else end

    def _left(self) -> None:
        self._move_to(self._pos() - 1)

    def _right(self) -> None:
        self._move_to(self._pos() + 1)

    def _line_home(self) -> None:
        self._move_to(self._start_of_line(self._pos()))

    def _line_end(self) -> None:
        self._move_to(self._end_of_line(self._pos()))

    # what the draft holds

    def _lose_track(self) -> None:
        """The cursor, or what is left, can no longer be followed (a clean input stays clean)."""
        if self.dirty:
            self.unknown = True

    def _recall(self) -> None:
        """The input may now hold text we never saw typed (history, yank, undo)."""
        self.unknown = True

    def _insert(self, ch: str) -> None:
        pos = self._pos()
        self.buffer.insert(pos, ch)
        self._move_to(pos + 1)

    def _newline(self) -> None:
        """A new line in the draft (Ctrl-J, Alt/Shift/Ctrl-Enter): the draft stays open."""
        self._insert("\n")

    def _backspace(self) -> None:
        pos = self._pos()
        if pos > 0:
            del self.buffer[pos - 1]
            self._move_to(pos - 1)

    def _delete(self) -> None:
        pos = self._pos()
        if pos < len(self.buffer):
            del self.buffer[pos]
            self._move_to(pos)

    def _kill(self, start: int, end: int) -> None:
        """Delete ``buffer[start:end]``, the cursor at one end of it."""
        del self.buffer[start:end]
        self._move_to(start)

    def _kill_to_line_start(self) -> None:
        pos = self._pos()
        start = self._start_of_line(pos)
        if start == pos and pos > 0:
            self._lose_track()  # at the start of a line after the first
        else:
            self._kill(start, pos)

    def _kill_to_line_end(self) -> None:
        pos = self._pos()
        end = self._end_of_line(pos)
        if end == pos and pos < len(self.buffer):
            self._lose_track()  # at the end of a line before the last
        else:
            self._kill(pos, end)

    def _kill_word(self) -> None:
        """Drop the word before the cursor and the spaces after it, within the line."""
        pos = self._pos()
        start = pos
        while start > 0 and self.buffer[start - 1] == " ":
            start -= 1
        while start > 0 and self.buffer[start - 1] not in " \n":
            start -= 1
        if start == pos and pos > 0:
            self._lose_track()  # right after a line break
        else:
            self._kill(start, pos)

    def _esc_key(self) -> None:
        if self.esc_clears:
            self.clear()

    def _enter(self) -> None:
        """Enter submits the draft, unless it follows a backslash that turns into a new line."""
        pos = self._pos()
        if self.backslash_newline and pos > 0 and self.buffer[pos - 1] == "\\":
            self.buffer[pos - 1] = "\n"
        else:
            self._submit()

    def _submit(self) -> None:
        line = "".join(self.buffer).strip()
        self.clear()
        self.submits += 1
        if line:
            self.submitted.append(line)
            del self.submitted[:-20]
