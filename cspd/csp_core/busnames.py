"""csp's names on the D-Bus session bus, shared by the gateway, the sidecar and cspctl.

Every sidecar owns ``io.csp.Agent.<name>`` and exports one object at
``/io/csp/Agent`` with the versioned interface ``io.csp.Agent1``.  Agent names
already match ``^[a-z][a-z0-9_-]{0,31}$``, so a name element never starts with a
digit; only ``-`` is not allowed in a bus name element, and becomes ``_``.  That
mapping is not one-to-one (``a-b`` and ``a_b`` share a bus name): the second
sidecar is refused the name, like any other duplicate.  The agent's real name
is always the ``Name`` property.

Where the session bus is (:func:`session_bus_address`) is here too, apart from
:mod:`csp_core.sessionbus`: a process looks for a bus before it imports a D-Bus
library (several MiB) to talk to one.
"""

from __future__ import annotations

import os
import stat

from .errors import Conflict, NotFound

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from collections.abc import Mapping

AGENT_PREFIX = "io.csp.Agent"
OBJECT_PATH = "/io/csp/Agent"
INTERFACE = "io.csp.Agent1"
ERROR_PREFIX = "io.csp.Error"

# the match rule the gateway watches: every owner change of io.csp.Agent.*
# (arg0namespace also matches io.csp.Agent itself, which no one owns)
PRESENCE_MATCH = ("type='signal',sender='org.freedesktop.DBus',"
                  "interface='org.freedesktop.DBus',member='NameOwnerChanged',"
                  f"arg0namespace='{AGENT_PREFIX}'")
# state changes of every agent, announced with PropertiesChanged
PROPERTIES_MATCH = ("type='signal',interface='org.freedesktop.DBus.Properties',"
                    f"member='PropertiesChanged',path='{OBJECT_PATH}',arg0='{INTERFACE}'")


def bus_name(agent: str) -> str:
    """The well-known name of agent ``agent`` (a valid csp agent name)."""
    return f"{AGENT_PREFIX}.{agent.replace('-', '_')}"


def is_agent_bus_name(name: str) -> bool:
    """True for ``io.csp.Agent.<element>``: one element below the prefix, nothing deeper."""
    head, _, element = name.rpartition(".")
    return head == AGENT_PREFIX and bool(element)


def guess_agent(name: str) -> str:
    """The agent name a bus name stands for, when its ``Name`` property cannot be read.

    Exact for names without ``-``; callers that know the agent names match
    with :func:`bus_name` instead.
    """
    return name.rpartition(".")[2]


class BusNameTaken(Conflict):
    """Another process owns the agent's bus name: a twin sidecar is running."""

    code = "bus_name_taken"


class NotOnBus(NotFound):
    """The agent's bus name has no owner: its sidecar is not running (on this bus)."""

    code = "not_on_bus"


def session_bus_address(env: Mapping[str, str] | None = None) -> str | None:
    """``$DBUS_SESSION_BUS_ADDRESS``, else systemd's ``$XDG_RUNTIME_DIR/bus`` socket."""
    env = os.environ if env is None else env
    address = env.get("DBUS_SESSION_BUS_ADDRESS")
    if address:
        return address
    runtime = env.get("XDG_RUNTIME_DIR")
    if runtime:
        path = os.path.join(runtime, "bus")
        try:
            if stat.S_ISSOCK(os.stat(path).st_mode):
                return f"unix:path={path}"
        except OSError:
            pass
    return None
