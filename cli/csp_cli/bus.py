"""cspctl's D-Bus side: read agents' live state and control them over the session bus.

The sidecar owns ``io.csp.Agent.<name>``; talking to it directly works even
when the gateway is down and shows the agent's own view of its state.  Every
function here reports "no session bus" as ``None``/``False`` so the caller can
fall back to the gateway; an agent that is simply not on the bus is a
:class:`~csp_core.busnames.NotOnBus` error naming the bus name.
"""

from __future__ import annotations

import asyncio
from typing import Any

from dbus_fast.aio import MessageBus

from csp_core import sessionbus
from csp_core.busnames import INTERFACE, OBJECT_PATH, NotOnBus, bus_name, is_agent_bus_name
from csp_core.errors import CspError
from csp_core.sessionbus import BusUnavailable

READ_TIMEOUT = 2.0  # a sidecar that does not answer by then is listed from the gateway only
METHODS = {"pause": "Pause", "resume": "Resume", "interrupt": "Interrupt"}


def _row(name: str, props: dict[str, Any]) -> dict[str, Any]:
    last = props.get("LastActivity", 0)
    return {"name": props.get("Name", name.rpartition(".")[2]), "dbus_name": name,
            "state": props.get("State", "starting"), "queue": props.get("QueueLength", 0),
            "reason": props.get("Reason", ""),
            "pid": props.get("Pid") or None, "room": props.get("Room", ""),
            "profile": props.get("Profile", ""), "command": list(props.get("Command", [])),
            "last_activity": last / 1e6 if last else None}


async def _read(bus: MessageBus, name: str) -> dict[str, Any] | None:
    try:
        return _row(name, await sessionbus.agent_properties(bus, name, READ_TIMEOUT))
    except CspError:  # left between ListNames and GetAll, or not a csp sidecar
        return None


async def bus_agents() -> list[dict[str, Any]] | None:
    """Every agent on the session bus with its live properties; None without a bus."""
    try:
        bus = await sessionbus.connect()
    except BusUnavailable:
        return None
    try:
        names = sorted(n for n in await sessionbus.list_names(bus) if is_agent_bus_name(n))
        rows = await asyncio.gather(*(_read(bus, n) for n in names))
    finally:
        sessionbus.disconnect(bus)
    return [r for r in rows if r is not None]


async def control(agent: str, action: str) -> str | None:
    """Send ``action`` to agent ``agent`` over D-Bus; its bus name, or None without a bus."""
    try:
        bus = await sessionbus.connect()
    except BusUnavailable:
        return None
    dest = bus_name(agent)
    try:
        await _check_owner(bus, agent, dest)
        await sessionbus.agent_method(bus, dest, METHODS[action])
    finally:
        sessionbus.disconnect(bus)
    return dest


async def _check_owner(bus: MessageBus, agent: str, dest: str) -> None:
    """Refuse an unowned name, and one owned by the agent whose name differs in '-'/'_'."""
    missing = NotOnBus(f"{agent} is not on the session bus: no one owns {dest} "
                       "(is its sidecar running?)", names=[agent], bus_name=dest)
    if await sessionbus.name_owner(bus, dest) is None:
        raise missing
    try:
        [owner_name] = await sessionbus.call(bus, dest, OBJECT_PATH, sessionbus.PROPERTIES,
                                             "Get", "ss", [INTERFACE, "Name"])
    except NotOnBus:
        raise missing from None
    if owner_name.value != agent:
        raise NotOnBus(f"{dest} belongs to agent {owner_name.value!r}, not {agent!r}",
                       names=[agent], bus_name=dest)
