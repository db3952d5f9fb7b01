"""Where the gateway is and who is speaking: the environment contract.

Kept free of heavy imports so that one-shot commands (``cspctl send``) start fast.
"""

from __future__ import annotations

import os

from . import paths
from .errors import Forbidden
from .names import HUMAN, check_name

GATEWAY_ENV = "CSP_GATEWAY"
AGENT_ENV = "CSP_AGENT"
# the agent's own credential, which its sidecar puts where the owner's token never goes
AGENT_TOKEN_ENV = "CSP_AGENT_TOKEN"
ROOM_ENV = "CSP_ROOM"


def gateway_address() -> str:
    """``$CSP_GATEWAY`` (a socket path or ``http://127.0.0.1:PORT``), else the user's socket."""
    return os.environ.get(GATEWAY_ENV) or os.path.join(paths.runtime_base(), paths.SOCKET_NAME)


def default_identity() -> str:
    """``cspctl`` speaks as the agent it runs inside (``CSP_AGENT``), else as the human.

    A malformed ``CSP_AGENT`` (a newline, a non-Latin-1 letter) is bad input, said
    before any request is made, never a traceback from the HTTP layer.
    """
    name = os.environ.get(AGENT_ENV) or HUMAN
    return name if name == HUMAN else check_name(name, f"agent name in {AGENT_ENV}")


def speaker(requested: str | None) -> str:
    """Who a command speaks as: ``--as NAME`` outside an agent, the agent inside one.

    An agent CLI runs commands on its own; inside a sidecar it must not be able to
    post in another agent's (or the human's) name by adding ``--as``.  The gateway
    enforces that from the connection (:mod:`cspd.identity`); refusing here too
    only says so before a request is made.
    """
    inside = os.environ.get(AGENT_ENV)
    if requested and inside and requested != inside:
        raise Forbidden(f"inside agent {inside!r} (CSP_AGENT) you speak as {inside}; "
                        f"--as {requested} is refused")
    return requested or inside or HUMAN


def owner_only(what: str) -> None:
    """Refuse inside an agent what only the owner may do (pause, resume, interrupt).

    The gateway refuses it to an agent's processes by itself; the session bus cannot
    tell who calls, so a command that would go there says no before it asks.
    """
    inside = os.environ.get(AGENT_ENV)
    if inside:
        raise Forbidden(f"inside agent {inside!r} (CSP_AGENT): {what} is the owner's")
