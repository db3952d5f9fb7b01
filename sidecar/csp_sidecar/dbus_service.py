"""The sidecar on the session bus: ``io.csp.Agent.<name>`` at ``/io/csp/Agent``.

Interface ``io.csp.Agent1`` (see docs/dbus.md):

* properties (read-only, every change announced with ``PropertiesChanged``):
  ``Name`` s, ``Profile`` s, ``Room`` s ("" = the gateway's default room),
  ``Command`` as, ``Pid`` u (the child's; 0 before it starts), ``State`` s
  (starting, ready, busy, waiting — for its human —, paused, exited), ``Reason`` s (why
  queued messages wait, "" when they do not), ``QueueLength`` u, ``LastActivity`` t
  (microseconds since the Unix epoch, the unit systemd uses for its timestamps;
  0 = never);
* methods: ``Pause()``, ``Resume()``, ``Inject(s text)``, ``Interrupt()``, for the person
  and the agent itself; another agent's process gets ``AccessDenied``
  (:mod:`.busguard`).

The interface only talks to an :class:`~csp_sidecar.control.AgentControl`, so
it can be exported over a stand-in in tests.  The object is exported *before*
the name is requested, so whoever sees the name appear can read it at once.
The name is requested without queueing: a taken name is a
:class:`~csp_core.busnames.BusNameTaken` and the sidecar exits before starting its
child.  No session bus is not an error: the sidecar runs without its bus
object and the gateway falls back to connection-based presence.

When the bus goes away under a running sidecar (the bus daemon restarted, a
``systemctl --user restart dbus``), the agent carries on and the sidecar
claims its name again as soon as a bus answers at the same address, retrying
with backoff: the agent is back on the bus (``cspctl pause`` works again)
without anyone restarting it.  The same interface object is exported on the
new connection, so listeners stay wired.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import Annotated, Any

from dbus_fast import DBusError, NameFlag, PropertyAccess, RequestNameReply
from dbus_fast.aio import MessageBus
from dbus_fast.annotations import DBusSignature, DBusStr, DBusUInt32, DBusUInt64
from dbus_fast.service import ServiceInterface, dbus_method, dbus_property

from csp_core import sessionbus
from csp_core.busnames import ERROR_PREFIX, INTERFACE, OBJECT_PATH, BusNameTaken, bus_name
from csp_core.errors import CspError
from csp_core.sessionbus import BusUnavailable

from .busguard import CallerGuard
from .control import AgentControl

log = logging.getLogger("csp_sidecar.dbus")

DBusStrList = Annotated[list[str], DBusSignature("as")]
NoReply = Annotated[None, DBusSignature("")]  # a method that returns nothing
READ = PropertyAccess.READ
U32_MAX = 2**32 - 1
# rejoining a lost bus: first try after this, then doubling up to the cap
REJOIN_FIRST = 0.2
REJOIN_MAX = 2.0

PROPERTY_NAMES = ("Name", "Profile", "Room", "Command", "Pid", "State", "Reason", "QueueLength",
                  "LastActivity")


def usec(unix_time: float) -> int:
    """Unix time in seconds as the ``t`` microseconds of ``LastActivity`` (0 if unset)."""
    return max(0, int(unix_time * 1_000_000)) if unix_time else 0


class AgentInterface(ServiceInterface):
    """``io.csp.Agent1`` over one :class:`AgentControl`."""

    def __init__(self, control: AgentControl) -> None:
        super().__init__(INTERFACE)
        self.control = control
        self.active = True
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.get_ident()

    def bind_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._thread = threading.get_ident()

    @dbus_property(access=READ)
    def Name(self) -> DBusStr:
        return self.control.name

    @dbus_property(access=READ)
    def Profile(self) -> DBusStr:
        return self.control.profile or ""

    @dbus_property(access=READ)
    def Room(self) -> DBusStr:
        return self.control.room or ""

    @dbus_property(access=READ)
    def Command(self) -> DBusStrList:
        return [str(word) for word in self.control.command]

    @dbus_property(access=READ)
    def Pid(self) -> DBusUInt32:
        pid = self.control.pid
        return pid if isinstance(pid, int) and 0 < pid <= U32_MAX else 0

    @dbus_property(access=READ)
    def State(self) -> DBusStr:
        return self.control.state

    @dbus_property(access=READ)
    def Reason(self) -> DBusStr:
        return self.control.reason

    @dbus_property(access=READ)
    def QueueLength(self) -> DBusUInt32:
        return min(max(0, int(self.control.queue_length)), U32_MAX)

    @dbus_property(access=READ)
    def LastActivity(self) -> DBusUInt64:
        return usec(self.control.last_activity)

    @dbus_method()
    def Pause(self) -> NoReply:
        _as_dbus(self.control.pause)

    @dbus_method()
    def Resume(self) -> NoReply:
        _as_dbus(self.control.resume)

    @dbus_method()
    def Inject(self, text: DBusStr) -> NoReply:
        _as_dbus(lambda: self.control.inject(text, "dbus"))

    @dbus_method()
    def Interrupt(self) -> NoReply:
        _as_dbus(self.control.interrupt)

    def changed(self, props: dict[str, Any]) -> None:
        """The control's listener: announce the changed properties with their current values.

        Values are read back through the getters, so the bus always carries the
        declared types whatever the control passed; unknown names are ignored.
        Safe to call from another thread: the signal is sent from the loop.
        """
        if not self.active:
            return
        if self._loop is not None and threading.get_ident() != self._thread:
            self._loop.call_soon_threadsafe(self.changed, props)
            return
        names = [n for n in PROPERTY_NAMES if n in props]
        if names:
            self.emit_properties_changed({n: getattr(self, n) for n in names})


def _as_dbus(action: Callable[[], None]) -> None:
    """Run a control action; a csp error becomes the D-Bus error ``io.csp.Error.<code>``."""
    try:
        action()
    except CspError as exc:
        raise DBusError(f"{ERROR_PREFIX}.{exc.code}", exc.message) from None


class AgentBusService:
    """One sidecar's connection to the session bus: export, own the name, let go, rejoin."""

    def __init__(self, control: AgentControl, address: str | None = None) -> None:
        self.control = control
        self.address = address
        self.name = bus_name(control.name)
        self.bus: MessageBus | None = None
        self.interface: AgentInterface | None = None
        self._watch: asyncio.Task[None] | None = None
        self._rejoin: asyncio.Task[None] | None = None
        self._stopping = False

    async def start(self) -> None:
        """Connect, export, request the name (no queueing).

        Raises :class:`BusUnavailable` without a session bus and
        :class:`BusNameTaken` when another process owns the name.
        """
        interface = AgentInterface(self.control)
        interface.bind_loop(asyncio.get_running_loop())
        bus = await self._claim(interface)
        self.bus, self.interface = bus, interface
        self.control.add_listener(interface.changed)
        self._watch = asyncio.create_task(self._watch_disconnect(bus))
        log.info("on the session bus as %s (%s)", self.name, bus.unique_name)

    async def _claim(self, interface: AgentInterface) -> MessageBus:
        """A new connection that exports ``interface`` and owns our name."""
        bus = await sessionbus.connect(self.address)
        bus.add_message_handler(CallerGuard(bus, interface, self.control.name).handle)
        bus.export(OBJECT_PATH, interface)
        try:
            reply = await asyncio.wait_for(
                bus.request_name(self.name, NameFlag.DO_NOT_QUEUE), sessionbus.CALL_TIMEOUT)
        except Exception as exc:
            sessionbus.disconnect(bus)
            raise BusUnavailable(f"could not request {self.name} on the session bus: "
                                 f"{exc.__class__.__name__}: {exc}") from None
        if reply not in (RequestNameReply.PRIMARY_OWNER, RequestNameReply.ALREADY_OWNER):
            owner = await _owner_or_unknown(bus, self.name)
            sessionbus.disconnect(bus)
            raise BusNameTaken(
                f"{self.name} is already owned on the session bus (by {owner}): another "
                f"sidecar for {self.control.name!r} (or for a name differing only in "
                "'-'/'_') is running; pick another --name", bus_name=self.name)
        return bus

    async def _watch_disconnect(self, bus: MessageBus) -> None:
        """The bus daemon went away: stop announcing changes, then claim the name again."""
        try:
            await sessionbus.disconnected(bus)
        except Exception as exc:
            log.debug("bus connection ended: %s", exc)
        if self.bus is bus and not self._stopping:
            log.warning("lost the session bus; %s is off it until the bus is back", self.name)
            self.bus = None
            if self.interface is not None:
                self.interface.active = False
            self._rejoin = asyncio.create_task(self._rejoin_bus())

    async def _rejoin_bus(self) -> None:
        """Claim the name on the bus at the same address once one answers (with backoff)."""
        interface = self.interface
        if interface is None:
            return
        delay = REJOIN_FIRST
        told = False
        while not self._stopping:
            await asyncio.sleep(delay)
            try:
                bus = await self._claim(interface)
            except BusNameTaken as exc:
                # another process took the name while we were off the bus: keep trying,
                # it may be a sidecar on its way out
                if not told:
                    log.warning("cannot rejoin the session bus: %s", exc.message)
                    told = True
                delay = REJOIN_MAX
                continue
            except CspError as exc:
                log.debug("session bus not back yet: %s", exc.message)
                delay = min(delay * 2, REJOIN_MAX)
                continue
            if self._stopping:  # stop() came while we were connecting
                sessionbus.disconnect(bus)
                return
            self.bus = bus
            interface.active = True
            self._watch = asyncio.create_task(self._watch_disconnect(bus))
            log.info("back on the session bus as %s (%s)", self.name, bus.unique_name)
            return

    async def stop(self) -> None:
        """Release the name after everything queued so far is sent, then disconnect."""
        self._stopping = True
        bus, self.bus = self.bus, None
        if self.interface is not None:
            self.interface.active = False
        for task in (self._watch, self._rejoin):
            if task is not None and task is not asyncio.current_task():
                task.cancel()
        self._watch = self._rejoin = None
        if bus is None or not bus.connected:
            return
        try:
            # a round trip: every PropertiesChanged queued before it is on the wire
            await asyncio.wait_for(bus.release_name(self.name), sessionbus.CALL_TIMEOUT)
        except Exception as exc:  # the bus went away first: it dropped the name anyway
            log.debug("release_name: %s", exc)
        bus.unexport(OBJECT_PATH)
        sessionbus.disconnect(bus)
        try:
            await asyncio.wait_for(sessionbus.disconnected(bus), sessionbus.CALL_TIMEOUT)
        except Exception as exc:
            log.debug("disconnect: %s", exc)

    async def close(self) -> None:
        """What csp_sidecar.main calls on the way out."""
        await self.stop()


async def _owner_or_unknown(bus: MessageBus, name: str) -> str:
    try:
        return await sessionbus.name_owner(bus, name) or "a process that just left"
    except CspError:
        return "another process"


async def publish(control: AgentControl, address: str | None = None) -> AgentBusService | None:
    """Put the agent on the session bus; without a bus, warn and return None.

    :class:`BusNameTaken` propagates: the sidecar must exit non-zero before it
    starts the child.
    """
    service = AgentBusService(control, address)
    try:
        await service.start()
    except BusUnavailable as exc:
        log.warning("%s; running without D-Bus (presence falls back to the gateway "
                    "connection)", exc.message)
        return None
    return service


async def export_agent(control: AgentControl) -> AgentBusService | None:
    """The hook csp_sidecar.main calls before starting the child (see :func:`publish`)."""
    return await publish(control)
