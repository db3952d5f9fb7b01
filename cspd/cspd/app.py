"""The aiohttp application: middlewares and routes.

State lives in one :class:`~cspd.gateway.Gateway` object under a typed app key.
Errors are caught here: a :class:`~csp_core.errors.CspError` becomes its status code
with a JSON body, aiohttp's own HTTP errors get JSON bodies too, and anything
unexpected is logged and answered with a 500 instead of killing the daemon.  Below
the application, :mod:`cspd.edge` bounds what a connection may cost.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError

from csp_core.auth import check_origin, own_origins
from csp_core.errors import CspError, RequestTimeout

from . import api, mcp, presence, stream
from . import web as webview
from .gateway import GATEWAY, Gateway, gateway_of
from .httperrors import as_json_error, closes_connection, code_for, describe, json_error

log = logging.getLogger("cspd")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return as_json_error(await handler(request))  # type: ignore[no-any-return]
    except CspError as exc:
        resp = web.json_response(exc.to_json(), status=exc.status)
        if closes_connection(exc.status):
            resp.force_close()
        return resp
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        message = exc.reason
        if exc.status == 413:  # a body past client_max_size never reaches the handler
            message = (f"message too large; the limit is "
                       f"{gateway_of(request).config.max_message_bytes} bytes")
        resp = json_error(exc.status, code_for(exc.status), message)
        for name in ("Allow", "Retry-After"):
            if name in exc.headers:
                resp.headers[name] = exc.headers[name]
        return resp
    except (HttpProcessingError, RequestPayloadError) as exc:  # a broken body, read late
        return json_error(400, "bad_request", f"malformed request body: {describe(exc)}")
    except ConnectionError:
        raise  # the client went away: nobody to answer
    except Exception:
        log.exception("unexpected error handling %s %s", request.method, request.path)
        return json_error(500, "internal", "internal error; see `cspctl gateway logs`")


@web.middleware
async def security_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    gw = gateway_of(request)
    check_origin(request.headers.get("Origin"), gw.origins)
    if not webview.vouches(request):  # its pages, or a browser's session cookie
        gw.tokens.check(request.headers.get("Authorization"))
    return await handler(request)


@web.middleware
async def body_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Bound the time an authenticated request's body may take to arrive.

    A client that sends its body slowly (or never) would otherwise hold the
    connection and the handler waiting on it; past the deadline the handler's
    read fails with :class:`RequestTimeout` (a 408, and the connection closes).
    The body itself is left unread here, for the handler to read as it likes.
    """
    content = request.content
    if not request.body_exists or content.is_eof():  # none, or all of it here already
        return await handler(request)
    limit = gateway_of(request).http.body_timeout

    def expire() -> None:
        if not content.is_eof():  # is_eof: the whole body has arrived, read or not
            content.set_exception(RequestTimeout(
                f"the request body did not arrive within {limit:g}s"))

    timer = asyncio.get_running_loop().call_later(limit, expire)
    try:
        return await handler(request)
    finally:
        timer.cancel()


def create_app(gw: Gateway, tcp_port: int | None = None) -> web.Application:
    gw.origins = own_origins(tcp_port or gw.config.tcp_port)
    app = web.Application(
        middlewares=[errors_middleware, security_middleware, body_middleware],
        client_max_size=max(1024 * 1024, gw.config.max_message_bytes * 4),
    )
    app[GATEWAY] = gw
    api.add_routes(app)
    stream.add_routes(app)
    mcp.add_routes(app)
    presence.install(app)
    webview.install(app)
    return app
