"""The sidecar's ``io.csp.Agent1`` object on a real (private) session bus.

The interface is exported over a stand-in control (tests/fake_agent.py) and
checked with real clients: ``busctl`` for introspection, properties and
method calls, ``gdbus monitor`` and a dbus-fast connection for signals.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import subprocess
from collections.abc import AsyncIterator
from typing import Any

import pytest
from dbus_fast import Message, MessageType

from csp_core import sessionbus
from csp_core.busnames import PROPERTIES_MATCH, BusNameTaken, bus_name
from csp_core.errors import BadRequest
from csp_sidecar.dbus_service import AgentBusService, publish, usec
from tests.conftest import require
from tests.dbus_bus import PrivateBus, private_bus
from tests.fake_agent import FakeControl
from tests.polling import async_wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
async def agent(bus: PrivateBus) -> AsyncIterator[tuple[FakeControl, AgentBusService]]:
    control = FakeControl(name="claude-1", room="lobby")
    service = AgentBusService(control, bus.address)
    await service.start()
    try:
        yield control, service
    finally:
        await service.stop()


async def busctl(bus: PrivateBus, *args: str) -> subprocess.CompletedProcess[str]:
    """Run busctl without blocking the loop that serves the object under test."""
    proc = await asyncio.create_subprocess_exec(
        "busctl", f"--address={bus.address}", "--no-pager", *args,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode is not None
    return subprocess.CompletedProcess(args, proc.returncode, out.decode(), err.decode())


async def prop(bus: PrivateBus, name: str) -> str:
    r = await busctl(bus, "get-property", "io.csp.Agent.claude_1", "/io/csp/Agent",
                     "io.csp.Agent1", name)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def test_bus_names() -> None:
    assert bus_name("claude") == "io.csp.Agent.claude"
    assert bus_name("claude-1") == "io.csp.Agent.claude_1"


async def test_name_appears_and_interface_introspects(
        bus: PrivateBus, agent: tuple[FakeControl, AgentBusService]) -> None:
    names = await busctl(bus, "list", "--acquired")
    assert "io.csp.Agent.claude_1" in names.stdout, names.stdout + names.stderr
    r = await busctl(bus, "introspect", "io.csp.Agent.claude_1", "/io/csp/Agent")
    assert r.returncode == 0, r.stderr
    members = {line.split()[0]: line.split()[1:] for line in r.stdout.splitlines()
               if line.startswith(".")}
    for method, sig in (("Pause", "-"), ("Resume", "-"), ("Inject", "s"), ("Interrupt", "-")):
        assert members[f".{method}"][:3] == ["method", sig, "-"], r.stdout
    for name, sig in (("Name", "s"), ("Profile", "s"), ("Room", "s"), ("Command", "as"),
                      ("Pid", "u"), ("State", "s"), ("Reason", "s"), ("QueueLength", "u"),
                      ("LastActivity", "t")):
        assert members[f".{name}"][:2] == ["property", sig], r.stdout
        assert "emits-change" in members[f".{name}"], r.stdout
    assert "io.csp.Agent1" in r.stdout and "interface" in r.stdout


async def test_properties_read_back(bus: PrivateBus,
                                    agent: tuple[FakeControl, AgentBusService]) -> None:
    control, _ = agent
    assert await prop(bus, "Name") == 's "claude-1"'
    assert await prop(bus, "Profile") == 's "generic"'
    assert await prop(bus, "Room") == 's "lobby"'
    assert await prop(bus, "Command") == 'as 3 "claude" "--model" "x y"'
    assert await prop(bus, "Pid") == "u 4242"
    assert await prop(bus, "State") == 's "ready"'
    assert await prop(bus, "QueueLength") == "u 0"
    assert await prop(bus, "Reason") == 's ""'
    assert await prop(bus, "LastActivity") == f"t {usec(control.last_activity)}"
    assert usec(control.last_activity) > 1_600_000_000 * 1_000_000


async def test_properties_changed_reaches_a_client(
        bus: PrivateBus, agent: tuple[FakeControl, AgentBusService]) -> None:
    control, service = agent
    client = await sessionbus.connect(bus.address)
    seen: list[tuple[str, dict[str, Any]]] = []

    def on_message(msg: Message) -> None:
        if msg.message_type == MessageType.SIGNAL and msg.member == "PropertiesChanged":
            seen.append((msg.sender or "", sessionbus.unpack(msg.body[1])))

    client.add_message_handler(on_message)
    try:
        await sessionbus.add_match(client, PROPERTIES_MATCH)  # a reply: the rule is in place
        owner = await sessionbus.name_owner(client, service.name)
        control.set_state("busy")
        await async_wait_for(_async(lambda: (owner, {"State": "busy"}) in seen),
                             what="PropertiesChanged State=busy")
        # a listener passing odd values still yields the declared types on the bus
        control._last = 1700000000.5
        control._notify({"LastActivity": 1700000000.5, "Unknown": 1})
        await async_wait_for(
            _async(lambda: (owner, {"LastActivity": 1700000000500000}) in seen),
            what="PropertiesChanged LastActivity in microseconds")
        # the last state is on the wire before the name goes away
        control.set_state("exited")
        await service.stop()
        assert (owner, {"State": "exited"}) in seen
        assert await sessionbus.name_owner(client, service.name) is None
    finally:
        sessionbus.disconnect(client)


async def test_gdbus_monitor_sees_state_changes(
        bus: PrivateBus, agent: tuple[FakeControl, AgentBusService]) -> None:
    require(shutil.which("gdbus") is not None, "gdbus is needed")
    control, _ = agent
    proc = await asyncio.create_subprocess_exec(
        "gdbus", "monitor", "--address", bus.address, "--dest", "io.csp.Agent.claude_1",
        "--object-path", "/io/csp/Agent", stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.stdout is not None
    output = bytearray()

    async def read() -> None:
        assert proc.stdout is not None
        while chunk := await proc.stdout.read(4096):
            output.extend(chunk)

    reader = asyncio.create_task(read())
    try:
        # gdbus subscribes asynchronously: keep changing state until it reports one
        async def busy_seen() -> bool:
            control.set_state("ready")
            control.set_state("busy")
            return b"'State': <'busy'>" in output

        await async_wait_for(busy_seen, what="gdbus monitor to print State busy")
        assert b"io.csp.Agent1" in output and b"PropertiesChanged" in output
    finally:
        proc.kill()
        await proc.wait()
        reader.cancel()


async def test_methods_reach_the_agent(bus: PrivateBus,
                                       agent: tuple[FakeControl, AgentBusService]) -> None:
    control, _ = agent
    base = ("call", "io.csp.Agent.claude_1", "/io/csp/Agent", "io.csp.Agent1")
    r = await busctl(bus, *base, "Pause")
    assert r.returncode == 0, r.stderr
    assert await prop(bus, "State") == 's "paused"'
    assert (await busctl(bus, *base, "Inject", "s", "hello\nthere")).returncode == 0
    assert await prop(bus, "QueueLength") == "u 1"
    assert (await busctl(bus, *base, "Resume")).returncode == 0
    assert (await busctl(bus, *base, "Interrupt")).returncode == 0
    assert control.calls == [("pause",), ("inject", "hello\nthere", "dbus"), ("resume",),
                             ("interrupt",)]
    assert await prop(bus, "State") == 's "ready"'


async def test_a_refused_method_is_a_csp_error_on_the_bus(
        bus: PrivateBus, agent: tuple[FakeControl, AgentBusService]) -> None:
    r = await busctl(bus, "call", "io.csp.Agent.claude_1", "/io/csp/Agent", "io.csp.Agent1",
                     "Inject", "s", "   ")
    assert r.returncode != 0 and "empty message" in r.stderr
    client = await sessionbus.connect(bus.address)
    try:
        with pytest.raises(BadRequest, match="empty message"):
            await sessionbus.agent_method(client, "io.csp.Agent.claude_1", "Inject", "s", [""])
    finally:
        sessionbus.disconnect(client)


async def test_second_agent_with_the_same_name_is_refused(
        bus: PrivateBus, agent: tuple[FakeControl, AgentBusService]) -> None:
    _, first = agent
    twin = AgentBusService(FakeControl(name="claude-1"), bus.address)
    with pytest.raises(BusNameTaken, match=r"io\.csp\.Agent\.claude_1 is already owned") as exc:
        await twin.start()
    assert exc.value.exit_code == 6
    # '-' and '_' share a bus name: the look-alike is refused too
    with pytest.raises(BusNameTaken):
        await AgentBusService(FakeControl(name="claude_1"), bus.address).start()
    assert twin.bus is None
    assert await prop(bus, "Name") == 's "claude-1"'  # the first keeps it
    assert first.bus is not None and first.bus.connected


async def test_stop_releases_the_name(bus: PrivateBus) -> None:
    service = AgentBusService(FakeControl(name="brief"), bus.address)
    await service.start()
    assert "io.csp.Agent.brief" in (await busctl(bus, "list", "--acquired")).stdout
    await service.stop()
    r = await busctl(bus, "list", "--acquired")
    assert r.returncode == 0 and "io.csp.Agent.brief" not in r.stdout
    await service.stop()  # idempotent


async def test_without_a_session_bus_the_sidecar_carries_on(
        tmp_path: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    missing = f"unix:path={tmp_path}/no-bus-here"
    assert await publish(FakeControl(), missing) is None
    assert "running without D-Bus" in caplog.text
    assert "presence falls back" in caplog.text


def test_session_bus_address_from_the_environment(tmp_path: Any) -> None:
    assert sessionbus.session_bus_address({"DBUS_SESSION_BUS_ADDRESS": "unix:path=/x"}) == \
        "unix:path=/x"
    assert sessionbus.session_bus_address({"XDG_RUNTIME_DIR": str(tmp_path)}) is None


def _async(check: Any) -> Any:
    async def run() -> Any:
        return check()
    return run


async def test_losing_the_bus_leaves_the_agent_running(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    control = FakeControl(name="orphan")
    with private_bus() as own:
        service = AgentBusService(control, own.address)
        await service.start()
        os.kill(own.pid, signal.SIGKILL)
        await async_wait_for(_async(lambda: service.bus is None), what="the loss to be seen")
    assert "lost the session bus" in caplog.text
    control.set_state("busy")  # no bus to announce it on: nothing breaks
    assert service.interface is not None and not service.interface.active
    await service.stop()
