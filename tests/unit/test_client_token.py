"""A long-lived GatewayClient picks up a rotated token (issue #10), against a real server."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from csp_core.auth import rotate_token
from csp_core.client import GatewayClient
from csp_core.endpoint import AGENT_TOKEN_ENV
from csp_core.errors import Unauthorized


class Server:
    """Accepts exactly the token in the file right now; counts what it saw."""

    def __init__(self, token_file: Path) -> None:
        self.token_file = token_file
        self.seen: list[str] = []

    async def health(self, request: web.Request) -> web.Response:
        sent = request.headers.get("Authorization", "").removeprefix("Bearer ")
        self.seen.append(sent)
        if sent != self.token_file.read_text().strip():
            return web.json_response({"error": "unauthorized", "message": "wrong token"},
                                     status=401)
        return web.json_response({"ok": True})


@pytest.fixture
def token_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv(AGENT_TOKEN_ENV, raising=False)
    path = tmp_path / "token"
    path.write_text("first\n")
    return path


@pytest.fixture
async def server(tmp_path: Path, token_file: Path) -> AsyncIterator[tuple[Server, str]]:
    srv = Server(token_file)
    app = web.Application()
    app.router.add_get("/v1/health", srv.health)
    runner = web.AppRunner(app)
    await runner.setup()
    sock = str(tmp_path / "gw.sock")
    await web.UnixSite(runner, sock).start()
    try:
        yield srv, sock
    finally:
        await runner.cleanup()


async def test_a_rotation_is_picked_up_at_the_next_request(
        server: tuple[Server, str], token_file: Path) -> None:
    srv, sock = server
    async with GatewayClient(sock, token_path=token_file) as client:
        assert (await client.health())["ok"]
        new = rotate_token(token_file)
        assert (await client.health())["ok"]
    assert srv.seen == ["first", new]  # no refused attempt: the file's change was seen


async def test_a_rotation_racing_the_request_is_retried_once(
        server: tuple[Server, str], token_file: Path) -> None:
    srv, sock = server
    async with GatewayClient(sock, token_path=token_file) as client:
        assert (await client.health())["ok"]
        # rewritten in place with its old timestamp: nothing for a stat to see
        st = token_file.stat()
        token_file.write_text("second\n")
        os.utime(token_file, ns=(st.st_atime_ns, st.st_mtime_ns))
        assert (await client.health())["ok"]
    assert srv.seen == ["first", "first", "second"]


async def test_a_briefly_missing_file_keeps_the_token(
        server: tuple[Server, str], token_file: Path) -> None:
    _, sock = server
    async with GatewayClient(sock, token_path=token_file) as client:
        assert client.token() == "first"
        token_file.unlink()
        assert client.token() == "first"
        token_file.write_text("first\n")
        assert (await client.health())["ok"]


async def test_a_token_given_by_the_caller_is_never_replaced(
        server: tuple[Server, str], token_file: Path) -> None:
    srv, sock = server
    async with GatewayClient(sock, token="mine", token_path=token_file) as client:
        with pytest.raises(Unauthorized):
            await client.health()
        client.use_credential("agent.x.y")
        rotate_token(token_file)
        assert client.token() == "agent.x.y"
    assert srv.seen == ["mine"]
