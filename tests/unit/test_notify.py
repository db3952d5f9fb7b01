"""sd_notify through a real datagram socket standing in for systemd's."""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path

import pytest

from cspd.notify import Notifier


@pytest.fixture
def notify_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> socket.socket:
    path = tmp_path / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(5.0)
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    return sock


def received(sock: socket.socket) -> str:
    return sock.recv(4096).decode()


def test_ready_status_reload_stop(notify_socket: socket.socket) -> None:
    n = Notifier()
    n.ready("0 agents online")
    assert received(notify_socket) == "STATUS=0 agents online"
    assert received(notify_socket) == "READY=1"
    n.reloading()
    assert received(notify_socket).startswith("RELOADING=1")
    n.stopping()
    assert received(notify_socket).startswith("STOPPING=1")


async def test_watchdog_pings_from_the_event_loop(notify_socket: socket.socket,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "100000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    n = Notifier()
    interval = n.start_watchdog(asyncio.get_running_loop())
    assert interval == pytest.approx(0.05)
    loop = asyncio.get_running_loop()
    try:
        pings = [await loop.run_in_executor(None, received, notify_socket) for _ in range(3)]
    finally:
        n.stop_watchdog()
    assert pings == ["WATCHDOG=1"] * 3


def test_no_watchdog_for_another_pid(notify_socket: socket.socket,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "100000")
    monkeypatch.setenv("WATCHDOG_PID", "1")
    loop = asyncio.new_event_loop()
    try:
        assert Notifier().start_watchdog(loop) is None
    finally:
        loop.close()
