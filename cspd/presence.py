"""Presence from the session bus: an agent is online while its bus name has an owner.

The gateway subscribes to ``NameOwnerChanged`` for the ``io.csp.Agent``
namespace *before* an initial ``ListNames``, so nothing is missed, and posts
``<name> joined #room`` / ``<name> left`` as ``system`` messages.  The bus
daemon announces a lost owner the moment the sidecar's socket closes, so a
SIGKILLed sidecar leaves at once instead of after a timeout.  It also follows
every agent's ``PropertiesChanged``, so ``GET /v1/agents`` shows live state.

While the bus is up this is the only source of joined/left messages
(``Gateway.bus_presence``; the WebSocket stream stays quiet about them).
Without a bus (or when it goes away) presence falls back to connections, and
the status line says so.

Events are handled one at a time in arrival order by one worker task, so a
join still reading the agent's properties is never overtaken by its leave.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shlex
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from dbus_fast import Message, MessageType
from dbus_fast.aio import MessageBus

from . import sessionbus
from .app import GATEWAY, Gateway
from .busnames import (
    INTERFACE,
    PRESENCE_MATCH,
    PROPERTIES_MATCH,
    bus_name,
    guess_agent,
    is_agent_bus_name,
)
from .errors import CspError
from .sessionbus import BusUnavailable

log = logging.getLogger("cspd.presence")

# a join waits at most this for the new owner's properties (it keeps "within a second"
# for any live sidecar; a dead one answers at once with an error)
PROPERTIES_TIMEOUT = 2.0


@dataclass
class BusAgent:
    """An agent whose bus name has an owner, with its last known properties."""

    bus_name: str
    owner: str
    name: str
    room: str
    props: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        p = self.props
        return {"name": self.name, "dbus_name": self.bus_name, "owner": self.owner,
                "room": self.room, "state": p.get("State", "starting"),
                "queue": p.get("QueueLength", 0), "pid": p.get("Pid") or None,
                "profile": p.get("Profile", ""), "command": p.get("Command", [])}


class Presence:
    def __init__(self, gw: Gateway, address: str | None = None) -> None:
        self.gw = gw
        self.address = address
        self.bus: MessageBus | None = None
        self.by_bus_name: dict[str, BusAgent] = {}
        self._events: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def active(self) -> bool:
        return self.bus is not None and self.bus.connected

    def agent(self, name: str) -> BusAgent | None:
        """The agent called ``name`` if it is on the bus."""
        found = self.by_bus_name.get(bus_name(name))
        return found if found is not None and found.name == name else None

    async def start(self) -> bool:
        """Connect and start watching; False (and a warning) when there is no bus."""
        try:
            bus = await sessionbus.connect(self.address)
        except BusUnavailable as exc:
            log.warning("%s; presence falls back to connections", exc.message)
            self._set_active(False)
            return False
        bus.add_message_handler(self._on_message)
        try:
            await sessionbus.add_match(bus, PRESENCE_MATCH)
            await sessionbus.add_match(bus, PROPERTIES_MATCH)
            names = [n for n in await sessionbus.list_names(bus) if is_agent_bus_name(n)]
            self.bus = bus
            for name in names:
                owner = await sessionbus.name_owner(bus, name)
                if owner:
                    self._events.put_nowait((name, owner))
        except CspError as exc:
            sessionbus.disconnect(bus)
            self.bus = None
            log.warning("session bus: %s; presence falls back to connections", exc.message)
            self._set_active(False)
            return False
        self._tasks = [asyncio.create_task(self._worker(), name="presence-worker"),
                       asyncio.create_task(self._watch_disconnect(bus), name="presence-bus")]
        self._set_active(True)
        log.info("presence: watching the session bus (%d agents on it)", len(names))
        return True

    async def stop(self) -> None:
        bus, self.bus = self.bus, None
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        if bus is not None:
            sessionbus.disconnect(bus)

    def _set_active(self, active: bool) -> None:
        self.gw.bus_presence = active
        if not active:
            self.gw.bus_agents.clear()
        self.gw.update_status()

    async def _watch_disconnect(self, bus: MessageBus) -> None:
        with contextlib.suppress(Exception):
            await sessionbus.disconnected(bus)
        if self.bus is bus:  # not our own stop(): the bus went away under us
            log.warning("lost the session bus; presence falls back to connections")
            self.bus = None
            self.by_bus_name.clear()
            self._set_active(False)

    # -- events ------------------------------------------------------------

    def _on_message(self, msg: Message) -> None:
        if msg.message_type != MessageType.SIGNAL:
            return
        if msg.member == "NameOwnerChanged" and msg.interface == sessionbus.DBUS:
            name, _old, new = msg.body
            if is_agent_bus_name(name):
                self._events.put_nowait((name, new))
        elif msg.member == "PropertiesChanged" and msg.body and msg.body[0] == INTERFACE:
            for agent in self.by_bus_name.values():
                if agent.owner == msg.sender:
                    agent.props.update(sessionbus.unpack(msg.body[1]))

    async def _worker(self) -> None:
        while True:
            name, owner = await self._events.get()
            try:
                await self._owner_changed(name, owner)
            except Exception:
                log.exception("presence: handling %s -> %r failed", name, owner)

    async def _owner_changed(self, name: str, owner: str) -> None:
        current = self.by_bus_name.get(name)
        if current is not None and current.owner == owner:
            return  # seen already (initial ListNames racing a signal)
        if current is not None:
            del self.by_bus_name[name]
            await self._left(current)
        if owner:
            agent = await self._read_agent(name, owner)
            self.by_bus_name[name] = agent
            await self._joined(agent)

    async def _read_agent(self, name: str, owner: str) -> BusAgent:
        """Read the new owner's properties; a process that died already gets a guess."""
        props: dict[str, Any] = {}
        if self.bus is not None:
            try:
                props = await sessionbus.agent_properties(self.bus, owner, PROPERTIES_TIMEOUT)
            except CspError as exc:
                log.info("presence: cannot read %s's properties: %s", name, exc.message)
        agent = props.get("Name")
        if not isinstance(agent, str) or bus_name(agent) != name:
            agent = next((k for k in sorted(self.gw.router.known) if bus_name(k) == name),
                         guess_agent(name))
        room = props.get("Room") or self.gw.router.home_room(agent)
        return BusAgent(bus_name=name, owner=owner, name=agent, room=room, props=props)

    async def _joined(self, agent: BusAgent) -> None:
        log.info("%s joined #%s (%s, %s)", agent.name, agent.room, agent.bus_name, agent.owner)
        await self.gw.store.ensure_room(agent.room)
        self.gw.bus_agents.add(agent.name)
        await self.gw.router.system(agent.room, f"{agent.name} joined #{agent.room}")
        self.gw.update_status()

    async def _left(self, agent: BusAgent) -> None:
        log.info("%s left (%s)", agent.name, agent.bus_name)
        if agent.name in self.gw.router.known:
            await self.gw.store.touch_agent(agent.name)
        self.gw.bus_agents.discard(agent.name)
        await self.gw.router.system(agent.props.get("Room") or agent.room, f"{agent.name} left")
        self.gw.update_status()


PRESENCE = web.AppKey("presence", Presence)


def with_bus(app: web.Application, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``GET /v1/agents`` rows with the live bus state (``on_bus``, ``dbus_name``, state...).

    Agents on the bus that the gateway has never registered are listed too.
    """
    presence = app.get(PRESENCE)
    on_bus = {a.name: a for a in presence.by_bus_name.values()} if presence else {}
    for row in rows:
        agent = on_bus.pop(row["name"], None)
        row["on_bus"] = agent is not None
        if agent is not None:
            live = agent.to_json()
            row["online"] = True
            row["dbus_name"] = agent.bus_name
            for key, prop in (("state", "State"), ("queue", "QueueLength"), ("pid", "Pid")):
                if prop in agent.props:
                    row[key] = live[key]
    for agent in sorted(on_bus.values(), key=lambda a: a.name):
        live = agent.to_json()
        rows.append({"name": agent.name, "profile": live["profile"], "room": agent.room,
                     "command": shlex.join(live["command"]), "online": True,
                     "state": live["state"], "queue": live["queue"], "pending": 0,
                     "pid": live["pid"], "dbus_name": agent.bus_name, "last_seen": None,
                     "on_bus": True})
    return rows


def install(app: web.Application) -> None:
    """Watch the bus while the app runs (an aiohttp cleanup context)."""
    app[PRESENCE] = Presence(app[GATEWAY])
    app.cleanup_ctx.append(_presence_context)


async def _presence_context(app: web.Application) -> AsyncIterator[None]:
    presence = app[PRESENCE]
    await presence.start()
    try:
        yield
    finally:
        await presence.stop()
