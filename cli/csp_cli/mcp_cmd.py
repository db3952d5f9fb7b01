"""``cspctl mcp``: the csp group chat as an MCP server on stdio, and its registration.

``cspctl mcp`` bridges an MCP client on stdio to the gateway's ``/mcp``
(:mod:`csp_cli.mcp_bridge`).  Agents that csp starts get it for their run
without any of this (the sidecar wires it in); ``cspctl mcp install`` registers
it with a CLI's own configuration for agents started outside csp.
"""

from __future__ import annotations

import asyncio
import sys

import click

from csp_core.client import GatewayClient
from csp_core.endpoint import speaker
from csp_core.protocol import HUMAN, check_name

from .runner import coro_command, edge

MCP_HELP = """Serve the csp group chat to an MCP client over stdio.

\b
Agents started by csp (csp-sidecar, cspctl attach) already have it. For an
agent CLI started by hand, register it once:
  cspctl mcp install --for claude     # or codex, gemini; --print to preview
Tools: send_message, read_messages, list_agents, get_history.  Inside an
agent csp started, it speaks as that agent; elsewhere as 'human' or --as NAME.
"""


@click.group("mcp", help=MCP_HELP, invoke_without_command=True)
@click.option("--as", "as_name", metavar="NAME", help="Speak as NAME instead of $CSP_AGENT.")
@click.pass_context
def mcp(ctx: click.Context, as_name: str | None) -> None:
    if ctx.invoked_subcommand is None:
        serve(as_name)


@coro_command
async def serve(as_name: str | None) -> None:
    from .mcp_bridge import Bridge, write_line

    agent = speaker(as_name)
    if agent != HUMAN:
        check_name(agent)  # a bad name fails now, not per tool call
    loop = asyncio.get_running_loop()
    async with GatewayClient(agent=agent) as client:
        bridge = Bridge(client, write_line)
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line:
                break
            await bridge.handle_line(line)
        await bridge.drain()


@mcp.command("install")
@click.option("--for", "cli_name", required=True,
              type=click.Choice(["claude", "codex", "gemini"]),
              help="The agent CLI to register csp with.")
@click.option("--print", "dry_run", is_flag=True, help="Show what would run; change nothing.")
@click.option("--remove", is_flag=True, help="Unregister csp instead.")
@edge
def install(cli_name: str, dry_run: bool, remove: bool) -> None:
    """Register csp's MCP server with an agent CLI started outside csp.

    Runs the CLI's own documented command (`claude mcp add --scope user`,
    `codex mcp add`, `gemini mcp add --scope user`), so the CLI writes its own
    configuration; --remove runs its `mcp remove`.
    """
    from .mcp_install import plan, run_plan

    steps = plan(cli_name, remove=remove)
    if dry_run:
        for step in steps:
            click.echo(step.shell())
        return
    click.echo(run_plan(steps))
