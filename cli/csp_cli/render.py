"""How messages look on a terminal and in ``--json``.

Chat text is sanitised before it is printed: a message must never be able to
move the cursor, retitle the window or paste into the reader's shell.
"""

from __future__ import annotations

import json
from typing import Any

import click
from csp_core.protocol import Message
from csp_core.sanitize import visible_text

SENDER_COLOURS = ("cyan", "green", "yellow", "magenta", "blue", "bright_cyan",
                  "bright_green", "bright_magenta", "bright_yellow", "bright_blue")


def colour_of(name: str) -> str:
    """A stable colour per sender, so a face is recognised across lines."""
    return SENDER_COLOURS[sum(name.encode()) % len(SENDER_COLOURS)]


def clock(ts: str) -> str:
    return ts[11:19] if len(ts) >= 19 else ts


def format_message(m: Message, colour: bool = True) -> str:
    content = visible_text(m.content)
    time = clock(m.ts)
    if m.kind == "system":
        line = f"{time} -- {content}"
        return click.style(line, dim=True) if colour else line
    to = "" if m.to == ["all"] else " → " + ", ".join("@" + t for t in m.to)
    head = f"{m.sender}{to}"
    if colour:
        head = click.style(head, fg=colour_of(m.sender), bold=True)
    marker = " (output)" if m.kind == "output" else ""
    indent = " " * 9
    body = content.replace("\n", "\n" + indent)
    return f"{time} {head}{marker}: {body}"


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


def print_json_line(data: Any) -> None:
    click.echo(json.dumps(data, ensure_ascii=False))
