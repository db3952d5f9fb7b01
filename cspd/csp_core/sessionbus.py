"""Connecting to the D-Bus session bus and the few calls csp makes on it.

Used by the gateway (presence), the sidecar (its service) and cspctl.  The bus
is optional everywhere: :func:`connect` turns "no bus" into one error,
:class:`BusUnavailable`, which each part catches at its edge and degrades
(the gateway falls back to connection-based presence, the sidecar runs
without its bus object, cspctl goes through the gateway).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from dbus_fast import Message, MessageType, Variant
from dbus_fast.aio import MessageBus

from . import errors
from .busnames import ERROR_PREFIX, INTERFACE, OBJECT_PATH, NotOnBus
from .busnames import session_bus_address as session_bus_address
from .errors import CspError

DBUS = "org.freedesktop.DBus"
DBUS_PATH = "/org/freedesktop/DBus"
PROPERTIES = "org.freedesktop.DBus.Properties"
CALL_TIMEOUT = 5.0

# errors meaning "nobody owns that name (any more)"
_GONE = frozenset({"org.freedesktop.DBus.Error.ServiceUnknown",
                   "org.freedesktop.DBus.Error.NameHasNoOwner",
                   "org.freedesktop.DBus.Error.NoReply",
                   "org.freedesktop.DBus.Error.Disconnected"})


class BusUnavailable(CspError):
    """There is no session bus to talk to (not configured, or not answering)."""

    code = "no_session_bus"


async def connect(address: str | None = None, timeout: float = CALL_TIMEOUT) -> MessageBus:
    """Connect to the session bus (``address`` or the environment's)."""
    address = address or session_bus_address()
    if not address:
        raise BusUnavailable("no session bus: DBUS_SESSION_BUS_ADDRESS is not set and "
                             "$XDG_RUNTIME_DIR/bus does not exist")
    bus: MessageBus | None = None
    try:
        bus = MessageBus(bus_address=address)
        return await asyncio.wait_for(bus.connect(), timeout)
    except Exception as exc:  # bad address, no socket, refused, auth, timeout: all "no bus"
        if bus is not None:
            disconnect(bus)
        raise BusUnavailable(f"cannot connect to the session bus at {address}: "
                             f"{exc.__class__.__name__}: {exc}", address=address) from None


def disconnect(bus: MessageBus) -> None:
    """Close a connection; the bus daemon drops its names at once."""
    if bus.connected:
        bus.disconnect()


async def disconnected(bus: MessageBus) -> None:
    """Wait until the connection is closed (by us or by the bus daemon).

    Shielded: cancelling one waiter must not cancel the bus's own future,
    which every other waiter shares.
    """
    await asyncio.shield(bus.wait_for_disconnect())  # type: ignore[no-untyped-call]


def _error(reply: Message, destination: str) -> CspError:
    """A D-Bus error reply as the matching csp error."""
    name = reply.error_name or ""
    text = str(reply.body[0]) if reply.body else name
    if name in _GONE:
        return NotOnBus(f"{destination} has no owner on the session bus", bus_name=destination)
    if name.startswith(ERROR_PREFIX + "."):
        return errors.from_json(0, {"error": name[len(ERROR_PREFIX) + 1:], "message": text})
    return CspError(f"{destination}: {name}: {text}")


async def call(bus: MessageBus, destination: str, path: str, interface: str, member: str,
               signature: str = "", body: list[Any] | None = None,
               timeout: float = CALL_TIMEOUT) -> list[Any]:
    """Call a method and return the reply body; an error reply raises a :class:`CspError`."""
    message = Message(destination=destination, path=path, interface=interface,
                      member=member, signature=signature, body=body or [])
    try:
        reply = await asyncio.wait_for(bus.call(message), timeout)
    except TimeoutError:
        raise CspError(f"{destination} did not answer {member} within {timeout:g}s") from None
    except (OSError, EOFError) as exc:
        raise BusUnavailable(f"lost the session bus: {exc}") from None
    if reply.message_type == MessageType.ERROR:
        raise _error(reply, destination)
    return list(reply.body)


async def list_names(bus: MessageBus) -> list[str]:
    [names] = await call(bus, DBUS, DBUS_PATH, DBUS, "ListNames")
    return list(names)


async def name_owner(bus: MessageBus, name: str) -> str | None:
    """The unique name owning ``name``, or None when no one does."""
    try:
        [owner] = await call(bus, DBUS, DBUS_PATH, DBUS, "GetNameOwner", "s", [name])
    except NotOnBus:
        return None
    return str(owner)


async def add_match(bus: MessageBus, rule: str) -> None:
    await call(bus, DBUS, DBUS_PATH, DBUS, "AddMatch", "s", [rule])


def unpack(values: Mapping[str, Any]) -> dict[str, Any]:
    """``a{sv}`` as plain Python values."""
    return {k: (v.value if isinstance(v, Variant) else v) for k, v in values.items()}


async def agent_properties(bus: MessageBus, destination: str,
                           timeout: float = CALL_TIMEOUT) -> dict[str, Any]:
    """Every ``io.csp.Agent1`` property of the agent owning ``destination``."""
    [values] = await call(bus, destination, OBJECT_PATH, PROPERTIES, "GetAll", "s", [INTERFACE],
                          timeout=timeout)
    return unpack(values)


async def agent_method(bus: MessageBus, destination: str, member: str,
                       signature: str = "", body: list[Any] | None = None) -> None:
    await call(bus, destination, OBJECT_PATH, INTERFACE, member, signature, body)
