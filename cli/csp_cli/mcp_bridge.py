"""The stdio side of ``cspctl mcp``: JSON-RPC lines in, the gateway's ``/mcp`` answers out.

A thin proxy rather than an MCP server of its own: the gateway keeps the one
implementation (:mod:`cspd.mcp`); this keeps the gateway session for its
client.  It has to outlive trouble it cannot fix, because an agent CLI that
sees its MCP server exit does not start it again:

* a gateway that is down, or does not answer in time, gets the client a
  JSON-RPC error for that request (``-32000``, saying which), never an exit;
* a gateway that restarted (its sessions are gone: 404) is initialized again
  with the client's own ``initialize``, and the request sent once more;
* a rotated token (401) is re-read and the request sent once more.

Requests are forwarded concurrently (a ``read_messages`` that waits must not
hold up a ``ping``); ``initialize`` is forwarded alone, before anything else.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Callable
from typing import Any

import aiohttp

from csp_core.client import GatewayClient
from csp_core.errors import CspError

SESSION_HEADER = "Mcp-Session-Id"
VERSION_HEADER = "MCP-Protocol-Version"
SERVER_ERROR, PARSE_ERROR = -32000, -32700
# seconds a request may take, on top of a read_messages' own wait ($CSP_MCP_TIMEOUT)
TIMEOUT_ENV = "CSP_MCP_TIMEOUT"
ANSWER_TIMEOUT = 30.0
# at the end of stdin, requests still running get this long to finish
DRAIN_SECONDS = 5.0


def rpc_error(rid: Any, code: int, message: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": rid, "error": {"code": code, "message": message}}


def request_id(message: Any) -> Any:
    """The id to answer (None for a notification, which gets no answer)."""
    return message.get("id") if isinstance(message, dict) and "method" in message else None


def answer_timeout() -> float:
    try:
        value = float(os.environ.get(TIMEOUT_ENV) or ANSWER_TIMEOUT)
    except ValueError:
        return ANSWER_TIMEOUT
    return value if value > 0 else ANSWER_TIMEOUT


def time_allowed(message: Any) -> float:
    """How long to wait for the gateway's answer: longer for a read that waits."""
    wait = 0.0
    if isinstance(message, dict) and message.get("method") == "tools/call":
        params = message.get("params")
        args = params.get("arguments") if isinstance(params, dict) else None
        raw = args.get("wait_seconds") if isinstance(args, dict) else None
        if isinstance(raw, int | float) and not isinstance(raw, bool) and raw > 0:
            wait = min(float(raw), 3600.0)
    return answer_timeout() + wait


class Bridge:
    """One MCP client on stdio, one gateway session on its behalf."""

    def __init__(self, client: GatewayClient, write: Callable[[Any], None]) -> None:
        self.client = client
        self.write = write
        self.session: str | None = None
        self.version: str | None = None
        self._initialize: dict[str, Any] | None = None  # the client's, to replay
        self._tasks: set[asyncio.Task[None]] = set()

    async def handle_line(self, line: str) -> None:
        if not line.strip():
            return
        try:
            message = json.loads(line)
        except ValueError:
            self.write(rpc_error(None, PARSE_ERROR, "parse error: the line is not JSON"))
            return
        if isinstance(message, dict) and message.get("method") == "initialize":
            await self._run(message)  # everything after it needs its session
            return
        task = asyncio.get_running_loop().create_task(self._run(message))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        """Let requests in flight finish (briefly), then end the gateway session."""
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=DRAIN_SECONDS)
            for task in pending:
                task.cancel()
        if self.session is not None:
            try:
                async with self.client.session.delete(
                        self.client.base_url + "/mcp", headers=self._headers(),
                        timeout=aiohttp.ClientTimeout(total=5)):
                    pass
            except (aiohttp.ClientError, OSError, TimeoutError, CspError):
                pass  # the gateway forgets it at its restart anyway

    async def _run(self, message: Any) -> None:
        answer = await self.forward(message)
        if answer is not None:
            self.write(answer)

    async def forward(self, message: Any) -> Any:
        """The answer to write back for ``message`` (None: nothing to write)."""
        rid = request_id(message)
        try:
            status, body = await self._post(message)
            if status == 404 and self._initialize is not None and not _is_init(message):
                await self._reinitialize()  # the gateway restarted: a new session
                status, body = await self._post(message)
        except (aiohttp.ClientConnectionError, FileNotFoundError, ConnectionError) as exc:
            return rpc_error(rid, SERVER_ERROR, self.client.unavailable(exc).message) \
                if rid is not None else None
        except TimeoutError:
            return rpc_error(rid, SERVER_ERROR,
                             f"the csp gateway at {self.client.address} did not answer "
                             f"within {time_allowed(message):g}s; try again") \
                if rid is not None else None
        except (CspError, ValueError) as exc:
            reason = exc.message if isinstance(exc, CspError) else str(exc)
            return rpc_error(rid, SERVER_ERROR, f"csp gateway: {reason}") \
                if rid is not None else None
        if _is_init(message) and status == 200 and isinstance(body, dict):
            self._initialize = message
            result = body.get("result")
            if isinstance(result, dict):
                self.version = str(result.get("protocolVersion") or "") or None
        if status == 202 or body is None:
            return None
        if isinstance(body, dict | list) and (isinstance(body, list) or "jsonrpc" in body):
            if isinstance(body, dict) and body.get("id") is None and rid is not None:
                body = {**body, "id": rid}  # an HTTP-level refusal, for this request
            return body
        reason = str(body.get("message") or "") if isinstance(body, dict) else ""
        return rpc_error(rid, SERVER_ERROR, f"csp gateway: {reason or f'HTTP {status}'}") \
            if rid is not None else None

    async def _post(self, message: Any) -> tuple[int, Any]:
        status, body = await self._post_once(message)
        if status == 401 and self.client.refresh_token():
            # `cspctl token --rotate` while we run: a 401 did nothing, so send again
            status, body = await self._post_once(message)
        return status, body

    async def _post_once(self, message: Any) -> tuple[int, Any]:
        headers = self._headers()
        if _is_init(message):
            headers.pop(SESSION_HEADER, None)
            headers.pop(VERSION_HEADER, None)
        async with self.client.session.post(
                self.client.base_url + "/mcp", json=message, headers=headers,
                timeout=aiohttp.ClientTimeout(total=time_allowed(message))) as resp:
            if _is_init(message) and resp.status == 200:
                self.session = resp.headers.get(SESSION_HEADER, self.session)
            if resp.status == 202:
                return 202, None
            text = await resp.text()
            return resp.status, json.loads(text) if text.strip() else None

    def _headers(self) -> dict[str, str]:
        headers = self.client.headers()
        headers["Accept"] = "application/json, text/event-stream"
        if self.session:
            headers[SESSION_HEADER] = self.session
        if self.version:
            headers[VERSION_HEADER] = self.version
        return headers

    async def _reinitialize(self) -> None:
        assert self._initialize is not None
        self.session = None
        status, _ = await self._post(self._initialize)
        if status == 200:
            await self._post({"jsonrpc": "2.0", "method": "notifications/initialized"})


def _is_init(message: Any) -> bool:
    return isinstance(message, dict) and message.get("method") == "initialize"


def write_line(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False) + "\n")
    sys.stdout.flush()
