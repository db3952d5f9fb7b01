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


def format_message(m: Message, colour: bool = True, show_room: bool = False) -> str:
    """One message as terminal lines (``cspctl history`` and the command center).

    The content is sanitised; the only escape sequences in the result are the
    colours added here.  Long lines are left for the terminal to wrap, so they
    re-flow when it is resized.  ``show_room`` names the room (for a view of all
    rooms).
    """
    content = visible_text(m.content).rstrip("\n")
    time = clock(m.ts)
    room = f"#{m.room} " if show_room else ""
    if m.kind == "system":
        line = f"{time} -- {room}{content}"
        return click.style(line, dim=True) if colour else line
    to = "" if m.to == ["all"] else " → " + ", ".join("@" + t for t in m.to)
    urgent = "!" if m.urgent else ""
    head = f"{room}{m.sender}{to}{urgent}"
    stamp = time
    if colour:
        head = click.style(head, fg=colour_of(m.sender), bold=True)
        stamp = click.style(time, dim=True)
    if m.kind == "output":
        # an agent's screen output: its lines as they were, in a gutter of its colour
        gutter = click.style("  │ ", fg=colour_of(m.sender)) if colour else "  │ "
        marker = click.style("(output)", dim=True) if colour else "(output)"
        return "\n".join([f"{stamp} {head} {marker}",
                          *(gutter + line for line in content.split("\n"))])
    body = content.replace("\n", "\n" + " " * 9)
    return f"{stamp} {head}: {body}"


def format_notice(text: str, level: str = "info", colour: bool = True) -> str:
    """A line from the command center itself (help, /list, errors), set apart from
    the room's messages by its marker and colour."""
    fg = {"info": "bright_black", "ok": "green", "warn": "yellow", "error": "red"}[level]
    line = "  * " + visible_text(text).replace("\n", "\n    ")
    return click.style(line, fg=fg) if colour else line


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


def print_json_line(data: Any) -> None:
    click.echo(json.dumps(data, ensure_ascii=False))
