"""Who is calling: decided by the connection, never by what the client claims.

On the unix socket the kernel names the calling process (``SO_PEERCRED``).  A
process inside an agent's process tree *is* that agent, whatever header it
sends: the sidecar that registered the agent, everything it started, and
everything still in the agent CLI's session (a job sent to the background and
orphaned stays in it).  On TCP the kernel cannot tell; there the bearer decides:
an agent's credential (issued to its sidecar at registration, see
:mod:`csp_core.auth`) is that agent, the owner's token is the owner.

The owner -- every process outside all agents -- speaks as ``human`` or, for a
script, as a name of its choosing that is not an online agent's.  A claim
(``X-CSP-Agent``) that contradicts the connection is refused with 403, never
believed.  Control (pause, resume, interrupt, forgetting an agent, room policy)
is the owner's alone.

What this protects against is a confused or misled agent posting, acking or
pausing in another's name.  It cannot stop a process of the same user that
leaves the agent's tree on purpose (``setsid``, a new tmux window) and reads the
owner's token file: the kernel does not tell those apart from the owner.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

from csp_core.errors import Forbidden
from csp_core.proctree import PROC, AgentTree, ProcInfo, ancestry
from csp_core.protocol import HUMAN, IDENTITY_HEADER, check_name

from .gateway import Gateway, gateway_of

if TYPE_CHECKING:
    from .hub import Subscriber

@dataclass(frozen=True)
class Caller:
    """What the connection says about who is calling."""

    agent: str | None = None  # None: the owner
    chain: tuple[ProcInfo, ...] = ()  # the calling process and its ancestors (unix socket)
    how: str = "owner"  # "process", "credential" or "owner": for error messages

    @property
    def is_owner(self) -> bool:
        return self.agent is None

    def speak_as(self, claim: str | None, online: Callable[[str], bool]) -> str:
        """The name this caller speaks as, given the name it claims."""
        if self.agent is not None:
            if claim is not None and claim != self.agent:
                raise Forbidden(f"{self.describe()}; it cannot speak as {claim!r}",
                                agent=self.agent)
            return self.agent
        if claim is None or claim == HUMAN:
            return HUMAN
        if online(claim):
            raise Forbidden(f"{claim!r} is an online agent: only its own processes "
                            "speak as it", agent=claim)
        return claim

    def require_owner(self, what: str) -> None:
        if self.agent is not None:
            raise Forbidden(f"{what} is the owner's; {self.describe()}", agent=self.agent)

    def describe(self) -> str:
        if self.how == "process":
            return f"this process belongs to agent {self.agent!r}"
        return f"this is agent {self.agent!r}'s credential"


_PEERCRED = struct.Struct("3i")


def peer_pid(request: web.Request) -> int | None:
    """The calling process on the unix socket (SO_PEERCRED); None on TCP."""
    transport = request.transport
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is None or sock.family != socket.AF_UNIX:
        return None
    with contextlib.suppress(OSError):
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)
        pid, _uid, _gid = _PEERCRED.unpack(raw)
        return pid if pid > 0 else None  # 0: a peer outside our pid namespace
    return None


# The calling process and its ancestors, read once per connection (the peer of a
# unix connection is fixed when it connects) instead of on every request: that
# walk through /proc was a fifth of the gateway's work per message.  Which agent
# a chain belongs to is still decided per request, against the agents online then.
_PEERS: weakref.WeakKeyDictionary[object, tuple[int | None, tuple[ProcInfo, ...]]] = (
    weakref.WeakKeyDictionary())


def _peer(request: web.Request) -> tuple[int | None, tuple[ProcInfo, ...]]:
    """The calling process (None on TCP) and its ancestry, nearest first."""
    transport = request.transport
    known = _PEERS.get(transport) if transport is not None else None
    if known is not None:
        return known
    pid = peer_pid(request)
    chain = tuple(ancestry(pid)) if pid is not None else ()
    if transport is not None and (pid is None or chain):  # a gone peer is asked again
        _PEERS[transport] = (pid, chain)
    return pid, chain


def agent_of_chain(chain: Sequence[ProcInfo], agents: Mapping[str, Subscriber],
                   proc_root: Path = PROC) -> str | None:
    """The online agent whose tree holds the process at ``chain[0]``, if any."""
    if not chain:
        return None
    for name, sub in agents.items():
        if sub.tree.holds(chain, proc_root):
            return name
    return None


def caller(request: web.Request, gw: Gateway) -> Caller:
    """Who is calling, from the connection (and the credential it presents)."""
    by_key = gw.tokens.agent_of(request.headers.get("Authorization"))
    pid, chain = _peer(request)
    if pid is not None and not chain and by_key is None:
        # it connected, then went (or handed the socket on): nobody to vouch for
        raise Forbidden("cannot tell which process is calling: it is gone")
    by_tree = agent_of_chain(chain, gw.hub.agents)
    if by_tree is not None:
        if by_key is not None and by_key != by_tree:
            raise Forbidden(f"this process belongs to agent {by_tree!r}; the credential "
                            f"of {by_key!r} is refused", agent=by_tree)
        return Caller(by_tree, chain, "process")
    if by_key is not None:
        return Caller(by_key, chain, "credential")
    return Caller(None, chain)


def claimed(request: web.Request) -> str | None:
    """The name the client says it speaks as (``X-CSP-Agent``), checked for shape."""
    name = request.headers.get(IDENTITY_HEADER)
    if not name:
        return None
    return name if name == HUMAN else check_name(name)


def online(gw: Gateway) -> Callable[[str], bool]:
    """Names only their own agent may use: connected, or owning their bus name."""
    return lambda name: gw.hub.online(name) or name in gw.bus_agents


def speaker(request: web.Request, gw: Gateway) -> str:
    """The name a request speaks as (posts, acks, memberships)."""
    claim = claimed(request)
    return caller(request, gw).speak_as(claim, online(gw))


def owner(request: web.Request, gw: Gateway, what: str) -> str:
    """Refuse agents; return the name the owner speaks as (for ``by`` fields)."""
    who = caller(request, gw)
    who.require_owner(what)
    return who.speak_as(claimed(request), online(gw))


def registration(request: web.Request, gw: Gateway, name: str) -> AgentTree:
    """May this connection register agent ``name``?  Returns the agent's tree.

    The owner registers any name (a taken one is the hub's 409); a process of
    an agent registers no other name, so an agent cannot start a second self.
    """
    claim = claimed(request)
    if claim is not None and claim != name:
        raise Forbidden(f"{IDENTITY_HEADER} says {claim!r} but the stream registers {name!r}")
    who = caller(request, gw)
    if who.agent is not None and who.agent != name:
        raise Forbidden(f"{who.describe()}; it cannot register {name!r}", agent=who.agent)
    return AgentTree(sidecar=who.chain[0].proc if who.chain else None)


def speaker_of(request: web.Request) -> str:
    """Who ``request`` speaks as: the route handlers' one call (see :func:`speaker`)."""
    return speaker(request, gateway_of(request))
