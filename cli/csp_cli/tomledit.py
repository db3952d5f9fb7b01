"""Edit one ``[[table]]`` entry of a TOML file as text, so everything else stays as the
person wrote it: comments, blank lines, key order, quoting.

``cspctl agents add`` appends an entry at the end of the file (valid TOML wherever the
other ``[[agents]]`` entries stand) and ``agents remove`` cuts an entry's lines out
again, so an add followed by a remove gives the file back byte for byte.  The caller
checks the result by parsing it (:func:`checked`); an edit this text surgery cannot
make safely is refused rather than made lossy.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable
from typing import Any

import tomli_w

from csp_core.errors import ConfigError

_ANY_HEADER = re.compile(r"^\s*\[")
_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _header(name: str) -> re.Pattern[str]:
    return re.compile(rf"^\s*\[\[\s*{re.escape(name)}\s*\]\]\s*(#.*)?$")


def value(v: Any) -> str:
    """One TOML value on one line (tomli_w's quoting: control bytes escaped)."""
    if isinstance(v, dict):
        return "{" + ", ".join(f"{key(k)} = {value(x)}" for k, x in v.items()) + "}"
    return tomli_w.dumps({"v": v})[4:].rstrip("\n")


def key(k: str) -> str:
    return k if _BARE_KEY.match(k) else value(k)


def render_entry(name: str, entry: dict[str, Any]) -> str:
    """``[[name]]`` and its keys, nested tables written inline (``env = {A = "b"}``)."""
    lines = [f"[[{name}]]", *(f"{key(k)} = {value(v)}" for k, v in entry.items())]
    return "\n".join(lines) + "\n"


def entry_spans(text: str, name: str) -> list[tuple[int, int]]:
    """Line ranges ``[start, end)`` of each ``[[name]]`` entry, in file order: from its
    header to its last key line (comments and blank lines before the next header
    belong to what follows)."""
    lines = text.splitlines(keepends=True)
    header = _header(name)
    spans: list[tuple[int, int]] = []
    i = 0
    while i < len(lines):
        if not header.match(lines[i]):
            i += 1
            continue
        start, last = i, i
        i += 1
        while i < len(lines) and not _ANY_HEADER.match(lines[i]):
            stripped = lines[i].strip()
            if stripped and not stripped.startswith("#"):
                last = i
            i += 1
        spans.append((start, last + 1))
    return spans


def append_entry(text: str, name: str, entry: dict[str, Any]) -> str:
    """The file with a new entry at its end, after one blank line."""
    if text and not text.endswith("\n"):
        text += "\n"
    gap = "\n" if text.strip() and not text.endswith("\n\n") else ""
    return text + gap + render_entry(name, entry)


def remove_entry(text: str, name: str, index: int) -> str:
    """The file without the ``index``-th entry, and without the one blank line that
    :func:`append_entry` put before it when nothing but the end of the file or
    another blank line follows it."""
    lines = text.splitlines(keepends=True)
    start, end = entry_spans(text, name)[index]
    before, after = lines[:start], lines[end:]
    if before and not before[-1].strip() and (not after or not after[0].strip()):
        before = before[:-1]
    return "".join(before + after)


def replace_entry(text: str, name: str, index: int, entry: dict[str, Any]) -> str:
    lines = text.splitlines(keepends=True)
    start, end = entry_spans(text, name)[index]
    return "".join(lines[:start]) + render_entry(name, entry) + "".join(lines[end:])


def checked(path: object, new_text: str,
            expect: Callable[[dict[str, Any]], bool]) -> str:
    """``new_text`` if it parses and ``expect`` holds for it; else a ConfigError that
    says to edit the file by hand (a layout this module does not follow safely, such
    as an entry written inline or a header inside a multi-line string)."""
    try:
        ok = expect(tomllib.loads(new_text))
    except tomllib.TOMLDecodeError:
        ok = False
    if not ok:
        raise ConfigError(f"{path}: cannot make this change without rewriting the file's "
                          "own layout; please edit it by hand")
    return new_text
