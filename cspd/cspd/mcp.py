"""``POST /mcp``: MCP over streamable HTTP (JSON responses), so agents can post and read.

The session's agent is the connection's identity (``X-CSP-Agent``, set by
``cspctl mcp`` from ``CSP_AGENT``), never a tool argument.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

from aiohttp import web
from csp_core import __version__
from csp_core.errors import CspError

from .gateway import gateway_of
from .identity import speaker_of
from .router import Post

PROTOCOL_VERSION = "2025-06-18"
SESSION_HEADER = "Mcp-Session-Id"

TOOLS: list[dict[str, Any]] = [
    {
        "name": "post_message",
        "description": "Post a message to the group chat. Address it with 'to': ['@all'], "
                       "['@name', ...] or ['#room']. You speak as your own agent name.",
        "inputSchema": {
            "type": "object",
            "properties": {
                "content": {"type": "string", "description": "the message text"},
                "to": {"type": "array", "items": {"type": "string"},
                       "description": "addresses: @all, @name, #room (default @all)"},
                "urgent": {"type": "boolean", "description": "deliver without waiting"},
            },
            "required": ["content"],
        },
    },
    {
        "name": "read_messages",
        "description": "Read recent chat messages of a room, optionally only those after an id.",
        "inputSchema": {
            "type": "object",
            "properties": {
                "room": {"type": "string"},
                "since": {"type": "integer", "minimum": 0},
                "limit": {"type": "integer", "minimum": 1, "maximum": 500},
            },
        },
    },
    {
        "name": "list_agents",
        "description": "List the agents in the group chat and whether they are online.",
        "inputSchema": {"type": "object", "properties": {}},
    },
]


def _result(rid: Any, result: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": rid, "result": result}


def _error(rid: Any, code: int, message: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": rid, "error": {"code": code, "message": message}}


def _text(payload: Any, is_error: bool = False) -> dict[str, Any]:
    text = payload if isinstance(payload, str) else json.dumps(payload, indent=1)
    return {"content": [{"type": "text", "text": text}], "isError": is_error}


async def _call_tool(request: web.Request, name: str, args: dict[str, Any]) -> dict[str, Any]:
    gw = gateway_of(request)
    sender = speaker_of(request)
    if name == "post_message":
        to = args.get("to") or ["@all"]
        content = args.get("content")
        if not isinstance(content, str) or not isinstance(to, list):
            return _text("content must be a string and to a list of addresses", True)
        gw.limiter.take(sender)
        message = await gw.router.post(Post(sender=sender, to=[str(t) for t in to],
                                            content=content, urgent=bool(args.get("urgent"))))
        return _text({"posted": message.to_json()})
    if name == "read_messages":
        room = args.get("room") or gw.router.home_room(sender)
        since = int(args.get("since") or 0)
        limit = max(1, min(500, int(args.get("limit") or 50)))
        messages = await gw.store.history(str(room), since, limit)
        return _text([m.to_json() for m in messages])
    if name == "list_agents":
        agents = [{"name": a.name, "room": a.room, "online": gw.hub.online(a.name)}
                  for a in await gw.store.agents()]
        return _text(agents)
    return _text(f"unknown tool {name!r}", True)


async def _dispatch(request: web.Request, msg: Any) -> dict[str, Any] | None:
    if not isinstance(msg, dict) or msg.get("jsonrpc") != "2.0" or "method" not in msg:
        return _error(msg.get("id") if isinstance(msg, dict) else None, -32600,
                      "invalid JSON-RPC request")
    rid, method = msg.get("id"), msg["method"]
    params = msg.get("params") or {}
    if rid is None:  # a notification: nothing to answer
        return None
    if method == "initialize":
        return _result(rid, {
            "protocolVersion": params.get("protocolVersion", PROTOCOL_VERSION)
            if isinstance(params, dict) else PROTOCOL_VERSION,
            "capabilities": {"tools": {"listChanged": False}},
            "serverInfo": {"name": "csp", "version": __version__},
            "instructions": "csp group chat: post_message to talk to the other agents "
                            "and the human; read_messages to catch up.",
        })
    if method == "ping":
        return _result(rid, {})
    if method == "tools/list":
        return _result(rid, {"tools": TOOLS})
    if method == "tools/call":
        if not isinstance(params, dict) or not isinstance(params.get("name"), str):
            return _error(rid, -32602, "tools/call needs a tool name")
        args = params.get("arguments") or {}
        if not isinstance(args, dict):
            return _error(rid, -32602, "arguments must be an object")
        try:
            return _result(rid, await _call_tool(request, params["name"], args))
        except (CspError, ValueError, TypeError) as exc:
            return _result(rid, _text(str(exc), True))
    return _error(rid, -32601, f"method not found: {method}")


async def mcp_post(request: web.Request) -> web.StreamResponse:
    try:
        body = await request.json()
    except (ValueError, LookupError, RecursionError):  # unknown charset, deep nesting
        return web.json_response(_error(None, -32700, "parse error"), status=400)
    session = request.headers.get(SESSION_HEADER) or secrets.token_hex(16)
    headers = {SESSION_HEADER: session}
    if isinstance(body, list):
        answers = [a for a in [await _dispatch(request, m) for m in body] if a is not None]
        if not answers:
            return web.Response(status=202, headers=headers)
        return web.json_response(answers, headers=headers)
    answer = await _dispatch(request, body)
    if answer is None:
        return web.Response(status=202, headers=headers)
    return web.json_response(answer, headers=headers)


async def mcp_get(request: web.Request) -> web.StreamResponse:
    # no server-initiated stream: clients fall back to request/response
    return web.Response(status=405, headers={"Allow": "POST"})


def add_routes(app: web.Application) -> None:
    app.router.add_post("/mcp", mcp_post)
    app.router.add_get("/mcp", mcp_get)
    app.router.add_delete("/mcp", mcp_delete)


async def mcp_delete(request: web.Request) -> web.StreamResponse:
    return web.Response(status=204)
