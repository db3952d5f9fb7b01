"""A private D-Bus session bus per test module (a real dbus-daemon, killed in teardown)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass

import pytest


@dataclass
class PrivateBus:
    address: str
    pid: int

    def env(self, base: dict[str, str]) -> dict[str, str]:
        return {**base, "DBUS_SESSION_BUS_ADDRESS": self.address}

    def busctl(self, *args: str, timeout: float = 10) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["busctl", f"--address={self.address}", *args], text=True,
                              capture_output=True, timeout=timeout, check=False)


def have_dbus_daemon() -> bool:
    return shutil.which("dbus-daemon") is not None


@contextmanager
def private_bus() -> Iterator[PrivateBus]:
    """Start ``dbus-daemon --session --fork``; yield its address; kill it by pid."""
    out = subprocess.run(
        ["dbus-daemon", "--session", "--fork", "--nopidfile",
         "--print-address=1", "--print-pid=1"],
        text=True, capture_output=True, timeout=10, check=True).stdout.split("\n")
    bus = PrivateBus(address=out[0].strip(), pid=int(out[1].strip()))
    try:
        yield bus
    finally:
        with suppress(ProcessLookupError):
            os.kill(bus.pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def bus() -> Iterator[PrivateBus]:
    """A private session bus for a test module (skips, or fails in CI, without dbus)."""
    from tests.conftest import require

    require(have_dbus_daemon() and shutil.which("busctl") is not None,
            "dbus-daemon and busctl are needed")
    with private_bus() as b:
        yield b
