"""Presence over a real session bus: a real ``cspd`` watching a private dbus-daemon.

Stand-in sidecars are processes (tests/tools/bus_agent.py) that export the
real D-Bus service over a fake control and own ``io.csp.Agent.<name>``; they
are SIGKILLed to check that the gateway notices at once.  Also covers
``cspctl agents``/``pause``/``resume``/``interrupt`` over the bus and the
fallbacks when there is no bus.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from csp_core.client import GatewayClient
from tests.conftest import REPO, CspEnv, GatewayProcess
from tests.dbus_bus import PrivateBus
from tests.polling import async_wait_for, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def on_bus(csp_env: CspEnv, bus: PrivateBus) -> CspEnv:
    """csp_env whose processes (cspd, cspctl, stand-ins) all use the private bus."""
    csp_env.env["DBUS_SESSION_BUS_ADDRESS"] = bus.address
    return csp_env


@pytest.fixture
def off_bus(csp_env: CspEnv) -> CspEnv:
    """csp_env without any session bus (and none at $XDG_RUNTIME_DIR/bus)."""
    csp_env.env.pop("DBUS_SESSION_BUS_ADDRESS", None)
    return csp_env


class StandIns:
    """Stand-in sidecars on the bus, killed by pid in teardown."""

    def __init__(self, env: CspEnv) -> None:
        self.env = env
        self.procs: list[subprocess.Popen[str]] = []

    def start(self, name: str, room: str = "lobby") -> subprocess.Popen[str]:
        proc = subprocess.Popen([sys.executable, "-m", "tests.tools.bus_agent", name, room],
                                cwd=REPO, env=self.env.env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.procs.append(proc)
        assert proc.stdout is not None
        line = proc.stdout.readline()  # "ready <bus name>", or EOF if it failed
        assert line.startswith("ready "), (line, proc.wait(10), proc.stderr and proc.stderr.read())
        return proc

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(10)
            for stream in (proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()


@pytest.fixture
def stand_ins(csp_env: CspEnv) -> Iterator[StandIns]:
    s = StandIns(csp_env)
    yield s
    s.stop_all()


@pytest.fixture
def bus_gateway(on_bus: CspEnv) -> Iterator[GatewayProcess]:
    gw = GatewayProcess(on_bus)
    try:  # stop() also when start() times out, so no cspd outlives the test
        gw.start()
        yield gw
    finally:
        gw.stop()


def system_lines(env: CspEnv, room: str | None = None) -> list[str]:
    args = ["history", "--json"] + (["--room", room] if room else [])
    r = env.cspctl(*args)
    assert r.returncode == 0, r.stderr
    return [m["content"] for m in json.loads(r.stdout) if m["kind"] == "system"]


def gateway_agents(env: CspEnv) -> dict[str, dict[str, Any]]:
    r = env.run("curl", "-sf", "--unix-socket", str(env.socket), "-H",
                f"Authorization: Bearer {env.token_file.read_text().strip()}",
                "http://localhost/v1/agents")
    assert r.returncode == 0, r.stderr
    return {a["name"]: a for a in json.loads(r.stdout)["agents"]}


def health_status(env: CspEnv) -> str:
    r = env.cspctl("gateway", "status", "--json")
    return str(json.loads(r.stdout)["health"]["status"])


def busctl_prop(bus: PrivateBus, dest: str, name: str) -> str:
    r = bus.busctl("get-property", dest, "/io/csp/Agent", "io.csp.Agent1", name)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def test_join_and_leave_follow_the_bus_name_even_on_sigkill(
        on_bus: CspEnv, bus_gateway: GatewayProcess, stand_ins: StandIns) -> None:
    agent = stand_ins.start("claude", "lobby")
    wait_for(lambda: "claude joined #lobby" in system_lines(on_bus, "lobby"),
             what="the join message")
    row = gateway_agents(on_bus)["claude"]
    assert row["on_bus"] and row["online"]
    assert row["dbus_name"] == "io.csp.Agent.claude"
    assert (row["state"], row["pid"], row["room"]) == ("ready", 4242, "lobby")
    assert health_status(on_bus).startswith("1 agent online")  # counted though not connected

    agent.send_signal(signal.SIGKILL)
    wait_for(lambda: "claude left" in system_lines(on_bus, "lobby"), what="the leave message")
    assert health_status(on_bus).startswith("0 agents online")
    assert system_lines(on_bus, "lobby").count("claude joined #lobby") == 1
    assert "claude" not in gateway_agents(on_bus)  # never registered over the stream


def test_agents_already_on_the_bus_join_when_the_gateway_starts(
        on_bus: CspEnv, stand_ins: StandIns) -> None:
    stand_ins.start("early-bird", "dev")
    gw = GatewayProcess(on_bus)
    try:
        gw.start()
        wait_for(lambda: "early-bird joined #dev" in system_lines(on_bus, "dev"),
                 what="the join of an agent that was there first")
    finally:
        gw.stop()


async def test_stream_connection_posts_no_duplicate_joins_while_the_bus_is_up(
        on_bus: CspEnv, bus_gateway: GatewayProcess, stand_ins: StandIns) -> None:
    async with GatewayClient(str(on_bus.socket), token_path=on_bus.token_file) as client:
        ws = await client.stream(agent="codex", room="lobby")
        hello = await ws.receive_json(timeout=10)
        assert hello["type"] == "hello"
        stand_ins.start("codex", "lobby")

        await async_wait_for(lambda: _has(client, "codex joined #lobby"),
                             what="the join message")
        await ws.close()
        stand_ins.stop_all()
        await async_wait_for(lambda: _has(client, "codex left"), what="the leave message")
        lines = [m.content for m in await client.history(room="lobby") if m.kind == "system"]
    assert lines == ["codex joined #lobby", "codex left"]
    status = on_bus.cspctl("gateway", "status", "--json")
    assert "falls back" not in status.stdout


def test_without_a_bus_presence_falls_back_to_connections(off_bus: CspEnv) -> None:
    gw = GatewayProcess(off_bus)
    try:
        gw.start()
        status = json.loads(off_bus.cspctl("gateway", "status", "--json").stdout)
        assert "presence falls back to connections" in json.dumps(status)

        async def connect_and_leave() -> None:
            async with GatewayClient(str(off_bus.socket), token_path=off_bus.token_file) as c:
                ws = await c.stream(agent="gemini", room="lobby")
                assert (await ws.receive_json(timeout=10))["type"] == "hello"
                await async_wait_for(lambda: _has(c, "gemini joined #lobby"), what="join")
                await ws.close()
                await async_wait_for(lambda: _has(c, "gemini left"), what="leave")

        asyncio.run(connect_and_leave())
        # cspctl's control verbs go through the gateway without a bus
        r = off_bus.cspctl("pause", "ghost")
        assert r.returncode == 5 and "ghost" in r.stderr and "io.csp" not in r.stderr
    finally:
        gw.stop()


async def _has(client: GatewayClient, text: str) -> bool:
    return text in [m.content for m in await client.history(room="lobby") if m.kind == "system"]


def test_cspctl_agents_and_control_verbs_over_the_bus(
        on_bus: CspEnv, bus: PrivateBus, bus_gateway: GatewayProcess,
        stand_ins: StandIns) -> None:
    stand_ins.start("aider-2", "lobby")
    dest = "io.csp.Agent.aider_2"
    r = on_bus.cspctl("agents", "--json")
    assert r.returncode == 0, r.stderr
    rows = {a["name"]: a for a in json.loads(r.stdout)}
    assert rows["aider-2"]["dbus_name"] == dest
    assert (rows["aider-2"]["state"], rows["aider-2"]["queue"], rows["aider-2"]["pid"]) == \
        ("ready", 0, 4242)
    table = on_bus.cspctl("agents")
    assert dest in table.stdout and "DBUS" in table.stdout

    r = on_bus.cspctl("pause", "aider-2")
    assert r.returncode == 0, r.stderr
    assert dest in r.stderr
    assert busctl_prop(bus, dest, "State") == 's "paused"'
    rows = {a["name"]: a for a in json.loads(on_bus.cspctl("agents", "--json").stdout)}
    assert rows["aider-2"]["state"] == "paused"
    # the gateway follows PropertiesChanged too
    wait_for(lambda: gateway_agents(on_bus)["aider-2"]["state"] == "paused",
             what="the gateway to see the paused state")
    assert on_bus.cspctl("resume", "aider-2").returncode == 0
    assert busctl_prop(bus, dest, "State") == 's "ready"'
    assert on_bus.cspctl("interrupt", "aider-2").returncode == 0

    # '-' and '_' map to the same bus name; the other spelling is not that agent
    r = on_bus.cspctl("pause", "aider_2")
    assert r.returncode == 5 and "belongs to agent 'aider-2'" in r.stderr
    r = on_bus.cspctl("interrupt", "nobody")
    assert r.returncode == 5
    assert "io.csp.Agent.nobody" in r.stderr and "Traceback" not in r.stderr


def test_cspctl_agents_lists_the_bus_when_the_gateway_is_down(
        on_bus: CspEnv, stand_ins: StandIns) -> None:
    stand_ins.start("solo")
    r = on_bus.cspctl("agents", "--json")
    assert r.returncode == 0, r.stderr
    assert "gateway is not running" in r.stderr
    [row] = json.loads(r.stdout)
    assert (row["name"], row["dbus_name"], row["on_bus"]) == ("solo", "io.csp.Agent.solo", True)
