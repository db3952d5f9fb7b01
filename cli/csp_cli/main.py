"""``cspctl``: the command group; each verb lives in its own module."""

from __future__ import annotations

import click

from cspd import __version__

from .agents_cmd import agents, interrupt, pause, resume
from .attach_cmd import attach, kill, spawn
from .chat_cmd import chat
from .config_cmd import agents_add, agents_presets, agents_remove, config
from .gateway_cmd import gateway
from .mcp_cmd import mcp
from .messages_cmd import history, send
from .rooms_cmd import rooms
from .token_cmd import token


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="cspctl")
def cli() -> None:
    """Talk to the csp group chat and manage its gateway and agents.

    \b
    Quick start:
      systemctl --user start csp-gateway      # or: cspctl gateway start
      cspctl send @all "hello"                # post as 'human'
      cspctl history -f                       # watch the room
      csp-sidecar --name claude -- claude     # put an agent in the chat

    Exit codes: 0 ok, 1 error, 2 bad input, 3 gateway not running,
    4 token refused, 5 unknown agent/room, 6 conflict, 7 rate limited.
    """


for command in (gateway, send, history, agents, pause, resume, interrupt, token,
                attach, spawn, kill, chat, config, mcp, rooms):
    cli.add_command(command)
agents.add_command(agents_add)
agents.add_command(agents_remove)
agents.add_command(agents_presets)


def main() -> None:
    cli()
