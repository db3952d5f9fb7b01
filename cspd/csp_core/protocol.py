"""The wire contract: messages, names, addressing, WebSocket frames.

Every part of csp speaks these shapes.  A message shown as JSON anywhere (the
API, ``--json``) has at least ``id``, ``room``, ``from``, ``to``, ``kind``,
``content`` and ``ts``.  Names and address words are defined in :mod:`csp_core.names`
(light enough for a one-shot client) and re-exported here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .errors import BadRequest
from .names import ALL as ALL
from .names import API as API
from .names import HUMAN as HUMAN
from .names import IDENTITY_HEADER as IDENTITY_HEADER
from .names import RESERVED_NAMES as RESERVED_NAMES
from .names import check_name as check_name
from .names import split_address_words as split_address_words
from .sanitize import is_sender_tag, visible_text

KINDS = ("chat", "direct", "system", "output")


def now_iso() -> str:
    """Current time, ISO 8601 UTC with milliseconds and a ``Z``."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Message:
    """A stored chat message."""

    id: int
    room: str
    sender: str
    to: list[str]
    kind: str
    content: str
    ts: str
    hops: int = 0
    urgent: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "room": self.room,
            "from": self.sender,
            "to": list(self.to),
            "kind": self.kind,
            "content": self.content,
            "ts": self.ts,
            "hops": self.hops,
            "urgent": self.urgent,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Message:
        return cls(
            id=int(data["id"]),
            room=str(data["room"]),
            sender=str(data["from"]),
            to=[str(t) for t in data["to"]],
            kind=str(data["kind"]),
            content=str(data["content"]),
            ts=str(data["ts"]),
            hops=int(data.get("hops", 0)),
            urgent=bool(data.get("urgent", False)),
        )


@dataclass
class Targets:
    """Who a message goes to, parsed from ``@all``, ``@name`` and ``#room`` words."""

    everyone: bool = False
    names: list[str] = field(default_factory=list)
    room: str | None = None

    @property
    def is_direct(self) -> bool:
        return bool(self.names) and not self.everyone


def post_body(to: list[str], content: str, *, kind: str = "chat", room: str | None = None,
              urgent: bool = False) -> dict[str, Any]:
    """The JSON body of ``POST /v1/messages``, as both clients send it."""
    body: dict[str, Any] = {"to": to, "content": content, "kind": kind, "urgent": urgent}
    if room:
        body["room"] = room
    return body


def parse_targets(words: list[str]) -> Targets:
    """Parse address words; no address at all means the whole room."""
    targets = Targets()
    for word in words:
        if not isinstance(word, str) or len(word) < 2 or word[0] not in "@#":
            raise BadRequest(f"invalid address {word!r}: use @all, @name or #room")
        body = word[1:]
        if word[0] == "#":
            if targets.room is not None and targets.room != body:
                raise BadRequest("a message goes to one room only")
            targets.room = check_name(body, "room name")
        elif body == ALL:
            targets.everyone = True
        else:
            name = check_name(body, "recipient") if body != HUMAN else body
            if name not in targets.names:
                targets.names.append(name)
    if not targets.names:
        targets.everyone = True
    return targets


MENTION = re.compile(r"(?<![\w@])@([a-z][a-z0-9_-]{0,31})\b")


def mentions(text: str) -> list[str]:
    """Names addressed inside free text (``@codex please review``).

    Only the speaker's own words route: an ``@name`` on a line that reads as
    csp's sender tag (``[human → @codex @gemini] ...`` quoted back by an agent)
    addresses no one.  Invisible characters are removed first, so the name the
    reader sees is the name that routes.
    """
    seen: list[str] = []
    for line in visible_text(text).split("\n"):
        if is_sender_tag(line):
            continue
        for name in MENTION.findall(line):
            if name not in seen:
                seen.append(name)
    return seen
