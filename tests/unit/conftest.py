"""In-process gateway for unit tests: the real app, a real Store in tmp, no sockets
but the test server's loopback port."""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from csp_core.auth import ensure_token
from csp_core.config import GatewayConfig
from cspd.app import create_app
from cspd.gateway import Gateway, open_gateway

# generous limits so tests never trip the rate limiter by accident
TEST_CONFIG = GatewayConfig(rate_per_second=1e6, rate_burst=1_000_000)


@dataclass
class Api:
    """A test client bound to a running in-process gateway."""

    client: TestClient[Any, Any]
    gw: Gateway
    token: str
    token_path: Path

    def headers(self, agent: str | None = None, **extra: str) -> dict[str, str]:
        h = {"Authorization": f"Bearer {self.token}", **extra}
        if agent:
            h["X-CSP-Agent"] = agent
        return h


async def start_api(tmp_path: Path, config: GatewayConfig = TEST_CONFIG) -> Api:
    token_path = tmp_path / "run" / "csp" / "token"
    token = ensure_token(token_path)
    gw = open_gateway(config, tmp_path / "state" / "csp.sqlite3", token_path)
    await gw.store.open()
    await gw.router.load()
    client: TestClient[Any, Any] = TestClient(TestServer(create_app(gw)))
    await client.start_server()
    return Api(client, gw, token, token_path)


async def stop_api(api: Api) -> None:
    await api.client.close()
    await api.gw.store.close()


@pytest.fixture
def notify_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> socket.socket:
    """A systemd notify socket the code under test sends to (non-blocking: see datagrams)."""
    path = tmp_path / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.setblocking(False)
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    return sock


def datagrams(sock: socket.socket) -> list[str]:
    """Everything sent to ``notify_socket`` so far, in order."""
    out = []
    while True:
        try:
            out.append(sock.recv(4096).decode())
        except BlockingIOError:
            return out


@pytest.fixture
async def api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Api]:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    # sealed off from the developer's real session bus: presence falls back to connections
    monkeypatch.delenv("DBUS_SESSION_BUS_ADDRESS", raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    a = await start_api(tmp_path)
    try:
        yield a
    finally:
        await stop_api(a)


def config(**kw: Any) -> GatewayConfig:
    return replace(TEST_CONFIG, **kw)


@pytest.fixture
def fsynced(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The paths fsynced from now on, in order (each fsync still happens)."""
    paths: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        paths.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return paths
