"""Presence from the session bus: an agent is online while its bus name has an owner.

The gateway subscribes to ``NameOwnerChanged`` for the ``io.csp.Agent``
namespace *before* an initial ``ListNames``, so nothing is missed, and posts
``<name> joined #room`` / ``<name> left`` as ``system`` messages.  The bus
daemon announces a lost owner the moment the sidecar's socket closes, so a
SIGKILLed sidecar leaves at once instead of after a timeout.  Only the bus
daemon's own ``NameOwnerChanged`` counts: any client may send a signal that
looks like it straight to us (a unicast signal needs no match rule), but only
the daemon's carries the sender ``org.freedesktop.DBus``.  Presence also
follows every agent's ``PropertiesChanged``, so ``GET /v1/agents`` shows live
state.

While the bus is up this is the only source of joined/left messages
(``Gateway.bus_presence``; the WebSocket stream stays quiet about them).
Without a bus (or when it goes away) presence falls back to connections, and
the status line says so; meanwhile the gateway tries to connect again, with
backoff, for as long as it runs.  When a restarted bus is back, the agents that
were on it before rejoin quietly (their sidecars claim their names again); one
that has not come back after :data:`REJOIN_GRACE` seconds, and is not connected
to the gateway either, is posted as having left.

Events are handled one at a time in arrival order by one worker task, so a
join still reading the agent's properties is never overtaken by its leave.
Each event carries the generation of the bus connection it came from, so
nothing from a lost connection is applied to the next one.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import shlex
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from dbus_fast import Message, MessageType
from dbus_fast.aio import MessageBus

from csp_core import sessionbus
from csp_core.busnames import (
    INTERFACE,
    PRESENCE_MATCH,
    PROPERTIES_MATCH,
    bus_name,
    guess_agent,
    is_agent_bus_name,
)
from csp_core.errors import CspError
from csp_core.sessionbus import BusUnavailable

from .gateway import GATEWAY, Gateway

log = logging.getLogger("cspd.presence")

# a join waits at most this for the new owner's properties (it keeps "within a second"
# for any live sidecar; a dead one answers at once with an error)
PROPERTIES_TIMEOUT = 2.0
# reconnecting to a lost (or not yet started) bus: first try, then doubling up to the cap
RECONNECT_FIRST = 0.2
RECONNECT_MAX = 2.0
# after the bus is back, how long agents that were on it have to claim their names again
REJOIN_GRACE = 10.0


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
        self._generation = 0  # of the current bus connection
        self._events: asyncio.Queue[tuple[int, str, str]] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None
        self._watch: asyncio.Task[None] | None = None
        self._reconnect: asyncio.Task[None] | None = None
        self._grace: asyncio.Task[None] | None = None
        # agents that were on a bus we lost: their return is not news
        self._returning: dict[str, BusAgent] = {}
        # ... of which these were connected to the gateway too: while the bus is away the
        # stream announces their leaving (stream.py), so the grace must not do it again
        self._streaming: set[str] = set()
        self._stopped = False
        self._warned = False  # "no bus" is logged once per outage, not once per attempt

    @property
    def active(self) -> bool:
        return self.bus is not None and self.bus.connected

    def agent(self, name: str) -> BusAgent | None:
        """The agent called ``name`` if it is on the bus."""
        found = self.by_bus_name.get(bus_name(name))
        return found if found is not None and found.name == name else None

    async def start(self) -> bool:
        """Connect and start watching; False (and a warning) when there is no bus yet.

        Without a bus the gateway keeps trying in the background: a bus that
        appears (or comes back) later is picked up.
        """
        self._stopped = False
        if self._worker is None:
            self._worker = asyncio.create_task(self._work(), name="presence-worker")
        if await self._attach():
            return True
        self._reconnect_later()
        return False

    async def stop(self) -> None:
        self._stopped = True
        bus, self.bus = self.bus, None
        tasks = [t for t in (self._worker, self._watch, self._reconnect, self._grace)
                 if t is not None]
        self._worker = self._watch = self._reconnect = self._grace = None
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if bus is not None:
            sessionbus.disconnect(bus)

    async def _attach(self) -> bool:
        """One attempt at a bus connection: subscribe, list, queue the owners."""
        try:
            bus = await sessionbus.connect(self.address)
        except BusUnavailable as exc:
            if not self._warned:
                log.warning("%s; presence falls back to connections (retrying)", exc.message)
                self._warned = True
            self._set_active(False)
            return False
        self._generation += 1
        generation = self._generation
        bus.add_message_handler(functools.partial(self._on_message, generation))
        self.bus = bus
        try:
            await sessionbus.add_match(bus, PRESENCE_MATCH)
            await sessionbus.add_match(bus, PROPERTIES_MATCH)
            names = [n for n in await sessionbus.list_names(bus) if is_agent_bus_name(n)]
            for name in names:
                owner = await sessionbus.name_owner(bus, name)
                if owner:
                    self._events.put_nowait((generation, name, owner))
        except CspError as exc:
            if self.bus is bus:
                self.bus = None
            sessionbus.disconnect(bus)
            if not self._warned:
                log.warning("session bus: %s; presence falls back to connections (retrying)",
                            exc.message)
                self._warned = True
            self._set_active(False)
            return False
        self._warned = False
        self._watch = asyncio.create_task(self._watch_disconnect(bus), name="presence-bus")
        self._set_active(True)
        if self._returning:
            self._grace = asyncio.create_task(self._expire_returning(generation),
                                              name="presence-grace")
        log.info("presence: watching the session bus (%d agents on it)", len(names))
        return True

    def _reconnect_later(self) -> None:
        if self._stopped or (self._reconnect is not None and not self._reconnect.done()):
            return
        self._reconnect = asyncio.create_task(self._reconnect_loop(), name="presence-reconnect")

    async def _reconnect_loop(self) -> None:
        delay = RECONNECT_FIRST
        while not self._stopped:
            await asyncio.sleep(delay)
            if await self._attach():
                log.info("presence: back on the session bus")
                return
            delay = min(delay * 2, RECONNECT_MAX)

    def _set_active(self, active: bool) -> None:
        self.gw.bus_presence = active
        if not active:
            self.gw.bus_agents.clear()
        self.gw.update_status()

    async def _watch_disconnect(self, bus: MessageBus) -> None:
        with contextlib.suppress(Exception):
            await sessionbus.disconnected(bus)
        if self.bus is bus and not self._stopped:  # the bus went away under us
            log.warning("lost the session bus; presence falls back to connections "
                        "until it is back")
            self.bus = None
            if self._grace is not None:
                self._grace.cancel()
                self._grace = None
            for agent in self.by_bus_name.values():
                self._returning[agent.name] = agent
                if self.gw.hub.online(agent.name):
                    self._streaming.add(agent.name)
            self.by_bus_name.clear()
            self._set_active(False)
            self._reconnect_later()

    async def _expire_returning(self, generation: int) -> None:
        """After the grace, agents that did not come back left (unless connected)."""
        await asyncio.sleep(REJOIN_GRACE)
        if generation != self._generation:
            return
        gone, self._returning = self._returning, {}
        streaming, self._streaming = self._streaming, set()
        for agent in gone.values():
            if (self.agent(agent.name) is None and not self.gw.hub.online(agent.name)
                    and agent.name not in streaming):
                await self._left(agent)

    # -- events ------------------------------------------------------------

    def _on_message(self, generation: int, msg: Message) -> None:
        if msg.message_type != MessageType.SIGNAL:
            return
        if msg.member == "NameOwnerChanged" and msg.interface == sessionbus.DBUS:
            # only the bus daemon speaks for name ownership; a look-alike from a client
            # (sent straight to us, which needs no match rule) is ignored
            if msg.sender != sessionbus.DBUS or msg.path != sessionbus.DBUS_PATH:
                log.debug("ignoring NameOwnerChanged from %s", msg.sender)
                return
            name, _old, new = msg.body
            if is_agent_bus_name(name):
                self._events.put_nowait((generation, name, new))
        elif msg.member == "PropertiesChanged" and msg.body and msg.body[0] == INTERFACE:
            for agent in self.by_bus_name.values():
                if agent.owner == msg.sender:
                    agent.props.update(sessionbus.unpack(msg.body[1]))

    async def _work(self) -> None:
        while True:
            generation, name, owner = await self._events.get()
            if generation != self._generation:
                continue  # from a connection that is gone: its owners mean nothing now
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
            self._streaming.discard(agent.name)
            if self._returning.pop(agent.name, None) is not None:
                log.info("%s is back on the session bus (%s)", agent.name, agent.owner)
                self.gw.bus_agents.add(agent.name)
                self.gw.update_status()
            else:
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
