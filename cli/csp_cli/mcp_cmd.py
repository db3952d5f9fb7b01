"""``cspctl mcp``: a stdio MCP server that bridges to the gateway's ``/mcp``.

MCP clients that only speak stdio (most agent CLIs' ``mcpServers`` entries)
run ``cspctl mcp``; each JSON-RPC line read from stdin is posted to the
gateway and the answer written back as one line.  The agent's identity comes
from the connection (the gateway knows the agent's processes and its credential,
``CSP_AGENT_TOKEN``), never from a tool argument.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import aiohttp
import click
from csp_core.client import GatewayClient
from csp_core.endpoint import speaker
from csp_core.errors import CspError
from csp_core.protocol import HUMAN, check_name

from .runner import coro_command

MCP_HELP = """Serve the csp group chat to an MCP client over stdio.

\b
Add it to an agent CLI, e.g. for Claude Code:
  claude mcp add csp -- cspctl mcp
Tools: post_message, read_messages, list_agents.  Inside csp-sidecar the
agent speaks as itself (CSP_AGENT); elsewhere as 'human' or --as NAME.
"""


@click.command("mcp", help=MCP_HELP)
@click.option("--as", "as_name", metavar="NAME", help="Speak as NAME instead of $CSP_AGENT.")
@coro_command
async def mcp(as_name: str | None) -> None:
    loop = asyncio.get_running_loop()
    session: str | None = None
    agent = speaker(as_name)
    if agent != HUMAN:
        check_name(agent)  # a bad name fails now, not per tool call
    async with GatewayClient(agent=agent) as client:
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line:
                return
            if not line.strip():
                continue
            try:
                request = json.loads(line)
            except ValueError:
                _write({"jsonrpc": "2.0", "id": None,
                        "error": {"code": -32700, "message": "parse error"}})
                continue
            answer, session = await _forward(client, request, session)
            if answer is not None:
                _write(answer)


async def _post(client: GatewayClient, request: Any,
                session: str | None) -> tuple[int, str | None, Any]:
    """One POST to ``/mcp`` with the current token: (status, session id, body)."""
    headers = client.headers()
    headers["Accept"] = "application/json, text/event-stream"
    if session:
        headers["Mcp-Session-Id"] = session
    async with client.session.post(client.base_url + "/mcp", json=request,
                                   headers=headers) as resp:
        session = resp.headers.get("Mcp-Session-Id", session)
        body = None if resp.status == 202 else await resp.json(content_type=None)
        return resp.status, session, body


async def _forward(client: GatewayClient, request: Any,
                   session: str | None) -> tuple[Any, str | None]:
    try:
        status, session, body = await _post(client, request, session)
        if status == 401 and client.refresh_token():
            # `cspctl token --rotate` while we run: the client reads the new token from
            # the next request on; this one raced the rotation, and a 401 did nothing
            status, session, body = await _post(client, request, session)
        if status == 202:
            return None, session
        if status >= 400 and isinstance(body, dict) and "jsonrpc" not in body:
            raise CspError(str(body.get("message", f"HTTP {status}")))
        return body, session
    except (aiohttp.ClientConnectionError, FileNotFoundError, ConnectionError) as exc:
        rid = request.get("id") if isinstance(request, dict) else None
        unavailable = client.unavailable(exc)
        return ({"jsonrpc": "2.0", "id": rid,
                 "error": {"code": -32000, "message": unavailable.message}}
                if rid is not None else None), session
    except (CspError, ValueError) as exc:
        rid = request.get("id") if isinstance(request, dict) else None
        message = exc.message if isinstance(exc, CspError) else str(exc)
        if rid is None:
            return None, session
        return {"jsonrpc": "2.0", "id": rid,
                "error": {"code": -32000, "message": f"csp gateway: {message}"}}, session


def _write(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False) + "\n")
    sys.stdout.flush()
