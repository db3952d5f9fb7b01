"""Helpers for the HTTP-edge tests (issue #10): a gateway on real sockets, raw HTTP.

``EdgeGateway`` runs the real app behind the real listeners (:func:`cspd.edge.start_http`)
in the test's own event loop, on a unix socket in tmp and on 127.0.0.1:0, so a test
can shorten the deadlines and look inside (connections per listener, tasks).
``TcpGatewayProcess`` is a real ``cspd --tcp`` process.  ``read_response`` parses
what came back on a raw socket, so the tests see exactly what a client would.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import resource
import socket
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from csp_core.auth import ensure_token
from csp_core.config import GatewayConfig
from cspd.activation import ConnectionCaps, Listener, bind_tcp, bind_unix
from cspd.app import create_app
from cspd.edge import GuardedSite, start_http
from cspd.gateway import Gateway, HttpLimits, open_gateway
from tests.conftest import CspEnv, GatewayProcess
from tests.polling import wait_for

# generous rate limits: these tests are about connections, not the limiter
EDGE_CONFIG = GatewayConfig(rate_per_second=1e6, rate_burst=1_000_000)


def fd_count(pid: int | str = "self") -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


@dataclass
class EdgeGateway:
    """The gateway's app and listeners, in-process, on real sockets."""

    gw: Gateway
    runner: web.AppRunner
    sites: list[GuardedSite]
    socket_path: Path
    port: int
    token: str

    @classmethod
    async def start(cls, root: Path, limits: HttpLimits | None = None,
                    caps: ConnectionCaps | None = None) -> EdgeGateway:
        run = root / "run" / "csp"
        token = ensure_token(run / "token")
        gw = open_gateway(EDGE_CONFIG, root / "state" / "csp.sqlite3", run / "token")
        if limits is not None:
            gw.http = limits
        await gw.store.open()
        await gw.router.load()
        listeners: list[Listener] = [bind_unix(run / "gateway.sock"), bind_tcp(0)]
        port = int(listeners[1].sock.getsockname()[1])
        app = create_app(gw, port)
        runner, sites = await start_http(app, listeners,
                                         caps or ConnectionCaps(unix=1024, tcp=256))
        return cls(gw, runner, sites, run / "gateway.sock", port, token)

    async def stop(self) -> None:
        await self.runner.cleanup()
        await self.gw.store.close()

    @property
    def unix_site(self) -> GuardedSite:
        return next(s for s in self.sites if s.family == socket.AF_UNIX)

    @property
    def tcp_site(self) -> GuardedSite:
        return next(s for s in self.sites if s.family != socket.AF_UNIX)

    def auth(self) -> bytes:
        return f"Authorization: Bearer {self.token}\r\n".encode()

    async def open(self, tcp: bool = False) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if tcp:
            return await asyncio.open_connection("127.0.0.1", self.port)
        return await asyncio.open_unix_connection(str(self.socket_path))

    async def exchange(self, raw: bytes, tcp: bool = False, timeout: float = 10.0) -> Reply:
        """Send ``raw`` on a new connection; read until the gateway closes it (or
        ``timeout``); parse what came back."""
        reader, writer = await self.open(tcp)
        try:
            writer.write(raw)
            data = await read_until_closed(reader, timeout)
        finally:
            writer.close()
        return parse_reply(data)


async def read_until_closed(reader: asyncio.StreamReader, timeout: float) -> bytes:
    data = b""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        try:
            chunk = await asyncio.wait_for(reader.read(65536), deadline - loop.time())
        except (TimeoutError, ConnectionError):
            break
        if not chunk:
            break
        data += chunk
    return data


# -- parsing raw HTTP answers ---------------------------------------------------

STATUS_LINE = re.compile(rb"HTTP/1\.[01] (\d{3})(?: [^\r\n]*)?")


class Malformed(AssertionError):
    pass


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Reply:
    """Every response that came back on one connection, in order (1xx included)."""

    responses: list[Response] = field(default_factory=list)
    rest: bytes = b""  # bytes after the last complete response (e.g. WebSocket frames)

    @property
    def final(self) -> list[Response]:
        return [r for r in self.responses if r.status >= 200]

    @property
    def first(self) -> Response:
        assert self.final, f"no response: {self.rest[:200]!r}"
        return self.final[0]


def parse_reply(data: bytes, head_only: bool = False) -> Reply:
    """Split ``data`` into HTTP/1.x responses; raise :class:`Malformed` on anything
    that is not a well-formed response.  ``head_only``: the first final response has
    no body (the answer to HEAD)."""
    reply = Reply()
    while data:
        end = data.find(b"\r\n\r\n")
        if end < 0:
            raise Malformed(f"incomplete response head: {data[:200]!r}")
        lines = data[:end].split(b"\r\n")
        m = STATUS_LINE.fullmatch(lines[0])
        if m is None:
            raise Malformed(f"bad status line: {lines[0][:200]!r}")
        status = int(m.group(1))
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if not sep or not name or name != name.strip():
                raise Malformed(f"bad header line: {line[:200]!r}")
            headers[name.decode("latin-1").lower()] = value.strip().decode("latin-1")
        data = data[end + 4:]
        if status == 101:  # switched protocols: what follows is WebSocket frames
            reply.responses.append(Response(status, headers, b""))
            reply.rest = data
            return reply
        body = b""
        if 100 <= status < 200 or status in (204, 304) or (head_only and not reply.final):
            pass
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            body, data = _dechunk(data)
        elif "content-length" in headers:
            length = int(headers["content-length"])
            if len(data) < length:
                raise Malformed(f"body shorter than Content-Length {length}: {data[:200]!r}")
            body, data = data[:length], data[length:]
        else:  # delimited by the end of the connection
            body, data = data, b""
        reply.responses.append(Response(status, headers, body))
    return reply


def _dechunk(data: bytes) -> tuple[bytes, bytes]:
    body = b""
    while True:
        end = data.find(b"\r\n")
        if end < 0:
            raise Malformed("incomplete chunked body")
        size = int(data[:end].split(b";")[0], 16)
        data = data[end + 2:]
        if size == 0:
            trailer_end = data.find(b"\r\n")
            return body, data[trailer_end + 2:]
        body, data = body + data[:size], data[size + 2:]


def assert_json_error(resp: Response, mcp: bool = False) -> dict[str, Any]:
    """The documented error body: ``{"error": str, "message": str, ...}``; for ``/mcp``
    a JSON-RPC error object is the protocol's own shape and is accepted too."""
    assert resp.headers.get("content-type", "").startswith("application/json"), resp
    body = json.loads(resp.body)
    assert isinstance(body, dict), body
    if mcp and isinstance(body.get("error"), dict) and "jsonrpc" in body:
        assert isinstance(body["error"].get("message"), str), body
        return body
    assert isinstance(body.get("error"), str) and isinstance(body.get("message"), str), body
    return body


# -- a real cspd with its TCP listener -----------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class TcpGatewayProcess(GatewayProcess):
    """``cspd --tcp`` on a free loopback port, optionally under a file limit."""

    def __init__(self, env: CspEnv, nofile: int | None = None) -> None:
        super().__init__(env)
        self.port = free_port()
        self.nofile = nofile
        env.config.parent.mkdir(parents=True, exist_ok=True)
        env.config.write_text(f"[gateway]\ntcp_port = {self.port}\n"
                              "rate_per_second = 100000.0\nrate_burst = 1000000\n")

    def start(self) -> None:
        preexec: Callable[[], None] | None = None
        if self.nofile is not None:
            limit = self.nofile

            def preexec() -> None:  # systemd's soft limit, with no room to raise it
                resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

        with open(self.log, "a") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "cspd", "--tcp"],
                                         env=self.env.env, stdout=log,
                                         stderr=subprocess.STDOUT, text=True,
                                         start_new_session=True, preexec_fn=preexec)
        wait_for(lambda: self.env.socket.exists() and self.env.token_file.exists()
                 and self._answers(), what="cspd to serve")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def token(self) -> str:
        return self.env.token_file.read_text().strip()
