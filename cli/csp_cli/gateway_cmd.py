"""``cspctl gateway``: start, stop, restart, reload, status, logs and the TCP listener.

The TCP listener is ``csp-gateway-tcp.socket``.  systemd refuses to start a
socket unit while its service runs ("Socket service ... already active,
refusing": a running service could not be handed the new fd), and a socket
unit stopped while its service runs leaves the service listening on its copy
of the fd.  So ``cspctl gateway tcp on|off`` changes the socket unit *and*
restarts a running gateway with it, in one call where that matters
(``restart csp-gateway.service csp-gateway-tcp.socket``: the socket is ordered
before its service, so systemd runs the service's stop, then the socket's
start, then the service's start, which receives both fds).  That restart is a
graceful stop: requests in progress are answered, the unix socket stays open
in systemd's hands so new clients wait in its backlog, and WebSocket clients
(sidecars, ``cspctl chat``, ``history --follow``) reconnect and resume from
their cursors; nothing acknowledged is lost, because nothing is acknowledged
before it is committed.  The alternative, the gateway binding TCP itself on a
config key, would need no restart but would put a second way to open a
listener beside systemd's, with its own port setting and its own failure modes.
"""

from __future__ import annotations

import contextlib
import socket
import sys
from typing import Any

import click

from csp_core import startrecord
from csp_core.client import GatewayClient
from csp_core.errors import CspError, Forbidden, GatewayUnavailable, Unauthorized

from . import systemd
from .render import print_json
from .runner import edge, run

UNITS = (systemd.SERVICE, systemd.SOCKET, systemd.TCP_SOCKET)
# service states in which it holds (or is about to hold) its listening sockets
RUNNING = ("active", "activating", "reloading", "deactivating")


@click.group("gateway")
def gateway() -> None:
    """Manage the gateway service (csp-gateway.service) through systemd."""


def _reset_failed(*units: str) -> None:
    """Forget a ``failed`` state (e.g. left by an older version), so starting works."""
    systemd.systemctl("reset-failed", *units, check=False)


@gateway.command()
@click.option("--tcp", is_flag=True,
              help="Also open 127.0.0.1:8765 for this session (see `gateway tcp on`).")
@edge
def start(tcp: bool) -> None:
    """Start the socket and the service."""
    _reset_failed(*UNITS)
    if tcp:  # first: a gateway not running yet then starts with both sockets
        _tcp_on(persist=False)
    systemd.systemctl("start", systemd.SOCKET, systemd.SERVICE)
    click.echo("gateway started")


@gateway.command()
@edge
def stop() -> None:
    """Stop the service and its sockets (nothing activates it until the next start)."""
    systemd.systemctl("stop", systemd.SERVICE, systemd.SOCKET, systemd.TCP_SOCKET)
    click.echo("gateway stopped")


@gateway.command()
@edge
def restart() -> None:
    """Restart the service; clients reconnect by themselves."""
    _reset_failed(*UNITS)
    systemd.systemctl("restart", systemd.SERVICE)
    click.echo("gateway restarted")


@gateway.command()
@edge
def reload() -> None:
    """Re-read config.toml without dropping connections (SIGHUP)."""
    systemd.systemctl("reload", systemd.SERVICE)
    click.echo("gateway configuration reloaded")


# -- the TCP listener ---------------------------------------------------------------

def _state(unit: str) -> str:
    return systemd.show(unit, "ActiveState")["ActiveState"]


def _tcp_address() -> tuple[str, int] | None:
    """Where the TCP socket unit listens (``Listen=127.0.0.1:8765 (Stream)``)."""
    listen = systemd.show(systemd.TCP_SOCKET, "Listen").get("Listen", "")
    host, _, port = listen.split(" ", 1)[0].rpartition(":")
    if not port.isdigit():
        return None
    return host.strip("[]") or "127.0.0.1", int(port)


def _listening(address: tuple[str, int] | None) -> bool:
    """Whether anything accepts connections there (the probe is closed at once)."""
    if address is None:
        return False
    with contextlib.suppress(OSError), socket.create_connection(address, timeout=2.0):
        return True
    return False


def _url(address: tuple[str, int] | None) -> str:
    return f"http://{address[0]}:{address[1]}" if address else "the TCP socket unit's address"


def _tcp_on(persist: bool) -> str:
    """Make the TCP listener serve; what was done, as one line."""
    if persist:
        systemd.systemctl("enable", systemd.TCP_SOCKET)
    _reset_failed(systemd.SOCKET, systemd.TCP_SOCKET)
    if _state(systemd.TCP_SOCKET) == "active":
        return "already on"
    # nothing runs: the sockets alone, and the first client starts the gateway with both;
    # if that fails, a client started the gateway in the meantime: take the path below
    if _state(systemd.SERVICE) not in RUNNING and systemd.systemctl(
            "start", systemd.SOCKET, systemd.TCP_SOCKET, check=False).returncode == 0:
        return "on"
    # the service stops, the socket starts, the service starts with both.  A service
    # with no process to stop (waiting to be restarted) may start before the socket's
    # job is queued, and then the socket is refused: by then it runs, so a second
    # round has a real stop to order the socket after
    for _ in range(3):
        result = systemd.systemctl("restart", systemd.SERVICE, systemd.TCP_SOCKET, check=False)
        if _state(systemd.TCP_SOCKET) == "active":
            return "on (the gateway restarted to take the new socket)"
    detail = (result.stderr or result.stdout).strip()
    raise CspError(f"could not start {systemd.TCP_SOCKET}: {detail} "
                   f"(see `cspctl gateway logs`)")


def _tcp_off(persist: bool) -> str:
    """Make the TCP listener stop; what was done, as one line."""
    address = _tcp_address()
    if persist:
        systemd.systemctl("disable", systemd.TCP_SOCKET)
    was = _state(systemd.TCP_SOCKET)
    systemd.systemctl("stop", systemd.TCP_SOCKET)
    _reset_failed(systemd.TCP_SOCKET)
    # a running gateway keeps its copy of the fd (also one left over from a plain
    # `systemctl stop` of the socket): only a restart without the socket closes it
    if _state(systemd.SERVICE) in RUNNING and (was == "active" or _listening(address)):
        systemd.systemctl("restart", systemd.SERVICE)
        return "off (the gateway restarted without the socket)"
    return "off" if was == "active" else "already off"


@gateway.command("tcp")
@click.argument("switch", type=click.Choice(["on", "off"]), required=False)
@click.option("--now-only", is_flag=True,
              help="Only for this session: do not enable/disable the socket unit.")
@edge
def tcp(switch: str | None, now_only: bool) -> None:
    """Turn the loopback TCP listener (http://127.0.0.1:8765) on or off.

    \b
      cspctl gateway tcp on       # now and at every login (enables the socket unit)
      cspctl gateway tcp off
      cspctl gateway tcp          # is it on?

    Works whatever state the gateway is in.  A running gateway is restarted
    gracefully to take (or drop) the socket: clients wait or reconnect, and no
    acknowledged message is lost.  Clients then use
    CSP_GATEWAY=http://127.0.0.1:8765; the token is still required.
    """
    if switch is None:
        state = _state(systemd.TCP_SOCKET)
        enabled = systemd.systemctl("is-enabled", systemd.TCP_SOCKET,
                                    check=False).stdout.strip() or "unknown"
        click.echo(f"tcp: {'on' if state == 'active' else 'off'} ({_url(_tcp_address())}; "
                   f"socket unit {state}, {enabled})")
        return
    done = _tcp_on(not now_only) if switch == "on" else _tcp_off(not now_only)
    click.echo(f"tcp: {done}: {_url(_tcp_address())}")


# -- status -------------------------------------------------------------------------

async def _health() -> dict[str, Any] | CspError:
    """The gateway's health, or why there is none (not running, token refused, ...)."""
    try:
        async with GatewayClient(timeout=5.0, create_token=False) as client:
            return await client.health()
    except CspError as exc:
        return exc


def _what_happens(info: dict[str, Any]) -> str | None:
    """One line on what systemd is doing with the gateway, when that is not obvious."""
    sd = info["systemd"]
    sock = info["socket"]
    if sock == "failed":
        return (f"the socket unit failed ({info.get('socket_result')}); "
                "`cspctl gateway start` resets and starts it")
    restarts_ = sd.get("NRestarts", "0")
    loop = info.get("crash_loop")
    if sd["SubState"] == "auto-restart":
        last = f"; last error: {loop['last_error']}" if loop and loop.get("last_error") else ""
        return f"restarting by itself after a failure (restart #{restarts_}{last})"
    if sd["ActiveState"] == "activating" and loop:
        return "backing off after a crash loop; it comes back by itself once the cause is gone"
    if sd["ActiveState"] == "failed":
        return (f"the last run failed ({sd.get('Result')}); "
                "the next client starts it again, or `cspctl gateway start`")
    return None


def _answer(info: dict[str, Any]) -> dict[str, Any] | CspError:
    """Ask the gateway for its health, unless systemd says it cannot answer yet.

    A request to a gateway that is restarting or backing off would sit in the
    socket's backlog until it serves (or our timeout): say so at once instead.
    """
    sd = info["systemd"]
    if sd:
        if info.get("socket") == "inactive":
            return GatewayUnavailable("the socket unit is inactive")
        if sd["SubState"] == "auto-restart":
            return GatewayUnavailable("restarting after a failure; it comes back by itself")
        if sd["ActiveState"] == "activating" and info.get("crash_loop"):
            return GatewayUnavailable("backing off after a crash loop; not serving yet")
    return run(_health())


@gateway.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@edge
def status(as_json: bool) -> None:
    """Show whether the gateway runs and what it is doing.

    \b
      cspctl gateway status
      cspctl gateway status --json | jq .health.status

    Exit status: 0 when it answers, 3 when it does not, 4 when it refuses
    the token this client sent.
    """
    info: dict[str, Any] = {}
    try:
        info["systemd"] = systemd.show(systemd.SERVICE, "ActiveState", "SubState",
                                       "StatusText", "MainPID", "NRestarts", "Result")
        sock = systemd.show(systemd.SOCKET, "ActiveState", "Result")
        info["socket"] = sock["ActiveState"]
        info["socket_result"] = sock.get("Result")
        tcp_state = _state(systemd.TCP_SOCKET)
        address = _tcp_address()
        info["tcp"] = {"state": tcp_state, "url": _url(address) if address else None}
    except systemd.NoUserManager as exc:
        info["systemd"] = None
        info["systemd_error"] = exc.message.splitlines()[0]
    if info["systemd"] and info["systemd"]["ActiveState"] != "active":
        loop = startrecord.streak()
        info["crash_loop"] = ({"ends": loop[0], "last_error": loop[1]} if loop else None)
    answer = _answer(info)
    health = None if isinstance(answer, CspError) else answer
    info["health"] = health
    if isinstance(answer, CspError):
        info["error"] = answer.message
    refused = isinstance(answer, (Unauthorized, Forbidden))
    if info["systemd"]:
        info["note"] = _what_happens(info)
    if as_json:
        print_json(info)
    else:
        sd = info["systemd"]
        if sd:
            tcp_line = ("on, " + str(info["tcp"]["url"]) if info["tcp"]["state"] == "active"
                        else "off")
            click.echo(f"service: {sd['ActiveState']} ({sd['SubState']}), "
                       f"socket: {info['socket']}, tcp: {tcp_line}")
            # between two runs the text is the dead run's last word: not news
            if sd.get("StatusText") and sd["SubState"] != "auto-restart":
                click.echo(f"status:  {sd['StatusText']}")
            if info.get("note"):
                click.echo(f"note:    {info['note']}")
        else:
            click.echo(f"systemd: {info['systemd_error']}")
        if health:
            click.echo(f"gateway: answering, {health['status']}")
        elif refused:
            click.echo(f"gateway: answering, but it refused this client: {info['error']}")
        else:
            click.echo(f"gateway: not answering ({info['error']})")
    sys.exit(0 if health else 4 if refused else 3)


@gateway.command()
@click.option("-n", "--lines", default=50, show_default=True, help="How many lines.")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines.")
@edge
def logs(lines: int, follow: bool) -> None:
    """Show the gateway's journal."""
    sys.exit(systemd.journal(systemd.SERVICE, lines, follow))
