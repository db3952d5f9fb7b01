"""The JSON error answers: one shape (``{"error": code, "message": ...}``) for what a
handler raises, what aiohttp refuses, and what the connection guard answers itself."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError

log = logging.getLogger("cspd")

def json_error(status: int, code: str, message: str, **extra: object) -> web.Response:
    body: dict[str, object] = {"error": code, "message": message, **extra}
    return web.json_response(body, status=status)


# the `error` code of a status that no CspError raised (aiohttp's own HTTP errors)
_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
          405: "method_not_allowed", 408: "request_timeout", 413: "too_large",
          417: "expectation_failed", 429: "rate_limited", 431: "headers_too_large"}


def code_for(status: int) -> str:
    return _CODES.get(status, "internal" if status >= 500 else "http_error")


def closes_connection(status: int) -> bool:
    """Refused and timed-out requests end their connection: a client without the token
    must not keep a connection open (and its file descriptor) by sending another."""
    return status in (401, 403, 408)


def brief(text: str, limit: int = 160) -> str:
    """The first line of a parser's message, printable and short: it may quote
    what the client sent, and that is not worth echoing 10 KB of."""
    line = text.strip().splitlines()[0] if text.strip() else ""
    line = line.rstrip(":").encode("ascii", "backslashreplace").decode("ascii")
    line = "".join(c if c.isprintable() else "?" for c in line)
    return line if len(line) <= limit else line[:limit] + "..."


def describe(exc: BaseException) -> str:
    """An aiohttp parser error's own words (``str()`` of one starts "400, message:")."""
    message = getattr(exc, "message", None)
    if not isinstance(message, str) or not message:
        message = str(exc) or exc.__class__.__name__
    cause = exc.__cause__ or exc.__context__
    if isinstance(exc, RequestPayloadError) and cause is not None:
        message = f"{message}: {describe(cause)}"
    return brief(message)


def as_json_error(resp: Any) -> Any:
    """An error answer that is not JSON yet, as the documented JSON error; anything
    else unchanged.  For handlers' bare errors (``web.Response(status=405)``) and for
    aiohttp's own answers outside the middlewares (a 417 for a bad ``Expect``)."""
    if not (isinstance(resp, web.Response) and resp.status >= 400 and not resp.prepared
            and resp.content_type != "application/json"):
        return resp
    try:
        text = resp.text if resp.body else None
    except (UnicodeDecodeError, LookupError):
        text = None
    json_resp = json_error(resp.status, code_for(resp.status),
                           brief(text or resp.reason or HTTPStatus(resp.status).phrase))
    for name in ("Allow", "Retry-After"):
        if name in resp.headers:
            json_resp.headers[name] = resp.headers[name]
    if resp.keep_alive is False or closes_connection(resp.status):
        json_resp.force_close()
    return json_resp
