"""Who may call the agent's D-Bus methods: the person, and the agent itself, not others.

Every process of the user can reach the session bus, and so every agent could call
``Pause``, ``Inject`` or ``Interrupt`` on another agent's sidecar: type into its
terminal, or stop it, in its owner's name.  The gateway refuses the same thing by
the connection's process (``cspd.identity``); this does it on the bus.  Before one
of the agent's methods runs, the bus daemon names the caller's process
(``GetConnectionUnixProcessID``) and :func:`csp_core.proctree.agent_of` the agent it
works for; a caller that works for another agent gets
``org.freedesktop.DBus.Error.AccessDenied``.  Properties stay readable by all.

The guard is a message handler that runs before dbus-fast's own dispatch: it takes
the call, checks it, then runs the interface's own method and sends the answer, one
call at a time in the order they came.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from dbus_fast import DBusError, Message, MessageType
from dbus_fast.aio import MessageBus

from csp_core.busnames import INTERFACE, OBJECT_PATH
from csp_core.proctree import agent_of

log = logging.getLogger("csp_sidecar.dbus")

GUARDED = frozenset({"Pause", "Resume", "Inject", "Interrupt"})
ACCESS_DENIED = "org.freedesktop.DBus.Error.AccessDenied"
KNOWN_CALLERS = 256  # verdicts remembered (a unique bus name is never reused)


class CallerGuard:
    """One bus connection's guard over ``interface``'s methods."""

    def __init__(self, bus: MessageBus, interface: Any, agent: str,
                 agent_of_pid: Callable[[int], str | None] = agent_of) -> None:
        self.bus = bus
        self.interface = interface
        self.agent = agent
        self.agent_of_pid = agent_of_pid
        self._callers: dict[str, str | None] = {}  # unique name -> the agent it works for
        self._order = asyncio.Lock()  # FIFO: calls run in the order they arrived
        self._tasks: set[asyncio.Task[None]] = set()

    def handle(self, msg: Message) -> bool:
        """dbus-fast's message handler: True takes the call over (answered later)."""
        if (msg.message_type is not MessageType.METHOD_CALL or msg.path != OBJECT_PATH
                or msg.interface != INTERFACE or msg.member not in GUARDED):
            return False
        task = asyncio.get_running_loop().create_task(self._answer(msg))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    async def _answer(self, msg: Message) -> None:
        async with self._order:
            try:
                reply = await self._checked(msg)
            except Exception as exc:  # never leave a caller waiting for its timeout
                log.exception("D-Bus %s failed", msg.member)
                reply = Message.new_error(msg, "org.freedesktop.DBus.Error.Failed",
                                          f"{msg.member} failed: {type(exc).__name__}")
            if self.bus.connected:
                self.bus.send(reply)

    async def _checked(self, msg: Message) -> Message:
        try:
            caller = await self._caller_agent(msg.sender or "")
        except DBusError as exc:
            return Message.new_error(msg, exc.type, exc.text)
        if caller is not None and caller != self.agent:
            log.warning("refused D-Bus %s from agent %r", msg.member, caller)
            return Message.new_error(
                msg, ACCESS_DENIED,
                f"agent {caller!r} may not call {msg.member} on agent {self.agent!r}: only "
                "the person (and the agent itself) may; post to the chat instead")
        try:
            getattr(self.interface, msg.member or "")(*msg.body)
        except DBusError as exc:
            return Message.new_error(msg, exc.type, exc.text)
        except TypeError:  # a wrong signature the bus let through
            return Message.new_error(msg, "org.freedesktop.DBus.Error.InvalidArgs",
                                     f"{msg.member}: wrong arguments")
        return Message.new_method_return(msg)

    async def _caller_agent(self, sender: str) -> str | None:
        if sender in self._callers:
            return self._callers[sender]
        reply = await self.bus.call(Message(
            destination="org.freedesktop.DBus", path="/org/freedesktop/DBus",
            interface="org.freedesktop.DBus", member="GetConnectionUnixProcessID",
            signature="s", body=[sender]))
        if reply is None or reply.message_type is not MessageType.METHOD_RETURN:
            raise DBusError(ACCESS_DENIED, "the bus could not name the caller's process")
        agent = self.agent_of_pid(int(reply.body[0]))
        if len(self._callers) >= KNOWN_CALLERS:
            self._callers.clear()
        self._callers[sender] = agent
        return agent
