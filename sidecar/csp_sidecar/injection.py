"""Turning chat messages into keystrokes that are safe to type into an agent.

Text typed into a PTY *is* keystrokes.  So every message is sanitised (every
control character but newline and tab removed, and everything a human would
not see but a model would read: no ``ESC``, no end-of-paste marker, no
``^C``/``^D``), tagged with its sender, guarded so it never starts with a
character the CLI treats as a command, and a body line that would pass for
another sender's tag is quoted.  Several queued messages go in as one prompt,
each with its own tag, framed as one bracketed paste when the agent has asked
for bracketed paste.  The submit key is *not* part of the payload: it goes as
its own write after the profile's delay, because CLIs swallow or reinterpret an
Enter that arrives in the same instant as the text.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from csp_core import paths
from csp_core.protocol import Message
from csp_core.sanitize import is_sender_tag, one_line, visible_text

from .profiles import Profile

PASTE_START = b"\x1b[200~"
PASTE_END = b"\x1b[201~"
GUARD = "(csp) "
# before a body line that would read as a sender's tag: a quote, not a message
QUOTE = "> "
# between the messages of one prompt
SEPARATOR = "\n\n"


def address_label(message: Message) -> str:
    return "@all" if message.to == ["all"] else " ".join("@" + t for t in message.to)


def render_text(message: Message, profile: Profile) -> str:
    """The sanitised, tagged, guarded text the agent will read.

    Empty when the message has nothing a reader would see: such a message is
    never typed (the gateway refuses to store one, but the sidecar does not
    count on it).
    """
    return _render(message.content, message.sender, address_label(message),
                   profile.tag_format, profile.guard_prefixes)


@functools.lru_cache(maxsize=32)  # a batch's worth: messages can be large
def _render(content: str, sender: str, to: str, tag_format: str, prefixes: str) -> str:
    """:func:`render_text` of a message's parts: remembered, since a message is
    rendered to choose its batch, then again to type it (and again when it waits)."""
    body = visible_text(content).strip("\n")
    if not body.strip():
        return ""
    return _tag(sender, to, quote_sender_tags(body, tag_format), tag_format, prefixes)


def quote_sender_tags(body: str, tag_format: str) -> str:
    """Quote each line that would pass for a message of its own, tagged with another sender."""
    return "\n".join(QUOTE + line if is_sender_tag(line, tag_format) else line
                     for line in body.split("\n"))


def _tagged(message: Message, profile: Profile, body: str) -> str:
    return _tag(message.sender, address_label(message), body, profile.tag_format,
                profile.guard_prefixes)


def _tag(sender: str, to: str, body: str, tag_format: str, prefixes: str) -> str:
    text = tag_format.format(sender=one_line(sender), to=one_line(to), text=body)
    # the format comes from a (user's) profile: the whole is cleaned, not just the parts
    return guard(visible_text(text), prefixes)


def guard(text: str, prefixes: str) -> str:
    """Make sure the first non-blank character is not a command prefix."""
    text = text.lstrip()
    if text and prefixes and text[0] in prefixes:
        return GUARD + text
    return text


def take_batch(queue: Sequence[Message], profile: Profile) -> list[Message]:
    """The messages to type in as one prompt: the longest start of the queue that fits.

    They fit when their rendered texts, joined, take at most ``max_paste_bytes``
    (the size at which a paste spills to a file), so coalescing never spills a
    message that alone would have been pasted.  The first message always goes
    (alone, when it is too long by itself); without ``coalesce`` only it does.
    Empty only for an empty queue.
    """
    if not queue or not profile.coalesce:
        return list(queue[:1])
    size = len(render_text(queue[0], profile).encode())
    count = 1
    for message in queue[1:]:
        text = render_text(message, profile)
        more = len(text.encode()) + (len(SEPARATOR) if text and size else 0)
        if size + more > profile.max_paste_bytes:
            break
        size += more
        count += 1
    return list(queue[:count])


@dataclass(frozen=True)
class Keystrokes:
    """What to write for a batch of messages: the text, then (separately) the submit key."""

    payload: bytes
    submit: bytes
    text: str  # what the agent will show, for filtering its echo from capture
    ids: tuple[int, ...]  # the messages typed in, in order


def spill_to_file(agent: str, message: Message, text: str) -> Path:
    """Write a message too long to paste to a private file the agent can read."""
    folder = paths.ensure_private_dir(paths.runtime_dir() / "messages" / agent)
    path = folder / f"message-{message.id}.txt"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    os.fchmod(fd, 0o600)  # O_CREAT's mode does not apply to a file already there
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text + "\n")
    return path


def keystrokes_for(messages: Sequence[Message], profile: Profile, agent: str,
                   bracketed_paste: bool) -> Keystrokes | None:
    """One paste holding every message of the batch, each with its own tag, in order.

    None when no message of the batch has anything to show: then nothing is
    typed, and the caller acknowledges the batch as delivered all the same.
    A message with nothing to show is left out of a batch that has others
    (and out of ``Keystrokes.ids``).
    """
    typed = [(m, text) for m in messages if (text := _text_to_paste(m, profile, agent))]
    if not typed:
        return None
    text = SEPARATOR.join(t for _, t in typed)
    if bracketed_paste and profile.paste == "bracketed":
        payload = PASTE_START + text.replace("\n", "\r").encode() + PASTE_END
    else:
        # no bracketed paste: a newline would submit early, so lines are joined
        text = " ".join(line.strip() for line in text.split("\n") if line.strip())
        payload = text.encode()
    return Keystrokes(payload=payload, submit=profile.submit_key.encode(), text=text,
                      ids=tuple(m.id for m, _ in typed))


def _text_to_paste(message: Message, profile: Profile, agent: str) -> str:
    """The rendered message, or (too long to paste) where to read it; empty: nothing to show."""
    text = render_text(message, profile)
    size = len(text.encode())
    if size <= profile.max_paste_bytes:
        return text
    path = spill_to_file(agent, message, text)
    return _tagged(message, profile, f"a long message ({size} bytes) is in {path} - please read it")
