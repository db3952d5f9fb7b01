"""``/mcp``: the Model Context Protocol over streamable HTTP, written for the gateway.

Hand-written rather than built on the MCP SDK's server: importing that costs
about 0.8 s and 30 MiB more than the whole gateway (see docs/mcp.md); the
SDK's *client* is what the tests check this server with.

What the specification asks of a streamable HTTP server, and how it is met:

* ``POST /mcp`` takes one JSON-RPC message (or, for 2025-03-26 clients, a
  batch).  Requests are answered with ``application/json``; a body of only
  notifications or responses gets ``202 Accepted`` and no body.
* ``initialize`` negotiates the protocol version: the client's when this
  server speaks it, else the newest this server speaks.  It opens a session
  whose id (``Mcp-Session-Id``, 256 random bits) every later request carries:
  without it a request is 400, with an unknown or ended one 404 (the client
  then initializes again).  ``DELETE /mcp`` ends a session.
* A request's ``MCP-Protocol-Version`` header, when given, must be a version
  this server speaks (else 400).
* ``GET /mcp`` (a stream of server-initiated messages) is 405: this server
  never sends any; the tool set is fixed, so ``tools.listChanged`` is false.
* The token (401) and the ``Origin`` check (403) are the application's
  middlewares, as for every route.

A session belongs to the identity that opened it (:func:`cspd.identity.speaker_of`);
a request on it from anyone else is 403.  Tool calls run as that identity.
"""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from csp_core import __version__
from csp_core.errors import Forbidden

from . import mcp_tools
from .identity import speaker_of

SESSION_HEADER = "Mcp-Session-Id"
VERSION_HEADER = "MCP-Protocol-Version"
# the protocol versions this server speaks, oldest first (all use initialize)
VERSIONS = ("2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25")
LATEST = VERSIONS[-1]
# a request without the header: the spec says to assume this one
ASSUMED_VERSION = "2025-03-26"
MAX_SESSIONS = 512  # past this, the least recently used session ends

INSTRUCTIONS = (
    "csp is a group chat between coding agents (Claude Code, Codex, Gemini CLI...) and "
    "the human who runs them. read_messages shows what was said to you since you last "
    "read (wait_seconds waits for an answer); send_message talks to '@all', '@name' or "
    "'#room'; list_agents shows who is there and whether they can take a message; "
    "get_history searches past messages. You speak as yourself: your name is set by csp.")

PARSE_ERROR, INVALID_REQUEST, METHOD_NOT_FOUND, INVALID_PARAMS = -32700, -32600, -32601, -32602
SERVER_ERROR = -32000


@dataclass
class Session:
    id: str
    speaker: str
    version: str
    client: dict[str, Any] = field(default_factory=dict)
    used: float = field(default_factory=time.monotonic)


class Sessions:
    """Open sessions, least recently used first (bounded: a client that never ends
    its sessions cannot grow this without limit)."""

    def __init__(self, limit: int = MAX_SESSIONS) -> None:
        self.limit = limit
        self._open: OrderedDict[str, Session] = OrderedDict()

    def open(self, speaker: str, version: str, client: dict[str, Any]) -> Session:
        session = Session(secrets.token_hex(32), speaker, version, client)
        self._open[session.id] = session
        while len(self._open) > self.limit:
            self._open.popitem(last=False)
        return session

    def get(self, sid: str) -> Session | None:
        session = self._open.get(sid)
        if session is not None:
            session.used = time.monotonic()
            self._open.move_to_end(sid)
        return session

    def end(self, sid: str) -> bool:
        return self._open.pop(sid, None) is not None

    def __len__(self) -> int:
        return len(self._open)


SESSIONS = web.AppKey("mcp_sessions", Sessions)


def negotiate(requested: Any) -> str:
    """The version to answer ``initialize`` with: the client's if spoken here, else ours."""
    return requested if requested in VERSIONS else LATEST


# -- JSON-RPC shapes -------------------------------------------------------------------


def _result(rid: Any, result: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": rid, "result": result}


def _error(rid: Any, code: int, message: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": rid, "error": {"code": code, "message": message}}


def _http_error(status: int, code: int, message: str,
                headers: dict[str, str] | None = None) -> web.Response:
    """An HTTP-level refusal with a JSON-RPC error body (what MCP clients show)."""
    return web.json_response(_error(None, code, message), status=status, headers=headers)


def _is_request(msg: Any) -> bool:
    return isinstance(msg, dict) and "method" in msg and "id" in msg


def _is_valid(msg: Any) -> bool:
    if not isinstance(msg, dict) or msg.get("jsonrpc") != "2.0":
        return False
    if "method" in msg:
        rid = msg.get("id", 0)
        return isinstance(msg["method"], str) and (
            isinstance(rid, str) or (isinstance(rid, int) and not isinstance(rid, bool)))
    return "id" in msg and ("result" in msg or "error" in msg)  # a response to us


# -- dispatch ------------------------------------------------------------------------


def _initialize(request: web.Request, msg: dict[str, Any]) -> tuple[dict[str, Any], Session]:
    params = msg.get("params")
    params = params if isinstance(params, dict) else {}
    version = negotiate(params.get("protocolVersion"))
    client = params.get("clientInfo")
    session = request.app[SESSIONS].open(speaker_of(request), version,
                                         client if isinstance(client, dict) else {})
    return _result(msg["id"], {
        "protocolVersion": version,
        "capabilities": {"tools": {"listChanged": False}},
        "serverInfo": {"name": "csp", "title": "csp group chat", "version": __version__},
        "instructions": INSTRUCTIONS,
    }), session


async def _answer(request: web.Request, session: Session,
                  msg: dict[str, Any]) -> dict[str, Any] | None:
    """The answer to one message of an open session (None for notifications)."""
    if "method" not in msg or "id" not in msg:
        return None  # a notification, or a response to a request we never send
    rid, method = msg["id"], msg["method"]
    params = msg.get("params")
    if params is not None and not isinstance(params, dict):
        return _error(rid, INVALID_PARAMS, "params must be an object")
    params = params or {}
    if method == "initialize":
        return _error(rid, INVALID_REQUEST, "this session is already initialized")
    if method == "ping":
        return _result(rid, {})
    if method == "tools/list":
        return _result(rid, {"tools": mcp_tools.TOOLS})
    if method == "tools/call":
        name, args = params.get("name"), params.get("arguments")
        if not isinstance(name, str) or not mcp_tools.known(name):
            known = ", ".join(t["name"] for t in mcp_tools.TOOLS)
            return _error(rid, INVALID_PARAMS, f"unknown tool {name!r} (tools: {known})")
        if args is not None and not isinstance(args, dict):
            return _error(rid, INVALID_PARAMS, "arguments must be an object")
        result = await mcp_tools.call(request, name, args or {})
        return _result(rid, result.to_json(structured=session.version >= "2025-06-18"))
    if method in ("resources/list", "prompts/list", "resources/templates/list"):
        return _error(rid, METHOD_NOT_FOUND, f"{method}: csp offers tools only")
    return _error(rid, METHOD_NOT_FOUND, f"method not found: {method}")


async def mcp_post(request: web.Request) -> web.StreamResponse:
    try:
        body = await request.json()
    except (ValueError, LookupError, RecursionError):  # unknown charset, deep nesting
        return _http_error(400, PARSE_ERROR, "parse error: the body is not JSON")
    batch = isinstance(body, list)
    messages = body if batch else [body]
    if not messages or not all(_is_valid(m) for m in messages):
        return _http_error(400, INVALID_REQUEST, "invalid JSON-RPC 2.0 message")
    inits = [m for m in messages if m.get("method") == "initialize"]
    if inits:
        if len(messages) > 1 or not _is_request(inits[0]):
            return _http_error(400, INVALID_REQUEST,
                               "initialize must be sent alone, as a request")
        answer, session = _initialize(request, inits[0])
        return web.json_response(answer, headers={SESSION_HEADER: session.id})
    session_or_error = _session_of(request)
    if isinstance(session_or_error, web.Response):
        return session_or_error
    session = session_or_error
    answers = [a for a in [await _answer(request, session, m) for m in messages]
               if a is not None]
    if not answers:
        return web.Response(status=202)
    return web.json_response(answers if batch else answers[0])


def _session_of(request: web.Request) -> Session | web.Response:
    """The request's open session, or the HTTP answer that refuses it."""
    sid = request.headers.get(SESSION_HEADER)
    if not sid:
        return _http_error(400, INVALID_REQUEST,
                           f"no {SESSION_HEADER} header: send initialize first")
    version = request.headers.get(VERSION_HEADER)
    if version is not None and version not in VERSIONS:
        return _http_error(400, INVALID_REQUEST,
                           f"unsupported {VERSION_HEADER} {version!r} "
                           f"(supported: {', '.join(VERSIONS)})")
    session = request.app[SESSIONS].get(sid)
    if session is None:
        return _http_error(404, SERVER_ERROR,
                           "session not found (ended, or the gateway restarted): "
                           "initialize again")
    who = speaker_of(request)
    if who != session.speaker:
        raise Forbidden(f"this MCP session is {session.speaker!r}'s, not {who!r}'s")
    return session


async def mcp_get(request: web.Request) -> web.StreamResponse:
    """No server-initiated stream: the spec's 405 tells the client not to expect one
    (the gateway's documented error body is added by the middleware)."""
    return web.Response(status=405, headers={"Allow": "POST"})


async def mcp_delete(request: web.Request) -> web.StreamResponse:
    session_or_error = _session_of(request)
    if isinstance(session_or_error, web.Response):
        return session_or_error
    request.app[SESSIONS].end(session_or_error.id)
    return web.Response(status=204)


def add_routes(app: web.Application) -> None:
    app[SESSIONS] = Sessions()
    app.router.add_post("/mcp", mcp_post)
    app.router.add_get("/mcp", mcp_get)
    app.router.add_delete("/mcp", mcp_delete)

