"""Make chat text harmless before it reaches any terminal or any model.

Text typed into a PTY is keystrokes and text printed to a terminal is
commands, so every control character except newline and tab goes, C1 controls
and DEL included.  And a human and a model must read the same message: a
character a terminal does not show but a model reads (bidi overrides, zero-width
characters, Unicode tag characters, private-use characters) could carry a
second message that only the model sees, so those go too.  What goes is chosen
character by character, never by sequence, so the result is a fixed point:
removing one character can never assemble a new sequence out of its neighbours.

Chat messages reach agents tagged with their sender (``[alice → @bob] hi``);
:func:`is_sender_tag` tells whether a line reads as such a tag, so that a
message cannot carry a line that passes for another sender's message.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from string import Formatter

DEFAULT_TAG_FORMAT = "[{sender} → {to}] {text}"

# every way to end a line becomes "\n": CRLF, a lone CR, NEL and the Unicode separators
_LINE_BREAK = re.compile("\r\n?|[\x85\u2028\u2029]")

# Removed outright.  Category Cf (format characters) is checked per character on top of
# this list, so format characters of a newer Unicode than this list go as well.
_HIDDEN = re.compile(
    "["
    "\x00-\x08\x0b-\x1f\x7f-\x9f"  # C0 but newline and tab, DEL, C1
    "\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f"  # invisible, ignorable
    "\u200b-\u200f\u202a-\u202e\u2060-\u206f\u3164\uffa0"  # zero-width, bidi
    "\ufe00-\ufe0d"  # variation selectors but the text/emoji ones (FE0E, FE0F)
    "\ufeff\ufff0-\ufffb"  # BOM / zero-width no-break space, interlinear annotation
    "\ud800-\udfff"  # lone surrogates (only JSON escapes can make them)
    "\ue000-\uf8ff\U000f0000-\U0010ffff"  # private use (planes 15 and 16 are all of it)
    "\ufdd0-\ufdef"  # noncharacters, and the two that end each plane:
    + "".join(chr(plane << 16 | 0xFFFE) + chr(plane << 16 | 0xFFFF) for plane in range(17)) +
    "\U0001d173-\U0001d17a\U0001bca0-\U0001bca3"  # musical and shorthand format controls
    "\U000e0000-\U000e0fff"  # tag characters, variation selectors 17-256, reserved
    "]"
)
_ASCII = frozenset(map(chr, range(128)))
# several presentation selectors in a row show as one: the rest could only carry data
_SELECTOR_RUN = re.compile("([\ufe0e\ufe0f])[\ufe0e\ufe0f]+")


def visible_text(text: str) -> str:
    """The text as a human and a model both read it: nothing hidden, every line break "\\n".

    Keeps newline and tab; removes every other control character and every
    character a terminal does not show (format, private-use, noncharacters,
    lone surrogates); a lone CR becomes a newline instead of gluing two lines
    together.  The result is a fixed point: ``visible_text`` changes it no more.
    """
    text = _HIDDEN.sub("", _LINE_BREAK.sub("\n", text))
    if text.isascii():
        return text  # what is left of ASCII is printable, newline or tab: no Cf, no selector
    wide = set(text).difference(_ASCII)  # each other character once (a tag's arrow, say)
    hidden = {ord(ch): None for ch in wide if unicodedata.category(ch) == "Cf"}
    if hidden:
        text = text.translate(hidden)
    if "\ufe0e" in wide or "\ufe0f" in wide:
        text = _SELECTOR_RUN.sub(r"\1", text)
    return text


def one_line(text: str) -> str:
    """Collapse text for single-line displays such as pane titles."""
    return " ".join(visible_text(text).split())


def is_blank(text: str) -> bool:
    """Whether nothing of the text would show: such a message is refused, never typed."""
    return not visible_text(text).strip()


# -- sender tags ----------------------------------------------------------------------

# What may come before a tag and still leave it reading as one: blanks (the braille
# blank too) and Markdown emphasis, list and heading marks.
_TAG_LEAD = " \u2800*_~`#+-"
_ARROWS = "(?:→|⟶|⇒|➔|➜|-+>|=+>)"
_OPENING = r"[\[(<{]"
_CLOSING = r"[\])>}]"
_BLANKS = re.compile(r"\s+")
_FIELDS = {"sender": r"[\w.@-]+", "to": ".*?"}
# the longest start of a (folded) line looked at: ample for a tag, a bound for the regex
_TAG_WINDOW = 4096


def is_sender_tag(line: str, tag_format: str = DEFAULT_TAG_FORMAT) -> bool:
    """Whether the line starts the way a message tagged with ``tag_format`` does.

    The match is loose on purpose, as a reader is: any case, any run of blanks,
    full-width forms, ``->`` for ``→``, other brackets, leading Markdown marks.
    A format with no ``{sender}`` before ``{text}`` names nobody, so nothing
    matches it.
    """
    pattern = _tag_pattern(tag_format)
    if pattern is None:
        return False
    return pattern.match(_tag_view(line)) is not None


def _tag_view(line: str) -> str:
    """The line as :func:`is_sender_tag` compares it: normalised, blanks collapsed."""
    return _fold(line).strip().lstrip(_TAG_LEAD)[:_TAG_WINDOW]


def _fold(text: str) -> str:
    return _BLANKS.sub(" ", unicodedata.normalize("NFKC", text))


@lru_cache(maxsize=16)
def _tag_pattern(tag_format: str) -> re.Pattern[str] | None:
    """The format up to its ``{text}`` as a regular expression (None: it names no sender)."""
    parts: list[str] = []
    has_sender = False
    for literal, field, _spec, _conversion in Formatter().parse(tag_format):
        folded = _fold(literal)
        parts.append(_literal_pattern(folded if parts else folded.lstrip(_TAG_LEAD)))
        if field == "text" or field is None:
            break
        has_sender = has_sender or field == "sender"
        parts.append(_FIELDS.get(field, ".*?"))
    return re.compile("".join(parts), re.IGNORECASE) if has_sender else None


def _literal_pattern(literal: str) -> str:
    """A blank may stand or be missing around each character, as a reader would not mind."""
    special = {"→": _ARROWS, "[": _OPENING, "]": _CLOSING}
    marks = [special.get(ch, re.escape(ch)) for ch in literal if ch != " "]
    if not marks:
        return " ?" if literal else ""
    return " ?" + " ?".join(marks) + " ?"
