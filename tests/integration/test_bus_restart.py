"""A session bus that restarts under a running gateway and running sidecars (issue #10).

Before, nobody came back: 0 of 3 agents' names were on the new bus after 15 s,
so ``cspctl pause`` failed for agents that were plainly online, and the gateway
stayed on connection-based presence for good.  Here a real dbus-daemon on a
fixed path is killed and started again at the same address, under a real
gateway, a real ``csp-sidecar`` and two stand-ins running the sidecar's D-Bus
service.  Also: only the bus daemon's own ``NameOwnerChanged`` counts.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path
from typing import Any

import pytest
from dbus_fast import Message, MessageType
from dbus_fast.aio import MessageBus

from cspd.presence import REJOIN_GRACE
from tests.conftest import CspEnv, GatewayProcess, require
from tests.integration.test_presence import StandIns, gateway_agents, system_lines
from tests.integration.test_sidecar import start_fake
from tests.polling import wait_for
from tests.tmuxtest import TmuxServer
from tests.usermanager import wait_gone

# they share one isolated systemd --user, and `make test` runs them on their own (see Makefile)
pytestmark = [pytest.mark.integration, pytest.mark.systemd]

STAND_INS = ("alpha", "beta")
SIDECAR = "fa"  # the real csp-sidecar (tests/integration/test_sidecar.py's fake agent)


class RestartableBus:
    """A dbus-daemon at a fixed ``unix:path=`` address that can be killed and started again."""

    def __init__(self, path: Path) -> None:
        self.path = path
        # no guid= in the address: clients must accept the next daemon at the same path
        self.address = f"unix:path={path}"
        self.pid = 0

    def start(self) -> None:
        out = subprocess.run(
            ["dbus-daemon", "--session", "--fork", "--nopidfile", "--print-pid=1",
             f"--address={self.address}"],
            text=True, capture_output=True, timeout=10, check=True).stdout
        self.pid = int(out.split()[0])

    def kill(self) -> None:
        if self.pid:
            with suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            wait_gone(self.pid)
            self.pid = 0

    def busctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["busctl", f"--address={self.address}", "--no-pager", *args],
                              text=True, capture_output=True, timeout=10, check=False)

    def names(self) -> set[str]:
        r = self.busctl("list", "--acquired")
        return {line.split()[0] for line in r.stdout.splitlines()[1:] if line.strip()}


@pytest.fixture
def restartable_bus(tmp_path: Path) -> Iterator[RestartableBus]:
    require(shutil.which("dbus-daemon") is not None and shutil.which("busctl") is not None,
            "dbus-daemon and busctl are needed")
    bus = RestartableBus(tmp_path / "bus")
    bus.start()
    try:
        yield bus
    finally:
        bus.kill()


@pytest.fixture
def on_bus(csp_env: CspEnv, restartable_bus: RestartableBus, tmp_path: Path) -> CspEnv:
    csp_env.env["DBUS_SESSION_BUS_ADDRESS"] = restartable_bus.address
    csp_env.env["FAKECLI_LOG"] = str(tmp_path / "fake_cli.log")
    csp_env.env["FAKECLI_THINK"] = "0.2"
    return csp_env


@pytest.fixture
def watching(on_bus: CspEnv) -> Iterator[GatewayProcess]:
    gw = GatewayProcess(on_bus)
    try:
        gw.start()
        yield gw
    finally:
        gw.stop()


@pytest.fixture
def stand_ins(on_bus: CspEnv) -> Iterator[StandIns]:
    s = StandIns(on_bus)
    yield s
    s.stop_all()


def presence_status(env: CspEnv) -> str:
    r = env.cspctl("gateway", "status", "--json")
    return str(json.loads(r.stdout)["health"]["status"])


def bus_name(agent: str) -> str:
    return f"io.csp.Agent.{agent}"


def test_sidecars_and_the_gateway_rejoin_a_restarted_bus(
        on_bus: CspEnv, restartable_bus: RestartableBus, watching: GatewayProcess,
        stand_ins: StandIns, tmux: TmuxServer) -> None:
    bus = restartable_bus
    for name in STAND_INS:
        stand_ins.start(name, "lobby")
    gone = stand_ins.start("gamma", "lobby")  # dies while the bus is away
    start_fake(on_bus, tmux)
    agents = (*STAND_INS, SIDECAR)
    wait_for(lambda: {bus_name(a) for a in (*agents, "gamma")} <= bus.names(),
             what="every agent on the bus")
    wait_for(lambda: all(f"{a} joined #lobby" in system_lines(on_bus, "lobby")
                         for a in (*STAND_INS, "gamma")), what="the joins")

    bus.kill()
    wait_for(lambda: "falls back" in presence_status(on_bus),
             what="the gateway to notice the bus is gone")
    gone.send_signal(signal.SIGKILL)
    gone.wait(10)

    restarted = time.monotonic()
    bus.start()
    wait_for(lambda: {bus_name(a) for a in agents} <= bus.names(), timeout=15,
             what="all three names back on the new bus")
    took = time.monotonic() - restarted
    wait_for(lambda: "falls back" not in presence_status(on_bus),
             what="the gateway back on the bus")

    def rows_on_bus() -> dict[str, Any] | None:
        rows = gateway_agents(on_bus)
        return rows if all(rows.get(a, {}).get("on_bus") for a in agents) else None
    wait_for(rows_on_bus, what="the gateway to see every agent on the new bus")

    # control over the bus works again, and the gateway follows the new connections
    for agent in (STAND_INS[0], SIDECAR):
        r = on_bus.cspctl("pause", agent)
        assert r.returncode == 0, r.stderr
        assert bus_name(agent) in r.stderr
        wait_for(lambda a=agent: gateway_agents(on_bus)[a]["state"] == "paused",  # type: ignore[misc]
                 what=f"the gateway to see {agent} paused")
        assert on_bus.cspctl("resume", agent).returncode == 0

    # coming back is not news; the one that died meanwhile is posted as gone
    wait_for(lambda: "gamma left" in system_lines(on_bus, "lobby"), timeout=REJOIN_GRACE + 15,
             what="the agent that died during the outage to be posted as gone")
    lines = system_lines(on_bus, "lobby")
    for agent in STAND_INS:
        assert lines.count(f"{agent} joined #lobby") == 1, lines
        assert f"{agent} left" not in lines, lines
    main = system_lines(on_bus, "main")
    assert main.count(f"{SIDECAR} joined #main") <= 1, main
    assert f"{SIDECAR} left" not in main, main
    assert took < 15


async def _spoof(address: str, destination: str | None, name: str) -> None:
    """Send a NameOwnerChanged look-alike from an ordinary client."""
    bus = await MessageBus(bus_address=address).connect()
    try:
        await bus.send(Message(
            message_type=MessageType.SIGNAL, destination=destination,
            path="/org/freedesktop/DBus", interface="org.freedesktop.DBus",
            member="NameOwnerChanged", signature="sss", body=[name, "", bus.unique_name]))
        # a round trip: the daemon has routed the signal before we go
        await bus.call(Message(destination="org.freedesktop.DBus", path="/org/freedesktop/DBus",
                               interface="org.freedesktop.DBus", member="GetId"))
    finally:
        bus.disconnect()


def _unique_name_of(bus: RestartableBus, pid: int) -> str:
    for line in bus.busctl("list").stdout.splitlines()[1:]:
        fields = line.split()
        if len(fields) > 1 and fields[0].startswith(":") and fields[1] == str(pid):
            return fields[0]
    raise AssertionError(f"pid {pid} has no connection on the bus")


def test_only_the_bus_daemon_speaks_for_name_owners(
        on_bus: CspEnv, restartable_bus: RestartableBus, watching: GatewayProcess,
        stand_ins: StandIns) -> None:
    assert watching.proc is not None
    pid = watching.proc.pid
    gateway_name = wait_for(lambda: _unique_name_of(restartable_bus, pid),
                            what="the gateway's connection")
    asyncio.run(_spoof(restartable_bus.address, gateway_name, bus_name("mallory")))
    asyncio.run(_spoof(restartable_bus.address, None, bus_name("trudy")))
    # a real join after the fakes: events are handled in order, so once it is posted,
    # the fakes would have been too
    stand_ins.start("honest", "lobby")
    wait_for(lambda: "honest joined #lobby" in system_lines(on_bus, "lobby"),
             what="the real join")
    everything = system_lines(on_bus)
    assert not [line for line in everything if "mallory" in line or "trudy" in line]
    rows = gateway_agents(on_bus)
    assert "mallory" not in rows and "trudy" not in rows
    assert presence_status(on_bus).startswith("1 agent online")


def test_a_gateway_started_before_the_bus_picks_it_up(
        on_bus: CspEnv, restartable_bus: RestartableBus, stand_ins: StandIns) -> None:
    restartable_bus.kill()
    gw = GatewayProcess(on_bus)
    try:
        gw.start()
        assert "falls back" in presence_status(on_bus)
        restartable_bus.start()
        stand_ins.start("late", "lobby")
        wait_for(lambda: "late joined #lobby" in system_lines(on_bus, "lobby"),
                 what="a join on the bus that came after the gateway")
        assert "falls back" not in presence_status(on_bus)
    finally:
        gw.stop()
