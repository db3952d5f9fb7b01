"""``cspctl agents`` and the control verbs ``pause``, ``resume``, ``interrupt``."""

from __future__ import annotations

import shlex
from typing import Any

import click

from csp_core.client import GatewayClient
from csp_core.endpoint import owner_only
from csp_core.errors import GatewayUnavailable
from csp_core.protocol import API, check_name

from . import bus
from .render import print_json
from .runner import coro_command


@click.group("agents", invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def agents(ctx: click.Context, as_json: bool) -> None:
    """List the agents: online or not, state, queue, pid and D-Bus name.

    \b
      cspctl agents
      cspctl agents --json | jq -r '.[] | select(.online) | .name'
      cspctl agents add claude            # configure one for `cspctl attach`

    State, queue and pid are read live from each sidecar on the session bus
    where it is there; the rest comes from the gateway.
    """
    if ctx.invoked_subcommand is None:
        _list(as_json)


@coro_command
async def _list(as_json: bool) -> None:
    rows = await _rows()
    if as_json:
        print_json(rows)
        return
    if not rows:
        click.echo("no agents yet: start one with `csp-sidecar --name NAME -- COMMAND`")
        return
    click.echo(f"{'NAME':<14}{'STATE':<10}{'QUEUE':>6}{'PENDING':>9}  {'PID':<8}{'ROOM':<10}"
               f"{'DBUS':<24}COMMAND")
    for a in rows:
        pending = "-" if a["pending"] is None else a["pending"]
        click.echo(f"{a['name']:<14}{a['state']:<10}{a['queue']:>6}{pending:>9}  "
                   f"{a['pid'] or '-'!s:<8}{a['room']:<10}{a['dbus_name'] or '-':<24}"
                   f"{a['command']}")
        if a.get("reason") and a["queue"]:
            click.echo(f"{'':<14}waiting: {a['reason']}")


async def _rows() -> list[dict[str, Any]]:
    """The gateway's agents, with state, queue and pid read live from D-Bus where available.

    Agents on the bus the gateway does not know (or every agent on the bus,
    when the gateway is down) are listed too.
    """
    on_bus = await bus.bus_agents()
    live = {a["name"]: a for a in on_bus or []}
    try:
        async with GatewayClient() as client:
            rows = await client.agents()
    except GatewayUnavailable as exc:
        if not live:
            raise
        click.echo(f"cspctl: {exc.message}\nshowing the agents on the session bus only",
                   err=True)
        rows = []
    for row in rows:
        agent = live.pop(row["name"], None)
        row["on_bus"] = agent is not None
        if agent is not None:
            row.update(online=True, state=agent["state"], queue=agent["queue"],
                       reason=agent["reason"] or row.get("reason", ""),
                       pid=agent["pid"], dbus_name=agent["dbus_name"],
                       last_activity=agent["last_activity"])
    for agent in live.values():
        rows.append({**agent, "command": shlex.join(agent["command"]), "online": True,
                     "pending": None, "last_seen": None, "on_bus": True})
    return rows


@agents.command("forget")
@click.argument("name")
@coro_command
async def forget(name: str) -> None:
    """Forget offline agent NAME: it leaves the list, messages waiting for it are dropped.

    Its configuration (`cspctl agents remove`) and the chat history stay.
    """
    check_name(name)
    async with GatewayClient() as client:
        await client.request("DELETE", f"{API}/agents/{name}")
    click.echo(f"forgot {name}", err=True)


def _control_command(action: str, doc: str) -> click.Command:
    @click.command(action, help=doc + "\n\nSent over D-Bus (io.csp.Agent.NAME); through "
                   "the gateway only when there is no session bus.")
    @click.argument("name")
    @coro_command
    async def command(name: str) -> None:
        check_name(name)
        owner_only(action)  # one agent must not silence another
        dest = await bus.control(name, action)
        if dest is not None:
            click.echo(f"{action}: done by {name} ({dest})", err=True)
            return
        async with GatewayClient() as client:
            await client.control(name, action)
        click.echo(f"{action}: sent to {name} through the gateway (no session bus)", err=True)
    return command


pause = _control_command("pause", "Hold delivery of group messages to agent NAME.")
resume = _control_command("resume", "Release delivery to agent NAME.")
interrupt = _control_command("interrupt", "Send agent NAME what Ctrl-C would.")
