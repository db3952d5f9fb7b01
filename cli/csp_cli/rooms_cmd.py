"""``cspctl rooms``: list, create, join, leave, and the relay switch of the loop guard."""

from __future__ import annotations

import click

from csp_core.client import GatewayClient, default_identity

from .render import print_json
from .runner import coro_command


@click.group("rooms", invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def rooms(ctx: click.Context, as_json: bool) -> None:
    """List the rooms, their members and their relay setting.

    \b
      cspctl rooms create backend
      cspctl rooms join backend codex      # put agent codex in #backend
      cspctl rooms relay main on           # agents' output reaches the other agents
      cspctl rooms relay main --hop-limit 4
    """
    if ctx.invoked_subcommand is None:
        _list(as_json)


@coro_command
async def _list(as_json: bool) -> None:
    async with GatewayClient() as client:
        data = await client.rooms()
    if as_json:
        print_json(data)
        return
    click.echo(f"{'ROOM':<16}{'RELAY':<7}{'HOPS':>9}  MEMBERS")
    for room in data["rooms"]:
        mark = "*" if room["name"] == data["default"] else " "
        hops = f"{room['hops']}/{room['hop_limit']}"
        click.echo(f"{mark}{room['name']:<15}{'on' if room['relay'] else 'off':<7}{hops:>9}  "
                   + ", ".join(room["members"]))


@rooms.command("create")
@click.argument("name")
@coro_command
async def create(name: str) -> None:
    """Create room NAME (and join it)."""
    async with GatewayClient(agent=default_identity()) as client:
        result = await client.create_room(name)
    click.echo(f"#{name} {'created' if result['created'] else 'already exists'}", err=True)


@rooms.command("join")
@click.argument("room")
@click.argument("name", required=False)
@coro_command
async def join(room: str, name: str | None) -> None:
    """Add NAME (default: you) to ROOM; members receive its @all messages."""
    async with GatewayClient(agent=default_identity()) as client:
        await client.join_room(room, name)
    click.echo(f"{name or default_identity()} joined #{room}", err=True)


@rooms.command("leave")
@click.argument("room")
@click.argument("name", required=False)
@coro_command
async def leave(room: str, name: str | None) -> None:
    """Remove NAME (default: you) from ROOM."""
    async with GatewayClient(agent=default_identity()) as client:
        await client.leave_room(room, name)
    click.echo(f"{name or default_identity()} left #{room}", err=True)


@rooms.command("relay")
@click.argument("room")
@click.argument("switch", required=False, type=click.Choice(["on", "off"]))
@click.option("--hop-limit", type=click.IntRange(1, 1000),
              help="Agent-to-agent hops without a human before the room stops relaying.")
@coro_command
async def relay(room: str, switch: str | None, hop_limit: int | None) -> None:
    """Whether agents' captured output reaches the other agents of ROOM.

    Off (the default), output reaches only the agents it names (@codex).
    """
    fields: dict[str, object] = {}
    if switch is not None:
        fields["relay"] = switch == "on"
    if hop_limit is not None:
        fields["hop_limit"] = hop_limit
    if not fields:
        raise click.UsageError("say 'on', 'off' or --hop-limit N")
    async with GatewayClient() as client:
        await client.update_room(room, **fields)
    said = ([f"relay {switch}"] if switch else []) + (
        [f"hop limit {hop_limit}"] if hop_limit is not None else [])
    click.echo(f"#{room}: " + ", ".join(said), err=True)
