"""``cspctl gateway``: start, stop, restart, reload, status and logs of the gateway."""

from __future__ import annotations

import sys
from typing import Any

import click

from cspd.client import GatewayClient
from cspd.errors import CspError, Forbidden, GatewayUnavailable, Unauthorized

from . import systemd
from .render import print_json
from .runner import edge, run


@click.group("gateway")
def gateway() -> None:
    """Manage the gateway service (csp-gateway.service) through systemd."""


@gateway.command()
@click.option("--tcp", is_flag=True, help="Also open 127.0.0.1:8765 (csp-gateway-tcp.socket).")
@edge
def start(tcp: bool) -> None:
    """Start the socket and the service."""
    units = [systemd.SOCKET, systemd.SERVICE] + ([systemd.TCP_SOCKET] if tcp else [])
    systemd.systemctl("start", *units)
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
    systemd.systemctl("restart", systemd.SERVICE)
    click.echo("gateway restarted")


@gateway.command()
@edge
def reload() -> None:
    """Re-read config.toml without dropping connections (SIGHUP)."""
    systemd.systemctl("reload", systemd.SERVICE)
    click.echo("gateway configuration reloaded")


async def _health() -> dict[str, Any] | CspError:
    """The gateway's health, or why there is none (not running, token refused, ...)."""
    try:
        async with GatewayClient(timeout=5.0, create_token=False) as client:
            return await client.health()
    except CspError as exc:
        return exc


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
                                       "StatusText", "MainPID")
        info["socket"] = systemd.show(systemd.SOCKET, "ActiveState")["ActiveState"]
    except systemd.NoUserManager as exc:
        info["systemd"] = None
        info["systemd_error"] = exc.message.splitlines()[0]
    answer = (run(_health()) if info.get("socket") != "inactive" or not info["systemd"]
              else GatewayUnavailable("the socket unit is inactive"))
    health = None if isinstance(answer, CspError) else answer
    info["health"] = health
    if isinstance(answer, CspError):
        info["error"] = answer.message
    refused = isinstance(answer, (Unauthorized, Forbidden))
    if as_json:
        print_json(info)
    else:
        sd = info["systemd"]
        if sd:
            click.echo(f"service: {sd['ActiveState']} ({sd['SubState']}), "
                       f"socket: {info['socket']}")
            if sd.get("StatusText"):
                click.echo(f"status:  {sd['StatusText']}")
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
