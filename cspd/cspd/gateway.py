"""The daemon's state, one :class:`Gateway` object under a typed app key, and how a
request handler reaches it (:func:`gateway_of`, :func:`identity`, :func:`read_json`).

Its own module so that the route modules (``api``, ``stream``, ``mcp``, ``presence``)
and the application that mounts them (``app``) import it, not each other.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from csp_core.auth import TokenChecker
from csp_core.config import GatewayConfig
from csp_core.errors import BadRequest

from .hub import Hub
from .notify import Notifier
from .ratelimit import RateLimiter
from .router import Router
from .store import Store


@dataclass(frozen=True)
class HttpLimits:
    """Time bounds on one connection, so that no local client can hold the gateway's
    file descriptors by sending (or reading) slowly."""

    # connect -> the first request's head complete; a half-sent head is answered 408
    head_timeout: float = 10.0
    # an authenticated request's body, read before the handler runs
    body_timeout: float = 30.0
    # idle between requests; above aiohttp's client-side 15 s so a client never
    # reuses a connection the gateway is closing at that very moment
    keepalive_timeout: float = 75.0
    # a peer that reads nothing while the gateway has a full send buffer for it
    # (a WebSocket watcher that stopped reading) is disconnected after this long
    stall_timeout: float = 30.0
    # how long an unread body is drained after the answer, before closing
    lingering_time: float = 2.0


@dataclass
class Gateway:
    config: GatewayConfig
    store: Store
    hub: Hub
    router: Router
    tokens: TokenChecker
    limiter: RateLimiter
    notifier: Notifier = field(default_factory=Notifier)
    origins: set[str] = field(default_factory=set)
    started: float = field(default_factory=time.monotonic)
    # presence.py sets this while it watches the session bus; joined/left then come from it
    bus_presence: bool = False
    bus_agents: set[str] = field(default_factory=set)  # names owned on the session bus
    http: HttpLimits = field(default_factory=HttpLimits)

    def status_text(self) -> str:
        online = len(set(self.hub.agents) | self.bus_agents)
        agents = "agent" if online == 1 else "agents"
        presence = ("" if self.bus_presence
                    else "; no session bus: presence falls back to connections")
        return (f"{online} {agents} online, {self.store.last_id} messages, "
                f"{len(self.hub.watchers)} watching{presence}")

    def update_status(self) -> None:
        self.notifier.status(self.status_text)  # worked out only when it may be sent


GATEWAY = web.AppKey("gateway", Gateway)


def gateway_of(request: web.Request) -> Gateway:
    return request.app[GATEWAY]


async def read_json(request: web.Request) -> dict[str, object]:
    if not request.can_read_body:
        raise BadRequest("request body required (JSON object)")
    try:
        data = await request.json()
    except (ValueError, LookupError, RecursionError) as exc:  # unknown charset, deep nesting
        raise BadRequest(f"malformed JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BadRequest("request body must be a JSON object")
    return data


def open_gateway(config: GatewayConfig, db_path: Path, token_path: Path) -> Gateway:
    store = Store(db_path)
    hub = Hub()
    gw = Gateway(config=config, store=store, hub=hub, router=Router(store, hub, config),
                 tokens=TokenChecker(token_path),
                 limiter=RateLimiter(config.rate_per_second, config.rate_burst))
    hub.on_change.append(gw.update_status)
    return gw
