"""Make chat text harmless before it reaches any terminal.

Text typed into a PTY is keystrokes and text printed to a terminal is
commands, so every control character except newline and tab goes, C1 controls
and DEL included.  Stripping repeats until nothing changes: removing one byte
must never assemble a new sequence out of its neighbours.
"""

from __future__ import annotations

import re

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")


def strip_controls(text: str) -> str:
    """Remove every control character but ``\\n`` and ``\\t``, to a fixed point."""
    text = text.replace("\r\n", "\n")
    while True:
        cleaned = _CONTROL.sub("", text)
        if cleaned == text:
            return cleaned
        text = cleaned


def one_line(text: str) -> str:
    """Collapse text for single-line displays such as pane titles."""
    return " ".join(strip_controls(text).split())
