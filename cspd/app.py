"""The aiohttp application: shared state, middlewares, routes.

State lives in one :class:`Gateway` object under a typed app key.  Errors are
caught at this edge: a :class:`~cspd.errors.CspError` becomes its status code
with a JSON body, aiohttp's own HTTP errors get JSON bodies too, and anything
unexpected is logged and answered with a 500 instead of killing the daemon.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from .auth import TokenChecker, check_origin, own_origins
from .config import GatewayConfig
from .errors import BadRequest, CspError
from .hub import Hub
from .notify import Notifier
from .protocol import HUMAN, IDENTITY_HEADER, check_name
from .ratelimit import RateLimiter
from .router import Router
from .store import Store

log = logging.getLogger("cspd")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


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

    def status_text(self) -> str:
        online = len(set(self.hub.agents) | self.bus_agents)
        agents = "agent" if online == 1 else "agents"
        presence = ("" if self.bus_presence
                    else "; no session bus: presence falls back to connections")
        return (f"{online} {agents} online, {self.store.last_id} messages, "
                f"{len(self.hub.watchers)} watching{presence}")

    def update_status(self) -> None:
        self.notifier.status(self.status_text())


GATEWAY = web.AppKey("gateway", Gateway)


def gateway_of(request: web.Request) -> Gateway:
    return request.app[GATEWAY]


def identity(request: web.Request) -> str:
    """Who the connection speaks as: an agent's name, or ``human``."""
    name = request.headers.get(IDENTITY_HEADER)
    if not name:
        return HUMAN
    if name == HUMAN:
        return name
    return check_name(name)


def json_error(status: int, code: str, message: str, **extra: object) -> web.Response:
    body: dict[str, object] = {"error": code, "message": message, **extra}
    return web.json_response(body, status=status)


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except CspError as exc:
        return web.json_response(exc.to_json(), status=exc.status)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = {404: "not_found", 405: "method_not_allowed",
                413: "too_large"}.get(exc.status, "http_error")
        message = exc.reason
        if exc.status == 413:  # a body past client_max_size never reaches the handler
            message = (f"message too large; the limit is "
                       f"{gateway_of(request).config.max_message_bytes} bytes")
        return json_error(exc.status, code, message)
    except Exception:
        log.exception("unexpected error handling %s %s", request.method, request.path)
        return json_error(500, "internal", "internal error; see `cspctl gateway logs`")


@web.middleware
async def security_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    gw = gateway_of(request)
    check_origin(request.headers.get("Origin"), gw.origins)
    gw.tokens.check(request.headers.get("Authorization"))
    return await handler(request)


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


def create_app(gw: Gateway, tcp_port: int | None = None) -> web.Application:
    from . import api, mcp, presence, stream

    gw.origins = own_origins(tcp_port or gw.config.tcp_port)
    app = web.Application(
        middlewares=[errors_middleware, security_middleware],
        client_max_size=max(1024 * 1024, gw.config.max_message_bytes * 4),
    )
    app[GATEWAY] = gw
    api.add_routes(app)
    stream.add_routes(app)
    mcp.add_routes(app)
    presence.install(app)
    return app


def open_gateway(config: GatewayConfig, db_path: Path, token_path: Path) -> Gateway:
    store = Store(db_path)
    hub = Hub()
    gw = Gateway(config=config, store=store, hub=hub, router=Router(store, hub, config),
                 tokens=TokenChecker(token_path),
                 limiter=RateLimiter(config.rate_per_second, config.rate_burst))
    hub.on_change.append(gw.update_status)
    return gw
