"""``cspctl agents`` and the control verbs ``pause``, ``resume``, ``interrupt``."""

from __future__ import annotations

import click

from cspd.client import GatewayClient

from .render import print_json
from .runner import coro_command


@click.group("agents", invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def agents(ctx: click.Context, as_json: bool) -> None:
    """List the agents the gateway knows: online or not, state and queue."""
    if ctx.invoked_subcommand is None:
        _list(as_json)


@coro_command
async def _list(as_json: bool) -> None:
    async with GatewayClient() as client:
        rows = await client.agents()
    if as_json:
        print_json(rows)
        return
    if not rows:
        click.echo("no agents yet: start one with `csp-sidecar --name NAME -- COMMAND`")
        return
    click.echo(f"{'NAME':<14}{'STATE':<10}{'QUEUE':>6}{'PENDING':>9}  {'PID':<8}{'ROOM':<10}"
               "COMMAND")
    for a in rows:
        click.echo(f"{a['name']:<14}{a['state']:<10}{a['queue']:>6}{a['pending']:>9}  "
                   f"{a['pid'] or '-'!s:<8}{a['room']:<10}{a['command']}")


def _control_command(action: str, doc: str) -> click.Command:
    @click.command(action, help=doc)
    @click.argument("name")
    @coro_command
    async def command(name: str) -> None:
        async with GatewayClient() as client:
            await client.control(name, action)
        click.echo(f"{action}: sent to {name}", err=True)
    return command


pause = _control_command("pause", "Hold delivery of group messages to agent NAME.")
resume = _control_command("resume", "Release delivery to agent NAME.")
interrupt = _control_command("interrupt", "Send agent NAME what Ctrl-C would.")
