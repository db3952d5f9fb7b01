"""Names on the wire: agents and rooms, the words that address them, the API's path
and the header that says who speaks.

The light half of :mod:`csp_core.protocol` (which re-exports all of it): a one-shot
client (``cspctl send``) needs only these, and importing them must not cost it the
dataclasses, datetime and text-cleaning machinery the message types need.
"""

from __future__ import annotations

import re

from .errors import BadRequest

API = "/v1"
HUMAN = "human"
ALL = "all"
IDENTITY_HEADER = "X-CSP-Agent"

_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
RESERVED_NAMES = frozenset({ALL, "system", "room", "everyone"})


def check_name(name: str, what: str = "agent name") -> str:
    """Agent and room names: lowercase, start with a letter, at most 32 characters.

    The rule keeps names safe in D-Bus bus names, tmux targets and file names.
    """
    if not isinstance(name, str) or not _NAME.fullmatch(name):  # '$' alone allows 'a\n'
        raise BadRequest(
            f"invalid {what} {name!r}: use 1-32 characters a-z, 0-9, '-' or '_', "
            "starting with a letter"
        )
    if what == "agent name" and name in RESERVED_NAMES:
        raise BadRequest(f"{name!r} is reserved and cannot be an agent name")
    return name


def split_address_words(args: list[str]) -> tuple[list[str], list[str]]:
    """Split leading ``@x``/``#x`` words from the rest (the text) of a command line."""
    addresses: list[str] = []
    rest = list(args)
    while rest and len(rest[0]) > 1 and rest[0][0] in "@#" and " " not in rest[0]:
        addresses.append(rest.pop(0))
    return addresses, rest
