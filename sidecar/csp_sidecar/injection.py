"""Turning a chat message into keystrokes that are safe to type into an agent.

Text typed into a PTY *is* keystrokes.  So every message is sanitised (every
control character but newline and tab removed, to a fixed point: no ``ESC``,
no end-of-paste marker, no ``^C``/``^D``), tagged with its sender, guarded so
it never starts with a character the CLI treats as a command, and framed as
one bracketed paste when the agent has asked for bracketed paste.  The submit
key is *not* part of the payload: it goes as its own write after the
profile's delay, because CLIs swallow or reinterpret an Enter that arrives in
the same instant as the text.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cspd import paths
from cspd.protocol import Message
from cspd.sanitize import strip_controls

from .profiles import Profile

PASTE_START = b"\x1b[200~"
PASTE_END = b"\x1b[201~"
GUARD = "(csp) "


def address_label(message: Message) -> str:
    return "@all" if message.to == ["all"] else " ".join("@" + t for t in message.to)


def render_text(message: Message, profile: Profile) -> str:
    """The sanitised, tagged, guarded text the agent will read."""
    body = strip_controls(message.content).strip("\n")
    text = profile.tag_format.format(sender=strip_controls(message.sender),
                                     to=address_label(message), text=body)
    # the format comes from a (user's) profile: the whole is cleaned, not just the parts
    return guard(strip_controls(text), profile.guard_prefixes)


def guard(text: str, prefixes: str) -> str:
    """Make sure the first non-blank character is not a command prefix."""
    text = text.lstrip()
    if text and prefixes and text[0] in prefixes:
        return GUARD + text
    return text


@dataclass(frozen=True)
class Keystrokes:
    """What to write for one message: the text, then (separately) the submit key."""

    payload: bytes
    submit: bytes
    text: str  # what the agent will show, for filtering its echo from capture


def spill_to_file(agent: str, message: Message, text: str) -> Path:
    """Write a message too long to paste to a private file the agent can read."""
    folder = paths.ensure_private_dir(paths.runtime_dir() / "messages" / agent)
    path = folder / f"message-{message.id}.txt"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    os.fchmod(fd, 0o600)  # O_CREAT's mode does not apply to a file already there
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text + "\n")
    return path


def keystrokes_for(message: Message, profile: Profile, agent: str,
                   bracketed_paste: bool) -> Keystrokes:
    text = render_text(message, profile)
    if len(text.encode()) > profile.max_paste_bytes:
        path = spill_to_file(agent, message, text)
        text = guard(strip_controls(profile.tag_format.format(
            sender=strip_controls(message.sender), to=address_label(message),
            text=f"a long message ({len(text.encode())} bytes) is in {path} - please read it")),
            profile.guard_prefixes)
    if bracketed_paste and profile.paste == "bracketed":
        body = text.replace("\n", "\r").encode()
        payload = PASTE_START + body + PASTE_END
    else:
        # no bracketed paste: a newline would submit early, so lines are joined
        text = " ".join(line.strip() for line in text.splitlines() if line.strip())
        payload = text.encode()
    return Keystrokes(payload=payload, submit=profile.submit_key.encode(), text=text)
